"""Anisotropic inputs: scratch, linear transfer and fine-tuning with a covariance spectrum.

Model.  Inputs ``x ~ N(0, Sigma)``, ``Sigma`` diagonal (no loss of generality: min-norm
least squares, the one-feature readout and the fine-tuning end point are all equivariant
under rotations of the inputs) with eigenvalues ``lambda_i``; labels
``y = beta . x + eps``, ``eps ~ N(0, sigma^2)``; ``n = gamma d`` target samples, proportional
limit ``n, d -> oo``.  The risk is the excess test error
``E[(x . (beta_hat - beta_t))^2] = (beta_hat - beta_t)^T Sigma (beta_hat - beta_t)``.

Teachers (``featfate_sym.spectra.teachers``): an energy profile ``p_i >= 0``,
``sum p_i = 1``; ``beta_s = sqrt(p) g/|sqrt(p) g|``, ``beta_t = cos(theta) beta_s +
sin(theta) nu`` with ``nu`` from an independent ``sqrt(p) g'`` orthogonalised against
``beta_s`` and normalised.  In the proportional limit the teachers' Sigma-weighted sums
concentrate: ``sum_i beta_i^2 h(lambda_i) -> sum_i p_i h(lambda_i)`` for each teacher and
for ``nu``, and the cross terms ``sum_i beta_s,i nu_i h(lambda_i) -> 0`` (independent
signs); so ``beta_t - beta_s`` has the profile ``|beta_t - beta_s|^2 p = 2(1 - cos theta) p``.

Two-level spectrum.  A fraction ``frac`` of the directions has variance ``r``, the rest
variance 1; each teacher puts the fraction ``w_r`` of its energy on the variance-``r``
eigenspace, uniformly within it (``w_r = frac``: the uniform teacher).  Then
``(1/d) sum_i h(lambda_i) = frac h(r) + (1 - frac) h(1)`` and
``sum_i p_i h(lambda_i) = w_r h(r) + (1 - w_r) h(1)``.

Cited lemma (Hastie, Montanari, Rosset & Tibshirani 2022, "Surprises in high-dimensional
ridgeless least squares interpolation", Ann. Statist. 50(2), their theorem on the bias and
variance of the min-norm interpolator with a general feature covariance; stated here in
``gamma = n/d``): for
``gamma < 1`` let ``kappa > 0`` solve ``gamma = (1/d) sum_i lambda_i/(lambda_i + kappa)``;
then the bias is ``kappa^2 sum_i p_i lambda_i/(lambda_i+kappa)^2 / (1 - (1/n) sum_i
lambda_i^2/(lambda_i+kappa)^2)`` and the variance ``sigma^2 (1/n) sum_i lambda_i^2/
(lambda_i+kappa)^2 / (1 - ...)`` (the same denominator), for a unit teacher; for
``gamma > 1`` the bias vanishes and the variance is ``sigma^2/(gamma - 1)``.  The lemma
forms are the only input typed in; everything else is SymPy: the two-level traces, the
quadratic for ``kappa`` and its positive root, the cancellation-free rewriting of the
denominator at the root, the linear-transfer minimisation and the fine-tuning
substitution.

Results registered (family ``anisotropic``):

- ``scratch.kappa_two_level`` -- the effective regularisation ``kappa(gamma, frac, r)``;
- ``scratch.risk_two_level`` -- min-norm least squares, both sides of ``gamma = 1``;
- ``lt.risk_two_level``, ``lt.transferability_two_level`` -- linear transfer (``n -> oo``);
- ``ft.risk_two_level``, ``ft.transferability_two_level`` -- fine-tuning with ``c = 1``
  (exact for ``L = 1``; the paper's approximation for deeper networks).

For any spectrum, :func:`trace_forms` gives the same derivation with the traces left as
symbols and the per-direction summands as expressions in one eigenvalue, which
:mod:`featfate_sym.anisotropic_numerics` compiles into sums over an eigenvalue array.
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.derivation_cache import memo
from featfate_sym.registry import (
    Derivation, Exactness, ImplicitRoot, NumericForm, SpecialCase, Source, Status, Step, get, register,
)
from featfate_sym.symbols import frac, gamma, kappa, lam, r, sigma, theta, w_r

_FAMILY = "anisotropic"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194 (model of Sec. 3 with anisotropic inputs); not a result of the paper"
_HMRT = (
    "Hastie, Montanari, Rosset & Tibshirani (2022), Surprises in high-dimensional ridgeless least "
    "squares interpolation, Ann. Statist. 50(2), the theorem on the minimum-norm interpolator with a "
    "general feature covariance (deterministic equivalent; cited lemma)"
)

_GAMMA, _THETA, _SIGMA = parameters.gamma, parameters.theta, parameters.sigma
_FRAC, _R, _W = parameters.frac, parameters.r, parameters.w_r

#: one eigenvalue of Sigma, the summation variable of the traces
LAMBDA = sp.Symbol("lambda_i", positive=True)
#: squared norm of the teacher being fitted (1 for beta_t, |beta_t - beta_s|^2 for ft)
ENERGY = sp.Symbol("E_beta", nonnegative=True)
#: the traces, as symbols: (1/d) sum of a summand over the directions ...
T1 = sp.Symbol("T_1", positive=True)  # (1/d) sum lambda/(lambda + kappa)
T2 = sp.Symbol("T_2", positive=True)  # (1/d) sum lambda^2/(lambda + kappa)^2
TK = sp.Symbol("T_kappa", positive=True)  # (1/d) sum lambda kappa/(lambda + kappa)^2
TS = sp.Symbol("T_s", positive=True)  # (1/d) sum lambda/(lambda + kappa)^2 = T_kappa/kappa
#: ... or a sum weighted by the teacher's profile p
WB = sp.Symbol("W_b", nonnegative=True)  # sum p lambda/(lambda + kappa)^2
M1 = sp.Symbol("M_1", positive=True)  # sum p lambda = beta^T Sigma beta in the limit
#: the readout coefficient of linear transfer
_A = sp.Symbol("a", real=True)
#: population second moments of linear transfer: beta_s^T Sigma beta_s, beta_s^T Sigma beta_t, beta_t^T Sigma beta_t
_SS, _ST, _TT = sp.symbols("S_ss S_st S_tt", real=True)
#: positive distance below the threshold, gamma = 1/(1 + e)
_E = sp.Symbol("e", positive=True)

_REGIME = (
    "n, d -> oo with gamma = n/d; x ~ N(0, Sigma), two-level spectrum (fraction frac of variance r, "
    "the rest 1); teachers with the fraction w_r of their energy on the variance-r eigenspace; "
    "excess risk (beta_hat - beta_t)^T Sigma (beta_hat - beta_t)"
)
_EXACT = Status(Source.DERIVED, Exactness.EXACT)
_FT_STATUS = Status(
    Source.DERIVED, Exactness.APPROXIMATION,
    neglected="the balanced-flow rescaling c^(L-1) of the null-space part for depth L >= 2 "
    "(c = 1 assumed; exact for L = 1, linear gradient flow from beta_s), as in ft.transferability",
)


# -- traces -----------------------------------------------------------------------------------
#: per-direction summands in one eigenvalue LAMBDA (and kappa), by trace symbol
SUMMANDS = {
    T1: LAMBDA / (LAMBDA + kappa),
    T2: LAMBDA**2 / (LAMBDA + kappa) ** 2,
    WB: LAMBDA / (LAMBDA + kappa) ** 2,
    M1: LAMBDA,
}
#: which traces average over directions (1/d sum) and which weight by the profile
DIRECTION_TRACES = (T1, T2, TK, TS)
PROFILE_TRACES = (WB, M1)


def direction_trace(summand: sp.Expr) -> sp.Expr:
    """``(1/d) sum_i summand(lambda_i)`` for the two-level spectrum."""
    return frac * summand.subs(LAMBDA, r) + (1 - frac) * summand.subs(LAMBDA, 1)


def profile_trace(summand: sp.Expr) -> sp.Expr:
    """``sum_i p_i summand(lambda_i)`` for a two-level teacher (fraction ``w_r`` on ``r``)."""
    return w_r * summand.subs(LAMBDA, r) + (1 - w_r) * summand.subs(LAMBDA, 1)


def two_level(expr: sp.Expr) -> sp.Expr:
    """``expr`` (in the trace symbols) with every trace replaced by its two-level form."""
    subs = {sym: (direction_trace if sym in DIRECTION_TRACES else profile_trace)(summand)
            for sym, summand in trace_forms()["summands"].items()}
    return expr.subs(subs)


@memo
def trace_forms() -> dict:
    """The derivation for any spectrum, with the traces as symbols.

    Keys: ``summands`` (trace symbol -> summand in ``LAMBDA, kappa``), ``equation`` (the
    self-consistent equation ``T_1 - gamma = 0``), ``bias`` and ``variance`` (gamma < 1, in
    ``T_2, T_kappa, W_b``, ``kappa``, ``gamma``, ``sigma``, ``E_beta``), ``over`` (gamma > 1),
    ``lt`` (linear-transfer risk in ``M_1, theta``), ``ft_energy`` (``|beta_t - beta_s|^2``),
    ``bracket`` (``kappa`` between the one-level roots at the smallest eigenvalue and at
    the mean eigenvalue), ``steps``.
    """
    steps: list[Step] = []
    # lemma forms (cited input), for a teacher of squared norm ENERGY (the bias is a
    # quadratic form in the teacher, so linear in its energy profile)
    denominator = 1 - T2 / gamma
    bias_lemma = kappa**2 * ENERGY * WB / denominator
    variance_lemma = sigma**2 * (T2 / gamma) / denominator
    steps.append(Step("lemma (" + _HMRT + "), gamma < 1: kappa solves T_1 = gamma; bias and variance "
                      "with T_1 = (1/d) sum lambda/(lambda+kappa), T_2 = (1/d) sum lambda^2/(lambda+kappa)^2, "
                      "W_b = sum p lambda/(lambda+kappa)^2, teacher energy E_beta",
                      sp.Tuple(T1 - gamma, bias_lemma, variance_lemma)))
    # at the root gamma = T_1, so 1 - T_2/gamma = (T_1 - T_2)/T_1, and T_1 - T_2 is the trace
    # of one summand that is positive: no cancellation next to gamma = 1
    at_root = sp.together(denominator.subs(gamma, T1))
    difference = sp.factor(SUMMANDS[T1] - SUMMANDS[T2])
    summands = dict(SUMMANDS)
    summands[TK] = difference
    num, den = sp.fraction(at_root)
    if sp.expand(num - (T1 - T2)) != 0 or den != T1:
        raise ArithmeticError(f"unexpected form of the denominator at the root: {at_root}")
    stable_denominator = TK / gamma  # (T_1 - T_2)/T_1 with T_1 = gamma
    steps.append(Step("at the root gamma = T_1: 1 - T_2/gamma = (T_1 - T_2)/T_1 (sp.together)", at_root))
    steps.append(Step("T_1 - T_2 is the trace of one summand (sp.factor), T_kappa = (1/d) sum of it: "
                      "a sum of positive terms, so 1 - T_2/gamma = T_kappa/gamma", difference))
    # T_kappa's summand is kappa times a summand free of kappa's sign: T_kappa = kappa T_s
    per_kappa = sp.cancel(difference / kappa)
    if sp.cancel(per_kappa * kappa - difference) != 0:
        raise ArithmeticError("T_kappa is not kappa T_s")
    summands[TS] = per_kappa
    bias = bias_lemma.subs(denominator, stable_denominator).subs(TK, kappa * TS)
    variance = variance_lemma.subs(denominator, stable_denominator).subs(TK, kappa * TS)
    steps.append(Step("T_kappa = kappa T_s, T_s = (1/d) sum lambda/(lambda + kappa)^2 (sp.cancel); bias and "
                      "variance with the denominator kappa T_s/gamma", sp.Tuple(per_kappa, bias, variance)))
    over = sigma**2 / (gamma - 1)
    steps.append(Step("gamma > 1 (lemma): X has full column rank, no bias; variance "
                      "sigma^2 tr(Sigma (X^T X)^-1) = sigma^2 tr((Z^T Z)^-1) -> sigma^2/(gamma - 1), "
                      "whatever the spectrum", over))

    # linear transfer: readout a on the frozen feature beta_s; risk E(x.(a beta_s - beta_t))^2
    risk_a = sp.expand(_A**2 * _SS - 2 * _A * _ST + _TT)
    (a_star,) = sp.solve(sp.diff(risk_a, _A), _A)
    risk_min = sp.factor(risk_a.subs(_A, a_star))
    steps.append(Step("linear transfer, n -> oo: the readout a minimises the population risk "
                      "a^2 S_ss - 2 a S_st + S_tt (S = Sigma-weighted second moments of the teachers); "
                      "its minimiser (sp.solve) and the minimum", sp.Tuple(a_star, risk_min)))
    # limits: S_ss -> M_1, S_tt -> cos^2 M_1 + sin^2 M_1 (nu has the profile p too), S_st -> cos M_1
    # (the cross term sum beta_s,i nu_i lambda_i -> 0)
    lt = sp.factor(sp.trigsimp(risk_min.subs({_SS: M1, _ST: sp.cos(theta) * M1,
                                              _TT: sp.cos(theta) ** 2 * M1 + sp.sin(theta) ** 2 * M1})))
    steps.append(Step("teachers' limits S_ss -> M_1, S_st -> cos(theta) M_1, S_tt -> M_1, "
                      "M_1 = sum p lambda (cross terms of beta_s and nu vanish)", lt))

    # fine-tuning (c = 1): beta_s + X^+ (y - X beta_s) fits the residual teacher beta_t - beta_s
    diff_vec = sp.Matrix([sp.cos(theta) - 1, sp.sin(theta)])  # in the orthonormal pair (beta_s, nu)
    energy = sp.simplify((diff_vec.T * diff_vec)[0, 0])
    half_angle = 4 * sp.sin(theta / 2) ** 2
    if not is_zero(energy - half_angle):
        raise ArithmeticError("|beta_t - beta_s|^2 is not 4 sin^2(theta/2)")
    steps.append(Step("fine-tuning (c = 1): beta_ft = beta_s + X^+ (y - X beta_s) is min-norm least "
                      "squares on the residual task y - X beta_s = X (beta_t - beta_s) + eps, shifted by "
                      "beta_s, so R_ft = scratch risk with teacher beta_t - beta_s; its energy "
                      "|beta_t - beta_s|^2 (profile 2(1 - cos theta) p in the limit), written as "
                      "4 sin^2(theta/2) (equal, checked by SymPy: no cancellation at small theta)",
                      sp.Tuple(energy, half_angle)))

    # bracket for kappa: x -> x/(x + kappa) is increasing and concave, so
    # lambda_min/(lambda_min + kappa) <= T_1 <= mean/(mean + kappa) (Jensen); kappa lies between
    # the roots of the one-level equation at lambda_min and at the mean eigenvalue
    (one_level,) = sp.solve(SUMMANDS[T1] - gamma, kappa)
    steps.append(Step("bracket: x/(x + kappa) is increasing and concave in x, so lambda_min/(lambda_min + kappa) "
                      "<= T_1 <= mean/(mean + kappa) (Jensen); kappa lies between the one-level roots "
                      "(sp.solve) at lambda = lambda_min and lambda = mean", one_level))
    return {"summands": summands, "equation": T1 - gamma, "bias": bias, "variance": variance,
            "over": over, "lt": lt, "ft_energy": half_angle, "bracket": one_level, "steps": steps}


# -- kappa, two-level ---------------------------------------------------------------------------
@memo
def _kappa_two_level() -> tuple[sp.Expr, list[Step], dict]:
    forms = trace_forms()
    equation = two_level(forms["equation"])
    num, _ = sp.fraction(sp.together(equation))
    poly = sp.Poly(sp.expand(num), kappa)
    if poly.degree() != 2:
        raise ArithmeticError(f"the two-level kappa equation is not quadratic: {poly}")
    # normalise the sign so that the leading coefficient is positive (it is +-gamma)
    if poly.LC().could_extract_minus_sign():
        poly = -poly
    c2, c1, c0 = poly.all_coeffs()
    c2 = sp.factor(c2)
    # the linear coefficient collected in r: r (gamma - frac) + (gamma + frac - 1), the grouping
    # that float64 evaluates with the fewest cancellations
    c1 = sp.collect(sp.expand(c1), r, sp.factor)
    c0 = sp.factor(c0)
    roots = sp.solve(poly.as_expr(), kappa, simplify=False)  # simplify=False: 10x faster
    product = sp.factor(c0 / c2)
    # below the threshold, gamma = 1/(1 + e): the product of the roots is negative, so exactly
    # one root is positive
    product_under = sp.simplify(product.subs(gamma, 1 / (1 + _E)))
    if not product_under.is_negative:
        raise ArithmeticError(f"cannot show the product of the kappa roots is negative: {product_under}")
    gap = sp.factor(sp.expand(c1**2 - 4 * c2 * c0 - c1**2))
    radicand = c1**2 + gap
    # the positive root is the one with + sqrt (c2 > 0 and sqrt(disc) > |c1| as the product < 0)
    plus = (-c1 + sp.sqrt(radicand)) / (2 * c2)
    matched = [root for root in roots if sp.expand(root - plus.subs(sp.sqrt(radicand), sp.sqrt(sp.expand(radicand)))) == 0]
    if len(matched) != 1:
        raise ArithmeticError("the + sqrt root is not one of sp.solve's roots")
    # where c1 > 0, -c1 + sqrt(c1^2 + gap) cancels: rationalised, 2 (-c0)/(c1 + sqrt(...)).
    # Both checks below hold the root as a symbol S with S^2 = radicand (polynomial identities)
    s_root = sp.Dummy("S", positive=True)
    rationalised = -2 * c0 / (c1 + sp.sqrt(radicand))
    conjugate = sp.expand((-c1 + s_root) * (c1 + s_root)).subs(s_root**2, radicand)
    if sp.expand(conjugate - gap) != 0 or sp.expand(gap + 4 * c2 * c0) != 0:
        raise ArithmeticError("the rationalised root differs")
    root = sp.Piecewise((plus, c1 <= 0), (rationalised, True))
    # check: the root solves the quadratic (exactly, with S^2 = radicand), and at a rational
    # point below 1 it is positive and solves the trace equation
    at_root = sp.expand(poly.as_expr().subs(kappa, (-c1 + s_root) / (2 * c2)) * 4 * c2)
    residual = sp.expand(at_root.subs(s_root**2, radicand))
    probe = {gamma: sp.Rational(1, 3), frac: sp.Rational(1, 4), r: 7}
    value = sp.N(plus.subs(probe), 30)
    if residual != 0 or not value > 0 or abs(sp.N(equation.subs(probe).subs(kappa, value), 30)) > 1e-25:
        raise ArithmeticError("the kappa root does not check")
    steps = [
        Step("self-consistent equation with the two-level traces", equation),
        Step("numerator over (r + kappa)(1 + kappa): a quadratic in kappa, coefficients (c2, c1, c0)",
             sp.Tuple(c2, c1, c0)),
        Step("roots (sp.solve)", sp.Tuple(*roots)),
        Step("product of the roots c0/c2; with gamma = 1/(1 + e), e > 0, it is negative (SymPy "
             "is_negative), so exactly one root is positive for gamma < 1: the + sqrt root "
             "(T_1 decreases from 1 at kappa = 0 to 0 at oo, so it is the unique solution)",
             sp.Tuple(product, product_under)),
        Step("discriminant written c1^2 + (-4 c2 c0), the second term 4 gamma (1 - gamma) r > 0", gap),
        Step("positive root; where c1 > 0 rationalised, -2 c0/(c1 + sqrt(c1^2 - 4 c2 c0)), so float64 "
             "never subtracts nearly equal numbers; it solves the quadratic (sp.simplify of the "
             "residual is 0, and at gamma = 1/3, frac = 1/4, r = 7 the root is positive and solves "
             "the trace equation)", root),
    ]
    return root, steps, {"c2": c2, "c1": c1, "c0": c0, "quadratic": c2 * kappa**2 + c1 * kappa + c0}


@memo
def _kappa_implicit() -> ImplicitRoot:
    """kappa for the float64 and mpmath evaluators: the root of the same quadratic, inside
    the derived bracket (widened by 2 on each side: the quadratic is negative on
    [0, kappa) and positive beyond, so any bracket around the root is valid).

    The closed form substituted into every trace makes an expression that the compiler's
    rewriting (sympy.codegen.rewriting) takes tens of seconds to traverse; the root of the
    quadratic is the same number (conditioning ~ 2 eps relative on both sides of c1 = 0),
    found by safeguarded Newton iteration.
    """
    _, _, extras = _kappa_two_level()
    one_level = trace_forms()["bracket"]
    lo = one_level.subs(LAMBDA, sp.Min(r, 1)) / 2
    hi = 2 * one_level.subs(LAMBDA, direction_trace(LAMBDA))
    return ImplicitRoot(kappa, extras["quadratic"], (lo, hi),
                        "effective regularisation: positive root of the two-level quadratic", where=gamma < 1)


@register(
    "scratch.kappa_two_level",
    title="Effective regularisation kappa of min-norm interpolation, two-level spectrum",
    family=_FAMILY,
    params=[_GAMMA, _FRAC, _R],
    regime=_REGIME + "; kappa > 0 solves gamma = (1/d) sum lambda_i/(lambda_i + kappa) for gamma < 1",
    status=_EXACT,
    reference=_HMRT,
    notes=(
        "The self-consistent equation of the deterministic equivalent with the two-level traces "
        "is a quadratic in kappa; the product of its roots, (gamma - 1) r/gamma, is negative below "
        "the threshold, so exactly one root is positive (SymPy). For gamma >= 1 min-norm least "
        "squares is unregularised least squares and kappa = 0 (the limit gamma -> 1- of the root), "
        "the documented value there. r = 1 gives the isotropic (1 - gamma)/gamma."
    ),
    special_cases=[
        SpecialCase("isotropic, gamma = 1/3: (1 - gamma)/gamma = 2", sp.Integer(2), {r: 1, gamma: sp.Rational(1, 3)}),
        SpecialCase("gamma = 1/2, frac = 1/2, r = 3: kappa^2/2 - 3/2 = 0, kappa = sqrt(3)", sp.sqrt(3),
                    {gamma: sp.Rational(1, 2), frac: sp.Rational(1, 2), r: 3}),
        SpecialCase("continuous at the threshold: kappa -> 0", sp.Integer(0),
                    {frac: sp.Rational(1, 3), r: 5}, (gamma, 1, "-")),
        SpecialCase("gamma > 1: 0", sp.Integer(0), {gamma: 2}),
    ],
    singular="none: kappa = 0 for gamma >= 1 (no effective regularisation), finite elsewhere",
)
def kappa_two_level() -> Derivation:
    root, steps, extras = _kappa_two_level()
    # the constant branch first: the compiler's search for a shared part stops at once
    expr = sp.Piecewise((sp.Integer(0), gamma >= 1), (root, True))
    steps = list(steps) + [Step("gamma >= 1: kappa = 0 (the quadratic's constant term (1 - gamma) r "
                                "vanishes at gamma = 1, where 0 is the nonnegative root)", expr)]
    return Derivation(expr, steps=steps, extras=extras)


# -- scratch -----------------------------------------------------------------------------------
@memo
def _risk_two_level(energy: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr, list[Step]]:
    """Bias, variance (gamma < 1, with ``kappa`` still a symbol) and the risk (Piecewise,
    ``kappa`` substituted) of min-norm least squares on a teacher of energy ``energy``."""
    forms = trace_forms()
    bias_k = two_level(forms["bias"].subs(ENERGY, energy))
    variance_k = two_level(forms["variance"])
    # kept as ratios of sums of positive fractions (no expansion): no cancellation in float64
    root, _, _ = _kappa_two_level()
    under = (bias_k + variance_k).subs(kappa, root)
    at_one_clean = sp.simplify(bias_k.subs(kappa, 0).subs(gamma, 1))
    # the branch above the threshold first: the compiler's search for a part shared by all
    # branches (compiled.separate_piecewise) then stops at once, without simplifying `under`
    def branches(value):
        return sp.Piecewise(
            (forms["over"], gamma > 1),
            (value, gamma < 1),
            (at_one_clean, sp.Eq(gamma, 1) & sp.Eq(sigma, 0)),
            (sp.oo, sp.Eq(gamma, 1) & (sigma > 0)),
        )

    expr = branches(under)
    numeric = branches(bias_k + variance_k)
    steps = [
        Step("bias with the two-level traces", bias_k),
        Step("variance with the two-level traces", variance_k),
        Step("gamma = 1: kappa = 0 (scratch.kappa_two_level); bias 0 without noise; the variance "
             "(~ sigma^2/kappa below, sigma^2/(gamma - 1) above) is infinite with noise", at_one_clean),
    ]
    return bias_k, variance_k, expr, steps, numeric


def _numeric(expr: sp.Expr) -> NumericForm:
    return NumericForm(expr, [_kappa_implicit()], "kappa as the root of its quadratic (same number), "
                       "so the compiled expression holds kappa once")


@register(
    "scratch.risk_two_level",
    title="Risk of min-norm interpolation with a two-level input spectrum, proportional limit",
    family=_FAMILY,
    params=[_GAMMA, _SIGMA, _FRAC, _R, _W],
    regime=_REGIME + "; scratch: min-norm least squares X^+ y (small-initialisation gradient flow, any depth)",
    status=_EXACT,
    reference=_HMRT,
    notes=(
        "Cited lemma forms of the bias and variance, two-level traces substituted by SymPy; the "
        "lemma's denominator 1 - (1/n) sum lambda^2/(lambda + kappa)^2 is rewritten at the root as "
        "(1/n) sum lambda kappa/(lambda + kappa)^2 (a sum of positive terms), so the result keeps "
        "its digits next to gamma = 1. For gamma < 1 with the uniform teacher (w_r = frac) the bias "
        "is gamma kappa. gamma > 1: sigma^2/(gamma - 1), independent of the spectrum. Extras: bias, "
        "variance (gamma < 1, in kappa)."
    ),
    special_cases=[
        SpecialCase("r = 1 is isotropic scratch.risk (gamma < 1)", "scratch.risk", {r: 1, gamma: sp.Rational(1, 3)}),
        SpecialCase("r = 1 is isotropic scratch.risk (gamma > 1)", "scratch.risk", {r: 1, gamma: sp.Rational(5, 2)}),
        SpecialCase("uniform teacher, gamma = 1/2, frac = 1/2, r = 3, no noise: gamma kappa = sqrt(3)/2",
                    sp.sqrt(3) / 2, {gamma: sp.Rational(1, 2), frac: sp.Rational(1, 2), r: 3,
                                     w_r: sp.Rational(1, 2), sigma: 0}),
        SpecialCase("gamma = 1 without noise: 0", sp.Integer(0), {gamma: 1, sigma: 0}),
        SpecialCase("continuous at gamma = 1 without noise", sp.Integer(0),
                    {sigma: 0, frac: sp.Rational(1, 4), r: 4, w_r: sp.Rational(1, 2)}, (gamma, 1, "-")),
    ],
    singular="gamma = 1 with sigma > 0: infinite (interpolation threshold), encoded as oo; "
             "0 at gamma = 1 without noise",
)
def risk_two_level() -> Derivation:
    forms = trace_forms()
    bias_k, variance_k, expr, steps, numeric = _risk_two_level(sp.Integer(1))
    root, kappa_steps, _ = _kappa_two_level()
    steps = list(forms["steps"][:5]) + list(kappa_steps) + steps + [
        Step("risk: kappa substituted below the threshold; sigma^2/(gamma - 1) above", expr)]
    return Derivation(expr, steps=steps, extras={"bias": bias_k, "variance": variance_k},
                      numeric=_numeric(numeric))


# -- linear transfer -----------------------------------------------------------------------------
@memo
def _lt_two_level() -> sp.Expr:
    return sp.factor(two_level(trace_forms()["lt"]))


@register(
    "lt.risk_two_level",
    title="Risk of linear transfer with a two-level input spectrum, n -> oo",
    family=_FAMILY,
    params=[_THETA, _R, _W],
    regime="n -> oo (any gamma); x ~ N(0, Sigma), two-level spectrum; frozen pretrained feature "
           "beta_s, least-squares readout; excess risk in the Sigma metric",
    status=_EXACT,
    reference=_PAPER,
    notes=(
        "R_lt = beta_t^T Sigma beta_t - (beta_s^T Sigma beta_t)^2/(beta_s^T Sigma beta_s) (SymPy "
        "minimises the population quadratic over the readout), with the teachers' limits: "
        "sin^2(theta) (w_r r + 1 - w_r). Depends on the spectrum only through the teachers' "
        "Sigma-weighted energy, not on frac. At finite n the one-feature fit adds exactly "
        "(R + sigma^2)/(n - 2) (checked by Monte Carlo)."
    ),
    special_cases=[
        SpecialCase("r = 1 is isotropic lt.risk (lam = 0)", "lt.risk", {r: 1, lam: 0}),
        SpecialCase("same task: 0", sp.Integer(0), {theta: 0}),
        SpecialCase("orthogonal tasks: beta_t^T Sigma beta_t = w_r r + 1 - w_r", w_r * r + 1 - w_r, {theta: sp.pi / 2}),
    ],
    singular="none",
)
def lt_risk_two_level() -> Derivation:
    forms = trace_forms()
    expr = _lt_two_level()
    steps = list(forms["steps"][5:7]) + [Step("M_1 = w_r r + (1 - w_r) (two-level profile trace)", expr)]
    return Derivation(expr, steps=steps)


def _branches(pw: sp.Piecewise) -> list[tuple[sp.Expr, sp.Basic]]:
    return list(pw.args)


@register(
    "lt.transferability_two_level",
    title="Transferability of linear transfer with a two-level input spectrum",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _FRAC, _R, _W],
    regime=_REGIME + "; T = R_scratch - R_lt, lt in the limit n -> oo",
    status=_EXACT,
    reference=_HMRT + "; " + _PAPER,
    notes=(
        "scratch.risk_two_level - lt.risk_two_level on each branch of the scratch risk. At "
        "gamma = 1 with sigma > 0 scratch sits on its peak and T = +oo; without noise T = -R_lt."
    ),
    special_cases=[
        SpecialCase("r = 1 is isotropic lt.transferability (gamma < 1)", "lt.transferability",
                    {r: 1, lam: 0, gamma: sp.Rational(2, 5)}),
        SpecialCase("r = 1 is isotropic lt.transferability (gamma > 1)", "lt.transferability",
                    {r: 1, lam: 0, gamma: sp.Rational(7, 3)}),
        SpecialCase("same task: T = R_sc", "scratch.risk_two_level", {theta: 0, gamma: sp.Rational(1, 2)}),
    ],
    singular="gamma = 1 with sigma > 0: +oo (scratch's interpolation peak), encoded as oo",
)
def lt_transferability_two_level() -> Derivation:
    scratch = get("scratch.risk_two_level")
    scratch_numeric = scratch.derivation.numeric.expr
    scratch = scratch.expr
    lt = _lt_two_level()
    # kept as R_sc - R_lt (not folded into the branches): oo - finite = oo on the peak branch,
    # and the evaluators compute R_lt once on its own shape
    expr = scratch - lt
    steps = [
        Step("scratch.risk_two_level", scratch),
        Step("lt.risk_two_level", lt),
        Step("T_lt = R_sc - R_lt (oo on the peak branch of R_sc)", expr),
    ]
    return Derivation(expr, steps=steps, numeric=_numeric(scratch_numeric - lt))


# -- fine-tuning ---------------------------------------------------------------------------------
_FT_NOTES = (
    "Fine-tuning from beta_s by gradient flow on the target least squares moves beta only in the "
    "row space of X; the c = 1 end point is beta_s + X^+ (y - X beta_s), min-norm least squares "
    "on the residual task with teacher beta_t - beta_s, so its risk is the scratch risk with the "
    "teacher energy 4 sin^2(theta/2) = 2(1 - cos theta) on the same profile (substituted by SymPy "
    "into the lemma's bias, which is linear in the teacher's energy profile). gamma > 1: P = I, "
    "fine-tuning is scratch."
)


@register(
    "ft.risk_two_level",
    title="Risk of fine-tuning (c = 1) with a two-level input spectrum, proportional limit",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _FRAC, _R, _W],
    regime=_REGIME + "; fine-tuning all layers from the pretrained weights, end point beta_s + X^+ (y - X beta_s)",
    status=_FT_STATUS,
    reference=_HMRT + "; " + _PAPER + " (the c = 1 end point of Thm 3.9)",
    notes=_FT_NOTES + " Extras: bias (gamma < 1, in kappa).",
    special_cases=[
        SpecialCase("same task without noise: fine-tuning starts at the target, risk 0", sp.Integer(0),
                    {theta: 0, sigma: 0, gamma: sp.Rational(1, 2)}),
        SpecialCase("r = 1, gamma < 1: 2(1 - gamma)(1 - cos theta) + gamma sigma^2/(1 - gamma)",
                    (1 - sp.cos(theta)) + sigma**2, {r: 1, gamma: sp.Rational(1, 2)}),
        SpecialCase("gamma > 1: scratch", "scratch.risk_two_level", {gamma: 3}),
    ],
    singular="gamma = 1 with sigma > 0: infinite, encoded as oo; 0 at gamma = 1 without noise",
)
def ft_risk_two_level() -> Derivation:
    energy = trace_forms()["ft_energy"]
    bias_k, variance_k, expr, steps, numeric = _risk_two_level(energy)
    forms_steps = trace_forms()["steps"]
    steps = list(forms_steps[:5]) + [forms_steps[7]] + [
        Step("teacher energy of the residual task |beta_t - beta_s|^2", energy)] + steps + [
        Step("risk of the c = 1 end point", expr)]
    return Derivation(expr, steps=steps, extras={"bias": bias_k}, numeric=_numeric(numeric))


@register(
    "ft.transferability_two_level",
    title="Transferability of fine-tuning (c = 1) with a two-level input spectrum",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _FRAC, _R, _W],
    regime=_REGIME + "; T = R_scratch - R_ft (c = 1 end point)",
    status=_FT_STATUS,
    reference=_HMRT + "; " + _PAPER + " (the c = 1 end point of Thm 3.9)",
    notes=_FT_NOTES + (
        " The variance enters both risks alike and cancels, so T does not depend on sigma (kept as "
        "a parameter of the protocol). T = bias_sc (2 cos theta - 1): the boundary stays at "
        "theta = pi/3 for every spectrum and profile. gamma >= 1: T = 0 (at gamma = 1 the limit from "
        "both sides, the difference of two infinite risks being 0 on each)."
    ),
    special_cases=[
        SpecialCase("r = 1 is isotropic ft.transferability (gamma < 1)", "ft.transferability",
                    {r: 1, gamma: sp.Rational(1, 4)}),
        SpecialCase("r = 1 is isotropic ft.transferability (gamma > 1)", "ft.transferability",
                    {r: 1, gamma: 2}),
        SpecialCase("theta = pi/3 is neutral", sp.Integer(0), {theta: sp.pi / 3, gamma: sp.Rational(1, 2)}),
        SpecialCase("continuous at gamma = 1", sp.Integer(0),
                    {theta: sp.pi / 5, frac: sp.Rational(1, 3), r: 4, w_r: sp.Rational(1, 5)}, (gamma, 1, "-")),
    ],
    singular="none: finite for every gamma > 0 (0 at and above gamma = 1)",
    inert=("sigma",),
)
def ft_transferability_two_level() -> Derivation:
    bias_sc, variance, _, _, _ = _risk_two_level(sp.Integer(1))
    bias_ft, _, _, _, _ = _risk_two_level(trace_forms()["ft_energy"])
    root, _, _ = _kappa_two_level()
    difference = (bias_sc + variance) - (bias_ft + variance)
    if difference.has(sigma):
        raise ArithmeticError("the variance did not cancel in T_ft")
    # the bias is linear in the teacher's energy: bias_ft / bias_sc is the energy ratio
    ratio = sp.cancel(bias_ft / bias_sc)
    if ratio.has(kappa) or not is_zero(difference - bias_sc * (1 - ratio)):
        raise ArithmeticError(f"bias_ft/bias_sc is not a function of theta alone: {ratio}")
    difference = bias_sc * (1 - ratio)
    # the constant branch first (see _risk_two_level on the order)
    expr = sp.Piecewise((sp.Integer(0), gamma >= 1), (difference.subs(kappa, root), True))
    numeric = sp.Piecewise((sp.Integer(0), gamma >= 1), (difference, True))
    steps = [
        Step("R_sc - R_ft below the threshold, kappa still a symbol: the variance cancels, and "
             "bias_ft/bias_sc = |beta_t - beta_s|^2 (sp.cancel), so T = bias_sc (1 - 4 sin^2(theta/2))",
             difference),
        Step("kappa substituted; gamma >= 1: P = I, fine-tuning is scratch, T = 0", expr),
    ]
    return Derivation(expr, steps=steps, numeric=_numeric(numeric))


# -- fine-tuning at the balanced root, any depth ---------------------------------------------------
from featfate_sym.symbols import L, a, b, c  # noqa: E402  (depth, root-equation symbols of fine_tuning)
from featfate_sym.theory.zero import is_zero

_RESOLVENT = (
    "deterministic equivalent of the sample-covariance resolvent (cited lemma): for Sigma_hat = "
    "X^T X/n and ridge lam > 0, lam tr A (Sigma_hat + lam)^-1 -> kappa_lam tr A (Sigma + kappa_lam)^-1 "
    "for deterministic A of bounded trace norm, with kappa_lam - lam = kappa_lam (1/n) tr Sigma "
    "(Sigma + kappa_lam)^-1 (the anisotropic local law of Knowles & Yin (2017), Anisotropic local "
    "laws for random matrices, Probab. Theory Relat. Fields 169; in this form Bach (2024), "
    "High-dimensional analysis of double descent for linear regression with random projections, "
    "SIAM J. Math. Data Sci. 6(1), deterministic equivalents of the resolvent; the ridgeless limit "
    "lam -> 0+ as in Hastie, Montanari, Rosset & Tibshirani (2022)); the exchange of lam -> 0+ with "
    "d -> oo is not proved here and is checked by Monte Carlo"
)
#: sum_i p_i kappa/(lambda_i + kappa): the limit of |(I - P) beta|^2 for a unit teacher of profile p
AK = sp.Symbol("A_kappa", nonnegative=True)
#: sum_i p_i lambda_i/(lambda_i + kappa) = 1 - A_kappa: the limit of |P beta|^2, kept as its own
#: sum of positive terms (1 - A_kappa cancels when gamma -> 0, where A_kappa -> 1)
AP = sp.Symbol("A_P", nonnegative=True)
#: the ridge of the resolvent lemma, and (1/d) sum lambda/(lambda + kappa) before the root is taken
_RIDGE = sp.Symbol("lam_ridge", positive=True)
_D1 = sp.Symbol("D_1", positive=True)  # tr Sigma (Sigma + kappa)^-1 (not normalised by d)
_DIM, _NUM = sp.symbols("d_dim n_num", positive=True)
#: null-space scale c^(L-1) of the balanced end point, as one symbol while assembling
SCALE = sp.Symbol("s_c", positive=True)
_BALANCED_REGIME = (
    _REGIME + "; balanced gradient flow of a depth-L linear network (small pretraining "
    "initialisation, population source) from the pretrained weights to convergence"
)


@memo
def balanced_forms() -> dict:
    """The balanced-flow end point of fine-tuning for any spectrum, traces as symbols.

    End point (the argument of ``ft.transferability_exact``, which uses only that the
    first layer's gradient lies in the row space of ``X``, true for any ``X``):
    ``beta_ft = beta_sc + c^(L-1) (I - P) beta_s``, ``c`` the positive root of
    ``c^(2L) - a c^(2L-2) - b = 0`` with ``a = |(I-P) beta_s|^2``, ``b = |beta_sc|^2``.
    Deterministic equivalents (gamma < 1, resolvent lemma ``_RESOLVENT``):
    ``a -> A_kappa = sum p kappa/(lambda + kappa)``, ``b -> 1 - A_kappa + sigma^2/kappa =
    A_P + sigma^2/kappa`` (``A_P = sum p lambda/(lambda + kappa)``);
    the risk is the HMRT bias of the teacher ``beta_t - c^(L-1) beta_s`` (energy
    ``c^(2L-2) - 2 c^(L-1) cos theta + 1`` on the profile ``p``) plus the scratch variance.

    Keys: ``summands`` (``A_kappa``'s and ``A_P``'s summands), ``a``, ``b``, ``energy`` (in ``SCALE`` =
    ``c^(L-1)``), ``risk`` and ``transferability`` (gamma < 1, in the trace symbols of
    :func:`trace_forms`, ``kappa``, ``SCALE``), ``steps``.
    """
    forms = trace_forms()
    steps: list[Step] = []
    steps.append(Step(
        "end point (ft.transferability_exact): the first layer's gradient X^T r v^T lies in the row "
        "space of X for any X, so P beta_ft = beta_sc = X^+ y and (I-P) beta_ft = c^(L-1) (I-P) beta_s, "
        "c^(2L) - a c^(2L-2) - b = 0, a = |(I-P) beta_s|^2, b = |beta_sc|^2; unchanged by the covariance"))
    # (i) a: I - P = lim_{lam -> 0+} lam (Sigma_hat + lam)^-1 for n < d (the eigenvalues of
    # X^T X on the row space are positive, on the null space 0), and kappa_lam -> kappa with
    # (1/n) tr Sigma (Sigma + kappa)^-1 = 1, the root of trace_forms' equation
    fixed_point = sp.Eq(kappa - _RIDGE, kappa * _D1 / _NUM)
    (ridge_of_kappa,) = sp.solve(fixed_point, _RIDGE)
    at_zero = sp.solve(ridge_of_kappa, _D1)
    if at_zero != [_NUM]:
        raise ArithmeticError(f"lam -> 0 is not the root tr Sigma (Sigma + kappa)^-1 = n: {at_zero}")
    steps.append(Step("lemma (" + _RESOLVENT + "): its fixed point solved for the ridge (sp.solve); "
                      "lam = 0 iff D_1 = tr Sigma (Sigma + kappa)^-1 = n, i.e. T_1 = gamma (trace_forms)",
                      sp.Tuple(fixed_point, ridge_of_kappa)))
    null_summand = sp.cancel(1 - SUMMANDS[T1])
    summands = {AK: null_summand, AP: SUMMANDS[T1]}
    steps.append(Step("a = beta_s^T (I - P) beta_s -> kappa beta_s^T (Sigma + kappa)^-1 beta_s = A_kappa "
                      "= sum p kappa/(lambda + kappa) (lemma with A = beta_s beta_s^T; the profile limit of "
                      "the module docstring); summand 1 - lambda/(lambda + kappa) (sp.cancel)", null_summand))
    # (ii) |P beta_t|^2 = |beta_t|^2 - |(I-P) beta_t|^2 (P an orthogonal projector), beta_t has
    # profile p: 1 - A_kappa = A_P, the profile trace of lambda/(lambda + kappa) (identity below)
    signal = AP
    # (iii) |X^+ eps|^2 -> sigma^2 tr (X X^T)^-1; tr (X X^T + n lam)^-1 = (1/n)[tr_d (Sigma_hat + lam)^-1
    # - (d - n)/lam] (X X^T/n and X^T X/n share their nonzero eigenvalues, X^T X has d - n zeros);
    # the lemma with A = I: tr (Sigma_hat + lam)^-1 -> (kappa/lam) tr (Sigma + kappa)^-1, and
    # kappa tr (Sigma + kappa)^-1 = d - D_1 (the summands kappa/(l + k) + l/(l + k) = 1)
    identity = sp.cancel(null_summand + SUMMANDS[T1])
    if identity != 1:
        raise ArithmeticError("kappa/(lambda + kappa) + lambda/(lambda + kappa) is not 1")
    inverse_trace = (kappa / _RIDGE) * (_DIM - _D1) / kappa  # tr (Sigma + kappa)^-1 = (d - D_1)/kappa
    gram = sp.simplify(((inverse_trace - (_DIM - _NUM) / _RIDGE) / _NUM).subs(_RIDGE, ridge_of_kappa))
    if not is_zero(gram - 1 / kappa):
        raise ArithmeticError(f"tr (X X^T)^-1 is not 1/kappa: {gram}")
    steps.append(Step("tr (X X^T + n lam)^-1 = (1/n)[tr (Sigma_hat + lam)^-1 - (d - n)/lam], the lemma with "
                      "A = I and kappa tr (Sigma + kappa)^-1 = d - D_1, lam from the fixed point: SymPy "
                      "simplifies it to 1/kappa for every D_1, so its ridgeless limit is 1/kappa "
                      "(isotropic: gamma/(1 - gamma), the limit of n/(d - n - 1))", gram))
    a_lim, b_lim = AK, signal + sigma**2 * gram
    steps.append(Step("a -> A_kappa; b = |P beta_t|^2 + |X^+ eps|^2 (cross term of mean 0) -> "
                      "1 - A_kappa + sigma^2/kappa = A_P + sigma^2/kappa, A_P = sum p lambda/(lambda + kappa) "
                      "(the summands of A_kappa and A_P add to 1: no cancellation as gamma -> 0)",
                      sp.Tuple(a_lim, b_lim)))
    # (iv) risk: beta_ft - beta_t = (I-P)(s beta_s - beta_t) + X^+ eps (P beta_t + X^+ eps = beta_sc);
    # the cross term is linear in eps (mean 0) in any metric; the first part is the HMRT bias
    # of the teacher beta_t - s beta_s, the second the HMRT variance
    beta_s, beta_t = sp.Matrix([1, 0]), sp.Matrix([sp.cos(theta), sp.sin(theta)])
    teacher = beta_t - SCALE * beta_s
    energy = sp.expand(sp.trigsimp(sp.expand((teacher.T * teacher)[0, 0])))
    if sp.expand(energy - (SCALE**2 - 2 * SCALE * sp.cos(theta) + 1)) != 0:
        raise ArithmeticError(f"unexpected energy of beta_t - s beta_s: {energy}")
    steps.append(Step("beta_ft - beta_t = (I - P)(s_c beta_s - beta_t) + X^+ eps, s_c = c^(L-1): bias of "
                      "min-norm least squares on the teacher beta_t - s_c beta_s (profile energy, "
                      "sp.trigsimp; cross terms of beta_s and nu vanish in the limit) plus the scratch "
                      "variance; the eps cross term has mean 0", energy))
    risk = forms["bias"].subs(ENERGY, energy) + forms["variance"]
    scratch = forms["bias"].subs(ENERGY, 1) + forms["variance"]
    transfer = sp.factor(scratch - risk)
    unit_bias = forms["bias"].subs(ENERGY, 1)
    if not is_zero(transfer - unit_bias * SCALE * (2 * sp.cos(theta) - SCALE)):
        raise ArithmeticError(f"T_ft is not bias_sc s_c (2 cos theta - s_c): {transfer}")
    transfer = unit_bias * SCALE * (2 * sp.cos(theta) - SCALE)
    steps.append(Step("R_ft = bias(energy) + variance; T = R_sc - R_ft: the variance cancels, "
                      "T = bias_sc s_c (2 cos theta - s_c) (sp.simplify), boundary cos theta* = s_c/2",
                      sp.Tuple(risk, transfer)))
    return {"summands": summands, "a": a_lim, "b": b_lim, "energy": energy, "risk": risk,
            "transferability": transfer, "steps": steps}


def _two_level_profile(expr: sp.Expr) -> sp.Expr:
    """``expr`` with ``A_kappa`` and the traces of :func:`trace_forms` in two-level form."""
    summands = balanced_forms()["summands"]
    return two_level(expr).subs({AK: profile_trace(summands[AK]), AP: profile_trace(summands[AP])})


@memo
def _balanced_two_level() -> dict:
    """Two-level assembly: ``a``, ``b``, the root, the risk and ``T`` (gamma < 1), with
    ``kappa`` as a symbol (numeric forms) and with the closed-form root (expressions)."""
    from featfate_sym.theory.fine_tuning import _depth_stable_form  # the depth-stable root, shared

    forms = balanced_forms()
    root_k, _, _ = _kappa_two_level()
    equation = get("ft.transferability_exact").derivation.extras["root_equation"]  # in c, a, b
    a_k = sp.factor(_two_level_profile(forms["a"]))
    b_k = _two_level_profile(forms["b"])
    risk_k = _two_level_profile(forms["risk"])
    t_k = _two_level_profile(forms["transferability"])
    in_c = {SCALE: c ** (L - 1)}
    risk_c, t_c = risk_k.subs(in_c), sp.powsimp(t_k.subs(in_c), force=True)
    (t_stable, ell_root), t_steps = _depth_stable_form(equation, t_c, a_k, b_k)
    # the same identity on the root, c^(L-1) = sqrt(b) e^(-ell_c/2) (derived there), for the risk
    from featfate_sym.symbols import ell_c
    risk_stable = risk_k.subs(SCALE, sp.sqrt(b_k) * sp.exp(-ell_c / 2))
    if not is_zero(t_stable - t_k.subs(SCALE, sp.sqrt(b_k) * sp.exp(-ell_c / 2))):
        raise ArithmeticError("the depth-stable T is not T at s_c = sqrt(b) e^(-ell_c/2)")
    a_b_bracket = (sp.sqrt(a_k), sp.sqrt(a_k + b_k ** (1 / L) + 1))
    return {"a": a_k, "b": b_k, "equation": equation, "risk": risk_c, "t": t_c, "risk_stable": risk_stable,
            "t_stable": t_stable, "ell_root": ell_root, "bracket": a_b_bracket, "root_k": root_k,
            "t_steps": t_steps}


def _c_root(parts: dict) -> ImplicitRoot:
    """The null-space scale ``c`` with the closed-form ``kappa`` (the registered expression)."""
    on_k = {kappa: parts["root_k"]}
    equation = parts["equation"].subs({a: parts["a"], b: parts["b"]}).subs(on_k)
    bracket = tuple(e.subs(on_k) for e in parts["bracket"])
    return ImplicitRoot(c, equation, bracket, "null-space scale: positive root of c^(2L) - a c^(2L-2) - b "
                        "with the two-level a, b, gamma < 1", where=gamma < 1)


def _balanced_numeric(expr: sp.Expr, parts: dict) -> NumericForm:
    return NumericForm(expr, [_kappa_implicit(), parts["ell_root"]],
                       "kappa as the root of its quadratic, then ell_c = log(c^2 - a) (no power of c "
                       "whose exponent grows with L; c^(L-1) = sqrt(b) e^(-ell_c/2))")


_FT_EXACT_STATUS = Status(Source.DERIVED, Exactness.EXACT,
                          verified="deterministic equivalents of a, b and the risk checked by Monte Carlo "
                          "at d = 1000 (tests/test_anisotropic.py)")
_FT_EXACT_NOTES = (
    "The balanced-flow end point of ft.transferability_exact (its argument does not use isotropy) "
    "with the deterministic equivalents a -> A_kappa = sum p kappa/(lambda + kappa) and "
    "b -> 1 - A_kappa + sigma^2/kappa (resolvent lemma; tr (X X^T)^-1 -> 1/kappa derived by SymPy "
    "from it), and the risk of (I-P)(c^(L-1) beta_s - beta_t) + X^+ eps: the HMRT bias with energy "
    "c^(2L-2) - 2 c^(L-1) cos theta + 1 plus the scratch variance. c is an ImplicitRoot "
    "(bracket [sqrt(a), sqrt(a + b^(1/L) + 1)], as ft.transferability_exact); the evaluators solve "
    "kappa, then ell_c = log(c^2 - a). L = 1 is the c = 1 form (ft.*_two_level); r = 1 is the "
    "isotropic ft.transferability_exact; sigma = 0 gives c = 1. gamma > 1: P = I, fine-tuning is "
    "scratch."
)


@register(
    "ft.risk_two_level_exact",
    title="Risk of fine-tuning at the balanced-flow end point, two-level input spectrum, any depth",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _FRAC, _R, _W, parameters.L],
    regime=_BALANCED_REGIME,
    status=_FT_EXACT_STATUS,
    reference=_HMRT + "; " + _RESOLVENT + "; " + _PAPER + " (Thm 3.9 with the null-space scale c)",
    notes=_FT_EXACT_NOTES + " Extras: a, b (in kappa), root_equation.",
    special_cases=[
        # at a rational point with kappa = sqrt(3) (gamma = 1/2, frac = 1/2, r = 3; theta, sigma, w_r
        # symbolic): sp.simplify of the general difference takes minutes; the test at every
        # point is in tests/test_anisotropic.py
        SpecialCase("one layer: the c = 1 risk (gamma = 1/2, frac = 1/2, r = 3)", "ft.risk_two_level",
                    {L: 1, gamma: sp.Rational(1, 2), frac: sp.Rational(1, 2), r: 3}),
        SpecialCase("gamma > 1: scratch", "scratch.risk_two_level", {gamma: 3}),
    ],
    singular="gamma = 1 with sigma > 0: infinite (the scratch variance), encoded as oo; c diverges as "
             "gamma -> 1- with sigma > 0",
)
def ft_risk_two_level_exact() -> Derivation:
    parts = _balanced_two_level()
    scratch = get("scratch.risk_two_level").expr
    over = {cond: value for value, cond in scratch.args}
    under = parts["risk"].subs(kappa, parts["root_k"])
    rest = [(value, cond) for value, cond in scratch.args if cond not in (gamma > 1, gamma < 1)]
    expr = sp.Piecewise((over[gamma > 1], gamma > 1), (under, gamma < 1), *rest)
    numeric = sp.Piecewise((over[gamma > 1], gamma > 1), (parts["risk_stable"], gamma < 1), *rest)
    steps = list(balanced_forms()["steps"]) + [
        Step("two-level a, b (A_kappa = w_r kappa/(r + kappa) + (1 - w_r) kappa/(1 + kappa))",
             sp.Tuple(parts["a"], parts["b"])),
        Step("risk (gamma < 1) with the two-level traces, s_c = c^(L-1)", parts["risk"]),
        Step("kappa substituted (scratch.kappa_two_level); gamma > 1 and gamma = 1 as "
             "scratch.risk_two_level (P = I)", expr),
    ]
    return Derivation(expr, steps=steps, extras={"a": parts["a"], "b": parts["b"],
                                                 "root_equation": parts["equation"]},
                      implicit=[_c_root(parts)], numeric=_balanced_numeric(numeric, parts))


@register(
    "ft.transferability_two_level_exact",
    title="Transferability of fine-tuning at the balanced-flow end point, two-level input spectrum, any depth",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _FRAC, _R, _W, parameters.L],
    regime=_BALANCED_REGIME + "; T = R_scratch - R_ft",
    status=_FT_EXACT_STATUS,
    reference=_HMRT + "; " + _RESOLVENT + "; " + _PAPER + " (Thm 3.9 with the null-space scale c)",
    notes=_FT_EXACT_NOTES + (
        " T = bias_sc c^(L-1) (2 cos theta - c^(L-1)): the variance cancels in the difference but "
        "sigma enters through c; boundary cos theta* = c^(L-1)/2. gamma >= 1: T = 0 (at gamma = 1 "
        "the limit gamma -> 1-, as ft.transferability_exact). Extras: boundary_cos_theta."
    ),
    special_cases=[
        SpecialCase("one layer: the c = 1 transferability (gamma = 1/2, frac = 1/2, r = 3)",
                    "ft.transferability_two_level", {L: 1, gamma: sp.Rational(1, 2), frac: sp.Rational(1, 2), r: 3}),
        SpecialCase("r = 1 is isotropic ft.transferability_exact", "ft.transferability_exact",
                    {r: 1, gamma: sp.Rational(1, 4)}),
        SpecialCase("gamma = 2: T = 0", sp.Integer(0), {gamma: 2}),
    ],
    singular="none: c diverges as gamma -> 1- with sigma > 0 but T -> 0; gamma >= 1 gives 0",
)
def ft_transferability_two_level_exact() -> Derivation:
    parts = _balanced_two_level()
    under = parts["t"].subs(kappa, parts["root_k"])
    expr = sp.Piecewise((sp.Integer(0), gamma >= 1), (under, True))
    numeric = sp.Piecewise((sp.Integer(0), gamma >= 1), (parts["t_stable"], True))
    steps = list(balanced_forms()["steps"]) + [
        Step("two-level a, b", sp.Tuple(parts["a"], parts["b"])),
        Step("T (gamma < 1) with the two-level traces, s_c = c^(L-1)", parts["t"]),
        *parts["t_steps"],
        Step("kappa substituted; gamma >= 1: T = 0", expr),
    ]
    return Derivation(expr, steps=steps, extras={"boundary_cos_theta": c ** (L - 1) / 2, "a": parts["a"],
                                                 "b": parts["b"]},
                      implicit=[_c_root(parts)], numeric=_balanced_numeric(numeric, parts))
