"""Tests for the ``ecomcore`` command line (ecomcore.cli.main)."""

import re

import pytest

import ecomcore
from ecomcore.cli import main

SMALL = ["--users", "300", "--tags", "200", "--merchants", "500"]


def test_demo_dense(capsys):
    assert main(["demo", *SMALL, "--k", "5", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "300 users x 200 tags x 500 merchants" in out
    assert "dense (shared popularity)" in out
    # three users' tables, each with 5 ranked rows
    for u in range(3):
        assert f"user {u}: top 5 of k=5" in out
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(-?\d+\.\d+)\s+(\d\.\d+)$", out, flags=re.M)
    assert len(rows) == 15
    for rank, merchant, score, trust in rows:
        assert 1 <= int(rank) <= 5
        assert 0 <= int(merchant) < 500
        assert float(score) > 0
        assert 0.05 <= float(trust) <= 1.0
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
    from ecomcore.datasets import synthetic_market

    assert main(["demo", *SMALL, "--k", "4", "--show", "2", "--no-scipy"]) == 0
    out = capsys.readouterr().out
    assert "scipy" not in out
    m = synthetic_market(300, 200, 500, seed=0)
    r = ecomcore.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned).topk(m.user_tags, 4)
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(-?\d+\.\d+)\s+(\d\.\d+)$", out, flags=re.M)
    assert len(rows) == 8
    for i, (rank, merchant, score, _) in enumerate(rows):
        u, j = divmod(i, 4)
        assert int(rank) == j + 1
        assert int(merchant) == r.indices[u, j]
        assert float(score) == pytest.approx(float(r.scores[u, j]), abs=1e-4)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ecomcore {ecomcore.__version__}"


def test_config(capsys):
    assert main(["config"]) == 0
    assert "openmp" in capsys.readouterr().out


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
