"""Item-item similarity and recommend-for-all: ecomcore vs sparse_dot_topn and implicit.

Usage (from the repository root)::

    python bench/similarity_compare.py [--quick] [--reps 3] [--threads 1,2]

Data, the same for every contender (float32):

* ``taobao``: the decayed item history of the Taobao prefix before its last day (815 users x
  55,368 items, ``bench/eval_cobehaviour.py``);
* ``synthetic``: users x items with Zipf item popularity (exponent 0.8) and a log-normal number
  of distinct items per user (mean 40; ``--quick``: smaller), values 1-5.

Timed (median of ``--reps`` runs after one warm-up, all in this process):

1. similarity, cosine, top_n = 100, at 1 thread: ``ecomcore.item_similarity`` from X
   (weighting included) vs sparse_dot_topn's self-join ``sp_matmul_topn(W.T, W, 100)`` on the
   already-weighted W (``threshold=-inf``, ``sort=True``; its result keeps the item itself).
2. recommend for all users, K = 20 neighbours, 10 items per user, history excluded, at equal
   threads: ``item_similarity(X, top_n=K, count_self=True)`` + ``item_ranker(S).topk(X, 10,
   exclude=X)`` vs implicit's ``CosineRecommender(K).fit(X)`` + ``recommend(all users, X,
   N=10)`` (the same scores).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401
from _common import median_time  # noqa: E402

import ecomcore as ec  # noqa: E402


def synthetic_user_items(n_users: int, n_items: int, mean_items: float, seed: int = 0) -> sp.csr_array:
    """Users x items (float32) with Zipf item popularity and log-normal user activity.

    Parameters
    ----------
    n_users, n_items : int
        Shape.
    mean_items : float
        Mean number of (possibly repeated, then merged) draws per user.
    seed : int, default 0
        Random seed.

    Returns
    -------
    scipy.sparse.csr_array
        Canonical CSR, values in 1..5 (duplicates summed and clipped at 5).
    """
    rng = np.random.default_rng(seed)
    sigma = 1.0
    n_per = np.maximum(1, rng.lognormal(np.log(mean_items) - sigma**2 / 2, sigma, n_users).astype(np.int64))
    n_per = np.minimum(n_per, n_items)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p /= p.sum()
    perm = rng.permutation(n_items)
    rows = np.repeat(np.arange(n_users), n_per)
    cols = perm[rng.choice(n_items, size=rows.shape[0], p=p)]
    vals = rng.integers(1, 6, rows.shape[0]).astype(np.float32)
    x = sp.csr_array((vals, (rows, cols)), shape=(n_users, n_items))
    x.sum_duplicates()
    x.data = np.minimum(x.data, 5).astype(np.float32)
    return x


def taobao_history() -> Optional[sp.csr_array]:
    """The Taobao prefix history (None when the data is absent)."""
    try:
        from eval_taobao import last_day_start

        from ecomcore.loaders import load_taobao

        d = load_taobao()
    except (FileNotFoundError, OSError):
        return None
    ev = d.events
    split = last_day_start(ev["time"])
    past = ev["time"] < split
    hist = {c: np.asarray(v)[past] for c, v in ev.items()}
    return ec.item_history(hist, n_users=d.n_users, n_items=d.n_items, now=split)


def cosine_weights(x: sp.csr_array) -> sp.csr_array:
    """W = X with every item column scaled to unit L2 norm (float32)."""
    x = sp.csr_array(x, dtype=np.float64)
    norm = np.sqrt(np.bincount(x.indices, weights=x.data * x.data, minlength=x.shape[1]))
    w = x.copy()
    w.data = (w.data / norm[w.indices]).astype(np.float32)
    return sp.csr_array(w, dtype=np.float32)


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}x"


def run(name: str, x: sp.csr_array, reps: int, threads: Sequence[int], top_n: int = 100, K: int = 20) -> list[str]:
    """Time both comparisons on one data set; return the markdown rows."""
    rows = []
    try:
        from sparse_dot_topn import sp_matmul_topn
    except ImportError:  # pragma: no cover
        sp_matmul_topn = None
    w = cosine_weights(x)
    wt = sp.csr_matrix(w.T.tocsr())
    wm = sp.csr_matrix(w)
    t_ec = median_time(lambda: ec.item_similarity(x, top_n=top_n, n_threads=1), reps, warmup=1)
    t_sdt = None
    if sp_matmul_topn is not None:
        t_sdt = median_time(
            lambda: sp_matmul_topn(wt, wm, top_n=top_n, threshold=-np.inf, sort=True, n_threads=1), reps, warmup=1
        )
    rows.append(
        f"| {name} | similarity cosine top_n={top_n} | 1 | {t_ec:.3f} s | sparse_dot_topn "
        f"{'n/a' if t_sdt is None else f'{t_sdt:.3f} s'} | {_ratio(t_sdt, t_ec)} |"
    )
    try:
        from implicit.nearest_neighbours import CosineRecommender
    except ImportError:  # pragma: no cover
        CosineRecommender = None
    users = np.arange(x.shape[0])
    xm = sp.csr_matrix(x)
    for t in threads:

        def ours(t: int = t) -> None:
            s = ec.item_similarity(x, top_n=K, count_self=True, n_threads=t)
            ec.item_ranker(s).topk(x, 10, exclude=x, n_threads=t)

        t_ours = median_time(ours, reps, warmup=1)
        t_imp = None
        if CosineRecommender is not None:

            def theirs(t: int = t) -> None:
                m = CosineRecommender(K=K, num_threads=t)
                m.fit(xm, show_progress=False)
                m.recommend(users, xm, N=10, filter_already_liked_items=True)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_imp = median_time(theirs, reps, warmup=1)
        rows.append(
            f"| {name} | recommend all users (fit K={K} + top-10) | {t} | {t_ours:.3f} s | implicit "
            f"{'n/a' if t_imp is None else f'{t_imp:.3f} s'} | {_ratio(t_imp, t_ours)} |"
        )
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparisons and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small synthetic data, one rep")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    threads = [int(s) for s in args.threads.split(",") if s]
    sets = []
    tb = taobao_history()
    if tb is not None:
        sets.append(("taobao 815 x 55,368", sp.csr_array(tb, dtype=np.float32)))
    n_u, n_i, mean = (5_000, 5_000, 20) if args.quick else (50_000, 30_000, 40)
    syn = synthetic_user_items(n_u, n_i, mean)
    sets.append((f"synthetic {n_u:,} x {n_i:,} ({syn.nnz:,} nnz)", syn))
    print(f"median of {reps} runs after one warm-up; ratio = baseline / ecomcore\n")
    print("| data | task | threads | ecomcore | baseline | ratio |")
    print("|---|---|---|---|---|---|")
    for name, x in sets:
        for row in run(name, x, reps, threads):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
