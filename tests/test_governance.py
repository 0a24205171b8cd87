"""IdentityGraph (governance of banned merchants) against a plain breadth-first-search reference.

The reference rebuilds everything from the set of distinct (store, key) links on every query:
a key with more than ``max_stores_per_key`` distinct stores is a hub and is dropped, then a store
(or key) is blocked when a BFS over the remaining bipartite graph reaches a banned store.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict, deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecomcore as ec
from ecomcore._persist import load_npz, save_npz
from ecomcore.governance import BanExplanation, IdentityGraph


# ----------------------------------------------------------------------------------------------
# reference
# ----------------------------------------------------------------------------------------------
class RefGraph:
    """Obviously-right model: a set of links, a dict of bans, BFS on every question."""

    def __init__(self, max_k=20):
        self.max_k = max_k
        self.links: set = set()
        self.stores: set = set()
        self.bans: dict = {}

    def link(self, stores, keys):
        for s, k in zip(stores, keys):
            self.links.add((int(s), k))
            self.stores.add(int(s))

    def ban(self, stores, reason=""):
        for s in stores:
            self.bans[int(s)] = reason
            self.stores.add(int(s))

    def unban(self, stores):
        for s in stores:
            self.bans.pop(int(s), None)

    def key_stores(self):
        ks = defaultdict(set)
        for s, k in self.links:
            ks[k].add(s)
        return ks

    def hubs(self):
        if self.max_k is None:
            return set()
        return {k for k, ss in self.key_stores().items() if len(ss) > self.max_k}

    def graph(self):
        """Adjacency of the hub-free bipartite graph: ('s', id) <-> ('k', key)."""
        hubs = self.hubs()
        adj = defaultdict(set)
        for s, k in self.links:
            if k in hubs:
                continue
            adj[("s", s)].add(("k", k))
            adj[("k", k)].add(("s", s))
        return adj

    def distances(self):
        """Distance of every node to the nearest banned store (multi-source BFS)."""
        adj = self.graph()
        dist = {("s", s): 0 for s in self.bans}
        q = deque(dist)
        while q:
            u = q.popleft()
            for v in adj[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    q.append(v)
        return dist

    def blocked_stores(self):
        return {s for kind, s in self.distances() if kind == "s"}

    def blocked(self, keys):
        dist = self.distances()
        return any(("k", k) in dist for k in keys)

    def banned_mask(self, n):
        b = self.blocked_stores()
        return np.array([s in b for s in range(n)], dtype=bool)


def assert_same(g: IdentityGraph, ref: RefGraph, n: int, key_pool) -> None:
    np.testing.assert_array_equal(g.banned_mask(n), ref.banned_mask(n))
    for k in key_pool:
        assert g.blocked([k]) == ref.blocked([k]), k
    assert set(g.hub_keys()) == ref.hubs()
    assert sorted(g.banned_stores().tolist()) == sorted(ref.bans)


def check_chain(g: IdentityGraph, ref: RefGraph, ex: BanExplanation) -> None:
    """A chain is a real path through non-hub keys, starts at the query, ends at a banned store
    and is as short as the reference BFS says."""
    dist = ref.distances()
    kind, val = ex.query
    node = ("s" if kind == "store" else "k", val)
    assert ex.blocked == (node in dist)
    if not ex.blocked:
        assert ex.chain == () and ex.banned_stores == ()
        return
    assert ex.chain[0] == ex.query
    assert ex.chain[-1][0] == "store" and ex.chain[-1][1] in ref.bans
    assert len(ex.chain) - 1 == dist[node]
    hubs = ref.hubs()
    for (k1, v1), (k2, v2) in zip(ex.chain, ex.chain[1:]):
        assert k1 != k2
        s, k = (v1, v2) if k1 == "store" else (v2, v1)
        assert (s, k) in ref.links and k not in hubs
    # every banned store of the component, with its reason
    comp_banned = sorted(b for b in ref.bans if ("s", b) in dist and _same_component(ref, node, ("s", b)))
    assert list(ex.banned_stores) == comp_banned
    assert ex.reasons == {b: ref.bans[b] for b in comp_banned}


def _same_component(ref: RefGraph, a, b) -> bool:
    adj = ref.graph()
    seen = {a}
    q = deque([a])
    while q:
        u = q.popleft()
        if u == b:
            return True
        for v in adj[u]:
            if v not in seen:
                seen.add(v)
                q.append(v)
    return False


def snapshot(g: IdentityGraph):
    stores, keys = g.links()
    ex = g.why(store=0)
    return (
        stores.tolist(),
        keys,
        g.banned_stores().tolist(),
        g.hub_keys(),
        g.n_stores,
        g.n_keys,
        g.banned_mask(64, ignore_outside=True).tolist(),
        ex.chain,
        dict(ex.reasons),
    )


# ----------------------------------------------------------------------------------------------
# the cases named by the issue
# ----------------------------------------------------------------------------------------------
def test_new_store_sharing_a_key_with_a_banned_store_is_blocked():
    g = IdentityGraph(max_stores_per_key=3)
    g.link([1, 1, 1], [("phone", "+5511"), ("device", "d1"), ("payout", "p1")])
    g.ban([1], reason="counterfeit")
    for k in [("phone", "+5511"), ("device", "d1"), ("payout", "p1")]:
        assert g.blocked([("phone", "+5599"), k])  # any one shared key blocks
    assert not g.blocked([("phone", "+5599"), ("device", "d9")])  # sharing none
    assert not g.blocked([])
    # a key shared by more than 3 stores (a courier's phone) blocks nothing
    g.link([1, 2, 3, 4], [("phone", "courier")] * 4)
    assert g.hub_keys() == [("phone", "courier")]
    assert not g.blocked([("phone", "courier")])
    assert not g.blocked([("phone", "courier"), ("device", "d9")])
    assert g.blocked([("phone", "courier"), ("device", "d1")])
    np.testing.assert_array_equal(g.banned_mask(5), [False, True, False, False, False])


def test_multi_hop_chain_and_why():
    g = IdentityGraph()
    g.link([10, 11], [("phone", "p"), ("phone", "p")])  # A=10 shares a phone with B=11
    g.link([11, 12], [("device", "d"), ("device", "d")])  # B shares a device with C=12
    g.link([12, 13], [("addr", "x"), ("addr", "y")])
    g.ban(10, reason="fake goods")
    mask = g.banned_mask(14)
    np.testing.assert_array_equal(np.flatnonzero(mask), [10, 11, 12])
    ex = g.why(store=12)
    assert ex.blocked and ex.known and not ex.hub
    assert ex.chain == (
        ("store", 12),
        ("key", ("device", "d")),
        ("store", 11),
        ("key", ("phone", "p")),
        ("store", 10),
    )
    assert ex.banned_stores == (10,) and ex.reasons == {10: "fake goods"}
    assert "fake goods" in str(ex) and "('device', 'd')" in str(ex)
    ex = g.why(key=("addr", "x"))
    assert ex.chain[0] == ("key", ("addr", "x")) and ex.chain[-1] == ("store", 10) and len(ex.chain) == 6
    assert not g.why(store=13).blocked
    assert not g.why(key=("addr", "y")).blocked
    unknown = g.why(store=99)
    assert not unknown.blocked and not unknown.known and "unknown" in str(unknown)
    assert g.why(store=10).chain == (("store", 10),)


def test_why_picks_the_nearest_banned_store_and_lists_all():
    g = IdentityGraph()
    # 0 -k1- 1 -k2- 2 -k3- 3 ; banned: 0 (far) and 3 (near to 2)
    g.link([0, 1, 1, 2, 2, 3], ["k1", "k1", "k2", "k2", "k3", "k3"])
    g.ban([0], reason="a")
    g.ban([3], reason="b")
    ex = g.why(store=2)
    assert ex.chain == (("store", 2), ("key", "k3"), ("store", 3))
    assert ex.banned_stores == (0, 3) and ex.reasons == {0: "a", 3: "b"}
    assert g.why(store=2) == ex  # deterministic


def test_unban():
    g = IdentityGraph()
    g.link([1, 2, 3], ["a", "a", "b"])
    g.ban([1, 3])
    assert g.blocked(["a"]) and g.blocked(["b"])
    g.unban([1])
    assert not g.blocked(["a"]) and g.blocked(["b"])
    np.testing.assert_array_equal(g.banned_mask(4), [False, False, False, True])
    g.unban([1, 7])  # not banned / unknown: ignored
    g.unban(np.array([3]))
    assert not g.banned_mask(4).any()
    assert g.banned_stores().size == 0
    g.ban([2], reason="again")
    assert g.blocked(["a"]) and g.why(key="a").reasons == {2: "again"}


def test_key_turning_into_a_hub_stops_propagation():
    g = IdentityGraph(max_stores_per_key=2)
    g.link([1, 2], ["shared", "shared"])
    g.ban([1])
    assert g.blocked(["shared"])
    np.testing.assert_array_equal(g.banned_mask(4), [False, True, True, False])
    g.link([3], ["shared"])  # third store: the key is now a hub
    assert g.hub_keys() == ["shared"] and g.degree("shared") == 3
    assert not g.blocked(["shared"])
    np.testing.assert_array_equal(g.banned_mask(4), [False, True, False, False])
    assert g.why(key="shared").hub and not g.why(store=2).blocked
    # repeated links do not raise the degree
    g2 = IdentityGraph(max_stores_per_key=2)
    g2.link([1, 1, 2, 2, 1], ["shared"] * 5)
    g2.ban(1)
    assert g2.hub_keys() == [] and g2.blocked(["shared"]) and g2.n_links == 2


def test_no_hub_rule():
    g = IdentityGraph(max_stores_per_key=None)
    g.link(np.arange(100), ["k"] * 100)
    g.ban(5)
    assert g.banned_mask(100).all() and g.hub_keys() == [] and g.max_stores_per_key is None


def test_key_and_store_namespaces_are_separate():
    g = IdentityGraph()
    g.link([5], [7])  # store 5 has key 7
    g.link([7], [5])  # store 7 has key 5
    g.ban(5)
    assert g.blocked([7]) and not g.blocked([5])
    np.testing.assert_array_equal(np.flatnonzero(g.banned_mask(8)), [5])
    # dict equality: 1, 1.0, True and np.int64(1) are one key; "1" and (1,) are others
    g = IdentityGraph()
    g.link([0], [1])
    g.ban(0)
    for same in (1, 1.0, True, np.int64(1), np.uint8(1), np.float32(1.0)):
        assert g.blocked([same]), same
    assert g.blocked(np.array([1.0])) and g.blocked(np.array([1], dtype=np.uint64))
    for other in ("1", (1,), b"1", 2, 1.5):
        assert not g.blocked([other]), other
    assert g.n_keys == 1


def test_integer_array_and_list_paths_agree():
    rng = np.random.default_rng(3)
    stores = rng.integers(0, 300, 2000)
    keys = rng.integers(-(2**52), 2**52, 400)[rng.integers(0, 400, 2000)]  # exact as floats
    a, b, c = IdentityGraph(5), IdentityGraph(5), IdentityGraph(5)
    a.link(stores, keys)  # int64 array: vectorised
    b.link(stores.tolist(), keys.tolist())  # Python ints
    c.link(list(stores), [float(k) if i % 7 else k for i, k in enumerate(keys.tolist())])  # mixed
    for g in (a, b, c):
        g.ban(stores[:3])
    m = a.banned_mask(300)
    np.testing.assert_array_equal(b.banned_mask(300), m)
    np.testing.assert_array_equal(c.banned_mask(300), m)
    assert a.hub_keys() == b.hub_keys()
    probe = rng.integers(-(2**62), 2**62, 50).tolist() + keys[:50].tolist()
    for k in probe:
        assert a.blocked([k]) == b.blocked(np.array([k])) == c.blocked([k])
    ids, blk = a.blocked_many(np.arange(len(probe)), np.array(probe))
    np.testing.assert_array_equal(blk, [a.blocked([k]) for k in probe])
    # long key lists take the vectorised path, short ones the one-call path: same answers
    unblocked = [k for k in probe if not a.blocked([k])]
    blocked_one = [k for k in probe if a.blocked([k])][:1]
    assert unblocked and blocked_one
    for extra in ([], blocked_one):
        want = bool(extra)
        assert a.blocked(unblocked + extra) == want  # > 32 keys
        assert a.blocked(unblocked[:31] + extra) == want
        assert a.blocked(np.array(unblocked + extra)) == want
        assert a.blocked([float(k) for k in unblocked[:5]] + extra) == want  # general path


def test_key_types():
    g = IdentityGraph()
    big = 2**70
    keys = [
        big,
        float(2**70),
        -1.5,
        "s",
        b"s",
        ("phone", "+55"),
        ("t", 1, 2.5, None, True, b"x"),
        None,
        np.str_("np"),
        np.uint64(2**64 - 1),
        2**63 - 1,
        -(2**63),
    ]
    g.link(list(range(len(keys))), keys)
    assert g.n_keys == len(keys) - 1  # 2**70 == float(2**70)
    g.ban(list(range(len(keys))))
    for k in keys + ["np", 2**64 - 1]:
        assert g.blocked([k]), k
    assert g.blocked(np.array([2**64 - 1], dtype=np.uint64))
    assert g.blocked(np.array(["np", "zz"])) and g.blocked(np.array([b"s"]))
    obj = np.empty(2, dtype=object)
    obj[:] = [("phone", "+55"), 3]
    assert g.blocked(obj)


def test_blocked_many():
    g = IdentityGraph(max_stores_per_key=2)
    g.link([1, 2, 3, 4, 5], ["a", "b", "hub", "hub", "hub"])
    g.ban([1, 3])
    res = g.blocked_many([30, 10, 20, 30, 20, 40], ["zz", "a", "b", "a", "hub", "hub"])
    assert isinstance(res, tuple)
    ids, blk = res
    np.testing.assert_array_equal(ids, [10, 20, 30, 40])
    np.testing.assert_array_equal(blk, [True, False, True, False])
    ids, blk = g.blocked_many(np.array([], dtype=np.int64), [])
    assert ids.size == 0 and blk.size == 0


def test_blocked_many_matches_blocked_on_integer_keys():
    rng = np.random.default_rng(7)
    g = IdentityGraph(max_stores_per_key=4)
    g.link(rng.integers(0, 1000, 1500), rng.integers(0, 2000, 1500))
    g.ban(rng.integers(0, 1000, 30))
    app = rng.integers(-5, 300, 1000)
    keys = rng.integers(0, 2500, 1000)
    ids, blk = g.blocked_many(app, keys)
    np.testing.assert_array_equal(ids, np.unique(app))
    want = [g.blocked(keys[app == a].tolist()) for a in ids]
    np.testing.assert_array_equal(blk, want)
    assert any(want) and not all(want)


def test_banned_store_never_linked_and_late_links():
    g = IdentityGraph()
    g.ban(4, reason="early")
    np.testing.assert_array_equal(g.banned_mask(5), [False] * 4 + [True])
    assert not g.blocked(["k"])
    g.link([4, 2], ["k", "k"])  # linked after the ban
    assert g.blocked(["k"])
    np.testing.assert_array_equal(np.flatnonzero(g.banned_mask(5)), [2, 4])
    assert g.why(store=2).reasons == {4: "early"}


def test_banned_mask_range():
    g = IdentityGraph()
    g.link([3, 100], ["a", "b"])
    g.ban(3)
    np.testing.assert_array_equal(np.flatnonzero(g.banned_mask(10)), [3])  # store 100 is not blocked
    g.link([100], ["a"])
    with pytest.raises(ValueError, match="n: blocked store 100 is outside"):
        g.banned_mask(10)
    np.testing.assert_array_equal(np.flatnonzero(g.banned_mask(10, ignore_outside=True)), [3])
    assert g.banned_mask(0, ignore_outside=True).shape == (0,)
    assert IdentityGraph().banned_mask(0).shape == (0,)
    with pytest.raises(ValueError, match="n: must be >= 0"):
        g.banned_mask(-1)
    with pytest.raises(TypeError, match="n:"):
        g.banned_mask(2.0)


def test_feeds_the_ranker():
    import scipy.sparse as sp

    g = IdentityGraph()
    g.link([0, 2], ["dev", "dev"])
    g.ban(0)
    b = sp.csr_array(np.ones((2, 4)))
    top = ec.Ranker(b, banned=g.banned_mask(4)).topk(sp.csr_array(np.ones((1, 2))), k=4)
    assert sorted(top.indices[0][top.indices[0] >= 0].tolist()) == [1, 3]


# ----------------------------------------------------------------------------------------------
# bad input: clear errors, graph unchanged
# ----------------------------------------------------------------------------------------------
def _populated() -> IdentityGraph:
    g = IdentityGraph(max_stores_per_key=3)
    g.link([0, 1, 1, 2], ["a", "a", 5, 5])
    g.ban(0, reason="r")
    return g


BAD_CALLS = [
    ("link", ([1, 2], ["x"]), ValueError, "lengths differ"),
    ("link", ([-1], ["x"]), ValueError, "store_ids: store id -1 is negative"),
    ("link", ([1.5], ["x"]), TypeError, "store_ids: store ids must be integers"),
    ("link", ([True], ["x"]), TypeError, "store_ids"),
    ("link", ("1", ["x"]), TypeError, "store_ids"),
    ("link", ([[1]], ["x"]), ValueError, "store_ids: expected a 1-D"),
    ("link", ([2**64], ["x"]), ValueError, "store_ids"),
    ("link", ([1, 2, 3], ["new", ["unhashable"], "new2"]), TypeError, "keys: keys must be hashable"),
    ("link", ([1, 2], ["new", ("t", ["x"])]), TypeError, "keys: keys must be hashable"),
    ("link", ([1, 2], ["new", float("nan")]), ValueError, "keys: NaN"),
    ("link", ([1], np.array([np.nan])), ValueError, "keys: NaN"),
    ("link", ([1, 2], ("phone", "x")), TypeError, "a tuple is one key"),
    ("link", ([1], "abc"), TypeError, "keys: expected a list"),
    ("link", ([1], np.zeros((1, 1))), ValueError, "keys: expected a 1-D"),
    ("link", ([1], {"a": 1}), TypeError, "keys:"),
    ("ban", ([-3],), ValueError, "store_ids"),
    ("ban", (np.array([True]),), TypeError, "store_ids: store ids must be integers, got a bool"),
    ("unban", ([1.0],), TypeError, "store_ids"),
    ("blocked", (["a", ["x"]],), TypeError, "keys: keys must be hashable"),
    ("blocked", (("a", "b"),), TypeError, "a tuple is one key"),
    ("blocked", ("a",), TypeError, "keys:"),
    ("blocked_many", ([1, 2], ["a"]), ValueError, "lengths differ"),
    ("blocked_many", ([1.5], ["a"]), TypeError, "applicant_ids"),
    ("blocked_many", ([1], [["a"]]), TypeError, "keys"),
    ("why", (), ValueError, "exactly one"),
    ("degree", (["x"],), TypeError, "key: keys must be hashable"),
]


@pytest.mark.parametrize("method,args,exc,match", BAD_CALLS)
def test_bad_input_raises_and_leaves_graph_unchanged(method, args, exc, match):
    g = _populated()
    before = snapshot(g)
    with pytest.raises(exc, match=match):
        getattr(g, method)(*args)
    assert snapshot(g) == before


def test_bad_keyword_input():
    g = _populated()
    before = snapshot(g)
    with pytest.raises(TypeError, match="reason: expected a str"):
        g.ban([1], reason=3)
    with pytest.raises(ValueError, match="exactly one"):
        g.why(store=1, key="a")
    with pytest.raises(TypeError, match="store: expected an integer"):
        g.why(store="1")
    with pytest.raises(ValueError, match="store: store id -1"):
        g.why(store=-1)
    with pytest.raises(TypeError, match="max_stores_per_key"):
        IdentityGraph(max_stores_per_key=2.5)
    with pytest.raises(ValueError, match="max_stores_per_key"):
        IdentityGraph(max_stores_per_key=0)
    assert snapshot(g) == before


# ----------------------------------------------------------------------------------------------
# persistence
# ----------------------------------------------------------------------------------------------
def _rich_graph() -> IdentityGraph:
    g = IdentityGraph(max_stores_per_key=2)
    g.link([0, 1, 1, 2, 3, 4, 5], [("phone", "+55"), ("phone", "+55"), 7, 7, "hub", "hub", "hub"])
    g.link([6, 7, 8], [2**70, b"\x00\xff", ("t", 1.5, None, True, ("nested", -3))])
    g.link(np.array([8, 9]), np.array([-(2**63), 2**63 - 1]))
    g.link([9], ["caf\u00e9 \ud83d"])  # a lone surrogate survives the round trip too
    g.ban([0], reason="fraud")
    g.ban([8, 42], reason="fake \u00e9")
    return g


def test_save_load_round_trip(tmp_path):
    g = _rich_graph()
    p = tmp_path / "gov.npz"
    g.save(p)
    h = IdentityGraph.load(p)
    assert snapshot(h) == snapshot(g)
    assert h.max_stores_per_key == 2 and h.n_stores == g.n_stores and h.n_keys == g.n_keys
    assert repr(h) == repr(g) and "n_banned=3" in repr(h) and h.nbytes > 0
    np.testing.assert_array_equal(h.banned_mask(50), g.banned_mask(50))
    for key in g.links()[1] + ["unknown", 3]:
        assert h.blocked([key]) == g.blocked([key])
        assert h.why(key=key) == g.why(key=key)
        assert h.degree(key) == g.degree(key)
    for s in range(45):
        assert h.why(store=s) == g.why(store=s)
    # the loaded graph keeps working: new links and bans
    for x in (g, h):
        x.link([10, 4], ["new", "new"])
        x.ban([10])
    assert snapshot(h) == snapshot(g)
    # saving again after a save gives the same graph
    h.save(p)
    assert snapshot(IdentityGraph.load(p)) == snapshot(g)


def test_save_empty(tmp_path):
    IdentityGraph(max_stores_per_key=None).save(tmp_path / "e.npz")
    h = IdentityGraph.load(tmp_path / "e.npz")
    assert h.n_stores == 0 and h.max_stores_per_key is None and h.banned_mask(3).tolist() == [False] * 3


def test_save_refuses_keys_needing_pickle(tmp_path):
    g = IdentityGraph()
    g.link([1], [frozenset({1})])
    p = tmp_path / "x.npz"
    with pytest.raises(TypeError, match="cannot be saved without pickle"):
        g.save(p)
    assert not p.exists() and os.listdir(tmp_path) == []


def test_load_rejects_damaged_files(tmp_path):
    g = _rich_graph()
    p = tmp_path / "g.npz"
    g.save(p)
    raw = p.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        IdentityGraph.load(tmp_path / "trunc.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError):
        IdentityGraph.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        IdentityGraph.load(tmp_path / "missing.npz")
    arrays, meta = load_npz(p, "IdentityGraph", 1)
    save_npz(tmp_path / "v2.npz", "IdentityGraph", 2, arrays, meta)
    with pytest.raises(ValueError, match="version 2 is not supported"):
        IdentityGraph.load(tmp_path / "v2.npz")
    save_npz(tmp_path / "kind.npz", "TrustState", 1, arrays, meta)
    with pytest.raises(ValueError, match="expected an ecomcore IdentityGraph file"):
        IdentityGraph.load(tmp_path / "kind.npz")

    def tampered(name, **changes):
        a, m = dict(arrays), dict(meta)
        for k, v in changes.items():
            if k in a:
                a[k] = v
            else:
                m[k] = v
        q = tmp_path / f"{name}.npz"
        save_npz(q, "IdentityGraph", 1, a, m)
        with pytest.raises(ValueError, match="corrupt IdentityGraph file"):
            IdentityGraph.load(q)

    es = arrays["edge_store"].copy()
    es[0] = 10**6
    tampered("edge", edge_store=es)
    tampered("edge_len", edge_key=arrays["edge_key"][:-1])
    sid = arrays["store_ids"].copy()
    sid[1] = sid[0]
    tampered("dup_store", store_ids=sid)
    kv = arrays["key_val"].copy()
    ints = np.flatnonzero(~arrays["key_isobj"])
    kv[ints[1]] = kv[ints[0]]
    tampered("dup_key", key_val=kv)
    tampered("json", obj_keys_json=np.frombuffer(b"[1, 2", dtype=np.uint8))
    tampered("json_tag", obj_keys_json=np.frombuffer(b'[["zz", 1]]', dtype=np.uint8), n_obj_keys=1)
    tampered("reason", banned_reason=np.full_like(arrays["banned_reason"], 9))
    tampered("hdr", n_stores=3)
    tampered("maxk", max_stores_per_key=0)
    tampered("dtype", store_ids=arrays["store_ids"].astype(np.float64))
    tampered("missing", reasons=None)
    bad = dict(arrays)
    del bad["edge_key"]
    save_npz(tmp_path / "missing_arr.npz", "IdentityGraph", 1, bad, meta)
    with pytest.raises(ValueError, match="corrupt IdentityGraph file"):
        IdentityGraph.load(tmp_path / "missing_arr.npz")


# ----------------------------------------------------------------------------------------------
# random graphs against the reference
# ----------------------------------------------------------------------------------------------
KEY_POOL = [0, 1, 2, 3, 7, "a", "b", "c", ("p", 1), ("p", 2), ("d", "x"), b"z", 2.5, -4]
keys_st = st.sampled_from(KEY_POOL)
stores_st = st.integers(0, 11)
link_op = st.tuples(st.just("link"), st.lists(st.tuples(stores_st, keys_st), min_size=1, max_size=8))
ban_op = st.tuples(st.just("ban"), st.lists(stores_st, min_size=1, max_size=3), st.sampled_from(["x", "y", ""]))
unban_op = st.tuples(st.just("unban"), st.lists(stores_st, min_size=1, max_size=3))
ops_st = st.lists(st.one_of(link_op, link_op, ban_op, unban_op), min_size=1, max_size=12)


@given(ops=ops_st, max_k=st.sampled_from([1, 2, 3, 5, None]))
def test_random_graphs_match_reference(ops, max_k):
    g = IdentityGraph(max_stores_per_key=max_k)
    ref = RefGraph(max_k)
    for op in ops:
        if op[0] == "link":
            stores = [s for s, _ in op[1]]
            keys = [k for _, k in op[1]]
            g.link(stores, keys)
            ref.link(stores, keys)
        elif op[0] == "ban":
            g.ban(op[1], reason=op[2])
            ref.ban(op[1], reason=op[2])
        else:
            g.unban(op[1])
            ref.unban(op[1])
        np.testing.assert_array_equal(g.banned_mask(12), ref.banned_mask(12))
    assert_same(g, ref, 12, KEY_POOL)
    for s in range(12):
        check_chain(g, ref, g.why(store=s))
    for k in KEY_POOL:
        ex = g.why(key=k)
        if k in ref.hubs():
            assert ex.hub and not ex.blocked
        elif any(k == kk for _, kk in ref.links):
            check_chain(g, ref, ex)
        else:
            assert not ex.known
    # applicants presenting several keys
    apps = [[0, "a"], [("p", 1), b"z", 99], [], ["zz"], KEY_POOL[:5]]
    for keys in apps:
        assert g.blocked(list(keys)) == ref.blocked(keys)
    pairs = [(i, k) for i, keys in enumerate(apps) for k in keys]
    ids, blk = g.blocked_many([i for i, _ in pairs], [k for _, k in pairs])
    np.testing.assert_array_equal(blk, [ref.blocked(apps[i]) for i in ids])


@given(
    seed=st.integers(0, 2**32 - 1),
    n_stores=st.integers(1, 60),
    n_keys=st.integers(1, 80),
    n_links=st.integers(0, 300),
    max_k=st.integers(1, 8),
)
def test_random_integer_graphs_match_reference(seed, n_stores, n_keys, n_links, max_k):
    rng = np.random.default_rng(seed)
    stores = rng.integers(0, n_stores, n_links)
    keys = rng.integers(0, n_keys, n_links) * 7919 - 3 * n_keys  # negative keys too
    banned = rng.integers(0, n_stores, rng.integers(0, 4))
    g = IdentityGraph(max_stores_per_key=max_k)
    ref = RefGraph(max_k)
    half = n_links // 2
    g.link(stores[:half], keys[:half])  # two batches: the rebuild merges the new links
    g.ban(banned)
    g.link(stores[half:], keys[half:])
    ref.link(stores.tolist(), keys.tolist())
    ref.ban(banned.tolist())
    np.testing.assert_array_equal(g.banned_mask(n_stores), ref.banned_mask(n_stores))
    probe = np.unique(np.concatenate([keys, [10**9]]))
    blk = [ref.blocked([int(k)]) for k in probe]
    ids, got = g.blocked_many(np.arange(probe.size), probe)
    np.testing.assert_array_equal(got, blk)
    assert sorted(g.hub_keys()) == sorted(ref.hubs())
    assert g.n_links == len(ref.links)


# ----------------------------------------------------------------------------------------------
# threads
# ----------------------------------------------------------------------------------------------
def test_concurrent_links_and_queries_end_in_the_sequential_state():
    rng = np.random.default_rng(11)
    batches = [(rng.integers(0, 2000, 500), rng.integers(0, 3000, 500)) for _ in range(16)]
    shared = IdentityGraph(max_stores_per_key=6)
    shared.ban(np.arange(0, 2000, 97))
    errors = []

    def worker(mine):
        try:
            for s, k in mine:
                shared.link(s, k)
                shared.blocked(k[:5].tolist())
                shared.banned_mask(2000)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seq = IdentityGraph(max_stores_per_key=6)
    seq.ban(np.arange(0, 2000, 97))
    for s, k in batches:
        seq.link(s, k)
    np.testing.assert_array_equal(shared.banned_mask(2000), seq.banned_mask(2000))
    assert sorted(shared.hub_keys()) == sorted(seq.hub_keys())
    assert shared.n_links == seq.n_links
