"""InterestModel / InterestState against plain dense NumPy references (issue 5, item 1).

The references below are deliberately naive: a Python loop over events adding
``event_weight * weight * item_tags[item] * 2 ** (-(now - t) / h)`` into a dense users x tags
array, then IDF, top-k by ``np.lexsort`` and row norms in dense NumPy.
"""

from __future__ import annotations

import math
import os
import threading
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import ecomcore as ec
from ecomcore import interest as interest_mod
from ecomcore._persist import save_npz
from ecomcore.interest import DEFAULT_EVENT_WEIGHTS, InterestModel, InterestState

DAY = 86400.0
T0 = 1.7e9
KINDS = list(DEFAULT_EVENT_WEIGHTS)
KW = np.array(list(DEFAULT_EVENT_WEIGHTS.values()))


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def ref_sums(ev, X, n_users, now, *, half_life_days=14.0, kw=KW):
    """Dense decayed sums: a loop over events."""
    Xd = np.asarray(sp.csr_array(X).toarray(), dtype=np.float64)
    S = np.zeros((n_users, Xd.shape[1]))
    kinds = np.asarray(ev["kind"])
    for i in range(len(ev["user"])):
        k = kinds[i]
        code = KINDS.index(k) if isinstance(k, str) else int(k)
        w = kw[code] * (1.0 if "weight" not in ev else float(ev["weight"][i]))
        d = 1.0 if half_life_days is None else 2.0 ** (-(now - float(ev["time"][i])) / (half_life_days * DAY))
        S[int(ev["user"][i])] += w * d * Xd[int(ev["item"][i])]
    return S


def ref_profiles(S, *, idf=True, k=None, normalize="l2"):
    """IDF (smooth, over users with a non-empty row), top-k (ties: lower tag), row norm."""
    A = S.copy()
    if idf:
        active = (A > 0).any(axis=1)
        n = int(active.sum())
        df = (A > 0).sum(axis=0)
        A = A * (np.log((1.0 + n) / (1.0 + df)) + 1.0)
    if k is not None:
        for r in range(A.shape[0]):
            order = np.lexsort((np.arange(A.shape[1]), -A[r]))
            A[r, order[k:]] = 0.0
    if normalize is not None:
        for r in range(A.shape[0]):
            row = A[r]
            if not row.any():
                continue
            norm = {"l2": np.sqrt((row**2).sum()), "l1": row.sum(), "max": row.max()}[normalize]
            A[r] = row / norm
    return A


def ref_follow(user, merchant, time, kind, now, half_life_days, rpw, n_users, n_merchants):
    """Per (u, m): most recent follow's decay + rpw * sum of decays of purchases but the earliest."""
    F = np.zeros((n_users, n_merchants))
    groups: dict = {}
    for i in range(len(user)):
        k = "follow" if kind is None else kind[i]
        groups.setdefault((int(user[i]), int(merchant[i])), []).append((k, float(time[i])))
    for (u, m), evs in groups.items():

        def d(t):
            return 1.0 if half_life_days is None else 2.0 ** (-(now - t) / (half_life_days * DAY))

        follows = [d(t) for k, t in evs if k == "follow"]
        buys = sorted(t for k, t in evs if k == "buy")
        F[u, m] = (max(follows) if follows else 0.0) + rpw * sum(d(t) for t in buys[1:])
    return F


def assert_canonical(M, shape, dtype=np.float32):
    assert isinstance(M, sp.csr_array)
    assert M.shape == shape
    assert M.dtype == dtype
    assert M.indices.dtype == M.indptr.dtype
    for r in range(shape[0]):
        idx = M.indices[M.indptr[r] : M.indptr[r + 1]]
        assert np.all(np.diff(idx) > 0), "indices sorted, no duplicates"
    assert np.all(M.data != 0), "no explicit zeros"
    assert np.isfinite(M.data).all()


def make_catalogue(rng, n_items, n_tags, density=0.4):
    Xd = rng.uniform(0.2, 2.0, (n_items, n_tags)) * (rng.random((n_items, n_tags)) < density)
    Xd[np.arange(n_items), rng.integers(0, n_tags, n_items)] = 1.0  # every item has a tag
    return sp.csr_array(Xd)


def make_events(rng, n, n_users, n_items, *, span_days=60.0, weight=False, names=False):
    ev = {
        "user": rng.integers(0, n_users, n),
        "item": rng.integers(0, n_items, n),
        "kind": rng.integers(0, len(KINDS), n),
        "time": T0 + rng.uniform(0, span_days * DAY, n),
    }
    if names:
        ev["kind"] = np.array(KINDS)[ev["kind"]]
    if weight:
        ev["weight"] = rng.uniform(0, 30, n)
    return ev


def take(ev, idx):
    return {k: np.asarray(v)[idx] for k, v in ev.items()}


def snapshot(state):
    S = state.decayed_sums()  # at state.last_time
    meta = (state.n_events, state.n_entries, state.n_users, state.n_tags, state.reference_time, state.last_time)
    return meta + (S.toarray().copy(),)


def same_snapshot(a, b):
    return a[:-1] == b[:-1] and np.array_equal(a[-1], b[-1])


@pytest.fixture
def small():
    rng = np.random.default_rng(7)
    X = make_catalogue(rng, 12, 6)
    ev = make_events(rng, 200, 9, 12, weight=True)
    return X, ev


# ---------------------------------------------------------------------------------------------
# Folding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [False, True])
@pytest.mark.parametrize("weight", [False, True])
@pytest.mark.parametrize("half_life", [14.0, 0.5, None])
def test_fold_matches_reference(names, weight, half_life):
    rng = np.random.default_rng(1)
    X = make_catalogue(rng, 15, 7)
    ev = make_events(rng, 300, 11, 15, weight=weight, names=names)
    m = InterestModel(half_life_days=half_life, n_users=11)
    s = m.fold(ev, X)
    now = float(np.max(ev["time"])) + 3 * DAY
    S = s.decayed_sums(now)
    assert_canonical(S, (11, 7), np.float64)
    np.testing.assert_allclose(S.toarray(), ref_sums(ev, X, 11, now, half_life_days=half_life), rtol=1e-12, atol=0)
    assert s.n_events == 300
    assert s.last_time == float(np.max(ev["time"]))


def test_default_now_is_last_event(small):
    X, ev = small
    s = InterestModel(n_users=9).fold(ev, X)
    now = float(ev["time"].max())
    np.testing.assert_allclose(s.decayed_sums().toarray(), ref_sums(ev, X, 9, now), rtol=1e-12)


def test_zero_weights_create_no_entries():
    X = sp.csr_array(np.eye(3))
    m = InterestModel({"view": 0.0, "buy": 1.0}, n_users=3)
    ev = {"user": [0, 1, 2], "item": [0, 1, 2], "kind": ["view", "buy", "buy"], "time": [T0] * 3, "weight": [1, 1, 0]}
    s = m.fold(ev, X)
    assert s.n_entries == 1
    assert s.decayed_sums().toarray()[1, 1] == 1.0


def test_growth_many_keys_matches_reference():
    """Enough distinct (user, tag) pairs to grow the table many times, in one fold and in many."""
    rng = np.random.default_rng(3)
    n_users, n_items, n_tags = 3000, 400, 60
    X = make_catalogue(rng, n_items, n_tags, density=0.05)
    ev = make_events(rng, 30000, n_users, n_items)
    m = InterestModel(n_users=n_users)
    now = T0 + 61 * DAY
    ref = ref_sums(ev, X, n_users, now)
    one = m.fold(ev, X)
    np.testing.assert_allclose(one.decayed_sums(now).toarray(), ref, rtol=1e-9)
    assert one.n_entries == np.count_nonzero(ref)
    many = m.new_state(n_users, n_tags)
    for idx in np.array_split(np.arange(30000), 37):
        m.fold(take(ev, idx), X, into=many)
    np.testing.assert_allclose(many.decayed_sums(now).toarray(), ref, rtol=1e-9)


def test_rebase_over_long_spans():
    """A one-day half-life over two years forces several rebases; split and one fold agree."""
    rng = np.random.default_rng(4)
    X = make_catalogue(rng, 10, 5)
    ev = make_events(rng, 400, 6, 10, span_days=730.0)
    order = np.argsort(ev["time"])
    m = InterestModel(half_life_days=1.0, n_users=6)
    one = m.fold(ev, X)
    split = m.new_state(6, 5)
    refs = []
    for idx in np.array_split(order, 20):  # chronological: each chunk moves t_ref forward
        m.fold(take(ev, idx), X, into=split)
        refs.append(split.reference_time)
    assert len(set(refs)) > 3
    now = float(ev["time"].max())
    ref = ref_sums(ev, X, 6, now, half_life_days=1.0)
    for s in (one, split):
        np.testing.assert_allclose(s.decayed_sums(now).toarray(), ref, rtol=1e-9, atol=0)


@settings(max_examples=60)
@given(data=st.data())
def test_split_folds_equal_one_fold(data):
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_users = data.draw(st.integers(1, 7))
    n_items = data.draw(st.integers(1, 6))
    n_tags = data.draw(st.integers(1, 5))
    n = data.draw(st.integers(0, 60))
    half_life = data.draw(st.sampled_from([14.0, 0.25, None]))
    span = data.draw(st.sampled_from([1.0, 90.0, 400.0]))
    X = make_catalogue(rng, n_items, n_tags)
    ev = make_events(rng, n, n_users, n_items, span_days=span, weight=data.draw(st.booleans()))
    m = InterestModel(half_life_days=half_life, n_users=n_users)
    now = T0 + span * DAY
    one = m.fold(ev, X)
    ref = ref_sums(ev, X, n_users, now, half_life_days=half_life)
    # atol: sums below float64's normal range (events > 1000 half-lives old) carry no relative precision
    np.testing.assert_allclose(one.decayed_sums(now).toarray(), ref, rtol=1e-9, atol=1e-300)

    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5)))
    perm = rng.permutation(n) if data.draw(st.booleans()) else np.arange(n)
    chunks = np.split(perm, cuts)
    chunk_order = data.draw(st.permutations(range(len(chunks))))
    mode = data.draw(st.sampled_from(["into", "functional", "merge"]))
    if mode == "into":
        s = m.new_state(n_users, n_tags)
        for c in chunk_order:
            assert m.fold(take(ev, chunks[c]), X, into=s) is s
    elif mode == "functional":
        s = m.new_state(n_users, n_tags)
        for c in chunk_order:
            before = snapshot(s)
            s2 = m.fold(take(ev, chunks[c]), X, s)
            assert same_snapshot(snapshot(s), before)  # the input state is left unchanged
            s = s2
    else:
        parts = [m.fold(take(ev, chunks[c]), X) for c in chunk_order]
        s = parts[0]
        for p in parts[1:]:
            s = s.merge(p)
    np.testing.assert_allclose(s.decayed_sums(now).toarray(), ref, rtol=1e-9, atol=1e-300)
    assert s.n_events == n


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def test_recency_follows_half_life():
    """A buy yesterday outweighs the same buy a month ago by exactly 2 ** ((30 - 1) / 14)."""
    X = sp.csr_array(np.eye(2))
    now = T0 + 100 * DAY
    ev = {"user": [0, 0], "item": [0, 1], "kind": ["buy", "buy"], "time": [now - 1 * DAY, now - 30 * DAY]}
    raw = InterestModel(idf=False, normalize=None, n_users=1)
    s = raw.fold(ev, X)
    S = s.decayed_sums(now).toarray()
    assert S[0, 0] == pytest.approx(5 * 2 ** (-1 / 14), rel=1e-12)
    assert S[0, 1] == pytest.approx(5 * 2 ** (-30 / 14), rel=1e-12)
    assert S[0, 0] / S[0, 1] == pytest.approx(2 ** (29 / 14), rel=1e-12)
    A = raw.profiles(s, now).toarray()
    assert A[0, 0] / A[0, 1] == pytest.approx(2 ** (29 / 14), rel=1e-6)
    # exactly one half-life old weighs one half
    one = raw.fold({"user": [0], "item": [0], "kind": ["view"], "time": [now - 14 * DAY]}, X)
    assert one.decayed_sums(now).toarray()[0, 0] == pytest.approx(0.5, abs=1e-12)
    # with a row normalisation the ratio is the same and `now` does not matter
    l2 = InterestModel(idf=False, n_users=1)
    for t in (now, now + 50 * DAY):
        B = l2.profiles(s, t).toarray()
        assert B[0, 0] / B[0, 1] == pytest.approx(2 ** (29 / 14), rel=1e-6)
        assert np.linalg.norm(B[0]) == pytest.approx(1.0, rel=1e-6)


def test_future_events_weigh_more_than_one():
    X = sp.csr_array(np.eye(1))
    m = InterestModel(idf=False, normalize=None, n_users=1)
    s = m.fold({"user": [0], "item": [0], "kind": ["view"], "time": [T0 + 14 * DAY]}, X)
    assert s.decayed_sums(T0).toarray()[0, 0] == pytest.approx(2.0, rel=1e-12)
    assert m.profiles(s, T0).toarray()[0, 0] == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match="now"):
        m.profiles(s, T0 - 1e6 * DAY)


def test_idf_lowers_a_tag_every_user_has():
    # tag 0: every user; tag 1: user 0 only; tag 2: users 0 and 1.  Same raw weight per tag.
    X = sp.csr_array(np.eye(3))
    ev = {
        "user": [0, 1, 2, 3, 0, 0, 1],
        "item": [0, 0, 0, 0, 1, 2, 2],
        "kind": ["view"] * 7,
        "time": [T0] * 7,
    }
    plain = (
        InterestModel(idf=False, normalize=None, n_users=5)
        .profiles(InterestModel(idf=False, normalize=None, n_users=5).fold(ev, X), T0)
        .toarray()
    )
    m = InterestModel(idf=True, normalize=None, n_users=5)
    A = m.profiles(m.fold(ev, X), T0).toarray()
    assert plain[0, 0] == plain[0, 1] == plain[0, 2] == 1.0
    assert A[0, 0] < A[0, 2] < A[0, 1]
    # smooth idf over the 4 active users (user 4 has no events and does not count)
    assert A[0, 0] == pytest.approx(math.log(5 / 5) + 1, rel=1e-6)
    assert A[0, 1] == pytest.approx(math.log(5 / 2) + 1, rel=1e-6)
    assert A[0, 2] == pytest.approx(math.log(5 / 3) + 1, rel=1e-6)


@pytest.mark.parametrize("normalize", ["l2", "l1", "max", None])
@pytest.mark.parametrize("k", [None, 1, 2, 4])
@pytest.mark.parametrize("idf", [True, False])
def test_profiles_match_reference(normalize, k, idf):
    rng = np.random.default_rng(11)
    X = make_catalogue(rng, 14, 8)
    ev = make_events(rng, 150, 10, 14, weight=True)
    m = InterestModel(idf=idf, max_tags_per_user=k, normalize=normalize, n_users=12)  # users 10, 11: none
    s = m.fold(ev, X)
    now = T0 + 70 * DAY
    A = m.profiles(s, now)
    assert_canonical(A, (12, 8))
    ref = ref_profiles(ref_sums(ev, X, 12, now), idf=idf, k=k, normalize=normalize)
    np.testing.assert_allclose(A.toarray(), ref, rtol=2e-6, atol=0)
    assert A[[10, 11]].nnz == 0


def test_top_k_ties_keep_lower_tag():
    # item 0 carries tags 3, 1, 2 with equal weight; k=2 keeps tags 1 and 2
    X = sp.csr_array(np.array([[0, 1.0, 1.0, 1.0, 0.5]]))
    m = InterestModel(idf=False, max_tags_per_user=2, normalize="max", n_users=1)
    A = m.profiles(m.fold({"user": [0], "item": [0], "kind": [0], "time": [T0]}, X))
    assert A.indices.tolist() == [1, 2]
    assert A.data.tolist() == [1.0, 1.0]


def test_profiles_feed_the_ranker():
    rng = np.random.default_rng(5)
    n_users, n_items, n_tags, n_merchants = 40, 60, 12, 9
    X = make_catalogue(rng, n_items, n_tags, density=0.15)
    item_merchant = rng.integers(0, n_merchants, n_items)
    ev = make_events(rng, 500, n_users, n_items)
    m = InterestModel(max_tags_per_user=5, n_users=n_users)
    A = m.profiles(m.fold(ev, X))
    B = m.merchant_profiles(X, item_merchant, n_merchants=n_merchants)
    buys = ev["kind"] == 3
    F = m.follow_matrix(
        ev["user"][buys],
        item_merchant[ev["item"][buys]],
        ev["time"][buys],
        kind=np.full(buys.sum(), "buy"),
        now=T0 + 61 * DAY,
        n_users=n_users,
        n_merchants=n_merchants,
    )
    top = ec.Ranker(B).topk(A, k=3, follows=F)
    assert top.indices.shape == (n_users, 3)
    reach = (A @ B).toarray() + F.toarray()
    for u in range(n_users):
        for mer in top.indices[u][top.indices[u] >= 0]:
            assert reach[u, mer] > 0


# ---------------------------------------------------------------------------------------------
# Merchant profiles and follows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["l2", "l1", "max", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_merchant_profiles_match_reference(normalize, weighted):
    rng = np.random.default_rng(8)
    X = make_catalogue(rng, 20, 7)
    item_merchant = rng.integers(0, 5, 20)
    item_merchant[item_merchant == 3] = 4  # merchant 3 sells nothing
    w = rng.uniform(0, 10, 20) if weighted else None
    if weighted:
        w[0] = 0.0
    m = InterestModel(normalize=normalize)
    B = m.merchant_profiles(X, item_merchant, w, n_merchants=6)
    assert_canonical(B, (7, 6))
    ref = np.zeros((7, 6))
    Xd = X.toarray()
    for i in range(20):
        ref[:, item_merchant[i]] += (1.0 if w is None else w[i]) * Xd[i]
    for col in range(6):
        c = ref[:, col]
        if c.any() and normalize is not None:
            ref[:, col] = c / {"l2": np.sqrt((c**2).sum()), "l1": c.sum(), "max": c.max()}[normalize]
    np.testing.assert_allclose(B.toarray(), ref, rtol=2e-6)
    assert B[:, [3, 5]].nnz == 0
    # n_merchants inferred from the largest id
    assert m.merchant_profiles(X, item_merchant, w).shape == (7, 5)


@settings(max_examples=40)
@given(data=st.data())
def test_follow_matrix_matches_reference(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    n = data.draw(st.integers(0, 40))
    nu, nm = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    user = rng.integers(0, nu, n)
    mer = rng.integers(0, nm, n)
    time = T0 + rng.integers(0, 5, n) * DAY  # repeated times: ties among purchases
    kind = np.array(["follow", "buy"])[rng.integers(0, 2, n)] if data.draw(st.booleans()) else None
    hl = data.draw(st.sampled_from([None, 7.0, math.inf]))
    rpw = data.draw(st.sampled_from([0.0, 0.5, 2.0]))
    now = T0 + 10 * DAY
    m = InterestModel(half_life_days=30.0)
    F = m.follow_matrix(
        user, mer, time, kind=kind, now=now, half_life_days=hl, repeat_purchase_weight=rpw, n_users=nu, n_merchants=nm
    )
    assert_canonical(F, (nu, nm))
    eff = 30.0 if hl is None else (None if hl == math.inf else hl)
    ref = ref_follow(user, mer, time, kind, now, eff, rpw, nu, nm)
    np.testing.assert_allclose(F.toarray(), ref, rtol=1e-6)


def test_follow_matrix_rule():
    m = InterestModel(half_life_days=10.0)
    now = T0 + 20 * DAY
    F = m.follow_matrix(
        [0, 0, 0, 0, 1],
        [1, 1, 2, 2, 0],
        [T0, T0 + 10 * DAY, T0, T0 + 10 * DAY, now],
        kind=[0, 0, 1, 1, 1],
        now=now,
        repeat_purchase_weight=3.0,
        n_users=2,
        n_merchants=3,
    ).toarray()
    assert F[0, 1] == pytest.approx(0.5)  # the latest follow, counted once
    assert F[0, 2] == pytest.approx(3.0 * 0.5)  # second purchase only
    assert F[1, 0] == 0.0  # a single purchase is not a follow


# ---------------------------------------------------------------------------------------------
# State operations
# ---------------------------------------------------------------------------------------------


def test_forget_removes_every_trace(small, tmp_path):
    X, ev = small
    m = InterestModel(n_users=9)
    s = m.fold(ev, X)
    S_before = s.decayed_sums(T0).toarray()
    gone = [2, 5]
    held = int(np.count_nonzero(S_before[gone]))
    assert held > 0
    assert s.forget(np.array(gone)) == held
    S = s.decayed_sums(T0).toarray()
    assert not S[gone].any()
    keep = [u for u in range(9) if u not in gone]
    np.testing.assert_array_equal(S[keep], S_before[keep])
    assert not np.isin(np.asarray(s._table["key"]) >> 32, np.array(gone) + 1).any()
    path = tmp_path / "s.npz"
    s.save(path)
    with np.load(path, allow_pickle=False) as z:
        assert not np.isin(z["user"], gone).any()
        assert set(np.unique(z["user"])) <= set(keep)
    assert m.profiles(InterestState.load(path))[gone].nnz == 0
    assert s.forget([]) == 0
    with pytest.raises(ValueError, match="user_ids"):
        s.forget([9])
    # the users stay declared and can act again
    m.fold({"user": [2], "item": [0], "kind": ["buy"], "time": [T0]}, X, into=s)
    assert s.decayed_sums(T0)[[2]].nnz > 0


def test_merge(small):
    X, ev = small
    m = InterestModel(n_users=9)
    a, b = m.fold(take(ev, slice(0, 120)), X), m.fold(take(ev, slice(120, 200)), X)
    snap_a, snap_b = snapshot(a), snapshot(b)
    c = a.merge(b)
    assert same_snapshot(snapshot(a), snap_a) and same_snapshot(snapshot(b), snap_b)
    now = T0 + 60 * DAY
    np.testing.assert_allclose(c.decayed_sums(now).toarray(), ref_sums(ev, X, 9, now), rtol=1e-9)
    assert c.n_events == 200 and c.last_time == ev["time"].max()
    assert a.merge(b, inplace=True) is a
    np.testing.assert_allclose(a.decayed_sums(now).toarray(), c.decayed_sums(now).toarray(), rtol=1e-12)
    d = b.merge(b)
    np.testing.assert_allclose(d.decayed_sums(now).toarray(), 2 * b.decayed_sums(now).toarray(), rtol=1e-12)
    # into an empty state, and a smaller state into a larger one
    e = m.new_state(20, 6).merge(b)
    np.testing.assert_allclose(e.decayed_sums(now).toarray()[:9], b.decayed_sums(now).toarray(), rtol=1e-12)
    with pytest.raises(ValueError, match="resize"):
        b.merge(m.new_state(20, 6))
    with pytest.raises(ValueError, match="configuration"):
        b.merge(InterestModel(half_life_days=3, n_users=9).fold(ev, X))
    with pytest.raises(TypeError, match="other"):
        b.merge("state")
    assert same_snapshot(snapshot(b), snap_b)


def test_copy_and_resize(small):
    X, ev = small
    m = InterestModel(n_users=9)
    s = m.fold(ev, X)
    c = s.copy()
    m.fold(ev, X, into=c)
    np.testing.assert_allclose(c.decayed_sums(T0).toarray(), 2 * s.decayed_sums(T0).toarray(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"events\['user'\]"):
        m.fold({"user": [12], "item": [0], "kind": [0], "time": [T0]}, X, into=s)
    assert s.resize(n_users=13) is s
    m.fold({"user": [12], "item": [0], "kind": [0], "time": [T0]}, X, into=s)
    assert m.profiles(s).shape == (13, 6)
    with pytest.raises(ValueError, match="n_users"):
        s.resize(n_users=5)
    with pytest.raises(ValueError, match="n_tags"):
        s.resize(n_tags=2)
    s.resize(n_tags=8)
    with pytest.raises(ValueError, match="item_tags"):
        m.fold(ev, X, into=s)  # 6 tag columns, state has 8
    X8 = sp.hstack([X, sp.csr_array((12, 2))]).tocsr()
    m.fold(ev, X8, into=s)
    assert m.profiles(s).shape == (13, 8)


def test_reserve_avoids_growth(small, monkeypatch):
    X, ev = small
    m = InterestModel(n_users=9)
    ref = m.fold(ev, X)
    s = m.new_state(9, 6)
    assert s.reserve(ref.n_entries) is s
    cap = s.nbytes

    def no_growth(self, capacity, *a, **k):
        raise AssertionError("the table grew")

    monkeypatch.setattr(InterestState, "_rehash", no_growth)
    m.fold(ev, X, into=s)
    assert s.nbytes == cap
    np.testing.assert_array_equal(s.decayed_sums().toarray(), ref.decayed_sums().toarray())
    s.reserve(0)  # never shrinks
    assert s.nbytes == cap
    with pytest.raises(ValueError, match="n_entries"):
        s.reserve(-1)


def test_save_load_roundtrip(small, tmp_path):
    X, ev = small
    for hl in (14.0, None):
        m = InterestModel(half_life_days=hl, n_users=9)
        s = m.fold(ev, X)
        path = tmp_path / f"s{hl}.npz"
        s.save(path)
        t = InterestState.load(str(path))
        assert repr(t) == repr(s)
        assert t.event_weights == s.event_weights and t.reference_time == s.reference_time
        assert t.last_time == s.last_time
        np.testing.assert_array_equal(t.decayed_sums().toarray(), s.decayed_sums().toarray())
        m.fold(ev, X, into=t)  # a loaded state folds on
        m.fold(ev, X, into=s)
        np.testing.assert_allclose(t.decayed_sums().toarray(), s.decayed_sums().toarray(), rtol=1e-12)
    empty = InterestModel().new_state(3, 2)
    empty.save(tmp_path / "e.npz")
    assert InterestState.load(tmp_path / "e.npz").n_entries == 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def _rewrite(path, tmp_path, **changes):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    import json

    header = json.loads(bytes(arrays.pop("__meta__")).decode())
    meta = header["meta"]
    for k, v in changes.items():
        if k in arrays:
            arrays[k] = v
        else:
            meta[k] = v
    out = tmp_path / "bad.npz"
    save_npz(out, header["kind"], header["version"], arrays, meta)
    return out


def test_corrupt_files(small, tmp_path):
    X, ev = small
    s = InterestModel(n_users=9).fold(ev, X)
    path = tmp_path / "s.npz"
    s.save(path)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with zipfile.ZipFile(tmp_path / "nometa.npz", "w") as z:
        z.writestr("user.npy", b"")
    save_npz(tmp_path / "kind.npz", "ecomcore.TrustState", 1, {"a": np.zeros(1)})
    save_npz(tmp_path / "ver.npz", "ecomcore.InterestState", 99, {"a": np.zeros(1)})
    for name in ("trunc", "junk", "nometa", "kind", "ver"):
        with pytest.raises(ValueError):
            InterestState.load(tmp_path / f"{name}.npz")
    with np.load(path) as z:
        u, t, v = z["user"], z["tag"], z["value"]
    bad_cases = {
        "unsorted": dict(user=u[::-1].copy()),
        "range": dict(tag=np.full_like(t, 6)),
        "negative": dict(value=-v),
        "nan": dict(value=np.full_like(v, np.nan)),
        "dtype": dict(value=v.astype(np.float32)),
        "length": dict(user=u[:-1]),
        "header": dict(n_users="nine"),
        "kinds": dict(event_weights=[1.0]),
        "halflife": dict(half_life_days=-3.0),
    }
    for change in bad_cases.values():
        with pytest.raises(ValueError, match="corrupt"):
            InterestState.load(_rewrite(path, tmp_path, **change))
    with pytest.raises(FileNotFoundError):
        InterestState.load(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error, and the state unchanged
# ---------------------------------------------------------------------------------------------


def _bad_events():
    good = {"user": [0, 1, 2], "item": [0, 1, 2], "kind": ["view", "buy", "fav"], "time": [T0, T0, T0]}

    def with_(**kw):
        d = dict(good)
        d.update(kw)
        return d

    return [
        (with_(user=[0, 9, 1]), ValueError, r"events\['user'\].*9.*row 1"),
        (with_(user=[0, -1, 1]), ValueError, r"events\['user'\]"),
        (with_(user=[0.0, 1.5, 2.0]), TypeError, r"events\['user'\]"),
        (with_(user=[0.0, np.nan, 2.0]), ValueError, r"events\['user'\]"),
        (with_(user=np.array([0, 2**40, 1], dtype=np.uint64)), ValueError, r"events\['user'\]"),
        (with_(user=[True, False, True]), TypeError, r"events\['user'\]"),
        (with_(item=[0, 1, 12]), ValueError, r"events\['item'\].*row 2"),
        (with_(kind=["view", "click", "buy"]), ValueError, r"events\['kind'\].*'click'"),
        (with_(kind=[0, 4, 1]), ValueError, r"events\['kind'\].*code 4"),
        (with_(kind=[0.0, 1.0, 2.0]), TypeError, r"events\['kind'\]"),
        (with_(time=[T0, np.nan, T0]), ValueError, r"events\['time'\].*row 1"),
        (with_(time=[T0, np.inf, T0]), ValueError, r"events\['time'\]"),
        (with_(time=["a", "b", "c"]), TypeError, r"events\['time'\]"),
        (with_(weight=[1.0, -1.0, 1.0]), ValueError, r"events\['weight'\].*row 1"),
        (with_(weight=[1.0, np.nan, 1.0]), ValueError, r"events\['weight'\]"),
        (with_(weight=[1.0, 1e305, 1.0]), ValueError, r"events\['weight'\].*overflow"),
        (with_(item=[0, 1]), ValueError, "different lengths"),
        (with_(user=[[0, 1, 2]]), ValueError, r"events\['user'\].*1-D"),
        ({k: v for k, v in good.items() if k != "time"}, ValueError, "missing column 'time'"),
        ([1, 2, 3], TypeError, "events"),
        (np.zeros((3, 4)), TypeError, "events"),
    ]


@pytest.mark.parametrize("bad,exc,msg", _bad_events())
def test_bad_events_leave_state_unchanged(small, bad, exc, msg):
    X, ev = small
    m = InterestModel(n_users=9)
    s = m.fold(ev, X)
    before = snapshot(s)
    with pytest.raises(exc, match=msg):
        m.fold(bad, X, into=s)
    assert same_snapshot(snapshot(s), before)
    with pytest.raises(exc, match=msg):
        m.fold(bad, X, s)
    assert same_snapshot(snapshot(s), before)
    with pytest.raises(exc, match=msg):
        m.fold(bad, X)


@pytest.mark.parametrize(
    "item_tags,msg",
    [
        (sp.csr_array(np.ones((12, 5))), "item_tags.*5 tag columns"),
        (sp.csr_array(np.full((12, 6), -1.0)), "item_tags.*>= 0"),
        (sp.csr_array(np.full((12, 6), np.nan)), "item_tags.*non-finite"),
        ("tags", "item_tags"),
    ],
)
def test_bad_item_tags_leave_state_unchanged(small, item_tags, msg):
    X, ev = small
    m = InterestModel(n_users=9)
    s = m.fold(ev, X)
    before = snapshot(s)
    with pytest.raises((ValueError, TypeError), match=msg):
        m.fold(ev, item_tags, into=s)
    assert same_snapshot(snapshot(s), before)


def test_declared_item_and_tag_counts(small):
    X, ev = small
    with pytest.raises(ValueError, match="item_tags.*13 rows"):
        InterestModel(n_users=9, n_items=13).fold(ev, X)
    with pytest.raises(ValueError, match="item_tags.*7 columns"):
        InterestModel(n_users=9, n_tags=7).fold(ev, X)
    assert InterestModel(n_users=9, n_items=12, n_tags=6).fold(ev, X).n_events == 200
    with pytest.raises(ValueError, match="n_users"):
        InterestModel().fold(ev, X)


def test_wrong_state_arguments(small):
    X, ev = small
    m = InterestModel(n_users=9)
    s = m.fold(ev, X)
    with pytest.raises(ValueError, match="state, into"):
        m.fold(ev, X, s, into=s)
    with pytest.raises(TypeError, match="into"):
        m.fold(ev, X, into={"a": 1})
    with pytest.raises(ValueError, match="configuration"):
        InterestModel({"view": 1.0}, n_users=9).fold({"user": [0], "item": [0], "kind": [0], "time": [T0]}, X, into=s)
    with pytest.raises(ValueError, match="configuration"):
        InterestModel(half_life_days=7).profiles(s)
    with pytest.raises(TypeError, match="now"):
        m.profiles(s, "yesterday")


@pytest.mark.parametrize(
    "kwargs,exc,msg",
    [
        (dict(event_weights={}), ValueError, "event_weights"),
        (dict(event_weights=[("view", 1)]), TypeError, "event_weights"),
        (dict(event_weights={"view": -1}), ValueError, "event_weights"),
        (dict(event_weights={"view": np.nan}), ValueError, "event_weights"),
        (dict(event_weights={"view": "1"}), TypeError, "event_weights"),
        (dict(event_weights={1: 1.0}), TypeError, "event_weights"),
        (dict(half_life_days=0), ValueError, "half_life_days"),
        (dict(half_life_days=-2), ValueError, "half_life_days"),
        (dict(half_life_days=np.nan), ValueError, "half_life_days"),
        (dict(half_life_days="14"), TypeError, "half_life_days"),
        (dict(idf="yes"), TypeError, "idf"),
        (dict(max_tags_per_user=0), ValueError, "max_tags_per_user"),
        (dict(max_tags_per_user=2.5), TypeError, "max_tags_per_user"),
        (dict(normalize="l3"), ValueError, "normalize"),
        (dict(normalize=2), ValueError, "normalize"),
        (dict(n_users=-1), ValueError, "n_users"),
        (dict(n_users=2**31), ValueError, "n_users"),
        (dict(n_tags=1.0), TypeError, "n_tags"),
    ],
)
def test_model_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        InterestModel(**kwargs)


def test_merchant_and_follow_bad_inputs():
    X = sp.csr_array(np.eye(3))
    m = InterestModel()
    with pytest.raises(ValueError, match="item_merchant.*3 entries"):
        m.merchant_profiles(X, [0, 1])
    with pytest.raises(ValueError, match="item_merchant.*out of range"):
        m.merchant_profiles(X, [0, 1, 5], n_merchants=3)
    with pytest.raises(ValueError, match="item_merchant"):
        m.merchant_profiles(X, [0, -1, 1])
    with pytest.raises(ValueError, match="weights"):
        m.merchant_profiles(X, [0, 1, 1], [1, -1, 1])
    with pytest.raises(ValueError, match="item_tags"):
        m.merchant_profiles(sp.csr_array(-np.eye(3)), [0, 1, 1])
    kw = dict(now=T0, n_users=2, n_merchants=2)
    with pytest.raises(ValueError, match="merchant.*out of range"):
        m.follow_matrix([0], [2], [T0], **kw)
    with pytest.raises(ValueError, match="user"):
        m.follow_matrix([5], [0], [T0], **kw)
    with pytest.raises(ValueError, match="kind.*'like'"):
        m.follow_matrix([0], [0], [T0], kind=["like"], **kw)
    with pytest.raises(ValueError, match="time"):
        m.follow_matrix([0], [0], [np.nan], **kw)
    with pytest.raises(ValueError, match="lengths"):
        m.follow_matrix([0, 1], [0], [T0], **kw)
    with pytest.raises(ValueError, match="repeat_purchase_weight"):
        m.follow_matrix([0], [0], [T0], repeat_purchase_weight=-1, **kw)
    with pytest.raises(ValueError, match="half_life_days"):
        m.follow_matrix([0], [0], [T0], half_life_days=0, **kw)
    with pytest.raises(TypeError, match="now"):
        m.follow_matrix([0], [0], [T0], now=None, n_users=2, n_merchants=2)
    empty = m.follow_matrix([], [], [], **kw)
    assert empty.shape == (2, 2) and empty.nnz == 0


# ---------------------------------------------------------------------------------------------
# Column containers, threads, interruption
# ---------------------------------------------------------------------------------------------


def test_columns_from_dataframe_structured_array_and_datetimes(small):
    X, ev = small
    m = InterestModel(n_users=9)
    ref = m.fold(ev, X).decayed_sums(T0).toarray()
    rec = np.zeros(200, dtype=[("user", "i4"), ("item", "i2"), ("kind", "u1"), ("time", "f8"), ("weight", "f4")])
    for k in rec.dtype.names:
        rec[k] = ev[k]
    got = m.fold(rec, X).decayed_sums(T0).toarray()
    np.testing.assert_allclose(got, ref, rtol=1e-6)  # weight rounded to float32
    ev_dt = dict(ev, time=(ev["time"] * 1e9).astype(np.int64).view("datetime64[ns]"))
    np.testing.assert_allclose(m.fold(ev_dt, X).decayed_sums(T0).toarray(), ref, rtol=1e-9)
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(dict(ev, kind=np.array(KINDS)[ev["kind"]], extra=1))
    np.testing.assert_allclose(m.fold(df, X).decayed_sums(T0).toarray(), ref, rtol=1e-12)
    df["kind"] = df["kind"].astype("category")
    np.testing.assert_allclose(m.fold(df, X).decayed_sums(T0).toarray(), ref, rtol=1e-12)


def test_concurrent_folds_are_serialised():
    rng = np.random.default_rng(9)
    X = make_catalogue(rng, 30, 10)
    ev = make_events(rng, 20000, 500, 30)
    m = InterestModel(n_users=500)
    s = m.new_state(500, 10)
    chunks = np.array_split(np.arange(20000), 16)
    errors = []

    def work(cs):
        try:
            for c in cs:
                m.fold(take(ev, c), X, into=s)
                m.profiles(s)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(chunks[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    now = T0 + 60 * DAY
    np.testing.assert_allclose(s.decayed_sums(now).toarray(), ref_sums(ev, X, 500, now), rtol=1e-9)


def test_interrupted_fold_marks_state_broken(small, monkeypatch):
    X, ev = small
    m = InterestModel(n_users=9)
    s = m.new_state(9, 6)

    def no_memory(self, capacity, *a, **k):
        raise MemoryError("simulated")

    monkeypatch.setattr(InterestState, "_rehash", no_memory)
    with pytest.raises(MemoryError):
        m.fold(ev, X, into=s)  # 200 events need more than the 16-slot starting table
    monkeypatch.undo()
    for call in (lambda: m.profiles(s), lambda: m.fold(ev, X, into=s), s.copy, lambda: s.save("x.npz")):
        with pytest.raises(ValueError, match="unusable"):
            call()


def test_empty_events_and_state(small):
    X, _ = small
    m = InterestModel(n_users=4)
    s = m.fold({"user": [], "item": [], "kind": [], "time": []}, X)
    assert s.n_events == 0 and s.n_entries == 0 and s.last_time is None and s.reference_time is None
    A = m.profiles(s, T0)
    assert_canonical(A, (4, 6))
    assert A.nnz == 0
    assert interest_mod.DEFAULT_EVENT_WEIGHTS["buy"] == 5.0
