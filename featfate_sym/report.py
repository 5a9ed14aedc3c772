"""A reproduction report: derived results, figures, experiments and the agreement table.

Usage::

    python -m featfate_sym.report --out report            # runs a small sweep first
    python -m featfate_sym.report --out report --results sweep/results.nc
    python -m featfate_sym.report --out report --quick     # coarse figures

Writes ``DIR/report.html`` (self-contained: figures embedded as PNG data, formulas as
MathML, which browsers render without any script or network, and an interactive
explorer whose JavaScript is generated from the derived expressions) and its Markdown twin
``DIR/report.md`` (formulas in LaTeX, figures linked from ``DIR/figures/``).

The agreement table lists, for every simulated grid point, the theory value of each
simulated quantity (for fine-tuning both the paper's form, ``c = 1``, and the exact
balanced-flow form), the simulation mean over replicates, its standard error and
``z = (mean - theory) / SE``.  Theory is the proportional limit while simulations run at
finite ``d``, so ``z`` measures finite-size effects as well as errors.
Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from featfate_sym import cli
from featfate_sym.symbols import latex

#: the small sweep run when no results are given: a few minutes at most on one core
DEFAULT_SWEEP = {
    "axes": {"gamma": [0.25, 0.5, 0.75, 1.5, 2.0], "theta": [math.pi / 8, math.pi / 4, 3 * math.pi / 8]},
    "fixed": {"sigma": 0.2, "lam": 0.0, "L": 2, "d": 50},
    "replicates": 24,
    "seed": 0,
}

#: (figure, keyword arguments, caption)
FIGURE_PLAN = (
    ("lt-phase", {"sigma": 0.0, "lam": 0.0}, "Linear transfer, no noise: T_lt over (theta, gamma); black: the derived boundary lt.boundary."),
    ("lt-phase", {"sigma": 0.2, "lam": 0.0}, "Linear transfer at sigma = 0.2, with the simulated map beside it when the sweep covers (gamma, theta)."),
    ("ft-phase", {"sigma": 1.0, "L": 3}, "Fine-tuning: the paper's form (c = 1) against the exact balanced-flow form at sigma = 1, L = 3, and their difference."),
    ("slices", {"sigma": 0.2, "lam": 0.0, "kind": "lt"}, "T_lt against gamma at theta = pi/8, pi/4, 3pi/8, with simulation means and standard errors."),
    ("slices", {"sigma": 0.2, "L": 2, "kind": "ft"}, "T_ft (exact form, L = 2) against gamma, with simulation means and standard errors."),
    ("surface", {"sigma": 0.2, "lam": 0.0}, "The T_lt surface (clipped at the scratch peak)."),
    ("scratch", {"sigmas": (0.0, 0.2, 0.5)}, "Double descent of the min-norm scratch risk; dashed: optimally regularised ridge."),
    ("ridge", {"gamma": 0.5, "theta": math.pi / 8, "sigma": 0.2}, "Linear-transfer risk against the readout ridge."),
    ("finite-source", {"gamma_s": 0.5, "sigma_s": 0.2}, "Fine-tuning from a finite source, gamma_s = 0.5, sigma_s = 0.2."),
    ("finite-source", {"gamma_s": 1.5, "sigma_s": 0.2}, "Fine-tuning from a finite source, gamma_s = 1.5, sigma_s = 0.2."),
    ("vs-tuned-scratch", {"sigma": 0.2, "lam": 0.0}, "T_lt against min-norm scratch (left) and against optimally tuned ridge scratch (right): the anomalous band disappears."),
    ("kl", {"sigma": 0.2, "lam": 0.0}, "T_lt against the KL divergence of the tasks: at one KL the sign of T depends on gamma."),
)


#: absolute allowance for the converged-but-not-exact end point of gradient descent
SOLVER_ALLOWANCE = 1e-6

#: family-wise false-alarm rate of the agreement table's flags (Bonferroni over its rows)
TABLE_ALPHA = 1e-3


@dataclass(frozen=True)
class Agreement:
    """One row of the agreement table."""

    params: dict
    quantity: str
    form: str
    theory: float
    mean: float
    stderr: float
    replicates: int

    @property
    def z(self) -> float:
        """(mean - theory) / sqrt(SE^2 + SOLVER_ALLOWANCE^2): a t statistic with
        :attr:`df` degrees of freedom (the SE is estimated from the replicates).

        The allowance is the absolute residue gradient descent may leave by its stopping
        rule (excess train loss below 1e-9 in float64): without it a noise-free cell whose
        exact risk is 0 reports z ~ 20 for a mean of 2e-8 with a standard error of 1e-9.
        """
        if not (math.isfinite(self.theory) and math.isfinite(self.mean)):
            return math.nan
        scale = math.hypot(self.stderr, SOLVER_ALLOWANCE)
        return (self.mean - self.theory) / scale

    @property
    def df(self) -> int:
        """Degrees of freedom of the estimated SE, ``replicates - 1``."""
        return self.replicates - 1

    def critical(self, comparisons: int = 1, alpha: float = TABLE_ALPHA) -> float:
        """Two-sided Student-t critical value for :attr:`z` (``df = replicates - 1``) at
        ``alpha / comparisons``; approximate normality of the mean is assumed.  For a limit
        form ``|z|`` beyond it measures the finite-size effect as well as any error."""
        from featfate_sym.stats import t_critical

        return t_critical(self.df, alpha, comparisons)


def critical_values(rows: Sequence[Agreement], alpha: float = TABLE_ALPHA) -> list[float]:
    """Per row, the critical value of its ``|z|`` at family-wise rate ``alpha`` over the rows
    with a finite ``z`` (Bonferroni); NaN where ``z`` is not finite."""
    m = sum(1 for r in rows if math.isfinite(r.z))
    return [r.critical(m, alpha) if math.isfinite(r.z) else math.nan for r in rows]


def agreement(dataset) -> list[Agreement]:
    """Theory against simulation at every grid point of ``dataset``: every prediction of
    the protocol table (:mod:`featfate_sym.protocols`) whose variable the dataset holds,
    at the points where it holds (population-source results at population-source
    points, finite-source results at finite ``gamma_s``, ``lam = 0`` forms at ``lam = 0``)."""
    import featfate_sym as ff
    from featfate_sym import protocols

    known = set(ff.keys())
    pairs = [(p, pred) for p, pred in protocols.predictions()
             if pred.key in known and p.variable(pred.observable) in dataset.data_vars]
    dims = [d for d in dataset.dims if d != "replicate"]
    rows: list[Agreement] = []
    for index in np.ndindex(*[dataset.sizes[d] for d in dims]):
        cell = dataset.isel(dict(zip(dims, index)))
        params = protocols.cell_params(cell.coords)
        for protocol, prediction in pairs:
            if not prediction.applies(params):
                continue
            variable = protocol.variable(prediction.observable)
            values = np.asarray(cell[variable].values, dtype=float)
            values = values[np.isfinite(values)]
            if values.size < 2:
                continue
            arguments = prediction.arguments(params)
            try:
                theory = float(ff.get(prediction.key).evaluate(**arguments))
            except ValueError:
                theory = math.nan
            rows.append(Agreement({**params, **arguments}, variable, prediction.form, theory, float(values.mean()),
                                  float(values.std(ddof=1) / math.sqrt(values.size)), int(values.size)))
    return rows


def summary(rows: Sequence[Agreement]) -> list[tuple[str, str, int, float, float]]:
    """(quantity, form, points, largest |z|, mean |z|) per compared quantity, in the order
    of the protocol table; the flags of :func:`critical_values` say which ``|z|`` are
    beyond the table's critical values."""
    from featfate_sym import protocols

    out = []
    seen = set()
    for protocol, prediction in protocols.predictions():
        variable = protocol.variable(prediction.observable)
        if (variable, prediction.form) in seen:
            continue
        seen.add((variable, prediction.form))
        zs = np.array([abs(r.z) for r in rows if r.quantity == variable and r.form == prediction.form], dtype=float)
        zs = zs[np.isfinite(zs)]
        if zs.size:
            out.append((variable, prediction.form, int(zs.size), float(zs.max()), float(zs.mean())))
    return out


# ------------------------------------------------------------------------- rendering
def _cases_printer():
    """SymPy's presentation-MathML printer with ``Piecewise`` typeset as cases (a brace
    and a table of value / condition rows; SymPy prints ``piecewise((...), ...)``)."""
    from sympy.printing.mathml import MathMLPresentationPrinter

    class CasesPrinter(MathMLPresentationPrinter):
        def _element(self, tag, text=None, **attrs):
            node = self.dom.createElement(tag)
            for key, value in attrs.items():
                node.setAttribute(key, value)
            if text is not None:
                node.appendChild(self.dom.createTextNode(text))
            return node

        def _print_Piecewise(self, expr):
            table = self._element("mtable", columnalign="left left")
            for value, cond in expr.args:
                row = self._element("mtr")
                cell = self._element("mtd")
                cell.appendChild(self._print(value))
                row.appendChild(cell)
                cell = self._element("mtd")
                if cond == True:  # noqa: E712  (SymPy's true)
                    cell.appendChild(self._element("mtext", "\u2003otherwise"))
                else:
                    cell.appendChild(self._element("mtext", "\u2003if\u2002"))
                    cell.appendChild(self._print(cond))
                row.appendChild(cell)
                table.appendChild(row)
            brace = self._element("mrow")
            brace.appendChild(self._element("mo", "{", stretchy="true"))
            brace.appendChild(table)
            return brace

    return CasesPrinter()


def mathml(expr) -> str:
    """Presentation MathML of a SymPy expression (rendered natively by browsers), with
    cases typeset as cases and the symbols by their mathematical names (``lam`` as
    lambda)."""
    import sympy as sp

    from featfate_sym.symbols import LATEX_NAMES

    # the MathML printer has no symbol_names: rename to names it prints as intended
    renamed = {sym: sp.Symbol(name.strip("\\").replace("{", "").replace("}", ""))
               for sym, name in LATEX_NAMES.items()}
    body = _cases_printer().doprint(expr.xreplace(renamed))  # expr: a SymPy expression of ours
    # named entities (&InvisibleTimes; ...) as characters: the block stays valid XML too
    body = re.sub(r"&([A-Za-z][A-Za-z0-9]*);", lambda m: m.group(0) if m.group(1) in _XML_ENTITIES else html.unescape(m.group(0)), body)
    # the printer writes relations raw (<mo><</mo>): escape them
    body = re.sub(r"<mo>([<>]=?)</mo>", lambda m: f"<mo>{html.escape(m.group(1))}</mo>", body)
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">{body}</math>'


_XML_ENTITIES = frozenset({"lt", "gt", "amp", "quot", "apos"})


def _fmt(value: float, digits: int = 4) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}g}"


def _param_text(params: dict) -> str:
    # the source parameters only for a finite source (gamma_s = inf is the population one)
    finite_source = math.isfinite(params.get("gamma_s", math.inf))
    shown = ("gamma", "theta", "sigma", "lam", "L", "d", "n") + (("gamma_s", "sigma_s") if finite_source else ())
    return ", ".join(f"{k} = {_fmt(v)}" for k, v in params.items() if k in shown)


def experiment_table(dataset) -> list[tuple[str, str]]:
    """(parameter, values) of a sweep: swept axes with their values, fixed axes, replicates."""
    rows = []
    for name in ("gamma", "theta", "sigma", "lam", "L", "d", "gamma_s", "sigma_s"):
        if name not in dataset.coords:
            continue
        values = np.atleast_1d(np.asarray(dataset.coords[name].values, dtype=float))
        kind = "swept" if name in dataset.dims else "fixed"
        rows.append((f"{name} ({kind})", ", ".join(_fmt(v) for v in values)))
    rows.append(("replicates per cell", str(dataset.sizes["replicate"])))
    for key in ("command", "git_commit", "created", "torch", "featfate_sym"):
        if key in dataset.attrs:
            rows.append((key, str(dataset.attrs[key])))
    return rows


def render_figures(out: Path, quick: bool, results, log, plan=FIGURE_PLAN) -> list[tuple[str, Path, str]]:
    """Draw every figure of ``plan`` into ``out/figures``; return (title, png, caption)."""
    from featfate_sym.plotting import FIGURES, REQUIRES, style
    from featfate_sym.plotting.theory import available

    written = []
    for i, (name, kwargs, caption) in enumerate(plan):
        missing = [k for k in REQUIRES[name] if not available(k)]
        if missing:
            log(f"  skipping {name}: needs {', '.join(missing)}")
            continue
        stem = f"{i:02d}-{name}"
        with style.figure_style():
            fig = FIGURES[name](**kwargs, quick=quick, results=results)
            png, _ = style.save(fig, out / "figures", stem, style.resolution(quick)["dpi"])
        log(f"  figure {png.name}")
        written.append((name, png, caption))
    return written


_TABLE_NOTE = (
    "z = (mean - theory) / SE, SE the sample standard error over the replicates. Limit forms are the "
    "proportional limit while the simulation runs at finite d, so their |z| includes finite-size effects; "
    "the finite-n forms are exact expectations at the simulated n = round(gamma d). With few replicates "
    "the sample SE of a heavy-tailed risk (1/chi^2 at small n) is itself uncertain, which inflates some |z|. "
    f"Highlighted: |z| beyond the two-sided Student-t critical value (replicates - 1 degrees of freedom) at "
    f"a family-wise false-alarm rate {TABLE_ALPHA:g}, Bonferroni over the rows of the table."
)

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1, h2, h3 { font-weight: 600; } figure { margin: 1.5rem 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9rem; color: #444; } table { border-collapse: collapse; font-size: 0.85rem; }
td, th { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; } th { background: #f3f3f3; }
td.l, th.l { text-align: left; } .result { border-left: 3px solid #0072B2; padding-left: 1rem; margin: 1.2rem 0; }
.meta { font-size: 0.85rem; color: #555; } .controls label { display: inline-block; margin: 0.2rem 1rem 0.2rem 0; }
.panels { display: flex; flex-wrap: wrap; gap: 1rem; } .panels figure { margin: 0.5rem 0; } canvas { border: 1px solid #ccc; } .bad { color: #D55E00; font-weight: 600; } math { overflow-x: auto; }
"""


def build(out: Path, dataset, *, quick: bool, log=lambda _: None, command: str = "", plan=FIGURE_PLAN,
          keys: Sequence[str] | None = None, explorer: bool = True) -> dict:
    """Write ``report.html`` and ``report.md`` into ``out``; return the agreement summary.

    ``plan``: the figures (default :data:`FIGURE_PLAN`); ``keys``: the registry results
    whose derived expressions are listed (default: all); ``explorer``: include the
    interactive explorer (:mod:`featfate_sym.plotting.explorer`)."""
    import featfate_sym as ff
    from featfate_sym.registry import FAMILIES

    out.mkdir(parents=True, exist_ok=True)
    figures = render_figures(out, quick, dataset, log, plan)
    rows = agreement(dataset) if dataset is not None else []
    totals = summary(rows)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    h = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>featfate_sym reproduction report</title>"
         f"<style>{_CSS}</style></head><body>",
         "<h1>Features are fate: reproduction report</h1>",
         f"<p class='meta'>Built {stamp} by <code>{html.escape(command)}</code>; featfate_sym {ff.__version__}. "
         "Theory from the registry of derived results (Tahir, Ganguli &amp; Rotskoff, arXiv 2410.08194).</p>"]
    md = ["# Features are fate: reproduction report", "",
          f"Built {stamp} by `{command}`; featfate_sym {ff.__version__}. Theory from the registry of derived results "
          "(Tahir, Ganguli & Rotskoff, arXiv 2410.08194).", ""]

    h.append("<h2>Agreement of theory and simulation</h2>")
    md += ["## Agreement of theory and simulation", ""]
    if totals:
        h.append("<table><tr><th class='l'>quantity</th><th class='l'>theory form</th><th>points</th><th>largest |z|</th><th>mean |z|</th></tr>")
        md += ["| quantity | theory form | points | largest abs z | mean abs z |", "|---|---|---:|---:|---:|"]
        for variable, form, count, zmax, zmean in totals:
            h.append(f"<tr><td class='l'>{variable}</td><td class='l'>{html.escape(form)}</td><td>{count}</td><td>{zmax:.2f}</td><td>{zmean:.2f}</td></tr>")
            md.append(f"| {variable} | {form} | {count} | {zmax:.2f} | {zmean:.2f} |")
        h.append("</table>")
        md.append("")
    else:
        h.append("<p>No simulation results.</p>")
        md += ["No simulation results.", ""]

    from featfate_sym import protocols

    h.append("<h2>Protocols</h2><table><tr><th class='l'>protocol</th><th class='l'>trained layers</th>"
             "<th class='l'>predicting results</th><th class='l'>regime</th></tr>")
    md += ["## Protocols", "", "| protocol | trained layers | predicting results | regime |", "|---|---|---|---|"]
    for name, layers, keys_text, regime in protocols.table():
        h.append(f"<tr><td class='l'><code>{html.escape(name)}</code></td><td class='l'>{html.escape(layers)}</td>"
                 f"<td class='l'>{html.escape(keys_text)}</td><td class='l'>{html.escape(regime)}</td></tr>")
        md.append(f"| `{name}` | {layers} | {keys_text} | {regime} |")
    h.append("</table>")
    md.append("")

    h.append("<h2>Figures</h2>")
    md += ["## Figures", ""]
    for name, png, caption in figures:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        h.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                 f"<figcaption><b>{html.escape(name)}</b>: {html.escape(caption)}</figcaption></figure>")
        md += [f"![{name}](figures/{png.name})", "", f"**{name}**: {caption}", ""]

    h.append("<h2>Derived results</h2>")
    md += ["## Derived results", ""]
    for family, title in FAMILIES.items():
        members = [r for r in ff.results() if r.family == family and (keys is None or r.key in keys)]
        if not members:
            continue
        h.append(f"<h3>{html.escape(title)}</h3>")
        md += [f"### {title}", ""]
        for r in members:
            h.append(f"<div class='result'><p><b><code>{r.key}</code></b> — {html.escape(r.title)} "
                     f"<span class='meta'>[{r.status.value}; {html.escape(r.regime)}]</span></p>{mathml(r.expr)}")
            md += [f"**`{r.key}`** — {r.title} [{r.status.value}; {r.regime}]", "", "$$", r.latex(), "$$", ""]
            for root in r.derivation.implicit:
                import sympy as sp

                h.append(f"<p class='meta'>where {html.escape(root.description or root.symbol.name)} solves</p>"
                         f"{mathml(sp.Eq(root.equation, 0))}")
                md += [f"where {root.description or root.symbol.name} solves", "", "$$", latex(sp.Eq(root.equation, 0)), "$$", ""]
            h.append("</div>")

    if dataset is not None:
        h.append("<h2>Experiment</h2><table>")
        md += ["## Experiment", "", "| parameter | values |", "|---|---|"]
        for name, values in experiment_table(dataset):
            h.append(f"<tr><td class='l'>{html.escape(name)}</td><td class='l'>{html.escape(values)}</td></tr>")
            md.append(f"| {name} | {values} |")
        h.append("</table>")
        md.append("")
        h.append("<h2>Agreement table</h2><p class='meta'>" + html.escape(_TABLE_NOTE) + "</p>")
        h.append("<table><tr><th class='l'>grid point</th><th class='l'>quantity</th><th class='l'>theory form</th>"
                 "<th>theory</th><th>simulation mean</th><th>SE</th><th>z</th></tr>")
        md += ["## Agreement table", "", _TABLE_NOTE, "", "| grid point | quantity | theory form | theory | simulation mean | SE | z |",
               "|---|---|---|---:|---:|---:|---:|"]
        for row, crit in zip(rows, critical_values(rows)):
            z = row.z
            flag = " class='bad'" if math.isfinite(z) and abs(z) > crit else ""
            h.append(f"<tr><td class='l'>{_param_text(row.params)}</td><td class='l'>{row.quantity}</td>"
                     f"<td class='l'>{html.escape(row.form)}</td><td>{_fmt(row.theory)}</td><td>{_fmt(row.mean)}</td>"
                     f"<td>{_fmt(row.stderr, 2)}</td><td{flag}>{_fmt(z, 3)}</td></tr>")
            md.append(f"| {_param_text(row.params)} | {row.quantity} | {row.form} | {_fmt(row.theory)} | "
                      f"{_fmt(row.mean)} | {_fmt(row.stderr, 2)} | {_fmt(z, 3)} |")
        h.append("</table>")
        md.append("")
    if explorer:
        from featfate_sym.plotting.explorer import html_section

        h.append(html_section(dataset))
    h.append("</body></html>")
    (out / "report.html").write_text("\n".join(h), encoding="utf-8")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"points": len(rows), "summary": totals, "figures": len(figures)}


def default_sweep(out: Path, progress: bool = True):
    """Run :data:`DEFAULT_SWEEP` into ``out`` (resumable) and return its dataset."""
    from featfate_sym.sweeps import run_sweep
    from featfate_sym.sweeps.grid import Grid

    grid = Grid.build(DEFAULT_SWEEP["axes"], fixed=DEFAULT_SWEEP["fixed"],
                      replicates=DEFAULT_SWEEP["replicates"], seed=DEFAULT_SWEEP["seed"])
    return run_sweep(grid, out, workers=1, progress=progress).dataset


class _UsageError(Exception):
    pass


class _Parser(cli.Parser):
    def error(self, message):
        raise _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    from featfate_sym.sweeps.storage import SweepLockedError  # OUT/sweep held by another run

    parser = _Parser(prog="python -m featfate_sym.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--results", help="sweep results: a results.nc (netCDF3) or its sweep folder; "
                        "default: run a small sweep into OUT/sweep")
    parser.add_argument("--quick", action="store_true", help="coarse figures")
    try:
        args = parser.parse_args(argv)
        # every path checked before the sweep and the figures, which take minutes
        try:
            cli.output_and_results(args)
        except ValueError as err:
            raise _UsageError(str(err)) from None
        import logging

        import matplotlib

        matplotlib.use("Agg")
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        from featfate_sym.plotting import experiment

        started = time.perf_counter()
        if args.results is None:
            print(f"no results given: running the default sweep into {args.out / 'sweep'}", file=sys.stderr)
            dataset = default_sweep(args.out / "sweep")
        else:
            dataset = experiment.load(args.results)
        command = "python -m featfate_sym.report " + " ".join(sys.argv[1:] if argv is None else argv)
        info = build(args.out, dataset, quick=args.quick, log=lambda m: print(m, file=sys.stderr), command=command)
    except (_UsageError, ValueError, SweepLockedError) as err:
        sys.stderr.write(f"{parser.prog}: error: {' '.join(str(err).split())}\n")
        return 2
    print(f"wrote {args.out / 'report.html'} and {args.out / 'report.md'} in {time.perf_counter() - started:.1f} s: "
          f"{info['figures']} figures, {info['points']} agreement rows")
    for variable, form, count, zmax, zmean in info["summary"]:
        print(f"  {variable:8s} {form:20s} points {count:3d}  largest |z| {zmax:6.2f}  mean |z| {zmean:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
