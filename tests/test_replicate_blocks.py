"""Descent in blocks of replicates is the same descent, and the naive readout's shortcut
is the pseudo-inverse's solution.

Blocks: the replicates of a descent are independent (every step size, convergence test
and update is per replicate), so descending them in blocks that fit the cache must give
the numbers of one batch; the tolerance is a few ulps (the batched products may pick a
different kernel for a different batch size), far below anything a mixed-up replicate
would give (O(1)).

Naive readout: where :func:`readout.naive_is_least_squares` certifies the reverse-order
law, ``F (X F)^+ y = X^+ y``; checked against LAPACK's gelsd on ``X F`` itself at the
accuracy gelsd reaches there (relative ``kappa(X F) eps``, about 1e-8 for a feature map
with singular values ``1`` and ``1e-5``), and the certificate must refuse ``n < d`` and a
singular map.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from featfate_sym.simulation import tasks
from featfate_sym.simulation.deep_linear import EngineOptions, fine_tune, pretrain, train_scratch
from featfate_sym.simulation.readout import naive_is_least_squares, refit_readout
from featfate_sym.simulation.training import DivergenceError, gradient_descent, small_init


def _setup(gamma, dim=40, replicates=7, seed=11):
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, dim, math.pi / 3, gen)
    options = EngineOptions(solver="whitened")
    pretrained, _ = pretrain(tasks.population_data(teachers.source), 2, gen, options)
    data = tasks.sample_regression(teachers.target, int(round(gamma * dim)), 0.5, gen)
    return teachers, pretrained, data, options


@pytest.mark.parametrize("gamma", [0.5, 1.5])
def test_blocks_give_the_numbers_of_one_batch(gamma, one_thread):
    _, pretrained, data, options = _setup(gamma)
    # blocks of 2 replicates at gamma = 1.5 (3 x 2 + 1 of a 7-replicate batch), of 4 + 3 at 0.5
    per = 8 * sum(w[0].numel() for w in pretrained)
    runs = {}
    for name, block in (("one batch", 0), ("blocks", 2 * per + per // 2)):
        opts = replace(options, block_bytes=block)
        weights, run = fine_tune(pretrained, data, opts)
        scratch, scratch_run = train_scratch(data, 2, torch.Generator().manual_seed(3), opts)
        runs[name] = (weights, run, scratch, scratch_run)
    (w0, r0, s0, q0), (w1, r1, s1, q1) = runs["one batch"], runs["blocks"]
    for a, b in zip(w0 + s0, w1 + s1):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    for a, b in ((r0, r1), (q0, q1)):
        assert torch.equal(a.steps, b.steps) and torch.equal(a.converged, b.converged)
        torch.testing.assert_close(a.loss, b.loss, rtol=1e-10, atol=1e-15)
    if gamma < 1:  # the end-point rule meters the drift per replicate
        torch.testing.assert_close(r0.drift, r1.drift, rtol=1e-10, atol=1e-18)


def test_block_size_must_be_a_byte_count():
    with pytest.raises(ValueError, match="block_bytes"):
        EngineOptions(block_bytes=-1)
    with pytest.raises(ValueError, match="block_bytes"):
        EngineOptions(block_bytes=1.5)


def test_divergence_names_the_replicate_of_the_whole_batch():
    _, _, data, _ = _setup(0.5, replicates=2)
    weights = small_init(2, data.sxy.shape[-1], 2, torch.Generator().manual_seed(0), scale=1.0)
    with pytest.raises(DivergenceError, match=r"replicate 7\b"):
        gradient_descent(weights, data, tol=1e-9, step_size=50.0, first_replicate=7)


@pytest.mark.parametrize("gamma", [1.0, 1.5, 3.0])
def test_certified_naive_readout_is_the_pseudo_inverse_solution(gamma, one_thread):
    _, pretrained, data, _ = _setup(gamma)
    fmap = pretrained[0]
    assert bool(naive_is_least_squares(fmap, data).all())
    fit = refit_readout(fmap, data, 0.0, rank_tol=math.sqrt(1e-5))
    w = torch.linalg.lstsq(data.design @ fmap, data.labels.unsqueeze(-1), driver="gelsd").solution
    direct = (fmap @ w).squeeze(-1)
    err = (fit.beta_naive - direct).norm(dim=-1) / direct.norm(dim=-1)
    assert float(err.max()) < 1e-6
    # and it is the least-squares fit in input space, to rounding
    torch.testing.assert_close(fit.beta_naive, data.minimiser, rtol=0, atol=1e-12)


def test_certificate_refuses_what_the_law_does_not_cover():
    _, pretrained, data, _ = _setup(0.5)
    assert not bool(naive_is_least_squares(pretrained[0], data).any())  # n < d
    _, pretrained, data, _ = _setup(1.5)
    singular = pretrained[0].clone()
    singular[:, :, -1] = singular[:, :, 0]  # two equal columns: rank d - 1
    assert not bool(naive_is_least_squares(singular, data).any())
    fit = refit_readout(singular, data, 0.0, rank_tol=math.sqrt(1e-5))  # gelsd decides
    w = torch.linalg.lstsq(data.design @ singular, data.labels.unsqueeze(-1), driver="gelsd").solution
    torch.testing.assert_close(fit.beta_naive, (singular @ w).squeeze(-1), rtol=0, atol=1e-12)
