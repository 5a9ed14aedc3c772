"""Linear transfer against minimum-norm and against tuned ridge scratch: the theory maps
of :func:`featfate_sym.plotting.phase.vs_tuned_scratch` with simulated cells on top.

Each simulated cell of a :class:`featfate_sym.studies.ridge_baseline_phase.RidgeBaselinePhase`
is a marker at ``(theta, n/d)`` coloured on the *same* diverging scale as the map under it
(the map's own normalisation), so a marker that matches its background agrees with the
theory.  Right panel: ``T_lt^tuned`` replicate means.  Left panel: ``T_lt`` against
minimum-norm scratch, the replicate mean where it has finite variance (circles), the
median where it does not (diamonds, ``|n - d| <= 3``: on the double-descent peak).

Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194, the comparison against an
optimally weight-decayed scratch model; SPEC section 2, "Regularised scratch baseline".
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from featfate_sym.plotting import phase, style

#: gids of the marker collections (the tuned panel, the min-norm panel's two kinds)
TUNED_GID = "simulation-tuned"
MIN_NORM_MEAN_GID = "simulation-min-norm-mean"
MIN_NORM_MEDIAN_GID = "simulation-min-norm-median"

_MARKER = {"s": 40, "edgecolors": "black", "linewidths": 0.7, "zorder": 4, "clip_on": False}


def _norm_of(ax):
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    if len(meshes) != 1:
        raise RuntimeError("expected one theory map per panel of vs_tuned_scratch")
    return meshes[0].norm


def _overlay(ax, theta, gamma, values, gid, marker):
    keep = np.isfinite(values)
    if not keep.any():
        return None
    points = ax.scatter(theta[keep], gamma[keep], c=values[keep], cmap=style.DIVERGING, norm=_norm_of(ax),
                        marker=marker, **_MARKER)
    points.set_gid(gid)
    return points


def ridge_phase(result, *, quick: bool = False) -> Figure:
    """Theory maps of ``T_lt`` (vs. min-norm scratch, left) and ``T_lt^tuned`` (vs. the
    optimally tuned ridge, right) at the simulation's ``sigma`` (readout ``lam = 0``),
    with the simulated cells of ``result`` overlaid on the maps' colour scale."""
    thetas = np.asarray(result.thetas, dtype=float)
    if np.any(thetas < 0) or np.any(thetas > np.pi / 2):
        raise ValueError(f"thetas must lie in [0, pi/2] to be drawn (got {thetas.tolist()})")
    fig = phase.vs_tuned_scratch(sigma=result.noise_std, lam=0.0, quick=quick)
    fig.set_size_inches(9.6, 5.0)  # room for markers a few hundredths of gamma apart
    min_norm_ax, tuned_ax = fig.axes[0], fig.axes[1]
    theta, gamma = np.meshgrid(thetas, result.realised_gammas)
    top = max(2.0, 1.04 * float(gamma.max()))

    _overlay(tuned_ax, theta, gamma, np.asarray(result.tuned_mean), TUNED_GID, "o")
    finite_mean = np.isfinite(result.min_norm_mean)
    _overlay(min_norm_ax, theta, gamma, np.where(finite_mean, result.min_norm_mean, np.nan),
             MIN_NORM_MEAN_GID, "o")
    _overlay(min_norm_ax, theta, gamma, np.where(finite_mean, np.nan, result.min_norm_median),
             MIN_NORM_MEDIAN_GID, "D")
    for ax in (min_norm_ax, tuned_ax):
        ax.set_ylim(0, top)

    handles = [
        Line2D([], [], color=style.BOUNDARY_COLOR, ls="--", lw=1.1, label=r"$\mathcal{T}^{\mathrm{tuned}}=0$"),
        Line2D([], [], ls="none", marker="o", mfc="white", mec="black", label="simulated mean"),
        Line2D([], [], ls="none", marker="D", mfc="white", mec="black", label="simulated median (mean infinite)"),
    ]
    boundary = [line for line in min_norm_ax.lines if line.get_gid() == phase.BOUNDARY_GID][:1]
    fig.legend(handles=[*boundary, *handles], loc="outside lower center", ncol=4)
    fig.suptitle(
        rf"$\sigma={result.noise_std:g}$, readout $\lambda=0$; markers: simulation, "
        rf"$d={result.dim}$, {result.replicates} replicates per cell"
    )
    return fig
