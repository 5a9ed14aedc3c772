"""Wall time of one cell of the paper preset per ``gamma``: this tree, and (``--against
DIR``) another source tree of the package side by side in one run.

Each measurement is a fresh interpreter (one thread, ``PYTHONPATH`` set to the tree)
running ``sweeps.whitened_simulation_cell`` at ``theta = pi/4``, ``sigma = 0.2``, ``L =
2``, population source, with the same seed for both trees; the two trees alternate cell by
cell, so a change in the machine's load touches both.  Columns: seconds of each tree,
their ratio, fine-tuning steps (the largest over the replicates), and the largest
difference of the cell means of ``risk_sc``, ``risk_lt``, ``risk_ft`` between the trees
(0 when the two trees compute the same numbers).

    python numerics/bench_cell.py                                   # this tree only
    python numerics/bench_cell.py --against /path/to/other/checkout # side by side
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from featfate_sym import cli

HERE = Path(__file__).resolve().parents[1]

# the measurement, run in the tree under test: seconds, step count and cell means as JSON
_CELL = r"""
import json, math, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from featfate_sym.sweeps import whitened_simulation_cell
gamma, dim, replicates, seed = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
params = dict(gamma=gamma, theta=math.pi / 4, sigma=0.2, lam=0.0, L=2, d=dim, gamma_s=math.inf, sigma_s=0.0)
start = time.perf_counter()
out = whitened_simulation_cell(params, replicates=replicates, seed=seed, device="cpu", dtype="float64")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "steps_ft": int(np.max(out["steps_ft"])),
                  **{k: float(np.mean(out[k])) for k in ("risk_sc", "risk_lt", "risk_ft")}}))
"""


def _measure(tree: Path, gamma: float, dim: int, replicates: int, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CELL, repr(gamma), str(dim), str(replicates), str(seed)],
                          capture_output=True, text=True, env=env, cwd=tree, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = cli.Parser(prog="bench_cell", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gammas", nargs="+", type=cli.number("gammas", lower=0, lower_open=True),
                        default=[0.2, 0.5, 0.8, 1.2, 1.6, 2.0], help="values of gamma = n/d (> 0)")
    parser.add_argument("--d", type=cli.number("d", lower=2, integer=True), default=500,
                        help="input dimension (>= 2; default 500, the paper's)")
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, integer=True), default=20,
                        help="replicates per cell (>= 2; default 20)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, upper=2**31 - 1, integer=True), default=7)
    parser.add_argument("--against", type=Path, default=None,
                        help="another source tree of the package (a checkout holding featfate_sym/)")
    args = parser.parse_args(argv)
    if args.against is not None and not (args.against / "featfate_sym" / "__init__.py").is_file():
        parser.error(f"argument --against: {args.against} holds no featfate_sym package")
    trees = [("this", HERE)] + ([("other", args.against.resolve())] if args.against is not None else [])
    print(f"# d = {args.d}, {args.replicates} replicates, seed {args.seed}, theta = pi/4, sigma = 0.2, L = 2")
    if len(trees) == 1:
        print("| gamma | s | steps_ft |")
        print("|---|---|---|")
    else:
        print("| gamma | other s | this s | other / this | steps_ft other / this | max diff of cell means |")
        print("|---|---|---|---|---|---|")
    for gamma in args.gammas:
        res = {name: _measure(tree, gamma, args.d, args.replicates, args.seed) for name, tree in reversed(trees)}
        new = res["this"]
        if len(trees) == 1:
            print(f"| {gamma:g} | {new['seconds']:.2f} | {new['steps_ft']} |", flush=True)
            continue
        old = res["other"]
        diff = max(abs(old[k] - new[k]) for k in ("risk_sc", "risk_lt", "risk_ft"))
        print(f"| {gamma:g} | {old['seconds']:.2f} | {new['seconds']:.2f} | {old['seconds'] / new['seconds']:.2f} | "
              f"{old['steps_ft']} / {new['steps_ft']} | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
