"""pytest-benchmark suite: the interest fold against NumPy/SciPy formulations, same process.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 2,000 users, 500 items, 100 tags, 20,000 events; ``pytest
  bench/test_bench_interest.py --benchmark-disable -q`` runs every benchmark once in seconds
  (smoke test).
* ``full``: 1M users, 100k items with 1-3 tags each, 5k tags, 10M events (as
  ``bench/interest_compare.py``).

Benchmarks are grouped per scenario so the table compares ecomcore with the baselines::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_interest.py --benchmark-group-by=group \\
        --benchmark-columns=median,min,rounds
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from interest_compare import (
    FULL,
    TINY,
    Problem,
    ecomcore_sums,
    fold_chunks_ecomcore,
    fold_chunks_scipy,
    max_rel_diff,
    scipy_coo,
    scipy_spgemm,
)


def _sizes() -> dict:
    mode = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
    if mode == "quick":
        return TINY
    if mode == "full":
        return FULL
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {mode!r}")


SIZES = _sizes()
# big inputs: few rounds (one with --benchmark-disable)
SLOW = dict(rounds=3, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def prob() -> Problem:
    return Problem(**SIZES)


@pytest.fixture(scope="module")
def chunks(prob: Problem) -> list:
    return prob.chunks(10)


@pytest.fixture(scope="module")
def full_state(prob: Problem):
    return prob.model.fold(prob.events, prob.item_tags)


def _group(benchmark, prob: Problem, scenario: str, n_events: int) -> None:
    benchmark.group = f"interest {scenario} ({prob.n_users} users, {n_events} events)"
    benchmark.extra_info["events"] = n_events
    benchmark.extra_info["pairs"] = prob.pairs


def test_agreement(prob: Problem, chunks: list, full_state) -> None:
    """Not a benchmark: every method gives the same decayed sums."""
    ours = ecomcore_sums(prob, full_state)
    assert max_rel_diff(ours, scipy_coo(prob, prob.events)) <= 1e-9
    assert max_rel_diff(ours, scipy_spgemm(prob, prob.events)) <= 1e-9
    assert max_rel_diff(ours, ecomcore_sums(prob, fold_chunks_ecomcore(prob, chunks))) <= 1e-9


@pytest.mark.parametrize("method", ["ecomcore", "scipy-coo", "scipy-spgemm"])
def test_one_fold(benchmark, prob: Problem, method: str) -> None:
    _group(benchmark, prob, "one fold", prob.n)
    fn = {
        "ecomcore": lambda: prob.model.fold(prob.events, prob.item_tags),
        "scipy-coo": lambda: scipy_coo(prob, prob.events),
        "scipy-spgemm": lambda: scipy_spgemm(prob, prob.events),
    }[method]
    benchmark.pedantic(fn, **SLOW)


@pytest.mark.parametrize("method", ["ecomcore", "ecomcore-reserved", "scipy-coo", "scipy-spgemm"])
def test_ten_incremental_folds(benchmark, prob: Problem, chunks: list, full_state, method: str) -> None:
    _group(benchmark, prob, "10 incremental folds", prob.n)

    def reserved():
        state = prob.model.new_state(prob.n_users, prob.n_tags).reserve(full_state.n_entries)
        for ev in chunks:
            prob.model.fold(ev, prob.item_tags, into=state)

    fn = {
        "ecomcore": lambda: fold_chunks_ecomcore(prob, chunks),
        "ecomcore-reserved": reserved,
        "scipy-coo": lambda: fold_chunks_scipy(prob, scipy_coo, chunks),
        "scipy-spgemm": lambda: fold_chunks_scipy(prob, scipy_spgemm, chunks),
    }[method]
    benchmark.pedantic(fn, **SLOW)


@pytest.mark.parametrize("method", ["ecomcore", "scipy-coo", "scipy-spgemm"])
def test_small_fold_into_full_state(benchmark, prob: Problem, full_state, method: str) -> None:
    small = prob.chunk(0, max(prob.n // 100, 1))
    _group(benchmark, prob, "small fold into the full state", len(small["user"]))
    if method == "ecomcore":
        state = full_state.copy()
        benchmark(lambda: prob.model.fold(small, prob.item_tags, into=state))
    else:
        base = scipy_spgemm(prob, prob.events)
        fold = scipy_coo if method == "scipy-coo" else scipy_spgemm
        benchmark(lambda: base + fold(prob, small))


def test_profiles(benchmark, prob: Problem, full_state) -> None:
    _group(benchmark, prob, "profiles (IDF, l2)", prob.n)
    a = benchmark.pedantic(lambda: prob.model.profiles(full_state), **SLOW)
    assert a.shape == (prob.n_users, prob.n_tags)
    assert np.isfinite(a.data).all()
