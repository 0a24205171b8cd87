"""Load benchmark of the example ranking service (``examples/service``), open loop, live trust.

Builds the sparse-regime market (200k users, 5k tags, 100k merchants; trust from 1M merchant
events through ``ecomcore trust``), starts the service with uvicorn on 127.0.0.1 (one process,
ranking in a thread pool, a new trust index scored and swapped in every ``--rescore-every``
seconds) and drives ``GET /users/{u}/merchants?k=10`` open-loop -- requests leave on a fixed
clock whatever the answers do -- while trust events are posted 10 times a second.  Every answer
is checked against the offline ``Ranker.topk`` of the version it carries.

Prints, per run: p50/p99/max latency (from the scheduled send time), errors, versions seen,
mismatches, the load average of the machine and the CPU the server and the client used; then
whether the issue's targets were met:

* 300 requests/s for 30 s: p99 < 20 ms, zero errors during trust swaps;
* the highest rate of the sweep at which p99 stays under 50 ms (zero errors).

For scale it also prints the in-process cost of one ranking (``Ranker.topk_one`` alone and the
service's whole ``rank`` call) on the same market.

Usage::

    python bench/service_load.py                 # the full run and the sweep (~3 min)
    python bench/service_load.py --quick         # small market, short runs (~20 s)
    python bench/service_load.py --rates 300,600,900 --sweep-duration 10
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import tempfile
import time

import _path  # noqa: F401  (a checkout built in place wins over an installed ecomcore)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "service")


def _load(name: str, filename: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLE, filename))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_once(lg, server, files, record, rate, duration, warmup, seed):
    """One open-loop run plus its offline check; returns a dict of figures."""
    load0 = os.getloadavg()[0]
    s0, c0 = _proc_cpu(server.proc.pid), _self_cpu()
    res = lg.drive(
        server.url, rate=rate, duration=duration, warmup=warmup, n_users=files.n_users,
        n_merchants=files.n_merchants, k=10, events_every=0.1, events_per_post=20, seed=seed,
    )  # fmt: skip
    s1, c1 = _proc_cpu(server.proc.pid), _self_cpu()
    load1 = os.getloadavg()[0]
    check = lg.verify(res.answers, files, record)
    return {
        "rate": rate,
        "duration": duration,
        "sent": res.sent,
        "ok": len(res.answers),
        "errors": len(res.errors) + len(res.event_errors),
        "error_examples": (res.errors + res.event_errors)[:3],
        "p50": res.percentile(50),
        "p99": res.percentile(99),
        "max": res.percentile(100),
        "versions": len(res.versions),
        "events": res.events_posted,
        "mismatches": check["mismatches"],
        "checked": check["checked"],
        "send_lag_ms": res.max_send_lag * 1e3,
        "load": (load0, load1),
        "server_cpu_ms_per_req": (s1 - s0) / max(res.sent, 1) * 1e3,
        "client_cpu_ms_per_req": (c1 - c0) / max(res.sent, 1) * 1e3,
        "alive": server.alive(),
    }


def _held(r: dict) -> bool:
    """p99 under 50 ms with zero errors and zero mismatches."""
    return r["p99"] < 50 and not r["errors"] and not r["mismatches"]


def _line(r: dict) -> str:
    return (
        f"{r['rate']:7.0f} {r['duration']:5.0f} {r['sent']:7d} {r['errors']:6d} {r['mismatches']:5d} "
        f"{r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.2f} {r['versions']:5d} {r['send_lag_ms']:8.1f} "
        f"{r['server_cpu_ms_per_req']:7.2f} {r['client_cpu_ms_per_req']:7.2f}   {r['load'][0]:.2f}->{r['load'][1]:.2f}"
    )


HEADER = (
    "   rate   dur    sent errors mism.  p50(ms)  p99(ms)  max(ms)  vers  lag(ms) srv-cpu cli-cpu   loadavg\n"
    "                                                                               ms/req  ms/req"
)


def kernel_figures(files, app_mod) -> str:
    """Median in-process cost of topk_one and of the service's rank() on this market."""
    svc = app_mod.RankingService.from_files(
        files.profiles, files.merchant_tags, files.trust, trust_state=files.trust_state, banned=files.banned
    )
    a = svc._a
    r = svc.current.ranker
    rng = np.random.default_rng(0)
    users = rng.integers(0, files.n_users, 2000)
    for u in users[:100]:
        svc.rank(int(u), 10)
    t_one, t_rank = [], []
    for u in users:
        u = int(u)
        lo, hi = a.indptr[u], a.indptr[u + 1]
        t0 = time.perf_counter()
        r.topk_one(a.indices[lo:hi], a.data[lo:hi], 10)
        t1 = time.perf_counter()
        svc.rank(u, 10)
        t2 = time.perf_counter()
        t_one.append(t1 - t0)
        t_rank.append(t2 - t1)
    t0 = time.perf_counter()
    svc.rescore()
    t_rescore = time.perf_counter() - t0
    old = svc.current.ranker
    t0 = time.perf_counter()
    old.with_trust(svc.current.trust)
    t_with = time.perf_counter() - t0
    return (
        f"in process, same market: Ranker.topk_one median {np.median(t_one) * 1e6:.0f} us, "
        f"service rank() (top-k + interest parts + answer) median {np.median(t_rank) * 1e6:.0f} us; "
        f"re-score {t_rescore * 1e3:.0f} ms, of which Ranker.with_trust {t_with * 1e3:.1f} ms"
    )


def main(argv=None) -> int:
    """Run the benchmark; print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small market, short runs")
    p.add_argument("--rate", type=float, default=300.0, help="rate of the main run (300)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the main run (30)")
    p.add_argument(
        "--rates", default="400,500,600,800,1000,1200,1400,1700,2000,2500", help="sweep rates above the main one"
    )
    p.add_argument("--sweep-duration", type=float, default=10.0, help="seconds per sweep rate (10)")
    p.add_argument("--rescore-every", type=float, default=5.0, help="seconds between trust swaps (5)")
    p.add_argument("--workers", type=int, default=None, help="ranking threads of the service")
    args = p.parse_args(argv)
    lg = _load("ecomcore_service_loadgen", "loadgen.py")
    app_mod = _load("ecomcore_service_app", "app.py")
    if args.quick:
        size = dict(n_users=5_000, n_tags=1_000, n_merchants=10_000, n_trust_events=100_000)
        args.duration, args.sweep_duration = min(args.duration, 5.0), min(args.sweep_duration, 3.0)
        args.rescore_every = min(args.rescore_every, 1.0)
    else:
        size = dict(n_users=200_000, n_tags=5_000, n_merchants=100_000, n_trust_events=1_000_000)
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        files = lg.make_files(
            d, size["n_users"], size["n_tags"], size["n_merchants"], sparse=True,
            n_trust_events=size["n_trust_events"], seed=0,
        )  # fmt: skip
        print(
            f"market: {files.n_users:,} users x {size['n_tags']:,} tags x {files.n_merchants:,} merchants "
            f"(sparse regime), trust from {size['n_trust_events']:,} events; files in {time.perf_counter() - t0:.1f} s"
        )
        print(kernel_figures(files, app_mod))
        print(f"cores: {os.cpu_count()}, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        record = os.path.join(d, "versions")
        os.mkdir(record)
        with lg.Server(files, record, rescore_every=args.rescore_every, workers=args.workers) as server:
            print(f"service up at {server.url}; trust re-scored and swapped every {args.rescore_every:g} s\n")
            print(HEADER)
            main_run = run_once(lg, server, files, record, args.rate, args.duration, 2.0, 1)
            print(_line(main_run), flush=True)
            sweep = []
            for i, rate in enumerate(rates):
                r = run_once(lg, server, files, record, rate, args.sweep_duration, 1.0, 10 + i)
                sweep.append(r)
                print(_line(r), flush=True)
                if not _held(r) or not r["alive"]:
                    break  # the first rate that does not hold ends the sweep
        runs = [main_run, *sweep]
        held = []  # rates held from the bottom up, until the first that was not
        for r in runs:
            if not _held(r):
                break
            held.append(r)
        print()
        ok_main = main_run["p99"] < 20 and not main_run["errors"] and not main_run["mismatches"]
        print(
            f"target 1 ({args.rate:.0f}/s for {args.duration:.0f} s: p99 < 20 ms, zero errors during swaps): "
            f"{'MET' if ok_main else 'NOT MET'} -- p99 {main_run['p99']:.2f} ms, p50 {main_run['p50']:.2f} ms, "
            f"{main_run['errors']} errors, {main_run['mismatches']} mismatches in {main_run['checked']} answers "
            f"over {main_run['versions']} versions"
        )
        if held:
            best = max(held, key=lambda r: r["rate"])
            print(
                f"target 2: highest rate with p99 < 50 ms and zero errors: {best['rate']:.0f}/s "
                f"(p99 {best['p99']:.2f} ms)"
            )
        else:
            print(f"target 2: not even {runs[0]['rate']:.0f}/s held p99 < 50 ms with zero errors")
        for r in runs:
            if r["error_examples"]:
                print(f"errors at {r['rate']:.0f}/s: {r['error_examples']}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
