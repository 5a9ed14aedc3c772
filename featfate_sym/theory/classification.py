"""Classification of Gaussian mixtures with the square loss: scratch, linear transfer and
fine-tuning of a deep linear network (issue 13, first slice).

Model.  Labels ``y = +-1`` with probability 1/2 each, inputs ``x = y mu + z`` with
``z ~ N(0, I_d)``.  Source and target class means ``mu_s``, ``mu_t`` have the same norm
``|mu_s| = |mu_t| = m`` and ``mu_s . mu_t = m^2 cos(theta)``.  Every classifier here is
linear, ``sign(w . x)``, trained with the square loss on the labels; its test error on the
target mixture is *exactly* ``P(y w.x < 0) = Phi(-(w . mu_t)/|w|)`` (``Phi`` the standard
normal CDF), since ``y w.x = w.mu_t + y w.z`` and ``y w.z ~ N(0, |w|^2)``.  ``n = gamma d``
target samples, proportional limit ``n, d -> oo``.

Geometry.  With ``e_1 = mu_t/m``, every input is ``x = s e_1 + z_perp`` with
``s = y m + z . e_1`` and ``z_perp`` isotropic in the ``d - 1`` other directions and
independent of ``(y, s)``.  The design is ``X = s e_1^T + Z_perp``: the label information
lives in one column, the rest is a pure Gaussian matrix, to which the Wishart lemmas of
:mod:`featfate_sym.theory.random_matrix` apply.

Results registered (family ``classification``, key prefix ``clf.``):

- ``clf.scratch.error`` -- min-norm least squares ``w = X^+ y`` (small-initialisation
  gradient flow from scratch), both sides of ``gamma = 1``; double-descent peak at
  ``gamma = 1`` where the error is 1/2 (chance);
- ``clf.lt.error_finite`` -- linear transfer (readout refitted on the frozen pretrained
  feature), exact at every ``n``;
- ``clf.lt.error`` -- its limit ``n -> oo``;
- ``clf.lt.transferability`` -- ``clf.scratch.error - clf.lt.error``;
- ``clf.lt.boundary`` -- the angle ``theta*(gamma, m)`` where that transferability vanishes;
- ``clf.ft.error``, ``clf.ft.transferability`` -- fine-tuning all layers, with the
  null-space part of the end point frozen at its pretrained value (``c = 1``: exact for a
  one-layer network, an approximation for deeper ones).
"""

from __future__ import annotations

import functools

import sympy as sp

from featfate_sym import parameters
from featfate_sym.registry import (
    Derivation,
    Exactness,
    ImplicitRoot,
    NumericForm,
    SpecialCase,
    Source,
    Status,
    Step,
    get,
    register,
)
from featfate_sym.symbols import d, ell_c, gamma, m_mean, n, theta
from featfate_sym.theory.random_matrix import (
    INVERSE_WISHART_REFERENCE,
    inverse_covariance_mean_coefficient,
    inverse_gram_trace_mean,
    projection_mean_coefficient,
    proportional_limit,
)
from featfate_sym.theory.zero import is_zero

m = m_mean

_FAMILY = "classification"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194 (model of Sec. 3 with Gaussian-mixture labels); not a result of the paper"
_LEMMAS = (
    INVERSE_WISHART_REFERENCE
    + "; concentration of quadratic forms u^T A u ~ |u|^2 tr(A)/dim for a rotation-invariant A "
    "independent of u (Bai & Silverstein 2010, Lemma B.26)"
)

# theta is the angle of the class means, the teachers of the discriminants
_GAMMA, _THETA, _M, _N = parameters.gamma, parameters.theta, parameters.m, parameters.n

_REGIME = (
    "n, d -> oo with gamma = n/d; labels +-1, x = y mu + z, z ~ N(0, I_d); square loss; "
    "test error Phi(-(w . mu_t)/|w|) of the trained weights"
)

#: integration variable of the normal density
_T = sp.Symbol("t", real=True)
#: a generic real argument of the tail functions
_X = sp.Symbol("x", real=True)
#: the label and one standard normal coordinate, for the mixture moments
_Y = sp.Symbol("y", real=True)
_G1 = sp.Symbol("g_1", real=True)
_G2 = sp.Symbol("g_2", real=True)
#: the classifier's coefficient along e_1 = mu_t / m
_W = sp.Symbol("w_par", real=True)
#: ``|cos(theta)|`` while taking the limit of the linear-transfer error
_K = sp.Symbol("k", positive=True)
#: ``cos(theta)^2`` while solving for the phase boundary
_C2 = sp.Symbol("C", positive=True)
#: ``rho = w . mu_t / |w|``, the classifier's margin
_RHO = sp.Symbol("rho", real=True)
#: positive distance from the threshold, ``gamma = 1 - e`` or ``1 + e``
_E = sp.Symbol("e", positive=True)


# -- Gaussian facts, derived ----------------------------------------------------------------
def _density(t):
    return sp.exp(-t**2 / 2) / sp.sqrt(2 * sp.pi)


@functools.lru_cache(maxsize=1)
def _upper_tail_form() -> sp.Expr:
    return sp.integrate(_density(_T), (_T, _X, sp.oo))


@functools.lru_cache(maxsize=1)
def _lower_tail_form() -> sp.Expr:
    # Phi(x) = int_{-oo}^x phi(t) dt; with t = -u it is int_{-x}^oo phi(-u) du, which
    # SymPy integrates into a form without the cancellation of 1 - Q(x)
    u = sp.Symbol("u", real=True)
    return sp.integrate(_density(-u), (u, -_X, sp.oo))


def upper_tail(x) -> sp.Expr:
    """``Q(x) = P(g > x)``, ``g ~ N(0, 1)``: ``sp.integrate`` of the density over ``(x, oo)``."""
    return _upper_tail_form().subs(_X, x)


def lower_tail(x) -> sp.Expr:
    """``Phi(x) = P(g < x)``: the density integrated over ``(-oo, x)`` after ``t = -u``."""
    return _lower_tail_form().subs(_X, x)


def error_of_margin(rho) -> sp.Expr:
    """Test error ``P(y w.x < 0)`` of ``sign(w . x)`` with margin ``rho = w.mu_t/|w|``.

    ``y w.x = w.mu_t + |w| g`` with ``g ~ N(0, 1)`` (``y w.z`` is normal and independent of
    ``y``), so the error is ``P(g < -rho) = Phi(-rho)``.
    """
    return lower_tail(-rho)


def mixture_mean(expr: sp.Expr) -> sp.Expr:
    """``E[expr]`` over ``y = +-1`` (probability 1/2 each) and independent standard normal
    coordinates ``g_1, g_2`` (integrated against their densities)."""
    out = sp.expand(expr)
    for g in (_G1, _G2):
        if out.has(g):
            # polynomial in g: each power g^k replaced by its moment E g^k (sp.integrate of
            # g^k against the density; integrating the whole expression would let SymPy
            # rewrite the coefficients, e.g. cos(theta) as |cos(theta)|)
            poly = sp.Poly(out, g)
            out = sp.Add(*[coeff * _normal_moment(k) for (k,), coeff in poly.terms()])
    return sp.together((out.subs(_Y, 1) + out.subs(_Y, -1)) / 2)


@functools.lru_cache(maxsize=8)
def _normal_moment(k: int) -> sp.Expr:
    """``E g^k`` for ``g ~ N(0, 1)`` (``sp.integrate``)."""
    # the constant 1/sqrt(2 pi) of the density outside the integral (the same value;
    # SymPy integrates t^k exp(-t^2/2) several times faster)
    return sp.integrate(_T**k * sp.exp(-_T**2 / 2), (_T, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)


def _branch(pw: sp.Expr, condition) -> sp.Expr:
    for value, cond in pw.args:
        if cond == condition:
            return value
    raise ArithmeticError(f"no branch {condition} in {pw}")


def _expanded_sums(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every sum in it expanded (bottom up) and signs normalised
    (``sp.signsimp``): a targeted rewrite of a product of powers of polynomials."""
    return sp.signsimp(sp.bottom_up(expr, lambda e: sp.expand(e) if e.is_Add else e))


# -- shared derivations -------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _pretrained() -> tuple[sp.Expr, list[Step]]:
    """The population source minimiser ``beta_s`` in the basis ``(mu_s/m, nu)``.

    Population source loss ``E (y - b . x)^2`` with ``x = (y m + g_1) mu_hat_s + g_2 nu +
    ...``: the remaining coordinates are pure noise and add ``|b_rest|^2``, minimised at 0.
    The loss is a positive-definite quadratic (``E x x^T = I + mu_s mu_s^T``), so its
    stationary point is the unique minimiser, where small-initialisation gradient flow of
    the deep linear network ends.
    """
    b1, b2 = sp.symbols("b_1 b_2", real=True)
    loss = mixture_mean((_Y - b1 * (_Y * m + _G1) - b2 * _G2) ** 2)
    solution = sp.solve([sp.diff(loss, b1), sp.diff(loss, b2)], [b1, b2], dict=True)
    (sol,) = solution
    beta = sp.Matrix([sp.simplify(sol[b1]), sp.simplify(sol[b2])])
    steps = [
        Step("population source loss E(y - b.x)^2 in the plane of mu_s and a unit nu perpendicular "
             "to it (other coordinates are noise and vanish at the minimum)", loss),
        Step("its unique stationary point (sp.solve of the gradient): beta_s = mu_s/(1 + m^2), a "
             "multiple of mu_s; the pretrained deep linear network ends there and its one "
             "feature is f = beta_s/|beta_s| = mu_s/m", sp.Tuple(*beta)),
    ]
    return beta, steps


def _moments() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``|y|^2/n, y.s/n, |s|^2/n`` in the limit: ``E y^2, E y s, E s^2`` with ``s = y m + g``."""
    s = _Y * m + _G1
    return mixture_mean(_Y**2), mixture_mean(_Y * s), mixture_mean(s**2)


@functools.lru_cache(maxsize=1)
def _scratch() -> dict:
    """Coefficient along ``e_1``, squared norm and margin of ``w = X^+ y`` on both sides."""
    ey2, eys, es2 = _moments()
    q = ey2 - 2 * _W * eys + _W**2 * es2  # |y - s w|^2 / n
    # gamma < 1: |w_perp|^2 = r^T W^{-1} r, W = Z_perp Z_perp^T ~ Wishart_n(d - 1);
    # r^T W^{-1} r -> (|r|^2/n) lim E tr W^{-1}
    kappa = _branch(proportional_limit(inverse_gram_trace_mean(n, d - 1), gamma), gamma < 1)
    objective_under = _W**2 + kappa * q
    # simplify=False: the root is factored next (the same form either way)
    (w_under,) = sp.solve(sp.diff(objective_under, _W), _W, simplify=False)
    w_under = sp.factor(w_under)
    norm2_under = sp.factor(sp.cancel(objective_under.subs(_W, w_under)))
    # gamma > 1: least squares; for given w_par the residual is (I - P_Z) r with P_Z the
    # projector onto the d - 1 columns of Z_perp, E P_Z = ((d-1)/n) I_n, so w_par minimises
    # (1 - (d-1)/n) |r|^2; and |w_perp|^2 = r^T Z (Z^T Z)^{-2} Z^T r -> (|r|^2/n) tr E (Z^T Z)^{-1}
    residual = proportional_limit(1 - projection_mean_coefficient(d - 1, n).subs(sp.Min(d - 1, n), d - 1), gamma)
    objective_over = residual * q
    (w_over,) = sp.solve(sp.diff(objective_over, _W), _W)
    w_over = sp.factor(w_over)
    trace_over = _branch(proportional_limit((d - 1) * inverse_covariance_mean_coefficient(n, d - 1), gamma), gamma > 1)
    norm2_over = sp.factor(sp.together(w_over**2 + trace_over * q.subs(_W, w_over)))
    margins = {}
    for side, w, norm2, inside in (("under", w_under, norm2_under, 1 / (1 + _E)), ("over", w_over, norm2_over, 1 + _E)):
        overlap = m * w
        if not sp.simplify(overlap.subs(gamma, inside)).is_positive:
            raise ArithmeticError(f"the scratch overlap is not positive ({side})")
        # the margin is positive: write it as the root of its factored square
        margins[side] = sp.sqrt(sp.factor(sp.together(overlap**2 / norm2)))
    return {
        "q": q, "kappa": kappa, "objective_under": objective_under, "w_under": w_under,
        "norm2_under": norm2_under, "residual": residual, "w_over": w_over, "trace_over": trace_over,
        "norm2_over": norm2_over, "margin_under": margins["under"], "margin_over": margins["over"],
    }


# -- scratch -----------------------------------------------------------------------------------
@register(
    "clf.scratch.error",
    title="Test error of min-norm least-squares classification from scratch, proportional limit",
    family=_FAMILY,
    params=[_GAMMA, _M],
    regime=_REGIME + "; scratch: w = X^+ y (small-initialisation gradient flow, any depth); noiseless mixture",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_LEMMAS,
    notes=(
        "x = s e_1 + z_perp with s = y m + z.e_1, e_1 = mu_t/m. gamma < 1: w interpolates, "
        "w_perp = Z_perp^+ (y - s w_par), |w_perp|^2 -> (gamma/(1-gamma)) q(w_par), "
        "q(w) = 1 - 2 m w + (1 + m^2) w^2; w_par minimises w^2 + |w_perp|^2 (sp.solve). "
        "gamma > 1: w_par minimises q (least squares) and |w_perp|^2 -> q/(gamma - 1). "
        "Double descent: the margin vanishes at gamma = 1 from both sides, so the error has a "
        "peak of exactly 1/2 (chance) there, the value encoded at gamma = 1 (its limit); it "
        "also tends to 1/2 as gamma -> 0 and to the Bayes error Phi(-m) as gamma -> oo. "
        "Extras: w_par, |w|^2 and the margin rho = w.mu_t/|w| on each side."
    ),
    special_cases=[
        SpecialCase("peak of chance level at the interpolation threshold (from below)", sp.Rational(1, 2),
                    {m: 2}, (gamma, 1, "-")),
        SpecialCase("peak of chance level at the interpolation threshold (from above)", sp.Rational(1, 2),
                    {m: 2}, (gamma, 1, "+")),
        SpecialCase("gamma = 1 is the limit 1/2", sp.Rational(1, 2), {gamma: 1, m: 3}),
        SpecialCase("no data: chance", sp.Rational(1, 2), {m: 1}, (gamma, 0, "+")),
        SpecialCase("gamma = 2, m = 1: margin sqrt(1/3)", sp.erfc(sp.sqrt(6) / 6) / 2, {gamma: 2, m: 1}),
    ],
    singular="gamma = 1: the margin vanishes, error 1/2 (the limit from both sides; finite, never NaN)",
)
def scratch_error() -> Derivation:
    sc = _scratch()
    under = error_of_margin(sc["margin_under"])
    over = error_of_margin(sc["margin_over"])
    at_one = sp.limit(under, gamma, 1, "-")
    if not is_zero(at_one - sp.limit(over, gamma, 1, "+")):
        raise ArithmeticError("the scratch error has different limits at gamma = 1")
    expr = sp.Piecewise((under, gamma < 1), (over, gamma > 1), (at_one, True))
    steps = [
        Step("test error of sign(w.x): y w.x = w.mu_t + y w.z with y w.z ~ N(0, |w|^2), so "
             "error = Phi(-rho), rho = w.mu_t/|w| (Phi by sp.integrate of the density)", error_of_margin(_RHO)),
        Step("x = s e_1 + z_perp, s = y m + z.e_1; label moments |y|^2/n, y.s/n, |s|^2/n -> "
             "E y^2, E y s, E s^2 (sp.integrate over the normal coordinate, average over y)",
             sp.Tuple(*_moments())),
        Step("q(w_par) = |y - s w_par|^2/n, the squared residual left for w_perp", sc["q"]),
        Step("gamma < 1: w_perp = Z_perp^+ (y - s w_par); lemma (inverse Wishart, W = Z_perp Z_perp^T "
             "~ W_n(d-1, I)): E W^{-1} = I/(d - n - 2), and r^T W^{-1} r concentrates at "
             "(|r|^2/n) E tr W^{-1} -> kappa (random_matrix.inverse_gram_trace_mean, proportional limit)",
             sc["kappa"]),
        Step("|w|^2 = w_par^2 + kappa q(w_par), minimised over w_par (min-norm interpolation)",
             sc["objective_under"]),
        Step("its minimiser w_par (sp.solve of the derivative)", sc["w_under"]),
        Step("|w|^2 at the minimiser", sc["norm2_under"]),
        Step("margin rho = m w_par / |w| (positive; the root of its factored square)", sc["margin_under"]),
        Step("gamma > 1: for given w_par the least-squares residual is (I - P_Z) r, E P_Z = ((d-1)/n) I "
             "(random_matrix.projection_mean_coefficient), so w_par minimises (1 - 1/gamma) q", sc["residual"] * sc["q"]),
        Step("its minimiser: the population least-squares coefficient", sc["w_over"]),
        Step("|w_perp|^2 = r^T Z (Z^T Z)^{-2} Z^T r -> q tr E (Z^T Z)^{-1}; lemma E (Z^T Z)^{-1} = "
             "I/(n - d), trace -> 1/(gamma - 1) (random_matrix.inverse_covariance_mean_coefficient)",
             sc["trace_over"]),
        Step("|w|^2 = w_par^2 + q(w_par)/(gamma - 1)", sc["norm2_over"]),
        Step("margin rho, gamma > 1", sc["margin_over"]),
        Step("both margins vanish at gamma = 1: the limits of the error from both sides (sp.limit) agree",
             at_one),
        Step("test error of min-norm least squares (Piecewise; gamma = 1 is the limit)", expr),
    ]
    extras = {
        "w_par_under": sc["w_under"], "norm2_under": sc["norm2_under"], "margin_under": sc["margin_under"],
        "w_par_over": sc["w_over"], "norm2_over": sc["norm2_over"], "margin_over": sc["margin_over"],
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- linear transfer -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _linear_transfer_finite() -> tuple[sp.Expr, list[Step]]:
    beta, steps = _pretrained()
    feature = beta / sp.sqrt(sp.simplify((beta.T * beta)[0, 0]))
    mu_hat_t = sp.Matrix([sp.cos(theta), sp.sin(theta)])  # in the basis (mu_s/m, nu)
    alignment = sp.simplify((mu_hat_t.T * feature)[0, 0])
    # one sample's contribution y x.f = y (y m f.mu_hat_t + z.f), z.f ~ N(0, 1)
    term = _Y * (_Y * m * alignment + _G1)
    mean1 = mixture_mean(term)
    var1 = sp.simplify(mixture_mean(term**2) - mean1**2)
    mean_sum, sd_sum = n * mean1, sp.sqrt(n * var1)
    positive = upper_tail(-mean_sum / sd_sum)  # P(S > 0)
    negative = lower_tail(-mean_sum / sd_sum)  # P(S < 0)
    err_pos = error_of_margin(m * alignment)  # w = a f, a > 0: margin m f.mu_hat_t
    err_neg = error_of_margin(-m * alignment)
    signed = positive * err_pos + negative * err_neg
    # theta -> pi - theta swaps the two terms: the error is even in cos(theta).  Written in
    # |cos theta| every factor is either a tail Q(.) of a nonnegative argument or 1 - Q(.)
    # >= 1/2 (SymPy writes erfc(-x) as 2 - erfc(x)): no cancellation in float64
    c = sp.Symbol("c", real=True)
    if not is_zero(signed.subs(sp.cos(theta), c) - signed.subs(sp.cos(theta), -c)):
        raise ArithmeticError("the linear-transfer error is not even in cos(theta)")
    expr = signed.subs(sp.cos(theta), sp.Abs(sp.cos(theta)))
    steps = steps + [
        Step("f . mu_t / m for the unit feature f = beta_s/|beta_s|", alignment),
        Step("one frozen feature u = X f; the readout a = u.y/|u|^2 gives w = a f, whose error is "
             "Phi(-sign(a) m cos theta): only sign(a) = sign(S), S = sum_i y_i x_i.f, matters"),
        Step("y_i x_i.f = m cos(theta) + y_i z_i.f with y_i z_i.f ~ N(0, 1) exactly (sign symmetry): "
             "mean and variance of one term (mixture moments)", sp.Tuple(mean1, var1)),
        Step("S ~ N(n m cos(theta), n) exactly; P(S > 0) and P(S < 0) (normal tails, sp.integrate)",
             sp.Tuple(positive, negative)),
        Step("error = P(S > 0) Phi(-m cos theta) + P(S < 0) Phi(m cos theta)", signed),
        Step("even in cos(theta) (checked by sp.simplify): written in |cos theta|, every factor a "
             "normal tail of a nonnegative argument or one minus it", expr),
    ]
    return expr, steps


@register(
    "clf.lt.error_finite",
    title="Test error of linear transfer (readout on the frozen source feature) at finite n",
    family=_FAMILY,
    params=[_THETA, _M, _N],
    regime="any n >= 1, any d; labels +-1, x = y mu + z; pretrained on the population source "
    "square loss; square-loss readout on the one frozen feature; exact test error of the weights",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
    notes=(
        "The pretrained network ends at beta_s = mu_s/(1 + m^2) (derived: population source "
        "minimiser), so its feature is f = mu_s/m. The readout w = a f, a = f^T X^T y/|X f|^2, "
        "has error Phi(-m cos theta) when a > 0 and Phi(m cos theta) when a < 0, and "
        "sign(a) = sign(S), S ~ N(n m cos theta, n) exactly: no approximation at any n, d. "
        "Independent of d and of |mu_s| (only the feature's direction enters). Written as a "
        "sum of products of normal tails with signed arguments: no cancellation."
    ),
    special_cases=[
        SpecialCase("orthogonal means: chance for every n", sp.Rational(1, 2), {theta: sp.pi / 2, n: 5, m: 2}),
        SpecialCase("large n is the limit form", "clf.lt.error", {theta: sp.pi / 5, m: 1}, (n, sp.oo, "-")),
        SpecialCase("opposite means: the readout's sign repairs the feature (large n)", "clf.lt.error",
                    {theta: 4 * sp.pi / 5, m: 1}, (n, sp.oo, "-")),
        SpecialCase("one sample, aligned, m = 1: 2 Phi(-1) Phi(1)",
                    sp.erfc(sp.sqrt(2) / 2) * (1 - sp.erfc(sp.sqrt(2) / 2) / 2), {theta: 0, n: 1, m: 1}),
    ],
    singular="none: finite for every n >= 1",
)
def lt_error_finite() -> Derivation:
    expr, steps = _linear_transfer_finite()
    return Derivation(expr, steps=steps)


@register(
    "clf.lt.error",
    title="Test error of linear transfer, n -> oo",
    family=_FAMILY,
    params=[_THETA, _M],
    regime="n -> oo (any d, any gamma); as clf.lt.error_finite",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
    notes=(
        "Limit n -> oo of clf.lt.error_finite (sp.limit), taken with cos(theta) = k and "
        "cos(theta) = -k, k > 0: both give Phi(-m k), so the error is Phi(-m |cos theta|): the "
        "fitted readout's sign turns an anti-aligned feature around, and theta and pi - theta "
        "transfer equally. At theta = pi/2 the error is 1/2 (the feature carries no label "
        "information). The finite-n form approaches it exponentially fast in n."
    ),
    special_cases=[
        SpecialCase("aligned means: the Bayes error", sp.erfc(sp.sqrt(2) / 2) / 2, {theta: 0, m: 1}),
        SpecialCase("orthogonal means: chance", sp.Rational(1, 2), {theta: sp.pi / 2}),
        SpecialCase("opposite means: the Bayes error too", sp.erfc(sp.sqrt(2)) / 2, {theta: sp.pi, m: 2}),
    ],
    singular="none",
)
def lt_error() -> Derivation:
    finite, _ = _linear_transfer_finite()
    aligned = sp.simplify(sp.limit(finite.subs(sp.cos(theta), _K), n, sp.oo))
    anti = sp.simplify(sp.limit(finite.subs(sp.cos(theta), -_K), n, sp.oo))
    if not is_zero(aligned - anti):
        raise ArithmeticError("the linear-transfer limits for cos(theta) = +-k differ")
    expr = aligned.subs(_K, sp.Abs(sp.cos(theta)))
    at_zero = sp.simplify(finite.subs(sp.cos(theta), 0))
    if not is_zero(at_zero - expr.subs(theta, sp.pi / 2)):
        raise ArithmeticError("the cos(theta) = 0 value differs")
    steps = [
        Step("finite-n error (clf.lt.error_finite)", finite),
        Step("cos(theta) = k > 0: limit n -> oo (sp.limit); P(S < 0) -> 0", aligned),
        Step("cos(theta) = -k < 0: limit n -> oo; P(S > 0) -> 0 and the readout flips the feature", anti),
        Step("cos(theta) = 0: 1/2 at every n", at_zero),
        Step("the three cases are one function of k = |cos theta|", expr),
    ]
    return Derivation(expr, steps=steps, extras={"aligned": aligned})


@register(
    "clf.lt.transferability",
    title="Transferability of linear transfer for Gaussian-mixture classification",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _M],
    regime=_REGIME + "; T = error(scratch) - error(linear transfer), positive when transfer helps",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
    notes=(
        "T = clf.scratch.error - clf.lt.error. Phi is strictly increasing, so T = 0 exactly "
        "where the scratch margin equals m |cos theta|: theta*(gamma, m) of clf.lt.boundary; "
        "T > 0 for |cos theta| > cos theta*. At gamma = 1 scratch is at chance and T >= 0 for "
        "every theta (0 only at theta = pi/2); unlike noisy regression, orthogonal tasks give "
        "T < 0 for every gamma != 1 (no anomalous band of positive transfer: a noiseless "
        "scratch classifier beats chance on both sides of its peak). Extras: the boundary in "
        "gamma at fixed theta: the roots gamma_minus <= gamma_plus of the quadratic below 1 "
        "(negative transfer between them; they exist iff sin(theta)^4 >= 4 cos(theta)^2/m^2) "
        "and gamma_above (negative transfer beyond it)."
    ),
    special_cases=[
        SpecialCase("gamma = 1: scratch at chance, T = 1/2 - error_lt", sp.Rational(1, 2) - sp.erfc(sp.sqrt(2) / 2) / 2,
                    {gamma: 1, theta: 0, m: 1}),
        SpecialCase("orthogonal means: T = error_sc - 1/2 <= 0", sp.Integer(0), {theta: sp.pi / 2, m: 1},
                    (gamma, 1, "-")),
        SpecialCase("orthogonal means, gamma = 1/2, m = 1: error_sc - 1/2 (scratch margin 1/sqrt(6))",
                    sp.erfc(sp.sqrt(3) / 6) / 2 - sp.Rational(1, 2), {gamma: sp.Rational(1, 2), theta: sp.pi / 2, m: 1}),
    ],
    singular="none: finite everywhere (gamma = 1 takes the scratch limit 1/2)",
)
def lt_transferability() -> Derivation:
    sc = get("clf.scratch.error").expr
    lt = get("clf.lt.error").expr
    expr = sp.Piecewise(*[(value - lt, cond) for value, cond in sc.args])
    margins = _scratch()
    under = sp.solve(margins["margin_under"] ** 2 - m**2 * _C2, gamma)
    over = sp.solve(margins["margin_over"] ** 2 - m**2 * _C2, gamma)
    cos2 = sp.cos(theta) ** 2
    roots_under = sorted([sp.simplify(r.subs(_C2, cos2)) for r in under], key=lambda r: float(r.subs({m: 3, theta: 1.2})))
    (gamma_above,) = [sp.factor(sp.trigsimp(r.subs(_C2, cos2))) for r in over]
    steps = [
        Step("T = error_sc - error_lt on each branch of the scratch error", expr),
        Step("T = 0 where the scratch margin squared equals m^2 cos(theta)^2 (Phi strictly increasing); "
             "below gamma = 1 a quadratic in gamma (sp.solve): gamma_minus, gamma_plus",
             sp.Tuple(*roots_under)),
        Step("above gamma = 1 linear in gamma: negative transfer beyond gamma_above", gamma_above),
    ]
    extras = {"gamma_minus": roots_under[0], "gamma_plus": roots_under[1], "gamma_above": gamma_above}
    return Derivation(expr, steps=steps, extras=extras)


@register(
    "clf.lt.boundary",
    title="Phase boundary theta*(gamma, m) of linear transfer for Gaussian-mixture classification",
    family=_FAMILY,
    params=[_GAMMA, _M],
    regime="proportional limit; as clf.lt.transferability",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
    notes=(
        "theta* in [0, pi/2] with clf.lt.transferability = 0 at theta = theta* and at pi - theta*; "
        "linear transfer helps (T > 0) for theta < theta* or theta > pi - theta*. From "
        "cos(theta*)^2 = rho_sc^2/m^2 (sp.solve), written as atan(sqrt(tan^2)) with tan^2 = "
        "(1 - cos^2)/cos^2 factored by SymPy (no cancellation near 0 or pi/2). theta* = pi/2 at "
        "gamma = 1 (scratch at chance: transfer never hurts) and as gamma -> 0; theta* -> 0 as "
        "gamma -> oo."
    ),
    special_cases=[
        SpecialCase("gamma = 1: transfer never hurts", sp.pi / 2, {gamma: 1, m: 2}),
        SpecialCase("gamma = 2, m = 1: tan(theta*)^2 = (1 + m^2)/(m^2 (gamma - 1)) = 2", sp.atan(sp.sqrt(2)),
                    {gamma: 2, m: 1}),
        SpecialCase("gamma = 1/2, m = 2: tan(theta*)^2 = (1 + gamma^2 m^2)/(m^2 gamma (1 - gamma)) = 2",
                    sp.atan(sp.sqrt(2)), {gamma: sp.Rational(1, 2), m: 2}),
    ],
    singular="none: finite for every gamma > 0, m > 0",
)
def lt_boundary() -> Derivation:
    margins = _scratch()
    d_error = sp.simplify(sp.diff(error_of_margin(_RHO), _RHO))
    out = {}
    steps = [Step("d error / d rho (sp.diff): negative, so T = 0 iff the margins are equal", d_error)]
    for side in ("under", "over"):
        (cos2,) = sp.solve(margins[f"margin_{side}"] ** 2 - m**2 * _C2, _C2)
        tan2 = sp.factor(sp.powsimp(sp.factor((1 - cos2) / cos2)))
        out[side] = sp.atan(sp.sqrt(tan2))
        steps += [
            Step(f"gamma {'<' if side == 'under' else '>'} 1: cos(theta*)^2 (sp.solve)", cos2),
            Step("tan(theta*)^2 = (1 - cos^2)/cos^2, factored", tan2),
        ]
    at_one = sp.limit(out["under"], gamma, 1, "-")
    if not is_zero(at_one - sp.limit(out["over"], gamma, 1, "+")):
        raise ArithmeticError("theta* is not continuous at gamma = 1")
    expr = sp.Piecewise((out["under"], gamma < 1), (out["over"], gamma > 1), (at_one, True))
    steps.append(Step("theta* = atan(sqrt(tan^2)); gamma = 1 the common limit", expr))
    return Derivation(expr, steps=steps)


# -- fine-tuning --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _fine_tuning() -> dict:
    sc = _scratch()
    beta, _ = _pretrained()
    _, _, es2 = _moments()
    # e_1^T P e_1 = s^T (s s^T + W)^{-1} s = A/(1 + A), A = s^T W^{-1} s (Sherman-Morrison)
    A = sp.Symbol("A", positive=True)
    W2 = sp.Matrix(2, 2, sp.symbols("W_11 W_12 W_12 W_22", real=True))
    s2 = sp.Matrix(sp.symbols("s_1 s_2", real=True))
    lhs = (s2.T * (s2 * s2.T + W2).inv() * s2)[0, 0]
    a2 = (s2.T * W2.inv() * s2)[0, 0]
    if not is_zero(lhs - a2 / (1 + a2)):
        raise ArithmeticError("Sherman-Morrison check failed")
    a_lim = sp.cancel(sc["kappa"] * es2)  # a rational function: cancel gives simplify's form
    alpha = sp.factor(sp.together(1 - (A / (1 + A)).subs(A, a_lim)))
    # perpendicular directions: tr(I - P) = d - rank X = d - n (n < d), minus the e_1 part,
    # shared by the d - 1 isotropic directions
    alpha_sym = sp.Symbol("alpha", positive=True)
    trace_null = d * (1 - projection_mean_coefficient(n, d)).subs(sp.Min(n, d), n)
    beta_perp = sp.simplify(proportional_limit((trace_null - alpha_sym) / (d - 1), gamma))
    norm_bs = sp.simplify(sp.sqrt((beta.T * beta)[0, 0]))
    # beta_s = |beta_s| (cos theta e_1 + sin theta e_2), e_2 perpendicular to mu_t
    overlap = sp.simplify(m * (sc["w_under"] + norm_bs * sp.cos(theta) * alpha))
    norm2 = sp.simplify(sc["norm2_under"] + norm_bs**2 * (sp.cos(theta) ** 2 * alpha + sp.sin(theta) ** 2 * beta_perp))
    # factored with gamma = 1 - e, e > 0 (so SymPy knows the signs of the factors), then
    # written back in gamma with every sum expanded and the signs normalised (the form
    # sp.simplify gives, without its searches): the denominator becomes a root of a sum
    # of positive terms
    margin = _expanded_sums(sp.factor((overlap / sp.sqrt(norm2)).subs(gamma, 1 - _E)).subs(_E, 1 - gamma))
    return {"alpha": alpha, "beta_perp": beta_perp, "norm_bs": norm_bs, "overlap": overlap,
            "norm2": norm2, "margin": margin, "sherman_morrison": lhs - a2 / (1 + a2)}


_FT_STATUS = Status(
    Source.DERIVED, Exactness.APPROXIMATION,
    neglected="the balanced-flow rescaling c^(L-1) of the null-space part for depth L >= 2 "
    "(c = 1 assumed; exact for L = 1, linear gradient flow from beta_s)",
)
_FT_NOTES = (
    "Fine-tuning by gradient flow from beta_s = mu_s/(1 + m^2) (m_s = m_t = m) moves beta only "
    "in the row space of X (P = X^+ X) and ends, for gamma < 1, at w = X^+ y + (I - P) beta_s "
    "(paper's c = 1 form). Unlike noiseless regression, c = 1 is NOT the balanced-flow end "
    "point here even without noise: the invariant |beta_N| ~ |beta|^((L-1)/L) would need "
    "|beta_s|^2 = |(I-P) beta_s|^2 + |X^+ y|^2, which fails (|X^+ y|^2 ~ gamma/((1-gamma)(1+gamma m^2)) "
    "vs |beta_s|^2 = m^2/(1+m^2)^2). Limits: e_1^T (I-P) e_1 -> alpha = (1 - gamma)/(1 + gamma m^2) "
    "(Sherman-Morrison with s^T W^{-1} s -> kappa (1 + m^2)), e_2^T (I-P) e_2 -> 1 - gamma for "
    "e_2 perpendicular to mu_t (trace), e_1^T (I-P) e_2 -> 0 (odd under reflecting e_2), and "
    "X^+ y . (I-P) beta_s = 0. gamma >= 1: P = I, fine-tuning is scratch."
)


@register(
    "clf.ft.error",
    title="Test error of fine-tuning (c = 1 form) for Gaussian-mixture classification",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _M],
    regime=_REGIME + "; fine-tuning all layers from the pretrained weights, end point "
    "X^+ y + (I - P) beta_s",
    status=_FT_STATUS,
    reference=_PAPER + " (the c = 1 end point of Thm 3.9); " + _LEMMAS,
    notes=_FT_NOTES,
    special_cases=[
        SpecialCase("gamma > 1: fine-tuning is scratch", "clf.scratch.error", {gamma: 3, theta: 1, m: 2}),
        SpecialCase("continuous at gamma = 1", sp.Rational(1, 2), {theta: sp.pi / 4, m: 1}, (gamma, 1, "-")),
        SpecialCase("no data: the pretrained classifier, error Phi(-m |cos theta|)", "clf.lt.error",
                    {theta: sp.pi / 5, m: 2}, (gamma, 0, "+")),
    ],
    singular="gamma = 1: error 1/2 (the limit from both sides)",
)
def ft_error() -> Derivation:
    ft = _fine_tuning()
    sc = get("clf.scratch.error").expr
    under = error_of_margin(ft["margin"])
    at_one = sp.limit(under, gamma, 1, "-")
    if not is_zero(at_one - _branch(sc, sp.true)):
        raise ArithmeticError("fine-tuning error is not continuous at gamma = 1")
    expr = sp.Piecewise((under, gamma < 1), (_branch(sc, gamma > 1), gamma > 1), (at_one, True))
    steps = [
        Step("the loss gradient lies in the row space of X: (I-P) beta stays (I-P) beta_s (L = 1; "
             "for L >= 2 balanced flow rescales it by c^(L-1), taken as 1 here) and P beta -> X^+ y"),
        Step("e_1^T P e_1 = s^T (s s^T + W)^{-1} s = A/(1 + A), A = s^T W^{-1} s "
             "(Sherman-Morrison, checked symbolically on 2 x 2)", ft["sherman_morrison"]),
        Step("e_1^T (I - P) e_1 -> alpha, with A -> kappa E s^2", ft["alpha"]),
        Step("e_2^T (I - P) e_2 -> (d - n - alpha)/(d - 1) -> 1 - gamma (trace; isotropy off e_1)",
             ft["beta_perp"]),
        Step("|beta_s| (pretraining, m_s = m)", ft["norm_bs"]),
        Step("w.mu_t = m (w_par + |beta_s| cos(theta) alpha)", ft["overlap"]),
        Step("|w|^2 = |X^+ y|^2 + |beta_s|^2 (cos^2 alpha + sin^2 (1 - gamma)) (the cross term vanishes: "
             "X^+ y lies in the row space)", ft["norm2"]),
        Step("margin w.mu_t/|w|, gamma < 1", ft["margin"]),
        Step("error (Piecewise: gamma > 1 is scratch; gamma = 1 the common limit 1/2)", expr),
    ]
    extras = {"margin_under": ft["margin"], "overlap_under": ft["overlap"], "norm2_under": ft["norm2"],
              "alpha": ft["alpha"]}
    return Derivation(expr, steps=steps, extras=extras)


@register(
    "clf.ft.transferability",
    title="Transferability of fine-tuning (c = 1 form) for Gaussian-mixture classification",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _M],
    regime=_REGIME + "; T = error(scratch) - error(fine-tuning, c = 1 end point)",
    status=_FT_STATUS,
    reference=_PAPER + " (the c = 1 end point of Thm 3.9); " + _LEMMAS,
    notes=_FT_NOTES + " T = 0 for gamma >= 1 and continuous there.",
    special_cases=[
        SpecialCase("gamma > 1: T = 0", sp.Integer(0), {gamma: 2}),
        SpecialCase("continuous at gamma = 1", sp.Integer(0), {theta: sp.pi / 3, m: 1}, (gamma, 1, "-")),
    ],
    singular="none: finite everywhere; 0 for gamma >= 1",
)
def ft_transferability() -> Derivation:
    sc = get("clf.scratch.error").expr
    ft = get("clf.ft.error").expr
    value = _branch(sc, gamma < 1) - _branch(ft, gamma < 1)
    expr = sp.Piecewise((value, gamma < 1), (sp.Integer(0), True))
    steps = [
        Step("T = error_sc - error_ft, gamma < 1", value),
        Step("gamma >= 1: fine-tuning equals scratch, T = 0", expr),
    ]
    return Derivation(expr, steps=steps)


# -- fine-tuning at any depth: the balanced-flow null-space scale ---------------------------------
#: the null-space scale of the balanced-flow end point, ``|beta_ft| = |beta_s| c^L``
_C = sp.Symbol("c", positive=True)
_DEPTH = parameters.L
_L = _DEPTH.symbol


@functools.lru_cache(maxsize=1)
def _fine_tuning_exact() -> dict:
    """The end point of balanced gradient flow from the pretrained network, any depth.

    The null-space part obeys the invariant of ``dln.balanced_flow``,
    ``dlog|beta_N|/dlog|beta| = (L-1)/L``; integrated from the pretrained state
    (``|beta| = |beta_s|``, ``|beta_N| = |(I-P) beta_s|``) to ``|beta_ft| = |beta_s| c^L`` it
    gives ``(I-P) beta_ft = c^(L-1) (I-P) beta_s`` (the direction is kept), while
    ``P beta_ft = X^+ y``; Pythagoras gives the root equation of ``c``.
    """
    sc, ft = _scratch(), _fine_tuning()
    exponent = get("dln.balanced_flow").extras["null_space_exponent"]
    log_norm = sp.Symbol("ell", real=True)  # log(|beta| / |beta_s|)
    scale = sp.exp(sp.integrate(exponent.subs(parameters.L.symbol, _L), (log_norm, 0, _L * sp.log(_C))))
    scale = sp.powdenest(sp.expand_log(scale, force=True), force=True)
    if scale != _C ** (_L - 1):
        raise ArithmeticError(f"the null-space factor is not c^(L-1): {scale}")
    norm_bs = ft["norm_bs"]
    # a = |(I-P) beta_s|^2 / |beta_s|^2 and b = |X^+ y|^2 / |beta_s|^2 in the limit
    a_lim = sp.factor(sp.cos(theta) ** 2 * ft["alpha"] + sp.sin(theta) ** 2 * ft["beta_perp"])
    b_lim = sp.factor(sp.together(sc["norm2_under"] / norm_bs**2))
    equation = sp.expand(_C ** (2 * _L) - a_lim * scale**2 - b_lim)
    overlap = m * (sc["w_under"] + scale * norm_bs * sp.cos(theta) * ft["alpha"])
    # |w| from Pythagoras, |w|^2 = |X^+ y|^2 + c^(2L-2) |(I-P) beta_s|^2 (= |beta_s|^2 c^(2L)
    # on the root): written without c^L, so that one layer (c^0 = 1) needs no root at all
    margin = overlap / (norm_bs * sp.sqrt(b_lim + a_lim * scale**2))
    return {"scale": scale, "a": a_lim, "b": b_lim, "equation": equation, "overlap": overlap,
            "margin": margin, "exponent": exponent}


def _ft_exact_root(parts: dict):
    """The root ``c`` and, for the evaluators, the same quantity in ``ell_c = log(c^2 - a)``
    (no power of ``c`` whose exponent grows with ``L``): ``c^(2L-2) (c^2 - a) = b`` gives
    ``c^(L-1) = sqrt(b) e^(-ell/2)``."""
    a_lim, b_lim = parts["a"], parts["b"]
    bracket = (sp.sqrt(a_lim), sp.sqrt(a_lim + b_lim ** (1 / _L) + 1))
    root = ImplicitRoot(_C, parts["equation"], bracket,
                        "null-space scale: positive root of c^(2L) - a c^(2L-2) - b, gamma < 1", where=gamma < 1)
    x = a_lim + sp.exp(ell_c)
    log_eq = ell_c + (_L - 1) * sp.log(x) - sp.log(b_lim)
    top = b_lim ** (1 / _L) + 1
    log_root = ImplicitRoot(ell_c, log_eq, (sp.log(b_lim) - (_L - 1) * sp.log(a_lim + top), sp.log(top)),
                            "log(c^2 - a): root of ell + (L-1) log(a + e^ell) - log b, gamma < 1", where=gamma < 1)
    scale_num = sp.sqrt(b_lim) * sp.exp(-ell_c / 2)  # c^(L-1)
    margin_num = parts["margin"].subs(parts["scale"] ** 2, scale_num**2).subs(parts["scale"], scale_num)
    if margin_num.has(_C):
        raise ArithmeticError("the margin is not a function of c^(L-1) alone")
    # the same identity, checked: on the root, (c^(L-1))^2 (c^2 - a) = b
    if not is_zero((scale_num**2 * (x - a_lim)) - b_lim):
        raise ArithmeticError("the logarithmic root equation does not encode c^(2L-2)(c^2 - a) = b")
    return root, log_root, margin_num


_FT_EXACT_NOTES = (
    "Balanced gradient flow from the pretrained network (small pretraining initialisation): "
    "P beta -> X^+ y and the null-space part keeps its direction with |(I-P) beta_ft| = "
    "c^(L-1) |(I-P) beta_s|, |beta_ft| = |beta_s| c^L (the invariant of dln.balanced_flow "
    "integrated from |beta| = |beta_s|); c is the positive root of c^(2L) - a c^(2L-2) - b = 0, "
    "a = |(I-P) beta_s|^2/|beta_s|^2 -> cos^2(theta) alpha + sin^2(theta) (1 - gamma), b = "
    "|X^+ y|^2/|beta_s|^2 (the same root equation as ft.transferability_exact, with this task's "
    "a and b; unique root in [sqrt(a), sqrt(a + b^(1/L) + 1)], the polynomial being increasing "
    "and convex in c^2 on [a, oo)). L = 1 is clf.ft.error (linear flow: c^2 = a + b). "
    "gamma >= 1: P = I, fine-tuning is scratch; gamma = 1 is 1/2, the limit (checked numerically: "
    "b -> oo, so the null-space share c^(L-1) alpha/c^L -> 0 and the margin tends to scratch's, 0). "
    "The evaluators solve for ell_c = log(c^2 - a) (no c^(2L))."
)


@register(
    "clf.ft.error_exact",
    title="Test error of fine-tuning a deep linear network (balanced flow, any depth), Gaussian mixture",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _M, _DEPTH],
    regime=_REGIME + "; fine-tuning all layers of the balanced pretrained network by gradient flow",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="root equation shared with ft.transferability_exact; L = 1 equals clf.ft.error"),
    reference=_PAPER + " (Thm 3.9 with the null-space scale c, SPEC section 2); " + _LEMMAS,
    notes=_FT_EXACT_NOTES,
    special_cases=[
        SpecialCase("one layer is the c = 1 form", "clf.ft.error", {_L: 1, gamma: sp.Rational(1, 3), theta: 1, m: 2}),
        SpecialCase("gamma > 1: fine-tuning is scratch", "clf.scratch.error", {gamma: 3, theta: 1, m: 2, _L: 3}),
    ],
    singular="gamma = 1: error 1/2 (the limit from both sides)",
)
def ft_error_exact() -> Derivation:
    parts = _fine_tuning_exact()
    root, log_root, margin_num = _ft_exact_root(parts)
    sc = get("clf.scratch.error").expr
    over = _branch(sc, gamma > 1)
    expr = sp.Piecewise((error_of_margin(parts["margin"]), gamma < 1), (over, gamma > 1), (sp.Rational(1, 2), True))
    numeric = sp.Piecewise((error_of_margin(margin_num), gamma < 1), (over, gamma > 1), (sp.Rational(1, 2), True))
    steps = [
        Step("balanced flow: dlog|beta_N| / dlog|beta| (dln.balanced_flow)", parts["exponent"]),
        Step("integrated from |beta| = |beta_s| to |beta_s| c^L: the null-space factor", parts["scale"]),
        Step("a = |(I-P) beta_s|^2 / |beta_s|^2 in the limit (alpha along mu_t, 1 - gamma across)", parts["a"]),
        Step("b = |X^+ y|^2 / |beta_s|^2 in the limit", parts["b"]),
        Step("|beta_ft|^2 = |X^+ y|^2 + c^(2L-2) |(I-P) beta_s|^2, divided by |beta_s|^2", sp.Eq(parts["equation"], 0)),
        Step("w . mu_t = m (w_par + c^(L-1) |beta_s| cos(theta) alpha)", parts["overlap"]),
        Step("margin w . mu_t / |w|, |w|^2 = |beta_s|^2 (b + a c^(2L-2))", parts["margin"]),
        Step("error (Piecewise: gamma > 1 is scratch; gamma = 1 the limit 1/2)", expr),
        Step("for the evaluators: c^(L-1) = sqrt(b) e^(-ell/2), ell = log(c^2 - a)", margin_num),
    ]
    extras = {"a": parts["a"], "b": parts["b"], "root_equation": parts["equation"], "margin_under": parts["margin"]}
    return Derivation(expr, steps=steps, extras=extras, implicit=[root],
                      numeric=NumericForm(numeric, [log_root], "in ell_c = log(c^2 - a): no power of c that grows with L"))


@register(
    "clf.ft.transferability_exact",
    title="Transferability of fine-tuning a deep linear network (balanced flow, any depth), Gaussian mixture",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _M, _DEPTH],
    regime=_REGIME + "; T = error(scratch) - error(fine-tuning, balanced-flow end point)",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="root equation shared with ft.transferability_exact; L = 1 equals clf.ft.transferability"),
    reference=_PAPER + " (Thm 3.9 with the null-space scale c); " + _LEMMAS,
    notes=_FT_EXACT_NOTES + " T = 0 for gamma >= 1.",
    special_cases=[
        SpecialCase("one layer is the c = 1 form", "clf.ft.transferability",
                    {_L: 1, gamma: sp.Rational(1, 2), theta: sp.pi / 3, m: 1}),
        SpecialCase("gamma > 1: T = 0", sp.Integer(0), {gamma: 2, _L: 2}),
    ],
    singular="none: finite everywhere; 0 for gamma >= 1",
)
def ft_transferability_exact() -> Derivation:
    parts = _fine_tuning_exact()
    root, log_root, margin_num = _ft_exact_root(parts)
    sc_under = _branch(get("clf.scratch.error").expr, gamma < 1)
    value = sc_under - error_of_margin(parts["margin"])
    expr = sp.Piecewise((value, gamma < 1), (sp.Integer(0), True))
    numeric = sp.Piecewise((sc_under - error_of_margin(margin_num), gamma < 1), (sp.Integer(0), True))
    steps = [Step("T = error_sc - error_ft, gamma < 1 (clf.ft.error_exact)", value),
             Step("gamma >= 1: fine-tuning equals scratch, T = 0", expr)]
    return Derivation(expr, steps=steps, implicit=[root],
                      numeric=NumericForm(numeric, [log_root], "in ell_c = log(c^2 - a)"))


# -- logistic loss on separable data: the max-margin classifier (cited fixed point) ---------------
#: ``q = kappa - alpha m``, the unknown of the max-margin root equation
_QMM = sp.Symbol("q_mm", real=True)
#: cosine ``alpha`` of the max-margin direction with ``mu_t`` (an unknown before it is solved)
_ALPHA = sp.Symbol("alpha_mm", real=True)
#: the margin ``kappa`` before it is solved for
_KAPPA = sp.Symbol("kappa_mm", real=True)
#: the largest class-mean norm of the max-margin results: the partial moments below lose
#: ``~ q^4`` relative digits to cancellation at ``q < 0`` (``psi2(-6)`` keeps 12 digits),
#: and ``q >= -m`` on the separable side
_MM_M_MAX = 6
_M_MM = _M.restricted(upper=_MM_M_MAX)

_MM_REFERENCE = (
    "Gardner (1988) capacity of the spherical perceptron with thresholds; proportional-limit "
    "characterisation of the hard-margin SVM on the two-class Gaussian mixture by the convex "
    "Gaussian min-max theorem: Deng, Kammoun & Thrampoulidis, 'A model of double descent for "
    "high-dimensional binary linear classification' (arXiv 1911.05822; Information and Inference "
    "2022); Kammoun & Alouini, 'On the precise error analysis of support vector machines' (IEEE "
    "OJSP 2021); Montanari, Ruan, Sohn & Yan (arXiv 1911.01544). Implicit bias: Soudry, Hoffer, "
    "Nacson, Gunasekar & Srebro, JMLR 2018 (L = 1); Ji & Telgarsky, ICLR 2019 (deep linear networks)"
)
_MM_CITED = (
    "cited lemma (CGMT / Gardner capacity): with y_i x_i = mu_t + g_i (g_i ~ N(0, I_d)) and "
    "w = alpha mu_t/m + sqrt(1 - alpha^2) u, |u| = 1, u perpendicular to mu_t, the largest kappa "
    "with y_i w.x_i >= kappa for all i at cosine alpha is, as n, d -> oo with n/d = gamma, the "
    "root of gamma E[(kappa - alpha m - G)_+^2] = 1 - alpha^2 (G ~ N(0, 1)); the max-margin "
    "classifier takes the alpha that maximises it, and the data are separable iff that kappa* > 0"
)


def _stable_cdf(q) -> sp.Expr:
    """``Phi(q)`` with no cancellation in float64: ``erfc(|q|/sqrt 2)/2`` for ``q < 0`` (SymPy
    would rewrite ``erfc(-x)`` as ``2 - erfc(x)``; ``|q|`` keeps the tail), ``1 - Q(q) >= 1/2``
    otherwise; both branches checked equal to :func:`lower_tail`."""
    pos = sp.Symbol("s", positive=True)
    neg_branch = sp.erfc(sp.sqrt(2) * sp.Abs(_QMM) / 2) / 2
    if not is_zero(neg_branch.subs(_QMM, -pos) - lower_tail(-pos)):
        raise ArithmeticError("the lower branch of Phi differs from the integral")
    return sp.Piecewise((neg_branch, _QMM < 0), (lower_tail(_QMM), True)).subs(_QMM, q)


@functools.lru_cache(maxsize=1)
def _check_partial_moments() -> None:
    """``psi_1``, ``psi_2`` in closed form equal their integrals, and ``psi_2' = 2 psi_1``,
    ``psi_1' = Phi`` (checked once: the same integrals in ``q`` for every caller)."""
    psi1_int = sp.integrate((_QMM - _T) * _density(_T), (_T, -sp.oo, _QMM))
    psi2_int = sp.integrate((_QMM - _T) ** 2 * _density(_T), (_T, -sp.oo, _QMM))
    phi_q = lower_tail(_QMM)
    psi1 = _QMM * phi_q + _density(_QMM)
    psi2 = (1 + _QMM**2) * phi_q + _QMM * _density(_QMM)
    if not is_zero(psi1 - psi1_int) or not is_zero(psi2 - psi2_int):
        raise ArithmeticError("the partial moments differ from their integrals")
    if not is_zero(sp.diff(psi2, _QMM) - 2 * psi1) or not is_zero(sp.diff(psi1, _QMM) - phi_q):
        raise ArithmeticError("psi_2' = 2 psi_1 and psi_1' = Phi fail")


def _partial_moments(q, cdf=None) -> tuple[sp.Expr, sp.Expr]:
    """``psi_1(q) = E (q - G)_+`` and ``psi_2(q) = E (q - G)_+^2`` for ``G ~ N(0, 1)``:
    ``sp.integrate`` of the density over ``(-oo, q)``, checked equal to
    ``q Phi(q) + phi(q)`` and ``(1 + q^2) Phi(q) + q phi(q)``, which are returned with
    :func:`_stable_cdf` (at ``q < 0`` they still lose about ``q^2`` and ``q^4`` relative
    ulps to cancellation: hence the bound on ``m``).  ``cdf`` replaces ``Phi(q)`` by an
    equal form (``upper_tail(a)`` for ``q = -a``, ``a >= 0``)."""
    _check_partial_moments()
    stable = _stable_cdf(q) if cdf is None else cdf
    return q * stable + _density(q), (1 + q**2) * stable + q * _density(q)


@functools.lru_cache(maxsize=1)
def _max_margin() -> dict:
    """The max-margin fixed point reduced to one root equation in ``q = kappa - alpha m``.

    Derived with the plain ``Phi = lower_tail`` (one analytic form, so that ``sp.diff`` and
    ``sp.solve`` see no branches); the equation the evaluators solve is then rewritten with
    :func:`_stable_cdf` and checked equal on both of its branches."""
    plain = lower_tail(_QMM)
    psi1, psi2 = _partial_moments(_QMM, cdf=plain)
    # F(kappa, alpha) = 0 defines kappa(alpha); the maximiser over alpha has F_alpha = 0
    arg = _KAPPA - _ALPHA * m
    big_f = gamma * _partial_moments(arg, cdf=lower_tail(arg))[1] - (1 - _ALPHA**2)
    stationarity = sp.expand(sp.diff(big_f, _ALPHA).subs(_KAPPA, _QMM + _ALPHA * m))
    (alpha_star,) = sp.solve(stationarity, _ALPHA, simplify=False)  # simplifying the root leaves it as it is
    alpha_star = sp.expand(alpha_star)
    if not is_zero(alpha_star - gamma * m * psi1):
        raise ArithmeticError(f"unexpected stationary cosine {alpha_star}")
    alpha_star = gamma * m * psi1
    equation = big_f.subs(_KAPPA, _QMM + _ALPHA * m).subs(_ALPHA, alpha_star)
    # the root is unique: d equation / dq = 2 gamma psi_1 (1 + gamma m^2 Phi(q)) > 0
    slope = sp.factor(sp.diff(equation, _QMM) - 2 * gamma * psi1 * (1 + gamma * m**2 * plain))
    if slope != 0:
        raise ArithmeticError("the max-margin root equation is not increasing as stated")
    # the evaluated forms: Phi without cancellation, and the equation not expanded (the
    # expanded square cancels terms of size (gamma m q)^2 in float64)
    st1, st2 = _partial_moments(_QMM)
    alpha_stable = gamma * m * st1
    equation_stable = gamma * st2 + alpha_stable**2 - 1
    pos = sp.Symbol("s", positive=True)
    for value in (pos, -pos):
        if not is_zero((equation_stable - equation).subs(_QMM, value)) or \
                not is_zero((alpha_stable - alpha_star).subs(_QMM, value)):
            raise ArithmeticError("the stable forms differ from the derived ones")
    kappa_star = _QMM + alpha_stable * m
    # F_kappa = 2 gamma psi_1 > 0, so kappa(alpha) is a maximum where F_alpha changes sign
    # from + to -: F_alpha = 2 alpha - 2 gamma m psi_1(kappa - alpha m) is increasing in alpha
    f_alpha_slope = sp.factor_terms(sp.cancel(sp.diff(sp.diff(big_f, _ALPHA), _ALPHA)))  # simplify's form
    return {"psi1": psi1, "psi2": psi2, "F": big_f, "stationarity": stationarity, "alpha": alpha_stable,
            "equation": equation_stable, "kappa": kappa_star, "F_alpha_alpha": f_alpha_slope,
            "equation_plain": equation}


def _mm_root() -> ImplicitRoot:
    parts = _max_margin()
    # bracket: at q = -sqrt(2 log(1 + gamma + gamma m)) the equation is below
    # gamma e^(-q^2/2)/2 + (gamma m)^2 e^(-q^2)/(2 pi) - 1 < 0 (E(G - a)_+^k <= e^(-a^2/2) E G_+^k);
    # at q = 2/sqrt(gamma) + 1, gamma psi_2(q) >= gamma q^2 > 4 (Jensen)
    low = -sp.sqrt(2 * sp.log(1 + gamma + gamma * m))
    high = 2 / sp.sqrt(gamma) + 1
    # solved only below gamma = 1/psi_2(-m), an upper bound of the separability threshold
    # (1 - alpha^2 <= 1 and psi_2(-alpha m) >= psi_2(-m)); beyond it the result is NaN
    bound = gamma * parts["psi2"].subs(_QMM, -m) < 1
    return ImplicitRoot(_QMM, parts["equation"], (low, high),
                        "q = kappa* - alpha* m: the root of gamma psi_2(q) + (gamma m psi_1(q))^2 - 1", where=bound)


_MM_NOTES = (
    "Logistic-loss gradient descent on separable data converges in direction to the hard-margin "
    "SVM (Soudry et al. 2018; Ji & Telgarsky 2019 for the end-to-end vector of a deep linear "
    "network) from any initialisation: scratch and fine-tuning share this limit, so T_ft -> 0 "
    "along training. The fixed point: " + _MM_CITED + ". Derived here (SymPy): the partial "
    "moments psi_k(q) = E(q - G)_+^k in closed form (sp.integrate), the stationarity in alpha "
    "(sp.diff, sp.solve): alpha* = gamma m psi_1(q), q = kappa* - alpha* m, and the one root "
    "equation gamma psi_2(q) + (gamma m psi_1(q))^2 = 1, increasing in q (unique root). Error "
    "Phi(-alpha* m) (the weights' exact error, error_of_margin). The cited statement could not "
    "be read verbatim from the stored references; it is checked against the simulated SVM "
    "(tests/test_max_margin.py) and at m -> 0 reproduces Cover's threshold gamma = 2. "
    "Domain: the separable side kappa* > 0, gamma < clf.separability_threshold(m); NaN beyond "
    "(where the logistic minimiser is finite and is not characterised here); m <= 6."
)


@register(
    "clf.scratch.error_max_margin",
    title="Test error of the max-margin classifier (logistic-loss GD direction limit), proportional limit",
    family=_FAMILY,
    params=[_GAMMA, _M_MM],
    regime="n, d -> oo with gamma = n/d < gamma*(m) (separable data); labels +-1, x = y mu + z; "
    "hard-margin SVM without bias = direction limit of logistic-loss gradient descent",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_MM_REFERENCE,
    notes=_MM_NOTES,
    singular="NaN on the non-separable side gamma >= gamma*(m) (no max-margin classifier), "
    "stated by the expression; 1/2 as gamma -> 0",
)
def scratch_error_max_margin() -> Derivation:
    parts = _max_margin()
    root = _mm_root()
    error = upper_tail(parts["alpha"] * m)  # Phi(-alpha m)
    expr = sp.Piecewise((error, sp.And(root.where, parts["kappa"] > 0)), (sp.nan, True))
    steps = [
        Step("y_i x_i = mu_t + g_i, g_i ~ N(0, I) (y_i z_i is again standard normal); w = alpha "
             "mu_t/m + sqrt(1 - alpha^2) u. " + _MM_CITED + ": F(kappa, alpha) = 0", sp.Eq(parts["F"], 0)),
        Step("partial moments psi_1, psi_2 of G ~ N(0, 1) (sp.integrate; psi_2' = 2 psi_1, psi_1' = Phi)",
             sp.Tuple(parts["psi1"], parts["psi2"])),
        Step("kappa(alpha) is maximal where F_alpha = 0 (implicit function, F_kappa = 2 gamma psi_1 > 0); "
             "with q = kappa - alpha m", sp.Eq(parts["stationarity"], 0)),
        Step("solved for alpha (sp.solve)", parts["alpha"]),
        Step("F_alpha_alpha = 2 + 2 gamma m^2 Phi(q) > 0: F_alpha increases in alpha, the stationary "
             "point is the maximum of kappa(alpha)", parts["F_alpha_alpha"]),
        Step("substituted into F = 0: one equation in q, increasing (unique root, solved numerically "
             "in a proven bracket)", sp.Eq(parts["equation"], 0)),
        Step("kappa* = q + alpha* m; separable iff kappa* > 0", parts["kappa"]),
        Step("error Phi(-alpha* m) on the separable side, NaN elsewhere", expr),
    ]
    return Derivation(expr, steps=steps, implicit=[root],
                      extras={"alpha": parts["alpha"], "kappa": parts["kappa"], "root_equation": parts["equation"]})


@functools.lru_cache(maxsize=1)
def _threshold() -> dict:
    """Separability threshold: kappa* = 0, i.e. gamma*(m) = max_alpha (1 - alpha^2)/psi_2(-alpha m)."""
    # q = -alpha m <= 0: Phi(q) = Q(alpha m), a tail of a nonnegative argument
    psi1, psi2 = _partial_moments(-_ALPHA * m, cdf=upper_tail(_ALPHA * m))
    ratio = (1 - _ALPHA**2) / psi2
    # d ratio / d alpha = -2 (alpha psi_2 - m (1 - alpha^2) psi_1) / psi_2^2 (psi_2' = 2 psi_1)
    stationarity = sp.simplify(-sp.diff(ratio, _ALPHA) * psi2**2 / 2)
    equation = _ALPHA * psi2 - m * (1 - _ALPHA**2) * psi1
    if not is_zero(stationarity - equation):
        raise ArithmeticError("unexpected stationarity of the separability ratio")
    # on the root, (1 - alpha^2)/psi_2 = alpha/(m psi_1): no 1 - alpha^2 cancellation near alpha = 1
    p1, p2 = sp.symbols("P_1 P_2", positive=True)
    (p2_root,) = sp.solve(_ALPHA * p2 - m * (1 - _ALPHA**2) * p1, p2)
    value = sp.simplify(((1 - _ALPHA**2) / p2).subs(p2, p2_root)).subs(p1, psi1)
    if not is_zero(value - _ALPHA / (m * psi1)):
        raise ArithmeticError("the threshold value does not follow from the root equation")
    small_m = sp.limit(sp.solve(sp.series(equation, m, 0, 2).removeO(), _ALPHA)[0] / m, m, 0)
    cover = sp.limit(value.subs(_ALPHA, small_m * m), m, 0)
    return {"ratio": ratio, "stationarity": stationarity, "equation": equation, "value": value,
            "small_m_slope": small_m, "cover": cover}


@register(
    "clf.separability_threshold",
    title="Separability threshold gamma*(m) of the two-class Gaussian mixture (homogeneous separators)",
    family=_FAMILY,
    params=[_M_MM],
    regime="n, d -> oo with gamma = n/d; labels +-1, x = y mu + z, |mu| = m; linear separators "
    "without bias; separable with probability -> 1 for gamma < gamma*(m), -> 0 above",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_MM_REFERENCE + "; Cover (1965) for m = 0",
    notes=(
        "kappa* = 0 in the max-margin fixed point (" + _MM_CITED + "): gamma*(m) = max over alpha in "
        "[0, 1] of (1 - alpha^2)/psi_2(-alpha m). Derived here: the stationarity (sp.diff) "
        "alpha psi_2(-alpha m) = m (1 - alpha^2) psi_1(-alpha m), negative at alpha = 0 and positive "
        "at alpha = 1 (its root is solved numerically in [0, 1]), and the value alpha/(m psi_1(-alpha m)) "
        "on the root. m -> 0: alpha* ~ 2 m psi_1(0) and gamma* -> 2, Cover's count (sp.limit). "
        "gamma* grows like e^(m^2/2): large m are separable far beyond gamma = 1."
    ),
    singular="none for 0 < m <= 6 (gamma* is finite and > 2)",
)
def separability_threshold() -> Derivation:
    th = _threshold()
    if th["cover"] != 2:
        raise ArithmeticError(f"the m -> 0 threshold is {th['cover']}, not Cover's 2")
    root = ImplicitRoot(_ALPHA, th["equation"], (sp.Integer(0), sp.Integer(1)),
                        "alpha at the threshold: root of alpha psi_2(-alpha m) - m (1 - alpha^2) psi_1(-alpha m)")
    steps = [
        Step("kappa* = 0: separable at cosine alpha iff gamma psi_2(-alpha m) <= 1 - alpha^2 (" + _MM_CITED + "); "
             "the threshold maximises the ratio", th["ratio"]),
        Step("stationarity of the ratio in alpha (sp.diff; numerator)", sp.Eq(th["equation"], 0)),
        Step("on the root the ratio equals alpha/(m psi_1(-alpha m))", th["value"]),
        Step("m -> 0: alpha*/m (series of the stationarity) and the threshold (sp.limit): Cover's 2",
             sp.Tuple(th["small_m_slope"], th["cover"])),
    ]
    return Derivation(th["value"], steps=steps, implicit=[root], extras={"root_equation": th["equation"]})


# -- label flips: square-loss scratch with a fraction p of flipped training labels ---------------
_P_FLIP = parameters.p_flip
_PF = _P_FLIP.symbol
#: the flip of one label, +1 with probability 1 - p, -1 with probability p
_EPS = sp.Symbol("epsilon", real=True)


def _flip_mean(expr: sp.Expr) -> sp.Expr:
    """``E[expr]`` over the flip ``epsilon`` (independent of ``y`` and the noise), then
    over the mixture (:func:`mixture_mean`)."""
    averaged = (1 - _PF) * expr.subs(_EPS, 1) + _PF * expr.subs(_EPS, -1)
    return sp.factor(mixture_mean(averaged))


@functools.lru_cache(maxsize=1)
def _scratch_flip() -> dict:
    """Min-norm least squares on labels ``epsilon y`` (flipped with probability ``p``).

    The design is unchanged (``x = y mu + z`` with the clean ``y``), so the random-matrix
    limits of :func:`_scratch` (``kappa``, the residual factor, the trace) carry over; only
    the label moments change: the trained labels ``t = epsilon y`` have ``E t^2 = 1``,
    ``E t s = (1 - 2p) m`` and ``E s^2 = 1 + m^2``.  The perpendicular part of the design is
    independent of ``(y, epsilon, s)``, which is all the lemmas need.
    """
    sc = _scratch()
    s_coord = _Y * m + _G1
    label = _EPS * _Y
    moments = (_flip_mean(label**2), _flip_mean(label * s_coord), _flip_mean(s_coord**2))
    et2, ets, es2 = moments
    q = et2 - 2 * _W * ets + _W**2 * es2
    objective_under = _W**2 + sc["kappa"] * q
    # simplify=False: the roots are factored next (the same form either way)
    (w_under,) = sp.solve(sp.diff(objective_under, _W), _W, simplify=False)
    w_under = sp.factor(w_under)
    norm2_under = sp.factor(sp.together(objective_under.subs(_W, w_under)))
    (w_over,) = sp.solve(sp.diff(sc["residual"] * q, _W), _W, simplify=False)
    w_over = sp.factor(w_over)
    norm2_over = sp.factor(sp.together(w_over**2 + sc["trace_over"] * q.subs(_W, w_over)))
    margins = {}
    for side, w, norm2, inside in (("under", w_under, norm2_under, 1 / (1 + _E)), ("over", w_over, norm2_over, 1 + _E)):
        overlap = m * w
        # positive for p < 1/2: checked at p = 1/4 and gamma inside the branch
        if not sp.factor(overlap.subs({gamma: inside, _PF: sp.Rational(1, 4)})).is_positive:
            raise ArithmeticError(f"the flipped-label overlap is not positive ({side})")
        # one denominator, common factors out: the form simplify picks, without its search
        margins[side] = sp.factor_terms(sp.cancel(m * w / sp.sqrt(norm2)))
    return {"moments": moments, "q": q, "w_under": w_under, "norm2_under": norm2_under, "w_over": w_over,
            "norm2_over": norm2_over, "margin_under": margins["under"], "margin_over": margins["over"]}


@register(
    "clf.scratch.error_flip",
    title="Test error of min-norm least-squares classification from scratch with flipped training labels",
    family=_FAMILY,
    params=[_GAMMA, _M, _P_FLIP],
    regime=_REGIME + "; scratch w = X^+ t on labels t = epsilon y, epsilon = -1 with probability p "
    "independently (0 <= p < 1/2); the error is measured on the clean target mixture",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_LEMMAS,
    notes=(
        "As clf.scratch.error with the label moments of the flipped labels: E t s = (1 - 2p) m "
        "instead of m (sp.solve of the same min-norm and least-squares problems). p = 0 is "
        "clf.scratch.error. The margin still vanishes at gamma = 1 from both sides (peak 1/2): "
        "flips do not remove the interpolation peak. As gamma -> oo the margin tends to "
        "m (the least-squares direction is mu_t for any p < 1/2): the Bayes error Phi(-m). "
        "Error on the flipped-label test distribution: p + (1 - 2p) times this one. "
        "Linear transfer's n -> oo limit is unchanged by flips (the readout's sign converges to "
        "sign((1 - 2p) cos theta)); at finite n the sum S is no longer exactly normal."
    ),
    special_cases=[
        SpecialCase("no flips: clf.scratch.error", "clf.scratch.error", {_PF: 0, gamma: sp.Rational(1, 2), m: 2}),
        SpecialCase("no flips above the threshold", "clf.scratch.error", {_PF: 0, gamma: 3, m: 1}),
        SpecialCase("peak of chance level at gamma = 1", sp.Rational(1, 2), {m: 2, _PF: sp.Rational(1, 5)},
                    (gamma, 1, "-")),
        SpecialCase("gamma = 1 is the limit 1/2", sp.Rational(1, 2), {gamma: 1, m: 2, _PF: sp.Rational(1, 5)}),
    ],
    singular="gamma = 1: the margin vanishes, error 1/2 (the limit from both sides)",
)
def scratch_error_flip() -> Derivation:
    fl = _scratch_flip()
    under, over = error_of_margin(fl["margin_under"]), error_of_margin(fl["margin_over"])
    at_one = sp.limit(under, gamma, 1, "-")
    if not is_zero(at_one - sp.limit(over, gamma, 1, "+")):
        raise ArithmeticError("the flipped-label scratch error has different limits at gamma = 1")
    expr = sp.Piecewise((under, gamma < 1), (over, gamma > 1), (at_one, True))
    steps = [
        Step("trained labels t = epsilon y; moments E t^2, E t s, E s^2 (s = y m + z.e_1; average over "
             "epsilon, then the mixture)", sp.Tuple(*fl["moments"])),
        Step("q(w_par) = |t - s w_par|^2/n", fl["q"]),
        Step("gamma < 1: w_par minimises w_par^2 + kappa q (kappa of clf.scratch.error)", fl["w_under"]),
        Step("|w|^2 at the minimiser", fl["norm2_under"]),
        Step("margin m w_par/|w|, gamma < 1", fl["margin_under"]),
        Step("gamma > 1: w_par minimises q; |w|^2 = w_par^2 + q/(gamma - 1)", sp.Tuple(fl["w_over"], fl["norm2_over"])),
        Step("margin, gamma > 1", fl["margin_over"]),
        Step("error Phi(-rho) (Piecewise; gamma = 1 the common limit)", expr),
    ]
    return Derivation(expr, steps=steps, extras={"margin_under": fl["margin_under"], "margin_over": fl["margin_over"]})


# -- linear transfer under the logistic loss --------------------------------------------------------
@register(
    "clf.lt.error_finite_logistic",
    title="Test error of linear transfer with the logistic loss (readout on the frozen source feature), any n",
    family=_FAMILY,
    params=[_THETA, _M, _N],
    regime="any n >= 1, any d; labels +-1, x = y mu + z; frozen unit feature f = mu_s/m (the population "
    "source minimiser of the logistic loss lies along mu_s); logistic-loss readout a on u_i = x_i.f, "
    "trained to its minimiser or, when all y_i u_i share a sign, to its divergent limit",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
    notes=(
        "The readout's loss l(a) = (1/n) sum softplus(-a y_i u_i) is convex (l'' >= 0, sp.diff) with "
        "l'(0) = -S/(2n), S = sum_i y_i u_i; so its minimiser (or its divergent limit when l' < 0 "
        "everywhere) has the sign of S, which is all the error Phi(-sign(a) m cos theta) depends on: "
        "the same event as for the square-loss readout, hence the same exact error as "
        "clf.lt.error_finite, for every n and d (S ~ N(n m cos theta, n) exactly). "
        "In the direction limit the logistic and the square loss give the same one-feature classifier."
    ),
    special_cases=[
        SpecialCase("equals the square-loss readout", "clf.lt.error_finite", {theta: sp.pi / 5, m: 1, n: 7}),
        SpecialCase("orthogonal means: chance", sp.Rational(1, 2), {theta: sp.pi / 2, n: 5, m: 2}),
    ],
    singular="none: finite for every n >= 1",
)
def lt_error_finite_logistic() -> Derivation:
    a_sym, u_sym = sp.Symbol("a", real=True), sp.Symbol("u", real=True)  # readout, y_i u_i
    term = sp.log(1 + sp.exp(-a_sym * u_sym))  # softplus(-a y_i u_i)
    slope_at_zero = sp.simplify(sp.diff(term, a_sym).subs(a_sym, 0))
    if not is_zero(slope_at_zero + u_sym / 2):
        raise ArithmeticError(f"unexpected slope of the logistic readout at 0: {slope_at_zero}")
    curvature = sp.simplify(sp.diff(term, a_sym, 2))
    # u^2 e^(au)/(1 + e^(au))^2 >= 0: convex
    if not (curvature.subs({a_sym: sp.Rational(1, 3), u_sym: 2}) > 0):
        raise ArithmeticError("the logistic readout loss is not convex")
    expr = get("clf.lt.error_finite").expr
    steps = [
        Step("one term of the readout loss, softplus(-a y_i u_i), u_i = x_i.f", term),
        Step("its slope at a = 0 (sp.diff): -y_i u_i/2, so l'(0) = -S/(2n), S = sum_i y_i u_i", slope_at_zero),
        Step("its curvature (sp.diff): nonnegative, l is convex; the minimiser (or the divergent limit) has "
             "the sign of -l'(0) = S/(2n)", curvature),
        Step("the error depends on sign(a) = sign(S) only: the event of clf.lt.error_finite, S ~ N(n m cos theta, n)",
             expr),
    ]
    return Derivation(expr, steps=steps)
