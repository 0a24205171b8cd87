"""Fuzz suite setup: import ``_strategies`` from here and report how many cases ran."""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import _strategies  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    calls = _strategies.CASES["calls"]
    if calls:
        terminalreporter.write_line(
            f"ecomcore fuzz: {calls} hostile calls checked ({_strategies.CASES['errors']} rejected with a "
            f"ValueError/TypeError, the rest compared with references); scale {_strategies.scale():g} "
            "(ECOMCORE_FUZZ_EXAMPLES)"
        )
