"""Pure SymPy derivations, one module per family; importing this package registers them.

Each module derives its results from the model with SymPy operations and registers them
with :func:`featfate_sym.registry.register`.  No module here prints, plots or simulates.
"""

import importlib
import sys
import types

_FAMILY_MODULES = (
    "random_matrix",
    "deep_linear",
    "scratch",
    "linear_transfer",
    "fine_tuning",
    "finite_source",
    "distances",
    "relu",
    "classification",
    "finite_step",
    "anisotropic",
    "multi_source",
    "time_course",
)

for _name in _FAMILY_MODULES:
    try:
        importlib.import_module(f"featfate_sym.theory.{_name}")
    except ModuleNotFoundError as exc:  # a family not written yet registers nothing
        if exc.name != f"featfate_sym.theory.{_name}":
            raise


class _CallablePackage(types.ModuleType):
    """``featfate_sym.theory`` is this package *and* the labelled evaluator: importing
    the package binds the name ``theory`` on ``featfate_sym`` to it, so calling it
    forwards to :func:`featfate_sym.labelled.theory` (``ff.theory(key, **params)``)."""

    def __call__(self, key, **params):
        from featfate_sym.labelled import theory

        return theory(key, **params)


sys.modules[__name__].__class__ = _CallablePackage
