"""Phase diagrams of transfer with anisotropic inputs, and the Monte Carlo agreement table.

:func:`figures` draws the sign of ``T_lt`` and ``T_ft`` over ``(theta, gamma)`` for a
power-law spectrum (``a = 1``, :func:`featfate_sym.spectra.power_law`) with the teachers'
energy on the top vs the bottom 10 % of the eigendirections, side by side (deterministic
equivalents of :mod:`featfate_sym.anisotropic_numerics`, proportional limit).  Fine-tuning
(``c = 1``) has ``T_ft = bias_sc (2 cos theta - 1)``: its boundary is ``theta = pi/3`` for
every spectrum and profile, only the magnitude moves; the linear-transfer boundary moves
with where the teacher lives (``R_lt = sin^2(theta) beta^T Sigma beta``).

:func:`table` runs the Monte Carlo of :mod:`featfate_sym.simulation.anisotropic` and returns
rows ``(spectrum, gamma, protocol, theory, mean, se, z)`` for the closing note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from featfate_sym import anisotropic_numerics as numerics
from featfate_sym import spectra
from featfate_sym.plotting import style

__all__ = ["phase_maps", "phase_figure", "figures", "table", "balanced_table", "TABLE_SPECTRA"]

#: dimension (= number of power-law levels) of the phase diagrams
PHASE_DIM = 1000


def phase_maps(spectrum: spectra.Spectrum, place: str, fraction: float, sigma: float,
               theta: np.ndarray, gamma: np.ndarray, d: int = PHASE_DIM) -> dict[str, np.ndarray]:
    """``T_lt`` and ``T_ft`` on the grid ``gamma[:, None] x theta[None, :]``.

    ``kappa`` and the traces depend on ``gamma`` only, the transfer risks on ``theta``
    only: one deterministic equivalent per ``gamma``, then broadcasting.  ``gamma = 1``
    (with ``sigma > 0``) gives ``T_lt = +inf``.
    """
    lam = spectrum.eigenvalues(d)
    p = spectra.profile(spectrum, d, place, fraction)
    scratch = np.array([numerics.scratch_risk(lam, p, g, sigma) for g in gamma])
    bias = np.array([numerics.scratch_risk(lam, p, g, 0.0) for g in gamma])
    lt = np.array([numerics.lt_risk(lam, p, t) for t in theta])
    energy = 4 * np.sin(theta / 2) ** 2  # |beta_t - beta_s|^2 (theory.anisotropic.trace_forms)
    t_lt = scratch[:, None] - lt[None, :]
    t_ft = np.where((gamma < 1)[:, None], bias[:, None] * (1 - energy[None, :]), 0.0)
    return {"T_lt": t_lt, "T_ft": t_ft}


def phase_figure(*, a: float = 1.0, fraction: float = 0.1, sigma: float = 0.2, quick: bool = False) -> Figure:
    """2 x 2 panels: rows linear transfer / fine-tuning, columns teacher on the top / bottom
    ``fraction`` of the directions of ``power_law(a, 1000)``; colour = ``T`` (symmetric
    diverging scale per row), black line = ``T = 0``."""
    res = style.resolution(quick)
    count = res["points"]
    theta = np.linspace(0.0, np.pi / 2, count)
    # an even count keeps gamma = 1 (the scratch peak) off the grid
    gamma = np.linspace(0.02, 2.0, count + (count % 2 == 1))
    spectrum = spectra.power_law(a, PHASE_DIM)
    maps = {place: phase_maps(spectrum, place, fraction, sigma, theta, gamma) for place in ("top", "bottom")}
    with style.figure_style():
        fig = Figure(figsize=(10.4, 7.6))
        axes = fig.subplots(2, 2, squeeze=False)
        for row, key in enumerate(("T_lt", "T_ft")):
            for col, place in enumerate(("top", "bottom")):
                ax = axes[row, col]
                # one scale per panel: the two profiles' magnitudes differ by orders
                norm = style.diverging_norm(style.symmetric_limit(maps[place][key]))
                values = style.clip_infinite(maps[place][key], norm.vmax)
                mesh = ax.pcolormesh(theta, gamma, values, cmap=style.DIVERGING, norm=norm,
                                     shading="nearest", rasterized=True)
                finite = np.where(np.isfinite(maps[place][key]), maps[place][key], np.nan)
                # T_ft is identically 0 for gamma >= 1 (fine-tuning is scratch): no contour there
                rows = gamma < 1 if key == "T_ft" else slice(None)
                sub = finite[rows]
                if np.nanmin(sub) < 0 < np.nanmax(sub):
                    ax.contour(theta, gamma[rows], sub, levels=[0.0], colors=style.BOUNDARY_COLOR, linewidths=1.2)
                style.theta_axis(ax.xaxis)
                ax.set_xlabel(style.LABELS["theta"])
                ax.set_ylabel(style.LABELS["gamma"])
                protocol = "linear transfer" if key == "T_lt" else "fine-tuning ($c=1$)"
                ax.set_title(f"{protocol}, teacher on {place} {fraction:.0%}")
                bar = fig.colorbar(mesh, ax=ax, extend="both", shrink=0.9)
                bar.set_label(style.LABELS[key])
        fig.suptitle(rf"power-law spectrum $\lambda_i \propto i^{{-{a:g}}}$, $d={PHASE_DIM}$, $\sigma={sigma:g}$")
    return fig


def figures(out: Path, quick: bool = False) -> list[Path]:
    """Write the anisotropic phase diagrams into ``out``; return the paths."""
    fig = phase_figure(quick=quick)
    return style.save(fig, Path(out), "anisotropic_phase", dpi=style.resolution(quick)["dpi"])


#: spectra of the agreement table: fixed mixtures (their proportional limit exists), with
#: levels that divide the dimensions used
TABLE_SPECTRA = (
    spectra.two_level(0.3, 0.1),
    spectra.two_level(0.5, 1.0),
    spectra.two_level(0.3, 10.0),
    spectra.two_level(0.7, 10.0),
    spectra.power_law(0.5, 50),
    spectra.power_law(1.0, 50),
    spectra.power_law(2.0, 50),
    spectra.from_values([5.0, 2.0, 1.0, 0.5, 0.25], name="user list (5, 2, 1, 0.5, 0.25)"),
)


def table(spectra_list: Sequence[spectra.Spectrum] = TABLE_SPECTRA, gammas: Sequence[float] = (0.5, 0.8, 1.5, 2.0),
          *, d: int = 1000, theta: float = 0.8, sigma: float = 0.5, replicates: int = 4, seed: int = 0,
          place: str = "uniform") -> list[tuple]:
    """Monte Carlo at dimension ``d`` against the deterministic equivalents of the
    spectrum's limit: rows ``(spectrum, gamma, protocol, theory, mean, se, z)``.

    Linear transfer is compared with its exact finite-``n`` form ``R + (R + sigma^2)/(n - 2)``
    (``R`` the ``n -> oo`` theory); ``z = (mean - theory)/se`` includes the O(1/d) finite-size
    bias of the limit, which the tests remove by extrapolation in ``1/d``.
    """
    from featfate_sym.simulation.anisotropic import simulate_risks

    rows = []
    for i, spec in enumerate(spectra_list):
        lam = spec.eigenvalues(d)
        p = spectra.profile(spec, d, place)
        weights = (np.asarray(spec.levels), np.asarray(spec.fractions))
        level_profile = _level_profile(spec, d, p)
        for j, g in enumerate(gammas):
            n = int(round(g * d))
            out = simulate_risks(lam, p, n, theta, sigma, replicates, seed=1000 * seed + 10 * i + j)
            r_lt = numerics.lt_risk(weights[0], level_profile, theta, weights=weights[1])
            theory = {
                "scratch": numerics.scratch_risk(weights[0], level_profile, g, sigma, weights=weights[1]),
                "linear_transfer": r_lt + (r_lt + sigma**2) / (n - 2),
                "fine_tuning": numerics.ft_risk(weights[0], level_profile, g, theta, sigma, weights=weights[1]),
            }
            for name, value in theory.items():
                x = out[name]
                mean, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))
                rows.append((spec.name, g, name, value, mean, se, (mean - value) / se if se > 0 else 0.0))
    return rows


def _level_profile(spec: spectra.Spectrum, d: int, p: np.ndarray) -> np.ndarray:
    """The profile summed over each level's directions (the limit's per-level weights)."""
    counts = spec.counts(d)
    edges = np.concatenate([[0], np.cumsum(counts)])
    return np.array([p[edges[k]:edges[k + 1]].sum() for k in range(len(counts))])


def balanced_table(spectra_list: Sequence[spectra.Spectrum] = TABLE_SPECTRA, gammas: Sequence[float] = (0.3, 0.6, 0.85),
                   depths: Sequence[int] = (2, 3), *, d: int = 1000, theta: float = 0.8, sigma: float = 0.5,
                   replicates: int = 6, seed: int = 0, place: str = "uniform") -> list[tuple]:
    """Monte Carlo of the balanced-flow end point of fine-tuning at depth ``L`` (computed from
    the data: :func:`featfate_sym.simulation.anisotropic.simulate_balanced_fine_tuning`) at
    dimension ``d`` against the deterministic equivalents (:func:`featfate_sym.
    anisotropic_numerics.ft_balanced`): rows ``(spectrum, gamma, L, quantity, theory, mean,
    se, z)`` for the risk and the null-space scale ``c^(L-1)``; ``z`` includes the O(1/d)
    finite-size bias (removed in the tests by extrapolation in ``1/d``).  The same samples
    serve every depth."""
    from featfate_sym.simulation.anisotropic import simulate_balanced_fine_tuning

    rows = []
    for i, spec in enumerate(spectra_list):
        lam = spec.eigenvalues(d)
        p = spectra.profile(spec, d, place)
        levels, fractions = np.asarray(spec.levels), np.asarray(spec.fractions)
        level_profile = _level_profile(spec, d, p)
        for j, g in enumerate(gammas):
            n = int(round(g * d))
            for depth in depths:
                out = simulate_balanced_fine_tuning(lam, p, n, theta, sigma, depth, replicates,
                                                    seed=1000 * seed + 10 * i + j)
                theory = numerics.ft_balanced(levels, level_profile, g, theta, sigma, depth, weights=fractions)
                for name, key in (("fine_tuning", "risk"), ("scale", "scale")):
                    x = out[name]
                    mean, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))
                    value = theory[key]
                    rows.append((spec.name, g, depth, name, value, mean, se, (mean - value) / se if se > 0 else 0.0))
    return rows
