"""The registry of derived results.

Each result is a :class:`Result` with a stable dotted key.  Its SymPy expression is
*built lazily* by a pure builder function that derives it from the model (see
``featfate_sym.theory``); nothing here types a closed form in.  The entry carries
everything a user or a test needs: ordered parameters with their domains, the regime
(which limit, which training protocol), the status, the paper reference, the derivation
steps, LaTeX, special cases, and compiled NumPy and mpmath evaluators.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
from typing import Callable, Iterable, Mapping, Sequence

import mpmath
import numpy as np
import sympy as sp

from featfate_sym import symbols


class Source(str, enum.Enum):
    """On whose authority a result stands."""

    PAPER = "result of the paper"
    DERIVED = "derived here"
    CITED = "cited lemma"


class Exactness(str, enum.Enum):
    """Whether a result is exact for its stated model or an approximation of it."""

    EXACT = "exact for the stated model"
    APPROXIMATION = "approximation"


@dataclasses.dataclass(frozen=True)
class Status:
    """How much a result can be trusted: its *source* and its *exactness*.

    ``neglected`` says what an approximation leaves out (required for one); ``verified``
    says where a step that is not proved in general was checked (for example the depths
    at which a general-depth identity was verified), and is empty when the derivation is
    general.
    """

    source: Source
    exactness: Exactness
    neglected: str = ""
    verified: str = ""

    def __post_init__(self):
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "exactness", Exactness(self.exactness))
        if (self.exactness is Exactness.APPROXIMATION) != bool(self.neglected):
            raise ValueError("an approximation states what it neglects, and only an approximation does")

    @property
    def exact(self) -> bool:
        return self.exactness is Exactness.EXACT

    @property
    def short(self) -> str:
        """A few words for listings: ``paper, exact``, ``derived, approximation``..."""
        return f"{self.source.name.lower()}, {self.exactness.name.lower()}" + ("*" if self.verified else "")

    @property
    def value(self) -> str:
        """One line: source; exactness (what is neglected) [where verified]."""
        text = f"{self.source.value}; {self.exactness.value}"
        if self.neglected:
            text += f" (neglects {self.neglected})"
        if self.verified:
            text += f"; verified {self.verified}"
        return text


FAMILIES = {
    "deep_linear": "Gradient-flow structure of deep linear networks",
    "scratch": "Training from scratch",
    "linear_transfer": "Linear transfer",
    "fine_tuning": "Fine-tuning",
    "finite_source": "Finite source data",
    "distances": "Data-centric distances",
    "relu": "Two-layer ReLU networks",
    "classification": "Classification of Gaussian mixtures",
    "finite_step": "Finite step size, SGD and the time course of training",
    "anisotropic": "Anisotropic inputs: covariance spectra and deterministic equivalents",
    "multi_source": "Several source tasks: rank-k features",
    "time_course": "The time course of transfer: risk and transferability along training",
}


@dataclasses.dataclass(frozen=True)
class Param:
    """A numeric parameter of a result, with its valid domain.

    ``lower``/``upper`` are SymPy numbers (so ``pi`` prints as ``pi``); ``None`` means
    unbounded.  ``integer`` parameters must be whole numbers.
    """

    symbol: sp.Symbol
    description: str
    lower: sp.Expr | None = sp.Integer(0)
    upper: sp.Expr | None = None
    lower_open: bool = False
    upper_open: bool = False
    integer: bool = False

    @property
    def name(self) -> str:
        return _plain_name(self.symbol)

    @property
    def latex(self) -> str:
        """The parameter's LaTeX name (``lam`` prints as ``\\lambda``)."""
        return symbols.latex(self.symbol)

    def restricted(self, *, lower=None, upper=None, lower_open=None, upper_open=None) -> "Param":
        """The same parameter on a narrower domain (a result that needs ``sigma > 0``);
        raises ``ValueError`` if the new domain is not inside this one."""
        new = dataclasses.replace(
            self,
            lower=self.lower if lower is None else sp.sympify(lower, strict=True),
            upper=self.upper if upper is None else sp.sympify(upper, strict=True),
            lower_open=self.lower_open if lower_open is None else lower_open,
            upper_open=self.upper_open if upper_open is None else upper_open,
        )
        if not new.within(self):
            raise ValueError(f"{new.name} in {new.domain_text()} is not inside its declared domain {self.domain_text()}")
        return new

    def within(self, other: "Param") -> bool:
        """Whether this parameter is ``other`` on the same or a narrower domain."""
        if self.symbol != other.symbol or self.integer != other.integer:
            return False
        if other.lower is not None:
            if self.lower is None or bool(self.lower < other.lower) or (
                    self.lower == other.lower and other.lower_open and not self.lower_open):
                return False
        if other.upper is not None:
            if self.upper is None or bool(self.upper > other.upper) or (
                    self.upper == other.upper and other.upper_open and not self.upper_open):
                return False
        return True

    def domain_text(self) -> str:
        lo = "-inf" if self.lower is None else _num_text(self.lower)
        hi = "inf" if self.upper is None else _num_text(self.upper)
        left = "(" if (self.lower is None or self.lower_open) else "["
        right = ")" if (self.upper is None or self.upper_open) else "]"
        kind = "integer in " if self.integer else ""
        return f"{kind}{left}{lo}, {hi}{right}"

    @functools.cached_property
    def _bounds(self) -> tuple[float | None, float | None]:
        # float(pi) is a SymPy evaluation: once, not on every check
        return (None if self.lower is None else float(self.lower),
                None if self.upper is None else float(self.upper))

    def _inside(self, low, high) -> bool:
        """Whether the range [low, high] (finite) lies in the domain."""
        if not (np.isfinite(low) and np.isfinite(high)):
            return False
        lo, hi = self._bounds
        if lo is not None and ((low <= lo) if self.lower_open else (low < lo)):
            return False
        if hi is not None and ((high >= hi) if self.upper_open else (high > hi)):
            return False
        return True

    def check(self, value) -> None:
        """Raise ``ValueError`` naming this parameter unless every value lies in its domain."""
        arr = np.asarray(value, dtype=float)
        if arr.size and self._inside(arr.min(), arr.max()) and (not self.integer or np.all(arr == np.round(arr))):
            return  # the usual case, in two passes; the slow path below finds the culprit
        bad = ~np.isfinite(arr)
        if self.lower is not None:
            lo = float(self.lower)
            bad |= (arr <= lo) if self.lower_open else (arr < lo)
        if self.upper is not None:
            hi = float(self.upper)
            bad |= (arr >= hi) if self.upper_open else (arr > hi)
        if self.integer:
            bad |= arr != np.round(arr)
        if np.any(bad):
            first = arr[bad].flat[0]
            raise ValueError(
                f"parameter {self.name} must be {self.domain_text()} (got {first:g})"
            )


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a derivation: a sentence and, usually, the expression it produced."""

    text: str
    expr: sp.Basic | None = None

    def latex(self) -> str:
        return "" if self.expr is None else symbols.latex(self.expr)


@dataclasses.dataclass(frozen=True)
class ImplicitRoot:
    """A quantity defined as the root of ``equation = 0`` inside ``bracket``.

    Used where the derivation ends in an equation SymPy cannot solve in closed form
    (for instance a polynomial whose degree is a parameter).  The numerical evaluators
    solve it by safeguarded Newton iteration inside the bracket; ``equation`` and the
    bracket ends are SymPy expressions in the result's parameters.
    """

    symbol: sp.Symbol
    equation: sp.Expr
    bracket: tuple[sp.Expr, sp.Expr]
    description: str = ""
    #: where the root is defined and used (a SymPy condition in the parameters); elsewhere
    #: the evaluators do not solve for it and it is NaN, so a branch that used it there
    #: would be refused rather than silently evaluated
    where: sp.Basic = sp.true


@dataclasses.dataclass(frozen=True)
class SpecialCase:
    """A special case or limit the result must reproduce.

    ``subs`` are substituted first, then ``limit`` ``(symbol, point, direction)`` is
    taken if given; the outcome must equal ``expected`` (a SymPy expression, or the key
    of another result whose expression is used after the same substitutions).
    """

    description: str
    expected: sp.Expr | str
    subs: Mapping[sp.Symbol, sp.Expr] = dataclasses.field(default_factory=dict)
    limit: tuple[sp.Symbol, sp.Expr, str] | None = None


@dataclasses.dataclass(frozen=True)
class Derivation:
    """What a builder returns: the final expression, its steps, and named by-products."""

    expr: sp.Basic
    steps: Sequence[Step] = ()
    extras: Mapping[str, sp.Basic] = dataclasses.field(default_factory=dict)
    implicit: Sequence[ImplicitRoot] = ()
    #: names of the components when ``expr`` is vector-valued (a ``Tuple``)
    outputs: Sequence[str] = ()
    #: an algebraically equal form for the numerical evaluators, with its own implicit
    #: roots, where ``expr`` (the legible form) loses digits or range (for instance a root
    #: in ``c`` whose equation holds ``c^(2L)``); derived by SymPy and checked equal to
    #: ``expr`` by the tests
    numeric: "NumericForm | None" = None


@dataclasses.dataclass(frozen=True)
class NumericForm:
    """What the compilers evaluate in place of ``Derivation.expr`` and its roots."""

    expr: sp.Basic
    implicit: Sequence[ImplicitRoot] = ()
    description: str = ""


@dataclasses.dataclass(eq=False)
class Result:
    """A registered result.  Construct through :func:`register`."""

    key: str
    title: str
    family: str
    params: tuple[Param, ...]
    regime: str
    status: Status
    reference: str
    builder: Callable[[], Derivation]
    notes: str = ""
    special_cases: tuple[SpecialCase, ...] = ()
    singular: str = ""
    evaluable: bool = True
    #: parameters the value does not depend on, kept so that a result takes the same
    #: parameters as the protocol it describes (the first-layer T_ft for every sigma)
    inert: tuple[str, ...] = ()

    # -- the derivation, built once on first use -------------------------------------
    @functools.cached_property
    def derivation(self) -> Derivation:
        """The derivation, read from the on-disk cache (:mod:`featfate_sym.derivation_cache`)
        or built by the builder (and then stored); :func:`derive_fresh` skips the cache."""
        from featfate_sym import derivation_cache

        out = derivation_cache.derive(self.key, self.builder, fresh=_FRESH)
        if not isinstance(out, Derivation):
            raise TypeError(f"builder of {self.key} must return a Derivation")
        return out

    @property
    def expr(self) -> sp.Basic:
        """The derived SymPy expression."""
        return self.derivation.expr

    @property
    def steps(self) -> Sequence[Step]:
        return self.derivation.steps

    @property
    def extras(self) -> Mapping[str, sp.Basic]:
        return self.derivation.extras

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        return tuple(p.symbol for p in self.params)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def latex(self) -> str:
        return symbols.latex(self.expr)

    def printed(self) -> dict:
        """What printing the result shows of its derivation (``latex``, ``implicit``:
        ``(equation, symbol: description)`` pairs, ``outputs``): read from the cache record
        when the derivation is not in memory (no expression parsed), else computed
        (:func:`featfate_sym.derivation_cache.printed_texts`); the same texts either way."""
        from featfate_sym import derivation_cache

        if "derivation" not in self.__dict__ and not _FRESH:
            texts = derivation_cache.printed(self.key)
            if texts is not None:
                return texts
        texts = derivation_cache.printed_texts(self.derivation)
        texts["implicit"] = [tuple(pair) for pair in texts["implicit"]]
        return texts

    def sympy_string(self) -> str:
        """An exact, re-parseable SymPy string of the expression (``sympy.srepr``)."""
        return sp.srepr(self.expr)

    def _repr_latex_(self) -> str:
        """Notebooks show the formula."""
        return f"$\\displaystyle {self.latex()}$"

    def _repr_html_(self) -> str:
        from featfate_sym.render import as_html

        return as_html(self)

    def __repr__(self) -> str:
        return f"<Result {self.key}: {self.expr if 'derivation' in self.__dict__ else '(not built)'}>"

    # -- evaluation ------------------------------------------------------------------
    def validate(self, values: Mapping[str, object]) -> dict[str, object]:
        """Check names and domains; return the values in parameter order.

        Raises ``ValueError`` naming the parameter and its allowed range.
        """
        if not self.evaluable:
            raise ValueError(f"result {self.key} is an identity, not a function to evaluate")
        unknown = set(values) - set(self.param_names)
        if unknown:
            name = sorted(unknown)[0]
            raise ValueError(
                f"unknown parameter {name} for {self.key}; parameters are "
                + ", ".join(self.param_names)
            )
        out = {}
        for p in self.params:
            if p.name not in values:
                raise ValueError(
                    f"missing parameter {p.name} for {self.key} ({p.name} must be {p.domain_text()})"
                )
            p.check(values[p.name])
            out[p.name] = values[p.name]
        return out

    @functools.cached_property
    def numpy(self) -> "CompiledFunction":
        """Vectorised float64 evaluator: ``f(*params)`` broadcasting over arrays."""
        from featfate_sym.compiled import compile_numpy

        return compile_numpy(self)

    @functools.cached_property
    def mpmath(self) -> "CompiledFunction":
        """Scalar mpmath evaluator at the working precision of ``mpmath.mp``."""
        from featfate_sym.compiled import compile_mpmath

        return compile_mpmath(self)

    def evaluate(self, **values) -> np.ndarray | float:
        """Float64 value at validated parameters (arrays broadcast)."""
        ordered = self.validate(values)
        out = self.numpy.unchecked(*ordered.values())
        return float(out) if np.ndim(out) == 0 else out

    @property
    def outputs(self) -> Sequence[str]:
        """Component names of a vector-valued result (empty for a scalar)."""
        return self.derivation.outputs

    def evaluate_mp(self, dps: int = 50, **values) -> mpmath.mpf:
        """mpmath value at ``dps`` decimal digits; inputs are converted exactly from strings."""
        ordered = self.validate(values)
        with mpmath.workdps(dps):
            # strings and SymPy numbers convert at the working precision, not via float
            args = [v if isinstance(v, mpmath.mpf) else mpmath.mpf(str(v)) for v in ordered.values()]
            return self.mpmath.unchecked(*args)


_REGISTRY: dict[str, Result] = {}
_LOADED = False
#: build every derivation afresh instead of reading the cache (``derive --fresh``)
_FRESH = False


def derive_fresh(fresh: bool = True) -> None:
    """Make results built from now on ignore the on-disk cache (they still refresh it)."""
    global _FRESH
    _FRESH = fresh


def register(
    key: str,
    *,
    title: str,
    family: str,
    params: Iterable[Param],
    regime: str,
    status: Status,
    reference: str,
    notes: str = "",
    special_cases: Iterable[SpecialCase] = (),
    singular: str = "",
    evaluable: bool = True,
    inert: Iterable[str] = (),
) -> Callable[[Callable[[], Derivation]], Callable[[], Derivation]]:
    """Decorator registering ``builder`` under ``key``; returns the builder unchanged."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    if not isinstance(status, Status):
        raise TypeError(f"status of {key} must be a Status (source and exactness)")

    def deco(builder: Callable[[], Derivation]) -> Callable[[], Derivation]:
        if key in _REGISTRY:
            raise ValueError(f"result {key!r} registered twice")
        _REGISTRY[key] = Result(
            key=key,
            title=title,
            family=family,
            params=tuple(params),
            regime=regime,
            status=status,
            reference=reference,
            builder=builder,
            notes=notes,
            special_cases=tuple(special_cases),
            singular=singular,
            evaluable=evaluable,
            inert=tuple(inert),
        )
        return builder

    return deco


def _load() -> None:
    global _LOADED
    if not _LOADED:
        importlib.import_module("featfate_sym.theory")
        _LOADED = True


def get(key: str) -> Result:
    """The result registered under ``key``; ``KeyError`` lists the known keys."""
    _load()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown result {key!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def keys() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def results() -> list[Result]:
    _load()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


# -- small helpers ---------------------------------------------------------------------
def _plain_name(symbol: sp.Symbol) -> str:
    # "u_0" -> "u0": the user-facing name has no LaTeX underscore for single symbols
    name = symbol.name
    return {"u_0": "u0", "u_f": "uf"}.get(name, name)


def _num_text(value: sp.Expr) -> str:
    value = sp.sympify(value)
    if value.is_Integer or value.is_Rational:
        return str(value)
    text = str(value)
    return text if len(text) < 12 else f"{float(value):g}"


__all__ = [
    "Source",
    "Exactness",
    "Status",
    "FAMILIES",
    "Param",
    "Step",
    "ImplicitRoot",
    "SpecialCase",
    "Derivation",
    "NumericForm",
    "Result",
    "register",
    "derive_fresh",
    "get",
    "keys",
    "results",
]
