"""Offline evaluation of interest profiles on the Taobao UserBehavior prefix.

Usage (from the repository root)::

    python bench/eval_taobao.py [--path CSV] [--k 10] [--half-life 14,1]

Protocol: the *last day* is the last calendar day with events in Beijing time (UTC+8, the
platform's local time; 2017-12-03 for the prefix).  Each user's events before that day are
folded into an :class:`ecomcore.InterestModel`; categories are ranked for every user with at
least one event before the day and at least one event on it; the relevant set is the categories
of the items the user touched (any behaviour) on the last day.  Metrics (binary relevance):

* hit rate@k: share of users with at least one relevant category in their top k;
* NDCG@k: ``sum_{r < k, c_r relevant} 1 / log2(r + 2)`` divided by the same sum over the first
  ``min(|relevant|, k)`` ranks.

Rankers:

* (a) popularity: categories by their number of events before the day (same list for all);
* (b) interest only: ``InterestModel(half_life_days=None, idf=False)`` (behaviour-weighted
  counts of each user's categories);
* (c) interest with recency decay and IDF: ``InterestModel(half_life_days=h, idf=True)`` for
  each ``h`` of ``--half-life`` (the default model uses 14 days).

A user's interest list holds their categories by profile weight (ties: popularity); when they
touched fewer than k categories, the rest of the list is filled with the most popular
categories they have not touched, so all rankers show k categories.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401

import ecomcore  # noqa: E402
from ecomcore.loaders import load_taobao  # noqa: E402

LOCAL_OFFSET = 8 * 3600  # Beijing time, UTC+8
DAY = 86400


@dataclass(frozen=True)
class Result:
    """One ranker's scores: name, hit rate@k, NDCG@k and the number of users evaluated."""

    name: str
    hit_rate: float
    ndcg: float
    n_users: int


def last_day_start(time: np.ndarray, offset: float = LOCAL_OFFSET) -> float:
    """Unix seconds of the start of the last local day holding an event."""
    t_max = float(np.max(time))
    return math.floor((t_max + offset) / DAY) * DAY - offset


def hit_ndcg(ranked: Sequence[Sequence[int]], relevant: Sequence[set], k: int) -> tuple[float, float]:
    """Mean hit rate@k and NDCG@k (binary relevance) over the users given.

    Parameters
    ----------
    ranked : sequence of sequences of int
        Each user's ranked list (only the first k count).
    relevant : sequence of set of int
        Each user's relevant items (non-empty).
    k : int
        Cut-off.

    Returns
    -------
    (float, float)
        Hit rate and NDCG, both in [0, 1]; (nan, nan) for no users.
    """
    if len(ranked) == 0:
        return math.nan, math.nan
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    hits = 0
    ndcg = 0.0
    for lst, rel in zip(ranked, relevant):
        gains = np.array([c in rel for c in list(lst)[:k]], dtype=float)
        hits += bool(gains.any())
        ideal = disc[: min(len(rel), k)].sum()
        ndcg += float(gains @ disc[: gains.shape[0]]) / ideal
    return hits / len(ranked), ndcg / len(ranked)


def _rank_lists(a: Optional[sp.csr_array], users: np.ndarray, pop_order: np.ndarray, k: int) -> list[list[int]]:
    """Each user's top-k categories: profile weight (ties: popularity), then popularity fill."""
    pos = np.empty(pop_order.shape[0], dtype=np.int64)
    pos[pop_order] = np.arange(pop_order.shape[0])
    out = []
    for u in users.tolist():
        lst: list[int] = []
        if a is not None:
            lo, hi = a.indptr[u], a.indptr[u + 1]
            tags, vals = a.indices[lo:hi], a.data[lo:hi]
            order = np.lexsort((pos[tags], -vals.astype(np.float64)))
            lst = tags[order][:k].tolist()
        if len(lst) < k:
            seen = set(lst)
            for c in pop_order.tolist():
                if c not in seen:
                    lst.append(c)
                    if len(lst) == k:
                        break
        out.append(lst)
    return out


def evaluate(
    events: dict,
    item_tags: sp.csr_array,
    n_users: int,
    split: float,
    end: Optional[float] = None,
    k: int = 10,
    half_lives: Sequence[float] = (14.0,),
) -> list[Result]:
    """Fold the events before ``split``, rank tags, score against the tags touched in [split, end).

    Parameters
    ----------
    events : dict of str to ndarray
        Columns ``user``, ``item``, ``kind``, ``time`` (as :meth:`ecomcore.InterestModel.fold`).
    item_tags : scipy.sparse.csr_array
        Items x tags.
    n_users : int
        Number of users.
    split : float
        Start of the test day (Unix seconds).
    end : float, optional
        End of the test window (default ``split + 86400``).
    k : int, default 10
        Cut-off.
    half_lives : sequence of float, default (14.0,)
        Half-lives (days) of the rankers (c).

    Returns
    -------
    list of Result
        (a) popularity, (b) interest only, then one (c) row per half-life.
    """
    end = split + DAY if end is None else end
    x = sp.csr_array(item_tags)
    t = np.asarray(events["time"], dtype=np.float64)
    past = t < split
    test = (t >= split) & (t < end)
    hist = {c: np.asarray(v)[past] for c, v in events.items()}
    user = np.asarray(events["user"])
    item = np.asarray(events["item"])

    relevant: dict[int, set] = {}
    for u, i in zip(user[test].tolist(), item[test].tolist()):
        relevant.setdefault(u, set()).update(x.indices[x.indptr[i] : x.indptr[i + 1]].tolist())
    has_past = np.zeros(n_users, dtype=bool)
    has_past[user[past]] = True
    users = np.array(sorted(u for u, r in relevant.items() if has_past[u] and r), dtype=np.int64)
    rel = [relevant[u] for u in users.tolist()]

    per_item = np.bincount(item[past], minlength=x.shape[0]).astype(np.float64)
    counts = x.T @ per_item  # events per tag before the split
    pop_order = np.lexsort((np.arange(x.shape[1]), -counts))

    results = [Result("(a) popularity", *hit_ndcg(_rank_lists(None, users, pop_order, k), rel, k), len(users))]
    configs = [("(b) interest only", None, False)] + [
        (f"(c) interest, half-life {h:g} d + IDF", h, True) for h in half_lives
    ]
    for name, h, idf in configs:
        model = ecomcore.InterestModel(half_life_days=h, idf=idf, n_users=n_users)
        state = model.fold(hist, x)
        a = model.profiles(state, now=split)
        results.append(Result(name, *hit_ndcg(_rank_lists(a, users, pop_order, k), rel, k), len(users)))
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the evaluation on the Taobao prefix and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--path", default=None, help="UserBehavior CSV (default: shared data)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--half-life", default="14,1", help="comma-separated half-lives in days for (c)")
    args = ap.parse_args(argv)
    data = load_taobao(args.path)
    split = last_day_start(data.events["time"])
    hls = [float(s) for s in args.half_life.split(",") if s]
    res = evaluate(data.events, data.item_tags, data.n_users, split, k=args.k, half_lives=hls)
    n_past = int(np.count_nonzero(data.events["time"] < split))
    print(
        f"Taobao prefix: {data.n_events} events, {data.n_users} users, {data.n_tags} categories; "
        f"history {n_past} events before {split:.0f} (last local day, UTC+8); "
        f"{res[0].n_users} users evaluated"
    )
    print(f"{'ranker':<36} {'hit@' + str(args.k):>8} {'NDCG@' + str(args.k):>9}")
    for r in res:
        print(f"{r.name:<36} {r.hit_rate:8.4f} {r.ndcg:9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
