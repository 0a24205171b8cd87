# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-user frequency cap for audience lists: a greedy pass in global score order.

Loops only: every argument is assumed validated by :mod:`ecomcore.audience` (segments inside
the flat arrays, user ids in range, scores finite).  The GIL is released for the whole pass.
"""
from libc.stdint cimport int32_t, int64_t

from ecomcore_ext._types cimport floating, index_t


cdef inline bint _before(double ka, int64_t ra, double kb, int64_t rb) noexcept nogil:
    """Whether key (ka, ra) comes first: higher score, then lower row."""
    return ka > kb or (ka == kb and ra < rb)


cdef void _sift_down(double* key, int64_t* row, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t c
    cdef double xk = key[i]
    cdef int64_t xr = row[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _before(key[c + 1], row[c + 1], key[c], row[c]):
            c += 1
        if not _before(key[c], row[c], xk, xr):
            break
        key[i] = key[c]
        row[i] = row[c]
        i = c
    key[i] = xk
    row[i] = xr


def greedy_cap(
    const int64_t[::1] start, const int64_t[::1] length,
    const index_t[::1] user, const floating[::1] score,
    const unsigned char[::1] truncated, int64_t k, int32_t cap,
    int32_t[::1] used, int64_t[::1] taken, int64_t[::1] cursor,
    int64_t[::1] log_row, int64_t[::1] log_user, floating[::1] log_score, int64_t[::1] log_n,
    double[::1] heap_key, int64_t[::1] heap_row,
):
    """Merge the rows' candidate lists in global order, accepting under the caps (see .pyi)."""
    cdef Py_ssize_t n_rows = start.shape[0]
    cdef Py_ssize_t n = 0, i
    cdef int64_t r, e, u, stop = -1
    cdef int64_t nl = log_n[0]
    cdef double* hk = &heap_key[0] if n_rows > 0 else NULL
    cdef int64_t* hr = &heap_row[0] if n_rows > 0 else NULL
    with nogil:
        for r in range(n_rows):
            if taken[r] >= k:
                continue
            if cursor[r] < length[r]:
                hk[n] = score[start[r] + cursor[r]]
                hr[n] = r
                n += 1
            elif truncated[r] and stop < 0:
                stop = r
        if stop >= 0:
            n = 0
        i = n // 2
        while i > 0:
            i -= 1
            _sift_down(hk, hr, n, i)
        while n > 0:
            r = hr[0]
            e = start[r] + cursor[r]
            u = user[e]
            if used[u] < cap:
                used[u] += 1
                taken[r] += 1
                log_row[nl] = r
                log_user[nl] = u
                log_score[nl] = score[e]
                nl += 1
            cursor[r] += 1
            if taken[r] >= k or cursor[r] >= length[r]:
                if taken[r] < k and truncated[r]:
                    stop = r
                    break
                n -= 1
                hk[0] = hk[n]
                hr[0] = hr[n]
            else:
                hk[0] = score[e + 1]
            if n > 0:
                _sift_down(hk, hr, n, 0)
    log_n[0] = nl
    return stop
