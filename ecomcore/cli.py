"""The ``ecomcore`` command line.

``ecomcore demo`` runs the whole pipeline from raw data: behaviour events folded into interest
profiles A (:class:`ecomcore.InterestModel`), the catalogue into merchant profiles B, follows
and repeat purchases into F, merchant events into trust (:class:`ecomcore.TrustModel`),
identity links into bans (:class:`ecomcore.IdentityGraph`), then the fused top-k
(:class:`ecomcore.Ranker`), exposure re-ranking (:func:`ecomcore.rerank_exposure`) and a timing
against the plain scipy approach on the same problem.  By default the data is generated
(:func:`ecomcore.datasets.synthetic_behaviour` and :func:`~ecomcore.datasets.synthetic_trust_events`,
seeded); ``--olist PATH`` and ``--taobao PATH`` run the same pipeline on the real data sets
(:mod:`ecomcore.loaders`).  ``ecomcore profiles | trust | rank`` are the batch steps
(:mod:`ecomcore.cli_batch`); ``ecomcore config`` prints the build configuration.

Adding a subcommand
-------------------
A module registers its subcommands with one import and one call in :func:`_parser`::

    from ecomcore.cli_batch import add_batch_parsers
    add_batch_parsers(sub, positive_int)

where ``add_batch_parsers(sub, ...)`` calls ``sub.add_parser(...)`` and sets
``parser.set_defaults(handler=run)`` (``ecomcore.cli_audience`` returns its parser and the
handler is set here); :func:`main` calls ``handler(args)`` and returns its exit
status.  :func:`positive_int`, :func:`non_negative_int` are the shared argparse types.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

__all__ = ["main", "non_negative_int", "positive_int"]

#: 2026-01-01 00:00 UTC: the end of the generated market's time window (reproducible output).
DEMO_NOW = 1_767_225_600.0
_DAY = 86400.0
#: Users whose ranked pairs the demo's relevance check covers (it is exact, not sampled, below this).
_CHECK_USERS = 20_000


from ecomcore._argtypes import non_negative_int, positive_int  # noqa: E402 (re-exported)

_positive_int = positive_int  # the names the batch module was written against
_non_negative_int = non_negative_int


def _parser() -> argparse.ArgumentParser:
    from ecomcore import __version__

    parser = argparse.ArgumentParser(
        prog="ecomcore",
        description="Fused sparse interest x trust top-k ranking.",
    )
    parser.add_argument("--version", action="version", version=f"ecomcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_demo_parser(sub)
    sub.add_parser("config", help="print the build configuration").set_defaults(handler=_config)

    from ecomcore.cli_batch import add_batch_parsers

    add_batch_parsers(sub, positive_int)

    from ecomcore.cli_audience import add_parser as add_audience_parser
    from ecomcore.cli_audience import run as run_audience

    add_audience_parser(sub).set_defaults(handler=run_audience)
    return parser


def _add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on generated (or real) data and compare with scipy",
        description=(
            "Generate a market's raw data (catalogue, view/fav/cart/buy events, follows, repeat "
            "purchases, merchant events, identity links), fold it into interest profiles, merchant "
            "profiles, follows and trust, block stores linked to banned ones, rank every user, "
            "re-rank for exposure and time the ranking against scipy (chunked product + "
            "argpartition). --olist / --taobao run the same on the real data."
        ),
    )
    src = demo.add_mutually_exclusive_group()
    src.add_argument(
        "--olist",
        metavar="PATH",
        default=None,
        help="the Olist data (the sample_8k folder, or a folder holding olist/sample_8k or sample_8k)",
    )
    src.add_argument(
        "--taobao",
        metavar="PATH",
        default=None,
        help="the Taobao UserBehavior CSV (or a folder holding it); categories play the merchants",
    )
    demo.add_argument("--users", type=positive_int, default=None, help="generated users (10000)")
    demo.add_argument("--tags", type=positive_int, default=None, help="generated tags (2000)")
    demo.add_argument("--merchants", type=positive_int, default=None, help="generated merchants (20000)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="seed of the generated data (0)")
    demo.add_argument(
        "--sparse",
        action="store_true",
        help="generated data: independent tag popularity on the merchant side instead of shared popularity",
    )
    demo.add_argument("--k", type=positive_int, default=10, help="results per user (10)")
    demo.add_argument(
        "--candidates", type=positive_int, default=None, help="K', candidates per user for re-ranking (10 k)"
    )
    demo.add_argument("--threads", type=positive_int, default=None, help="threads (default: all cores)")
    demo.add_argument("--show", type=non_negative_int, default=3, help="users whose top-k is printed (3)")
    demo.add_argument("--no-scipy", action="store_true", help="skip the scipy comparison")
    demo.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    demo.set_defaults(handler=_demo)


def _config(args: argparse.Namespace) -> int:
    import ecomcore as ec

    ec.show_config()
    return 0


# ---------------------------------------------------------------------------------------------
# Demo data: one shape for the generated market and the real data sets
# ---------------------------------------------------------------------------------------------


@dataclass
class _Data:
    """Everything the demo pipeline folds, from one source."""

    source: str
    events: dict
    item_tags: Any
    item_merchant: np.ndarray
    n_users: int
    n_merchants: int
    now: float
    notes: list = field(default_factory=list)
    follow_events: Optional[dict] = None  # user, merchant, time, kind (follow / buy)
    follow_note: str = ""
    trust_events: Optional[dict] = None
    indicators: Any = None
    categories: Optional[np.ndarray] = None
    guarantee: Optional[np.ndarray] = None
    links: Optional[tuple] = None  # (stores, keys)
    ban: Optional[Callable[[Any], tuple]] = None  # trust scores (or None) -> (store ids, reason)
    merchant_word: str = "merchant"
    merchants_word: str = "merchants"
    tag_word: str = "tag"
    tags_word: str = "tags"
    tag_name: Optional[Callable[[int], str]] = None
    merchant_name: Optional[Callable[[int], str]] = None
    user_name: Optional[Callable[[int], str]] = None
    interests: Any = None  # latent truth (generated data only)
    load_s: float = 0.0

    @property
    def n_tags(self) -> int:
        return int(self.item_tags.shape[1])


def _generated(args: argparse.Namespace, bar: Callable[..., Any]) -> _Data:
    import ecomcore as ec
    from ecomcore.datasets import synthetic_behaviour, synthetic_identity_links, synthetic_trust_events

    n_u = 10_000 if args.users is None else args.users
    n_t = 2_000 if args.tags is None else args.tags
    n_m = 20_000 if args.merchants is None else args.merchants
    t0 = time.perf_counter()
    with bar("generating behaviour") as b:
        beh = synthetic_behaviour(n_u, n_t, n_m, seed=args.seed, shared_popularity=not args.sparse, end=DEMO_NOW)
        b.update(1, 1)
    indicators = ec.default_indicators()
    with bar("generating merchant events") as b:
        trust_events = synthetic_trust_events(
            beh.quality, indicators, n_events=30 * n_m, start=DEMO_NOW - 180 * _DAY, buyers=5 * n_m, seed=args.seed
        )
        stores, keys = synthetic_identity_links(n_m, seed=args.seed)
        b.update(1, 1)
    guarantee = np.random.default_rng(args.seed).random((n_m, 3)) < 0.3
    regime = "independent" if args.sparse else "shared"
    banned = np.flatnonzero(beh.banned)
    return _Data(
        source=f"generated market, seed {args.seed}, {regime} tag popularity",
        events=beh.events,
        item_tags=beh.item_tags,
        item_merchant=beh.item_merchant,
        n_users=beh.n_users,
        n_merchants=n_m,
        now=beh.end,
        notes=[
            f"{beh.n_items:,} items; {beh.n_events:,} behaviour events over "
            f"{(beh.end - beh.start) / (7 * _DAY):.0f} weeks; {beh.follows['user'].shape[0]:,} follow events; "
            f"{trust_events['merchant'].shape[0]:,} merchant events; {len(keys):,} identity links"
        ],
        follow_events=beh.follow_events(),
        follow_note="follows + repeat purchases",
        trust_events=trust_events,
        indicators=indicators,
        guarantee=guarantee,
        links=(stores, keys),
        ban=lambda scores: (banned, "counterfeit goods"),
        interests=beh.interests,
        load_s=time.perf_counter() - t0,
    )


def _olist_dir(path: str) -> str:
    for cand in (path, os.path.join(path, "sample_8k"), os.path.join(path, "olist", "sample_8k")):
        if os.path.isfile(os.path.join(cand, "olist_orders_dataset.csv")):
            return cand
    return path  # the loader names what is missing


def _taobao_file(path: str) -> str:
    if os.path.isdir(path):
        for cand in (
            os.path.join(path, "UserBehavior_prefix.csv"),
            os.path.join(path, "taobao-userbehavior-prefix", "UserBehavior_prefix.csv"),
        ):
            if os.path.isfile(cand):
                return cand
    return path


def _dedupe_buys(user: np.ndarray, merchant: np.ndarray, when: np.ndarray) -> dict:
    """One "buy" per (user, merchant, time): several items of one order are one purchase."""
    key = np.stack([user, merchant, when.astype(np.int64)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first.sort()
    return {
        "user": user[first],
        "merchant": merchant[first],
        "time": when[first],
        "kind": np.full(first.shape[0], "buy", dtype="<U6"),
    }


def _olist(args: argparse.Namespace, bar: Callable[..., Any]) -> _Data:
    from ecomcore.loaders import load_olist

    t0 = time.perf_counter()
    with bar(f"reading {args.olist}") as b:
        d = load_olist(_olist_dir(args.olist))
        b.update(1, 1)
    ev = d.events
    ok = ~np.isin(ev["order_status"], ("canceled", "unavailable"))
    item_m = d.item_merchant
    follow = _dedupe_buys(ev["user"][ok], item_m[ev["item"][ok]], ev["time"][ok])
    n_m = d.n_merchants
    orders = np.bincount(
        d.trust.events["merchant"][d.trust.events["indicator"] == "seller_cancellation_rate"], minlength=n_m
    )

    def ban(scores: Any) -> tuple:
        known = np.flatnonzero(orders >= 10)
        if scores is None or known.size == 0:
            return np.zeros(0, np.int64), ""
        worst = int(known[np.argmin(scores.index[known])])
        return np.array([worst]), "lowest trust among sellers with >= 10 orders (demo rule)"

    sellers = d.seller_ids
    users = d.user_ids
    return _Data(
        source=f"Olist sample ({d.path})",
        events={k: ev[k] for k in ("user", "item", "kind", "time")},
        item_tags=d.item_tags,
        item_merchant=item_m,
        n_users=d.n_users,
        n_merchants=n_m,
        now=d.trust.data_end,
        notes=[
            f"{d.n_items:,} listings (product, seller); {d.n_events:,} purchase events (order items); "
            f"{d.trust.events['merchant'].shape[0]:,} seller events from reviews, deliveries, dispatch and "
            "cancellations",
            "merchants are sellers, tags are product categories; Olist records no follows (F = repeat "
            "purchases from a seller), no bans and no identity data (the identity graph below links each "
            "seller to its own owner key only, and one seller is banned by a demo rule)",
            "the sample is biased towards bad outcomes (every non-delivered order, 5 % of delivered ones)",
        ],
        follow_events=follow,
        follow_note="repeat purchases from the same seller, cancelled orders excluded",
        trust_events={k: d.trust.events[k] for k in ("merchant", "indicator", "value", "time", "buyer")},
        indicators=d.trust.indicators,
        categories=d.trust.categories,
        links=(np.arange(n_m, dtype=np.int64), [("owner", s) for s in sellers]),
        ban=ban,
        merchant_word="seller",
        merchants_word="sellers",
        tag_word="category",
        tags_word="categories",
        tag_name=lambda t: d.category_names[t],
        merchant_name=lambda m: sellers[m][:8],
        user_name=lambda u: f"customer {users[u][:8]}",
        load_s=time.perf_counter() - t0,
    )


def _taobao(args: argparse.Namespace, bar: Callable[..., Any]) -> _Data:
    from ecomcore.loaders import load_taobao

    t0 = time.perf_counter()
    with bar(f"reading {args.taobao}") as b:
        d = load_taobao(_taobao_file(args.taobao))
        b.update(1, 1)
    ev = d.events
    # the category is the item's "merchant"; the one item listed under two categories (in the
    # prefix) is given to the first (smallest id) of them
    x = d.item_tags
    item_cat = np.asarray(x.indices, dtype=np.int64)[np.asarray(x.indptr[:-1], dtype=np.int64)]
    buy = ev["kind"] == "buy"
    follow = _dedupe_buys(ev["user"][buy], item_cat[ev["item"][buy]], ev["time"][buy])
    cats = d.category_ids
    users = d.user_ids
    return _Data(
        source=f"Taobao UserBehavior prefix ({d.path})",
        events=ev,
        item_tags=d.item_tags,
        item_merchant=item_cat,
        n_users=d.n_users,
        n_merchants=d.n_tags,
        now=float(ev["time"].max()) if ev["time"].size else 0.0,
        notes=[
            f"{d.n_items:,} items; {d.n_events:,} events (pv -> view, fav, cart, buy)",
            "Taobao has no seller field: each category plays a merchant (a category storefront), so B is "
            "the identity on categories and the interest part is the user's profile weight for the category",
            "there are no merchant events: trust is uniform (1 for every category); no identity data: "
            "nothing is banned",
        ],
        follow_events=follow,
        follow_note="repeat purchases in the same category",
        merchant_word="category",
        merchants_word="categories",
        tag_word="category",
        tags_word="categories",
        tag_name=lambda t: str(cats[t]),
        merchant_name=lambda m: f"cat {cats[m]}",
        user_name=lambda u: f"user_id {users[u]}",
        load_s=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------


def _fold_chunked(fold: Callable[[dict, bool], None], events: dict, label: str, bar: Callable[..., Any]) -> None:
    n = int(next(iter(events.values())).shape[0])
    step = 1 << 20
    with bar(label, n) as b:
        for s0 in range(0, max(n, 1), step):
            s1 = min(s0 + step, n)
            chunk = events if (s0 == 0 and s1 == n) else {k: v[s0:s1] for k, v in events.items()}
            fold(chunk, s0 == 0)
            b.update(s1)


def _scipy_problem(a: Any, b: Any, f: Any, ranker: Any) -> tuple:
    """``(A', B')`` with ``A' @ B' == (A @ B + follow_weight * F) * w``: the same problem for scipy."""
    import scipy.sparse as sp

    w = ranker.merchant_weight.astype(b.dtype)
    bw = sp.csr_array(b @ sp.diags_array(w))
    bw.eliminate_zeros()
    if f is None:
        return sp.csr_array(a), bw
    fw = sp.diags_array((ranker.follow_weight * w).astype(b.dtype)).tocsr()
    fw.eliminate_zeros()
    a2 = sp.csr_array(sp.hstack([a, f], format="csr"))
    b2 = sp.csr_array(sp.vstack([bw, fw], format="csr"))
    b2.eliminate_zeros()
    return a2, b2


def _pipeline(d: _Data, args: argparse.Namespace, bar: Callable[..., Any]) -> int:  # noqa: C901 - one linear story
    import scipy.sparse as sp

    import ecomcore as ec
    from ecomcore.datasets import compare_topk, scipy_topk

    timings: list[tuple[str, float]] = [("reading / generating the data", d.load_s)]
    n_u, n_t, n_m = d.n_users, d.n_tags, d.n_merchants
    mw, tw = d.merchant_word, d.tag_word
    mws, tws = d.merchants_word, d.tags_word
    kinds, counts = np.unique(d.events["kind"], return_counts=True)
    n_ev = int(d.events["user"].shape[0])
    print(f"data: {d.source}")
    print(f"  {n_u:,} users x {n_t:,} {tws} x {n_m:,} {mws}; now = {time.strftime('%Y-%m-%d', time.gmtime(d.now))}")
    for note in d.notes:
        print(f"  {note}")
    mix = ", ".join(f"{k} {c / max(n_ev, 1):.1%}" for k, c in zip(kinds, counts))
    print(f"  events by kind: {mix}")

    # 1. Interest: A (users x tags), B (tags x merchants), F (users x merchants).
    model = ec.InterestModel(n_users=n_u)
    t0 = time.perf_counter()
    folded: list = []

    def fold(chunk: dict, first: bool) -> None:
        if first:
            folded.append(model.fold(chunk, d.item_tags))
        else:
            model.fold(chunk, d.item_tags, into=folded[0])

    _fold_chunked(fold, d.events, "folding behaviour", bar)
    t_fold = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = model.profiles(folded[0], d.now)
    b = model.merchant_profiles(d.item_tags, d.item_merchant, n_merchants=n_m)
    f = None
    if d.follow_events is not None:
        f = model.follow_matrix(**d.follow_events, now=d.now, n_users=n_u, n_merchants=n_m)
    t_prof = time.perf_counter() - t0
    timings += [("interest fold", t_fold), ("profiles A, B, F", t_prof)]
    active = int(np.count_nonzero(np.diff(a.indptr)))
    print(
        f"\ninterest: {n_ev:,} events folded in {t_fold:.3f} s ({n_ev / max(t_fold, 1e-9) / 1e6:.1f}M events/s); "
        f"A, B, F built in {t_prof:.3f} s"
    )
    print(f"  A: {active:,} users with a profile, {a.nnz / max(active, 1):.1f} {tws} each (14-day half-life, IDF, l2)")
    print(f"  B: {b.nnz / max(n_m, 1):.1f} {tws} per {mw} (its items' {tws}, l2)")
    if f is not None:
        print(f"  F: {f.nnz:,} (user, {mw}) pairs from {d.follow_note}")

    # 2. Trust.
    scores = None
    trust = boost = None
    if d.trust_events is not None:
        tmodel = ec.TrustModel(d.indicators, n_merchants=n_m, categories=d.categories)
        t0 = time.perf_counter()
        tfolded: list = []

        def tfold(chunk: dict, first: bool) -> None:
            if first:
                tfolded.append(tmodel.fold(chunk))
            else:
                tmodel.fold(chunk, into=tfolded[0])

        _fold_chunked(tfold, d.trust_events, "folding merchant events", bar)
        t_tf = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = tmodel.score(tfolded[0], d.now, guarantee=d.guarantee)
        t_ts = time.perf_counter() - t0
        timings += [("trust fold", t_tf), ("trust score", t_ts)]
        trust, boost = scores.index, scores.boost
        n_te = int(d.trust_events["merchant"].shape[0])
        print(
            f"\ntrust: {n_te:,} {mw} events ({len(d.indicators)} indicators, buyer dedupe) folded in {t_tf:.3f} s, "
            f"scored in {t_ts:.3f} s; leaderboard:"
        )
        top = np.lexsort((np.arange(n_m), -scores.index))[:5]
        print(f"  {'rank':>4}  {mw:>9}  {'index':>6}  {'confidence':>10}  {'boost':>5}")
        for r, m in enumerate(top):
            name = f"  {d.merchant_name(int(m))}" if d.merchant_name else ""
            print(
                f"  {r + 1:>4}  {int(m):>9}  {scores.index[m]:>6.3f}  {scores.confidence[m]:>10.3f}  "
                f"{scores.boost[m]:>5.2f}{name}"
            )
        well_known = np.flatnonzero(scores.confidence >= np.median(scores.confidence))
        worst = int(well_known[np.argmin(scores.index[well_known])])
        print(f"  explain {mw} {worst} (index {scores.index[worst]:.3f}): what it should improve first")
        for item in scores.explain(worst)[:3]:
            if item.kind == "veto":
                day = time.strftime("%Y-%m-%d", time.gmtime(item.value))
                print(f"    {'veto':<28} confirmed violation on {day} caps the index (costs {item.impact:.3f})")
            else:
                print(
                    f"    {item.indicator:<28} own {item.value:8.3f} vs category norm {item.norm:8.3f} "
                    f"(costs {item.impact:.3f} of the index)"
                )
    else:
        print(f"\ntrust: uniform -- the data holds no merchant events; every {mw} has trust 1")

    # 3. Governance.
    blocked = np.zeros(n_m, dtype=bool)
    if d.links is not None:
        stores, keys = d.links
        gov = ec.IdentityGraph()
        t0 = time.perf_counter()
        gov.link(stores, keys)
        banned, reason = d.ban(scores) if d.ban is not None else (np.zeros(0, np.int64), "")
        if len(banned):
            gov.ban(banned, reason=reason)
        blocked = gov.banned_mask(n_m)
        timings.append(("identity graph", time.perf_counter() - t0))
        print(
            f"\ngovernance: banned {len(banned):,} {mw if len(banned) == 1 else mws} ({reason or 'none'}); "
            f"{int(blocked.sum()):,} blocked in all "
            "(linked to a banned one through shared identity keys)"
        )
        banned_set = np.zeros(n_m, dtype=bool)
        banned_set[np.asarray(banned, dtype=np.int64)] = True
        linked = np.flatnonzero(blocked & ~banned_set)
        if linked.size:
            s = int(linked[0])
            print(f"  {mw} {s} is blocked for sharing an identity with a banned one:")
            print("    " + str(gov.why(store=s)).replace("\n", "\n    "))
        if len(banned):
            bkey = keys[int(np.flatnonzero(np.asarray(stores) == int(banned[0]))[0])]
            applicant = [bkey, ("device", "new-device-1")]
            print(f"  new store presenting {applicant}: blocked = {gov.blocked(applicant)}")
            fresh = [("phone", "new-phone-2"), ("device", "new-device-2")]
            print(f"  new store presenting {fresh}: blocked = {gov.blocked(fresh)}")
    else:
        print(f"\ngovernance: no identity data -- no {mw} is banned")

    # 4. Ranking.
    k = args.k
    wide_k = min(args.candidates if args.candidates is not None else 10 * k, n_m)
    ranker = ec.Ranker(b, trust=trust, boost=boost, banned=blocked)
    ranker.topk(a[:1], k, follows=None if f is None else f[:1], n_threads=1)  # warm-up (workspace, imports)
    t0 = time.perf_counter()
    with bar("ranking", n_u) as pb:
        res = ranker.topk(a, k, follows=f, n_threads=args.threads, progress=pb)
    t_rank = time.perf_counter() - t0
    t0 = time.perf_counter()
    with bar(f"ranking K'={wide_k}", n_u) as pb:
        wide = ranker.topk(a, max(wide_k, k), follows=f, n_threads=args.threads, progress=pb)
    t_wide = time.perf_counter() - t0
    timings += [(f"Ranker.topk k={k}", t_rank), (f"Ranker.topk K'={max(wide_k, k)}", t_wide)]
    counts_u = np.asarray(res.counts)
    fcsr = None if f is None else sp.csr_array(f)
    # the ranked (user, merchant) pairs of the first _CHECK_USERS users, for the checks below
    n_check = min(n_u, _CHECK_USERS)
    valid = np.arange(res.indices.shape[1])[None, :] < counts_u[:n_check, None]
    pu, pm = np.nonzero(valid)[0], np.asarray(res.indices[:n_check])[valid].astype(np.int64)
    followed = np.zeros(pu.shape[0], dtype=bool)
    if fcsr is not None and pu.size:
        followed = np.asarray(fcsr[pu, pm]).ravel() > 0
    shown = [int(u) for u in np.flatnonzero(counts_u > 0)[: args.show]]
    if followed.any() and len(shown) > 1 and int(pu[np.argmax(followed)]) not in shown:
        shown[-1] = int(pu[np.argmax(followed)])  # show one user whose list holds a followed merchant
    for u in shown:
        u = int(u)
        n = int(counts_u[u])
        who = f" ({d.user_name(u)})" if d.user_name else ""
        lo, hi = a.indptr[u], a.indptr[u + 1]
        top_tags = a.indices[lo:hi][np.argsort(-a.data[lo:hi], kind="stable")[:5]].tolist()
        tag_names = [d.tag_name(t) if d.tag_name else str(t) for t in top_tags]
        print(f"\nuser {u}{who}: top {n} of k={k}; strongest {tws} {', '.join(tag_names)}")
        print(f"  {'rank':>4}  {mw:>9}  {'score':>10}  {'interest':>9}  {'follow':>7}  {'trust':>6}  {'weight':>6}")
        fids = fw = None
        if fcsr is not None:
            flo, fhi = fcsr.indptr[u], fcsr.indptr[u + 1]
            fids, fw = fcsr.indices[flo:fhi], fcsr.data[flo:fhi]
        parts = ranker.explain(a.indices[lo:hi], a.data[lo:hi], res.indices[u, :n], follow_ids=fids, follow_weights=fw)
        for r in range(n):
            m = int(res.indices[u, r])
            name = f"  {d.merchant_name(m)}" if d.merchant_name else ""
            tr = 1.0 if trust is None else float(trust[m])
            print(
                f"  {r + 1:>4}  {m:>9}  {float(res.scores[u, r]):>10.4f}  {float(parts['interest'][r]):>9.4f}  "
                f"{float(parts['follow'][r]):>7.4f}  {tr:>6.3f}  {float(parts['weight'][r]):>6.3f}{name}"
            )
    # Every ranked merchant shares a tag with the user or is followed; with generated data, check
    # against the latent interests the events were drawn from.
    bs = sp.csr_array(b.T)  # merchants x tags
    reached = np.asarray(sp.csr_array(a)[pu].multiply(bs[pm]).sum(axis=1)).ravel() > 0 if pu.size else followed
    reached |= followed
    among = f" (first {n_check:,} users)" if n_check < n_u else ""
    print(
        f"\nrelevance: {int(reached.sum()):,} of {pu.size:,} ranked (user, {mw}) pairs{among} share a {tw} with "
        "the user's profile or are followed"
    )
    if d.interests is not None and pu.size:
        latent = sp.csr_array(d.interests)
        bstruct = sp.csr_array((np.ones(bs.nnz), bs.indices, bs.indptr), shape=bs.shape)
        hit = np.asarray(latent[pu].multiply(bstruct[pm]).sum(axis=1)).ravel() > 0
        rng = np.random.default_rng(args.seed)
        rm = rng.integers(0, n_m, pu.size)
        base = np.asarray(latent[pu].multiply(bstruct[rm]).sum(axis=1)).ravel() > 0
        print(
            f"  {hit.mean():.1%} of them sell in one of the user's latent interests (generated truth); "
            f"random {mws}: {base.mean():.1%}"
        )
    print(
        f"\nranking: Ranker.topk ({'all cores' if args.threads is None else f'{args.threads} thread(s)'}) "
        f"{t_rank:.3f} s for {n_u:,} users at k={k}, {t_wide:.3f} s at K'={max(wide_k, k)}"
    )

    # 5. Exposure.
    plain = ec.gini(ec.exposure(res))
    if wide_k > k:
        target = max(plain - 0.2, 0.0)
        t0 = time.perf_counter()
        with bar("exposure re-ranking") as pb:
            _, report = ec.rerank_exposure(wide, k, target_gini=target, n_threads=args.threads)
            pb.update(1, 1)
        t_fair = time.perf_counter() - t0
        timings.append(("rerank_exposure", t_fair))
        print(
            f"\nexposure (k={k} from K'={wide_k} candidates, target Gini {target:.3f}, {t_fair:.2f} s):\n  "
            + str(report).replace("\n", "\n  ")
        )
    else:
        cov = int(np.count_nonzero(ec.exposure(res)))
        print(f"\nexposure: Gini {plain:.4f}, coverage {cov:,} {mws} (K' = k: nothing to re-rank)")

    status = 0
    if not args.no_scipy:
        a2, b2 = _scipy_problem(a, b, f, ranker)
        t0 = time.perf_counter()
        with bar("scipy baseline") as pb:
            s_idx, s_sc = scipy_topk(a2, b2, k)
            pb.update(1, 1)
        t_sp = time.perf_counter() - t0
        timings.append((f"scipy baseline k={k}", t_sp))
        bad = compare_topk(res.indices, res.scores, s_idx, s_sc)
        # the same call on one thread, for a like-for-like comparison with scipy's single thread
        t_one = t_rank
        if args.threads != 1:
            t0 = time.perf_counter()
            with bar("ranking, 1 thread", n_u) as pb:
                one = ranker.topk(a, k, follows=f, n_threads=1, progress=pb)
            t_one = time.perf_counter() - t0
            timings.append((f"Ranker.topk k={k}, 1 thread", t_one))
            bad += compare_topk(res.indices, res.scores, one.indices, one.scores)
        line = (
            f"\nscipy (A @ B + F, weights folded in; chunked product + argpartition, 1 thread): {t_sp:.3f} s; "
            f"ecomcore, 1 thread: {t_one:.3f} s, speed-up {t_sp / max(t_one, 1e-12):.1f}x"
        )
        if args.threads != 1:
            many = "all cores" if args.threads is None else f"{args.threads} threads"
            line += f"; {many}: {t_rank:.3f} s, speed-up {t_sp / max(t_rank, 1e-12):.1f}x"
        print(line)
        if bad:
            print(f"top-k sets agree: NO ({bad:,} of {n_u:,} users differ)")
            status = 1
        else:
            print(f"top-k sets agree: yes (all {n_u:,} users, ties at the k-th score allowed)")
    print("\ntimings:")
    for name, secs in timings:
        print(f"  {name:<34} {secs:8.3f} s")
    return status


def _demo(args: argparse.Namespace) -> int:
    from ecomcore.progress import progress_bar

    def bar(label: str, total: Optional[int] = None) -> Any:
        return progress_bar(label, total, quiet=args.quiet)

    real = args.olist is not None or args.taobao is not None
    if real:
        given = [o for o, v in (("--users", args.users), ("--tags", args.tags), ("--merchants", args.merchants)) if v]
        if given or args.sparse:
            print(
                f"ecomcore demo: {', '.join(given + (['--sparse'] if args.sparse else []))} "
                "only apply to the generated market",
                file=sys.stderr,
            )
            return 2
        try:
            data = _olist(args, bar) if args.olist is not None else _taobao(args, bar)
        except (OSError, ValueError) as e:
            print(f"ecomcore demo: cannot read the data: {e}", file=sys.stderr)
            return 1
    else:
        data = _generated(args, bar)
    return _pipeline(data, args, bar)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ecomcore`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success; 1 when the demo's ecomcore and scipy results disagree, the
        demo's real data cannot be read, or a batch command (``profiles``, ``trust``, ``rank``)
        meets a bad input file (or ``audience``); 2 on a usage error (argparse exits with 2 itself).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except BrokenPipeError:  # output piped into a reader that stopped (``ecomcore demo | head``)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
