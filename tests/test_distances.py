"""Data-centric distances: KL against SPEC.md and Monte Carlo, W2 against the Bures formula
evaluated directly at 50 digits in the full input space.

The Monte Carlo tests are two-sided t-tests of a mean against the derived value with the
sample standard error (Student t, ``draws - 1`` degrees of freedom), family-wise
false-alarm rate 1e-3, Bonferroni-corrected over their points.
"""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from featfate_sym.registry import get
from featfate_sym.symbols import lam, sigma, theta
from checks import bonferroni_t


# -- KL --------------------------------------------------------------------------------------
def test_kl_registered():
    r = get("metrics.kl")
    assert r.family == "distances" and r.status.exact
    assert r.param_names == ("theta", "sigma")


def test_kl_matches_spec_symbolically():
    r = get("metrics.kl")
    assert sp.simplify(r.expr - (1 - sp.cos(theta)) / sigma**2) == 0
    # general form |f - g|^2 / (2 sigma^2): the conditional KL in delta = f - g
    delta = sp.Symbol("delta", real=True)
    sigma_y = sp.Symbol("sigma_y", positive=True)
    assert sp.simplify(r.extras["conditional_kl"] - delta**2 / (2 * sigma_y**2)) == 0
    assert sp.simplify(r.extras["teacher_distance_squared"] - (2 - 2 * sp.cos(theta))) == 0


def test_kl_rejects_zero_noise():
    with pytest.raises(ValueError, match="parameter sigma must be"):
        get("metrics.kl").evaluate(theta=0.3, sigma=0.0)


def test_kl_monte_carlo(seed):
    """Mean of log p_s(y|x) - log p_t(y|x) over (x, y) drawn from the source task, d = 5.

    Antithetic noise: each x is used with eps and -eps and the pair's mean log-likelihood
    ratio is one draw (unbiased; it removes the noise-times-signal term from the variance).
    """
    rng = np.random.default_rng(seed)
    dim, draws = 5, 100_000
    points = [(30.0, 0.5), (90.0, 1.0), (150.0, 2.0)]
    z_crit = bonferroni_t(draws - 1, len(points))
    for degrees, noise in points:
        angle = math.radians(degrees)
        beta_s = np.zeros(dim)
        beta_s[0] = 1.0
        beta_t = np.zeros(dim)
        beta_t[0], beta_t[1] = math.cos(angle), math.sin(angle)
        x = rng.standard_normal((draws, dim))
        f, g = x @ beta_s, x @ beta_t
        eps = noise * rng.standard_normal(draws)
        llr = sum(((f + e - g) ** 2 - e**2) / (2 * noise**2) for e in (eps, -eps)) / 2
        expected = get("metrics.kl").evaluate(theta=angle, sigma=noise)
        se = llr.std(ddof=1) / math.sqrt(draws)
        assert abs(llr.mean() - expected) <= z_crit * se, (degrees, noise, llr.mean(), expected)
        # power: a factor-2 error in the formula would be rejected
        assert abs(llr.mean() - expected / 2) > z_crit * se


def test_kl_does_not_order_tasks_by_transferability():
    """Opposite teachers are the farthest tasks in KL, yet linear transfer between them is
    perfect (R_lt = 0 at lam = 0) and beats orthogonal tasks, which are closer in KL."""
    kl = get("metrics.kl")
    s = 0.2
    assert kl.evaluate(theta=math.pi, sigma=s) > kl.evaluate(theta=math.pi / 2, sigma=s)
    t = get("lt.transferability")
    t_opposite = t.evaluate(gamma=0.5, theta=math.pi, sigma=s, lam=0.0)
    t_orthogonal = t.evaluate(gamma=0.5, theta=math.pi / 2, sigma=s, lam=0.0)
    assert t_opposite > 0 > t_orthogonal
    # and KL grows without bound as the noise vanishes while R_lt stays 0
    assert sp.limit(kl.expr.subs(theta, sp.pi), sigma, 0, "+") == sp.oo
    assert get("lt.risk").expr.subs({theta: sp.pi, lam: 0}) == 0


# -- W2 ----------------------------------------------------------------------------------------
def _bures_w2_squared_mp(angle, noise, dim=4):
    """W2^2 between N(0, S_s) and N(0, S_t) on (x, y) in R^{dim + 1}, from the Bures formula
    evaluated with mpmath's matrix square root (no reduction to the plane)."""
    def covariance(beta):
        m = mpmath.eye(dim + 1)
        for i in range(dim):
            m[i, dim] = m[dim, i] = beta[i]
        m[dim, dim] = 1 + noise**2
        return m

    beta_s = [mpmath.mpf(1)] + [mpmath.mpf(0)] * (dim - 1)
    beta_t = [mpmath.cos(angle), mpmath.sin(angle)] + [mpmath.mpf(0)] * (dim - 2)
    s_s, s_t = covariance(beta_s), covariance(beta_t)
    root = mpmath.sqrtm(s_s)
    middle = mpmath.sqrtm(root * s_t * root)
    trace = lambda m: sum(m[i, i] for i in range(dim + 1))  # noqa: E731
    value = trace(s_s) + trace(s_t) - 2 * trace(middle)
    # the square root of a positive definite matrix is real; mpmath may carry a rounding-
    # level imaginary part
    assert abs(mpmath.im(value)) < mpmath.mpf(10) ** -40
    return mpmath.re(value)


def test_w2_registered():
    r = get("metrics.w2")
    assert r.family == "distances" and r.status.exact
    assert r.param_names == ("theta", "sigma")


@pytest.mark.parametrize("degrees,noise", [(10, 0.3), (45, 0.2), (90, 1.0), (135, 0.5), (170, 2.0), (60, 0.05)])
def test_w2_matches_bures_formula_at_50_digits(degrees, noise):
    r = get("metrics.w2")
    with mpmath.workdps(50):
        angle = mpmath.mpf(degrees) * mpmath.pi / 180
        noise_mp = mpmath.mpf(noise)
        ref = _bures_w2_squared_mp(angle, noise_mp)
        got = r.mpmath(angle, noise_mp)
        assert abs(got - ref) < mpmath.mpf(10) ** -40, (got, ref)
    assert abs(r.evaluate(theta=float(angle), sigma=noise) - float(ref)) < 1e-13


def test_w2_limits():
    r = get("metrics.w2")
    assert abs(r.evaluate(theta=0.0, sigma=0.3)) < 1e-14  # the same task
    assert r.evaluate(theta=math.pi, sigma=0.0) == pytest.approx(4.0, abs=1e-14)
    # the eigenvalue cubic of D S_s: -1 is a root at theta = 0 (W2^2 = 4 (1 + lambda_-) = 0),
    # and at theta = pi, sigma = 0 it is ell^2 (ell - 1)
    cubic = r.extras["cubic"]
    ell = next(s for s in cubic.free_symbols if s.name == "ell")
    assert sp.simplify(cubic.subs({theta: 0, ell: -1})) == 0
    assert sp.factor(cubic.subs({theta: sp.pi, sigma: 0})) == ell**2 * (ell - 1)


@given(st.floats(0, math.pi), st.floats(0, 5))
def test_w2_bounded_by_the_shared_input_coupling(angle, noise):
    """Coupling the two tasks on the same x and the same noise costs
    E((beta_s - beta_t) . x)^2 = 2 - 2 cos(theta), an upper bound on W2^2."""
    value = get("metrics.w2").evaluate(theta=angle, sigma=noise)
    assert -1e-14 <= value <= 2 - 2 * math.cos(angle) + 1e-12


def test_w2_float64_matches_mpmath(seed):
    rng = np.random.default_rng(seed)
    r = get("metrics.w2")
    for _ in range(40):
        angle = rng.uniform(0, math.pi) if rng.random() < 0.7 else 10 ** rng.uniform(-6, 0)
        noise = 10 ** rng.uniform(-4, 1)
        got = r.evaluate(theta=angle, sigma=noise)
        with mpmath.workdps(50):
            ref = r.mpmath(mpmath.mpf(angle), mpmath.mpf(noise))
        # absolute accuracy: the cubic's root is found to a few ulps of its O(1) bracket
        assert abs(got - float(ref)) <= 1e-14 * (1 + abs(float(ref))), (angle, noise, got, ref)


@pytest.mark.parametrize("degrees,noise", [(30, 0.4), (100, 1.5)])
def test_w2_is_the_cost_of_an_optimal_map(degrees, noise):
    """Checks the cited Bures lemma itself: the symmetric positive definite map
    T = S_s^(-1/2) (S_s^(1/2) S_t S_s^(1/2))^(1/2) S_s^(-1/2) pushes N(0, S_s) to N(0, S_t)
    (T S_s T = S_t), so it is optimal (Brenier: the gradient of a convex function), and its
    cost E|z - T z|^2 = tr((I - T) S_s (I - T)) must equal the registered W2^2."""
    with mpmath.workdps(50):
        angle = mpmath.mpf(degrees) * mpmath.pi / 180
        noise_mp = mpmath.mpf(noise)
        cov = []
        for beta in ((1, 0), (mpmath.cos(angle), mpmath.sin(angle))):
            m = mpmath.eye(3)
            m[0, 2] = m[2, 0] = beta[0]
            m[1, 2] = m[2, 1] = beta[1]
            m[2, 2] = 1 + noise_mp**2
            cov.append(m)
        s_s, s_t = cov
        root = mpmath.sqrtm(s_s)
        inv_root = mpmath.inverse(root)
        transport = inv_root * mpmath.sqrtm(root * s_t * root) * inv_root
        assert mpmath.mnorm(transport * s_s * transport - s_t, 1) < mpmath.mpf(10) ** -40
        assert mpmath.mnorm(transport - transport.T, 1) < mpmath.mpf(10) ** -40
        assert min(mpmath.re(e) for e in mpmath.eig(transport)[0]) > 0
        residual = mpmath.eye(3) - transport
        cost = sum((residual * s_s * residual.T)[i, i] for i in range(3))
        assert abs(mpmath.re(cost) - get("metrics.w2").mpmath(angle, noise_mp)) < mpmath.mpf(10) ** -40


# -- bounded-Lipschitz (Dudley) lower bound ---------------------------------------------------
def test_bl_lower_bound_registered():
    r = get("metrics.bl_lower")
    assert r.family == "distances" and r.status.exact
    assert r.param_names == ("theta", "sigma", "omega", "phi")
    assert r.derivation.extras["upper_bound"] == 2


def test_bl_lower_bound_is_the_expectation_gap_of_its_test_function_monte_carlo(seed):
    """The test function's expectation under each task, sampled in the full input space
    (d = 6, no reduction to the plane), paired through common x and noise.  Two-sided
    t-test, family-wise false-alarm rate 1e-3 (Bonferroni over the points)."""
    rng = np.random.default_rng(seed)
    dim, draws = 6, 200_000
    points = [(40.0, 0.2, 1.5, 0.8), (90.0, 1.0, 0.7, 0.5), (170.0, 0.5, 2.5, 1.2)]
    z_crit = bonferroni_t(draws - 1, len(points))
    for degrees, noise, freq, angle_phi in points:
        angle = math.radians(degrees)
        beta_s = np.zeros(dim)
        beta_s[0] = 1.0
        beta_t = np.zeros(dim)
        beta_t[0], beta_t[1] = math.cos(angle), math.sin(angle)
        v = (beta_s - beta_t) / np.linalg.norm(beta_s - beta_t)  # the v direction of (u, v, y)
        x = rng.standard_normal((draws, dim))
        eps = noise * rng.standard_normal(draws)

        def f(y):
            return np.cos(freq * (math.cos(angle_phi) * (x @ v) + math.sin(angle_phi) * y)) / (1 + freq)

        gap = f(x @ beta_t + eps) - f(x @ beta_s + eps)
        expected = get("metrics.bl_lower").evaluate(theta=angle, sigma=noise, omega=freq, phi=angle_phi)
        se = gap.std(ddof=1) / math.sqrt(draws)
        assert abs(gap.mean() - expected) <= z_crit * se, (degrees, gap.mean(), expected, se)
        assert expected > 10 * z_crit * se  # power: the gap is resolved, not zero


def test_bl_lower_bound_lies_below_w2_and_2():
    """beta <= W1 <= W2 (every admissible f is 1-Lipschitz) and beta <= 2."""
    from featfate_sym.studies import distances_vs_transfer as dvt

    angles = np.linspace(0.0, math.pi, 13)
    for noise in (0.0, 0.2, 1.0, 3.0):
        bound = dvt.bl_lower_bound(angles, noise)
        w2 = np.sqrt(get("metrics.w2").numpy(angles, noise))
        assert np.all(bound <= np.minimum(w2, 2.0) + 1e-12)
        assert bound[0] == 0.0 and np.all(bound[1:] > 0)
        assert np.all(np.diff(bound) > 0)  # farther teachers, larger bound


def test_bl_lower_bound_maximises_over_test_functions(seed):
    from featfate_sym.studies import distances_vs_transfer as dvt

    rng = np.random.default_rng(seed)
    f = get("metrics.bl_lower").numpy
    for angle, noise in ((0.3, 0.2), (1.2, 1.0), (2.8, 0.0)):
        best = float(dvt.bl_lower_bound(angle, noise))
        omegas, phis = np.exp(rng.uniform(-3, 3, 2000)), rng.uniform(0, math.pi / 2, 2000)
        assert best >= f(angle, noise, omegas, phis).max() - 1e-12
        assert best == pytest.approx(float(f(angle, noise, *_argmax_grid(f, angle, noise))), rel=1e-3)


def _argmax_grid(f, angle, noise):
    omegas, phis = np.meshgrid(np.exp(np.linspace(-3, 3, 601)), np.linspace(0, math.pi / 2, 401))
    values = f(angle, noise, omegas, phis)
    i = np.unravel_index(np.argmax(values), values.shape)
    return omegas[i], phis[i]


def test_bl_lower_bound_rejects_bad_input():
    from featfate_sym.studies import distances_vs_transfer as dvt

    with pytest.raises(ValueError, match="noise_std"):
        dvt.bl_lower_bound(0.3, -0.1)
    with pytest.raises(ValueError, match="theta"):
        dvt.bl_lower_bound(4.0, 0.2)
    with pytest.raises(ValueError, match="phi"):
        get("metrics.bl_lower").evaluate(theta=0.3, sigma=0.2, omega=1.0, phi=2.0)
