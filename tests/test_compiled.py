"""The NumPy compiler's rewrites and root finder (featfate_sym.compiled).

Independent expectations: the registry's own SymPy expression (the rewrite must be an
identity), the root of ``x^2 - 2`` and the count of Newton steps quadratic convergence
needs, the equation the root solves.
"""

from __future__ import annotations

import dataclasses

import mpmath
import numpy as np
import pytest
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


def _fine_tuning_root():
    result = ff.get("ft.transferability_exact")
    _, implicit = compiled.evaluated_form(result)
    (root,) = compiled._compile_roots_numpy(list(result.symbols), implicit)
    return root


def test_newton_converges_quadratically_in_the_log_form():
    # the fine-tuning scale in ell = log(c^2 - a): Newton from the upper end, every step
    # at most half the one before, else bisection; on a smooth increasing equation it
    # needs few evaluations per batch, for any depth
    root = _fine_tuning_root()
    evaluations = []

    def f(*args):
        evaluations.append(1)
        return root.f(*args)

    counted = dataclasses.replace(root, f=f)
    gammas = np.linspace(0.01, 0.99, 99)
    for depth in (3.0, 10_000.0):
        evaluations.clear()
        params = [gammas, np.zeros(1), np.array([0.2]), np.array([depth])]  # gamma, theta, sigma, L
        ell = counted.solve(params)
        # bracket ends + iterations; at L = 10^4 the lower end is ~10^4 below the root, and
        # the halving rule bisects a few times before Newton takes over (measured: 36 at
        # L = 3, 60 at L = 10^4, over 99 values of gamma)
        assert len(evaluations) <= 2 + (45 if depth < 10 else 80), (depth, len(evaluations))
        # and it is the root: x^(L-1) (x - a) = b with x = c^2 = a + e^ell, in logarithms
        a_, b_ = 1 - gammas, gammas + gammas * 0.04 / (1 - gammas)
        lhs = (depth - 1) * np.log(a_ + np.exp(ell)) + ell
        np.testing.assert_allclose(lhs, np.log(b_), rtol=0, atol=1e-12 * depth)


def test_the_log_form_equals_the_legible_form():
    """The compiled form (in ell_c) and the derivation's form (in c) agree at 50 digits
    where the legible one is still computable (moderate depth)."""
    result = ff.get("ft.transferability_exact")
    (root_c,) = result.derivation.implicit
    for point in ({"gamma": 0.3, "theta": 1.0, "sigma": 0.7, "L": 4}, {"gamma": 0.9, "theta": 2.0, "sigma": 2, "L": 7}):
        subs = {sym: sp.nsimplify(point[name]) for sym, name in zip(result.symbols, result.param_names)}
        with mpmath.workdps(60):  # the root in c, by the same safeguarded Newton, in c
            f = sp.lambdify(root_c.symbol, root_c.equation.subs(subs), "mpmath")
            df = sp.lambdify(root_c.symbol, sp.diff(root_c.equation, root_c.symbol).subs(subs), "mpmath")
            lo, hi = (mpmath.mpf(str(sp.N(e.subs(subs), 70))) for e in root_c.bracket)
            c_value = compiled._newton_bracketed_mp(f, df, lo, hi, pytest.fail)
            legible = sp.N(result.expr.subs(subs).subs(root_c.symbol, sp.Float(str(c_value), 60)), 50)
        stable = result.evaluate_mp(50, **{k: str(v) for k, v in point.items()})
        assert abs(float(legible) - float(stable)) < 1e-40


def test_a_root_without_a_sign_change_or_convergence_is_nan_never_an_iterate():
    f = lambda x: x**2 - 2.0  # noqa: E731
    df = lambda x: 2 * x  # noqa: E731
    lo, hi = np.array([0.0, 2.0, 0.0]), np.array([2.0, 3.0, 2.0])  # the middle has no root
    x = compiled._newton_bracketed(lambda *a: f(a[-1]), lambda *a: df(a[-1]), [], lo.copy(), hi.copy())
    assert np.isnan(x[1]) and np.allclose(x[[0, 2]], np.sqrt(2), rtol=1e-15)
    # too few iterations: not converged, NaN (the old solver returned its last iterate)
    x = compiled._newton_bracketed(lambda *a: f(a[-1]), lambda *a: df(a[-1]) * 1e-9, [], lo.copy(), hi.copy(),
                                   iterations=3)
    assert np.all(np.isnan(x))


def test_the_mpmath_root_raises_rather_than_returning_an_iterate():
    with mpmath.workdps(30), pytest.raises(compiled.EvaluationError, match="did not converge"):
        compiled._newton_bracketed_mp(lambda v: v**2 - 2, lambda v: 2 * v * 1e-9, mpmath.mpf(0), mpmath.mpf(2),
                                      lambda why: (_ for _ in ()).throw(compiled.EvaluationError(why)),
                                      iterations=3)


def test_deep_networks_and_huge_arguments_keep_their_values():
    exact = ff.get("ft.transferability_exact")
    # the values at 50 digits (mpmath); float64 once returned -1.69e32 at L = 300 and nan
    # from L = 1000
    for depth in (300, 1000, 10_000):
        want = float(exact.evaluate_mp(50, gamma="0.5", theta=str(np.pi / 3), sigma="1", L=depth))
        assert abs(exact.evaluate(gamma=0.5, theta=np.pi / 3, sigma=1.0, L=depth) - want) <= 1e-12
    assert -0.6338 < want < -0.6337
    # lam = 1e300: lam^2 overflows float64; the value is the lam -> oo limit
    t_lt = ff.get("lt.transferability").evaluate(gamma=0.5, theta=np.pi / 4, sigma=0.2, lam=1e300)
    assert abs(t_lt - (0.5 + 0.04 - 1.0)) < 1e-12  # R_sc - R_lt = (1 - 0.5 + 0.04) - 1
    assert ff.get("scratch.risk_ridge").evaluate(gamma=0.5, sigma=0.2, lam=1e200) == pytest.approx(1.0, abs=1e-12)


def test_documented_infinities_stand_and_undocumented_nans_raise():
    assert ff.get("scratch.risk").evaluate(gamma=1.0, sigma=0.2) == np.inf
    # lt.boundary states NaN where the boundary does not exist: it stands
    assert np.isnan(ff.get("lt.boundary").evaluate(theta=0.1, sigma=2.0, lam=0.0)).any()


def test_the_array_path_validates_every_argument():
    t = ff.get("lt.transferability")
    for args, name in [((np.array([0.5, -1, 0, np.inf]), 0.785, 0.2, 0), "gamma"),
                       ((0.5, 4.0, 0.2, 0.0), "theta"), ((0.5, 0.7, 0.2, -1.0), "lam")]:
        with pytest.raises(ValueError, match=f"parameter {name} must be"):
            t.numpy(*args)
    with pytest.raises(ValueError, match=r"parameter gamma must be \(0, inf\) \(got -1\)"):
        t.numpy(np.array([0.5, -1, 0]), 0.785, 0.2, 0)
    with pytest.raises(ValueError, match="parameter L must be integer"):
        ff.get("ft.transferability_exact").numpy(0.5, 0.3, 0.2, 2.5)
    with pytest.raises(ValueError, match="parameter gamma"):
        ff.get("ft.transferability_exact").mpmath(-0.5, 0.3, 0.2, 2)
    # the documented opt-out for validated inner loops
    assert np.isfinite(t.numpy.unchecked(0.5, 0.785, 0.2, 0.0))


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
