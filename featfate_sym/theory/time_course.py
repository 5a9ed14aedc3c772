"""The time course of transfer: risk and transferability along training, L = 1.

Conventions (SPEC section 5, stated again in every entry's notes): the training loss is
``(1/n)|X beta - y|^2`` (no 1/2), training is gradient flow ``dW/dt = -dLoss/dW`` (the
limit of gradient descent ``W <- W - eta dLoss/dW`` at ``t = eta * steps``), the pretrained
network is balanced (``D_l = 0``) with unit ``|beta_s|``.  Isotropic Gaussian design,
``n = gamma d``, unit teachers at angle ``theta`` (the pair uniformly rotated), label noise
``sigma``.

Results registered (family ``time_course``):

- ``ft.risk_time`` -- the risk of fine-tuning a one-layer network (``beta``) by gradient flow
  from ``beta(0) = beta_s``, proportional limit: per eigen-direction of ``Sxx`` the flow is
  solved by ``sp.dsolve`` from the source coordinate, the squared error averaged over the
  teacher pair and the noise; the null space of ``X`` (eigenvalue 0) keeps ``beta_s``; the
  Marchenko-Pastur weight and atom are those derived for ``scratch.risk_time``.  The spectral
  integral is not closed by SymPy: it is named ``I_ft`` and integrated numerically
  (:mod:`featfate_sym.transfer_curves`).
- ``ft.transferability_time`` -- ``scratch.risk_time - ft.risk_time`` at equal time: the
  per-mode difference of the two integrands is factored by SymPy into ``(2 cos(theta) - 1)``
  times the scratch bias ``E^2`` (``E`` the mode's decay factor); the variance cancels, so
  ``T_ft(t) = (2 cos(theta) - 1) R_sc(t; sigma = 0)``, for any label noise.
- ``lt.risk_time`` -- linear transfer's one-feature fit along its flow: the end-to-end vector
  ``beta = a beta_s`` with ``a(0) = 1`` (the pretrained readout), the flow of ``a`` solved by
  ``sp.dsolve`` with the sample moments of the frozen feature written as means plus
  ``O(1/sqrt(n))`` fluctuations, and ``n -> oo`` taken by ``sp.limit``; closed form.
- ``lt.transferability_time`` -- ``scratch.risk_time - lt.risk_time`` at equal time.
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.registry import Derivation, Exactness, SpecialCase, Source, Status, Step, get, register
from featfate_sym.symbols import L, eta, gamma, lam, n, sigma, t, theta
from featfate_sym.theory.zero import is_zero, limit_by_powers

_FAMILY = "time_course"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"
_CONVENTIONS = (
    "Conventions: training loss (1/n)|X beta - y|^2 (no 1/2); gradient flow dW/dt = -dLoss/dW, the "
    "limit of W <- W - eta dLoss/dW at t = eta * steps; pretrained network balanced (D_l = 0) with "
    "unit |beta_s|. "
)
_ADVANI_SAXE = "Advani & Saxe (2017), high-dimensional dynamics of generalisation error"

#: coordinates along one eigenvector of Sxx: target teacher, source teacher, noise
_TEACH, _SOURCE, _NOISE = sp.Symbol("b_i", real=True), sp.Symbol("s_i", real=True), sp.Symbol("xi_i", real=True)
#: the per-mode decay factor exp(-2 x t) of the flow (or (1 - 2 eta x)^k of descent)
_DECAY = sp.Symbol("E_t", positive=True)
#: the readout coefficient along beta_s (beta = a beta_s) and the descent step count
_COEF = sp.Symbol("a", real=True)
_STEPS = sp.Symbol("k_steps", integer=True, nonnegative=True)
#: O(1) fluctuations of the frozen feature's sample moments (central limit theorem)
_FLUCT_G, _FLUCT_PERP, _FLUCT_EPS = sp.symbols("u_g u_perp u_eps", real=True)


def _scratch_pieces():
    """The spectral variable, MP weight, eigenvalue map and atom of ``scratch.risk_time``
    (derived there from the Stieltjes quadratic; reused, not retyped)."""
    ex = get("scratch.risk_time").extras
    eig = next(s for s in ex["variance"].free_symbols if s.name == "x")
    angle = next(iter(ex["weight"].free_symbols - {gamma}))
    return ex, eig, angle


def _in_decay(expr, eig):
    """``expr`` written in the per-mode factor ``E = exp(-2 x t)``."""
    out = sp.expand(expr).subs(sp.exp(-4 * eig * t), _DECAY**2).subs(sp.exp(-2 * eig * t), _DECAY)
    if out.has(t):
        raise ArithmeticError("the integrand is not a function of exp(-2 x t)")
    return sp.collect(sp.expand(out), sigma)


def _fine_tuning_integrand(eig):
    """Expected squared error of one eigen-direction of ``Sxx`` (eigenvalue ``x``), times ``d``,
    along the flow started at the source coordinate."""
    coord = sp.Function("beta_i")
    target = _TEACH + _NOISE
    ode = sp.Eq(coord(t).diff(t), -2 * eig * (coord(t) - target))
    solution = sp.dsolve(ode, coord(t), ics={coord(0): _SOURCE}).rhs
    error = sp.expand((solution - _TEACH) ** 2)
    poly = sp.Poly(error, _TEACH, _SOURCE, _NOISE)
    n_, d_ = sp.symbols("n_samples d_dim", positive=True)
    # the teacher pair is uniformly rotated against the design: E b_i^2 = E s_i^2 = 1/d,
    # E b_i s_i = cos(theta)/d; the noise coordinate xi = Sxx^+ X^T eps/n has E xi_i^2 =
    # sigma^2/(n x) and is independent of the teachers
    moments = {(2, 0, 0): 1 / d_, (0, 2, 0): 1 / d_, (1, 1, 0): sp.cos(theta) / d_,
               (0, 0, 2): sigma**2 / (n_ * eig), (1, 0, 1): 0, (0, 1, 1): 0}
    if set(poly.monoms()) - set(moments):
        raise ArithmeticError("the squared error is not quadratic in (b_i, s_i, xi_i)")
    mean = sum(coeff * moments[monom] for monom, coeff in poly.terms())
    integrand = sp.expand(sp.together((d_ * mean).subs(n_, gamma * d_)))
    integrand = sp.collect(integrand, sigma)
    at_zero = sp.simplify(limit_by_powers(integrand, sigma, eig, 0, "+"))
    bias = sp.factor(integrand.coeff(sigma, 0))
    variance = integrand.coeff(sigma, 2)
    if not is_zero(bias + sigma**2 * variance - integrand) or bias.has(sigma):
        raise ArithmeticError("the integrand is not bias + sigma^2 variance")
    steps = [
        Step("gradient flow of (1/n)|X beta - y|^2 along an eigenvector of Sxx (eigenvalue x), "
             "beta_ls = b_i + xi_i (teacher + noise coordinate)", ode),
        Step("sp.dsolve from the source coordinate, beta_i(0) = s_i", sp.Eq(coord(t), solution)),
        Step("squared error (beta_i(t) - b_i)^2, expanded", error),
        Step("moments: E b_i^2 = E s_i^2 = 1/d, E b_i s_i = cos(theta)/d (the teacher pair uniformly "
             "rotated), E xi_i^2 = sigma^2/(n x), no cross moments with the noise; times d, n = gamma d",
             integrand),
        Step("bias and variance parts", sp.Tuple(bias, variance)),
        Step("h_ft(0+) (sp.limit): the null space of X keeps beta_s, error |beta_s - beta_t|^2", at_zero),
    ]
    return integrand, at_zero, bias, variance, steps


@register(
    "ft.risk_time",
    title="Risk along gradient flow of one-layer fine-tuning from the source teacher (time course)",
    family=_FAMILY,
    params=[parameters.gamma, parameters.theta, parameters.sigma, parameters.t],
    regime="n, d -> oo with gamma = n/d; L = 1 (beta itself); gradient flow on the empirical target "
    "loss from beta(0) = beta_s (unit, at angle theta to beta_t); isotropic Gaussian design, the teacher "
    "pair uniformly rotated",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="the per-mode integrand by sp.dsolve and the MP weight of scratch.risk_time are "
                  "symbolic; the spectral integral is not closed by SymPy and is evaluated by numerical "
                  "quadrature (featfate_sym.transfer_curves, mpmath reference), checked against t = 0 "
                  "(2(1 - cos theta)), t -> oo (ft.transferability_exact at L = 1) and gradient descent at "
                  "d = 200"),
    reference=_ADVANI_SAXE + "; Marchenko-Pastur law; model of " + _PAPER + ", Thm 3.9 (its end point)",
    notes=_CONVENTIONS + (
        "beta(t) = beta_ls + exp(-2 Sxx t)(beta_s - beta_ls): the part of beta_s in the null space of X "
        "(I - P) is frozen, the row-space part relaxes to the least-squares solution. R(t) = (1 - gamma)_+ "
        "h(0+) + int h(x) rho(x) dx with h(x) = 2 (1 - cos theta) exp(-4 x t) + (sigma^2/gamma) "
        "(1 - exp(-2 x t))^2/x and rho the continuous MP density of Sxx (psi = 1/gamma). The variance is "
        "that of scratch.risk_time (checked): the start does not see the noise. SymPy does not evaluate "
        "the integral in closed form: the expression names it I_ft(gamma, theta, sigma, t) "
        "(extras['spectral_integral'], over phi in [0, pi] as for scratch.risk_time) and is not compiled "
        "by the registry (evaluable = False); featfate_sym.transfer_curves.ft_risk_time integrates it. "
        "t = 0: 2 (1 - cos theta) (the pretrained risk); t -> oo: 2 (1 - gamma)(1 - cos theta) + the "
        "scratch variance (scratch.risk - ft.transferability_exact at L = 1). Extras: integrand, bias, "
        "variance, at_zero, integrand_limit, integrand_in_decay (in E = exp(-2 x t)), spectral_integral."
    ),
    singular="gamma = 1 with sigma > 0: finite at every finite t, diverging as t -> oo",
    evaluable=False,
)
def risk_time_fine_tuning() -> Derivation:
    ex, eig, angle = _scratch_pieces()
    integrand, at_zero, bias, variance, steps = _fine_tuning_integrand(eig)
    if not is_zero(variance - ex["variance"]):
        raise ArithmeticError("the fine-tuning variance is not that of scratch.risk_time")
    # scratch's factored form (1 - E)^2/(gamma x), which the compilers evaluate without cancellation
    variance = ex["variance"]
    integrand = bias + sigma**2 * variance
    steps.append(Step("the variance equals scratch.risk_time's (sp.simplify of the difference is 0)", variance))
    atom = ex["atom"]
    in_phi = (integrand.subs(eig, ex["eigenvalue_of_phi"]) * ex["weight"])
    integral = sp.Integral(in_phi, (angle, 0, sp.pi))
    named = sp.Function("I_ft")(gamma, theta, sigma, t)
    expr = atom * at_zero + named
    steps += [
        Step("MP atom (1 - gamma)_+ and weight w(phi) of scratch.risk_time (x = x(phi))",
             sp.Tuple(atom, ex["weight"])),
        Step("the continuous part I_ft = int_0^pi h_ft(x(phi)) w(phi) dphi (not closed by SymPy: "
             "numerical quadrature)", sp.Eq(named, integral)),
        Step("R_ft(t) = atom h_ft(0+) + I_ft", expr),
    ]
    limit_integrand = limit_by_powers(integrand, sigma, t, sp.oo)
    if not is_zero(limit_integrand - ex["integrand_limit"]):
        raise ArithmeticError("the t -> oo integrand differs from scratch's")
    # t -> oo: the continuous parts of scratch and fine-tuning coincide, so the difference of the
    # end points is the atom's; it must be ft.transferability_exact at L = 1 (gamma < 1)
    exact = get("ft.transferability_exact")
    t_exact = next(v for v, cond in exact.expr.args if cond == (gamma < 1))
    t_exact = t_exact.subs(L, 1)
    scratch_zero = get("scratch.risk_time").extras["at_zero"]
    end_difference = sp.simplify((1 - gamma) * (scratch_zero - at_zero))
    if not is_zero(end_difference - t_exact):
        raise ArithmeticError("the t -> oo limit disagrees with ft.transferability_exact at L = 1")
    steps.append(Step("t -> oo (sp.limit): the integrand tends to scratch's (sigma^2/(gamma x)); the end "
                      "points differ by the atom, (1 - gamma)(h_sc(0+) - h_ft(0+)) = "
                      "ft.transferability_exact at L = 1, gamma < 1 (checked)", end_difference))
    extras = {
        "integrand": integrand,
        "bias": bias,
        "variance": variance,
        "at_zero": at_zero,
        "integrand_limit": limit_integrand,
        "integrand_in_decay": _in_decay(integrand, eig),
        "spectral_integral": integral,
    }
    return Derivation(expr, steps=steps, extras=extras)


@register(
    "ft.transferability_time",
    title="Transferability of one-layer fine-tuning along gradient flow, T_ft(t) = R_sc(t) - R_ft(t)",
    family=_FAMILY,
    params=[parameters.gamma, parameters.theta, parameters.t],
    regime="n, d -> oo with gamma = n/d; L = 1; scratch by gradient flow from beta = 0 and fine-tuning "
    "by gradient flow from beta_s, on the same target data, compared at equal time t",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="the factorisation is symbolic; the remaining MP integral (the noiseless scratch "
                  "curve) is numerical, as for scratch.risk_time"),
    reference=_ADVANI_SAXE + "; model of " + _PAPER,
    notes=_CONVENTIONS + (
        "Per eigen-direction, with the decay factor E = exp(-2 x t), scratch has E^2 + (sigma^2/gamma) "
        "(1 - E)^2/x and fine-tuning 2 (1 - cos theta) E^2 + the same variance: the difference factors into "
        "(2 cos(theta) - 1) E^2 (sp.factor), and in the null space (E = 1) into 2 cos(theta) - 1. So "
        "T_ft(t) = (2 cos(theta) - 1) [(1 - gamma)_+ + int exp(-4 x t) rho(x) dx] = (2 cos(theta) - 1) "
        "R_sc(t; sigma = 0): it does not depend on the label noise, has the sign of 2 cos(theta) - 1 at "
        "every time (the boundary theta = pi/3 holds along the whole flow), and relaxes as the noiseless "
        "scratch bias. The factorisation holds for any per-mode factor E, so for gradient descent too "
        "(E = (1 - 2 eta x)^k after k steps). The integral is named I_bias(gamma, t) "
        "(extras['spectral_integral']), not compiled by the registry (evaluable = False); "
        "featfate_sym.transfer_curves.ft_transferability_time evaluates it. t = 0: 2 cos(theta) - 1; "
        "t -> oo: (1 - gamma)_+ (2 cos(theta) - 1) = ft.transferability_exact at L = 1. Extras: "
        "difference_in_decay, factor, spectral_integral."
    ),
    singular="none: bounded by |2 cos(theta) - 1| at every t",
    evaluable=False,
)
def transferability_time_fine_tuning() -> Derivation:
    ex, eig, angle = _scratch_pieces()
    ft = get("ft.risk_time")
    scratch_in_decay = _in_decay(ex["integrand"], eig)
    difference = sp.factor(sp.expand(scratch_in_decay - ft.extras["integrand_in_decay"]))
    zero_difference = sp.factor(ex["at_zero"] - ft.extras["at_zero"])
    factor = sp.factor(zero_difference)
    if not is_zero(difference - factor * _DECAY**2) or difference.has(sigma):
        raise ArithmeticError("the per-mode difference is not (2 cos theta - 1) E^2")
    noiseless = sp.simplify(ex["integrand"].subs(sigma, 0) - sp.exp(-4 * eig * t))
    if noiseless != 0:
        raise ArithmeticError("the noiseless scratch integrand is not exp(-4 x t)")
    in_phi = (sp.exp(-4 * eig * t).subs(eig, ex["eigenvalue_of_phi"]) * ex["weight"])
    integral = sp.Integral(in_phi, (angle, 0, sp.pi))
    named = sp.Function("I_bias")(gamma, t)
    expr = factor * (ex["atom"] + named)
    steps = [
        Step("scratch.risk_time's integrand in the decay factor E = exp(-2 x t)", scratch_in_decay),
        Step("ft.risk_time's integrand in E", ft.extras["integrand_in_decay"]),
        Step("their difference, factored (sp.factor): the variance cancels", difference),
        Step("the null-space difference h_sc(0+) - h_ft(0+)", zero_difference),
        Step("the noiseless scratch integrand is exp(-4 x t) = E^2 (checked), so the bracket is "
             "R_sc(t; sigma = 0): I_bias = int_0^pi exp(-4 x(phi) t) w(phi) dphi (numerical)",
             sp.Eq(named, integral)),
        Step("T_ft(t) = (2 cos theta - 1) (atom + I_bias)", expr),
    ]
    extras = {"difference_in_decay": difference, "factor": factor, "spectral_integral": integral}
    return Derivation(expr, steps=steps, extras=extras)


def _readout_flow():
    """The one-feature fit ``beta = a beta_s`` along its flow, finite ``n`` then ``n -> oo``,
    and its gradient-descent recursion (``sp.rsolve``)."""
    coef = sp.Function("a")
    gram_sym, cross_sym = sp.symbols("g_n h_n", positive=True)
    # the loss (1/n)|X (a beta_s) - y|^2 = a^2 g - 2 a h + const, g = beta_s^T Sxx beta_s,
    # h = beta_s^T Sxy: its a-gradient drives the flow
    loss = _COEF**2 * gram_sym - 2 * _COEF * cross_sym
    rate = -sp.diff(loss, _COEF)
    ode = sp.Eq(coef(t).diff(t), rate.subs(_COEF, coef(t)))
    finite = sp.dsolve(ode, coef(t), ics={coef(0): 1}).rhs
    # g = z.z/n = 1 + u_g/sqrt(n); h = z.y/n = cos(theta) g + (sin(theta) u_perp + sigma u_eps)/sqrt(n)
    gram = 1 + _FLUCT_G / sp.sqrt(n)
    cross = sp.cos(theta) * gram + (sp.sin(theta) * _FLUCT_PERP + sigma * _FLUCT_EPS) / sp.sqrt(n)
    finite_n = finite.subs({gram_sym: gram, cross_sym: cross})
    limit = sp.limit(finite_n, n, sp.oo)
    # the coefficient as its end value plus a decaying shift (no exp(+t) factors: they overflow)
    shift = sp.factor(sp.expand(limit - sp.cos(theta)))
    limit = sp.cos(theta) + shift
    # |a beta_s - beta_t|^2 with |beta_s| = |beta_t| = 1, beta_s.beta_t = cos(theta), completed
    # in the square (a - cos(theta))^2 + sin^2(theta)
    risk_of_a = _COEF**2 - 2 * _COEF * sp.cos(theta) + 1
    completed = (_COEF - sp.cos(theta)) ** 2 + sp.sin(theta) ** 2
    if not is_zero(sp.expand(risk_of_a - completed)):
        raise ArithmeticError("the completed square differs from the risk")
    if not is_zero(limit.subs(t, 0) - 1) or shift.has(sp.exp(2 * t)) or shift.has(sp.exp(4 * t)):
        raise ArithmeticError("the coefficient does not start at 1 or grows")
    risk = completed.subs(_COEF, limit)
    # gradient descent on a: a_{k+1} = a_k - eta dloss/da at the limiting moments
    seq = sp.Function("a_seq")
    recursion = seq(_STEPS + 1) - seq(_STEPS) - eta * rate.subs(
        {_COEF: seq(_STEPS), gram_sym: 1, cross_sym: sp.cos(theta)})
    discrete = sp.rsolve(recursion, seq(_STEPS), {seq(0): 1})
    discrete = sp.cos(theta) + sp.factor(sp.expand(discrete - sp.cos(theta)))
    risk_gd = completed.subs(_COEF, discrete)
    if not is_zero(risk_gd.subs(_STEPS, 0) - risk.subs(t, 0)):
        raise ArithmeticError("gradient descent does not start at the flow's risk")
    steps = [
        Step("frozen balanced features: beta = W_<L W_L with W_<L W_<L^T = |beta_s|^(2(L-1)/L) P_s = P_s "
             "for unit beta_s, so the readout's flow moves beta = a beta_s with the same rate at every "
             "depth (L = 1: the one-feature model beta = a beta_s); the loss in a, with g = beta_s^T Sxx "
             "beta_s and h = beta_s^T Sxy", loss),
        Step("flow of a (pretrained readout: a(0) = 1)", ode),
        Step("sp.dsolve", sp.Eq(coef(t), finite)),
        Step("sample moments as means plus O(1/sqrt(n)) fluctuations (central limit theorem: u_g, u_perp, "
             "u_eps bounded in probability)", finite_n),
        Step("n -> oo (sp.limit): one coefficient fitted on n -> oo samples, the fluctuations vanish; "
             "written as cos(theta) plus its decaying shift", limit),
        Step("risk |a beta_s - beta_t|^2 = a^2 - 2 a cos(theta) + 1 = (a - cos theta)^2 + sin^2 theta "
             "(checked), at a(t)", risk),
        Step("gradient descent on a at the limiting moments, a_{k+1} = a_k - eta dloss/da (sp.rsolve "
             "from a_0 = 1) and its risk", sp.Tuple(discrete, risk_gd)),
    ]
    return limit, risk, discrete, risk_gd, steps


@register(
    "lt.risk_time",
    title="Risk along gradient flow of linear transfer's one-feature readout (time course)",
    family=_FAMILY,
    params=[parameters.theta, parameters.t],
    regime="n -> oo (any gamma = n/d in the proportional limit; the readout has one parameter); frozen "
    "balanced rank-one pretrained features of unit |beta_s|, any depth L; the readout trained by gradient "
    "flow on the empirical target loss from its pretrained value",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference="model of " + _PAPER + ", Thm 3.7 (its end point)",
    notes=_CONVENTIONS + (
        "The limit used: n -> oo at fixed t, where the frozen feature's sample moments beta_s^T Sxx "
        "beta_s -> 1 and beta_s^T Sxy -> cos(theta) (law of large numbers), so that the label noise and "
        "gamma drop out; at finite n the corrections are O(1/n) (lt.risk_finite at t = oo). The readout "
        "starts at its pretrained value (the end-to-end vector at beta_s, risk 2(1 - cos theta), as "
        "fine-tuning), and a(t) = cos(theta) + (1 - cos(theta)) exp(-2t): the frozen features of a "
        "balanced network with unit |beta_s| have W_<L W_<L^T = P_s, so the curve does not depend on L. "
        "t = 0: 2(1 - cos theta); t -> oo: sin^2(theta) = lt.risk at lam = 0. Extras: coefficient "
        "(a(t)), coefficient_gd and risk_gd (gradient descent after k_steps steps of size eta, sp.rsolve)."
    ),
    special_cases=[
        SpecialCase("t = 0: the pretrained risk 2(1 - cos theta)", 2 - 2 * sp.cos(theta), {t: 0}),
        SpecialCase("t -> oo: lt.risk at lam = 0", sp.sin(theta) ** 2, {}, (t, sp.oo, "-")),
        SpecialCase("same task: the readout is already right, risk 0", sp.Integer(0), {theta: 0}),
    ],
    singular="none: bounded by 2(1 - cos theta)",
)
def risk_time_linear_transfer() -> Derivation:
    coefficient, risk, discrete, risk_gd, steps = _readout_flow()
    end = sp.limit(risk, t, sp.oo)
    lam0 = get("lt.risk").expr.subs(lam, 0)
    if not is_zero(end - lam0):
        raise ArithmeticError("the t -> oo limit is not lt.risk at lam = 0")
    steps.append(Step("t -> oo (sp.limit): lt.risk at lam = 0 (checked)", end))
    extras = {"coefficient": coefficient, "coefficient_gd": discrete, "risk_gd": risk_gd}
    return Derivation(risk, steps=steps, extras=extras)


@register(
    "lt.transferability_time",
    title="Transferability of linear transfer along gradient flow, T_lt(t) = R_sc(t) - R_lt(t)",
    family=_FAMILY,
    params=[parameters.gamma, parameters.theta, parameters.sigma, parameters.t],
    regime="n, d -> oo with gamma = n/d; L = 1 scratch by gradient flow from beta = 0 (depth does not "
    "enter the linear-transfer curve); linear transfer's readout by gradient flow from its pretrained "
    "value; equal time t",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="the scratch part is scratch.risk_time, whose MP integral is numerical"),
    reference=_ADVANI_SAXE + "; model of " + _PAPER,
    notes=_CONVENTIONS + (
        "scratch.risk_time minus lt.risk_time. The scratch part names its MP integral I_MP, so the entry "
        "is not compiled by the registry (evaluable = False); featfate_sym.transfer_curves."
        "lt_transferability_time evaluates it. t = 0: 1 - 2(1 - cos theta) = 2 cos(theta) - 1 (both "
        "protocols start where fine-tuning does); t -> oo: lt.transferability at lam = 0. Linear transfer "
        "relaxes at rate 4 (a single mode of curvature 2), scratch over the whole MP spectrum."
    ),
    singular="gamma = 1 with sigma > 0: finite at every finite t, diverging as t -> oo",
    evaluable=False,
)
def transferability_time_linear_transfer() -> Derivation:
    scratch = get("scratch.risk_time").expr
    lt = get("lt.risk_time").expr
    expr = scratch - lt
    at_zero = sp.simplify(lt.subs(t, 0))
    steps = [
        Step("scratch.risk_time", scratch),
        Step("lt.risk_time", lt),
        Step("T_lt(t) = R_sc(t) - R_lt(t)", expr),
        Step("R_lt(0) (the pretrained risk)", at_zero),
    ]
    return Derivation(expr, steps=steps)
