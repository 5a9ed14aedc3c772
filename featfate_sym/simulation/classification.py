"""Monte Carlo of square-loss classifiers on Gaussian mixtures (issue 13).

The model of :mod:`featfate_sym.theory.classification`: labels ``y = +-1`` with
probability 1/2, inputs ``x = y mu + z``, ``z ~ N(0, I_d)``; source and target class means
``mu_s``, ``mu_t`` of norm ``m`` at angle ``theta``.  Each estimator is computed in closed
form from one sampled target set (float64 NumPy), and its test error on the target mixture
is computed *exactly* from the weights, ``Phi(-(w . mu_t)/|w|)``; only the training set is
random.

Estimators (the end points of the training protocols):

- scratch: the minimum-norm least-squares solution ``w = X^+ y``;
- linear transfer: ``w = a f`` on the frozen pretrained feature ``f = beta_s/|beta_s|``,
  ``a = f^T X^T y / |X f|^2``;
- fine-tuning (``c = 1`` end point): ``w = X^+ y + (I - P) beta_s``, ``P = X^+ X``, with
  ``beta_s = mu_s / (1 + |mu_s|^2)`` the population source minimiser.

Label flips: ``flip = p`` (``0 <= p < 1/2``) flips each *training* label independently
with probability ``p`` (``y -> -y``; the inputs keep the clean class means); the test
errors stay those of the clean target mixture.  The pretraining (population source) is
clean.

Every random function takes a NumPy ``Generator`` or an integer seed (one generator per
call; no global state).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from featfate_sym.parameters import random_generator

__all__ = [
    "METHODS",
    "check_flip",
    "class_means",
    "sample_mixture",
    "test_error",
    "pretrained_vector",
    "min_norm_classifier",
    "linear_transfer_classifier",
    "fine_tuned_classifier",
    "simulate_errors",
    "simulate_linear_transfer_errors",
    "deep_fine_tuning_errors",
    "extrapolate_inverse_dim",
]

#: the estimators :func:`simulate_errors` can compute
METHODS = ("scratch", "linear_transfer", "fine_tuning")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
    return int(value)


def _check_geometry(dim, norm, angle) -> tuple[int, float, float]:
    dim = _check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (got {dim})")
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError(f"norm must be > 0 (got {norm!r})")
    if not (np.isfinite(angle) and 0 <= angle <= math.pi):
        raise ValueError(f"angle must be in [0, pi] (got {angle!r})")
    return dim, float(norm), float(angle)


def class_means(dim: int, norm: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mu_s, mu_t)``: ``mu_t = norm e_1``, ``mu_s = norm (cos(angle) e_1 + sin(angle) e_2)``.

    Fixed axes lose nothing: the noise is isotropic, so every error depends on the means
    only through their norms and angle.
    """
    dim, norm, angle = _check_geometry(dim, norm, angle)
    mu_t = np.zeros(dim)
    mu_t[0] = norm
    mu_s = np.zeros(dim)
    mu_s[0], mu_s[1] = norm * math.cos(angle), norm * math.sin(angle)
    return mu_s, mu_t


def check_flip(flip) -> float:
    """The label-flip probability, validated: ``0 <= flip < 1/2`` (``ValueError`` naming it)."""
    if isinstance(flip, bool) or not isinstance(flip, (int, float, np.integer, np.floating)) or not (
            math.isfinite(flip) and 0 <= flip < 0.5):
        raise ValueError(f"flip (p_flip) must be in [0, 1/2) (got {flip!r})")
    return float(flip)


def sample_mixture(n_samples: int, mean: np.ndarray, seed, flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` draws ``(x, y)``: ``y = +-1`` equiprobable, ``x = y mean + z``; with
    ``flip = p`` the returned label is ``-y`` with probability ``p``, independently.  At
    ``flip = 0`` no flip is drawn (the same stream as without flips)."""
    n_samples = _check_positive_int("n_samples", n_samples)
    flip = check_flip(flip)
    rng = random_generator(seed)
    mean = np.asarray(mean, dtype=float)
    y = rng.choice(np.array([-1.0, 1.0]), size=n_samples)
    x = y[:, None] * mean[None, :] + rng.standard_normal((n_samples, mean.size))
    if flip > 0:
        y = np.where(rng.random(n_samples) < flip, -y, y)
    return x, y


def test_error(weights: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Exact test error ``Phi(-(w . mean)/|w|)`` of ``sign(w . x)`` on the mixture with
    class mean ``mean``; ``weights`` may be stacked on leading axes."""
    w = np.asarray(weights, dtype=float)
    norm = np.linalg.norm(w, axis=-1)
    if np.any(norm == 0):
        raise ValueError("a zero weight vector has no test error")
    return ndtr(-(w @ np.asarray(mean, dtype=float)) / norm)


test_error.__test__ = False  # a library function, not a pytest test


def pretrained_vector(mu_s: np.ndarray) -> np.ndarray:
    """End point of pretraining on the population source square loss:
    ``(I + mu_s mu_s^T)^{-1} mu_s = mu_s / (1 + |mu_s|^2)``, computed by a linear solve."""
    mu_s = np.asarray(mu_s, dtype=float)
    return np.linalg.solve(np.eye(mu_s.size) + np.outer(mu_s, mu_s), mu_s)


def _pinv_apply(x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``X^+ targets`` for a full-rank Gaussian design: ``X^T (X X^T)^{-1} targets`` when
    ``n < d`` (minimum norm), ``(X^T X)^{-1} X^T targets`` when ``n >= d`` (least squares);
    a Cholesky-free linear solve, much cheaper than the SVD of ``lstsq``."""
    n, dim = x.shape
    if n < dim:
        return x.T @ np.linalg.solve(x @ x.T, targets)
    return np.linalg.solve(x.T @ x, x.T @ targets)


def min_norm_classifier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``X^+ y``: minimum-norm least squares (the scratch end point)."""
    return _pinv_apply(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def linear_transfer_classifier(x: np.ndarray, y: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """``a f`` with ``f`` the unit feature direction and ``a = f^T X^T y / |X f|^2``."""
    f = np.asarray(feature, dtype=float)
    f = f / np.linalg.norm(f)
    u = x @ f
    return (u @ y) / (u @ u) * f


def fine_tuned_classifier(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """``X^+ y + (I - P) start``, ``P = X^+ X``: the ``c = 1`` fine-tuning end point."""
    start = np.asarray(start, dtype=float)
    x = np.asarray(x, dtype=float)
    sol = _pinv_apply(x, np.column_stack([np.asarray(y, dtype=float), x @ start]))
    return sol[:, 0] + start - sol[:, 1]


def simulate_errors(
    n_samples: int,
    dim: int,
    angle: float,
    norm: float,
    replicates: int,
    seed,
    methods=METHODS,
    flip: float = 0.0,
) -> dict[str, np.ndarray]:
    """Exact test errors of the chosen estimators on ``replicates`` independent target sets
    (training labels flipped with probability ``flip``).

    Returns ``{method: array of shape (replicates,)}``; the methods share each target set
    (paired replicates).
    """
    flip = check_flip(flip)
    n_samples = _check_positive_int("n_samples", n_samples)
    replicates = _check_positive_int("replicates", replicates)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method {sorted(unknown)[0]!r}; methods are {', '.join(METHODS)}")
    mu_s, mu_t = class_means(dim, norm, angle)
    beta_s = pretrained_vector(mu_s)
    rng = random_generator(seed)
    out = {name: np.empty(replicates) for name in methods}
    for r in range(replicates):
        x, y = sample_mixture(n_samples, mu_t, rng, flip)
        if "scratch" in out:
            out["scratch"][r] = test_error(min_norm_classifier(x, y), mu_t)
        if "linear_transfer" in out:
            out["linear_transfer"][r] = test_error(linear_transfer_classifier(x, y, beta_s), mu_t)
        if "fine_tuning" in out:
            out["fine_tuning"][r] = test_error(fine_tuned_classifier(x, y, beta_s), mu_t)
    return out


def simulate_linear_transfer_errors(
    n_samples: int,
    dim: int,
    angle: float,
    norm: float,
    replicates: int,
    seed,
    chunk: int = 2048,
) -> np.ndarray:
    """The linear-transfer errors of :func:`simulate_errors`, vectorised over replicates
    (for the many replicates a small-``n`` check needs); full target sets are drawn."""
    n_samples = _check_positive_int("n_samples", n_samples)
    replicates = _check_positive_int("replicates", replicates)
    chunk = _check_positive_int("chunk", chunk)
    mu_s, mu_t = class_means(dim, norm, angle)
    f = pretrained_vector(mu_s)
    f = f / np.linalg.norm(f)
    rng = random_generator(seed)
    out = np.empty(replicates)
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        y = rng.choice(np.array([-1.0, 1.0]), size=(size, n_samples))
        x = y[:, :, None] * mu_t + rng.standard_normal((size, n_samples, mu_t.size))
        u = x @ f
        a = np.einsum("ri,ri->r", u, y) / np.einsum("ri,ri->r", u, u)
        out[start:start + size] = test_error(a[:, None] * f[None, :], mu_t)
    return out


def deep_fine_tuning_errors(
    n_samples: int,
    dim: int,
    angle: float,
    norm: float,
    depth: int,
    replicates: int,
    *,
    seed: int,
    flip: float = 0.0,
) -> dict[str, np.ndarray]:
    """Fine-tuning a deep linear network on the square loss of a Gaussian mixture
    (target training labels flipped with probability ``flip``).

    The network (depth ``depth >= 2``) is pretrained by gradient descent from small
    balanced initialisation on the *population* source loss ``E (w.x - y)^2 = w^T (I +
    mu_s mu_s^T) w - 2 mu_s^T w + 1`` (the deep-linear engine's sufficient statistics,
    :mod:`featfate_sym.simulation.deep_linear`), then every layer is trained by gradient
    descent on ``n_samples`` target samples to convergence.  Returns per replicate the exact
    test errors ``Phi(-(w.mu_t)/|w|)`` of the fine-tuned end-to-end ``w`` (``"deep"``) and,
    on the same data and pretrained network, of the ``c = 1`` end point ``X^+ y + (I - P)
    beta_pre`` (``"c1"``); ``"converged"``: both trainings reached their tolerances.
    Seeded: the same seed gives the same numbers.
    """
    import torch

    from featfate_sym.simulation import tasks
    from featfate_sym.simulation.deep_linear import EngineOptions, Trial, fine_tune, pretrain

    if isinstance(depth, bool) or int(depth) != depth or depth < 2:
        raise ValueError(f"L must be an integer >= 2 (a one-layer network has no layers to balance; got {depth!r})")
    n_samples = _check_positive_int("n", n_samples)
    replicates = _check_positive_int("replicates", replicates)
    mu_s, mu_t = class_means(dim, norm, angle)
    rng = random_generator(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))

    def batch(array):
        return torch.as_tensor(np.asarray(array, dtype=float)).expand(replicates, *np.shape(array)).clone()

    start = pretrained_vector(mu_s)
    source = tasks.RegressionData(
        sxx=batch(np.eye(dim) + np.outer(mu_s, mu_s)), sxy=batch(mu_s), yy=batch(1.0),
        minimiser=batch(start), min_loss=batch(1.0 - float(mu_s @ start)),
        top_eigenvalue=batch(1.0 + norm**2), n_samples=0)
    options = EngineOptions()
    pretrained, pre_run = pretrain(source, int(depth), generator, options)
    x, y = zip(*(sample_mixture(n_samples, mu_t, rng, flip) for _ in range(replicates)))
    target = tasks._statistics(torch.as_tensor(np.stack(x)), torch.as_tensor(np.stack(y)), keep_design=False)
    weights, ft_run = fine_tune(pretrained, target, options)
    deep = Trial.end_to_end(weights).numpy()
    beta_pre = Trial.end_to_end(pretrained).numpy()
    c1 = np.stack([fine_tuned_classifier(xi, yi, b) for xi, yi, b in zip(x, y, beta_pre)])
    return {
        "deep": np.array([test_error(w, mu_t) for w in deep]),
        "c1": np.array([test_error(w, mu_t) for w in c1]),
        "converged": (pre_run.converged & ft_run.converged).numpy(),
    }


def extrapolate_inverse_dim(dims, estimates):
    """Weighted least-squares fit ``mean(d) = a + b/d`` to Monte Carlo means at several
    dimensions, weights ``1/SE^2``; returns the intercept ``a`` (the ``d -> oo`` value) as a
    :class:`featfate_sym.stats.MeanSE` with its SE from ``(X^T W X)^{-1}`` (the SEs taken as
    known), ``n`` the total replicates and ``df`` the smallest replicate ``df`` (a
    conservative Student-t reference).  Needs at least two distinct dimensions and positive
    SEs (``ValueError`` otherwise)."""
    from featfate_sym.stats import MeanSE

    dims = np.asarray(dims, dtype=float)
    if dims.ndim != 1 or dims.size < 2 or np.unique(dims).size < 2 or not np.all(dims > 0):
        raise ValueError(f"dims must hold at least two distinct positive dimensions (got {dims!r})")
    if len(estimates) != dims.size:
        raise ValueError(f"estimates must have one entry per dimension ({len(estimates)} vs {dims.size})")
    means = np.array([e.mean for e in estimates], dtype=float)
    ses = np.array([e.se for e in estimates], dtype=float)
    if not np.all(np.isfinite(means)) or not np.all(np.isfinite(ses) & (ses > 0)):
        raise ValueError("estimates need finite means and positive finite SEs")
    design = np.column_stack([np.ones_like(dims), 1.0 / dims])
    weights = 1.0 / ses**2
    normal = design.T @ (weights[:, None] * design)
    cov = np.linalg.inv(normal)
    coef = cov @ (design.T @ (weights * means))
    return MeanSE(float(coef[0]), float(math.sqrt(cov[0, 0])), int(sum(e.n for e in estimates)),
                  float(min(e.df for e in estimates)))
