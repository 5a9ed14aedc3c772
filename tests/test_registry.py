"""Registry hygiene: every entry is complete, its expression uses exactly its parameters,
it compiles, its LaTeX renders, and its special cases hold."""

import re

import matplotlib
import mpmath
import numpy as np
import pytest
import sympy as sp

import featfate_sym as ff
from featfate_sym.registry import FAMILIES, Status
from points import interior_point

REQUIRED = {
    "dln.conservation": (),
    "dln.balanced_flow": (),
    "dln.mode_dynamics": (),
    "scratch.risk_finite": ("n", "d", "sigma"),
    "scratch.risk": ("gamma", "sigma"),
    "lt.risk_finite": ("n", "theta", "sigma"),
    "lt.risk": ("theta", "lam"),
    "lt.ridge_slope": ("theta", "lam"),
    "lt.transferability": ("gamma", "theta", "sigma", "lam"),
    "lt.boundary": (),
    "ft.transferability": ("gamma", "theta"),
    "ft.transferability_exact": ("gamma", "theta", "sigma", "L"),
    "ft.transferability_finite_source": ("gamma", "theta", "gamma_s", "sigma_s"),
    "lt.risk_finite_source": ("theta", "gamma_s", "sigma_s"),
    "metrics.kl": ("theta", "sigma"),
    "scratch.risk_ridge": ("gamma", "sigma", "lam"),
    "scratch.risk_optimal_ridge": ("gamma", "sigma"),
    "dln.time_to_learn": ("s", "u0", "uf", "tau", "L"),
    "relu.arccos_kernel": ("r1", "r2", "rho"),
    "relu.linear_cross": ("r1", "r2", "rho"),
    "relu.second_moment": ("r1",),
}

ALL = ff.keys()


def test_required_keys_present_with_their_parameters():
    missing = sorted(set(REQUIRED) - set(ALL))
    assert not missing, f"missing results: {missing}"
    for key, names in REQUIRED.items():
        if names:
            assert ff.get(key).param_names == names, key


@pytest.mark.parametrize("key", ALL)
def test_entry_is_complete(key):
    r = ff.get(key)
    assert re.fullmatch(r"[a-z]+(\.[a-z0-9_]+)+", key)
    assert r.title and r.regime and r.reference
    assert r.family in FAMILIES
    assert isinstance(r.status, Status)
    assert len(set(r.param_names)) == len(r.param_names)
    assert r.steps, "a derived result records its derivation steps"


@pytest.mark.parametrize("key", ALL)
def test_free_symbols_are_the_parameters(key):
    r = ff.get(key)
    if not r.evaluable:
        return
    roots = {root.symbol for root in r.derivation.implicit}
    free = set(r.expr.free_symbols) - roots
    for root in r.derivation.implicit:
        free |= set(root.equation.free_symbols) - roots
    inert = {p.symbol for p in r.params if p.name in r.inert}
    assert not free & inert, f"{key}: an inert parameter occurs in the result"
    assert free | inert == set(r.symbols), f"{key}: free {free} vs params {set(r.symbols)}"


def _render_mathtext(tex: str) -> None:
    from matplotlib.mathtext import MathTextParser

    MathTextParser("path").parse(f"${tex}$")


@pytest.mark.parametrize("key", ALL)
def test_latex_renders(key):
    tex = ff.get(key).latex()
    assert tex.count("{") == tex.count("}")
    assert tex.count(r"\left") == tex.count(r"\right")
    if r"\begin" not in tex and "cases" not in tex:
        # matplotlib's mathtext is a strict subset of LaTeX: what it parses, LaTeX parses
        _render_mathtext(tex)
    assert matplotlib  # imported for the renderer


@pytest.mark.parametrize("key", ALL)
def test_compiles_and_evaluates_inside_domain(key):
    r = ff.get(key)
    if not r.evaluable:
        with pytest.raises(ValueError, match="identity"):
            r.evaluate()
        return
    point = interior_point(r)
    value = np.asarray(r.evaluate(**point), dtype=float)
    assert np.all(np.isfinite(value) | np.isnan(value) & bool(r.outputs)), (key, point, value)
    with mpmath.workdps(30):
        mp_value = r.evaluate_mp(30, **point)
    assert "numpy" in repr(r.numpy) and key in repr(r.numpy)
    flat = np.ravel(value)
    mp_flat = mp_value if isinstance(mp_value, tuple) else (mp_value,)
    for v, w in zip(flat, mp_flat):
        if np.isnan(v):
            assert mpmath.isnan(w)
        else:
            assert abs(v - float(w)) <= 1e-10 * (1 + abs(v))


@pytest.mark.parametrize("key", ALL)
def test_bad_parameters_are_named(key):
    r = ff.get(key)
    if not r.evaluable or not r.params:
        return
    point = interior_point(r)
    first = r.params[0]
    with pytest.raises(ValueError, match=f"missing parameter {first.name}"):
        r.evaluate(**{k: v for k, v in point.items() if k != first.name})
    with pytest.raises(ValueError, match="unknown parameter"):
        r.evaluate(**point, not_a_parameter=1.0)
    for p in r.params:
        if p.lower is not None:
            bad = float(p.lower) - 1.0
            with pytest.raises(ValueError, match=rf"parameter {p.name} must be"):
                r.evaluate(**{**point, p.name: bad})


SPECIAL = [(r.key, i) for r in ff.results() for i in range(len(r.special_cases))]


@pytest.mark.parametrize("key,index", SPECIAL)
def test_special_case(key, index):
    r = ff.get(key)
    case = r.special_cases[index]
    got = r.expr.subs(case.subs)
    expected = case.expected
    if isinstance(expected, str):
        expected = ff.get(expected).expr.subs(case.subs)
    if case.limit is not None:
        sym, point, direction = case.limit
        got = sp.limit(got, sym, point, direction)
        if isinstance(case.expected, str):
            expected = sp.limit(expected, sym, point, direction)
    if sp.sympify(expected).is_infinite:
        assert got == expected, (key, case.description, got)
        return
    diff = sp.simplify(sp.piecewise_fold(got - expected))
    if diff != 0:
        # simplify cannot always close a Piecewise: decide at exact rational points
        free = sorted(diff.free_symbols, key=str)
        rng = np.random.default_rng(0)
        for _ in range(5):
            vals = {s: sp.Rational(int(rng.integers(1, 97)), 101) for s in free}
            assert sp.nsimplify(sp.N(diff.subs(vals), 40), tolerance=1e-30) == 0, (
                key,
                case.description,
                diff,
            )
