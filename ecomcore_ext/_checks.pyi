"""Type stubs for ecomcore_ext._checks (validation and planning loops over raw CSR arrays)."""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]

def check_indptr(indptr: IndexArray, nnz: int) -> int:
    """-1 if ``indptr`` is a valid CSR pointer array over ``nnz`` entries, else the first bad position."""

def check_indices(indptr: IndexArray, indices: IndexArray, n_cols: int) -> tuple[int, bool]:
    """(position of the first index outside ``[0, n_cols)`` or -1, whether rows strictly increase)."""

def scan_values(data: FloatArray) -> tuple[int, int]:
    """(position of the first non-finite value or -1, number of exact zeros)."""

def row_abs_max(indptr: IndexArray, data: FloatArray, out: npt.NDArray[np.float64]) -> None:
    """``out[r] = max |data|`` over row ``r`` (0 for empty rows)."""

def row_work_and_bound(
    a_indptr: IndexArray,
    a_indices: IndexArray,
    a_data: FloatArray,
    b_indptr: IndexArray,
    b_row_absmax: npt.NDArray[np.float64],
    f_indptr: IndexArray,
    f_data: FloatArray,
    f_scale: float,
    out_work: npt.NDArray[np.int64],
) -> float:
    """Per-row multiply-add counts into ``out_work``; returns the largest score-magnitude bound."""
