# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Interest-profile kernels: decayed (user, tag) sums in an open-addressing hash table.

The table is a power-of-two array of ``slot_t`` (``key``, ``val``) records.  ``key`` packs a
(user, tag) pair as ``(user + 1) << 32 | tag`` (both below 2**31, so keys are positive) and is
0 in an empty slot (a zero-filled array is an empty table); ``val`` is the forward-decayed sum.
A key's home slot is the top bits of a fixed 64-bit mix of the key (splitmix64's finaliser);
collisions probe linearly.  Because the home is a prefix of one fixed hash, doubling the table
sends slot h to slot 2h or 2h + 1, so rehashing streams through both tables in order.  (A plain
multiplicative hash of the packed key placed users on a lattice and clustered at high load.)

Folding is software-pipelined in blocks of events: one pass computes each event's factor and
prefetches its item's row pointer, a second reads the pointers and prefetches the item's tags,
a third expands the events into (key, value) insertions, which go through a small staging
buffer so that each home slot's cache line is prefetched a few dozen insertions before it is
touched.  The table is far larger than the caches, so hiding memory latency is what counts.

Loops only: every argument is assumed validated by :mod:`ecomcore.interest` (index ranges,
finite values, table capacity).  The checking scans report facts and leave the decisions to
Python.  Every loop runs with the GIL released; none allocates Python objects.
"""
from libc.math cimport exp, isfinite, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport qsort

from ecomcore_ext._types cimport index_t

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define EC_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1, 3)
    #define EC_PREFETCH_R(p) __builtin_prefetch((const void *)(p), 0, 3)
    #else
    #define EC_PREFETCH_W(p) ((void)0)
    #define EC_PREFETCH_R(p) ((void)0)
    #endif
    """
    void EC_PREFETCH_W(const void *p) nogil
    void EC_PREFETCH_R(const void *p) nogil


cdef struct slot_t:
    int64_t key
    double val


cdef struct ranked_t:
    double val
    int64_t pos
    int64_t tag


cdef enum:
    # insertions staged between prefetching a home slot and touching it
    STAGE = 32
    # events per pipelined block
    BLOCK = 256

cdef uint64_t MIX1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t MIX2 = 0x94D049BB133111EBULL
cdef int64_t TAG_BITS = 0xFFFFFFFFLL


cdef inline uint64_t _home(int64_t key, int shift) noexcept nogil:
    # splitmix64's finaliser, then the top bits: a fixed 64-bit hash, so growing the table by
    # doubling maps slot h to slot 2h or 2h + 1 (rehashing streams through both tables)
    cdef uint64_t x = <uint64_t>key
    x = (x ^ (x >> 30)) * MIX1
    x = (x ^ (x >> 27)) * MIX2
    x = x ^ (x >> 31)
    return x >> shift


cdef inline int _add(slot_t* tab, uint64_t mask, uint64_t h, int64_t key, double v) noexcept nogil:
    """Add ``v`` to ``key``'s slot, probing from ``h``; return 1 when the key was new."""
    cdef slot_t* s
    while True:
        s = &tab[h]
        if s.key == key:
            s.val += v
            return 0
        if s.key == 0:
            s.key = key
            s.val = v
            return 1
        h = (h + 1) & mask


cdef inline void _put_new(slot_t* tab, uint64_t mask, uint64_t h, int64_t key, double v) noexcept nogil:
    """Store a key known to be absent (rehashing)."""
    while tab[h].key != 0:
        h = (h + 1) & mask
    tab[h].key = key
    tab[h].val = v


# ---------------------------------------------------------------------------------------------
# Checking scans (report the first bad position; Python raises)
# ---------------------------------------------------------------------------------------------

def scan_ids(const int64_t[::1] ids, int64_t n):
    """Return the first position whose id is outside ``[0, n)``, or -1."""
    cdef Py_ssize_t i, bad = -1
    with nogil:
        for i in range(ids.shape[0]):
            if ids[i] < 0 or ids[i] >= n:
                bad = i
                break
    return bad


def scan_items(const int64_t[::1] item, const index_t[::1] indptr):
    """Check item ids against ``indptr`` (``n_items + 1`` long) and count (event, tag) pairs.

    Returns ``(bad, n_pairs)``: ``bad`` is the first position whose item id is outside
    ``[0, n_items)`` (or -1), ``n_pairs`` the number of tags over the events before it.
    """
    cdef Py_ssize_t i, bad = -1
    cdef int64_t n_items = indptr.shape[0] - 1, it, pairs = 0
    with nogil:
        for i in range(item.shape[0]):
            it = item[i]
            if it < 0 or it >= n_items:
                bad = i
                break
            pairs += indptr[it + 1] - indptr[it]
    return bad, pairs


def scan_reals(const double[::1] x, bint nonnegative):
    """Return ``(bad, lo, hi)``: the first non-finite (or negative) position or -1, and the range."""
    cdef Py_ssize_t i, bad = -1
    cdef double v, lo = 0, hi = 0
    with nogil:
        if x.shape[0] > 0:
            lo = x[0]
            hi = x[0]
        for i in range(x.shape[0]):
            v = x[i]
            if not isfinite(v) or (nonnegative and v < 0):
                bad = i
                break
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    return bad, lo, hi


# ---------------------------------------------------------------------------------------------
# Table maintenance
# ---------------------------------------------------------------------------------------------

def fold_events(
    slot_t[::1] table,
    int shift,
    Py_ssize_t count,
    Py_ssize_t max_fill,
    Py_ssize_t start,
    const int64_t[::1] user,
    const int64_t[::1] item,
    const int32_t[::1] kind,
    const double[::1] time,
    const double[::1] weight,
    const double[::1] kind_weight,
    const index_t[::1] indptr,
    const index_t[::1] indices,
    const double[::1] tag_value,
    double lam,
    double t_ref,
):
    """Add events ``start, start + 1, ...`` to the table.

    Event i adds ``kind_weight[kind[i]] * weight[i] * exp(lam * (time[i] - t_ref)) *
    tag_value[p]`` to the slot of ``(user[i], indices[p])`` for each tag ``p`` of its item
    (``weight`` empty: 1).  Events whose factor is 0 add nothing (and create no slot).

    Returns ``(stop, count)``: events ``[start, stop)`` are folded and the table holds ``count``
    keys.  ``stop < n`` means that folding event ``stop`` could take the table past
    ``max_fill`` keys: grow it and call again from ``stop``.
    """
    cdef Py_ssize_t n = user.shape[0], i, j, b0, b1, ns = 0, stop = n
    cdef int64_t p, p0, p1, ukey, key
    cdef bint has_w = weight.shape[0] > 0
    cdef bint decays = lam != 0
    cdef slot_t* tab = &table[0]
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1
    cdef uint64_t h
    cdef double c
    cdef int64_t keys[STAGE]
    cdef double vals[STAGE]
    cdef uint64_t homes[STAGE]
    cdef double factor[BLOCK]
    cdef int64_t row_lo[BLOCK]
    cdef int64_t row_hi[BLOCK]
    with nogil:
        b0 = start
        while b0 < n and stop == n:
            b1 = b0 + BLOCK
            if b1 > n:
                b1 = n
            # pass 1: event factors; prefetch the items' row pointers
            for i in range(b0, b1):
                c = kind_weight[kind[i]]
                if has_w:
                    c = c * weight[i]
                if decays and c != 0:
                    c = c * exp(lam * (time[i] - t_ref))
                factor[i - b0] = c
                EC_PREFETCH_R(&indptr[item[i]])
            # pass 2: row bounds; prefetch the items' tags
            for i in range(b0, b1):
                p0 = indptr[item[i]]
                row_lo[i - b0] = p0
                row_hi[i - b0] = indptr[item[i] + 1]
                if row_hi[i - b0] > p0:  # an empty last row has p0 == nnz: no element to touch
                    EC_PREFETCH_R(&indices[p0])
                    EC_PREFETCH_R(&tag_value[p0])
            # pass 3: expand into staged insertions
            for i in range(b0, b1):
                c = factor[i - b0]
                if c == 0:
                    continue
                p0 = row_lo[i - b0]
                p1 = row_hi[i - b0]
                if count + ns + (p1 - p0) > max_fill:
                    for j in range(ns):
                        count += _add(tab, mask, homes[j], keys[j], vals[j])
                    ns = 0
                    if count + (p1 - p0) > max_fill:
                        stop = i
                        break
                ukey = (user[i] + 1) << 32
                for p in range(p0, p1):
                    key = ukey | <int64_t>indices[p]
                    h = _home(key, shift)
                    EC_PREFETCH_W(&tab[h])
                    keys[ns] = key
                    vals[ns] = c * tag_value[p]
                    homes[ns] = h
                    ns += 1
                    if ns == STAGE:
                        for j in range(STAGE):
                            count += _add(tab, mask, homes[j], keys[j], vals[j])
                        ns = 0
            b0 = b1
        for j in range(ns):
            count += _add(tab, mask, homes[j], keys[j], vals[j])
    return stop, count


def rehash(slot_t[::1] old, slot_t[::1] new, int shift, const uint8_t[::1] drop_user, double scale):
    """Insert every key of ``old`` into the empty table ``new`` with its value times ``scale``.

    Keys whose user ``u`` has ``drop_user[u] != 0`` are left out (``drop_user`` empty: none).
    Returns the number of keys inserted.
    """
    cdef Py_ssize_t i, j, ns = 0, cap = old.shape[0], n_drop = drop_user.shape[0]
    cdef Py_ssize_t count = 0
    cdef slot_t* src = &old[0]
    cdef slot_t* dst = &new[0]
    cdef uint64_t mask = <uint64_t>new.shape[0] - 1
    cdef int64_t key, u
    cdef int64_t keys[STAGE]
    cdef double vals[STAGE]
    cdef uint64_t homes[STAGE]
    with nogil:
        for i in range(cap):
            key = src[i].key
            if key == 0:
                continue
            if n_drop > 0:
                u = (key >> 32) - 1
                if u < n_drop and drop_user[u] != 0:
                    continue
            homes[ns] = _home(key, shift)
            EC_PREFETCH_W(&dst[homes[ns]])
            keys[ns] = key
            vals[ns] = src[i].val * scale
            ns += 1
            if ns == STAGE:
                for j in range(STAGE):
                    _put_new(dst, mask, homes[j], keys[j], vals[j])
                count += STAGE
                ns = 0
        for j in range(ns):
            _put_new(dst, mask, homes[j], keys[j], vals[j])
        count += ns
    return count


def add_table(slot_t[::1] table, int shift, Py_ssize_t count, slot_t[::1] other, double scale):
    """Add every key of ``other`` (value times ``scale``) into ``table``; return the new key count.

    ``table`` must have room for all of ``other``'s keys.
    """
    cdef Py_ssize_t i, j, ns = 0, cap = other.shape[0]
    cdef slot_t* src = &other[0]
    cdef slot_t* dst = &table[0]
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1
    cdef int64_t key
    cdef int64_t keys[STAGE]
    cdef double vals[STAGE]
    cdef uint64_t homes[STAGE]
    with nogil:
        for i in range(cap):
            key = src[i].key
            if key == 0:
                continue
            homes[ns] = _home(key, shift)
            EC_PREFETCH_W(&dst[homes[ns]])
            keys[ns] = key
            vals[ns] = src[i].val * scale
            ns += 1
            if ns == STAGE:
                for j in range(STAGE):
                    count += _add(dst, mask, homes[j], keys[j], vals[j])
                ns = 0
        for j in range(ns):
            count += _add(dst, mask, homes[j], keys[j], vals[j])
    return count


def insert_entries(
    slot_t[::1] table, int shift, const int64_t[::1] user, const int64_t[::1] tag, const double[::1] val
):
    """Insert distinct (user, tag) keys, absent from ``table``, with their values (loading)."""
    cdef Py_ssize_t i, n = user.shape[0]
    cdef slot_t* dst = &table[0]
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1
    cdef int64_t key
    with nogil:
        for i in range(n):
            key = ((user[i] + 1) << 32) | tag[i]
            _put_new(dst, mask, _home(key, shift), key, val[i])


def scale_values(slot_t[::1] table, double scale):
    """Multiply every stored value by ``scale`` (rebasing the reference time)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(table.shape[0]):
            if table[i].key != 0:
                table[i].val = table[i].val * scale


# ---------------------------------------------------------------------------------------------
# Export as sorted CSR: count per user, scatter by user, sort each row by tag
# ---------------------------------------------------------------------------------------------

cdef struct tagval_t:
    int64_t tag
    double val


cdef int _cmp_tag(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const tagval_t*>a).tag, y = (<const tagval_t*>b).tag
    return (x > y) - (x < y)


def count_entries(slot_t[::1] table, int64_t[::1] user_count):
    """Count the keys with a positive value per user (added into ``user_count``); return their number."""
    cdef Py_ssize_t i, nnz = 0
    cdef int64_t key
    with nogil:
        for i in range(table.shape[0]):
            key = table[i].key
            if key != 0 and table[i].val > 0:
                user_count[(key >> 32) - 1] += 1
                nnz += 1
    return nnz


def scatter_sorted(
    slot_t[::1] table,
    const int64_t[::1] indptr,
    int64_t[::1] user_next,
    int32_t[::1] out_tag,
    double[::1] out_val,
    tagval_t[::1] scratch,
):
    """Write the positive entries as CSR rows sorted by tag.

    ``indptr`` holds the row starts (prefix sums of :func:`count_entries`), ``user_next`` a
    copy of ``indptr[:-1]`` (advanced in place) and ``scratch`` room for the longest row.
    """
    cdef Py_ssize_t i, r, p, q, p0, p1, n_rows = indptr.shape[0] - 1
    cdef int64_t key, u
    cdef int32_t t
    cdef double v
    cdef tagval_t* buf = &scratch[0] if scratch.shape[0] > 0 else NULL
    with nogil:
        for i in range(table.shape[0]):
            key = table[i].key
            if key != 0 and table[i].val > 0:
                u = (key >> 32) - 1
                q = user_next[u]
                user_next[u] = q + 1
                out_tag[q] = <int32_t>(key & TAG_BITS)
                out_val[q] = table[i].val
        for r in range(n_rows):
            p0 = indptr[r]
            p1 = indptr[r + 1]
            if p1 - p0 <= 32:
                for p in range(p0 + 1, p1):  # insertion sort
                    t = out_tag[p]
                    v = out_val[p]
                    q = p
                    while q > p0 and out_tag[q - 1] > t:
                        out_tag[q] = out_tag[q - 1]
                        out_val[q] = out_val[q - 1]
                        q -= 1
                    out_tag[q] = t
                    out_val[q] = v
            else:
                for p in range(p0, p1):
                    buf[p - p0].tag = out_tag[p]
                    buf[p - p0].val = out_val[p]
                qsort(buf, p1 - p0, sizeof(tagval_t), _cmp_tag)
                for p in range(p0, p1):
                    out_tag[p] = <int32_t>buf[p - p0].tag
                    out_val[p] = buf[p - p0].val


# ---------------------------------------------------------------------------------------------
# Row post-processing of a CSR with float64 values
# ---------------------------------------------------------------------------------------------

cdef int _cmp_ranked(const void* a, const void* b) noexcept nogil:
    cdef const ranked_t* x = <const ranked_t*>a
    cdef const ranked_t* y = <const ranked_t*>b
    if x.val > y.val:
        return -1
    if x.val < y.val:
        return 1
    if x.tag < y.tag:
        return -1
    if x.tag > y.tag:
        return 1
    return 0


def row_topk_mask(
    const int64_t[::1] indptr, const int32_t[::1] indices, const double[::1] data, Py_ssize_t k,
    uint8_t[::1] keep, ranked_t[::1] scratch
):
    """Mark in ``keep`` the ``k`` largest entries of each row (ties: lower column first).

    ``scratch`` must hold the longest row.  Returns the number of entries kept.
    """
    cdef Py_ssize_t r, p, p0, p1, m, n_rows = indptr.shape[0] - 1, kept = 0
    cdef ranked_t* buf = &scratch[0] if scratch.shape[0] > 0 else NULL
    with nogil:
        for r in range(n_rows):
            p0 = indptr[r]
            p1 = indptr[r + 1]
            m = p1 - p0
            if m <= k:
                for p in range(p0, p1):
                    keep[p] = 1
                kept += m
                continue
            for p in range(p0, p1):
                keep[p] = 0
                buf[p - p0].val = data[p]
                buf[p - p0].pos = p
                buf[p - p0].tag = indices[p]
            qsort(buf, m, sizeof(ranked_t), _cmp_ranked)
            for p in range(k):
                keep[buf[p].pos] = 1
            kept += k
    return kept


def normalize_rows(const int64_t[::1] indptr, double[::1] data, int mode):
    """Divide each row in place by its norm: 1 = l2, 2 = l1, 3 = max (all values >= 0)."""
    cdef Py_ssize_t r, p, p0, p1, n_rows = indptr.shape[0] - 1
    cdef double mx, s, v, norm
    with nogil:
        for r in range(n_rows):
            p0 = indptr[r]
            p1 = indptr[r + 1]
            if p1 == p0:
                continue
            mx = 0
            s = 0
            for p in range(p0, p1):
                v = data[p]
                if v > mx:
                    mx = v
                s += v
            if mx == 0:
                continue
            if mode == 1:
                s = 0
                for p in range(p0, p1):
                    v = data[p] / mx
                    s += v * v
                norm = mx * sqrt(s)
            elif mode == 2:
                norm = s
            else:
                norm = mx
            for p in range(p0, p1):
                data[p] = data[p] / norm
