"""ecomcore.TopK, TopK.to_csr, merge_topk (sharded == unsharded) and concat_topk."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import int_problem, random_problem, random_sparse
from _reference import assert_topk_equal, assert_topk_wellformed, reference_topk

import ecomcore as ec


def _shards(n_merchants, n_shards, seed):
    """Disjoint merchant shards covering every merchant (interleaved, not contiguous)."""
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, n_shards, n_merchants)
    owner[:n_shards] = np.arange(n_shards)  # no shard is empty
    return [np.flatnonzero(owner == s) for s in range(n_shards)]


def _shard_via_weight(A, B, k, shard, w=None, **kw):
    """TopK over one shard with global indices: merchants outside the shard get weight 0."""
    n = B.shape[1]
    ws = np.zeros(n) if w is None else np.where(np.isin(np.arange(n), shard), w, 0.0)
    if w is None:
        ws[shard] = 1.0
    return ec.sparse_topk(A, B, k, merchant_weight=ws, **kw)


def _shard_via_slice(A, B, k, shard, **kw):
    """TopK over B[:, shard] (shard-local ids), mapped back to global merchant ids."""
    Bs = sp.csr_array(B)[:, shard]
    part = ec.sparse_topk(A, Bs, k, **kw)
    gidx = np.where(part.indices >= 0, shard[np.maximum(part.indices, 0)], -1)
    return ec.TopK(gidx.astype(np.int32), part.scores, part.counts, len(shard))


# ---------------------------------------------------------------------------------------------
# TopK container
# ---------------------------------------------------------------------------------------------


def test_topk_attributes_and_properties():
    A, B = int_problem(1, n_users=9, n_tags=5, n_merchants=7)
    res = ec.sparse_topk(A, B, 4)
    assert isinstance(res, ec.TopK)
    assert res.n_rows == 9
    assert res.width == 4
    assert res.n_cols == 7
    assert res.indices.dtype == np.int32
    assert_topk_wellformed(res, 9, 7, 4)


def test_topk_constructor_roundtrip():
    idx = np.array([[2, 0, -1], [-1, -1, -1]], dtype=np.int32)
    sc = np.array([[1.5, -1.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    t = ec.TopK(idx, sc, np.array([2, 0]), 5)
    assert t.n_rows == 2 and t.width == 3 and t.n_cols == 5
    np.testing.assert_array_equal(t.indices, idx)
    np.testing.assert_array_equal(t.scores, sc)


def test_to_csr_matches_topk():
    A, B = random_problem(2, n_users=30, n_tags=8, n_merchants=25)
    res = ec.sparse_topk(A, B, 6, threshold=-0.3)
    M = res.to_csr()
    assert isinstance(M, sp.csr_array)
    assert M.shape == (30, 25)
    assert M.dtype == res.scores.dtype
    expected = np.zeros((30, 25))
    for u in range(30):
        c = res.counts[u]
        expected[u, res.indices[u, :c]] = res.scores[u, :c]
        row = M[[u], :]
        np.testing.assert_array_equal(np.sort(row.indices), np.sort(res.indices[u, :c]))
    np.testing.assert_array_equal(M.toarray(), expected)
    assert M.nnz == int(res.counts.sum())
    np.testing.assert_array_equal(np.diff(M.indptr), res.counts)


def test_to_csr_keeps_zero_scores_stored():
    # A cancelled candidate (score exactly 0) is part of the result: it must stay stored.
    A = sp.csr_array(np.array([[1.0, 1.0], [0.0, 0.0]]))
    B = sp.csr_array(np.array([[1.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]))
    res = ec.sparse_topk(A, B, 3)
    M = res.to_csr()
    assert M.nnz == 2
    assert sorted(M.indices[M.indptr[0]:M.indptr[1]].tolist()) == [0, 1]
    np.testing.assert_array_equal(M.toarray(), [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])


def test_to_csr_empty():
    res = ec.sparse_topk(sp.csr_array((0, 3)), sp.csr_array(np.eye(3)), 2)
    M = res.to_csr()
    assert M.shape == (0, 3)
    assert M.nnz == 0


# ---------------------------------------------------------------------------------------------
# merge_topk
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 10, 40])
def test_merge_three_shards_equals_unsharded_exact_ties(k):
    # Integer data: many exact ties, including across shards; the merge must pick lower ids.
    A, B = int_problem(3, n_users=40, n_tags=6, n_merchants=30, density=0.5)
    whole = ec.sparse_topk(A, B, k)
    parts = [_shard_via_weight(A, B, k, s) for s in _shards(30, 3, seed=k)]
    merged = ec.merge_topk(parts, k)
    assert_topk_equal(merged, whole)
    assert_topk_equal(merged, reference_topk(A, B, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_three_shards_equals_unsharded_random(dtype):
    A, B = random_problem(4, n_users=60, n_tags=12, n_merchants=50, dtype=dtype)
    rng = np.random.default_rng(4)
    w = rng.uniform(0, 1, 50)
    F = random_sparse(5, (60, 50), 0.05)
    E = sp.csr_array(rng.random((60, 50)) < 0.1)
    kw = dict(follows=F, exclude=E, threshold=-0.1)
    whole = ec.sparse_topk(A, B, 6, merchant_weight=w, **kw)
    parts = [_shard_via_weight(A, B, 6, s, w=w, **kw) for s in _shards(50, 3, seed=5)]
    merged = ec.merge_topk(parts, 6)
    assert merged.scores.dtype == dtype
    assert_topk_equal(merged, whole)


def test_merge_sliced_shards_with_n_cols():
    # Each part only knows its own shard size; n_cols= gives the total.
    A, B = int_problem(6, n_users=25, n_tags=6, n_merchants=21, density=0.5)
    whole = ec.sparse_topk(A, B, 5)
    shards = _shards(21, 3, seed=6)
    parts = [_shard_via_slice(A, B, 5, s) for s in shards]
    merged = ec.merge_topk(parts, 5, n_cols=21)
    assert merged.n_cols == 21
    assert_topk_equal(merged, whole)


def test_merge_to_smaller_k():
    A, B = int_problem(7, n_users=20, n_tags=6, n_merchants=24, density=0.5)
    parts = [_shard_via_weight(A, B, 8, s) for s in _shards(24, 3, seed=7)]
    merged = ec.merge_topk(parts, 3)
    assert_topk_equal(merged, ec.sparse_topk(A, B, 3))


def test_merge_single_part_is_identity():
    A, B = random_problem(8, n_users=10, n_tags=5, n_merchants=9)
    res = ec.sparse_topk(A, B, 4)
    assert_topk_equal(ec.merge_topk([res], 4), res)


def test_merge_contiguous_ranker_shards():
    # The scale-out pattern: one Ranker per contiguous merchant range, ids offset to global.
    A, B = random_problem(9, n_users=30, n_tags=10, n_merchants=36)
    trust = np.random.default_rng(9).uniform(0, 1, 36)
    whole = ec.Ranker(B, trust=trust).topk(A, k=5)
    parts = []
    for lo, hi in ((0, 10), (10, 25), (25, 36)):
        r = ec.Ranker(B[:, lo:hi], trust=trust[lo:hi])
        p = r.topk(A, k=5)
        gidx = np.where(p.indices >= 0, p.indices + lo, -1).astype(np.int32)
        parts.append(ec.TopK(gidx, p.scores, p.counts, 36))
    assert_topk_equal(ec.merge_topk(parts, 5), whole)


# ---------------------------------------------------------------------------------------------
# concat_topk
# ---------------------------------------------------------------------------------------------


def test_concat_row_blocks_equals_whole():
    A, B = random_problem(10, n_users=47, n_tags=8, n_merchants=20)
    whole = ec.sparse_topk(A, B, 5)
    blocks = [ec.sparse_topk(A[lo:hi], B, 5) for lo, hi in ((0, 10), (10, 11), (11, 30),
                                                            (30, 47))]
    cat = ec.concat_topk(blocks)
    assert cat.n_cols == 20
    assert_topk_equal(cat, whole)


def test_concat_with_empty_block():
    A, B = random_problem(11, n_users=12, n_tags=8, n_merchants=20)
    whole = ec.sparse_topk(A, B, 3)
    blocks = [ec.sparse_topk(A[:0], B, 3), ec.sparse_topk(A[:5], B, 3),
              ec.sparse_topk(A[5:], B, 3)]
    assert_topk_equal(ec.concat_topk(blocks), whole)


def test_concat_generator_of_iter_topk():
    A, B = random_problem(12, n_users=33, n_tags=8, n_merchants=20)
    r = ec.Ranker(B)
    cat = ec.concat_topk(b for _, b in r.iter_topk(A, k=4, chunk_rows=8))
    assert_topk_equal(cat, r.topk(A, k=4))
