"""Thread safety and determinism: concurrent Python threads, n_threads, chunking."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import random_problem, random_sparse
from _reference import assert_topk_close, assert_topk_equal

import ecomcore as ec


@pytest.fixture(scope="module")
def problem():
    A, B = random_problem(100, n_users=400, n_tags=30, n_merchants=300, density_a=0.15,
                          density_b=0.08)
    rng = np.random.default_rng(100)
    F = random_sparse(101, (400, 300), 0.01)
    E = sp.csr_array(rng.random((400, 300)) < 0.02)
    trust = rng.uniform(0, 1, 300)
    return A, B, F, E, trust


def _run_concurrently(fns, repeats=4):
    """Run each fn in its own thread, all released together, ``repeats`` times each."""
    barrier = threading.Barrier(len(fns))
    results = [[] for _ in fns]
    errors = []

    def worker(i, fn):
        try:
            barrier.wait()
            for _ in range(repeats):
                results[i].append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("n_threads", [1, 2])
def test_two_threads_topk_same_as_serial(problem, n_threads):
    A, B, F, E, trust = problem
    r = ec.Ranker(B, trust=trust, banned=[3, 5])
    A2 = sp.csr_array(A[::-1])  # a different problem for the second thread
    serial_1 = r.topk(A, k=10, follows=F, exclude=E, n_threads=n_threads)
    serial_2 = r.topk(A2, k=25, n_threads=n_threads)
    out = _run_concurrently([
        lambda: r.topk(A, k=10, follows=F, exclude=E, n_threads=n_threads),
        lambda: r.topk(A2, k=25, n_threads=n_threads),
    ])
    for res in out[0]:
        assert_topk_equal(res, serial_1)
    for res in out[1]:
        assert_topk_equal(res, serial_2)
    assert_topk_close(serial_1, A, B, 10, w=r.merchant_weight, F=F, E=E)


def test_two_threads_sparse_topk_same_as_serial(problem):
    A, B, F, _, _ = problem
    B32 = B.astype(np.float32)
    A32 = A.astype(np.float32)
    s64 = ec.sparse_topk(A, B, 7, follows=F, n_threads=2)
    s32 = ec.sparse_topk(A32, B32, 7, n_threads=2)
    out = _run_concurrently([
        lambda: ec.sparse_topk(A, B, 7, follows=F, n_threads=2),
        lambda: ec.sparse_topk(A32, B32, 7, n_threads=2),
    ])
    for res in out[0]:
        assert_topk_equal(res, s64)
    for res in out[1]:
        assert_topk_equal(res, s32)


def test_topk_one_and_topk_concurrently(problem):
    A, B, _, _, trust = problem
    r = ec.Ranker(B, trust=trust)
    rows = [(A.indices[A.indptr[u]:A.indptr[u + 1]], A.data[A.indptr[u]:A.indptr[u + 1]])
            for u in range(0, 400, 7)]
    full = r.topk(A, k=10, n_threads=1)

    def many_one():
        return [r.topk_one(ids, wts, k=10) for ids, wts in rows]

    serial_one = many_one()
    out = _run_concurrently([many_one, many_one, lambda: r.topk(A, k=10, n_threads=2)],
                            repeats=3)
    for batch in out[0] + out[1]:
        for got, want in zip(batch, serial_one):
            assert_topk_equal(got, want)
    for res in out[2]:
        assert_topk_equal(res, full)
    for one, u in zip(serial_one, range(0, 400, 7)):
        np.testing.assert_array_equal(one.indices[0], full.indices[u])


def test_many_threads_share_one_ranker(problem):
    A, B, _, _, trust = problem
    r = ec.Ranker(B, trust=trust)
    blocks = [A[i:i + 50] for i in range(0, 400, 50)]
    serial = [r.topk(b, k=5, n_threads=1) for b in blocks]
    out = _run_concurrently([(lambda b=b: r.topk(b, k=5, n_threads=1)) for b in blocks],
                            repeats=2)
    for res_list, want in zip(out, serial):
        for res in res_list:
            assert_topk_equal(res, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_n_threads_1_and_2_identical(problem, dtype):
    A, B, F, E, trust = problem
    A = A.astype(dtype)
    B = B.astype(dtype)
    r = ec.Ranker(B, trust=trust, beta=2.0)
    for k in (1, 10, 100):
        one = r.topk(A, k=k, follows=F, exclude=E, threshold=-0.05, n_threads=1)
        two = r.topk(A, k=k, follows=F, exclude=E, threshold=-0.05, n_threads=2)
        assert_topk_equal(two, one)
        three = ec.sparse_topk(A, B, k, merchant_weight=r.merchant_weight, follows=F,
                               exclude=E, threshold=-0.05, n_threads=3)
        assert_topk_equal(three, one)


@pytest.mark.parametrize("chunk_rows", [1, 13, 128, 400, 10**6])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_chunking_identical(problem, chunk_rows, n_threads):
    A, B, F, E, trust = problem
    r = ec.Ranker(B, trust=trust)
    whole = r.topk(A, k=10, follows=F, exclude=E, n_threads=1)
    blocks = list(r.iter_topk(A, k=10, chunk_rows=chunk_rows, follows=F, exclude=E,
                              n_threads=n_threads))
    assert [s for s, _ in blocks] == list(range(0, 400, chunk_rows))
    assert_topk_equal(ec.concat_topk([b for _, b in blocks]), whole)


def test_repeated_calls_are_deterministic(problem):
    A, B, _, _, _ = problem
    first = ec.sparse_topk(A, B, 20, n_threads=2)
    for _ in range(5):
        assert_topk_equal(ec.sparse_topk(A, B, 20, n_threads=2), first)
