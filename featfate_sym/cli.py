"""Argument parsing shared by the package's commands and the study scripts in ``numerics/``.

Bad arguments end the script with one line on stderr naming the parameter and its
allowed range, exit status 2, no usage block and no traceback (the package's own
commands report the same way through their ``main``).

Numbers written by users (``--eval gamma=pi/4``, ``--theta 3pi/8``) are read by
:func:`parse_number`, a small recursive-descent parser over a whitelist grammar; no user
text ever reaches ``eval``, ``sympify`` or ``parse_expr``.  Output paths are checked by
:func:`output_dir` and :func:`output_file` before any work starts, and a sweep's results
by :func:`results_file`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from pathlib import Path

__all__ = [
    "MAX_NUMBER_LENGTH",
    "Parser",
    "check_repeats",
    "number",
    "output_and_results",
    "output_dir",
    "output_file",
    "parse_float",
    "parse_number",
    "output_dir_type",
    "output_file_type",
    "results_file",
]


def check_repeats(parser: argparse.ArgumentParser, argv) -> str | None:
    """The message for an option given twice in ``argv`` (``--gamma 1 --gamma 2``,
    also through an alias or an abbreviation), else ``None``.

    argparse keeps the last value silently; a repeated option is almost always a typo
    that would otherwise run with a value the user did not mean."""
    seen: dict[int, str] = {}
    for token in argv:
        if token == "--":
            break
        if not token.startswith("-") or token == "-" or re.match(r"^-\.?[0-9]", token):
            continue
        name = token.split("=", 1)[0]
        action = parser._option_string_actions.get(name)
        if action is None and name.startswith("--") and parser.allow_abbrev:
            matches = {id(a): a for s, a in parser._option_string_actions.items() if s.startswith(name)}
            action = next(iter(matches.values())) if len(matches) == 1 else None
        # flags without a value (store_true, help) and append options may repeat harmlessly
        if action is None or action.nargs == 0 or isinstance(action, argparse._AppendAction):
            continue
        if id(action) in seen:
            first = seen[id(action)]
            also = f" (first as {first})" if first != name else ""
            return f"argument {name}: given twice{also}; give each option once"
        seen[id(action)] = name
    return None


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are one line, ``PROG: message``, exit status 2,
    and which refuses an option given twice."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        repeated = check_repeats(self, argv)
        if repeated:
            self.error(repeated)
        return super().parse_known_args(argv, namespace)


def number(name: str, *, lower=None, upper=None, lower_open=False, upper_open=False, integer=False):
    """An ``argparse`` type: a finite number (an integer if ``integer``) in the stated
    range, named with its range in the error."""
    bound = []
    if lower is not None:
        bound.append(f"{'>' if lower_open else '>='} {lower:g}")
    if upper is not None:
        bound.append(f"{'<' if upper_open else '<='} {upper:g}")
    allowed = f"{name} must be {'an integer' if integer else 'a number'}" + (
        f" {' and '.join(bound)}" if bound else "")

    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{allowed} (got {text!r})") from None
        bad = not math.isfinite(value)
        bad = bad or (lower is not None and (value <= lower if lower_open else value < lower))
        bad = bad or (upper is not None and (value >= upper if upper_open else value > upper))
        if bad:
            raise argparse.ArgumentTypeError(f"{allowed} (got {text})")
        return value

    return parse


# ----------------------------------------------------------------------------- numbers

#: longest number text accepted (longer input is refused before it is read)
MAX_NUMBER_LENGTH = 200
#: deepest nesting of parentheses, powers and signs
_MAX_DEPTH = 40
#: largest decimal exponent of a literal (``1e-300`` is fine, ``1e999999999`` is not);
#: below Python's 4300-digit limit on converting integers to text
_MAX_LITERAL_EXPONENT = 4000
#: largest size, in decimal digits, of an exact power (``10^10^10`` is refused)
_MAX_POWER_DIGITS = 4000

_NUMBER_FORMS = "a number such as 0.5, 1e-3, pi/4, 2^-3 or sqrt(2)/2"
_TOKEN = re.compile(
    r"(?:(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z]+)|(?P<op>\*\*|[-+*/^()]))"
)
_CONSTANTS = ("pi", "e", "inf", "oo")
_FUNCTIONS = ("sqrt",)


class _Reject(Exception):
    """Why a number text was refused (turned into the one-line ``ValueError``)."""


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return tokens
        match = _TOKEN.match(text, position)
        if match is None:
            raise _Reject(f"unexpected character {text[position]!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "name":
            value = value.lower()
            if value not in _CONSTANTS and value not in _FUNCTIONS:
                raise _Reject(f"unknown name {match.group(kind)!r} (known: pi, e, inf, sqrt)")
        tokens.append((kind, value))
        position = match.end()


class _Reader:
    """Recursive descent over the grammar

    ``sum := product (('+'|'-') product)*``;
    ``product := signed (('*'|'/') signed | implicit)*`` where a number literal may be
    followed directly by ``pi``, ``inf``, ``sqrt`` or ``(`` (``3pi/8``);
    ``signed := ('+'|'-') signed | power``;
    ``power := atom (('^'|'**') signed)?`` (right-associative, ``2^-3``);
    ``atom := NUMBER | pi | e | inf | oo | sqrt '(' sum ')' | '(' sum ')'``.
    """

    def __init__(self, tokens, sp):
        self.tokens, self.at, self.depth, self.sp = tokens, 0, 0, sp

    def peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else (None, None)

    def take(self, value=None):
        kind, text = self.peek()
        if kind is None:
            raise _Reject("it ends too early")
        if value is not None and text != value:
            raise _Reject(f"expected {value!r}, found {text!r}")
        self.at += 1
        return kind, text

    def nest(self):
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Reject(f"it nests deeper than {_MAX_DEPTH} levels")

    def sum(self):
        value = self.product()
        while self.peek()[1] in ("+", "-"):
            _, op = self.take()
            right = self.product()
            value = value + right if op == "+" else value - right
        return value

    def product(self):
        value = self.signed()
        while True:
            kind, text = self.peek()
            if text in ("*", "/"):
                self.take()
                right = self.signed()
                if text == "/" and right == 0:
                    raise _Reject("it divides by zero")
                value = value * right if text == "*" else value / right
            elif kind == "name" or text == "(":
                # implicit product only right after a literal: 3pi/8, 2sqrt(2), 2(1+1);
                # never before e, where 2e reads like a truncated exponent
                if self.tokens[self.at - 1][0] != "number" or text == "e":
                    raise _Reject(f"expected an operator before {text!r}")
                value = value * self.power()
            else:
                return value

    def signed(self):
        kind, text = self.peek()
        if text in ("+", "-"):
            self.take()
            self.nest()
            value = self.signed()
            self.depth -= 1
            return -value if text == "-" else value
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek()[1] in ("^", "**"):
            self.take()
            self.nest()
            exponent = self.signed()
            self.depth -= 1
            return self.raise_to(base, exponent)
        return base

    def raise_to(self, base, exponent):
        sp = self.sp
        if base == 0 and exponent.is_negative:
            raise _Reject("it divides by zero")
        if base.is_finite and exponent.is_finite:
            # bounded before SymPy expands it: 10^10^10 would take all memory
            magnitude = abs(float(sp.N(base, 15)))
            power = abs(float(sp.N(exponent, 15)))
            if magnitude not in (0.0, 1.0) and not power * abs(math.log10(magnitude)) <= _MAX_POWER_DIGITS:
                raise _Reject(f"the power has more than {_MAX_POWER_DIGITS} digits")
        return sp.Pow(base, exponent)

    def atom(self):
        sp = self.sp
        kind, text = self.take()
        if kind == "number":
            mantissa, _, exponent = text.lower().partition("e")
            if exponent and abs(int(exponent)) > _MAX_LITERAL_EXPONENT:
                raise _Reject(f"its exponent is beyond +-{_MAX_LITERAL_EXPONENT}")
            # exact: 0.1 is 1/10, so that --dps 100 keeps every digit written
            return sp.Rational(mantissa) * sp.Integer(10) ** int(exponent or 0)
        if kind == "name":
            if text in _FUNCTIONS:
                self.take("(")
                self.nest()
                inner = self.sum()
                self.depth -= 1
                self.take(")")
                return sp.sqrt(inner)
            return {"pi": sp.pi, "e": sp.E, "inf": sp.oo, "oo": sp.oo}[text]
        if text == "(":
            self.nest()
            inner = self.sum()
            self.depth -= 1
            self.take(")")
            return inner
        raise _Reject(f"unexpected {text!r}")


def parse_number(text: str, name: str = "value"):
    """The exact SymPy number that ``text`` writes, e.g. ``Rational(1, 10)`` for ``0.1``,
    ``pi/4`` for ``pi/4``, ``oo`` for ``inf``.

    Accepted: decimal literals (``2``, ``0.25``, ``.5``, ``1e-300``, ``2.5E3``), the
    constants ``pi``, ``e``, ``inf`` and ``oo``, binary ``+ - * / ^ **``, unary ``+``
    and ``-``, parentheses, ``sqrt(...)``, and a literal directly followed by a constant,
    ``sqrt`` or ``(`` (``3pi/8``; not ``e``: write ``2*e``).  At most :data:`MAX_NUMBER_LENGTH` characters.

    Raises ``ValueError`` (one line naming ``name``) for anything else, including names,
    attribute access, calls other than ``sqrt``, commas, brackets and quotes, and for a
    result that is not a real number (``inf - inf``, ``sqrt(-1)``, a division by zero).
    """
    import sympy as sp

    def refuse(reason):
        return ValueError(f"{name} must be {_NUMBER_FORMS} (got {text!r}: {reason})")

    if not isinstance(text, str):
        raise ValueError(f"{name} must be {_NUMBER_FORMS} given as text (got {type(text).__name__})")
    shown = text if len(text) <= 40 else text[:37] + "..."
    if len(text) > MAX_NUMBER_LENGTH:
        raise ValueError(f"{name} must be {_NUMBER_FORMS} of at most {MAX_NUMBER_LENGTH} characters "
                         f"(got {len(text)} characters: {shown!r})")
    try:
        tokens = _tokens(text)
        if not tokens:
            raise _Reject("it is empty")
        reader = _Reader(tokens, sp)
        value = reader.sum()
        if reader.at != len(tokens):
            raise _Reject(f"unexpected {tokens[reader.at][1]!r}")
    except _Reject as why:
        raise refuse(why) from None
    if value.has(sp.nan, sp.zoo) or value.is_real is not True and value not in (sp.oo, -sp.oo):
        raise refuse("it is not a real number")
    return value


def parse_float(text: str, name: str = "value") -> float:
    """:func:`parse_number` rounded to the nearest float64 (``inf`` for ``inf`` and for
    values beyond the float64 range)."""
    import sympy as sp

    value = parse_number(text, name)
    if value == sp.oo or value == -sp.oo:
        return float(value)

    try:
        return float(sp.N(value, 30))
    except OverflowError:  # beyond 1.8e308
        return math.inf if value.is_positive else -math.inf


# ------------------------------------------------------------------------------ paths


def _probe(directory: Path) -> str | None:
    """Why no file can be created in the existing ``directory``, else ``None``.

    A real probe file rather than ``os.access``: access() says yes to root even where
    the file system refuses (read-only mounts, /proc, /sys)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
    except OSError as err:
        return f"{directory} is not writable ({err.strerror or type(err).__name__})"
    os.close(handle)
    os.unlink(name)
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def output_dir(text, flag: str) -> Path:
    """The directory ``text`` (``flag``'s value), checked before any work: not empty,
    not an existing file, and creatable or writable.  Nothing is created.  Raises
    ``ValueError`` naming ``flag``."""
    allowed = f"{flag} must be a directory that can be written"
    if text is None or str(text).strip() == "":
        raise ValueError(f"{allowed} (got an empty path)")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{allowed} (got {str(text)!r}: it is an existing file)")
    _check_writable(_nearest_existing(path), text, allowed)
    return path


def _check_writable(base: Path, text, allowed: str) -> None:
    """``base`` (the nearest existing folder of the path ``text``) is a folder we can
    write into; else ``ValueError`` saying why."""
    if not base.is_dir():
        raise ValueError(f"{allowed} (got {str(text)!r}: {base} is a file)")
    why = _probe(base)
    if why:
        raise ValueError(f"{allowed} (got {str(text)!r}: {why})")


def output_file(text, flag: str, suffixes=None) -> Path:
    """The file ``text`` (``flag``'s value), checked before any work: not empty, not a
    directory, ending in one of ``suffixes`` (if given), in a folder that exists or can
    be created and is writable.  Nothing is created.  Raises ``ValueError`` naming
    ``flag``."""
    allowed = f"{flag} must be a file that can be written" + (
        f", ending in {' or '.join(suffixes)}" if suffixes else "")
    if text is None or str(text).strip() == "":
        raise ValueError(f"{allowed} (got an empty path)")
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{allowed} (got {str(text)!r}: it is a directory)")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{allowed} (got {str(text)!r})")
    _check_writable(_nearest_existing(path.parent), text, allowed)
    return path


def results_file(text, flag: str = "--results") -> Path:
    """The sweep results file named by ``text``: a ``results.nc`` file, or a sweep
    folder (then its ``results.nc``).  Checked before any work: it exists and starts
    like a netCDF3 file.  Raises ``ValueError`` naming ``flag``."""
    allowed = f"{flag} must be a sweep folder or its results.nc (netCDF3)"
    if text is None or str(text).strip() == "":
        raise ValueError(f"{allowed} (got an empty path)")
    path = Path(text)
    if path.is_dir():
        inner = path / "results.nc"
        if not inner.is_file():
            raise ValueError(f"{allowed} (got {str(text)!r}: a folder without results.nc; is the sweep finished?)")
        path = inner
    elif not path.exists():
        raise ValueError(f"{allowed} (got {str(text)!r}: no such file or folder)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as err:
        raise ValueError(f"{allowed} (got {str(text)!r}: {err.strerror or type(err).__name__})") from None
    from featfate_sym.sweeps.storage import netcdf3_problem  # the netCDF stack: only here

    problem = netcdf3_problem(head)
    if problem:
        raise ValueError(f"{allowed} (got {str(text)!r}: {problem})")
    return path


# ------------------------------------------------------------------- argparse types


def _argparse_type(check, *args, **kwargs):
    def parse(text):
        try:
            return check(text, *args, **kwargs)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def output_dir_type(flag: str):
    """An ``argparse`` type: :func:`output_dir`."""
    return _argparse_type(output_dir, flag)


def output_file_type(flag: str, suffixes=None):
    """An ``argparse`` type: :func:`output_file`."""
    return _argparse_type(output_file, flag, suffixes)


def output_and_results(args) -> None:
    """Check ``args.out`` (a folder) and ``args.results`` (if given; a sweep folder or its
    ``results.nc``) in place, before any work; ``ValueError`` naming the flag."""
    args.out = output_dir(args.out, "--out")
    if args.results is not None:
        args.results = results_file(args.results, "--results")
