"""Command line for sweeps of the Torch simulations: ``python -m featfate_sym.simulate``.

Runs a grid of simulation cells (:mod:`featfate_sym.sweeps`) and stores it as
``OUT/results.nc`` (netCDF, one dimension per swept axis plus ``replicate``), one file
per finished cell under ``OUT/cells/``.  Rerunning the same command resumes an
interrupted sweep.

Grids.  ``--preset quick`` (the default; a few minutes on two cores) or ``--preset
paper`` (SPEC section 4: ``d = 500``, ``L = 2``, 20 replicates, ``gamma`` 0.1..2.0,
``theta/(pi/2)`` 0.05..1.0, ``sigma`` 0 and 0.2, ``whitened`` solver).  ``--solver``
picks the training solver (``gd``: gradient descent on the empirical loss; ``whitened``:
preconditioned by ``(X^T X / n)^+``, the same end points in far fewer steps near
``gamma = 1``).  Any axis flag replaces the preset's
values for that axis: a comma list (``--gamma 0.5,1.5``), or ``start:stop:num`` (evenly
spaced, both ends included: ``--theta 0:pi/2:5``).  Values may be written with ``pi``
(``pi/4``, ``3pi/8``, ``0.25*pi``), ``sqrt(...)``, ``+ - * / ^`` and ``inf`` (``--gamma-s
inf``: population source).  A grid has at most 10^5 values per axis and 10^6 cells.
An axis given more than one value is swept (a dimension of the dataset); an axis given
one value is fixed.  Examples::

    python -m featfate_sym.simulate --dry-run
    python -m featfate_sym.simulate --out runs/quick
    python -m featfate_sym.simulate --preset paper --out runs/paper
    python -m featfate_sym.simulate --gamma 0.5 --theta pi/8 --lam 0:0.5:6 --d 200

``--protocols scratch,linear_transfer,fine_tune[1]`` chooses the protocols every cell runs
(:mod:`featfate_sym.protocols`; default the paper's three); the list is recorded with the
sweep, whose variables are then ``risk_<tag>`` and ``T_<tag>`` of those protocols.

Anisotropic inputs and several source tasks (optional; without these flags the sweep is
the isotropic one-source protocol, unchanged).  ``--spectrum SPEC`` sets the input
covariance eigenvalues (:mod:`featfate_sym.spectra`), one of ``two_level:frac=F,r=R``
(a fraction ``F`` in (0, 1) of the directions with variance ``R`` > 0, the rest 1),
``power_law:a=A`` (``lambda_i`` proportional to ``i^(-A)``, mean 1, ``A >= 0``) or
``values:v1,v2,...`` (exactly ``d`` positive numbers); the text is read by a fixed grammar
(``name:key=number,...`` with plain decimal numbers), never evaluated.  ``--teachers
uniform|top|bottom`` puts the teachers' energy uniformly on all directions, or on the
10 % of directions with the largest / smallest eigenvalues (``top:0.2`` for another
fraction).  ``--k K`` pretrains on ``K`` source tasks at once (a ``K``-output network;
:func:`featfate_sym.simulation.run_protocols`); for ``K > 1`` the cells run scratch and
linear transfer by default, ``fine_tune`` starts from the trunk with the linear-transfer
readout (``fine_tune[...]`` of some layers is refused), and they need ``L >= 2``.  Example::

    python -m featfate_sym.simulate --spectrum two_level:frac=0.2,r=4 --teachers top --k 2 --d 60

Exit status: 0 on success; 2 for bad arguments, an output directory that cannot be
written, one holding another sweep, or one that another run is writing (its lock file
``OUT/sweep.lock``; one line on standard error); 1 if a simulation fails; 130 if
interrupted.
"""

from __future__ import annotations

import math
import shlex
import sys
import types

from featfate_sym import cli, parameters
from featfate_sym.spectra import SPECTRUM_FORMS, TEACHER_FORMS
from featfate_sym.sweeps.executors import SOLVER_CELLS, SimulationCell
from featfate_sym.sweeps.grid import MAX_AXIS_VALUES, MAX_CELLS, MAX_SEED, Grid
from featfate_sym.sweeps.presets import PRESETS, preset_axes, preset_solver

__all__ = ["main", "parse_values"]

# flag -> axis; each axis is validated through its declaration in featfate_sym.parameters
_AXIS_FLAGS = {"gamma": "gamma", "theta": "theta", "sigma": "sigma", "lam": "lam", "L": "L", "d": "d",
               "gamma-s": "gamma_s", "sigma-s": "sigma_s"}
#: the simulator needs two input dimensions (teachers at an angle)
_DIM = parameters.d.restricted(lower=2)


def _declaration(axis: str):
    return _DIM if axis == "d" else parameters.get(axis)


def _allowed(axis: str) -> str:
    text = _declaration(axis).domain_text()
    text = f"an {text}" if text.startswith("integer") else f"in {text}"
    return f"{text} or inf (the population source)" if axis == "gamma_s" else text


class _UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class _Parser(cli.Parser):
    def error(self, message):  # one line, no usage block
        raise _UsageError(message)


def _number(text: str, name: str) -> float:
    text = text.strip()
    try:
        # plain numbers (and nan, which the range check then names) as before
        return float(text)
    except ValueError:
        pass
    return cli.parse_float(text, name)


def _snap(value: float) -> float:
    # rounding residue of start + i step: 0.30000000000000004 -> 0.3 (a few ulps away)
    short = float(f"{value:.12g}")
    return short if abs(short - value) <= 4 * math.ulp(value) else value


def parse_values(text: str, name: str = "value") -> list[float]:
    """A comma list of numbers, or ``start:stop:num`` (``num`` evenly spaced values,
    both ends included, ``1 <= num <= MAX_AXIS_VALUES``).  Numbers are read by
    :func:`featfate_sym.cli.parse_number` (``pi/4``, ``3pi/8``, ``inf``, ...).  Raises
    ``ValueError`` whose message starts with ``name``."""
    text = text.strip()
    if not text:
        raise ValueError(f"{name}: no values")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"{name}: {text!r} is not of the form start:stop:num")
        try:
            count = int(parts[2])
        except ValueError:
            raise ValueError(f"{name}: num in {text!r} must be an integer in [1, {MAX_AXIS_VALUES}]") from None
        # checked before any value is made: 0.5:2:1000000000 must not fill the memory
        if not 1 <= count <= MAX_AXIS_VALUES:
            raise ValueError(
                f"{name}: num in {text!r} must be an integer in [1, {MAX_AXIS_VALUES}] "
                f"(at most {MAX_AXIS_VALUES} values per axis, {MAX_CELLS} cells overall)"
            )
        start, stop = _number(parts[0], name), _number(parts[1], name)
        if count == 1:
            return [start]
        step = (stop - start) / (count - 1)
        return [start] + [_snap(start + i * step) for i in range(1, count - 1)] + [stop]
    parts = text.split(",")
    if len(parts) > MAX_AXIS_VALUES:
        raise ValueError(f"{name}: {len(parts)} values; at most {MAX_AXIS_VALUES} per axis ({MAX_CELLS} cells overall)")
    return [_number(part, name) for part in parts]


def _cell_function(args, grid: Grid, solver: str):
    """The cell function of ``--solver``, ``--protocols``, ``--spectrum``, ``--teachers`` and
    ``--k`` (a :class:`~featfate_sym.sweeps.executors.SimulationCell`), checked at every
    ``d`` and ``L`` of the grid (bad values: exit status 2)."""
    k = 1 if args.k is None else args.k
    if k < 1:
        raise _UsageError(f"--k must be an integer >= 1 (got {k})")
    try:
        protocols = None if args.protocols is None else parse_protocols(args.protocols)
        cell = SimulationCell(solver, protocols, args.spectrum, args.teachers, k)
    except ValueError as err:
        text = str(err)
        raise _UsageError(text if text.startswith("--") else f"--protocols: {text}") from None
    if k > 1 and min(grid.values("L")) < 2:
        raise _UsageError(f"--k > 1 needs --L >= 2 (linear transfer on the frozen trunk; got L = "
                          f"{min(grid.values('L')):g})")
    if k > 1 and cell.protocols is not None and any(name.startswith("fine_tune[") for name in cell.protocols):
        raise _UsageError("--protocols: with --k > 1 only all-layer fine_tune is defined (from the trunk with "
                          "the linear-transfer readout); fine_tune[...] is refused")
    if cell.protocols is not None and min(grid.values("L")) < 2 and any(
            name != "scratch" for name in cell.protocols):
        raise _UsageError("--protocols: a protocol from the pretrained network needs --L >= 2")
    for name in cell.protocols or ():
        if name.startswith("fine_tune["):
            top = max(int(layer) for layer in name[len("fine_tune["):-1].split(","))
            if top > min(grid.values("L")):
                raise _UsageError(f"--protocols: {name} trains layer {top}, but the grid has L = "
                                  f"{min(grid.values('L')):g} (layers must be in [1, L])")
    for dim in grid.values("d"):
        dim = int(dim)
        if k > dim - 1:
            raise _UsageError(f"--k must be <= d - 1 (k source directions orthogonal to the target; got k = {k}, "
                              f"d = {dim})")
        try:
            _, profile = cell.inputs(dim)
        except ValueError as err:
            raise _UsageError(str(err)) from None
        if profile is not None and int((profile > 0).sum()) < k + 1:
            raise _UsageError(f"--teachers {args.teachers} leaves {int((profile > 0).sum())} direction(s) at d = "
                              f"{dim}; the teachers need at least k + 1 = {k + 1} (a larger fraction, e.g. "
                              f"{args.teachers.partition(':')[0]}:0.2)")
    return cell


def parse_protocols(text: str) -> tuple[str, ...]:
    """``--protocols`` text: names separated by commas outside brackets, e.g.
    ``scratch,linear_transfer,fine_tune[1,2]`` (each read by :func:`featfate_sym.protocols.get`)."""
    names, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            names.append(current.strip())
            current = ""
        else:
            current += char
    names.append(current.strip())
    if depth != 0 or any(not name for name in names):
        raise ValueError(f"--protocols must be protocol names separated by commas, e.g. "
                         f"scratch,linear_transfer,fine_tune[1] (got {text!r})")
    return tuple(names)


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m featfate_sym.simulate",
        description="Sweep the finite-width Torch simulations of deep linear transfer over a grid "
        "and store the results as netCDF (resumable).",
        epilog="Axis values: comma list or start:stop:num; 'pi' and 'inf' allowed. "
        "An axis with one value is fixed, with several it is swept.",
    )
    parser.add_argument("--preset", choices=PRESETS, default="quick", help="base grid (default quick)")
    for flag, axis in _AXIS_FLAGS.items():
        names = [f"--{flag}"] + ([f"--{axis}"] if axis != flag else [])
        parser.add_argument(*names, dest=axis, metavar="VALUES",
                            help=f"values of {axis} ({_declaration(axis).description}), {_allowed(axis)}")
    parser.add_argument(
        "--solver",
        choices=tuple(SOLVER_CELLS),
        help="training solver: gd (gradient descent) or whitened (preconditioned by (X^T X/n)^+, same end "
        "points, fast near gamma = 1); default: the preset's (quick gd, paper whitened)",
    )
    parser.add_argument("--protocols", metavar="NAMES",
                        help="protocols each cell runs, separated by commas, e.g. scratch,fine_tune[1] "
                        "(default the paper's scratch,linear_transfer,fine_tune; with --k > 1 scratch,linear_transfer)")
    parser.add_argument("--spectrum", metavar="SPEC",
                        help=f"input covariance eigenvalues: {SPECTRUM_FORMS} (default isotropic)")
    parser.add_argument("--teachers", metavar="PLACE",
                        help=f"teachers' energy profile: {TEACHER_FORMS} (default uniform; top/bottom: the "
                        "10 %% of directions with the largest/smallest eigenvalues)")
    parser.add_argument("--k", type=int, metavar="K",
                        help="number of source tasks pretrained on at once (default 1; K > 1 runs scratch and "
                        "linear transfer)")
    parser.add_argument("--replicates", type=int, help="experiments per cell (>= 1; preset: quick 20, paper 20)")
    parser.add_argument("--seed", type=int, default=0, help=f"base seed in [0, {MAX_SEED}] (default 0)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="precision (default float64)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", help="output directory (default sweep-PRESET)")
    parser.add_argument("--workers", type=int, help="local worker processes (>= 1; default: number of CPUs)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace a stored sweep with other settings")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    return parser


def _grid(args) -> Grid:
    swept, fixed, replicates = preset_axes(args.preset)
    axes = {**swept, **fixed}
    for flag, axis in _AXIS_FLAGS.items():
        text = getattr(args, axis)
        if text is None:
            continue
        try:
            values = parse_values(text, f"--{flag}")
        except ValueError as err:
            raise _UsageError(str(err)) from None
        declaration = _declaration(axis)
        checked = []
        for value in values:
            try:
                checked.append(parameters.scalar(declaration, value, allow_inf=axis == "gamma_s"))
            except ValueError:
                raise _UsageError(f"--{flag} must be {_allowed(axis)} (got {value:g})") from None
        axes[axis] = checked
    # several values: swept; one value: fixed (a preset's swept axes stay swept unless given)
    swept_axes = {}
    fixed_axes = {}
    for axis, values in axes.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        given = getattr(args, axis) is not None
        if len(values) > 1 or (axis in swept and not given):
            swept_axes[axis] = values
        else:
            fixed_axes[axis] = values[0]
    gammas = swept_axes.get("gamma", [fixed_axes.get("gamma")])
    widths = swept_axes.get("d", [fixed_axes.get("d")])
    if round(min(gammas) * min(widths)) < 2:
        raise _UsageError(
            f"--gamma must give n = round(gamma d) >= 2 samples (gamma = {min(gammas):g} with d = {min(widths)})"
        )
    sources = [v for v in swept_axes.get("gamma_s", [fixed_axes.get("gamma_s")]) if math.isfinite(v)]
    if sources and round(min(sources) * min(widths)) < 1:
        raise _UsageError(f"--gamma-s must give n_s = round(gamma_s d) >= 1 (gamma_s = {min(sources):g} with d = {min(widths)})")
    if args.replicates is not None:
        if args.replicates < 1:
            raise _UsageError(f"--replicates must be an integer >= 1 (got {args.replicates})")
        replicates = args.replicates
    if not 0 <= args.seed <= MAX_SEED:
        raise _UsageError(f"--seed must be in [0, {MAX_SEED}] (got {args.seed})")
    if args.workers is not None and args.workers < 1:
        raise _UsageError(f"--workers must be an integer >= 1 (got {args.workers})")
    try:
        return Grid.build(swept_axes, fixed=fixed_axes, replicates=replicates, seed=args.seed)
    except ValueError as err:
        raise _UsageError(str(err)) from None


def _check_device(device: str) -> None:
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _UsageError(f"--device must be a torch device available here, e.g. cpu (got {device!r}: {first})") from None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "simulate"
    try:
        args = _parser().parse_args(argv)
        grid = _grid(args)
        solver = args.solver or preset_solver(args.preset)
        cell = _cell_function(args, grid, solver)
        try:
            out = cli.output_dir(f"sweep-{args.preset}" if args.out is None else args.out, "--out")
        except ValueError as err:
            raise _UsageError(str(err)) from None
        if args.dry_run:
            print(f"grid: {grid.summary()}")
            print(f"cells: {grid.size}, replicates: {grid.replicates}, runs: {grid.size * grid.replicates}")
            print(f"solver: {solver}")
            if cell.protocols is not None:
                print(f"protocols: {', '.join(cell.protocols)}")
            if args.spectrum is not None or args.teachers is not None or cell.k != 1:
                print(f"inputs: spectrum {args.spectrum or 'isotropic'}, teachers {args.teachers or 'uniform'}, "
                      f"source tasks k = {cell.k}")
            print(f"output: {out / 'results.nc'}")
            return 0
        if args.scheduler is None:
            _check_device(args.device)
    except _UsageError as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2

    from featfate_sym.sweeps.runner import run_sweep
    from featfate_sym.sweeps.storage import SweepLockedError, SweepMismatchError

    command = shlex.join(["python", "-m", "featfate_sym.simulate", *argv])
    try:
        report = run_sweep(
            grid,
            out,
            cell_function=cell,
            dtype=args.dtype,
            device=args.device,
            workers=args.workers,
            scheduler=args.scheduler,
            overwrite=args.overwrite,
            progress=not args.quiet,
            command_line=command,
        )
    except (SweepMismatchError, SweepLockedError) as err:
        print(f"{prog}: error: --out: {_one_line(err)}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished cells are kept in {out / 'cells'}, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # a failed simulation: one line, the cells that finished are kept
        print(f"{prog}: error: {type(err).__name__}: {_one_line(err)} (finished cells are kept in {out / 'cells'})", file=sys.stderr)
        return 1
    converged = ", ".join(f"{name} {done}/{total}" for name, (done, total) in report.converged().items())
    print(
        f"{grid.size} cells ({report.computed} computed, {report.resumed} resumed) x {grid.replicates} replicates "
        f"in {report.seconds:.1f} s"
    )
    print(f"converged: {converged or 'no convergence flags'}")
    print(f"results: {report.path}")
    return 0


class _CallableModule(types.ModuleType):
    """``featfate_sym.simulate`` is this command line *and* the labelled simulator:
    importing this module rebinds the package's name ``simulate`` (the function
    :func:`featfate_sym.labelled.simulate`) to it, so calling it forwards to that
    function and ``ff.simulate(protocols, replicates=, ...)`` works either way."""

    def __call__(self, protocols=None, **kwargs):
        from featfate_sym.labelled import simulate

        return simulate(protocols, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
