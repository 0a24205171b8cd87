"""Peak memory of Ranker.topk and Ranker.iter_topk on the sparse-regime market.

Usage (from the repository root, with ecomcore built or installed; Linux only)::

    python bench/memory.py [--quick] [--threads N] [--k 10]

Each measurement runs in a fresh subprocess: it generates the market (independent tag
popularity, 5k tags, 100k merchants), builds the Ranker, returns freed memory to the OS
(``gc.collect`` + ``malloc_trim``), records its resident set size (RSS) as the baseline, resets
the kernel's high-water mark (``/proc/self/clear_refs``; a 1 ms RSS sampler is the fallback),
runs the call and reports ``peak - baseline``: what the call itself added.

Budget (issue 2): ``inputs + outputs + threads x merchants x 8 bytes``, plus 10 %.  The
measured total is ``inputs + (peak - baseline)``.  ``iter_topk`` (blocks of 65,536 users,
8,192 with --quick, dropped as they arrive) must keep the added memory flat as the number of
users grows.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Sequence

MiB = 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _hwm_bytes() <= _rss_bytes() + 4 * MiB


class _Sampler(threading.Thread):
    """Sample RSS every millisecond (runs while the kernel has released the GIL)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_bytes()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _rss_bytes())
        return self.peak


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _child(mode: str, n_users: int, k: int, threads: int, seed: int, chunk_rows: int) -> Dict:
    """Run one measurement in this (fresh) process; return the numbers."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common  # noqa: F401  (puts the source tree on sys.path if needed)
    import numpy as np

    import ecomcore as ec
    from ecomcore.datasets import synthetic_market

    t0 = time.perf_counter()
    m = synthetic_market(n_users, 5_000, 100_000, seed=seed, shared_popularity=False)
    ranker = ec.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned)
    gen_s = time.perf_counter() - t0
    a, b = m.user_tags, m.merchant_tags
    inputs = sum(x.nbytes for x in (a.data, a.indices, a.indptr, b.data, b.indices, b.indptr))
    inputs += m.trust.nbytes + m.banned.nbytes
    _trim()
    base = _rss_bytes()
    hwm_ok = _reset_hwm()
    sampler = _Sampler()
    sampler.start()
    t0 = time.perf_counter()
    outputs = 0
    if mode == "topk":
        res = ranker.topk(a, k, n_threads=threads)
        outputs = res.indices.nbytes + res.scores.nbytes + np.asarray(res.counts).nbytes
    else:
        rows = 0
        for _, block in ranker.iter_topk(a, k, chunk_rows=chunk_rows, n_threads=threads):
            rows += block.n_rows
            outputs = max(
                outputs,
                block.indices.nbytes + block.scores.nbytes + np.asarray(block.counts).nbytes,
            )
            del block
        assert rows == n_users
    call_s = time.perf_counter() - t0
    peak = sampler.stop()
    if hwm_ok:
        peak = max(peak, _hwm_bytes())
    return {
        "mode": mode,
        "users": n_users,
        "merchants": m.n_merchants,
        "nnz": int(a.nnz),
        "k": k,
        "threads": threads,
        "chunk_rows": chunk_rows,
        "inputs": inputs,
        "outputs": outputs,
        "base_rss": base,
        "peak_rss": peak,
        "added": peak - base,
        "hwm": hwm_ok,
        "gen_s": gen_s,
        "call_s": call_s,
    }


def run_json_child(script: str, args: Sequence[str]) -> Dict:
    """Run ``python script --child *args`` in a fresh process; return the JSON of its last line."""
    cmd = [sys.executable, os.path.abspath(script), "--child", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_child(
    mode: str, n_users: int, k: int, threads: int, seed: int, chunk_rows: int = 65_536
) -> Dict:
    return run_json_child(__file__, [
        mode, "--users", str(n_users), "--k", str(k), "--threads", str(threads),
        "--seed", str(seed), "--chunk-rows", str(chunk_rows),
    ])  # fmt: skip


def mib(x: float) -> str:
    """Bytes as MiB with one decimal."""
    return f"{x / MiB:,.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the memory measurements; return the exit status (1 when a budget is exceeded).

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when within budget and flat, 1 otherwise.
    """
    p = argparse.ArgumentParser(description="Peak memory of Ranker.topk / iter_topk.")
    p.add_argument("--quick", action="store_true", help="smaller markets")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=["topk", "iter"], help=argparse.SUPPRESS)
    p.add_argument("--users", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--chunk-rows", type=int, default=65_536, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.child:
        print(
            json.dumps(_child(args.child, args.users, args.k, threads, args.seed, args.chunk_rows))
        )
        return 0
    if not os.path.exists("/proc/self/statm"):
        print("memory.py needs Linux /proc; skipped")
        return 0

    big = 100_000 if args.quick else 1_000_000
    ladder = [25_000, 50_000, 100_000] if args.quick else [250_000, 500_000, 1_000_000]
    chunk_rows = 8_192 if args.quick else 65_536
    print(
        f"# peak memory, sparse regime (5,000 tags, 100,000 merchants), k={args.k}, "
        f"{threads} thread(s); each row a fresh process"
    )
    ok = True

    r = _run_child("topk", big, args.k, threads, args.seed)
    work = r["threads"] * r["merchants"] * 8
    budget = 1.1 * (r["inputs"] + r["outputs"] + work)
    total = r["inputs"] + r["added"]
    within = total <= budget
    ok &= within
    print()
    print(
        "| call | users | inputs MiB | outputs MiB | threads x merchants x 8 MiB "
        "| budget MiB (+10 %) | added by call MiB | inputs + added MiB | verdict |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| Ranker.topk | {r['users']:,} | {mib(r['inputs'])} | {mib(r['outputs'])} | "
        f"{mib(work)} | {mib(budget)} | {mib(r['added'])} | {mib(total)} | "
        f"{'within budget' if within else 'OVER BUDGET'} |"
    )
    print(
        f"\n(baseline RSS after imports, data and Ranker: {mib(r['base_rss'])} MiB; "
        f"peak {mib(r['peak_rss'])} MiB; high-water reset {'used' if r['hwm'] else 'unavailable, 1 ms sampling'}; "  # noqa: E501
        f"call {r['call_s']:.2f} s, data {r['gen_s']:.1f} s)"
    )

    rows: List[Dict] = [
        _run_child("iter", n, args.k, threads, args.seed, chunk_rows) for n in ladder
    ]
    print()
    print("| call | users | inputs MiB | largest block output MiB | added by call MiB |")
    print("|---|---:|---:|---:|---:|")
    for q in rows:
        print(
            f"| Ranker.iter_topk ({q['chunk_rows']:,}-user blocks) | {q['users']:,} "
            f"| {mib(q['inputs'])} | {mib(q['outputs'])} | {mib(q['added'])} |"
        )
    grow_in = rows[-1]["inputs"] - rows[0]["inputs"]
    grow_added = rows[-1]["added"] - rows[0]["added"]
    flat = grow_added <= 0.05 * grow_in + 4 * MiB
    ok &= flat
    print(
        f"\niter_topk: added memory grows by {mib(grow_added)} MiB while inputs grow by "
        f"{mib(grow_in)} MiB from {rows[0]['users']:,} to {rows[-1]['users']:,} users -> "
        f"{'flat' if flat else 'NOT FLAT'} (criterion: growth <= 5 % of input growth + 4 MiB)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
