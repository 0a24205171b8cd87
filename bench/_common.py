"""Helpers shared by the benchmark scripts and the pytest-benchmark suite.

Not part of the installed package: ``bench/`` is run from a source checkout.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Tuple

import _path  # noqa: F401  (a checkout built in place wins over an installed ecomcore)
import numpy as np
import scipy.sparse as sp

from ecomcore.datasets import Market, synthetic_market  # noqa: E402

# name -> (n_users, n_tags, n_merchants, shared_popularity)
FULL_SIZES: Dict[str, Tuple[int, int, int, bool]] = {
    "dense": (20_000, 2_000, 20_000, True),
    "sparse": (200_000, 5_000, 100_000, False),
}
QUICK_SIZES: Dict[str, Tuple[int, int, int, bool]] = {
    "dense": (1_000, 2_000, 20_000, True),
    "sparse": (5_000, 5_000, 100_000, False),
}
# pytest smoke sizes (ECOMCORE_BENCH_SIZE=quick): seconds for the whole suite
TINY_SIZES: Dict[str, Tuple[int, int, int, bool]] = {
    "dense": (300, 300, 2_000, True),
    "sparse": (1_000, 1_000, 10_000, False),
}

_CACHE: Dict[Tuple, Problem] = {}


class Problem:
    """One benchmark market plus the folded problem handed to peers.

    Parameters
    ----------
    name : str
        Regime name (``"dense"`` or ``"sparse"``).
    market : Market
        The generated market.
    """

    def __init__(self, name: str, market: Market) -> None:
        self.name = name
        self.market = market
        self.user_tags = market.user_tags
        self.merchant_tags = market.merchant_tags
        self.trust = market.trust
        self.banned = market.banned
        self.weight = market.merchant_weight()
        self.folded = market.folded_merchant_tags()
        self.multiply_adds = market.multiply_adds()

    @property
    def n_users(self) -> int:
        """Number of users."""
        return self.market.n_users

    @property
    def n_merchants(self) -> int:
        """Number of merchants."""
        return self.market.n_merchants

    def user_row(self, u: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return ``(tag_ids, tag_weights)`` of user ``u`` (views into the CSR arrays)."""
        a = self.user_tags
        lo, hi = a.indptr[u], a.indptr[u + 1]
        return a.indices[lo:hi], a.data[lo:hi]


def problem(name: str, sizes: Dict[str, Tuple[int, int, int, bool]], seed: int = 0) -> Problem:
    """Build (or fetch from a per-process cache) the market of regime ``name``.

    Parameters
    ----------
    name : str
        Key of ``sizes``.
    sizes : dict
        Regime name -> ``(n_users, n_tags, n_merchants, shared_popularity)``.
    seed : int, default 0
        Market seed.

    Returns
    -------
    Problem
        The market and its folded form.
    """
    n_users, n_tags, n_merchants, shared = sizes[name]
    key = (name, n_users, n_tags, n_merchants, shared, seed)
    if key not in _CACHE:
        m = synthetic_market(n_users, n_tags, n_merchants, seed=seed, shared_popularity=shared)
        _CACHE[key] = Problem(name, m)
    return _CACHE[key]


def bench_sizes() -> Dict[str, Tuple[int, int, int, bool]]:
    """Sizes selected by ``ECOMCORE_BENCH_SIZE`` (``quick`` (default) or ``full``).

    Returns
    -------
    dict
        Regime name -> ``(n_users, n_tags, n_merchants, shared_popularity)``.

    Raises
    ------
    ValueError
        If the variable holds anything else.
    """
    mode = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
    if mode == "quick":
        return TINY_SIZES
    if mode == "full":
        return FULL_SIZES
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {mode!r}")


def csr_to_padded(c: sp.spmatrix | sp.sparray, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Turn a CSR result (e.g. from sparse_dot_topn) into padded top-k arrays.

    Parameters
    ----------
    c : scipy sparse matrix or array
        ``(n_rows, n_cols)`` with at most ``width`` stored entries per row.
    width : int
        Output width.

    Returns
    -------
    indices, scores : numpy.ndarray
        ``(n_rows, width)``; rows sorted by descending score then ascending index; padding
        -1 / -inf.
    """
    c = sp.csr_array(c)
    n_rows = c.shape[0]
    counts = np.diff(c.indptr)
    if counts.size and counts.max() > width:
        raise ValueError(f"a row holds {counts.max()} entries, more than width={width}")
    rows = np.repeat(np.arange(n_rows), counts)
    order = np.lexsort((c.indices, -c.data.astype(np.float64), rows))
    pos = np.arange(rows.size) - np.repeat(c.indptr[:-1], counts)
    indices = np.full((n_rows, width), -1, dtype=np.int64)
    scores = np.full((n_rows, width), -np.inf, dtype=c.dtype)
    indices[rows, pos] = c.indices[order]
    scores[rows, pos] = c.data[order]
    return indices, scores


def median_time(fn: Callable[[], object], reps: int, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls (after ``warmup`` untimed calls).

    Parameters
    ----------
    fn : callable
        Function to time.
    reps : int
        Timed repetitions.
    warmup : int, default 0
        Untimed calls first.

    Returns
    -------
    float
        Seconds.
    """
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sparse_dot_topn() -> Callable | None:
    """Return ``sparse_dot_topn.sp_matmul_topn`` or None when it is not installed.

    Returns
    -------
    callable or None
        The function, if importable.
    """
    try:
        from sparse_dot_topn import sp_matmul_topn
    except ImportError:
        return None
    return sp_matmul_topn
