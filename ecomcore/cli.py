"""The ``ecomcore`` command line.

``ecomcore demo`` ranks a generated market (see :func:`ecomcore.datasets.synthetic_market`),
prints a few users' top-k and times ecomcore against the plain scipy approach (product in row
chunks, then ``argpartition`` per row) on the same problem, checking that both agree.
``ecomcore config`` prints the build configuration; ``ecomcore --version`` the version.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from ecomcore import __version__

    parser = argparse.ArgumentParser(
        prog="ecomcore",
        description="Fused sparse interest x trust top-k ranking.",
    )
    parser.add_argument("--version", action="version", version=f"ecomcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="rank a generated market and compare with scipy",
        description=(
            "Generate a Zipf-like market, rank every user with ecomcore.Ranker, print a few "
            "users' top-k and the timing against scipy (chunked product + argpartition)."
        ),
    )
    demo.add_argument("--users", type=_positive_int, default=10_000, help="default 10000")
    demo.add_argument("--tags", type=_positive_int, default=2_000, help="default 2000")
    demo.add_argument("--merchants", type=_positive_int, default=20_000, help="default 20000")
    demo.add_argument("--k", type=_positive_int, default=10, help="results per user (10)")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="market seed (0)")
    demo.add_argument("--threads", type=_positive_int, default=None, help="threads (default: all cores)")
    demo.add_argument(
        "--sparse",
        action="store_true",
        help="independent tag popularity on the merchant side (users reach a few %% of "
        "merchants) instead of shared popularity (users reach most merchants)",
    )
    demo.add_argument("--show", type=_non_negative_int, default=3, help="users whose top-k is printed (3)")
    demo.add_argument("--no-scipy", action="store_true", help="skip the scipy comparison")

    sub.add_parser("config", help="print the build configuration")

    from ecomcore.cli_batch import add_batch_parsers

    add_batch_parsers(sub, _positive_int)
    return parser


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    import scipy.sparse as sp

    import ecomcore as ec
    from ecomcore.datasets import (
        compare_topk,
        scipy_topk,
        synthetic_identity_links,
        synthetic_market,
        synthetic_trust_events,
    )

    regime = "sparse (independent popularity)" if args.sparse else "dense (shared popularity)"
    t0 = time.perf_counter()
    market = synthetic_market(args.users, args.tags, args.merchants, seed=args.seed, shared_popularity=not args.sparse)
    n_m = market.n_merchants
    t_gen = time.perf_counter() - t0
    print(
        f"market: {market.n_users:,} users x {market.n_tags:,} tags x "
        f"{n_m:,} merchants, {regime}, seed {args.seed}; generated in {t_gen:.2f} s"
    )

    # 1. Trust: fold generated merchant events (latent quality = the market's trust column).
    now = 1_767_225_600.0  # 2026-01-01, a fixed moment so that the demo is reproducible
    indicators = ec.default_indicators()
    events = synthetic_trust_events(
        market.trust,
        indicators,
        n_events=30 * n_m,
        start=now - 180 * 86400.0,
        buyers=5 * n_m,
        seed=args.seed,
    )
    guarantee = np.random.default_rng(args.seed).random((n_m, 3)) < 0.3
    model = ec.TrustModel(indicators, n_merchants=n_m)
    t0 = time.perf_counter()
    state = model.fold(events)
    t_fold = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = model.score(state, now, guarantee=guarantee)
    t_score = time.perf_counter() - t0
    n_ev = len(events["merchant"])
    print(
        f"\ntrust: {n_ev:,} merchant events ({len(indicators)} indicators, buyer dedupe) folded in "
        f"{t_fold:.2f} s ({n_ev / max(t_fold, 1e-12) / 1e6:.1f}M events/s), scored in {t_score:.3f} s"
    )
    top = np.lexsort((np.arange(n_m), -scores.index))[:5]
    print(f"  {'rank':>4}  {'merchant':>9}  {'index':>6}  {'confidence':>10}  {'boost':>5}")
    for r, m in enumerate(top):
        print(
            f"  {r + 1:>4}  {int(m):>9}  {scores.index[m]:>6.3f}  {scores.confidence[m]:>10.3f}  "
            f"{scores.boost[m]:>5.2f}"
        )
    well_known = np.flatnonzero(scores.confidence >= np.median(scores.confidence))
    worst = int(well_known[np.argmin(scores.index[well_known])])
    print(f"  what merchant {worst} (index {scores.index[worst]:.3f}) should improve first:")
    for item in scores.explain(worst)[:3]:
        if item.kind == "veto":
            day = time.strftime("%Y-%m-%d", time.gmtime(item.value))
            print(f"    {'veto':<28} confirmed violation on {day} caps the index (costs {item.impact:.3f})")
        else:
            print(
                f"    {item.indicator:<28} own {item.value:8.3f} vs category norm {item.norm:8.3f} "
                f"(costs {item.impact:.3f} of the index)"
            )

    # 2. Governance: banned stores and every store linked to them through shared identity keys.
    stores, keys = synthetic_identity_links(n_m, seed=args.seed)
    gov = ec.IdentityGraph()
    gov.link(stores, keys)
    gov.ban(np.flatnonzero(market.banned), reason="counterfeit goods")
    blocked = gov.banned_mask(n_m)
    print(
        f"\ngovernance: {int(market.banned.sum()):,} banned stores; {int(blocked.sum()):,} stores blocked "
        f"in all (linked to a banned one through shared identity keys)"
    )
    if market.banned.any():
        b = int(np.flatnonzero(market.banned)[0])
        applicant = [("phone", b), ("device", "new-device-1")]
        print(f"  new store presenting {applicant}: blocked = {gov.blocked(applicant)}")
        print("  " + str(gov.why(key=("phone", b))).replace("\n", "\n  "))
        fresh = [("phone", "new-phone-2"), ("device", "new-device-2")]
        print(f"  new store presenting {fresh}: blocked = {gov.blocked(fresh)}")

    # 3. Ranking: interest x trust^beta x guarantee boost, blocked stores removed.
    ranker = ec.Ranker(market.merchant_tags, trust=scores.index, boost=scores.boost, banned=blocked)
    ranker.topk(market.user_tags[:1], args.k, n_threads=1)  # warm-up (workspace, imports)
    t0 = time.perf_counter()
    res = ranker.topk(market.user_tags, args.k, n_threads=args.threads)
    t_ec = time.perf_counter() - t0
    threads = "all cores" if args.threads is None else f"{args.threads} thread(s)"
    a = sp.csr_array(market.user_tags)
    for u in range(min(args.show, market.n_users)):
        n = int(res.counts[u])
        print(f"\nuser {u}: top {n} of k={args.k}")
        print(f"  {'rank':>4}  {'merchant':>9}  {'score':>10}  {'interest':>9}  {'trust':>6}  {'weight':>6}")
        lo, hi = a.indptr[u], a.indptr[u + 1]
        parts = ranker.explain(a.indices[lo:hi], a.data[lo:hi], res.indices[u, :n])
        for r in range(n):
            m = int(res.indices[u, r])
            print(
                f"  {r + 1:>4}  {m:>9}  {float(res.scores[u, r]):>10.4f}  {float(parts['interest'][r]):>9.4f}  "
                f"{scores.index[m]:>6.3f}  {float(parts['weight'][r]):>6.3f}"
            )
    print(f"\necomcore Ranker.topk ({threads}): {t_ec:.3f} s for {market.n_users:,} users")

    # 4. Fair exposure: re-rank wider candidate lists to a Gini target.
    wide_k = min(10 * args.k, n_m)
    if wide_k > args.k:
        wide = ranker.topk(market.user_tags, wide_k, n_threads=args.threads)
        plain = ec.gini(ec.exposure(res))
        target = max(plain - 0.2, 0.0)
        t0 = time.perf_counter()
        fair, report = ec.rerank_exposure(wide, args.k, target_gini=target, n_threads=args.threads)
        t_fair = time.perf_counter() - t0
        print(
            f"\nfair exposure (k={args.k} from {wide_k} candidates, target Gini {target:.3f}, "
            f"{t_fair:.2f} s):\n  " + str(report).replace("\n", "\n  ")
        )

    if args.no_scipy:
        return 0
    b = market.merchant_tags
    w = ranker.merchant_weight.astype(b.dtype)
    folded = sp.csr_array((b.data * w[b.indices], b.indices.copy(), b.indptr.copy()), shape=b.shape)
    folded.eliminate_zeros()
    t0 = time.perf_counter()
    s_idx, s_sc = scipy_topk(market.user_tags, folded, args.k)
    t_sp = time.perf_counter() - t0
    print(f"\nscipy (chunked product + argpartition, 1 thread): {t_sp:.3f} s")
    print(f"speed-up: {t_sp / max(t_ec, 1e-12):.1f}x")
    bad = compare_topk(res.indices, res.scores, s_idx, s_sc)
    if bad:
        print(f"top-k sets agree: NO ({bad:,} of {market.n_users:,} users differ)")
        return 1
    print(f"top-k sets agree: yes (all {market.n_users:,} users, ties at the k-th score allowed)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ecomcore`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 1 when the demo's ecomcore and scipy results disagree or
        a batch command (``profiles``, ``trust``, ``rank``) meets a bad input file, 2 on a usage
        error (argparse exits with 2 itself).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "config":
        import ecomcore as ec

        ec.show_config()
        return 0
    if args.command in ("profiles", "trust", "rank"):
        from ecomcore.cli_batch import run_batch

        return run_batch(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
