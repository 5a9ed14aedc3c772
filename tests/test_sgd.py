"""Minibatch SGD for deep linear networks (``featfate_sym.simulation.sgd``).

Independent expectations: full-batch gradient descent with the same fixed step
(``training.gradient_descent``) for ``B = n`` without replacement, and the minimum-norm
interpolator ``X^+ y`` (from each replicate's own design, ``torch.linalg.pinv``) for
linear least squares at ``n < d`` started at zero, where every SGD update stays in the
row space of ``X``.
"""

from __future__ import annotations

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
