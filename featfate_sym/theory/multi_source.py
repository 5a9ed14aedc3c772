"""Several source tasks: linear transfer onto rank-k pretrained features.

Model (SPEC section 1, with ``k`` source tasks).  Inputs ``x ~ N(0, I_d)``, target labels
``y = beta_t . x + eps``, ``eps ~ N(0, sigma^2)``, a unit target teacher ``beta_t``, ``n``
target samples, risk ``|beta_hat - beta_t|^2``.  Pretraining is on ``k`` source tasks at
once: a deep linear network with ``k`` outputs, ``f(x) = x^T W_1 ... W_L``,
``W_L in R^{d x k}``, trained by gradient flow on the population source loss
``|W_1 ... W_L - B_s|_F^2`` from a small balanced initialisation, where
``B_s = [beta_s^(1), ..., beta_s^(k)]`` (``d x k``, rank ``k``).  The source teachers all
have the same overlap with the target and are otherwise independent:

    ``beta_s^(j) = cos(theta) beta_t + sin(theta) xi_j``,

with ``xi_1..xi_k`` orthonormal and orthogonal to ``beta_t`` (so ``d >= k + 1``); more
source tasks capture more of the target.  Linear transfer freezes the hidden features
``h(x) = x^T W_1 ... W_{L-1}`` and refits a readout by least squares on the ``n`` target
samples.

Pretrained features (argued from the balanced flow, :mod:`featfate_sym.theory.deep_linear`).
Small initialisation makes the layer imbalances ``D_l = W_l^T W_l - W_{l+1} W_{l+1}^T``
vanish, and gradient flow conserves them (``dln.conservation``), so the end point is
balanced: ``W_l^T W_l = W_{l+1} W_{l+1}^T`` for every ``l``.  Hence every layer has the same
rank (``rank W_l = rank W_l^T W_l = rank W_{l+1} W_{l+1}^T = rank W_{l+1}``), at most
``rank W_L <= k``.  ASSUMED: the flow ends at the global minimum ``W_1 ... W_L = B_s``
(proved for balanced initialisations with a deficiency margin, Arora, Cohen, Golowich &
Hu, ICLR 2019; the generic outcome of small-initialisation saddle-to-saddle dynamics,
Saxe et al. 2014).  Then with ``M = W_1 ... W_{L-1}``: ``range(M) contains range(M W_L) =
range(B_s)``, of dimension ``k``, and ``rank M <= rank W_1 <= k``; so ``range(M) =
span(B_s)`` exactly: the features are ``k`` linear functionals of ``x`` spanning
``span(B_s)``.  Least squares on ``X M`` predicts with the projection of ``y`` on the
column space of ``X M = X Q A`` (``Q`` an orthonormal basis of ``span(B_s)``, ``A`` of rank
``k``), so ``beta_hat`` is the same as for ordinary least squares of ``y`` on ``F = X Q``:
the scale of the features does not enter.  This is the model of every result here.

Results registered (family ``multi_source``, key prefix ``lt.k.``):

- ``lt.k.captured`` -- ``|P beta_t|^2 = b^T G^-1 b``, the part of the target in the span of
  the ``k`` source teachers (``P`` its projector), with ``G = cos^2 theta 1 1^T +
  sin^2 theta I_k`` and ``b = cos(theta) 1``; ``G^-1`` for a symbolic ``k`` is derived by
  ``sp.solve`` in the algebra spanned by ``I`` and ``J = 1 1^T`` (``J^2 = k J``), the
  Sherman-Morrison identity; checked against explicit matrices at ``k = 1..5``;
- ``lt.k.risk_finite`` -- the exact expected risk of ``k``-feature least squares at
  finite ``n``: ``r + (r + sigma^2) k/(n - k - 1)``, ``r = |P_perp beta_t|^2``, for
  ``n > k + 1`` (the inverse-Wishart lemma); ``oo`` for ``n <= k + 1``;
- ``lt.k.risk`` -- its limit ``n -> oo``, ``|P_perp beta_t|^2``;
- ``lt.k.transferability_finite`` -- ``scratch.risk_finite - lt.k.risk_finite`` at the same
  finite ``n, d``;
- ``lt.k.transferability`` -- the proportional limit ``n, d -> oo`` at fixed ``k``:
  ``scratch.risk - lt.k.risk``;
- ``lt.k.optimal`` -- the number of source tasks minimising the finite-``n`` risk, ``k``
  treated as continuous: the positive root of ``dR/dk = 0`` (a quadratic in ``k``).

Numerical helpers (NumPy, on the compiled results): :func:`optimal_k`, the integer
minimiser of ``lt.k.risk_finite`` by direct comparison; :func:`largest_positive_k`, the
largest ``k`` with ``lt.k.transferability_finite > 0``.

Fine-tuning from rank-``k`` features is not treated here: the pretrained network has
``k`` outputs and the target one, so fine-tuning needs a choice of the new readout's
initialisation, and the balanced-flow argument of ``ft.transferability_exact`` (a single
output, a rank-one start) does not carry over to a rank-``k`` start without it.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.stats import Normal, variance

from featfate_sym import parameters
from featfate_sym.derivation_cache import memo
from featfate_sym.registry import Derivation, Exactness, SpecialCase, Source, Status, Step, get, register
from featfate_sym.symbols import d, gamma, k, n, sigma, theta
from featfate_sym.theory.random_matrix import INVERSE_WISHART_REFERENCE, inverse_covariance_mean_coefficient

__all__ = ["optimal_k", "largest_positive_k", "explicit_captured"]

_FAMILY = "multi_source"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194 (model of Sec. 3 with k source tasks); not a result of the paper"
_FEATURES = (
    "pretrained features span(B_s): balanced small-initialisation gradient flow of a k-output deep "
    "linear network on the population source loss, assumed to end at its global minimum "
    "(Arora, Cohen, Golowich & Hu, ICLR 2019)"
)
_SHERMAN_MORRISON = "Sherman & Morrison (1950): (a I + u u^T)^-1 = (I - u u^T/(a + u^T u))/a"

_THETA, _SIGMA, _K, _N, _D, _GAMMA = (
    parameters.theta, parameters.sigma, parameters.k, parameters.n, parameters.d, parameters.gamma,
)

#: sin^2(theta) and cos^2(theta) while deriving (positive: the generic case; the
#: boundary values theta in {0, pi/2, pi} are the continuous extensions, checked by the
#: special cases)
_S = sp.Symbol("S", positive=True)
_C = sp.Symbol("C", positive=True)
#: coefficients of G^-1 = x I + y J
_X, _Y = sp.symbols("x y")
#: k treated as a continuous variable while optimising
_KC = sp.Symbol("k_c", positive=True)
#: the per-sample noise variance of the k-feature regression, while integrating
_V2 = sp.Symbol("v2", nonnegative=True)
#: E tr (F^T F)^-1 kept as one number while taking the expectation
_TRACE = sp.Symbol("E_tr", positive=True)

_TRIG = {_S: sp.sin(theta) ** 2, _C: sp.cos(theta) ** 2}


# -- the span of the source teachers ---------------------------------------------------------
@memo
def _gram_inverse() -> tuple[dict, sp.Expr, list[Step]]:
    """``G^-1 = x I + y J`` and ``b^T G^-1 b`` for a symbolic ``k`` (``S = sin^2``, ``C = cos^2``)."""
    # G = S I + C J with J = 1 1^T; in the algebra of I and J (J^2 = k J) the product
    # (S I + C J)(x I + y J) = S x I + (S y + C x + C k y) J must equal I
    identity_part = _S * _X
    ones_part = _S * _Y + _C * _X + _C * k * _Y
    (sol,) = sp.solve([identity_part - 1, ones_part], [_X, _Y], dict=True)
    inverse = {_X: sp.factor(sol[_X]), _Y: sp.factor(sol[_Y])}
    # b = cos(theta) 1: b^T I b = C k, b^T J b = C k^2
    captured = sp.factor(_C * (inverse[_X] * k + inverse[_Y] * k**2))
    steps = [
        Step("Gram matrix of the source teachers beta_s^(j) = cos(theta) beta_t + sin(theta) xi_j "
             "(xi_j orthonormal, orthogonal to beta_t): G = sin^2 theta I + cos^2 theta J, J = 1 1^T; "
             "their overlaps with the target b = cos(theta) 1. Written S = sin^2 theta, C = cos^2 theta "
             "(shown for k = 2)",
             sp.Matrix([[_S + _C, _C], [_C, _S + _C]])),
        Step("ansatz G^-1 = x I + y J: with J^2 = k J the product G G^-1 = S x I + (S y + C x + C k y) J; "
             "sp.solve of S x = 1, S y + C x + C k y = 0 (the Sherman-Morrison identity for a symbolic k)",
             sp.Tuple(inverse[_X], inverse[_Y])),
        Step("|P beta_t|^2 = b^T G^-1 b = C (k x + k^2 y), with 1^T 1 = k, 1^T J 1 = k^2 (factored)", captured),
    ]
    return inverse, captured, steps


def explicit_captured(count: int) -> sp.Expr:
    """``b^T G^-1 b`` from the explicit ``count x count`` Gram matrix (``sp.Matrix.inv``), in
    ``S = sin^2 theta`` and ``C = cos^2 theta`` -- the check of the symbolic-``k`` form."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1 (got {count!r})")
    gram = _C * sp.ones(count, count) + _S * sp.eye(count)
    b = sp.sqrt(_C) * sp.ones(count, 1)
    return sp.factor((b.T * gram.inv() * b)[0, 0])


def _residual_trig() -> sp.Expr:
    _, captured, _ = _gram_inverse()
    return sp.factor(1 - captured).subs(_TRIG)


@register(
    "lt.k.captured",
    title="Part of the target captured by the span of k source teachers, |P beta_t|^2",
    family=_FAMILY,
    params=[_THETA, _K],
    regime="k source teachers with equal overlap cos(theta) with the target, otherwise orthonormal "
           "(beta_s^(j) = cos(theta) beta_t + sin(theta) xi_j); any d >= k + 1",
    status=Status(Source.DERIVED, Exactness.EXACT, verified="against explicit Gram matrices at k = 1..5"),
    reference=_SHERMAN_MORRISON + "; " + _PAPER,
    notes=(
        "b^T G^-1 b with G = cos^2 theta J + sin^2 theta I_k, b = cos(theta) 1: G^-1 derived for a "
        "symbolic k by sp.solve in the algebra of I and J = 1 1^T (J^2 = k J), then b^T G^-1 b. The "
        "symbolic-k form is checked against sp.Matrix.inv of the explicit matrices at k = 1..5 "
        "(explicit_captured). Increases with k towards 1 (for cos theta != 0); k = 1 is cos^2 theta. "
        "The complement 1 - |P beta_t|^2 = |P_perp beta_t|^2 is lt.k.risk. At theta in {0, pi} the "
        "teachers coincide (rank 1), and the value 1 is the continuous extension."
    ),
    special_cases=[
        SpecialCase("one source task: cos^2 theta", sp.cos(theta) ** 2, {k: 1}),
        SpecialCase("orthogonal tasks: nothing captured", sp.Integer(0), {theta: sp.pi / 2}),
        SpecialCase("many source tasks: the whole target", sp.Integer(1), {theta: sp.pi / 3},
                    (k, sp.oo, "-")),
        SpecialCase("theta = pi/3, k = 3: 3 (1/4) / (3/4 + 3/4) = 1/2", sp.Rational(1, 2), {theta: sp.pi / 3, k: 3}),
    ],
    singular="none: in [0, 1] for every theta and k",
)
def captured() -> Derivation:
    inverse, value, steps = _gram_inverse()
    checks = []
    for count in range(1, 6):
        difference = sp.cancel(explicit_captured(count) - value.subs(k, count))
        if difference != 0:  # pragma: no cover - a derivation failure
            raise ArithmeticError(f"the symbolic-k form differs from the explicit Gram matrix at k = {count}")
        checks.append(explicit_captured(count))
    expr = value.subs(_TRIG)
    steps = steps + [
        Step("check: b^T G^-1 b from the explicit k x k matrices (sp.Matrix.inv), k = 1..5, equals the "
             "symbolic-k form at each k (sp.cancel of the difference is 0)", sp.Tuple(*checks)),
        Step("with S = sin^2 theta, C = cos^2 theta", expr),
    ]
    extras = {
        "inverse_identity_coefficient": inverse[_X].subs(_TRIG),
        "inverse_ones_coefficient": inverse[_Y].subs(_TRIG),
        "residual": _residual_trig(),
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- finite-n risk of k-feature least squares -----------------------------------------------
@memo
def _risk_finite_parts() -> tuple[sp.Expr, sp.Expr, list[Step]]:
    """The convergent branch (n > k + 1) of the expected risk, and the steps."""
    residual = _residual_trig()
    # per-sample noise of the k-feature regression: the target's part outside the span,
    # |P_perp beta_t| z_perp with z_perp ~ N(0, 1) independent of F = X Q, plus the label
    # noise; sympy.stats needs positive standard deviations (0 is the continuous extension)
    # noise, written |P_perp beta_t| g_1 + sigma g_2 with independent standard normals: the
    # variances of independent terms add, Var(a g) = a^2 Var(g), Var(g) by sympy.stats
    unit = variance(Normal("g", 0, 1))
    noise = residual * unit + sigma**2 * unit
    # R = |Q w - beta_t|^2 = |w - w*|^2 + |P_perp beta_t|^2 (Pythagoras: Q w - P beta_t lies in
    # the span, P_perp beta_t outside it); w - w* = (F^T F)^-1 F^T xi, and conditional on F,
    # E|w - w*|^2 = v^2 tr (F^T F)^-1 (xi independent of F, covariance v^2 I_n)
    conditional = residual + _V2 * _TRACE
    # tr E (F^T F)^-1 = k c with E (F^T F)^-1 = c I_k, F^T F ~ W_k(n, I)
    wishart = sp.Piecewise(*[(k * value, cond) for value, cond in inverse_covariance_mean_coefficient(n, k).args])
    convergent = wishart.args[0][0]
    if wishart.args[0][1] != (n > k + 1):  # pragma: no cover - the lemma's domain
        raise ArithmeticError(f"unexpected domain of the inverse-Wishart lemma: {wishart}")
    value = conditional.subs({_TRACE: convergent, _V2: noise})
    # two terms, each without cancellation: r (n - 1)/(n - k - 1) + sigma^2 k/(n - k - 1)
    poly = sp.Poly(sp.expand(value), sigma)
    expr = sp.Add(*[sp.factor(coef) * sigma**power for (power,), coef in poly.terms()])
    steps = [
        Step("pretrained features (balanced flow, see the module docstring): D_l = 0 gives rank W_l = "
             "rank W_{l+1} <= k for every layer; at the global minimum W_1...W_L = B_s (assumed) the "
             "features M = W_1...W_{L-1} have range(M) = span(B_s); least squares on X M predicts as "
             "least squares on F = X Q, Q an orthonormal basis of span(B_s)"),
        Step("F = X Q (n x k, Q an orthonormal basis of span(B_s)) has i.i.d. N(0, 1) entries; "
             "y = F w* + xi with w* = Q^T beta_t and xi = X P_perp beta_t + eps, independent of F "
             "(Gaussian directions orthogonal to span(Q)); per-sample variance of xi (sympy.stats)", noise),
        Step("least squares w = (F^T F)^-1 F^T y, beta_hat = Q w: R = |w - w*|^2 + |P_perp beta_t|^2, and "
             "conditional on F, E|w - w*|^2 = v^2 tr (F^T F)^-1", conditional),
        Step("lemma (inverse Wishart, F^T F ~ W_k(n, I)): tr E (F^T F)^-1 = k/(n - k - 1) for n > k + 1, oo "
             "otherwise (random_matrix.inverse_covariance_mean_coefficient; " + INVERSE_WISHART_REFERENCE + ")",
             wishart),
        Step("the expectation on n > k + 1, as a polynomial in sigma with factored coefficients", expr),
    ]
    return expr, noise, steps


@register(
    "lt.k.risk_finite",
    title="Expected risk of linear transfer onto k pretrained features at finite n",
    family=_FAMILY,
    params=[_THETA, _SIGMA, _K, _N],
    regime="n target samples, any d >= k + 1; frozen rank-k features spanning the k source teachers, "
           "least-squares readout (no ridge); Gaussian design",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=INVERSE_WISHART_REFERENCE + "; " + _FEATURES,
    notes=(
        "R = |P_perp beta_t|^2 + |w - w*|^2 with the residual xi = X P_perp beta_t + eps Gaussian and "
        "independent of the features F = X Q; E|w - w*|^2 = v^2 tr E[(F^T F)^-1] = v^2 k/(n - k - 1), "
        "v^2 = |P_perp beta_t|^2 + sigma^2 (the cited inverse-Wishart lemma, "
        "random_matrix.inverse_covariance_mean_coefficient). Exact at every n > k + 1 and independent "
        "of d and the depth. k = 1 is lt.risk_finite. For n <= k + 1 the expectation is infinite "
        "(the inverse-Wishart mean diverges; for n < k the readout is not even unique), encoded as oo, "
        "except without noise at all (sigma = 0, sin theta = 0), where the label is an exact function "
        "of the features and the risk is 0 for every n."
    ),
    special_cases=[
        SpecialCase("one source task is the one-feature result (n = 10)", "lt.risk_finite",
                    {k: 1, n: 10}),
        SpecialCase("one source task is the one-feature result (n = 3, theta = pi/5)", "lt.risk_finite",
                    {k: 1, n: 3, theta: sp.pi / 5}),
        SpecialCase("orthogonal tasks, no noise, k = 3, n = 10: 1 + 3/6", sp.Rational(3, 2),
                    {theta: sp.pi / 2, sigma: 0, k: 3, n: 10}),
        SpecialCase("n = k + 1: infinite", sp.oo, {theta: sp.pi / 4, sigma: sp.Rational(1, 5), k: 4, n: 5}),
        SpecialCase("no noise at all: exact fit for every n", sp.Integer(0), {theta: 0, sigma: 0, k: 3, n: 2}),
    ],
    singular="n <= k + 1: oo (infinite expected risk), except sigma = sin(theta) = 0 where the risk is 0",
)
def risk_finite() -> Derivation:
    convergent, noise, steps = _risk_finite_parts()
    expr = sp.Piecewise(
        (convergent, n > k + 1),
        (sp.Integer(0), sp.Eq(sigma, 0) & sp.Eq(sp.sin(theta), 0)),
        (sp.oo, True),
    )
    steps = steps + [
        Step("n <= k + 1: tr E (F^T F)^-1 = oo, so the risk is oo when v^2 > 0; v^2 = 0 (sigma = 0, "
             "sin theta = 0) leaves an exact fit, risk 0", expr),
    ]
    return Derivation(expr, steps=steps, extras={"noise_variance": noise, "convergent": convergent})


@register(
    "lt.k.risk",
    title="Risk of linear transfer onto k pretrained features, large-n limit",
    family=_FAMILY,
    params=[_THETA, _K],
    regime="n -> oo at fixed k (any gamma = n/d); frozen rank-k features spanning the k source teachers, "
           "least-squares readout",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=INVERSE_WISHART_REFERENCE + "; " + _FEATURES,
    notes=(
        "sp.limit n -> oo of the convergent branch of lt.k.risk_finite: the estimation error "
        "v^2 k/(n - k - 1) vanishes and what is left is the part of the target outside the span of "
        "the source teachers, |P_perp beta_t|^2 = sin^2 theta/(sin^2 theta + k cos^2 theta) = "
        "1 - lt.k.captured (checked). Decreases with k; k = 1 is lt.risk at lam = 0."
    ),
    special_cases=[
        SpecialCase("one source task: lt.risk at lam = 0", "lt.risk", {k: 1, parameters.lam.symbol: 0}),
        SpecialCase("orthogonal tasks: the whole target is missed", sp.Integer(1), {theta: sp.pi / 2}),
        SpecialCase("many source tasks: the target is captured", sp.Integer(0), {theta: sp.pi / 5},
                    (k, sp.oo, "-")),
        SpecialCase("theta = 2 pi/7, k = 6: sin^2/(sin^2 + 6 cos^2)",
                    sp.sin(2 * sp.pi / 7) ** 2 / (sp.sin(2 * sp.pi / 7) ** 2 + 6 * sp.cos(2 * sp.pi / 7) ** 2),
                    {theta: 2 * sp.pi / 7, k: 6}),
    ],
    singular="none: in [0, 1]",
)
def risk() -> Derivation:
    convergent, _, steps = _risk_finite_parts()
    # in S = sin^2, C = cos^2 the convergent branch is rational in n: its limit, and the
    # identities below, are decided by sp.limit and sp.cancel of rational functions
    to_sc = {sp.sin(theta) ** 2: _S, sp.cos(theta) ** 2: _C}
    limit = sp.limit(convergent.subs(to_sc), n, sp.oo)
    # the limit in the form of the Gram derivation, sin^2/(sin^2 + k cos^2) (SymPy's factor
    # would write 1 - cos^2 for sin^2, which float64 evaluates with cancellation near theta = 0)
    expr = _residual_trig()
    _, captured_sc, _ = _gram_inverse()
    if sp.cancel(limit - expr.subs(to_sc)) != 0 or sp.cancel(expr.subs(to_sc) - (1 - captured_sc)) != 0:
        raise ArithmeticError("lt.k.risk is not the limit, or not the complement of lt.k.captured")
    limit = limit.subs(_TRIG)
    steps = [
        Step("convergent branch of lt.k.risk_finite", convergent),
        Step("n -> oo at fixed k (sp.limit)", limit),
        Step("the same as |P_perp beta_t|^2 = 1 - b^T G^-1 b of the Gram derivation, i.e. 1 - lt.k.captured "
             "(sp.cancel of each difference, in S = sin^2 theta and C = cos^2 theta, is 0)", expr),
    ]
    return Derivation(expr, steps=steps)


# -- transferability -----------------------------------------------------------------------
def _sigma_polynomial(expr: sp.Expr) -> sp.Expr:
    """``expr`` as a polynomial in ``sigma`` with each coefficient factored (the rational
    parts of the scratch and transfer variances combine into one fraction, so float64 does
    not subtract two nearly equal variances)."""
    poly = sp.Poly(sp.expand(expr), sigma)
    return sp.Add(*[_factor_terms(coef) * sigma**power for (power,), coef in poly.terms()])


def _factor_terms(coef: sp.Expr) -> sp.Expr:
    """Factor the part of ``coef`` free of theta as one fraction; keep the theta part apart."""
    trig = sp.Add(*[t for t in sp.Add.make_args(coef) if t.has(theta)])
    rational = sp.Add(*[t for t in sp.Add.make_args(coef) if not t.has(theta)])
    return sp.factor(rational) + (sp.factor(trig) if trig != 0 else 0)


@register(
    "lt.k.transferability_finite",
    title="Transferability of linear transfer onto k features against scratch, at finite n and d",
    family=_FAMILY,
    params=[_THETA, _SIGMA, _K, _N, _D],
    regime="finite n, d with d >= k + 1; scratch = min-norm interpolation X^+ y (small-init gradient "
           "flow), transfer = least-squares readout on the frozen rank-k features; Gaussian design",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=INVERSE_WISHART_REFERENCE + "; " + _FEATURES,
    notes=(
        "scratch.risk_finite(n, d, sigma) - lt.k.risk_finite(theta, sigma, k, n), branch by branch, "
        "each branch a polynomial in sigma with factored coefficients. Positive means transfer "
        "helps. Infinite risks: +oo where only scratch is infinite (n in {d-1, d, d+1}, sigma > 0), "
        "-oo where only the transfer risk is (n <= k + 1), NaN where both are (undefined); NaN "
        "also for k >= d, where k source directions orthogonal to the target do not fit in d "
        "dimensions (outside the model)."
    ),
    special_cases=[
        SpecialCase("one source task, n = 20, d = 40: scratch.risk_finite - lt.risk_finite",
                    sp.Piecewise((sp.Integer(1) / 2 + sigma**2 * sp.Rational(20, 19), True))
                    - (sp.sin(theta) ** 2 + (sp.sin(theta) ** 2 + sigma**2) / 18),
                    {k: 1, n: 20, d: 40}),
        SpecialCase("orthogonal tasks, no noise, k = 2, n = 10, d = 20: (1/2) - (1 + 2/7)",
                    sp.Rational(1, 2) - sp.Rational(9, 7), {theta: sp.pi / 2, sigma: 0, k: 2, n: 10, d: 20}),
        SpecialCase("over-determined, n = 30, d = 10, k = 3, theta = pi/3", 10 * sigma**2 / 19
                    - (sp.Rational(1, 2) + (sp.Rational(1, 2) + sigma**2) * sp.Rational(3, 26)),
                    {theta: sp.pi / 3, k: 3, n: 30, d: 10}),
        SpecialCase("scratch on its peak: +oo", sp.oo, {theta: sp.pi / 4, sigma: 1, k: 2, n: 20, d: 20}),
        SpecialCase("too few samples for k features: -oo", -sp.oo, {theta: sp.pi / 4, sigma: 1, k: 5, n: 6, d: 30}),
    ],
    singular="+oo (scratch peak n in {d-1, d, d+1}, sigma > 0), -oo (n <= k + 1 with noise), NaN where "
             "both are infinite or k >= d (undefined)",
)
def transferability_finite() -> Derivation:
    scratch = get("scratch.risk_finite").expr
    transfer = get("lt.k.risk_finite").expr
    (lt_conv, c_conv), (lt_zero, c_zero), (lt_inf, _) = transfer.args
    if lt_zero != 0 or lt_inf != sp.oo:  # pragma: no cover
        raise ArithmeticError(f"unexpected branches of lt.k.risk_finite: {transfer}")
    # scratch's branches are ordered (a later condition holds only where the earlier fail):
    # the place where scratch is infinite, as a condition on its own
    infinite = [i for i, (value, _) in enumerate(scratch.args) if value == sp.oo]
    (last,) = infinite
    scratch_infinite = sp.And(*[sp.Not(c) for _, c in scratch.args[:last]], scratch.args[last][1])
    pieces = [(sp.nan, k >= d)]
    # the transfer risk finite (n > k + 1): scratch's branches in their order
    for sc_value, sc_cond in scratch.args:
        value = sp.oo if sc_value == sp.oo else _sigma_polynomial(sc_value - lt_conv)
        pieces.append((value, sc_cond & c_conv))
    # no noise at all: the transfer risk is 0 (and scratch finite, sigma = 0)
    for sc_value, sc_cond in scratch.args:
        if sc_value != sp.oo:
            pieces.append((sc_value, sc_cond & c_zero))
    # the transfer risk infinite
    pieces += [(sp.nan, scratch_infinite), (-sp.oo, True)]
    expr = sp.Piecewise(*pieces)
    steps = [
        Step("scratch.risk_finite (min-norm interpolation at finite n, d)", scratch),
        Step("lt.k.risk_finite (k-feature least squares)", transfer),
        Step("T = R_sc - R_lt on every pair of branches (each a polynomial in sigma with factored "
             "coefficients); oo - finite = oo, finite - oo = -oo, oo - oo undefined (NaN); k >= d is "
             "outside the model (NaN)", expr),
    ]
    return Derivation(expr, steps=steps)


@register(
    "lt.k.transferability",
    title="Transferability of linear transfer onto k features, proportional limit",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _K],
    regime="n, d -> oo with gamma = n/d at fixed k; scratch = min-norm interpolation, transfer = "
           "least-squares readout on the frozen rank-k features",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=INVERSE_WISHART_REFERENCE + "; " + _FEATURES,
    notes=(
        "scratch.risk - lt.k.risk, folded into the branches of scratch.risk (the transfer risk is "
        "finite). k = 1 is lt.transferability at lam = 0. +oo at gamma = 1 with sigma > 0 "
        "(scratch's interpolation peak)."
    ),
    special_cases=[
        SpecialCase("one source task: lt.transferability at lam = 0", "lt.transferability",
                    {k: 1, parameters.lam.symbol: 0, gamma: sp.Rational(1, 3)}),
        SpecialCase("one source task: lt.transferability at lam = 0 (gamma > 1)", "lt.transferability",
                    {k: 1, parameters.lam.symbol: 0, gamma: sp.Rational(5, 2)}),
        SpecialCase("interpolation peak: +oo", sp.oo, {gamma: 1, sigma: 1, k: 3, theta: sp.pi / 3}),
        SpecialCase("noiseless, gamma = 2: scratch exact, -|P_perp beta_t|^2 = -3/(3 + 4)", -sp.Rational(3, 7),
                    {gamma: 2, sigma: 0, theta: sp.pi / 3, k: 4}),
    ],
    singular="gamma = 1 with sigma > 0: +oo (scratch's interpolation peak)",
)
def transferability() -> Derivation:
    scratch = get("scratch.risk").expr
    transfer = get("lt.k.risk").expr
    pieces = []
    for value, cond in scratch.args:
        pieces.append((value if value in (sp.oo, -sp.oo) else value - transfer, cond))
    expr = sp.Piecewise(*pieces)
    steps = [
        Step("scratch.risk (proportional limit)", scratch),
        Step("lt.k.risk (n -> oo at fixed k)", transfer),
        Step("T = R_sc - R_lt in each branch of R_sc", expr),
    ]
    return Derivation(expr, steps=steps)


# -- the optimal number of source tasks ------------------------------------------------------
def _collect_sc(expr: sp.Expr) -> sp.Expr:
    """``expr`` collected in ``S`` and ``C``, each coefficient factored; the argument of a
    square root is collected the same way (so ``C (n - 1)``, not ``C n - C``)."""
    groups = sp.collect(sp.expand(expr, deep=False), [_S, _C], evaluate=False)
    out = sp.Add(*[sp.factor(coef) * key for key, coef in groups.items()])
    return out.replace(lambda e: isinstance(e, sp.Pow) and e.exp == sp.Rational(1, 2) and e.base.is_Add,
                       lambda e: sp.sqrt(_collect_inner(e.base)))


def _collect_inner(expr: sp.Expr) -> sp.Expr:
    groups = sp.collect(sp.expand(expr), [_S, _C], evaluate=False)
    return sp.Add(*[sp.factor(coef) * key for key, coef in groups.items()])


@memo
def _optimum() -> tuple[sp.Expr, dict, list[Step]]:
    convergent, _, _ = _risk_finite_parts()
    risk_s = convergent.subs({sp.sin(theta) ** 2: _S, sp.cos(theta) ** 2: _C}).subs(k, _KC)
    if risk_s.has(theta):  # pragma: no cover
        raise ArithmeticError("the risk is not a function of sin^2 and cos^2 alone")
    slope = sp.factor(sp.together(sp.diff(risk_s, _KC)))
    numerator, denominator = sp.fraction(slope)
    # the factor of the numerator that carries k: a polynomial of degree 2
    factors = [f for f in sp.Mul.make_args(sp.factor(numerator)) if f.has(_KC)]
    (quadratic,) = factors
    poly = sp.Poly(quadratic, _KC)
    if poly.degree() != 2:  # pragma: no cover
        raise ArithmeticError(f"dR/dk = 0 is not a quadratic in k: {poly}")
    if poly.LC().could_extract_minus_sign():
        poly = -poly
    # the rest of dR/dk, (n - 1)/((C k + S)^2 (n - 1 - k)^2) up to the sign taken into the
    # quadratic: positive on 0 < k < n - 1, so dR/dk has the sign of the quadratic
    positive_factor = sp.factor(slope / poly.as_expr())
    a, b, c0 = poly.all_coeffs()
    a, b, c0 = sp.factor(a), sp.factor(b), sp.factor(c0)
    roots = list(sp.roots(poly, multiple=True))  # the quadratic formula
    discriminant = sp.factor(b**2 - 4 * a * c0)
    # a >= 0 and b >= 0: the root with +sqrt is the larger, positive iff c0 < 0 (Vieta:
    # product c0/a); written as -2 c0/(b + sqrt(D)), free of the cancellation of
    # -b + sqrt(D) and finite at sigma = 0 (a = 0), where the quadratic is linear
    stable = sp.factor(sp.factor(-2 * c0) / (b + sp.sqrt(discriminant)))
    # numerator and denominator share sqrt(S) (S > 0): divide it out, and collect the
    # polynomials in S and C with factored coefficients (C (n - 1), not C n - C)
    num, den = sp.fraction(stable)
    num, den = _collect_sc(sp.expand(num / sp.sqrt(_S))), _collect_sc(sp.expand(den / sp.sqrt(_S)))
    stable = num / den
    check = sp.expand(sp.numer(sp.together(poly.as_expr().subs(_KC, stable))))
    if check != 0:  # pragma: no cover
        raise ArithmeticError("the stable form is not a root of dR/dk = 0")
    # which root it is: compared at an exact point (both are roots; the other root
    # is negative there)
    point = {_S: sp.Rational(1, 4), _C: sp.Rational(3, 4), sigma: sp.Rational(1, 2), n: 12}
    larger = [r for r in roots if abs(sp.N((r - stable).subs(point), 30)) < 1e-25]
    if len(larger) != 1:  # pragma: no cover
        raise ArithmeticError(f"the stable form is not one of the roots {roots}")
    # large n with noise: k* grows like sqrt(n) (sp.limit of k*/sqrt(n), sigma > 0)
    noisy = sp.Symbol("sigma_pos", positive=True)
    scaling = sp.factor(sp.limit((stable / sp.sqrt(n)).subs(sigma, noisy), n, sp.oo)).subs(noisy, sigma)
    parts = {
        "large_n_coefficient": scaling,
        "slope": slope, "quadratic": poly.as_expr(), "positive_factor": positive_factor,
        "roots": sp.Tuple(*roots), "constant_term": c0, "discriminant": discriminant, "stable": stable,
    }
    steps = [
        Step("the convergent risk with k continuous (k_c), S = sin^2 theta, C = cos^2 theta", risk_s),
        Step("dR/dk (sp.diff, factored)", slope),
        Step("its numerator carries a quadratic in k (leading coefficient sigma^2 C^2 >= 0)", poly.as_expr()),
        Step("the remaining factor is positive on 0 < k < n - 1, so dR/dk has the sign of the quadratic",
             positive_factor),
        Step("roots of the quadratic (sp.roots)", sp.Tuple(*roots)),
        Step("coefficients a, b >= 0: the quadratic increases on k > 0, so the larger root is the unique "
             "minimiser of R on (0, n - 1) when the constant term c0 = P(0) < 0 (R then falls and rises), "
             "and R increases on (0, n - 1) when c0 >= 0", c0),
        Step("the larger root as -2 c0/(b + sqrt(b^2 - 4 a c0)) (checked: a root of the quadratic and "
             "equal to one of the sp.roots roots), finite at sigma = 0", stable),
        Step("with noise, k* ~ c sqrt(n) as n -> oo: c = lim k*/sqrt(n) (sp.limit, sigma > 0); without "
             "noise k* = (n - 1)/2 - S/(2 C) grows like n/2", scaling),
    ]
    return stable, parts, steps


@register(
    "lt.k.optimal",
    title="Optimal number of source tasks for linear transfer at finite n (k continuous)",
    family=_FAMILY,
    params=[_THETA, _SIGMA, _N],
    regime="as lt.k.risk_finite, with k treated as a continuous variable on 0 < k < n - 1",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=INVERSE_WISHART_REFERENCE + "; " + _FEATURES,
    notes=(
        "sp.diff of the convergent branch of lt.k.risk_finite in k: dR/dk has the sign of a quadratic "
        "sigma^2 C^2 k^2 + 2 S C (1 + sigma^2) k + S^2 (1 + sigma^2) - S C (n - 1) (S = sin^2 theta, "
        "C = cos^2 theta) whose larger root, in a form without cancellation, is the minimiser. It is "
        "positive iff cos^2 theta (n - 1) > sin^2 theta (1 + sigma^2) (and sin theta != 0); "
        "otherwise the risk increases with k and the value 0 is encoded (one source task is best "
        "among the integers). At sin theta = 0 the risk does not fall with k (0 encoded; with "
        "sigma = 0 it is flat). The integer optimum is the better of floor and ceil, clipped to "
        "[1, n - 2]: optimal_k computes it by direct comparison. With noise k* grows like "
        "|tan theta| sqrt(n)/sigma (extra large_n_coefficient, by sp.limit), without noise like n/2. "
        "Extras: dR/dk, the quadratic, its roots, the stable root, the large-n coefficient."
    ),
    special_cases=[
        SpecialCase("no noise: the linear root (n - 1)/2 - tan^2(theta)/2", sp.Rational(9, 2),
                    {sigma: 0, theta: sp.pi / 4, n: 11}),
        SpecialCase("theta = pi/4, sigma = 1, n = 21: sqrt(22) - 2", sp.sqrt(22) - 2,
                    {sigma: 1, theta: sp.pi / 4, n: 21}),
        SpecialCase("orthogonal tasks: more sources never help", sp.Integer(0), {theta: sp.pi / 2}),
        SpecialCase("few samples: one source is best", sp.Integer(0), {theta: sp.pi / 3, sigma: 1, n: 3}),
    ],
    singular="none: 0 where the risk increases with k (no interior minimiser)",
)
def optimal() -> Derivation:
    stable, parts, steps = _optimum()
    c0 = parts["constant_term"]
    root = stable.subs(_TRIG)
    # c0 < 0 with c0 = S (S (1 + sigma^2) - C (n - 1)): the condition as a comparison of two
    # nonnegative numbers (no subtraction in float64)
    if sp.factor(c0 - _S * (_S * (1 + sigma**2) - _C * (n - 1))) != 0:  # pragma: no cover
        raise ArithmeticError(f"unexpected constant term {c0}")
    interior = (sp.cos(theta) ** 2 * (n - 1) > sp.sin(theta) ** 2 * (1 + sigma**2)) & sp.Ne(sp.sin(theta), 0)
    expr = sp.Piecewise((root, interior), (sp.Integer(0), True))
    steps = steps + [
        Step("the constant term c0 = S (S (1 + sigma^2) - C (n - 1)) < 0 iff sin theta != 0 and "
             "cos^2 theta (n - 1) > sin^2 theta (1 + sigma^2); otherwise R increases with k: 0", expr),
    ]
    extras = {name: value.subs(_TRIG) for name, value in parts.items()}
    return Derivation(expr, steps=steps, extras=extras)


# -- numerical helpers ------------------------------------------------------------------------
def _scalar(param, value):
    return parameters.scalar(param, value)


def _k_grid(n_samples: int, dim: int | None) -> np.ndarray:
    """``k = 1..k_max``: ``k_max = n - 2`` (finite risk needs n > k + 1), and ``d - 1`` if ``d`` is given."""
    top = n_samples - 2
    if dim is not None:
        top = min(top, dim - 1)
    return np.arange(1, top + 1, dtype=float)


def optimal_k(theta_value: float, sigma_value: float, n_samples: int, dim: int | None = None) -> int:
    """The integer number of source tasks minimising ``lt.k.risk_finite``, by direct comparison.

    Evaluates the compiled risk at every ``k = 1 .. n - 2`` (and ``k <= d - 1`` if ``dim`` is
    given: the model needs ``d >= k + 1``) and returns the argmin (the smallest on ties).  Needs
    ``n >= 3`` (with ``n <= 2`` no ``k`` has a finite risk).  On ``k <= n - 2`` the risk
    falls then rises (see ``lt.k.optimal``), so the result is ``floor`` or ``ceil`` of the
    continuous optimum clipped to the range -- the tests check that.
    """
    th = _scalar(_THETA, theta_value)
    sg = _scalar(_SIGMA, sigma_value)
    nn = _scalar(_N, n_samples)
    if nn < 3:
        raise ValueError(f"parameter n must be >= 3 for a finite k-feature risk (got {nn})")
    dd = None if dim is None else _scalar(_D, dim)
    if dd is not None and dd < 2:
        raise ValueError(f"parameter d must be >= 2 for one source task (got {dd})")
    ks = _k_grid(nn, dd)
    risks = get("lt.k.risk_finite").numpy(th, sg, ks, float(nn))
    return int(ks[int(np.argmin(risks))])


def largest_positive_k(theta_value: float, sigma_value: float, n_samples: int, dim: int) -> int:
    """The largest ``k`` (``1 <= k <= min(n - 2, d - 1)``) with ``lt.k.transferability_finite > 0``,
    by direct comparison; 0 if transfer is negative (or zero) for every ``k``.

    Where scratch is infinite (``n in {d-1, d, d+1}``, ``sigma > 0``) every such ``k`` has
    ``T = +oo`` and the largest is returned.
    """
    th = _scalar(_THETA, theta_value)
    sg = _scalar(_SIGMA, sigma_value)
    nn = _scalar(_N, n_samples)
    dd = _scalar(_D, dim)
    ks = _k_grid(nn, dd)
    if ks.size == 0:
        return 0
    values = get("lt.k.transferability_finite").numpy(th, sg, ks, float(nn), float(dd))
    positive = ks[values > 0]
    return int(positive.max()) if positive.size else 0

