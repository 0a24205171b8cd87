# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Column loops over raw CSR arrays: sums of squares, division by a per-column value, transpose.

Loops only, for preparing the item self-join of :mod:`ecomcore.similarity` (which holds the
formulas): every argument is assumed validated there (indices in range, shapes consistent).
The GIL is released for every loop.
"""
from libc.math cimport isfinite

from ecomcore_ext._types cimport floating, index_t


def column_sumsq(const index_t[::1] indices, const double[::1] data, double[::1] out):
    """Add ``data[k] ** 2`` to ``out[indices[k]]``, in entry order (see ``_columns.pyi``)."""
    cdef Py_ssize_t k
    cdef double v
    with nogil:
        for k in range(indices.shape[0]):
            v = data[k]
            out[indices[k]] += v * v


def divide_columns(const index_t[::1] indices, const double[::1] data, const double[::1] div,
                   double[::1] out):
    """``out[k] = data[k] / div[indices[k]]`` (see ``_columns.pyi``)."""
    cdef Py_ssize_t k
    with nogil:
        for k in range(indices.shape[0]):
            out[k] = data[k] / div[indices[k]]


def cast_transpose(
    const index_t[::1] indptr, const index_t[::1] indices, const double[::1] data,
    floating[::1] out_data, index_t[::1] t_indptr, index_t[::1] t_indices,
    floating[::1] t_data, index_t[::1] next_pos,
):
    """Cast ``data`` to ``out_data`` and write the transpose (see ``_columns.pyi``)."""
    cdef Py_ssize_t r, k, j, n_rows = indptr.shape[0] - 1, n_cols = t_indptr.shape[0] - 1
    cdef Py_ssize_t bad = 0
    cdef index_t dst
    cdef floating v
    with nogil:
        for j in range(n_cols + 1):
            t_indptr[j] = 0
        for k in range(indices.shape[0]):
            t_indptr[indices[k] + 1] += 1
        for j in range(n_cols):
            t_indptr[j + 1] += t_indptr[j]
            next_pos[j] = t_indptr[j]
        for r in range(n_rows):
            for k in range(indptr[r], indptr[r + 1]):
                v = <floating>data[k]
                bad += not isfinite(v)
                out_data[k] = v
                j = indices[k]
                dst = next_pos[j]
                next_pos[j] = dst + 1
                t_indices[dst] = <index_t>r
                t_data[dst] = v
    return bad
