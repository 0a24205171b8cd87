"""ecomcore.sparse_topk against the dense reference: every semantic point of issue 2, item 3."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import int_problem, random_problem, random_sparse
from _reference import (
    assert_topk_close,
    assert_topk_equal,
    assert_topk_wellformed,
    dense,
    reference_topk,
)

import ecomcore as ec

# ---------------------------------------------------------------------------------------------
# small hand-made cases
# ---------------------------------------------------------------------------------------------


def test_negative_scores_are_candidates():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[-2.0, 3.0, 0.0]]))
    res = ec.sparse_topk(A, B, 3)
    assert res.counts.tolist() == [2]
    assert res.indices.tolist() == [[1, 0, -1]]
    assert res.scores[0, :2].tolist() == [3.0, -2.0]
    assert np.isneginf(res.scores[0, 2])


def test_all_negative_row_is_kept():
    A = sp.csr_array(np.array([[1.0, 2.0]]))
    B = sp.csr_array(np.array([[-1.0, -3.0], [-1.0, 0.0]]))
    res = ec.sparse_topk(A, B, 5)
    assert res.counts.tolist() == [2]
    assert res.indices.tolist() == [[0, 1]]
    assert res.scores.tolist() == [[-3.0, -3.0]]  # tie resolved by index


def test_exact_cancellation_is_a_candidate_with_score_zero():
    # A row [1, 1] with B column [1, -1]: reached structurally, product cancels to exactly 0.
    A = sp.csr_array(np.array([[1.0, 1.0]]))
    B = sp.csr_array(np.array([[1.0, 2.0, 0.0], [-1.0, -5.0, 0.0]]))
    res = ec.sparse_topk(A, B, 3)
    assert res.counts.tolist() == [2]
    assert res.indices.tolist() == [[0, 1, -1]]
    assert res.scores[0, 0] == 0.0
    assert res.scores[0, 1] == -3.0
    assert np.isneginf(res.scores[0, 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_cancellation_many_rows(dtype):
    # Every user cancels on merchant 0, reaches merchant 1 with a positive and 2 negatively.
    n = 50
    A = sp.csr_array(np.ones((n, 2), dtype=dtype))
    B = sp.csr_array(np.array([[1.0, 1.0, -1.0], [-1.0, 1.0, 0.0]], dtype=dtype))
    res = ec.sparse_topk(A, B, 3, n_threads=1)
    assert res.scores.dtype == dtype
    assert np.all(res.counts == 3)
    assert np.all(res.indices == [1, 0, 2])
    assert np.all(res.scores == np.array([2.0, 0.0, -1.0], dtype=dtype))


def test_explicit_zero_entries_do_not_reach():
    # Structural reach is defined on values: a stored explicit zero in A, B or F reaches nothing.
    A = sp.csr_array((np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    B = sp.csr_array(np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    F = sp.csr_array((np.array([0.0]), np.array([2]), np.array([0, 1])), shape=(1, 3))
    assert A.nnz == 2 and F.nnz == 1
    res = ec.sparse_topk(A, B, 3, follows=F)
    assert res.counts.tolist() == [1]
    assert res.indices.tolist() == [[1, -1, -1]]
    assert res.scores[0, 0] == 2.0


@pytest.mark.parametrize("threshold, expected", [
    (None, [1, 2, 0]),
    (-2.0, [1, 2]),  # strictly greater: -2 itself is dropped
    (-2.5, [1, 2, 0]),
    (0.0, [1]),  # 0 is not > 0
    (-1e-300, [1, 2]),
    (3.0, []),
    (2.999, [1]),
])
def test_threshold_is_strict(threshold, expected):
    A = sp.csr_array(np.array([[1.0, 1.0]]))
    B = sp.csr_array(np.array([[-2.0, 3.0, 1.0, 0.0], [0.0, 0.0, -1.0, 0.0]]))
    # scores: m0 = -2, m1 = 3, m2 = 0 (cancels), m3 unreached
    res = ec.sparse_topk(A, B, 4, threshold=threshold)
    assert res.counts.tolist() == [len(expected)]
    assert res.indices[0, : len(expected)].tolist() == expected
    assert np.all(res.indices[0, len(expected):] == -1)
    ref = reference_topk(A, B, 4, threshold=threshold)
    assert_topk_equal(res, ref)


def test_float32_threshold_compared_without_rounding_the_threshold():
    # Float32 scores are compared with the threshold as given: float32(0.1) = 0.10000000149...
    # is strictly greater than 0.1, so threshold=0.1 keeps it; rounding the threshold to
    # float32 first would drop it.
    A = sp.csr_array(np.array([[1.0]], dtype=np.float32))
    B = sp.csr_array(np.array([[0.1, 0.3, -0.5]], dtype=np.float32))
    f32 = np.float32
    cases = [
        (0.1, [1, 0]),
        (0.1000000000001, [1, 0]),
        (float(f32(0.1)), [1]),  # equal: not strictly greater
        (np.nextafter(float(f32(0.1)), -1.0), [1, 0]),
        (-0.5, [1, 0]),
        (np.nextafter(-0.5, -1.0), [1, 0, 2]),
        (1e300, []),
        (-1e300, [1, 0, 2]),
    ]
    for thr, expected in cases:
        res = ec.sparse_topk(A, B, 3, threshold=thr)
        assert res.scores.dtype == np.float32
        got = res.indices[0, : res.counts[0]].tolist()
        assert got == expected, (thr, got, res.scores)
        assert all(float(v) > thr for v in res.scores[0, : res.counts[0]])


def test_k_larger_than_candidates_pads():
    A = sp.csr_array(np.array([[1.0, 0.0], [0.0, 1.0]]))
    B = sp.csr_array(np.array([[1.0, 0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]]))
    res = ec.sparse_topk(A, B, 4)
    assert_topk_wellformed(res, 2, 5, 4, np.float64)
    assert res.counts.tolist() == [2, 0]
    assert res.indices.tolist() == [[4, 0, -1, -1], [-1, -1, -1, -1]]
    assert res.scores[0, :2].tolist() == [2.0, 1.0]
    assert np.all(np.isneginf(res.scores[0, 2:]))
    assert np.all(np.isneginf(res.scores[1]))


@pytest.mark.parametrize("k", [5, 6, 100, 10**12])
def test_width_is_min_k_n_merchants(k):
    A, B = int_problem(3, n_users=6, n_tags=4, n_merchants=5)
    res = ec.sparse_topk(A, B, k)
    assert res.width == 5
    assert res.indices.shape == (6, 5)
    assert_topk_equal(res, reference_topk(A, B, k))


def test_empty_rows_of_A_give_empty_rows():
    Ad = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    Bd = np.array([[1.0, -1.0, 0.0], [0.0, 2.0, 1.0]])
    res = ec.sparse_topk(sp.csr_array(Ad), sp.csr_array(Bd), 2)
    assert res.counts.tolist() == [0, 2, 0, 2, 0]
    for u in (0, 2, 4):
        assert np.all(res.indices[u] == -1)
        assert np.all(np.isneginf(res.scores[u]))
    assert_topk_equal(res, reference_topk(Ad, Bd, 2))


def test_zero_users():
    A = sp.csr_array((0, 4))
    _, B = random_problem(4, n_tags=4, n_merchants=6)
    res = ec.sparse_topk(A, B, 3)
    assert_topk_wellformed(res, 0, 6, 3, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_tags(dtype):
    # An empty tag space is a valid (if degenerate) problem: nobody reaches anything.
    A = sp.csr_array(np.zeros((3, 0), dtype=dtype))
    B = sp.csr_array(np.zeros((0, 4), dtype=dtype))
    res = ec.sparse_topk(A, B, 2)
    assert_topk_wellformed(res, 3, 4, 2, dtype)
    assert np.all(res.counts == 0)
    F = sp.csr_array(np.eye(3, 4))
    res = ec.sparse_topk(A, B, 2, follows=F)
    assert res.indices.tolist() == [[0, -1], [1, -1], [2, -1]]


def test_no_stored_entries_at_all():
    A = sp.csr_array((5, 4))
    B = sp.csr_array((4, 7))
    res = ec.sparse_topk(A, B, 3)
    assert_topk_wellformed(res, 5, 7, 3, np.float64)
    assert np.all(res.counts == 0)


def test_empty_merchant_columns_are_never_candidates():
    A, B = int_problem(5, n_users=15, n_tags=6, n_merchants=10, density=0.6)
    Bd = B.toarray()
    Bd[:, [0, 3, 9]] = 0.0
    res = ec.sparse_topk(A, sp.csr_array(Bd), 10)
    assert not np.isin(res.indices, [0, 3, 9]).any()
    assert_topk_equal(res, reference_topk(A, Bd, 10))


def test_ties_resolve_to_lower_index():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[2.0, 1.0, 2.0, 2.0, 1.0, 3.0]]))
    res = ec.sparse_topk(A, B, 4)
    assert res.indices.tolist() == [[5, 0, 2, 3]]
    assert res.scores.tolist() == [[3.0, 2.0, 2.0, 2.0]]
    res = ec.sparse_topk(A, B, 2)
    assert res.indices.tolist() == [[5, 0]]
    res = ec.sparse_topk(A, B, 6)
    assert res.indices.tolist() == [[5, 0, 2, 3, 1, 4]]


def test_ties_at_the_kth_place_many_merchants():
    # 300 merchants with the same score: the k lowest indices must win, for every k.
    rng = np.random.default_rng(7)
    n_m = 300
    Bd = np.zeros((2, n_m))
    Bd[0] = 1.0
    Bd[1, rng.choice(n_m, 40, replace=False)] = 1.0  # 40 merchants score 2, the rest 1
    A = sp.csr_array(np.array([[1.0, 1.0]]))
    for k in (1, 10, 39, 40, 41, 64, 65, 299, 300):
        res = ec.sparse_topk(A, sp.csr_array(Bd), k)
        assert_topk_equal(res, reference_topk(A, Bd, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 12, 40])
def test_exact_integer_problem(dtype, k):
    A, B = int_problem(11, n_users=60, n_tags=10, n_merchants=25, dtype=dtype)
    res = ec.sparse_topk(A, B, k)
    assert_topk_equal(res, reference_topk(A, B, k), score_dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_random_problem_close(dtype, k):
    A, B = random_problem(12, dtype=dtype)
    res = ec.sparse_topk(A, B, k)
    assert_topk_close(res, A, B, k, score_dtype=dtype)


def test_larger_random_problem_close():
    # Enough merchants that any chunked selection (e.g. blocks of 64) is exercised, with
    # sparse rows (touched-list path) and dense rows (full-scan path) in the same call.
    A, B = random_problem(13, n_users=120, n_tags=40, n_merchants=700, density_a=0.1,
                          density_b=0.05)
    Ad = A.toarray()
    Ad[:10] = 0.0
    Ad[10:20, 0] = 1.0
    Ad[20:30] = np.random.default_rng(1).uniform(-1, 1, (10, 40))  # dense rows reach ~all
    A = sp.csr_array(Ad)
    for k in (1, 10, 100):
        res = ec.sparse_topk(A, B, k, n_threads=2)
        assert_topk_close(res, A, B, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_merchants_exact_with_everything(dtype):
    # 517 merchants (not a multiple of any chunk size), rows from empty to reaching everything,
    # many exact ties: exercises touched-list and full-scan selection and the chunk skip test.
    rng = np.random.default_rng(99)
    n_u, n_t, n_m = 40, 12, 517
    Ad = rng.choice([-1.0, 1.0, 2.0], (n_u, n_t)) * (rng.random((n_u, n_t)) < 0.3)
    Ad[:4] = 0.0
    Ad[4:8] = rng.choice([1.0, 2.0], (4, n_t))  # dense rows
    Bd = rng.choice([-1.0, 1.0, 1.0, 2.0], (n_t, n_m)) * (rng.random((n_t, n_m)) < 0.15)
    Bd[:, -3:] = 1.0
    Fd = rng.choice([0.0, 1.0, -1.0], (n_u, n_m), p=[0.98, 0.01, 0.01])
    Ed = rng.random((n_u, n_m)) < 0.05
    w = rng.choice([0.0, 0.5, 1.0, 2.0], n_m, p=[0.1, 0.2, 0.5, 0.2])
    A, B = sp.csr_array(Ad.astype(dtype)), sp.csr_array(Bd.astype(dtype))
    for k in (1, 7, 64, 65, 200, 600):
        for thr in (None, 0.0, 1.5):
            res = ec.sparse_topk(A, B, k, merchant_weight=w, follows=sp.csr_array(Fd),
                                 exclude=sp.csr_array(Ed), threshold=thr, n_threads=2)
            ref = reference_topk(Ad, Bd, k, w=w, F=Fd, E=Ed, threshold=thr)
            assert_topk_equal(res, ref, score_dtype=dtype)


# ---------------------------------------------------------------------------------------------
# follows, exclude, merchant_weight
# ---------------------------------------------------------------------------------------------


def test_follows_add_candidates_and_score():
    A = sp.csr_array(np.array([[1.0, 0.0], [0.0, 0.0]]))
    B = sp.csr_array(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    F = sp.csr_array(np.array([[2.0, 0.0, 0.5], [0.0, -1.0, 0.0]]))
    res = ec.sparse_topk(A, B, 3, follows=F, follow_weight=2.0)
    # user 0: m0 = 1 + 2*2 = 5, m2 = 2*0.5 = 1; user 1 (empty A row): m1 = 2*-1 = -2
    assert res.counts.tolist() == [2, 1]
    assert res.indices.tolist() == [[0, 2, -1], [1, -1, -1]]
    assert res.scores[0, :2].tolist() == [5.0, 1.0]
    assert res.scores[1, 0] == -2.0
    assert_topk_equal(res, reference_topk(A, B, 3, F=F, follow_weight=2.0))


def test_follow_cancelling_interest_is_kept_with_zero():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[2.0, 1.0]]))
    F = sp.csr_array(np.array([[-2.0, 0.0]]))
    res = ec.sparse_topk(A, B, 2, follows=F)
    assert res.indices.tolist() == [[1, 0]]
    assert res.scores.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("follow_weight", [1.0, 0.5, 3.0])
def test_follows_random_exact(follow_weight):
    A, B = int_problem(21, n_users=30, n_tags=6, n_merchants=15)
    F = sp.csr_array(np.random.default_rng(2).choice([0, 0, 0, 1.0, -1.0, 2.0], (30, 15)))
    res = ec.sparse_topk(A, B, 6, follows=F, follow_weight=follow_weight)
    assert_topk_equal(res, reference_topk(A, B, 6, F=F, follow_weight=follow_weight))


def test_exclude_removes_candidates():
    A, B = int_problem(22, n_users=25, n_tags=6, n_merchants=12, density=0.6)
    rng = np.random.default_rng(3)
    Ed = rng.random((25, 12)) < 0.3
    E = sp.csr_array(Ed)
    res = ec.sparse_topk(A, B, 12, exclude=E)
    assert_topk_equal(res, reference_topk(A, B, 12, E=E))
    for u in range(25):
        got = res.indices[u, : res.counts[u]]
        assert not Ed[u, got].any()


def test_exclude_any_stored_entry_excludes():
    # Stored entries exclude whatever their value, explicit zeros included.
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[3.0, 2.0, 1.0, 4.0]]))
    E = sp.csr_array((np.array([0.0, 5.0]), np.array([0, 3]), np.array([0, 2])), shape=(1, 4))
    assert E.nnz == 2
    res = ec.sparse_topk(A, B, 4, exclude=E)
    assert res.indices.tolist() == [[1, 2, -1, -1]]


def test_exclude_of_followed_merchant():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[1.0, 0.0]]))
    F = sp.csr_array(np.array([[0.0, 5.0]]))
    E = sp.csr_array(np.array([[False, True]]))
    res = ec.sparse_topk(A, B, 2, follows=F, exclude=E)
    assert res.indices.tolist() == [[0, -1]]


def test_merchant_weight_scales_and_zero_weight_drops():
    A = sp.csr_array(np.array([[1.0, 1.0]]))
    B = sp.csr_array(np.array([[1.0, 2.0, 3.0, -1.0], [1.0, 0.0, 0.0, 0.0]]))
    w = np.array([0.5, 0.0, 2.0, 4.0])
    res = ec.sparse_topk(A, B, 4, merchant_weight=w)
    # m0 = 2*0.5 = 1, m1 dropped (w = 0), m2 = 6, m3 = -4
    assert res.indices.tolist() == [[2, 0, 3, -1]]
    assert res.scores[0, :3].tolist() == [6.0, 1.0, -4.0]


def test_zero_weight_drops_even_followed_merchants():
    A = sp.csr_array(np.array([[1.0]]))
    B = sp.csr_array(np.array([[1.0, 1.0]]))
    F = sp.csr_array(np.array([[0.0, 3.0]]))
    res = ec.sparse_topk(A, B, 2, follows=F, merchant_weight=np.array([1.0, 0.0]))
    assert res.indices.tolist() == [[0, -1]]


def test_all_zero_weights_give_empty_rows():
    A, B = int_problem(23)
    res = ec.sparse_topk(A, B, 5, merchant_weight=np.zeros(B.shape[1]))
    assert np.all(res.counts == 0)
    assert np.all(res.indices == -1)
    assert np.all(np.isneginf(res.scores))


def test_everything_together_close():
    A, B = random_problem(24, n_users=50, n_tags=12, n_merchants=40)
    rng = np.random.default_rng(4)
    F = random_sparse(5, (50, 40), 0.05)
    E = sp.csr_array(rng.random((50, 40)) < 0.1)
    w = rng.uniform(0, 2, 40) * (rng.random(40) < 0.8)
    for thr in (None, -0.1, 0.0, 0.2):
        res = ec.sparse_topk(A, B, 7, merchant_weight=w, follows=F, follow_weight=0.7,
                             exclude=E, threshold=thr)
        assert_topk_close(res, A, B, 7, w=w, F=F, follow_weight=0.7, E=E, threshold=thr)


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("da, db, expected", [
    (np.float32, np.float32, np.float32),
    (np.float32, np.float64, np.float64),
    (np.float64, np.float32, np.float64),
    (np.float64, np.float64, np.float64),
    (np.int64, np.float64, np.float64),
    (np.int32, np.float32, np.float64),
])
def test_score_dtype_rule(da, db, expected):
    A, B = int_problem(31, n_users=10, n_tags=5, n_merchants=8)
    A = A.astype(da)
    B = B.astype(db)
    res = ec.sparse_topk(A, B, 4)
    assert res.scores.dtype == expected
    assert res.indices.dtype == np.int32
    assert_topk_equal(res, reference_topk(A, B, 4))


def test_float32_work_stays_float32_with_float64_extras():
    # Weights and follows are cast to the score dtype: no silent upcast of float32 work.
    A, B = int_problem(32, n_users=10, n_tags=5, n_merchants=8, dtype=np.float32)
    F = sp.csr_array(np.eye(10, 8, dtype=np.float64))
    w = np.linspace(0.5, 2.0, 8)  # float64
    res = ec.sparse_topk(A, B, 4, follows=F, merchant_weight=w)
    assert res.scores.dtype == np.float32
    assert_topk_close(res, A, B, 4, F=F, w=w, score_dtype=np.float32)


def test_float32_scores_use_float32_weights():
    # With a float32 problem the weight is rounded to float32 before multiplying: the score
    # equals float32(interest) * float32(w) exactly.
    A = sp.csr_array(np.array([[1.0]], dtype=np.float32))
    B = sp.csr_array(np.array([[3.0]], dtype=np.float32))
    w = np.array([0.1])
    res = ec.sparse_topk(A, B, 1, merchant_weight=w)
    assert res.scores.dtype == np.float32
    assert res.scores[0, 0] == np.float32(3.0) * np.float32(0.1)


# ---------------------------------------------------------------------------------------------
# input formats, read-only inputs, no in-place modification
# ---------------------------------------------------------------------------------------------

_FORMATS = {
    "csr_array": sp.csr_array,
    "csr_matrix": sp.csr_matrix,
    "csc_array": sp.csc_array,
    "csc_matrix": sp.csc_matrix,
    "coo_array": sp.coo_array,
    "coo_matrix": sp.coo_matrix,
    "ndarray": lambda X: X.toarray(),
}


@pytest.mark.parametrize("fmt_a", list(_FORMATS))
@pytest.mark.parametrize("fmt_b", ["csr_array", "csc_matrix", "coo_array", "ndarray"])
def test_input_formats(fmt_a, fmt_b):
    A, B = int_problem(41, n_users=12, n_tags=6, n_merchants=9)
    res = ec.sparse_topk(_FORMATS[fmt_a](A), _FORMATS[fmt_b](B), 4)
    assert_topk_equal(res, reference_topk(A, B, 4))


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array", "coo_array", "ndarray"])
def test_follows_and_exclude_formats(fmt):
    A, B = int_problem(42, n_users=12, n_tags=6, n_merchants=9)
    rng = np.random.default_rng(5)
    F = sp.csr_array(rng.choice([0.0, 0.0, 0.0, 1.0, -2.0], (12, 9)))
    Ed = rng.random((12, 9)) < 0.2
    E = sp.csr_array(Ed)
    res = ec.sparse_topk(A, B, 4, follows=_FORMATS[fmt](F), exclude=_FORMATS[fmt](E))
    assert_topk_equal(res, reference_topk(A, B, 4, F=F, E=Ed))


def test_int64_index_arrays():
    A, B = int_problem(43)
    A64 = sp.csr_array((A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64)),
                       shape=A.shape)
    B64 = sp.csr_array((B.data, B.indices.astype(np.int64), B.indptr.astype(np.int64)),
                       shape=B.shape)
    assert A64.indices.dtype == np.int64
    res = ec.sparse_topk(A64, B64, 5)
    assert_topk_equal(res, reference_topk(A, B, 5))


def _freeze(X):
    for name in ("data", "indices", "indptr"):
        getattr(X, name).flags.writeable = False
    return X


def test_read_only_inputs():
    A, B = int_problem(44, n_users=30, n_tags=6, n_merchants=20)
    F = sp.csr_array(np.eye(30, 20))
    E = sp.csr_array(np.eye(30, 20, k=1, dtype=bool))
    w = np.linspace(0.0, 2.0, 20)
    expected = ec.sparse_topk(A, B, 5, follows=F, exclude=E, merchant_weight=w)
    A, B, F, E = (_freeze(X.copy()) for X in (A, B, F, E))
    w = w.copy()
    w.flags.writeable = False
    res = ec.sparse_topk(A, B, 5, follows=F, exclude=E, merchant_weight=w)
    assert_topk_equal(res, expected)
    assert_topk_close(res, A, B, 5, w=w, F=F, E=E)


def test_read_only_dense_inputs():
    A, B = int_problem(45)
    Ad, Bd = A.toarray(), B.toarray()
    Ad.flags.writeable = False
    Bd.flags.writeable = False
    res = ec.sparse_topk(Ad, Bd, 3)
    assert_topk_equal(res, reference_topk(A, B, 3))


def _snapshot(X):
    if sp.issparse(X):
        X = sp.csr_array(X) if X.format != "csr" else X
        return (X.data.copy(), X.indices.copy(), X.indptr.copy())
    return (np.array(X, copy=True),)


def test_inputs_not_modified():
    A, B = random_problem(46, n_users=20, n_tags=8, n_merchants=15)
    F = random_sparse(6, (20, 15), 0.1)
    E = sp.csr_array(np.eye(20, 15, dtype=bool))
    w = np.linspace(0.0, 2.0, 15)
    before = [_snapshot(X) for X in (A, B, F, E, w)]
    ec.sparse_topk(A, B, 4, follows=F, exclude=E, merchant_weight=w, threshold=-0.5)
    after = [_snapshot(X) for X in (A, B, F, E, w)]
    for b, a in zip(before, after):
        for x, y in zip(b, a):
            np.testing.assert_array_equal(x, y)


def _unsorted_with_duplicates():
    # Row 0: tags (2, 0, 2) -> tag 2 stored twice (1 + 2 = 3), unsorted.
    # Row 1: tags (1, 0) unsorted. Row 2: duplicate that cancels partially.
    data = np.array([1.0, 4.0, 2.0, 5.0, -1.0, 2.0, -1.0])
    indices = np.array([2, 0, 2, 1, 0, 1, 1], dtype=np.int32)
    indptr = np.array([0, 3, 5, 7], dtype=np.int32)
    return data, indices, indptr


@pytest.mark.parametrize("cls", [sp.csr_array, sp.csr_matrix])
def test_unsorted_and_duplicate_csr_indices_are_summed_like_scipy(cls):
    """Documented behaviour: non-canonical CSR input is canonicalised (duplicates summed, as
    scipy's ``toarray``/``sum_duplicates`` do) on a copy; the caller's arrays are untouched."""
    data, indices, indptr = _unsorted_with_duplicates()
    A = cls((data.copy(), indices.copy(), indptr.copy()), shape=(3, 3))
    _, B = int_problem(47, n_tags=3, n_merchants=10, density=0.7)
    res = ec.sparse_topk(A, B, 10)
    assert_topk_equal(res, reference_topk(A.toarray(), B, 10))
    # nothing changed in place
    np.testing.assert_array_equal(A.data, data)
    np.testing.assert_array_equal(A.indices, indices)
    np.testing.assert_array_equal(A.indptr, indptr)


def test_unsorted_merchant_csr_and_follows():
    _, B = int_problem(48, n_tags=4, n_merchants=8, density=0.7)
    # reverse the order of the column indices within each row of B
    Bu = B.copy()
    for r in range(Bu.shape[0]):
        s, e = Bu.indptr[r], Bu.indptr[r + 1]
        Bu.indices[s:e] = Bu.indices[s:e][::-1].copy()
        Bu.data[s:e] = Bu.data[s:e][::-1].copy()
    Bu = sp.csr_array((Bu.data, Bu.indices, Bu.indptr), shape=Bu.shape)  # flags unknown
    A = sp.csr_array(np.array([[1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 1.0, 1.0]]))
    F = sp.csr_array((np.array([1.0, 1.0, 2.0]), np.array([5, 1, 5]), np.array([0, 3, 3])),
                     shape=(2, 8))
    res = ec.sparse_topk(A, Bu, 8, follows=F)
    assert_topk_equal(res, reference_topk(A, B, 8, F=F.toarray()))


def test_read_only_unsorted_input():
    data, indices, indptr = _unsorted_with_duplicates()
    A = sp.csr_array((data, indices, indptr), shape=(3, 3))
    _freeze(A)
    _, B = int_problem(49, n_tags=3, n_merchants=6, density=0.7)
    res = ec.sparse_topk(A, B, 6)
    assert_topk_equal(res, reference_topk(dense(A), B, 6))


# ---------------------------------------------------------------------------------------------
# n_threads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [None, 1, 2, 3, 8])
def test_n_threads_values_give_identical_results(n_threads):
    A, B = random_problem(51, n_users=200, n_tags=20, n_merchants=150)
    base = ec.sparse_topk(A, B, 8, n_threads=1)
    res = ec.sparse_topk(A, B, 8, n_threads=n_threads)
    assert_topk_equal(res, base)
    assert_topk_close(res, A, B, 8)


def test_numpy_integer_k_and_n_threads():
    A, B = int_problem(52)
    res = ec.sparse_topk(A, B, np.int64(3), n_threads=np.int32(2))
    assert_topk_equal(res, reference_topk(A, B, 3))


# ---------------------------------------------------------------------------------------------
# w is applied to the finished sum: (sum_t A*B + fw*F) * w, not sum_t A*(B*w)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.4017482428623452, 0.1, 0.7, 1 / 3, 0.123456789])
def test_exact_cancellation_with_non_dyadic_weight(w):
    # (7*9 + 9*(-7)) * w == 0 exactly, whatever w is; the candidate stays with score 0 and a
    # threshold of 0 drops it (0 is not > 0).
    A = sp.csr_array(np.array([[7.0, 9.0]]))
    B = sp.csr_array(np.array([[9.0, 1.0], [-7.0, 0.0]]))
    wv = np.array([w, w])
    res = ec.sparse_topk(A, B, 2, merchant_weight=wv)
    assert res.indices.tolist() == [[1, 0]]
    assert res.scores[0, 1] == 0.0
    assert res.scores[0, 0] == 7.0 * w
    res = ec.sparse_topk(A, B, 2, merchant_weight=wv, threshold=0.0)
    assert res.counts.tolist() == [1]
    assert res.indices.tolist() == [[1, -1]]


def test_exact_cancellation_with_trust_in_ranker():
    A = sp.csr_array(np.array([[7.0, 9.0], [3.0, 5.0]]))
    B = sp.csr_array(np.array([[9.0, 5.0], [-7.0, -3.0]]))
    r = ec.Ranker(B, trust=np.array([0.4017482428623452, 0.7]), beta=1.3)
    res = r.topk(A, k=2)
    # user 0: m0 = 0, m1 = (45 - 27) * w1 > 0; user 1: m0 = (27 - 35) w0 < 0, m1 = 0
    assert res.indices.tolist() == [[1, 0], [1, 0]]
    assert res.scores[0, 1] == 0.0
    assert res.scores[1, 0] == 0.0
    one = r.topk_one([0, 1], [7.0, 9.0], k=2)
    assert one.scores[0, 1] == 0.0


@pytest.mark.parametrize("dtype, a, b_col1, w", [
    (np.float64, [5.0, 12.0, 16.0], [12.0, -5.0, 2.0], 0.5144009227062943),
    (np.float32, [17.0, 12.0, 6.0], [36.0, -51.0, 1.0], 0.6492636799812317),
])
def test_equal_scores_after_weighting_tie_by_index(dtype, a, b_col1, w):
    # Merchant 1's interest cancels down to the same sum as merchant 0's; with the same w both
    # scores are equal, so the tie must resolve to merchant 0 first.
    A = sp.csr_array(np.array([a], dtype=dtype))
    B = sp.csr_array(np.array([[0.0, b_col1[0]], [0.0, b_col1[1]], [b_col1[2], b_col1[2]]],
                              dtype=dtype))
    sum0 = a[2] * b_col1[2]
    assert a[0] * b_col1[0] + a[1] * b_col1[1] + sum0 == sum0
    res = ec.sparse_topk(A, B, 2, merchant_weight=np.array([w, w]))
    expected = np.asarray(sum0, dtype=dtype) * np.asarray(w, dtype=dtype)
    assert res.indices.tolist() == [[0, 1]]
    assert res.scores[0].tolist() == [expected, expected]


@pytest.mark.parametrize("n", [5_000, 100_000])
@pytest.mark.parametrize("k", [1, 10, 100, 700])
def test_many_equal_scores_select_lowest_indices(n, k):
    # every group maximum equal (the selection bar's value-only introselect sees only ties),
    # then two tiers of scores: ties must go to the lower merchant index in both cases
    A = sp.csr_array(np.ones((2, 1), np.float32))
    B = sp.csr_array(np.ones((1, n), np.float32))
    res = ec.sparse_topk(A, B, k)
    assert res.indices.tolist() == [list(range(k))] * 2
    w = np.ones(n)
    w[::7] = 2.0
    res = ec.sparse_topk(A, B, k, merchant_weight=w)
    expected = sorted(range(n), key=lambda m: (-w[m], m))[:k]
    assert res.indices[0].tolist() == expected
