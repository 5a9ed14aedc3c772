"""Float64 evaluators against 50-digit mpmath, for every evaluable result.

Points are spread over decades and clustered near ``gamma = 1`` (see ``points.py``).
Both evaluators receive the *same* binary64 inputs (``mpmath.mpf(float)`` is exact), so
any disagreement is rounding or cancellation inside the float64 evaluator.  The
tolerance, ``1e-9 (1 + |value|)``, allows the loss of about 7 of 16 digits — more than a
well-conditioned formula loses and far less than a cancellation bug does.
"""

import mpmath
import numpy as np
import pytest

import featfate_sym as ff
from points import spread_points

KEYS = [r.key for r in ff.results() if r.evaluable]


@pytest.mark.parametrize("key", KEYS)
def test_numpy_matches_mpmath_50_digits(key, seed):
    r = ff.get(key)
    rng = np.random.default_rng([seed, len(key)])
    for point in spread_points(r, rng, 40):
        args = [point[name] for name in r.param_names]
        got = np.ravel(np.asarray(r.numpy(*args), dtype=float))
        with mpmath.workdps(50):
            ref = r.mpmath(*[mpmath.mpf(a) for a in args])
        refs = ref if isinstance(ref, tuple) else (ref,)
        for g, w in zip(got, refs):
            if mpmath.isnan(w) or np.isnan(g):
                assert mpmath.isnan(w) and np.isnan(g), (key, point, g, w)
            elif mpmath.isinf(w) or np.isinf(g):
                assert g == float(w), (key, point, g, w)
            else:
                assert abs(g - float(w)) <= 1e-9 * (1 + abs(float(w))), (key, point, g, w)


@pytest.mark.parametrize("key", KEYS)
def test_vectorised_equals_pointwise(key, seed):
    """Broadcasting over arrays gives the same numbers as one point at a time."""
    r = ff.get(key)
    points = spread_points(r, np.random.default_rng(seed), 12)
    arrays = [np.array([p[name] for p in points]) for name in r.param_names]
    together = np.asarray(r.numpy(*arrays), dtype=float)
    for i, p in enumerate(points):
        alone = np.asarray(r.numpy(*[p[name] for name in r.param_names]), dtype=float)
        np.testing.assert_array_equal(together[..., i], alone)
