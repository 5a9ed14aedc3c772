"""Phase diagram of linear transfer against the tuned ridge baseline: simulation vs theory,
the anomalous band, reproducibility, the figure and the command line.

Statistical tests follow ``tests/test_ridge_baseline.py``: a simulated mean agrees with a
closed form when ``|mean - theory| <= t_crit * SE + allowance``, ``t_crit`` the two-sided
Student-t value with ``replicates - 1`` degrees of freedom (estimated SE) at a family-wise
false-alarm rate ``ALPHA = 1e-3`` per test function, Bonferroni-corrected over its
comparisons.  Differences of two independent cells use Welch–Satterthwaite degrees of
freedom (``featfate_sym.stats.welch``).  The allowance is the module's own
(``FINITE_SIZE / d`` for the ridge risk's finite-size offset, justified in
``tests/test_ridge_baseline.py``, plus the ``lam`` grid's discretisation error from the
closed form); the readout's finite-``n`` excess is not allowed for but subtracted exactly.

Independent expectations typed here (SPEC section 2): the optimal ridge risk
``R(lam*) = (kappa^2 + sigma^2 psi) / ((1 + kappa)^2 - psi)``, ``psi = 1/gamma``,
``lam* = sigma^2 psi``, ``kappa = [(lam + psi - 1) + sqrt((lam + psi - 1)^2 + 4 lam)] / 2``;
the limit readout risk ``sin^2 theta``; its exact finite-``n`` risk
``sin^2 + (sigma^2 + sin^2)/(n - 2)``; the min-norm limit ``(1 - gamma) + gamma sigma^2 /
(1 - gamma)`` (``gamma < 1``), ``sigma^2 / (gamma - 1)`` (``gamma > 1``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.image import imread
from scipy import stats

from featfate_sym import stats as fstats
from featfate_sym.plotting import ridge_phase, style
from featfate_sym.studies.ridge_baseline_phase import (
    FINITE_SIZE,
    simulate_ridge_baseline_phase,
)
from checks import assert_one_line_error

ALPHA = 1e-3
SIGMA = 0.2
SCRIPT = Path(__file__).resolve().parents[1] / "numerics" / "ridge_baseline_phase.py"


def _optimal_ridge_risk(gamma: float, sigma: float) -> float:
    psi = 1.0 / gamma
    lam = sigma**2 * psi
    kappa = ((lam + psi - 1) + math.sqrt((lam + psi - 1) ** 2 + 4 * lam)) / 2
    return (kappa**2 + sigma**2 * psi) / ((1 + kappa) ** 2 - psi)


def _min_norm_risk(gamma: float, sigma: float) -> float:
    if gamma == 1.0:
        return math.inf
    if gamma < 1:
        return (1 - gamma) + gamma * sigma**2 / (1 - gamma)
    return sigma**2 / (gamma - 1)


def test_theory_columns_match_independent_closed_forms() -> None:
    # wiring of the registry into the grid: rows gamma, columns theta, lam = 0 readout
    thetas, gammas = (0.0, 0.4, math.pi / 2), (0.25, 1.0, 1.6, 2.0)
    res = simulate_ridge_baseline_phase(thetas, gammas, dim=40, replicates=2, seed=0)
    assert res.tuned_theory.shape == (len(gammas), len(thetas))
    for i, g in enumerate(gammas):
        n = res.n_samples[i]
        assert n == round(g * 40)
        for j, theta in enumerate(thetas):
            sin2 = math.sin(theta) ** 2
            r_opt = _optimal_ridge_risk(g, SIGMA)
            assert res.tuned_theory[i, j] == pytest.approx(r_opt - sin2, rel=1e-9, abs=1e-12)
            finite_lt = sin2 + (SIGMA**2 + sin2) / (n - 2)
            assert res.tuned_theory_n[i, j] == pytest.approx(r_opt - finite_lt, rel=1e-9, abs=1e-12)
            assert res.min_norm_theory[i, j] == pytest.approx(_min_norm_risk(g, SIGMA) - sin2, rel=1e-9, abs=1e-12)
            assert FINITE_SIZE / 40 <= res.allowance[i, j] < FINITE_SIZE / 40 + 1e-2


def test_simulated_tuned_transferability_matches_theory(seed: int) -> None:
    thetas = (0.0, math.pi / 4, math.pi / 2)
    gammas = (0.5, 1.0, 1.5, 2.0)
    res = simulate_ridge_baseline_phase(thetas, gammas, dim=100, noise_std=SIGMA, replicates=200, seed=seed)
    # 12 tuned cells + 9 min-norm cells with a finite-variance mean: 21 comparisons
    comparisons = res.cells + 9
    alpha_cells = ALPHA * res.cells / comparisons  # so that critical_value is Bonferroni over all 21
    z_crit = res.critical_value(alpha_cells)
    assert z_crit == pytest.approx(stats.t.isf(ALPHA / (2 * comparisons), res.replicates - 1))
    agrees = res.agreement(alpha_cells)
    bad = [
        f"gamma={gammas[i]}, theta={thetas[j]:.3f}: {res.tuned_mean[i, j]:.4f} +- {res.tuned_se[i, j]:.4f} "
        f"vs {res.tuned_theory_n[i, j]:.4f} (z={res.tuned_z[i, j]:.2f}, allowance {res.allowance[i, j]:.4f})"
        for i, j in zip(*np.nonzero(~agrees))
    ]
    assert not bad, "; ".join(bad)
    # the agreement is not vacuous: the spread of the theory over the grid is many times
    # the acceptance half-width
    half_width = z_crit * res.tuned_se + res.allowance
    assert np.ptp(res.tuned_theory_n) > 10 * half_width.max()
    # where the min-norm risk has a finite variance its mean agrees with its exact
    # finite-size expectation (Wishart, SPEC section 2) as well; the allowance 1/d is
    # generous since that expectation is exact
    finite = np.isfinite(res.min_norm_mean)
    assert finite[[0, 2, 3]].all() and not finite[1].any()
    gap = np.abs(res.min_norm_mean - res.min_norm_theory_n)[finite]
    assert np.all(gap <= z_crit * res.min_norm_se[finite] + FINITE_SIZE / res.dim)


def test_band_near_gamma_one_vanishes_against_tuned_baseline(seed: int) -> None:
    thetas = (math.pi / 4, math.pi / 2)
    gammas = (0.5, 1.0, 2.0)
    replicates = 200
    res = simulate_ridge_baseline_phase(thetas, gammas, dim=100, noise_std=SIGMA, replicates=replicates, seed=seed)
    peak = 1
    assert res.n_samples[peak] == res.dim
    # comparisons: 2 sign tests + 2 one-sided tuned signs + 4 one-sided tuned steps
    comparisons = 8
    z_one = fstats.t_critical(replicates - 1, ALPHA, comparisons, two_sided=False)
    # (a) against min-norm scratch T_lt is large and positive at gamma = 1.  Sign test
    # on "median > 1": the 25th percentile (linear interpolation) above 1 means at least
    # replicates - floor(0.25 (replicates - 1)) - 1 replicates above 1, which under
    # "P(T > 1) <= 1/2" has the binomial tail probability below.
    above = replicates - math.floor(0.25 * (replicates - 1)) - 1
    assert stats.binom.sf(above - 1, replicates, 0.5) < ALPHA / comparisons
    assert np.all(res.min_norm_lower_quartile[peak] > 1.0), res.min_norm_lower_quartile[peak]
    assert np.all(np.isinf(res.min_norm_theory[peak]))
    # (b) against the tuned baseline it is negative there, significantly
    assert np.all(res.tuned_mean[peak] + z_one * res.tuned_se[peak] < 0), res.tuned_mean[peak]
    # (c) and has no peak: T_lt^tuned decreases through gamma = 1 at each angle, the
    # differences significant (independent cells, so their variances add; Welch df)
    for j in range(len(thetas)):
        for lo, hi in ((0, 1), (1, 2)):
            cell_lo, cell_hi = (fstats.MeanSE(res.tuned_mean[k, j], res.tuned_se[k, j], replicates, replicates - 1)
                                for k in (lo, hi))
            step = fstats.welch(cell_lo, cell_hi)
            t_one = fstats.t_critical(step.df, ALPHA, comparisons, two_sided=False)
            assert step.mean > t_one * step.se, f"theta={thetas[j]:.3f}, gamma {gammas[lo]} -> {gammas[hi]}"
    # while against min-norm scratch gamma = 1 sits far above both neighbours
    assert np.all(res.min_norm_lower_quartile[peak] > np.maximum(res.min_norm_mean[0], res.min_norm_mean[2]) + 1)


def test_same_seed_same_numbers() -> None:
    kwargs = {"dim": 20, "replicates": 4}
    a = simulate_ridge_baseline_phase((0.0, 1.0), (0.5, 1.5), seed=7, **kwargs)
    b = simulate_ridge_baseline_phase((0.0, 1.0), (0.5, 1.5), seed=7, **kwargs)
    c = simulate_ridge_baseline_phase((0.0, 1.0), (0.5, 1.5), seed=8, **kwargs)
    for name in ("tuned_mean", "tuned_se", "min_norm_mean", "min_norm_median", "best_lam"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.tuned_mean, c.tuned_mean)
    # a Generator works too, and is consumed (a second call from it differs)
    rng = np.random.default_rng(7)
    d = simulate_ridge_baseline_phase((0.0, 1.0), (0.5, 1.5), seed=rng, **kwargs)
    e = simulate_ridge_baseline_phase((0.0, 1.0), (0.5, 1.5), seed=rng, **kwargs)
    assert not np.array_equal(d.tuned_mean, e.tuned_mean)


def test_batches_cover_replicates_and_tuning_uses_all_of_them(monkeypatch) -> None:
    from featfate_sym.studies import ridge_baseline_phase as module
    from featfate_sym.studies.ridge_baseline import default_lam_grid, simulate_ridge_baseline

    # every batch has >= 2 replicates (simulate_ridge_baseline's minimum), they add up,
    # and none exceeds the element budget unless the budget is below 4 replicates
    for replicates in (2, 3, 5, 17, 1000):
        for n, dim in ((10, 20), (400, 200), (5000, 300)):
            sizes = module._batches(replicates, n, dim, 81)
            assert sum(sizes) == replicates and min(sizes) >= 2
            assert max(sizes) <= max(4, module._BATCH_ELEMENTS // (dim * max(n, 81)))
    # one cell split into three calls from one stream: the statistics are those of the
    # concatenated replicates, and the ridge is tuned on their joint mean
    monkeypatch.setattr(module, "_BATCH_ELEMENTS", 20 * 81 * 4)
    lams = default_lam_grid()
    cell = module._cell(20, 1.5, SIGMA, 0.5, lams, 12, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    parts = [simulate_ridge_baseline(20, 1.5, SIGMA, theta=0.5, lams=lams, replicates=4, seed=rng) for _ in range(3)]
    risks = np.concatenate([p.risks for p in parts])
    np.testing.assert_array_equal(cell.risks, risks)
    np.testing.assert_array_equal(cell.lt_risks, np.concatenate([p.lt_risks for p in parts]))
    np.testing.assert_array_equal(cell.min_norm_risks, np.concatenate([p.min_norm_risks for p in parts]))
    assert cell.best_index == int(np.argmin(risks.mean(axis=0)))
    np.testing.assert_array_equal(cell.best_risks, risks[:, cell.best_index])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"thetas": (0.0, 4.0)}, "thetas"),
        ({"thetas": ()}, "thetas"),
        ({"gammas": (0.0, 1.0)}, "gammas"),
        ({"gammas": (0.1,)}, "gammas"),  # rounds to 2 samples at dim = 20
        ({"dim": 1}, "dim"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"replicates": 1}, "replicates"),
        ({"seed": -1}, "seed"),
        ({"lams": [0.0]}, "lams"),
    ],
)
def test_bad_input_names_parameter(kwargs: dict, name: str) -> None:
    args = {"thetas": (0.0, 1.0), "gammas": (0.5, 1.5), "dim": 20, "replicates": 3, "seed": 0}
    args.update(kwargs)
    thetas, gammas = args.pop("thetas"), args.pop("gammas")
    with pytest.raises(ValueError, match=name):
        simulate_ridge_baseline_phase(thetas, gammas, **args)


def test_figure_overlays_cells_on_the_theory_colour_scale(tmp_path) -> None:
    res = simulate_ridge_baseline_phase(
        (0.0, math.pi / 4, math.pi / 2), (0.5, 1.0, 2.0), dim=30, replicates=6, seed=1
    )
    with style.figure_style():
        fig = ridge_phase.ridge_phase(res, quick=True)
        path = tmp_path / "ridge_phase.png"
        fig.savefig(path, dpi=style.QUICK["dpi"])
    assert path.read_bytes().startswith(b"\x89PNG")
    assert imread(path)[..., :3].std() > 0.05
    by_gid = {c.get_gid(): (ax, c) for ax in fig.axes for c in ax.collections if c.get_gid()}
    ax, tuned = by_gid[ridge_phase.TUNED_GID]
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    assert tuned.norm is mesh.norm  # the markers use the map's own scale
    np.testing.assert_allclose(tuned.get_array(), res.tuned_mean.ravel())
    _, median = by_gid[ridge_phase.MIN_NORM_MEDIAN_GID]
    _, mean = by_gid[ridge_phase.MIN_NORM_MEAN_GID]
    assert median.get_offsets().shape[0] == 3  # the gamma = 1 row, mean infinite
    assert mean.get_offsets().shape[0] == 6
    np.testing.assert_allclose(np.asarray(median.get_offsets())[:, 1], 1.0)
    with pytest.raises(ValueError, match="thetas"):
        ridge_phase.ridge_phase(simulate_ridge_baseline_phase((2.0,), (0.5,), dim=20, replicates=2, seed=0))


@pytest.mark.parametrize(
    "argv",
    [["--dim", "3"], ["--gammas", "0,1"], ["--alpha", "2"], ["--replicates", "x"], ["--dim", "10", "--gammas", "0.1"]],
)
def test_cli_bad_argument_exits_2_with_one_line(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, prefix="ridge_baseline_phase:")
    assert proc.stdout == ""


def test_cli_writes_results_and_figure(tmp_path) -> None:
    out, figure = tmp_path / "res" / "cells.json", tmp_path / "fig.png"
    argv = ["--dim", "20", "--replicates", "8", "--thetas", "2", "--gammas", "0.5,1", "--seed", "3",
            "--quick", "--out", str(out), "--figure", str(figure)]
    proc = subprocess.run([sys.executable, "-W", "error", str(SCRIPT), *argv], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "max |z| =" in proc.stdout and "Bonferroni critical t" in proc.stdout
    assert "cell 4/4" in proc.stderr  # progress goes to stderr
    document = json.loads(out.read_text())
    assert len(document["cells"]) == 4 and document["config"]["seed"] == 3
    peak = [c for c in document["cells"] if c["gamma"] == 1.0]
    assert all(c["min_norm_theory"] is None and c["min_norm_mean"] is None for c in peak)
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cells.json", "fig.png", "res"]  # no temp files
