"""Speed of the compiled theory against hand-written NumPy, and of the lt-phase figure.

Evaluates ``lt.transferability`` and ``ft.transferability_exact`` on a ``size x size``
``(theta, gamma)`` grid (default 1000 x 1000) through the registry's compiled NumPy
function and through a hand-written NumPy expression of the same formula (SPEC.md,
sections "Linear transfer" and "Fine-tuning ... exact form"; typed in
featfate_sym.studies.benchmarks only as the benchmark's baseline), checks that both
agree, and prints the time ratio (goal: compiled <= 1.5 x hand-written).  Then times rendering ``lt-phase`` at full resolution
(PNG + PDF).

    python numerics/bench_theory.py               # 1000 x 1000, best of 3
    python numerics/bench_theory.py --size 200 --repeat 1
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

import featfate_sym as ff
from featfate_sym import cli
from featfate_sym.studies.benchmarks import (
    best_time,
    ft_transferability_exact_by_hand,
    lt_transferability_by_hand,
    max_abs_difference,
)


def main(argv=None) -> int:
    parser = cli.Parser(prog="bench_theory", description=__doc__.split("\n\n")[0])
    # size^2 float64 arrays, a handful at once: 10^4 per axis is already ~10 GB
    parser.add_argument("--size", type=cli.number("size", lower=2, upper=10_000, integer=True), default=1000,
                        help="grid points per axis (2..10000, default 1000)")
    parser.add_argument("--repeat", type=cli.number("repeat", lower=1, upper=1000, integer=True), default=3,
                        help="timings per case; the best is kept (1..1000, default 3)")
    parser.add_argument("--sigma", type=cli.number("sigma", lower=0), default=0.2)
    parser.add_argument("--lam", type=cli.number("lam", lower=0), default=0.1)
    parser.add_argument("--L", type=cli.number("L", lower=1, integer=True), default=3)
    parser.add_argument("--no-figure", action="store_true", help="skip the lt-phase rendering time")
    args = parser.parse_args(argv)

    theta = np.linspace(0, np.pi / 2, args.size)
    gamma = np.linspace(0, 2, args.size)
    gamma[0] = 1e-3 * gamma[1]
    # dense: every argument a full size x size array; open: gamma (size, 1), theta (1, size)
    # and scalars, broadcast by NumPy (what a caller of a vectorised function would pass)
    th, ga = np.meshgrid(theta, gamma)
    dense = (ga, th, np.full_like(ga, args.sigma), np.full_like(ga, args.lam), np.full_like(ga, args.L))
    opened = (gamma[:, None], theta[None, :], np.float64(args.sigma), np.float64(args.lam), np.float64(args.L))

    lt = ff.get("lt.transferability")
    ft = ff.get("ft.transferability_exact")
    start = time.perf_counter()
    lt.numpy, ft.numpy  # derive and compile once, outside the timings
    setup = time.perf_counter() - start

    def cases(g, t, s, lam, depth):
        return [
            ("lt.transferability", lambda: lt.numpy(g, t, s, lam), lambda: lt_transferability_by_hand(g, t, s, lam)),
            ("ft.transferability_exact", lambda: ft.numpy(g, t, s, depth),
             lambda: ft_transferability_exact_by_hand(g, t, float(args.sigma), args.L)),
        ]

    print(f"grid {args.size} x {args.size}, sigma = {args.sigma:g}, lam = {args.lam:g}, L = {args.L}; "
          f"best of {args.repeat}; derive + compile: {setup:.2f} s")
    print(f"{'result':26s} {'arguments':9s} {'compiled [s]':>13s} {'by hand [s]':>12s} {'ratio':>7s} {'max |diff|':>11s}")
    worst = 0.0
    for label, arrays in (("dense", dense), ("open", opened)):
        for name, compiled, by_hand in cases(*arrays):
            t_h, out_h = best_time(by_hand, args.repeat)
            try:
                t_c, out_c = best_time(compiled, args.repeat)
            except (ValueError, TypeError) as err:
                print(f"{name:26s} {label:9s} {'fails':>13s} {t_h:12.4f}  ({type(err).__name__}: {str(err)[:60]})")
                continue
            diff, same_finite = max_abs_difference(out_c, out_h)
            if not same_finite:
                print(f"  warning: {name}: compiled and hand-written disagree on where the value is finite")
            worst = max(worst, t_c / t_h)
            print(f"{name:26s} {label:9s} {t_c:13.4f} {t_h:12.4f} {t_c / t_h:7.2f} {diff:11.2e}")
    print(f"goal: ratio <= 1.5 -> {'met' if worst <= 1.5 else 'NOT met'} (worst {worst:.2f})")

    if not args.no_figure:
        import logging

        import matplotlib

        matplotlib.use("Agg")
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        from featfate_sym.plotting import phase, style

        with tempfile.TemporaryDirectory() as out, style.figure_style():
            start = time.perf_counter()
            fig = phase.lt_phase(args.sigma, 0.0, quick=False)
            drawn = time.perf_counter()
            style.save(fig, out, "lt-phase", style.FULL["dpi"])
            done = time.perf_counter()
        print(f"lt-phase at full resolution ({style.FULL['points']} x {style.FULL['points']}, {style.FULL['dpi']} dpi): "
              f"{done - start:.2f} s (theory + drawing {drawn - start:.2f} s, PNG + PDF {done - drawn:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
