"""False alarms of the statistical tests over seeds: run a set of cheap theory-vs-simulation
and Monte Carlo tests for each seed in a range and compare the failures with their rate.

Each test is called in-process as the suite calls it with ``FEATFATE_SEED=<seed>`` (the
``seed`` fixture of ``tests/conftest.py``).  A test whose theory is right fails with
probability at most its family-wise false-alarm rate ``alpha`` (1e-3 in the suite), so
over ``runs`` seeds the failures are at most Binomial(runs, alpha); the table gives the
observed failures, the expected ``alpha * runs`` and the binomial probability of seeing at
least that many.  Errors other than a failed assertion are counted apart.

Usage::

    python numerics/seed_false_alarms.py                      # seeds 0..99, default set
    python numerics/seed_false_alarms.py --seeds 0:2 --tests test_distances::test_kl_monte_carlo

Single-threaded (torch and BLAS), about 10 minutes for the default set on one core.  Costlier
tests can be named with ``--tests`` (e.g.
``test_simulation_deep_linear::test_fine_tuning_transferability_matches_limit_at_two_widths``,
about 7 s a seed, or the ``test_ridge_baseline`` comparisons, 3-4 s a seed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"

#: test -> its family-wise false-alarm rate (every one is at FAMILY_ALPHA = 1e-3 except
#: the false-alarm test of the statistics module, which makes two binomial tests at 1e-3)
DEFAULT_TESTS = {
    "test_distances::test_kl_monte_carlo": 1e-3,
    "test_distances::test_bl_lower_bound_is_the_expectation_gap_of_its_test_function_monte_carlo": 1e-3,
    "test_random_matrix::test_projection_mean_monte_carlo": 1e-3,
    "test_random_matrix::test_inverse_wishart_monte_carlo": 1e-3,
    "test_scratch::test_risk_finite_monte_carlo": 1e-3,
    "test_linear_transfer::test_risk_finite_monte_carlo": 1e-3,
    "test_linear_transfer::test_k_feature_lemma_monte_carlo": 1e-3,
    "test_linear_transfer::test_ridge_risk_monte_carlo_large_n": 1e-3,
    "test_simulation_deep_linear::test_linear_transfer_risk_matches_exact_finite_size": 1e-3,
    "test_stats::test_compare_keeps_its_false_alarm_rate_where_the_normal_value_does_not": 2e-3,
}


def _load(name: str):
    module, _, func = name.partition("::")
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    return getattr(importlib.import_module(module), func)


def _seeds(text: str) -> range:
    lo, _, hi = text.partition(":")
    seeds = range(int(lo), int(hi)) if hi else range(int(lo), int(lo) + 1)
    if not seeds or seeds.start < 0 or seeds.stop > 100:
        raise argparse.ArgumentTypeError(f"seeds must be a range inside 0:100 (got {text})")
    return seeds


def run(tests: dict[str, float], seeds: range, log=lambda message: print(message, file=sys.stderr)) -> list[dict]:
    """Per test: runs, failures (failed assertions), errors (other exceptions), seconds."""
    from scipy import stats

    import torch

    torch.set_num_threads(1)
    rows = []
    for name, alpha in tests.items():
        func = _load(name)
        failures, errors, failed_seeds = 0, 0, []
        started = time.process_time()
        for seed in seeds:
            try:
                func(seed)
            except AssertionError:
                failures += 1
                failed_seeds.append(seed)
            except Exception:  # noqa: BLE001 - counted and shown, not a false alarm
                errors += 1
                log(f"{name} seed {seed}: error\n{traceback.format_exc(limit=3)}")
        runs = len(seeds)
        rows.append({
            "test": name, "alpha": alpha, "runs": runs, "failures": failures, "errors": errors,
            "expected": alpha * runs, "p_at_least": float(stats.binom.sf(failures - 1, runs, alpha)),
            "failed_seeds": failed_seeds, "cpu_s": time.process_time() - started,
        })
        log(f"  {name}: {failures} failures, {errors} errors in {rows[-1]['cpu_s']:.1f} s cpu")
    return rows


def table(rows: list[dict]) -> str:
    from scipy import stats

    width = max(len(r["test"]) for r in rows)
    lines = [f"{'test':<{width}}  {'alpha':>6}  {'runs':>4}  {'fail':>4}  {'expected':>8}  {'P(>= fail)':>10}  "
             f"{'errors':>6}  {'cpu s':>6}  failed seeds"]
    for r in rows:
        lines.append(f"{r['test']:<{width}}  {r['alpha']:>6g}  {r['runs']:>4}  {r['failures']:>4}  {r['expected']:>8.3f}  "
                     f"{r['p_at_least']:>10.3g}  {r['errors']:>6}  {r['cpu_s']:>6.1f}  {r['failed_seeds']}")
    runs = sum(r["runs"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    expected = sum(r["expected"] for r in rows)
    # overall: failures are a sum of independent binomials, each at most its alpha; the
    # Poisson tail with the summed mean bounds P(>= failures) closely at these rates
    p_all = float(stats.poisson.sf(failures - 1, expected))
    lines.append(f"{'all':<{width}}  {'':>6}  {runs:>4}  {failures:>4}  {expected:>8.3f}  {p_all:>10.3g}  "
                 f"{sum(r['errors'] for r in rows):>6}  {sum(r['cpu_s'] for r in rows):>6.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="seed_false_alarms", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=_seeds, default=range(100), help="LO:HI (half-open) inside 0:100; default 0:100")
    parser.add_argument("--tests", help="comma-separated module::function names; default: the built-in set")
    parser.add_argument("--alpha", type=float, default=1e-3, help="family-wise rate of tests given with --tests")
    args = parser.parse_args(argv)
    tests = DEFAULT_TESTS if args.tests is None else {t.strip(): args.alpha for t in args.tests.split(",") if t.strip()}
    rows = run(tests, args.seeds)
    print(f"seeds {args.seeds.start}..{args.seeds.stop - 1}")
    print(table(rows))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
