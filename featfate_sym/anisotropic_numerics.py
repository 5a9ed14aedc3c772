"""Deterministic equivalents of scratch, linear transfer and fine-tuning for any spectrum.

The model and the cited lemma are those of :mod:`featfate_sym.theory.anisotropic`: inputs
``x ~ N(0, Sigma)`` with eigenvalues ``lambda_i``, teachers with energy profile ``p``,
proportional limit ``n = gamma d``, excess risk in the ``Sigma`` metric.  Nothing is typed
in here: :func:`featfate_sym.theory.anisotropic.trace_forms` gives the per-direction
summands (functions of one eigenvalue and ``kappa``) and the combinations of their traces
as SymPy expressions; they are compiled once with ``sympy.lambdify(modules="numpy")`` and
the traces become sums over the eigenvalue array.  ``kappa`` solves
``gamma = (1/d) sum_i lambda_i/(lambda_i + kappa)`` by ``scipy.optimize.brentq`` on the
derived bracket ``[lambda_min (1-gamma)/gamma, mean(lambda) (1-gamma)/gamma]`` (the
summand is increasing and concave in ``lambda``: Jensen); a solve that does not converge
raises.

Every function takes ``eigenvalues`` (length ``d``) and ``profile`` (length ``d``, sum 1)
as plain arrays -- e.g. ``spectra.two_level(0.3, 10).eigenvalues(1000)`` and
``spectra.profile(...)`` -- and optional ``weights``, the share of directions each entry
stands for (default ``1/d`` each): ``(levels, fractions)`` of a :class:`~featfate_sym.spectra.Spectrum`
gives the limit of that spectrum exactly.  Singular point: ``gamma = 1`` gives ``inf``
when ``sigma > 0`` (the interpolation peak) and the bias 0 when ``sigma = 0``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp
from scipy.optimize import brentq

from featfate_sym import parameters
from featfate_sym.spectra import check_profile

__all__ = [
    "kappa",
    "scratch_risk",
    "lt_risk",
    "ft_risk",
    "lt_transferability",
    "ft_transferability",
    "balanced_scale",
    "ft_balanced",
    "ft_balanced_risk",
    "ft_balanced_transferability",
]


@functools.lru_cache(maxsize=1)
def _compiled() -> dict:
    from featfate_sym.symbols import gamma, kappa as k, sigma, theta
    from featfate_sym.theory import anisotropic as A

    forms = A.trace_forms()

    def summand(sym):
        return sp.lambdify((A.LAMBDA, k), forms["summands"][sym], modules="numpy")

    traces = (A.T2, A.TS, A.WB)
    return {
        "resolvent": summand(A.T1),
        "summands": {sym: summand(sym) for sym in traces},
        "bias": sp.lambdify((gamma, k, A.ENERGY, A.WB, A.TS), forms["bias"], modules="numpy"),
        "variance": sp.lambdify((sigma, k, A.T2, A.TS), forms["variance"], modules="numpy"),
        "over": sp.lambdify((gamma, sigma), forms["over"], modules="numpy"),
        "lt": sp.lambdify((theta, A.M1), forms["lt"], modules="numpy"),
        "energy": sp.lambdify((theta,), forms["ft_energy"], modules="numpy"),
        "bracket": sp.lambdify((A.LAMBDA, gamma), forms["bracket"], modules="numpy"),
        "M1": sp.lambdify((A.LAMBDA,), forms["summands"][A.M1], modules="numpy"),
        "T2": A.T2, "TS": A.TS, "WB": A.WB,
    }


def _inputs(eigenvalues, profile, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lam, p = check_profile(eigenvalues, profile)
    if weights is None:
        w = np.full(lam.size, 1.0 / lam.size)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != lam.shape or not np.all(np.isfinite(w) & (w >= 0)) or abs(w.sum() - 1) > 1e-9:
            raise ValueError("parameter weights must have the length of eigenvalues, be >= 0 and sum to 1")
    return lam, p, w


def _gamma(value) -> float:
    return parameters.scalar(parameters.gamma, value)


def kappa(eigenvalues, gamma: float, weights=None) -> float:
    """Effective regularisation of min-norm interpolation: the root ``kappa > 0`` of
    ``gamma = sum_i w_i lambda_i/(lambda_i + kappa)`` for ``gamma < 1``; 0 for ``gamma >= 1``.
    Raises ``RuntimeError`` if the root solver does not converge."""
    lam, _, w = _inputs(eigenvalues, np.full(np.size(eigenvalues), 1.0 / max(np.size(eigenvalues), 1)), weights)
    g = _gamma(gamma)
    if g >= 1:
        return 0.0
    c = _compiled()
    support = lam[w > 0]
    lo = float(c["bracket"](support.min(), g))
    hi = float(c["bracket"](float(np.dot(w, lam)), g))
    if lo == hi:  # one level: the bracket is the root
        return lo

    def f(x):
        return float(np.dot(w, c["resolvent"](lam, x))) - g

    # the bracket ends solve the bounds exactly; rounding can put f a hair on the wrong
    # side, so the ends are widened by a factor 2 (f is decreasing on (0, oo))
    lo, hi = lo / 2, hi * 2
    root, info = brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500, full_output=True)
    if not info.converged:
        raise RuntimeError(f"kappa did not converge for gamma = {g} ({info.flag})")
    return float(root)


def _traces(lam, p, w, k) -> dict:
    c = _compiled()
    out = {}
    for sym, fn in c["summands"].items():
        values = fn(lam, k)
        out[sym] = float(np.dot(p if sym == c["WB"] else w, values))
    return out


def scratch_risk(eigenvalues, profile, gamma: float, sigma: float, energy: float = 1.0, weights=None) -> float:
    """Excess risk of min-norm least squares ``X^+ y`` on a teacher of squared norm
    ``energy`` with profile ``profile`` (cited lemma; bias and variance on both sides of
    ``gamma = 1``).  ``inf`` at ``gamma = 1`` with ``sigma > 0``."""
    lam, p, w = _inputs(eigenvalues, profile, weights)
    g = _gamma(gamma)
    s = parameters.scalar(parameters.sigma, sigma)
    if not (math.isfinite(energy) and energy >= 0):
        raise ValueError(f"parameter energy must be in [0, inf) (got {energy!r})")
    c = _compiled()
    if g > 1:
        return float(c["over"](g, s))
    if g == 1:
        return math.inf if s > 0 else 0.0
    k = kappa(lam, g, w)
    t = _traces(lam, p, w, k)
    bias = c["bias"](g, k, energy, t[c["WB"]], t[c["TS"]])
    variance = c["variance"](s, k, t[c["T2"]], t[c["TS"]])
    return float(bias + variance)


def lt_risk(eigenvalues, profile, theta: float, weights=None) -> float:
    """Linear transfer in the limit ``n -> oo``: ``sin^2(theta) sum_i p_i lambda_i``."""
    lam, p, _ = _inputs(eigenvalues, profile, weights)
    th = parameters.scalar(parameters.theta, theta)
    c = _compiled()
    return float(c["lt"](th, float(np.dot(p, c["M1"](lam)))))


def ft_risk(eigenvalues, profile, gamma: float, theta: float, sigma: float, weights=None) -> float:
    """Fine-tuning end point ``beta_s + X^+ (y - X beta_s)`` (``c = 1``): the scratch risk
    of the residual teacher, energy ``4 sin^2(theta/2)`` on the same profile."""
    th = parameters.scalar(parameters.theta, theta)
    return scratch_risk(eigenvalues, profile, gamma, sigma, energy=float(_compiled()["energy"](th)), weights=weights)


def lt_transferability(eigenvalues, profile, gamma: float, theta: float, sigma: float, weights=None) -> float:
    """``T_lt = scratch_risk - lt_risk`` (``inf`` at ``gamma = 1`` with noise)."""
    return scratch_risk(eigenvalues, profile, gamma, sigma, weights=weights) - lt_risk(eigenvalues, profile, theta, weights)


def ft_transferability(eigenvalues, profile, gamma: float, theta: float, sigma: float, weights=None) -> float:
    """``T_ft = scratch_risk - ft_risk``; 0 for ``gamma >= 1`` (fine-tuning is scratch there;
    at ``gamma = 1`` the limit from both sides)."""
    if _gamma(gamma) >= 1:
        parameters.scalar(parameters.theta, theta)
        parameters.scalar(parameters.sigma, sigma)
        return 0.0
    return (scratch_risk(eigenvalues, profile, gamma, sigma, weights=weights)
            - ft_risk(eigenvalues, profile, gamma, theta, sigma, weights))


# -- fine-tuning at the balanced-flow end point, any depth -----------------------------------------
@functools.lru_cache(maxsize=1)
def _compiled_balanced() -> dict:
    from featfate_sym.registry import get
    from featfate_sym.symbols import L, a, b, c, ell_c, gamma, kappa as k, sigma, theta
    from featfate_sym.theory import anisotropic as A
    from featfate_sym.theory.fine_tuning import _depth_stable_form

    forms = A.balanced_forms()
    equation = get("ft.transferability_exact").derivation.extras["root_equation"]  # in c, a, b, L
    # the depth-stable root in ell_c = log(c^2 - a) with a, b left as symbols; "T" = c^(L-1)
    # gives back the scale sqrt(b) e^(-ell_c/2)
    (scale, root), _ = _depth_stable_form(equation, c ** (L - 1), a, b)
    traces = (gamma, k, A.WB, A.TS, A.T2, sigma, theta, A.SCALE)
    return {
        "null": sp.lambdify((A.LAMBDA, k), forms["summands"][A.AK], modules="numpy"),
        "row": sp.lambdify((A.LAMBDA, k), forms["summands"][A.AP], modules="numpy"),
        "a": sp.lambdify((A.AK,), forms["a"], modules="numpy"),
        "b": sp.lambdify((A.AP, sigma, k), forms["b"], modules="numpy"),
        "h": sp.lambdify((a, b, L, ell_c), root.equation, modules="numpy"),
        "lo": sp.lambdify((a, b, L), root.bracket[0], modules="numpy"),
        "hi": sp.lambdify((a, b, L), root.bracket[1], modules="numpy"),
        "scale": sp.lambdify((b, ell_c), scale, modules="numpy"),
        "risk": sp.lambdify(traces, forms["risk"], modules="numpy"),
        "transfer": sp.lambdify(traces[:4] + (theta, A.SCALE), forms["transferability"], modules="numpy"),
    }


def balanced_scale(a: float, b: float, depth: int) -> float:
    """Null-space scale ``c^(L-1)`` of the balanced end point: ``c`` the positive root of
    ``c^(2L) - a c^(2L-2) - b = 0`` (``ft.transferability_exact``), solved in
    ``ell = log(c^2 - a)`` by ``brentq`` on the derived bracket (finite for any depth).
    ``a >= 0``, ``b > 0``; ``depth`` an integer >= 1 (``L = 1``: 1).  A solve that does not
    converge raises ``RuntimeError``."""
    if not (math.isfinite(a) and a >= 0):
        raise ValueError(f"parameter a must be in [0, inf) (got {a!r})")
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"parameter b must be in (0, inf) (got {b!r})")
    depth = int(parameters.scalar(parameters.L, depth))
    if depth == 1:
        return 1.0
    cb = _compiled_balanced()
    lo, hi = float(cb["lo"](a, b, depth)), float(cb["hi"](a, b, depth))

    def h(x):
        return float(cb["h"](a, b, depth, x))

    if h(lo) == 0:
        return float(cb["scale"](b, lo))
    root, info = brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500, full_output=True)
    if not info.converged:
        raise RuntimeError(f"the null-space scale did not converge for a = {a}, b = {b}, L = {depth} ({info.flag})")
    return float(cb["scale"](b, root))


def ft_balanced(eigenvalues, profile, gamma: float, theta: float, sigma: float, depth: int,
                weights=None) -> dict:
    """Deterministic equivalents of the balanced-flow end point of fine-tuning at depth ``L``
    (:func:`featfate_sym.theory.anisotropic.balanced_forms`): ``a`` (the limit of
    ``|(I-P) beta_s|^2``), ``b`` (of ``|beta_sc|^2``), ``scale`` (``c^(L-1)``), ``risk`` and
    ``transferability``.  ``gamma >= 1``: ``P = I``, ``a = 0``, fine-tuning is scratch
    (``risk`` the scratch risk, ``transferability`` 0, ``b`` and ``scale`` NaN: no null space
    to rescale)."""
    lam, p, w = _inputs(eigenvalues, profile, weights)
    g = _gamma(gamma)
    th = parameters.scalar(parameters.theta, theta)
    s = parameters.scalar(parameters.sigma, sigma)
    depth = int(parameters.scalar(parameters.L, depth))
    if g >= 1:
        return {"a": 0.0, "b": math.nan, "scale": math.nan, "risk": scratch_risk(lam, p, g, s, weights=w),
                "transferability": 0.0}
    c, cb = _compiled(), _compiled_balanced()
    k = kappa(lam, g, w)
    null = float(np.dot(p, cb["null"](lam, k)))
    row = float(np.dot(p, cb["row"](lam, k)))  # 1 - null, without its cancellation as gamma -> 0
    a_lim, b_lim = float(cb["a"](null)), float(cb["b"](row, s, k))
    scale = balanced_scale(a_lim, b_lim, depth)
    t = _traces(lam, p, w, k)
    args = (g, k, t[c["WB"]], t[c["TS"]])
    risk = float(cb["risk"](*args, t[c["T2"]], s, th, scale))
    transfer = float(cb["transfer"](*args, th, scale))
    return {"a": a_lim, "b": b_lim, "scale": scale, "risk": risk, "transferability": transfer}


def ft_balanced_risk(eigenvalues, profile, gamma: float, theta: float, sigma: float, depth: int,
                     weights=None) -> float:
    """Risk of the balanced end point of fine-tuning (see :func:`ft_balanced`)."""
    return ft_balanced(eigenvalues, profile, gamma, theta, sigma, depth, weights)["risk"]


def ft_balanced_transferability(eigenvalues, profile, gamma: float, theta: float, sigma: float, depth: int,
                                weights=None) -> float:
    """``T = R_sc - R_ft`` at the balanced end point: ``bias_sc c^(L-1) (2 cos theta - c^(L-1))``;
    0 for ``gamma >= 1``."""
    return ft_balanced(eigenvalues, profile, gamma, theta, sigma, depth, weights)["transferability"]
