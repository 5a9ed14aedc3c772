"""Benchmarks of the engines and of the compiled theory: the timed computations of
``numerics/bench_simulation.py`` and ``numerics/bench_theory.py``.

* The deep linear engine's per-step time (:func:`engine_step_time`) against a
  conventional autograd implementation on the data matrix
  (:func:`conventional_step_time`) and against the bare arithmetic of a step
  (:func:`floor_step_time`), on the problem :func:`benchmark_problem`; the steps to
  converge of scratch and fine-tuning per solver (:func:`steps_to_converge`).
* Hand-written NumPy baselines of two registry results, ``lt.transferability``
  (:func:`lt_transferability_by_hand`) and ``ft.transferability_exact``
  (:func:`ft_transferability_exact_by_hand`), typed from SPEC.md (sections "Linear
  transfer" and "Fine-tuning ... exact form") independently of the registry, only as the
  benchmark's baseline and cross-check of the compiled functions.

Nothing here prints; torch is imported only by the functions that use it.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace

import numpy as np

__all__ = [
    "benchmark_problem", "best_time", "conventional_step_time", "engine_step_time", "floor_step_time",
    "ft_transferability_exact_by_hand", "lt_transferability_by_hand", "max_abs_difference", "median_time",
    "steps_to_converge",
]


# --- the deep linear engine ---------------------------------------------------------------
def median_time(fn, repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def benchmark_problem(replicates, dim, n, dtype, seed=0):
    """``(data, weights)`` of the per-step benchmarks: ``replicates`` teacher pairs at
    theta = pi/4 in dimension ``dim``, ``n`` target samples at sigma = 0.2 and moderately
    sized depth-2 weights (dtype ``dtype``) from seed ``seed``."""
    import torch

    from featfate_sym.simulation import make_teachers, sample_regression, small_init

    gen = torch.Generator().manual_seed(seed)
    teachers = make_teachers(replicates, dim, math.pi / 4, gen)
    data = sample_regression(teachers.target, n, 0.2, gen)
    # start from moderately sized weights so no step is spent at the plateau
    weights = [w.to(dtype) for w in small_init(replicates, dim, 2, gen, scale=0.1)]
    return data, weights


def engine_step_time(data, weights, dtype, steps):
    """Seconds per step of :func:`~featfate_sym.simulation.gradient_descent` (adaptive step,
    checks every 10)."""
    from featfate_sym.simulation import gradient_descent
    from featfate_sym.simulation.tasks import to_device

    dev_data = to_device(data, "cpu", dtype)

    def run():
        w = [x.clone() for x in weights]
        gradient_descent(w, dev_data, tol=1e-300, max_steps=steps)

    run()  # warm-up
    return median_time(run, 3) / steps


def conventional_step_time(data, weights, dtype, steps):
    """Seconds per step of full-batch autograd training on the data matrix (the
    conventional implementation the engine is measured against)."""
    import torch

    x = data.design.to(dtype)
    y = data.labels.to(dtype)
    n = x.shape[1]

    def run():
        w1 = weights[0].clone().requires_grad_(True)
        w2 = weights[1].clone().requires_grad_(True)
        for _ in range(steps):
            pred = ((x @ w1) @ w2.unsqueeze(-1)).squeeze(-1)
            loss = ((pred - y) ** 2).sum() / n  # sum over replicates of each mean loss
            g1, g2 = torch.autograd.grad(loss, (w1, w2))
            with torch.no_grad():
                w1 -= 0.01 * g1
                w2 -= 0.01 * g2

    run()
    return median_time(run, 3) / steps


def floor_step_time(data, weights, dtype, steps):
    """Seconds per step of the bare arithmetic: 2 products with W_1, one with Sxx, and
    the rank-one and vector updates (L = 2), fixed step, no checks."""
    from featfate_sym.simulation.training import matvec, rmatvec

    sxx = data.sxx.to(dtype)
    sxy = data.sxy.to(dtype)

    def run():
        w1, w2 = (x.clone() for x in weights)
        eta = 0.01
        for _ in range(steps):
            beta = matvec(w1, w2)
            g = 2.0 * (rmatvec(sxx, beta) - sxy)
            a2 = rmatvec(w1, g)
            w1.baddbmm_(g.unsqueeze(-1), w2.unsqueeze(-2), alpha=-eta)
            w2.sub_(eta * a2)

    run()
    return median_time(run, 3) / steps


def steps_to_converge(dim, replicates, gamma, depth, dtype, max_steps, fixed_step, solver="gd"):
    """Steps of scratch and fine-tuning at ``gamma`` (sigma = 0.2, theta = pi/4); the same
    data, pretrained weights and scratch initialisation for every solver.  ``fixed_step``:
    a fixed step size, or ``None`` for the adaptive step; ``solver``: ``"gd"`` or
    ``"whitened"``.  Returns ``{"scratch": (run, seconds), "fine-tune": (run, seconds)}``."""
    import torch

    from featfate_sym.simulation import (EngineOptions, gradient_descent, make_teachers, population_data, pretrain,
                                         sample_regression, small_init)
    from featfate_sym.simulation.deep_linear import end_point_budget, whitened_problem
    from featfate_sym.simulation.tasks import to_device

    gen = torch.Generator().manual_seed(1)
    teachers = make_teachers(replicates, dim, math.pi / 4, gen)
    raw = sample_regression(teachers.target, round(gamma * dim), 0.2, gen)
    data = to_device(raw, "cpu", dtype)
    opts = EngineOptions(max_steps=max_steps, solver=solver).resolved(dtype)
    pre, _ = pretrain(population_data(teachers.source), depth, gen, opts, dtype=dtype)
    out = {}
    if solver == "whitened":
        white, tol = whitened_problem(raw, opts.tol)
        data, opts = to_device(white, "cpu", dtype), replace(opts, tol=tol)
    for label, init in (
        ("scratch", [w.to(dtype) for w in small_init(replicates, dim, depth, gen, scale=opts.init_scale)]),
        ("fine-tune", [w.clone() for w in pre]),
    ):
        # the engine's settings: fine-tuning takes the end-point step rule (adaptive runs, n < d only)
        budget = None
        if label == "fine-tune" and fixed_step is None and raw.projector is not None:
            budget = end_point_budget(pre, raw, opts.end_point_accuracy)
        t0 = time.perf_counter()
        run = gradient_descent(
            init, data, tol=opts.tol, max_steps=max_steps, step_size=fixed_step, drift_budget=budget
        )
        out[label] = (run, time.perf_counter() - t0)
    return out


# --- hand-written theory baselines --------------------------------------------------------
def lt_transferability_by_hand(gamma, theta, sigma, lam):
    """T_lt = R_sc - R_lt, R_sc the double-descent risk, R_lt the ridge readout risk."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r_sc = np.where(gamma < 1, (1 - gamma) + gamma * sigma**2 / (1 - gamma), sigma**2 / (gamma - 1))
        r_sc = np.where(gamma == 1, np.where(sigma > 0, np.inf, 0.0), r_sc)
    r_lt = 1 - (1 + 2 * lam) / (1 + lam) ** 2 * np.cos(theta) ** 2
    return r_sc - r_lt


def ft_transferability_exact_by_hand(gamma, theta, sigma, depth, iterations=100):
    """T_ft = (1-gamma)(2 c^(L-1) cos(theta) - c^(2L-2)) for gamma < 1 (0 above), with c > 0
    the root of c^(2L) - a c^(2L-2) - b, a = 1 - gamma, b = gamma + gamma sigma^2/(1-gamma),
    found by Newton from above (f is increasing and convex right of the root)."""
    below = gamma < 1
    with np.errstate(divide="ignore", invalid="ignore"):
        a = 1 - gamma
        b = gamma + gamma * sigma**2 / a
        c = np.sqrt(a + b ** (1 / depth) + 1.0)  # f(c) > 0 here
        for _ in range(iterations):
            c2 = c * c
            p = c2 ** (depth - 1)
            f = p * c2 - a * p - b
            df = (2 * depth * p * c2 - (2 * depth - 2) * a * p) / c
            step = f / df
            c = c - step
            if np.all(~below | (np.abs(step) <= 4 * np.finfo(float).eps * c)):
                break
        q = c ** (depth - 1)
        return np.where(below, (1 - gamma) * (2 * q * np.cos(theta) - q * q), 0.0)


def best_time(fn, repeat):
    """``(smallest seconds, last output)`` over ``repeat`` calls of ``fn()``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def max_abs_difference(first, second) -> tuple[float, bool]:
    """``(max |first - second| where both are finite (nan if nowhere), whether both are
    finite at the same places)``, ``second`` broadcast to ``first``'s shape."""
    first = np.asarray(first)
    second = np.broadcast_to(np.asarray(second), first.shape)
    finite_a, finite_b = np.isfinite(first), np.isfinite(second)
    both = finite_a & finite_b
    diff = float(np.max(np.abs(first[both] - second[both]))) if both.any() else float("nan")
    return diff, bool(np.array_equal(finite_a, finite_b))
