"""pytest-benchmark suite: TrustModel.fold against NumPy (bincount) and pandas (groupby), same process.

Sizes come from ``ECOMCORE_BENCH_SIZE``:

* ``quick`` (default): 100k events over 5k merchants; ``pytest bench --benchmark-disable -q``
  runs every benchmark once in seconds, as a smoke test (CI).
* ``full``: 10M events over 100k merchants, 24 indicators (the issue's setting).

Benchmarks are grouped per mode (no buyer / buyer dedupe) so pytest-benchmark's table compares
the methods side by side::

    ECOMCORE_BENCH_SIZE=full pytest bench/test_bench_trust.py --benchmark-group-by=group \\
        --benchmark-columns=median

``bench/trust_compare.py`` prints the same comparison as one table with events/s and ratios.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from trust_compare import DAY, bench_indicators, make_events, numpy_fold, pandas_dense, pandas_fold

import ecomcore as ec

_MODE = os.environ.get("ECOMCORE_BENCH_SIZE", "quick").strip().lower() or "quick"
if _MODE not in ("quick", "full"):
    raise ValueError(f"ECOMCORE_BENCH_SIZE: expected 'quick' or 'full', got {_MODE!r}")
N_EVENTS, N_MERCHANTS = (100_000, 5_000) if _MODE == "quick" else (10_000_000, 100_000)
SLOW = dict(rounds=3, iterations=1, warmup_rounds=0)

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is in the bench extra
    pd = None
needs_pandas = pytest.mark.skipif(pd is None, reason="pandas is not installed (pip install ecomcore[bench])")


class Setup:
    """Events, model and decay constants shared by the benchmarks of one mode."""

    def __init__(self, dedupe: bool) -> None:
        self.dedupe = dedupe
        self.model = ec.TrustModel(bench_indicators(), n_merchants=N_MERCHANTS)
        self.n_ind = self.model.n_indicators
        ev = make_events(N_EVENTS, N_MERCHANTS, seed=1)
        self.events = ev if dedupe else {k: a for k, a in ev.items() if k != "buyer"}
        self.lam = np.log(2.0) / (self.model.half_life_days * DAY)
        self.dd = self.model.dedupe_days * DAY if dedupe else None
        self.t_ref = float(ev["time"].max())
        self.df = None if pd is None else pd.DataFrame(self.events)
        self.name = "buyer dedupe" if dedupe else "no buyer"


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "dedupe"])
def setup(request) -> Setup:
    return Setup(request.param)


def _group(benchmark, s: Setup) -> None:
    benchmark.group = f"trust fold, {s.name}: {N_EVENTS:,} events, {N_MERCHANTS:,} merchants"
    benchmark.extra_info["events"] = N_EVENTS


def test_agreement(setup: Setup) -> None:
    """Not a benchmark: ecomcore, NumPy and pandas compute the same statistics."""
    s = setup
    st = s.model.fold(s.events).stats(s.t_ref)
    ref = numpy_fold(s.events, N_MERCHANTS, s.n_ind, s.lam, s.t_ref, s.dd)
    for a, b in zip((st.n, st.s, st.s2), ref[:3]):
        np.testing.assert_allclose(a.ravel(), b, rtol=1e-9, atol=1e-300)
    np.testing.assert_array_equal(st.events.ravel(), ref[3])
    if pd is not None:
        dense = pandas_dense(pandas_fold(s.df, s.n_ind, s.lam, s.t_ref, s.dd), N_MERCHANTS, s.n_ind)
        for a, b in zip(ref[:3], dense[:3]):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-300)
        np.testing.assert_array_equal(ref[3], dense[3])


def test_ecomcore_fold(benchmark, setup: Setup) -> None:
    _group(benchmark, setup)
    state = benchmark(setup.model.fold, setup.events)
    assert state.n_merchants == N_MERCHANTS


def test_numpy_bincount(benchmark, setup: Setup) -> None:
    _group(benchmark, setup)
    s = setup
    out = benchmark.pedantic(numpy_fold, args=(s.events, N_MERCHANTS, s.n_ind, s.lam, s.t_ref, s.dd), **SLOW)
    assert out[0].shape == (N_MERCHANTS * s.n_ind,)


@needs_pandas
def test_pandas_groupby(benchmark, setup: Setup) -> None:
    _group(benchmark, setup)
    s = setup
    g = benchmark.pedantic(pandas_fold, args=(s.df, s.n_ind, s.lam, s.t_ref, s.dd), **SLOW)
    assert len(g) > 0
