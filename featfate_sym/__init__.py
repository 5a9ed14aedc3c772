"""featfate_sym: the theory of transfer learning in deep linear networks, derived with
SymPy, compiled to NumPy and mpmath, and checked against Torch simulations.

Reference: Tahir, Ganguli & Rotskoff, "Features are fate: a theory of transfer learning
in high-dimensional regression" (arXiv 2410.08194).

Quick start::

    import featfate_sym as ff
    r = ff.get("lt.transferability")
    r.evaluate(gamma=0.5, theta=0.785, sigma=0.2, lam=0.0)
    ff.theory("lt.transferability", gamma=[0.25, 0.5, 1.5], theta=0.785, sigma=0.2, lam=0)
"""

from featfate_sym.registry import (
    Derivation,
    Param,
    Result,
    SpecialCase,
    Status,
    Step,
    get,
    keys,
    results,
)
# ``theory`` is the package of derivations, callable as ff.theory(key, **params)
# (featfate_sym.labelled.theory); importing it registers the results
from featfate_sym import theory

__version__ = "0.1.0"

__all__ = [
    "Derivation",
    "Param",
    "Result",
    "SpecialCase",
    "Status",
    "Step",
    "get",
    "keys",
    "results",
    "theory",
    "__version__",
]
