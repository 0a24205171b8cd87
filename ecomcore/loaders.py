"""Loaders for the real data sets in ``../shared/data`` (read by path, never copied).

* :func:`load_taobao`: the Taobao UserBehavior prefix (behaviour events on items with one
  category each) as columnar events for :meth:`ecomcore.InterestModel.fold`.
* :func:`load_olist`: the Olist ``sample_8k`` purchases (customers buying products from
  sellers) as columnar events, the listings' categories and sellers, and the per-seller trust
  events of :func:`ecomcore.olist.load_olist_trust`.

Both return plain NumPy columns, a scipy CSR ``item_tags`` matrix and the original ids of every
dense id.  Only the standard ``csv`` module and NumPy are used.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import scipy.sparse as sp

from .olist import OlistTrust, _rows, _time, load_olist_trust, olist_data_dir

__all__ = ["OlistData", "TaobaoData", "load_olist", "load_taobao", "taobao_path"]

PathLike = Union[str, "os.PathLike[str]"]

#: Taobao ``behavior_type`` -> event kind of :data:`ecomcore.interest.DEFAULT_EVENT_WEIGHTS`.
TAOBAO_KINDS = {"pv": "view", "fav": "fav", "cart": "cart", "buy": "buy"}
_TAOBAO_REL = os.path.join("taobao-userbehavior-prefix", "UserBehavior_prefix.csv")
_TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")


def _data_root() -> str:
    root = os.environ.get("ECOMCORE_DATA")
    if root:
        return root
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "shared", "data")


def taobao_path(path: Optional[PathLike] = None) -> str:
    """Locate the Taobao UserBehavior prefix CSV.

    Parameters
    ----------
    path : str or path-like, optional
        The CSV file itself.  Default: ``$ECOMCORE_DATA/taobao-userbehavior-prefix/
        UserBehavior_prefix.csv`` when ``ECOMCORE_DATA`` is set, else the same file under
        ``<repository>/../shared/data`` (a source checkout).

    Returns
    -------
    str
        The normalised path.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    """
    p = os.path.join(_data_root(), _TAOBAO_REL) if path is None else os.fspath(path)
    p = os.path.normpath(p)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"Taobao UserBehavior file not found: {p} (set ECOMCORE_DATA or pass path)")
    return p


def _dense(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique originals, dense id of every value)."""
    uniq, inv = np.unique(values, return_inverse=True)
    return uniq, inv.reshape(-1).astype(np.int64)


def _tags_matrix(item: np.ndarray, tag: np.ndarray, n_items: int, n_tags: int) -> sp.csr_array:
    """Items x tags CSR with weight 1 for every distinct (item, tag) pair (canonical)."""
    key = np.unique(item.astype(np.int64) * max(n_tags, 1) + tag.astype(np.int64))
    rows, cols = np.divmod(key, max(n_tags, 1))
    m = sp.csr_array(
        (np.ones(key.shape[0], dtype=np.float64), (rows, cols)),
        shape=(n_items, n_tags),
    )
    m.sum_duplicates()
    m.sort_indices()
    return m


@dataclass(frozen=True, eq=False)
class TaobaoData:
    """The Taobao UserBehavior events, ready for :meth:`ecomcore.InterestModel.fold`.

    Attributes
    ----------
    events : dict of str to ndarray
        Columns in file order: ``user`` (int64 dense ids), ``item`` (int64 dense ids),
        ``kind`` (str names ``"view"``, ``"fav"``, ``"cart"``, ``"buy"``), ``time`` (float64
        Unix seconds).
    item_tags : scipy.sparse.csr_array
        Items x tags (tags are categories), float64, weight 1 per (item, category) pair.
    user_ids, item_ids, category_ids : ndarray of int64
        Original Taobao id of every dense user, item and category id (sorted ascending).
    path : str
        The file read.
    """

    events: dict[str, np.ndarray]
    item_tags: sp.csr_array
    user_ids: np.ndarray
    item_ids: np.ndarray
    category_ids: np.ndarray
    path: str

    @property
    def n_events(self) -> int:
        """Number of events."""
        return int(self.events["user"].shape[0])

    @property
    def n_users(self) -> int:
        """Number of distinct users."""
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        """Number of distinct items."""
        return int(self.item_ids.shape[0])

    @property
    def n_tags(self) -> int:
        """Number of distinct categories (tags)."""
        return int(self.category_ids.shape[0])


def _parse_int(text: str, path: str, line: int, col: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: column {col!r}: not an integer: {text!r}") from None


def load_taobao(path: Optional[PathLike] = None) -> TaobaoData:
    """Read the Taobao UserBehavior CSV (no header; five columns per line).

    Columns: ``user_id, item_id, category_id, behavior_type, timestamp`` with ``behavior_type``
    in ``pv, fav, cart, buy`` (mapped to the kinds ``view, fav, cart, buy``) and the timestamp
    in Unix seconds.  Ids become dense ``0 .. n - 1`` in ascending order of the original ids.

    Parameters
    ----------
    path : str or path-like, optional
        The CSV file (default: see :func:`taobao_path`).

    Returns
    -------
    TaobaoData

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        On a malformed line (wrong number of columns, e.g. a truncated line; a non-integer id or
        timestamp; a negative id; an unknown behaviour); the message names the file and line.
    """
    p = taobao_path(path)
    users: list[int] = []
    items: list[int] = []
    cats: list[int] = []
    kinds: list[str] = []
    times: list[int] = []
    with open(p, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if len(row) != 5:
                raise ValueError(f"{p}: line {line}: expected 5 columns ({', '.join(_TAOBAO_COLUMNS)}), got {len(row)}")
            u = _parse_int(row[0], p, line, "user_id")
            i = _parse_int(row[1], p, line, "item_id")
            c = _parse_int(row[2], p, line, "category_id")
            t = _parse_int(row[4], p, line, "timestamp")
            if min(u, i, c) < 0:
                raise ValueError(f"{p}: line {line}: negative id in {row[:3]}")
            kind = TAOBAO_KINDS.get(row[3])
            if kind is None:
                raise ValueError(
                    f"{p}: line {line}: column 'behavior_type': unknown behaviour {row[3]!r} "
                    f"(known: {sorted(TAOBAO_KINDS)})"
                )
            users.append(u)
            items.append(i)
            cats.append(c)
            kinds.append(kind)
            times.append(t)
    user_ids, user = _dense(np.asarray(users, dtype=np.int64))
    item_ids, item = _dense(np.asarray(items, dtype=np.int64))
    cat_ids, cat = _dense(np.asarray(cats, dtype=np.int64))
    events = {
        "user": user,
        "item": item,
        "kind": np.asarray(kinds, dtype="<U4"),
        "time": np.asarray(times, dtype=np.float64),
    }
    item_tags = _tags_matrix(item, cat, item_ids.shape[0], cat_ids.shape[0])
    return TaobaoData(events, item_tags, user_ids, item_ids, cat_ids, p)


@dataclass(frozen=True, eq=False)
class OlistData:
    """The Olist sample as interest events, a catalogue and trust events.

    Items are *listings*: distinct (product, seller) pairs seen in the order items (a product
    sold by two sellers is two items), so that every item has exactly one merchant.

    Attributes
    ----------
    events : dict of str to ndarray
        One ``"buy"`` event per order-item row, sorted by time: ``user`` (int64 dense customer
        ids), ``item`` (int64 listing ids), ``kind`` (str, all ``"buy"``), ``time`` (float64
        ``order_purchase_timestamp`` in Unix seconds, read as UTC), ``order_status`` (str;
        every status is kept, cancelled orders included: a purchase attempt shows interest).
    item_tags : scipy.sparse.csr_array
        Listings x categories, float64, weight 1; listings of products without a category have
        empty rows.
    item_merchant : ndarray of int64, shape (n_items,)
        The seller (index into ``seller_ids``) of every listing.
    item_product_ids : tuple of str
        The Olist ``product_id`` of every listing.
    user_ids : tuple of str
        ``customer_unique_id`` of every dense user id (sorted; the same order as the ``buyer``
        column of the trust events).
    category_names : tuple of str
        Product category names of every tag id (sorted, non-empty).
    seller_ids : tuple of str
        Olist ``seller_id`` of every merchant id (the trust loader's order).
    trust : OlistTrust
        The per-seller trust events of :func:`ecomcore.olist.load_olist_trust`.
    path : str
        The ``sample_8k`` directory read.
    """

    events: dict[str, np.ndarray]
    item_tags: sp.csr_array
    item_merchant: np.ndarray
    item_product_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    category_names: tuple[str, ...]
    seller_ids: tuple[str, ...]
    trust: OlistTrust
    path: str

    @property
    def n_events(self) -> int:
        """Number of purchase events."""
        return int(self.events["user"].shape[0])

    @property
    def n_users(self) -> int:
        """Number of customers (``customer_unique_id``)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of listings."""
        return len(self.item_product_ids)

    @property
    def n_tags(self) -> int:
        """Number of product categories."""
        return len(self.category_names)

    @property
    def n_merchants(self) -> int:
        """Number of sellers."""
        return len(self.seller_ids)


def load_olist(path: Optional[PathLike] = None) -> OlistData:
    """Read the Olist ``sample_8k`` purchases, catalogue and seller trust events.

    Parameters
    ----------
    path : str or path-like, optional
        The ``sample_8k`` directory (default: :func:`ecomcore.olist.olist_data_dir`).

    Returns
    -------
    OlistData

    Raises
    ------
    FileNotFoundError
        If the data is absent.
    ValueError
        If the files do not join (an item's order, product or seller unknown, an order's
        customer unknown) or hold a bad timestamp; the message names the file and row.
    """
    d = olist_data_dir(path)
    trust = load_olist_trust(d)
    orders = _rows(d, "olist_orders_dataset.csv")
    items = _rows(d, "olist_order_items_dataset.csv")
    customers = _rows(d, "olist_customers_dataset.csv")
    products = _rows(d, "olist_products_dataset.csv")

    unique_of = {r["customer_id"]: r["customer_unique_id"] for r in customers}
    user_ids = tuple(sorted(set(unique_of.values())))
    user_of = {u: k for k, u in enumerate(user_ids)}
    seller_of = {s: k for k, s in enumerate(trust.seller_ids)}
    category_of = {r["product_id"]: r["product_category_name"] for r in products}
    category_names = tuple(sorted({c for c in category_of.values() if c}))
    tag_of = {c: k for k, c in enumerate(category_names)}
    order_info: dict[str, tuple[int, float, str]] = {}
    for n, r in enumerate(orders, start=2):
        cust = unique_of.get(r["customer_id"])
        if cust is None:
            raise ValueError(f"olist_orders_dataset.csv: row {n}: customer_id {r['customer_id']!r} is not a customer")
        when = _time(r["order_purchase_timestamp"], f"olist_orders_dataset.csv: row {n}: order_purchase_timestamp")
        order_info[r["order_id"]] = (user_of[cust], when, r["order_status"])

    listing_of: dict[tuple[str, str], int] = {}
    ev_user: list[int] = []
    ev_item: list[int] = []
    ev_time: list[float] = []
    ev_status: list[str] = []
    for n, r in enumerate(items, start=2):
        where = f"olist_order_items_dataset.csv: row {n}"
        info = order_info.get(r["order_id"])
        if info is None:
            raise ValueError(f"{where}: order_id {r['order_id']!r} is not in the orders file")
        if r["seller_id"] not in seller_of:
            raise ValueError(f"{where}: seller_id {r['seller_id']!r} is not in the sellers file")
        if r["product_id"] not in category_of:
            raise ValueError(f"{where}: product_id {r['product_id']!r} is not in the products file")
        key = (r["product_id"], r["seller_id"])
        it = listing_of.setdefault(key, len(listing_of))
        ev_user.append(info[0])
        ev_item.append(it)
        ev_time.append(info[1])
        ev_status.append(info[2])

    listings = list(listing_of)
    item_merchant = np.asarray([seller_of[s] for _, s in listings], dtype=np.int64)
    tag_rows = [(k, tag_of[category_of[p]]) for k, (p, _) in enumerate(listings) if category_of[p]]
    rows = np.asarray([a for a, _ in tag_rows], dtype=np.int64)
    cols = np.asarray([b for _, b in tag_rows], dtype=np.int64)
    item_tags = _tags_matrix(rows, cols, len(listings), len(category_names))

    time = np.asarray(ev_time, dtype=np.float64)
    order = np.argsort(time, kind="stable")
    events = {
        "user": np.asarray(ev_user, dtype=np.int64)[order],
        "item": np.asarray(ev_item, dtype=np.int64)[order],
        "kind": np.full(order.shape[0], "buy", dtype="<U3"),
        "time": time[order],
        "order_status": np.asarray(ev_status, dtype=str)[order] if ev_status else np.zeros(0, dtype="<U1"),
    }
    return OlistData(
        events=events,
        item_tags=item_tags,
        item_merchant=item_merchant,
        item_product_ids=tuple(p for p, _ in listings),
        user_ids=user_ids,
        category_names=category_names,
        seller_ids=trust.seller_ids,
        trust=trust,
        path=d,
    )
