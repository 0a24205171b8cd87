# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Forward-decay fold kernels for the trust engine (:mod:`ecomcore.trust`).

Loops only.  :mod:`ecomcore.trust` converts the event columns to the dtypes below, runs
:func:`validate_events` and :func:`check_buyers` (which only *report* the first bad position; the
messages are built in Python) and only then calls a folding kernel, so the folding kernels trust
their input: every merchant id is in range, every indicator id is in range, values and times are
finite.  Every loop releases the GIL; the kernels keep no global state and are deterministic.

State layout (owned by :class:`ecomcore.trust.TrustState`):

* ``acc``: float64 ``(n_merchants * n_indicators, 4)``, C order, 64-byte aligned so that one
  cell (decayed count, decayed sum, decayed sum of squares, number of events) is one half of a
  cache line.  Weights are ``exp(lam * (t - t_ref))`` (forward decay).
* ``veto``: float64 ``(n_merchants,)``, latest veto time (``-inf`` when none).
* ``table``: the buyer-deduplication hash table, an array of :c:type:`slot_t` (numpy dtype
  ``[('key', '<i8'), ('buyer', '<i8'), ('t', '<f8'), ('v', '<f8')]``), open addressing with
  linear probing, capacity a power of two.  ``key`` is the cell plus one, 0 marks an empty slot
  (so a fresh table is plain zeroed memory).  The key of a slot is ``(cell, buyer,
  floor(t / dedupe_seconds))``; it holds the counted event of that key: the earliest one, ties
  broken by the smallest value.
"""
from libc.math cimport exp, floor, fabs, ldexp, log, INFINITY
from libc.string cimport memcmp, memcpy, memset
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

# Largest |time| accepted (Unix seconds, ~ year 5138): catches milli/micro/nanosecond stamps.
cdef double _TIME_LIMIT = 1e11

ctypedef fused mid_t:
    int32_t
    int64_t

ctypedef fused iid_t:
    int32_t
    int64_t

ctypedef fused time_t:
    double
    int64_t

ctypedef fused bid_t:
    int32_t
    int64_t

ctypedef struct slot_t:
    int64_t key
    int64_t buyer
    double t
    double v

ctypedef union dbits:
    double d
    uint64_t u

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define ECC_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1, 3)
    #else
    #define ECC_PREFETCH_W(p) ((void)0)
    #endif
    """
    void ECC_PREFETCH_W(const void *p) nogil

cdef extern from *:
    """
    #if defined(_MSC_VER) && !defined(__clang__)
    #include <intrin.h>
    static int ecc_clz64(unsigned long long x) { unsigned long i; _BitScanReverse64(&i, x); return 63 - (int)i; }
    #else
    static int ecc_clz64(unsigned long long x) { return __builtin_clzll(x); }
    #endif
    """
    int ecc_clz64(uint64_t x) nogil  # x != 0

# Events ahead whose accumulator cell (or hash slot) is prefetched.
cdef enum:
    PF = 16
    PF_MASK = 15

TIME_LIMIT = _TIME_LIMIT


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # splitmix64 finaliser
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111ebULL
    x ^= x >> 31
    return x


cdef inline uint64_t _key_hash(int64_t cell, int64_t buyer, double bucket) noexcept nogil:
    cdef dbits b
    b.d = bucket + 0.0  # -0.0 -> 0.0
    return _mix(<uint64_t>cell * <uint64_t>0x9e3779b97f4a7c15ULL ^ _mix(<uint64_t>buyer ^ (b.u * <uint64_t>0xc2b2ae3d27d4eb4fULL)))


# ---------------------------------------------------------------------------------------------
# validation (reports only)


def validate_events(
    const mid_t[::1] merchant,
    const iid_t[::1] indicator,
    const double[::1] value,
    const time_t[::1] time,
    int64_t n_merchants,
    const double[::1] lo,
    const double[::1] hi,
    const uint8_t[::1] binary,
):
    """Check every event; return ``(bad, t_min, t_max)``.

    ``bad`` is the first position where the merchant id is outside ``[0, n_merchants)``, the
    indicator id outside ``[0, len(lo))``, the value outside ``[lo[i], hi[i]]`` (or not 0/1 when
    ``binary[i]``; NaN fails), or ``|time| > TIME_LIMIT`` (NaN fails), else -1.  ``t_min`` and
    ``t_max`` are taken over the events before ``bad`` (all of them when valid).
    """
    cdef Py_ssize_t j, n = merchant.shape[0]
    cdef Py_ssize_t bad = -1
    cdef uint64_t n_ind = <uint64_t>lo.shape[0]
    cdef uint64_t n_m = <uint64_t>n_merchants
    cdef int64_t m, i, ii
    cdef double v, t
    cdef double t_min = INFINITY, t_max = -INFINITY
    cdef bint ok
    if value.shape[0] != n or time.shape[0] != n or hi.shape[0] != <Py_ssize_t>n_ind or binary.shape[0] != <Py_ssize_t>n_ind:
        raise ValueError("validate_events: length mismatch")
    with nogil:
        for j in range(n):
            m = merchant[j]
            i = indicator[j]
            v = value[j]
            t = <double>time[j]
            ok = (<uint64_t>i < n_ind)
            ii = i if ok else 0
            ok = ok & (<uint64_t>m < n_m) & (v >= lo[ii]) & (v <= hi[ii]) & (fabs(t) <= _TIME_LIMIT)
            ok = ok & ((binary[ii] == 0) | (v * (1.0 - v) == 0.0))
            if not ok:
                bad = j
                break
            if t < t_min:
                t_min = t
            if t > t_max:
                t_max = t
    return bad, t_min, t_max


def estimate_keys(
    const mid_t[::1] merchant,
    const iid_t[::1] indicator,
    const time_t[::1] time,
    const bid_t[::1] buyer,
    int64_t n_ind,
    double dedupe_seconds,
):
    """HyperLogLog estimate (2**14 registers, ~1 % error) of the distinct deduplication keys among buyer events."""
    cdef Py_ssize_t j, n = merchant.shape[0]
    cdef uint8_t reg[1 << 14]
    cdef uint64_t h, w
    cdef int64_t b
    cdef int r, k, zeros = 0
    cdef double z = 0.0, m = 1 << 14, est
    memset(reg, 0, sizeof(reg))
    with nogil:
        for j in range(n):
            b = buyer[j]
            if b < 0:
                continue
            h = _key_hash(merchant[j] * n_ind + indicator[j], b, floor(<double>time[j] / dedupe_seconds))
            w = (h << 14) | (<uint64_t>1 << 13)
            r = ecc_clz64(w) + 1
            k = <int>(h >> 50)
            if r > reg[k]:
                reg[k] = <uint8_t>r
        for k in range(1 << 14):
            z += ldexp(1.0, -reg[k])
            zeros += reg[k] == 0
    est = (0.7213 / (1.0 + 1.079 / m)) * m * m / z
    if est <= 2.5 * m and zeros > 0:
        est = m * log(m / zeros)
    return est


cdef inline uint64_t _bytes_hash(const uint8_t *p, Py_ssize_t nb) noexcept nogil:
    cdef uint64_t h = <uint64_t>0x9e3779b97f4a7c15ULL, x
    cdef Py_ssize_t k = 0
    while k + 8 <= nb:
        memcpy(&x, p + k, 8)
        h = (h ^ x) * <uint64_t>0xff51afd7ed558ccdULL
        h ^= h >> 29
        k += 8
    while k < nb:
        h = (h ^ p[k]) * <uint64_t>0xc4ceb9fe1a85ec53ULL
        k += 1
    return _mix(h)


def map_fixed_names(
    const uint8_t[:, ::1] col,
    const uint8_t[:, ::1] names,
    const int64_t[::1] name_ids,
    int64_t[::1] slots,
    int64_t[::1] out,
):
    """Map fixed-width strings (rows of ``col``, raw bytes) to ids; return the first unknown position or -1.

    ``names`` holds the known names in the same fixed-width encoding (zero-padded, same row
    width); ``name_ids[r]`` is the id of row ``r``.  ``slots`` (a power of two, at least twice
    the names, all -1) is scratch for the lookup table.  ``out[j]`` gets the id of ``col[j]``.
    """
    cdef Py_ssize_t j, r, n = col.shape[0], nb = col.shape[1], k = names.shape[0]
    cdef Py_ssize_t bad = -1
    cdef uint64_t mask = <uint64_t>slots.shape[0] - 1
    cdef uint64_t h
    cdef int64_t q
    if names.shape[1] != nb or name_ids.shape[0] != k or out.shape[0] < n:
        raise ValueError("map_fixed_names: shape mismatch")
    if slots.shape[0] < 2 * k or slots.shape[0] & (slots.shape[0] - 1):
        raise ValueError("map_fixed_names: slots must be a power of two >= 2 * names")
    if n == 0:
        return -1
    with nogil:
        for r in range(k):
            h = _bytes_hash(&names[r, 0], nb)
            while slots[h & mask] >= 0:
                h += 1
            slots[h & mask] = r
        for j in range(n):
            h = _bytes_hash(&col[j, 0], nb)
            while True:
                q = slots[h & mask]
                if q < 0:
                    break
                if memcmp(&col[j, 0], &names[q, 0], nb) == 0:
                    break
                h += 1
            if q < 0:
                bad = j
                break
            out[j] = name_ids[q]
    return bad


def check_buyers(const bid_t[::1] buyer):
    """Return ``(first position of a buyer id < -1 or -1, number of ids >= 0)``."""
    cdef Py_ssize_t j, n = buyer.shape[0]
    cdef Py_ssize_t bad = -1, count = 0
    cdef int64_t b
    with nogil:
        for j in range(n):
            b = buyer[j]
            if b < -1:
                bad = j
                break
            count += b >= 0
    return bad, count


# ---------------------------------------------------------------------------------------------
# folding


def fold_sums(
    const mid_t[::1] merchant,
    const iid_t[::1] indicator,
    const double[::1] value,
    const time_t[::1] time,
    double[:, ::1] acc,
    double[::1] veto,
    const uint8_t[::1] veto_flag,
    double lam,
    double t_ref,
):
    """Add every event into ``acc`` with weight ``exp(lam * (t - t_ref))``; record vetoes.

    A veto event (``veto_flag[i]`` and value 1) sets ``veto[m] = max(veto[m], t)``.
    Inputs must be validated (ids in range, finite values and times).
    """
    cdef Py_ssize_t j, n = merchant.shape[0]
    cdef int64_t n_ind = veto_flag.shape[0]
    cdef int64_t m, i, c
    cdef double v, t, e, ev
    cdef double *base = &acc[0, 0] if acc.shape[0] > 0 else NULL
    cdef double *p
    if n == 0:
        return
    with nogil:
        for j in range(n):
            if j + PF < n:
                ECC_PREFETCH_W(base + 4 * (merchant[j + PF] * n_ind + indicator[j + PF]))
            m = merchant[j]
            i = indicator[j]
            v = value[j]
            t = <double>time[j]
            e = exp(lam * (t - t_ref))
            ev = e * v
            p = base + 4 * (m * n_ind + i)
            p[0] += e
            p[1] += ev
            p[2] += ev * v
            p[3] += 1.0
            if veto_flag[i] and v == 1.0 and t > veto[m]:
                veto[m] = t


cdef inline bint _table_put(
    slot_t *table, uint64_t mask, int64_t cell, int64_t buyer, double t, double v, double bucket,
    uint64_t h, double dd,
) noexcept nogil:
    """Insert or update one key; return True when a new slot was used."""
    cdef slot_t *s
    cdef int64_t key = cell + 1
    while True:
        s = table + (h & mask)
        if s.key == 0:
            s.key = key
            s.buyer = buyer
            s.t = t
            s.v = v
            return True
        if s.key == key and s.buyer == buyer and floor(s.t / dd) == bucket:
            if t < s.t or (t == s.t and v < s.v):
                s.t = t
                s.v = v
            return False
        h += 1


def fold_dedupe(
    const mid_t[::1] merchant,
    const iid_t[::1] indicator,
    const double[::1] value,
    const time_t[::1] time,
    const bid_t[::1] buyer,
    Py_ssize_t start,
    double[:, ::1] acc,
    double[::1] veto,
    const uint8_t[::1] veto_flag,
    double lam,
    double t_ref,
    slot_t[::1] table,
    Py_ssize_t used,
    Py_ssize_t max_used,
    double dedupe_seconds,
):
    """Fold events ``start, start + 1, ...``: without a buyer (id -1) into ``acc``, with one into ``table``.

    Stops before the first buyer event that would need a new slot once ``used`` reached
    ``max_used`` (the caller grows the table and calls again from there).  Vetoes are recorded
    for every veto event, counted or not.  Returns ``(next position, slots used)``.
    """
    cdef Py_ssize_t j, n = merchant.shape[0]
    cdef int64_t n_ind = veto_flag.shape[0]
    cdef int64_t m, i, c, b
    cdef double v, t, e, ev, bucket
    cdef double *base = &acc[0, 0] if acc.shape[0] > 0 else NULL
    cdef double *p
    cdef slot_t *tab = &table[0]
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1
    cdef uint64_t ring[PF]
    cdef uint64_t h
    cdef Py_ssize_t k
    if table.shape[0] < 2 or table.shape[0] & (table.shape[0] - 1):
        raise ValueError("fold_dedupe: table capacity must be a power of two >= 2")
    if start >= n:
        return n, used
    with nogil:
        # hashes of the next PF events (buyer events only), each slot prefetched when hashed
        for k in range(start, min(start + PF, n)):
            b = buyer[k]
            if b >= 0:
                h = _key_hash(merchant[k] * n_ind + indicator[k], b, floor(<double>time[k] / dedupe_seconds))
                ring[k & PF_MASK] = h
                ECC_PREFETCH_W(tab + (h & mask))
        j = start
        while j < n:
            m = merchant[j]
            i = indicator[j]
            v = value[j]
            t = <double>time[j]
            b = buyer[j]
            c = m * n_ind + i
            if b < 0:
                e = exp(lam * (t - t_ref))
                ev = e * v
                p = base + 4 * c
                p[0] += e
                p[1] += ev
                p[2] += ev * v
                p[3] += 1.0
            else:
                if used >= max_used:
                    break
                used += _table_put(tab, mask, c, b, t, v, floor(t / dedupe_seconds), ring[j & PF_MASK], dedupe_seconds)
            if veto_flag[i] and v == 1.0 and t > veto[m]:
                veto[m] = t
            k = j + PF
            if k < n:
                b = buyer[k]
                if b >= 0:
                    h = _key_hash(merchant[k] * n_ind + indicator[k], b, floor(<double>time[k] / dedupe_seconds))
                    ring[k & PF_MASK] = h
                    ECC_PREFETCH_W(tab + (h & mask))
                else:
                    ECC_PREFETCH_W(base + 4 * (merchant[k] * n_ind + indicator[k]))
            j += 1
    return j, used


def table_insert(
    slot_t[::1] table,
    const int64_t[::1] cell,
    const int64_t[::1] buyer,
    const double[::1] t,
    const double[::1] v,
    double dedupe_seconds,
):
    """Insert entries with the min rule (earliest time, then smallest value); return new slots used.

    The caller sizes ``table`` so that it stays within its load limit (an empty slot always remains).
    """
    cdef Py_ssize_t j, n = cell.shape[0]
    cdef Py_ssize_t added = 0
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1
    cdef slot_t *tab = &table[0]
    cdef double bucket
    if table.shape[0] < 2 or table.shape[0] & (table.shape[0] - 1):
        raise ValueError("table_insert: table capacity must be a power of two >= 2")
    with nogil:
        for j in range(n):
            bucket = floor(t[j] / dedupe_seconds)
            added += _table_put(tab, mask, cell[j], buyer[j], t[j], v[j], bucket, _key_hash(cell[j], buyer[j], bucket), dedupe_seconds)
    return added


def table_rehash(const slot_t[::1] old, slot_t[::1] new, double dedupe_seconds):
    """Insert every occupied slot of ``old`` into the empty table ``new``; return the slots used."""
    cdef Py_ssize_t j, cap = old.shape[0]
    cdef Py_ssize_t added = 0
    cdef uint64_t mask = <uint64_t>new.shape[0] - 1
    cdef slot_t *tab = &new[0]
    cdef double bucket
    if new.shape[0] < 2 or new.shape[0] & (new.shape[0] - 1):
        raise ValueError("table_rehash: table capacity must be a power of two >= 2")
    with nogil:
        for j in range(cap):
            if old[j].key == 0:
                continue
            bucket = floor(old[j].t / dedupe_seconds)
            added += _table_put(tab, mask, old[j].key - 1, old[j].buyer, old[j].t, old[j].v, bucket,
                                _key_hash(old[j].key - 1, old[j].buyer, bucket), dedupe_seconds)
    return added


def table_check(const slot_t[::1] table, double dedupe_seconds):
    """Check the table invariants; return the first bad slot or -1.

    Each occupied slot must be the first slot holding its key on the probe path from its home
    slot, with no empty slot before it (so lookups find it and keys are unique).  The caller
    checks the capacity (a power of two) and that at least one slot is empty.
    """
    cdef Py_ssize_t j, cap = table.shape[0]
    cdef Py_ssize_t bad = -1
    cdef uint64_t mask = <uint64_t>cap - 1
    cdef uint64_t h
    cdef double bucket
    cdef const slot_t *s
    with nogil:
        for j in range(cap):
            if table[j].key == 0:
                continue
            bucket = floor(table[j].t / dedupe_seconds)
            h = _key_hash(table[j].key - 1, table[j].buyer, bucket)
            while True:
                s = &table[h & mask]
                if s.key == 0 or (s.key == table[j].key and s.buyer == table[j].buyer
                                  and floor(s.t / dedupe_seconds) == bucket):
                    break
                h += 1
            if <Py_ssize_t>(h & mask) != j:
                bad = j
                break
    return bad


def table_entries(const slot_t[::1] table, int64_t[::1] cell, int64_t[::1] buyer, double[::1] t, double[::1] v):
    """Copy the occupied slots, in slot order, into the output arrays; return their number.

    The outputs must hold at least that many entries (the caller passes the table's count).
    """
    cdef Py_ssize_t j, k = 0, cap = table.shape[0], room = cell.shape[0]
    if buyer.shape[0] < room or t.shape[0] < room or v.shape[0] < room:
        raise ValueError("table_entries: output arrays differ in length")
    with nogil:
        for j in range(cap):
            if table[j].key == 0:
                continue
            if k == room:
                k = -1
                break
            cell[k] = table[j].key - 1
            buyer[k] = table[j].buyer
            t[k] = table[j].t
            v[k] = table[j].v
            k += 1
    if k < 0:
        raise ValueError("table_entries: more occupied slots than room")
    return k


# ---------------------------------------------------------------------------------------------
# reading


def write_stats(
    const double[:, ::1] acc,
    double scale,
    double[::1] n,
    double[::1] s,
    double[::1] s2,
    int64_t[::1] events,
):
    """``n, s, s2 = scale * acc[:, 0..2]``, ``events = acc[:, 3]`` (overwrites the outputs)."""
    cdef Py_ssize_t c, n_cells = acc.shape[0]
    with nogil:
        for c in range(n_cells):
            n[c] = acc[c, 0] * scale
            s[c] = acc[c, 1] * scale
            s2[c] = acc[c, 2] * scale
            events[c] = <int64_t>acc[c, 3]


def scale_cells(const double[:, ::1] acc, double scale, double[:, ::1] out):
    """``out[:, :3] = scale * acc[:, :3]``, ``out[:, 3] = acc[:, 3]``."""
    cdef Py_ssize_t c, n_cells = acc.shape[0]
    with nogil:
        for c in range(n_cells):
            out[c, 0] = acc[c, 0] * scale
            out[c, 1] = acc[c, 1] * scale
            out[c, 2] = acc[c, 2] * scale
            out[c, 3] = acc[c, 3]


def add_table_cells(const slot_t[::1] table, double lam, double now, double[:, ::1] out):
    """Add each kept deduplicated event, weight ``exp(lam * (t - now))``, to its cell of ``out``."""
    cdef Py_ssize_t j, cap = table.shape[0]
    cdef int64_t c
    cdef double e, v
    cdef double *base = &out[0, 0] if out.shape[0] > 0 else NULL
    cdef double *p
    with nogil:
        for j in range(cap):
            c = table[j].key - 1
            if c < 0:
                continue
            v = table[j].v
            e = exp(lam * (table[j].t - now))
            p = base + 4 * c
            p[0] += e
            p[1] += e * v
            p[2] += e * v * v
            p[3] += 1.0
