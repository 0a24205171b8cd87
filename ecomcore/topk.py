"""The :class:`TopK` result container and exact merging/stacking of partial results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import scipy.sparse as sp

__all__ = ["TopK", "merge_topk", "concat_topk"]


def index_dtype_for(n_cols: int) -> np.dtype:
    """int32 for merchant ids below 2**31, int64 beyond."""
    return np.dtype(np.int64 if n_cols > np.iinfo(np.int32).max else np.int32)


class TopK:
    """Top-k merchants per user.

    Attributes
    ----------
    indices : ndarray, shape (n_rows, width)
        Merchant ids, best first; ``-1`` pads rows with fewer than ``width`` candidates.
        int32, or int64 when ``n_cols >= 2**31``.
    scores : ndarray, shape (n_rows, width)
        Scores matching ``indices`` (float32 or float64); ``-inf`` pads.
    counts : ndarray, shape (n_rows,)
        Number of valid entries in each row.
    n_cols : int
        Number of merchants (columns of the full score matrix).

    Notes
    -----
    Each row is sorted by descending score, ties by ascending merchant id.
    """

    __slots__ = ("indices", "scores", "counts", "n_cols")

    def __init__(self, indices: np.ndarray, scores: np.ndarray, counts: np.ndarray, n_cols: int):
        indices = np.asarray(indices)
        scores = np.asarray(scores)
        counts = np.asarray(counts)
        if indices.ndim != 2 or scores.shape != indices.shape:
            raise ValueError(
                f"indices/scores: expected two 2-D arrays of one shape, got {indices.shape} "
                f"and {scores.shape}"
            )
        if counts.shape != (indices.shape[0],):
            raise ValueError(f"counts: expected shape ({indices.shape[0]},), got {counts.shape}")
        self.indices = indices
        self.scores = scores
        self.counts = counts
        self.n_cols = int(n_cols)

    @property
    def n_rows(self) -> int:
        """Number of users (rows)."""
        return int(self.indices.shape[0])

    @property
    def width(self) -> int:
        """Entries per row, ``min(k, n_cols)``."""
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return (
            f"TopK(n_rows={self.n_rows}, width={self.width}, n_cols={self.n_cols}, "
            f"dtype={self.scores.dtype})"
        )

    def valid_mask(self) -> np.ndarray:
        """Boolean mask (n_rows, width) of the entries that are not padding."""
        return np.arange(self.width)[None, :] < self.counts[:, None]

    def to_csr(self) -> sp.csr_array:
        """Return the kept scores as a scipy CSR array of shape ``(n_rows, n_cols)``.

        Returns
        -------
        scipy.sparse.csr_array
            Row ``u`` holds the kept merchants of user ``u`` with their scores (column indices
            sorted ascending; an exact score of 0 is stored explicitly).
        """
        mask = self.valid_mask()
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(self.counts, out=indptr[1:])
        cols = self.indices[mask]
        vals = self.scores[mask]
        out = sp.csr_array((vals, cols, indptr), shape=(self.n_rows, self.n_cols))
        out.sort_indices()
        return out


def _check_parts(parts: Sequence[TopK], name: str) -> list[TopK]:
    if isinstance(parts, TopK):
        raise TypeError(f"{name}: expected a sequence of TopK, got a single TopK")
    parts = list(parts)
    if not parts:
        raise ValueError(f"{name}: needs at least one TopK")
    for i, p in enumerate(parts):
        if not isinstance(p, TopK):
            raise TypeError(f"{name}[{i}]: expected TopK, got {type(p).__name__}")
    return parts


def merge_topk(parts: Sequence[TopK], k: int, *, n_cols: Optional[int] = None) -> TopK:
    """Merge top-k results computed for the same users on disjoint merchant shards.

    Parameters
    ----------
    parts : sequence of TopK
        One result per merchant shard, same rows, indices already global.
    k : int
        Entries to keep per user.
    n_cols : int, optional
        Total number of merchants.  Default: the largest ``n_cols`` of the parts, which must
        then exceed every index (pass it when each part only knows its own shard's size).

    Returns
    -------
    TopK
        Exactly the top-k of the union, in the usual order (descending score, ascending id).

    Raises
    ------
    ValueError
        If the parts disagree on rows or dtype, overlap on a merchant, or a part was cut at a
        width below ``k`` while full (its k-th best might be missing, so no exact merge exists).
    """
    from ecomcore._validation import check_int

    k = check_int(k, "k")
    parts = _check_parts(parts, "parts")
    n_rows = parts[0].n_rows
    dtype = np.result_type(*[p.scores.dtype for p in parts])
    for i, p in enumerate(parts):
        if p.n_rows != n_rows:
            raise ValueError(f"parts[{i}]: has {p.n_rows} rows, expected {n_rows}")
        if p.width < k and np.any(p.counts >= p.width) and p.width < p.n_cols:
            raise ValueError(
                f"parts[{i}]: width {p.width} is below k={k} and some rows are full, "
                "so the merged top-k cannot be exact; compute the parts with k or more"
            )
    max_index = max((int(p.indices.max()) if p.indices.size else -1) for p in parts)
    if n_cols is None:
        n_cols = max(p.n_cols for p in parts)
        if max_index >= n_cols:
            raise ValueError(
                f"n_cols: merchant id {max_index} exceeds the parts' n_cols ({n_cols}); "
                "pass n_cols= the total number of merchants"
            )
    else:
        n_cols = check_int(n_cols, "n_cols")
        if max_index >= n_cols:
            raise ValueError(f"n_cols: merchant id {max_index} is not below n_cols={n_cols}")
    width = min(k, n_cols)
    idx = np.concatenate([p.indices.astype(np.int64, copy=False) for p in parts], axis=1)
    sc = np.concatenate([p.scores.astype(dtype, copy=False) for p in parts], axis=1)
    valid = np.concatenate([p.valid_mask() for p in parts], axis=1)
    total = idx.shape[1]
    if n_rows and total:
        # Disjointness: a merchant may appear in only one part for a given user.
        key = np.where(valid, idx, -1 - np.arange(total)[None, :])
        srt = np.sort(key, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            r = int(np.nonzero(dup.any(axis=1))[0][0])
            raise ValueError(f"parts: merchant shards overlap (row {r} holds a merchant twice)")
    # Sort each row: valid first, then descending score, then ascending index.
    big = np.iinfo(np.int64).max
    idx_key = np.where(valid, idx, big)
    sc_key = np.where(valid, -sc.astype(np.float64), np.inf)
    order = np.lexsort((idx_key, sc_key), axis=-1) if total else np.zeros((n_rows, 0), np.intp)
    order = order[:, :width]
    out_idx = np.take_along_axis(idx, order, axis=1)
    out_sc = np.take_along_axis(sc, order, axis=1)
    out_valid = np.take_along_axis(valid, order, axis=1)
    if out_idx.shape[1] < width:
        pad = width - out_idx.shape[1]
        out_idx = np.pad(out_idx, ((0, 0), (0, pad)), constant_values=-1)
        out_sc = np.pad(out_sc, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_valid = np.pad(out_valid, ((0, 0), (0, pad)), constant_values=False)
    out_idx[~out_valid] = -1
    out_sc[~out_valid] = -np.inf
    counts = out_valid.sum(axis=1).astype(parts[0].counts.dtype)
    return TopK(out_idx.astype(index_dtype_for(n_cols)), out_sc, counts, n_cols)


def concat_topk(blocks: Sequence[TopK]) -> TopK:
    """Stack row blocks (e.g. from ``Ranker.iter_topk``) into one :class:`TopK`.

    Parameters
    ----------
    blocks : sequence of TopK
        Consecutive row blocks over the same merchants.

    Returns
    -------
    TopK
        The rows of all blocks in order; narrower blocks are padded to the widest.
    """
    blocks = _check_parts(blocks, "blocks")
    n_cols = blocks[0].n_cols
    for i, b in enumerate(blocks):
        if b.n_cols != n_cols:
            raise ValueError(f"blocks[{i}]: n_cols is {b.n_cols}, expected {n_cols}")
    width = max(b.width for b in blocks)
    dtype = np.result_type(*[b.scores.dtype for b in blocks])
    idt = index_dtype_for(n_cols)

    def padded(b: TopK) -> tuple[np.ndarray, np.ndarray]:
        pad = width - b.width
        i = b.indices.astype(idt, copy=False)
        s = b.scores.astype(dtype, copy=False)
        if pad:
            i = np.pad(i, ((0, 0), (0, pad)), constant_values=-1)
            s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
        return i, s

    pieces = [padded(b) for b in blocks]
    return TopK(
        np.concatenate([p[0] for p in pieces], axis=0),
        np.concatenate([p[1] for p in pieces], axis=0),
        np.concatenate([b.counts for b in blocks]),
        n_cols,
    )
