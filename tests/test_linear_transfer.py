"""Linear transfer: derived results against SPEC.md, the paper's check values, 50-digit
mpmath, properties, and Monte Carlo.

Expected formulas are typed from SPEC.md section 2 ("Linear transfer"); the registry
derives them independently (Gaussian integration, limits, ``sp.solve``).

Statistical tests are two-sided t-tests of a Monte Carlo mean against the derived value,
with the sample standard error (Student t, ``draws - 1`` degrees of freedom); the
family-wise false-alarm rate is 1e-3, Bonferroni-corrected over the points of each test.
"""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from featfate_sym import registry
from featfate_sym.registry import get
from featfate_sym.symbols import gamma, k, lam, n, sigma, theta
from checks import FAMILY_ALPHA, bonferroni_t, branch

KEYS = ["lt.risk_finite", "lt.risk", "lt.ridge_slope", "lt.transferability", "lt.boundary"]
DEG = math.pi / 180


# -- SPEC expectations, typed -------------------------------------------------------------
C, S = sp.cos(theta), sp.sin(theta)
K_LAM = (1 + 2 * lam) / (1 + lam) ** 2


def spec_risk_finite():
    return S**2 + (sigma**2 + S**2) / (n - 2)


def spec_risk_finite_k():
    return S**2 + (sigma**2 + S**2) * k / (n - k - 1)


def spec_risk():
    return 1 - (1 + 2 * lam) / (1 + lam) ** 2 * C**2


def spec_slope():
    return 2 * lam * C**2 / (1 + lam) ** 3


def spec_scratch_under(g=gamma):
    return (1 - g) + g * sigma**2 / (1 - g)


def spec_scratch_over(g=gamma):
    return sigma**2 / (g - 1)


def spec_boundaries(c, s, la):
    """(gamma_minus, gamma_plus, gamma_above) from SPEC, floats; NaN pair if no interval."""
    kl = (1 + 2 * la) / (1 + la) ** 2
    b = 1 + kl * c**2 - s**2
    disc = b**2 - 4 * kl * c**2
    if disc < 0 or b <= 0:
        lo = hi = math.nan
    else:
        lo, hi = (b - math.sqrt(disc)) / 2, (b + math.sqrt(disc)) / 2
    above = math.inf if kl * c**2 == 1 else 1 + s**2 / (1 - kl * c**2)
    return lo, hi, above


def t_lt(g, th, s, la):
    """Float64 T_lt, arguments broadcast first (the compiled Piecewise selects per element)."""
    args = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in (g, th, s, la)])
    return get("lt.transferability").numpy(*args)


# -- registry --------------------------------------------------------------------------------
def test_keys_registered_with_family_status_and_parameters():
    for key in KEYS:
        assert get(key).family == "linear_transfer"
    assert get("lt.risk_finite").status.exact
    for key in KEYS[1:]:
        assert get(key).status.source is registry.Source.PAPER
    assert get("lt.risk_finite").param_names == ("n", "theta", "sigma")
    assert get("lt.risk").param_names == ("theta", "lam")
    assert get("lt.transferability").param_names == ("gamma", "theta", "sigma", "lam")
    assert get("lt.boundary").param_names == ("theta", "sigma", "lam")
    assert tuple(get("lt.boundary").outputs) == ("gamma_minus", "gamma_plus", "gamma_above_one")


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="parameter n must be"):
        get("lt.risk_finite").evaluate(n=2, theta=0.5, sigma=0.1)
    with pytest.raises(ValueError, match="parameter n must be"):
        get("lt.risk_finite").evaluate(n=7.5, theta=0.5, sigma=0.1)
    with pytest.raises(ValueError, match="parameter theta must be"):
        get("lt.risk").evaluate(theta=4.0, lam=0.0)
    with pytest.raises(ValueError, match="parameter lam must be"):
        get("lt.boundary").evaluate(theta=0.5, sigma=0.2, lam=-0.1)


# -- finite n --------------------------------------------------------------------------------
def test_risk_finite_matches_spec_symbolically():
    assert sp.simplify(get("lt.risk_finite").expr - spec_risk_finite()) == 0


def test_risk_finite_exact_rational_values():
    expr = get("lt.risk_finite").expr
    # theta = pi/6: sin^2 = 1/4; n = 10, sigma = 1/2: 1/4 + (1/4 + 1/4)/8
    assert expr.subs({theta: sp.pi / 6, n: 10, sigma: sp.Rational(1, 2)}) == sp.Rational(1, 4) + sp.Rational(1, 16)
    assert expr.subs({theta: 0, n: 3, sigma: 1}) == 1


def test_k_feature_generalisation_matches_spec_and_the_one_feature_route():
    risk_k = get("lt.risk_finite").extras["risk_k_features"]
    assert sp.simplify(branch(risk_k, n > k + 1) - spec_risk_finite_k()) == 0
    # k = 1 through the inverse-Wishart lemma equals the integrated chi-square route
    one = branch(risk_k, n > k + 1).subs(k, 1)
    assert sp.simplify(one - get("lt.risk_finite").expr) == 0


def _simulate_linear_transfer(rng, n_samples, dim, angle, noise_std, draws, n_features=1, chunk=2000):
    """Risks |B w - beta_t|^2 of least-squares readouts on frozen features F = X B.

    B holds beta_s = e_1 and (for k > 1) the directions e_3..e_{k+1}, orthogonal to both
    teachers; beta_t = cos e_1 + sin e_2.  Gaussian design X in R^{n x d}.
    """
    beta_t = np.zeros(dim)
    beta_t[0], beta_t[1] = math.cos(angle), math.sin(angle)
    cols = [0] + list(range(2, n_features + 1))
    basis = np.zeros((dim, n_features))
    basis[cols, np.arange(n_features)] = 1.0
    risks = []
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        x = rng.standard_normal((m, n_samples, dim))
        y = x @ beta_t + noise_std * rng.standard_normal((m, n_samples))
        f = x @ basis
        w = np.linalg.solve(np.swapaxes(f, 1, 2) @ f, np.einsum("mnk,mn->mk", f, y)[..., None])[..., 0]
        risks.append(np.sum((w @ basis.T - beta_t) ** 2, axis=1))
    return np.concatenate(risks)


def test_risk_finite_monte_carlo(seed):
    """One frozen feature at d = 20, theta = 50 deg, sigma = 0.3, n in {5, 10, 40}.

    n >= 5 makes E[1/chi^2_n^2] finite, so the risk has a finite variance and the standard
    error is meaningful.  t-test, family-wise level 1e-3 over the 3 points.
    """
    rng = np.random.default_rng(seed)
    result = get("lt.risk_finite")
    points, draws, angle, noise = (5, 10, 40), 10000, 50 * DEG, 0.3
    z_crit = bonferroni_t(draws - 1, len(points))
    for n_samples in points:
        risks = _simulate_linear_transfer(rng, n_samples, 20, angle, noise, draws)
        expected = result.evaluate(n=n_samples, theta=angle, sigma=noise)
        se = risks.std(ddof=1) / math.sqrt(draws)
        assert abs(risks.mean() - expected) <= z_crit * se, (n_samples, risks.mean(), expected, se)
    # power: the large-n limit sin^2 is rejected at n = 5 (the 1/(n - 2) term is visible)
    risks = _simulate_linear_transfer(rng, 5, 20, angle, noise, draws)
    assert abs(risks.mean() - math.sin(angle) ** 2) > z_crit * risks.std(ddof=1) / math.sqrt(draws)


@pytest.mark.slow
def test_risk_finite_monte_carlo_full(seed):
    """Full-size version: d = 50, n in {5, 8, 20, 80, 200}, two angles, sigma = 0.5,
    40000 draws; t-test, family-wise level 1e-3 Bonferroni-corrected over the 10 points."""
    rng = np.random.default_rng(seed)
    result = get("lt.risk_finite")
    points = [(n_samples, degrees) for n_samples in (5, 8, 20, 80, 200) for degrees in (20, 70)]
    draws = 40000
    z_crit = bonferroni_t(draws - 1, len(points))
    for n_samples, degrees in points:
        risks = _simulate_linear_transfer(rng, n_samples, 50, degrees * DEG, 0.5, draws, chunk=500)
        expected = result.evaluate(n=n_samples, theta=degrees * DEG, sigma=0.5)
        se = risks.std(ddof=1) / math.sqrt(draws)
        assert abs(risks.mean() - expected) <= z_crit * se, (n_samples, degrees, risks.mean(), expected, se)


def test_k_feature_lemma_monte_carlo(seed):
    """Three frozen features (cited inverse-Wishart lemma) at n = 12, d = 20: t-test at
    level 1e-3 (n - k = 9 > 4 so the variance is finite)."""
    rng = np.random.default_rng(seed)
    risk_k = branch(get("lt.risk_finite").extras["risk_k_features"], n > k + 1)
    angle, noise, draws = 40 * DEG, 0.5, 10000
    expected = float(risk_k.subs({n: 12, k: 3, theta: sp.Float(angle, 30), sigma: sp.Rational(1, 2)}))
    risks = _simulate_linear_transfer(rng, 12, 20, angle, noise, draws, n_features=3)
    se = risks.std(ddof=1) / math.sqrt(draws)
    assert abs(risks.mean() - expected) <= bonferroni_t(draws - 1, 1, FAMILY_ALPHA) * se


# -- large n, ridge -------------------------------------------------------------------------
def test_risk_matches_spec_symbolically():
    result = get("lt.risk")
    assert sp.simplify(result.expr - spec_risk()) == 0
    assert sp.simplify(result.extras["coefficient"] - C / (1 + lam)) == 0
    # independent of gamma, sigma and depth: only theta and lam appear
    assert result.expr.free_symbols == {theta, lam}


def test_risk_rational_points():
    expr = get("lt.risk").expr
    for th, c2 in ((sp.pi / 3, sp.Rational(1, 4)), (sp.pi / 4, sp.Rational(1, 2)), (sp.pi / 6, sp.Rational(3, 4))):
        for la in (sp.Integer(0), sp.Rational(1, 10), sp.Integer(2)):
            expected = 1 - (1 + 2 * la) / (1 + la) ** 2 * c2
            assert sp.nsimplify(expr.subs({theta: th, lam: la})) == expected


def test_ridge_risk_monte_carlo_large_n(seed):
    """lt.risk is a large-n limit: at n = 4000 the ridge readout's mean risk agrees within
    the t-test (level 1e-3 over 2 points) plus the O(1/n) finite-size bias, which the
    finite-n formula at lam = 0 bounds by (sin^2 + sigma^2)/(n - 2)."""
    rng = np.random.default_rng(seed)
    n_samples, draws, angle, noise = 4000, 2000, 30 * DEG, 0.5
    z_crit = bonferroni_t(draws - 1, 2, FAMILY_ALPHA)
    for ridge in (0.0, 0.5):
        z = rng.standard_normal((draws, n_samples))
        y = math.cos(angle) * z + math.sin(angle) * rng.standard_normal((draws, n_samples)) \
            + noise * rng.standard_normal((draws, n_samples))
        w = (np.sum(z * y, axis=1) / n_samples) / (np.sum(z * z, axis=1) / n_samples + ridge)
        risks = (w - math.cos(angle)) ** 2 + math.sin(angle) ** 2
        expected = get("lt.risk").evaluate(theta=angle, lam=ridge)
        allowance = 3 * (math.sin(angle) ** 2 + noise**2) / (n_samples - 2)
        se = risks.std(ddof=1) / math.sqrt(draws)
        assert abs(risks.mean() - expected) <= z_crit * se + allowance, (ridge, risks.mean(), expected)


def test_ridge_slope_matches_spec_and_is_proved_nonnegative():
    result = get("lt.ridge_slope")
    assert sp.simplify(result.expr - spec_slope()) == 0
    assert result.expr.is_nonnegative is True
    # the slope is the derivative of the risk: finite difference at an exact point
    r = get("lt.risk").expr
    h = sp.Rational(1, 10**12)
    at = {theta: sp.pi / 5, lam: sp.Rational(3, 10)}
    fd = (r.subs({**at, lam: at[lam] + h}) - r.subs({**at, lam: at[lam] - h})) / (2 * h)
    assert abs(sp.N(fd - result.expr.subs(at), 30)) < 1e-20


# -- transferability --------------------------------------------------------------------------
def test_transferability_matches_spec_symbolically():
    expr = get("lt.transferability").expr
    assert sp.simplify(branch(expr, gamma < 1) - (spec_scratch_under() - spec_risk())) == 0
    assert sp.simplify(branch(expr, gamma > 1) - (spec_scratch_over() - spec_risk())) == 0
    assert expr.subs({gamma: 1, sigma: sp.Rational(1, 5), theta: 1, lam: 0}) == sp.oo
    at_one = expr.subs({gamma: 1, sigma: 0, theta: sp.pi / 3, lam: 0})
    assert at_one == -sp.Rational(3, 4)


def test_transferability_paper_values():
    """SPEC check values, theta = pi/4, sigma = 0.2, lam = 0 (three printed decimals)."""
    got = t_lt(np.array([0.25, 0.5, 0.75, 2.0]), math.pi / 4, 0.2, 0.0)
    np.testing.assert_allclose(got, [0.263, 0.040, -0.130, -0.460], atol=5e-4)


def test_transferability_gamma_to_infinity():
    above = branch(get("lt.transferability").expr, gamma > 1)
    assert sp.simplify(sp.limit(above, gamma, sp.oo) + spec_risk()) == 0


def test_transferability_sigma_to_zero_and_lam_to_zero():
    below = branch(get("lt.transferability").expr, gamma < 1)
    assert sp.simplify(sp.limit(below, sigma, 0, "+") - ((1 - gamma) - spec_risk())) == 0
    assert sp.simplify(sp.limit(below, lam, 0, "+") - (spec_scratch_under() - S**2)) == 0


def test_anomalous_positive_band_for_orthogonal_tasks():
    """At theta = pi/2, T_lt > 0 exactly on (1 - s^2, 1) U (1, 1 + s^2) (SPEC)."""
    s = 0.3
    g = np.array([1 - s**2 - 1e-3, 1 - s**2 + 1e-3, 0.999, 1.001, 1 + s**2 - 1e-3, 1 + s**2 + 1e-3])
    assert np.array_equal(t_lt(g, math.pi / 2, s, 0.0) > 0, [False, True, True, True, True, False])


# -- phase boundaries --------------------------------------------------------------------------
def test_boundary_quadratic_matches_spec():
    quadratic = get("lt.boundary").extras["quadratic"]
    spec = gamma**2 - (1 + K_LAM * C**2 - sigma**2) * gamma + K_LAM * C**2
    assert sp.simplify(quadratic - spec) == 0


@pytest.mark.parametrize(
    "th,s,la",
    [(sp.pi / 4, sp.Rational(1, 5), sp.Integer(0)), (sp.pi / 3, sp.Rational(1, 5), sp.Integer(0)),
     (sp.pi / 2, sp.Rational(1, 5), sp.Integer(0)),
     (sp.pi / 3, sp.Rational(1, 10), sp.Rational(1, 2)), (2 * sp.pi / 5, sp.Rational(3, 10), sp.Rational(1, 10)),
     (3 * sp.pi / 4, sp.Rational(1, 5), sp.Rational(1, 3))],
)
def test_boundary_matches_spec_at_exact_points(th, s, la):
    """Roots of SPEC's quadratic, typed, against the derived tuple at 50 digits."""
    got = get("lt.boundary").expr.subs({theta: th, sigma: s, lam: la})
    kl = (1 + 2 * la) / (1 + la) ** 2 * sp.cos(th) ** 2
    b = 1 + kl - s**2
    disc = b**2 - 4 * kl
    expected = ((b - sp.sqrt(disc)) / 2, (b + sp.sqrt(disc)) / 2, 1 + s**2 / (1 - kl))
    for g_, e_ in zip(got, expected):
        assert abs(sp.N(g_ - e_, 50)) < sp.Float(10) ** -45, (g_, e_)


def test_boundary_paper_check_values():
    """SPEC, sigma = 0.2, lam = 0: printed to three decimals (two for 1.04)."""
    b = get("lt.boundary")
    cases = [(45, (0.549, 0.911, 1.080), 5e-4), (60, (0.264, 0.946, 1.053), 5e-4), (90, (0.0, 0.960, 1.04), 5e-3)]
    for degrees, expected, tol in cases:
        np.testing.assert_allclose(b.evaluate(theta=degrees * DEG, sigma=0.2, lam=0.0), expected, atol=tol)


def test_boundary_is_ordered_not_swapped():
    lo, hi, above = get("lt.boundary").evaluate(theta=math.pi / 4, sigma=0.2, lam=0.0)
    assert 0 < lo < hi < 1 < above
    # negative transfer inside (lo, hi), positive just outside it
    inside = t_lt((lo + hi) / 2, math.pi / 4, 0.2, 0.0)
    outside = t_lt(np.array([lo / 2, (hi + 1) / 2]), math.pi / 4, 0.2, 0.0)
    assert inside < 0 and np.all(outside > 0)


def test_boundary_sign_changes_on_both_sides():
    b = get("lt.boundary")
    for degrees in (30, 45, 60, 75, 89):
        for s, la in ((0.05, 0.0), (0.2, 0.0), (0.1, 0.3)):
            th = degrees * DEG
            lo, hi, above = b.evaluate(theta=th, sigma=s, lam=la)
            for root, sign_left in ((lo, +1), (hi, -1), (above, +1)):
                if not np.isfinite(root) or root <= 1e-6:
                    continue
                h = 1e-6 * root
                left, right = t_lt(np.array([root - h, root + h]), th, s, la)
                assert np.sign(left) == sign_left and np.sign(right) == -sign_left, (degrees, s, la, root)


def test_no_interval_is_nan_and_no_upper_boundary_is_inf():
    b = get("lt.boundary")
    # 1 - cos(20 deg) = 0.06 < sigma = 0.2: no negative interval below gamma = 1
    lo, hi, above = b.evaluate(theta=20 * DEG, sigma=0.2, lam=0.0)
    assert math.isnan(lo) and math.isnan(hi) and 1 < above < math.inf
    gamma_grid = np.linspace(0.01, 0.99, 99)
    assert np.all(t_lt(gamma_grid, 20 * DEG, 0.2, 0.0) > 0)
    # same task without ridge: R_lt = 0, never negative above 1
    assert b.evaluate(theta=0.0, sigma=0.2, lam=0.0)[2] == math.inf
    # very noisy: the quadratic's roots are negative, reported as no interval
    assert np.all(np.isnan(b.evaluate(theta=math.pi / 2, sigma=1.5, lam=0.0)[:2]))
    mp_lo, mp_hi, mp_above = b.evaluate_mp(30, theta="0.3490658503988659", sigma="0.2", lam="0")
    assert mpmath.isnan(mp_lo) and mpmath.isnan(mp_hi) and mp_above > 1


def test_interval_criterion_at_zero_ridge():
    """SPEC: at lam = 0 the interval exists iff 1 - cos(theta) > sigma (theta <= pi/2)."""
    extras = get("lt.boundary").extras
    for th in (sp.pi / 7, sp.pi / 4, sp.pi / 3, sp.pi / 2):
        assert sp.simplify(extras["sigma_critical_lam0"].subs(theta, th) - (1 - sp.cos(th))) == 0
    d0 = extras["discriminant_lam0"]
    spec_d0 = (1 + C**2 - sigma**2) ** 2 - 4 * C**2
    assert sp.simplify(sp.expand(d0 - spec_d0).rewrite(sp.cos)) == 0
    b = get("lt.boundary")
    for degrees in range(5, 90, 5):
        for s in (0.02, 0.1, 0.2, 0.4):
            margin = (1 - math.cos(degrees * DEG)) - s
            if abs(margin) < 1e-3:
                continue
            exists = not math.isnan(b.evaluate(theta=degrees * DEG, sigma=s, lam=0.0)[0])
            assert exists == (margin > 0), (degrees, s)


# -- float64 vs 50-digit mpmath near gamma = 1 and the boundaries --------------------------------
def _boundary_points(rng, count):
    b = get("lt.boundary")
    points = []
    for _ in range(count):
        th, s, la = rng.uniform(0, math.pi / 2), 10 ** rng.uniform(-3, 0), rng.choice([0.0, 10 ** rng.uniform(-3, 1)])
        roots = [r for r in b.evaluate(theta=th, sigma=s, lam=la) if np.isfinite(r) and r > 0]
        anchors = roots + [1.0]
        anchor = anchors[rng.integers(len(anchors))]
        g = anchor * (1 + rng.choice([-1, 1]) * 10 ** rng.uniform(-10, -1))
        points.append((g, th, s, la))
    return points


def test_transferability_numpy_matches_mpmath(seed):
    """Tolerance scaled to the size of the terms R_sc and R_lt (T cancels them near the
    boundaries): 1e-13 (|R_sc| + |R_lt| + 1)."""
    rng = np.random.default_rng(seed)
    r = get("lt.transferability")
    scratch = get("scratch.risk")
    risk_lt = get("lt.risk")
    for g, th, s, la in _boundary_points(rng, 60):
        got = float(t_lt(g, th, s, la))
        with mpmath.workdps(50):
            ref = r.mpmath(*[mpmath.mpf(v) for v in (g, th, s, la)])
        scale = abs(float(scratch.numpy(g, s))) + abs(float(risk_lt.numpy(th, la))) + 1
        assert abs(got - float(ref)) <= 1e-13 * scale, (g, th, s, la, got, ref)


def test_boundary_numpy_matches_mpmath(seed):
    rng = np.random.default_rng(seed)
    b = get("lt.boundary")
    for _ in range(60):
        th, s, la = rng.uniform(0, math.pi), 10 ** rng.uniform(-4, 0.5), rng.choice([0.0, 10 ** rng.uniform(-4, 1)])
        got = b.numpy(th, s, la)
        with mpmath.workdps(50):
            ref = b.mpmath(mpmath.mpf(th), mpmath.mpf(s), mpmath.mpf(la))
        for g_, w_ in zip(got, ref):
            if mpmath.isnan(w_):
                assert np.isnan(g_)
            else:
                assert abs(g_ - float(w_)) <= 1e-12 * (1 + abs(float(w_))), (th, s, la, g_, w_)


# -- properties ------------------------------------------------------------------------------------
angles = st.floats(0, math.pi)
ridges = st.floats(0, 20)
noises = st.floats(0, 3)
ratios = st.floats(1e-3, 20).filter(lambda g: abs(g - 1) > 1e-9)


@given(angles, ridges)
def test_risk_is_between_zero_and_one(th, la):
    value = get("lt.risk").evaluate(theta=th, lam=la)
    assert -1e-15 <= value <= 1 + 1e-15


@given(ratios, angles, noises, ridges, st.floats(1e-3, 5))
def test_transferability_non_increasing_in_ridge(g, th, s, la, step):
    t0, t1 = t_lt(np.array([g, g]), th, s, np.array([la, la + step]))
    assert t1 <= t0 + 1e-12 * (1 + abs(t0))


@given(st.floats(10 * DEG, 89 * DEG), st.floats(0.01, 0.3), st.floats(0, 1))
def test_transferability_is_continuous_across_the_boundaries(th, s, la):
    """|T(b +- h)| <= L h: T is Lipschitz near each boundary (finite slope), with L from
    the derivative of T bounded on the branch (|dT/dgamma| <= 1 + s^2/(1-g)^2 + s^2/(g-1)^2)."""
    for root in get("lt.boundary").evaluate(theta=th, sigma=s, lam=la):
        if not np.isfinite(root) or root <= 1e-4 or abs(root - 1) < 1e-4:
            continue
        h = 1e-7 * root
        values = t_lt(np.array([root - h, root, root + h]), th, s, la)
        slope_bound = 1 + s**2 / (1 - root - h) ** 2 if root < 1 else s**2 / (root - h - 1) ** 2
        assert np.all(np.abs(values) <= 2 * slope_bound * h + 1e-12), (root, values)


@given(angles, noises, ridges)
def test_boundaries_are_ordered(th, s, la):
    lo, hi, above = get("lt.boundary").evaluate(theta=th, sigma=s, lam=la)
    assert above >= 1
    if not math.isnan(lo):
        assert -1e-12 <= lo <= hi <= 1 + 1e-12
    assert math.isnan(lo) == math.isnan(hi)
    spec = spec_boundaries(math.cos(th), s, la)
    if math.isnan(spec[0]) != math.isnan(lo):
        # only where the SPEC discriminant is zero to rounding (the interval's edge)
        kl = (1 + 2 * la) / (1 + la) ** 2 * math.cos(th) ** 2
        assert abs((1 + kl - s**2) ** 2 - 4 * kl) < 1e-12
    elif not math.isnan(lo):
        np.testing.assert_allclose([lo, hi], spec[:2], atol=1e-7)
    kl = (1 + 2 * la) / (1 + la) ** 2 * math.cos(th) ** 2
    if 1 - kl > 1e-4:  # away from R_lt = 0, where SPEC's 1 - k c^2 cancels in float64
        assert above == pytest.approx(spec[2], rel=1e-9)
