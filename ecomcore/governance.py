"""Governance of banned merchants: the store-identity graph.

A banned merchant must not come back under a new account.  Every store is linked to the identity
keys it presented (owner id, phone, device, payout account, address); stores that share a key
are connected, and a store or applicant connected to a banned store through shared keys is
blocked.  Keys shared by very many stores (a courier's phone, a payment aggregator, a mall's
address) would connect unrelated merchants, so a key linked to more than ``max_stores_per_key``
distinct stores is a *hub*: it connects nothing and is listed by :meth:`IdentityGraph.hub_keys`
for review.

Semantics (what the tests check against a plain breadth-first search)::

    G     = bipartite graph: store nodes, key nodes, one edge per distinct (store, key) link
    hub   = key with more than max_stores_per_key distinct stores
    G'    = G without hub keys
    store s is blocked   <=> some banned store lies in s's connected component of G'
    keys K are blocked   <=> some non-hub key of K lies in a component of G' holding a banned store

Store ids and identity keys live in separate namespaces: key ``5`` and store ``5`` are different
nodes.  Components are computed by a Cython union-find over stores (union by size, path
halving), rebuilt lazily from the stored links after they change; see :class:`IdentityGraph`.
"""

from __future__ import annotations

import json
import numbers
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Hashable, Iterable, Mapping, NamedTuple, Optional, Union

import numpy as np

from ecomcore._persist import load_npz, save_npz
from ecomcore._validation import check_int
from ecomcore_ext import _unionfind

__all__ = ["BanExplanation", "BlockedMany", "IdentityGraph"]

ArrayLike = Any
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# dense ids are int32 inside the kernels; one id is kept free as the hub sentinel
_MAX_IDS = 2**31 - 2
_FORMAT = "IdentityGraph"
_VERSION = 1
DEFAULT_MAX_STORES_PER_KEY = 20


# --------------------------------------------------------------------------------------------
# keys: normalisation and splitting into the integer and the object namespace
# --------------------------------------------------------------------------------------------
def _norm_key(k: Any, name: str) -> tuple[bool, Any]:
    """``(True, int)`` for an integral number in int64 range, else ``(False, hashable key)``.

    Integral numbers (``int``, NumPy integers, ``bool``, integral floats) equal as Python numbers
    are one key, as in a ``dict``.
    """
    if isinstance(k, (bool, np.bool_)):
        return True, int(k)
    if isinstance(k, numbers.Integral):
        v = int(k)
        return (_INT64_MIN <= v <= _INT64_MAX), v
    if isinstance(k, (float, np.floating)):
        f = float(k)
        if f != f:
            raise ValueError(f"{name}: NaN is not a valid key (NaN != NaN)")
        if f.is_integer() and _INT64_MIN <= f < 2.0**63:
            return True, int(f)
        return False, f
    try:
        hash(k)
    except TypeError:
        raise TypeError(f"{name}: keys must be hashable, got {type(k).__name__} {_short(k)}") from None
    return False, k


def _short(x: Any, width: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= width else r[: width - 3] + "..."


class _Keys:
    """Keys of one call split by namespace.

    ``int_vals`` (int64) sit at ``int_pos`` and ``obj_keys`` at ``obj_pos`` in the caller's
    order; a position array is ``None`` when that namespace holds every key.
    """

    __slots__ = ("n", "int_vals", "int_pos", "obj_keys", "obj_pos")

    def __init__(
        self, n: int, int_vals: np.ndarray, int_pos: Optional[np.ndarray], obj_keys: list, obj_pos: Optional[np.ndarray]
    ) -> None:
        self.n = n
        self.int_vals = int_vals
        self.int_pos = int_pos
        self.obj_keys = obj_keys
        self.obj_pos = obj_pos


_EMPTY_I64 = np.zeros(0, dtype=np.int64)


def _all_int(vals: np.ndarray) -> _Keys:
    return _Keys(vals.shape[0], vals, None, [], np.zeros(0, dtype=np.int64))


def _all_obj(objs: list) -> _Keys:
    return _Keys(len(objs), _EMPTY_I64, np.zeros(0, dtype=np.int64), objs, None)


def _split_list(lst: list, name: str) -> _Keys:
    n = len(lst)
    if n == 0:
        return _all_int(_EMPTY_I64)
    types = set(map(type, lst))
    numeric = [t for t in types if issubclass(t, (numbers.Number, np.bool_, np.number))]
    if len(numeric) == len(types) and all(issubclass(t, (numbers.Integral, np.bool_)) for t in types):
        try:
            return _all_int(np.array(lst, dtype=np.int64))
        except (OverflowError, TypeError, ValueError):
            pass  # an int outside int64: the slow path keeps it in the object namespace
    elif not numeric:
        return _all_obj(lst)  # hashability is checked when the keys are looked up
    int_pos, int_vals, obj_pos, obj_keys = [], [], [], []
    for i, k in enumerate(lst):
        is_int, v = _norm_key(k, name)
        if is_int:
            int_pos.append(i)
            int_vals.append(v)
        else:
            obj_pos.append(i)
            obj_keys.append(v)
    return _Keys(
        n,
        np.array(int_vals, dtype=np.int64),
        np.array(int_pos, dtype=np.int64),
        obj_keys,
        np.array(obj_pos, dtype=np.int64),
    )


def _split_keys(keys: Any, name: str) -> _Keys:
    """Validate a sequence of keys and split it by namespace (vectorised for numeric arrays)."""
    if isinstance(keys, (str, bytes)):
        raise TypeError(f"{name}: expected a list or 1-D array of keys, got a single {type(keys).__name__}")
    if isinstance(keys, tuple):
        raise TypeError(
            f"{name}: expected a list or 1-D array of keys, got a tuple (a tuple is one key; wrap it in a list)"
        )
    if isinstance(keys, list):
        return _split_list(keys, name)
    if isinstance(keys, np.ndarray) or hasattr(keys, "__array__"):
        try:
            arr = np.asarray(keys)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name}: cannot convert {type(keys).__name__} to an array") from exc
        if arr.ndim != 1:
            raise ValueError(
                f"{name}: expected a 1-D array of keys, got shape {arr.shape} (for tuple keys pass a "
                "list, or a 1-D object array)"
            )
        kind = arr.dtype.kind
        if kind in "iub":
            if kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
                return _split_list(arr.tolist(), name)
            return _all_int(np.ascontiguousarray(arr, dtype=np.int64))
        if kind == "f":
            if np.isnan(arr).any():
                raise ValueError(f"{name}: NaN is not a valid key (NaN != NaN)")
            with np.errstate(invalid="ignore"):
                if np.all((arr == np.floor(arr)) & (arr >= -(2.0**63)) & (arr < 2.0**63)):
                    return _all_int(arr.astype(np.int64))
            return _split_list(arr.tolist(), name)
        if kind in "USO":
            return _split_list(arr.tolist(), name)
        raise TypeError(f"{name}: unsupported key dtype {arr.dtype}")
    if isinstance(keys, Iterable) and not isinstance(keys, (Mapping, set, frozenset)):
        return _split_list(list(keys), name)
    raise TypeError(f"{name}: expected a list or 1-D array of keys, got {type(keys).__name__}")


# --------------------------------------------------------------------------------------------
# store ids
# --------------------------------------------------------------------------------------------
def _store_array(x: Any, name: str, n: Optional[int] = None) -> np.ndarray:
    """Store ids (integers >= 0) as int64; a scalar is broadcast to ``n`` when ``n`` is given."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name}: store ids must be integers, got bool")
    if isinstance(x, numbers.Integral):
        v = int(x)
        if v < 0 or v > _INT64_MAX:
            raise ValueError(f"{name}: store id {v} is out of range [0, 2**63)")
        return np.full(1 if n is None else n, v, dtype=np.int64)
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected store ids (integers), got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array of store ids") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of store ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name}: store ids must be integers, got a bool array")
    if kind == "O":
        vals = arr.tolist()
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in vals):
            raise TypeError(f"{name}: store ids must be integers")
        bad = [v for v in vals if not 0 <= int(v) <= _INT64_MAX]
        if bad:
            raise ValueError(f"{name}: store id {bad[0]} is out of range [0, 2**63)")
        return np.array([int(v) for v in vals], dtype=np.int64)
    if kind not in "iu":
        raise TypeError(f"{name}: store ids must be integers, got dtype {arr.dtype}")
    if kind == "u":
        if int(arr.max()) > _INT64_MAX:
            raise ValueError(f"{name}: store id {int(arr.max())} is out of range [0, 2**63)")
    elif int(arr.min()) < 0:
        raise ValueError(f"{name}: store id {int(arr.min())} is negative")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _grow(arr: np.ndarray, used: int, need: int, fill: Any = None) -> np.ndarray:
    """``arr`` with room for ``need`` entries (amortised doubling), the first ``used`` kept."""
    if arr.shape[0] >= need:
        return arr
    cap = max(need, 2 * arr.shape[0], 16)
    new = np.empty(cap, dtype=arr.dtype) if fill is None else np.full(cap, fill, dtype=arr.dtype)
    new[:used] = arr[:used]
    return new


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
class BlockedMany(NamedTuple):
    """Answer of :meth:`IdentityGraph.blocked_many`: one row per distinct applicant.

    Attributes
    ----------
    applicants : numpy.ndarray
        Distinct applicant ids, ascending (int64).
    blocked : numpy.ndarray
        ``blocked[i]`` is True when applicant ``applicants[i]`` presented a key connected to a
        banned store (bool).
    """

    applicants: np.ndarray
    blocked: np.ndarray


@dataclass(frozen=True)
class BanExplanation:
    """Why a store or a key is (or is not) blocked; returned by :meth:`IdentityGraph.why`.

    Attributes
    ----------
    query : tuple
        ``("store", store_id)`` or ``("key", key)``.
    blocked : bool
        Whether the query is connected to a banned store through non-hub keys.
    banned_stores : tuple of int
        Every banned store in the query's component, ascending (empty when not blocked).
    chain : tuple of tuple
        One shortest path from the query to the nearest banned store, as alternating
        ``("store", store_id)`` and ``("key", key)`` steps, starting with the query and ending
        with the banned store (empty when not blocked).
    reasons : dict of int to str
        Ban reason of each store in ``banned_stores``.
    hub : bool
        True when the query is a hub key (it propagates nothing).
    known : bool
        False when the graph has never seen the queried store or key.
    """

    query: tuple
    blocked: bool
    banned_stores: tuple = ()
    chain: tuple = ()
    reasons: Mapping[int, str] = field(default_factory=dict)
    hub: bool = False
    known: bool = True

    def __str__(self) -> str:
        what = f"{self.query[0]} {self.query[1]!r}"
        if not self.known:
            return f"{what}: not blocked (unknown)"
        if self.hub:
            return f"{what}: not blocked (hub key: shared by too many stores to propagate bans)"
        if not self.blocked:
            return f"{what}: not blocked"
        steps = " -> ".join(f"{kind} {value!r}" for kind, value in self.chain)
        end = self.chain[-1][1]
        reason = self.reasons.get(end, "")
        more = len(self.banned_stores) - 1
        tail = f" (and {more} more banned store{'s' if more > 1 else ''} in the component)" if more > 0 else ""
        return f"{what}: blocked: {steps} [banned{': ' + reason if reason else ''}]{tail}"


# --------------------------------------------------------------------------------------------
# persistence of keys without pickle
# --------------------------------------------------------------------------------------------
def _enc(k: Any) -> Any:
    """JSON-able tagged form of a key: a str as itself, anything else as ``[tag, payload]``."""
    if isinstance(k, str):
        return str(k)
    if k is None:
        return ["n"]
    if isinstance(k, (bool, np.bool_)):
        return ["?", bool(k)]
    if isinstance(k, numbers.Integral):
        return ["i", str(int(k))]
    if isinstance(k, (float, np.floating)):
        return ["f", float(k).hex()]
    if isinstance(k, bytes):
        return ["b", bytes(k).hex()]
    if isinstance(k, tuple):
        return ["t", [_enc(x) for x in k]]
    raise TypeError(
        f"key {_short(k)} of type {type(k).__name__} cannot be saved without pickle "
        "(supported: int, float, str, bytes, bool, None and tuples of these)"
    )


def _dec(x: Any) -> Any:
    if type(x) is str:
        return x
    if not isinstance(x, list) or not x or not isinstance(x[0], str):
        raise ValueError(f"bad key encoding {_short(x)}")
    tag = x[0]
    if tag == "n" and len(x) == 1:
        return None
    if len(x) != 2:
        raise ValueError(f"bad key encoding {_short(x)}")
    v = x[1]
    if tag == "?" and isinstance(v, bool):
        return v
    if tag == "i" and isinstance(v, str):
        return int(v)
    if tag == "f" and isinstance(v, str):
        return float.fromhex(v)
    if tag == "b" and isinstance(v, str):
        return bytes.fromhex(v)
    if tag == "t" and isinstance(v, list):
        return tuple(_dec(y) for y in v)
    raise ValueError(f"bad key encoding {_short(x)}")


# --------------------------------------------------------------------------------------------
# the graph
# --------------------------------------------------------------------------------------------
class IdentityGraph:
    """Stores linked by shared identity keys; bans propagate to every connected store.

    Parameters
    ----------
    max_stores_per_key : int or None, default 20
        A key linked to more than this many distinct stores is a *hub*: it connects no stores
        and blocks no applicant, and :meth:`hub_keys` lists it for review.  ``None`` disables
        the rule.  The default, 20, sits above what one owner plausibly runs under shared
        identities (a few stores, a family's phones and devices) and well below shared
        infrastructure (courier phones, payment aggregators, mall addresses reach hundreds);
        tune it from the key-degree distribution of your own data.

    Notes
    -----
    **Stores** are integer ids in ``[0, 2**63)`` (typically the merchant ids ``0 .. n-1`` used by
    :class:`ecomcore.Ranker`); they need not be dense, memory grows with the number of distinct
    stores.  **Keys** are any hashable values in their own namespace: key ``5`` and store ``5``
    are different nodes.  Keys compare like ``dict`` keys (``1``, ``1.0``, ``True`` and
    ``np.int64(1)`` are one key; ``"1"`` and ``(1,)`` are others), except that numbers other
    than ``int``, ``float``, ``bool`` and NumPy numbers (``Decimal``, ``Fraction``) are only
    compared among themselves.  Use tuples tagged with the kind of
    identity so that a phone number never meets an account number of the same digits, e.g.
    ``("phone", "+5511...")``, ``("device", "a1f3...")``, ``("payout", "BR12...")`` -- or, for
    speed, int64 hashes of such tuples in a NumPy array (mapped without a Python loop).  NaN is
    not a key.  Up to ``2**31 - 2`` distinct stores and as many distinct keys.

    **Passing keys**: wherever several keys are expected, pass a list or a 1-D array.  A tuple
    is refused there, because a tuple is one key: ``blocked([("phone", "+55...")])``.

    **Updates and cost**: links are kept (repeated links count once).  Components are rebuilt
    by the Cython kernel, lazily, at the first query after :meth:`link` (or after banning a
    store never linked): O(links + keys + stores).  Rebuilding rather than uniting
    incrementally is what keeps the hub rule exact: a key that becomes a hub after unions
    through it were made would otherwise leave those unions in place.  :meth:`ban` and
    :meth:`unban` of known stores update per-component counters in O(1) per store.  Between
    mutations, queries read precomputed arrays.  A rebuild of a 5M-link graph takes on the
    order of 0.1 s, so a service should batch its links (e.g. link the stores approved in the
    last minute together) rather than link one store before every query.  :meth:`why` walks the
    query's component breadth-first in Python: O(component size).

    **Memory**: about 8 bytes per link, 50-70 bytes per distinct integer key or store (hash
    table at load <= 0.7, id arrays), plus a Python ``dict`` entry and the key object for each
    non-integer key; a rebuild briefly needs 4 more bytes per link.  See :attr:`nbytes`.

    **Thread safety**: an IdentityGraph may be shared between threads.  Every method takes an
    internal lock, so calls are serialised (a query waiting for a rebuild waits for the lock);
    the kernels release the GIL while they run.

    Examples
    --------
    >>> g = IdentityGraph()
    >>> g.link([1, 1, 2], [("phone", "+551"), ("device", "d1"), ("device", "d1")])
    >>> g.ban([1], reason="counterfeit")
    >>> g.blocked([("device", "d1")]), g.blocked([("phone", "+552")])
    (True, False)
    >>> g.banned_mask(4).tolist()
    [False, True, True, False]
    """

    def __init__(self, max_stores_per_key: Optional[int] = DEFAULT_MAX_STORES_PER_KEY) -> None:
        if max_stores_per_key is None:
            self._max = -1
        else:
            self._max = check_int(max_stores_per_key, "max_stores_per_key", minimum=1)
        self._lock = threading.RLock()
        # stores: id -> dense sid; sid -> id, ban flag and reason
        self._smap = _unionfind.IntMap()
        self._n_stores = 0
        self._store_ids = np.zeros(0, dtype=np.int64)
        self._banned = np.zeros(0, dtype=np.uint8)
        self._reason = np.zeros(0, dtype=np.int32)
        self._reasons: list[str] = []
        self._reason_index: dict[str, int] = {}
        # keys: integer keys in an IntMap, other keys in a dict, both giving the dense kid
        self._kmap = _unionfind.IntMap()
        self._okeys: dict = {}
        self._obj_list: list = []
        self._n_keys = 0
        self._key_val = np.zeros(0, dtype=np.int64)  # int key value, or index in _obj_list
        self._key_isobj = np.zeros(0, dtype=bool)
        # links (sid, kid); after a rebuild the prefix is distinct and grouped by key
        self._n_edges = 0
        self._e_store = np.zeros(0, dtype=np.int32)
        self._e_key = np.zeros(0, dtype=np.int32)
        # derived, valid while not self._dirty
        self._dirty = False
        self._parent = np.zeros(0, dtype=np.int32)
        self._key_comp = np.zeros(0, dtype=np.int32)
        self._key_ptr = np.zeros(1, dtype=np.int64)
        self._key_degree = np.zeros(0, dtype=np.int32)
        self._nbanned = np.zeros(1, dtype=np.int32)  # banned stores per root; [n_stores] stays 0
        self._index = _unionfind.BlockIndex(self._key_comp, self._nbanned)
        self._store_adj: Optional[tuple[np.ndarray, np.ndarray]] = None

    # -- properties -----------------------------------------------------------------------
    @property
    def max_stores_per_key(self) -> Optional[int]:
        """Hub threshold (None: no hubs)."""
        return None if self._max < 0 else self._max

    @property
    def n_stores(self) -> int:
        """Number of distinct stores seen (linked or banned)."""
        return self._n_stores

    @property
    def n_keys(self) -> int:
        """Number of distinct identity keys linked."""
        return self._n_keys

    @property
    def n_links(self) -> int:
        """Number of distinct (store, key) links."""
        with self._lock:
            self._ensure()
            return self._n_edges

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the graph's arrays and hash tables, in bytes.

        Object keys (strings, tuples) add their ``dict`` entries and the objects themselves,
        which are not counted.
        """
        arrays = (
            self._store_ids, self._banned, self._reason, self._key_val, self._key_isobj, self._e_store,
            self._e_key, self._parent, self._key_comp, self._key_ptr, self._key_degree, self._nbanned,
        )  # fmt: skip
        return int(sum(a.nbytes for a in arrays) + self._smap.nbytes + self._kmap.nbytes)

    def __repr__(self) -> str:
        return (
            f"IdentityGraph(max_stores_per_key={self.max_stores_per_key}, n_stores={self._n_stores}, "
            f"n_keys={self._n_keys}, n_banned={int(self._banned[: self._n_stores].sum())})"
        )

    # -- internals: ids -------------------------------------------------------------------
    def _store_sids(self, stores: np.ndarray, insert: bool, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Dense ids of ``stores`` (-1 for unknown ones unless ``insert``); caller holds the lock.

        ``out`` (int32, contiguous) receives them when given.
        """
        if out is None:
            out = np.empty(stores.shape[0], dtype=np.int32)
        if not insert:
            self._smap.get_many(stores, out)
            return out
        if self._n_stores + stores.shape[0] > _MAX_IDS and self._n_stores + np.unique(stores).size > _MAX_IDS:
            raise ValueError(f"store_ids: more than {_MAX_IDS} distinct stores")
        new_ids = np.empty(stores.shape[0], dtype=np.int64)
        s0 = self._n_stores
        n_new = self._smap.get_or_insert_many(stores, out, s0, new_ids)
        if n_new:
            s1 = s0 + n_new
            self._store_ids = _grow(self._store_ids, s0, s1)
            self._store_ids[s0:s1] = new_ids[:n_new]
            self._banned = _grow(self._banned, s0, s1, 0)
            self._reason = _grow(self._reason, s0, s1, -1)
            self._n_stores = s1
            self._dirty = True
        return out

    def _key_ids(self, keys: _Keys, name: str, insert: bool, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Dense ids of ``keys`` (-1 for unknown ones unless ``insert``); caller holds the lock.

        When inserting, object keys are inserted first (a failure there is rolled back), then
        integer keys (which cannot fail), so a failed call leaves the graph unchanged.  ``out``
        (int32, contiguous) receives the ids when given.
        """
        if out is None:
            out = np.empty(keys.n, dtype=np.int32)
        d = self._okeys
        if keys.obj_keys:
            before = len(d)
            try:
                if insert:
                    # a new key gets kid n_keys + (number of keys new in this call before it)
                    sd = d.setdefault
                    base = self._n_keys - before
                    kids = [sd(k, base + len(d)) for k in keys.obj_keys]
                else:
                    get = d.get
                    kids = [get(k, -1) for k in keys.obj_keys]
            except TypeError as exc:
                for _ in range(len(d) - before):
                    d.popitem()
                raise TypeError(f"{name}: keys must be hashable ({exc})") from None
            ids = np.array(kids, dtype=np.int32)
            n_new = len(d) - before
            if n_new:
                if self._n_keys + n_new > _MAX_IDS:
                    for _ in range(n_new):
                        d.popitem()
                    raise ValueError(f"{name}: more than {_MAX_IDS} distinct keys")
                k0, k1 = self._n_keys, self._n_keys + n_new
                self._obj_list.extend(reversed(list(islice(reversed(d), n_new))))
                self._key_val = _grow(self._key_val, k0, k1)
                self._key_val[k0:k1] = np.arange(before, before + n_new)
                self._key_isobj = _grow(self._key_isobj, k0, k1)
                self._key_isobj[k0:k1] = True
                self._n_keys = k1
                self._dirty = True
            if keys.obj_pos is None:
                out[:] = ids
            else:
                out[keys.obj_pos] = ids
        if keys.int_vals.shape[0]:
            vals = keys.int_vals
            tmp = out if keys.int_pos is None else np.empty(vals.shape[0], dtype=np.int32)
            if insert:
                if self._n_keys + vals.shape[0] > _MAX_IDS and self._n_keys + np.unique(vals).size > _MAX_IDS:
                    raise ValueError(f"{name}: more than {_MAX_IDS} distinct keys")
                new_vals = np.empty(vals.shape[0], dtype=np.int64)
                k0 = self._n_keys
                n_new = self._kmap.get_or_insert_many(vals, tmp, k0, new_vals)
                if n_new:
                    k1 = k0 + n_new
                    self._key_val = _grow(self._key_val, k0, k1)
                    self._key_val[k0:k1] = new_vals[:n_new]
                    self._key_isobj = _grow(self._key_isobj, k0, k1)
                    self._key_isobj[k0:k1] = False
                    self._n_keys = k1
                    self._dirty = True
            else:
                self._kmap.get_many(vals, tmp)
            if keys.int_pos is not None:
                out[keys.int_pos] = tmp
        return out

    def _key_value(self, kid: int) -> Hashable:
        v = int(self._key_val[kid])
        return self._obj_list[v] if self._key_isobj[kid] else v

    def _one_key_id(self, key: Any, name: str) -> int:
        t = type(key)
        if t is str or t is tuple or t is bytes:
            try:
                return self._okeys.get(key, -1)
            except TypeError:
                raise TypeError(f"{name}: keys must be hashable, got {t.__name__} {_short(key)}") from None
        if t is int and _INT64_MIN <= key <= _INT64_MAX:
            return self._kmap.get(key)
        if t is np.int64 or t is np.int32:
            return self._kmap.get(key)
        is_int, v = _norm_key(key, name)
        if is_int:
            return self._kmap.get(v)
        try:
            return self._okeys.get(v, -1)
        except TypeError:
            raise TypeError(f"{name}: keys must be hashable, got {type(key).__name__} {_short(key)}") from None

    # -- internals: components ------------------------------------------------------------
    def _ensure(self) -> None:
        """Rebuild the components when links or stores changed; caller holds the lock."""
        if not self._dirty:
            return
        n_s, n_k, n_e = self._n_stores, self._n_keys, self._n_edges
        key_ptr = np.empty(n_k + 1, dtype=np.int64)
        scratch = np.empty(n_e, dtype=np.int32)
        parent = np.empty(n_s, dtype=np.int32)
        size = np.empty(n_s, dtype=np.int32)
        key_comp = np.empty(n_k, dtype=np.int32)
        key_degree = np.empty(n_k, dtype=np.int32)
        w = _unionfind.rebuild(
            self._e_store,
            self._e_key,
            n_e,
            n_s,
            n_k,
            min(self._max, _INT64_MAX),  # a larger threshold (no key reaches it) must not overflow int64_t
            key_ptr,
            scratch,
            parent,
            size,
            key_comp,
            key_degree,
        )
        del scratch, size
        self._n_edges = int(w)
        banned = np.flatnonzero(self._banned[:n_s])
        self._nbanned = np.bincount(parent[banned], minlength=n_s + 1).astype(np.int32)
        self._parent, self._key_comp, self._key_ptr, self._key_degree = parent, key_comp, key_ptr, key_degree
        self._index = _unionfind.BlockIndex(key_comp, self._nbanned)
        self._store_adj = None
        self._dirty = False

    def _store_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Store -> keys adjacency (CSR over sids), built on demand; caller holds the lock."""
        if self._store_adj is None:
            m = self._n_edges
            es = self._e_store[:m]
            order = np.argsort(es, kind="stable")
            ptr = np.zeros(self._n_stores + 1, dtype=np.int64)
            np.cumsum(np.bincount(es, minlength=self._n_stores), out=ptr[1:])
            self._store_adj = (ptr, self._e_key[:m][order])
        return self._store_adj

    # -- mutation -------------------------------------------------------------------------
    def link(self, store_ids: ArrayLike, keys: ArrayLike) -> None:
        """Link stores to identity keys, in bulk: store ``store_ids[i]`` presented ``keys[i]``.

        Parameters
        ----------
        store_ids : int or array_like of int
            Store ids (>= 0), one per key; a single id applies to every key.
        keys : list or 1-D array
            Identity keys (hashable).  A non-object NumPy integer array (e.g. int64 hashes of
            identifiers) is mapped without a Python loop.

        Raises
        ------
        TypeError
            Non-integer store ids, unhashable keys, keys passed as a tuple or string.
        ValueError
            Negative store ids, NaN keys, ``store_ids`` and ``keys`` of different lengths.

        Notes
        -----
        Linking the same (store, key) pair again changes nothing.  The graph is left unchanged
        when the call raises.
        """
        k = _split_keys(keys, "keys")
        stores = _store_array(store_ids, "store_ids", k.n)
        if stores.shape[0] != k.n:
            raise ValueError(f"store_ids and keys: lengths differ ({stores.shape[0]} != {k.n})")
        if k.n == 0:
            return
        with self._lock:
            # ids are written straight into the link buffers, past the links in use
            e0, e1 = self._n_edges, self._n_edges + k.n
            self._e_store = _grow(self._e_store, e0, e1)
            self._e_key = _grow(self._e_key, e0, e1)
            self._key_ids(k, "keys", insert=True, out=self._e_key[e0:e1])
            self._store_sids(stores, insert=True, out=self._e_store[e0:e1])
            self._n_edges = e1
            self._dirty = True

    def ban(self, store_ids: ArrayLike, reason: str = "") -> None:
        """Ban stores (their whole components become blocked).

        Parameters
        ----------
        store_ids : int or array_like of int
            Stores to ban (>= 0); stores never linked are recorded too (a later link connects
            them).  Banning a banned store again replaces its reason.
        reason : str, default ""
            Recorded per store and reported by :meth:`why`.

        Raises
        ------
        TypeError, ValueError
            Bad store ids or a non-string reason; the graph is left unchanged.
        """
        stores = _store_array(store_ids, "store_ids")
        if not isinstance(reason, str):
            raise TypeError(f"reason: expected a str, got {type(reason).__name__}")
        if stores.shape[0] == 0:
            return
        with self._lock:
            sids = np.unique(self._store_sids(stores, insert=True))
            r = self._reason_index.get(reason)
            if r is None:
                r = len(self._reasons)
                self._reasons.append(reason)
                self._reason_index[reason] = r
            newly = sids[self._banned[sids] == 0]
            self._banned[sids] = 1
            self._reason[sids] = r
            if not self._dirty and newly.size:
                np.add.at(self._nbanned, self._parent[newly], 1)

    def unban(self, store_ids: ArrayLike) -> None:
        """Lift bans; stores that are not banned (or unknown) are ignored.

        Parameters
        ----------
        store_ids : int or array_like of int
            Stores to unban (>= 0).

        Raises
        ------
        TypeError, ValueError
            Bad store ids; the graph is left unchanged.
        """
        stores = _store_array(store_ids, "store_ids")
        if stores.shape[0] == 0:
            return
        with self._lock:
            sids = self._store_sids(stores, insert=False)
            sids = np.unique(sids[sids >= 0])
            was = sids[self._banned[sids] == 1]
            self._banned[was] = 0
            self._reason[was] = -1
            if not self._dirty and was.size:
                np.subtract.at(self._nbanned, self._parent[was], 1)

    # -- queries --------------------------------------------------------------------------
    def blocked(self, keys: ArrayLike) -> bool:
        """Whether an applicant presenting ``keys`` is connected to a banned store.

        Parameters
        ----------
        keys : list or 1-D array
            The applicant's identity keys.  Unknown keys and hub keys connect to nothing.

        Returns
        -------
        bool
            True when any non-hub key is linked, directly or through other stores' non-hub
            keys, to a banned store.

        Raises
        ------
        TypeError, ValueError
            As for :meth:`link` (every key is checked before answering).
        """
        if isinstance(keys, np.ndarray) and keys.ndim == 1 and keys.shape[0] <= 32:
            keys = keys.tolist()  # a few keys: the scalar path is faster than the vectorised one
        if type(keys) is list and len(keys) <= 32:
            with self._lock:
                self._ensure()
                try:
                    r = self._index.any_blocked(self._kmap, keys, self._okeys)
                except TypeError as exc:
                    raise TypeError(f"keys: keys must be hashable ({exc})") from None
            if r >= 0:
                return r == 1
        k = _split_keys(keys, "keys")
        with self._lock:
            self._ensure()
            kids = self._key_ids(k, "keys", insert=False)
            kids = kids[kids >= 0]
            return bool(np.any(self._nbanned[self._key_comp[kids]] > 0))

    def blocked_many(self, applicant_ids: ArrayLike, keys: ArrayLike) -> BlockedMany:
        """:meth:`blocked` for many applicants at once, from (applicant, key) pairs.

        Parameters
        ----------
        applicant_ids : array_like of int
            Applicant id of each key (any int64 values: these are not store ids).
        keys : list or 1-D array
            ``keys[i]`` was presented by applicant ``applicant_ids[i]``; same length.

        Returns
        -------
        BlockedMany
            ``(applicants, blocked)``: the distinct applicant ids, ascending, and for each
            whether it is blocked.  Vectorised; ``(ids, mask) = g.blocked_many(a, k)``.

        Raises
        ------
        TypeError, ValueError
            Non-integer applicant ids, bad keys, mismatched lengths.
        """
        k = _split_keys(keys, "keys")
        if isinstance(applicant_ids, (str, bytes)) or applicant_ids is None:
            raise TypeError(f"applicant_ids: expected integers, got {type(applicant_ids).__name__}")
        app = np.asarray(applicant_ids)
        if app.ndim != 1:
            raise ValueError(f"applicant_ids: expected a 1-D array, got shape {app.shape}")
        if app.size and app.dtype.kind not in "iu":
            raise TypeError(f"applicant_ids: expected integers, got dtype {app.dtype}")
        if app.dtype.kind == "u" and app.size and int(app.max()) > _INT64_MAX:
            raise ValueError("applicant_ids: values must fit in int64")
        if app.shape[0] != k.n:
            raise ValueError(f"applicant_ids and keys: lengths differ ({app.shape[0]} != {k.n})")
        uniq, inv = np.unique(app.astype(np.int64, copy=False), return_inverse=True)
        with self._lock:
            self._ensure()
            kids = self._key_ids(k, "keys", insert=False)
            hit = kids >= 0
            hit[hit] = self._nbanned[self._key_comp[kids[hit]]] > 0
        out = np.zeros(uniq.shape[0], dtype=bool)
        out[inv.reshape(-1)[hit]] = True
        return BlockedMany(uniq, out)

    def banned_mask(self, n: int, *, ignore_outside: bool = False) -> np.ndarray:
        """Boolean mask over stores ``0 .. n-1``: True for every store connected to a banned one.

        Parameters
        ----------
        n : int
            Number of stores (merchants) in the mask, e.g. ``Ranker``'s ``n_merchants``.
        ignore_outside : bool, default False
            By default a blocked store with id >= ``n`` raises (it would be silently dropped);
            True drops such stores.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` bool; banned stores themselves are True.  Feed it to
            ``Ranker(banned=...)``.

        Raises
        ------
        ValueError
            ``n`` negative, or a blocked store outside ``[0, n)`` without ``ignore_outside``.
        """
        n = check_int(n, "n", minimum=0)
        with self._lock:
            self._ensure()
            s = self._n_stores
            ids = self._store_ids[:s]
            blocked = self._nbanned[self._parent] > 0
        mask = np.zeros(n, dtype=bool)
        inside = ids < n
        if not ignore_outside and not inside.all():
            out = blocked & ~inside
            if out.any():
                raise ValueError(
                    f"n: blocked store {int(ids[out].max())} is outside [0, {n}); pass a larger n or "
                    "ignore_outside=True"
                )
        mask[ids[inside]] = blocked[inside]
        return mask

    def banned_stores(self) -> np.ndarray:
        """Ids of the banned stores (ascending int64 array)."""
        with self._lock:
            ids = self._store_ids[: self._n_stores][self._banned[: self._n_stores] == 1]
        return np.sort(ids)

    def hub_keys(self) -> list:
        """Keys linked to more than ``max_stores_per_key`` distinct stores, in first-linked order.

        Returns
        -------
        list
            The hub keys; they propagate no ban.  Worth a human look: a hub can also be a large
            fraud ring's shared device.
        """
        with self._lock:
            self._ensure()
            if self._max < 0:
                return []
            kids = np.flatnonzero(self._key_degree > self._max)
            return [self._key_value(int(k)) for k in kids]

    def degree(self, key: Hashable) -> int:
        """Number of distinct stores linked to ``key`` (0 for an unknown key).

        Parameters
        ----------
        key : hashable
            One identity key.

        Returns
        -------
        int
            The key's degree; it is a hub when the degree exceeds ``max_stores_per_key``.
        """
        with self._lock:
            kid = self._one_key_id(key, "key")
            if kid < 0:
                return 0
            self._ensure()
            return int(self._key_degree[kid])

    def links(self) -> tuple[np.ndarray, list]:
        """The distinct links as ``(store_ids, keys)``, grouped by key in first-linked order.

        Returns
        -------
        store_ids : numpy.ndarray
            int64 store ids.
        keys : list
            The key of each link.
        """
        with self._lock:
            self._ensure()
            m = self._n_edges
            stores = self._store_ids[self._e_store[:m]]
            ek = self._e_key[:m]
            vals = self._key_val[ek]
            isobj = self._key_isobj[ek]
            keys = [self._obj_list[v] if o else v for v, o in zip(vals.tolist(), isobj.tolist())]
        return stores, keys

    def why(self, store: Optional[int] = None, key: Optional[Hashable] = None) -> BanExplanation:
        """Explain whether a store or a key is blocked, naming the banned stores and a chain.

        Parameters
        ----------
        store : int, optional
            A store id.
        key : hashable, optional
            One identity key.  Exactly one of ``store`` and ``key`` is given.

        Returns
        -------
        BanExplanation
            ``blocked``, every banned store of the component with its reason, and one shortest
            chain of alternating stores and keys from the query to the nearest banned store.
            Ties between equally short chains are broken deterministically (by link order), so
            the same graph always gives the same chain.

        Raises
        ------
        ValueError
            Neither or both of ``store`` and ``key``; a bad store id.
        TypeError
            A non-integer store id or an unhashable key.
        """
        if (store is None) == (key is None):
            raise ValueError("why: give exactly one of store= and key=")
        with self._lock:
            if store is not None:
                if isinstance(store, (bool, np.bool_)) or not isinstance(store, numbers.Integral):
                    raise TypeError(f"store: expected an integer store id, got {type(store).__name__}")
                store = int(store)
                if not 0 <= store <= _INT64_MAX:
                    raise ValueError(f"store: store id {store} is out of range [0, 2**63)")
                query = ("store", store)
                sid = int(self._smap.get(store))
                if sid < 0:
                    return BanExplanation(query, False, known=False)
                self._ensure()
                root = int(self._parent[sid])
                start = (0, sid)
            else:
                kid = self._one_key_id(key, "key")
                query = ("key", key)
                if kid < 0:
                    return BanExplanation(query, False, known=False)
                self._ensure()
                root = int(self._key_comp[kid])
                if root == self._n_stores:
                    return BanExplanation(query, False, hub=True)
                start = (1, kid)
            if self._nbanned[root] == 0:
                return BanExplanation(query, False)
            n_s = self._n_stores
            bsids = np.flatnonzero(self._banned[:n_s])
            bsids = bsids[self._parent[bsids] == root]
            banned_ids = self._store_ids[bsids]
            order = np.argsort(banned_ids)
            banned_ids, bsids = banned_ids[order], bsids[order]
            reasons = {int(i): self._reasons[int(r)] for i, r in zip(banned_ids, self._reason[bsids])}
            chain = self._bfs_chain(start)
            return BanExplanation(query, True, tuple(int(i) for i in banned_ids), chain, reasons)

    def _bfs_chain(self, start: tuple[int, int]) -> tuple:
        """Shortest store/key chain from ``start`` to a banned store (caller holds the lock)."""
        key_ptr, e_store = self._key_ptr, self._e_store
        s_ptr, s_keys = self._store_keys()
        key_comp, n_s, banned = self._key_comp, self._n_stores, self._banned
        prev: dict[tuple[int, int], Optional[tuple[int, int]]] = {start: None}
        queue = deque([start])
        end = None
        while queue:
            node = queue.popleft()
            kind, i = node
            if kind == 0:
                if banned[i]:
                    end = node
                    break
                nbrs = [(1, int(k)) for k in s_keys[s_ptr[i] : s_ptr[i + 1]] if key_comp[k] != n_s]
            else:
                nbrs = [(0, int(s)) for s in e_store[key_ptr[i] : key_ptr[i + 1]]]
            for nb in nbrs:
                if nb not in prev:
                    prev[nb] = node
                    queue.append(nb)
        path = []
        while end is not None:
            path.append(end)
            end = prev[end]
        path.reverse()
        return tuple(
            ("store", int(self._store_ids[i])) if kind == 0 else ("key", self._key_value(i)) for kind, i in path
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to a versioned ``.npz`` file, atomically and without pickle.

        Parameters
        ----------
        path : str or path-like
            Target file (written exactly there; a crash mid-write leaves an old file intact).

        Raises
        ------
        TypeError
            A key that cannot be stored without pickle (supported: int, float, str, bytes,
            bool, None and tuples of these); nothing is written.
        """
        with self._lock:
            n_s, n_k, n_e = self._n_stores, self._n_keys, self._n_edges
            enc = [_enc(k) for k in self._obj_list]
            blob = np.frombuffer(json.dumps(enc, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)
            bsids = np.flatnonzero(self._banned[:n_s])
            arrays = {
                "store_ids": self._store_ids[:n_s],
                "key_val": self._key_val[:n_k],
                "key_isobj": self._key_isobj[:n_k],
                "obj_keys_json": blob,
                "edge_store": self._e_store[:n_e],
                "edge_key": self._e_key[:n_e],
                "banned_sid": bsids.astype(np.int64),
                "banned_reason": self._reason[bsids],
            }
            meta = {
                "max_stores_per_key": self.max_stores_per_key,
                "reasons": list(self._reasons),
                "n_stores": n_s,
                "n_keys": n_k,
                "n_obj_keys": len(self._obj_list),
            }
            save_npz(path, _FORMAT, _VERSION, arrays, meta)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> IdentityGraph:
        """Load a graph written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            File to read.

        Returns
        -------
        IdentityGraph
            A graph equal to the saved one (same links, bans, reasons, hub threshold).

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        ValueError
            When the file is truncated, corrupt, of another kind or of another format version.
        """
        arrays, meta = load_npz(path, _FORMAT, _VERSION)
        try:
            return cls._from_arrays(arrays, meta)
        except (KeyError, TypeError, ValueError, OverflowError, IndexError, UnicodeDecodeError) as exc:
            raise ValueError(f"{os.fspath(path)}: corrupt {_FORMAT} file ({exc})") from None

    @classmethod
    def _from_arrays(cls, arrays: dict, meta: dict) -> IdentityGraph:
        def arr(name: str, kinds: str) -> np.ndarray:
            a = arrays[name]
            if a.ndim != 1 or a.dtype.kind not in kinds:
                raise ValueError(f"array {name!r} has dtype {a.dtype} and shape {a.shape}")
            return a

        mx = meta["max_stores_per_key"]
        if mx is not None and (isinstance(mx, bool) or not isinstance(mx, int) or mx < 1):
            raise ValueError(f"max_stores_per_key {mx!r}")
        reasons = meta["reasons"]
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ValueError("reasons")
        if len(set(reasons)) != len(reasons):
            raise ValueError("repeated reasons")
        n_s, n_k, n_o = int(meta["n_stores"]), int(meta["n_keys"]), int(meta["n_obj_keys"])
        store_ids = arr("store_ids", "i").astype(np.int64)
        key_val = arr("key_val", "i").astype(np.int64)
        key_isobj = arr("key_isobj", "b")
        e_store = arr("edge_store", "i")
        e_key = arr("edge_key", "i")
        bsid = arr("banned_sid", "i").astype(np.int64)
        breason = arr("banned_reason", "i").astype(np.int64)
        if store_ids.shape[0] != n_s or key_val.shape[0] != n_k or key_isobj.shape[0] != n_k:
            raise ValueError("array lengths disagree with the header")
        if e_store.shape[0] != e_key.shape[0] or bsid.shape[0] != breason.shape[0]:
            raise ValueError("array lengths disagree")
        if n_s > _MAX_IDS or n_k > _MAX_IDS:
            raise ValueError("too many ids")
        objs = json.loads(bytes(arr("obj_keys_json", "u")).decode("utf-8"))
        if not isinstance(objs, list) or len(objs) != n_o:
            raise ValueError("object keys disagree with the header")
        objs = [_dec(x) for x in objs]
        g = cls(mx)
        # stores, in sid order
        if n_s:
            if store_ids.min() < 0:
                raise ValueError("negative store id")
            sids = g._store_sids(store_ids, insert=True)
            if g._n_stores != n_s or not np.array_equal(sids, np.arange(n_s)):
                raise ValueError("repeated store ids")
        # keys: object keys in _obj_list order, integer keys by value
        obj_kids = np.flatnonzero(key_isobj)
        if obj_kids.shape[0] != n_o or (n_o and not np.array_equal(key_val[obj_kids], np.arange(n_o))):
            raise ValueError("object key table")
        for kid, k in zip(obj_kids.tolist(), objs):
            is_int, v = _norm_key(k, "key")
            if is_int or g._okeys.setdefault(v, kid) != kid:
                raise ValueError(f"repeated or misfiled key {_short(k)}")
        g._obj_list = objs
        int_kids = np.flatnonzero(~key_isobj)
        if int_kids.size and g._kmap.set_many(key_val[int_kids], int_kids.astype(np.int32)):
            raise ValueError("repeated integer keys")
        g._key_val, g._key_isobj, g._n_keys = key_val.copy(), key_isobj.astype(bool), n_k
        # links
        if e_store.size and (e_store.min() < 0 or e_store.max() >= n_s or e_key.min() < 0 or e_key.max() >= n_k):
            raise ValueError("link out of range")
        g._e_store = np.ascontiguousarray(e_store, dtype=np.int32)
        g._e_key = np.ascontiguousarray(e_key, dtype=np.int32)
        g._n_edges = int(e_store.shape[0])
        # bans
        if bsid.size:
            if bsid.min() < 0 or bsid.max() >= n_s or np.unique(bsid).size != bsid.size:
                raise ValueError("banned stores")
            if breason.min() < 0 or breason.max() >= len(reasons):
                raise ValueError("ban reasons")
        g._reasons = list(reasons)
        g._reason_index = {r: i for i, r in enumerate(reasons)}
        g._banned[bsid] = 1
        g._reason[bsid] = breason.astype(np.int32)
        g._dirty = True
        return g
