"""featfate_sym: the theory of transfer learning in deep linear networks, derived with
SymPy, compiled to NumPy and mpmath, and checked against Torch simulations.

Reference: Tahir, Ganguli & Rotskoff, "Features are fate: a theory of transfer learning
in high-dimensional regression" (arXiv 2410.08194).

Quick start::

    import featfate_sym as ff
    r = ff.get("lt.transferability")
    r.evaluate(gamma=0.5, theta=0.785, sigma=0.2, lam=0.0)
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
    "__version__",
]
