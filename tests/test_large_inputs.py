"""Large inputs (issue 10, item 3): int64 end to end, size arithmetic past 2**31, the dense-column
limit, the fair_table bound and the thread-count bound.

* int64 index arrays and int64 ids are accepted by every public entry point and give exactly the
  result of the same input in int32 (and, for the ranking kernels, of the dense reference).
* The int64 instantiations of the kernels run on small inputs by lowering
  ``ecomcore._validation.INT64_FROM`` (the size from which index arrays become int64).
* Size computations are checked on synthetic sizes far beyond 2**31 without allocating them:
  the scratch formula of ``ecomcore._sizes`` (against the arrays the code really allocates), a
  pointer array that claims more than 2**31 entries, merchant ids beyond 2**31 in merged shards.
* The dense-column policy is checked against a mocked memory limit, so the outcome does not
  depend on the machine.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import int_problem
from _reference import assert_topk_equal, reference_topk, reference_weights

import ecomcore as ec
from ecomcore import _sizes, _validation
from ecomcore import audience as audience_mod
from ecomcore import ranking as ranking_mod
from ecomcore.fairness import MAX_K, fair_fail_probability, fair_table
from ecomcore.topk import TopK, concat_topk, merge_topk
from ecomcore_ext import _topk

DAY = 86400.0
T0 = 1.7e9


def as64(m):
    """The same matrix as a csr_array with int64 indptr and indices."""
    m = sp.csr_array(m)
    return sp.csr_array((m.data, m.indices.astype(np.int64), m.indptr.astype(np.int64)), shape=m.shape)


def as32(m):
    m = sp.csr_array(m)
    return sp.csr_array((m.data, m.indices.astype(np.int32), m.indptr.astype(np.int32)), shape=m.shape)


def same_topk(a: TopK, b: TopK) -> None:
    assert a.n_cols == b.n_cols
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.fixture(scope="module")
def problem():
    A, B = int_problem(3, n_users=40, n_tags=10, n_merchants=25, density=0.4)
    rng = np.random.default_rng(7)
    F = sp.csr_array((rng.random((40, 25)) < 0.1) * rng.choice([1.0, 2.0], (40, 25)))
    E = sp.csr_array((rng.random((40, 25)) < 0.1).astype(np.float64))
    trust = rng.choice([0.0, 0.25, 0.5, 1.0], 25)
    return A, B, F, E, trust


@pytest.fixture
def force_int64(monkeypatch):
    """Make every validated index array int64, so the kernels run their int64 instantiation."""
    monkeypatch.setattr(_validation, "INT64_FROM", 1)
    calls = []
    real = _topk.fused_topk

    def spy(*args):
        calls.append(args[0].dtype)
        return real(*args)

    monkeypatch.setattr(_topk, "fused_topk", spy)
    return calls


# ---------------------------------------------------------------------------------------------
# 1. int64 index arrays and ids at every public entry point
# ---------------------------------------------------------------------------------------------


def _ranking_calls(A, B, F, E, trust, conv, ids):
    """Every ranking entry point on (converted) inputs; ids given as ``ids``-typed arrays."""
    out = {}
    w = reference_weights(B.shape[1], trust=trust, banned=np.array([1, 2]))
    out["sparse_topk"] = ec.sparse_topk(conv(A), conv(B), 6, merchant_weight=w, follows=conv(F), exclude=conv(E))
    r = ec.Ranker(conv(B), trust=trust, banned=np.array([1, 2], dtype=ids))
    out["topk"] = r.topk(conv(A), 6, follows=conv(F), exclude=conv(E))
    out["iter_topk"] = concat_topk([b for _, b in r.iter_topk(conv(A), 6, chunk_rows=7, follows=conv(F))])
    out["topk_one"] = r.topk_one(
        np.array([5, 1, 3], dtype=ids), [1.0, 2.0, -1.0], 6,
        follow_ids=np.array([4, 0], dtype=ids), exclude_ids=np.array([0, 7], dtype=ids),
    )  # fmt: skip
    ex = r.explain(np.array([1, 3], dtype=ids), [1.0, 2.0], np.array([0, 4, 24], dtype=ids))
    out["explain"] = TopK(ex["merchant"][None, :], ex["score"][None, :], np.array([3]), 25)
    out["with_trust"] = r.with_trust(trust[::-1].copy(), banned=np.array([3], dtype=ids)).topk(conv(A), 4)
    out["audience"] = r.audience(
        conv(A), np.array([0, 3, 9], dtype=ids), 5, follows=conv(F), opted_out=np.array([1, 2], dtype=ids),
        max_per_user=1,
    )  # fmt: skip
    out["audience_index"] = r.audience(ec.AudienceIndex(conv(A)), np.array([4, 5], dtype=ids), 5)
    items = sp.csr_array(B.T.tocsr()[:4])  # 4 new items x tags
    excl = sp.csr_array(E[:, :4].T.tocsr())  # 4 items x users
    out["audience_for_items"] = ec.audience_for_items(
        conv(A), conv(items), 5, exclude=conv(excl), opted_out=np.array([0], dtype=ids), max_per_user=2,
    )  # fmt: skip
    return out


def test_int64_inputs_give_the_int32_results(problem):
    A, B, F, E, trust = problem
    r32 = _ranking_calls(A, B, F, E, trust, as32, np.int32)
    r64 = _ranking_calls(A, B, F, E, trust, as64, np.int64)
    for name in r32:
        same_topk(r32[name], r64[name])
    # and the result is the exact dense reference (small integer inputs: exact sums)
    w = reference_weights(25, trust=trust, banned=np.array([1, 2]))
    ref = reference_topk(A, B, 6, w=w, F=F, E=E)
    assert_topk_equal(r64["topk"], ref)
    assert_topk_equal(r64["sparse_topk"], ref)


def test_int64_kernels_give_the_int32_results(problem, force_int64):
    """The same calls with INT64_FROM lowered: every kernel call now gets int64 index arrays."""
    A, B, F, E, trust = problem
    r64 = _ranking_calls(A, B, F, E, trust, as32, np.int32)
    assert force_int64 and all(dt == np.int64 for dt in force_int64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_validation, "INT64_FROM", _validation.INT32_MAX)
        n_before = len(force_int64)
        r32 = _ranking_calls(A, B, F, E, trust, as32, np.int32)
        assert all(dt == np.int32 for dt in force_int64[n_before:])
    for name in r32:
        same_topk(r32[name], r64[name])


def test_int64_index_dtype_follows_the_sizes(monkeypatch):
    A, _ = int_problem(0)
    assert _validation.as_csr(as64(A), "A", value_dtype=np.dtype(np.float64)).indptr.dtype == np.int32
    monkeypatch.setattr(_validation, "INT64_FROM", A.shape[1])
    p = _validation.as_csr(as32(A), "A", value_dtype=np.dtype(np.float64))
    assert p.indptr.dtype == p.indices.dtype == np.int64
    assert _validation.index_dtype_for_sizes(A.shape[1] - 1, 3) == np.int32
    assert _validation.index_dtype_for_sizes() == np.int32


def test_topk_parts_with_int64_ids(problem):
    A, B, _, _, trust = problem
    lo = ec.Ranker(B, trust=trust).topk(A, 5)
    # shards of the merchants, results with int64 ids and counts
    s1 = ec.Ranker(B[:, :12]).topk(A, 5)
    s2 = ec.Ranker(B[:, 12:]).topk(A, 5)
    p1 = TopK(s1.indices.astype(np.int64), s1.scores, s1.counts.astype(np.int64), 25)
    i2 = np.where(s2.indices >= 0, s2.indices.astype(np.int64) + 12, -1)
    p2 = TopK(i2, s2.scores, s2.counts.astype(np.int64), 25)
    merged = merge_topk([p1, p2], 5, n_cols=np.int64(25))
    same_topk(merged, ec.Ranker(B).topk(A, 5))
    assert merged.indices.dtype == np.int32  # 25 merchants: int32 ids come back
    both = concat_topk([p1, p1])
    assert both.n_rows == 2 * p1.n_rows and both.indices.dtype == np.int32
    t64 = TopK(lo.indices.astype(np.int64), lo.scores, lo.counts.astype(np.int64), 25)
    np.testing.assert_array_equal(ec.exposure(t64), ec.exposure(lo))
    np.testing.assert_array_equal(ec.exposure(t64, "log"), ec.exposure(lo, "log"))
    a, ra = ec.rerank_exposure(t64, 3, target_gini=0.3, n_threads=1)
    b, rb = ec.rerank_exposure(lo, 3, target_gini=0.3, n_threads=1)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.indices.dtype == np.int64 and ra.gini_after == rb.gini_after


@pytest.mark.parametrize("kw", [{}, {"method": "bm25"}, {"method": "swing"}, {"shrink": 2.0}])
def test_item_similarity_int64(kw):
    rng = np.random.default_rng(2)
    X = sp.csr_array((rng.random((60, 20)) < 0.25).astype(np.float64))
    a = ec.item_similarity(as32(X), top_n=5, n_threads=1, **kw)
    b = ec.item_similarity(as64(X), top_n=np.int64(5), n_threads=1, **kw)
    assert (a != b).nnz == 0 and a.shape == b.shape


def test_interest_model_int64_ids():
    rng = np.random.default_rng(4)
    item_tags = sp.csr_array(rng.random((8, 12)) * (rng.random((8, 12)) < 0.4))
    n = 30
    ev = {
        "user": rng.integers(0, 10, n),
        "item": rng.integers(0, 8, n),
        "kind": rng.choice(["view", "buy", "cart"], n),
        "time": T0 - rng.integers(0, 20, n) * DAY,
    }

    def run(ids, conv):
        im = ec.InterestModel(n_users=ids(10), n_items=ids(8), n_tags=ids(12))
        e = dict(ev, user=ev["user"].astype(ids), item=ev["item"].astype(ids))
        st = im.fold(e, conv(item_tags))
        prof = im.profiles(st, T0)
        mp = im.merchant_profiles(conv(item_tags), np.array([0, 1, 1, 2, 0, 1, 2, 2], dtype=ids), n_merchants=ids(3))
        fm = im.follow_matrix(
            e["user"][:5], np.array([0, 1, 2, 1, 0], dtype=ids), e["time"][:5], now=T0, n_users=ids(10),
            n_merchants=ids(3),
        )  # fmt: skip
        hist = ec.item_history(e, n_users=ids(10), n_items=ids(8), now=T0)
        return prof, mp, fm, hist

    for x, y in zip(run(np.int32, as32), run(np.int64, as64)):
        assert x.shape == y.shape and abs(x - y).max() == 0


def test_trust_model_int64_ids():
    names = [i.name for i in ec.default_indicators()]
    rng = np.random.default_rng(5)
    n = 200
    merchant = rng.integers(0, 6, n)
    ind = rng.integers(0, 2, n)
    value = rng.integers(0, 2, n).astype(np.float64)
    ev = {
        "merchant": merchant,
        "indicator": np.array(names)[ind],
        "value": value,
        "time": T0 - rng.integers(0, 50, n) * DAY,
        "buyer": rng.choice(np.array([2**40, 2**33 + 1, 7, 2**62]), n),  # int64 buyers, beyond 2**32
    }
    res = []
    for ids in (np.int32, np.int64):
        tm = ec.TrustModel(ec.default_indicators(), n_merchants=ids(6))
        e = dict(ev, merchant=merchant.astype(ids))
        if ids is np.int32:
            e["buyer"] = np.unique(ev["buyer"], return_inverse=True)[1].astype(np.int32)  # same groups
        st = tm.fold(e)
        res.append(tm.score(st, T0 + DAY).index)
    np.testing.assert_array_equal(res[0], res[1])


def test_identity_graph_int64_ids():
    g = ec.IdentityGraph()
    stores = np.array([2**40, 5, 2**62, 2**31 + 3], dtype=np.int64)
    keys = np.array([2**50, 2**50, -(2**60), -(2**60)], dtype=np.int64)
    g.link(stores, keys)
    g.ban(np.array([2**40], dtype=np.int64))
    assert g.blocked([np.int64(2**50)]) and not g.blocked([np.int64(-(2**60))])
    g.link(np.array([2**62], dtype=np.int64), np.array([2**50], dtype=np.int64))
    assert g.blocked([np.int64(-(2**60))])  # 2**31 + 3 shares a key with 2**62, now linked to the ban
    assert g.banned_stores().tolist() == [2**40]
    mask = g.banned_mask(np.int64(10), ignore_outside=True)
    assert mask.tolist() == [False] * 5 + [True] + [False] * 4
    assert g.blocked_many(np.array([2**45], dtype=np.int64), [np.int64(2**50)]).blocked.tolist() == [True]


# ---------------------------------------------------------------------------------------------
# 2. size arithmetic beyond 2**31, on synthetic sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vdt", [np.float32, np.float64])
@pytest.mark.parametrize("idt", [np.int32, np.int64])
@pytest.mark.parametrize("n_cols, width", [(1, 1), (7, 3), (100, 10), (1000, 1000), (4097, 50)])
def test_scratch_formula_matches_the_allocations(vdt, idt, n_cols, width):
    vdt, idt = np.dtype(vdt), np.dtype(idt)
    ws = ranking_mod._make_workspace(1, n_cols, width, np.ones(n_cols, vdt), idt)
    got = _sizes.topk_scratch_bytes(n_cols, width, vdt.itemsize, idt.itemsize)
    assert got == sum(a.nbytes for a in ws)
    cap = ranking_mod._buffer_cap(width)
    aud = audience_mod._workspace(1, n_cols, vdt, idt) + (np.empty((1, cap), vdt), np.empty((1, cap), idt))
    assert got == sum(a.nbytes for a in aud)


def test_scratch_formula_on_huge_sizes():
    for n in (2**31 - 1, 2**31, 2**32 + 5, 2**40, 2**62):
        for v, i in ((4, 4), (8, 8)):
            b = _sizes.topk_scratch_bytes(n, 10, v, i)
            assert isinstance(b, int)
            # exact closed form: (4 v + 1 + i + v) per column, group maxima, candidate buffer
            assert b == n * (3 * v + 1) + (n + 1) * (i + v) + (n // 8 + 2) * (2 * v + i) + 36 * (v + i)
            assert b > n * (4 * v + 1 + i)  # never wraps to a small or negative number
    # float32 / int32, k = 0: 21 bytes per merchant + 12 per group of 8 + a 16-pair buffer
    assert _sizes.topk_scratch_bytes(2**40, 0, 4, 4) == 2**40 * 21 + 8 + (2**37 + 2) * 12 + 16 * 8


def test_dense_limit_policy_on_huge_sizes():
    gib = 2**30
    with pytest.raises(ValueError, match=r"merchant_tags: 1,099,511,627,776 merchants are too many"):
        _sizes.check_dense_columns(2**40, "merchant_tags", limit=64 * 2**40)
    # the threads message names n_threads and the count that fits
    per = _sizes.topk_scratch_bytes(10**8, 10, 8, 8)
    limit = 2 * (3 * per)  # budget (half) = three threads
    _sizes.check_dense_columns(10**8, "B", threads=3, width=10, limit=limit)
    with pytest.raises(ValueError, match=r"n_threads: 4 threads .* pass n_threads=3 or fewer"):
        _sizes.check_dense_columns(10**8, "B", threads=4, width=10, limit=limit)
    with pytest.raises(ValueError, match="B: "):
        _sizes.check_dense_columns(10**8, "B", threads=4, width=10, limit=per)
    # a limit in the hundreds of TiB still refuses 2**50 columns (no overflow anywhere)
    with pytest.raises(ValueError, match="users"):
        _sizes.check_dense_columns(2**50, "user_tags", what="users", limit=512 * 1024 * gib)


def test_memory_limit_is_positive_and_bounded():
    lim = _sizes.memory_limit_bytes()
    assert 0 < lim
    if hasattr(os, "sysconf"):
        try:
            phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            phys = None
        if phys:
            assert lim <= phys


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux RLIMIT_AS")
def test_memory_limit_follows_rlimit_as():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = vm + (1 << 30)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        assert _sizes.memory_limit_bytes() <= cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_indptr_claiming_more_than_2_31_entries_is_refused_cheaply():
    # 3 stored entries, but the pointer array says row 0 holds 2**31 + 5 of them
    m = sp.csr_array((np.ones(3), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 4))
    m.indptr = np.array([0, 2**31 + 5], dtype=np.int64)
    with pytest.raises(ValueError, match="user_tags: .*indptr"):
        _validation.as_csr(m, "user_tags", value_dtype=np.dtype(np.float64))
    r = ec.Ranker(sp.csr_array(np.ones((4, 3))))
    with pytest.raises(ValueError, match="user_tags"):
        r.topk(m, 2)
    # the same with 2**31 + 1 columns (int64 index arrays): the pointer scan catches it
    w = sp.csr_array((np.ones(3), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 2**31 + 1))
    w.indptr = np.array([0, 2**31 + 5], dtype=np.int64)
    with pytest.raises(ValueError, match="user_tags: invalid CSR indptr at position 1"):
        _validation.as_csr(w, "user_tags", value_dtype=np.dtype(np.float64))


def test_column_indices_beyond_2_31_are_kept_exactly():
    cols = np.array([3, 2**31 - 1, 2**31, 2**31 + 10], dtype=np.int64)
    m = sp.csr_array((np.array([1.0, 2.0, 3.0, 4.0]), cols, np.array([0, 4], dtype=np.int64)), shape=(1, 2**31 + 11))
    p = _validation.as_csr(m, "B", value_dtype=np.dtype(np.float64))
    assert p.indices.dtype == np.int64 and p.indices.tolist() == cols.tolist()
    # int64 values out of int32 range in a matrix whose size is small are an error, not a wrap
    bad = sp.csr_array((np.ones(1), np.array([0]), np.array([0, 1])), shape=(1, 5))
    bad.indices = np.array([2**32 + 1], dtype=np.int64)
    with pytest.raises(ValueError, match="B: indices holds values out of range"):
        _validation.as_csr(bad, "B", value_dtype=np.dtype(np.float64))


def test_merge_shards_with_merchant_ids_beyond_2_31():
    # two shards of a catalogue of 2**33 merchants: ids past 2**31 survive merging exactly
    n_cols = 2**33
    i1 = np.array([[2**32 + 7, 5, -1], [2**31, -1, -1]], dtype=np.int64)
    s1 = np.array([[3.0, 1.0, -np.inf], [2.0, -np.inf, -np.inf]])
    i2 = np.array([[2**33 - 1, 2**31 + 1, -1], [2**32, 9, 3]], dtype=np.int64)
    s2 = np.array([[2.0, 1.0, -np.inf], [2.0, 2.0, 0.5]])
    p1 = TopK(i1, s1, np.array([2, 1]), n_cols)
    p2 = TopK(i2, s2, np.array([2, 3]), n_cols)
    out = merge_topk([p1, p2], 3)
    assert out.indices.dtype == np.int64 and out.n_cols == n_cols
    assert out.indices.tolist() == [[2**32 + 7, 2**33 - 1, 5], [9, 2**31, 2**32]]
    assert out.scores.tolist() == [[3.0, 2.0, 1.0], [2.0, 2.0, 2.0]]
    csr = out.to_csr()
    assert csr.shape == (2, n_cols) and csr[1, 2**32] == 2.0
    both = concat_topk([out, out])
    assert both.indices.dtype == np.int64 and both.indices[3, 2] == 2**32


def test_blocks_with_huge_per_row_work():
    work = np.full(1000, 2**40, dtype=np.int64)
    blocks = ranking_mod.Ranker._blocks(work, 0, 1000, 2)
    assert blocks[0][0] == 0 and blocks[-1][1] == 1000
    assert all(b[0] == a[1] for a, b in zip(blocks, blocks[1:]))
    assert all(r1 - r0 >= min(16, 1000 - r0) for r0, r1 in blocks)


def test_iter_topk_refuses_overflow_before_the_first_block(problem):
    A, B, _, _, _ = problem
    big = sp.csr_array(A * 1e307)
    r = ec.Ranker(B)
    with pytest.raises(ValueError, match="user_tags: scores could overflow"):
        r.iter_topk(big, 3, chunk_rows=5)  # raised by the call, not at the first next()


@pytest.mark.parametrize("chunk_rows", [1, 3, 16, 40, 1000])
def test_iter_topk_blocks_equal_topk(problem, chunk_rows):
    A, B, F, E, trust = problem
    r = ec.Ranker(B, trust=trust)
    starts, blocks = zip(*r.iter_topk(A, 5, chunk_rows=chunk_rows, follows=F, exclude=E, n_threads=2))
    assert list(starts) == list(range(0, 40, chunk_rows))
    same_topk(concat_topk(list(blocks)), r.topk(A, 5, follows=F, exclude=E))


def test_interest_ids_are_bounded_for_the_packed_keys():
    with pytest.raises(ValueError, match="n_users"):
        ec.InterestModel(n_users=2**31)
    with pytest.raises(ValueError, match="n_tags"):
        ec.InterestModel(n_tags=2**40)


def test_exposure_int32_limits():
    t = TopK(np.zeros((1, 2), np.int64), np.zeros((1, 2)), np.array([1]), 2**31 - 1)
    with pytest.raises(ValueError, match="candidates: at most"):
        ec.rerank_exposure(t, 1)
    # a category cap far beyond int32 cannot bind and must not overflow the kernel's int32
    c = TopK(np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]]), np.array([3]), 4)
    for kw in ({}, {"target_gini": 0.2}, {"method": "cap", "max_share": 0.5}):
        top, rep = ec.rerank_exposure(c, 2, category=[0, 0, 1, 1], max_per_category=2**40, **kw)
        assert top.indices.tolist() == [[0, 1]]


def test_audience_cap_beyond_int32(problem):
    A, B, _, _, _ = problem
    r = ec.Ranker(B)
    a = r.audience(A, [0, 1, 2], 4, max_per_user=2**40)
    b = r.audience(A, [0, 1, 2], 4)
    same_topk(a, b)


def test_audience_exclusion_lists_stay_within_int32(problem, monkeypatch):
    """A kernel call's exclusion lists (opted-out users repeated per row, plus the row's own)
    are counted by an index-dtype pointer array: with int32 indices a call takes fewer than
    2**31 entries.  Checked with the cap lowered to the longest single list."""
    A, B, F, _, _ = problem
    r = ec.Ranker(B)
    mids = np.arange(12)
    want = r.audience(A, mids, 5, follows=F, exclude_followers=True, opted_out=[0, 5, 9])
    items = sp.csr_array(B.T.tocsr()[:6])
    excl = sp.csr_array((np.random.default_rng(1).random((6, 40)) < 0.1).astype(np.float64))
    want_items = ec.audience_for_items(A, items, 5, exclude=excl, opted_out=[3])
    sizes = []
    real = _topk.fused_topk

    def spy(*args):
        sizes.append(args[12].shape[0])  # e_indices
        return real(*args)

    monkeypatch.setattr(_topk, "fused_topk", spy)
    # the tightest cap: the longest single row's list
    cap = max(3 + int((F[:, mids] != 0).sum(axis=0).max()), 1 + int(np.diff(excl.indptr).max()))
    monkeypatch.setattr(audience_mod, "_ENTRY_CAP32", cap)
    same_topk(r.audience(A, mids, 5, follows=F, exclude_followers=True, opted_out=[0, 5, 9]), want)
    same_topk(ec.audience_for_items(A, items, 5, exclude=excl, opted_out=[3]), want_items)
    assert sizes and max(sizes) <= cap and len(sizes) > 2
    with pytest.raises(ValueError, match=f"opted_out, exclude: {cap + 1} users to leave out"):
        r.audience(A, [0], 5, opted_out=np.arange(cap + 1))


# ---------------------------------------------------------------------------------------------
# 3. huge column counts: refused before allocating (mocked memory limit)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_memory(monkeypatch):
    """Pretend the process may use ``limit[0]`` bytes; check even small scratch."""
    limit = [1 << 40]
    monkeypatch.setattr(_sizes, "memory_limit_bytes", lambda: limit[0])
    monkeypatch.setattr(_sizes, "_SMALL", 0)
    return limit


def test_ranker_column_limit(small_memory, problem, monkeypatch):
    A, B, F, E, _ = problem
    n_m = B.shape[1]
    per = _sizes.topk_scratch_bytes(n_m, 0, 8, 4) + _sizes.RANKER_BYTES_PER_COLUMN * n_m
    small_memory[0] = 2 * per - 2  # one thread's scratch no longer fits in half of it
    with pytest.raises(ValueError, match=r"merchant_tags: 25 merchants are too many"):
        ec.Ranker(B)
    with pytest.raises(ValueError, match="merchant_tags"):
        ec.sparse_topk(A, B, 3)
    small_memory[0] = 2 * per
    r = ec.Ranker(B)
    # calls: four threads need more than fits; the error names n_threads and the count that fits
    one = _sizes.topk_scratch_bytes(n_m, 5, 8, 4)
    small_memory[0] = 2 * (2 * one)
    allocated = []
    real = ranking_mod._make_workspace
    monkeypatch.setattr(ranking_mod, "_make_workspace", lambda *a: allocated.append(a[0]) or real(*a))
    with pytest.raises(ValueError, match=r"n_threads: 4 threads .* pass n_threads=2 or fewer"):
        r.topk(A, 5, n_threads=4)
    with pytest.raises(ValueError, match=r"n_threads: 4 threads"):
        r.iter_topk(A, 5, n_threads=4, chunk_rows=8)
    assert allocated == []  # refused before any scratch was allocated
    same_topk(r.topk(A, 5, n_threads=2), r.topk(A, 5, n_threads=1))
    assert max(allocated) == 2


def test_audience_column_limit(small_memory, problem):
    A, B, _, _, _ = problem
    n_u = A.shape[0]
    per = _sizes.topk_scratch_bytes(n_u, 0, 8, 8) + audience_mod._AUDIENCE_BYTES_PER_USER * n_u
    small_memory[0] = 2 * per - 2
    with pytest.raises(ValueError, match=r"user_tags: 40 users are too many"):
        ec.AudienceIndex(A)
    small_memory[0] = 1 << 40
    index = ec.AudienceIndex(A)
    r = ec.Ranker(B)
    small_memory[0] = 2 * (_sizes.topk_scratch_bytes(n_u, 13, 8, 4) + audience_mod._AUDIENCE_BYTES_PER_USER * n_u)
    with pytest.raises(ValueError, match="n_threads: 3 threads"):
        r.audience(index, [0, 1, 2, 3], 5, n_threads=3)
    small_memory[0] = 1 << 40
    want = r.audience(index, [0, 1, 2, 3], 5, n_threads=1)
    small_memory[0] = 2 * (_sizes.topk_scratch_bytes(n_u, 13, 8, 4) + audience_mod._AUDIENCE_BYTES_PER_USER * n_u)
    same_topk(r.audience(index, [0, 1, 2, 3], 5, n_threads=1), want)


def test_exposure_column_limit(small_memory):
    t = TopK(np.array([[0, 1]]), np.array([[2.0, 1.0]]), np.array([2]), 1000)
    small_memory[0] = 2 * 16 * 1000 - 2
    with pytest.raises(ValueError, match="topk: 1,000 merchants are too many"):
        ec.exposure(t)
    with pytest.raises(ValueError, match="candidates: 1,000 merchants are too many"):
        ec.rerank_exposure(t, 1)
    small_memory[0] = 1 << 30
    assert ec.exposure(t).sum() == 2


def test_huge_column_count_without_entries_is_refused():
    b = sp.csr_array((np.zeros(0), np.zeros(0, np.int64), np.zeros(4, np.int64)), shape=(3, 2**40))
    with pytest.raises(ValueError, match="merchant_tags: 1,099,511,627,776 merchants are too many"):
        ec.Ranker(b)
    t = TopK(np.zeros((1, 1), np.int64), np.zeros((1, 1)), np.array([0]), 2**40)
    with pytest.raises(ValueError, match="topk: "):
        ec.exposure(t)


# ---------------------------------------------------------------------------------------------
# 4. fair_table and thread-count bounds
# ---------------------------------------------------------------------------------------------


def test_fair_table_bound():
    t = fair_table(MAX_K, 0.3, 0.1, adjusted=False)
    assert t.shape == (MAX_K,)
    for k in (MAX_K + 1, 10**9, 2**62):
        for adj in (False, True):
            with pytest.raises(ValueError, match=f"k: at most {MAX_K}"):
                fair_table(k, 0.3, 0.1, adjusted=adj)
    with pytest.raises(ValueError, match=f"table: at most {MAX_K}"):
        fair_fail_probability(np.zeros(MAX_K + 1, np.int64), 0.3)
    assert fair_fail_probability(t, 0.3) > 0


def test_thread_count_bound(problem):
    A, B, _, _, _ = problem
    top = max(_validation.MAX_THREADS, _validation.available_cores())
    r = ec.Ranker(B)
    for call in (
        lambda n: r.topk(A, 3, n_threads=n),
        lambda n: r.iter_topk(A, 3, n_threads=n),
        lambda n: r.audience(A, [0], 3, n_threads=n),
        lambda n: ec.item_similarity(sp.csr_array(abs(A)), shrink=1.0, n_threads=n),
    ):
        with pytest.raises(ValueError, match=f"n_threads: at most {top}"):
            call(top + 1)
        with pytest.raises(ValueError, match="n_threads"):
            call(2**40)
    same_topk(r.topk(A, 3, n_threads=top), r.topk(A, 3, n_threads=1))
