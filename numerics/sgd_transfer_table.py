"""Fine-tuning transferability after minibatch SGD against ``ft.transferability_sgd``.

Setting: gamma = 0.5, theta = pi/3, sigma = 0.5, L = 2, d = 200 (n = 100) by default;
batch sizes B = 5 and 20, with and without replacement, steps eta = r B/d for r = eta d/B
in {0.025 (B = 20 only), 0.05, 0.1}; every run from the same balanced pretrained network and
data per replicate as its paired full-batch GD run (empirical loss), to a training loss below
1e-11.

Columns: theory ``T`` (proportional limit: ``T_exact + eta`` times the SGD slope with the
full-batch drift of the empirical loss), the simulated mean +- SE and z (the finite-d gap of
``T`` itself, ``E T(d) - T_exact``, is not small at d = 200: compare the paired shifts); the
paired shift ``T_SGD - T_GD``: limit theory, the first-order prediction along each replicate's
own GD run, the simulated mean +- SE, and z against each.  Slopes: Richardson's
``(4 D(e) - D(2e))/(2e)`` from r = 0.05 and 0.1 per replicate (removes the O(eta^2) term),
against the per-replicate first order (paired t) and the limit.  Tests are two-sided t at
family-wise rate 1e-3, Bonferroni over the rows of each block.

Usage: ``python numerics/sgd_transfer_table.py [--dim 200] [--replicates 24] [--seed 11] [--depth 2]``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from featfate_sym import cli, learning_curves
from featfate_sym.stats import mean_se, t_critical
from featfate_sym.studies.finite_step_transfer import fine_tuning_runs

GAMMA, THETA, SIGMA, DEPTH = 0.5, math.pi / 3, 0.5, 2
RATIOS = {5: (0.05, 0.1), 20: (0.025, 0.05, 0.1)}
ALPHA = 1e-3


def _z(dev: float, se: float) -> str:
    """``dev/se`` with two decimals; "exact" where the SE is 0 (B = n without replacement is GD)."""
    if se == 0:
        return "exact" if dev == 0 else "inf"
    return f"{dev / se:+.2f}"


def main(argv=None) -> None:
    parser = cli.Parser(prog="sgd_transfer_table", description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=cli.number("dim", lower=20, upper=2000, integer=True), default=200,
                        help="input dimension d (default 200)")
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, upper=1000, integer=True),
                        default=24, help="paired replicates (default 24)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, upper=2**31 - 1, integer=True), default=11,
                        help="random seed (default 11)")
    parser.add_argument("--depth", type=cli.number("depth", lower=2, upper=8, integer=True), default=DEPTH,
                        help=f"network depth L (default {DEPTH})")
    args = parser.parse_args(argv)
    depth = args.depth
    torch.set_num_threads(1)
    dim, reps = args.dim, args.replicates
    start = time.time()
    plan: dict[float, list] = {}
    for batch, ratios in RATIOS.items():
        for r in ratios:
            for replacement in (False, True):
                plan.setdefault(round(r * batch / dim, 12), []).append((batch, replacement))
    runs = {}
    for eta, schemes in sorted(plan.items()):
        runs[eta] = fine_tuning_runs(GAMMA, THETA, SIGMA, depth, dim, (eta,), tuple(schemes), replicates=reps,
                                     seed=args.seed)
    t_exact = learning_curves.transferability_gd(GAMMA, THETA, SIGMA, depth, 1e-300)
    full = learning_curves.fine_tuning_noise_integral(GAMMA, THETA, SIGMA, depth)
    factor = learning_curves._sgd_pieces()[3](full.scale, depth, GAMMA, THETA, SIGMA)
    gd_slope_emp = float(factor) * full.full_batch
    print(f"# gamma = {GAMMA}, theta = pi/3, sigma = {SIGMA}, L = {depth}, d = {dim}, n = {round(GAMMA * dim)}, "
          f"{reps} replicates, seed {args.seed}")
    print(f"# T_exact (limit) = {t_exact:.6f}; mean T_flow at the sampled data = "
          f"{np.mean(runs[min(runs)]['flow']):.6f} +- {np.std(runs[min(runs)]['flow'], ddof=1) / math.sqrt(reps):.6f}")
    print(f"# dT/deta of full-batch GD on the empirical loss (limit) = {gd_slope_emp:.5f}; on the whitened loss "
          f"(ft.transferability_gd) = {learning_curves.transferability_gd_slope(GAMMA, THETA, SIGMA, depth):.5f}")
    rows = [(eta, s) for eta, schemes in sorted(plan.items()) for s in schemes]
    crit = t_critical(reps - 1, ALPHA, len(rows))
    print(f"\n## T_ft and the paired shift T_SGD - T_GD (t critical {crit:.3f}: alpha {ALPHA}, {len(rows)} rows)")
    print("| eta | eta d/B | B | replacement | theory T | sim T (mean +- SE) | z | shift: limit | shift: first order "
          "(sampled data) | shift: sim (mean +- SE) | z vs limit | z vs first order |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for eta in sorted(plan):
        gd = runs[eta][("gd", eta)]
        m = mean_se(gd)
        theory = t_exact + eta * gd_slope_emp
        print(f"| {eta:.5g} | - | GD | - | {theory:.5f} | {m.mean:.5f} +- {m.se:.5f} | {(m.mean - theory) / m.se:+.2f} "
              f"| - | - | {mean_se(gd - runs[eta]['flow']).mean:.6f} +- {mean_se(gd - runs[eta]['flow']).se:.6f} (GD - flow) "
              f"| limit {eta * gd_slope_emp:.6f} | - |")
        for batch, replacement in plan[eta]:
            s = (batch, replacement)
            sim = runs[eta][("sgd", eta, s)]
            slope = learning_curves.transferability_sgd_slope(GAMMA, THETA, SIGMA, depth, batch, dim,
                                                              replacement=replacement)
            theory = t_exact + eta * (slope + gd_slope_emp)
            m = mean_se(sim)
            shift = mean_se(sim - gd)
            pred = runs[eta][("pred", eta, s)] - gd
            paired = mean_se(sim - gd - pred)
            print(f"| {eta:.5g} | {eta * dim / batch:.3g} | {batch} | {replacement} | {theory:.5f} | {m.mean:.5f} +- "
                  f"{m.se:.5f} | {(m.mean - theory) / m.se:+.2f} | {eta * slope:.6f} | {np.mean(pred):.6f} | "
                  f"{shift.mean:.6f} +- {shift.se:.6f} | {_z(shift.mean - eta * slope, shift.se)} | "
                  f"{_z(paired.mean, paired.se)} |")
    print("\n## slopes dT/deta of the SGD shift (Richardson from eta d/B = 0.05, 0.1), per replicate")
    schemes = sorted({s for ss in plan.values() for s in ss})
    crit = t_critical(reps - 1, ALPHA, len(schemes))
    print(f"(t critical {crit:.3f}: alpha {ALPHA}, {len(schemes)} schemes)")
    print("| B | replacement | limit slope | first-order slope (mean +- SE) | sim slope (mean +- SE) | z sim vs first "
          "order (paired) | z sim vs limit | mean (D - P) at r = 0.05, 0.1 (ratio) |")
    print("|---|---|---|---|---|---|---|---|")
    for s in schemes:
        batch, replacement = s
        e1, e2 = round(0.05 * batch / dim, 12), round(0.1 * batch / dim, 12)
        d = {e: runs[e][("sgd", e, s)] - runs[e][("gd", e)] for e in (e1, e2)}
        p = {e: runs[e][("pred", e, s)] - runs[e][("gd", e)] for e in (e1, e2)}
        sim = (4 * d[e1] - d[e2]) / (2 * e1)
        pred = (4 * p[e1] - p[e2]) / (2 * e1)
        limit = learning_curves.transferability_sgd_slope(GAMMA, THETA, SIGMA, depth, batch, dim,
                                                          replacement=replacement)
        ms, mp_, diff = mean_se(sim), mean_se(pred), mean_se(sim - pred)
        r1, r2 = float(np.mean(d[e1] - p[e1])), float(np.mean(d[e2] - p[e2]))
        print(f"| {batch} | {replacement} | {limit:.4f} | {mp_.mean:.4f} +- {mp_.se:.4f} | {ms.mean:.4f} +- {ms.se:.4f} | "
              f"{_z(diff.mean, diff.se)} | {_z(ms.mean - limit, ms.se)} | {r1:.2e}, {r2:.2e} "
              f"({r2 / r1 if r1 else math.nan:.2f}) |")
    steps = {eta: runs[eta][("gd_steps", eta)] for eta in runs}
    print(f"\n# GD steps per eta: {steps}; wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
