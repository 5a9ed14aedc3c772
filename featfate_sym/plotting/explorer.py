"""An offline, interactive explorer of the phase diagrams for the HTML report.

The browser evaluates the *derived* expressions: every formula in the page is generated
from the registry's SymPy expressions by SymPy's JavaScript code printer (nothing is
typed again in JavaScript).  Quantities a derivation leaves as roots of an equation
(:class:`~featfate_sym.registry.ImplicitRoot`) are solved in the browser by the same
safeguarded Newton iteration as :mod:`featfate_sym.compiled`; that solver is generic
code, the equation it solves is generated.  Sliders set ``sigma``, ``lam``, ``L``,
``gamma_s``, ``sigma_s`` and the slice angle ``theta``; the page redraws the ``T_lt``
and ``T_ft`` phase diagrams, the ``lt.boundary`` zero curves and the slices, with
simulation means where a results file was given.  No server, no network.

Every map is drawn with labelled axes (``theta`` ticks in units of pi, ``gamma``) and a
labelled colour bar; the axes, ticks and labels are declared once here (:data:`AXES`,
:data:`MAPS`) and passed to the page.  :func:`static_figure` draws the same panels with
matplotlib (the explorer at one slider setting, for print and for the tests).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import sympy as sp
from sympy.printing.jscode import JavascriptCodePrinter

import featfate_sym as ff

from featfate_sym import protocols as _protocols


def _prediction(protocol: str, form: str) -> str:
    """The key of the protocol table's prediction of ``T`` with that form."""
    return _protocols.get(protocol).prediction("T", form).key


#: the keys the maps draw, read from the protocol table
_LT = _prediction("linear_transfer", "limit")
_FT = _prediction("fine_tune", "exact balanced flow")
_FT_PAPER = _prediction("fine_tune", "paper (c = 1)")
_FS = _prediction("fine_tune", "finite source, c = 1")

#: results the explorer evaluates in the browser
EXPLORER_RESULTS = (_LT, "lt.boundary", _FT_PAPER, _FT, _FS)

#: the axes of the explorer's panels: label and (value, tick label) pairs; ``theta`` is
#: ticked in units of pi at the ticks of the matplotlib figures
AXES = {
    "theta": {"label": "\u03b8", "ticks": [[0.0, "0"], [float(np.pi / 6), "\u03c0/6"], [float(np.pi / 3), "\u03c0/3"],
                                          [float(np.pi / 2), "\u03c0/2"]]},
    "gamma": {"label": "\u03b3 = n/d", "ticks": [[0.0, "0"], [0.5, "0.5"], [1.0, "1"], [1.5, "1.5"], [2.0, "2"]]},
    "T": {"label": "transferability T", "ticks": [[-1.0, "\u22121"], [-0.5, "\u22120.5"], [0.0, "0"], [0.5, "0.5"],
                                                  [1.0, "1"]]},
}

#: the phase-diagram canvases: the result drawn, axes, colour-bar label
MAPS = {
    "c-lt": {"key": _LT, "x": "theta", "y": "gamma", "colorbar": "T_lt (linear transfer)"},
    "c-ft": {"key": _FT, "x": "theta", "y": "gamma", "colorbar": "T_ft (exact flow)"},
    "c-fs": {"key": _FS, "x": "theta", "y": "gamma", "colorbar": "T_ft (finite source)"},
}
#: the slice canvas (curves, no colour bar)
SLICE = {"c-slice": {"x": "gamma", "y": "T"}}
#: canvas text: 12 CSS px (9 pt), above the 8 pt floor of the figures
FONT = "12px sans-serif"


class _Printer(JavascriptCodePrinter):
    """SymPy's JavaScript printer, completed for what the registry's results contain."""

    def _print_NaN(self, expr):
        return "NaN"

    def _print_Min(self, expr):
        return "Math.min(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Max(self, expr):
        return "Math.max(" + ", ".join(self._print(a) for a in expr.args) + ")"


def javascript_expression(expr: sp.Basic) -> str:
    """JavaScript of one scalar expression; a ``Piecewise`` without a default branch gets
    ``NaN`` as its default (the same as the compiled NumPy function)."""
    if isinstance(expr, sp.Piecewise) and expr.args[-1].cond != sp.true:
        expr = sp.Piecewise(*expr.args, (sp.nan, True))
    return _Printer({"strict": True}).doprint(expr)


def function_name(key: str) -> str:
    return key.replace(".", "_")


_SOLVER = """
// Safeguarded Newton iteration inside [lo, hi] (the method of featfate_sym.compiled):
// NaN where the bracket holds no sign change.
function featfateNewton(f, df, lo, hi) {
  let flo = f(lo), fhi = f(hi);
  if (!isFinite(flo) || !isFinite(fhi) || flo * fhi > 0) return NaN;
  const increasing = fhi >= flo;
  let x = hi;
  for (let i = 0; i < 200; i++) {
    const fx = f(x);
    if (fx === 0) return x;
    if ((fx > 0) === increasing) hi = x; else lo = x;
    const step = x - fx / df(x);
    const next = (isFinite(step) && step > lo && step < hi) ? step : 0.5 * (lo + hi);
    if (Math.abs(next - x) <= 4 * Number.EPSILON * Math.abs(next)) return next;
    x = next;
  }
  return x;
}
"""


def javascript_function(key: str) -> str:
    """A JavaScript function ``key_with_underscores(params...)`` generated from the
    registered expression (an array of components for a vector-valued result)."""
    result = ff.get(key)
    args = [s.name for s in result.symbols]
    lines = [f"// {key}: {result.title} [{result.status.value}] (generated from the SymPy expression)",
             f"function {function_name(key)}({', '.join(args)}) {{"]
    known = list(args)
    for root in result.derivation.implicit:
        name = root.symbol.name
        eq = javascript_expression(root.equation)
        deq = javascript_expression(sp.diff(root.equation, root.symbol))
        lo, hi = (javascript_expression(b) for b in root.bracket)
        lines += [
            f"  const {name} = featfateNewton(",
            f"    ({name}) => ({eq}),",
            f"    ({name}) => ({deq}),",
            f"    ({lo}), ({hi}));",
        ]
        known.append(name)
    expr = result.expr
    if isinstance(expr, (sp.Tuple, sp.MatrixBase)):
        body = "[" + ", ".join(f"({javascript_expression(e)})" for e in expr) + "]"
    else:
        body = javascript_expression(expr)
    lines += [f"  return {body};", "}"]
    return "\n".join(lines)


def javascript_library(keys: Sequence[str] = EXPLORER_RESULTS) -> str:
    """The solver and one generated function per available key."""
    available = set(ff.keys())
    return _SOLVER + "\n".join(javascript_function(k) for k in keys if k in available)


def _colour_stops(n: int = 11) -> list[str]:
    import matplotlib as mpl

    from featfate_sym.plotting.style import DIVERGING

    cmap = mpl.colormaps[DIVERGING]
    return [mpl.colors.to_hex(cmap(x)) for x in np.linspace(0, 1, n)]


def simulation_points(results) -> list[dict]:
    """Simulated ``T_lt`` / ``T_ft`` means and standard errors per grid point, as JSON-ready
    records (``sigma``, ``lam``, ``L`` are kept so the page shows only matching ones)."""
    if results is None:
        return []
    out = []
    dims = [d for d in results.dims if d != "replicate"]
    # the T of every protocol the maps draw (the page shows linear transfer and fine-tuning)
    for variable in (_protocols.get(name).variable("T") for name in ("linear_transfer", "fine_tune")):
        if variable not in results.data_vars or "gamma" not in dims or "theta" not in dims:
            continue
        data = results[variable]
        mean = data.mean("replicate")
        se = data.std("replicate", ddof=1) / np.sqrt(data.sizes["replicate"])
        for index in np.ndindex(*[mean.sizes[d] for d in mean.dims]):
            where = dict(zip(mean.dims, index))
            point = {name: float(mean.isel(where).coords[name]) for name in ("gamma", "theta", "sigma", "lam", "L")
                     if name in mean.coords}
            point.update(kind=variable, mean=float(mean.isel(where)), se=float(se.isel(where)))
            out.append(point)
    return out


def html_section(results=None) -> str:
    """The explorer as an HTML fragment (script included) for the report."""
    data = {"colours": _colour_stops(), "points": simulation_points(results),
            "have": {k: k in ff.keys() for k in EXPLORER_RESULTS},
            "axes": AXES, "maps": MAPS, "slice": SLICE, "font": FONT}
    return _TEMPLATE.replace("/*LIBRARY*/", javascript_library()).replace("/*DATA*/", json.dumps(data))


_TEMPLATE = """
<section id="explorer">
<h2>Interactive explorer</h2>
<p class="meta">Everything below is computed in this page from JavaScript generated from the derived SymPy expressions.</p>
<div class="controls">
 <label>&sigma; <input type="range" id="x-sigma" min="0" max="1" step="0.01" value="0.2"><output id="o-sigma"></output></label>
 <label>&lambda; <input type="range" id="x-lam" min="0" max="1" step="0.01" value="0"><output id="o-lam"></output></label>
 <label>L <input type="range" id="x-L" min="1" max="6" step="1" value="2"><output id="o-L"></output></label>
 <label>&gamma;<sub>s</sub> <input type="range" id="x-gamma_s" min="0.1" max="3" step="0.05" value="0.5"><output id="o-gamma_s"></output></label>
 <label>&sigma;<sub>s</sub> <input type="range" id="x-sigma_s" min="0" max="1" step="0.01" value="0.2"><output id="o-sigma_s"></output></label>
 <label>slice &theta; <input type="range" id="x-theta" min="0" max="1.5707963" step="0.01" value="0.7853982"><output id="o-theta"></output></label>
</div>
<div class="panels">
 <figure><canvas id="c-lt" width="380" height="320"></canvas><figcaption>T<sub>lt</sub>(&theta;, &gamma;); black: lt.boundary</figcaption></figure>
 <figure><canvas id="c-ft" width="380" height="320"></canvas><figcaption>T<sub>ft</sub>, exact balanced flow (&sigma;, L)</figcaption></figure>
 <figure><canvas id="c-fs" width="380" height="320"></canvas><figcaption>T<sub>ft</sub>, finite source (&gamma;<sub>s</sub>, &sigma;<sub>s</sub>)</figcaption></figure>
 <figure><canvas id="c-slice" width="440" height="320"></canvas><figcaption>slices at &theta;: T<sub>lt</sub> (blue), T<sub>ft</sub> exact (orange), paper T<sub>ft</sub> (dashed); dots: simulation &plusmn; SE</figcaption></figure>
</div>
<script>
/*LIBRARY*/
const EXPLORER = /*DATA*/;
(function () {
  const N = 90, GMAX = 2, TMAX = Math.PI / 2;
  // plot area inside a canvas: margins for tick labels, axis labels and the colour bar
  const M = {left: 52, top: 10, bottom: 42, right: 92, rightSlice: 14};
  const ids = ["sigma", "lam", "L", "gamma_s", "sigma_s", "theta"];
  const get = () => Object.fromEntries(ids.map(k => [k, parseFloat(document.getElementById("x-" + k).value)]));
  function colour(v, lim) {
    const c = EXPLORER.colours, n = c.length - 1;
    if (Number.isNaN(v)) return "#bbbbbb";
    let t = 0.5 + 0.5 * Math.max(-1, Math.min(1, v / lim));
    const i = Math.min(n - 1, Math.floor(t * n)), f = t * n - i;
    const a = c[i], b = c[i + 1];
    const mix = k => Math.round(parseInt(a.substr(k, 2), 16) * (1 - f) + parseInt(b.substr(k, 2), 16) * f);
    return "rgb(" + mix(1) + "," + mix(3) + "," + mix(5) + ")";
  }
  function area(cv, right) {
    const x0 = M.left, y0 = M.top, w = cv.width - M.left - right, h = cv.height - M.top - M.bottom;
    return {x0, y0, w, h};
  }
  // axes of a panel: frame, ticks with labels, axis labels (specs from EXPLORER.axes)
  function axes(ctx, a, xspec, yspec, xmin, xmax, ymin, ymax) {
    const X = v => a.x0 + (v - xmin) / (xmax - xmin) * a.w, Y = v => a.y0 + a.h - (v - ymin) / (ymax - ymin) * a.h;
    ctx.save();
    ctx.strokeStyle = "#222"; ctx.fillStyle = "#222"; ctx.lineWidth = 1; ctx.setLineDash([]);
    ctx.font = EXPLORER.font;
    ctx.strokeRect(a.x0 + 0.5, a.y0 + 0.5, a.w, a.h);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const [v, text] of xspec.ticks) {
      const x = X(v);
      ctx.beginPath(); ctx.moveTo(x, a.y0 + a.h); ctx.lineTo(x, a.y0 + a.h + 4); ctx.stroke();
      ctx.fillText(text, x, a.y0 + a.h + 6);
    }
    ctx.fillText(xspec.label, a.x0 + a.w / 2, a.y0 + a.h + 24);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const [v, text] of yspec.ticks) {
      const y = Y(v);
      ctx.beginPath(); ctx.moveTo(a.x0, y); ctx.lineTo(a.x0 - 4, y); ctx.stroke();
      ctx.fillText(text, a.x0 - 6, y);
    }
    ctx.translate(12, a.y0 + a.h / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText(yspec.label, 0, 0);
    ctx.restore();
  }
  // vertical colour bar right of the map: -lim (bottom) .. +lim (top), ticks and label
  function colourbar(ctx, cv, a, lim, label) {
    const x = a.x0 + a.w + 12, bw = 12;
    for (let k = 0; k < a.h; k++) {
      ctx.fillStyle = colour(lim * (1 - 2 * (k + 0.5) / a.h), lim);
      ctx.fillRect(x, a.y0 + k, bw, 1);
    }
    ctx.save();
    ctx.strokeStyle = "#222"; ctx.fillStyle = "#222"; ctx.lineWidth = 1; ctx.font = EXPLORER.font;
    ctx.strokeRect(x + 0.5, a.y0 + 0.5, bw, a.h);
    ctx.textAlign = "left"; ctx.textBaseline = "middle";
    for (const [v, y] of [[lim, a.y0], [0, a.y0 + a.h / 2], [-lim, a.y0 + a.h]]) {
      ctx.beginPath(); ctx.moveTo(x + bw, y); ctx.lineTo(x + bw + 4, y); ctx.stroke();
      ctx.fillText(v === 0 ? "0" : v.toPrecision(2).replace("-", "\u2212"), x + bw + 6, y);
    }
    ctx.translate(cv.width - 10, a.y0 + a.h / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText(label, 0, 0);
    ctx.restore();
  }
  function phase(id, fn) {
    const spec = EXPLORER.maps[id];
    const cv = document.getElementById(id), ctx = cv.getContext("2d");
    ctx.clearRect(0, 0, cv.width, cv.height);
    const a = area(cv, M.right), vals = [];
    let lim = 0.05;
    for (let j = 0; j < N; j++) for (let i = 0; i < N; i++) {
      const th = TMAX * (i + 0.5) / N, g = GMAX * (j + 0.5) / N, v = fn(g, th);
      vals.push(v);
      if (isFinite(v) && v < 0) lim = Math.max(lim, -v);
    }
    for (let j = 0; j < N; j++) for (let i = 0; i < N; i++) {
      ctx.fillStyle = colour(vals[j * N + i], lim);
      ctx.fillRect(a.x0 + Math.floor(i * a.w / N), a.y0 + Math.floor(a.h - (j + 1) * a.h / N),
                   Math.ceil(a.w / N) + 1, Math.ceil(a.h / N) + 1);
    }
    ctx.clearRect(a.x0 + a.w + 1, 0, cv.width, cv.height);  // the last cells' overlap
    ctx.clearRect(0, a.y0 + a.h + 1, cv.width, cv.height);
    axes(ctx, a, EXPLORER.axes[spec.x], EXPLORER.axes[spec.y], 0, TMAX, 0, GMAX);
    colourbar(ctx, cv, a, lim, spec.colorbar);
    return {ctx, a};
  }
  function polyline(p, xs, ys) {
    const {ctx, a} = p;
    ctx.save();
    ctx.beginPath(); ctx.rect(a.x0, a.y0, a.w, a.h); ctx.clip();
    ctx.strokeStyle = "black"; ctx.lineWidth = 1.5; ctx.beginPath();
    let pen = false;
    for (let k = 0; k < xs.length; k++) {
      const x = a.x0 + xs[k] / TMAX * a.w, y = a.y0 + a.h - ys[k] / GMAX * a.h;
      if (!isFinite(ys[k])) { pen = false; continue; }
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
    ctx.restore();
  }
  function slices(p) {
    const spec = EXPLORER.slice["c-slice"];
    const cv = document.getElementById("c-slice"), ctx = cv.getContext("2d");
    ctx.clearRect(0, 0, cv.width, cv.height);
    const a = area(cv, M.rightSlice);
    const lo = -1.2, hi = 1.2, X = g => a.x0 + g / GMAX * a.w, Y = v => a.y0 + a.h - (v - lo) / (hi - lo) * a.h;
    ctx.save();
    ctx.beginPath(); ctx.rect(a.x0, a.y0, a.w, a.h); ctx.clip();
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(a.x0, Y(0)); ctx.lineTo(a.x0 + a.w, Y(0)); ctx.stroke();
    const curves = [["#0072B2", [], g => lt_transferability(g, p.theta, p.sigma, p.lam)]];
    if (EXPLORER.have["ft.transferability_exact"]) curves.push(["#D55E00", [], g => ft_transferability_exact(g, p.theta, p.sigma, p.L)]);
    if (EXPLORER.have["ft.transferability"]) curves.push(["#D55E00", [4, 3], g => ft_transferability(g, p.theta)]);
    for (const [col, dash, f] of curves) {
      ctx.strokeStyle = col; ctx.setLineDash(dash); ctx.lineWidth = 1.5; ctx.beginPath();
      let pen = false;
      for (let k = 1; k <= 400; k++) {
        const g = GMAX * k / 400, v = f(g);
        if (!isFinite(v) || Math.abs(g - 1) < 1e-9) { pen = false; continue; }
        const y = Y(Math.max(lo - 1, Math.min(hi + 1, v)));
        if (pen) ctx.lineTo(X(g), y); else ctx.moveTo(X(g), y);
        pen = true;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    for (const pt of EXPLORER.points) {
      if (Math.abs(pt.theta - p.theta) > 0.02 || ("sigma" in pt && Math.abs(pt.sigma - p.sigma) > 1e-6)) continue;
      if (pt.kind === "T_lt" && "lam" in pt && Math.abs(pt.lam - p.lam) > 1e-6) continue;
      if (pt.kind === "T_ft" && "L" in pt && pt.L !== p.L) continue;
      ctx.strokeStyle = ctx.fillStyle = pt.kind === "T_lt" ? "#0072B2" : "#D55E00";
      ctx.beginPath(); ctx.moveTo(X(pt.gamma), Y(pt.mean - pt.se)); ctx.lineTo(X(pt.gamma), Y(pt.mean + pt.se)); ctx.stroke();
      ctx.beginPath(); ctx.arc(X(pt.gamma), Y(pt.mean), 3, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.restore();
    axes(ctx, a, EXPLORER.axes[spec.x], EXPLORER.axes[spec.y], 0, GMAX, lo, hi);
  }
  function draw() {
    const p = get();
    for (const k of ids) document.getElementById("o-" + k).textContent = " " + p[k].toFixed(k === "L" ? 0 : 2);
    const lt = phase("c-lt", (g, th) => lt_transferability(g, th, p.sigma, p.lam));
    if (EXPLORER.have["lt.boundary"]) {
      const ths = [], b = [[], [], []];
      for (let k = 0; k <= 300; k++) {
        const th = TMAX * k / 300, r = lt_boundary(th, p.sigma, p.lam);
        ths.push(th); for (let m = 0; m < 3; m++) b[m].push(r[m]);
      }
      for (let m = 0; m < 3; m++) polyline(lt, ths, b[m]);
    }
    if (EXPLORER.have["ft.transferability_exact"]) phase("c-ft", (g, th) => ft_transferability_exact(g, th, p.sigma, p.L));
    if (EXPLORER.have["ft.transferability_finite_source"])
      phase("c-fs", (g, th) => ft_transferability_finite_source(g, th, p.gamma_s, p.sigma_s));
    slices(p);
  }
  for (const k of ids) document.getElementById("x-" + k).addEventListener("input", draw);
  draw();
})();
</script>
</section>
"""


def static_figure(sigma: float = 0.2, lam: float = 0.0, L: int = 2, gamma_s: float = 0.5, sigma_s: float = 0.2,
                  theta: float = np.pi / 4, *, quick: bool = False, results=None):
    """The explorer's panels at one slider setting, drawn with matplotlib: the three
    phase diagrams of :data:`MAPS` (each with ``theta``/``gamma`` axes and its own
    labelled colour bar; ``lt.boundary`` on the ``T_lt`` map) and the slices at
    ``theta``.  Draw inside :func:`featfate_sym.plotting.style.figure_style`."""
    from matplotlib.figure import Figure

    from featfate_sym.plotting import phase, style
    from featfate_sym.plotting.slices import theta_label
    from featfate_sym.plotting.theory import available, gamma_line, on_grid, theta_gamma_grid

    res = style.resolution(quick)
    theta_axis, gamma_axis, th, ga = theta_gamma_grid(res["points"])
    params = {"c-lt": {"sigma": sigma, "lam": lam}, "c-ft": {"sigma": sigma, "L": L},
              "c-fs": {"gamma_s": gamma_s, "sigma_s": sigma_s}}
    titles = {"c-lt": rf"$\mathcal{{T}}_{{\mathrm{{lt}}}}$, $\sigma={sigma:g}$, $\lambda={lam:g}$",
              "c-ft": rf"$\mathcal{{T}}_{{\mathrm{{ft}}}}$ exact, $\sigma={sigma:g}$, $L={L:d}$",
              "c-fs": rf"$\mathcal{{T}}_{{\mathrm{{ft}}}}$, $\gamma_s={gamma_s:g}$, $\sigma_s={sigma_s:g}$"}
    bar_labels = {"c-lt": style.LABELS["T_lt"], "c-ft": style.LABELS["T_ft"], "c-fs": style.LABELS["T_ft"]}
    fig = Figure(figsize=(11.0, 8.0))
    panels = fig.subplots(2, 2).ravel()
    for ax, (cid, spec) in zip(panels, MAPS.items()):
        if not available(spec["key"]):
            ax.set_axis_off()
            continue
        values = on_grid(spec["key"], gamma=ga, theta=th, **params[cid])
        norm = style.diverging_norm(style.symmetric_limit(values))
        mesh = phase._map(ax, theta_axis, gamma_axis, values, norm, titles[cid])
        if cid == "c-lt" and available("lt.boundary"):
            phase._draw_boundary(ax, phase.lt_boundary_curves(sigma, lam, res["line_points"]))
        phase._colorbar(fig, mesh, [ax], bar_labels[cid])
    ax = panels[3]
    gamma = gamma_line(res["line_points"])
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.plot(gamma, on_grid("lt.transferability", gamma=gamma, theta=theta, sigma=sigma, lam=lam),
            color="C0", label=style.LABELS["T_lt"])
    if available("ft.transferability_exact"):
        ax.plot(gamma, on_grid("ft.transferability_exact", gamma=gamma, theta=theta, sigma=sigma, L=L),
                color="C1", label=style.LABELS["T_ft"] + " exact")
    if available("ft.transferability"):
        ax.plot(gamma, on_grid("ft.transferability", gamma=gamma, theta=theta), color="C1", ls="--",
                label=style.LABELS["T_ft"] + r" ($c=1$)")
    ax.set_xlim(0, 2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_xlabel(style.LABELS["gamma"])
    ax.set_ylabel(r"$\mathcal{T}$")
    ax.set_title(rf"slices at $\theta=${theta_label(theta)}")
    ax.legend(loc="lower right")
    return fig
