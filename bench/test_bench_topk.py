"""pytest-benchmark suite: ecomcore's top-k against scipy and sparse_dot_topn, same process.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): tiny markets; ``pytest bench --benchmark-disable -q`` runs every
  benchmark once in seconds, as a smoke test (CI).
* ``full``: dense regime (20k users, 2k tags, 20k merchants, shared tag popularity) and sparse
  regime (200k users, 5k tags, 100k merchants, independent popularity).

Benchmarks are grouped per regime and k so pytest-benchmark's table compares ecomcore with the
baselines side by side::

    ECOMCORE_BENCH_SIZE=full pytest bench --benchmark-group-by=group --benchmark-columns=median
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from _common import Problem, bench_sizes, csr_to_padded, problem, sparse_dot_topn

import ecomcore as ec
from ecomcore.datasets import compare_topk, scipy_topk

SIZES = bench_sizes()
REGIMES = list(SIZES)
SDT = sparse_dot_topn()
needs_sdt = pytest.mark.skipif(SDT is None, reason="sparse-dot-topn is not installed")
# slow baselines: few rounds (one with --benchmark-disable)
SLOW = dict(rounds=3, iterations=1, warmup_rounds=0)


@pytest.fixture(scope="module", params=REGIMES)
def prob(request) -> Problem:
    return problem(request.param, SIZES)


@pytest.fixture(scope="module")
def ranker(prob: Problem) -> ec.Ranker:
    return ec.Ranker(prob.merchant_tags, trust=prob.trust, banned=prob.banned)


@pytest.fixture(scope="module")
def peer_inputs(prob: Problem):
    return sp.csr_matrix(prob.user_tags), sp.csr_matrix(prob.folded)


def _group(benchmark, prob: Problem, k: int) -> None:
    benchmark.group = f"{prob.name} {prob.n_users}u k={k}"
    benchmark.extra_info["multiply_adds"] = prob.multiply_adds
    benchmark.extra_info["users"] = prob.n_users


def test_agreement(prob: Problem, ranker: ec.Ranker, peer_inputs) -> None:
    """Not a benchmark: every method returns the same top-k sets (ties allowed)."""
    k = 10
    ours = ranker.topk(prob.user_tags, k, n_threads=1)
    fn = ec.sparse_topk(
        prob.user_tags, prob.merchant_tags, k, merchant_weight=prob.weight, n_threads=2
    )
    np.testing.assert_array_equal(fn.indices, ours.indices)
    np.testing.assert_array_equal(fn.scores, ours.scores)
    s_idx, s_sc = scipy_topk(prob.user_tags, prob.folded, k)
    assert compare_topk(ours.indices, ours.scores, s_idx, s_sc) == 0
    if SDT is not None:
        a, b = peer_inputs
        c = SDT(a, b, top_n=k, threshold=-np.inf, sort=True, n_threads=1)
        d_idx, d_sc = csr_to_padded(c, ours.width)
        assert compare_topk(ours.indices, ours.scores, d_idx, d_sc) == 0


@pytest.mark.parametrize("n_threads", [1, 2])
def test_sparse_topk(benchmark, prob: Problem, n_threads: int) -> None:
    _group(benchmark, prob, 10)
    res = benchmark(
        ec.sparse_topk,
        prob.user_tags,
        prob.merchant_tags,
        10,
        merchant_weight=prob.weight,
        n_threads=n_threads,
    )
    assert res.indices.shape == (prob.n_users, min(10, prob.n_merchants))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("k", [10, 100])
def test_ranker_topk(benchmark, prob: Problem, ranker: ec.Ranker, k: int, n_threads: int) -> None:
    _group(benchmark, prob, k)
    res = benchmark(ranker.topk, prob.user_tags, k, n_threads=n_threads)
    assert res.n_rows == prob.n_users


@pytest.mark.parametrize("k", [10, 100])
def test_scipy_topk(benchmark, prob: Problem, k: int) -> None:
    _group(benchmark, prob, k)
    idx, _ = benchmark.pedantic(scipy_topk, args=(prob.user_tags, prob.folded, k), **SLOW)
    assert idx.shape[0] == prob.n_users


@needs_sdt
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("k", [10, 100])
def test_sparse_dot_topn(benchmark, prob: Problem, peer_inputs, k: int, n_threads: int) -> None:
    _group(benchmark, prob, k)
    a, b = peer_inputs
    c = benchmark.pedantic(
        SDT,
        args=(a, b),
        kwargs=dict(top_n=k, threshold=-np.inf, sort=True, n_threads=n_threads),
        **SLOW,
    )
    assert c.shape == (prob.n_users, prob.n_merchants)


def _user_cycle(prob: Problem, n: int = 512):
    rng = np.random.default_rng(0)
    users = rng.choice(prob.n_users, size=min(n, prob.n_users), replace=False)
    return itertools.cycle([prob.user_row(int(u)) for u in users])


def test_topk_one(benchmark, prob: Problem, ranker: ec.Ranker) -> None:
    benchmark.group = f"{prob.name} one user k=10 ({prob.n_merchants} merchants)"
    rows = _user_cycle(prob)

    def call():
        ids, wts = next(rows)
        return ranker.topk_one(ids, wts, 10)

    res = benchmark(call)
    assert res.n_rows == 1


def test_scipy_one_row(benchmark, prob: Problem) -> None:
    benchmark.group = f"{prob.name} one user k=10 ({prob.n_merchants} merchants)"
    n_tags = prob.user_tags.shape[1]
    b = prob.folded
    rows = itertools.cycle(
        [
            sp.csr_array((w, i, np.array([0, i.size])), shape=(1, n_tags))
            for i, w in itertools.islice(_user_cycle(prob), 512)
        ]
    )

    def call():
        c = next(rows) @ b
        v = c.data
        k = min(10, v.size)
        part = np.argpartition(v, v.size - k)[v.size - k :] if v.size > k else np.arange(v.size)
        return c.indices[part[np.argsort(-v[part], kind="stable")]]

    benchmark(call)
