"""The NumPy compiler's rewrites and root finder (featfate_sym.compiled).

Independent expectations: the registry's own SymPy expression (the rewrite must be an
identity), the root of ``x^2 - 2`` and the count of Newton steps quadratic convergence
needs, the equation the root solves.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

import featfate_sym as ff
from featfate_sym import compiled
from featfate_sym.symbols import gamma, lam, sigma, theta


def test_shared_part_of_the_branches_is_pulled_out_of_the_piecewise():
    expr = ff.get("lt.transferability").expr
    split = compiled.separate_piecewise(expr)
    assert isinstance(expr, sp.Piecewise) and isinstance(split, sp.Add)
    (pw,) = [a for a in split.args if isinstance(a, sp.Piecewise)]
    common = split - pw
    # the branches keep only what the conditions test; the shared part (the transfer
    # risk) depends on theta and lam only
    assert set().union(*[v.free_symbols for v, _ in pw.args]) <= {gamma, sigma}
    assert common.free_symbols == {theta, lam}
    # an identity: every branch of the original equals branch + shared part
    for (value, cond), (part, cond2) in zip(expr.args, pw.args):
        assert cond == cond2
        assert value == part if value.has(sp.oo) else sp.simplify(value - part - common) == 0


def test_piecewise_without_a_shared_part_is_left_alone():
    x, y = sp.symbols("x y", real=True)
    pw = sp.Piecewise((x * y, x < 1), (y**2 + x, True))
    assert compiled.separate_piecewise(pw) == pw


def test_newton_stops_when_its_step_lands_on_a_bracket_end():
    # the fine-tuning scale c: from the upper end Newton descends monotonically onto the
    # root; once the step rounds to nothing the iterate is the bracket's upper end, which
    # must count as converged, not trigger bisection back towards the far lower end
    # (measured: up to 59 iterations instead of about 9)
    result = ff.get("ft.transferability_exact")
    (root,) = compiled._compile_roots_numpy(result)
    evaluations = []

    def f(*args):
        evaluations.append(1)
        return root.f(*args)

    counted = dataclasses.replace(root, f=f)
    gammas = np.linspace(0.01, 0.99, 99)
    params = [gammas, np.zeros(1), np.array([0.2]), np.array([3.0])]  # gamma, theta, sigma, L
    c = counted.solve(params)
    assert len(evaluations) <= 2 + 15  # bracket ends + quadratic convergence
    # and it is the root: c^6 - (1 - gamma) c^4 = gamma + gamma sigma^2 / (1 - gamma)
    rhs = gammas + gammas * 0.04 / (1 - gammas)
    # (the left side cancels to about eps c^6 for small gamma)
    np.testing.assert_allclose(c**6 - (1 - gammas) * c**4, rhs, rtol=0, atol=2e-15)


def test_result_does_not_alias_an_input_and_is_writable():
    r = ff.get("lt.transferability")
    g = np.linspace(0.1, 1.9, 5)
    out = r.numpy(g, 0.3, 0.2, 0.0)
    assert out.flags.writeable and not np.shares_memory(out, g)
    out[:] = 0.0  # a caller may overwrite it; the next call is unaffected
    assert np.all(r.numpy(g, 0.3, 0.2, 0.0) != 0.0)
    # constant along an argument: broadcast to the full shape, as a fresh array
    row = ff.get("lt.risk").numpy(np.zeros((3, 1)), np.zeros((1, 4)))
    assert row.shape == (3, 4) and row.flags.writeable
