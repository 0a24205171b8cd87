"""pytest-benchmark suite: ecomcore.IdentityGraph against scipy and pure-Python baselines.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 50k links; ``pytest bench/test_bench_governance.py --benchmark-disable -q``
  runs every benchmark once in seconds, as a smoke test.
* ``full``: 5M links (1M stores x 5 identity keys), the issue's throughput workload; the
  pure-Python baseline runs on a 200k-link sample.

Workload and baselines: see ``bench/governance_compare.py`` (which prints the same comparison
as a table with ratios)::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_governance.py --benchmark-group-by=group \\
        --benchmark-columns=median,rounds
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from governance_compare import (
    KINDS,
    applicants,
    ecomcore_mask,
    identity_links,
    python_mask,
    scipy_mask,
    string_keys,
)

import ecomcore as ec

_MODE = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
if _MODE not in ("quick", "full"):
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {_MODE!r}")
N_LINKS = 5_000_000 if _MODE == "full" else 50_000
N_SAMPLE = 200_000 if _MODE == "full" else 20_000
N_CALLS = 20_000 if _MODE == "full" else 2_000
SLOW = dict(rounds=3, iterations=1, warmup_rounds=0)


@pytest.fixture(scope="module")
def work():
    return identity_links(N_LINKS, 0)


@pytest.fixture(scope="module")
def sample():
    return identity_links(N_SAMPLE, 1)


@pytest.fixture(scope="module")
def graph(work):
    stores, keys, _, banned, n_s = work
    g = ec.IdentityGraph()
    g.link(stores, keys)
    g.ban(banned)
    g.banned_mask(n_s)
    return g


@pytest.fixture(scope="module")
def str_keys(work):
    return string_keys(work[2])


def test_agreement(work, sample, str_keys):
    """Not a benchmark: every method gives the same banned mask."""
    stores, keys, _, banned, n_s = work
    ours = ecomcore_mask(stores, keys, banned, n_s)
    np.testing.assert_array_equal(scipy_mask(stores, keys, banned, n_s), ours)
    np.testing.assert_array_equal(ecomcore_mask(stores, str_keys, banned, n_s), ours)
    s_st, s_keys, _, s_banned, s_ns = sample
    np.testing.assert_array_equal(
        python_mask(s_st, s_keys, s_banned, s_ns), ecomcore_mask(s_st, s_keys, s_banned, s_ns)
    )
    assert ours.any() and not ours.all()


def _group(benchmark, name: str, n: int) -> None:
    benchmark.group = f"{name} {n:,} links"
    benchmark.extra_info["links"] = n


def test_link_mask_ecomcore_int(benchmark, work):
    stores, keys, _, banned, n_s = work
    _group(benchmark, "link+ban+banned_mask", stores.shape[0])
    benchmark(ecomcore_mask, stores, keys, banned, n_s)


def test_link_mask_ecomcore_str(benchmark, work, str_keys):
    stores, _, _, banned, n_s = work
    _group(benchmark, "link+ban+banned_mask", stores.shape[0])
    benchmark.pedantic(ecomcore_mask, args=(stores, str_keys, banned, n_s), **SLOW)


def test_link_mask_scipy(benchmark, work):
    stores, keys, _, banned, n_s = work
    _group(benchmark, "link+ban+banned_mask", stores.shape[0])
    benchmark.pedantic(scipy_mask, args=(stores, keys, banned, n_s), **SLOW)


def test_link_mask_ecomcore_sample(benchmark, sample):
    stores, keys, _, banned, n_s = sample
    _group(benchmark, "link+ban+banned_mask (sample)", stores.shape[0])
    benchmark(ecomcore_mask, stores, keys, banned, n_s)


def test_link_mask_python_sample(benchmark, sample):
    stores, keys, _, banned, n_s = sample
    _group(benchmark, "link+ban+banned_mask (sample)", stores.shape[0])
    benchmark.pedantic(python_mask, args=(stores, keys, banned, n_s), **SLOW)


def test_blocked_one_int(benchmark, work, graph):
    """One applicant, 5 integer keys (about half known to the graph), a new applicant per call."""
    apps = itertools.cycle(applicants(work[1], N_CALLS))
    benchmark.group = "blocked: one applicant"
    benchmark(lambda: graph.blocked(next(apps)))


def test_blocked_one_tuple(benchmark, work):
    stores, _, raw, banned, _ = work
    n = min(N_SAMPLE, stores.shape[0])
    keys = [(KINDS[k], str(i)) for k, i in raw[:n].tolist()]
    g = ec.IdentityGraph()
    g.link(stores[:n], keys)
    g.ban(banned)
    rng = np.random.default_rng(5)
    apps = [
        [keys[j] if rng.random() < 0.5 else ("phone", f"new{j}") for j in rng.integers(0, n, 5)] for _ in range(N_CALLS)
    ]
    it = itertools.cycle(apps)
    benchmark.group = "blocked: one applicant"
    benchmark(lambda: g.blocked(next(it)))


def test_blocked_one_floor(benchmark, work, graph):
    """Floor: a Python set of the precomputed blocked keys (no hub rule, no namespaces)."""
    keys = np.unique(work[1])
    flags = graph.blocked_many(np.arange(keys.shape[0]), keys).blocked
    bad = set(keys[flags].tolist())
    apps = itertools.cycle(applicants(work[1], N_CALLS))
    benchmark.group = "blocked: one applicant"
    benchmark(lambda: any(k in bad for k in next(apps)))


def test_blocked_many(benchmark, work, graph):
    rng = np.random.default_rng(9)
    n_app = 100_000 if _MODE == "full" else 10_000
    keys = work[1]
    b_keys = np.where(
        rng.random(n_app * 5) < 0.5,
        keys[rng.integers(0, keys.shape[0], n_app * 5)],
        rng.integers(0, 1 << 60, n_app * 5),
    )
    b_ids = np.repeat(np.arange(n_app), 5)
    benchmark.group = "blocked_many"
    benchmark.extra_info["applicants"] = n_app
    res = benchmark(graph.blocked_many, b_ids, b_keys)
    assert res.blocked.shape == (n_app,)
