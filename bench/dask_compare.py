"""Side-by-side timing: batch top-k on a 2-worker Dask LocalCluster vs the in-process call.

Usage (from the repository root, with ecomcore built in place and the ``dask`` extra)::

    python bench/dask_compare.py [--quick] [--users N] [--k 10] [--reps 3]

Same market (the sparse-product regime of ``bench/compare.py``: 5,000 tags, 100,000 merchants),
same Ranker, same process for the baselines:

* ``in-process, n threads``: ``ranker.topk(A, k, n_threads=n)`` for n = 1 and 2 (all cores);
* ``rank_dask``: :func:`ecomcore.dask.rank_dask` on ``LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True)``, A in the client's memory, the TopK gathered back
  (includes broadcasting the merchant side, shipping A and gathering the result);
* ``rank_dask (pre-scattered)``: the same with the merchant side broadcast beforehand
  (:func:`ecomcore.dask.scatter_ranker`), as a nightly job ranking several k would;
* ``rank_dask_to_files``: workers write one ``.npz`` per partition (nothing gathered).

Overhead = Dask median / in-process (2 threads) median - 1.  Target: <= 25 % at 2M users.  The
script first checks that the Dask result is bit-identical to the in-process one (exit status 1
otherwise).  The machine may be shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Sequence

import _path  # noqa: F401  (a checkout built in place wins over an installed ecomcore)
import numpy as np

import ecomcore as ec
from ecomcore.datasets import synthetic_market

TARGET = 0.25


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200k users, 2 repetitions")
    p.add_argument("--users", type=int, default=None, help="number of users (default 2,000,000)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (median)")
    p.add_argument("--partition-rows", type=int, default=None, help="rows per partition (default: the module's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.users is None:
        args.users = 200_000 if args.quick else 2_000_000
    if args.reps is None:
        args.reps = 2 if args.quick else 3
    if args.users < 1 or args.k < 1 or args.reps < 1:
        p.error("--users, --k and --reps take positive integers")
    return args


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        return "load average n/a"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print a markdown table.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when the Dask result differs from the in-process one.
    """
    args = _parse(argv)
    from distributed import Client, LocalCluster

    import ecomcore.dask as ed

    part_rows = args.partition_rows or ed.DEFAULT_PARTITION_ROWS
    print(f"# Dask vs in-process batch top-k ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(f"- {_load()} (before)")
    t0 = time.perf_counter()
    m = synthetic_market(args.users, 5_000, 100_000, seed=args.seed, shared_popularity=False)
    a = m.user_tags
    ranker = ec.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned)
    print(
        f"- market: {args.users:,} users x 5,000 tags x 100,000 merchants (sparse regime), nnz(A) = {a.nnz:,} "
        f"({(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes) / 2**20:.0f} MiB), built in "
        f"{time.perf_counter() - t0:.1f} s; k = {args.k}, partition_rows = {part_rows:,}, reps = {args.reps}"
    )
    ref = ranker.topk(a, args.k, n_threads=2)
    t0 = time.perf_counter()
    ranker.topk(a, args.k, n_threads=1)
    t_in1 = time.perf_counter() - t0
    out_dir = tempfile.mkdtemp(prefix="ecomcore-dask-bench-")
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    status = 0
    names = [
        "in-process, 2 threads (baseline)",
        "rank_dask (broadcast + ship A + gather)",
        "rank_dask, merchant side pre-scattered",
        "rank_dask_to_files (workers write npz)",
    ]
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        got = ed.rank_dask(client, a, ranker, args.k, partition_rows=part_rows)  # also the warm-up
        same = (
            np.array_equal(got.indices, ref.indices)
            and np.array_equal(got.scores, ref.scores)
            and np.array_equal(got.counts, ref.counts)
        )
        print(f"- Dask result bit-identical to the in-process one: {same}")
        if not same:
            status = 1
        del got
        sr = ed.scatter_ranker(client, ranker)
        calls = [
            lambda: ranker.topk(a, args.k, n_threads=2),
            lambda: ed.rank_dask(client, a, ranker, args.k, partition_rows=part_rows),
            lambda: ed.rank_dask(client, a, sr, args.k, partition_rows=part_rows),
            lambda: ed.rank_dask_to_files(client, a, sr, args.k, out_dir, partition_rows=part_rows),
        ]
        # interleaved repetitions: load from other processes hits every method alike
        for _ in range(args.reps):
            for name, fn in zip(names, calls):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        sr.release()
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    base = np.array(times[names[0]])
    t_in2 = float(np.median(base))
    print()
    print("| method | median s | median / baseline | median of per-round ratios |")
    print("|---|---:|---:|---:|")
    print(f"| in-process, 1 thread (one run) | {t_in1:.2f} | {t_in1 / t_in2:.2f}x | |")
    for name in names:
        t = np.array(times[name])
        med = float(np.median(t))
        ratio = float(np.median(t / base))
        print(f"| {name} | {med:.2f} | {med / t_in2:.2f}x ({(med / t_in2 - 1) * 100:+.0f} %) | {ratio:.2f}x |")
    t_d = float(np.median(times[names[1]]))
    overhead = t_d / t_in2 - 1
    print()
    print(f"- {_load()} (after)")
    verdict = "met" if overhead <= TARGET else "NOT met"
    print(f"- Target: Dask overhead <= {TARGET:.0%} at 2M users; measured {overhead:+.0%} ({verdict}).")
    return status


if __name__ == "__main__":
    sys.exit(main())
