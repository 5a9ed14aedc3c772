"""Minibatch SGD for deep linear networks (``featfate_sym.simulation.sgd``).

Independent expectations: full-batch gradient descent with the same fixed step
(``training.gradient_descent``) for ``B = n`` without replacement, and the minimum-norm
interpolator ``X^+ y`` (from each replicate's own design, ``torch.linalg.pinv``) for
linear least squares at ``n < d`` started at zero, where every SGD update stays in the
row space of ``X``.
"""

from __future__ import annotations

import math

import pytest
import torch

from featfate_sym.simulation import tasks
from featfate_sym.simulation.sgd import sgd, training_loss
from featfate_sym.simulation.training import DivergenceError, end_to_end, gradient_descent, small_init


def _problem(seed, replicates=3, dim=10, n=6, noise=0.5, keep_design=True):
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, dim, 0.3, gen)
    data = tasks.sample_regression(teachers.target, n, noise, gen, keep_design=keep_design)
    return gen, data


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_full_batch_without_replacement_is_gradient_descent(depth, seed):
    gen, data = _problem(seed)
    init = small_init(3, 10, depth, gen, scale=0.3)
    eta, epochs = 0.02, 60
    a = [w.clone() for w in init]
    b = [w.clone() for w in init]
    run = sgd(a, data, batch_size=data.n_samples, epochs=epochs, step_size=eta,
              generator=torch.Generator().manual_seed(seed + 1))
    gradient_descent(b, data, tol=1e-300, max_steps=epochs, step_size=eta)
    assert run.steps == epochs
    for wa, wb in zip(a, b):
        assert torch.allclose(wa, wb, rtol=1e-11, atol=1e-13), float((wa - wb).abs().max())
    # the weights moved (the comparison is not between two untouched copies)
    assert float((a[-1] - init[-1]).abs().max()) > 1e-3
    # the recorded loss is the full training loss, decreasing under a stable step
    assert torch.allclose(run.loss[-1], training_loss(a, data))
    assert bool((run.loss[-1] < run.loss[0]).all())


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_linear_sgd_interpolates_at_the_minimum_norm_solution(replacement, batch_size, seed):
    """L = 1, gamma = n/d = 0.5 < 1, noisy labels, from beta = 0: SGD with a step below
    0.9 / max_i |x_i|^2 (stable for every minibatch) drives the training loss to 0 and ends
    at X^+ y, because every update is a combination of rows of X."""
    dim, n, replicates = 20, 10, 4
    gen, data = _problem(seed, replicates=replicates, dim=dim, n=n, noise=0.5)
    weights = [torch.zeros(replicates, dim, dtype=torch.float64)]
    row_norms = (data.design ** 2).sum(-1).max()
    eta = 0.9 / float(row_norms)
    run = sgd(weights, data, batch_size=batch_size, epochs=600 if batch_size == 1 else 1500, step_size=eta,
              generator=gen, replacement=replacement)
    assert float(run.loss[-1].max()) < 1e-20, run.loss[-1]
    beta = end_to_end(weights)
    interpolator = (torch.linalg.pinv(data.design) @ data.labels.unsqueeze(-1)).squeeze(-1)
    assert float((beta - interpolator).norm(dim=-1).max()) < 1e-9
    # a solution that interpolates but is not of minimum norm would fail: add a null vector
    null = torch.randn(replicates, dim, generator=gen, dtype=torch.float64)
    null = null - (torch.linalg.pinv(data.design) @ (data.design @ null.unsqueeze(-1))).squeeze(-1)
    assert float((beta + null - interpolator).norm(dim=-1).min()) > 1e-3


def test_deep_sgd_at_small_batches_reaches_an_interpolating_solution(seed):
    """L = 2, n < d: minibatch SGD from a moderate initialisation fits the noisy labels
    exactly (training loss -> 0), as gradient descent does."""
    dim, n, replicates = 12, 6, 3
    gen, data = _problem(seed, replicates=replicates, dim=dim, n=n, noise=0.3)
    weights = small_init(replicates, dim, 2, gen, scale=0.5)
    run = sgd(weights, data, batch_size=2, epochs=4000, step_size=0.01, generator=gen)
    assert float(run.loss[-1].max()) < 1e-16, run.loss[-1]
    assert float(run.loss[0].min()) > 1e-2


def test_same_seed_same_numbers_and_another_seed_others(seed):
    _, data = _problem(seed)
    init = small_init(3, 10, 2, torch.Generator().manual_seed(0), scale=0.3)
    outs = []
    for s in (seed, seed, seed + 1):
        w = [x.clone() for x in init]
        sgd(w, data, batch_size=2, epochs=5, step_size=0.02, generator=torch.Generator().manual_seed(s))
        outs.append(end_to_end(w))
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])


def test_divergence_names_the_step_and_the_batch(seed):
    gen, data = _problem(seed)
    weights = [torch.zeros(3, 10, dtype=torch.float64)]
    with pytest.raises(DivergenceError, match=r"step size eta = 5, batch size B = 2"):
        sgd(weights, data, batch_size=2, epochs=200, step_size=5.0, generator=gen)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"batch_size": 7}, r"batch_size must be in \[1, n\] = \[1, 6\]"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"step_size": 0.0}, "step_size must be a finite number > 0"),
        ({"step_size": -0.1}, "step_size must be"),
        ({"step_size": float("nan")}, "step_size must be"),
        ({"epochs": -1}, "epochs must be an integer >= 0"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match, seed):
    gen, data = _problem(seed)
    args = {"batch_size": 2, "epochs": 1, "step_size": 0.01, **kwargs}
    with pytest.raises(ValueError, match=match):
        sgd([torch.zeros(3, 10, dtype=torch.float64)], data, generator=gen, **args)


def test_statistics_without_a_design_are_refused(seed):
    gen, data = _problem(seed, keep_design=False)
    with pytest.raises(ValueError, match="keep its design"):
        sgd([torch.zeros(3, 10, dtype=torch.float64)], data, batch_size=2, epochs=1, step_size=0.01,
            generator=gen)


# -- scratch.risk_sgd_stationary: the stationary law of constant-step SGD ---------------------
import contextlib  # noqa: E402

import sympy as sp  # noqa: E402

import featfate_sym as ff  # noqa: E402
from featfate_sym.simulation.sgd import balanced_at, stationary_excess_risk  # noqa: E402
from featfate_sym.stats import compare  # noqa: E402
from featfate_sym.symbols import batch as B_sym, d as d_sym, eta as eta_sym, gamma as g_sym, sigma as s_sym  # noqa: E402

from checks import FAMILY_ALPHA  # noqa: E402

STAT = ff.get("scratch.risk_sgd_stationary")


@contextlib.contextmanager
def _one_thread():
    """The Monte Carlo below is many small products: one thread is fastest on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_sgd_stationary_risk_is_a_derived_first_order_result():
    assert STAT.family == "finite_step" and not STAT.status.exact and "O(eta^2)" in STAT.status.neglected
    assert STAT.param_names == ("gamma", "sigma", "eta", "B", "d")
    assert "(1/n)|X beta - y|^2" in STAT.notes and "with replacement" in STAT.regime
    # independent expectation: eta d sigma^2 (1 - 1/gamma)/B above gamma = 1, 0 below
    above = STAT.expr.subs(g_sym, 3)
    assert sp.simplify(above - eta_sym * d_sym * s_sym**2 * sp.Rational(2, 3) / B_sym) == 0
    assert STAT.expr.subs(g_sym, sp.Rational(1, 2)) == 0
    assert STAT.evaluate(gamma=4.0, sigma=1.0, eta=0.005, B=10, d=50) == pytest.approx(0.01875, rel=1e-14)
    # the discrete per-mode fixed point eta g/(h (2 - eta h)) reduces to the Lyapunov eta g/(2h)
    h, g = sorted(STAT.extras["discrete_mode_variance"].free_symbols - {eta_sym}, key=str)[::-1]
    assert sp.limit(STAT.extras["discrete_mode_variance"] / eta_sym, eta_sym, 0) == g / (2 * h)
    # linear in eta and in 1/B, the next-order estimate quadratic
    assert sp.degree(STAT.expr.args[0][0], eta_sym) == 1
    assert sp.degree(STAT.extras["next_order_estimate"], eta_sym) == 2


#: (gamma, sigma, eta d, B): eta d/B in 0.025..0.05, where the estimated O(eta^2) term is <= 5%
STAT_CELLS = [(4.0, 1.0, 0.25, 10), (4.0, 1.0, 0.5, 10), (4.0, 1.0, 0.1, 2)]


def _stationary_check(dim, replicates, epochs, seed):
    """Student t of the replicate time averages against the first-order result, Bonferroni
    over STAT_CELLS.  Burn-in: the slowest mode (x_min = (1 - gamma^-1/2)^2 of the MP law)
    relaxes as exp(-4 eta x_min k); the burn-in makes 4 eta x_min k >= 6 (residual deficit
    <= e^-6 of one mode's variance).  Allowance: twice the registered estimate of the eta^2
    term (an estimate, not a bound) plus the finite-n gap of the leading order: with
    Gaussian rows the leverage is Beta(d/2, (n-d)/2), so E sum_i h_i (1 - h_i) = d (1 - d/n)
    n/(n + 2), the limit times n/(n + 2)."""
    n = int(round(STAT_CELLS[0][0] * dim))
    for k, (gamma, sigma, eta_d, batch) in enumerate(STAT_CELLS):
        eta = eta_d / dim
        steps_per_epoch = -(-n // batch)
        x_min = (1 - gamma ** -0.5) ** 2
        burn_in = math.ceil(6 / (4 * eta * x_min) / steps_per_epoch)
        samples = stationary_excess_risk(gamma, sigma, dim, eta, batch, replicates=replicates, burn_in=burn_in,
                                         epochs=epochs, seed=seed + k)
        want = STAT.evaluate(gamma=gamma, sigma=sigma, eta=eta, B=batch, d=dim)
        nxt = float(STAT.extras["next_order_estimate"].subs({g_sym: gamma, s_sym: sigma, eta_sym: eta,
                                                              B_sym: batch, d_sym: dim}))
        allowance = 2 * abs(nxt) + want * 2 / (n + 2)
        c = compare(want, samples, alpha=FAMILY_ALPHA, comparisons=len(STAT_CELLS), allowance=allowance)
        assert c.passed, ((gamma, sigma, eta_d, batch), str(c))


def test_stationary_sgd_risk_against_the_simulator(seed):
    """d = 50, n = 200, 16 replicates, 60 epochs averaged after burn-in."""
    with _one_thread():
        _stationary_check(50, 16, 60, seed)


@pytest.mark.slow
def test_stationary_sgd_risk_against_the_simulator_at_d_100(seed):
    with _one_thread():
        _stationary_check(100, 24, 150, seed)


def test_the_stationary_risk_is_linear_in_the_step_not_constant(seed):
    """The same data (same seed) at eta d = 0.1 and 0.4, B = 10: the ratio of the means is
    within 15% of 4 (the O(eta) law; 15%: the O(eta^2) term is <= 4% at eta d/B = 0.04 plus the
    sampling error of two 16-replicate means); a law without the step would give 1."""
    with _one_thread():
        means = []
        for eta_d in (0.1, 0.4):
            eta = eta_d / 50
            burn_in = math.ceil(6 / (4 * eta * 0.25) / 20)
            means.append(stationary_excess_risk(4.0, 1.0, 50, eta, 10, replicates=16, burn_in=burn_in, epochs=60,
                                                seed=seed).mean())
    assert means[1] / means[0] == pytest.approx(4.0, rel=0.15)


def test_recorded_values_and_balanced_start(seed):
    """``record`` is evaluated at the start and after every epoch; a balanced network built at
    beta has end-to-end vector beta and no imbalance."""
    gen, data = _problem(seed)
    beta = data.minimiser
    weights = balanced_at(beta, 3, gen)
    assert torch.allclose(end_to_end(weights), beta, rtol=1e-12, atol=1e-14)
    for l in range(2):
        gram = weights[l].mT @ weights[l]
        nxt = weights[l + 1] @ weights[l + 1].mT if weights[l + 1].dim() == 3 else \
            weights[l + 1].unsqueeze(-1) * weights[l + 1].unsqueeze(-2)
        assert torch.allclose(gram, nxt, atol=1e-12)
    run = sgd(weights, data, batch_size=2, epochs=4, step_size=0.01, generator=gen,
              record=lambda ws: (end_to_end(ws) - beta).norm(dim=-1))
    assert run.recorded.shape == (5, 3) and float(run.recorded[0].max()) < 1e-12
    assert float(run.recorded[-1].min()) > 0
    with pytest.raises(ValueError, match="gamma must be > 1"):
        stationary_excess_risk(0.5, 1.0, 10, 0.01, 2, replicates=2, burn_in=1, epochs=1, seed=seed)


def test_tol_stops_once_every_replicate_interpolates(seed):
    """L = 2, n < d: with ``tol`` the run stops after the first epoch with every training loss
    at or below it, long before ``epochs``; the loss history ends there; a bad tol raises."""
    gen, data = _problem(seed, replicates=3, dim=12, n=6, noise=0.5)
    weights = balanced_at(data.minimiser + 0.3, 2, gen)
    run = sgd(weights, data, batch_size=2, epochs=100_000, step_size=0.01, generator=gen, tol=1e-12)
    assert bool(run.converged.all()) and float(run.loss[-1].max()) <= 1e-12
    assert float(run.loss[-2].max()) > 1e-12  # it stopped at the first epoch below tol
    assert run.loss.shape[0] - 1 == run.steps // 3 < 100_000
    assert float(training_loss(weights, data).max()) <= 1e-12
    for bad in (0.0, -1.0, True, "1e-9"):
        with pytest.raises(ValueError, match="tol must be"):
            sgd([w.clone() for w in weights], data, batch_size=2, epochs=1, step_size=0.01, generator=gen, tol=bad)


def test_noise_drift_along_gd_vanishes_for_full_batches_and_flags_non_convergence(seed):
    """``gradient_descent_with_noise_drift``: B = n without replacement adds no drift (it is
    GD), B = 1 adds a positive one; its GD run is the simulator's full-batch SGD; a
    ``max_steps`` too small leaves ``converged`` false; depth 1 is refused."""
    from featfate_sym.simulation.sgd import gradient_descent_with_noise_drift, imbalance

    gen, data = _problem(seed, replicates=3, dim=12, n=6, noise=0.5)
    start = balanced_at(data.minimiser + 0.3, 2, gen)
    a = [w.clone() for w in start]
    run = gradient_descent_with_noise_drift(a, data, step_size=0.02, schemes=((6, False), (1, True)), tol=1e-20,
                                            max_steps=200_000)
    assert bool(run.converged.all())
    assert float(run.noise[(6, False)].abs().max()) == 0.0 and float(run.noise[(1, True)].min()) > 0
    b = [w.clone() for w in start]
    sgd(b, data, batch_size=6, epochs=run.steps, step_size=0.02, generator=gen)
    for wa, wb in zip(a, b):
        assert torch.allclose(wa, wb, rtol=1e-10, atol=1e-12)
    assert torch.allclose(run.imbalance, imbalance(a))
    short = gradient_descent_with_noise_drift([w.clone() for w in start], data, step_size=0.02,
                                              schemes=((1, True),), tol=1e-20, max_steps=5)
    assert short.steps == 5 and not bool(short.converged.any())
    with pytest.raises(ValueError, match="depth"):
        gradient_descent_with_noise_drift([data.minimiser.clone()], data, step_size=0.02, schemes=((1, True),),
                                          tol=1e-20, max_steps=5)
