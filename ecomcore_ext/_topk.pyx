# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused sparse interest x trust top-k kernels.

Loops only: every argument is assumed validated by :mod:`ecomcore` (index ranges, shapes, finite
values, no overflow).  Nothing here allocates Python objects inside the parallel region, and the
GIL is released for the whole row loop.
"""
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int32_t, int64_t, uint16_t

from ecomcore_ext._types cimport floating, index_t
from ecomcore_ext._select cimport (
    kth_largest, merge_sort_by_index, select_best, sort_best_first, sort_by_index,
)

cdef extern from "_simd.h" nogil:
    float ec_max_f32(const float *p, Py_ssize_t n)
    double ec_max_f64(const double *p, Py_ssize_t n)

cdef extern from *:
    """
    #ifndef ECOMCORE_OPENMP
    #define ECOMCORE_OPENMP 0
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define EC_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define EC_PREFETCH(p) ((void)0)
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
    void EC_PREFETCH(const void* p) nogil

# Column indices of B as the accumulation reads them: a 16-bit copy when the merchants allow.
ctypedef fused column_t:
    uint16_t
    int32_t
    int64_t

# Selection works on groups of GROUP consecutive candidate scores: one vectorised max per group
# decides whether any of them can enter the top-k.
cdef enum:
    GROUP = 8
    GROUP_LONG = 64
    # rows of B ahead of the current one whose heads the positive accumulation prefetches
    # (paired A/B on the synthetic self-join, 1 to 6 rows ahead: 0.89-0.97x the time)
    PREFETCH_ROWS = 3


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
    cdef Py_ssize_t p, q, q_hi, nt = 0, r
    cdef index_t m
    cdef floating a, v, x
    for p in range(a_lo, a_hi):
        if p + PREFETCH_ROWS < a_hi:
            r = b_indptr[a_indices[p + PREFETCH_ROWS]]
            EC_PREFETCH(b_indices + r)
            EC_PREFETCH(b_data + r)
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


cdef inline Py_ssize_t _accumulate_positive(
    Py_ssize_t a_lo, Py_ssize_t a_hi, const index_t* a_indices, const floating* a_data,
    const index_t* b_indptr, const index_t* b_indices, const uint16_t* b_ix16,
    const floating* b_data, floating* acc, index_t* touched, bint sparse,
) noexcept nogil:
    """``_accumulate`` for the positive mode: every product ``a * b`` is > 0, no follows.

    A sum is then > 0 exactly when the merchant was reached, so ``acc`` alone (all 0 on
    entry) serves both kinds of row: no marks and no (sum, weight) pairs, half the memory
    traffic per multiply-add.  Sparse rows append a merchant to ``touched`` when its sum was
    still 0 (branch-free, as in ``_accumulate``) and return their number.  ``b_ix16`` (or
    NULL) is B's column indices as 16-bit integers (fewer than 65,536 merchants): the same
    loops then stream 6 bytes per product instead of 8 or 12.
    """
    cdef Py_ssize_t p, q, q_hi, nt = 0, r
    for p in range(a_lo, a_hi):
        q = b_indptr[a_indices[p]]
        q_hi = b_indptr[a_indices[p] + 1]
        if p + PREFETCH_ROWS < a_hi:
            # the rows of B come in A's order, at random: start loading a later row's head
            r = b_indptr[a_indices[p + PREFETCH_ROWS]]
            EC_PREFETCH(b_data + r)
            EC_PREFETCH(b_data + r + 16)
            if b_ix16 != NULL:
                EC_PREFETCH(b_ix16 + r)
                EC_PREFETCH(b_ix16 + r + 32)
            else:
                EC_PREFETCH(b_indices + r)
        if b_ix16 != NULL:
            nt = _scatter_positive(b_ix16, b_data, q, q_hi, a_data[p], acc, touched, nt, sparse)
        else:
            nt = _scatter_positive(b_indices, b_data, q, q_hi, a_data[p], acc, touched, nt,
                                   sparse)
    return nt


cdef inline Py_ssize_t _scatter_positive(
    const column_t* cols, const floating* b_data, Py_ssize_t q, Py_ssize_t q_hi, floating a,
    floating* acc, index_t* touched, Py_ssize_t nt, bint sparse,
) noexcept nogil:
    """Add ``a * B[t, :]`` (entries ``q:q_hi``) for ``_accumulate_positive``; returns ``nt``."""
    cdef index_t m
    cdef floating v
    if sparse:
        while q < q_hi:
            m = <index_t>cols[q]
            v = acc[m]
            touched[nt] = m
            nt += v == 0
            acc[m] = v + a * b_data[q]
            q += 1
    else:
        while q < q_hi:
            acc[cols[q]] += a * b_data[q]
            q += 1
    return nt


cdef inline void _exclude(index_t m, bint sparse, bint positive, floating* acc,
                          unsigned char* mark, floating* pair) noexcept nogil:
    """Take merchant ``m`` out of the current row's candidates.

    Dense rows: back to "not reached".  Sparse rows: the sum becomes NaN ("not reached");
    a merchant already in the touched list keeps its place there, where its NaN is skipped
    and reset.  (Positive mode: a reached merchant's sum becomes NaN in the same way, an
    unreached one keeps its 0.)
    """
    if positive:
        if not sparse:
            acc[m] = 0
        elif acc[m] != 0:
            acc[m] = NAN
    elif sparse:
        pair[2 * <Py_ssize_t>m] = NAN
    else:
        mark[m] = 0
        acc[m] = 0


cdef inline bint _reached(Py_ssize_t j, bint positive, const floating* acc,
                          const unsigned char* mark) noexcept nogil:
    """Dense rows: whether merchant ``j`` is a candidate."""
    return acc[j] != 0 if positive else mark[j] != 0


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
    bint skip_diag, bint by_index, bint positive,
    const index_t* head_ptr, const index_t* heads, const uint16_t* b_ix16,
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
    # ``skip_diag`` excludes merchant ``u`` (self-joins).  ``by_index`` writes the kept entries
    # in ascending merchant order instead of best first: candidates are offered in the order
    # of the touched list (sparse rows) or of the merchants (dense rows), so when that order is
    # ascending and no compaction reordered the buffer the row needs no sort at all.
    # ``positive`` (weights all 1, no follows, every product > 0): see _accumulate_positive.
    cdef Py_ssize_t p, g, j, j0, j1, nt, n_items, n_groups, G, nb = 0, n_desc = 0
    cdef floating buf[GROUP_LONG]
    cdef Py_ssize_t f_lo = 0, f_hi = 0
    cdef Py_ssize_t work = 0
    cdef bint sparse, full = False
    cdef index_t m, ki = 0, prev
    cdef floating v, kv = 0, bar = -INFINITY

    if positive and by_index and not has_e and a_indptr[u + 1] - a_indptr[u] == 1:
        # one stored entry: the candidates are one row of B, already distinct and ascending
        p = a_indptr[u]
        nb = -1
        if threshold < 0 and head_ptr != NULL and head_ptr[a_indices[p]] >= 0:
            nb = _single_entry_head(u, skip_diag, a_data[p], b_indices, b_data,
                                    b_indptr[a_indices[p]], heads + head_ptr[a_indices[p]],
                                    width, bs, bi)
        if nb < 0:
            nb = _single_entry_row(u, skip_diag, a_data[p], b_indices, b_data,
                                   b_indptr[a_indices[p]], b_indptr[a_indices[p] + 1],
                                   threshold, width, acc, bs, bi)
        _write_row(bs, bi, nb, width, out_idx, out_score, out_count)
        return
    for p in range(a_indptr[u], a_indptr[u + 1]):
        work += b_indptr[a_indices[p] + 1] - b_indptr[a_indices[p]]
    if has_f:
        f_lo = f_indptr[u]
        f_hi = f_indptr[u + 1]
        work += f_hi - f_lo
    sparse = work < scan_min

    if positive:
        nt = _accumulate_positive(a_indptr[u], a_indptr[u + 1], a_indices, a_data,
                                  b_indptr, b_indices, b_ix16, b_data, acc, touched, sparse)
    else:
        nt = _accumulate(a_indptr[u], a_indptr[u + 1], a_indices, a_data,
                         b_indptr, b_indices, b_data, weight,
                         f_lo, f_hi, f_indices, f_data, follow_weight,
                         acc, mark, pair, touched, sparse)
    if has_e:
        for p in range(e_indptr[u], e_indptr[u + 1]):
            _exclude(e_indices[p], sparse, positive, acc, mark, pair)
    if skip_diag and u < n_cols:
        _exclude(<index_t>u, sparse, positive, acc, mark, pair)

    # pass 1: group maxima
    if sparse:
        n_items = nt
        if by_index and nt <= cap:
            nb = _small_row(nt, touched, pair, val, acc, threshold, width, bs, bi,
                            positive)
            _write_row(bs, bi, nb, width, out_idx, out_score, out_count)
            return
        # gather the scores, resetting the workspace (and count the descents in the order)
        prev = -1
        if positive:
            for j in range(nt):
                m = touched[j]
                val[j] = acc[m]
                acc[m] = 0
                n_desc += m < prev
                prev = m
        else:
            for j in range(nt):
                m = touched[j]
                val[j] = pair[2 * <Py_ssize_t>m] * pair[2 * <Py_ssize_t>m + 1]
                pair[2 * <Py_ssize_t>m] = NAN
            if by_index:  # (kept out of the ranking path's loop)
                for j in range(1, nt):
                    n_desc += touched[j] < touched[j - 1]
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
        elif positive:
            gm[g] = _chunk_max(acc + j0, j1 - j0)  # weights 1: the sums are the scores
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

    if by_index:
        nb = _by_index_pass(sparse, positive, n_items, n_cols, n_groups, G, gm, val, touched,
                            acc, mark, weight, threshold, bar, width, n_desc != 0, bs, bi, cap)
        _write_row(bs, bi, nb, width, out_idx, out_score, out_count)
        return

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
                if not _reached(j, positive, acc, mark):
                    continue
            if v > threshold and v >= bar and (not full or v > kv or (v == kv and m < ki)):
                _offer(v, m, bs, bi, &nb, cap, width, &kv, &ki, &full)
    if not sparse:
        memset(acc, 0, n_cols * sizeof(floating))
        if not positive:
            memset(mark, 0, n_cols)

    if nb > width:
        select_best(bs, bi, nb, width)
        nb = width
    sort_best_first(bs, bi, nb)
    _write_row(bs, bi, nb, width, out_idx, out_score, out_count)


cdef inline void _write_row(const floating* bs, const index_t* bi, Py_ssize_t nb,
                            Py_ssize_t width, index_t* out_idx, floating* out_score,
                            index_t* out_count) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(nb):
        out_idx[j] = bi[j]
        out_score[j] = bs[j]
    for j in range(nb, width):
        out_idx[j] = -1
        out_score[j] = -INFINITY
    out_count[0] = <index_t>nb


cdef Py_ssize_t _single_entry_head(
    Py_ssize_t u, bint skip_diag, floating a, const index_t* b_indices, const floating* b_data,
    Py_ssize_t lo, const index_t* H, Py_ssize_t width, floating* bs, index_t* bi,
) noexcept nogil:
    """``_single_entry_row`` from the precomputed head of row ``B[t]`` (see ``row_heads``).

    The scores are ``a * B[t, m]`` with ``a > 0``: their order is B's order, so the best
    ``width`` (ties: lower merchant) are the head's ``width + 1`` best of ``B[t]`` less one
    entry: merchant ``u`` when ``skip_diag`` and it is in the head, otherwise the head's
    weakest.  This holds exactly when ``a == 1`` (the scores are B's values) or when the last
    kept score is strictly above the first dropped one; otherwise products of distinct
    values rounded to a tie, and -1 is returned (the caller selects from scratch).  No
    threshold is applied (the caller checks that it is negative).  Returns the number kept
    (``width``), written to ``bs``/``bi`` in ascending merchant order.
    """
    cdef Py_ssize_t j, lo_j = 0, hi_j = width, mid, skip = H[width + 1], nb = 0, q
    cdef Py_ssize_t last = H[width + 2], drop = H[width + 3]
    if skip_diag:
        # binary search for u among the head's merchants (ascending)
        while lo_j < hi_j:
            mid = (lo_j + hi_j) // 2
            if b_indices[lo + H[mid]] < u:
                lo_j = mid + 1
            else:
                hi_j = mid
        if b_indices[lo + H[lo_j]] == u:
            if lo_j != skip:
                last = H[width + 3]  # the weakest stays in: the rank-width entry is kept
            skip = lo_j
            drop = H[width + 4]
    if not (a == 1 or a * b_data[lo + last] > a * b_data[lo + drop]):
        return -1
    for j in range(width + 1):
        q = lo + H[j]
        bs[nb] = a * b_data[q]
        bi[nb] = b_indices[q]
        nb += j != skip
    return nb


def row_heads(
    const index_t[::1] b_indptr, const floating[::1] b_data, const index_t[::1] rows,
    Py_ssize_t width, index_t[::1] head_ptr, index_t[::1] heads,
    floating[::1] ws_s, index_t[::1] ws_i,
):
    """Precompute the heads of rows of B for ``fused_topk`` (see ``_topk.pyi``)."""
    cdef Py_ssize_t r, j, t, lo, n, k = width + 1, stride = width + 5
    cdef index_t* H
    cdef index_t weak
    with nogil:
        for r in range(rows.shape[0]):
            t = rows[r]
            lo = b_indptr[t]
            n = b_indptr[t + 1] - lo
            for j in range(n):
                ws_s[j] = b_data[lo + j]
                ws_i[j] = <index_t>j
            # best width + 2 by (value desc, position asc); positions ascend with merchants
            select_best(&ws_s[0], &ws_i[0], n, k + 1)
            sort_best_first(&ws_s[0], &ws_i[0], k + 1)
            H = &heads[r * stride]
            H[width + 2] = ws_i[width - 1]
            H[width + 3] = ws_i[width]
            H[width + 4] = ws_i[width + 1]
            weak = ws_i[width]
            sort_by_index(&ws_s[0], &ws_i[0], k)
            for j in range(k):
                H[j] = ws_i[j]
                if ws_i[j] == weak:
                    H[width + 1] = <index_t>j
            head_ptr[t] = <index_t>(r * stride)


cdef Py_ssize_t _single_entry_row(
    Py_ssize_t u, bint skip_diag, floating a, const index_t* b_indices, const floating* b_data,
    Py_ssize_t lo, Py_ssize_t hi, floating threshold, Py_ssize_t width, floating* acc,
    floating* bs, index_t* bi,
) noexcept nogil:
    """Positive mode, column order, a row with one stored entry ``a`` (no exclusion list).

    Its candidates are row ``B[t]`` (canonical: distinct, ascending merchants) with scores
    ``a * B[t, m]``, the very products the accumulator would hold, so nothing is accumulated:
    the scores above the threshold are copied to the scratch ``acc`` (all 0, reset after),
    where a value-only selection finds the width-th best ``kv``; one pass over the row then
    keeps the scores above it and the first (lowest) merchants tied at it, in ascending
    order.  ``skip_diag`` leaves out merchant ``u``.  Returns the number kept.
    """
    cdef Py_ssize_t q, c = 0, nb = 0, gt = 0, t = 0, taken = 0
    cdef floating v, kv = -INFINITY
    cdef index_t m
    cdef bint ok, tie
    if hi - lo <= width + 1 and threshold < 0:
        # short row, every score (> 0) passes: all of it but u, unless u is not there
        for q in range(lo, hi):
            m = b_indices[q]
            bs[nb] = a * b_data[q]
            bi[nb] = m
            nb += not skip_diag or m != u
        if nb <= width:
            return nb
        nb = 0
    for q in range(lo, hi):
        v = a * b_data[q]
        acc[c] = v
        c += (v > threshold) & (not skip_diag or b_indices[q] != u)
    if c > width:
        kv = kth_largest(acc, c, width)
        for q in range(c):
            gt += acc[q] > kv
        t = width - gt
    memset(acc, 0, (hi - lo) * sizeof(floating))
    for q in range(lo, hi):
        m = b_indices[q]
        v = a * b_data[q]
        ok = (v > threshold) & (not skip_diag or m != u)
        tie = ok & (v == kv) & (taken < t)
        taken += tie
        bs[nb] = v
        bi[nb] = m
        nb += (ok & (v > kv)) | tie
    return nb


cdef Py_ssize_t _small_row(
    Py_ssize_t nt, index_t* touched, floating* pair, floating* val,
    floating* acc, floating threshold, Py_ssize_t width, floating* bs, index_t* bi,
    bint positive,
) noexcept nogil:
    """Select a sparse row of at most ``cap`` candidates in column order, without groups.

    The gather (which resets the workspace) compacts the candidates above the threshold
    straight into ``bs``/``bi`` in touched order, and ``_cut_by_index`` keeps the best
    ``width`` of them (``touched`` and ``val`` are free by then and serve as its tie scratch).
    Returns the number kept, in ascending merchant order.
    """
    cdef Py_ssize_t j, c = 0, n_desc = 0
    cdef index_t m, prev = -1
    cdef floating v
    for j in range(nt):
        m = touched[j]
        if positive:
            v = acc[m]
            acc[m] = 0
        else:
            v = pair[2 * <Py_ssize_t>m] * pair[2 * <Py_ssize_t>m + 1]
            pair[2 * <Py_ssize_t>m] = NAN
        n_desc += m < prev
        prev = m
        bs[c] = v
        bi[c] = m
        c += v > threshold
    # the tie scratch holds n_cols + 1 > nt >= c entries, so the cut never gives up
    return _cut_by_index(bs, bi, c, width, n_desc != 0, acc, val, touched, nt + 1, bs, bi)


cdef Py_ssize_t _cut_by_index(
    floating* vs, index_t* ix, Py_ssize_t c, Py_ssize_t width, bint unordered,
    floating* scratch, floating* tv, index_t* ti, Py_ssize_t tcap,
    floating* out_v, index_t* out_i,
) noexcept nogil:
    """Keep the best ``width`` of ``c`` candidates ``(vs, ix)``, written in merchant order.

    Beyond ``width`` candidates a value-only selection on a copy (in ``scratch``: all 0 on
    entry, at least ``c`` long, reset after) finds the width-th best score ``kv``; a stable
    cut then keeps the scores above it and, of the ``eq`` scores tied at it, as many as there
    are places left (``t``).  Candidates in ascending merchant order (not ``unordered``) keep
    the first ties met, which are the lowest merchants.  Otherwise, when ties outnumber the
    places, the tied merchants are gathered into ``ti`` (``tv`` is the sort's companion; both
    hold ``tcap`` entries, and the gather writes one past the ties) and sorted, and the cut
    keeps the ties up to the t-th lowest; ``tcap`` ties or more return -1 with nothing
    written (the caller selects another way).
    The kept entries go to ``out_v``/``out_i`` (which may be ``vs``/``ix``: writes never
    overtake reads, but the tie scratch must not overlap the candidates), sorted by merchant
    when ``unordered`` (a merge sort of the ascending runs, with the entries after the kept
    ones as scratch: ``out_v``/``out_i`` hold ``2 * width``).  Returns their number.
    """
    cdef Py_ssize_t j, g, nb = 0, gt = 0, eq = 0, t, taken = 0
    cdef index_t m, ki
    cdef floating v, kv
    cdef bint tie
    if c <= width:
        if out_v != vs:
            memcpy(out_v, vs, c * sizeof(floating))
            memcpy(out_i, ix, c * sizeof(index_t))
        nb = c
    else:
        memcpy(scratch, vs, c * sizeof(floating))
        kv = kth_largest(scratch, c, width)
        for j in range(c):
            gt += scratch[j] > kv
            eq += scratch[j] == kv
        memset(scratch, 0, c * sizeof(floating))
        t = width - gt
        if unordered and eq > t:
            # the t lowest merchants among the ties
            if eq >= tcap:
                return -1
            g = 0
            for j in range(c):
                ti[g] = ix[j]
                g += vs[j] == kv
            sort_by_index(tv, ti, g)
            ki = ti[t - 1]
            for j in range(c):
                v = vs[j]
                m = ix[j]
                out_v[nb] = v
                out_i[nb] = m
                nb += (v > kv) | ((v == kv) & (m <= ki))
        else:
            for j in range(c):
                v = vs[j]
                m = ix[j]
                tie = (v == kv) & (taken < t)
                taken += tie
                out_v[nb] = v
                out_i[nb] = m
                nb += (v > kv) | tie
    if unordered:
        merge_sort_by_index(out_v, out_i, nb, out_v + nb, out_i + nb)
    return nb


cdef Py_ssize_t _by_index_pass(
    bint sparse, bint positive, Py_ssize_t n_items, Py_ssize_t n_cols, Py_ssize_t n_groups,
    Py_ssize_t G, const floating* gm, floating* val, index_t* touched, floating* acc,
    unsigned char* mark, const floating* weight, floating threshold, floating bar,
    Py_ssize_t width, bint unordered, floating* bs, index_t* bi, Py_ssize_t cap,
) noexcept nogil:
    """Pass 2 for rows written in column order: the best ``width``, in merchant order.

    The candidates of the groups that reach the bar, and themselves reach it, are compacted
    into ``val``/``touched`` in candidate order (sparse rows in place: writes never overtake
    reads; dense rows from the accumulator, which is then reset and serves as the cut's
    zeroed scratch), and ``_cut_by_index`` keeps the best ``width``.  Candidate order is
    ascending merchant order for dense rows and sparse rows unless ``unordered``.  When the
    cut gives up (more ties at the k-th score than ``bs`` holds, unordered rows only) the
    compacted candidates are offered with explicit tie order instead.  Branch-free stores:
    which candidates reach the bar is data-dependent and would mispredict.
    """
    cdef Py_ssize_t g, j, j0, j1, c = 0, nb = 0
    cdef floating v, kv = 0
    cdef index_t m, ki = 0
    cdef bint full = False
    for g in range(n_groups):
        v = gm[g]
        if not (v > threshold and v >= bar):
            continue
        j0 = g * G
        j1 = j0 + G
        if j1 > n_items:
            j1 = n_items
        if sparse:
            for j in range(j0, j1):
                v = val[j]
                m = touched[j]
                val[c] = v
                touched[c] = m
                c += (v > threshold) & (v >= bar)
        else:
            for j in range(j0, j1):
                v = acc[j] * weight[j]
                val[c] = v
                touched[c] = <index_t>j
                c += _reached(j, positive, acc, mark) & (v > threshold) & (v >= bar)
    if not sparse:
        memset(acc, 0, n_cols * sizeof(floating))
        if not positive:
            memset(mark, 0, n_cols)
    nb = _cut_by_index(val, touched, c, width, unordered, acc, bs, bi, cap, bs, bi)
    if nb < 0:
        nb = 0
        for j in range(c):
            v = val[j]
            m = touched[j]
            if not full or v > kv or (v == kv and m < ki):
                _offer(v, m, bs, bi, &nb, cap, width, &kv, &ki, &full)
        if nb > width:
            select_best(bs, bi, nb, width)
            nb = width
        sort_by_index(bs, bi, nb)
    return nb


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
    int n_threads, bint skip_diag=False, bint by_index=False, bint positive=False,
    const index_t[::1] head_ptr=None, const index_t[::1] heads=None,
    const uint16_t[::1] b_indices16=None,
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
    cdef const index_t* h_ptr = NULL
    cdef const index_t* h_dat = NULL
    cdef const uint16_t* b_ix16 = NULL
    if positive and b_indices16 is not None and b_indices16.shape[0] > 0:
        b_ix16 = &b_indices16[0]
    if head_ptr is not None and heads is not None and head_ptr.shape[0] > 0 and heads.shape[0] > 0:
        h_ptr = &head_ptr[0]
        h_dat = &heads[0]
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
                  &ws_buf_s[t, 0], &ws_buf_i[t, 0], ws_buf_s.shape[1],
                  skip_diag, by_index, positive, h_ptr, h_dat, b_ix16)


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


def compact_rows(
    const index_t[:, ::1] idx, const floating[:, ::1] score, const index_t[::1] count,
    Py_ssize_t row_start, bint drop_diag, Py_ssize_t pos,
    index_t[::1] indptr, index_t[::1] indices, floating[::1] data,
):
    """Append rows of a padded top-k block to CSR arrays (see ``_topk.pyi``)."""
    cdef Py_ssize_t r, j, u, n = idx.shape[0]
    cdef index_t m
    with nogil:
        for r in range(n):
            u = row_start + r
            for j in range(count[r]):
                m = idx[r, j]
                indices[pos] = m
                data[pos] = score[r, j]
                pos += 1 - (drop_diag and m == u)
            indptr[u + 1] = <index_t>pos
    return pos
