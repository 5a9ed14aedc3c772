"""Classification phase diagrams over ``(theta, gamma)``: the square-loss theory beside
deep-linear-network simulations with the square and the logistic loss (issue 13).

Theory (square loss, proportional limit, from the registry): the signs of
``clf.lt.transferability`` and ``clf.ft.transferability_exact`` at the simulated depth
``L = 2`` (``T = error_scratch - error_transfer``, positive when transfer helps) and the
errors ``clf.scratch.error``, ``clf.lt.error``, ``clf.ft.error_exact``.  Simulation (:mod:`featfate_sym.simulation.logistic`):
depth-2 linear networks of width ``d`` from small initialisation, trained by full-batch GD
on ``n = round(gamma d)`` target pairs; the transfers start from networks pretrained on the
population source loss.  Markers show the sign of the replicate mean of the paired
``T``: filled where ``|mean| > 2 SE`` (resolved), open otherwise.  Logistic runs on
separable data stop at a finite step (a loss of about ``1e-20``, or the step budget); the
max-margin direction, their limit, is reported beside them (:func:`table`).

Findings (depth-2 networks of width ``d``; measured at ``d = 50`` with 10 replicates by
``python numerics/classification_table.py --dim 50 --replicates 10 --max-steps 10000``,
plus runs at ``gamma = 0.8, 1, 1.25`` and a sweep of ``theta`` at ``gamma = 1/2``; the
tables are in the closing note of the README):

- Negative transfer at large ``theta``?  Linear transfer depends on ``|cos theta|`` only,
  with both losses (the refitted readout's sign undoes an anti-aligned feature: the
  simulated errors at ``theta`` and ``pi - theta`` agree to ``1e-6`` on every target set),
  so its negative transfer is confined to a band around ``theta = pi/2`` and ``theta =
  3 pi/4`` transfers as well as ``pi/4``.  Fine-tuning is not symmetric: with both losses
  it hurts past its break-even angle, which is below ``pi/2`` (``m = 1``, ``gamma = 1/2``,
  ``theta = 3 pi/4``: ``T_ft`` theory at depth 2 -0.085 (the ``c = 1`` form: -0.062), deep
  network square loss -0.096 +- 0.008, logistic -0.029 +- 0.003).
- The anomalous band at ``gamma ~ 1``?  With the square loss the scratch error peaks at
  ``1/2`` at ``gamma = 1``, so linear transfer helps there at every ``theta != pi/2``
  (``theta = 3 pi/8``, ``gamma = 1``, ``m = 1``: theory +0.149, estimator at ``d = 50``
  +0.120 +- 0.003, the gap a finite-size effect of the peak).  The logistic loss has no
  peak: on separable data it follows the max-margin direction, whose error passes smoothly
  through ``gamma = 1`` (0.287, 0.282 at ``gamma = 0.8, 1``), and the band is absent:
  ``T_lt`` = -0.069 +- 0.010 at ``theta = 3 pi/8``, ``gamma = 1``.
- Fine-tuning's break-even angle (``gamma = 1/2``): square-loss theory at depth 2
  (``clf.ft.transferability_exact``) ``0.425 pi`` (``m = 1``) and ``0.309 pi`` (``m = 2``),
  the ``c = 1`` form ``0.443 pi`` / ``0.340 pi``; deep network, square loss ``0.426 pi`` /
  ``0.319 pi`` (the balanced-flow scale of the null-space part, which the ``c = 1`` form
  neglects, is not 1 in classification even without label noise, and the depth-2 theory
  follows the network); logistic loss, stopped at a loss of ``1e-20``, ``0.473 pi`` /
  ``0.395 pi`` with ``|T_ft|`` two to three times smaller.  For
  ``gamma > 1`` square-loss fine-tuning is scratch (``T_ft = 0`` to rounding); logistic
  fine-tuning on separable data converges to the same max-margin direction as scratch, so
  its ``T_ft -> 0`` as training goes on (``|T_ft| ~ 0.001-0.002`` at ``gamma = 2``).
- Does ``cos theta`` control transfer?  For linear transfer, ``|cos theta|`` alone, with
  both losses.  For fine-tuning, not alone: at depth 2 it breaks even at ``cos theta* =
  0.23`` (``m = 1``) and ``0.57`` (``m = 2``), moving with ``m``, ``gamma`` and the depth.  And the scratch
  side depends on the loss: the max-margin classifier beats minimum-norm least squares
  (``m = 2``, ``gamma = 1/2``: 0.077 +- 0.008 against 0.114 +- 0.012), so the region
  where linear transfer helps shrinks with the logistic loss (``m = 2``, ``theta = pi/4``:
  ``T_lt`` = -0.002 +- 0.008 at ``gamma = 1/2`` and -0.019 +- 0.004 at ``gamma = 2``,
  where the square loss gives +0.036 +- 0.012 and +0.013 +- 0.006).  The regression phase
  diagrams carry over to square-loss classification, the band at ``gamma = 1`` included;
  with the logistic loss the linear-transfer boundary moves to smaller ``theta`` and the
  band at ``gamma = 1`` disappears.
- Logistic loss, theory.  On separable data (``gamma < gamma*(m)``, ``clf.separability_threshold``:
  3.70 at ``m = 1``, 20.7 at ``m = 2``, Cover's 2 as ``m -> 0``) logistic GD converges in
  direction to the max-margin classifier from *any* initialisation (Soudry et al. 2018; Ji
  & Telgarsky 2019), so in the direction limit fine-tuning ends where scratch does:
  ``T_ft -> 0``, and the logistic fine-tuning gains and losses above are finite-time
  effects that shrink (logarithmically in the loss) as training goes on.  The max-margin
  error (``clf.scratch.error_max_margin``, the cited CGMT fixed point, solved as one root
  equation derived by SymPy) is smooth through ``gamma = 1`` (``m = 1``: 0.320, 0.298,
  0.282 at ``gamma = 1/2, 1, 2``; ``m = 2``: 0.082, 0.070, 0.062), which is why the
  logistic loss has no anomalous band; the simulated SVM agrees (``d = 200``, 10 target
  sets: 0.298 +- 0.004 at ``m = 1, gamma = 1``; 0.280 +- 0.004 at ``gamma = 2``; 0.087 +-
  0.003 at ``m = 2, gamma = 1/2``; extrapolated in ``1/d`` in the slow test).  It equals the
  min-norm least-squares error at small ``gamma`` (every point a support vector), beats it
  around the peak, and loses to it at large ``gamma``, where least squares approaches the
  Bayes error (``m = 1``: equal near ``gamma = 2``; 0.274 against 0.240 at ``gamma = 3``).
  Linear transfer is loss-independent: the logistic readout on the frozen feature has the
  sign of the square-loss one, so its error is ``clf.lt.error_finite`` exactly at every
  ``n`` (``clf.lt.error_finite_logistic``); the losses' ``T_lt`` differ only through the
  scratch side.
- Label flips (probability ``p`` per training label).  Square-loss scratch
  (``clf.scratch.error_flip``, derived: only ``E y s`` changes, to ``(1 - 2p) m``) keeps its
  peak of 1/2 at ``gamma = 1`` and loses accuracy elsewhere (``m = 1``, ``gamma = 1/2``:
  0.342, 0.382, 0.446 at ``p = 0, 0.1, 0.3``), while linear transfer's ``n -> oo`` error
  does not change, so flips enlarge the region where transfer helps.  The max-margin side
  with flips has no theory here (the flipped fixed point has two unknowns and no one-root
  reduction) and is simulated (``simulate_max_margin_errors(..., flip=p)``; ``m = 2``,
  ``gamma = 1/2``, ``d = 100``, 10 sets: 0.079 +- 0.003 clean, 0.188 +- 0.015 at ``p = 0.1``,
  where the least-squares theory gives 0.124 and 0.241): flips hurt the max-margin classifier more in
  relative terms, but it stays ahead near the peak; all protocols take ``flip=`` in
  :func:`featfate_sym.simulation.logistic.run_protocols`.

Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194 (regression phase diagrams);
Soudry et al., JMLR 2018 and Ji & Telgarsky, ICLR 2019 (implicit bias of the logistic
loss); Deng, Kammoun & Thrampoulidis 2019 and Montanari, Ruan, Sohn & Yan 2019 (max-margin
asymptotics, cited in ``clf.scratch.error_max_margin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import featfate_sym as ff
from featfate_sym import stats
from featfate_sym.plotting import style
from featfate_sym.simulation import classification as estimators
from featfate_sym.simulation import logistic

__all__ = ["CellResult", "simulate_cell", "figures", "table", "markdown_table", "max_margin_theory", "ANSWER"]

#: the paragraph of the closing note (see the module docstring for its basis)
ANSWER = __doc__.split("Findings")[1].split("Reference:")[0].strip()

_PROTOCOLS = ("linear_transfer", "fine_tuning")


@dataclass
class CellResult:
    """One ``(m, gamma)`` cell at several angles, one loss: final test errors ``scratch``
    ``(R,)``, ``linear_transfer`` and ``fine_tuning`` ``(A, R)`` (paired with scratch),
    ``max_margin`` ``(R,)`` (``nan`` where not separable), the fraction of separable target
    sets, the realised ``gamma = n/d`` and the run options."""

    loss: str
    m: float
    gamma: float
    angles: np.ndarray
    scratch: np.ndarray
    linear_transfer: np.ndarray
    fine_tuning: np.ndarray
    max_margin: np.ndarray
    separable: float
    converged: float
    options: dict

    def transferability(self, protocol: str) -> list[stats.MeanSE]:
        """Mean and SE of the paired ``T`` per angle."""
        values = self.scratch[None, :] - getattr(self, protocol)
        return [stats.mean_se(v) for v in values]


def simulate_cell(loss: str, m: float, gamma: float, angles, dim: int, replicates: int, seed: int,
                  max_steps: int = 20_000) -> CellResult:
    """Deep-network runs (depth 2, width ``dim``) of the three protocols at one cell."""
    n = max(1, int(round(gamma * dim)))
    run = logistic.run_protocols(loss, n, dim, angles, m, replicates, seed, max_steps=max_steps)
    conv = np.concatenate([run.scratch.converged] + [run.transfer[p].converged for p in _PROTOCOLS])
    return CellResult(loss, m, n / dim, run.angles, run.final_errors("scratch"),
                      run.final_errors("linear_transfer"), run.final_errors("fine_tuning"),
                      run.max_margin_error, float(run.separable.mean()), float(conv.mean()), run.options)


# -- theory -----------------------------------------------------------------------------------
#: depth of the simulated networks, at which the fine-tuning theory is evaluated (the
#: balanced-flow end point of ``clf.ft.error_exact``; the c = 1 form ``clf.ft.error`` is the
#: one-layer case)
DEPTH = 2


def _theory(key: str, **kw) -> np.ndarray:
    """The result ``key`` at the keyword values it takes (extra keywords are ignored)."""
    result = ff.get(key)
    return np.asarray(result.numpy(*[kw[name] for name in result.param_names]), dtype=float)


def theory_errors(gamma, theta, m) -> dict[str, np.ndarray]:
    g, th = np.broadcast_arrays(np.asarray(gamma, dtype=float), np.asarray(theta, dtype=float))
    return {
        "scratch": _theory("clf.scratch.error", gamma=g, m=m) * np.ones_like(th),
        "linear_transfer": _theory("clf.lt.error", theta=th, m=m) * np.ones_like(g),
        "fine_tuning": _theory("clf.ft.error_exact", gamma=g, theta=th, m=m, L=DEPTH),
    }


# -- figures --------------------------------------------------------------------------------------
_SETTINGS = {
    # the square-loss runs near gamma = 1 need many steps (the condition number of X X^T
    # grows like (1 - sqrt(gamma))^-2); logistic runs on separable data stop at the budget
    # (finite time, the direction still approaching the max-margin one)
    False: dict(dim=30, replicates=6, gammas=(0.25, 0.5, 0.8, 1.25, 2.0, 3.0),
                angles=(math.pi / 8, 3 * math.pi / 8, math.pi / 2, 5 * math.pi / 8, 7 * math.pi / 8),
                max_steps={"square": 30_000, "logistic": 6000}, ms=(1.0, 2.0)),
    True: dict(dim=12, replicates=2, gammas=(0.5, 2.0), angles=(math.pi / 8, 5 * math.pi / 8),
               max_steps={"square": 100, "logistic": 100}, ms=(1.0,)),
}
#: the angles of the error-vs-gamma slices (indices into the simulated angles)
_SLICES = (0, 3)
_MARKERS = {"square": "o", "logistic": "^"}
_COLORS = {"scratch": "#000000", "linear_transfer": "#0072B2", "fine_tuning": "#D55E00"}


def _simulate_all(settings: dict, seed: int) -> dict:
    cells = {}
    for i, mv in enumerate(settings["ms"]):
        for j, g in enumerate(settings["gammas"]):
            for loss in logistic.LOSSES:
                cells[(mv, g, loss)] = simulate_cell(
                    loss, mv, g, settings["angles"], settings["dim"], settings["replicates"],
                    seed=seed + 100 * i + j, max_steps=settings["max_steps"][loss])
    return cells


def figures(out: Path, quick: bool = False, seed: int = 0) -> list[Path]:
    """The phase diagrams (one figure per ``m``) and the error-vs-gamma slices; returns
    the written paths (PNG and PDF)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    settings = _SETTINGS[bool(quick)]
    res = style.resolution(quick)
    cells = _simulate_all(settings, seed)
    paths = []
    sign_map = ListedColormap(["#F4A582", "#FFFFFF", "#92C5DE"])  # red: hurts, blue: helps
    with style.figure_style():
        for mv in settings["ms"]:
            fig, axes = plt.subplots(1, 2, figsize=(8.8, 3.6), constrained_layout=True)
            theta = np.linspace(0.0, math.pi, res["points"])
            gam = np.linspace(0.02, 3.2, res["points"])
            th_grid, g_grid = np.meshgrid(theta, gam)
            errors = theory_errors(g_grid, th_grid, mv) if quick else None
            for ax, key, protocol, label in zip(
                    axes, ("clf.lt.transferability", "clf.ft.transferability_exact"), _PROTOCOLS,
                    (style.LABELS["T_lt"], style.LABELS["T_ft"])):
                if quick:
                    # the registered T is error_sc - error_transfer by construction
                    # (tests/test_classification.py); the difference of the errors skips the
                    # cold derivation of the transferabilities' boundary roots (~15 s)
                    values = errors["scratch"] - errors[protocol]
                else:
                    values = _theory(key, gamma=g_grid, theta=th_grid, m=mv, L=DEPTH)
                mesh = ax.pcolormesh(theta, gam, np.sign(np.round(values, 12)), cmap=sign_map, vmin=-1.5,
                                     vmax=1.5, shading="nearest", rasterized=True)
                bar = fig.colorbar(mesh, ax=ax, ticks=[-1, 0, 1], shrink=0.9)
                bar.ax.set_yticklabels(["hurts", "0", "helps"])
                bar.set_label(f"sign of {label} (theory)")
                if np.any(values > 0) and np.any(values < 0):
                    ax.contour(theta, gam, values, levels=[0.0], colors=style.BOUNDARY_COLOR, linewidths=1.0)
                for (cm, g, loss), cell in cells.items():
                    if cm != mv:
                        continue
                    offset = -0.03 if loss == "square" else 0.03
                    for a, est in zip(cell.angles, cell.transferability(protocol)):
                        resolved = abs(est.mean) > 2 * est.se
                        color = "#2166AC" if est.mean > 0 else "#B2182B"
                        ax.plot(a + offset, cell.gamma, _MARKERS[loss], ms=6, mec=color,
                                mfc=color if resolved else "none", mew=1.2)
                ax.set_title(f"{label}, $m = {mv:g}$ (theory: square loss)")
                ax.set_xlim(0, math.pi)
                ax.set_ylim(0, gam.max())
                ax.set_xticks([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi])
                ax.set_xticklabels(["$0$", r"$\pi/4$", r"$\pi/2$", r"$3\pi/4$", r"$\pi$"])
                ax.set_xlabel(style.LABELS["theta"])
                ax.set_ylabel(style.LABELS["gamma"])
            handles = [Line2D([], [], ls="", marker=_MARKERS[k], color="0.3", label=f"deep net, {k} loss")
                       for k in logistic.LOSSES]
            handles += [Line2D([], [], ls="", marker="s", color="#92C5DE", label="theory: T > 0"),
                        Line2D([], [], ls="", marker="s", color="#F4A582", label="theory: T < 0")]
            fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8)
            paths += style.save(fig, out, f"classification_phase_m{mv:g}", res["dpi"])
            plt.close(fig)

        fig, axes = plt.subplots(len(settings["ms"]), len(_SLICES), figsize=(8.0, 3.2 * len(settings["ms"])),
                                 squeeze=False, constrained_layout=True)
        g_line = np.linspace(0.02, 3.2, res["line_points"])
        for i, mv in enumerate(settings["ms"]):
            for j, index in enumerate(_SLICES):
                index = min(index, len(settings["angles"]) - 1)
                angle = settings["angles"][index]
                ax = axes[i, j]
                th_line = theory_errors(g_line, angle, mv)
                for protocol, values in th_line.items():
                    ax.plot(g_line, values, color=_COLORS[protocol], lw=1.2, label=protocol.replace("_", " "))
                for (cm, g, loss), cell in cells.items():
                    if cm != mv:
                        continue
                    for protocol in ("scratch",) + _PROTOCOLS:
                        values = cell.scratch if protocol == "scratch" else getattr(cell, protocol)[index]
                        est = stats.mean_se(values)
                        shift = 0.97 if loss == "square" else 1.03
                        ax.errorbar(cell.gamma * shift, est.mean, yerr=2 * est.se, fmt=_MARKERS[loss],
                                    color=_COLORS[protocol], ms=4, mfc="none" if loss == "logistic" else None)
                ax.set_title(f"$m = {mv:g}$, $\\theta = {angle / math.pi:.3g}\\pi$")
                ax.set_xlabel(style.LABELS["gamma"])
                ax.set_ylabel("test error")
                ax.set_ylim(0, 0.55)
        axes[0, 0].legend(fontsize=8, loc="upper right", title="theory (square)", title_fontsize=8)
        paths += style.save(fig, out, "classification_error_slices", res["dpi"])
        plt.close(fig)
    return paths


# -- the table of the closing note ----------------------------------------------------------------
def table(ms=(1.0, 2.0), gammas=(0.5, 2.0), angles=(math.pi / 4, 3 * math.pi / 4), dim: int = 60,
          replicates: int = 12, seed: int = 0, max_steps: int = 20_000) -> list[dict]:
    """Rows ``(m, gamma, theta, protocol)``: square-loss theory at the realised ``n/d``
    (linear transfer: ``clf.lt.error_finite`` at the realised ``n``, exact),
    Monte Carlo of the estimator (closed form, :func:`featfate_sym.simulation.classification.simulate_errors`,
    independent target sets), the deep network with the square loss and with the logistic
    loss (mean and SE over ``replicates``), the max-margin direction's error (logistic
    limit; scratch rows), and ``z = (mean - theory)/SE`` for the square-loss rows."""
    rows = []
    for i, mv in enumerate(ms):
        for j, g in enumerate(gammas):
            cell_seed = seed + 100 * i + 10 * j
            cells = {loss: simulate_cell(loss, mv, g, angles, dim, replicates, cell_seed, max_steps)
                     for loss in logistic.LOSSES}
            n = max(1, int(round(g * dim)))
            for a_index, angle in enumerate(angles):
                mc = estimators.simulate_errors(n, dim, angle, mv, replicates, seed=cell_seed + 1 + a_index)
                theory = {k: float(v) for k, v in theory_errors(n / dim, angle, mv).items()}
                # linear transfer: the exact finite-n error of the refitted readout
                theory["linear_transfer"] = float(_theory("clf.lt.error_finite", theta=angle, m=mv, n=n))
                for protocol in ("scratch",) + _PROTOCOLS:
                    final = {loss: cell.scratch if protocol == "scratch" else getattr(cell, protocol)[a_index]
                             for loss, cell in cells.items()}
                    est_mc = stats.mean_se(mc[protocol])
                    est_sq = stats.mean_se(final["square"])
                    est_lo = stats.mean_se(final["logistic"])
                    row = dict(m=mv, gamma=n / dim, theta=angle, protocol=protocol, theory=theory[protocol],
                               mc=est_mc, z_mc=_z(est_mc, theory[protocol]), deep_square=est_sq,
                               z_square=_z(est_sq, theory[protocol]), deep_logistic=est_lo,
                               separable=cells["logistic"].separable,
                               logistic_converged=cells["logistic"].converged)
                    # logistic direction limit on separable data (scratch and fine-tuning):
                    # the max-margin classifier, cited fixed point clf.scratch.error_max_margin
                    mm_theory = max_margin_theory(n / dim, mv)
                    if protocol != "linear_transfer":
                        row["mm_theory"] = mm_theory
                        row["z_logistic_mm"] = _z(est_lo, mm_theory) if math.isfinite(mm_theory) else math.nan
                    if protocol == "scratch":
                        mm = cells["logistic"].max_margin
                        row["max_margin"] = stats.mean_se(mm) if np.all(np.isfinite(mm)) else None
                        row["z_mm"] = (_z(row["max_margin"], mm_theory)
                                       if row["max_margin"] is not None and math.isfinite(mm_theory) else math.nan)
                    else:
                        t_sq = cells["square"].transferability(protocol)[a_index]
                        t_lo = cells["logistic"].transferability(protocol)[a_index]
                        key = "clf.lt.transferability" if protocol == "linear_transfer" else \
                            "clf.ft.transferability_exact"
                        t_th = float(_theory(key, gamma=n / dim, theta=angle, m=mv, L=DEPTH))
                        row.update(T_theory=t_th, T_square=t_sq, T_logistic=t_lo)
                    rows.append(row)
    return rows


#: below this SE a mean is taken as degenerate: the linear-transfer error takes two values,
#: Phi(-m |cos|) and Phi(m |cos|), and a handful of replicates usually shows one of them
#: only, so the SE is rounding (estimator) or the O(init_scale^2) = 1e-6 residual of the
#: frozen features (network), and a z score says nothing
_DEGENERATE_SE = 1e-5


def _z(est: stats.MeanSE, theory: float) -> float:
    """``(mean - theory)/SE``; ``nan`` for a degenerate SE (see :data:`_DEGENERATE_SE`)."""
    return (est.mean - theory) / est.se if est.se > _DEGENERATE_SE else math.nan


def _fz(z: float) -> str:
    return "-" if math.isnan(z) else f"{z:.2f}"


def max_margin_theory(gamma: float, m: float) -> float:
    """``clf.scratch.error_max_margin`` at ``(gamma, m)``; ``nan`` on the non-separable side
    (the result's own NaN) and for ``m`` beyond its domain."""
    result = ff.get("clf.scratch.error_max_margin")
    if m > float(result.params[1].upper):
        return math.nan
    return float(result.evaluate(gamma=gamma, m=m))


def markdown_table(rows: list[dict]) -> str:
    """The rows of :func:`table` as a Markdown table.  ``mm theory``: the max-margin error
    (the logistic direction limit of scratch and fine-tuning); ``z SVM``: the simulated SVM
    against it; ``z lo``: the logistic network, stopped at a loss of about 1e-20, against it."""
    def f(est):
        return "-" if est is None else f"{est.mean:.4f} ± {est.se:.4f}"

    def g(value):
        return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
    head = ("| m | γ | θ/π | protocol | theory (square) | MC estimator | z | deep, square | z | "
            "deep, logistic | mm theory | z lo | SVM | z SVM | T theory | T square | T logistic |")
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        lines.append(
            f"| {r['m']:g} | {r['gamma']:.3g} | {r['theta'] / math.pi:.3g} | {r['protocol']} | {r['theory']:.4f} | "
            f"{f(r['mc'])} | {_fz(r['z_mc'])} | {f(r['deep_square'])} | {_fz(r['z_square'])} | "
            f"{f(r['deep_logistic'])} | {g(r.get('mm_theory'))} | {_fz(r.get('z_logistic_mm', math.nan))} | "
            f"{f(r.get('max_margin'))} | {_fz(r.get('z_mm', math.nan))} | "
            f"{'-' if 'T_theory' not in r else format(r['T_theory'], '.4f')} | {f(r.get('T_square'))} | "
            f"{f(r.get('T_logistic'))} |")
    return "\n".join(lines)
