"""Fine-tuning from a finite, noisy source: simulation against the exact balanced-flow form
(``ft.transferability_finite_source_exact``) and the c = 1 approximation
(``ft.transferability_finite_source``).

Per cell and replicate: teachers at angle theta, ``n = round(gamma d)`` target and
``n_s = round(gamma_s d)`` source samples; pretraining by gradient descent from small
initialisation on the source sample, fine-tuning of all layers on the target sample
(featfate_sym.simulation, whitened solver, drift control on; the study:
featfate_sym.studies.finite_source); the scratch end point is
the minimum-norm interpolator ``X^+ y`` (where scratch training converges).

The estimator (a control variate with an exactly known mean) is described in
:mod:`featfate_sym.studies.finite_source`.

    python numerics/finite_source_table.py                    # d = 40, 400 replicates per cell
    python numerics/finite_source_table.py --d 60 --replicates 200 --seed 3
"""

from __future__ import annotations

import sys

# the study's cells and functions (tests/test_finite_source.py reads them from here too)
from featfate_sym.studies.finite_source import (  # noqa: F401
    CELLS,
    GAMMA,
    THETA,
    control_estimate,
    finite_size_control_mean,
    finite_source_row,
    model_samples,
    simulate_samples,
    theory_values,
)


def main(argv=None) -> int:
    from featfate_sym import cli

    parser = cli.Parser(prog="finite_source_table", description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=cli.number("d", lower=8, integer=True), default=40, help="input dimension (integer >= 8)")
    parser.add_argument("--replicates", type=cli.number("replicates", lower=2, integer=True), default=400,
                        help="trained replicates per cell (integer >= 2)")
    parser.add_argument("--model-replicates", type=cli.number("model-replicates", lower=2, integer=True), default=4000,
                        help="training-free draws per cell for the finite-size expectation (integer >= 2)")
    parser.add_argument("--seed", type=cli.number("seed", lower=0, integer=True), default=0, help="seed (integer >= 0)")
    args = parser.parse_args(argv)
    d = int(args.d)
    print(f"gamma = {GAMMA}, theta = pi/4, sigma = sigma_s = noise, d = {d}, {args.replicates} trained replicates, "
          f"{args.model_replicates} model draws per cell")
    print("L  gamma_s noise |  exact    c=1    | finite-d exact (MC)   | simulated mean +- SE  | z exact  z c=1 | max end-point error")
    for k, (depth, gs, noise) in enumerate(CELLS):
        row = finite_source_row(depth, gs, noise, d, args.replicates, args.model_replicates, args.seed, k)
        print(f"{depth}  {gs:5.2f}  {noise:4.2f}  | {row.exact:7.4f} {row.c1:7.4f} | {row.mc:7.4f} +- {row.mc_se:.4f}     | "
              f"{row.mean:7.4f} +- {row.se:.4f}     | {row.z_exact:6.2f} {row.z_c1:7.2f} | {row.max_end_point_error:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
