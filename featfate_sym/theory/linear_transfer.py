"""Linear transfer: refit only the readout on top of the frozen pretrained features.

Model (SPEC section 1): inputs ``x ~ N(0, I_d)``, target labels ``y = beta_t . x + eps``
with ``eps ~ N(0, sigma^2)``, unit teachers with ``beta_s . beta_t = cos(theta)``.  After
pretraining, the first ``L - 1`` layers of the deep linear network are rank one
(paper Thm 3.4): the network holds the single feature ``z = beta_s . x ~ N(0, 1)``, and
linear transfer fits one coefficient ``w`` on it, with ridge
``(1/n)|y - z w|^2 + lam w^2``.  Writing ``beta_t = cos(theta) beta_s + sin(theta) nu``
with ``nu`` a unit vector orthogonal to ``beta_s``, the label is
``y = cos(theta) z + sin(theta) z_perp + eps`` where ``z_perp = nu . x`` is independent of
``z``: the part of the target the feature cannot express acts as extra noise.  The risk
``|w beta_s - beta_t|^2`` is computed in the plane of the two teachers, the only
directions either vector has.  The scale of the pretrained feature
(``|beta_s|^((L-1)/L)``) is absorbed by the readout at ``lam = 0``; with ridge the model
is the normalised feature ``z``, as in the paper's Thm 3.8.

Results registered (family ``linear_transfer``):

- ``lt.risk_finite`` -- exact expected risk at finite ``n`` and ``lam = 0``, by Gaussian
  integration conditional on the feature and the derived ``E[1/chi^2_n]``; the extra
  ``risk_k_features`` gives ``k`` frozen features through the inverse-Wishart lemma;
- ``lt.risk`` -- the large-``n`` limit with ridge (paper Thm 3.8), from the law of large
  numbers applied to the sample moments;
- ``lt.ridge_slope`` -- ``d lt.risk / d lam`` and the proof that it is nonnegative;
- ``lt.transferability`` -- ``T_lt = scratch.risk - lt.risk`` in the proportional limit;
- ``lt.boundary`` -- the phase boundaries ``T_lt = 0``: ``(gamma_minus, gamma_plus,
  gamma_above_one)``, solved with ``sp.solve`` on each branch of ``T_lt``.
"""

from __future__ import annotations

import sympy as sp
from sympy.stats import Normal, variance

from featfate_sym import parameters
from featfate_sym.registry import Derivation, SpecialCase, Exactness, Source, Status, Step, get, register
from featfate_sym.symbols import gamma, k, lam, n, sigma, theta
from featfate_sym.theory.random_matrix import (
    INVERSE_WISHART_REFERENCE,
    chi2_inverse_mean,
    inverse_covariance_mean_coefficient,
)

_FAMILY = "linear_transfer"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"

_N = parameters.n.restricted(lower=2, lower_open=True)
_THETA, _SIGMA, _LAM, _GAMMA = parameters.theta, parameters.sigma, parameters.lam, parameters.gamma

#: the least-squares readout coefficient, a scratch symbol of the derivations
_W = sp.Symbol("w", real=True)
#: the linear-transfer risk treated as one number while solving for the boundaries
_R = sp.Symbol("R_lt", nonnegative=True)
#: a scratch symbol for gamma while solving (no positivity assumption to filter roots)
_G = sp.Symbol("g", real=True)


# -- shared pieces -----------------------------------------------------------------------
def _branch(expr: sp.Piecewise, condition) -> sp.Expr:
    """The value of the ``Piecewise`` branch whose condition is ``condition``."""
    for value, cond in expr.args:
        if cond == condition:
            return value
    raise RuntimeError(f"no branch {condition} in {expr}")  # pragma: no cover


def _plane_risk() -> tuple[sp.Expr, list[Step]]:
    """``|w beta_s - beta_t|^2`` in coordinates of the teachers' plane, and its square completed."""
    beta_s = sp.Matrix([1, 0])
    beta_t = sp.Matrix([sp.cos(theta), sp.sin(theta)])
    residual = _W * beta_s - beta_t
    risk = sp.expand((residual.T * residual)[0])
    # complete the square in w: what is left does not depend on w and simplifies to sin^2
    remainder = sp.simplify(sp.expand(risk - (_W - sp.cos(theta)) ** 2))
    completed = (_W - sp.cos(theta)) ** 2 + remainder
    steps = [
        Step("in the plane of the teachers beta_s = (1, 0), beta_t = (cos theta, sin theta); "
             "the risk of a readout w is |w beta_s - beta_t|^2 (expanded)", risk),
        Step("completing the square in w (the remainder simplifies to sin^2 theta)", completed),
    ]
    return completed, steps


# -- finite n ----------------------------------------------------------------------------
@register(
    "lt.risk_finite",
    title="Expected risk of linear transfer at finite n (no ridge)",
    family=_FAMILY,
    params=[_N, _THETA, _SIGMA],
    regime="n target samples, any d; frozen rank-one pretrained features, least-squares readout (lam = 0)",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_PAPER + ", Thm 3.7 (finite-n form)",
    notes=(
        "Conditional on the feature vector z, the readout error is Gaussian with variance "
        "(sin^2 theta + sigma^2)/|z|^2; SymPy integrates the risk against that Gaussian, then "
        "E[1/|z|^2] = E[1/chi^2_n] = 1/(n - 2) is derived by random_matrix.chi2_inverse_mean. "
        "Independent of d and of the depth. The extra risk_k_features is the version with k "
        "frozen features (k - 1 of them orthogonal to both teachers), which uses the cited "
        "inverse-Wishart lemma E[(F^T F)^-1] = I/(n - k - 1)."
    ),
    special_cases=[
        SpecialCase("no noise, same task: the feature is the target, risk 0", sp.Integer(0),
                    {theta: 0, sigma: 0}),
        SpecialCase("sigma -> 0: only the inexpressible part, sin^2 (1 + 1/(n - 2))",
                    sp.Rational(1, 2) * (1 + sp.Rational(1, 8)), {theta: sp.pi / 4, n: 10},
                    (sigma, 0, "+")),
        SpecialCase("n -> oo: the large-n limit lt.risk at lam = 0", "lt.risk",
                    {theta: sp.pi / 3, sigma: sp.Rational(1, 5), lam: 0},
                    (n, sp.oo, "-")),
    ],
    singular="n <= 2 (outside the domain): E[1/chi^2_n] diverges and the expected risk is "
             "infinite unless sin(theta) = sigma = 0",
)
def risk_finite() -> Derivation:
    completed, steps = _plane_risk()
    # per-sample noise of the one-feature regression: the target direction orthogonal to
    # beta_s, sin(theta) z_perp with z_perp ~ N(0, 1), plus the label noise; sympy.stats
    # needs a positive standard deviation, sigma = 0 is the continuous extension
    sd = sp.Symbol("sigma_eps", positive=True)
    noise_var = variance(sp.sin(theta) * Normal("z_perp", 0, 1) + Normal("eps", 0, sd)).subs(sd, sigma)
    # conditional on z (q = |z|^2), w - cos(theta) = z . xi / q ~ N(0, v^2 / q)
    q = sp.Symbol("q", positive=True)
    v = sp.Symbol("v", positive=True)
    g = sp.Symbol("g_std", real=True)
    density = sp.exp(-g**2 / 2) / sp.sqrt(2 * sp.pi)
    conditional = sp.integrate(
        sp.expand(completed.subs(_W, sp.cos(theta) + v / sp.sqrt(q) * g)) * density, (g, -sp.oo, sp.oo)
    )
    conditional = sp.expand(conditional)
    inverse_q = sp.Symbol("E_inv_q", positive=True)
    # the risk is linear in 1/q, so its expectation replaces 1/q by E[1/q]
    linear_in_inverse = sp.expand(conditional.subs(q, 1 / inverse_q))
    if sp.degree(linear_in_inverse, inverse_q) != 1:  # pragma: no cover
        raise RuntimeError("the conditional risk is not linear in 1/|z|^2")
    chi2_mean = chi2_inverse_mean(n)
    expectation = sp.piecewise_fold(linear_in_inverse.subs({inverse_q: chi2_mean, v: sp.sqrt(noise_var)}))
    # the domain is n > 2: the result is the convergent branch
    expr = _branch(expectation, n > 2)
    steps += [
        Step("labels y = cos(theta) z + sin(theta) z_perp + eps with z_perp, eps independent of z; "
             "least squares on the one feature gives w = z.y/z.z = cos(theta) + z.xi/|z|^2, "
             "xi = sin(theta) z_perp + eps; per-sample variance of xi (sympy.stats)", noise_var),
        Step("conditional on z, with q = |z|^2: z.xi ~ N(0, v^2 q) (a sum of independent Gaussians), "
             "so w - cos(theta) = v g / sqrt(q), g ~ N(0, 1); integrating the risk against the "
             "Gaussian density of g", conditional),
        Step("q = |z|^2 ~ chi^2_n; E[1/chi^2_n] derived by integration against the chi-square "
             "density (random_matrix.chi2_inverse_mean)", chi2_mean),
        Step("the risk is linear in 1/q: take the expectation, v^2 = sin^2 theta + sigma^2", expectation),
        Step("on the domain n > 2", expr),
    ]
    # k frozen features: F = X B with B orthonormal (beta_s and k - 1 directions orthogonal
    # to both teachers); the signal outside span(B) is still sin(theta) z_perp, and the
    # readout error has E|w - w*|^2 = v^2 tr E[(F^T F)^-1] = v^2 k c_k (inverse-Wishart lemma)
    coefficient_k = inverse_covariance_mean_coefficient(n, k)
    risk_k = sp.piecewise_fold(sp.sin(theta) ** 2 + noise_var * k * coefficient_k)
    steps.append(Step(
        "k frozen features (k - 1 of them orthogonal to both teachers): R = sin^2 theta + |w - w*|^2, "
        "E|w - w*|^2 = v^2 tr E[(F^T F)^{-1}], F^T F ~ W_k(n, I); lemma " + INVERSE_WISHART_REFERENCE,
        risk_k,
    ))
    extras = {
        "noise_variance": noise_var,
        "conditional_risk": conditional,
        "risk_k_features": risk_k,
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- large-n limit with ridge ------------------------------------------------------------
@register(
    "lt.risk",
    title="Risk of linear transfer with a ridge readout, large-n limit",
    family=_FAMILY,
    params=[_THETA, _LAM],
    regime="n -> oo (any gamma = n/d in the proportional limit); frozen rank-one pretrained features, "
           "ridge readout (1/n)|y - F w|^2 + lam |w|^2",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_PAPER + ", Thm 3.8 (Thm 3.7 at lam = 0)",
    notes=(
        "The sample moments z.z/n and z.y/n are written as their means plus O(1/sqrt(n)) "
        "fluctuations a/sqrt(n), b/sqrt(n) (central limit theorem; a, b stay bounded in "
        "probability) and SymPy takes n -> oo: the coefficient tends to cos(theta)/(1 + lam) "
        "(law of large numbers). Independent of gamma, sigma and the depth L: the readout "
        "has a single parameter, so the noise averages out."
    ),
    special_cases=[
        SpecialCase("lam -> 0: the unregularised limit sin^2 theta", sp.sin(theta) ** 2, {}, (lam, 0, "+")),
        SpecialCase("same task, no ridge: perfect transfer", sp.Integer(0), {theta: 0, lam: 0}),
        SpecialCase("lam -> oo: the readout shrinks to 0, risk |beta_t|^2 = 1", sp.Integer(1), {},
                    (lam, sp.oo, "-")),
        SpecialCase("orthogonal tasks: nothing to transfer, risk 1 at every lam", sp.Integer(1),
                    {theta: sp.pi / 2}),
    ],
    singular="none: bounded by 1 for every theta and lam >= 0",
)
def risk() -> Derivation:
    completed, steps = _plane_risk()
    a, b_perp, b_eps = sp.symbols("a b_perp b_eps", real=True)
    # z.z/n = 1 + a/sqrt(n); z.y/n = cos(theta) z.z/n + sin(theta) z.z_perp/n + z.eps/n with
    # z.z_perp/n = b_perp/sqrt(n) and z.eps/n = sigma b_eps/sqrt(n) (means 0)
    gram = 1 + a / sp.sqrt(n)
    cross = sp.cos(theta) * gram + (sp.sin(theta) * b_perp + sigma * b_eps) / sp.sqrt(n)
    coefficient_n = cross / (gram + lam)
    coefficient = sp.limit(coefficient_n, n, sp.oo)
    shrinkage = sp.factor(coefficient - sp.cos(theta))
    expr = completed.subs(_W, sp.cos(theta) + shrinkage)
    steps += [
        Step("ridge readout on one feature: w = (z.y/n)/(z.z/n + lam); sample moments as their "
             "means plus O(1/sqrt(n)) fluctuations", coefficient_n),
        Step("n -> oo (sp.limit): the fluctuations vanish", coefficient),
        Step("shrinkage of the coefficient, w - cos(theta) (factored)", shrinkage),
        Step("risk (w - cos theta)^2 + sin^2 theta", expr),
    ]
    extras = {"coefficient": coefficient, "coefficient_finite_n": coefficient_n}
    return Derivation(expr, steps=steps, extras=extras)


@register(
    "lt.ridge_slope",
    title="Slope of the linear-transfer risk in the ridge strength",
    family=_FAMILY,
    params=[_THETA, _LAM],
    regime="n -> oo; ridge readout on frozen rank-one pretrained features",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_PAPER + ", Thm 3.8 (ridge monotonicity)",
    notes=(
        "sp.diff of lt.risk in lam, factored. Its sign is proved from the factors: 2 > 0, "
        "lam >= 0, cos^2 theta >= 0, (1 + lam)^3 > 0, and SymPy confirms is_nonnegative with "
        "the symbols' assumptions. Ridge on the readout never lowers the large-n risk; at "
        "finite n a small lam can, through the variance term."
    ),
    special_cases=[
        SpecialCase("no ridge: the slope vanishes (lam = 0 is the minimum)", sp.Integer(0), {lam: 0}),
        SpecialCase("orthogonal tasks: the risk does not depend on lam", sp.Integer(0), {theta: sp.pi / 2}),
        SpecialCase("theta = 0, lam = 1: 2 / 8", sp.Rational(1, 4), {theta: 0, lam: 1}),
    ],
    singular="none",
)
def ridge_slope() -> Derivation:
    risk_lt = get("lt.risk").expr
    raw = sp.diff(risk_lt, lam)
    slope = sp.factor(raw)
    factors = sp.Mul.make_args(slope)
    signs = [f.is_nonnegative for f in factors]
    if not all(signs) or not slope.is_nonnegative:  # pragma: no cover - a proof failure
        raise RuntimeError(f"could not prove the sign of {slope}")
    steps = [
        Step("lt.risk", risk_lt),
        Step("d/dlam (sp.diff)", raw),
        Step("simplified and factored", slope),
        Step("sign: each factor is nonnegative under lam >= 0, theta real "
             "(SymPy: is_nonnegative is True for every factor, and for the product)",
             sp.Tuple(*factors)),
    ]
    return Derivation(slope, steps=steps, extras={"factors": sp.Tuple(*factors)})


# -- transferability and phase boundaries ------------------------------------------------
@register(
    "lt.transferability",
    title="Transferability of linear transfer, T_lt = R_sc - R_lt",
    family=_FAMILY,
    params=[_GAMMA, _THETA, _SIGMA, _LAM],
    regime="proportional limit n, d -> oo with gamma = n/d; scratch = min-norm interpolation, "
           "transfer = ridge readout on frozen pretrained features",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_PAPER + ", Thms 3.6-3.8 (transferability of linear transfer)",
    notes=(
        "scratch.risk minus lt.risk, folded into one Piecewise. Positive means transfer helps. "
        "At gamma = 1 with sigma > 0 scratch sits on its double-descent peak and T_lt = +oo "
        "(encoded as its own branch); at gamma = 1 without noise T_lt = -R_lt."
    ),
    special_cases=[
        SpecialCase("noiseless, gamma > 1: scratch is exact, T_lt = -R_lt", -sp.Rational(13, 16),
                    {gamma: 3, sigma: 0, theta: sp.pi / 3, lam: 1}),
        SpecialCase("sigma -> 0, gamma < 1: (1 - gamma) - R_lt", sp.Rational(1, 2) - sp.Rational(3, 4),
                    {gamma: sp.Rational(1, 2), theta: sp.pi / 3, lam: 0}, (sigma, 0, "+")),
        SpecialCase("theta = 0, lam = 0: transfer is perfect, T_lt = R_sc", "scratch.risk",
                    {theta: 0, lam: 0, gamma: sp.Rational(2, 5)}),
        SpecialCase("lam -> 0+ is continuous", "scratch.risk",
                    {theta: 0, gamma: sp.Rational(7, 3)}, (lam, 0, "+")),
    ],
    singular="gamma = 1 with sigma > 0: +oo (scratch's interpolation peak), encoded as oo",
)
def transferability() -> Derivation:
    scratch = get("scratch.risk").expr
    risk_lt = get("lt.risk").expr
    folded = sp.piecewise_fold(scratch - risk_lt)
    expr = sp.Piecewise(*[(v if v in (sp.oo, -sp.oo) else sp.simplify(v), cond) for v, cond in folded.args])
    steps = [
        Step("scratch.risk (proportional limit)", scratch),
        Step("lt.risk (large-n limit, ridge lam)", risk_lt),
        Step("T_lt = R_sc - R_lt, folded into the branches of R_sc", expr),
    ]
    return Derivation(expr, steps=steps)


@register(
    "lt.boundary",
    title="Phase boundaries of linear transfer, T_lt = 0",
    family=_FAMILY,
    params=[_THETA, _SIGMA, _LAM],
    regime="proportional limit; as lt.transferability",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_PAPER + ", phase diagram of T_lt (Thm 3.8 and the transferability equation)",
    notes=(
        "Vector-valued: (gamma_minus, gamma_plus, gamma_above_one). Negative transfer "
        "(T_lt < 0) holds on gamma_minus < gamma < gamma_plus (below 1) and for "
        "gamma > gamma_above_one. Each is solved by sp.solve on one branch of T_lt, with the "
        "transfer risk R_lt kept as a symbol and substituted afterwards. gamma_minus <= "
        "gamma_plus (the paper prints the two swapped). gamma_minus and gamma_plus are NaN, "
        "meaning 'no negative-transfer interval below gamma = 1', where the quadratic has no "
        "real roots (discriminant < 0) or its roots are not positive (2 - sigma^2 - R_lt <= 0); "
        "the interval exists iff sigma < 1 - sqrt(1 - R_lt) (at lam = 0: sigma < 1 - |cos theta|). "
        "gamma_above_one is oo, meaning 'never negative above 1', when R_lt = 0 (theta in {0, pi} "
        "at lam = 0). gamma_minus is evaluated as the product of the roots over gamma_plus "
        "(Vieta), free of cancellation when it is small. Extras: the quadratic, its "
        "discriminant, the critical noise, and the lam = 0 criterion."
    ),
    singular="discriminant < 0: no interval below 1 (NaN pair); R_lt = 0: gamma_above_one = oo",
)
def boundary() -> Derivation:
    scratch = get("scratch.risk").expr
    risk_lt = get("lt.risk").expr
    # T_lt with the transfer risk kept as one symbol R_lt: the boundaries depend on theta
    # and lam only through it
    t_sym = sp.piecewise_fold(scratch - _R).subs(gamma, _G)
    below = _branch(t_sym, _G < 1)
    above = _branch(t_sym, _G > 1)
    # gamma < 1: T = 0 <=> numerator = 0 (the denominator 1 - gamma is positive there)
    numerator = sp.numer(sp.together(below))
    # normalised to a monic quadratic (together() may write the numerator with either sign)
    numerator_poly = sp.Poly(sp.expand(numerator), _G)
    quadratic = sp.Poly(sp.expand(numerator_poly.as_expr() / numerator_poly.LC()), _G)
    roots = sp.solve(quadratic.as_expr(), _G)
    if len(roots) != 2:  # pragma: no cover
        raise RuntimeError(f"expected two roots, got {roots}")
    # order the roots at a point where they are real and distinct (they never cross there)
    probe = {_R: sp.Rational(1, 2), sigma: sp.Rational(1, 5)}
    lower_root, upper_root = sorted(roots, key=lambda r: float(r.subs(probe)))
    leading, linear, constant = quadratic.all_coeffs()
    # Vieta: product of the roots = constant/leading, verified symbolically
    if sp.expand(lower_root * upper_root - constant / leading) != 0:  # pragma: no cover
        raise RuntimeError("Vieta check failed")
    discriminant = sp.factor(sp.discriminant(quadratic.as_expr(), _G))
    # write the roots' square root over the factored discriminant (leading coefficient 1):
    # the expanded radicand cancels where the discriminant is small
    radicands = {e.base for e in upper_root.atoms(sp.Pow) if e.exp == sp.S.Half}
    (radicand,) = radicands
    if sp.expand(radicand - discriminant / leading**2) != 0:  # pragma: no cover
        raise RuntimeError("radicand is not the discriminant")
    root_of_discriminant = sp.sqrt(discriminant) / leading
    lower_root, upper_root = (r.subs(sp.sqrt(radicand), root_of_discriminant) for r in (lower_root, upper_root))
    vertex_sum = sp.expand(-linear / leading)  # sum of the roots
    no_interval = (discriminant < 0) | (vertex_sum <= 0)
    (above_root,) = sp.solve(sp.numer(sp.together(above)), _G)

    # back in the model's parameters: R_lt from lt.risk, 1 - R_lt simplified (k_lam cos^2)
    constant_lt = sp.factor(sp.trigsimp(constant.subs(_R, risk_lt)))
    upper_lt = upper_root.subs(_R, risk_lt)
    gamma_plus = sp.Piecewise((sp.nan, no_interval.subs(_R, risk_lt)), (upper_lt, True))
    gamma_minus = sp.Piecewise(
        (sp.nan, no_interval.subs(_R, risk_lt)), (constant_lt / (leading * upper_lt), True)
    )
    gamma_above = sp.Piecewise((sp.oo, sp.Eq(risk_lt, 0)), (above_root.subs(_R, risk_lt), True))
    expr = sp.Tuple(gamma_minus, gamma_plus, gamma_above)

    # critical noise: the discriminant's factor that vanishes first as sigma grows from 0
    probe_c = {_R: sp.Rational(3, 4)}
    # (simplify=False: simplifying the roots leaves them as they are)
    critical = sorted(
        (r for r in sp.solve(discriminant, sigma, simplify=False) if float(r.subs(probe_c)) >= 0),
        key=lambda r: float(r.subs(probe_c)),
    )
    # written with 1 - R_lt = k_lam cos^2 theta (the product of the roots)
    sigma_critical = critical[0].subs(_R, 1 - constant_lt)
    sigma_critical_lam0 = sp.simplify(sigma_critical.subs(lam, 0))
    discriminant_lam0 = sp.factor(sp.cancel(discriminant.subs(_R, risk_lt.subs(lam, 0))))
    steps = [
        Step("T_lt = R_sc - R_lt with R_lt kept as a symbol (gamma written g while solving)", t_sym),
        Step("gamma < 1: T_lt = 0 iff the numerator over 1 - gamma vanishes; the quadratic", quadratic.as_expr()),
        Step("its roots (sp.solve), ordered gamma_minus <= gamma_plus", sp.Tuple(lower_root, upper_root)),
        Step("discriminant (factored); the roots are real iff it is >= 0", discriminant),
        Step("sum of the roots; the quadratic is nonnegative at g = 0 (R_lt <= 1) and equals "
             "sigma^2 >= 0 at g = 1, so when the sum is positive both roots lie in [0, 1]", vertex_sum),
        Step("gamma_minus = (product of roots)/gamma_plus (Vieta); product with R_lt = lt.risk", constant_lt),
        Step("gamma > 1: T_lt = 0 (sp.solve); T_lt < 0 beyond it", above_root),
        Step("critical noise: the smallest nonnegative root in sigma of the discriminant; the "
             "interval below 1 exists iff sigma is below it", sigma_critical),
        Step("at lam = 0", sigma_critical_lam0),
        Step("boundaries with R_lt = lt.risk; NaN where there is no interval below 1, oo where "
             "R_lt = 0 leaves no negative transfer above 1", expr),
    ]
    extras = {
        "quadratic": quadratic.as_expr().subs(_R, risk_lt).subs(_G, gamma),
        "discriminant": discriminant.subs(_R, risk_lt),
        "discriminant_lam0": discriminant_lam0,
        "sigma_critical": sigma_critical,
        "sigma_critical_lam0": sigma_critical_lam0,
        "interval_criterion_lam0": sp.StrictGreaterThan(sigma_critical_lam0, sigma),
        "roots_in_R_lt": sp.Tuple(lower_root.subs(_G, gamma), upper_root.subs(_G, gamma)),
    }
    return Derivation(expr, steps=steps, extras=extras, outputs=("gamma_minus", "gamma_plus", "gamma_above_one"))
