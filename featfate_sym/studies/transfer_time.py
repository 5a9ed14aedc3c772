"""The time course of transfer: T(t) of the three protocols, theory (L = 1) and simulation (L = 1..4).

Model (SPEC section 1): isotropic Gaussian inputs, unit teachers at angle ``theta`` (the pair
uniformly rotated), label noise ``sigma``, ``n = gamma d`` target samples; training loss
``(1/n)|X beta - y|^2``, full-batch gradient descent ``W <- W - eta dLoss/dW`` with a fixed
small step, time ``t = eta * steps``.  The three protocols train on the *same* data set
(paired): scratch from ``beta = 0`` (L = 1) or from small initialisation
(``training.small_init``, scale ``alpha``; L >= 2); fine-tuning of every layer from the
balanced pretrained network with end-to-end vector ``beta_s`` (``sgd.balanced_at``); linear
transfer trains the readout only, from its pretrained value (L = 1: the one-feature model
``beta = a beta_s``, ``a(0) = 1``).  ``T_p(t) = R_sc(t) - R_p(t)`` per replicate.

Theory (L = 1, proportional limit; :mod:`featfate_sym.transfer_curves`):
``ft.transferability_time`` = ``(2 cos(theta) - 1) R_sc(t; sigma = 0)`` (no noise dependence),
``lt.transferability_time`` = ``scratch.risk_time - lt.risk_time``.  Linear transfer's curve
does not depend on the depth (the frozen features of a balanced unit network have
``W_<L W_<L^T = P_s``), so for L >= 2 the simulated ``T_lt`` differs from L = 1 only through
scratch.

Time to transfer: the first time a protocol's replicate-mean risk has covered a fraction ``f``
(0.9) of the way from its start to its end value (:func:`transfer_curves.time_to_fraction`);
time to learn is the same for scratch.  At L = 1 without noise the two are *equal* for every
``theta`` (derived: ``R_ft(t) - R_ft(oo) = 2(1 - cos theta) [R_sc(t) - R_sc(oo)]``).  What the
mode dynamics (``dln.time_to_learn``, Saxe et al. 2014) predicts for L >= 2: scratch from a
small initialisation spends a plateau escaping ``u0`` (``log(1/u0)`` at L = 2, ``u0^(-(L-2)/L)``
above), which grows with depth, while the pretrained network starts with O(1) layers and no
plateau (the balanced preconditioner ``|beta|^(2-2/L) (I + (L-1) P_beta)`` at ``|beta| = 1`` is
never small), so time-to-transfer stays O(1) and the ratio to time-to-learn falls with L.

Reference: Advani & Saxe (2017); Saxe, McClelland & Ganguli (2014); Lampinen & Ganguli (ICLR
2019); model of Tahir, Ganguli & Rotskoff, arXiv 2410.08194.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featfate_sym import transfer_curves
from featfate_sym.registry import get

__all__ = ["PROTOCOLS", "TransferCurves", "simulate_transfer_curves", "time_to_transfer_table",
           "mode_time", "figures"]

PROTOCOLS = ("scratch", "linear transfer", "fine-tuning")


@dataclass(frozen=True)
class TransferCurves:
    """Simulated risks along training: ``times`` ``(K,)`` and ``risks[protocol]`` ``(K, R)``
    (``|beta - beta_t|^2`` per replicate, same data for every protocol); ``mode0`` ``(R,)``
    the initial mode strength of scratch, ``prod_{l<L} sigma_max(W_l) |W_L|``."""

    times: np.ndarray
    risks: dict
    mode0: np.ndarray

    def transferability(self, protocol: str) -> np.ndarray:
        """``R_sc - R_protocol`` per replicate, ``(K, R)`` (paired)."""
        return self.risks["scratch"] - self.risks[protocol]


def _validate(gamma, theta, sigma, dim, depth, eta, steps, replicates, init_scale):
    checks = [
        ("gamma", gamma, gamma > 0 and math.isfinite(gamma), "(0, inf)"),
        ("theta", theta, 0 <= theta <= math.pi, "[0, pi]"),
        ("sigma", sigma, sigma >= 0 and math.isfinite(sigma), "[0, inf)"),
        ("eta", eta, eta > 0 and math.isfinite(eta), "(0, inf)"),
        ("init_scale", init_scale, init_scale > 0 and math.isfinite(init_scale), "(0, inf)"),
    ]
    for name, value, ok, domain in checks:
        if not ok:
            raise ValueError(f"parameter {name} must be in {domain} (got {value!r})")
    for name, value, low in (("dim", dim, 2), ("depth", depth, 1), ("steps", steps, 1), ("replicates", replicates, 2)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"parameter {name} must be an integer >= {low} (got {value!r})")
    if int(round(gamma * dim)) < 1:
        raise ValueError(f"parameter gamma must give n = round(gamma d) >= 1 samples (got gamma = {gamma!r}, d = {dim})")


def simulate_transfer_curves(gamma: float, theta: float, sigma: float, dim: int, *, depth: int, eta: float,
                             steps: int, replicates: int, seed: int, init_scale: float = 0.1,
                             record: np.ndarray | None = None) -> TransferCurves:
    """Full-batch gradient descent of the three protocols on the same target data (see the
    module docstring), ``steps`` steps of size ``eta``; the risks are recorded after the
    steps in ``record`` (sorted step indices, default every step, 0 = the start).  A
    non-finite risk raises ``DivergenceError`` naming the step."""
    from featfate_sym.simulation import tasks
    from featfate_sym.simulation.sgd import apply_gradient, balanced_at
    from featfate_sym.simulation.training import right_products
    from featfate_sym.simulation.training import DivergenceError, end_to_end, rmatvec, small_init

    _validate(gamma, theta, sigma, dim, depth, eta, steps, replicates, init_scale)
    record = np.arange(steps + 1) if record is None else np.unique(np.asarray(record, int))
    if record[0] < 0 or record[-1] > steps:
        raise ValueError(f"parameter record must hold step indices in [0, {steps}]")
    n = int(round(gamma * dim))
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, dim, theta, gen)
    data = tasks.sample_regression(teachers.target, n, sigma, gen, keep_design=False)
    source = teachers.source

    if depth == 1:
        nets = {"scratch": [torch.zeros(replicates, dim, dtype=torch.float64)],
                "fine-tuning": [source.clone()]}
    else:
        nets = {"scratch": small_init(replicates, dim, depth, gen, scale=init_scale),
                "fine-tuning": balanced_at(source, depth, gen)}
        nets["linear transfer"] = [w.clone() for w in nets["fine-tuning"]]
    mode0 = nets["scratch"][-1].norm(dim=-1)
    for w in nets["scratch"][:-1]:
        mode0 = mode0 * torch.linalg.matrix_norm(w, ord=2)
    trainable = {"scratch": [True] * depth, "fine-tuning": [True] * depth,
                 "linear transfer": [False] * (depth - 1) + [True]}
    # L = 1 linear transfer: beta = a beta_s, loss a^2 q - 2 a r (+ const) with q = beta_s^T Sxx beta_s
    gram = (rmatvec(data.sxx, source) * source).sum(-1)
    cross = (data.sxy * source).sum(-1)
    coef = torch.ones(replicates, dtype=torch.float64)

    def betas():
        out = {p: end_to_end(w) for p, w in nets.items()}
        if depth == 1:
            out["linear transfer"] = coef.unsqueeze(-1) * source
        return out

    recorded = {p: [] for p in PROTOCOLS}
    wanted = set(int(k) for k in record)

    def keep():
        for p, beta in betas().items():
            r = tasks.risk(beta, teachers.target)
            if not bool(torch.isfinite(r).all()):
                raise DivergenceError(f"gradient descent of {p} diverged with step size eta = {eta:.6g}")
            recorded[p].append(r.numpy().copy())

    if 0 in wanted:
        keep()
    for k in range(1, steps + 1):
        for p, weights in nets.items():
            right = right_products(weights)
            g = 2.0 * (rmatvec(data.sxx, right[0]) - data.sxy)
            apply_gradient(weights, right, g, eta, trainable[p])
        if depth == 1:
            coef = coef - eta * 2.0 * (gram * coef - cross)
        if k in wanted:
            keep()
    return TransferCurves(times=eta * record.astype(float), risks={p: np.stack(v) for p, v in recorded.items()},
                          mode0=mode0.numpy())


def mode_time(u0: float, depth: int, fraction: float = 0.9, s: float = 1.0, tau: float = 0.5) -> float:
    """``dln.time_to_learn`` of one balanced mode from ``u0`` to ``fraction * s`` (population
    loss, ``tau = 1/2`` for the loss without 1/2): the mode-dynamics time to learn."""
    return float(get("dln.time_to_learn").evaluate(s=s, u0=u0, uf=fraction * s, tau=tau, L=depth))


def _fraction_time(times, curve, fraction):
    return transfer_curves.time_to_fraction(times[1:], curve[1:], fraction, end=curve[-1]) \
        if curve[0] != curve[-1] else math.nan


def time_to_transfer_table(gamma: float, thetas, depths, *, dim: int, eta: float, steps: int, replicates: int,
                           seed: int, init_scale: float = 0.1, fraction: float = 0.9, sigma: float = 0.0):
    """Rows ``(L, theta, t_learn (scratch), t_transfer (fine-tuning), ratio, t_mode (scratch,
    dln.time_to_learn from the replicate-mean u0), t_theory (L = 1 flow))`` of the time to
    cover ``fraction`` of the way to the end value, on replicate-mean curves recorded on a
    log grid.  The last recorded value is the end value: ``steps`` must reach convergence."""
    rows = []
    record = np.unique(np.concatenate([[0], np.geomspace(1, steps, 300).astype(int)]))
    for depth in depths:
        for j, theta in enumerate(thetas):
            run = simulate_transfer_curves(gamma, theta, sigma, dim, depth=depth, eta=eta, steps=steps,
                                           replicates=replicates, seed=seed + 100 * depth + j,
                                           init_scale=init_scale, record=record)
            sc = run.risks["scratch"].mean(1)
            ft = run.risks["fine-tuning"].mean(1)
            t_learn = _fraction_time(run.times, sc, fraction)
            t_transfer = _fraction_time(run.times, ft, fraction)
            t_mode = mode_time(float(run.mode0.mean()), depth, fraction) if depth >= 2 else math.nan
            if depth == 1:
                t_theory = transfer_curves.theory_time_to_fraction(
                    lambda tt, th=theta: transfer_curves.ft_risk_time(gamma, th, sigma, tt), fraction)
            else:
                t_theory = math.nan
            rows.append((depth, theta, t_learn, t_transfer, t_transfer / t_learn, t_mode, t_theory))
    return rows


def figures(out: Path, quick: bool = False) -> list[Path]:
    """``transfer_time_curves.png/pdf``: ``T_ft(t)`` and ``T_lt(t)`` for L = 1..4 (simulation
    points, replicate mean +- SE, with the L = 1 theory lines in every panel); and
    ``transfer_time_ratio.png/pdf``: time to transfer over time to learn against theta."""
    from matplotlib.figure import Figure

    from featfate_sym.plotting import style

    res = style.resolution(quick)
    gamma, theta, sigma, alpha = 0.5, math.pi / 4, 0.5, 0.1
    dim, replicates = (40, 4) if quick else (150, 12)
    eta, steps = (0.02, 600) if quick else (0.01, 4000)
    record = np.unique(np.concatenate([[0], np.geomspace(1, steps, 18 if quick else 30).astype(int)]))
    paths = []
    with style.figure_style():
        fig = Figure(figsize=(10.0, 3.6))
        axes = fig.subplots(1, 4, sharey=True)
        t_line = np.geomspace(eta, eta * steps, 30 if quick else 120)
        theory = {
            "fine-tuning": [transfer_curves.ft_transferability_time(gamma, theta, tt) for tt in t_line],
            "linear transfer": [transfer_curves.lt_transferability_time(gamma, theta, sigma, tt) for tt in t_line],
        }
        colors = {"fine-tuning": "C0", "linear transfer": "C1"}
        for depth, ax in zip((1, 2, 3, 4), axes):
            run = simulate_transfer_curves(gamma, theta, sigma, dim, depth=depth, eta=eta, steps=steps,
                                           replicates=replicates, seed=31 + depth, init_scale=alpha, record=record)
            for p in ("fine-tuning", "linear transfer"):
                ax.plot(t_line, theory[p], color=colors[p], lw=1.2, ls="-" if depth == 1 else ":",
                        label=f"{p}, L = 1 theory" if depth == 1 else None)
                tr = run.transferability(p)[1:]
                se = tr.std(1, ddof=1) / math.sqrt(replicates)
                ax.errorbar(run.times[1:], tr.mean(1), yerr=se, fmt="o", ms=3, color=colors[p], capsize=2,
                            label=f"{p}, simulation" if depth == 1 else None)
            ax.axhline(0.0, color="0.5", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel(r"$t = \eta \times$ steps")
            ax.set_title(f"L = {depth}" + (" (dotted: L = 1 theory)" if depth > 1 else ""), fontsize=9)
        axes[0].set_ylabel(r"$\mathcal{T}(t) = \mathcal{R}_{\mathrm{sc}}(t) - \mathcal{R}(t)$")
        axes[0].legend(fontsize=8, loc="upper right")
        fig.suptitle(rf"$\gamma={gamma:g}$, $\theta=\pi/4$, $\sigma={sigma:g}$, $d={dim}$, {replicates} paired runs, "
                     rf"$\eta={eta:g}$, scratch init $\alpha={alpha:g}$", fontsize=9)
        paths += style.save(fig, out, "transfer_time_curves", res["dpi"])

        thetas = np.linspace(math.pi / 12, math.pi / 2, 3 if quick else 6)
        depths = (1, 2, 3) if quick else (1, 2, 3, 4)
        rows = time_to_transfer_table(gamma, thetas, depths, dim=dim, eta=eta, steps=steps,
                                      replicates=replicates, seed=7, init_scale=alpha)
        fig = Figure(figsize=(6.0, 4.2))
        ax = fig.subplots()
        for depth in depths:
            sel = [r for r in rows if r[0] == depth]
            ax.plot([r[1] for r in sel], [r[4] for r in sel], "o-", color=f"C{depth - 1}", ms=4,
                    label=rf"$L={depth}$ (simulation)")
        ax.axhline(1.0, color="C0", ls="--", lw=1, label=r"$L=1$ theory: equal times, every $\theta$")
        # head room for a two-column legend above the curves
        ax.set_ylim(0.0, 1.4 * float(np.nanmax([r[4] for r in rows] + [1.0])))
        style.theta_axis(ax.xaxis)
        ax.set_xlabel(style.LABELS["theta"])
        ax.set_ylabel(r"time to transfer / time to learn (90% of the way)")
        ax.set_title(rf"fine-tuning vs scratch, $\gamma={gamma:g}$, $\sigma=0$, $\alpha={alpha:g}$, $d={dim}$",
                     fontsize=9)
        ax.legend(fontsize=8, ncol=2, loc="upper right")
        paths += style.save(fig, out, "transfer_time_ratio", res["dpi"])
    return paths
