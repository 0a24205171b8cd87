"""Interest x trust ranking: :func:`sparse_topk` and the prepared :class:`Ranker`.

score(u, m) = (sum_t A[u, t] * B[t, m] + follow_weight * F[u, m]) * w[m]

The merchant side (B, w) is validated and prepared once: B is stored as B' = B * diag(w) with
the columns of zero-weight merchants dropped, so the kernel never visits a merchant that cannot
be shown.  Every user-side input is validated (shapes, index ranges, NaN/inf, overflow) before
:mod:`ecomcore_ext` touches it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional, Union

import numpy as np
import scipy.sparse as sp

from ecomcore._sizes import RANKER_BYTES_PER_COLUMN, check_dense_columns
from ecomcore._validation import (
    CSRParts,
    as_csr,
    as_ids,
    as_vector,
    check_int,
    check_real,
    check_threshold,
    resolve_threads,
    value_dtype_of,
)
from ecomcore.topk import TopK, index_dtype_for
from ecomcore_ext import _checks, _topk

__all__ = ["Ranker", "sparse_topk"]

ArrayLike = Any
_EMPTY_PTR = {np.dtype(np.int32): np.zeros(0, np.int32), np.dtype(np.int64): np.zeros(0, np.int64)}
# Work (multiply-adds plus a per-row overhead) handed to the kernel per call; between calls the
# interpreter can deliver Ctrl-C and the progress callback runs.
_BLOCK_WORK = 1 << 24
_ROW_OVERHEAD = 64


def _threshold_as(threshold: float, vdt: np.dtype) -> Any:
    """The largest value of ``vdt`` not above ``threshold``.

    For a score ``v`` of that dtype, ``v > threshold`` holds exactly when ``v`` exceeds it, so
    rounding the threshold to float32 never drops a score that is strictly greater.
    """
    with np.errstate(over="ignore"):
        t = vdt.type(threshold)
    if float(t) > threshold:
        t = np.nextafter(t, vdt.type(-np.inf))
    return t


def _buffer_cap(width: int) -> int:
    """Candidate buffer per thread: cut back to ``width`` when full (amortised O(1) per candidate)."""
    return 2 * width + 16


def _scan_min(n_cols: int) -> int:
    """Rows whose multiply-add count reaches this select by a chunked full scan.

    Below it the kernel keeps a list of touched merchants and selects among those only.
    """
    return max(n_cols // 4, 1)


class _MerchantSide:
    """B restricted to merchants with w > 0, and w, in one value and index dtype.

    The kernel multiplies each finished sum by w (the formula's order), so a score that
    cancels to exactly 0 stays exactly 0 whatever w is.
    """

    __slots__ = ("indptr", "indices", "data", "weight", "row_absmax", "w_max")

    def __init__(self, b: CSRParts, weight: np.ndarray, value_dtype: np.dtype, index_dtype: np.dtype):
        with np.errstate(over="ignore"):
            w = np.ascontiguousarray(weight, dtype=value_dtype)
        if not np.isfinite(w).all():
            raise ValueError(
                f"merchant_weight: w = trust ** beta * boost overflows {np.dtype(value_dtype)}"
            )
        keep = w[b.indices] > 0
        data = b.data.astype(value_dtype, copy=False)
        if not keep.all():
            kept_before = np.zeros(keep.shape[0] + 1, dtype=np.int64)
            np.cumsum(keep, out=kept_before[1:])
            indptr = kept_before[b.indptr]
            indices = b.indices[keep]
            data = data[keep]
        else:
            indptr, indices = b.indptr, b.indices
        self.indptr = np.ascontiguousarray(indptr, dtype=index_dtype)
        self.indices = np.ascontiguousarray(indices, dtype=index_dtype)
        self.data = np.ascontiguousarray(data, dtype=value_dtype)
        self.weight = w
        self.row_absmax = np.zeros(b.shape[0], dtype=np.float64)
        _checks.row_abs_max(self.indptr, self.data, self.row_absmax)
        self.w_max = float(w.max()) if w.size else 0.0


def _scratch(rows: int, cols: int, dtype: Any, fill: Any = None) -> np.ndarray:
    """A C-contiguous (rows, cols) scratch array, filled when ``fill`` is given."""
    if fill is None:
        return np.empty((rows, cols), dtype=dtype)
    return np.full((rows, cols), fill, dtype=dtype)


def _pair_scratch(rows: int, weight: np.ndarray) -> np.ndarray:
    """Per-thread (sum, weight) pairs for sparse rows: sums NaN (not reached), weights set."""
    n_m = weight.shape[0]
    buf = _scratch(rows, 2 * n_m, weight.dtype)
    buf[:, 0::2] = np.nan
    buf[:, 1::2] = weight
    return buf


def _make_workspace(rows: int, n_m: int, width: int, weight: np.ndarray, idt: np.dtype) -> tuple:
    """Per-thread kernel scratch, in the state the kernel expects and leaves behind."""
    vdt = weight.dtype
    n_groups = n_m // 8 + 2  # the kernel's smallest group is 8 scores
    cap = _buffer_cap(width)
    return (
        _scratch(rows, n_m, vdt, 0),  # dense-row accumulator, all 0
        _scratch(rows, n_m, np.uint8, 0),  # dense-row reached marks, all 0
        _pair_scratch(rows, weight),  # sparse-row (sum, weight) pairs, sums NaN
        _scratch(rows, n_m + 1, idt),  # touched list
        _scratch(rows, n_m + 1, vdt),  # candidate scores of the row
        np.empty((rows, n_groups), vdt),  # group maxima
        np.empty((rows, n_groups), vdt),  # group maxima being selected
        np.empty((rows, n_groups), idt),
        np.empty((rows, cap), vdt),  # candidate buffer
        np.empty((rows, cap), idt),
    )


class _Workspace(threading.local):
    """Per-thread accumulators for single-user calls (kept zeroed between calls)."""

    def __init__(self) -> None:
        self.buffers: dict = {}


class Ranker:
    """Rank merchants for users by shared interests weighted by merchant trust.

    Prepares the merchant side once (validation, trust weighting, dtype conversion) so that
    many ranking calls, from many threads, share it.  A Ranker is immutable after construction
    and safe to use from several threads at once.

    Parameters
    ----------
    merchant_tags : sparse matrix or array, shape (n_tags, n_merchants)
        Merchant interest profiles B.
    trust : array_like, shape (n_merchants,), optional
        Trust index in [0, 1]; default 1 for every merchant.
    beta : float, default 1.0
        Trust exponent (>= 0); 0 ranks by interest alone.
    boost : array_like, shape (n_merchants,), optional
        Non-negative multiplier g (e.g. >= 1 for trusted-purchase guarantees); default 1.
    banned : array_like, optional
        Boolean mask over merchants, or an array of banned merchant ids.
    min_trust : float, default 0.0
        Merchants with trust below this get weight 0 (never shown).
    follow_weight : float, default 1.0
        Weight of the follow matrix F in the score.

    Raises
    ------
    ValueError
        Besides bad arguments: when one thread's dense accumulator over the merchants (about
        22 bytes per merchant for float32, 44 for float64, plus 48 bytes per merchant held by
        the Ranker) would exceed half the memory the process may use (the smallest of physical
        RAM, the cgroup limit and ``RLIMIT_AS``).  Shard the merchants over several Rankers and
        combine the results with :func:`ecomcore.merge_topk`.  A call whose ``n_threads``
        accumulators together exceed that limit is refused the same way, naming ``n_threads``.

    Notes
    -----
    ``w[m] = 0`` if banned or ``trust[m] < min_trust``, else ``trust[m] ** beta * boost[m]``.
    Merchants with ``w[m] == 0`` are never candidates.
    """

    def __init__(
        self,
        merchant_tags: ArrayLike,
        *,
        trust: Optional[ArrayLike] = None,
        beta: float = 1.0,
        boost: Optional[ArrayLike] = None,
        banned: Optional[ArrayLike] = None,
        min_trust: float = 0.0,
        follow_weight: float = 1.0,
    ) -> None:
        vdt = value_dtype_of(merchant_tags)
        b = as_csr(merchant_tags, "merchant_tags", value_dtype=vdt)
        n_m = b.shape[1]
        _check_merchant_count(b, vdt)
        beta = check_real(beta, "beta", minimum=0.0)
        min_trust = check_real(min_trust, "min_trust", minimum=0.0)
        if min_trust > 1:
            raise ValueError(f"min_trust: must be in [0, 1], got {min_trust}")
        t = (
            np.ones(n_m)
            if trust is None
            else as_vector(trust, "trust", n_m, minimum=0.0, maximum=1.0)
        )
        g = np.ones(n_m) if boost is None else as_vector(boost, "boost", n_m, minimum=0.0)
        w = np.power(t, beta) * g
        if not np.isfinite(w).all():
            raise ValueError("boost: trust ** beta * boost overflows")
        w[t < min_trust] = 0.0
        if banned is not None:
            w[_banned_mask(banned, n_m)] = 0.0
        self._init(b, w, vdt, follow_weight)
        # what with_trust keeps by default (private copies: later changes by the caller are not seen)
        self._weight_args = (
            beta,
            None if boost is None else np.array(g, dtype=np.float64),
            None if banned is None else np.array(_banned_mask(banned, n_m), dtype=bool),
            min_trust,
        )

    def with_trust(
        self,
        trust: Optional[ArrayLike],
        *,
        beta: Optional[float] = None,
        boost: Optional[ArrayLike] = None,
        banned: Optional[ArrayLike] = None,
    ) -> Ranker:
        """A new Ranker with new trust that shares this Ranker's prepared merchant matrix.

        Only the per-merchant weight ``w`` is recomputed, with the constructor's validation and
        formula; ``min_trust`` and ``follow_weight`` are kept.  The validated arrays of B are
        shared, never copied, and so is the kernel's compacted B (merchants with ``w > 0``) as
        long as the set of merchants with ``w > 0`` does not change; when it does (a new ban, a
        trust crossing ``min_trust`` or reaching 0) that one is rebuilt by one pass over B.
        ``self`` is not modified: a service swaps its reference to the result (one atomic
        assignment) while calls in flight finish on this Ranker.

        Parameters
        ----------
        trust : array_like, shape (n_merchants,), or None
            The new trust index in [0, 1]; None gives every merchant trust 1 (as in the
            constructor).
        beta : float, optional
            New trust exponent (>= 0); default: this Ranker's.
        boost : array_like, shape (n_merchants,), optional
            New non-negative multiplier g; default: this Ranker's.
        banned : array_like, optional
            New bool mask over merchants or array of banned merchant ids, replacing the current
            bans; default: this Ranker's.

        Returns
        -------
        Ranker
            The new Ranker; results equal those of a Ranker built from scratch with the same B,
            weight parameters, ``min_trust`` and ``follow_weight``.
        """
        n_m = self.n_merchants
        old_beta, old_boost, old_banned, min_trust = getattr(self, "_weight_args", (1.0, None, None, 0.0))
        beta = old_beta if beta is None else check_real(beta, "beta", minimum=0.0)
        t = np.ones(n_m) if trust is None else as_vector(trust, "trust", n_m, minimum=0.0, maximum=1.0)
        g = old_boost if boost is None else np.array(as_vector(boost, "boost", n_m, minimum=0.0))
        mask = old_banned if banned is None else np.array(_banned_mask(banned, n_m), dtype=bool)
        w = np.power(t, beta) * (np.ones(n_m) if g is None else g)
        if not np.isfinite(w).all():
            raise ValueError("boost: trust ** beta * boost overflows")
        w[t < min_trust] = 0.0
        if mask is not None:
            w[mask] = 0.0
        sides: dict = {}
        for key, side in list(self._sides.items()):
            with np.errstate(over="ignore"):
                wv = np.ascontiguousarray(w, dtype=key[0])
            if np.isfinite(wv).all() and np.array_equal(wv > 0, side.weight > 0):
                new_side = _MerchantSide.__new__(_MerchantSide)
                new_side.indptr, new_side.indices = side.indptr, side.indices
                new_side.data, new_side.row_absmax = side.data, side.row_absmax
                new_side.weight = wv
                new_side.w_max = float(wv.max()) if wv.size else 0.0
            else:
                new_side = _MerchantSide(self._b, w, key[0], key[1])  # validates w, compacts B
            sides[key] = new_side
        w.setflags(write=False)
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out._w = w
        out._sides = sides
        out._lock = threading.Lock()
        out._ws = _Workspace()
        out._weight_args = (beta, g, mask, min_trust)
        return out

    @classmethod
    def _from_weight(
        cls, merchant_tags: ArrayLike, weight: Optional[ArrayLike], follow_weight: float,
        value_dtype: np.dtype,
    ) -> Ranker:
        b = as_csr(merchant_tags, "merchant_tags", value_dtype=value_dtype)
        n_m = b.shape[1]
        _check_merchant_count(b, value_dtype)
        w = np.ones(n_m) if weight is None else as_vector(
            weight, "merchant_weight", n_m, minimum=0.0
        )
        self = cls.__new__(cls)
        self._init(b, w, value_dtype, follow_weight)
        return self

    def _init(self, b: CSRParts, w: np.ndarray, vdt: np.dtype, follow_weight: float) -> None:
        self._b = b
        self._dtype = np.dtype(vdt)
        self._follow_weight = check_real(follow_weight, "follow_weight")
        w = np.asarray(w, dtype=np.float64)
        w.setflags(write=False)
        self._w = w
        self._sides: dict = {}
        self._lock = threading.Lock()
        self._ws = _Workspace()
        self._side(self._dtype, b.indptr.dtype)  # validate B * w now, not at the first call

    # -- properties -----------------------------------------------------------------------
    @property
    def merchant_weight(self) -> np.ndarray:
        """Per-merchant weight ``w`` (read-only float64 array)."""
        return self._w

    @property
    def n_merchants(self) -> int:
        """Number of merchants (columns of B)."""
        return self._b.shape[1]

    @property
    def n_tags(self) -> int:
        """Number of interest tags (rows of B)."""
        return self._b.shape[0]

    @property
    def follow_weight(self) -> float:
        """Weight of the follow matrix in the score."""
        return self._follow_weight

    @property
    def dtype(self) -> np.dtype:
        """Value dtype of the merchant side (float32 or float64)."""
        return self._dtype

    def __repr__(self) -> str:
        return (
            f"Ranker(n_tags={self.n_tags}, n_merchants={self.n_merchants}, "
            f"dtype={self._dtype}, follow_weight={self._follow_weight})"
        )

    # -- internals ------------------------------------------------------------------------
    def _side(self, vdt: np.dtype, idt: np.dtype) -> _MerchantSide:
        key = (np.dtype(vdt), np.dtype(idt))
        side = self._sides.get(key)
        if side is None:
            with self._lock:
                side = self._sides.get(key)
                if side is None:
                    side = _MerchantSide(self._b, self._w, key[0], key[1])
                    self._sides[key] = side
        return side

    def _user_inputs(
        self, user_tags: ArrayLike, follows: Optional[ArrayLike], exclude: Optional[ArrayLike]
    ) -> tuple:
        vdt = np.dtype(np.float32) if (
            self._dtype == np.float32 and value_dtype_of(user_tags) == np.float32
        ) else np.dtype(np.float64)
        a = as_csr(user_tags, "user_tags", value_dtype=vdt, shape=(None, self.n_tags))
        n_u = a.shape[0]
        f = None if follows is None else as_csr(
            follows, "follows", value_dtype=vdt, shape=(n_u, self.n_merchants)
        )
        e = None if exclude is None else as_csr(
            exclude, "exclude", value_dtype=vdt, structural=True, shape=(n_u, self.n_merchants)
        )
        parts = [a, self._b] + [x for x in (f, e) if x is not None]
        idt = np.dtype(np.int64) if any(p.indptr.dtype == np.int64 for p in parts) else np.dtype(
            np.int32
        )
        a = a.astype(idt, vdt)
        f = None if f is None else f.astype(idt, vdt)
        e = None if e is None else e.astype(idt, vdt)
        return a, f, e, vdt, idt

    def _plan(
        self, a: CSRParts, f: Optional[CSRParts], side: _MerchantSide, vdt: np.dtype,
        start: int = 0, stop: Optional[int] = None,
    ) -> np.ndarray:
        """Per-row work of rows ``start:stop`` (for block planning) after ruling out overflow."""
        stop = a.shape[0] if stop is None else stop
        work = np.empty(stop - start, dtype=np.int64)
        idt = a.indptr.dtype
        f_ptr = _EMPTY_PTR[idt] if f is None else f.indptr[start:stop + 1]
        f_data = np.zeros(0, vdt) if f is None else f.data
        # a slice of indptr still holds absolute positions into indices / data
        bound = _checks.row_work_and_bound(
            a.indptr[start:stop + 1], a.indices, a.data, side.indptr, side.row_absmax,
            f_ptr, f_data, abs(self._follow_weight), work,
        )
        if not bound * max(side.w_max, 1.0) < np.finfo(vdt).max / 4:
            raise ValueError(
                f"user_tags: scores could overflow {vdt} (magnitude bound {bound:.3g}); "
                "rescale the inputs or use float64"
            )
        return work

    @staticmethod
    def _blocks(work: np.ndarray, start: int, stop: int, n_threads: int) -> list[tuple[int, int]]:
        if stop <= start:
            return []
        cost = np.cumsum(work[start:stop] + _ROW_OVERHEAD)
        bounds = [start]
        min_rows = 8 * n_threads
        target = _BLOCK_WORK * n_threads
        pos = 0
        n = stop - start
        while pos < n:
            base = cost[pos - 1] if pos else 0
            nxt = int(np.searchsorted(cost, base + target, side="right"))
            nxt = min(max(nxt, pos + min_rows), n)
            bounds.append(start + nxt)
            pos = nxt
        return list(zip(bounds[:-1], bounds[1:]))

    def _run_rows(
        self, a, f, e, side, vdt, idt, width, threshold, n_threads, row_start, row_end,
        out_idx, out_sc, out_cnt, ws,
    ) -> None:
        _topk.fused_topk(
            a.indptr, a.indices, a.data,
            side.indptr, side.indices, side.data, side.weight,
            _EMPTY_PTR[idt] if f is None else f.indptr,
            _EMPTY_PTR[idt] if f is None else f.indices,
            np.zeros(0, vdt) if f is None else f.data,
            vdt.type(self._follow_weight),
            _EMPTY_PTR[idt] if e is None else e.indptr,
            _EMPTY_PTR[idt] if e is None else e.indices,
            _threshold_as(threshold, vdt), _scan_min(self.n_merchants), row_start, row_end, out_idx, out_sc, out_cnt,
            *ws, n_threads,
        )

    def _check_workspace(self, n_threads: int, width: int, vdt: np.dtype, idt: np.dtype) -> int:
        """The scratch count a call uses, after checking that so many fit (before allocating)."""
        nt = n_threads if _topk.openmp_enabled() else 1
        check_dense_columns(
            self.n_merchants, "merchant_tags", threads=nt, width=width, value_dtype=vdt, index_dtype=idt,
        )
        return nt

    def _workspace(self, n_threads: int, width: int, vdt: np.dtype, idt: np.dtype) -> tuple:
        nt = self._check_workspace(n_threads, width, vdt, idt)
        return _make_workspace(nt, self.n_merchants, width, self._side(vdt, idt).weight, idt)

    def _finish(self, idx: np.ndarray, sc: np.ndarray, cnt: np.ndarray) -> TopK:
        odt = index_dtype_for(self.n_merchants)
        return TopK(idx.astype(odt, copy=False), sc, cnt.astype(odt, copy=False), self.n_merchants)

    # -- public API -----------------------------------------------------------------------
    def topk(
        self,
        user_tags: ArrayLike,
        k: int = 10,
        *,
        follows: Optional[ArrayLike] = None,
        exclude: Optional[ArrayLike] = None,
        threshold: Optional[float] = None,
        n_threads: Optional[int] = None,
        progress: Optional[Callable[[int, int], Any]] = None,
    ) -> TopK:
        """Top-k merchants for every user.

        Parameters
        ----------
        user_tags : sparse matrix or array, shape (n_users, n_tags)
            User interest profiles A.
        k : int, default 10
            Merchants to keep per user (>= 1).
        follows : sparse matrix, shape (n_users, n_merchants), optional
            Follow / repeat-purchase strengths F; a followed merchant is a candidate.
        exclude : sparse matrix, shape (n_users, n_merchants), optional
            Any stored entry removes that merchant from that user's list.
        threshold : float, optional
            Keep only scores strictly greater than this; ``None`` keeps every candidate,
            including negative scores and scores that cancel to exactly 0.
        n_threads : int, optional
            Threads to use; ``None`` uses every core the process may run on.
        progress : callable, optional
            Called as ``progress(rows_done, n_rows)`` after each block of rows.

        Returns
        -------
        TopK
            ``width = min(k, n_merchants)`` entries per user, padded with -1 / -inf.
        """
        k = check_int(k, "k")
        threshold = check_threshold(threshold)
        n_threads = resolve_threads(n_threads)
        if progress is not None and not callable(progress):
            raise TypeError("progress: expected a callable or None")
        a, f, e, vdt, idt = self._user_inputs(user_tags, follows, exclude)
        side = self._side(vdt, idt)
        work = self._plan(a, f, side, vdt)
        n_u = a.shape[0]
        width = min(k, self.n_merchants)
        out_idx = np.empty((n_u, width), dtype=idt)
        out_sc = np.empty((n_u, width), dtype=vdt)
        out_cnt = np.zeros(n_u, dtype=idt)
        n_threads = min(n_threads, max(n_u, 1))  # never more scratch than rows to share it
        if n_u and width:
            ws = self._workspace(n_threads, width, vdt, idt)
            for r0, r1 in self._blocks(work, 0, n_u, n_threads):
                self._run_rows(a, f, e, side, vdt, idt, width, threshold, n_threads, r0, r1,
                               out_idx[r0:r1], out_sc[r0:r1], out_cnt[r0:r1], ws)
                if progress is not None:
                    progress(r1, n_u)
        elif progress is not None:
            progress(n_u, n_u)
        return self._finish(out_idx, out_sc, out_cnt)

    def iter_topk(
        self,
        user_tags: ArrayLike,
        k: int = 10,
        *,
        chunk_rows: int = 65536,
        follows: Optional[ArrayLike] = None,
        exclude: Optional[ArrayLike] = None,
        threshold: Optional[float] = None,
        n_threads: Optional[int] = None,
    ) -> Iterator[tuple[int, TopK]]:
        """Stream the top-k in row blocks of at most ``chunk_rows`` users.

        Same arguments and results as :meth:`topk`; yields ``(row_start, TopK)`` so that a
        caller can write each block to disk.  Memory stays flat in the number of users: beyond
        the inputs, only the per-thread scratch and the block being computed (plus the one the
        caller still holds) exist at a time; nothing is kept per user.  Every check (arguments,
        score overflow over all rows, scratch size) runs in this call, before the first block.

        Yields
        ------
        tuple of (int, TopK)
            First user of the block and the block's result.
        """
        k = check_int(k, "k")
        chunk_rows = check_int(chunk_rows, "chunk_rows")
        threshold = check_threshold(threshold)
        n_threads = resolve_threads(n_threads)
        a, f, e, vdt, idt = self._user_inputs(user_tags, follows, exclude)
        # Everything that can fail is checked before the first block (overflow over all rows,
        # block by block, keeping no per-user array; the scratch size).
        side = self._side(vdt, idt)
        n_u = a.shape[0]
        width = min(k, self.n_merchants)
        n_threads = min(n_threads, max(min(chunk_rows, n_u), 1))
        if width:
            self._check_workspace(n_threads, width, vdt, idt)
        for s0 in range(0, n_u, chunk_rows):
            self._plan(a, f, side, vdt, s0, min(s0 + chunk_rows, n_u))
        return self._iter(a, f, e, side, vdt, idt, width, chunk_rows, threshold, n_threads)

    def _iter(self, a, f, e, side, vdt, idt, width, chunk_rows, threshold, n_threads):
        # Per block: its rows' work, its output; memory stays flat in the number of users.
        n_u = a.shape[0]
        ws = self._workspace(n_threads, width, vdt, idt) if width else None
        for s0 in range(0, n_u, chunk_rows):
            s1 = min(s0 + chunk_rows, n_u)
            out_idx = np.empty((s1 - s0, width), dtype=idt)
            out_sc = np.empty((s1 - s0, width), dtype=vdt)
            out_cnt = np.zeros(s1 - s0, dtype=idt)
            if width:
                work = self._plan(a, f, side, vdt, s0, s1)
                for r0, r1 in self._blocks(work, 0, s1 - s0, n_threads):
                    self._run_rows(a, f, e, side, vdt, idt, width, threshold, n_threads, s0 + r0, s0 + r1,
                                   out_idx[r0:r1], out_sc[r0:r1], out_cnt[r0:r1], ws)
                del work
            block = self._finish(out_idx, out_sc, out_cnt)
            del out_idx, out_sc, out_cnt
            yield s0, block
            del block  # a block the caller dropped is freed before the next one is allocated

    def _one_user(self, tag_ids, tag_weights, follow_ids, follow_weights, name_ids, name_w):
        """Validate one user's sparse vectors; return sorted CSR-style arrays and the dtype."""
        ids = as_ids(tag_ids, name_ids, self.n_tags, unique=True)
        vdt = np.dtype(np.float32) if (
            self._dtype == np.float32 and value_dtype_of(tag_weights) == np.float32
        ) else np.dtype(np.float64)
        wts = _weights_for(tag_weights, name_w, ids.shape[0], vdt)
        if ids.shape[0] > 1 and np.any(ids[1:] <= ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids, wts = ids[order], wts[order]
        nz = wts != 0
        if not nz.all():
            ids, wts = ids[nz], wts[nz]
        if follow_ids is None:
            if follow_weights is not None:
                raise ValueError("follow_weights: given without follow_ids")
            fids = np.zeros(0, np.int64)
            fw = np.zeros(0, vdt)
        else:
            fids = as_ids(follow_ids, "follow_ids", self.n_merchants, unique=True)
            fw = (
                np.ones(fids.shape[0], vdt)
                if follow_weights is None
                else _weights_for(follow_weights, "follow_weights", fids.shape[0], vdt)
            )
            if fids.shape[0] > 1 and np.any(fids[1:] <= fids[:-1]):
                order = np.argsort(fids, kind="stable")
                fids, fw = fids[order], fw[order]
            nz = fw != 0
            if not nz.all():
                fids, fw = fids[nz], fw[nz]
        idt = self._b.indptr.dtype
        return ids.astype(idt), wts, fids.astype(idt), fw, vdt, idt

    def _single_ws(self, vdt: np.dtype, idt: np.dtype, width: int) -> tuple:
        """This thread's scratch for one-user calls (reused; the kernel leaves it clean)."""
        key = (vdt, idt)
        ws = self._ws.buffers.get(key)
        if ws is None or ws[-1].shape[1] < _buffer_cap(width):
            check_dense_columns(self.n_merchants, "merchant_tags", width=width, value_dtype=vdt, index_dtype=idt)
            ws = _make_workspace(1, self.n_merchants, width, self._side(vdt, idt).weight, idt)
            self._ws.buffers[key] = ws
        return ws

    def topk_one(
        self,
        tag_ids: ArrayLike,
        tag_weights: ArrayLike,
        k: int = 10,
        *,
        follow_ids: Optional[ArrayLike] = None,
        follow_weights: Optional[ArrayLike] = None,
        exclude_ids: Optional[ArrayLike] = None,
    ) -> TopK:
        """Top-k merchants for one user given as a sparse tag vector (online serving).

        Single-threaded, with per-thread scratch buffers reused between calls; the result is
        identical to :meth:`topk` on the same row.

        Parameters
        ----------
        tag_ids, tag_weights : array_like
            The user's tags (distinct ids in ``[0, n_tags)``) and their weights.  Weights are
            computed in float32 only when the Ranker is float32 and ``tag_weights`` is a
            float32 array; otherwise in float64 (as :meth:`topk` does for A).
        k : int, default 10
            Merchants to keep.
        follow_ids, follow_weights : array_like, optional
            Followed merchants and strengths (default 1 each).
        exclude_ids : array_like, optional
            Merchants never to return for this user.

        Returns
        -------
        TopK
            One row.
        """
        k = check_int(k, "k")
        ids, wts, fids, fw, vdt, idt = self._one_user(
            tag_ids, tag_weights, follow_ids, follow_weights, "tag_ids", "tag_weights"
        )
        if exclude_ids is None:
            e_ptr = _EMPTY_PTR[idt]
            e_idx = e_ptr
        else:
            e_idx = as_ids(exclude_ids, "exclude_ids", self.n_merchants).astype(idt)
            e_ptr = np.array([0, e_idx.shape[0]], dtype=idt)
        side = self._side(vdt, idt)
        bound = float(np.abs(wts).astype(np.float64) @ side.row_absmax[ids]) + abs(
            self._follow_weight
        ) * float(np.abs(fw).astype(np.float64).sum())
        if not bound * max(side.w_max, 1.0) < np.finfo(vdt).max / 4:
            raise ValueError(f"tag_weights: scores could overflow {vdt}; rescale the inputs")
        width = min(k, self.n_merchants)
        out_idx = np.empty((1, width), dtype=idt)
        out_sc = np.empty((1, width), dtype=vdt)
        out_cnt = np.zeros(1, dtype=idt)
        if width:
            ws = self._single_ws(vdt, idt, width)
            _topk.fused_topk(
                np.array([0, ids.shape[0]], dtype=idt), ids, wts,
                side.indptr, side.indices, side.data, side.weight,
                np.array([0, fids.shape[0]], dtype=idt), fids, fw,
                vdt.type(self._follow_weight),
                e_ptr, e_idx,
                vdt.type(-np.inf), _scan_min(self.n_merchants), 0, 1, out_idx, out_sc, out_cnt,
                *ws, 1,
            )
        return self._finish(out_idx, out_sc, out_cnt)

    def explain(
        self,
        tag_ids: ArrayLike,
        tag_weights: ArrayLike,
        merchant_ids: ArrayLike,
        *,
        follow_ids: Optional[ArrayLike] = None,
        follow_weights: Optional[ArrayLike] = None,
    ) -> dict:
        """Break one user's score for the given merchants into its parts.

        Parameters
        ----------
        tag_ids, tag_weights : array_like
            The user's tag vector (as for :meth:`topk_one`).
        merchant_ids : array_like
            Merchants to explain.
        follow_ids, follow_weights : array_like, optional
            The user's follows (as for :meth:`topk_one`).

        Returns
        -------
        dict of ndarray
            ``merchant``; ``interest`` = sum_t a_t B[t, m]; ``follow`` = follow_weight * F[m];
            ``weight`` = w[m]; ``score`` = the score :meth:`topk_one` computes (bit-identical
            to it; equal to ``(interest + follow) * weight`` up to rounding); ``candidate``:
            whether the merchant is reached and has ``w > 0`` (exclusions are not applied).
        """
        ids, wts, fids, fw, vdt, idt = self._one_user(
            tag_ids, tag_weights, follow_ids, follow_weights, "tag_ids", "tag_weights"
        )
        mids = as_ids(merchant_ids, "merchant_ids", self.n_merchants)
        side = self._side(vdt, idt)
        score = np.zeros(mids.shape[0], vdt)
        reached = np.zeros(mids.shape[0], np.uint8)
        n_m = self.n_merchants
        _topk.score_row(
            ids, wts, side.indptr, side.indices, side.data, side.weight,
            fids, fw, vdt.type(self._follow_weight), mids.astype(idt), score, reached,
            _pair_scratch(1, side.weight)[0], np.empty(n_m + 1, idt),
        )
        b = self._b
        bsub = sp.csr_array((b.data, b.indices, b.indptr), shape=b.shape)[ids.astype(np.int64)]
        interest = np.asarray((sp.csr_array(wts.astype(np.float64)[None, :]) @ bsub).todense())[0]
        interest = interest[mids]
        follow = np.zeros(mids.shape[0], np.float64)
        if fids.shape[0]:
            pos = np.searchsorted(fids, mids)
            hit = (pos < fids.shape[0]) & (fids[np.minimum(pos, fids.shape[0] - 1)] == mids)
            follow[hit] = self._follow_weight * fw[pos[hit]].astype(np.float64)
        weight = self._w[mids]
        return {
            "merchant": mids,
            "interest": interest,
            "follow": follow,
            "weight": weight.copy(),
            "score": score,
            "candidate": (reached.astype(bool)) & (weight > 0),
        }

    def audience(
        self,
        user_tags_or_index: Any,
        merchant_ids: ArrayLike,
        k: int,
        *,
        exclude_followers: bool = False,
        follows: Optional[ArrayLike] = None,
        opted_out: Optional[ArrayLike] = None,
        max_per_user: Optional[int] = None,
        n_threads: Optional[int] = None,
    ) -> TopK:
        """Top-k interested users for each given merchant (audience targeting).

        The transposed problem (merchants x tags times tags x users) on the same fused kernel;
        see :func:`ecomcore.audience.audience` for the full semantics.

        Parameters
        ----------
        user_tags_or_index : AudienceIndex or sparse matrix, shape (n_users, n_tags)
            The users: an :class:`ecomcore.AudienceIndex` (prepared once, shared by many
            queries) or the interest profiles A.
        merchant_ids : array_like of int
            Distinct merchant ids; row i of the result is ``merchant_ids[i]``'s audience.
        k : int
            Users per merchant (>= 1).
        exclude_followers : bool, default False
            Leave out users who follow the merchant (non-zero ``follows[u, m]``).
        follows : sparse matrix, shape (n_users, n_merchants), optional
            Follow strengths F; added to the score (times ``follow_weight``) unless excluded.
        opted_out : array_like, optional
            Users never targeted: a bool mask over users or user ids.
        max_per_user : int, optional
            A user appears in at most this many lists (global greedy by score; ties by
            position in ``merchant_ids``, then user id; dropped users are replaced).
        n_threads : int, optional
            Threads (default: every core the process may use).

        Returns
        -------
        TopK
            Rows = merchants, indices = user ids, scores exactly as :meth:`topk` computes
            them for the same (user, merchant) pair.
        """
        from ecomcore.audience import audience

        return audience(
            self, user_tags_or_index, merchant_ids, k, exclude_followers=exclude_followers,
            follows=follows, opted_out=opted_out, max_per_user=max_per_user, n_threads=n_threads,
        )  # fmt: skip


def _weights_for(x: ArrayLike, name: str, n: int, vdt: np.dtype) -> np.ndarray:
    if sp.issparse(x):
        raise TypeError(f"{name}: expected a 1-D array, got a sparse matrix")
    arr = np.asarray(x)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric values, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values (one per id), got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=vdt)
    if not np.isfinite(out).all():
        raise ValueError(f"{name}: contains NaN or inf (or overflows {vdt})")
    return out


def _check_merchant_count(b: CSRParts, vdt: np.dtype) -> None:
    """Refuse, before any per-merchant array exists, a merchant count whose dense per-thread
    accumulator (one thread) and per-merchant vectors cannot fit (see :mod:`ecomcore._sizes`)."""
    check_dense_columns(
        b.shape[1], "merchant_tags", value_dtype=vdt, index_dtype=b.indptr.dtype,
        shared_per_column=RANKER_BYTES_PER_COLUMN,
    )


def _banned_mask(banned: ArrayLike, n: int) -> np.ndarray:
    if sp.issparse(banned):
        raise TypeError("banned: expected a bool mask or an array of merchant ids")
    arr = np.asarray(banned)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"banned: a bool mask must have shape ({n},), got {arr.shape}")
        return arr
    ids = as_ids(arr, "banned", n)
    mask = np.zeros(n, dtype=bool)
    mask[ids] = True
    return mask


def sparse_topk(
    user_tags: ArrayLike,
    merchant_tags: ArrayLike,
    k: int,
    *,
    merchant_weight: Optional[ArrayLike] = None,
    follows: Optional[ArrayLike] = None,
    follow_weight: float = 1.0,
    exclude: Optional[ArrayLike] = None,
    threshold: Optional[float] = None,
    n_threads: Optional[int] = None,
) -> TopK:
    """Fused ``top-k((A @ B + follow_weight * F) * w)`` per row without forming ``A @ B``.

    Parameters
    ----------
    user_tags : sparse matrix or array, shape (n_users, n_tags)
        A.
    merchant_tags : sparse matrix or array, shape (n_tags, n_merchants)
        B.
    k : int
        Entries to keep per user.
    merchant_weight : array_like, shape (n_merchants,), optional
        Non-negative finite weights w (default 1); ``w == 0`` removes a merchant.
    follows : sparse matrix, shape (n_users, n_merchants), optional
        F.
    follow_weight : float, default 1.0
        Weight of F.
    exclude : sparse matrix, shape (n_users, n_merchants), optional
        Stored entries mark merchants never to return for that user.
    threshold : float, optional
        Keep scores strictly greater than this (default: keep all candidates).
    n_threads : int, optional
        Threads (default: every core the process may use).

    Returns
    -------
    TopK
        Scores are float32 when A and B are both float32, else float64.

    See Also
    --------
    Ranker : prepares B and w once for repeated calls.
    """
    vdt = np.dtype(np.float32) if (
        value_dtype_of(merchant_tags) == np.float32 and value_dtype_of(user_tags) == np.float32
    ) else np.dtype(np.float64)
    r = Ranker._from_weight(merchant_tags, merchant_weight, follow_weight, vdt)
    return r.topk(user_tags, k, follows=follows, exclude=exclude, threshold=threshold,
                  n_threads=n_threads)


BannedLike = Union[np.ndarray, Sequence[int]]
