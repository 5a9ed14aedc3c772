"""Benchmarks of the deep linear simulation engine (printed side by side in one run).

1. Per-step time of the engine (gradient descent from sufficient statistics, rank-one
   layer gradients, adaptive step, convergence checks) against a conventional
   implementation that runs the network forward and backward on the data matrix with
   torch autograd each step: d = 500, 20 replicates, n = 250, 500, 1000, L = 2.
   Goal: at least 10x at n = 1000, and the engine flat in n.
2. The engine's inner loop against its floor: a bare loop doing only the unavoidable
   arithmetic of a step (the matrix-vector products and the rank-one updates, same
   shapes, same batch, same BLAS calls).  Goal: within 2x.
3. Steps to converge (training loss within the tolerance of the least-squares minimum)
   at gamma = 0.9, 1.0 and 1.1, scratch and fine-tuning: gradient descent with the
   adaptive step and the whitened solver (adaptive step on the loss preconditioned by
   ``Sxx^+``, same end points) against a fixed step of 0.01 (the paper's fine-tuning
   step); d = 500, 5 replicates, capped at 60 000 steps (a capped run is reported as not
   converged).

Usage::

    python numerics/bench_simulation.py            # full size (several minutes)
    python numerics/bench_simulation.py --quick    # small version (seconds)

Timings are wall-clock medians on one thread (``torch.set_num_threads``, default 1).  The
timed computations are in :mod:`featfate_sym.studies.benchmarks`.
"""

from __future__ import annotations

import sys

import torch

from featfate_sym import cli
from featfate_sym.studies.benchmarks import (
    benchmark_problem,
    conventional_step_time,
    engine_step_time,
    floor_step_time,
    steps_to_converge,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def main(argv=None) -> int:
    parser = cli.Parser(prog="bench_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--threads", type=cli.number("threads", lower=1, integer=True), default=1,
                        help="torch threads (>= 1, default 1)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="only this precision")
    parser.add_argument("--conv-dim", type=cli.number("conv-dim", lower=2, integer=True), default=None,
                        help="d of the steps-to-converge runs (>= 2)")
    parser.add_argument("--conv-cap", type=cli.number("conv-cap", lower=1, integer=True), default=None,
                        help="step cap of the steps-to-converge runs (>= 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.quick:
        dim, reps, ns, steps, conv_dim, conv_reps, cap = 100, 5, (50, 100, 200), 20, 100, 3, 20_000
    else:
        dim, reps, ns, steps, conv_dim, conv_reps, cap = 500, 20, (250, 500, 1000), 50, 500, 5, 60_000
    conv_dim = args.conv_dim or conv_dim
    cap = args.conv_cap or cap
    dtypes = [args.dtype] if args.dtype else ["float32", "float64"]

    print(f"# per-step time, L = 2, d = {dim}, {reps} replicates, {args.threads} thread(s)")
    print(f"{'dtype':8s} {'n':>6s} {'conventional ms':>16s} {'engine ms':>10s} {'floor ms':>9s} "
          f"{'speed-up':>9s} {'engine/floor':>13s}")
    for name in dtypes:
        dtype = DTYPES[name]
        for n in ns:
            data, weights = benchmark_problem(reps, dim, n, dtype)
            conv = conventional_step_time(data, weights, dtype, max(steps // 5, 5))
            eng = engine_step_time(data, weights, dtype, steps)
            flo = floor_step_time(data, weights, dtype, steps)
            print(f"{name:8s} {n:6d} {1e3 * conv:16.2f} {1e3 * eng:10.2f} {1e3 * flo:9.2f} "
                  f"{conv / eng:8.1f}x {eng / flo:12.2f}x")

    print()
    print(f"# steps to converge (excess loss <= tol), L = 2, d = {conv_dim}, {conv_reps} replicates, "
          f"sigma = 0.2, theta = pi/4, cap {cap} steps; median [max] over replicates")
    print(f"{'gamma':>5s} {'procedure':10s} {'fixed 0.01':>16s} {'gd adaptive':>16s} {'whitened':>16s} "
          f"{'converged f/g/w':>16s} {'fixed/gd':>9s} {'fixed/white':>11s} {'wall f/g/w s':>18s}")
    dtype = torch.float64

    def ratio(slow, fast):
        # a median at the cap is only a lower bound of the steps needed
        if fast >= cap:
            return "n/a"
        return f"{'>=' if slow >= cap else ''}{slow / fast:.1f}x"

    for gamma in (0.9, 1.0, 1.1):
        runs = {
            "fixed": steps_to_converge(conv_dim, conv_reps, gamma, 2, dtype, cap, 0.01),
            "gd": steps_to_converge(conv_dim, conv_reps, gamma, 2, dtype, cap, None),
            "whitened": steps_to_converge(conv_dim, conv_reps, gamma, 2, dtype, cap, None, "whitened"),
        }
        for label in ("scratch", "fine-tune"):
            row = {name: out[label] for name, out in runs.items()}
            med = {name: int(run.steps.median()) for name, (run, _) in row.items()}
            cols = " ".join(f"{med[k]:7d} [{int(row[k][0].steps.max()):6d}]" for k in ("fixed", "gd", "whitened"))
            conv = "/".join(str(int(row[k][0].converged.sum())) for k in ("fixed", "gd", "whitened"))
            wall = "/".join(f"{row[k][1]:.1f}" for k in ("fixed", "gd", "whitened"))
            print(f"{gamma:5.1f} {label:10s} {cols} {conv:>16s} {ratio(med['fixed'], med['gd']):>9s} "
                  f"{ratio(med['fixed'], med['whitened']):>11s} {wall:>18s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
