"""Compile registered SymPy expressions into NumPy and mpmath evaluators.

``lambdify`` is always given ``modules=`` explicitly (otherwise it picks whatever is
installed).  Before compiling to float64 the expression is rewritten where cancellation
would bite (``sympy.codegen.rewriting``: ``log1p``/``expm1``, and ``1 - cos x`` as
``2 sin^2(x/2)``).  Quantities the derivation leaves as roots of an equation
(:class:`~featfate_sym.registry.ImplicitRoot`) are solved by safeguarded Newton iteration
inside their bracket, vectorised for NumPy and at working precision for mpmath.

The singular points documented on each result (for example ``gamma = 1`` with noise)
are encoded in the expression itself as ``Piecewise`` branches; NumPy evaluates every
branch of a ``Piecewise`` before selecting, so evaluation runs under
``np.errstate(all="ignore")`` and the unselected branches' warnings are discarded.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.rewriting import ReplaceOptim, optimize, optims_c99

_one_minus_cos = ReplaceOptim(
    lambda e: e.is_Add
    and len(e.args) == 2
    and any(arg == 1 for arg in e.args)
    and any(isinstance(-arg, sp.cos) for arg in e.args),
    lambda e: 2 * sp.sin(next(-arg for arg in e.args if isinstance(-arg, sp.cos)).args[0] / 2) ** 2,
)


def stabilise(expr: sp.Basic) -> sp.Basic:
    """Rewrite ``expr`` into an algebraically equal form that loses fewer digits."""
    if is_vector(expr):
        return sp.Tuple(*[stabilise(e) for e in expr])
    return optimize(expr, [*optims_c99, _one_minus_cos])


def is_vector(expr: sp.Basic) -> bool:
    """Vector-valued results (a ``Tuple`` or ``Matrix``) evaluate to a stacked array."""
    return isinstance(expr, (sp.Tuple, sp.MatrixBase))


@dataclasses.dataclass(frozen=True)
class CompiledFunction:
    """A compiled evaluator that keeps the SymPy expression it came from."""

    key: str
    expr: sp.Basic
    arg_names: tuple[str, ...]
    backend: str
    _call: Callable

    def __call__(self, *args):
        return self._call(*args)

    def __repr__(self) -> str:
        return f"{self.backend}:{self.key}({', '.join(self.arg_names)}) = {self.expr}"


def _hyper_numpy(ap, bq, x):
    """``hyper((a, b), (c,), x)`` as SymPy prints it: the Gauss function by scipy's hyp2f1.

    scipy takes its logarithmic branch near ``x = 1`` only when ``c - a - b`` is exactly
    an integer; printed parameters such as ``b = 2(L-1)/L``, ``c = 1 + 2(L-1)/L`` miss it
    by one rounding, and the value near ``x = 1`` is then wrong (``2F1(1, 12/7; 19/7;
    0.99888)`` gives -43.7 instead of 10.30).  ``b`` is snapped so that ``c - a - b`` is
    the integer exactly.
    """
    from scipy.special import hyp2f1

    if len(ap) != 2 or len(bq) != 1:
        raise NotImplementedError(f"only 2F1 compiles to NumPy (got {len(ap)}F{len(bq)})")
    (a, b), (c,) = ap, bq
    a, b, c = (np.asarray(v, dtype=float) for v in (a, b, c))
    gap = c - a - b
    whole = np.round(gap)
    b = np.where(np.abs(gap - whole) < 1e-12, c - a - whole, b)
    return hyp2f1(a, b, c, x)


#: lambdify modules for float64: NumPy, plus the special functions NumPy lacks
NUMPY_MODULES = [{"hyper": _hyper_numpy}, "numpy"]


def _roots_numpy(result, args: Sequence[np.ndarray]):
    """Solve each implicit root in order; later roots may use earlier ones."""
    solved: list[np.ndarray] = []
    syms = list(result.symbols)
    for root in result.derivation.implicit:
        f = sp.lambdify(syms + [root.symbol], root.equation, modules=NUMPY_MODULES)
        df = sp.lambdify(syms + [root.symbol], sp.diff(root.equation, root.symbol), modules=NUMPY_MODULES)
        lo_f = sp.lambdify(syms, root.bracket[0], modules=NUMPY_MODULES)
        hi_f = sp.lambdify(syms, root.bracket[1], modules=NUMPY_MODULES)
        known = list(args) + solved
        lo = np.broadcast_to(np.asarray(lo_f(*known[: len(syms)]), dtype=float), np.broadcast(*args).shape).copy()
        hi = np.broadcast_to(np.asarray(hi_f(*known[: len(syms)]), dtype=float), lo.shape).copy()
        x = _newton_bracketed(lambda v: f(*known, v), lambda v: df(*known, v), lo, hi)
        solved.append(x)
        syms.append(root.symbol)
    return solved


def _newton_bracketed(f, df, lo, hi, iterations: int = 200):
    """Vectorised Newton iteration kept inside ``[lo, hi]`` by bisection.

    Assumes a sign change on the bracket; points without one come back as NaN.
    """
    flo, fhi = f(lo) * np.ones_like(lo), f(hi) * np.ones_like(hi)
    valid = np.isfinite(flo) & np.isfinite(fhi) & (np.sign(flo) * np.sign(fhi) <= 0)
    increasing = fhi >= flo
    x = hi.copy()
    # a point stops moving once it has converged, so that its value does not depend on
    # the other points of the batch (vectorised == pointwise, bit for bit)
    frozen = ~valid
    for _ in range(iterations):
        fx = f(x) * np.ones_like(x)
        dfx = df(x) * np.ones_like(x)
        above = (fx > 0) == increasing
        hi = np.where(above, x, hi)
        lo = np.where(above, lo, x)
        newton = x - fx / dfx
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        x_new = np.where(inside, newton, 0.5 * (lo + hi))
        converged = np.abs(x_new - x) <= 4 * np.finfo(float).eps * np.abs(x_new)
        x = np.where(frozen, x, x_new)
        frozen = frozen | converged
        if np.all(frozen):
            break
    return np.where(valid, x, np.nan)


def compile_numpy(result) -> CompiledFunction:
    syms = list(result.symbols)
    roots = [r.symbol for r in result.derivation.implicit]
    expr = stabilise(result.expr)
    vector = is_vector(expr)
    main = sp.lambdify(syms + roots, list(expr) if vector else expr, modules=NUMPY_MODULES)

    def call(*args):
        if len(args) != len(syms):
            raise TypeError(f"{result.key} takes {len(syms)} arguments ({', '.join(result.param_names)})")
        # broadcast first: Piecewise conditions combine with logical_and.reduce, which
        # needs equal shapes
        arrays = list(np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in args]))
        with np.errstate(all="ignore"):
            solved = _roots_numpy(result, arrays) if roots else []
            out = main(*arrays, *solved)
            shape = np.broadcast(*arrays).shape if arrays else ()
            if vector:
                # components stacked on a leading axis: out[i] is component i
                out = np.stack([np.broadcast_to(np.asarray(o, dtype=float), shape) for o in out])
            else:
                out = np.broadcast_to(np.asarray(out, dtype=float), shape)
        return out[()] if out.ndim == 0 else np.array(out)

    return CompiledFunction(result.key, expr, result.param_names, "numpy", call)


def _newton_bracketed_mp(f, df, lo, hi, iterations: int = 500):
    flo, fhi = f(lo), f(hi)
    if not (mpmath.isfinite(flo) and mpmath.isfinite(fhi)) or flo * fhi > 0:
        return mpmath.nan
    increasing = fhi >= flo
    x = hi
    tol = mpmath.mpf(2) ** (-mpmath.mp.prec + 3)
    for _ in range(iterations):
        fx = f(x)
        if fx == 0:
            return x
        if (fx > 0) == increasing:
            hi = x
        else:
            lo = x
        d = df(x)
        newton = x - fx / d if d != 0 else hi
        x_new = newton if lo < newton < hi else (lo + hi) / 2
        if abs(x_new - x) <= tol * abs(x_new):
            return x_new
        x = x_new
    return x


def compile_mpmath(result) -> CompiledFunction:
    syms = list(result.symbols)
    roots = list(result.derivation.implicit)
    expr = list(result.expr) if is_vector(result.expr) else result.expr
    main = sp.lambdify(syms + [r.symbol for r in roots], expr, modules="mpmath")
    compiled_roots = []
    known_syms = list(syms)
    for root in roots:
        compiled_roots.append(
            (
                sp.lambdify(known_syms + [root.symbol], root.equation, modules="mpmath"),
                sp.lambdify(known_syms + [root.symbol], sp.diff(root.equation, root.symbol), modules="mpmath"),
                sp.lambdify(syms, root.bracket[0], modules="mpmath"),
                sp.lambdify(syms, root.bracket[1], modules="mpmath"),
            )
        )
        known_syms.append(root.symbol)

    def call(*args):
        args = [mpmath.mpf(a) if not isinstance(a, (mpmath.mpf, mpmath.mpc)) else a for a in args]
        solved = []
        for f, df, lo_f, hi_f in compiled_roots:
            known = args + solved
            try:
                lo, hi = mpmath.mpf(lo_f(*args)), mpmath.mpf(hi_f(*args))
                x = _newton_bracketed_mp(lambda v: f(*known, v), lambda v: df(*known, v), lo, hi)
            except (ZeroDivisionError, ValueError, TypeError):
                x = mpmath.nan
            solved.append(x)
        out = main(*args, *solved)
        return tuple(out) if isinstance(out, list) else out

    return CompiledFunction(result.key, result.expr, result.param_names, "mpmath", call)
