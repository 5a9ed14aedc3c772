"""Input covariance spectra as data, teacher energy profiles, and the anisotropic teachers.

Model (family ``anisotropic``): inputs ``x ~ N(0, Sigma)`` with ``Sigma`` diagonal (no loss
of generality: every estimator here is rotation-equivariant) with eigenvalues
``lambda_i``.  A teacher is given by an *energy profile* ``p_i >= 0``, ``sum_i p_i = 1``,
the expected share of ``|beta|^2`` in direction ``i``:
``beta_s = sqrt(p) * g / |sqrt(p) * g|`` with ``g ~ N(0, I_d)``, and
``beta_t = cos(theta) beta_s + sin(theta) nu`` with ``nu`` built from an independent
``sqrt(p) * g'``, orthogonalised against ``beta_s`` (Euclidean) and normalised; so
``|beta_s| = |beta_t| = 1`` and ``beta_s . beta_t = cos(theta)`` exactly.  The uniform
profile ``p_i = 1/d`` is the isotropic teacher.

A :class:`Spectrum` is a distribution of eigenvalues: distinct levels and the fraction of
directions at each.  It is the object of the proportional limit (``d -> oo`` with the
fractions fixed); :meth:`Spectrum.eigenvalues` realises it at a finite ``d``.

Everything here is NumPy float64; the random function takes a seed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

import numpy as np

from featfate_sym.parameters import random_generator

__all__ = ["Spectrum", "two_level", "power_law", "from_values", "profile", "teachers", "PLACES"]

#: where :func:`profile` puts the teachers' energy
PLACES = ("uniform", "top", "bottom")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"parameter {name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def _real(name: str, value, lower: float, upper: float, lower_open: bool, upper_open: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    low_ok = number > lower if lower_open else number >= lower
    high_ok = number < upper if upper_open else number <= upper
    if isinstance(value, bool) or not (math.isfinite(number) and low_ok and high_ok):
        left = "(" if lower_open else "["
        right = ")" if (upper_open or math.isinf(upper)) else "]"
        hi = "inf" if math.isinf(upper) else f"{upper:g}"
        raise ValueError(f"parameter {name} must be in {left}{lower:g}, {hi}{right} (got {value!r})")
    return number


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """A covariance spectrum: distinct eigenvalue ``levels`` (descending) and the
    ``fractions`` of directions at each (positive, summing to 1), with a ``name``.

    Construct with :func:`two_level`, :func:`power_law` or :func:`from_values`.
    """

    levels: tuple[float, ...]
    fractions: tuple[float, ...]
    name: str

    def __post_init__(self):
        levels = np.asarray(self.levels, dtype=float)
        fractions = np.asarray(self.fractions, dtype=float)
        if levels.ndim != 1 or levels.size == 0 or levels.shape != fractions.shape:
            raise ValueError("parameter levels must be a non-empty sequence as long as fractions")
        if not np.all(np.isfinite(levels) & (levels > 0)):
            raise ValueError(f"parameter levels must be finite and in (0, inf) (got {levels.min():g})")
        if np.any(np.diff(levels) >= 0):
            raise ValueError("parameter levels must be distinct and in descending order")
        if not np.all(np.isfinite(fractions) & (fractions > 0)) or abs(fractions.sum() - 1) > 1e-12:
            raise ValueError("parameter fractions must be in (0, 1] and sum to 1")
        object.__setattr__(self, "levels", tuple(float(v) for v in levels))
        object.__setattr__(self, "fractions", tuple(float(v) for v in fractions))

    @property
    def mean(self) -> float:
        """``sum_k fraction_k level_k``, the normalised trace ``tr(Sigma)/d`` of the limit."""
        return float(np.dot(self.levels, self.fractions))

    def counts(self, d: int) -> np.ndarray:
        """Directions per level at dimension ``d``: largest-remainder rounding.

        Each level first gets ``floor(fraction * d)``; the directions left over go one
        each to the levels with the largest remainders ``fraction * d - floor(...)``, ties
        to the larger eigenvalue.  The counts sum to ``d`` exactly, each differs from
        ``fraction * d`` by less than 1, and a spectrum of ``m`` equally weighted levels
        gives each level exactly ``d/m`` directions when ``m`` divides ``d``.  A level may
        get no direction when ``d`` is small.
        """
        d = _positive_int("d", d)
        share = np.asarray(self.fractions) * d
        base = np.floor(share).astype(int)
        left = d - int(base.sum())
        # stable sort on the negated remainder: ties keep the level order (larger first)
        order = np.argsort(-(share - base), kind="stable")
        base[order[:left]] += 1
        return base

    def eigenvalues(self, d: int) -> np.ndarray:
        """The ``d`` eigenvalues, descending (levels repeated :meth:`counts` times)."""
        return np.repeat(np.asarray(self.levels, dtype=float), self.counts(d))


def two_level(frac: float, r: float) -> Spectrum:
    """A fraction ``frac`` in (0, 1) of the directions with variance ``r`` > 0, the rest
    variance 1.  ``r = 1`` is the isotropic spectrum (one level)."""
    frac = _real("frac", frac, 0.0, 1.0, True, True)
    r = _real("r", r, 0.0, math.inf, True, True)
    name = f"two-level (frac={frac:g}, r={r:g})"
    if r == 1.0:
        return Spectrum((1.0,), (1.0,), name)
    if r > 1.0:
        return Spectrum((r, 1.0), (frac, 1.0 - frac), name)
    return Spectrum((1.0, r), (1.0 - frac, frac), name)


def power_law(a: float, d: int) -> Spectrum:
    """``lambda_i = i^(-a) / mean_j(j^(-a))``, ``i = 1..d``: a power law normalised to mean 1
    (``tr Sigma = d``), ``d`` levels of fraction ``1/d`` each; ``a >= 0`` (``a = 0`` is
    isotropic).  ``eigenvalues(d)`` at the same ``d`` returns exactly these values."""
    a = _real("a", a, 0.0, math.inf, False, True)
    d = _positive_int("d", d)
    raw = np.arange(1, d + 1, dtype=float) ** (-a)
    values = raw / raw.mean()
    if a == 0.0:
        return Spectrum((1.0,), (1.0,), f"power law (a=0, d={d})")
    return Spectrum(tuple(values), tuple(np.full(d, 1.0 / d)), f"power law (a={a:g}, d={d})")


def from_values(values: Sequence[float], name: str = "user list") -> Spectrum:
    """The empirical spectrum of ``values`` (finite and positive, at least one): each
    distinct value a level with the fraction of entries equal to it."""
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError("parameter values must be a sequence of finite numbers in (0, inf)") from None
    if arr.size == 0:
        raise ValueError("parameter values must hold at least one eigenvalue in (0, inf)")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        raise ValueError(f"parameter values must be finite and in (0, inf) (got {arr[bad][0]!r})")
    levels, counts = np.unique(arr, return_counts=True)
    levels, counts = levels[::-1], counts[::-1]
    return Spectrum(tuple(levels), tuple(counts / arr.size), name)


def profile(spectrum: Spectrum, d: int, place: str = "uniform", fraction: float | None = None) -> np.ndarray:
    """The energy profile ``p`` (length ``d``, ``sum p = 1``, aligned with
    ``spectrum.eigenvalues(d)``, which is descending).

    ``place="uniform"``: ``p_i = 1/d`` (the isotropic teacher).  ``"top"`` / ``"bottom"``:
    uniform on the directions of the largest / smallest eigenvalues -- the
    ``max(1, round(fraction * d))`` first / last directions when ``fraction`` in (0, 1] is
    given, else the whole top / bottom level (for a two-level spectrum, the larger /
    smaller eigenspace).  ``fraction`` is only for top/bottom.
    """
    if not isinstance(spectrum, Spectrum):
        raise ValueError(f"parameter spectrum must be a Spectrum (got {type(spectrum).__name__})")
    d = _positive_int("d", d)
    if place not in PLACES:
        raise ValueError(f"parameter place must be one of {', '.join(PLACES)} (got {place!r})")
    p = np.zeros(d)
    if place == "uniform":
        if fraction is not None:
            raise ValueError("parameter fraction applies only to place='top' or 'bottom'")
        p[:] = 1.0 / d
        return p
    if fraction is None:
        counts = spectrum.counts(d)
        k = int(counts[0] if place == "top" else counts[-1])
        if k == 0:
            raise ValueError(f"parameter d = {d} leaves the {place} level without a direction")
    else:
        fraction = _real("fraction", fraction, 0.0, 1.0, True, False)
        k = max(1, int(round(fraction * d)))
    if place == "top":
        p[:k] = 1.0 / k
    else:
        p[d - k:] = 1.0 / k
    return p


def check_profile(eigenvalues, energy) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues, profile)`` as float64 arrays, validated: one length ``d >= 1``,
    eigenvalues finite and positive, profile finite, nonnegative and summing to 1."""
    lam = np.asarray(eigenvalues, dtype=float)
    p = np.asarray(energy, dtype=float)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError("parameter eigenvalues must be a non-empty 1-d array")
    if not np.all(np.isfinite(lam) & (lam > 0)):
        raise ValueError("parameter eigenvalues must be finite and in (0, inf)")
    if p.shape != lam.shape:
        raise ValueError(f"parameter profile must have the length of eigenvalues ({lam.size}, got {p.shape})")
    if not np.all(np.isfinite(p) & (p >= 0)) or abs(p.sum() - 1) > 1e-9:
        raise ValueError("parameter profile must be in [0, inf) elementwise and sum to 1")
    return lam, p


def teachers(eigenvalues, energy, theta: float, replicates: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """``(beta_s, beta_t)``, each of shape ``(replicates, d)``, drawn as in the module
    docstring: unit norms and ``beta_s . beta_t = cos(theta)`` exactly, both with energy
    profile ``energy`` in expectation.  ``theta`` in [0, pi]; the profile needs at least
    two directions with energy (else ``nu`` does not exist).  The teachers do not depend
    on the eigenvalues; they are passed to check that the two arrays match.  Same seed,
    same teachers."""
    lam, p = check_profile(eigenvalues, energy)
    theta = _real("theta", theta, 0.0, math.pi, False, False)
    replicates = _positive_int("replicates", replicates)
    if np.count_nonzero(p) < 2:
        raise ValueError("parameter profile must put energy on at least 2 directions (nu must exist)")
    rng = random_generator(seed)
    root = np.sqrt(p)
    g = rng.standard_normal((replicates, lam.size)) * root
    u = rng.standard_normal((replicates, lam.size)) * root
    beta_s = g / np.linalg.norm(g, axis=1, keepdims=True)
    u -= np.sum(u * beta_s, axis=1, keepdims=True) * beta_s
    # a second Gram-Schmidt pass: the first leaves an O(eps |u . beta_s|) overlap
    u -= np.sum(u * beta_s, axis=1, keepdims=True) * beta_s
    nu = u / np.linalg.norm(u, axis=1, keepdims=True)
    beta_t = math.cos(theta) * beta_s + math.sin(theta) * nu
    return beta_s, beta_t


# -- spectra and teachers as text (the ``simulate`` command, the sweeps) -----------------------------
# A fixed grammar, read by hand: NAME ":" KEY "=" NUMBER ("," KEY "=" NUMBER)*, or
# "values:" NUMBER ("," NUMBER)*; NUMBER is a plain decimal (no names, no expressions).
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
#: the spectrum kinds and their keys
SPECTRUM_KEYS = {"two_level": ("frac", "r"), "power_law": ("a",)}
SPECTRUM_FORMS = "two_level:frac=F,r=R, power_law:a=A or values:v1,v2,... (one per input direction)"
TEACHER_FORMS = "uniform, top, bottom, top:F or bottom:F (F in (0, 1])"


def _decimal(text: str, what: str) -> float:
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{what} must be a plain decimal number (got {text!r})")
    return float(text)


def parse_spectrum(text: str) -> tuple[str, tuple]:
    """``--spectrum`` text -> ``(kind, arguments)``: ``("two_level", (frac, r))``,
    ``("power_law", (a,))`` or ``("values", (v1, v2, ...))``.  The ranges are checked by
    :mod:`featfate_sym.spectra` when the eigenvalues are built; ``ValueError`` (starting
    with ``--spectrum``) for text outside the grammar."""
    kind, colon, rest = text.strip().partition(":")
    kind = kind.strip()
    if not colon or not rest.strip():
        raise ValueError(f"--spectrum must be one of {SPECTRUM_FORMS} (got {text!r})")
    if kind == "values":
        return kind, tuple(_decimal(part, "--spectrum values") for part in rest.split(","))
    if kind not in SPECTRUM_KEYS:
        raise ValueError(f"--spectrum must be one of {SPECTRUM_FORMS} (unknown kind {kind!r})")
    keys = SPECTRUM_KEYS[kind]
    found = {}
    for part in rest.split(","):
        key, equals, value = part.partition("=")
        key = key.strip()
        if not equals or key not in keys or key in found:
            raise ValueError(f"--spectrum {kind} takes {', '.join(k + '=NUMBER' for k in keys)}, each once "
                             f"(got {part.strip()!r})")
        found[key] = _decimal(value, f"--spectrum {kind}: {key}")
    missing = [key for key in keys if key not in found]
    if missing:
        raise ValueError(f"--spectrum {kind} needs {', '.join(k + '=NUMBER' for k in missing)} (got {text!r})")
    return kind, tuple(found[key] for key in keys)


def parse_teachers(text: str) -> tuple[str, float]:
    """``--teachers`` text -> ``(place, fraction)`` (fraction 0.1 by default for top /
    bottom, ``nan`` for uniform); ``ValueError`` starting with ``--teachers``."""
    place, colon, rest = text.strip().partition(":")
    if place not in ("uniform", "top", "bottom") or (colon and place == "uniform"):
        raise ValueError(f"--teachers must be one of {TEACHER_FORMS} (got {text!r})")
    if place == "uniform":
        return place, math.nan
    fraction = _decimal(rest, "--teachers fraction") if colon else 0.1
    if not 0 < fraction <= 1:
        raise ValueError(f"--teachers fraction must be in (0, 1] (got {fraction:g})")
    return place, fraction


def spectrum_arrays(spectrum: tuple | None, teachers: tuple, dim: int):
    """``(covariance, profile)`` at input dimension ``dim`` for the parsed ``--spectrum``
    (``None``: isotropic) and ``--teachers``, built by :mod:`featfate_sym.spectra`;
    ``(None, None)`` for the isotropic, uniform case (the unchanged engine).  ``ValueError``
    names the bad parameter."""
    place, fraction = teachers
    if spectrum is None:
        if place == "uniform":
            return None, None
        shape = from_values([1.0], name="isotropic")
    else:
        kind, args = spectrum
        if kind == "values":
            if len(args) != dim:
                raise ValueError(f"--spectrum values must give exactly d = {dim} eigenvalues (got {len(args)})")
            if list(args) != sorted(args, reverse=True):
                raise ValueError("--spectrum values must be in descending order (the profile's top / bottom "
                                 "directions are the first / last)")
        try:
            if kind == "two_level":
                shape = two_level(*args)
            elif kind == "power_law":
                shape = power_law(args[0], dim)
            else:
                shape = from_values(args)
        except ValueError as err:
            raise ValueError(f"--spectrum {kind}: {err}") from None
    eigenvalues = shape.eigenvalues(dim)
    try:
        energy = profile(shape, dim, place, None if place == "uniform" else fraction)
    except ValueError as err:
        raise ValueError(f"--teachers {place}: {err}") from None
    return (None if spectrum is None else eigenvalues), (None if place == "uniform" else energy)


