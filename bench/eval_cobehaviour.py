"""Offline evaluation of co-behaviour (item-item) scoring against popularity, tag interest and
implicit's recommenders, on the Taobao prefix and on the Olist sample.

Usage (from the repository root)::

    python bench/eval_cobehaviour.py [--k 10] [--neighbours 20] [--no-olist]

Taobao prefix (protocol of ``bench/eval_taobao.py``): the test day is the last local day
(UTC+8); every event before it is history.  A user is evaluated when they have history and put
at least one item in the cart or bought it on the test day.

* items: relevant = the items carted or bought on the test day that are not in the user's
  history; every ranker excludes history items (implicit's ``filter_already_liked_items``);
  users whose relevant set is empty are not evaluated.
* categories: relevant = the categories of the items carted or bought on the test day
  (history categories allowed).

History A = :func:`ecomcore.item_history` (view 1, fav 2, cart 3, buy 5; 14-day half-life,
decayed to the split).  Every ranker scores the same A:

* popularity: items (categories) by history events; ``x trust``: times the merchant's trust;
* tag interest: the user's category profile (``InterestModel``, 14-day half-life + IDF); an
  item scores its category's weight (ties: popularity);
* co-behaviour ``<method>``: ``Ranker(S).topk(A, exclude=A)`` with
  ``S = item_similarity(A, method, top_n=K, count_self=True)`` (implicit's neighbour
  convention, K = ``--neighbours``), and cosine with ``top_n=100`` without it; categories:
  ``Ranker(merchant_side(S, item_category, self_weight=1)).topk(A)``;
* implicit: ``CosineRecommender(K)``, ``BM25Recommender(K)`` (K1 = 1.2, B = 0.75) and
  ``AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05, random_state=0)``
  fitted on the same A (float32), ``recommend(..., filter_already_liked_items=True)``.

Lists shorter than k are filled with the most popular items (categories) not excluded, for
every ranker alike.  Metrics: HR@k and NDCG@k (binary relevance, ``eval_taobao.hit_ndcg``).

Olist (sample_8k): items are listings (one seller each), A = purchases (no decay); the split
is the 70 % time quantile; evaluated users bought before and after it.  Trust: the seller
``TrustModel(olist_indicators())`` index at the split (90-day half-life).  Very few Olist
customers buy twice, so its figures rest on a handful of users (printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401
from eval_taobao import hit_ndcg, last_day_start  # noqa: E402

import ecomcore as ec  # noqa: E402
from ecomcore.loaders import load_olist, load_taobao  # noqa: E402
from ecomcore.similarity import _weights  # noqa: E402

METHODS = ("cosine", "bm25", "swing")


def _fill(
    lists: list[list[int]], users: np.ndarray, seen: sp.csr_array, pop_order: np.ndarray, k: int
) -> list[list[int]]:
    """Pad each list to k with the most popular entries that are neither listed nor excluded.

    ``seen`` holds one row per evaluated user (in the order of ``users``).
    """
    out = []
    for u, lst in enumerate(lists):
        lst = [int(c) for c in lst][:k]
        if len(lst) < k:
            skip = set(lst)
            if seen is not None:
                skip.update(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
            for c in pop_order.tolist():
                if c not in skip:
                    lst.append(c)
                    if len(lst) == k:
                        break
        out.append(lst)
    return out


def _topk_lists(top: ec.TopK) -> list[list[int]]:
    return [top.indices[r, : top.counts[r]].tolist() for r in range(top.n_rows)]


def _implicit_lists(model, a: sp.csr_matrix, users: np.ndarray, k: int, filt: bool) -> list[list[int]]:
    ids, scores = model.recommend(users, a[users], N=k, filter_already_liked_items=filt)
    ids = np.atleast_2d(ids)
    scores = np.atleast_2d(scores)
    return [[int(i) for i, s in zip(ir, sr) if i >= 0 and np.isfinite(s)] for ir, sr in zip(ids, scores)]


def _evaluate(
    name: str,
    lists: list[list[int]],
    users: np.ndarray,
    rel: list[set],
    seen: Optional[sp.csr_array],
    pop_order: np.ndarray,
    k: int,
) -> tuple[str, float, float]:
    hr, nd = hit_ndcg(_fill(lists, users, seen, pop_order, k), rel, k)
    return name, hr, nd


def item_rankers(
    a: sp.csr_array,
    users: np.ndarray,
    rel: list[set],
    item_tags: sp.csr_array,
    pop: np.ndarray,
    k: int,
    neighbours: int,
    *,
    tag_profiles: Optional[sp.csr_array] = None,
    item_trust: Optional[np.ndarray] = None,
    exclude_seen: bool = True,
    n_threads: int = 1,
) -> list[tuple[str, float, float]]:
    """HR@k / NDCG@k of every item ranker for the given users.

    With ``exclude_seen`` history items are never recommended; without it, co-behaviour
    scores ``A (S + D)`` with D the items' self-similarity (``sum_u W[u, i]^2`` for cosine and
    BM25: what implicit's item-item models add, since an item is among its own neighbours;
    1 for Swing) and implicit runs with ``filter_already_liked_items=False``.
    """
    n_items = a.shape[1]
    pop_order = np.lexsort((np.arange(n_items), -pop))
    au = sp.csr_array(a[users])
    ex = au if exclude_seen else None
    eye = sp.identity(n_items, format="csr", dtype=np.float64)
    res = []

    def add(name: str, lists: list[list[int]], order: np.ndarray = pop_order) -> None:
        res.append(_evaluate(name, lists, users, rel, ex, order, k))
        print(f"  {res[-1][0]:<44} {res[-1][1]:8.4f} {res[-1][2]:9.4f}", flush=True)

    add("popularity", [[] for _ in users])
    if not exclude_seen:
        add("own history (A weight)", _topk_lists(ec.Ranker(eye).topk(au, k, n_threads=n_threads)))
    if item_trust is not None:
        add("popularity x trust", [[] for _ in users], np.lexsort((np.arange(n_items), -pop * item_trust)))
    if tag_profiles is not None:
        tie = 1.0 + 1e-3 * pop / (pop.max() + 1.0)
        b = sp.csr_array(item_tags.T.tocsr())
        for tname, t in [("tag interest", None), ("tag interest x trust", item_trust)]:
            if tname.endswith("trust") and t is None:
                continue
            boost = tie if t is None else tie * t
            r = ec.Ranker(b, boost=boost)
            add(tname, _topk_lists(r.topk(tag_profiles[users], k, exclude=ex, n_threads=n_threads)))
    sims: dict[str, sp.csr_array] = {}
    for method in METHODS:
        for top_n, count_self, label in [(neighbours, True, f"K={neighbours}"), (100, False, "top_n=100")]:
            if method != "cosine" and not count_self:
                continue
            if method == "swing" and count_self:
                s = item_similarity_swing(a, neighbours)
                label = f"top_n={neighbours}"
            else:
                s = ec.item_similarity(a, method=method, top_n=top_n, count_self=count_self, n_threads=n_threads)
            sims[f"{method} {label}"] = s
            if not exclude_seen:
                s = sp.csr_array(s + _self_similarity(a, method))
                label += " (+self)"
            r = ec.item_ranker(s)
            add(f"co-behaviour {method} {label}", _topk_lists(r.topk(au, k, exclude=ex, n_threads=n_threads)))
            if item_trust is not None:
                r = ec.Ranker(s, trust=item_trust)
                add(f"co-behaviour {method} {label} x trust",
                    _topk_lists(r.topk(au, k, exclude=ex, n_threads=n_threads)))  # fmt: skip
    try:
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
    except ImportError:  # pragma: no cover - bench extra missing
        print("  (implicit not installed: its rows are skipped)")
        return res
    a32 = sp.csr_matrix(a.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, model in [
            (f"implicit CosineRecommender K={neighbours}", CosineRecommender(K=neighbours, num_threads=n_threads)),
            (f"implicit BM25Recommender K={neighbours}", BM25Recommender(K=neighbours, num_threads=n_threads)),
            (
                "implicit ALS (64 factors)",
                AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05, random_state=0,
                                        num_threads=n_threads),
            ),
        ]:  # fmt: skip
            model.fit(a32, show_progress=False)
            add(label, _implicit_lists(model, a32, users, k, exclude_seen))
    return res


def _self_similarity(a: sp.csr_array, method: str) -> sp.csr_array:
    """Diagonal matrix of the items' self-similarity: ``sum_u W[u, i]^2`` for cosine / BM25
    (what implicit keeps among an item's neighbours), 1 for Swing (which has none)."""
    n = a.shape[1]
    if method == "swing":
        d = (np.diff(sp.csc_array(a).indptr) > 0).astype(np.float64)
    else:
        w = _weights(sp.csr_array(a, dtype=np.float64), method, 1.2, 0.75)
        d = np.bincount(w.indices, weights=w.data * w.data, minlength=n)
    return sp.diags_array(d, format="csr")


def item_similarity_swing(a: sp.csr_array, top_n: int) -> sp.csr_array:
    """Swing with the defaults (alpha 1, at most 100 users per item)."""
    return ec.item_similarity(a, method="swing", top_n=top_n)


def category_rankers(
    a: sp.csr_array,
    tag_profiles: sp.csr_array,
    users: np.ndarray,
    rel: list[set],
    item_cat: np.ndarray,
    n_cats: int,
    cat_pop: np.ndarray,
    k: int,
    neighbours: int,
) -> list[tuple[str, float, float]]:
    """HR@k / NDCG@k of category rankers (history categories allowed)."""
    pop_order = np.lexsort((np.arange(n_cats), -cat_pop))
    res = []

    def add(name: str, lists: list[list[int]]) -> None:
        res.append(_evaluate(name, lists, users, rel, None, pop_order, k))
        print(f"  {res[-1][0]:<44} {res[-1][1]:8.4f} {res[-1][2]:9.4f}", flush=True)

    add("popularity", [[] for _ in users])
    tie = 1.0 + 1e-3 * cat_pop / (cat_pop.max() + 1.0)
    eye = sp.identity(n_cats, format="csr", dtype=np.float64)
    add("tag interest", _topk_lists(ec.Ranker(eye, boost=tie).topk(tag_profiles[users], k)))
    au = sp.csr_array(a[users])
    for method in METHODS:
        s = ec.item_similarity(a, method=method, top_n=neighbours)
        # own items count for their category (weight 1), neighbours add their similarity
        ms = ec.merchant_side(s, item_cat, n_merchants=n_cats, self_weight=1.0)
        add(f"co-behaviour {method} top_n={neighbours} (+own)", _topk_lists(ec.Ranker(ms, boost=tie).topk(au, k)))
    return res


def taobao(k: int, neighbours: int) -> None:
    """Run and print the Taobao prefix evaluation."""
    data = load_taobao()
    ev = data.events
    split = last_day_start(ev["time"])
    t = ev["time"]
    past = t < split
    test = (t >= split) & (t < split + 86400)
    hist = {c: np.asarray(v)[past] for c, v in ev.items()}
    n_users, n_items, n_cats = data.n_users, data.n_items, data.n_tags
    t0 = time.perf_counter()
    a = ec.item_history(hist, n_users=n_users, n_items=n_items, now=split)
    item_cat = data.item_tags.indices[data.item_tags.indptr[:-1]].astype(np.int64)  # one category each
    pop = np.bincount(hist["item"], minlength=n_items).astype(np.float64)
    model = ec.InterestModel(half_life_days=14.0, idf=True, n_users=n_users)
    prof = model.profiles(model.fold(hist, data.item_tags), now=split)

    kind = np.asarray(ev["kind"])
    strong = test & np.isin(kind, ["cart", "buy"])
    u_t, i_t = ev["user"][strong], ev["item"][strong]
    has_past = np.diff(a.indptr) > 0
    # items
    rel_items: dict[int, set] = {}
    for u, i in zip(u_t.tolist(), i_t.tolist()):
        lo, hi = a.indptr[u], a.indptr[u + 1]
        if has_past[u] and i not in set(a.indices[lo:hi].tolist()):
            rel_items.setdefault(u, set()).add(i)
    users = np.array(sorted(rel_items), dtype=np.int64)
    print(
        f"Taobao prefix: {data.n_events} events, {n_users} users, {n_items} items, {n_cats} categories; "
        f"history {int(past.sum())} events before the last local day; A has {a.nnz} entries "
        f"({time.perf_counter() - t0:.1f} s to load and fold)"
    )
    print(f"\nItems (new to the user, carted or bought on the last day): {len(users)} users, k={k}")
    print(f"  {'ranker':<44} {'HR@' + str(k):>8} {'NDCG@' + str(k):>9}")
    item_rankers(a, users, [rel_items[u] for u in users.tolist()], data.item_tags, pop, k, neighbours,
                 tag_profiles=prof)  # fmt: skip
    rel_all: dict[int, set] = {}
    for u, i in zip(u_t.tolist(), i_t.tolist()):
        if has_past[u]:
            rel_all.setdefault(u, set()).add(i)
    ausers = np.array(sorted(rel_all), dtype=np.int64)
    print(f"\nItems (any, carted or bought on the last day; history allowed): {len(ausers)} users, k={k}")
    print(f"  {'ranker':<44} {'HR@' + str(k):>8} {'NDCG@' + str(k):>9}")
    item_rankers(a, ausers, [rel_all[u] for u in ausers.tolist()], data.item_tags, pop, k, neighbours,
                 tag_profiles=prof, exclude_seen=False)  # fmt: skip
    # categories
    rel_cats: dict[int, set] = {}
    for u, i in zip(u_t.tolist(), i_t.tolist()):
        if has_past[u]:
            rel_cats.setdefault(u, set()).add(int(item_cat[i]))
    cusers = np.array(sorted(rel_cats), dtype=np.int64)
    cat_pop = np.bincount(item_cat[hist["item"]], minlength=n_cats).astype(np.float64)
    print(f"\nCategories (of items carted or bought on the last day): {len(cusers)} users, k={k}")
    print(f"  {'ranker':<44} {'HR@' + str(k):>8} {'NDCG@' + str(k):>9}")
    category_rankers(a, prof, cusers, [rel_cats[u] for u in cusers.tolist()], item_cat, n_cats, cat_pop, k,
                     neighbours)  # fmt: skip


def olist(k: int, neighbours: int, quantile: float = 0.7) -> None:
    """Run and print the Olist evaluation (few repeat customers: indicative only)."""
    from ecomcore import TrustModel
    from ecomcore.olist import olist_indicators

    d = load_olist()
    ev = d.events
    t = ev["time"]
    split = float(np.quantile(t, quantile))
    past = t < split
    hist = {c: np.asarray(ev[c])[past] for c in ("user", "item", "kind", "time")}
    a = ec.item_history(hist, n_users=d.n_users, n_items=d.n_items, half_life_days=None)
    rel: dict[int, set] = {}
    has_past = np.diff(a.indptr) > 0
    for u, i in zip(ev["user"][~past].tolist(), ev["item"][~past].tolist()):
        lo, hi = a.indptr[u], a.indptr[u + 1]
        if has_past[u] and i not in set(a.indices[lo:hi].tolist()):
            rel.setdefault(u, set()).add(i)
    users = np.array(sorted(rel), dtype=np.int64)
    tr = d.trust
    cols = ("merchant", "indicator", "value", "time", "buyer")
    keep = tr.events["time"] < split
    tm = TrustModel(olist_indicators(), n_merchants=tr.n_sellers, categories=tr.categories, half_life_days=90.0)
    trust = tm.score(tm.fold({c: tr.events[c][keep] for c in cols}), split).index
    item_trust = np.asarray(trust)[d.item_merchant]
    pop = np.bincount(hist["item"], minlength=d.n_items).astype(np.float64)
    model = ec.InterestModel(half_life_days=None, idf=True, n_users=d.n_users)
    prof = model.profiles(model.fold(hist, d.item_tags), now=split)
    print(
        f"\nOlist sample_8k: {d.n_events} purchases, {d.n_users} customers, {d.n_items} listings, "
        f"{d.n_merchants} sellers; split at the {quantile:.0%} time quantile; A has {a.nnz} entries; "
        f"{len(users)} customers bought new listings after the split (indicative only), k={k}"
    )
    print(f"  {'ranker':<44} {'HR@' + str(k):>8} {'NDCG@' + str(k):>9}")
    if len(users) == 0:
        print("  (no customer to evaluate)")
        return
    item_rankers(a, users, [rel[u] for u in users.tolist()], d.item_tags, pop, k, neighbours,
                 tag_profiles=prof, item_trust=item_trust)  # fmt: skip


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--neighbours", type=int, default=20, help="K of the item-item models (implicit's default 20)")
    ap.add_argument("--no-olist", action="store_true")
    args = ap.parse_args(argv)
    runs: list[Callable[[], None]] = [lambda: taobao(args.k, args.neighbours)]
    if not args.no_olist:
        runs.append(lambda: olist(args.k, args.neighbours))
    for run in runs:
        run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
