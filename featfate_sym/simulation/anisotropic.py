"""Monte Carlo of the estimators with anisotropic inputs (family ``anisotropic``).

Model of :mod:`featfate_sym.theory.anisotropic`: ``x ~ N(0, Sigma)``, ``Sigma =
diag(lambda)``, sampled as ``X = Z diag(sqrt(lambda))`` with ``Z`` standard normal;
``y = X beta_t + eps``, ``eps ~ N(0, sigma^2 I_n)``; teachers from
:func:`featfate_sym.spectra.teachers`.  Each estimator is computed in closed form from one
sampled target set (float64 NumPy), and its excess risk is computed *exactly* from the
weights, ``(beta_hat - beta_t)^T Sigma (beta_hat - beta_t)``; only the training set and
the teachers are random.

Estimators (the end points of the training protocols):

- scratch: min-norm least squares ``X^+ y``.  ``solver="gram"`` (default) computes it as
  ``X^T (X X^T)^{-1} y`` for ``n < d`` and ``(X^T X)^{-1} X^T y`` for ``n > d`` (Cholesky;
  the same vector as ``X^+ y`` whenever ``X`` has full rank, which holds with probability 1
  for ``n != d``; 5-10x faster than an SVD at ``d = 1000``); ``solver="lstsq"`` uses
  ``numpy.linalg.lstsq`` (SVD, minimum norm at every ``n``, including ``n = d``);
- linear transfer: the one-feature readout ``a beta_s``, ``a = u.y/|u|^2`` with
  ``u = X beta_s`` (``|beta_s| = 1``), refitted on the ``n`` target samples;
- fine-tuning (``c = 1`` end point): ``beta_s + X^+ (y - X beta_s)``.

Per replicate the simulator also returns the *conditional* expectation of the
linear-transfer risk given the teachers: with ``z = x.beta_s`` the label is
``y = a* z + xi``, ``xi`` Gaussian independent of ``z`` with variance ``R_inf + sigma^2``,
``R_inf = S_tt - S_st^2/S_ss``; least squares on one feature gives exactly
``E[R_lt | teachers] = R_inf + (R_inf + sigma^2)/(n - 2)`` (``E[1/chi^2_n] = 1/(n-2)``).
That is an exact finite-``n`` check of the simulated readout.  Sharper still, given the design
the readout error is exactly Gaussian, ``a - a* = u.xi/|u|^2`` with ``u.xi ~ N(0, |u|^2 (R_inf +
sigma^2))``, and ``R_lt = R_inf + (a - a*)^2 S_ss``; so
``q = (R_lt - R_inf) |u|^2 / (S_ss (R_inf + sigma^2))`` is exactly ``chi^2_1``, independently
across replicates (returned as ``lt_chi2``).

Same seed, same numbers: one ``numpy.random.Generator`` per call, seeded by ``seed``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from featfate_sym.parameters import random_generator
from featfate_sym.spectra import check_profile, teachers

__all__ = ["METHODS", "simulate_risks", "excess_risk"]

#: the estimators :func:`simulate_risks` computes
METHODS = ("scratch", "linear_transfer", "fine_tuning")

#: default input dimension
DEFAULT_DIM = 1000


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"parameter {name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def excess_risk(beta_hat: np.ndarray, beta_t: np.ndarray, eigenvalues: np.ndarray) -> float:
    """``(beta_hat - beta_t)^T Sigma (beta_hat - beta_t)`` for ``Sigma = diag(eigenvalues)``."""
    diff = np.asarray(beta_hat, dtype=float) - np.asarray(beta_t, dtype=float)
    return float(np.dot(eigenvalues * diff, diff))


def _min_norm(x: np.ndarray, rhs: np.ndarray, solver: str) -> np.ndarray:
    """``X^+ rhs`` (columns of ``rhs`` solved together)."""
    if solver == "lstsq":
        return np.linalg.lstsq(x, rhs, rcond=None)[0]
    n, d = x.shape
    if n < d:
        return x.T @ scipy.linalg.solve(x @ x.T, rhs, assume_a="pos")
    return scipy.linalg.solve(x.T @ x, x.T @ rhs, assume_a="pos")


def simulate_risks(eigenvalues, profile, n_samples: int, theta: float, noise_std: float,
                   replicates: int, seed, solver: str = "gram") -> dict[str, np.ndarray]:
    """Excess risks of scratch, linear transfer and fine-tuning, one per replicate.

    ``eigenvalues``, ``profile``: arrays of length ``d`` (``d = 1000`` is the intended
    size: ``spectra.*.eigenvalues(1000)``); ``n_samples >= 3`` target samples; ``theta`` in
    [0, pi]; ``noise_std >= 0``.  Each replicate draws its own teachers and target set.

    Returns a dict of arrays of length ``replicates``: ``scratch``, ``linear_transfer``,
    ``fine_tuning`` (the risks), ``lt_conditional`` (``E[R_lt | teachers]`` at this ``n``,
    exact), ``lt_population`` (``R_inf`` of the teachers) and ``lt_chi2`` (exactly
    ``chi^2_1``, see the module docstring).
    """
    lam, p = check_profile(eigenvalues, profile)
    n = _positive_int("n_samples", n_samples, minimum=3)
    replicates = _positive_int("replicates", replicates)
    if not (isinstance(theta, (int, float, np.floating)) and 0 <= theta <= math.pi):
        raise ValueError(f"parameter theta must be in [0, pi] (got {theta!r})")
    if not (isinstance(noise_std, (int, float, np.floating)) and math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"parameter noise_std must be in [0, inf) (got {noise_std!r})")
    if solver not in ("gram", "lstsq"):
        raise ValueError(f"parameter solver must be 'gram' or 'lstsq' (got {solver!r})")
    rng = random_generator(seed)
    d = lam.size
    if solver == "gram" and n == d:
        raise ValueError("parameter n_samples must differ from d with solver='gram' (use solver='lstsq')")
    beta_s_all, beta_t_all = teachers(lam, p, float(theta), replicates, rng)
    root = np.sqrt(lam)
    out = {name: np.empty(replicates) for name in (*METHODS, "lt_conditional", "lt_population", "lt_chi2")}
    for i in range(replicates):
        beta_s, beta_t = beta_s_all[i], beta_t_all[i]
        x = rng.standard_normal((n, d)) * root
        y = x @ beta_t + noise_std * rng.standard_normal(n)
        # scratch and fine-tuning share one factorisation: lstsq on the two right-hand sides
        rhs = np.stack([y, y - x @ beta_s], axis=1)
        solution = _min_norm(x, rhs, solver)
        out["scratch"][i] = excess_risk(solution[:, 0], beta_t, lam)
        out["fine_tuning"][i] = excess_risk(beta_s + solution[:, 1], beta_t, lam)
        u = x @ beta_s
        a = float(u @ y) / float(u @ u)
        out["linear_transfer"][i] = excess_risk(a * beta_s, beta_t, lam)
        s_ss = float(np.dot(lam * beta_s, beta_s))
        s_st = float(np.dot(lam * beta_s, beta_t))
        s_tt = float(np.dot(lam * beta_t, beta_t))
        r_inf = s_tt - s_st**2 / s_ss
        out["lt_population"][i] = r_inf
        out["lt_conditional"][i] = r_inf + (r_inf + noise_std**2) / (n - 2)
        out["lt_chi2"][i] = (a - s_st / s_ss) ** 2 * float(u @ u) / (r_inf + noise_std**2)
    return out


#: what :func:`simulate_balanced_fine_tuning` returns per replicate
BALANCED_FIELDS = ("fine_tuning", "scratch", "a", "b", "signal", "noise_norm", "scale")


def simulate_balanced_fine_tuning(eigenvalues, profile, n_samples: int, theta: float, noise_std: float,
                                  depth: int, replicates: int, seed) -> dict[str, np.ndarray]:
    """The balanced-flow end point of fine-tuning at depth ``L``, computed from the data.

    End point (``ft.transferability_exact``; the argument holds for any design):
    ``beta_ft = beta_sc + c^(L-1) (I - P) beta_s`` with ``beta_sc = X^+ y``, ``P = X^+ X``
    and ``c`` the positive root of ``c^(2L) - a c^(2L-2) - b = 0`` for this sample's
    ``a = |(I-P) beta_s|^2`` and ``b = |beta_sc|^2`` (solved by
    :func:`featfate_sym.anisotropic_numerics.balanced_scale`).  ``n_samples < d``
    (below the threshold: above it ``P = I`` and fine-tuning is scratch).

    Returns arrays of length ``replicates``: ``fine_tuning`` and ``scratch`` (excess risks in
    the ``Sigma`` metric), ``a``, ``b``, ``signal`` (``|P beta_t|^2``), ``noise_norm``
    (``|X^+ eps|^2``) and ``scale`` (``c^(L-1)``) -- each the sample value whose deterministic
    equivalent the theory uses.
    """
    from featfate_sym.anisotropic_numerics import balanced_scale

    lam, p = check_profile(eigenvalues, profile)
    n = _positive_int("n_samples", n_samples)
    depth = _positive_int("depth", depth)
    replicates = _positive_int("replicates", replicates)
    d = lam.size
    if n >= d:
        raise ValueError(f"parameter n_samples must be < d = {d} (below the threshold; got {n})")
    if not (isinstance(theta, (int, float, np.floating)) and 0 <= theta <= math.pi):
        raise ValueError(f"parameter theta must be in [0, pi] (got {theta!r})")
    if not (isinstance(noise_std, (int, float, np.floating)) and math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"parameter noise_std must be in [0, inf) (got {noise_std!r})")
    rng = random_generator(seed)
    beta_s_all, beta_t_all = teachers(lam, p, float(theta), replicates, rng)
    root = np.sqrt(lam)
    out = {name: np.empty(replicates) for name in BALANCED_FIELDS}
    for i in range(replicates):
        beta_s, beta_t = beta_s_all[i], beta_t_all[i]
        x = rng.standard_normal((n, d)) * root
        eps = noise_std * rng.standard_normal(n)
        # one factorisation for the four right-hand sides: P beta_s, P beta_t, X^+ eps
        sol = _min_norm(x, np.stack([x @ beta_s, x @ beta_t, eps], axis=1), "gram")
        proj_s, proj_t, pinv_eps = sol[:, 0], sol[:, 1], sol[:, 2]
        beta_sc = proj_t + pinv_eps
        null_s = beta_s - proj_s
        a = float(null_s @ null_s)
        b = float(beta_sc @ beta_sc)
        scale = balanced_scale(a, b, depth)
        out["fine_tuning"][i] = excess_risk(beta_sc + scale * null_s, beta_t, lam)
        out["scratch"][i] = excess_risk(beta_sc, beta_t, lam)
        out["a"][i], out["b"][i], out["scale"][i] = a, b, scale
        out["signal"][i] = float(proj_t @ proj_t)
        out["noise_norm"][i] = float(pinv_eps @ pinv_eps)
    return out
