"""Cython kernels for ecomcore: loops only (no defaults, no validation, no policy).

Call them through :mod:`ecomcore`, which validates every argument first.
"""

try:
    from ecomcore_ext._build_info import BUILD_INFO
except ImportError:  # pragma: no cover - source checkout without a build
    BUILD_INFO = {}

__all__ = ["BUILD_INFO"]
