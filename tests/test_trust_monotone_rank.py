"""Raising a merchant's trust never lowers its rank (non-negative interest, beta >= 0).

score(u, m) = interest(u, m) * trust[m] ** beta * boost[m]: with interest >= 0 and beta >= 0 a
higher trust can only raise m's score (or keep it), and ties are broken by merchant index, so m
keeps every place it had; a merchant lifted over ``min_trust`` can only appear, never vanish.
Checked on the full ranking (k = number of merchants) of every user.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import ecomcore as ec


def _positions(top: ec.TopK, m: int) -> np.ndarray:
    """Rank of merchant m in each row (number of merchants ahead of it), n_cols when absent."""
    pos = np.full(top.indices.shape[0], top.n_cols, dtype=np.int64)
    rows, cols = np.nonzero(top.indices == m)
    pos[rows] = cols
    return pos


@st.composite
def _markets(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_users = draw(st.integers(1, 12))
    n_tags = draw(st.integers(1, 8))
    n_merchants = draw(st.integers(1, 15))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    # non-negative interest with many exact ties (small integers) and some continuous values
    A = rng.integers(0, 3, (n_users, n_tags)) * (rng.random((n_users, n_tags)) < 0.5)
    B = rng.integers(0, 3, (n_tags, n_merchants)) * (rng.random((n_tags, n_merchants)) < 0.5)
    if draw(st.booleans()):
        A = A * rng.random((n_users, n_tags))
    trust = rng.choice([0.0, 0.1, 0.25, 0.5, 0.5, 0.9, 1.0], n_merchants)
    beta = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7]))
    boost = rng.choice([1.0, 1.0, 1.05, 1.1], n_merchants)
    min_trust = draw(st.sampled_from([0.0, 0.0, 0.3]))
    m = draw(st.integers(0, n_merchants - 1))
    new = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.75, 1.0]))
    return (
        sp.csr_array(A.astype(dtype)),
        sp.csr_array(B.astype(dtype)),
        trust,
        beta,
        boost,
        min_trust,
        m,
        max(new, trust[m]),
    )


@settings(max_examples=150)
@given(_markets())
def test_raising_trust_never_lowers_rank(market):
    A, B, trust, beta, boost, min_trust, m, new_trust = market
    n_m = B.shape[1]
    before = ec.Ranker(B, trust=trust, beta=beta, boost=boost, min_trust=min_trust).topk(A, k=n_m)
    raised = trust.copy()
    raised[m] = new_trust
    after = ec.Ranker(B, trust=raised, beta=beta, boost=boost, min_trust=min_trust).topk(A, k=n_m)
    assert np.all(_positions(after, m) <= _positions(before, m))
    # its score never drops either
    sb = np.where(before.indices == m, before.scores, -np.inf).max(axis=1)
    sa = np.where(after.indices == m, after.scores, -np.inf).max(axis=1)
    assert np.all(sa >= sb)


def test_raising_trust_moves_a_merchant_up():
    # the property is not vacuous: a big enough raise overtakes a competitor
    A = sp.csr_array(np.array([[1.0, 1.0]]))
    B = sp.csr_array(np.array([[2.0, 0.0], [0.0, 1.0]]))  # merchant 0 interest 2, merchant 1 interest 1
    low = ec.Ranker(B, trust=np.array([1.0, 0.4])).topk(A, k=2)
    high = ec.Ranker(B, trust=np.array([1.0, 0.9]))
    assert low.indices[0].tolist() == [0, 1]
    hi = high.topk(A, k=2)
    assert hi.indices[0].tolist() == [0, 1]
    higher = ec.Ranker(B, trust=np.array([0.4, 1.0])).topk(A, k=2)
    assert higher.indices[0].tolist() == [1, 0]
