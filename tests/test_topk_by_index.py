"""The fused kernel's column-order output (``by_index``), diagonal exclusion (``skip_diag``),
positive mode (``positive``) and ``compact_rows``, against a dense NumPy reference.

These modes serve :func:`ecomcore.item_similarity`; the reference is the plain definition:
keep the best ``width`` candidates of each row by (score descending, index ascending), then
list them by ascending index.  Inputs are adversarial for the selection: integer-valued data
(many exact ties, also at the cut), rows above and below the buffer capacity, touched lists in
ascending and in scrambled order, all-dense and all-sparse rows, exclusions and thresholds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ecomcore.ranking import _make_workspace
from ecomcore_ext import _topk


def _reference(a, b, w, width, excl, threshold, skip_diag):
    s = (a @ b).toarray().astype(np.float64) * w[None, :]
    reached = (abs(a) @ abs(b)).toarray() > 0  # every stored value here is > 0
    rows = []
    for u in range(a.shape[0]):
        cand = np.flatnonzero(reached[u] & (w > 0))
        if excl is not None:
            cand = np.setdiff1d(cand, excl.indices[excl.indptr[u] : excl.indptr[u + 1]])
        if skip_diag:
            cand = cand[cand != u]
        vals = s[u, cand]
        keep = vals > threshold
        cand, vals = cand[keep], vals[keep]
        order = np.lexsort((cand, -vals))[:width]
        rows.append(np.sort(cand[order]))
    return rows


def _run(a, b, w, width, *, excl=None, threshold=-np.inf, skip_diag=False, positive=False,
         scan_min=None, n_threads=1, dtype=np.float64):
    idt = np.dtype(np.int32)
    vdt = np.dtype(dtype)
    n_u, n_m = a.shape[0], b.shape[1]
    ws = _make_workspace(n_threads, n_m, width, w.astype(vdt), idt)
    out_idx = np.empty((n_u, width), idt)
    out_sc = np.empty((n_u, width), vdt)
    out_cnt = np.empty(n_u, idt)
    empty = np.zeros(0, idt)
    e_ptr = empty if excl is None else excl.indptr.astype(idt)
    e_idx = empty if excl is None else excl.indices.astype(idt)
    _topk.fused_topk(
        a.indptr.astype(idt), a.indices.astype(idt), a.data.astype(vdt),
        b.indptr.astype(idt), b.indices.astype(idt), b.data.astype(vdt), w.astype(vdt),
        empty, empty, np.zeros(0, vdt), vdt.type(0), e_ptr, e_idx,
        vdt.type(threshold), max(n_m // 4, 1) if scan_min is None else scan_min, 0, n_u,
        out_idx, out_sc, out_cnt, *ws, n_threads,
        skip_diag=skip_diag, by_index=True, positive=positive,
    )  # fmt: skip
    # the workspace is handed back clean: accumulators and marks 0, sparse-row sums NaN
    assert not ws[0].any() and not ws[1].any() and np.isnan(ws[2][:, 0::2]).all()
    return out_idx, out_sc, out_cnt


def _market(rng, n_u, n_k, n_m, density, values, scramble):
    a = sp.random(n_u, n_k, density=density, random_state=rng, format="csr",
                  data_rvs=lambda n: rng.integers(1, values + 1, n).astype(float))  # fmt: skip
    b = sp.random(n_k, n_m, density=density, random_state=rng, format="csr",
                  data_rvs=lambda n: rng.integers(1, values + 1, n).astype(float))  # fmt: skip
    if scramble:
        # the order of first touches follows B's rows; unsorted indices inside each row of B
        # make the touched list unsorted even for rows with a single tag
        b = b.tocsr()
        for r in range(n_k):
            lo, hi = b.indptr[r], b.indptr[r + 1]
            p = rng.permutation(hi - lo)
            b.indices[lo:hi] = b.indices[lo:hi][p]
            b.data[lo:hi] = b.data[lo:hi][p]
        b.has_sorted_indices = False
    return sp.csr_array(a), sp.csr_array(b)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("width", [1, 3, 40, 300])
def test_by_index_matches_reference(seed, width):
    rng = np.random.default_rng(seed)
    n_u, n_k, n_m = 40, 30, 260
    a, b = _market(rng, n_u, n_k, n_m, density=rng.choice([0.05, 0.2, 0.5]), values=rng.choice([1, 3]),
                   scramble=bool(seed % 2))  # fmt: skip
    w = rng.choice([0.0, 0.5, 1.0, 2.0], n_m, p=[0.1, 0.3, 0.4, 0.2])
    # as Ranker does: a merchant with weight 0 is removed from B
    b = sp.csr_array(b.multiply((w > 0)[None, :]))
    b.eliminate_zeros()
    excl = sp.csr_array(sp.random(n_u, n_m, density=0.05, random_state=rng, format="csr"))
    threshold = [-np.inf, 0.0, 2.0][seed % 3]
    width = min(width, n_m)
    for scan_min in (1, 10**9, None):  # all dense rows, all sparse rows, the default split
        for skip_diag in (False, True):
            idx, sc, cnt = _run(a, b, w, width, excl=excl, threshold=threshold, skip_diag=skip_diag, scan_min=scan_min)
            ref = _reference(a, b, w, width, excl, threshold, skip_diag)
            dense = (a @ b).toarray() * w[None, :]
            for u in range(n_u):
                got = idx[u, : cnt[u]]
                np.testing.assert_array_equal(got, ref[u], err_msg=f"row {u}, scan_min {scan_min}")
                np.testing.assert_allclose(sc[u, : cnt[u]], dense[u, got], rtol=1e-12)
                assert (idx[u, cnt[u] :] == -1).all()


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_positive_mode_equals_general_mode(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    n = 300
    x = sp.random(60, n, density=rng.choice([0.03, 0.1, 0.4]), random_state=rng, format="csr",
                  data_rvs=lambda k: rng.integers(1, 4, k).astype(float))  # fmt: skip
    x = sp.csr_array(x)
    wt = sp.csr_array(x.T.tocsr())
    ones = np.ones(n)
    for width in (1, 7, 100, n):
        for scan_min in (1, 10**9, None):
            for skip_diag in (False, True):
                gen = _run(wt, x, ones, width, skip_diag=skip_diag, scan_min=scan_min, dtype=dtype)
                pos = _run(wt, x, ones, width, skip_diag=skip_diag, scan_min=scan_min, dtype=dtype, positive=True)
                for g, p in zip(gen, pos):
                    np.testing.assert_array_equal(g, p)
                ref = _reference(wt, x, ones, width, None, -np.inf, skip_diag)
                idx, _, cnt = pos
                for u in range(n):
                    np.testing.assert_array_equal(idx[u, : cnt[u]], ref[u])


@pytest.mark.parametrize("n_threads", [2, 4])
def test_by_index_independent_of_threads(n_threads):
    if not _topk.openmp_enabled():
        pytest.skip("serial build: one thread only")
    rng = np.random.default_rng(7)
    x = sp.csr_array(sp.random(200, 500, density=0.08, random_state=rng, format="csr",
                               data_rvs=lambda k: rng.integers(1, 3, k).astype(float)))  # fmt: skip
    wt = sp.csr_array(x.T.tocsr())
    ones = np.ones(500)
    one = _run(wt, x, ones, 50, skip_diag=True, positive=True)
    many = _run(wt, x, ones, 50, skip_diag=True, positive=True, n_threads=n_threads)
    for p, q in zip(one, many):
        np.testing.assert_array_equal(p, q)


def test_compact_rows_drops_only_the_diagonal():
    idt, vdt = np.dtype(np.int32), np.dtype(np.float64)
    # rows 10, 11, 12 of a larger matrix; row 10 holds itself, row 12 holds 10 (not itself)
    idx = np.array([[0, 10, 5, -1], [1, 3, -1, -1], [0, 2, 10, 6]], idt)
    sc = np.arange(12, dtype=vdt).reshape(3, 4)
    cnt = np.array([3, 2, 4], idt)
    for drop in (False, True):
        indptr = np.zeros(14, idt)
        indices = np.full(12, -7, idt)
        data = np.zeros(12, vdt)
        pos = _topk.compact_rows(idx, sc, cnt, 10, drop, 0, indptr, indices, data)
        row10 = [0, 5] if drop else [0, 10, 5]
        expect = row10 + [1, 3] + [0, 2, 10, 6]
        assert pos == len(expect)
        np.testing.assert_array_equal(indices[:pos], expect)
        np.testing.assert_array_equal(indptr[11:], np.cumsum([len(row10), 2, 4]))
        s10 = [0.0, 2.0] if drop else [0.0, 1.0, 2.0]
        np.testing.assert_array_equal(data[:pos], s10 + [4.0, 5.0, 8.0, 9.0, 10.0, 11.0])
