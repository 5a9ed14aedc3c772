"""The parameter grid of a sweep and the seed of each of its cells.

A sweep runs one *cell* per point of a Cartesian grid over the model parameters of
``featfate_sym.simulation.run_cell`` (SPEC section 4; Tahir, Ganguli & Rotskoff, arXiv
2410.08194, Sec. 5): ``gamma`` (``n = gamma d``), ``theta`` (radians), ``sigma``, ``lam``,
``L``, ``d``, ``gamma_s`` (``inf``: the population source) and ``sigma_s``.  Each cell
holds ``replicates`` independent experiments.

Axes that a grid does not sweep keep a fixed value (:data:`DEFAULTS` unless given):
``gamma = 0.5``, ``theta = pi/4``, ``sigma = 0.2`` (the paper's noisy setting),
``lam = 0`` (unregularised readout), ``L = 2``, ``d = 500`` (the paper's width),
``gamma_s = inf`` (population source) and ``sigma_s = 0``.

Seeds.  Every cell gets its own seed, derived from one base seed and the cell's
coordinates (not its position in the grid) by :class:`numpy.random.SeedSequence`: the
coordinates of all eight parameters, written to 12 significant digits, are hashed
(SHA-256) into the sequence's ``spawn_key``, and the first 32-bit word of its state,
shifted right by one bit, is the seed (``0 <= seed < 2**31``, so that it is stored
exactly as a netCDF3 32-bit integer).  The same cell therefore has the same seed in any
grid that contains it, and the same base seed gives the same dataset.

Size.  A grid has at most :data:`MAX_AXIS_VALUES` (10^5) values per axis and
:data:`MAX_CELLS` (10^6) cells overall; larger grids are refused before anything is
built (a typo such as ``0.5:2:1000000000`` would otherwise exhaust the memory).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

__all__ = [
    "AXES",
    "DEFAULTS",
    "INTEGER_AXES",
    "MAX_AXIS_VALUES",
    "MAX_CELLS",
    "MAX_SEED",
    "Cell",
    "Grid",
    "cell_seed",
    "describe_json",
]

#: The grid axes, in the order in which they appear as dimensions of a dataset.
AXES = ("gamma", "theta", "sigma", "lam", "L", "d", "gamma_s", "sigma_s")

#: Integer-valued axes (stored as 32-bit integers).
INTEGER_AXES = frozenset({"L", "d"})

#: Values of the axes a grid does not sweep.
DEFAULTS: Mapping[str, float | int] = {
    "gamma": 0.5,
    "theta": math.pi / 4,
    "sigma": 0.2,
    "lam": 0.0,
    "L": 2,
    "d": 500,
    "gamma_s": math.inf,
    "sigma_s": 0.0,
}

#: Base seeds and cell seeds lie in ``[0, MAX_SEED]`` (netCDF3 has no 64-bit integers).
MAX_SEED = 2**31 - 1

#: Most values along one axis of a grid.
MAX_AXIS_VALUES = 100_000

#: Most cells of a grid (the product of its axis lengths).
MAX_CELLS = 1_000_000


def _canonical(name: str, value) -> int | float:
    """A coordinate value in its stored type (``None`` source size: ``inf``)."""
    if name == "gamma_s" and value is None:
        return math.inf
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number (got {value!r})")
    if name in INTEGER_AXES:
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{name} must be an integer (got {value!r})")
        return int(number)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number (got {value!r})") from None
    if math.isnan(number):
        raise ValueError(f"{name} must not be NaN")
    return number


def _key_text(name: str, value) -> str:
    # 12 significant digits: 0.1 + 0.2 and 0.3 are the same cell.
    return f"{name}={value}" if name in INTEGER_AXES else f"{name}={value:.12g}"


def cell_seed(base_seed: int, params: Mapping[str, float | int]) -> int:
    """The seed of the cell at ``params`` (all eight axes) for ``base_seed``.

    ``0 <= base_seed <= MAX_SEED``.  See the module docstring for the rule.
    """
    if isinstance(base_seed, bool) or not isinstance(base_seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}] (got {base_seed!r})")
    if not 0 <= int(base_seed) <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}] (got {base_seed!r})")
    text = ";".join(_key_text(name, _canonical(name, params[name])) for name in AXES)
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")
    sequence = np.random.SeedSequence(int(base_seed), spawn_key=(digest,))
    return int(sequence.generate_state(1, np.uint32)[0] >> 1)


@dataclass(frozen=True)
class Cell:
    """One point of a grid: its flat index, its position along each swept axis, the
    values of all eight parameters, and its seed."""

    index: int
    position: tuple[int, ...]
    params: dict
    seed: int

    @property
    def name(self) -> str:
        """File stem of the cell's stored result."""
        return f"cell-{self.index:06d}"


@dataclass(frozen=True)
class Grid:
    """A Cartesian grid over some of :data:`AXES` (``swept``, in :data:`AXES` order),
    with every other axis fixed, ``replicates`` experiments per cell and a base ``seed``.

    Build it with :meth:`Grid.build`.  Cells are numbered in C order over the swept axes.
    """

    swept: tuple[tuple[str, tuple], ...]
    fixed: tuple[tuple[str, object], ...]
    replicates: int
    seed: int

    @classmethod
    def build(
        cls,
        axes: Mapping[str, Sequence | float | int] | None = None,
        *,
        replicates: int,
        seed: int,
        fixed: Mapping[str, float | int] | None = None,
    ) -> "Grid":
        """``axes``: swept axes, name -> values (a scalar is a one-value axis, still a
        dimension of the dataset); ``fixed``: values of axes that are not swept
        (others take :data:`DEFAULTS`).  Values must be distinct along an axis.

        Raises ``ValueError`` for an unknown axis, an empty or repeated axis, an axis
        both swept and fixed, more than :data:`MAX_AXIS_VALUES` values on an axis or
        more than :data:`MAX_CELLS` cells, ``replicates < 1`` or a seed outside
        ``[0, MAX_SEED]``.
        """
        axes = dict(axes or {})
        fixed = dict(fixed or {})
        for name in itertools.chain(axes, fixed):
            if name not in AXES:
                raise ValueError(f"unknown axis {name!r}; axes are {', '.join(AXES)}")
        both = sorted(set(axes) & set(fixed))
        if both:
            raise ValueError(f"axis {both[0]} is both swept and fixed")
        if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 1:
            raise ValueError(f"replicates must be an integer >= 1 (got {replicates!r})")
        cell_seed(seed, DEFAULTS)  # validates the seed
        # sizes first, before any per-value work
        cells = 1
        for name, raw in axes.items():
            count = int(np.size(raw)) if not isinstance(raw, (list, tuple)) else len(raw)
            if count > MAX_AXIS_VALUES:
                raise ValueError(
                    f"axis {name} has {count} values; at most {MAX_AXIS_VALUES} per axis "
                    f"and {MAX_CELLS} cells overall"
                )
            cells *= max(count, 1)
        if cells > MAX_CELLS:
            raise ValueError(
                f"the grid has {cells} cells; at most {MAX_CELLS} cells overall ({MAX_AXIS_VALUES} values per axis)"
            )
        swept = []
        for name in AXES:
            if name not in axes:
                continue
            raw = axes[name]
            values = list(np.atleast_1d(np.asarray(raw, dtype=object)).tolist())
            if not values:
                raise ValueError(f"axis {name} has no values")
            values = tuple(_canonical(name, v) for v in values)
            if len({_key_text(name, v) for v in values}) != len(values):
                raise ValueError(f"axis {name} has repeated values: {list(values)}")
            swept.append((name, values))
        fixed_items = tuple(
            (name, _canonical(name, fixed.get(name, DEFAULTS[name]))) for name in AXES if name not in axes
        )
        return cls(tuple(swept), fixed_items, int(replicates), int(seed))

    @property
    def dims(self) -> tuple[str, ...]:
        """Names of the swept axes (the dataset's dimensions, before ``replicate``)."""
        return tuple(name for name, _ in self.swept)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.swept)

    @property
    def size(self) -> int:
        """Number of cells."""
        return math.prod(self.shape)

    def values(self, name: str) -> tuple:
        """The values of axis ``name`` (one value if it is fixed)."""
        for axis, values in self.swept:
            if axis == name:
                return values
        return (dict(self.fixed)[name],)

    def cells(self) -> Iterator[Cell]:
        """All cells, in C order over the swept axes."""
        fixed = dict(self.fixed)
        ranges = [range(len(values)) for _, values in self.swept]
        for index, position in enumerate(itertools.product(*ranges)):
            params = dict(fixed)
            for (name, values), i in zip(self.swept, position):
                params[name] = values[i]
            params = {name: params[name] for name in AXES}
            yield Cell(index, position, params, cell_seed(self.seed, params))

    def describe(self) -> dict:
        """A JSON-ready description (what a resumed sweep must match)."""
        return {
            "swept": {name: list(values) for name, values in self.swept},
            "fixed": dict(self.fixed),
            "replicates": self.replicates,
            "seed": self.seed,
        }

    def summary(self) -> str:
        """One line: the swept axes and their sizes, the cell count, the fixed values."""
        swept = " x ".join(f"{name}({len(values)})" for name, values in self.swept) or "(no swept axis)"
        fixed = ", ".join(f"{name}={value:g}" for name, value in self.fixed)
        return f"{swept} = {self.size} cells x {self.replicates} replicates; fixed: {fixed}"


def describe_json(description: dict) -> str:
    """Canonical JSON text of a description (sorted keys; ``inf`` as ``Infinity``)."""
    return json.dumps(description, sort_keys=True)
