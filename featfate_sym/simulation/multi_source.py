"""Monte Carlo of linear transfer onto rank-k pretrained features, and of scratch.

The model of :mod:`featfate_sym.theory.multi_source`: a unit target teacher ``beta_t``,
``k`` source teachers ``beta_s^(j) = cos(theta) beta_t + sin(theta) xi_j`` with
``xi_1..xi_k`` orthonormal and orthogonal to ``beta_t``; inputs ``x ~ N(0, I_d)``, labels
``y = X beta_t + eps``, ``eps ~ N(0, sigma^2 I_n)``.  Per replicate the teachers are drawn
afresh (``beta_t, xi_1..xi_k`` the orthonormal columns of the QR factor of a Gaussian
``d x (k + 1)`` matrix: a uniformly random orthonormal frame), then one target set.

Estimators (the end points of the training protocols), computed in closed form in float64:

- linear transfer: the pretrained features span ``span(B_s)`` (the balanced-flow argument of
  the theory module), so the readout is ordinary least squares of ``y`` on ``F = X Q``, ``Q``
  an orthonormal basis of ``span(B_s)`` (QR of ``B_s``): ``beta_hat = Q (F^T F)^-1 F^T y``;
- scratch: the minimum-norm least-squares solution ``X^+ y``
  (``X^T (X X^T)^-1 y`` for ``n < d``, ``(X^T X)^-1 X^T y`` for ``n > d``).

The risk of each is computed exactly from the weights, ``|beta_hat - beta_t|^2``; only the
teachers and the training set are random.  Replicates are vectorised in chunks (stacked
linear algebra).  Every random function takes a NumPy ``Generator`` or an integer seed (one
generator per call; no global state): same seed, same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from featfate_sym.parameters import random_generator

__all__ = [
    "METHODS",
    "source_teachers",
    "feature_basis",
    "linear_transfer_estimate",
    "min_norm_estimate",
    "simulate_risks",
]

#: the estimators :func:`simulate_risks` computes
METHODS = ("linear_transfer", "scratch")

#: numbers per chunk of stacked design matrices (about 32 MB of float64)
_CHUNK_ENTRIES = 4_000_000


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def _angle(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
            math.isfinite(value) and 0 <= value <= math.pi):
        raise ValueError(f"theta must be in [0, pi] (got {value!r})")
    return float(value)


def _noise(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"sigma must be in [0, inf) (got {value!r})")
    return float(value)


def _check_geometry(dim, count, angle) -> tuple[int, int, float]:
    count = _positive_int("k", count)
    dim = _positive_int("d", dim, 2)
    if dim < count + 1:
        raise ValueError(f"d must be >= k + 1 = {count + 1}: k directions orthogonal to the target (got d = {dim})")
    return dim, count, _angle(angle)


def source_teachers(dim: int, count: int, angle: float, seed, replicates: int | None = None):
    """``(beta_t, B_s)``: a unit target teacher and the ``d x k`` matrix of source teachers
    ``cos(angle) beta_t + sin(angle) xi_j`` (``xi_j`` orthonormal, orthogonal to ``beta_t``),
    drawn as a uniformly random orthonormal frame.  With ``replicates``, stacked on a
    leading axis: shapes ``(replicates, d)`` and ``(replicates, d, k)``."""
    dim, count, angle = _check_geometry(dim, count, angle)
    rng = random_generator(seed)
    size = 1 if replicates is None else _positive_int("replicates", replicates)
    frame, _ = np.linalg.qr(rng.standard_normal((size, dim, count + 1)))
    beta_t = frame[:, :, 0]
    sources = math.cos(angle) * beta_t[:, :, None] + math.sin(angle) * frame[:, :, 1:]
    if replicates is None:
        return beta_t[0], sources[0]
    return beta_t, sources


def feature_basis(sources: np.ndarray) -> np.ndarray:
    """An orthonormal basis ``Q`` of the span of the source teachers (columns of ``sources``,
    stacked on leading axes allowed): the pretrained features' span.  Raises ``ValueError``
    if the teachers are not of full column rank (``theta`` in ``{0, pi}`` with ``k >= 2``)."""
    b = np.asarray(sources, dtype=float)
    if b.ndim < 2:
        raise ValueError(f"sources must be a (d, k) array (got shape {b.shape})")
    q, r = np.linalg.qr(b)
    diag = np.abs(np.diagonal(r, axis1=-2, axis2=-1))
    # the smallest singular value of B_s is sin(theta) (G = sin^2 I + cos^2 J); a rank
    # deficiency shows as a diagonal entry of R at rounding level
    if np.any(diag <= 1e-12 * np.max(diag, axis=-1, keepdims=True)):
        raise ValueError("the source teachers are linearly dependent (theta in {0, pi} with k >= 2): "
                         "the model needs rank-k features")
    return q


def linear_transfer_estimate(x: np.ndarray, y: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``Q (F^T F)^-1 F^T y`` with ``F = X Q``: least squares on the frozen features (stacked
    on leading axes allowed).  Needs ``n >= k`` (full column rank of ``F``)."""
    x, y, q = (np.asarray(a, dtype=float) for a in (x, y, basis))
    if x.shape[-2] < q.shape[-1]:
        raise ValueError(f"n must be >= k for a unique least-squares readout (got n = {x.shape[-2]}, "
                         f"k = {q.shape[-1]})")
    f = x @ q
    ft = np.swapaxes(f, -1, -2)
    w = np.linalg.solve(ft @ f, (ft @ y[..., None]))[..., 0]
    return (q @ w[..., None])[..., 0]


def min_norm_estimate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``X^+ y`` (stacked on leading axes allowed): ``X^T (X X^T)^-1 y`` when ``n < d``
    (minimum norm), ``(X^T X)^-1 X^T y`` when ``n >= d`` (least squares); linear solves,
    cheaper than the SVD of ``lstsq``, exact for a full-rank Gaussian design."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n, dim = x.shape[-2], x.shape[-1]
    xt = np.swapaxes(x, -1, -2)
    if n < dim:
        return (xt @ np.linalg.solve(x @ xt, y[..., None]))[..., 0]
    return np.linalg.solve(xt @ x, xt @ y[..., None])[..., 0]


def simulate_risks(
    n_samples: int,
    dim: int,
    count: int,
    angle: float,
    noise_std: float,
    replicates: int,
    seed,
    methods=METHODS,
) -> dict[str, np.ndarray]:
    """Exact risks ``|beta_hat - beta_t|^2`` of the chosen estimators on ``replicates``
    independent draws of the teachers and the target set.

    ``n_samples`` target samples in ``dim`` dimensions, ``count`` = k source tasks at angle
    ``angle`` (theta) to the target, label noise ``noise_std`` (sigma).  Returns ``{method:
    array of shape (replicates,)}``; the methods share each draw (paired replicates), so
    ``scratch - linear_transfer`` estimates the transferability replicate by replicate.
    """
    n_samples = _positive_int("n", n_samples)
    dim, count, angle = _check_geometry(dim, count, angle)
    noise_std = _noise(noise_std)
    replicates = _positive_int("replicates", replicates)
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise ValueError(f"unknown method {sorted(unknown)[0] if unknown else None!r}; methods are {', '.join(METHODS)}")
    if "linear_transfer" in methods and n_samples < count:
        raise ValueError(f"n must be >= k for a unique least-squares readout (got n = {n_samples}, k = {count})")
    if "scratch" in methods and n_samples == dim:
        # X^+ y exists, but the chunked solver below uses X X^T or X^T X, singular-prone at
        # n = d; the expected risk is infinite there anyway (with noise)
        raise ValueError(f"n = d = {dim} sits on scratch's interpolation peak; choose n != d")
    rng = random_generator(seed)
    chunk = max(1, _CHUNK_ENTRIES // (n_samples * dim))
    out = {name: np.empty(replicates) for name in methods}
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        beta_t, sources = source_teachers(dim, count, angle, rng, replicates=size)
        x = rng.standard_normal((size, n_samples, dim))
        y = (x @ beta_t[..., None])[..., 0] + noise_std * rng.standard_normal((size, n_samples))
        if "linear_transfer" in out:
            estimate = linear_transfer_estimate(x, y, feature_basis(sources))
            out["linear_transfer"][start:start + size] = np.sum((estimate - beta_t) ** 2, axis=-1)
        if "scratch" in out:
            estimate = min_norm_estimate(x, y)
            out["scratch"][start:start + size] = np.sum((estimate - beta_t) ** 2, axis=-1)
    return out
