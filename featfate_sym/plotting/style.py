"""The shared look of every figure: the style file, the diverging colour map, the
``theta`` ticks and the writer that saves a figure as PNG and PDF.

Colours: the diverging map ``RdBu`` (ColorBrewer, safe for the common colour-vision
deficiencies) is always centred at zero with symmetric limits, so white means "no
transfer", blue positive transfer and red negative transfer; the line colours follow
Okabe & Ito.

Legibility: every figure is saved at ``dpi >= MIN_DPI`` (100) with every visible text
at ``fontsize >= MIN_FONT_PT`` (8 pt) at the figure's own size (figures are never
scaled after drawing; ``bbox_inches="tight"`` only crops).  At 100 dpi an 8 pt font is
11 px high, so the PNG shown at its native pixel size is readable on a screen of
about 100 pixels per inch (8 pt or more).  :func:`save` enforces both: it refuses a
lower dpi and raises smaller text to 8 pt before writing (:func:`legible`); the style
file's sizes are all at least 8 pt.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

STYLE_FILE = Path(__file__).with_name("featfate.mplstyle")

#: diverging, colour-blind-safe map of a transferability (negative red, positive blue)
DIVERGING = "RdBu"
#: colour of zero contours and phase boundaries
BOUNDARY_COLOR = "black"

#: sample density of a phase diagram (points per axis) and raster resolution
FULL = {"points": 401, "dpi": 200, "line_points": 801}
QUICK = {"points": 61, "dpi": 100, "line_points": 121}

#: the legibility floor: smallest font size (points, at the figure's size) and dpi
MIN_FONT_PT = 8.0
MIN_DPI = 100

THETA_TICKS = (0.0, np.pi / 6, np.pi / 3, np.pi / 2)
THETA_TICK_LABELS = ("$0$", r"$\pi/6$", r"$\pi/3$", r"$\pi/2$")

#: axis labels, LaTeX notation rendered by mathtext
LABELS = {
    "gamma": r"$\gamma = n/d$",
    "theta": r"$\theta$",
    "lam": r"$\lambda$",
    "T_lt": r"$\mathcal{T}_{\mathrm{lt}}$",
    "T_ft": r"$\mathcal{T}_{\mathrm{ft}}$",
    "risk": r"$\mathcal{R}$",
}


def resolution(quick: bool) -> dict:
    return QUICK if quick else FULL


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Apply the package style inside the block only (global rcParams are restored)."""
    import matplotlib.pyplot as plt

    with plt.style.context(str(STYLE_FILE)):
        yield


def theta_axis(axis) -> None:
    """Ticks at 0, pi/6, pi/3, pi/2 on a ``theta`` axis (``axis``: ``ax.xaxis`` or ``ax.yaxis``)."""
    axis.set_ticks(THETA_TICKS)
    axis.set_ticklabels(THETA_TICK_LABELS)


def symmetric_limit(values: np.ndarray, floor: float = 0.05) -> float:
    """Symmetric colour limit for a transferability map.

    The map diverges to ``+inf`` on the scratch double-descent peak (``gamma = 1``), so
    the limit is set by the negative side (bounded by the largest risk), which then uses
    the whole colour range; larger positive values are clipped (the colour bar shows the
    clipping with its triangular ends).  A map without negative values uses the 98th
    percentile of its positive side.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    if np.any(finite < -floor):
        return float(-finite.min())
    pos = np.percentile(finite[finite > 0], 98) if np.any(finite > 0) else 0.0
    return float(max(pos, floor))


def clip_infinite(values: np.ndarray, limit: float) -> np.ndarray:
    """Infinite values (a divergence on the grid) replaced by values beyond ``limit`` of
    the same sign, so they take the colour bar's end colours instead of none."""
    return np.where(np.isinf(values), np.sign(values) * 10.0 * limit, values)


def diverging_norm(limit: float):
    from matplotlib.colors import TwoSlopeNorm

    return TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=limit)


def visible_texts(fig) -> list:
    """Every text artist of ``fig`` that is drawn: visible, non-empty, and inside a
    visible parent (tick labels of hidden ticks, empty titles and offsets are left out)."""
    from matplotlib.text import Text

    out = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if text.axes is not None and not text.axes.get_visible():
            continue
        out.append(text)
    return out


def legible(fig):
    """Raise every visible text of ``fig`` below :data:`MIN_FONT_PT` to it; return ``fig``.

    Tick labels are made lazily: asking each axis for them makes them (no drawing)."""
    for ax in fig.axes:
        for axis in (getattr(ax, name, None) for name in ("xaxis", "yaxis", "zaxis")):
            if axis is not None:
                axis.get_ticklabels(which="both")
    for text in visible_texts(fig):
        if text.get_fontsize() < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)
    return fig


def save(fig, out_dir: Path, stem: str, dpi: int, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (``formats``) in ``out_dir``;
    return the paths.

    Legible by construction: ``dpi`` below :data:`MIN_DPI` is refused (``ValueError``)
    and text below :data:`MIN_FONT_PT` is raised to it (:func:`legible`)."""
    if dpi < MIN_DPI:
        raise ValueError(f"figures are saved at dpi >= {MIN_DPI} (got {dpi}): smaller text is not legible")
    legible(fig)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def number_tag(value: float) -> str:
    """A short, file-name-safe spelling of a parameter value (``0.2`` -> ``0.2``)."""
    if np.isinf(value):
        return "inf"
    return f"{value:.4g}".replace("-", "m")


def tag(pairs: Sequence[tuple[str, float]]) -> str:
    return "_".join(f"{name}{number_tag(float(v))}" for name, v in pairs)
