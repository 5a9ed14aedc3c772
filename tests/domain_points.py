"""Points spread over the whole documented domain of a registered result.

Each parameter contributes its extremes (the bounds, ``1e-300`` above an open zero,
``1e300`` for an unbounded side, depth ``10^4``) and log-uniform draws across its range,
so every result is evaluated where float64 is most fragile: at huge and tiny arguments,
next to its singular points, and at the ends of angle ranges.
"""

from __future__ import annotations

import math

import numpy as np

#: the largest depth the roots must handle (issue: L up to at least 10^4)
MAX_DEPTH = 10_000
#: integers other than depths: up to 2^53 they are exact in float64
MAX_COUNT = 2.0**53
#: magnitude of the unbounded extremes
BIG, TINY = 1e300, 1e-300


def _is_depth(param) -> bool:
    return param.name == "L"


def extremes(param) -> list[float]:
    """The edge values of ``param``'s domain (within the domain)."""
    lo = None if param.lower is None else float(param.lower)
    hi = None if param.upper is None else float(param.upper)
    if param.integer:
        top = MAX_DEPTH if _is_depth(param) else MAX_COUNT
        first = math.floor(lo) + 1 if param.lower_open else math.ceil(lo)
        return sorted({float(first), float(first + 1), 10.0, float(top)})
    out = []
    if lo is None:
        out += [-BIG, -1.0]
    elif param.lower_open:
        out += [lo + TINY if lo == 0 else math.nextafter(lo, math.inf)]
    else:
        out += [lo]
    if hi is None:
        out += [BIG, 1.0]
    elif param.upper_open:
        out += [math.nextafter(hi, -math.inf)]
    else:
        out += [hi]
    if lo == 0:
        out += [TINY, 1e-8]
    if lo is not None and hi is None:
        out += [lo + 1e-10, lo + 1, 1e8]
    return sorted(set(out))


def draw(param, rng: np.random.Generator) -> float:
    """One value of ``param``, log-uniform where its range spans orders of magnitude."""
    lo = None if param.lower is None else float(param.lower)
    hi = None if param.upper is None else float(param.upper)
    if param.integer:
        top = MAX_DEPTH if _is_depth(param) else 1e6
        first = math.floor(lo) + 1 if param.lower_open else math.ceil(lo)
        return float(round(math.exp(rng.uniform(math.log(first), math.log(top)))))
    if lo is not None and hi is not None:
        if rng.random() < 0.2:  # close to an end
            edge = lo if rng.random() < 0.5 else hi
            return float(np.clip(edge + (1 if edge == lo else -1) * 10 ** rng.uniform(-12, -1), lo, hi))
        return float(rng.uniform(lo, hi))
    base = 0.0 if lo is None else lo
    value = base + 10 ** rng.uniform(-300, 300) if rng.random() < 0.5 else base + 10 ** rng.uniform(-3, 3)
    return float(value if lo is not None else (value if rng.random() < 0.5 else -value))


def points(result, count: int, seed: int) -> list[dict[str, float]]:
    """``count`` random points plus every combination of one extreme with draws elsewhere."""
    rng = np.random.default_rng(seed)
    out = []
    for param in result.params:
        for value in extremes(param):
            point = {p.name: draw(p, rng) for p in result.params}
            point[param.name] = value
            out.append(point)
    for _ in range(count):
        out.append({p.name: draw(p, rng) for p in result.params})
    return out
