"""ecomcore.dask on a real 2-process distributed.LocalCluster (no mocks).

References are the single-machine calls: ``Ranker.topk`` (every row must be bit-identical) and
``TrustModel.fold`` / ``InterestModel.fold`` over all events (equal to 1e-9 relative).  Worker
death is real: a loader kills its own worker process on its first attempt (marker file), the
nanny starts a new worker and Dask reruns the lost partitions.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from dask import delayed
from distributed import Client, LocalCluster

import ecomcore as ec
import ecomcore.dask as ed
from ecomcore.datasets import synthetic_market, synthetic_trust_events
from ecomcore.indicators import Indicator

DAY = 86400.0
T0 = 1.7e9
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ec.__file__)))  # the ecomcore under test


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
def market():
    return synthetic_market(2_000, 300, 3_000, seed=3, shared_popularity=False, follows_mean=4.0)


@pytest.fixture(scope="module")
def ranker(market):
    return ec.Ranker(market.merchant_tags, trust=market.trust, banned=market.banned, beta=1.5, follow_weight=0.5)


def random_exclude(n_users, n_merchants, seed=0, density=0.002):
    rng = np.random.default_rng(seed)
    return sp.random_array((n_users, n_merchants), density=density, format="csr", rng=rng) != 0


def assert_same(got, ref):
    assert got.n_cols == ref.n_cols
    assert got.indices.dtype == ref.indices.dtype and got.scores.dtype == ref.scores.dtype
    assert np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.scores, ref.scores)
    assert np.array_equal(got.counts, ref.counts)


# loaders run on the workers (imported there by reference from this module)
def load_csr(path):
    return sp.load_npz(path)


def load_or_die(path, marker):
    """Load a block; on the first attempt kill this worker process instead."""
    if not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(1)
    return sp.load_npz(path)


def load_events_or_die(events, marker):
    if not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(1)
    return events


def payload_loads():
    return dict(ed._PAYLOAD_LOADS), dict(ed._RANKER_BUILDS)


def transfers_of(dask_worker, key):
    return sum(1 for entry in dask_worker.transfer_incoming_log if key in entry["keys"])


def split_rows(m, cuts):
    m = sp.csr_array(m)
    bounds = [0, *cuts, m.shape[0]]
    return [m[r0:r1] for r0, r1 in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------------------------------------
# ranking


@pytest.mark.parametrize("case", ["plain", "follows_exclude", "threshold_float64"])
def test_rank_bit_identical_to_one_machine(client, market, ranker, case):
    a, kw = market.user_tags, {}
    if case == "follows_exclude":
        kw = {"follows": market.follows, "exclude": random_exclude(*market.follows.shape)}
    elif case == "threshold_float64":
        a = a.astype(np.float64)
        kw = {"threshold": 0.05}
    ref = ranker.topk(a, 7, n_threads=1, **kw)
    got = ed.rank_dask(client, a, ranker, 7, partition_rows=333, **kw)
    assert_same(got, ref)
    if case == "threshold_float64":
        assert got.scores.dtype == np.float64
    blocks = ed.rank_dask(client, a, ranker, 7, partition_rows=333, blocks=True, **kw)
    assert [b.n_rows for b in blocks] == [333] * 6 + [2]
    assert_same(ec.concat_topk(blocks), ref)


def test_rank_blocks_and_delayed_loaders(client, market, ranker, tmp_path):
    a, f = market.user_tags, market.follows
    e = random_exclude(*f.shape, seed=1)
    cuts = [500, 500, 1300]  # includes an empty block
    a_blocks, f_blocks, e_blocks = (split_rows(x, cuts) for x in (a, f, e))
    ref = ranker.topk(a, 12, follows=f, exclude=e)
    got = ed.rank_dask(client, a_blocks, ranker, 12, follows=f_blocks, exclude=e_blocks)
    assert_same(got, ref)
    # the same blocks loaded on the workers from files the client never reads
    paths = []
    for i, blk in enumerate(a_blocks):
        paths.append(str(tmp_path / f"a{i}.npz"))
        sp.save_npz(paths[-1], sp.csr_matrix(blk))
    loaders = [delayed(load_csr)(p) for p in paths]
    got = ed.rank_dask(client, loaders, ranker, 12, follows=f_blocks, exclude=e_blocks)
    assert_same(got, ref)
    # mixed: loaders, futures and in-memory blocks; a block without follows
    fut = client.submit(load_csr, paths[3], pure=False)
    mixed = [a_blocks[0], loaders[1], a_blocks[2], fut]
    f_mixed = [f_blocks[0], f_blocks[1], f_blocks[2], None]
    ref2 = ec.concat_topk([ranker.topk(a_blocks[i], 12, follows=f_mixed[i], exclude=e_blocks[i]) for i in range(4)])
    got = ed.rank_dask(client, mixed, ranker, 12, follows=f_mixed, exclude=e_blocks)
    assert_same(got, ref2)


def test_rank_to_files(client, market, ranker, tmp_path):
    f = market.follows
    ref = ranker.topk(market.user_tags, 5, follows=f)
    out = tmp_path / "out"
    paths = ed.rank_dask_to_files(
        client, market.user_tags, ranker, 5, out, follows=f, partition_rows=600, n_threads=None
    )
    assert paths == [str(out / f"topk-{i:05d}.npz") for i in range(4)]
    blocks = [ed.load_topk_block(p) for p in paths]
    assert [b.n_rows for b in blocks] == [600, 600, 600, 200]
    assert_same(ec.concat_topk(blocks), ref)
    # a damaged block is refused with the file named
    with open(paths[0], "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(ValueError, match="topk-00000.npz"):
        ed.load_topk_block(paths[0])
    with pytest.raises(FileNotFoundError):
        ed.load_topk_block(tmp_path / "missing.npz")


def test_merchant_side_sent_once_per_worker(client, market, ranker):
    workers = sorted(client.scheduler_info()["workers"])
    sr = ed.scatter_ranker(client, ranker)
    try:
        key = sr.future.key
        # held by every worker right after the broadcast
        assert sorted(client.who_has(sr.future)[key]) == workers
        ref = ranker.topk(market.user_tags, 10)
        for rows in (97, 250):  # 21 + 8 partitions, two calls
            assert_same(ed.rank_dask(client, market.user_tags, sr, 10, partition_rows=rows), ref)
        # worker-to-worker transfer logs: nobody fetched the merchant side (it was broadcast), or
        # at most once per worker
        fetched = client.run(transfers_of, key=key)
        assert all(n <= 1 for n in fetched.values()) and sum(fetched.values()) <= len(workers) - 1
        # every worker process deserialised it and built the Ranker once per copy it received,
        # not once per task: 29 tasks ran.  (Dask may, rarely, hand a worker a second copy -- seen
        # once under heavy load in CI -- so the bound is "at most twice", far below per-task.)
        stats = client.run(ed._payload_stats, sr.token)
        assert sorted(stats) == workers
        assert all(1 <= s["loads"] <= 2 and s["builds"] == s["loads"] for s in stats.values()), stats
        assert sorted(client.who_has(sr.future)[key]) == workers
    finally:
        sr.release()
    with pytest.raises(ValueError, match="ranker: the scattered merchant side"):
        ed.rank_dask(client, market.user_tags, sr, 10)
    # a plain Ranker: broadcast once per call, released after it
    before = client.run(payload_loads)
    assert_same(ed.rank_dask(client, market.user_tags, ranker, 10, partition_rows=97), ref)
    after = client.run(payload_loads)
    for w in workers:
        new = {t: n for t, n in after[w][0].items() if t not in before[w][0]}
        assert list(new.values()) == [1]
        assert [after[w][1][t] for t in new] == [1]


def test_rank_survives_a_killed_worker(client, market, ranker, tmp_path):
    a, f = market.user_tags, market.follows
    blocks = split_rows(a, [300, 700, 1000, 1400, 1700])
    f_blocks = split_rows(f, [300, 700, 1000, 1400, 1700])
    path = str(tmp_path / "b3.npz")
    sp.save_npz(path, sp.csr_matrix(blocks[3]))
    marker = str(tmp_path / "killed")
    before = set(client.scheduler_info()["workers"])
    user_blocks = blocks[:3] + [delayed(load_or_die)(path, marker)] + blocks[4:]
    got = ed.rank_dask(client, user_blocks, ranker, 10, follows=f_blocks)
    assert os.path.exists(marker)  # the first attempt did kill its worker
    assert_same(got, ranker.topk(a, 10, follows=f))
    client.wait_for_workers(2, timeout=60)
    after = set(client.scheduler_info()["workers"])
    assert before != after  # a worker was replaced
    # the replacement fetches the merchant side when it needs it; results stay identical
    assert_same(ed.rank_dask(client, a, ranker, 10, follows=f, partition_rows=150), ranker.topk(a, 10, follows=f))


# ---------------------------------------------------------------------------------------------
# folding

INDICATORS = [
    Indicator("refund", "after_sales", "rate", "lower"),
    Indicator("stars", "product_quality", "rating", "higher"),
    Indicator("ship_hours", "service_quality", "magnitude", "lower"),
    Indicator("counterfeit", "product_quality", "rate", "lower", veto=True),
]


def trust_events(n_m=300, n=40_000, seed=0):
    q = np.random.default_rng(seed).random(n_m)
    return synthetic_trust_events(q, INDICATORS, n_events=n, start=T0, days=400, buyers=500, seed=seed)


def take(ev, lo, hi):
    return {k: v[lo:hi] for k, v in ev.items()}


def assert_trust_close(got, ref, now):
    g, r = got.stats(now), ref.stats(now)
    for name in ("n", "s", "s2"):
        np.testing.assert_allclose(getattr(g, name), getattr(r, name), rtol=1e-9, atol=0)
    assert np.array_equal(g.events, r.events)
    assert np.array_equal(g.veto_time, r.veto_time)
    assert got.n_dedupe_keys == ref.n_dedupe_keys
    assert got.last_time == ref.last_time


def test_fold_trust_matches_one_fold(client):
    ev = trust_events()
    tm = ec.TrustModel(INDICATORS, n_merchants=300, half_life_days=30.0)
    ref = tm.fold(ev)
    cuts = [0, 5_000, 5_000, 17_000, 30_000, 40_000]
    parts = [take(ev, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]
    parts[3] = delayed(take)(ev, cuts[3], cuts[4])  # one partition built on a worker
    now = T0 + 420 * DAY
    got = ed.fold_dask(client, tm, parts, split_every=2)
    assert isinstance(got, ec.TrustState)
    assert_trust_close(got, ref, now)
    assert_trust_close(ed.fold_dask(client, tm, parts[::-1]), ref, now)  # order does not matter
    # scoring the merged state gives the same index
    np.testing.assert_allclose(tm.score(got, now).index, tm.score(ref, now).index, rtol=1e-9)


def interest_data(seed=0, n_users=400, n_items=150, n_tags=40, n=20_000):
    rng = np.random.default_rng(seed)
    x = sp.random_array((n_items, n_tags), density=0.15, format="csr", rng=rng)
    x = sp.csr_array(x + sp.csr_array((np.ones(n_items), (np.arange(n_items), rng.integers(0, n_tags, n_items)))))
    ev = {
        "user": rng.integers(0, n_users, n),
        "item": rng.integers(0, n_items, n),
        "kind": rng.integers(0, 4, n),
        "time": T0 + rng.uniform(0, 90 * DAY, n),
        "weight": rng.uniform(0, 3, n),
    }
    return x, ev


def test_fold_interest_matches_one_fold(client):
    x, ev = interest_data()
    im = ec.InterestModel(half_life_days=7.0, n_users=400)
    ref = im.fold(ev, x)
    parts = [take(ev, lo, lo + 4_000) for lo in range(0, 20_000, 4_000)]
    got = ed.fold_dask(client, im, parts, item_tags=x, split_every=3)
    assert isinstance(got, ec.InterestState)
    assert got.n_events == ref.n_events and got.n_entries == ref.n_entries
    now = T0 + 100 * DAY
    g, r = got.decayed_sums(now), ref.decayed_sums(now)
    assert np.array_equal(g.indptr, r.indptr) and np.array_equal(g.indices, r.indices)
    np.testing.assert_allclose(g.data, r.data, rtol=1e-9, atol=0)
    np.testing.assert_allclose(im.profiles(got, now).toarray(), im.profiles(ref, now).toarray(), rtol=1e-6)


def test_fold_survives_a_killed_worker(client, tmp_path):
    ev = trust_events(seed=4, n=20_000)
    tm = ec.TrustModel(INDICATORS, n_merchants=300)
    parts = [take(ev, lo, lo + 5_000) for lo in range(0, 20_000, 5_000)]
    parts[2] = delayed(load_events_or_die)(parts[2], str(tmp_path / "killed"))
    got = ed.fold_dask(client, tm, parts)
    assert os.path.exists(tmp_path / "killed")
    assert_trust_close(got, tm.fold(ev), T0 + 200 * DAY)
    client.wait_for_workers(2, timeout=60)


# ---------------------------------------------------------------------------------------------
# bad input


def test_rank_bad_input(client, market, ranker):
    a, f = market.user_tags, market.follows
    cases = [
        (lambda: ed.rank_dask(object(), a, ranker, 5), TypeError, "client"),
        (lambda: ed.rank_dask(client, a, "ranker", 5), TypeError, "ranker"),
        (lambda: ed.rank_dask(client, a, ranker, 0), ValueError, "k"),
        (lambda: ed.rank_dask(client, a, ranker, 5, partition_rows=0), ValueError, "partition_rows"),
        (lambda: ed.rank_dask(client, a, ranker, 5, n_threads=0), ValueError, "n_threads"),
        (lambda: ed.rank_dask(client, a, ranker, 5, retries=-1), ValueError, "retries"),
        (lambda: ed.rank_dask(client, a, ranker, 5, blocks="yes"), TypeError, "blocks"),
        (lambda: ed.rank_dask(client, a[:, :10], ranker, 5), ValueError, "user_tags"),
        (lambda: ed.rank_dask(client, "abc", ranker, 5), TypeError, "user_tags"),
        (lambda: ed.rank_dask(client, [], ranker, 5), ValueError, "user_tags"),
        (lambda: ed.rank_dask(client, [a, "x"], ranker, 5), TypeError, r"user_tags\[1\]"),
        (lambda: ed.rank_dask(client, a, ranker, 5, follows=f[:10]), ValueError, "follows"),
        (lambda: ed.rank_dask(client, a, ranker, 5, follows=[f]), TypeError, "follows"),
        (lambda: ed.rank_dask(client, [a], ranker, 5, follows=f), TypeError, "follows"),
        (lambda: ed.rank_dask(client, [a, a], ranker, 5, exclude=[None]), ValueError, "exclude"),
        (lambda: ed.rank_dask(client, [a[:10]], ranker, 5, follows=[f[:11]]), ValueError, r"follows\[0\]"),
        (lambda: ed.rank_dask(client, a, ranker, 5, threshold=float("nan")), ValueError, "threshold"),
        (lambda: ed.rank_dask_to_files(client, a, ranker, 5, 3), TypeError, "out_dir"),
        (lambda: ed.rank_dask_to_files(client, a, ranker, 5, "/tmp/x", prefix="a/b"), ValueError, "prefix"),
        (lambda: ed.scatter_ranker(client, None), TypeError, "ranker"),
    ]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()
    bad = a.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match="user_tags: contains a non-finite value"):
        ed.rank_dask(client, bad, ranker, 5)
    # a loader's block is checked on its worker; the error names the partition
    wrong = delayed(sp.csr_array)(np.ones((4, 7)))
    with pytest.raises(ValueError, match="partition 1: user_tags"):
        ed.rank_dask(client, [a[:10], wrong], ranker, 5)


def test_fold_bad_input(client):
    ev = trust_events(n=2_000)
    tm = ec.TrustModel(INDICATORS, n_merchants=300)
    x, iev = interest_data(n=500)
    im = ec.InterestModel(n_users=400)
    bad_ev = dict(ev, merchant=ev["merchant"].copy())
    bad_ev["merchant"][7] = 10_000
    cases = [
        (lambda: ed.fold_dask(None, tm, [ev]), TypeError, "client"),
        (lambda: ed.fold_dask(client, "model", [ev]), TypeError, "model"),
        (lambda: ed.fold_dask(client, tm, ev), TypeError, "event_partitions"),
        (lambda: ed.fold_dask(client, tm, []), ValueError, "event_partitions"),
        (lambda: ed.fold_dask(client, tm, [ev, None]), TypeError, r"event_partitions\[1\]"),
        (lambda: ed.fold_dask(client, tm, [ev], split_every=1), ValueError, "split_every"),
        (lambda: ed.fold_dask(client, tm, [ev], item_tags=x), ValueError, "item_tags"),
        (lambda: ed.fold_dask(client, im, [iev]), ValueError, "item_tags"),
        (lambda: ed.fold_dask(client, ec.InterestModel(), [iev], item_tags=x), ValueError, "n_users"),
        (lambda: ed.fold_dask(client, tm, [ev, bad_ev]), ValueError, r"event_partitions\[1\]: events\['merchant'\]"),
    ]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()


def test_core_never_imports_dask_and_missing_extra_is_explained(tmp_path):
    # from a neutral directory: ``python -c`` puts the working directory first on sys.path
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys, ecomcore; bad = [m for m in ('dask', 'distributed') if m in sys.modules]; print(bad)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"
    code = "import sys; sys.modules['distributed'] = None; import ecomcore.dask"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "ecomcore[dask]" in out.stderr
