"""Learning curves: the test risk along training, theory against simulation.

Model (SPEC section 1): isotropic Gaussian inputs, a unit teacher uniform on the sphere,
label noise ``sigma``, ``n = gamma d`` samples; training loss ``(1/n)|X beta - y|^2``,
full-batch gradient descent ``W <- W - eta dLoss/dW`` with a fixed small step; the time
is ``t = eta * steps`` (the time of the gradient flow the descent discretises).

- L = 1 from ``beta = 0``: ``scratch.risk_time`` (proportional limit, quadrature in
  :mod:`featfate_sym.learning_curves`) against the simulator; the discrete curve
  :func:`featfate_sym.learning_curves.risk_gd` at the simulated step shows the
  discretisation gap (below 2e-4 at ``eta = 0.01``).
- L = 2, 3, 4 from small initialisation (``training.small_init``, scale ``alpha``):
  simulation only (there is no registered time course of a deep network on the empirical
  loss).  The plateau of the mode dynamics, ``dln.time_to_learn`` from ``u0`` to ``s/2``
  with ``tau = 1/2`` (the loss without 1/2 on whitened inputs) and ``s = 1`` (the teacher's
  strength), is marked: it applies to a balanced single mode on the population loss
  (``Sxx = I``), so on the empirical loss at ``gamma = 2`` it is indicative of the time at
  which the deep network leaves its plateau, not a prediction of the curve.  ``u0`` is the
  largest mode strength of the initial weights, ``prod_{l<L} sigma_max(W_l) |W_L|``
  (replicate mean; about ``(2 alpha)^(L-1) alpha sqrt(d)``: the edge of the quarter-circle
  law of a square layer and the readout's norm), since gradient descent aligns the layers
  with the teacher during the plateau.  Measured (d = 100, alpha = 0.1, gamma = 2): the
  half-way times are about 0.3, 1 and 3.5 for L = 2, 3, 4 against the marks 0.35, 1.0, 2.6.

Reference: Advani & Saxe (2017) for the L = 1 curve; Saxe, McClelland & Ganguli (2014) for
the mode dynamics; model of Tahir, Ganguli & Rotskoff, arXiv 2410.08194.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from featfate_sym import learning_curves
from featfate_sym.registry import get

__all__ = ["simulate_curve", "plateau_time", "figures"]


def simulate_curve(gamma: float, sigma: float, dim: int, *, depth: int = 1, eta: float, steps: int,
                   replicates: int, seed: int, init_scale: float = 0.0, width: int | None = None):
    """Full-batch gradient descent with a fixed step (the update of ``simulation.sgd``,
    ``apply_gradient``, with the full gradient ``2 (Sxx beta - Sxy)``) from ``beta = 0`` (``depth = 1``, ``init_scale = 0``) or from
    ``small_init(scale=init_scale)``; returns ``(times, risks, overlap0)``: ``times = eta *
    arange(steps + 1)``, ``risks`` of shape ``(steps + 1, R)`` (``|beta - beta_t|^2`` after
    every step, fresh teacher, design and noise per replicate) and the initial mode strength
    ``u0 = prod_{l<L} sigma_max(W_l) |W_L|`` per replicate (``(R,)``; ``|beta(0)|`` for L = 1)."""
    from featfate_sym.simulation import tasks
    from featfate_sym.simulation.sgd import apply_gradient
    from featfate_sym.simulation.training import right_products
    from featfate_sym.simulation.training import DivergenceError, end_to_end, rmatvec, small_init

    n = int(round(gamma * dim))
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, dim, 0.0, gen)
    data = tasks.sample_regression(teachers.target, n, sigma, gen, keep_design=False)
    if init_scale == 0.0:
        if depth != 1:
            raise ValueError("a deep network needs init_scale > 0 (zero is a saddle)")
        weights = [torch.zeros(replicates, dim, dtype=torch.float64)]
    else:
        weights = small_init(replicates, dim, depth, gen, width=width, scale=init_scale)
    # the largest mode strength the initialisation offers: the product of the hidden layers'
    # top singular values and the readout's norm (the layers align with the teacher early)
    mode0 = weights[-1].norm(dim=-1)
    for w in weights[:-1]:
        mode0 = mode0 * torch.linalg.matrix_norm(w, ord=2)
    mode0 = mode0.numpy()
    # the full-batch gradient from the sufficient statistics, 2 (Sxx beta - Sxy): the same
    # update as sgd(batch_size=n) (tests/test_early_stopping.py checks it) without gathering X
    training = [True] * depth
    risks = [tasks.risk(end_to_end(weights), teachers.target)]
    for _ in range(steps):
        right = right_products(weights)
        g = 2.0 * (rmatvec(data.sxx, right[0]) - data.sxy)
        apply_gradient(weights, right, g, eta, training)
        risks.append(tasks.risk(end_to_end(weights), teachers.target))
        if not bool(torch.isfinite(risks[-1]).all()):
            raise DivergenceError(f"gradient descent diverged with step size eta = {eta:.6g}")
    return eta * np.arange(steps + 1), torch.stack(risks).numpy(), mode0


def plateau_time(u0: float, depth: int, s: float = 1.0, tau: float = 0.5) -> float:
    """``dln.time_to_learn`` from ``u0`` to ``s/2`` (the mode's half-way time)."""
    return float(get("dln.time_to_learn").evaluate(s=s, u0=u0, uf=s / 2, tau=tau, L=depth))


def figures(out: Path, quick: bool = False) -> list[Path]:
    """``learning_curves_L1.png/pdf`` (L = 1 theory and simulation at gamma = 0.5 and 2) and
    ``learning_curves_deep.png/pdf`` (L = 1..4 from small initialisation, plateau markers)."""
    from matplotlib.figure import Figure

    from featfate_sym.plotting import style

    res = style.resolution(quick)
    sigma, dim = 0.5, 50 if quick else 200
    replicates = 3 if quick else 12
    paths = []
    with style.figure_style():
        fig = Figure(figsize=(6.0, 4.2))
        ax = fig.subplots()
        t_line = np.geomspace(1e-2, 1e2, 40 if quick else 160)
        for k, gamma in enumerate((0.5, 2.0)):
            color = f"C{k}"
            ax.plot(t_line, [learning_curves.risk_time(gamma, sigma, tt) for tt in t_line], color=color,
                    label=rf"theory (flow), $\gamma={gamma:g}$")
            ax.axhline(float(get("scratch.risk").evaluate(gamma=gamma, sigma=sigma)), color=color, ls=":", lw=1)
            eta = 0.01
            times, risks, _ = simulate_curve(gamma, sigma, dim, eta=eta, steps=1000 if quick else 10000,
                                             replicates=replicates, seed=10 + k)
            pick = np.unique(np.geomspace(1, len(times) - 1, 14).astype(int))
            mean = risks[pick].mean(1)
            se = risks[pick].std(1, ddof=1) / math.sqrt(replicates)
            ax.errorbar(times[pick], mean, yerr=se, fmt="o", ms=4, color=color, capsize=2,
                        label=rf"GD, $\eta={eta:g}$, $d={dim}$, {replicates} runs")
        ax.set_xscale("log")
        ax.set_xlabel(r"$t = \eta \times$ steps")
        ax.set_ylabel(style.LABELS["risk"])
        ax.set_title(rf"L = 1 from zero, $\sigma={sigma:g}$ (dotted: end point)")
        ax.legend(fontsize=8)
        paths += style.save(fig, out, "learning_curves_L1", res["dpi"])

        fig = Figure(figsize=(6.0, 4.2))
        ax = fig.subplots()
        gamma, alpha = 2.0, 0.1
        # below dln.max_stable_step at the end point (1/(L lambda_max |beta|^(2-2/L)), lambda_max ~ 2.9)
        eta, steps = (0.04, 400) if quick else (0.02, 4000)
        for depth in (1, 2, 3, 4):
            times, risks, mode0 = simulate_curve(gamma, sigma, dim, depth=depth, eta=eta, steps=steps,
                                                   replicates=replicates, seed=20 + depth,
                                                   init_scale=alpha if depth > 1 else 0.0)
            color = f"C{depth - 1}"
            ax.plot(times[1:], risks[1:].mean(1), color=color, label=rf"$L={depth}$")
            if depth >= 2:
                u0 = float(mode0.mean())
                t_p = plateau_time(u0, depth)
                if t_p < times[-1]:
                    ax.axvline(t_p, color=color, ls="--", lw=1)
        ax.axhline(float(get("scratch.risk").evaluate(gamma=gamma, sigma=sigma)), color="0.5", ls=":", lw=1,
                   label="min-norm end point")
        ax.set_xscale("log")
        ax.set_xlabel(r"$t = \eta \times$ steps")
        ax.set_ylabel(style.LABELS["risk"])
        ax.set_title(rf"small init $\alpha={alpha:g}$, $\gamma={gamma:g}$, $\sigma={sigma:g}$, $d={dim}$ "
                     "(dashed: mode plateau)", fontsize=9)
        ax.legend(fontsize=8)
        paths += style.save(fig, out, "learning_curves_deep", res["dpi"])
    return paths
