"""Do data-centric distances predict transfer?  Rank correlations of KL and W2^2 with the
linear-transfer transferability T, an explicit pair of tasks where the nearer one (in
both distances) transfers worse, Dudley's bounded-Lipschitz distance (bounded by 2, with
its derived lower bound), the same for two-layer ReLU teachers (the in-span family a f_s
and a nearer target with replaced neurons), and the figure.

Tasks: x ~ N(0, I_d), y | x ~ N(beta_t . x, sigma^2), beta_t = a * unit(theta) against the
unit source teacher (featfate_sym.studies.distances_vs_transfer; paper v1 Thm 2.2, v2 appendix).

    python numerics/distances_table.py                      # table and pair only
    python numerics/distances_table.py --out figures        # and distances_vs_transfer.png/.pdf
"""

from __future__ import annotations

import sys

import numpy as np

from featfate_sym import cli


def main(argv=None) -> int:
    parser = cli.Parser(prog="distances_table", description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=cli.number("sigma", lower=0, lower_open=True), default=0.2, help="label-noise std of both tasks (> 0)")
    parser.add_argument("--lam", type=cli.number("lam", lower=0), default=0.0, help="ridge of the readout refit (>= 0)")
    parser.add_argument("--gamma", type=cli.number("gamma", lower=0, lower_open=True), default=0.5,
                        help="n/d of the single-gamma rows and of the pair (> 0, not 1)")
    parser.add_argument("--out", type=cli.output_dir_type("--out"), default=None,
                        help="folder for distances_vs_transfer.png/.pdf")
    parser.add_argument("--quick", action="store_true", help="low-resolution figure")
    args = parser.parse_args(argv)
    if args.gamma == 1.0:
        parser.error("gamma must differ from 1 (T = +oo on the scratch peak)")

    from featfate_sym.studies import distances_vs_transfer as dvt

    try:
        table = dvt.correlation_table(args.sigma, args.lam, args.gamma)
        pair = dvt.nearer_but_worse_pair(args.gamma, args.sigma)
    except ValueError as err:
        parser.error(str(err))

    print(f"Rank correlation with T_lt (sigma = {args.sigma:g}, lam = {args.lam:g}); "
          "a distance that predicted transfer would give -1")
    header = f"{'tasks':<58} {'Spearman KL':>11} {'Kendall KL':>10} {'Spearman W2':>11} {'Kendall W2':>10}"
    print(header)
    print("-" * len(header))
    for label, kl, w2 in table:
        print(f"{label:<58} {kl.spearman:>11.3f} {kl.kendall:>10.3f} {w2.spearman:>11.3f} {w2.kendall:>10.3f}")
    print()
    print(f"Explicit pair (gamma = {args.gamma:g}, sigma = {args.sigma:g}, lam = 0): "
          "the nearer task transfers worse")
    print(f"{'task':<8} {'beta_t':<26} {'KL':>9} {'W2^2':>9} {'T_lt':>9} {'R_lt':>8}")
    for name, task in (("nearer", pair.nearer), ("farther", pair.farther)):
        beta = f"{task.scale:g} * unit({np.degrees(task.theta):.0f} deg)"
        r_lt = float(dvt.lt_risk(task.theta, task.scale, 0.0))
        print(f"{name:<8} {beta:<26} {task.kl:>9.4f} {task.w2:>9.4f} {task.transfer:>9.4f} {r_lt:>8.4f}")

    print()
    angles = np.array([0.0, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 1.0]) * np.pi
    bl = dvt.bl_lower_bound(angles, args.sigma)
    w2 = dvt.w2_squared(angles, 1.0, args.sigma)
    print(f"Dudley bounded-Lipschitz distance beta (unit teachers, sigma = {args.sigma:g}): "
          "lower bound <= beta <= min(2, W2)")
    print(f"{'theta':>7} {'KL':>10} {'W2':>8} {'beta >=':>8} {'T_lt':>8}")
    kl = dvt.kl_divergence(angles, 1.0, args.sigma)
    t_lt = dvt.transferability(args.gamma, angles, 1.0, args.sigma, args.lam)
    for angle, k, w, b, t in zip(angles, kl, w2, bl, t_lt):
        print(f"{np.degrees(angle):>5.1f}deg {k:>10.4f} {np.sqrt(w):>8.4f} {b:>8.4f} {t:>8.4f}")
    grid = dvt.theta_gamma_grid(args.sigma, args.lam)
    distinct, inverse = np.unique(grid.theta, return_inverse=True)
    rho = dvt.rank_correlations(dvt.bl_lower_bound(distinct, args.sigma)[inverse], grid.transfer)
    print(f"Spearman(beta lower bound, T_lt) on the (theta, gamma) paper grid: {rho.spearman:.3f}; "
          "beta <= 2 for every pair of tasks, however far apart")

    print()
    family = dvt.relu_span_family(noise_std=args.sigma)
    pair = dvt.relu_nearer_but_worse(noise_std=args.sigma)
    print(f"ReLU teachers (d = 50, m* = 20 unit neurons, sigma = {args.sigma:g}): the linear-transfer limit is "
          "|P_perp f_t|^2 outside the span of the source neurons")
    print(f"{'target':<28} {'KL':>10} {'W2^2 >=':>9} {'W2^2 <=':>9} {'|P_perp f_t|^2':>15}")
    for targets in (family, pair):
        for row in zip(targets.label, targets.kl, targets.w2_lower, targets.w2_upper, targets.residual):
            label, k, lo, up, res = row
            print(f"{label:<28} {k:>10.4f} {lo:>9.4f} {up:>9.4f} {res:>15.3e}")
    if args.out is not None:
        from featfate_sym.plotting import distances, style

        with style.figure_style():
            fig = distances.distances(args.sigma, args.lam, args.gamma, quick=args.quick)
            res = style.resolution(args.quick)
            paths = style.save(fig, args.out, "distances_vs_transfer", res["dpi"])
        print()
        print("figure: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
