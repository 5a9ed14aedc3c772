"""Compile registered SymPy expressions into NumPy and mpmath evaluators.

``lambdify`` is always given ``modules=`` explicitly (otherwise it picks whatever is
installed).  Before compiling to float64 the expression is rewritten where cancellation
would bite (``sympy.codegen.rewriting``: ``log1p``/``expm1``, and ``1 - cos x`` as
``2 sin^2(x/2)``).  Quantities the derivation leaves as roots of an equation
(:class:`~featfate_sym.registry.ImplicitRoot`) are solved by safeguarded Newton iteration
inside their bracket, vectorised for NumPy and at working precision for mpmath; a root
without a sign change on its bracket, or one that does not converge, raises
:class:`EvaluationError` (never the last iterate).  Where a derivation carries a
:class:`~featfate_sym.registry.NumericForm` (an equal form that keeps range and digits,
say in logarithms for any depth), that form is what is compiled.

The singular points documented on each result (for example ``gamma = 1`` with noise)
are encoded in the expression itself as ``Piecewise`` branches.  A float64 value that is
not finite is recomputed by the mpmath evaluator, and stands only if that agrees (see
:func:`compile_numpy`); so no NaN or overflow of the selected branch passes silently.
Both evaluators check their arguments' domains; ``.unchecked`` skips the check.
"""

from __future__ import annotations

import dataclasses
import functools
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
    """A compiled evaluator that keeps the SymPy expression it came from.

    Calling it checks every argument against its parameter's domain (``ValueError``
    naming the parameter, its range and the first offending value).  ``unchecked`` is
    the same evaluator without the check, for trusted inner loops whose arguments were
    validated once outside; there a NaN argument gives NaN (a gap in a curve).
    """

    key: str
    expr: sp.Basic
    arg_names: tuple[str, ...]
    backend: str
    unchecked: Callable
    params: tuple = ()

    def __call__(self, *args):
        if len(args) != len(self.arg_names):
            raise TypeError(f"{self.key} takes {len(self.arg_names)} arguments ({', '.join(self.arg_names)})")
        for param, value in zip(self.params, args):
            param.check(value)
        return self.unchecked(*args)

    def __repr__(self) -> str:
        return f"{self.backend}:{self.key}({', '.join(self.arg_names)}) = {self.expr}"


def evaluated_form(result) -> tuple[sp.Basic, Sequence]:
    """The expression and implicit roots the evaluators compute: the derivation's
    numerical form where it has one, else its expression."""
    numeric = result.derivation.numeric
    if numeric is not None:
        return numeric.expr, tuple(numeric.implicit)
    return result.expr, tuple(result.derivation.implicit)


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


def _erfc_numpy(x):
    """``erfc`` elementwise (NumPy has none; ``math.erfc`` takes scalars only)."""
    from scipy.special import erfc

    return erfc(x)


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
NUMPY_MODULES = [{"hyper": _hyper_numpy, "erfc": _erfc_numpy}, "numpy"]


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


class EvaluationError(ArithmeticError):
    """No trustworthy value: a root that does not converge or has no bracket, or a NaN
    where the result documents none.  The message names the result and the point."""


def _point_text(names: Sequence[str], values: Sequence) -> str:
    return ", ".join(f"{name}={float(v):.17g}" for name, v in zip(names, values))


@dataclasses.dataclass(frozen=True)
class _NumpyRoot:
    """An implicit root compiled once: equation, derivative, bracket and domain, in the
    parameters (and earlier roots) it actually depends on."""

    uses: tuple[int, ...]  # positions in (parameters + earlier roots)
    f: Callable
    df: Callable
    lo: Callable
    hi: Callable
    where: Callable | None  # None: defined everywhere

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
        count = distinct.shape[0]
        flat = [a.ravel() for a in args]  # scalars stay scalars
        for j, k in enumerate(varying):
            flat[k] = distinct[:, j]
        full = [np.broadcast_to(a, (count,)) for a in flat]
        wanted = np.ones(count, dtype=bool)
        if self.where is not None:
            wanted = np.broadcast_to(np.asarray(self.where(*full), dtype=bool), (count,)).copy()
        roots = np.full(count, np.nan)
        idx = np.flatnonzero(wanted)
        if idx.size:
            sub = [a[idx] for a in full]
            # a bracket end that is not finite makes the point fail (NaN, then high precision)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                lo = np.broadcast_to(np.asarray(self.lo(*sub), dtype=float), idx.shape).copy()
                hi = np.broadcast_to(np.asarray(self.hi(*sub), dtype=float), idx.shape).copy()
            roots[idx] = _newton_bracketed(self.f, self.df, sub, lo, hi)
        return roots[inverse.ravel()].reshape(shape)


def _compile_roots_numpy(symbols, implicit) -> list[_NumpyRoot]:
    known = list(symbols)
    compiled = []
    for root in implicit:
        free = (root.equation.free_symbols | root.bracket[0].free_symbols
                | root.bracket[1].free_symbols | root.where.free_symbols)
        uses = tuple(i for i, sym in enumerate(known) if sym in free)
        args = [known[i] for i in uses]

        def fn(e, with_root=True):
            return _lambdify_numpy(args + [root.symbol] if with_root else args, e)

        where = None if root.where == sp.true else fn(root.where, with_root=False)
        compiled.append(
            _NumpyRoot(
                uses,
                fn(root.equation),
                fn(sp.diff(root.equation, root.symbol)),
                fn(root.bracket[0], with_root=False),
                fn(root.bracket[1], with_root=False),
                where,
            )
        )
        known.append(root.symbol)
    return compiled


def _midpoint(lo, hi):
    """Bisection point: geometric on a positive bracket spanning more than a factor 4 (a
    bracket [1e-300, 1e300] takes ~10 halvings of its logarithm, not ~2000 of its
    width), arithmetic otherwise."""
    wide = (lo > 0) & (hi > 4 * lo)
    return np.where(wide, np.sqrt(np.where(wide, lo, 1.0)) * np.sqrt(np.where(wide, hi, 1.0)), 0.5 * (lo + hi))


def _newton_bracketed(f, df, args, lo, hi, iterations: int = 300):
    """Vectorised safeguarded Newton iteration for ``f(*args, x) = 0`` inside ``[lo, hi]``;
    ``args``, ``lo``, ``hi`` are flat arrays of one length.

    A Newton step is taken when it stays inside the bracket and at most halves the
    previous step; otherwise the bracket is bisected (:func:`_midpoint`).  Converged means
    the step is below ``4 eps |x|`` -- plus ``eps 2^-16 (hi - lo)_initial`` where the
    bracket holds 0, for a root at 0 -- or ``f(x) = 0``.  Only the points not yet converged are iterated, and a converged
    point stops moving, so each point follows the same iterates alone or in a batch
    (vectorised equals pointwise, bit for bit).  A point whose bracket has no sign change
    (or an end that overflows), or that has not converged after ``iterations`` steps,
    comes back as NaN -- never as its last iterate; the evaluator recomputes such points
    at high precision, where they converge or raise.
    """
    n = lo.shape[0]
    eps = np.finfo(float).eps
    full = [np.broadcast_to(a, (n,)) for a in args]
    # an overflowing or undefined value of f is not finite and is handled as a failure
    # (NaN, then high precision), so its floating-point flag carries nothing more
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        flo = np.broadcast_to(f(*full, lo), (n,))
        fhi = np.broadcast_to(f(*full, hi), (n,))
        valid = np.isfinite(flo) & np.isfinite(fhi) & (np.sign(flo) * np.sign(fhi) <= 0)
        increasing = fhi >= flo
        # an absolute tolerance only where the bracket holds 0 (the root may be 0 itself);
        # a one-signed bracket converges in relative terms, whatever its width
        abs_tol = np.where((lo < 0) & (hi > 0), eps * 2.0**-16 * (hi - lo), 0.0)
        x = np.where(flo == 0, lo, hi)
        step = hi - lo  # the previous step, for the halving rule
        done = ~valid | (flo == 0) | (fhi == 0)
        idx = np.flatnonzero(~done)
        for _ in range(iterations):
            if idx.size == 0:
                break
            sub = [a[idx] for a in full]
            xi, lo_i, hi_i = x[idx], lo[idx], hi[idx]
            fx = np.broadcast_to(f(*sub, xi), xi.shape)
            dfx = np.broadcast_to(df(*sub, xi), xi.shape)
            broken = ~np.isfinite(fx)
            above = (fx > 0) == increasing[idx]
            hi_i = np.where(above, xi, hi_i)
            lo_i = np.where(above, lo_i, xi)
            newton = xi - fx / dfx  # a zero slope gives inf: bisect
            take = (np.isfinite(newton) & (newton >= lo_i) & (newton <= hi_i)
                    & (np.abs(newton - xi) <= 0.5 * np.abs(step[idx])))
            x_new = np.where(take, newton, _midpoint(lo_i, hi_i))
            moved = np.abs(x_new - xi)
            converged = (fx == 0) | (moved <= 4 * eps * np.abs(x_new) + abs_tol[idx])
            x_new = np.where(fx == 0, xi, x_new)
            step[idx] = np.where(take, moved, hi_i - lo_i)
            x[idx], lo[idx], hi[idx] = x_new, lo_i, hi_i
            valid[idx[broken]] = False
            idx = idx[~(converged | broken)]
    valid[idx] = False  # not converged
    return np.where(valid, x, np.nan)


def compile_numpy(result) -> CompiledFunction:
    """Float64 evaluator of ``result``, broadcasting over its arguments.

    NumPy evaluates every branch of a ``Piecewise`` (and the shared subexpressions) on
    every point before selecting, so a floating-point flag raised there says nothing about
    the value returned; the generated function runs with ``divide``, ``invalid`` and
    ``over`` flags unraised, and the *selected* values are checked instead: every point
    whose value is not finite -- a root that failed included -- and every point with an
    argument outside ``FLOAT_RANGE`` is evaluated again by the mpmath evaluator
    (``REPAIR_DPS`` digits, no exponent range limit).  That value stands -- a documented
    ``inf`` branch, a magnitude beyond float64 (``inf``), a NaN the expression itself
    states (``lt.boundary`` off its domain) -- and anything else raises
    :class:`EvaluationError`, as does an implicit root that fails at high precision too.
    """
    syms = list(result.symbols)
    form, implicit = evaluated_form(result)
    roots = [r.symbol for r in implicit]
    expr = stabilise(separate_piecewise(form))
    vector = is_vector(expr)
    main = _lambdify_numpy(syms + roots, list(expr) if vector else expr)
    compiled_roots = _compile_roots_numpy(syms, implicit)
    literal = _literal_mask(expr)
    documented = None if literal == 0 else _lambdify_numpy(syms + roots, literal)
    repair = functools.partial(_repair_non_finite, result, allows_nan=result.expr.has(sp.nan))

    def call(*args):
        if len(args) != len(syms):
            raise TypeError(f"{result.key} takes {len(syms)} arguments ({', '.join(result.param_names)})")
        arrays = [np.asarray(a, dtype=float) for a in args]
        solved: list[np.ndarray] = []
        for root in compiled_roots:
            solved.append(root.solve(arrays + solved))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # see the docstring
            out = main(*arrays, *solved)
        shape = np.broadcast_shapes(*[a.shape for a in arrays]) if arrays else ()
        if vector:
            # components stacked on a leading axis: out[i] is component i
            out = np.stack([np.broadcast_to(np.asarray(o, dtype=float), shape) for o in out])
            return repair(arrays, out, shape)
        out = np.asarray(out, dtype=float)
        if shape == ():
            return repair(arrays, out, shape, documented, solved)[()]
        # a fresh array of the full shape is returned as it is; a smaller one (a result
        # constant along some argument) or one that may be a caller's input is copied
        if out.shape != shape or any(np.may_share_memory(out, a) for a in arrays):
            out = np.broadcast_to(out, shape).copy()
        return repair(arrays, out, shape, documented, solved)

    return CompiledFunction(result.key, expr, result.param_names, "numpy", call, result.params)


#: digits of the mpmath evaluation that stands in for a float64 value
REPAIR_DPS = 40
#: float64 evaluates arguments whose magnitudes lie in this range (or are 0); beyond it a
#: polynomial of modest degree in the argument can overflow or underflow to a finite
#: wrong value, so such points are evaluated by mpmath
FLOAT_RANGE = (1e-50, 1e50)


def _outside_float_range(arrays, shape) -> np.ndarray | None:
    """Where an argument lies outside ``FLOAT_RANGE`` (None if nowhere: the usual case,
    decided on each argument's own, unbroadcast, array)."""
    lo, hi = FLOAT_RANGE
    out = None
    for a in arrays:
        if a.size == 0:
            continue
        # from the extremes alone where possible (no temporary array): a range on one side
        # of 0 has its smallest magnitude at an end; one that holds 0 is searched
        low, high = a.min(), a.max()
        if max(-low, high) <= hi:
            if low > 0 or high < 0:
                if min(abs(low), abs(high)) >= lo:
                    continue
            else:
                near = (a > -lo) & (a < lo)
                if not near.any() or not np.any(a[near] != 0):
                    continue
        outside = np.broadcast_to((np.abs(a) > hi) | ((np.abs(a) < lo) & (a != 0)), shape)
        out = outside if out is None else out | outside
    return out


def _literal_mask(expr: sp.Basic) -> sp.Basic:
    """1 where ``expr`` takes a ``Piecewise`` branch that is literally infinite or NaN (a
    documented singular value), else 0; such points need no high-precision check."""
    if expr in (sp.oo, -sp.oo, sp.zoo, sp.nan):
        return sp.Integer(1)
    if isinstance(expr, sp.Piecewise):
        branches = [(_literal_mask(v), c) for v, c in expr.args]
        if all(m == 0 for m, _ in branches):
            return sp.Integer(0)
        return sp.Piecewise(*branches)
    if isinstance(expr, (sp.Add, sp.Mul)):  # a literal infinity plus (times) finite terms
        masks = [m for m in (_literal_mask(a) for a in expr.args) if m != 0]
        return sp.Integer(0) if not masks else (masks[0] if len(masks) == 1 else sp.Max(*masks))
    return sp.Integer(0)


def _repair_non_finite(result, arrays, out, shape, documented=None, solved=(), *, allows_nan=False):
    """Replace every non-finite float64 value, and every value at an argument outside
    ``FLOAT_RANGE``, by the mpmath value (see compile_numpy); a non-finite value from a
    literal ``oo`` / ``nan`` branch (``documented``) stands as it is."""
    # a vector result stacks its components on a leading axis
    finite = np.isfinite(out) if out.ndim == len(shape) else np.all(np.isfinite(out), axis=0)
    outside = _outside_float_range(arrays, shape)
    if outside is None and np.all(finite):
        return out  # the usual case: one pass over the values
    bad = ~finite
    if documented is not None and np.any(bad):
        bad = np.array(bad, dtype=bool).reshape(-1)
        idx = np.flatnonzero(bad)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # unselected branches
            flags = documented(*[np.broadcast_to(a, shape).reshape(-1)[idx] for a in [*arrays, *solved]])
        stands = np.broadcast_to(np.asarray(flags, dtype=float), idx.shape) == 1
        if not allows_nan:  # a literal oo branch stands only as an infinity
            stands &= np.isinf(np.asarray(out, dtype=float).reshape(-1)[idx])
        bad[idx] = ~stands
        bad = bad.reshape(shape)
    if outside is not None:
        bad = bad | outside
    # a NaN argument (possible only through ``unchecked``, as a gap in a curve) gives NaN
    for a in arrays:
        bad = bad & ~np.isnan(a)
    if not np.any(bad):
        return out
    out = np.array(out, dtype=float)  # writable, and never a caller's array
    full = [np.broadcast_to(a, shape) for a in arrays]
    with mpmath.workdps(REPAIR_DPS):
        for index in zip(*np.nonzero(bad)) if shape else [()]:
            point = [mpmath.mpf(float(a[index])) for a in full]
            value = result.mpmath.unchecked(*point)
            parts = value if isinstance(value, tuple) else (value,)
            if not allows_nan and any(mpmath.isnan(v) for v in parts):
                raise EvaluationError(
                    f"{result.key} has no value at {_point_text(result.param_names, point)} "
                    "(NaN in float64 and at high precision)")
            if any(isinstance(v, mpmath.mpc) and v.imag != 0 for v in parts):
                raise EvaluationError(f"{result.key} is complex at {_point_text(result.param_names, point)}")
            # beyond the float64 range: +-inf
            floats = [float(v.real if isinstance(v, mpmath.mpc) else v) for v in parts]
            if isinstance(value, tuple):
                out[(slice(None), *index)] = floats
            else:
                out[index] = floats[0]
    return out


def _real(value):
    """``value`` as a finite real ``mpf``, or None (complex, infinite or NaN)."""
    if isinstance(value, mpmath.mpc):
        if value.imag != 0:
            return None
        value = value.real
    value = mpmath.mpf(value)
    return value if mpmath.isfinite(value) else None


def _newton_bracketed_mp(f, df, lo, hi, fail, iterations: int = 2000):
    """Scalar form of :func:`_newton_bracketed` at the working precision; ``fail(reason)``
    raises."""
    flo, fhi = _real(f(lo)), _real(f(hi))
    if flo is None or fhi is None or flo * fhi > 0:
        fail(f"has no sign change on its bracket [{mpmath.nstr(lo, 17)}, {mpmath.nstr(hi, 17)}]")
    if flo == 0:
        return lo
    if fhi == 0:
        return hi
    increasing = fhi >= flo
    tol = mpmath.mpf(2) ** (-mpmath.mp.prec + 3)
    abs_tol = tol * 2**-16 * (hi - lo) if lo < 0 < hi else 0  # as in _newton_bracketed
    x, step = hi, hi - lo
    for _ in range(iterations):
        fx = _real(f(x))
        if fx is None:
            fail(f"equation has no finite real value at {mpmath.nstr(x, 17)}")
        if fx == 0:
            return x
        if (fx > 0) == increasing:
            hi = x
        else:
            lo = x
        d = df(x)
        newton = x - fx / d if d != 0 else None
        if newton is not None and lo <= newton <= hi and abs(newton - x) <= step / 2:
            x_new, step = newton, abs(newton - x)
        else:
            x_new, step = (mpmath.sqrt(lo) * mpmath.sqrt(hi) if 0 < 4 * lo < hi else (lo + hi) / 2), hi - lo
        if abs(x_new - x) <= tol * abs(x_new) + abs_tol:
            return x_new
        x = x_new
    fail(f"did not converge in {iterations} steps")


def compile_mpmath(result) -> CompiledFunction:
    """Scalar mpmath evaluator at the working precision; roots raise
    :class:`EvaluationError` when they have no bracket or do not converge."""
    syms = list(result.symbols)
    form, roots = evaluated_form(result)
    form = stabilise(form)  # expm1/log1p keep their digits at any precision, too
    expr = list(form) if is_vector(form) else form
    main = sp.lambdify(syms + [r.symbol for r in roots], expr, modules="mpmath")
    compiled_roots = []
    known_syms = list(syms)
    for root in roots:
        compiled_roots.append(
            (
                sp.lambdify(known_syms + [root.symbol], root.equation, modules="mpmath"),
                sp.lambdify(known_syms + [root.symbol], sp.diff(root.equation, root.symbol), modules="mpmath"),
                # bracket and domain may use the earlier roots too, as in the NumPy compiler
                sp.lambdify(known_syms, root.bracket[0], modules="mpmath"),
                sp.lambdify(known_syms, root.bracket[1], modules="mpmath"),
                None if root.where == sp.true else sp.lambdify(known_syms, root.where, modules="mpmath"),
            )
        )
        known_syms.append(root.symbol)

    def call(*args):
        args = [mpmath.mpf(a) if not isinstance(a, (mpmath.mpf, mpmath.mpc)) else a for a in args]
        try:
            return evaluate(args)
        except ZeroDivisionError:
            raise EvaluationError(f"{result.key}: division by zero at "
                                  f"{_point_text(result.param_names, args)}") from None

    def evaluate(args):
        solved = []
        for f, df, lo_f, hi_f, where in compiled_roots:
            known = args + solved
            if where is not None and not where(*known):
                solved.append(mpmath.nan)  # not used where the root is undefined
                continue

            def fail(why):
                raise EvaluationError(f"{result.key}: implicit root {why} at "
                                      f"{_point_text(result.param_names, args)}")

            lo, hi = _real(lo_f(*known)), _real(hi_f(*known))
            if lo is None or hi is None:
                fail("has no finite real bracket")
            solved.append(_newton_bracketed_mp(lambda v: f(*known, v), lambda v: df(*known, v), lo, hi, fail))
        out = main(*args, *solved)
        return tuple(out) if isinstance(out, list) else out

    return CompiledFunction(result.key, form, result.param_names, "mpmath", call, result.params)
