"""Sweeps: grids of simulation cells, run in parallel, stored as a labelled,
self-describing netCDF dataset, resumable after an interruption.

::

    from featfate_sym.sweeps import Grid, run_sweep, open_sweep
    grid = Grid.build({"gamma": [0.5, 1.5], "sigma": [0.0, 0.2]}, fixed={"d": 50},
                      replicates=10, seed=0)
    report = run_sweep(grid, "runs/example")      # OUT/cells/*.nc, OUT/results.nc
    ds = open_sweep("runs/example/results.nc")    # dims: gamma, sigma, replicate

The command line is ``python -m featfate_sym.simulate``.
"""

from featfate_sym.sweeps.executors import SOLVER_CELLS, simulation_cell, whitened_simulation_cell
from featfate_sym.sweeps.grid import AXES, DEFAULTS, MAX_SEED, Cell, Grid, cell_seed
from featfate_sym.sweeps.presets import PRESETS, preset_axes, preset_grid, preset_solver
from featfate_sym.sweeps.runner import SweepReport, run_sweep
from featfate_sym.sweeps.storage import SweepLockedError, SweepMismatchError, open_sweep

__all__ = [
    "AXES",
    "DEFAULTS",
    "MAX_SEED",
    "PRESETS",
    "Cell",
    "Grid",
    "SweepLockedError",
    "SweepMismatchError",
    "SweepReport",
    "cell_seed",
    "open_sweep",
    "preset_axes",
    "preset_grid",
    "preset_solver",
    "run_sweep",
    "simulation_cell",
    "whitened_simulation_cell",
    "SOLVER_CELLS",
]
