"""Wall time of a whole sweep: the default quick grid, or (``--paper``) the paper's grid.

Runs ``featfate_sym.sweeps.run_sweep`` from scratch into a fresh directory (or ``--out``;
an existing directory with the same settings is resumed, and only the cells computed
now are timed), then prints the wall time, the cells, the runs and how many of each
trained procedure converged.  Goals (issue 3): quick grid under 5 minutes, paper grid
under 2 hours on this 2-core machine.

    python numerics/bench_sweep.py                    # quick grid, all cores
    python numerics/bench_sweep.py --paper --out runs/paper --workers 2
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from featfate_sym import cli
from featfate_sym.sweeps import MAX_SEED, SOLVER_CELLS, SweepMismatchError, preset_grid, preset_solver, run_sweep
from featfate_sym.sweeps.storage import SweepLockedError


def main(argv=None) -> int:
    parser = cli.Parser(prog="bench_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="the paper's grid (800 cells x 20 replicates, d = 500)")
    parser.add_argument("--workers", type=cli.number("workers", lower=1, integer=True), default=os.cpu_count() or 1,
                        help="local worker processes (>= 1; default: number of CPUs)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, upper=MAX_SEED, integer=True), default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--out", type=cli.output_dir_type("--out"), default=None,
                        help="output directory (default: a temporary one)")
    args = parser.parse_args(argv)
    name = "paper" if args.paper else "quick"
    grid = preset_grid(name, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix=f"bench-sweep-{name}-") as scratch:
        out = args.out or scratch
        started = time.perf_counter()
        try:
            report = run_sweep(
                grid,
                out,
                cell_function=SOLVER_CELLS[preset_solver(name)],
                dtype=args.dtype,
                workers=args.workers,
                progress=True,
            )
        except (SweepMismatchError, SweepLockedError) as err:
            parser.error(f"argument --out: {' '.join(str(err).split())}")
        wall = time.perf_counter() - started
    print(f"preset {name}: {grid.summary()}")
    print(f"workers {args.workers}, dtype {args.dtype}, solver {preset_solver(name)}, cpus {os.cpu_count()}")
    print(f"cells {grid.size} ({report.computed} computed, {report.resumed} resumed), runs {grid.size * grid.replicates}")
    print(f"wall time {wall:.1f} s ({wall / 60:.2f} min); {wall / max(report.computed, 1):.2f} s per computed cell")
    for procedure, (done, total) in report.converged().items():
        print(f"converged {procedure}: {done}/{total}")
    steps = {name: int(report.dataset[name].max()) for name in report.dataset.data_vars if name.startswith("steps_")}
    print("largest step counts: " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
