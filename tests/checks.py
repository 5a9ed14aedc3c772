"""Assertions and critical values shared by the test modules."""

from scipy import stats

#: family-wise false-alarm rate of every statistical test in the suite
FAMILY_ALPHA = 1e-3


def bonferroni_z(comparisons: int, alpha: float = FAMILY_ALPHA) -> float:
    """Two-sided critical |z| for ``comparisons`` tests at family-wise rate ``alpha``."""
    return float(stats.norm.isf(alpha / (2 * comparisons)))


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
