"""pytest-benchmark suite: item-item similarity and recommend-for-all against the peers.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 2,000 users x 2,000 items (about 20 items per user); ``pytest
  bench/test_bench_similarity.py --benchmark-disable -q`` runs every benchmark once in seconds.
* ``full``: 50,000 users x 30,000 items (about 40 items per user), as
  ``bench/similarity_compare.py``.

Run grouped, e.g.::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_similarity.py --benchmark-group-by=group \\
        --benchmark-columns=median,min,rounds
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from similarity_compare import cosine_weights, synthetic_user_items

import ecomcore as ec


def _sizes() -> tuple[int, int, int]:
    mode = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
    if mode == "quick":
        return (2_000, 2_000, 20)
    if mode == "full":
        return (50_000, 30_000, 40)
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {mode!r}")


N_USERS, N_ITEMS, MEAN = _sizes()
SLOW = dict(rounds=3, iterations=1, warmup_rounds=1)
TOP_N = 100
K = 20


@pytest.fixture(scope="module")
def x() -> sp.csr_array:
    return synthetic_user_items(N_USERS, N_ITEMS, MEAN)


def test_agreement_with_sparse_dot_topn(x: sp.csr_array) -> None:
    """Not a benchmark: the same scores as sparse_dot_topn's self-join (itself dropped)."""
    sdt = pytest.importorskip("sparse_dot_topn")
    w = cosine_weights(x)
    ref = sp.csr_array(
        sdt.sp_matmul_topn(sp.csr_matrix(w.T.tocsr()), sp.csr_matrix(w), top_n=TOP_N, threshold=-np.inf)
    ).tolil()
    ref.setdiag(0)
    ref = sp.csr_array(ref)
    ours = ec.item_similarity(x, top_n=TOP_N, count_self=True)
    ref.eliminate_zeros()
    ref.data = ref.data.astype(np.float64)
    assert np.array_equal(np.diff(ours.indptr), np.diff(ref.indptr))
    # ties at the cut may keep other items, never other scores: each row's kept scores agree
    for i in range(ours.shape[0]):
        a = np.sort(ours.data[ours.indptr[i] : ours.indptr[i + 1]])
        b = np.sort(ref.data[ref.indptr[i] : ref.indptr[i + 1]])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["ecomcore", "sparse_dot_topn"])
def test_similarity_one_thread(benchmark, x: sp.csr_array, method: str) -> None:
    benchmark.group = f"cosine similarity top_n={TOP_N}, 1 thread ({N_USERS} x {N_ITEMS})"
    if method == "ecomcore":
        benchmark.pedantic(lambda: ec.item_similarity(x, top_n=TOP_N, n_threads=1), **SLOW)
    else:
        sdt = pytest.importorskip("sparse_dot_topn")
        w = cosine_weights(x)
        wt, wm = sp.csr_matrix(w.T.tocsr()), sp.csr_matrix(w)
        benchmark.pedantic(
            lambda: sdt.sp_matmul_topn(wt, wm, top_n=TOP_N, threshold=-np.inf, sort=True, n_threads=1), **SLOW
        )


@pytest.mark.parametrize("method", ["ecomcore", "swing"])
def test_swing(benchmark, x: sp.csr_array, method: str) -> None:
    benchmark.group = f"ecomcore similarity top_n={TOP_N}, 1 thread ({N_USERS} x {N_ITEMS})"
    m = "cosine" if method == "ecomcore" else "swing"
    benchmark.pedantic(lambda: ec.item_similarity(x, method=m, top_n=TOP_N, n_threads=1), **SLOW)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", ["ecomcore", "implicit"])
def test_recommend_all(benchmark, x: sp.csr_array, method: str, threads: int) -> None:
    benchmark.group = f"recommend all users, K={K}, top-10, {threads} thread(s) ({N_USERS} x {N_ITEMS})"
    if method == "ecomcore":

        def run() -> None:
            s = ec.item_similarity(x, top_n=K, count_self=True, n_threads=threads)
            ec.item_ranker(s).topk(x, 10, exclude=x, n_threads=threads)

    else:
        nn = pytest.importorskip("implicit.nearest_neighbours")
        xm = sp.csr_matrix(x)
        users = np.arange(x.shape[0])

        def run() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = nn.CosineRecommender(K=K, num_threads=threads)
                m.fit(xm, show_progress=False)
                m.recommend(users, xm, N=10, filter_already_liked_items=True)

    benchmark.pedantic(run, **SLOW)
