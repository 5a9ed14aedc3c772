"""Named grids: the paper's experiment and a quick one.

``paper`` (SPEC section 4; Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Sec. 5): ``d =
500``, ``L = 2``, 20 target sets per cell, ``gamma in {0.1, ..., 2.0}`` (step 0.1),
``theta / (pi/2) in {0.05, ..., 1.0}`` (step 0.05), ``sigma in {0, 0.2}``; ``lam = 0``,
population source (``gamma_s = inf``, ``sigma_s = 0``).  800 cells, trained with the
``whitened`` solver: its end points are gradient descent's, and it converges in a few
hundred steps at ``gamma`` near 1, where plain gradient descent needs ``10^4``-``10^7``
(see :mod:`featfate_sym.simulation.deep_linear`).  (The paper's
further grids, ridge ``lam`` and finite source ``gamma_s``, are the same command with
``--lam`` / ``--gamma-s`` given.)

``quick``: the same protocol at ``d = 100``, 20 replicates, ``gamma in {0.25, 0.5,
0.75, 1.5, 2.0}``, ``theta in {pi/8, pi/4, 3pi/8}``, ``sigma in {0, 0.2}``: 30 cells, a
few minutes on two cores, with plain gradient descent (``gd``).  It stays away from
``gamma = 1``, where gradient descent needs many steps to converge (the smallest
eigenvalue of ``X^T X / n`` is close to 0).
"""

from __future__ import annotations

import math

import numpy as np

from featfate_sym.sweeps.grid import Grid

__all__ = ["PRESETS", "preset_axes", "preset_grid", "preset_solver"]

PRESETS = ("quick", "paper")


def preset_axes(name: str) -> tuple[dict, dict, int]:
    """``(swept axes, fixed axes, replicates)`` of the preset ``name``."""
    if name == "paper":
        swept = {
            "gamma": (np.arange(1, 21) / 10).tolist(),
            "theta": (np.arange(1, 21) * math.pi / 40).tolist(),
            "sigma": [0.0, 0.2],
        }
        return swept, {"lam": 0.0, "L": 2, "d": 500, "gamma_s": math.inf, "sigma_s": 0.0}, 20
    if name == "quick":
        swept = {
            "gamma": [0.25, 0.5, 0.75, 1.5, 2.0],
            "theta": [math.pi / 8, math.pi / 4, 3 * math.pi / 8],
            "sigma": [0.0, 0.2],
        }
        return swept, {"lam": 0.0, "L": 2, "d": 100, "gamma_s": math.inf, "sigma_s": 0.0}, 20
    raise ValueError(f"preset must be one of {', '.join(PRESETS)} (got {name!r})")


def preset_solver(name: str) -> str:
    """The training solver of the preset ``name`` (``gd`` or ``whitened``)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)} (got {name!r})")
    return "whitened" if name == "paper" else "gd"


def preset_grid(name: str, *, seed: int = 0) -> Grid:
    """The grid of the preset ``name`` with base seed ``seed``."""
    swept, fixed, replicates = preset_axes(name)
    return Grid.build(swept, fixed=fixed, replicates=replicates, seed=seed)
