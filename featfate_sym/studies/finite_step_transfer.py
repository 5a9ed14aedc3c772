"""Fine-tuning transferability at a finite step: gradient descent and minibatch SGD.

Question: how far does a finite step, and the gradient noise of minibatch SGD, move the
end point of fine-tuning (and with it ``T_ft``) from the gradient-flow value of
``ft.transferability_exact``, in the interpolating regime ``gamma < 1``?

Theory (registered, family ``finite_step``):

- ``ft.transferability_gd``: full-batch GD on the whitened target loss, ``T_exact + eta
  dT/deta`` (the drift of the layer imbalance ``Delta`` along the reduced flow);
- ``ft.transferability_sgd``: minibatch SGD on the empirical loss ``(1/n)|X beta - y|^2``,
  ``T_exact + (eta d/B) 4 dT/dDelta I_noise`` (the minibatch-gradient variance accumulated
  along the proportional-limit flow of the empirical loss), evaluated by
  :func:`featfate_sym.learning_curves.transferability_sgd` (``full_batch=True`` adds the
  ``O(eta)`` full-batch drift of the empirical loss, which matters at ``B ~ d``).

Simulation (:func:`fine_tuning_runs`): per replicate a unit source teacher, a target at
angle ``theta``, ``n = round(gamma d)`` Gaussian rows with label noise ``sigma``, the
balanced rank-one pretrained network at ``beta_s`` (:func:`~featfate_sym.simulation.sgd.balanced_at`).
From the same pretrained weights and data (paired): full-batch GD on the empirical loss
(:func:`~featfate_sym.simulation.sgd.gradient_descent_with_noise_drift`, which also sums
the first-order extra drift of each sampling scheme along that run: the prediction for the
sampled data), and minibatch SGD (:func:`~featfate_sym.simulation.sgd.sgd`) for every
``(B, replacement)``, each to a training loss below ``tol``.  ``T`` per replicate is measured
on the end point: with ``pi = (I-P) beta_s . beta / |(I-P) beta_s|^2`` (``P beta = beta_sc``
there), ``T = |beta_sc - beta_t|^2 - |beta - beta_t|^2 = 2 pi (I-P) beta_s . beta_t - pi^2
|(I-P) beta_s|^2``.  The flow value uses the balanced root of the replicate's own ``a, b``.

Figure (:func:`figures`): ``T_ft`` against ``eta`` at several ``theta`` and ``sigma``: GD
theory (whitened, ``ft.transferability_gd``, and the empirical loss' full-batch drift), SGD
theory at two batch sizes, simulation points (GD on the empirical loss and SGD: ``T_exact``
plus the paired shift from the replicate's own flow value, with standard errors).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import brentq

from featfate_sym import learning_curves
from featfate_sym.registry import get
from featfate_sym.simulation import tasks
from featfate_sym.simulation.sgd import balanced_at, gradient_descent_with_noise_drift, imbalance, sgd
from featfate_sym.simulation.training import end_to_end

__all__ = ["fine_tuning_runs", "end_scale", "figures", "panel_points"]


def end_scale(delta: float, a: float, b: float, depth: int) -> float:
    """The null-space scale ``c`` of the end point with imbalance ``delta``: the root of
    ``Delta = a + b c^(2-2L) - c^2`` (decreasing in ``c``; ``ft.transferability_gd``'s
    ``end_imbalance``), by ``brentq``; a bracket that does not hold raises."""
    def f(c):
        return a + b * c ** (2 - 2 * depth) - c * c - delta

    low, high = 1e-3, 10.0
    while f(low) < 0:
        low /= 10
        if low < 1e-12:
            raise ArithmeticError(f"no end scale for Delta = {delta!r} (a = {a!r}, b = {b!r})")
    while f(high) > 0:
        high *= 10
        if high > 1e6:
            raise ArithmeticError(f"no end scale for Delta = {delta!r} (a = {a!r}, b = {b!r})")
    return brentq(f, low, high, xtol=1e-15, rtol=4 * np.finfo(float).eps)


def fine_tuning_runs(gamma: float, theta: float, sigma: float, depth: int, dim: int, etas, schemes, *,
                     replicates: int, seed: int, tol: float = 1e-11, max_epochs: int = 1_000_000) -> dict:
    """Paired fine-tuning runs (module docstring).  ``etas``: step sizes; ``schemes``:
    ``(B, replacement)`` pairs.  Returns a dict with per-replicate arrays ``(R,)``:
    ``flow`` (T at the balanced root), and for each ``eta``: ``("gd", eta)`` (GD on the
    empirical loss, measured), ``("pred", eta, scheme)`` (first-order SGD prediction along
    the replicate's own GD run), ``("sgd", eta, scheme)`` (SGD, measured), and
    ``("delta_sgd", eta, scheme)`` / ``("delta_pred", eta, scheme)`` (the end imbalance, measured
    and predicted), and the step counts ``("gd_steps", eta)``, ``("sgd_steps", eta, scheme)``.  Every run must converge (``tol`` on the training loss), else
    ``ArithmeticError``.  Needs ``gamma < 1`` and ``L >= 2``."""
    if not 0 < gamma < 1:
        raise ValueError(f"parameter gamma must be in (0, 1) (got {gamma!r})")
    if depth < 2:
        raise ValueError(f"parameter L must be >= 2 for a layer imbalance (got {depth!r})")
    gen = torch.Generator().manual_seed(seed)
    n = int(round(gamma * dim))
    teachers = tasks.make_teachers(replicates, dim, theta, gen)
    data = tasks.sample_regression(teachers.target, n, sigma, gen, keep_design=True)
    start = balanced_at(teachers.source, depth, gen)
    proj = data.projector
    null = teachers.source - (proj @ teachers.source.unsqueeze(-1)).squeeze(-1)
    a_k = (null * null).sum(-1).numpy()
    b_k = (data.minimiser * data.minimiser).sum(-1).numpy()
    null_target = (null * teachers.target).sum(-1).numpy()

    def transfer(pi):
        return 2 * pi * null_target - pi**2 * a_k

    def measured(weights):
        beta = end_to_end(weights)
        return transfer((null * beta).sum(-1).numpy() / a_k)

    def from_delta(delta):
        pis = np.array([end_scale(float(dl), float(a), float(b), depth) ** (depth - 1)
                        for dl, a, b in zip(delta, a_k, b_k)])
        return transfer(pis)

    out = {"flow": from_delta(np.zeros(replicates)), "n": n}
    for eta in etas:
        weights = [w.clone() for w in start]
        run = gradient_descent_with_noise_drift(weights, data, step_size=eta, schemes=tuple(schemes), tol=tol,
                                                max_steps=max_epochs)
        if not bool(run.converged.all()):
            raise ArithmeticError(f"full-batch GD did not reach the loss {tol:g} at eta = {eta:g}")
        out[("gd", eta)] = measured(weights)
        out[("gd_steps", eta)] = run.steps
        delta_gd = run.imbalance.numpy()
        for k, scheme in enumerate(schemes):
            predicted = delta_gd + run.noise[scheme].numpy()
            out[("delta_pred", eta, scheme)] = predicted
            out[("pred", eta, scheme)] = from_delta(predicted)
            batch, replacement = scheme
            weights = [w.clone() for w in start]
            sgen = torch.Generator().manual_seed(seed * 1000 + 17 * k + int(round(1e6 * eta)))
            res = sgd(weights, data, batch_size=batch, epochs=max_epochs, step_size=eta, generator=sgen,
                      replacement=replacement, tol=tol)
            if not bool(res.converged.all()):
                raise ArithmeticError(f"SGD did not reach the loss {tol:g} at eta = {eta:g}, B = {batch}")
            out[("sgd", eta, scheme)] = measured(weights)
            out[("delta_sgd", eta, scheme)] = imbalance(weights).numpy()
            out[("sgd_steps", eta, scheme)] = res.steps
    return out


# -- the figure ---------------------------------------------------------------------------------
#: panels (theta, sigma) of the figure; gamma and depth of every panel (gamma = 0.3: the lower
#: MP edge (1 - gamma^(-1/2))^2 = 0.68 makes the runs converge in few steps)
PANELS = ((math.pi / 3, 0.0), (math.pi / 3, 0.5), (math.pi / 6, 0.5))
GAMMA, DEPTH = 0.3, 2


def panel_points(theta: float, sigma: float, dim: int, etas, batches, replicates: int, seed: int) -> dict:
    """Simulation points of one panel: the paired shift ``T - T_flow`` per replicate (the
    replicate's balanced-root value subtracted, which removes the replicate-to-replicate
    spread of ``T`` and its finite-d offset), mean and standard error over replicates, for GD
    (empirical loss) and SGD (without replacement, the simulator's default) at each batch
    size and step."""
    schemes = tuple((b, False) for b in batches)
    runs = fine_tuning_runs(GAMMA, theta, sigma, DEPTH, dim, etas, schemes, replicates=replicates, seed=seed)
    pts = {}
    for eta in etas:
        for key, values in [("gd", runs[("gd", eta)])] + [(("sgd", s[0]), runs[("sgd", eta, s)]) for s in schemes]:
            shift = values - runs["flow"]
            pts.setdefault(key, []).append((eta, float(np.mean(shift)),
                                            float(np.std(shift, ddof=1) / math.sqrt(len(shift)))))
    return pts


def figures(out: Path, quick: bool = False) -> list[Path]:
    """``finite_step_transfer.png/pdf``: ``T_ft`` against ``eta`` (``gamma = 0.5``, ``L =
    2``), one panel per ``(theta, sigma)`` of ``PANELS``: theory lines (GD on the whitened
    loss, ``ft.transferability_gd``; GD on the empirical loss, its full-batch drift in the
    limit; SGD without replacement at two batch sizes, ``ft.transferability_sgd`` with the
    full-batch drift) and simulation points (GD on the empirical loss and SGD): ``T_exact``
    plus the paired shift ``T - T_flow``, mean +- SE over replicates."""
    from matplotlib.figure import Figure

    from featfate_sym.plotting import style

    res = style.resolution(quick)
    dim, replicates = (30, 4) if quick else (100, 12)
    batches = (1, 3) if quick else (1, 10)
    eta_max = 0.25 * batches[0] / dim  # eta d/B <= 0.25 at the smaller batch
    etas = np.array([1.0]) * eta_max if quick else np.array([0.25, 0.5, 1.0]) * eta_max
    grid = np.linspace(0.0, eta_max * 1.05, 41)
    exact = get("ft.transferability_exact")
    with style.figure_style():
        fig = Figure(figsize=(13.0, 4.8))
        axes = fig.subplots(1, len(PANELS))
        for k, (ax, (theta, sigma)) in enumerate(zip(axes, PANELS)):
            t0 = float(exact.evaluate(gamma=GAMMA, theta=theta, sigma=sigma, L=DEPTH))
            ax.plot(grid, t0 + grid * learning_curves.transferability_gd_slope(GAMMA, theta, sigma, DEPTH),
                    color="0.3", label="GD, whitened loss (ft.transferability_gd)")
            full = learning_curves.transferability_sgd_slope(GAMMA, theta, sigma, DEPTH, 1, dim, full_batch=True) - \
                learning_curves.transferability_sgd_slope(GAMMA, theta, sigma, DEPTH, 1, dim)
            ax.plot(grid, t0 + grid * full, color="0.3", ls=":", label="GD, empirical loss (full-batch drift, limit)")
            for j, b in enumerate(batches):
                slope = learning_curves.transferability_sgd_slope(GAMMA, theta, sigma, DEPTH, b, dim,
                                                                  replacement=False, full_batch=True)
                ax.plot(grid, t0 + grid * slope, color=f"C{j}", ls="--",
                        label=f"SGD, B = {b}, theory (ft.transferability_sgd)")
            pts = panel_points(theta, sigma, dim, etas, batches, replicates, seed=1234 + 7 * k)
            # points: T_exact plus the paired shift T - T_flow (mean +- SE)
            e, m, s = np.array(pts["gd"]).T
            ax.errorbar(e, t0 + m, yerr=s, fmt="s", color="0.3", ms=5, capsize=2,
                        label="GD, empirical loss (simulation)")
            for j, b in enumerate(batches):
                e, m, s = np.array(pts[("sgd", b)]).T
                ax.errorbar(e, t0 + m, yerr=s, fmt="o", color=f"C{j}", ms=5, capsize=2,
                            label=f"SGD, B = {b} (simulation)")
            ax.set_xlabel(r"step size $\eta$")
            ax.set_ylabel(r"transferability $T_{\mathrm{ft}}$")
            ax.set_title(rf"$\theta={theta / math.pi:.3g}\pi$, $\sigma={sigma:g}$, $\gamma={GAMMA:g}$, "
                         rf"$L={DEPTH}$, $d={dim}$", fontsize=10)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=3)
        return style.save(fig, out, "finite_step_transfer", res["dpi"])
