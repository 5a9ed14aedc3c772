"""Training from scratch: the risk of minimum-norm interpolation and of ridge regression.

Model (SPEC section 1): ``X in R^{n x d}`` with i.i.d. ``N(0, 1)`` entries,
``y = X beta_t + eps``, ``eps ~ N(0, sigma^2 I_n)``, ``|beta_t| = 1``, risk
``R = |beta_hat - beta_t|^2``.  Small-initialisation gradient flow from scratch converges
to the minimum-norm interpolator ``beta_sc = X^+ y`` (paper Thms 3.5-3.6), whatever the
depth, so depth does not enter.

Results registered (family ``scratch``):

- ``scratch.risk_finite`` -- exact expectation at finite ``n, d`` from the bias/variance
  split and the Gaussian random-matrix lemmas of :mod:`featfate_sym.theory.random_matrix`;
- ``scratch.risk`` -- its proportional limit ``n = gamma d -> oo`` (double descent);
- ``scratch.risk_mp`` -- the same limit by an independent route: the ridgeless limit of
  the ridge risk written with the Marchenko–Pastur Stieltjes transform;
- ``scratch.risk_ridge`` -- isotropic ridge regression from scratch in the proportional
  limit, from ``m(-lam)`` and ``m'(-lam)``, rewritten in ``kappa = lam (1 + psi m(-lam))``
  for evaluation;
- ``scratch.risk_optimal_ridge`` -- ridge at its optimal strength, which has no
  double-descent peak (the regularised baseline of SPEC section 2).
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.derivation_cache import memo
from featfate_sym.registry import Derivation, SpecialCase, Exactness, Source, Status, Step, get, register
from featfate_sym.symbols import d, gamma, lam, m, n, psi, sigma, z
from featfate_sym.theory.random_matrix import (
    INVERSE_WISHART_REFERENCE,
    inverse_covariance_mean_coefficient,
    inverse_gram_trace_mean,
    mp_resolvent_trace,
    mp_resolvent_trace_squared,
    projection_mean_coefficient,
    proportional_limit,
)

_REFERENCE = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Thms 3.5-3.6"
_MP_REFERENCE = "Marchenko-Pastur law; Bai & Silverstein (2010), Thm 3.10"

_GAMMA, _SIGMA, _LAM = parameters.gamma, parameters.sigma, parameters.lam

#: ``kappa = lam (1 + psi m(-lam))``, an internal variable of the ridge derivation
_KAPPA = sp.Symbol("kappa", positive=True)


# -- helpers -----------------------------------------------------------------------------
@memo
def _on_branch(expr: sp.Expr, side: str) -> sp.Expr:
    """Evaluate ``expr`` on one side of the interpolation threshold.

    ``side = "under"`` means ``n <= d - 2``: SymPy substitutes ``n = d - 2 - j`` with
    ``j >= 0`` an integer, so ``Min`` and the lemmas' ``Piecewise`` conditions resolve,
    then substitutes back ``j = d - 2 - n``.  ``side = "over"`` is ``n = d + 2 + j``.
    """
    j = sp.Symbol("j", integer=True, nonnegative=True)
    shift = d - 2 - j if side == "under" else d + 2 + j
    back = d - 2 - n if side == "under" else n - d - 2
    return sp.factor(sp.factor(expr.subs(n, shift)).subs(j, back))


@memo
def _ridge_risk_psi() -> tuple[sp.Expr, sp.Expr, sp.Expr, list[Step]]:
    """Bias, variance and risk of isotropic ridge in the limit, in ``psi = d/n`` and ``lam``.

    ``beta_hat = (X^T X + n lam I)^{-1} X^T y = (S + lam)^{-1} X^T y / n``, ``S = X^T X/n``.
    Bias: ``beta_hat - beta_t = -lam (S + lam)^{-1} beta_t + noise``, and by rotational
    invariance ``E beta^T A beta = tr A / d`` for a unit ``beta``, so
    ``bias = lam^2 (1/d) tr (S + lam)^{-2} -> lam^2 m'(-lam)``.
    Variance: ``sigma^2 tr[(X^T X + n lam)^{-2} X^T X] = sigma^2 psi (1/d) tr[S (S+lam)^{-2}]``
    and ``S (S+lam)^{-2} = (S+lam)^{-1} - lam (S+lam)^{-2}``, so
    ``variance -> sigma^2 psi [m(-lam) - lam m'(-lam)]``.
    """
    m0 = mp_resolvent_trace(psi, lam)
    m1 = mp_resolvent_trace_squared(psi, lam)
    # the targeted rewrites that give simplify's forms here: the bias is already reduced,
    # the variance factors, and the risk is the sum over one denominator
    bias = sp.cancel(lam**2 * m1)
    variance = sp.factor(sigma**2 * psi * (m0 - lam * m1))
    risk = sp.together(bias + variance)
    steps = [
        Step("Stieltjes transform of Marchenko-Pastur at z = -lam (sp.solve, physical branch): "
             "m(-lam) = lim (1/d) tr (S + lam)^{-1}", m0),
        Step("its z-derivative m'(-lam) = lim (1/d) tr (S + lam)^{-2} (sp.diff)", m1),
        Step("bias lam^2 m'(-lam) (rotational invariance: E b^T A b = tr A / d)", bias),
        Step("variance sigma^2 psi [m(-lam) - lam m'(-lam)]", variance),
        Step("ridge risk, psi = d/n", risk),
    ]
    return bias, variance, risk, steps


def _ridge_kappa() -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr, list[Step]]:
    """The ridge bias and variance as functions of ``kappa = lam (1 + psi m(-lam))``.

    Implicit differentiation of the Marchenko–Pastur equation ``F(m, z) = 0`` gives
    ``m' = -F_z / F_m`` as a rational function of ``m`` and ``z``; the substitution
    ``m = (kappa/lam - 1)/psi`` turns ``F = 0`` into an equation SymPy solves for
    ``lam = lam(kappa)``, and after it the bias and the variance are rational in
    ``kappa``.  ``kappa(lam)`` itself comes from the closed form of ``m(-lam)``.
    Returns ``(bias(kappa), variance(kappa), risk(kappa), kappa(psi, lam), steps)``.
    """
    m_, z_ = m, z
    equation = psi * z_ * m_**2 - (1 - psi - z_) * m_ + 1
    slope = (-sp.diff(equation, z_) / sp.diff(equation, m_)).subs(z_, -lam)
    bias_m = lam**2 * slope
    variance_m = sigma**2 * psi * (m_ - lam * slope)
    m_of_kappa = (_KAPPA / lam - 1) / psi
    (lam_of_kappa,) = sp.solve(sp.numer(sp.together(equation.subs(z_, -lam).subs(m_, m_of_kappa))), lam)

    def in_kappa(expr):
        return sp.factor(expr.subs(m_, m_of_kappa).subs(lam, lam_of_kappa))

    bias_k, variance_k = in_kappa(bias_m), in_kappa(variance_m)
    risk_k = in_kappa(bias_m + variance_m)
    kappa = sp.simplify(lam * (1 + psi * mp_resolvent_trace(psi, lam)))
    steps = [
        Step("implicit differentiation of the MP equation: m'(-lam) = -F_z/F_m", slope),
        Step("kappa = lam (1 + psi m(-lam)); the MP equation gives lam(kappa) (sp.solve)", lam_of_kappa),
        Step("kappa(lam) from the closed form of m(-lam)", kappa),
        Step("bias in kappa", bias_k),
        Step("variance in kappa", variance_k),
        Step("risk in kappa", risk_k),
    ]
    return bias_k, variance_k, risk_k, kappa, steps


def _stable_sqrt_sum(expr: sp.Expr) -> sp.Expr:
    """Rewrite ``c (sqrt(Q) - B)`` so that float64 does not subtract nearly equal numbers.

    ``expr`` must be linear in one square root.  Where ``B > 0`` the difference is
    rationalised, ``c (Q - B^2) / (sqrt(Q) + B)`` with ``Q - B^2`` simplified by SymPy;
    where ``B <= 0`` the sum is already free of cancellation.  ``Q`` itself is written
    ``B^2 + (Q - B^2)``.  Algebraically equal on both branches.
    """
    (root,) = [p for p in expr.atoms(sp.Pow) if p.exp == sp.Rational(1, 2)]
    r = sp.Dummy("r")
    linear = sp.expand(expr.subs(root, r))
    c1, c0 = linear.coeff(r, 1), linear.coeff(r, 0)
    b = sp.simplify(-c0 / c1)
    gap = sp.factor(sp.expand(root**2 - b**2))
    # Q written as B^2 + gap (gap >= 0 for the real roots used here) is a sum of
    # nonnegative terms: no cancellation inside the root either
    root = sp.sqrt(b**2 + gap)
    return sp.Piecewise((c1 * (root - b), b <= 0), (c1 * gap / (root + b), True))


def _limit_at_zero(expr: sp.Expr) -> sp.Expr:
    """``lim_{lam -> 0+} expr`` for ``expr`` rational in ``lam`` and square roots of
    arguments that are nonnegative for ``lam >= 0``.

    Where the cancelled denominator is provably nonzero at ``lam = 0`` (or, expanded, a
    nonzero expression in the other symbols: nonzero for generic values of them, as
    ``sp.limit`` assumes too) the expression is continuous there (sums, products and
    square roots of continuous functions, divided by a nonvanishing one), so the limit is
    the value: substituted, without ``sp.limit``'s series expansion.  Otherwise
    ``sp.limit`` takes it.
    """
    reduced = sp.cancel(expr)
    _, den = sp.fraction(reduced)
    value = reduced.subs(lam, 0)
    if den.subs(lam, 0).is_zero is False and value.is_finite:
        return value
    # a root of a perfect square at lam = 0 (sqrt(2 e + (1 - e)^2 - 1) = e, e > 0) hides
    # the denominator's value there: expanded (into the roots' arguments) it shows.  Not
    # identically zero, it vanishes only at isolated values of the other symbols (e = 1),
    # which sp.limit too treats as generic: the limit is the value there as well
    at_zero = sp.expand(den.subs(lam, 0))
    if at_zero != 0 and not at_zero.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        value = sp.cancel(sp.expand(value))
        if not value.has(sp.oo, -sp.oo, sp.zoo, sp.nan) and sp.expand(sp.fraction(value)[1]) != 0:
            return value
    return sp.limit(expr, lam, 0, "+")


@memo
def _ridgeless_limit(expr: sp.Expr) -> sp.Piecewise:
    """``lim_{lam -> 0+}`` of a ridge expression in ``psi, lam, sigma``, as a function of gamma.

    The square root ``sqrt((lam + psi - 1)^2 + 4 lam)`` tends to ``|psi - 1|``; SymPy
    takes the limit on each side with ``psi = 1 + e`` (``gamma < 1``) or ``psi = 1 - e``
    (``gamma > 1``), ``e > 0``, then substitutes ``e`` and ``psi = 1/gamma`` back.  At
    ``psi = 1`` it takes the limit with ``sigma > 0`` and with ``sigma = 0`` separately.
    """
    e = sp.Symbol("e", positive=True)
    s_pos = sp.Symbol("s", positive=True)
    under = _limit_at_zero(expr.subs(psi, 1 + e)).subs(e, (1 - gamma) / gamma)
    over = _limit_at_zero(expr.subs(psi, 1 - e)).subs(e, (gamma - 1) / gamma)
    sides = [
        (_noise_polynomial(sp.cancel(under)), gamma < 1),
        (_noise_polynomial(sp.cancel(over)), gamma > 1),
    ]
    if not expr.has(sigma):
        return sp.Piecewise(*sides, (sp.limit(expr.subs(psi, 1), lam, 0, "+"), sp.Eq(gamma, 1)))
    at_one_noisy = sp.limit(expr.subs({psi: 1, sigma: s_pos}), lam, 0, "+").subs(s_pos, sigma)
    at_one_clean = sp.limit(expr.subs({psi: 1, sigma: 0}), lam, 0, "+")
    return sp.Piecewise(
        *sides,
        (at_one_clean, sp.Eq(gamma, 1) & sp.Eq(sigma, 0)),
        (at_one_noisy, sp.Eq(gamma, 1) & (sigma > 0)),
    )


def _noise_polynomial(expr: sp.Expr) -> sp.Expr:
    """``expr`` over one denominator, its numerator a polynomial in ``sigma`` with each
    coefficient factored in ``gamma``.

    Algebraically the identity; numerically it keeps ``(gamma - 1)^2`` as a square, so
    float64 never subtracts ``gamma`` from ``1`` after adding the noise term (which
    loses digits next to the interpolation threshold).  ``Piecewise`` values are mapped.
    """
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(_noise_polynomial(v), c) for v, c in expr.args])
    if not expr.has(gamma) or expr.has(sp.oo):
        return expr
    num, den = sp.fraction(sp.together(expr))
    coefficients = sp.Poly(sp.expand(num), sigma).as_dict()
    num = sp.Add(*[sp.factor(coef) * sigma**power for (power,), coef in coefficients.items()])
    return num / sp.factor(den)


@memo
def _to_gamma(expr: sp.Expr) -> sp.Expr:
    return sp.simplify(expr.subs(psi, 1 / gamma))


# -- finite size ---------------------------------------------------------------------------
@register(
    "scratch.risk_finite",
    title="Expected risk of minimum-norm interpolation at finite n, d",
    family="scratch",
    params=[
        parameters.n,
        parameters.d,
        _SIGMA,
    ],
    regime="finite n, d; Gaussian design; small-initialisation gradient flow (min-norm interpolator)",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_REFERENCE + "; " + INVERSE_WISHART_REFERENCE,
    notes=(
        "Uses the inverse-Wishart mean E[W^-1] = I/(k-p-1) as a cited lemma (Muirhead Thm "
        "3.2.12), checked by Monte Carlo in the tests; its one-row/one-column cases are "
        "derived in SymPy from E[1/chi^2]. At n in {d-1, d, d+1} the variance is infinite, "
        "so the risk is oo when sigma > 0 and equals the bias 1 - min(n, d)/d when sigma = 0."
    ),
    special_cases=[
        SpecialCase("noiseless, n = 5, d = 20: bias only, 1 - n/d", sp.Rational(3, 4), {sigma: 0, n: 5, d: 20}),
        SpecialCase("one sample: bias 1 - 1/d plus sigma^2 E[1/chi^2_d]", sp.Rational(9, 10) + sigma**2 / 8, {n: 1, d: 10}),
        SpecialCase("overdetermined, n = 30, d = 20: sigma^2 d/(n-d-1)", 20 * sigma**2 / 9, {n: 30, d: 20}),
        SpecialCase("n = d - 1 without noise: bias 1/d", sp.Rational(1, 20), {n: 19, d: 20, sigma: 0}),
    ],
    singular="n in {d-1, d, d+1} with sigma > 0: the expectation is infinite (encoded as oo)",
)
def risk_finite() -> Derivation:
    coefficient = projection_mean_coefficient(n, d)
    # over a common denominator, (d - min(n, d))/d: no cancellation at n = d - 1 in float64
    bias = sp.together(1 - coefficient)
    variance_under = sigma**2 * inverse_gram_trace_mean(n, d)
    variance_over = sigma**2 * d * inverse_covariance_mean_coefficient(n, d)
    under = _on_branch(bias, "under") + _on_branch(variance_under, "under")
    over = _on_branch(bias, "over") + _on_branch(variance_over, "over")
    expr = sp.Piecewise(
        (under, n < d - 1),
        (over, n > d + 1),
        (bias, (n >= d - 1) & (n <= d + 1) & sp.Eq(sigma, 0)),
        (sp.oo, (n >= d - 1) & (n <= d + 1) & (sigma > 0)),
    )
    steps = [
        Step("beta_sc = X^+ y = P beta_t + X^+ eps with P = X^+ X, so "
             "R = |(I - P) beta_t|^2 + |X^+ eps|^2 + cross term of mean zero"),
        Step("E P = c I by rotational invariance, c d = E rank X = min(n, d)", coefficient),
        Step("bias E|(I - P) beta_t|^2 = 1 - c for a unit teacher", bias),
        Step("n < d: E|X^+ eps|^2 = sigma^2 E tr (X X^T)^{-1}; lemma (inverse Wishart, "
             "Muirhead Thm 3.2.12): E tr (X X^T)^{-1} = n/(d - n - 1), n < d - 1", variance_under),
        Step("n > d: E|X^+ eps|^2 = sigma^2 tr E (X^T X)^{-1}; lemma: E (X^T X)^{-1} = I/(n - d - 1), "
             "n > d + 1", variance_over),
        Step("n <= d - 2 (substitute n = d - 2 - j, j >= 0)", under),
        Step("n >= d + 2 (substitute n = d + 2 + j, j >= 0)", over),
        Step("n in {d-1, d, d+1}: the inverse moment diverges; risk oo if sigma > 0, bias if "
             "sigma = 0 (the branches are ordered, so SymPy drops the implied band "
             "d - 1 <= n <= d + 1 from the last two conditions)", expr),
    ]
    extras = {
        "bias": bias,
        "variance_under": _on_branch(variance_under, "under"),
        "variance_over": _on_branch(variance_over, "over"),
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- proportional limit --------------------------------------------------------------------
@register(
    "scratch.risk",
    title="Risk of training from scratch (min-norm interpolation), proportional limit",
    family="scratch",
    params=[_GAMMA, _SIGMA],
    regime="n, d -> oo with gamma = n/d; Gaussian design; small-init gradient flow, any depth",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_REFERENCE,
    notes=(
        "Proportional limit of scratch.risk_finite taken by random_matrix.proportional_limit. "
        "Double descent: diverges at gamma = 1 when sigma > 0; equals 0 there when sigma = 0. "
        "scratch.risk_mp derives the same function through the Marchenko-Pastur law."
    ),
    special_cases=[
        SpecialCase("noiseless under-determined: 1 - gamma", sp.Rational(3, 4), {sigma: 0, gamma: sp.Rational(1, 4)}),
        SpecialCase("noiseless over-determined: 0", sp.Integer(0), {sigma: 0, gamma: 3}),
        SpecialCase("gamma = 2: sigma^2", sigma**2, {gamma: 2}),
        SpecialCase("gamma = 1 without noise: 0", sp.Integer(0), {gamma: 1, sigma: 0}),
        SpecialCase("agrees with the Marchenko-Pastur route", "scratch.risk_mp", {gamma: sp.Rational(3, 7)}),
        SpecialCase("agrees with the Marchenko-Pastur route", "scratch.risk_mp", {gamma: sp.Rational(7, 3)}),
    ],
    singular="gamma = 1 with sigma > 0: infinite (interpolation threshold), encoded as oo",
)
def risk() -> Derivation:
    finite = get("scratch.risk_finite").expr
    limit = proportional_limit(finite, gamma, n, d)
    (under, c_under), (over, c_over), *rest = limit.args
    # Piecewise branches are ordered: the first two cover gamma != 1, so the remaining
    # branches (from d - 1 <= n <= d + 1) hold only at gamma = 1
    expr = sp.Piecewise(
        (_noise_polynomial(under), c_under),
        (_noise_polynomial(over), c_over),
        *[(sp.simplify(value.subs(gamma, 1)), sp.Eq(gamma, 1) & cond) for value, cond in rest],
    )
    steps = [
        Step("finite-size expectation (scratch.risk_finite)", finite),
        Step("substitute n = gamma d, take d -> oo branch by branch; n < d - 1 becomes gamma < 1, "
             "n > d + 1 becomes gamma > 1", limit),
        Step("the remaining branches (d - 1 <= n <= d + 1) hold at gamma = 1; numerators "
             "written as polynomials in sigma with factored coefficients", expr),
    ]
    return Derivation(expr, steps=steps, extras={"bias": proportional_limit(1 - projection_mean_coefficient(), gamma)})


@register(
    "scratch.risk_mp",
    title="Risk of min-norm interpolation via the Marchenko-Pastur Stieltjes transform",
    family="scratch",
    params=[_GAMMA, _SIGMA],
    regime="n, d -> oo with gamma = n/d; ridgeless (lam -> 0+) limit of ridge regression",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_REFERENCE + "; " + _MP_REFERENCE,
    notes=(
        "Independent of scratch.risk: no inverse-Wishart lemma, only the Marchenko-Pastur "
        "equation psi z m^2 - (1 - psi - z) m + 1 = 0 (psi = d/n) solved by SymPy, and the "
        "limit lam -> 0+ of the ridge bias and variance. Extras hold the bias and variance."
    ),
    special_cases=[
        SpecialCase("gamma = 2: sigma^2", sigma**2, {gamma: 2}),
        SpecialCase("noiseless, gamma = 1/4: 3/4", sp.Rational(3, 4), {sigma: 0, gamma: sp.Rational(1, 4)}),
    ],
    singular="gamma = 1 with sigma > 0: infinite, encoded as oo",
)
def risk_mp() -> Derivation:
    bias, variance, ridge, steps = _ridge_risk_psi()
    bias0 = _ridgeless_limit(bias)
    variance0 = _ridgeless_limit(variance)
    expr = _ridgeless_limit(ridge)
    steps = steps + [
        Step("ridgeless limit lam -> 0+ of the bias, psi = 1/gamma", bias0),
        Step("ridgeless limit lam -> 0+ of the variance", variance0),
        Step("risk of min-norm interpolation", expr),
    ]
    return Derivation(expr, steps=steps, extras={"bias": bias0, "variance": variance0})


# -- ridge -------------------------------------------------------------------------------
@register(
    "scratch.risk_ridge",
    title="Risk of isotropic ridge regression from scratch, proportional limit",
    family="scratch",
    params=[_GAMMA, _SIGMA, _LAM],
    regime="n, d -> oo with gamma = n/d; ridge (1/n)|y - X w|^2 + lam |w|^2, unit isotropic signal",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_MP_REFERENCE + "; regularised baseline of SPEC section 2",
    notes=(
        "Bias lam^2 m'(-lam) and variance sigma^2 psi [m(-lam) - lam m'(-lam)], psi = d/n = 1/gamma, "
        "with m the Marchenko-Pastur Stieltjes transform. lam = 0 is the ridgeless limit "
        "(scratch.risk_mp), encoded as its own branch."
    ),
    special_cases=[
        SpecialCase("lam -> 0+ is min-norm interpolation (gamma < 1)", "scratch.risk",
                    {gamma: sp.Rational(1, 3)}, (lam, 0, "+")),
        SpecialCase("lam -> 0+ is min-norm interpolation (gamma > 1)", "scratch.risk",
                    {gamma: sp.Rational(5, 2)}, (lam, 0, "+")),
        SpecialCase("fixed lam, many samples: only the shrinkage bias (lam/(1+lam))^2 remains",
                    sp.Rational(1, 4), {lam: 1, sigma: 1}, (gamma, sp.oo, "-")),
    ],
    singular="gamma = 1, sigma > 0, lam = 0: infinite (the ridgeless peak), encoded as oo",
)
def risk_ridge() -> Derivation:
    _, _, ridge, steps = _ridge_risk_psi()
    bias_k, variance_k, risk_k, kappa, kappa_steps = _ridge_kappa()
    kappa_gamma = _to_gamma(kappa)
    stable_kappa = _stable_sqrt_sum(kappa_gamma)
    # sp.together writes 1 - psi as (gamma - 1)/gamma, exact near gamma = 1 in float64
    positive = sp.together(risk_k.subs(psi, 1 / gamma)).subs(_KAPPA, stable_kappa)
    ridgeless = _ridgeless_limit(ridge)
    # the ridgeless branches apply only at lam = 0
    expr = sp.Piecewise(
        (positive, lam > 0),
        *[(value, cond & sp.Eq(lam, 0)) for value, cond in ridgeless.args],
    )
    steps = steps + kappa_steps + [
        Step("kappa with psi = 1/gamma, written without cancellation (rationalised where "
             "lam + psi - 1 > 0)", stable_kappa),
        Step("lam > 0: the risk in kappa, psi = 1/gamma", positive),
        Step("lam = 0: the ridgeless limit lam -> 0+", ridgeless),
    ]
    extras = {
        "kappa": kappa_gamma,
        "bias": sp.together(bias_k.subs(psi, 1 / gamma)).subs(_KAPPA, stable_kappa),
        "variance": sp.together(variance_k.subs(psi, 1 / gamma)).subs(_KAPPA, stable_kappa),
        "risk_resolvent": _to_gamma(ridge),
    }
    return Derivation(expr, steps=steps, extras=extras)


@register(
    "scratch.risk_optimal_ridge",
    title="Risk of optimally tuned ridge regression from scratch, proportional limit",
    family="scratch",
    params=[_GAMMA, _SIGMA],
    regime="n, d -> oo with gamma = n/d; ridge at the risk-minimising lam, unit isotropic signal",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_MP_REFERENCE + "; regularised baseline of SPEC section 2",
    notes=(
        "SymPy solves dR/dlam = 0: roots lam = sigma^2 psi and lam = -(sqrt(psi) - 1)^2 <= 0 "
        "(outside the domain). dR/dlam factors as (lam - sigma^2 psi) times a positive "
        "function, so lam* = sigma^2 / gamma is the global minimiser on lam >= 0 "
        "(lam* = 0 when sigma = 0). Finite at gamma = 1: no double-descent peak. The extra "
        "lam_star holds the optimal strength."
    ),
    special_cases=[
        SpecialCase("noiseless: lam* = 0, ridgeless bias 1 - gamma", sp.Rational(2, 3), {sigma: 0, gamma: sp.Rational(1, 3)}),
        SpecialCase("noiseless over-determined: 0", sp.Integer(0), {sigma: 0, gamma: 3}),
        SpecialCase("many samples: risk -> 0", sp.Integer(0), {sigma: 1}, (gamma, sp.oo, "-")),
        SpecialCase("no samples: risk -> 1", sp.Integer(1), {sigma: 1}, (gamma, 0, "+")),
    ],
    singular="none: finite for every gamma > 0 and sigma >= 0",
)
def risk_optimal_ridge() -> Derivation:
    _, _, ridge, steps = _ridge_risk_psi()
    slope = sp.factor(sp.diff(ridge, lam))  # factored directly: the form simplify-then-factor gives
    roots = sp.solve(sp.numer(sp.together(slope)), lam)
    # keep the root that is nonnegative for every psi > 0, sigma >= 0
    admissible = [r for r in roots if sp.simplify(r).is_nonnegative]
    (lam_star,) = admissible
    positive_factor = sp.factor(slope / (lam - lam_star))
    optimum = sp.simplify(ridge.subs(lam, lam_star))
    expr = _stable_sqrt_sum(_to_gamma(optimum))
    steps = steps + [
        Step("dR/dlam (sp.diff, factored)", slope),
        Step("roots of dR/dlam = 0 (sp.solve)", sp.Tuple(*roots)),
        Step("the nonnegative root", lam_star),
        Step("dR/dlam / (lam - lam*): positive, so R decreases below lam* and increases above it",
             positive_factor),
        Step("R at lam*", optimum),
        Step("psi = 1/gamma, rationalised where the square root would cancel", expr),
    ]
    return Derivation(expr, steps=steps, extras={"lam_star": _to_gamma(lam_star),
                                                 "slope_factor": positive_factor})
