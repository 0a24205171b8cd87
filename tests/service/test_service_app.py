"""Functional tests of the example service (``examples/service/app.py``) through FastAPI's TestClient.

Every endpoint and every 4xx; answers equal to the offline ``Ranker.topk`` for the version they
carry; live events change the ranking exactly as folding them offline does; a request finishes on
the snapshot it started with while the Ranker is swapped.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import ecomcore as ec

NOW = 1_767_225_600.0
pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")


class Clock:
    """A settable clock for re-scoring."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def inputs(small_files):
    f = small_files
    a = sp.csr_array(sp.load_npz(f.profiles))
    b = sp.csr_array(sp.load_npz(f.merchant_tags))
    banned = np.load(f.banned)
    from ecomcore._persist import load_npz

    trust, _ = load_npz(f.trust, "ecomcore.trust_scores", 1)
    return {"a": a, "b": b, "banned": banned, "trust": trust["index"], "boost": trust["boost"]}


@pytest.fixture
def service(service_app, small_files, tmp_path):
    return service_app.RankingService.from_files(
        small_files.profiles,
        small_files.merchant_tags,
        small_files.trust,
        trust_state=small_files.trust_state,
        banned=small_files.banned,
        k_max=50,
        clock=Clock(NOW),
        record_dir=str(tmp_path),
    )


@pytest.fixture
def client(service_app, service):
    from fastapi.testclient import TestClient

    with TestClient(service_app.create_app(service, rescore_every=None, workers=2)) as c:
        yield c


def offline(inputs, trust, boost, users, k):
    """The plain batch answer: a Ranker built from scratch, topk over the users' rows."""
    r = ec.Ranker(inputs["b"], trust=trust, boost=boost, banned=inputs["banned"])
    return r, r.topk(inputs["a"][np.asarray(users)], k, n_threads=1)


def check_answer(ans, inputs, ranker, top, row, trust, boost):
    c = int(top.counts[row])
    ms = top.indices[row, :c].tolist()
    got = ans["merchants"]
    assert [x["merchant"] for x in got] == ms
    assert [x["score"] for x in got] == top.scores[row, :c].tolist()  # bit-identical float32 values
    a = inputs["a"][[ans["user"]]].toarray()[0].astype(np.float64)
    b = inputs["b"].toarray().astype(np.float64)
    for x in got:
        m = x["merchant"]
        assert x["interest"] == pytest.approx(float(a @ b[:, m]), rel=1e-12, abs=1e-15)
        assert x["trust"] == trust[m] and x["boost"] == boost[m]
        assert x["weight"] == ranker.merchant_weight[m] == pytest.approx(trust[m] * boost[m], rel=1e-15)
        assert x["score"] == pytest.approx(x["interest"] * x["weight"], rel=1e-5)


def test_health(client, small_files):
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["version"] == 1 and h["live_trust"] is True
    assert h["n_users"] == small_files.n_users and h["n_merchants"] == small_files.n_merchants


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_answers_equal_offline_topk(client, inputs, k):
    users = list(range(0, 400, 7))
    ranker, top = offline(inputs, inputs["trust"], inputs["boost"], users, k)
    for j, u in enumerate(users):
        r = client.get(f"/users/{u}/merchants", params={"k": k})
        assert r.status_code == 200, r.text
        ans = r.json()
        assert ans["user"] == u and ans["k"] == k and ans["version"] == 1
        check_answer(ans, inputs, ranker, top, j, inputs["trust"], inputs["boost"])
    assert client.get("/users/5/merchants").json()["k"] == 10  # default k


def test_user_without_profile(service_app, small_files, inputs):
    a = inputs["a"].tolil()
    a[3, :] = 0
    svc = service_app.RankingService(sp.csr_array(a), inputs["b"], inputs["trust"], inputs["boost"])
    assert svc.rank(3, 5)["merchants"] == []


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("/users/400/merchants", 404, "unknown user 400"),
        ("/users/-1/merchants", 404, "unknown user -1"),
        ("/users/100000000000000000000000000000/merchants", 404, "unknown user"),
        ("/users/abc/merchants", 422, "user"),
        ("/users/1.5/merchants", 422, "user"),
        ("/users/3/merchants?k=0", 422, "k: must be between 1 and 50, got 0"),
        ("/users/3/merchants?k=51", 422, "k: must be between 1 and 50, got 51"),
        ("/users/3/merchants?k=-2", 422, "k: must be between"),
        ("/users/3/merchants?k=ten", 422, "k"),
        ("/users/3/merchants?k=2.5", 422, "k"),
        ("/users/3/merchants?k=99999999999999999999999999", 422, "k: must be between"),
        ("/users/3/shops", 404, "Not Found"),
    ],
)
def test_bad_rank_requests(client, path, status, words):
    r = client.get(path)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def events_body(n, t0=NOW - 3600, indicator="refund_rate", value=1):
    return {"events": [{"indicator": indicator, "value": value, "time": t0 + i, "buyer": i} for i in range(n)]}


def test_events_then_rescore_equals_offline_fold(client, service, small_files, inputs):
    posts = [
        (7, events_body(30, value=1)),
        (7, {"events": [{"indicator": "review_rating", "value": 5, "time": NOW - 10}]}),
        (42, {"events": [{"indicator": 0, "value": 1, "time": NOW - 5, "buyer": -1}]}),
        (99, {"events": [{"indicator": "delivery_hours", "value": 12.5, "time": NOW - 1, "buyer": None}]}),
    ]
    for m, body in posts:
        r = client.post(f"/merchants/{m}/events", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["merchant"] == m and out["accepted"] == len(body["events"]) and out["version"] == 1
    assert client.get("/health").json()["events_folded"] == 33
    assert client.get("/users/1/merchants").json()["version"] == 1  # events count from the next re-score
    snap = service.rescore()
    assert snap.version == 2 and client.get("/health").json()["version"] == 2
    # offline: fold the same events into the saved state with the same model, score at the same time
    state = ec.TrustState.load(small_files.trust_state)
    model = ec.TrustModel(ec.default_indicators(), n_merchants=small_files.n_merchants)
    for m, body in posts:
        evs = body["events"]
        model.fold(
            {
                "merchant": np.full(len(evs), m),
                "indicator": np.array([model.indicator_index[e["indicator"]] if isinstance(e["indicator"], str)
                                       else e["indicator"] for e in evs]),
                "value": np.array([float(e["value"]) for e in evs]),
                "time": np.array([e["time"] for e in evs]),
                "buyer": np.array([-1 if e.get("buyer") is None else e["buyer"] for e in evs]),
            },
            into=state,
        )  # fmt: skip
    scores = model.score(state, NOW)
    np.testing.assert_array_equal(snap.trust, scores.index)
    assert not np.array_equal(snap.trust, inputs["trust"])
    users = list(range(0, 400, 11))
    ranker, top = offline(inputs, scores.index, inputs["boost"], users, 10)
    for j, u in enumerate(users):
        ans = client.get(f"/users/{u}/merchants").json()
        assert ans["version"] == 2
        check_answer(ans, inputs, ranker, top, j, scores.index, inputs["boost"])
    # the recorded version files hold what was served
    from ecomcore._persist import load_npz

    rec, meta = load_npz(f"{service._record_dir}/trust-v000002.npz", "ecomcore.service_trust", 1)
    np.testing.assert_array_equal(rec["index"], scores.index)
    assert meta["version"] == 2


BAD_EVENTS = [
    ({"events": [{"indicator": "no_such", "value": 1, "time": NOW}]}, "events[0].indicator: unknown indicator"),
    ({"events": [{"indicator": 33, "value": 1, "time": NOW}]}, "events[0].indicator"),
    ({"events": [{"indicator": -1, "value": 1, "time": NOW}]}, "events[0].indicator"),
    ({"events": [{"indicator": 10**30, "value": 1, "time": NOW}]}, "events[0].indicator"),
    (
        {
            "events": [
                {"indicator": "refund_rate", "value": 1, "time": NOW},
                {"indicator": "refund_rate", "value": 3, "time": NOW},
            ]
        },
        "events[1].value: rate indicator 'refund_rate' takes 0 or 1",
    ),  # fmt: skip
    ({"events": [{"indicator": "review_rating", "value": 9, "time": NOW}]}, "events[0].value"),
    ({"events": [{"indicator": "delivery_hours", "value": -1, "time": NOW}]}, "events[0].value"),
    ({"events": [{"indicator": "refund_rate", "value": 1, "time": NOW * 1000}]}, "events[0].time"),
    ({"events": [{"indicator": "refund_rate", "value": 1, "time": NOW, "buyer": -5}]}, "buyer"),
    ({"events": [{"indicator": "refund_rate", "value": 1, "time": NOW, "buyer": 2**70}]}, "buyer"),
    ({"events": [{"indicator": "refund_rate", "value": 1}]}, "time: Field required"),
    ({"events": [{"indicator": "refund_rate", "value": 1, "time": NOW, "colour": "red"}]}, "colour"),
    ({"events": [{"indicator": "refund_rate", "value": "lots", "time": NOW}]}, "value"),
    ({"events": [{"indicator": True, "value": 1, "time": NOW}]}, "indicator"),
    ({"events": []}, "events"),
    ({"evts": []}, "events: Field required"),
    ([1, 2, 3], "body"),
]


@pytest.mark.parametrize("body, words", BAD_EVENTS)
def test_bad_events_are_422_and_change_nothing(client, service, body, words):
    before = service._state.stats(NOW)
    r = client.post("/merchants/5/events", json=body)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]
    after = service._state.stats(NOW)
    for name in ("n", "s", "s2", "events"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name))
    assert service.events_folded == 0 and client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "content, status, words",
    [
        (b'{"events": [{"indicator": "refund_rate", "value": NaN, "time": 1}]}', 422, "value"),
        (b'{"events": [{"indicator": "refund_rate", "value": Infinity, "time": 1}]}', 422, "value"),
        (b'{"events": [', 422, "JSON"),
        (b"\xff\xfe not json", 400, "error parsing the body"),
        (b"", 422, "Field required"),
    ],
)
def test_malformed_json(client, service, content, status, words):
    r = client.post("/merchants/5/events", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["detail"].lower()
    assert service.events_folded == 0


def test_events_unknown_merchant_and_limits(client, service, small_files):
    n_m = small_files.n_merchants
    for m in (n_m, -1, 10**25):
        r = client.post(f"/merchants/{m}/events", json=events_body(1))
        assert r.status_code == 404 and f"unknown merchant {m}" in r.json()["detail"]
    r = client.post("/merchants/x/events", json=events_body(1))
    assert r.status_code == 422
    r = client.post("/merchants/1/events", json=events_body(service.max_events + 1))
    assert r.status_code == 422 and "1 to 10000 events" in r.json()["detail"]
    r = client.post("/merchants/1/events", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["detail"]

    def chunked():  # no Content-Length: counted while streamed
        for _ in range(300):
            yield b"x" * 10_000

    r = client.post("/merchants/1/events", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["detail"]
    assert service.events_folded == 0
    assert client.get("/merchants/1/events").status_code == 405


def test_without_trust_state_events_are_409(service_app, small_files):
    from fastapi.testclient import TestClient

    svc = service_app.RankingService.from_files(small_files.profiles, small_files.merchant_tags, small_files.trust)
    with TestClient(service_app.create_app(svc, rescore_every=None)) as c:
        r = c.post("/merchants/1/events", json=events_body(1))
        assert r.status_code == 409 and "without a trust state" in r.json()["detail"]
        assert svc.rescore().version == 1
        assert c.get("/health").json()["live_trust"] is False


def test_bad_files_are_clear_errors(service_app, small_files, tmp_path):
    f = small_files
    with pytest.raises(ValueError, match="no such file"):
        service_app.RankingService.from_files(str(tmp_path / "nope.npz"), f.merchant_tags, f.trust)
    with pytest.raises(ValueError, match="expected an ecomcore ecomcore.trust_scores file"):
        service_app.RankingService.from_files(f.profiles, f.merchant_tags, f.trust_state)
    with pytest.raises(ValueError, match="tag"):
        service_app.RankingService.from_files(f.merchant_tags, f.merchant_tags, f.trust)


def test_swap_is_atomic_for_a_request_in_flight(client, service, inputs, monkeypatch):
    """A request that read version 1 finishes on it although version 2 is published meanwhile."""
    entered, release = threading.Event(), threading.Event()
    real = service._interest

    def slow_interest(*args):
        entered.set()
        assert release.wait(10)
        return real(*args)

    monkeypatch.setattr(service, "_interest", slow_interest)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", client.get("/users/17/merchants")))
    t.start()
    assert entered.wait(10)
    client.post("/merchants/3/events", json=events_body(50, value=0, indicator="good_review_rate"))
    monkeypatch.setattr(service, "_interest", real)
    snap2 = service.rescore()
    new = client.get("/users/17/merchants").json()  # a new request sees version 2 at once
    release.set()
    t.join(10)
    old = box["r"].json()
    assert old["version"] == 1 and new["version"] == 2
    ranker, top = offline(inputs, inputs["trust"], inputs["boost"], [17], 10)
    check_answer(old, inputs, ranker, top, 0, inputs["trust"], inputs["boost"])
    ranker2, top2 = offline(inputs, snap2.trust, snap2.boost, [17], 10)
    check_answer(new, inputs, ranker2, top2, 0, snap2.trust, snap2.boost)


def test_concurrent_requests_during_swaps(service_app, service, inputs):
    """Threads rank while events fold and versions are published; every answer matches its version."""
    stop = threading.Event()
    answers: list = []
    errors: list = []

    def ranker_thread(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            u = int(rng.integers(0, 400))
            try:
                answers.append((u, service.rank(u, 8)))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=ranker_thread, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for i in range(6):
        service.fold_events(i * 13, [{"indicator": "complaint_rate", "value": 1, "time": NOW - i}] * 5)
        service.rescore()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    versions = sorted({a["version"] for _, a in answers})
    assert len(versions) >= 2 and versions[-1] <= 7
    from ecomcore._persist import load_npz

    for v in versions:
        rec, _ = load_npz(f"{service._record_dir}/trust-v{v:06d}.npz", "ecomcore.service_trust", 1)
        mine = [(u, a) for u, a in answers if a["version"] == v][:60]
        ranker, top = offline(inputs, rec["index"], rec["boost"], [u for u, _ in mine], 8)
        for j, (_, a) in enumerate(mine):
            c = int(top.counts[j])
            assert [x["merchant"] for x in a["merchants"]] == top.indices[j, :c].tolist()
            assert [x["score"] for x in a["merchants"]] == top.scores[j, :c].tolist()


def test_background_rescoring_swaps(service_app, service):
    import time

    from fastapi.testclient import TestClient

    with TestClient(service_app.create_app(service, rescore_every=0.05)) as c:
        deadline = time.monotonic() + 10
        while c.get("/health").json()["version"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        h = c.get("/health").json()
        assert h["version"] >= 3 and h["last_rescore_error"] is None
        assert c.get("/users/2/merchants").json()["version"] >= 3


def test_rescore_failure_keeps_serving(service_app, service, monkeypatch):
    import time

    from fastapi.testclient import TestClient

    def boom():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service, "rescore", boom)
    with TestClient(service_app.create_app(service, rescore_every=0.02)) as c:
        deadline = time.monotonic() + 10
        while c.get("/health").json()["last_rescore_error"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        h = c.get("/health").json()
        assert "disk on fire" in h["last_rescore_error"] and h["version"] == 1
        assert c.get("/users/2/merchants").status_code == 200


def test_app_from_env(service_app, small_files, monkeypatch):
    from fastapi.testclient import TestClient

    f = small_files
    monkeypatch.setenv(
        "ECOMCORE_SERVICE_ARGS",
        f"--profiles {f.profiles} --merchant-tags {f.merchant_tags} --trust {f.trust} --rescore-every 0 --k-max 7",
    )
    with TestClient(service_app.app_from_env()) as c:
        assert c.get("/users/1/merchants?k=8").status_code == 422
        assert json.loads(c.get("/users/1/merchants?k=7").text)["k"] == 7
