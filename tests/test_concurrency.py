"""Eight Python threads on shared objects give what serial calls give (issue 10, item 2).

* ``Ranker`` is immutable after construction: ``topk``, ``topk_one`` and ``explain`` from many
  threads at once return exactly the serial answers.
* ``TrustState``, ``InterestState`` and ``IdentityGraph`` are mutable and guard themselves
  with an internal lock: concurrent folds / links into one shared object end in the same state
  as the serial calls (folds: the same sums, added in another order, to 1e-9 relative), and
  readers running meanwhile never see an error or a torn state.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import random_problem

import ecomcore as ec
from ecomcore.datasets import synthetic_identity_links, synthetic_trust_events
from ecomcore.governance import IdentityGraph

N_THREADS = 8
T0 = 1_700_000_000.0


def run_threads(fns, timeout=120):
    """Start one thread per function, release them together, re-raise the first error."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)
    errors = []

    def worker(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def test_eight_threads_ranker_calls_equal_serial():
    A, B = random_problem(7, n_users=300, n_tags=40, n_merchants=500, density_a=0.1, density_b=0.05)
    trust = np.random.default_rng(7).uniform(0.1, 1, 500)
    r = ec.Ranker(B, trust=trust, banned=[1, 2, 3])
    A = sp.csr_array(A)
    rows = [
        (A.indices[A.indptr[u] : A.indptr[u + 1]], A.data[A.indptr[u] : A.indptr[u + 1]]) for u in range(0, 300, 37)
    ]
    serial_topk = [r.topk(A, k=k, n_threads=nt) for k, nt in ((5, 1), (20, 2))]
    serial_one = [r.topk_one(ids, w, k=10) for ids, w in rows]
    serial_explain = r.explain(*rows[1], [0, 5, 9])

    def mixed(i):
        def fn():
            out = []
            for rep in range(6):
                j = (i + rep) % 3
                if j == 0:
                    k, nt = ((5, 1), (20, 2))[rep % 2]
                    out.append(("topk", rep % 2, r.topk(A, k=k, n_threads=nt)))
                elif j == 1:
                    out.append(("one", None, [r.topk_one(ids, w, k=10) for ids, w in rows]))
                else:
                    out.append(("explain", None, r.explain(*rows[1], [0, 5, 9])))
            return out

        return fn

    for out in run_threads([mixed(i) for i in range(N_THREADS)]):
        for what, which, got in out:
            if what == "topk":
                want = serial_topk[which]
                np.testing.assert_array_equal(got.indices, want.indices)
                np.testing.assert_array_equal(got.scores, want.scores)
                np.testing.assert_array_equal(got.counts, want.counts)
            elif what == "one":
                for g, w in zip(got, serial_one):
                    np.testing.assert_array_equal(g.indices, w.indices)
                    np.testing.assert_array_equal(g.scores, w.scores)
            else:
                assert repr(got) == repr(serial_explain)


def _assert_stats_close(a, b):
    for name in ("n", "s", "s2"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-300)
    np.testing.assert_array_equal(a.events, b.events)
    np.testing.assert_array_equal(a.veto_time, b.veto_time)


def test_eight_threads_fold_trust_into_one_state():
    n_m = 3_000
    model = ec.TrustModel(ec.default_indicators(), n_merchants=n_m)
    q = np.random.default_rng(1).random(n_m)
    ev = synthetic_trust_events(q, model.indicators, n_events=80_000, start=T0, buyers=5_000, seed=2)
    # chunks by merchant: buyer dedupe is per (buyer, merchant), so the folds commute exactly
    parts = [{k: v[ev["merchant"] % N_THREADS == i] for k, v in ev.items()} for i in range(N_THREADS)]
    serial = model.new_state()
    for p in parts:
        model.fold(p, into=serial)
    shared = model.new_state()
    now = T0 + 200 * 86400.0
    reads = []

    def folder(p):
        def fn():
            for c in range(4):  # each part in four time-ordered pieces
                sel = slice(c * len(p["merchant"]) // 4, (c + 1) * len(p["merchant"]) // 4)
                model.fold({k: v[sel] for k, v in p.items()}, into=shared)
                reads.append(model.score(shared, now=now).index.shape)  # a reader meanwhile

        return fn

    run_threads([folder(p) for p in parts])
    _assert_stats_close(shared.stats(now), serial.stats(now))
    assert all(shape == (n_m,) for shape in reads)


def test_eight_threads_fold_interest_into_one_state():
    rng = np.random.default_rng(3)
    n_users, n_items, n_tags = 2_000, 800, 60
    item_tags = sp.random(n_items, n_tags, density=0.05, format="csr", random_state=4)
    n = 60_000
    ev = {
        "user": rng.integers(0, n_users, n),
        "item": rng.integers(0, n_items, n),
        "kind": rng.choice(["view", "fav", "cart", "buy"], n),
        "time": T0 + rng.random(n) * 30 * 86400.0,
    }
    model = ec.InterestModel()
    parts = [{k: v[i::N_THREADS] for k, v in ev.items()} for i in range(N_THREADS)]
    serial = model.new_state(n_users, n_tags)
    for p in parts:
        model.fold(p, item_tags, into=serial)
    shared = model.new_state(n_users, n_tags)

    def folder(p):
        def fn():
            for c in range(3):
                model.fold({k: v[c::3] for k, v in p.items()}, item_tags, into=shared)
                model.profiles(shared, now=T0 + 31 * 86400.0)  # a reader meanwhile

        return fn

    run_threads([folder(p) for p in parts])
    now = T0 + 31 * 86400.0
    got = model.profiles(shared, now=now).toarray()
    want = model.profiles(serial, now=now).toarray()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert shared.n_events == serial.n_events == n


def test_eight_threads_link_and_query_one_graph():
    stores, keys = synthetic_identity_links(4_000, seed=6)
    serial = IdentityGraph()
    serial.link(stores, keys)
    serial.ban([0, 17, 400])
    shared = IdentityGraph()
    shared.ban([0, 17, 400])
    idx = np.arange(len(keys))

    def linker(i):
        def fn():
            sel = idx[i::N_THREADS]
            for c in range(4):
                part = sel[c::4]
                shared.link(stores[part], [keys[j] for j in part])
                shared.blocked([keys[int(sel[0])]])  # a reader meanwhile
                shared.why(int(stores[int(sel[0])]))

        return fn

    run_threads([linker(i) for i in range(N_THREADS)])
    assert shared.n_stores == serial.n_stores
    probe = list(range(0, 4_000, 7))

    def verdict(g, s):
        w = g.why(s)
        return (w.blocked, w.banned_stores, w.hub, w.known)

    assert [verdict(shared, s) for s in probe] == [verdict(serial, s) for s in probe]
    np.testing.assert_array_equal(
        shared.banned_mask(4_000, ignore_outside=True), serial.banned_mask(4_000, ignore_outside=True)
    )


@pytest.mark.parametrize("n_callers", [N_THREADS])
def test_threads_calling_with_default_n_threads_agree(n_callers):
    # many Python threads each calling with n_threads=None (all cores) still agree with serial
    A, B = random_problem(9, n_users=500, n_tags=30, n_merchants=400, density_a=0.1, density_b=0.06)
    r = ec.Ranker(B)
    want = r.topk(A, k=15, n_threads=1)
    for got in run_threads([lambda: r.topk(A, k=15) for _ in range(n_callers)]):
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.scores, want.scores)
