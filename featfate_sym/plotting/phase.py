"""Phase diagrams of transferability over ``(theta, gamma)``.

Theory maps come from the registry; the diverging map is centred at zero (white: no
transfer; blue: transfer helps; red: it hurts).  The linear-transfer zero contour is
drawn from the derived boundary ``lt.boundary`` (its three roots as functions of
``theta``), not by contouring the sampled grid, so it is exact at any resolution.
Other maps have no registered boundary and show the zero level of their grid.

Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Figs. 2-4 and appendix.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from featfate_sym import protocols
from featfate_sym.plotting import experiment, style
from featfate_sym.plotting.theory import on_grid, theta_gamma_grid

BOUNDARY_GID = "zero-boundary"


def lt_boundary_curves(sigma: float, lam: float, points: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``T_lt = 0`` curves ``(theta, gamma)`` from ``lt.boundary``.

    The two ``gamma < 1`` roots are joined through the tip where they meet (located by
    bisection on where ``lt.boundary`` stops having them, so the curve closes at any
    sampling); at the edges of the ``theta`` range they are left open.  The
    ``gamma > 1`` root is a separate curve (absent where it is infinite).
    """
    theta = np.linspace(0.0, np.pi / 2, points)
    lower, upper, above = on_grid("lt.boundary", theta=theta, sigma=sigma, lam=lam)
    curves = []
    exists = np.isfinite(lower) & np.isfinite(upper)
    for run in _runs(exists):
        th, lo, up = theta[run], lower[run], upper[run]
        if run.start > 0:  # the roots appear inside the range: prepend the tip
            tip = _edge(theta[run.start - 1], theta[run.start], sigma, lam)
            th, lo, up = np.r_[tip[0], th], np.r_[tip[1], lo], np.r_[tip[2], up]
        if run.stop < theta.size:  # they disappear inside the range: append the tip
            tip = _edge(theta[run.stop], theta[run.stop - 1], sigma, lam)
            th, lo, up = np.r_[th, tip[0]], np.r_[lo, tip[1]], np.r_[up, tip[2]]
            curves.append((np.r_[th, th[::-1]], np.r_[lo, up[::-1]]))
        else:
            curves.append((np.r_[th[::-1], th], np.r_[lo[::-1], up]))
    finite = np.isfinite(above)
    for run in _runs(finite):
        curves.append((theta[run], above[run]))
    return curves


def _edge(outside: float, inside: float, sigma: float, lam: float, steps: int = 48):
    """``(theta, gamma_minus, gamma_plus)`` at the edge of the ``theta`` interval where
    the ``gamma < 1`` roots exist, by bisection between a point without them
    (``outside``) and one with them (``inside``)."""
    for _ in range(steps):
        mid = 0.5 * (outside + inside)
        lower, upper, _ = on_grid("lt.boundary", theta=mid, sigma=sigma, lam=lam)
        if np.isfinite(lower) and np.isfinite(upper):
            inside = mid
        else:
            outside = mid
    lower, upper, _ = on_grid("lt.boundary", theta=inside, sigma=sigma, lam=lam)
    return inside, float(lower), float(upper)


def _runs(mask: np.ndarray) -> list[slice]:
    """Contiguous ``True`` runs of a 1-D mask, as slices."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [slice(int(a), int(b)) for a, b in zip(starts, stops)]


def _map(ax, theta, gamma, values, norm, title):
    values = style.clip_infinite(values, norm.vmax)
    mesh = ax.pcolormesh(theta, gamma, values, cmap=style.DIVERGING, norm=norm, shading="nearest", rasterized=True)
    ax.set_xlim(0, np.pi / 2)
    ax.set_ylim(0, gamma.max())
    style.theta_axis(ax.xaxis)
    ax.set_xlabel(style.LABELS["theta"])
    ax.set_ylabel(style.LABELS["gamma"])
    ax.set_title(title)
    return mesh


def _draw_boundary(ax, curves) -> None:
    for i, (th, ga) in enumerate(curves):
        (line,) = ax.plot(th, ga, color=style.BOUNDARY_COLOR, lw=1.3, label=r"$\mathcal{T}=0$" if i == 0 else None)
        line.set_gid(BOUNDARY_GID)


def _grid_zero_contour(ax, theta, gamma, values, rows=None) -> None:
    """Zero level of a sampled map (maps without a registered boundary)."""
    if rows is not None:
        gamma, values = gamma[rows], values[rows]
    finite = np.where(np.isfinite(values), values, np.nan)
    if np.nanmin(finite) < 0 < np.nanmax(finite):
        ax.contour(theta, gamma, finite, levels=[0.0], colors=style.BOUNDARY_COLOR, linewidths=1.1, linestyles="--")


def _colorbar(fig, mesh, axes, label):
    bar = fig.colorbar(mesh, ax=axes, extend="both", shrink=0.9)
    bar.set_label(label)
    return bar


def lt_phase(sigma: float = 0.2, lam: float = 0.0, *, quick: bool = False, results=None) -> Figure:
    """``T_lt`` over ``theta in [0, pi/2]``, ``gamma in (0, 2]`` at given ``sigma``, ``lam``;
    with the simulated mean map beside it when ``results`` holds a ``(gamma, theta)`` sweep."""
    res = style.resolution(quick)
    theta, gamma, th, ga = theta_gamma_grid(res["points"])
    values = on_grid("lt.transferability", gamma=ga, theta=th, sigma=sigma, lam=lam)
    norm = style.diverging_norm(style.symmetric_limit(values))
    curves = lt_boundary_curves(sigma, lam, res["line_points"])
    sim = experiment.points(results, "T_lt", ("gamma", "theta"), sigma=sigma, lam=lam)
    fig = Figure(figsize=(9.6, 4.0) if sim else (5.4, 4.0))
    axes = fig.subplots(1, 2 if sim else 1, squeeze=False)[0]
    mesh = _map(axes[0], theta, gamma, values, norm, rf"theory, $\sigma={sigma:g}$, $\lambda={lam:g}$")
    _draw_boundary(axes[0], curves)
    axes[0].legend(loc="upper left")
    if sim:
        _map(axes[1], sim.coords["theta"], sim.coords["gamma"], sim.mean, norm,
             rf"simulation, mean of {sim.replicates} runs, $d={sim.selected.get('d', float('nan')):g}$")
        _draw_boundary(axes[1], curves)
        axes[1].set_ylim(0, max(gamma.max(), sim.coords["gamma"].max()))
    _colorbar(fig, mesh, list(axes), style.LABELS["T_lt"])
    return fig


def ft_phase(sigma: float = 1.0, L: int = 3, *, quick: bool = False, results=None) -> Figure:
    """``T_ft``: the paper's form (``c = 1``), the exact balanced-flow form at depth ``L``
    and noise ``sigma``, and their difference (exact minus paper)."""
    res = style.resolution(quick)
    theta, gamma, th, ga = theta_gamma_grid(res["points"])
    ft = protocols.get("fine_tune")
    paper = on_grid(ft.prediction("T", "paper (c = 1)").key, gamma=ga, theta=th)
    exact = on_grid(ft.prediction("T", "exact balanced flow").key, gamma=ga, theta=th, sigma=sigma, L=L)
    below = gamma < 1
    norm = style.diverging_norm(style.symmetric_limit(np.concatenate([paper.ravel(), exact.ravel()])))
    diff = exact - paper
    fig = Figure(figsize=(13.5, 4.0))
    axes = fig.subplots(1, 3)
    mesh = _map(axes[0], theta, gamma, paper, norm, r"paper form ($c=1$)")
    _grid_zero_contour(axes[0], theta, gamma, paper, below)
    _map(axes[1], theta, gamma, exact, norm, rf"exact balanced flow, $\sigma={sigma:g}$, $L={L:d}$")
    _grid_zero_contour(axes[1], theta, gamma, exact, below)
    _colorbar(fig, mesh, list(axes[:2]), style.LABELS["T_ft"])
    dnorm = style.diverging_norm(max(float(np.nanmax(np.abs(diff[np.isfinite(diff)]), initial=0.0)), 1e-3))
    dmesh = _map(axes[2], theta, gamma, diff, dnorm, "exact $-$ paper")
    _colorbar(fig, dmesh, [axes[2]], r"$\Delta\mathcal{T}_{\mathrm{ft}}$")
    return fig


def finite_source(gamma_s: float = 0.5, sigma_s: float = 0.2, *, quick: bool = False, results=None) -> Figure:
    """``T_ft`` (paper's ``c = 1`` form) after pretraining on ``n_s = gamma_s d`` noisy
    source samples."""
    res = style.resolution(quick)
    theta, gamma, th, ga = theta_gamma_grid(res["points"])
    key = protocols.get("fine_tune").prediction("T", "finite source, c = 1").key
    values = on_grid(key, gamma=ga, theta=th, gamma_s=gamma_s, sigma_s=sigma_s)
    norm = style.diverging_norm(style.symmetric_limit(values))
    fig = Figure(figsize=(5.4, 4.0))
    ax = fig.subplots()
    mesh = _map(ax, theta, gamma, values, norm, rf"finite source, $\gamma_s={gamma_s:g}$, $\sigma_s={sigma_s:g}$")
    _grid_zero_contour(ax, theta, gamma, values, gamma < 1)
    _colorbar(fig, mesh, [ax], style.LABELS["T_ft"])
    return fig


def vs_tuned_scratch(sigma: float = 0.2, lam: float = 0.0, *, quick: bool = False, results=None) -> Figure:
    """``T_lt`` against unregularised scratch (left) and against the optimally
    regularised ridge from scratch (right, ``T = scratch.risk_optimal_ridge - lt.risk``):
    the anomalous positive band around ``gamma = 1`` disappears on the right."""
    res = style.resolution(quick)
    theta, gamma, th, ga = theta_gamma_grid(res["points"])
    plain = on_grid("lt.transferability", gamma=ga, theta=th, sigma=sigma, lam=lam)
    tuned = on_grid("scratch.risk_optimal_ridge", gamma=ga, sigma=sigma) - on_grid("lt.risk", theta=th, lam=lam)
    norm = style.diverging_norm(style.symmetric_limit(tuned))
    fig = Figure(figsize=(9.6, 4.0))
    axes = fig.subplots(1, 2)
    mesh = _map(axes[0], theta, gamma, plain, norm, r"vs. scratch (min-norm)")
    _draw_boundary(axes[0], lt_boundary_curves(sigma, lam, res["line_points"]))
    _map(axes[1], theta, gamma, tuned, norm, r"vs. optimally tuned ridge scratch")
    _grid_zero_contour(axes[1], theta, gamma, tuned)
    fig.suptitle(rf"$\sigma={sigma:g}$, $\lambda={lam:g}$")
    _colorbar(fig, mesh, list(axes), style.LABELS["T_lt"])
    return fig
