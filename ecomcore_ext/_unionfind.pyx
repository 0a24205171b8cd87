# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Identity-graph kernels: an int64 hash map and the store union-find rebuild.

Loops only: every argument is assumed validated by :mod:`ecomcore.governance` (ids in range,
buffers large enough).  The GIL is released wherever the kernels loop.

* :class:`IntMap` maps int64 values (store ids, integer identity keys) to dense ids
  0, 1, 2, ... in first-seen order: open addressing, linear probing, splitmix64 hashing, load
  factor at most 0.7, software prefetch a few keys ahead on batch calls.
* :class:`BlockIndex` answers "is any of these few keys blocked?" for one applicant in one
  call, with the memory loads of all keys issued before any is waited for.
* :func:`rebuild` groups the store-key links by key (counting sort, stable), drops repeated
  links, marks keys linked to more than ``max_per_key`` distinct stores as hubs, and unions the
  stores of every other key (union by size, path halving), then compresses every store to its
  root.  A hub key therefore never joins two stores.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memset

import numpy as np

cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__GNUC__) || defined(__clang__)
    #define EC_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define EC_PREFETCH(p) ((void)0)
    #endif
    #include <math.h>
    #if defined(__GNUC__) || defined(__clang__)
    static inline int ec_clz64(uint64_t x) { return x ? __builtin_clzll(x) : 64; }
    #else
    static inline int ec_clz64(uint64_t x) { int n = 0; if (!x) return 64; while (!(x >> 63)) { x <<= 1; n++; } return n; }
    #endif
    /* splitmix64 finaliser: a bijection of 64-bit words with good avalanche */
    static inline uint64_t ec_mix64(uint64_t x) {
        x ^= x >> 30; x *= UINT64_C(0xbf58476d1ce4e5b9);
        x ^= x >> 27; x *= UINT64_C(0x94d049bb133111eb);
        x ^= x >> 31;
        return x;
    }
    """
    void EC_PREFETCH(const void *p) nogil
    uint64_t ec_mix64(uint64_t x) nogil
    int ec_clz64(uint64_t x) nogil
    double log(double x) nogil
    double ldexp(double x, int e) nogil

# keys looked ahead (prefetched) by the batch loops; most keys of one BlockIndex query
cdef enum:
    AHEAD = 16
    MAX_QUERY = 32


cdef inline int64_t _probe_get(const int64_t *table, uint64_t mask, int64_t key) noexcept nogil:
    """Dense id of ``key`` or -1.  Slot i holds (key, id) at table[2i], table[2i+1]; id -1: empty."""
    cdef uint64_t h = ec_mix64(<uint64_t>key) & mask
    cdef int64_t v
    while True:
        v = table[2 * h + 1]
        if v < 0:
            return -1
        if table[2 * h] == key:
            return v
        h = (h + 1) & mask


cdef inline int64_t _probe_insert(int64_t *table, uint64_t mask, int64_t key, int64_t new_id) noexcept nogil:
    """Id of ``key``; when absent store it with ``new_id`` and return ``-1 - new_id``."""
    cdef uint64_t h = ec_mix64(<uint64_t>key) & mask
    cdef int64_t v
    while True:
        v = table[2 * h + 1]
        if v < 0:
            table[2 * h] = key
            table[2 * h + 1] = new_id
            return -1 - new_id
        if table[2 * h] == key:
            return v
        h = (h + 1) & mask


cdef double _distinct_estimate(const int64_t[::1] keys, Py_ssize_t start) noexcept nogil:
    """HyperLogLog estimate (2**14 registers, ~1 % error) of the distinct values in keys[start:]."""
    cdef uint8_t reg[16384]
    cdef Py_ssize_t i, m = 16384, zeros = 0
    cdef uint64_t h
    cdef int rho
    cdef double z = 0, e
    memset(reg, 0, m)
    for i in range(start, keys.shape[0]):
        h = ec_mix64(<uint64_t>keys[i] ^ <uint64_t>0x5bd1e9955bd1e995)
        rho = ec_clz64(h << 14) + 1
        if rho > 51:
            rho = 51
        if rho > reg[h >> 50]:
            reg[h >> 50] = <uint8_t>rho
    for i in range(m):
        z += ldexp(1.0, -reg[i])
        zeros += reg[i] == 0
    e = 0.7213 / (1 + 1.079 / m) * m * m / z
    if e <= 2.5 * m and zeros > 0:
        e = m * log(<double>m / zeros)
    return e


cdef inline int32_t _find(int32_t *parent, int32_t x) noexcept nogil:
    """Root of ``x`` with path halving."""
    cdef int32_t p
    while True:
        p = parent[x]
        if p == x:
            return x
        parent[x] = parent[p]
        x = parent[p]


cdef class IntMap:
    """Hash map from int64 values to dense ids assigned in first-seen order.

    Parameters
    ----------
    capacity : int, default 16
        Initial number of slots (rounded up to a power of two >= 16).

    Notes
    -----
    Not thread-safe on its own: the owner (``IdentityGraph``) serialises calls.
    """

    cdef int64_t[::1] _table
    cdef uint64_t _mask
    cdef readonly Py_ssize_t size

    def __cinit__(self, Py_ssize_t capacity=16):
        cdef Py_ssize_t cap = 16
        while cap < capacity:
            cap *= 2
        self._alloc(cap)
        self.size = 0

    cdef _alloc(self, Py_ssize_t cap):
        arr = np.empty(2 * cap, dtype=np.int64)
        arr[1::2] = -1
        self._table = arr
        self._mask = <uint64_t>(cap - 1)

    @property
    def capacity(self):
        """Number of slots."""
        return <Py_ssize_t>(self._mask + 1)

    @property
    def nbytes(self):
        """Bytes held by the slot table."""
        return <Py_ssize_t>(self._table.shape[0] * 8)

    cdef Py_ssize_t _max_used(self):
        """Entries allowed before the table doubles (load factor 0.7)."""
        return <Py_ssize_t>((self._mask + 1) * 7 // 10)

    cdef _grow(self, Py_ssize_t need):
        """Rehash so that ``need`` entries fit at load factor <= 0.7."""
        cdef Py_ssize_t cap = <Py_ssize_t>(self._mask + 1)
        cdef Py_ssize_t i, old_cap = cap
        cdef int64_t[::1] old = self._table
        cdef int64_t *t
        while need > cap * 7 // 10:
            cap *= 2
        if cap == old_cap:
            return
        self._alloc(cap)
        t = &self._table[0]
        with nogil:
            for i in range(old_cap):
                if old[2 * i + 1] >= 0:
                    _probe_insert(t, self._mask, old[2 * i], old[2 * i + 1])

    cpdef int64_t get(self, int64_t key):
        """Dense id of ``key``, or -1 when absent."""
        return _probe_get(&self._table[0], self._mask, key)

    def get_many(self, const int64_t[::1] keys, int32_t[::1] out):
        """``out[i]`` = dense id of ``keys[i]``, or -1 when absent."""
        cdef Py_ssize_t i, n = keys.shape[0]
        cdef const int64_t *t = &self._table[0]
        cdef uint64_t mask = self._mask
        with nogil:
            for i in range(n):
                if i + AHEAD < n:
                    EC_PREFETCH(&t[2 * (ec_mix64(<uint64_t>keys[i + AHEAD]) & mask)])
                out[i] = <int32_t>_probe_get(t, mask, keys[i])

    def get_or_insert_many(self, const int64_t[::1] keys, int32_t[::1] out, int64_t next_id,
                           int64_t[::1] new_keys):
        """Look up every key, giving absent ones the ids ``next_id, next_id + 1, ...``.

        ``out[i]`` receives the id of ``keys[i]``; the keys that were inserted are written, in
        id order, to ``new_keys`` (length >= ``len(keys)``).  Returns how many were inserted.
        The table doubles whenever it reaches load factor 0.7.
        """
        cdef Py_ssize_t i = 0, n = keys.shape[0], n_new = 0, max_used
        cdef int64_t *t
        cdef uint64_t mask
        cdef int64_t r, k
        cdef double est
        while i < n:
            if self.size + (n - i) > self._max_used():
                # the rest may not fit: size the table once for the distinct keys it holds
                # (estimated) instead of doubling step by step
                with nogil:
                    est = _distinct_estimate(keys, i)
                self._grow(self.size + <Py_ssize_t>(1.03 * est) + 64)
            if self.size >= self._max_used():
                self._grow(self.size + 1)
            t = &self._table[0]
            mask = self._mask
            max_used = self._max_used()
            with nogil:
                while i < n:
                    if i + AHEAD < n:
                        EC_PREFETCH(&t[2 * (ec_mix64(<uint64_t>keys[i + AHEAD]) & mask)])
                    k = keys[i]
                    r = _probe_insert(t, mask, k, next_id + n_new)
                    if r < 0:
                        new_keys[n_new] = k
                        n_new += 1
                        self.size += 1
                        r = -1 - r
                    out[i] = <int32_t>r
                    i += 1
                    if self.size >= max_used:
                        break
        return n_new

    def set_many(self, const int64_t[::1] keys, const int32_t[::1] ids):
        """Insert ``keys[i] -> ids[i]``; returns how many keys were already present (left as they were)."""
        cdef Py_ssize_t i, n = keys.shape[0], dups = 0
        cdef int64_t *t
        cdef uint64_t mask
        self._grow(self.size + n)
        t = &self._table[0]
        mask = self._mask
        with nogil:
            for i in range(n):
                if _probe_insert(t, mask, keys[i], ids[i]) >= 0:
                    dups += 1
        self.size += n - dups
        return dups


def rebuild(
    int32_t[::1] e_store,
    int32_t[::1] e_key,
    Py_ssize_t n_edges,
    Py_ssize_t n_stores,
    Py_ssize_t n_keys,
    int64_t max_per_key,
    int64_t[::1] key_ptr,
    int32_t[::1] scratch,
    int32_t[::1] parent,
    int32_t[::1] size,
    int32_t[::1] key_comp,
    int32_t[::1] key_degree,
):
    """Rebuild the store components from the links; returns the number of distinct links.

    Parameters (lengths): ``e_store``/``e_key`` (>= ``n_edges``) the links as (store id, key id)
    pairs, rewritten in place as the distinct links grouped by key (stable); ``key_ptr``
    (``n_keys + 1``) receives the key CSR pointers over them; ``scratch`` (>= ``n_edges``);
    ``parent``/``size`` (``n_stores``) receive each store's root / scratch; ``key_comp``
    (``n_keys``) the root store of each key's component, or ``n_stores`` for a hub key (degree
    > ``max_per_key``; ``max_per_key < 0`` means no hubs) and ``key_degree`` (``n_keys``) the
    number of distinct stores of each key.
    """
    cdef Py_ssize_t i, p, k, lo, hi, w, s
    cdef int32_t a, ra, rb
    cdef int32_t *par
    with nogil:
        # 1. counting sort of the links by key (stable): stores into scratch
        for k in range(n_keys + 1):
            key_ptr[k] = 0
        for i in range(n_edges):
            key_ptr[e_key[i] + 1] += 1
        for k in range(n_keys):
            key_ptr[k + 1] += key_ptr[k]
        for i in range(n_edges):
            k = e_key[i]
            scratch[key_ptr[k]] = e_store[i]
            key_ptr[k] += 1
        # key_ptr[k] is now the end of key k; shift back to starts
        for k in range(n_keys, 0, -1):
            key_ptr[k] = key_ptr[k - 1]
        key_ptr[0] = 0
        # 2. drop repeated (store, key) links; stamp = size array (last key that saw the store)
        for s in range(n_stores):
            size[s] = -1
        w = 0
        for k in range(n_keys):
            lo = key_ptr[k]
            hi = key_ptr[k + 1]
            key_ptr[k] = w
            for p in range(lo, hi):
                s = scratch[p]
                if size[s] != k:
                    size[s] = <int32_t>k
                    e_store[w] = <int32_t>s
                    e_key[w] = <int32_t>k
                    w += 1
            key_degree[k] = <int32_t>(w - key_ptr[k])
        key_ptr[n_keys] = w
        # 3. union the stores of every non-hub key
        par = &parent[0] if n_stores > 0 else NULL
        for s in range(n_stores):
            parent[s] = <int32_t>s
            size[s] = 1
        for k in range(n_keys):
            lo = key_ptr[k]
            hi = key_ptr[k + 1]
            if hi - lo < 2 or (max_per_key >= 0 and hi - lo > max_per_key):
                continue
            ra = _find(par, e_store[lo])
            for p in range(lo + 1, hi):
                rb = _find(par, e_store[p])
                if ra != rb:
                    if size[ra] < size[rb]:
                        a = ra
                        ra = rb
                        rb = a
                    parent[rb] = ra
                    size[ra] += size[rb]
        # 4. compress: every store points at its root
        for s in range(n_stores):
            parent[s] = _find(par, <int32_t>s)
        for k in range(n_keys):
            lo = key_ptr[k]
            hi = key_ptr[k + 1]
            if hi == lo or (max_per_key >= 0 and hi - lo > max_per_key):
                key_comp[k] = <int32_t>n_stores
            else:
                key_comp[k] = parent[e_store[lo]]
    return w


cdef class BlockIndex:
    """Key -> component and component -> banned-store count, for one-applicant queries.

    Parameters
    ----------
    key_comp : int32 array
        Component (root store) of each key id; hub keys point at an entry of ``nbanned``
        that stays 0.
    nbanned : int32 array
        Banned stores per component; may be updated in place by the owner.
    """

    cdef const int32_t[::1] _key_comp
    cdef const int32_t[::1] _nbanned

    def __cinit__(self, const int32_t[::1] key_comp, const int32_t[::1] nbanned):
        self._key_comp = key_comp
        self._nbanned = nbanned

    def any_blocked(self, IntMap int_map, list keys, dict obj_map):
        """1 if some key is blocked, 0 if none, -1 if a key needs the general (Python) path.

        ``keys`` holds at most 32 keys; an ``int`` in int64 range is looked up in ``int_map``,
        a ``str``, ``bytes`` or ``tuple`` in ``obj_map`` (which raises ``TypeError`` for an
        unhashable tuple); any other type returns -1.  Every key is looked up before any
        answer, so a bad key always raises.
        """
        cdef Py_ssize_t i, n = len(keys), n_int = 0
        cdef int64_t ints[MAX_QUERY]
        cdef int64_t kids[MAX_QUERY]
        cdef int64_t roots[MAX_QUERY]
        cdef const int64_t *t = &int_map._table[0]
        cdef uint64_t mask = int_map._mask
        cdef const int32_t *kc = &self._key_comp[0] if self._key_comp.shape[0] else NULL
        cdef const int32_t *nb = &self._nbanned[0]
        cdef int found = 0
        if n > MAX_QUERY:
            return -1
        for i in range(n):
            k = keys[i]
            tk = type(k)
            if tk is int:
                try:
                    ints[n_int] = k
                except OverflowError:
                    return -1
                kids[i] = -2  # resolved below
                n_int += 1
            elif tk is str or tk is bytes or tk is tuple:
                kids[i] = obj_map.get(k, -1)
            else:
                return -1
        with nogil:
            for i in range(n_int):
                EC_PREFETCH(&t[2 * (ec_mix64(<uint64_t>ints[i]) & mask)])
            n_int = 0
            for i in range(n):
                if kids[i] == -2:
                    kids[i] = _probe_get(t, mask, ints[n_int])
                    n_int += 1
                if kids[i] >= 0:
                    EC_PREFETCH(&kc[kids[i]])
            for i in range(n):
                if kids[i] >= 0:
                    roots[i] = kc[kids[i]]
                    EC_PREFETCH(&nb[roots[i]])
            for i in range(n):
                if kids[i] >= 0 and nb[roots[i]] > 0:
                    found = 1
                    break
        return found
