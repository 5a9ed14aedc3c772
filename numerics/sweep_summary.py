"""Summary of a stored sweep: convergence per trained procedure, steps per run, and the
theory-vs-simulation agreement table grouped by quantity and form.

The agreement rows are :func:`featfate_sym.report.agreement`'s (every prediction of the
protocol table at every cell where it holds); each ``|z|`` is compared with its Student-t
critical value, Bonferroni over all rows at the family-wise rate ``--alpha`` (default the
report's 1e-3), and the rows beyond it are listed.  Steps are given overall and split at
``gamma = 1`` (below it fine-tuning's end point depends on the step; above it the end
point is unique).

    python numerics/sweep_summary.py runs/paper            # a sweep folder or results.nc
    python numerics/sweep_summary.py runs/paper --alpha 0.01
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from featfate_sym import cli, report
from featfate_sym.sweeps import open_sweep


def _steps(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "none"
    return f"median {np.median(values):g}, max {values.max():g}, mean {values.mean():.1f}"


def main(argv=None) -> int:
    parser = cli.Parser(prog="sweep_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a sweep folder or its results.nc")
    parser.add_argument("--alpha", type=cli.number("alpha", lower=0, upper=1, lower_open=True, upper_open=True),
                        default=report.TABLE_ALPHA, help=f"family-wise false-alarm rate (default {report.TABLE_ALPHA:g})")
    args = parser.parse_args(argv)
    try:
        data = open_sweep(args.results)
    except (OSError, ValueError) as err:
        print(f"error: results: cannot read {args.results}: {err}", file=sys.stderr)
        return 2
    cells = int(np.prod([data.sizes[d] for d in data.dims if d != "replicate"]))
    print(f"{cells} cells x {data.sizes.get('replicate', 1)} replicates")
    for name in sorted(v for v in data.data_vars if v.startswith("converged_")):
        flags = np.asarray(data[name].values, dtype=bool)
        print(f"{name}: {int(flags.sum())}/{flags.size}")
    gamma = data["gamma"] if "gamma" in data.coords else None
    for name in sorted(v for v in data.data_vars if v.startswith("steps_")):
        steps = data[name]
        print(f"{name}: {_steps(np.asarray(steps.values, dtype=float).ravel())}")
        if gamma is not None:
            for label, mask in (("gamma < 1", gamma < 1), ("gamma > 1", gamma > 1)):
                if bool(mask.any()):
                    part = steps.where(mask, drop=True)
                    print(f"  {label}: {_steps(np.asarray(part.values, dtype=float).ravel())}")
    rows = report.agreement(data)
    crit = report.critical_values(rows, args.alpha)
    finite = [c for c in crit if np.isfinite(c)]
    print(f"\nagreement: {len(rows)} rows, Bonferroni over {len(finite)} at family-wise {args.alpha:g}"
          + (f", critical value {finite[0]:.2f}" if finite and len(set(np.round(finite, 9))) == 1 else ""))
    print(f"{'quantity':<10} {'form':<36} {'points':>6} {'max|z|':>7} {'mean|z|':>8} {'beyond':>7}")
    for quantity, form, points, largest, mean in report.summary(rows):
        beyond = sum(1 for r, c in zip(rows, crit)
                     if r.quantity == quantity and r.form == form and np.isfinite(c) and abs(r.z) > c)
        print(f"{quantity:<10} {form:<36} {points:>6} {largest:>7.2f} {mean:>8.2f} {beyond:>7}")
    flagged = [(r, c) for r, c in zip(rows, crit) if np.isfinite(c) and abs(r.z) > c]
    for r, c in flagged:
        where = ", ".join(f"{k} = {v:.4g}" for k, v in r.params.items())
        print(f"beyond: {r.quantity} ({r.form}) at {where}: theory {r.theory:.6g}, mean {r.mean:.6g}, "
              f"SE {r.stderr:.2g}, z = {r.z:.2f} (critical {c:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
