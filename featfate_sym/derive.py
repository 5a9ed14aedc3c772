"""``python -m featfate_sym.derive``: print, evaluate and document the derived results.

Examples::

    python -m featfate_sym.derive                      # every result: title, status, regime, LaTeX
    python -m featfate_sym.derive --list
    python -m featfate_sym.derive lt.transferability --steps --format markdown
    python -m featfate_sym.derive lt.transferability --eval gamma=0.5 theta=pi/4 sigma=0.2 lam=0
    python -m featfate_sym.derive ft.transferability_exact --eval gamma=0.5 theta=pi/3 sigma=1 L=3 --dps 50
    python -m featfate_sym.derive --write-docs derivations
    python -m featfate_sym.derive --fresh              # derive afresh, not from the cache

Errors (unknown key, missing or out-of-domain parameter) print one line and exit with
status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mpmath
import sympy as sp

from featfate_sym import cli, derivation_cache, registry, render
from featfate_sym.compiled import EvaluationError

FORMATS = ("text", "latex", "markdown", "json")


class UsageError(Exception):
    """A user error: reported on one line, exit status 2."""


class _Parser(cli.Parser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m featfate_sym.derive",
        description="Print, evaluate and document the derived results of featfate_sym.",
    )
    p.add_argument("keys", nargs="*", metavar="KEY", help="result keys (default: all)")
    p.add_argument("--list", action="store_true", help="list the keys with title and status")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--steps", action="store_true", help="include the derivation steps")
    p.add_argument(
        "--eval",
        nargs="+",
        metavar="NAME=VALUE",
        help="evaluate one result at these parameters (values: numbers such as 0.5, 1e-3, pi/4, 2^-3, "
        "sqrt(2)/2; constants pi, e, inf; + - * / ^ and parentheses)",
    )
    p.add_argument(
        "--dps", type=int, default=None, help="evaluate with mpmath at this many decimal digits"
    )
    p.add_argument(
        "--write-docs",
        metavar="DIR",
        help="write one Markdown document per family into DIR (the committed derivations/)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="derive every result afresh instead of reading the on-disk cache (and refresh it)",
    )
    return p


def _announce(key: str) -> None:
    # deriving takes seconds per result (reading the cache, milliseconds): say so
    print(f"deriving {key} ...", file=sys.stderr, flush=True)


def _select(keys: list[str]) -> list[registry.Result]:
    known = registry.keys()
    for key in keys:
        if key not in known:
            raise UsageError(f"unknown result key {key!r}; run with --list to see the keys")
    return [registry.get(k) for k in keys] if keys else registry.results()


def _parse_values(pairs: list[str], dps: int | None) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name or not text:
            raise UsageError(f"--eval expects NAME=VALUE, got {pair!r}")
        if name in values:
            raise UsageError(f"parameter {name}: given twice in --eval; give each parameter once")
        # a whitelist grammar, never sympify: the text is the user's, not code
        try:
            value = cli.parse_number(text, f"parameter {name}")
        except ValueError as err:
            raise UsageError(str(err)) from None
        # exact values keep every digit for mpmath; float64 gets the nearest double
        if dps:
            # mpmath reads "inf", not SymPy's "oo"
            values[name] = str(sp.N(value, dps + 10)).replace("oo", "inf")
        else:
            values[name] = float(value)
    return values


def _evaluate(result: registry.Result, pairs: list[str], dps: int | None) -> str:
    if dps is not None and not 1 <= dps <= 10_000:
        raise UsageError(f"--dps must be an integer in [1, 10000] (got {dps})")
    values = _parse_values(pairs, dps)
    try:
        if dps:
            with mpmath.workdps(dps):
                value = result.evaluate_mp(dps, **values)
                return _format_value(result, value, lambda v: mpmath.nstr(v, dps))
        value = result.evaluate(**values)
        return _format_value(result, value, lambda v: repr(float(v)))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _format_value(result: registry.Result, value, fmt) -> str:
    if result.outputs:
        return "\n".join(f"{name} = {fmt(v)}" for name, v in zip(result.outputs, value))
    return fmt(value)


def write_docs(directory: Path) -> list[Path]:
    """Write ``derivations/<family>.md`` for every family; atomic per file."""
    from featfate_sym.sweeps.storage import atomic_write  # netCDF stack: only when writing

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for family in registry.FAMILIES:
        if not any(r.family == family for r in registry.results()):
            continue
        path = directory / f"{family}.md"
        atomic_write(path, render.family_document(family).encode())
        written.append(path)
    from featfate_sym import corrections  # derivations/corrections.md, from its own source
    written.append(corrections.write_document(directory))
    return written


def run(argv: list[str] | None = None) -> str:
    """Run the command and return what it prints (raises UsageError on bad input)."""
    args = _parser().parse_args(argv)
    if args.fresh:
        registry.derive_fresh()
    derivation_cache.announce = _announce
    if args.write_docs is not None:
        try:
            directory = cli.output_dir(args.write_docs, "--write-docs")
        except ValueError as err:
            raise UsageError(str(err)) from None
        derivation_cache.fill(registry.keys())  # every family's results, in parallel
        paths = write_docs(directory)
        return "\n".join(str(p) for p in paths)
    if args.list:
        chosen = _select(args.keys)
        width = max((len(r.key) for r in chosen), default=0)
        return "\n".join(f"{r.key:<{width}}  {r.status.short:<22}  {r.title}" for r in chosen)
    if args.eval is not None:
        if len(args.keys) != 1:
            raise UsageError("--eval needs exactly one KEY")
        return _evaluate(_select(args.keys)[0], args.eval, args.dps)
    if args.dps is not None:
        raise UsageError("--dps is used together with --eval")
    chosen = _select(args.keys)
    # uncached results: derived in parallel worker processes into the cache, read back here
    derivation_cache.fill([r.key for r in chosen])
    if args.format == "json":
        return json.dumps([render.as_record(r, args.steps) for r in chosen], indent=2)
    show = {"text": render.as_text, "latex": render.as_latex, "markdown": render.as_markdown}[args.format]
    sep = "\n\n" if args.format != "markdown" else "\n"
    return sep.join(show(r, args.steps) for r in chosen)


def main(argv: list[str] | None = None) -> int:
    try:
        out = run(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EvaluationError as exc:  # no trustworthy value: said, never printed as one
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
