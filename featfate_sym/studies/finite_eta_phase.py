"""The fine-tuning phase diagram at a finite gradient-descent step.

``ft.transferability_gd`` (:mod:`featfate_sym.theory.finite_step`) gives the fine-tuning
transferability at a fixed step ``eta`` to first order, ``T_gd = T_0 + eta T_1`` (``T_0`` =
``ft.transferability_exact``, ``T_1`` by :func:`featfate_sym.learning_curves.transferability_gd_slope`
along the reduced flow).  Conventions: training loss ``(1/n)|X beta - y|^2``, ``W <- W - eta
dLoss/dW``, the whitened target loss of the ``"whitened"`` solver (same minimisers, same flow
end point), balanced pretrained network with unit ``|beta_s|``; proportional limit, ``gamma < 1``
(``T_ft = 0`` above).

The map shows the sign of ``T_gd`` over ``(theta, gamma)`` at ``eta = 0, 0.05, 0.2`` for
``L = 2, 3`` and ``sigma = 0, 1``, with the zero contour, and hatches where the first-order law
leaves its domain:

- the step is not stable at the end point or at the start: ``eta >= dln.max_stable_step``
  evaluated at ``|beta| = 1`` (start) or at the end ``|beta_ft| = c^L`` (whitened loss,
  ``lambda_max = 1``), whichever is smaller;
- the imbalance the step creates is not small: ``eta |I_drift| / c^2 > 0.1`` (the end-point
  equation ``Delta = a + b c^(2-2L) - c^2`` is linearised in ``Delta`` about ``Delta = 0``; this is
  the relative size of the linearised term, :func:`learning_curves.fine_tuning_drift` gives
  ``I_drift`` and ``c``).

Simulation points: the exact reduced gradient-descent map at that step
(:func:`learning_curves.transferability_reduced_gd`, no expansion; the reference of the first-order
law), their sign marked (filled: positive, open: negative; a cross where ``eta`` is at or above
the predicted stable step, where the map is not run).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featfate_sym import learning_curves
from featfate_sym.registry import get

__all__ = ["FiniteEtaMap", "phase_map", "phase_map_scale_only", "reduced_points", "figures", "EXPANSION_LIMIT"]

#: largest relative imbalance eta |I_drift| / c^2 at which the first-order law is used
EXPANSION_LIMIT = 0.1


@dataclass(frozen=True)
class FiniteEtaMap:
    """``T_0`` (eta = 0), ``T_1`` (slope), ``c`` (end scale), ``drift`` (``I_drift``) on the grid,
    each ``(len(gammas), len(thetas))``, at one ``(L, sigma)``."""

    gammas: np.ndarray
    thetas: np.ndarray
    depth: int
    sigma: float
    t0: np.ndarray
    t1: np.ndarray
    scale: np.ndarray
    drift: np.ndarray

    def transferability(self, eta: float) -> np.ndarray:
        """``T_gd = T_0 + eta T_1`` (first order)."""
        return self.t0 + eta * self.t1

    def stable_step(self) -> np.ndarray:
        """``min(eta_max(|beta| = 1), eta_max(|beta| = c^L))`` of ``dln.max_stable_step`` (whitened loss)."""
        result = get("dln.max_stable_step")
        start = result.evaluate(L=self.depth, beta_norm=1.0, lambda_max=1.0)
        end = result.evaluate(L=self.depth, beta_norm=self.scale ** self.depth, lambda_max=1.0)
        return np.minimum(start, end)

    def in_domain(self, eta: float) -> np.ndarray:
        """Where the first-order law at ``eta`` is used: a stable step and a small imbalance."""
        if eta == 0:
            return np.ones_like(self.t0, dtype=bool)
        small = eta * np.abs(self.drift) / self.scale**2 <= EXPANSION_LIMIT
        return small & (eta < self.stable_step())


@functools.lru_cache(maxsize=1)
def _slope_factor():
    """``dT/dc dc/dDelta`` of ``ft.transferability_gd`` (extra ``slope_factor``) with ``b`` =
    ``|beta_sc|^2`` (extra ``scratch_norm_sq``) substituted, as a function of ``(c, L, gamma,
    theta, sigma)``."""
    import sympy as sp

    from featfate_sym.symbols import L, b, c, gamma, sigma, theta

    ex = get("ft.transferability_gd").extras
    expr = ex["slope_factor"].subs(b, ex["scratch_norm_sq"])
    return sp.lambdify([c, L, gamma, theta, sigma], expr, modules="numpy")


def phase_map(gammas, thetas, depth: int, sigma: float) -> FiniteEtaMap:
    """The first-order map on the grid (``0 < gamma < 1``, ``0 <= theta <= pi``; ``ValueError``
    from :mod:`featfate_sym.learning_curves` otherwise)."""
    gammas, thetas = np.asarray(gammas, float), np.asarray(thetas, float)
    shape = (gammas.size, thetas.size)
    t0, t1, scale, drift = (np.empty(shape) for _ in range(4))
    exact = get("ft.transferability_exact")
    factor = _slope_factor()
    for i, g in enumerate(gammas):
        for j, th in enumerate(thetas):
            # one solve of the reduced flow per point gives both I_drift and c; T_1 is the
            # registered dT/dc dc/dDelta times I_drift (as transferability_gd_slope forms it)
            drift[i, j], scale[i, j] = learning_curves.fine_tuning_drift(g, th, sigma, depth)
            t1[i, j] = 0.0 if depth == 1 else factor(scale[i, j], depth, g, th, sigma) * drift[i, j]
            t0[i, j] = exact.evaluate(gamma=g, theta=th, sigma=sigma, L=depth)
    return FiniteEtaMap(gammas, thetas, depth, sigma, t0, t1, scale, drift)


def reduced_points(gammas, thetas, depth: int, sigma: float, eta: float) -> np.ndarray:
    """``T_ft`` of the exact reduced GD map at step ``eta`` on the grid; ``nan`` where ``eta``
    is at or above the predicted stable step (:meth:`FiniteEtaMap.stable_step`), where the map
    is not run: it does not converge there (at ``gamma = 0.85``, ``sigma = 1``, ``L = 2``,
    ``eta = 0.2``, above the stable step 0.19, it neither converges nor diverges in 10^6 steps).
    A run below the stable step that fails raises (``ArithmeticError``)."""
    gammas, thetas = np.asarray(gammas, float), np.asarray(thetas, float)
    stable = phase_map_scale_only(gammas, thetas, depth, sigma).stable_step()
    out = np.full((gammas.size, thetas.size), math.nan)
    for i, g in enumerate(gammas):
        for j, th in enumerate(thetas):
            if eta < stable[i, j]:
                out[i, j] = learning_curves.transferability_reduced_gd(g, th, sigma, depth, eta)
    return out


def phase_map_scale_only(gammas, thetas, depth: int, sigma: float) -> FiniteEtaMap:
    """A :class:`FiniteEtaMap` holding only the end scale ``c`` (the end of the reduced flow,
    :func:`learning_curves.fine_tuning_drift`), enough for :meth:`stable_step`."""
    gammas, thetas = np.asarray(gammas, float), np.asarray(thetas, float)
    scale = np.empty((gammas.size, thetas.size))
    for i, g in enumerate(gammas):
        for j, th in enumerate(thetas):
            scale[i, j] = learning_curves.fine_tuning_drift(g, th, sigma, depth)[1]
    nan = np.full_like(scale, math.nan)
    return FiniteEtaMap(gammas, thetas, depth, sigma, nan, nan, scale, nan)


def figures(out: Path, quick: bool = False) -> list[Path]:
    """``finite_eta_phase.png/pdf``: rows ``(L, sigma)`` in ``(2, 0), (2, 1), (3, 0), (3, 1)``,
    columns ``eta = 0, 0.05, 0.2``; colour ``T_gd`` (first order), black line ``T_gd = 0``,
    grey dashed the ``eta = 0`` boundary, hatching outside the first-order domain, markers the
    sign of the reduced GD map."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from featfate_sym.plotting import style

    res = style.resolution(quick)
    count = 8 if quick else 20
    gammas = np.linspace(0.05, 0.95, count)
    thetas = np.linspace(0.0, math.pi / 2, count)
    sim_g = np.linspace(0.15, 0.85, 3 if quick else 5)
    sim_t = np.linspace(math.pi / 12, 5 * math.pi / 12, 3 if quick else 5)
    etas = (0.0, 0.05, 0.2)
    cases = ((2, 0.0), (2, 1.0), (3, 0.0), (3, 1.0))
    maps = {case: phase_map(gammas, thetas, *case) for case in cases}
    limit = max(style.symmetric_limit(m.transferability(e)) for m in maps.values() for e in etas)
    norm = style.diverging_norm(limit)
    paths = []
    with style.figure_style():
        fig = Figure(figsize=(10.0, 13.0))
        # axes not shared: every map keeps its own labelled, ticked axes
        axes = fig.subplots(len(cases), len(etas))
        mesh = None
        for r, case in enumerate(cases):
            m = maps[case]
            for col, eta in enumerate(etas):
                ax = axes[r, col]
                values = m.transferability(eta)
                mesh = ax.pcolormesh(thetas, gammas, values, cmap="RdBu", norm=norm, shading="nearest")
                if np.nanmin(values) < 0 < np.nanmax(values):
                    ax.contour(thetas, gammas, values, levels=[0.0], colors="k", linewidths=1.2)
                if eta > 0 and np.nanmin(m.t0) < 0 < np.nanmax(m.t0):
                    ax.contour(thetas, gammas, m.t0, levels=[0.0], colors="0.4", linewidths=1.0, linestyles="--")
                outside = (~m.in_domain(eta)).astype(float)
                if outside.any():
                    ax.contourf(thetas, gammas, outside, levels=[0.5, 1.5], colors="none", hatches=["///"])
                if eta > 0:
                    sim = reduced_points(sim_g, sim_t, *case, eta)
                    tt, gg = np.meshgrid(sim_t, sim_g)
                    pos, neg, bad = sim > 0, sim <= 0, np.isnan(sim)
                    ax.plot(tt[pos], gg[pos], "o", ms=5, mfc="k", mec="w")
                    ax.plot(tt[neg], gg[neg], "o", ms=5, mfc="w", mec="k")
                    ax.plot(tt[bad], gg[bad], "x", ms=5, color="k")  # beyond the stable step: not run
                style.theta_axis(ax.xaxis)
                ax.set_xlabel(style.LABELS["theta"])
                ax.set_ylabel(style.LABELS["gamma"])
                ax.set_title(rf"$L={case[0]}$, $\sigma={case[1]:g}$, $\eta={eta:g}$", fontsize=9)
        bar = fig.colorbar(mesh, ax=axes, shrink=0.6, extend="both")
        bar.set_label(r"$\mathcal{T}_{\mathrm{ft}}^{\mathrm{gd}} = \mathcal{T}_0 + \eta\,\mathcal{T}_1$ (first order)")
        handles = [
            Line2D([], [], color="k", lw=1.2, label=r"$\mathcal{T}^{\mathrm{gd}} = 0$"),
            Line2D([], [], color="0.4", lw=1.0, ls="--", label=r"$\eta = 0$ boundary"),
            Line2D([], [], ls="", marker="o", mfc="k", mec="w", label="reduced GD map: T > 0"),
            Line2D([], [], ls="", marker="o", mfc="w", mec="k", label="reduced GD map: T <= 0"),
            Line2D([], [], ls="", marker="x", color="k", label="beyond the stable step (not run)"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8,
                   title=f"hatched: eta >= stable step, or eta |I_drift|/c^2 > {EXPANSION_LIMIT:g}",
                   title_fontsize=8)
        paths += style.save(fig, out, "finite_eta_phase", res["dpi"])
    return paths
