"""pytest-benchmark suite: ecomcore.rerank_exposure against a NumPy/Python cap re-ranker.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 3,000 users x 100 candidates; ``pytest bench --benchmark-disable -q``
  runs every benchmark once in seconds, as a smoke test.
* ``full``: 1,000,000 users x 100 candidates (building them with ``Ranker.topk`` takes about a
  minute); the NumPy/Python baseline runs on the first 20,000 users only (it needs ~10 us per
  user and pass).

Candidates: ``Ranker.topk(A, k=100)`` on the sparse synthetic market (20,000 merchants);
k = 10 at ``target_gini = plain Gini - 0.15``, one thread::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_exposure.py --benchmark-group-by=group \\
        --benchmark-columns=median
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from exposure_compare import baseline_pass, baseline_search, head, market_candidates, serving_order

import ecomcore as ec

FULL = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() == "full"
N_USERS = 1_000_000 if FULL else 3_000
N_BASELINE = 20_000 if FULL else 1_000
K = 10
DROP = 0.15
SLOW = dict(rounds=1, iterations=1, warmup_rounds=0)


@pytest.fixture(scope="module")
def cand() -> ec.TopK:
    return market_candidates(N_USERS, 100)


@pytest.fixture(scope="module")
def target(cand: ec.TopK) -> float:
    return ec.rerank_exposure(cand, K)[1].gini_before - DROP


@pytest.fixture(scope="module")
def sub(cand: ec.TopK) -> tuple:
    s = head(cand, N_BASELINE)
    return s, ec.rerank_exposure(s, K)[1].gini_before - DROP


def test_agreement(sub) -> None:
    """Not a benchmark: the baseline's lists at ecomcore's cap are ecomcore's lists."""
    s, target = sub
    out, rep = ec.rerank_exposure(s, K, target_gini=target, method="cap", n_threads=1)
    _, lists = baseline_pass(s, K, serving_order(s.n_rows, 0), rep.cap)
    np.testing.assert_array_equal(lists, np.where(out.valid_mask(), out.indices, -1))


@pytest.mark.parametrize("method", ["cap", "penalty"])
def test_ecomcore(benchmark, cand: ec.TopK, target: float, method: str) -> None:
    benchmark.group = f"rerank_exposure {cand.n_rows} users x {cand.width} -> {K}"
    out, rep = benchmark(ec.rerank_exposure, cand, K, target_gini=target, method=method, n_threads=1)
    benchmark.extra_info.update(
        gini_before=rep.gini_before, gini_after=rep.gini_after, score_kept=rep.score_kept, passes=rep.passes
    )
    assert out.n_rows == cand.n_rows


def test_ecomcore_subsample(benchmark, sub) -> None:
    s, target = sub
    benchmark.group = f"cap mechanism {s.n_rows} users x {s.width} -> {K}"
    out, _ = benchmark(ec.rerank_exposure, s, K, target_gini=target, method="cap", n_threads=1)
    assert out.n_rows == s.n_rows


def test_numpy_baseline_subsample(benchmark, sub) -> None:
    s, target = sub
    benchmark.group = f"cap mechanism {s.n_rows} users x {s.width} -> {K}"
    cap, lists, passes = benchmark.pedantic(baseline_search, args=(s, K, target), **SLOW)
    benchmark.extra_info["passes"] = passes
    assert lists.shape == (s.n_rows, K)
