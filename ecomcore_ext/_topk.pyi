"""Type stubs for ecomcore_ext._topk (fused sparse interest x trust top-k kernels).

Arguments are not validated here: call through :mod:`ecomcore`.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]

def openmp_enabled() -> bool:
    """True when the kernels were compiled with OpenMP."""

def max_threads() -> int:
    """OpenMP's default thread count (1 for a serial build)."""

def fused_topk(
    a_indptr: IndexArray,
    a_indices: IndexArray,
    a_data: FloatArray,
    b_indptr: IndexArray,
    b_indices: IndexArray,
    b_data: FloatArray,
    weight: FloatArray,
    f_indptr: IndexArray,
    f_indices: IndexArray,
    f_data: FloatArray,
    follow_weight: float,
    e_indptr: IndexArray,
    e_indices: IndexArray,
    threshold: float,
    scan_min: int,
    row_start: int,
    row_end: int,
    out_idx: IndexArray,
    out_score: FloatArray,
    out_count: IndexArray,
    ws_acc: FloatArray,
    ws_mark: npt.NDArray[np.uint8],
    ws_pair: FloatArray,
    ws_touched: IndexArray,
    ws_val: FloatArray,
    ws_gm: FloatArray,
    ws_gs: FloatArray,
    ws_gi: IndexArray,
    ws_buf_s: FloatArray,
    ws_buf_i: IndexArray,
    n_threads: int,
    skip_diag: bool = False,
    by_index: bool = False,
    positive: bool = False,
    head_ptr: IndexArray | None = None,
    heads: IndexArray | None = None,
    b_indices16: npt.NDArray[np.uint16] | None = None,
) -> None:
    """Top-k of ``(A[u] @ B + follow_weight * F[u]) * weight`` for ``row_start <= u < row_end``.

    Writes rows ``u - row_start`` of ``out_idx``/``out_score``/``out_count``: best first, or
    with ``by_index`` the same entries in ascending merchant order.  All index and value arrays
    share one index dtype, which must hold every merchant index, and one float dtype.  An
    empty ``f_indptr`` or ``e_indptr`` means no follows / no exclusions; ``skip_diag``
    also excludes merchant ``u`` from row ``u`` (self-joins).  ``positive`` is a fast mode
    for weights all 1, no follows and every product ``A[u, t] * B[t, m]`` > 0 (a reached
    merchant's sum is then > 0; ``ws_mark`` and ``ws_pair`` go unused).  Rows whose
    multiply-add count reaches ``scan_min`` select by a chunked scan of every merchant; others
    by their touched list.  Workspaces (one row per thread): ``ws_acc`` all 0, ``ws_mark`` all
    0, ``ws_pair`` with NaN in even and the weights in odd slots, ``ws_touched`` and ``ws_val``
    of ``n_merchants + 1`` entries, group-maximum arrays (``n_merchants // 8 + 2`` entries let
    every row use the finest groups) and candidate buffers of a capacity above twice the
    output width; they are returned in the same state.  ``head_ptr``/``heads`` (from
    ``row_heads``, positive column-order mode only) let a row with one stored entry
    ``A[u, t]`` take its best entries from the precomputed head of ``B[t]`` when the
    threshold is negative.  ``b_indices16`` (positive mode only) is a copy of ``b_indices``
    as 16-bit integers (fewer than 65,536 merchants), which the accumulation then reads.
    """

def row_heads(
    b_indptr: IndexArray,
    b_data: FloatArray,
    rows: IndexArray,
    width: int,
    head_ptr: IndexArray,
    heads: IndexArray,
    ws_s: FloatArray,
    ws_i: IndexArray,
) -> None:
    """Precompute, for each row t of B in ``rows`` (each with at least ``width + 2`` entries),
    its best ``width + 2`` entries by (value desc, position asc).

    Block r of ``width + 5`` entries in ``heads`` (``head_ptr[t] = r * (width + 5)``; other
    entries of ``head_ptr`` stay as the caller set them, -1) holds the positions within the
    row of its ``width + 1`` best entries in ascending order, then the place in that list of
    the rank-``width`` entry, then the positions of the entries ranked ``width - 1``,
    ``width`` and ``width + 1`` (0-based).  ``ws_s``/``ws_i`` hold the longest such row.
    """

def score_row(
    a_indices: IndexArray,
    a_data: FloatArray,
    b_indptr: IndexArray,
    b_indices: IndexArray,
    b_data: FloatArray,
    weight: FloatArray,
    f_indices: IndexArray,
    f_data: FloatArray,
    follow_weight: float,
    query: IndexArray,
    out_score: FloatArray,
    out_reached: npt.NDArray[np.uint8],
    ws_pair: FloatArray,
    ws_touched: IndexArray,
) -> None:
    """One user's weighted scores at ``query``, accumulated exactly as in ``fused_topk``."""

def compact_rows(
    idx: IndexArray,
    score: FloatArray,
    count: IndexArray,
    row_start: int,
    drop_diag: bool,
    pos: int,
    indptr: IndexArray,
    indices: IndexArray,
    data: FloatArray,
) -> int:
    """Append the ``count[r]`` first entries of each padded row ``r`` to CSR arrays.

    Row ``r`` is matrix row ``row_start + r``: its entries go to ``indices``/``data`` from
    ``pos`` on, and ``indptr[row_start + r + 1]`` receives the end position.  ``drop_diag``
    skips an entry whose index equals its matrix row.  Returns the new end position.
    """
