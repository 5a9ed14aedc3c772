"""Registry results as labelled arrays: ``ff.theory(key, **params)``.

A parameter given as a 1-D array becomes a dimension named after it (its values the
coordinate); scalars become scalar coordinates; the result is evaluated on the outer
grid of the array-valued parameters.  A vector-valued result gains a leading ``output``
dimension named by its components.  The attributes carry the key, title, status, regime
and reference, so a value never travels without what it means.  Values are validated
through the result's parameters (``ValueError`` naming the parameter and its range).
"""

from __future__ import annotations

import numpy as np

from featfate_sym import registry

__all__ = ["theory"]


def theory(key: str, **params):
    """``key`` evaluated at ``params`` as an ``xarray.DataArray`` (see the module docstring).

    Example: ``theory("lt.transferability", gamma=np.linspace(0.1, 2, 20), theta=np.pi / 4,
    sigma=0.2, lam=0)`` has one dimension ``gamma``.
    """
    import xarray as xr

    result = registry.get(key)
    values = result.validate(params)
    arrays = {name: np.asarray(value, dtype=float) for name, value in values.items()}
    for name, arr in arrays.items():
        if arr.ndim > 1:
            raise ValueError(f"parameter {name} must be a number or a 1-D array (got shape {arr.shape})")
    dims = [name for name, arr in arrays.items() if arr.ndim == 1]
    coords = {name: arr if arr.ndim == 1 else float(arr) for name, arr in arrays.items()}
    # each array parameter along its own axis of the outer grid
    grids = [arr.reshape([arr.size if d == name else 1 for d in dims]) if arr.ndim == 1 else arr
             for name, arr in arrays.items()]
    out = np.asarray(result.numpy.unchecked(*grids), dtype=float)  # validated above
    full = tuple(arrays[d].size for d in dims)
    if result.outputs:
        out = np.broadcast_to(out, (len(result.outputs), *full))
        dims = ["output", *dims]
        coords["output"] = list(result.outputs)
    else:
        out = np.broadcast_to(out, full)
    attrs = {"key": result.key, "title": result.title, "status": result.status.value,
             "source": result.status.source.value, "exactness": result.status.exactness.value,
             "regime": result.regime, "reference": result.reference}
    return xr.DataArray(np.array(out), dims=dims, coords=coords, name=result.key, attrs=attrs)
