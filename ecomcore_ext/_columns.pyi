"""Type stubs for ecomcore_ext._columns (column loops over raw CSR arrays).

Arguments are not validated here: call through :mod:`ecomcore`.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]
DoubleArray = npt.NDArray[np.float64]

def column_sumsq(indices: IndexArray, data: DoubleArray, out: DoubleArray) -> None:
    """Add ``data[k] ** 2`` to ``out[indices[k]]`` for every k, in entry order (float64).

    The same sums, bit for bit, as ``np.bincount(indices, weights=data * data)``.
    """

def divide_columns(indices: IndexArray, data: DoubleArray, div: DoubleArray, out: DoubleArray) -> None:
    """``out[k] = data[k] / div[indices[k]]`` for every k (``out`` may be ``data``)."""

def cast_transpose(
    indptr: IndexArray,
    indices: IndexArray,
    data: DoubleArray,
    out_data: FloatArray,
    t_indptr: IndexArray,
    t_indices: IndexArray,
    t_data: FloatArray,
    next_pos: IndexArray,
) -> int:
    """Cast a CSR matrix's values and write its transpose, both in ``out_data``'s dtype.

    ``out_data[k]`` receives ``data[k]`` converted to the output dtype; ``t_indptr`` (n_cols +
    1 entries, overwritten), ``t_indices`` and ``t_data`` (nnz entries) receive the transpose
    in CSR form with ascending indices in every row (rows are visited in order).
    ``next_pos`` is scratch of n_cols entries.  All index arrays share one dtype, which must
    hold nnz.  Returns the number of converted values that are not finite (overflow).
    """
