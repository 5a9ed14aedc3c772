"""Learning curves: the risk along gradient flow, by quadrature of a derived integrand.

``scratch.risk_time`` (:mod:`featfate_sym.theory.finite_step`) derives the risk of linear
least squares trained by gradient flow from ``beta = 0`` (loss ``(1/n)|X beta - y|^2``,
proportional limit ``n = gamma d``) as an atom plus a spectral integral against the
Marchenko–Pastur law, which SymPy does not close.  This module evaluates that integral
numerically from the registered pieces -- nothing here is typed in:

    ``R(t) = (1 - gamma)_+ h(0+) + int_0^pi [bias(x) + sigma^2 variance(x)] w(phi) dphi``,
    ``x = x(phi)`` (the extras ``bias``, ``variance``, ``at_zero``, ``weight``,
    ``eigenvalue_of_phi``, ``atom``; ``integrand_limit`` for ``t = oo``).

Float64: the pieces are compiled with ``lambdify(modules="numpy")`` after the rewrite of
:func:`featfate_sym.compiled.stabilise` (``(1 - e^{-2xt})^2`` as ``expm1(-2xt)^2``) and
integrated by ``scipy.integrate.quad`` (relative tolerance 1e-11; the substitution makes
the integrand smooth on ``[0, pi]``).  :func:`risk_time_mp` evaluates the registered
expression itself (its ``Integral``) by ``mpmath.quad`` at a chosen precision: the
reference the tests compare the float64 values with.

Full-batch gradient descent at a fixed step: :func:`risk_gd` is the same spectral integral
with the flow's per-mode factor ``exp(-2 x t)`` replaced by the solution ``(1 - 2 eta x)^k``
of the one-step recursion ``beta_i <- beta_i - 2 eta x (beta_i - beta_ls,i)`` after ``k``
steps (substituted by SymPy into the registered ``bias`` and ``variance``): the discrete
learning curve, and with it the gap ``risk_gd - risk_time`` at ``t = eta k``.

Early stopping: :func:`early_stopped_risk` is ``min_t R(t)`` over the flow time and its
minimiser, by ``scipy.optimize.minimize_scalar`` (Brent) in ``log t`` on a bracket found
on a grid; a minimiser that does not converge, or that the grid beats, raises.

Fine-tuning at a finite step (``ft.transferability_gd``): :func:`fine_tuning_drift` solves
the registered reduced flow (``rate_p1``, ``rate_p2``, ``rate_varsigma``, lambdified) with
``scipy.integrate.solve_ivp`` and integrates the registered drift rate along it;
:func:`transferability_gd_slope` multiplies by the derived ``dT/dc dc/dDelta``;
:func:`transferability_gd` is ``T_exact + eta`` times that slope.
:func:`reduced_fine_tuning` iterates the exact GD map of the same reduced coordinates
(finite ``eta``, no expansion), the independent reference of the first-order result and,
with a replicate's own geometry, of the full simulator.

Minibatch SGD (``ft.transferability_sgd``): :func:`fine_tuning_noise_integral` integrates
the per-eigenvalue moment equations of the empirical-loss flow (Marchenko-Pastur nodes)
and along them the noise integral ``I_noise = int varsigma^(2L-2) l dt``;
:func:`transferability_sgd_slope` multiplies by the derived sensitivity and the sampling
factor averaged over an epoch's actual batch sizes; :func:`transferability_sgd` is
``T_exact`` plus the GD and minibatch terms at the given step.
"""

from __future__ import annotations

import functools
import math
import typing

import mpmath
import numpy as np
import sympy as sp
from scipy import integrate, optimize

__all__ = ["risk_time", "risk_time_mp", "risk_gd", "early_stopped_risk", "EarlyStop", "fine_tuning_drift", "transferability_gd_slope", "transferability_gd",
           "reduced_fine_tuning", "transferability_reduced_gd", "NoiseIntegral", "fine_tuning_noise_integral",
           "transferability_sgd_slope", "transferability_sgd"]


def _check(gamma, sigma, t):
    for name, value, lower, open_ in (("gamma", gamma, 0.0, True), ("sigma", sigma, 0.0, False),
                                      ("t", t, 0.0, False)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real number (got {value!r})") from None
        if math.isnan(value) or value < lower or (open_ and value == lower) or (
                name != "t" and math.isinf(value)):
            domain = "(0, inf)" if open_ else ("[0, inf]" if name == "t" else "[0, inf)")
            raise ValueError(f"parameter {name} must be in {domain} (got {value!r})")
    return float(gamma), float(sigma), float(t)


@functools.lru_cache(maxsize=1)
def _compiled():
    from featfate_sym import registry
    from featfate_sym.compiled import stabilise
    from featfate_sym.symbols import gamma, sigma, t

    result = registry.get("scratch.risk_time")
    ex = result.extras
    angle = next(iter(ex["weight"].free_symbols - {gamma}))
    eig = next(iter(ex["variance"].free_symbols - {gamma, t}))
    x_of_phi = ex["eigenvalue_of_phi"]

    def on_angle(expr, *args):
        return sp.lambdify([angle, *args], stabilise(expr.subs(eig, x_of_phi) * ex["weight"]), modules="numpy")

    return {
        "bias": on_angle(ex["bias"], gamma, t),
        "variance": on_angle(ex["variance"], gamma, t),
        "variance_limit": on_angle(ex["integrand_limit"].subs(sigma, 1), gamma),
        "at_zero": float(ex["at_zero"]),
        "atom": sp.lambdify([gamma], ex["atom"], modules="numpy"),
    }


def _quad(f, *args) -> float:
    value, _ = integrate.quad(f, 0.0, math.pi, args=args, epsabs=0.0, epsrel=1e-11, limit=400)
    return float(value)


def risk_time(gamma, sigma, t) -> float:
    """``E|beta(t) - beta_t|^2`` for gradient flow from zero at time ``t`` (``t = inf``
    allowed: the end point, ``scratch.risk``), ``n/d -> gamma``, label noise ``sigma``.
    Bad arguments raise ``ValueError`` naming the parameter."""
    gamma, sigma, t = _check(gamma, sigma, t)
    fns = _compiled()
    atom = float(fns["atom"](gamma)) * fns["at_zero"]
    if math.isinf(t):
        if sigma == 0:
            return atom
        if gamma == 1.0:
            return math.inf
        return atom + sigma**2 * _quad(fns["variance_limit"], gamma)
    with np.errstate(over="ignore", under="ignore"):
        bias = _quad(fns["bias"], gamma, t)
        variance = _quad(fns["variance"], gamma, t) if sigma > 0 else 0.0
    return atom + bias + sigma**2 * variance


def risk_time_mp(gamma, sigma, t, dps: int = 30) -> mpmath.mpf:
    """The registered expression of ``scratch.risk_time`` (its ``Integral`` by
    ``mpmath.quad``) at ``dps`` digits: the reference for :func:`risk_time`."""
    gamma_f, sigma_f, t_f = _check(gamma, sigma, t)
    if math.isinf(t_f):
        raise ValueError("risk_time_mp takes a finite t (use scratch.risk for t = oo)")
    from featfate_sym import registry

    result = registry.get("scratch.risk_time")
    named = next(iter(result.expr.atoms(sp.core.function.AppliedUndef)))
    full = result.expr.xreplace({named: result.extras["spectral_integral"]})
    f = sp.lambdify(list(result.symbols), full, modules="mpmath")
    with mpmath.workdps(dps):
        return +f(*[mpmath.mpf(str(v)) for v in (gamma, sigma, t)])


@functools.lru_cache(maxsize=1)
def _compiled_gd():
    """The registered bias and variance written in the per-mode factor ``E = exp(-2 x t)``
    (``bias = E^2``) and ``D = 1 - E`` (``variance = D^2/(gamma x)``), lambdified on the
    angle with ``D`` an argument, so that ``D = -expm1(k log1p(-2 eta x))`` is formed
    without cancellation at small ``x``."""
    from featfate_sym import registry
    from featfate_sym.symbols import gamma, t

    ex = registry.get("scratch.risk_time").extras
    angle = next(iter(ex["weight"].free_symbols - {gamma}))
    eig = next(iter(ex["variance"].free_symbols - {gamma, t}))
    factor, gap = sp.Symbol("E_mode", positive=True), sp.Symbol("D_mode", positive=True)

    def in_factor(expr):
        out = sp.expand(expr).subs(sp.exp(-4 * eig * t), factor**2).subs(sp.exp(-2 * eig * t), factor)
        out = sp.factor(out.subs(factor, 1 - gap))
        if out.has(t):
            raise ArithmeticError("the integrand is not a function of the per-mode factor exp(-2 x t)")
        return out

    bias, variance = in_factor(ex["bias"]), in_factor(ex["variance"])
    x_of_phi = ex["eigenvalue_of_phi"]
    weight = ex["weight"]
    return (sp.lambdify([angle, gamma, gap], (bias * weight).subs(eig, x_of_phi), modules="numpy"),
            sp.lambdify([angle, gamma, gap], (variance * weight).subs(eig, x_of_phi), modules="numpy"),
            sp.lambdify([angle, gamma], x_of_phi, modules="numpy"))


def risk_gd(gamma, sigma, steps, eta) -> float:
    """Risk of full-batch gradient descent from ``beta = 0`` after ``steps`` steps of size
    ``eta`` (loss ``(1/n)|X beta - y|^2``, L = 1, proportional limit): ``scratch.risk_time``'s
    spectral integral with ``exp(-2 x t)`` replaced by ``(1 - 2 eta x)^steps``.  Needs
    ``eta < 1/x_max`` (``x_max = (1 + gamma^(-1/2))^2`` the top of the MP support: every
    mode contracts), else ``ValueError``.  ``steps -> oo`` gives ``scratch.risk``; ``eta ->
    0`` at ``eta steps = t`` gives ``risk_time(gamma, sigma, t)``."""
    gamma, sigma, _ = _check(gamma, sigma, 0.0)
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 0:
        raise ValueError(f"steps must be an integer >= 0 (got {steps!r})")
    eta = float(eta)
    top = (1 + gamma ** -0.5) ** 2
    if not (0 < eta < 1 / top):
        raise ValueError(f"parameter eta must be in (0, 1/x_max) = (0, {1 / top:.6g}) at gamma = {gamma:g} (got {eta!r})")
    bias_f, var_f, x_f = _compiled_gd()
    fns = _compiled()
    atom = float(fns["atom"](gamma)) * fns["at_zero"]
    k = int(steps)

    def gap(phi):
        return -np.expm1(k * np.log1p(-2 * eta * x_f(phi, gamma)))

    bias = _quad(lambda phi: bias_f(phi, gamma, gap(phi)))
    variance = _quad(lambda phi: var_f(phi, gamma, gap(phi))) if sigma > 0 else 0.0
    return atom + bias + sigma**2 * variance


# -- early stopping -------------------------------------------------------------------------
class EarlyStop(typing.NamedTuple):
    """``min_t R(t)`` of gradient flow from zero and the time ``t*`` where it is reached
    (``inf`` when ``R`` never stops decreasing, as without noise)."""

    risk: float
    time: float


def early_stopped_risk(gamma, sigma, *, xtol: float = 1e-9) -> EarlyStop:
    """The optimally stopped risk of ``scratch.risk_time``: ``min_{t >= 0} R(t)``, ``n/d ->
    gamma``, noise ``sigma`` (L = 1, gradient flow of ``(1/n)|X beta - y|^2`` from 0).

    ``sigma = 0``: every eigen-direction's error ``exp(-4 x t)`` decreases, so the minimum is
    the end point ``R(oo) = (1 - gamma)_+`` (``time = inf``).  ``sigma > 0``: at large ``t``
    the variance rises like ``e^(-2 x t)`` against the bias' ``e^(-4 x t)``, so the minimum is
    at a finite time: a grid in ``log t`` from ``1e-3`` (25 points to ``1e3``, extended while
    the smallest value is at its end, up to ``1e12``) brackets it,
    Brent's method (``minimize_scalar``, ``xtol`` in ``log t``) refines it; failure to
    converge, or a refined value above the best grid value, raises ``ArithmeticError``.
    """
    gamma, sigma, _ = _check(gamma, sigma, 0.0)
    if sigma == 0:
        return EarlyStop(risk_time(gamma, 0.0, math.inf), math.inf)
    # a grid over [1e-3, 1e3] (ratio 1.78), extended by decades while the smallest value
    # sits at its right end (small noise stops late)
    logs = list(np.linspace(math.log(1e-3), math.log(1e3), 25))
    values = [risk_time(gamma, sigma, math.exp(u)) for u in logs]
    while int(np.argmin(values)) == len(logs) - 1:
        if logs[-1] > math.log(1e12):
            raise ArithmeticError(f"no interior minimum of R(t) below t = 1e12 at gamma = {gamma}, sigma = {sigma}")
        logs.append(logs[-1] + (logs[1] - logs[0]))
        values.append(risk_time(gamma, sigma, math.exp(logs[-1])))
    i = int(np.argmin(values))
    if i == 0:
        raise ArithmeticError(f"the minimum of R(t) lies below t = 1e-3 at gamma = {gamma}, sigma = {sigma}")
    res = optimize.minimize_scalar(lambda u: risk_time(gamma, sigma, math.exp(u)),
                                   bracket=(logs[i - 1], logs[i], logs[i + 1]), method="brent",
                                   options={"xtol": xtol, "maxiter": 500})
    if not res.success or not res.fun <= values[i] * (1 + 1e-14):
        raise ArithmeticError(f"early-stopping minimiser did not converge at gamma = {gamma}, sigma = {sigma}: "
                              f"{res.message}")
    return EarlyStop(float(res.fun), float(math.exp(res.x)))


# -- fine-tuning at a finite step (ft.transferability_gd) --------------------------------------
@functools.lru_cache(maxsize=1)
def _fine_tuning():
    from featfate_sym import registry
    from featfate_sym.symbols import L, b, c, gamma, sigma, theta

    ex = registry.get("ft.transferability_gd").extras
    names = {s.name: s for e in (ex["rate_p1"], ex["rate_varsigma"], ex["drift_rate"], ex["rate_p2"])
             for s in e.free_symbols}
    p1, p2, vs, b1, b2 = (names[k] for k in ("p_1", "p_2", "varsigma", "b_1", "b_2"))
    rates = sp.lambdify([p1, p2, vs, L, b1, b2],
                        [ex["rate_p1"], ex["rate_p2"], ex["rate_varsigma"], ex["drift_rate"]], modules="numpy")
    geometry = sp.lambdify([gamma, theta, sigma],
                           [ex["initial_p1"], ex["b_1"], ex["b_2"], ex["null_norm_sq"], ex["scratch_norm_sq"]],
                           modules="numpy")
    factor = sp.lambdify([c, L, gamma, theta, b], ex["slope_factor"], modules="numpy")
    t_of_c = sp.lambdify([c, L, gamma, theta], ex["transferability_of_c"], modules="numpy")
    return rates, geometry, factor, t_of_c


def _check_ft(gamma, theta, sigma, depth):
    gamma, sigma, _ = _check(gamma, sigma, 0.0)
    if not gamma < 1:
        raise ValueError(f"parameter gamma must be in (0, 1) for fine-tuning with a null space (got {gamma!r})")
    theta = float(theta)
    if not 0 <= theta <= math.pi:
        raise ValueError(f"parameter theta must be in [0, pi] (got {theta!r})")
    if isinstance(depth, bool) or not float(depth).is_integer() or depth < 1:
        raise ValueError(f"parameter L must be an integer >= 1 (got {depth!r})")
    return gamma, theta, sigma, int(depth)


def fine_tuning_drift(gamma, theta, sigma, depth, *, rtol: float = 1e-11):
    """The drift integral ``int_0^oo f dt`` of ``ft.transferability_gd`` along the reduced
    balanced flow (``scipy.integrate.solve_ivp``, DOP853), and the end scale ``c``
    (``varsigma(oo)``, the balanced root).  Returns ``(integral, c)``."""
    gamma, theta, sigma, depth = _check_ft(gamma, theta, sigma, depth)
    rates, geometry, _, _ = _fine_tuning()
    p1, b1, b2, _, _ = (float(v) for v in geometry(gamma, theta, sigma))

    def field(_, y):
        r = rates(y[0], y[1], y[2], depth, b1, b2)
        return [r[0], r[1], r[2], r[3]]

    state, time = [p1, 0.0, 1.0, 0.0], 0.0
    for _ in range(200):
        sol = integrate.solve_ivp(field, (time, time + 10.0), state, method="DOP853", rtol=rtol, atol=1e-15)
        if not sol.success:  # pragma: no cover
            raise ArithmeticError(f"the reduced flow failed: {sol.message}")
        state, time = list(sol.y[:, -1]), time + 10.0
        speed = sum(v * v for v in field(time, state)[:3])
        if speed < 1e-18:  # f is quadratic in the rates: what is left of the integral is ~ speed/rate
            return float(state[3]), float(state[2])
    raise ArithmeticError("the reduced flow did not converge")  # pragma: no cover


def transferability_gd_slope(gamma, theta, sigma, depth) -> float:
    """``dT_ft/deta`` at ``eta = 0`` (``ft.transferability_gd``, whitened loss)."""
    gamma, theta, sigma, depth = _check_ft(gamma, theta, sigma, depth)
    if depth == 1:
        return 0.0
    _, geometry, factor, _ = _fine_tuning()
    integral, c = fine_tuning_drift(gamma, theta, sigma, depth)
    b_sq = float(geometry(gamma, theta, sigma)[4])
    return float(factor(c, depth, gamma, theta, b_sq)) * integral


def transferability_gd(gamma, theta, sigma, depth, eta) -> float:
    """``T_ft`` to first order in the step: ``T_exact + eta dT/deta`` (``ft.transferability_gd``)."""
    gamma, theta, sigma, depth = _check_ft(gamma, theta, sigma, depth)
    eta = float(eta)
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"parameter eta must be in (0, inf) (got {eta!r})")
    _, _, _, t_of_c = _fine_tuning()
    _, c = fine_tuning_drift(gamma, theta, sigma, depth)
    return float(t_of_c(c, depth, gamma, theta)) + eta * transferability_gd_slope(gamma, theta, sigma, depth)


def reduced_fine_tuning(p1, b1, b2, depth, eta, *, tol: float = 1e-22, max_steps: int = 1_000_000):
    """The exact gradient-descent map of fine-tuning on the whitened loss in the reduced
    coordinates of ``ft.transferability_gd`` (``p`` the row-space part of the first layer's
    column, ``varsigma`` the common scale of the deeper layers), from ``p = (p1, 0)``,
    ``varsigma = 1``, to convergence.  Returns the end scale ``varsigma`` (``c``; the
    null-space part of beta ends at ``c^(L-1) (I-P) beta_s``).  ``eta`` must be below the
    stability limit; divergence raises ``ArithmeticError``."""
    rates, _, _, _ = _fine_tuning()
    q1, q2, vs = float(p1), 0.0, 1.0
    for _ in range(max_steps):
        r = rates(q1, q2, vs, depth, b1, b2)
        prod = vs ** (depth - 1)
        if (prod * q1 - b1) ** 2 + (prod * q2 - b2) ** 2 < tol:
            return vs
        q1, q2, vs = q1 + eta * r[0], q2 + eta * r[1], vs + eta * r[2]
        if not (math.isfinite(vs) and vs > 0):
            raise ArithmeticError(f"the reduced GD map diverged at eta = {eta:g}")
    raise ArithmeticError("the reduced GD map did not converge")  # pragma: no cover


def transferability_reduced_gd(gamma, theta, sigma, depth, eta) -> float:
    """``T_ft`` at a finite step from the exact reduced map (whitened loss, concentrated
    geometry): the reference for the first-order result."""
    gamma, theta, sigma, depth = _check_ft(gamma, theta, sigma, depth)
    _, geometry, _, t_of_c = _fine_tuning()
    p1, b1, b2, _, _ = (float(v) for v in geometry(gamma, theta, sigma))
    c = reduced_fine_tuning(p1, b1, b2, depth, float(eta))
    return float(t_of_c(c, depth, gamma, theta))


# -- fine-tuning by minibatch SGD (ft.transferability_sgd) --------------------------------------
class NoiseIntegral(typing.NamedTuple):
    """Integrals along the proportional-limit flow of the empirical fine-tuning loss
    (``ft.transferability_sgd``): ``noise = int varsigma^(2L-2) l dt`` (the minibatch
    noise integral ``I_noise``), ``full_batch = int f_GD dt`` (the full-batch drift of the
    empirical loss, ``extras['full_batch_rate']``), and the end scale ``c``."""

    noise: float
    full_batch: float
    scale: float


@functools.lru_cache(maxsize=1)
def _sgd_pieces():
    from featfate_sym import registry
    from featfate_sym.symbols import L, c, gamma, sigma, theta

    result = registry.get("ft.transferability_sgd")
    ex = result.extras
    time_ex = registry.get("scratch.risk_time").extras
    weight, x_of_phi = time_ex["weight"], time_ex["eigenvalue_of_phi"]
    angle = next(iter(weight.free_symbols - {gamma}))
    names = {s.name: s for key in ("rate_A", "rate_C", "loss_of_x", "grad_sq_of_x", "vgrad_of_x", "B_of_x")
             for s in ex[key].free_symbols}
    s_l, a_m, c_m, b_m, x = (names[k] for k in ("s", "A_x", "C_x", "B_x", "x"))
    args = [x, s_l, a_m, c_m, b_m]
    modes = sp.lambdify(args, [ex["rate_A"], ex["rate_C"], ex["loss_of_x"], ex["grad_sq_of_x"], ex["vgrad_of_x"]],
                        modules="numpy")
    spectrum = sp.lambdify([angle, gamma], [x_of_phi, weight], modules="numpy")
    start = sp.lambdify([x, gamma, theta, sigma], [ex["initial_A"] + 0 * x, ex["initial_C"] + 0 * x, ex["B_of_x"]],
                        modules="numpy")
    factor = sp.lambdify([c, L, gamma, theta, sigma], ex["slope_factor"], modules="numpy")
    per_time = sp.lambdify([parameters_batch(), parameters_dim()], ex["noise_per_time"], modules="numpy")
    without = sp.lambdify([parameters_batch(), next(s for s in ex["without_replacement_factor"].free_symbols
                                                   if s.name == "n_samples")],
                          ex["without_replacement_factor"], modules="numpy")
    return modes, spectrum, start, factor, per_time, without


def parameters_batch():
    from featfate_sym import parameters

    return parameters.batch.symbol


def parameters_dim():
    from featfate_sym import parameters

    return parameters.d.symbol


def fine_tuning_noise_integral(gamma, theta, sigma, depth, *, nodes: int = 64, rtol: float = 1e-10) -> NoiseIntegral:
    """``I_noise`` and the full-batch drift integral of ``ft.transferability_sgd`` along the
    flow of the empirical loss in the proportional limit: the registered moment ODEs
    (``rate_A``, ``rate_C`` per eigenvalue ``x`` of ``Sxx``) on ``nodes`` Gauss-Legendre nodes
    in the angle ``phi`` of the MP substitution (``scratch.risk_time``'s weight and
    eigenvalue), with ``dvarsigma/dt = -varsigma^(L-2) int vgrad rho``, by
    ``solve_ivp`` (DOP853) until the flow stops.  The end scale is checked by the tests
    against the balanced root of ``ft.transferability_exact`` (the flow conserves Delta)."""
    gamma, theta, sigma, depth = _check_ft(gamma, theta, sigma, depth)
    if isinstance(nodes, bool) or not float(nodes).is_integer() or nodes < 8:
        raise ValueError(f"nodes must be an integer >= 8 (got {nodes!r})")
    return _noise_integral(gamma, theta, sigma, depth, int(nodes), float(rtol))


@functools.lru_cache(maxsize=256)
def _noise_integral(gamma, theta, sigma, depth, nodes, rtol) -> NoiseIntegral:
    modes, spectrum, start, _, _, _ = _sgd_pieces()
    u, w = np.polynomial.legendre.leggauss(int(nodes))
    phi = (u + 1) * math.pi / 2
    x, rho = (np.asarray(v, dtype=float) for v in spectrum(phi, gamma))
    rho = rho * w * math.pi / 2
    a0, c0, b_x = (np.broadcast_to(np.asarray(v, dtype=float), x.shape).copy() for v in start(x, gamma, theta, sigma))
    k = x.size

    def field(_, y):
        a_m, c_m, vs = y[:k], y[k:2 * k], y[2 * k]
        s = vs ** (depth - 1)
        ra, rc, loss, grad2, vgrad = modes(x, s, a_m, c_m, b_x)
        vgrad_total = float(rho @ vgrad)
        rate_vs = -vs ** (depth - 2) * vgrad_total
        noise = vs ** (2 * depth - 2) * float(rho @ loss)
        full = vs ** (2 * depth - 2) * float(rho @ grad2) - vs ** (2 * depth - 4) * vgrad_total**2
        return np.concatenate([ra, rc, [rate_vs, noise, full]])

    state, time = np.concatenate([a0, c0, [1.0, 0.0, 0.0]]), 0.0
    for _ in range(400):
        sol = integrate.solve_ivp(field, (time, time + 5.0), state, method="DOP853", rtol=rtol, atol=1e-14)
        if not sol.success:
            raise ArithmeticError(f"the proportional-limit fine-tuning flow failed: {sol.message}")
        state, time = sol.y[:, -1], time + 5.0
        rate = field(time, state)
        # the integrands decay like the loss; stop when what is left is below the tolerance
        if abs(rate[2 * k + 1]) < 1e-14 and abs(rate[2 * k]) < 1e-14:
            return NoiseIntegral(float(state[2 * k + 1]), float(state[2 * k + 2]), float(state[2 * k]))
    raise ArithmeticError("the proportional-limit fine-tuning flow did not converge")


def _check_sgd(eta, batch, dim, replacement):
    eta = float(eta)
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"parameter eta must be in (0, inf) (got {eta!r})")
    for name, value in (("B", batch), ("d", dim)):
        if isinstance(value, bool) or not float(value).is_integer() or value < 1:
            raise ValueError(f"parameter {name} must be an integer >= 1 (got {value!r})")
    if not isinstance(replacement, bool):
        raise ValueError(f"replacement must be True or False (got {replacement!r})")
    return eta, int(batch), int(dim)


def transferability_sgd_slope(gamma, theta, sigma, depth, batch, dim, *, replacement: bool = True,
                              full_batch: bool = False) -> float:
    """``dT_ft/deta`` at ``eta = 0`` for minibatch SGD on the empirical loss
    (``ft.transferability_sgd``): ``(4 d/B) dT/dDelta I_noise``, with ``1/B`` replaced,
    when ``replacement`` is false, by the without-replacement factor ``(n - b)/(b (n - 1))``
    (``n = round(gamma d)``) averaged over the batch sizes ``b`` of an epoch of the simulator
    (``B``, and ``n mod B`` for the last batch when ``B`` does not divide ``n``); ``full_batch`` adds the full-batch drift of the empirical loss
    (``O(1)``, i.e. ``O(1/d)`` beside the noise term at ``eta = O(1/d)``)."""
    gamma, theta, sigma, depth = _check_ft(gamma, theta, sigma, depth)
    _, batch, dim = _check_sgd(1.0, batch, dim, replacement)
    n = int(round(gamma * dim))
    if not 1 <= batch <= n:
        raise ValueError(f"parameter B must be in [1, n] = [1, {n}] (got {batch})")
    if depth == 1:
        return 0.0
    _, _, _, factor, per_time, without = _sgd_pieces()
    integral = fine_tuning_noise_integral(gamma, theta, sigma, depth)
    drift = float(per_time(batch, dim)) * integral.noise
    if not replacement:
        # the simulator's epoch: n // B batches of B rows and one of n mod B when B does not
        # divide n; each is a uniform subset of its size, so the per-step factor is the mean
        # of the registered one over the epoch's batches (replacing the 1/B of per_time)
        sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
        mean_factor = 0.0 if n == 1 else sum(float(without(b, n)) for b in sizes) / len(sizes)
        drift *= batch * mean_factor
    if full_batch:
        drift += integral.full_batch
    return float(factor(integral.scale, depth, gamma, theta, sigma)) * drift


def transferability_sgd(gamma, theta, sigma, depth, eta, batch, dim, *, replacement: bool = True,
                        full_batch: bool = False) -> float:
    """``T_ft`` after minibatch SGD to first order: ``T_exact + eta`` times
    :func:`transferability_sgd_slope` (``ft.transferability_sgd``; proportional limit,
    ``eta d/B << 1``)."""
    eta, batch, dim = _check_sgd(eta, batch, dim, replacement)
    slope = transferability_sgd_slope(gamma, theta, sigma, depth, batch, dim, replacement=replacement,
                                      full_batch=full_batch)
    _, _, _, t_of_c = _fine_tuning()
    _, c = fine_tuning_drift(gamma, theta, sigma, depth)
    return float(t_of_c(c, depth, gamma, theta)) + eta * slope
