"""Type stubs for ecomcore_ext._interest (decayed (user, tag) sums in an open-addressing table).

Arguments are not validated here: call through :mod:`ecomcore.interest`.  ``table`` arrays have
the structured dtype ``[("key", int64), ("val", float64)]``, a power-of-two length, and key 0 in
empty slots; ``shift`` is ``64 - log2(len(table))``.
"""

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]
Table = npt.NDArray[np.void]

def scan_ids(ids: npt.NDArray[np.int64], n: int) -> int:
    """First position whose id is outside ``[0, n)``, or -1."""

def scan_items(item: npt.NDArray[np.int64], indptr: IndexArray) -> tuple[int, int]:
    """(first position with an item id outside ``[0, len(indptr) - 1)`` or -1, tags over the events before it)."""

def scan_reals(x: npt.NDArray[np.float64], nonnegative: bool) -> tuple[int, float, float]:
    """(first non-finite (or negative) position or -1, minimum, maximum)."""

def fold_events(
    table: Table,
    shift: int,
    count: int,
    max_fill: int,
    start: int,
    user: npt.NDArray[np.int64],
    item: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int32],
    time: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    kind_weight: npt.NDArray[np.float64],
    indptr: IndexArray,
    indices: IndexArray,
    tag_value: npt.NDArray[np.float64],
    lam: float,
    t_ref: float,
) -> tuple[int, int]:
    """Fold events from ``start``; returns (stop, key count); ``stop < n``: grow the table, call again."""

def rehash(old: Table, new: Table, shift: int, drop_user: npt.NDArray[np.uint8], scale: float) -> int:
    """Insert ``old``'s keys (minus dropped users', values times ``scale``) into empty ``new``; returns the count."""

def add_table(table: Table, shift: int, count: int, other: Table, scale: float) -> int:
    """Add ``other``'s sums (times ``scale``) into ``table``; returns the new key count."""

def insert_entries(
    table: Table,
    shift: int,
    user: npt.NDArray[np.int64],
    tag: npt.NDArray[np.int64],
    val: npt.NDArray[np.float64],
) -> None:
    """Insert distinct absent (user, tag) keys with their values."""

def scale_values(table: Table, scale: float) -> None:
    """Multiply every stored value by ``scale``."""

def count_entries(table: Table, user_count: npt.NDArray[np.int64]) -> int:
    """Count the positive sums per user (added into ``user_count``); returns their number."""

def scatter_sorted(
    table: Table,
    indptr: npt.NDArray[np.int64],
    user_next: npt.NDArray[np.int64],
    out_tag: npt.NDArray[np.int32],
    out_val: npt.NDArray[np.float64],
    scratch: npt.NDArray[np.void],
) -> None:
    """Write the positive sums as CSR rows sorted by tag (``scratch`` holds the longest row)."""

def row_topk_mask(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float64],
    k: int,
    keep: npt.NDArray[np.uint8],
    scratch: npt.NDArray[np.void],
) -> int:
    """Mark each row's ``k`` largest entries (ties: lower column); returns the number kept."""

def normalize_rows(indptr: npt.NDArray[np.int64], data: npt.NDArray[np.float64], mode: int) -> None:
    """Divide each row in place by its l2 (1), l1 (2) or max (3) norm."""
