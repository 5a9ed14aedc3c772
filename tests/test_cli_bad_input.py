"""Bad input to every command and study script, run as a user runs it (a subprocess):
exit status 2, one line on stderr naming the parameter, no traceback, nothing written,
and no work done first (the huge range returns at once)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from checks import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]


def run(command, *args, timeout=120):
    """``command``: a module name (``featfate_sym.X``) or a script under numerics/."""
    target = ["-m", command] if command.startswith("featfate_sym.") else [str(ROOT / "numerics" / command)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *target, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _cannot_write(directory: Path) -> bool:
    try:
        handle, name = tempfile.mkstemp(dir=directory)
    except OSError:
        return True
    os.close(handle)
    os.unlink(name)
    return False


@pytest.fixture
def readonly(tmp_path):
    """A directory in which no file can be created (as root, chmod does not stop
    writes: then /sys, where the kernel refuses new files)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if _cannot_write(folder):
            yield folder
        elif Path("/sys").is_dir() and _cannot_write(Path("/sys")):
            yield Path("/sys")
        else:
            pytest.skip("no read-only directory available here")
    finally:
        folder.chmod(0o755)


@pytest.fixture
def existing_file(tmp_path):
    path = tmp_path / "existing.txt"
    path.write_text("keep me\n")
    return path


def _cases(tmp, readonly, existing):
    """(command, args, needles): every bad input of every command."""
    text = tmp / "notes.nc"
    text.write_text("plain text, not netCDF\n")
    hdf = tmp / "data.nc"
    hdf.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    empty_sweep = tmp / "unfinished-sweep"
    empty_sweep.mkdir()
    eval_ok = ["lt.transferability", "--eval", "theta=1", "sigma=0.2", "lam=0"]
    small = ["--gamma", "1.5", "--d", "12", "--replicates", "2", "--quiet", "--workers", "1"]
    return [
        # derive
        ("featfate_sym.derive", ["--write-docs", existing], ["--write-docs", "existing file"]),
        ("featfate_sym.derive", ["--write-docs", ""], ["--write-docs", "empty path"]),
        ("featfate_sym.derive", ["--write-docs", readonly / "docs"], ["--write-docs", "not writable"]),
        ("featfate_sym.derive", [*eval_ok, "gamma=0.5", "gamma=0.6"], ["parameter gamma", "twice"]),
        ("featfate_sym.derive", [*eval_ok, "gamma=0.5", "--dps", "5", "--dps", "6"], ["--dps", "twice"]),
        ("featfate_sym.derive", [*eval_ok, "gamma=nan"], ["parameter gamma", "'nan'"]),
        # simulate
        ("featfate_sym.simulate", ["--out", existing, *small], ["--out", "existing file"]),
        ("featfate_sym.simulate", ["--out", "", *small], ["--out", "empty path"]),
        ("featfate_sym.simulate", ["--out", readonly / "sweep", *small], ["--out", "not writable"]),
        ("featfate_sym.simulate", ["--gamma", "0.5:2:1000000000", "--dry-run"], ["--gamma", "100000"]),
        ("featfate_sym.simulate", ["--gamma", "0.1:2:1000", "--theta", "0:1:1001", "--sigma", "0.2", "--dry-run"],
         ["1001000 cells", "1000000"]),
        ("featfate_sym.simulate", ["--gamma", "0.5", "--gamma", "0.6", "--dry-run"], ["--gamma", "twice"]),
        ("featfate_sym.simulate", ["--gamma-s", "1", "--gamma_s", "2", "--dry-run"], ["--gamma_s", "twice"]),
        ("featfate_sym.simulate", ["--gamma", "0.5,0.5", "--dry-run"], ["gamma", "repeated values"]),
        ("featfate_sym.simulate", ["--workers", "0", "--dry-run"], ["--workers", ">= 1"]),
        ("featfate_sym.simulate", ["--lam", "nan", "--dry-run"], ["--lam", "[0, inf)"]),
        ("featfate_sym.simulate", ["--theta", "__import__('os')", "--dry-run"], ["--theta", "a number"]),
        # plot
        ("featfate_sym.plot", ["lt-phase", "--out", existing], ["--out", "existing file"]),
        ("featfate_sym.plot", ["lt-phase", "--out", ""], ["--out", "empty path"]),
        ("featfate_sym.plot", ["lt-phase", "--out", readonly / "figs"], ["--out", "not writable"]),
        ("featfate_sym.plot", ["slices", "--results", text, "--out", tmp / "f"], ["--results", "not a netCDF file"]),
        ("featfate_sym.plot", ["slices", "--results", hdf, "--out", tmp / "f"], ["--results", "HDF5"]),
        ("featfate_sym.plot", ["slices", "--results", empty_sweep, "--out", tmp / "f"], ["--results", "without results.nc"]),
        ("featfate_sym.plot", ["lt-phase", "--sigma", "0", "--sigma", "0.2", "--out", tmp / "f"], ["--sigma", "twice"]),
        ("featfate_sym.plot", ["lt-phase", "--lam", "nan", "--out", tmp / "f"], ["--lam"]),
        ("featfate_sym.plot", ["ft-phase", "--L", "0", "--out", tmp / "f"], ["--L", "integer in [1, inf)"]),
        ("featfate_sym.plot", ["slices", "--theta", "x.real", "--out", tmp / "f"], ["--theta", "angle", "unknown name"]),
        # report
        ("featfate_sym.report", ["--out", existing], ["--out", "existing file"]),
        ("featfate_sym.report", ["--out", ""], ["--out", "empty path"]),
        ("featfate_sym.report", ["--out", readonly / "report"], ["--out", "not writable"]),
        ("featfate_sym.report", ["--out", tmp / "r", "--results", text], ["--results", "not a netCDF file"]),
        ("featfate_sym.report", ["--out", tmp / "r", "--results", empty_sweep], ["--results", "without results.nc"]),
        ("featfate_sym.report", ["--out", tmp / "r", "--out", tmp / "s"], ["--out", "twice"]),
        # numerics
        ("bench_simulation.py", ["--threads", "0"], ["--threads", "threads must be an integer >= 1"]),
        ("bench_simulation.py", ["--conv-dim", "-1"], ["--conv-dim", ">= 2"]),
        ("bench_simulation.py", ["--threads", "1", "--threads", "2"], ["--threads", "twice"]),
        ("bench_sweep.py", ["--workers", "0"], ["--workers", ">= 1"]),
        ("bench_sweep.py", ["--out", existing], ["--out", "existing file"]),
        ("bench_sweep.py", ["--out", ""], ["--out", "empty path"]),
        ("bench_theory.py", ["--sigma", "nan"], ["--sigma", ">= 0"]),
        ("bench_theory.py", ["--size", "1000000"], ["--size", "<= 10000"]),
        ("bench_derive.py", ["--repeat", "0"], ["--repeat", ">= 1"]),
        ("bench_relu.py", ["--lr", "nan"], ["--lr", "> 0"]),
        ("bench_relu.py", ["--figure", tmp], ["--figure", "is a directory"]),
        ("bench_relu.py", ["--figure", ""], ["--figure", "empty path"]),
        ("distances_table.py", ["--out", existing], ["--out", "existing file"]),
        ("distances_table.py", ["--sigma", "inf"], ["--sigma", "> 0"]),
        ("relu_phase.py", ["--lr", "nan"], ["--lr", "> 0"]),
        ("relu_phase.py", ["--threads", "0"], ["--threads", ">= 1"]),
        ("relu_phase.py", ["--figure", readonly / "phase.png"], ["--figure", "not writable"]),
        ("relu_phase.py", ["--out", ""], ["--out", "empty path"]),
        ("relu_phase.py", ["--out", tmp / "phase.txt"], ["--out", ".json or .npz"]),
        ("ridge_baseline_phase.py", ["--figure", ""], ["--figure", "empty path"]),
        ("ridge_baseline_phase.py", ["--out", readonly / "r.json"], ["--out", "not writable"]),
        ("ridge_baseline_phase.py", ["--sigma", "nan"], ["--sigma", "> 0"]),
        ("ridge_baseline_table.py", ["--dim", "1"], ["--dim", ">= 2"]),
        ("ridge_baseline_table.py", ["--dim", "10", "--dim", "20"], ["--dim", "twice"]),
    ]


def test_every_bad_input_exits_2_in_one_line(tmp_path, readonly, existing_file):
    """One test over all cases (each a fresh interpreter), so that the report of a
    failure names every case that failed, not just the first."""
    before = sorted(p.name for p in tmp_path.iterdir())
    failures = []
    for command, args, needles in _cases(tmp_path, readonly, existing_file):
        proc = run(command, *args, timeout=60)
        try:
            assert_one_line_error(proc, *needles)
            assert proc.stdout == "", proc.stdout
            assert "install" not in proc.stderr.lower()  # no advice to install a reader
        except AssertionError as err:
            failures.append(f"{command} {args}: {err} | stderr: {proc.stderr.strip()[-300:]}")
    assert failures == [], "\n".join(failures)
    # nothing was created or changed by any of them
    assert existing_file.read_text() == "keep me\n"
    after = sorted(p.name for p in tmp_path.iterdir())
    assert after == sorted({*before, "notes.nc", "data.nc", "unfinished-sweep"})
    assert list((tmp_path / "unfinished-sweep").iterdir()) == []


def test_huge_range_is_refused_at_once():
    proc = run("featfate_sym.simulate", "--theta", "0:1:1000000000", "--dry-run", timeout=60)
    assert_one_line_error(proc, "--theta", "100000", prefix="simulate: error:")


def test_a_sweep_another_run_holds_exits_2_naming_it(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00", "token": "t"}
    (out / "sweep.lock").write_text(json.dumps(holder))
    proc = run("featfate_sym.simulate", "--gamma", "1.5", "--d", "12", "--replicates", "2", "--quiet",
               "--workers", "1", "--out", out)
    assert_one_line_error(proc, "--out", f"pid {os.getpid()}", "sweep.lock", prefix="simulate: error:")
    assert sorted(p.name for p in out.iterdir()) == ["sweep.lock"]


def test_results_may_be_a_sweep_folder(tmp_path):
    """A sweep folder is accepted by --results (its results.nc is read)."""
    import numpy as np

    from featfate_sym import cli
    from featfate_sym.sweeps import Grid, open_sweep, run_sweep

    def cell(params, *, replicates, seed, device="cpu", dtype="float64"):
        return {"T_lt": np.full(replicates, params["gamma"])}

    grid = Grid.build({"gamma": [0.5, 1.5]}, fixed={"d": 20}, replicates=2, seed=0)
    run_sweep(grid, tmp_path / "sweep", cell_function=cell, workers=1)
    assert cli.results_file(tmp_path / "sweep") == tmp_path / "sweep" / "results.nc"
    assert list(open_sweep(tmp_path / "sweep")["gamma"].values) == [0.5, 1.5]
    proc = run("featfate_sym.plot", "lt-phase", "--quick", "--sigma", "0.2", "--results", tmp_path / "sweep",
               "--out", tmp_path / "figs", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.suffix for p in (tmp_path / "figs").iterdir()) == [".pdf", ".png"]
