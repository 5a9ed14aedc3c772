"""Registered results evaluated on plotting grids.

Figures draw theory only through the registry (``featfate_sym.get(key)``): nothing
here re-types a formula.  Values are validated against each parameter's domain (bad
input raises ``ValueError`` naming the parameter) and broadcast to one common shape
before the compiled NumPy function is called, because a compiled ``Piecewise`` selects
branches elementwise and needs its conditions to share one shape.
"""

from __future__ import annotations

import numpy as np

import featfate_sym as ff


def available(key: str) -> bool:
    """Whether ``key`` is registered (figures that need a missing result say so)."""
    return key in ff.keys()


def require(key: str):
    if not available(key):
        raise ValueError(f"result {key} is not registered in this version of featfate_sym")
    return ff.get(key)


def on_grid(key: str, **values) -> np.ndarray:
    """``key`` evaluated at ``values`` (names as in the result's parameters), broadcast.

    A vector-valued result comes back with its components on a leading axis.  NaN
    entries are gaps in a curve (see :func:`gamma_line`): they are not validated and
    come back as NaN.
    """
    result = require(key)
    result.validate({name: _without_gaps(v) for name, v in values.items()})
    arrays = np.broadcast_arrays(*[np.asarray(values[name], dtype=float) for name in result.param_names])
    return np.asarray(result.numpy.unchecked(*arrays), dtype=float)  # validated above


def _without_gaps(value):
    arr = np.asarray(value, dtype=float)
    gaps = np.isnan(arr)
    if not gaps.any() or gaps.all():
        return arr
    return np.where(gaps, arr[~gaps].flat[0], arr)


def theta_gamma_grid(points: int, gamma_max: float = 2.0, theta_max: float = np.pi / 2):
    """The ``(theta, gamma)`` plane of a phase diagram: 1-D axes and 2-D mesh.

    ``gamma`` starts just above 0 (the theory needs ``gamma > 0``); with an odd number of
    points ``gamma = 1`` is on the grid, so the scratch peak shows as a line.
    """
    theta = np.linspace(0.0, theta_max, points)
    gamma = np.linspace(0.0, gamma_max, points)
    gamma[0] = 1e-3 * gamma[1]
    th, ga = np.meshgrid(theta, gamma)
    return theta, gamma, th, ga


def gamma_line(points: int, gamma_max: float = 2.0) -> np.ndarray:
    """``gamma`` samples for a curve, with a NaN gap at ``gamma = 1`` (the scratch peak),
    so no line is drawn through the divergence."""
    below = np.linspace(1e-3, 1.0, points // 2, endpoint=False)[1:]
    above = np.linspace(1.0, gamma_max, points // 2 + 1)[1:]
    return np.concatenate([below, [np.nan], above])
