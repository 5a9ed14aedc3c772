"""Tests of the sweep command line ``python -m featfate_sym.simulate``."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import featfate_sym.simulate as simulate  # the command-line module (ff.simulate before it is imported)
from featfate_sym.sweeps import open_sweep
from checks import assert_one_line_error


def run_cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "featfate_sym.simulate", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=cwd,
    )


BAD_ARGUMENTS = [
    (["--theta", "4"], "--theta must be in [0, pi]"),
    (["--theta=-0.1,0.5"], "--theta must be in [0, pi]"),
    (["--gamma", "0"], "--gamma must be in (0, inf)"),
    (["--gamma", "abc"], "--gamma"),
    (["--gamma", "0.1:1"], "start:stop:num"),
    (["--gamma", "0.01"], "n = round(gamma d) >= 2"),
    (["--sigma", "-1"], "--sigma must be in [0, inf)"),
    (["--lam", "nan"], "--lam must be in [0, inf)"),
    (["--L", "1.5"], "--L must be an integer in [1, inf)"),
    (["--L", "0"], "--L must be an integer in [1, inf)"),
    (["--d", "1"], "--d must be an integer in [2, inf)"),
    (["--gamma-s", "0"], "--gamma-s must be in (0, inf) or inf"),
    (["--sigma-s=-0.2"], "--sigma-s must be in [0, inf)"),
    (["--replicates", "0"], "--replicates must be an integer >= 1"),
    (["--replicates", "two"], "--replicates"),
    (["--seed", "-1"], "--seed must be in [0, 2147483647]"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
    (["--dtype", "float16"], "--dtype"),
    (["--preset", "huge"], "--preset"),
    (["--bogus"], "unrecognized arguments"),
    (["--protocols", "scratch,bogus"], "protocol must be one of"),
    (["--protocols", "scratch,,fine_tune"], "--protocols must be protocol names"),
    (["--protocols", "fine_tune[1,2"], "--protocols must be protocol names"),
    (["--protocols", "scratch,scratch"], "must not repeat"),
    (["--protocols", "fine_tune[3]", "--L", "2"], "layers must be"),
    (["--protocols", "scratch,linear_transfer", "--L", "1"], "needs --L >= 2"),
]


@pytest.mark.parametrize("args, message", BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    assert simulate.main([*args, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulate: error:")
    assert message in lines[0]


@pytest.mark.parametrize("args", [["--theta", "4"], ["--L", "1.5"], ["--bogus"], ["--device", "nodevice"]])
def test_bad_arguments_in_a_subprocess_have_no_traceback(args, tmp_path):
    done = run_cli(*args, "--out", str(tmp_path / "out"), "--quiet")
    assert_one_line_error(done, prefix="simulate: error:")
    assert not (tmp_path / "out").exists()


def test_values_lists_ranges_and_pi():
    assert simulate.parse_values("0.5,1.5") == [0.5, 1.5]
    assert simulate.parse_values("0.1:0.5:5") == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert simulate.parse_values("0:pi/2:3") == [0.0, math.pi / 4, math.pi / 2]
    assert simulate.parse_values("pi/8,3pi/8,0.25*pi,pi") == [math.pi / 8, 3 * math.pi / 8, math.pi / 4, math.pi]
    assert simulate.parse_values("inf") == [math.inf]
    with pytest.raises(ValueError):
        simulate.parse_values("1:2:0")


def test_dry_run_prints_grid_and_exits(capsys, tmp_path):
    assert simulate.main(["--preset", "paper", "--dry-run", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "gamma(20) x theta(20) x sigma(2) = 800 cells x 20 replicates" in out
    assert "d=500" in out and "L=2" in out
    assert "solver: whitened" in out  # the paper preset's solver
    assert not (tmp_path / "p").exists()
    # axis flags replace the preset's axes; one value fixes an axis
    assert simulate.main(["--gamma", "0.5", "--lam", "0:0.5:6", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "theta(3) x sigma(2) x lam(6) = 36 cells x 20 replicates" in out and "gamma=0.5" in out


def test_dry_run_in_a_subprocess():
    done = run_cli("--dry-run")
    assert done.returncode == 0 and done.stderr == ""
    assert "gamma(5) x theta(3) x sigma(2) = 30 cells x 20 replicates" in done.stdout and "d=100" in done.stdout
    assert "solver: gd" in done.stdout


def test_solver_flag_runs_and_is_recorded(tmp_path, capsys):
    """``--solver whitened`` trains with the whitened solver (recorded with the sweep, so
    a rerun with the other solver is a different sweep) and reaches gradient descent's
    end points: at ``gamma = 1.5`` both end at the unique least-squares solution."""
    args = ["--gamma", "1.5", "--theta", "pi/4", "--sigma", "0.2", "--d", "12", "--replicates", "2", "--quiet", "--workers", "1"]
    assert simulate.main([*args, "--solver", "whitened", "--out", str(tmp_path / "w")]) == 0
    assert simulate.main([*args, "--out", str(tmp_path / "g")]) == 0
    white, plain = open_sweep(tmp_path / "w" / "results.nc"), open_sweep(tmp_path / "g" / "results.nc")
    assert white.attrs["cell_function"] == "featfate_sym.simulation.run_cell(solver='whitened')"
    assert plain.attrs["cell_function"] == "featfate_sym.simulation.run_cell"
    # gd's stopping rule (excess loss <= 1e-9) leaves up to sqrt(1e-9 / lambda_min(Sxx))
    # ~ 2e-4 along the weakest data direction at n = 18, d = 12 (lambda_min >= 0.03), so
    # the risks agree to about 2e-4 |beta - beta_t|
    np.testing.assert_allclose(white["risk_sc"], plain["risk_sc"], atol=5e-4)
    np.testing.assert_allclose(white["risk_ft"], plain["risk_ft"], atol=5e-4)
    capsys.readouterr()
    assert simulate.main([*args, "--out", str(tmp_path / "w")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_tiny_real_run_resume_and_mismatch(tmp_path, capsys):
    out = tmp_path / "tiny"
    args = ["--gamma", "0.5,1.5", "--theta", "pi/4", "--sigma", "0.2", "--d", "12", "--replicates", "2"]
    done = run_cli(*args, "--workers", "1", "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 cells (2 computed, 0 resumed) x 2 replicates" in done.stdout
    assert str(out / "results.nc") in done.stdout
    ds = open_sweep(out / "results.nc")
    assert ds["risk_sc"].dims == ("gamma", "replicate") and ds.sizes["replicate"] == 2
    assert float(ds["theta"]) == pytest.approx(math.pi / 4) and int(ds["d"]) == 12
    assert ds["converged_sc"].dtype == bool
    # T is the paired difference of the risks, stored per replicate
    np.testing.assert_allclose(ds["T_lt"], ds["risk_sc"] - ds["risk_lt"], rtol=0, atol=1e-12)
    assert np.all(ds["risk_sc"].values >= 0)
    assert ds.attrs["command_line"].startswith("python -m featfate_sym.simulate --gamma 0.5,1.5")
    # the same command resumes: nothing is recomputed (in this process: faster)
    assert simulate.main([*args, "--workers", "1", "--quiet", "--out", str(out)]) == 0
    assert "(0 computed, 2 resumed)" in capsys.readouterr().out
    np.testing.assert_array_equal(open_sweep(out / "results.nc")["risk_ft"], ds["risk_ft"])
    # other settings in the same directory: one-line error, exit 2, nothing removed
    assert simulate.main([*args[:-1], "3", "--workers", "1", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--overwrite" in err and "replicates" in err
    assert len(list((out / "cells").glob("cell-*.nc"))) == 2


def test_values_use_the_number_grammar_and_cap_the_range():
    assert simulate.parse_values("sqrt(2)/2,2^-3") == [math.sqrt(2) / 2, 0.125]
    with pytest.raises(ValueError, match="--gamma must be a number"):
        simulate.parse_values("__import__('os').getcwd()", "--gamma")
    with pytest.raises(ValueError, match=r"--gamma: num .* \[1, 100000\]"):
        simulate.parse_values("0.5:2:1000000000", "--gamma")
    assert len(simulate.parse_values("0:1:100000")) == 100_000


def test_a_locked_output_directory_exits_2_naming_the_holder(tmp_path, capsys):
    import json
    import socket

    out = tmp_path / "locked"
    out.mkdir()
    # the parent of this process is alive on this host: a live holder
    lock = {"pid": os.getppid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00", "token": "t"}
    (out / "sweep.lock").write_text(json.dumps(lock))
    args = ["--gamma", "1.5", "--theta", "pi/4", "--d", "12", "--replicates", "2", "--quiet", "--workers", "1"]
    assert simulate.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("simulate: error: --out:")
    assert f"pid {os.getppid()}" in err and "sweep.lock" in err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.lock"]  # nothing computed or written


def test_protocols_flag_runs_the_list_and_records_it(tmp_path, capsys):
    """``--protocols scratch,fine_tune[1]`` runs those two in every cell: their variables,
    no others, the list in the dataset's attributes and in the recorded cell function (a
    rerun with the default list is another sweep)."""
    args = ["--gamma", "0.5", "--theta", "pi/4", "--sigma", "0.2", "--d", "12", "--replicates", "2", "--quiet",
            "--workers", "1", "--out", str(tmp_path / "p")]
    assert simulate.main(["--protocols", "scratch,fine_tune[1]", "--dry-run", *args]) == 0
    assert "protocols: scratch, fine_tune[1]" in capsys.readouterr().out
    assert simulate.main(["--protocols", "scratch, fine_tune[1]", *args]) == 0
    ds = open_sweep(tmp_path / "p" / "results.nc")
    assert {"risk_sc", "risk_ft1", "T_ft1"} <= set(ds.data_vars) and "risk_lt" not in ds.data_vars
    assert ds.attrs["protocols"] == "scratch,fine_tune[1]"
    capsys.readouterr()
    assert simulate.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
