"""The on-disk derivation cache (featfate_sym.derivation_cache).

Independent expectations: the builder run again (a cached entry must equal a fresh
derivation in every stored part: texts exactly, expressions as ``srepr`` or provably
equal), and Python's own refusal to run a string that is not parsed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sympy as sp

import featfate_sym as ff
from featfate_sym import derivation_cache as cache
from featfate_sym.registry import Derivation

KEYS = ff.keys()


def _parts(derivation: Derivation) -> dict:
    """Everything a Derivation stores, as exact strings."""
    return json.loads(json.dumps(cache.to_record(derivation)))


def _same(a, b) -> bool:
    """``a`` and ``b`` print alike (``srepr``), or are the same mathematical object in
    another form: SymPy's global cache can hand a builder an equal object of another form
    made by an earlier computation of the session (another test's), so one builder may
    print a step differently after other tests ran.  Expressions are then compared by
    ``simplify(a - b) == 0``, anything else argument by argument."""
    if a is None or b is None:
        return a is b
    if sp.srepr(a) == sp.srepr(b):
        return True
    if isinstance(a, sp.MatrixBase) and isinstance(b, sp.MatrixBase):
        return a.shape == b.shape and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, sp.Expr) and isinstance(b, sp.Expr):
        return sp.simplify(a - b) == 0
    if not (isinstance(a, sp.Basic) and isinstance(b, sp.Basic)):
        return False
    return a.func == b.func and len(a.args) == len(b.args) and all(_same(x, y) for x, y in zip(a.args, b.args))


@pytest.mark.parametrize("key", KEYS)
def test_the_cache_equals_a_fresh_derivation(key):
    """Re-derive (the builder itself, not the cache) and compare with the stored entry:
    a stale or lossy cache cannot pass.  The stored parts must print alike, except for
    expressions that are provably the same in another form (:func:`_same`)."""
    result = ff.get(key)
    result.derivation  # noqa: B018  (built or read, and stored)
    stored = cache.load(key)
    assert stored is not None, f"{key} was not stored in {cache.folder()}"
    fresh = result.builder()
    left, right = _parts(stored), _parts(fresh)
    for part in ("format", "implicit", "outputs"):
        assert left[part] == right[part], part
    assert [s.text for s in stored.steps] == [s.text for s in fresh.steps]
    assert set(stored.extras) == set(fresh.extras)
    assert _same(stored.expr, fresh.expr)
    for a, b in zip(stored.steps, fresh.steps):
        assert _same(a.expr, b.expr), a.text
    for name in fresh.extras:
        assert _same(stored.extras[name], fresh.extras[name]), name
    assert (stored.numeric is None) == (fresh.numeric is None)
    if fresh.numeric is not None:
        assert _same(stored.numeric.expr, fresh.numeric.expr)
        assert left["numeric"]["implicit"] == right["numeric"]["implicit"]


def test_the_address_changes_with_the_builders(monkeypatch, tmp_path):
    """Editing any builder's module (or another SymPy) addresses another folder."""
    before = cache.digest()
    edited = tmp_path / "fine_tuning.py"
    edited.write_text("# an edited builder\n")
    monkeypatch.setattr(cache, "_sources", lambda: [edited])
    cache.digest.cache_clear()
    try:
        assert cache.digest() != before
        edited.write_text("# edited again\n")
        cache.digest.cache_clear()
        second = cache.digest()
        assert second != before
        monkeypatch.setattr(cache.sp, "__version__", "0.0.0")
        cache.digest.cache_clear()
        assert cache.digest() != second
    finally:
        cache.digest.cache_clear()


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo planted')",
    "Symbol('x').__class__",
    "(lambda: Symbol('x'))()",
    "Integer(1) + Integer(2)",
    "open('/etc/passwd')",
    "Symbol(**{'name': 'x'})",
    "[x for x in ()]",
])
def test_stored_text_outside_the_whitelist_is_refused(text):
    with pytest.raises(cache.CacheFormatError):
        cache.parse_srepr(text)


def test_the_whitelist_reads_what_srepr_writes():
    x = sp.Symbol("x", positive=True)
    f = sp.Function("f")
    for expr in (sp.Piecewise((x, x < 1), (-sp.oo, True)), f(x).diff(x), sp.Matrix([[x, 1]]),
                 sp.hyper((1, 2), (3,), x), sp.Rational(-3, 7) * sp.pi * sp.exp(x)):
        assert cache.parse_srepr(sp.srepr(expr)) == expr


def test_a_planted_file_is_not_run_but_derived_again(tmp_path):
    """A cache entry holding code is ignored (derived afresh), and the code never runs."""
    marker = tmp_path / "ran"
    env = {**__import__("os").environ, "FEATFATE_CACHE": str(tmp_path / "cache")}
    script = (
        "import json, featfate_sym as ff; from featfate_sym import derivation_cache as c;"
        "c.folder().mkdir(parents=True);"
        f"bad = {{'format': c.FORMAT, 'expr': \"__import__('pathlib').Path({str(marker)!r}).touch()\","
        "'steps': [], 'extras': {}, 'implicit': [], 'outputs': [], 'numeric': None};"
        "(c.folder() / 'lt.risk.json').write_text(json.dumps(bad));"
        "built = []; c.announce = built.append;"
        "print(ff.get('lt.risk').expr, built)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "lam**2*cos(theta)**2/(lam + 1)**2 + sin(theta)**2 ['lt.risk']" in proc.stdout
    assert not marker.exists()


def test_fresh_derives_and_says_so(tmp_path):
    env = {**__import__("os").environ, "FEATFATE_CACHE": str(tmp_path)}
    run = [sys.executable, "-m", "featfate_sym.derive", "lt.ridge_slope"]
    first = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0 and "deriving lt.ridge_slope" in first.stderr
    warm = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert warm.returncode == 0 and warm.stderr == "" and warm.stdout == first.stdout
    fresh = subprocess.run(run + ["--fresh"], capture_output=True, text=True, env=env, timeout=300)
    assert "deriving lt.ridge_slope" in fresh.stderr and fresh.stdout == first.stdout


def test_the_whitelist_ignores_classes_made_at_run_time():
    """Function('f') makes a class per name at run time; the whitelist holds SymPy's own
    named classes only, whatever was made before it was first built."""
    sp.Function("made_at_run_time")(sp.Symbol("x"))
    cache._allowed.cache_clear()
    try:
        allowed = cache._allowed()
        assert "made_at_run_time" not in allowed and "Piecewise" in allowed and "expm1" in allowed
    finally:
        cache._allowed.cache_clear()
