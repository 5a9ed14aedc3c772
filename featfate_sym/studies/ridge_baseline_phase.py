"""Phase diagram of linear transfer against the tuned ridge baseline, simulated beside
the theory.

Over a ``(theta, gamma)`` grid, each cell runs
:func:`featfate_sym.studies.ridge_baseline.simulate_ridge_baseline` (ridge from
scratch over a ``lam`` grid, the grid value with the smallest mean risk, and the
linear-transfer readout on the same data) and sets the replicate means beside the
registry's closed forms (SPEC section 2, "Regularised scratch baseline"; Tahir, Ganguli &
Rotskoff, arXiv 2410.08194, the comparison against an optimally weight-decayed scratch):

- ``T_lt^tuned = R_ridge_opt - R_lt``: theory ``scratch.risk_optimal_ridge - lt.risk``
  (``lam = 0`` readout), the proportional limit, evaluated at the realised ratio
  ``n / d`` (``n = round(gamma d)``);
- ``T_lt = R_sc - R_lt`` against minimum-norm scratch: theory ``lt.transferability``,
  infinite at ``gamma = 1`` when ``sigma > 0`` (the anomalous band around it).

Statistical comparison of ``T_lt^tuned``.  The simulated mean is compared with
``tuned_theory_n = R_ridge_opt(n/d) - lt.risk_finite(n)``: the limit with the readout's
exact finite-``n`` risk (``E R_lt = sin^2 + (sigma^2 + sin^2)/(n - 2)``, paper Thm 3.7),
so the one finite-size effect known in closed form is not charged to the test.
``t = (mean - tuned_theory_n) / SE``; a cell agrees when
``|mean - tuned_theory_n| <= t_crit SE + allowance``, ``allowance = FINITE_SIZE / d +
grid_error``: ``FINITE_SIZE / d`` bounds the ridge risk's ``O(1/d)`` offset from its limit
(measured ``d (mean - limit)`` within about ``+-1`` at ``d = 100..400``, see
``tests/test_ridge_baseline.py``), and ``grid_error = min_grid R_ridge(lam) - R_ridge_opt >= 0``
is the ``lam`` grid's discretisation error, from the closed form.  ``t_crit`` is the
two-sided Student-t critical value with ``replicates - 1`` degrees of freedom (the SE is
estimated from the replicates; approximate normality of the cell mean) at ``alpha / m``
per cell, which makes the family-wise false-alarm rate over the ``m`` cells at most
``alpha`` (Bonferroni; conservative when the offsets are inside the allowance).

Minimum-norm baseline.  Its risk has infinite mean at ``|n - d| <= 1`` and infinite
variance at ``|n - d| <= 3`` (inverse-Wishart moments), so the mean and standard error
are reported only where ``|n - d| > 3``; the median is always reported.  Its exact
finite-size expectation ``scratch.risk_finite(n, d) - lt.risk_finite(n)`` is given beside
the limit, because near ``gamma = 1`` the two differ by much more than ``1/d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import featfate_sym as ff
from featfate_sym import stats
from featfate_sym.studies.ridge_baseline import (
    RidgeBaseline,
    default_lam_grid,
    simulate_ridge_baseline,
)

__all__ = ["FINITE_SIZE", "MIN_SAMPLES", "RidgeBaselinePhase", "simulate_ridge_baseline_phase"]

#: constant ``c`` of the finite-size allowance ``c / d`` for the tuned ridge risk
FINITE_SIZE = 1.0
#: fewest target samples per cell (the readout's risk has finite variance for ``n > 4``)
MIN_SAMPLES = 5
#: most float64 entries of one batch's design (or ``resid``) array, about 64 MB
_BATCH_ELEMENTS = 2**23


@dataclass(frozen=True)
class RidgeBaselinePhase:
    """Per-cell results over the grid; every 2-D array is ``(len(gammas), len(thetas))``.

    ``tuned_*``: ``T_lt^tuned`` (mean and standard error over replicates, the limit
    ``tuned_theory``, the limit with the exact finite-``n`` readout ``tuned_theory_n``,
    and the ``allowance`` for the remaining finite-size and grid effects).
    ``min_norm_*``: ``T_lt`` against minimum-norm scratch (mean and SE, NaN where its
    variance is infinite; median and 25th percentile, distribution-free summaries for the
    heavy tails near the peak, e.g. for a sign test; the limit ``lt.transferability``, ``+inf`` at
    ``gamma = 1``; the exact finite-size expectation, ``+inf`` at ``|n - d| <= 1``).
    ``best_lam``: the ridge grid value chosen per cell.
    """

    thetas: np.ndarray
    gammas: np.ndarray
    n_samples: np.ndarray
    dim: int
    noise_std: float
    replicates: int
    lams: np.ndarray
    best_lam: np.ndarray
    tuned_mean: np.ndarray
    tuned_se: np.ndarray
    tuned_theory: np.ndarray
    tuned_theory_n: np.ndarray
    allowance: np.ndarray
    min_norm_mean: np.ndarray
    min_norm_se: np.ndarray
    min_norm_median: np.ndarray
    min_norm_lower_quartile: np.ndarray
    min_norm_theory: np.ndarray
    min_norm_theory_n: np.ndarray

    @property
    def cells(self) -> int:
        return int(self.tuned_mean.size)

    @property
    def realised_gammas(self) -> np.ndarray:
        """``n / d`` per row (the nominal ``gamma`` rounded to whole samples)."""
        return self.n_samples / self.dim

    @property
    def tuned_z(self) -> np.ndarray:
        """``(mean - tuned_theory_n) / SE`` of ``T_lt^tuned`` per cell: a t statistic with
        ``replicates - 1`` degrees of freedom."""
        return (self.tuned_mean - self.tuned_theory_n) / self.tuned_se

    @property
    def df(self) -> int:
        """Degrees of freedom of each cell's estimated SE, ``replicates - 1``."""
        return self.replicates - 1

    def critical_value(self, alpha: float = 1e-3) -> float:
        """Two-sided Student-t critical value (``df = replicates - 1``) at ``alpha / cells``
        per cell, for a family-wise false-alarm rate ``alpha`` over the cells."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
        return stats.t_critical(self.df, alpha, self.cells)

    def agreement(self, alpha: float = 1e-3) -> np.ndarray:
        """Per cell: ``|mean - tuned_theory_n| <= t_crit SE + allowance``."""
        gap = np.abs(self.tuned_mean - self.tuned_theory_n)
        return gap <= self.critical_value(alpha) * self.tuned_se + self.allowance


def _is_integer(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _axis(name: str, values, low: float, high: float, low_open: bool, interval: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence (got shape {arr.shape})")
    above = arr > low if low_open else arr >= low
    if not (np.all(np.isfinite(arr)) and np.all(above) and np.all(arr <= high)):
        raise ValueError(f"{name} must lie in {interval} (got {arr.tolist()})")
    return arr


def _batches(replicates: int, n: int, dim: int, lam_count: int) -> list[int]:
    """Replicate counts per call, each >= 2, so that one call's arrays stay bounded."""
    largest = max(4, _BATCH_ELEMENTS // (dim * max(n, lam_count)))
    count = -(-replicates // largest)
    return [len(part) for part in np.array_split(np.arange(replicates), count)]


def _cell(dim, gamma, noise_std, theta, lams, replicates, rng) -> RidgeBaseline:
    """One cell in bounded batches, tuned over all its replicates together."""
    n = max(1, int(round(gamma * dim)))
    parts = [
        simulate_ridge_baseline(dim, gamma, noise_std, theta=theta, lams=lams, replicates=size, seed=rng)
        for size in _batches(replicates, n, dim, lams.size)
    ]
    return RidgeBaseline(
        lams=lams,
        risks=np.concatenate([p.risks for p in parts]),
        min_norm_risks=np.concatenate([p.min_norm_risks for p in parts]),
        lt_risks=np.concatenate([p.lt_risks for p in parts]),
        n_samples=n,
        dim=dim,
    )


def simulate_ridge_baseline_phase(
    thetas,
    gammas,
    *,
    dim: int = 200,
    noise_std: float = 0.2,
    replicates: int = 400,
    lams: np.ndarray | None = None,
    seed: int | np.random.Generator = 0,
    progress: Callable[[int, int], None] | None = None,
) -> RidgeBaselinePhase:
    """Simulated ``T_lt^tuned`` and ``T_lt`` (min-norm) over ``thetas x gammas``, with theory.

    ``thetas`` in ``[0, pi]``, ``gammas > 0`` with ``round(gamma * dim) >= MIN_SAMPLES``;
    ``replicates`` independent data sets per cell.  Each cell draws from its own stream,
    spawned from ``seed`` by cell index (row-major over ``gammas x thetas``), so the
    numbers depend only on the seed and the grid.  ``progress(done, total)`` is called
    after each cell.
    """
    thetas = _axis("thetas", thetas, 0.0, math.pi, low_open=False, interval="[0, pi]")
    gammas = _axis("gammas", gammas, 0.0, math.inf, low_open=True, interval="(0, inf)")
    if not _is_integer(dim) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (got {dim!r})")
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be a finite number >= 0 (got {noise_std})")
    if not _is_integer(replicates) or replicates < 2:
        raise ValueError(f"replicates must be an integer >= 2 (got {replicates!r})")
    n_samples = np.array([max(1, int(round(g * dim))) for g in gammas])
    if np.any(n_samples < MIN_SAMPLES):
        raise ValueError(
            f"gammas * dim must round to at least {MIN_SAMPLES} samples "
            f"(got n = {n_samples.tolist()} for dim = {dim})"
        )
    lams = default_lam_grid() if lams is None else np.asarray(lams, dtype=np.float64).ravel()
    if lams.size == 0 or not np.all(np.isfinite(lams)) or not np.all(lams > 0):
        raise ValueError("lams must be a non-empty array of finite numbers > 0")
    if isinstance(seed, np.random.Generator):
        streams = seed.spawn(gammas.size * thetas.size)
    elif _is_integer(seed) and seed >= 0:
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(gammas.size * thetas.size)]
    else:
        raise ValueError(f"seed must be an integer >= 0 or a numpy Generator (got {seed!r})")

    shape = (gammas.size, thetas.size)
    out = {name: np.full(shape, np.nan) for name in (
        "best_lam", "tuned_mean", "tuned_se", "min_norm_mean", "min_norm_se", "min_norm_median",
        "min_norm_lower_quartile")}
    root = math.sqrt(replicates)
    for i, (g, n) in enumerate(zip(gammas, n_samples)):
        for j, theta in enumerate(thetas):
            cell = _cell(dim, float(g), float(noise_std), float(theta), lams, replicates, streams[i * thetas.size + j])
            tuned = cell.transferability_tuned
            min_norm = cell.transferability_min_norm
            out["best_lam"][i, j] = cell.best_lam
            out["tuned_mean"][i, j] = tuned.mean()
            out["tuned_se"][i, j] = tuned.std(ddof=1) / root
            out["min_norm_median"][i, j] = np.median(min_norm)
            out["min_norm_lower_quartile"][i, j] = np.percentile(min_norm, 25)
            if abs(n - dim) > 3:  # finite variance of the min-norm risk
                out["min_norm_mean"][i, j] = min_norm.mean()
                out["min_norm_se"][i, j] = min_norm.std(ddof=1) / root
            if progress is not None:
                progress(i * thetas.size + j + 1, gammas.size * thetas.size)

    theory = _theory(thetas, n_samples, dim, float(noise_std), lams)
    return RidgeBaselinePhase(
        thetas=thetas,
        gammas=gammas,
        n_samples=n_samples,
        dim=int(dim),
        noise_std=float(noise_std),
        replicates=int(replicates),
        lams=lams,
        **out,
        **theory,
    )


def _registry(key: str, **values) -> np.ndarray:
    """``key`` evaluated at ``values`` broadcast to one shape (a compiled ``Piecewise``
    selects its branches elementwise and needs its conditions to share that shape)."""
    names = list(values)
    arrays = np.broadcast_arrays(*[np.asarray(values[k], dtype=np.float64) for k in names])
    return np.asarray(ff.get(key).evaluate(**dict(zip(names, arrays))), dtype=np.float64)


def _theory(thetas, n_samples, dim, sigma, lams) -> dict[str, np.ndarray]:
    """Closed forms from the registry on the grid (rows ``n``, columns ``theta``)."""
    shape = (n_samples.size, thetas.size)
    n = np.broadcast_to(n_samples[:, None].astype(np.float64), shape)
    ratio = n / dim
    th = np.broadcast_to(thetas[None, :], shape)
    r_opt = _registry("scratch.risk_optimal_ridge", gamma=ratio, sigma=sigma)
    r_grid = _registry("scratch.risk_ridge", gamma=ratio[:, :1], sigma=sigma, lam=lams[None, :])
    grid_error = np.maximum(np.min(r_grid, axis=1, keepdims=True) - r_opt[:, :1], 0.0)
    lt_limit = _registry("lt.risk", theta=th, lam=0.0)
    lt_finite = _registry("lt.risk_finite", n=n, theta=th, sigma=sigma)
    sc_finite = _registry("scratch.risk_finite", n=n, d=dim, sigma=sigma)
    return {
        "tuned_theory": r_opt - lt_limit,
        "tuned_theory_n": r_opt - lt_finite,
        "allowance": np.broadcast_to(FINITE_SIZE / dim + grid_error, shape).copy(),
        "min_norm_theory": _registry("lt.transferability", gamma=ratio, theta=th, sigma=sigma, lam=0.0),
        "min_norm_theory_n": sc_finite - lt_finite,
    }
