"""Simulated phase diagram of two-layer ReLU transfer over ``(mu, n)``.

One panel per procedure (linear transfer, fine-tuning): the mean paired transferability
``T = R_scratch - R_method`` in each cell on the package's diverging map centred at zero
(blue: transfer helps; red: it hurts), with a symmetric-log colour scale so that cells
at large ``n`` (differences of order 1e-2) are as legible as those at small ``n``
(order 1).  A marker gives each cell's decision from the sign test of
:mod:`featfate_sym.studies.phase_boundary` (``+`` helps, ``-`` hurts, open circle undecided); the
estimated boundary ``n*(mu)`` (sign changes interpolated in ``log n``) is drawn in
black, filled diamonds where ``T`` turns negative as ``n`` grows, open ones where it
turns positive.  Numbers come from :mod:`featfate_sym.studies.relu_phase`; nothing
here simulates.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure

from featfate_sym.studies.phase_boundary import HELPS, HURTS, UNDECIDED, SignMap
from featfate_sym.plotting import style

__all__ = ["relu_phase"]

BOUNDARY_GID = "relu-boundary"
_TITLES = {
    "lt": r"linear transfer: $\mathcal{T}_{\mathrm{lt}} = \mathcal{R}_{\mathrm{sc}} - \mathcal{R}_{\mathrm{lt}}$",
    "ft": r"fine-tuning: $\mathcal{T}_{\mathrm{ft}} = \mathcal{R}_{\mathrm{sc}} - \mathcal{R}_{\mathrm{ft}}$",
}
_MARKERS = {HELPS: ("+", "helps"), HURTS: ("_", "hurts"), UNDECIDED: ("o", "undecided")}


def _edges(centres: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges halfway between centres (geometrically when ``log``), half a step beyond the ends."""
    c = np.log(centres) if log else np.asarray(centres, dtype=float)
    if c.size == 1:
        half = 0.5 if log else 0.125
        edges = np.array([c[0] - half, c[0] + half])
    else:
        mid = 0.5 * (c[1:] + c[:-1])
        edges = np.r_[c[0] - (mid[0] - c[0]), mid, c[-1] + (c[-1] - mid[-1])]
    return np.exp(edges) if log else edges


def _symlog_ticks(linthresh: float, limit: float) -> np.ndarray:
    """Zero and the powers of ten between the linear threshold and the limit, both signs."""
    exponents = np.arange(np.ceil(np.log10(linthresh)), np.floor(np.log10(limit)) + 1)
    powers = 10.0**exponents
    return np.r_[-powers[::-1], 0.0, powers]


def _boundary_lines(mus: np.ndarray, crossings) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``k``-th crossing of each row joined across consecutive rows that have one."""
    lines = []
    for k in range(max((len(row) for row in crossings), default=0)):
        n_star = np.array([row[k].n_star if len(row) > k else np.nan for row in crossings])
        lines.append((np.asarray(mus, dtype=float), n_star))
    return lines


def relu_phase(mus, maps: Mapping[str, SignMap], *, title: str | None = None) -> Figure:
    """Side-by-side maps over ``(mu, n)``; ``maps`` by procedure, ``"lt"`` and/or ``"ft"``
    (each ``mean`` of shape ``(len(mus), len(n_values))``, the same ``n_values``)."""
    mus = np.asarray(mus, dtype=float)
    if not maps:
        raise ValueError("maps must name at least one procedure ('lt', 'ft')")
    unknown = set(maps) - set(_TITLES)
    if unknown:
        raise ValueError(f"maps keys must be among 'lt', 'ft' (got {sorted(unknown)})")
    first = next(iter(maps.values()))
    for key, m in maps.items():
        if m.mean.shape != (mus.size, first.n_values.size) or not np.array_equal(m.n_values, first.n_values):
            raise ValueError(f"maps[{key!r}] must be over len(mus) = {mus.size} rows and the same n_values")
    n_values = first.n_values
    limit = max(float(np.max(np.abs(m.mean))) for m in maps.values())
    limit = limit if limit > 0 else 1.0
    norm = SymLogNorm(linthresh=limit / 100, linscale=0.5, vmin=-limit, vmax=limit, base=10)
    mu_edges, n_edges = _edges(mus, log=False), _edges(n_values, log=True)

    fig = Figure(figsize=(5.0 * len(maps) + 1.2, 4.2))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    mesh = None
    for ax, (key, m) in zip(axes, maps.items()):
        mesh = ax.pcolormesh(mu_edges, n_edges, m.mean.T, cmap=style.DIVERGING, norm=norm, shading="flat",
                             rasterized=True)
        mu_grid, n_grid = np.meshgrid(mus, n_values, indexing="ij")
        for code, (marker, label) in _MARKERS.items():
            sel = m.decision == code
            if not sel.any():
                continue
            face = "none" if code == UNDECIDED else "black"
            ax.plot(mu_grid[sel], n_grid[sel], ls="none", marker=marker, ms=9 if code != UNDECIDED else 5,
                    mew=1.6, color="black", mfc=face, label=label)
        for i, (x, y) in enumerate(_boundary_lines(mus, m.crossings)):
            (line,) = ax.plot(x, y, color=style.BOUNDARY_COLOR, lw=1.4,
                              label=r"estimated $n^*(\mu)$" if i == 0 else None)
            line.set_gid(BOUNDARY_GID)
        labelled = set()
        for mu, row in zip(mus, m.crossings):
            for c in row:
                text = (r"$n^*$: helps $\to$ hurts" if c.direction == HURTS else r"$n^*$: hurts $\to$ helps")
                ax.plot(mu, c.n_star, ls="none", marker="D", ms=6, color=style.BOUNDARY_COLOR,
                        mfc=style.BOUNDARY_COLOR if c.direction == HURTS else "white",
                        label=None if c.direction in labelled else text)
                labelled.add(c.direction)
        ax.set_yscale("log")
        ax.set_xlim(mu_edges[0], mu_edges[-1])
        ax.set_ylim(n_edges[0], n_edges[-1])
        ax.set_xticks(mus)
        ax.set_xticklabels([f"{mu:g}" for mu in mus])
        ax.set_yticks(n_values)
        ax.set_yticklabels([f"{n:g}" for n in n_values])
        ax.minorticks_off()
        ax.set_xlabel(r"removed fraction $\mu$")
        ax.set_ylabel("target samples $n$")
        ax.set_title(_TITLES[key])
    for ax in axes:
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=3, frameon=False)
    bar = fig.colorbar(mesh, ax=list(axes), shrink=0.9, ticks=_symlog_ticks(norm.linthresh, limit))
    bar.set_label(r"mean paired $\mathcal{T}$ (symmetric log scale)")
    z, k = first.z_crit, first.replicates
    fig.suptitle(title or rf"sign test: $|\bar{{T}}| > {z:g}\,\mathrm{{SE}}$ and $> {first.min_effect:g}$, "
                 rf"{k} replicates")
    return fig
