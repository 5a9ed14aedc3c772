"""Statistical helpers shared by the tests, the report and the numerical studies.

Every comparison of a simulated mean with a theory value in this project is a test of
``H0: E[X] = theory`` from ``n`` independent replicates.  The standard error is estimated
from the same replicates (``ddof = 1``), so the statistic

    t = (mean - theory) / SE

follows Student's t with ``n - 1`` degrees of freedom when the replicates are normal, and
approximately so when the mean is approximately normal (central limit theorem; the
risks simulated here have finite variance wherever a mean is compared).  The normal
critical value is right only when the variance is known (:func:`z_critical`); with
an estimated SE and 20-60 replicates it under-states the false-alarm rate by a factor
2-3 at the family-wise rates used in the tests (``1e-3`` split over a few comparisons).

A family of ``m`` comparisons at family-wise rate ``alpha`` uses ``alpha / m`` per
comparison (Bonferroni: valid under any dependence between the comparisons).

Two independent means are compared with the Welch–Satterthwaite approximation
(:func:`welch`): the SE of the difference is ``sqrt(se_a^2 + se_b^2)`` and its degrees of
freedom ``(se_a^2 + se_b^2)^2 / (se_a^4 / df_a + se_b^4 / df_b)``.  Paired replicates
(the same data set entering both quantities) are compared through their differences
(:func:`paired_difference`), with ``n - 1`` degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats as _stats

__all__ = [
    "Comparison",
    "MeanSE",
    "compare",
    "compare_mean",
    "linear_combination",
    "mean_se",
    "paired_difference",
    "t_critical",
    "t_false_alarm",
    "welch",
    "welch_df",
    "z_critical",
]


def _tail(alpha: float, comparisons: int, two_sided: bool) -> float:
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1) (got {alpha!r})")
    if isinstance(comparisons, bool) or not isinstance(comparisons, (int, np.integer)) or comparisons < 1:
        raise ValueError(f"comparisons must be an integer >= 1 (got {comparisons!r})")
    per = float(alpha) / int(comparisons)
    return per / 2 if two_sided else per


@lru_cache(maxsize=4096)
def _t_isf(tail: float, df: float) -> float:
    if math.isinf(df):
        return float(_stats.norm.isf(tail))
    return float(_stats.t.isf(tail, df))


def t_critical(df: float, alpha: float, comparisons: int = 1, two_sided: bool = True) -> float:
    """Student-t critical value for ``comparisons`` tests at family-wise rate ``alpha``.

    ``df``: degrees of freedom of the estimated SE (``replicates - 1`` for a mean of
    replicates; may be fractional, e.g. Welch–Satterthwaite; ``math.inf`` gives the normal
    value).  Each comparison rejects when ``|t| > t_critical`` (two-sided) or ``t >
    t_critical`` (one-sided), with probability ``alpha / comparisons`` under H0 when the
    mean is normal, so the family rejects with probability at most ``alpha``.
    """
    df = float(df)
    if not df > 0:  # also rejects NaN
        raise ValueError(f"df must be > 0 (got {df!r})")
    return _t_isf(_tail(alpha, comparisons, two_sided), df)


def t_false_alarm(threshold: float, df: float, two_sided: bool = False) -> float:
    """The rate at which a threshold test ``t > threshold`` (``|t| >`` if ``two_sided``)
    rejects a true H0, for a Student-t statistic with ``df`` degrees of freedom: the
    inverse of :func:`t_critical`, for tests whose threshold is given (sign maps)."""
    df = float(df)
    if not df > 0:
        raise ValueError(f"df must be > 0 (got {df!r})")
    tail = float(_stats.norm.sf(threshold) if math.isinf(df) else _stats.t.sf(threshold, df))
    return 2 * tail if two_sided else tail


def z_critical(alpha: float, comparisons: int = 1, two_sided: bool = True) -> float:
    """Normal critical value: only for a statistic whose standard deviation is KNOWN (an
    analytic SE, or a mean of so many draws that the estimated SE is exact for practical
    purposes; say which in the caller)."""
    return _t_isf(_tail(alpha, comparisons, two_sided), math.inf)


class MeanSE(NamedTuple):
    """A mean, its standard error, the number of replicates and the SE's degrees of
    freedom (``n - 1`` for a plain mean).  Unpacks as ``mean, se, n, df``."""

    mean: float
    se: float
    n: int
    df: float


def _samples(samples, name: str = "samples") -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"{name} needs at least 2 values (got {x.size})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def mean_se(samples) -> MeanSE:
    """Mean, standard error ``std(ddof=1) / sqrt(n)``, ``n`` and ``df = n - 1``."""
    x = _samples(samples)
    return MeanSE(float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)), int(x.size), float(x.size - 1))


def paired_difference(a, b) -> MeanSE:
    """Mean and SE of the replicate-wise differences ``a - b`` (the same replicate enters
    both), ``df = n - 1``.  Use :func:`welch` instead for independent samples."""
    a, b = _samples(a, "a"), _samples(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length (got {a.size} and {b.size})")
    return mean_se(a - b)


def welch_df(se_a: float, df_a: float, se_b: float, df_b: float) -> float:
    """Welch–Satterthwaite degrees of freedom of ``se_a^2 + se_b^2``."""
    return linear_combination([(1.0, MeanSE(0.0, se_a, 0, df_a)), (1.0, MeanSE(0.0, se_b, 0, df_b))]).df


def linear_combination(terms: Sequence[tuple[float, MeanSE]]) -> MeanSE:
    """``sum_i w_i mean_i`` of INDEPENDENT means, with SE ``sqrt(sum w_i^2 se_i^2)`` and
    Welch–Satterthwaite degrees of freedom ``(sum v_i)^2 / sum(v_i^2 / df_i)``, ``v_i =
    w_i^2 se_i^2`` (e.g. an extrapolation ``(d_2 m_2 - d_1 m_1) / (d_2 - d_1)`` in
    ``1/d``).  ``n`` is the total number of replicates."""
    if not terms:
        raise ValueError("linear_combination needs at least one term")
    mean = sum(w * t.mean for w, t in terms)
    v = [(w * t.se) ** 2 for w, t in terms]
    total = sum(v)
    if total == 0:
        df = math.inf
    else:
        df = total**2 / sum(vi**2 / t.df for vi, (_, t) in zip(v, terms) if vi > 0)
    return MeanSE(float(mean), float(math.sqrt(total)), int(sum(t.n for _, t in terms)), float(df))


def welch(a: MeanSE, b: MeanSE) -> MeanSE:
    """Difference ``a - b`` of two INDEPENDENT means (Welch–Satterthwaite)."""
    return linear_combination([(1.0, a), (-1.0, b)])


@dataclass(frozen=True)
class Comparison:
    """A two-sided test of ``E[mean] = theory``.

    ``statistic = (mean - theory) / se`` (Student t with ``df`` degrees of freedom under
    H0); ``critical = t_critical(df, alpha, comparisons)``; ``false_alarm_rate =
    alpha / comparisons``, this comparison's share of the family-wise rate ``alpha``.

    ``allowance`` (>= 0) is a DETERMINISTIC bound on ``|E[mean] - theory|`` that the test
    does not attribute to an error: a finite-size term of a limit at finite width
    (derived, e.g. the exact finite-size value's distance to the limit) or a solver
    residue bounded by the stopping rule.  It widens the band,
    ``|mean - theory| <= critical * se + allowance``, so that the false-alarm rate stays at
    most ``false_alarm_rate`` when the bound holds.  It is never a bare constant: a term
    that is not derived must be removed by the design (e.g. extrapolation in ``1/d``).
    """

    theory: float
    mean: float
    se: float
    n: int
    df: float
    statistic: float
    critical: float
    alpha: float
    comparisons: int
    allowance: float

    @property
    def false_alarm_rate(self) -> float:
        return self.alpha / self.comparisons

    @property
    def half_width(self) -> float:
        """``critical * se + allowance``: the largest ``|mean - theory|`` accepted."""
        return self.critical * self.se + self.allowance

    @property
    def deviation(self) -> float:
        return self.mean - self.theory

    @property
    def passed(self) -> bool:
        return bool(abs(self.deviation) <= self.half_width)

    def __str__(self) -> str:
        return (
            f"mean {self.mean:.6g} +- {self.se:.3g} (n = {self.n}, df = {self.df:.4g}) vs theory "
            f"{self.theory:.6g}: t = {self.statistic:.3g}, critical {self.critical:.3f} "
            f"(alpha {self.alpha:g} / {self.comparisons}), allowance {self.allowance:.3g}: "
            f"{'passed' if self.passed else 'FAILED'}"
        )


def compare_mean(
    theory: float,
    estimate: MeanSE,
    *,
    alpha: float,
    comparisons: int = 1,
    allowance: float = 0.0,
) -> Comparison:
    """:class:`Comparison` of an estimate (mean, SE, n, df) with ``theory``; see
    :func:`compare` for the samples themselves."""
    allowance = float(allowance)
    if not (allowance >= 0 and math.isfinite(allowance)):
        raise ValueError(f"allowance must be a finite number >= 0 (got {allowance!r})")
    theory = float(theory)
    if not math.isfinite(theory):
        raise ValueError(f"theory must be finite (got {theory!r})")
    mean, se, n, df = (float(estimate.mean), float(estimate.se), int(estimate.n), float(estimate.df))
    if not (se >= 0 and math.isfinite(se) and math.isfinite(mean)):
        raise ValueError(f"mean and se must be finite, se >= 0 (got {mean!r}, {se!r})")
    critical = t_critical(df, alpha, comparisons)
    dev = mean - theory
    statistic = dev / se if se > 0 else (0.0 if dev == 0 else math.copysign(math.inf, dev))
    return Comparison(theory, mean, se, n, df, float(statistic), critical, float(alpha), int(comparisons), allowance)


def compare(
    theory: float,
    samples,
    *,
    alpha: float,
    comparisons: int = 1,
    allowance: float = 0.0,
) -> Comparison:
    """Two-sided t-test of the mean of ``samples`` (independent replicates) against
    ``theory``, at family-wise rate ``alpha`` split over ``comparisons`` (Bonferroni), with
    ``df = len(samples) - 1``.  Assumes the sample mean is approximately normal.
    ``allowance``: see :class:`Comparison`."""
    return compare_mean(theory, mean_se(samples), alpha=alpha, comparisons=comparisons, allowance=allowance)
