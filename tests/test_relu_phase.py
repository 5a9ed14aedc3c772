"""The (mu, n) phase boundary of two-layer ReLU transfer: the sign test and the boundary
interpolation on synthetic data with known answers, a tiny real grid, the figure and
the command line.

Expected values are written independently of the code: a crossing of
``T = a (log n* - log n)`` is at ``n*`` exactly (linear in ``log n``); the one-sided
false alarm of ``t_1`` (Cauchy) at ``2`` is ``1/2 - arctan(2)/pi``.

Statistical test: the fraction of null cells (mean-zero Gaussian differences, ``k = 6``)
called "helps" is compared with the documented ``P(t_5 > 2)`` by a two-sided binomial
z-test at ``|z| <= 3.3`` (false alarm 1e-3).

The tiny grid (``d = 8, m* = 4, m = 16``) checks shapes, reproducibility, the seed
wiring (a cell recomputed alone by ``simulate_relu_transfer`` matches, which also shows
that the scratch risk shared by every ``mu`` is the one on that cell's samples), the
deterministic bound ``R_lt >= |P_perp f_t|^2``, and one robust fact: at ``mu = 0`` (the
source is the target) linear transfer at ``n = 10`` beats scratch tenfold in every
replicate (measured: ``R_lt`` about 1e-3 or less, ``R_sc`` about 0.4).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from featfate_sym.studies.phase_boundary import (
    HELPS,
    HURTS,
    UNDECIDED,
    classify_sign,
    one_sided_false_alarm,
    paired_mean_se,
    sign_crossings,
    sign_map,
)
from featfate_sym.simulation.relu import TrainingOptions, simulate_relu_transfer
from featfate_sym.studies.relu_phase import SCALES, simulate_relu_phase
from checks import assert_one_line_error

SCRIPT = Path(__file__).resolve().parents[1] / "numerics" / "relu_phase.py"


# -- sign test -------------------------------------------------------------------------------
def test_classify_sign_cases():
    mean = np.array([1.0, -1.0, 0.1, -0.1, 0.0, 3.0, 0.05])
    se = np.array([0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.01])
    got = classify_sign(mean, se, z_crit=2.0)
    assert got.tolist() == [HELPS, HURTS, UNDECIDED, UNDECIDED, UNDECIDED, HELPS, HELPS]
    # the effect floor: 0.05 is significant (z = 5) but below min_effect
    assert classify_sign(mean, se, z_crit=2.0, min_effect=0.06).tolist()[-1] == UNDECIDED
    # exactly at the threshold is not beyond it
    assert classify_sign([0.2], [0.1], z_crit=2.0).tolist() == [UNDECIDED]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mean=[1.0, 2.0], se=[0.1]), "se"),
        (dict(mean=[np.nan], se=[0.1]), "mean"),
        (dict(mean=[1.0], se=[-0.1]), "se"),
        (dict(mean=[1.0], se=[0.1], z_crit=0.0), "z_crit"),
        (dict(mean=[1.0], se=[0.1], min_effect=-1.0), "min_effect"),
    ],
)
def test_classify_sign_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        classify_sign(**kwargs)


def test_paired_mean_se_and_bad_input():
    d = np.array([[1.0, 2.0, 6.0], [0.0, 0.0, 0.0]])
    mean, se = paired_mean_se(d)
    assert mean.tolist() == [3.0, 0.0]
    # sample variance of (1, 2, 6): ((4 + 1 + 9) / 2) = 7; se = sqrt(7 / 3)
    assert se[0] == pytest.approx(np.sqrt(7 / 3), rel=1e-14) and se[1] == 0.0
    with pytest.raises(ValueError, match="replicates"):
        paired_mean_se(np.ones((3, 1)))
    with pytest.raises(ValueError, match="finite"):
        paired_mean_se([1.0, np.inf])


def test_false_alarm_closed_forms():
    assert one_sided_false_alarm(2.0, 2) == pytest.approx(0.5 - np.arctan(2.0) / np.pi, rel=1e-12)
    assert one_sided_false_alarm(2.0, 10**6) == pytest.approx(stats.norm.sf(2.0), rel=1e-4)
    with pytest.raises(ValueError, match="replicates"):
        one_sided_false_alarm(2.0, 1)
    with pytest.raises(ValueError, match="z_crit"):
        one_sided_false_alarm(-1.0, 5)


def test_null_cells_called_at_the_documented_rate(seed):
    rng = np.random.default_rng(seed)
    cells, k = 40_000, 6
    mean, se = paired_mean_se(rng.standard_normal((cells, k)) * 0.3)
    calls = classify_sign(mean, se, z_crit=2.0)
    p = one_sided_false_alarm(2.0, k)
    for code in (HELPS, HURTS):
        count = int(np.sum(calls == code))
        z = (count - cells * p) / np.sqrt(cells * p * (1 - p))
        assert abs(z) <= 3.3, (code, count, cells * p)


# -- boundary ----------------------------------------------------------------------------------
N = np.array([25.0, 60.0, 144.0, 346.0, 832.0, 2000.0])


@pytest.mark.parametrize("n_star", [30.0, 100.0, 1234.5])
def test_crossing_of_a_line_in_log_n_is_exact(n_star):
    t = 0.7 * (np.log(n_star) - np.log(N))
    decision = classify_sign(t, np.zeros_like(t))
    (c,) = sign_crossings(N, t, decision)
    assert c.n_star == pytest.approx(n_star, rel=1e-12)
    assert c.n_below < n_star < c.n_above and c.direction == HURTS
    # reversed sign: hurts -> helps
    (c,) = sign_crossings(N, -t, -decision)
    assert c.n_star == pytest.approx(n_star, rel=1e-12) and c.direction == HELPS


def test_crossing_skips_undecided_cells_and_finds_every_change():
    t = np.array([0.5, 0.4, 0.01, -0.2, -0.3, 0.2])
    decision = np.array([HELPS, HELPS, UNDECIDED, HURTS, HURTS, HELPS])
    first, second = sign_crossings(N, t, decision)
    # first bracket spans the undecided cell: between n = 60 and n = 346
    assert (first.n_below, first.n_above, first.direction) == (60.0, 346.0, HURTS)
    log_star = np.log(60) + 0.4 / 0.6 * (np.log(346) - np.log(60))
    assert first.n_star == pytest.approx(np.exp(log_star), rel=1e-12)
    assert (second.n_below, second.n_above, second.direction) == (832.0, 2000.0, HELPS)
    assert second.n_star == pytest.approx(np.exp(np.log(832) + 0.6 * (np.log(2000) - np.log(832))), rel=1e-12)


def test_no_crossing_without_opposite_decided_neighbours():
    t = np.array([0.5, -0.01, 0.4, 0.3, 0.2, 0.1])
    decision = np.array([HELPS, UNDECIDED, HELPS, HELPS, HELPS, HELPS])
    assert sign_crossings(N, t, decision) == []
    assert sign_crossings(N, t, np.zeros(6, dtype=int)) == []


@pytest.mark.parametrize(
    "n, mean, decision, name",
    [
        ([25.0, 25.0], [1.0, -1.0], [1, -1], "n_values"),
        ([0.0, 25.0], [1.0, -1.0], [1, -1], "n_values"),
        ([10.0, 25.0], [1.0], [1, -1], "mean"),
        ([10.0, 25.0], [1.0, -1.0], [1, 2], "decision"),
        ([10.0, 25.0], [1.0, -1.0], [-1, -1], "decision"),
    ],
)
def test_crossings_bad_input(n, mean, decision, name):
    with pytest.raises(ValueError, match=name):
        sign_crossings(n, mean, decision)


def test_sign_map_shapes_and_rows():
    t = np.stack([0.7 * (np.log(100.0) - np.log(N)), 0.7 * (np.log(1000.0) - np.log(N))])
    jitter = np.array([-1e-3, 0.0, 1e-3])  # mean unchanged, se = 1e-3 / sqrt(3)
    m = sign_map(t[:, :, None] + jitter, N, z_crit=2.0)
    assert m.mean.shape == m.se.shape == m.decision.shape == (2, 6) and m.replicates == 3
    assert [c.n_star for c in m.crossings[0]] == pytest.approx([100.0], rel=1e-12)
    assert [c.n_star for c in m.crossings[1]] == pytest.approx([1000.0], rel=1e-12)
    with pytest.raises(ValueError, match="differences"):
        sign_map(t, N)


# -- the figure --------------------------------------------------------------------------------
def test_figure_draws_both_panels_and_the_boundary(tmp_path):
    from featfate_sym.plotting import style
    from featfate_sym.plotting.relu_phase import BOUNDARY_GID, relu_phase

    mus = np.array([0.0, 0.5, 1.0])
    t = np.stack([np.full(6, 0.3), 0.7 * (np.log(100.0) - np.log(N)), -0.2 * np.ones(6)])
    noisy = t[:, :, None] + np.array([-1e-3, 0.0, 1e-3])
    maps = {"lt": sign_map(noisy, N), "ft": sign_map(-noisy, N)}
    with style.figure_style():
        fig = relu_phase(mus, maps)
        fig.savefig(tmp_path / "phase.png", dpi=40)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax in panels:
        lines = [ln for ln in ax.get_lines() if ln.get_gid() == BOUNDARY_GID]
        assert len(lines) == 1
        y = lines[0].get_ydata()
        assert np.isnan(y[0]) and y[1] == pytest.approx(100.0) and np.isnan(y[2])
    assert (tmp_path / "phase.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="maps"):
        relu_phase(mus, {"xx": maps["lt"]})


# -- a tiny real grid ----------------------------------------------------------------------------
TINY = SCALES["tiny"]
PRE = TrainingOptions(lr=1.0, max_steps=2000, tol=1e-6)
TGT = TrainingOptions(lr=1.0, max_steps=1000, tol=1e-6)
GRID = dict(mus=[0.0, 0.5], n_values=[10, 80], replicates=2, seed=0, pretrain=PRE, target_training=TGT)


@pytest.fixture(scope="module")
def one_thread():
    # two Torch threads on a shared two-core machine spin against each other
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_grid(one_thread):
    return simulate_relu_phase(**GRID, **TINY)


def test_tiny_grid_shapes_and_bounds(tiny_grid):
    g = tiny_grid
    assert g.risk_linear_transfer.shape == g.risk_fine_tune.shape == g.lt_rank.shape == (2, 2, 2)
    assert g.risk_scratch.shape == g.scratch_converged.shape == (2, 2)
    assert g.overlap.shape == g.pretrain_steps.shape == (2, 2) and g.target_norm.shape == (2,)
    assert g.pretrained_weights.shape == (2, 2, TINY["student_width"], TINY["input_dim"])
    assert g.transferability("ft").shape == (2, 2, 2)
    for values in (g.risk_linear_transfer, g.risk_fine_tune, g.risk_scratch, g.overlap):
        assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert g.pretrain_converged.all(), g.pretrain_final_loss
    # no readout on frozen features beats the projection in population
    assert np.all(g.risk_linear_transfer >= g.overlap[:, None, :] - 1e-10 * g.target_norm)
    # the exact overlap grows with what the source lacks
    assert np.all(g.overlap[1] > 100 * g.overlap[0])
    with pytest.raises(ValueError, match="method"):
        g.transferability("scratch")


def test_tiny_grid_labelled_form(tiny_grid):
    """The dataset carries the same numbers under the simulations' variable names, with
    the grid's coordinates; T is the paired difference."""
    g, ds = tiny_grid, tiny_grid.dataset()
    assert ds["risk_lt"].dims == ("mu", "n", "replicate") and ds["risk_sc"].dims == ("n", "replicate")
    np.testing.assert_array_equal(ds["mu"], g.mus)
    np.testing.assert_array_equal(ds["n"], g.n_values)
    np.testing.assert_array_equal(ds["risk_ft"], g.risk_fine_tune)
    np.testing.assert_array_equal(ds["T_lt"], (ds["risk_sc"] - ds["risk_lt"]).transpose(*ds["T_lt"].dims))
    np.testing.assert_array_equal(ds["converged_pre"], g.pretrain_converged)


def test_tiny_grid_source_equal_to_target_transfers_at_small_n(tiny_grid):
    g = tiny_grid
    r_lt, r_sc = g.risk_linear_transfer[0, 0], g.risk_scratch[0]
    assert np.all(r_lt < 0.1 * r_sc), (r_lt, r_sc)
    assert np.all(g.transferability("lt")[0, 0] > 0.1)


def test_tiny_grid_reproducible_and_cells_paired(tiny_grid, one_thread):
    again = simulate_relu_phase(**GRID, **TINY)
    for name, value in tiny_grid.arrays().items():
        if name != "pretrain_seconds" and name != "seconds":
            assert np.array_equal(value, getattr(again, name)), name
    # replicate 1 of (mu = 0.5, n = 80), recomputed alone: teacher seed 1, sample seed 1
    out, _ = simulate_relu_transfer(**TINY, removed_fraction=0.5, n_samples=80, pretrain=PRE,
                                    target_training=TGT, task_seed=1, seed=1)
    assert out.risk_linear_transfer == tiny_grid.risk_linear_transfer[1, 1, 1]
    assert out.risk_fine_tune == tiny_grid.risk_fine_tune[1, 1, 1]
    assert out.risk_scratch == tiny_grid.risk_scratch[1, 1]
    assert out.overlap == tiny_grid.overlap[1, 1]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mus=[0.5, 0.0]), "mus"),
        (dict(mus=[1.5]), "mus"),
        (dict(n_values=[0, 10]), "n_values"),
        (dict(n_values=[10.5]), "n_values"),
        (dict(replicates=0), "replicates"),
        (dict(seed=-1), "seed"),
    ],
)
def test_grid_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_relu_phase(**{**GRID, **kwargs}, **TINY)


# -- command line --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needles",
    [
        (["--seeds", "1"], ["--seeds", "seeds", ">= 2"]),
        (["--mus", "0", "1.5"], ["--mus", ">= 0", "<= 1"]),
        (["--n-values", "0"], ["n-values", ">= 1"]),
        (["--z", "-1"], ["z", "> 0"]),
        (["--lr", "abc"], ["lr", "> 0"]),
        (["--scale", "huge"], ["--scale", "tiny"]),
        (["--out", "results.txt"], ["--out", ".json"]),
        (["--figure", "/no/such/folder/x.png"], ["--figure", "does not exist"]),
    ],
)
def test_cli_bad_argument_exits_2_with_one_line(args, needles):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, *needles, prefix="relu_phase:")


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_cli_writes_results_and_figure(tmp_path, capsys, one_thread, suffix):
    spec = importlib.util.spec_from_file_location("numerics_relu_phase", SCRIPT)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out, fig = tmp_path / f"phase{suffix}", tmp_path / "phase.png"
    argv = ["--scale", "tiny", "--mus", "0", "1", "--n-values", "10", "30", "--seeds", "2",
            "--pretrain-steps", "2000", "--target-steps", "200", "--out", str(out), "--figure", str(fig)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "boundary n*(mu)" in captured.out and "[8/8]" in captured.err
    if suffix == ".json":
        doc = json.loads(out.read_text())
    else:
        with np.load(out) as npz:
            doc = {k: npz[k] for k in npz.files}
        doc.update(json.loads(str(doc.pop("meta"))))
    assert np.asarray(doc["T_lt_mean"]).shape == (2, 2) and set(doc["crossings"]) == {"lt", "ft"}
    assert doc["settings"]["seed"] == 0 and doc["sign_test"]["z_crit"] == 2.0
    t_lt = np.asarray(doc["risk_scratch"])[None] - np.asarray(doc["risk_linear_transfer"])
    assert np.allclose(np.asarray(doc["T_lt_mean"]), t_lt.mean(axis=2), rtol=1e-12, atol=0)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # renamed into place, readable like a normal file, no temporary files left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, fig.name])
    assert out.stat().st_mode & 0o777 == 0o644
