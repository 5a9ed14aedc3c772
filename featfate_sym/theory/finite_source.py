"""Finite source data: pretraining on ``n_s = gamma_s d`` noisy source samples.

Model (SPEC section 1, finite-source variant): source design ``X_s in R^{n_s x d}``
with i.i.d. ``N(0, 1)`` entries, independent of the target design, labels
``y_s = X_s beta_s + eps_s``, ``eps_s ~ N(0, sigma_s^2 I)``.  Small-initialisation
gradient flow on the source ends at the minimum-norm interpolator
``beta_s_hat = X_s^+ y_s`` (as scratch training does, paper Thms 3.5-3.6), which then
plays the role of the pretrained vector.

Results registered (family ``finite_source``):

- ``ft.transferability_finite_source`` -- fine-tuning from ``beta_s_hat`` in the ``c = 1``
  approximation (paper v2 appendix; APPROXIMATION);
- ``ft.transferability_finite_source_exact`` -- balanced gradient flow from ``beta_s_hat``:
  the null-space part is rescaled as in ``ft.transferability_exact``, from the invariant of
  ``dln.balanced_flow`` integrated from ``|beta| = |beta_s_hat|`` (EXACT for the stated model);
- ``lt.risk_finite_source`` -- linear transfer on the single frozen feature
  ``beta_s_hat . x`` (not in the paper).

All use the concentrated moments ``|beta_s_hat|^2`` and ``<beta_t, beta_s_hat>`` in the
proportional limit ``n_s = gamma_s d``, ``d -> oo``, derived from the random-matrix
lemmas of :mod:`featfate_sym.theory.random_matrix`.
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.derivation_cache import memo
from featfate_sym.registry import Derivation, ImplicitRoot, SpecialCase, Exactness, Source, Status, Step, get, register
from featfate_sym.symbols import L, b, c, d, gamma, gamma_s, lam, n, sigma_s, theta
from featfate_sym.theory.fine_tuning import noise_polynomial, null_space_mean, projection_limit, teachers, under_threshold
from featfate_sym.theory.random_matrix import (
    INVERSE_WISHART_REFERENCE,
    inverse_covariance_mean_coefficient,
    inverse_gram_trace_mean,
    proportional_limit,
)
from featfate_sym.theory.zero import is_zero

_FAMILY = "finite_source"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"

_GAMMA, _THETA = parameters.gamma, parameters.theta
_GAMMA_S, _SIGMA_S = parameters.gamma_s, parameters.sigma_s
# as in featfate_sym.theory.fine_tuning
_SIGMA, _DEPTH = parameters.sigma, parameters.L

#: ``cos(theta)`` as one unknown while solving for the break-even angle
_COS = sp.Symbol("cos_theta_star", real=True)
#: the readout coefficient of linear transfer
_W = sp.Symbol("w", real=True)
#: ``|b|^2`` and ``<beta_t, b>`` as plain numbers while minimising over the readout
_NORM2 = sp.Symbol("B", positive=True)
_OVERLAP = sp.Symbol("O", real=True)
#: ``u = |beta_ft|^2 / |beta_s_hat|^2``, the unknown end norm of balanced fine-tuning
#: (``u = c^(2L)`` in the notation of ``ft.transferability_exact``)
_U = sp.Symbol("u_ft", positive=True)
#: ``log|beta|`` along the flow, the integration variable of the invariant
_LOG_NORM = sp.Symbol("ell", real=True)


@memo
def source_moments() -> tuple[dict, list[Step]]:
    """Limits of ``E|beta_s_hat|^2`` and ``E<beta_t, beta_s_hat>`` on both sides of ``gamma_s = 1``.

    ``gamma_s < 1``: ``beta_s_hat = P_s beta_s + X_s^+ eps_s`` with ``P_s = X_s^+ X_s``;
    ``|.|^2 = beta_s^T P_s beta_s + |X_s^+ eps_s|^2`` (cross term of mean zero) and
    ``E|X_s^+ eps_s|^2 = sigma_s^2 E tr (X_s X_s^T)^{-1}``.
    ``gamma_s > 1``: ``beta_s_hat = beta_s + (X_s^T X_s)^{-1} X_s^T eps_s``, noise power
    ``sigma_s^2 tr E (X_s^T X_s)^{-1}``.  In both, ``E<beta_t, beta_s_hat> = beta_t^T E P_s beta_s``.
    """
    beta_s, beta_t = teachers()
    p_s = projection_limit().subs(gamma, gamma_s)
    signal = sp.simplify((beta_s.T * (p_s * sp.eye(2)) * beta_s)[0, 0])
    overlap = sp.simplify((beta_t.T * (p_s * sp.eye(2)) * beta_s)[0, 0])
    noise_under = proportional_limit(sigma_s**2 * inverse_gram_trace_mean(n, d), gamma_s)
    noise_over = proportional_limit(sigma_s**2 * d * inverse_covariance_mean_coefficient(n, d), gamma_s)
    under = {cond: value for value, cond in noise_under.args}[gamma_s < 1]
    over = {cond: value for value, cond in noise_over.args}[gamma_s > 1]
    on_under = {sp.Min(1, gamma_s): gamma_s}
    on_over = {sp.Min(1, gamma_s): 1}
    moments = {
        "norm2_under": sp.simplify(signal.subs(on_under) + under),
        "norm2_over": sp.simplify(signal.subs(on_over) + over),
        "overlap_under": sp.simplify(overlap.subs(on_under)),
        "overlap_over": sp.simplify(overlap.subs(on_over)),
        # gamma_s = 1: the noise power diverges when sigma_s > 0; without noise
        # P_s = I in the limit from both sides and beta_s_hat = beta_s
        "norm2_at_one_noiseless": sp.simplify(signal.subs(on_over)),
        "overlap_at_one": sp.simplify(overlap.subs(on_over)),
    }
    steps = [
        Step("E P_s -> p_s I with p_s = Min(1, gamma_s) (random_matrix.projection_mean_coefficient)", p_s),
        Step("E|P_s beta_s|^2 = beta_s^T E P_s beta_s", signal),
        Step("E<beta_t, beta_s_hat> = beta_t^T E P_s beta_s (noise has mean zero)", overlap),
        # each lemma holds on its own side only (elsewhere it returns oo): show that side
        Step("gamma_s < 1: sigma_s^2 E tr (X_s X_s^T)^{-1}, lemma (" + INVERSE_WISHART_REFERENCE + ")",
             under),
        Step("gamma_s > 1: sigma_s^2 tr E (X_s^T X_s)^{-1}, same lemma", over),
        Step("E|beta_s_hat|^2, gamma_s < 1", moments["norm2_under"]),
        Step("E|beta_s_hat|^2, gamma_s > 1", moments["norm2_over"]),
        Step("E<beta_t, beta_s_hat>, gamma_s < 1 and gamma_s > 1",
             sp.Tuple(moments["overlap_under"], moments["overlap_over"])),
    ]
    return moments, steps


def _by_source_branch(make) -> sp.Piecewise:
    """``make(norm2, overlap)`` on each side of ``gamma_s = 1``, with the documented values at 1."""
    m, _ = source_moments()
    return sp.Piecewise(
        (make(m["norm2_under"], m["overlap_under"]), gamma_s < 1),
        (make(m["norm2_over"], m["overlap_over"]), gamma_s > 1),
        (make(m["norm2_at_one_noiseless"], m["overlap_at_one"]), sp.Eq(sigma_s, 0)),
        (make(sp.oo, m["overlap_at_one"]), True),
    )


@register(
    "ft.transferability_finite_source",
    title="Transferability of fine-tuning from a finite, noisy source (c = 1 approximation)",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _GAMMA_S, _SIGMA_S],
    regime="n, d, n_s -> oo with gamma = n/d, gamma_s = n_s/d; pretraining ends at the "
    "min-norm interpolator of the source; fine-tuning with the null-space scale c = 1",
    status=Status(Source.PAPER, Exactness.APPROXIMATION, neglected="the balanced-flow rescaling of the null-space part (c = 1 assumed; c != 1 for a finite source even without noise, since |beta_s_hat|^2 != 1)"),
    reference=_PAPER + ", v2 appendix (finite source data)",
    notes=(
        "The c = 1 approximation, as in the paper's v2 appendix: the null-space part of beta is "
        "frozen at (I-P) beta_s_hat; the balanced-flow rescaling is not included, so this is "
        "exact only for L = 1 (or B = |beta_s_hat|^2 = 1 and sigma = 0). The exact balanced-flow "
        "result is ft.transferability_finite_source_exact. T = -(1-gamma)_+ t with t = E|beta_s_hat|^2 - 2 E<beta_t, beta_s_hat>. "
        "gamma_s = 1 with sigma_s > 0: |beta_s_hat|^2 diverges and T = -oo for gamma < 1 "
        "(documented branch); gamma >= 1 gives 0. Moments use the inverse-Wishart lemma "
        "(Muirhead Thm 3.2.12), checked by Monte Carlo in the tests. Extras: "
        "break_even_cos_theta (cos theta* where T = 0), norm2, overlap."
    ),
    special_cases=[
        SpecialCase("noiseless source with gamma_s > 1 is the population source",
                    "ft.transferability", {sigma_s: 0, gamma_s: 2, gamma: sp.Rational(1, 3)}),
        SpecialCase("orthogonal tasks, gamma_s = 2, sigma_s = 1: -(1 - gamma)(1 + 1)",
                    -sp.Rational(4, 3), {theta: sp.pi / 2, gamma_s: 2, sigma_s: 1, gamma: sp.Rational(1, 3)}),
        SpecialCase("gamma = 3: T = 0", sp.Integer(0), {gamma: 3}),
    ],
    singular="gamma_s = 1 with sigma_s > 0 and gamma < 1: -oo (the source interpolator diverges)",
)
def transferability_finite_source() -> Derivation:
    moments, steps = source_moments()
    beta_t = teachers()[1]
    b_vec = sp.Matrix(sp.symbols("b1 b2", real=True))
    p = projection_limit()
    # T = E|(I-P) beta_t|^2 - E|(I-P)(b - beta_t)|^2 with P independent of b
    gain = under_threshold(null_space_mean(beta_t, beta_t, p)
                           - null_space_mean(b_vec - beta_t, b_vec - beta_t, p, simplify=False), expand=True)
    in_moments = sp.factor(sp.trigsimp(gain.subs(b_vec[0] ** 2, _NORM2 - b_vec[1] ** 2)
                           .subs(b_vec[0] * sp.cos(theta), _OVERLAP - b_vec[1] * sp.sin(theta))))
    if in_moments.free_symbols & set(b_vec):
        raise ArithmeticError("T_ft does not reduce to |b|^2 and <beta_t, b>")
    steps += [
        Step("fine-tuning from b = beta_s_hat with c = 1: beta_ft = (I-P) b + beta_sc; "
             "T = E|(I-P) beta_t|^2 - E|(I-P)(b - beta_t)|^2 (row-space terms cancel), gamma < 1",
             gain),
        Step("in B = |b|^2 and O = <beta_t, b> (b concentrates, independent of X)", in_moments),
    ]
    below = sp.Symbol("q", positive=True)  # gamma = 1 - q on the branch gamma < 1

    def make(nb, ov):
        if nb == sp.oo:
            # the diverging source norm: limit B -> oo on the branch gamma < 1
            return sp.limit(in_moments.subs({_OVERLAP: ov, gamma: 1 - below}), _NORM2, sp.oo)
        return noise_polynomial(in_moments.subs({_NORM2: nb, _OVERLAP: ov}), sigma_s)

    expr_s = _by_source_branch(make)
    expr = sp.Piecewise((expr_s, gamma < 1), (0, True))
    steps.append(Step("T_ft (gamma >= 1: P = I, no null space, T = 0)", expr))
    break_even = {}
    for side in ("under", "over"):
        t_side = in_moments.subs({_NORM2: moments[f"norm2_{side}"], _OVERLAP: moments[f"overlap_{side}"]})
        # simplify=False: the root is simplified next
        (root,) = sp.solve(sp.expand(t_side.subs(sp.cos(theta), _COS)), _COS, simplify=False)
        break_even[side] = sp.simplify(root)
    cos_star = sp.Piecewise((break_even["under"], gamma_s < 1), (break_even["over"], gamma_s > 1),
                            (sp.Rational(1, 2), sp.Eq(sigma_s, 0)), (sp.oo, True))
    steps.append(Step("break-even T = 0 solved for cos(theta) on each source branch", cos_star))
    extras = {
        "break_even_cos_theta": cos_star,
        "norm2": _by_source_branch(lambda nb, ov: nb),
        "overlap": _by_source_branch(lambda nb, ov: ov),
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- ft.transferability_finite_source_exact ------------------------------------------------
@register(
    "ft.transferability_finite_source_exact",
    title="Transferability of fine-tuning from a finite, noisy source for balanced gradient flow "
    "(exact null-space scale)",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _GAMMA_S, _SIGMA_S, _DEPTH],
    regime="n, d, n_s -> oo with gamma = n/d, gamma_s = n_s/d; pretraining (small "
    "initialisation) ends at the balanced network with end-to-end vector beta_s_hat, the "
    "min-norm interpolator of the source; balanced gradient flow on n noisy target samples to "
    "convergence",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="with the null-space exponent of dln.balanced_flow, itself verified at L = 2, 3, 4"),
    reference=_PAPER + " (model of the v2 appendix), Thm 3.9 corrected for the null-space scale "
    "(SPEC section 2); not a result of the paper",
    notes=(
        "The null-space part of beta keeps its direction (I-P) beta_s_hat and scales as "
        "|beta|^((L-1)/L) (dln.balanced_flow); integrated from |beta|^2 = B = |beta_s_hat|^2, "
        "|(I-P) beta_s_hat|^2 = (1-gamma) B, it gives (I-P) beta_ft = u^((L-1)/(2L)) "
        "(I-P) beta_s_hat with u = |beta_ft|^2/B the positive root of "
        "u - (1-gamma) u^((L-1)/L) - b/B = 0, b = |beta_sc|^2 (ImplicitRoot; no power of u "
        "above 1, so nothing over- or underflows at any depth; unique since the left side is "
        "convex in u and negative at 0; bracket [min(1, r)/2, 2 max(1, r)], r = b/(gamma B), "
        "whose ends bound the root for every L). T = (1-gamma)(2 u^((L-1)/(2L)) O - "
        "u^((L-1)/L) B) with the concentrated moments B = E|beta_s_hat|^2, "
        "O = E<beta_t, beta_s_hat> of ft.transferability_finite_source (inverse-Wishart lemma, "
        "Muirhead Thm 3.2.12, checked by Monte Carlo in the tests). With a population source "
        "(B = 1) u = c^(2L) of ft.transferability_exact; L = 1 is the c = 1 form. gamma_s = 1 "
        "with sigma_s > 0: B diverges, u stays above (1-gamma)^L and T = -oo for gamma < 1 "
        "(derived limit of an upper bound; documented branch); gamma >= 1: T = 0 (the limit "
        "gamma -> 1- is 0). Extras: root_equation, norm_ratio (b/B), null_space_scale "
        "(u^((L-1)/(2L))), break_even_cos_theta."
    ),
    special_cases=[
        SpecialCase("one layer: the c = 1 form is exact", "ft.transferability_finite_source", {L: 1}),
        SpecialCase("noiseless source with gamma_s > 1 (B = 1): the population-source exact form, "
                    "with u = c^(2L)", "ft.transferability_exact",
                    {sigma_s: 0, gamma_s: 2, _U: c ** (2 * L)}),
        SpecialCase("gamma = 2: T = 0", sp.Integer(0), {gamma: 2}),
    ],
    singular="gamma_s = 1 with sigma_s > 0 and gamma < 1: -oo (the source interpolator diverges); "
    "gamma >= 1 gives 0 (documented branch)",
)
def transferability_finite_source_exact() -> Derivation:
    moments, steps = source_moments()
    exponent = get("dln.balanced_flow").extras["null_space_exponent"]
    steps.append(Step("balanced flow: dlog|beta_N| / dlog|beta| (dln.balanced_flow)", exponent))
    # the pretrained null-space part: E|(I-P) b|^2 for b = beta_s_hat, independent of P
    b_vec = sp.Matrix(sp.symbols("b1 b2", real=True))
    p = projection_limit()
    null_start = under_threshold(null_space_mean(b_vec, b_vec, p, simplify=False), expand=True)
    null_start = sp.factor(null_start.subs(b_vec[0] ** 2, _NORM2 - b_vec[1] ** 2))
    if null_start.free_symbols & set(b_vec):
        raise ArithmeticError("E|(I-P) beta_s_hat|^2 does not reduce to |beta_s_hat|^2")
    steps.append(Step("E|(I-P) beta_s_hat|^2 = (1 - p) |beta_s_hat|^2 in B = |beta_s_hat|^2, gamma < 1 "
                      "(P independent of beta_s_hat)", null_start))
    # integrate the invariant from |beta| = sqrt(B) to the end |beta_ft| = sqrt(u B)
    log_null = sp.log(sp.sqrt(null_start)) + sp.integrate(
        exponent, (_LOG_NORM, sp.log(sp.sqrt(_NORM2)), sp.log(sp.sqrt(_U * _NORM2))))
    null_norm = sp.powsimp(sp.simplify(sp.exp(sp.expand_log(log_null, force=True))), force=True)
    steps.append(Step("log|beta_N| integrated from |beta| = sqrt(B) (|beta_N|^2 = (1-gamma) B) to "
                      "|beta| = sqrt(u B), u = |beta_ft|^2 / B", null_norm))
    scale = sp.simplify(null_norm / sp.sqrt(null_start))
    steps.append(Step("null-space scale: (I-P) beta_ft = s (I-P) beta_s_hat", scale))
    # Pythagoras with P beta_ft = beta_sc (|beta_sc|^2 = b), divided by B
    pythagoras = sp.expand((_U * _NORM2 - (b + null_norm**2)) / _NORM2)
    equation = sp.collect(sp.powsimp(pythagoras, force=True), _U)
    steps.append(Step("|beta_ft|^2 = |P beta_ft|^2 + |(I-P) beta_ft|^2 with P beta_ft = beta_sc, "
                      "divided by B (every power of u is at most 1)", sp.Eq(equation, 0)))
    # uniqueness: convex in u, negative at u = 0
    at_zero = sp.limit(equation, _U, 0, "+")
    second = sp.factor(sp.diff(equation, _U, 2))
    ratio = sp.Symbol("r", positive=True)  # r = b / (gamma B)
    on_r = lambda x: sp.factor(sp.powsimp(sp.expand(equation.subs(b, ratio * gamma * _NORM2).subs(_U, x)),
                                          force=True))
    at_one, at_ratio = on_r(1), on_r(ratio)
    if not (is_zero(at_zero + b / _NORM2) and second.is_nonnegative is not False
            and is_zero(at_one - gamma * (1 - ratio))):
        raise ArithmeticError("the root equation is not convex and negative at 0")
    steps += [
        Step("value at u -> 0+: negative", at_zero),
        Step("second derivative in u: nonnegative for 0 <= gamma <= 1 and L >= 1 (convex), so the "
             "positive root is unique", second),
        Step("with b = r gamma B: the value at u = 1 has the sign of 1 - r", at_one),
        Step("and at u = r the sign of r - 1 (r^((L-1)/L) (r^(1/L) - 1)): the root lies between 1 "
             "and r for every L; the bracket [min(1, r)/2, 2 max(1, r)] keeps a strict sign change",
             at_ratio),
    ]
    # the concentrated pieces: b = E|beta_sc|^2 (gamma < 1) and B, O on each source branch
    b_lim = get("ft.transferability_exact").extras["b"]
    steps.append(Step("b = E|beta_sc|^2 on gamma < 1 (ft.transferability_exact, inverse-Wishart lemma)", b_lim))
    ratio_expr = _by_source_branch(lambda nb, ov: 0 if nb == sp.oo else sp.factor(b_lim / nb))
    root_eq = equation.subs(b / _NORM2, sp.Symbol("_b_over_B")).subs(sp.Symbol("_b_over_B"), ratio_expr)
    if root_eq.has(b) or root_eq.has(_NORM2):
        raise ArithmeticError("the root equation still holds b or B")
    r_expr = ratio_expr / gamma
    bracket = (sp.Min(1, r_expr) / 2, 2 * sp.Max(1, r_expr))
    # T = E|(I-P) beta_t|^2 - E|(I-P)(s b - beta_t)|^2 (row-space terms cancel), gamma < 1
    beta_t = teachers()[1]
    gain = under_threshold(null_space_mean(beta_t, beta_t, p)
                           - null_space_mean(scale * b_vec - beta_t, scale * b_vec - beta_t, p, simplify=False),
                           expand=True)
    in_moments = gain.subs(b_vec[0] ** 2, _NORM2 - b_vec[1] ** 2)
    in_moments = sp.expand(in_moments).subs(b_vec[0] * sp.cos(theta), _OVERLAP - b_vec[1] * sp.sin(theta))
    # sin^2 = 1 - cos^2, the one trigonometric identity left to use (in place of trigsimp)
    in_moments = sp.expand(sp.expand(in_moments).subs(sp.sin(theta) ** 2, 1 - sp.cos(theta) ** 2))
    in_moments = sp.powsimp(sp.factor(sp.powsimp(in_moments, force=True)), force=True)
    if in_moments.free_symbols & set(b_vec):
        raise ArithmeticError("T_ft does not reduce to |b|^2 and <beta_t, b>")
    steps += [
        Step("beta_ft = s (I-P) b + beta_sc, b = beta_s_hat; T = E|(I-P) beta_t|^2 - "
             "E|(I-P)(s b - beta_t)|^2 (row-space terms cancel; s concentrates), gamma < 1", gain),
        Step("in B = |b|^2 and O = <beta_t, b>", in_moments),
    ]
    # gamma_s = 1, sigma_s > 0 (B -> oo), gamma = 1 - q: f(u) at u = q^L is -b/B < 0, so the
    # root exceeds it and s^2 >= q^(L-1) =: s0^2; for B > |O|/s0 the quadratic 2 s O - s^2 B
    # decreases on s >= s0, so T <= q (2 s0 |O| - s0^2 B) -> -oo
    gap = sp.Symbol("q", positive=True)  # gamma = 1 - q on the branch gamma < 1
    at_low = sp.factor(equation.subs(gamma, 1 - gap).subs(_U, gap**L))
    s0 = sp.simplify(scale.subs(_U, gap**L))
    bound_oo = sp.limit(gap * (2 * s0 * sp.Abs(_OVERLAP) - s0**2 * _NORM2), _NORM2, sp.oo)
    if not is_zero(at_low + b / _NORM2) or bound_oo != -sp.oo:
        raise ArithmeticError("T_ft does not diverge with the source norm")
    steps += [
        Step("gamma_s = 1, sigma_s > 0 (B -> oo), gamma = 1 - q: the root equation at u = q^L is "
             "-b/B < 0, so u > q^L and s >= s0 = q^((L-1)/2)", at_low),
        Step("T <= q (2 s0 |O| - s0^2 B) once B > |O|/s0; limit B -> oo", bound_oo),
    ]
    # gamma -> 1-: u <= max(1, r) gives (1-gamma) s^2 B <= (1-gamma) B max(1, r^((L-1)/L)) and
    # (1-gamma) s <= the square root of the same times 1-gamma; with b -> oo like sigma^2/q
    below = gap
    bound = (1 - gamma) * _NORM2 * (b_lim / (gamma * _NORM2)) ** ((L - 1) / L)
    bound_q = sp.powsimp(sp.expand_power_base(sp.factor(sp.simplify(bound.subs(gamma, 1 - below))),
                                              force=True), force=True)
    bound_at_one = sp.limit(bound_q, below, 0, "+")
    if bound_at_one != 0:
        raise ArithmeticError("T_ft does not vanish as gamma -> 1-")
    steps.append(Step("gamma -> 1-: |T| <= (1-gamma)(2 s |O| + s^2 B) with s^2 <= max(1, r^((L-1)/L)); "
                      "the r-term (1-gamma) B r^((L-1)/L), gamma = 1 - q, vanishes as q -> 0+ (so does its "
                      "square root times q), hence T -> 0", bound_at_one))

    def make(nb, ov):
        if nb == sp.oo:
            return -sp.oo
        return in_moments.subs({_NORM2: nb, _OVERLAP: ov})

    expr_s = _by_source_branch(make)
    expr = sp.Piecewise((expr_s, gamma < 1), (0, True))
    steps.append(Step("T_ft (gamma_s branches of B and O; gamma >= 1: P = I, no null space, T = 0)", expr))
    (cos_star,) = sp.solve(in_moments.subs(_OVERLAP, sp.Symbol("o", positive=True) * sp.cos(theta))
                           .subs(sp.cos(theta), _COS), _COS)
    overlap_coefficient = _by_source_branch(lambda nb, ov: sp.simplify(ov / sp.cos(theta)))
    cos_star = _by_source_branch(lambda nb, ov: sp.oo if nb == sp.oo else sp.factor(
        cos_star.subs({_NORM2: nb, sp.Symbol("o", positive=True): sp.simplify(ov / sp.cos(theta))})))
    steps.append(Step("break-even T = 0 solved for cos(theta) (in the root u)", cos_star))
    root = ImplicitRoot(_U, root_eq, bracket,
                        "u = |beta_ft|^2 / |beta_s_hat|^2: positive root of u - (1-gamma) u^((L-1)/L) - b/B, "
                        "gamma < 1", where=gamma < 1)
    extras = {"root_equation": equation, "norm_ratio": ratio_expr, "null_space_scale": scale,
              "break_even_cos_theta": cos_star, "overlap_coefficient": overlap_coefficient,
              "bracket_low": bracket[0], "bracket_high": bracket[1]}
    return Derivation(expr, steps=steps, extras=extras, implicit=[root])


@register(
    "lt.risk_finite_source",
    title="Risk of linear transfer from a finite, noisy source",
    family=_FAMILY,
    params=[_THETA, _GAMMA_S, _SIGMA_S],
    regime="n_s, d -> oo with gamma_s = n_s/d; target samples n -> oo (the single readout "
    "coefficient converges); pretraining ends at the min-norm interpolator of the source",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER + " (model of the v2 appendix); not a result of the paper",
    notes=(
        "The frozen feature is z = b . x with b = beta_s_hat; the readout converges to the "
        "population minimiser w* of |w b - beta_t|^2 (derived by sp.solve), giving "
        "R_lt = 1 - <beta_t, b>^2/|b|^2, with the concentrated moments of "
        "ft.transferability_finite_source. Independent of gamma and sigma. At gamma_s = 1 "
        "with sigma_s > 0 the feature is pure noise in the limit: R_lt = 1."
    ),
    special_cases=[
        SpecialCase("noiseless source with gamma_s > 1: sin^2(theta)", sp.sin(theta) ** 2,
                    {sigma_s: 0, gamma_s: 3}),
        SpecialCase("noiseless, gamma_s > 1: the population linear transfer at lam = 0", "lt.risk",
                    {sigma_s: 0, gamma_s: 5, lam: 0}),
        SpecialCase("noiseless, gamma_s < 1: 1 - gamma_s cos^2(theta)",
                    1 - sp.Rational(1, 2) * sp.cos(theta) ** 2, {sigma_s: 0, gamma_s: sp.Rational(1, 2)}),
    ],
    singular="none: 1 at gamma_s = 1 with sigma_s > 0 (documented branch)",
)
def risk_finite_source() -> Derivation:
    moments, steps = source_moments()
    risk_w = sp.expand(_W**2 * _NORM2 - 2 * _W * _OVERLAP + 1)  # |w b - beta_t|^2, |beta_t| = 1
    (w_star,) = sp.solve(sp.diff(risk_w, _W), _W)
    minimum = sp.simplify(risk_w.subs(_W, w_star))
    steps += [
        Step("|w b - beta_t|^2 in B = |b|^2, O = <beta_t, b>", risk_w),
        Step("minimiser (sp.solve of d/dw = 0; convex since B > 0)", w_star),
        Step("minimum", minimum),
    ]

    def make(nb, ov):
        if nb == sp.oo:
            return sp.limit(minimum.subs(_OVERLAP, ov), _NORM2, sp.oo)
        # 1 - O^2/B with B a polynomial in sigma_s: no difference of nearly equal numbers
        # next to gamma_s = 1; checked equal to the minimum
        form = 1 - ov**2 / noise_polynomial(nb, sigma_s)
        if not is_zero(form - minimum.subs({_NORM2: nb, _OVERLAP: ov})):
            raise ArithmeticError("rewritten linear-transfer risk differs from the minimum")
        return form

    expr = _by_source_branch(make)
    steps.append(Step("concentrated moments substituted on each source branch; gamma_s = 1, "
                      "sigma_s > 0: limit B -> oo", expr))
    return Derivation(expr, steps=steps, extras={"readout": w_star})
