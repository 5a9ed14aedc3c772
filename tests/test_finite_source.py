"""Finite source data: fine-tuning (c = 1 form) and linear transfer from ``beta_s_hat``.

Expectations typed from SPEC section 2 ("Finite source data"); the Monte Carlo test
checks the random-matrix moments the derivation relies on.
"""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm as normal

import featfate_sym as ff
from featfate_sym.symbols import gamma, gamma_s, sigma_s, theta

FT = ff.get("ft.transferability_finite_source")
LT = ff.get("lt.risk_finite_source")

# SPEC: E|beta_s_hat|^2 and E<beta_t, beta_s_hat>
NORM2_UNDER = gamma_s + sigma_s**2 * gamma_s / (1 - gamma_s)
NORM2_OVER = 1 + sigma_s**2 / (gamma_s - 1)
OVERLAP_UNDER = sp.cos(theta) * gamma_s
OVERLAP_OVER = sp.cos(theta)


def _branches(expr):
    return {cond: value for value, cond in expr.args}


def test_source_moments_match_spec():
    norm2 = _branches(FT.extras["norm2"])
    assert sp.simplify(norm2[gamma_s < 1] - NORM2_UNDER) == 0
    assert sp.simplify(norm2[gamma_s > 1] - NORM2_OVER) == 0
    assert norm2[sp.true] == sp.oo  # gamma_s = 1 with noise
    overlap = FT.extras["overlap"]
    assert sp.simplify(overlap.subs(gamma_s, sp.Rational(1, 3)) - OVERLAP_UNDER.subs(gamma_s, sp.Rational(1, 3))) == 0
    assert sp.simplify(overlap.subs(gamma_s, 4) - OVERLAP_OVER) == 0


def test_fine_tuning_matches_spec():
    inner = _branches(_branches(FT.expr)[gamma < 1])
    t_under = gamma_s * (1 - 2 * sp.cos(theta)) + sigma_s**2 * gamma_s / (1 - gamma_s)
    t_over = (1 - 2 * sp.cos(theta)) + sigma_s**2 / (gamma_s - 1)
    assert sp.simplify(inner[gamma_s < 1] - (-(1 - gamma) * t_under)) == 0
    assert sp.simplify(inner[gamma_s > 1] - (-(1 - gamma) * t_over)) == 0
    assert FT.expr.subs(gamma, 2) == 0


def test_break_even_matches_spec():
    cos_star = _branches(FT.extras["break_even_cos_theta"])
    spec = (1 + sigma_s**2 / sp.Abs(1 - gamma_s)) / 2
    for gs in (sp.Rational(1, 4), sp.Rational(3, 4), sp.Rational(3, 2), 5):
        branch = cos_star[gamma_s < 1] if gs < 1 else cos_star[gamma_s > 1]
        assert sp.simplify((branch - spec).subs(gamma_s, gs)) == 0
    # and T vanishes there
    pt = {gamma: sp.Rational(1, 3), gamma_s: sp.Rational(1, 2), sigma_s: sp.Rational(1, 5)}
    cs = sp.Rational(1, 2) * (1 + sp.Rational(1, 25) / sp.Rational(1, 2))
    assert sp.simplify(FT.expr.subs(pt).subs(theta, sp.acos(cs))) == 0


def test_linear_transfer_matches_spec_formula():
    lt = _branches(LT.expr)
    spec_under = 1 - OVERLAP_UNDER**2 / NORM2_UNDER
    spec_over = 1 - OVERLAP_OVER**2 / NORM2_OVER
    assert sp.simplify(lt[gamma_s < 1] - spec_under) == 0
    assert sp.simplify(lt[gamma_s > 1] - spec_over) == 0


def test_population_source_is_recovered():
    """gamma_s -> oo, sigma_s -> 0: the population-source results."""
    for g in (0.2, 0.7):
        for th in (0.3, 1.2, 2.5):
            ft_pop = ff.get("ft.transferability").evaluate(gamma=g, theta=th)
            near = FT.evaluate(gamma=g, theta=th, gamma_s=1e8, sigma_s=1e-6)
            assert near == pytest.approx(ft_pop, abs=1e-7)
            lt_pop = ff.get("lt.risk").evaluate(theta=th, lam=0.0)
            assert LT.evaluate(theta=th, gamma_s=1e8, sigma_s=1e-6) == pytest.approx(lt_pop, abs=1e-7)
    # symbolically: the gamma_s > 1 branches as gamma_s -> oo, then sigma_s -> 0
    ft_over = _branches(_branches(FT.expr)[gamma < 1])[gamma_s > 1]
    ft_inf = sp.limit(ft_over, gamma_s, sp.oo).subs(sigma_s, 0)
    assert sp.simplify(ft_inf - (1 - gamma) * (2 * sp.cos(theta) - 1)) == 0
    lt_over = _branches(LT.expr)[gamma_s > 1]
    assert sp.simplify(sp.limit(lt_over, gamma_s, sp.oo) - sp.sin(theta) ** 2) == 0
    # exactly, noiseless source with more samples than dimensions
    assert sp.simplify(LT.expr.subs({sigma_s: 0, gamma_s: 2}) - sp.sin(theta) ** 2) == 0


def test_singular_branch_is_documented():
    assert FT.evaluate(gamma=0.5, theta=0.3, gamma_s=1.0, sigma_s=0.2) == -math.inf
    assert FT.evaluate(gamma=1.5, theta=0.3, gamma_s=1.0, sigma_s=0.2) == 0.0
    # noiseless at gamma_s = 1: the limit from both sides, the population value
    both = [FT.evaluate(gamma=0.5, theta=0.3, gamma_s=x, sigma_s=0.0) for x in (1 - 1e-9, 1.0, 1 + 1e-9)]
    assert max(both) - min(both) < 1e-8
    assert LT.evaluate(theta=0.3, gamma_s=1.0, sigma_s=0.2) == 1.0
    assert LT.evaluate(theta=0.3, gamma_s=1.0, sigma_s=0.0) == pytest.approx(math.sin(0.3) ** 2, abs=1e-15)


@pytest.mark.parametrize("result", [FT, LT], ids=lambda r: r.key)
def test_numpy_matches_mpmath_near_source_threshold(result, seed):
    rng = np.random.default_rng(seed)
    for gs in [1e-5, 0.5, 1 - 1e-6, 1 - 1e-10, 1 + 1e-10, 1 + 1e-6, 2.0, 1e6]:
        pt = {"gamma": float(rng.uniform(0.05, 1.5)), "theta": float(rng.uniform(0, math.pi)),
              "gamma_s": gs, "sigma_s": float(10 ** rng.uniform(-3, 1))}
        args = [pt[name] for name in result.param_names]
        got = float(result.numpy(*args))
        with mpmath.workdps(50):
            ref = float(result.mpmath(*[mpmath.mpf(x) for x in args]))
        assert got == pytest.approx(ref, rel=1e-10, abs=1e-12), (pt, got, ref)


@given(th=st.floats(0.0, math.pi), gs=st.floats(1e-3, 50.0), ss=st.floats(0.0, 10.0))
def test_linear_transfer_risk_is_a_fraction_and_ordered_in_noise(th, gs, ss):
    r = LT.evaluate(theta=th, gamma_s=gs, sigma_s=ss)
    assert -1e-12 <= r <= 1 + 1e-12
    # more source noise never helps linear transfer
    assert LT.evaluate(theta=th, gamma_s=gs, sigma_s=ss + 0.5) >= r - 1e-12


@given(g=st.floats(0.01, 3.0), th=st.floats(0.0, math.pi), gs=st.floats(1e-3, 50.0), ss=st.floats(0.0, 10.0))
def test_fine_tuning_finite_off_the_source_threshold(g, th, gs, ss):
    value = FT.evaluate(gamma=g, theta=th, gamma_s=gs, sigma_s=ss)
    if gs != 1.0:
        assert math.isfinite(value)
    assert value <= max(1 - g, 0) + 1e-12  # the null-space gain is at most the scratch bias


# -- Monte Carlo of the source moments -----------------------------------------------------------
def _source_moments_mc(n_s, d, noise, cos_theta, reps, rng):
    beta_s = np.zeros(d)
    beta_s[0] = 1.0
    beta_t = np.zeros(d)
    beta_t[0], beta_t[1] = cos_theta, math.sqrt(1 - cos_theta**2)
    norms, overlaps = np.empty(reps), np.empty(reps)
    for i in range(reps):
        x = rng.standard_normal((n_s, d))
        y = x @ beta_s + noise * rng.standard_normal(n_s)
        b = np.linalg.lstsq(x, y, rcond=None)[0]  # min-norm solution = X^+ y
        norms[i], overlaps[i] = b @ b, b @ beta_t
    return norms, overlaps


@pytest.mark.parametrize("d", [16, 48])
@pytest.mark.parametrize("gamma_source", [0.5, 2.0])
def test_source_moments_monte_carlo(d, gamma_source, seed):
    """Finite-d Monte Carlo vs the proportional limit.

    Test: |mean - limit| <= z SE + allowance(d), z from a family-wise false-alarm rate of
    1e-3 over the 8 comparisons of this test (4 cells x 2 moments; Bonferroni, two-sided).
    The allowance is the finite-size offset of the exact inverse-Wishart mean
    (n/d + s^2 n/(d-n-1) vs gamma + s^2 gamma/(1-gamma), or 1 + s^2 d/(n-d-1) vs
    1 + s^2/(gamma-1)), which is O(1/d): it shrinks from d = 16 to d = 48.  The overlap
    is exact at finite d (E P = (n/d) I) and gets no allowance.
    """
    noise, cos_theta, reps = 0.5, math.cos(0.7), 400
    n_s = int(round(gamma_source * d))
    rng = np.random.default_rng([seed, d, n_s])
    norms, overlaps = _source_moments_mc(n_s, d, noise, cos_theta, reps, rng)
    z = normal.isf(1e-3 / 8 / 2)
    pt = {gamma: 0.5, theta: 0.7, gamma_s: gamma_source, sigma_s: noise}
    limit_norm = float(FT.extras["norm2"].subs(pt))
    limit_overlap = float(FT.extras["overlap"].subs(pt))
    if n_s < d:
        finite_norm = n_s / d + noise**2 * n_s / (d - n_s - 1)
        finite_overlap = cos_theta * n_s / d
    else:
        finite_norm = 1 + noise**2 * d / (n_s - d - 1)
        finite_overlap = cos_theta
    allowance = abs(finite_norm - limit_norm)
    assert allowance < 0.2 * 16 / d  # O(1/d)
    se = norms.std(ddof=1) / math.sqrt(reps)
    assert abs(norms.mean() - limit_norm) <= z * se + allowance
    se_o = overlaps.std(ddof=1) / math.sqrt(reps)
    assert abs(overlaps.mean() - limit_overlap) <= z * se_o + abs(finite_overlap - limit_overlap)
