"""Scale-out on a Dask cluster: batch ranking and state folding, identical to one machine.

Install with ``pip install 'ecomcore[dask]'`` (adds ``dask`` and ``distributed``).  Nothing else
in ecomcore imports Dask; this module is the whole adapter (design §6).

Ranking (:func:`rank_dask`, :func:`rank_dask_to_files`)
    The Ranker's merchant side (B and w) is sent to every worker once, by one broadcast
    ``client.scatter``; each worker rebuilds the :class:`~ecomcore.Ranker` from it once and
    keeps it as long as the scattered data lives.  User rows are cut into partitions; each
    partition runs :meth:`Ranker.topk` (the same kernel, the same per-row code), so every row is
    bit-identical to a single-machine call.  Results come back as TopK blocks in row order, or
    are written to disk one ``.npz`` per partition by the workers (nothing gathered on the
    client).

Folding (:func:`fold_dask`)
    Each event partition is folded into a partial :class:`~ecomcore.TrustState` (or
    :class:`~ecomcore.InterestState`) on a worker; the partials are merged in a fixed tree
    (``TrustState.merge`` / ``InterestState.merge``) on the workers and only the final state
    comes back.  The sums are added in another order than one fold, so results agree with a
    single-machine fold to float64 rounding (far inside 1e-9 relative), not bit for bit.

What crosses process boundaries
    Only plain NumPy arrays, scalars and ``bytes``: the merchant side as arrays, user blocks as
    CSR arrays, results as ``(indices, scores, counts)``, partial states as their versioned
    ``.npz`` bytes (:meth:`TrustState.save` format).  No ecomcore object is pickled (Dask's own
    transport serialises the arrays and the task functions).

Fault tolerance
    In-memory user blocks and event partitions are embedded in the tasks, and loaders are
    ``dask.delayed`` objects (or futures) with lineage, so a worker that dies mid-job only costs
    a rerun of its partitions: Dask reschedules them elsewhere and the result is unchanged.
    The scattered merchant side is held by every worker; a replacement worker fetches it from
    a surviving one.  (If every worker holding it dies, the job fails with Dask's
    "lost" error: rerun it.)

Sizing
    Memory per worker = merchant side (about ``nnz(B) * (itemsize + index size) + n_merchants
    * 8`` bytes, twice while the Ranker is prepared) + one partition of A (and of F, E) per
    worker thread + its output (``partition_rows * k * (itemsize + 4)``) + per-thread scratch
    ``~ 30 * n_merchants`` bytes.  Tasks default to ``n_threads=1``: run one worker thread per
    core (``threads_per_worker=1, n_workers=cores`` or ``nthreads=cores``) so that cores are not
    oversubscribed.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import tempfile
import threading
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp

try:
    from dask.delayed import Delayed
    from distributed import Client, Future
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "ecomcore.dask needs dask and distributed; install them with pip install 'ecomcore[dask]'"
    ) from exc

from ecomcore._persist import load_npz, save_npz
from ecomcore._validation import CSRParts, as_csr, check_int, check_threshold, resolve_threads, value_dtype_of
from ecomcore.indicators import Indicator
from ecomcore.interest import InterestModel, InterestState
from ecomcore.ranking import Ranker
from ecomcore.topk import TopK, concat_topk, index_dtype_for
from ecomcore.trust import TrustModel, TrustState

__all__ = [
    "ScatteredRanker",
    "fold_dask",
    "load_topk_block",
    "rank_dask",
    "rank_dask_to_files",
    "scatter_ranker",
]

ArrayLike = Any
#: Default number of user rows per partition.
DEFAULT_PARTITION_ROWS = 100_000
_BLOCK_KIND = "ecomcore.TopKBlock"
_BLOCK_VERSION = 1
_TRUST, _INTEREST = "trust", "interest"
# Per-process counters (read on workers by tests and diagnostics): how often each scattered
# merchant side was deserialised into this process and how often a Ranker was built from it.
_STATS_LOCK = threading.Lock()
_PAYLOAD_LOADS: dict[str, int] = {}
_RANKER_BUILDS: dict[str, int] = {}


# ---------------------------------------------------------------------------------------------
# The merchant side as shipped to workers


def _count(table: dict[str, int], token: str) -> None:
    with _STATS_LOCK:
        table[token] = table.get(token, 0) + 1


def _payload_stats(token: str) -> dict[str, int]:
    """This process's counters for one scattered merchant side (``loads``, ``builds``)."""
    with _STATS_LOCK:
        return {"loads": _PAYLOAD_LOADS.get(token, 0), "builds": _RANKER_BUILDS.get(token, 0)}


def _rebuild_payload(token: str, arrays: tuple, shape: tuple, follow_weight: float, dtype: str) -> _MerchantPayload:
    _count(_PAYLOAD_LOADS, token)
    return _MerchantPayload(token, arrays, shape, follow_weight, dtype)


class _MerchantPayload:
    """B (validated CSR arrays), w and the Ranker's scalars; builds the Ranker once per process."""

    __slots__ = ("token", "arrays", "shape", "follow_weight", "dtype", "_ranker", "_lock", "__weakref__")

    def __init__(self, token: str, arrays: tuple, shape: tuple, follow_weight: float, dtype: str) -> None:
        self.token = token
        self.arrays = arrays  # (indptr, indices, data, weight)
        self.shape = (int(shape[0]), int(shape[1]))
        self.follow_weight = float(follow_weight)
        self.dtype = str(dtype)
        self._ranker: Optional[Ranker] = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, ranker: Ranker) -> _MerchantPayload:
        b = ranker._b
        arrays = (b.indptr, b.indices, b.data, np.asarray(ranker.merchant_weight))
        return cls(uuid.uuid4().hex, arrays, b.shape, ranker.follow_weight, str(ranker.dtype))

    def __reduce__(self) -> tuple:
        return (_rebuild_payload, (self.token, self.arrays, self.shape, self.follow_weight, self.dtype))

    @property
    def nbytes(self) -> int:
        """Bytes of the shipped arrays."""
        return int(sum(a.nbytes for a in self.arrays))

    def ranker(self) -> Ranker:
        """The Ranker, built on first use in this process (identical to the client's)."""
        r = self._ranker
        if r is None:
            with self._lock:
                r = self._ranker
                if r is None:
                    indptr, indices, data, weight = self.arrays
                    b = sp.csr_array((data, indices, indptr), shape=self.shape)
                    r = Ranker._from_weight(b, weight, self.follow_weight, np.dtype(self.dtype))
                    _count(_RANKER_BUILDS, self.token)
                    self._ranker = r
        return r


class ScatteredRanker:
    """A Ranker's merchant side held by every worker of a cluster (see :func:`scatter_ranker`).

    Pass it to :func:`rank_dask` / :func:`rank_dask_to_files` instead of the Ranker to reuse one
    broadcast across calls.  Call :meth:`release` (or drop the object) to free the workers'
    copies.

    Attributes
    ----------
    future : distributed.Future
        The scattered data.
    n_tags, n_merchants : int
        Shape of B.
    dtype : numpy.dtype
        The Ranker's value dtype.
    nbytes : int
        Bytes sent to each worker.
    """

    def __init__(self, client: Client, future: Future, payload: _MerchantPayload) -> None:
        self.client = client
        self.future = future
        self.token = payload.token
        self.n_tags, self.n_merchants = payload.shape
        self.dtype = np.dtype(payload.dtype)
        self.nbytes = payload.nbytes
        self._released = False

    def __repr__(self) -> str:
        return (
            f"ScatteredRanker(n_tags={self.n_tags}, n_merchants={self.n_merchants}, dtype={self.dtype}, "
            f"key={self.future.key!r})"
        )

    @property
    def available(self) -> bool:
        """Whether the workers still hold the data (not released, not lost with its workers)."""
        return not self._released and self.future.status == "finished"

    def release(self) -> None:
        """Free the workers' copies (the object cannot be used afterwards)."""
        if not self._released:
            self._released = True
            self.future.release()


def _check_client(client: Any) -> Client:
    if not isinstance(client, Client):
        raise TypeError(f"client: expected a distributed.Client, got {type(client).__name__}")
    if client.asynchronous:
        raise ValueError("client: an asynchronous Client is not supported; use a synchronous one")
    if client.status not in ("running", "connecting", "newly-created"):
        raise ValueError(f"client: not connected (status {client.status!r})")
    return client


def scatter_ranker(client: Client, ranker: Ranker) -> ScatteredRanker:
    """Send a Ranker's merchant side to every worker once (broadcast scatter).

    Parameters
    ----------
    client : distributed.Client
        A connected synchronous client.
    ranker : Ranker
        The prepared ranker.

    Returns
    -------
    ScatteredRanker
        Handle to pass as ``ranker`` to :func:`rank_dask`; workers that join later fetch the
        data from a worker that holds it when they first need it.
    """
    client = _check_client(client)
    if not isinstance(ranker, Ranker):
        raise TypeError(f"ranker: expected an ecomcore.Ranker, got {type(ranker).__name__}")
    payload = _MerchantPayload.of(ranker)
    future = client.scatter(payload, broadcast=True, hash=False)
    return ScatteredRanker(client, future, payload)


# ---------------------------------------------------------------------------------------------
# Ranking


def _parts_tuple(c: CSRParts) -> tuple:
    return (c.indptr, c.indices, c.data, c.shape)


def _slice_rows(c: CSRParts, r0: int, r1: int) -> tuple:
    """Rows ``r0:r1`` of validated CSR arrays as a parts tuple (views, no copy)."""
    lo, hi = int(c.indptr[r0]), int(c.indptr[r1])
    indptr = c.indptr[r0 : r1 + 1]
    if lo:
        indptr = indptr - indptr.dtype.type(lo)
    return (indptr, c.indices[lo:hi], c.data[lo:hi], (r1 - r0, c.shape[1]))


def _materialize(x: Any) -> Any:
    """A parts tuple (in-memory block) to a csr_array; anything a loader returned as is."""
    if isinstance(x, tuple) and len(x) == 4 and isinstance(x[3], tuple):
        indptr, indices, data, shape = x
        return sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    return x


def _reraise(exc: Exception, where: str) -> None:
    cls = ValueError if isinstance(exc, ValueError) else TypeError
    raise cls(f"{where}: {exc}") from None


def _rank_block(
    payload: _MerchantPayload,
    part: int,
    a: Any,
    f: Any,
    e: Any,
    k: int,
    threshold: Optional[float],
    n_threads: Optional[int],
    out_path: Optional[str],
) -> Any:
    """Worker task: top-k of one partition; returns (indices, scores, counts) or the file's row count."""
    ranker = payload.ranker()
    try:
        top = ranker.topk(
            _materialize(a),
            k,
            follows=_materialize(f),
            exclude=_materialize(e),
            threshold=threshold,
            n_threads=n_threads,
        )
    except (ValueError, TypeError) as exc:
        _reraise(exc, f"partition {part}")
    if out_path is None:
        return (top.indices, top.scores, top.counts)
    _save_block(out_path, top, part)
    return top.n_rows


def _save_block(path: str, top: TopK, part: int) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    save_npz(
        path,
        _BLOCK_KIND,
        _BLOCK_VERSION,
        {"indices": top.indices, "scores": top.scores, "counts": top.counts},
        {"n_cols": top.n_cols, "partition": part, "n_rows": top.n_rows},
    )


def load_topk_block(path: Union[str, os.PathLike[str]]) -> TopK:
    """Read one block written by :func:`rank_dask_to_files`.

    Parameters
    ----------
    path : str or path-like
        The block file.

    Returns
    -------
    TopK
        The partition's rows.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it is corrupt or not a TopK block.
    """
    arrays, meta = load_npz(path, _BLOCK_KIND, _BLOCK_VERSION)
    where = os.fspath(path)
    try:
        idx, sc, cnt = arrays["indices"], arrays["scores"], arrays["counts"]
        n_cols = check_int(meta["n_cols"], "n_cols", minimum=0)
        if idx.ndim != 2 or sc.shape != idx.shape or cnt.shape != (idx.shape[0],):
            raise ValueError("array shapes differ")
        if idx.dtype != index_dtype_for(n_cols) or cnt.dtype != idx.dtype or sc.dtype.kind != "f":
            raise ValueError("array dtypes")
        if cnt.size and (cnt.min() < 0 or cnt.max() > idx.shape[1]):
            raise ValueError("counts out of range")
        valid = np.arange(idx.shape[1])[None, :] < cnt[:, None]
        if idx.size and (((idx < 0) | (idx >= n_cols)) & valid).any():
            raise ValueError("merchant ids out of range")
        return TopK(idx, sc, cnt, n_cols)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: corrupt {_BLOCK_KIND} file ({exc})") from None


def _is_lazy(x: Any) -> bool:
    return isinstance(x, (Delayed, Future))


def _is_block(x: Any) -> bool:
    return sp.issparse(x) or isinstance(x, np.ndarray) or _is_lazy(x)


def _user_vdt(ranker_dtype: np.dtype, x: Any) -> np.dtype:
    """The value dtype Ranker.topk computes in for this user matrix."""
    if ranker_dtype == np.float32 and value_dtype_of(x) == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_partitions_spec(
    user_tags: Any, follows: Any, exclude: Any, partition_rows: int, n_tags: int, n_merchants: int, dtype: np.dtype
) -> list[tuple[Any, Any, Any]]:
    """Validate the user side (as far as the client can) and cut it into (a, f, e) partitions."""
    if isinstance(user_tags, (list, tuple)):
        blocks = list(user_tags)
        if not blocks:
            raise ValueError("user_tags: an empty sequence of blocks")
        seqs = {"follows": follows, "exclude": exclude}
        for name, s in seqs.items():
            if s is None:
                continue
            if not isinstance(s, (list, tuple)):
                raise TypeError(
                    f"{name}: with user_tags given as a sequence of blocks, pass {name} as a sequence of "
                    "blocks too (one per user block, or None)"
                )
            if len(s) != len(blocks):
                raise ValueError(f"{name}: {len(s)} blocks for {len(blocks)} user_tags blocks")
        out = []
        for i, blk in enumerate(blocks):
            row = []
            for name, src in (("user_tags", blocks), ("follows", follows), ("exclude", exclude)):
                x = None if src is None else src[i]
                if x is None:
                    if name == "user_tags":
                        raise TypeError(f"user_tags[{i}]: expected a sparse matrix, array or dask loader, got None")
                    row.append(None)
                    continue
                if not _is_block(x):
                    raise TypeError(
                        f"{name}[{i}]: expected a sparse matrix, a 2-D array, a dask.delayed loader or a "
                        f"distributed Future, got {type(x).__name__}"
                    )
                if _is_lazy(x):
                    row.append(x)
                    continue
                n_rows = None
                if name != "user_tags" and not _is_lazy(blk):
                    n_rows = int(blk.shape[0])
                if name == "user_tags":
                    c = as_csr(x, f"user_tags[{i}]", value_dtype=_user_vdt(dtype, x), shape=(None, n_tags))
                else:
                    vdt = _user_vdt(dtype, blk) if not _is_lazy(blk) else np.dtype(np.float64)
                    c = as_csr(
                        x, f"{name}[{i}]", value_dtype=vdt, structural=name == "exclude", shape=(n_rows, n_merchants)
                    )
                row.append(_parts_tuple(c))
            out.append(tuple(row))
        return out
    if not (sp.issparse(user_tags) or isinstance(user_tags, np.ndarray)):
        raise TypeError(
            "user_tags: expected a sparse matrix, a 2-D array, or a list of blocks (matrices or dask "
            f"loaders), got {type(user_tags).__name__}"
        )
    vdt = _user_vdt(dtype, user_tags)
    a = as_csr(user_tags, "user_tags", value_dtype=vdt, shape=(None, n_tags))
    n_u = a.shape[0]
    f = e = None
    for name, x in (("follows", follows), ("exclude", exclude)):
        if x is None:
            continue
        if not (sp.issparse(x) or isinstance(x, np.ndarray)):
            raise TypeError(f"{name}: expected a sparse matrix or a 2-D array like user_tags, got {type(x).__name__}")
        c = as_csr(x, name, value_dtype=vdt, structural=name == "exclude", shape=(n_u, n_merchants))
        if name == "follows":
            f = c
        else:
            e = c
    bounds = list(range(0, n_u, partition_rows)) + [n_u]
    if n_u == 0:
        bounds = [0, 0]
    return [
        (
            _slice_rows(a, r0, r1),
            None if f is None else _slice_rows(f, r0, r1),
            None if e is None else _slice_rows(e, r0, r1),
        )
        for r0, r1 in zip(bounds[:-1], bounds[1:])
    ]


def _submit_lazy(client: Client, x: Any) -> Any:
    """A Delayed becomes a Future (so Dask keeps its lineage); anything else is passed through."""
    if isinstance(x, Delayed):
        return client.compute(x)
    return x


def _run_rank(
    client: Any,
    user_tags: Any,
    ranker: Any,
    k: Any,
    follows: Any,
    exclude: Any,
    threshold: Any,
    partition_rows: Any,
    n_threads: Any,
    retries: Any,
    out_dir: Optional[Any],
    prefix: str,
) -> list:
    client = _check_client(client)
    k = check_int(k, "k")
    partition_rows = check_int(partition_rows, "partition_rows")
    n_threads = None if n_threads is None else resolve_threads(n_threads)
    retries = check_int(retries, "retries", minimum=0)
    threshold_v = check_threshold(threshold)
    threshold = None if threshold_v == -np.inf else threshold_v
    if isinstance(ranker, Ranker):
        n_tags, n_m, dtype = ranker.n_tags, ranker.n_merchants, ranker.dtype
    elif isinstance(ranker, ScatteredRanker):
        if ranker.client is not client:
            raise ValueError("ranker: scattered with another client")
        if not ranker.available:
            raise ValueError("ranker: the scattered merchant side was released or lost; scatter it again")
        n_tags, n_m, dtype = ranker.n_tags, ranker.n_merchants, ranker.dtype
    else:
        raise TypeError(f"ranker: expected an ecomcore.Ranker or a ScatteredRanker, got {type(ranker).__name__}")
    paths: list[Optional[str]] = []
    parts = _check_partitions_spec(user_tags, follows, exclude, partition_rows, n_tags, n_m, dtype)
    if out_dir is not None:
        if not isinstance(out_dir, (str, os.PathLike)):
            raise TypeError(f"out_dir: expected a path, got {type(out_dir).__name__}")
        if not isinstance(prefix, str) or not prefix or os.sep in prefix or (os.altsep and os.altsep in prefix):
            raise ValueError(f"prefix: expected a non-empty file name prefix, got {prefix!r}")
        out_abs = os.path.abspath(os.fspath(out_dir))
        os.makedirs(out_abs, exist_ok=True)
        paths = [os.path.join(out_abs, f"{prefix}-{i:05d}.npz") for i in range(len(parts))]
    else:
        paths = [None] * len(parts)
    scattered = ranker if isinstance(ranker, ScatteredRanker) else scatter_ranker(client, ranker)
    tag = uuid.uuid4().hex[:12]
    futures: list[Future] = []
    try:
        with warnings.catch_warnings():
            # In-memory blocks travel inside their tasks on purpose: the scheduler can then rerun
            # a partition whose worker died (scattered blocks would be lost with it).
            warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
            warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
            for i, (a, f, e) in enumerate(parts):
                futures.append(
                    client.submit(
                        _rank_block,
                        scattered.future,
                        i,
                        _submit_lazy(client, a),
                        _submit_lazy(client, f),
                        _submit_lazy(client, e),
                        k,
                        threshold,
                        n_threads,
                        paths[i],
                        key=f"ecomcore-rank-{tag}-{i}",
                        pure=False,
                        retries=retries,
                    )
                )
        results = client.gather(futures)
    except BaseException:
        if futures:
            client.cancel(futures)
        raise
    finally:
        if scattered is not ranker:
            scattered.release()
    if out_dir is not None:
        return [str(p) for p in paths]
    n_cols = n_m
    odt = index_dtype_for(n_cols)
    return [TopK(np.asarray(i, dtype=odt), s, np.asarray(c, dtype=odt), n_cols) for i, s, c in results]


def rank_dask(
    client: Client,
    user_tags: Any,
    ranker: Union[Ranker, ScatteredRanker],
    k: int,
    *,
    follows: Optional[Any] = None,
    exclude: Optional[Any] = None,
    threshold: Optional[float] = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    n_threads: Optional[int] = 1,
    retries: int = 0,
    blocks: bool = False,
) -> Union[TopK, list[TopK]]:
    """Top-k merchants for every user, computed on a Dask cluster.

    Identical (bit for bit) to ``ranker.topk(user_tags, k, ...)`` on one machine: every
    partition runs the same kernel on its rows.

    Parameters
    ----------
    client : distributed.Client
        A connected synchronous client.
    user_tags : sparse matrix or 2-D array, or sequence of blocks
        User profiles A (users x tags).  One in-memory matrix is validated on the client and
        cut into partitions of ``partition_rows`` rows.  A list/tuple is taken as consecutive
        row blocks, each a matrix (validated on the client) or a ``dask.delayed`` object /
        ``distributed.Future`` that loads the block on a worker (for data that does not fit the
        client; validated on the worker).  Each block is one partition.
    ranker : Ranker or ScatteredRanker
        The prepared merchant side.  A Ranker is broadcast to the workers for this call and
        released afterwards; a :class:`ScatteredRanker` (from :func:`scatter_ranker`) is reused.
    k : int
        Merchants per user (>= 1).
    follows, exclude : sparse matrix or sequence of blocks, optional
        F and E, given like ``user_tags`` (a matrix with a matrix, a sequence of blocks of the
        same length with a sequence; a block may be None).
    threshold : float, optional
        As :meth:`Ranker.topk`.
    partition_rows : int, default 100000
        Rows per partition when ``user_tags`` is one matrix.
    n_threads : int or None, default 1
        Kernel threads per task; ``None`` uses every core the worker process may run on.  Keep
        1 with one worker thread per core.
    retries : int, default 0
        Extra attempts for a partition whose task raises (e.g. a flaky loader).  Partitions lost
        with a dead worker are rerun by Dask regardless.
    blocks : bool, default False
        Return the list of per-partition TopK blocks (row order) instead of one stacked TopK.

    Returns
    -------
    TopK or list of TopK
        The result, gathered on the client.  For outputs that should not pass through the
        client use :func:`rank_dask_to_files`.

    Raises
    ------
    TypeError, ValueError
        On invalid arguments (in-memory input is checked before any task is submitted; a
        loader's block is checked on its worker and the error names the partition).
    """
    if not isinstance(blocks, (bool, np.bool_)):
        raise TypeError(f"blocks: expected a bool, got {type(blocks).__name__}")
    out = _run_rank(
        client, user_tags, ranker, k, follows, exclude, threshold, partition_rows, n_threads, retries, None, "topk"
    )
    return out if blocks else concat_topk(out)


def rank_dask_to_files(
    client: Client,
    user_tags: Any,
    ranker: Union[Ranker, ScatteredRanker],
    k: int,
    out_dir: Union[str, os.PathLike[str]],
    *,
    follows: Optional[Any] = None,
    exclude: Optional[Any] = None,
    threshold: Optional[float] = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    n_threads: Optional[int] = 1,
    retries: int = 0,
    prefix: str = "topk",
) -> list[str]:
    """Like :func:`rank_dask`, but each worker writes its partition to ``out_dir`` (nothing gathered).

    Each partition ``i`` is written atomically to ``out_dir/{prefix}-{i:05d}.npz`` (versioned,
    pickle-free; read it back with :func:`load_topk_block`).  On a multi-machine cluster
    ``out_dir`` must be a filesystem every worker can write (a shared mount).  A partition that
    is rerun rewrites its own file; when the call fails, files of finished partitions remain.

    Parameters
    ----------
    client, user_tags, ranker, k, follows, exclude, threshold, partition_rows, n_threads, retries
        As :func:`rank_dask`.
    out_dir : str or path-like
        Output directory (created if missing).
    prefix : str, default "topk"
        File name prefix.

    Returns
    -------
    list of str
        Absolute paths of the block files, in row order.
    """
    return _run_rank(
        client, user_tags, ranker, k, follows, exclude, threshold, partition_rows, n_threads, retries, out_dir, prefix
    )


# ---------------------------------------------------------------------------------------------
# Folding


def _state_bytes(state: Union[TrustState, InterestState]) -> bytes:
    """A state's versioned ``.npz`` file as bytes (its save format; no pickle)."""
    fd, path = tempfile.mkstemp(prefix="ecomcore-state-", suffix=".npz")
    os.close(fd)
    try:
        state.save(path)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _state_from_bytes(kind: str, blob: bytes) -> Union[TrustState, InterestState]:
    fd, path = tempfile.mkstemp(prefix="ecomcore-state-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        return TrustState.load(path) if kind == _TRUST else InterestState.load(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _worker_model(spec: tuple) -> Union[TrustModel, InterestModel]:
    if spec[0] == _TRUST:
        _, indicators, n_m, hl, dd = spec
        inds = [Indicator(**fields) for fields in indicators]
        return TrustModel(inds, n_merchants=n_m, half_life_days=hl, dedupe_days=dd)
    _, weights, hl, n_users = spec
    return InterestModel(weights, hl, n_users=n_users)


def _fold_block(spec: tuple, part: int, events: Any, item_tags: Optional[tuple]) -> bytes:
    """Worker task: fold one event partition; return the partial state's bytes."""
    model = _worker_model(spec)
    try:
        if spec[0] == _TRUST:
            state = model.fold(events)
        else:
            state = model.fold(events, _materialize(item_tags))
    except (ValueError, TypeError) as exc:
        _reraise(exc, f"event_partitions[{part}]")
    return _state_bytes(state)


def _merge_blocks(kind: str, *blobs: bytes) -> bytes:
    """Worker task: merge partial states left to right; return the merged state's bytes."""
    state = _state_from_bytes(kind, blobs[0])
    for blob in blobs[1:]:
        state = state.merge(_state_from_bytes(kind, blob))
    return _state_bytes(state)


def fold_dask(
    client: Client,
    model: Union[TrustModel, InterestModel],
    event_partitions: Sequence[Any],
    *,
    item_tags: Optional[ArrayLike] = None,
    split_every: int = 8,
    retries: int = 0,
) -> Union[TrustState, InterestState]:
    """Fold event partitions into one state on a Dask cluster.

    Each partition is folded on a worker into a partial state; partials are merged in a fixed
    tree (groups of ``split_every``, left to right) on the workers, and only the final state is
    sent to the client.  The result equals ``model.fold(all events)`` up to float64 rounding
    (the decayed sums are added in another order; buyer deduplication is exact across
    partitions).  Merge it into an existing state with ``state.merge(result)``.

    Parameters
    ----------
    client : distributed.Client
        A connected synchronous client.
    model : TrustModel or InterestModel
        The model.  An InterestModel must declare ``n_users``.
    event_partitions : sequence
        Non-empty list/tuple of event partitions, each what ``model.fold`` accepts (a dict of
        arrays, a DataFrame, a structured array) or a ``dask.delayed`` object /
        ``distributed.Future`` producing one on a worker.
    item_tags : sparse matrix, shape (n_items, n_tags)
        Required for an InterestModel (broadcast to every worker once); not allowed otherwise.
    split_every : int, default 8
        Partial states merged per merge task (>= 2).
    retries : int, default 0
        Extra attempts for a task that raises.

    Returns
    -------
    TrustState or InterestState
        The folded state.

    Raises
    ------
    TypeError, ValueError
        On invalid arguments; an invalid event names its partition.

    Notes
    -----
    Workers get only what folding needs: the indicators, ``n_merchants``, half-life and
    ``dedupe_days`` of a TrustModel (scoring parameters stay on the client), or the event
    weights, half-life and ``n_users`` of an InterestModel.  Every partial state travels once as
    its ``.npz`` bytes: ``32 * n_merchants * n_indicators`` bytes (plus the dedupe table) for a
    TrustState, about 16 bytes per stored (user, tag) sum for an InterestState.  Folding itself
    runs at tens of millions of events per second per core, so give each partition far more
    events than its state has cells; ``fold_dask`` pays off when the events do not fit one
    machine or already live on the workers, not as a speed-up of a fold that fits.
    """
    client = _check_client(client)
    split_every = check_int(split_every, "split_every", minimum=2)
    retries = check_int(retries, "retries", minimum=0)
    if isinstance(event_partitions, (Mapping, str, bytes, np.ndarray)) or not isinstance(
        event_partitions, (list, tuple)
    ):
        raise TypeError(
            "event_partitions: expected a list or tuple of event partitions (dicts of columns, DataFrames "
            f"or dask loaders), got {type(event_partitions).__name__}"
        )
    parts = list(event_partitions)
    if not parts:
        raise ValueError("event_partitions: needs at least one partition")
    for i, p in enumerate(parts):
        if p is None or isinstance(p, (str, bytes, numbers.Number)):
            raise TypeError(f"event_partitions[{i}]: expected a mapping of columns or a dask loader, got {p!r}")
    scattered_items = None
    if isinstance(model, TrustModel):
        if item_tags is not None:
            raise ValueError("item_tags: only used with an InterestModel")
        kind = _TRUST
        inds = tuple(dataclasses.asdict(ind) for ind in model.indicators)  # plain dicts travel
        spec: tuple = (_TRUST, inds, model.n_merchants, model.half_life_days, model.dedupe_days)
    elif isinstance(model, InterestModel):
        kind = _INTEREST
        if model.n_users is None:
            raise ValueError("model: declare n_users (InterestModel(n_users=...)) to fold on a cluster")
        if item_tags is None:
            raise ValueError("item_tags: required with an InterestModel")
        x = model._item_tags(item_tags, None)
        spec = (_INTEREST, model.event_weights, model.half_life_days, model.n_users)
        scattered_items = client.scatter([_parts_tuple(x)], broadcast=True, hash=False)[0]
    else:
        raise TypeError(f"model: expected a TrustModel or an InterestModel, got {type(model).__name__}")
    tag = uuid.uuid4().hex[:12]
    futures: list[Future] = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
            warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
            level = [
                client.submit(
                    _fold_block,
                    spec,
                    i,
                    _submit_lazy(client, p),
                    scattered_items,
                    key=f"ecomcore-fold-{tag}-0-{i}",
                    pure=False,
                    retries=retries,
                )
                for i, p in enumerate(parts)
            ]
        futures.extend(level)
        depth = 0
        while len(level) > 1:
            depth += 1
            level = [
                client.submit(
                    _merge_blocks,
                    kind,
                    *level[j : j + split_every],
                    key=f"ecomcore-fold-{tag}-{depth}-{j // split_every}",
                    pure=False,
                    retries=retries,
                )
                for j in range(0, len(level), split_every)
            ]
            futures.extend(level)
        blob = level[0].result()
    except BaseException:
        if futures:
            client.cancel(futures)
        raise
    finally:
        if scattered_items is not None:
            scattered_items.release()
    return _state_from_bytes(kind, blob)
