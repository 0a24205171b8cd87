"""ecomcore_ext._columns (the self-join's input preparation) against NumPy/SciPy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ecomcore.similarity import _cast_transpose
from ecomcore_ext import _columns


def _random_csr(seed: int, n_rows: int, n_cols: int, density: float) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    m = sp.random_array((n_rows, n_cols), density=density, rng=rng, format="csr", dtype=np.float64)
    m.data = rng.lognormal(0.0, 3.0, m.nnz)  # a wide range of magnitudes
    m.sort_indices()
    return m


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", [(1, 1), (7, 40), (60, 5), (200, 300)])
def test_column_sumsq_is_bincount_bit_for_bit(seed, shape):
    m = _random_csr(seed, *shape, density=0.3)
    out = np.zeros(shape[1])
    _columns.column_sumsq(m.indices, m.data, out)
    ref = np.bincount(m.indices, weights=m.data * m.data, minlength=shape[1])
    np.testing.assert_array_equal(out, ref)  # same additions in the same order


@pytest.mark.parametrize("seed", range(6))
def test_divide_columns(seed):
    m = _random_csr(seed, 50, 30, density=0.4)
    div = np.random.default_rng(seed).uniform(0.5, 4.0, 30)
    out = np.empty_like(m.data)
    _columns.divide_columns(m.indices, m.data, div, out)
    np.testing.assert_array_equal(out, m.data / div[m.indices])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("vdt", [np.float32, np.float64])
@pytest.mark.parametrize("idt", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1, 3), (30, 1), (40, 25), (120, 400)])
def test_cast_transpose_matches_scipy(seed, vdt, idt, shape):
    m = _random_csr(seed, *shape, density=0.2)
    m.data = m.data / m.data.max()
    if shape[0] > 2:  # an empty row and an empty column
        m = sp.csr_array(m.multiply(np.arange(shape[0])[:, None] != 1))
        m.eliminate_zeros()
    m = sp.csr_array((m.data, m.indices.astype(idt), m.indptr.astype(idt)), shape=m.shape)
    n = m.shape[1]
    data = np.empty(m.nnz, vdt)
    t_indptr, t_indices, t_data = np.empty(n + 1, idt), np.empty(m.nnz, idt), np.empty(m.nnz, vdt)
    bad = _columns.cast_transpose(m.indptr, m.indices, m.data, data, t_indptr, t_indices, t_data, np.empty(n, idt))
    assert bad == 0
    np.testing.assert_array_equal(data, m.data.astype(vdt))
    ref = sp.csr_array(m.astype(vdt).T.tocsr())
    ref.sort_indices()
    np.testing.assert_array_equal(t_indptr, ref.indptr)
    np.testing.assert_array_equal(t_indices, ref.indices)
    np.testing.assert_array_equal(t_data, ref.data)


def test_cast_transpose_counts_overflow_and_similarity_refuses_it():
    w = sp.csr_array(np.array([[1e300, 1.0], [0.0, 2.0]]))
    with pytest.raises(ValueError, match="user_items.*overflow float32"):
        _cast_transpose(w, np.dtype(np.float32))
    out, wt = _cast_transpose(w, np.dtype(np.float64))  # fits float64
    np.testing.assert_array_equal(wt.toarray(), w.toarray().T)
    np.testing.assert_array_equal(out.toarray(), w.toarray())


def test_item_similarity_refuses_weights_overflowing_float64():
    import ecomcore as ec

    x = np.array([[1e10, 1.0], [1.0, 0.0]])
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="user_items.*overflow float64"):
        ec.item_similarity(x, method="bm25", K1=1e300)
