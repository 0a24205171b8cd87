"""ecomcore.Ranker: the weight formula, topk / iter_topk / topk_one / explain."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import int_problem, random_problem, random_sparse
from _reference import (
    assert_topk_close,
    assert_topk_equal,
    assert_topk_wellformed,
    dense,
    reference_scores,
    reference_topk,
    reference_weights,
)

import ecomcore as ec


def _row(A, u):
    """(tag_ids, tag_weights) of row u of a CSR array, in stored order."""
    s, e = A.indptr[u], A.indptr[u + 1]
    return A.indices[s:e].copy(), A.data[s:e].copy()


def _ulp_close(a, b, dtype):
    """|a - b| <= 1 ulp (in ``dtype``) of the larger magnitude."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(dtype)).astype(np.float64)
    return np.all(np.abs(a - b) <= spacing)


# ---------------------------------------------------------------------------------------------
# construction and the weight formula
# ---------------------------------------------------------------------------------------------


def test_defaults_give_unit_weights():
    _, B = random_problem(1, n_tags=7, n_merchants=11)
    r = ec.Ranker(B)
    assert r.n_merchants == 11
    assert r.n_tags == 7
    assert r.merchant_weight.shape == (11,)
    np.testing.assert_array_equal(r.merchant_weight, np.ones(11))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("min_trust", [0.0, 0.3, 0.6])
def test_weight_formula(beta, min_trust):
    rng = np.random.default_rng(2)
    n = 40
    trust = rng.uniform(0.01, 1.0, n)
    trust[:3] = [min_trust if min_trust > 0 else 0.5, 1.0, 0.3]  # equality with min_trust kept
    boost = rng.uniform(1.0, 3.0, n)
    banned = rng.random(n) < 0.2
    banned[0] = False
    _, B = random_problem(3, n_tags=5, n_merchants=n)
    r = ec.Ranker(B, trust=trust, beta=beta, boost=boost, banned=banned, min_trust=min_trust)
    expected = reference_weights(n, trust=trust, beta=beta, boost=boost, banned=banned,
                                 min_trust=min_trust)
    np.testing.assert_allclose(r.merchant_weight, expected, rtol=1e-12, atol=0)
    assert np.all(r.merchant_weight[banned] == 0)
    assert np.all(r.merchant_weight[trust < min_trust] == 0)
    assert r.merchant_weight[0] > 0  # trust == min_trust is not below it


def test_beta_zero_is_pure_interest():
    A, B = int_problem(4, n_users=25, n_tags=6, n_merchants=14)
    trust = np.linspace(0.1, 1.0, 14)
    r = ec.Ranker(B, trust=trust, beta=0.0)
    np.testing.assert_array_equal(r.merchant_weight, np.ones(14))
    assert_topk_equal(r.topk(A, k=5), reference_topk(A, B, 5))


def test_trust_orders_equal_interest():
    # Same interest everywhere: trust alone decides the order (beta = 1).
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.ones((1, 5)))
    trust = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    res = ec.Ranker(B, trust=trust).topk(A, k=5)
    assert res.indices.tolist() == [[1, 3, 2, 0, 4]]
    np.testing.assert_allclose(res.scores[0], [0.9, 0.9, 0.5, 0.2, 0.1])


def test_boost_multiplies():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[1.0, 2.0, 4.0]]))
    r = ec.Ranker(B, boost=np.array([8.0, 1.0, 0.0]))
    np.testing.assert_array_equal(r.merchant_weight, [8.0, 1.0, 0.0])
    res = r.topk(A, k=3)
    assert res.indices.tolist() == [[0, 1, -1]]  # boost 0 -> weight 0 -> not a candidate
    assert res.scores[0, :2].tolist() == [8.0, 2.0]


def test_banned_mask_and_id_array_are_equivalent():
    A, B = int_problem(5, n_users=20, n_tags=6, n_merchants=12, density=0.6)
    ids = np.array([0, 3, 7, 11])
    mask = np.zeros(12, dtype=bool)
    mask[ids] = True
    r_mask = ec.Ranker(B, banned=mask)
    r_ids = ec.Ranker(B, banned=ids)
    r_list = ec.Ranker(B, banned=[11, 0, 7, 3])
    for r in (r_mask, r_ids, r_list):
        np.testing.assert_array_equal(r.merchant_weight == 0, mask)
    res = r_ids.topk(A, k=12)
    assert not np.isin(res.indices, ids).any()
    assert_topk_equal(res, reference_topk(A, B, 12, w=(~mask).astype(float)))
    assert_topk_equal(r_mask.topk(A, k=12), res)
    assert_topk_equal(r_list.topk(A, k=12), res)


def test_all_banned_gives_empty_rows():
    A, B = int_problem(6)
    r = ec.Ranker(B, banned=np.ones(B.shape[1], dtype=bool))
    res = r.topk(A, k=4)
    assert_topk_wellformed(res, A.shape[0], B.shape[1], 4)
    assert np.all(res.counts == 0)
    one = r.topk_one(*_row(A, 1), k=4)
    assert one.counts.tolist() == [0]


def test_min_trust_drops_merchants():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[1.0, 1.0, 1.0]]))
    r = ec.Ranker(B, trust=np.array([0.2, 0.5, 0.8]), min_trust=0.5)
    np.testing.assert_allclose(r.merchant_weight, [0.0, 0.5, 0.8])
    assert r.topk(A, k=3).indices.tolist() == [[2, 1, -1]]


def test_trust_zero_drops_with_positive_beta():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[1.0, 1.0]]))
    r = ec.Ranker(B, trust=np.array([0.0, 1.0]), beta=2.0)
    assert r.merchant_weight.tolist() == [0.0, 1.0]
    assert r.topk(A, k=2).indices.tolist() == [[1, -1]]


def test_merchant_weight_is_read_only():
    _, B = random_problem(7, n_tags=4, n_merchants=6)
    trust = np.full(6, 0.5)
    r = ec.Ranker(B, trust=trust)
    w = r.merchant_weight
    assert not w.flags.writeable
    with pytest.raises(ValueError):
        w[0] = 5.0
    with pytest.raises(ValueError):
        r.merchant_weight[:] = 0.0
    # the caller's trust array is neither aliased nor modified
    trust[:] = 1.0
    np.testing.assert_allclose(r.merchant_weight, 0.5)


def test_ranker_does_not_modify_inputs():
    _, B = random_problem(8, n_tags=5, n_merchants=9)
    trust = np.linspace(0.0, 1.0, 9)
    boost = np.linspace(1.0, 2.0, 9)
    banned = np.array([2, 4])
    saved = [B.data.copy(), B.indices.copy(), B.indptr.copy(), trust.copy(), boost.copy(),
             banned.copy()]
    r = ec.Ranker(B, trust=trust, boost=boost, banned=banned, min_trust=0.1, beta=1.5)
    A, _ = random_problem(9, n_tags=5, n_merchants=9)
    r.topk(A, k=3)
    for x, y in zip(saved, [B.data, B.indices, B.indptr, trust, boost, banned]):
        np.testing.assert_array_equal(x, y)


def test_read_only_ranker_inputs():
    A, B = random_problem(10, n_tags=6, n_merchants=12)
    B = B.copy()
    for a in (B.data, B.indices, B.indptr):
        a.flags.writeable = False
    trust = np.linspace(0.1, 1.0, 12)
    banned = np.zeros(12, dtype=bool)
    banned[3] = True
    for a in (trust, banned):
        a.flags.writeable = False
    r = ec.Ranker(B, trust=trust, banned=banned)
    w = reference_weights(12, trust=trust, banned=banned)
    assert_topk_close(r.topk(A, k=4), A, B, 4, w=w)


# ---------------------------------------------------------------------------------------------
# topk
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranker_topk_matches_reference(dtype):
    A, B = random_problem(11, n_users=60, n_tags=12, n_merchants=50, dtype=dtype)
    rng = np.random.default_rng(11)
    trust = rng.uniform(0, 1, 50)
    boost = rng.uniform(1, 2, 50)
    banned = rng.choice(50, 5, replace=False)
    r = ec.Ranker(B, trust=trust, beta=1.5, boost=boost, banned=banned, min_trust=0.2)
    w = reference_weights(50, trust=trust, beta=1.5, boost=boost, banned=banned, min_trust=0.2)
    res = r.topk(A, k=6)
    assert res.scores.dtype == dtype
    assert_topk_close(res, A, B, 6, w=w, score_dtype=dtype)


@pytest.mark.parametrize("db, da, expected", [
    (np.float32, np.float32, np.float32),
    (np.float32, np.float64, np.float64),
    (np.float64, np.float32, np.float64),
    (np.float64, np.float64, np.float64),
])
def test_ranker_score_dtype_rule(db, da, expected):
    A, B = int_problem(27, n_users=8, n_tags=5, n_merchants=9)
    r = ec.Ranker(B.astype(db), boost=np.full(9, 0.5))
    res = r.topk(A.astype(da), k=3, follows=sp.csr_array(np.eye(8, 9)))
    assert res.scores.dtype == expected
    assert res.indices.dtype == np.int32
    assert_topk_equal(res, reference_topk(A, B, 3, w=np.full(9, 0.5), F=np.eye(8, 9)))
    ids, wts = _row(A.astype(da), 3)
    one = r.topk_one(ids, wts, k=3)
    assert one.scores.dtype == expected
    np.testing.assert_array_equal(one.indices[0], res.indices[3])


def test_ranker_topk_equals_sparse_topk_with_its_weight():
    A, B = random_problem(12, n_users=40, n_tags=10, n_merchants=30)
    rng = np.random.default_rng(12)
    F = random_sparse(13, (40, 30), 0.05)
    E = sp.csr_array(rng.random((40, 30)) < 0.1)
    r = ec.Ranker(B, trust=rng.uniform(0, 1, 30), beta=0.7, follow_weight=1.5)
    res = r.topk(A, k=5, follows=F, exclude=E, threshold=-0.2)
    direct = ec.sparse_topk(A, B, 5, merchant_weight=r.merchant_weight, follows=F,
                            follow_weight=1.5, exclude=E, threshold=-0.2)
    assert_topk_equal(res, direct)
    assert_topk_close(res, A, B, 5, w=r.merchant_weight, F=F, follow_weight=1.5, E=E,
                      threshold=-0.2)


def test_ranker_default_k_is_10():
    A, B = random_problem(14, n_users=5, n_tags=6, n_merchants=30, density_b=0.6)
    res = ec.Ranker(B).topk(A)
    assert res.width == 10
    assert_topk_close(res, A, B, 10)


def test_ranker_user_tags_formats():
    A, B = int_problem(15, n_users=10, n_tags=6, n_merchants=9)
    r = ec.Ranker(sp.csc_matrix(B))
    expected = reference_topk(A, B, 4)
    for X in (A, sp.csr_matrix(A), sp.coo_array(A), sp.csc_array(A), A.toarray()):
        assert_topk_equal(r.topk(X, k=4), expected)


def test_progress_callback():
    A, B = random_problem(16, n_users=300, n_tags=10, n_merchants=40)
    calls = []
    res = ec.Ranker(B).topk(A, k=3, progress=lambda done, total: calls.append((done, total)))
    assert calls, "progress was never called"
    done = [c[0] for c in calls]
    assert all(c[1] == 300 for c in calls)
    assert all(b > a for a, b in zip(done, done[1:])), done
    assert done[-1] == 300
    assert done[0] > 0
    assert_topk_close(res, A, B, 3)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_progress_exception_propagates(exc):
    # An exception between row blocks (e.g. Ctrl-C) stops the call; the Ranker stays usable.
    A, B = random_problem(17, n_users=50, n_tags=10, n_merchants=40)
    r = ec.Ranker(B)

    def boom(done, total):
        raise exc("stop here")

    with pytest.raises(exc, match="stop here"):
        r.topk(A, k=3, progress=boom)
    assert_topk_close(r.topk(A, k=3), A, B, 3)


# ---------------------------------------------------------------------------------------------
# iter_topk
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 65536])
def test_iter_topk_blocks_concatenate_to_topk(chunk_rows):
    A, B = random_problem(18, n_users=150, n_tags=10, n_merchants=40)
    F = random_sparse(19, (150, 40), 0.05)
    r = ec.Ranker(B, trust=np.linspace(0.05, 1, 40))
    whole = r.topk(A, k=5, follows=F, threshold=-0.5)
    blocks = list(r.iter_topk(A, k=5, chunk_rows=chunk_rows, follows=F, threshold=-0.5))
    starts = [s for s, _ in blocks]
    assert starts == list(range(0, 150, chunk_rows))
    for s, b in blocks:
        assert b.n_rows == min(chunk_rows, 150 - s)
        assert b.n_cols == 40
    assert_topk_equal(ec.concat_topk([b for _, b in blocks]), whole)


def test_iter_topk_is_lazy_generator():
    A, B = random_problem(20, n_users=30, n_tags=10, n_merchants=20)
    it = ec.Ranker(B).iter_topk(A, k=2, chunk_rows=10)
    first = next(iter(it))
    assert first[0] == 0 and first[1].n_rows == 10


# ---------------------------------------------------------------------------------------------
# topk_one and explain
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_one_equals_topk_rows(dtype):
    A, B = random_problem(21, n_users=30, n_tags=12, n_merchants=40, dtype=dtype)
    rng = np.random.default_rng(21)
    r = ec.Ranker(B, trust=rng.uniform(0, 1, 40), banned=[1, 2])
    full = r.topk(A, k=7)
    for u in range(30):
        ids, wts = _row(A, u)
        one = r.topk_one(ids, wts, k=7)
        assert one.n_rows == 1 and one.n_cols == 40
        assert one.scores.dtype == full.scores.dtype
        assert one.indices.dtype == np.int32
        assert one.counts[0] == full.counts[u]
        np.testing.assert_array_equal(one.indices[0], full.indices[u])
        assert _ulp_close(one.scores[0, : one.counts[0]], full.scores[u, : full.counts[u]],
                          full.scores.dtype)


def test_topk_one_exact_ints_with_follows_and_exclude():
    A, B = int_problem(22, n_users=15, n_tags=6, n_merchants=12, density=0.5)
    rng = np.random.default_rng(22)
    Fd = rng.choice([0.0, 0.0, 0.0, 1.0, -1.0], (15, 12))
    Ed = rng.random((15, 12)) < 0.2
    r = ec.Ranker(B, banned=[5], follow_weight=2.0)
    full = r.topk(A, k=6, follows=sp.csr_array(Fd), exclude=sp.csr_array(Ed))
    w = reference_weights(12, banned=[5])
    assert_topk_equal(full, reference_topk(A, B, 6, w=w, F=Fd, follow_weight=2.0, E=Ed))
    for u in range(15):
        ids, wts = _row(A, u)
        fids = np.flatnonzero(Fd[u])
        one = r.topk_one(ids, wts, k=6, follow_ids=fids, follow_weights=Fd[u, fids],
                         exclude_ids=np.flatnonzero(Ed[u]))
        np.testing.assert_array_equal(one.indices[0], full.indices[u])
        np.testing.assert_array_equal(one.scores[0], full.scores[u])
        assert one.counts[0] == full.counts[u]


def test_topk_one_lists_and_unsorted_ids():
    A, B = int_problem(23, n_users=5, n_tags=8, n_merchants=10, density=0.6)
    r = ec.Ranker(B)
    ids = [6, 1, 3]
    wts = [1.0, -2.0, 3.0]
    one = r.topk_one(ids, wts, k=10)
    a = np.zeros((1, 8))
    a[0, ids] = wts
    assert_topk_equal(one, reference_topk(a, B, 10))
    one_sorted = r.topk_one(np.array([1, 3, 6]), np.array([-2.0, 3.0, 1.0]), k=10)
    assert_topk_equal(one, one_sorted)


def test_topk_one_empty_profile():
    _, B = random_problem(24, n_tags=5, n_merchants=8)
    r = ec.Ranker(B)
    one = r.topk_one(np.array([], dtype=np.int64), np.array([]), k=3)
    assert_topk_wellformed(one, 1, 8, 3)
    assert one.counts.tolist() == [0]
    # follows alone still make candidates
    one = r.topk_one([], [], k=3, follow_ids=[4], follow_weights=[2.0])
    assert one.indices.tolist() == [[4, -1, -1]]
    assert one.scores[0, 0] == 2.0


def test_topk_one_cancellation_and_negative():
    B = sp.csr_array(np.array([[1.0, 1.0, 0.0], [-1.0, -2.0, 0.0]]))
    one = ec.Ranker(B).topk_one([0, 1], [1.0, 1.0], k=3)
    assert one.indices.tolist() == [[0, 1, -1]]
    assert one.scores[0, :2].tolist() == [0.0, -1.0]


def test_explain_parts():
    A, B = random_problem(25, n_users=10, n_tags=8, n_merchants=20, density_b=0.4)
    rng = np.random.default_rng(25)
    trust = rng.uniform(0, 1, 20)
    r = ec.Ranker(B, trust=trust, beta=1.3, banned=[0, 5], min_trust=0.1, follow_weight=0.5)
    ids, wts = _row(A, 2)
    fids = np.array([1, 5, 9])
    fw = np.array([1.0, 2.0, -0.5])
    merchants = np.arange(20)
    ex = r.explain(ids, wts, merchants, follow_ids=fids, follow_weights=fw)
    assert set(ex) >= {"merchant", "interest", "follow", "weight", "score", "candidate"}
    np.testing.assert_array_equal(ex["merchant"], merchants)
    a = np.zeros((1, 8))
    a[0, ids] = wts
    f = np.zeros((1, 20))
    f[0, fids] = fw
    Bd = dense(B)
    np.testing.assert_allclose(ex["interest"], (a @ Bd)[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ex["follow"], 0.5 * f[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(ex["weight"], r.merchant_weight, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ex["score"], (ex["interest"] + ex["follow"]) * ex["weight"],
                               rtol=1e-12, atol=1e-15)
    score, cand, _ = reference_scores(a, B, w=r.merchant_weight, F=f, follow_weight=0.5)
    np.testing.assert_array_equal(np.asarray(ex["candidate"], dtype=bool), cand[0])
    np.testing.assert_allclose(ex["score"], score[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_explain_score_equals_topk_score(dtype):
    A, B = random_problem(26, n_users=25, n_tags=10, n_merchants=30, dtype=dtype)
    rng = np.random.default_rng(26)
    F = random_sparse(27, (25, 30), 0.08, dtype=dtype)
    r = ec.Ranker(B, trust=rng.uniform(0, 1, 30), beta=2.0, follow_weight=0.75)
    full = r.topk(A, k=8, follows=F)
    for u in range(25):
        ids, wts = _row(A, u)
        fids, fwts = _row(F, u)
        c = full.counts[u]
        got = full.indices[u, :c]
        ex = r.explain(ids, wts, got, follow_ids=fids, follow_weights=fwts)
        np.testing.assert_array_equal(ex["merchant"], got)
        assert np.all(np.asarray(ex["candidate"], dtype=bool))
        assert _ulp_close(ex["score"], full.scores[u, :c], full.scores.dtype), (
            u, ex["score"], full.scores[u, :c])


def test_explain_non_candidates():
    B = sp.csr_array(np.array([[1.0, 0.0, 2.0, 1.0], [0.0, 0.0, -2.0, 0.0]]))
    r = ec.Ranker(B, banned=[3])
    ex = r.explain([0, 1], [1.0, 1.0], [0, 1, 2, 3])
    assert np.asarray(ex["candidate"], dtype=bool).tolist() == [True, False, True, False]
    np.testing.assert_array_equal(ex["interest"], [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ex["weight"], [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(ex["score"], [1.0, 0.0, 0.0, 0.0])
