# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Item-item similarity kernels that need more than a weighted self-join: Swing, and the
co-occurrence join with support counts (for ``min_support`` / ``shrink``).

Loops only: every argument is assumed validated by :mod:`ecomcore.similarity` (CSR arrays
canonical, indices in range, values finite, scratch sized as documented in the ``.pyi``).
The GIL is released for the whole item loop; each item is computed by one thread from
read-only inputs in a fixed order, so results do not depend on the thread count.
"""
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t

from ecomcore_ext._types cimport floating, index_t
from ecomcore_ext._select cimport select_best, sort_best_first


cdef inline Py_ssize_t _emit(
    Py_ssize_t i, Py_ssize_t n_touched, index_t* touched, double* acc, int32_t* cnt,
    int64_t min_support, double shrink, bint keep_self, bint need_nonzero, Py_ssize_t top_n,
    floating* cand_s, index_t* cand_i, index_t* out_i, floating* out_s,
) noexcept nogil:
    """Select the row's best ``top_n`` candidates, write them best first, reset the scratch."""
    cdef Py_ssize_t t, n = 0, w
    cdef index_t j
    cdef double s, c
    for t in range(n_touched):
        j = touched[t]
        c = cnt[j]
        if (j != i or keep_self) and c >= min_support and (acc[j] != 0 or not need_nonzero):
            s = acc[j]
            if shrink > 0:
                s = s * (c / (c + shrink))
            cand_s[n] = <floating>s
            cand_i[n] = j
            n += 1
        acc[j] = 0
        cnt[j] = 0
    w = n if n < top_n else top_n
    if n > w:
        select_best(cand_s, cand_i, n, w)
    sort_best_first(cand_s, cand_i, w)
    for t in range(w):
        out_i[t] = cand_i[t]
        out_s[t] = cand_s[t]
    for t in range(w, top_n):
        out_i[t] = -1
        out_s[t] = -INFINITY
    return w


def cooc_topk(
    const index_t[::1] a_indptr, const index_t[::1] a_indices, const floating[::1] a_data,
    const index_t[::1] b_indptr, const index_t[::1] b_indices, const floating[::1] b_data,
    int64_t min_support, double shrink, bint keep_self,
    index_t[:, ::1] out_idx, floating[:, ::1] out_score, index_t[::1] out_count,
    double[:, ::1] ws_acc, int32_t[:, ::1] ws_cnt, index_t[:, ::1] ws_touched,
    floating[:, ::1] ws_cand_s, index_t[:, ::1] ws_cand_i,
    int n_threads,
):
    """Top-n of ``s_ij = (A[i] @ B)[j] * n_ij / (n_ij + shrink)`` with support ``n_ij`` (see .pyi)."""
    cdef Py_ssize_t n_rows = a_indptr.shape[0] - 1
    cdef Py_ssize_t top_n = out_idx.shape[1]
    cdef Py_ssize_t i, p, q, nt
    cdef int tid
    cdef index_t u, j
    cdef double a
    cdef double* acc
    cdef int32_t* cnt
    cdef index_t* touched
    if n_rows <= 0 or top_n <= 0:
        return
    with nogil:
        for i in prange(n_rows, schedule="dynamic", chunksize=16, num_threads=n_threads):
            tid = threadid()
            acc = &ws_acc[tid, 0]
            cnt = &ws_cnt[tid, 0]
            touched = &ws_touched[tid, 0]
            nt = 0
            for p in range(a_indptr[i], a_indptr[i + 1]):
                u = a_indices[p]
                a = a_data[p]
                for q in range(b_indptr[u], b_indptr[u + 1]):
                    j = b_indices[q]
                    if cnt[j] == 0:
                        touched[nt] = j
                        nt = nt + 1
                    cnt[j] = cnt[j] + 1
                    acc[j] = acc[j] + a * b_data[q]
            out_count[i] = <index_t>_emit(
                i, nt, touched, acc, cnt, min_support, shrink, keep_self, False, top_n,
                &ws_cand_s[tid, 0], &ws_cand_i[tid, 0], &out_idx[i, 0], &out_score[i, 0],
            )


cdef inline Py_ssize_t _intersect(
    const index_t* x, Py_ssize_t nx, const index_t* y, Py_ssize_t ny, index_t* out
) noexcept nogil:
    """Common values of two ascending lists, written to ``out``; returns how many."""
    cdef Py_ssize_t a = 0, b = 0, n = 0
    while a < nx and b < ny:
        if x[a] < y[b]:
            a += 1
        elif x[a] > y[b]:
            b += 1
        else:
            out[n] = x[a]
            n += 1
            a += 1
            b += 1
    return n


def swing_topk(
    const index_t[::1] iu_indptr, const index_t[::1] iu_indices,
    const index_t[::1] ui_indptr, const index_t[::1] ui_indices,
    const double[::1] user_weight, double alpha,
    int64_t min_support, double shrink,
    index_t[:, ::1] out_idx, floating[:, ::1] out_score, index_t[::1] out_count,
    double[:, ::1] ws_acc, int32_t[:, ::1] ws_cnt, index_t[:, ::1] ws_touched,
    index_t[:, ::1] ws_common,
    floating[:, ::1] ws_cand_s, index_t[:, ::1] ws_cand_i,
    int n_threads,
):
    """Top-n Swing neighbours of every item (formula in the .pyi)."""
    cdef Py_ssize_t n_items = iu_indptr.shape[0] - 1
    cdef Py_ssize_t top_n = out_idx.shape[1]
    cdef Py_ssize_t i, p, p2, q, nt, nc, c
    cdef int tid
    cdef index_t u, v, j
    cdef double coef, wu
    cdef double* acc
    cdef int32_t* cnt
    cdef index_t* touched
    cdef index_t* common
    if n_items <= 0 or top_n <= 0:
        return
    with nogil:
        for i in prange(n_items, schedule="dynamic", chunksize=4, num_threads=n_threads):
            tid = threadid()
            acc = &ws_acc[tid, 0]
            cnt = &ws_cnt[tid, 0]
            touched = &ws_touched[tid, 0]
            common = &ws_common[tid, 0]
            nt = 0
            # support: how many kept users of i hold j (also lists every reachable j)
            for p in range(iu_indptr[i], iu_indptr[i + 1]):
                u = iu_indices[p]
                for q in range(ui_indptr[u], ui_indptr[u + 1]):
                    j = ui_indices[q]
                    if cnt[j] == 0:
                        touched[nt] = j
                        nt = nt + 1
                    cnt[j] = cnt[j] + 1
            # every unordered pair of kept users u < v of i
            for p in range(iu_indptr[i], iu_indptr[i + 1]):
                u = iu_indices[p]
                wu = user_weight[u]
                for p2 in range(p + 1, iu_indptr[i + 1]):
                    v = iu_indices[p2]
                    nc = _intersect(
                        &ui_indices[ui_indptr[u]], ui_indptr[u + 1] - ui_indptr[u],
                        &ui_indices[ui_indptr[v]], ui_indptr[v + 1] - ui_indptr[v], common,
                    )
                    coef = wu * user_weight[v] / (alpha + nc)
                    for c in range(nc):
                        acc[common[c]] = acc[common[c]] + coef
            out_count[i] = <index_t>_emit(
                i, nt, touched, acc, cnt, min_support, shrink, False, True, top_n,
                &ws_cand_s[tid, 0], &ws_cand_i[tid, 0], &out_idx[i, 0], &out_score[i, 0],
            )
