"""Side-by-side timing of ecomcore against scipy and sparse_dot_topn on the same problem.

Usage (from the repository root, with ecomcore built or installed)::

    python bench/compare.py [--quick] [--threads 1 2] [--k 10 100] [--regime dense sparse]

Every method gets the same *folded* problem: ``B' = B @ diag(w)`` with ``w = trust`` and banned
merchants zeroed (zeros eliminated); ecomcore gets ``B``, ``trust`` and ``banned`` through
:class:`ecomcore.Ranker` and folds them itself.  Before timing, the script checks that all
methods return the same top-k sets (up to ties within float tolerance at the k-th score) and
exits with status 1 when they do not.  It then prints a markdown table of median times,
multiply-adds per second and speed ratios, the ``topk_one`` latency, and the targets.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Dict, List, Sequence

import numpy as np
import scipy
import scipy.sparse as sp
from _common import (
    FULL_SIZES,
    QUICK_SIZES,
    Problem,
    csr_to_padded,
    median_time,
    problem,
    sparse_dot_topn,
)

import ecomcore as ec
from ecomcore.datasets import compare_topk, scipy_topk

TARGETS = (
    "Targets (1 thread, k=10, both regimes): ecomcore >= 3x sparse_dot_topn and >= 5x scipy; "
    "k=100 no slower than k=10 by more than 30 %; 2 threads >= 1.8x 1 thread; "
    "topk_one median < 100 us on the sparse market (100k merchants)."
)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    p.add_argument("--k", type=int, nargs="+", default=[10, 100], help="k values")
    p.add_argument("--regime", nargs="+", default=["dense", "sparse"], choices=["dense", "sparse"])
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (median)")
    p.add_argument("--one-calls", type=int, default=2000, help="topk_one calls to time")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if any(t < 1 for t in args.threads) or any(k < 1 for k in args.k):
        p.error("--threads and --k take positive integers")
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    return args


def _check(
    prob: Problem, ranker: ec.Ranker, k: int, threads: List[int], sdt, a_mat, b_mat
) -> List[str]:
    """Run every method once; return a list of problems (empty when all agree)."""
    errors: List[str] = []
    ref = ranker.topk(prob.user_tags, k, n_threads=threads[0])
    ref_idx = ref.indices.astype(np.int64)
    for t in threads[1:]:
        other = ranker.topk(prob.user_tags, k, n_threads=t)
        if not (
            np.array_equal(other.indices, ref.indices)
            and np.array_equal(other.scores, ref.scores)
            and np.array_equal(other.counts, ref.counts)
        ):
            errors.append(f"ecomcore n_threads={t} differs from n_threads={threads[0]}")
    w_sp = sp.csr_array(prob.user_tags)
    s_idx, s_sc = scipy_topk(w_sp, prob.folded, k)
    bad = compare_topk(ref_idx, ref.scores, s_idx, s_sc)
    if bad:
        errors.append(f"scipy: {bad} of {prob.n_users} rows differ from ecomcore")
    if sdt is not None:
        for t in threads:
            c = sdt(a_mat, b_mat, top_n=k, threshold=-np.inf, sort=True, n_threads=t)
            d_idx, d_sc = csr_to_padded(c, ref.width)
            bad = compare_topk(ref_idx, ref.scores, d_idx, d_sc)
            if bad:
                errors.append(f"sparse_dot_topn n_threads={t}: {bad} of {prob.n_users} rows differ")
    return errors


def _fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _fmt_rate(flops: int, x: float | None) -> str:
    return "—" if x is None else f"{flops / x / 1e9:.2f}"


def _fmt_ratio(num: float | None, den: float | None) -> str:
    return "—" if num is None or den is None else f"{num / den:.2f}x"


def _topk_one(prob: Problem, ranker: ec.Ranker, k: int, calls: int, seed: int) -> Dict:
    """Median latency of Ranker.topk_one vs a scipy one-row product + argpartition."""
    rng = np.random.default_rng(seed)
    users = rng.choice(prob.n_users, size=min(calls, prob.n_users), replace=False)
    rows = [prob.user_row(int(u)) for u in users]
    full = ranker.topk(prob.user_tags[np.sort(users)], k, n_threads=1)
    order = np.argsort(users)
    # agreement with the batch call (same kernel, one row)
    one_idx = np.empty((users.size, full.width), dtype=np.int64)
    one_sc = np.empty((users.size, full.width), dtype=full.scores.dtype)
    for i, (ids, wts) in enumerate(rows):
        r = ranker.topk_one(ids, wts, k)
        one_idx[i] = r.indices[0]
        one_sc[i] = r.scores[0]
    mismatch = compare_topk(one_idx[order], one_sc[order], full.indices, full.scores)

    ns: List[int] = []
    for ids, wts in rows:
        t0 = time.perf_counter_ns()
        ranker.topk_one(ids, wts, k)
        ns.append(time.perf_counter_ns() - t0)
    one_us = float(np.median(ns)) / 1e3

    b = prob.folded
    n_tags = prob.user_tags.shape[1]
    one_rows = [sp.csr_array((w, i, np.array([0, i.size])), shape=(1, n_tags)) for i, w in rows]
    ns = []
    for r in one_rows:
        t0 = time.perf_counter_ns()
        c = r @ b
        v = c.data
        if v.size > k:
            part = np.argpartition(v, v.size - k)[v.size - k :]
            _ = c.indices[part[np.argsort(-v[part], kind="stable")]]
        else:
            _ = c.indices[np.argsort(-v, kind="stable")]
        ns.append(time.perf_counter_ns() - t0)
    scipy_us = float(np.median(ns)) / 1e3
    return {
        "one_us": one_us,
        "scipy_us": scipy_us,
        "calls": len(rows),
        "mismatch": mismatch,
        "n_merchants": prob.n_merchants,
    }


def _time_regime(
    name: str,
    prob: Problem,
    ranker: ec.Ranker,
    args: argparse.Namespace,
    sdt,
    a_mat: sp.csr_matrix,
    b_mat: sp.csr_matrix,
    results: Dict,
) -> List[str]:
    """Time every method on one regime; fill ``results``; return the table rows."""
    rows: List[str] = []
    n_u = prob.n_users
    flops = prob.multiply_adds
    for k in args.k:
        t_scipy = median_time(
            lambda: scipy_topk(prob.user_tags, prob.folded, k),  # noqa: B023
            1 if args.quick else max(1, min(args.reps, 3)),
        )
        for t in args.threads:
            t_ec = median_time(
                lambda: ranker.topk(prob.user_tags, k, n_threads=t),  # noqa: B023
                args.reps,
                warmup=1,
            )
            t_sdt = None
            if sdt is not None:
                t_sdt = median_time(
                    lambda: sdt(a_mat, b_mat, top_n=k, threshold=-np.inf, sort=True, n_threads=t),  # noqa: B023, E501
                    args.reps,
                    warmup=1,
                )
            results[(name, k, t)] = (t_ec, t_scipy, t_sdt)
            rows.append(
                f"| {name} | {n_u:,} | {k} | {t} | {_fmt_s(t_ec)} | {_fmt_s(t_scipy)} | "
                f"{_fmt_s(t_sdt)} | {_fmt_rate(flops, t_ec)} | {_fmt_rate(flops, t_scipy)} "
                f"| {_fmt_rate(flops, t_sdt)} | {_fmt_ratio(t_scipy, t_ec)} "
                f"| {_fmt_ratio(t_sdt, t_ec)} |"
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; return the process exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when the methods disagree on a top-k set.
    """
    args = _parse(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    sdt = sparse_dot_topn()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    print(
        f"# ecomcore {ec.__version__} vs scipy {scipy.__version__}"
        + ("" if sdt is None else f" vs sparse_dot_topn {_sdt_version()}")
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {cores} usable cores, "
        f"{'quick' if args.quick else 'full'} sizes, median of {args.reps} runs "
        f"(scipy: {1 if args.quick else min(args.reps, 3)})"
    )
    if sdt is None:
        print(
            "sparse_dot_topn is not installed: its columns are skipped "
            "(pip install sparse-dot-topn)."
        )
    print()

    rows: List[str] = []
    results: Dict = {}
    failed = False
    one = None
    for name in args.regime:
        t0 = time.perf_counter()
        prob = problem(name, sizes, seed=args.seed)
        gen_s = time.perf_counter() - t0
        n_u, n_t, n_m = prob.n_users, prob.user_tags.shape[1], prob.n_merchants
        print(
            f"{name}: {n_u:,} users x {n_t:,} tags x {n_m:,} merchants, "
            f"A nnz {prob.user_tags.nnz:,}, B nnz {prob.merchant_tags.nnz:,}, "
            f"{prob.multiply_adds:,} multiply-adds (generated in {gen_s:.1f}s)"
        )
        ranker = ec.Ranker(prob.merchant_tags, trust=prob.trust, banned=prob.banned)
        a_mat = sp.csr_matrix(prob.user_tags)
        b_mat = sp.csr_matrix(prob.folded)
        for k in args.k:
            errors = _check(prob, ranker, k, args.threads, sdt, a_mat, b_mat)
            if errors:
                failed = True
                for e in errors:
                    print(f"MISMATCH {name} k={k}: {e}")
        if failed:
            continue
        print(
            f"  check: ecomcore, scipy{', sparse_dot_topn' if sdt else ''} agree "
            f"(k={args.k}, threads={args.threads})"
        )
        rows += _time_regime(name, prob, ranker, args, sdt, a_mat, b_mat, results)
        if name == "sparse":
            one = _topk_one(prob, ranker, 10, args.one_calls, args.seed)
            if one["mismatch"]:
                failed = True
                print(f"MISMATCH sparse topk_one: {one['mismatch']} rows differ from topk")

    if failed:
        print("\nFAILED: the methods disagree (see MISMATCH lines); no timings reported.")
        return 1

    print()
    print(
        "| regime | users | k | threads | ecomcore s | scipy s | sparse_dot_topn s "
        "| ecomcore GMA/s | scipy GMA/s | sdt GMA/s | vs scipy | vs sdt |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r)
    print()
    print(
        "GMA/s: 1e9 multiply-adds per second (sum over users of the merchants holding each of "
        "their tags); scipy is single-threaded (same time in every threads row); "
        "'vs' = their time / ecomcore time."
    )
    if one is not None:
        print(
            f"\ntopk_one (sparse market, {one['n_merchants']:,} merchants, k=10, "
            f"{one['calls']} users): median {one['one_us']:.1f} us per call vs scipy one-row "
            f"product + argpartition {one['scipy_us']:.1f} us "
            f"({one['scipy_us'] / one['one_us']:.1f}x)"
        )
    print()
    print(TARGETS)
    for line in _target_lines(results, args, one):
        print(f"- {line}")
    return 0


def _target_lines(results: Dict, args: argparse.Namespace, one: Dict | None) -> List[str]:
    out: List[str] = []

    def mark(ok: bool) -> str:
        return "meets" if ok else "BELOW"

    for name in args.regime:
        r = results.get((name, 10, 1))
        if r is None:
            continue
        t_ec, t_scipy, t_sdt = r
        s = f"{name}, 1 thread, k=10: {t_scipy / t_ec:.2f}x scipy ({mark(t_scipy / t_ec >= 5)})"
        if t_sdt is not None:
            s += f", {t_sdt / t_ec:.2f}x sparse_dot_topn ({mark(t_sdt / t_ec >= 3)})"
        out.append(s)
        r100 = results.get((name, 100, 1))
        if r100 is not None:
            slow = r100[0] / t_ec - 1
            out.append(
                f"{name}, 1 thread: k=100 takes {100 * slow:+.0f} % vs k=10 "
                f"({mark(slow <= 0.30)} the <= +30 % aim)"
            )
        r2 = results.get((name, 10, 2))
        if r2 is not None:
            sp2 = t_ec / r2[0]
            out.append(f"{name}, k=10: 2 threads {sp2:.2f}x 1 thread ({mark(sp2 >= 1.8)})")
    if one is not None:
        out.append(f"topk_one: {one['one_us']:.1f} us median ({mark(one['one_us'] < 100)})")
    return out


def _sdt_version() -> str:
    try:
        from importlib.metadata import version

        return version("sparse-dot-topn")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main())
