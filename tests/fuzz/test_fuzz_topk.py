"""Fuzz: sparse_topk, Ranker (construction, topk, iter_topk, topk_one, explain, audience),
merge_topk and concat_topk with hostile inputs, against the dense reference of tests/_reference.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _reference import assert_topk_equal, reference_scores, reference_topk, reference_weights
from _strategies import (
    BAD_K,
    BAD_VALUE_DTYPES,
    HUGE_K,
    OK_VALUE_DTYPES,
    bad_k_error,
    data_as,
    expect_error,
    fuzz,
    hostile_csr,
    outcome,
    small_int_dense,
    with_dtype,
)
from hypothesis import given
from hypothesis import strategies as st

import ecomcore as ec

dims = st.integers(0, 5)


def _topk_eq(res, ref, score_dtype=None):
    assert_topk_equal(res, ref, score_dtype=score_dtype)
    assert res.n_cols == ref.indices.shape[1] or res.n_cols >= ref.indices.shape[1]


@fuzz(480)
@given(st.data(), dims, dims, dims, st.integers(1, 8))
def test_sparse_topk_hostile_csr(data, n_u, n_t, n_m, k):
    side = data.draw(st.sampled_from(["user_tags", "merchant_tags", "follows", "exclude"]))
    shapes = {"user_tags": (n_u, n_t), "merchant_tags": (n_t, n_m), "follows": (n_u, n_m), "exclude": (n_u, n_m)}
    hostile, meaning = data.draw(hostile_csr(*shapes[side], structural=side == "exclude"))
    A = data.draw(small_int_dense(n_u, n_t))
    B = data.draw(small_int_dense(n_t, n_m))
    mats = {"user_tags": sp.csr_array(A), "merchant_tags": sp.csr_array(B), "follows": None, "exclude": None}
    mats[side] = hostile
    ok, res = outcome(
        ec.sparse_topk,
        mats["user_tags"],
        mats["merchant_tags"],
        k,
        follows=mats["follows"],
        exclude=mats["exclude"],
        names=(side,),
    )
    if isinstance(meaning, str):
        assert not ok, f"{side}: invalid CSR accepted"
        assert isinstance(res, ValueError), res
        return
    assert ok, res
    dense = {"user_tags": A, "merchant_tags": B, "follows": None, "exclude": None}
    dense[side] = meaning
    ref = reference_topk(dense["user_tags"], dense["merchant_tags"], k, F=dense["follows"], E=dense["exclude"])
    assert_topk_equal(res, ref, score_dtype=np.float64)


@fuzz(240)
@given(
    st.data(),
    dims,
    dims,
    dims,
    st.integers(1, 6),
    st.sampled_from(OK_VALUE_DTYPES + BAD_VALUE_DTYPES),
    st.sampled_from(["user_tags", "merchant_tags"]),
)
def test_sparse_topk_value_dtypes(data, n_u, n_t, n_m, k, dtype, side):
    A = data.draw(small_int_dense(n_u, n_t))
    B = data.draw(small_int_dense(n_t, n_m))
    native = np.dtype(dtype).kind in "biu" or np.dtype(dtype) in (np.float32, np.float64)
    form = data.draw(st.sampled_from(["csr", "dense", "coo", "csc"] if native else ["csr", "dense"]))
    mats = {"user_tags": A, "merchant_tags": B}
    if form == "dense":
        m = mats[side].astype(dtype) if np.dtype(dtype).kind != "u" else np.abs(mats[side]).astype(dtype)
    else:
        m = with_dtype(sp.csr_array(mats[side]), dtype)  # raw parts: scipy may not support the dtype
        if form == "coo":
            m = m.tocoo()
        elif form == "csc":
            m = m.tocsc()
    args = {"user_tags": sp.csr_array(A), "merchant_tags": sp.csr_array(B)}
    args[side] = m
    ok, res = outcome(ec.sparse_topk, args["user_tags"], args["merchant_tags"], k, names=(side,))
    if np.dtype(dtype) == object or np.dtype(dtype).kind in "cU":
        assert not ok and isinstance(res, TypeError), res
        return
    assert ok, res
    dense = {"user_tags": A, "merchant_tags": B}
    dense[side] = data_as(mats[side], dtype)
    ref = reference_topk(dense["user_tags"], dense["merchant_tags"], k)
    assert_topk_equal(res, ref)


@fuzz(160)
@given(st.data(), dims, dims, dims, st.one_of(BAD_K, HUGE_K))
def test_sparse_topk_k(data, n_u, n_t, n_m, k):
    A = data.draw(small_int_dense(n_u, n_t))
    B = data.draw(small_int_dense(n_t, n_m))
    ok, res = outcome(ec.sparse_topk, sp.csr_array(A), sp.csr_array(B), k, names=("k",))
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and int(k) >= 1:
        assert ok, res
        assert_topk_equal(res, reference_topk(A, B, min(int(k), 10**6)))
    else:
        assert not ok and isinstance(res, bad_k_error(k)), res


@fuzz(160)
@given(st.data(), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
def test_sparse_topk_other_arguments(data, n_u, n_t, n_m):
    A = sp.csr_array(data.draw(small_int_dense(n_u, n_t)))
    B = sp.csr_array(data.draw(small_int_dense(n_t, n_m)))
    which, value = data.draw(
        st.sampled_from(
            [
                ("merchant_weight", np.full(n_m, np.nan)),
                ("merchant_weight", -np.ones(n_m)),
                ("merchant_weight", np.ones(n_m + 1)),
                ("merchant_weight", np.ones((n_m, 1))),
                ("merchant_weight", np.ones(n_m, complex)),
                ("merchant_weight", "abc"),
                ("merchant_weight", sp.csr_array(np.ones((1, n_m)))),
                ("merchant_weight", np.array([None] * n_m)),
                ("follow_weight", np.nan),
                ("follow_weight", np.inf),
                ("follow_weight", "1"),
                ("follow_weight", None),
                ("follow_weight", 1j),
                ("threshold", np.nan),
                ("threshold", "0"),
                ("threshold", [0.0]),
                ("n_threads", 0),
                ("n_threads", -1),
                ("n_threads", 1.5),
                ("n_threads", True),
                ("n_threads", "2"),
                ("follows", np.ones((n_u + 1, n_m))),
                ("follows", np.ones(n_m)),
                ("exclude", np.ones((n_u, n_m + 1))),
                ("follows", "x"),
                ("exclude", object()),
                ("user_tags", np.ones((n_u, n_t, 1))),
                ("user_tags", None),
                ("user_tags", "abc"),
                ("merchant_tags", np.ones(n_t)),
                ("merchant_tags", [[1, "a"]]),
                ("user_tags", np.ones((n_u, n_t + 1))),
                ("merchant_tags", np.ones((n_t + 1, n_m))),
            ]
        )
    )
    kw = {"user_tags": A, "merchant_tags": B, "k": 3, which: value}
    # a shape mismatch between A and B may be blamed on either
    names = ("user_tags", "merchant_tags") if which in ("user_tags", "merchant_tags") else (which,)
    expect_error(ec.sparse_topk, names=names, **kw)


def _finite_boost(boost, n_m):
    b = np.asarray(boost)
    return b.dtype.kind == "f" and b.shape == (n_m,) and bool(np.isfinite(b).all()) and bool((b >= 0).all())


def _ranker_args(data, n_m):
    trust = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=n_m, max_size=n_m)))
    boost = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.0]), min_size=n_m, max_size=n_m)))
    banned = np.array(data.draw(st.lists(st.booleans(), min_size=n_m, max_size=n_m)), dtype=bool)
    beta = data.draw(st.sampled_from([0.0, 1.0, 2.0]))
    min_trust = data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    return dict(trust=trust, boost=boost, banned=banned, beta=beta, min_trust=min_trust)


@fuzz(240)
@given(st.data(), dims, st.integers(1, 5), dims)
def test_ranker_construction_hostile(data, n_t, n_m, n_u):
    B = data.draw(small_int_dense(n_t, n_m))
    kw = _ranker_args(data, n_m)
    bad = data.draw(
        st.sampled_from([None, "trust", "boost", "banned", "beta", "min_trust", "follow_weight", "merchant_tags"])
    )
    mt = sp.csr_array(B)
    meaning = B
    names = ()
    if bad == "merchant_tags":
        mt, meaning = data.draw(hostile_csr(n_t, n_m))
        names = ("merchant_tags",)
    elif bad is not None:
        kw[bad] = data.draw(
            st.sampled_from(
                {
                    "trust": [
                        np.full(n_m, 1.5),
                        -np.ones(n_m),
                        np.full(n_m, np.nan),
                        np.ones(n_m + 1),
                        "x",
                        np.ones(n_m, complex),
                        np.ones((n_m, 2)),
                    ],
                    "boost": [
                        -np.ones(n_m),
                        np.full(n_m, np.inf),
                        np.ones(n_m + 2),
                        np.array([None] * n_m),
                        np.ones(n_m) * 1e308,
                    ],
                    "banned": [
                        np.zeros(n_m + 1, bool),
                        np.array([n_m]),
                        np.array([-1]),
                        np.array([0.5]),
                        np.array(["a"]),
                        sp.csr_array(np.ones((1, max(n_m, 1)))),
                        np.zeros((n_m, 1), bool),
                    ],
                    "beta": [-1.0, np.nan, np.inf, "1", True, None],
                    "min_trust": [-0.1, 1.5, np.nan, "0", None],
                    "follow_weight": [np.nan, np.inf, "1", None, True, 1j],
                }[bad]
            )
        )
        names = (bad,)
        if bad == "boost" and _finite_boost(kw["boost"], n_m):
            kw["beta"] = 0.0  # 1e308 boost is valid on its own; make the product finite and the test exact
            kw["trust"] = np.ones(n_m)
    ok, r = outcome(ec.Ranker, mt, **kw, names=names)
    if (
        bad is None
        or (bad == "merchant_tags" and not isinstance(meaning, str))
        or (bad == "boost" and _finite_boost(kw["boost"], n_m))
    ):
        if bad == "boost" and n_m and np.asarray(kw["boost"]).max() > 1e300:
            return  # accepted (the product is finite); scores would overflow the guard, nothing exact to compare
        assert ok, r
        A = data.draw(small_int_dense(n_u, n_t))
        k = data.draw(st.integers(1, 6))
        w = reference_weights(n_m, **kw)
        if not ok:
            return
        ok2, res = outcome(r.topk, sp.csr_array(A), k)
        assert ok2, res
        assert_topk_equal(res, reference_topk(A, meaning, k, w=w))
        np.testing.assert_array_equal(r.merchant_weight, w)
    else:
        assert not ok, f"{bad}: accepted"


@fuzz(240)
@given(st.data(), st.integers(1, 5), st.integers(1, 6), dims)
def test_ranker_topk_iter_topk(data, n_t, n_m, n_u):
    B = data.draw(small_int_dense(n_t, n_m))
    r = ec.Ranker(sp.csr_array(B), follow_weight=data.draw(st.sampled_from([0.0, 1.0, -2.0])))
    A_h, A = data.draw(hostile_csr(n_u, n_t))
    k = data.draw(st.one_of(st.integers(1, 8), BAD_K, HUGE_K))
    chunk = data.draw(st.one_of(st.integers(1, 4), st.sampled_from([0, -3, 2.0, True, 2**40])))
    method = data.draw(st.sampled_from(["topk", "iter_topk"]))
    if method == "topk":
        ok, res = outcome(r.topk, A_h, k, names=("user_tags", "k"))
    else:
        ok, res = outcome(
            lambda: ec.concat_topk([b for _, b in r.iter_topk(A_h, k, chunk_rows=chunk)]),
            names=("user_tags", "k", "chunk_rows", "blocks"),
        )
    k_ok = isinstance(k, (int, np.integer)) and not isinstance(k, bool) and int(k) >= 1
    c_ok = method == "topk" or (isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1)
    if not k_ok or not c_ok or isinstance(A, str):
        assert not ok, "bad input accepted"
        return
    if method == "iter_topk" and n_u == 0:
        assert not ok  # concat_topk of no blocks: nothing to stack
        return
    assert ok, res
    ref = reference_topk(A, B, min(int(k), 10**6), follow_weight=r.follow_weight)
    assert_topk_equal(res, ref)


@fuzz(240)
@given(st.data(), st.integers(1, 5), st.integers(1, 6))
def test_ranker_topk_one_and_explain(data, n_t, n_m):
    B = data.draw(small_int_dense(n_t, n_m))
    r = ec.Ranker(sp.csr_array(B), follow_weight=2.0)
    n_ids = data.draw(st.integers(0, n_t))
    ids = np.array(data.draw(st.permutations(range(n_t)))[:n_ids], dtype=np.int64)
    wts = np.array(data.draw(st.lists(st.integers(-3, 3), min_size=n_ids, max_size=n_ids)), dtype=np.float64)
    n_f = data.draw(st.integers(0, n_m))
    fids = np.array(data.draw(st.permutations(range(n_m)))[:n_f], dtype=np.int64)
    fw = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n_f, max_size=n_f)), dtype=np.float64)
    k = data.draw(st.integers(1, 8))
    damage = data.draw(
        st.sampled_from(
            [
                None,
                None,
                "dup_id",
                "id_high",
                "id_neg",
                "id_float",
                "id_2d",
                "id_str",
                "w_len",
                "w_nan",
                "w_str",
                "w_complex",
                "f_high",
                "fw_alone",
                "fw_len",
                "k",
                "ex_high",
                "ids_object",
                "w_sparse",
            ]
        )
    )
    names = ()
    kw = {"follow_ids": fids, "follow_weights": fw}
    args = [ids, wts]
    if damage == "dup_id" and n_ids:
        args = [np.append(ids, ids[0]), np.append(wts, 1.0)]
        names = ("tag_ids",)
    elif damage == "id_high":
        args = [np.append(ids, n_t), np.append(wts, 1.0)]
        names = ("tag_ids",)
    elif damage == "id_neg":
        args = [np.append(ids, -1), np.append(wts, 1.0)]
        names = ("tag_ids",)
    elif damage == "id_float":
        args = [np.append(ids.astype(float), 0.5), np.append(wts, 1.0)]
        names = ("tag_ids",)
    elif damage == "id_2d":
        args = [ids.reshape(1, -1, 1), wts]
        names = ("tag_ids",)
    elif damage == "id_str" and n_ids:  # an empty array of any dtype is no ids at all
        args = [ids.astype(str), wts]
        names = ("tag_ids",)
    elif damage == "ids_object":
        args = [np.array(list(ids) + [None], dtype=object), np.append(wts, 1.0)]
        names = ("tag_ids",)
    elif damage == "w_len":
        args = [ids, np.append(wts, 1.0)]
        names = ("tag_weights",)
    elif damage == "w_nan" and n_ids:
        args = [ids, np.where(np.arange(n_ids) == 0, np.nan, wts)]
        names = ("tag_weights",)
    elif damage == "w_str":
        args = [ids, wts.astype(str)]
        names = ("tag_weights",)
    elif damage == "w_complex" and n_ids:
        args = [ids, wts.astype(complex)]
        names = ("tag_weights",)
    elif damage == "w_sparse":
        args = [ids, sp.csr_array(wts.reshape(1, -1))]
        names = ("tag_weights",)
    elif damage == "f_high":
        kw["follow_ids"] = np.append(fids, n_m)
        kw["follow_weights"] = np.append(fw, 1.0)
        names = ("follow_ids",)
    elif damage == "fw_alone":
        kw = {"follow_weights": fw}
        names = ("follow_weights",)
    elif damage == "fw_len":
        kw["follow_weights"] = np.append(fw, 1.0)
        names = ("follow_weights",)
    elif damage == "k":
        k = data.draw(BAD_K)
        names = ("k",)
    elif damage == "ex_high":
        kw["exclude_ids"] = np.array([n_m])
        names = ("exclude_ids",)
    else:
        damage = None
    mids = np.arange(n_m)
    ok, res = outcome(r.topk_one, *args, k, **kw, names=names)
    if damage is not None:
        assert not ok, f"{damage}: accepted"
    else:
        assert ok, res
        A = np.zeros((1, n_t))
        A[0, ids] = wts
        F = np.zeros((1, n_m))
        F[0, fids] = fw
        ref = reference_topk(A, B, k, F=F, follow_weight=2.0)
        assert_topk_equal(res, ref)
    if damage == "k" or damage == "ex_high":
        damage = None
        names = ()
    if damage is None and data.draw(st.booleans()):
        mids = data.draw(
            st.sampled_from([np.array([n_m]), np.array([-1]), np.array([0.5]), np.array(["0"]), np.array([[0]])])
        )
        expect_error(
            r.explain, *args, mids, **{k2: v for k2, v in kw.items() if k2 != "exclude_ids"}, names=("merchant_ids",)
        )
        return
    ok, ex = outcome(r.explain, *args, mids, **{k2: v for k2, v in kw.items() if k2 != "exclude_ids"}, names=names)
    if damage is not None:
        assert not ok, f"{damage}: accepted by explain"
        return
    assert ok, ex
    A = np.zeros((1, n_t))
    A[0, ids] = wts
    F = np.zeros((1, n_m))
    F[0, fids] = fw
    score, cand, _ = reference_scores(A, B, F=F, follow_weight=2.0)
    np.testing.assert_array_equal(ex["score"], score[0])
    np.testing.assert_array_equal(ex["candidate"], cand[0])
    np.testing.assert_array_equal(ex["interest"], (A @ B)[0])
    np.testing.assert_array_equal(ex["follow"], 2.0 * F[0])


def _reference_audience(A, B, mids, k):
    score, cand, _ = reference_scores(A, B)
    n_u = A.shape[0]
    width = min(k, n_u)
    idx = np.full((len(mids), width), -1)
    sc = np.full((len(mids), width), -np.inf)
    cnt = np.zeros(len(mids), int)
    for i, m in enumerate(mids):
        users = np.flatnonzero(cand[:, m])
        order = np.lexsort((users, -score[users, m]))
        top = users[order][:width]
        idx[i, : len(top)] = top
        sc[i, : len(top)] = score[top, m]
        cnt[i] = len(top)
    return idx, sc, cnt


@fuzz(160)
@given(st.data(), st.integers(1, 4), st.integers(1, 5), st.integers(0, 5))
def test_ranker_audience(data, n_t, n_m, n_u):
    B = data.draw(small_int_dense(n_t, n_m))
    r = ec.Ranker(sp.csr_array(B))
    A_h, A = data.draw(hostile_csr(n_u, n_t))
    mids = np.array(data.draw(st.permutations(range(n_m)))[: data.draw(st.integers(0, n_m))], dtype=np.int64)
    k = data.draw(st.integers(1, 6))
    damage = data.draw(
        st.sampled_from([None, None, "mid_high", "mid_dup", "mid_float", "k", "opted", "max_per_user", "n_threads"])
    )
    kw = {}
    names = ("user_tags",)
    if damage == "mid_high":
        mids = np.append(mids, n_m)
        names = ("merchant_ids",)
    elif damage == "mid_dup" and len(mids):
        mids = np.append(mids, mids[0])
        names = ("merchant_ids",)
    elif damage == "mid_float":
        mids = np.append(mids.astype(float), 0.5)
        names = ("merchant_ids",)
    elif damage == "k":
        k = data.draw(BAD_K)
        names = ("k",)
    elif damage == "opted":
        kw["opted_out"] = data.draw(st.sampled_from([np.array([n_u]), np.zeros(n_u + 1, bool), np.array([-1])]))
        names = ("opted_out",)
    elif damage == "max_per_user":
        kw["max_per_user"] = data.draw(st.sampled_from([0, -1, 1.5, "2", True]))
        names = ("max_per_user",)
    elif damage == "n_threads":
        kw["n_threads"] = data.draw(st.sampled_from([0, -1, 1.5, "2", True]))
        names = ("n_threads",)
    else:
        damage = None
    ok, res = outcome(r.audience, A_h, mids, k, **kw, names=names + ("user_tags",))
    if isinstance(A, str) or damage is not None:
        assert not ok, f"{damage}: accepted"
        return
    assert ok, res
    idx, sc, cnt = _reference_audience(A, B, mids, k)
    np.testing.assert_array_equal(res.counts, cnt)
    np.testing.assert_array_equal(res.indices, idx)
    np.testing.assert_array_equal(res.scores, sc)


@st.composite
def score_table(draw, n_rows, n_cols):
    """A dense score matrix with -inf for non-candidates and distinct-enough small integers."""
    vals = draw(
        st.lists(
            st.sampled_from([-np.inf, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]),
            min_size=n_rows * n_cols,
            max_size=n_rows * n_cols,
        )
    )
    return np.array(vals, dtype=np.float64).reshape(n_rows, n_cols)


def _topk_of(S, cols, k, n_cols):
    """TopK over the columns ``cols`` of the dense score table S (reference)."""
    n_rows = S.shape[0]
    width = min(k, n_cols)
    idx = np.full((n_rows, width), -1, dtype=np.int32)
    sc = np.full((n_rows, width), -np.inf)
    cnt = np.zeros(n_rows, np.int32)
    for u in range(n_rows):
        c = np.array([m for m in cols if np.isfinite(S[u, m])], dtype=np.int64)
        order = np.lexsort((c, -S[u, c])) if len(c) else np.zeros(0, int)
        top = c[order][:width]
        idx[u, : len(top)] = top
        sc[u, : len(top)] = S[u, top]
        cnt[u] = len(top)
    return ec.TopK(idx, sc, cnt, n_cols)


@fuzz(240)
@given(st.data(), st.integers(0, 4), st.integers(1, 8), st.integers(1, 4))
def test_merge_topk_and_concat(data, n_rows, n_cols, n_parts):
    S = data.draw(score_table(n_rows, n_cols))
    k = data.draw(st.integers(1, 9))
    owner = np.array(data.draw(st.lists(st.integers(0, n_parts - 1), min_size=n_cols, max_size=n_cols)))
    parts = [_topk_of(S, np.flatnonzero(owner == p), n_cols, n_cols) for p in range(n_parts)]
    damage = data.draw(
        st.sampled_from(
            [None, None, "k", "overlap", "rows", "not_topk", "empty", "single", "n_cols_small", "n_cols_bad", "narrow"]
        )
    )
    kw = {}
    names = ()
    k_arg = k
    if damage == "k":
        k_arg = data.draw(BAD_K)
        names = ("k",)
    elif damage == "overlap" and n_rows and any(p.counts.max() > 0 for p in parts):
        p = next(p for p in parts if p.counts.max() > 0)
        parts.append(p)
        names = ("parts",)
    elif damage == "rows":
        parts.append(
            ec.TopK(
                np.full((n_rows + 1, 1), -1, np.int32),
                np.full((n_rows + 1, 1), -np.inf),
                np.zeros(n_rows + 1, np.int32),
                n_cols,
            )
        )
        names = ("parts",)
    elif damage == "not_topk":
        parts.append(data.draw(st.sampled_from([None, np.zeros((n_rows, 1)), "topk", (1, 2)])))
        names = ("parts",)
    elif damage == "empty":
        parts = []
        names = ("parts",)
    elif damage == "single":
        parts = parts[0]
        names = ("parts",)
    elif damage == "n_cols_small" and n_rows and S.size and np.isfinite(S).any():
        kw["n_cols"] = int(max(int(p.indices.max()) for p in parts))
        names = ("n_cols",)
        if kw["n_cols"] < 0:
            damage = None
            kw = {}
    elif damage == "n_cols_bad":
        kw["n_cols"] = data.draw(st.sampled_from([0, -1, 2.0, "5", True]))
        names = ("n_cols",)
    elif damage == "narrow" and n_rows and n_cols >= 2:
        narrow = _topk_of(S, np.arange(n_cols), 1, n_cols)
        if narrow.counts.max() >= 1 and k > 1:
            parts = [narrow]
            names = ("parts",)
        else:
            damage = None
    else:
        damage = None
    if damage in ("n_cols_small",) and not kw:
        damage = None
    ok, res = outcome(ec.merge_topk, parts, k_arg, **kw, names=names)
    if damage is not None:
        assert not ok, f"{damage}: accepted"
    else:
        assert ok, res
        ref = _topk_of(S, np.arange(n_cols), k, n_cols)
        np.testing.assert_array_equal(res.counts, ref.counts)
        np.testing.assert_array_equal(res.indices, ref.indices)
        np.testing.assert_array_equal(res.scores, ref.scores)
    # concat: row blocks of the full result stack back to it
    full = _topk_of(S, np.arange(n_cols), k, n_cols)
    cuts = sorted(data.draw(st.lists(st.integers(0, n_rows), max_size=3)))
    bounds = [0, *cuts, n_rows]
    blocks = [
        ec.TopK(full.indices[a:b], full.scores[a:b], full.counts[a:b], n_cols) for a, b in zip(bounds, bounds[1:])
    ]
    cdamage = data.draw(st.sampled_from([None, None, "n_cols", "empty", "not_topk"]))
    if cdamage == "n_cols":
        blocks.append(ec.TopK(full.indices, full.scores, full.counts, n_cols + 1))
    elif cdamage == "empty":
        blocks = []
    elif cdamage == "not_topk":
        blocks.append("x")
    ok, res = outcome(ec.concat_topk, blocks, names=("blocks",))
    if cdamage is not None:
        assert not ok
        return
    assert ok, res
    np.testing.assert_array_equal(res.indices, full.indices)
    np.testing.assert_array_equal(res.scores, full.scores)
    np.testing.assert_array_equal(res.counts, full.counts)


def _raw_csc(m_csr_parts, shape):
    """A CSC array whose parts are exactly the given CSR parts of the transposed shape."""
    ip, ind, dat = m_csr_parts
    m = sp.csc_array((np.zeros(0), np.zeros(0, np.int32), np.zeros(shape[1] + 1, np.int32)), shape=shape)
    m.indptr, m.indices, m.data = ip, ind, dat
    return m


@fuzz(320)
@given(st.data(), dims, dims, dims, st.integers(1, 6))
def test_sparse_topk_hostile_other_formats(data, n_u, n_t, n_m, k):
    """CSC / COO / BSR inputs with bad index arrays: scipy's converters do not check them."""
    fmt = data.draw(st.sampled_from(["csc", "coo", "bsr"]))
    B = data.draw(small_int_dense(n_t, n_m))
    if fmt == "csc":
        h, meaning_t = data.draw(hostile_csr(n_t, n_u))  # CSC of (n_u, n_t) = CSR parts of (n_t, n_u)
        A_h = _raw_csc((h.indptr, h.indices, h.data), (n_u, n_t))
        meaning = meaning_t if isinstance(meaning_t, str) else meaning_t.T
    elif fmt == "coo":
        A = data.draw(small_int_dense(n_u, n_t))
        A_h = sp.coo_array(A)
        meaning = A
        damage = data.draw(st.sampled_from([None, "row", "col", "neg", "len"]))
        if damage and A_h.nnz:
            row, col = np.array(A_h.row, dtype=np.int64), np.array(A_h.col, dtype=np.int64)
            if damage == "row":
                row[0] = n_u + data.draw(st.sampled_from([0, 2**31]))
            elif damage == "col":
                col[-1] = n_t
            elif damage == "neg":
                row[0] = -1
            else:
                row = row[:-1]
            A_h.coords = (row, col)
            meaning = "error"
    else:
        A = data.draw(small_int_dense(n_u, n_t))
        A_h = sp.bsr_array(A, blocksize=(1, 1))
        meaning = A
        if data.draw(st.booleans()) and A_h.indices.size:
            ind = np.array(A_h.indices, dtype=np.int64)
            ind[0] = data.draw(st.sampled_from([n_t, -1, 2**31 - 1]))
            A_h.indices = ind
            meaning = "error"
    ok, res = outcome(ec.sparse_topk, A_h, sp.csr_array(B), k, names=("user_tags",))
    if isinstance(meaning, str):
        assert not ok and isinstance(res, (ValueError, TypeError)), res
        return
    assert ok, res
    assert_topk_equal(res, reference_topk(meaning, B, k))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("indptr", [[0, 1, 0], [0, -1, 0], [0, 2**31 - 1, 0]])
def test_decreasing_indptr_without_entries_is_refused(fmt, indptr):
    """scipy's check_format skips the monotonicity check when nnz == 0; its converters then index
    the empty arrays (a segfault found by the long fuzz run)."""
    cls = sp.csr_array if fmt == "csr" else sp.csc_array
    m = cls((np.zeros(0), np.zeros(0, np.int32), np.zeros(3, np.int32)), shape=(2, 2))
    m.indptr = np.array(indptr, dtype=np.int32)
    expect_error(ec.sparse_topk, m, sp.csr_array(np.ones((2, 2))), 2, names=("user_tags",), exc=ValueError)
