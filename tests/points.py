"""Parameter points for generic tests: a typical interior point of each result's
domain, and points spread over decades and clustered near the interesting values."""

import numpy as np

# typical values by parameter name, chosen inside every registered domain
# (n < d - 1 so finite-size formulas are on their first branch; u0 < uf < s)
TYPICAL = {
    "gamma": 0.6, "theta": 0.7, "sigma": 0.3, "lam": 0.2, "L": 3, "n": 40, "d": 60,
    "k": 2, "gamma_s": 0.5, "sigma_s": 0.2, "s": 1.3, "u0": 0.01, "uf": 1.0, "u": 0.5,
    "tau": 1.0, "t": 0.5, "mu": 0.1, "eta": 0.05, "psi": 1.5, "B": 10,
}


def interior_point(result) -> dict:
    point = {}
    for p in result.params:
        if p.name in TYPICAL:
            v = TYPICAL[p.name]
        else:
            lo = 0.0 if p.lower is None else float(p.lower)
            hi = lo + 2.0 if p.upper is None else float(p.upper)
            v = lo + 0.37 * (hi - lo)
            v = round(v) if p.integer else v
        point[p.name] = v
    return point


def spread_points(result, rng: np.random.Generator, count: int) -> list[dict]:
    """Points over decades for unbounded parameters, uniform on bounded ones, with gamma
    clustered at 1 +- 10^-k (the double-descent singularity)."""
    base = interior_point(result)
    points = []
    for i in range(count):
        pt = dict(base)
        for p in result.params:
            if p.integer:
                continue  # integer sizes keep their typical, mutually consistent values
            lo = 0.0 if p.lower is None else float(p.lower)
            if p.upper is None:
                v = lo + 10.0 ** rng.uniform(-4, 2)
            else:
                v = rng.uniform(lo, float(p.upper))
            if p.name in ("gamma", "gamma_s") and i % 3 == 0:
                v = 1.0 + rng.choice([-1, 1]) * 10.0 ** rng.uniform(-8, -1)
            pt[p.name] = v
        points.append(pt)
    return points
