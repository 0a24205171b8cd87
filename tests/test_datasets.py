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
    assert a.user_tags.nnz != b.user_tags.nnz or not np.array_equal(a.user_tags.indices, b.user_tags.indices)


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


# ---------------------------------------------------------------------------------------------
# synthetic_behaviour: raw catalogue, events and follows
# ---------------------------------------------------------------------------------------------


def _behaviour_arrays(b):
    from ecomcore.datasets import Behaviour

    assert isinstance(b, Behaviour)
    out = [b.events[k] for k in ("user", "item", "kind", "time")]
    out += [b.follows[k] for k in ("user", "merchant", "time")]
    out += [b.item_tags.data, b.item_tags.indices, b.item_tags.indptr, b.item_merchant]
    out += [b.interests.data, b.interests.indices, b.interests.indptr, b.quality, b.banned]
    return out


def test_behaviour_deterministic_and_seeded():
    from ecomcore.datasets import synthetic_behaviour

    a = synthetic_behaviour(300, 80, 150, seed=7)
    b = synthetic_behaviour(300, 80, 150, seed=7)
    for x, y in zip(_behaviour_arrays(a), _behaviour_arrays(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    c = synthetic_behaviour(300, 80, 150, seed=8)
    assert c.n_events != a.n_events or not np.array_equal(c.events["item"], a.events["item"])
    # the catalogue and the merchants do not depend on the number of users
    d = synthetic_behaviour(40, 80, 150, seed=7)
    for x, y in zip(_behaviour_arrays(a)[7:11], _behaviour_arrays(d)[7:11]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.quality, d.quality)
    np.testing.assert_array_equal(a.banned, d.banned)


def test_behaviour_invariants():
    from ecomcore.datasets import synthetic_behaviour

    n_u, n_t, n_m = 500, 60, 200
    b = synthetic_behaviour(n_u, n_t, n_m, seed=3, merchant_tags=(1, 3), banned_fraction=0.05)
    assert (b.n_users, b.n_tags, b.n_merchants) == (n_u, n_t, n_m)
    ev = b.events
    assert ev["user"].dtype == np.int64 and ev["item"].dtype == np.int64 and ev["time"].dtype == np.float64
    assert set(np.unique(ev["kind"]).tolist()) == {"view", "fav", "cart", "buy"}
    assert np.all(np.diff(ev["time"]) >= 0)
    assert ev["time"].min() >= b.start and ev["time"].max() < b.end
    assert b.end - b.start == pytest.approx(8 * 7 * 86400.0)
    assert ev["user"].min() >= 0 and ev["user"].max() < n_u
    assert ev["item"].min() >= 0 and ev["item"].max() < b.n_items
    # catalogue: a merchant's items are consecutive; an item has 1 or 2 tags, weight 1 then 0.5,
    # all among its merchant's 1..3 specialities
    _assert_canonical(b.item_tags)
    assert np.all(np.diff(b.item_merchant) >= 0) and set(b.item_merchant.tolist()) == set(range(n_m))
    per_item = np.diff(b.item_tags.indptr)
    assert per_item.min() == 1 and per_item.max() == 2
    assert sorted(np.unique(b.item_tags.data).tolist()) == [0.5, 1.0]
    assert np.all(b.item_tags.sum(axis=1) >= 1.0)
    merchant_tags = sp.csr_array(
        (np.ones(b.item_tags.nnz), b.item_tags.indices, b.item_tags.indptr), shape=(b.n_items, n_t)
    )
    owner = sp.csr_array((np.ones(b.n_items), (b.item_merchant, np.arange(b.n_items))), shape=(n_m, b.n_items))
    per_merchant = np.diff(sp.csr_array(owner @ merchant_tags).indptr)
    assert per_merchant.min() >= 1 and per_merchant.max() <= 3
    # latent interests: rows sum to 1
    np.testing.assert_allclose(b.interests.sum(axis=1), 1.0)
    assert b.banned.sum() == 10 and b.quality.min() >= 0 and b.quality.max() <= 1
    # banned merchants are drawn towards low quality
    assert b.quality[b.banned].mean() < b.quality[~b.banned].mean()


def test_behaviour_events_follow_interests_without_exploration():
    from ecomcore.datasets import synthetic_behaviour

    b = synthetic_behaviour(400, 100, 300, seed=5, explore=0.0)
    interests = b.interests.toarray() > 0
    carried = b.item_tags.toarray() > 0
    ev = b.events
    original = ev["kind"] != "buy"  # repeat purchases pick any item of the merchant
    u, i = ev["user"][original], ev["item"][original]
    assert np.all((interests[u] & carried[i]).any(axis=1))
    # with exploration, most events still hit an interest
    c = synthetic_behaviour(400, 100, 300, seed=5, explore=0.3)
    hit = (c.interests.toarray()[c.events["user"]] > 0) & (c.item_tags.toarray()[c.events["item"]] > 0)
    assert 0.6 < hit.any(axis=1).mean() < 0.95


def test_behaviour_follows_and_repeat_purchases():
    from ecomcore.datasets import synthetic_behaviour

    b = synthetic_behaviour(600, 50, 100, seed=1, repeat_rate=1.0, follow_rate=1.0)
    ev = b.events
    buy = ev["kind"] == "buy"
    bu, bm, bt = ev["user"][buy], b.item_merchant[ev["item"][buy]], ev["time"][buy]
    first_buy = {}
    for u, m, t in zip(bu.tolist(), bm.tolist(), bt.tolist()):
        first_buy[(u, m)] = min(first_buy.get((u, m), np.inf), t)
    f = b.follows
    assert f["user"].size > 0 and np.all(np.diff(f["time"]) >= 0)
    for u, m, t in zip(f["user"].tolist(), f["merchant"].tolist(), f["time"].tolist()):
        assert first_buy[(u, m)] < t < b.end  # a user follows a merchant after buying from it
    # repeat purchases exist: some (user, merchant) pairs were bought more than once
    keys, counts = np.unique(np.stack([bu, bm]), axis=1, return_counts=True)
    assert (counts > 1).sum() > 0.2 * keys.shape[1]
    # more purchases from better merchants
    q = b.quality[b.item_merchant[ev["item"]]]
    hi, lo = q > np.quantile(q, 0.75), q < np.quantile(q, 0.25)
    assert buy[hi].mean() > 1.5 * buy[lo].mean()
    # follow_events(): follows + purchases, time-sorted, and accepted by follow_matrix
    fe = b.follow_events()
    assert fe["user"].size == f["user"].size + int(buy.sum())
    assert np.all(np.diff(fe["time"]) >= 0)
    assert (fe["kind"] == "follow").sum() == f["user"].size
    import ecomcore as ec

    fm = ec.InterestModel().follow_matrix(**fe, now=b.end, n_users=b.n_users, n_merchants=b.n_merchants)
    assert fm.shape == (600, 100) and fm.nnz > 0


def test_behaviour_pipeline_recovers_interests():
    import ecomcore as ec
    from ecomcore.datasets import synthetic_behaviour

    b = synthetic_behaviour(300, 150, 400, seed=2)
    model = ec.InterestModel(n_users=b.n_users)
    a = model.profiles(model.fold(b.events, b.item_tags), b.end)
    assert a.shape == (300, 150)
    dense = a.toarray()
    top = dense.argmax(axis=1)
    latent = b.interests.toarray()
    # a user's strongest profile tag is one of the tags the events were drawn from (most users)
    assert (latent[np.arange(300), top] > 0).mean() > 0.9
    bm = model.merchant_profiles(b.item_tags, b.item_merchant, n_merchants=b.n_merchants)
    assert bm.shape == (150, 400) and np.all(np.diff(sp.csc_array(bm).indptr) >= 1)


def test_behaviour_zero_users_and_sparse_regime():
    from ecomcore.datasets import synthetic_behaviour

    b = synthetic_behaviour(0, 10, 5)
    assert b.n_events == 0 and b.follows["user"].size == 0 and b.interests.shape == (0, 10)
    assert b.follow_events()["user"].size == 0
    s = synthetic_behaviour(100, 40, 60, seed=1, shared_popularity=False, weeks=1, end=1e9)
    assert s.start == 1e9 - 7 * 86400.0 and s.events["time"].max() < 1e9


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(n_users=-1), ValueError, "n_users"),
        (dict(n_tags=0), ValueError, "n_tags"),
        (dict(n_merchants=0), ValueError, "n_merchants"),
        (dict(n_users=1.5), TypeError, "n_users"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(shared_popularity=1), TypeError, "shared_popularity"),
        (dict(zipf_a=-1.0), ValueError, "zipf_a"),
        (dict(events_per_user=0), ValueError, "events_per_user"),
        (dict(interests_per_user=0.5), ValueError, "interests_per_user"),
        (dict(items_per_merchant=0.5), ValueError, "items_per_merchant"),
        (dict(explore=1.5), ValueError, "explore"),
        (dict(weeks=0), ValueError, "weeks"),
        (dict(end=float("nan")), ValueError, "end"),
        (dict(repeat_rate=-0.1), ValueError, "repeat_rate"),
        (dict(follow_rate=2), ValueError, "follow_rate"),
        (dict(banned_fraction=1.1), ValueError, "banned_fraction"),
        (dict(merchant_tags=(3, 1)), ValueError, "merchant_tags"),
        (dict(merchant_tags=5), TypeError, "merchant_tags"),
        (dict(explore="0.1"), TypeError, "explore"),
    ],
)
def test_behaviour_bad_arguments(kwargs, exc, name):
    from ecomcore.datasets import synthetic_behaviour

    args = dict(n_users=10, n_tags=10, n_merchants=10)
    args.update(kwargs)
    n_u, n_t, n_m = args.pop("n_users"), args.pop("n_tags"), args.pop("n_merchants")
    with pytest.raises(exc, match=name):
        synthetic_behaviour(n_u, n_t, n_m, **args)
