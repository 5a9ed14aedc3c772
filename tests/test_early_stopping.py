"""Early stopping of L = 1 gradient flow (``learning_curves.early_stopped_risk``), the
discrete learning curve (``learning_curves.risk_gd``) and the study modules
``studies.early_stopping`` / ``studies.learning_curves``.

Independent expectations: a dense grid of ``scratch.risk_time`` (the minimiser must not be
beaten); optimally tuned ridge (``scratch.risk_optimal_ridge``), the Bayes-optimal linear
estimator for the isotropic teacher in this limit, a lower bound for every stopping time;
the Ali, Kolter & Tibshirani (AISTATS 2019, Thm 3) bound: the Bayes risk of gradient flow at
time t is at most 1.2147 times that of ridge at the matched strength, so the early-stopped
risk is at most 1.2147 times the tuned-ridge risk.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import featfate_sym as ff
from featfate_sym import learning_curves

RIDGE = ff.get("scratch.risk_optimal_ridge")
SCRATCH = ff.get("scratch.risk")

ES_CELLS = [(0.3, 0.5), (0.9, 0.5), (1.0, 0.5), (1.0, 1.0), (2.0, 0.25), (4.0, 1.0)]


@pytest.mark.parametrize("gamma,sigma", ES_CELLS)
def test_early_stopped_risk_is_the_minimum_over_time(gamma, sigma):
    es = learning_curves.early_stopped_risk(gamma, sigma)
    assert 0 < es.time < math.inf
    # not beaten by a grid over 6 decades, nor by its neighbours; 1e-12: quadrature rounding
    grid = np.geomspace(1e-3, 1e3, 200)  # ratio 1.07
    assert es.risk <= min(learning_curves.risk_time(gamma, sigma, t) for t in grid) * (1 + 1e-12)
    for f in (0.99, 1.01):
        assert learning_curves.risk_time(gamma, sigma, f * es.time) >= es.risk * (1 - 1e-12)
    ridge = RIDGE.evaluate(gamma=gamma, sigma=sigma)
    assert ridge * (1 - 1e-10) <= es.risk <= 1.2147 * ridge
    # below the end point (strictly: the flow overfits the noise) and below the start (1)
    assert es.risk < min(1.0, SCRATCH.evaluate(gamma=gamma, sigma=sigma))


def test_without_noise_the_flow_never_gets_worse():
    for gamma in (0.5, 2.0):
        es = learning_curves.early_stopped_risk(gamma, 0.0)
        assert es.time == math.inf and es.risk == pytest.approx(max(0.0, 1 - gamma), abs=1e-12)


def test_early_stopping_removes_the_peak():
    """Finite at gamma = 1 with noise, and a smooth function of gamma there (the two sides
    agree to first order), while the end point diverges."""
    left, mid, right = (learning_curves.early_stopped_risk(g, 0.5).risk for g in (0.999, 1.0, 1.001))
    assert SCRATCH.evaluate(gamma=1.0, sigma=0.5) == math.inf
    assert mid < 0.41 and abs(left - mid) < 1e-3 and abs(right - mid) < 1e-3 and left > mid > right


@pytest.mark.parametrize("bad,match", [((0.0, 0.5), "parameter gamma"), ((1.0, -0.1), "parameter sigma"),
                                       ((math.nan, 0.5), "parameter gamma")])
def test_early_stopping_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        learning_curves.early_stopped_risk(*bad)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_discrete_curve_tends_to_the_flow_at_first_order_in_the_step(gamma):
    t = 2.0
    flow = learning_curves.risk_time(gamma, 0.5, t)
    gaps = [learning_curves.risk_gd(gamma, 0.5, round(t / eta), eta) - flow for eta in (0.02, 0.002)]
    # O(eta): the gap shrinks tenfold (to 10%: the next order) when the step does
    assert gaps[0] / gaps[1] == pytest.approx(10.0, rel=0.1)
    assert learning_curves.risk_gd(gamma, 0.5, 0, 0.01) == pytest.approx(1.0, rel=1e-12)
    assert learning_curves.risk_gd(gamma, 0.5, 10**8, 0.05) == pytest.approx(SCRATCH.evaluate(gamma=gamma, sigma=0.5),
                                                                                 rel=1e-9)


def test_discrete_curve_bad_input():
    with pytest.raises(ValueError, match="parameter eta"):
        learning_curves.risk_gd(0.5, 0.5, 10, 0.2)  # 1/x_max = 0.17 at gamma = 0.5
    with pytest.raises(ValueError, match="steps"):
        learning_curves.risk_gd(0.5, 0.5, 1.5, 0.01)


def test_early_stopping_table_shows_the_band_closing():
    """theta = pi/3, sigma = 0.5: transfer beats the min-norm scratch model on a band that
    reaches past gamma = 1 (the peak), but beats the early-stopped and the tuned-ridge
    scratch models only at small gamma, on nearly the same interval."""
    from featfate_sym.studies import early_stopping as es

    # 41 points: a grid ratio of 1.12, enough to place the band edges on either side of 0.5 and 1.2
    plain = es.transfer_band(math.pi / 3, 0.5, "min_norm", 41)
    stopped = es.transfer_band(math.pi / 3, 0.5, "early_stopped", 41)
    ridge = es.transfer_band(math.pi / 3, 0.5, "ridge", 41)
    assert plain[1] > 1.2 and stopped[1] < 0.5 and ridge[1] < 0.5
    assert stopped[1] == pytest.approx(ridge[1], rel=0.15)  # within one grid step
    text = es.table(gammas=(0.5, 1.0, 2.0), band_points=41)
    assert "| 1 | inf |" in text and "vs early-stopped" in text


def test_early_stopping_figure(tmp_path):
    from featfate_sym.studies import early_stopping as es

    paths = es.figures(tmp_path, quick=True)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)


@pytest.mark.slow
def test_learning_curves_figure(tmp_path):
    import torch

    from featfate_sym.studies import learning_curves as lcs

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        paths = lcs.figures(tmp_path, quick=True)
    finally:
        torch.set_num_threads(before)
    assert len(paths) == 4 and all(p.stat().st_size > 0 for p in paths)


@pytest.mark.parametrize("depth", [1, 3])
def test_full_batch_curve_is_sgd_with_the_whole_batch(depth, seed):
    """studies.learning_curves.simulate_curve (full gradient from Sxx, Sxy) against
    simulation.sgd.sgd with B = n without replacement on the same data and start: the same
    risks after every step to rounding (1e-10)."""
    import torch

    from featfate_sym.simulation import tasks
    from featfate_sym.simulation.sgd import sgd
    from featfate_sym.simulation.training import end_to_end, small_init
    from featfate_sym.studies.learning_curves import simulate_curve

    gamma, sigma, dim, eta, steps, reps = 2.0, 0.5, 12, 0.02, 30, 3
    scale = 0.0 if depth == 1 else 0.5
    times, risks, _ = simulate_curve(gamma, sigma, dim, depth=depth, eta=eta, steps=steps, replicates=reps,
                                     seed=seed, init_scale=scale)
    # the same draws in the same order as simulate_curve
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(reps, dim, 0.0, gen)
    data = tasks.sample_regression(teachers.target, int(gamma * dim), sigma, gen, keep_design=True)
    weights = [torch.zeros(reps, dim, dtype=torch.float64)] if depth == 1 else \
        small_init(reps, dim, depth, gen, scale=scale)
    run = sgd(weights, data, batch_size=data.n_samples, epochs=steps, step_size=eta, generator=gen,
              record=lambda ws: tasks.risk(end_to_end(ws), teachers.target))
    assert np.allclose(risks, run.recorded.numpy(), rtol=1e-10, atol=1e-12)
    assert times[-1] == pytest.approx(eta * steps) and risks[-1].max() < risks[0].max()
