"""Load test: uvicorn on 127.0.0.1 in one subprocess, driven open-loop while trust changes.

The default run is short (100 requests/s for 3 s on a small sparse-regime market, trust events
posted every 0.1 s, a new Ranker swapped in every 0.5 s).  ``ECOMCORE_SERVICE_FULL=1`` runs the
issue's configuration instead: 300 requests/s for 30 s on the 100k-merchant sparse-regime market.
Both assert zero errors and answers identical to the offline ``Ranker.topk`` of the version each
answer carries; latency (p50/p99) is printed, never asserted -- speed is measured by
``bench/service_load.py``.
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("ECOMCORE_SERVICE_FULL", "").strip() not in ("", "0")

if FULL:
    MARKET = dict(n_users=200_000, n_tags=5_000, n_merchants=100_000, n_trust_events=1_000_000)
    LOAD = dict(rate=300.0, duration=30.0, warmup=2.0)
    RESCORE_EVERY = 5.0
else:
    MARKET = dict(n_users=2_000, n_tags=1_000, n_merchants=10_000, n_trust_events=50_000)
    LOAD = dict(rate=100.0, duration=3.0, warmup=0.5)
    RESCORE_EVERY = 0.5


@pytest.mark.slow
def test_open_loop_load_with_live_trust(loadgen, tmp_path):
    files = loadgen.make_files(
        str(tmp_path),
        MARKET["n_users"],
        MARKET["n_tags"],
        MARKET["n_merchants"],
        sparse=True,
        n_trust_events=MARKET["n_trust_events"],
        seed=7,
    )
    record = tmp_path / "versions"
    record.mkdir()
    with loadgen.Server(files, str(record), rescore_every=RESCORE_EVERY) as server:
        res = loadgen.drive(
            server.url,
            n_users=files.n_users,
            n_merchants=files.n_merchants,
            k=10,
            events_every=0.1,
            events_per_post=20,
            seed=7,
            **LOAD,
        )
        assert server.alive(), server.log()
    print("\n" + res.summary())
    assert res.errors == [], res.errors[:5]
    assert res.event_errors == [], res.event_errors[:5]
    assert res.sent == len(res.answers) == int(round(LOAD["rate"] * (LOAD["duration"] + LOAD["warmup"])))
    assert res.events_posted > 0
    assert len(res.versions) >= 2, "no Ranker swap happened during the run"
    check = loadgen.verify(res.answers, files, str(record))
    assert check["mismatches"] == 0, check["examples"]
    assert check["checked"] == len(res.answers)
