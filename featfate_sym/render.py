"""Render registered results as text, LaTeX, Markdown or JSON records.

Pure functions from a :class:`~featfate_sym.registry.Result` to strings or plain data;
the derive command and the documents in ``derivations/`` are thin clients of these.
"""

from __future__ import annotations

import sympy as sp

from featfate_sym.registry import FAMILIES, Result, results
from featfate_sym.symbols import latex


def _params_lines(result: Result) -> list[str]:
    return [f"{p.name} in {p.domain_text()}: {p.description}" for p in result.params]


def _implicit_lines(result: Result) -> list[tuple[str, str]]:
    """(LaTeX of the defining equation, description) of each implicit root."""
    return result.printed()["implicit"]


def as_text(result: Result, steps: bool = False) -> str:
    lines = [
        f"{result.key} — {result.title}",
        f"  status:    {result.status.value}",
        f"  regime:    {result.regime}",
        f"  reference: {result.reference}",
    ]
    if result.params:
        lines.append("  parameters:")
        lines += [f"    {line}" for line in _params_lines(result)]
    texts = result.printed()  # from the cache record: printing parses no expression
    if texts["outputs"]:
        lines.append(f"  outputs:   {', '.join(texts['outputs'])}")
    lines.append(f"  result:    {texts['latex']}")
    for eq, what in texts["implicit"]:
        lines.append(f"  where:     {eq}   ({what})")
    if result.singular:
        lines.append(f"  singular:  {result.singular}")
    if result.notes:
        lines.append(f"  notes:     {result.notes}")
    if steps:
        lines.append("  derivation:")
        for i, step in enumerate(result.steps, 1):
            lines.append(f"    {i}. {step.text}")
            if step.expr is not None:
                lines.append(f"       {step.latex()}")
    return "\n".join(lines)


def as_latex(result: Result, steps: bool = False) -> str:
    lines = [
        f"% {result.key}: {result.title} [{result.status.value}]",
        f"% regime: {result.regime}",
        r"\begin{equation}",
        result.latex(),
        r"\end{equation}",
    ]
    for eq, what in _implicit_lines(result):
        lines.append(f"% where {what}:")
        lines += [r"\begin{equation}", eq, r"\end{equation}"]
    if steps:
        for i, step in enumerate(result.steps, 1):
            lines.append(f"% step {i}: {step.text}")
            if step.expr is not None:
                lines += [r"\begin{equation*}", step.latex(), r"\end{equation*}"]
    return "\n".join(lines)


def as_markdown(result: Result, steps: bool = False, level: int = 2) -> str:
    head = "#" * level
    lines = [
        f"{head} `{result.key}` — {result.title}",
        "",
        f"- **Status:** {result.status.value}",
        f"- **Regime:** {result.regime}",
        f"- **Reference:** {result.reference}",
    ]
    if result.params:
        lines.append("- **Parameters:** " + "; ".join(f"`{line}`" for line in _params_lines(result)))
    if result.outputs:
        lines.append("- **Outputs:** " + ", ".join(f"`{o}`" for o in result.outputs))
    if result.singular:
        lines.append(f"- **Singular points:** {result.singular}")
    if result.notes:
        lines.append(f"- **Notes:** {result.notes}")
    lines += ["", "$$", result.latex(), "$$"]
    for eq, what in _implicit_lines(result):
        lines += ["", f"where ${what}$ solves", "", "$$", eq, "$$"]
    if steps and result.steps:
        lines += ["", f"{head}# Derivation", ""]
        for i, step in enumerate(result.steps, 1):
            lines.append(f"{i}. {step.text}")
            if step.expr is not None:
                lines += ["", "   $$", "   " + step.latex(), "   $$", ""]
    if result.special_cases:
        lines += ["", "Special cases checked by the test suite:", ""]
        lines += [f"- {case.description}" for case in result.special_cases]
    return "\n".join(lines).rstrip() + "\n"


def as_record(result: Result, steps: bool = False) -> dict:
    """A JSON-serialisable record: key, title, status, parameters, LaTeX and exact SymPy."""
    record = {
        "key": result.key,
        "title": result.title,
        "family": result.family,
        "status": result.status.value,
        "regime": result.regime,
        "reference": result.reference,
        "parameters": [
            {"name": p.name, "domain": p.domain_text(), "description": p.description}
            for p in result.params
        ],
        "latex": result.latex(),
        "sympy": result.sympy_string(),
        "outputs": list(result.outputs),
        "implicit": [
            {"symbol": r.symbol.name, "equation": sp.srepr(r.equation), "latex": f"{latex(r.equation)} = 0"}
            for r in result.derivation.implicit
        ],
        "singular": result.singular,
        "notes": result.notes,
    }
    if steps:
        record["steps"] = [
            {"text": s.text, "latex": s.latex() if s.expr is not None else None} for s in result.steps
        ]
    return record


def family_document(family: str) -> str:
    """The Markdown document of one family, as committed under ``derivations/``."""
    members = [r for r in results() if r.family == family]
    lines = [
        f"# {FAMILIES[family]}",
        "",
        "Generated by `python -m featfate_sym.derive --write-docs derivations` from the registry;",
        "do not edit by hand. Every expression below was produced by SymPy from the model.",
        "",
    ]
    body = "\n".join(as_markdown(r, steps=True) for r in members)
    return "\n".join(lines) + body


def as_html(result: Result) -> str:
    """A notebook cell's view: key, title, status and regime, and the formula as display
    LaTeX (typeset by the notebook's MathJax)."""
    import html

    rows = "".join(
        f"<tr><td><code>{html.escape(p.name)}</code></td><td>{html.escape(p.domain_text())}</td>"
        f"<td>{html.escape(p.description)}</td></tr>" for p in result.params)
    return (
        f"<div><p><b><code>{html.escape(result.key)}</code></b> — {html.escape(result.title)}<br>"
        f"<i>{html.escape(result.status.value)}</i>; {html.escape(result.regime)}</p>"
        f"<p>$$ {html.escape(result.latex())} $$</p>"
        f"<table>{rows}</table></div>"
    )
