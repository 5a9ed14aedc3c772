"""On-disk cache of derivations: a derived result is built once, then read back.

Deriving every result takes SymPy about fifteen seconds; reading them back takes well
under one.  Each :class:`~featfate_sym.registry.Derivation` is stored as JSON whose
SymPy objects are ``sympy.srepr`` strings (exact and re-parseable, unlike pickles, which
would also run code when read).

Addressing.  The cache folder is named by a digest of the source of every module a
builder can run (``featfate_sym/theory/``, ``registry.py``, ``symbols.py``) and of the
SymPy version, so an edit of any derivation, or another SymPy, reads nothing stale: it
derives afresh into a new folder.  ``FEATFATE_CACHE`` names the root folder (default
``$XDG_CACHE_HOME/featfate_sym``, else ``~/.cache/featfate_sym``); ``FEATFATE_CACHE=off``
turns the cache off.  Writes are atomic; a root that cannot be written only costs speed.

Reading back never evaluates the file's text: :func:`parse_srepr` walks its syntax tree
and accepts only literals and calls of SymPy's own classes (a whitelist), so a planted
cache file cannot run code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import sympy as sp

#: bump when the stored layout changes
FORMAT = 2
_PACKAGE = Path(__file__).resolve().parent


def _sources() -> list[Path]:
    return sorted((_PACKAGE / "theory").glob("*.py")) + [_PACKAGE / "registry.py", _PACKAGE / "symbols.py"]


@functools.lru_cache(maxsize=1)
def digest() -> str:
    """Digest of the builders' source and the SymPy version (the cache's address)."""
    h = hashlib.sha256(f"format {FORMAT}; sympy {sp.__version__}\n".encode())
    for path in _sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def root() -> Path | None:
    """The cache's root folder, or None when ``FEATFATE_CACHE=off``."""
    setting = os.environ.get("FEATFATE_CACHE", "")
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "featfate_sym"


def folder() -> Path | None:
    base = root()
    return None if base is None else base / digest()


# -- memoised derivation helpers ---------------------------------------------------------
def _copied(value):
    """``value`` with its containers copied (lists, dicts, tuples, mutable matrices), so
    a caller that extends a returned list of steps does not change the memoised one."""
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, sp.MatrixBase) and not isinstance(value, sp.ImmutableMatrix):
        return value.copy()
    return value


def memo(function):
    """Memoise a pure derivation helper within this process.

    A helper several builders call (a lemma, a limit, a shared decomposition) is derived
    once; later calls with equal arguments (compared with their types, so ``1`` and
    ``Integer(1)`` are distinct) get the first call's result, containers copied.  The
    result is the one object the first call built, so every expression keeps its exact
    form.  Unhashable arguments (mutable matrices) call through."""
    table: dict = {}

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            key = (tuple((type(a), a) for a in args), tuple(sorted((k, type(v), v) for k, v in kwargs.items())))
            hash(key)
        except TypeError:
            return function(*args, **kwargs)
        if key not in table:
            table[key] = function(*args, **kwargs)
        return _copied(table[key])

    wrapper.cache_clear = table.clear
    return wrapper


# -- srepr, read back through a whitelist ------------------------------------------------
@functools.lru_cache(maxsize=1)
def _allowed() -> dict[str, object]:
    """Names a stored expression may call or mention: SymPy classes (expressions,
    relations, booleans, matrices) and the singleton constants."""
    from sympy.codegen import cfunctions  # noqa: F401  (expm1, log1p: registers them)

    names: dict[str, object] = {}
    stack = [sp.Basic, sp.MatrixBase]
    while stack:  # every SymPy class loaded, by its name (srepr prints the class name)
        cls = stack.pop()
        module = sys.modules.get(getattr(cls, "__module__", None) or "")
        # only SymPy's own named classes: not those made at run time (Function('f')
        # makes a class per name), which have no module or are not found in it
        if (module is not None and module.__name__.startswith("sympy.") and not cls.__name__.startswith("_")
                and getattr(module, cls.__name__, None) is cls):
            names.setdefault(cls.__name__, cls)
        stack.extend(cls.__subclasses__())
    for name in ("pi", "E", "I", "oo", "zoo", "nan", "true", "false", "EulerGamma", "Catalan"):
        names[name] = getattr(sp, name)
    return names


class CacheFormatError(ValueError):
    """A stored expression outside the whitelist grammar (the file is not used)."""


def parse_srepr(text: str):
    """The SymPy object ``sympy.srepr`` printed as ``text``; only literals (numbers,
    strings, booleans, lists, tuples) and calls of whitelisted SymPy classes, with
    literal keyword arguments, are accepted."""
    allowed = _allowed()

    def build(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):  # -1, -oo
            return -build(node.operand)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [build(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Name):
            if node.id in allowed:
                return allowed[node.id]
            raise CacheFormatError(f"name {node.id!r} is not a SymPy class")
        if isinstance(node, ast.Call):
            func = build(node.func)
            if not (callable(func) and (func in allowed.values() or isinstance(func, sp.core.function.UndefinedFunction))):
                raise CacheFormatError("call of something that is not a SymPy class")
            kwargs = {}
            for kw in node.keywords:
                if kw.arg is None:
                    raise CacheFormatError("** arguments are not allowed")
                kwargs[kw.arg] = build(kw.value)
            return func(*[build(a) for a in node.args], **kwargs)
        raise CacheFormatError(f"{type(node).__name__} is not allowed in a stored expression")

    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CacheFormatError(f"not an expression: {exc.msg}") from None
    return build(tree.body)


# -- Derivation <-> JSON -----------------------------------------------------------------
def _out(obj):
    return None if obj is None else sp.srepr(obj)


def _in(text):
    return None if text is None else parse_srepr(text)


def _root_record(root) -> dict:
    return {"symbol": _out(root.symbol), "equation": _out(root.equation),
            "bracket": [_out(e) for e in root.bracket], "description": root.description,
            "where": _out(root.where)}


def _root_from(record):
    from featfate_sym.registry import ImplicitRoot

    return ImplicitRoot(_in(record["symbol"]), _in(record["equation"]),
                        tuple(_in(e) for e in record["bracket"]), record["description"],
                        where=_in(record["where"]))


def printed_texts(derivation) -> dict:
    """What printing a result shows of its derivation: the LaTeX of the expression, of
    each implicit root (``(equation = 0, symbol: description)``) and the output names.
    Stored with the record, so that printing a cached result parses no expression."""
    from featfate_sym.symbols import latex

    return {
        "latex": latex(derivation.expr),
        "implicit": [[f"{latex(r.equation)} = 0", f"{latex(r.symbol)}: {r.description}".strip()]
                     for r in derivation.implicit],
        "outputs": list(derivation.outputs),
    }


def printed(key: str) -> dict | None:
    """The stored :func:`printed_texts` of ``key``, or None (not cached, unreadable)."""
    path = _path(key)
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            return None
        texts = record["printed"]
        return {"latex": str(texts["latex"]), "implicit": [(str(a), str(b)) for a, b in texts["implicit"]],
                "outputs": [str(o) for o in texts["outputs"]]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def to_record(derivation) -> dict:
    numeric = derivation.numeric
    return {
        "format": FORMAT,
        "printed": printed_texts(derivation),
        "expr": _out(derivation.expr),
        "steps": [[step.text, _out(step.expr)] for step in derivation.steps],
        "extras": {name: _out(value) for name, value in derivation.extras.items()},
        "implicit": [_root_record(r) for r in derivation.implicit],
        "outputs": list(derivation.outputs),
        "numeric": None if numeric is None else {
            "expr": _out(numeric.expr), "implicit": [_root_record(r) for r in numeric.implicit],
            "description": numeric.description},
    }


class _LazySteps(Sequence):
    """The steps, each parsed when first read (printing a result needs none of them)."""

    def __init__(self, pairs):
        self._pairs, self._done = list(pairs), {}

    def __len__(self):
        return len(self._pairs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if index not in self._done:
            from featfate_sym.registry import Step

            text, expr = self._pairs[index]
            self._done[index] = Step(text, _in(expr))
        return self._done[index]


class _LazyExtras(Mapping):
    """The by-products, each parsed when first read."""

    def __init__(self, texts):
        self._texts, self._done = dict(texts), {}

    def __len__(self):
        return len(self._texts)

    def __iter__(self):
        return iter(self._texts)

    def __getitem__(self, name):
        if name not in self._done:
            self._done[name] = _in(self._texts[name])
        return self._done[name]


def from_record(record: dict):
    from featfate_sym.registry import Derivation, NumericForm

    if record.get("format") != FORMAT:
        raise CacheFormatError("another cache format")
    numeric = record["numeric"]
    return Derivation(
        _in(record["expr"]),
        steps=_LazySteps(record["steps"]),
        extras=_LazyExtras(record["extras"]),
        implicit=tuple(_root_from(r) for r in record["implicit"]),
        outputs=tuple(record["outputs"]),
        numeric=None if numeric is None else NumericForm(
            _in(numeric["expr"]), tuple(_root_from(r) for r in numeric["implicit"]), numeric["description"]),
    )


# -- load or build -----------------------------------------------------------------------
#: called as ``announce(key)`` before a result is derived afresh (the CLI prints it)
announce = None


def _path(key: str) -> Path | None:
    base = folder()
    return None if base is None else base / f"{key}.json"


def load(key: str):
    """The cached derivation of ``key``, or None (absent, unreadable, or outside the
    whitelist: then it is derived again)."""
    path = _path(key)
    if path is None or not path.is_file():
        return None
    try:
        return from_record(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(key: str, derivation) -> None:
    """Write ``derivation`` atomically; a folder that cannot be written is skipped."""
    path = _path(key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(to_record(derivation)).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def derive(key: str, builder, *, fresh: bool = False):
    """``builder()`` for ``key``, read from the cache unless ``fresh``; a fresh build is
    stored.  (A key that :func:`fill` derived afresh in this run is read back even when
    ``fresh``: it is fresh.)"""
    if not fresh or key in _filled:
        cached = load(key)
        if cached is not None:
            return cached
    if announce is not None:
        announce(key)
    out = builder()
    store(key, out)
    return out


# -- filling the cache in parallel -----------------------------------------------------
#: keys derived afresh into the cache by :func:`fill`'s worker processes in this run
_filled: set[str] = set()

#: CPU seconds a cold derivation of a key takes by itself (measured in the workers of a
#: cold fill, its dependencies and the memoised parts it shares with its group counted
#: once), so the costliest groups are started first and the cheap ones fill the gaps at
#: the end (longest first); keys not listed count 0.3
COST_HINT = {
    "clf.ft.error": 2.9, "dln.time_to_learn": 2.1, "ft.transferability_finite_source_exact": 2.0,
    "dln.max_stable_step": 1.6, "clf.scratch.error_max_margin": 1.6, "clf.ft.error_exact": 1.3,
    "ft.transferability_exact": 1.3, "clf.separability_threshold": 1.2, "dln.conservation": 1.2,
    "scratch.risk_time": 1.2, "dln.balanced_flow": 1.2, "ft.transferability_two_level_exact": 1.1,
    "ft.risk_time": 1.0, "scratch.risk_mp": 0.8, "clf.scratch.error": 0.8, "clf.lt.transferability": 0.7,
    "lt.transferability": 0.7, "ft.transferability_gd": 0.7, "scratch.risk_ridge": 0.7, "clf.scratch.error_flip": 0.7,
    "ft.transferability_finite_source": 0.7, "ft.risk_two_level_exact": 0.65, "metrics.w2": 0.6,
    "relu.arccos_kernel": 0.6, "lt.risk_finite": 0.6, "scratch.risk_sgd_stationary": 0.5, "dln.mode_dynamics": 0.5,
    "metrics.bl_lower": 0.5, "ft.transferability_sgd": 0.5, "ft.transferability": 0.5, "lt.risk_time": 0.45,
    "clf.lt.boundary": 0.4, "scratch.risk_optimal_ridge": 0.4, "lt.boundary": 0.4, "ft.risk_two_level": 0.4,
    "scratch.kappa_two_level": 0.35, "lt.k.optimal": 0.35, "clf.lt.error": 0.3, "metrics.kl": 0.3,
    "scratch.risk_finite": 0.3,
}

#: keys that share work: memoised sub-derivations (:func:`memo`, per process) or another
#: key's result, which the first of them derives.  One worker derives a group in this
#: order, so the shared part is derived once (split over two workers it would be derived
#: twice, or the second would wait); keys not listed are groups of their own
AFFINITY = (
    # the balanced vector field, the mode ODE, and fine-tuning's invariant built on it
    ("dln.balanced_flow", "ft.transferability_exact", "ft.transferability_finite_source_exact",
     "dln.mode_dynamics", "dln.time_to_learn"),
    # the Marchenko-Pastur ridge risk and its ridgeless limits
    ("scratch.risk_mp", "scratch.risk_ridge", "scratch.risk_optimal_ridge"),
    # the finite-size scratch risk, its limit, and the transfer results that use them
    ("scratch.risk_finite", "scratch.risk", "lt.risk", "lt.risk_finite", "lt.transferability",
     "lt.ridge_slope", "lt.boundary", "ft.transferability", "ft.transferability_first_layer"),
    # classification: the scratch error feeds every transfer result of the family
    # (its exact fine-tuning error reads dln.balanced_flow: last, when that is stored)
    ("clf.scratch.error", "clf.lt.error", "clf.lt.error_finite", "clf.lt.transferability", "clf.lt.boundary",
     "clf.ft.error", "clf.ft.transferability", "clf.ft.error_exact", "clf.ft.transferability_exact"),
    # several source tasks: the finite-size risk, its limit, what is built on them
    ("lt.k.risk_finite", "lt.k.risk", "lt.k.transferability_finite", "lt.k.transferability", "lt.k.optimal",
     "lt.k.captured"),
    # the two-level spectrum: kappa, the scratch risk, and the transfer risks on it
    ("scratch.kappa_two_level", "scratch.risk_two_level", "lt.risk_two_level", "lt.transferability_two_level",
     "ft.risk_two_level", "ft.transferability_two_level"),
    # relu's angle symbol equals symbols.phi (the same facts, spelled otherwise): through
    # SymPy's cache the first one built is the one stored, so bl_lower follows the kernel
    # in one worker (its stored form does not depend on the schedule)
    ("relu.arccos_kernel", "metrics.bl_lower"),
)


def _groups(todo: Sequence[str]) -> list[list[str]]:
    """``todo`` split into the :data:`AFFINITY` groups (in their order) and single keys,
    the most costly group first."""
    left = set(todo)
    groups = []
    for members in AFFINITY:
        group = [k for k in members if k in left]
        left.difference_update(group)
        if group:
            groups.append(group)
    groups += [[k] for k in todo if k in left]
    groups.sort(key=lambda g: -sum(COST_HINT.get(k, 0.3) for k in g))
    return groups


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fill(keys: Sequence[str], jobs: int | None = None) -> list[str]:
    """Derive the uncached ``keys`` into the cache in ``jobs`` forked worker processes
    (default: one per CPU, at most 4) while this process waits; return the keys found
    in the cache afterwards.  This process then reads them back (milliseconds each).

    The workers take the keys in groups that share work (:data:`AFFINITY`), the most
    costly group first (:data:`COST_HINT`), from one shared counter; a dependency a
    worker needs is read from the cache if another worker has stored it, else derived
    there too.  Anything a worker fails at (or that is left
    uncached) is simply derived here as usual, so errors surface in this process.
    Does nothing without a writable cache, on one CPU, for fewer than two groups, or where
    processes cannot be forked."""
    import multiprocessing

    from featfate_sym import registry

    base = folder()
    fresh = registry._FRESH
    if base is None:
        return []
    todo = [k for k in keys if (fresh and k not in _filled) or not (base / f"{k}.json").is_file()]
    groups = _groups(todo)
    jobs = min(_cpus(), 4) if jobs is None else jobs
    jobs = min(jobs, len(groups))
    if jobs < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return []
    try:
        base.mkdir(parents=True, exist_ok=True)
        if fresh:  # --fresh: what is stored now is not read; the workers store anew
            for key in todo:
                (base / f"{key}.json").unlink(missing_ok=True)
    except OSError:
        return []
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0)

    def work() -> None:
        # in a worker every key is read from the cache if some worker has stored it (in
        # a --fresh run the old entries are gone), else derived and stored
        registry.derive_fresh(False)
        while True:
            with counter.get_lock():
                index = counter.value
                counter.value += 1
            if index >= len(groups):
                break
            for key in groups[index]:
                try:
                    registry.get(key).derivation
                except Exception:  # noqa: BLE001 -- derived again (and reported) by the parent
                    pass
        sys.stderr.flush()
        os._exit(0)

    workers = [context.Process(target=work, daemon=True) for _ in range(jobs)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done = [key for key in todo if (base / f"{key}.json").is_file()]
    _filled.update(done)
    return done
