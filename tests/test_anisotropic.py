"""Anisotropic inputs (family ``anisotropic``): spectra, deterministic equivalents, Monte Carlo.

Independent expectations: the isotropic results of the registry (``r = 1``); hand-worked
values (``gamma = 1/2, frac = 1/2, r = 3`` gives ``kappa^2/2 - 3/2 = 0``); the defining trace
equation of ``kappa`` evaluated at the closed form; an independent root solver
(``brentq`` in :mod:`featfate_sym.anisotropic_numerics`) against the closed-form root; the
exact finite-size facts ``E R_sc = sigma^2 d/(n - d - 1)`` for ``n > d + 1`` (inverse
Wishart; spectrum-free since ``X = Z Sigma^(1/2)``) and
``E[R_lt | teachers] = R_inf + (R_inf + sigma^2)/(n - 2)`` (one-feature least squares), and
given the design ``(R_lt - R_inf)|X beta_s|^2/(S_ss (R_inf + sigma^2)) ~ chi^2_1`` exactly.

Monte Carlo: excess risks of the estimators themselves
(:mod:`featfate_sym.simulation.anisotropic`), replicate means against theory by two-sided
Student-t tests, Bonferroni over every comparison of a test function, family-wise
false-alarm rate ``FAMILY_ALPHA = 1e-3``, fixed seeds.  Finite size: the proportional-limit
values are off by ``O(1/d)`` (teacher fluctuations ``E[beta_i^2]`` normalisation and the
deterministic equivalent's own error), removed by design: below the threshold the means at
``d = 250`` and ``d = 1000`` are extrapolated linearly in ``1/d`` (``(4 m_1000 - m_250)/3``,
residue ``O(1/d^2)``); above it the exact finite-size expectation is the reference (no
allowance), and the linear-transfer readout is checked at every ``d`` by the exact
chi-square law of its standardised excess (sum over replicates ~ ``chi^2_R``, two-sided).  The spectra are fixed mixtures (their limit
exists as ``d -> oo``; power laws with 50 levels), realised at both dimensions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import sympy as sp

import featfate_sym as ff
from featfate_sym import anisotropic_numerics as N
from featfate_sym import spectra as S
from featfate_sym import stats
from featfate_sym.simulation import anisotropic as sim
from featfate_sym.studies import anisotropic_phase
from featfate_sym.symbols import frac, gamma, kappa, r, sigma, theta, w_r
from featfate_sym.theory import anisotropic as A
from checks import FAMILY_ALPHA, bonferroni_t, branch

KAPPA = ff.get("scratch.kappa_two_level")
SC = ff.get("scratch.risk_two_level")
LT = ff.get("lt.risk_two_level")
T_LT = ff.get("lt.transferability_two_level")
FT = ff.get("ft.risk_two_level")
T_FT = ff.get("ft.transferability_two_level")

#: exact rational points (below the threshold) of the closed-form checks
POINTS_UNDER = [{gamma: sp.Rational(1, 3), frac: sp.Rational(1, 4), w_r: sp.Rational(2, 3), theta: sp.Rational(7, 5),
                 sigma: sp.Rational(1, 2)},
                {gamma: sp.Rational(9, 10), frac: sp.Rational(3, 5), w_r: sp.Rational(1, 7), theta: sp.Rational(1, 3),
                 sigma: 2}]


# -- (a) r = 1 is the isotropic theory, symbolically ---------------------------------------------
#: kappa at r = 1, proved below: both forms of the positive root reduce to (1 - gamma)/gamma
KAPPA_ISO = (1 - gamma) / gamma


def _kappa_form(result, condition):
    """The result's branch below the threshold with kappa as a symbol (its numerical form)."""
    return branch(result.derivation.numeric.expr, condition)


def _closed_equals_kappa_form(result, condition):
    """The registered closed form equals the kappa form with the closed-form root, exactly at
    rational points (40 digits): the substitution the derivation made."""
    closed = branch(result.expr, condition)
    root = branch(KAPPA.expr, sp.true)
    form = _kappa_form(result, condition)
    for point in POINTS_UNDER:
        pt = {**point, r: sp.Rational(7, 2)}
        k = sp.N(root.subs(pt), 50)
        assert abs(sp.N(closed.subs(pt), 45) - sp.N(form.subs(pt).subs(kappa, k), 45)) < 1e-35


def test_kappa_is_isotropic_at_r_1_and_solves_its_equation():
    root = branch(KAPPA.expr, sp.true)
    for value, _ in root.args:  # both forms of the positive root
        assert sp.simplify(sp.radsimp(value.subs(r, 1)) - KAPPA_ISO) == 0
    # the defining equation gamma = frac r/(r + kappa) + (1 - frac)/(1 + kappa), typed here
    for value, _ in root.args:
        equation = frac * r / (r + value) + (1 - frac) / (1 + value) - gamma
        for point in ({gamma: sp.Rational(1, 3), frac: sp.Rational(1, 4), r: 7},
                      {gamma: sp.Rational(4, 5), frac: sp.Rational(2, 3), r: sp.Rational(1, 9)}):
            assert abs(sp.N(equation.subs(point), 50)) < 1e-45
            assert sp.N(value.subs(point), 30) > 0


def test_scratch_is_isotropic_at_r_1():
    iso = ff.get("scratch.risk").expr
    form = _kappa_form(SC, gamma < 1).subs(r, 1).subs(kappa, KAPPA_ISO)
    assert sp.simplify(form - branch(iso, gamma < 1)) == 0
    assert sp.simplify(branch(SC.expr, gamma > 1) - branch(iso, gamma > 1)) == 0
    _closed_equals_kappa_form(SC, gamma < 1)


def test_linear_transfer_is_isotropic_at_r_1():
    assert sp.simplify(LT.expr.subs(r, 1) - ff.get("lt.risk").expr.subs(ff.symbols.lam, 0)) == 0
    iso = sp.piecewise_fold(ff.get("lt.transferability").expr.subs(ff.symbols.lam, 0))
    ours = sp.piecewise_fold(T_LT.derivation.numeric.expr.subs(r, 1))
    assert sp.simplify(branch(ours, gamma < 1).subs(kappa, KAPPA_ISO) - branch(iso, gamma < 1)) == 0
    assert sp.simplify(branch(ours, gamma > 1) - branch(iso, gamma > 1)) == 0


def test_fine_tuning_is_isotropic_at_r_1():
    iso = ff.get("ft.transferability").expr
    t_ft = _kappa_form(T_FT, sp.true).subs(r, 1).subs(kappa, KAPPA_ISO)
    assert sp.simplify(t_ft - branch(iso, gamma < 1)) == 0
    assert branch(T_FT.expr, gamma >= 1) == 0
    # the paper's c = 1 risk, typed here: 2(1 - gamma)(1 - cos theta) + gamma sigma^2/(1 - gamma)
    paper = 2 * (1 - gamma) * (1 - sp.cos(theta)) + gamma * sigma**2 / (1 - gamma)
    risk = _kappa_form(FT, gamma < 1).subs(r, 1).subs(kappa, KAPPA_ISO)
    assert sp.simplify(risk - paper) == 0
    _closed_equals_kappa_form(FT, gamma < 1)
    _closed_equals_kappa_form(T_FT, sp.true)


def test_uniform_teacher_bias_is_gamma_kappa():
    """w_r = frac makes the profile trace equal the direction trace: bias = gamma kappa
    (worked out by hand from the lemma), so R_sc(sigma = 0) = gamma kappa."""
    bias = _kappa_form(SC, gamma < 1).subs({sigma: 0, w_r: frac})
    assert sp.simplify(bias - gamma * kappa) == 0


def test_fine_tuning_boundary_is_pi_over_3_for_every_spectrum():
    assert sp.simplify(_kappa_form(T_FT, sp.true).subs(theta, sp.pi / 3)) == 0


# -- (b) general-spectrum numerics equal the two-level registry results ---------------------------
@pytest.mark.parametrize("frac_v,r_v", [(0.3, 10.0), (0.7, 0.1), (0.5, 1.0), (0.2, 1e4)])
def test_general_spectrum_numerics_equal_the_two_level_results(frac_v, r_v):
    d = 1000
    spec = S.two_level(frac_v, r_v)
    lam = spec.eigenvalues(d)
    in_r = lam == r_v
    for place in ("uniform", "top", "bottom"):
        p = S.profile(spec, d, place)
        wr = min(1.0, float(p[in_r].sum()))
        for g in (0.1, 0.5, 0.97, 1.3, 3.0):
            assert N.kappa(lam, g) == pytest.approx(KAPPA.evaluate(gamma=g, frac=frac_v, r=r_v), rel=1e-12, abs=0)
            for th in (0.3, 1.2, 2.5):
                pt = dict(gamma=g, sigma=0.4, frac=frac_v, r=r_v, w_r=wr)
                # tolerance: brentq's relative tolerance 4 eps on kappa, propagated through
                # sums of 1000 terms, stays below 1e-12
                assert N.scratch_risk(lam, p, g, 0.4) == pytest.approx(SC.evaluate(**pt), rel=1e-12)
                assert N.ft_risk(lam, p, g, th, 0.4) == pytest.approx(FT.evaluate(theta=th, **pt), rel=1e-12)
                assert N.lt_risk(lam, p, th) == pytest.approx(LT.evaluate(theta=th, r=r_v, w_r=wr), rel=1e-12)
                assert N.lt_transferability(lam, p, g, th, 0.4) == pytest.approx(
                    T_LT.evaluate(theta=th, **pt), rel=1e-11, abs=1e-12)
                assert N.ft_transferability(lam, p, g, th, 0.4) == pytest.approx(
                    T_FT.evaluate(theta=th, **pt), rel=1e-11, abs=1e-12)


def test_level_weights_equal_the_realised_spectrum():
    """A Spectrum's (levels, fractions) with per-level weights give the same numbers as
    its eigenvalue array (when the fractions times d are whole)."""
    spec = S.power_law(1.0, 50)
    lam = spec.eigenvalues(1000)
    p = S.profile(spec, 1000, "top", 0.1)
    level_p = p.reshape(50, 20).sum(axis=1)
    levels, fractions = np.array(spec.levels), np.array(spec.fractions)
    for g in (0.3, 0.9):
        a = N.scratch_risk(lam, p, g, 0.2)
        b = N.scratch_risk(levels, level_p, g, 0.2, weights=fractions)
        assert a == pytest.approx(b, rel=1e-12)


def test_singular_point_is_documented():
    assert SC.evaluate(gamma=1.0, sigma=0.5, frac=0.3, r=4.0, w_r=0.2) == math.inf
    assert SC.evaluate(gamma=1.0, sigma=0.0, frac=0.3, r=4.0, w_r=0.2) == 0.0
    assert T_LT.evaluate(gamma=1.0, theta=0.5, sigma=0.5, frac=0.3, r=4.0, w_r=0.2) == math.inf
    assert T_FT.evaluate(gamma=1.0, theta=0.5, sigma=0.5, frac=0.3, r=4.0, w_r=0.2) == 0.0
    lam = S.two_level(0.3, 4.0).eigenvalues(100)
    p = S.profile(S.two_level(0.3, 4.0), 100)
    assert N.scratch_risk(lam, p, 1.0, 0.5) == math.inf
    assert N.ft_transferability(lam, p, 1.0, 0.5, 0.5) == 0.0
    # continuity from below (sigma = 0): the risk at gamma = 1 - 1e-9 is close to 0
    assert SC.evaluate(gamma=1 - 1e-9, sigma=0.0, frac=0.3, r=4.0, w_r=0.2) < 1e-8


# -- spectra -----------------------------------------------------------------------------------
def test_spectra_constructors_and_rounding():
    spec = S.two_level(0.3, 10)
    assert spec.levels == (10.0, 1.0) and spec.fractions == (0.3, 0.7)
    assert list(spec.eigenvalues(7)) == [10, 10, 1, 1, 1, 1, 1]  # 2.1 -> 2, 4.9 -> 5
    assert S.two_level(0.3, 0.1).levels == (1.0, 0.1)
    pl = S.power_law(2.0, 400)
    assert pl.eigenvalues(400).mean() == pytest.approx(1.0, rel=1e-14)
    assert np.all(np.diff(pl.eigenvalues(400)) < 0)
    assert pl.eigenvalues(400)[0] / pl.eigenvalues(400)[1] == pytest.approx(4.0)
    user = S.from_values([0.5, 3, 1, 3])
    assert list(user.eigenvalues(4)) == [3, 3, 1, 0.5]
    for d in (1, 3, 17, 1000):
        assert user.counts(d).sum() == d
        assert np.all(np.abs(user.counts(d) - np.array(user.fractions) * d) < 1)


def test_profiles():
    spec = S.two_level(0.3, 10)
    top = S.profile(spec, 100, "top")
    assert top[:30].sum() == pytest.approx(1) and np.all(top[30:] == 0)
    bottom = S.profile(S.power_law(1, 100), 100, "bottom", 0.1)
    assert np.all(bottom[:90] == 0) and bottom[90:] == pytest.approx(np.full(10, 0.1))
    assert S.profile(spec, 50, "uniform").sum() == pytest.approx(1)


def test_teachers_geometry_and_seed():
    lam = S.two_level(0.3, 10).eigenvalues(200)
    p = S.profile(S.two_level(0.3, 10), 200, "top")
    bs, bt = S.teachers(lam, p, 1.1, 5, seed=3)
    np.testing.assert_allclose(np.linalg.norm(bs, axis=1), 1, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(bt, axis=1), 1, rtol=1e-14)
    np.testing.assert_allclose(np.sum(bs * bt, axis=1), math.cos(1.1), rtol=1e-13)
    assert np.all(bs[:, 60:] == 0) and np.all(bt[:, 60:] == 0)  # the profile's support
    bs2, _ = S.teachers(lam, p, 1.1, 5, seed=3)
    assert np.array_equal(bs, bs2)
    assert not np.array_equal(bs, S.teachers(lam, p, 1.1, 5, seed=4)[0])


# -- (c) Monte Carlo ------------------------------------------------------------------------------
#: dimensions of the 1/d extrapolation below the threshold
DIMS = (250, 1000)

ALL_SPECTRA = (S.two_level(0.3, 0.1), S.two_level(0.5, 1.0), S.two_level(0.3, 10.0), S.two_level(0.7, 10.0),
               S.power_law(0.5, 50), S.power_law(1.0, 50), S.power_law(2.0, 50),
               S.from_values([5.0, 2.0, 1.0, 0.5, 0.25], name="user list"))
#: the default run: every spectrum, two gammas below and one above the threshold, few
#: replicates (the risk concentrates at d = 1000); about 10 s of one core
DEFAULT = dict(spectra=ALL_SPECTRA, under=(0.5, 0.8), over=(2.0,), replicates={250: 16, 1000: 6})
#: the full check: every spectrum, three gammas on each side, more replicates
SLOW = dict(spectra=ALL_SPECTRA, under=(0.3, 0.6, 0.85), over=(1.3, 1.6, 2.5), replicates={250: 48, 1000: 12})
THETA, SIGMA = 0.8, 0.5


def _level_theory(spec, d, g, place="uniform"):
    """Limit theory of the mixture ``spec``: per-level profile weights and fractions."""
    p = S.profile(spec, d, place)
    counts = spec.counts(d)
    edges = np.concatenate([[0], np.cumsum(counts)])
    level_p = np.array([p[edges[k]:edges[k + 1]].sum() for k in range(len(counts))])
    levels, fractions = np.array(spec.levels), np.array(spec.fractions)
    r_lt = N.lt_risk(levels, level_p, THETA, weights=fractions)
    return {
        "scratch": N.scratch_risk(levels, level_p, g, SIGMA, weights=fractions),
        "fine_tuning": N.ft_risk(levels, level_p, g, THETA, SIGMA, weights=fractions),
        "lt_limit": r_lt,
    }


def _monte_carlo(config, seed):
    """Rows (name, spectrum, gamma, theory, MeanSE) and the exact linear-transfer checks."""
    rows, exact = [], []
    for i, spec in enumerate(config["spectra"]):
        for j, g in enumerate(config["under"] + config["over"]):
            means = {}
            for k, dim in enumerate(DIMS if g < 1 else DIMS[-1:]):
                lam, p = spec.eigenvalues(dim), S.profile(spec, dim)
                n = int(round(g * dim))
                out = sim.simulate_risks(lam, p, n, THETA, SIGMA, config["replicates"][dim],
                                         seed=100_000 * seed + 1000 * i + 10 * j + k)
                # the readout: sum of the replicates' exact chi^2_1 statistics (no allowance)
                exact.append((spec.name, g, dim, float(out["lt_chi2"].sum()), out["lt_chi2"].size))
                for name in ("scratch", "fine_tuning", "linear_transfer"):
                    # lt at finite n: R + (R + sigma^2)/(n - 2) has the O(1/d) of n = gamma d in it;
                    # the limit is compared after removing that exact term replicate by replicate
                    x = out[name] if name != "linear_transfer" else out[name] - (out["lt_population"] + SIGMA**2) / (n - 2)
                    means.setdefault(name, {})[dim] = stats.mean_se(x)
            theory = _level_theory(spec, DIMS[-1], g)
            for name in ("scratch", "fine_tuning", "linear_transfer"):
                if g < 1:
                    d1, d2 = DIMS
                    est = stats.linear_combination([(d2 / (d2 - d1), means[name][d2]), (-d1 / (d2 - d1), means[name][d1])])
                    value = theory["lt_limit"] if name == "linear_transfer" else theory[name]
                elif name == "linear_transfer":
                    continue  # above the threshold only the exact conditional check (no limit value at finite d)
                else:
                    # exact: E R = sigma^2 d/(n - d - 1) for n > d + 1, any spectrum (fine-tuning = scratch)
                    d2 = DIMS[-1]
                    n = int(round(g * d2))
                    est, value = means[name][d2], SIGMA**2 * d2 / (n - d2 - 1)
                rows.append((name, spec.name, g, value, est))
    return rows, exact


def _check(config, seed):
    rows, exact = _monte_carlo(config, seed)
    comparisons = len(rows) + len(exact)
    failures = []
    for name, spec, g, value, est in rows:
        critical = bonferroni_t(est.df, comparisons)
        if not abs(est.mean - value) <= critical * est.se:
            failures.append((name, spec, g, value, est, (est.mean - value) / est.se, critical))
    tail = FAMILY_ALPHA / (2 * comparisons)  # two-sided, Bonferroni
    for spec, g, dim, total, count in exact:
        # exactly chi^2 with `count` degrees of freedom under the model
        low, high = scipy.stats.chi2.ppf(tail, count), scipy.stats.chi2.isf(tail, count)
        if not low <= total <= high:
            failures.append(("lt exact", spec, g, dim, total, count, (low, high)))
    assert not failures, failures
    return rows, exact


def test_monte_carlo_agrees_with_theory(seed, one_thread):
    rows, _ = _check(DEFAULT, seed)
    # the check has power: a theory off by 20 % would fail at some cell
    wrong = sum(abs(est.mean - 1.2 * value) > bonferroni_t(est.df, len(rows)) * est.se
                for name, _, g, value, est in rows if value > 0.05)
    assert wrong > 0


@pytest.mark.slow
def test_monte_carlo_agrees_with_theory_many_points(seed, one_thread):
    _check(SLOW, seed)


def test_linear_transfer_exact_at_small_n(seed, one_thread):
    """At n = 6 the one-feature readout's exact law holds with no allowance: the mean risk
    equals the mean of E[R_lt | teachers] = R_inf + (R_inf + sigma^2)/(n - 2) (paired t-test),
    and the standardised excess is chi^2_1 (its mean, 1, by a t-test; the sum, chi^2_R); the
    limit form R_inf alone is visibly wrong there (the check has power)."""
    spec = S.power_law(1.0, 40)
    lam, p = spec.eigenvalues(40), S.profile(spec, 40, "top", 0.25)
    out = sim.simulate_risks(lam, p, 6, 1.0, 0.4, 4000, seed=seed)
    comparisons = 3
    diff = stats.paired_difference(out["linear_transfer"], out["lt_conditional"])
    assert abs(diff.mean) <= bonferroni_t(diff.df, comparisons) * diff.se, diff
    chi = stats.mean_se(out["lt_chi2"])
    assert abs(chi.mean - 1) <= bonferroni_t(chi.df, comparisons) * chi.se, chi
    tail = FAMILY_ALPHA / (2 * comparisons)
    total = out["lt_chi2"].sum()
    assert scipy.stats.chi2.ppf(tail, 4000) <= total <= scipy.stats.chi2.isf(tail, 4000)
    limit = stats.paired_difference(out["linear_transfer"], out["lt_population"])
    assert abs(limit.mean) > bonferroni_t(limit.df, comparisons) * limit.se


def test_lstsq_and_gram_solvers_agree():
    spec = S.two_level(0.4, 3.0)
    lam, p = spec.eigenvalues(40), S.profile(spec, 40, "top")
    for n in (20, 70):
        a = sim.simulate_risks(lam, p, n, 0.6, 0.3, 3, seed=5)
        b = sim.simulate_risks(lam, p, n, 0.6, 0.3, 3, seed=5, solver="lstsq")
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9)


def test_simulation_is_seeded():
    spec = S.power_law(1.0, 30)
    lam, p = spec.eigenvalues(30), S.profile(spec, 30)
    a = sim.simulate_risks(lam, p, 12, 0.6, 0.3, 2, seed=11)
    b = sim.simulate_risks(lam, p, 12, 0.6, 0.3, 2, seed=11)
    c = sim.simulate_risks(lam, p, 12, 0.6, 0.3, 2, seed=12)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["scratch"], c["scratch"])


# -- (d) bad input ----------------------------------------------------------------------------------
def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"parameter frac must be in \(0, 1\)"):
        S.two_level(1.0, 2.0)
    with pytest.raises(ValueError, match=r"parameter r must be in \(0, inf\)"):
        S.two_level(0.5, -1.0)
    with pytest.raises(ValueError, match=r"parameter a must be in \[0, inf\)"):
        S.power_law(-1.0, 10)
    with pytest.raises(ValueError, match="parameter d must be an integer >= 1"):
        S.power_law(1.0, 0)
    with pytest.raises(ValueError, match=r"parameter values must be finite and in \(0, inf\)"):
        S.from_values([1.0, float("nan")])
    with pytest.raises(ValueError, match=r"parameter values must be finite and in \(0, inf\)"):
        S.from_values([1.0, 0.0])
    with pytest.raises(ValueError, match="parameter values must hold at least one"):
        S.from_values([])
    spec = S.two_level(0.3, 10)
    with pytest.raises(ValueError, match="parameter place must be one of"):
        S.profile(spec, 10, "middle")
    with pytest.raises(ValueError, match=r"parameter fraction must be in \(0, 1\]"):
        S.profile(spec, 10, "top", 1.5)
    lam, p = spec.eigenvalues(10), S.profile(spec, 10)
    with pytest.raises(ValueError, match=r"parameter theta must be in \[0, 3.14159"):
        S.teachers(lam, p, 4.0, 2, seed=0)
    with pytest.raises(ValueError, match="parameter seed must be"):
        S.teachers(lam, p, 1.0, 2, seed=-1)
    with pytest.raises(ValueError, match="parameter profile must"):
        N.scratch_risk(lam, p * 2, 0.5, 0.1)
    with pytest.raises(ValueError, match="parameter gamma must be"):
        N.scratch_risk(lam, p, -0.5, 0.1)
    with pytest.raises(ValueError, match="parameter sigma must be"):
        N.scratch_risk(lam, p, 0.5, -0.1)
    with pytest.raises(ValueError, match="parameter eigenvalues must be finite"):
        N.kappa(-lam, 0.5)
    with pytest.raises(ValueError, match="parameter n_samples must be an integer >= 3"):
        sim.simulate_risks(lam, p, 2, 0.5, 0.1, 2, seed=0)
    with pytest.raises(ValueError, match="parameter n_samples must differ from d"):
        sim.simulate_risks(lam, p, 10, 0.5, 0.1, 2, seed=0)
    with pytest.raises(ValueError, match=r"parameter noise_std must be in \[0, inf\)"):
        sim.simulate_risks(lam, p, 5, 0.5, -1.0, 2, seed=0)
    with pytest.raises(ValueError, match=r"parameter w_r must be \[0, 1\]"):
        SC.evaluate(gamma=0.5, sigma=0.1, frac=0.3, r=2.0, w_r=1.5)
    with pytest.raises(ValueError, match=r"parameter frac must be \(0, 1\)"):
        SC.evaluate(gamma=0.5, sigma=0.1, frac=1.0, r=2.0, w_r=0.5)


# -- figure -------------------------------------------------------------------------------------------
def test_phase_figure_smoke(tmp_path):
    paths = anisotropic_phase.figures(tmp_path, quick=True)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)


def test_phase_maps_signs():
    """Linear transfer from a teacher on the top eigendirections is worse than from the
    bottom ones (R_lt = sin^2 theta beta^T Sigma beta), and T_ft changes sign at pi/3 for both."""
    spec = S.power_law(1.0, 200)
    theta_grid = np.array([0.5, math.pi / 3, 1.4])
    gamma_grid = np.array([0.5])
    top = anisotropic_phase.phase_maps(spec, "top", 0.1, 0.2, theta_grid, gamma_grid, d=200)
    bottom = anisotropic_phase.phase_maps(spec, "bottom", 0.1, 0.2, theta_grid, gamma_grid, d=200)
    assert top["T_lt"][0, 2] < bottom["T_lt"][0, 2]
    for maps in (top, bottom):
        assert maps["T_ft"][0, 0] > 0 > maps["T_ft"][0, 2]
        assert abs(maps["T_ft"][0, 1]) < 1e-12 * abs(maps["T_ft"][0, 0])


def test_trace_forms_are_the_lemma():
    """The stable denominator is the lemma's 1 - T_2/gamma at the root (identity in kappa)."""
    forms = A.trace_forms()
    lam_i = A.LAMBDA
    t1, t2, ts = (forms["summands"][s] for s in (A.T1, A.T2, A.TS))
    assert sp.simplify(t1 - t2 - kappa * ts) == 0
    assert sp.simplify(t2 - lam_i**2 / (lam_i + kappa) ** 2) == 0


# -- (d) fine-tuning at the balanced-flow end point, any depth ---------------------------------------
FT_EXACT = ff.get("ft.risk_two_level_exact")
T_FT_EXACT = ff.get("ft.transferability_two_level_exact")
#: the deterministic equivalents the balanced end point is built on, and the risk (sample fields
#: of ``sim.simulate_balanced_fine_tuning``)
BALANCED_FIELDS = ("a", "signal", "noise_norm", "scale", "fine_tuning")
#: (spectrum, teacher place): every spectrum with uniform teachers, and a two-level spectrum with
#: the teachers in its top and in its bottom eigenspace (there A_kappa != 1 - gamma)
BALANCED_CELLS = tuple((spec, "uniform") for spec in ALL_SPECTRA) + (
    (S.two_level(0.3, 10.0), "top"), (S.two_level(0.3, 10.0), "bottom"))
BALANCED_DEFAULT = dict(cells=BALANCED_CELLS, gammas=(0.5,), depths=(2, 3), replicates={250: 12, 1000: 4})
BALANCED_SLOW = dict(cells=BALANCED_CELLS, gammas=(0.3, 0.6, 0.85), depths=(2, 3, 6), replicates={250: 48, 1000: 12})


def _level_profile(spec, d, place):
    p = S.profile(spec, d, place)
    edges = np.concatenate([[0], np.cumsum(spec.counts(d))])
    return np.array([p[edges[k]:edges[k + 1]].sum() for k in range(len(spec.levels))])


def _balanced_theory(spec, place, g, depth):
    """Limit values of the sample fields: a -> A_kappa, |P beta_t|^2 -> 1 - A_kappa,
    |X^+ eps|^2 -> sigma^2/kappa, c^(L-1) and the risk (anisotropic_numerics.ft_balanced)."""
    levels, fractions = np.array(spec.levels), np.array(spec.fractions)
    level_p = _level_profile(spec, DIMS[-1], place)
    out = N.ft_balanced(levels, level_p, g, THETA, SIGMA, depth, weights=fractions)
    k = N.kappa(levels, g, fractions)
    return {"a": out["a"], "signal": 1 - out["a"], "noise_norm": SIGMA**2 / k, "scale": out["scale"],
            "fine_tuning": out["risk"]}


def _balanced_monte_carlo(config, seed):
    """Rows (field, spectrum, place, gamma, L, theory, MeanSE), the means extrapolated in 1/d
    from d = 250 and 1000 (residue O(1/d^2)); the same samples serve every depth."""
    rows = []
    for i, (spec, place) in enumerate(config["cells"]):
        for j, g in enumerate(config["gammas"]):
            for depth in config["depths"]:
                means = {}
                for k, dim in enumerate(DIMS):
                    lam, p = spec.eigenvalues(dim), S.profile(spec, dim, place)
                    out = sim.simulate_balanced_fine_tuning(lam, p, int(round(g * dim)), THETA, SIGMA, depth,
                                                            config["replicates"][dim],
                                                            seed=100_000 * seed + 1000 * i + 10 * j + k + 7)
                    for name in BALANCED_FIELDS:
                        means.setdefault(name, {})[dim] = stats.mean_se(out[name])
                theory = _balanced_theory(spec, place, g, depth)
                d1, d2 = DIMS
                for name in BALANCED_FIELDS:
                    est = stats.linear_combination([(d2 / (d2 - d1), means[name][d2]),
                                                    (-d1 / (d2 - d1), means[name][d1])])
                    rows.append((name, spec.name, place, g, depth, theory[name], est))
    return rows


def _balanced_check(config, seed):
    rows = _balanced_monte_carlo(config, seed)
    failures = []
    for name, spec, place, g, depth, value, est in rows:
        critical = bonferroni_t(est.df, len(rows))
        if not abs(est.mean - value) <= critical * est.se:
            failures.append((name, spec, place, g, depth, value, est, (est.mean - value) / est.se, critical))
    assert not failures, failures
    return rows


def test_balanced_fine_tuning_monte_carlo_agrees_with_theory(seed, one_thread):
    """The balanced end point computed from the data (the root equation with the sample's
    a = |(I-P) beta_s|^2, b = |beta_sc|^2) at d = 250 and 1000, 10 spectrum/teacher cells,
    L = 2, 3: every deterministic equivalent it is built on (a, |P beta_t|^2, |X^+ eps|^2,
    c^(L-1)) and its risk agree with the theory (two-sided t, Bonferroni over all rows,
    family-wise false-alarm rate 1e-3).  Power: the c = 1 scale is rejected in some cell."""
    rows = _balanced_check(BALANCED_DEFAULT, seed)
    rejected = sum(abs(est.mean - 1.0) > bonferroni_t(est.df, len(rows)) * est.se
                   for name, *_, value, est in rows if name == "scale")
    assert rejected > 0


@pytest.mark.slow
def test_balanced_fine_tuning_monte_carlo_many_points(seed, one_thread):
    _balanced_check(BALANCED_SLOW, seed)


#: points (gamma, theta, sigma, frac, r, w_r) of the two-level balanced results
BALANCED_POINTS = [(0.4, 0.7, 0.5, 0.3, 4.0, 0.3), (0.8, 1.2, 1.5, 0.6, 0.2, 0.9), (0.15, 0.3, 0.05, 0.1, 12.0, 0.0)]


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
def test_general_spectrum_balanced_numerics_equal_the_two_level_results(depth):
    """The compiled sums over an eigenvalue array (anisotropic_numerics.ft_balanced) equal the
    registered two-level closed forms (kappa from the quadratic, c from its ImplicitRoot)."""
    for g, th, s, fr, rr, w in BALANCED_POINTS:
        out = N.ft_balanced(np.array([rr, 1.0]), np.array([w, 1 - w]), g, th, s, depth, weights=np.array([fr, 1 - fr]))
        point = dict(gamma=g, theta=th, sigma=s, frac=fr, r=rr, w_r=w, L=depth)
        assert out["risk"] == pytest.approx(FT_EXACT.evaluate(**point), rel=1e-10)
        assert out["transferability"] == pytest.approx(T_FT_EXACT.evaluate(**point), rel=1e-9, abs=1e-13)


def test_balanced_results_reduce_to_c_1_at_one_layer_and_isotropic_at_r_1():
    """L = 1 is the c = 1 form, r = 1 the isotropic ft.transferability_exact; sigma = 0 gives
    c = 1 (the c = 1 risk at any depth); with noise c^(L-1) grows with L, and at these points
    (2 cos theta > c^(L-1) + ...) T decreases with depth."""
    for g, th, s, fr, rr, w in BALANCED_POINTS:
        two = dict(gamma=g, theta=th, sigma=s, frac=fr, r=rr, w_r=w)
        assert FT_EXACT.evaluate(**two, L=1) == pytest.approx(FT.evaluate(**two), rel=1e-12)
        assert T_FT_EXACT.evaluate(**two, L=1) == pytest.approx(T_FT.evaluate(**two), rel=1e-10, abs=1e-14)
        quiet = dict(two, sigma=0.0)
        assert FT_EXACT.evaluate(**quiet, L=4) == pytest.approx(FT.evaluate(**quiet), rel=1e-10, abs=1e-14)
        iso = dict(two, r=1.0)
        for depth in (2, 5):
            assert T_FT_EXACT.evaluate(**iso, L=depth) == pytest.approx(
                ff.get("ft.transferability_exact").evaluate(gamma=g, theta=th, sigma=s, L=depth), rel=1e-10, abs=1e-14)
        t = [T_FT_EXACT.evaluate(**two, L=depth) for depth in (1, 2, 4, 16)]
        assert all(x > y for x, y in zip(t, t[1:])), t
    # above the threshold fine-tuning is scratch
    assert FT_EXACT.evaluate(gamma=2.0, theta=0.5, sigma=0.5, frac=0.3, r=4.0, w_r=0.3, L=3) == pytest.approx(
        SC.evaluate(gamma=2.0, sigma=0.5, frac=0.3, r=4.0, w_r=0.3), rel=1e-14)
    assert T_FT_EXACT.evaluate(gamma=1.5, theta=0.5, sigma=0.5, frac=0.3, r=4.0, w_r=0.3, L=3) == 0


def test_balanced_root_is_stable_at_large_depth_and_named_on_bad_input():
    """c^(L-1) from the logarithmic root equation stays finite at L = 2000 and solves
    c^(2L) - a c^(2L-2) - b = 0 (checked in logarithms); bad a, b, L are refused by name."""
    for a_v, b_v in ((0.6, 0.5), (1e-6, 40.0), (0.99, 1e-4)):
        for depth in (2, 7, 2000):
            s = N.balanced_scale(a_v, b_v, depth)
            c2 = s ** (2 / (depth - 1))  # c^2
            # c^(2L-2) (c^2 - a) = b, in logarithms
            assert math.log(s**2) + math.log(c2 - a_v) == pytest.approx(math.log(b_v), rel=1e-9, abs=1e-12)
    assert N.balanced_scale(0.6, 0.5, 1) == 1.0
    assert T_FT_EXACT.evaluate(gamma=0.5, theta=0.7, sigma=0.5, frac=0.3, r=4.0, w_r=0.3, L=2000) > 0
    for bad, name in (((-0.1, 0.5, 2), "a"), ((0.5, 0.0, 2), "b"), ((0.5, 0.5, 0), "L")):
        with pytest.raises(ValueError, match=name):
            N.balanced_scale(*bad)
    lam, p = S.two_level(0.3, 4.0).eigenvalues(50), S.profile(S.two_level(0.3, 4.0), 50)
    with pytest.raises(ValueError, match="n_samples"):
        sim.simulate_balanced_fine_tuning(lam, p, 50, 0.5, 0.5, 2, 2, seed=0)
    with pytest.raises(ValueError, match="depth"):
        sim.simulate_balanced_fine_tuning(lam, p, 20, 0.5, 0.5, 0, 2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sim.simulate_balanced_fine_tuning(lam, p, 20, 0.5, 0.5, 2, 2, seed=-1)
    first = sim.simulate_balanced_fine_tuning(lam, p, 20, 0.5, 0.5, 2, 3, seed=5)
    again = sim.simulate_balanced_fine_tuning(lam, p, 20, 0.5, 0.5, 2, 3, seed=5)
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_balanced_deterministic_equivalents_are_derived():
    """balanced_forms: tr (X X^T)^-1 -> 1/kappa (the lemma's ridgeless limit), and T is
    bias_sc s (2 cos theta - s); at r = 1 the two-level a, b are the isotropic 1 - gamma and
    gamma + gamma sigma^2/(1 - gamma)."""
    forms = A.balanced_forms()
    assert sp.simplify(forms["b"] - (A.AP + sigma**2 / kappa)) == 0
    assert sp.cancel(forms["summands"][A.AK] + forms["summands"][A.AP]) == 1  # A_P = 1 - A_kappa
    parts = A._balanced_two_level()
    iso = {r: 1, kappa: (1 - gamma) / gamma}
    assert sp.simplify(parts["a"].subs(iso) - (1 - gamma)) == 0
    assert sp.simplify(parts["b"].subs(iso) - (gamma + gamma * sigma**2 / (1 - gamma))) == 0
