"""pytest-benchmark suite: audience targeting (issue 7) against scipy and sparse_dot_topn.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 20,000 users, 2,000 tags, 20,000 merchants, 100 merchants queried, top
  100 users each; ``pytest bench/test_bench_audience.py --benchmark-disable -q`` runs every
  benchmark once in seconds (smoke test).
* ``full``: the issue's problem: 1M users, 5,000 tags, 100,000 merchants (sparse regime), 1,000
  merchants, top 1,000 users each.

Every method gets the same transposed problem, prepared outside the timed call; the grouped
table compares them side by side::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_audience.py --benchmark-group-by=group \\
        --benchmark-columns=median
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from _common import csr_to_padded, sparse_dot_topn

import ecomcore as ec
from ecomcore.datasets import compare_topk, scipy_topk, synthetic_market

_MODE = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
if _MODE not in ("quick", "full"):
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {_MODE!r}")
# (users, tags, merchants, merchants queried, k)
SIZE = (1_000_000, 5_000, 100_000, 1_000, 1_000) if _MODE == "full" else (20_000, 2_000, 20_000, 100, 100)
SDT = sparse_dot_topn()
needs_sdt = pytest.mark.skipif(SDT is None, reason="sparse-dot-topn is not installed")
SLOW = dict(rounds=3, iterations=1, warmup_rounds=0)


class _Audience:
    def __init__(self) -> None:
        n_u, n_t, n_m, n_q, self.k = SIZE
        m = synthetic_market(n_u, n_t, n_m, seed=0, shared_popularity=False)
        self.ranker = ec.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned)
        self.user_tags = m.user_tags
        self.index = ec.AudienceIndex(m.user_tags)
        self.mids = np.sort(np.random.default_rng(0).choice(n_m, n_q, replace=False))
        w = self.ranker.merchant_weight.astype(np.float32)[self.mids]
        rows = sp.csr_array(sp.diags_array(w) @ sp.csr_array(m.merchant_tags.T.tocsr()[self.mids]))
        rows.eliminate_zeros()
        self.rows = sp.csr_matrix(rows.astype(np.float32))
        self.at = sp.csr_matrix(m.user_tags.T.tocsr().astype(np.float32))
        self.group = f"audience {n_q} merchants x {n_u} users k={self.k}"


@pytest.fixture(scope="module")
def prob() -> _Audience:
    return _Audience()


def test_agreement(prob: _Audience) -> None:
    """Not a benchmark: every method returns the same audiences (ties allowed)."""
    ours = prob.ranker.audience(prob.index, prob.mids, prob.k, n_threads=1)
    two = prob.ranker.audience(prob.index, prob.mids, prob.k, n_threads=2)
    np.testing.assert_array_equal(two.indices, ours.indices)
    s_idx, s_sc = scipy_topk(prob.rows, prob.at, prob.k)
    assert compare_topk(ours.indices, ours.scores, s_idx, s_sc) == 0
    if SDT is not None:
        c = SDT(prob.rows, prob.at, top_n=prob.k, threshold=-np.inf, sort=True, n_threads=1)
        d_idx, d_sc = csr_to_padded(c, ours.width)
        assert compare_topk(ours.indices, ours.scores, d_idx, d_sc) == 0


@pytest.mark.parametrize("n_threads", [1, 2])
def test_ecomcore_audience(benchmark, prob: _Audience, n_threads: int) -> None:
    benchmark.group = prob.group
    res = benchmark(prob.ranker.audience, prob.index, prob.mids, prob.k, n_threads=n_threads)
    assert res.n_rows == prob.mids.size


def test_ecomcore_audience_capped(benchmark, prob: _Audience) -> None:
    benchmark.group = prob.group
    res = benchmark.pedantic(
        prob.ranker.audience, args=(prob.index, prob.mids, prob.k), kwargs=dict(n_threads=1, max_per_user=2), **SLOW
    )
    assert np.bincount(res.indices[res.indices >= 0]).max() <= 2


def test_scipy_transposed(benchmark, prob: _Audience) -> None:
    benchmark.group = prob.group
    idx, _ = benchmark.pedantic(scipy_topk, args=(prob.rows, prob.at, prob.k), **SLOW)
    assert idx.shape[0] == prob.mids.size


@needs_sdt
@pytest.mark.parametrize("n_threads", [1, 2])
def test_sparse_dot_topn(benchmark, prob: _Audience, n_threads: int) -> None:
    benchmark.group = prob.group
    c = benchmark.pedantic(
        SDT,
        args=(prob.rows, prob.at),
        kwargs=dict(top_n=prob.k, threshold=-np.inf, sort=True, n_threads=n_threads),
        **SLOW,
    )
    assert c.shape == (prob.mids.size, prob.at.shape[1])


def test_audience_index_build(benchmark, prob: _Audience) -> None:
    benchmark.group = prob.group + " (prepare users side)"
    index = benchmark.pedantic(ec.AudienceIndex, args=(prob.user_tags,), **SLOW)
    assert index.n_users == prob.at.shape[1]
