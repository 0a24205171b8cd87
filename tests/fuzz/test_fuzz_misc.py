"""Fuzz: rerank_exposure, fair_table, InterestModel.fold, item_similarity and the CLI's file
readers (``ecomcore.cli.main``) with hostile inputs and files."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np
import pytest
import scipy.sparse as sp
from _strategies import BAD_K, bad_k_error, expect_error, fuzz, hostile_csr, hostile_file, outcome, small_int_dense
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom
from test_interest import DAY, KINDS, T0, ref_sums

import ecomcore as ec
from ecomcore import cli_batch
from ecomcore.cli import main
from ecomcore.fairness import MAX_K

# ---------------------------------------------------------------------------------------------
# rerank_exposure
# ---------------------------------------------------------------------------------------------


@st.composite
def candidate_lists(draw, n_rows, n_cols, width):
    """A well-formed TopK of candidates (distinct merchants, sorted by score then id)."""
    idx = np.full((n_rows, width), -1, np.int32)
    sc = np.full((n_rows, width), -np.inf)
    cnt = np.zeros(n_rows, np.int32)
    for u in range(n_rows):
        c = draw(st.integers(0, min(width, n_cols)))
        ms = np.array(draw(st.permutations(range(n_cols)))[:c], dtype=np.int64)
        s = np.array(draw(st.lists(st.integers(-3, 5), min_size=c, max_size=c)), dtype=np.float64)
        order = np.lexsort((ms, -s))
        idx[u, :c] = ms[order]
        sc[u, :c] = s[order]
        cnt[u] = c
    return ec.TopK(idx, sc, cnt, n_cols)


def _damaged_topk(draw, t):
    idx, sc, cnt = t.indices.copy(), t.scores.copy(), t.counts.copy()
    n_cols = t.n_cols
    full = np.flatnonzero(cnt > 0)
    damage = draw(
        st.sampled_from(
            [
                "index_high",
                "index_neg",
                "dup",
                "unsorted",
                "nan",
                "count_high",
                "count_neg",
                "object_scores",
                "str_scores",
                "float_indices",
                "n_cols_zero",
                "not_topk",
            ]
        )
    )
    if damage == "not_topk":
        return draw(st.sampled_from([None, (idx, sc, cnt), idx, "topk"])), damage
    if damage in ("index_high", "index_neg", "nan", "unsorted", "dup") and not full.size:
        damage = "count_high"
    r = int(full[0]) if full.size else 0
    if damage == "index_high":
        idx[r, 0] = n_cols + draw(st.sampled_from([0, 5]))
    elif damage == "index_neg":
        idx[r, cnt[r] - 1] = -1 if cnt[r] > 0 else -1
        if cnt[r] == 1:
            idx[r, 0] = -7
    elif damage == "dup":
        if cnt[r] >= 2:
            idx[r, 1] = idx[r, 0]
            sc[r, 1] = sc[r, 0]
        else:
            idx[r, 0] = n_cols
    elif damage == "unsorted":
        if cnt[r] >= 2 and sc[r, 0] != sc[r, 1]:
            sc[r, 0], sc[r, 1] = sc[r, 1], sc[r, 0]
        else:
            sc[r, 0] = np.nan
    elif damage == "nan":
        sc[r, 0] = draw(st.sampled_from([np.nan, np.inf]))
    elif damage == "count_high":
        if cnt.size:
            cnt[0] = idx.shape[1] + 1
        else:
            return ec.TopK(idx, sc, cnt, 0), "n_cols_zero"
    elif damage == "count_neg":
        if cnt.size:
            cnt[0] = -1
        else:
            return ec.TopK(idx, sc, cnt, 0), "n_cols_zero"
    elif damage == "object_scores":
        return ec.TopK(idx, sc.astype(object), cnt, n_cols), damage
    elif damage == "str_scores":
        return ec.TopK(idx, sc.astype(str), cnt, n_cols), damage
    elif damage == "float_indices":
        return ec.TopK(idx.astype(float), sc, cnt, n_cols), damage
    elif damage == "n_cols_zero":
        return ec.TopK(idx, sc, cnt, 0), damage
    return ec.TopK(idx, sc, cnt, n_cols), damage


@fuzz(320)
@given(st.data(), st.integers(0, 6), st.integers(1, 7), st.integers(1, 5))
def test_rerank_exposure(data, n_rows, n_cols, width):
    cand = data.draw(candidate_lists(n_rows, n_cols, width))
    k = data.draw(st.integers(1, width))
    kw = {}
    arg = data.draw(
        st.sampled_from(
            [
                None,
                None,
                "category",
                "candidates",
                "k",
                "target_gini",
                "max_share",
                "protected",
                "min_protected",
                "category_bad",
                "max_per_category",
                "method",
                "seed",
                "n_threads",
                "gini_ok",
                "share_ok",
            ]
        )
    )
    names = ()
    cats = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n_cols, max_size=n_cols)))
    if arg == "category":
        kw = {"category": cats, "max_per_category": data.draw(st.integers(1, 3))}
    elif arg == "candidates":
        bad, _ = _damaged_topk(data.draw, cand)
        cand = bad
        names = ("candidates",)
    elif arg == "k":
        k = data.draw(st.one_of(BAD_K, st.just(width + 1)))
        names = ("k",)
    elif arg == "target_gini":
        kw["target_gini"] = data.draw(st.sampled_from([-0.1, 1.0, 1.5, np.nan, "0.3", True]))
        names = ("target_gini",)
    elif arg == "max_share":
        kw["max_share"] = data.draw(st.sampled_from([0.0, -1.0, 1.5, np.nan, "0.5"]))
        names = ("max_share",)
    elif arg == "protected":
        kw["protected"] = data.draw(st.sampled_from([np.ones(n_cols + 1, bool), np.ones(n_cols, bool), "x"]))
        if np.asarray(kw["protected"]).shape == (n_cols,):
            kw["min_protected"] = data.draw(st.sampled_from([None, -1, k + 1, 1.5, np.arange(k + 1)]))
        names = ("protected", "min_protected")
    elif arg == "min_protected":
        kw["min_protected"] = 1  # without protected
        names = ("protected", "min_protected")
    elif arg == "category_bad":
        kw = {
            "category": data.draw(st.sampled_from([cats[:-1], cats.astype(float) + 0.5, cats[:, None], "abc"])),
            "max_per_category": 1,
        }
        names = ("category",)
    elif arg == "max_per_category":
        kw = {"category": cats, "max_per_category": data.draw(st.sampled_from([0, -1, 1.5, "2", True]))}
        names = ("max_per_category",)
    elif arg == "method":
        kw = {"target_gini": 0.5, "method": data.draw(st.sampled_from(["nope", None, 1, "PENALTY"]))}
        names = ("method",)
    elif arg == "seed":
        kw["seed"] = data.draw(st.sampled_from([-1, 1.5, "0", None]))
        names = ("seed",)
    elif arg == "n_threads":
        kw["n_threads"] = data.draw(st.sampled_from([0, -2, 1.5, "1"]))
        names = ("n_threads",)
    elif arg == "gini_ok":
        kw = {
            "target_gini": data.draw(st.sampled_from([0.0, 0.3, 0.9])),
            "method": data.draw(st.sampled_from(["penalty", "cap"])),
        }
    elif arg == "share_ok":
        kw = {"max_share": data.draw(st.sampled_from([0.2, 0.5, 1.0]))}
    ok, res = outcome(ec.rerank_exposure, cand, k, **kw, names=names)
    if names:
        assert not ok, f"{arg}={kw} k={k} accepted"
        return
    assert ok, res
    top, report = res
    # every row: a sorted subset of the row's candidates, of the right length
    for u in range(n_rows):
        c = int(top.counts[u])
        got = top.indices[u, :c].astype(np.int64)
        pos = {int(m): j for j, m in enumerate(cand.indices[u, : int(cand.counts[u])])}
        assert all(int(m) in pos for m in got), (got, cand.indices[u])
        assert [pos[int(m)] for m in got] == sorted(pos[int(m)] for m in got)
        np.testing.assert_array_equal(top.scores[u, :c], cand.scores[u, [pos[int(m)] for m in got]])
        assert np.all(top.indices[u, c:] == -1) and np.all(np.isneginf(top.scores[u, c:]))
        if arg is None:  # no constraint: the first k candidates
            np.testing.assert_array_equal(got, cand.indices[u, : min(k, int(cand.counts[u]))])
        elif arg == "category":  # greedy walk: skip a candidate whose category is full
            want, used = [], {}
            for m in cand.indices[u, : int(cand.counts[u])]:
                cc = cats[m]
                if used.get(cc, 0) < kw["max_per_category"] and len(want) < k:
                    want.append(int(m))
                    used[cc] = used.get(cc, 0) + 1
            np.testing.assert_array_equal(got, want)
        else:
            assert c == min(k, int(cand.counts[u]))


# ---------------------------------------------------------------------------------------------
# fair_table
# ---------------------------------------------------------------------------------------------


@fuzz(240)
@given(
    st.one_of(st.integers(1, 40), BAD_K),
    st.one_of(st.floats(0.01, 0.99), st.sampled_from([0.0, 1.0, -0.5, np.nan, "0.5", None, True])),
    st.one_of(st.floats(0.01, 0.5), st.sampled_from([0.0, 1.0, np.inf, np.nan, "0.1"])),
    st.booleans(),
)
def test_fair_table(k, p, alpha, adjusted):
    k_ok = isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 40
    p_ok = isinstance(p, float) and 0 < p < 1
    a_ok = isinstance(alpha, float) and 0 < alpha < 1
    ok, res = outcome(ec.fair_table, k, p, alpha, adjusted=adjusted, names=("k", "p", "alpha", "adjusted"))
    if not (k_ok and p_ok and a_ok):
        assert not ok, (k, p, alpha)
        if not k_ok:
            assert isinstance(res, bad_k_error(k)) or "k" in str(res)
        return
    assert ok, res
    plain = np.array([max(0, int(binom.ppf(alpha, i, p))) for i in range(1, k + 1)], dtype=np.int64)
    assert res.shape == (k,) and res.dtype == np.int64
    if not adjusted:
        np.testing.assert_array_equal(res, plain)
    else:
        assert np.all(res <= plain)
    d = np.diff(np.concatenate([[0], res]))
    assert np.all((d >= 0) & (d <= 1))


@contextlib.contextmanager
def _address_space_limit(extra_bytes):
    """Cap this process's address space at its current size plus ``extra_bytes`` (Linux), so that
    a runaway allocation raises MemoryError instead of waking the OOM killer."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = vm + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, vm + extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to cap the address space")
@pytest.mark.parametrize("adjusted", [False, True])
@pytest.mark.parametrize("k", [10**9, 2**62])
def test_fair_table_huge_k_is_refused(k, adjusted):
    # k above ecomcore.fairness.MAX_K is refused before anything O(k) is allocated
    with _address_space_limit(1 << 30):
        err = expect_error(ec.fair_table, k, 0.5, 0.1, adjusted=adjusted, names=("k",), exc=ValueError)
    assert str(MAX_K) in str(err)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to cap the address space")
def test_ranker_huge_column_count_is_refused():
    # issue 10 item 3: refused with a ValueError before any dense per-merchant array exists
    # (policy: ecomcore._sizes.check_dense_columns)
    b = sp.csr_array((np.zeros(0), np.zeros(0, np.int64), np.zeros(4, np.int64)), shape=(3, 2**40))
    a = sp.csr_array((np.zeros(0), np.zeros(0, np.int64), np.zeros(3, np.int64)), shape=(2, 3))
    with _address_space_limit(1 << 30):
        expect_error(ec.Ranker, b, names=("merchant_tags",), exc=ValueError)
        expect_error(ec.sparse_topk, a, b, 5, names=("merchant_tags",), exc=ValueError)


# ---------------------------------------------------------------------------------------------
# InterestModel.fold
# ---------------------------------------------------------------------------------------------

N_USERS, N_ITEMS, N_TAGS = 4, 5, 3


@fuzz(320)
@given(st.data(), st.integers(0, 6))
def test_interest_fold(data, n):
    model = ec.InterestModel(half_life_days=14.0)
    X_dense = np.abs(data.draw(small_int_dense(N_ITEMS, N_TAGS)))
    ev = {
        "user": np.array(data.draw(st.lists(st.integers(0, N_USERS - 1), min_size=n, max_size=n))),
        "item": np.array(data.draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=n, max_size=n))),
        "kind": np.array(data.draw(st.lists(st.sampled_from(KINDS), min_size=n, max_size=n)), dtype=object),
        "time": T0 - np.array(data.draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))) * DAY,
    }
    ev["kind"] = np.array([str(x) for x in ev["kind"]])
    item_tags = sp.csr_array(X_dense)
    damage = data.draw(
        st.sampled_from(
            [
                None,
                None,
                "item_tags",
                "item_tags_neg",
                "user_high",
                "item_high",
                "kind",
                "time_nan",
                "weight_neg",
                "weight_nan",
                "missing",
                "length",
                "not_mapping",
                "user_float",
                "item_tags_shape",
            ]
        )
    )
    names = ()
    if damage == "item_tags":
        item_tags, meaning = data.draw(hostile_csr(N_ITEMS, N_TAGS))
        if isinstance(meaning, str):
            names = ("item_tags",)
        elif (meaning < 0).any():
            names = ("item_tags",)
        else:
            X_dense = meaning
            damage = None
    elif damage == "item_tags_neg":
        item_tags = sp.csr_array(-np.ones((N_ITEMS, N_TAGS)))
        names = ("item_tags",)
    elif damage == "item_tags_shape":
        item_tags = data.draw(
            st.sampled_from(
                [np.ones(N_TAGS), np.ones((N_ITEMS - 1, N_TAGS)), "x", None, np.ones((N_ITEMS, N_TAGS), complex)]
            )
        )
        names = ("item_tags", "item")
        it = np.asarray(item_tags)
        if it.ndim == 2 and it.dtype.kind == "f" and (n == 0 or ev["item"].max() < it.shape[0]):
            damage = None  # fewer items: valid while no event refers to a missing one
            X_dense = np.asarray(item_tags)
    elif n == 0 and damage in ("user_high", "item_high", "kind", "time_nan", "user_float"):
        damage = None
    elif damage == "user_high":
        ev["user"] = ev["user"].copy()
        ev["user"][0] = N_USERS + data.draw(st.sampled_from([0, 2**40]))
        names = ("user",)
    elif damage == "item_high":
        ev["item"] = ev["item"].copy()
        ev["item"][0] = data.draw(st.sampled_from([N_ITEMS, -1]))
        names = ("item",)
    elif damage == "kind":
        ev["kind"] = ev["kind"].astype(object)
        ev["kind"][0] = data.draw(st.sampled_from(["nope", 99, -1, None, 1.5]))
        names = ("kind",)
    elif damage == "time_nan":
        ev["time"] = ev["time"].astype(float)
        ev["time"][0] = np.nan
        names = ("time",)
    elif damage == "user_float":
        ev["user"] = ev["user"] + 0.5
        names = ("user",)
    elif damage in ("weight_neg", "weight_nan"):
        ev["weight"] = np.full(n, -1.0 if damage == "weight_neg" else np.nan)
        if n == 0:
            damage = None
        names = ("weight",)
    elif damage == "missing":
        del ev[data.draw(st.sampled_from(["user", "item", "kind", "time"]))]
        names = ("events", "missing")
    elif damage == "length":
        ev["user"] = np.append(ev["user"], 0)
        names = ("events", "user", "length")
    elif damage == "not_mapping":
        ev = data.draw(st.sampled_from([None, [1, 2], "events", np.arange(3)]))
        names = ("events",)
    state = model.new_state(N_USERS, N_TAGS)
    before = state.decayed_sums(T0).toarray()
    ok, res = outcome(model.fold, ev, item_tags, into=state, names=names)
    if damage is not None:
        assert not ok, f"{damage}: accepted"
        np.testing.assert_array_equal(state.decayed_sums(T0).toarray(), before)
        return
    assert ok, res
    want = ref_sums(ev, X_dense, N_USERS, T0)
    np.testing.assert_allclose(state.decayed_sums(T0).toarray(), want, rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------------------------------------
# item_similarity
# ---------------------------------------------------------------------------------------------


def _ref_similarity(X, top_n, shrink, min_support, count_self):
    """Dense cosine reference: (score matrix, candidate mask); X: users x items, >= 0."""
    norms = np.sqrt((X**2).sum(axis=0))
    W = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    S = W.T @ W
    support = (X > 0).T.astype(float) @ (X > 0).astype(float)
    cand = (support >= 1) & (support >= min_support)
    if shrink > 0:
        S = S * support / (support + shrink)
    return S, cand


@fuzz(240)
@given(st.data(), st.integers(0, 5), st.integers(0, 5))
def test_item_similarity(data, n_u, n_i):
    X_h, X = data.draw(hostile_csr(n_u, n_i))
    arg, value = data.draw(
        st.sampled_from(
            [
                (None, None),
                (None, None),
                ("method", "nope"),
                ("method", None),
                ("top_n", 0),
                ("top_n", 2.0),
                ("top_n", True),
                ("shrink", -1.0),
                ("shrink", np.nan),
                ("min_support", 0),
                ("alpha", -1.0),
                ("K1", np.inf),
                ("B", 1.5),
                ("max_users_per_item", 1),
                ("count_self", 1),
                ("count_self", "yes"),
                ("n_threads", 0),
                ("user_items", "neg"),
            ]
        )
    )
    kw = {
        "top_n": data.draw(st.integers(1, 6)),
        "shrink": data.draw(st.sampled_from([0.0, 0.0, 2.0])),
        "min_support": data.draw(st.sampled_from([1, 1, 2])),
    }
    method = data.draw(st.sampled_from(["cosine", "cosine", "bm25", "swing"]))
    kw["method"] = method
    names = ("user_items",)
    if arg == "user_items":
        X_h = sp.csr_array(-np.ones((max(n_u, 1), max(n_i, 1))))
        X = "error"
    elif arg is not None:
        kw[arg] = value
        names = (arg,)
    ok, S = outcome(ec.item_similarity, X_h, **kw, names=names)
    if arg is not None or isinstance(X, str) or (not isinstance(X, str) and (X < 0).any()):
        assert not ok, f"{arg}={value!r} accepted"
        return
    assert ok, S
    assert S.shape == (n_i, n_i)
    S = sp.csr_array(S)
    assert S.has_canonical_format
    assert np.all(S.diagonal() == 0) and np.all(np.diff(S.indptr) <= kw["top_n"])
    assert np.all(np.isfinite(S.data))
    if method != "cosine":
        return
    ref, cand = _ref_similarity(X, kw["top_n"], kw["shrink"], kw["min_support"], False)
    for i in range(n_i):
        c = np.flatnonzero(cand[i])
        c = c[c != i]
        got = S.indices[S.indptr[i] : S.indptr[i + 1]]
        vals = S.data[S.indptr[i] : S.indptr[i + 1]]
        assert len(got) == min(kw["top_n"], len(c)), (i, got, c)
        assert set(got.tolist()) <= set(c.tolist())
        np.testing.assert_allclose(vals, ref[i, got], rtol=1e-9, atol=1e-12)
        left = np.setdiff1d(c, got)
        if len(left) and len(got):
            assert ref[i, left].max() <= ref[i, got].min() + 1e-9


# ---------------------------------------------------------------------------------------------
# CLI file readers
# ---------------------------------------------------------------------------------------------


def _run_cli(argv):
    """``main(argv)`` with captured stderr: (exit status, stderr).  argparse's exit 2 counts too."""
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:  # usage errors
            rc = e.code
    return rc, err.getvalue()


def _hostile_sparse_npz(draw, path):
    """A scipy-style sparse .npz (or something pretending to be one)."""
    kind = draw(
        st.sampled_from(
            [
                "random",
                "fmt",
                "shape",
                "indptr",
                "indices",
                "object",
                "dense_npz",
                "huge",
                "npy",
                "empty",
                "truncated_good",
            ]
        )
    )
    if kind == "random":
        open(path, "wb").write(b"PK\x03\x04" + draw(st.binary(max_size=200)))
    elif kind == "empty":
        open(path, "wb").close()
    elif kind == "npy":
        np.save(open(path, "wb"), np.ones((2, 2)))
    elif kind == "dense_npz":
        np.savez(path, a=np.ones((2, 2)))
    elif kind == "truncated_good":
        buf = io.BytesIO()
        sp.save_npz(buf, sp.csr_matrix(np.eye(3)))
        raw = buf.getvalue()
        open(path, "wb").write(raw[: draw(st.integers(0, len(raw) - 1))])
    else:
        fmt = draw(st.sampled_from([b"csr", b"csc", b"coo", b"bsr", b"dia", b"xyz", b"lil"]))
        arrays = {
            "format": np.array(fmt),
            "shape": np.array([3, 3]),
            "data": np.ones(2),
            "indices": np.array([0, 1], np.int32),
            "indptr": np.array([0, 1, 2, 2], np.int32),
            "row": np.array([0, 1]),
            "col": np.array([0, 1]),
            "offsets": np.array([0]),
        }
        if kind == "fmt":
            pass
        elif kind == "shape":
            arrays["shape"] = draw(
                st.sampled_from(
                    [np.array([3]), np.array([-1, 3]), np.array([3.5, 3]), np.array(["a", "b"]), np.array([3, 3, 3])]
                )
            )
        elif kind == "indptr":
            arrays["indptr"] = draw(
                st.sampled_from(
                    [np.array([0, 2, 1, 2]), np.array([1, 1, 2, 2]), np.array([0, 1]), np.array([0, 1, 2, 9])]
                )
            )
        elif kind == "indices":
            arrays["indices"] = draw(st.sampled_from([np.array([0, 7]), np.array([-1, 0]), np.array([0.5, 1])]))
            arrays["row"] = arrays["col"] = arrays["indices"]
        elif kind == "object":
            arrays["data"] = np.array([1, None], dtype=object)
        elif kind == "huge":
            arrays["shape"] = np.array([2**40, 3])  # CSR conversion would need 8 TiB for indptr
            # (2**40 columns are read fine; the Ranker's dense per-merchant arrays then cannot be
            # allocated: see test_ranker_huge_column_count_is_refused)
            arrays["format"] = np.array(draw(st.sampled_from([b"coo", b"csc"])))
        np.savez(path, **arrays)


@fuzz(160)
@given(st.data())
def test_cli_file_readers(data):
    with tempfile.TemporaryDirectory() as d:
        p = d
        # a small valid market
        X = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 1, 0], [1, 1, 1], [0, 0, 1]]))  # items x tags
        B = sp.csr_matrix(np.array([[1.0, 0], [0, 2], [1, 1]]))  # tags x merchants
        sp.save_npz(f"{p}/item_tags.npz", X)
        sp.save_npz(f"{p}/b.npz", B)
        with open(f"{p}/events.csv", "w") as f:
            f.write("user,item,kind,time\n0,1,view,1700000000\n1,2,buy,1700000100\n2,0,cart,1700000200\n")
        names = [i.name for i in ec.default_indicators()]
        with open(f"{p}/mevents.csv", "w") as f:
            f.write("merchant,indicator,value,time\n")
            f.write(f"0,{names[0]},1,1700000000\n1,{names[0]},0,1700000100\n")
        cmd = data.draw(
            st.sampled_from(
                [
                    "profiles_events",
                    "profiles_tags",
                    "profiles_state",
                    "trust_events",
                    "trust_state",
                    "rank_profiles",
                    "rank_b",
                    "rank_trust",
                    "rank_banned",
                    "audience_profiles",
                    "audience_trust",
                ]
            )
        )
        bad = f"{p}/bad.npz"
        if cmd.endswith("_events"):
            bad = f"{p}/bad.csv"
            text = data.draw(
                st.sampled_from(
                    [
                        "",
                        "user,item\n",
                        "user,item,kind,time\n0,1,view\n",
                        "user,item,kind,time\n0,99,view,1700000000\n",
                        "user,item,kind,time\nx,1,view,1700000000\n",
                        "user,item,kind,time\n0,1,view,nan\n",
                        "merchant,indicator,value,time\n0,nope,1,1700000000\n",
                        "merchant,indicator,value,time\n-1,x,1,1\n",
                        "merchant,indicator,value,time\n0,0,inf,1700000000\n",
                        "\x00\x01\x02garbage",
                        'a,b,c\n"unclosed,1\n',
                    ]
                )
            ) + data.draw(st.text(max_size=30))
            with open(bad, "w", encoding="utf-8", errors="surrogatepass") as f:
                try:
                    f.write(text)
                except UnicodeEncodeError:
                    f.write("user,item\n")
            if data.draw(st.booleans()):
                with open(bad, "wb") as f:
                    f.write(data.draw(st.binary(max_size=200)))
        elif cmd in ("profiles_tags", "rank_profiles", "rank_b", "audience_profiles"):
            _hostile_sparse_npz(data.draw, bad)
        elif cmd == "rank_banned":
            bad = f"{p}/bad.npy"
            choice = data.draw(st.sampled_from(["ids", "float", "2d", "obj", "bytes", "mask"]))
            if choice == "bytes":
                open(bad, "wb").write(data.draw(st.binary(max_size=100)))
            else:
                np.save(
                    bad,
                    {
                        "ids": np.array([5]),
                        "float": np.array([0.5]),
                        "2d": np.zeros((2, 2), int),
                        "obj": np.array([1, None], dtype=object),
                        "mask": np.zeros(7, bool),
                    }[choice],
                    allow_pickle=True,
                )
        else:  # a saved state / trust file, damaged
            if cmd == "profiles_state":
                good = f"{p}/state.npz"
                assert (
                    _run_cli(
                        [
                            "profiles",
                            "--events",
                            f"{p}/events.csv",
                            "--item-tags",
                            f"{p}/item_tags.npz",
                            "--out",
                            f"{p}/a.npz",
                            "--save-state",
                            good,
                            "--quiet",
                        ]
                    )[0]
                    == 0
                )
                from ecomcore import interest as m

                kind, version = m._FORMAT_KIND, m._FORMAT_VERSION
            elif cmd == "trust_state":
                good = f"{p}/state.npz"
                assert (
                    _run_cli(
                        [
                            "trust",
                            "--events",
                            f"{p}/mevents.csv",
                            "--merchants",
                            "2",
                            "--out",
                            f"{p}/t.npz",
                            "--save-state",
                            good,
                            "--quiet",
                        ]
                    )[0]
                    == 0
                )
                from ecomcore import trust as m

                kind, version = m._FORMAT, m._VERSION
            else:
                good = f"{p}/t.npz"
                assert (
                    _run_cli(["trust", "--events", f"{p}/mevents.csv", "--merchants", "2", "--out", good, "--quiet"])[0]
                    == 0
                )
                kind, version = cli_batch._TRUST_KIND, cli_batch._TRUST_VERSION
            bad, damage = data.draw(hostile_file(d, good, kind, version))
            if damage == "intact":
                return
        if cmd != "profiles_state" and cmd != "trust_state":
            assert (
                _run_cli(
                    [
                        "profiles",
                        "--events",
                        f"{p}/events.csv",
                        "--item-tags",
                        f"{p}/item_tags.npz",
                        "--out",
                        f"{p}/a.npz",
                        "--quiet",
                    ]
                )[0]
                == 0
            )
        argv = {
            "profiles_events": [
                "profiles",
                "--events",
                bad,
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/o.npz",
            ],
            "profiles_tags": ["profiles", "--events", f"{p}/events.csv", "--item-tags", bad, "--out", f"{p}/o.npz"],
            "profiles_state": [
                "profiles",
                "--events",
                f"{p}/events.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/o.npz",
                "--state",
                bad,
            ],
            "trust_events": ["trust", "--events", bad, "--merchants", "2", "--out", f"{p}/o.npz"],
            "trust_state": [
                "trust",
                "--events",
                f"{p}/mevents.csv",
                "--merchants",
                "2",
                "--out",
                f"{p}/o.npz",
                "--state",
                bad,
            ],
            "rank_profiles": ["rank", "--profiles", bad, "--merchant-tags", f"{p}/b.npz", "--out", f"{p}/o.csv"],
            "rank_b": ["rank", "--profiles", f"{p}/a.npz", "--merchant-tags", bad, "--out", f"{p}/o.csv"],
            "rank_trust": [
                "rank",
                "--profiles",
                f"{p}/a.npz",
                "--merchant-tags",
                f"{p}/b.npz",
                "--trust",
                bad,
                "--out",
                f"{p}/o.csv",
            ],
            "rank_banned": [
                "rank",
                "--profiles",
                f"{p}/a.npz",
                "--merchant-tags",
                f"{p}/b.npz",
                "--banned",
                bad,
                "--out",
                f"{p}/o.csv",
            ],
            "audience_profiles": [
                "audience",
                "--profiles",
                bad,
                "--merchant-tags",
                f"{p}/b.npz",
                "--merchants",
                "0",
                "--k",
                "2",
                "--out",
                f"{p}/o.csv",
            ],
            "audience_trust": [
                "audience",
                "--profiles",
                f"{p}/a.npz",
                "--merchant-tags",
                f"{p}/b.npz",
                "--trust",
                bad,
                "--merchants",
                "0",
                "--k",
                "2",
                "--out",
                f"{p}/o.csv",
            ],
        }[cmd]
        from _strategies import CASES, check_cli_outcome

        CASES["calls"] += 1
        rc, err = _run_cli([*argv, "--quiet"])
        # exit 0: a damage that kept the file readable (e.g. a flipped byte in padding)
        check_cli_outcome(rc, err, bad)
