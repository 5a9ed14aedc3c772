"""featfate_sym: the theory of transfer learning in deep linear networks, derived with
SymPy, compiled to NumPy and mpmath, and checked against Torch simulations.

Reference: Tahir, Ganguli & Rotskoff, "Features are fate: a theory of transfer learning
in high-dimensional regression" (arXiv 2410.08194).

Quick start::

    import featfate_sym as ff
    r = ff.get("lt.transferability")
    r.evaluate(gamma=0.5, theta=0.785, sigma=0.2, lam=0.0)
    ff.theory("lt.transferability", gamma=[0.25, 0.5, 1.5], theta=0.785, sigma=0.2, lam=0)
    sim = ff.simulate(["scratch", "linear_transfer"], replicates=20, seed=0,
                      gamma=[0.25, 0.5], theta=0.785, sigma=0.2, d=100)
    ff.compare("lt.transferability", sim)
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
from featfate_sym import parameters, protocols
# ff.simulate is featfate_sym.labelled.simulate; importing the command line
# featfate_sym.simulate rebinds the name to that module, which is callable alike
from featfate_sym.labelled import compare, simulate

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
    "simulate",
    "compare",
    "parameters",
    "protocols",
    "__version__",
]
