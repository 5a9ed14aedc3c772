"""Fine-tuning from a finite, noisy source: the simulation and its estimator, against the
exact balanced-flow form (``ft.transferability_finite_source_exact``) and the c = 1
approximation (``ft.transferability_finite_source``); ``numerics/finite_source_table.py``
prints the table, ``tests/test_finite_source.py`` makes the stated comparison.

Per cell and replicate: teachers at angle theta, ``n = round(gamma d)`` target and
``n_s = round(gamma_s d)`` source samples; pretraining by gradient descent from small
initialisation on the source sample, fine-tuning of all layers on the target sample
(featfate_sym.simulation, whitened solver, drift control on); the scratch end point is
the minimum-norm interpolator ``X^+ y`` (where scratch training converges).

Estimator (a control variate with exactly known mean).  Per replicate
``T_c1 = |(I-P) beta_t|^2 - |(I-P)(b - beta_t)|^2`` with ``b = X_s^+ y_s`` has the exact
finite-size mean ``K_d = (1 - n/d)(2 O_d - B_d)`` (``E P = (n/d) I``; ``O_d = cos(theta)
min(n_s, d)/d``; ``B_d = n_s/d + sigma_s^2 n_s/(d - n_s - 1)`` or ``1 + sigma_s^2 d/(n_s -
d - 1)``, the inverse-Wishart means).  ``mean(T - T_c1) + K_d`` is an unbiased estimate
of ``E T`` whose standard error is that of ``T - T_c1``, several times smaller than that
of ``T``.  The same estimator, on the balanced-flow end point computed per realisation
without training, gives the finite-size expectation of the exact form by Monte Carlo
(the finite-size allowance of the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CELLS", "GAMMA", "THETA", "FiniteSourceRow", "control_estimate", "finite_size_control_mean",
    "finite_source_row", "model_samples", "simulate_samples", "theory_values",
]

#: the cells: (L, gamma_s, noise) with sigma = sigma_s = noise, at gamma = 0.5, theta = pi/4
CELLS = tuple((depth, gs, noise) for depth in (2, 3) for gs in (0.5, 2.0) for noise in (0.0, 0.5))
GAMMA, THETA = 0.5, math.pi / 4


def finite_size_control_mean(n: int, n_s: int, d: int, theta: float, sigma_s: float) -> float:
    """``K_d = E T_c1 = (1 - n/d)(2 O_d - B_d)`` at finite sizes (see the module docstring),
    from the registry's random-matrix lemmas: ``E P = p I`` and the inverse-Wishart means."""
    from featfate_sym.theory.random_matrix import (
        inverse_covariance_mean_coefficient,
        inverse_gram_trace_mean,
        projection_mean_coefficient,
    )

    if abs(n_s - d) <= 1:
        raise ValueError(f"|n_s - d| <= 1 has an infinite source norm (n_s = {n_s}, d = {d})")
    p_s = float(projection_mean_coefficient(n_s, d))
    noise = float(inverse_gram_trace_mean(n_s, d) if n_s < d else d * inverse_covariance_mean_coefficient(n_s, d))
    norm2 = p_s + sigma_s**2 * noise
    overlap = math.cos(theta) * p_s
    return (1 - float(projection_mean_coefficient(n, d))) * (2 * overlap - norm2)


def _null_scale(ratio_a: np.ndarray, ratio_b: np.ndarray, depth: int) -> np.ndarray:
    """``s = w^((L-1)/2)`` with ``w > 0`` the root of ``w^(L-1) (w - alpha) = beta`` (the
    balanced-flow end point per realisation: ``u = w^L = |beta_ft|^2/|b|^2``,
    ``alpha = |(I-P) b|^2/|b|^2``, ``beta = |X^+ y|^2/|b|^2``), by bisection on
    ``[0, 1 + alpha + beta]`` (the left side exceeds beta at the right end)."""
    lo = np.zeros_like(ratio_a)
    hi = 1.0 + ratio_a + ratio_b
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = mid ** (depth - 1) * (mid - ratio_a) > ratio_b
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return (0.5 * (lo + hi)) ** ((depth - 1) / 2)


def _sizes(d: int, gamma_s: float) -> tuple[int, int]:
    return int(round(GAMMA * d)), int(round(gamma_s * d))


def model_samples(depth: int, gamma_s: float, noise: float, d: int, replicates: int, seed: int):
    """Training-free draws of the model: per realisation the balanced-flow ``T`` (exact end
    point) and ``T_c1``; returns ``(T_pred, T_c1)`` as arrays."""
    import torch

    from featfate_sym.simulation import make_teachers, sample_regression

    n, n_s = _sizes(d, gamma_s)
    gen = torch.Generator().manual_seed(int(seed))
    teachers = make_teachers(replicates, d, THETA, gen)
    target = sample_regression(teachers.target, n, noise, gen, keep_design=False)
    source = sample_regression(teachers.source, n_s, noise, gen, keep_design=False)
    return _transferabilities(teachers.target, target, source.minimiser, depth)


def _transferabilities(beta_t, target, b, depth):
    """``T`` at the balanced-flow end point from ``b`` and ``T_c1``, per replicate (numpy)."""
    proj = target.projector

    def null(v):
        return v - (proj @ v.unsqueeze(-1)).squeeze(-1)

    null_b, null_t = null(b), null(beta_t)
    norm2 = (b * b).sum(-1)
    scale = _null_scale(((null_b * null_b).sum(-1) / norm2).numpy(),
                        ((target.minimiser**2).sum(-1) / norm2).numpy(), depth)
    base = (null_t * null_t).sum(-1).numpy()
    t_pred = base - ((np.asarray(scale)[:, None] * null_b.numpy() - null_t.numpy()) ** 2).sum(-1)
    t_c1 = base - ((null_b - null_t) ** 2).sum(-1).numpy()
    return t_pred, t_c1


def simulate_samples(depth: int, gamma_s: float, noise: float, d: int, replicates: int, seed: int):
    """Trained replicates: ``(T, T_c1, T_pred, end_point_error)`` per replicate, where ``T``
    is the simulated transferability (fine-tuned by gradient descent from the network
    pretrained on the source sample), ``T_pred`` the balanced-flow end point from the same
    pretrained vector, and ``end_point_error = |beta_ft - beta_pred|``."""
    import torch

    from featfate_sym.simulation import (EngineOptions, end_to_end, fine_tune, make_teachers, pretrain, risk,
                                         sample_regression)

    n, n_s = _sizes(d, gamma_s)
    gen = torch.Generator().manual_seed(int(seed))
    teachers = make_teachers(replicates, d, THETA, gen)
    target = sample_regression(teachers.target, n, noise, gen, keep_design=False)
    source = sample_regression(teachers.source, n_s, noise, gen, keep_design=False)
    options = EngineOptions(solver="whitened")
    pre, pre_run = pretrain(source, depth, gen, options)
    weights, run = fine_tune(pre, target, options)
    if not (bool(pre_run.converged.all()) and bool(run.converged.all())):
        raise ArithmeticError(f"gradient descent did not converge (L = {depth}, gamma_s = {gamma_s}, d = {d})")
    beta_t = teachers.target
    beta_ft = end_to_end(weights)
    t_sim = (risk(target.minimiser, beta_t) - risk(beta_ft, beta_t)).numpy()
    _, t_c1 = _transferabilities(beta_t, target, source.minimiser, depth)
    # the balanced-flow end point from the pretrained vector itself
    b_pre = end_to_end(pre)
    proj = target.projector
    null_b = b_pre - (proj @ b_pre.unsqueeze(-1)).squeeze(-1)
    norm2 = (b_pre * b_pre).sum(-1)
    scale = _null_scale(((null_b * null_b).sum(-1) / norm2).numpy(),
                        ((target.minimiser**2).sum(-1) / norm2).numpy(), depth)
    beta_pred = target.minimiser + torch.from_numpy(np.asarray(scale)).unsqueeze(-1) * null_b
    t_pred = (risk(target.minimiser, beta_t) - risk(beta_pred, beta_t)).numpy()
    error = (beta_ft - beta_pred).norm(dim=-1).numpy()
    return t_sim, t_c1, t_pred, error


def control_estimate(t: np.ndarray, t_c1: np.ndarray, control_mean: float) -> tuple[float, float]:
    """``(mean(t - t_c1) + K_d, SE)`` (see the module docstring)."""
    diff = t - t_c1
    return float(diff.mean() + control_mean), float(diff.std(ddof=1) / math.sqrt(diff.size))


def theory_values(depth: int, gamma_s: float, noise: float, d: int) -> tuple[float, float]:
    """(exact form, c = 1 form) at ``gamma = n/d``, ``gamma_s = n_s/d``."""
    import featfate_sym as ff

    n, n_s = _sizes(d, gamma_s)
    exact = ff.get("ft.transferability_finite_source_exact").evaluate(
        gamma=n / d, theta=THETA, sigma=noise, gamma_s=n_s / d, sigma_s=noise, L=depth)
    c1 = ff.get("ft.transferability_finite_source").evaluate(gamma=n / d, theta=THETA, gamma_s=n_s / d, sigma_s=noise)
    return exact, c1


@dataclass(frozen=True)
class FiniteSourceRow:
    """One cell of the table: the cell ``(depth, gamma_s, noise)``; the limits ``exact``
    and ``c1`` (:func:`theory_values`); the finite-size control mean ``control_mean``
    (:func:`finite_size_control_mean`); the model's finite-size expectation ``mc`` +-
    ``mc_se`` (training-free draws, :func:`model_samples`); the simulated ``mean`` +- ``se``
    (trained replicates, :func:`simulate_samples`, both by :func:`control_estimate`); and
    ``max_end_point_error``, the largest ``|beta_ft - beta_pred|`` over the replicates."""

    depth: int
    gamma_s: float
    noise: float
    exact: float
    c1: float
    control_mean: float
    mc: float
    mc_se: float
    mean: float
    se: float
    max_end_point_error: float

    @property
    def z_exact(self) -> float:
        return (self.mean - self.exact) / self.se

    @property
    def z_c1(self) -> float:
        return (self.mean - self.c1) / self.se


def finite_source_row(depth: int, gamma_s: float, noise: float, d: int, replicates: int, model_replicates: int,
                      seed: int, index: int) -> FiniteSourceRow:
    """The numbers of one cell of ``numerics/finite_source_table.py``: ``index`` is the
    cell's position in :data:`CELLS`; the model draws use seed ``1000 seed + 2 index + 1``
    and the trained replicates ``1000 seed + 2 index`` (as the tests do)."""
    n, n_s = _sizes(d, gamma_s)
    exact, c1 = theory_values(depth, gamma_s, noise, d)
    k_d = finite_size_control_mean(n, n_s, d, THETA, noise)
    t_pred, t_c1 = model_samples(depth, gamma_s, noise, d, int(model_replicates), int(seed) * 1000 + 2 * index + 1)
    mc, mc_se = control_estimate(t_pred, t_c1, k_d)
    t_sim, t_c1s, _, error = simulate_samples(depth, gamma_s, noise, d, int(replicates), int(seed) * 1000 + 2 * index)
    mean, se = control_estimate(t_sim, t_c1s, k_d)
    return FiniteSourceRow(depth, gamma_s, noise, float(exact), float(c1), k_d, mc, mc_se, mean, se, float(error.max()))
