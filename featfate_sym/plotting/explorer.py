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
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import sympy as sp
from sympy.printing.jscode import JavascriptCodePrinter

import featfate_sym as ff

#: results the explorer evaluates in the browser
EXPLORER_RESULTS = (
    "lt.transferability",
    "lt.boundary",
    "ft.transferability",
    "ft.transferability_exact",
    "ft.transferability_finite_source",
)


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
    for variable in ("T_lt", "T_ft"):
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
            "have": {k: k in ff.keys() for k in EXPLORER_RESULTS}}
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
 <figure><canvas id="c-lt" width="300" height="300"></canvas><figcaption>T<sub>lt</sub>(&theta;, &gamma;); black: lt.boundary</figcaption></figure>
 <figure><canvas id="c-ft" width="300" height="300"></canvas><figcaption>T<sub>ft</sub>, exact balanced flow (&sigma;, L)</figcaption></figure>
 <figure><canvas id="c-fs" width="300" height="300"></canvas><figcaption>T<sub>ft</sub>, finite source (&gamma;<sub>s</sub>, &sigma;<sub>s</sub>)</figcaption></figure>
 <figure><canvas id="c-slice" width="420" height="300"></canvas><figcaption>slices at &theta;: T<sub>lt</sub> (blue), T<sub>ft</sub> exact (orange), paper T<sub>ft</sub> (dashed); dots: simulation &plusmn; SE</figcaption></figure>
</div>
<script>
/*LIBRARY*/
const EXPLORER = /*DATA*/;
(function () {
  const N = 90, GMAX = 2, TMAX = Math.PI / 2;
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
  function phase(id, fn) {
    const cv = document.getElementById(id), ctx = cv.getContext("2d");
    const w = cv.width, h = cv.height, vals = [];
    let lim = 0.05;
    for (let j = 0; j < N; j++) for (let i = 0; i < N; i++) {
      const th = TMAX * (i + 0.5) / N, g = GMAX * (j + 0.5) / N, v = fn(g, th);
      vals.push(v);
      if (isFinite(v) && v < 0) lim = Math.max(lim, -v);
    }
    for (let j = 0; j < N; j++) for (let i = 0; i < N; i++) {
      ctx.fillStyle = colour(vals[j * N + i], lim);
      ctx.fillRect(Math.floor(i * w / N), Math.floor(h - (j + 1) * h / N), Math.ceil(w / N) + 1, Math.ceil(h / N) + 1);
    }
    return {ctx, w, h};
  }
  function polyline(p, xs, ys) {
    const {ctx, w, h} = p;
    ctx.strokeStyle = "black"; ctx.lineWidth = 1.5; ctx.beginPath();
    let pen = false;
    for (let k = 0; k < xs.length; k++) {
      const x = xs[k] / TMAX * w, y = h - ys[k] / GMAX * h;
      if (!isFinite(ys[k])) { pen = false; continue; }
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
  }
  function slices(p) {
    const cv = document.getElementById("c-slice"), ctx = cv.getContext("2d"), w = cv.width, h = cv.height;
    ctx.clearRect(0, 0, w, h);
    const lo = -1.2, hi = 1.2, X = g => g / GMAX * w, Y = v => h - (v - lo) / (hi - lo) * h;
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(0, Y(0)); ctx.lineTo(w, Y(0)); ctx.stroke();
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.fillText("gamma 0 .. 2;  T in [-1.2, 1.2]", 4, 12);
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
