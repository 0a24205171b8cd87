# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Trust scoring kernels: category moments, per-indicator estimates, category percentiles.

Loops only: :mod:`ecomcore.trust_scoring` validates shapes, dtypes, category rows and priors and
documents every formula.  The kernels check the *values* of the statistics while streaming
through them (a branch-free flag per row instead of a separate validation sweep); when a row is
flagged, :func:`find_invalid` locates the first bad cell serially and Python raises.  The GIL is
released for every loop, rows (or magnitude indicators) are shared among ``n_threads`` OpenMP
threads, and every output cell is written by exactly one thread: thread-safe and deterministic.

Per-indicator parameters (arrays of length n_indicators) encode the kinds:

* ``lo``/``hi``: valid ``s`` lies in ``[lo * n, hi * n]`` (rate ``[0, (1+tol) n]``, rating
  ``[(1-tol) n, 5 (1+tol) n]``, magnitude ``[0, inf)``), and ``s == 0`` where ``n == 0``;
* ``off``/``scale``: the shrunk mean y maps to ``(y - off) * scale`` in [0, 1] (rate 0/1,
  rating 1/0.25), then ``flip + sign * e`` orients it (higher is better: 0/+1, lower: 1/-1).
"""
cimport cython
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, NAN, isfinite, sqrt
from libc.stdint cimport int8_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    #include <float.h>
    #include <math.h>
    /* Per-indicator parameters shared by every row (see the module docstring). */
    typedef struct {
        const double *lo, *hi, *off, *scale, *flip, *sign, *w_index, *w_dim;
        const int64_t *order, *dim_start;   /* indicators grouped by dimension */
        Py_ssize_t n_ind, n_dim;
    } ecs_params;

    /* The row loops below are split into simple, branch-free, restrict-qualified loops: GCC
       vectorises each of them with the portable flags (a single loop mixing the selects, the
       division and seven accumulators is not if-converted). */

    /* pos: n > 0 (the validity rules); live: n >= DBL_MIN, evidence that enters the moments.  A
       subnormal n (evidence decayed ~1022+ half-lives) counts as none: 1 / n would overflow. */
    static inline void ecs_positive(Py_ssize_t ni, const double *restrict n, const int64_t *restrict ev,
                                    double *restrict pos, double *restrict live, double *restrict kd)
    {
        for (Py_ssize_t i = 0; i < ni; i++) pos[i] = n[i] > 0.0 ? 1.0 : 0.0;
        for (Py_ssize_t i = 0; i < ni; i++) live[i] = n[i] >= DBL_MIN ? 1.0 : 0.0;
        for (Py_ssize_t i = 0; i < ni; i++) kd[i] = (double) ev[i];
    }

    static inline void ecs_accumulate(Py_ssize_t ni, const double *restrict n, const double *restrict s,
                                      const double *restrict s2, const double *restrict pos,
                                      const double *restrict live, const double *restrict kd, double *restrict aj, double *restrict ak,
                                      double *restrict akx, double *restrict akxx, double *restrict akv,
                                      double *restrict ak2, double *restrict an, double *restrict as,
                                      double *restrict av)
    {
        for (Py_ssize_t i = 0; i < ni; i++) {
            const double nv = n[i], sv = s[i], s2v = s2[i], p = pos[i], q = live[i], kv = kd[i];
            const double inv = 1.0 / (nv + (1.0 - q));   /* about 1 where n < DBL_MIN (finite, unused) */
            const double xb = sv * inv;
            const double kw = kv * q;
            double v = s2v * inv - xb * xb;
            double neg = -s2v, lack = p - kv;
            v = v > 0.0 ? v : 0.0;
            neg = neg > 0.0 ? neg : 0.0;
            lack = lack > 0.0 ? lack : 0.0;   /* k < 1 where n > 0, or k < 0 (k is whole) */
            aj[i] += q;
            ak[i] += kw;
            akx[i] += kw * xb;
            akxx[i] += kw * xb * xb;
            akv[i] += kw * v;
            ak2[i] += kw * kv;
            an[i] += nv;
            as[i] += sv;
            /* > 0 or NaN when s2 is negative, not finite, or non-zero where n == 0, or when the
               event count is negative, or below 1 where n > 0 */
            av[i] += neg + 0.0 * s2v + (1.0 - p) * fabs(s2v) + lack;
        }
    }

    /* Moments of one merchant's row into its category's accumulator block a[9][n_ind].
       tmp: 3 * n_ind doubles of scratch. */
    static inline void ecs_row_moments(Py_ssize_t ni, const double *n, const double *s, const double *s2,
                                       const int64_t *ev, double *a, double *tmp)
    {
        ecs_positive(ni, n, ev, tmp, tmp + ni, tmp + 2 * ni);
        ecs_accumulate(ni, n, s, s2, tmp, tmp + ni, tmp + 2 * ni, a, a + ni, a + 2 * ni, a + 3 * ni, a + 4 * ni,
                       a + 5 * ni, a + 6 * ni, a + 7 * ni, a + 8 * ni);
    }

    static inline void ecs_cells(Py_ssize_t ni, const double *restrict n, const double *restrict s,
                                 const double *restrict ak, const double *restrict k, const double *restrict lo,
                                 const double *restrict hi, const double *restrict off, const double *restrict scale,
                                 const double *restrict flip, const double *restrict sign,
                                 const double *restrict wi, double *restrict est, double *restrict cred,
                                 double *restrict viol)
    {
        for (Py_ssize_t i = 0; i < ni; i++) {
            const double nv = n[i], sv = s[i];
            const double inv = 1.0 / (nv + k[i]);
            double e = ((sv + ak[i]) * inv - off[i]) * scale[i];
            double v1 = lo[i] * nv - sv, v2 = sv - hi[i] * nv, v3 = -nv;
            v1 = v1 > 0.0 ? v1 : 0.0;
            v2 = v2 > 0.0 ? v2 : 0.0;
            v3 = v3 > 0.0 ? v3 : 0.0;
            e = e < 0.0 ? 0.0 : e;
            e = e > 1.0 ? 1.0 : e;
            est[i] = flip[i] + sign[i] * e;
            cred[i] = wi[i] * (nv * inv);
            /* > 0, inf or NaN exactly when the cell is invalid (hi is finite, so s != 0 where n == 0 shows) */
            viol[i] = (v1 + v2) + v3 + 0.0 * (nv + sv);
        }
    }

    static inline void ecs_wilson(Py_ssize_t ni, const double *restrict n, const double *restrict k, double z,
                                  double *restrict est)
    {
        const double z2 = z * z;
        for (Py_ssize_t i = 0; i < ni; i++) {
            const double big_n = n[i] + k[i], e = est[i];
            double b = (e * big_n + 0.5 * z2 - z * sqrt(e * (1.0 - e) * big_n + 0.25 * z2)) / (big_n + z2);
            b = b < 0.0 ? 0.0 : b;
            est[i] = b > e ? e : b;
        }
    }

    static inline double ecs_sum(Py_ssize_t ni, const double *restrict x)
    {
        double c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        Py_ssize_t i;
        for (i = 0; i + 4 <= ni; i += 4) { c0 += x[i]; c1 += x[i + 1]; c2 += x[i + 2]; c3 += x[i + 3]; }
        for (; i < ni; i++) c0 += x[i];
        return (c0 + c1) + (c2 + c3);
    }

    /* Estimates of one merchant's row: est (magnitude cells hold a placeholder), dims (weighted with
       w_dim, 0 for magnitudes), conf, evidence.  tmp: 2 * n_ind doubles of scratch.
       Returns 1 if a cell is invalid. */
    static inline int ecs_row_estimates(const ecs_params *p, const double *n, const double *s, const double *ak,
                                        const double *k, int cautious, double z, double *est, double *tmp,
                                        double *dims, double *conf, double *evidence)
    {
        const Py_ssize_t ni = p->n_ind;
        double v;
        ecs_cells(ni, n, s, ak, k, p->lo, p->hi, p->off, p->scale, p->flip, p->sign, p->w_index, est, tmp, tmp + ni);
        if (cautious) ecs_wilson(ni, n, k, z, est);
        *conf = ecs_sum(ni, tmp);
        *evidence = ecs_sum(ni, n);
        v = ecs_sum(ni, tmp + ni);
        for (Py_ssize_t d = 0; d < p->n_dim; d++) {
            double acc = 0.0;
            for (Py_ssize_t j = p->dim_start[d]; j < p->dim_start[d + 1]; j++) {
                const int64_t ix = p->order[j];
                acc += p->w_dim[ix] * est[ix];
            }
            dims[d] = acc;
        }
        return !(v == 0.0);
    }
    """
    ctypedef struct ecs_params:
        const double* lo
        const double* hi
        const double* off
        const double* scale
        const double* flip
        const double* sign
        const double* w_index
        const double* w_dim
        const int64_t* order
        const int64_t* dim_start
        Py_ssize_t n_ind
        Py_ssize_t n_dim
    void ecs_row_moments(Py_ssize_t ni, const double* n, const double* s, const double* s2, const int64_t* ev,
                         double* a, double* tmp) nogil
    int ecs_row_estimates(const ecs_params* p, const double* n, const double* s, const double* ak, const double* k,
                          int cautious, double z, double* est, double* tmp, double* dims, double* conf,
                          double* evidence) nogil


# LSD radix sort: 11-bit digits, 6 passes cover a 64-bit key.
cdef enum:
    RADIX_BITS = 8
    RADIX = 256
    N_DIGITS = 8


cdef int _cell_code(double nv, double sv, double lo, double hi) noexcept nogil:
    if not (isfinite(nv) and nv >= 0):
        return 1
    if not isfinite(sv):
        return 2
    if nv == 0 and sv != 0:
        return 5
    if not (sv >= lo * nv and sv <= hi * nv):
        return 3
    return 0


def find_invalid(
    const double[:, ::1] n,
    const double[:, ::1] s,
    const double[:, ::1] s2,
    const int64_t[:, ::1] events,
    const double[::1] lo,
    const double[::1] hi,
    bint check_moments,
):
    """First invalid cell, serially: ``(code, merchant, indicator)``.

    Codes: 0 none, 1 ``n`` not finite or negative, 2 ``s`` not finite, 3 ``s`` outside
    ``[lo n, hi n]``, 5 ``s != 0`` where ``n == 0``; with ``check_moments`` also 4 ``s2`` not
    finite, negative, or non-zero where ``n == 0``, and 6 an event count below 0, or below 1
    where ``n > 0``.
    """
    cdef Py_ssize_t m, i, bad_m = -1, bad_i = -1
    cdef int code = 0
    cdef double v, nv
    with nogil:
        for m in range(n.shape[0]):
            for i in range(n.shape[1]):
                nv = n[m, i]
                code = _cell_code(nv, s[m, i], lo[i], hi[i])
                if code == 0 and check_moments:
                    v = s2[m, i]
                    if not (isfinite(v) and v >= 0) or (nv == 0 and v != 0):
                        code = 4
                    elif events[m, i] < 0 or (nv > 0 and events[m, i] < 1):
                        code = 6
                if code != 0:
                    bad_m = m
                    bad_i = i
                    break
            if code != 0:
                break
    return code, bad_m, bad_i


def category_moments(
    const double[:, ::1] n,
    const double[:, ::1] s,
    const double[:, ::1] s2,
    const int64_t[:, ::1] events,
    const int64_t[::1] row,
    Py_ssize_t chunk,
    double[:, :, :, ::1] acc,
    int n_threads,
):
    """Accumulate per (row, indicator) moments over merchants with evidence (``n >= DBL_MIN``).

    With ``k`` the counted events, ``x = s / n`` the merchant's decayed mean and
    ``v = max(s2 / n - x**2, 0)`` its decayed within-merchant variance, ``acc[b, row[m], :, i]``
    (zeroed by the caller) receives: J (merchants), ``K = sum k``, ``sum k x``, ``sum k x**2``,
    ``sum k v``, ``sum k**2``, ``sum n``, ``sum s`` and a violation sum that is 0 exactly when every
    ``s2`` is finite, >= 0 and 0 where ``n`` is 0, and every ``k`` is >= 0 and >= 1 where ``n > 0``.
    Merchants ``b * chunk ... (b + 1) * chunk - 1`` go to block ``b`` (``acc.shape[0]`` blocks);
    blocks are shared among threads and summed by the caller in block order, so the result does
    not depend on the number of threads.  ``n`` and ``s`` are not checked here (:func:`estimates`
    checks them; their non-finite values show as non-finite sums).  Vectorised along the
    indicators.  A subnormal ``n`` (below the smallest normal double, about 2.2e-308: evidence
    decayed over ~1022 half-lives) counts as no evidence: it adds nothing to J, K and the sums
    weighted by k (``1 / n`` would overflow), while the validity rules above, shared with
    :func:`find_invalid`, still read ``n > 0`` and ``n == 0``.  Returns -1 when scratch memory
    cannot be allocated, else 0.
    """
    cdef Py_ssize_t b, m, m0, m1, n_m = n.shape[0], n_i = n.shape[1], n_b = acc.shape[0]
    cdef Py_ssize_t n_fail = 0
    cdef double* tmp
    if n_m == 0 or n_i == 0:
        return 0
    if chunk < 1 or n_b * chunk < n_m:
        raise ValueError("category_moments: the blocks do not cover every merchant")
    if (s.shape[0] != n_m or s2.shape[0] != n_m or events.shape[0] != n_m or row.shape[0] != n_m
            or s.shape[1] != n_i or s2.shape[1] != n_i or events.shape[1] != n_i or acc.shape[2] != 9
            or acc.shape[3] != n_i):
        raise ValueError("category_moments: inconsistent shapes")
    if n_threads < 1:
        n_threads = 1
    with nogil:
        for b in prange(n_b, num_threads=n_threads, schedule="dynamic"):
            tmp = <double*> malloc(3 * n_i * sizeof(double))
            if tmp == NULL:
                n_fail += 1
            else:
                m0 = b * chunk
                m1 = m0 + chunk
                if m1 > n_m:
                    m1 = n_m
                for m in range(m0, m1):
                    ecs_row_moments(n_i, &n[m, 0], &s[m, 0], &s2[m, 0], &events[m, 0], &acc[b, row[m], 0, 0], tmp)
                free(tmp)
    return -1 if n_fail else 0


def estimates(
    const double[:, ::1] n,
    const double[:, ::1] s,
    const int64_t[::1] cat,
    const double[::1] lo,
    const double[::1] hi,
    const double[::1] off,
    const double[::1] scale,
    const double[::1] flip,
    const double[::1] sign,
    const int64_t[::1] mag_ind,
    const int64_t[::1] order,
    const int64_t[::1] dim_start,
    const double[::1] w_dim,
    const double[::1] w_index,
    const double[:, ::1] ak,
    const double[:, ::1] k,
    bint cautious,
    double z,
    int mode,
    double[:, ::1] est,
    double[:, ::1] ymag,
    double[:, ::1] dims,
    double[::1] conf,
    double[::1] evidence,
    double[:, ::1] scratch,
    double[:, ::1] norms,
    int n_threads,
):
    """One pass over every (merchant, indicator) cell, rows shared among threads.

    Per merchant m: the oriented estimate of every cell (magnitude cells get a placeholder,
    overwritten later); ``dims[m, d]`` = sum over d's indicators (``order[dim_start[d]:
    dim_start[d + 1]]``) of ``w_dim[i] * est[m, i]`` (``w_dim`` is 0 for magnitudes, added later);
    ``conf[m]`` = sum ``w_index[i] * n / (n + k)``; ``evidence[m]`` = sum ``n``; ``ymag[j, m]`` =
    shrunk mean of magnitude ``mag_ind[j]`` (``-1`` without evidence).  ``ak`` and ``k`` are the
    prior's ``mean * strength`` and ``strength`` per (category, indicator).

    ``mode`` 0: the estimates stay in scratch (``est`` is not touched); 1: they are also stored in
    ``est[m, :]``; 2: only ``est`` is written (``dims``, ``conf``, ``evidence``, ``ymag`` are not
    touched).  ``scratch`` has one row of at least ``3 * n_indicators + n_dims + 2`` doubles per
    thread.  ``norms[c, i]`` receives the estimate of a cell without evidence (all-zero
    statistics) in category c: the category norm (magnitude cells get a placeholder).
    Returns the number of rows holding an invalid cell.
    """
    cdef Py_ssize_t m, i, j, n_m = n.shape[0], n_i = n.shape[1], n_d = dims.shape[1]
    cdef Py_ssize_t n_mag = mag_ind.shape[0]
    cdef Py_ssize_t n_bad = 0
    cdef int64_t c
    cdef double nv
    cdef ecs_params p
    cdef double* zeros = NULL
    cdef double* row
    cdef double* e_row
    cdef double* d_row
    cdef double* c_out
    cdef double* v_out
    # O(1) shape checks (the values were validated by ecomcore.trust_scoring)
    if n_threads > scratch.shape[0]:
        n_threads = <int> scratch.shape[0]
    if n_threads < 1 or scratch.shape[1] < 3 * n_i + n_d + 2:
        raise ValueError("estimates: scratch is too small")
    if s.shape[0] != n_m or s.shape[1] != n_i or cat.shape[0] != n_m or lo.shape[0] != n_i or ak.shape[1] != n_i:
        raise ValueError("estimates: inconsistent shapes")
    if k.shape[0] != ak.shape[0] or k.shape[1] != n_i or norms.shape[1] != n_i or norms.shape[0] > ak.shape[0]:
        raise ValueError("estimates: inconsistent prior shapes")
    if mode != 0 and (est.shape[0] != n_m or est.shape[1] != n_i):
        raise ValueError("estimates: est has the wrong shape")
    if mode != 2 and (dims.shape[0] != n_m or conf.shape[0] != n_m or evidence.shape[0] != n_m
                      or ymag.shape[0] != n_mag or ymag.shape[1] != n_m):
        raise ValueError("estimates: an output has the wrong shape")
    p.lo = &lo[0]
    p.hi = &hi[0]
    p.off = &off[0]
    p.scale = &scale[0]
    p.flip = &flip[0]
    p.sign = &sign[0]
    p.w_index = &w_index[0]
    p.w_dim = &w_dim[0]
    p.order = &order[0]
    p.dim_start = &dim_start[0]
    p.n_ind = n_i
    p.n_dim = n_d
    zeros = <double*> malloc((n_i + 1) * sizeof(double))
    if zeros == NULL:
        raise MemoryError()
    memset(zeros, 0, (n_i + 1) * sizeof(double))
    row = &scratch[0, 0]
    with nogil:
        for c in range(norms.shape[0]):
            ecs_row_estimates(&p, zeros, zeros, &ak[c, 0], &k[c, 0], cautious, z, &norms[c, 0], row + n_i,
                              row + 3 * n_i, row + 3 * n_i + n_d, row + 3 * n_i + n_d + 1)
    free(zeros)
    if n_m == 0:
        return 0
    with nogil:
        for m in prange(n_m, num_threads=n_threads, schedule="static"):
            c = cat[m]
            row = &scratch[threadid(), 0]
            e_row = &est[m, 0] if mode != 0 else row
            if mode == 2:
                d_row = row + 3 * n_i
                c_out = row + 3 * n_i + n_d
                v_out = row + 3 * n_i + n_d + 1
            else:
                d_row = &dims[m, 0]
                c_out = &conf[m]
                v_out = &evidence[m]
            n_bad += ecs_row_estimates(&p, &n[m, 0], &s[m, 0], &ak[c, 0], &k[c, 0], cautious, z, e_row, row + n_i,
                                       d_row, c_out, v_out)
            if mode != 2:
                for j in range(n_mag):
                    i = mag_ind[j]
                    nv = n[m, i]
                    ymag[j, m] = (s[m, i] + ak[c, i]) / (nv + k[c, i]) if nv > 0 else -1.0
    return n_bad


cdef inline uint64_t _key(double y) noexcept nogil:
    """Order-preserving unsigned key of a non-negative double (+0.0 and -0.0 alike)."""
    cdef uint64_t u
    y = y + 0.0
    if y < 0:
        y = 0.0
    memcpy(&u, &y, 8)
    return u


ctypedef struct pair_t:
    uint64_t key
    uint64_t val


cdef void _sort_pairs(pair_t* a, pair_t* tmp, Py_ssize_t n, Py_ssize_t* hist) noexcept nogil:
    """Stable sort of ``a[:n]`` by key; ``tmp`` has room for n pairs, ``hist`` for N_DIGITS * RADIX counts.

    Short runs: insertion sort.  Longer ones: LSD radix sort on RADIX_BITS-bit digits, skipping
    the digits every key shares (the sorted run always ends back in ``a``).
    """
    cdef Py_ssize_t j, d, b, total, cnt, i
    cdef Py_ssize_t* h
    cdef pair_t* src = a
    cdef pair_t* dst = tmp
    cdef pair_t* sw
    cdef pair_t x
    cdef uint64_t kj
    cdef int shift
    if n <= 32:
        for j in range(1, n):
            x = a[j]
            i = j - 1
            while i >= 0 and a[i].key > x.key:
                a[i + 1] = a[i]
                i -= 1
            a[i + 1] = x
        return
    memset(hist, 0, N_DIGITS * RADIX * sizeof(Py_ssize_t))
    for j in range(n):
        kj = a[j].key
        for d in range(N_DIGITS):
            hist[d * RADIX + ((kj >> (d * RADIX_BITS)) & (RADIX - 1))] += 1
    for d in range(N_DIGITS):
        h = hist + d * RADIX
        shift = d * RADIX_BITS
        if h[(src[0].key >> shift) & (RADIX - 1)] == n:
            continue  # every key has the same digit here: the pass would not move anything
        total = 0
        for b in range(RADIX):
            cnt = h[b]
            h[b] = total
            total += cnt
        for j in range(n):
            b = (src[j].key >> shift) & (RADIX - 1)
            dst[h[b]] = src[j]
            h[b] += 1
        sw = src
        src = dst
        dst = sw
    if src != a:
        memcpy(a, src, n * sizeof(pair_t))


cdef int _percentiles_one(const double* y, Py_ssize_t n_m, const int64_t* cat, Py_ssize_t n_cat, bint lower,
                          const double* norm_value, Py_ssize_t norm_stride, double* out,
                          double* norm_out, Py_ssize_t norm_out_stride) noexcept nogil:
    """Percentiles of one magnitude (see :func:`magnitude_percentiles`); -1 if out of memory.

    Counting sort of the merchants with evidence by category, then a stable sort of each
    category's block by the order-preserving key of y; ties are runs of equal keys.
    """
    cdef Py_ssize_t m, j, t, g, c, b0, b1, lo, hi, mid, n_r
    cdef double f, n_c
    cdef uint64_t k0
    cdef pair_t* a = NULL
    cdef pair_t* tmp = NULL
    cdef Py_ssize_t* hist = NULL
    cdef Py_ssize_t* start = NULL
    cdef int rc = 0
    start = <Py_ssize_t*> malloc((n_cat + 1) * sizeof(Py_ssize_t))
    hist = <Py_ssize_t*> malloc(N_DIGITS * RADIX * sizeof(Py_ssize_t))
    if start == NULL or hist == NULL:
        free(start)
        free(hist)
        return -1
    memset(start, 0, (n_cat + 1) * sizeof(Py_ssize_t))
    for m in range(n_m):
        if y[m] >= 0:
            start[cat[m] + 1] += 1
    for c in range(n_cat):
        start[c + 1] += start[c]
    n_r = start[n_cat]
    a = <pair_t*> malloc((n_r + 1) * sizeof(pair_t))
    tmp = <pair_t*> malloc((n_r + 1) * sizeof(pair_t))
    if a == NULL or tmp == NULL:
        rc = -1
    else:
        for m in range(n_m):
            if y[m] >= 0:
                c = cat[m]
                a[start[c]].key = _key(y[m])
                a[start[c]].val = <uint64_t> m
                start[c] += 1
        # start[c] is now the end of block c
        b0 = 0
        for c in range(n_cat):
            b1 = start[c]
            _sort_pairs(a + b0, tmp, b1 - b0, hist)
            n_c = <double> (b1 - b0)
            t = b0
            while t < b1:
                g = t + 1
                while g < b1 and a[g].key == a[t].key:
                    g += 1
                f = <double> ((t - b0) + (g - b0)) / (2.0 * n_c)
                if lower:
                    f = 1.0 - f
                for j in range(t, g):
                    out[a[j].val] = f
                t = g
            # the norm: percentile of the prior mean against the block (two binary searches)
            k0 = _key(norm_value[c * norm_stride])
            lo = b0
            hi = b1
            while lo < hi:
                mid = lo + (hi - lo) // 2
                if a[mid].key < k0:
                    lo = mid + 1
                else:
                    hi = mid
            t = lo
            hi = b1
            while lo < hi:
                mid = lo + (hi - lo) // 2
                if a[mid].key <= k0:
                    lo = mid + 1
                else:
                    hi = mid
            f = (0.5 * <double> ((t - b0) + (lo - b0)) + 0.5) / (n_c + 1.0)
            if lower:
                f = 1.0 - f
            norm_out[c * norm_out_stride] = f
            b0 = b1
        for m in range(n_m):
            if not (y[m] >= 0):
                out[m] = norm_out[cat[m] * norm_out_stride]
    free(a)
    free(tmp)
    free(hist)
    free(start)
    return rc


def magnitude_percentiles(
    const double[:, ::1] ymag,
    const int64_t[::1] mag_ind,
    const int8_t[::1] lower,
    const int64_t[::1] cat,
    Py_ssize_t n_cat,
    const double[:, ::1] prior_mean,
    double[:, ::1] out,
    double[:, ::1] norm,
    int n_threads,
):
    """Mid-rank percentile of each merchant's shrunk mean within its category, per magnitude.

    For magnitude j (indicator ``mag_ind[j]``), the reference set of category c is R_c, its
    merchants with evidence (``ymag[j, m] >= 0``).  A member gets ``(#{< y} + #{<= y}) / (2 |R_c|)``
    (itself counted once among its ties); a merchant without evidence sits at the category norm,
    the percentile ``((#{< C} + #{<= C}) / 2 + 0.5) / (|R_c| + 1)`` of the prior mean C, which is
    also written to ``norm[c, mag_ind[j]]``.  ``lower[j]`` turns every F into 1 - F.  Results go
    to ``out[j, :]``, which may be ``ymag`` itself (every shrunk mean is read into the sort keys
    before any percentile is written, and percentiles are >= 0 like the evidence marks).
    Sorting: a counting sort by category, then per category a stable sort of the IEEE bits of y
    (order-preserving for y >= 0): LSD radix, or insertion for short runs.  Magnitudes are shared
    among threads.
    Returns 0, or -1 when scratch memory cannot be allocated.
    """
    cdef Py_ssize_t j, n_mag = mag_ind.shape[0], n_m = ymag.shape[1]
    cdef Py_ssize_t n_fail = 0
    cdef Py_ssize_t ns = prior_mean.shape[1], nos = norm.shape[1]
    if n_mag == 0:
        return 0
    if (ymag.shape[0] != n_mag or out.shape[0] != n_mag or out.shape[1] != n_m or cat.shape[0] != n_m
            or lower.shape[0] != n_mag or prior_mean.shape[0] < n_cat or norm.shape[0] < n_cat):
        raise ValueError("magnitude_percentiles: inconsistent shapes")
    if n_threads < 1:
        n_threads = 1
    with nogil:
        for j in prange(n_mag, num_threads=n_threads, schedule="dynamic"):
            # with no merchants (n_m == 0) or no categories these are one-past-the-end addresses
            # of empty rows; _percentiles_one then reads and writes nothing through them
            with cython.boundscheck(False):
                if _percentiles_one(&ymag[j, 0], n_m, &cat[0], n_cat, lower[j] != 0, &prior_mean[0, mag_ind[j]],
                                    ns, &out[j, 0], &norm[0, mag_ind[j]], nos) != 0:
                    n_fail += 1
    return -1 if n_fail else 0


def finish(
    const double[:, ::1] pct,
    const int64_t[::1] mag_ind,
    const int64_t[::1] dim_of,
    const double[::1] w_dim,
    const double[::1] dim_share,
    const int8_t[::1] has_dim,
    const double[::1] veto_time,
    double now,
    double veto_window,
    double veto_floor,
    double[:, ::1] dims,
    double[::1] conf,
    double[::1] uncapped,
    double[::1] index,
    int8_t[::1] vetoed,
    int n_threads,
):
    """Per merchant: add the magnitude percentiles ``pct[j, m]`` to ``dims``, then finish.

    ``dims[m, d]`` becomes NaN where ``has_dim[d]`` is 0; ``uncapped[m]`` = sum over dimensions
    with indicators of ``dim_share[d] * dims[m, d]``, clipped to [0, 1]; ``vetoed[m]`` =
    ``now - veto_time[m] < veto_window``; ``index[m]`` = ``min(uncapped, veto_floor)`` when
    vetoed, else ``uncapped``; ``conf`` is clipped to [0, 1] in place.
    """
    cdef Py_ssize_t m, j, d, n_m = dims.shape[0], n_mag = mag_ind.shape[0], n_d = dims.shape[1]
    cdef int64_t i
    cdef double v, u
    cdef int8_t vt
    if (pct.shape[0] != n_mag or (n_mag and pct.shape[1] != n_m) or dim_share.shape[0] != n_d
            or has_dim.shape[0] != n_d or veto_time.shape[0] != n_m or conf.shape[0] != n_m
            or uncapped.shape[0] != n_m or index.shape[0] != n_m or vetoed.shape[0] != n_m):
        raise ValueError("finish: inconsistent shapes")
    with nogil:
        for m in prange(n_m, num_threads=n_threads, schedule="static"):
            for j in range(n_mag):
                i = mag_ind[j]
                dims[m, dim_of[i]] += w_dim[i] * pct[j, m]
            u = 0.0
            for d in range(n_d):
                if has_dim[d]:
                    u = u + dim_share[d] * dims[m, d]
                else:
                    dims[m, d] = NAN
            if u < 0:
                u = 0.0
            elif u > 1:
                u = 1.0
            uncapped[m] = u
            vt = 1 if now - veto_time[m] < veto_window else 0
            vetoed[m] = vt
            index[m] = (veto_floor if u > veto_floor else u) if vt else u
            v = conf[m]
            conf[m] = 0.0 if v < 0 else (1.0 if v > 1 else v)
