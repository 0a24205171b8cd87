"""Plain, dense NumPy references for the ecomcore kernels, and comparison helpers.

Everything here is deliberately simple: the whole users x merchants score matrix is built in
float64 and every row is sorted with ``np.lexsort``.  Only use it on small problems.

Semantics (issue 2, item 3):

    score(u, m) = (sum_t A[u, t] * B[t, m] + follow_weight * F[u, m]) * w[m]

A merchant is a *candidate* for user u when it is reached structurally (some A[u, t] != 0 with
B[t, m] != 0, or F[u, m] != 0), is not excluded for u (any stored entry of a sparse ``exclude``,
any non-zero entry of a dense one), and has w[m] > 0.  Candidates with negative scores or
scores that cancel to exactly 0 are kept.  ``threshold`` keeps scores strictly greater than it.
Each row keeps the best ``min(k, n_merchants)`` candidates sorted by (-score, index).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = [
    "RefTopK",
    "assert_topk_close",
    "assert_topk_equal",
    "assert_topk_wellformed",
    "dense",
    "reference_scores",
    "reference_topk",
    "reference_weights",
]


class RefTopK(NamedTuple):
    indices: np.ndarray  # (n_users, width) int64, -1 padded
    scores: np.ndarray  # (n_users, width) float64, -inf padded
    counts: np.ndarray  # (n_users,) int64


def dense(X) -> np.ndarray:
    """Dense float64 copy of a scipy sparse matrix/array or array-like (duplicates summed)."""
    if sp.issparse(X):
        return np.asarray(X.toarray(), dtype=np.float64)
    return np.array(X, dtype=np.float64)


def _exclude_mask(E, shape) -> np.ndarray:
    if E is None:
        return np.zeros(shape, dtype=bool)
    if sp.issparse(E):
        # Any *stored* entry excludes, whatever its value (explicit zeros included).
        coo = sp.coo_array(E)
        mask = np.zeros(shape, dtype=bool)
        mask[np.asarray(coo.row), np.asarray(coo.col)] = True
        return mask
    return np.asarray(E) != 0


def reference_weights(n_merchants, *, trust=None, beta=1.0, boost=None, banned=None,
                      min_trust=0.0) -> np.ndarray:
    """w[m] = 0 if banned[m] or trust[m] < min_trust else trust[m]**beta * boost[m] (float64)."""
    t = np.ones(n_merchants) if trust is None else np.asarray(trust, dtype=np.float64)
    g = np.ones(n_merchants) if boost is None else np.asarray(boost, dtype=np.float64)
    ban = np.zeros(n_merchants, dtype=bool)
    if banned is not None:
        b = np.asarray(banned)
        if b.dtype == bool:
            ban |= b
        else:
            ban[b.astype(np.int64)] = True
    w = np.power(t, float(beta)) * g
    w[ban | (t < min_trust)] = 0.0
    return w


def reference_scores(A, B, *, w=None, F=None, follow_weight=1.0, E=None):
    """Dense (score, candidate, magnitude) matrices, all (n_users, n_merchants), float64.

    ``candidate`` ignores ``threshold``.  ``magnitude`` is the same formula with every term
    replaced by its absolute value: the scale against which rounding errors are measured.
    """
    Ad = dense(A)
    Bd = dense(B)
    n_users, n_merchants = Ad.shape[0], Bd.shape[1]
    w = np.ones(n_merchants) if w is None else np.asarray(w, dtype=np.float64)
    interest = Ad @ Bd
    reach = ((Ad != 0).astype(np.int64) @ (Bd != 0).astype(np.int64)) > 0
    mag_pre = np.abs(Ad) @ np.abs(Bd)
    pre = interest
    if F is not None:
        Fd = dense(F)
        reach |= Fd != 0
        pre = interest + follow_weight * Fd
        mag_pre = mag_pre + abs(follow_weight) * np.abs(Fd)
    score = pre * w[None, :]
    magnitude = mag_pre * np.abs(w)[None, :]
    cand = reach & (w > 0)[None, :] & ~_exclude_mask(E, (n_users, n_merchants))
    return score, cand, magnitude


def reference_topk(A, B, k, *, w=None, F=None, follow_weight=1.0, E=None,
                   threshold=None, dtype=None) -> RefTopK:
    """Dense reference of ``ecomcore.sparse_topk``; returns (indices, scores, counts).

    With ``dtype`` (e.g. float32) each float64 score is first rounded to that dtype, as a kernel
    working in it produces when the sum is exact and ``w`` is applied last (one rounding); the
    threshold and the order then use the rounded scores.
    """
    score, cand, _ = reference_scores(A, B, w=w, F=F, follow_weight=follow_weight, E=E)
    if dtype is not None:
        score = score.astype(dtype).astype(np.float64)
    if threshold is not None:
        cand = cand & (score > threshold)
    n_users, n_merchants = score.shape
    width = min(int(k), n_merchants)
    indices = np.full((n_users, width), -1, dtype=np.int64)
    scores = np.full((n_users, width), -np.inf, dtype=np.float64)
    counts = np.zeros(n_users, dtype=np.int64)
    for u in range(n_users):
        idx = np.flatnonzero(cand[u])
        order = np.lexsort((idx, -score[u, idx]))  # last key is primary: -score, then index
        top = idx[order][:width]
        c = len(top)
        indices[u, :c] = top
        scores[u, :c] = score[u, top]
        counts[u] = c
    return RefTopK(indices, scores, counts)


# ---------------------------------------------------------------------------------------------
# comparison helpers
# ---------------------------------------------------------------------------------------------


def assert_topk_wellformed(res, n_rows, n_cols, k, score_dtype=None):
    """Layout checks that hold for every TopK, independent of the values."""
    width = min(int(k), n_cols)
    assert res.indices.shape == (n_rows, width), (res.indices.shape, (n_rows, width))
    assert res.scores.shape == (n_rows, width), (res.scores.shape, (n_rows, width))
    assert res.counts.shape == (n_rows,), res.counts.shape
    assert res.indices.dtype == np.int32, res.indices.dtype
    assert np.issubdtype(res.counts.dtype, np.integer), res.counts.dtype
    if score_dtype is not None:
        assert res.scores.dtype == np.dtype(score_dtype), (res.scores.dtype, score_dtype)
    assert int(res.n_cols) == n_cols
    assert res.n_rows == n_rows
    assert res.width == width
    for u in range(n_rows):
        c = int(res.counts[u])
        assert 0 <= c <= width
        idx = res.indices[u]
        sc = res.scores[u]
        assert np.all(idx[c:] == -1), f"row {u}: padding indices {idx}"
        assert np.all(np.isneginf(sc[c:])), f"row {u}: padding scores {sc}"
        valid = idx[:c]
        vs = sc[:c]
        assert np.all((valid >= 0) & (valid < n_cols)), f"row {u}: indices {idx}"
        assert len(np.unique(valid)) == c, f"row {u}: duplicate indices {idx}"
        assert np.all(np.isfinite(vs)), f"row {u}: non-finite scores {sc}"
        if c > 1:
            assert np.all(vs[:-1] >= vs[1:]), f"row {u}: not sorted {sc}"
            tie = vs[:-1] == vs[1:]
            assert np.all(valid[:-1][tie] < valid[1:][tie]), f"row {u}: ties not by index {idx}"


def assert_topk_equal(res, ref, *, score_dtype=None):
    """Exact comparison (use with exactly representable inputs, e.g. small dyadic numbers)."""
    n_rows, width = ref.indices.shape
    if score_dtype is not None:
        assert res.scores.dtype == np.dtype(score_dtype), (res.scores.dtype, score_dtype)
    np.testing.assert_array_equal(res.counts, ref.counts)
    np.testing.assert_array_equal(res.indices, ref.indices)
    np.testing.assert_array_equal(res.scores, ref.scores.astype(res.scores.dtype))


def assert_topk_close(res, A, B, k, *, w=None, F=None, follow_weight=1.0, E=None,
                      threshold=None, rtol=None, score_dtype=None):
    """Compare a TopK with the dense reference up to floating-point tolerance.

    The tolerance of entry (u, m) is ``rtol * magnitude[u, m]`` (magnitude: the score formula
    with absolute values), so cancellations are judged against the size of the terms that
    cancelled.  Near-ties are handled honestly:

    * every returned merchant must be a candidate whose reference score is within tolerance of
      the returned score (and not clearly at or below ``threshold``);
    * every candidate clearly above ``threshold`` must be returned when the row is not full;
    * when the row is full, no candidate left out may be clearly better than a returned one.
    """
    score, cand, mag = reference_scores(A, B, w=w, F=F, follow_weight=follow_weight, E=E)
    n_rows, n_cols = score.shape
    if score_dtype is None:
        score_dtype = res.scores.dtype
    if rtol is None:
        rtol = 1e-5 if np.dtype(score_dtype) == np.float32 else 1e-9
    assert_topk_wellformed(res, n_rows, n_cols, k, score_dtype)
    width = min(int(k), n_cols)
    tol = rtol * mag + 1e-300
    if threshold is None:
        must = cand
        maybe = cand
    else:
        must = cand & (score > threshold + tol)
        maybe = cand & (score > threshold - tol)
    for u in range(n_rows):
        c = int(res.counts[u])
        got = res.indices[u, :c].astype(np.int64)
        got_sc = res.scores[u, :c].astype(np.float64)
        assert np.all(maybe[u, got]), (
            f"row {u}: returned non-candidates {got[~maybe[u, got]]}; candidates "
            f"{np.flatnonzero(cand[u])}")
        err = np.abs(got_sc - score[u, got])
        assert np.all(err <= tol[u, got]), (
            f"row {u}: scores {got_sc} vs reference {score[u, got]} (tol {tol[u, got]})")
        returned = np.zeros(n_cols, dtype=bool)
        returned[got] = True
        left_out = np.flatnonzero(must[u] & ~returned)
        if c < width:
            assert len(left_out) == 0, f"row {u}: missing candidates {left_out} (count {c})"
        elif len(left_out):
            worst_returned = np.min(score[u, got] + tol[u, got])
            best_left = np.max(score[u, left_out] - tol[u, left_out])
            assert best_left <= worst_returned, (
                f"row {u}: left out {left_out} with scores {score[u, left_out]} better than "
                f"returned {got} with scores {score[u, got]}")
