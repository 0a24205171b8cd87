# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Validation and planning loops over raw CSR arrays (no temporaries, GIL released).

These kernels only report facts; :mod:`ecomcore` decides what is an error and what to raise.
"""
from libc.math cimport isfinite, fabs
from libc.stdint cimport int64_t

from ecomcore_ext._types cimport floating, index_t


def check_indptr(const index_t[::1] indptr, Py_ssize_t nnz):
    """Return -1 if ``indptr`` is a valid CSR pointer array over ``nnz`` entries, else the first bad position."""
    cdef Py_ssize_t i, n = indptr.shape[0]
    cdef Py_ssize_t bad = -1
    with nogil:
        if n == 0 or indptr[0] != 0:
            bad = 0
        else:
            for i in range(1, n):
                if indptr[i] < indptr[i - 1] or indptr[i] > nnz:
                    bad = i
                    break
    return bad


def check_indices(const index_t[::1] indptr, const index_t[::1] indices, Py_ssize_t n_cols):
    """Check column indices row by row.

    Returns ``(bad, canonical)``: ``bad`` is the position of the first index outside
    ``[0, n_cols)`` (or -1), ``canonical`` whether every row's indices strictly increase.
    ``indptr`` must already be valid for ``indices``.
    """
    cdef Py_ssize_t r, p, n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t bad = -1
    cdef bint canonical = True
    cdef index_t c
    with nogil:
        for r in range(n_rows):
            for p in range(indptr[r], indptr[r + 1]):
                c = indices[p]
                if c < 0 or c >= n_cols:
                    bad = p
                    break
                if p > indptr[r] and c <= indices[p - 1]:
                    canonical = False
            if bad >= 0:
                break
    return bad, canonical


def scan_values(const floating[::1] data):
    """Return ``(first non-finite position or -1, number of exact zeros)``."""
    cdef Py_ssize_t i, n = data.shape[0]
    cdef Py_ssize_t bad = -1, zeros = 0
    with nogil:
        for i in range(n):
            if not isfinite(data[i]):
                bad = i
                break
            zeros += data[i] == 0
    return bad, zeros


def row_abs_max(const index_t[::1] indptr, const floating[::1] data, double[::1] out):
    """``out[r] = max |data|`` over row ``r`` (0 for empty rows)."""
    cdef Py_ssize_t r, p
    cdef double m, v
    with nogil:
        for r in range(out.shape[0]):
            m = 0
            for p in range(indptr[r], indptr[r + 1]):
                v = fabs(data[p])
                if v > m:
                    m = v
            out[r] = m


def row_work_and_bound(
    const index_t[::1] a_indptr, const index_t[::1] a_indices, const floating[::1] a_data,
    const index_t[::1] b_indptr, const double[::1] b_row_absmax,
    const index_t[::1] f_indptr, const floating[::1] f_data, double f_scale,
    int64_t[::1] out_work,
):
    """Per-row multiply-add count into ``out_work``; return the largest score magnitude bound.

    work[u] = sum over the user's tags t of nnz(B[t, :]) (+ nnz(F[u, :]) when follows are given);
    bound[u] = sum_t |A[u, t]| * max_m |B[t, m]| + f_scale * sum_m |F[u, m]|, an upper bound of
    every partial sum the top-k kernel forms for that user.
    """
    cdef Py_ssize_t u, p, n_rows = a_indptr.shape[0] - 1
    cdef bint has_f = f_indptr.shape[0] > 0
    cdef int64_t work
    cdef double bound, fb, best = 0
    with nogil:
        for u in range(n_rows):
            work = 0
            bound = 0
            for p in range(a_indptr[u], a_indptr[u + 1]):
                work += b_indptr[a_indices[p] + 1] - b_indptr[a_indices[p]]
                bound += fabs(a_data[p]) * b_row_absmax[a_indices[p]]
            if has_f:
                fb = 0
                for p in range(f_indptr[u], f_indptr[u + 1]):
                    fb += fabs(f_data[p])
                work += f_indptr[u + 1] - f_indptr[u]
                bound += f_scale * fb
            out_work[u] = work
            if not (bound <= best):
                best = bound
    return best
