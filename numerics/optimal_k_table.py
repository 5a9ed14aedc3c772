"""Several source tasks: Monte Carlo of linear transfer onto rank-k features (and of scratch)
against the exact finite-n theory, and the optimal number of source tasks.

Prints two Markdown tables (featfate_sym.studies.optimal_k.table): the comparison rows
(k, n, d, theta, sigma, theory, mean, SE, z) of ``lt.k.risk_finite`` (R_lt) and
``lt.k.transferability_finite`` (T, paired scratch - transfer), and the optimum over
(theta, sigma, n) at d = 200: the continuous ``lt.k.optimal``, the integer ``optimal_k``,
the risks there and at k = 1, and the largest k with T > 0.

    python numerics/optimal_k_table.py                        # 4000 replicates per cell
    python numerics/optimal_k_table.py --replicates 200 --seed 3
"""

from __future__ import annotations

import math
import sys


def _angle(value: float) -> str:
    for num, den in ((1, 6), (1, 4), (1, 3), (3, 8), (1, 2)):
        if math.isclose(value, num * math.pi / den):
            return f"{'' if num == 1 else num}pi/{den}"
    return f"{value:.4g}"


def main(argv=None) -> int:
    from featfate_sym import cli
    from featfate_sym.studies.optimal_k import table

    parser = cli.Parser(prog="optimal_k_table", description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, integer=True), default=4000,
                        help="Monte Carlo replicates per cell (integer >= 2)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, integer=True), default=0, help="seed (integer >= 0)")
    args = parser.parse_args(argv)
    out = table(replicates=int(args.replicates), seed=int(args.seed))
    print(f"Monte Carlo ({args.replicates} replicates per cell, seed {args.seed}) against the exact theory")
    print()
    print("| quantity | k | n | d | theta | sigma | theory | MC mean | SE | z |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["monte_carlo"]:
        print(f"| {r.quantity} | {r.k} | {r.n} | {r.d} | {_angle(r.theta)} | {r.sigma:g} | {r.theory:.5f} | "
              f"{r.mean:.5f} | {r.se:.5f} | {r.z:+.2f} |")
    print()
    print("| theta | sigma | n | d | k* (continuous) | optimal k | R_lt(k_opt) | R_lt(1) | largest k with T > 0 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out["optimal"]:
        print(f"| {_angle(r.theta)} | {r.sigma:g} | {r.n} | {r.d} | {r.k_star:.3f} | {r.k_opt} | {r.risk_opt:.4f} | "
              f"{r.risk_one:.4f} | {r.largest_positive} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
