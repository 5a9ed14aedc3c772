"""Classification of Gaussian mixtures with the square loss (issue 13, first slice).

Symbolic checks of the derived errors against expectations worked out by hand (typed
here, independently of the derivation), and Monte Carlo of the estimators
(:mod:`featfate_sym.simulation.classification`): exact test errors of the weights,
averaged over independent target sets, compared with the theory by Student-t tests at
family-wise rate ``FAMILY_ALPHA`` (Bonferroni over the points of each test).

Finite size.  The proportional-limit errors are off by ``O(1/d)`` at finite ``d``; the
scratch and fine-tuning checks remove that term by extrapolating in ``1/d`` from ``d = 100``
and ``d = 400`` (``(4 mean_400 - mean_100)/3``, residue ``O(1/d^2)``, below 1e-4 here), with
the SE and Welch degrees of freedom of :func:`featfate_sym.stats.linear_combination`.  The
linear-transfer error at finite ``n`` is exact, so it is checked at ``n = 5, 20`` with no
allowance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import featfate_sym as ff
from featfate_sym import stats
from featfate_sym.simulation import classification as sim
from featfate_sym.symbols import gamma, m_mean as m, n, theta
from checks import bonferroni_t, branch

SC = ff.get("clf.scratch.error")
LT = ff.get("clf.lt.error")
LT_N = ff.get("clf.lt.error_finite")
T_LT = ff.get("clf.lt.transferability")
BOUNDARY = ff.get("clf.lt.boundary")
FT = ff.get("clf.ft.error")
T_FT = ff.get("clf.ft.transferability")

KEYS = ["clf.scratch.error", "clf.lt.error", "clf.lt.error_finite", "clf.lt.transferability",
        "clf.lt.boundary", "clf.ft.error", "clf.ft.transferability"]


def Q(x):
    """Upper normal tail, typed independently of the derivation."""
    return sp.erfc(x / sp.sqrt(2)) / 2


# hand derivation (see the issue): margins rho = w.mu_t/|w| of min-norm least squares
MARGIN_UNDER = m**2 * sp.sqrt(gamma * (1 - gamma) / (1 + gamma * m**2))
MARGIN_OVER = m**2 * sp.sqrt((gamma - 1) / (1 + gamma * m**2))
# fine-tuning end point X^+ y + (I - P) beta_s, beta_s = mu_s/(1 + m^2)
FT_OVERLAP = m**2 * (gamma * (1 + m**2) + (1 - gamma) * sp.cos(theta)) / ((1 + m**2) * (1 + gamma * m**2))
FT_NORM2 = (gamma * (1 + m**2) ** 2 + m**2 * (1 - gamma) ** 2 * (1 + gamma * m**2 * sp.sin(theta) ** 2)) / (
    (1 - gamma) * (1 + m**2) ** 2 * (1 + gamma * m**2))

#: exact rational points at which a symbolic difference is decided
POINTS_UNDER = [{gamma: sp.Rational(1, 3), m: sp.Rational(3, 2), theta: sp.Rational(2, 3)},
                {gamma: sp.Rational(3, 4), m: 2, theta: sp.Rational(5, 2)}]
POINTS_OVER = [{gamma: 3, m: sp.Rational(1, 2), theta: 1}, {gamma: sp.Rational(7, 5), m: 4, theta: 2}]


def _zero(expr, points) -> bool:
    if sp.simplify(expr) == 0:
        return True
    return all(abs(sp.N(expr.subs(p), 40)) < 1e-30 for p in points)


# -- symbolic -------------------------------------------------------------------------------
def test_scratch_error_matches_the_hand_derivation():
    assert _zero(branch(SC.expr, gamma < 1) - Q(MARGIN_UNDER), POINTS_UNDER)
    assert _zero(branch(SC.expr, gamma > 1) - Q(MARGIN_OVER), POINTS_OVER)
    assert branch(SC.expr, sp.true) == sp.Rational(1, 2)
    assert _zero(SC.extras["w_par_under"] - gamma * m / (1 + gamma * m**2), POINTS_UNDER)
    assert _zero(SC.extras["w_par_over"] - m / (1 + m**2), POINTS_OVER)


def test_scratch_double_descent_peak_and_limits():
    under, over = SC.extras["margin_under"], SC.extras["margin_over"]
    # the margin vanishes at the threshold from both sides: a peak of chance level
    assert sp.limit(under, gamma, 1, "-") == 0
    assert sp.limit(over, gamma, 1, "+") == 0
    assert sp.limit(under, gamma, 0, "+") == 0
    # many samples: the Bayes margin m (error Phi(-m)), the linear-transfer error at theta = 0
    assert sp.simplify(sp.limit(over, gamma, sp.oo) - m) == 0
    for mv in (0.5, 1.0, 2.0):
        assert SC.evaluate(gamma=1.0, m=mv) == 0.5
        near = [SC.evaluate(gamma=g, m=mv) for g in (1 - 1e-9, 1 + 1e-9)]
        assert max(abs(v - 0.5) for v in near) < 1e-3
        assert SC.evaluate(gamma=1e9, m=mv) == pytest.approx(LT.evaluate(theta=0.0, m=mv), abs=1e-4)
        # the peak: the error falls on both sides of gamma = 1
        assert SC.evaluate(gamma=0.5, m=mv) < 0.5 and SC.evaluate(gamma=2.0, m=mv) < 0.5


def test_pretrained_vector_is_the_source_discriminant():
    """The derivation's first step, against the simulation's linear solve."""
    for mv, th in ((1.0, 0.4), (2.5, 2.0)):
        mu_s, _ = sim.class_means(7, mv, th)
        beta = sim.pretrained_vector(mu_s)
        np.testing.assert_allclose(beta, mu_s / (1 + mv**2), rtol=1e-12, atol=1e-15)


def test_linear_transfer_limit_and_symmetry():
    assert sp.simplify(LT.expr - Q(m * sp.Abs(sp.cos(theta)))) == 0
    for th in (0.3, 1.2, 1.9, 3.0):
        for mv in (0.5, 2.0):
            # even under theta -> pi - theta at every n, and the finite-n form tends to the limit
            for nv in (1, 5, 40):
                assert LT_N.evaluate(theta=th, m=mv, n=nv) == pytest.approx(
                    LT_N.evaluate(theta=math.pi - th, m=mv, n=nv), rel=1e-12)
            assert LT_N.evaluate(theta=th, m=mv, n=10**7) == pytest.approx(LT.evaluate(theta=th, m=mv), rel=1e-9)
            # more samples never hurt the readout's sign
            vals = [LT_N.evaluate(theta=th, m=mv, n=nv) for nv in (1, 2, 5, 20, 100)]
            assert all(a >= b - 1e-15 for a, b in zip(vals, vals[1:]))
    # the finite form, typed from the issue: P(a>0) Phi(-m c) + P(a<0) Phi(m c), P(a<0) = Phi(-sqrt(n) m c)
    c = sp.cos(theta)
    typed = (1 - Q(sp.sqrt(n) * m * c)) * Q(m * c) + Q(sp.sqrt(n) * m * c) * (1 - Q(m * c))
    for pt in ({theta: sp.Rational(1, 2), m: 1, n: 5}, {theta: sp.Rational(5, 2), m: 2, n: 20}):
        assert abs(sp.N((LT_N.expr - typed).subs(pt), 40)) < 1e-30


def test_transferability_is_scratch_minus_transfer():
    for cond in (gamma < 1, gamma > 1, sp.true):
        diff = branch(T_LT.expr, cond) - (branch(SC.expr, cond) - LT.expr)
        assert sp.simplify(diff) == 0
    # T_ft likewise below the threshold, and 0 from it on
    diff = branch(T_FT.expr, gamma < 1) - (branch(SC.expr, gamma < 1) - branch(FT.expr, gamma < 1))
    assert sp.simplify(diff) == 0
    assert T_FT.expr.subs(gamma, 2) == 0 and T_FT.expr.subs(gamma, 1) == 0


def test_boundary_is_where_transferability_vanishes():
    rng = np.random.default_rng(0)
    for _ in range(30):
        g = float(np.exp(rng.uniform(-3, 3)))
        mv = float(np.exp(rng.uniform(-1.5, 1.5)))
        th = BOUNDARY.evaluate(gamma=g, m=mv)
        assert 0 <= th <= math.pi / 2
        assert abs(T_LT.evaluate(gamma=g, theta=th, m=mv)) < 1e-12
        assert abs(T_LT.evaluate(gamma=g, theta=math.pi - th, m=mv)) < 1e-12
        # transfer helps inside (theta < theta*), hurts outside
        if th > 1e-3:
            assert T_LT.evaluate(gamma=g, theta=0.5 * th, m=mv) > 0
        if th < math.pi / 2 - 1e-3:
            assert T_LT.evaluate(gamma=g, theta=0.5 * (th + math.pi / 2), m=mv) < 0
    # the boundary in gamma at fixed theta (extras): T vanishes at each root
    subs = {theta: sp.Rational(6, 5), m: 3}
    for name, cond in (("gamma_minus", gamma < 1), ("gamma_plus", gamma < 1), ("gamma_above", gamma > 1)):
        root = T_LT.extras[name].subs(subs)
        value = branch(T_LT.expr, cond).subs(subs).subs(gamma, root)
        assert abs(sp.N(value, 40)) < 1e-30, name
    # orthogonal means: negative transfer for every gamma != 1, zero at the peak
    for g in (0.1, 0.5, 0.99, 1.01, 2.0, 50.0):
        assert T_LT.evaluate(gamma=g, theta=math.pi / 2, m=1.0) < 0
    assert T_LT.evaluate(gamma=1.0, theta=math.pi / 2, m=1.0) == 0


def test_fine_tuning_matches_the_hand_derivation():
    assert _zero(FT.extras["overlap_under"] - FT_OVERLAP, POINTS_UNDER)
    assert _zero(FT.extras["norm2_under"] - FT_NORM2, POINTS_UNDER)
    assert _zero(branch(FT.expr, gamma < 1) - Q(FT_OVERLAP / sp.sqrt(FT_NORM2)), POINTS_UNDER)
    assert _zero(FT.extras["alpha"] - (1 - gamma) / (1 + gamma * m**2), POINTS_UNDER)
    margin = FT.extras["margin_under"]
    # no data: the pretrained classifier beta_s, margin m cos(theta)
    assert sp.simplify(sp.limit(margin, gamma, 0, "+") - m * sp.cos(theta)) == 0
    # the threshold: |X^+ y| diverges, chance
    assert sp.limit(margin.subs({theta: 1, m: 2}), gamma, 1, "-") == 0
    assert FT.evaluate(gamma=3.0, theta=1.0, m=2.0) == SC.evaluate(gamma=3.0, m=2.0)


# -- Monte Carlo ----------------------------------------------------------------------------
#: (m, gamma, theta) of the scratch / fine-tuning checks
MC_POINTS = [(1.0, 0.5, math.pi / 4), (1.0, 0.5, 2.0), (1.0, 2.0, math.pi / 4),
             (2.0, 0.5, math.pi / 4), (2.0, 0.5, 2.0), (2.0, 2.0, math.pi / 4)]
DIMS = (100, 400)
REPLICATES = {100: 80, 400: 50}


def _extrapolated(means: dict[int, stats.MeanSE]) -> stats.MeanSE:
    """``(d2 mean_2 - d1 mean_1)/(d2 - d1)``: the linear extrapolation in ``1/d`` to ``d = oo``."""
    d1, d2 = DIMS
    return stats.linear_combination([(d2 / (d2 - d1), means[d2]), (-d1 / (d2 - d1), means[d1])])


def test_scratch_and_fine_tuning_agree_with_monte_carlo(seed, one_thread):
    rows = []  # (name, m, gamma, theta, theory, MeanSE of the extrapolation)
    for index, (mv, g, th) in enumerate(MC_POINTS):
        means = {"scratch": {}, "fine_tuning": {}}
        for dim in DIMS:
            errors = sim.simulate_errors(int(round(g * dim)), dim, th, mv, REPLICATES[dim],
                                         seed=1000 * seed + 10 * index + DIMS.index(dim))
            if g > 1:  # P = I: fine-tuning is scratch on every replicate
                np.testing.assert_allclose(errors["fine_tuning"], errors["scratch"], rtol=1e-9)
            for name in means:
                means[name][dim] = stats.mean_se(errors[name])
        rows.append(("scratch", mv, g, th, SC.evaluate(gamma=g, m=mv), _extrapolated(means["scratch"])))
        if g < 1:
            rows.append(("fine_tuning", mv, g, th, FT.evaluate(gamma=g, theta=th, m=mv),
                         _extrapolated(means["fine_tuning"])))
    comparisons = len(rows)
    for name, mv, g, th, theory, est in rows:
        critical = bonferroni_t(est.df, comparisons)
        assert abs(est.mean - theory) <= critical * est.se, (
            name, mv, g, th, theory, est, (est.mean - theory) / est.se, critical)


#: (m, theta) of the exact finite-n linear-transfer check; both signs of the readout occur
LT_POINTS = [(1.0, 1.2), (2.0, 1.4), (1.0, 2.0)]
LT_SAMPLES = (5, 20)
LT_REPLICATES = 20_000


def test_linear_transfer_exact_at_small_n(seed, one_thread):
    comparisons = len(LT_POINTS) * len(LT_SAMPLES)
    for i, (mv, th) in enumerate(LT_POINTS):
        for j, nv in enumerate(LT_SAMPLES):
            errors = sim.simulate_linear_transfer_errors(nv, 10, th, mv, LT_REPLICATES,
                                                         seed=1000 * seed + 10 * i + j)
            est = stats.mean_se(errors)
            theory = LT_N.evaluate(theta=th, m=mv, n=nv)
            critical = bonferroni_t(est.df, comparisons)
            assert abs(est.mean - theory) <= critical * est.se, (mv, th, nv, theory, est)
            # the limit form is visibly wrong at n = 5 (the check has power)
            if nv == 5:
                assert abs(est.mean - LT.evaluate(theta=th, m=mv)) > critical * est.se


def test_linear_transfer_simulators_agree(seed, one_thread):
    """The vectorised and the per-replicate linear transfer are the same estimator."""
    a = sim.simulate_errors(20, 30, 1.1, 1.5, 400, seed=seed, methods=("linear_transfer",))["linear_transfer"]
    b = sim.simulate_linear_transfer_errors(20, 30, 1.1, 1.5, 400, seed=seed + 1)
    diff = stats.welch(stats.mean_se(a), stats.mean_se(b))
    assert abs(diff.mean) <= bonferroni_t(diff.df, 1) * diff.se


# -- bad input and evaluation paths -------------------------------------------------------------
def test_bad_input_is_named():
    with pytest.raises(ValueError, match="gamma"):
        SC.evaluate(gamma=-1, m=1)
    with pytest.raises(ValueError, match="parameter m must be"):
        SC.evaluate(gamma=0.5, m=0)
    with pytest.raises(ValueError, match="parameter gamma must be"):
        SC.numpy(-1.0, 1.0)
    with pytest.raises(ValueError, match="parameter theta must be"):
        LT.numpy(4.0, 1.0)
    with pytest.raises(ValueError, match="parameter n must be"):
        LT_N.numpy(1.0, 1.0, 2.5)
    with pytest.raises(ValueError, match="n_samples"):
        sim.simulate_errors(0, 10, 0.5, 1.0, 3, seed=0)
    with pytest.raises(ValueError, match="angle"):
        sim.class_means(10, 1.0, 4.0)
    with pytest.raises(ValueError, match="method"):
        sim.simulate_errors(5, 10, 0.5, 1.0, 3, seed=0, methods=("ridge",))
    with pytest.raises(ValueError, match="seed"):
        sim.sample_mixture(5, np.ones(3), seed=-1)


@pytest.mark.parametrize("key", KEYS)
def test_float64_matches_mpmath_near_the_threshold(key):
    import mpmath

    result = ff.get(key)
    rng = np.random.default_rng(3)
    for g in (1e-6, 0.3, 1 - 1e-7, 1.0, 1 + 1e-7, 4.0, 1e6):
        point = {"gamma": g, "theta": float(rng.uniform(0, math.pi)), "m": float(np.exp(rng.uniform(-2, 2))),
                 "n": float(rng.integers(1, 50))}
        args = [point[name] for name in result.param_names]
        got = float(result.numpy(*args))
        with mpmath.workdps(50):
            ref = float(result.mpmath(*[mpmath.mpf(a) for a in args]))
        assert got == pytest.approx(ref, rel=1e-10, abs=1e-14), (key, point)


def test_array_evaluation():
    """The array path (erfc elementwise) equals the scalar path point by point."""
    gammas = np.array([0.5, 2.0])
    values = SC.numpy(gammas, 1.0)
    assert values.shape == (2,)
    np.testing.assert_allclose(values, [float(SC.numpy(g, 1.0)) for g in gammas], rtol=1e-15)


def test_deep_fine_tuning_follows_the_balanced_flow_scale_not_c_equal_1(seed, one_thread):
    """A two-layer network pretrained on the source mixture and fine-tuned on ``n = 20``
    target samples (d = 100) ends where ``clf.ft.error_exact`` says, not at the paper's
    ``c = 1`` point: at ``gamma = 0.2, theta = 2, m = 2`` the two differ by 0.031 in error.
    Paired test: per replicate, the deep network's error minus that of the ``c = 1`` end point
    ``X^+ y + (I - P) beta_pre`` on the same data, against ``exact - c1`` of the theory, and
    the same paired mean against 0 (the ``c = 1`` claim), Student-t at family rate 1e-3
    (Bonferroni over the two).  No finite-size allowance: the O(1/d) bias of the paired
    difference measured 0.45 SE at d = 100 with 24 replicates (seed 5) and 0.7 SE / 2 SE at
    d = 60 (seeds 1, 2), so at d = 100 it is well inside the critical value (4.6), while
    the c = 1 hypothesis sits about 20 SE away."""
    g, th, mv, depth, dim = 0.2, 2.0, 2.0, 2, 100
    out = sim.deep_fine_tuning_errors(int(round(g * dim)), dim, th, mv, depth, 16, seed=seed + 5)
    assert out["converged"].all()
    exact = ff.get("clf.ft.error_exact").evaluate(gamma=g, theta=th, m=mv, L=depth)
    c1 = FT.evaluate(gamma=g, theta=th, m=mv)
    diff = stats.paired_difference(out["deep"], out["c1"])
    critical = bonferroni_t(diff.df, 2)
    assert abs(diff.mean - (exact - c1)) <= critical * diff.se, (diff, exact - c1)
    assert diff.mean > critical * diff.se, diff  # c = 1 is rejected
    with pytest.raises(ValueError, match="L must be"):
        sim.deep_fine_tuning_errors(20, dim, th, mv, 1, 2, seed=0)


@pytest.mark.parametrize("depth", [2, 3, 8])
def test_exact_depth_fine_tuning_error_matches_the_root_equation(depth):
    """Independent evaluation: solve c^(2L) - a c^(2L-2) - b = 0 by brentq from the typed
    limits a, b of the hand derivation (alpha = (1-gamma)/(1+gamma m^2), |beta_s| =
    m/(1+m^2), |X^+ y|^2 = gamma/((1-gamma)(1+gamma m^2)), w_par = gamma m/(1 + gamma m^2)),
    then the margin m (w_par + c^(L-1)|beta_s| cos(theta) alpha)/(|beta_s| c^L)."""
    from scipy.optimize import brentq

    g, th, mv = 0.35, 1.9, 1.5
    alpha = (1 - g) / (1 + g * mv**2)
    nb = mv / (1 + mv**2)
    a = math.cos(th) ** 2 * alpha + math.sin(th) ** 2 * (1 - g)
    b = g / ((1 - g) * (1 + g * mv**2)) / nb**2
    c = brentq(lambda c: c ** (2 * depth) - a * c ** (2 * depth - 2) - b, math.sqrt(a), 10.0, xtol=1e-15)
    w_par = g * mv / (1 + g * mv**2)
    margin = mv * (w_par + c ** (depth - 1) * nb * math.cos(th) * alpha) / (nb * c**depth)
    got = ff.get("clf.ft.error_exact").evaluate(gamma=g, theta=th, m=mv, L=depth)
    assert got == pytest.approx(float(Q(margin)), rel=1e-10)


# -- label flips ---------------------------------------------------------------------------------
FLIP = ff.get("clf.scratch.error_flip")


def _flip_margin_by_hand(g: float, mv: float, p: float) -> float:
    """Min-norm least squares on labels flipped with probability p, typed independently:
    with c = 1 - 2p the label moments are E t^2 = 1, E t s = c m, E s^2 = 1 + m^2, so
    q(w) = 1 - 2 c m w + (1 + m^2) w^2; below gamma = 1, w_par = gamma c m/(1 + gamma m^2)
    and |w|^2 = w_par^2 + gamma/(1 - gamma) q(w_par); above, w_par = c m/(1 + m^2) and
    |w|^2 = w_par^2 + q(w_par)/(gamma - 1)."""
    c = 1 - 2 * p
    if g < 1:
        w = g * c * mv / (1 + g * mv**2)
        norm2 = w**2 + g / (1 - g) * (1 - 2 * c * mv * w + (1 + mv**2) * w**2)
    else:
        w = c * mv / (1 + mv**2)
        norm2 = w**2 + (1 - 2 * c * mv * w + (1 + mv**2) * w**2) / (g - 1)
    return mv * w / math.sqrt(norm2)


@pytest.mark.parametrize("g, mv, p", [(0.3, 1.0, 0.2), (0.8, 2.0, 0.45), (1.7, 1.5, 0.1), (4.0, 0.5, 0.3)])
def test_flipped_scratch_error_matches_the_hand_derivation(g, mv, p):
    want = float(Q(sp.Float(_flip_margin_by_hand(g, mv, p), 30)))
    assert FLIP.evaluate(gamma=g, m=mv, p_flip=p) == pytest.approx(want, rel=1e-12)
    # flips cost accuracy on both sides of the peak, none at p = 0
    assert FLIP.evaluate(gamma=g, m=mv, p_flip=p) > SC.evaluate(gamma=g, m=mv)
    assert FLIP.evaluate(gamma=g, m=mv, p_flip=0.0) == pytest.approx(SC.evaluate(gamma=g, m=mv), rel=1e-14)
    assert FLIP.evaluate(gamma=1.0, m=mv, p_flip=p) == 0.5


#: (m, gamma, p) of the flipped-label Monte Carlo check
FLIP_POINTS = [(1.0, 0.5, 0.2), (2.0, 2.0, 0.1), (2.0, 0.5, 0.3)]


def test_flipped_scratch_error_agrees_with_monte_carlo(seed, one_thread):
    # d = 100 and 400, extrapolated in 1/d as in test_scratch_and_fine_tuning_agree_with_monte_carlo
    rows = []
    for index, (mv, g, p) in enumerate(FLIP_POINTS):
        means = {}
        for dim in DIMS:
            errors = sim.simulate_errors(int(round(g * dim)), dim, 0.0, mv, REPLICATES[dim], methods=("scratch",),
                                         seed=1000 * seed + 100 + 10 * index + DIMS.index(dim), flip=p)
            means[dim] = stats.mean_se(errors["scratch"])
        rows.append((mv, g, p, FLIP.evaluate(gamma=g, m=mv, p_flip=p), _extrapolated(means)))
    for mv, g, p, theory, est in rows:
        critical = bonferroni_t(est.df, len(rows))
        assert abs(est.mean - theory) <= critical * est.se, (mv, g, p, theory, est, critical)
        # power: the clean-label error is rejected
        assert abs(est.mean - SC.evaluate(gamma=g, m=mv)) > critical * est.se, (mv, g, p, est)


def test_label_flips_in_the_sampler(seed):
    mu = sim.class_means(5, 1.0, 0.0)[1]
    x0, y0 = sim.sample_mixture(4000, mu, seed)
    x1, y1 = sim.sample_mixture(4000, mu, seed, flip=0.0)
    np.testing.assert_array_equal(y0, y1)  # no flip, the same stream
    x2, y2 = sim.sample_mixture(4000, mu, seed, flip=0.25)
    np.testing.assert_array_equal(x0, x2)  # the inputs keep the clean class means
    flipped = np.mean(y2 != y0)
    # binomial(4000, 1/4): SE 0.0068; 5 SE is a false-alarm rate below 1e-6
    assert abs(flipped - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 4000)
    for bad in (-0.1, 0.5, 0.7, math.nan, True):
        with pytest.raises(ValueError, match="flip"):
            sim.sample_mixture(10, mu, seed, flip=bad)
    with pytest.raises(ValueError, match="parameter p_flip must be"):
        FLIP.evaluate(gamma=0.5, m=1.0, p_flip=0.5)


def test_logistic_readout_takes_the_sign_of_the_square_loss_readout(seed):
    """clf.lt.error_finite_logistic: the logistic readout on one feature has the sign of
    S = sum y_i u_i, as the square-loss readout; checked on 300 small data sets by direct
    minimisation (scipy), divergent (all y_i u_i > 0 or all < 0) cases included."""
    from scipy import optimize

    rng = np.random.default_rng(seed)
    mu_s, mu_t = sim.class_means(6, 0.8, 1.1)
    f = mu_s / np.linalg.norm(mu_s)
    diverging = 0
    for _ in range(300):
        x, y = sim.sample_mixture(4, mu_t, rng)
        v = y * (x @ f)
        if np.all(v > 0) or np.all(v < 0):
            diverging += 1  # no minimiser: the loss decreases without end along sign(S)
            assert np.sign(v.sum()) == np.sign(v[0])
            continue
        res = optimize.minimize_scalar(lambda a: np.logaddexp(0.0, -a * v).mean(), bracket=(-1.0, 1.0))
        assert np.sign(res.x) == np.sign(v.sum()), (res.x, v)
        a_sq = sim.linear_transfer_classifier(x, y, f) @ f
        assert np.sign(a_sq) == np.sign(res.x)
    assert 0 < diverging < 300
    assert ff.get("clf.lt.error_finite_logistic").evaluate(theta=1.1, m=0.8, n=4) == LT_N.evaluate(theta=1.1, m=0.8, n=4)
