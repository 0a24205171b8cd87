"""Fold side of the trust engine: TrustModel.fold, TrustState (stats, merge, resize, persistence).

Every statistic is checked against :func:`reference_stats`, a plain loop over the events with
weights ``2 ** (-(now - t) / h)`` and the deduplication rule written out with a dict.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecomcore as ec
from ecomcore import _persist
from ecomcore.indicators import Indicator
from ecomcore.trust import TrustModel, TrustState

DAY = 86400.0
T0 = 1.7e9

INDICATORS = [
    Indicator("refund", "after_sales", "rate", "lower"),
    Indicator("stars", "product_quality", "rating", "higher"),
    Indicator("ship_hours", "service_quality", "magnitude", "lower"),
    Indicator("counterfeit", "product_quality", "rate", "lower", veto=True),
    Indicator("repurchase", "social_evaluation", "rate", "higher"),
]
N_IND = len(INDICATORS)


def model(n_merchants: int = 20, **kw) -> TrustModel:
    return TrustModel(INDICATORS, n_merchants=n_merchants, **kw)


# ---------------------------------------------------------------------------------------------
# reference


def reference_stats(ev, n_m, half_life_days, dedupe_days, now, indicators=INDICATORS):
    """Plain-Python decayed statistics: (n, s, s2, events, veto_time)."""
    m = np.asarray(ev["merchant"], dtype=np.int64)
    i = np.asarray(ev["indicator"], dtype=np.int64)
    v = np.asarray(ev["value"], dtype=np.float64)
    t = np.asarray(ev["time"], dtype=np.float64)
    b = np.asarray(ev["buyer"], dtype=np.int64) if "buyer" in ev else np.full(m.shape, -1)
    counted = []
    best = {}
    for j in range(m.size):
        if b[j] < 0:
            counted.append(j)
            continue
        key = (m[j], i[j], b[j], math.floor(t[j] / (dedupe_days * DAY)))
        if key not in best or (t[j], v[j]) < (t[best[key]], v[best[key]]):
            best[key] = j
    counted.extend(best.values())
    n_i = len(indicators)
    n = np.zeros((n_m, n_i))
    s = np.zeros((n_m, n_i))
    s2 = np.zeros((n_m, n_i))
    cnt = np.zeros((n_m, n_i), dtype=np.int64)
    for j in counted:
        w = 2.0 ** (-(now - t[j]) / (half_life_days * DAY))
        n[m[j], i[j]] += w
        s[m[j], i[j]] += w * v[j]
        s2[m[j], i[j]] += w * v[j] ** 2
        cnt[m[j], i[j]] += 1
    veto = np.full(n_m, -np.inf)
    for j in range(m.size):
        if indicators[i[j]].veto and v[j] == 1:
            veto[m[j]] = max(veto[m[j]], t[j])
    return n, s, s2, cnt, veto


def random_events(rng, n, n_m=20, *, buyers=None, span_days=400.0, t_end=T0, int_time=False):
    """Valid random events; ``buyers``: None (no column) or the number of distinct buyers."""
    i = rng.integers(0, N_IND, n)
    v = np.empty(n)
    for k, ind in enumerate(INDICATORS):
        sel = i == k
        if ind.kind == "rate":
            v[sel] = rng.integers(0, 2, sel.sum())
        elif ind.kind == "rating":
            v[sel] = rng.integers(1, 6, sel.sum())
        else:
            v[sel] = rng.gamma(2.0, 20.0, sel.sum())
    t = t_end - rng.random(n) * span_days * DAY
    if int_time:
        t = np.floor(t).astype(np.int64)
    ev = {"merchant": rng.integers(0, n_m, n), "indicator": i, "value": v, "time": t}
    if buyers is not None:
        b = rng.integers(0, buyers, n)
        b[rng.random(n) < 0.2] = -1
        ev["buyer"] = b
    return ev


def take(ev, idx):
    return {k: np.asarray(a)[idx] for k, a in ev.items()}


def assert_stats_close(a, b, rtol=1e-9):
    np.testing.assert_allclose(a.n, b.n, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(a.s, b.s, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(a.s2, b.s2, rtol=rtol, atol=1e-300)
    np.testing.assert_array_equal(a.events, b.events)
    np.testing.assert_array_equal(a.veto_time, b.veto_time)


def assert_matches_reference(stats, ev, n_m, half_life_days=90.0, dedupe_days=10.0, rtol=1e-9):
    n, s, s2, cnt, veto = reference_stats(ev, n_m, half_life_days, dedupe_days, stats.now)
    np.testing.assert_allclose(stats.n, n, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(stats.s, s, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(stats.s2, s2, rtol=rtol, atol=1e-300)
    np.testing.assert_array_equal(stats.events, cnt)
    np.testing.assert_array_equal(stats.veto_time, veto)


def snapshot(state: TrustState):
    """Everything a fold could modify."""
    return (
        state._acc.copy(),
        state._veto.copy(),
        state._table.copy(),
        state._used,
        state._t_ref,
        state._last_time,
        state.n_merchants,
    )


def assert_unchanged(state: TrustState, snap) -> None:
    now = snapshot(state)
    np.testing.assert_array_equal(now[0], snap[0])
    np.testing.assert_array_equal(now[1], snap[1])
    np.testing.assert_array_equal(now[2], snap[2])
    assert now[3:] == snap[3:]


# ---------------------------------------------------------------------------------------------
# statistics against the reference


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("buyers", [None, 3, 50])
def test_matches_reference(seed, buyers):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, 600, buyers=buyers, int_time=seed % 2 == 1)
    mdl = model(half_life_days=[90.0, 7.0, 1.0, 365.0][seed], dedupe_days=[10.0, 1.0, 0.5, 30.0][seed])
    state = mdl.fold(ev)
    for now in (T0, T0 + 3 * DAY, T0 - 50 * DAY):
        assert_matches_reference(state.stats(now), ev, 20, mdl.half_life_days, mdl.dedupe_days)


@st.composite
def event_sets(draw):
    n = draw(st.integers(0, 60))
    n_m = draw(st.integers(1, 4))
    rows = []
    for _ in range(n):
        i = draw(st.integers(0, N_IND - 1))
        kind = INDICATORS[i].kind
        if kind == "rate":
            v = float(draw(st.integers(0, 1)))
        elif kind == "rating":
            v = draw(st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0, 4.5, 1.25]))
        else:
            v = draw(st.floats(0, 1e6, allow_nan=False))
        t = T0 - draw(st.floats(0, 60 * DAY, allow_nan=False))
        rows.append((draw(st.integers(0, n_m - 1)), i, v, t, draw(st.integers(-1, 2))))
    cut = draw(st.integers(0, n))
    return n_m, rows, cut


def rows_to_events(rows, with_buyer=True):
    cols = list(zip(*rows)) if rows else [[]] * 5
    ev = {
        "merchant": np.array(cols[0], dtype=np.int64),
        "indicator": np.array(cols[1], dtype=np.int64),
        "value": np.array(cols[2], dtype=np.float64),
        "time": np.array(cols[3], dtype=np.float64),
    }
    if with_buyer:
        ev["buyer"] = np.array(cols[4], dtype=np.int64)
    return ev


@given(event_sets(), st.sampled_from([0.5, 3.0, 90.0]), st.sampled_from([0.25, 2.0, 10.0]))
def test_hypothesis_reference_and_splits(data, half_life, dedupe):
    n_m, rows, cut = data
    mdl = model(n_m, half_life_days=half_life, dedupe_days=dedupe)
    ev = rows_to_events(rows)
    whole = mdl.fold(ev)
    assert_matches_reference(whole.stats(T0 + DAY), ev, n_m, half_life, dedupe)
    a, b = rows_to_events(rows[:cut]), rows_to_events(rows[cut:])
    ab = mdl.fold(b, mdl.fold(a))
    ba = mdl.fold(a, mdl.fold(b))
    merged = mdl.fold(a).merge(mdl.fold(b))
    for other in (ab, ba, merged):
        assert_stats_close(other.stats(T0 + DAY), whole.stats(T0 + DAY))


def test_half_life_weight_is_one_half():
    for h in (90.0, 1.0, 0.01, 3650.0):
        mdl = model(half_life_days=h)
        now = T0 + 12345.678
        ev = {"merchant": [3], "indicator": ["stars"], "value": [4.0], "time": [now - h * DAY]}
        st_ = mdl.fold(ev).stats(now)
        assert abs(st_.n[3, 1] - 0.5) <= 1e-12
        assert abs(st_.s[3, 1] - 2.0) <= 4e-12
        assert abs(mdl.fold(dict(ev, buyer=[9])).stats(now).n[3, 1] - 0.5) <= 1e-12
        # and two half-lives: a quarter
        assert abs(mdl.fold(ev).stats(now + h * DAY).n[3, 1] - 0.25) <= 1e-12


# ---------------------------------------------------------------------------------------------
# split folds and merges


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("buyers", [None, 5])
def test_split_folds_and_merges_equal_one_fold(seed, buyers):
    rng = np.random.default_rng(100 + seed)
    mdl = model(half_life_days=[30.0, 2.0, 0.2][seed], dedupe_days=[10.0, 3.0, 1.0][seed])
    ev = random_events(rng, 2000, buyers=buyers, span_days=[400.0, 60.0, 40.0][seed])
    now = T0 + DAY
    ref = mdl.fold(ev).stats(now)
    n = len(ev["merchant"])
    for trial in range(4):
        perm = rng.permutation(n) if trial % 2 else np.arange(n)
        cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(1, 6), replace=False))
        parts = [take(ev, p) for p in np.split(perm, cuts)]
        # functional, forward and backward
        fwd = None
        for p in parts:
            fwd = mdl.fold(p, fwd)
        assert_stats_close(fwd.stats(now), ref)
        back = mdl.new_state()
        for p in parts[::-1]:
            out = mdl.fold(p, into=back)
            assert out is back
        assert_stats_close(back.stats(now), ref)
        # merged shards, merged in a random tree
        shards = [mdl.fold(p) for p in parts]
        while len(shards) > 1:
            a = shards.pop(rng.integers(len(shards)))
            b = shards.pop(rng.integers(len(shards)))
            shards.append(a.merge(b))
        assert_stats_close(shards[0].stats(now), ref)


def test_functional_fold_leaves_input_state_alone():
    rng = np.random.default_rng(7)
    mdl = model()
    base = mdl.fold(random_events(rng, 100, buyers=4))
    snap = snapshot(base)
    new = mdl.fold(random_events(rng, 100, buyers=4), base)
    assert new is not base
    assert_unchanged(base, snap)
    assert new.stats(T0).events.sum() > base.stats(T0).events.sum()
    with pytest.raises(ValueError, match="not both"):
        mdl.fold(random_events(rng, 3), base, into=base)


def test_merge_different_sizes_and_incompatible_states():
    rng = np.random.default_rng(3)
    mdl = model(10)
    ev_small = random_events(rng, 300, n_m=10, buyers=4)
    ev_big = random_events(rng, 300, n_m=25, buyers=4)
    small = mdl.fold(ev_small)
    big = mdl.fold(ev_big, mdl.new_state(25))
    for merged in (small.merge(big), big.merge(small)):
        assert merged.n_merchants == 25
        both = {k: np.concatenate([ev_small[k], ev_big[k]]) for k in ev_small}
        assert_matches_reference(merged.stats(T0), both, 25)
    with pytest.raises(ValueError, match="half-li"):
        small.merge(model(10, half_life_days=30.0).new_state())
    with pytest.raises(ValueError, match="dedupe_days"):
        small.merge(model(10, dedupe_days=3.0).new_state())
    other = TrustModel(INDICATORS[:3], n_merchants=10).new_state()
    with pytest.raises(ValueError, match="indicators"):
        small.merge(other)
    with pytest.raises(TypeError):
        small.merge("state")
    # a state merged with an empty one is unchanged
    assert_stats_close(small.merge(mdl.new_state(3)).stats(T0), small.stats(T0))


# ---------------------------------------------------------------------------------------------
# buyer deduplication and vetoes


def test_dedupe_hundred_ratings_by_one_buyer_count_once():
    mdl = model(5, dedupe_days=10.0)
    bucket0 = math.floor(T0 / (10 * DAY)) * 10 * DAY  # start of a bucket
    rng = np.random.default_rng(0)
    times = bucket0 + 1000 + rng.random(100) * (9 * DAY)
    values = rng.integers(1, 6, 100).astype(float)
    ev = {"merchant": [2] * 100, "indicator": ["stars"] * 100, "value": values, "time": times, "buyer": [7] * 100}
    j = int(np.argmin(times))
    one = {"merchant": [2], "indicator": ["stars"], "value": [values[j]], "time": [times[j]], "buyer": [7]}
    now = bucket0 + 20 * DAY
    many_st, one_st = mdl.fold(ev).stats(now), mdl.fold(one).stats(now)
    for f in ("n", "s", "s2", "events"):
        np.testing.assert_array_equal(getattr(many_st, f), getattr(one_st, f))
    assert many_st.events[2, 1] == 1
    # ... so they move the trust index exactly as the one event does
    np.testing.assert_array_equal(mdl.score(mdl.fold(ev), now).index, mdl.score(mdl.fold(one), now).index)
    # same events without buyer ids count 100 times
    no_buyer = {k: a for k, a in ev.items() if k != "buyer"}
    assert mdl.fold(no_buyer).stats(now).events[2, 1] == 100
    # buyer -1 means no buyer
    assert mdl.fold(dict(ev, buyer=[-1] * 100)).stats(now).events[2, 1] == 100
    # other buyers, buckets, merchants and indicators count separately
    ev2 = {
        "merchant": [2, 2, 2, 3, 2],
        "indicator": ["stars", "stars", "stars", "stars", "refund"],
        "value": [5.0, 5.0, 5.0, 5.0, 1.0],
        "time": [bucket0 + 5, bucket0 + 6, bucket0 + 10 * DAY + 1, bucket0 + 7, bucket0 + 8],
        "buyer": [7, 8, 7, 7, 7],
    }
    s2 = mdl.fold(ev2).stats(now)
    assert s2.events[2, 1] == 3 and s2.events[3, 1] == 1 and s2.events[2, 0] == 1


def test_dedupe_rule_is_earliest_then_smallest_value_and_order_free():
    mdl = model(5, dedupe_days=10.0)
    b0 = math.floor(T0 / (10 * DAY)) * 10 * DAY
    ev = {
        "merchant": [1, 1, 1, 1],
        "indicator": [1, 1, 1, 1],
        "value": [5.0, 2.0, 3.0, 1.0],
        "time": [b0 + 50, b0 + 50, b0 + 100, b0 + 49.5],
        "buyer": [4, 4, 4, 4],
    }
    now = b0 + 200
    w = 2.0 ** (-(now - (b0 + 49.5)) / (90 * DAY))
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        s = mdl.fold(take(ev, perm)).stats(now)
        assert s.events[1, 1] == 1
        assert s.s[1, 1] == pytest.approx(1.0 * w, rel=1e-13)
    # without the 49.5 s event the tie at 50 s goes to the smaller value
    s = mdl.fold(take(ev, [0, 1, 2])).stats(now)
    assert s.s[1, 1] == pytest.approx(2.0 * 2.0 ** (-(now - (b0 + 50)) / (90 * DAY)), rel=1e-13)


def test_dedupe_shuffled_input_same_stats_and_table_grows():
    rng = np.random.default_rng(11)
    mdl = model(50, dedupe_days=2.0)
    ev = random_events(rng, 5000, n_m=50, buyers=40, span_days=30)  # ~ thousands of keys: table grows
    a = mdl.fold(ev)
    b = mdl.fold(take(ev, rng.permutation(5000)))
    assert a.n_dedupe_keys == b.n_dedupe_keys > 1024
    assert_stats_close(a.stats(T0), b.stats(T0), rtol=1e-12)
    assert_matches_reference(a.stats(T0), ev, 50, 90.0, 2.0)


def test_dedupe_table_grows_during_folds():
    rng = np.random.default_rng(21)
    mdl = model(50, dedupe_days=1.0)
    ev = random_events(rng, 12000, n_m=50, buyers=10**6, span_days=5)  # nearly every key distinct
    state = mdl.new_state()
    for part in np.array_split(np.arange(12000), 7):  # later batches outgrow the table mid-fold
        mdl.fold(take(ev, part), into=state)
    assert state.n_dedupe_keys > 9000
    assert_matches_reference(state.stats(T0), ev, 50, 90.0, 1.0)
    whole = mdl.fold(ev)  # one big batch: table sized from the key estimate
    assert whole.n_dedupe_keys == state.n_dedupe_keys
    assert_stats_close(whole.stats(T0), state.stats(T0))


def test_veto_time():
    mdl = model(4)
    ev = {
        "merchant": [0, 0, 1, 1, 2, 3],
        "indicator": ["counterfeit", "counterfeit", "counterfeit", "refund", "counterfeit", "counterfeit"],
        "value": [1, 1, 0, 1, 1, 1],
        "time": [T0 - 100, T0 - 50, T0 - 10, T0 - 5, T0 - 30, T0 - 20],
        "buyer": [-1, -1, -1, -1, 5, 5],
    }
    s = mdl.fold(ev).stats(T0)
    np.testing.assert_array_equal(s.veto_time, [T0 - 50, -np.inf, T0 - 30, T0 - 20])
    # a veto event also counts as an ordinary trial
    assert s.events[0, 3] == 2 and s.s[0, 3] > 0
    # earlier vetoes folded later do not move it back; merge takes the maximum
    st_ = mdl.fold(ev)
    mdl.fold({"merchant": [0], "indicator": [3], "value": [1], "time": [T0 - 1000]}, into=st_)
    assert st_.stats(T0).veto_time[0] == T0 - 50
    other = mdl.fold({"merchant": [1], "indicator": [3], "value": [1], "time": [T0 - 7]})
    np.testing.assert_array_equal(st_.merge(other).stats(T0).veto_time, [T0 - 50, T0 - 7, T0 - 30, T0 - 20])


# ---------------------------------------------------------------------------------------------
# bad input


def bad_cases():
    good = {"merchant": [0, 1, 2], "indicator": [0, 1, 2], "value": [1.0, 4.0, 3.5], "time": [T0, T0, T0]}

    def with_(**kw):
        ev = {k: list(v) for k, v in good.items()}
        for k, v in kw.items():
            if v is None:
                ev.pop(k)
            else:
                ev[k] = v
        return ev

    return [
        ("unknown name", with_(indicator=["refund", "stars", "nope"]), ValueError, "indicator.*'nope'"),
        ("unknown id", with_(indicator=[0, 1, 5]), ValueError, r"indicator.*id 5"),
        ("truncated names", with_(indicator=np.array(["ref", "sta", "shi"])), ValueError, "indicator.*'ref'"),
        ("empty name", with_(indicator=np.array(["refund", "", "stars"])), ValueError, "indicator.*'' at position 1"),
        ("negative indicator id", with_(indicator=[0, -1, 2]), ValueError, "indicator"),
        ("merchant too big", with_(merchant=[0, 1, 20]), ValueError, r"merchant.*20.*\[0, 20\)"),
        ("negative merchant", with_(merchant=[-1, 1, 2]), ValueError, "merchant.*-1"),
        ("NaN value", with_(value=[1.0, float("nan"), 3.0]), ValueError, "value.*non-finite"),
        ("inf magnitude", with_(value=[1.0, 4.0, float("inf")]), ValueError, "value.*non-finite"),
        ("rate 0.5", with_(value=[0.5, 4.0, 3.0]), ValueError, "value.*'refund'.*0 or 1"),
        ("rate 2", with_(value=[2.0, 4.0, 3.0]), ValueError, "value.*0 or 1"),
        ("rating 0", with_(value=[1.0, 0.0, 3.0]), ValueError, r"value.*'stars'.*\[1, 5\]"),
        ("rating 6", with_(value=[1.0, 6.0, 3.0]), ValueError, r"value.*\[1, 5\]"),
        ("negative magnitude", with_(value=[1.0, 4.0, -0.5]), ValueError, "value.*'ship_hours'.*non-negative"),
        ("NaN time", with_(time=[T0, float("nan"), T0]), ValueError, "time.*non-finite"),
        ("inf time", with_(time=[T0, T0, float("inf")]), ValueError, "time.*non-finite"),
        ("ms time", with_(time=[T0 * 1000, T0, T0]), ValueError, "time.*Unix time in seconds"),
        ("short value", with_(value=[1.0, 4.0]), ValueError, r"value.*length 2.*length 3"),
        ("long time", with_(time=[T0] * 4), ValueError, "time.*length 4"),
        ("missing time", with_(time=None), ValueError, "missing column 'time'"),
        ("float merchant", with_(merchant=[0.0, 1.0, 2.0]), TypeError, "merchant.*integer"),
        ("bool merchant", with_(merchant=[True, False, True]), TypeError, "merchant.*integer"),
        ("float indicator", with_(indicator=[0.0, 1.0, 2.0]), TypeError, "indicator"),
        ("string value", with_(value=["1", "4", "3"]), TypeError, "value.*numbers"),
        ("complex value", with_(value=np.array([1, 4, 3], dtype=complex)), TypeError, "value"),
        ("float32 time", with_(time=np.array([T0] * 3, dtype=np.float32)), TypeError, "time.*float32"),
        ("string time", with_(time=["a", "b", "c"]), TypeError, "time"),
        ("2-D merchant", with_(merchant=[[0, 1, 2]]), ValueError, "merchant.*1-D"),
        ("buyer -2", dict(good, buyer=[1, -2, 3]), ValueError, "buyer.*-2"),
        ("float buyer", dict(good, buyer=[1.0, 2.0, 3.0]), TypeError, "buyer.*integer"),
        ("short buyer", dict(good, buyer=[1, 2]), ValueError, "buyer.*length"),
        (
            "NaT time",
            with_(time=np.array(["2024-01-01", "NaT", "2024-01-02"], dtype="datetime64[s]")),
            ValueError,
            "time.*NaT",
        ),
        (
            "mixed object names",
            with_(indicator=np.array(["refund", 3, "stars"], dtype=object)),
            ValueError,
            "indicator.*3",
        ),
        ("unhashable names", with_(indicator=np.array([["a"], "refund", "x"], dtype=object)), TypeError, "indicator"),
    ]


@pytest.mark.parametrize("case", bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_and_leaves_state_unchanged(case):
    _, ev, exc, pattern = case
    rng = np.random.default_rng(0)
    mdl = model()
    state = mdl.fold(random_events(rng, 200, buyers=5))
    snap = snapshot(state)
    with pytest.raises(exc, match=pattern):
        mdl.fold(ev, into=state)
    assert_unchanged(state, snap)
    with pytest.raises(exc, match=pattern):
        mdl.fold(ev, state)
    assert_unchanged(state, snap)


def test_bad_event_late_in_a_big_batch_leaves_state_unchanged():
    rng = np.random.default_rng(1)
    mdl = model()
    state = mdl.fold(random_events(rng, 500, buyers=5))
    snap = snapshot(state)
    for buyers in (None, 5):
        ev = random_events(rng, 20000, buyers=buyers, t_end=T0 + 500 * DAY)  # would also rebase
        ev["value"][-1] = 7.0
        ev["indicator"][-1] = 1
        with pytest.raises(ValueError, match="position 19999"):
            mdl.fold(ev, into=state)
        assert_unchanged(state, snap)


def test_bad_events_container_and_states():
    mdl = model()
    for bad in ("merchant", 3, np.zeros((3, 4)), [1, 2, 3]):
        with pytest.raises((TypeError, ValueError)):
            mdl.fold(bad)
    ev = {"merchant": [0], "indicator": [0], "value": [1], "time": [T0]}
    with pytest.raises(TypeError, match="into"):
        mdl.fold(ev, into="state")
    with pytest.raises(ValueError, match="half-life"):
        mdl.fold(ev, model(half_life_days=1.0).new_state())
    with pytest.raises(ValueError, match="other indicators"):
        mdl.fold(ev, into=TrustModel(INDICATORS[:2], n_merchants=20).new_state())


# ---------------------------------------------------------------------------------------------
# input formats


def test_column_formats_and_dtypes_agree():
    rng = np.random.default_rng(5)
    ev = random_events(rng, 400, buyers=6)
    mdl = model()
    ref = mdl.fold(ev).stats(T0)
    names = np.array([ind.name for ind in INDICATORS])
    variants = [
        {k: list(a) for k, a in ev.items()},
        dict(ev, merchant=ev["merchant"].astype(np.int32), buyer=ev["buyer"].astype(np.int32)),
        dict(ev, merchant=ev["merchant"].astype(np.uint16), indicator=ev["indicator"].astype(np.uint8)),
        dict(ev, merchant=ev["merchant"].astype(np.uint64), indicator=ev["indicator"].astype(np.int16)),
        dict(ev, merchant=ev["merchant"].astype(">i8")),
        dict(ev, indicator=names[ev["indicator"]]),
        dict(ev, indicator=names[ev["indicator"]].astype(object)),
        dict(ev, indicator=np.char.encode(names[ev["indicator"]], "utf-8")),
        dict(ev, indicator=names[ev["indicator"]].astype(">U30")),
        dict(ev, indicator=[str(x) for x in names[ev["indicator"]]]),
        dict(ev, merchant=ev["merchant"][::-1][::-1].copy()[::1]),
    ]
    for k, var in enumerate(variants):
        assert_stats_close(mdl.fold(var).stats(T0), ref), k
    # strided (non-contiguous) columns
    wide = {k: np.repeat(np.asarray(a), 2)[::2] for k, a in ev.items()}
    assert_stats_close(mdl.fold(wide).stats(T0), ref)
    # structured array
    rec = np.zeros(
        400, dtype=[("merchant", "<i8"), ("indicator", "<i4"), ("value", "<f8"), ("time", "<f8"), ("buyer", "<i8")]
    )
    for k in ev:
        rec[k] = ev[k]
    assert_stats_close(mdl.fold(rec).stats(T0), ref)
    # int64 and datetime64 times (whole seconds)
    ev_int = dict(ev, time=np.floor(ev["time"]).astype(np.int64))
    ref_int = mdl.fold(ev_int).stats(T0)
    assert_matches_reference(ref_int, ev_int, 20)
    dt = ev_int["time"].astype("datetime64[s]")
    assert_stats_close(mdl.fold(dict(ev, time=dt)).stats(T0), ref_int)
    # integer and boolean values of rate indicators
    rates = {"merchant": [0, 1], "indicator": [0, 0], "value": np.array([True, False]), "time": [T0, T0]}
    assert mdl.fold(rates).stats(T0).s[0, 0] == 1.0
    # float32 values are widened
    ev32 = dict(ev, value=ev["value"].astype(np.float32))
    assert_stats_close(mdl.fold(ev32).stats(T0), mdl.fold(dict(ev32, value=ev32["value"].astype(float))).stats(T0))


def test_pandas_dataframe_and_categorical():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(6)
    ev = random_events(rng, 300, buyers=6)
    mdl = model()
    ref = mdl.fold(ev).stats(T0)
    df = pd.DataFrame(ev)
    assert_stats_close(mdl.fold(df).stats(T0), ref)
    names = np.array([ind.name for ind in INDICATORS])
    df["indicator"] = pd.Categorical(names[ev["indicator"]])
    assert_stats_close(mdl.fold(df).stats(T0), ref)
    df["indicator"] = names[ev["indicator"]]  # object column of str
    assert_stats_close(mdl.fold(df).stats(T0), ref)
    bad = df.copy()
    bad["indicator"] = pd.Categorical(["refund"] * 299 + ["bogus"])
    with pytest.raises(ValueError, match="'bogus' at position 299"):
        mdl.fold(bad)
    bad["indicator"] = pd.Categorical(["refund"] * 299 + [None])
    with pytest.raises(ValueError, match="missing value at position 299"):
        mdl.fold(bad)


class _ArrowLikeColumn:
    def __init__(self, a):
        self._a = np.asarray(a)

    def to_numpy(self):
        return self._a


class _ArrowLikeTable:
    """Duck-typed stand-in for pyarrow.Table (column_names / column(name) / to_numpy)."""

    def __init__(self, cols):
        self._cols = cols
        self.column_names = list(cols)

    def column(self, name):
        return _ArrowLikeColumn(self._cols[name])


def test_arrow_like_table():
    rng = np.random.default_rng(8)
    ev = random_events(rng, 200, buyers=3)
    mdl = model()
    assert_stats_close(mdl.fold(_ArrowLikeTable(ev)).stats(T0), mdl.fold(ev).stats(T0))
    no_buyer = {k: a for k, a in ev.items() if k != "buyer"}
    assert_stats_close(mdl.fold(_ArrowLikeTable(no_buyer)).stats(T0), mdl.fold(no_buyer).stats(T0))


def test_empty_events_and_zero_merchants():
    mdl = model(0)
    empty = {"merchant": [], "indicator": [], "value": [], "time": []}
    st_ = mdl.fold(empty)
    assert st_.n_merchants == 0 and st_.last_time is None
    s = st_.stats(T0)
    assert s.n.shape == (0, N_IND)
    with pytest.raises(ValueError, match="merchant"):
        mdl.fold({"merchant": [0], "indicator": [0], "value": [1], "time": [T0]})
    st_.resize(2)
    mdl.fold({"merchant": [1], "indicator": [0], "value": [1], "time": [T0]}, into=st_)
    assert st_.stats(T0).events[1, 0] == 1
    # an empty state reads all zeros at any time
    z = model(3).new_state().stats(-1e11)
    assert not z.n.any() and np.isneginf(z.veto_time).all()


# ---------------------------------------------------------------------------------------------
# time spans, rebasing, reading in the past


def test_rebase_over_twenty_years_with_one_day_half_life():
    rng = np.random.default_rng(9)
    mdl = model(5, half_life_days=1.0, dedupe_days=1.0)
    n = 3000
    t_start = T0 - 20 * 365 * DAY
    ev = random_events(rng, n, n_m=5, buyers=4, span_days=20 * 365)
    order = np.argsort(ev["time"])
    chrono = [take(ev, p) for p in np.array_split(order, 40)]
    st_fwd = mdl.new_state()
    for part in chrono:
        mdl.fold(part, into=st_fwd)
    st_back = mdl.new_state()
    for part in chrono[::-1]:
        mdl.fold(part, into=st_back)
    assert st_fwd.reference_time > t_start + 365 * DAY  # rebased along the way
    assert np.isfinite(st_fwd._acc).all() and np.isfinite(st_back._acc).all()
    for now in (T0, T0 + 0.5 * DAY, T0 + 30 * DAY):
        for state in (st_fwd, st_back, mdl.fold(ev)):
            s = state.stats(now)
            assert np.isfinite(s.n).all() and np.isfinite(s.s2).all()
            assert_matches_reference(s, ev, 5, 1.0, 1.0)
    # reading ten years back: later events would weigh 2**3650 -> a clear error, not inf/NaN
    with pytest.raises(ValueError, match="now"):
        st_fwd.stats(T0 - 10 * 365 * DAY)
    # a little in the past is fine: later events weigh more than 1
    s = st_fwd.stats(T0 - 3 * DAY)
    assert_matches_reference(s, ev, 5, 1.0, 1.0)


def test_events_far_older_than_reference_time_underflow_gracefully():
    mdl = model(3, half_life_days=1.0)
    state = mdl.fold({"merchant": [0], "indicator": [1], "value": [5.0], "time": [T0]})
    old = {"merchant": [1, 1], "indicator": [1, 1], "value": [5.0, 3.0], "time": [T0 - 3000 * DAY, T0 - 2 * DAY]}
    mdl.fold(old, into=state)
    s = state.stats(T0)
    assert s.events[1, 1] == 2
    assert s.n[1, 1] == pytest.approx(0.25, rel=1e-12)
    assert np.isfinite(s.n).all()


@pytest.mark.parametrize("half_lives", [1000, 1021, 1023, 1070, 1074, 1100, 1500, 5000])
@pytest.mark.parametrize("dedupe", [False, True])
def test_stats_of_evidence_decayed_past_the_smallest_normal_double_are_zero(half_lives, dedupe):
    """Weights below the smallest normal double (2**-1022) read as no evidence: n = s = s2 = 0.

    Subnormal n, s and s2 round independently (s would leave [n, 5 n] or stay non-zero where n
    reached 0), so the whole cell is cleared; its event count is kept."""
    mdl = model(2, half_life_days=1.0)
    ev = {"merchant": [0, 0, 0, 0], "indicator": [1, 1, 2, 0], "value": [5.0, 1.0, 1e40, 1.0], "time": [T0] * 4}
    if dedupe:
        ev["buyer"] = [7, 8, 7, 7]
    s = mdl.fold(ev).stats(T0 + half_lives * DAY)
    tiny = np.finfo(np.float64).tiny
    assert not ((s.n > 0) & (s.n < tiny)).any()
    gone = 2.0**-half_lives < tiny
    assert (s.n == 0).all() == gone
    for name, arr in (("n", s.n), ("s", s.s), ("s2", s.s2)):
        assert np.isfinite(arr).all(), name
        assert ((arr == 0) | (s.n > 0)).all(), name
    np.testing.assert_array_equal(s.events[0, :3], [1, 2, 1])
    if not gone:  # still normal: full precision
        w = 2.0**-half_lives
        np.testing.assert_allclose(s.n[0, :3], [w, 2 * w, w], rtol=1e-12)
        np.testing.assert_allclose(s.s[0, :3], [w, 6 * w, 1e40 * w], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# structure: resize, copy, persistence, thread safety


def test_resize():
    rng = np.random.default_rng(12)
    mdl = model(10)
    ev = random_events(rng, 300, n_m=10, buyers=3)
    state = mdl.fold(ev)
    before = state.stats(T0)
    state.resize(10)
    state.resize(15)
    assert state.n_merchants == 15
    after = state.stats(T0)
    for f in ("n", "s", "s2", "events"):
        np.testing.assert_array_equal(getattr(after, f)[:10], getattr(before, f))
        assert not getattr(after, f)[10:].any()
    np.testing.assert_array_equal(after.veto_time[:10], before.veto_time)
    assert np.isneginf(after.veto_time[10:]).all()
    # dedupe keys survive the resize: the same buyer events count once more at most
    mdl.fold(ev, into=state)
    s = state.stats(T0)
    ref = reference_stats({k: np.concatenate([ev[k], ev[k]]) for k in ev}, 15, 90.0, 10.0, T0)
    np.testing.assert_array_equal(s.events, ref[3])
    mdl.fold({"merchant": [14], "indicator": [0], "value": [1], "time": [T0]}, into=state)
    with pytest.raises(ValueError, match="only grows"):
        state.resize(12)
    with pytest.raises(TypeError):
        state.resize(12.0)


def test_copy_is_independent():
    rng = np.random.default_rng(13)
    mdl = model()
    a = mdl.fold(random_events(rng, 100, buyers=3))
    b = a.copy()
    snap = snapshot(a)
    mdl.fold(random_events(rng, 100, buyers=3), into=b)
    b.resize(30)
    assert_unchanged(a, snap)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(14)
    mdl = model(half_life_days=7.0, dedupe_days=2.0)
    state = mdl.fold(random_events(rng, 1500, buyers=30))
    path = tmp_path / "trust.npz"
    state.save(path)
    loaded = TrustState.load(path)
    assert loaded.indicator_names == state.indicator_names
    assert (loaded.half_life_days, loaded.dedupe_days, loaded.last_time) == (7.0, 2.0, state.last_time)
    assert loaded.n_dedupe_keys == state.n_dedupe_keys
    for now in (T0, T0 + 10 * DAY):
        a, b = state.stats(now), loaded.stats(now)
        for f in ("n", "s", "s2", "events", "veto_time"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    # folding on after loading equals folding on the original, dedupe included
    more = random_events(rng, 500, buyers=30, t_end=T0 + 5 * DAY)
    assert_stats_close(mdl.fold(more, loaded).stats(T0 + 5 * DAY), mdl.fold(more, state).stats(T0 + 5 * DAY))
    # an empty state round-trips too
    mdl.new_state(4).save(path)
    e = TrustState.load(path)
    assert e.n_merchants == 4 and e.last_time is None


def test_load_rejects_damaged_files(tmp_path):
    rng = np.random.default_rng(15)
    state = model().fold(random_events(rng, 300, buyers=5))
    good = tmp_path / "good.npz"
    state.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(2000))
    flipped = tmp_path / "flipped.npz"
    mid = bytearray(data)
    for k in range(200, len(mid) - 200, 97):
        mid[k] ^= 0xFF
    flipped.write_bytes(bytes(mid))
    for path in (truncated, garbage, flipped):
        with pytest.raises(ValueError):
            TrustState.load(path)
    arrays, meta = _persist.load_npz(good, "TrustState", 1)
    wrong_version = tmp_path / "v2.npz"
    _persist.save_npz(wrong_version, "TrustState", 2, arrays, meta)
    with pytest.raises(ValueError, match="version"):
        TrustState.load(wrong_version)
    wrong_kind = tmp_path / "kind.npz"
    _persist.save_npz(wrong_kind, "IdentityGraph", 1, arrays, meta)
    with pytest.raises(ValueError, match="TrustState"):
        TrustState.load(wrong_kind)

    def tampered(name, **changes):
        arr2 = dict(arrays)
        meta2 = dict(meta)
        for k, v in changes.items():
            if k in arr2:
                arr2[k] = v
            else:
                meta2[k] = v
        p = tmp_path / f"{name}.npz"
        _persist.save_npz(p, "TrustState", 1, arr2, meta2)
        return p

    bad = [
        tampered("shape", acc=arrays["acc"][:-1]),
        tampered("nan", acc=np.where(arrays["acc"] > 0, np.nan, arrays["acc"])),
        tampered("neg", acc=-arrays["acc"]),
        tampered("cell", dedupe_cell=arrays["dedupe_cell"] + 10**6),
        tampered("buyer", dedupe_buyer=arrays["dedupe_buyer"] - 10**6),
        tampered("lens", dedupe_time=arrays["dedupe_time"][:-1]),
        tampered("veto", veto_time=np.full(20, np.nan)),
        tampered("names", indicator_names=np.array(["a", "a", "b", "c", "d"])),
        tampered("halflife", half_life_days=-1.0),
        tampered("nmerch", n_merchants="many"),
        tampered("tref", t_ref=None),
        tampered("cap", **{k: arrays[k][:-1] for k in ("dedupe_cell", "dedupe_buyer", "dedupe_time", "dedupe_value")}),
        tampered(
            "moved",
            **{k: np.roll(arrays[k], 1) for k in ("dedupe_cell", "dedupe_buyer", "dedupe_time", "dedupe_value")},
        ),
    ]
    for p in bad:
        with pytest.raises(ValueError, match="corrupt"):
            TrustState.load(p)
    missing = dict(arrays)
    missing.pop("veto_time")
    p = tmp_path / "missing.npz"
    _persist.save_npz(p, "TrustState", 1, missing, meta)
    with pytest.raises(ValueError, match="veto_time"):
        TrustState.load(p)
    with pytest.raises(FileNotFoundError):
        TrustState.load(tmp_path / "nope.npz")


def test_concurrent_into_folds_are_serialised():
    rng = np.random.default_rng(16)
    mdl = model(30)
    parts = [random_events(rng, 3000, n_m=30, buyers=20) for _ in range(8)]
    state = mdl.new_state(30)
    threads = [threading.Thread(target=mdl.fold, args=(p,), kwargs={"into": state}) for p in parts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    whole = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert_stats_close(state.stats(T0), mdl.fold(whole).stats(T0))


# ---------------------------------------------------------------------------------------------
# the model


def test_model_attributes_are_validated_and_read_only():
    mdl = TrustModel(
        INDICATORS,
        n_merchants=3,
        categories=[0, 2, 2],
        dimension_weights={"product_quality": 2.0, "after_sales": 1},
        cautious=True,
    )
    assert mdl.indicators == tuple(INDICATORS)
    assert dict(mdl.indicator_index) == {ind.name: k for k, ind in enumerate(INDICATORS)}
    assert list(mdl.dimension_weights) == list(ec.DIMENSIONS)
    assert mdl.dimension_weights["product_quality"] == 2.0 and mdl.dimension_weights["host_conduct"] == 0.0
    assert model().dimension_weights == dict.fromkeys(ec.DIMENSIONS, 1.0)
    np.testing.assert_array_equal(mdl.categories, [0, 2, 2])
    assert model().categories is None
    with pytest.raises(ValueError):
        mdl.categories[0] = 5
    for name in ("n_merchants", "indicators", "half_life_days", "z", "new_attr"):
        with pytest.raises(AttributeError):
            setattr(mdl, name, 1)
    with pytest.raises(TypeError):
        mdl.indicator_index["x"] = 3
    assert (mdl.prior_strength, mdl.veto_floor, mdl.veto_days, mdl.cautious, mdl.z) == (20.0, 0.2, 180.0, True, 1.96)
    assert (mdl.guarantee_boost, mdl.min_category_merchants, mdl.dedupe_days) == (0.05, 5, 10.0)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(indicators=[]), ValueError),
        (dict(indicators=INDICATORS[0]), TypeError),
        (dict(indicators=["refund"]), TypeError),
        (dict(indicators=[INDICATORS[0], INDICATORS[0]]), ValueError),
        (dict(n_merchants=-1), ValueError),
        (dict(n_merchants=2.5), TypeError),
        (dict(half_life_days=0), ValueError),
        (dict(half_life_days=float("inf")), ValueError),
        (dict(half_life_days="90"), TypeError),
        (dict(prior_strength=0), ValueError),
        (dict(dedupe_days=0.0), ValueError),
        (dict(dedupe_days=float("nan")), ValueError),
        (dict(categories=[0, 1]), ValueError),
        (dict(categories=[0, 1, -1]), ValueError),
        (dict(categories=[0.0, 1.0, 1.0]), TypeError),
        (dict(dimension_weights={"nope": 1.0}), ValueError),
        (dict(dimension_weights={"after_sales": -1.0}), ValueError),
        (dict(dimension_weights={"after_sales": 0.0}), ValueError),
        (dict(dimension_weights=[1.0] * 6), TypeError),
        (dict(veto_floor=1.5), ValueError),
        (dict(veto_floor=-0.1), ValueError),
        (dict(veto_days=-1), ValueError),
        (dict(cautious="yes"), TypeError),
        (dict(z=0), ValueError),
        (dict(guarantee_boost=-0.1), ValueError),
        (dict(min_category_merchants=0), ValueError),
        (dict(min_category_merchants=2.0), TypeError),
    ],
)
def test_model_rejects_bad_arguments(kwargs, exc):
    args = dict(indicators=INDICATORS, n_merchants=3)
    args.update(kwargs)
    inds = args.pop("indicators")
    with pytest.raises(exc):
        TrustModel(inds, **args)


def test_new_state_and_exports():
    mdl = model(7)
    st_ = mdl.new_state()
    assert (st_.n_merchants, st_.n_indicators, st_.half_life_days, st_.dedupe_days) == (7, N_IND, 90.0, 10.0)
    assert st_.indicator_names == tuple(ind.name for ind in INDICATORS)
    assert mdl.new_state(3).n_merchants == 3
    assert ec.TrustModel is TrustModel and ec.TrustState is TrustState and ec.Indicator is Indicator
    assert "TrustState" in repr(st_) and "TrustModel" in repr(mdl)


def test_score_delegates_to_score_state(monkeypatch):
    calls = []

    def fake_score_state(mdl, stats, *, categories, guarantee, priors):
        calls.append((mdl, stats, categories, guarantee, priors))
        return "scores"

    try:
        import ecomcore.trust_scoring as ts
    except ImportError:  # the scoring module may not exist yet in this checkout
        ts = types.ModuleType("ecomcore.trust_scoring")
        monkeypatch.setitem(sys.modules, "ecomcore.trust_scoring", ts)
    monkeypatch.setattr(ts, "score_state", fake_score_state, raising=False)
    mdl = TrustModel(INDICATORS, n_merchants=3, categories=[1, 0, 1])
    state = mdl.fold({"merchant": [1], "indicator": ["stars"], "value": [5], "time": [T0]})
    assert mdl.score(state, T0 + DAY) == "scores"
    m_, stats, cats, g, p = calls[-1]
    assert m_ is mdl and stats.now == T0 + DAY and stats.n[1, 1] > 0
    np.testing.assert_array_equal(cats, [1, 0, 1])
    assert g is None and p is None
    mdl.score(state, T0, categories=[0, 0, 0], guarantee=[1, 0, 0], priors="frozen")
    assert calls[-1][2] == [0, 0, 0] and calls[-1][3] == [1, 0, 0] and calls[-1][4] == "frozen"
    with pytest.raises(ValueError):
        mdl.score(model(3, half_life_days=5.0).new_state(), T0)
