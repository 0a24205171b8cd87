"""Olist trust events: the loader against direct CSV counts, no leaks, and the validation runs.

The data lives outside the repository (``<repo>/../shared/data/olist/sample_8k`` or
``$ECOMCORE_DATA/olist/sample_8k``); without it these tests are skipped, unless
``ECOMCORE_REQUIRE_DATA=1`` (then they fail).
"""

from __future__ import annotations

import csv
import importlib.util
import os
from collections import Counter, defaultdict
from datetime import datetime, timezone

import numpy as np
import pytest

import ecomcore
from ecomcore.indicators import default_indicators
from ecomcore.olist import OLIST_INDICATORS, load_olist_trust, olist_data_dir, olist_indicators

_DATA_ROOT = os.environ.get("ECOMCORE_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
_SAMPLE = os.path.join(_DATA_ROOT, "olist", "sample_8k")
_BENCH = os.path.join(os.path.dirname(__file__), "..", "bench", "olist_trust_validation.py")
CUTOFF = datetime(2018, 1, 1, tzinfo=timezone.utc).timestamp()


def _sample_dir() -> str:
    try:
        return olist_data_dir(_SAMPLE)
    except FileNotFoundError as exc:
        if os.environ.get("ECOMCORE_REQUIRE_DATA") == "1":
            raise
        pytest.skip(f"Olist sample not available ({exc}); set ECOMCORE_DATA or ECOMCORE_REQUIRE_DATA=1")


@pytest.fixture(scope="module")
def sample() -> str:
    return _sample_dir()


@pytest.fixture(scope="module")
def data(sample):
    return load_olist_trust(sample)


@pytest.fixture(scope="module")
def raw(sample):
    def rows(name):
        with open(os.path.join(sample, name), newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    return {
        "orders": {r["order_id"]: r for r in rows("olist_orders_dataset.csv")},
        "items": rows("olist_order_items_dataset.csv"),
        "reviews": rows("olist_order_reviews_dataset.csv"),
        "sellers": rows("olist_sellers_dataset.csv"),
        "products": {r["product_id"]: r for r in rows("olist_products_dataset.csv")},
    }


def _count(data, name, value=None):
    m = data.events["indicator"] == name
    if value is not None:
        m &= data.events["value"] == value
    return int(m.sum())


def test_indicators_come_from_the_default_catalogue():
    cat = {ind.name: ind for ind in default_indicators()}
    assert tuple(ind.name for ind in olist_indicators()) == OLIST_INDICATORS
    assert all(cat[ind.name] == ind for ind in olist_indicators())


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Olist sample not found"):
        olist_data_dir(tmp_path)


def test_counts_match_a_direct_csv_count(data, raw):
    seller_ids = sorted({r["seller_id"] for r in raw["sellers"]})
    assert list(data.seller_ids) == seller_ids
    pairs = {(r["order_id"], r["seller_id"]) for r in raw["items"]}
    sellers_of = defaultdict(set)
    for o, sid in pairs:
        sellers_of[o].add(sid)
    assert data.skipped_orders == sum(1 for o in raw["orders"] if o not in sellers_of)
    # one cancellation trial per (order, seller); value 1 for canceled / unavailable orders
    assert _count(data, "seller_cancellation_rate") == len(pairs)
    cancelled = sum(1 for o, _ in pairs if raw["orders"][o]["order_status"] in ("canceled", "unavailable"))
    assert _count(data, "seller_cancellation_rate", 1.0) == cancelled
    # one rating (and one good / low-star trial) per review and seller of its order
    per_score = Counter()
    for r in raw["reviews"]:
        per_score[float(r["review_score"])] += len(sellers_of.get(r["order_id"], ()))
    for score, k in per_score.items():
        assert _count(data, "review_rating", score) == k
    n_reviews = sum(per_score.values())
    for name in ("review_rating", "good_review_rate", "low_star_share"):
        assert _count(data, name) == n_reviews
    assert _count(data, "low_star_share", 1.0) == per_score[1.0] + per_score[2.0]
    assert _count(data, "good_review_rate", 1.0) == per_score[4.0] + per_score[5.0]
    # delivery hours for every delivered (order, seller) pair, late deliveries by the timestamps
    delivered = [(o, s) for o, s in pairs if raw["orders"][o]["order_delivered_customer_date"]]
    assert _count(data, "delivery_hours") == len(delivered)
    day = {
        o: (r["order_delivered_customer_date"][:10], r["order_estimated_delivery_date"][:10])
        for o, r in raw["orders"].items()
    }
    late = sum(1 for o, _ in delivered if day[o][0] > day[o][1])
    on_time = len(delivered) - late
    assert _count(data, "late_delivery_rate", 0.0) == on_time
    assert _count(data, "late_delivery_rate", 1.0) >= late
    dispatched = sum(1 for o, _ in pairs if raw["orders"][o]["order_delivered_carrier_date"])
    assert _count(data, "late_dispatch_rate") >= dispatched


def test_ids_are_consistent(data, raw):
    ev = data.events
    n = data.n_sellers
    assert ev["merchant"].min() >= 0 and ev["merchant"].max() < n
    # per seller: as many cancellation trials as distinct orders in the items file
    orders_of = defaultdict(set)
    cats = defaultdict(Counter)
    for r in raw["items"]:
        orders_of[r["seller_id"]].add(r["order_id"])
        cats[r["seller_id"]][raw["products"].get(r["product_id"], {}).get("product_category_name", "") or ""] += 1
    trials = np.bincount(ev["merchant"][ev["indicator"] == "seller_cancellation_rate"], minlength=n)
    for m, sid in enumerate(data.seller_ids):
        assert trials[m] == len(orders_of.get(sid, ()))
        if sid in cats:
            best = min(cats[sid].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            assert data.category_names[data.categories[m]] == best
    assert data.categories.shape == (n,) and data.categories.max() < len(data.category_names)
    assert ev["buyer"].min() >= 0


def test_values_and_times_are_valid_and_fold(data):
    ev = data.events
    kind = {ind.name: ind.kind for ind in data.indicators}
    kinds = np.array([kind[x] for x in ev["indicator"]])
    v = ev["value"]
    assert set(np.unique(v[kinds == "rate"])) <= {0.0, 1.0}
    assert v[kinds == "rating"].min() >= 1 and v[kinds == "rating"].max() <= 5
    assert v[kinds == "magnitude"].min() >= 0
    assert np.isfinite(ev["time"]).all() and np.all(np.diff(ev["time"]) >= 0)
    # outcomes come after the purchase, but for a handful of quirks in the source data (a carrier
    # hand-over or a review answer timestamped before the purchase)
    assert np.sum(ev["order_time"] > ev["time"]) <= 1e-3 * ev["time"].shape[0]
    model = ecomcore.TrustModel(data.indicators, n_merchants=data.n_sellers, categories=data.categories)
    state = model.fold({k: ev[k] for k in ("merchant", "indicator", "value", "time", "buyer")})
    scores = model.score(state, float(ev["time"].max()))
    assert np.all((scores.index >= 0) & (scores.index <= 1))


def test_no_event_after_the_cutoff_leaks_in(sample, data):
    early = load_olist_trust(sample, before=CUTOFF)
    assert early.events["time"].max() < CUTOFF
    keep = data.events["time"] < CUTOFF
    assert early.events["time"].shape[0] == int(keep.sum())
    for k in data.events:
        np.testing.assert_array_equal(early.events[k], data.events[k][keep])
    win = data.window(stop=CUTOFF)
    assert win["time"].max() < CUTOFF and win["time"].shape[0] == int(keep.sum())
    late = data.window(start=CUTOFF)
    assert late["time"].min() >= CUTOFF and late["time"].shape[0] == int((~keep).sum())


def _bench_module():
    spec = importlib.util.spec_from_file_location("olist_trust_validation", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rank_metrics_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    mod = _bench_module()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 60).astype(float)
    b = a + rng.integers(0, 4, 60)
    assert mod.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], rel=1e-12)
    pos = rng.random(60) < 0.4
    u = stats.mannwhitneyu(b[pos], b[~pos]).statistic
    assert mod.auc(b, pos) == pytest.approx(u / (pos.sum() * (~pos).sum()), rel=1e-12)
    assert mod.auc(np.arange(4.0), np.array([False, False, True, True])) == 1.0


def test_validation_runs_and_gives_finite_metrics(data):
    mod = _bench_module()
    for future in (False, True):
        r = mod.validate(CUTOFF, data=data, n_boot=20, future_orders_only=future)
        assert r["sellers"] > 100 and 0 < r["bad_sellers"] < r["sellers"]
        for name in ("trust index", "trust, cautious", "shrunk rating", "mean review"):
            assert -1 <= r[name]["spearman"] <= 1 and 0 <= r[name]["auc"] <= 1
        assert np.isfinite(r["delta_auc"]) and all(np.isfinite(r["delta_auc_ci"]))
