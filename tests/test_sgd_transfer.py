"""Fine-tuning by minibatch SGD in the interpolating regime (``ft.transferability_sgd``).

Independent expectations: the one-step change of the layer imbalance averaged over every
minibatch (enumerated exactly at small ``n``) against the drift formula; the proportional-
limit flow against ``ft.transferability_exact`` (its end scale) and the start loss
``|beta_s - beta_t|^2 + sigma^2``; and the SGD simulator against the first-order drift summed
along each replicate's own gradient-descent run (paired data), by a stated t-test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
import torch

import featfate_sym as ff
from featfate_sym import learning_curves
from featfate_sym.simulation import tasks
from featfate_sym.simulation.sgd import (apply_gradient, balanced_at, gradient_descent_with_noise_drift, imbalance,
                                         sampling_factor)
from featfate_sym.stats import compare
from featfate_sym.symbols import eta as eta_sym

from checks import FAMILY_ALPHA

SGD = ff.get("ft.transferability_sgd")
EXACT = ff.get("ft.transferability_exact")
CELLS = [(0.5, math.pi / 3, 0.0, 2), (0.5, math.pi / 3, 0.5, 2), (0.5, math.pi / 3, 0.5, 3), (0.3, 0.4, 1.0, 2)]


# -- the registered result ----------------------------------------------------------------------
def test_transferability_sgd_is_a_registered_first_order_approximation():
    from featfate_sym.parameters import batch, d

    assert SGD.family == "finite_step" and not SGD.status.exact and not SGD.evaluable
    assert SGD.status.source.name == "DERIVED" and "eta d/B" in SGD.status.neglected
    assert SGD.param_names == ("gamma", "theta", "sigma", "L", "eta", "B", "d")
    assert "(1/n)|X beta - y|^2" in SGD.notes and "W <- W - eta" in SGD.notes
    # eta = 0 is the balanced-flow result
    under = next(v for v, cond in EXACT.expr.args if cond != sp.true)
    assert sp.simplify(SGD.expr.subs(eta_sym, 0) - under) == 0
    # linear in eta, and the correction scales as eta d/B (independent expectation)
    correction = sp.expand(SGD.expr - under)
    assert sp.degree(correction, eta_sym) == 1
    assert sp.simplify(correction.subs({eta_sym: sp.Symbol("e") * batch.symbol / d.symbol})
                       - correction.subs({eta_sym: sp.Symbol("e"), batch.symbol: 1, d.symbol: 1})) == 0
    ex = SGD.extras
    n_ = next(s for s in ex["without_replacement_factor"].free_symbols if s.name == "n_samples")
    # finite-population correction (Cochran): (n - B)/(B (n - 1)); 1/B with replacement
    assert sp.simplify(ex["without_replacement_factor"] - (n_ - batch.symbol) / (batch.symbol * (n_ - 1))) == 0
    assert sp.simplify(ex["sampling_factor"] - 1 / batch.symbol) == 0
    assert sp.simplify(ex["noise_per_time"] - 4 * d.symbol / batch.symbol) == 0


@pytest.mark.parametrize("n,batch", [(5, 1), (6, 2), (5, 5), (9, 3)])
def test_sampling_factor_of_the_simulator_matches_the_registered_one(n, batch):
    from featfate_sym.parameters import batch as b_par

    ex = SGD.extras
    n_ = next(s for s in ex["without_replacement_factor"].free_symbols if s.name == "n_samples")
    assert sampling_factor(n, batch, False) == pytest.approx(
        float(ex["without_replacement_factor"].subs({n_: n, b_par.symbol: batch})), rel=1e-14, abs=1e-16)
    assert sampling_factor(n, batch, True) == pytest.approx(1 / batch, rel=1e-15)
    with pytest.raises(ValueError, match="batch_size"):
        sampling_factor(n, n + 1, True)


def test_a_partial_last_batch_raises_the_epoch_mean_factor_as_the_simulator_draws_it(seed):
    """n = 5, B = 2 without replacement: an epoch of the simulator is batches of 2, 2 and 1
    rows; the per-step mean factor is the mean of (n - b)/(b (n - 1)) over them, checked
    against the variance of the minibatch mean over many epochs of sgd's own sampler."""
    from featfate_sym.simulation.sgd import _batches

    n, batch = 5, 2
    want = ((n - 2) / (2 * (n - 1)) * 2 + (n - 1) / (1 * (n - 1))) / 3
    assert sampling_factor(n, batch, False) == pytest.approx(want, rel=1e-15)
    gen = torch.Generator().manual_seed(seed)
    u = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.4], dtype=torch.float64)
    spread = float((u * u).mean() - u.mean() ** 2)
    epochs = 20_000
    batches = _batches(n, batch, epochs, False, gen)  # one epoch per row ("replicate")
    variances = [float(((u[idx].mean(-1) - u.mean()) ** 2).mean()) for idx in batches]
    got = sum(variances) / len(variances) / spread
    # 20000 epochs: the relative SE of the estimate is below 1%, so 5% is more than 5 SE
    assert got == pytest.approx(want, rel=0.05)
    assert abs(got - (n - batch) / (batch * (n - 1))) > 0.2 * want  # the B-subset formula alone is wrong here


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("replacement", [False, True])
def test_one_step_imbalance_change_averaged_over_every_batch_is_the_drift_formula(depth, replacement, seed):
    """n = 6, d = 7, B = 2 (dividing n: every batch is a uniform 2-subset), a generic
    (unbalanced, perturbed) network: the exact mean over all batches (15 subsets, or 36 ordered
    draws with replacement) of the one-step change of tr D_1 equals the GD change plus eta^2
    times the summand of gradient_descent_with_noise_drift."""
    gen = torch.Generator().manual_seed(seed)
    n, dim, batch, eta = 6, 7, 2, 0.03
    teachers = tasks.make_teachers(1, dim, 0.5, gen)
    data = tasks.sample_regression(teachers.target, n, 0.3, gen, keep_design=True)
    start = [w + 0.2 * torch.randn(w.shape, generator=gen, dtype=torch.float64)
             for w in balanced_at(teachers.source, depth, gen)]
    x, y = data.design[0], data.labels[0]

    def stepped_change(rows):
        ws = [w.clone() for w in start]
        from featfate_sym.simulation.training import right_products

        right = right_products(ws)
        xb, yb = x[list(rows)], y[list(rows)]
        g = (2.0 / len(rows)) * ((xb @ right[0][0] - yb) @ xb).unsqueeze(0)
        before = imbalance(ws)
        apply_gradient(ws, right, g, eta, [True] * depth)
        return float(imbalance(ws) - before)

    draws = list(itertools.product(range(n), repeat=batch)) if replacement else \
        list(itertools.combinations(range(n), batch))
    mean_change = float(np.mean([stepped_change(rows) for rows in draws]))
    gd_change = stepped_change(range(n))
    ws = [w.clone() for w in start]
    run = gradient_descent_with_noise_drift(ws, data, step_size=eta, schemes=((batch, replacement),), tol=1e-300,
                                            max_steps=1)
    noise = float(run.noise[(batch, replacement)])
    assert run.steps == 1 and noise > 0
    assert mean_change == pytest.approx(gd_change + noise, rel=1e-10, abs=1e-16)
    # the drift is second order: the GD change alone is eta^2 (|G_1|^2 - |G_2|^2), not the noise
    assert abs(mean_change - gd_change) > 1e-3 * abs(mean_change)


# -- the proportional-limit flow of the empirical loss --------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_limit_flow_ends_at_the_balanced_root_and_is_converged_in_the_nodes(cell):
    gamma, theta, sigma, depth = cell
    coarse = learning_curves.fine_tuning_noise_integral(*cell, nodes=32)
    fine = learning_curves.fine_tuning_noise_integral(*cell, nodes=96)
    _, _, _, t_of_c = learning_curves._fine_tuning()
    assert float(t_of_c(fine.scale, depth, gamma, theta)) == pytest.approx(
        EXACT.evaluate(gamma=gamma, theta=theta, sigma=sigma, L=depth), rel=1e-8, abs=1e-10)
    assert coarse.noise == pytest.approx(fine.noise, rel=1e-9)
    assert coarse.full_batch == pytest.approx(fine.full_batch, rel=1e-9)
    assert fine.noise > 0 and fine.full_batch > 0


@pytest.mark.parametrize("gamma,theta,sigma", [(0.5, math.pi / 3, 0.5), (0.3, 0.4, 1.0), (0.8, 2.0, 0.0)])
def test_the_start_loss_of_the_limit_flow_is_the_population_one(gamma, theta, sigma):
    from scipy import integrate
    from featfate_sym.symbols import gamma as g, sigma as s, theta as th

    integral = SGD.extras["start_loss_integral"]
    (phi,) = integral.limits[0][:1]
    f = sp.lambdify([phi], integral.function.subs({g: gamma, th: theta, s: sigma}), modules="numpy")
    value = integrate.quad(f, 0, math.pi, epsabs=0, epsrel=1e-12)[0]
    assert value == pytest.approx(2 - 2 * math.cos(theta) + sigma**2, rel=1e-10)


def test_sgd_theory_bad_input_and_one_layer():
    assert learning_curves.transferability_sgd_slope(0.5, 1.0, 0.5, 1, 1, 100) == 0.0
    for kwargs, match in [(dict(batch=0), "parameter B"), (dict(batch=60), "parameter B"), (dict(dim=0), "parameter d"),
                          (dict(eta=0.0), "parameter eta"), (dict(eta=math.nan), "parameter eta")]:
        args = dict(gamma=0.5, theta=1.0, sigma=0.5, depth=2, eta=0.001, batch=1, dim=100) | kwargs
        with pytest.raises(ValueError, match=match):
            learning_curves.transferability_sgd(**args)
    with pytest.raises(ValueError, match="parameter gamma"):
        learning_curves.transferability_sgd(1.5, 1.0, 0.5, 2, 0.001, 1, 100)
    with pytest.raises(ValueError, match="nodes"):
        learning_curves.fine_tuning_noise_integral(0.5, 1.0, 0.5, 2, nodes=3)


def test_without_replacement_at_full_batch_has_no_noise_correction():
    t0 = EXACT.evaluate(gamma=0.5, theta=1.0, sigma=0.5, L=2)
    assert learning_curves.transferability_sgd(0.5, 1.0, 0.5, 2, 0.01, 50, 100, replacement=False) == \
        pytest.approx(t0, rel=1e-9)
    up = learning_curves.transferability_sgd(0.5, 1.0, 0.5, 2, 0.01, 5, 100)
    assert up > t0  # the noise raises Delta, lowering the null-space scale: T rises here


# -- the simulator against the first-order prediction ---------------------------------------------
def _slope_check(gamma, theta, sigma, depth, dim, schemes, ratios, replicates, seed):
    """Per replicate and scheme (B, replacement): the paired shift D(eta) = T_SGD - T_GD at
    eta = r B/d for r in ``ratios`` (r and 2r), Richardson's slope (4 D(e) - D(2e))/(2e)
    (removes the O(eta^2) term) against the same slope of the first-order prediction summed
    along the replicate's own GD run.  Student t on the paired differences, Bonferroni over the
    schemes, FAMILY_ALPHA; no allowance (the remainder is O(eta^2) after extrapolation)."""
    from featfate_sym.studies.finite_step_transfer import fine_tuning_runs

    results = []
    for k, scheme in enumerate(schemes):
        batch = scheme[0]
        etas = tuple(r * batch / dim for r in ratios)
        runs = fine_tuning_runs(gamma, theta, sigma, depth, dim, etas, (scheme,), replicates=replicates,
                                seed=seed + k)
        d = {e: runs[("sgd", e, scheme)] - runs[("gd", e)] for e in etas}
        p = {e: runs[("pred", e, scheme)] - runs[("gd", e)] for e in etas}
        e1, e2 = etas
        sim = (4 * d[e1] - d[e2]) / (2 * e1)
        pred = (4 * p[e1] - p[e2]) / (2 * e1)
        c = compare(0.0, sim - pred, alpha=FAMILY_ALPHA, comparisons=len(schemes))
        limit = learning_curves.transferability_sgd_slope(gamma, theta, sigma, depth, batch, dim,
                                                          replacement=scheme[1])
        results.append((scheme, sim, pred, limit, c))
        assert c.passed, (scheme, str(c))
        # the effect is resolved: the mean shift is many standard errors from zero
        assert np.mean(sim) > 5 * np.std(sim, ddof=1) / math.sqrt(len(sim))
    return results


def test_sgd_shift_of_transferability_against_the_first_order_drift(seed):
    """Default size: gamma = 0.3 (well conditioned: few steps), theta = pi/3, sigma = 0.5,
    L = 2, d = 60 (n = 18), B = 6 with and without replacement, eta d/B in {0.05, 0.1},
    16 replicates."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _slope_check(0.3, math.pi / 3, 0.5, 2, 60, ((6, True), (6, False)), (0.05, 0.1), 16, seed)
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_sgd_shift_of_transferability_at_d_200_and_the_limit(seed):
    """d = 200 (n = 100, gamma = 0.5), B = 5 without and B = 20 with replacement, 24
    replicates (numerics/sgd_transfer_table.py has all four schemes): the simulator against the per-replicate first order, and the mean
    per-replicate first-order slope within 10% of the proportional limit (the O(1/d) parts of
    the noise: about 10% at d = 60, n = 18, in the default test's setting)."""
    torch.set_num_threads(1)
    results = _slope_check(0.5, math.pi / 3, 0.5, 2, 200, ((5, False), (20, True)), (0.05, 0.1), 24, seed)
    for scheme, sim, pred, limit, _ in results:
        assert abs(np.mean(pred) / limit - 1) < 0.1, (scheme, np.mean(pred), limit)
