"""Figures of the theory, drawn from the registry, with simulation points overlaid.

Every function returns a :class:`matplotlib.figure.Figure` (no pyplot state, nothing
shown); :func:`featfate_sym.plotting.style.save` writes it as PNG and PDF.  Draw inside
:func:`featfate_sym.plotting.style.figure_style` to get the package's style.  The
command ``python -m featfate_sym.plot`` renders them to files.
"""

from featfate_sym.plotting.curves import kl, ridge, scratch
from featfate_sym.plotting.distances import distances as distances_figure
from featfate_sym.plotting.phase import finite_source, ft_phase, lt_boundary_curves, lt_phase, vs_tuned_scratch
from featfate_sym.plotting.ridge_phase import ridge_phase as ridge_phase_figure
from featfate_sym.plotting.slices import slices
from featfate_sym.plotting.style import figure_style, save
from featfate_sym.plotting.surface import surface

#: figure name (as on the command line) -> function drawing it
FIGURES = {
    "lt-phase": lt_phase,
    "ft-phase": ft_phase,
    "slices": slices,
    "surface": surface,
    "scratch": scratch,
    "ridge": ridge,
    "finite-source": finite_source,
    "vs-tuned-scratch": vs_tuned_scratch,
    "kl": kl,
    "distances": distances_figure,
}

#: registry results each figure needs
REQUIRES = {
    "lt-phase": ("lt.transferability", "lt.boundary"),
    "ft-phase": ("ft.transferability", "ft.transferability_exact"),
    "slices": ("lt.transferability",),
    "surface": ("lt.transferability",),
    "scratch": ("scratch.risk", "scratch.risk_optimal_ridge"),
    "ridge": ("lt.risk",),
    "finite-source": ("ft.transferability_finite_source",),
    "vs-tuned-scratch": ("lt.transferability", "lt.boundary", "scratch.risk_optimal_ridge", "lt.risk"),
    "kl": ("lt.transferability", "metrics.kl"),
    "distances": ("lt.transferability", "lt.risk", "metrics.kl", "metrics.w2"),
}

__all__ = [
    "FIGURES",
    "REQUIRES",
    "distances_figure",
    "figure_style",
    "finite_source",
    "ft_phase",
    "kl",
    "lt_boundary_curves",
    "lt_phase",
    "ridge",
    "ridge_phase_figure",
    "save",
    "scratch",
    "slices",
    "surface",
    "vs_tuned_scratch",
]
