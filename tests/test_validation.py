"""Bad input: a ValueError or TypeError naming the argument, never a crash or garbage."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import int_problem, random_problem

import ecomcore as ec

ERR = (ValueError, TypeError)

N_USERS, N_TAGS, N_MERCHANTS = 6, 5, 8


@pytest.fixture
def AB():
    return random_problem(0, n_users=N_USERS, n_tags=N_TAGS, n_merchants=N_MERCHANTS,
                          density_a=0.5, density_b=0.5)


@pytest.fixture
def ranker(AB):
    return ec.Ranker(AB[1])


def _with_value(X, value, pos=0):
    X = sp.csr_array(X, copy=True)
    X.data[pos] = value
    return X


def _with_index(X, value, pos=0):
    """Corrupt one stored column index, bypassing scipy's checks."""
    X = sp.csr_array(X, copy=True)
    X.indices[pos] = value
    return X


def _raw_csr(data, indices, indptr, shape, cls=sp.csr_matrix):
    return cls((np.asarray(data, dtype=float), np.asarray(indices, dtype=np.int32),
                np.asarray(indptr, dtype=np.int32)), shape=shape)


# ---------------------------------------------------------------------------------------------
# sparse_topk: shapes
# ---------------------------------------------------------------------------------------------


def test_inner_dimension_mismatch(AB):
    A, B = AB
    with pytest.raises(ValueError, match="user_tags|merchant_tags"):
        ec.sparse_topk(A[:, :-1], B, 3)


def test_follows_shape(AB):
    A, B = AB
    with pytest.raises(ValueError, match="follows"):
        ec.sparse_topk(A, B, 3, follows=sp.csr_array((N_USERS, N_MERCHANTS + 1)))
    with pytest.raises(ValueError, match="follows"):
        ec.sparse_topk(A, B, 3, follows=sp.csr_array((N_USERS - 1, N_MERCHANTS)))


def test_exclude_shape(AB):
    A, B = AB
    with pytest.raises(ValueError, match="exclude"):
        ec.sparse_topk(A, B, 3, exclude=sp.csr_array((N_USERS, N_MERCHANTS - 1)))
    with pytest.raises(ValueError, match="exclude"):
        ec.sparse_topk(A, B, 3, exclude=np.zeros((N_USERS + 1, N_MERCHANTS), dtype=bool))


@pytest.mark.parametrize("w", [np.ones(N_MERCHANTS - 1), np.ones(N_MERCHANTS + 1),
                               np.ones((1, N_MERCHANTS)), np.ones((N_MERCHANTS, 1))])
def test_merchant_weight_shape(AB, w):
    A, B = AB
    with pytest.raises(ValueError, match="merchant_weight"):
        ec.sparse_topk(A, B, 3, merchant_weight=w)


@pytest.mark.parametrize("bad", [np.ones((2, 3, 4)), np.ones(5), np.array([["a", "b"]]),
                                 "not a matrix", None])
def test_user_tags_not_a_matrix(AB, bad):
    _, B = AB
    with pytest.raises(ERR, match="user_tags"):
        ec.sparse_topk(bad, B, 3)


def test_merchant_tags_not_a_matrix(AB):
    A, _ = AB
    with pytest.raises(ERR, match="merchant_tags"):
        ec.sparse_topk(A, np.ones((2, 3, 4)), 3)
    with pytest.raises(ERR, match="merchant_tags"):
        ec.sparse_topk(A, None, 3)


# ---------------------------------------------------------------------------------------------
# non-finite values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_user_tags(AB, value):
    A, B = AB
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(_with_value(A, value, pos=A.nnz - 1), B, 3)
    Ad = A.toarray()
    Ad[0, 0] = value
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(Ad, B, 3)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_merchant_tags(AB, value):
    A, B = AB
    with pytest.raises(ValueError, match="merchant_tags"):
        ec.sparse_topk(A, _with_value(B, value), 3)
    with pytest.raises(ValueError, match="merchant_tags"):
        ec.Ranker(_with_value(B, value))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_follows(AB, value):
    A, B = AB
    F = sp.csr_array(np.eye(N_USERS, N_MERCHANTS))
    with pytest.raises(ValueError, match="follows"):
        ec.sparse_topk(A, B, 3, follows=_with_value(F, value, pos=2))
    with pytest.raises(ValueError, match="follows"):
        ec.Ranker(B).topk(A, follows=_with_value(F, value, pos=2))


def test_float32_overflow_is_not_silent():
    # A finite float64 weight that overflows float32 in float32 work: rejected naming the
    # argument, or (if accepted) no inf/NaN may come out.
    A, B = int_problem(1, dtype=np.float32)
    w = np.ones(B.shape[1])
    w[0] = 1e300
    try:
        res = ec.sparse_topk(A, B, 3, merchant_weight=w)
    except ValueError as exc:
        assert "merchant_weight" in str(exc)
    else:  # if accepted, no inf/nan scores may come out
        valid = res.indices >= 0
        assert np.all(np.isfinite(res.scores[valid]))
    g = np.ones(B.shape[1])
    g[1] = 1e300
    try:
        res = ec.Ranker(B, boost=g).topk(A, k=3)
    except ValueError as exc:
        assert "boost" in str(exc)
    else:
        valid = res.indices >= 0
        assert np.all(np.isfinite(res.scores[valid]))


@pytest.mark.parametrize("w_bad", [np.nan, np.inf, -np.inf, -1.0, -1e-12])
def test_bad_merchant_weight_values(AB, w_bad):
    A, B = AB
    w = np.ones(N_MERCHANTS)
    w[3] = w_bad
    with pytest.raises(ValueError, match="merchant_weight"):
        ec.sparse_topk(A, B, 3, merchant_weight=w)


@pytest.mark.parametrize("fw", [np.nan, np.inf, -np.inf])
def test_bad_follow_weight(AB, fw):
    A, B = AB
    with pytest.raises(ValueError, match="follow_weight"):
        ec.sparse_topk(A, B, 3, follow_weight=fw)
    with pytest.raises(ValueError, match="follow_weight"):
        ec.Ranker(B, follow_weight=fw)


def test_bad_threshold(AB):
    A, B = AB
    with pytest.raises(ValueError, match="threshold"):
        ec.sparse_topk(A, B, 3, threshold=np.nan)
    with pytest.raises(ERR, match="threshold"):
        ec.sparse_topk(A, B, 3, threshold="high")


# ---------------------------------------------------------------------------------------------
# k and n_threads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, -100])
def test_k_below_one(AB, ranker, k):
    A, B = AB
    with pytest.raises(ValueError, match="k"):
        ec.sparse_topk(A, B, k)
    with pytest.raises(ValueError, match="k"):
        ranker.topk(A, k=k)
    with pytest.raises(ValueError, match="k"):
        ranker.topk_one([0], [1.0], k=k)
    with pytest.raises(ValueError, match="k"):
        list(ranker.iter_topk(A, k=k))


@pytest.mark.parametrize("k", [2.5, 3.0, "3", None, True, [3]])
def test_k_not_an_int(AB, ranker, k):
    A, B = AB
    with pytest.raises(ERR, match="k"):
        ec.sparse_topk(A, B, k)
    with pytest.raises(ERR, match="k"):
        ranker.topk(A, k=k)
    with pytest.raises(ERR, match="k"):
        ranker.topk_one([0], [1.0], k=k)


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, 2.0, True, False, "2"])
def test_bad_n_threads(AB, ranker, n_threads):
    A, B = AB
    with pytest.raises(ERR, match="n_threads"):
        ec.sparse_topk(A, B, 3, n_threads=n_threads)
    with pytest.raises(ERR, match="n_threads"):
        ranker.topk(A, k=3, n_threads=n_threads)
    with pytest.raises(ERR, match="n_threads"):
        list(ranker.iter_topk(A, k=3, n_threads=n_threads))


@pytest.mark.parametrize("chunk_rows", [0, -5, 2.5])
def test_bad_chunk_rows(AB, ranker, chunk_rows):
    A, _ = AB
    with pytest.raises(ERR, match="chunk_rows"):
        list(ranker.iter_topk(A, k=3, chunk_rows=chunk_rows))


def test_bad_progress(AB, ranker):
    A, _ = AB
    with pytest.raises(ERR, match="progress"):
        ranker.topk(A, k=3, progress="yes")


# ---------------------------------------------------------------------------------------------
# corrupt CSR structure (built by hand, bypassing scipy's checks)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_index", [N_TAGS, N_TAGS + 100, -1, 2**31 - 1])
def test_user_tags_index_out_of_range(AB, bad_index):
    A, B = AB
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(_with_index(A, bad_index, pos=A.nnz // 2), B, 3)
    with pytest.raises(ValueError, match="user_tags"):
        ec.Ranker(B).topk(_with_index(A, bad_index), k=3)


@pytest.mark.parametrize("bad_index", [N_MERCHANTS, -1, 10**6])
def test_merchant_tags_index_out_of_range(AB, bad_index):
    A, B = AB
    with pytest.raises(ValueError, match="merchant_tags"):
        ec.sparse_topk(A, _with_index(B, bad_index, pos=B.nnz - 1), 3)
    with pytest.raises(ValueError, match="merchant_tags"):
        ec.Ranker(_with_index(B, bad_index))


@pytest.mark.parametrize("name", ["follows", "exclude"])
@pytest.mark.parametrize("bad_index", [N_MERCHANTS, -3])
def test_follows_exclude_index_out_of_range(AB, name, bad_index):
    A, B = AB
    X = _with_index(sp.csr_array(np.eye(N_USERS, N_MERCHANTS)), bad_index, pos=1)
    with pytest.raises(ValueError, match=name):
        ec.sparse_topk(A, B, 3, **{name: X})
    with pytest.raises(ValueError, match=name):
        ec.Ranker(B).topk(A, k=3, **{name: X})


def test_csr_matrix_built_by_hand_with_bad_index(AB):
    _, B = AB
    # csr_matrix((data, indices, indptr), shape) does not check index ranges by itself.
    A = _raw_csr([1.0, 2.0], [0, N_TAGS + 3], [0, 1, 2], (2, N_TAGS))
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(A, B, 3)
    A = _raw_csr([1.0, 2.0], [0, N_TAGS + 3], [0, 1, 2], (2, N_TAGS), cls=sp.csr_array)
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(A, B, 3)


@pytest.mark.parametrize("indptr", [
    [0, 2, 1, 3],  # not monotone
    [0, 3, 2, 3],  # not monotone
    [1, 1, 2, 3],  # does not start at 0
    [0, 1, 2, 5],  # runs past the stored entries
    [0, -1, 2, 3],  # negative
])
def test_bad_indptr(AB, indptr):
    _, B = AB
    A = _raw_csr([1.0, 2.0, 3.0], [0, 1, 2], [0, 1, 2, 3], (3, N_TAGS))
    A.indptr = np.asarray(indptr, dtype=np.int32)
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(A, B, 3)
    Bb = _raw_csr([1.0, 2.0, 3.0], [0, 1, 2], [0, 1, 2, 3], (3, N_MERCHANTS))
    Bb.indptr = np.asarray(indptr, dtype=np.int32)
    with pytest.raises(ValueError, match="merchant_tags"):
        ec.Ranker(Bb)
    F = _raw_csr([1.0, 2.0, 3.0], [0, 1, 2], [0, 1, 2, 3], (3, N_MERCHANTS))
    F.indptr = np.asarray(indptr, dtype=np.int32)
    A3 = sp.csr_array(np.ones((3, N_MERCHANTS)))
    with pytest.raises(ValueError, match="follows"):
        ec.sparse_topk(A3, sp.csr_array(np.eye(N_MERCHANTS)), 3, follows=F)


def test_indptr_wrong_length(AB):
    _, B = AB
    A = _raw_csr([1.0, 2.0, 3.0], [0, 1, 2], [0, 1, 2, 3], (3, N_TAGS))
    A.indptr = np.array([0, 1, 3], dtype=np.int32)
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(A, B, 3)


def test_data_shorter_than_indices(AB):
    _, B = AB
    A = _raw_csr([1.0, 2.0, 3.0], [0, 1, 2], [0, 1, 2, 3], (3, N_TAGS))
    A.data = A.data[:2]
    with pytest.raises(ValueError, match="user_tags"):
        ec.sparse_topk(A, B, 3)


def test_corrupt_input_is_not_modified(AB):
    A, B = AB
    bad = _with_index(A, N_TAGS + 1)
    saved = bad.indices.copy()
    with pytest.raises(ValueError):
        ec.sparse_topk(bad, B, 3)
    np.testing.assert_array_equal(bad.indices, saved)


# ---------------------------------------------------------------------------------------------
# Ranker construction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trust_bad", [np.nan, np.inf, -0.1, -np.inf, 1.5])
def test_bad_trust(AB, trust_bad):
    _, B = AB
    t = np.full(N_MERCHANTS, 0.5)
    t[2] = trust_bad
    with pytest.raises(ValueError, match="trust"):
        ec.Ranker(B, trust=t)


def test_trust_shape(AB):
    _, B = AB
    with pytest.raises(ValueError, match="trust"):
        ec.Ranker(B, trust=np.ones(N_MERCHANTS - 1))


@pytest.mark.parametrize("boost_bad", [np.nan, np.inf, -1.0])
def test_bad_boost(AB, boost_bad):
    _, B = AB
    g = np.ones(N_MERCHANTS)
    g[0] = boost_bad
    with pytest.raises(ValueError, match="boost"):
        ec.Ranker(B, boost=g)
    with pytest.raises(ValueError, match="boost"):
        ec.Ranker(B, boost=np.ones(N_MERCHANTS + 2))


@pytest.mark.parametrize("beta", [np.nan, np.inf])
def test_bad_beta(AB, beta):
    _, B = AB
    with pytest.raises(ValueError, match="beta"):
        ec.Ranker(B, beta=beta)


@pytest.mark.parametrize("min_trust", [np.nan, np.inf])
def test_bad_min_trust(AB, min_trust):
    _, B = AB
    with pytest.raises(ValueError, match="min_trust"):
        ec.Ranker(B, min_trust=min_trust)


@pytest.mark.parametrize("banned", [
    np.zeros(N_MERCHANTS - 1, dtype=bool),  # mask of the wrong length
    np.zeros(N_MERCHANTS + 1, dtype=bool),
    np.array([0, N_MERCHANTS]),  # id out of range
    np.array([-1]),
    [1.5],  # not an id
])
def test_bad_banned(AB, banned):
    _, B = AB
    with pytest.raises(ERR, match="banned"):
        ec.Ranker(B, banned=banned)


def test_topk_user_tags_width_mismatch(ranker, AB):
    A, _ = AB
    with pytest.raises(ValueError, match="user_tags"):
        ranker.topk(sp.csr_array((3, N_TAGS + 1)))
    with pytest.raises(ValueError, match="user_tags"):
        list(ranker.iter_topk(sp.csr_array((3, N_TAGS - 1))))


def test_topk_threshold_nan(ranker, AB):
    A, _ = AB
    with pytest.raises(ValueError, match="threshold"):
        ranker.topk(A, threshold=np.nan)


# ---------------------------------------------------------------------------------------------
# topk_one / explain ids
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag_ids", [[N_TAGS], [0, -1], [10**9]])
def test_topk_one_tag_ids_out_of_range(ranker, tag_ids):
    with pytest.raises(ValueError, match="tag_ids"):
        ranker.topk_one(tag_ids, np.ones(len(tag_ids)))
    with pytest.raises(ValueError, match="tag_ids"):
        ranker.explain(tag_ids, np.ones(len(tag_ids)), [0])


def test_topk_one_length_mismatch(ranker):
    with pytest.raises(ValueError, match="tag_ids|tag_weights"):
        ranker.topk_one([0, 1], [1.0])
    with pytest.raises(ValueError, match="follow_ids|follow_weights"):
        ranker.topk_one([0], [1.0], follow_ids=[1, 2], follow_weights=[1.0])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_topk_one_non_finite_weights(ranker, value):
    with pytest.raises(ValueError, match="tag_weights"):
        ranker.topk_one([0, 1], [1.0, value])
    with pytest.raises(ValueError, match="follow_weights"):
        ranker.topk_one([0], [1.0], follow_ids=[1], follow_weights=[value])
    with pytest.raises(ValueError, match="tag_weights"):
        ranker.explain([0, 1], [1.0, value], [0])


@pytest.mark.parametrize("bad", [N_MERCHANTS, -1])
def test_topk_one_merchant_ids_out_of_range(ranker, bad):
    with pytest.raises(ValueError, match="follow_ids"):
        ranker.topk_one([0], [1.0], follow_ids=[bad], follow_weights=[1.0])
    with pytest.raises(ValueError, match="exclude_ids"):
        ranker.topk_one([0], [1.0], exclude_ids=[0, bad])
    with pytest.raises(ValueError, match="merchant_ids"):
        ranker.explain([0], [1.0], [0, bad])
    with pytest.raises(ValueError, match="follow_ids"):
        ranker.explain([0], [1.0], [0], follow_ids=[bad], follow_weights=[1.0])


def test_topk_one_non_integer_ids(ranker):
    with pytest.raises(ERR, match="tag_ids"):
        ranker.topk_one([0.5], [1.0])
    with pytest.raises(ERR, match="tag_ids"):
        ranker.topk_one(["a"], [1.0])


def test_valid_calls_still_work_after_errors(AB, ranker):
    # The errors above leave no state behind.
    A, B = AB
    with pytest.raises(ValueError):
        ranker.topk_one([N_TAGS], [1.0])
    res = ranker.topk(A, k=3)
    assert res.n_rows == N_USERS
    one = ranker.topk_one(A.indices[A.indptr[0]:A.indptr[1]], A.data[A.indptr[0]:A.indptr[1]],
                          k=3)
    np.testing.assert_array_equal(one.indices[0], res.indices[0])
