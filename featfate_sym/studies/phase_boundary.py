"""Sign of a simulated transferability and where it changes sign along the sample size.

A transferability is ``T = R_scratch - R_method`` (positive: transfer helps).  In a
simulated grid it is estimated per cell from ``k`` replicates of *paired* differences
``T_r = R_scratch,r - R_method,r`` (both procedures see the same target samples in
replicate ``r``), so the pair's shared sample noise cancels.

The test.  A cell counts as "helps" (``+1``) when ``mean > z_crit * se`` and
``mean > min_effect``, "hurts" (``-1``) when ``mean < -z_crit * se`` and
``mean < -min_effect``, else "undecided" (``0``); ``se`` is the standard error of the
mean of the ``k`` differences (``ddof = 1``).  If the differences are independent and
Gaussian with mean zero, ``mean / se`` is Student ``t`` with ``k - 1`` degrees of
freedom, so each call has the one-sided false-alarm rate
:func:`one_sided_false_alarm` (about 0.05 at ``z_crit = 2, k = 6``; no correction for
the number of cells).  ``min_effect`` keeps differences below the optimisation floor
(risks of runs stopped at a training-loss tolerance) from being called.

The boundary.  Along one row (fixed source, increasing ``n``) :func:`sign_crossings`
locates each sign change between consecutive *decided* cells by linear interpolation of
the mean ``T`` in ``log n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "HELPS",
    "HURTS",
    "UNDECIDED",
    "SignCrossing",
    "SignMap",
    "paired_mean_se",
    "one_sided_false_alarm",
    "classify_sign",
    "sign_crossings",
    "sign_map",
]

#: decision codes of :func:`classify_sign`
HELPS, HURTS, UNDECIDED = 1, -1, 0


def paired_mean_se(differences, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean of paired differences over ``axis``.

    Assumes the replicates along ``axis`` are independent draws (the standard error is
    ``std(ddof=1) / sqrt(k)``); needs ``k >= 2`` replicates and finite values.
    """
    diff = np.asarray(differences, dtype=float)
    if diff.ndim == 0:
        raise ValueError("differences must have a replicate axis (got a scalar)")
    k = diff.shape[axis]
    if k < 2:
        raise ValueError(f"differences must hold >= 2 replicates along axis {axis} (got {k})")
    if not np.all(np.isfinite(diff)):
        raise ValueError("differences must be finite")
    return diff.mean(axis=axis), diff.std(axis=axis, ddof=1) / np.sqrt(k)


def one_sided_false_alarm(z_crit: float, replicates: int) -> float:
    """``P(t_{k-1} > z_crit)``: the chance that one cell with true mean zero is called
    "helps" (equally "hurts"), for ``k = replicates`` Gaussian paired differences."""
    from featfate_sym.stats import t_false_alarm

    if not z_crit > 0:
        raise ValueError(f"z_crit must be > 0 (got {z_crit!r})")
    if int(replicates) != replicates or replicates < 2:
        raise ValueError(f"replicates must be an integer >= 2 (got {replicates!r})")
    return t_false_alarm(z_crit, int(replicates) - 1)


def classify_sign(mean, se, *, z_crit: float = 2.0, min_effect: float = 0.0) -> np.ndarray:
    """Per cell ``+1`` (helps), ``-1`` (hurts) or ``0`` (undecided); see the module docstring.

    Written without dividing by ``se``: ``se = 0`` with ``mean != 0`` is decided by the
    sign, ``mean = 0`` is always undecided.  ``mean`` and ``se`` must be finite, of the
    same shape, ``se >= 0``; ``z_crit > 0``; ``min_effect >= 0``.
    """
    mean = np.asarray(mean, dtype=float)
    se = np.asarray(se, dtype=float)
    if mean.shape != se.shape:
        raise ValueError(f"se must have the shape of mean {mean.shape} (got {se.shape})")
    if not np.all(np.isfinite(mean)):
        raise ValueError("mean must be finite")
    if not (np.all(np.isfinite(se)) and np.all(se >= 0)):
        raise ValueError("se must be finite and >= 0")
    if not (np.isfinite(z_crit) and z_crit > 0):
        raise ValueError(f"z_crit must be finite and > 0 (got {z_crit!r})")
    if not (np.isfinite(min_effect) and min_effect >= 0):
        raise ValueError(f"min_effect must be finite and >= 0 (got {min_effect!r})")
    helps = (mean > z_crit * se) & (mean > min_effect)
    hurts = (mean < -z_crit * se) & (mean < -min_effect)
    return np.where(helps, HELPS, np.where(hurts, HURTS, UNDECIDED)).astype(int)


@dataclass(frozen=True)
class SignCrossing:
    """A sign change of ``T`` along ``n``: at ``n_star`` (interpolated), between the
    decided cells at ``n_below < n_star < n_above``; ``direction`` is ``-1`` when ``T``
    goes from helps to hurts as ``n`` grows, ``+1`` from hurts to helps."""

    n_star: float
    n_below: float
    n_above: float
    direction: int


def sign_crossings(n_values, mean, decision) -> list[SignCrossing]:
    """Every sign change of ``T`` along one row of sample sizes.

    Assumptions: ``n_values`` are positive and strictly increasing; between two
    consecutive decided cells (undecided cells between them are skipped and lie inside
    the bracket) ``T`` changes sign once and is linear in ``log n``, so
    ``log n* = log n1 + T1 (log n2 - log n1) / (T1 - T2)``.  A decided cell's mean has
    the sign of its decision (as :func:`classify_sign` guarantees), so ``T1 - T2 != 0``.
    Returns ``[]`` when no two consecutive decided cells disagree.
    """
    n = np.asarray(n_values, dtype=float)
    t = np.asarray(mean, dtype=float)
    dec = np.asarray(decision)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"n_values must be a non-empty 1-D sequence (got shape {n.shape})")
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError("n_values must be finite and > 0")
    if np.any(np.diff(n) <= 0):
        raise ValueError("n_values must be strictly increasing")
    if t.shape != n.shape or not np.all(np.isfinite(t)):
        raise ValueError(f"mean must be finite with the shape of n_values {n.shape} (got {t.shape})")
    if dec.shape != n.shape or not np.all(np.isin(dec, (HELPS, HURTS, UNDECIDED))):
        raise ValueError(f"decision must hold -1, 0 or +1 with the shape of n_values {n.shape}")
    if np.any((dec != UNDECIDED) & (np.sign(t) != dec)):
        raise ValueError("decision must agree with the sign of mean in decided cells")
    decided = np.flatnonzero(dec != UNDECIDED)
    out = []
    for i, j in zip(decided[:-1], decided[1:]):
        if dec[i] == dec[j]:
            continue
        log_star = np.log(n[i]) + t[i] * (np.log(n[j]) - np.log(n[i])) / (t[i] - t[j])
        out.append(SignCrossing(float(np.exp(log_star)), float(n[i]), float(n[j]), int(dec[j])))
    return out


@dataclass(frozen=True)
class SignMap:
    """A transferability over a ``(source, n)`` grid: ``mean``, ``se`` and ``decision``
    are ``(rows, len(n_values))``; ``crossings[i]`` lists row ``i``'s sign changes; the
    test's ``z_crit``, ``min_effect`` and ``replicates``."""

    n_values: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    decision: np.ndarray
    crossings: tuple[tuple[SignCrossing, ...], ...]
    z_crit: float
    min_effect: float
    replicates: int


def sign_map(differences, n_values, *, z_crit: float = 2.0, min_effect: float = 0.0) -> SignMap:
    """Summarise paired differences of shape ``(rows, len(n_values), replicates)``: mean,
    standard error, decision per cell and the crossings of every row."""
    diff = np.asarray(differences, dtype=float)
    n = np.asarray(n_values, dtype=float)
    if diff.ndim != 3 or diff.shape[1] != n.size:
        raise ValueError(
            f"differences must have shape (rows, {n.size}, replicates) for {n.size} n_values (got {diff.shape})"
        )
    mean, se = paired_mean_se(diff, axis=2)
    decision = classify_sign(mean, se, z_crit=z_crit, min_effect=min_effect)
    crossings = tuple(tuple(sign_crossings(n, m, d)) for m, d in zip(mean, decision))
    return SignMap(n, mean, se, decision, crossings, float(z_crit), float(min_effect), diff.shape[2])
