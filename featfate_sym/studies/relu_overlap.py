"""Exact feature overlap of a ReLU target with the span of pretrained ReLU features.

Setting (SPEC section 3): inputs ``x ~ N(0, I_d)``; a student's hidden features
``phi_i(x) = relu(w_i.x)``, ``i = 1..m``; a target ``f_t(x) = sum_k a_k relu(w*_k.x)``.
The quantity

    ``|P_perp f_t|^2 = min_c E[(f_t(x) - sum_i c_i phi_i(x))^2]``

is the part of ``f_t`` outside the span of the features in ``L2(N(0, I_d))``; it is the
large-``n`` limit of the linear-transfer risk (readout refitted on frozen features).  It
needs only the Gram matrices ``G_ij = <phi_i, phi_j>``, ``b_i = <phi_i, f_t>`` and
``|f_t|^2``, all sums of the registered arc-cosine kernel ``relu.arccos_kernel``
(compiled NumPy evaluator); no sampling.  Then ``|P_perp f_t|^2 = |f_t|^2 - b^T G^+ b``.

Rank rule.  ``G`` is positive semi-definite and, after pretraining, badly conditioned
(many student neurons condense onto the same teacher direction).  The projection keeps
the eigen-directions of ``G`` with eigenvalue ``lambda > rank_tol * lambda_max``; the
default ``rank_tol = 1e-10`` keeps every direction that float64 resolves (the relative
rounding of ``G``'s entries is about 1e-16, and a direction's contribution
``(v.b)^2 / lambda`` is accurate to about ``1e-16 lambda_max / lambda``).  A larger
``rank_tol`` projects onto the span of the dominant feature combinations only -- what a
ridge-regularised or truncated readout refit can use -- and gives a larger overlap.
The linear-transfer refit in :mod:`featfate_sym.simulation.relu` uses the same rule on
the empirical Gram matrix, so its risk tends to this value as ``n -> inf``.

:func:`overlap_monte_carlo` is the independent sampling check: least squares on many
samples, with the in-sample and held-out residuals bracketing the population value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featfate_sym import registry

__all__ = [
    "OverlapResult",
    "MonteCarloOverlap",
    "relu_gram",
    "target_norm",
    "feature_overlap",
    "overlap_monte_carlo",
]

DEFAULT_RANK_TOL = 1e-10


def _as_matrix(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite (count, input_dim) array with count >= 1 (got shape {arr.shape})")
    return arr


def _as_readout(value, count: int) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.shape != (count,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"teacher_readout must be a finite vector of length {count} (got shape {arr.shape})")
    return arr


def relu_gram(weights_a, weights_b) -> np.ndarray:
    """``K_ij = E[relu(a_i.x) relu(b_j.x)]`` for ``x ~ N(0, I_d)``, from ``relu.arccos_kernel``.

    Rows of zero norm are features identically zero and give zero rows/columns.  Cosines
    are clipped to ``[-1, 1]`` (rounding of ``a.b / (|a||b|)`` can leave it by ~1e-16).
    """
    a = _as_matrix("weights_a", weights_a)
    b = _as_matrix("weights_b", weights_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"weights_b must have input_dim {a.shape[1]} like weights_a (got {b.shape[1]})")
    kernel = registry.get("relu.arccos_kernel").numpy
    ra = np.linalg.norm(a, axis=1)
    rb = np.linalg.norm(b, axis=1)
    live_a, live_b = ra > 0, rb > 0
    out = np.zeros((a.shape[0], b.shape[0]))
    if live_a.any() and live_b.any():
        cos = (a[live_a] / ra[live_a, None]) @ (b[live_b] / rb[live_b, None]).T
        cos = np.clip(cos, -1.0, 1.0)
        out[np.ix_(live_a, live_b)] = kernel(ra[live_a, None], rb[None, live_b], cos)
    return out


def target_norm(teacher_weights, teacher_readout) -> float:
    """``|f_t|^2 = E[f_t(x)^2]`` for ``f_t = sum_k a_k relu(w*_k.x)``."""
    w = _as_matrix("teacher_weights", teacher_weights)
    a = _as_readout(teacher_readout, w.shape[0])
    return float(a @ relu_gram(w, w) @ a)


@dataclass(frozen=True)
class OverlapResult:
    """``residual = |P_perp f_t|^2``; ``target_norm = |f_t|^2``; ``rank``: kept directions;
    ``coefficients``: the minimiser ``c`` (minimum norm within the kept directions)."""

    residual: float
    target_norm: float
    rank: int
    coefficients: np.ndarray

    @property
    def relative(self) -> float:
        """Fraction of the target's squared norm outside the feature span."""
        return self.residual / self.target_norm


def _check_rank_tol(rank_tol: float) -> float:
    rank_tol = float(rank_tol)
    if not (0.0 <= rank_tol < 1.0):
        raise ValueError(f"rank_tol must be in [0, 1) (got {rank_tol:g})")
    return rank_tol


def feature_overlap(features, teacher_weights, teacher_readout, *, rank_tol: float = DEFAULT_RANK_TOL) -> OverlapResult:
    """Exact ``|P_perp f_t|^2`` of the target outside the span of ``relu(features_i . x)``.

    ``features``: ``(m, d)`` student first-layer weights (their scale does not change the
    span); ``teacher_weights``: ``(m*, d)``; ``teacher_readout``: ``(m*,)``.  See the
    module docstring for the rank rule.
    """
    w = _as_matrix("features", features)
    ws = _as_matrix("teacher_weights", teacher_weights)
    if ws.shape[1] != w.shape[1]:
        raise ValueError(f"teacher_weights must have input_dim {w.shape[1]} (got {ws.shape[1]})")
    a = _as_readout(teacher_readout, ws.shape[0])
    rank_tol = _check_rank_tol(rank_tol)
    gram = relu_gram(w, w)
    cross = relu_gram(w, ws) @ a
    norm2 = float(a @ relu_gram(ws, ws) @ a)
    evals, evecs = np.linalg.eigh(gram)
    top = evals[-1]
    keep = evals > rank_tol * top if top > 0 else np.zeros_like(evals, dtype=bool)
    proj = evecs[:, keep].T @ cross
    explained = float(np.sum(proj**2 / evals[keep]))
    coef = evecs[:, keep] @ (proj / evals[keep])
    return OverlapResult(norm2 - explained, norm2, int(keep.sum()), coef)


@dataclass(frozen=True)
class MonteCarloOverlap:
    """Sampling estimate of ``|P_perp f_t|^2`` by least squares.

    ``in_sample``: mean squared residual on the fitting samples (expectation <= the
    population value: the fitted coefficients beat the population ones on their own
    data); ``held_out``: on independent samples (expectation >= the population value: no
    coefficients beat the projection in population); ``*_se``: standard errors of these
    means (from the squared residuals' spread; the in-sample one ignores the fit's
    dependence, an ``O(rank / n_samples)`` effect)."""

    in_sample: float
    in_sample_se: float
    held_out: float
    held_out_se: float
    rank: int

    @property
    def estimate(self) -> float:
        """Midpoint of the bracket: the two ``O(rank / n)`` biases cancel to first order."""
        return 0.5 * (self.in_sample + self.held_out)


def overlap_monte_carlo(
    features,
    teacher_weights,
    teacher_readout,
    *,
    n_samples: int,
    seed: int | np.random.Generator,
    rank_tol: float = DEFAULT_RANK_TOL,
    chunk: int = 50_000,
) -> MonteCarloOverlap:
    """Least-squares regression of ``f_t(x)`` on the features with ``n_samples`` draws,
    evaluated in sample and on ``n_samples`` fresh draws.

    The normal equations are accumulated in chunks (memory ``O(chunk * m)``) and solved
    with the same eigenvalue rank rule as :func:`feature_overlap`, applied to the
    empirical Gram matrix.
    """
    w = _as_matrix("features", features)
    ws = _as_matrix("teacher_weights", teacher_weights)
    a = _as_readout(teacher_readout, ws.shape[0])
    if int(n_samples) != n_samples or n_samples < 2 * w.shape[0]:
        raise ValueError(f"n_samples must be an integer >= 2 m = {2 * w.shape[0]} (got {n_samples})")
    rank_tol = _check_rank_tol(rank_tol)
    rng = np.random.default_rng(seed)
    d = w.shape[1]

    def draw(size):
        x = rng.standard_normal((size, d))
        return np.maximum(x @ w.T, 0.0), np.maximum(x @ ws.T, 0.0) @ a

    sizes = [min(chunk, n_samples - s) for s in range(0, n_samples, chunk)]
    # the fitting draws are kept (as features and targets) to compute in-sample residuals
    fit = [draw(size) for size in sizes]
    gram = sum(phi.T @ phi for phi, _ in fit) / n_samples
    cross = sum(phi.T @ y for phi, y in fit) / n_samples
    evals, evecs = np.linalg.eigh(gram)
    keep = evals > rank_tol * evals[-1]
    coef = evecs[:, keep] @ ((evecs[:, keep].T @ cross) / evals[keep])

    def summary(batches):
        r2 = np.concatenate([(y - phi @ coef) ** 2 for phi, y in batches])
        return float(r2.mean()), float(r2.std(ddof=1) / np.sqrt(r2.size))

    ins, ins_se = summary(fit)
    out, out_se = summary(draw(size) for size in sizes)
    return MonteCarloOverlap(ins, ins_se, out, out_se, int(keep.sum()))
