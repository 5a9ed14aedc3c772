"""Transferability against data-centric distances (KL, W2^2) over the paper's
``(theta, gamma)`` grid, with the counterexample family ``beta_t = a beta_s``.

Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194 -- v1 Thm 2.2 and the v2 appendix
(data-centric distances do not predict transfer).  Numbers come from
:mod:`featfate_sym.studies.distances_vs_transfer`; nothing here computes a distance.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from featfate_sym.studies import distances_vs_transfer as dvt
from featfate_sym.plotting import style

#: sequential, colour-blind-safe map for the sample ratio (not a transferability)
GAMMA_CMAP = "viridis"

_DISTANCE_LABELS = {
    "kl": r"$\mathrm{KL}(p_s \,\|\, p_t)$",
    "w2": r"$W_2^2(p_s, p_t)$",
}


def distances(sigma: float = 0.2, lam: float = 0.0, gamma: float = 0.5, scale_max: float = 2.0, *,
              quick: bool = False, results=None) -> Figure:
    """Three panels: ``T`` against KL and against W2^2 for unit teachers over the paper's
    ``(theta, gamma)`` grid (dots coloured by ``gamma``), with the counterexample family
    ``a beta_s``, ``a`` in ``[1, scale_max]`` at ``gamma`` (black line) and the explicit
    nearer-but-worse pair (open markers); then KL, W2^2, ``T`` and ``R_lt`` of the
    counterexample against ``a``: the distances grow without bound while ``R_lt = 0``.

    ``results`` is accepted for the common figure interface and unused (the comparison is
    theory only).  ``sigma > 0`` (the KL divergence is infinite without noise).
    """
    if not sigma > 0:
        raise ValueError(f"parameter sigma must be > 0 for the KL divergence (got {sigma!r})")
    if not scale_max > 1:
        raise ValueError(f"parameter scale_max must be > 1 (got {scale_max!r})")
    res = style.resolution(quick)
    grid = dvt.theta_gamma_grid(sigma, lam)
    family = dvt.counterexample_family(gamma, sigma, np.linspace(1.0, scale_max, res["line_points"] // 4))
    pair = dvt.nearer_but_worse_pair(gamma, sigma)
    norm = Normalize(vmin=float(grid.gamma.min()), vmax=float(grid.gamma.max()))
    cmap = colormaps[GAMMA_CMAP]

    fig = Figure(figsize=(11.5, 3.8))
    axes = fig.subplots(1, 3)
    for ax, name in zip(axes[:2], ("kl", "w2")):
        ax.axhline(0.0, color="0.6", lw=0.8)
        dots = ax.scatter(getattr(grid, name), grid.transfer, c=grid.gamma, cmap=cmap, norm=norm, s=9,
                          linewidths=0)
        ax.plot(getattr(family, name), family.transfer, color="black",
                label=rf"$\beta_t = a\beta_s$, $a\in[1,{scale_max:g}]$, $\gamma={gamma:g}$")
        for task, marker, text in ((pair.nearer, "o", "nearer"), (pair.farther, "s", "farther")):
            ax.plot(getattr(task, name), task.transfer, marker=marker, ms=8, mfc="white", mec="C1", mew=1.5,
                    ls="none", label=rf"{text}: $\theta={np.degrees(task.theta):.0f}^\circ$, $a={task.scale:g}$")
        ax.set_xlabel(_DISTANCE_LABELS[name])
        ax.set_ylabel(style.LABELS["T_lt"])
        ax.set_xlim(left=0.0)
    axes[0].legend(loc="center right")
    axes[0].set_title(rf"unit teachers, $\theta\in(0,\pi/2]$; $\sigma={sigma:g}$, $\lambda={lam:g}$")
    axes[1].set_title("same tasks, Wasserstein-2")
    bar = fig.colorbar(dots, ax=axes[:2], shrink=0.9, pad=0.01)
    bar.set_label(style.LABELS["gamma"])

    # the counterexample alone, over a wider range of a: unbounded distances, R_lt = 0
    wide = dvt.counterexample_family(gamma, sigma, np.linspace(1.0, 4.0 * scale_max, res["line_points"] // 4))
    r_lt = dvt.lt_risk(0.0, wide.scale, 0.0)
    ax = axes[2]
    ax.plot(wide.scale, wide.kl, color="C0", label=_DISTANCE_LABELS["kl"])
    ax.plot(wide.scale, wide.w2, color="C2", label=_DISTANCE_LABELS["w2"])
    ax.plot(wide.scale, wide.transfer, color="black", ls="--", label=style.LABELS["T_lt"])
    ax.plot(wide.scale, r_lt, color="C1", lw=2.4, label=r"$\mathcal{R}_{\mathrm{lt}}$ (stays $0$)")
    ax.set_yscale("symlog", linthresh=1e-1)
    ax.set_xlim(1.0, wide.scale.max())
    ax.set_xlabel(r"$a$ in $\beta_t = a\,\beta_s$")
    ax.set_title(rf"inside the feature span, $\gamma={gamma:g}$")
    ax.legend(loc="upper left")
    return fig
