"""Load the example service (``examples/service``) for the tests in this directory.

The example is not part of the installed package: it is loaded from the checkout, next to
``tests/``.  Without FastAPI, uvicorn and httpx (the ``service`` extra) these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "service")


def _load(name: str, filename: str):
    """Import ``examples/service/<filename>`` as module ``name`` (once)."""
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(EXAMPLE_DIR, filename)
    if not os.path.isfile(path):
        pytest.skip(f"the service example is not in this checkout ({path})")
    for dep in ("fastapi", "uvicorn", "httpx"):
        pytest.importorskip(dep, reason="the service tests need the 'service' extra (fastapi, uvicorn, httpx)")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def service_app():
    """The ``examples/service/app.py`` module."""
    return _load("ecomcore_service_app", "app.py")


@pytest.fixture(scope="session")
def loadgen():
    """The ``examples/service/loadgen.py`` module."""
    return _load("ecomcore_service_loadgen", "loadgen.py")


@pytest.fixture(scope="session")
def small_files(loadgen, tmp_path_factory):
    """A small sparse-regime market written by ``ecomcore trust`` (and as ``ecomcore profiles`` writes)."""
    d = tmp_path_factory.mktemp("service_market")
    return loadgen.make_files(str(d), 400, 300, 3000, n_trust_events=30_000, seed=3)
