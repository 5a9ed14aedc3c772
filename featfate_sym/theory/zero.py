"""Cheap decision procedures for ``expr == 0``, used by the builders' consistency checks.

``sp.simplify(a - b) != 0`` is what a check means, but ``simplify`` tries a long list of
rewrites even where the difference is a rational function (in the atoms it contains:
symbols, powers, exponentials, square roots) that cancels to zero.  :func:`is_zero`
first decides that case exactly -- ``sp.expand``, then ``sp.cancel`` over one common
denominator, a polynomial identity test in those atoms -- then, where sines or cosines
appear, ``sp.trigsimp`` (``sin^2 + cos^2 = 1`` is what cancel cannot see), and only if
none gives zero (inconclusive: the atoms may be related) falls back to ``sp.simplify``.
It never assumes equality: ``True`` only when a procedure reduced the expression to 0.
Its arguments are SymPy objects built by the derivations (``sympify`` in strict mode:
no string is parsed).
"""

from __future__ import annotations

import sympy as sp


def is_zero(expr) -> bool:
    """``True`` when ``expr`` (a SymPy expression or matrix) is identically zero: by
    expanding, by cancelling over a common denominator, by ``sp.trigsimp`` (where it has
    sines or cosines), else by ``sp.simplify(expr) == 0``."""
    expr = sp.sympify(expr, strict=True)
    if isinstance(expr, sp.MatrixBase):
        return all(is_zero(e) for e in expr)
    if expr == 0:
        return True
    if isinstance(expr, sp.Expr):
        try:
            if sp.expand(expr) == 0 or sp.cancel(sp.together(expr)) == 0:
                return True
        except (sp.PolynomialError, TypeError, ValueError, NotImplementedError):
            pass  # not rational in its atoms: the procedures below decide
        if expr.has(sp.sin, sp.cos) and sp.trigsimp(expr) == 0:
            return True
    return sp.simplify(expr) == 0


def limit_by_powers(expr: sp.Expr, symbol: sp.Symbol, *limit_args) -> sp.Expr:
    """``sp.limit(expr, *limit_args)`` for ``expr`` a polynomial in ``symbol`` (the noise
    level, say; not the limit variable): the limit of each coefficient (factored first, so
    that ``sp.limit`` sees one quotient instead of a sum of singular terms), when every
    one is finite, summed back -- the limit of a finite sum of convergent terms.
    Otherwise ``sp.limit`` of the whole."""
    poly = sp.Poly(expr, symbol)
    total = []
    for (power,), coeff in poly.terms():
        value = sp.limit(sp.factor(coeff), *limit_args)
        if value.has(sp.oo, -sp.oo, sp.zoo, sp.nan, sp.Limit, sp.AccumBounds):
            return sp.limit(expr, *limit_args)
        total.append(value * symbol**power)
    return sp.Add(*total)
