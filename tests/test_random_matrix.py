"""Gaussian random-matrix facts: symbolic identities, quadrature and Monte Carlo checks.

The expected formulas typed here come from SPEC.md (section 2, "Training from scratch")
and from the standard literature (inverse-Wishart mean, Marchenko–Pastur density and
moments); the module under test derives or cites them independently.

Statistical tests are two-sided t-tests of a Monte Carlo mean against the stated value,
``t = (mean - expected) / SE`` with ``SE`` the sample standard error (Student t with
``draws - 1`` degrees of freedom); within each test the family-wise false-alarm rate is
1e-3, Bonferroni-corrected over the points.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp

from featfate_sym.symbols import d, gamma, n, psi, sigma, z
from featfate_sym.theory.random_matrix import (
    chi2_inverse_mean,
    inverse_covariance_mean_coefficient,
    inverse_gram_trace_mean,
    mp_moments,
    mp_resolvent_trace,
    mp_resolvent_trace_squared,
    mp_stieltjes,
    projection_mean_coefficient,
    proportional_limit,
)
from checks import bonferroni_t



# -- finite-size moments -------------------------------------------------------------------
def test_chi2_inverse_mean_is_one_over_nu_minus_two():
    nu = sp.Symbol("nu", positive=True)
    expr = chi2_inverse_mean(nu)
    value, cond = expr.args[0]
    assert sp.simplify(value - 1 / (nu - 2)) == 0
    assert cond == (nu > 2)
    assert chi2_inverse_mean(2) == sp.oo
    assert chi2_inverse_mean(1) == sp.oo


def test_chi2_inverse_mean_against_quadrature():
    for dof in (3, 7, sp.Rational(9, 2)):
        exact = 1 / (sp.Rational(dof) - 2)
        with mpmath.workdps(30):
            k = mpmath.mpf(sp.Rational(dof).p) / sp.Rational(dof).q / 2
            density = lambda x: x ** (k - 1) * mpmath.exp(-x / 2) / (2**k * mpmath.gamma(k))  # noqa: E731
            # x = u^2 removes the integrable singularity of density(x)/x at 0
            numeric = mpmath.quad(lambda u: density(u**2) / u**2 * 2 * u, [0, 1, mpmath.inf])
            assert abs(numeric - mpmath.mpf(exact.p) / exact.q) < mpmath.mpf(10) ** -20
        assert chi2_inverse_mean(dof) == exact


def test_projection_coefficient_is_rank_over_dimension():
    assert sp.simplify(projection_mean_coefficient(n, d) - sp.Min(n, d) / d) == 0
    assert projection_mean_coefficient(5, 20) == sp.Rational(1, 4)
    assert projection_mean_coefficient(30, 20) == 1


def test_projection_mean_monte_carlo(seed):
    """E[P] = (n/d) I: the (1,1) entry has mean n/d and the (1,2) entry mean 0."""
    rng = np.random.default_rng(seed)
    n_samples, dim, draws = 5, 20, 2000
    p11, p12 = np.empty(draws), np.empty(draws)
    for i in range(draws):
        x = rng.standard_normal((n_samples, dim))
        proj = np.linalg.pinv(x) @ x
        p11[i], p12[i] = proj[0, 0], proj[0, 1]
    expected = float(projection_mean_coefficient(n_samples, dim))
    zc = bonferroni_t(draws - 1, 2)
    for sample, target in ((p11, expected), (p12, 0.0)):
        se = sample.std(ddof=1) / np.sqrt(draws)
        assert abs(sample.mean() - target) <= zc * se


def test_inverse_lemmas_reduce_to_chi2():
    """One row (n = 1) or one column (d = 1): the lemmas equal the derived E[1/chi^2]."""
    for dim in range(3, 12):
        assert inverse_gram_trace_mean(1, dim) == chi2_inverse_mean(dim)
        assert inverse_covariance_mean_coefficient(dim, 1) == chi2_inverse_mean(dim)


def test_inverse_lemmas_symbolic_values():
    value, _ = inverse_gram_trace_mean(n, d).args[0]
    assert sp.simplify(value - n / (d - n - 1)) == 0
    value, _ = inverse_covariance_mean_coefficient(n, d).args[0]
    assert sp.simplify(value - 1 / (n - d - 1)) == 0
    # the expectation is infinite at and beyond the threshold
    assert inverse_gram_trace_mean(19, 20) == sp.oo
    assert inverse_covariance_mean_coefficient(21, 20) == sp.oo


def test_inverse_wishart_monte_carlo(seed):
    """Monte Carlo of E tr (X X^T)^{-1} (n < d) and E tr (X^T X)^{-1} (n > d), d = 20.

    The points keep |n - d| >= 10 so that the trace has finite variance (needs
    |n - d| > 3) and light enough tails for the t-test (finite fourth moment).
    """
    rng = np.random.default_rng(seed)
    dim, draws = 20, 3000
    points = [(5, "gram"), (10, "gram"), (30, "cov"), (40, "cov")]
    zc = bonferroni_t(draws - 1, len(points))
    for n_samples, kind in points:
        traces = np.empty(draws)
        for i in range(draws):
            x = rng.standard_normal((n_samples, dim))
            gram = x @ x.T if kind == "gram" else x.T @ x
            traces[i] = np.trace(np.linalg.inv(gram))
        if kind == "gram":
            expected = float(inverse_gram_trace_mean(n_samples, dim))
        else:
            expected = float(dim * inverse_covariance_mean_coefficient(n_samples, dim))
        se = traces.std(ddof=1) / np.sqrt(draws)
        assert abs(traces.mean() - expected) <= zc * se, (n_samples, traces.mean(), expected, se)


# -- proportional limit ----------------------------------------------------------------------
def test_proportional_limit_of_the_lemmas():
    under = proportional_limit(inverse_gram_trace_mean(n, d), gamma)
    assert under.args[0][1] == (gamma < 1)
    assert sp.simplify(under.args[0][0] - gamma / (1 - gamma)) == 0
    over = proportional_limit(d * inverse_covariance_mean_coefficient(n, d), gamma)
    assert over.args[0][1] == (gamma > 1)
    assert sp.simplify(over.args[0][0] - 1 / (gamma - 1)) == 0


def test_proportional_limit_maps_threshold_band_to_gamma_one():
    expr = sp.Piecewise(
        (1 - n / d, n < d - 1),
        (sp.Integer(7), (n >= d - 1) & (n <= d + 1) & sp.Eq(sigma, 0)),
        (sp.Integer(0), True),
    )
    out = proportional_limit(expr, gamma)
    assert out.subs({gamma: sp.Rational(1, 3), sigma: 0}) == sp.Rational(2, 3)
    assert out.subs({gamma: 1, sigma: 0}) == 7
    assert out.subs({gamma: 2, sigma: 0}) == 0
    assert out.subs({gamma: 1, sigma: 1}) == 0


def test_proportional_limit_of_min():
    out = proportional_limit(1 - sp.Min(n, d) / d, gamma)
    assert out.subs(gamma, sp.Rational(1, 4)) == sp.Rational(3, 4)
    assert out.subs(gamma, 3) == 0


# -- Marchenko–Pastur ------------------------------------------------------------------------
def _mp_density_integral(psi_value, weight):
    """``int weight(x) dMP_psi(x)`` by quadrature of the Marchenko–Pastur density.

    Density ``sqrt((b - x)(x - a)) / (2 pi psi x)`` on ``[a, b]``,
    ``a, b = (1 -+ sqrt(psi))^2``, plus an atom ``1 - 1/psi`` at 0 when ``psi > 1``.
    """
    p = mpmath.mpf(psi_value)
    a, b = (1 - mpmath.sqrt(p)) ** 2, (1 + mpmath.sqrt(p)) ** 2
    bulk = mpmath.quad(
        lambda x: mpmath.sqrt((b - x) * (x - a)) / (2 * mpmath.pi * p * x) * weight(x), [a, 1, b]
    )
    atom = (1 - 1 / p) * weight(mpmath.mpf(0)) if p > 1 else 0
    return bulk + atom


PSI_POINTS = [sp.Rational(1, 4), sp.Rational(1, 2), sp.Integer(2), sp.Integer(4)]
LAM_POINTS = [sp.Rational(1, 10), sp.Integer(1), sp.Integer(10)]


@pytest.mark.parametrize("psi_value", PSI_POINTS)
def test_mp_stieltjes_matches_density(psi_value):
    with mpmath.workdps(30):
        assert abs(_mp_density_integral(psi_value, lambda x: 1) - 1) < mpmath.mpf(10) ** -20
        for lam_value in LAM_POINTS:
            numeric = _mp_density_integral(psi_value, lambda x: 1 / (x + mpmath.mpf(lam_value)))
            derived = sp.N(mp_stieltjes(psi_value, -lam_value), 30)
            assert abs(numeric - mpmath.mpf(str(derived))) < mpmath.mpf(10) ** -20
            squared = _mp_density_integral(psi_value, lambda x: 1 / (x + mpmath.mpf(lam_value)) ** 2)
            derived2 = sp.N(mp_resolvent_trace_squared(psi_value, lam_value), 30)
            assert abs(squared - mpmath.mpf(str(derived2))) < mpmath.mpf(10) ** -20


def test_mp_branch_decays_like_minus_one_over_z():
    for psi_value in PSI_POINTS:
        for zz in (-(10**6), -(10**9)):
            value = sp.N(zz * mp_stieltjes(psi_value, zz), 30)
            assert abs(value + 1) < 10 * abs(sp.Integer(1) / zz) * (1 + psi_value)


def test_mp_stieltjes_solves_the_quadratic():
    m_value = mp_stieltjes(psi, z)
    residual = psi * z * m_value**2 - (1 - psi - z) * m_value + 1
    assert sp.simplify(sp.expand(residual)) == 0


def test_mp_resolvent_trace_is_positive_and_decreasing():
    lam = sp.Symbol("lam", positive=True)
    for psi_value in PSI_POINTS:
        values = [mp_resolvent_trace(psi_value, lv).evalf(30) for lv in (sp.Rational(1, 100), 1, 100)]
        assert all(v > 0 for v in values)
        assert values[0] > values[1] > values[2]
    # and the derivative in z is the squared-resolvent trace: d/dlam m(-lam) = -m'(-lam)
    derivative = sp.diff(mp_resolvent_trace(psi, lam), lam)
    for psi_value, lam_value in [(sp.Rational(1, 2), sp.Rational(1, 3)), (3, 2)]:
        point = {psi: psi_value, lam: lam_value}
        assert abs(sp.N(derivative.subs(point) + mp_resolvent_trace_squared(psi, lam).subs(point), 40)) < 1e-35


def test_mp_moments_are_narayana_polynomials():
    expected = [1, 1 + psi, 1 + 3 * psi + psi**2, 1 + 6 * psi + 6 * psi**2 + psi**3]
    derived = mp_moments(psi, 4)
    for got, want in zip(derived, expected):
        assert sp.simplify(got - want) == 0
    with mpmath.workdps(30):
        for psi_value in (sp.Rational(1, 2), sp.Integer(3)):
            numeric = _mp_density_integral(psi_value, lambda x: x**3)
            assert abs(numeric - mpmath.mpf(str(sp.N(derived[2].subs(psi, psi_value), 30)))) < 1e-20
