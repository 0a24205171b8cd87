"""Input validation and normalisation shared by the public API.

Everything a kernel relies on is established here: canonical CSR arrays of one index dtype,
index ranges, finite values, and the argument checks that turn bad input into a
``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from ecomcore_ext import _checks

INT32_MAX = np.iinfo(np.int32).max
# Index arrays switch to int64 once nnz or a dimension reaches this (below it int32 holds every
# index and every indptr value).  Tests lower it to run the int64 kernels on small inputs.
INT64_FROM = INT32_MAX


def index_dtype_for_sizes(*sizes: int) -> np.dtype:
    """int32 when every size (nnz, rows, columns) is below ``INT64_FROM``, else int64."""
    return np.dtype(np.int64) if max(sizes, default=0) >= INT64_FROM else np.dtype(np.int32)


@dataclass(frozen=True)
class CSRParts:
    """Validated CSR arrays: ``indptr``/``indices`` share ``index dtype``, ``data`` is float."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.indices.shape[0])

    def astype(self, index_dtype: np.dtype, value_dtype: np.dtype) -> CSRParts:
        """Return the same matrix with the given index and value dtypes (no copy when equal)."""
        return CSRParts(
            np.ascontiguousarray(self.indptr, dtype=index_dtype),
            np.ascontiguousarray(self.indices, dtype=index_dtype),
            np.ascontiguousarray(self.data, dtype=value_dtype),
            self.shape,
        )


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python int, rejecting bools, non-integers and values below ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def check_real(value: Any, name: str, *, minimum: Optional[float] = None) -> float:
    """Return ``value`` as a finite float (optionally ``>= minimum``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def available_cores() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# Explicit thread counts above this are refused: an OpenMP team of ~100,000 threads crashed the
# process (segfault) when thread creation failed, and no machine gives one process that many
# hardware threads (results never depend on n_threads, so more threads than cores only waste).
MAX_THREADS = 1024


def resolve_threads(n_threads: Any) -> int:
    """``None`` means every core the process may use; otherwise an int in
    ``[1, max(MAX_THREADS, cores)]``."""
    if n_threads is None:
        return available_cores()
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, numbers.Integral):
        raise ValueError(f"n_threads: expected None or a positive integer, got {n_threads!r}")
    if int(n_threads) < 1:
        raise ValueError(f"n_threads: expected None or a positive integer, got {n_threads!r}")
    top = max(MAX_THREADS, available_cores())
    if int(n_threads) > top:
        raise ValueError(f"n_threads: at most {top} threads supported, got {n_threads!r}")
    return int(n_threads)


def check_threshold(threshold: Any) -> float:
    """``None`` keeps every candidate; otherwise a finite real (scores must be strictly greater)."""
    if threshold is None:
        return -np.inf
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold: expected None or a real number, got {type(threshold).__name__}")
    t = float(threshold)
    if np.isnan(t):
        raise ValueError("threshold: must not be NaN")
    return t


def value_dtype_of(x: Any) -> np.dtype:
    """The float dtype a matrix's values will be computed in (float32 stays float32)."""
    dt = getattr(x, "dtype", None)
    if dt is not None and np.dtype(dt) == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def to_array(x: Any, name: str, *, what: str = "an array", numeric: bool = False) -> np.ndarray:
    """``np.asarray(x)``, turning a failed conversion (or, with ``numeric``, a non-numeric dtype)
    into a ``TypeError`` naming the argument."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to {what}") from exc
    if numeric and (arr.dtype == object or arr.dtype.kind not in "biuf"):
        raise TypeError(f"{name}: expected numeric values, got dtype {arr.dtype}")
    return arr


def checked_tocsr(x: Any, name: str) -> Any:
    """Convert a scipy sparse matrix to CSR, checking its index arrays first.

    scipy's CSC/BSR/COO converters index without bounds checks (an out-of-range index corrupts
    the heap), so the arrays are validated here (a CSR input is checked the same way); the
    caller's object is not modified.
    """
    fmt = x.format
    try:
        if fmt in ("csr", "csc", "bsr"):
            for part in ("indptr", "indices"):
                if np.asarray(getattr(x, part)).dtype.kind not in "iu":
                    raise TypeError(f"{name}: {fmt.upper()} index arrays must be integers")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                args = (x.data, x.indices, x.indptr)
                y = type(x)(args, shape=x.shape, copy=False)  # same arrays in a new object
                y.check_format(full_check=True)
            ip = np.asarray(y.indptr)
            if ip.shape[0] > 1 and bool(np.any(ip[1:] < ip[:-1])):  # scipy skips this check when nnz == 0
                raise ValueError("indptr must be a non-decreasing sequence")
            x = y
        elif fmt == "coo" and len(x.shape) == 2:
            coords = x.coords if hasattr(x, "coords") else (x.row, x.col)
            n = np.asarray(x.data).shape[0] if np.asarray(x.data).ndim == 1 else -1
            for axis, c in enumerate(coords):
                c = np.asarray(c)
                if c.dtype.kind not in "iu":
                    raise TypeError(f"{name}: COO coordinates must be integers")
                if c.ndim != 1 or c.shape[0] != n:
                    raise ValueError("coordinates and data must be 1-D arrays of one length")
                if c.size and (int(c.min()) < 0 or int(c.max()) >= x.shape[axis]):
                    raise ValueError(f"a coordinate on axis {axis} is out of range [0, {x.shape[axis]})")
        return x.tocsr()
    except TypeError as e:
        if str(e).startswith(name):
            raise
        raise TypeError(f"{name}: cannot convert the {fmt} matrix to CSR ({e})") from None
    except (ValueError, IndexError, OverflowError) as e:
        raise ValueError(f"{name}: invalid {fmt} matrix ({e})") from None


def _to_csr(x: Any, name: str) -> Any:
    """Return a scipy CSR (array or matrix) view of ``x``, converting other formats once."""
    if sp.issparse(x):
        if x.format != "csr":
            x = checked_tocsr(x, name)
        return x
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected a 2-D scipy sparse matrix or array, got {type(x).__name__}")
    arr = to_array(x, name, what="a 2-D matrix", numeric=True)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, got {arr.ndim} dimension(s)")
    if arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)  # float16 / longdouble: scipy.sparse and the kernels take float32/64
    return sp.csr_array(arr)


def as_csr(
    x: Any,
    name: str,
    *,
    value_dtype: np.dtype,
    structural: bool = False,
    shape: Optional[tuple[Optional[int], Optional[int]]] = None,
) -> CSRParts:
    """Validate a sparse matrix and return canonical CSR parts.

    Checks the pointer array and every column index before any kernel sees them, rejects NaN/inf,
    sums duplicate entries and sorts indices (scipy's convention) in a copy when the input is not
    canonical, and drops explicit zeros (a stored zero reaches nothing).  With ``structural`` the
    values are ignored (any stored entry counts, e.g. exclusions) and ``data`` is all ones.
    """
    csr = _to_csr(x, name)
    if csr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, got shape {csr.shape}")
    n_rows, n_cols = (int(s) for s in csr.shape)
    if shape is not None:
        for axis, (want, got) in enumerate(zip(shape, (n_rows, n_cols))):
            if want is not None and want != got:
                what = "rows" if axis == 0 else "columns"
                raise ValueError(f"{name}: expected {want} {what}, got shape {csr.shape}")
    dt = csr.dtype
    if dt.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric values, got dtype {dt}")
    indptr = np.asarray(csr.indptr)
    indices = np.asarray(csr.indices)
    if indptr.ndim != 1 or indptr.shape[0] != n_rows + 1:
        raise ValueError(f"{name}: indptr has length {indptr.shape[0]}, expected {n_rows + 1}")
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise TypeError(f"{name}: CSR index arrays must be integers")
    if indices.ndim != 1 or np.asarray(csr.data).ndim != 1:
        raise ValueError(f"{name}: CSR indices and data must be 1-D")
    nnz_stored = int(indices.shape[0])
    if np.asarray(csr.data).shape[0] != nnz_stored:
        raise ValueError(f"{name}: data and indices have different lengths")
    idx_dt = index_dtype_for_sizes(nnz_stored, n_rows, n_cols)
    indptr_c = _as_index(indptr, idx_dt, name, "indptr")
    indices_c = _as_index(indices, idx_dt, name, "indices")
    bad = _checks.check_indptr(indptr_c, nnz_stored)
    if bad >= 0:
        raise ValueError(
            f"{name}: invalid CSR indptr at position {bad} (must start at 0, be non-decreasing "
            f"and not exceed the {nnz_stored} stored entries)"
        )
    nnz = int(indptr_c[-1])
    if nnz != nnz_stored:
        indices_c = indices_c[:nnz]
    bad, canonical = _checks.check_indices(indptr_c, indices_c, n_cols)
    if bad >= 0:
        raise ValueError(
            f"{name}: column index {int(indices_c[bad])} at position {bad} is out of range "
            f"[0, {n_cols})"
        )
    data = np.asarray(csr.data)[:nnz]
    if data.dtype.kind == "f" and data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)  # float16 / longdouble: scanned (and computed) as float64
    if structural:
        data_c = np.ones(nnz, dtype=value_dtype)
    else:
        if data.dtype.kind == "f":
            bad, zeros = _checks.scan_values(np.ascontiguousarray(data))
            if bad >= 0:
                raise ValueError(f"{name}: contains a non-finite value ({data[bad]}) at position {bad}")
        else:
            zeros = int(np.count_nonzero(data == 0))
        data_c = np.ascontiguousarray(data, dtype=value_dtype)
        if value_dtype == np.float32 and data.dtype != np.float32 and nnz:
            bad, _ = _checks.scan_values(data_c)
            if bad >= 0:
                raise ValueError(f"{name}: value {data[bad]} overflows float32")
    if not canonical:
        m = sp.csr_array((data_c, indices_c, indptr_c), shape=(n_rows, n_cols), copy=True)
        m.sum_duplicates()
        if structural:
            m.data[:] = 1
        indptr_c = np.ascontiguousarray(m.indptr, dtype=idx_dt)
        indices_c = np.ascontiguousarray(m.indices, dtype=idx_dt)
        data_c = np.ascontiguousarray(m.data, dtype=value_dtype)
        zeros = 1 if not structural else 0
    if not structural and zeros:
        keep = data_c != 0
        if not keep.all():
            kept_before = np.zeros(data_c.shape[0] + 1, dtype=np.int64)
            np.cumsum(keep, out=kept_before[1:])
            new_ptr = kept_before[indptr_c].astype(idx_dt)
            indptr_c, indices_c, data_c = new_ptr, indices_c[keep], data_c[keep]
    return CSRParts(indptr_c, indices_c, data_c, (n_rows, n_cols))


def _as_index(a: np.ndarray, idx_dt: Any, name: str, what: str) -> np.ndarray:
    if a.dtype == idx_dt and a.flags.c_contiguous:
        return a
    if a.size and idx_dt == np.int32 and (a.max() > INT32_MAX or a.min() < -INT32_MAX):
        raise ValueError(f"{name}: {what} holds values out of range")
    return np.ascontiguousarray(a, dtype=idx_dt)


def as_vector(
    x: Any, name: str, n: int, *, dtype: Any = np.float64, minimum: Optional[float] = None,
    maximum: Optional[float] = None,
) -> np.ndarray:
    """A finite 1-D float vector of length ``n`` (optionally bounded)."""
    if sp.issparse(x):
        raise TypeError(f"{name}: expected a 1-D array, got a sparse matrix")
    arr = to_array(x, name, numeric=True)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    arr = np.asarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf")
    if minimum is not None and arr.size and arr.min() < minimum:
        raise ValueError(f"{name}: values must be >= {minimum}, got {arr.min()}")
    if maximum is not None and arr.size and arr.max() > maximum:
        raise ValueError(f"{name}: values must be <= {maximum}, got {arr.max()}")
    return arr


def as_ids(x: Any, name: str, n: int, *, unique: bool = False) -> np.ndarray:
    """Integer ids in ``[0, n)`` as an int64 array (a bool array is not accepted here)."""
    if sp.issparse(x):
        raise TypeError(f"{name}: expected a 1-D array of ids, got a sparse matrix")
    arr = to_array(x, name)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError(f"{name}: ids must be integers")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: ids must be integers, got dtype {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name}: id {bad} is out of range [0, {n})")
    arr = arr.astype(np.int64, copy=False)
    if unique and arr.size > 1 and np.unique(arr).size != arr.size:
        raise ValueError(f"{name}: ids must not repeat")
    return arr
