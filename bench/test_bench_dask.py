"""pytest-benchmark suite: ecomcore.dask on a 2-worker LocalCluster vs the in-process calls.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): the tiny sparse market and 20k trust events; ``pytest bench/test_bench_dask.py
  --benchmark-disable -q`` runs everything once (a smoke test: the cluster starts in a few seconds).
* ``full``: the sparse regime of ``bench/compare.py`` (200k users, 5k tags, 100k merchants) and
  2M trust events.  The 2M-user comparison with overhead figures is ``bench/dask_compare.py``.

Grouped so pytest-benchmark's table puts the Dask path next to the in-process one::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_dask.py --benchmark-group-by=group \\
        --benchmark-columns=median
"""

from __future__ import annotations

import numpy as np
import pytest
from _common import Problem, bench_sizes, problem
from distributed import Client, LocalCluster

import ecomcore as ec
import ecomcore.dask as ed
from ecomcore.datasets import synthetic_trust_events

SIZES = bench_sizes()
FULL = SIZES["sparse"][0] >= 100_000
N_EVENTS = 2_000_000 if FULL else 20_000
PARTITION_ROWS = 50_000 if FULL else 250
ROUNDS = dict(rounds=3, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, worker_dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        c.wait_for_workers(2)
        yield c


@pytest.fixture(scope="module")
def prob() -> Problem:
    return problem("sparse", SIZES)


@pytest.fixture(scope="module")
def ranker(prob: Problem) -> ec.Ranker:
    return ec.Ranker(prob.merchant_tags, trust=prob.trust, banned=prob.banned)


@pytest.fixture(scope="module")
def scattered(client, ranker):
    sr = ed.scatter_ranker(client, ranker)
    yield sr
    sr.release()


def _rank_group(benchmark, prob: Problem) -> None:
    benchmark.group = f"rank sparse {prob.n_users}u k=10"
    benchmark.extra_info["users"] = prob.n_users


def test_rank_in_process_2_threads(benchmark, prob, ranker):
    _rank_group(benchmark, prob)
    benchmark.pedantic(ranker.topk, args=(prob.user_tags, 10), kwargs={"n_threads": 2}, **ROUNDS)


def test_rank_dask(benchmark, client, prob, ranker):
    _rank_group(benchmark, prob)
    ref = ranker.topk(prob.user_tags, 10)
    got = benchmark.pedantic(
        ed.rank_dask, args=(client, prob.user_tags, ranker, 10), kwargs={"partition_rows": PARTITION_ROWS}, **ROUNDS
    )
    assert np.array_equal(got.indices, ref.indices) and np.array_equal(got.scores, ref.scores)


def test_rank_dask_prescattered(benchmark, client, prob, scattered):
    _rank_group(benchmark, prob)
    benchmark.pedantic(
        ed.rank_dask,
        args=(client, prob.user_tags, scattered, 10),
        kwargs={"partition_rows": PARTITION_ROWS},
        **ROUNDS,
    )


@pytest.fixture(scope="module")
def trust_problem():
    n_m = 10_000
    inds = ec.default_indicators()
    q = np.random.default_rng(0).random(n_m)
    ev = synthetic_trust_events(q, inds, n_events=N_EVENTS, start=1.7e9, days=180, buyers=0, seed=0)
    model = ec.TrustModel(inds, n_merchants=n_m)
    step = N_EVENTS // 8
    parts = [{k: v[i : i + step] for k, v in ev.items()} for i in range(0, N_EVENTS, step)]
    return model, ev, parts


def test_fold_in_process(benchmark, trust_problem):
    model, ev, _ = trust_problem
    benchmark.group = f"trust fold {N_EVENTS} events"
    benchmark.pedantic(model.fold, args=(ev,), **ROUNDS)


def test_fold_dask(benchmark, client, trust_problem):
    model, ev, parts = trust_problem
    benchmark.group = f"trust fold {N_EVENTS} events"
    got = benchmark.pedantic(ed.fold_dask, args=(client, model, parts), **ROUNDS)
    now = 1.7e9 + 200 * 86400
    np.testing.assert_allclose(got.stats(now).s, model.fold(ev).stats(now).s, rtol=1e-9)
