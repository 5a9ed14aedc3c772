"""Two-layer ReLU transfer table: exact overlap, its Monte Carlo check, and simulated risks.

For each removed fraction ``mu``: the exact ``|P_perp f_t|^2`` of the target outside the
pretrained student's feature span (arc-cosine Gram matrices), its least-squares Monte
Carlo check (held-out residual +- SE), and over seeds the linear-transfer, scratch and
fine-tuning population risks (mean +- SE) at each ``n``; with the wall times.

Usage::

    python numerics/bench_relu.py --scale small --figure relu.png   # d=20, m*=8, m=48
    python numerics/bench_relu.py --scale default          # d=50, m*=20, m=200
    python numerics/bench_relu.py --scale paper --time-steps 20   # time a few steps only

``--time-steps K`` times ``K`` pretraining steps and ``K`` target steps (largest ``n``)
and extrapolates to the step budgets instead of running the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from featfate_sym import cli
from featfate_sym.simulation.relu import TrainingOptions
from featfate_sym.studies.relu_phase import SCALES, overlap_checks, relu_step_times, simulate_relu_phase


def _parse(argv):
    p = cli.Parser(prog="bench_relu", description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--mus", type=cli.number("mus", lower=0, upper=1), nargs="+", default=[0.0, 0.25, 0.5, 0.75],
                   help="removed fractions in [0, 1]")
    p.add_argument("--n-values", type=cli.number("n-values", lower=1, integer=True), nargs="+", default=[200, 2000])
    p.add_argument("--seeds", type=cli.number("seeds", lower=1, integer=True), default=3,
                   help="target sets (and scratch inits) per cell")
    p.add_argument("--lr", type=cli.number("lr", lower=0, lower_open=True), default=1.0)
    p.add_argument("--pretrain-steps", type=cli.number("pretrain-steps", lower=1, integer=True), default=4000)
    p.add_argument("--target-steps", type=cli.number("target-steps", lower=1, integer=True), default=2000)
    p.add_argument("--tol", type=cli.number("tol", lower=0), default=1e-6)
    p.add_argument("--mc-samples", type=cli.number("mc-samples", lower=1, integer=True), default=200_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ridge", type=cli.number("ridge", lower=0), default=0.0, help="ridge of the linear-transfer refit")
    p.add_argument("--figure", type=cli.output_file_type("--figure", (".png", ".pdf", ".svg")), default=None,
                   help="write the two-panel figure to this path (.png, .pdf or .svg)")
    p.add_argument("--time-steps", type=cli.number("time-steps", lower=0, integer=True), default=0)
    args = p.parse_args(argv)
    return args


def _mean_se(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "-"
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return f"{v.mean():.4f}+-{se:.4f}"


def time_steps(args, shape) -> None:
    """Seconds per step of pretraining and of target training; extrapolated totals."""
    per_pre, per_target = relu_step_times(**shape, lr=args.lr, steps=args.time_steps, n_samples=max(args.n_values),
                                          device=args.device)
    cells = len(args.mus) * len(args.n_values) * args.seeds
    total = len(args.mus) * args.pretrain_steps * per_pre + cells * 2 * args.target_steps * per_target
    print(f"scale {args.scale} {shape} device {args.device}")
    print(f"pretraining: {per_pre * 1e3:.2f} ms/step -> {args.pretrain_steps} steps: {args.pretrain_steps * per_pre:.0f} s per mu")
    print(f"target training (n = {max(args.n_values)}): {per_target * 1e3:.2f} ms/step")
    print(f"estimated table wall time (step budgets, {cells} cells, scratch + fine-tuning): {total / 60:.1f} min")


def table(args, shape) -> list[dict]:
    """Print the table; return one dict per (mu, n) cell.  One target teacher (task seed
    0) for every seed; the grid runs scratch once per (n, seed), since it does not depend
    on ``mu`` (same target, same samples per seed)."""
    pre_opts = TrainingOptions(lr=args.lr, max_steps=args.pretrain_steps, tol=args.tol)
    tgt_opts = TrainingOptions(lr=args.lr, max_steps=args.target_steps, tol=args.tol)
    print(f"scale {args.scale} {shape}; lr {args.lr} (mean-field, safeguarded), tol {args.tol}, "
          f"pretrain <= {args.pretrain_steps} steps, target <= {args.target_steps} steps, "
          f"seeds {args.seeds}, ridge {args.ridge}")
    grid = simulate_relu_phase(
        sorted(set(args.mus)), sorted(set(args.n_values)), args.seeds, **shape, seed=0, vary_teacher=False,
        ridge=args.ridge, pretrain=pre_opts, target_training=tgt_opts, device=args.device,
    )
    print(f"{'mu':>5} {'n':>6} {'overlap':>9} {'MC (held-out)':>17} {'R_lt':>16} {'R_sc':>16} "
          f"{'R_ft':>16} {'src risk':>9} {'conv sc/ft':>10}")
    # the Monte Carlo check of each mu's overlap, on the same tasks as the grid's task seed 0
    checks = overlap_checks(grid, n_samples=args.mc_samples, seed=int(grid.n_values[0]))
    cells = []
    for i, mu in enumerate(grid.mus):
        mu = float(mu)
        for j, n in enumerate(grid.n_values):
            n = int(n)
            mc = checks[i] if j == 0 else None
            cell = dict(
                mu=mu, n=n, overlap=float(grid.overlap[i, 0]), mc=mc,
                lt=grid.risk_linear_transfer[i, j].tolist(), sc=grid.risk_scratch[j].tolist(),
                ft=grid.risk_fine_tune[i, j].tolist(),
            )
            cells.append(cell)
            conv = f"{grid.scratch_converged[j].sum()}/{grid.fine_tune_converged[i, j].sum()} of {grid.replicates}"
            mc_text = f"{mc.held_out:.4f}+-{mc.held_out_se:.4f}" if mc else ""
            print(
                f"{mu:5.2f} {n:6d} {cell['overlap']:9.4f} {mc_text:>17} {_mean_se(cell['lt']):>16} "
                f"{_mean_se(cell['sc']):>16} {_mean_se(cell['ft']):>16} "
                f"{grid.source_risk[i, 0]:9.1e} {conv:>10}"
            )
        print(f"      pretraining: {grid.pretrain_steps[i, 0]} steps ({grid.pretrain_rejected[i, 0]} rejected), "
              f"{'tol' if grid.pretrain_converged[i, 0] else 'max_steps'}, {grid.pretrain_seconds[i, 0]:.1f} s")
    print(f"wall time {grid.seconds:.1f} s")
    return cells


def figure(cells: list[dict], path: str) -> None:
    """Overlap vs mu (exact, Monte Carlo, R_lt per n) and the risks vs n per mu."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mus = sorted({c["mu"] for c in cells})
    ns = sorted({c["n"] for c in cells})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    first = [next(c for c in cells if c["mu"] == mu) for mu in mus]
    ax1.plot(mus, [c["overlap"] for c in first], "k-", label=r"exact $|P_\perp f_t|^2$")
    ax1.errorbar(mus, [c["mc"].held_out for c in first], [2 * c["mc"].held_out_se for c in first],
                 fmt="kx", label="Monte Carlo (held-out)")
    for n in ns:
        row = [next(c for c in cells if c["mu"] == mu and c["n"] == n) for mu in mus]
        ax1.plot(mus, [np.mean(c["lt"]) for c in row], "o--", label=f"$R_{{lt}}$, n = {n}")
    ax1.set_xlabel(r"removed fraction $\mu$")
    ax1.set_ylabel("risk")
    ax1.legend(fontsize=8)
    for mu in mus:
        row = [next(c for c in cells if c["mu"] == mu and c["n"] == n) for n in ns]
        (line,) = ax2.plot(ns, [np.mean(c["lt"]) for c in row], "o--", label=rf"lt, $\mu$ = {mu:g}")
        ax2.plot(ns, [np.mean(c["ft"]) for c in row], "s:", color=line.get_color(), label=rf"ft, $\mu$ = {mu:g}")
    ax2.plot(ns, [np.mean(next(c for c in cells if c["n"] == n)["sc"]) for n in ns], "k^-", label="scratch")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("target samples n")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = _parse(argv)
    shape = SCALES[args.scale]
    if args.time_steps > 0:
        time_steps(args, shape)
    else:
        cells = table(args, shape)
        if args.figure:
            figure(cells, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
