"""Run a sweep: compute the missing cells of a grid, store each as it finishes, and
write the combined dataset.

Resuming: run the same sweep again with the same output directory.  Cells already on
disk (checked against their parameters, seed and settings) are read, not recomputed;
only the missing ones run.  A directory holding a sweep with other settings is an error
(:class:`~featfate_sym.sweeps.storage.SweepMismatchError`) unless ``overwrite``.  A
cell file that cannot be read is computed again alone (with a warning naming it).

One run at a time per directory: a run holds ``OUT/sweep.lock`` while it works
(:func:`~featfate_sym.sweeps.storage.sweep_lock`); a second run on the same directory
raises :class:`~featfate_sym.sweeps.storage.SweepLockedError` naming the holder.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from featfate_sym.sweeps import storage
from featfate_sym.sweeps.executors import (
    CellFunction,
    SimulationCell,
    cell_function_name,
    run_in_process,
    run_in_processes,
    run_on_dask,
    simulation_cell,
)
from featfate_sym.sweeps.grid import AXES, INTEGER_AXES, Grid, describe_json

__all__ = ["SweepReport", "run_sweep", "SEED_RULE"]

SEED_RULE = (
    "cell seed = SeedSequence(base_seed, spawn_key=(sha256 of the cell's eight coordinates "
    "at 12 significant digits, first 16 bytes little-endian,)).generate_state(1, uint32)[0] >> 1"
)

_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class SweepReport:
    """What a sweep did: the combined ``dataset`` (as stored, with the outputs' original
    types restored), its ``path``, how many cells were ``computed`` now and how many
    were ``resumed`` from disk, and the wall time in ``seconds``."""

    dataset: xr.Dataset
    path: Path
    computed: int
    resumed: int
    seconds: float

    def converged(self) -> dict[str, tuple[int, int]]:
        """For each ``converged_*`` output: (runs converged, runs)."""
        counts = {}
        for name in self.dataset.data_vars:
            if name.startswith("converged_"):
                values = np.asarray(self.dataset[name].values, dtype=bool)
                counts[name.removeprefix("converged_")] = (int(values.sum()), int(values.size))
        return counts


def _parameter_attrs(grid: Grid) -> dict:
    attrs = {}
    for name in AXES:
        values = grid.values(name)
        array = np.asarray(values, dtype=np.int32 if name in INTEGER_AXES else np.float64)
        attrs[f"param_{name}"] = array if name in grid.dims else array[0]
    return attrs


def run_sweep(
    grid: Grid,
    out: str | Path,
    *,
    cell_function: CellFunction | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    workers: int | None = None,
    scheduler=None,
    overwrite: bool = False,
    progress: bool = False,
    command_line: str | None = None,
    protocols=None,
) -> SweepReport:
    """Run (or resume) the sweep ``grid`` into the directory ``out``.

    ``cell_function``: computes one cell (default: the Torch simulations,
    :func:`featfate_sym.simulation.run_cell`); it must be importable by name when
    ``workers > 1`` or on a cluster.  ``workers``: local processes (default
    ``os.cpu_count()``; 1 runs in this process); ``scheduler``: a Dask scheduler address
    or ``Client`` (then ``workers`` is ignored).  ``progress``: show a progress bar on
    standard error.  ``command_line``: recorded in the dataset (default ``sys.argv``).
    ``protocols``: the protocols the default cell function runs (names such as
    ``"fine_tune[1]"``; default the paper's three); recorded with the sweep, so a resume
    with other protocols is refused.  Give it or ``cell_function``, not both.

    Raises ``ValueError`` for bad settings (``out`` an existing file, too),
    :class:`storage.SweepMismatchError` for an output directory holding another sweep,
    :class:`storage.SweepLockedError` when another run is writing it, and whatever a
    cell raises (after storing every cell that finished).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)} (got {dtype!r})")
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda' (got {device!r})")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 (got {workers!r})")
    if protocols is not None:
        if cell_function is not None:
            raise ValueError("give protocols or cell_function, not both (a SimulationCell takes protocols)")
        function = SimulationCell(protocols=tuple(protocols))
    else:
        function = simulation_cell if cell_function is None else cell_function
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a directory (got {str(out)!r}, an existing file)")
    started = time.perf_counter()
    with storage.sweep_lock(out):
        return _run_locked(grid, out, function, dtype, device, workers, scheduler, overwrite, progress,
                           command_line, started)


def _protocol_attrs(function) -> dict:
    """The protocols a simulation cell runs (what its ``risk_*``/``T_*`` variables are) and
    its inputs (spectrum, teachers, number of source tasks)."""
    if not isinstance(function, SimulationCell):
        return {}
    from featfate_sym import protocols as table

    names = function.protocols or table.defaults(function.k)
    return {"protocols": ",".join(names), "spectrum": function.spectrum or "isotropic",
            "teachers": function.teachers or "uniform", "source_tasks": np.int32(function.k)}


def _run_locked(grid, out, function, dtype, device, workers, scheduler, overwrite, progress, command_line, started):
    """The body of :func:`run_sweep`, run while holding the directory's lock."""
    from tqdm import tqdm

    settings = {
        "replicates": grid.replicates,
        "dtype": dtype,
        "device": device,
        "cell_function": cell_function_name(function),
    }
    description = {"format": 1, **grid.describe(), **settings}
    storage.check_manifest(out, description, overwrite=overwrite)

    stored: dict[int, xr.Dataset] = {}
    missing = []
    for cell in grid.cells():
        dataset = storage.read_cell(out, cell, settings)
        if dataset is None:
            missing.append(cell)
        else:
            stored[cell.index] = dataset
    resumed = len(stored)

    common = {"replicates": grid.replicates, "device": device, "dtype": dtype}
    if scheduler is not None:
        results = run_on_dask(function, missing, scheduler=scheduler, **common)
    elif workers == 1 or len(missing) <= 1:
        results = run_in_process(function, missing, **common)
    else:
        results = run_in_processes(function, missing, workers=min(workers, len(missing)), **common)

    bar = tqdm(
        total=grid.size,
        initial=resumed,
        unit="cell",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    try:
        for cell, arrays in results:
            storage.write_cell(out, cell, arrays, settings)
            stored[cell.index] = storage.read_cell(out, cell, settings)
            bar.update(1)
    finally:
        bar.close()
        if hasattr(results, "close"):
            results.close()

    attrs = {
        "title": "featfate_sym sweep: finite-width simulations of transfer in deep linear networks",
        "references": "Tahir, Ganguli & Rotskoff, Features are fate, arXiv 2410.08194",
        **_parameter_attrs(grid),
        "swept_axes": " ".join(grid.dims),
        "replicates": np.int32(grid.replicates),
        "base_seed": np.int32(grid.seed),
        "seed_rule": SEED_RULE,
        "dtype": dtype,
        "device": device,
        "cell_function": settings["cell_function"],
        **_protocol_attrs(function),
        "sweep": describe_json(description),
        "encoding": "netCDF3; bool outputs as int8 0/1 (flag_values), integer outputs as int32; source_dtype records the original type",
        **storage.provenance(command_line),
    }
    combined = storage.combine_cells(grid, stored, attrs)
    path = storage.write_results(out, combined)
    dataset = storage.open_sweep(path)
    return SweepReport(dataset, path, grid.size - resumed, resumed, time.perf_counter() - started)

