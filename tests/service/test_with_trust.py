"""``Ranker.with_trust``: shares B, recomputes only the weight, equals a Ranker built from scratch.

Also: ``topk_one`` takes a user's profile vector directly (live profile updates).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp

import ecomcore as ec
from ecomcore.datasets import synthetic_market


@pytest.fixture(scope="module")
def market():
    return synthetic_market(300, 200, 1500, seed=11, shared_popularity=False)


def _same(x: ec.TopK, y: ec.TopK) -> None:
    np.testing.assert_array_equal(x.indices, y.indices)
    np.testing.assert_array_equal(x.scores, y.scores)
    np.testing.assert_array_equal(x.counts, y.counts)


def _dense_reference(a, b, w, k):
    """Plain NumPy: top-k of (A @ B) * w among reached merchants with w > 0 (ties by id)."""
    a = np.asarray(sp.csr_array(a, dtype=np.float64).todense())
    b = sp.csr_array(b, dtype=np.float64)
    reached = np.asarray((sp.csr_array(a != 0, dtype=np.float64) @ (b != 0).astype(np.float64)).todense()) > 0
    s = (a @ np.asarray(b.todense())) * w[None, :]
    out = []
    for u in range(a.shape[0]):
        cand = np.flatnonzero(reached[u] & (w > 0))
        order = sorted(cand.tolist(), key=lambda m: (-s[u, m], m))[:k]
        out.append(order)
    return out


def test_shares_merchant_matrix(market):
    r = ec.Ranker(market.merchant_tags, trust=market.trust, banned=market.banned, beta=1.0)
    t2 = np.clip(market.trust * 0.7 + 0.1, 0.05, 1.0)
    r2 = r.with_trust(t2)
    # the validated B is the same arrays, never copied
    assert r2._b.data is r._b.data and r2._b.indices is r._b.indices and r2._b.indptr is r._b.indptr
    # the kernel's compacted B too (the set of merchants with w > 0 did not change)
    ((key, s1),) = r._sides.items()
    s2 = r2._sides[key]
    for name in ("indptr", "indices", "data", "row_absmax"):
        assert getattr(s2, name) is getattr(s1, name)
        assert np.shares_memory(getattr(s2, name), getattr(s1, name))
    # only the weight is new
    assert not np.shares_memory(s2.weight, s1.weight)
    assert not np.shares_memory(r2.merchant_weight, r.merchant_weight)
    _same(
        r2.topk(market.user_tags, 10),
        ec.Ranker(market.merchant_tags, trust=t2, banned=market.banned).topk(market.user_tags, 10),
    )


def test_equals_fresh_ranker_and_reference(market):
    rng = np.random.default_rng(0)
    n_m = market.n_merchants
    r = ec.Ranker(market.merchant_tags, trust=market.trust, banned=market.banned)
    bans, boosts = market.banned, None  # what the chain of Rankers currently uses
    for trial in range(6):
        t = rng.uniform(0, 1, n_m)
        t[rng.integers(0, n_m, 20)] = 0.0  # some merchants drop out (compacted B rebuilt)
        beta = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        boost = 1 + rng.integers(0, 3, n_m) * 0.05 if trial % 2 else None
        banned = rng.choice(n_m, 30, replace=False) if trial % 3 == 0 else None
        r2 = r.with_trust(t, beta=beta, boost=boost, banned=banned)
        fresh = ec.Ranker(
            market.merchant_tags,
            trust=t,
            beta=beta,
            boost=boosts if boost is None else boost,
            banned=bans if banned is None else banned,
        )
        bans = bans if banned is None else banned
        boosts = boosts if boost is None else boost
        np.testing.assert_array_equal(r2.merchant_weight, fresh.merchant_weight)
        assert r2._b.data is r._b.data
        got = r2.topk(market.user_tags, 7)
        _same(got, fresh.topk(market.user_tags, 7))
        ref = _dense_reference(market.user_tags[:40], market.merchant_tags, fresh.merchant_weight, 7)
        for u in range(40):
            assert got.indices[u, : got.counts[u]].tolist() == ref[u]
        r = r2  # chain: each version derived from the previous one


def test_defaults_keep_parameters(market):
    n_m = market.n_merchants
    rng = np.random.default_rng(1)
    boost = 1 + 0.05 * rng.integers(0, 2, n_m)
    t1, t2 = rng.uniform(0, 1, n_m), rng.uniform(0, 1, n_m)
    kw = dict(beta=2.0, boost=boost, banned=market.banned, min_trust=0.3, follow_weight=0.5)
    r = ec.Ranker(market.merchant_tags, trust=t1, **kw)
    r2 = r.with_trust(t2)
    fresh = ec.Ranker(market.merchant_tags, trust=t2, **kw)
    np.testing.assert_array_equal(r2.merchant_weight, fresh.merchant_weight)
    assert r2.follow_weight == 0.5
    f = (
        market.follows
        if market.follows is not None
        else sp.random(market.n_users, n_m, density=0.002, format="csr", random_state=2, dtype=np.float32)
    )
    _same(r2.topk(market.user_tags, 5, follows=f), fresh.topk(market.user_tags, 5, follows=f))
    # explicit values replace the kept ones; the next call keeps the replacements
    r3 = r2.with_trust(t1, beta=0.5, banned=[]).with_trust(t2)
    fresh3 = ec.Ranker(market.merchant_tags, trust=t2, beta=0.5, boost=boost, min_trust=0.3, follow_weight=0.5)
    np.testing.assert_array_equal(r3.merchant_weight, fresh3.merchant_weight)
    # trust=None means 1 for every merchant, as in the constructor
    r4 = r.with_trust(None)
    np.testing.assert_array_equal(r4.merchant_weight, ec.Ranker(market.merchant_tags, trust=None, **kw).merchant_weight)


def test_callers_arrays_are_copied(market):
    n_m = market.n_merchants
    boost = np.ones(n_m)
    banned = np.zeros(n_m, dtype=bool)
    r = ec.Ranker(market.merchant_tags, trust=market.trust).with_trust(market.trust, boost=boost, banned=banned)
    w = r.merchant_weight.copy()
    boost[:] = 0.0
    banned[:] = True
    np.testing.assert_array_equal(r.with_trust(market.trust).merchant_weight, w)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"trust": np.full(1500, 1.5)}, ValueError, "trust"),
        ({"trust": np.full(1499, 0.5)}, ValueError, "trust"),
        ({"trust": np.full(1500, np.nan)}, ValueError, "trust"),
        ({"trust": "high"}, TypeError, "trust"),
        ({"beta": -1.0}, ValueError, "beta"),
        ({"beta": "1"}, TypeError, "beta"),
        ({"boost": -np.ones(1500)}, ValueError, "boost"),
        ({"boost": np.full(1500, 1e308)}, ValueError, "overflow"),
        ({"banned": [1500]}, ValueError, "banned"),
        ({"banned": np.zeros(3, dtype=bool)}, ValueError, "banned"),
    ],
)
def test_validation_like_constructor(market, kwargs, exc, match):
    r = ec.Ranker(market.merchant_tags, trust=market.trust, beta=2.0)
    before = r.merchant_weight.copy()
    args = {"trust": market.trust, **kwargs}
    trust = args.pop("trust")
    with pytest.raises(exc, match=match):
        r.with_trust(trust, **args)
    with pytest.raises(exc, match=match):  # the constructor says the same
        ec.Ranker(market.merchant_tags, trust=trust, **{"beta": 2.0, **args})
    np.testing.assert_array_equal(r.merchant_weight, before)
    _same(
        r.topk(market.user_tags[:20], 5),
        ec.Ranker(market.merchant_tags, trust=market.trust, beta=2.0).topk(market.user_tags[:20], 5),
    )


def test_float64_ranker_and_float32_overflow():
    m = synthetic_market(50, 40, 300, seed=5, dtype=np.float64)
    r = ec.Ranker(m.merchant_tags, trust=m.trust)
    t2 = np.linspace(0, 1, 300)
    _same(r.with_trust(t2).topk(m.user_tags, 4), ec.Ranker(m.merchant_tags, trust=t2).topk(m.user_tags, 4))
    m32 = synthetic_market(50, 40, 300, seed=5)
    r32 = ec.Ranker(m32.merchant_tags, trust=m32.trust)
    with pytest.raises(ValueError, match="overflow"):
        r32.with_trust(m32.trust, boost=np.full(300, 1e39))  # finite in float64, inf in float32


def test_topk_one_takes_the_profile_vector(market):
    """A live profile update: rank the new vector directly, equal to topk on that row."""
    r = ec.Ranker(market.merchant_tags, trust=market.trust, banned=market.banned).with_trust(market.trust * 0.9)
    rng = np.random.default_rng(4)
    for _ in range(20):
        ids = np.sort(rng.choice(market.n_tags, int(rng.integers(1, 25)), replace=False))
        wts = rng.uniform(0.1, 1, ids.size).astype(np.float32)
        row = sp.csr_array((wts, ids, np.array([0, ids.size])), shape=(1, market.n_tags))
        _same(r.topk_one(ids, wts, 8), r.topk(row, 8))


def test_old_and_new_rankers_concurrently(market):
    r1 = ec.Ranker(market.merchant_tags, trust=market.trust, banned=market.banned)
    r2 = r1.with_trust(market.trust[::-1].copy())
    a = market.user_tags
    want = {id(r1): r1.topk(a, 6, n_threads=1), id(r2): r2.topk(a, 6, n_threads=1)}
    errors: list = []

    def work(r):
        try:
            for u in range(0, a.shape[0], 3):
                lo, hi = a.indptr[u], a.indptr[u + 1]
                got = r.topk_one(a.indices[lo:hi], a.data[lo:hi], 6)
                exp = want[id(r)]
                c = int(exp.counts[u])
                if got.indices[0, :c].tolist() != exp.indices[u, :c].tolist():
                    errors.append(u)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in (r1, r2, r1, r2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
