"""Simulated ridge-from-scratch baseline against the registry's closed forms.

Statistical tests.  Each comparison of a simulated mean with a closed form uses
``t = (mean - theory) / SE`` with ``SE`` the standard error over independent replicates
and accepts when ``|mean - theory| <= t_crit * SE + allowance``.  ``t_crit`` gives a
family-wise false-alarm rate of 1e-3 per test function, Bonferroni-corrected over its
comparisons (two-sided Student t with ``replicates - 1`` degrees of freedom, the SE being
estimated from the replicates: ``featfate_sym.stats.t_critical``).

Finite-size allowance.  The closed forms are proportional limits; at width ``d`` the
expected ridge risk differs from its limit by ``O(1/d)`` (for the minimum-norm case the
exact Wishart formula of SPEC section 2 differs from the limit by ``O(1/d)``).  The
allowance is ``FINITE_SIZE / d`` with ``FINITE_SIZE = 1``: measured offsets
``d * (mean - limit)`` at ``d = 50..400``, ``gamma in {0.5, 1, 2}``, ``lam = 0.1``,
``sigma = 0.2`` (400 replicates) were all within ``[-1.9, 1.1]`` with standard errors of
about ``d * SE ~ 0.3..1``, i.e. consistent with ``|offset| < 1``.  Test (1) runs at two
widths, so the same constant gives an allowance that halves from ``d = 100`` to
``d = 200``.  For the grid-tuned risk the allowance adds the grid's own discretisation
error, computed from the closed form (``min over the grid of R(lam) - R(lam*) >= 0``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import featfate_sym as ff
from featfate_sym.studies.ridge_baseline import (
    default_lam_grid,
    simulate_ridge_baseline,
)
from checks import bonferroni_t

ALPHA = 1e-3
FINITE_SIZE = 1.0
SIGMA = 0.2




def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


@pytest.mark.parametrize("g", [0.25, 0.5, 1.5, 2.0])
def test_finite_size_allowance_covers_exact_min_norm_offset(g: float) -> None:
    # Rationale of the allowance, on the one case with an exact finite-size mean: the
    # Wishart formula for the minimum-norm risk (SPEC section 2, typed here as the
    # independent expectation) against the registry's proportional limit.  The offset is
    # O(1/d): inside FINITE_SIZE / d, and it shrinks as d doubles.
    limit = ff.get("scratch.risk").evaluate(gamma=g, sigma=SIGMA)
    offsets = []
    for dim in (100, 200, 400):
        n = round(g * dim)
        if n < dim - 1:
            exact = (1 - n / dim) + SIGMA**2 * n / (dim - n - 1)
        else:
            exact = SIGMA**2 * dim / (n - dim - 1)
        offsets.append(abs(exact - limit))
        assert offsets[-1] <= FINITE_SIZE / dim
    assert offsets[0] > offsets[1] > offsets[2]
    assert offsets[2] < 0.3 * offsets[0]  # about a quarter from d = 100 to 400: O(1/d)


def test_ridge_risk_at_fixed_lam_matches_closed_form(seed: int) -> None:
    lam_value = 0.1
    cells = [(dim, g) for dim in (100, 200) for g in (0.5, 1.0, 2.0)]
    theory_entry = ff.get("scratch.risk_ridge")
    rng = np.random.default_rng(seed)
    for dim, g in cells:
        replicates = 200 if dim == 100 else 100
        result = simulate_ridge_baseline(
            dim, g, SIGMA, theta=math.pi / 4, lams=[lam_value], replicates=replicates, seed=rng
        )
        mean, se = _mean_se(result.risks[:, 0])
        theory = theory_entry.evaluate(gamma=g, sigma=SIGMA, lam=lam_value)
        allowance = FINITE_SIZE / dim
        z_crit = bonferroni_t(replicates - 1, len(cells))
        assert abs(mean - theory) <= z_crit * se + allowance, (
            f"d={dim}, gamma={g}: simulated {mean:.4f} +- {se:.4f}, theory {theory:.4f}, "
            f"z={(mean - theory) / se:.2f}"
        )


def test_grid_optimal_risk_matches_optimal_ridge(seed: int) -> None:
    gammas = (0.25, 0.5, 1.0, 1.5, 2.0)
    dim, replicates = 200, 100
    z_crit = bonferroni_t(replicates - 1, len(gammas))
    lams = default_lam_grid()
    ridge = ff.get("scratch.risk_ridge")
    optimal = ff.get("scratch.risk_optimal_ridge")
    rng = np.random.default_rng(seed)
    for g in gammas:
        result = simulate_ridge_baseline(
            dim, g, SIGMA, theta=math.pi / 4, lams=lams, replicates=replicates, seed=rng
        )
        mean, se = _mean_se(result.best_risks)
        theory = optimal.evaluate(gamma=g, sigma=SIGMA)
        grid_theory = np.array([ridge.evaluate(gamma=g, sigma=SIGMA, lam=float(v)) for v in lams])
        grid_error = float(grid_theory.min() - theory)
        assert grid_error >= -1e-12  # the closed-form optimum is below every grid point
        allowance = FINITE_SIZE / dim + grid_error
        assert abs(mean - theory) <= z_crit * se + allowance, (
            f"gamma={g}: best simulated {mean:.4f} +- {se:.4f} (lam={result.best_lam:.4g}), "
            f"theory {theory:.4f}"
        )
        # the tuned risk is no worse than any single grid column's mean, by construction of
        # the selection; and the minimum-norm interpolator is never better on average
        assert mean <= result.risks.mean(axis=0).min() + 1e-15
        assert result.min_norm_risks.mean() >= mean


def test_anomalous_band_vanishes_against_tuned_baseline(seed: int) -> None:
    theta = math.pi / 2
    g = 1.0
    # theory: min-norm scratch diverges at gamma = 1, the tuned baseline does not
    t_min_norm = ff.get("lt.transferability").evaluate(gamma=g, theta=theta, sigma=SIGMA, lam=0.0)
    assert math.isinf(t_min_norm) and t_min_norm > 0
    r_opt = ff.get("scratch.risk_optimal_ridge").evaluate(gamma=g, sigma=SIGMA)
    r_lt = ff.get("lt.risk").evaluate(theta=theta, lam=0.0)
    assert math.isfinite(r_opt)
    t_tuned_theory = r_opt - r_lt
    assert t_tuned_theory < 0

    # simulation: three comparisons, Bonferroni over them
    comparisons = 3
    dim, replicates = 100, 100
    z_crit = bonferroni_t(replicates - 1, comparisons)  # two-sided: conservative for (a)
    result = simulate_ridge_baseline(dim, g, SIGMA, theta=theta, replicates=replicates, seed=seed)
    assert result.n_samples == dim  # exactly at the interpolation peak
    tuned = result.transferability_tuned
    mean, se = _mean_se(tuned)
    assert np.all(np.isfinite(tuned))
    # (a) one-sided: T_lt^tuned < 0
    assert mean + z_crit * se < 0, f"T_tuned = {mean:.4f} +- {se:.4f}"
    # (b) agreement with the closed form.  Allowance: the ridge part as above (finite size
    # plus the grid's discretisation error from the closed form), plus the linear-transfer
    # readout's exact finite-n excess over its limit, E R_lt - sin^2 = (sigma^2 + sin^2)/(n-2)
    # (SPEC section 2, paper Thm 3.7), typed here as the independent expectation.
    ridge = ff.get("scratch.risk_ridge")
    grid_error = min(ridge.evaluate(gamma=g, sigma=SIGMA, lam=float(v)) for v in result.lams) - r_opt
    lt_excess = (SIGMA**2 + math.sin(theta) ** 2) / (result.n_samples - 2)
    allowance = FINITE_SIZE / dim + grid_error + lt_excess
    assert abs(mean - t_tuned_theory) <= z_crit * se + allowance
    # (c) against min-norm scratch the mean is infinite in the limit (and heavy-tailed at
    # finite d), so test the median with a sign test: H0 "median(T_min_norm) <= 1";
    # under H0 the count of replicates above 1 is stochastically below Binomial(R, 1/2).
    above = int(np.sum(result.transferability_min_norm > 1.0))
    p_value = float(stats.binom.sf(above - 1, replicates, 0.5))
    assert p_value < ALPHA / comparisons, f"{above}/{replicates} replicates with T_min_norm > 1"


def test_same_seed_same_numbers() -> None:
    a = simulate_ridge_baseline(20, 0.5, SIGMA, theta=0.3, replicates=4, seed=7)
    b = simulate_ridge_baseline(20, 0.5, SIGMA, theta=0.3, replicates=4, seed=7)
    c = simulate_ridge_baseline(20, 0.5, SIGMA, theta=0.3, replicates=4, seed=8)
    np.testing.assert_array_equal(a.risks, b.risks)
    np.testing.assert_array_equal(a.lt_risks, b.lt_risks)
    assert not np.array_equal(a.risks, c.risks)


def test_ridge_solution_matches_direct_solve() -> None:
    # the eigenbasis shortcut against an explicit linear solve on one replicate: rebuild
    # the data from the same seed stream
    dim, g, lam_value = 12, 1.5, 0.3
    result = simulate_ridge_baseline(dim, g, SIGMA, theta=0.7, lams=[lam_value], replicates=2, seed=3)
    rng = np.random.default_rng(3)
    n = result.n_samples
    source = rng.standard_normal((2, dim))
    source /= np.linalg.norm(source, axis=1, keepdims=True)
    nu = rng.standard_normal((2, dim))
    nu -= np.sum(nu * source, axis=1, keepdims=True) * source
    nu /= np.linalg.norm(nu, axis=1, keepdims=True)
    target = math.cos(0.7) * source + math.sin(0.7) * nu
    design = rng.standard_normal((2, n, dim))
    labels = np.einsum("rnd,rd->rn", design, target) + SIGMA * rng.standard_normal((2, n))
    for r in range(2):
        x, y = design[r], labels[r]
        w = np.linalg.solve(x.T @ x / n + lam_value * np.eye(dim), x.T @ y / n)
        assert result.risks[r, 0] == pytest.approx(float(np.sum((w - target[r]) ** 2)), rel=1e-10)
        w_mn = np.linalg.pinv(x) @ y
        assert result.min_norm_risks[r] == pytest.approx(float(np.sum((w_mn - target[r]) ** 2)), rel=1e-8)
        z = x @ source[r]
        a = float(z @ y / (z @ z))
        assert result.lt_risks[r] == pytest.approx(float(np.sum((a * source[r] - target[r]) ** 2)), rel=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dim": 1}, "dim"),
        ({"gamma": 0.0}, "gamma"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"theta": 4.0}, "theta"),
        ({"replicates": 1}, "replicates"),
        ({"lams": [0.0, 0.1]}, "lams"),
    ],
)
def test_bad_input_names_parameter(kwargs: dict, name: str) -> None:
    args = {"dim": 10, "gamma": 0.5, "noise_std": 0.2, "theta": 0.5, "replicates": 3, "seed": 0}
    args.update(kwargs)
    dim, g, noise = args.pop("dim"), args.pop("gamma"), args.pop("noise_std")
    with pytest.raises(ValueError, match=name):
        simulate_ridge_baseline(dim, g, noise, **args)


def test_labelled_form_carries_the_same_numbers():
    result = simulate_ridge_baseline(30, 0.5, 0.2, theta=0.7, lams=[0.1, 1.0, 3.0], replicates=4, seed=3)
    ds = result.dataset()
    assert ds["risk_ridge"].dims == ("replicate", "lam") and ds.sizes["replicate"] == 4
    np.testing.assert_array_equal(ds["risk_ridge"], result.risks)
    np.testing.assert_array_equal(ds["T_lt"], ds["risk_sc"] - ds["risk_lt"])
    np.testing.assert_array_equal(ds["T_lt_tuned"], ds["risk_ridge_best"] - ds["risk_lt"])
    assert ds.attrs["best_lam"] == result.best_lam and int(ds.attrs["n"]) == 15
