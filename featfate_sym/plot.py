"""Render the figures of the theory (and simulation points) to PNG and PDF.

Usage::

    python -m featfate_sym.plot lt-phase --sigma 0 0.2 --out figures
    python -m featfate_sym.plot ft-phase --sigma 1 --L 3 --out figures
    python -m featfate_sym.plot slices scratch ridge --results sweep/results.nc --out figures
    python -m featfate_sym.plot all --quick --out /tmp/figs

Figures: lt-phase, ft-phase, slices, surface, scratch, ridge, finite-source,
vs-tuned-scratch, kl, distances, and the studies' figures (theory with their own
simulation points) anisotropic-phase, optimal-k, classification-phase, early-stopping,
learning-curves (or ``all``).  Each is written as ``NAME_PARAMS.png`` and ``.pdf``.
``--sigma`` and ``--gamma-s`` take several values (one figure per value; ``scratch``
draws every ``sigma`` in one figure).  Angles accept multiples of pi (``pi/8``,
``3pi/8``).  ``--quick`` draws a coarse, low-resolution version.  ``--results`` takes a
sweep's ``results.nc`` or its folder.  Bad arguments (including an ``--out`` that cannot
be written and a ``--results`` that is not a netCDF3 sweep): a one-line message and
exit status 2, before anything is drawn.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

import sympy as sp

from featfate_sym import cli, parameters

NAMES = (
    "lt-phase",
    "ft-phase",
    "slices",
    "surface",
    "scratch",
    "ridge",
    "finite-source",
    "vs-tuned-scratch",
    "kl",
    "distances",
)

#: figures drawn by a study (theory with its own simulation points): name -> module of
#: :mod:`featfate_sym.studies` whose ``figures(out, quick)`` writes them
STUDY_FIGURES = {
    "anisotropic-phase": "anisotropic_phase",
    "optimal-k": "optimal_k",
    "classification-phase": "classification_phase",
    "early-stopping": "early_stopping",
    "learning-curves": "learning_curves",
    "transfer-time": "transfer_time",
    "finite-eta-phase": "finite_eta_phase",
    "finite-step-transfer": "finite_step_transfer",
}
NAMES = NAMES + tuple(STUDY_FIGURES)

#: figure-specific defaults where they differ from the general ones
DEFAULT_SIGMAS = {"ft-phase": (1.0,), "scratch": (0.0, 0.2, 0.5)}
GENERAL_SIGMAS = (0.2,)


class _UsageError(Exception):
    pass


class _Parser(cli.Parser):
    def error(self, message):  # one line, no usage block
        raise _UsageError(message)


def angle(text: str) -> float:
    """An angle in radians: a number, or an expression such as ``pi/8``, ``3pi/8``,
    ``3*pi/8`` (read by :func:`featfate_sym.cli.parse_float`, never evaluated as code)."""
    try:
        return cli.parse_float(text, "angle")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m featfate_sym.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("figures", nargs="+", metavar="FIGURE", help=f"one of: {', '.join(NAMES)}, all")
    p.add_argument("--out", default="figures", help="output folder (default: figures)")
    p.add_argument("--quick", action="store_true", help="coarse, low-resolution version")
    p.add_argument("--results", help="sweep results to overlay: a results.nc (netCDF3) or its sweep folder")
    p.add_argument("--sigma", type=float, nargs="+", help="target noise level(s)")
    p.add_argument("--lam", type=float, default=0.0, help="readout ridge of linear transfer (default 0)")
    p.add_argument("--L", type=int, default=None, help="depth for fine-tuning (default 3 in ft-phase, else 2)")
    p.add_argument("--theta", type=angle, nargs="+", help="angles of slices / of the ridge curve")
    p.add_argument("--gamma", type=float, default=0.5, help="gamma of the ridge curve's simulation points")
    p.add_argument("--gamma-s", type=float, nargs="+", default=[0.5, 1.5], help="source sample ratio(s)")
    p.add_argument("--sigma-s", type=float, default=0.2, help="source noise level")
    from featfate_sym.plotting.slices import kinds

    p.add_argument("--kind", choices=kinds(), default="lt",
                   help="protocol (tag) of slices and surface: lt linear transfer, ft fine-tuning, ft1 first layer only")
    return p


#: the angles the figures draw
_PLOT_THETA = parameters.theta.restricted(upper=sp.pi / 2)


def _check(args) -> list[str]:
    names = list(NAMES) if "all" in args.figures else args.figures
    for name in names:
        if name not in NAMES:
            raise _UsageError(f"unknown figure {name!r}; choose from {', '.join(NAMES)}, all")
    # every value through its declaration (featfate_sym.parameters); the figures draw
    # theta in [0, pi/2]
    checks = [("sigma", "sigma", v) for v in args.sigma or ()] + [("lam", "lam", args.lam), ("gamma", "gamma", args.gamma),
              ("sigma-s", "sigma_s", args.sigma_s)] + [("gamma-s", "gamma_s", v) for v in args.gamma_s]
    checks += [("theta", "theta", v) for v in args.theta or ()] + ([("L", "L", args.L)] if args.L is not None else [])
    for flag, name, value in checks:
        declared = _PLOT_THETA if name == "theta" else parameters.get(name)
        try:
            parameters.scalar(declared, value)
        except ValueError:
            text = declared.domain_text()
            allowed = f"an {text}" if text.startswith("integer") else f"in {text}"
            raise _UsageError(f"--{flag} must be {allowed} (got {value:g})") from None
    if ("kl" in names or "distances" in names) and args.sigma and min(args.sigma) == 0:
        raise _UsageError("--sigma must be > 0 for the kl and distances figures (KL diverges without noise)")
    try:
        cli.output_and_results(args)
    except ValueError as err:
        raise _UsageError(str(err)) from None
    return names


def jobs(name: str, args) -> list[tuple[str, dict]]:
    """(file stem, keyword arguments) of every figure ``name`` makes under ``args``."""
    from featfate_sym.plotting.style import tag

    sigmas = tuple(args.sigma) if args.sigma else DEFAULT_SIGMAS.get(name, GENERAL_SIGMAS)
    if name == "scratch":
        return [(f"{name}_{tag([('sigma', s) for s in sigmas])}", {"sigmas": sigmas})]
    if name == "finite-source":
        return [(f"{name}_{tag([('gamma_s', g), ('sigma_s', args.sigma_s)])}", {"gamma_s": g, "sigma_s": args.sigma_s})
                for g in args.gamma_s]
    out = []
    for sigma in sigmas:
        if name in ("lt-phase", "vs-tuned-scratch", "kl"):
            out.append((f"{name}_{tag([('sigma', sigma), ('lam', args.lam)])}", {"sigma": sigma, "lam": args.lam}))
        elif name == "ft-phase":
            L = args.L or 3
            out.append((f"{name}_{tag([('sigma', sigma), ('L', L)])}", {"sigma": sigma, "L": L}))
        elif name in ("slices", "surface"):
            L = args.L or 2
            kw = {"sigma": sigma, "lam": args.lam, "L": L, "kind": args.kind}
            params = [("sigma", sigma), ("lam", args.lam)] if args.kind == "lt" else [("sigma", sigma), ("L", L)]
            if name == "slices" and args.theta:
                kw["thetas"] = tuple(args.theta)
            out.append((f"{name}-{args.kind}_{tag(params)}", kw))
        elif name == "distances":
            out.append((f"{name}_{tag([('sigma', sigma), ('lam', args.lam), ('gamma', args.gamma)])}",
                        {"sigma": sigma, "lam": args.lam, "gamma": args.gamma}))
        elif name == "ridge":
            theta = args.theta[0] if args.theta else math.pi / 8
            out.append((f"{name}_{tag([('gamma', args.gamma), ('theta', theta), ('sigma', sigma)])}",
                        {"gamma": args.gamma, "theta": theta, "sigma": sigma}))
    return out


def render(names: Sequence[str], args, log=None) -> list[Path]:
    import logging

    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    # the PDF writer's font subsetter logs harmless notes about old font timestamps
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    from featfate_sym.plotting import FIGURES, experiment, style

    results = experiment.load(args.results) if args.results is not None else None
    res = style.resolution(args.quick)
    written: list[Path] = []
    for name in names:
        if name in STUDY_FIGURES:
            import importlib

            study = importlib.import_module(f"featfate_sym.studies.{STUDY_FIGURES[name]}")
            with style.figure_style():
                paths = study.figures(Path(args.out), quick=args.quick)
            written += paths
            if log is not None:
                log(" ".join(str(p) for p in paths))
            continue
        for stem, kwargs in jobs(name, args):
            with style.figure_style():
                fig = FIGURES[name](**kwargs, quick=args.quick, results=results)
                paths = style.save(fig, args.out, stem, res["dpi"])
            written += paths
            if log is not None:
                log(" ".join(str(p) for p in paths))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        names = _check(args)
        render(names, args, log=print)
    except (_UsageError, ValueError) as err:
        sys.stderr.write(f"{parser.prog}: error: {' '.join(str(err).split())}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
