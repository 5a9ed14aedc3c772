"""Gaussian random-matrix facts used by the risk derivations.

Design: ``X in R^{n x d}`` with i.i.d. ``N(0, 1)`` entries.  Every function returns a
SymPy expression.  Each docstring says whether SymPy *derives* the fact here (by
integration, ``solve``, ``limit``, series) or whether it is a *cited lemma* whose value is
taken from the literature; the lemmas are checked by Monte Carlo in
``tests/test_random_matrix.py`` and, where a special case is derivable, against the
derived special case.

Random-matrix conventions follow Bai & Silverstein, *Spectral Analysis of Large
Dimensional Random Matrices* (2010): ``S = X^T X / n`` has, as ``n, d -> oo`` with
``psi = d / n`` fixed, the Marchenko–Pastur law, whose Stieltjes transform
``m(z) = lim (1/d) tr (S - z)^{-1}`` solves ``psi z m^2 - (1 - psi - z) m + 1 = 0``.

This module registers no result: it is a library of building blocks for the families
(``scratch``, ``linear_transfer``, ...).
"""

from __future__ import annotations

import sympy as sp

from featfate_sym.derivation_cache import memo
from featfate_sym.symbols import d as _d
from featfate_sym.symbols import n as _n

__all__ = [
    "chi2_inverse_mean",
    "projection_mean_coefficient",
    "inverse_gram_trace_mean",
    "inverse_covariance_mean_coefficient",
    "proportional_limit",
    "mp_stieltjes",
    "mp_resolvent_trace",
    "mp_resolvent_trace_squared",
    "mp_moments",
]

#: reference of the inverse-Wishart mean used by the two inverse-moment lemmas
INVERSE_WISHART_REFERENCE = (
    "Muirhead, Aspects of Multivariate Statistical Theory (1982), Thm 3.2.12: "
    "if W ~ W_p(k, I) and k > p + 1 then E[W^-1] = I / (k - p - 1)"
)


# -- finite-size moments ------------------------------------------------------------
def chi2_inverse_mean(nu) -> sp.Expr:
    """``E[1 / chi^2_nu]`` -- DERIVED here by integrating against the chi-square density.

    SymPy integrates ``x^{-1} x^{nu/2-1} e^{-x/2} / (2^{nu/2} Gamma(nu/2))`` over
    ``(0, oo)`` with ``nu = 2 + k``, ``k > 0`` (the integral converges at 0 only for
    ``nu > 2``) and simplifies the Gamma functions, giving ``1/(nu - 2)``.  For
    ``nu <= 2`` the integral diverges at 0 and the expectation is ``oo``; the result is a
    ``Piecewise`` carrying both cases.
    """
    x = sp.Symbol("x", positive=True)
    k = sp.Symbol("k", positive=True)  # nu - 2 > 0: the convergent case
    dof = 2 + k
    density = x ** (dof / 2 - 1) * sp.exp(-x / 2) / (2 ** (dof / 2) * sp.gamma(dof / 2))
    value = sp.gammasimp(sp.integrate(density / x, (x, 0, sp.oo)))
    nu = sp.sympify(nu)
    return sp.Piecewise((value.subs(k, nu - 2), nu > 2), (sp.oo, True))


def projection_mean_coefficient(n=_n, d=_d) -> sp.Expr:
    """``c`` with ``E[X^+ X] = c I_d`` -- DERIVED from rotational invariance.

    ``P = X^+ X`` is the orthogonal projector onto the row space of ``X``.  The law of
    ``X`` is invariant under ``X -> X O`` for orthogonal ``O``, and ``P -> O^T P O``, so
    ``E P`` commutes with every rotation and equals ``c I``.  Taking traces,
    ``c d = E tr P = E rank X = min(n, d)`` (Gaussian ``X`` has full rank almost surely);
    SymPy solves that equation for ``c``: ``min(n, d) / d``.
    """
    c = sp.Symbol("c")
    (value,) = sp.solve(sp.Eq(c * d, sp.Min(n, d)), c)
    return value


def inverse_gram_trace_mean(n=_n, d=_d) -> sp.Expr:
    """``E tr (X X^T)^{-1}`` for ``n < d - 1`` -- a CITED LEMMA: ``n / (d - n - 1)``.

    ``X X^T ~ W_n(d, I)``; the inverse-Wishart mean (Muirhead 1982, Thm 3.2.12) gives
    ``E (X X^T)^{-1} = I_n / (d - n - 1)``, whose trace is ``n / (d - n - 1)``.  For
    ``n >= d - 1`` the expectation is infinite (and for ``n > d`` the Gram matrix is
    singular); the ``Piecewise`` says ``oo`` there.

    The ``n = 1`` case is derived in SymPy: ``X X^T = |x|^2 ~ chi^2_d`` and
    :func:`chi2_inverse_mean` gives ``1/(d - 2)``; the test suite checks that the lemma
    agrees with it and checks the general case by Monte Carlo.
    """
    n, d = sp.sympify(n), sp.sympify(d)
    return sp.Piecewise((n / (d - n - 1), n < d - 1), (sp.oo, True))


def inverse_covariance_mean_coefficient(n=_n, d=_d) -> sp.Expr:
    """``c`` with ``E[(X^T X)^{-1}] = c I_d`` for ``n > d + 1`` -- a CITED LEMMA.

    ``X^T X ~ W_d(n, I)``; the inverse-Wishart mean (Muirhead 1982, Thm 3.2.12) gives
    ``c = 1 / (n - d - 1)``.  For ``n <= d + 1`` the expectation is infinite (singular
    for ``n < d``): ``oo``.  The ``d = 1`` case is ``E[1/chi^2_n]`` and is derived by
    :func:`chi2_inverse_mean`; the general case is checked by Monte Carlo in the tests.
    """
    n, d = sp.sympify(n), sp.sympify(d)
    return sp.Piecewise((1 / (n - d - 1), n > d + 1), (sp.oo, True))


# -- proportional limit ---------------------------------------------------------------
@memo
def proportional_limit(expr, gamma, n=_n, d=_d) -> sp.Expr:
    """The limit ``n, d -> oo`` with ``n = gamma d`` of a finite-size expression.

    Substitutes ``n = gamma d`` and takes ``sp.limit(., d, oo)``.  A ``Piecewise`` is
    mapped branch by branch: each value is sent to its limit, and each relational
    condition ``lhs (rel) rhs`` that involves ``d`` becomes ``lim (lhs - rhs)/d (rel) 0``
    (so ``n < d - 1`` becomes ``gamma < 1`` and ``d - 1 <= n <= d + 1`` becomes
    ``gamma = 1``).  Conditions without ``d`` (for example ``sigma > 0``) are kept.
    """
    expr = sp.sympify(expr)
    if isinstance(expr, sp.Piecewise):
        pieces = []
        for value, cond in expr.args:
            new_cond = _limit_condition(cond, gamma, n, d)
            if new_cond is sp.false:
                continue
            pieces.append((proportional_limit(value, gamma, n, d), new_cond))
        return sp.Piecewise(*pieces)
    if expr.has(sp.Piecewise):
        return proportional_limit(sp.piecewise_fold(expr), gamma, n, d)
    scaled = expr.subs(n, gamma * d)
    # min(gamma d, d) = d min(gamma, 1) for d > 0: pull the scale out so that the limit
    # sees a single variable
    scaled = scaled.replace(
        lambda e: isinstance(e, (sp.Min, sp.Max)),
        lambda e: d * e.func(*[sp.simplify(arg / d) for arg in e.args]),
    )
    if not scaled.has(d):
        return sp.simplify(scaled)
    if isinstance(scaled, sp.Add):
        # term by term (bias + variance...): each limit is simple and stays readable
        terms = [sp.simplify(sp.limit(term, d, sp.oo)) for term in scaled.args]
        if not any(term.has(sp.oo, -sp.oo, sp.zoo, sp.nan) for term in terms):
            return sp.Add(*terms)
    return sp.simplify(sp.limit(scaled, d, sp.oo))


def _limit_condition(cond, gamma, n, d):
    if cond in (sp.true, sp.false):
        return cond
    if isinstance(cond, (sp.And, sp.Or, sp.Not)):
        out = cond.func(*[_limit_condition(c, gamma, n, d) for c in cond.args])
        return _tidy(out, gamma)
    if isinstance(cond, sp.core.relational.Relational):
        gap = (cond.lhs - cond.rhs).subs(n, gamma * d)
        if not gap.has(d):
            return cond.func(gap, 0)
        # the leading coefficient of the gap: a rational function of gamma, in normal form;
        # for a gap linear in d, lim gap/d is its coefficient of d (no limit to take)
        if gap.is_polynomial(d) and sp.degree(gap, d) == 1:
            leading = sp.cancel(sp.Poly(gap, d).coeff_monomial(d))
        else:
            leading = sp.cancel(sp.limit(gap / d, d, sp.oo))
        return cond.func(leading, 0)
    return cond


def _tidy(cond, gamma):
    """Write the part of a condition on ``gamma`` alone as the simplest relation (``gamma = 1``...)."""
    if isinstance(cond, sp.And) and cond.free_symbols != {gamma}:
        alone = [c for c in cond.args if c.free_symbols == {gamma}]
        rest = [c for c in cond.args if c.free_symbols != {gamma}]
        return sp.And(_tidy(sp.And(*alone), gamma), *rest) if alone else cond
    if cond.free_symbols != {gamma}:
        return cond
    region = cond.as_set()
    if isinstance(region, sp.FiniteSet) and len(region) == 1:
        return sp.Eq(gamma, next(iter(region)))
    return region.as_relational(gamma)


# -- Marchenko–Pastur -----------------------------------------------------------------
@memo
def mp_stieltjes(psi, z) -> sp.Expr:
    """The Marchenko–Pastur Stieltjes transform ``m(z)`` -- DERIVED by ``sp.solve``.

    ``m(z) = lim (1/d) tr (X^T X / n - z)^{-1}`` with ``psi = d / n`` solves
    ``psi z m^2 - (1 - psi - z) m + 1 = 0`` (Bai & Silverstein 2010, Thm 3.10).  SymPy
    solves the quadratic; of its two roots the physical one is chosen by its behaviour
    as ``z -> -oo``: a Stieltjes transform decays like ``-1/z``, so the root with
    ``lim z m(z) = -1`` is kept (for the other, ``z m(z) -> oo``).  The closed form uses the principal square root and is the
    transform on the negative real axis ``z < 0``, where the ridge quantities live.
    """
    psi_, zeta, physical = _mp_physical_root()
    return physical.subs({psi_: psi, zeta: z}, simultaneous=True)


@memo
def _mp_physical_root():
    """``(psi, zeta, m)``: the physical root of the Marchenko–Pastur quadratic in its own
    symbols (solved and selected once; :func:`mp_stieltjes` substitutes its arguments)."""
    psi_, m_ = sp.Symbol("psi", positive=True), sp.Symbol("m")
    zeta = sp.Symbol("zeta", negative=True)
    w = sp.Symbol("w", positive=True)  # z = -1/w: z -> -oo is w -> 0+
    roots = sp.solve(psi_ * zeta * m_**2 - (1 - psi_ - zeta) * m_ + 1, m_)
    # the limit is taken in w rather than in z: SymPy's limit at z -> -oo of z m(z)
    # mis-assigns the two branches of the square root (1.14), the w form is reliable
    # (factored first: limit sees one quotient; a full simplify gives the same limits)
    physical = [
        r for r in roots
        if sp.limit(sp.factor((zeta * r).subs(zeta, -1 / w)), w, 0, "+") == -1
    ]
    if len(physical) != 1:  # pragma: no cover - the quadratic has exactly one such root
        raise RuntimeError("could not select the Marchenko-Pastur branch")
    return psi_, zeta, physical[0]


@memo
def mp_resolvent_trace(psi, lam) -> sp.Expr:
    """``lim (1/d) tr (X^T X/n + lam I)^{-1} = m(-lam)``, ``lam > 0`` -- DERIVED from :func:`mp_stieltjes`."""
    return sp.cancel(mp_stieltjes(psi, -lam))  # a rational function of the root: cancel is simplify's form


@memo
def mp_resolvent_trace_squared(psi, lam) -> sp.Expr:
    """``lim (1/d) tr (X^T X/n + lam I)^{-2} = m'(-lam)``, ``lam > 0`` -- DERIVED.

    Differentiating the resolvent in ``z`` gives ``d/dz (S - z)^{-1} = (S - z)^{-2}``, so
    this is ``m'(z)`` at ``z = -lam``; SymPy differentiates :func:`mp_stieltjes`.
    """
    zz = sp.Symbol("zeta", negative=True)
    return sp.cancel(sp.diff(mp_stieltjes(psi, zz), zz).subs(zz, -lam))  # cancel: simplify's form


def mp_moments(psi, order: int) -> list[sp.Expr]:
    """Moments ``lim (1/d) tr S^k``, ``k = 1..order`` -- DERIVED from the large-``z`` series.

    ``m(z) = -sum_{k>=0} mu_k z^{-k-1}``: SymPy expands ``m(-1/w)`` in ``w`` at ``0+``
    (``z -> -oo``), where the coefficient of ``w^{k+1}`` is ``(-1)^k mu_k``.  The results
    are the Narayana polynomials in ``psi`` (``mu_1 = 1``, ``mu_2 = 1 + psi``...).
    """
    w = sp.Symbol("w", positive=True)
    series = sp.series(sp.simplify(mp_stieltjes(psi, -1 / w)), w, 0, order + 2).removeO()
    return [sp.expand((-1) ** k * series.coeff(w, k + 1)) for k in range(1, order + 1)]
