"""Simulation results (a sweep's ``results.nc``) reduced to what figures overlay:
the mean over replicates and its standard error, at the grid point nearest the figure's
parameters.

A sweep dataset has dimensions among ``gamma, theta, sigma, lam, L, d, gamma_s,
sigma_s`` plus ``replicate``; axes it did not sweep are scalar coordinates.  Swept axes
are selected by nearest coordinate; a scalar coordinate must match the figure's value
(otherwise the simulation answers another question and nothing is overlaid).  When a
sweep has several input dimensions ``d`` the largest (closest to the proportional
limit) is used.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Mapping

import numpy as np

AXES = ("gamma", "theta", "sigma", "lam", "L", "d", "gamma_s", "sigma_s")


@dataclasses.dataclass(frozen=True)
class Points:
    """Simulation means along the kept axes, with standard errors and the coordinates
    actually selected for the other axes."""

    coords: Mapping[str, np.ndarray]
    mean: np.ndarray
    stderr: np.ndarray
    replicates: int
    selected: Mapping[str, float]


def load(path: str | os.PathLike):
    """Open a sweep's results file; ``ValueError`` if it cannot be read as one."""
    from featfate_sym.sweeps.storage import open_sweep

    try:
        dataset = open_sweep(path)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"results file {path} cannot be read as a sweep: {err}") from None
    if "replicate" not in dataset.dims:
        raise ValueError(f"results file {path} has no 'replicate' dimension")
    return dataset


def _matches(stored: float, wanted: float) -> bool:
    if math.isinf(stored) or math.isinf(wanted):
        return stored == wanted
    return math.isclose(stored, wanted, rel_tol=1e-6, abs_tol=1e-9)


def points(dataset, variable: str, along: tuple[str, ...], **wanted: float) -> Points | None:
    """Mean and standard error of ``variable`` over replicates, along the axes ``along``.

    Returns ``None`` when the dataset lacks the variable or an axis of ``along``, or when
    one of its fixed (scalar) coordinates differs from the wanted value.
    """
    if dataset is None or variable not in dataset.data_vars:
        return None
    data = dataset[variable]
    if "replicate" not in data.dims or any(axis not in data.dims for axis in along):
        return None
    selected: dict[str, float] = {}
    for axis in AXES:
        if axis in along or axis not in data.coords:
            continue
        coord = data.coords[axis]
        if axis in data.dims:
            if axis in wanted:
                data = data.sel({axis: wanted[axis]}, method="nearest")
            elif axis == "d":
                data = data.sel(d=coord.values.max())
            else:
                data = data.isel({axis: 0})
            selected[axis] = float(data.coords[axis])
        else:
            value = float(coord)
            if axis in wanted and not _matches(value, float(wanted[axis])):
                return None
            selected[axis] = value
    data = data.transpose(*along, "replicate")
    values = np.asarray(data.values, dtype=float)
    count = np.sum(np.isfinite(values), axis=-1)
    with warnings.catch_warnings():
        # a grid point whose replicates all failed is NaN, which is what we want to show
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=-1)
        spread = np.nanstd(values, axis=-1, ddof=1)
    stderr = spread / np.sqrt(np.maximum(count, 1))
    coords = {axis: np.asarray(data.coords[axis].values, dtype=float) for axis in along}
    return Points(coords, mean, stderr, int(values.shape[-1]), selected)
