"""The transferability surface ``T(theta, gamma)`` in three dimensions.

The scratch risk diverges at ``gamma = 1`` (with noise), so the surface is clipped to
the colour limits of the phase diagram; colours follow the same diverging map.
Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Fig. 2.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from featfate_sym.plotting import style
from featfate_sym.plotting.slices import setting_text, transfer_label, transfer_values
from featfate_sym.plotting.theory import theta_gamma_grid


def surface(sigma: float = 0.2, lam: float = 0.0, L: int = 2, kind: str = "lt", *, quick: bool = False, results=None) -> Figure:
    res = style.resolution(quick)
    # a 3-D mesh needs far fewer points than a raster to look smooth
    _, _, th, ga = theta_gamma_grid(max(31, res["points"] // 4))
    values = transfer_values(kind, ga, th, sigma, lam, L)
    limit = style.symmetric_limit(values)
    clipped = np.clip(np.where(np.isnan(values), 0.0, style.clip_infinite(values, limit)), -limit, limit)
    norm = style.diverging_norm(limit)
    import matplotlib as mpl

    colors = mpl.colormaps[style.DIVERGING](norm(clipped))
    fig = Figure(figsize=(6.0, 4.8))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(th, ga, clipped, facecolors=colors, rstride=1, cstride=1, linewidth=0, antialiased=False, shade=False)
    style.theta_axis(ax.xaxis)
    ax.set_xlabel(style.LABELS["theta"])
    ax.set_ylabel(style.LABELS["gamma"])
    ax.set_zlabel(transfer_label(kind))
    ax.view_init(elev=30, azim=-50)
    ax.set_title(rf"{setting_text(kind, sigma, lam, L)} (clipped at $\pm{limit:.2g}$)")
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=style.DIVERGING)
    fig.colorbar(mappable, ax=ax, shrink=0.6, extend="both", pad=0.1).set_label(transfer_label(kind))
    return fig
