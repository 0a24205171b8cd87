"""Tests for the ``ecomcore`` command line (ecomcore.cli.main)."""

import re

import pytest

import ecomcore
from ecomcore.cli import main

SMALL = ["--users", "300", "--tags", "200", "--merchants", "500"]


ROW = re.compile(r"^\s+(\d+)\s+(\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(\d\.\d+)\s+(\d+\.\d+)$", re.M)


def test_demo_dense(capsys):
    assert main(["demo", *SMALL, "--k", "5", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "300 users x 200 tags x 500 merchants" in out
    assert "dense (shared popularity)" in out
    # three users' tables, each with 5 ranked rows: rank, merchant, score, interest, trust, weight
    for u in range(3):
        assert f"user {u}: top 5 of k=5" in out
    rows = ROW.findall(out)
    assert len(rows) == 15
    for i, (rank, merchant, score, interest, trust, weight) in enumerate(rows):
        assert int(rank) == i % 5 + 1
        assert 0 <= int(merchant) < 500
        assert float(score) > 0
        assert 0.0 <= float(trust) <= 1.0
        assert float(score) == pytest.approx(float(interest) * float(weight), abs=2e-3)
    for u in range(3):
        user_scores = [float(r[2]) for r in rows[5 * u : 5 * u + 5]]
        assert user_scores == sorted(user_scores, reverse=True)
    assert "trust: 15,000 merchant events" in out
    assert "should improve first" in out
    assert "governance: 5 banned stores" in out
    assert re.search(r"new store presenting \[\('phone', \d+\), .*\]: blocked = True", out)
    assert "blocked = False" in out
    assert "fair exposure (k=5 from 50 candidates" in out
    assert "ecomcore Ranker.topk (1 thread(s))" in out
    assert "scipy (chunked product + argpartition" in out
    assert "top-k sets agree: yes" in out


def test_demo_sparse_options(capsys):
    args = ["demo", *SMALL, "--sparse", "--seed", "4", "--k", "3", "--show", "1", "--threads", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sparse (independent popularity), seed 4" in out
    assert "user 0:" in out and "user 1:" not in out
    assert "top-k sets agree: yes" in out


def test_demo_scores_match_ranker(capsys):
    # the demo's pipeline, rebuilt from the public API: trust from generated merchant events,
    # stores blocked through shared identity keys, then Ranker(trust, boost, banned)
    import numpy as np

    from ecomcore.datasets import synthetic_identity_links, synthetic_market, synthetic_trust_events

    assert main(["demo", *SMALL, "--k", "4", "--show", "2", "--no-scipy"]) == 0
    out = capsys.readouterr().out
    assert "scipy" not in out
    m = synthetic_market(300, 200, 500, seed=0)
    now = 1_767_225_600.0
    inds = ecomcore.default_indicators()
    events = synthetic_trust_events(m.trust, inds, n_events=30 * 500, start=now - 180 * 86400.0, buyers=2500, seed=0)
    model = ecomcore.TrustModel(inds, n_merchants=500)
    guarantee = np.random.default_rng(0).random((500, 3)) < 0.3
    scores = model.score(model.fold(events), now, guarantee=guarantee)
    gov = ecomcore.IdentityGraph()
    gov.link(*synthetic_identity_links(500, seed=0))
    gov.ban(np.flatnonzero(m.banned))
    blocked = gov.banned_mask(500)
    ranker = ecomcore.Ranker(m.merchant_tags, trust=scores.index, boost=scores.boost, banned=blocked)
    r = ranker.topk(m.user_tags, 4)
    rows = ROW.findall(out)
    assert len(rows) == 8
    for i, (rank, merchant, score, _, trust, weight) in enumerate(rows):
        u, j = divmod(i, 4)
        assert int(rank) == j + 1
        assert int(merchant) == r.indices[u, j]
        assert not blocked[int(merchant)]
        assert float(score) == pytest.approx(float(r.scores[u, j]), abs=1e-4)
        assert float(trust) == pytest.approx(scores.index[int(merchant)], abs=1e-3)
        assert float(weight) == pytest.approx(ranker.merchant_weight[int(merchant)], abs=1e-3)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ecomcore {ecomcore.__version__}"


def test_config(capsys):
    assert main(["config"]) == 0
    assert "openmp" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    import os
    import subprocess
    import sys

    # the same ecomcore this test imported (installed wheel, or the source tree built in place)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(ecomcore.__file__)))
    r = subprocess.run(
        [sys.executable, "-m", "ecomcore", "--version"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert r.returncode == 0
    assert r.stdout.strip() == f"ecomcore {ecomcore.__version__}"


def test_no_command(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--users", "0"],
        ["demo", "--k", "-1"],
        ["demo", "--threads", "x"],
        ["demo", "--seed", "-2"],
        ["bogus"],
    ],
)
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
