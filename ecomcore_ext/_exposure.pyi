"""Type stubs for ecomcore_ext._exposure (exposure re-ranking kernels).

Arguments are not validated here: call through :mod:`ecomcore.exposure`.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

def check_candidates(
    idx: IndexArray, sc: FloatArray, counts: I64, n_cols: int, stamp: I32, n_threads: int
) -> tuple[int, int]:
    """(first bad row or -1, code): 1 index out of range, 2 non-finite score, 3 out of order,
    4 merchant twice in a row; ``stamp`` (threads x n_cols, zero) marks the merchants seen."""

def first_k_stats(idx: IndexArray, sc: FloatArray, counts: I64, k: int, expo: I64, row_score: F64) -> None:
    """Add the first ``min(k, count)`` entries of each row to ``expo``; their score sums to ``row_score``."""

def copy_first_k(idx: IndexArray, sc: FloatArray, counts: I64, k: int, out_idx: IndexArray, out_sc: FloatArray) -> None:
    """The first ``min(k, count)`` entries of every row, padded with -1 / -inf to ``k``."""

def weighted_exposure(idx: IndexArray, counts: I64, weights: F64, out: F64) -> None:
    """``out[m] += weights[j]`` for every valid entry ``(u, j)`` showing merchant ``m``."""

def rerank_pass(
    idx: IndexArray,
    sc: FloatArray,
    counts: I64,
    k: int,
    order: I64,
    cap: int,
    lam: float,
    refresh: int,
    expo: I32,
    less: I32,
    pen: I32,
    prot: U8,
    pmode: int,
    pmin: int,
    ptable: I64,
    cat: I32,
    catcap: int,
    catcnt: I32,
    out_idx: IndexArray,
    out_sc: FloatArray,
    out_len: I64,
    row_score: F64,
    ws_buf: I64,
    ws_adm: U8,
    ws_key: F64,
    ws_pref: U8,
    n_threads: int,
    parallel: bool,
) -> None:
    """One selection pass: users of ``order`` one after another (cap ``cap >= 0`` and/or penalty
    ``lam > 0`` per merchant, exposure counted in ``expo``), or every row independently in
    parallel (``parallel``; per-list rules only).  Output arrays with 0 rows are not written."""

def pref_size() -> int:
    """Bytes of one preference entry (``ws_pref`` holds ``width`` of them per thread)."""
