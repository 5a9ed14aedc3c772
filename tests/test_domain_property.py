"""Every registry key at points spread over its whole documented domain, extremes
included (``tests/domain_points.py``): the float64 evaluator must agree with the mpmath
evaluator at 50 digits to 1e-10 relative (1e-14 absolute where the value crosses zero),
or both must refuse with a clear error.  Infinite values must be equal infinities; a NaN
is accepted only from a result whose expression states one (``lt.boundary`` off its
domain).  A silent wrong value -- a root's last iterate, an overflow to a finite number,
a cancellation -- fails here.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

import featfate_sym as ff
from featfate_sym.compiled import EvaluationError

from domain_points import points

KEYS = [r.key for r in ff.registry.results() if r.evaluable]
#: random points per key in the default suite (plus every extreme of every parameter);
#: the slow run takes 10x as many
DEFAULT_POINTS = 25
REL, ABS = 1e-10, 1e-14


def _float(result, args):
    try:
        return np.atleast_1d(result.numpy(*args)).astype(float), None
    except EvaluationError as exc:
        return None, exc


def _mp(result, args):
    try:
        with mpmath.workdps(50):
            value = result.mpmath(*[mpmath.mpf(a) for a in args])
        return (value if isinstance(value, tuple) else (value,)), None
    except EvaluationError as exc:
        return None, exc


def _agree(result, point) -> str | None:
    """None if the float64 and 50-digit values agree (or both refuse), else why not."""
    args = [point[name] for name in result.param_names]
    got, f_err = _float(result, args)
    want, m_err = _mp(result, args)
    if f_err or m_err:
        if f_err and m_err:
            assert str(f_err) and str(m_err)  # a refusal says why
            return None
        return f"float64 {got if got is not None else f_err!r} vs mpmath {want if want is not None else m_err!r}"
    nan_ok = result.expr.has(sp.nan)
    for g, w in zip(got, want):
        w = float(w) if not mpmath.isnan(w) else math.nan
        if math.isnan(w) or math.isnan(g):
            if not (math.isnan(w) and math.isnan(g) and nan_ok):
                return f"NaN: float64 {g!r}, mpmath {w!r}"
        elif math.isinf(w) or math.isinf(g):
            if g != w:
                return f"float64 {g!r} vs mpmath {w!r}"
        elif not (abs(g - w) <= REL * abs(w) or abs(g - w) <= ABS):
            return f"float64 {g!r} vs mpmath {w!r} (relative {abs(g - w) / abs(w):.1e})"
    return None


def _check(key, count, seed):
    result = ff.get(key)
    pts = points(result, count, seed)
    failures = [(p, why) for p in pts if (why := _agree(result, p)) is not None]
    assert not failures, f"{key}: {len(failures)} of {len(pts)} points disagree; first: {failures[0]}"
    return len(pts)


@pytest.mark.parametrize("key", KEYS)
def test_float64_agrees_with_50_digits_over_the_domain(key):
    _check(key, DEFAULT_POINTS, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_float64_agrees_with_50_digits_over_the_domain_many_points(key):
    _check(key, 10 * DEFAULT_POINTS, seed=1)


def test_the_points_reach_the_extremes():
    """The sampler is what makes this test able to fail: it must reach 1e-300, 1e300 and
    depth 10^4 (a sampler confined to moderate values would pass anything)."""
    result = ff.get("ft.transferability_exact")
    pts = points(result, DEFAULT_POINTS, seed=0)
    gammas = [p["gamma"] for p in pts]
    assert min(gammas) <= 1e-299 and max(gammas) >= 1e299
    assert max(p["L"] for p in pts) == 10_000
    assert {0.0, math.pi} <= {p["theta"] for p in pts}


def test_a_last_iterate_would_fail_the_check():
    """A deliberately truncated root (the old behaviour: the last Newton iterate) is far
    from the 50-digit value at depth 300, so the comparison above detects it."""
    result = ff.get("ft.transferability_exact")
    point = {"gamma": 0.5, "theta": math.pi / 3, "sigma": 1.0, "L": 300.0}
    assert _agree(result, point) is None
    with mpmath.workdps(50):
        truth = result.mpmath(*[mpmath.mpf(point[n]) for n in result.param_names])
    assert abs(float(truth) - (-0.626234)) < 1e-6  # the documented value
