"""Transfer curves: risk and transferability of the three protocols along training, L = 1.

The registered results of the family ``time_course`` (:mod:`featfate_sym.theory.time_course`)
leave one Marchenko-Pastur integral each, which SymPy does not close; this module
evaluates them from the registered pieces, as :mod:`featfate_sym.learning_curves` does for
``scratch.risk_time`` -- nothing here is typed in:

- ``ft.risk_time``: ``(1 - gamma)_+ h_ft(0+) + int_0^pi [bias + sigma^2 variance](x(phi)) w(phi)
  dphi`` (extras ``at_zero``, ``bias``, ``variance``, ``integrand_limit`` and the MP weight of
  ``scratch.risk_time``), by ``scipy.integrate.quad`` (relative tolerance 1e-11) of the
  integrand after :func:`featfate_sym.compiled.stabilise`; :func:`ft_risk_time_mp` evaluates
  the registered ``Integral`` by ``mpmath.quad`` (the reference of the tests).
- ``ft.transferability_time``: ``(2 cos(theta) - 1) (atom + I_bias)``, ``I_bias`` by quadrature of
  its registered integrand; :func:`ft_transferability_time_mp` the mpmath reference.
- ``lt.risk_time`` is closed (the registry's compiled function); ``lt.transferability_time``
  is :func:`featfate_sym.learning_curves.risk_time` minus it.

Gradient descent at a fixed step ``eta`` (``t = eta k``): the derived per-mode difference of
``ft.transferability_time`` holds for any per-mode factor, so after ``k`` steps ``T_ft =
(2 cos(theta) - 1) R_sc^gd(k; sigma = 0)`` with :func:`featfate_sym.learning_curves.risk_gd`;
``lt.risk_time``'s extra ``risk_gd`` (``sp.rsolve``) is the readout's descent.  These are the
curves a simulation at that step is compared with (the flow is their ``eta -> 0`` limit).

Time to a fraction of the way: :func:`time_to_fraction` (a sampled curve, first crossing,
interpolated in ``log t``) and :func:`theory_time_to_fraction` (``scipy.optimize.brentq`` in
``log t`` on a bracket found on a grid; a curve that never crosses raises).
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import sympy as sp
from scipy import integrate, optimize

from featfate_sym import learning_curves

__all__ = [
    "ft_risk_time", "ft_risk_time_mp", "ft_transferability_time", "ft_transferability_time_mp",
    "lt_risk_time", "lt_transferability_time", "ft_risk_gd", "ft_transferability_gd", "lt_risk_gd",
    "time_to_fraction", "theory_time_to_fraction",
]


def _real(name, value, lower=None, upper=None, *, open_lower=False, allow_inf=False):
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name} must be a real number (got {value!r})") from None
    bad = math.isnan(out) or (math.isinf(out) and not allow_inf)
    if lower is not None and (out < lower or (open_lower and out == lower)):
        bad = True
    if upper is not None and out > upper:
        bad = True
    if bad:
        lo = "(" if open_lower else "["
        lo += "-inf" if lower is None else f"{lower:g}"
        hi = ("inf]" if allow_inf else "inf)") if upper is None else f"{upper:g}]"
        raise ValueError(f"parameter {name} must be in {lo}, {hi} (got {value!r})")
    return out


def _check(gamma, theta, sigma, t):
    return (_real("gamma", gamma, 0.0, open_lower=True), _real("theta", theta, 0.0, math.pi),
            _real("sigma", sigma, 0.0), _real("t", t, 0.0, allow_inf=True))


@functools.lru_cache(maxsize=1)
def _compiled():
    from featfate_sym import registry
    from featfate_sym.compiled import stabilise
    from featfate_sym.symbols import gamma, sigma, t, theta

    sc = registry.get("scratch.risk_time").extras
    ft = registry.get("ft.risk_time").extras
    tt = registry.get("ft.transferability_time")
    angle = next(iter(sc["weight"].free_symbols - {gamma}))
    eig = next(s for s in sc["variance"].free_symbols if s.name == "x")

    def on_angle(expr, *args):
        return sp.lambdify([angle, *args], stabilise(expr.subs(eig, sc["eigenvalue_of_phi"]) * sc["weight"]),
                           modules="numpy")

    (bias_integral,) = [f for f in tt.expr.atoms(sp.core.function.AppliedUndef)]
    bias_integrand = tt.extras["spectral_integral"].function
    return {
        "ft_bias": on_angle(ft["bias"], gamma, theta, t),
        "ft_variance": on_angle(ft["variance"], gamma, t),
        "ft_variance_limit": on_angle(ft["integrand_limit"].subs(sigma, 1), gamma),
        "ft_at_zero": sp.lambdify([theta], ft["at_zero"], modules="numpy"),
        "atom": sp.lambdify([gamma], sc["atom"], modules="numpy"),
        "bias_integral": sp.lambdify([angle, gamma, t], stabilise(bias_integrand), modules="numpy"),
        "factor": sp.lambdify([theta], tt.extras["factor"], modules="numpy"),
        "named_bias": bias_integral,
    }


def _quad(f, *args) -> float:
    value, _ = integrate.quad(f, 0.0, math.pi, args=args, epsabs=0.0, epsrel=1e-11, limit=400)
    return float(value)


def ft_risk_time(gamma, theta, sigma, t) -> float:
    """``E|beta(t) - beta_t|^2`` of one-layer fine-tuning by gradient flow from ``beta_s``
    (``ft.risk_time``; ``t = inf`` allowed: the end point), ``n/d -> gamma``."""
    gamma, theta, sigma, t = _check(gamma, theta, sigma, t)
    fns = _compiled()
    atom = float(fns["atom"](gamma)) * float(fns["ft_at_zero"](theta))
    if math.isinf(t):
        if sigma == 0:
            return atom
        if gamma == 1.0:
            return math.inf
        return atom + sigma**2 * _quad(fns["ft_variance_limit"], gamma)
    with np.errstate(under="ignore"):  # exp(-4 x t) underflows to 0 at large t
        bias = _quad(fns["ft_bias"], gamma, theta, t)
        variance = _quad(fns["ft_variance"], gamma, t) if sigma > 0 else 0.0
    return atom + bias + sigma**2 * variance


def _mp_value(key, values, dps):
    from featfate_sym import registry

    result = registry.get(key)
    (named,) = result.expr.atoms(sp.core.function.AppliedUndef)
    full = result.expr.xreplace({named: result.extras["spectral_integral"]})
    f = sp.lambdify(list(result.symbols), full, modules="mpmath")
    with mpmath.workdps(dps):
        return +f(*[mpmath.mpf(str(v)) for v in values])


def ft_risk_time_mp(gamma, theta, sigma, t, dps: int = 30) -> mpmath.mpf:
    """The registered expression of ``ft.risk_time`` (its ``Integral`` by ``mpmath.quad``) at
    ``dps`` digits; finite ``t`` only."""
    values = _check(gamma, theta, sigma, t)
    if math.isinf(values[3]):
        raise ValueError("parameter t must be finite for the mpmath reference (got inf)")
    return _mp_value("ft.risk_time", (gamma, theta, sigma, t), dps)


def ft_transferability_time(gamma, theta, t) -> float:
    """``T_ft(t) = R_sc(t) - R_ft(t)`` at L = 1 (``ft.transferability_time``); it does not depend
    on the label noise (derived).  ``t = inf``: ``(1 - gamma)_+ (2 cos(theta) - 1)``."""
    gamma, theta, _, t = _check(gamma, theta, 0.0, t)
    fns = _compiled()
    atom = float(fns["atom"](gamma))
    if math.isinf(t):
        return float(fns["factor"](theta)) * atom
    with np.errstate(under="ignore"):
        bracket = atom + _quad(fns["bias_integral"], gamma, t)
    return float(fns["factor"](theta)) * bracket


def ft_transferability_time_mp(gamma, theta, t, dps: int = 30) -> mpmath.mpf:
    """The registered expression of ``ft.transferability_time`` by ``mpmath.quad``."""
    values = _check(gamma, theta, 0.0, t)
    if math.isinf(values[3]):
        raise ValueError("parameter t must be finite for the mpmath reference (got inf)")
    return _mp_value("ft.transferability_time", (gamma, theta, t), dps)


def lt_risk_time(theta, t) -> float:
    """Linear transfer's one-feature readout along its flow (``lt.risk_time``, closed form)."""
    from featfate_sym import registry

    _, theta, _, t = _check(1.0, theta, 0.0, t)
    if math.isinf(t):  # the end point, lt.risk at lam = 0 (checked equal to the limit by the builder)
        return float(registry.get("lt.risk").evaluate(theta=theta, lam=0.0))
    return float(registry.get("lt.risk_time").evaluate(theta=theta, t=t))


def lt_transferability_time(gamma, theta, sigma, t) -> float:
    """``T_lt(t) = R_sc(t) - R_lt(t)`` (``lt.transferability_time``)."""
    gamma, theta, sigma, t = _check(gamma, theta, sigma, t)
    return learning_curves.risk_time(gamma, sigma, t) - lt_risk_time(theta, t)


# -- gradient descent at a fixed step -------------------------------------------------------
def ft_transferability_gd(gamma, theta, steps, eta) -> float:
    """``T_ft`` after ``steps`` full-batch gradient-descent steps of size ``eta`` on both
    protocols: ``(2 cos(theta) - 1) R_sc^gd(steps; sigma = 0)`` (the per-mode factorisation of
    ``ft.transferability_time`` with ``E = (1 - 2 eta x)^k``)."""
    gamma, theta, _, _ = _check(gamma, theta, 0.0, 0.0)
    return float(_compiled()["factor"](theta)) * learning_curves.risk_gd(gamma, 0.0, steps, eta)


def ft_risk_gd(gamma, theta, sigma, steps, eta) -> float:
    """One-layer fine-tuning's risk after ``steps`` descent steps: ``R_sc^gd - T_ft^gd``."""
    return learning_curves.risk_gd(gamma, sigma, steps, eta) - ft_transferability_gd(gamma, theta, steps, eta)


@functools.lru_cache(maxsize=1)
def _lt_gd():
    from featfate_sym import registry
    from featfate_sym.symbols import eta, theta

    expr = registry.get("lt.risk_time").extras["risk_gd"]
    (steps,) = [s for s in expr.free_symbols if s.name == "k_steps"]
    return sp.lambdify([theta, steps, eta], expr, modules="numpy")


def lt_risk_gd(theta, steps, eta) -> float:
    """Linear transfer's readout after ``steps`` descent steps of size ``eta`` (``0 < eta <
    1``: the readout's mode, of curvature 2, contracts), the extra ``risk_gd`` of ``lt.risk_time``."""
    _, theta, _, _ = _check(1.0, theta, 0.0, 0.0)
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 0:
        raise ValueError(f"parameter steps must be an integer >= 0 (got {steps!r})")
    eta = _real("eta", eta, 0.0, 1.0, open_lower=True)
    return float(_lt_gd()(theta, int(steps), eta))


# -- time to a fraction of the way -----------------------------------------------------------
def time_to_fraction(times, curve, fraction: float = 0.9, *, end=None) -> float:
    """The first time a sampled curve has covered ``fraction`` of the way from its start to
    ``end`` (default: its last value), linearly interpolated in ``log t`` between samples
    (``times`` increasing and positive after the first); ``nan`` if it never gets there.
    ``ValueError`` if the curve does not move (start equal to end)."""
    fraction = _real("fraction", fraction, 0.0, 1.0, open_lower=True)
    times, curve = np.asarray(times, float), np.asarray(curve, float)
    end = curve[-1] if end is None else float(end)
    span = curve[0] - end
    if span == 0:
        raise ValueError("the curve does not move: start equals end")
    covered = (curve[0] - curve) / span
    above = np.nonzero(covered >= fraction)[0]
    if above.size == 0:
        return math.nan
    j = int(above[0])
    if j == 0:
        return float(times[0])
    t0, t1 = times[j - 1], times[j]
    w = (fraction - covered[j - 1]) / (covered[j] - covered[j - 1])
    if t0 <= 0:
        return float(t0 + w * (t1 - t0))
    return float(math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0))))


def theory_time_to_fraction(curve, fraction: float = 0.9, *, t_min: float = 1e-4, t_max: float = 1e6) -> float:
    """The first time ``t`` at which the monotone-start theory curve ``curve(t)`` has covered
    ``fraction`` of the way from ``curve(0)`` to ``curve(inf)``: a grid in ``log t`` brackets the
    first crossing, ``brentq`` refines it (``xtol`` 1e-12 in ``log t``).  No crossing below
    ``t_max`` raises ``ArithmeticError``."""
    fraction = _real("fraction", fraction, 0.0, 1.0, open_lower=True)
    start, end = float(curve(0.0)), float(curve(math.inf))
    if start == end:
        raise ValueError("the curve does not move: start equals end")

    def gap(u):
        return (start - float(curve(math.exp(u)))) / (start - end) - fraction

    grid = np.linspace(math.log(t_min), math.log(t_max), 121)
    values = [gap(u) for u in grid]
    for i in range(1, len(grid)):
        if values[i] >= 0 > values[i - 1]:
            u = optimize.brentq(gap, grid[i - 1], grid[i], xtol=1e-12)
            return float(math.exp(u))
    if values[0] >= 0:
        raise ArithmeticError(f"the curve covers {fraction:g} of its way before t = {t_min:g}")
    raise ArithmeticError(f"the curve does not cover {fraction:g} of its way before t = {t_max:g}")
