"""Print the simulator table of fine-tuning from rank-k features (Markdown).

Protocol (:func:`featfate_sym.simulation.multi_output.fine_tune_from_trunk`): a k-output
network pretrained on k source tasks (population loss, each source at angle theta to the
target), its trunk with the linear-transfer readout, then all layers by gradient descent on
the target.  Isotropic inputs, L = 2, the whitened solver.  Per k: the mean risks of scratch
(the min-norm interpolator X^+ y, the small-initialisation end point), linear transfer (the
fine-tuning start), fine-tuning (the engine) and the end point of the (k+1) x k trunk flow
(multi_output.trunk_end_point, the L = 2 theory), with SEs over the replicates, the paired
mean |beta_engine - beta_flow| and T_ft = R_sc - R_ft.

    python numerics/trunk_fine_tuning_table.py [--d 200] [--replicates 16] [--gamma 0.5] [--seed 0]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from featfate_sym import cli, stats
from featfate_sym.simulation import multi_output as mo
from featfate_sym.simulation import tasks
from featfate_sym.simulation.deep_linear import EngineOptions

THETA, SIGMA, KS = 0.8, 0.3, (1, 2, 3, 5)


def rows(d: int, replicates: int, gamma: float, seed: int) -> list[tuple]:
    options = EngineOptions(solver="whitened")
    n = int(round(gamma * d))
    out = []
    for k in KS:
        gen = torch.Generator().manual_seed(1000 * seed + k)
        teachers = tasks.make_multi_source_teachers(replicates, d, THETA, k, gen)
        target = tasks.sample_regression(teachers.target, n, SIGMA, gen)
        pre, pre_run = mo.pretrain(mo.population(teachers.source), 2, gen, options)
        weights, run, start = mo.fine_tune_from_trunk(pre, target, options)
        beta = (weights[0].to(torch.float64) @ weights[1].to(torch.float64).unsqueeze(-1)).squeeze(-1)
        bt = teachers.target.numpy()
        risk = {"scratch": [], "linear_transfer": [], "fine_tuning": [], "flow": []}
        gap = []
        for r in range(replicates):
            pred = mo.trunk_end_point(start.weights[0][r], start.weights[1][r], target.projector[r],
                                      target.minimiser[r], int(start.rank[r]))
            for name, b in (("scratch", target.minimiser[r].numpy()), ("linear_transfer", start.beta0[r].numpy()),
                            ("fine_tuning", beta[r].numpy()), ("flow", pred["beta"])):
                risk[name].append(float(np.sum((b - bt[r]) ** 2)))
            gap.append(float(np.linalg.norm(beta[r].numpy() - pred["beta"])))
        t_ft = stats.mean_se(np.array(risk["scratch"]) - np.array(risk["fine_tuning"]))
        out.append((k, {name: stats.mean_se(np.array(v)) for name, v in risk.items()}, float(np.mean(gap)), t_ft,
                    bool(pre_run.converged.all() and run.converged.all())))
    return out


def main(argv=None) -> int:
    parser = cli.Parser(prog="trunk_fine_tuning_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=cli.number("d", lower=10, upper=2000, integer=True), default=200)
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, upper=1000, integer=True), default=16)
    parser.add_argument("--gamma", type=cli.number("gamma", lower=0.05, upper=0.95), default=0.5)
    parser.add_argument("--seed", type=cli.number("seed", lower=0, upper=2**31 - 1, integer=True), default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = rows(args.d, args.replicates, args.gamma, args.seed)
    lines = [f"isotropic, L = 2, whitened; d = {args.d}, gamma = {args.gamma:g}, theta = {THETA}, sigma = {SIGMA}, "
             f"{args.replicates} replicates", "",
             "| k | R_sc | R_lt (start) | R_ft (engine) | R_ft (k+1 x k flow) | mean abs(beta_engine - beta_flow) "
             "| T_ft = R_sc - R_ft | converged |", "|---|---|---|---|---|---|---|---|"]
    for k, risk, gap, t_ft, ok in table:
        cells = " | ".join(f"{risk[name].mean:.4f} +- {risk[name].se:.4f}"
                           for name in ("scratch", "linear_transfer", "fine_tuning", "flow"))
        lines.append(f"| {k} | {cells} | {gap:.1e} | {t_ft.mean:.4f} +- {t_ft.se:.4f} | {ok} |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
