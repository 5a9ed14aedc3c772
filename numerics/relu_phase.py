"""Phase boundary of two-layer ReLU transfer in (mu, n): where linear transfer and
fine-tuning beat training from scratch.

For each removed fraction ``mu`` (the source teacher is the target teacher without a
fraction ``mu`` of its neurons) and each number ``n`` of target samples, over
``--seeds`` replicates (replicate ``r``: teacher, removal and pretraining from seed
``SEED + r``, target samples and scratch initialisation from seed ``SEED + r``; see
``featfate_sym.studies.relu_phase``):

- ``T_lt = R_scratch - R_lt`` and ``T_ft = R_scratch - R_ft``, paired on the same target
  samples, mean +- standard error over replicates;
- the exact ``|P_perp f_t|^2`` (arc-cosine Gram matrices) of the target outside the
  pretrained features' span;
- the sign decision: "helps" (+) if ``mean > Z * SE`` and ``mean > MIN_EFFECT``, "hurts"
  (-) if ``mean < -Z * SE`` and ``mean < -MIN_EFFECT``, else undecided (?);
- the boundary ``n*(mu)`` of each procedure: every sign change between consecutive
  decided cells, interpolated linearly in ``log n``;
- the readout prediction ``R_lt ~ C(n) + |P_perp f_t|^2``: the excess ``R_lt - overlap``
  beside the least-squares value ``C(n) = overlap * p / (n - p - 1)`` (``p`` features used,
  Gaussian-design approximation, ``n > p + 1`` only).

Usage::

    python numerics/relu_phase.py --scale small --figure /tmp/relu_phase/relu_phase.png
    python numerics/relu_phase.py --scale tiny --mus 0 0.5 --n-values 10 80 --seeds 2 --out phase.json

Progress goes to stderr, the tables to stdout.  ``--out`` (``.json`` or ``.npz``) and
``--figure`` (``.png``; ``.pdf`` also writes the ``.png`` beside it) are written
atomically (temporary file, then rename).
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np

from featfate_sym import cli
from featfate_sym.sweeps.storage import atomic_write

PROG = "relu_phase"
SCALE_NAMES = ("tiny", "small", "default", "paper")  # featfate_sym.studies.relu_phase.SCALES
DEFAULT_N = [25, 60, 144, 346, 832, 2000]  # 25 * 80 ** (k / 5), rounded: log-spaced
SYMBOL = {1: "+", -1: "-", 0: "?"}


def _parse(argv):
    p = cli.Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=SCALE_NAMES, default="small",
                   help="network shape: tiny d=8 m*=4 m=16; small d=20 m*=8 m=48; default d=50 m*=20 m=200; "
                        "paper d=100 m*=100 m=1000")
    p.add_argument("--mus", type=cli.number("mus", lower=0, upper=1), nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="removed fractions in [0, 1]")
    p.add_argument("--n-values", type=cli.number("n-values", lower=1, integer=True), nargs="+", default=DEFAULT_N,
                   help="target sample sizes >= 1")
    p.add_argument("--seeds", type=cli.number("seeds", lower=2, integer=True), default=6,
                   help="replicates per cell (>= 2)")
    p.add_argument("--seed", type=cli.number("seed", lower=0, upper=2**31 - 1, integer=True), default=0,
                   help="base seed; replicate r uses SEED + r")
    p.add_argument("--one-teacher", action="store_true",
                   help="one target teacher for every replicate (default: a fresh teacher per replicate)")
    p.add_argument("--lr", type=cli.number("lr", lower=0, lower_open=True), default=1.0, help="largest mean-field step (> 0)")
    p.add_argument("--pretrain-steps", type=cli.number("pretrain-steps", lower=1, integer=True), default=6000)
    p.add_argument("--target-steps", type=cli.number("target-steps", lower=1, integer=True), default=30000,
                   help="step budget of scratch training and fine-tuning")
    p.add_argument("--tol", type=cli.number("tol", lower=0), default=1e-6, help="training-loss tolerance (>= 0)")
    p.add_argument("--ridge", type=cli.number("ridge", lower=0), default=0.0, help="ridge of the readout refit (>= 0)")
    p.add_argument("--z", type=cli.number("z", lower=0, lower_open=True), default=2.0, help="sign-test threshold (> 0)")
    p.add_argument("--min-effect", type=cli.number("min-effect", lower=0), default=1e-4,
                   help="smallest |T| called helps/hurts (>= 0; default 100 x the default tol)")
    p.add_argument("--threads", type=cli.number("threads", lower=1, integer=True), default=1, help="Torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=cli.output_file_type("--out", (".json", ".npz")), default=None,
                   help="results file, .json or .npz")
    p.add_argument("--figure", type=cli.output_file_type("--figure", (".png", ".pdf")), default=None,
                   help="figure file, .png or .pdf")
    args = p.parse_args(argv)
    args.mus = sorted(set(args.mus))
    args.n_values = sorted(set(args.n_values))
    for name in ("out", "figure"):
        path = getattr(args, name)
        # written beside the target and renamed: the folder itself must exist
        if path is not None and not path.resolve().parent.is_dir():
            p.error(f"argument --{name}: the folder of {str(path)!r} does not exist")
    return p, args


# -- output ---------------------------------------------------------------------------------
def _pm(mean: float, se: float) -> str:
    return f"{mean:.3g}+-{se:.2g}"


def _se(values) -> float:
    """Standard error of the mean over replicates."""
    return float(np.std(values, ddof=1) / np.sqrt(np.size(values)))


def _z(mean: float, se: float) -> str:
    if se > 0:
        return f"{mean / se:+.1f}"
    return "inf" if mean else "0"


def _crossings_text(n_values, decision, crossings) -> str:
    if crossings:
        parts = [
            f"n* = {c.n_star:.0f} ({'helps -> hurts' if c.direction < 0 else 'hurts -> helps'} "
            f"between n = {c.n_below:g} and {c.n_above:g})"
            for c in crossings
        ]
        return "; ".join(parts)
    decided = decision[decision != 0]
    if decided.size == 0:
        return "no decided cell"
    word = "helps" if decided[0] > 0 else "hurts"
    return f"no sign change: {word} at every decided n (n* outside [{n_values[0]:g}, {n_values[-1]:g}])"


def print_tables(grid, maps, z_crit: float, min_effect: float) -> None:
    from featfate_sym.studies.phase_boundary import one_sided_false_alarm

    k = grid.replicates
    alarm = one_sided_false_alarm(z_crit, k)
    print(f"sign test per cell: helps (+) if mean T > {z_crit:g} SE and > {min_effect:g}; hurts (-) if "
          f"mean T < -{z_crit:g} SE and < -{min_effect:g}; else undecided (?).  {k} paired replicates: "
          f"mean/SE ~ t_{k - 1} under T = 0, one-sided false alarm {alarm:.3f} per cell (uncorrected).")
    print("risks: population risks, mean+-SE over replicates; overlap = exact |P_perp f_t|^2; "
          "conv = runs that reached tol (scratch, fine-tune)")
    head = (f"{'mu':>5} {'n':>5} {'overlap':>15} {'R_sc':>15} {'R_lt':>15} {'R_ft':>15} "
            f"{'T_lt':>16} {'z':>6} {'':1} {'T_ft':>16} {'z':>6} {'':1} {'conv':>7}")
    print(head)
    print("-" * len(head))
    lt, ft = maps["lt"], maps["ft"]
    for i, mu in enumerate(grid.mus):
        ov = grid.overlap[i]
        for j, n in enumerate(grid.n_values):
            sc, rl, rf = grid.risk_scratch[j], grid.risk_linear_transfer[i, j], grid.risk_fine_tune[i, j]
            conv = f"{grid.scratch_converged[j].sum()}/{grid.fine_tune_converged[i, j].sum()}"
            print(
                f"{mu:5.2f} {n:5d} {_pm(ov.mean(), _se(ov)):>15} {_pm(sc.mean(), _se(sc)):>15} "
                f"{_pm(rl.mean(), _se(rl)):>15} {_pm(rf.mean(), _se(rf)):>15} "
                f"{_pm(lt.mean[i, j], lt.se[i, j]):>16} {_z(lt.mean[i, j], lt.se[i, j]):>6} "
                f"{SYMBOL[int(lt.decision[i, j])]:1} "
                f"{_pm(ft.mean[i, j], ft.se[i, j]):>16} {_z(ft.mean[i, j], ft.se[i, j]):>6} "
                f"{SYMBOL[int(ft.decision[i, j])]:1} {conv:>7}"
            )
    print()
    print("boundary n*(mu): sign changes between consecutive decided cells, linear in log n")
    for key, name in (("lt", "linear transfer"), ("ft", "fine-tuning")):
        m = maps[key]
        for i, mu in enumerate(grid.mus):
            text = _crossings_text(grid.n_values, m.decision[i], m.crossings[i])
            print(f"  {name:<15} mu = {mu:4.2f}: {text}")
    print()
    print("readout prediction R_lt ~ C(n) + |P_perp f_t|^2: excess = R_lt - overlap (mean+-SE); "
          "least squares C(n) = overlap p/(n-p-1), p = features used, for n > p+1 in every replicate")
    head = f"{'mu':>5} {'n':>5} {'p':>5} {'overlap':>10} {'R_lt':>10} {'excess':>16} {'C(n) LS':>10} {'excess/C':>9}"
    print(head)
    print("-" * len(head))
    for i, mu in enumerate(grid.mus):
        for j, n in enumerate(grid.n_values):
            p = grid.lt_rank[i, j]
            ov = grid.overlap[i]
            excess = grid.risk_linear_transfer[i, j] - ov
            ex_se = _se(excess)
            if np.all(n > p + 1):
                c = float(np.mean(ov * p / (n - p - 1)))
                c_text, ratio = f"{c:10.3g}", (f"{excess.mean() / c:9.2f}" if c > 0 else f"{'-':>9}")
            else:
                c_text, ratio = f"{'-':>10}", f"{'-':>9}"
            p_text = f"{p.min()}" if p.min() == p.max() else f"{p.min()}-{p.max()}"
            print(f"{mu:5.2f} {n:5d} {p_text:>5} {ov.mean():10.3g} {grid.risk_linear_transfer[i, j].mean():10.3g} "
                  f"{_pm(excess.mean(), ex_se):>16} {c_text} {ratio}")
    print()
    print("convergence (runs that reached tol):")
    for i, mu in enumerate(grid.mus):
        print(f"  pretraining mu = {mu:4.2f}: {grid.pretrain_converged[i].sum()}/{k}, "
              f"steps {grid.pretrain_steps[i].min()}-{grid.pretrain_steps[i].max()}, "
              f"final source loss <= {grid.pretrain_final_loss[i].max():.1e}")
    sc_budget = grid.settings["target_training"]["max_steps"]
    print(f"  scratch: {grid.scratch_converged.sum()}/{grid.scratch_converged.size} "
          f"(most steps {grid.scratch_steps.max()} of {sc_budget}); fine-tuning: "
          f"{grid.fine_tune_converged.sum()}/{grid.fine_tune_converged.size} "
          f"(most steps {grid.fine_tune_steps.max()})")
    print(f"wall time {grid.seconds:.1f} s")


def _crossing_records(maps):
    return {key: [[dataclasses.asdict(c) for c in row] for row in m.crossings] for key, m in maps.items()}


def write_results(path: str, grid, maps) -> None:
    """Every array of the grid (but the pretrained weights), the summaries and the
    settings, written to a temporary file in the target folder and renamed."""
    arrays = {k: v for k, v in grid.arrays().items() if k != "pretrained_weights"}
    for key, m in maps.items():
        arrays[f"T_{key}_mean"], arrays[f"T_{key}_se"], arrays[f"T_{key}_decision"] = m.mean, m.se, m.decision
    meta = dict(settings=grid.settings, crossings=_crossing_records(maps),
                sign_test=dict(z_crit=maps["lt"].z_crit, min_effect=maps["lt"].min_effect))
    target = Path(path)
    if target.suffix.lower() == ".json":
        doc = {**meta, **{k: np.asarray(v).tolist() for k, v in arrays.items()}}
        data = json.dumps(doc, indent=1).encode()
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, meta=np.array(json.dumps(meta)))
        data = buffer.getvalue()
    atomic_write(target, data)


def write_figure(path: str, mus, maps, title: str) -> list[Path]:
    """The side-by-side map (PNG; a ``.pdf`` path also gets the ``.png`` beside it)."""
    from featfate_sym.plotting import style
    from featfate_sym.plotting.relu_phase import relu_phase

    target = Path(path)
    paths = [target] + ([target.with_suffix(".png")] if target.suffix.lower() == ".pdf" else [])
    with style.figure_style():
        fig = relu_phase(mus, maps, title=title)
        for out in paths:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=out.suffix.lower()[1:], dpi=style.FULL["dpi"])
            atomic_write(out, buffer.getvalue())
    return paths


def main(argv=None) -> int:
    parser, args = _parse(argv)
    import torch

    from featfate_sym.studies.phase_boundary import sign_map
    from featfate_sym.simulation.relu import TrainingOptions
    from featfate_sym.studies.relu_phase import SCALES, simulate_relu_phase

    torch.set_num_threads(args.threads)
    shape = SCALES[args.scale]
    pre_opts = TrainingOptions(lr=args.lr, max_steps=args.pretrain_steps, tol=args.tol)
    tgt_opts = TrainingOptions(lr=args.lr, max_steps=args.target_steps, tol=args.tol)
    print(f"scale {args.scale} {shape}; mus {args.mus}; n {args.n_values}; {args.seeds} replicates from seed "
          f"{args.seed} ({'one teacher' if args.one_teacher else 'a teacher per replicate'}); lr {args.lr} "
          f"(mean-field, safeguarded); tol {args.tol:g}; pretrain <= {args.pretrain_steps} steps (population "
          f"source loss); target <= {args.target_steps} steps (full batch); readout ridge {args.ridge:g}")
    sys.stdout.flush()
    try:
        grid = simulate_relu_phase(
            args.mus, args.n_values, args.seeds, **shape, seed=args.seed, vary_teacher=not args.one_teacher,
            ridge=args.ridge, pretrain=pre_opts, target_training=tgt_opts, device=args.device,
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
    except ValueError as err:
        parser.error(str(err))
    maps = {
        key: sign_map(grid.transferability(key), grid.n_values, z_crit=args.z, min_effect=args.min_effect)
        for key in ("lt", "ft")
    }
    print_tables(grid, maps, args.z, args.min_effect)
    if args.out:
        write_results(args.out, grid, maps)
        print(f"results: {args.out}")
    if args.figure:
        title = (f"two-layer ReLU, d={shape['input_dim']}, m*={shape['teacher_width']}, "
                 f"m={shape['student_width']}; {args.seeds} replicates; "
                 rf"marker: $|\bar T| > {args.z:g}$ SE and $> {args.min_effect:g}$")
        paths = write_figure(args.figure, grid.mus, maps, title)
        print("figure: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
