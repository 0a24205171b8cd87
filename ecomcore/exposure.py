"""Merchant exposure: Gini, exposure counts and the exposure-aware re-ranker.

A platform that ranks only by interest x trust sends most impressions to a few head merchants.
:func:`exposure` measures what each merchant gets from a batch of top-k lists, :func:`gini`
how unequal that is, and :func:`rerank_exposure` picks ``k`` of a wider candidate list per user
so that the Gini meets a target (or no merchant exceeds a share of all impressions) while
keeping as much of the ranking score as it can, under per-list rules (at most so many merchants
of one category, a minimum of protected merchants per FA*IR prefix, see :mod:`ecomcore.fairness`).

The selection loops run in :mod:`ecomcore_ext._exposure`; this module validates the input,
searches the cap or penalty strength and builds the report.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from ecomcore._sizes import check_dense_columns
from ecomcore._validation import check_int, check_real, resolve_threads, to_array
from ecomcore.topk import TopK
from ecomcore_ext import _exposure

__all__ = ["ConstraintResult", "ExposureReport", "exposure", "gini", "rerank_exposure"]

ArrayLike = Any
_INT32_MAX = np.iinfo(np.int32).max
# Per-merchant arrays of rerank_exposure besides the per-thread int32 stamps: exposure counts
# (int32 and int64 copies), penalties, protected flags, categories, sorted counts for the Gini.
_BYTES_PER_MERCHANT = 48
# Penalty search: stop once the Gini is within this of the target (from below) ...
_GINI_TOL = 4e-3
# ... or the strength is bracketed to this relative width, or after this many passes.
_STRENGTH_RTOL = 1e-3
_MAX_PASSES = 40
# The penalty of every merchant is refreshed every ceil(n_cols / this) users (a merchant's own
# penalty is refreshed whenever it is shown): this many merchant updates per user on average.
_PEN_REFRESH_PER_USER = 4
# Users are served in a random order of blocks of this many consecutive rows, each block
# shuffled: every user's turn is random, and the candidate rows of a block share cache lines.
_ORDER_BLOCK = 64
# With this many users or more, the search first runs on 1/_SUB_FRACTION of them (a prefix of
# the serving order) and then refines on all users from that estimate.
_SUB_MIN_USERS = 200_000
_SUB_FRACTION = 16
# The sample's curve is followed to this precision when predicting a pass over all users.
_SAMPLE_GINI_TOL = 1e-3


# ------------------------------------------------------------------------------------------
# Gini and exposure
# ------------------------------------------------------------------------------------------


def gini(x: ArrayLike) -> float:
    """Gini coefficient of non-negative values (RecBole's convention).

    ``G = sum_i (2 i - n - 1) * x_(i) / (n * sum(x))`` with ``x`` sorted ascending and ``i``
    running from 1 to ``n``: 0 when all values are equal, ``(n - 1) / n`` when one value holds
    everything (Elliot divides by ``n - 1`` instead, so that case gives 1; we do not).  Scaling
    ``x`` or permuting it leaves ``G`` unchanged.

    Parameters
    ----------
    x : array_like, shape (n,)
        Non-negative finite values, e.g. the exposure of each merchant (:func:`exposure`).

    Returns
    -------
    float
        The Gini coefficient in ``[0, (n - 1) / n]``; 0 when every value is 0.

    Raises
    ------
    TypeError
        If ``x`` is not numeric.
    ValueError
        If ``x`` is not 1-D, is empty (the Gini of nothing is undefined), or holds a negative,
        NaN or infinite value.

    Examples
    --------
    >>> from ecomcore import gini
    >>> gini([1, 1, 1, 1])
    0.0
    >>> gini([0, 0, 0, 5])
    0.75
    """
    arr = _as_values(x, "x")
    n = arr.shape[0]
    if n == 0:
        raise ValueError("x: needs at least one value (the Gini of an empty set is undefined)")
    return _gini_sorted(np.sort(arr))


def _as_values(x: ArrayLike, name: str) -> np.ndarray:
    arr = to_array(x, name, numeric=True)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or inf")
        if arr.min() < 0:
            raise ValueError(f"{name}: exposure must be non-negative, got {arr.min()}")
    return arr


def _gini_sorted(xs: np.ndarray) -> float:
    """Gini of values already sorted ascending (float or int), validated."""
    n = xs.shape[0]
    xs = xs.astype(np.float64, copy=False)
    total = float(xs.sum())
    if n == 0 or total <= 0:
        return 0.0
    coef = np.arange(1 - n, n, 2, dtype=np.float64)  # 2 i - n - 1 for i = 1 .. n
    # an elementwise product and a sum, not np.dot: a BLAS call may wake its thread pool
    g = float(np.multiply(coef, xs).sum()) / (n * total)
    return min(max(g, 0.0), 1.0)


def _check_topk(topk: Any, name: str) -> TopK:
    if not isinstance(topk, TopK):
        raise TypeError(f"{name}: expected an ecomcore.TopK, got {type(topk).__name__}")
    return topk


def exposure(topk: TopK, position_weights: Union[None, str, ArrayLike] = None) -> np.ndarray:
    """Exposure of every merchant in a batch of top-k lists.

    Parameters
    ----------
    topk : TopK
        The lists (e.g. from :meth:`ecomcore.Ranker.topk` or :func:`rerank_exposure`);
        padding (``-1``) is ignored.
    position_weights : None, "log" or array_like of shape (width,), optional
        ``None``: count the lists that show each merchant.  ``"log"``: weight position ``j``
        (1-based) by ``1 / log2(1 + j)`` (the DCG discount of Singh & Joachims 2018).  An
        array: weight position ``j`` by ``position_weights[j - 1]`` (non-negative, finite).

    Returns
    -------
    numpy.ndarray, shape (topk.n_cols,)
        int64 counts without weights, float64 with them.

    Raises
    ------
    TypeError
        If ``topk`` is not a TopK or the weights are not numeric.
    ValueError
        If an index lies outside ``[0, n_cols)``, the counts are out of range, or the weights
        have the wrong length or a negative or non-finite value.
    """
    topk = _check_topk(topk, "topk")
    idx, _, cnt = _topk_arrays(topk, "topk", check_scores=False)
    n_cols = int(topk.n_cols)
    check_dense_columns(
        n_cols, "topk", per_thread_bytes=0, shared_per_column=16,
        advice="compute the exposure of merchant shards separately",
    )  # fmt: skip
    mask = np.arange(idx.shape[1])[None, :] < cnt[:, None]
    chosen = idx[mask]
    if chosen.size and (chosen.min() < 0 or chosen.max() >= n_cols):
        bad = chosen.min() if chosen.min() < 0 else chosen.max()
        raise ValueError(f"topk: merchant index {bad} is out of range [0, {n_cols})")
    if position_weights is None:
        return np.bincount(chosen, minlength=n_cols).astype(np.int64, copy=False)
    w = _position_weights(position_weights, idx.shape[1])
    out = np.zeros(n_cols, dtype=np.float64)
    if idx.size:
        _exposure.weighted_exposure(idx, cnt, w, out)
    return out


def _position_weights(position_weights: Any, width: int) -> np.ndarray:
    if isinstance(position_weights, str):
        if position_weights != "log":
            raise ValueError(f"position_weights: expected None, 'log' or an array, got {position_weights!r}")
        return 1.0 / np.log2(np.arange(2, width + 2, dtype=np.float64))
    w = _as_values(position_weights, "position_weights")
    if w.shape[0] != width:
        raise ValueError(f"position_weights: expected {width} weights (one per position), got {w.shape[0]}")
    return np.ascontiguousarray(w)


def _topk_arrays(topk: TopK, name: str, *, check_scores: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous indices (int32/int64), scores (float32/float64) and int64 counts of a TopK."""
    idx = np.asarray(topk.indices)
    sc = np.asarray(topk.scores)
    cnt = np.asarray(topk.counts)
    if idx.ndim != 2 or sc.shape != idx.shape or cnt.shape != (idx.shape[0],):
        raise ValueError(f"{name}: indices, scores and counts have inconsistent shapes")
    if idx.dtype.kind not in "iu" or cnt.dtype.kind not in "iu":
        raise TypeError(f"{name}: indices and counts must be integers")
    if check_scores and sc.dtype.kind not in "biuf":
        raise TypeError(f"{name}: scores must be real numbers, got dtype {sc.dtype}")
    if idx.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        idx = idx.astype(np.int64)
    idx = np.ascontiguousarray(idx)
    if sc.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        sc = sc.astype(np.float64)
    sc = np.ascontiguousarray(sc)
    cnt = np.ascontiguousarray(cnt, dtype=np.int64)
    if cnt.size and (cnt.min() < 0 or cnt.max() > idx.shape[1]):
        bad = int(np.argmax((cnt < 0) | (cnt > idx.shape[1])))
        raise ValueError(f"{name}: counts[{bad}] = {cnt[bad]} is outside [0, {idx.shape[1]}]")
    if int(topk.n_cols) < 1:
        raise ValueError(f"{name}: n_cols must be >= 1, got {topk.n_cols}")
    return idx, sc, cnt


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintResult:
    """Outcome of one constraint of :func:`rerank_exposure`.

    Attributes
    ----------
    name : str
        ``"target_gini"``, ``"max_share"``, ``"min_protected"`` or ``"max_per_category"``.
    target : float or str
        What was asked (``"table"`` for a per-prefix protected table).
    met : bool
        Whether it holds (per-list constraints: in every list).
    achieved : float
        What was reached: the Gini after, the largest merchant share after, the fraction of
        lists meeting the protected minimum, or the largest count of one category in a list.
    rows_unmet : int
        Lists that break it (0 for the global constraints).
    """

    name: str
    target: Union[float, str]
    met: bool
    achieved: float
    rows_unmet: int = 0

    def __str__(self) -> str:
        state = "met" if self.met else "NOT met"
        rows = f", {self.rows_unmet:,} lists short of it" if self.rows_unmet else ""
        return f"{self.name} {self.target}: {state} (achieved {self.achieved:.4g}{rows})"


@dataclass(frozen=True)
class ExposureReport:
    """What :func:`rerank_exposure` did.

    Attributes
    ----------
    method : str
        How the Gini target was pursued: ``"penalty"``, ``"cap"``, or ``"none"`` (no target).
    gini_before, gini_after : float
        Gini of the exposure counts over all ``n_cols`` merchants: the first ``k`` candidates
        of every list, and the re-ranked lists.
    coverage_before, coverage_after : int
        Merchants shown in at least one list, before and after.
    score_kept : float
        Total score of the re-ranked lists over the total of the first ``k`` candidates
        (NaN when that total is not positive).
    cap : int or None
        Per-merchant exposure cap in force (from ``max_share`` or the cap search), if any.
    strength : float or None
        Penalty strength chosen by the search (``method="penalty"``), if any.
    passes : int
        Sequential selection passes over all users (the search's, including the one whose
        result is returned).
    subsample_passes : int
        Passes over a subsample of users (1/16, for 200,000 users or more) that located the
        cap or strength before the passes over all users.
    short_rows : int
        Lists with fewer than ``min(k, candidates)`` entries (only the category cap shortens a
        list).
    max_share_after : float
        Largest share of all impressions that one merchant gets after re-ranking.
    constraints : tuple of ConstraintResult
        One entry per requested constraint.
    """

    method: str
    gini_before: float
    gini_after: float
    coverage_before: int
    coverage_after: int
    score_kept: float
    cap: Optional[int]
    strength: Optional[float]
    passes: int
    subsample_passes: int
    short_rows: int
    max_share_after: float
    constraints: tuple[ConstraintResult, ...] = field(default_factory=tuple)

    @property
    def all_met(self) -> bool:
        """True when every requested constraint is met."""
        return all(c.met for c in self.constraints)

    def __str__(self) -> str:
        lines = [
            f"Gini {self.gini_before:.4f} -> {self.gini_after:.4f}; coverage "
            f"{self.coverage_before:,} -> {self.coverage_after:,} merchants; score kept "
            f"{self.score_kept:.2%}",
        ]
        how = [f"method {self.method}"]
        if self.cap is not None:
            how.append(f"cap {self.cap:,}")
        if self.strength is not None:
            how.append(f"strength {self.strength:.4g}")
        how.append(f"{self.passes} pass(es)")
        if self.subsample_passes:
            how.append(f"{self.subsample_passes} subsample pass(es)")
        if self.short_rows:
            how.append(f"{self.short_rows:,} short lists")
        lines.append(", ".join(how))
        lines.extend(str(c) for c in self.constraints)
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Re-ranking
# ------------------------------------------------------------------------------------------


def _check_fraction(value: Any, name: str, *, lo: float, hi: float, lo_open: bool, hi_open: bool) -> float:
    v = check_real(value, name)
    bad_lo = v <= lo if lo_open else v < lo
    bad_hi = v >= hi if hi_open else v > hi
    if bad_lo or bad_hi:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name}: must lie in {interval}, got {v}")
    return v


def _merchant_array(x: Any, name: str, n_cols: int) -> np.ndarray:
    arr = to_array(x, name)
    if arr.ndim != 1 or arr.shape[0] != n_cols:
        raise ValueError(f"{name}: expected one value per merchant, shape ({n_cols},), got {arr.shape}")
    return arr


def _protected_flags(protected: Any, n_cols: int) -> np.ndarray:
    arr = _merchant_array(protected, "protected", n_cols)
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.dtype.kind in "iu":
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("protected: expected booleans (or 0/1), got other integers")
        return np.ascontiguousarray(arr, dtype=np.uint8)
    raise TypeError(f"protected: expected a boolean array, got dtype {arr.dtype}")


def _categories(category: Any, n_cols: int) -> tuple[np.ndarray, int]:
    arr = _merchant_array(category, "category", n_cols)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"category: expected integer category ids, got dtype {arr.dtype}")
    uniq, inv = np.unique(arr, return_inverse=True)
    return np.ascontiguousarray(inv.reshape(-1), dtype=np.int32), int(uniq.shape[0])


def _protected_rule(min_protected: Any, k: int) -> tuple[int, int, np.ndarray, Optional[np.ndarray]]:
    """(pmode, pmin, kernel table, table as given) for ``min_protected``."""
    if isinstance(min_protected, (bool, np.bool_)):
        raise TypeError("min_protected: expected an int or a per-prefix table, got a bool")
    if isinstance(min_protected, numbers.Integral):
        m = int(min_protected)
        if m < 0 or m > k:
            raise ValueError(f"min_protected: must lie in [0, k={k}], got {m}")
        return (1 if m > 0 else 0), m, np.zeros(0, np.int64), None
    try:
        arr = np.asarray(min_protected)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"min_protected: cannot convert {type(min_protected).__name__} to a table") from exc
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.isfinite(arr).all() and (arr == np.round(arr)).all():
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"min_protected: expected an int or an integer table, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != k:
        raise ValueError(f"min_protected: a table needs one entry per position, shape ({k},), got {arr.shape}")
    table = arr.astype(np.int64)
    if table.size and table.min() < 0:
        raise ValueError("min_protected: table entries must be >= 0")
    pos = np.arange(1, k + 1)
    if (table > pos).any():
        i = int(np.argmax(table > pos))
        raise ValueError(f"min_protected: table asks for {table[i]} protected merchants among the first {i + 1}")
    # Equivalent table the greedy can follow: non-decreasing (a prefix holds every shorter one)
    # with steps of at most 1 (m[i+1] protected in i+1 places need m[i+1] - 1 in the first i).
    norm = np.maximum.accumulate(table)
    for i in range(k - 2, -1, -1):
        norm[i] = max(norm[i], norm[i + 1] - 1)
    pmode = 2 if norm.any() else 0
    return pmode, 0, np.ascontiguousarray(norm), table


class _Selector:
    """The validated problem; runs selection passes through the kernel."""

    def __init__(self, idx, sc, cnt, k, n_cols, prot, pmode, pmin, ptable, cat, catcap, n_cat, n_threads):
        self.idx, self.sc, self.cnt, self.k, self.n_cols = idx, sc, cnt, k, n_cols
        self.prot, self.pmode, self.pmin, self.ptable = prot, pmode, pmin, ptable
        self.cat, self.catcap, self.n_cat = cat, catcap, n_cat
        self.n_threads = n_threads
        self.passes = 0
        self.refresh = max(1, -(-n_cols // _PEN_REFRESH_PER_USER))
        self._pref = _exposure.pref_size()
        self._width = idx.shape[1]
        self._free: list[tuple] = []  # output buffers of discarded passes, reused
        self._empty = (
            np.zeros((0, k), dtype=idx.dtype),
            np.zeros((0, k), dtype=sc.dtype),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.float64),
        )

    def release(self, outs: Optional[tuple]) -> None:
        """Hand back the output buffers of a pass whose result is no longer needed."""
        if outs is not None:
            self._free.append(outs)

    def _ws(self, threads: int) -> tuple:
        w = max(self._width, 1)
        return (
            np.zeros((threads, 3 * w), np.int64),
            np.zeros((threads, w), np.uint8),
            np.zeros((threads, w), np.float64),
            np.zeros((threads, w * self._pref), np.uint8),
            np.zeros((threads, max(self.n_cat, 1)), np.int32),
        )

    def run(self, cap: int, lam: float, order: Optional[np.ndarray], *, write: bool, weight: int = 1) -> tuple:
        """One pass; returns ``(expo, outputs)`` with outputs ``(idx, sc, len, row_score)`` or None.

        ``order=None`` runs the rows independently in parallel (no cap, no penalty);
        otherwise the users of ``order`` are served one after another, each counting ``weight``
        times (a sample run at the exposure scale of all users).  That needs no change to the
        selection: the penalty depends on the ranks of the exposures, not their values, and the
        cap compares counts that are all multiples of ``weight``; so the pass runs on plain
        counts with the cap divided by ``weight`` (rounded up) and the penalties refreshed
        ``weight`` times as often (the same number of impressions between refreshes as with
        all users), and the counts come back multiplied by ``weight``.
        """
        n = self.idx.shape[0]
        parallel = order is None
        threads = min(self.n_threads, max(n, 1)) if parallel else 1
        buf, adm, key, pref, catcnt = self._ws(threads)
        expo = np.zeros(self.n_cols, np.int32)
        less = pen = np.zeros(0, np.int32)
        if lam > 0:
            less = np.full(n + 2, self.n_cols, np.int32)
            less[0] = 0
            pen = np.zeros(self.n_cols, np.int32)
        if write and self._free:
            outs = self._free.pop()  # every row is rewritten by the pass
        elif write:
            outs = (
                np.empty((n, self.k), dtype=self.idx.dtype),
                np.empty((n, self.k), dtype=self.sc.dtype),
                np.zeros(n, np.int64),
                np.zeros(n, np.float64),
            )
        else:
            outs = self._empty
        _exposure.rerank_pass(
            self.idx,
            self.sc,
            self.cnt,
            self.k,
            np.zeros(0, np.int64) if parallel else order,
            int(cap) if cap < 0 or weight == 1 else -(-int(cap) // weight),
            float(lam) / self.n_cols,
            max(1, self.refresh // weight),
            expo,
            less,
            pen,
            self.prot,
            self.pmode,
            self.pmin,
            self.ptable,
            self.cat,
            self.catcap,
            catcnt,
            *outs,
            buf,
            adm,
            key,
            pref,
            threads,
            parallel,
        )
        if not parallel:
            self.passes += 1
        if parallel and write:
            expo64 = np.zeros(self.n_cols, np.int64)
            _exposure.first_k_stats(outs[0], outs[1], outs[2], self.k, expo64, np.zeros(n, np.float64))
            return expo64, outs
        return expo.astype(np.int64) * weight, (outs if write else None)


def _serving_order(n: int, seed: int) -> np.ndarray:
    """Random order of blocks of ``_ORDER_BLOCK`` consecutive users, each block shuffled."""
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // _ORDER_BLOCK)
    blocks = rng.permutation(n_blocks).astype(np.int64)
    within = np.argsort(rng.random((n_blocks, _ORDER_BLOCK)), axis=1, kind="stable")
    order = (blocks[:, None] * _ORDER_BLOCK + within).ravel()
    return np.ascontiguousarray(order[order < n])


def _gini_counts(expo: np.ndarray) -> float:
    return _gini_sorted(np.sort(expo))


def _max_share(expo: np.ndarray) -> float:
    total = int(expo.sum())
    return float(expo.max()) / total if total else 0.0


class _Evaluator:
    """A measure (Gini or largest share) after a sequential pass at one setting, cached.

    ``kind`` is ``"cap"`` (integer cap; smaller spreads more) or ``"penalty"`` (strength;
    larger spreads more).  A setting *meets* the target when the measure is ``<= target``;
    the searches stop once it is within ``tol`` below.  With ``keep``, passes write their
    output and the evaluator keeps the records ``(setting, expo, outputs)`` of the weakest
    setting meeting the target (``best_ok``) and of the lowest measure (``lowest``), so that
    the result needs no extra pass.
    """

    def __init__(
        self,
        run: Callable[[Any, bool], tuple],
        kind: str,
        target: float,
        keep: bool,
        measure: Callable[[np.ndarray], float] = _gini_counts,
        tol: float = _GINI_TOL,
        release: Optional[Callable[[Optional[tuple]], None]] = None,
    ):
        self.run, self.kind, self.target, self.keep = run, kind, target, keep
        self.release = release or (lambda outs: None)
        self.measure, self.tol = measure, tol
        self.cache: dict = {}
        self.passes = 0
        self.best_ok: Optional[tuple] = None
        self.lowest: Optional[tuple] = None

    def stronger(self, a: Any, b: Any) -> bool:
        """Whether setting ``a`` spreads more than ``b`` (smaller cap, larger strength)."""
        return a < b if self.kind == "cap" else a > b

    def __call__(self, param: Any) -> float:
        if param in self.cache:
            return self.cache[param]
        expo, outs = self.run(param, self.keep)
        g = self.measure(expo)
        self.cache[param] = g
        self.passes += 1
        if self.keep:
            rec = (param, expo, outs)
            old = (self.best_ok, self.lowest)
            if g <= self.target and (self.best_ok is None or self.stronger(self.best_ok[0], param)):
                self.best_ok = rec
            if self.lowest is None or g < self.cache[self.lowest[0]]:
                self.lowest = rec
            kept = {id(r[2]) for r in (self.best_ok, self.lowest) if r is not None}
            for r in (*old, rec):
                if r is not None and id(r[2]) not in kept:
                    kept.add(id(r[2]))  # release each buffer once
                    self.release(r[2])
        return g

    def result(self, met: bool, setting: Any) -> tuple:
        """``(setting, (expo, outputs))`` to return: the weakest setting meeting the target, else
        the lowest measure; ``setting`` (run now) when no pass was kept."""
        rec = self.best_ok if met else self.lowest
        if rec is None:
            rec = (setting, *self.run(setting, True))
        return rec[0], (rec[1], rec[2])


def _to_x(kind: str, p: float) -> float:
    """Search coordinate that grows with the spreading: log(strength) or -log(cap)."""
    return math.log(p) if kind == "penalty" else -math.log(p)


def _refine(ev: _Evaluator, p_bad: Any, p_ok: Any) -> Any:
    """Narrow a bracket (``p_bad`` misses the target, ``p_ok`` meets it) to the weakest setting
    meeting it: regula falsi on the search coordinate with the Illinois modification, bisection
    when a step does not halve the bracket.  Stops once the Gini is within ``_GINI_TOL`` below
    the target, the bracket is closed (adjacent caps, or strengths within ``_STRENGTH_RTOL``),
    or after ``_MAX_PASSES`` passes."""
    target = ev.target
    if ev(p_bad) <= target:
        return p_bad
    f_bad, f_ok = ev(p_bad) - target, ev(p_ok) - target
    side = 0
    bisect = False
    while ev(p_ok) < target - ev.tol and ev.passes < _MAX_PASSES:
        if ev.kind == "cap" and p_bad - p_ok <= 1:
            break
        x_bad, x_ok = _to_x(ev.kind, p_bad), _to_x(ev.kind, p_ok)
        width = x_ok - x_bad
        if ev.kind == "penalty" and width <= math.log1p(_STRENGTH_RTOL):
            break
        if bisect or f_bad == f_ok:
            x = 0.5 * (x_bad + x_ok)
        else:
            x = x_ok - f_ok * width / (f_ok - f_bad)
            x = min(max(x, x_bad + 0.02 * width), x_ok - 0.02 * width)
        if ev.kind == "cap":
            p = min(max(int(round(math.exp(-x))), p_ok + 1), p_bad - 1)
        else:
            p = math.exp(x)
        g = ev(p)
        if g <= target:
            p_ok, f_ok = p, g - target
            if side == -1:
                f_bad /= 2
            side = -1
        else:
            p_bad, f_bad = p, g - target
            if side == 1:
                f_ok /= 2
            side = 1
        bisect = abs(_to_x(ev.kind, p_ok) - _to_x(ev.kind, p_bad)) > 0.5 * width
    return p_ok


def _search(ev: _Evaluator, p0: Any, strongest: Any, weakest: Any, factor: float) -> tuple[Any, bool]:
    """Weakest setting meeting the target, starting from the estimate ``p0``.

    ``strongest`` (the smallest useful cap, or the strength at which the penalty outweighs
    every score difference) and ``weakest`` (the cap at which nothing is capped; unused for the
    penalty, whose weakest setting 0 is the plain result) bound the search; the weakest
    setting is known to miss the target.  Every setting evaluated so far (``ev.cache``) is
    used: the weakest one meeting the target and the strongest weaker one missing it bracket
    the answer, which :func:`_refine` narrows.  Without a bracket, steps from the nearest
    evaluated setting by ``factor`` (squared after every step).  Returns ``(setting, met)``;
    when even ``strongest`` misses, ``(strongest, False)``.
    """
    target = ev.target
    cap = ev.kind == "cap"
    p0 = min(max(p0, strongest), weakest) if cap else min(p0, strongest)
    ev(p0)
    while True:
        oks = [p for p, g in ev.cache.items() if g <= target and (not cap or p <= weakest)]
        if oks:
            p_ok = max(oks) if cap else min(oks)
            if ev(p_ok) >= target - ev.tol or ev.passes >= _MAX_PASSES:
                return p_ok, True
            bads = [p for p, g in ev.cache.items() if g > target and ev.stronger(p_ok, p)]
            if bads:
                return _refine(ev, min(bads) if cap else max(bads), p_ok), True
            # step weaker
            if cap:
                p = min(max(int(round(p_ok * factor)), p_ok + 1), weakest)
            else:
                p = p_ok / factor
                if p < 1e-12 * strongest:
                    return p_ok, True
        else:
            bads = [p for p in ev.cache if not cap or p >= strongest]
            p_bad = min(bads) if cap else max(bads)
            if p_bad == strongest or ev.passes >= _MAX_PASSES:
                return strongest, ev(strongest) <= target
            if cap:
                p = max(min(int(round(p_bad / factor)), p_bad - 1), strongest)
            else:
                p = min(p_bad * factor, strongest)
        ev(p)
        factor *= factor


def _first_full_steps(ev: _Evaluator, ev_sub: _Evaluator, p0: Any, p_sub: Any, scale: float) -> None:
    """Evaluate all users at the subsample's answer ``p0``; when that misses the tolerance band,
    evaluate once more where the subsample's curve, shifted by the observed difference between
    all users and the subsample, predicts the band's middle."""
    g0 = ev(p0)
    if ev.target - ev.tol <= g0 <= ev.target or p_sub not in ev_sub.cache:
        return
    shift = g0 - ev_sub.cache[p_sub]
    p1 = _predict(ev_sub, ev.target - 0.5 * ev.tol - shift, scale)
    if p1 is not None and p1 != p0:
        ev(p1)


def _extrapolated_shift(run_frac: Callable[[int], float], g_sub: float) -> float:
    """Predicted difference between the Gini of all users and of the 1/_SUB_FRACTION sample at
    one penalty strength.

    A prefix of ``1 / f`` of the serving order, each user counting ``f`` times, gives a Gini
    that falls towards the all-users value as ``f`` halves, each step about a constant ratio
    ``r`` of the one before (about 0.6 on the synthetic markets: the exposure of the long tail
    fills in).  With the samples at ``2 f`` and ``f / 2`` (``run_frac``), the remaining
    difference is the geometric tail ``d / (1 - r)`` from the step ``d`` of ``f`` to ``f / 2``
    (``r`` clipped to [0.3, 0.8]).
    """
    g_coarse = run_frac(2 * _SUB_FRACTION)
    g_fine = run_frac(_SUB_FRACTION // 2)
    d_prev, d = g_sub - g_coarse, g_fine - g_sub
    r = d / d_prev if d_prev != 0 else 0.6
    r = min(max(r, 0.3), 0.8)
    return d / (1.0 - r)


def _full_steps_from_sample(ev: _Evaluator, ev_sub: _Evaluator, p_sub: Any, shift: float) -> None:
    """Passes over all users at the settings where the sample's Gini curve, shifted by the
    predicted (then, after each pass, the observed) difference between all users and the
    sample, reaches the middle of the tolerance band; at most three, stopping in the band."""
    aim = ev.target - 0.5 * ev.tol
    p = _sample_point(ev_sub, aim - shift, p_sub)
    for _ in range(3):
        g = ev(p)
        if ev.target - ev.tol <= g <= ev.target:
            return
        shift = g - ev_sub(p)  # the observed difference at this setting (one sample pass)
        p_next = _sample_point(ev_sub, aim - shift, p)
        if p_next in ev.cache:
            return
        p = p_next


def _sample_point(ev_sub: _Evaluator, g_want: float, p_start: Any) -> Any:
    """Setting at which the sample's Gini is within ``_SAMPLE_GINI_TOL`` of ``g_want``: steps
    of :func:`_predict` on the sample's curve, each checked by one sample pass (at most four);
    ``p_start`` when the curve does not bracket ``g_want``."""
    p = p_start
    for _ in range(4):
        p_new = _predict(ev_sub, g_want, 1.0)
        if p_new is None or p_new == p and p in ev_sub.cache:
            break
        p = p_new
        if abs(ev_sub(p) - g_want) <= _SAMPLE_GINI_TOL:
            break
    return p


def _predict(ev_sub: _Evaluator, g_want: float, scale: float) -> Optional[Any]:
    """Setting at which the subsample's Gini curve (piecewise linear in the search coordinate
    through its evaluated settings) reaches ``g_want``, scaled to all users; None when the
    evaluated settings do not bracket it."""
    kind = ev_sub.kind
    pts = sorted((_to_x(kind, p), g) for p, g in ev_sub.cache.items() if p > 0)
    for (x1, g1), (x2, g2) in zip(pts, pts[1:]):
        if g1 != g2 and (g1 - g_want) * (g2 - g_want) <= 0:
            x = x1 + (g_want - g1) * (x2 - x1) / (g2 - g1)
            return max(1, int(round(math.exp(-x) * scale))) if kind == "cap" else math.exp(x)
    return None


def rerank_exposure(
    candidates: TopK,
    k: int,
    *,
    target_gini: Optional[float] = None,
    max_share: Optional[float] = None,
    protected: Optional[ArrayLike] = None,
    min_protected: Union[None, int, ArrayLike] = None,
    category: Optional[ArrayLike] = None,
    max_per_category: Optional[int] = None,
    method: str = "penalty",
    seed: int = 0,
    n_threads: Optional[int] = None,
) -> tuple[TopK, ExposureReport]:
    """Pick ``k`` of each user's candidates so that exposure spreads over more merchants.

    Parameters
    ----------
    candidates : TopK
        A wider list per user (``width = K' >= k``), e.g. ``Ranker.topk(A, k=K')``; rows sorted
        by descending score, ties by ascending index, no merchant twice in a row.
    k : int
        Merchants to keep per user (``1 <= k <= K'``).
    target_gini : float, optional
        Gini of the exposure counts (over all ``n_cols`` merchants) to reach, in ``[0, 1)``.
    max_share : float, optional
        No merchant may get more than this share of all impressions, in ``(0, 1]``.
    protected : array_like of bool, shape (n_cols,), optional
        Protected merchants (e.g. new or small ones); needs ``min_protected``.
    min_protected : int or array_like of int, shape (k,), optional
        At least this many protected merchants in each list, or a FA*IR table (``m[i]`` for
        the first ``i + 1`` positions, e.g. :func:`ecomcore.fair_table`).
    category : array_like of int, shape (n_cols,), optional
        Category of each merchant; needs ``max_per_category``.
    max_per_category : int, optional
        At most this many merchants of one category in a list (``>= 1``).
    method : {"penalty", "cap"}, default "penalty"
        How ``target_gini`` is pursued (see Notes).
    seed : int, default 0
        Seeds the order in which users are served (``>= 0``).
    n_threads : int, optional
        Threads for the validation and for per-list-only passes; ``None`` uses every core.
        Results are identical for every value.

    Returns
    -------
    topk : TopK
        ``k`` entries per user (fewer when the candidates or the category cap run out), rows
        sorted by descending score, ties by ascending index; same dtypes as ``candidates``.
    report : ExposureReport
        Gini, coverage and score kept before/after, the cap or strength chosen and every
        constraint's outcome (an unmet constraint is reported with its achieved value).

    Raises
    ------
    TypeError
        If ``candidates`` is not a TopK or an argument has the wrong type.
    ValueError
        If ``k`` is out of ``[1, K']``, a candidate index is out of range or repeated in a row,
        a row is not sorted, a score is not finite, a merchant array has the wrong length, a
        target is out of range, or a constraint comes without its partner argument.

    Notes
    -----
    Precedence.  Per-list rules hold in every list whose candidates allow them; the global
    constraints are pursued subject to them.  Lists are full (``min(k, candidates)``)
    except where the category cap leaves too few candidates: the cap is never broken.

    Per-list greedy (FA*IR, Zehlike et al. 2017, on a score-sorted list): walk the candidates
    in score order; while the protected count is below the minimum for the next position, the
    next pick is the best protected candidate (the candidates above it are dropped: they could
    not follow it in a score-sorted list -- a jump that would leave too few candidates to fill
    the list is not made); otherwise the next candidate.  An int minimum is applied lazily
    (protected merchants are forced only into the last places that can still hold them),
    which keeps the most score; minimums above the protected candidates a list has are
    lowered to that number.  Alone, the protected minimum is met in every list whose
    candidates allow it; together with the category cap the greedy can miss a feasible list
    (rarely), and the report counts the lists short of it.

    Global constraints.  Users are served one after another in an order shuffled by ``seed``
    (a random order of blocks of 64 consecutive rows, each block shuffled, so that no user is
    always first and the rows of a block share cache lines), and each user's picks count
    against the exposure the next users see.  These passes are sequential (``n_threads`` does
    not change them), which keeps the result identical for every ``n_threads``; the
    per-list-only pass and the validation run in parallel.

    * ``max_share``: merchants shown ``floor(max_share * impressions)`` times are *capped*;
      when filling short lists pushes a merchant past the share, the cap is lowered (search)
      to the largest one whose result keeps every merchant within it.
    * ``method="penalty"`` (default): a merchant already shown ``v`` times costs
      ``strength * #{merchants shown 1..v times} / n_cols`` of score -- the increase of the
      Gini numerator that one more impression of it causes, shifted so that unseen merchants
      cost 0 (each merchant's cost is refreshed whenever it is shown and for all merchants
      every ``ceil(n_cols / 4)`` users) -- and each user takes the ``k`` best by score minus
      cost.  This sends traffic to merchants with little exposure and lowers the Gini at a far
      smaller loss of score than cutting the head.
    * ``method="cap"``: merchants shown ``cap`` times are capped and each user takes the first
      uncapped candidates in score order, between ``ceil(impressions / merchants among the
      candidates)`` and the largest plain exposure.

    The weakest strength (largest cap) that meets ``target_gini`` is searched with regula
    falsi on ``log(strength)`` (``-log(cap)``), stopping within 0.004 below the target.  With
    200,000 users or more the search first runs on the first 1/16 of the serving order, each
    of those users counting 16 times.  For the penalty, two more sample passes (1/32 and 1/8
    of the users) extrapolate how much lower the Gini of all users is than the sample's, and
    the first pass over all users is made where the sample's curve, shifted by that, reaches
    the middle of the tolerance band; it usually lands there (else a second pass corrects by
    the difference observed).  The cap search scales the sample's cap and needs two or three
    passes over all users.  A capped candidate is taken only when the
    list would otherwise be short (the best capped ones, as many as needed).  When nothing
    reaches ``target_gini``, the setting with the lowest Gini tried is used and the target is
    reported unmet with the Gini reached.  With no constraint at all the result is exactly
    the first ``k`` candidates.

    ``ecomcore.exposure`` is both this module and the :func:`exposure` function re-exported
    by :mod:`ecomcore`; import the module's other names with ``from ecomcore.exposure import``.
    """
    candidates = _check_topk(candidates, "candidates")
    k = check_int(k, "k")
    idx, sc, cnt = _topk_arrays(candidates, "candidates")
    n, width = idx.shape
    if k > width:
        raise ValueError(f"k: must not exceed the candidates' width K'={width}, got k={k}")
    n_cols = int(candidates.n_cols)
    if n >= _INT32_MAX:
        raise ValueError(f"candidates: at most {_INT32_MAX - 1} rows are supported, got {n}")
    if n_cols >= _INT32_MAX:  # exposure counts per merchant and the penalty tables are int32
        raise ValueError(f"candidates: at most {_INT32_MAX - 1} merchants (n_cols) are supported, got {n_cols}")
    if target_gini is not None:
        target_gini = _check_fraction(target_gini, "target_gini", lo=0, hi=1, lo_open=False, hi_open=True)
    if max_share is not None:
        max_share = _check_fraction(max_share, "max_share", lo=0, hi=1, lo_open=True, hi_open=False)
    if method not in ("penalty", "cap"):
        raise ValueError(f"method: expected 'penalty' or 'cap', got {method!r}")
    seed = check_int(seed, "seed", minimum=0)
    n_threads = resolve_threads(n_threads)

    if (protected is None) != (min_protected is None):
        raise ValueError("protected and min_protected: give both or neither")
    prot = np.zeros(0, np.uint8)
    pmode, pmin, ptable, table_given = 0, 0, np.zeros(0, np.int64), None
    if protected is not None:
        prot = _protected_flags(protected, n_cols)
        pmode, pmin, ptable, table_given = _protected_rule(min_protected, k)
    if (category is None) != (max_per_category is None):
        raise ValueError("category and max_per_category: give both or neither")
    cat, n_cat, catcap = np.zeros(0, np.int32), 0, 0
    if category is not None:
        cat, n_cat = _categories(category, n_cols)
        catcap = check_int(max_per_category, "max_per_category", minimum=1)
        if catcap >= k:
            cat, n_cat = np.zeros(0, np.int32), 0  # cannot bind
    per_list = pmode != 0 or cat.shape[0] > 0

    # Validate every candidate (ranges, finite scores, order, duplicates); mark merchants seen.
    threads = min(n_threads, max(n, 1))
    check_dense_columns(
        n_cols, "candidates", threads=threads, per_thread_bytes=4 * n_cols, shared_per_column=_BYTES_PER_MERCHANT,
        advice="re-rank merchant shards separately",
    )  # fmt: skip
    stamp = np.zeros((threads, n_cols), np.int32)
    bad, code = _exposure.check_candidates(idx, sc, cnt, n_cols, stamp, threads)
    if bad >= 0:
        what = {
            1: f"a merchant index outside [0, {n_cols})",
            2: "a non-finite score",
            3: "entries out of order (scores must not increase; equal scores need increasing indices)",
            4: "the same merchant twice",
        }[code]
        raise ValueError(f"candidates: row {bad} holds {what}")
    reachable = int(np.count_nonzero((stamp != 0).any(axis=0))) if n else 0
    del stamp

    # Before: the first k candidates.
    expo0 = np.zeros(n_cols, np.int64)
    plain_rows = np.zeros(n, np.float64)
    _exposure.first_k_stats(idx, sc, cnt, k, expo0, plain_rows)
    plain_total = float(plain_rows.sum())
    wanted = np.minimum(cnt, k)
    impressions = int(wanted.sum())
    gini_before = _gini_counts(expo0)

    # (the kernel's category cap is int32; a cap of k or more cannot bind and was dropped above)
    kernel_catcap = min(catcap, k, _INT32_MAX)
    sel = _Selector(idx, sc, cnt, k, n_cols, prot, pmode, pmin, ptable, cat, kernel_catcap, n_cat, n_threads)
    cap: Optional[int] = None
    strength: Optional[float] = None
    used_method = "none"

    # Base: the per-list rules alone (rows are independent: parallel), or the first k.
    result: Optional[tuple] = None  # (expo, (idx, sc, len, row_score)); None: the first k
    if per_list:
        result = sel.run(-1, 0.0, None, write=True)
        expo_base = result[0]
    else:
        expo_base = expo0

    sub_passes = 0
    if max_share is not None or target_gini is not None:
        order = _serving_order(n, seed)
        use_sub = n >= _SUB_MIN_USERS
        sub_order = order[: n // _SUB_FRACTION]
        sub_impressions = int(wanted[sub_order].sum()) if use_sub else 0
        c_floor = max(1, -(-impressions // max(reachable, 1)))  # smallest useful cap
        fixed_cap: Optional[int] = None
        g_start = _gini_counts(expo_base)
        if max_share is not None:
            c_share = int(math.floor(max_share * impressions + 1e-9))
            if expo_base.size and c_share < int(expo_base.max()):
                # Largest cap whose result keeps every merchant within the share (filling short
                # lists from capped merchants can push some past the cap itself).
                ev_sh = _Evaluator(
                    lambda c, w: sel.run(c, 0.0, order, write=w),
                    "cap",
                    max_share,
                    True,
                    _max_share,
                    0.01 * max_share,
                    sel.release,
                )
                ev_sh.cache[int(expo_base.max())] = _max_share(expo_base)
                met_sh = True
                if ev_sh(max(c_share, 1)) > max_share:
                    _, met_sh = _search(ev_sh, max(c_share, 1), min(c_floor, max(c_share, 1)), max(c_share, 1), 2.0)
                fixed_cap, result = ev_sh.result(met_sh, max(c_share, 1))
                cap = fixed_cap
                g_start = _gini_counts(result[0])
        if target_gini is not None and g_start > target_gini:
            used_method = method
            if method == "cap":
                weakest = fixed_cap if fixed_cap is not None else int(expo_base.max())
                strongest = min(c_floor, weakest)
                p0: Any = max(strongest, int(round(math.sqrt(strongest * weakest))))
                ev = _Evaluator(
                    lambda c, w: sel.run(c, 0.0, order, write=w), "cap", target_gini, True, release=sel.release
                )
                ev.cache[weakest] = g_start
                if use_sub and sub_impressions:
                    scale = impressions / sub_impressions
                    w_s = max(2, int(math.ceil(weakest / scale)))
                    s_s = min(max(1, -(-sub_impressions // max(reachable, 1))), w_s - 1)
                    ev_s = _Evaluator(lambda c, w: sel.run(c, 0.0, sub_order, write=w), "cap", target_gini, False)
                    c_s, _ = _search(ev_s, max(s_s, int(round(math.sqrt(s_s * w_s)))), s_s, w_s, 2.0)
                    sub_passes = ev_s.passes
                    p0 = min(max(int(round(c_s * scale)), strongest), weakest)
                    _first_full_steps(ev, ev_s, p0, c_s, scale)
                cap, met = _search(ev, p0, strongest, weakest, 1.1 if use_sub else 2.0)
                cap, result = ev.result(met, cap)
            else:
                cap_fixed = -1 if fixed_cap is None else fixed_cap
                # Scale: the spread of the kept scores; beyond lam_dom the penalty outweighs
                # every score difference (one step of the penalty is strength / n_cols).
                rows = np.flatnonzero(cnt > 0)
                first = sc[rows, 0].astype(np.float64)
                kth = sc[rows, wanted[rows] - 1].astype(np.float64)
                last = sc[rows, cnt[rows] - 1].astype(np.float64)
                spread_k = float(np.median(first - kth)) if rows.size else 0.0
                spread_max = float((first - last).max()) if rows.size else 0.0
                lam_dom = (spread_max if spread_max > 0 else 1.0) * n_cols * 2.0
                p0 = min(spread_k if spread_k > 0 else max(spread_max, 1.0), lam_dom)
                ev = _Evaluator(
                    lambda lam, w: sel.run(cap_fixed, lam, order, write=w),
                    "penalty",
                    target_gini,
                    True,
                    release=sel.release,
                )
                if use_sub and sub_impressions:
                    ev_s = _Evaluator(
                        lambda lam, w: sel.run(cap_fixed, lam, sub_order, write=w, weight=_SUB_FRACTION),
                        "penalty",
                        target_gini,
                        False,
                    )
                    lam_s, _ = _search(ev_s, p0, lam_dom, 0.0, 2.0)

                    def run_frac(f: int, lam: float = lam_s) -> float:
                        expo_f, _ = sel.run(cap_fixed, lam, order[: n // f], write=False, weight=f)
                        return _gini_counts(expo_f)

                    shift = _extrapolated_shift(run_frac, ev_s(lam_s))
                    _full_steps_from_sample(ev, ev_s, lam_s, shift)
                    sub_passes = ev_s.passes + 2
                    # continue from the weakest strength meeting the target (else the strongest)
                    oks = [p for p, g in ev.cache.items() if g <= target_gini]
                    p0 = min(oks) if oks else max(ev.cache)
                strength, met = _search(ev, p0, lam_dom, 0.0, 1.15 if use_sub else 2.0)
                strength, result = ev.result(met, strength)

    # Output.
    if result is None:
        out_idx = np.empty((n, k), dtype=idx.dtype)
        out_sc = np.empty((n, k), dtype=sc.dtype)
        if n and k:
            _exposure.copy_first_k(idx, sc, cnt, k, out_idx, out_sc)
        out_len = wanted.astype(np.int64)
        expo_after = expo0
        kept_total = plain_total
    else:
        expo_after, (out_idx, out_sc, out_len, row_score) = result
        kept_total = float(row_score.sum())
    out_idx = out_idx.astype(candidates.indices.dtype, copy=False)
    out_sc = out_sc.astype(candidates.scores.dtype, copy=False)
    topk = TopK(out_idx, out_sc, out_len.astype(np.asarray(candidates.counts).dtype, copy=False), n_cols)

    # Report.
    total_after = int(expo_after.sum())
    max_share_after = float(expo_after.max()) / total_after if total_after else 0.0
    gini_after = _gini_counts(expo_after)
    constraints: list[ConstraintResult] = []
    if target_gini is not None:
        constraints.append(ConstraintResult("target_gini", target_gini, gini_after <= target_gini, gini_after))
    if max_share is not None:
        constraints.append(
            ConstraintResult("max_share", max_share, max_share_after <= max_share * (1 + 1e-12), max_share_after)
        )
    valid = np.arange(k)[None, :] < out_len[:, None] if (protected is not None or category is not None) else None
    if protected is not None:
        flags = (prot[np.where(valid, out_idx, 0)] != 0) & valid
        csum = np.cumsum(flags, axis=1)
        if table_given is not None:
            bad_rows = (valid & (csum < table_given[None, :])).any(axis=1)
            target_p: Union[float, str] = "table"
        else:
            have = csum[:, -1] if k else np.zeros(n, np.int64)
            bad_rows = have < np.minimum(pmin, out_len)
            target_p = float(pmin)
        n_bad = int(bad_rows.sum())
        constraints.append(
            ConstraintResult("min_protected", target_p, n_bad == 0, 1.0 - n_bad / n if n else 1.0, n_bad)
        )
    if category is not None:
        cat_full, _ = _categories(category, n_cols)
        c_out = np.where(valid, cat_full[np.where(valid, out_idx, 0)], -1 - np.arange(k)[None, :])
        c_out = np.sort(c_out, axis=1)
        run = np.ones(n, np.int64)
        best = np.ones(n, np.int64) if k else np.zeros(n, np.int64)
        for t in range(1, k):
            same = c_out[:, t] == c_out[:, t - 1]
            run = np.where(same, run + 1, 1)
            best = np.maximum(best, run)
        best = np.where(out_len > 0, best, 0)
        n_bad = int((best > catcap).sum())
        constraints.append(
            ConstraintResult("max_per_category", float(catcap), n_bad == 0, float(best.max()) if n else 0.0, n_bad)
        )
    report = ExposureReport(
        method=used_method,
        gini_before=gini_before,
        gini_after=gini_after,
        coverage_before=int(np.count_nonzero(expo0)),
        coverage_after=int(np.count_nonzero(expo_after)),
        score_kept=kept_total / plain_total if plain_total > 0 else float("nan"),
        cap=cap,
        strength=strength,
        passes=sel.passes - sub_passes,
        subsample_passes=sub_passes,
        short_rows=int((out_len < wanted).sum()),
        max_share_after=max_share_after,
        constraints=tuple(constraints),
    )
    return topk, report
