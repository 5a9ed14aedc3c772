"""Print the classification table of the closing note (Markdown): square-loss theory,
Monte Carlo of the closed-form estimators, deep linear networks with the square and the
logistic loss (see :func:`featfate_sym.studies.classification_phase.table`).

    python numerics/classification_table.py [--dim 60] [--replicates 12] [--seed 0]
"""

import sys

import torch

from featfate_sym import cli

from featfate_sym.studies.classification_phase import ANSWER, markdown_table, table


def main(argv=None) -> int:
    p = cli.Parser(prog="classification_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=cli.number("dim", lower=4, upper=2000, integer=True), default=60,
                   help="input dimension (default 60)")
    p.add_argument("--replicates", type=cli.number("replicates", lower=2, upper=10_000, integer=True), default=12,
                   help="target sets per cell (default 12)")
    p.add_argument("--seed", type=cli.number("seed", lower=0, upper=2**31 - 1, integer=True), default=0)
    p.add_argument("--max-steps", type=cli.number("max-steps", lower=10, upper=10**7, integer=True),
                   default=20_000, help="gradient-descent step budget per run (default 20000)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = table(dim=args.dim, replicates=args.replicates, seed=args.seed, max_steps=args.max_steps)
    print(markdown_table(rows))
    print()
    print(ANSWER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
