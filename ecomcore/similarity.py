"""Item-item similarity from co-behaviour: cosine, BM25 and Swing, top-n neighbours per item.

``item_similarity(X)`` takes a users x items interaction matrix X (counts, confidences or
decayed weights; finite, >= 0) and returns S, items x items, holding for every item its
``top_n`` most similar other items.  S feeds :class:`ecomcore.Ranker` (see
:mod:`ecomcore.cobehaviour`).

Formulas (X with explicit zeros dropped; ``n_items`` = columns of X):

* ``cosine``: ``W[u, i] = X[u, i] / ||X[:, i]||_2`` and ``s_ij = sum_u W[u, i] W[u, j]``,
  the cosine of the item columns (implicit's ``CosineRecommender``).
* ``bm25``: implicit's ``bm25_weight`` applied to the items x users matrix, on both sides:
  ``idf_u = log(n_items) - log1p(df_u)`` with ``df_u`` the number of items user u holds,
  ``len_i = sum_u X[u, i]``, ``norm_i = (1 - B) + B * len_i / mean(len)`` (mean over all
  items), ``W[u, i] = X[u, i] (K1 + 1) / (K1 norm_i + X[u, i]) * idf_u`` and
  ``s_ij = sum_u W[u, i] W[u, j]`` (implicit's ``BM25Recommender``; K1 = 1.2, B = 0.75 as its
  defaults).
* ``swing`` (Yang et al., "Large Scale Product Graph Construction for Recommendation in
  E-commerce", 2020), on the structure of X (values ignored):
  ``s_ij = sum over unordered pairs {u, v} of users of i who both hold j of
  w_u w_v / (alpha + |I_u & I_v|)`` with ``I_u`` the items of u (all of them, i and j
  included) and the user-activity weight ``w_u = |I_u| ** -0.5``.  Symmetric.

Options common to every method: ``n_ij`` = number of users holding both i and j (for Swing:
kept users of i, see below); a pair needs ``n_ij >= min_support``; ``shrink > 0`` multiplies
the score by ``n_ij / (n_ij + shrink)`` (support shrinkage, Koren 2008).

Neighbours: a candidate j of i is any other item sharing at least one user with i (for
Swing: one user *pair*), whatever its score; the row keeps the ``top_n`` best by descending
score, ties by ascending item id.  The item itself is never stored.  With
``count_self=True`` (cosine, BM25) the item competes for one of the ``top_n`` places and is
then dropped, which is implicit's ``ItemItemRecommender(K=top_n)`` convention (its K
neighbours include the item itself); then a row keeps ``top_n - 1`` other items whenever the
item ranks among its own top n.

Kernels: with ``shrink == 0`` and ``min_support == 1`` cosine and BM25 are the self-join
``W.T @ W`` run through the fused top-k kernel of :func:`ecomcore.sparse_topk` (the item
itself excluded through its exclusion list), never forming items x items.  Otherwise, and
for Swing, :mod:`ecomcore_ext._swing` counts supports per pair in the same row-by-row way.
Swing's cost per item is quadratic in its users, so each item keeps at most
``max_users_per_item`` users: the least active ones (fewest distinct items; ties: lower
user id), which carry the largest weights ``w_u`` and the cheapest intersections; the
choice is deterministic.  Memory: inputs + output (``n_items * top_n``) + per thread
O(n_items) scratch.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from ecomcore._sizes import check_dense_columns
from ecomcore._validation import (
    as_csr,
    check_int,
    check_real,
    index_dtype_for_sizes,
    resolve_threads,
    value_dtype_of,
)
from ecomcore.ranking import _make_workspace, _scan_min
from ecomcore.topk import TopK
from ecomcore_ext import _columns, _swing, _topk

__all__ = ["item_similarity", "SIMILARITY_METHODS"]

#: Methods understood by :func:`item_similarity`.
SIMILARITY_METHODS = ("cosine", "bm25", "swing")

ArrayLike = Any


def _weights(x: sp.csr_array, method: str, K1: float, B: float) -> sp.csr_array:
    """Users x items weights W (float64) for the cosine / BM25 self-join."""
    n_items = x.shape[1]
    # a new matrix sharing x's structure; its data array is replaced below, never written
    w = sp.csr_array((np.asarray(x.data, np.float64), x.indices, x.indptr), shape=x.shape)
    if method == "cosine":
        sumsq = np.zeros(n_items)
        _columns.column_sumsq(w.indices, w.data, sumsq)  # bincount's sums, without temporaries
        out = np.empty_like(w.data)
        _columns.divide_columns(w.indices, w.data, np.sqrt(sumsq), out)
        w.data = out
        return w
    df = np.diff(w.indptr).astype(np.float64)  # items per user
    idf = np.log(float(n_items)) - np.log1p(df)
    length = np.bincount(w.indices, weights=w.data, minlength=n_items)
    avg = length.mean()
    norm = (1.0 - B) + B * length / avg
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    w.data = w.data * (K1 + 1.0) / (K1 * norm[w.indices] + w.data) * idf[rows]
    return w


def _cast_transpose(w: sp.csr_array, vdt: np.dtype) -> tuple[sp.csr_array, sp.csr_array]:
    """W in ``vdt`` and its transpose (items x users, sorted indices), in one pass."""
    idt = w.indptr.dtype  # holds nnz
    indices = w.indices.astype(idt, copy=False)
    data = np.empty(w.nnz, vdt)
    t_indptr = np.empty(w.shape[1] + 1, idt)
    t_indices = np.empty(w.nnz, idt)
    t_data = np.empty(w.nnz, vdt)
    bad = _columns.cast_transpose(
        w.indptr, indices, w.data, data, t_indptr, t_indices, t_data, np.empty(w.shape[1], idt)
    )
    if bad:
        raise ValueError(f"user_items: the weights overflow {vdt}; pass float64")
    out = sp.csr_array((data, indices, w.indptr), shape=w.shape)
    out.has_sorted_indices = w.has_sorted_indices
    wt = sp.csr_array((t_data, t_indices, t_indptr), shape=(w.shape[1], w.shape[0]))
    wt.has_sorted_indices = True
    return out, wt


def _empty(n: int, vdt: np.dtype) -> sp.csr_array:
    return sp.csr_array((np.zeros(0, vdt), np.zeros(0, np.int32), np.zeros(n + 1, np.int32)), shape=(n, n))


def _drop_self(s: sp.csr_array) -> sp.csr_array:
    """Remove the diagonal entries (kept scores are untouched)."""
    coo = s.tocoo()
    keep = coo.row != coo.col
    out = sp.csr_array((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=s.shape)
    out.sort_indices()
    return out


_ADVICE = "keep fewer item columns (e.g. drop items with too few interactions) and renumber them"


def _scratch(nt: int, n: int, idt: np.dtype, vdt: np.dtype) -> tuple:
    per_thread = n * (8 + 4 + 2 * idt.itemsize + np.dtype(vdt).itemsize)
    check_dense_columns(n, "user_items", what="items", threads=nt, per_thread_bytes=per_thread, advice=_ADVICE)
    return (
        np.zeros((nt, n), np.float64),
        np.zeros((nt, n), np.int32),
        np.empty((nt, n), idt),
    ), (np.empty((nt, n), vdt), np.empty((nt, n), idt))


#: Padded output of one kernel call, in bytes: the block is written, compacted into the CSR
#: arrays and reused, so it stays in cache and the padding is never faulted in.
_BLOCK_BYTES = 1 << 22


def _selfjoin(wt: sp.csr_array, w: sp.csr_array, width: int, count_self: bool, nt: int, vdt: np.dtype) -> sp.csr_array:
    """Top-``width`` of each row of ``wt @ w`` (items x items), written in column order as CSR.

    The item itself is excluded in the kernel, or (``count_self``) kept through the selection
    and dropped while compacting.  ``wt`` is ``w.T`` with sorted indices; both are finite.
    """
    n = w.shape[1]
    # the output's indptr runs up to n * width, in the kernel's index dtype
    idt = index_dtype_for_sizes(w.nnz, n + 1, n * width)
    check_dense_columns(
        n, "user_items", what="items", threads=nt, width=width, value_dtype=vdt, index_dtype=idt, advice=_ADVICE
    )
    a = (wt.indptr.astype(idt, copy=False), wt.indices.astype(idt, copy=False), np.ascontiguousarray(wt.data, vdt))
    b = (w.indptr.astype(idt, copy=False), w.indices.astype(idt, copy=False), np.ascontiguousarray(w.data, vdt))
    ones = np.ones(n, vdt)
    # Positive mode (the kernel tells reached items by a sum > 0, no marks): needs every
    # product of two weights to be > 0, i.e. no weight <= 0 and no product underflowing to 0.
    # Cosine weights always qualify; BM25's idf is <= 0 for users holding nearly every item.
    lo = float(w.data.min()) if w.nnz else 1.0
    positive = lo > 0 and lo * lo > float(np.finfo(vdt).tiny)
    ws = _make_workspace(nt, n, width, ones, idt)
    heads = _row_heads(wt, w, a[0], b, width, idt) if positive else (None, None)
    # the accumulation streams B's indices: 16 bits each when the items allow
    b16 = w.indices.astype(np.uint16) if positive and n <= 1 << 16 else None
    itemsize = np.dtype(vdt).itemsize + idt.itemsize
    rows = max(64 * nt, _BLOCK_BYTES // (width * itemsize))
    rows = min(rows, n)
    buf_idx = np.empty((rows, width), idt)
    buf_sc = np.empty((rows, width), vdt)
    buf_cnt = np.empty(rows, idt)
    indptr = np.zeros(n + 1, idt)
    indices = np.empty(n * width, idt)
    data = np.empty(n * width, vdt)
    empty = np.zeros(0, idt)
    pos = 0
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        m = r1 - r0
        _topk.fused_topk(
            *a, *b, ones, empty, empty, np.zeros(0, vdt), vdt.type(0), empty, empty,
            vdt.type(-np.inf), _scan_min(n), r0, r1, buf_idx[:m], buf_sc[:m], buf_cnt[:m],
            *ws, nt, skip_diag=not count_self, by_index=True, positive=positive,
            head_ptr=heads[0], heads=heads[1], b_indices16=b16,
        )  # fmt: skip
        pos = _topk.compact_rows(buf_idx[:m], buf_sc[:m], buf_cnt[:m], r0, count_self, pos, indptr, indices, data)
    # give the unused tail back (realloc shrinks in place; its pages were never touched)
    indices.resize(pos, refcheck=False)
    data.resize(pos, refcheck=False)
    out = sp.csr_array((data, indices, indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out


def _row_heads(
    wt: sp.csr_array, w: sp.csr_array, a_indptr: np.ndarray, b: tuple, width: int, idt: np.dtype
) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Heads (``_topk.row_heads``) of the users' rows that several single-user items share.

    An item held by one user t has ``w[t, i] * w[t, :]`` as its candidate scores: its row
    then comes from the precomputed best ``width + 1`` of ``w[t]``.  Worth it for users
    holding at least two such items and more than ``width + 1`` items in all (shorter rows
    keep everything but the item itself).  Memory: at most about the stored entries of w.
    """
    single = np.diff(a_indptr) == 1
    if not single.any():
        return None, None
    users = wt.indices[wt.indptr[:-1][single]]
    shared = np.bincount(users, minlength=w.shape[0]) >= 2
    rows = np.flatnonzero(shared & (np.diff(w.indptr) >= width + 2)).astype(idt)
    if rows.size == 0:
        return None, None
    stride = width + 5
    head_ptr = np.full(w.shape[0], -1, idt)
    heads = np.empty(rows.size * stride, idt)
    longest = int(np.diff(w.indptr)[rows].max())
    _topk.row_heads(b[0], b[2], rows, width, head_ptr, heads, np.empty(longest, b[2].dtype), np.empty(longest, idt))
    return head_ptr, heads


def _kept_users(xt: sp.csr_array, activity: np.ndarray, cap: int) -> sp.csr_array:
    """Each item's ``cap`` least active users (ties: lower id), as an items x users structure."""
    counts = np.diff(xt.indptr)
    if counts.size == 0 or counts.max() <= cap:
        return xt
    rows = np.repeat(np.arange(xt.shape[0]), counts)
    order = np.lexsort((xt.indices, activity[xt.indices], rows))
    pos = np.arange(order.shape[0]) - np.repeat(xt.indptr[:-1], counts)
    keep = order[pos < cap]
    out = sp.csr_array((np.ones(keep.shape[0]), (rows[keep], xt.indices[keep])), shape=xt.shape)
    out.sort_indices()
    return out


def item_similarity(
    user_items: ArrayLike,
    *,
    method: str = "cosine",
    top_n: int = 100,
    shrink: float = 0.0,
    min_support: int = 1,
    alpha: float = 1.0,
    K1: float = 1.2,
    B: float = 0.75,
    max_users_per_item: int = 100,
    count_self: bool = False,
    n_threads: Optional[int] = None,
) -> sp.csr_array:
    """Top-n item-item similarities from a users x items interaction matrix.

    See the module docstring for the exact formulas and conventions.

    Parameters
    ----------
    user_items : sparse matrix or array, shape (n_users, n_items)
        Interactions X (finite, >= 0); explicit zeros are ignored.  float32 input gives a
        float32 result, anything else float64.
    method : {"cosine", "bm25", "swing"}, default "cosine"
        Similarity.
    top_n : int, default 100
        Neighbours kept per item (>= 1).
    shrink : float, default 0.0
        Support shrinkage ``n_ij / (n_ij + shrink)`` (>= 0; 0: none).
    min_support : int, default 1
        Users an item pair must share (>= 1).
    alpha : float, default 1.0
        Swing's smoothing term (>= 0); other methods ignore it.
    K1, B : float, default 1.2, 0.75
        BM25 saturation (>= 0) and length normalisation (in [0, 1]); other methods ignore them.
    max_users_per_item : int, default 100
        Swing only: users kept per item (>= 2), the least active ones (ties: lower user id).
    count_self : bool, default False
        Cosine/BM25: let the item itself take one of the ``top_n`` places before it is
        dropped (implicit's ``K`` convention).  Not available for Swing.
    n_threads : int, optional
        Threads (default: every core the process may use).  Results do not depend on it.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(n_items, n_items)``, canonical (sorted indices), no diagonal; row i holds at
        most ``top_n`` entries (an exact score of 0 may be stored for cosine/BM25 candidates).

    Raises
    ------
    ValueError, TypeError
        On an unknown method, bad parameters, or invalid / negative ``user_items``.
    """
    if not isinstance(method, str) or method not in SIMILARITY_METHODS:
        raise ValueError(f"method: expected one of {SIMILARITY_METHODS}, got {method!r}")
    top_n = check_int(top_n, "top_n")
    shrink = check_real(shrink, "shrink", minimum=0.0)
    min_support = check_int(min_support, "min_support")
    alpha = check_real(alpha, "alpha", minimum=0.0)
    K1 = check_real(K1, "K1", minimum=0.0)
    B = check_real(B, "B", minimum=0.0)
    if B > 1:
        raise ValueError(f"B: must be in [0, 1], got {B}")
    max_users_per_item = check_int(max_users_per_item, "max_users_per_item", minimum=2)
    if not isinstance(count_self, (bool, np.bool_)):
        raise TypeError(f"count_self: expected a bool, got {type(count_self).__name__}")
    if count_self and method == "swing":
        raise ValueError("count_self: not available for method='swing' (no self-similarity is defined)")
    n_threads = resolve_threads(n_threads)
    vdt = np.dtype(value_dtype_of(user_items))
    parts = as_csr(user_items, "user_items", value_dtype=np.dtype(np.float64))
    if parts.data.size and parts.data.min() < 0:
        raise ValueError(f"user_items: values must be >= 0, found {parts.data.min()}")
    n_users, n_items = parts.shape
    x = sp.csr_array((parts.data, parts.indices, parts.indptr), shape=parts.shape)
    if x.nnz == 0 or n_items == 0:
        return _empty(n_items, vdt)
    width = min(top_n, n_items)
    nt = min(n_threads, n_items) if _topk.openmp_enabled() else 1
    idt = index_dtype_for_sizes(x.nnz, n_items + 1, n_users + 1)

    if method != "swing":
        w = _weights(x, method, K1, B)
        if not np.isfinite(w.data).all():
            raise ValueError("user_items: the weights overflow float64")
        w, wt = _cast_transpose(w, vdt)
        if shrink == 0 and min_support == 1:
            return _selfjoin(wt, w, width, bool(count_self), nt, vdt)
        if int(np.diff(wt.indptr).max()) >= np.iinfo(np.int32).max:
            raise ValueError("user_items: an item has 2**31 or more users; support counts are int32")
        a = (wt.indptr.astype(idt), wt.indices.astype(idt), np.ascontiguousarray(wt.data, vdt))
        b = (w.indptr.astype(idt), w.indices.astype(idt), np.ascontiguousarray(w.data, vdt))
        out_idx = np.empty((n_items, width), idt)
        out_sc = np.empty((n_items, width), vdt)
        out_cnt = np.zeros(n_items, idt)
        (acc, cnt, touched), (cs, ci) = _scratch(nt, n_items, idt, vdt)
        _swing.cooc_topk(*a, *b, min_support, shrink, bool(count_self), out_idx, out_sc, out_cnt,
                         acc, cnt, touched, cs, ci, nt)  # fmt: skip
        res = TopK(out_idx, out_sc, out_cnt, n_items).to_csr()
        return _drop_self(res) if count_self else res

    # Swing
    ui = sp.csr_array((np.ones(x.nnz), x.indices, x.indptr), shape=x.shape)
    activity = np.diff(ui.indptr)
    user_weight = np.zeros(n_users, np.float64)
    active = activity > 0
    user_weight[active] = 1.0 / np.sqrt(activity[active])
    iu = _kept_users(sp.csr_array(ui.T.tocsr()), activity, max_users_per_item)
    iu.sort_indices()
    out_idx = np.empty((n_items, width), idt)
    out_sc = np.empty((n_items, width), vdt)
    out_cnt = np.zeros(n_items, idt)
    (acc, cnt, touched), (cs, ci) = _scratch(nt, n_items, idt, vdt)
    longest = int(activity.max())
    common = np.empty((nt, max(longest, 1)), idt)
    _swing.swing_topk(
        iu.indptr.astype(idt), iu.indices.astype(idt), ui.indptr.astype(idt), ui.indices.astype(idt),
        user_weight, alpha, min_support, shrink, out_idx, out_sc, out_cnt,
        acc, cnt, touched, common, cs, ci, nt,
    )  # fmt: skip
    return TopK(out_idx, out_sc, out_cnt, n_items).to_csr()
