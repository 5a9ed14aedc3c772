"""Shared test fixtures.

Seeds: every random test takes the ``seed`` fixture, 42 by default; set
``FEATFATE_SEED`` to any integer in 0..99 to run the suite with another seed.  The
contract is that the tests pass for all of them.
"""

import os

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


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("FEATFATE_SEED", "42"))
    if not 0 <= value <= 99:
        raise ValueError(f"FEATFATE_SEED must be in 0..99 (got {value})")
    return value
