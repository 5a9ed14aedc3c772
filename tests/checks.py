"""Assertions and critical values shared by the test modules.

Critical values come from :mod:`featfate_sym.stats`: Student t with the replicates'
degrees of freedom wherever the standard error is estimated from them
(:func:`bonferroni_t`); a known SE takes :func:`featfate_sym.stats.z_critical`.
"""

import contextlib
import ctypes
import glob
import os

import numpy as np

from featfate_sym import stats

#: family-wise false-alarm rate of every statistical test in the suite
FAMILY_ALPHA = 1e-3


def bonferroni_t(df: float, comparisons: int, alpha: float = FAMILY_ALPHA) -> float:
    """Two-sided Student-t critical value (``df`` degrees of freedom of the estimated SE,
    ``replicates - 1`` for a mean) for ``comparisons`` tests at family-wise rate ``alpha``."""
    return stats.t_critical(df, alpha, comparisons)


def assert_one_line_error(proc, *needles, prefix: str = ""):
    """A command's bad-input exit: status 2, one line on stderr (starting with
    ``prefix``, containing every needle), no traceback."""
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def branch(expr, condition):
    """The value of the ``Piecewise`` branch whose condition is ``condition``."""
    for value, cond in expr.args:
        if cond == condition:
            return value
    raise AssertionError(f"no branch {condition} in {expr}")


@contextlib.contextmanager
def one_blas_thread():
    """NumPy's and SciPy's OpenBLAS on one thread each (restored afterwards): the small
    solves of the Monte Carlo tests are many times slower when their threads compete with
    other processes for the cores (pinning only NumPy's is not enough: SciPy ships its own
    copy)."""
    import scipy

    libs = []
    for module in (np, scipy):
        folder = os.path.dirname(module.__file__) + ".libs"
        for path in glob.glob(os.path.join(folder, "libscipy_openblas*.so")):
            try:
                candidate = ctypes.CDLL(path)
            except OSError:
                continue
            for suffix in ("64_", ""):
                if hasattr(candidate, f"scipy_openblas_set_num_threads{suffix}"):
                    libs.append((getattr(candidate, f"scipy_openblas_get_num_threads{suffix}"),
                                 getattr(candidate, f"scipy_openblas_set_num_threads{suffix}")))
                    break
    before = [get() for get, _ in libs]
    for _, put in libs:
        put(1)
    try:
        yield
    finally:
        for (_, put), count in zip(libs, before):
            put(count)
