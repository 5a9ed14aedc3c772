"""Transferability against ``gamma`` at fixed angles: theory curves with simulation
means and standard-error bars.

Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Figs. 2-3 (slices at
``theta = pi/8, pi/4, 3 pi/8``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from featfate_sym.plotting import experiment, style
from featfate_sym.plotting.theory import gamma_line, on_grid

DEFAULT_THETAS = (np.pi / 8, np.pi / 4, 3 * np.pi / 8)

def theta_label(theta: float) -> str:
    """``theta`` as a multiple of pi when it is a simple one (pi/8 -> '$\\pi/8$')."""
    frac = theta / np.pi
    for den in (1, 2, 3, 4, 6, 8, 12, 16):
        num = round(frac * den)
        if num and abs(frac * den - num) < 1e-9:
            head = r"\pi" if num == 1 else rf"{num}\pi"
            return f"${head}$" if den == 1 else f"${head}/{den}$"
    return f"${theta:.3g}$"


def transfer_values(kind: str, gamma, theta, sigma: float, lam: float, L: int) -> np.ndarray:
    """The predicted ``T`` of the protocol with tag ``kind`` on the ``gamma`` grid (its
    headline prediction, :meth:`featfate_sym.protocols.Protocol.headline`)."""
    prediction = _protocol(kind).headline("T", {"lam": lam, "L": L})
    given = {"gamma": gamma, "theta": theta, "sigma": sigma, "lam": lam, "L": L}
    return on_grid(prediction.key, **{name: given[name] for name in prediction.takes})


def kinds() -> tuple[str, ...]:
    """The protocol tags whose ``T`` has a prediction to draw (``lt``, ``ft``, ``ft1``, ...)."""
    from featfate_sym import protocols

    return tuple(p.tag for p in protocols.PROTOCOLS.values()
                 if any(pred.observable == "T" and pred.source != "finite" for pred in p.predictions))


def _protocol(kind: str):
    from featfate_sym import protocols

    if kind not in kinds():
        raise ValueError(f"kind must be one of {', '.join(kinds())} (got {kind!r})")
    return next(p for p in protocols.PROTOCOLS.values() if p.tag == kind)


def transfer_label(kind: str) -> str:
    """The axis label of ``T`` of the protocol ``kind``."""
    protocol = _protocol(kind)
    return style.LABELS.get(protocol.variable("T"), rf"$T$ ({protocol.title.lower()})")


def setting_text(kind: str, sigma: float, lam: float, L: int) -> str:
    """The title naming the fixed parameters of the protocol's prediction."""
    takes = _protocol(kind).headline("T", {"lam": lam, "L": L}).takes
    extra = (rf", $\lambda={lam:g}$" if "lam" in takes else "") + (rf", $L={L:d}$" if "L" in takes else "")
    return rf"$\sigma={sigma:g}${extra}"


def slices(
    thetas: Sequence[float] = DEFAULT_THETAS,
    sigma: float = 0.2,
    lam: float = 0.0,
    L: int = 2,
    kind: str = "lt",
    *,
    quick: bool = False,
    results=None,
) -> Figure:
    """``T`` of a protocol (``kind``, its tag: ``lt`` linear transfer, ``ft`` fine-tuning
    in the exact form, ``ft1`` the first layer only, ...) against ``gamma in (0, 2]`` at
    each angle of ``thetas``."""
    variable = _protocol(kind).variable("T")
    res = style.resolution(quick)
    gamma = gamma_line(res["line_points"])
    fig = Figure(figsize=(7.4, 4.0))
    ax = fig.subplots()
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.axvline(1.0, color="0.8", lw=0.8, ls=":")
    lows = [-0.1]
    simulated = False
    for i, theta in enumerate(thetas):
        color = f"C{i}"
        values = transfer_values(kind, gamma, theta, sigma, lam, L)
        ax.plot(gamma, values, color=color, label=rf"$\theta=${theta_label(theta)}")
        lows.append(np.nanmin(values))
        sim = experiment.points(results, variable, ("gamma",), theta=theta, sigma=sigma, lam=lam, L=L)
        if sim is not None:
            # one legend entry for all simulation points; an angle that differs from the
            # curve's (nearest grid point) is named in it
            label = None
            if abs(sim.selected.get("theta", theta) - theta) > 1e-9:
                label = rf"simulation at $\theta=${theta_label(sim.selected['theta'])}"
            elif not simulated:
                label = rf"simulation (mean $\pm$ SE, {sim.replicates} runs, $d={sim.selected.get('d', float('nan')):g}$)"
            ax.errorbar(sim.coords["gamma"], sim.mean, yerr=sim.stderr, fmt="o", color=color, mfc="white", label=label)
            simulated = True
    low = min(lows)
    ax.set_ylim(1.1 * low, max(1.0, -0.6 * low))
    ax.set_xlim(0, 2)
    ax.set_xlabel(style.LABELS["gamma"])
    ax.set_ylabel(transfer_label(kind))
    ax.set_title(setting_text(kind, sigma, lam, L))
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: the peak fills the top
    return fig
