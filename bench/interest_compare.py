"""Side-by-side timing of the interest fold against NumPy/SciPy formulations of the same sums.

Usage (from the repository root, with ecomcore built in place or installed)::

    python bench/interest_compare.py [--quick] [--reps N] [--weight] [--seed S]

The problem: ``--users`` users, ``--items`` items with 1-3 tags each (Zipf tag popularity, tag
values in [0.5, 1.5]), ``--tags`` tags, ``--events`` events (Zipf item popularity, uniform users,
85 % views / 5 % favourites / 6 % carts / 4 % buys over 30 days, sorted by time; with ``--weight``
a watch-seconds column).  Every method computes the forward-decayed sums

    S[u, t] = sum_e kw[kind_e] * weight_e * item_tags[item_e, t] * exp(lam * (time_e - t_ref))

Methods (one process, one thread, same data):

* ``ecomcore``: ``InterestModel.fold`` (validation + Cython hash-table kernel); incremental
  folds use ``into=``.
* ``scipy-coo``: NumPy expands every event over its item's tags (repeat/gather), then
  ``coo_array(...).tocsr()`` sums the duplicates; incremental folds add CSR matrices.
* ``scipy-spgemm``: ``coo_array((factor, (user, item))).tocsr() @ item_tags`` (SciPy's SpGEMM);
  incremental folds add CSR matrices.

The baselines do no validation and use one fixed reference time (no rebasing).  Before timing,
the script checks that all methods give the same sums (relative 1e-9) and exits with status 1
otherwise.  It then prints a markdown table of median (and min) wall times, events per second
and ratios for: one fold of all events into an empty state, the same events folded in 10
chunks, and one small chunk folded into the full state.  The machine may be shared: the min is
shown next to the median to show the noise.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import scipy
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401  (a checkout built in place wins over an installed ecomcore)

from ecomcore import InterestModel  # noqa: E402

T0 = 1.7e9
DAY = 86400.0
KIND_P = (0.85, 0.05, 0.06, 0.04)
TARGET = "Target: profile fold >= 10M events/s on one core (events x tags per item ~ 1-3), incremental."

FULL = dict(users=1_000_000, items=100_000, tags=5_000, events=10_000_000)
QUICK = dict(users=100_000, items=10_000, tags=1_000, events=1_000_000)
TINY = dict(users=2_000, items=500, tags=100, events=20_000)


class Problem:
    """Events, catalogue and model of one benchmark size.

    Parameters
    ----------
    users, items, tags, events : int
        Sizes.
    seed : int, default 0
        Random seed.
    weight : bool, default False
        Add a ``weight`` column (watch seconds, exponential with mean 20).
    """

    def __init__(self, users: int, items: int, tags: int, events: int, *, seed: int = 0, weight: bool = False):
        rng = np.random.default_rng(seed)
        self.n_users, self.n_items, self.n_tags, self.n = users, items, tags, events
        per_item = rng.integers(1, 4, items)
        indptr = np.zeros(items + 1, dtype=np.int64)
        np.cumsum(per_item, out=indptr[1:])
        tag_p = 1.0 / np.arange(1, tags + 1)
        tag_p /= tag_p.sum()
        indices = rng.choice(tags, int(indptr[-1]), p=tag_p)
        x = sp.csr_array((rng.uniform(0.5, 1.5, int(indptr[-1])), indices, indptr), shape=(items, tags))
        x.sum_duplicates()  # an item drawing the same tag twice holds it once
        self.item_tags = x
        item_p = 1.0 / np.arange(1, items + 1) ** 0.8
        item_p /= item_p.sum()
        self.events: Dict[str, np.ndarray] = {
            "user": rng.integers(0, users, events),
            "item": rng.permutation(items)[rng.choice(items, events, p=item_p)],
            "kind": rng.choice(4, events, p=KIND_P).astype(np.int8),
            "time": np.sort(T0 + rng.uniform(0, 30 * DAY, events)),
        }
        if weight:
            self.events["weight"] = rng.exponential(20.0, events)
        self.model = InterestModel(n_users=users)
        self.kw = np.array(list(self.model.event_weights.values()))
        self.lam = np.log(2.0) / (self.model.half_life_days * DAY)
        self.t_ref = float(self.events["time"].max())
        self.pairs = int(np.diff(x.indptr)[self.events["item"]].sum())

    def chunk(self, lo: int, hi: int) -> Dict[str, np.ndarray]:
        """Events ``lo:hi`` (views)."""
        return {k: v[lo:hi] for k, v in self.events.items()}

    def chunks(self, n_chunks: int) -> List[Dict[str, np.ndarray]]:
        """The events in ``n_chunks`` consecutive (time-ordered) chunks."""
        bounds = np.linspace(0, self.n, n_chunks + 1).astype(int)
        return [self.chunk(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


def _factors(p: Problem, ev: Dict[str, np.ndarray]) -> np.ndarray:
    c = p.kw[ev["kind"]]
    if "weight" in ev:
        c = c * ev["weight"]
    return c * np.exp(p.lam * (ev["time"] - p.t_ref))


def scipy_coo(p: Problem, ev: Dict[str, np.ndarray]) -> sp.csr_array:
    """Expand events over tags with NumPy, then let ``coo -> csr`` sum the duplicates."""
    x = p.item_tags
    c = _factors(p, ev)
    item = ev["item"]
    lens = np.diff(x.indptr)[item]
    total = int(lens.sum())
    first = np.cumsum(lens) - lens
    pos = np.repeat(x.indptr[item] - first, lens) + np.arange(total)
    rows = np.repeat(ev["user"], lens)
    vals = np.repeat(c, lens) * x.data[pos]
    return sp.coo_array((vals, (rows, x.indices[pos])), shape=(p.n_users, p.n_tags)).tocsr()


def scipy_spgemm(p: Problem, ev: Dict[str, np.ndarray]) -> sp.csr_array:
    """Sum factors per (user, item), then multiply by the item x tag matrix."""
    u = sp.coo_array((_factors(p, ev), (ev["user"], ev["item"])), shape=(p.n_users, p.n_items)).tocsr()
    return sp.csr_array(u @ p.item_tags)


def fold_chunks_scipy(p: Problem, fn: Callable, chunks: Sequence[Dict[str, np.ndarray]]) -> sp.csr_array:
    """Incremental SciPy: S = S + fold(chunk)."""
    s = fn(p, chunks[0])
    for ev in chunks[1:]:
        s = s + fn(p, ev)
    return s


def fold_chunks_ecomcore(p: Problem, chunks: Sequence[Dict[str, np.ndarray]]):
    """Incremental ecomcore: fold each chunk into the same state."""
    state = p.model.new_state(p.n_users, p.n_tags)
    for ev in chunks:
        p.model.fold(ev, p.item_tags, into=state)
    return state


def ecomcore_sums(p: Problem, state) -> sp.csr_array:
    """ecomcore's sums referred to the baselines' reference time."""
    return state.decayed_sums(p.t_ref)


def max_rel_diff(a: sp.csr_array, b: sp.csr_array) -> float:
    """Largest |a - b| / max(|a|, |b|) over the union of stored entries."""
    d = abs(sp.csr_array(a) - sp.csr_array(b))
    m = sp.csr_array(abs(a)).maximum(sp.csr_array(abs(b)))
    if d.nnz == 0:
        return 0.0
    d, m = d.tocoo(), m.tocsr()
    return float((d.data / m[d.row, d.col]).max())


def times(fn: Callable[[], object], reps: int, warmup: int = 1) -> Dict[str, List[float]]:
    """Wall and CPU (process) times of ``fn()`` over ``reps`` calls, after ``warmup`` untimed calls.

    The untimed call also pays the one-off cost of the process's first touch of fresh memory.
    """
    for _ in range(warmup):
        fn()
    out: Dict[str, List[float]] = {"wall": [], "cpu": []}
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        out["wall"].append(time.perf_counter() - t0)
        out["cpu"].append(time.process_time() - c0)
    return out


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k users, 1M events, fewer repetitions")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (median)")
    ap.add_argument("--weight", action="store_true", help="add a watch-seconds weight column")
    ap.add_argument("--seed", type=int, default=0)
    for k, v in FULL.items():
        ap.add_argument(f"--{k}", type=int, default=None, help=f"default {v:,} ({QUICK[k]:,} with --quick)")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for k in FULL:
        if getattr(args, k) is None:
            setattr(args, k, sizes[k])
        if getattr(args, k) < 1:
            ap.error(f"--{k} must be positive")
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    print(
        f"# interest fold: ecomcore vs NumPy/SciPy ({platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__})"
    )
    t0 = time.perf_counter()
    p = Problem(args.users, args.items, args.tags, args.events, seed=args.seed, weight=args.weight)
    print(
        f"problem: {p.n_users:,} users, {p.n_items:,} items ({p.item_tags.nnz / p.n_items:.2f} tags/item), "
        f"{p.n_tags:,} tags, {p.n:,} events -> {p.pairs:,} (event, tag) pairs "
        f"({p.pairs / p.n:.2f}/event){', weight column' if args.weight else ''}; "
        f"built in {time.perf_counter() - t0:.1f} s"
    )
    reps = args.reps
    chunks10 = p.chunks(10)
    small = p.chunk(0, max(p.n // 100, 1))

    # -- agreement --------------------------------------------------------------------------
    one = p.model.fold(p.events, p.item_tags)
    ours = ecomcore_sums(p, one)
    errors = []
    for name, got in (
        ("scipy-coo", scipy_coo(p, p.events)),
        ("scipy-spgemm", scipy_spgemm(p, p.events)),
        ("ecomcore 10 chunks", ecomcore_sums(p, fold_chunks_ecomcore(p, chunks10))),
    ):
        rel = max_rel_diff(ours, got)
        if rel > 1e-9:
            errors.append(f"{name}: max relative difference {rel:.3g}")
    if errors:
        print("DISAGREEMENT:", "; ".join(errors))
        return 1
    print(
        f"agreement: all methods give the same sums (relative 1e-9); {ours.nnz:,} (user, tag) sums, "
        f"table {one.nbytes / 2**20:.0f} MiB"
    )

    # -- timings ----------------------------------------------------------------------------
    full_state = one
    full_csr = scipy_spgemm(p, p.events)
    rows = []

    def row(scenario: str, n_events: int, fns: Dict[str, Callable[[], object]]) -> None:
        res = {name: times(fn, reps) for name, fn in fns.items()}
        rows.append((scenario, n_events, res))

    row("one fold, empty state", p.n, {
        "ecomcore": lambda: p.model.fold(p.events, p.item_tags),
        "scipy-coo": lambda: scipy_coo(p, p.events),
        "scipy-spgemm": lambda: scipy_spgemm(p, p.events),
    })  # fmt: skip
    row("10 chunks, incremental", p.n, {
        "ecomcore": lambda: fold_chunks_ecomcore(p, chunks10),
        "scipy-coo": lambda: fold_chunks_scipy(p, scipy_coo, chunks10),
        "scipy-spgemm": lambda: fold_chunks_scipy(p, scipy_spgemm, chunks10),
    })  # fmt: skip

    def reserved() -> None:
        state = p.model.new_state(p.n_users, p.n_tags).reserve(one.n_entries)
        for ev in chunks10:
            p.model.fold(ev, p.item_tags, into=state)

    row("10 chunks, state reserved ahead", p.n, {"ecomcore": reserved})
    n_small = len(small["user"])
    row(f"{n_small:,} events into the full state", n_small, {
        "ecomcore": lambda: p.model.fold(small, p.item_tags, into=full_state),
        "scipy-coo": lambda: full_csr + scipy_coo(p, small),
        "scipy-spgemm": lambda: full_csr + scipy_spgemm(p, small),
    })  # fmt: skip

    print()
    print(
        "| scenario | method | median wall s | min wall s | median CPU s | M events/s (median wall) | "
        "ecomcore speed-up (wall) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for scenario, n_ev, res in rows:
        ours_t = float(np.median(res["ecomcore"]["wall"]))
        for name, ts in res.items():
            med = float(np.median(ts["wall"]))
            ratio = "" if name == "ecomcore" else f"{med / ours_t:.2f}x"
            print(
                f"| {scenario} | {name} | {med:.3f} | {min(ts['wall']):.3f} | {np.median(ts['cpu']):.3f} | "
                f"{n_ev / med / 1e6:.1f} | {ratio} |"
            )

    # -- profiles (informative) -------------------------------------------------------------
    pt = times(lambda: p.model.profiles(full_state), max(1, reps // 2))
    print()
    print(
        f"profiles (IDF, l2) from the {full_state.n_entries:,}-entry state: median {np.median(pt['wall']):.3f} s "
        f"wall, {np.median(pt['cpu']):.3f} s CPU"
    )
    print()
    print(TARGET)
    for scenario, n_ev, res in rows:
        w, c = float(np.median(res["ecomcore"]["wall"])), float(np.median(res["ecomcore"]["cpu"]))
        print(
            f"ecomcore, {scenario}: {n_ev / w / 1e6:.1f} M events/s (median wall), {n_ev / c / 1e6:.1f} M events/s "
            f"(median CPU time); one thread, median of {reps}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.2f} on {os.cpu_count()} CPUs (wall > CPU time means the core was shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
