"""Side-by-side fold throughput: ecomcore's TrustModel.fold vs NumPy and pandas, same process.

Usage (from the repository root, with ecomcore built in place or installed)::

    python bench/trust_compare.py [--quick] [--events N] [--merchants M] [--reps R] [--skew]

Every method computes the same decayed statistics per (merchant, indicator) — decayed count,
decayed sum, decayed sum of squares, number of events — once without and once with buyer
deduplication (per (merchant, indicator, buyer, 10-day bucket) the earliest event, ties by the
smallest value, counts once):

* **ecomcore**: ``TrustModel.fold`` (validation of every event included), into a new state and
  into a warm, pre-allocated state (a service folding batches).
* **NumPy**: the best formulation we know: weights ``exp(lam * (t - t_ref))`` computed in place,
  then one ``np.bincount`` per statistic over ``cell = merchant * n_indicators + indicator``;
  deduplication by one ``np.lexsort`` on (packed key, time, value) and a first-of-group mask.
  No validation (which favours NumPy).
* **pandas**: what users hand-roll: a weight column, then ``groupby(["merchant",
  "indicator"]).agg(...)``; deduplication by ``sort_values`` + ``drop_duplicates``.  No validation.

Before timing, the script checks that all methods agree (relative 1e-9) and exits with status 1
when they do not.  Events: ``--events`` (10M) over ``--merchants`` (100k) merchants, uniformly
random (``--skew``: Zipf-like merchant popularity), 24 indicators as int64 ids, float64 values
and times spread over a year, int64 merchant and buyer ids.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401  (a checkout built in place wins over an installed ecomcore)

import ecomcore as ec  # noqa: E402
from ecomcore.indicators import Indicator  # noqa: E402

DAY = 86400.0
T_END = 1.7e9
TARGETS = (
    "Targets: fold >= 50M events/s on one core without dedupe (validation included), faster than "
    "NumPy and >= 10x pandas; with buyer dedupe >= 10M events/s (judged on fold into a new state, by "
    "wall time; on a shared machine also look at the CPU-time column)."
)


def bench_indicators() -> List[Indicator]:
    """24 indicators: 14 rates (one veto), 5 ratings, 5 magnitudes, over the six dimensions."""
    dims = ec.DIMENSIONS
    out: List[Indicator] = []
    for k in range(14):
        out.append(Indicator(f"rate_{k}", dims[k % 6], "rate", "lower" if k % 2 else "higher", veto=k == 13))
    for k in range(5):
        out.append(Indicator(f"rating_{k}", dims[k % 6], "rating", "higher"))
    for k in range(5):
        out.append(Indicator(f"magnitude_{k}", dims[(k + 1) % 6], "magnitude", "lower"))
    return out


def make_events(
    n: int, n_merchants: int, *, seed: int = 0, skew: bool = False, dup_share: float = 0.1, n_buyers: int = 1_000_000
) -> Dict[str, np.ndarray]:
    """Random valid events (with a ``buyer`` column; drop it for the no-dedupe runs).

    A share ``dup_share`` of the events repeats an earlier event's (merchant, indicator, buyer)
    a few hours later, mostly inside the same 10-day bucket (what deduplication removes).
    """
    rng = np.random.default_rng(seed)
    inds = bench_indicators()
    n_ind = len(inds)
    if skew:
        pop = 1.0 / np.arange(1, n_merchants + 1) ** 0.8
        merchant = rng.choice(n_merchants, size=n, p=pop / pop.sum()).astype(np.int64)
        rng.shuffle(perm := np.arange(n_merchants))
        merchant = perm[merchant]
    else:
        merchant = rng.integers(0, n_merchants, n, dtype=np.int64)
    indicator = rng.integers(0, n_ind, n, dtype=np.int64)
    value = np.empty(n)
    kinds = np.array([ind.kind for ind in inds])
    k_of = kinds[indicator]
    rate = k_of == "rate"
    value[rate] = rng.random(int(rate.sum())) < 0.1
    rating = k_of == "rating"
    value[rating] = rng.integers(1, 6, int(rating.sum()))
    mag = k_of == "magnitude"
    value[mag] = rng.gamma(2.0, 12.0, int(mag.sum()))
    t = T_END - rng.random(n) * 365 * DAY
    buyer = rng.integers(0, n_buyers, n, dtype=np.int64)
    dup = np.flatnonzero(rng.random(n) < dup_share)
    if dup.size:
        src = rng.integers(0, n, dup.size)
        merchant[dup] = merchant[src]
        indicator[dup] = indicator[src]
        buyer[dup] = buyer[src]
        t[dup] = np.minimum(t[src] + rng.random(dup.size) * 6 * 3600, T_END)
        fix_rate = kinds[indicator[dup]] == "rate"
        value[dup[fix_rate]] = rng.random(int(fix_rate.sum())) < 0.1
        fix_rating = kinds[indicator[dup]] == "rating"
        value[dup[fix_rating]] = rng.integers(1, 6, int(fix_rating.sum()))
        fix_mag = kinds[indicator[dup]] == "magnitude"
        value[dup[fix_mag]] = rng.gamma(2.0, 12.0, int(fix_mag.sum()))
    return {"merchant": merchant, "indicator": indicator, "value": value, "time": t, "buyer": buyer}


# ---------------------------------------------------------------------------------------------
# baselines


def numpy_fold(
    ev: Dict[str, np.ndarray], n_merchants: int, n_ind: int, lam: float, t_ref: float, dedupe_seconds: Optional[float]
) -> Tuple[np.ndarray, ...]:
    """Decayed (n, s, s2, events) per cell with bincount; optional buyer dedupe via lexsort."""
    m, i, v, t = ev["merchant"], ev["indicator"], ev["value"], ev["time"]
    cell = m * n_ind
    cell += i
    if dedupe_seconds is not None:
        b = ev["buyer"]
        bucket = np.floor(t / dedupe_seconds).astype(np.int64)
        bucket -= bucket.min()
        # pack (cell, buyer, bucket) into one int64 key when it fits (it does here)
        nb = int(b.max()) + 1
        nk = int(bucket.max()) + 1
        assert n_merchants * n_ind * nb * nk < 2**63
        key = (cell * nb + b) * nk + bucket
        order = np.lexsort((v, t, key))
        ks = key[order]
        first = np.empty(ks.size, dtype=bool)
        first[:1] = True
        np.not_equal(ks[1:], ks[:-1], out=first[1:])
        keep = order[first]
        cell, v, t = cell[keep], v[keep], t[keep]
    w = t - t_ref
    w *= lam
    np.exp(w, out=w)
    size = n_merchants * n_ind
    n = np.bincount(cell, weights=w, minlength=size)
    w *= v
    s = np.bincount(cell, weights=w, minlength=size)
    w *= v
    s2 = np.bincount(cell, weights=w, minlength=size)
    cnt = np.bincount(cell, minlength=size)
    return n, s, s2, cnt


def pandas_fold(df, n_ind: int, lam: float, t_ref: float, dedupe_seconds: Optional[float]):  # noqa: ANN001, ANN201
    """The hand-rolled pandas version: weights, (dedupe,) groupby-sum; returns the grouped frame."""
    if dedupe_seconds is not None:
        df = df.assign(bucket=np.floor(df["time"].to_numpy() / dedupe_seconds))
        df = df.sort_values(["time", "value"]).drop_duplicates(["merchant", "indicator", "buyer", "bucket"])
    w = np.exp(lam * (df["time"].to_numpy() - t_ref))
    v = df["value"].to_numpy()
    g = df[["merchant", "indicator"]].assign(w=w, wv=w * v, wv2=w * v * v)
    return g.groupby(["merchant", "indicator"], sort=False).agg(
        n=("w", "sum"), s=("wv", "sum"), s2=("wv2", "sum"), events=("w", "size")
    )


def pandas_dense(g, n_merchants: int, n_ind: int) -> Tuple[np.ndarray, ...]:  # noqa: ANN001
    """Scatter the grouped frame into dense per-cell arrays (for the agreement check)."""
    idx = g.index.get_level_values(0).to_numpy() * n_ind + g.index.get_level_values(1).to_numpy()
    out = []
    for col, dt in (("n", float), ("s", float), ("s2", float), ("events", np.int64)):
        a = np.zeros(n_merchants * n_ind, dtype=dt)
        a[idx] = g[col].to_numpy()
        out.append(a)
    return tuple(out)


# ---------------------------------------------------------------------------------------------


def interleaved_times(
    methods: Dict[str, Tuple[Callable[[], object], Optional[Callable[[], object]], int]], rounds: int
) -> Dict[str, Tuple[float, float]]:
    """Median wall and CPU seconds per method, timing the methods in turn, round after round.

    ``methods`` maps a name to ``(fn, setup, reps)``: ``setup()`` (untimed, may be None) runs
    before every call and the method is timed in the first ``reps`` rounds only.  Interleaving
    spreads the load of a shared machine over all methods alike.  Wall time also counts time
    the process waited for a core; CPU time does not (memory contention affects both).
    """
    wall: Dict[str, List[float]] = {k: [] for k in methods}
    cpu: Dict[str, List[float]] = {k: [] for k in methods}
    for rnd in range(rounds):
        for name, (fn, setup, reps) in methods.items():
            if rnd >= reps:
                continue
            if setup is not None:
                setup()
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (float(np.median(wall[k])), float(np.median(cpu[k]))) for k in methods if wall[k]}


def _close(ours: Tuple[np.ndarray, ...], ref: Tuple[np.ndarray, ...], what: str) -> List[str]:
    errs = []
    for name, a, b in zip(("n", "s", "s2", "events"), ours, ref):
        a = np.asarray(a).ravel()
        b = np.asarray(b).ravel()
        if name == "events":
            if not np.array_equal(a, b):
                errs.append(f"{what}: events differ in {int((a != b).sum())} cells")
        elif not np.allclose(a, b, rtol=1e-9, atol=1e-300):
            rel = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))
            errs.append(f"{what}: {name} differs (max relative {rel:.2e})")
    return errs


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (200k events, 10k merchants), fewer runs")
    p.add_argument("--events", type=int, default=None, help="number of events (default 10M; quick 200k)")
    p.add_argument("--merchants", type=int, default=None, help="number of merchants (default 100k; quick 10k)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions for ecomcore and NumPy (median)")
    p.add_argument("--numpy-reps", type=int, default=None, help="timed repetitions for NumPy")
    p.add_argument("--pandas-reps", type=int, default=None, help="timed repetitions for pandas")
    p.add_argument("--skew", action="store_true", help="Zipf-like merchant popularity instead of uniform")
    p.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.events = a.events or (200_000 if a.quick else 10_000_000)
    a.merchants = a.merchants or (10_000 if a.quick else 100_000)
    a.reps = a.reps or (3 if a.quick else 5)
    a.numpy_reps = a.numpy_reps or min(a.reps, 3)
    a.pandas_reps = a.pandas_reps or (1 if a.quick else 3)
    if a.events < 1 or a.merchants < 1 or a.reps < 1:
        p.error("--events, --merchants and --reps take positive integers")
    return a


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison; return the process exit status (1 when the methods disagree)."""
    args = _parse(argv)
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if args.no_pandas:
        pd = None
    inds = bench_indicators()
    n_ind = len(inds)
    model = ec.TrustModel(inds, n_merchants=args.merchants)
    lam = np.log(2.0) / (model.half_life_days * DAY)
    dd = model.dedupe_days * DAY
    t0 = time.perf_counter()
    ev_b = make_events(args.events, args.merchants, seed=args.seed, skew=args.skew)
    ev = {k: a for k, a in ev_b.items() if k != "buyer"}
    gen_s = time.perf_counter() - t0
    n = args.events
    print(
        f"# trust fold: ecomcore {ec.__version__} vs NumPy {np.__version__}"
        + ("" if pd is None else f" vs pandas {pd.__version__}")
    )
    print(
        f"python {platform.python_version()}, {platform.machine()}, one thread; {n:,} events, "
        f"{args.merchants:,} merchants ({'Zipf-like' if args.skew else 'uniform'}), {n_ind} indicators "
        f"(generated in {gen_s:.1f}s); medians of {args.reps} runs (NumPy {args.numpy_reps}, pandas "
        f"{args.pandas_reps}), methods timed in turn"
    )

    # ---- agreement --------------------------------------------------------------------------
    errors: List[str] = []
    dfs = {}
    if pd is not None:
        dfs = {"plain": pd.DataFrame(ev), "dedupe": pd.DataFrame(ev_b)}
    for mode, events, dds in (("plain", ev, None), ("dedupe", ev_b, dd)):
        state = model.fold(events)
        t_ref = state.reference_time
        st = state.stats(t_ref)
        ours = (st.n, st.s, st.s2, st.events)
        errors += _close(ours, numpy_fold(events, args.merchants, n_ind, lam, t_ref, dds), f"NumPy {mode}")
        if pd is not None:
            g = pandas_fold(dfs[mode], n_ind, lam, t_ref, dds)
            errors += _close(ours, pandas_dense(g, args.merchants, n_ind), f"pandas {mode}")
        if mode == "dedupe":
            kept = int(st.events.sum())
            print(f"dedupe: {kept:,} of {n:,} events counted ({state.n_dedupe_keys:,} keys)")
        del state, st, ours
    if errors:
        for e in errors:
            print(f"MISMATCH {e}")
        print("\nFAILED: the methods disagree; no timings reported.")
        return 1
    print("check: ecomcore, NumPy" + ("" if pd is None else ", pandas") + " agree (rtol 1e-9, counts exact)\n")

    # ---- timing -----------------------------------------------------------------------------
    results: Dict[str, Dict[str, Tuple[float, float]]] = {}
    for mode, events, dds in (("plain", ev, None), ("dedupe", ev_b, dd)):
        # a service's state: arrays (and the dedupe table) already allocated and mapped; emptied
        # between runs (untimed) so every run folds the same events into an empty state
        warm = model.new_state()
        model.fold(events, into=warm)
        model.fold(events)  # warm-up

        def reset(st: ec.TrustState = warm) -> None:
            st._acc[...] = 0.0
            st._veto[...] = -np.inf
            st._table[...] = 0
            st._used = 0
            st._last_time = -np.inf

        t_ref = float(events["time"].max())
        methods: Dict[str, Tuple[Callable[[], object], Optional[Callable[[], object]], int]] = {
            "ecomcore new state": (lambda: model.fold(events), None, args.reps),  # noqa: B023
            "ecomcore into warm state": (lambda st=warm: model.fold(events, into=st), reset, args.reps),  # noqa: B023
        }
        if mode == "plain":
            cols = model._columns(events)
            methods["(its validation pass)"] = (lambda: model._validate(cols, args.merchants), None, args.reps)  # noqa: B023
        methods["NumPy bincount"] = (
            lambda: numpy_fold(events, args.merchants, n_ind, lam, t_ref, dds),  # noqa: B023
            None,
            args.numpy_reps,
        )
        if pd is not None:
            df = dfs[mode]
            methods["pandas groupby"] = (lambda: pandas_fold(df, n_ind, lam, t_ref, dds), None, args.pandas_reps)  # noqa: B023
        results[mode] = interleaved_times(methods, max(m[2] for m in methods.values()))
        warm = None

    print("| events | method | median wall s | median CPU s | M events/s (wall) | its time / ecomcore new state |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, r in results.items():
        base = r["ecomcore new state"][0]
        label = "no buyer (plain)" if mode == "plain" else "buyer dedupe"
        for name, (sec, cpu) in r.items():
            ratio = "—" if name.startswith(("ecomcore", "(")) else f"{sec / base:.1f}x"
            print(f"| {label} | {name} | {sec:.3f} | {cpu:.3f} | {n / sec / 1e6:.1f} | {ratio} |")
    print()
    plain, dedupe = results["plain"], results["dedupe"]
    rate_new = n / plain["ecomcore new state"][0] / 1e6
    rate_warm = n / plain["ecomcore into warm state"][0] / 1e6
    rate_dd = n / dedupe["ecomcore new state"][0] / 1e6
    rate_dd_warm = n / dedupe["ecomcore into warm state"][0] / 1e6
    print(TARGETS)

    def mark(ok: bool) -> str:
        return "meets" if ok else "BELOW"

    print(
        f"- fold without dedupe: {rate_new:.1f}M events/s into a new state, {rate_warm:.1f}M into a warm state "
        f"({mark(rate_new >= 50)} 50M)"
    )
    vs_np = plain["NumPy bincount"][0] / plain["ecomcore new state"][0]
    print(f"- vs NumPy: {vs_np:.1f}x ({mark(vs_np > 1)})")
    if "pandas groupby" in plain:
        ratio = plain["pandas groupby"][0] / plain["ecomcore new state"][0]
        print(f"- vs pandas: {ratio:.1f}x ({mark(ratio >= 10)} 10x)")
    print(
        f"- fold with buyer dedupe: {rate_dd:.1f}M events/s into a new state, {rate_dd_warm:.1f}M into a warm "
        f"state ({mark(rate_dd >= 10)} 10M)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
