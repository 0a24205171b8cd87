# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused sparse interest x trust top-k kernels.

Loops only: every argument is assumed validated by :mod:`ecomcore` (index ranges, shapes, finite
values, no overflow).  Nothing here allocates Python objects inside the parallel region, and the
GIL is released for the whole row loop.
"""
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int32_t, int64_t

from ecomcore_ext._types cimport floating, index_t
from ecomcore_ext._select cimport kth_largest, select_best, sort_best_first

cdef extern from "_simd.h" nogil:
    float ec_max_f32(const float *p, Py_ssize_t n)
    double ec_max_f64(const double *p, Py_ssize_t n)

cdef extern from *:
    """
    #ifndef ECOMCORE_OPENMP
    #define ECOMCORE_OPENMP 0
    #endif
    #if ECOMCORE_OPENMP
    #include <omp.h>
    static int ec_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int ec_max_threads(void) { return 1; }
    #endif
    """
    int ECOMCORE_OPENMP
    int ec_max_threads() nogil

# Selection works on groups of GROUP consecutive candidate scores: one vectorised max per group
# decides whether any of them can enter the top-k.
cdef enum:
    GROUP = 8
    GROUP_LONG = 64


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP."""
    return bool(ECOMCORE_OPENMP)


def max_threads():
    """Return OpenMP's default thread count (1 for a serial build)."""
    return ec_max_threads()


cdef inline floating _chunk_max(const floating* p, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return ec_max_f32(p, n)
    else:
        return ec_max_f64(p, n)


cdef inline Py_ssize_t _accumulate(
    Py_ssize_t a_lo, Py_ssize_t a_hi, const index_t* a_indices, const floating* a_data,
    const index_t* b_indptr, const index_t* b_indices, const floating* b_data,
    const floating* weight,
    Py_ssize_t f_lo, Py_ssize_t f_hi, const index_t* f_indices, const floating* f_data,
    floating follow_weight,
    floating* acc, unsigned char* mark, floating* pair, index_t* touched, bint sparse,
) noexcept nogil:
    """Add one user's interest and follow parts (unweighted) into the accumulator.

    Sparse rows (``sparse``) use ``pair``: ``pair[2m]`` is merchant m's running sum, NaN while
    not reached (the workspace invariant), so a reached merchant whose partial sums cancel to
    exactly 0 stays distinct from an unreached one; ``pair[2m + 1]`` holds ``w[m]`` so that the
    selection reads sum and weight from one cache line.  Each newly reached merchant is appended
    to ``touched`` and their number is returned.  Dense rows use ``acc`` (all 0 on entry) and
    set ``mark[m] = 1`` (plain stores, no data-dependent branch in the hot loop); 0 is returned.
    """
    cdef Py_ssize_t p, q, q_hi, nt = 0
    cdef index_t m
    cdef floating a, v, x
    for p in range(a_lo, a_hi):
        a = a_data[p]
        q_hi = b_indptr[a_indices[p] + 1]
        q = b_indptr[a_indices[p]]
        if sparse:
            while q < q_hi:
                m = b_indices[q]
                v = pair[2 * <Py_ssize_t>m]
                x = a * b_data[q]
                if v != v:
                    pair[2 * <Py_ssize_t>m] = x
                    touched[nt] = m
                    nt += 1
                else:
                    pair[2 * <Py_ssize_t>m] = v + x
                q += 1
        else:
            while q < q_hi:
                m = b_indices[q]
                mark[m] = 1
                acc[m] += a * b_data[q]
                q += 1
    for p in range(f_lo, f_hi):
        m = f_indices[p]
        if weight[m] > 0:
            x = follow_weight * f_data[p]
            if not sparse:
                mark[m] = 1
                acc[m] += x
            else:
                v = pair[2 * <Py_ssize_t>m]
                if v != v:
                    pair[2 * <Py_ssize_t>m] = x
                    touched[nt] = m
                    nt += 1
                else:
                    pair[2 * <Py_ssize_t>m] = v + x
    return nt


cdef inline void _offer(floating v, index_t m, floating* bs, index_t* bi, Py_ssize_t* nb,
                        Py_ssize_t cap, Py_ssize_t width, floating* kv, index_t* ki,
                        bint* full) noexcept nogil:
    """Append a candidate; when the buffer is full keep only the best ``width``.

    After a compaction ``kv``/``ki`` hold the current k-th best, which every later candidate
    must beat to be offered at all.
    """
    bs[nb[0]] = v
    bi[nb[0]] = m
    nb[0] += 1
    if nb[0] == cap:
        select_best(bs, bi, cap, width)
        nb[0] = width
        kv[0] = bs[width - 1]
        ki[0] = bi[width - 1]
        full[0] = True


cdef void _topk_row(
    Py_ssize_t u,
    const index_t* a_indptr, const index_t* a_indices, const floating* a_data,
    const index_t* b_indptr, const index_t* b_indices, const floating* b_data,
    const floating* weight, Py_ssize_t n_cols,
    bint has_f, const index_t* f_indptr, const index_t* f_indices, const floating* f_data,
    floating follow_weight,
    bint has_e, const index_t* e_indptr, const index_t* e_indices,
    floating threshold, Py_ssize_t scan_min, Py_ssize_t width,
    index_t* out_idx, floating* out_score, index_t* out_count,
    floating* acc, unsigned char* mark, floating* pair, index_t* touched,
    floating* val, floating* gm, floating* gs, index_t* gi, Py_ssize_t gcap,
    floating* bs, index_t* bi, Py_ssize_t cap,
) noexcept nogil:
    # Selection in two passes over the row's candidates:
    # 1. sparse rows gather each touched merchant's weighted score into ``val`` (NaN when
    #    excluded), resetting its sum; then the maximum of every G consecutive scores goes to
    #    ``gm`` (G = 64, halved down to 8 while that gives fewer than 8 * width groups);
    # 2. the width-th largest group maximum is a lower bound of the width-th best score (the
    #    best ``width`` groups each hold a candidate at least that large), so only groups and
    #    values reaching it are offered to a candidate buffer of ``cap`` (> width) pairs, which
    #    introselect cuts back to the best ``width`` whenever it fills (raising the bar again).
    # The weight multiplies the finished sum, as in the formula, so exact cancellations stay
    # exactly 0.
    cdef Py_ssize_t p, g, j, j0, j1, nt, n_items, n_groups, G, nb = 0
    cdef floating buf[GROUP_LONG]
    cdef Py_ssize_t f_lo = 0, f_hi = 0
    cdef Py_ssize_t work = 0
    cdef bint sparse, full = False
    cdef index_t m, ki = 0
    cdef floating v, kv = 0, bar = -INFINITY

    for p in range(a_indptr[u], a_indptr[u + 1]):
        work += b_indptr[a_indices[p] + 1] - b_indptr[a_indices[p]]
    if has_f:
        f_lo = f_indptr[u]
        f_hi = f_indptr[u + 1]
        work += f_hi - f_lo
    sparse = work < scan_min

    nt = _accumulate(a_indptr[u], a_indptr[u + 1], a_indices, a_data,
                     b_indptr, b_indices, b_data, weight,
                     f_lo, f_hi, f_indices, f_data, follow_weight,
                     acc, mark, pair, touched, sparse)
    if has_e:
        # An excluded merchant goes back to "not reached" (sparse rows: it may stay in the
        # touched list, where its NaN is skipped and reset).
        for p in range(e_indptr[u], e_indptr[u + 1]):
            if sparse:
                pair[2 * <Py_ssize_t>e_indices[p]] = NAN
            else:
                mark[e_indices[p]] = 0
                acc[e_indices[p]] = 0

    # pass 1: group maxima
    if sparse:
        n_items = nt
        for j in range(nt):
            m = touched[j]
            val[j] = pair[2 * <Py_ssize_t>m] * pair[2 * <Py_ssize_t>m + 1]
            pair[2 * <Py_ssize_t>m] = NAN
    else:
        n_items = n_cols
    # about 8 * width groups or more: the bar then sits close to the true k-th best
    # (never more groups than the ``gm`` scratch holds)
    G = GROUP_LONG
    while G > GROUP and n_items < 8 * G * width and (n_items + G // 2 - 1) // (G // 2) <= gcap:
        G //= 2
    n_groups = (n_items + G - 1) // G
    for g in range(n_groups):
        j0 = g * G
        j1 = j0 + G
        if j1 > n_items:
            j1 = n_items
        if sparse:
            gm[g] = _chunk_max(val + j0, j1 - j0)
        else:
            for j in range(j0, j1):
                buf[j - j0] = acc[j] * weight[j]
            gm[g] = _chunk_max(buf, j1 - j0)
    if n_groups > width:
        memcpy(gs, gm, n_groups * sizeof(floating))
        bar = kth_largest(gs, n_groups, width)
        if not sparse and not bar > 0:
            # dense rows: entries that are not candidates hold exactly 0 and may be a group's
            # maximum, so only a positive bar is known to come from real candidates
            bar = -INFINITY

    # pass 2: offer what can still enter the top-k
    for g in range(n_groups):
        v = gm[g]
        if not (v > threshold and v >= bar and (not full or v >= kv)):
            continue
        j0 = g * G
        j1 = j0 + G
        if j1 > n_items:
            j1 = n_items
        for j in range(j0, j1):
            if sparse:
                v = val[j]
                m = touched[j]
            else:
                v = acc[j] * weight[j]
                m = <index_t>j
                if not mark[j]:
                    continue
            if v > threshold and v >= bar and (not full or v > kv or (v == kv and m < ki)):
                _offer(v, m, bs, bi, &nb, cap, width, &kv, &ki, &full)
    if not sparse:
        memset(acc, 0, n_cols * sizeof(floating))
        memset(mark, 0, n_cols)

    if nb > width:
        select_best(bs, bi, nb, width)
        nb = width
    sort_best_first(bs, bi, nb)
    for j in range(nb):
        out_idx[j] = bi[j]
        out_score[j] = bs[j]
    for j in range(nb, width):
        out_idx[j] = -1
        out_score[j] = -INFINITY
    out_count[0] = <index_t>nb


def fused_topk(
    const index_t[::1] a_indptr, const index_t[::1] a_indices, const floating[::1] a_data,
    const index_t[::1] b_indptr, const index_t[::1] b_indices, const floating[::1] b_data,
    const floating[::1] weight,
    const index_t[::1] f_indptr, const index_t[::1] f_indices, const floating[::1] f_data,
    floating follow_weight,
    const index_t[::1] e_indptr, const index_t[::1] e_indices,
    floating threshold, Py_ssize_t scan_min,
    Py_ssize_t row_start, Py_ssize_t row_end,
    index_t[:, ::1] out_idx, floating[:, ::1] out_score, index_t[::1] out_count,
    floating[:, ::1] ws_acc, unsigned char[:, ::1] ws_mark, floating[:, ::1] ws_pair,
    index_t[:, ::1] ws_touched, floating[:, ::1] ws_val, floating[:, ::1] ws_gm,
    floating[:, ::1] ws_gs, index_t[:, ::1] ws_gi,
    floating[:, ::1] ws_buf_s, index_t[:, ::1] ws_buf_i,
    int n_threads,
):
    """Top-k merchants for users ``row_start <= u < row_end`` (see ``_topk.pyi``)."""
    cdef Py_ssize_t n_cols = weight.shape[0]
    cdef Py_ssize_t width = out_idx.shape[1]
    cdef bint has_f = f_indptr.shape[0] > 0
    cdef bint has_e = e_indptr.shape[0] > 0
    cdef Py_ssize_t u, r, t
    cdef const index_t* f_ip = NULL
    cdef const index_t* f_ix = NULL
    cdef const floating* f_dt = NULL
    cdef const index_t* e_ip = NULL
    cdef const index_t* e_ix = NULL
    if has_f:
        f_ip = &f_indptr[0]
        if f_indices.shape[0] > 0:
            f_ix = &f_indices[0]
            f_dt = &f_data[0]
    if has_e:
        e_ip = &e_indptr[0]
        if e_indices.shape[0] > 0:
            e_ix = &e_indices[0]
    cdef const index_t* a_ix = &a_indices[0] if a_indices.shape[0] > 0 else NULL
    cdef const floating* a_dt = &a_data[0] if a_data.shape[0] > 0 else NULL
    cdef const index_t* b_ix = &b_indices[0] if b_indices.shape[0] > 0 else NULL
    cdef const floating* b_dt = &b_data[0] if b_data.shape[0] > 0 else NULL
    if row_end <= row_start or width == 0:
        return
    for u in prange(row_start, row_end, nogil=True, schedule="dynamic", chunksize=8,
                    num_threads=n_threads):
        t = threadid()
        r = u - row_start
        _topk_row(u, &a_indptr[0], a_ix, a_dt, &b_indptr[0], b_ix, b_dt,
                  &weight[0], n_cols,
                  has_f, f_ip, f_ix, f_dt, follow_weight,
                  has_e, e_ip, e_ix,
                  threshold, scan_min, width,
                  &out_idx[r, 0], &out_score[r, 0], &out_count[r],
                  &ws_acc[t, 0], &ws_mark[t, 0], &ws_pair[t, 0], &ws_touched[t, 0],
                  &ws_val[t, 0], &ws_gm[t, 0], &ws_gs[t, 0], &ws_gi[t, 0], ws_gm.shape[1],
                  &ws_buf_s[t, 0], &ws_buf_i[t, 0], ws_buf_s.shape[1])


def score_row(
    const index_t[::1] a_indices, const floating[::1] a_data,
    const index_t[::1] b_indptr, const index_t[::1] b_indices, const floating[::1] b_data,
    const floating[::1] weight,
    const index_t[::1] f_indices, const floating[::1] f_data, floating follow_weight,
    const index_t[::1] query, floating[::1] out_score, unsigned char[::1] out_reached,
    floating[::1] ws_pair, index_t[::1] ws_touched,
):
    """Accumulate one user exactly as ``fused_topk`` does and read the queried merchants.

    ``ws_pair`` must satisfy the sparse-row invariant on entry (sums NaN, weights in the odd
    slots) and is left so.  Unreached merchants get score 0.
    """
    cdef Py_ssize_t j, nt
    cdef floating v
    cdef const index_t* a_ix = &a_indices[0] if a_indices.shape[0] > 0 else NULL
    cdef const floating* a_dt = &a_data[0] if a_data.shape[0] > 0 else NULL
    cdef const index_t* b_ix = &b_indices[0] if b_indices.shape[0] > 0 else NULL
    cdef const floating* b_dt = &b_data[0] if b_data.shape[0] > 0 else NULL
    cdef const index_t* f_ix = &f_indices[0] if f_indices.shape[0] > 0 else NULL
    cdef const floating* f_dt = &f_data[0] if f_data.shape[0] > 0 else NULL
    with nogil:
        nt = _accumulate(0, a_indices.shape[0], a_ix, a_dt,
                         &b_indptr[0], b_ix, b_dt, &weight[0],
                         0, f_indices.shape[0], f_ix, f_dt, follow_weight,
                         NULL, NULL, &ws_pair[0], &ws_touched[0], True)
        for j in range(query.shape[0]):
            v = ws_pair[2 * <Py_ssize_t>query[j]]
            out_reached[j] = v == v
            out_score[j] = v * ws_pair[2 * <Py_ssize_t>query[j] + 1] if v == v else 0
        for j in range(nt):
            ws_pair[2 * <Py_ssize_t>ws_touched[j]] = NAN
