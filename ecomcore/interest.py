"""Interest profiles from behaviour: users x tags (A), tags x merchants (B), follows (F).

An :class:`InterestModel` holds the configuration (event weights, half-life, IDF, truncation,
normalisation); an :class:`InterestState` holds what has been folded so far: for every
(user, tag) pair a forward-decayed sum

    S[u, t] = sum over events e of user u, over tags t of e's item:
              event_weights[kind_e] * weight_e * item_tags[item_e, t] * exp(lam * (time_e - t_ref))

with ``lam = ln 2 / (half_life_days * 86400)`` and a reference time ``t_ref`` fixed by the state
(Cormode et al. 2009).  Decayed to a moment ``now`` the sum is

    S[u, t] * exp(-lam * (now - t_ref))
        = sum_e event_weights[kind_e] * weight_e * item_tags[item_e, t] * 2 ** (-(now - time_e) / h)

so folding events in any split and any order gives the same state (up to float64 rounding), and
new events never touch old ones.  ``t_ref`` moves forward (rescaling every stored sum once) when a
newer event would weigh more than ``exp(64)``, so the sums never overflow.

Profiles (:meth:`InterestModel.profiles`) are computed from the state in four steps: decay to
``now``, multiply by the tag IDF, keep the ``max_tags_per_user`` largest tags of each user,
normalise each row.  Merchant profiles (:meth:`InterestModel.merchant_profiles`) and the follow
matrix (:meth:`InterestModel.follow_matrix`) complete the inputs of :class:`ecomcore.Ranker`.

Choices (where the issue was silent):

* Sizes are declared, never inferred.  A state holds ``n_users`` and ``n_tags`` and grows only by
  :meth:`InterestState.resize`; ``item_tags`` fixes the items (ids ``< item_tags.shape[0]``) and
  must have exactly ``state.n_tags`` columns.  The model's optional ``n_users`` / ``n_items`` /
  ``n_tags`` size new states and check ``item_tags``.
* A state records its configuration (event kinds and weights, half-life); folding, reading or
  merging with another configuration is an error rather than a silent mix of scales.
* Event kinds are names from ``event_weights`` or integer codes in its order; an optional
  ``weight`` column multiplies the kind's weight.  Events whose weight is 0 store nothing.
* ``half_life_days=None`` (or ``inf``) means no decay.  Events later than ``now`` weigh
  ``2 ** ((t - now) / h) > 1`` (the same formula, no clamping).  Contributions more than about
  1,000 half-lives older than the newest folded event fall below float64's range and count 0.
* IDF is scikit-learn's smooth IDF ``log((1 + n) / (1 + df)) + 1`` over the ``n`` users with a
  non-empty profile; it is computed before truncation.  With a row normalisation ``now`` only
  scales each row (decay is relative), so it changes nothing; it matters for ``normalize=None``.
* Merchant profiles sum their items' tag vectors (optionally weighted, e.g. by sales) and are
  normalised per merchant column with the model's ``normalize``; no IDF, no truncation.
* Follows: the most recent follow of (user, merchant) counts ``d(t)`` once; every purchase from
  the merchant after the user's first adds ``repeat_purchase_weight * d(t)``.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp

from ecomcore._persist import load_npz, save_npz
from ecomcore._validation import CSRParts, as_csr, as_ids, as_vector, check_int, check_real, to_array
from ecomcore_ext import _interest

__all__ = ["DEFAULT_EVENT_WEIGHTS", "InterestModel", "InterestState"]

ArrayLike = Any

#: Default weight of each event kind (used when ``event_weights`` is not given).
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType({"view": 1.0, "fav": 2.0, "cart": 3.0, "buy": 5.0})

#: Event kinds understood by :meth:`InterestModel.follow_matrix` (names, or codes 0 and 1).
FOLLOW_KINDS: tuple[str, ...] = ("follow", "buy")

_SECONDS_PER_DAY = 86400.0
_MAX_ID = 2**31 - 1  # user and tag ids share one int64 key ((user + 1) << 32 | tag)
_SLOT = np.dtype([("key", np.int64), ("val", np.float64)])
_RANKED = np.dtype([("val", np.float64), ("pos", np.int64), ("tag", np.int64)])
_TAGVAL = np.dtype([("tag", np.int64), ("val", np.float64)])
_MAX_LOAD = 0.7
_MIN_CAPACITY = 16
# t_ref moves forward when a new event's forward-decay factor exp(lam * (t - t_ref)) would pass
# exp(_REBASE_EXPONENT); sums stay far below float64's range (checked against _VALUE_LIMIT).
_REBASE_EXPONENT = 64.0
_VALUE_LIMIT = 1e300
_NORMALIZE = {"l2": 1, "l1": 2, "max": 3}
_FORMAT_KIND = "ecomcore.InterestState"
_FORMAT_VERSION = 1
_NO_DROP = np.zeros(0, dtype=np.uint8)
_NO_WEIGHT = np.zeros(0, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_half_life(value: Any, name: str = "half_life_days") -> Optional[float]:
    """``None`` or ``inf`` mean no decay; otherwise a finite real > 0."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number of days or None, got {type(value).__name__}")
    v = float(value)
    if v == math.inf:
        return None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be > 0 (or None / inf for no decay), got {value!r}")
    return v


def _decay_rate(half_life_days: Optional[float]) -> float:
    """lambda per second: ln 2 / half-life (0 without decay)."""
    return 0.0 if half_life_days is None else math.log(2.0) / (half_life_days * _SECONDS_PER_DAY)


def _check_size(value: Any, name: str) -> int:
    n = check_int(value, name, minimum=0)
    if n > _MAX_ID:
        raise ValueError(f"{name}: at most {_MAX_ID} supported, got {n}")
    return n


def _check_event_weights(event_weights: Any) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if not isinstance(event_weights, Mapping):
        raise TypeError(
            f"event_weights: expected a mapping of event kind to weight, got {type(event_weights).__name__}"
        )
    if len(event_weights) == 0:
        raise ValueError("event_weights: must name at least one event kind")
    names, weights = [], []
    for name, w in event_weights.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"event_weights: keys must be non-empty strings, got {name!r}")
        weights.append(check_real(w, f"event_weights[{name!r}]", minimum=0.0))
        names.append(name)
    return tuple(names), tuple(weights)


def _check_now(now: Any) -> Optional[float]:
    return None if now is None else check_real(now, "now")


def _capacity_for(n_keys: int) -> int:
    """Smallest power-of-two table holding ``n_keys`` keys at the maximum load factor."""
    cap = _MIN_CAPACITY
    while int(cap * _MAX_LOAD) < n_keys:
        cap *= 2
    return cap


def _empty_table(capacity: int) -> np.ndarray:
    """A table of ``capacity`` empty slots (key 0; zero-filled memory, allocated lazily)."""
    return np.zeros(capacity, dtype=_SLOT)


def _shift_of(capacity: int) -> int:
    return 64 - (capacity.bit_length() - 1)


def _index_dtype(*sizes: int) -> Any:
    return np.int32 if max(sizes, default=0) < _MAX_ID else np.int64


# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------


def _column(events: Any, name: str) -> Any:
    """Column ``name`` of a mapping / DataFrame / pyarrow Table / structured array, or None."""
    try:
        return events[name]
    except (KeyError, ValueError, IndexError):
        return None
    except TypeError:
        raise TypeError(
            "events: expected columns by name (a dict of arrays, a pandas DataFrame or a pyarrow "
            f"Table), got {type(events).__name__}"
        ) from None


def _as_1d(col: Any, name: str) -> np.ndarray:
    if sp.issparse(col):
        raise TypeError(f"{name}: expected a 1-D array, got a sparse matrix")
    arr = to_array(col, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D column, got shape {arr.shape}")
    return arr


def _id_array(arr: np.ndarray, name: str, n: int, *, scan: bool = True) -> np.ndarray:
    """Integer ids in ``[0, n)`` as a contiguous int64 array (``scan=False``: caller checks the range)."""
    kind = arr.dtype.kind
    if kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{name}: missing or non-finite id ({arr[bad]}) at row {bad}")
        frac = arr != np.floor(arr)
        if frac.any():
            bad = int(np.flatnonzero(frac)[0])
            raise TypeError(f"{name}: ids must be integers, got {arr[bad]} at row {bad}")
        big = (arr < 0) | (arr >= n)
        if big.any():
            bad = int(np.flatnonzero(big)[0])
            raise ValueError(f"{name}: id {arr[bad]:g} at row {bad} is out of range [0, {n})")
    elif kind == "u":
        if arr.size and arr.max() >= n:
            bad = int(np.flatnonzero(arr >= n)[0])
            raise ValueError(f"{name}: id {arr[bad]} at row {bad} is out of range [0, {n})")
    elif kind != "i":
        raise TypeError(f"{name}: ids must be integers, got dtype {arr.dtype}")
    ids = np.ascontiguousarray(arr, dtype=np.int64)
    bad = _interest.scan_ids(ids, n) if scan else -1
    if bad >= 0:
        raise ValueError(f"{name}: id {ids[bad]} at row {bad} is out of range [0, {n})")
    return ids


def _time_array(arr: np.ndarray, name: str) -> tuple[np.ndarray, float, float]:
    """Unix seconds as contiguous float64 (datetime64 accepted); returns ``(t, min, max)``."""
    if arr.dtype.kind == "M":
        arr = (arr - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    elif arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected Unix seconds (numbers), got dtype {arr.dtype}")
    t = np.ascontiguousarray(arr, dtype=np.float64)
    bad, lo, hi = _interest.scan_reals(t, False)
    if bad >= 0:
        raise ValueError(f"{name}: missing or non-finite time ({t[bad]}) at row {bad}")
    return t, lo, hi


def _weight_array(arr: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected non-negative numbers, got dtype {arr.dtype}")
    w = np.ascontiguousarray(arr, dtype=np.float64)
    bad, _, hi = _interest.scan_reals(w, True)
    if bad >= 0:
        raise ValueError(f"{name}: weight {w[bad]} at row {bad} is not a finite number >= 0")
    return w, hi


def _kind_codes(arr: np.ndarray, names: tuple[str, ...], name: str) -> np.ndarray:
    """Event kinds (names, or integer codes in the order of ``names``) as int32 codes."""
    k = len(names)
    kind = arr.dtype.kind
    if arr.size == 0 and kind in "iufUSO":  # an empty list arrives as float64
        return np.zeros(0, dtype=np.int32)
    if kind in "iu":
        if arr.size:
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= k:
                bad = int(np.flatnonzero((arr < 0) | (arr >= k))[0])
                raise ValueError(
                    f"{name}: unknown event kind code {arr[bad]} at row {bad} (codes 0..{k - 1} "
                    f"stand for {list(names)})"
                )
        return np.ascontiguousarray(arr, dtype=np.int32)
    if kind not in "USO":
        raise TypeError(f"{name}: expected event kind names or integer codes, got dtype {arr.dtype}")
    codes = np.full(arr.shape[0], -1, dtype=np.int32)
    for c, kname in enumerate(names):
        target: Union[str, bytes] = kname.encode("utf-8") if kind == "S" else kname
        hit = arr == target
        if not isinstance(hit, np.ndarray):  # pragma: no cover - exotic object arrays
            raise TypeError(f"{name}: cannot compare the kinds with {kname!r}")
        codes[hit] = c
    missing = codes < 0
    if missing.any():
        bad = int(np.flatnonzero(missing)[0])
        raise ValueError(f"{name}: unknown event kind {arr[bad]!r} at row {bad} (known: {list(names)})")
    return codes


class _Events:
    """Validated event columns."""

    __slots__ = ("user", "item", "kind", "time", "weight", "t_lo", "t_hi", "w_max", "n_pairs")

    def __init__(self, events: Any, names: tuple[str, ...], n_users: int, x: CSRParts) -> None:
        if isinstance(events, np.ndarray) and events.dtype.names is None:
            raise TypeError("events: expected columns by name (a dict of arrays, a DataFrame, a Table)")
        cols = {}
        for col in ("user", "item", "kind", "time", "weight"):
            c = _column(events, col)
            if c is None and col != "weight":
                raise ValueError(f"events: missing column {col!r} (need user, item, kind, time; optional weight)")
            if c is not None:
                cols[col] = _as_1d(c, f"events[{col!r}]")
        lengths = {col: int(a.shape[0]) for col, a in cols.items()}
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{c}: {n}" for c, n in lengths.items())
            raise ValueError(f"events: columns have different lengths ({desc})")
        self.user = _id_array(cols["user"], "events['user']", n_users)
        item = _id_array(cols["item"], "events['item']", x.shape[0], scan=False)
        bad, n_pairs = _interest.scan_items(item, x.indptr)
        if bad >= 0:
            raise ValueError(f"events['item']: id {item[bad]} at row {bad} is out of range [0, {x.shape[0]})")
        self.item = item
        self.n_pairs = int(n_pairs)
        self.kind = _kind_codes(cols["kind"], names, "events['kind']")
        self.time, self.t_lo, self.t_hi = _time_array(cols["time"], "events['time']")
        if "weight" in cols:
            self.weight, self.w_max = _weight_array(cols["weight"], "events['weight']")
        else:
            self.weight, self.w_max = _NO_WEIGHT, 1.0

    def __len__(self) -> int:
        return int(self.user.shape[0])


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


class InterestState:
    """Forward-decayed (user, tag) sums folded from behaviour events.

    Create states with :meth:`InterestModel.new_state` or :meth:`InterestModel.fold`; fold more
    events with ``model.fold(events, item_tags, into=state)``.

    Parameters
    ----------
    n_users : int
        Number of users; user ids are ``0 .. n_users - 1`` (at most 2**31 - 1).  Grow with
        :meth:`resize`.
    n_tags : int
        Number of tags (columns of ``item_tags``); at most 2**31 - 1.  Grow with :meth:`resize`.
    half_life_days : float or None, default 14.0
        Half-life of the decay in days; ``None`` or ``inf``: no decay.
    event_weights : mapping of str to float, optional
        Weight of each event kind (default :data:`DEFAULT_EVENT_WEIGHTS`).  Together with the
        half-life it is the state's configuration: only a model with the same configuration
        may fold into, read or merge the state.

    Notes
    -----
    Storage is one open-addressing hash table of ((user + 1) << 32 | tag, float64 sum) records, 16
    bytes per slot at a load factor of at most 0.7, grown by doubling (or to a projected size)
    while folding: memory is about 23-46 bytes per stored (user, tag) pair, whatever ``n_users``
    and ``n_tags`` are.  Sums are float64.

    A state is mutable.  Every method holds the state's internal lock while it runs, so calls
    from several threads never corrupt it, but a sequence of calls (fold, then profiles) is not
    atomic: use your own lock for that.  A fold that is interrupted part-way (``MemoryError``
    while growing the table, ``KeyboardInterrupt`` between kernel calls) leaves the state
    marked broken: every later call raises ``ValueError``; reload or rebuild it.  Validation
    errors never reach that point: a fold that raises ``ValueError``/``TypeError`` leaves the
    state unchanged.
    """

    def __init__(
        self,
        n_users: int,
        n_tags: int,
        *,
        half_life_days: Optional[float] = 14.0,
        event_weights: Optional[Mapping[str, float]] = None,
    ) -> None:
        self._n_users = _check_size(n_users, "n_users")
        self._n_tags = _check_size(n_tags, "n_tags")
        self._half_life = _check_half_life(half_life_days)
        self._lam = _decay_rate(self._half_life)
        names, weights = _check_event_weights(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights)
        self._kinds = names
        self._weights = weights
        self._t_ref = 0.0 if self._lam == 0 else math.nan
        self._last_time = math.nan
        self._n_events = 0
        self._mass = 0.0  # upper bound of the sum of all stored values (all are >= 0)
        self._broken: Optional[str] = None
        self._lock = threading.Lock()
        self._set_table(_empty_table(_MIN_CAPACITY), 0)

    # -- properties -------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        """Number of users (rows of the profiles)."""
        return self._n_users

    @property
    def n_tags(self) -> int:
        """Number of tags (columns of the profiles)."""
        return self._n_tags

    @property
    def half_life_days(self) -> Optional[float]:
        """Half-life in days (``None``: no decay)."""
        return self._half_life

    @property
    def event_weights(self) -> dict[str, float]:
        """Weight of each event kind, in code order (a copy)."""
        return dict(zip(self._kinds, self._weights))

    @property
    def reference_time(self) -> Optional[float]:
        """The forward-decay reference time ``t_ref`` in Unix seconds (``None`` before any event or without decay)."""
        return None if (self._lam == 0 or math.isnan(self._t_ref)) else self._t_ref

    @property
    def last_time(self) -> Optional[float]:
        """Latest event time folded so far (``None`` before any event); the default ``now``."""
        return None if math.isnan(self._last_time) else self._last_time

    @property
    def n_events(self) -> int:
        """Number of events folded (or merged) into the state."""
        return self._n_events

    @property
    def n_entries(self) -> int:
        """Number of stored (user, tag) sums."""
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the hash table."""
        return int(self._table.nbytes)

    def __repr__(self) -> str:
        hl = "None" if self._half_life is None else f"{self._half_life:g}"
        return (
            f"InterestState(n_users={self._n_users}, n_tags={self._n_tags}, half_life_days={hl}, "
            f"n_events={self._n_events}, n_entries={self._count})"
        )

    # -- internals --------------------------------------------------------------------------
    def _config(self) -> tuple:
        return (self._kinds, self._weights, self._half_life)

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise ValueError(f"state: unusable, {self._broken}; reload it from a saved file or fold it again")

    def _set_table(self, table: np.ndarray, count: int) -> None:
        self._table = table
        self._shift = _shift_of(table.shape[0])
        self._max_fill = int(table.shape[0] * _MAX_LOAD)
        self._count = int(count)

    def _rehash(self, capacity: int, drop_user: np.ndarray = _NO_DROP, *, scrub: bool = False) -> int:
        """Move every key (but those of dropped users) into a new table of ``capacity`` slots."""
        new = _empty_table(capacity)
        count = _interest.rehash(self._table, new, _shift_of(capacity), drop_user, 1.0)
        old = self._table
        self._set_table(new, count)
        if scrub:
            old.view(np.uint8)[:] = 0
        return count

    def _reserve(self, n_keys: int) -> None:
        """Grow the table (if needed) so that it holds ``n_keys`` keys."""
        if n_keys > self._max_fill:
            self._rehash(_capacity_for(n_keys))

    def _export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The positive sums as CSR arrays sorted by (user, tag): int64 indptr, int32 tags, float64."""
        user_count = np.zeros(self._n_users, dtype=np.int64)
        nnz = _interest.count_entries(self._table, user_count)
        indptr = np.zeros(self._n_users + 1, dtype=np.int64)
        np.cumsum(user_count, out=indptr[1:])
        longest = int(user_count.max()) if self._n_users else 0
        tags = np.empty(nnz, dtype=np.int32)
        vals = np.empty(nnz, dtype=np.float64)
        scratch = np.empty(longest if longest > 32 else 0, dtype=_TAGVAL)
        _interest.scatter_sorted(self._table, indptr, indptr[:-1].copy(), tags, vals, scratch)
        return indptr, tags, vals

    def _fold(self, ev: _Events, x: CSRParts) -> None:
        """Fold validated events (caller holds the lock and has checked the configuration)."""
        n = len(ev)
        if n == 0:
            return
        lam = self._lam
        t_ref = self._t_ref
        rebase = 1.0
        if lam != 0:
            if math.isnan(t_ref):
                t_ref = ev.t_hi
            elif lam * (ev.t_hi - t_ref) > _REBASE_EXPONENT:
                rebase = math.exp(-lam * (ev.t_hi - t_ref))
                t_ref = ev.t_hi
        kw = np.asarray(self._weights, dtype=np.float64)
        tv_max = float(x.data.max()) if x.data.size else 0.0
        e_max = lam * (ev.t_hi - t_ref)
        added = ev.n_pairs * float(kw.max()) * ev.w_max * tv_max * math.exp(max(e_max, 0.0))
        mass = self._mass * rebase + added
        if not mass < _VALUE_LIMIT:
            raise ValueError(
                "events['weight']: weights this large (up to "
                f"{ev.w_max:.3g}, times event weights up to {float(kw.max()):.3g} and tag values up to "
                f"{tv_max:.3g}) could overflow the float64 sums"
            )
        # From here on the state changes.  Rebasing alone keeps its meaning; a fold stopped
        # part-way does not, so any exception below marks the state broken.
        if rebase != 1.0:
            _interest.scale_values(self._table, rebase)
        self._t_ref = t_ref
        self._mass = mass
        try:
            start = 0
            count0 = self._count
            while True:
                stop, count = _interest.fold_events(
                    self._table, self._shift, self._count, self._max_fill, start,
                    ev.user, ev.item, ev.kind, ev.time, ev.weight, kw,
                    x.indptr, x.indices, x.data, lam, t_ref,
                )  # fmt: skip
                self._count = int(count)
                if stop >= n:
                    break
                it = int(ev.item[stop])
                need = self._count + int(x.indptr[it + 1] - x.indptr[it])
                done = stop / n
                new_keys = self._count - count0
                if done >= 1 / 16:
                    projected = count0 + int(new_keys / done) + 1
                else:
                    projected = 8 * max(self._count, 1)
                upper = min(count0 + ev.n_pairs, self._n_users * self._n_tags)
                self._rehash(_capacity_for(max(need, min(max(projected, 2 * self._count), upper))))
                start = stop
        except BaseException as exc:
            self._broken = f"a fold was interrupted part-way ({type(exc).__name__})"
            raise
        self._n_events += n
        if math.isnan(self._last_time) or ev.t_hi > self._last_time:
            self._last_time = ev.t_hi

    # -- public methods ----------------------------------------------------------------------
    def resize(self, n_users: Optional[int] = None, n_tags: Optional[int] = None) -> InterestState:
        """Grow the declared number of users and/or tags in place (never shrinks).

        Parameters
        ----------
        n_users : int, optional
            New number of users (>= the current one).
        n_tags : int, optional
            New number of tags (>= the current one).

        Returns
        -------
        InterestState
            ``self``.
        """
        with self._lock:
            self._check_usable()
            nu = self._n_users if n_users is None else _check_size(n_users, "n_users")
            nt = self._n_tags if n_tags is None else _check_size(n_tags, "n_tags")
            if nu < self._n_users:
                raise ValueError(f"n_users: cannot shrink from {self._n_users} to {nu} (use forget to drop users)")
            if nt < self._n_tags:
                raise ValueError(f"n_tags: cannot shrink from {self._n_tags} to {nt}")
            self._n_users, self._n_tags = nu, nt
        return self

    def reserve(self, n_entries: int) -> InterestState:
        """Grow the table now so that it holds ``n_entries`` (user, tag) sums without growing.

        Folds grow the table by themselves (doubling, or to a size projected from the fold's
        progress); reserving ahead only saves the rehashing when the final size is known, e.g.
        from yesterday's state.  Never shrinks.

        Parameters
        ----------
        n_entries : int
            Number of (user, tag) sums to make room for.

        Returns
        -------
        InterestState
            ``self``.
        """
        n = check_int(n_entries, "n_entries", minimum=0)
        with self._lock:
            self._check_usable()
            self._reserve(n)
        return self

    def copy(self) -> InterestState:
        """Return an independent copy of the state.

        Returns
        -------
        InterestState
            A deep copy (own table, own lock).
        """
        with self._lock:
            self._check_usable()
            other = InterestState.__new__(InterestState)
            other.__dict__.update(self.__dict__)
            other._lock = threading.Lock()
            other._set_table(self._table.copy(), self._count)
        return other

    def forget(self, user_ids: ArrayLike) -> int:
        """Remove everything held about the given users, in place (privacy requests).

        Every (user, tag) sum of these users is deleted; the table is rebuilt without them and
        the old table's memory is overwritten before it is released.  Aggregate metadata that is
        not about a user (number of events folded, latest event time) is kept.  The users stay
        declared (ids remain valid; their profiles are empty until they act again).

        Parameters
        ----------
        user_ids : array_like of int
            User ids in ``[0, n_users)`` (repeats allowed).

        Returns
        -------
        int
            Number of (user, tag) sums removed.
        """
        with self._lock:
            self._check_usable()
            ids = as_ids(user_ids, "user_ids", self._n_users)
            if ids.size == 0:
                return 0
            drop = np.zeros(self._n_users, dtype=np.uint8)
            drop[ids] = 1
            before = self._count
            self._rehash(self._table.shape[0], drop, scrub=True)
            return before - self._count

    def merge(self, other: InterestState, *, inplace: bool = False) -> InterestState:
        """Combine with a state folded separately (same configuration).

        The result equals folding both states' events into one state (up to float64 rounding).

        Parameters
        ----------
        other : InterestState
            State with the same event weights and half-life, and no more users or tags than
            this one (grow this one with :meth:`resize` first).
        inplace : bool, default False
            Add ``other`` into this state and return it; otherwise return a new state and
            leave both unchanged.

        Returns
        -------
        InterestState
            The merged state.
        """
        if not isinstance(other, InterestState):
            raise TypeError(f"other: expected an InterestState, got {type(other).__name__}")
        if other is self:
            other = self.copy()
        if other._config() != self._config():
            raise ValueError(
                "other: folded with another configuration (event_weights "
                f"{other.event_weights} / half_life_days {other.half_life_days}, this state has "
                f"{self.event_weights} / {self.half_life_days})"
            )
        if not isinstance(inplace, (bool, np.bool_)):
            raise TypeError(f"inplace: expected a bool, got {type(inplace).__name__}")
        target = self if inplace else self.copy()
        first, second = sorted((target, other), key=id)
        with first._lock, second._lock:
            target._check_usable()
            other._check_usable()
            if other._n_users > target._n_users or other._n_tags > target._n_tags:
                raise ValueError(
                    f"other: has {other._n_users} users x {other._n_tags} tags, more than this state's "
                    f"{target._n_users} x {target._n_tags}; resize this state first"
                )
            lam = target._lam
            t_a, t_b = target._t_ref, other._t_ref
            if math.isnan(t_b):
                t_new, s_a, s_b = t_a, 1.0, 1.0
            elif math.isnan(t_a):
                t_new, s_a, s_b = t_b, 1.0, 1.0
            else:
                t_new = max(t_a, t_b)
                s_a, s_b = math.exp(lam * (t_a - t_new)), math.exp(lam * (t_b - t_new))
            mass = target._mass * s_a + other._mass * s_b
            if not mass < _VALUE_LIMIT:
                raise ValueError("other: the merged sums could overflow float64")
            target._reserve(target._count + other._count)
            if s_a != 1.0:
                _interest.scale_values(target._table, s_a)
            target._t_ref = t_new
            target._mass = mass
            target._count = int(_interest.add_table(target._table, target._shift, target._count, other._table, s_b))
            target._n_events += other._n_events
            if not math.isnan(other._last_time) and not (other._last_time <= target._last_time):
                target._last_time = other._last_time
        return target

    def decayed_sums(self, now: Optional[float] = None) -> sp.csr_array:
        """The raw decayed sums at ``now``: users x tags, float64 (no IDF, truncation or norm).

        Parameters
        ----------
        now : float, optional
            Unix seconds; default :attr:`last_time`.  Events later than ``now`` weigh
            ``2 ** ((t - now) / h) > 1`` (the same formula).

        Returns
        -------
        scipy.sparse.csr_array
            Shape ``(n_users, n_tags)``, canonical (sorted indices, no duplicates, no zeros).
        """
        now = _check_now(now)
        with self._lock:
            self._check_usable()
            indptr, tags, vals = self._export()
            t_ref, last, lam = self._t_ref, self._last_time, self._lam
            shape = (self._n_users, self._n_tags)
        if now is None:
            now = 0.0 if math.isnan(last) else last
        if lam != 0 and vals.size:
            with np.errstate(over="ignore"):
                vals *= math.exp(-lam * (now - t_ref)) if lam * (t_ref - now) < 700 else math.inf
            if not np.isfinite(vals).all():
                raise ValueError(f"now: {now} is so far before the folded events that their weights overflow")
        return _csr(indptr, tags, vals, shape)

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Write the state to ``path`` (versioned ``.npz``, atomic, no pickle).

        Only the positive (user, tag) sums are written, sorted by (user, tag), with the
        configuration and reference time.

        Parameters
        ----------
        path : str or path-like
            Target file (written exactly there, replacing it atomically).
        """
        with self._lock:
            self._check_usable()
            indptr, tags, vals = self._export()
            users = np.repeat(np.arange(self._n_users, dtype=np.int32), np.diff(indptr))
            meta = {
                "n_users": self._n_users,
                "n_tags": self._n_tags,
                "half_life_days": self._half_life,
                "event_kinds": list(self._kinds),
                "event_weights": list(self._weights),
                "reference_time": None if math.isnan(self._t_ref) else self._t_ref,
                "last_time": None if math.isnan(self._last_time) else self._last_time,
                "n_events": self._n_events,
            }
            save_npz(path, _FORMAT_KIND, _FORMAT_VERSION, {"user": users, "tag": tags, "value": vals}, meta)

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> InterestState:
        """Read a state written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            File to read.

        Returns
        -------
        InterestState
            The state.

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        ValueError
            When the file is truncated, corrupt, of another kind or version, or inconsistent.
        """
        arrays, meta = load_npz(path, _FORMAT_KIND, _FORMAT_VERSION)
        p = os.fspath(path)

        def bad(what: str) -> ValueError:
            return ValueError(f"{p}: corrupt {_FORMAT_KIND} file ({what})")

        try:
            state = cls(
                meta["n_users"],
                meta["n_tags"],
                half_life_days=meta["half_life_days"],
                event_weights=dict(zip(meta["event_kinds"], meta["event_weights"])),
            )
            if len(meta["event_kinds"]) != len(meta["event_weights"]) or len(set(meta["event_kinds"])) != len(
                meta["event_kinds"]
            ):
                raise ValueError("event kinds and weights do not match")
            t_ref = meta["reference_time"]
            last = meta["last_time"]
            n_events = check_int(meta["n_events"], "n_events", minimum=0)
            for name, v in (("reference_time", t_ref), ("last_time", last)):
                if v is not None:
                    check_real(v, name)
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"header: {e}") from None
        if set(arrays) != {"user", "tag", "value"}:
            raise bad(f"arrays {sorted(arrays)}")
        u, t, v = arrays["user"], arrays["tag"], arrays["value"]
        if any(a.ndim != 1 for a in (u, t, v)) or not (u.shape == t.shape == v.shape):
            raise bad("array shapes differ")
        if u.dtype.kind not in "iu" or t.dtype.kind not in "iu" or v.dtype != np.float64:
            raise bad("array dtypes")
        n = u.shape[0]
        if n:
            if u.min() < 0 or u.max() >= state._n_users or t.min() < 0 or t.max() >= state._n_tags:
                raise bad("ids out of range")
            if not (np.isfinite(v).all() and v.min() > 0):
                raise bad("sums must be finite and positive")
            keys = (u.astype(np.int64) << 32) | t.astype(np.int64)
            if n > 1 and not (np.diff(keys) > 0).all():
                raise bad("entries not sorted or repeated")
            if state._lam != 0 and t_ref is None:
                raise bad("sums without a reference time")
            mass = float(v.sum())
            if not mass < _VALUE_LIMIT:
                raise bad("sums too large")
        else:
            keys = np.zeros(0, np.int64)
            mass = 0.0
        cap = _capacity_for(n)
        table = _empty_table(cap)
        _interest.insert_entries(
            table, _shift_of(cap), np.ascontiguousarray(keys >> 32), np.ascontiguousarray(keys & 0xFFFFFFFF), v
        )
        state._set_table(table, n)
        if state._lam != 0:
            state._t_ref = math.nan if t_ref is None else float(t_ref)
        state._last_time = math.nan if last is None else float(last)
        state._n_events = n_events
        state._mass = mass
        return state


def _csr(indptr: np.ndarray, tags: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> sp.csr_array:
    """A canonical csr_array (zeros dropped) with int32 indices when they fit."""
    zero = vals == 0
    if zero.any():
        keep = ~zero
        kept_before = np.zeros(vals.shape[0] + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        indptr, tags, vals = kept_before[indptr], tags[keep], vals[keep]
    idt = _index_dtype(int(vals.shape[0]), shape[1])
    m = sp.csr_array((vals, np.asarray(tags, dtype=idt), np.asarray(indptr, dtype=idt)), shape=shape, copy=False)
    m.has_sorted_indices = True
    m.has_canonical_format = True
    return m


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class InterestModel:
    """Turn behaviour events into interest profiles (users x tags) for :class:`ecomcore.Ranker`.

    Parameters
    ----------
    event_weights : mapping of str to float, optional
        Weight of each event kind, e.g. ``{"view": 1, "fav": 2, "cart": 3, "buy": 5}`` (the
        default, :data:`DEFAULT_EVENT_WEIGHTS`).  Non-empty; weights finite and >= 0.  Events
        may give their kind by name or by integer code in this mapping's order.
    half_life_days : float or None, default 14.0
        An event ``a`` days old weighs ``2 ** (-a / half_life_days)``.  ``None`` (or ``inf``):
        no decay.
    idf : bool, default True
        Multiply each tag by its smooth IDF ``log((1 + n) / (1 + df[t])) + 1`` (as
        scikit-learn's ``TfidfTransformer(smooth_idf=True)``), where ``n`` is the number of users
        with a non-empty profile and ``df[t]`` the number of those holding tag ``t``.  A tag every
        active user holds keeps weight 1; rarer tags weigh more.
    max_tags_per_user : int or None, default None
        Keep only each user's largest tags (after IDF; ties: lower tag id first).
    normalize : {"l2", "l1", "max", None}, default "l2"
        Divide each profile row by its Euclidean norm, its sum or its largest value; ``None``
        keeps the decayed (IDF-weighted) sums.
    n_users : int, optional
        Number of users of the states this model creates (:meth:`new_state`, :meth:`fold`
        without a state).  A state's own size governs folds into it.
    n_items : int, optional
        When given, ``item_tags`` must have exactly this many rows.
    n_tags : int, optional
        When given, ``item_tags`` must have exactly this many columns.

    Notes
    -----
    The model is immutable and safe to share between threads; states are not (see
    :class:`InterestState`).  Sizes are declared, never inferred: user ids must lie in
    ``[0, state.n_users)``, item ids in ``[0, item_tags.shape[0])``, and ``item_tags`` must have
    ``state.n_tags`` columns.  Grow a state with :meth:`InterestState.resize`.
    """

    def __init__(
        self,
        event_weights: Optional[Mapping[str, float]] = None,
        half_life_days: Optional[float] = 14.0,
        idf: bool = True,
        max_tags_per_user: Optional[int] = None,
        normalize: Optional[str] = "l2",
        *,
        n_users: Optional[int] = None,
        n_items: Optional[int] = None,
        n_tags: Optional[int] = None,
    ) -> None:
        self._kinds, self._weights = _check_event_weights(
            DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights
        )
        self._half_life = _check_half_life(half_life_days)
        if not isinstance(idf, (bool, np.bool_)):
            raise TypeError(f"idf: expected a bool, got {type(idf).__name__}")
        self._idf = bool(idf)
        self._max_tags = None if max_tags_per_user is None else check_int(max_tags_per_user, "max_tags_per_user")
        if normalize is not None and (not isinstance(normalize, str) or normalize not in _NORMALIZE):
            raise ValueError(f"normalize: expected 'l2', 'l1', 'max' or None, got {normalize!r}")
        self._normalize = normalize
        self._n_users = None if n_users is None else _check_size(n_users, "n_users")
        self._n_items = None if n_items is None else check_int(n_items, "n_items", minimum=0)
        self._n_tags = None if n_tags is None else _check_size(n_tags, "n_tags")

    # -- properties -------------------------------------------------------------------------
    @property
    def event_weights(self) -> dict[str, float]:
        """Weight of each event kind, in code order (a copy)."""
        return dict(zip(self._kinds, self._weights))

    @property
    def half_life_days(self) -> Optional[float]:
        """Half-life in days (``None``: no decay)."""
        return self._half_life

    @property
    def idf(self) -> bool:
        """Whether profiles are IDF-weighted."""
        return self._idf

    @property
    def max_tags_per_user(self) -> Optional[int]:
        """Tags kept per user (``None``: all)."""
        return self._max_tags

    @property
    def normalize(self) -> Optional[str]:
        """Row normalisation of the profiles."""
        return self._normalize

    @property
    def n_users(self) -> Optional[int]:
        """Number of users of new states (``None``: not declared)."""
        return self._n_users

    def __repr__(self) -> str:
        return (
            f"InterestModel(event_weights={self.event_weights}, half_life_days={self._half_life}, "
            f"idf={self._idf}, max_tags_per_user={self._max_tags}, normalize={self._normalize!r})"
        )

    # -- internals --------------------------------------------------------------------------
    def _config(self) -> tuple:
        return (self._kinds, self._weights, self._half_life)

    def _check_state(self, state: Any, name: str) -> InterestState:
        if not isinstance(state, InterestState):
            raise TypeError(f"{name}: expected an InterestState, got {type(state).__name__}")
        if state._config() != self._config():
            raise ValueError(
                f"{name}: folded with another configuration (event_weights {state.event_weights}, "
                f"half_life_days {state.half_life_days}); this model has {self.event_weights}, "
                f"{self._half_life}"
            )
        return state

    def _item_tags(self, item_tags: ArrayLike, n_tags: Optional[int]) -> CSRParts:
        x = as_csr(item_tags, "item_tags", value_dtype=np.dtype(np.float64), shape=(self._n_items, self._n_tags))
        if n_tags is not None and x.shape[1] != n_tags:
            raise ValueError(
                f"item_tags: has {x.shape[1]} tag columns but the state has {n_tags} tags "
                "(grow the state with state.resize(n_tags=...))"
            )
        if x.shape[1] > _MAX_ID:
            raise ValueError(f"item_tags: at most {_MAX_ID} tags supported, got {x.shape[1]}")
        if x.data.size and x.data.min() < 0:
            raise ValueError(f"item_tags: values must be >= 0, found {x.data.min()}")
        return x

    # -- public methods ----------------------------------------------------------------------
    def new_state(self, n_users: Optional[int] = None, n_tags: Optional[int] = None) -> InterestState:
        """An empty state with this model's configuration.

        Parameters
        ----------
        n_users : int, optional
            Number of users (default: the model's ``n_users``).
        n_tags : int, optional
            Number of tags (default: the model's ``n_tags``).

        Returns
        -------
        InterestState
            An empty state.
        """
        nu = self._n_users if n_users is None else n_users
        nt = self._n_tags if n_tags is None else n_tags
        if nu is None:
            raise ValueError("n_users: declare the number of users (InterestModel(n_users=...) or new_state(n_users))")
        if nt is None:
            raise ValueError("n_tags: declare the number of tags (InterestModel(n_tags=...) or new_state(n_tags=...))")
        return InterestState(
            nu, nt, half_life_days=self._half_life, event_weights=dict(zip(self._kinds, self._weights))
        )

    def fold(
        self,
        events: Any,
        item_tags: ArrayLike,
        state: Optional[InterestState] = None,
        *,
        into: Optional[InterestState] = None,
    ) -> InterestState:
        """Fold behaviour events into decayed (user, tag) sums.

        Every event adds ``event_weights[kind] * weight * item_tags[item, t]``, decayed from its
        time, to each tag ``t`` of its item.  Any split of the events, folded in any order (or
        into separate states then merged), gives the same state up to float64 rounding.

        Parameters
        ----------
        events : mapping of str to array_like
            Columns (a dict of arrays, a pandas DataFrame, a pyarrow Table or a structured
            array; other columns are ignored): ``user`` (int ids), ``item`` (int ids), ``kind``
            (names of ``event_weights`` or int codes in its order), ``time`` (Unix seconds, or
            datetime64), optional ``weight`` (finite, >= 0, e.g. watch seconds; multiplies the
            kind's weight).  Columns are converted to int64/float64 (a copy unless they already
            are).
        item_tags : sparse matrix, shape (n_items, n_tags)
            Weighted tags of each item (finite, >= 0).
        state : InterestState, optional
            Fold into a copy of this state (it is left unchanged).
        into : InterestState, optional
            Fold into this state in place (incremental; no copy).

        Returns
        -------
        InterestState
            The folded state (``into`` itself when given).

        Raises
        ------
        ValueError, TypeError
            On any invalid input; the target state is then unchanged.
        """
        if state is not None and into is not None:
            raise ValueError("state, into: give one or the other (state: fold into a copy; into: in place)")
        if into is not None:
            target = self._check_state(into, "into")
            with target._lock:
                target._check_usable()
                x = self._item_tags(item_tags, target._n_tags)
                ev = _Events(events, self._kinds, target._n_users, x)
                target._fold(ev, x)
            return target
        if state is not None:
            self._check_state(state, "state")
            state._check_usable()
            x = self._item_tags(item_tags, state.n_tags)
            ev = _Events(events, self._kinds, state.n_users, x)
            target = state.copy()
        else:
            if self._n_users is None:
                raise ValueError(
                    "n_users: declare the number of users (InterestModel(n_users=...)) or fold into a "
                    "state from new_state(n_users, n_tags)"
                )
            x = self._item_tags(item_tags, None)
            ev = _Events(events, self._kinds, self._n_users, x)
            target = self.new_state(self._n_users, x.shape[1])
        with target._lock:
            target._fold(ev, x)
        return target

    def profiles(self, state: InterestState, now: Optional[float] = None) -> sp.csr_array:
        """Interest profiles A (users x tags, float32) at ``now``.

        Steps: decay every sum to ``now``; multiply by the tag IDF (``idf=True``); keep each
        user's ``max_tags_per_user`` largest tags (ties: lower tag id); normalise each row.
        With a row normalisation, decaying all sums to the same moment is a common factor per
        row, so ``now`` does not change the result (recency still matters: older events weigh
        less than newer ones); it scales the sums only when ``normalize=None``.

        Parameters
        ----------
        state : InterestState
            A state folded with this model's configuration.
        now : float, optional
            Unix seconds; default ``state.last_time``.  Events later than ``now`` weigh
            ``2 ** ((t - now) / h) > 1`` (the same formula).

        Returns
        -------
        scipy.sparse.csr_array
            Shape ``(state.n_users, state.n_tags)``, float32, canonical (sorted indices, no
            duplicates, no explicit zeros).  Users without events have empty rows.
        """
        self._check_state(state, "state")
        now = _check_now(now)
        with state._lock:
            state._check_usable()
            indptr, tags, vals = state._export()
            t_ref, last = state._t_ref, state._last_time
            shape = (state._n_users, state._n_tags)
        if now is None:
            now = 0.0 if math.isnan(last) else last
        lam = _decay_rate(self._half_life)
        if self._normalize is None and lam != 0 and vals.size:
            with np.errstate(over="ignore"):
                vals *= math.exp(-lam * (now - t_ref)) if lam * (t_ref - now) < 700 else math.inf
        if self._idf and vals.size:
            df = np.bincount(tags, minlength=shape[1])
            n_active = int(np.count_nonzero(np.diff(indptr)))
            idf = np.log((1.0 + n_active) / (1.0 + df)) + 1.0
            vals *= idf[tags]
        k = self._max_tags
        if k is not None and vals.size:
            lengths = np.diff(indptr)
            longest = int(lengths.max())
            if longest > k:
                keep = np.empty(vals.shape[0], dtype=np.uint8)
                _interest.row_topk_mask(indptr, tags, vals, k, keep, np.empty(longest, dtype=_RANKED))
                mask = keep.view(bool)
                kept_before = np.zeros(vals.shape[0] + 1, dtype=np.int64)
                np.cumsum(mask, out=kept_before[1:])
                indptr, tags, vals = kept_before[indptr], tags[mask], vals[mask]
        if self._normalize is not None:
            _interest.normalize_rows(indptr, vals, _NORMALIZE[self._normalize])
        with np.errstate(over="ignore"):
            out = vals.astype(np.float32)
        if out.size and not np.isfinite(out).all():
            raise ValueError(
                f"now: the decayed sums at now={now} overflow float32 (events far after now, or huge "
                "weights); use a normalisation or a later now"
            )
        return _csr(indptr, tags, out, shape)

    def merchant_profiles(
        self,
        item_tags: ArrayLike,
        item_merchant: ArrayLike,
        weights: Optional[ArrayLike] = None,
        *,
        n_merchants: Optional[int] = None,
    ) -> sp.csr_array:
        """Merchant profiles B (tags x merchants, float32) from the catalogue.

        ``B[t, m] = sum over items i of merchant m of weights[i] * item_tags[i, t]``, then each
        merchant's column is normalised like the users' rows (the model's ``normalize``).  No
        IDF and no truncation are applied on the merchant side (the user side carries the IDF;
        applying it on both sides would count it twice).

        Parameters
        ----------
        item_tags : sparse matrix, shape (n_items, n_tags)
            Weighted tags of each item (finite, >= 0).
        item_merchant : array_like of int, shape (n_items,)
            The merchant selling each item, in ``[0, n_merchants)``.
        weights : array_like, shape (n_items,), optional
            Per-item weight (e.g. sales; finite, >= 0); default 1.
        n_merchants : int, optional
            Number of merchants (columns); default ``max(item_merchant) + 1``.

        Returns
        -------
        scipy.sparse.csr_array
            Shape ``(n_tags, n_merchants)``, float32, canonical.  Merchants without (weighted)
            items have empty columns.
        """
        x = self._item_tags(item_tags, None)
        n_items, n_tags = x.shape
        mer = _as_1d(item_merchant, "item_merchant")
        if mer.shape[0] != n_items:
            raise ValueError(f"item_merchant: expected {n_items} entries (one per item), got {mer.shape[0]}")
        if n_merchants is None:
            mer = _id_array(mer, "item_merchant", _MAX_ID)
            n_m = int(mer.max()) + 1 if mer.size else 0
        else:
            n_m = _check_size(n_merchants, "n_merchants")
            mer = _id_array(mer, "item_merchant", n_m)
        w = np.ones(n_items) if weights is None else as_vector(weights, "weights", n_items, minimum=0.0)
        xm = sp.csr_array((x.data, x.indices, x.indptr), shape=x.shape)
        m = sp.csr_array((w, (mer, np.arange(n_items))), shape=(n_m, n_items))
        bt = sp.csr_array(m @ xm)  # merchants x tags, float64
        bt.sum_duplicates()
        bt.eliminate_zeros()
        if not np.isfinite(bt.data).all():
            raise ValueError("weights: the merchant sums overflow float64")
        vals = np.ascontiguousarray(bt.data, dtype=np.float64)
        if self._normalize is not None:
            _interest.normalize_rows(np.ascontiguousarray(bt.indptr, dtype=np.int64), vals, _NORMALIZE[self._normalize])
        with np.errstate(over="ignore"):
            bt.data = vals.astype(np.float32)
        if bt.data.size and not np.isfinite(bt.data).all():
            raise ValueError("weights: the merchant sums overflow float32; use a normalisation")
        b = sp.csr_array(bt.T.tocsr())  # tags x merchants
        b.sort_indices()
        return _csr(np.asarray(b.indptr, dtype=np.int64), np.asarray(b.indices, dtype=np.int32), b.data, (n_tags, n_m))

    def follow_matrix(
        self,
        user: ArrayLike,
        merchant: ArrayLike,
        time: ArrayLike,
        *,
        kind: Optional[ArrayLike] = None,
        now: float,
        half_life_days: Optional[float] = None,
        repeat_purchase_weight: float = 1.0,
        n_users: int,
        n_merchants: int,
    ) -> sp.csr_array:
        """The follow matrix F (users x merchants, float32) for ``Ranker.topk(follows=F)``.

        Rule, with ``d(t) = 2 ** (-(now - t) / h)``:

            F[u, m] = max over u's follow events of m of d(t)
                      + repeat_purchase_weight * sum over u's purchases from m, except the earliest, of d(t)

        A follow counts once (its most recent event); a first purchase is not a follow signal,
        every later one is (repurchase, the "private domain").

        Parameters
        ----------
        user : array_like of int
            User ids in ``[0, n_users)``.
        merchant : array_like of int
            Merchant ids in ``[0, n_merchants)``.
        time : array_like
            Unix seconds (or datetime64), finite.
        kind : array_like, optional
            ``"follow"`` or ``"buy"`` per event (or codes 0 and 1); default: every event is a
            follow.
        now : float
            Unix seconds the weights refer to.
        half_life_days : float, optional
            Half-life of this decay (``inf``: none); default the model's.
        repeat_purchase_weight : float, default 1.0
            Weight of each repeat purchase (finite, >= 0).
        n_users : int
            Number of users (rows).
        n_merchants : int
            Number of merchants (columns).

        Returns
        -------
        scipy.sparse.csr_array
            Shape ``(n_users, n_merchants)``, float32, canonical.
        """
        nu = _check_size(n_users, "n_users")
        nm = _check_size(n_merchants, "n_merchants")
        cols = {"user": _as_1d(user, "user"), "merchant": _as_1d(merchant, "merchant"), "time": _as_1d(time, "time")}
        if kind is not None:
            cols["kind"] = _as_1d(kind, "kind")
        lengths = {c: int(a.shape[0]) for c, a in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "user, merchant, time, kind: different lengths ("
                + ", ".join(f"{c}: {n}" for c, n in lengths.items())
                + ")"
            )
        u = _id_array(cols["user"], "user", nu)
        m = _id_array(cols["merchant"], "merchant", nm)
        t, _, _ = _time_array(cols["time"], "time")
        codes = (
            np.zeros(u.shape[0], dtype=np.int32) if kind is None else _kind_codes(cols["kind"], FOLLOW_KINDS, "kind")
        )
        now = check_real(now, "now")
        hl = self._half_life if half_life_days is None else _check_half_life(half_life_days)
        rpw = check_real(repeat_purchase_weight, "repeat_purchase_weight", minimum=0.0)
        lam = _decay_rate(hl)
        with np.errstate(over="ignore"):
            d = np.exp(-lam * (now - t)) if lam else np.ones(t.shape[0])
        if not np.isfinite(d).all():
            raise ValueError(f"time: events so far after now={now} that their weights overflow")
        key = u * nm + m
        f = codes == 0
        fk, fd = key[f], d[f]
        order = np.lexsort((fd, fk))
        fk, fd = fk[order], fd[order]
        last = np.ones(fk.shape[0], dtype=bool)
        last[:-1] = fk[1:] != fk[:-1]
        b = codes == 1
        bk, bt, bd = key[b], t[b], d[b]
        order = np.lexsort((bt, bk))
        bk, bd = bk[order], bd[order]
        first = np.ones(bk.shape[0], dtype=bool)
        first[1:] = bk[1:] != bk[:-1]
        keys = np.concatenate([fk[last], bk[~first]])
        vals = np.concatenate([fd[last], rpw * bd[~first]])
        if nm == 0 or keys.size == 0:
            return _csr(np.zeros(nu + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), (nu, nm))
        fm = sp.coo_array((vals, (keys // nm, keys % nm)), shape=(nu, nm)).tocsr()
        fm.sum_duplicates()
        with np.errstate(over="ignore"):
            out = np.asarray(fm.data, dtype=np.float32)
        if not np.isfinite(out).all():
            raise ValueError("repeat_purchase_weight: the follow weights overflow float32")
        return _csr(np.asarray(fm.indptr, np.int64), np.asarray(fm.indices, np.int32), out, (nu, nm))
