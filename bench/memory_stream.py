"""Peak memory while streaming many users through ``Ranker.iter_topk`` (issue 10, item 3).

Usage (from the repository root, with ecomcore built or installed; Linux only)::

    nice -n 10 python bench/memory_stream.py                      # 1M and 10M users
    python bench/memory_stream.py --users 100000 1000000 --threads 1   # quicker

Each size runs in a fresh subprocess.  The merchant side is the sparse-regime market of
``bench/memory.py`` (5,000 tags, 100,000 merchants, float32, 1 % banned); the users are
generated in blocks of 1M with ``synthetic_market(..., user_tags_mean=5)`` (5-8 distinct tags
each, float32, int32 indices) and assembled into one canonical CSR ``A``, so the Ranker
validates it without copying.  After ``gc.collect`` + ``malloc_trim`` the child records its
resident set size (RSS) as the baseline, resets the kernel's high-water mark
(``/proc/self/clear_refs``; a 1 ms RSS sampler is the fallback), streams every block through
``iter_topk`` (k = 10, blocks of 65,536 users, each dropped as it arrives) and reads the peak.

Bound (design §5): ``inputs + outputs of one block + threads x merchants x 8 bytes``, plus
10 %.  ``inputs`` are A's and B's arrays, trust and the banned mask.  Two totals are checked
against it: ``inputs + (peak - baseline)`` (what the call adds to the data it is given, the
criterion of ``bench/memory.py``) and ``peak - (RSS after imports)``, which also charges the
Ranker's own prepared arrays (B restricted to unbanned merchants, the weights) and every other
allocation of the process.  Flat: what the call adds must not grow with the number of users
(criterion: growth <= 4 MiB from the smallest to the largest run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import MiB, mib, run_json_child  # noqa: E402

_N_TAGS = 5_000
_N_MERCHANTS = 100_000
_GEN_BLOCK = 1_000_000


def _child(n_users: int, k: int, threads: int, chunk_rows: int, seed: int) -> Dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common  # noqa: F401  (puts the source tree on sys.path if needed)
    import memory  # the RSS helpers of bench/memory.py
    import numpy as np
    import scipy.sparse as sp

    import ecomcore as ec
    from ecomcore.datasets import synthetic_market

    memory._trim()
    rss0 = memory._rss_bytes()
    t0 = time.perf_counter()
    m = synthetic_market(0, _N_TAGS, _N_MERCHANTS, seed=seed, shared_popularity=False)
    b = sp.csr_array(m.merchant_tags, dtype=np.float32)
    ranker = ec.Ranker(b, trust=m.trust, banned=m.banned)
    # users in generator blocks (independent seeds), assembled once
    ptrs, idxs, vals, nnz = [np.zeros(1, np.int64)], [], [], 0
    for g, s0 in enumerate(range(0, n_users, _GEN_BLOCK)):
        n = min(_GEN_BLOCK, n_users - s0)
        u = synthetic_market(n, _N_TAGS, 1, seed=seed + 1 + g, shared_popularity=False, user_tags_mean=5).user_tags
        ptrs.append(u.indptr[1:].astype(np.int64) + nnz)
        idxs.append(u.indices)
        vals.append(u.data.astype(np.float32, copy=False))
        nnz += int(u.nnz)
        del u
    idt = np.int32 if nnz < 2**31 - 1 else np.int64
    a = sp.csr_array(
        (np.concatenate(vals), np.concatenate(idxs).astype(idt, copy=False), np.concatenate(ptrs).astype(idt)),
        shape=(n_users, _N_TAGS),
    )
    del ptrs, idxs, vals
    a.has_sorted_indices = True
    gen_s = time.perf_counter() - t0
    inputs = sum(x.nbytes for x in (a.data, a.indices, a.indptr, b.data, b.indices, b.indptr))
    inputs += m.trust.nbytes + m.banned.nbytes
    memory._trim()
    base = memory._rss_bytes()
    hwm_ok = memory._reset_hwm()
    sampler = memory._Sampler()
    sampler.start()
    t0 = time.perf_counter()
    rows = shown = 0
    block_out = 0
    for _, block in ranker.iter_topk(a, k, chunk_rows=chunk_rows, n_threads=threads):
        rows += block.n_rows
        shown += int(np.asarray(block.counts).sum())
        block_out = max(block_out, block.indices.nbytes + block.scores.nbytes + np.asarray(block.counts).nbytes)
        del block
    call_s = time.perf_counter() - t0
    peak = sampler.stop()
    if hwm_ok:
        peak = max(peak, memory._hwm_bytes())
    assert rows == n_users
    return {
        "users": n_users,
        "nnz": nnz,
        "merchants": ranker.n_merchants,
        "k": k,
        "threads": threads,
        "chunk_rows": chunk_rows,
        "inputs": inputs,
        "block_outputs": block_out,
        "rss_imports": rss0,
        "base_rss": base,
        "peak_rss": peak,
        "added": peak - base,
        "hwm": hwm_ok,
        "shown": shown,
        "gen_s": gen_s,
        "call_s": call_s,
    }


def _run_child(n_users: int, k: int, threads: int, chunk_rows: int, seed: int) -> Dict:
    return run_json_child(__file__, [
        "--users", str(n_users), "--k", str(k), "--threads", str(threads),
        "--chunk-rows", str(chunk_rows), "--seed", str(seed),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Stream the users, print the table; return 1 when over the bound or not flat.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when every run is within the bound and the added memory is flat, 1 otherwise.
    """
    p = argparse.ArgumentParser(description="Peak RSS while streaming users through Ranker.iter_topk.")
    p.add_argument("--users", type=int, nargs="+", default=[1_000_000, 10_000_000], help="user counts (one run each)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--chunk-rows", type=int, default=65_536)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.child:
        print(json.dumps(_child(args.users[0], args.k, threads, args.chunk_rows, args.seed)))
        return 0
    if not os.path.exists("/proc/self/statm"):
        print("memory_stream.py needs Linux /proc; skipped")
        return 0
    print(
        f"# Ranker.iter_topk streaming, sparse regime ({_N_TAGS:,} tags, {_N_MERCHANTS:,} merchants, float32), "
        f"k={args.k}, blocks of {args.chunk_rows:,} users, {threads} thread(s); each row a fresh process"
    )
    print()
    print(
        "| users | nnz(A) | inputs MiB | one block's outputs MiB | threads x merchants x 8 MiB | bound MiB (+10 %) "
        "| added by the call MiB | inputs + added MiB | peak - RSS after imports MiB | peak RSS MiB | stream s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    runs: List[Dict] = []
    for n in sorted(args.users):
        r = _run_child(n, args.k, threads, args.chunk_rows, args.seed)
        runs.append(r)
        work = r["threads"] * r["merchants"] * 8
        bound = 1.1 * (r["inputs"] + r["block_outputs"] + work)
        total = r["inputs"] + r["added"]
        whole = r["peak_rss"] - r["rss_imports"]
        r["bound"], r["within"], r["whole_within"] = bound, total <= bound, whole <= bound
        ok &= r["within"] and r["whole_within"]
        print(
            f"| {n:,} | {r['nnz']:,} | {mib(r['inputs'])} | {mib(r['block_outputs'])} | {mib(work)} "
            f"| {mib(bound)} | {mib(r['added'])} | {mib(total)} {'ok' if r['within'] else 'OVER'} "
            f"| {mib(whole)} {'ok' if r['whole_within'] else 'OVER'} | {mib(r['peak_rss'])} | {r['call_s']:.1f} |"
        )
    print()
    for r in runs:
        print(
            f"{r['users']:,} users: RSS after imports {mib(r['rss_imports'])} MiB, baseline with data and Ranker "
            f"{mib(r['base_rss'])} MiB, peak {mib(r['peak_rss'])} MiB (high-water reset "
            f"{'used' if r['hwm'] else 'unavailable, 1 ms sampling'}); data {r['gen_s']:.1f} s, stream "
            f"{r['call_s']:.1f} s ({r['users'] / max(r['call_s'], 1e-9) / 1e6:.2f}M users/s), "
            f"{r['shown']:,} merchants shown"
        )
    if len(runs) > 1:
        growth = runs[-1]["added"] - runs[0]["added"]
        flat = growth <= 4 * MiB
        ok &= flat
        print(
            f"\nadded by the call: {mib(runs[0]['added'])} MiB at {runs[0]['users']:,} users, "
            f"{mib(runs[-1]['added'])} MiB at {runs[-1]['users']:,} (inputs grow by "
            f"{mib(runs[-1]['inputs'] - runs[0]['inputs'])} MiB) -> {'flat' if flat else 'NOT FLAT'} "
            "(criterion: growth <= 4 MiB)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
