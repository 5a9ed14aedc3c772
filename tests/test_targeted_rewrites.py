"""The targeted operations that stand in for blanket ``integrate``/``limit`` calls in the
builders (for speed) give what the blanket calls give.

Independent expectations: ``sp.integrate`` against the Gaussian density over the real
line, and ``sp.limit``.
"""

from __future__ import annotations

import pytest
import sympy as sp

from featfate_sym import derivation_cache, registry
from featfate_sym.symbols import lam, psi, sigma
from featfate_sym.theory.distances import _gaussian_mean
from featfate_sym.theory.scratch import _limit_at_zero

_X, _Y = sp.symbols("x y", real=True)
_F = sp.Symbol("f", real=True)
_S = sp.Symbol("s", positive=True)


def _density(var, mean, sd):
    return sp.exp(-((var - mean) ** 2) / (2 * sd**2)) / (sd * sp.sqrt(2 * sp.pi))


@pytest.mark.parametrize("polynomial", [_X**2, 3 * _X**3 - _X + 2, (_X - _F) ** 4 / _S + _F * _X])
def test_gaussian_mean_is_the_integral_against_the_density(polynomial):
    expected = sp.integrate(polynomial * _density(_X, _F, _S), (_X, -sp.oo, sp.oo))
    got = _gaussian_mean(polynomial, {_X: (_F, _S)})
    assert sp.expand(got - expected) == 0
    assert got == sp.expand(got)  # returned expanded, the form the derivation prints


def test_gaussian_mean_of_two_independent_variables():
    polynomial = (_X - 2 * _Y) ** 2 * _Y**2
    expected = sp.integrate(polynomial * _density(_X, 0, 1) * _density(_Y, 0, 1),
                            (_X, -sp.oo, sp.oo), (_Y, -sp.oo, sp.oo))
    assert expected == 13  # E x^2 y^2 - 4 E x y^3 + 4 E y^4 = 1 - 0 + 4 * 3
    assert sp.expand(_gaussian_mean(polynomial, {_X: (0, 1), _Y: (0, 1)}) - expected) == 0


@pytest.mark.parametrize("expr", [
    sp.sqrt((lam + psi - 1) ** 2 + 4 * lam) / (lam + psi),
    (lam**2 + sigma**2 * psi) / (1 + lam + psi),
    (sp.sqrt(lam + 1) - 1) / lam + sigma,  # 0/0 at lam = 0: falls back to sp.limit
    1 / lam,  # unbounded: falls back to sp.limit (oo)
])
def test_limit_at_zero_is_the_limit(expr):
    expected = sp.limit(expr, lam, 0, "+")
    got = _limit_at_zero(expr)
    assert got == expected or sp.simplify(got - expected) == 0


def test_the_scheduling_hints_name_registered_keys():
    """A renamed or removed key left in the cold-fill hints would schedule nothing."""
    known = set(registry.keys())
    assert set(derivation_cache.COST_HINT) <= known
    grouped = [k for group in derivation_cache.AFFINITY for k in group]
    assert set(grouped) <= known and len(grouped) == len(set(grouped))
    groups = derivation_cache._groups(sorted(known))
    assert sorted(k for g in groups for k in g) == sorted(known)
    costs = [sum(derivation_cache.COST_HINT.get(k, 0.3) for k in g) for g in groups]
    assert costs == sorted(costs, reverse=True)  # the costliest group first

