"""Shared test fixtures.

Seeds: every random test takes the ``seed`` fixture, 42 by default; set
``FEATFATE_SEED`` to any integer in 0..99 to run the suite with another seed, e.g.
``FEATFATE_SEED=7 python -m pytest tests/test_distances.py -p no:cacheprovider``.  The
contract is that the tests pass for all of them up to their stated false-alarm rates
(``FAMILY_ALPHA`` per statistical test); ``numerics/seed_false_alarms.py`` runs a set of
statistical tests over seeds 0..99 and counts the failures against those rates.
"""

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,  # the same examples on every run: reproducible
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Derivations: the suite derives every result afresh into a cache folder of its own
# (unless FEATFATE_CACHE names one), which the commands it runs in subprocesses then
# read; test_derivation_cache.py checks every cached entry against a fresh derivation.
os.environ.setdefault("FEATFATE_CACHE", tempfile.mkdtemp(prefix="featfate-cache-"))


#: the seed of every random test when ``FEATFATE_SEED`` is not set
DEFAULT_SEED = 42


def seed_from_environment() -> int:
    """``FEATFATE_SEED`` (an integer in 0..99), or :data:`DEFAULT_SEED`."""
    text = os.environ.get("FEATFATE_SEED", str(DEFAULT_SEED))
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"FEATFATE_SEED must be an integer in 0..99 (got {text!r})") from None
    if not 0 <= value <= 99:
        raise ValueError(f"FEATFATE_SEED must be in 0..99 (got {value})")
    return value


@pytest.fixture
def seed() -> int:
    return seed_from_environment()


@pytest.fixture
def one_thread():
    """Torch and the BLAS of NumPy and SciPy on one thread each, restored afterwards: the
    small batched products and solves of the simulation and Monte Carlo tests only spin
    against each other with more threads on a shared two-core machine."""
    import torch

    from checks import one_blas_thread

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with one_blas_thread():
            yield
    finally:
        torch.set_num_threads(before)
