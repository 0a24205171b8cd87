"""Thread scaling of the fused top-k, side by side with sparse_dot_topn, in one process.

    python bench/scaling.py [--threads 1 2 4 8 16] [--k 10] [--quick]

For each regime (dense: 20k users x 2k tags x 20k merchants; sparse: 200k x 5k x 100k) prints
the median seconds of ``Ranker.topk`` and of sparse_dot_topn's ``sp_matmul_topn`` (on the same
folded problem, threshold -inf) at each thread count, and the speed-up over 1 thread.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from _common import FULL_SIZES, QUICK_SIZES, median_time, problem, sparse_dot_topn  # noqa: E402

import ecomcore as ec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the scaling benchmark and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    sdt = sparse_dot_topn()
    print(f"cores usable: {len(os.sched_getaffinity(0))}; k={args.k}; median of {args.reps}")
    print("| regime | users | threads | ecomcore s | speed-up | sparse_dot_topn s | speed-up | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("dense", "sparse"):
        p = problem(name, sizes)
        m = p.market
        ranker = ec.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned)
        a_mat = sp.csr_matrix(m.user_tags)  # sparse_dot_topn takes spmatrix only
        bp = sp.csr_matrix(m.folded_merchant_tags())
        base_ours = base_theirs = None
        for t in args.threads:
            ours = median_time(
                lambda t=t, r=ranker, a=m.user_tags: r.topk(a, k=args.k, n_threads=t), args.reps, 1
            )
            theirs = float("nan")
            if sdt is not None:
                theirs = median_time(
                    lambda t=t, a=a_mat, b=bp: sdt(a, b, top_n=args.k, threshold=-np.inf, sort=True, n_threads=t),
                    args.reps,
                    0,
                )
            base_ours = base_ours or ours
            base_theirs = base_theirs or theirs
            print(
                f"| {name} | {m.user_tags.shape[0]:,} | {t} | {ours:.3f} | {base_ours / ours:.2f}x | "
                f"{theirs:.3f} | {base_theirs / theirs:.2f}x | {theirs / ours:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
