"""Type stubs for ecomcore_ext._swing (Swing and support-counting item-item top-n kernels).

Arguments are not validated here: call through :func:`ecomcore.item_similarity`.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]

def cooc_topk(
    a_indptr: IndexArray,
    a_indices: IndexArray,
    a_data: FloatArray,
    b_indptr: IndexArray,
    b_indices: IndexArray,
    b_data: FloatArray,
    min_support: int,
    shrink: float,
    keep_self: bool,
    out_idx: IndexArray,
    out_score: FloatArray,
    out_count: IndexArray,
    ws_acc: npt.NDArray[np.float64],
    ws_cnt: npt.NDArray[np.int32],
    ws_touched: IndexArray,
    ws_cand_s: FloatArray,
    ws_cand_i: IndexArray,
    n_threads: int,
) -> None:
    """Top-n per row i of ``s_ij = (sum_u A[i, u] B[u, j]) * n_ij / (n_ij + shrink)``.

    ``n_ij`` is the number of stored products (users holding both i and j); only j with
    ``n_ij >= min_support`` and ``j != i`` (unless ``keep_self``) are candidates, whatever
    their score.  Sums are accumulated in float64 in ascending user order.  Rows sorted by
    descending score, ties by ascending index, padded with -1 / -inf.  Scratch, one row per
    thread: ``ws_acc`` (n_cols, all 0), ``ws_cnt`` (n_cols, all 0), ``ws_touched``,
    ``ws_cand_s``, ``ws_cand_i`` (n_cols each); returned in the same state.
    """

def swing_topk(
    iu_indptr: IndexArray,
    iu_indices: IndexArray,
    ui_indptr: IndexArray,
    ui_indices: IndexArray,
    user_weight: npt.NDArray[np.float64],
    alpha: float,
    min_support: int,
    shrink: float,
    out_idx: IndexArray,
    out_score: FloatArray,
    out_count: IndexArray,
    ws_acc: npt.NDArray[np.float64],
    ws_cnt: npt.NDArray[np.int32],
    ws_touched: IndexArray,
    ws_common: IndexArray,
    ws_cand_s: FloatArray,
    ws_cand_i: IndexArray,
    n_threads: int,
) -> None:
    """Top-n Swing neighbours of every item.

    ``swing(i, j) = sum over unordered pairs u < v of the kept users of i (rows of the
    items x users matrix ``iu``, ascending) that both hold j of
    user_weight[u] * user_weight[v] / (alpha + |I_u & I_v|)``, where ``I_u`` is row u of the
    users x items matrix ``ui`` (ascending item ids).  ``n_ij`` = kept users of i holding j;
    candidates: ``j != i``, a non-zero sum, ``n_ij >= min_support``; the score is multiplied by
    ``n_ij / (n_ij + shrink)``.  Output and scratch as :func:`cooc_topk`, plus ``ws_common``
    (longest row of ``ui`` entries per thread).
    """
