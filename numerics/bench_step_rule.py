"""The fine-tuning step rules side by side on cells of the paper grid.

For each cell (``d = 500``, ``L = 2``, 20 replicates, population source, the paper
preset's ``whitened`` solver) the same experiments (same seed: teachers, target set,
pretraining, scratch) are run with the end-point step rule (``fine_tune_step_rule =
"end_point"``, the default) and with the former balance control (``"drift_control"``),
and the script prints per cell and rule: fine-tuning steps per run (median, max), wall and
CPU time of the whole cell (pretraining, scratch, linear transfer and fine-tuning; only
fine-tuning differs between the rules), convergence, the largest ``|T_ft(new) -
T_ft(old)|``, the largest ``|T_ft - T_bal|`` against the balanced-flow end point of each
replicate (``X^+ y + c^(L-1) (I - P) beta_s``, the root of the balance equation from the
replicate's own design; ``T_ft - T_bal = R_bal - R_ft`` since both share ``R_sc``), the
standard error of the cell's mean ``T_ft``, and the largest ``|beta_ft - beta_t|`` (which
turns the end-point accuracy ``epsilon`` into the bound ``epsilon (2 |beta_ft - beta_t| +
epsilon)`` on the shift of ``T_ft``).

    python numerics/bench_step_rule.py            # 12 cells of the paper grid (minutes)
    python numerics/bench_step_rule.py --quick    # d = 100, 4 cells (seconds)
    python numerics/bench_step_rule.py --se-grid  # SE of T_ft over the paper grid (no training)

One torch thread.  Cells with ``gamma >= 1`` have a unique minimiser: the end-point rule
takes no control there.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from featfate_sym import cli
from featfate_sym.simulation import tasks
from featfate_sym.simulation.deep_linear import EngineOptions, run_protocols


def balanced_end_point(data: tasks.RegressionData, source: torch.Tensor, depth: int) -> torch.Tensor:
    """Where balanced gradient flow ends fine-tuning from ``beta_s`` (SPEC section 2):
    ``X^+ y + c^(L-1) (I - P) beta_s``, ``x = c^2`` the positive root of ``x^L - a x^(L-1) -
    b = 0`` (``a = |(I - P) beta_s|^2``, ``b = |X^+ y|^2``); ``X^+ y`` when ``n >= d``."""
    if data.projector is None:
        return data.minimiser.clone()
    null = source - (data.projector @ source.unsqueeze(-1)).squeeze(-1)
    a = (null**2).sum(-1).numpy()
    b = (data.minimiser**2).sum(-1).numpy()
    x = np.array([np.max(np.roots([1, -ai] + [0] * (depth - 2) + [-bi]).real) for ai, bi in zip(a, b)])
    return data.minimiser + torch.from_numpy(np.sqrt(x) ** (depth - 1)).unsqueeze(-1) * null


def run_rule(cell: dict, options: EngineOptions, replicates: int, seed: int):
    """One cell with one rule: the outcome, wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run_protocols(replicates=replicates, dim=cell["d"], depth=cell["L"], n_samples=round(cell["gamma"] * cell["d"]),
                        theta=cell["theta"], noise_std=cell["sigma"], seed=seed, options=options)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def se_table(seed: int, dim: int = 500, replicates: int = 20) -> None:
    """The standard error of a cell's mean ``T_ft`` on a coarse cover of the paper grid's
    ``gamma < 1`` cells, and the largest ``|beta - beta_t|``, at the balanced-flow end point
    (the value the step rule aims at; no training, so the whole cover is cheap)."""
    print(f"# SE of the mean T_ft over {replicates} replicates at the balanced end point, d = {dim}, L = 2")
    print(f"{'gamma':>5s} {'theta/pi':>8s} {'sigma':>5s} {'SE(T_ft)':>9s} {'max |b - b_t|':>13s}")
    lowest, farthest = math.inf, 0.0
    for i, (gamma, theta, sigma) in enumerate((g, t, s) for g in (0.1, 0.5, 0.9)
                                                for t in (math.pi / 40, math.pi / 4, math.pi / 2) for s in (0.0, 0.2)):
        gen = torch.Generator().manual_seed(seed + i)
        teachers = tasks.make_teachers(replicates, dim, theta, gen)
        data = tasks.sample_regression(teachers.target, round(gamma * dim), sigma, gen)
        end = balanced_end_point(data, teachers.source, 2)
        t_bal = (tasks.risk(data.minimiser, teachers.target) - tasks.risk(end, teachers.target)).numpy()
        se = float(t_bal.std(ddof=1) / math.sqrt(replicates))
        far = float((end - teachers.target).norm(dim=-1).max())
        lowest, farthest = min(lowest, se), max(farthest, far)
        print(f"{gamma:5.2f} {theta / math.pi:8.3f} {sigma:5.2f} {se:9.2e} {far:13.3f}")
    print(f"smallest SE {lowest:.2e}; largest |beta - beta_t| {farthest:.3f}")


def main(argv=None) -> int:
    parser = cli.Parser(prog="bench_step_rule", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 100, 4 cells (seconds)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, integer=True), default=0)
    parser.add_argument("--accuracy", type=cli.number("accuracy", lower=0.0), default=None,
                        help="end_point_accuracy epsilon (> 0; default the engine's)")
    parser.add_argument("--theta", type=cli.number("theta", lower=0.0, upper=1.0), action="append", default=None,
                        help="theta / pi of the cells (repeatable, in [0, 1]; default 0.25)")
    parser.add_argument("--gamma", type=cli.number("gamma", lower=0.0, lower_open=True), action="append",
                        default=None, help="gamma of the cells (repeatable, > 0; default 0.3, 0.6, 0.9, 1, 1.3, 2)")
    parser.add_argument("--se-grid", action="store_true",
                        help="only the SE of T_ft over a cover of the paper grid (no training)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.se_grid:
        se_table(args.seed)
        return 0
    if args.quick:
        dim, gammas, thetas, sigmas = 100, (0.5, 1.5), (math.pi / 4,), (0.0, 0.2)
    else:
        dim, gammas, thetas, sigmas = 500, (0.3, 0.6, 0.9, 1.0, 1.3, 2.0), (10 * math.pi / 40,), (0.0, 0.2)
    if args.theta:
        thetas = tuple(t * math.pi for t in args.theta)
    if args.gamma:
        gammas = tuple(args.gamma)
    replicates, depth = 20, 2
    base = EngineOptions(solver="whitened")  # the paper preset's solver
    if args.accuracy is not None:
        if not args.accuracy > 0:
            parser.error(f"argument --accuracy: must be > 0 (got {args.accuracy})")
        base = replace(base, end_point_accuracy=args.accuracy)
    rules = {"new": replace(base, fine_tune_step_rule="end_point"),
             "old": replace(base, fine_tune_step_rule="drift_control")}
    print(f"# step rules, d = {dim}, L = {depth}, {replicates} replicates, whitened solver, "
          f"end_point_accuracy {base.end_point_accuracy:g}, 1 thread")
    print(f"{'gamma':>5s} {'theta/pi':>8s} {'sigma':>5s} {'rule':4s} {'ft steps med':>12s} {'max':>6s} "
          f"{'wall s':>7s} {'cpu s':>6s} {'conv':>5s} {'|dT new-old|':>12s} {'|T - T_bal|':>11s} "
          f"{'SE(T_ft)':>9s} {'|b - b_t|':>9s}")
    totals = {name: [0.0, 0.0, []] for name in rules}
    worst = {"diff": 0.0, "new_bal": 0.0, "old_bal": 0.0, "ratio": 0.0, "se_min": math.inf, "dist": 0.0}
    all_converged = True
    for gamma in gammas:
        for theta in thetas:
            for sigma in sigmas:
                cell = dict(gamma=gamma, theta=theta, sigma=sigma, d=dim, L=depth)
                seed = args.seed + len(totals["new"][2])
                # the first draws of run_protocols: teachers, then the target set
                gen = torch.Generator().manual_seed(seed)
                teachers = tasks.make_teachers(replicates, dim, theta, gen)
                data = tasks.sample_regression(teachers.target, round(gamma * dim), sigma, gen)
                reference = balanced_end_point(data, teachers.source, depth)
                risk_bal = tasks.risk(reference, teachers.target)
                rows = {}
                for name, opts in rules.items():
                    out, wall, cpu = run_rule(cell, opts, replicates, seed)
                    arrays = out.arrays()
                    if not np.allclose(out.teachers.target.numpy(), teachers.target.numpy(), rtol=0, atol=0):
                        raise AssertionError("the re-drawn teachers differ from the cell's")
                    beta = out.beta("fine_tune")
                    conv = all(bool(arrays[f"converged_{tag}"].all()) for tag in ("sc", "ft", "pre"))
                    all_converged &= conv
                    rows[name] = dict(arrays=arrays, wall=wall, cpu=cpu, conv=conv,
                                      bal=float((risk_bal - tasks.risk(beta, teachers.target)).abs().max()),
                                      dist=float((beta - teachers.target).norm(dim=-1).max()))
                    totals[name][0] += wall
                    totals[name][1] += cpu
                    totals[name][2].extend(arrays["steps_ft"].tolist())
                diff = float(np.abs(rows["new"]["arrays"]["T_ft"] - rows["old"]["arrays"]["T_ft"]).max())
                t_ft = rows["new"]["arrays"]["T_ft"]
                se = float(t_ft.std(ddof=1) / math.sqrt(len(t_ft)))
                worst["diff"] = max(worst["diff"], diff)
                worst["new_bal"] = max(worst["new_bal"], rows["new"]["bal"])
                worst["old_bal"] = max(worst["old_bal"], rows["old"]["bal"])
                if gamma < 1:  # T_ft = 0 with a unique minimiser: the bound matters below n = d only
                    worst["dist"] = max(worst["dist"], rows["new"]["dist"])
                    worst["se_min"] = min(worst["se_min"], se)
                for name, row in rows.items():
                    steps = row["arrays"]["steps_ft"]
                    print(f"{gamma:5.2f} {theta / math.pi:8.3f} {sigma:5.2f} {name:4s} {int(np.median(steps)):12d} "
                          f"{int(steps.max()):6d} {row['wall']:7.2f} {row['cpu']:6.2f} {str(row['conv']):>5s} "
                          f"{diff:12.2e} {row['bal']:11.2e} {se:9.2e} {row['dist']:9.3f}")
                sys.stdout.flush()
    print()
    for name, (wall, cpu, steps) in totals.items():
        print(f"total {name}: wall {wall:.1f} s, cpu {cpu:.1f} s, ft steps median {int(np.median(steps))}, "
              f"max {int(max(steps))}")
    print(f"largest |T_ft(new) - T_ft(old)| {worst['diff']:.2e}; largest |T_ft - T_bal| new {worst['new_bal']:.2e}, "
          f"old {worst['old_bal']:.2e}; smallest SE(T_ft) at gamma < 1 {worst['se_min']:.2e}; "
          f"largest |beta_ft - beta_t| at gamma < 1 {worst['dist']:.3f}; all converged: {all_converged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
