"""The statistical helpers of ``featfate_sym.stats``: critical values against scipy and
tables, the normal limit, Bonferroni scaling, means and SEs, Welch–Satterthwaite, and a
Monte Carlo check that :func:`compare` keeps its stated false-alarm rate where the normal
critical value does not."""

import math

import numpy as np
import pytest
from scipy import stats as sst

from featfate_sym import stats


@pytest.mark.parametrize(
    "df, alpha, two_sided, table",
    [
        (19, 0.05, True, 2.093024),  # standard t tables
        (10, 0.05, False, 1.812461),
        (5, 0.01, True, 4.032143),
        (60, 0.001, True, 3.460200),
    ],
)
def test_t_critical_matches_scipy_and_tables(df, alpha, two_sided, table):
    value = stats.t_critical(df, alpha, two_sided=two_sided)
    tail = alpha / 2 if two_sided else alpha
    assert value == pytest.approx(float(sst.t.isf(tail, df)), rel=1e-12)
    assert value == pytest.approx(table, abs=2e-6)


def test_t_critical_tends_to_the_normal_value():
    z = stats.z_critical(1e-3, 3)
    assert z == pytest.approx(float(sst.norm.isf(1e-3 / 6)), rel=1e-12)
    values = [stats.t_critical(df, 1e-3, 3) for df in (5, 19, 63, 1000, 10**6)]
    assert all(a > b for a, b in zip(values, values[1:]))  # decreasing in df
    assert values[-1] == pytest.approx(z, rel=1e-5) and values[-1] > z
    assert stats.t_critical(math.inf, 1e-3, 3) == z
    # and at the replicate counts of the tests the difference is far from negligible
    assert stats.t_critical(19, 1e-3, 3) > 1.2 * z  # 4.36 against 3.59


def test_bonferroni_scaling():
    for df in (7, 39, math.inf):
        for m in (1, 2, 5, 12):
            assert stats.t_critical(df, 1e-3, m) == pytest.approx(stats.t_critical(df, 1e-3 / m), rel=1e-12)
            assert stats.t_critical(df, 1e-3, m, two_sided=False) == pytest.approx(
                float(sst.t.isf(1e-3 / m, df) if math.isfinite(df) else sst.norm.isf(1e-3 / m)), rel=1e-12)
        crit = [stats.t_critical(df, 1e-3, m) for m in (1, 2, 4, 8)]
        assert all(a < b for a, b in zip(crit, crit[1:]))


@pytest.mark.parametrize("bad", [dict(alpha=0.0), dict(alpha=1.0), dict(comparisons=0), dict(comparisons=1.5), dict(df=0)])
def test_bad_arguments_raise(bad):
    args = dict(df=10, alpha=0.05, comparisons=1)
    args.update(bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        stats.t_critical(**args)


def test_mean_se_paired_and_welch():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    m = stats.mean_se(x)
    assert m == (3.5, pytest.approx(math.sqrt(7.0) / 2), 4, 3.0)
    mean, se, n, df = m  # unpacks
    assert (mean, n, df) == (3.5, 4, 3.0)
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_se([1.0])
    with pytest.raises(ValueError, match="finite"):
        stats.mean_se([1.0, math.nan])
    # paired: the SE of the differences, not of either sample
    a = np.array([10.0, 11.0, 12.5, 14.0])
    b = a - np.array([1.0, 1.1, 0.9, 1.0])
    d = stats.paired_difference(a, b)
    assert d.mean == pytest.approx(1.0) and d.se == pytest.approx(np.std(a - b, ddof=1) / 2) and d.df == 3
    with pytest.raises(ValueError, match="same length"):
        stats.paired_difference(a, b[:3])
    # Welch–Satterthwaite against scipy's unequal-variance t-test
    rng = np.random.default_rng(0)
    u, v = rng.normal(0.0, 1.0, 12), rng.normal(0.3, 3.0, 30)
    w = stats.welch(stats.mean_se(u), stats.mean_se(v))
    ref = sst.ttest_ind(u, v, equal_var=False)
    assert w.mean / w.se == pytest.approx(ref.statistic, rel=1e-12)
    assert 2 * sst.t.sf(abs(w.mean / w.se), w.df) == pytest.approx(ref.pvalue, rel=1e-10)
    assert stats.welch_df(w.se, 11, 0.0, 29) == pytest.approx(11)  # one term: its own df
    # a linear combination: 2 m2 - m1 (an extrapolation in 1/d from d and 2d)
    e = stats.linear_combination([(2.0, stats.mean_se(v)), (-1.0, stats.mean_se(u))])
    assert e.mean == pytest.approx(2 * v.mean() - u.mean())
    assert e.se == pytest.approx(math.hypot(2 * stats.mean_se(v).se, stats.mean_se(u).se))


def test_compare_fields_and_allowance():
    x = np.array([0.9, 1.1, 1.3, 0.7, 1.0])
    c = stats.compare(1.0, x, alpha=0.05, comparisons=2)
    assert (c.theory, c.mean, c.n, c.df, c.comparisons) == (1.0, pytest.approx(1.0), 5, 4.0, 2)
    assert c.critical == pytest.approx(float(sst.t.isf(0.05 / 4, 4)))
    assert c.false_alarm_rate == 0.025 and c.passed
    far = stats.compare(2.0, x, alpha=0.05, comparisons=2)
    assert not far.passed and far.statistic == pytest.approx((x.mean() - 2.0) / stats.mean_se(x).se)
    # the allowance widens the band by exactly its size
    gap = abs(far.deviation) - far.critical * far.se
    assert stats.compare(2.0, x, alpha=0.05, comparisons=2, allowance=gap * 1.001).passed
    assert not stats.compare(2.0, x, alpha=0.05, comparisons=2, allowance=gap * 0.999).passed
    assert "FAILED" in str(far) and "t = " in str(far)
    with pytest.raises(ValueError, match="allowance"):
        stats.compare(1.0, x, alpha=0.05, allowance=-0.1)
    with pytest.raises(ValueError, match="theory"):
        stats.compare(math.inf, x, alpha=0.05)
    # zero spread: exact agreement passes, anything else fails
    assert stats.compare(1.0, [1.0, 1.0], alpha=0.05).passed
    assert not stats.compare(1.0, [1.5, 1.5], alpha=0.05).passed


def test_compare_keeps_its_false_alarm_rate_where_the_normal_value_does_not(seed):
    """Normal samples of size 20 with the exact theory value: ``compare`` at alpha = 0.01
    rejects at a rate consistent with 0.01 (two-sided binomial test at 1e-3), while the
    normal critical value with the same estimated SE rejects at its exact rate
    ``2 P(T_19 > z_0.005) = 0.0185``, significantly above 0.01 (1.85x here; at the suite's
    per-comparison rates 1e-3 / k, k = 1..4, the factor is 3.9-6.6 for 20 replicates and
    2.1-3.0 for 40, computed below)."""
    rng = np.random.default_rng([seed, 20])
    trials, size, alpha = 20000, 20, 0.01
    samples = rng.normal(0.7, 2.0, (trials, size))
    rejections = sum(not stats.compare(0.7, row, alpha=alpha).passed for row in samples)
    assert sst.binomtest(rejections, trials, alpha).pvalue > 1e-3, rejections
    # the same statistic against the normal critical value
    t = (samples.mean(axis=1) - 0.7) / (samples.std(axis=1, ddof=1) / math.sqrt(size))
    normal = int(np.sum(np.abs(t) > stats.z_critical(alpha)))
    exact_rate = 2 * float(sst.t.sf(stats.z_critical(alpha), size - 1))
    assert exact_rate == pytest.approx(0.0185, abs=1e-4)
    assert sst.binomtest(normal, trials, exact_rate).pvalue > 1e-3, normal
    assert sst.binom.sf(normal - 1, trials, alpha) < 1e-6  # far more than alpha allows
    assert normal > 1.5 * max(rejections, 1)
    # the factor at the suite's rates (a property of the t distribution, no sampling)
    for df, low, high in ((19, 3.8, 6.7), (39, 2.1, 3.0)):
        for k in (1, 2, 3, 4):
            per = 1e-3 / k
            factor = 2 * float(sst.t.sf(stats.z_critical(1e-3, k), df)) / per
            assert low <= factor <= high, (df, k, factor)
            assert 2 * float(sst.t.sf(stats.t_critical(df, 1e-3, k), df)) == pytest.approx(per, rel=1e-9)


def test_seed_false_alarm_script_smoke(tmp_path):
    """The seed sweep's script on one cheap test and two seeds: a table with its row."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "numerics" / "seed_false_alarms.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--seeds", "0:2", "--tests", "test_linear_transfer::test_k_feature_lemma_monte_carlo"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "seeds 0..1"
    row = next(line for line in lines if line.startswith("test_linear_transfer::test_k_feature_lemma_monte_carlo"))
    assert row.split()[1:4] == ["0.001", "2", "0"]
    assert lines[-1].startswith("all")


def test_false_alarm_is_the_inverse_of_the_critical_value():
    from featfate_sym.stats import t_critical, t_false_alarm

    for df in (5.0, 19.0, math.inf):
        crit = t_critical(df, 1e-3, comparisons=4, two_sided=False)
        assert t_false_alarm(crit, df) == pytest.approx(1e-3 / 4, rel=1e-9)
        assert t_false_alarm(crit, df, two_sided=True) == pytest.approx(2e-3 / 4, rel=1e-9)
