"""Choose which ecomcore the benchmark scripts import.

A source checkout built in place (``python setup.py build_ext --inplace``) wins over an installed
ecomcore, so that ``python bench/x.py`` measures the code next to it; a checkout without built
kernels (CI's clean clone, where the wheel is installed) uses the installed package.
Import this module before ``ecomcore``.
"""

from __future__ import annotations

import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def built_in_place() -> bool:
    """True when the checkout holds compiled kernels next to their sources."""
    pattern = os.path.join(ROOT, "ecomcore_ext", "_checks*")
    return any(p.endswith((".so", ".pyd")) for p in glob.glob(pattern))


if built_in_place() and ROOT not in sys.path:
    sys.path.insert(0, ROOT)
