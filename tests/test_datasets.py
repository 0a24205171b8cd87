"""Tests for ecomcore.datasets.synthetic_market."""

import numpy as np
import pytest
import scipy.sparse as sp

from ecomcore.datasets import Market, synthetic_market

SMALL = (400, 300, 1500)


def _arrays(m: Market):
    out = [
        m.user_tags.data,
        m.user_tags.indices,
        m.user_tags.indptr,
        m.merchant_tags.data,
        m.merchant_tags.indices,
        m.merchant_tags.indptr,
        m.trust,
        m.banned,
    ]
    if m.follows is not None:
        out += [m.follows.data, m.follows.indices, m.follows.indptr]
    return out


def _assert_canonical(a: sp.csr_array) -> None:
    assert isinstance(a, sp.csr_array)
    indptr, indices = a.indptr, a.indices
    assert indptr[0] == 0 and indptr[-1] == indices.size == a.data.size
    assert np.all(np.diff(indptr) >= 0)
    assert indices.size == 0 or (indices.min() >= 0 and indices.max() < a.shape[1])
    # strictly increasing within each row: sorted, no duplicates
    rows = np.repeat(np.arange(a.shape[0]), np.diff(indptr))
    same_row = rows[1:] == rows[:-1]
    assert np.all(np.diff(indices.astype(np.int64))[same_row] > 0)
    assert a.has_canonical_format
    assert np.all(np.isfinite(a.data))


@pytest.mark.parametrize("shared", [True, False])
def test_deterministic(shared):
    a = synthetic_market(*SMALL, seed=3, shared_popularity=shared, follows_mean=2.0)
    b = synthetic_market(*SMALL, seed=3, shared_popularity=shared, follows_mean=2.0)
    for x, y in zip(_arrays(a), _arrays(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_seed_changes_output():
    a = synthetic_market(*SMALL, seed=1)
    b = synthetic_market(*SMALL, seed=2)
    assert not np.array_equal(a.trust, b.trust)
    assert a.user_tags.nnz != b.user_tags.nnz or not np.array_equal(
        a.user_tags.indices, b.user_tags.indices
    )


def test_merchant_side_independent_of_n_users():
    a = synthetic_market(50, 300, 1500, seed=5)
    b = synthetic_market(500, 300, 1500, seed=5)
    for x, y in zip(_arrays(a)[3:], _arrays(b)[3:]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shared", [True, False])
def test_shapes_dtypes_canonical(dtype, shared):
    n_users, n_tags, n_merchants = SMALL
    m = synthetic_market(
        n_users,
        n_tags,
        n_merchants,
        seed=0,
        shared_popularity=shared,
        dtype=dtype,
        follows_mean=3.0,
    )
    assert (m.n_users, m.n_tags, m.n_merchants) == SMALL
    assert m.user_tags.shape == (n_users, n_tags)
    assert m.merchant_tags.shape == (n_tags, n_merchants)
    assert m.follows is not None and m.follows.shape == (n_users, n_merchants)
    for a in (m.user_tags, m.merchant_tags, m.follows):
        assert a.dtype == dtype
        _assert_canonical(a)
    assert m.trust.shape == (n_merchants,) and m.trust.dtype == dtype
    assert m.banned.shape == (n_merchants,) and m.banned.dtype == np.bool_
    assert m.trust.min() >= 0.05 and m.trust.max() <= 1.0
    for a in (m.user_tags, m.merchant_tags):
        assert a.data.min() >= 0.1 and a.data.max() <= 1.0
    np.testing.assert_array_equal(m.follows.data, 1)


def test_row_sizes_and_bans():
    m = synthetic_market(3000, 2000, 4000, seed=11, banned_fraction=0.05)
    per_user = np.diff(m.user_tags.indptr)
    assert per_user.min() >= 5 and per_user.max() <= 100
    assert 25 <= np.median(per_user) <= 35
    per_merchant = np.diff(m.merchant_tags.tocsc().indptr)
    assert per_merchant.min() >= 3 and per_merchant.max() <= 12
    assert 6.5 <= per_merchant.mean() <= 8.5
    assert m.banned.sum() == 200
    assert m.follows is None


def test_tags_capped_by_n_tags():
    m = synthetic_market(200, 8, 50, seed=0, merchant_tags=(3, 20))
    assert np.diff(m.user_tags.indptr).max() <= 8
    assert np.diff(m.merchant_tags.tocsc().indptr).max() <= 8
    _assert_canonical(m.user_tags)
    _assert_canonical(m.merchant_tags)


def test_zipf_popularity():
    m = synthetic_market(5000, 1000, 100, seed=4)
    freq = np.bincount(m.user_tags.indices, minlength=1000)
    top = np.sort(freq)[::-1]
    # a heavy head (the top tag is held by most users) and a long thin tail
    assert top[0] > 0.8 * m.n_users
    assert top[0] > 20 * np.median(top)


def _reach(m: Market) -> float:
    """Mean fraction of merchants reached per user (structural product)."""
    a = m.user_tags.copy()
    b = m.merchant_tags.copy()
    a.data[:] = 1
    b.data[:] = 1
    prod = sp.csr_array(a @ b)
    return float(np.mean(np.diff(prod.indptr)) / m.n_merchants)


def test_regimes():
    shared = synthetic_market(300, 1000, 3000, seed=2, shared_popularity=True)
    indep = synthetic_market(300, 1000, 3000, seed=2, shared_popularity=False)
    r_shared, r_indep = _reach(shared), _reach(indep)
    assert r_shared > 0.5
    assert r_indep < 0.3
    assert r_shared > 3 * r_indep


def test_folded_and_multiply_adds():
    m = synthetic_market(60, 40, 80, seed=9, banned_fraction=0.1)
    bd = m.merchant_tags.toarray().astype(np.float64)
    w = m.trust.astype(np.float64)
    w[m.banned] = 0
    folded = m.folded_merchant_tags()
    _assert_canonical(folded)
    assert folded.dtype == m.merchant_tags.dtype
    np.testing.assert_allclose(folded.toarray(), bd * w, rtol=1e-6)
    assert not np.any(folded.data == 0)
    np.testing.assert_array_equal(m.merchant_weight(), np.where(m.banned, 0, m.trust))
    ad = m.user_tags.toarray() != 0
    expected = int(((ad.astype(np.int64)) @ (bd != 0).astype(np.int64)).sum())
    assert m.multiply_adds() == expected


def test_zero_users_and_no_bans():
    m = synthetic_market(0, 10, 5, banned_fraction=0.0, follows_mean=1.0)
    assert m.user_tags.shape == (0, 10) and m.user_tags.nnz == 0
    assert not m.banned.any()
    assert m.follows is None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_users=-1), "n_users"),
        (dict(n_tags=0), "n_tags"),
        (dict(n_merchants=0), "n_merchants"),
        (dict(seed=-1), "seed"),
        (dict(zipf_a=-0.5), "zipf_a"),
        (dict(zipf_a=float("nan")), "zipf_a"),
        (dict(user_tags_mean=0), "user_tags_mean"),
        (dict(merchant_tags=(5, 3)), "merchant_tags"),
        (dict(merchant_tags=(0, 3)), "merchant_tags"),
        (dict(banned_fraction=1.5), "banned_fraction"),
        (dict(follows_mean=-1.0), "follows_mean"),
        (dict(dtype=np.int32), "dtype"),
    ],
)
def test_value_errors(kwargs, name):
    args = dict(n_users=10, n_tags=10, n_merchants=10)
    args.update(kwargs)
    n_users, n_tags, n_merchants = args.pop("n_users"), args.pop("n_tags"), args.pop("n_merchants")
    with pytest.raises(ValueError, match=name):
        synthetic_market(n_users, n_tags, n_merchants, **args)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_users=2.5), "n_users"),
        (dict(n_users=True), "n_users"),
        (dict(seed="x"), "seed"),
        (dict(shared_popularity=1), "shared_popularity"),
        (dict(merchant_tags=3), "merchant_tags"),
        (dict(zipf_a="1.1"), "zipf_a"),
    ],
)
def test_type_errors(kwargs, name):
    args = dict(n_users=10, n_tags=10, n_merchants=10)
    args.update(kwargs)
    n_users, n_tags, n_merchants = args.pop("n_users"), args.pop("n_tags"), args.pop("n_merchants")
    with pytest.raises((TypeError, ValueError), match=name):
        synthetic_market(n_users, n_tags, n_merchants, **args)


def test_scipy_topk_matches_dense_reference():
    from ecomcore.datasets import scipy_topk

    m = synthetic_market(50, 30, 40, seed=6, shared_popularity=False)
    b = m.folded_merchant_tags()
    s = m.user_tags.toarray().astype(np.float64) @ b.toarray().astype(np.float64)
    reached = (m.user_tags.toarray() != 0).astype(float) @ (b.toarray() != 0).astype(float) > 0
    for k in (1, 5, 40, 100):
        idx, sc = scipy_topk(m.user_tags, b, k, chunk_rows=7)
        width = min(k, 40)
        assert idx.shape == sc.shape == (50, width)
        for u in range(50):
            cand = np.flatnonzero(reached[u])
            order = cand[np.lexsort((cand, -s[u, cand]))][:width]
            n = order.size
            np.testing.assert_array_equal(idx[u, :n], order)
            np.testing.assert_allclose(sc[u, :n], s[u, order], rtol=1e-5)
            assert np.all(idx[u, n:] == -1) and np.all(np.isneginf(sc[u, n:]))


def test_compare_topk():
    from ecomcore.datasets import compare_topk

    idx = np.array([[3, 1, 2], [0, -1, -1]])
    sc = np.array([[3.0, 2.0, 1.0], [5.0, -np.inf, -np.inf]])
    assert compare_topk(idx, sc, idx.copy(), sc.copy()) == 0
    # a tie at the k-th score may be broken differently
    sc_tie = np.array([[3.0, 2.0, 2.0], [5.0, -np.inf, -np.inf]])
    other = np.array([[3, 1, 7], [0, -1, -1]])
    assert compare_topk(idx, sc_tie, other, sc_tie) == 0
    # a different entry above the k-th score is a mismatch
    assert compare_topk(idx, sc, np.array([[4, 1, 2], [0, -1, -1]]), sc) == 1
    # different scores or counts are mismatches
    assert compare_topk(idx, sc, idx, sc + np.array([[0, 0, 0.5], [0, 0, 0]])) == 1
    assert compare_topk(idx, sc, np.array([[3, 1, 2], [0, 4, -1]]), sc) == 1
