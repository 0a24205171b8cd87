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
    demo.add_argument(
        "--threads", type=_positive_int, default=None, help="threads (default: all cores)"
    )
    demo.add_argument(
        "--sparse",
        action="store_true",
        help="independent tag popularity on the merchant side (users reach a few %% of "
        "merchants) instead of shared popularity (users reach most merchants)",
    )
    demo.add_argument(
        "--show", type=_non_negative_int, default=3, help="users whose top-k is printed (3)"
    )
    demo.add_argument("--no-scipy", action="store_true", help="skip the scipy comparison")

    sub.add_parser("config", help="print the build configuration")
    return parser


def _demo(args: argparse.Namespace) -> int:
    import ecomcore as ec
    from ecomcore.datasets import compare_topk, scipy_topk, synthetic_market

    regime = "sparse (independent popularity)" if args.sparse else "dense (shared popularity)"
    t0 = time.perf_counter()
    market = synthetic_market(
        args.users, args.tags, args.merchants, seed=args.seed, shared_popularity=not args.sparse
    )
    t_gen = time.perf_counter() - t0
    print(
        f"market: {market.n_users:,} users x {market.n_tags:,} tags x "
        f"{market.n_merchants:,} merchants, {regime}, seed {args.seed}; "
        f"{int(market.banned.sum()):,} banned; generated in {t_gen:.2f} s"
    )

    ranker = ec.Ranker(market.merchant_tags, trust=market.trust, banned=market.banned)
    ranker.topk(market.user_tags[:1], args.k, n_threads=1)  # warm-up (workspace, imports)
    t0 = time.perf_counter()
    res = ranker.topk(market.user_tags, args.k, n_threads=args.threads)
    t_ec = time.perf_counter() - t0
    threads = "all cores" if args.threads is None else f"{args.threads} thread(s)"

    for u in range(min(args.show, market.n_users)):
        n = int(res.counts[u])
        print(f"\nuser {u}: top {n} of k={args.k}")
        print(f"  {'rank':>4}  {'merchant':>9}  {'score':>10}  {'trust':>6}")
        for r in range(n):
            m = int(res.indices[u, r])
            print(
                f"  {r + 1:>4}  {m:>9}  {float(res.scores[u, r]):>10.4f}  "
                f"{float(market.trust[m]):>6.3f}"
            )

    print(f"\necomcore Ranker.topk ({threads}): {t_ec:.3f} s for {market.n_users:,} users")
    if args.no_scipy:
        return 0
    folded = market.folded_merchant_tags()
    t0 = time.perf_counter()
    s_idx, s_sc = scipy_topk(market.user_tags, folded, args.k)
    t_sp = time.perf_counter() - t0
    print(f"scipy (chunked product + argpartition, 1 thread): {t_sp:.3f} s")
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
        Exit status: 0 on success, 1 when the demo's ecomcore and scipy results disagree,
        2 on a usage error (argparse exits with 2 itself).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "config":
        import ecomcore as ec

        ec.show_config()
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
