# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Exposure re-ranking kernels: per-user selection from a wider candidate list.

Loops only: :mod:`ecomcore.exposure` validates every argument (index ranges, shapes, finite
values, sorted rows) and owns the policy (which cap or penalty strength to use).  The GIL is
released for every loop over users.

A *pass* serves the users in a given order.  For each user it picks ``n_t = min(k, count)``
of the row's candidates (positions into the row, kept in ascending order so the output stays
sorted by score) and, in the sequential mode, adds the picks to the shared per-merchant
exposure counts that the next users see:

* cap (``cap >= 0``): a merchant whose count has reached ``cap`` is *capped*;
* penalty (``lam > 0``): a merchant shown ``v`` times so far costs
  ``lam * #{merchants shown 1..v times} / n_merchants`` (the increase of the Gini numerator
  that one more impression of it causes, shifted so that unseen merchants cost 0), refreshed
  for every merchant every ``refresh`` users and for a merchant whenever it is shown;
* per-list rules: at most ``catcap`` merchants of one category, and the FA*IR prefix minimum
  of protected merchants (an int, made lazy, or a table).

The preference order of a row is: uncapped before capped; then candidate order (cap mode) or
adjusted score ``score - penalty`` (penalty mode; ties by position).  Without per-list rules a
user gets the first ``n_t`` of that order.  With them, the first ``A`` of that order are
*admitted* and the per-list greedy scans the row in candidate (score) order, taking admitted
candidates that the rules allow.  ``A`` starts at the number of uncapped candidates (cap mode)
or ``min(n_t, uncapped)`` (penalty mode); while the list is short it grows by the shortfall,
the step doubling, until the list is full or every candidate is admitted, and then the
smallest ``A`` of the last step that gives the same length is used ("fill from capped ones").
When the protected minimum needs a protected merchant and no admitted one is left, the best
protected candidate is taken even if it is capped (per-list rules come first); when the
admitted set still makes the minimum fail, the row is retried with every protected candidate
admitted, then with every candidate.
"""
from cython.parallel cimport prange, threadid
from libc.math cimport isfinite, INFINITY
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport qsort

from ecomcore_ext._types cimport floating, index_t

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define EC_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define EC_PREFETCH(p) ((void)0)
    #endif
    """
    void EC_PREFETCH(const void* p) nogil

# Users ahead of the current one whose candidate rows are prefetched in a sequential pass.
cdef enum:
    PREFETCH_AHEAD = 8
    CHUNK = 16


ctypedef struct pref_t:
    double key      # adjusted score (penalty mode) or -position (cap mode); larger first
    int64_t pos     # position in the row
    int capped      # 1 if the merchant is capped; capped go last


cdef int _cmp_pref(const void* a, const void* b) noexcept nogil:
    cdef const pref_t* x = <const pref_t*>a
    cdef const pref_t* y = <const pref_t*>b
    if x.capped != y.capped:
        return -1 if x.capped < y.capped else 1
    if x.key != y.key:
        return -1 if x.key > y.key else 1
    if x.pos != y.pos:
        return -1 if x.pos < y.pos else 1
    return 0


# ------------------------------------------------------------------------------------------
# Validation and statistics
# ------------------------------------------------------------------------------------------

def check_candidates(
    const index_t[:, ::1] idx, const floating[:, ::1] sc, const int64_t[::1] counts,
    int64_t n_cols, int32_t[:, ::1] stamp, int n_threads,
):
    """Check every valid entry of a candidate TopK; mark the merchants seen.

    Returns ``(row, code)`` of the first bad row (``(-1, 0)`` when all rows are valid): code 1 an
    index outside ``[0, n_cols)``, 2 a non-finite score, 3 an entry out of order (scores must not
    increase along a row, equal scores must have increasing indices), 4 a merchant twice in one
    row.  ``counts`` must already lie in ``[0, width]``.  ``stamp`` (``n_threads x n_cols``, all
    0 on entry) gets ``row + 1`` at every merchant a thread saw, so ``(stamp != 0).any(0)`` marks
    the merchants that appear anywhere.  Needs ``n_rows < 2**31 - 1``.
    """
    cdef Py_ssize_t n = idx.shape[0]
    cdef Py_ssize_t u, j, c, t
    cdef int64_t m
    cdef double s
    cdef int code
    cdef bint rng_bad, fin_bad, ord_bad
    cdef int64_t[::1] bad_row
    cdef int32_t[::1] bad_code
    import numpy as np
    bad_row = np.full(max(n_threads, 1), -1, dtype=np.int64)
    bad_code = np.zeros(max(n_threads, 1), dtype=np.int32)
    for u in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        t = threadid()
        if bad_row[t] >= 0:
            continue
        c = counts[u]
        # ranges, finiteness and order first, without branches (s - s is NaN for inf and NaN)
        rng_bad = False
        fin_bad = False
        ord_bad = False
        for j in range(c):
            m = idx[u, j]
            s = sc[u, j]
            rng_bad = rng_bad | (m < 0) | (m >= n_cols)
            fin_bad = fin_bad | ((s - s) != 0.0)
        for j in range(1, c):
            ord_bad = ord_bad | (sc[u, j] > sc[u, j - 1]) | (
                (sc[u, j] == sc[u, j - 1]) & (idx[u, j] <= idx[u, j - 1]))
        code = 0
        if rng_bad:
            code = 1
        elif fin_bad:
            code = 2
        elif ord_bad:
            code = 3
        else:
            for j in range(c):
                m = idx[u, j]
                if stamp[t, m] == u + 1:
                    code = 4
                    break
                stamp[t, m] = <int32_t>(u + 1)
        if code != 0:
            bad_row[t] = u
            bad_code[t] = code
    cdef int64_t best = -1
    cdef int best_code = 0
    cdef Py_ssize_t r
    for r in range(bad_row.shape[0]):
        if bad_row[r] >= 0 and (best < 0 or bad_row[r] < best):
            best = bad_row[r]
            best_code = bad_code[r]
    return best, best_code


def first_k_stats(
    const index_t[:, ::1] idx, const floating[:, ::1] sc, const int64_t[::1] counts, Py_ssize_t k,
    int64_t[::1] expo, double[::1] row_score,
):
    """Exposure counts (added into ``expo``) and per-row score sums of the first ``min(k, count)`` entries."""
    cdef Py_ssize_t n = idx.shape[0]
    cdef Py_ssize_t u, j, c
    cdef double acc
    with nogil:
        for u in range(n):
            c = counts[u]
            if c > k:
                c = k
            acc = 0
            for j in range(c):
                expo[idx[u, j]] += 1
                acc += sc[u, j]
            row_score[u] = acc


def copy_first_k(
    const index_t[:, ::1] idx, const floating[:, ::1] sc, const int64_t[::1] counts, Py_ssize_t k,
    index_t[:, ::1] out_idx, floating[:, ::1] out_sc,
):
    """The first ``min(k, count)`` entries of every row, padded with -1 / -inf to ``k``."""
    cdef Py_ssize_t n = idx.shape[0]
    cdef Py_ssize_t u, j, c
    with nogil:
        for u in range(n):
            c = counts[u]
            if c > k:
                c = k
            for j in range(c):
                out_idx[u, j] = idx[u, j]
                out_sc[u, j] = sc[u, j]
            for j in range(c, k):
                out_idx[u, j] = -1
                out_sc[u, j] = -INFINITY


def weighted_exposure(
    const index_t[:, ::1] idx, const int64_t[::1] counts, const double[::1] weights, double[::1] out,
):
    """``out[m] += weights[j]`` for every valid entry ``(u, j)`` showing merchant ``m`` (row order)."""
    cdef Py_ssize_t n = idx.shape[0]
    cdef Py_ssize_t u, j
    with nogil:
        for u in range(n):
            for j in range(counts[u]):
                out[idx[u, j]] += weights[j]


# ------------------------------------------------------------------------------------------
# Per-row selection
# ------------------------------------------------------------------------------------------

cdef inline bint _cat_ok(int64_t m, const int32_t* cat, int32_t catcap, const int32_t* catcnt) noexcept nogil:
    return cat == NULL or catcnt[cat[m]] < catcap


cdef Py_ssize_t _first_protected(
    const index_t* ridx, Py_ssize_t j, Py_ssize_t cnt, const uint8_t* adm, bint admitted_only,
    const uint8_t* prot, const int32_t* cat, int32_t catcap, const int32_t* catcnt,
) noexcept nogil:
    """First position >= j holding a protected merchant the category cap allows (admitted
    ones only with ``admitted_only``), or -1."""
    cdef Py_ssize_t t
    cdef int64_t m
    for t in range(j, cnt):
        m = ridx[t]
        if prot[m] and (not admitted_only or adm[t]) and _cat_ok(m, cat, catcap, catcnt):
            return t
    return -1


cdef Py_ssize_t _greedy(
    const index_t* ridx, Py_ssize_t cnt, Py_ssize_t n_t, const uint8_t* adm,
    const uint8_t* prot, int pmode, Py_ssize_t pmin, const int64_t* ptable, const int64_t* rprot,
    const int32_t* cat, int32_t catcap, int32_t* catcnt, int64_t* buf,
) noexcept nogil:
    """Per-list greedy in candidate order over the admitted entries; returns the list length.

    FA*IR rule on a score-sorted list: while the protected count is below the prefix minimum
    for the next position (capped at the protected candidates the row has), the next pick must
    be protected -- the first admitted protected candidate the category cap allows, unless
    jumping to it would skip protected candidates the final minimum still needs, then the
    first such protected candidate at all.  The candidates jumped over cannot follow it in a
    sorted list, so they are dropped; a jump that would leave too few candidates to fill the
    list is not made: the row cannot meet the minimum and the rule is switched off, as it is
    when no protected candidate is left.  A protected candidate that is not admitted is still
    taken when the protected candidates after it are too few for the final minimum.
    ``rprot[j]`` counts protected candidates after position ``j``.  ``catcnt`` is all 0 on
    entry and on return.
    """
    cdef Py_ssize_t L = 0, P = 0, j = 0, q, qa, t
    cdef Py_ssize_t need, pmin_eff = pmin if pmin < n_t else n_t
    cdef Py_ssize_t m_final = 0, p_row = 0
    cdef bint prot_on = pmode != 0
    cdef bint take
    cdef int64_t m
    if prot_on and cnt > 0:
        p_row = rprot[0] + prot[ridx[0]]
        if pmode == 2:
            m_final = ptable[n_t - 1]
        else:
            m_final = pmin_eff
        if m_final > p_row:
            m_final = p_row
    while L < n_t and j < cnt:
        if prot_on:
            if pmode == 2:
                need = ptable[L]
            else:
                need = pmin_eff - (n_t - 1 - L)
            if need > p_row:
                need = p_row
            if P < need:
                q = _first_protected(ridx, j, cnt, adm, False, prot, cat, catcap, catcnt)
                if q < 0 or cnt - q < n_t - L:
                    prot_on = False
                else:
                    qa = _first_protected(ridx, q, cnt, adm, True, prot, cat, catcap, catcnt)
                    if qa >= 0 and P + 1 + rprot[qa] >= m_final and cnt - qa >= n_t - L:
                        q = qa
                    m = ridx[q]
                    buf[L] = q
                    L += 1
                    P += 1
                    if cat != NULL:
                        catcnt[cat[m]] += 1
                    j = q + 1
                    continue
        m = ridx[j]
        if cat != NULL and catcnt[cat[m]] >= catcap:
            j += 1
            continue
        take = adm[j] != 0
        if not take and prot_on and prot[m] and P + rprot[j] < m_final:
            take = True  # protected, and the final minimum cannot spare it
        if take:
            buf[L] = j
            L += 1
            if prot != NULL and prot[m]:
                P += 1
            if cat != NULL:
                catcnt[cat[m]] += 1
        j += 1
    if cat != NULL:
        for t in range(L):
            catcnt[cat[ridx[buf[t]]]] = 0
    return L


cdef inline void _sort_positions(int64_t* buf, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef int64_t v
    for i in range(1, n):
        v = buf[i]
        j = i
        while j > 0 and buf[j - 1] > v:
            buf[j] = buf[j - 1]
            j -= 1
        buf[j] = v


cdef Py_ssize_t _top_adjusted(
    const index_t* ridx, const floating* rsc, Py_ssize_t cnt, Py_ssize_t want,
    const int32_t* expo, int64_t cap, bint want_capped, const int32_t* pen, double lam_m,
    int64_t* buf, double* key,
) noexcept nogil:
    """The ``want`` best positions by adjusted score among uncapped (or, with ``want_capped``,
    capped) candidates; ties by position.  Works in chunks of ``CHUNK`` candidates: the
    adjusted scores of a chunk are computed without branches, then offered to the sorted
    buffer; stops at the first chunk whose best score cannot enter (the penalty is never
    negative and scores do not increase along the row).  Positions are left in
    ``buf[:returned]`` in no particular order."""
    cdef Py_ssize_t nb = 0, j, j0, j1, i
    cdef double a
    cdef double tmp[CHUNK]
    cdef bint use_cap = cap >= 0
    j0 = 0
    while j0 < cnt:
        if nb == want and rsc[j0] <= key[nb - 1]:
            break
        j1 = j0 + CHUNK
        if j1 > cnt:
            j1 = cnt
        if use_cap:
            for j in range(j0, j1):
                a = rsc[j] - lam_m * <double>pen[ridx[j]]
                tmp[j - j0] = a if ((expo[ridx[j]] >= cap) == want_capped) else -INFINITY
        else:
            for j in range(j0, j1):
                tmp[j - j0] = rsc[j] - lam_m * <double>pen[ridx[j]]
        for j in range(j0, j1):
            a = tmp[j - j0]
            if nb == want:
                if not (a > key[nb - 1]):
                    continue
                i = nb - 1
            else:
                if a == -INFINITY:
                    continue
                i = nb
                nb += 1
            while i > 0 and a > key[i - 1]:
                key[i] = key[i - 1]
                buf[i] = buf[i - 1]
                i -= 1
            key[i] = a
            buf[i] = j
        j0 = j1
    return nb


cdef Py_ssize_t _select_row(
    const index_t* ridx, const floating* rsc, Py_ssize_t cnt, Py_ssize_t n_t,
    const int32_t* expo, int64_t cap, double lam_m, const int32_t* pen,
    const uint8_t* prot, int pmode, Py_ssize_t pmin, const int64_t* ptable,
    const int32_t* cat, int32_t catcap, int32_t* catcnt,
    int64_t* buf, uint8_t* adm, pref_t* pref, double* key, int64_t* rprot, int64_t* tpos,
) noexcept nogil:
    """Pick one user's list; positions in ``buf[:returned]``, ascending."""
    cdef Py_ssize_t L, j, deficit, taken, n_unc, A, P, target, lo, hi, mid, step
    cdef bint use_cap = cap >= 0
    cdef bint use_pen = lam_m > 0
    cdef int64_t m
    if n_t <= 0:
        return 0
    if pmode == 0 and cat == NULL:
        if not use_pen:
            L = 0
            j = 0
            if use_cap:
                while j < cnt and L < n_t:
                    buf[L] = j  # kept only when the merchant is not capped (no branch)
                    L += expo[ridx[j]] < cap
                    j += 1
            else:
                while L < n_t:
                    buf[L] = L
                    L += 1
            if L < n_t:
                # every uncapped candidate is in; admit the best capped ones, in candidate order
                deficit = n_t - L
                L = 0
                taken = 0
                for j in range(cnt):
                    if L == n_t:
                        break
                    if expo[ridx[j]] >= cap:
                        if taken == deficit:
                            continue
                        taken += 1
                    buf[L] = j
                    L += 1
            return L
        L = _top_adjusted(ridx, rsc, cnt, n_t, expo, cap, False, pen, lam_m, buf, key)
        if L < n_t and use_cap:
            L += _top_adjusted(ridx, rsc, cnt, n_t - L, expo, cap, True, pen, lam_m,
                               buf + L, key + L)
        _sort_positions(buf, L)
        return L
    # Per-list rules: the greedy over the admitted candidates, a prefix of the preference order
    # (uncapped before capped; by adjusted score with a penalty, else by position).
    if pmode != 0:
        P = 0
        for j in range(cnt - 1, -1, -1):
            rprot[j] = P
            P += prot[ridx[j]]
    sorted_pref = False
    if use_pen:
        # first try the penalty's own top n_t (no full sort)
        A = _top_adjusted(ridx, rsc, cnt, n_t, expo, cap, False, pen, lam_m, tpos, key)
        for j in range(cnt):
            adm[j] = 0
        for j in range(A):
            adm[tpos[j]] = 1
        L = _greedy(ridx, cnt, n_t, adm, prot, pmode, pmin, ptable, rprot, cat, catcap, catcnt, buf)
        if L >= n_t and (pmode == 0 or _meets(ridx, buf, L, n_t, prot, pmode, pmin, ptable)):
            return L
        for j in range(cnt):
            m = ridx[j]
            pref[j].pos = j
            pref[j].capped = 1 if (use_cap and expo[m] >= cap) else 0
            pref[j].key = rsc[j] - lam_m * <double>pen[m]
        qsort(pref, cnt, sizeof(pref_t), _cmp_pref)
    else:
        A = 0
        for j in range(cnt):
            if not (use_cap and expo[ridx[j]] >= cap):
                pref[A].pos = j
                A += 1
        n_unc = A
        for j in range(cnt):
            if use_cap and expo[ridx[j]] >= cap:
                pref[n_unc].pos = j
                n_unc += 1
        L = _greedy_admit(ridx, cnt, n_t, A, pref, adm, prot, pmode, pmin, ptable, rprot, cat,
                          catcap, catcnt, buf)
    if L < n_t and A < cnt:
        # grow the admitted prefix by the shortfall, doubling the step, until the list is full
        # or everything is admitted; then the fewest admitted in the last step giving that length
        step = n_t - L
        lo = A
        while True:
            hi = lo + step
            if hi > cnt:
                hi = cnt
            target = _greedy_admit(ridx, cnt, n_t, hi, pref, adm, prot, pmode, pmin, ptable, rprot,
                                   cat, catcap, catcnt, buf)
            if target >= n_t or hi == cnt:
                break
            lo = hi
            step *= 2
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            if _greedy_admit(ridx, cnt, n_t, mid, pref, adm, prot, pmode, pmin, ptable, rprot, cat,
                             catcap, catcnt, buf) >= target:
                hi = mid
            else:
                lo = mid
        A = hi
        L = _greedy_admit(ridx, cnt, n_t, A, pref, adm, prot, pmode, pmin, ptable, rprot, cat,
                          catcap, catcnt, buf)
    elif use_pen:
        L = _greedy_admit(ridx, cnt, n_t, A, pref, adm, prot, pmode, pmin, ptable, rprot, cat,
                          catcap, catcnt, buf)
    if pmode == 0 or A >= cnt or _meets(ridx, buf, L, n_t, prot, pmode, pmin, ptable):
        return L
    # The admitted set made the protected minimum fail (with the category cap, the greedy can
    # run past protected candidates it needs): admit every protected candidate too, then all.
    for j in range(cnt):
        if prot[ridx[j]]:
            adm[j] = 1
    L = _greedy(ridx, cnt, n_t, adm, prot, pmode, pmin, ptable, rprot, cat, catcap, catcnt, buf)
    if _meets(ridx, buf, L, n_t, prot, pmode, pmin, ptable):
        return L
    L = _greedy_admit(ridx, cnt, n_t, cnt, pref, adm, prot, pmode, pmin, ptable, rprot, cat,
                      catcap, catcnt, buf)
    if _meets(ridx, buf, L, n_t, prot, pmode, pmin, ptable):
        return L
    return _greedy_admit(ridx, cnt, n_t, A, pref, adm, prot, pmode, pmin, ptable, rprot, cat,
                         catcap, catcnt, buf)


cdef bint _meets(
    const index_t* ridx, const int64_t* buf, Py_ssize_t L, Py_ssize_t n_t, const uint8_t* prot,
    int pmode, Py_ssize_t pmin, const int64_t* ptable,
) noexcept nogil:
    """Whether a list meets the protected rule: every prefix (table) or the total (int)."""
    cdef Py_ssize_t t, P = 0
    for t in range(L):
        P += prot[ridx[buf[t]]]
        if pmode == 2 and P < ptable[t]:
            return False
    if pmode == 1:
        return P >= (pmin if pmin < L else L)
    return True


cdef inline Py_ssize_t _greedy_admit(
    const index_t* ridx, Py_ssize_t cnt, Py_ssize_t n_t, Py_ssize_t A, const pref_t* pref,
    uint8_t* adm, const uint8_t* prot, int pmode, Py_ssize_t pmin, const int64_t* ptable,
    const int64_t* rprot, const int32_t* cat, int32_t catcap, int32_t* catcnt, int64_t* buf,
) noexcept nogil:
    """The greedy with the first ``A`` entries of the preference order admitted."""
    cdef Py_ssize_t j
    for j in range(cnt):
        adm[j] = 0
    for j in range(A):
        adm[pref[j].pos] = 1
    return _greedy(ridx, cnt, n_t, adm, prot, pmode, pmin, ptable, rprot, cat, catcap, catcnt, buf)


cdef inline double _emit(
    const index_t* ridx, const floating* rsc, const int64_t* buf, Py_ssize_t L,
    Py_ssize_t width_out, index_t* oi, floating* os,
) noexcept nogil:
    """Write one output row (picks, then -1 / -inf padding); return its score sum."""
    cdef Py_ssize_t t
    cdef double acc = 0
    for t in range(L):
        oi[t] = ridx[buf[t]]
        os[t] = rsc[buf[t]]
        acc += rsc[buf[t]]
    for t in range(L, width_out):
        oi[t] = -1
        os[t] = -INFINITY
    return acc


def rerank_pass(
    const index_t[:, ::1] idx, const floating[:, ::1] sc, const int64_t[::1] counts, Py_ssize_t k,
    const int64_t[::1] order, int64_t cap, double lam, Py_ssize_t refresh,
    int32_t[::1] expo, int32_t[::1] less, int32_t[::1] pen,
    const uint8_t[::1] prot, int pmode, Py_ssize_t pmin, const int64_t[::1] ptable,
    const int32_t[::1] cat, int32_t catcap, int32_t[:, ::1] catcnt,
    index_t[:, ::1] out_idx, floating[:, ::1] out_sc, int64_t[::1] out_len, double[::1] row_score,
    int64_t[:, ::1] ws_buf, uint8_t[:, ::1] ws_adm, double[:, ::1] ws_key, uint8_t[:, ::1] ws_pref,
    int n_threads, bint parallel,
):
    """One selection pass over every user.

    Sequential mode (``parallel`` false): the users in ``order`` (a permutation of the rows, or
    of a subset of them); each user's picks are added to ``expo`` before the next user is
    served.  Parallel mode (no cap, no penalty: rows are
    independent): rows in any order on ``n_threads`` threads, ``expo`` untouched.
    ``cap < 0`` means no cap, ``lam <= 0`` no penalty; ``lam`` is the strength divided by the
    number of merchants.

    Penalty bookkeeping: ``less[w]`` = merchants shown fewer than ``w`` times (``less[0] = 0``,
    the rest ``n_merchants`` while ``expo`` is 0; ``n_rows + 2`` entries) and ``pen[m]`` =
    merchants shown between 1 and ``expo[m]`` times (all 0 on entry).  ``pen`` of a merchant is
    brought up to date when it is shown and for every merchant before the users at positions
    ``refresh, 2 * refresh, ...`` of the order (``refresh >= 1``; 1 keeps it exact).

    ``pmode`` 0: no protected rule, 1: at least ``pmin`` per list (made lazy), 2: prefix table
    ``ptable`` (non-decreasing, steps of at most 1).  Empty ``prot`` / ``cat`` mean none.
    Output arrays with 0 rows are not written (search passes); otherwise rows get the picks,
    ``-1`` / ``-inf`` padding, their length and their score sum.  Workspaces: one row per thread
    of ``width`` entries (``ws_buf`` ``3 * width``, ``ws_pref`` ``width * pref_size()`` bytes),
    ``catcnt`` all 0.
    """
    cdef Py_ssize_t n = idx.shape[0]
    cdef Py_ssize_t width = idx.shape[1]
    cdef Py_ssize_t n_cols = expo.shape[0]
    cdef Py_ssize_t width_out = out_idx.shape[1]
    cdef bint write = out_idx.shape[0] > 0
    cdef const uint8_t* p_prot = &prot[0] if prot.shape[0] > 0 else NULL
    cdef const int64_t* p_ptable = &ptable[0] if ptable.shape[0] > 0 else NULL
    cdef const int32_t* p_cat = &cat[0] if cat.shape[0] > 0 else NULL
    cdef int32_t* p_expo = &expo[0] if expo.shape[0] > 0 else NULL
    cdef int32_t* p_less = &less[0] if less.shape[0] > 0 else NULL
    cdef int32_t* p_pen = &pen[0] if pen.shape[0] > 0 else NULL
    cdef double lam_m = lam
    cdef bint use_pen = lam > 0
    cdef Py_ssize_t i, u, c, n_t, L, t, tid, nxt, mm, n_order, span
    cdef int64_t m
    cdef int32_t zero
    if n == 0 or width == 0:
        return
    if parallel:
        for u in prange(n, nogil=True, schedule="static", chunksize=256, num_threads=n_threads):
            tid = threadid()
            c = counts[u]
            n_t = c if c < k else k
            L = _select_row(&idx[u, 0], &sc[u, 0], c, n_t, p_expo, -1, 0.0, p_pen,
                            p_prot, pmode, pmin, p_ptable, p_cat, catcap,
                            &catcnt[tid, 0] if p_cat != NULL else NULL,
                            &ws_buf[tid, 0], &ws_adm[tid, 0], <pref_t*>&ws_pref[tid, 0],
                            &ws_key[tid, 0], &ws_buf[tid, width], &ws_buf[tid, 2 * width])
            if write:
                row_score[u] = _emit(&idx[u, 0], &sc[u, 0], &ws_buf[tid, 0], L, width_out,
                                     &out_idx[u, 0], &out_sc[u, 0])
                out_len[u] = L
        return
    if refresh < 1:
        refresh = 1
    n_order = order.shape[0]
    with nogil:
        for i in range(n_order):
            u = order[i]
            if i + PREFETCH_AHEAD < n_order:
                # the rows a few users ahead, whole when the penalty scans them whole
                nxt = order[i + PREFETCH_AHEAD]
                span = counts[nxt] if use_pen else (k if k < counts[nxt] else counts[nxt])
                for t in range(0, span, 16):
                    EC_PREFETCH(&idx[nxt, t])
                    EC_PREFETCH(&sc[nxt, t])
            if use_pen and i > 0 and i % refresh == 0:
                zero = p_less[1]
                for mm in range(n_cols):
                    p_pen[mm] = p_less[p_expo[mm] + 1] - zero
            c = counts[u]
            n_t = c if c < k else k
            L = _select_row(&idx[u, 0], &sc[u, 0], c, n_t, p_expo, cap, lam_m, p_pen,
                            p_prot, pmode, pmin, p_ptable, p_cat, catcap,
                            &catcnt[0, 0] if p_cat != NULL else NULL,
                            &ws_buf[0, 0], &ws_adm[0, 0], <pref_t*>&ws_pref[0, 0], &ws_key[0, 0],
                            &ws_buf[0, width], &ws_buf[0, 2 * width])
            for t in range(L):
                m = idx[u, ws_buf[0, t]]
                if use_pen:
                    p_less[p_expo[m] + 1] -= 1
                p_expo[m] += 1
            if use_pen:
                zero = p_less[1]
                for t in range(L):
                    m = idx[u, ws_buf[0, t]]
                    p_pen[m] = p_less[p_expo[m] + 1] - zero
            if write:
                row_score[u] = _emit(&idx[u, 0], &sc[u, 0], &ws_buf[0, 0], L, width_out,
                                     &out_idx[u, 0], &out_sc[u, 0])
                out_len[u] = L


def pref_size():
    """Bytes of one preference entry (``ws_pref`` needs ``width`` of them per thread)."""
    return sizeof(pref_t)
