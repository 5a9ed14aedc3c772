"""Fine-tuning: all layers trained by gradient flow from the pretrained weights.

Model (SPEC section 1): target design ``X in R^{n x d}`` with i.i.d. ``N(0, 1)`` entries,
``y = X beta_t + eps``, ``eps ~ N(0, sigma^2 I_n)``, unit teachers with
``beta_s . beta_t = cos(theta)``; the network was pretrained on the population source
loss, so it starts fine-tuning at ``beta = beta_s`` with balanced weights.  The loss
gradient ``g = X^T (X beta - y) / n`` lies in the row space of ``X``, so gradient flow
moves only ``P beta`` freely (``P = X^+ X``); it ends with ``P beta_ft = beta_sc`` (the
minimum-norm interpolator of scratch training) when ``gamma = n/d < 1``.  The null-space
part ``(I - P) beta`` keeps its direction and is rescaled: ``(I-P) beta_ft = c^(L-1)
(I-P) beta_s``.

Results registered (family ``fine_tuning``):

- ``ft.transferability`` -- the paper's Thm 3.9, which takes ``c = 1``; exact only for
  ``sigma = 0`` (APPROXIMATION);
- ``ft.transferability_exact`` -- balanced gradient flow, with ``c`` the positive root of
  ``c^(2L) - a c^(2L-2) - b = 0`` derived from the invariant of ``dln.balanced_flow``
  (EXACT for the stated model).

Both risks are expectations in the proportional limit ``n = gamma d``, ``d -> oo``;
``a = |(I-P) beta_s|^2`` and ``b = |beta_sc|^2`` concentrate, so ``c`` is deterministic.
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.derivation_cache import memo
from featfate_sym.registry import Derivation, ImplicitRoot, NumericForm, SpecialCase, Exactness, Source, Status, Step, get, register
from featfate_sym.symbols import L, a, b, c, d, ell_c, gamma, n, sigma, theta
from featfate_sym.theory.random_matrix import (
    INVERSE_WISHART_REFERENCE,
    inverse_covariance_mean_coefficient,
    inverse_gram_trace_mean,
    projection_mean_coefficient,
    proportional_limit,
)
from featfate_sym.theory.zero import is_zero

_FAMILY = "fine_tuning"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"

_GAMMA, _THETA, _SIGMA, _DEPTH = parameters.gamma, parameters.theta, parameters.sigma, parameters.L

#: ``cos(theta)`` as one unknown while solving for the phase boundary
_COS = sp.Symbol("cos_theta_star", real=True)
#: ``log|beta|`` along the flow, the integration variable of the invariant
_LOG_NORM = sp.Symbol("ell", real=True)
#: ``x = c^2``, the variable in which the root equation is increasing and convex
_X = sp.Symbol("x", positive=True)
#: ``x - a >= 0``, the distance above the left end of the bracket
_Y = sp.Symbol("y", nonnegative=True)


# -- shared pieces -----------------------------------------------------------------------
@memo
def projection_limit() -> sp.Expr:
    """``p`` with ``E P -> p I`` in the proportional limit: ``Min(1, gamma)``.

    From the derived finite-size coefficient ``min(n, d)/d`` of
    :func:`~featfate_sym.theory.random_matrix.projection_mean_coefficient`; the limit is
    taken on ``1 - min(n, d)/d`` (an ``Add``, which ``proportional_limit`` sends to its
    limit term by term).
    """
    return sp.simplify(1 - proportional_limit(1 - projection_mean_coefficient(n, d), gamma))


def teachers() -> tuple[sp.Matrix, sp.Matrix]:
    """``beta_s`` and ``beta_t`` in the plane of the two teachers (orthonormal basis
    ``beta_s``, ``nu``): every quantity below is a quadratic form in these two vectors."""
    return sp.Matrix([1, 0]), sp.Matrix([sp.cos(theta), sp.sin(theta)])


def null_space_mean(u: sp.Matrix, v: sp.Matrix, p: sp.Expr, *, simplify: bool = True) -> sp.Expr:
    """``E <(I-P) u, (I-P) v> = u^T (I - E P) v = (1 - p) u^T v`` for fixed ``u, v``
    (``(I-P)^2 = I-P``); ``simplify=False`` leaves the quadratic form as it is, for a
    caller that expands the result at once."""
    if not simplify:
        return (1 - p) * (u.T * v)[0, 0]
    # immutable copies, so that the memoised form below is shared by every builder that
    # asks for the same vectors (E|(I-P) beta_t|^2 is needed by most of them)
    return _null_space_mean(sp.ImmutableMatrix(u), sp.ImmutableMatrix(v), p)


@memo
def _null_space_mean(u: sp.ImmutableMatrix, v: sp.ImmutableMatrix, p: sp.Expr) -> sp.Expr:
    # u^T (I - p I) v = (1 - p) u^T v: only the quadratic form in cos, sin needs simplifying
    # (sin^2 + cos^2 = 1), not the product with the projection coefficient
    return (1 - p) * sp.simplify((u.T * v)[0, 0])


def _normal(expr: sp.Expr) -> sp.Expr:
    """``expr`` with each subexpression brought over one denominator (``normal``, bottom
    up): the first pass of ``sp.simplify``, and all of it that the sums of risks below need
    (the same form, without the trigonometric and power searches that follow)."""
    return sp.bottom_up(expr, lambda e: getattr(e, "normal", lambda: e)())


@memo
def under_threshold(expr: sp.Expr, *, expand: bool = False) -> sp.Expr:
    """``expr`` on the branch ``gamma < 1``, where ``Min(1, gamma) = gamma``, simplified;
    ``expand=True``: expanded instead (for a polynomial in its atoms, ``cos theta``, ``sin
    theta``, the weights, ``gamma``, the normal form ``sp.expand`` of the simplified one
    gives, without the ``simplify`` in between)."""
    branch = expr.subs(sp.Min(1, gamma), gamma)
    return sp.expand(branch) if expand else sp.simplify(branch)


@memo
def over_threshold(expr: sp.Expr) -> sp.Expr:
    """``expr`` on the branch ``gamma > 1``, where ``Min(1, gamma) = 1``."""
    return sp.simplify(expr.subs(sp.Min(1, gamma), 1))


def noise_polynomial(expr: sp.Expr, noise: sp.Symbol) -> sp.Expr:
    """``expr`` written as a polynomial in ``noise`` with factored coefficients.

    The factored coefficients cancel the threshold factor (``1 - gamma``) symbolically, so
    float64 does not subtract nearly equal numbers next to the threshold.
    """
    num, den = sp.fraction(sp.together(expr))
    poly = sp.Poly(sp.expand(num), noise)
    return sp.Add(*[sp.factor(coeff / den) * noise**k for (k,), coeff in poly.terms()])


def scratch_branches() -> tuple[sp.Expr, sp.Expr]:
    """The two branches (``gamma < 1``, ``gamma > 1``) of ``scratch.risk``."""
    expr = get("scratch.risk").expr
    branches = {cond: value for value, cond in expr.args}
    return branches[gamma < 1], branches[gamma > 1]


@memo
def _transferability_with_scale(scale: sp.Expr) -> tuple[sp.Expr, sp.Expr, list[Step]]:
    """``T = R_sc - R_ft`` on both sides of ``gamma = 1`` for ``(I-P) beta_ft = scale (I-P) beta_s``.

    ``beta_ft = scale (I-P) beta_s + beta_sc``.  ``beta_sc - P beta_t = X^+ eps`` lies in the
    row space, orthogonal to every null-space vector, so
    ``R_ft = |(I-P)(scale beta_s - beta_t)|^2 + |beta_sc - P beta_t|^2`` and, from the same
    split of scratch, ``|beta_sc - P beta_t|^2 = R_sc - |(I-P) beta_t|^2``.
    """
    beta_s, beta_t = teachers()
    p = projection_limit()
    null_ft = null_space_mean(scale * beta_s - beta_t, scale * beta_s - beta_t, p)
    null_sc = null_space_mean(beta_t, beta_t, p)
    sc_under, sc_over = scratch_branches()
    r_ft_under = _normal(under_threshold(null_ft) + sc_under - under_threshold(null_sc))
    r_ft_over = sp.simplify(over_threshold(null_ft) + sc_over - over_threshold(null_sc))
    # powsimp writes c^L/c as c^(L-1): no overflow of c^(2L) at large depth
    t_under = sp.powsimp(sp.factor(sc_under - r_ft_under), force=True)
    t_over = sp.simplify(sc_over - r_ft_over)
    steps = [
        Step("E P -> p I in the proportional limit (random_matrix.projection_mean_coefficient, "
             "rotational invariance)", p),
        Step("E|(I-P)(scale beta_s - beta_t)|^2 = (1 - p)|scale beta_s - beta_t|^2", null_ft),
        Step("E|(I-P) beta_t|^2: the bias of scratch training", null_sc),
        Step("R_ft = E|(I-P)(scale beta_s - beta_t)|^2 + (R_sc - E|(I-P) beta_t|^2), gamma < 1 "
             "(R_sc from scratch.risk)", r_ft_under),
        Step("gamma > 1: P = I, the null space is empty and R_ft = R_sc", r_ft_over),
        Step("T = R_sc - R_ft, gamma < 1 (the scratch variance cancels)", t_under),
        Step("T = R_sc - R_ft, gamma > 1", t_over),
    ]
    return t_under, t_over, steps


# -- ft.transferability (paper, c = 1) ---------------------------------------------------
@register(
    "ft.transferability",
    title="Transferability of fine-tuning, paper form (c = 1)",
    family=_FAMILY,
    params=[_GAMMA, _THETA],
    regime="n, d -> oo with gamma = n/d; population source; gradient flow from the pretrained "
    "weights; null-space part of beta frozen at its pretrained value (c = 1)",
    status=Status(Source.PAPER, Exactness.APPROXIMATION, neglected="the balanced-flow rescaling c of the null-space part (c = 1 assumed; exact at sigma = 0 or L = 1)"),
    reference=_PAPER + ", paper Thm 3.9",
    notes=(
        "The paper's Thm 3.9: beta_ft = (I-P) beta_s + beta_sc, i.e. the null-space scale c = 1. "
        "For balanced gradient flow c = 1 exactly only when sigma = 0; with noise the exact "
        "result is ft.transferability_exact (depth-dependent). The scratch variance "
        "gamma sigma^2/(1-gamma) enters R_sc and R_ft alike and cancels, so T does not depend "
        "on sigma -- part of the result. gamma >= 1: P = I, fine-tuning equals scratch, T = 0; "
        "the value at gamma = 1 is the limit from both sides (0). Extras: risk_ft (gamma < 1), "
        "boundary_cos_theta (cos theta* = 1/2, theta* = pi/3 for every gamma < 1)."
    ),
    special_cases=[
        SpecialCase("aligned tasks, gamma = 1/4: (1 - gamma)", sp.Rational(3, 4), {theta: 0, gamma: sp.Rational(1, 4)}),
        SpecialCase("theta = pi/3 is neutral", sp.Integer(0), {theta: sp.pi / 3, gamma: sp.Rational(1, 2)}),
        SpecialCase("gamma = 2: no null space, T = 0", sp.Integer(0), {gamma: 2}),
        SpecialCase("continuous at gamma = 1 from below", sp.Integer(0), {theta: sp.pi / 5}, (gamma, 1, "-")),
    ],
    singular="none: finite for every gamma > 0 (0 at and above gamma = 1)",
)
def transferability() -> Derivation:
    t_under, t_over, steps = _transferability_with_scale(sp.Integer(1))
    at_one = sp.limit(t_under, gamma, 1, "-")
    if not is_zero(at_one - t_over):
        raise ArithmeticError("T_ft is not continuous at gamma = 1")
    expr = sp.Piecewise((t_under, gamma < 1), (t_over, True))
    (cos_star,) = sp.solve(t_under.subs(sp.cos(theta), _COS), _COS)
    beta_s, beta_t = teachers()
    p = projection_limit()
    r_ft = _normal(under_threshold(null_space_mean(beta_s - beta_t, beta_s - beta_t, p))
                   + scratch_branches()[0] - under_threshold(null_space_mean(beta_t, beta_t, p)))
    steps = [
        Step("the loss gradient lies in the row space of X (P = X^+ X); for L = 1 gradient flow "
             "moves beta only there, so (I - P) beta stays at (I - P) beta_s; for L >= 2 it also "
             "rescales the null-space part, (I - P) beta_ft = c^(L-1) (I - P) beta_s "
             "(ft.transferability_exact). The paper's Thm 3.9 takes c = 1: "
             "beta_ft = (I - P) beta_s + beta_sc"),
        *steps,
        Step("limit gamma -> 1- equals the gamma > 1 value: continuous at the threshold", at_one),
        Step("T_ft (Piecewise; gamma >= 1 gives 0)", expr),
        Step("boundary T = 0 solved for cos(theta) (sp.solve)", cos_star),
    ]
    return Derivation(expr, steps=steps, extras={"risk_ft": r_ft, "boundary_cos_theta": cos_star,
                                                 "boundary_theta": sp.acos(cos_star)})


# -- ft.transferability_first_layer -----------------------------------------------------
@register(
    "ft.transferability_first_layer",
    title="Transferability of fine-tuning the first layer only",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA],
    regime="n, d -> oo with gamma = n/d; population source; gradient flow of the first layer "
    "W_1 alone from the pretrained weights, the other layers frozen (any depth, any balance)",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER + " (model of Thm 3.9); not a result of the paper",
    notes=(
        "With W_2 ... W_L frozen, beta = W_1 v for the fixed vector v = W_2 ... W_L, and "
        "dW_1/dt = -g v^T gives dbeta/dt = -|v|^2 g: linear gradient flow from beta_s at rate "
        "|v|^2. g lies in the row space of X, so (I-P) beta stays (I-P) beta_s and the flow "
        "ends at beta_sc + (I-P) beta_s: the paper's c = 1 form, exact here for every noise "
        "level and depth. T does not depend on sigma (inert parameter: the scratch variance "
        "cancels); the risk does. At finite n < d the same value with gamma = n/d is exact, "
        "E P = (n/d) I. Fine-tuning only the last layer is linear transfer (lt.*)."
    ),
    special_cases=[
        SpecialCase("equals the paper's c = 1 form", "ft.transferability", {sigma: sp.Rational(1, 2)}),
        SpecialCase("gamma = 2: T = 0", sp.Integer(0), {gamma: 2}),
    ],
    singular="none: finite for every gamma > 0 (0 at and above gamma = 1)",
    inert=("sigma",),
)
def transferability_first_layer() -> Derivation:
    v = sp.Matrix(sp.symbols("v1 v2", real=True))
    g = sp.Matrix(sp.symbols("g1 g2", real=True))
    rate = sp.expand(-(g * v.T) * v)  # d(W_1 v)/dt with dW_1/dt = -g v^T, v frozen
    if sp.expand(rate + (v.T * v)[0, 0] * g) != sp.zeros(2, 1):
        raise ArithmeticError("first-layer flow is not -|v|^2 g")
    t_under, t_over, steps = _transferability_with_scale(sp.Integer(1))
    expr = sp.Piecewise((t_under, gamma < 1), (t_over, True))
    steps = [
        Step("W_2..W_L frozen, v = W_2 ... W_L: dbeta/dt = (dW_1/dt) v = -(g v^T) v = -|v|^2 g "
             "(2x2 check, any dimension alike)", rate),
        Step("g = 2 X^T (X beta - y)/n lies in the row space: (I - P) beta = (I - P) beta_s "
             "throughout, and P beta -> beta_sc (linear flow on a quadratic, gamma < 1): "
             "beta_ft = beta_sc + (I - P) beta_s, the null-space scale is 1 for every sigma, L"),
        *steps,
        Step("T_ft, first layer only (gamma >= 1 gives 0)", expr),
    ]
    return Derivation(expr, steps=steps, extras={"rate": rate})


# -- ft.transferability_exact ------------------------------------------------------------
def _limits_a_b() -> tuple[sp.Expr, sp.Expr, list[Step]]:
    """Concentrated values of ``a = |(I-P) beta_s|^2`` and ``b = |beta_sc|^2``, ``gamma < 1``.

    ``b = |P beta_t + X^+ eps|^2 = beta_t^T P beta_t + |X^+ eps|^2`` (cross term of mean
    zero), ``E|X^+ eps|^2 = sigma^2 E tr (X X^T)^{-1}`` (inverse-Wishart lemma).
    """
    beta_s, beta_t = teachers()
    p = projection_limit()
    a_lim = under_threshold(null_space_mean(beta_s, beta_s, p))
    row_signal = under_threshold(sp.simplify((beta_t.T * (p * sp.eye(2)) * beta_t)[0, 0]))
    # gamma < 1: X^+ = X^T (X X^T)^{-1}, |X^+ eps|^2 averages to sigma^2 tr (X X^T)^{-1};
    # gamma > 1: X^+ = (X^T X)^{-1} X^T, it averages to sigma^2 tr (X^T X)^{-1}
    noise_gram = proportional_limit(sigma**2 * inverse_gram_trace_mean(n, d), gamma)
    noise_cov = proportional_limit(sigma**2 * d * inverse_covariance_mean_coefficient(n, d), gamma)
    gram_branches = {cond: value for value, cond in noise_gram.args}
    cov_branches = {cond: value for value, cond in noise_cov.args}
    noise_under = gram_branches[gamma < 1]
    noise_over = cov_branches[gamma > 1]
    # at gamma = 1 both lemmas give the same unbounded value (oo sigma^2): oo for sigma > 0;
    # with sigma = 0, eps = 0 and X^+ eps = 0
    if gram_branches[sp.true] != cov_branches[sp.true]:  # pragma: no cover
        raise ArithmeticError("the two inverse-Wishart lemmas disagree at gamma = 1")
    at_one = gram_branches[sp.true].subs(sigma, sp.Symbol("sigma_pos", positive=True))
    noise = sp.Piecewise((noise_under, gamma < 1), (noise_over, gamma > 1),
                         (sp.Integer(0), sp.Eq(sigma, 0)), (at_one, True))
    b_lim = noise_polynomial(row_signal + noise_under, sigma)
    steps = [
        Step("a = E|(I-P) beta_s|^2 = 1 - p, on gamma < 1", a_lim),
        Step("E|P beta_t|^2 = beta_t^T (E P) beta_t (P^T P = P), on gamma < 1", row_signal),
        Step("E|X^+ eps|^2, lemma (" + INVERSE_WISHART_REFERENCE + "), proportional limit: "
             "gamma < 1, sigma^2 E tr (X X^T)^{-1} = sigma^2 n/(d - n - 1); gamma > 1, "
             "sigma^2 tr E (X^T X)^{-1} = sigma^2 d/(n - d - 1) (finite); gamma = 1: "
             "infinite for sigma > 0 (0 for sigma = 0)", noise),
        Step("b = E|beta_sc|^2 = E|P beta_t|^2 + E|X^+ eps|^2 on gamma < 1", b_lim),
    ]
    return a_lim, b_lim, steps


@register(
    "ft.transferability_exact",
    title="Transferability of fine-tuning for balanced gradient flow (exact null-space scale)",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _DEPTH],
    regime="n, d -> oo with gamma = n/d; population source; balanced gradient flow (small "
    "pretraining initialisation) from the pretrained weights to convergence",
    status=Status(Source.DERIVED, Exactness.EXACT, verified="with the null-space exponent of dln.balanced_flow, itself verified at L = 2, 3, 4"),
    reference=_PAPER + ", Thm 3.9 corrected for the null-space scale c (SPEC section 2)",
    notes=(
        "c is the positive root of c^(2L) - a c^(2L-2) - b = 0 with a = 1 - gamma, "
        "b = gamma + gamma sigma^2/(1 - gamma) (an ImplicitRoot, bracket [sqrt(a), "
        "sqrt(a + b^(1/L) + 1)]: the root is unique there, the polynomial being increasing and "
        "convex in c^2 on [a, oo)). The null-space exponent (L-1)/L comes from "
        "dln.balanced_flow. c = 1 iff sigma = 0, where this equals ft.transferability; L = 1 "
        "equals it for every sigma. The step for E tr (X X^T)^{-1} is the inverse-Wishart "
        "lemma (Muirhead Thm 3.2.12). gamma >= 1: T = 0; at gamma = 1 the value is the limit "
        "gamma -> 1- (0, since (1-gamma) c^(2L-2) <= (1-gamma)^(1/L) (1-gamma+sigma^2)^((L-1)/L)). "
        "Extras: boundary_cos_theta = c^(L-1)/2 (cos theta* of T = 0, in the root c), "
        "risk_ft, a, b, root_equation."
    ),
    special_cases=[
        SpecialCase("one layer: the paper's form for every sigma", "ft.transferability", {L: 1}),
        SpecialCase("gamma = 2: T = 0", sp.Integer(0), {gamma: 2}),
    ],
    singular="none: the root c diverges as gamma -> 1- with sigma > 0, but T -> 0; gamma >= 1 "
    "gives 0 (documented branch)",
)
def transferability_exact() -> Derivation:
    exponent = get("dln.balanced_flow").extras["null_space_exponent"]
    steps = [Step("balanced flow: dlog|beta_N| / dlog|beta| (dln.balanced_flow)", exponent)]
    # integrate the invariant from the pretrained state |beta| = 1, |beta_N| = sqrt(a)
    # to the end |beta_ft| = c^L
    log_null = sp.log(sp.sqrt(a)) + sp.integrate(exponent, (_LOG_NORM, 0, sp.log(c**L)))
    null_norm = sp.simplify(sp.exp(sp.expand_log(log_null, force=True)))
    steps.append(Step("log|beta_N| integrated from |beta| = 1 (|beta_N| = sqrt(a)) to |beta| = c^L: "
                      "|(I-P) beta_ft| = c^(L-1) |(I-P) beta_s|", null_norm))
    # Pythagoras in row space + null space, with P beta_ft = beta_sc (|.|^2 = b)
    equation = sp.powsimp(sp.expand((c**L) ** 2 - (b + null_norm**2)), force=True)
    steps.append(Step("|beta_ft|^2 = |P beta_ft|^2 + |(I-P) beta_ft|^2 with P beta_ft = beta_sc",
                      sp.Eq(equation, 0)))
    # uniqueness: in x = c^2, g(x) = x^L - a x^(L-1) - b
    g = equation.subs(c, sp.sqrt(_X))
    g = sp.expand(sp.powsimp(sp.expand_power_base(g, force=True), force=True))
    g1 = sp.simplify(sp.diff(g, _X) / _X ** (L - 2))
    g2 = sp.simplify(sp.diff(g, _X, 2) / _X ** (L - 3))
    g1_above = sp.expand(g1.subs(_X, a + _Y))
    g2_above = sp.expand(g2.subs(_X, a + _Y))
    at_left = sp.simplify(g.subs(_X, a))
    if not (sp.expand(g1_above - (a + L * _Y)) == 0 and sp.factor(g2_above).is_nonnegative
            and is_zero(at_left + b)):
        raise ArithmeticError("the root equation is not increasing and convex on [a, oo)")
    steps += [
        Step("in x = c^2: g(x)", g),
        Step("g'(x) / x^(L-2) at x = a + y, y >= 0: positive (increasing)", g1_above),
        Step("g''(x) / x^(L-3) at x = a + y: nonnegative (convex)", sp.factor(g2_above)),
        Step("g(a) = -b <= 0; below a, x^(L-1)(x - a) - b < 0: the positive root is unique; "
             "g(a + b^(1/L)) >= (b^(1/L))^(L-1) b^(1/L) - b = 0 bounds it above", at_left),
    ]
    a_lim, b_lim, ab_steps = _limits_a_b()
    steps += ab_steps
    t_under, t_over, t_steps = _transferability_with_scale(c ** (L - 1))
    steps += [Step("(I-P) beta_ft = c^(L-1) (I-P) beta_s; c concentrates (a, b do), so it "
                   "leaves the expectation")] + t_steps
    expr = sp.Piecewise((t_under, gamma < 1), (t_over, True))
    root_eq = equation.subs({a: a_lim, b: b_lim})
    # g(a + b^(1/L)) >= 0 and g increases beyond a: the + 1 keeps a strict sign change
    # (at L = 1 the upper end would be the root itself) without overflow at large depth
    bracket = (sp.sqrt(a_lim), sp.sqrt(a_lim + b_lim ** (1 / L) + 1))
    # the value at gamma = 1: limit of an upper bound of |T| (c >= 1 branch) for sigma > 0
    below = sp.Symbol("q", positive=True)  # gamma = 1 - q
    bound = (1 - gamma) * (b_lim / gamma) ** ((L - 1) / L)
    bound_q = sp.powsimp(sp.expand_power_base(sp.factor(_normal(bound.subs(gamma, 1 - below))),
                                              force=True), force=True)
    bound_at_one = sp.limit(bound_q, below, 0, "+")
    if bound_at_one != 0:
        raise ArithmeticError("T_ft does not vanish as gamma -> 1-")
    steps += [
        Step("c >= 1: c^(2L)(1 - a) <= c^(2L) - a c^(2L-2) = b, so (1-gamma) c^(2L-2) <= "
             "(1-gamma)(b/gamma)^((L-1)/L) (= q (1 + sigma^2/q)^((L-1)/L), q = 1 - gamma), whose "
             "limit q -> 0+ is 0 for every L; for c < 1 the term is below (1-gamma). So T -> 0",
             bound_at_one),
        Step("T_ft (Piecewise; gamma >= 1 gives 0, the gamma -> 1- limit)", expr),
    ]
    (cos_star,) = sp.solve(t_under.subs(sp.cos(theta), _COS), _COS)
    steps.append(Step("boundary T = 0 solved for cos(theta)", cos_star))
    beta_s, beta_t = teachers()
    p = projection_limit()
    scale = c ** (L - 1)
    r_ft = _normal(under_threshold(null_space_mean(scale * beta_s - beta_t, scale * beta_s - beta_t, p))
                   + scratch_branches()[0] - under_threshold(null_space_mean(beta_t, beta_t, p)))
    root = ImplicitRoot(c, root_eq, bracket,
                        "null-space scale: positive root of c^(2L) - a c^(2L-2) - b, gamma < 1",
                        where=gamma < 1)
    numeric, numeric_steps = _depth_stable_form(equation, t_under, a_lim, b_lim)
    steps += numeric_steps
    extras = {"boundary_cos_theta": cos_star, "risk_ft": r_ft, "a": a_lim, "b": b_lim,
              "root_equation": equation, "bracket_high": bracket[1]}
    numeric = NumericForm(sp.Piecewise((numeric[0], gamma < 1), (t_over, True)), [numeric[1]],
                          "in ell_c = log(c^2 - a): no power of c whose exponent grows with L")
    return Derivation(expr, steps=steps, extras=extras, implicit=[root], numeric=numeric)


def _depth_stable_form(equation, t_under, a_lim, b_lim):
    """The root equation and ``T`` in ``ell_c = log(c^2 - a)``, for the evaluators.

    ``c^(2L)`` overflows float64 from ``L ~ 500`` (and Newton in ``c`` needs ``O(L)``
    steps from the bracket's upper end), so the evaluators solve instead the logarithm
    of ``c^(2L-2) (c^2 - a) = b``: ``h(ell) = ell + (L-1) log(a + e^ell) - log b``,
    increasing in ``ell`` with slope in ``[1, L]``; and the scale the transferability
    needs comes from the same identity, ``c^(L-1) = sqrt(b) e^(-ell/2)``, with no power
    of ``c`` at all.  The bracket ``[log b - (L-1) log(a + t), log t]``, ``t = b^(1/L) +
    1``, has finite ends for any depth: ``h(log t) >= 0`` since ``a + t >= b^(1/L)`` and
    ``t >= b^(1/L)``; ``h`` at the lower end is ``(L-1)(log(a + e^lo) - log(a + t)) <= 0``
    since ``e^lo <= t``.
    """
    power = sp.Symbol("Y", positive=True)  # c^(2L-2)
    in_power = sp.expand(equation.subs(c ** (2 * L - 2), power).subs(c ** (2 * L), c**2 * power))
    if in_power.has(c ** (2 * L)) or not sp.Poly(in_power, power).degree() == 1:
        raise ArithmeticError("the root equation is not linear in c^(2L-2)")
    (on_root,) = sp.solve(in_power, power)
    x = a + sp.exp(ell_c)
    on_root_ell = sp.simplify(on_root.subs(c, sp.sqrt(x)))
    scale = sp.sqrt(on_root_ell)  # c^(L-1)
    log_eq = sp.expand_log(sp.log(x ** (L - 1)) + sp.log(x - a) - sp.log(b), force=True)
    slope = sp.simplify(sp.diff(log_eq, ell_c) - 1)
    if not (is_zero(on_root_ell - b * sp.exp(-ell_c)) and slope.is_nonnegative is not False
            and is_zero(slope - (L - 1) * sp.exp(ell_c) / x)):
        raise ArithmeticError("the logarithmic root equation is not increasing")
    top = b ** (1 / L) + 1
    bracket = (sp.log(b) - (L - 1) * sp.log(a + top), sp.log(top))
    stable = sp.powsimp(t_under, force=True).subs(c ** (2 * L - 2), scale**2).subs(c ** (L - 1), scale)
    if stable.has(c):
        raise ArithmeticError("T_ft is not a function of c^(L-1) alone")
    limits = {a: a_lim, b: b_lim}
    root = ImplicitRoot(ell_c, log_eq.subs(limits), tuple(e.subs(limits) for e in bracket),
                        "log(c^2 - a): root of ell + (L-1) log(a + e^ell) - log b, gamma < 1",
                        where=gamma < 1)
    stable = stable.subs(limits)
    steps = [
        Step("on the root, c^(2L-2) = b/(c^2 - a) (sp.solve, linear in c^(2L-2))", on_root),
        Step("for the evaluators, in ell_c = log(c^2 - a): log of c^(2L-2)(c^2 - a) = b, "
             "increasing in ell_c (slope 1 + (L-1) e^ell/(a + e^ell)); bracket "
             "[log b - (L-1) log(a + b^(1/L) + 1), log(b^(1/L) + 1)]", sp.Eq(log_eq, 0)),
        Step("c^(L-1) = sqrt(b) e^(-ell_c/2): T_ft (gamma < 1) without any power of c", stable),
    ]
    return (stable, root), steps
