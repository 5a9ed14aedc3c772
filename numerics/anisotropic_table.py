"""Print the Monte Carlo agreement table of the anisotropic family (Markdown).

Rows: spectrum, gamma, protocol, theory (deterministic equivalent of the spectrum's limit;
linear transfer with its exact finite-n term), Monte Carlo mean, SE, z = (mean - theory)/SE
at dimension d (z includes the O(1/d) finite-size bias of the limit).

    python numerics/anisotropic_table.py [--replicates 4] [--teachers uniform|top|bottom] [--d 1000] [--seed 0]
    python numerics/anisotropic_table.py --balanced [...]   # fine-tuning at the balanced end point, L = 2, 3
"""

from __future__ import annotations

import sys

from featfate_sym import cli
from featfate_sym.studies.anisotropic_phase import balanced_table, table


def main(argv=None) -> int:
    parser = cli.Parser(prog="anisotropic_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, upper=10_000, integer=True),
                        default=4, help="replicates per cell (default 4)")
    parser.add_argument("--teachers", choices=("uniform", "top", "bottom"), default="uniform",
                        help="where the teachers' energy lies (default uniform)")
    parser.add_argument("--d", type=cli.number("d", lower=10, upper=10_000, integer=True), default=1000,
                        help="input dimension (default 1000)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, upper=2**31 - 1, integer=True), default=0)
    parser.add_argument("--balanced", action="store_true",
                        help="the balanced-flow end point of fine-tuning (risk and c^(L-1), L = 2, 3) instead")
    args = parser.parse_args(argv)
    if args.balanced:
        rows = balanced_table(replicates=args.replicates, place=args.teachers, d=args.d, seed=args.seed)
        lines = [f"teacher profile: {args.teachers}; theta = 0.8, sigma = 0.5, d = {args.d}, "
                 f"{args.replicates} replicates; balanced end point from the sample's a, b",
                 "", "| spectrum | gamma | L | quantity | theory | MC mean | SE | z |", "|---|---|---|---|---|---|---|---|"]
        for spec, g, depth, name, theory, mean, se, z in rows:
            lines.append(f"| {spec} | {g:g} | {depth} | {name} | {theory:.4f} | {mean:.4f} | {se:.4f} | {z:+.2f} |")
        sys.stdout.write("\n".join(lines) + "\n")
        return 0
    rows = table(replicates=args.replicates, place=args.teachers, d=args.d, seed=args.seed)
    lines = [f"teacher profile: {args.teachers}; theta = 0.8, sigma = 0.5, d = {args.d}, {args.replicates} replicates",
             "", "| spectrum | gamma | protocol | theory | MC mean | SE | z |", "|---|---|---|---|---|---|---|"]
    for spec, g, name, theory, mean, se, z in rows:
        lines.append(f"| {spec} | {g:g} | {name} | {theory:.4f} | {mean:.4f} | {se:.4f} | {z:+.2f} |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
