"""Phase diagram of linear transfer against the optimally tuned ridge scratch baseline:
simulation beside theory over (theta, gamma).

Per cell (featfate_sym.studies.ridge_baseline_phase): T_lt^tuned = R_ridge_opt - R_lt,
theory (scratch.risk_optimal_ridge - lt.risk, the limit at n/d; and the same with the
readout's exact finite-n risk lt.risk_finite, which the z-score uses), simulated mean +- SE
and z; and T_lt against minimum-norm scratch (theory lt.transferability, its exact
finite-size expectation, simulated mean +- SE, or the median where the mean is infinite).
The summary gives max |z| and the Bonferroni critical value for a family-wise false-alarm
rate alpha over the cells; a cell agrees when |mean - theory_n| <= t_crit SE + allowance
(allowance = 1/d for the ridge risk's finite-size offset + the lam grid's discretisation
error from the closed form).  Against min-norm scratch T_lt has a positive band around
gamma = 1 (scratch's risk diverges there); against the tuned baseline it has none.

    python numerics/ridge_baseline_phase.py --figure /tmp/ridge_phase/ridge_phase.png   # d = 200, 1000 replicates
    python numerics/ridge_baseline_phase.py --dim 100 --replicates 200 --thetas 3 \\
        --gammas 0.5,1,2 --seed 1 --out results.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time

# BLAS single-threaded unless the caller says otherwise: the work is many small (d x d)
# problems, where threads gain little, and on shared cores OpenBLAS's threads thrash
# (measured here: a d = 200 cell 10-25x slower with two threads on a busy 2-core machine).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings)

from featfate_sym import cli  # noqa: E402
from featfate_sym.sweeps.storage import atomic_write  # noqa: E402

DEFAULT_GAMMAS = "0.25,0.5,0.75,0.9,0.95,1,1.05,1.1,1.5,2"


def _gamma_list(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("gammas must be a comma-separated list of numbers > 0")
    parse = cli.number("gammas", lower=0.0, lower_open=True)
    return [parse(p) for p in parts]


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _records(result, alpha):
    z = result.tuned_z
    agrees = result.agreement(alpha)
    rows = []
    for i, g in enumerate(result.gammas):
        for j, theta in enumerate(result.thetas):
            rows.append({
                "gamma": float(g),
                "gamma_realised": float(result.realised_gammas[i]),
                "theta": float(theta),
                "n": int(result.n_samples[i]),
                "best_lam": float(result.best_lam[i, j]),
                "tuned_mean": float(result.tuned_mean[i, j]),
                "tuned_se": float(result.tuned_se[i, j]),
                "tuned_theory": float(result.tuned_theory[i, j]),
                "tuned_theory_n": float(result.tuned_theory_n[i, j]),
                "allowance": float(result.allowance[i, j]),
                "z": float(z[i, j]),
                "agrees": bool(agrees[i, j]),
                "min_norm_mean": _finite(result.min_norm_mean[i, j]),
                "min_norm_se": _finite(result.min_norm_se[i, j]),
                "min_norm_median": float(result.min_norm_median[i, j]),
                "min_norm_lower_quartile": float(result.min_norm_lower_quartile[i, j]),
                "min_norm_theory": _finite(result.min_norm_theory[i, j]),
                "min_norm_theory_n": _finite(result.min_norm_theory_n[i, j]),
            })
    return rows


def _print_table(result, alpha, seed, elapsed):
    z = result.tuned_z
    agrees = result.agreement(alpha)
    t_crit = result.critical_value(alpha)
    lams = result.lams
    print(f"sigma = {result.noise_std:g}, d = {result.dim}, replicates = {result.replicates} per cell, "
          f"seed = {seed}, ridge grid {lams.size} points {lams.min():.3g}..{lams.max():.3g}")
    header = (
        f"{'gamma':>5} {'theta':>6} {'n':>4} {'lam_best':>8} | "
        f"{'Ttun lim':>8} {'Ttun n':>8} {'Ttun sim':>17} {'z':>6} {'ok':>2} | "
        f"{'Tmn lim':>8} {'Tmn n':>8} {'Tmn sim':>20}"
    )
    print(header)
    print("-" * len(header))
    for i, g in enumerate(result.gammas):
        for j, theta in enumerate(result.thetas):
            if np.isfinite(result.min_norm_mean[i, j]):
                mn = f"{result.min_norm_mean[i, j]:8.4f} ± {result.min_norm_se[i, j]:6.4f}"
            else:
                mn = f"{result.min_norm_median[i, j]:8.3f} (median)"
            print(
                f"{g:5.2f} {theta / math.pi:4.3f}π {result.n_samples[i]:4d} {result.best_lam[i, j]:8.4f} | "
                f"{result.tuned_theory[i, j]:8.4f} {result.tuned_theory_n[i, j]:8.4f} "
                f"{result.tuned_mean[i, j]:8.4f} ± {result.tuned_se[i, j]:6.4f} {z[i, j]:6.2f} "
                f"{'y' if agrees[i, j] else 'N':>2} | "
                f"{result.min_norm_theory[i, j]:8.4f} {result.min_norm_theory_n[i, j]:8.4f} {mn}"
            )
    worst = np.unravel_index(int(np.argmax(np.abs(z))), z.shape)
    print()
    print(f"max |z| = {abs(z[worst]):.2f} (gamma = {result.gammas[worst[0]]:g}, "
          f"theta = {result.thetas[worst[1]] / math.pi:.3f} pi); Bonferroni critical t = {t_crit:.2f} "
          f"(df = {result.df}) for a family-wise false-alarm rate {alpha:g} over {result.cells} cells (two-sided)")
    print(f"cells agreeing within t_crit * SE + allowance (allowance {result.allowance.min():.4f}.."
          f"{result.allowance.max():.4f} = 1/d + lam-grid error): {int(agrees.sum())} of {result.cells}")
    near = np.flatnonzero(np.abs(result.realised_gammas - 1.0) < 1e-12)
    for i in near:
        print(f"at gamma = 1: T_lt vs min-norm median {result.min_norm_median[i].min():.2f}.."
              f"{result.min_norm_median[i].max():.2f} (theory +inf); T_lt^tuned mean "
              f"{result.tuned_mean[i].min():.3f}..{result.tuned_mean[i].max():.3f} "
              f"(theory {result.tuned_theory[i].min():.3f}..{result.tuned_theory[i].max():.3f})")
    print("(Ttun = T_lt^tuned = R_ridge_opt - R_lt; Tmn = T_lt against min-norm scratch.  'lim': proportional")
    print(" limit at n/d; 'n': with the exact finite-n readout risk (and, for Tmn, the exact Wishart scratch")
    print(" risk); z = (sim - Ttun n) / SE.  Tmn sim is the mean where the min-norm risk has finite variance,")
    print(" |n - d| > 3, else the median.)")
    print(f"wall time {elapsed:.1f} s")


def main(argv=None) -> int:
    parser = cli.Parser(prog="ridge_baseline_phase", description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=cli.number("dim", lower=10, integer=True), default=200, help="input dimension d (>= 10)")
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, integer=True), default=1000,
                        help="independent data sets per cell (>= 2)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, integer=True), default=42)
    parser.add_argument("--sigma", type=cli.number("sigma", lower=0.0, lower_open=True), default=0.2,
                        help="target label-noise std (> 0)")
    parser.add_argument("--thetas", type=cli.number("thetas", lower=2, integer=True), default=5,
                        help="number of angles, evenly spaced over [0, pi/2] (>= 2)")
    parser.add_argument("--gammas", type=_gamma_list, default=_gamma_list(DEFAULT_GAMMAS),
                        help=f"comma-separated n/d values (> 0; default {DEFAULT_GAMMAS})")
    parser.add_argument("--alpha", type=cli.number("alpha", lower=0.0, upper=1.0, lower_open=True, upper_open=True), default=1e-3,
                        help="family-wise false-alarm rate of the agreement test, in (0, 1)")
    parser.add_argument("--out", type=cli.output_file_type("--out"), default=None, help="write the per-cell results as JSON")
    parser.add_argument("--figure", type=cli.output_file_type("--figure"), default=None, help="write the figure as PNG")
    parser.add_argument("--quick", action="store_true", help="low-resolution theory maps")
    args = parser.parse_args(argv)

    from featfate_sym.studies.ridge_baseline_phase import simulate_ridge_baseline_phase

    thetas = np.linspace(0.0, math.pi / 2, args.thetas)
    start = time.perf_counter()

    def progress(done, total):
        sys.stderr.write(f"ridge_baseline_phase: cell {done}/{total}, {time.perf_counter() - start:.1f} s\n")
        sys.stderr.flush()

    try:
        result = simulate_ridge_baseline_phase(
            thetas, args.gammas, dim=args.dim, noise_std=args.sigma, replicates=args.replicates,
            seed=args.seed, progress=progress,
        )
    except ValueError as err:
        parser.error(str(err))
    _print_table(result, args.alpha, args.seed, time.perf_counter() - start)

    try:
        if args.out is not None:
            document = {
                "description": "T_lt against the tuned ridge and the min-norm scratch baseline; null = not finite",
                "config": {"dim": args.dim, "replicates": args.replicates, "seed": args.seed, "sigma": args.sigma,
                           "thetas": thetas.tolist(), "gammas": list(args.gammas),
                           "lams": result.lams.tolist(), "alpha": args.alpha},
                "critical_t": result.critical_value(args.alpha),
                "max_abs_z": float(np.max(np.abs(result.tuned_z))),
                "cells_agreeing": int(result.agreement(args.alpha).sum()),
                "cells": _records(result, args.alpha),
            }
            text = json.dumps(document, indent=1, allow_nan=False) + "\n"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(args.out, text.encode())
            print(f"results: {args.out}")
        if args.figure is not None:
            from featfate_sym.plotting import ridge_phase, style

            with style.figure_style():
                fig = ridge_phase.ridge_phase(result, quick=args.quick)
                dpi = style.resolution(args.quick)["dpi"]
                png = io.BytesIO()
                fig.savefig(png, format="png", dpi=dpi)
            args.figure.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(args.figure, png.getvalue())
            print(f"figure: {args.figure}")
    except OSError as err:
        sys.stderr.write(f"ridge_baseline_phase: cannot write output: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
