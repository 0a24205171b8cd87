"""Trust engine, fold side: :class:`TrustModel` and the incremental :class:`TrustState`.

An event stream (merchant, indicator, value, time, optional buyer) folds into exponentially
decayed sufficient statistics per (merchant, indicator) — decayed count ``n``, decayed sum ``s``,
decayed sum of squares ``s2`` and the plain number of counted events — by *forward decay*
(Cormode, Shkapenyuk, Srivastava & Xu, "Forward decay: a practical time decay model for
streaming systems", ICDE 2009; design §3): an event at time ``t`` is stored with weight
``exp(lam * (t - t_ref))``, ``lam = ln 2 / half_life``, so folding new events never touches the
old ones, and reading the state at ``now`` multiplies everything by ``exp(lam * (t_ref - now))``.
An event exactly one half-life older than ``now`` therefore weighs 0.5.

Reference time and rebasing
    ``t_ref`` is the largest event time of the first fold.  When a later batch holds an event more
    than ``50 / lam`` seconds (about 72 half-lives) after ``t_ref``, the stored sums are rescaled
    by ``exp(lam * (t_ref - t_max))`` and ``t_ref`` moves to that batch's largest time, so no
    stored weight ever exceeds ``e**50`` (no overflow, whatever the time span).  Evidence more
    than ~1000 half-lives older than ``t_ref`` underflows to 0: at any ``now >= last_time`` it
    weighs less than ``2**-1000`` anyway.  Every rescaling is a multiplication by a positive
    factor and all summands are non-negative, so folding in parts, in any order, or merging
    states folded separately, agrees with one fold to a few ulp (far inside 1e-9 relative).

Buyer deduplication
    When events carry a buyer id (``>= 0``), one buyer's events on one (merchant, indicator)
    within one fixed bucket ``floor(time / (dedupe_days * 86400))`` count once: the *earliest*
    of them (ties: the smallest value).  That rule is a minimum, so it does not depend on fold
    order or on how the events are split.  Such events are not added to the sums at fold time:
    the state keeps, per key (merchant, indicator, buyer, bucket), the counted event's time and
    value in an open-addressing hash table (NumPy array, size O(distinct keys), saved and merged
    with the state), and :meth:`TrustState.stats` adds them with a pass over the table, each
    with weight ``2 ** -((now - t) / half_life)``.  The result is exact and order-independent;
    the price is a state that grows with the number of distinct keys.  Events without a buyer
    (column absent, or id -1) go straight into the sums.

Vetoes
    For an indicator with ``veto=True`` every event with value 1 (deduplicated or not) sets the
    merchant's veto time to the latest such event time; the event also counts as a normal trial.

Thread safety
    Every :class:`TrustState` carries an internal lock: ``fold(..., into=state)``, ``resize``,
    ``merge``, ``stats``, ``copy`` and ``save`` hold it, so several threads may use one state;
    folds into one state run one after the other (the kernels release the GIL, so folds into
    *different* states run in parallel — fold shards separately and :meth:`TrustState.merge`).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ecomcore._persist import load_npz, save_npz
from ecomcore._validation import check_int, check_real
from ecomcore.indicators import DIMENSIONS, Indicator
from ecomcore.trust_stats import TrustStats
from ecomcore_ext import _trust

if TYPE_CHECKING:  # pragma: no cover
    from ecomcore.trust_scoring import TrustScores

__all__ = ["TrustModel", "TrustState"]

_DAY = 86400.0
# Rebase when lam * (t_max - t_ref) would exceed this: stored weights stay below e**50.
_REBASE = 50.0
# Largest magnitude value accepted (keeps decayed sums of squares far from overflow).
MAX_MAGNITUDE = 1e100
# Largest |time| accepted, in Unix seconds (about the year 5138): rejects ms/us/ns stamps.
TIME_LIMIT = float(_trust.TIME_LIMIT)
# dedupe hash-table slot: key = cell + 1 (0 = empty, so a new table is zeroed memory), buyer, time, value
_SLOT = np.dtype([("key", "<i8"), ("buyer", "<i8"), ("t", "<f8"), ("v", "<f8")])
_MIN_TABLE = 1024
# Largest share of occupied dedupe-table slots (linear probing stays short below ~0.6).
_MAX_LOAD = 0.6
_FORMAT = "TrustState"
_VERSION = 1
_INT64_MAX = np.iinfo(np.int64).max
_TINY = float(np.finfo(np.float64).tiny)  # smallest normal double: decayed weights below it are no evidence


def _aligned_zeros(n_cells: int) -> np.ndarray:
    """A zeroed float64 ``(n_cells, 4)`` array whose data starts on a 64-byte boundary."""
    buf = np.zeros(n_cells * 4 + 8, dtype=np.float64)
    off = (-buf.ctypes.data % 64) // 8
    return buf[off : off + n_cells * 4].reshape(n_cells, 4)


def _empty_table(capacity: int) -> np.ndarray:
    table = np.zeros(capacity, dtype=_SLOT)
    return table


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _capacity_for(keys: int) -> int:
    """Table capacity (a power of two) holding ``keys`` keys within the load limit."""
    return max(_MIN_TABLE, _pow2_at_least(math.ceil(keys / _MAX_LOAD)))


def _max_used(capacity: int) -> int:
    return int(capacity * _MAX_LOAD)


def _check_half_life(value: Any, name: str) -> float:
    v = check_real(value, name)
    if v <= 0:
        raise ValueError(f"{name}: must be > 0, got {v}")
    return v


# Slack of the load-time bounds between the sums: a relative factor far beyond accumulated
# rounding, and an absolute term beyond MAX_MAGNITUDE times the smallest subnormal (a rescaling
# may flush n to 0 while n * value, up to MAX_MAGNITUDE times larger, keeps a residue).
_SUM_FACTOR = 8.0
_SUM_FLOOR = 1e-200
# relative slack of the per-kind mean check (the scoring's own tolerance)
_MEAN_TOL = 1e-9


def _cell_name(cell: int, names: Sequence[str], n_ind: int) -> str:
    return f"merchant {cell // n_ind}, indicator {names[cell % n_ind]!r}"


def _check_sums(acc: np.ndarray, names: Sequence[str], n_ind: int) -> None:
    """Check the invariants every fold, rescale and merge keeps between one cell's sums.

    ``acc`` is ``(n_cells, 4)`` (n, s, s2, count), already finite, >= 0 and with integral
    counts.  Every event adds to all four fields at once (count += 1, the others >= 0), so
    a cell without events holds exact zeros; every value is at most ``MAX_MAGNITUDE``, so
    ``s <= MAX_MAGNITUDE * n`` and ``s2 <= MAX_MAGNITUDE * s`` up to rounding.
    """
    if acc.shape[0] == 0:
        return
    n, sm, s2, count = acc[:, 0], acc[:, 1], acc[:, 2], acc[:, 3]
    no_events = count == 0
    if no_events.any():
        bad = no_events & ((n != 0) | (sm != 0) | (s2 != 0))
        if bad.any():
            c = int(np.argmax(bad))
            raise ValueError(
                f"array 'acc': {_cell_name(c, names, n_ind)} has n = {float(n[c])!r}, s = {float(sm[c])!r}, "
                f"s2 = {float(s2[c])!r} but no counted event (folds leave such a cell all zero)"
            )
    with np.errstate(over="ignore"):
        bad_s = sm > _SUM_FACTOR * MAX_MAGNITUDE * n + _SUM_FLOOR
        bad_s2 = s2 > _SUM_FACTOR * MAX_MAGNITUDE * sm + _SUM_FLOOR
    if bad_s.any():
        c = int(np.argmax(bad_s))
        raise ValueError(
            f"array 'acc': {_cell_name(c, names, n_ind)} has the sum s = {float(sm[c])!r} out of range for its "
            f"decayed count n = {float(n[c])!r} (values are at most {MAX_MAGNITUDE:g})"
        )
    if bad_s2.any():
        c = int(np.argmax(bad_s2))
        raise ValueError(
            f"array 'acc': {_cell_name(c, names, n_ind)} has the sum of squares s2 = {float(s2[c])!r} out of "
            f"range for its sum s = {float(sm[c])!r} (values are at most {MAX_MAGNITUDE:g})"
        )


# ---------------------------------------------------------------------------------------------
# TrustState


class TrustState:
    """Decayed sufficient statistics per (merchant, indicator), folded by :meth:`TrustModel.fold`.

    Usually made by :meth:`TrustModel.new_state` or :meth:`TrustModel.fold`.  Merchant ids are
    ``0 .. n_merchants - 1``; grow explicitly with :meth:`resize`.  See the module docstring for
    the decay, deduplication and thread-safety rules.

    Parameters
    ----------
    indicator_names : sequence of str
        Unique indicator names, in the model's order (column order of the statistics).
    n_merchants : int
        Number of merchants (>= 0).
    half_life_days : float, default 90.0
        Half-life of the decay, in days (finite, > 0).
    dedupe_days : float, default 10.0
        Width of the buyer-deduplication buckets, in days (finite, > 0).
    """

    def __init__(
        self,
        indicator_names: Sequence[str],
        *,
        n_merchants: int,
        half_life_days: float = 90.0,
        dedupe_days: float = 10.0,
    ) -> None:
        if isinstance(indicator_names, (str, bytes, Mapping)) or not hasattr(indicator_names, "__iter__"):
            raise TypeError("indicator_names: expected a sequence of strings")
        names = tuple(indicator_names)
        if not names:
            raise ValueError("indicator_names: at least one indicator is needed")
        for nm in names:
            if not isinstance(nm, str) or not nm:
                raise TypeError(f"indicator_names: expected non-empty strings, got {nm!r}")
        if len(set(names)) != len(names):
            raise ValueError("indicator_names: names must be unique")
        self._names = names
        self._n_ind = len(names)
        self._n_m = check_int(n_merchants, "n_merchants", minimum=0)
        self._half_life_days = _check_half_life(half_life_days, "half_life_days")
        self._dedupe_days = _check_half_life(dedupe_days, "dedupe_days")
        self._lam = math.log(2.0) / (self._half_life_days * _DAY)
        self._dd_sec = self._dedupe_days * _DAY
        if not (self._lam > 0 and math.isfinite(self._lam)) or not (self._dd_sec > 0 and math.isfinite(self._dd_sec)):
            raise ValueError("half_life_days / dedupe_days: out of the representable range")
        self._acc = _aligned_zeros(self._n_m * self._n_ind)
        self._veto = np.full(self._n_m, -np.inf)
        self._t_ref = 0.0
        self._last_time = -math.inf
        self._table = _empty_table(0)
        self._used = 0
        # the file a loaded state came from, until a model has checked its sums against the
        # indicators' value ranges (TrustModel._check_state); None when built by folds/merges
        self._unverified: Optional[str] = None
        self._lock = threading.RLock()

    # -- properties ---------------------------------------------------------------------------

    @property
    def n_merchants(self) -> int:
        """Number of merchants (rows)."""
        return self._n_m

    @property
    def n_indicators(self) -> int:
        """Number of indicators (columns)."""
        return self._n_ind

    @property
    def indicator_names(self) -> tuple[str, ...]:
        """Indicator names, in column order."""
        return self._names

    @property
    def half_life_days(self) -> float:
        """Half-life of the decay, in days."""
        return self._half_life_days

    @property
    def dedupe_days(self) -> float:
        """Width of the buyer-deduplication buckets, in days."""
        return self._dedupe_days

    @property
    def last_time(self) -> Optional[float]:
        """Latest event time folded so far (Unix seconds), None before the first event."""
        return None if self._last_time == -math.inf else float(self._last_time)

    @property
    def reference_time(self) -> float:
        """Forward-decay reference time ``t_ref`` of the stored sums (an implementation detail)."""
        return float(self._t_ref)

    @property
    def n_dedupe_keys(self) -> int:
        """Number of distinct (merchant, indicator, buyer, bucket) keys held for deduplication."""
        return self._used

    @property
    def nbytes(self) -> int:
        """Bytes held by the state's arrays."""
        return int(self._acc.nbytes + self._veto.nbytes + self._table.nbytes)

    def __repr__(self) -> str:
        last = self.last_time
        return (
            f"TrustState(n_merchants={self._n_m}, n_indicators={self._n_ind}, "
            f"half_life_days={self._half_life_days}, dedupe_days={self._dedupe_days}, "
            f"last_time={last}, dedupe_keys={self._used})"
        )

    # -- reading ------------------------------------------------------------------------------

    def stats(self, now: float) -> TrustStats:
        """Return the statistics decayed to ``now``.

        Parameters
        ----------
        now : float
            Unix seconds.  Events after ``now`` weigh more than 1 (``2 ** ((t - now) / h)``);
            usually ``now >= last_time``.

        Returns
        -------
        TrustStats
            Fresh arrays ``n``, ``s``, ``s2`` (float64) and ``events`` (int64) of shape
            ``(n_merchants, n_indicators)`` and ``veto_time`` (float64, ``-inf`` when none).
            A cell whose decayed ``n`` falls below the smallest normal double (about 2.2e-308,
            ~1022 half-lives after its last event) reads ``n = s = s2 = 0``: no evidence (its
            ``events`` count is kept).

        Raises
        ------
        ValueError
            When ``now`` lies so far before the folded events that their weights overflow.
        """
        now = check_real(now, "now")
        with self._lock:
            n_cells = self._n_m * self._n_ind
            n = np.empty(n_cells)
            s = np.empty(n_cells)
            s2 = np.empty(n_cells)
            events = np.empty(n_cells, dtype=np.int64)
            x = self._lam * (self._t_ref - now)
            if self._last_time == -math.inf:
                scale = 0.0  # nothing folded into the sums
            elif x > 709.0:
                raise ValueError(f"now: {now} lies too far before the folded events (their weights overflow)")
            else:
                scale = math.exp(x)
            if self._used:
                # one interleaved pass: each kept deduplicated event touches one cache line
                tmp = _aligned_zeros(n_cells)
                _trust.scale_cells(self._acc, scale, tmp)
                _trust.add_table_cells(self._table, self._lam, now, tmp)
                _trust.write_stats(tmp, 1.0, n, s, s2, events)
                del tmp
            else:
                _trust.write_stats(self._acc, scale, n, s, s2, events)
            # evidence decayed below the smallest normal double (~1022+ half-lives) is no evidence:
            # its subnormal n, s and s2 round independently (s can leave [lo n, hi n], or stay
            # non-zero where n reached 0), and 1 / n overflows
            gone = n < _TINY
            if gone.any():
                n[gone] = 0.0
                s[gone] = 0.0
                s2[gone] = 0.0
            if now < self._last_time and not (np.isfinite(n).all() and np.isfinite(s).all() and np.isfinite(s2).all()):
                raise ValueError(f"now: {now} lies too far before the folded events (their weights overflow)")
            shape = (self._n_m, self._n_ind)
            return TrustStats(
                now=now,
                n=n.reshape(shape),
                s=s.reshape(shape),
                s2=s2.reshape(shape),
                events=events.reshape(shape),
                veto_time=self._veto.copy(),
            )

    # -- structural operations ----------------------------------------------------------------

    def copy(self) -> TrustState:
        """Return an independent copy (with its own lock).

        Returns
        -------
        TrustState
            The copy.
        """
        with self._lock:
            out = TrustState(
                self._names, n_merchants=0, half_life_days=self._half_life_days, dedupe_days=self._dedupe_days
            )
            out._n_m = self._n_m
            out._acc = _aligned_zeros(self._n_m * self._n_ind)
            out._acc[...] = self._acc
            out._veto = self._veto.copy()
            out._t_ref = self._t_ref
            out._last_time = self._last_time
            out._table = self._table.copy()
            out._used = self._used
            out._unverified = self._unverified
            return out

    def resize(self, n_merchants: int) -> None:
        """Grow the state to ``n_merchants`` merchants, in place (new merchants have no evidence).

        Parameters
        ----------
        n_merchants : int
            New number of merchants, at least the current one.

        Raises
        ------
        ValueError
            When ``n_merchants`` is smaller than the current number (states never shrink).
        """
        n_new = check_int(n_merchants, "n_merchants", minimum=0)
        with self._lock:
            if n_new < self._n_m:
                raise ValueError(f"n_merchants: a state only grows; {n_new} < current {self._n_m}")
            if n_new == self._n_m:
                return
            acc = _aligned_zeros(n_new * self._n_ind)
            acc[: self._acc.shape[0]] = self._acc
            veto = np.full(n_new, -np.inf)
            veto[: self._n_m] = self._veto
            # cells are merchant-major (m * n_indicators + i): the dedupe table stays valid
            self._acc, self._veto, self._n_m = acc, veto, n_new

    def _compatible(self, other: TrustState, what: str) -> None:
        if self._names != other._names:
            raise ValueError(f"{what}: the states have different indicators")
        if self._half_life_days != other._half_life_days:
            raise ValueError(
                f"{what}: the states have different half-lives ({self._half_life_days} vs {other._half_life_days} days)"
            )
        if self._dedupe_days != other._dedupe_days:
            raise ValueError(
                f"{what}: the states have different dedupe_days ({self._dedupe_days} vs {other._dedupe_days})"
            )

    def merge(self, other: TrustState) -> TrustState:
        """Combine two states folded from separate events into a new state.

        The result equals one fold of both event sets (to rounding), including buyer
        deduplication across them (a key seen in both counts once).  The inputs are unchanged.

        Parameters
        ----------
        other : TrustState
            A state with the same indicators, half-life and ``dedupe_days``; its number of
            merchants may differ (the result has the larger one).

        Returns
        -------
        TrustState
            The merged state.

        Raises
        ------
        TypeError
            When ``other`` is not a TrustState.
        ValueError
            When the states are incompatible.
        """
        if not isinstance(other, TrustState):
            raise TypeError(f"other: expected a TrustState, got {type(other).__name__}")
        self._compatible(other, "other")
        first, second = (self, other) if id(self) <= id(other) else (other, self)
        with first._lock, second._lock:
            n_m = max(self._n_m, other._n_m)
            out = TrustState(
                self._names, n_merchants=n_m, half_life_days=self._half_life_days, dedupe_days=self._dedupe_days
            )
            parts = [st for st in (self, other) if st._last_time != -math.inf]
            if parts:
                t_ref = max(st._t_ref for st in parts)
                out._t_ref = t_ref
                out._last_time = max(st._last_time for st in parts)
                for st in parts:
                    k = st._acc.shape[0]
                    f = math.exp(self._lam * (st._t_ref - t_ref))
                    out._acc[:k, :3] += st._acc[:, :3] * f
                    out._acc[:k, 3] += st._acc[:, 3]
            for st in (self, other):
                np.maximum(out._veto[: st._n_m], st._veto, out=out._veto[: st._n_m])
            if self._used or other._used:
                big, small = (self, other) if self._used >= other._used else (other, self)
                out._table = _empty_table(_capacity_for(self._used + other._used))
                out._used = _trust.table_rehash(big._table, out._table, self._dd_sec)
                out._insert_entries(small._entries())
            out._unverified = self._unverified or other._unverified
            return out

    # -- dedupe table ---------------------------------------------------------------------------

    def _entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The occupied table slots' fields (cell, buyer, t, v) as contiguous arrays, in slot order."""
        k = self._used
        out = (np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k), np.empty(k))
        if k:
            got = _trust.table_entries(self._table, *out)
            if got != k:  # pragma: no cover - table invariant
                raise RuntimeError("dedupe table: slot count mismatch")
        return out

    def _insert_entries(self, entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Insert entries with the min rule; the table must have room for them within the load limit."""
        cell, buyer, t, v = entries
        if cell.shape[0]:
            self._used += _trust.table_insert(self._table, cell, buyer, t, v, self._dd_sec)

    def _grow_table(self, capacity: int) -> None:
        """Rehash into a table of ``capacity`` slots (a power of two, keys within the load limit)."""
        new = _empty_table(capacity)
        used = _trust.table_rehash(self._table, new, self._dd_sec) if self._used else 0
        if used != self._used:  # pragma: no cover - table invariant
            raise RuntimeError("dedupe table: slot count mismatch")
        self._table = new

    # -- folding (called by TrustModel with validated columns, under the lock) ------------------

    def _fold(self, cols: _Columns, t_max: float, n_buyer: int, veto_flag: np.ndarray) -> None:
        if n_buyer:
            # Size the dedupe table for this batch before anything changes: the batch's distinct
            # keys are estimated by HyperLogLog (~1 % error, 5 % margin) for big batches (unless
            # the table is already big enough for every buyer event to be a new key).  Keys the
            # table holds may recur, so the target is max(held, batch keys); when more keys are
            # new the kernel stops at the load limit and the table doubles before it resumes.
            new_keys = n_buyer
            if n_buyer > 4 * _MIN_TABLE and self._table.shape[0] < _capacity_for(max(self._used, n_buyer)):
                est = _trust.estimate_keys(
                    cols.merchant, cols.indicator, cols.time, cols.buyer, self._n_ind, self._dd_sec
                )
                new_keys = min(n_buyer, int(est * 1.05) + 64)
            need = _capacity_for(max(self._used, new_keys))
            if self._table.shape[0] < need:
                self._grow_table(need)
        if self._last_time == -math.inf:
            self._t_ref = t_max
        elif self._lam * (t_max - self._t_ref) > _REBASE:
            self._acc[:, :3] *= math.exp(self._lam * (self._t_ref - t_max))
            self._t_ref = t_max
        if n_buyer == 0:
            _trust.fold_sums(
                cols.merchant,
                cols.indicator,
                cols.value,
                cols.time,
                self._acc,
                self._veto,
                veto_flag,
                self._lam,
                self._t_ref,
            )
        else:
            pos, n = 0, cols.merchant.shape[0]
            while True:
                pos, self._used = _trust.fold_dedupe(
                    cols.merchant,
                    cols.indicator,
                    cols.value,
                    cols.time,
                    cols.buyer,
                    pos,
                    self._acc,
                    self._veto,
                    veto_flag,
                    self._lam,
                    self._t_ref,
                    self._table,
                    self._used,
                    _max_used(self._table.shape[0]),
                    self._dd_sec,
                )
                if pos >= n:
                    break
                self._grow_table(2 * self._table.shape[0])  # the estimate fell short
        self._last_time = max(self._last_time, t_max)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state to ``path`` (versioned ``.npz``, no pickle, atomic replace).

        Parameters
        ----------
        path : str or path-like
            Target file (written exactly there; no suffix is added).
        """
        with self._lock:
            tab = self._table
            arrays = {
                "acc": self._acc.reshape(self._n_m, self._n_ind, 4),
                "veto_time": self._veto,
                "indicator_names": np.array(self._names, dtype=np.str_),
                # the whole hash table (slot order kept, so a loaded state reads bit-identically)
                "dedupe_cell": tab["key"] - 1,  # -1 marks an empty slot
                "dedupe_buyer": np.ascontiguousarray(tab["buyer"]),
                "dedupe_time": np.ascontiguousarray(tab["t"]),
                "dedupe_value": np.ascontiguousarray(tab["v"]),
            }
            meta = {
                "n_merchants": self._n_m,
                "n_indicators": self._n_ind,
                "half_life_days": self._half_life_days,
                "dedupe_days": self._dedupe_days,
                "t_ref": self._t_ref,
                "last_time": self.last_time,
            }
            save_npz(path, _FORMAT, _VERSION, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustState:
        """Read a state written by :meth:`save`, checking every array.

        Parameters
        ----------
        path : str or path-like
            File to read.

        Returns
        -------
        TrustState
            The state.

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        ValueError
            When the file is truncated, corrupt, inconsistent, not a TrustState file or of
            another format version.
        """
        arrays, meta = load_npz(path, _FORMAT, _VERSION)
        where = os.fspath(path)
        try:
            state = cls._from_arrays(arrays, meta)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{where}: corrupt TrustState file ({e})") from None
        state._unverified = where
        return state

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> TrustState:
        def arr(name: str, kind: str, ndim: int) -> np.ndarray:
            if name not in arrays:
                raise KeyError(f"missing array {name!r}")
            a = arrays[name]
            if a.dtype.kind not in kind or a.ndim != ndim:
                raise ValueError(f"array {name!r} has dtype {a.dtype} and {a.ndim} dimension(s)")
            return a

        names_a = arr("indicator_names", "U", 1)
        names = [str(x) for x in names_a]
        for key in ("n_merchants", "n_indicators", "half_life_days", "dedupe_days", "t_ref", "last_time"):
            if key not in meta:
                raise KeyError(f"missing header field {key!r}")
        state = cls(
            names,
            n_merchants=meta["n_merchants"],
            half_life_days=meta["half_life_days"],
            dedupe_days=meta["dedupe_days"],
        )
        n_m, n_i = state._n_m, state._n_ind
        if meta["n_indicators"] != n_i:
            raise ValueError("indicator count does not match the names")
        acc = arr("acc", "f", 3)
        if acc.shape != (n_m, n_i, 4):
            raise ValueError(f"array 'acc' has shape {acc.shape}, expected {(n_m, n_i, 4)}")
        acc = acc.reshape(n_m * n_i, 4)
        counts = acc[:, 3]  # exact integers; above 2**53 they would overflow int64 in the kernels' casts
        bad_counts = (counts != np.floor(counts)).any() or (counts > 2.0**53).any()
        if not np.isfinite(acc).all() or (acc < 0).any() or bad_counts:
            raise ValueError("array 'acc' holds negative, non-finite, fractional or huge counts")
        _check_sums(acc, names, n_i)
        veto = arr("veto_time", "f", 1)
        if veto.shape != (n_m,) or np.isnan(veto).any() or (veto == np.inf).any():
            raise ValueError("array 'veto_time' is malformed")
        t_ref = check_real(meta["t_ref"], "t_ref")
        last = meta["last_time"]
        last = -math.inf if last is None else check_real(last, "last_time")
        # folds and merges keep t_ref at or before the last event (a later t_ref overflows stats)
        if not abs(t_ref) <= TIME_LIMIT or not (last == -math.inf or t_ref <= last <= TIME_LIMIT):
            raise ValueError(f"t_ref {t_ref!r} / last_time {last!r} out of range or out of order")
        cell = arr("dedupe_cell", "i", 1).astype(np.int64)
        buyer = arr("dedupe_buyer", "i", 1).astype(np.int64)
        t = arr("dedupe_time", "f", 1).astype(np.float64)
        v = arr("dedupe_value", "f", 1).astype(np.float64)
        cap = cell.shape[0]
        if buyer.shape[0] != cap or t.shape[0] != cap or v.shape[0] != cap:
            raise ValueError("dedupe arrays have different lengths")
        if cap & (cap - 1) or cap == 1:
            raise ValueError(f"dedupe table capacity {cap} is not a power of two")
        occ = cell >= 0
        used = int(occ.sum())
        if used > _max_used(cap):
            raise ValueError("dedupe table is over-full")
        if (cell[~occ] != -1).any():
            raise ValueError("dedupe table has invalid empty-slot markers")
        if used and (
            cell.max() >= n_m * n_i
            or buyer[occ].min() < 0
            or not (np.abs(t[occ]) <= TIME_LIMIT).all()
            or not ((v[occ] >= 0) & (v[occ] <= MAX_MAGNITUDE)).all()
            or last < t[occ].max()
        ):
            raise ValueError("dedupe table holds out-of-range entries")
        table = np.zeros(cap, dtype=_SLOT)
        table["key"], table["buyer"], table["t"], table["v"] = cell + 1, buyer, t, v
        if used and _trust.table_check(table, state._dd_sec) >= 0:
            raise ValueError("dedupe table is inconsistent")
        state._acc[...] = acc
        state._veto[...] = veto
        state._t_ref = t_ref
        state._last_time = last
        state._table = table
        state._used = used
        return state


# ---------------------------------------------------------------------------------------------
# event columns


class _Columns:
    """Event columns converted to kernel dtypes (no copy when already int32/int64/float64)."""

    __slots__ = ("merchant", "indicator", "value", "time", "buyer", "n")

    def __init__(
        self,
        merchant: np.ndarray,
        indicator: np.ndarray,
        value: np.ndarray,
        time: np.ndarray,
        buyer: Optional[np.ndarray],
    ) -> None:
        self.merchant = merchant
        self.indicator = indicator
        self.value = value
        self.time = time
        self.buyer = buyer
        self.n = int(merchant.shape[0])


def _column(events: Any, name: str) -> Any:
    """Return ``events``' column ``name`` or None when absent (duck-typed: no pandas/pyarrow import)."""
    if isinstance(events, (str, bytes)):
        raise TypeError(f"events: expected a mapping of columns, got {type(events).__name__}")
    if isinstance(events, np.ndarray):
        if events.dtype.names is None:
            raise TypeError("events: a plain ndarray has no named columns; pass a dict of arrays or a structured array")
        return events[name] if name in events.dtype.names else None
    if hasattr(events, "column_names") and hasattr(events, "column"):  # pyarrow.Table / RecordBatch
        return events.column(name) if name in events.column_names else None
    if isinstance(events, Mapping):
        return events[name] if name in events else None
    if hasattr(events, "columns") and hasattr(events, "__getitem__"):  # pandas.DataFrame and the like
        return events[name] if name in events.columns else None
    if hasattr(events, "__getitem__"):
        try:
            return events[name]
        except (KeyError, IndexError):
            return None
        except TypeError:  # a list or tuple: no columns by name
            pass
    raise TypeError(
        "events: expected a mapping of column name to array (dict, pandas.DataFrame, pyarrow.Table or a "
        f"structured array), got {type(events).__name__}"
    )


def _shown(x: Any) -> str:
    """repr of a column element without NumPy's scalar wrapper (``'a'``, not ``np.str_('a')``)."""
    if isinstance(x, np.generic):
        x = x.item()
    return repr(x)


def _as_1d(col: Any, what: str) -> np.ndarray:
    if isinstance(col, np.ndarray):
        arr = col
    else:
        to_numpy = getattr(col, "to_numpy", None)
        try:
            arr = np.asarray(to_numpy()) if callable(to_numpy) else np.asarray(col)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"{what}: cannot convert {type(col).__name__} to an array ({e})") from None
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D column, got shape {arr.shape}")
    return arr


def _as_index(arr: np.ndarray, what: str) -> np.ndarray:
    """Integer ids as a contiguous int32 or int64 array (no copy when already one)."""
    dt = arr.dtype
    if arr.size == 0 and dt.kind in "biuf":  # e.g. np.asarray([]) is float64
        return np.zeros(0, dtype=np.int64)
    if dt.kind not in "iu":
        raise TypeError(f"{what}: expected integer ids, got dtype {dt}")
    if dt.isnative and dt in (np.dtype(np.int32), np.dtype(np.int64)):
        return np.ascontiguousarray(arr)
    if dt.itemsize <= 2:
        return np.ascontiguousarray(arr, dtype=np.int32)
    if dt.kind == "u" and dt.itemsize == 8 and arr.size and arr.max() > _INT64_MAX:
        j = int(np.argmax(arr))
        raise ValueError(f"{what}: id {int(arr[j])} at position {j} is out of range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_values(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"events['value']: expected numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _as_times(arr: np.ndarray) -> np.ndarray:
    dt = arr.dtype
    if dt.kind == "M":
        nat = np.isnat(arr)
        if nat.any():
            raise ValueError(f"events['time']: NaT at position {int(np.argmax(nat))}")
        return arr.astype("datetime64[us]").astype(np.int64) / 1e6
    if dt.kind == "f":
        if dt.itemsize < 8:
            raise TypeError(f"events['time']: {dt} is too coarse for Unix seconds; pass float64 or int64")
        return np.ascontiguousarray(arr, dtype=np.float64)
    if dt.kind in "iu":
        if dt.kind == "u" and dt.itemsize == 8 and arr.size and arr.max() > _INT64_MAX:
            j = int(np.argmax(arr))
            raise ValueError(f"events['time']: {int(arr[j])} at position {j} is not a plausible Unix time in seconds")
        return np.ascontiguousarray(arr, dtype=np.int64)
    raise TypeError(f"events['time']: expected Unix seconds (float64 or int64) or datetime64, got dtype {dt}")


# ---------------------------------------------------------------------------------------------
# TrustModel


class TrustModel:
    """Trust indicators plus the parameters of folding and scoring.

    Parameters
    ----------
    indicators : sequence of Indicator
        Non-empty, unique names.  Events refer to an indicator by its position or name.
    n_merchants : int
        Number of merchants of new states (ids ``0 .. n_merchants - 1``).
    half_life_days : float, default 90.0
        Half-life of the exponential decay of evidence, in days.
    prior_strength : float, default 20.0
        Pseudo-events of the global prior (scoring).
    dedupe_days : float, default 10.0
        Width of the fixed buyer-deduplication buckets, in days.
    categories : array of int, optional
        Category id (>= 0) of each merchant, length ``n_merchants``; None means one category
        (scoring: empirical-Bayes priors and magnitude norms per category).
    dimension_weights : mapping of str to float, optional
        Weight (>= 0, positive sum) of each of :data:`~ecomcore.indicators.DIMENSIONS`; missing
        dimensions weigh 0.  None gives every dimension weight 1.  Stored as a read-only mapping
        over all six dimensions, in their order.
    veto_floor : float, default 0.2
        Cap of the index of a vetoed merchant, in [0, 1].
    veto_days : float, default 180.0
        How long a veto caps the index, in days (>= 0).
    cautious : bool, default False
        Rank by lower confidence bounds instead of posterior means (scoring).
    z : float, default 1.96
        Normal quantile of the cautious bounds (> 0).
    guarantee_boost : float, default 0.05
        Boost ``g`` of "trusted purchase" merchants (>= 0).
    min_category_merchants : int, default 5
        Fewest merchants with evidence for a per-category empirical-Bayes prior (>= 1).

    Notes
    -----
    Attributes carry the same names and are read-only; ``indicators`` is a tuple and
    ``indicator_index`` maps names to positions.  The scoring parameters are validated and
    stored here and used by :func:`ecomcore.trust_scoring.score_state`.
    """

    def __init__(
        self,
        indicators: Sequence[Indicator],
        *,
        n_merchants: int,
        half_life_days: float = 90.0,
        prior_strength: float = 20.0,
        dedupe_days: float = 10.0,
        categories: Optional[Any] = None,
        dimension_weights: Optional[Mapping[str, float]] = None,
        veto_floor: float = 0.2,
        veto_days: float = 180.0,
        cautious: bool = False,
        z: float = 1.96,
        guarantee_boost: float = 0.05,
        min_category_merchants: int = 5,
    ) -> None:
        if isinstance(indicators, (str, bytes, Indicator, Mapping)) or not hasattr(indicators, "__iter__"):
            raise TypeError(f"indicators: expected a sequence of Indicator, got {type(indicators).__name__}")
        inds = tuple(indicators)
        if not inds:
            raise ValueError("indicators: at least one indicator is needed")
        for k, ind in enumerate(inds):
            if not isinstance(ind, Indicator):
                raise TypeError(f"indicators[{k}]: expected an Indicator, got {type(ind).__name__}")
        index: dict[str, int] = {}
        for k, ind in enumerate(inds):
            if ind.name in index:
                raise ValueError(f"indicators: the name {ind.name!r} is used twice")
            index[ind.name] = k
        n_m = check_int(n_merchants, "n_merchants", minimum=0)
        hl = _check_half_life(half_life_days, "half_life_days")
        ps = check_real(prior_strength, "prior_strength")
        if ps <= 0:
            raise ValueError(f"prior_strength: must be > 0, got {ps}")
        dd = _check_half_life(dedupe_days, "dedupe_days")
        cats = self._check_categories(categories, n_m)
        dims = self._check_dimension_weights(dimension_weights)
        vf = check_real(veto_floor, "veto_floor", minimum=0.0)
        if vf > 1:
            raise ValueError(f"veto_floor: must lie in [0, 1], got {vf}")
        vd = check_real(veto_days, "veto_days", minimum=0.0)
        if not isinstance(cautious, (bool, np.bool_)):
            raise TypeError(f"cautious: expected a bool, got {type(cautious).__name__}")
        zz = check_real(z, "z")
        if zz <= 0:
            raise ValueError(f"z: must be > 0, got {zz}")
        gb = check_real(guarantee_boost, "guarantee_boost", minimum=0.0)
        mcm = check_int(min_category_merchants, "min_category_merchants", minimum=1)

        d = self.__dict__
        d["indicators"] = inds
        d["indicator_index"] = MappingProxyType(index)
        d["n_merchants"] = n_m
        d["half_life_days"] = hl
        d["prior_strength"] = ps
        d["dedupe_days"] = dd
        d["categories"] = cats
        d["dimension_weights"] = dims
        d["veto_floor"] = vf
        d["veto_days"] = vd
        d["cautious"] = bool(cautious)
        d["z"] = zz
        d["guarantee_boost"] = gb
        d["min_category_merchants"] = mcm
        # per-indicator tables for the kernels
        lo = np.empty(len(inds))
        hi = np.empty(len(inds))
        binary = np.zeros(len(inds), dtype=np.uint8)
        for k, ind in enumerate(inds):
            if ind.kind == "rate":
                lo[k], hi[k], binary[k] = 0.0, 1.0, 1
            elif ind.kind == "rating":
                lo[k], hi[k] = 1.0, 5.0
            else:
                lo[k], hi[k] = 0.0, MAX_MAGNITUDE
        d["_lo"], d["_hi"], d["_binary"] = lo, hi, binary
        d["_veto_flag"] = np.array([ind.veto for ind in inds], dtype=np.uint8)
        d["_names"] = tuple(ind.name for ind in inds)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"TrustModel is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"TrustModel is read-only: cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"TrustModel({len(self.indicators)} indicators, n_merchants={self.n_merchants}, "
            f"half_life_days={self.half_life_days}, dedupe_days={self.dedupe_days})"
        )

    @property
    def n_indicators(self) -> int:
        """Number of indicators."""
        return len(self.indicators)

    @staticmethod
    def _check_categories(categories: Any, n_m: int) -> Optional[np.ndarray]:
        if categories is None:
            return None
        try:
            arr = np.asarray(categories)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"categories: cannot convert {type(categories).__name__} to an array ({e})") from None
        if arr.dtype.kind not in "iu":
            raise TypeError(f"categories: expected integer category ids, got dtype {arr.dtype}")
        if arr.shape != (n_m,):
            raise ValueError(f"categories: expected shape ({n_m},), got {arr.shape}")
        if arr.size and (arr.min() < 0 or (arr.dtype.kind == "u" and arr.max() > _INT64_MAX)):
            raise ValueError("categories: ids must be >= 0")
        out = np.array(arr, dtype=np.int64)
        out.flags.writeable = False
        return out

    @staticmethod
    def _check_dimension_weights(weights: Optional[Mapping[str, float]]) -> Mapping[str, float]:
        if weights is None:
            return MappingProxyType({d: 1.0 for d in DIMENSIONS})
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"dimension_weights: expected a mapping of dimension to weight, got {type(weights).__name__}"
            )
        for key in weights:
            if key not in DIMENSIONS:
                raise ValueError(f"dimension_weights: unknown dimension {key!r} (expected one of {DIMENSIONS})")
        out = {d: check_real(weights.get(d, 0.0), f"dimension_weights[{d!r}]", minimum=0.0) for d in DIMENSIONS}
        if sum(out.values()) <= 0:
            raise ValueError("dimension_weights: the weights must have a positive sum")
        return MappingProxyType(out)

    # -- states -------------------------------------------------------------------------------

    def new_state(self, n_merchants: Optional[int] = None) -> TrustState:
        """Return an empty state for this model.

        Parameters
        ----------
        n_merchants : int, optional
            Number of merchants; the model's ``n_merchants`` by default.

        Returns
        -------
        TrustState
            An empty state.
        """
        n = self.n_merchants if n_merchants is None else check_int(n_merchants, "n_merchants", minimum=0)
        return TrustState(self._names, n_merchants=n, half_life_days=self.half_life_days, dedupe_days=self.dedupe_days)

    def _check_state(self, state: Any, what: str) -> TrustState:
        if not isinstance(state, TrustState):
            raise TypeError(f"{what}: expected a TrustState, got {type(state).__name__}")
        if state.indicator_names != self._names:
            raise ValueError(f"{what}: the state was made for other indicators")
        if state.half_life_days != self.half_life_days:
            raise ValueError(
                f"{what}: the state's half-life ({state.half_life_days} days) differs from the model's "
                f"({self.half_life_days} days)"
            )
        if state.dedupe_days != self.dedupe_days:
            raise ValueError(
                f"{what}: the state's dedupe_days ({state.dedupe_days}) differs from the model's ({self.dedupe_days})"
            )
        if state._unverified is not None:
            with state._lock:
                if state._unverified is not None:
                    self._check_means(state, what)
                    state._unverified = None
        return state

    def _check_means(self, state: TrustState, what: str) -> None:
        """Check a loaded state's sums and kept events against the indicators' value ranges.

        Runs once per loaded state (the first time a model meets it).
        Every folded value of indicator i lies in ``[_lo[i], _hi[i]]``, so its cells keep
        ``_lo[i] * n <= s <= _hi[i] * n`` up to rounding (rate: ``s <= n``; rating: ``n <= s <= 5 n``).
        """
        n_i = state._n_ind
        if state._used:
            cell, _, _, v = state._entries()
            ind = cell % n_i
            bad_v = (v < self._lo[ind]) | (v > self._hi[ind])
            if bad_v.any():
                k = int(np.argmax(bad_v))
                i = int(ind[k])
                raise ValueError(
                    f"{what}: a deduplicated event of merchant {int(cell[k]) // n_i}, indicator {self._names[i]!r} "
                    f"holds the value {float(v[k])!r}, outside the indicator's value range "
                    f"[{float(self._lo[i]):g}, {float(self._hi[i]):g}] (file {state._unverified} is corrupt or edited)"
                )
        acc = state._acc
        if acc.shape[0] == 0:
            return
        n, sm = acc[:, 0].reshape(-1, n_i), acc[:, 1].reshape(-1, n_i)
        lo = self._lo * (1.0 - _MEAN_TOL)
        hi = self._hi * (1.0 + _MEAN_TOL)
        with np.errstate(over="ignore"):
            bad = (sm < lo * n - _SUM_FLOOR) | (sm > hi * n + _SUM_FLOOR)
        if bad.any():
            m, i = (int(x) for x in np.unravel_index(int(np.argmax(bad)), bad.shape))
            raise ValueError(
                f"{what}: the sums stored for merchant {m}, indicator {self._names[i]!r} give the mean "
                f"s / n = {float(sm[m, i])!r} / {float(n[m, i])!r}, outside the indicator's value range "
                f"[{float(self._lo[i]):g}, {float(self._hi[i]):g}] (file {state._unverified} is corrupt or edited)"
            )

    # -- folding ------------------------------------------------------------------------------

    def fold(self, events: Any, state: Optional[TrustState] = None, *, into: Optional[TrustState] = None) -> TrustState:
        """Fold events into decayed statistics.

        ``fold(events)`` and ``fold(events, state)`` return a new state (``state`` is not
        modified); ``fold(events, into=state)`` updates ``state`` in place and returns it.
        Every event is validated before anything is modified: a failing call leaves the state
        unchanged.

        Parameters
        ----------
        events : mapping of str to array-like
            Columns of equal length: a dict of arrays or sequences, a pandas DataFrame, a pyarrow
            Table or a NumPy structured array (pandas and pyarrow are not imported).

            * ``merchant``: integer ids in ``[0, state.n_merchants)``.
            * ``indicator``: integer ids in ``[0, n_indicators)`` or indicator names (str
              column, object column of str, or pandas categorical).
            * ``value``: numbers; 0 or 1 for ``rate`` indicators, within [1, 5] for ``rating``,
              a non-negative amount (at most 1e100) for ``magnitude``.
            * ``time``: Unix seconds (float64, int64 or datetime64), ``|time| <= 1e11``.
            * ``buyer`` (optional): integer buyer ids >= 0, or -1 for "no buyer"; events with
              a buyer are deduplicated (see the module docstring).

            int32/int64 ids, float64 values and float64/int64 times are used without copies.
        state : TrustState, optional
            State to start from (copied).  A new empty state by default.
        into : TrustState, optional
            State to update in place (instead of ``state``).

        Returns
        -------
        TrustState
            The new state, or ``into``.

        Notes
        -----
        Validation runs over all events (a checking kernel) before the state is touched; then
        one folding pass adds each event to its cell (one cache line per event).  With buyer
        ids the dedupe table is sized for the batch up front; only if the key estimate falls
        short does the table grow mid-fold, so a ``MemoryError`` there is the one failure that
        can leave ``into`` partly folded.  Indicator names are mapped by a hashed lookup over
        the raw bytes of str/bytes columns; object columns of str go through a dict (slower);
        pandas categoricals map their categories once.

        Raises
        ------
        TypeError
            When ``events`` or a column has the wrong type or dtype, or a state is not a
            TrustState.
        ValueError
            When a column is missing, lengths differ, or an event is invalid (unknown indicator,
            merchant out of range, NaN/inf value or time, a value outside its indicator's kind),
            or the state does not belong to this model.
        """
        if state is not None and into is not None:
            raise ValueError("fold: pass either state (a new state is returned) or into (updated in place), not both")
        if into is not None:
            self._check_state(into, "into")
        elif state is not None:
            self._check_state(state, "state")
        cols = self._columns(events)
        if into is not None:
            with into._lock:
                if cols.n:
                    t_max, n_buyer = self._validate(cols, into.n_merchants)
                    into._fold(cols, t_max, n_buyer, self._veto_flag)
            return into
        n_m = state.n_merchants if state is not None else self.n_merchants
        t_max, n_buyer = self._validate(cols, n_m) if cols.n else (0.0, 0)
        # (a state only grows, so ids validated against n_m stay valid in the copy)
        out = state.copy() if state is not None else self.new_state()
        if cols.n:
            with out._lock:
                out._fold(cols, t_max, n_buyer, self._veto_flag)
        return out

    def _columns(self, events: Any) -> _Columns:
        """Read and convert the event columns (dtype and length checks, names mapped to ids)."""
        raw = {}
        for name in ("merchant", "indicator", "value", "time", "buyer"):
            col = _column(events, name)
            if col is None and name != "buyer":
                raise ValueError(f"events: missing column {name!r}")
            raw[name] = col
        ind_col = raw["indicator"]
        merchant = _as_index(_as_1d(raw["merchant"], "events['merchant']"), "events['merchant']")
        n = merchant.shape[0]
        indicator = self._indicator_ids(ind_col)
        value = _as_values(_as_1d(raw["value"], "events['value']"))
        time = _as_times(_as_1d(raw["time"], "events['time']"))
        buyer = None
        if raw["buyer"] is not None:
            buyer = _as_index(_as_1d(raw["buyer"], "events['buyer']"), "events['buyer']")
        for name, arr in (("indicator", indicator), ("value", value), ("time", time), ("buyer", buyer)):
            if arr is not None and arr.shape[0] != n:
                raise ValueError(
                    f"events[{name!r}]: length {arr.shape[0]} does not match events['merchant'] (length {n})"
                )
        return _Columns(merchant, indicator, value, time, buyer)

    def _indicator_ids(self, col: Any) -> np.ndarray:
        what = "events['indicator']"
        cat = None if isinstance(col, np.ndarray) else getattr(col, "cat", None)
        if cat is not None and hasattr(cat, "codes") and hasattr(cat, "categories"):  # pandas categorical
            codes = _as_1d(cat.codes, what).astype(np.int64)
            cats = list(_as_1d(cat.categories, what))
            table = np.array([self.indicator_index.get(c, -1) if isinstance(c, str) else -1 for c in cats] + [-1])
            ids = table[codes]  # code -1 (missing) picks the trailing -1
            if ids.size and ids.min() < 0:
                j = int(np.argmax(ids < 0))
                got = "a missing value" if codes[j] < 0 else _shown(cats[codes[j]])
                raise ValueError(f"{what}: unknown indicator {got} at position {j}")
            return ids
        arr = _as_1d(col, what)
        kind = arr.dtype.kind
        if kind in "iu" or (arr.size == 0 and kind in "bf"):
            return _as_index(arr, what)
        if kind in "US":
            return self._map_fixed_names(arr, what)
        if kind == "O":
            get = self.indicator_index.get
            try:
                ids = np.fromiter(map(get, arr, itertools.repeat(-1)), dtype=np.int64, count=arr.shape[0])
            except TypeError as e:
                raise TypeError(f"{what}: expected integer ids or indicator names ({e})") from None
            if ids.size and ids.min() < 0:
                j = int(np.argmax(ids < 0))
                raise ValueError(f"{what}: unknown indicator {_shown(arr[j])} at position {j}")
            return ids
        raise TypeError(f"{what}: expected integer ids or indicator names, got dtype {arr.dtype}")

    def _map_fixed_names(self, arr: np.ndarray, what: str) -> np.ndarray:
        """Names in a fixed-width str/bytes column to ids, by a hashed lookup over the raw bytes."""
        n = arr.shape[0]
        dt = arr.dtype
        if not dt.isnative:
            dt = dt.newbyteorder("=")
            arr = arr.astype(dt)
        arr = np.ascontiguousarray(arr)
        width = dt.itemsize
        # known names in the column's encoding; a name longer than the column's width cannot occur
        if dt.kind == "U":
            fits = [k for k, nm in enumerate(self._names) if len(nm) <= width // 4]
        else:
            fits = [k for k, nm in enumerate(self._names) if len(nm.encode("utf-8")) <= width]
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out
        if width == 0 or not fits:
            raise ValueError(f"{what}: unknown indicator {_shown(arr[0])} at position 0")
        if dt.kind == "U":
            known = np.array([self._names[k] for k in fits], dtype=dt)
        else:
            known = np.array([self._names[k].encode("utf-8") for k in fits], dtype=dt)
        slots = np.full(_pow2_at_least(2 * len(fits)), -1, dtype=np.int64)
        bad = _trust.map_fixed_names(
            arr.view(np.uint8).reshape(n, width),
            known.view(np.uint8).reshape(len(fits), width),
            np.array(fits, dtype=np.int64),
            slots,
            out,
        )
        if bad >= 0:
            raise ValueError(f"{what}: unknown indicator {_shown(arr[bad])} at position {bad}")
        return out

    def _validate(self, cols: _Columns, n_merchants: int) -> tuple[float, int]:
        """Run the checking kernels; raise on the first bad event; return (t_max, buyer events)."""
        bad, _, t_max = _trust.validate_events(
            cols.merchant, cols.indicator, cols.value, cols.time, n_merchants, self._lo, self._hi, self._binary
        )
        if bad >= 0:
            self._raise_bad_event(cols, bad, n_merchants)
        n_buyer = 0
        if cols.buyer is not None:
            bad_b, n_buyer = _trust.check_buyers(cols.buyer)
            if bad_b >= 0:
                raise ValueError(
                    f"events['buyer']: buyer id {int(cols.buyer[bad_b])} at position {bad_b} is invalid "
                    "(ids are >= 0, or -1 for no buyer)"
                )
        return float(t_max), int(n_buyer)

    def _raise_bad_event(self, cols: _Columns, j: int, n_merchants: int) -> None:
        m = int(cols.merchant[j])
        if not 0 <= m < n_merchants:
            raise ValueError(
                f"events['merchant']: merchant id {m} at position {j} is out of range [0, {n_merchants}) "
                "(grow the state with state.resize(n))"
            )
        i = int(cols.indicator[j])
        if not 0 <= i < len(self.indicators):
            raise ValueError(
                f"events['indicator']: indicator id {i} at position {j} is out of range [0, {len(self.indicators)})"
            )
        v = float(cols.value[j])
        t = float(cols.time[j])
        ind = self.indicators[i]
        if not math.isfinite(v):
            raise ValueError(f"events['value']: non-finite value {v} at position {j}")
        if not (self._lo[i] <= v <= self._hi[i]) or (ind.kind == "rate" and v not in (0.0, 1.0)):
            need = {
                "rate": "0 or 1",
                "rating": "a rating in [1, 5]",
                "magnitude": f"a non-negative amount (at most {MAX_MAGNITUDE:g})",
            }[ind.kind]
            raise ValueError(
                f"events['value']: {ind.kind} indicator {ind.name!r} takes {need}, got {v} at position {j}"
            )
        if not math.isfinite(t):
            raise ValueError(f"events['time']: non-finite time {t} at position {j}")
        raise ValueError(
            f"events['time']: {t} at position {j} is not a plausible Unix time in seconds "
            f"(|time| must be <= {TIME_LIMIT:g}; milliseconds or nanoseconds?)"
        )

    # -- scoring ------------------------------------------------------------------------------

    def score(
        self,
        state: TrustState,
        now: float,
        *,
        categories: Optional[Any] = None,
        guarantee: Optional[Any] = None,
        priors: Optional[Any] = None,
    ) -> TrustScores:
        """Score every merchant of ``state`` at time ``now``.

        Delegates to :func:`ecomcore.trust_scoring.score_state` with ``state.stats(now)``.

        Parameters
        ----------
        state : TrustState
            A state of this model.
        now : float
            Unix seconds the evidence is decayed to.
        categories : array of int, optional
            Category per merchant; the model's ``categories`` by default.
        guarantee : array-like, optional
            "Trusted purchase" flags per merchant (see ``score_state``).
        priors : optional
            Frozen priors (see ``score_state``).

        Returns
        -------
        TrustScores
            Index, dimensions, confidence and explanations.
        """
        from ecomcore.trust_scoring import score_state

        self._check_state(state, "state")
        return score_state(
            self,
            state.stats(now),
            categories=categories if categories is not None else self.categories,
            guarantee=guarantee,
            priors=priors,
        )
