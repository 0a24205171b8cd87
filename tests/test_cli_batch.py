"""Tests for the batch subcommands ``ecomcore profiles``, ``trust`` and ``rank`` (ecomcore.cli_batch)."""

import csv
import os

import numpy as np
import pytest
import scipy.sparse as sp

import ecomcore as ec
from ecomcore.cli import main
from ecomcore.interest import InterestModel, InterestState

N_USERS, N_ITEMS, N_TAGS, N_M = 40, 30, 12, 25
T0 = 1_700_000_000.0
KINDS = ["view", "fav", "cart", "buy"]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _market(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    item_tags = sp.random(N_ITEMS, N_TAGS, density=0.2, random_state=seed, format="csr", dtype=np.float64)
    item_tags = sp.csr_matrix(item_tags + sp.eye(N_ITEMS, N_TAGS, format="csr"))  # every item has a tag
    b = sp.csr_matrix(sp.random(N_TAGS, N_M, density=0.3, random_state=seed + 1, dtype=np.float32))
    sp.save_npz(tmp_path / "item_tags.npz", item_tags)
    sp.save_npz(tmp_path / "b.npz", b)
    n_ev = 300
    ev = {
        "user": rng.integers(0, N_USERS, n_ev),
        "item": rng.integers(0, N_ITEMS, n_ev),
        "kind": rng.choice(KINDS, n_ev),
        "time": T0 + rng.integers(0, 60 * 86400, n_ev),
        "weight": rng.integers(1, 100, n_ev) / 10.0,
    }
    ev["user"][0] = N_USERS - 1  # the largest id occurs, so --users can be inferred
    rows = list(zip(*(ev[c].tolist() for c in ("user", "item", "kind", "time", "weight"))))
    _write_csv(tmp_path / "events.csv", ["user", "item", "kind", "time", "weight"], rows)

    names = [i.name for i in ec.default_indicators()]
    kinds = {i.name: i.kind for i in ec.default_indicators()}
    mrows = []
    for _ in range(400):
        name = names[int(rng.integers(len(names)))]
        kind = kinds[name]
        value = (
            float(rng.integers(0, 2))
            if kind == "rate"
            else (float(rng.integers(1, 6)) if kind == "rating" else float(rng.uniform(0, 50)))
        )
        buyer = int(rng.integers(0, 50)) if rng.random() < 0.5 else ""
        mrows.append((int(rng.integers(N_M)), name, value, T0 + float(rng.integers(0, 90 * 86400)), buyer))
    _write_csv(tmp_path / "mevents.csv", ["merchant", "indicator", "value", "time", "buyer"], mrows)
    return ev, item_tags, b, mrows


def _read_rank(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        assert next(r) == ["user", "rank", "merchant", "score", "interest", "follow", "weight"]
        return [tuple(row) for row in r]


def test_chain_matches_direct_ranker(tmp_path, capsys):
    ev, item_tags, b, mrows = _market(tmp_path)
    p = str(tmp_path)
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/events.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/a.npz",
                "--max-tags",
                "5",
            ]
        )
        == 0
    )
    assert main(["trust", "--events", f"{p}/mevents.csv", "--merchants", str(N_M), "--out", f"{p}/trust.npz"]) == 0
    banned = np.zeros(N_M, bool)
    banned[[2, 7]] = True
    np.save(tmp_path / "banned.npy", banned)
    assert (
        main(
            [
                "rank",
                "--profiles",
                f"{p}/a.npz",
                "--merchant-tags",
                f"{p}/b.npz",
                "--trust",
                f"{p}/trust.npz",
                "--banned",
                f"{p}/banned.npy",
                "--k",
                "4",
                "--threads",
                "1",
                "--out",
                f"{p}/rank.csv",
            ]
        )
        == 0
    )
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""  # not a TTY: silent

    # profiles: the InterestModel applied directly
    model = InterestModel(max_tags_per_user=5, n_users=N_USERS)
    state = model.fold(ev, item_tags)
    a_ref = model.profiles(state)
    a = sp.load_npz(tmp_path / "a.npz")
    assert a.shape == (N_USERS, N_TAGS) and a.dtype == np.float32
    np.testing.assert_array_equal(a.toarray(), a_ref.toarray())

    # trust: the TrustModel applied directly
    tmodel = ec.TrustModel(ec.default_indicators(), n_merchants=N_M)
    tev = {
        "merchant": np.array([r[0] for r in mrows]),
        "indicator": np.array([r[1] for r in mrows]),
        "value": np.array([r[2] for r in mrows]),
        "time": np.array([r[3] for r in mrows]),
        "buyer": np.array([-1 if r[4] == "" else r[4] for r in mrows]),
    }
    tstate = tmodel.fold(tev)
    scores = tmodel.score(tstate, tstate.last_time)
    with np.load(tmp_path / "trust.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["index"], scores.index, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(z["boost"], scores.boost)
        np.testing.assert_allclose(z["confidence"], scores.confidence, rtol=0, atol=1e-12)
        assert z["dimensions"].shape == (N_M, 6)

    # rank: Ranker.topk directly
    ref = ec.Ranker(b, trust=scores.index, boost=scores.boost, banned=banned).topk(a_ref, 4, n_threads=1)
    rows = _read_rank(tmp_path / "rank.csv")
    expect = []
    for u in range(N_USERS):
        for r in range(int(ref.counts[u])):
            expect.append((u, r + 1, int(ref.indices[u, r]), np.float32(ref.scores[u, r])))
    assert len(rows) == len(expect) > 0
    w_ref = scores.index * scores.boost
    bd = b.toarray().astype(np.float64)
    ad = a_ref.toarray().astype(np.float64)
    for row, (u, r, m, s) in zip(rows, expect):
        assert (int(row[0]), int(row[1]), int(row[2])) == (u, r, m)
        assert np.float32(float(row[3])) == s  # exact float32 round trip
        assert float(row[4]) == pytest.approx(ad[u] @ bd[:, m], rel=1e-9, abs=1e-12)
        assert float(row[5]) == 0.0  # no --follows
        assert float(row[6]) == pytest.approx(w_ref[m], rel=1e-12)
        assert float(row[3]) == pytest.approx(float(row[4]) * float(row[6]), rel=1e-5, abs=1e-7)
        assert m not in (2, 7)


def test_incremental_state_equals_one_fold(tmp_path):
    _market(tmp_path)
    p = str(tmp_path)
    with open(tmp_path / "events.csv") as f:
        lines = f.read().splitlines()
    header, body = lines[0], lines[1:]
    (tmp_path / "ev1.csv").write_text("\n".join([header, *body[:120]]) + "\n")
    (tmp_path / "ev2.csv").write_text("\n".join([header, *body[120:]]) + "\n")
    common = ["--item-tags", f"{p}/item_tags.npz", "--users", str(N_USERS)]
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/events.csv",
                *common,
                "--out",
                f"{p}/all.npz",
                "--save-state",
                f"{p}/all_state.npz",
            ]
        )
        == 0
    )
    assert (
        main(["profiles", "--events", f"{p}/ev1.csv", *common, "--out", f"{p}/p1.npz", "--save-state", f"{p}/s1.npz"])
        == 0
    )
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/ev2.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--state",
                f"{p}/s1.npz",
                "--out",
                f"{p}/p2.npz",
                "--save-state",
                f"{p}/s2.npz",
            ]
        )
        == 0
    )
    one = InterestState.load(tmp_path / "all_state.npz")
    two = InterestState.load(tmp_path / "s2.npz")
    np.testing.assert_allclose(two.decayed_sums().toarray(), one.decayed_sums().toarray(), rtol=1e-12)
    np.testing.assert_allclose(
        sp.load_npz(tmp_path / "p2.npz").toarray(), sp.load_npz(tmp_path / "all.npz").toarray(), rtol=1e-6, atol=1e-7
    )

    # trust: the same with --state
    with open(tmp_path / "mevents.csv") as f:
        mlines = f.read().splitlines()
    (tmp_path / "m1.csv").write_text("\n".join([mlines[0], *mlines[1:200]]) + "\n")
    (tmp_path / "m2.csv").write_text("\n".join([mlines[0], *mlines[200:]]) + "\n")
    now = str(T0 + 100 * 86400)
    tc = ["--merchants", str(N_M), "--now", now]
    assert main(["trust", "--events", f"{p}/mevents.csv", *tc, "--out", f"{p}/t_all.npz"]) == 0
    assert main(["trust", "--events", f"{p}/m1.csv", *tc, "--out", f"{p}/t1.npz", "--save-state", f"{p}/ts1.npz"]) == 0
    assert main(["trust", "--events", f"{p}/m2.csv", *tc, "--state", f"{p}/ts1.npz", "--out", f"{p}/t2.npz"]) == 0
    with np.load(tmp_path / "t_all.npz") as x, np.load(tmp_path / "t2.npz") as y:
        np.testing.assert_allclose(y["index"], x["index"], rtol=1e-9, atol=1e-12)


def test_profiles_options(tmp_path):
    ev, item_tags, _, _ = _market(tmp_path)
    p = str(tmp_path)
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/events.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/a.npz",
                "--no-idf",
                "--half-life-days",
                "0",
                "--normalize",
                "none",
                "--users",
                "50",
            ]
        )
        == 0
    )
    model = InterestModel(half_life_days=None, idf=False, normalize=None, n_users=50)
    ref = model.profiles(model.fold(ev, item_tags))
    np.testing.assert_array_equal(sp.load_npz(tmp_path / "a.npz").toarray(), ref.toarray())


def _err(capsys):
    return capsys.readouterr().err


def _profiles_cmd(p, events="events.csv", item_tags="item_tags.npz", extra=()):
    return [
        "profiles",
        "--events",
        f"{p}/{events}",
        "--item-tags",
        f"{p}/{item_tags}",
        "--out",
        f"{p}/out.npz",
        "--save-state",
        f"{p}/state_out.npz",
        *extra,
    ]


@pytest.mark.parametrize(
    "header, row, line, needle",
    [
        (["user", "item", "time"], [1, 2, T0], 1, "missing column 'kind'"),
        (["user", "item", "kind", "time"], ["x", 2, "buy", T0], 4, "expected an integer user id, got 'x'"),
        (["user", "item", "kind", "time"], [1, 2.5, "buy", T0], 4, "expected an integer item id"),
        (["user", "item", "kind", "time"], [1, 2, "buy", "yesterday"], 4, "expected a time, got 'yesterday'"),
        (["user", "item", "kind", "time"], [1, 2, "teleport", T0], 4, "unknown event kind 'teleport'"),
        (["user", "item", "kind", "time"], [1, N_ITEMS, "buy", T0], 4, f"item id {N_ITEMS} is out of range"),
        (["user", "item", "kind", "time"], [-1, 2, "buy", T0], 4, "user id -1 is out of range"),
        (["user", "item", "kind", "time"], [N_USERS, 2, "buy", T0], 4, f"user id {N_USERS} is out of range"),
        (["user", "item", "kind", "time", "weight"], [1, 2, "buy", T0, -3], 4, "weight '-3' is not a finite"),
        (["user", "item", "kind", "time"], [1, 2, "buy", "nan"], 4, "time 'nan' is not a finite"),
    ],
)
def test_profiles_bad_events(tmp_path, capsys, header, row, line, needle):
    _market(tmp_path)
    p = str(tmp_path)
    good = [[0, 1, "view", T0], [3, 4, "buy", T0 + 5]]
    if "weight" in header:
        good = [g + [1.0] for g in good]
    if "kind" not in header:
        good = [[g[0], g[1], g[3]] for g in good]
    _write_csv(tmp_path / "bad.csv", header, [*good, row])
    assert main(_profiles_cmd(p, "bad.csv", extra=("--users", str(N_USERS)))) == 1
    err = _err(capsys)
    assert err.startswith(f"ecomcore profiles: {p}/bad.csv:{line}: "), err
    assert needle in err, err
    assert not os.path.exists(tmp_path / "out.npz") and not os.path.exists(tmp_path / "state_out.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["b.npz", "bad.csv", "events.csv", "item_tags.npz", "mevents.csv"])


@pytest.mark.parametrize(
    "header, row, needle",
    [
        (["merchant", "indicator", "time"], None, "missing column 'value'"),
        (
            ["merchant", "indicator", "value", "time"],
            ["m3", "good_review_rate", 1, T0],
            "expected an integer merchant id",
        ),
        (
            ["merchant", "indicator", "value", "time"],
            [N_M, "good_review_rate", 1, T0],
            f"merchant id {N_M} is out of range",
        ),
        (["merchant", "indicator", "value", "time"], [3, "vibes", 1, T0], "unknown indicator 'vibes'"),
        (
            ["merchant", "indicator", "value", "time"],
            [3, "good_review_rate", "high", T0],
            "expected a value, got 'high'",
        ),
        (["merchant", "indicator", "value", "time"], [3, "good_review_rate", 0.5, T0], "takes 0 or 1"),
    ],
)
def test_trust_bad_events(tmp_path, capsys, header, row, needle):
    p = str(tmp_path)
    good = [[0, "good_review_rate", 1, T0], [1, "review_rating", 4, T0 + 1]]
    if row is None:
        rows, line = [[g[0], g[1], g[3]] for g in good], 1
    else:
        rows, line = [*good, row], 4
    _write_csv(tmp_path / "bad.csv", header, rows)
    assert (
        main(
            [
                "trust",
                "--events",
                f"{p}/bad.csv",
                "--merchants",
                str(N_M),
                "--out",
                f"{p}/t.npz",
                "--save-state",
                f"{p}/s.npz",
            ]
        )
        == 1
    )
    err = _err(capsys)
    assert err.startswith(f"ecomcore trust: {p}/bad.csv:{line}: "), err
    assert needle in err, err
    assert os.listdir(tmp_path) == ["bad.csv"]


def test_missing_and_truncated_files(tmp_path, capsys):
    _market(tmp_path)
    p = str(tmp_path)
    assert main(_profiles_cmd(p, events="nope.csv")) == 1
    assert _err(capsys).startswith(f"ecomcore profiles: {p}/nope.csv: no such file")
    data = (tmp_path / "item_tags.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    assert main(_profiles_cmd(p, item_tags="trunc.npz")) == 1
    assert _err(capsys).startswith(f"ecomcore profiles: {p}/trunc.npz: not a readable scipy sparse .npz")
    assert not os.path.exists(tmp_path / "out.npz")

    # rank: truncated trust file, wrong kind of file, bad banned ids, shape mismatch
    assert (
        main(["profiles", "--events", f"{p}/events.csv", "--item-tags", f"{p}/item_tags.npz", "--out", f"{p}/a.npz"])
        == 0
    )
    assert main(["trust", "--events", f"{p}/mevents.csv", "--merchants", str(N_M), "--out", f"{p}/t.npz"]) == 0
    tdata = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t_trunc.npz").write_bytes(tdata[:100])
    rank = ["rank", "--profiles", f"{p}/a.npz", "--merchant-tags", f"{p}/b.npz", "--out", f"{p}/r.csv"]
    capsys.readouterr()
    assert main([*rank, "--trust", f"{p}/t_trunc.npz"]) == 1
    assert _err(capsys).startswith(f"ecomcore rank: {p}/t_trunc.npz: corrupt or unreadable")
    assert main([*rank, "--trust", f"{p}/a.npz"]) == 1
    assert _err(capsys).startswith(f"ecomcore rank: {p}/a.npz: ")
    np.save(tmp_path / "banned.npy", np.array([1, N_M + 3]))
    assert main([*rank, "--banned", f"{p}/banned.npy"]) == 1
    assert _err(capsys).startswith(f"ecomcore rank: {p}/banned.npy:2: merchant id {N_M + 3} is out of range")
    assert (
        main(["rank", "--profiles", f"{p}/a.npz", "--merchant-tags", f"{p}/item_tags.npz", "--out", f"{p}/r.csv"]) == 1
    )
    assert "tag rows" in _err(capsys)
    assert not os.path.exists(tmp_path / "r.csv")
    # a state file of the wrong configuration
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/events.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/a2.npz",
                "--save-state",
                f"{p}/s.npz",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/events.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/a3.npz",
                "--state",
                f"{p}/s.npz",
                "--half-life-days",
                "3",
            ]
        )
        == 1
    )
    assert _err(capsys).startswith(f"ecomcore profiles: {p}/s.npz: ")
    assert not os.path.exists(tmp_path / "a3.npz")


def test_output_replaced_only_on_success(tmp_path, capsys):
    _market(tmp_path)
    p = str(tmp_path)
    (tmp_path / "out.npz").write_bytes(b"previous")
    _write_csv(tmp_path / "bad.csv", ["user", "item", "kind", "time"], [[0, 1, "view", T0], [0, 1, "hop", T0]])
    assert main(_profiles_cmd(p, "bad.csv")) == 1
    assert (tmp_path / "out.npz").read_bytes() == b"previous"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_help_lists_batch_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("profiles", "trust", "rank", "demo", "config"):
        assert cmd in out
    with pytest.raises(SystemExit) as e:
        main(["rank", "--profiles", "a.npz"])
    assert e.value.code == 2


class _TTY:
    """A stand-in for a terminal stderr."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_only_on_tty_and_not_quiet(tmp_path, monkeypatch):
    _market(tmp_path)
    p = str(tmp_path)
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/events.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/a.npz",
                "--quiet",
            ]
        )
        == 0
    )
    rank = ["rank", "--profiles", f"{p}/a.npz", "--merchant-tags", f"{p}/b.npz", "--out", f"{p}/r.csv"]
    tty = _TTY()
    monkeypatch.setattr("sys.stderr", tty)
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # the built-in indicator
    assert main(rank) == 0
    assert "ranking: [" in tty.text and f"100% {N_USERS}/{N_USERS}" in tty.text
    assert "rows ->" in tty.text
    tty.text = ""
    assert main([*rank, "--quiet"]) == 0
    assert tty.text == ""
    # reading and folding show bars too
    prof = ["profiles", "--events", f"{p}/events.csv", "--item-tags", f"{p}/item_tags.npz", "--out", f"{p}/a2.npz"]
    assert main(prof) == 0
    size = os.path.getsize(tmp_path / "events.csv")
    assert "reading events.csv: [" in tty.text and f"/{size / 1024:.1f} KiB" in tty.text
    assert "folding events: [" in tty.text and "100% 300/300" in tty.text
    assert "entries from 300 events" in tty.text
    tty.text = ""
    assert main(["trust", "--events", f"{p}/mevents.csv", "--merchants", str(N_M), "--out", f"{p}/t.npz"]) == 0
    assert "reading mevents.csv" in tty.text and "folding events: [" in tty.text and "100% 400/400" in tty.text
    tty.text = ""
    assert main([*prof, "--quiet"]) == 0
    assert tty.text == ""


def test_empty_events_and_huge_ids(tmp_path, capsys):
    _market(tmp_path)
    p = str(tmp_path)
    _write_csv(tmp_path / "empty.csv", ["user", "item", "kind", "time"], [])
    assert (
        main(
            [
                "profiles",
                "--events",
                f"{p}/empty.csv",
                "--item-tags",
                f"{p}/item_tags.npz",
                "--out",
                f"{p}/a.npz",
                "--users",
                "7",
            ]
        )
        == 0
    )
    a = sp.load_npz(tmp_path / "a.npz")
    assert a.shape == (7, N_TAGS) and a.nnz == 0
    _write_csv(tmp_path / "huge.csv", ["user", "item", "kind", "time"], [[10**30, 1, "buy", T0]])
    assert (
        main(["profiles", "--events", f"{p}/huge.csv", "--item-tags", f"{p}/item_tags.npz", "--out", f"{p}/h.npz"]) == 1
    )
    assert _err(capsys).startswith(f"ecomcore profiles: {p}/huge.csv:2: column 'user': user id")
    assert not os.path.exists(tmp_path / "h.npz")


def test_event_weights_guarantee_and_categories(tmp_path, capsys):
    _market(tmp_path)
    p = str(tmp_path)
    rows = [[0, 1, "like", T0], [1, 2, "buy", T0 + 3600], [0, 3, "buy", T0 + 7200], [2, 1, "like", T0]]
    _write_csv(tmp_path / "ev.csv", ["user", "item", "kind", "time"], rows)
    item_tags = sp.load_npz(tmp_path / "item_tags.npz")
    cmd = ["profiles", "--events", f"{p}/ev.csv", "--item-tags", f"{p}/item_tags.npz", "--out", f"{p}/a.npz"]
    assert main([*cmd, "--event-weights", "like=1.5,buy=5", "--users", "4", "--normalize", "none"]) == 0
    model = InterestModel({"like": 1.5, "buy": 5.0}, normalize=None, n_users=4)
    ev = {k: np.array([r[j] for r in rows]) for j, k in enumerate(["user", "item", "kind", "time"])}
    ref = model.profiles(model.fold(ev, item_tags))
    np.testing.assert_array_equal(sp.load_npz(tmp_path / "a.npz").toarray(), ref.toarray())
    assert main(cmd) == 1  # "like" is not a default kind
    assert "unknown event kind 'like'" in _err(capsys)
    with pytest.raises(SystemExit):
        main([*cmd, "--event-weights", "like=-1"])
    capsys.readouterr()

    guarantee = np.zeros((N_M, 2), bool)
    guarantee[3] = True
    guarantee[5, 0] = True
    np.save(tmp_path / "g.npy", guarantee)
    cats = np.arange(N_M) % 3
    np.save(tmp_path / "c.npy", cats)
    tcmd = ["trust", "--events", f"{p}/mevents.csv", "--merchants", str(N_M), "--out", f"{p}/t.npz"]
    assert main([*tcmd, "--guarantee", f"{p}/g.npy", "--categories", f"{p}/c.npy", "--now", str(T0 + 1e7)]) == 0
    with np.load(tmp_path / "t.npz") as z:
        boost = z["boost"]
        index = z["index"]
    expect = np.ones(N_M)
    expect[3], expect[5] = 1.1, 1.05
    np.testing.assert_allclose(boost, expect)
    tmodel = ec.TrustModel(ec.default_indicators(), n_merchants=N_M)
    with open(tmp_path / "mevents.csv") as f:
        mrows = list(csv.DictReader(f))
    tev = {
        "merchant": np.array([int(r["merchant"]) for r in mrows]),
        "indicator": np.array([r["indicator"] for r in mrows]),
        "value": np.array([float(r["value"]) for r in mrows]),
        "time": np.array([float(r["time"]) for r in mrows]),
        "buyer": np.array([int(r["buyer"]) if r["buyer"] else -1 for r in mrows]),
    }
    ref_scores = tmodel.score(tmodel.fold(tev), T0 + 1e7, categories=cats, guarantee=guarantee)
    np.testing.assert_allclose(index, ref_scores.index, rtol=0, atol=1e-12)
    np.save(tmp_path / "g_bad.npy", guarantee[:5])
    os.remove(tmp_path / "t.npz")
    assert main([*tcmd, "--guarantee", f"{p}/g_bad.npy"]) == 1
    assert _err(capsys).startswith(f"ecomcore trust: {p}/g_bad.npy: expected shape ({N_M},)")
    assert not os.path.exists(tmp_path / "t.npz")


def _has_pyarrow():
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_pyarrow(), reason="pyarrow is not installed (Parquet input is optional)")
def test_parquet_events_match_csv(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ev, _, _, _ = _market(tmp_path)
    p = str(tmp_path)
    pq.write_table(pa.table({k: np.asarray(v) for k, v in ev.items()}), tmp_path / "ev.parquet")
    common = ["--item-tags", f"{p}/item_tags.npz", "--users", str(N_USERS)]
    assert main(["profiles", "--events", f"{p}/events.csv", *common, "--out", f"{p}/a_csv.npz"]) == 0
    assert main(["profiles", "--events", f"{p}/ev.parquet", *common, "--out", f"{p}/a_pq.npz"]) == 0
    np.testing.assert_array_equal(
        sp.load_npz(tmp_path / "a_pq.npz").toarray(), sp.load_npz(tmp_path / "a_csv.npz").toarray()
    )
    bad = dict(ev, item=np.where(np.arange(len(ev["item"])) == 7, N_ITEMS + 1, ev["item"]))
    pq.write_table(pa.table({k: np.asarray(v) for k, v in bad.items()}), tmp_path / "bad.parquet")
    assert main(["profiles", "--events", f"{p}/bad.parquet", *common, "--out", f"{p}/bad_out.npz"]) == 1
    assert _err(capsys).startswith(f"ecomcore profiles: {p}/bad.parquet:8: column 'item': item id {N_ITEMS + 1}")
    assert not os.path.exists(tmp_path / "bad_out.npz")


@pytest.mark.skipif(_has_pyarrow(), reason="checks the message shown when pyarrow is missing")
def test_parquet_without_pyarrow(tmp_path, capsys):
    _market(tmp_path)
    (tmp_path / "ev.parquet").write_bytes(b"PAR1")
    p = str(tmp_path)
    assert (
        main(["profiles", "--events", f"{p}/ev.parquet", "--item-tags", f"{p}/item_tags.npz", "--out", f"{p}/a.npz"])
        == 1
    )
    assert "reading Parquet needs pyarrow" in _err(capsys)
    assert not os.path.exists(tmp_path / "a.npz")


# ---------------------------------------------------------------------------------------------
# Chunked folds (progress) equal one fold; errors in a later chunk name the right row
# ---------------------------------------------------------------------------------------------


def test_chunked_folds_equal_one_fold(tmp_path, monkeypatch, capsys):
    import ecomcore.cli_batch as cb

    _market(tmp_path)
    p = str(tmp_path)
    prof = ["profiles", "--events", f"{p}/events.csv", "--item-tags", f"{p}/item_tags.npz", "--users", str(N_USERS)]
    trust = ["trust", "--events", f"{p}/mevents.csv", "--merchants", str(N_M), "--now", str(T0 + 1e7)]
    assert main([*prof, "--out", f"{p}/one.npz"]) == 0
    assert main([*trust, "--out", f"{p}/t_one.npz"]) == 0
    monkeypatch.setattr(cb, "_FOLD_CHUNK", 64)  # 300 and 400 events: 5 and 7 folds
    assert main([*prof, "--out", f"{p}/many.npz"]) == 0
    assert main([*trust, "--out", f"{p}/t_many.npz"]) == 0
    np.testing.assert_allclose(
        sp.load_npz(tmp_path / "many.npz").toarray(), sp.load_npz(tmp_path / "one.npz").toarray(), rtol=1e-6, atol=1e-7
    )
    with np.load(tmp_path / "t_one.npz") as x, np.load(tmp_path / "t_many.npz") as y:
        np.testing.assert_allclose(y["index"], x["index"], rtol=1e-9, atol=1e-12)
    # a bad value in the third chunk: the model's error names the file line (header = line 1)
    with open(tmp_path / "mevents.csv") as f:
        lines = f.read().splitlines()
    head, body = lines[0], lines[1:]
    body[150] = f"3,refund_rate,7,{T0},"
    (tmp_path / "bad.csv").write_text("\n".join([head, *body]) + "\n")
    assert main(["trust", "--events", f"{p}/bad.csv", "--merchants", str(N_M), "--out", f"{p}/t_bad.npz"]) == 1
    err = _err(capsys)
    assert err.startswith(f"ecomcore trust: {p}/bad.csv:152: ") and "takes 0 or 1" in err
    assert not os.path.exists(tmp_path / "t_bad.npz")


# ---------------------------------------------------------------------------------------------
# rank --follows / --exclude
# ---------------------------------------------------------------------------------------------


def _ranked(tmp_path):
    p = str(tmp_path)
    _market(tmp_path)
    prof = ["profiles", "--events", f"{p}/events.csv", "--item-tags", f"{p}/item_tags.npz", "--out", f"{p}/a.npz"]
    assert main([*prof, "--users", str(N_USERS)]) == 0
    rng = np.random.default_rng(5)
    f = sp.random(N_USERS, N_M, density=0.05, random_state=3, format="csr", dtype=np.float32)
    f.data = rng.uniform(0.5, 2.0, f.nnz).astype(np.float32)
    sp.save_npz(tmp_path / "f.npz", f)
    pairs = sorted({(int(rng.integers(N_USERS)), int(rng.integers(N_M))) for _ in range(150)})
    _write_csv(tmp_path / "ex.csv", ["merchant", "user"], [(m, u) for u, m in pairs + pairs[:5]])  # duplicates ok
    e = sp.csr_matrix((np.full(len(pairs), 2.5), tuple(zip(*pairs))), shape=(N_USERS, N_M))
    sp.save_npz(tmp_path / "ex.npz", e)
    return p, f, pairs


def test_rank_follows_and_exclude_match_ranker(tmp_path):
    p, f, pairs = _ranked(tmp_path)
    cmd = ["rank", "--profiles", f"{p}/a.npz", "--merchant-tags", f"{p}/b.npz", "--k", "6", "--threads", "1"]
    follow = ["--follows", f"{p}/f.npz", "--follow-weight", "0.75"]
    assert main([*cmd, *follow, "--exclude", f"{p}/ex.csv", "--out", f"{p}/r_csv.csv"]) == 0
    assert main([*cmd, *follow, "--exclude", f"{p}/ex.npz", "--out", f"{p}/r_npz.csv"]) == 0
    assert (tmp_path / "r_csv.csv").read_text() == (tmp_path / "r_npz.csv").read_text()
    a = sp.load_npz(tmp_path / "a.npz")
    b = sp.load_npz(tmp_path / "b.npz")
    e = sp.load_npz(tmp_path / "ex.npz")
    ref = ec.Ranker(b, follow_weight=0.75).topk(a, 6, follows=f, exclude=e, n_threads=1)
    rows = _read_rank(tmp_path / "r_csv.csv")
    expect = [
        (u, r + 1, int(ref.indices[u, r]), np.float32(ref.scores[u, r]))
        for u in range(N_USERS)
        for r in range(int(ref.counts[u]))
    ]
    assert len(rows) == len(expect) > 0
    fd = f.toarray().astype(np.float64)
    banned_pairs = set(pairs)
    n_follow = 0
    for row, (u, r, m, s) in zip(rows, expect):
        assert (int(row[0]), int(row[1]), int(row[2])) == (u, r, m)
        assert np.float32(float(row[3])) == s
        assert (u, m) not in banned_pairs
        assert float(row[5]) == pytest.approx(0.75 * fd[u, m], rel=1e-6)
        n_follow += float(row[5]) > 0
        assert float(row[3]) == pytest.approx((float(row[4]) + float(row[5])) * float(row[6]), rel=1e-5, abs=1e-6)
    assert n_follow > 0
    # without the exclusions some excluded pair is ranked: the option did something
    assert main([*cmd, *follow, "--out", f"{p}/r_all.csv"]) == 0
    assert {(int(r[0]), int(r[2])) for r in _read_rank(tmp_path / "r_all.csv")} & banned_pairs


@pytest.mark.parametrize(
    "opt, make, needle",
    [
        ("--follows", None, "{f}: no such file"),
        ("--follows", lambda t: (t / "x.npz").write_text("not a zip"), "{f}: not a readable scipy sparse .npz"),
        ("--follows", lambda t: sp.save_npz(t / "x.npz", sp.csr_matrix((N_USERS, N_M + 1))), "{f}: expected shape"),
        (
            "--follows",
            lambda t: sp.save_npz(t / "x.npz", sp.csr_matrix(([np.nan], ([1], [2])), shape=(N_USERS, N_M))),
            "{f}: entry (user 1, merchant 2) is nan, not a finite number",
        ),
        ("--follows", lambda t: _write_csv(t / "x.csv", ["user", "merchant"], [[0, 1]]), "{f}: expected a scipy"),
        ("--exclude", None, "{f}: no such file"),
        ("--exclude", lambda t: sp.save_npz(t / "x.npz", sp.csr_matrix((N_USERS - 1, N_M))), "{f}: expected shape"),
        (
            "--exclude",
            lambda t: _write_csv(t / "x.csv", ["user", "shop"], [[0, 1]]),
            "{f}:1: missing column 'merchant'",
        ),
        (
            "--exclude",
            lambda t: _write_csv(t / "x.csv", ["user", "merchant"], [[0, 1], ["u7", 2]]),
            "{f}:3: column 'user': expected an integer user id, got 'u7'",
        ),
        (
            "--exclude",
            lambda t: _write_csv(t / "x.csv", ["user", "merchant"], [[0, N_M]]),
            f"{{f}}:2: column 'merchant': merchant id {N_M} is out of range [0, {N_M})",
        ),
        (
            "--exclude",
            lambda t: _write_csv(t / "x.csv", ["user", "merchant"], [[0, 1], [1, 1], [-1, 0]]),
            f"{{f}}:4: column 'user': user id -1 is out of range [0, {N_USERS})",
        ),
        (
            "--exclude",
            lambda t: _write_csv(t / "x.csv", ["user", "merchant"], [[N_USERS, 1]]),
            f"{{f}}:2: column 'user': user id {N_USERS} is out of range [0, {N_USERS})",
        ),
    ],
)
def test_rank_follows_exclude_bad_files(tmp_path, capsys, opt, make, needle):
    p, _, _ = _ranked(tmp_path)
    name = "x.npz"
    if make is not None:
        make(tmp_path)
        name = "x.csv" if (tmp_path / "x.csv").exists() else "x.npz"
    path = f"{p}/{name}"
    (tmp_path / "r.csv").write_text("previous")
    cmd = ["rank", "--profiles", f"{p}/a.npz", "--merchant-tags", f"{p}/b.npz", "--out", f"{p}/r.csv", opt, path]
    assert main(cmd) == 1
    err = _err(capsys)
    assert err.startswith(f"ecomcore rank: {needle.format(f=path)}"), err
    assert (tmp_path / "r.csv").read_text() == "previous"
    assert not [x for x in os.listdir(tmp_path) if x.endswith(".tmp")]
