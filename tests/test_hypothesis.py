"""Hypothesis-generated problems checked against the dense reference.

* ``test_sparse_topk_exact``: small dyadic values (exact in float32 and float64), so scores,
  ties, cancellations to exactly 0 and the threshold boundary are compared exactly.
* ``test_ranker_random_floats``: continuous random values with trust/beta/boost/bans, compared
  up to floating-point tolerance (near-ties at the k-th place handled honestly).
* ``test_sharding_chunking_threads``: merge over 3 merchant shards, iter_topk chunking and
  n_threads 1/2 all give exactly the unsharded, unchunked answer.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from _reference import (
    assert_topk_close,
    assert_topk_equal,
    reference_scores,
    reference_topk,
    reference_weights,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ecomcore as ec

# Mostly zeros; +-1 and 0.5/-0.25 make exact cancellations and duplicate scores frequent.
TAG_VALUES = st.sampled_from([0.0, 0.0, 0.0, 1.0, -1.0, 2.0, 0.5, -0.25, 3.0, 1.0])
FOLLOW_VALUES = st.sampled_from([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.5, 2.0])
WEIGHT_VALUES = st.sampled_from([1.0, 0.0, 0.5, 2.0, 1.0])
FORMATS = ["csr_array", "csr_matrix", "csc_array", "coo_matrix", "ndarray", "explicit_zeros",
           "dup_unsorted"]


def _format(Xd, fmt, dtype, salt=0):
    """``Xd`` (dense, dyadic) in the requested input format and dtype."""
    Xd = np.asarray(Xd, dtype=dtype)
    if fmt == "ndarray":
        return Xd
    if fmt == "csr_array":
        return sp.csr_array(Xd)
    if fmt == "csr_matrix":
        return sp.csr_matrix(Xd)
    if fmt == "csc_array":
        return sp.csc_array(Xd)
    if fmt == "coo_matrix":
        return sp.coo_matrix(Xd)
    n_rows, n_cols = Xd.shape
    rows, cols = np.nonzero(Xd)
    vals = Xd[rows, cols]
    if fmt == "explicit_zeros":
        # also store some zeros explicitly: they must not reach anything
        rng = np.random.default_rng(salt)
        zr, zc = np.nonzero((Xd == 0) & (rng.random(Xd.shape) < 0.3))
        rows = np.concatenate([rows, zr])
        cols = np.concatenate([cols, zc])
        vals = np.concatenate([vals, np.zeros(len(zr), dtype=dtype)])
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        indptr = np.searchsorted(rows, np.arange(n_rows + 1)).astype(np.int32)
        return sp.csr_array((vals, cols.astype(np.int32), indptr), shape=Xd.shape)
    if fmt == "dup_unsorted":
        # every value stored as two halves, columns descending within a row
        order = np.lexsort((-cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        rows = np.repeat(rows, 2)
        cols = np.repeat(cols, 2)
        vals = np.repeat(vals / 2, 2).astype(dtype)
        indptr = np.searchsorted(rows, np.arange(n_rows + 1)).astype(np.int32)
        return sp.csr_matrix((vals, cols.astype(np.int32), indptr), shape=Xd.shape)
    raise AssertionError(fmt)


def _snapshot(X):
    if sp.issparse(X):
        parts = [X.data]
        if X.format in ("csr", "csc"):
            parts += [X.indices, X.indptr]
        else:
            parts += list(X.coords)
        return [np.array(p, copy=True) for p in parts]
    return [np.array(X, copy=True)]


def _same(before, after):
    for b, a in zip(before, after):
        np.testing.assert_array_equal(b, a)


@st.composite
def exact_problems(draw):
    n_users = draw(st.integers(0, 7))
    n_tags = draw(st.integers(0, 5))
    n_merchants = draw(st.integers(1, 9))
    Ad = draw(hnp.arrays(np.float64, (n_users, n_tags), elements=TAG_VALUES))
    Bd = draw(hnp.arrays(np.float64, (n_tags, n_merchants), elements=TAG_VALUES))
    if n_users and draw(st.booleans()):
        # a guaranteed cancellation: user 0 = [1, 1, ...], merchant 0 = [1, -1, 0, ...]
        if n_tags >= 2:
            Ad[0, :2] = 1.0
            Bd[:2, 0] = [1.0, -1.0]
            Bd[2:, 0] = 0.0
    F = None
    if draw(st.booleans()):
        F = draw(hnp.arrays(np.float64, (n_users, n_merchants), elements=FOLLOW_VALUES))
    E = None
    if draw(st.booleans()):
        E = draw(hnp.arrays(np.bool_, (n_users, n_merchants),
                            elements=st.sampled_from([False, False, False, True])))
    w = None
    if draw(st.booleans()):
        w = draw(hnp.arrays(np.float64, (n_merchants,), elements=WEIGHT_VALUES))
    return dict(
        Ad=Ad, Bd=Bd, F=F, E=E, w=w,
        follow_weight=draw(st.sampled_from([1.0, 0.5, 2.0])),
        threshold=draw(st.one_of(st.none(), st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0]))),
        k=draw(st.integers(1, 11)),
        n_threads=draw(st.sampled_from([1, 2])),
        dtype_a=draw(st.sampled_from([np.float32, np.float64])),
        dtype_b=draw(st.sampled_from([np.float32, np.float64])),
        fmt_a=draw(st.sampled_from(FORMATS)),
        fmt_b=draw(st.sampled_from(FORMATS)),
        fmt_f=draw(st.sampled_from(["csr_array", "coo_matrix", "ndarray", "explicit_zeros"])),
        sparse_e=draw(st.booleans()),
    )


@settings(max_examples=200)
@given(exact_problems())
def test_sparse_topk_exact(p):
    A = _format(p["Ad"], p["fmt_a"], p["dtype_a"], salt=1)
    B = _format(p["Bd"], p["fmt_b"], p["dtype_b"], salt=2)
    F = None if p["F"] is None else _format(p["F"], p["fmt_f"], np.float64, salt=3)
    E = p["E"]
    if E is not None and p["sparse_e"]:
        E = sp.csr_array(E)
    expected_dtype = (np.float32 if p["dtype_a"] == np.float32 and p["dtype_b"] == np.float32
                      else np.float64)
    before = [_snapshot(X) for X in (A, B, F, E, p["w"]) if X is not None]
    res = ec.sparse_topk(A, B, p["k"], merchant_weight=p["w"], follows=F,
                         follow_weight=p["follow_weight"], exclude=E,
                         threshold=p["threshold"], n_threads=p["n_threads"])
    after = [_snapshot(X) for X in (A, B, F, E, p["w"]) if X is not None]
    _same([x for s in before for x in s], [x for s in after for x in s])
    ref = reference_topk(p["Ad"], p["Bd"], p["k"], w=p["w"], F=p["F"],
                         follow_weight=p["follow_weight"], E=p["E"], threshold=p["threshold"])
    assert res.scores.dtype == expected_dtype
    assert res.indices.dtype == np.int32
    assert res.n_cols == p["Bd"].shape[1]
    assert_topk_equal(res, ref)
    # and the same problem through a Ranker (w as a boost; follows/exclude per call)
    if p["w"] is None:
        r = ec.Ranker(B, follow_weight=p["follow_weight"])
        res2 = r.topk(A, k=p["k"], follows=F, exclude=E, threshold=p["threshold"],
                      n_threads=p["n_threads"])
        assert_topk_equal(res2, ref)


@st.composite
def random_float_problems(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_users = draw(st.integers(0, 12))
    n_tags = draw(st.integers(1, 8))
    n_merchants = draw(st.integers(1, 80))
    da = draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    db = draw(st.sampled_from([0.05, 0.2, 0.6]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    Ad = rng.uniform(-1, 1, (n_users, n_tags)) * (rng.random((n_users, n_tags)) < da)
    Bd = rng.uniform(-1, 1, (n_tags, n_merchants)) * (rng.random((n_tags, n_merchants)) < db)
    if draw(st.booleans()):
        Ad = np.abs(Ad)
        Bd = np.abs(Bd)
    trust = None
    if draw(st.booleans()):
        trust = rng.uniform(0, 1, n_merchants)
        trust[rng.random(n_merchants) < 0.1] = 0.0
    boost = rng.uniform(1, 3, n_merchants) if draw(st.booleans()) else None
    banned = None
    ban_kind = draw(st.sampled_from(["none", "mask", "ids", "all"]))
    if ban_kind == "mask":
        banned = rng.random(n_merchants) < 0.3
    elif ban_kind == "ids":
        banned = rng.choice(n_merchants, rng.integers(0, n_merchants + 1), replace=False)
    elif ban_kind == "all":
        banned = np.ones(n_merchants, dtype=bool)
    F = None
    if draw(st.booleans()):
        F = rng.uniform(-1, 2, (n_users, n_merchants)) * (rng.random((n_users, n_merchants)) < 0.1)
    E = None
    if draw(st.booleans()):
        E = rng.random((n_users, n_merchants)) < 0.15
    return dict(
        A=sp.csr_array(Ad.astype(dtype)), B=sp.csr_array(Bd.astype(dtype)),
        trust=trust, boost=boost, banned=banned,
        beta=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
        min_trust=draw(st.sampled_from([0.0, 0.0, 0.25])),
        follow_weight=draw(st.sampled_from([1.0, 0.3])),
        F=None if F is None else sp.csr_array(F),
        E=None if E is None else sp.csr_array(E),
        threshold=draw(st.one_of(st.none(), st.floats(-1, 1))),
        k=draw(st.integers(1, 90)),
        n_threads=draw(st.sampled_from([1, 2])),
        dtype=dtype,
    )


@settings(max_examples=150)
@given(random_float_problems())
def test_ranker_random_floats(p):
    if p["beta"] == 0.0 and p["trust"] is not None:
        p["trust"] = np.maximum(p["trust"], 1e-3)  # 0 ** 0 is not a question for this test
    r = ec.Ranker(p["B"], trust=p["trust"], beta=p["beta"], boost=p["boost"],
                  banned=p["banned"], min_trust=p["min_trust"], follow_weight=p["follow_weight"])
    n_merchants = p["B"].shape[1]
    w = reference_weights(n_merchants, trust=p["trust"], beta=p["beta"], boost=p["boost"],
                          banned=p["banned"], min_trust=p["min_trust"])
    np.testing.assert_allclose(r.merchant_weight, w, rtol=1e-12, atol=0)
    res = r.topk(p["A"], k=p["k"], follows=p["F"], exclude=p["E"], threshold=p["threshold"],
                 n_threads=p["n_threads"])
    assert res.scores.dtype == p["dtype"]
    assert_topk_close(res, p["A"], p["B"], p["k"], w=w, F=p["F"],
                      follow_weight=p["follow_weight"], E=p["E"], threshold=p["threshold"])
    if p["banned"] is not None and np.asarray(p["banned"]).dtype == bool and p["banned"].all():
        assert np.all(res.counts == 0)
    # topk_one on each row gives that row of topk (no threshold in topk_one)
    if p["threshold"] is None:
        A, F, E = p["A"], p["F"], p["E"]
        for u in range(A.shape[0]):
            s, e = A.indptr[u], A.indptr[u + 1]
            kw = {}
            if F is not None:
                fs, fe = F.indptr[u], F.indptr[u + 1]
                kw.update(follow_ids=F.indices[fs:fe], follow_weights=F.data[fs:fe])
            if E is not None:
                kw.update(exclude_ids=E.indices[E.indptr[u]:E.indptr[u + 1]])
            one = r.topk_one(A.indices[s:e], A.data[s:e], k=p["k"], **kw)
            assert one.counts[0] == res.counts[u]
            np.testing.assert_array_equal(one.indices[0], res.indices[u])
            np.testing.assert_allclose(one.scores[0], res.scores[u],
                                       rtol=4 * np.finfo(p["dtype"]).eps, atol=0)


@st.composite
def shard_problems(draw):
    n_users = draw(st.integers(0, 10))
    n_tags = draw(st.integers(1, 5))
    n_merchants = draw(st.integers(3, 30))
    Ad = draw(hnp.arrays(np.float64, (n_users, n_tags), elements=TAG_VALUES))
    Bd = draw(hnp.arrays(np.float64, (n_tags, n_merchants), elements=TAG_VALUES))
    owner = draw(hnp.arrays(np.int64, (n_merchants,), elements=st.integers(0, 2)))
    owner[:3] = [0, 1, 2]
    return dict(
        Ad=Ad, Bd=Bd, owner=owner,
        k=draw(st.integers(1, 35)),
        chunk_rows=draw(st.integers(1, 12)),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        threshold=draw(st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 1.0]))),
    )


@settings(max_examples=120)
@given(shard_problems())
def test_sharding_chunking_threads(p):
    A = sp.csr_array(p["Ad"].astype(p["dtype"]))
    B = sp.csr_array(p["Bd"].astype(p["dtype"]))
    k, thr = p["k"], p["threshold"]
    whole = ec.sparse_topk(A, B, k, threshold=thr, n_threads=1)
    assert_topk_equal(whole, reference_topk(p["Ad"], p["Bd"], k, threshold=thr))
    assert_topk_equal(ec.sparse_topk(A, B, k, threshold=thr, n_threads=2), whole)
    parts = []
    for s in range(3):
        ws = (p["owner"] == s).astype(np.float64)
        parts.append(ec.sparse_topk(A, B, k, merchant_weight=ws, threshold=thr,
                                    n_threads=1 + s % 2))
    assert_topk_equal(ec.merge_topk(parts, k), whole)
    r = ec.Ranker(B)
    blocks = list(r.iter_topk(A, k=k, chunk_rows=p["chunk_rows"], threshold=thr, n_threads=2))
    assert [b[0] for b in blocks] == list(range(0, A.shape[0], p["chunk_rows"]))
    if blocks:
        assert_topk_equal(ec.concat_topk([b for _, b in blocks]), whole)


@st.composite
def weighted_int_problems(draw):
    n_users = draw(st.integers(1, 5))
    n_tags = draw(st.integers(1, 5))
    n_merchants = draw(st.integers(1, 8))
    ints = st.sampled_from([0.0, 0.0, 1.0, -1.0, 2.0, 3.0, -5.0, 7.0, 9.0, -7.0])
    Ad = draw(hnp.arrays(np.float64, (n_users, n_tags), elements=ints))
    Bd = draw(hnp.arrays(np.float64, (n_tags, n_merchants), elements=ints))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    w = draw(hnp.arrays(np.float64, (n_merchants,),
                        elements=st.floats(0.01, 2.0) | st.just(0.0)))
    if dtype == np.float32:
        w = w.astype(np.float32).astype(np.float64)  # representable: cast is exact
    F = None
    if draw(st.booleans()):
        F = draw(hnp.arrays(np.float64, (n_users, n_merchants),
                            elements=st.sampled_from([0.0, 0.0, 0.0, 1.0, -2.0, 5.0])))
    return dict(Ad=Ad, Bd=Bd, w=w, F=F, dtype=dtype, k=draw(st.integers(1, 9)),
                threshold=draw(st.one_of(st.none(), st.just(0.0))))


@settings(max_examples=150)
@given(weighted_int_problems())
def test_weight_applied_to_the_finished_sum(p):
    """score = (sum_t A*B + F) * w with integer sums (exact) and arbitrary weights.

    Rounding may differ from the float64 reference within tolerance, but the semantics that do
    not depend on rounding must hold exactly: a sum that cancels to 0 gives a score of exactly
    0 (so threshold=0 drops it); merchants with the same sum and the same w get the same score,
    so they tie and resolve by index, also at the k-th place.
    """
    dt = p["dtype"]
    Ad, Bd, w, Fd, k, thr = p["Ad"], p["Bd"], p["w"], p["F"], p["k"], p["threshold"]
    A = sp.csr_array(Ad.astype(dt))
    B = sp.csr_array(Bd.astype(dt))
    F = None if Fd is None else sp.csr_array(Fd)
    res = ec.sparse_topk(A, B, k, merchant_weight=w, follows=F, threshold=thr)
    assert res.scores.dtype == dt
    assert_topk_close(res, Ad, Bd, k, w=w, F=Fd, threshold=thr, score_dtype=dt)
    _, cand, _ = reference_scores(Ad, Bd, w=w, F=Fd)
    pre = Ad @ Bd + (0.0 if Fd is None else Fd)  # small integers: exact
    eligible = cand if thr is None else cand & (pre > 0)  # thr == 0: sign of pre * w
    width = min(k, Bd.shape[1])
    for u in range(Ad.shape[0]):
        c = int(res.counts[u])
        got = res.indices[u, :c].astype(np.int64)
        sc = res.scores[u, :c]
        assert np.all(sc[pre[u, got] == 0] == 0), (got, pre[u, got], sc)
        assert np.all(eligible[u, got]), (got, pre[u, got], sc)
        if c < width:
            assert c == int(eligible[u].sum())
        same_key = (pre[u, got][:, None] == pre[u, got][None, :]) & (w[got][:, None] == w[got])
        assert np.all((sc[:, None] == sc[None, :])[same_key]), (got, pre[u, got], w[got], sc)
        if c == width and c:
            last = got[-1]
            tied = eligible[u] & (pre[u] == pre[u, last]) & (w == w[last])
            returned = np.zeros(Bd.shape[1], dtype=bool)
            returned[got] = True
            left_out = np.flatnonzero(tied & ~returned)
            assert np.all(left_out > np.flatnonzero(tied & returned).max()), (got, left_out)
