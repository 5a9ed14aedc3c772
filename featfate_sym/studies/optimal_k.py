"""How many source tasks to pretrain on: linear transfer onto rank-k features.

Theory from :mod:`featfate_sym.theory.multi_source` (``lt.k.risk_finite``,
``lt.k.transferability_finite``, ``lt.k.optimal``, ``lt.k.transferability``); Monte Carlo
of the estimators themselves from :mod:`featfate_sym.simulation.multi_source` (teachers,
data, least squares on ``X Q`` and ``X^+ y``, exact risks).

More source tasks capture more of the target (``|P_perp beta_t|^2 = sin^2/(sin^2 + k cos^2)``
falls with ``k``) but cost a ``k``-dimensional readout, whose variance
``(|P_perp beta_t|^2 + sigma^2) k/(n - k - 1)`` grows with ``k``: at finite ``n`` there is an
optimal number of source tasks, ``lt.k.optimal``.

- :func:`figures` -- (1) the risk and the transferability against ``k`` at several ``n``
  (``d = 200``), theory lines, Monte Carlo means with 2-SE bars, the optimal ``k`` marked;
  (2) the sign of the proportional-limit ``T`` over ``(theta, gamma)`` for ``k = 1, 4, 16``.
- :func:`table` -- rows ``(k, n, theta, sigma, theory, mean, SE, z)`` comparing the Monte Carlo
  means with the exact finite-``n`` theory, and the optimal-``k`` results.

Every Monte Carlo run is seeded (``seed``); same seed, same numbers.  The comparisons are
with the exact finite-size expectations, so no finite-size allowance enters ``z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from featfate_sym import registry, stats
from featfate_sym.plotting import style
from featfate_sym.plotting.theory import on_grid, theta_gamma_grid
from featfate_sym.simulation.multi_source import simulate_risks
from featfate_sym.theory.multi_source import largest_positive_k, optimal_k

__all__ = [
    "DIM", "THETA", "SIGMA", "SAMPLE_SIZES", "PHASE_K", "MC_GRID", "Row", "OptimalRow",
    "monte_carlo_rows", "optimal_rows", "table", "figures", "risk_figure", "phase_figure",
]

#: the setting of the curves against k
DIM, THETA, SIGMA = 200, math.pi / 3, 0.5
SAMPLE_SIZES = (20, 50, 100, 200)
#: the numbers of source tasks of the phase diagrams
PHASE_K = (1, 4, 16)
PHASE_SIGMA = 0.2
#: the Monte Carlo comparison grid of :func:`table`: (k, n, d, theta, sigma)
MC_GRID = (
    (1, 20, 200, math.pi / 3, 0.5),
    (4, 20, 200, math.pi / 3, 0.5),
    (5, 20, 200, math.pi / 3, 0.5),
    (13, 50, 200, math.pi / 3, 0.5),
    (22, 100, 200, math.pi / 3, 0.5),
    (8, 40, 1000, math.pi / 4, 0.2),
    (16, 100, 1000, 3 * math.pi / 8, 1.0),
    (3, 400, 200, math.pi / 4, 0.0),
)


@dataclass(frozen=True)
class Row:
    """One Monte Carlo comparison: ``quantity`` is ``R_lt`` or ``T``; ``z = (mean - theory)/SE``."""

    quantity: str
    k: int
    n: int
    d: int
    theta: float
    sigma: float
    theory: float
    mean: float
    se: float
    replicates: int

    @property
    def z(self) -> float:
        return (self.mean - self.theory) / self.se if self.se > 0 else 0.0


@dataclass(frozen=True)
class OptimalRow:
    """The optimum at ``(theta, sigma, n)``: the continuous root ``k_star``, the integer argmin
    ``k_opt`` with its risk and the risk at ``k = 1``, and the largest ``k`` with ``T > 0`` at
    dimension ``d``."""

    theta: float
    sigma: float
    n: int
    d: int
    k_star: float
    k_opt: int
    risk_opt: float
    risk_one: float
    largest_positive: int


def monte_carlo_rows(grid=None, replicates: int = 2000, seed: int = 0) -> list[Row]:
    """Monte Carlo against theory on ``grid`` (``(k, n, d, theta, sigma)`` tuples; default
    :data:`MC_GRID`): the linear-transfer risk and the paired transferability ``R_sc - R_lt``
    (where scratch's risk is finite and has a finite variance, ``|n - d| > 4``)."""
    grid = MC_GRID if grid is None else grid
    risk = registry.get("lt.k.risk_finite")
    transfer = registry.get("lt.k.transferability_finite")
    rows = []
    for i, (k, n, d, theta, sigma) in enumerate(grid):
        with_scratch = abs(n - d) > 4
        methods = ("linear_transfer", "scratch") if with_scratch else ("linear_transfer",)
        sims = simulate_risks(n, d, k, theta, sigma, replicates, seed=seed * 1000 + i,
                              methods=methods)
        est = stats.mean_se(sims["linear_transfer"])
        rows.append(Row("R_lt", k, n, d, theta, sigma, risk.evaluate(theta=theta, sigma=sigma, k=k, n=n),
                        est.mean, est.se, est.n))
        if with_scratch:
            est = stats.paired_difference(sims["scratch"], sims["linear_transfer"])
            rows.append(Row("T", k, n, d, theta, sigma,
                            transfer.evaluate(theta=theta, sigma=sigma, k=k, n=n, d=d), est.mean, est.se, est.n))
    return rows


def optimal_rows(thetas=(math.pi / 4, math.pi / 3, 3 * math.pi / 8), sigmas=(0.2, 0.5, 1.0),
                 sizes=SAMPLE_SIZES, dim: int = DIM) -> list[OptimalRow]:
    """The optimal number of source tasks over a grid (theory only)."""
    risk = registry.get("lt.k.risk_finite")
    best = registry.get("lt.k.optimal")
    rows = []
    for theta in thetas:
        for sigma in sigmas:
            for n in sizes:
                k_opt = optimal_k(theta, sigma, n, dim)
                rows.append(OptimalRow(
                    theta, sigma, n, dim, best.evaluate(theta=theta, sigma=sigma, n=n), k_opt,
                    risk.evaluate(theta=theta, sigma=sigma, k=k_opt, n=n),
                    risk.evaluate(theta=theta, sigma=sigma, k=1, n=n),
                    largest_positive_k(theta, sigma, n, dim)))
    return rows


def table(replicates: int = 2000, seed: int = 0, grid=None) -> dict[str, list]:
    """``{"monte_carlo": [Row...], "optimal": [OptimalRow...]}`` for the closing note."""
    return {"monte_carlo": monte_carlo_rows(grid, replicates, seed), "optimal": optimal_rows()}


# -- figures ---------------------------------------------------------------------------------
def _mc_ks(n: int, quick: bool) -> list[int]:
    ks = [1, 2, 4, 8, 16, 32, 64] if not quick else [1, 4, 16]
    # a finite variance of the risk needs n - k - 1 > 2; keep a margin for the CLT
    return [k for k in ks if k <= n - 8 and k <= DIM - 1]


def risk_figure(*, quick: bool = False, seed: int = 0) -> Figure:
    """Risk (left) and transferability (right) against ``k`` at ``n`` in :data:`SAMPLE_SIZES`,
    ``d = DIM``, ``theta = THETA``, ``sigma = SIGMA``; theory lines, Monte Carlo means +- 2 SE,
    the integer optimum ``optimal_k`` marked (a star), the continuous ``lt.k.optimal`` as a tick."""
    replicates = 60 if quick else 600
    risk = registry.get("lt.k.risk_finite")
    transfer = registry.get("lt.k.transferability_finite")
    best = registry.get("lt.k.optimal")
    fig = Figure(figsize=(10.0, 4.0))
    ax_r, ax_t = fig.subplots(1, 2)
    for i, n in enumerate(SAMPLE_SIZES):
        color = f"C{i}"
        ks = np.arange(1, min(n - 2, DIM - 1) + 1, dtype=float)
        r_line = risk.numpy(THETA, SIGMA, ks, float(n))
        ax_r.plot(ks, r_line, color=color, label=f"$n={n}$")
        k_opt = optimal_k(THETA, SIGMA, n, DIM)
        k_star = best.evaluate(theta=THETA, sigma=SIGMA, n=n)
        r_opt = risk.evaluate(theta=THETA, sigma=SIGMA, k=k_opt, n=n)
        ax_r.plot([k_opt], [r_opt], marker="*", markersize=11, color=color, markeredgecolor="black", zorder=5)
        ax_r.axvline(k_star, color=color, lw=0.8, ls=":")
        scratch_finite = abs(n - DIM) > 1
        if scratch_finite:
            t_line = transfer.numpy(THETA, SIGMA, ks, float(n), float(DIM))
            ax_t.plot(ks, t_line, color=color, label=f"$n={n}$")
            ax_t.plot([k_opt], [transfer.evaluate(theta=THETA, sigma=SIGMA, k=k_opt, n=n, d=DIM)], marker="*",
                      markersize=11, color=color, markeredgecolor="black", zorder=5)
        for j, k in enumerate(_mc_ks(n, quick)):
            methods = ("linear_transfer", "scratch") if abs(n - DIM) > 4 else ("linear_transfer",)
            sims = simulate_risks(n, DIM, k, THETA, SIGMA, replicates, seed=seed * 10_000 + 100 * i + j,
                                  methods=methods)
            est = stats.mean_se(sims["linear_transfer"])
            ax_r.errorbar([k], [est.mean], yerr=[2 * est.se], fmt="o", color=color, markerfacecolor="white")
            if "scratch" in sims:
                est = stats.paired_difference(sims["scratch"], sims["linear_transfer"])
                ax_t.errorbar([k], [est.mean], yerr=[2 * est.se], fmt="o", color=color, markerfacecolor="white")
    for ax in (ax_r, ax_t):
        ax.set_xscale("log")
        ax.set_xlabel("number of source tasks $k$")
    ax_r.set_ylabel(style.LABELS["risk"] + r"$_{\mathrm{lt}}$")
    ax_r.set_ylim(0, 1.6)
    ax_r.set_title(rf"risk, $\theta=\pi/3$, $\sigma={SIGMA:g}$ (star: optimal $k$; dotted: $k^*$)")
    ax_t.axhline(0.0, color=style.BOUNDARY_COLOR, lw=0.8)
    ax_t.set_ylabel(style.LABELS["T_lt"])
    ax_t.set_ylim(-1.0, 1.0)
    ax_t.set_title(rf"transferability vs scratch, $d={DIM}$ ($n=d$: $\mathcal{{T}}=+\infty$)")
    ax_r.legend(loc="upper left", title=f"MC: {replicates} runs, $\\pm 2$ SE")
    ax_t.legend(loc="lower left")
    return fig


def phase_figure(*, quick: bool = False, sigma: float = PHASE_SIGMA, ks=PHASE_K) -> Figure:
    """Sign of ``lt.k.transferability`` over ``(theta, gamma)`` for each ``k`` in ``ks``
    (proportional limit at fixed ``k``), with its zero level."""
    res = style.resolution(quick)
    theta, gamma, th, ga = theta_gamma_grid(res["points"], gamma_max=2.0)
    maps = [on_grid("lt.k.transferability", gamma=ga, theta=th, sigma=sigma, k=float(k)) for k in ks]
    norm = style.diverging_norm(style.symmetric_limit(np.concatenate([m.ravel() for m in maps])))
    fig = Figure(figsize=(4.0 * len(ks) + 1.2, 3.8))
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    mesh = None
    for ax, k, values in zip(axes, ks, maps):
        shown = style.clip_infinite(values, norm.vmax)
        mesh = ax.pcolormesh(theta, gamma, shown, cmap=style.DIVERGING, norm=norm, shading="nearest",
                             rasterized=True)
        finite = np.where(np.isfinite(values), values, np.nan)
        if np.nanmin(finite) < 0 < np.nanmax(finite):
            ax.contour(theta, gamma, finite, levels=[0.0], colors=style.BOUNDARY_COLOR, linewidths=1.1)
        ax.set_xlim(0, np.pi / 2)
        style.theta_axis(ax.xaxis)
        ax.set_xlabel(style.LABELS["theta"])
        ax.set_ylabel(style.LABELS["gamma"])
        ax.set_title(rf"$k={k}$ source tasks, $\sigma={sigma:g}$")
    bar = fig.colorbar(mesh, ax=list(axes), extend="both", shrink=0.9)
    bar.set_label(style.LABELS["T_lt"] + r" ($n, d\to\infty$, $k$ fixed)")
    return fig


def figures(out: Path, quick: bool = False) -> list[Path]:
    """Write the two figures of this study to ``out`` (PNG and PDF); return the paths."""
    res = style.resolution(quick)
    paths = []
    with style.figure_style():
        paths += style.save(risk_figure(quick=quick), Path(out), "optimal_k_curves", dpi=res["dpi"])
        paths += style.save(phase_figure(quick=quick), Path(out), "optimal_k_phase", dpi=res["dpi"])
    return paths
