"""One-dimensional theory curves with simulation points: scratch double descent, the
ridge curve of linear transfer, and transferability against the KL distance.

References: Tahir, Ganguli & Rotskoff, arXiv 2410.08194 — Thms 3.5-3.6 (scratch),
Thm 3.8 (ridge), v1 Thm 2.2 / v2 appendix (distances).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from featfate_sym.plotting import experiment, style
from featfate_sym.plotting.slices import theta_label
from featfate_sym.plotting.theory import gamma_line, on_grid


def scratch(sigmas: Sequence[float] = (0.0, 0.2, 0.5), *, quick: bool = False, results=None) -> Figure:
    """Double descent of the min-norm scratch risk against ``gamma`` for each ``sigma``,
    with the optimally regularised ridge risk (dashed), which has no peak."""
    res = style.resolution(quick)
    gamma = gamma_line(res["line_points"])
    smooth = np.linspace(1e-3, 2.0, res["line_points"])
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    for i, sigma in enumerate(sigmas):
        color = f"C{i}"
        ax.plot(gamma, on_grid("scratch.risk", gamma=gamma, sigma=sigma), color=color, label=rf"min-norm, $\sigma={sigma:g}$")
        ax.plot(smooth, on_grid("scratch.risk_optimal_ridge", gamma=smooth, sigma=sigma), color=color, ls="--",
                label=rf"optimal ridge, $\sigma={sigma:g}$")
        sim = experiment.points(results, "risk_sc", ("gamma",), sigma=sigma)
        if sim is not None:
            ax.errorbar(sim.coords["gamma"], sim.mean, yerr=sim.stderr, fmt="o", color=color, mfc="white")
    ax.axvline(1.0, color="0.8", lw=0.8, ls=":")
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 2.5)
    ax.set_xlabel(style.LABELS["gamma"])
    ax.set_ylabel(r"$\mathcal{R}_{\mathrm{sc}}$")
    ax.set_title("training from scratch")
    ax.legend(loc="upper right")
    return fig


def ridge(gamma: float = 0.5, theta: float = np.pi / 8, sigma: float = 0.2, lam_max: float = 0.6, *,
          quick: bool = False, results=None) -> Figure:
    """Linear-transfer risk ``R_lt(lam)`` (proportional limit: independent of ``gamma``
    and ``sigma``), with simulated means at the given ``gamma``, ``theta``, ``sigma``."""
    res = style.resolution(quick)
    lam = np.linspace(0.0, lam_max, res["line_points"])
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.subplots()
    ax.plot(lam, on_grid("lt.risk", theta=theta, lam=lam), label="theory (proportional limit)")
    sim = experiment.points(results, "risk_lt", ("lam",), gamma=gamma, theta=theta, sigma=sigma)
    if sim is not None:
        ax.errorbar(sim.coords["lam"], sim.mean, yerr=sim.stderr, fmt="o", color="C1", mfc="white",
                    label=rf"simulation, $d={sim.selected.get('d', float('nan')):g}$")
    ax.set_xlim(0, lam_max)
    ax.set_xlabel(style.LABELS["lam"])
    ax.set_ylabel(r"$\mathcal{R}_{\mathrm{lt}}(\lambda)$")
    ax.set_title(rf"$\gamma={gamma:g}$, $\theta=${theta_label(theta)}, $\sigma={sigma:g}$")
    ax.legend(loc="lower right")
    return fig


def kl(sigma: float = 0.2, lam: float = 0.0, gammas: Sequence[float] = (0.25, 0.5, 0.75, 1.5), *,
       quick: bool = False, results=None) -> Figure:
    """``T_lt`` against the KL divergence between the source and target tasks, one curve
    per ``gamma`` (``theta`` runs along each curve from 0 to pi/2).  At one KL value the
    sign of ``T`` depends on ``gamma``: the distance does not order tasks by transfer."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 for the KL divergence (got {sigma:g})")
    res = style.resolution(quick)
    theta = np.linspace(0.0, np.pi / 2, res["line_points"])
    divergence = on_grid("metrics.kl", theta=theta, sigma=sigma)
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    ax.axhline(0.0, color="0.6", lw=0.8)
    for i, gamma in enumerate(gammas):
        ax.plot(divergence, on_grid("lt.transferability", gamma=gamma, theta=theta, sigma=sigma, lam=lam),
                color=f"C{i}", label=rf"$\gamma={gamma:g}$")
    ticks = np.array([np.pi / 6, np.pi / 3])
    for x in on_grid("metrics.kl", theta=ticks, sigma=sigma):
        ax.axvline(x, color="0.85", lw=0.7, ls=":")
    ax.set_xlim(0, divergence.max())
    ax.set_xlabel(r"$\mathrm{KL}(p_s \,\|\, p_t)$")
    ax.set_ylabel(style.LABELS["T_lt"])
    ax.set_title(rf"$\sigma={sigma:g}$; dotted: $\theta=\pi/6,\ \pi/3$")
    ax.legend(loc="best")
    return fig
