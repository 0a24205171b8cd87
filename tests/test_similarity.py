"""item_similarity (cosine, BM25, Swing) and the co-behaviour helpers against dense references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

import ecomcore as ec
from ecomcore.similarity import item_similarity

# --------------------------------------------------------------------------------------------
# Dense, obviously-right references
# --------------------------------------------------------------------------------------------


def ref_weights(x: np.ndarray, method: str, K1: float = 1.2, B: float = 0.75) -> np.ndarray:
    x = x.astype(np.float64)
    if method == "cosine":
        norm = np.sqrt((x * x).sum(axis=0))
        out = np.zeros_like(x)
        nz = norm > 0
        out[:, nz] = x[:, nz] / norm[nz]
        return out
    n_items = x.shape[1]
    df = (x != 0).sum(axis=1)
    idf = np.log(n_items) - np.log1p(df)
    length = x.sum(axis=0)
    norm = (1 - B) + B * length / length.mean()
    out = np.zeros_like(x)
    for u in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[u, i] != 0:
                out[u, i] = x[u, i] * (K1 + 1) / (K1 * norm[i] + x[u, i]) * idf[u]
    return out


def ref_support(x: np.ndarray) -> np.ndarray:
    b = (x != 0).astype(np.int64)
    return b.T @ b


def ref_swing(x: np.ndarray, alpha: float = 1.0, cap: int = 10**9) -> tuple[np.ndarray, np.ndarray]:
    """Swing scores and supports by a direct double loop over user pairs."""
    b = x != 0
    n_users, n_items = b.shape
    act = b.sum(axis=1)
    w = np.array([1 / np.sqrt(a) if a else 0.0 for a in act])
    s = np.zeros((n_items, n_items))
    sup = np.zeros((n_items, n_items), dtype=np.int64)
    for i in range(n_items):
        users = sorted(np.flatnonzero(b[:, i]).tolist(), key=lambda u: (act[u], u))[:cap]
        for j in range(n_items):
            if j == i:
                continue
            both = [u for u in users if b[u, j]]
            sup[i, j] = len(both)
            for u, v in itertools.combinations(both, 2):
                s[i, j] += w[u] * w[v] / (alpha + np.count_nonzero(b[u] & b[v]))
    return s, sup


def ref_topn(scores: np.ndarray, cand: np.ndarray, top_n: int) -> np.ndarray:
    """Keep each row's best ``top_n`` candidates (descending score, ties lower index)."""
    out = np.zeros_like(scores)
    for i in range(scores.shape[0]):
        js = [j for j in range(scores.shape[1]) if cand[i, j]]
        js.sort(key=lambda j: (-scores[i, j], j))
        for j in js[:top_n]:
            out[i, j] = scores[i, j]
    return out


def ref_similarity(x, method, top_n, shrink=0.0, min_support=1, alpha=1.0, cap=10**9, count_self=False):
    x = np.asarray(x, dtype=np.float64)
    if method == "swing":
        s, sup = ref_swing(x, alpha, cap)
        cand = (s != 0) & (sup >= min_support)
    else:
        w = ref_weights(x, method)
        s = w.T @ w
        sup = ref_support(x)
        cand = sup >= min_support
    if shrink:
        s = s * sup / (sup + shrink)
    if not count_self:
        np.fill_diagonal(cand, False)
    out = ref_topn(s, cand, top_n)
    np.fill_diagonal(out, 0)
    return out, cand


def random_counts(seed: int, n_users: int = 25, n_items: int = 18, density: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < density) * rng.integers(1, 5, (n_users, n_items))
    return x.astype(np.float64)


def stored_pattern(s: sp.csr_array) -> np.ndarray:
    m = np.zeros(s.shape, dtype=bool)
    coo = s.tocoo()
    m[coo.row, coo.col] = True
    return m


# --------------------------------------------------------------------------------------------
# Similarity vs references
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cosine", "bm25", "swing"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("top_n", [1, 3, 100])
def test_matches_reference(method, seed, top_n):
    x = random_counts(seed)
    got = item_similarity(sp.csr_array(x), method=method, top_n=top_n)
    want, cand = ref_similarity(x, method, top_n)
    assert got.shape == (x.shape[1], x.shape[1])
    assert got.has_sorted_indices
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=1e-14)
    # stored pattern = the kept candidates (an exact 0 could be stored, never a non-candidate)
    pat = stored_pattern(got)
    assert not np.any(pat & ~cand)
    assert np.all(np.diff(got.indptr) == np.minimum(cand.sum(axis=1), top_n))
    assert not np.any(got.diagonal())


@pytest.mark.parametrize("method", ["cosine", "bm25", "swing"])
@pytest.mark.parametrize("shrink,min_support", [(0.0, 2), (2.5, 1), (1.0, 3)])
def test_shrink_and_min_support(method, shrink, min_support):
    x = random_counts(7, 30, 15, 0.35)
    got = item_similarity(x, method=method, top_n=4, shrink=shrink, min_support=min_support)
    want, cand = ref_similarity(x, method, 4, shrink=shrink, min_support=min_support)
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=1e-14)
    assert not np.any(stored_pattern(got) & ~cand)


@pytest.mark.parametrize("method", ["cosine", "bm25", "swing"])
def test_symmetric_before_cut(method):
    x = random_counts(3, 40, 20, 0.3)
    s = item_similarity(x, method=method, top_n=1000).toarray()
    np.testing.assert_allclose(s, s.T, rtol=1e-12, atol=1e-15)


def test_swing_alpha_and_cap():
    x = random_counts(11, 30, 12, 0.45)
    for alpha, cap in [(0.0, 100), (5.0, 100), (1.0, 4), (1.0, 2)]:
        got = item_similarity(x, method="swing", top_n=50, alpha=alpha, max_users_per_item=cap)
        want, _ = ref_similarity(x, "swing", 50, alpha=alpha, cap=cap)
        np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=1e-15)


def test_swing_ignores_values():
    x = random_counts(5)
    a = item_similarity(x, method="swing", top_n=5)
    b = item_similarity((x != 0) * 7.0, method="swing", top_n=5)
    np.testing.assert_array_equal(a.toarray(), b.toarray())


@pytest.mark.parametrize("method", ["cosine", "bm25"])
def test_count_self_convention(method):
    x = random_counts(4)
    for top_n in (1, 2, 4):
        got = item_similarity(x, method=method, top_n=top_n, count_self=True)
        want, _ = ref_similarity(x, method, top_n, count_self=True)
        np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=1e-14)
        # shrink/min_support path (other kernel) follows the same convention
        got2 = item_similarity(x, method=method, top_n=top_n, count_self=True, min_support=2)
        want2, _ = ref_similarity(x, method, top_n, count_self=True, min_support=2)
        np.testing.assert_allclose(got2.toarray(), want2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["cosine", "bm25", "swing"])
def test_ties_go_to_lower_index(method):
    # item 0 is held by users 0..5; items 1..6 each by one of them (and by nobody else), plus
    # a second item per user so that Swing has pairs: every neighbour of item 0 ties.
    n_users = 6
    x = np.zeros((n_users, 8))
    x[:, 0] = 1
    x[:, 7] = 1
    for u in range(n_users):
        x[u, 1 + u] = 1
    got = item_similarity(x, method=method, top_n=2)
    want, _ = ref_similarity(x, method, 2)
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=1e-14)
    if method != "swing":
        row = got[[0]].tocoo()
        # item 7 is identical to item 0; items 1..6 tie behind it: the lowest id wins
        assert sorted(row.col.tolist()) == [1, 7]


@pytest.mark.parametrize("method", ["cosine", "bm25", "swing"])
def test_empty_rows_and_columns(method):
    x = random_counts(9, 20, 10)
    x[:, [2, 5]] = 0  # items nobody touched
    x[[0, 3, 7], :] = 0  # users without interactions
    got = item_similarity(x, method=method, top_n=3)
    want, _ = ref_similarity(x, method, 3)
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=1e-14)
    assert got[[2]].nnz == 0 and got[[5]].nnz == 0
    empty = item_similarity(np.zeros((4, 6)), method=method)
    assert empty.shape == (6, 6) and empty.nnz == 0
    none = item_similarity(sp.csr_array((3, 0)), method=method)
    assert none.shape == (0, 0)


@pytest.mark.parametrize("method", ["cosine", "bm25", "swing"])
def test_thread_count_invariance(method):
    x = random_counts(12, 200, 120, 0.08)
    a = item_similarity(x, method=method, top_n=7, n_threads=1)
    b = item_similarity(x, method=method, top_n=7, n_threads=2)
    c = item_similarity(x, method=method, top_n=7, n_threads=3, min_support=1, shrink=0.0)
    for o in (b, c):
        np.testing.assert_array_equal(a.indptr, o.indptr)
        np.testing.assert_array_equal(a.indices, o.indices)
        np.testing.assert_array_equal(a.data, o.data)


def test_dtypes_and_input_forms():
    x = random_counts(1)
    s32 = item_similarity(sp.csr_array(x.astype(np.float32)), top_n=3)
    s64 = item_similarity(x, top_n=3)
    assert s32.dtype == np.float32 and s64.dtype == np.float64
    np.testing.assert_allclose(s32.toarray(), s64.toarray(), rtol=1e-5, atol=1e-6)
    sm = item_similarity(sp.csr_matrix(x.astype(np.int64)), top_n=3)
    np.testing.assert_array_equal(sm.toarray(), s64.toarray())
    coo = item_similarity(sp.coo_array(x), top_n=3)
    np.testing.assert_array_equal(coo.toarray(), s64.toarray())


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        ({"method": "jaccard"}, ValueError, "method"),
        ({"method": None}, ValueError, "method"),
        ({"top_n": 0}, ValueError, "top_n"),
        ({"top_n": 2.5}, TypeError, "top_n"),
        ({"shrink": -1.0}, ValueError, "shrink"),
        ({"shrink": float("nan")}, ValueError, "shrink"),
        ({"min_support": 0}, ValueError, "min_support"),
        ({"alpha": -0.5}, ValueError, "alpha"),
        ({"K1": -1.0}, ValueError, "K1"),
        ({"B": 1.5}, ValueError, "B"),
        ({"max_users_per_item": 1}, ValueError, "max_users_per_item"),
        ({"count_self": 1}, TypeError, "count_self"),
        ({"method": "swing", "count_self": True}, ValueError, "count_self"),
        ({"n_threads": 0}, ValueError, "n_threads"),
    ],
)
def test_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        item_similarity(random_counts(0), **kwargs)


def test_bad_matrices():
    x = random_counts(0)
    neg = x.copy()
    neg[0, 0] = -1
    with pytest.raises(ValueError, match="user_items.*>= 0"):
        item_similarity(neg)
    nan = x.copy()
    nan[1, 1] = np.nan
    with pytest.raises(ValueError, match="user_items"):
        item_similarity(nan)
    with pytest.raises(TypeError, match="user_items"):
        item_similarity("abc")
    with pytest.raises(ValueError, match="user_items"):
        item_similarity(np.ones(5))
    bad = sp.csr_array(x)
    bad.indices[0] = 10_000
    with pytest.raises(ValueError, match="user_items"):
        item_similarity(bad)


@pytest.mark.filterwarnings("ignore:Method expects CSR")
def test_same_as_implicit_item_item():
    implicit_nn = pytest.importorskip("implicit.nearest_neighbours")
    rng = np.random.default_rng(0)
    x = sp.random(120, 60, density=0.1, random_state=rng, format="csr", dtype=np.float32)
    x.data = (x.data * 10 + 1).astype(np.float32)  # continuous values: no ties
    for cls, method in [(implicit_nn.CosineRecommender, "cosine"), (implicit_nn.BM25Recommender, "bm25")]:
        model = cls(K=6, num_threads=1)
        model.fit(sp.csr_matrix(x), show_progress=False)
        ref = sp.csr_array(model.similarity).tolil()
        ref.setdiag(0)
        ref = sp.csr_array(ref)
        ref.eliminate_zeros()
        got = item_similarity(x, method=method, top_n=6, count_self=True)
        assert stored_pattern(got).tolist() == stored_pattern(ref).tolist()
        np.testing.assert_allclose(got.toarray(), ref.toarray(), rtol=2e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Co-behaviour helpers
# --------------------------------------------------------------------------------------------


def _events():
    return {
        "user": np.array([0, 0, 1, 1, 2, 2, 2, 3]),
        "item": np.array([0, 1, 1, 2, 0, 2, 3, 4]),
        "kind": np.array(["view", "buy", "view", "cart", "buy", "view", "view", "fav"]),
        "time": np.array([0.0, 86400, 2 * 86400, 3 * 86400, 4 * 86400, 5 * 86400, 6 * 86400, 6 * 86400]),
    }


def test_item_history_is_decayed_weighted_sum():
    ev = _events()
    wts = {"view": 1.0, "fav": 2.0, "cart": 3.0, "buy": 5.0}
    now = 7 * 86400.0
    a = ec.item_history(ev, n_users=5, n_items=6, event_weights=wts, half_life_days=2.0, now=now)
    want = np.zeros((5, 6))
    for u, i, k, t in zip(ev["user"], ev["item"], ev["kind"], ev["time"]):
        want[u, i] += wts[str(k)] * 2 ** (-(now - t) / (2 * 86400))
    assert a.shape == (5, 6) and a.dtype == np.float32
    np.testing.assert_allclose(a.toarray(), want, rtol=1e-6)
    with pytest.raises(ValueError, match="item"):
        ec.item_history(ev, n_users=5, n_items=3)
    with pytest.raises(ValueError, match="n_items"):
        ec.item_history(ev, n_users=5, n_items=-1)
    with pytest.raises(TypeError, match="n_items"):
        ec.item_history(ev, n_users=5, n_items=6.0)
    with pytest.raises(ValueError, match="user"):
        ec.item_history(ev, n_users=2, n_items=6)


def test_item_ranker_scores_and_trust():
    x = random_counts(2, 30, 12, 0.3)
    s = item_similarity(x, top_n=4)
    item_merchant = np.arange(12) % 4
    trust = np.array([1.0, 0.5, 0.25, 0.8])
    banned = np.array([False, False, False, True])
    r = ec.item_ranker(s, item_merchant, trust=trust, banned=banned)
    top = r.topk(x, k=5, exclude=x)
    w = trust[item_merchant] * ~banned[item_merchant]
    dense = (x @ s.toarray()) * w
    reached = (x != 0).astype(float) @ (s.toarray() != 0).astype(float) > 0
    for u in range(x.shape[0]):
        cand = [j for j in range(12) if reached[u, j] and w[j] > 0 and x[u, j] == 0]
        cand.sort(key=lambda j: (-dense[u, j], j))
        got = top.indices[u, : top.counts[u]].tolist()
        assert got == cand[:5]
        np.testing.assert_allclose(top.scores[u, : top.counts[u]], dense[u, got], rtol=1e-12)
    with pytest.raises(ValueError, match="item_merchant"):
        ec.item_ranker(s, trust=trust)
    with pytest.raises(ValueError, match="trust"):
        ec.item_ranker(s, item_merchant, trust=np.array([1.0, 2.0, 0.5, 0.5]))


def test_merchant_side_dense():
    x = random_counts(6, 20, 10, 0.3)
    s = item_similarity(x, top_n=3)
    im = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    m = np.zeros((10, 3))
    m[np.arange(10), im] = 1
    for sw in (0.0, 0.5):
        got = ec.merchant_side(s, im, self_weight=sw)
        want = (s.toarray() + sw * np.eye(10)) @ m
        np.testing.assert_allclose(got.toarray(), want, rtol=1e-12)
    got = ec.merchant_side(s, im, n_merchants=5)
    assert got.shape == (10, 5)
    r = ec.Ranker(got, trust=np.array([1, 0.5, 0.5, 1, 1.0]), banned=[0])
    top = r.topk(x, k=2)
    assert not np.any(top.indices == 0)
    with pytest.raises(ValueError, match="item_merchant"):
        ec.merchant_side(s, im[:5])
    with pytest.raises(ValueError, match="item_merchant"):
        ec.merchant_side(s, im, n_merchants=2)
    with pytest.raises(ValueError, match="similarity"):
        ec.merchant_side(sp.csr_array(np.ones((3, 4))), [0, 1, 2])
    with pytest.raises(ValueError, match="n_merchants"):
        ec.merchant_side(s, im, n_merchants=-3)
    with pytest.raises(ValueError, match="self_weight"):
        ec.merchant_side(s, im, self_weight=-1.0)
