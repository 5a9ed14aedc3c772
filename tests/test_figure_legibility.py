"""Figures read like a paper's: every map has labelled axes with ticks (``theta`` in
units of pi, ``gamma``) and a labelled colour bar, and every text of every figure is
legible at the size it is saved.

The legibility rule (:mod:`featfate_sym.plotting.style`): every figure is saved at
``dpi >= 100`` with every visible text at ``fontsize >= 8`` points at the figure's own
size, so a PNG shown at its native pixel size has text at least 11 px (8 pt on a
100-pixels-per-inch screen).  Checked on each figure of ``python -m featfate_sym.plot
all --quick`` (rendered through the command's own code path) and on the explorer
(its static matplotlib twin and the axes it declares for the page's canvases).
"""

from __future__ import annotations

import json
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.image import imread

from featfate_sym import plot
from featfate_sym.plotting import explorer, style

MIN_PT = 8.0
MIN_DPI = 100


@pytest.fixture(scope="module")
def quick_figures(tmp_path_factory):
    """``(stem, figure, dpi, png path)`` of every figure ``plot all --quick`` writes,
    recorded as the command saves them."""
    out = tmp_path_factory.mktemp("quick")
    args = plot.build_parser().parse_args(["all", "--quick", "--out", str(out)])
    names = plot._check(args)
    saved = []
    original = style.save

    def recording_save(fig, out_dir, stem, dpi):
        # the command's own save (legibility enforced there), PNG only: the PDF is the
        # same figure and would double the time
        paths = original(fig, out_dir, stem, dpi, formats=("png",))
        saved.append((stem, fig, dpi, paths[0]))
        return paths

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(style, "save", recording_save)
        plot.render(names, args)
    # a study's figures are named after its module (anisotropic_phase, optimal_k_curves, ...)
    prefixes = {name: module.split("_")[0] + "_" for name, module in plot.STUDY_FIGURES.items()}
    studies = {stem for stem, *_ in saved if stem.startswith(tuple(prefixes.values()))}
    for name, prefix in prefixes.items():
        assert any(stem.startswith(prefix) for stem in studies), name
    assert {stem.split("_")[0].removesuffix("-lt") for stem, *_ in saved if stem not in studies} == \
        set(plot.NAMES) - set(plot.STUDY_FIGURES)
    return saved


@pytest.fixture(scope="module")
def explorer_figure(tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer")
    with style.figure_style():
        fig = explorer.static_figure(quick=True)
        (png, _) = style.save(fig, out, "explorer", style.QUICK["dpi"])
    return fig, png


def _maps(fig):
    """The axes of ``fig`` that draw a map (a ``pcolormesh``), colour bars excluded."""
    colorbar_axes = {id(m.colorbar.ax) for ax in fig.axes for m in ax.collections
                     if getattr(m, "colorbar", None) is not None}
    out = []
    for ax in fig.axes:
        if id(ax) in colorbar_axes or ax.get_label() == "<colorbar>":
            continue
        meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
        if meshes:
            out.append((ax, meshes[0]))
    return out


def _colorbars(fig):
    return [c.colorbar for ax in fig.axes for c in [*ax.collections, *ax.images]
            if getattr(c, "colorbar", None) is not None]


def _tick_labels(axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs())
            if lo - 1e-9 <= v <= hi + 1e-9 and t.get_text().strip()]


def _check_maps(fig, where: str, at_least: int = 1) -> int:
    maps = _maps(fig)
    assert len(maps) >= at_least, f"{where}: {len(maps)} maps, expected {at_least}"
    bars = _colorbars(fig)
    for ax, mesh in maps:
        name = f"{where}: map {ax.get_title()!r}"
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), f"{name} has an unlabelled axis"
        xticks, yticks = _tick_labels(ax.xaxis), _tick_labels(ax.yaxis)
        assert len(xticks) >= 3 and len(yticks) >= 3, f"{name} has too few ticks ({xticks}, {yticks})"
        if "theta" in ax.get_xlabel():
            assert any(r"\pi" in t for t in xticks), f"{name}: theta ticks not in units of pi ({xticks})"
        # a colour bar of its own, or one drawn for the same colour scale (maps side by side)
        mine = [b for b in bars if b.mappable is mesh or (b.mappable.norm is mesh.norm and b.cmap.name == mesh.cmap.name)]
        assert mine, f"{name} has no colour bar"
        for bar in mine:
            label = bar.ax.get_ylabel() if bar.orientation == "vertical" else bar.ax.get_xlabel()
            assert label.strip(), f"{name}: its colour bar has no label"
            assert _tick_labels(bar.ax.yaxis if bar.orientation == "vertical" else bar.ax.xaxis), \
                f"{name}: its colour bar has no ticks"
    return len(maps)


def _check_legible(fig, dpi, png, where: str) -> None:
    assert dpi >= MIN_DPI, f"{where}: saved at {dpi} dpi"
    texts = style.visible_texts(fig)
    assert texts, f"{where}: no text at all"
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < MIN_PT]
    assert not small, f"{where}: text below {MIN_PT} pt: {small[:5]}"
    # the PNG has the pixels the figure's size and dpi give (tight bounding box: cropped,
    # not scaled): at least half the figure's extent in each direction
    height, width = imread(png).shape[:2]
    w_in, h_in = fig.get_size_inches()
    assert width >= 0.5 * w_in * dpi and height >= 0.5 * h_in * dpi, f"{where}: PNG {width}x{height} px is scaled down"


def test_quick_figures_are_legible(quick_figures):
    for stem, fig, dpi, png in quick_figures:
        _check_legible(fig, dpi, png, stem)


def test_quick_figure_maps_have_axes_ticks_and_colour_bars(quick_figures):
    checked = 0
    for stem, fig, _, _ in quick_figures:
        if _maps(fig):
            checked += _check_maps(fig, stem)
    # lt-phase 1, ft-phase 3, finite-source 2, vs-tuned-scratch 2
    assert checked >= 8


def test_explorer_maps_have_axes_ticks_and_colour_bars(explorer_figure):
    fig, png = explorer_figure
    assert _check_maps(fig, "explorer", at_least=len(explorer.MAPS)) == len(explorer.MAPS)
    # one colour bar per map, each labelled
    assert len(_colorbars(fig)) == len(explorer.MAPS)
    slice_ax = [ax for ax in fig.axes if ax.lines and not any(isinstance(c, QuadMesh) for c in ax.collections)]
    assert slice_ax and all(ax.get_xlabel() and ax.get_ylabel() for ax in slice_ax)
    _check_legible(fig, style.QUICK["dpi"], png, "explorer")


def test_explorer_page_declares_axes_ticks_and_colour_bars():
    """The page's canvases: every map names its axes (declared with labels and ticks;
    ``theta`` in units of pi) and a colour-bar label, and the page's script draws them."""
    html = explorer.html_section()
    data = json.loads(re.search(r"const EXPLORER = (\{.*?\});\n", html, flags=re.S).group(1))
    canvases = set(re.findall(r"<canvas id=\"([^\"]+)\"", html))
    assert set(data["maps"]) | set(data["slice"]) == canvases
    for cid, spec in {**data["maps"], **data["slice"]}.items():
        for axis in (spec["x"], spec["y"]):
            declared = data["axes"][axis]
            assert declared["label"].strip(), f"{cid}: axis {axis} without a label"
            assert len(declared["ticks"]) >= 3 and all(text.strip() for _, text in declared["ticks"])
    for cid, spec in data["maps"].items():
        assert spec["colorbar"].strip(), f"{cid}: no colour-bar label"
        assert (spec["x"], spec["y"]) == ("theta", "gamma")
    theta_ticks = dict((round(v, 6), t) for v, t in data["axes"]["theta"]["ticks"])
    assert theta_ticks[round(np.pi / 2, 6)] == "\u03c0/2" and theta_ticks[round(np.pi / 6, 6)] == "\u03c0/6"
    # canvas text of at least 8 pt (12 CSS px = 9 pt)
    px = float(re.match(r"(\d+(?:\.\d+)?)px", data["font"]).group(1))
    assert px * 72 / 96 >= MIN_PT
    script = html[html.index("<script>"):]
    assert "axes(ctx, a, EXPLORER.axes[spec.x], EXPLORER.axes[spec.y]" in script
    assert "colourbar(ctx, cv, a, lim, spec.colorbar)" in script


def test_style_file_and_save_enforce_the_rule(tmp_path):
    from matplotlib.figure import Figure

    assert style.MIN_FONT_PT == MIN_PT and style.MIN_DPI == MIN_DPI
    assert style.QUICK["dpi"] >= MIN_DPI and style.FULL["dpi"] >= MIN_DPI
    with style.figure_style():
        sizes = {k: matplotlib.rcParams[k] for k in ("font.size", "axes.titlesize", "axes.labelsize",
                                                      "legend.fontsize", "xtick.labelsize", "ytick.labelsize")}
        from matplotlib.font_manager import FontProperties

        for key, value in sizes.items():
            assert FontProperties(size=value).get_size_in_points() >= MIN_PT, f"{key} = {value}"
        fig = Figure(figsize=(3, 2))
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("tiny", fontsize=4)
        ax.tick_params(labelsize=5)
        with pytest.raises(ValueError, match="dpi"):
            style.save(fig, tmp_path, "low", 60)
        style.save(fig, tmp_path, "ok", 100)
    assert min(t.get_fontsize() for t in style.visible_texts(fig)) >= MIN_PT
