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
