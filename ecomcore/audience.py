"""Audience targeting: the top-k interested users per merchant (or per new item).

The merchant's side of interest e-commerce reads the ranking product the other way round::

    score(m, u) = (sum_t B[t, m] * A[u, t] + follow_weight * F[u, m]) * w[m]

rows = the requested merchants, columns = users.  It is the transposed problem (merchants x tags
times tags x users) and runs on the same fused kernel as :meth:`ecomcore.Ranker.topk`
(``ecomcore_ext._topk.fused_topk``): :class:`AudienceIndex` prepares the users side (A
transposed, tags x users) once, so that many campaign queries share it.  The sums are formed in
the same order as the Ranker's (ascending tag, then the follow term) and multiplied by the
merchant's own weight ``w[m]`` afterwards, so an audience score is bit-identical to the score
:meth:`Ranker.topk` gives the same (user, merchant) pair.

Filters: users who opted out of promotion (global), a merchant's followers (acquisition
campaigns), per-row exclusions (items), and a per-user frequency cap (``max_per_user``) resolved
globally and greedily by score.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import scipy.sparse as sp

from ecomcore._sizes import check_dense_columns
from ecomcore._validation import (
    INT32_MAX,
    CSRParts,
    as_csr,
    as_ids,
    as_vector,
    check_int,
    index_dtype_for_sizes,
    resolve_threads,
    to_array,
    value_dtype_of,
)
from ecomcore.topk import TopK, index_dtype_for
from ecomcore_ext import _audience, _checks, _topk

if TYPE_CHECKING:  # pragma: no cover
    from ecomcore.ranking import Ranker

__all__ = ["AudienceIndex", "audience", "audience_for_items"]

ArrayLike = Any
# Extra candidates fetched per row beyond k: multiplying by w after the kernel can merge two
# adjacent sums into one score, and the boundary must stay exact (see _Candidates).
_MARGIN = 8
# Work (multiply-adds plus a per-row overhead) per kernel call, as in ecomcore.ranking.
_BLOCK_WORK = 1 << 24
_ROW_OVERHEAD = 64
# Bytes per user held once per query besides the kernel scratch: the kernel's all-ones weight
# vector and the per-user list count of max_per_user.
_AUDIENCE_BYTES_PER_USER = 16
# Exclusion-list entries one kernel call may take with int32 index arrays (its pointer array
# counts them in int32).
_ENTRY_CAP32 = INT32_MAX - 1
# Entries handled per step when post-processing kernel results (bounds the temporaries).
_CHUNK = 1 << 16


def _scan_min(n_cols: int) -> int:
    # Same rule as ecomcore.ranking: rows reaching a quarter of the columns scan them all.
    return max(n_cols // 4, 1)


def _buffer_cap(width: int) -> int:
    return 2 * width + 16


def _workspace(rows: int, n_cols: int, vdt: np.dtype, idt: np.dtype) -> tuple:
    """Per-thread scratch for ``fused_topk`` over ``n_cols`` users (every column weight 1),
    except the candidate buffers, which depend on the width."""
    n_groups = n_cols // 8 + 2
    pair = np.empty((rows, 2 * n_cols), dtype=vdt)
    pair[:, 0::2] = np.nan
    pair[:, 1::2] = 1
    return (
        np.zeros((rows, n_cols), dtype=vdt),
        np.zeros((rows, n_cols), dtype=np.uint8),
        pair,
        np.empty((rows, n_cols + 1), dtype=idt),
        np.empty((rows, n_cols + 1), dtype=vdt),
        np.empty((rows, n_groups), dtype=vdt),
        np.empty((rows, n_groups), dtype=vdt),
        np.empty((rows, n_groups), dtype=idt),
    )


class _UserSide:
    """A^T (tags x users) in one value and index dtype, with each tag row's largest |value|."""

    __slots__ = ("indptr", "indices", "data", "row_absmax")

    def __init__(self, at: CSRParts, vdt: np.dtype, idt: np.dtype) -> None:
        self.indptr = np.ascontiguousarray(at.indptr, dtype=idt)
        self.indices = np.ascontiguousarray(at.indices, dtype=idt)
        self.data = np.ascontiguousarray(at.data, dtype=vdt)
        self.row_absmax = np.zeros(at.shape[0], dtype=np.float64)
        _checks.row_abs_max(self.indptr, self.data, self.row_absmax)


class AudienceIndex:
    """The users side of audience queries, prepared once: user interests transposed.

    Holds ``A.T`` (tags x users, CSR) so that every audience query (a merchant's, or a new
    item's, tag row times ``A.T``) runs on the fused sparse top-k kernel without touching users
    that share no tag with the row.  Immutable after construction and safe to share between
    threads; costs about as much memory as ``user_tags`` itself.

    Parameters
    ----------
    user_tags : sparse matrix or array, shape (n_users, n_tags)
        User interest profiles A (as for :meth:`ecomcore.Ranker.topk`).  float32 input is kept
        in float32; anything else is computed in float64.

    See Also
    --------
    ecomcore.Ranker.audience : top-k users for given merchants.
    audience_for_items : top-k users for new items given by their tag vectors.

    Examples
    --------
    >>> import ecomcore as ec
    >>> from ecomcore.datasets import synthetic_market
    >>> m = synthetic_market(500, 50, 80, seed=1)
    >>> index = ec.AudienceIndex(m.user_tags)
    >>> ranker = ec.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned)
    >>> top = ranker.audience(index, [3, 7], k=5, n_threads=1)
    >>> top.indices.shape
    (2, 5)
    """

    def __init__(self, user_tags: ArrayLike) -> None:
        vdt = value_dtype_of(user_tags)
        a = as_csr(user_tags, "user_tags", value_dtype=vdt)
        n_u, n_t = a.shape
        # the users are the columns of every audience query's dense accumulator
        check_dense_columns(
            n_u, "user_tags", what="users", value_dtype=vdt, index_dtype=np.int64,
            shared_per_column=_AUDIENCE_BYTES_PER_USER,
        )  # fmt: skip
        t = sp.csr_array((a.data, a.indices, a.indptr), shape=(n_u, n_t)).T.tocsr()
        t.sort_indices()
        idt = index_dtype_for_sizes(a.nnz, n_u, n_t)
        self._at = CSRParts(
            np.ascontiguousarray(t.indptr, dtype=idt),
            np.ascontiguousarray(t.indices, dtype=idt),
            np.ascontiguousarray(t.data, dtype=vdt),
            (n_t, n_u),
        )
        for arr in (self._at.indptr, self._at.indices, self._at.data):
            arr.setflags(write=False)
        self._dtype = np.dtype(vdt)
        self._sides: dict = {}
        self._lock = threading.Lock()

    @property
    def n_users(self) -> int:
        """Number of users (columns of the prepared ``A.T``)."""
        return self._at.shape[1]

    @property
    def n_tags(self) -> int:
        """Number of tags."""
        return self._at.shape[0]

    @property
    def nnz(self) -> int:
        """Stored (non-zero) user-tag entries."""
        return self._at.nnz

    @property
    def dtype(self) -> np.dtype:
        """Value dtype of the prepared interests (float32 or float64)."""
        return self._dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by the prepared arrays (one dtype variant)."""
        return int(self._at.indptr.nbytes + self._at.indices.nbytes + self._at.data.nbytes)

    def __repr__(self) -> str:
        return f"AudienceIndex(n_users={self.n_users}, n_tags={self.n_tags}, nnz={self.nnz}, dtype={self._dtype})"

    def _side(self, vdt: np.dtype, idt: np.dtype) -> _UserSide:
        key = (np.dtype(vdt), np.dtype(idt))
        side = self._sides.get(key)
        if side is None:
            with self._lock:
                side = self._sides.get(key)
                if side is None:
                    side = _UserSide(self._at, key[0], key[1])
                    self._sides[key] = side
        return side


def _as_index(users: ArrayLike) -> AudienceIndex:
    if isinstance(users, AudienceIndex):
        return users
    return AudienceIndex(users)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _user_ids(x: ArrayLike, n_users: int, name: str) -> np.ndarray:
    """A bool mask over users or an array of user ids -> sorted distinct int64 ids."""
    if sp.issparse(x):
        raise TypeError(f"{name}: expected a bool mask over users or an array of user ids")
    arr = to_array(x, name)
    if arr.dtype == bool:
        if arr.shape != (n_users,):
            raise ValueError(f"{name}: a bool mask must have shape ({n_users},), got {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64)
    ids = as_ids(arr, name, n_users)
    return np.unique(ids)


def _check_cap(max_per_user: Any) -> Optional[int]:
    if max_per_user is None:
        return None
    return check_int(max_per_user, "max_per_user")


def _check_bool(x: Any, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(x).__name__}")
    return bool(x)


def _merchant_ids(x: ArrayLike, n_merchants: int) -> np.ndarray:
    if x is None:
        raise TypeError("merchant_ids: expected merchant ids, got None")
    arr = to_array(x, "merchant_ids")
    if arr.dtype == bool:
        raise TypeError("merchant_ids: expected integer merchant ids, got a bool array")
    if arr.ndim > 1:
        raise ValueError(f"merchant_ids: expected a 1-D array of ids, got shape {arr.shape}")
    ids = as_ids(arr, "merchant_ids", n_merchants)
    if ids.size > 1:
        srt = np.sort(ids)
        dup = srt[1:] == srt[:-1]
        if dup.any():
            raise ValueError(
                f"merchant_ids: merchant {int(srt[1:][dup][0])} is listed more than once "
                "(each merchant gets one list; the per-user cap counts lists)"
            )
    return ids


def _take_rows(m: sp.csr_array, rows: np.ndarray, idt: np.dtype, vdt: np.dtype) -> CSRParts:
    """Rows of a canonical CSR array as CSRParts in the given dtypes."""
    sub = m[rows] if rows.size != m.shape[0] or not np.array_equal(rows, np.arange(m.shape[0])) else m
    sub = sp.csr_array(sub)
    return CSRParts(
        np.ascontiguousarray(sub.indptr, dtype=idt),
        np.ascontiguousarray(sub.indices, dtype=idt),
        np.ascontiguousarray(sub.data, dtype=vdt),
        (int(sub.shape[0]), int(sub.shape[1])),
    )


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------


class _Problem:
    """One audience query, validated: row tag vectors, row weights, follows, exclusions."""

    def __init__(
        self,
        side: _UserSide,
        n_users: int,
        rows: CSRParts,
        weight: np.ndarray,
        follows: Optional[CSRParts],
        follow_weight: float,
        exclude: Optional[CSRParts],
        opted: Optional[np.ndarray],
        vdt: np.dtype,
        idt: np.dtype,
        name: str = "user_tags_or_index",
    ) -> None:
        self.side, self.n_users, self.rows, self.weight = side, n_users, rows, weight
        self.follows, self.follow_weight, self.exclude, self.opted = follows, follow_weight, exclude, opted
        self.vdt, self.idt = vdt, idt
        self._ws: Optional[tuple] = None
        self._ones: Optional[np.ndarray] = None
        n_q = rows.shape[0]
        dead = weight <= 0
        if dead.any():  # rows never shown: no entries, so the kernel returns them empty at once
            self.rows = rows = _drop_rows(rows, dead)
            if follows is not None:
                self.follows = follows = _drop_rows(follows, dead)
        self.work = np.empty(n_q, dtype=np.int64)
        f_ptr = np.zeros(0, idt) if follows is None else follows.indptr
        f_data = np.zeros(0, vdt) if follows is None else follows.data
        bound = _checks.row_work_and_bound(
            rows.indptr, rows.indices, rows.data, side.indptr, side.row_absmax,
            f_ptr, f_data, abs(follow_weight), self.work,
        )  # fmt: skip
        w_max = float(weight.max()) if weight.size else 0.0
        if not bound * max(w_max, 1.0) < float(np.finfo(vdt).max) / 4:
            raise ValueError(
                f"{name}: scores could overflow {vdt} (magnitude bound {bound:.3g}); rescale the inputs or use float64"
            )

    def _exclusions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row exclusion lists (opted-out users, then the row's own) for ``rows``."""
        idt = self.idt
        n_opt = 0 if self.opted is None else self.opted.shape[0]
        e = self.exclude
        if e is None:
            own = np.zeros(rows.shape[0], dtype=np.int64)
        else:
            own = (e.indptr[rows + 1] - e.indptr[rows]).astype(np.int64)
        counts = own + n_opt
        ptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        out = np.empty(int(ptr[-1]), dtype=idt)
        if n_opt:
            pos = (ptr[:-1, None] + np.arange(n_opt)[None, :]).ravel()
            out[pos] = np.tile(self.opted.astype(idt), rows.shape[0])
        if e is not None and own.sum():
            starts = e.indptr[rows].astype(np.int64)
            total = int(own.sum())
            first = np.repeat(np.cumsum(own) - own, own)
            src = np.repeat(starts, own) + (np.arange(total) - first)
            dst = np.repeat(ptr[:-1] + n_opt, own) + (np.arange(total) - first)
            out[dst] = e.indices[src]
        return ptr.astype(idt), out

    def _blocks(self, rows: np.ndarray, n_threads: int) -> list[np.ndarray]:
        """Split ``rows`` into kernel calls bounded in work and in exclusion-list entries.

        The opted-out users are repeated in every row's exclusion list, so a call takes at most
        about ``n_users * n_threads`` of them (the size of the scratch).  With int32 index
        arrays a call's exclusion lists (opted-out plus the row's own) also hold fewer than
        2**31 entries in all: their pointer array counts them in the index dtype.
        """
        if rows.size == 0:
            return []
        n_opt = 0 if self.opted is None else self.opted.shape[0]
        min_rows = 8 * n_threads
        max_rows = max(min_rows, (self.n_users * n_threads) // max(n_opt, 1))
        cost = self.work[rows] + _ROW_OVERHEAD
        ent = np.full(rows.size, n_opt, dtype=np.int64)
        if self.exclude is not None:
            ptr = self.exclude.indptr
            ent += (ptr[rows + 1] - ptr[rows]).astype(np.int64)
        cap = _ENTRY_CAP32 if self.idt == np.int32 else None
        if cap is not None and int(ent.max()) > cap:
            raise ValueError(
                f"opted_out, exclude: {int(ent.max())} users to leave out of one list (opted-out users plus "
                f"the row's own exclusions); at most {cap} are supported"
            )
        out = []
        start, acc, n_ent = 0, 0, 0
        for i in range(rows.size):
            e_i = int(ent[i])
            if cap is not None and i > start and n_ent + e_i > cap:
                out.append(rows[start:i])
                start, acc, n_ent = i, 0, 0
            acc += int(cost[i])
            n_ent += e_i
            n = i + 1 - start
            if n >= max_rows or (acc >= _BLOCK_WORK * n_threads and n >= min_rows):
                out.append(rows[start : i + 1])
                start, acc, n_ent = i + 1, 0, 0
        if start < rows.size:
            out.append(rows[start:])
        return out

    def fetch(self, rows: np.ndarray, width: int, n_threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Kernel top-``width`` (by unweighted sum, ties by user) of the given rows."""
        vdt, idt = self.vdt, self.idt
        n = rows.shape[0]
        out_idx = np.empty((n, width), dtype=idt)
        out_sc = np.empty((n, width), dtype=vdt)
        out_cnt = np.zeros(n, dtype=idt)
        if n == 0 or width == 0:
            return out_idx, out_sc, out_cnt
        nt = min(n_threads, n) if _topk.openmp_enabled() else 1
        check_dense_columns(
            self.n_users, "user_tags_or_index", what="users", threads=nt, width=width, value_dtype=vdt,
            index_dtype=idt, shared_per_column=_AUDIENCE_BYTES_PER_USER,
        )  # fmt: skip
        if self._ws is None or self._ws[0].shape[0] < nt:
            self._ws = None
            self._ws = _workspace(nt, self.n_users, vdt, idt)
            self._ones = np.ones(self.n_users, vdt)
        cap = _buffer_cap(width)
        ws = self._ws + (np.empty((nt, cap), dtype=vdt), np.empty((nt, cap), dtype=idt))
        side = self.side
        empty = np.zeros(0, idt)
        done = 0
        for blk in self._blocks(rows, nt):
            a = _sub(self.rows, blk, idt)
            f = None if self.follows is None else _sub(self.follows, blk, idt)
            if self.opted is None and self.exclude is None:
                e_ptr, e_idx = empty, empty
            else:
                e_ptr, e_idx = self._exclusions(blk)
            nb = blk.shape[0]
            _topk.fused_topk(
                a.indptr, a.indices, a.data,
                side.indptr, side.indices, side.data, self._ones,
                empty if f is None else f.indptr,
                empty if f is None else f.indices,
                np.zeros(0, vdt) if f is None else f.data,
                vdt.type(self.follow_weight),
                e_ptr, e_idx,
                vdt.type(-np.inf), _scan_min(self.n_users), 0, nb,
                out_idx[done : done + nb], out_sc[done : done + nb], out_cnt[done : done + nb],
                *ws, nt,
            )  # fmt: skip
            done += nb
        return out_idx, out_sc, out_cnt


def _drop_rows(m: CSRParts, dead: np.ndarray) -> CSRParts:
    """``m`` with the entries of the rows marked ``dead`` removed (shape unchanged)."""
    cnt = np.diff(m.indptr).astype(np.int64)
    keep = np.repeat(~dead, cnt)
    ptr = np.zeros(cnt.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.where(dead, 0, cnt), out=ptr[1:])
    return CSRParts(ptr.astype(m.indptr.dtype), m.indices[keep], m.data[keep], m.shape)


def _sub(m: CSRParts, rows: np.ndarray, idt: np.dtype) -> CSRParts:
    """Rows ``rows`` of ``m`` (CSR parts) as new contiguous CSR parts."""
    lo = m.indptr[rows].astype(np.int64)
    cnt = (m.indptr[rows + 1] - m.indptr[rows]).astype(np.int64)
    ptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(cnt, out=ptr[1:])
    total = int(ptr[-1])
    src = np.repeat(lo - ptr[:-1], cnt) + np.arange(total)
    return CSRParts(ptr.astype(idt), m.indices[src], m.data[src], (rows.shape[0], m.shape[1]))


class _Candidates:
    """Each row's latest kernel result, in final order (score desc, user asc).

    The kernel ranks by the unweighted sum ``s``; the score is ``p = s * w`` (one rounding), a
    non-decreasing function of ``s``, so the kernel's top-W holds every user whose score beats
    the W-th's.  Only a prefix of a truncated row (one that filled its width: more candidates
    may exist) is known to be exact: the users scoring above the last fetched score ``p_last``,
    plus those tying it with a user id up to the last fetched one's when no smaller sum rounds
    to ``p_last`` too (then every unfetched user tying ``p_last`` has a larger id).
    """

    def __init__(self, n_rows: int, *, flat: bool = False) -> None:
        # flat: append every result to one growing buffer (the capped merge reads it often);
        # otherwise keep the kernel's 2-D results as they are
        self.flat_mode = flat
        self.buf_user: Optional[np.ndarray] = None
        self.buf_score: Optional[np.ndarray] = None
        self.buf_n = 0
        self.start = np.zeros(n_rows, dtype=np.int64)
        self.blocks: list[Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
        self.block = np.full(n_rows, -1, dtype=np.int64)  # latest block of each row
        self.slot = np.zeros(n_rows, dtype=np.int64)  # row within that block
        self.count = np.zeros(n_rows, dtype=np.int64)
        self.exact = np.zeros(n_rows, dtype=np.int64)
        self.truncated = np.zeros(n_rows, dtype=bool)
        self.fetched = np.zeros(n_rows, dtype=np.int64)

    def add(
        self, rows: np.ndarray, idx: np.ndarray, s: np.ndarray, cnt: np.ndarray, w: np.ndarray, width: int, n_users: int
    ) -> None:
        """Record a kernel result (top-``width`` by sum) for ``rows``, weighting it by ``w``.

        ``s`` becomes the weighted scores in place (padding: ``-inf * w = -inf``).
        """
        cnt = cnt.astype(np.int64)
        n = rows.shape[0]
        truncated = (cnt == width) & (width < n_users)
        exact = cnt.copy()
        step = max(1, _CHUNK // max(width, 1))
        for r0 in range(0, n, step):  # row chunks: temporaries stay small
            r1 = min(r0 + step, n)
            self._weigh(s[r0:r1], idx[r0:r1], cnt[r0:r1], w[r0:r1], truncated[r0:r1], exact[r0:r1], width)
        self.count[rows] = cnt
        self.exact[rows] = exact
        self.truncated[rows] = truncated
        self.fetched[rows] = width
        if self.flat_mode:
            self._append(rows, idx, s)
            return
        b = len(self.blocks)
        self.blocks.append((rows, idx, s))
        self.block[rows] = b
        self.slot[rows] = np.arange(n)
        # forget blocks whose rows were all fetched again
        live = set(np.unique(self.block[self.block >= 0]).tolist())
        for j in range(b):
            if j not in live and self.blocks[j] is not None:
                self.blocks[j] = None

    @staticmethod
    def _weigh(ss, uu, c, ww, tr, exact, width) -> None:
        """Weigh one chunk of rows in place; fill ``exact`` for its truncated rows; order ties."""
        rr = np.arange(ss.shape[0])
        last = np.maximum(c - 1, 0)
        s_last, u_last = ss[rr, last], uu[rr, last]
        valid = np.arange(width)[None, :] < c[:, None]
        with np.errstate(invalid="ignore"):  # -inf padding times weight 0
            ss *= ww[:, None]
        ss[~valid] = -np.inf
        if tr.any():
            p_last = ss[rr, last]
            # when no smaller sum rounds to p_last, unfetched users tying it have larger ids
            with np.errstate(invalid="ignore"):
                sure = np.nextafter(s_last, s_last.dtype.type(-np.inf)) * ww < p_last
            ok = (ss > p_last[:, None]) | ((ss == p_last[:, None]) & (uu <= u_last[:, None]) & sure[:, None])
            ok &= valid
            exact[:] = np.where(tr, ok.sum(axis=1), c)
        if width > 1:
            _order_ties(ss, uu, valid)

    def single(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(user, score) of the one block holding every row in order, if that is the case."""
        live = [blk for blk in self.blocks if blk is not None]
        if len(live) != 1:
            return None
        rows, user, p = live[0]
        if rows.shape[0] != self.block.shape[0] or not np.array_equal(self.slot, np.arange(rows.shape[0])):
            return None
        return user, p

    def _append(self, rows: np.ndarray, idx: np.ndarray, s: np.ndarray) -> None:
        """Copy a result's rows into the buffer (capacity doubles: amortised O(1) per entry)."""
        size = idx.size
        if self.buf_user is None or self.buf_n + size > self.buf_user.shape[0]:
            cap = max(2 * (self.buf_n + size), 1 << 16)
            nu, ns = np.empty(cap, dtype=idx.dtype), np.empty(cap, dtype=s.dtype)
            if self.buf_user is not None:
                nu[: self.buf_n] = self.buf_user[: self.buf_n]
                ns[: self.buf_n] = self.buf_score[: self.buf_n]
            self.buf_user, self.buf_score = nu, ns
        self.buf_user[self.buf_n : self.buf_n + size] = idx.reshape(-1)
        self.buf_score[self.buf_n : self.buf_n + size] = s.reshape(-1)
        self.start[rows] = self.buf_n + np.arange(rows.shape[0]) * idx.shape[1]
        self.buf_n += size

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start per row, user, score) over the buffer (``flat`` mode)."""
        if self.buf_user is None:
            return self.start, np.zeros(0, np.int64), np.zeros(0)
        return self.start, self.buf_user[: self.buf_n], self.buf_score[: self.buf_n]


def _order_ties(p: np.ndarray, user: np.ndarray, valid: np.ndarray) -> None:
    """Within each row (scores non-increasing), put equal scores in ascending user order."""
    eq = (p[:, 1:] == p[:, :-1]) & valid[:, 1:]
    bad = eq & (user[:, 1:] < user[:, :-1])
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    eq, bad = eq[rows], bad[rows]
    n, width = rows.size, p.shape[1]
    starts = np.ones((n, width), dtype=bool)
    starts[:, 1:] = ~eq
    run = np.cumsum(starts.ravel()) - 1  # run id of every entry (runs never span rows)
    flag = np.zeros(int(run[-1]) + 1, dtype=bool)
    flag[run.reshape(n, width)[:, 1:][bad]] = True
    sel = np.flatnonzero(flag[run])
    u = user[rows].reshape(-1)
    order = np.lexsort((u[sel], run[sel]))
    u[sel] = u[sel][order]
    user[rows] = u.reshape(n, width)


def _solve(prob: _Problem, k: int, cap: Optional[int], n_threads: int) -> TopK:
    n_q = prob.rows.shape[0]
    n_u = prob.n_users
    vdt = prob.vdt
    width = min(k, n_u)
    odt = index_dtype_for(n_u)
    active = np.flatnonzero(prob.weight > 0)
    n_opt = 0 if prob.opted is None else prob.opted.shape[0]
    if width == 0 or active.size == 0 or n_opt >= n_u:
        return TopK(
            np.full((n_q, width), -1, dtype=odt), np.full((n_q, width), -np.inf, dtype=vdt), np.zeros(n_q, odt), n_u
        )
    if cap is not None and cap >= active.size:
        cap = None  # a user can never be in more lists than there are
    if cap is not None and cap > INT32_MAX:
        # (the kernel counts each user's lists in int32; only a query with more than 2**31 lists
        # can get here)
        raise ValueError(f"max_per_user: at most {INT32_MAX} supported, got {cap}")
    cand = _Candidates(n_q, flat=cap is not None)
    base = min(width + _MARGIN, n_u)
    # first fetch: every row (rows of weight 0 hold no entries and come back empty)
    _fetch_into(prob, cand, np.arange(n_q), np.full(n_q, base, dtype=np.int64), base, n_threads)
    if cap is None:
        while True:
            todo = active[cand.truncated[active] & (cand.exact[active] < width)]
            if todo.size == 0:
                return _result_plain(cand, width, odt, vdt, n_u)
            _fetch_into(prob, cand, todo, 2 * cand.fetched[todo], base, n_threads)
    return _capped(prob, cand, active, width, cap, base, odt, n_threads)


def _fetch_into(prob: _Problem, cand: _Candidates, rows: np.ndarray, want: np.ndarray, base: int, n_threads: int):
    """Fetch ``rows`` again at widths of at least ``want`` (rounded up to ``base * 2**j``)."""
    n_u = prob.n_users
    steps = np.ceil(np.log2(np.maximum(want, base) / base)).astype(np.int64)
    widths = np.minimum(base * (2**steps), n_u)
    for fw in np.unique(widths):
        sel = rows[widths == fw]
        idx, s, cnt = prob.fetch(sel, int(fw), n_threads)
        cand.add(sel, idx, s, cnt, prob.weight[sel], int(fw), n_u)
        del idx, s, cnt


def _capped(prob: _Problem, cand: _Candidates, active, width: int, cap: int, base: int, odt, n_threads: int) -> TopK:
    """The global greedy under the per-user cap, fetching deeper lists whenever a row runs dry.

    The merge (``_audience.greedy_cap``) stops at the first row that runs out of known
    candidates while short; that row and the rows about to run out too are fetched deeper and
    the merge resumes where it stopped, so every decision is the exact greedy's.
    """
    n_q, n_u, vdt = cand.block.shape[0], prob.n_users, prob.vdt
    used = np.zeros(n_u, dtype=np.int32)
    taken = np.zeros(n_q, dtype=np.int64)
    cursor = np.zeros(n_q, dtype=np.int64)
    total = n_q * width
    log_row = np.empty(total, dtype=np.int64)
    log_user = np.empty(total, dtype=np.int64)
    log_score = np.empty(total, dtype=vdt)
    log_n = np.zeros(1, dtype=np.int64)
    heap_key = np.empty(n_q, dtype=np.float64)
    heap_row = np.empty(n_q, dtype=np.int64)
    while True:
        start, user, score = cand.flat()
        length = np.ascontiguousarray(cand.exact)
        stop = _audience.greedy_cap(
            start, length, user, score, cand.truncated.view(np.uint8), width, cap, used, taken, cursor,
            log_row, log_user, log_score, log_n, heap_key, heap_row,
        )  # fmt: skip
        del start, user, score
        if stop < 0:
            break
        # the stopped row and every row likely to run dry before filling up: fetch deeper,
        # sized by the share of its candidates accepted so far
        short = cand.truncated & (taken < width)
        short[stop] = True
        # (rows barely visited yet: no evidence, assume every candidate will be taken)
        rate = np.where(cursor >= 32, np.maximum(taken / np.maximum(cursor, 1), 0.02), 1.0)
        need = width - taken
        risky = short & ((cand.exact - cursor) * rate < need)
        risky[stop] = True
        rows = np.flatnonzero(risky)
        want = np.maximum(2 * cand.fetched[rows], cursor[rows] + np.ceil(need[rows] / rate[rows]).astype(np.int64))
        _fetch_into(prob, cand, rows, want, base, n_threads)
        # a deeper list shares its first cursor[r] entries with the old one (both exact prefixes);
        # should the new exact prefix be shorter (ties at its boundary), fetch deeper still
        while True:
            thin = rows[(cand.exact[rows] < cursor[rows]) & cand.truncated[rows]]
            if thin.size == 0:
                break
            _fetch_into(prob, cand, thin, 2 * cand.fetched[thin], base, n_threads)
    n = int(log_n[0])
    order = np.argsort(log_row[:n], kind="stable")
    rows, users, scores = log_row[:n][order], log_user[:n][order], log_score[:n][order]
    got = np.bincount(rows, minlength=n_q)
    pos = np.arange(n) - np.repeat(np.cumsum(got) - got, got)
    out_idx = np.full((n_q, width), -1, dtype=odt)
    out_sc = np.full((n_q, width), -np.inf, dtype=vdt)
    out_idx[rows, pos] = users
    out_sc[rows, pos] = scores
    return TopK(out_idx, out_sc, got.astype(odt), n_u)


def _result_plain(cand: _Candidates, width: int, odt: np.dtype, vdt: np.dtype, n_users: int) -> TopK:
    """The first ``width`` candidates of every row (each row's fetch covers them exactly)."""
    n_q = cand.block.shape[0]
    counts = np.minimum(cand.count, width).astype(odt)
    one = cand.single()
    if one is not None and one[0].dtype == odt:
        # the usual case: compact the kernel's (n, W) result into (n, width) in place
        user, p = one
        big = user.shape[1]
        fu, fp = user.reshape(-1), p.reshape(-1)
        if big != width:
            # row chunks move down to their final place; a chunk's target ends before the next
            # chunk's source begins, and numpy buffers the overlap within a chunk
            step = max(1, _CHUNK // width)
            for r0 in range(1, n_q, step):
                r1 = min(r0 + step, n_q)
                fu[r0 * width : r1 * width] = user[r0:r1, :width].reshape(-1)
                fp[r0 * width : r1 * width] = p[r0:r1, :width].reshape(-1)
        # (the kernel pads each row beyond its count with -1 / -inf; entries past width are cut)
        out_idx = fu[: n_q * width].reshape(n_q, width)
        out_sc = fp[: n_q * width].reshape(n_q, width)
        return TopK(out_idx, out_sc, counts, n_users)
    out_idx = np.full((n_q, width), -1, dtype=odt)
    out_sc = np.full((n_q, width), -np.inf, dtype=vdt)
    for b, blk in enumerate(cand.blocks):
        if blk is None:
            continue
        rows, user, p = blk
        mine = np.flatnonzero(cand.block[rows] == b)  # slots of the rows whose latest fetch this is
        current = rows[mine]
        step = max(1, _CHUNK // max(width, 1))
        cols = np.arange(width)
        for c0 in range(0, mine.size, step):
            sl, rr = mine[c0 : c0 + step], current[c0 : c0 + step]
            valid = cols[None, :] < counts[rr][:, None]
            out_idx[rr] = np.where(valid, user[sl, :width], -1)
            out_sc[rr] = np.where(valid, p[sl, :width], -np.inf)
    return TopK(out_idx, out_sc, counts, n_users)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

_BT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BT_LOCK = threading.Lock()


def _merchant_rows(ranker: Ranker) -> sp.csr_array:
    """B transposed (merchants x tags, canonical CSR), cached per Ranker."""
    bt = _BT_CACHE.get(ranker)
    if bt is None:
        with _BT_LOCK:
            bt = _BT_CACHE.get(ranker)
            if bt is None:
                b = ranker._b
                bt = sp.csr_array((b.data, b.indices, b.indptr), shape=b.shape).T.tocsr()
                bt.sort_indices()
                _BT_CACHE[ranker] = bt
    return bt


def _index_dtype(*parts: Any) -> np.dtype:
    return index_dtype_for_sizes(*(max(p.nnz, *p.shape) for p in parts if p is not None))


def audience(
    ranker: Ranker,
    user_tags_or_index: ArrayLike,
    merchant_ids: ArrayLike,
    k: int,
    *,
    exclude_followers: bool = False,
    follows: Optional[ArrayLike] = None,
    opted_out: Optional[ArrayLike] = None,
    max_per_user: Optional[int] = None,
    n_threads: Optional[int] = None,
) -> TopK:
    """Top-k users for each given merchant (the implementation of :meth:`Ranker.audience`).

    Parameters
    ----------
    ranker : Ranker
        The merchant side: tags, weights ``w`` and ``follow_weight``.
    user_tags_or_index : AudienceIndex or sparse matrix, shape (n_users, n_tags)
        The users, prepared (:class:`AudienceIndex`, reused across queries) or as A.
    merchant_ids : array_like of int
        Distinct merchant ids; row ``i`` of the result belongs to ``merchant_ids[i]``.
    k : int
        Users per merchant (>= 1).
    exclude_followers : bool, default False
        Leave out every user with a non-zero ``follows[u, m]`` (acquisition campaigns);
        needs ``follows``.
    follows : sparse matrix, shape (n_users, n_merchants), optional
        Follow / repeat-purchase strengths F.  Without ``exclude_followers`` they add
        ``follow_weight * F[u, m]`` to the score, as in :meth:`Ranker.topk`.
    opted_out : array_like, optional
        Users never to target: a bool mask over users or an array of user ids.
    max_per_user : int, optional
        A user appears in at most this many of the lists (see Notes).
    n_threads : int, optional
        Threads (default: every core the process may use).

    Returns
    -------
    TopK
        Rows = merchants, indices = user ids (``n_cols = n_users``), scores as
        :meth:`Ranker.topk` computes them for the same pair; ``width = min(k, n_users)``.

    Notes
    -----
    A user is a candidate for merchant m when a tag of m is among the user's tags (or, without
    ``exclude_followers``, the user follows m), the user is not opted out, and ``w[m] > 0``
    (merchants with weight 0 -- banned, below ``min_trust`` -- get an empty list).  Scores of
    exactly 0 or below are kept, as in :meth:`Ranker.topk`.  Each row is sorted by descending
    score, ties by ascending user id.

    ``max_per_user`` is resolved greedily in one global order -- descending score, ties by the
    merchant's position in ``merchant_ids``, then by user id: an entry is taken when its list
    holds fewer than k users and its user is in fewer than ``max_per_user`` lists.  A user
    dropped from a list is thus replaced by that list's next best; lists are only short when
    no eligible user is left for them.
    """
    from ecomcore.ranking import Ranker

    if not isinstance(ranker, Ranker):
        raise TypeError(f"ranker: expected a Ranker, got {type(ranker).__name__}")
    k = check_int(k, "k")
    exclude_followers = _check_bool(exclude_followers, "exclude_followers")
    cap = _check_cap(max_per_user)
    n_threads = resolve_threads(n_threads)
    index = _as_index(user_tags_or_index)
    if index.n_tags != ranker.n_tags:
        raise ValueError(
            f"user_tags_or_index: has {index.n_tags} tags but the Ranker's merchant_tags has {ranker.n_tags}"
        )
    n_u, n_m = index.n_users, ranker.n_merchants
    mids = _merchant_ids(merchant_ids, n_m)
    if exclude_followers and follows is None:
        raise ValueError("exclude_followers: needs follows (the users x merchants follow matrix)")
    opted = None if opted_out is None else _user_ids(opted_out, n_u, "opted_out")
    vdt = np.dtype(np.float32) if (ranker.dtype == np.float32 and index.dtype == np.float32) else np.dtype(np.float64)
    f_rows = e_rows = None
    if follows is not None:
        f = as_csr(follows, "follows", value_dtype=vdt, shape=(n_u, n_m))
        fm = sp.csr_array((f.data, f.indices, f.indptr), shape=f.shape)[:, mids].T.tocsr()
        fm.sort_indices()
        fm = sp.csr_array(fm)
        if exclude_followers:
            e_rows = fm
        else:
            f_rows = fm
    bt = _merchant_rows(ranker)
    idt = _index_dtype(index._at, bt, f_rows, e_rows)
    rows = _take_rows(bt, mids, idt, vdt)
    f_parts = None if f_rows is None else _take_rows(f_rows, np.arange(mids.size), idt, vdt)
    e_parts = None if e_rows is None else _take_rows(e_rows, np.arange(mids.size), idt, vdt)
    weight = ranker._side(vdt, idt).weight[mids]
    prob = _Problem(
        index._side(vdt, idt), n_u, rows, np.ascontiguousarray(weight, dtype=vdt), f_parts,
        ranker.follow_weight, e_parts, opted, vdt, idt,
    )  # fmt: skip
    return _solve(prob, k, cap, n_threads)


def audience_for_items(
    user_tags_or_index: ArrayLike,
    item_tags: ArrayLike,
    k: int,
    *,
    weight: Optional[ArrayLike] = None,
    exclude: Optional[ArrayLike] = None,
    opted_out: Optional[ArrayLike] = None,
    max_per_user: Optional[int] = None,
    n_threads: Optional[int] = None,
) -> TopK:
    """Top-k users for new items given directly by their tag vectors.

    For a product not yet in any matrix (a launch): each item row is scored against every
    user as a merchant row would be, ``score(i, u) = (sum_t item_tags[i, t] * A[u, t]) *
    weight[i]``.

    Parameters
    ----------
    user_tags_or_index : AudienceIndex or sparse matrix, shape (n_users, n_tags)
        The users, prepared or as A.
    item_tags : sparse matrix or array, shape (n_items, n_tags) or (n_tags,)
        The items' tag weights; a 1-D array is one item.
    k : int
        Users per item (>= 1).
    weight : array_like, shape (n_items,), optional
        Non-negative finite multiplier per item (e.g. the seller's ``Ranker.merchant_weight``);
        default 1.  Weight 0 gives an empty list.
    exclude : sparse matrix, shape (n_items, n_users), optional
        Any stored entry removes that user from that item's list (e.g. the seller's followers,
        past buyers).
    opted_out : array_like, optional
        Users never to target: a bool mask over users or an array of user ids.
    max_per_user : int, optional
        A user appears in at most this many of the items' lists, resolved greedily by score
        (ties by item row, then user id), as in :meth:`ecomcore.Ranker.audience`.
    n_threads : int, optional
        Threads (default: every core the process may use).

    Returns
    -------
    TopK
        One row per item; indices are user ids, ``n_cols = n_users``.

    Notes
    -----
    Scores are float32 when both the index and ``item_tags`` are float32, else float64.
    Users sharing no tag with an item are never candidates; scores of 0 or below are kept.
    """
    k = check_int(k, "k")
    cap = _check_cap(max_per_user)
    n_threads = resolve_threads(n_threads)
    index = _as_index(user_tags_or_index)
    n_u, n_t = index.n_users, index.n_tags
    if not sp.issparse(item_tags):
        arr = to_array(item_tags, "item_tags", what="a tag vector or matrix", numeric=True)
        if arr.ndim == 1:
            arr = arr[None, :]
        item_tags = arr
    vdt = (
        np.dtype(np.float32)
        if (index.dtype == np.float32 and value_dtype_of(item_tags) == np.float32)
        else (np.dtype(np.float64))
    )
    x = as_csr(item_tags, "item_tags", value_dtype=vdt, shape=(None, n_t))
    n_i = x.shape[0]
    w = np.ones(n_i) if weight is None else as_vector(weight, "weight", n_i, minimum=0.0)
    with np.errstate(over="ignore"):
        wv = np.ascontiguousarray(w, dtype=vdt)
    if not np.isfinite(wv).all():
        raise ValueError(f"weight: overflows {vdt}")
    e = None if exclude is None else as_csr(exclude, "exclude", value_dtype=vdt, structural=True, shape=(n_i, n_u))
    opted = None if opted_out is None else _user_ids(opted_out, n_u, "opted_out")
    idt = _index_dtype(index._at, x, e)
    rows = x.astype(idt, vdt)
    e = None if e is None else e.astype(idt, vdt)
    prob = _Problem(index._side(vdt, idt), n_u, rows, wv, None, 0.0, e, opted, vdt, idt, "item_tags")
    return _solve(prob, k, cap, n_threads)
