"""Shared test setup: make ``tests/_reference.py`` importable and provide small problems.

``tests/`` deliberately has no ``__init__.py``: with pytest's default import mode that keeps the
repository root off ``sys.path``, so the suite can run against an installed wheel.
"""

from __future__ import annotations

import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ecomcore",
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ecomcore")

from _problems import int_problem, random_problem  # noqa: E402


@pytest.fixture
def small_problem():
    return random_problem(0)


@pytest.fixture
def exact_problem():
    return int_problem(1)
