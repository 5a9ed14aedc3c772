"""Training from scratch: derived risks against SPEC.md, against each other, and against simulation.

Expected formulas are typed from SPEC.md section 2 ("Training from scratch",
"Regularised scratch baseline"); the registry derives them independently.

The Monte Carlo test is a two-sided t-test of the mean simulated risk against
``scratch.risk_finite`` with the sample standard error (Student t, ``draws - 1`` degrees
of freedom), family-wise false-alarm rate 1e-3, Bonferroni-corrected over its points.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize

from featfate_sym import registry
from featfate_sym.registry import get
from featfate_sym.symbols import d, gamma, lam, n, psi, sigma
from checks import bonferroni_t, branch

KEYS = [
    "scratch.risk_finite",
    "scratch.risk",
    "scratch.risk_mp",
    "scratch.risk_ridge",
    "scratch.risk_optimal_ridge",
]


# -- SPEC expectations, typed ------------------------------------------------------------
def spec_risk_finite_under():
    return (1 - n / d) + sigma**2 * n / (d - n - 1)


def spec_risk_finite_over():
    return sigma**2 * d / (n - d - 1)


def spec_risk(g, s):
    g, s = sp.sympify(g), sp.sympify(s)
    if g < 1:
        return (1 - g) + g * s**2 / (1 - g)
    if g > 1:
        return s**2 / (g - 1)
    return sp.oo if s > 0 else sp.Integer(0)


def spec_ridge(g, s, la):
    p = 1 / sp.sympify(g)
    kappa = ((la + p - 1) + sp.sqrt((la + p - 1) ** 2 + 4 * la)) / 2
    return (kappa**2 + s**2 * p) / ((1 + kappa) ** 2 - p)


GAMMAS = [sp.Rational(1, 10), sp.Rational(1, 2), sp.Rational(9, 10), sp.Integer(1),
          sp.Rational(11, 10), sp.Integer(2), sp.Integer(10)]
SIGMAS = [sp.Integer(0), sp.Rational(1, 3), sp.Integer(2)]
LAMS = [sp.Rational(1, 100), sp.Rational(1, 2), sp.Integer(3)]


# -- registry hygiene for this family ----------------------------------------------------
def test_keys_registered_with_family_and_status():
    for key in KEYS:
        result = get(key)
        assert result.family == "scratch"
        assert result.reference
    assert get("scratch.risk_finite").status.exact
    assert get("scratch.risk").status.source is registry.Source.PAPER
    assert get("scratch.risk_ridge").status.exact


@pytest.mark.parametrize("key", KEYS)
def test_every_scratch_result_states_special_cases(key):
    # the cases themselves are checked for every result by test_registry.test_special_case
    assert get(key).special_cases


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="gamma"):
        get("scratch.risk").evaluate(gamma=0.0, sigma=1.0)
    with pytest.raises(ValueError, match="sigma"):
        get("scratch.risk_ridge").evaluate(gamma=0.5, sigma=-1.0, lam=0.1)
    with pytest.raises(ValueError, match="n"):
        get("scratch.risk_finite").evaluate(n=2.5, d=10, sigma=1.0)


# -- finite size ---------------------------------------------------------------------------
def test_risk_finite_matches_spec_symbolically():
    expr = get("scratch.risk_finite").expr
    assert sp.simplify(branch(expr, n < d - 1) - spec_risk_finite_under()) == 0
    assert sp.simplify(branch(expr, n > d + 1) - spec_risk_finite_over()) == 0


def test_risk_finite_at_the_threshold():
    expr = get("scratch.risk_finite").expr
    for n_value in (19, 20, 21):
        assert expr.subs({n: n_value, d: 20, sigma: 1}) == sp.oo
        assert expr.subs({n: n_value, d: 20, sigma: 0}) == 1 - sp.Rational(min(n_value, 20), 20)
    assert expr.subs({n: 5, d: 20, sigma: 1}) == sp.Rational(3, 4) + sp.Rational(5, 14)
    assert expr.subs({n: 40, d: 20, sigma: 1}) == sp.Rational(20, 19)


def test_risk_finite_numpy_broadcasts_over_the_threshold():
    out = get("scratch.risk_finite").evaluate(n=np.array([5.0, 19, 20, 21, 40]), d=20, sigma=1.0)
    np.testing.assert_allclose(out[[0, 4]], [0.75 + 5 / 14, 20 / 19], rtol=1e-14)
    assert np.all(np.isinf(out[1:4]))


def _simulate_min_norm_risk(rng, n_samples, dim, noise_std, draws):
    beta = np.zeros(dim)
    beta[0] = 1.0  # unit teacher; the law of the risk does not depend on its direction
    risks = np.empty(draws)
    for i in range(draws):
        x = rng.standard_normal((n_samples, dim))
        y = x @ beta + noise_std * rng.standard_normal(n_samples)
        risks[i] = np.sum((np.linalg.pinv(x) @ y - beta) ** 2)
    return risks


def test_risk_finite_monte_carlo(seed):
    """Min-norm interpolation X^+ y at d = 20, sigma = 0.5; n kept >= 10 away from d.

    |n - d| > 3 makes the risk's variance finite (inverse-Wishart second moments), so the
    standard error is meaningful.  t-test, family-wise level 1e-3 over the 4 points.
    """
    rng = np.random.default_rng(seed)
    result = get("scratch.risk_finite")
    points = (5, 10, 30, 40)
    draws = 2000
    z_crit = bonferroni_t(draws - 1, len(points))
    for n_samples in points:
        risks = _simulate_min_norm_risk(rng, n_samples, 20, 0.5, draws)
        expected = result.evaluate(n=n_samples, d=20, sigma=0.5)
        se = risks.std(ddof=1) / np.sqrt(draws)
        assert abs(risks.mean() - expected) <= z_crit * se, (n_samples, risks.mean(), expected, se)


@pytest.mark.slow
def test_risk_finite_monte_carlo_full(seed):
    """Full-size version: d = 50, six sample sizes on both sides of d, sigma = 1, 5000 draws.

    Same t-test, family-wise level 1e-3 Bonferroni-corrected over the 6 points; every point
    keeps |n - d| >= 10 so the risk has finite variance.
    """
    rng = np.random.default_rng(seed)
    result = get("scratch.risk_finite")
    points = (10, 25, 40, 60, 75, 100)
    draws = 5000
    z_crit = bonferroni_t(draws - 1, len(points))
    for n_samples in points:
        risks = _simulate_min_norm_risk(rng, n_samples, 50, 1.0, draws)
        expected = result.evaluate(n=n_samples, d=50, sigma=1.0)
        se = risks.std(ddof=1) / np.sqrt(draws)
        assert abs(risks.mean() - expected) <= z_crit * se, (n_samples, risks.mean(), expected, se)


# -- proportional limit ----------------------------------------------------------------------
def test_risk_matches_spec_symbolically():
    expr = get("scratch.risk").expr
    assert sp.simplify(branch(expr, gamma < 1) - ((1 - gamma) + gamma * sigma**2 / (1 - gamma))) == 0
    assert sp.simplify(branch(expr, gamma > 1) - sigma**2 / (gamma - 1)) == 0


@pytest.mark.parametrize("key", ["scratch.risk", "scratch.risk_mp"])
def test_risk_matches_spec_at_rational_points(key):
    expr = get(key).expr
    for g in GAMMAS:
        for s in SIGMAS:
            assert expr.subs({gamma: g, sigma: s}) == spec_risk(g, s), (g, s)


def test_marchenko_pastur_route_agrees_with_wishart_route():
    wishart, mp = get("scratch.risk").expr, get("scratch.risk_mp").expr
    for condition in (gamma < 1, gamma > 1):
        assert sp.simplify(branch(wishart, condition) - branch(mp, condition)) == 0
    bias = get("scratch.risk_mp").extras["bias"]
    assert sp.simplify(branch(bias, gamma < 1) - (1 - gamma)) == 0
    assert bias.subs(gamma, 3) == 0


def test_risk_limits_in_gamma():
    expr = get("scratch.risk").expr
    assert sp.limit(branch(expr, gamma > 1), gamma, sp.oo) == 0
    assert sp.limit(branch(expr, gamma < 1), gamma, 0, "+") == 1
    assert sp.limit(branch(expr, gamma < 1).subs(sigma, 1), gamma, 1, "-") == sp.oo
    assert sp.limit(branch(expr, gamma > 1).subs(sigma, 1), gamma, 1, "+") == sp.oo


def test_ridge_limits_in_lam():
    resolvent = get("scratch.risk_ridge").extras["risk_resolvent"]
    # infinite regularisation: beta_hat -> 0, risk -> |beta_t|^2 = 1
    assert sp.limit(resolvent.subs({gamma: 2, sigma: 1}), lam, sp.oo) == 1
    assert get("scratch.risk_ridge").evaluate(gamma=2.0, sigma=1.0, lam=1e12) == pytest.approx(1, rel=1e-9)


def test_depth_free_limit_is_limit_of_finite_risk_numerically():
    """The finite expectation at n = gamma d approaches the limit as d grows (O(1/d))."""
    finite, limit = get("scratch.risk_finite"), get("scratch.risk")
    for g in (0.5, 2.0):
        target = limit.evaluate(gamma=g, sigma=1.0)
        errors = [abs(finite.evaluate(n=g * dim, d=dim, sigma=1.0) - target) for dim in (100, 1000, 10000)]
        assert errors[0] > errors[1] > errors[2]
        assert errors[2] < 10 * target / 10000


# -- ridge -------------------------------------------------------------------------------------
def test_ridge_matches_spec_kappa_formula():
    expr = get("scratch.risk_ridge").expr
    for g in GAMMAS:
        for s in SIGMAS:
            for la in LAMS:
                derived = expr.subs({gamma: g, sigma: s, lam: la})
                expected = spec_ridge(g, s, la)
                assert sp.N(derived - expected, 60) == 0 or abs(sp.N(derived - expected, 60)) < 1e-50, (g, s, la)


def test_ridge_resolvent_and_kappa_forms_agree():
    result = get("scratch.risk_ridge")
    resolvent = result.extras["risk_resolvent"]
    for g in GAMMAS:
        for la in LAMS:
            point = {gamma: g, sigma: sp.Rational(1, 2), lam: la}
            assert abs(sp.N(result.expr.subs(point) - resolvent.subs(point), 60)) < 1e-50


def test_ridge_at_zero_is_min_norm_interpolation():
    ridge, scratch = get("scratch.risk_ridge"), get("scratch.risk")
    for g in GAMMAS:
        for s in SIGMAS:
            assert ridge.expr.subs({gamma: g, sigma: s, lam: 0}) == scratch.expr.subs({gamma: g, sigma: s})
    # and the lam -> 0+ limit of the positive branch is continuous with it (float check)
    for g in (0.3, 0.9, 1.1, 4.0):
        near = ridge.evaluate(gamma=g, sigma=0.5, lam=1e-10)
        assert near == pytest.approx(scratch.evaluate(gamma=g, sigma=0.5), rel=1e-6)


def test_optimal_ridge_strength_is_sigma_squared_psi():
    result = get("scratch.risk_optimal_ridge")
    assert sp.simplify(result.extras["lam_star"] - (sigma**2 * psi).subs(psi, 1 / gamma)) == 0
    # dR/dlam = (lam - lam*) * positive factor
    factor = result.extras["slope_factor"]
    for point in ({psi: sp.Rational(1, 3), lam: sp.Rational(1, 5)}, {psi: 3, lam: 7}):
        assert factor.subs(point) > 0


def test_optimal_ridge_matches_spec_at_rational_points():
    expr = get("scratch.risk_optimal_ridge").expr
    for g in GAMMAS:
        for s in SIGMAS[1:]:
            expected = spec_ridge(g, s, s**2 / g)
            assert abs(sp.N(expr.subs({gamma: g, sigma: s}) - expected, 60)) < 1e-50, (g, s)


@pytest.mark.parametrize("g,s", [(0.2, 0.5), (0.9, 1.0), (1.0, 0.3), (1.5, 2.0), (20.0, 1.0)])
def test_optimal_ridge_against_numerical_minimisation(g, s):
    ridge = get("scratch.risk_ridge")
    found = optimize.minimize_scalar(
        lambda log_lam: ridge.evaluate(gamma=g, sigma=s, lam=float(np.exp(log_lam))),
        bounds=(-20.0, 10.0), method="bounded", options={"xatol": 1e-10},
    )
    optimum = get("scratch.risk_optimal_ridge")
    assert np.exp(found.x) == pytest.approx(s**2 / g, rel=1e-4)
    assert found.fun == pytest.approx(optimum.evaluate(gamma=g, sigma=s), rel=1e-10)


def test_optimal_ridge_has_no_peak_at_interpolation_threshold():
    expr = get("scratch.risk_optimal_ridge").expr
    for s in (sp.Rational(1, 10), sp.Integer(1), sp.Integer(3)):
        at_one = expr.subs({gamma: 1, sigma: s})
        assert at_one.is_finite
        left = sp.limit(expr.subs(sigma, s), gamma, 1, "-")
        right = sp.limit(expr.subs(sigma, s), gamma, 1, "+")
        assert sp.simplify(left - at_one) == 0 and sp.simplify(right - at_one) == 0
        # below the min-norm risk on both sides
        for g in (sp.Rational(9, 10), sp.Rational(11, 10)):
            assert sp.N(expr.subs({gamma: g, sigma: s})) < sp.N(spec_risk(g, s))


# -- float64 against mpmath at 50 digits --------------------------------------------------------
_NEAR_ONE = [1 - 1e-6, 1 - 1e-3, 1.0, 1 + 1e-3, 1 + 1e-6]
_GAMMA_GRID = [1e-3, 1e-2, 0.1, 0.5, 2.0, 10.0, 1e2, 1e3] + _NEAR_ONE
_SIGMA_GRID = [0.0, 1e-3, 0.1, 1.0, 10.0]
_LAM_GRID = [1e-8, 1e-4, 1e-2, 1.0, 1e2, 1e4]


def _compare(result, points, rtol_of):
    for point in points:
        fast = result.numpy(*point)
        with mpmath.workdps(50):
            exact = result.mpmath(*[mpmath.mpf(float(v)) for v in point])  # the exact double
            if mpmath.isinf(exact):
                assert np.isinf(fast), point
                continue
            exact = float(exact)
        if exact == 0:
            assert fast == 0, point
        else:
            assert abs(fast - exact) <= rtol_of(point) * abs(exact), (point, fast, exact)


def test_numpy_against_mpmath_risk():
    points = [(g, s) for g in _GAMMA_GRID for s in _SIGMA_GRID]
    _compare(get("scratch.risk"), points, lambda p: 1e-14)
    _compare(get("scratch.risk_mp"), points, lambda p: 1e-14)


def test_numpy_against_mpmath_finite():
    points = [(nn, dd, s) for dd in (3, 20, 1000, 10**6) for nn in (1, dd // 2, dd - 1, dd, dd + 1, 2 * dd, 10 * dd)
              for s in (0.0, 1.0) if nn >= 1]
    _compare(get("scratch.risk_finite"), points, lambda p: 1e-14)


def test_numpy_against_mpmath_ridge():
    """Tolerance: 1e-13, plus the rounding of B = gamma lam - gamma + 1 (absolute ~2 eps
    when gamma ~ 1) relative to sqrt(Q) ~ 2 gamma sqrt(lam): 4 eps / sqrt(lam)."""
    points = [(g, s, la) for g in _GAMMA_GRID for s in _SIGMA_GRID for la in _LAM_GRID]
    eps = np.finfo(float).eps
    _compare(get("scratch.risk_ridge"), points, lambda p: 1e-13 + 4 * eps / np.sqrt(p[2]))
    _compare(get("scratch.risk_optimal_ridge"), [(g, s) for g in _GAMMA_GRID for s in _SIGMA_GRID],
             lambda p: 1e-13 + 4 * eps / max(p[1], 1e-300))


# -- properties ---------------------------------------------------------------------------------
log_gamma = st.floats(min_value=-3, max_value=3)
noise = st.floats(min_value=0, max_value=10)
log_lam = st.floats(min_value=-6, max_value=3)


@given(log_gamma, noise, log_lam)
def test_ridge_risk_nonnegative_and_at_least_optimum(lg, s, ll):
    g, la = 10.0**lg, 10.0**ll
    ridge = get("scratch.risk_ridge").evaluate(gamma=g, sigma=s, lam=la)
    best = get("scratch.risk_optimal_ridge").evaluate(gamma=g, sigma=s)
    assert ridge >= 0 and best >= 0
    assert best <= ridge * (1 + 1e-10) + 1e-300


@given(log_gamma, noise)
def test_optimal_ridge_beats_min_norm(lg, s):
    g = 10.0**lg
    best = get("scratch.risk_optimal_ridge").evaluate(gamma=g, sigma=s)
    plain = get("scratch.risk").evaluate(gamma=g, sigma=s)
    assert 0 <= best <= plain * (1 + 1e-10)


@given(log_gamma, noise, noise, log_lam)
def test_risks_non_decreasing_in_noise(lg, s1, s2, ll):
    g, la = 10.0**lg, 10.0**ll
    lo, hi = sorted((s1, s2))
    for key, extra in (("scratch.risk", {}), ("scratch.risk_ridge", {"lam": la}),
                       ("scratch.risk_optimal_ridge", {})):
        result = get(key)
        a = result.evaluate(gamma=g, sigma=lo, **extra)
        b = result.evaluate(gamma=g, sigma=hi, **extra)
        assert a >= 0
        assert a <= b * (1 + 1e-12), (key, g, lo, hi)
