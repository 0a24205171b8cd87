"""Build and runtime configuration report."""

from __future__ import annotations

import numpy as np

from ecomcore._validation import available_cores
from ecomcore_ext import _topk


def show_config(*, print_out: bool = True) -> dict:
    """Report how the kernels were built and what they will use at run time.

    Parameters
    ----------
    print_out : bool, default True
        Also print the report.

    Returns
    -------
    dict
        ``openmp`` (kernels compiled with OpenMP), ``cython_version`` and ``numpy_version``
        (used at build time), ``numpy_runtime``, ``max_threads`` (cores the process may use,
        the default ``n_threads``), ``ecomcore_ext`` (where the compiled package was loaded from).
    """
    import ecomcore_ext

    info = {
        "openmp": bool(_topk.openmp_enabled()),
        "cython_version": ecomcore_ext.BUILD_INFO.get("cython_version", "unknown"),
        "numpy_version": ecomcore_ext.BUILD_INFO.get("numpy_version", "unknown"),
        "numpy_runtime": np.__version__,
        "max_threads": available_cores() if _topk.openmp_enabled() else 1,
        "ecomcore_ext": ecomcore_ext.__file__,
    }
    if print_out:
        for key, value in info.items():
            print(f"{key}: {value}")
    return info
