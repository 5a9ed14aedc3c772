"""Fine-tuning a chosen set of layers: ``fine_tune(..., layers=...)`` and
``ft.transferability_first_layer``.

Independent expectations: the end point ``X^+ y + (I - P) beta_s`` computed from each
replicate's own design (first layer only), and the exact finite-size mean
``E T = (1 - n/d)(2 cos theta - 1)`` (``E P = (n/d) I`` for a Gaussian design), which is
the registered limit at ``gamma = n/d``.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

import featfate_sym as ff
from featfate_sym.simulation import tasks
from featfate_sym.simulation.deep_linear import EngineOptions, fine_tune, pretrain
from featfate_sym.stats import compare, paired_difference, t_critical

from checks import FAMILY_ALPHA

THEORY = ff.get("ft.transferability_first_layer")
EXACT = ff.get("ft.transferability_exact")


def test_the_first_layer_result_is_the_c_equals_one_form_for_every_noise():
    paper = ff.get("ft.transferability").expr
    assert sp.simplify(THEORY.expr - paper) == 0
    assert THEORY.inert == ("sigma",) and "sigma" in THEORY.param_names
    assert THEORY.status.exact and THEORY.status.source.name == "DERIVED"
    # and it differs from all-layer balanced flow wherever there is noise and depth
    assert THEORY.evaluate(gamma=0.5, theta=1.0, sigma=1.0) != pytest.approx(
        EXACT.evaluate(gamma=0.5, theta=1.0, sigma=1.0, L=2), abs=1e-3)


def _run(d, n, sigma, depth, replicates, seed, layers):
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, d, math.pi / 4, gen)
    target = tasks.sample_regression(teachers.target, n, sigma, gen)
    opts = EngineOptions(solver="whitened")
    pre, _ = pretrain(tasks.population_data(teachers.source), depth, gen, opts)
    out = {}
    for name, chosen in layers.items():
        weights, run = fine_tune(pre, target, opts, layers=chosen)
        assert bool(run.converged.all()), name
        beta = weights[-1]
        for w in reversed(weights[:-1]):
            beta = (w @ beta.unsqueeze(-1)).squeeze(-1)
        out[name] = beta.to(torch.float64)
    return teachers, target, pre, out


def _transferability(teachers, target, beta):
    sc = target.minimiser
    return ((sc - teachers.target) ** 2).sum(-1) - ((beta - teachers.target) ** 2).sum(-1)


def test_first_layer_ends_at_the_scratch_solution_plus_the_pretrained_null_space():
    d, n = 30, 12
    teachers, target, pre, out = _run(d, n, 1.0, 3, 6, seed=3, layers={"first": (1,)})
    x = target.design
    proj = torch.linalg.pinv(x) @ x
    beta_s = pre[-1]
    for w in reversed(pre[:-1]):
        beta_s = (w @ beta_s.unsqueeze(-1)).squeeze(-1)
    null = beta_s - (proj @ beta_s.unsqueeze(-1)).squeeze(-1)
    predicted = target.minimiser + null
    err = (out["first"] - predicted).norm(dim=-1).max()
    assert float(err) < 2e-3, float(err)
    # the frozen layers did not move, by construction of the update
    with pytest.raises(ValueError, match=r"layers must be distinct integers in \[1, 3\]"):
        fine_tune(pre, target, EngineOptions(), layers=(0,))
    with pytest.raises(ValueError, match="layers must be"):
        fine_tune(pre, target, EngineOptions(), layers=(1, 1))


CELLS = [(sigma, depth) for sigma in (0.0, 1.0) for depth in (2, 3)]


def test_first_layer_and_all_layer_fine_tuning_against_theory(seed):
    """d = 40, n = 20, 40 replicates per cell, theta = pi/4, sigma in {0, 1}, L in {2, 3}.

    First layer: mean T against the exact finite-size value (1 - n/d)(2 cos theta - 1)
    (the registered result at gamma = n/d), Student t with Bonferroni over the 4 cells.
    At sigma = 1 the first-layer and all-layer end points differ: the paired difference
    must be significant (one-sided, same family rate), with the sign of the balanced-flow
    theory; at sigma = 0 they coincide (c = 1) up to the solver."""
    d, n, replicates = 40, 20, 40
    for k, (sigma, depth) in enumerate(CELLS):
        teachers, target, _, out = _run(d, n, sigma, depth, replicates, seed + k,
                                        {"first": (1,), "all": None})
        t_first = _transferability(teachers, target, out["first"]).numpy()
        t_all = _transferability(teachers, target, out["all"]).numpy()
        want = THEORY.evaluate(gamma=n / d, theta=math.pi / 4, sigma=sigma)
        c = compare(want, t_first, alpha=FAMILY_ALPHA, comparisons=2 * len(CELLS), allowance=2e-3)
        assert c.passed, (sigma, depth, str(c))
        diff = paired_difference(t_first, t_all)
        if sigma > 0:
            limit_gap = want - EXACT.evaluate(gamma=n / d, theta=math.pi / 4, sigma=sigma, L=depth)
            crit = t_critical(diff.df, FAMILY_ALPHA, 2 * len(CELLS), two_sided=False)
            assert limit_gap > 0 and diff.mean / diff.se > crit, (sigma, depth, diff, limit_gap)
        else:
            assert abs(diff.mean) < 5e-3, (depth, diff)
