"""The offline evaluation (bench/eval_taobao.py): metrics by hand on a tiny set, and on the data.

The Taobao data lives outside the repository (``$ECOMCORE_DATA`` or ``<repo>/../shared/data``);
the test that needs it is skipped when it is absent, unless ``ECOMCORE_REQUIRE_DATA=1``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp

_DATA_ROOT = os.environ.get("ECOMCORE_DATA") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
_TAOBAO = os.path.join(_DATA_ROOT, "taobao-userbehavior-prefix", "UserBehavior_prefix.csv")
_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "bench", "eval_taobao.py")


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("_ecomcore_eval_taobao", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def _ndcg(ranks: list[int], n_rel: int, k: int) -> float:
    dcg = sum(1 / math.log2(r + 2) for r in ranks if r < k)
    return dcg / sum(1 / math.log2(r + 2) for r in range(min(n_rel, k)))


def test_hit_ndcg_by_hand(ev):
    ranked = [[5, 1, 7], [2, 3, 4], [9, 8, 6]]
    relevant = [{1, 7, 0}, {4}, {0}]
    hit, ndcg = ev.hit_ndcg(ranked, relevant, 3)
    assert hit == pytest.approx(2 / 3)
    want = (_ndcg([1, 2], 3, 3) + _ndcg([2], 1, 3) + 0.0) / 3
    assert ndcg == pytest.approx(want)
    # only the first k count
    assert ev.hit_ndcg(ranked, relevant, 1) == (0.0, 0.0)


def test_evaluate_tiny_by_hand(ev):
    # items 0..3 carry tags 0..3; split at t=1000
    x = sp.csr_array(np.eye(4))
    rows = [  # user, item, kind, time
        (0, 0, "view", 0.0),
        (0, 1, "view", 10.0),
        (0, 1, "view", 20.0),
        (1, 2, "buy", 0.0),
        (2, 3, "view", 0.0),  # no test events: not evaluated
        (0, 1, "view", 1000.0),
        (0, 3, "view", 1100.0),
        (1, 0, "view", 1200.0),
        (3, 0, "view", 1300.0),  # no history: not evaluated
        (1, 2, "view", 1000.0 + 86400),  # after the window
    ]
    events = {
        "user": np.array([r[0] for r in rows]),
        "item": np.array([r[1] for r in rows]),
        "kind": np.array([r[2] for r in rows]),
        "time": np.array([r[3] for r in rows]),
    }
    res = ev.evaluate(events, x, 4, 1000.0, k=2, half_lives=(1.0,))
    assert [r.n_users for r in res] == [2, 2, 2]
    # popularity before the split: tag 1 (2 events), then 0, 2, 3 (1 each, ties by id) -> [1, 0]
    # user 0 relevant {1, 3}: rank 0 hit; user 1 relevant {0}: rank 1
    a = res[0]
    assert a.hit_rate == 1.0
    assert a.ndcg == pytest.approx((_ndcg([0], 2, 2) + _ndcg([1], 1, 2)) / 2)
    # interest: user 0 -> [1, 0]; user 1 -> [2, then popularity fill 1]: a miss
    for r in res[1:]:
        assert r.hit_rate == 0.5
        assert r.ndcg == pytest.approx(_ndcg([0], 2, 2) / 2)


def test_evaluate_on_taobao(ev):
    if not os.path.exists(_TAOBAO):
        if os.environ.get("ECOMCORE_REQUIRE_DATA") == "1":
            pytest.fail(f"ECOMCORE_REQUIRE_DATA=1 but the data is absent: {_TAOBAO}")
        pytest.skip(f"real data absent: {_TAOBAO} (set ECOMCORE_DATA to the shared/data folder)")
    data = ev.load_taobao(_TAOBAO)
    split = ev.last_day_start(data.events["time"])
    assert split == 1512230400.0  # 2017-12-03 00:00 UTC+8
    res = ev.evaluate(data.events, data.item_tags, data.n_users, split, k=10, half_lives=(14.0,))
    assert [r.name[:3] for r in res] == ["(a)", "(b)", "(c)"]
    for r in res:
        assert r.n_users == 801
        assert 0.0 <= r.hit_rate <= 1.0 and 0.0 <= r.ndcg <= 1.0
        assert r.ndcg <= r.hit_rate  # a user's NDCG is at most 1, and 0 without a hit
