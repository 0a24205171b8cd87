"""Trust events from the Olist marketplace sample (real data, read in place).

The Olist "Brazilian E-Commerce Public Dataset" (CC BY-NC-SA 4.0) is *not* shipped with
ecomcore: :func:`load_olist_trust` reads the CSV files where they lie (by default
``<repository>/../shared/data/olist/sample_8k``, or ``$ECOMCORE_DATA/olist/sample_8k``) with the
standard :mod:`csv` module and turns every (order, seller) pair into trust events for
``TrustModel.fold``.  Sellers become merchants ``0 … n-1`` (sorted ``seller_id`` strings),
buyers (``customer_unique_id``) become integer buyer ids for deduplication, and each seller's
category is the most frequent product category among the items it sold.

Events per (order, seller) — an order's review counts for every seller of the order (71 of the
sample's orders have two sellers); orders without items (most unavailable or cancelled ones)
name no seller and are skipped:

``review_rating`` (rating)
    The review score 1-5, at ``review_answer_timestamp``.
``good_review_rate`` / ``low_star_share`` (rates)
    1 if the score is 4-5 / 1-2, at the same time.
``late_delivery_rate`` (rate)
    1 if the order reached the buyer on a later *day* than ``order_estimated_delivery_date``
    (a date, stored as midnight), at the delivery.  An order still not delivered (shipped,
    invoiced, processing, ...) counts 1 at its estimated date when that date lies before the end
    of the data.
``delivery_hours`` (magnitude)
    Hours from purchase to delivery, at the delivery.
``late_dispatch_rate`` (rate)
    1 if ``order_delivered_carrier_date`` is after the seller's ``shipping_limit_date``, at the
    hand-over; never handed over (and not cancelled) counts 1 at the limit, as above.
``seller_cancellation_rate`` (rate)
    1 if the order is ``canceled`` or ``unavailable``, at the purchase time (Olist records no
    cancellation time, so the outcome of an order bought just before a cutoff may in truth have
    been settled after it).

The review answer time (``review_answer_timestamp - review_creation_date``) measures how fast
the *customer* answered Olist's survey, not the seller's conduct, so it is not used.

**The sample is biased** (see the data README): it holds every non-delivered order plus about
5 % of the delivered ones, so bad outcomes are heavily over-represented (32 % of its reviews are
1-star against ~11 % in the full data).  It exercises the trust signals; it says nothing about
population rates.
"""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Union

import numpy as np

from ecomcore._validation import check_real
from ecomcore.indicators import Indicator, default_indicators

__all__ = ["OLIST_INDICATORS", "OlistTrust", "load_olist_trust", "olist_data_dir", "olist_indicators"]

#: Names (from :func:`~ecomcore.indicators.default_indicators`) of the indicators Olist records.
OLIST_INDICATORS: tuple[str, ...] = (
    "review_rating",
    "good_review_rate",
    "low_star_share",
    "late_delivery_rate",
    "delivery_hours",
    "late_dispatch_rate",
    "seller_cancellation_rate",
)

_FILES = (
    "olist_orders_dataset.csv",
    "olist_order_items_dataset.csv",
    "olist_order_reviews_dataset.csv",
    "olist_customers_dataset.csv",
    "olist_sellers_dataset.csv",
    "olist_products_dataset.csv",
)
_NOT_SHIPPED = ("canceled", "unavailable")
_UNKNOWN_CATEGORY = ""
_DAY = 86400.0


def olist_indicators() -> tuple[Indicator, ...]:
    """The default-catalogue indicators that Olist data can feed, in :data:`OLIST_INDICATORS` order.

    Returns
    -------
    tuple of Indicator
        The same specs as in :func:`~ecomcore.indicators.default_indicators`.
    """
    by_name = {ind.name: ind for ind in default_indicators()}
    return tuple(by_name[name] for name in OLIST_INDICATORS)


def olist_data_dir(path: Optional[Union[str, os.PathLike[str]]] = None) -> str:
    """Locate the Olist ``sample_8k`` directory.

    Parameters
    ----------
    path : str or path-like, optional
        The directory itself.  Default: ``$ECOMCORE_DATA/olist/sample_8k`` when ``ECOMCORE_DATA``
        is set, else ``<repository>/../shared/data/olist/sample_8k`` (a source checkout).

    Returns
    -------
    str
        The directory.

    Raises
    ------
    FileNotFoundError
        If it (or one of its CSV files) does not exist.
    """
    if path is None:
        root = os.environ.get("ECOMCORE_DATA")
        if not root:
            here = os.path.dirname(os.path.abspath(__file__))
            root = os.path.join(here, "..", "..", "shared", "data")
        path = os.path.join(root, "olist", "sample_8k")
    path = os.path.normpath(os.fspath(path))
    missing = [f for f in _FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"Olist sample not found: {path} lacks {', '.join(missing)}")
    return path


def _time(text: str, where: str) -> float:
    """Unix seconds of an Olist ``YYYY-MM-DD HH:MM:SS`` timestamp (read as UTC)."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
    except ValueError as exc:
        raise ValueError(f"{where}: not a timestamp: {text!r}") from exc


def _opt_time(row: dict[str, str], col: str) -> Optional[float]:
    """The timestamp in ``row[col]``, or None when the field is empty."""
    return _time(row[col], f"orders.{col}") if row[col] else None


def _rows(path: str, name: str) -> list[dict[str, str]]:
    with open(os.path.join(path, name), newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class OlistTrust:
    """Trust events of the Olist sample, ready for ``TrustModel.fold``.

    Attributes
    ----------
    events : dict of str to ndarray
        Columns ``merchant`` (int64), ``indicator`` (str names), ``value`` (float64), ``time``
        (float64 Unix seconds), ``buyer`` (int64) and ``order_time`` (the purchase time of the
        event's order, for validations that keep past and future orders apart), sorted by time.
        ``TrustModel.fold`` reads the first five.
    seller_ids : tuple of str
        ``seller_ids[m]`` is merchant m's Olist ``seller_id``.
    categories : ndarray of int64, shape (n_sellers,)
        Each seller's category id (index into ``category_names``).
    category_names : tuple of str
        Product category names, sorted (``""``: unknown).
    indicators : tuple of Indicator
        :func:`olist_indicators`.
    data_end : float
        The latest timestamp in the orders file (Unix seconds); outcomes not known by then are
        not emitted.
    skipped_orders : int
        Orders without items (no seller to attribute them to).
    """

    events: dict[str, np.ndarray]
    seller_ids: tuple[str, ...]
    categories: np.ndarray
    category_names: tuple[str, ...]
    indicators: tuple[Indicator, ...]
    data_end: float
    skipped_orders: int

    @property
    def n_sellers(self) -> int:
        """Number of sellers (merchants)."""
        return len(self.seller_ids)

    def window(self, start: Optional[float] = None, stop: Optional[float] = None) -> dict[str, np.ndarray]:
        """Events with ``start <= time < stop`` (either bound optional).

        Parameters
        ----------
        start, stop : float, optional
            Unix seconds.

        Returns
        -------
        dict of str to ndarray
            The selected rows of every column (copies).
        """
        t = self.events["time"]
        keep = np.ones(t.shape[0], dtype=bool)
        if start is not None:
            keep &= t >= check_real(start, "start")
        if stop is not None:
            keep &= t < check_real(stop, "stop")
        return {k: v[keep] for k, v in self.events.items()}


def load_olist_trust(
    path: Optional[Union[str, os.PathLike[str]]] = None, *, before: Optional[float] = None
) -> OlistTrust:
    """Read the Olist sample and build per-seller trust events (see the module docstring).

    Parameters
    ----------
    path : str or path-like, optional
        The ``sample_8k`` directory (default: :func:`olist_data_dir`).
    before : float, optional
        Keep only events with ``time < before`` (Unix seconds): what a platform knew then.

    Returns
    -------
    OlistTrust

    Raises
    ------
    FileNotFoundError
        If the data is absent.
    ValueError
        If a file does not join (an item's seller or order unknown) or holds a bad timestamp or
        review score.
    """
    path = olist_data_dir(path)
    orders = _rows(path, "olist_orders_dataset.csv")
    items = _rows(path, "olist_order_items_dataset.csv")
    reviews = _rows(path, "olist_order_reviews_dataset.csv")
    customers = _rows(path, "olist_customers_dataset.csv")
    sellers = _rows(path, "olist_sellers_dataset.csv")
    products = _rows(path, "olist_products_dataset.csv")

    seller_ids = tuple(sorted({r["seller_id"] for r in sellers}))
    seller_of = {sid: k for k, sid in enumerate(seller_ids)}
    unique_of = {r["customer_id"]: r["customer_unique_id"] for r in customers}
    buyer_ids = {u: k for k, u in enumerate(sorted(set(unique_of.values())))}
    category_of_product = {r["product_id"]: r["product_category_name"] for r in products}
    order_by_id = {r["order_id"]: r for r in orders}

    data_end = -np.inf
    for r in orders:
        for col in (
            "order_purchase_timestamp",
            "order_approved_at",
            "order_delivered_carrier_date",
            "order_delivered_customer_date",
        ):
            if r[col]:
                data_end = max(data_end, _time(r[col], f"orders.{col}"))

    # (order, seller) -> earliest shipping limit; seller -> category counts
    limit: dict[tuple[str, int], float] = {}
    cat_count: dict[int, Counter[str]] = defaultdict(Counter)
    for r in items:
        sid = r["seller_id"]
        if sid not in seller_of:
            raise ValueError(f"order_items: seller_id {sid!r} is not in the sellers file")
        if r["order_id"] not in order_by_id:
            raise ValueError(f"order_items: order_id {r['order_id']!r} is not in the orders file")
        m = seller_of[sid]
        key = (r["order_id"], m)
        t = _time(r["shipping_limit_date"], "order_items.shipping_limit_date")
        limit[key] = min(limit.get(key, np.inf), t)
        cat_count[m][category_of_product.get(r["product_id"], _UNKNOWN_CATEGORY) or _UNKNOWN_CATEGORY] += 1
    sellers_of_order: dict[str, list[int]] = defaultdict(list)
    for order_id, m in sorted(limit):
        sellers_of_order[order_id].append(m)
    reviews_of_order: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in reviews:
        try:
            score = float(r["review_score"])
        except ValueError as exc:
            raise ValueError(f"reviews: bad review_score {r['review_score']!r}") from exc
        if not 1 <= score <= 5:
            raise ValueError(f"reviews: review_score {score} outside 1-5")
        reviews_of_order[r["order_id"]].append((score, _time(r["review_answer_timestamp"], "reviews.answer")))

    merchant: list[int] = []
    indicator: list[str] = []
    value: list[float] = []
    when: list[float] = []
    buyer: list[int] = []
    order_time: list[float] = []

    def emit(m: int, name: str, v: float, t: float, b: int, bought: float) -> None:
        merchant.append(m)
        indicator.append(name)
        value.append(v)
        when.append(t)
        buyer.append(b)
        order_time.append(bought)

    skipped = 0
    for r in orders:
        order_id = r["order_id"]
        ms = sellers_of_order.get(order_id)
        if not ms:
            skipped += 1
            continue
        b = buyer_ids[unique_of[r["customer_id"]]] if r["customer_id"] in unique_of else -1
        status = r["order_status"]
        purchase = _time(r["order_purchase_timestamp"], "orders.order_purchase_timestamp")
        carrier = _opt_time(r, "order_delivered_carrier_date")
        delivered = _opt_time(r, "order_delivered_customer_date")
        estimated = _time(r["order_estimated_delivery_date"], "orders.order_estimated_delivery_date")
        cancelled = status in _NOT_SHIPPED
        for m in ms:
            emit(m, "seller_cancellation_rate", 1.0 if cancelled else 0.0, purchase, b, purchase)
            lim = limit[(order_id, m)]
            if carrier is not None:
                emit(m, "late_dispatch_rate", 1.0 if carrier > lim else 0.0, carrier, b, purchase)
            elif not cancelled and status != "delivered" and lim <= data_end:
                emit(m, "late_dispatch_rate", 1.0, lim, b, purchase)
            if delivered is not None:
                emit(m, "late_delivery_rate", 1.0 if delivered >= estimated + _DAY else 0.0, delivered, b, purchase)
                emit(m, "delivery_hours", max(delivered - purchase, 0.0) / 3600.0, delivered, b, purchase)
            elif not cancelled and status != "delivered" and estimated <= data_end:
                emit(m, "late_delivery_rate", 1.0, estimated, b, purchase)
            for score, t in reviews_of_order.get(order_id, ()):
                emit(m, "review_rating", score, t, b, purchase)
                emit(m, "good_review_rate", 1.0 if score >= 4 else 0.0, t, b, purchase)
                emit(m, "low_star_share", 1.0 if score <= 2 else 0.0, t, b, purchase)

    t = np.asarray(when, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    events = {
        "merchant": np.asarray(merchant, dtype=np.int64)[order],
        "indicator": np.asarray(indicator, dtype=np.str_)[order],
        "value": np.asarray(value, dtype=np.float64)[order],
        "time": t[order],
        "buyer": np.asarray(buyer, dtype=np.int64)[order],
        "order_time": np.asarray(order_time, dtype=np.float64)[order],
    }
    if before is not None:
        cut = check_real(before, "before")
        keep = events["time"] < cut
        events = {k: v[keep] for k, v in events.items()}

    names = sorted({name for counts in cat_count.values() for name in counts} | {_UNKNOWN_CATEGORY})
    cat_id = {name: k for k, name in enumerate(names)}
    categories = np.zeros(len(seller_ids), dtype=np.int64)  # sellers without items: unknown
    for m, counts in cat_count.items():
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        categories[m] = cat_id[best]
    return OlistTrust(
        events=events,
        seller_ids=seller_ids,
        categories=categories,
        category_names=tuple(names),
        indicators=olist_indicators(),
        data_end=float(data_end),
        skipped_orders=skipped,
    )
