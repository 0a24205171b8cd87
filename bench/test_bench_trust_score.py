"""pytest-benchmark suite: trust scoring (``TrustModel.score``'s work) against a NumPy formulation.

Target (issue 3): scoring 1M merchants with the default catalogue (33 indicators) in < 0.5 s.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 20k merchants; ``pytest bench/test_bench_trust_score.py --benchmark-disable``
  runs every case once in seconds, as a smoke test (CI).
* ``full``: 1M merchants, 200 categories, the default catalogue.

The statistics are synthetic but realistic (Poisson event counts per merchant, binomial
outcomes, normal ratings, gamma amounts, decay weights in (0.3, 1], ~30 % empty cells).  Cases,
grouped so pytest-benchmark's table shows them side by side::

    ECOMCORE_BENCH_SIZE=full python3 -m pytest bench/test_bench_trust_score.py \\
        --benchmark-group-by=group --benchmark-columns=median,min,max

* ``ecomcore fit``        ``score_state`` with empirical-Bayes priors fitted (the default call)
* ``ecomcore frozen``     ``score_state`` with frozen priors (``priors=scores.priors``)
* ``ecomcore cautious``   with Wilson lower bounds
* ``ecomcore +estimates`` the default call plus materialising ``.estimates`` (merchants x 33)
* ``ecomcore 1 thread``   the default call on one thread
* ``numpy``               the same formulas in vectorised NumPy (bincount moments, lexsort
  percentiles): the baseline a user would write without ecomcore

``test_agreement`` (not a benchmark) checks that NumPy and ecomcore give the same index.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _path  # noqa: E402,F401  (a checkout built in place wins over an installed ecomcore)

import ecomcore as ec  # noqa: E402
from ecomcore.indicators import DIMENSIONS  # noqa: E402
from ecomcore.trust_scoring import score_state  # noqa: E402
from ecomcore.trust_stats import TrustStats  # noqa: E402

_MODE = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
if _MODE not in ("quick", "full"):
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {_MODE!r}")
N_MERCHANTS = 20_000 if _MODE == "quick" else 1_000_000
N_CATEGORIES = 200
NOW = 1.7e9
SLOW = dict(rounds=3, iterations=1, warmup_rounds=0)
ROUNDS = dict(rounds=7, iterations=1, warmup_rounds=1)


class _Model:
    """TrustModel's scoring attributes with an explicit thread count."""

    def __init__(self, model: ec.TrustModel, n_threads: int) -> None:
        for name in (
            "indicators",
            "indicator_index",
            "n_merchants",
            "half_life_days",
            "prior_strength",
            "dedupe_days",
            "categories",
            "dimension_weights",
            "veto_floor",
            "veto_days",
            "cautious",
            "z",
            "guarantee_boost",
            "min_category_merchants",
        ):
            setattr(self, name, getattr(model, name))
        self.n_threads = n_threads


def make_stats(model: ec.TrustModel, seed: int = 0) -> TrustStats:
    """Realistic decayed statistics for every (merchant, indicator) cell of ``model``."""
    rng = np.random.default_rng(seed)
    inds = model.indicators
    M, n_ind = model.n_merchants, len(inds)
    kinds = np.array([ind.kind for ind in inds])
    k = rng.poisson(rng.gamma(0.7, 15.0, (M, 1)), (M, n_ind)).astype(np.float64)
    d = rng.uniform(0.3, 1.0, (M, n_ind))  # decay of the merchant's events, one factor per cell
    s = np.zeros((M, n_ind))
    s2 = np.zeros((M, n_ind))
    rate = kinds == "rate"
    x = rng.binomial(k[:, rate].astype(np.int64), rng.beta(2, 8, (M, int(rate.sum())))).astype(np.float64)
    s[:, rate] = x * d[:, rate]
    s2[:, rate] = s[:, rate]
    rating = kinds == "rating"
    mu = 1 + 4 * rng.beta(8, 2, (M, int(rating.sum())))
    kk = k[:, rating]
    s[:, rating] = kk * mu * d[:, rating]
    s2[:, rating] = np.minimum(kk * (mu * mu + 0.8), 25 * kk) * d[:, rating]
    mag = kinds == "magnitude"
    g = rng.gamma(2.0, 20.0, (M, int(mag.sum())))
    kk = k[:, mag]
    s[:, mag] = kk * g * d[:, mag]
    s2[:, mag] = kk * g * g * 1.2 * d[:, mag]
    n = k * d
    veto = np.full(M, -np.inf)
    veto[rng.integers(0, M, M // 1000)] = NOW - rng.uniform(0, 365, M // 1000) * 86400.0
    return TrustStats(now=NOW, n=n, s=s, s2=s2, events=k.astype(np.int64), veto_time=veto)


def numpy_index(model, stats: TrustStats) -> np.ndarray:
    """The trust index by the formulas of ``ecomcore.trust_scoring`` in vectorised NumPy.

    Posterior means (no cautious bounds); empirical-Bayes priors by ``np.bincount`` moments;
    magnitude percentiles by ``np.lexsort`` and mid-ranks; no explanations.
    """
    inds = model.indicators
    n, s, s2, k = stats.n, stats.s, stats.s2, stats.events.astype(np.float64)
    M, n_ind = n.shape
    labels, cat = np.unique(model.categories, return_inverse=True)
    K = labels.shape[0]
    size = np.bincount(cat, minlength=K)
    mm = model.min_category_merchants
    est = np.empty((M, n_ind))
    for i, ind in enumerate(inds):
        ni, si = n[:, i], s[:, i]
        pos = ni > 0
        x = np.divide(si, ni, out=np.zeros(M), where=pos)
        v = np.maximum(np.divide(s2[:, i], ni, out=np.zeros(M), where=pos) - x * x, 0.0)
        kw = np.where(pos, k[:, i], 0.0)

        def bc(w):
            return np.bincount(cat, weights=w, minlength=K)

        J, Ks, KX, KXX, KV, K2 = bc(pos.astype(float)), bc(kw), bc(kw * x), bc(kw * x * x), bc(kw * v), bc(kw * kw)
        g = si.sum() / ni.sum()
        with np.errstate(all="ignore"):
            mu = KX / Ks
            sw2 = KV / (Ks - J)
            tau2 = ((KXX - KX * KX / Ks) - (J - 1) * sw2) / (Ks - K2 / Ks)
            ok = (size >= mm) & (J >= mm) & (Ks > J) & (Ks - K2 / Ks > 0) & (tau2 > 0)
            if ind.kind == "rate":
                fit = mu * (1 - mu) / tau2 - 1
                ok &= tau2 < mu * (1 - mu)
            else:
                fit = sw2 / tau2
                ok &= sw2 > 0
            ok &= np.isfinite(fit) & (fit > 0)
        mean = np.where(ok, mu, g)[cat]
        strength = np.where(ok, fit, model.prior_strength)[cat]
        y = (si + mean * strength) / (ni + strength)
        lower = ind.direction == "lower"
        if ind.kind != "magnitude":
            e = np.clip(y if ind.kind == "rate" else (y - 1) / 4, 0, 1)
            est[:, i] = 1 - e if lower else e
            continue
        # mid-rank percentile within the category among merchants with evidence
        idx = np.flatnonzero(pos)
        order = idx[np.lexsort((y[idx], cat[idx]))]
        c_sorted, y_sorted = cat[order], y[order]
        new_run = np.ones(order.shape[0], dtype=bool)
        new_run[1:] = (c_sorted[1:] != c_sorted[:-1]) | (y_sorted[1:] != y_sorted[:-1])
        run_id = np.cumsum(new_run) - 1
        run_start = np.flatnonzero(new_run)
        run_end = np.append(run_start[1:], order.shape[0])
        block_start = np.searchsorted(c_sorted, np.arange(K), "left")
        block_end = np.searchsorted(c_sorted, np.arange(K), "right")
        r_size = (block_end - block_start).astype(float)
        b0 = block_start[c_sorted]
        f = ((run_start[run_id] - b0) + (run_end[run_id] - b0)) / (2.0 * r_size[c_sorted])
        col = np.empty(M)
        col[order] = 1 - f if lower else f
        prior_mean = np.where(ok, mu, g)
        for c in range(K):
            vals = y_sorted[block_start[c] : block_end[c]]
            lo = np.searchsorted(vals, prior_mean[c], "left")
            hi = np.searchsorted(vals, prior_mean[c], "right")
            fn = ((lo + hi) / 2 + 0.5) / (r_size[c] + 1)
            col[(cat == c) & ~pos] = 1 - fn if lower else fn
        est[:, i] = col
    dim_of = np.array([DIMENSIONS.index(ind.dimension) for ind in inds])
    w = np.array([ind.weight for ind in inds])
    w_dim = w / np.bincount(dim_of, weights=w, minlength=len(DIMENSIONS))[dim_of]
    used = np.unique(dim_of)
    share = np.array([model.dimension_weights[DIMENSIONS[d]] for d in used])
    share = share / share.sum()
    dims = np.stack([est[:, dim_of == d] @ w_dim[dim_of == d] for d in used], axis=1)
    index = np.clip(dims @ share, 0, 1)
    vetoed = stats.now - stats.veto_time < model.veto_days * 86400.0
    return np.where(vetoed, np.minimum(index, model.veto_floor), index)


class Setup:
    """Model and statistics shared by every case."""

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        cats = rng.integers(0, N_CATEGORIES, N_MERCHANTS)
        self.model = ec.TrustModel(ec.default_indicators(), n_merchants=N_MERCHANTS, categories=cats)
        self.cautious = ec.TrustModel(ec.default_indicators(), n_merchants=N_MERCHANTS, categories=cats, cautious=True)
        self.stats = make_stats(self.model)
        self.priors = score_state(self.model, self.stats, categories=None, guarantee=None, priors=None).priors


@pytest.fixture(scope="module")
def setup() -> Setup:
    return Setup()


def _group(benchmark) -> None:
    benchmark.group = f"trust score, {N_MERCHANTS} merchants x 33 indicators"
    benchmark.extra_info["merchants"] = N_MERCHANTS


def test_agreement(setup: Setup) -> None:
    """Not a benchmark: NumPy and ecomcore compute the same index."""
    ours = score_state(setup.model, setup.stats, categories=None, guarantee=None, priors=None)
    np.testing.assert_allclose(numpy_index(setup.model, setup.stats), ours.index, rtol=1e-9, atol=1e-12)


def test_score_fit(benchmark, setup: Setup) -> None:
    _group(benchmark)
    sc = benchmark.pedantic(
        score_state,
        args=(setup.model, setup.stats),
        kwargs=dict(categories=None, guarantee=None, priors=None),
        **ROUNDS,
    )
    assert sc.index.shape == (N_MERCHANTS,)


def test_score_frozen(benchmark, setup: Setup) -> None:
    _group(benchmark)
    benchmark.pedantic(
        score_state,
        args=(setup.model, setup.stats),
        kwargs=dict(categories=None, guarantee=None, priors=setup.priors),
        **ROUNDS,
    )


def test_score_cautious(benchmark, setup: Setup) -> None:
    _group(benchmark)
    benchmark.pedantic(
        score_state,
        args=(setup.cautious, setup.stats),
        kwargs=dict(categories=None, guarantee=None, priors=None),
        **ROUNDS,
    )


def test_score_with_estimates(benchmark, setup: Setup) -> None:
    _group(benchmark)

    def run():
        return score_state(setup.model, setup.stats, categories=None, guarantee=None, priors=None).estimates

    est = benchmark.pedantic(run, **ROUNDS)
    assert est.shape == (N_MERCHANTS, 33)


def test_score_one_thread(benchmark, setup: Setup) -> None:
    _group(benchmark)
    benchmark.pedantic(
        score_state,
        args=(_Model(setup.model, 1), setup.stats),
        kwargs=dict(categories=None, guarantee=None, priors=None),
        **ROUNDS,
    )


def test_numpy(benchmark, setup: Setup) -> None:
    _group(benchmark)
    benchmark.pedantic(numpy_index, args=(setup.model, setup.stats), **SLOW)
