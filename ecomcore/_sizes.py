"""Size arithmetic and the dense-column limit (issue 10, item 3).

The fused top-k kernel keeps, per thread, a dense accumulator over every column of the product
(design §3): merchants for :class:`ecomcore.Ranker`, users for audience queries.  Its size is
known before anything is allocated, so a column count whose scratch cannot fit is refused here,
with a ``ValueError`` naming the argument, instead of ending in a ``MemoryError`` or the OOM
killer half-way through a call.

Policy: the dense per-column scratch of a call (every thread's accumulator plus the per-column
vectors the object keeps) may use at most :data:`DENSE_FRACTION` of the memory this process may
use, which is the smallest of physical RAM, the cgroup memory limit (containers) and the
``RLIMIT_AS`` soft limit.  Total (not currently free) memory is used, so the answer does not
change with what other processes happen to hold.

Every function here does its arithmetic on Python ints (no fixed-width overflow) and allocates
nothing, so the tests can feed it sizes far beyond 2**31.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

__all__ = [
    "DENSE_FRACTION",
    "check_dense_columns",
    "memory_limit_bytes",
    "topk_scratch_bytes",
]

#: Share of the process's memory limit that dense per-column scratch may take.
DENSE_FRACTION = 0.5

#: Used when the platform reports no memory size at all (1 TiB).
_FALLBACK_LIMIT = 1 << 40

#: Below this many bytes of scratch the limit is not even looked up (the usual case).
_SMALL = 64 << 20

#: Bytes per column that a Ranker keeps besides the kernel scratch: the float64 weight ``w``,
#: the kernel's copy of it, the boost and banned copies kept for ``with_trust``, plus the
#: trust / boost / weight temporaries of the constructor.
RANKER_BYTES_PER_COLUMN = 48


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (cgroup v2: no limit) -> None


def _cgroup_limit() -> Optional[int]:
    """The memory limit of this process's cgroup (v2 or v1), if any."""
    limits = []
    paths = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.strip().split(":", 2)
                if len(parts) != 3:
                    continue
                rel = parts[2].lstrip("/")
                if parts[1] == "" and rel:
                    paths.append(os.path.join("/sys/fs/cgroup", rel, "memory.max"))
                elif "memory" in parts[1].split(",") and rel:
                    paths.append(os.path.join("/sys/fs/cgroup/memory", rel, "memory.limit_in_bytes"))
    except OSError:
        pass
    for p in paths:
        v = _read_int(p)
        if v is not None and 0 < v < (1 << 62):  # v1 reports "no limit" as ~2**63
            limits.append(v)
    return min(limits) if limits else None


def memory_limit_bytes() -> int:
    """The memory this process may use, in bytes.

    The smallest of physical RAM, the cgroup memory limit and the ``RLIMIT_AS`` soft limit;
    1 TiB when the platform reports none of them.

    Returns
    -------
    int
    """
    limits = []
    try:
        limits.append(int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE")))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        pass
    cg = _cgroup_limit()
    if cg is not None:
        limits.append(cg)
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(int(soft))
    except (ImportError, AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        pass
    limits = [x for x in limits if x > 0]
    return min(limits) if limits else _FALLBACK_LIMIT


def topk_scratch_bytes(n_cols: int, width: int, value_itemsize: int, index_itemsize: int) -> int:
    """Bytes of one thread's ``fused_topk`` scratch over ``n_cols`` columns.

    Mirrors ``ecomcore.ranking._make_workspace`` (and the audience workspace): dense
    accumulator (``v``), reached marks (1), (sum, weight) pairs (``2 v``), touched list (``i``),
    row scores (``v``), group maxima (``2 v + i`` per 8 columns) and the candidate buffer of
    ``2 * width + 16`` (score, index) pairs.

    Parameters
    ----------
    n_cols : int
        Columns of the product (merchants, or users for audience queries).
    width : int
        Entries kept per row (``min(k, n_cols)``).
    value_itemsize, index_itemsize : int
        Bytes of one score (4 or 8) and one index (4 or 8).

    Returns
    -------
    int
    """
    n_cols, width, v, i = int(n_cols), int(width), int(value_itemsize), int(index_itemsize)
    n_groups = n_cols // 8 + 2
    cap = 2 * width + 16
    return (
        n_cols * v  # accumulator
        + n_cols  # marks
        + 2 * n_cols * v  # pairs
        + (n_cols + 1) * (i + v)  # touched list, row scores
        + n_groups * (2 * v + i)  # group maxima (two copies) and their indices
        + cap * (v + i)  # candidate buffer
    )


def _gib(x: float) -> str:
    return f"{x / 2**30:,.1f} GiB"


def check_dense_columns(
    n_cols: int,
    name: str,
    *,
    what: str = "merchants",
    threads: int = 1,
    threads_name: str = "n_threads",
    width: int = 0,
    value_dtype: Any = np.float64,
    index_dtype: Any = np.int64,
    shared_per_column: int = 0,
    per_thread_bytes: Optional[int] = None,
    advice: Optional[str] = None,
    limit: Optional[int] = None,
) -> None:
    """Refuse a column count whose dense scratch would exceed the limit, before allocating it.

    Needs ``threads * per_thread_bytes + shared_per_column * n_cols`` bytes at most
    ``DENSE_FRACTION * memory_limit_bytes()``.  When one thread fits but ``threads`` do not,
    the error names ``threads_name`` and says how many threads fit; otherwise it names
    ``name`` (the matrix whose column count is too large).

    Parameters
    ----------
    n_cols : int
        Columns of the dense accumulator.
    name : str
        Argument that sets ``n_cols`` (named in the error).
    what : str, default "merchants"
        What the columns are, for the message.
    threads : int, default 1
        Threads that each hold a scratch.
    threads_name : str, default "n_threads"
        Argument that sets ``threads``.
    width : int, default 0
        Entries kept per row.
    value_dtype, index_dtype : dtype
        Score and index dtypes of the kernel call.
    shared_per_column : int, default 0
        Bytes per column held once, whatever the thread count.
    per_thread_bytes : int, optional
        One thread's scratch, when it is not the top-k kernel's (default:
        :func:`topk_scratch_bytes` of ``n_cols``, ``width`` and the dtypes).
    advice : str, optional
        What to do instead, ending the message when ``n_cols`` itself is too large (default:
        shard the columns over several Rankers and merge with ``merge_topk``).
    limit : int, optional
        Memory limit to use instead of :func:`memory_limit_bytes` (tests).

    Raises
    ------
    ValueError
        If the scratch would exceed the limit.
    """
    n_cols, threads = int(n_cols), max(int(threads), 1)
    v, i = np.dtype(value_dtype).itemsize, np.dtype(index_dtype).itemsize
    per_thread = topk_scratch_bytes(n_cols, width, v, i) if per_thread_bytes is None else int(per_thread_bytes)
    shared = int(shared_per_column) * n_cols
    need = threads * per_thread + shared
    if need <= _SMALL and limit is None:
        return
    mem = memory_limit_bytes() if limit is None else int(limit)
    budget = int(DENSE_FRACTION * mem)
    if need <= budget:
        return
    where = (
        f"{DENSE_FRACTION:.0%} of {_gib(mem)}, the memory this process may use: the smallest of "
        "physical RAM, the cgroup limit and RLIMIT_AS"
    )
    if threads > 1 and per_thread + shared <= budget:
        fit = (budget - shared) // per_thread
        raise ValueError(
            f"{threads_name}: {threads} threads over {n_cols:,} {what} need {_gib(need)} of dense "
            f"scratch ({_gib(per_thread)} per thread), over the limit of {_gib(budget)} ({where}); "
            f"pass {threads_name}={fit} or fewer"
        )
    if advice is None:
        advice = f"split the {what} into shards (e.g. one Ranker per shard, then ecomcore.merge_topk)"
    raise ValueError(
        f"{name}: {n_cols:,} {what} are too many: the dense per-column arrays need "
        f"{_gib(per_thread + shared)} even with one thread, over the limit of {_gib(budget)} "
        f"({where}); {advice}"
    )
