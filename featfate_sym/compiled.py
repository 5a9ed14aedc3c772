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
from sympy.printing.numpy import NumPyPrinter
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


def _infinite(value: sp.Basic) -> bool:
    return value.has(sp.oo, -sp.oo, sp.zoo, sp.nan)


def _separate(pw: sp.Piecewise) -> sp.Basic:
    """``Piecewise((A_i + B, c_i), ...)`` as ``Piecewise((A_i, c_i), ...) + B`` when every
    finite branch shares an additive part ``B`` free of the conditions' symbols.

    The branches then depend only on the symbols the conditions test (for
    ``lt.transferability``: the scratch risk in ``gamma, sigma``), and ``B`` (the transfer
    risk in ``theta, lam``) is computed once on its own broadcast shape instead of inside
    every branch on the full grid.  ``A_i`` is the branch at a reference point of the
    other symbols; the split is kept only if SymPy proves ``v_i - A_i`` equal across
    branches and free of the conditions' symbols.  Infinite branches stay as they are
    (``oo + B = oo`` for finite ``B``).
    """
    tested = set().union(*[cond.free_symbols for _, cond in pw.args])
    finite = [value for value, _ in pw.args if not _infinite(value)]
    others = set().union(*[v.free_symbols for v in finite]) - tested
    if len(finite) < 2 or not others:
        return pw
    for ref in (0, 1):
        parts = [v.subs({s: ref for s in others}) for v in finite]
        if not any(_infinite(a) for a in parts):
            break
    else:
        return pw
    common = sp.simplify(finite[0] - parts[0])
    if common == 0 or common.free_symbols & tested or _infinite(common):
        return pw
    if any(sp.simplify(v - a - common) != 0 for v, a in zip(finite[1:], parts[1:])):
        return pw
    branches = iter(parts)
    return sp.Piecewise(*[(value if _infinite(value) else next(branches), cond) for value, cond in pw.args]) + common


def separate_piecewise(expr: sp.Basic) -> sp.Basic:
    """Pull the parts shared by all branches out of every ``Piecewise`` in ``expr``."""
    if is_vector(expr):
        return sp.Tuple(*[separate_piecewise(e) for e in expr])
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), _separate)


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


class _BroadcastingPrinter(NumPyPrinter):
    """NumPy printer whose ``And``/``Or`` broadcast their operands.

    SymPy prints ``And(a, b)`` as ``logical_and.reduce((a, b))``, which fails unless the
    operands have one shape; nested binary calls broadcast, so open grids (``gamma`` as a
    column, ``theta`` as a row) are evaluated without materialising the full product.
    """

    def _nested(self, func, expr):
        name = self._module_format(f"{self._module}.{func}")
        args = [self._print(a) for a in expr.args]
        out = args[0]
        for arg in args[1:]:
            out = f"{name}({out}, {arg})"
        return out

    def _print_And(self, expr):
        return self._nested("logical_and", expr)

    def _print_Piecewise(self, expr):
        # nested where(cond, value, rest) broadcasts like the operands (select would
        # materialise every condition and value at the full shape first)
        where = self._module_format(f"{self._module}.where")
        out = self._module_format(f"{self._module}.nan")
        for value, cond in reversed(expr.args):
            if cond == sp.true:
                out = self._print(value)
            else:
                out = f"{where}({self._print(cond)}, {self._print(value)}, {out})"
        return out

    def _print_Or(self, expr):
        return self._nested("logical_or", expr)


#: lambdify modules for float64: NumPy, plus the special functions NumPy lacks
NUMPY_MODULES = [{"hyper": _hyper_numpy}, "numpy"]


def _lambdify_numpy(args, expr):
    # the settings lambdify gives its own printer, with the dict module's names as
    # user functions
    printer = _BroadcastingPrinter(
        {
            "fully_qualified_modules": False,
            "inline": True,
            "allow_unknown_functions": True,
            "user_functions": {name: name for name in NUMPY_MODULES[0]},
        }
    )
    return sp.lambdify(args, expr, modules=NUMPY_MODULES, printer=printer, cse=True)


@dataclasses.dataclass(frozen=True)
class _NumpyRoot:
    """An implicit root compiled once: equation, derivative and bracket, in the
    parameters (and earlier roots) it actually depends on."""

    uses: tuple[int, ...]  # positions in (parameters + earlier roots)
    f: Callable
    df: Callable
    lo: Callable
    hi: Callable

    def solve(self, values: Sequence[np.ndarray]) -> np.ndarray:
        # solve on the broadcast shape of this root's own arguments only (on an open grid
        # the root of (gamma, sigma, L) is not recomputed for every theta), and only once
        # per distinct argument tuple (a dense grid repeats each gamma along theta)
        args = [values[i] for i in self.uses]
        shape = np.broadcast_shapes(*[a.shape for a in args]) if args else ()
        # an argument passed as a full array of one value counts as a scalar
        args = [a.ravel()[:1] if a.size > 1 and np.all(a == a.flat[0]) else a for a in args]
        varying = [k for k, a in enumerate(args) if a.size > 1]
        if varying:
            columns = np.stack([np.broadcast_to(args[k], shape).ravel() for k in varying], axis=1)
            if len(varying) == 1:  # the common case; 1-D unique is much faster
                distinct, inverse = np.unique(columns[:, 0], return_inverse=True)
                distinct = distinct[:, None]
            else:
                distinct, inverse = np.unique(columns, axis=0, return_inverse=True)
        else:
            distinct, inverse = np.zeros((1, 0)), np.zeros(1, dtype=int)
        flat = [a.ravel() for a in args]  # scalars stay scalars
        for j, k in enumerate(varying):
            flat[k] = distinct[:, j]
        lo = np.broadcast_to(np.asarray(self.lo(*flat), dtype=float), (distinct.shape[0],)).copy()
        hi = np.broadcast_to(np.asarray(self.hi(*flat), dtype=float), lo.shape).copy()
        roots = _newton_bracketed(self.f, self.df, flat, lo, hi)
        return roots[inverse.ravel()].reshape(shape)


def _compile_roots_numpy(result) -> list[_NumpyRoot]:
    known = list(result.symbols)
    compiled = []
    for root in result.derivation.implicit:
        free = root.equation.free_symbols | root.bracket[0].free_symbols | root.bracket[1].free_symbols
        uses = tuple(i for i, sym in enumerate(known) if sym in free)
        args = [known[i] for i in uses]

        def fn(e, with_root=True):
            return _lambdify_numpy(args + [root.symbol] if with_root else args, e)

        compiled.append(
            _NumpyRoot(
                uses,
                fn(root.equation),
                fn(sp.diff(root.equation, root.symbol)),
                fn(root.bracket[0], with_root=False),
                fn(root.bracket[1], with_root=False),
            )
        )
        known.append(root.symbol)
    return compiled


def _newton_bracketed(f, df, args, lo, hi, iterations: int = 200):
    """Vectorised Newton iteration for ``f(*args, x) = 0`` kept inside ``[lo, hi]`` by
    bisection; ``args``, ``lo``, ``hi`` are flat arrays of one length.

    Only the points not yet converged are iterated, and a converged point stops moving,
    so each point follows the same iterates alone or in a batch (vectorised equals
    pointwise, bit for bit).  Assumes a sign change on the bracket; points without one
    come back as NaN.
    """
    n = lo.shape[0]
    full = [np.broadcast_to(a, (n,)) for a in args]
    flo = np.broadcast_to(f(*full, lo), (n,))
    fhi = np.broadcast_to(f(*full, hi), (n,))
    valid = np.isfinite(flo) & np.isfinite(fhi) & (np.sign(flo) * np.sign(fhi) <= 0)
    increasing = fhi >= flo
    x = hi.copy()
    idx = np.flatnonzero(valid)
    for _ in range(iterations):
        if idx.size == 0:
            break
        sub = [a[idx] for a in full]
        xi, lo_i, hi_i = x[idx], lo[idx], hi[idx]
        fx = np.broadcast_to(f(*sub, xi), xi.shape)
        dfx = np.broadcast_to(df(*sub, xi), xi.shape)
        above = (fx > 0) == increasing[idx]
        hi_i = np.where(above, xi, hi_i)
        lo_i = np.where(above, lo_i, xi)
        newton = xi - fx / dfx
        # closed bracket: at the root the Newton step rounds to the iterate itself, which
        # is also a bracket end; an open test would throw it away for a bisection step
        inside = np.isfinite(newton) & (newton >= lo_i) & (newton <= hi_i)
        x_new = np.where(inside, newton, 0.5 * (lo_i + hi_i))
        converged = np.abs(x_new - xi) <= 4 * np.finfo(float).eps * np.abs(x_new)
        x[idx], lo[idx], hi[idx] = x_new, lo_i, hi_i
        idx = idx[~converged]
    return np.where(valid, x, np.nan)


def compile_numpy(result) -> CompiledFunction:
    syms = list(result.symbols)
    roots = [r.symbol for r in result.derivation.implicit]
    expr = stabilise(separate_piecewise(result.expr))
    vector = is_vector(expr)
    main = _lambdify_numpy(syms + roots, list(expr) if vector else expr)
    compiled_roots = _compile_roots_numpy(result)

    def call(*args):
        if len(args) != len(syms):
            raise TypeError(f"{result.key} takes {len(syms)} arguments ({', '.join(result.param_names)})")
        arrays = [np.asarray(a, dtype=float) for a in args]
        with np.errstate(all="ignore"):
            solved: list[np.ndarray] = []
            for root in compiled_roots:
                solved.append(root.solve(arrays + solved))
            out = main(*arrays, *solved)
            shape = np.broadcast_shapes(*[a.shape for a in arrays]) if arrays else ()
            if vector:
                # components stacked on a leading axis: out[i] is component i
                return np.stack([np.broadcast_to(np.asarray(o, dtype=float), shape) for o in out])
            out = np.asarray(out, dtype=float)
        if shape == ():
            return out[()]
        # a fresh array of the full shape is returned as it is; a smaller one (a result
        # constant along some argument) or one that may be a caller's input is copied
        if out.shape != shape or any(np.may_share_memory(out, a) for a in arrays):
            out = np.broadcast_to(out, shape).copy()
        return out

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
        x_new = newton if lo <= newton <= hi else (lo + hi) / 2
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
