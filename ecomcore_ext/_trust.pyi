"""Type stubs for ecomcore_ext._trust (forward-decay fold kernels of the trust engine).

Arguments are not validated here: call through :mod:`ecomcore.trust`.
"""

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]
TimeArray = npt.NDArray[np.float64] | npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
SlotArray = npt.NDArray[np.void]

TIME_LIMIT: float

def validate_events(
    merchant: IdArray,
    indicator: IdArray,
    value: F64,
    time: TimeArray,
    n_merchants: int,
    lo: F64,
    hi: F64,
    binary: U8,
) -> tuple[int, float, float]:
    """(first bad position or -1, smallest time, largest time) over the events checked."""

def estimate_keys(
    merchant: IdArray,
    indicator: IdArray,
    time: TimeArray,
    buyer: IdArray,
    n_ind: int,
    dedupe_seconds: float,
) -> float:
    """HyperLogLog estimate of the distinct deduplication keys among the buyer events."""

def map_fixed_names(
    col: U8,
    names: U8,
    name_ids: I64,
    slots: I64,
    out: I64,
) -> int:
    """Map fixed-width strings (raw byte rows) to ids into ``out``; first unknown position or -1."""

def check_buyers(buyer: IdArray) -> tuple[int, int]:
    """(first position of a buyer id < -1 or -1, number of buyer ids >= 0)."""

def fold_sums(
    merchant: IdArray,
    indicator: IdArray,
    value: F64,
    time: TimeArray,
    acc: F64,
    veto: F64,
    veto_flag: U8,
    lam: float,
    t_ref: float,
) -> None:
    """Add every event into ``acc`` with weight ``exp(lam * (t - t_ref))``; record vetoes."""

def fold_dedupe(
    merchant: IdArray,
    indicator: IdArray,
    value: F64,
    time: TimeArray,
    buyer: IdArray,
    start: int,
    acc: F64,
    veto: F64,
    veto_flag: U8,
    lam: float,
    t_ref: float,
    table: SlotArray,
    used: int,
    max_used: int,
    dedupe_seconds: float,
) -> tuple[int, int]:
    """Fold from ``start``: buyer events into ``table``, others into ``acc``; (next position, slots used)."""

def table_insert(
    table: SlotArray,
    cell: I64,
    buyer: I64,
    t: F64,
    v: F64,
    dedupe_seconds: float,
) -> int:
    """Insert entries with the min rule (earliest time, then smallest value); number of new slots."""

def table_rehash(old: SlotArray, new: SlotArray, dedupe_seconds: float) -> int:
    """Insert every occupied slot of ``old`` into the empty table ``new``; number of slots used."""

def table_check(table: SlotArray, dedupe_seconds: float) -> int:
    """First slot breaking the table invariants (reachable from its home slot, unique key) or -1."""

def table_entries(table: SlotArray, cell: I64, buyer: I64, t: F64, v: F64) -> int:
    """Copy the occupied slots (slot order) into the outputs; number copied."""

def write_stats(acc: F64, scale: float, n: F64, s: F64, s2: F64, events: I64) -> None:
    """``n, s, s2 = scale * acc[:, :3]``, ``events = acc[:, 3]``."""

def scale_cells(acc: F64, scale: float, out: F64) -> None:
    """``out[:, :3] = scale * acc[:, :3]``, ``out[:, 3] = acc[:, 3]``."""

def add_table_cells(table: SlotArray, lam: float, now: float, out: F64) -> None:
    """Add each kept deduplicated event, weight ``exp(lam * (t - now))``, to its cell of ``out``."""
