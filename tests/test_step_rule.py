"""The end-point step rule of fine-tuning (``EngineOptions.fine_tune_step_rule = "end_point"``).

Claims tested:

* no control where the end point does not depend on the step: with a unique minimiser
  (``n >= d``) and for one trained layer the rule takes exactly the steps of plain
  adaptive descent (the same step sizes, the same weights, bit for bit);
* the sensitivity ``S = |d beta_end / d Delta|`` of :func:`end_point_budget` equals a
  finite difference of the end point computed independently from the balance polynomial
  ``x^L - (a - Delta) x^(L-1) - b = 0`` (``x = c^2``);
* the metered drift never exceeds its budget (exact accounting of the one-step law);
* for ``n < d`` the end point is within the stated accuracy ``epsilon`` of the
  balanced-flow end point, per replicate (with an allowance for the convergence
  tolerance and the ``O(alpha)`` residue of the pretrained weights, stated below), and
  the shift of ``T_ft`` is within its stated bound ``epsilon (2 |beta - beta_t| +
  epsilon)`` by a one-sided paired t-test at ``FAMILY_ALPHA``; plain descent fails both.

Independent expectation: the balanced end point ``X^+ y + c^(L-1) (I - P) beta_s`` (SPEC
section 2) from the pseudo-inverse of each replicate's own design.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featfate_sym.simulation import tasks
from featfate_sym.simulation.deep_linear import EngineOptions, end_point_budget, fine_tune, pretrain
from featfate_sym.simulation.training import end_to_end, gradient_descent
from featfate_sym.stats import mean_se, t_critical

from checks import FAMILY_ALPHA

torch.set_num_threads(1)


def _balanced(data, source, depth, delta=0.0):
    """End point of balanced flow from ``beta_s`` when ``tr D_1`` ends at ``delta``:
    ``X^+ y + c^(L-1) (I - P) beta_s``, ``x = c^2`` the positive root of ``x^L - (a - delta)
    x^(L-1) - b = 0``, from the design's pseudo-inverse."""
    d = source.shape[-1]
    proj = torch.linalg.pinv(data.design) @ data.design
    null = ((torch.eye(d, dtype=torch.float64) - proj) @ source.unsqueeze(-1)).squeeze(-1)
    a = (null**2).sum(-1).numpy()
    b = (data.minimiser**2).sum(-1).numpy()
    x = np.array([np.max(np.roots([1, -(ai - delta)] + [0] * (depth - 2) + [-bi]).real) for ai, bi in zip(a, b)])
    return data.minimiser + torch.from_numpy(np.sqrt(x) ** (depth - 1)).unsqueeze(-1) * null


def _problem(seed, d, n, sigma, depth, replicates, theta=0.4 * math.pi):
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, d, theta, gen)
    data = tasks.sample_regression(teachers.target, n, sigma, gen)
    pre, run = pretrain(tasks.population_data(teachers.source), depth, gen, EngineOptions())
    assert bool(run.converged.all())
    return teachers, data, pre


@pytest.mark.parametrize("solver", ["gd", "whitened"])
def test_no_control_with_a_unique_minimiser_or_one_layer(seed, solver):
    """``n = 2d``: every run ends at ``beta*``; the first layer alone: no imbalance between
    trained layers.  The rule then takes the plain adaptive steps exactly: same step
    count, same last step, same weights.  The former control does slow the ``n >= d`` run
    down, so the equality is not vacuous."""
    for n, layers in ((60, None), (15, (1,))):
        teachers, data, pre = _problem(seed, 30, n, 0.5, 3, 4)
        runs = {}
        for rule in ("end_point", "plain", "drift_control"):
            weights, run = fine_tune(pre, data, EngineOptions(solver=solver, fine_tune_step_rule=rule), layers=layers)
            assert bool(run.converged.all())
            runs[rule] = (weights, run)
        (w_new, r_new), (w_plain, r_plain) = runs["end_point"], runs["plain"]
        assert torch.equal(r_new.steps, r_plain.steps) and torch.equal(r_new.step_size, r_plain.step_size), (n, layers)
        for a, b in zip(w_new, w_plain):
            assert torch.equal(a, b), (n, layers)
        assert r_new.drift is None  # no budget was set: nothing metered
        if layers is None:
            assert bool((runs["drift_control"][1].steps > r_plain.steps).all())


def test_an_unlimited_budget_is_plain_descent(seed):
    teachers, data, pre = _problem(seed, 30, 15, 0.5, 2, 3)
    out = {}
    for budget in (None, torch.full((3,), math.inf, dtype=torch.float64)):
        weights = [w.clone() for w in pre]
        run = gradient_descent(weights, data, tol=1e-9, step_scale=1.5, drift_budget=budget)
        out[budget is None] = (weights, run)
    assert torch.equal(out[True][1].steps, out[False][1].steps)
    assert torch.equal(end_to_end(out[True][0]), end_to_end(out[False][0]))
    assert out[False][1].drift is not None and bool((out[False][1].drift > 0).all())  # metered all the same


@pytest.mark.parametrize("depth", [2, 3])
def test_sensitivity_is_the_derivative_of_the_balanced_end_point(seed, depth):
    """``S = epsilon / B`` against a central difference of the independently computed end
    point in ``Delta`` (step 1e-5; the difference is accurate to ~1e-9 relative)."""
    teachers, data, pre = _problem(seed, 40, 16, 0.5, depth, 5)
    accuracy = 1e-3
    slope = accuracy / end_point_budget(pre, data, accuracy)
    beta_s = end_to_end([w.to(torch.float64) for w in pre])
    h = 1e-5
    numeric = (_balanced(data, beta_s, depth, h) - _balanced(data, beta_s, depth, -h)).norm(dim=-1) / (2 * h)
    np.testing.assert_allclose(slope.numpy(), numeric.numpy(), rtol=1e-5)


def test_bad_options_and_budgets_raise(seed):
    with pytest.raises(ValueError, match="fine_tune_step_rule must be one of end_point, drift_control, plain"):
        EngineOptions(fine_tune_step_rule="exact")
    for bad in (0.0, -1e-3, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"end_point_accuracy must be a number in \(0, inf\)"):
            EngineOptions(end_point_accuracy=bad)
    teachers, data, pre = _problem(seed, 20, 10, 0.0, 3, 2)
    ok = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="drift_budget needs L >= 2 with layers 1 and 2 trained"):
        gradient_descent([w.clone() for w in pre], data, tol=1e-9, drift_budget=ok, trainable=(1, 2))
    with pytest.raises(ValueError, match="drift_budget excludes drift_control and step_size"):
        gradient_descent([w.clone() for w in pre], data, tol=1e-9, drift_budget=ok, drift_control=1e-2)
    with pytest.raises(ValueError, match=r"entries in \(0, inf\]"):
        gradient_descent([w.clone() for w in pre], data, tol=1e-9, drift_budget=-ok)
    with pytest.raises(ValueError, match=r"shape \(R,\) = \(2,\)"):
        gradient_descent([w.clone() for w in pre], data, tol=1e-9, drift_budget=torch.ones(3, dtype=torch.float64))


def _accuracy_check(seed, d, n, sigma, depth, replicates, solver):
    """Per replicate: ``|beta_end - beta_bal| <= epsilon (1 + 0.05) + A`` and the metered
    drift below its budget; then the shift of ``T_ft`` against its bound by a one-sided
    paired t-test; plain descent for contrast.  ``A``: the end point is reached within the
    tolerance (excess <= 1e-9, so ``|P beta - beta*| <= 3.2e-5`` in the whitened metric, at
    most ``3.2e-5 / sqrt(mu_min)`` for ``gd``) and from weights balanced up to the
    ``O(alpha^2)`` residue; ``A = 2e-4`` covers both at these sizes (``mu_min > 0.05``).  The
    5 % covers the second-order term of the first-order prediction (relative ``O(S B)``)."""
    teachers, data, pre = _problem(seed, d, n, sigma, depth, replicates)
    beta_s = end_to_end([w.to(torch.float64) for w in pre])
    reference = _balanced(data, beta_s, depth)
    eps = EngineOptions().end_point_accuracy
    out = {}
    for rule in ("end_point", "plain"):
        opts = EngineOptions(solver=solver, fine_tune_step_rule=rule)
        weights, run = fine_tune(pre, data, opts)
        assert bool(run.converged.all()), rule
        beta = end_to_end([w.to(torch.float64) for w in weights])
        shift = tasks.risk(reference, teachers.target) - tasks.risk(beta, teachers.target)  # T_ft - T_bal
        bound = eps * (2 * (beta - teachers.target).norm(dim=-1) + eps)
        out[rule] = dict(error=(beta - reference).norm(dim=-1), run=run, excess=shift.abs() - bound)
    new = out["end_point"]
    assert float(new["error"].max()) <= eps * 1.05 + 2e-4, float(new["error"].max())
    budget = end_point_budget(pre, data, eps)
    assert bool((new["run"].drift <= budget * (1 + 1e-12)).all())
    # one-sided paired test of H0: E(|T_ft - T_bal| - bound) >= 0 (rejected: the shift is within the bound)
    stat = mean_se(new["excess"].numpy())
    t_star = t_critical(stat.df, FAMILY_ALPHA, comparisons=2, two_sided=False)
    assert stat.mean + t_star * stat.se < 0, (stat, t_star)
    # plain descent misses the balanced end point by far more than epsilon, and its T shift exceeds the bound
    plain = mean_se(out["plain"]["excess"].numpy())
    assert plain.mean - t_star * plain.se > 0, plain
    assert float(out["plain"]["error"].max()) > 10 * eps
    return new["run"], out["plain"]["run"]


@pytest.mark.parametrize("depth", [2, 3])
def test_end_point_within_the_stated_accuracy_whitened(seed, depth):
    """``n = d/2``, ``sigma = 1``: the whitened solver (the paper preset's)."""
    _accuracy_check(seed, 40, 20, 1.0, depth, 12, "whitened")


def test_end_point_within_the_stated_accuracy_gd(seed):
    """``gd`` on the empirical loss, ``L = 2``, ``n = d/2`` (``mu_min ~ 0.09``)."""
    new, plain = _accuracy_check(seed, 30, 15, 0.5, 2, 10, "gd")
    assert int(new.steps.max()) > int(plain.steps.max())  # the control is active


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.0, 0.2])
def test_end_point_within_the_stated_accuracy_paper_size(seed, sigma):
    """The paper preset's size and solver (``d = 500``, 20 replicates, whitened)."""
    _accuracy_check(seed, 500, 250, sigma, 2, 20, "whitened")
