"""Smoke tests of the study and benchmark scripts in numerics/ (all but the tutorial, which
tests/test_tutorial.py runs): each runs as a user runs it (a subprocess, in an empty
folder, outputs into tmp_path) at the smallest settings its options allow, exits 0 and
prints (or writes) what it should.

The derivation benchmark (every result derived cold, about a minute a round) and the sweep
benchmark (a fixed preset grid, minutes) cannot be made small from their command lines:
their full runs are marked ``slow``; the default run checks ``--help`` and calls them
in-process on tiny inputs instead."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMERICS = ROOT / "numerics"
PNG = b"\x89PNG\r\n\x1a\n"


def run(name: str, *args, cwd: Path, timeout: float = 300, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """``python numerics/<name> *args`` in ``cwd``, single-threaded, headless; exit 0
    (unless ``check`` is false)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **(env or {})}
    proc = subprocess.run([sys.executable, str(NUMERICS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=cwd)
    assert not check or proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def load(name: str):
    """The script ``numerics/<name>`` as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(f"numerics_{Path(name).stem}", NUMERICS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numbers(text: str) -> list[float]:
    """Every token of ``text`` that parses as a float (``0.12+-0.03`` gives both)."""
    out = []
    for token in text.replace("+-", " ").replace("±", " ").replace("[", " ").replace("]", " ").split():
        try:
            out.append(float(token.rstrip("x")))
        except ValueError:
            pass
    return out


def rows_after(lines: list[str], header_start: str) -> list[str]:
    """The lines after the header starting ``header_start`` (and its ``---`` rule, if
    any), up to the next blank line."""
    i = next(k for k, line in enumerate(lines) if line.lstrip().startswith(header_start)) + 1
    if i < len(lines) and set(lines[i]) == {"-"}:
        i += 1
    rows = []
    while i < len(lines) and lines[i].strip():
        rows.append(lines[i])
        i += 1
    return rows


def test_bench_theory(tmp_path):
    proc = run("bench_theory.py", "--size", "20", "--repeat", "1", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("grid 20 x 20")
    names = ("lt.transferability", "ft.transferability_exact")
    rows = [row for row in rows_after(lines, "result") if row.split()[0] in names]
    results = [tuple(row.split()[:2]) for row in rows]
    assert results == [("lt.transferability", "dense"), ("ft.transferability_exact", "dense"),
                       ("lt.transferability", "open"), ("ft.transferability_exact", "open")]
    for row in rows:
        compiled, by_hand, ratio, diff = numbers(row)[-4:]
        assert compiled >= 0 and by_hand >= 0 and 0 < ratio < math.inf  # times printed to 0.1 ms
        assert diff < 1e-9  # the compiled theory agrees with the hand-written baseline
    assert "warning" not in proc.stdout and "fails" not in proc.stdout
    assert any(line.startswith("goal: ratio <= 1.5 -> ") for line in lines)
    assert lines[-1].startswith("lt-phase at full resolution") and math.isfinite(numbers(lines[-1].split(":")[1])[0])
    assert list(tmp_path.iterdir()) == []  # the figure went to a temporary folder


def test_bench_simulation(tmp_path):
    proc = run("bench_simulation.py", "--quick", "--dtype", "float64", "--conv-dim", "8", "--conv-cap", "200",
               cwd=tmp_path)
    lines = proc.stdout.splitlines()
    per_step = rows_after(lines, "dtype")
    assert [row.split()[:2] for row in per_step] == [["float64", "50"], ["float64", "100"], ["float64", "200"]]
    for row in per_step:
        values = numbers(row)[1:]  # ms conventional, engine, floor; speed-up, engine/floor
        assert len(values) == 5 and all(0 <= v < math.inf for v in values[:3]) and all(0 < v < math.inf for v in values[3:])
    steps = rows_after(lines, "gamma")
    assert [row.split()[:2] for row in steps] == [[g, p] for g in ("0.9", "1.0", "1.1") for p in ("scratch", "fine-tune")]
    for row in steps:
        medians = [int(v) for v in numbers(row)[1:7:2]]
        assert all(1 <= m <= 200 for m in medians)  # step counts within the cap
        converged = next(t for t in row.split() if t.count("/") == 2 and t.replace("/", "").isdigit()).split("/")
        assert all(0 <= int(c) <= 3 for c in converged)  # of 3 replicates


def test_finite_source_table(tmp_path):
    proc = run("finite_source_table.py", "--d", "8", "--replicates", "2", "--model-replicates", "2", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("gamma = 0.5, theta = pi/4") and "d = 8, 2 trained replicates" in lines[0]
    rows = lines[2:]
    assert [tuple(row.split()[:3]) for row in rows] == [
        (str(depth), f"{gs:.2f}", f"{noise:.2f}") for depth in (2, 3) for gs in (0.5, 2.0) for noise in (0.0, 0.5)]
    for row in rows:
        values = numbers(row.split("|", 1)[1])
        assert len(values) == 9 and all(math.isfinite(v) for v in values), row
        exact, c1 = values[:2]
        assert -2 < exact < 2 and -2 < c1 < 2


def test_ridge_baseline_table(tmp_path):
    proc = run("ridge_baseline_table.py", "--dim", "10", "--replicates", "2", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0] == "sigma = 0.2, d = 10, replicates = 2, seed = 42"
    rows = [row for row in rows_after(lines, "gamma") if "|" in row]  # the notes follow without a blank line
    assert len(rows) == 12
    assert [row.split("|")[1].split()[0] for row in rows] == ["pi/4", "pi/2"] * 6
    firsts = [row for row in rows if row.split("|")[0].strip()]
    assert [numbers(row)[0] for row in firsts] == [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    for row in firsts:
        gamma, r_opt, _, se, _, lam_star, lam_best = numbers(row.split("|")[0])
        assert 0 < r_opt < 1 and se >= 0 and lam_star == pytest.approx(0.04 / gamma, abs=1e-3) and lam_best > 0
    for k, row in enumerate(rows):
        values = numbers(row.split("|")[1])
        assert len(values) == 5 and all(math.isfinite(v) for v in values[:4])
        # T against min-norm scratch: +inf on the scratch peak (gamma = 1) only
        at_peak = numbers(firsts[k // 2])[0] == 1.0
        assert values[-1] == math.inf if at_peak else math.isfinite(values[-1])
    assert lines[-1].startswith("wall time")


def test_ridge_baseline_phase(tmp_path):
    out, figure = tmp_path / "out" / "ridge.json", tmp_path / "out" / "ridge.png"
    proc = run("ridge_baseline_phase.py", "--dim", "10", "--replicates", "2", "--thetas", "2", "--gammas", "0.5,2",
               "--quick", "--out", out, "--figure", figure, cwd=tmp_path)
    doc = json.loads(out.read_text())
    assert doc["config"]["dim"] == 10 and doc["config"]["gammas"] == [0.5, 2.0]
    assert len(doc["cells"]) == 4 and {c["gamma"] for c in doc["cells"]} == {0.5, 2.0}
    assert all(math.isfinite(c["tuned_theory"]) and math.isfinite(c["tuned_mean"]) for c in doc["cells"])
    assert 0 <= doc["cells_agreeing"] <= 4 and doc["critical_t"] > 0
    assert figure.read_bytes()[:8] == PNG and figure.stat().st_size > 1000
    assert f"results: {out}" in proc.stdout and f"figure: {figure}" in proc.stdout
    assert len(rows_after(proc.stdout.splitlines(), "gamma")) == 4


def test_relu_phase(tmp_path):
    out = tmp_path / "phase.json"
    proc = run("relu_phase.py", "--scale", "tiny", "--mus", "0", "1", "--n-values", "10", "30", "--seeds", "2",
               "--pretrain-steps", "200", "--target-steps", "100", "--out", out, cwd=tmp_path)
    assert "boundary n*(mu)" in proc.stdout and "[8/8]" in proc.stderr
    rows = rows_after(proc.stdout.splitlines(), "mu")
    assert [tuple(row.split()[:2]) for row in rows[:4]] == [("0.00", "10"), ("0.00", "30"), ("1.00", "10"), ("1.00", "30")]
    doc = json.loads(out.read_text())
    assert len(doc["T_lt_mean"]) == 2 and all(len(row) == 2 for row in doc["T_lt_mean"])
    assert all(math.isfinite(v) for row in doc["T_ft_mean"] for v in row)
    assert f"results: {out}" in proc.stdout


def test_bench_cell_side_by_side(tmp_path):
    """This tree against itself: the same numbers (difference 0), and a bad tree refused."""
    proc = run("bench_cell.py", "--gammas", "0.5", "1.5", "--d", "16", "--replicates", "2", "--against", ROOT,
               cwd=tmp_path)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 0.5 ") or line.startswith("| 1.5 ")]
    assert len(rows) == 2 and all(row.rstrip().endswith("| 0.0e+00 |") for row in rows), proc.stdout
    bad = run("bench_cell.py", "--against", tmp_path, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--against" in bad.stderr and "Traceback" not in bad.stderr


def test_bench_step_rule(tmp_path):
    proc = run("bench_step_rule.py", "--quick", cwd=tmp_path)
    assert "total new:" in proc.stdout and "total old:" in proc.stdout
    assert "all converged: True" in proc.stdout


def test_bench_relu_table_and_figure(tmp_path):
    figure = tmp_path / "relu.png"
    proc = run("bench_relu.py", "--scale", "tiny", "--mus", "0", "0.5", "--n-values", "10", "--seeds", "2",
               "--pretrain-steps", "50", "--target-steps", "50", "--mc-samples", "1000", "--figure", figure,
               cwd=tmp_path)
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.split()[:1] in (["0.00"], ["0.50"])]
    assert [row.split()[:2] for row in rows] == [["0.00", "10"], ["0.50", "10"]]
    for row in rows:
        overlap, mc, mc_se = numbers(row)[2:5]
        assert 0 <= overlap and mc > 0 and mc_se > 0
        assert abs(mc - overlap) < 0.5  # the Monte Carlo check is near the exact overlap
    assert sum("pretraining: 50 steps" in line for line in lines) == 2
    assert figure.read_bytes()[:8] == PNG


def test_bench_relu_time_steps(tmp_path):
    proc = run("bench_relu.py", "--scale", "tiny", "--mus", "0", "--n-values", "10", "--seeds", "1",
               "--time-steps", "3", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("scale tiny")
    per_step = [numbers(line.split(":")[1])[0] for line in lines if "ms/step" in line]
    assert len(per_step) == 2 and all(v > 0 and math.isfinite(v) for v in per_step)
    assert lines[-1].startswith("estimated table wall time")


def test_distances_table(tmp_path):
    figs = tmp_path / "figs"
    proc = run("distances_table.py", "--out", figs, "--quick", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    rows = rows_after(lines, "tasks")
    assert rows
    for row in rows:
        rhos = numbers(row)[-4:]
        assert len(rhos) == 4 and all(-1 <= r <= 1 for r in rhos)
    nearer, farther = rows_after(lines, "task ")
    assert nearer.startswith("nearer") and farther.startswith("farther")
    # the nearer task (smaller KL and W2) transfers worse
    kl_n, w2_n, t_n = numbers(nearer.split(")")[-1])[:3]
    kl_f, w2_f, t_f = numbers(farther.split(")")[-1])[:3]
    assert kl_n < kl_f and w2_n < w2_f and t_n < t_f
    angles = [row for row in rows_after(lines, "theta") if row.split()[0].endswith("deg")]
    assert [numbers(row.split()[0][:-3])[0] for row in angles] == [0.0, 22.5, 45.0, 67.5, 90.0, 180.0]
    assert all(len(numbers(row)) == 4 for row in angles)
    assert sorted(p.name for p in figs.iterdir()) == ["distances_vs_transfer.pdf", "distances_vs_transfer.png"]
    assert all(p.stat().st_size > 1000 for p in figs.iterdir())


def test_seed_false_alarms(tmp_path):
    name = "test_linear_transfer::test_k_feature_lemma_monte_carlo"
    proc = run("seed_false_alarms.py", "--seeds", "5:6", "--tests", name, cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0] == "seeds 5..5"
    row = next(line for line in lines if line.startswith(name))
    assert row.split()[1:3] == ["0.001", "1"] and row.split()[3] in ("0", "1")
    assert lines[-1].startswith("all")


# -- the two benchmarks that cannot be made small -----------------------------------------------
@pytest.mark.parametrize("name", ["bench_derive.py", "bench_sweep.py"])
def test_help(tmp_path, name):
    proc = run(name, "--help", cwd=tmp_path, timeout=120)
    assert proc.stdout.startswith(f"usage: {Path(name).stem}")
    assert list(tmp_path.iterdir()) == []


def test_bench_derive_timer_in_process():
    timed = load("bench_derive.py")._timed
    seconds, out = timed([sys.executable, "-c", "print('hello')"], dict(os.environ))
    assert out == "hello\n" and 0 < seconds < 60


def test_bench_sweep_in_process_on_a_tiny_grid(tmp_path, monkeypatch, capsys):
    """``main`` with the preset replaced by two cells at d = 12, two replicates."""
    from featfate_sym.sweeps import Grid

    script = load("bench_sweep.py")
    monkeypatch.setattr(script, "preset_grid", lambda name, seed=0: Grid.build(
        {"gamma": [0.5, 1.5]}, fixed={"d": 12, "theta": 0.7, "sigma": 0.2}, replicates=2, seed=seed))
    assert script.main(["--workers", "1", "--out", str(tmp_path / "sweep")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("preset quick: gamma(2) = 2 cells x 2 replicates")
    assert "cells 2 (2 computed, 0 resumed), runs 4" in lines
    converged = [line for line in lines if line.startswith("converged ")]
    assert converged and all(line.endswith("/4") for line in converged)
    assert (tmp_path / "sweep" / "results.nc").stat().st_size > 0


@pytest.mark.slow
def test_bench_derive_one_round(tmp_path):
    proc = run("bench_derive.py", "--repeat", "1", cwd=tmp_path, timeout=1200,
               env={"FEATFATE_CACHE": str(tmp_path / "cache")})
    lines = proc.stdout.splitlines()
    assert [line.split(",")[0].split()[0] for line in lines[1:]] == ["import", "derive", "derive"]
    for line in lines[1:]:
        best, median, ratio = numbers(line)[-3:]
        assert 0 < best <= median and math.isfinite(ratio)


@pytest.mark.slow
def test_bench_sweep_quick_preset(tmp_path):
    proc = run("bench_sweep.py", "--workers", "2", "--out", tmp_path / "sweep", cwd=tmp_path, timeout=1200)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("preset quick:")
    assert "cells 30 (30 computed, 0 resumed), runs 600" in lines
    assert (tmp_path / "sweep" / "results.nc").stat().st_size > 0


def test_anisotropic_table(tmp_path):
    proc = run("anisotropic_table.py", "--replicates", "2", "--d", "60", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[2].startswith("| spectrum | gamma | protocol | theory")
    rows = [line for line in lines[4:] if line.startswith("| ")]
    assert len(rows) >= 3 * 4 and all(len(row.split("|")) == 9 for row in rows)
    assert list(tmp_path.iterdir()) == []
    assert run("anisotropic_table.py", "--replicates", "1", cwd=tmp_path, check=False).returncode == 2


def test_classification_table_help_and_bad_input(tmp_path):
    """The table's full run (deep networks trained to convergence, tens of cells) takes
    minutes even at its smallest settings: the default run checks its interface, the slow
    one runs it."""
    assert run("classification_table.py", "--help", cwd=tmp_path).stdout.startswith("usage: classification_table")
    assert run("classification_table.py", "--dim", "2", cwd=tmp_path, check=False).returncode == 2


@pytest.mark.slow
def test_classification_table(tmp_path):
    proc = run("classification_table.py", "--dim", "10", "--replicates", "2", "--max-steps", "500", cwd=tmp_path,
               timeout=900)
    assert proc.stdout.startswith("| m | γ | θ/π | protocol")
    assert "Negative transfer at large" in proc.stdout


@pytest.mark.parametrize("script, bad", [
    ("sgd_transfer_table.py", ("--dim", "1")),
    ("trunk_fine_tuning_table.py", ("--d", "1")),
    ("time_course_table.py", ("--quick", "--bogus")),
])
def test_table_scripts_help_and_bad_input(tmp_path, script, bad):
    """The longer study tables (minutes at their defaults; their numbers are checked by
    tests/test_sgd_transfer.py, test_trunk_fine_tuning.py and test_time_course.py): help
    prints usage, a bad argument exits with status 2 and one line, no traceback."""
    assert run(script, "--help", cwd=tmp_path).stdout.startswith("usage: ")
    proc = run(script, *bad, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_sweep_summary(tmp_path):
    out = tmp_path / "sweep"
    sim = subprocess.run([sys.executable, "-m", "featfate_sym.simulate", "--gamma", "0.5,1.5", "--theta", "pi/4",
                          "--sigma", "0.2", "--d", "16", "--replicates", "3", "--workers", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr[-2000:]
    lines = run("sweep_summary.py", out, cwd=tmp_path).stdout.splitlines()
    assert lines[0] == "2 cells x 3 replicates"
    assert "converged_ft: 6/6" in lines and "converged_sc: 6/6" in lines
    rows = rows_after(lines, "quantity")
    assert [tuple(r.split()[:1]) for r in rows][:2] == [("risk_sc",), ("risk_sc",)]
    for row in rows:  # points, max |z| >= mean |z| >= 0, beyond is a count
        points, largest, mean, beyond = numbers(row)[-4:]
        assert points == 2 and largest >= mean >= 0 and beyond in (0, 1, 2)
    bad = run("sweep_summary.py", tmp_path / "missing", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "results" in bad.stderr and "Traceback" not in bad.stderr
