"""Loaders of the real data: documented counts, id round trips, end-to-end ranking, bad files.

The data lives outside the repository (``$ECOMCORE_DATA`` or ``<repo>/../shared/data``); the
tests that need it are skipped when it is absent, unless ``ECOMCORE_REQUIRE_DATA=1`` (then they
fail).  The bad-file tests use small files in ``tmp_path`` and always run.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict

import numpy as np
import pytest

import ecomcore
from ecomcore import datasets
from ecomcore.loaders import load_taobao

_DATA_ROOT = os.environ.get("ECOMCORE_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
_TAOBAO = os.path.join(_DATA_ROOT, "taobao-userbehavior-prefix", "UserBehavior_prefix.csv")
_OLIST = os.path.join(_DATA_ROOT, "olist", "sample_8k")


def _need(path: str) -> str:
    if not os.path.exists(path):
        if os.environ.get("ECOMCORE_REQUIRE_DATA") == "1":
            pytest.fail(f"ECOMCORE_REQUIRE_DATA=1 but the data is absent: {path}")
        pytest.skip(f"real data absent: {path} (set ECOMCORE_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="module")
def taobao():
    return datasets.load_taobao(_need(_TAOBAO))


@pytest.fixture(scope="module")
def olist():
    return datasets.load_olist(_need(_OLIST))


# ---------------------------------------------------------------------------------------------
# Taobao
# ---------------------------------------------------------------------------------------------


def test_taobao_documented_counts(taobao):
    assert taobao.n_events == 84_475
    assert taobao.n_users == 815
    assert taobao.n_items == 55_368
    assert taobao.n_tags == 2_914
    ev = taobao.events
    assert ev["user"].dtype == np.int64 and ev["item"].dtype == np.int64 and ev["time"].dtype == np.float64
    assert set(np.unique(ev["kind"]).tolist()) == {"view", "fav", "cart", "buy"}
    assert taobao.item_tags.shape == (55_368, 2_914)
    assert np.all(taobao.item_tags.data == 1.0)


def test_taobao_round_trip_against_csv(taobao):
    with open(_TAOBAO, newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == taobao.n_events
    ev = taobao.events
    kinds = {"pv": "view", "fav": "fav", "cart": "cart", "buy": "buy"}
    for k in range(0, len(rows), 97):  # every 97th row, first and last included below
        u, i, c, b, t = rows[k]
        assert taobao.user_ids[ev["user"][k]] == int(u)
        assert taobao.item_ids[ev["item"][k]] == int(i)
        assert ev["kind"][k] == kinds[b]
        assert ev["time"][k] == float(t)
        cats = taobao.category_ids[taobao.item_tags[[ev["item"][k]], :].indices]
        assert int(c) in cats.tolist()
    last = rows[-1]
    assert taobao.user_ids[ev["user"][-1]] == int(last[0]) == 100370
    # the (item, category) pairs are exactly those of the file
    pairs = {(int(r[1]), int(r[2])) for r in rows}
    x = taobao.item_tags.tocoo()
    got = set(zip(taobao.item_ids[x.row].tolist(), taobao.category_ids[x.col].tolist()))
    assert got == pairs
    assert taobao.user_ids.tolist() == sorted({int(r[0]) for r in rows})


def test_taobao_folds_and_ranks(taobao):
    model = ecomcore.InterestModel(n_users=taobao.n_users)
    state = model.fold(taobao.events, taobao.item_tags)
    a = model.profiles(state)
    assert a.shape == (taobao.n_users, taobao.n_tags)
    assert np.count_nonzero(np.diff(a.indptr)) == taobao.n_users  # every user has a profile
    # every user's profile holds exactly the categories they touched
    ev = taobao.events
    cats = taobao.item_tags.tocsr()
    touched = defaultdict(set)
    for u, i in zip(ev["user"][:5000].tolist(), ev["item"][:5000].tolist()):
        touched[u].update(cats[[i], :].indices.tolist())
    for u, s in touched.items():
        if u != ev["user"][4999]:  # that user's history continues past row 5000
            assert set(a[[u], :].indices.tolist()) == s
    # rank categories with the Ranker (identity merchant side): top-1 is the strongest tag
    b = np.eye(taobao.n_tags, dtype=np.float32)
    top = ecomcore.Ranker(b).topk(a, k=3)
    dense_best = np.asarray(a.toarray().max(axis=1)).ravel()
    got = np.asarray(a.toarray())[np.arange(taobao.n_users), top.indices[:, 0]]
    np.testing.assert_allclose(got, dense_best, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Olist
# ---------------------------------------------------------------------------------------------


def _csv(name: str) -> list[dict[str, str]]:
    with open(os.path.join(_OLIST, name), newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def test_olist_trust_events_for_every_sample_seller(olist):
    sellers = _csv("olist_sellers_dataset.csv")
    assert olist.n_merchants == 1_610 == len(sellers)
    assert set(olist.seller_ids) == {r["seller_id"] for r in sellers}
    assert np.unique(olist.trust.events["merchant"]).tolist() == list(range(1_610))
    assert olist.trust.seller_ids == olist.seller_ids


def test_olist_round_trip_against_csv(olist):
    items = _csv("olist_order_items_dataset.csv")
    orders = {r["order_id"]: r for r in _csv("olist_orders_dataset.csv")}
    unique_of = {r["customer_id"]: r["customer_unique_id"] for r in _csv("olist_customers_dataset.csv")}
    cat_of = {r["product_id"]: r["product_category_name"] for r in _csv("olist_products_dataset.csv")}
    assert olist.n_events == len(items)
    # the multiset of (customer, product, seller, purchase time) is the file's
    ev = olist.events
    got = sorted(
        (olist.user_ids[u], olist.item_product_ids[i], olist.seller_ids[olist.item_merchant[i]], t)
        for u, i, t in zip(ev["user"].tolist(), ev["item"].tolist(), ev["time"].tolist())
    )
    from datetime import datetime, timezone

    def ts(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()

    want = sorted(
        (
            unique_of[orders[r["order_id"]]["customer_id"]],
            r["product_id"],
            r["seller_id"],
            ts(orders[r["order_id"]]["order_purchase_timestamp"]),
        )
        for r in items
    )
    assert got == want
    assert np.all(np.diff(ev["time"]) >= 0)
    assert set(ev["kind"].tolist()) == {"buy"}
    # categories of the listings
    x = olist.item_tags.tocsr()
    for i, p in enumerate(olist.item_product_ids):
        names = [olist.category_names[t] for t in x[[i], :].indices]
        assert names == ([cat_of[p]] if cat_of[p] else [])
    # user ids share the trust events' buyer order
    assert olist.user_ids == tuple(sorted(set(unique_of.values())))


def test_olist_end_to_end_interest_and_bans(olist):
    model = ecomcore.InterestModel(n_users=olist.n_users)
    state = model.fold(olist.events, olist.item_tags)
    a = model.profiles(state)
    b = model.merchant_profiles(olist.item_tags, olist.item_merchant, n_merchants=olist.n_merchants)
    # categories each customer bought from / each seller sells in (plain Python reference)
    x = olist.item_tags.tocsr()
    bought = defaultdict(set)
    for u, i in zip(olist.events["user"].tolist(), olist.events["item"].tolist()):
        bought[u].update(x[[i], :].indices.tolist())
    sells = defaultdict(set)
    for i, m in enumerate(olist.item_merchant.tolist()):
        sells[m].update(x[[i], :].indices.tolist())

    top = ecomcore.Ranker(b).topk(a, k=10)
    counts = np.bincount(top.indices[top.indices >= 0], minlength=olist.n_merchants)
    banned = np.argsort(-counts, kind="stable")[:5]
    assert counts[banned].min() > 0  # the bans bite: each was ranked somewhere
    top = ecomcore.Ranker(b, banned=banned).topk(a, k=10)
    n_ranked = 0
    for u in range(olist.n_users):
        for m in top.indices[u][top.indices[u] >= 0].tolist():
            assert bought[u] & sells[m], (u, m)
            assert m not in banned
            n_ranked += 1
    assert n_ranked > olist.n_users  # most customers get recommendations


# ---------------------------------------------------------------------------------------------
# Bad files (always run)
# ---------------------------------------------------------------------------------------------

_GOOD = "1,10,100,pv,1511544070\n2,11,100,buy,1511544071\n"


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "ub.csv"
    p.write_text(text)
    return str(p)


def test_taobao_small_file(tmp_path):
    d = load_taobao(_write(tmp_path, _GOOD + "1,11,200,fav,1511544072\n"))
    assert d.n_events == 3 and d.n_users == 2 and d.n_items == 2 and d.n_tags == 2
    assert d.events["user"].tolist() == [0, 1, 0]
    assert d.events["kind"].tolist() == ["view", "buy", "fav"]
    assert d.item_tags.toarray().tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert d.category_ids.tolist() == [100, 200]


@pytest.mark.parametrize(
    "text, fragment",
    [
        (_GOOD + "3,12,100,pv\n", "line 3: expected 5 columns"),  # missing column
        (_GOOD + "3,12,100,pv,15115", None),  # a truncated line still parses: checked below
        (_GOOD + "3,12,1", "line 3: expected 5 columns"),  # truncated mid-line
        (_GOOD + "x,12,100,pv,1511544070\n", "line 3: column 'user_id': not an integer"),
        (_GOOD + "3,12,100,pv,1.5e9\n", "line 3: column 'timestamp': not an integer"),
        (_GOOD + "3,12,100,click,1511544070\n", "line 3: column 'behavior_type': unknown behaviour 'click'"),
        (_GOOD + "3,-12,100,pv,1511544070\n", "line 3: negative id"),
        ("3,12,100,pv,1511544070,9\n", "line 1: expected 5 columns"),
    ],
)
def test_taobao_bad_files(tmp_path, text, fragment):
    p = _write(tmp_path, text)
    if fragment is None:
        d = load_taobao(p)  # a short but well-formed last field is a valid integer
        assert d.events["time"][-1] == 15115.0
        return
    with pytest.raises(ValueError) as exc:
        load_taobao(p)
    assert fragment in str(exc.value)
    assert p in str(exc.value)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="Taobao UserBehavior file not found"):
        load_taobao(str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError, match="Olist sample not found"):
        datasets.load_olist(str(tmp_path))


def test_default_path_uses_env(tmp_path, monkeypatch):
    folder = tmp_path / "taobao-userbehavior-prefix"
    folder.mkdir()
    (folder / "UserBehavior_prefix.csv").write_text(_GOOD)
    monkeypatch.setenv("ECOMCORE_DATA", str(tmp_path))
    assert datasets.load_taobao().n_events == 2
