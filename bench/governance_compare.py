"""Side-by-side timing of ecomcore.IdentityGraph against straightforward baselines.

Usage (from the repository root, with ecomcore built in place or installed)::

    python bench/governance_compare.py [--links 5000000] [--reps 5] [--quick]

Workload: ``links`` (store, key) pairs, five identity keys per store (owner, phone, device,
payout account, address) given as int64 hashes; most keys belong to one store, 4 % come from a
pool shared by a few stores (small fraud rings), 0.5 % from a Zipf-popular head (couriers,
aggregators: hubs); links arrive shuffled; 1 % of stores are banned.  ``max_stores_per_key`` is
the default (20).

Timed, same data, same process, medians over ``--reps``:

* **link + banned_mask**: a fresh ``IdentityGraph``, ``link`` of every pair, ``ban``, then
  ``banned_mask`` (which runs the union-find rebuild), against
  - scipy: ``np.unique`` key mapping, sort-based pair deduplication, degree filter,
    ``scipy.sparse.csgraph.connected_components`` on the store-key bipartite graph, mask;
  - pure Python: dict key mapping, set deduplication, dict union-find (union by size, path
    halving), on a sample of ``--py-links`` pairs (compared with ecomcore on the same sample);
  - ecomcore with string keys (``"phone:123"``), the Python-object path.
* **blocked** for one applicant presenting 5 keys (integer keys, then tuple keys), median per
  call, against a floor: membership tests in a Python ``set`` of precomputed blocked keys.
* **blocked_many** for 100k applicants x 5 keys (vectorised), as throughput.

The script checks that every method returns the same mask before printing (exit status 1 if
not).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Callable, List, Sequence, Tuple

import numpy as np
import scipy
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401  (a checkout built in place wins over an installed ecomcore)

import ecomcore as ec  # noqa: E402
from ecomcore.governance import DEFAULT_MAX_STORES_PER_KEY  # noqa: E402

TARGETS = "Targets: link + banned_mask >= 5M links/s; blocked (one applicant) median < 10 us."
KINDS = ("owner", "phone", "device", "payout", "address")


# ----------------------------------------------------------------------------------------------
# workload
# ----------------------------------------------------------------------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 of uint64 values (wrapping arithmetic) as int64: looks like hashed identifiers."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x.view(np.int64)


def identity_links(n_links: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """A synthetic store-identity workload.

    Parameters
    ----------
    n_links : int
        Number of (store, key) pairs (five per store).
    seed : int, default 0
        Random seed.

    Returns
    -------
    stores : numpy.ndarray
        int64 store id of each link (stores are ``0 .. n_stores-1``), shuffled.
    keys : numpy.ndarray
        int64 hashed key of each link.
    raw : numpy.ndarray
        ``(n_links, 2)`` int64: key kind (0-4) and identifier, to build string keys.
    banned : numpy.ndarray
        Banned store ids (1 % of stores).
    n_stores : int
        Number of stores.
    """
    rng = np.random.default_rng(seed)
    n_stores = max(1, n_links // len(KINDS))
    n = n_stores * len(KINDS)
    store = np.repeat(np.arange(n_stores, dtype=np.int64), len(KINDS))
    kind = np.tile(np.arange(len(KINDS), dtype=np.int64), n_stores)
    ident = store.copy()  # own identifier by default
    u = rng.random(n)
    pool = max(1, n_stores // 10)
    shared = u < 0.04
    ident[shared] = n_stores + rng.integers(0, pool, int(shared.sum()))
    head = u > 0.995
    ident[head] = 2 * n_stores + np.minimum(rng.zipf(1.3, int(head.sum())), 10_000)
    order = rng.permutation(n)[:n_links]
    store, kind, ident = store[order], kind[order], ident[order]
    keys = _mix(kind * np.int64(1 << 40) + ident)
    banned = rng.choice(n_stores, size=max(1, n_stores // 100), replace=False).astype(np.int64)
    return store, keys, np.stack([kind, ident], axis=1), banned, n_stores


def string_keys(raw: np.ndarray) -> List[str]:
    """``"kind:identifier"`` strings for the links of :func:`identity_links`."""
    return [f"{KINDS[k]}:{i}" for k, i in raw.tolist()]


# ----------------------------------------------------------------------------------------------
# methods: each returns the banned mask over stores 0 .. n_stores-1
# ----------------------------------------------------------------------------------------------
def ecomcore_mask(stores, keys, banned, n_stores: int, max_k: int = DEFAULT_MAX_STORES_PER_KEY) -> np.ndarray:
    """Fresh IdentityGraph: link, ban, banned_mask."""
    g = ec.IdentityGraph(max_stores_per_key=max_k)
    g.link(stores, keys)
    g.ban(banned)
    return g.banned_mask(n_stores)


def scipy_mask(stores, keys, banned, n_stores: int, max_k: int = DEFAULT_MAX_STORES_PER_KEY) -> np.ndarray:
    """Same semantics with NumPy + scipy.sparse.csgraph.connected_components."""
    uk, kinv = np.unique(keys, return_inverse=True)
    n_k = uk.shape[0]
    pairs = np.sort(stores * n_k + kinv.reshape(-1))  # distinct links, by sorting
    # (np.sort + a neighbour test: np.unique without return_inverse is ~10x slower on numpy 2.4)
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    s, k = pairs // n_k, pairs % n_k
    deg = np.bincount(k, minlength=n_k)
    keep = deg[k] <= max_k
    s, k = s[keep], k[keep]
    n = n_stores + n_k
    adj = coo_array((np.ones(s.shape[0], dtype=np.int8), (s, n_stores + k)), shape=(n, n)).tocsr()
    _, labels = connected_components(adj, directed=False)
    comp = np.zeros(labels.max() + 1 if n else 0, dtype=bool)
    comp[labels[banned]] = True
    return comp[labels[:n_stores]]


def python_mask(stores, keys, banned, n_stores: int, max_k: int = DEFAULT_MAX_STORES_PER_KEY) -> np.ndarray:
    """Same semantics in plain Python: dicts, a set of links, a dict union-find."""
    links = set(zip(stores.tolist(), keys.tolist()))
    by_key: dict = {}
    for s, k in links:
        by_key.setdefault(k, []).append(s)
    parent: dict = {}
    size: dict = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s in range(n_stores):
        parent[s] = s
        size[s] = 1
    for ss in by_key.values():
        if len(ss) > max_k:
            continue
        ra = find(ss[0])
        for s in ss[1:]:
            rb = find(s)
            if ra != rb:
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                parent[rb] = ra
                size[ra] += size[rb]
    bad = {find(int(b)) for b in banned}
    return np.array([find(s) in bad for s in range(n_stores)], dtype=bool)


# ----------------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------------
# CPU seconds of this process for each median_time call, in call order (wall time is what the
# tables report; CPU time shows how much of it other processes on a shared machine took)
CPU_MEDIANS: List[float] = []


def median_time(fn: Callable[[], object], reps: int, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls, in seconds (CPU median in CPU_MEDIANS)."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_MEDIANS.append(float(np.median(cpu)))
    return float(np.median(times))


def per_call_us(fn: Callable[[object], object], inputs: list, batches: int = 50) -> float:
    """Median over ``batches`` batches of the mean per-call time (us) of ``fn`` over ``inputs``."""
    for x in inputs[:100]:
        fn(x)
    per = max(1, len(inputs) // batches)
    out = []
    for b in range(batches):
        chunk = inputs[b * per : (b + 1) * per]
        t0 = time.perf_counter_ns()
        for x in chunk:
            fn(x)
        out.append((time.perf_counter_ns() - t0) / len(chunk) / 1e3)
    return float(np.median(out))


def applicants(keys: np.ndarray, n: int, seed: int = 1) -> List[List[int]]:
    """``n`` applicants presenting 5 integer keys each: about half known, half new."""
    rng = np.random.default_rng(seed)
    known = keys[rng.integers(0, keys.shape[0], (n, 5))]
    fresh = _mix(rng.integers(1 << 50, 1 << 51, (n, 5)))
    pick = rng.random((n, 5)) < 0.5
    return np.where(pick, known, fresh).tolist()


# ----------------------------------------------------------------------------------------------
def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--links", type=int, default=5_000_000, help="links in the main workload")
    p.add_argument("--py-links", type=int, default=200_000, help="links for the pure-Python baseline")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    p.add_argument("--calls", type=int, default=20_000, help="blocked() calls to time")
    p.add_argument("--no-strings", action="store_true", help="skip the string-key runs")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.links, args.py_links, args.reps, args.calls = 100_000, 20_000, 3, 2_000
    if args.links < 10 or args.py_links < 10 or args.reps < 1 or args.calls < 100:
        p.error("sizes too small")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; return the process exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when all methods agree, 1 otherwise.
    """
    args = _parse(argv)
    print(
        f"# IdentityGraph side by side ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, numpy {np.__version__}, scipy {scipy.__version__})\n"
    )
    stores, keys, raw, banned, n_s = identity_links(args.links, args.seed)
    n = stores.shape[0]
    ours = ecomcore_mask(stores, keys, banned, n_s)
    ref = scipy_mask(stores, keys, banned, n_s)
    errors = []
    if not np.array_equal(ours, ref):
        errors.append(f"scipy mask differs from ecomcore on {int((ours != ref).sum())} stores")
    p_st, p_keys, _, p_banned, p_ns = identity_links(args.py_links, args.seed + 1)
    py_ours = ecomcore_mask(p_st, p_keys, p_banned, p_ns)
    if not np.array_equal(python_mask(p_st, p_keys, p_banned, p_ns), py_ours):
        errors.append("pure-Python mask differs from ecomcore")
    g = ec.IdentityGraph()
    g.link(stores, keys)
    g.ban(banned)
    print(
        f"workload: {n:,} links, {n_s:,} stores, {g.n_keys:,} distinct keys, {len(g.hub_keys()):,} hub keys, "
        f"{banned.size:,} banned stores, {int(ours.sum()):,} stores blocked\n"
    )
    # -- throughput ----------------------------------------------------------------------
    t_ec = median_time(lambda: ecomcore_mask(stores, keys, banned, n_s), args.reps)
    c_ec = CPU_MEDIANS[-1]
    t_sc = median_time(lambda: scipy_mask(stores, keys, banned, n_s), max(1, min(args.reps, 3)))
    c_sc = CPU_MEDIANS[-1]
    t_ec_py = median_time(lambda: ecomcore_mask(p_st, p_keys, p_banned, p_ns), args.reps)
    c_ec_py = CPU_MEDIANS[-1]
    t_py = median_time(lambda: python_mask(p_st, p_keys, p_banned, p_ns), max(1, min(args.reps, 3)))
    c_py = CPU_MEDIANS[-1]
    rows = [
        ("ecomcore, int64 keys", n, t_ec, c_ec, None),
        ("scipy csgraph, int64 keys", n, t_sc, c_sc, t_sc / t_ec),
    ]
    phase = {}
    g2 = ec.IdentityGraph()
    t0 = time.perf_counter()
    g2.link(stores, keys)
    phase["link"] = time.perf_counter() - t0
    g2.ban(banned)
    t0 = time.perf_counter()
    g2.banned_mask(n_s)
    phase["rebuild + banned_mask"] = time.perf_counter() - t0
    if not args.no_strings:
        skeys = string_keys(raw)
        s_ours = ecomcore_mask(stores, skeys, banned, n_s)
        if not np.array_equal(s_ours, ours):
            errors.append("string keys give another mask than int keys")
        t_str = median_time(lambda: ecomcore_mask(stores, skeys, banned, n_s), max(1, min(args.reps, 3)))
        rows.append(("ecomcore, str keys", n, t_str, CPU_MEDIANS[-1], t_str / t_ec))
    rows += [
        ("ecomcore, int64 keys (sample)", p_st.shape[0], t_ec_py, c_ec_py, None),
        ("pure-Python dict union-find (sample)", p_st.shape[0], t_py, c_py, t_py / t_ec_py),
    ]
    print("## link + ban + banned_mask (fresh graph)\n")
    print("| method | links | median s | links/s | median CPU s | time vs ecomcore int64 (same size) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m, t, c, ratio in rows:
        r = "1.00x" if ratio is None else f"{ratio:.2f}x"
        print(f"| {name} | {m:,} | {t:.3f} | {m / t / 1e6:.2f}M | {c:.3f} | {r} |")
    print(
        f"\nphases (one run, ecomcore int64): link {phase['link']:.3f} s, "
        f"rebuild + banned_mask {phase['rebuild + banned_mask']:.3f} s\n"
    )
    # -- latency -------------------------------------------------------------------------
    apps = applicants(keys, args.calls)
    # floor: a Python set of every blocked key, precomputed (no namespaces, no hubs to update)
    comp_keys = np.unique(keys)
    flags = g.blocked_many(np.arange(comp_keys.shape[0]), comp_keys).blocked
    blocked_keys = set(comp_keys[flags].tolist())

    def floor(ks):
        return any(k in blocked_keys for k in ks)

    agree = sum(g.blocked(a) == floor(a) for a in apps[:2000])
    if agree != min(2000, len(apps)):
        errors.append("blocked() disagrees with the precomputed set")
    lat = [
        ("ecomcore blocked(), 5 int keys", per_call_us(g.blocked, apps)),
        ("floor: Python set of precomputed blocked keys", per_call_us(floor, apps)),
    ]
    arr_apps = [np.array(a, dtype=np.int64) for a in apps]
    lat.append(("ecomcore blocked(), 5 int keys as int64 array", per_call_us(g.blocked, arr_apps)))
    small = min(200_000, n)
    tg = ec.IdentityGraph()
    tkeys = [(KINDS[k], str(i)) for k, i in raw[:small].tolist()]
    tg.link(stores[:small], tkeys)
    tg.ban(banned)
    rng = np.random.default_rng(5)
    t_apps = [
        [tkeys[j] if rng.random() < 0.5 else ("phone", f"new{j}") for j in rng.integers(0, small, 5)]
        for _ in range(args.calls)
    ]
    lat.append(("ecomcore blocked(), 5 tuple keys ('phone', '...')", per_call_us(tg.blocked, t_apps)))
    print("## blocked(): one applicant\n")
    print("| call | median us per call |")
    print("|---|---:|")
    for name, us in lat:
        print(f"| {name} | {us:.2f} |")
    # -- batch ---------------------------------------------------------------------------
    n_app = 100_000
    rng = np.random.default_rng(9)
    b_keys = np.where(
        rng.random(n_app * 5) < 0.5, keys[rng.integers(0, n, n_app * 5)], rng.integers(0, 1 << 60, n_app * 5)
    )
    b_ids = np.repeat(np.arange(n_app), 5)
    t_bm = median_time(lambda: g.blocked_many(b_ids, b_keys), args.reps, warmup=1)
    print(
        f"\n## blocked_many\n\n{n_app:,} applicants x 5 int64 keys: median {t_bm * 1e3:.1f} ms "
        f"({n_app * 5 / t_bm / 1e6:.1f}M keys/s, {t_bm / n_app * 1e6:.2f} us per applicant)\n"
    )
    # -- online: one new store linked, then a query (pays the lazy rebuild) -------------------
    new_store = int(stores.max()) + 1
    rng = np.random.default_rng(11)

    def link_then_query():
        nonlocal new_store
        g.link(new_store, _mix(rng.integers(1 << 52, 1 << 53, 5)))
        new_store += 1
        return g.blocked(apps[0])

    t_on = median_time(link_then_query, args.reps, warmup=1)
    print(
        f"## online update\n\nlink one new store (5 keys) into the {n:,}-link graph, then blocked(): "
        f"median {t_on * 1e3:.1f} ms (the lazy rebuild of the components; batch links to amortise it)\n"
    )
    print(TARGETS)
    ok_tp = n / t_ec >= 5e6
    ok_lat = lat[0][1] < 10
    print(
        f"link + banned_mask: {n / t_ec / 1e6:.2f}M links/s ({'met' if ok_tp else 'NOT met'}); "
        f"blocked: {lat[0][1]:.2f} us ({'met' if ok_lat else 'NOT met'})"
    )
    if errors:
        print("\nDISAGREEMENT:\n" + "\n".join(errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
