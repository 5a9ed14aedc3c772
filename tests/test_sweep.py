"""Tests of the sweep engine (featfate_sym.sweeps): grid, seeds, storage, resume,
executors.  The cells are computed by a cheap deterministic toy function, so these
tests check the engine, not the simulations."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import warnings

import numpy as np
import pytest
import xarray as xr
from dask import distributed

from featfate_sym.sweeps import AXES, DEFAULTS, MAX_SEED, Grid, SweepLockedError, SweepMismatchError, cell_seed, open_sweep, run_sweep
from featfate_sym.sweeps import storage
from featfate_sym.sweeps.grid import MAX_AXIS_VALUES, MAX_CELLS

# The toy cell function records its calls and can be told to fail (to simulate a crash).
CALLS: list[dict] = []
FAIL_AFTER: list[int] = []  # fail when this many calls have already been made


def toy_cell(params, *, replicates, seed, device="cpu", dtype="float64"):
    if FAIL_AFTER and len(CALLS) >= FAIL_AFTER[0]:
        raise RuntimeError("simulated crash")
    # worker processes see the environment, not this module's state
    if os.environ.get("TOY_CRASH_AT_GAMMA") == repr(params["gamma"]) and params["theta"] > 1.0:
        raise RuntimeError("simulated crash in a worker")
    CALLS.append(dict(params))
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=replicates)
    return {
        "risk": params["gamma"] + params["theta"] * params["sigma"] + noise,
        "risk32": noise.astype(np.float32),
        "steps": np.arange(replicates, dtype=np.int64) + params["d"],
        "converged_toy": noise > 0,
    }


@pytest.fixture(autouse=True)
def _reset_toy():
    CALLS.clear()
    FAIL_AFTER.clear()
    yield
    CALLS.clear()
    FAIL_AFTER.clear()


def small_grid(seed: int, replicates: int = 3) -> Grid:
    return Grid.build(
        {"gamma": [0.5, 1.5], "theta": [math.pi / 8, math.pi / 4, 3 * math.pi / 8]},
        fixed={"d": 20},
        replicates=replicates,
        seed=seed,
    )


def data_equal(a: xr.Dataset, b: xr.Dataset) -> bool:
    """Same variables, coordinates and values (attributes such as the time may differ)."""
    return a.drop_attrs(deep=False).identical(b.drop_attrs(deep=False))


# ------------------------------------------------------------------------------ grid


def test_grid_axes_defaults_and_cell_order(seed):
    grid = Grid.build({"theta": [0.1, 0.2, 0.3], "gamma": [0.5, 1.5]}, fixed={"d": 40}, replicates=4, seed=seed)
    assert grid.dims == ("gamma", "theta")  # AXES order, whatever the order given
    assert grid.shape == (2, 3) and grid.size == 6
    fixed = dict(grid.fixed)
    assert fixed["d"] == 40 and isinstance(fixed["d"], int)
    assert fixed["sigma"] == DEFAULTS["sigma"] and fixed["gamma_s"] == math.inf
    cells = list(grid.cells())
    assert [c.index for c in cells] == list(range(6))
    # C order: theta varies fastest
    assert cells[1].position == (0, 1) and cells[1].params["gamma"] == 0.5 and cells[1].params["theta"] == 0.2
    assert cells[3].params["gamma"] == 1.5 and cells[3].params["theta"] == 0.1
    assert tuple(cells[0].params) == AXES
    assert grid.values("lam") == (0.0,)


@pytest.mark.parametrize(
    "axes, fixed, replicates, base, message",
    [
        ({"mu": [1.0]}, {}, 2, 0, "unknown axis"),
        ({"gamma": []}, {}, 2, 0, "no values"),
        ({"gamma": [0.5, 0.5]}, {}, 2, 0, "repeated"),
        ({"gamma": [0.5]}, {"gamma": 1.0}, 2, 0, "both swept and fixed"),
        ({"L": [1.5]}, {}, 2, 0, "L must be an integer"),
        ({}, {}, 0, 0, "replicates"),
        ({}, {}, 2, -1, "seed"),
        ({}, {}, 2, MAX_SEED + 1, "seed"),
    ],
)
def test_grid_rejects_bad_input(axes, fixed, replicates, base, message):
    with pytest.raises(ValueError, match=message):
        Grid.build(axes, fixed=fixed, replicates=replicates, seed=base)


# ----------------------------------------------------------------------------- seeds


def test_cell_seeds_are_deterministic_distinct_and_coordinate_based(seed):
    grid = small_grid(seed)
    seeds = [cell.seed for cell in grid.cells()]
    assert seeds == [cell.seed for cell in small_grid(seed).cells()]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert seeds != [cell.seed for cell in small_grid(seed + 1).cells()]
    # a cell has the same seed in any grid that contains it: seeds follow coordinates
    sub = Grid.build({"theta": [math.pi / 4]}, fixed={"d": 20, "gamma": 1.5}, replicates=3, seed=seed)
    (only,) = list(sub.cells())
    match = [c for c in grid.cells() if c.params["gamma"] == 1.5 and c.params["theta"] == math.pi / 4]
    assert only.seed == match[0].seed
    # 0.1 + 0.2 and 0.3 are the same coordinate (12 significant digits)
    base = dict(DEFAULTS)
    assert cell_seed(seed, {**base, "gamma": 0.1 + 0.2}) == cell_seed(seed, {**base, "gamma": 0.3})
    assert cell_seed(seed, {**base, "gamma": 0.3}) != cell_seed(seed, {**base, "gamma": 0.3 + 1e-9})


def test_same_seed_same_dataset(tmp_path, seed):
    first = run_sweep(small_grid(seed), tmp_path / "a", cell_function=toy_cell, workers=1).dataset
    second = run_sweep(small_grid(seed), tmp_path / "b", cell_function=toy_cell, workers=1).dataset
    other = run_sweep(small_grid(seed + 1), tmp_path / "c", cell_function=toy_cell, workers=1).dataset
    assert data_equal(first, second)
    assert not np.array_equal(first["risk"].values, other["risk"].values)


# --------------------------------------------------------------------------- storage


def test_dataset_round_trip(tmp_path, seed):
    grid = small_grid(seed)
    report = run_sweep(grid, tmp_path, cell_function=toy_cell, workers=1, command_line="sweep --test")
    ds = open_sweep(tmp_path / "results.nc")
    assert report.path == tmp_path / "results.nc"
    assert ds["risk"].dims == ("gamma", "theta", "replicate")
    assert ds.sizes == {"gamma": 2, "theta": 3, "replicate": 3}
    np.testing.assert_array_equal(ds["gamma"].values, [0.5, 1.5])
    np.testing.assert_array_equal(ds["theta"].values, [math.pi / 8, math.pi / 4, 3 * math.pi / 8])
    assert float(ds["d"]) == 20 and float(ds["gamma_s"]) == math.inf and ds["d"].dims == ()
    # original types restored; netCDF3 stores flags as int8 and steps as int32
    assert ds["converged_toy"].dtype == bool and ds["steps"].dtype == np.int64 and ds["risk32"].dtype == np.float32
    with xr.open_dataset(tmp_path / "results.nc", engine="scipy", mask_and_scale=False) as raw:
        assert raw["converged_toy"].dtype == np.int8 and raw["steps"].dtype == np.int32
    # values are those of the cell function at the recorded seed
    cell = list(grid.cells())[4]
    expected = toy_cell(cell.params, replicates=3, seed=cell.seed)
    got = ds.isel(gamma=cell.position[0], theta=cell.position[1])
    assert int(got["seed"]) == cell.seed
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name].values, values)
    attrs = ds.attrs
    for key in ("featfate_sym_version", "torch_version", "numpy_version", "sympy_version", "git_commit", "created"):
        assert isinstance(attrs[key], str) and attrs[key]
    assert attrs["command_line"] == "sweep --test"
    assert int(attrs["base_seed"]) == seed and int(attrs["replicates"]) == 3
    np.testing.assert_array_equal(attrs["param_gamma"], [0.5, 1.5])
    assert float(attrs["param_d"]) == 20 and attrs["dtype"] == "float64"
    assert attrs["cell_function"].endswith("toy_cell")
    assert report.converged() == {"toy": (int(ds["converged_toy"].sum()), 18)}


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    storage.atomic_write(target, b"old contents")

    class HalfWriter:
        def __init__(self, path, mode):
            self.handle = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(storage, "open", HalfWriter, raising=False)
    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write(target, b"new contents, longer than the old")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_failed_cell_write_leaves_no_partial_file_and_rerun_completes(tmp_path, seed, monkeypatch):
    grid = small_grid(seed)
    opened = []
    real_open = open

    def failing_open(path, mode):
        opened.append(path)
        handle = real_open(path, mode)
        if len(opened) == 3:  # sweep.json, cell 0, then cell 1 fails half-way through
            original = handle.write

            def half_write(data):
                original(bytes(data)[: len(data) // 2])
                raise OSError("disk full")

            handle.write = half_write
        return handle

    monkeypatch.setattr(storage, "open", failing_open, raising=False)
    with pytest.raises(OSError, match="disk full"):
        run_sweep(grid, tmp_path, cell_function=toy_cell, workers=1)
    monkeypatch.delattr(storage, "open")
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["cell-000000.nc"]
    assert not (tmp_path / "results.nc").exists()
    CALLS.clear()
    report = run_sweep(grid, tmp_path, cell_function=toy_cell, workers=1)
    assert (report.computed, report.resumed) == (grid.size - 1, 1) and len(CALLS) == grid.size - 1
    clean = run_sweep(grid, tmp_path / "clean", cell_function=toy_cell, workers=1)
    assert data_equal(report.dataset, clean.dataset)


def test_resume_after_crash_recomputes_only_missing_cells(tmp_path, seed):
    grid = small_grid(seed)
    clean = run_sweep(grid, tmp_path / "clean", cell_function=toy_cell, workers=1).dataset
    CALLS.clear()
    out = tmp_path / "run"
    FAIL_AFTER.append(2)  # the third cell crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_sweep(grid, out, cell_function=toy_cell, workers=1)
    assert len(list((out / "cells").glob("cell-*.nc"))) == 2
    assert not (out / "results.nc").exists()
    FAIL_AFTER.clear()
    CALLS.clear()
    report = run_sweep(grid, out, cell_function=toy_cell, workers=1)
    assert len(CALLS) == grid.size - 2 and (report.computed, report.resumed) == (grid.size - 2, 2)
    assert data_equal(report.dataset, clean)
    # lose the combined file and one cell: only that cell runs again
    (out / "results.nc").unlink()
    lost = list(grid.cells())[3]
    (out / "cells" / f"{lost.name}.nc").unlink()
    CALLS.clear()
    report = run_sweep(grid, out, cell_function=toy_cell, workers=1)
    assert CALLS == [lost.params]
    assert data_equal(report.dataset, clean)


def test_other_settings_in_same_directory_is_an_error_unless_overwrite(tmp_path, seed):
    run_sweep(small_grid(seed), tmp_path, cell_function=toy_cell, workers=1)
    with pytest.raises(SweepMismatchError, match="replicates"):
        run_sweep(small_grid(seed, replicates=4), tmp_path, cell_function=toy_cell, workers=1)
    with pytest.raises(SweepMismatchError, match="dtype"):
        run_sweep(small_grid(seed), tmp_path, cell_function=toy_cell, workers=1, dtype="float32")
    assert len(list((tmp_path / "cells").glob("cell-*.nc"))) == 6  # nothing lost
    report = run_sweep(small_grid(seed, replicates=4), tmp_path, cell_function=toy_cell, workers=1, overwrite=True)
    assert report.computed == 6 and report.dataset.sizes["replicate"] == 4


def test_corrupt_cell_is_recomputed_alone_with_a_warning(tmp_path, seed):
    grid = small_grid(seed)
    out = tmp_path / "run"
    first = run_sweep(grid, out, cell_function=toy_cell, workers=1).dataset
    damaged = list(grid.cells())[4]
    path = out / "cells" / f"{damaged.name}.nc"
    path.write_bytes(path.read_bytes()[:40])  # truncated, as after a disk error
    CALLS.clear()
    with pytest.warns(UserWarning, match=damaged.name) as caught:
        report = run_sweep(grid, out, cell_function=toy_cell, workers=1)
    assert any("computing cell 4 again" in str(w.message) for w in caught)
    assert CALLS == [damaged.params]  # only the damaged cell, no --overwrite needed
    assert (report.computed, report.resumed) == (1, grid.size - 1)
    assert data_equal(report.dataset, first)
    # the file is whole again: the next run resumes everything, silently
    CALLS.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_sweep(grid, out, cell_function=toy_cell, workers=1).resumed == grid.size
    assert CALLS == []


def test_a_readable_cell_of_another_sweep_is_still_an_error(tmp_path, seed):
    grid = small_grid(seed)
    run_sweep(grid, tmp_path / "a", cell_function=toy_cell, workers=1)
    run_sweep(small_grid(seed + 1), tmp_path / "b", cell_function=toy_cell, workers=1)
    cell = list(grid.cells())[0]
    (tmp_path / "a" / "cells" / f"{cell.name}.nc").write_bytes((tmp_path / "b" / "cells" / f"{cell.name}.nc").read_bytes())
    with pytest.raises(SweepMismatchError, match=cell.name):
        run_sweep(grid, tmp_path / "a", cell_function=toy_cell, workers=1)


def test_open_sweep_reads_a_sweep_folder_and_refuses_other_files(tmp_path, seed):
    report = run_sweep(small_grid(seed), tmp_path / "run", cell_function=toy_cell, workers=1)
    assert data_equal(open_sweep(tmp_path / "run"), report.dataset)
    text = tmp_path / "notes.nc"
    text.write_text("not a dataset\n")
    with pytest.raises(ValueError, match="not a netCDF file") as info:
        open_sweep(text)
    assert "install" not in str(info.value)


# ---------------------------------------------------------------------------- lock


def _write_lock(out, **record):
    out.mkdir(parents=True, exist_ok=True)
    (out / storage.LOCK).write_text(json.dumps({"started": "2020-01-01T00:00:00+00:00", **record}))


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_lock_refuses_a_second_run_and_names_the_holder(tmp_path, seed):
    out = tmp_path / "run"
    with storage.sweep_lock(out) as lock:
        held = json.loads(lock.read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(SweepLockedError, match=f"pid {os.getpid()} on host {socket.gethostname()}"):
            run_sweep(small_grid(seed), out, cell_function=toy_cell, workers=1)
        assert CALLS == [] and not (out / "cells").exists()
    assert not lock.exists()  # released
    assert run_sweep(small_grid(seed), out, cell_function=toy_cell, workers=1).computed == 6
    assert not (out / storage.LOCK).exists()


def test_lock_of_a_live_process_is_kept(tmp_path, seed):
    out = tmp_path / "run"
    _write_lock(out, pid=os.getppid(), host=socket.gethostname(), token="x")
    with pytest.raises(SweepLockedError, match=f"pid {os.getppid()}"):
        run_sweep(small_grid(seed), out, cell_function=toy_cell, workers=1)
    assert (out / storage.LOCK).exists() and CALLS == []


def test_stale_lock_on_this_host_is_taken_over(tmp_path, seed):
    out = tmp_path / "run"
    pid = _dead_pid()
    _write_lock(out, pid=pid, host=socket.gethostname(), token="old")
    with pytest.warns(UserWarning, match=f"stale lock .*pid {pid}"):
        report = run_sweep(small_grid(seed), out, cell_function=toy_cell, workers=1)
    assert report.computed == 6
    assert not (out / storage.LOCK).exists()


def test_lock_from_another_host_is_never_taken_over(tmp_path, seed):
    out = tmp_path / "run"
    _write_lock(out, pid=_dead_pid(), host="elsewhere.invalid", token="x")
    with pytest.raises(SweepLockedError, match="elsewhere.invalid"):
        run_sweep(small_grid(seed), out, cell_function=toy_cell, workers=1)
    assert (out / storage.LOCK).exists() and CALLS == []


def test_lock_is_released_when_a_cell_fails(tmp_path, seed):
    out = tmp_path / "run"
    FAIL_AFTER.append(1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_sweep(small_grid(seed), out, cell_function=toy_cell, workers=1)
    assert not (out / storage.LOCK).exists()


def test_grid_size_is_capped_before_anything_is_built():
    with pytest.raises(ValueError, match=f"at most {MAX_AXIS_VALUES} per axis"):
        Grid.build({"gamma": np.linspace(0.1, 2, MAX_AXIS_VALUES + 1)}, replicates=1, seed=0)
    with pytest.raises(ValueError, match=f"at most {MAX_CELLS} cells"):
        Grid.build({"gamma": np.linspace(0.1, 2, 1001), "theta": np.linspace(0, 1, 1000)}, replicates=1, seed=0)
    assert Grid.build({"gamma": np.linspace(0.1, 2, 1000), "theta": np.linspace(0, 1, 1000)},
                      replicates=1, seed=0).size == MAX_CELLS


# ------------------------------------------------------------------------- executors


def test_process_pool_matches_in_process_and_keeps_finished_cells_on_failure(tmp_path, seed, monkeypatch):
    grid = small_grid(seed)
    serial = run_sweep(grid, tmp_path / "serial", cell_function=toy_cell, workers=1).dataset
    # the last cell (gamma 1.5, theta 3 pi/8) fails in a worker: the other five are kept
    monkeypatch.setenv("TOY_CRASH_AT_GAMMA", "1.5")
    with pytest.raises(RuntimeError, match="crash in a worker"):
        run_sweep(grid, tmp_path / "pool", cell_function=toy_cell, workers=2)
    names = sorted(p.name for p in (tmp_path / "pool" / "cells").iterdir())
    assert names == [f"cell-{i:06d}.nc" for i in range(5)]
    monkeypatch.delenv("TOY_CRASH_AT_GAMMA")
    CALLS.clear()
    resumed = run_sweep(grid, tmp_path / "pool", cell_function=toy_cell, workers=1)
    assert len(CALLS) == 1 and resumed.resumed == 5
    assert data_equal(serial, resumed.dataset)  # cells from the pool equal in-process ones


def test_dask_local_cluster_matches_local_processes(tmp_path, seed):
    grid = small_grid(seed)
    local = run_sweep(grid, tmp_path / "local", cell_function=toy_cell, workers=1).dataset
    # processes=False: the worker is a thread of this process (starting worker
    # processes costs seconds); the scheduler is still reached over TCP on loopback.
    with distributed.LocalCluster(
        host="127.0.0.1",
        protocol="tcp://",
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        remote = run_sweep(grid, tmp_path / "dask", cell_function=toy_cell, scheduler=cluster.scheduler_address)
    assert remote.computed == grid.size
    assert data_equal(local, remote.dataset)


def test_a_sweep_runs_the_protocols_it_is_given_and_records_them(tmp_path, seed):
    """``run_sweep(protocols=...)`` runs that list in every cell (their variables appear,
    no others), records it, and refuses to resume the directory with another list."""
    from featfate_sym.sweeps.executors import SimulationCell

    grid = Grid.build({"gamma": [0.5]}, fixed={"d": 12, "L": 2, "theta": 0.6, "sigma": 0.1}, replicates=2, seed=seed)
    report = run_sweep(grid, tmp_path, protocols=["scratch", "fine_tune[1]"], workers=1)
    ds = report.dataset
    assert {"risk_sc", "risk_ft1", "T_ft1"} <= set(ds.data_vars)
    assert not {"risk_lt", "risk_ft"} & set(ds.data_vars)
    assert ds.attrs["protocols"] == "scratch,fine_tune[1]"
    assert "protocols=['scratch', 'fine_tune[1]']" in ds.attrs["cell_function"]
    np.testing.assert_allclose(ds["T_ft1"], ds["risk_sc"] - ds["risk_ft1"], rtol=1e-12)
    with pytest.raises(SweepMismatchError, match="cell_function"):
        run_sweep(grid, tmp_path, workers=1)  # the paper's three: another sweep
    with pytest.raises(ValueError, match="not both"):
        run_sweep(grid, tmp_path, protocols=["scratch"], cell_function=toy_cell)
    # the paper's list, spelled out, is the default cell function (earlier sweeps resume)
    assert SimulationCell(protocols=("scratch", "linear_transfer", "fine_tune")).name == \
        "featfate_sym.simulation.run_cell"
    with pytest.raises(ValueError, match="repeat"):
        SimulationCell(protocols=("scratch", "scratch"))
