"""Tables of the time course of transfer: L = 1 T(t) theory against paired gradient-descent
simulation, and time to transfer against time to learn over theta and depth.

Run: ``python numerics/time_course_table.py [--quick]``.  Settings are printed with the tables.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featfate_sym import stats, transfer_curves  # noqa: E402
from featfate_sym.studies import transfer_time  # noqa: E402


def agreement(dim, replicates, times, eta, seed, alpha=0.01):
    """See ``tests/test_time_course.py::_agreement`` (the same stated test)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_time_course import _agreement

    return _agreement(dim, replicates, times, eta, seed, alpha)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    dim, replicates = (200, 16) if args.quick else (500, 40)
    times = (0.25, 1.0, 4.0) if args.quick else (0.1, 0.3, 1.0, 3.0, 10.0)
    rows = agreement(dim, replicates, times, 0.01, 77)
    crit = stats.t_critical(replicates - 1, 0.01, len(rows))
    print(f"L = 1 paired T(t), gamma = 0.5, theta = pi/4, sigma = 0.5, d = {dim}, {replicates} replicates, "
          f"eta = 0.01 (theory: gradient descent at that step; flow in brackets); t_crit = {crit:.3f} "
          f"(two-sided, family-wise 1% over {len(rows)})")
    print(f"{'protocol':16s} {'t':>6s} {'theory':>9s} {'(flow)':>9s} {'sim mean':>9s} {'SE':>7s} {'z':>6s} "
          f"{'allow':>6s} ok")
    for protocol, t, theory, mean, se, z, allowance, ok in rows:
        flow = (transfer_curves.ft_transferability_time(0.5, math.pi / 4, t) if protocol == "fine-tuning"
                else transfer_curves.lt_transferability_time(0.5, math.pi / 4, 0.5, t))
        print(f"{protocol:16s} {t:6.2f} {theory:9.4f} {flow:9.4f} {mean:9.4f} {se:7.4f} {z:6.2f} {allowance:6.4f} "
              f"{'yes' if ok else 'NO'}")

    gamma, alpha = 0.5, 0.1
    thetas = [math.pi / 8, math.pi / 4, 3 * math.pi / 8, math.pi / 2]
    dim, replicates, eta, steps = (60, 6, 0.02, 1500) if args.quick else (150, 16, 0.01, 5000)
    table = transfer_time.time_to_transfer_table(gamma, thetas, (1, 2, 3, 4), dim=dim, eta=eta, steps=steps,
                                                 replicates=replicates, seed=7, init_scale=alpha)
    print()
    print(f"time to 90% of the way (replicate-mean risk), gamma = {gamma}, sigma = 0, d = {dim}, {replicates} "
          f"replicates, eta = {eta}, t_max = {eta * steps:g}, scratch init alpha = {alpha}")
    print(f"{'L':>2s} {'theta/pi':>8s} {'t_learn':>8s} {'t_transfer':>10s} {'ratio':>6s} {'t_mode(sc)':>10s} "
          f"{'t_L1 theory':>11s}")
    for depth, theta, t_learn, t_transfer, ratio, t_mode, t_theory in table:
        print(f"{depth:2d} {theta / math.pi:8.3f} {t_learn:8.3f} {t_transfer:10.3f} {ratio:6.3f} {t_mode:10.3f} "
              f"{t_theory:11.3f}")
    print(f"\n(wall time {time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
