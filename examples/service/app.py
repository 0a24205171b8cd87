"""An online ranking service on ecomcore: FastAPI + uvicorn, live trust updates, atomic swaps.

Endpoints
---------
``GET /users/{user}/merchants?k=10``
    The user's top-k merchants with, for each, ``score`` (exactly what ``Ranker.topk`` computes),
    its ``interest`` part (``A[u] . B[:, m]``, float64), ``trust``, ``boost`` and ``weight``
    (``trust ** beta * boost``), and the ``version`` of the trust index it was computed on.
``POST /merchants/{merchant}/events``
    ``{"events": [{"indicator": "refund_rate", "value": 1, "time": 1767225600, "buyer": 7}, ...]}``
    folds trust events into the live :class:`ecomcore.TrustState`; they enter the ranking at the
    next re-score.
``GET /health``
    Liveness plus the current version, sizes, and the last re-scoring error if any.

Design
------
* All states are loaded once from the files the ``ecomcore`` command writes: ``PROFILES.npz``
  (``ecomcore profiles``), ``B.npz`` (tags x merchants), ``TRUST.npz`` (``ecomcore trust --out``)
  and, for live updates, the trust state (``ecomcore trust --save-state``).
* The serving state is one immutable :class:`Snapshot` (version, Ranker, trust, boost).  A request
  reads the reference once and uses that snapshot to the end; the re-scoring task builds the next
  Ranker with :meth:`ecomcore.Ranker.with_trust` (shares the prepared merchant matrix, recomputes
  only the per-merchant weight) and publishes it by one assignment.  In-flight requests finish
  on the old snapshot; no lock is taken on the request path.
* Ranking runs in a thread pool (``Ranker.topk_one`` is single-threaded and its kernel releases
  the GIL), so the event loop keeps accepting and parsing requests while kernels run on both
  cores.  Re-scoring runs in its own one-thread pool so it never occupies a ranking worker.
* Client input is validated before it touches anything: unknown user or merchant -> 404, ``k``
  out of range, malformed JSON or events -> 422, oversized bodies -> 413, live updates without a
  trust state -> 409.  Every message says what was wrong.

Run it (see README.md next to this file)::

    python examples/service/app.py --profiles PROFILES.npz --merchant-tags B.npz \\
        --trust TRUST.npz --trust-state TRUST_STATE.npz --rescore-every 60 --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

import ecomcore as ec
from ecomcore._persist import load_npz, save_npz
from ecomcore._validation import check_int
from ecomcore.cli_batch import _TRUST_KIND, _TRUST_VERSION

__all__ = ["ClientError", "Event", "EventBatch", "RankingService", "Snapshot", "create_app", "app_from_env", "main"]

log = logging.getLogger("ecomcore.service")

#: ``save_npz`` kind of the per-version trust files written with ``record_dir``.
RECORD_KIND = "ecomcore.service_trust"
RECORD_VERSION = 1
_INT64_MAX = 2**63 - 1


class ClientError(Exception):
    """A request the service refuses: HTTP ``status`` and a message for the client.

    Parameters
    ----------
    status : int
        HTTP status code (4xx).
    message : str
        What was wrong, for the response's ``detail``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Snapshot:
    """One published serving state; never modified after publication.

    Attributes
    ----------
    version : int
        1 for the trust index loaded at start-up, +1 per re-score.
    ranker : ecomcore.Ranker
        The Ranker for this trust index.
    trust, boost : ndarray
        The trust index and boost the Ranker was built from (float64, read-only).
    scored_at : float
        Unix seconds the trust index was scored at (NaN when loaded without a time).
    """

    version: int
    ranker: ec.Ranker
    trust: np.ndarray
    boost: np.ndarray
    scored_at: float


def _read_only(a: Any) -> np.ndarray:
    out = np.array(a, dtype=np.float64)
    out.setflags(write=False)
    return out


def _load_sparse(path: str, what: str) -> sp.csr_array:
    try:
        m = sp.load_npz(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file ({what})") from None
    except Exception as e:  # noqa: BLE001 - any damage is a bad file
        raise ValueError(f"{path}: not a readable scipy sparse .npz file for {what} ({e})") from None
    return sp.csr_array(m)


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file ({what})") from None
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable .npy array for {what} ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{path}: expected a .npy array for {what}, found an .npz archive")
    return arr


class RankingService:
    """The framework-independent core of the service: states, ranking, events, re-scoring.

    Thread-safe: :meth:`rank` may run in many threads at once, concurrently with
    :meth:`fold_events` and :meth:`rescore`.

    Parameters
    ----------
    profiles : sparse matrix, shape (n_users, n_tags)
        User interest profiles A (as written by ``ecomcore profiles``).
    merchant_tags : sparse matrix, shape (n_tags, n_merchants)
        Merchant profiles B.
    trust, boost : array_like, shape (n_merchants,)
        The initial trust index and boost (``ecomcore trust --out``); version 1.
    trust_state : TrustState, optional
        Live state that events fold into; without it the events endpoint answers 409.
    banned : array_like, optional
        Bool mask over merchants or banned merchant ids.
    beta, min_trust : float
        As for :class:`ecomcore.Ranker`.
    categories : array of int, optional
        Category per merchant for re-scoring (as ``ecomcore trust --categories``).
    guarantee : array_like, optional
        Trusted-purchase flags for re-scoring (as ``ecomcore trust --guarantee``); without them
        the loaded boost is kept at every re-score.
    half_life_days : float, optional
        Evidence half-life of re-scoring; default: the trust state's.
    k_max : int, default 100
        Largest ``k`` a client may ask for.
    max_events : int, default 10000
        Most events in one POST.
    clock : callable, default time.time
        Unix seconds at which re-scoring decays the evidence.
    record_dir : str, optional
        When given, every published version's trust, boost and weight are saved there as
        ``trust-v{version:06d}.npz`` before the version is published (audits and the load test's
        offline check).
    scored_at : float, optional
        The time the initial trust index was scored at (``TRUST.npz``'s ``now``).
    """

    def __init__(
        self,
        profiles: Any,
        merchant_tags: Any,
        trust: Any,
        boost: Optional[Any] = None,
        *,
        trust_state: Optional[ec.TrustState] = None,
        banned: Optional[Any] = None,
        beta: float = 1.0,
        min_trust: float = 0.0,
        categories: Optional[Any] = None,
        guarantee: Optional[Any] = None,
        half_life_days: Optional[float] = None,
        k_max: int = 100,
        max_events: int = 10_000,
        clock: Callable[[], float] = time.time,
        record_dir: Optional[str] = None,
        scored_at: float = float("nan"),
    ) -> None:
        a = sp.csr_array(profiles)
        if a.dtype.kind != "f":
            a = a.astype(np.float64)
        a.sum_duplicates()
        a.sort_indices()
        b = sp.csr_array(merchant_tags)
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"profiles have {a.shape[1]} tag columns but merchant_tags has {b.shape[0]} tag rows")
        n_m = b.shape[1]
        boost = np.ones(n_m) if boost is None else boost
        self._ranker0 = ec.Ranker(b, trust=trust, boost=boost, banned=banned, beta=beta, min_trust=min_trust)
        self._a = a
        # B's columns (merchants x tags, float64) for the interest part of an answer
        bt = sp.csr_array(b.T, dtype=np.float64)
        bt.sort_indices()
        self._bt_indptr, self._bt_indices, self._bt_data = bt.indptr.astype(np.int64), bt.indices, bt.data
        self.n_users, self.n_merchants = int(a.shape[0]), int(n_m)
        self.k_max = check_int(k_max, "k_max")
        self.max_events = check_int(max_events, "max_events")
        self._clock = clock
        self._record_dir = record_dir
        self._guarantee = guarantee
        self._categories = categories
        self._state = trust_state
        self._model: Optional[ec.TrustModel] = None
        if trust_state is not None:
            if trust_state.n_merchants != n_m:
                raise ValueError(f"trust_state: has {trust_state.n_merchants} merchants, merchant_tags has {n_m}")
            self._model = ec.TrustModel(
                ec.default_indicators(),
                n_merchants=n_m,
                half_life_days=trust_state.half_life_days if half_life_days is None else half_life_days,
                dedupe_days=trust_state.dedupe_days,
                categories=categories,
            )
            self._model._check_state(trust_state, "trust_state")
            self._names = self._model.indicator_index
        self._events_lock = threading.Lock()
        self._rescore_lock = threading.Lock()
        self.events_folded = 0
        self.rescores = 0
        self.last_rescore_error: Optional[str] = None
        snap = Snapshot(1, self._ranker0, _read_only(trust), _read_only(boost), float(scored_at))
        self._record(snap)
        self._current = snap

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        profiles: str,
        merchant_tags: str,
        trust: str,
        *,
        trust_state: Optional[str] = None,
        banned: Optional[str] = None,
        categories: Optional[str] = None,
        guarantee: Optional[str] = None,
        **kwargs: Any,
    ) -> RankingService:
        """Load the files written by ``ecomcore profiles`` / ``ecomcore trust`` (and B).

        Parameters
        ----------
        profiles : str
            ``PROFILES.npz`` (users x tags scipy sparse).
        merchant_tags : str
            ``B.npz`` (tags x merchants scipy sparse).
        trust : str
            ``TRUST.npz`` written by ``ecomcore trust --out``.
        trust_state : str, optional
            ``ecomcore trust --save-state`` file (enables live events).
        banned, categories, guarantee : str, optional
            ``.npy`` files, as for ``ecomcore rank --banned`` / ``ecomcore trust``.
        **kwargs
            Passed to the constructor (``beta``, ``min_trust``, ``k_max``, ``record_dir`` ...).

        Returns
        -------
        RankingService
            The loaded service core (version 1 = ``TRUST.npz``).
        """
        a = _load_sparse(profiles, "profiles (users x tags)")
        b = _load_sparse(merchant_tags, "merchant_tags (tags x merchants)")
        n_m = b.shape[1]
        if not os.path.isfile(trust):
            raise ValueError(f"{trust}: no such file (trust scores)")
        arrays, meta = load_npz(trust, _TRUST_KIND, _TRUST_VERSION)
        for name in ("index", "boost"):
            x = arrays.get(name)
            if x is None or x.dtype.kind != "f" or x.shape != (n_m,):
                raise ValueError(f"{trust}: array {name!r} must be float with shape ({n_m},) (one per merchant)")
        state = None if trust_state is None else ec.TrustState.load(trust_state)
        return cls(
            a,
            b,
            arrays["index"],
            arrays["boost"],
            trust_state=state,
            banned=None if banned is None else _load_npy(banned, "banned"),
            categories=None if categories is None else _load_npy(categories, "categories"),
            guarantee=None if guarantee is None else _load_npy(guarantee, "guarantee"),
            scored_at=float(meta.get("now", float("nan"))),
            **kwargs,
        )

    # -- state --------------------------------------------------------------------------------

    @property
    def current(self) -> Snapshot:
        """The snapshot new requests use (one atomic reference read)."""
        return self._current

    @property
    def live_trust(self) -> bool:
        """Whether events can be folded (a trust state was loaded)."""
        return self._state is not None

    def _record(self, snap: Snapshot) -> None:
        if self._record_dir is None:
            return
        path = os.path.join(self._record_dir, f"trust-v{snap.version:06d}.npz")
        save_npz(
            path,
            RECORD_KIND,
            RECORD_VERSION,
            {"index": snap.trust, "boost": snap.boost, "weight": snap.ranker.merchant_weight},
            {"version": snap.version, "scored_at": snap.scored_at},
        )

    # -- requests -----------------------------------------------------------------------------

    def rank(self, user: int, k: int) -> dict:
        """Top-k merchants of one user, on the snapshot current when the call starts.

        Parameters
        ----------
        user : int
            User id in ``[0, n_users)``.
        k : int
            Merchants wanted, in ``[1, k_max]``.

        Returns
        -------
        dict
            JSON-ready answer (see the module docstring).

        Raises
        ------
        ClientError
            404 for an unknown user, 422 for ``k`` out of range.
        """
        if not 0 <= user < self.n_users:
            raise ClientError(404, f"unknown user {user}: user ids are 0..{self.n_users - 1}")
        if not 1 <= k <= self.k_max:
            raise ClientError(422, f"k: must be between 1 and {self.k_max}, got {k}")
        snap = self._current  # one read: the whole answer comes from this snapshot
        a = self._a
        lo, hi = int(a.indptr[user]), int(a.indptr[user + 1])
        ids, wts = a.indices[lo:hi], a.data[lo:hi]
        top = snap.ranker.topk_one(ids, wts, k)
        n = int(top.counts[0])
        ms = np.asarray(top.indices[0, :n], dtype=np.int64)
        interest = self._interest(ids, wts, ms)
        w = snap.ranker.merchant_weight
        return {
            "user": user,
            "k": k,
            "version": snap.version,
            "trust_scored_at": None if np.isnan(snap.scored_at) else snap.scored_at,
            "merchants": [
                {"merchant": m, "score": s, "interest": i, "trust": t, "boost": g, "weight": ww}
                for m, s, i, t, g, ww in zip(
                    ms.tolist(),
                    top.scores[0, :n].tolist(),
                    interest.tolist(),
                    snap.trust[ms].tolist(),
                    snap.boost[ms].tolist(),
                    w[ms].tolist(),
                )
            ],
        }

    def _interest(self, ids: np.ndarray, wts: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """``A[u] . B[:, m]`` in float64 for the listed merchants (user tags sorted)."""
        if ms.size == 0 or ids.size == 0:
            return np.zeros(ms.size)
        lo = self._bt_indptr[ms]
        lens = self._bt_indptr[ms + 1] - lo
        starts = np.cumsum(lens) - lens
        pos = np.repeat(lo - starts, lens) + np.arange(int(lens.sum()))
        tags = self._bt_indices[pos]
        j = np.minimum(np.searchsorted(ids, tags), ids.size - 1)
        hit = ids[j] == tags
        contrib = np.where(hit, self._bt_data[pos] * wts[j].astype(np.float64), 0.0)
        return np.bincount(np.repeat(np.arange(ms.size), lens), weights=contrib, minlength=ms.size)

    def fold_events(self, merchant: int, events: Sequence[dict]) -> dict:
        """Fold one merchant's events into the live trust state (all or none).

        Parameters
        ----------
        merchant : int
            Merchant id in ``[0, n_merchants)``.
        events : sequence of dict
            Each with ``indicator`` (name or id), ``value``, ``time`` (Unix seconds) and
            optionally ``buyer`` (id >= 0, or -1 / None for none).

        Returns
        -------
        dict
            ``merchant``, ``accepted`` (events folded), ``version`` (still serving; the events
            count from the next re-score) and ``events_folded`` (since start-up).

        Raises
        ------
        ClientError
            409 without a trust state, 404 for an unknown merchant, 422 for bad events.
        """
        if self._state is None or self._model is None:
            raise ClientError(409, "live trust updates are disabled: the service was started without a trust state")
        if not 0 <= merchant < self.n_merchants:
            raise ClientError(404, f"unknown merchant {merchant}: merchant ids are 0..{self.n_merchants - 1}")
        n = len(events)
        if not 1 <= n <= self.max_events:
            raise ClientError(422, f"events: expected 1 to {self.max_events} events, got {n}")
        ind = np.empty(n, dtype=np.int64)
        value = np.empty(n)
        t = np.empty(n)
        buyer = np.full(n, -1, dtype=np.int64)
        n_ind = len(self._names)
        for j, e in enumerate(events):
            try:
                name = e["indicator"]
                if isinstance(name, str):
                    code = self._names.get(name)
                    if code is None:
                        raise ClientError(
                            422, f"events[{j}].indicator: unknown indicator {name!r} (see default_indicators())"
                        )
                elif isinstance(name, (int, np.integer)) and not isinstance(name, bool) and 0 <= name < n_ind:
                    code = int(name)
                else:
                    raise ClientError(422, f"events[{j}].indicator: expected a name or an id in 0..{n_ind - 1}")
                ind[j] = code
                value[j] = e["value"]
                t[j] = e["time"]
                if e.get("buyer") is not None:
                    buyer[j] = e["buyer"]
            except (KeyError, TypeError, ValueError, OverflowError) as err:
                raise ClientError(422, f"events[{j}]: malformed event ({type(err).__name__}: {err})") from None
        cols = {"merchant": np.full(n, merchant, dtype=np.int64), "indicator": ind, "value": value, "time": t}
        if (buyer >= 0).any():
            cols["buyer"] = buyer
        try:
            self._model.fold(cols, into=self._state)  # validates every event first; all or none
        except (ValueError, TypeError) as e:
            raise ClientError(422, _event_message(str(e))) from None
        with self._events_lock:
            self.events_folded += n
            total = self.events_folded
        return {"merchant": merchant, "accepted": n, "version": self._current.version, "events_folded": total}

    def rescore(self) -> Snapshot:
        """Score the live trust state now and publish a new version (one at a time).

        The next Ranker is made by :meth:`ecomcore.Ranker.with_trust` from the current one;
        publishing it is one reference assignment.  Without a trust state the evidence cannot
        change and the current snapshot is returned.

        Returns
        -------
        Snapshot
            The snapshot now being served.
        """
        if self._state is None or self._model is None:
            return self._current
        with self._rescore_lock:
            old = self._current
            now = float(self._clock())
            kw = {} if self._guarantee is None else {"guarantee": self._guarantee}
            scores = self._model.score(self._state, now, **kw)
            boost = old.boost if self._guarantee is None else scores.boost
            ranker = old.ranker.with_trust(scores.index, boost=boost)
            snap = Snapshot(old.version + 1, ranker, _read_only(scores.index), _read_only(boost), now)
            self._record(snap)
            self._current = snap  # the swap: requests that already read `old` finish on it
            self.rescores += 1
            self.last_rescore_error = None
            return snap

    def health(self) -> dict:
        """Liveness information.

        Returns
        -------
        dict
            ``status``, ``version``, sizes, ``trust_scored_at``, ``live_trust``, counters and
            ``last_rescore_error``.
        """
        snap = self._current
        return {
            "status": "ok",
            "version": snap.version,
            "n_users": self.n_users,
            "n_merchants": self.n_merchants,
            "trust_scored_at": None if np.isnan(snap.scored_at) else snap.scored_at,
            "live_trust": self.live_trust,
            "events_folded": self.events_folded,
            "rescores": self.rescores,
            "last_rescore_error": self.last_rescore_error,
        }


def _event_message(msg: str) -> str:
    """Turn ``fold``'s message (columns, positions) into one about the posted list."""
    import re

    hit = re.search(r"at position (\d+)", msg)
    col = re.match(r"events\['(\w+)'\]: (.*)", msg)
    if hit and col:
        body = col.group(2).replace(f" at position {hit.group(1)}", "")
        return f"events[{hit.group(1)}].{col.group(1)}: {body}"
    return msg


# ---------------------------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------------------------


class Event(BaseModel):
    """One trust event of the merchant in the path (``POST /merchants/{merchant}/events``)."""

    model_config = ConfigDict(extra="forbid")
    indicator: Union[StrictStr, StrictInt] = Field(description="indicator name or id")
    value: float = Field(allow_inf_nan=False)
    time: float = Field(allow_inf_nan=False, description="Unix seconds")
    buyer: Optional[int] = Field(default=None, ge=-1, le=_INT64_MAX, description="buyer id; -1 or absent: none")


class EventBatch(BaseModel):
    """The body of ``POST /merchants/{merchant}/events``."""

    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1)


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, declared or streamed.

    Bodies of POST/PUT/PATCH requests are read here (at most ``limit`` bytes are kept) and
    handed on in one piece; other requests pass untouched.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = {"detail": f"request body over {self.limit} bytes"}
        for key, val in scope.get("headers", ()):
            if key == b"content-length" and val.isdigit() and int(val) > self.limit:
                await _send_json(send, 413, too_big)
                return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # client gone
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_json(send, 413, too_big)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        pending = [first]

        async def replay() -> dict:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


async def _send_json(send: Callable, status: int, body: dict) -> None:
    import json

    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _background_priority() -> None:
    """Lower the OS priority of the calling thread (Linux: per-thread nice), so that re-scoring
    yields the cores to request handling when they are contended."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


def create_app(
    service: RankingService,
    *,
    rescore_every: Optional[float] = 60.0,
    workers: Optional[int] = None,
    max_body_bytes: int = 1 << 20,
) -> Any:
    """The FastAPI application serving ``service``.

    Parameters
    ----------
    service : RankingService
        Loaded states (see :meth:`RankingService.from_files`).
    rescore_every : float or None, default 60
        Seconds between re-scorings of the live trust state (each publishes a new version);
        None or 0 disables the background task (call ``service.rescore()`` yourself).
    workers : int, optional
        Ranking threads (default: the cores this process may use).
    max_body_bytes : int, default 1 MiB
        Larger request bodies get 413.

    Returns
    -------
    fastapi.FastAPI
        The app; ``app.state.service`` is ``service``.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_workers = check_int(workers, "workers")
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="rank")
    rescore_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rescore", initializer=_background_priority)

    async def rescore_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(rescore_every)
            try:
                await loop.run_in_executor(rescore_pool, service.rescore)
            except Exception as e:  # noqa: BLE001 - keep serving the old version, report it
                service.last_rescore_error = f"{type(e).__name__}: {e}"
                log.exception("re-scoring failed; still serving version %d", service.current.version)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        task = asyncio.create_task(rescore_loop()) if rescore_every else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            pool.shutdown(wait=True)
            rescore_pool.shutdown(wait=True)

    app = FastAPI(title="ecomcore ranking service", lifespan=lifespan)
    app.state.service = service
    if max_body_bytes:
        app.add_middleware(_BodyLimit, limit=max_body_bytes)

    @app.exception_handler(ClientError)
    async def client_error(request: Any, exc: ClientError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Any, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    async def in_pool(fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @app.get("/users/{user}/merchants")
    async def merchants(user: int, k: int = 10) -> JSONResponse:
        """Top-k merchants for a user (interest and trust parts, state version)."""
        return JSONResponse(await in_pool(service.rank, user, k))

    @app.post("/merchants/{merchant}/events")
    async def events(merchant: int, batch: EventBatch) -> JSONResponse:
        """Fold trust events into the live trust state."""
        evs = [e.model_dump() for e in batch.events]
        return JSONResponse(await in_pool(service.fold_events, merchant, evs))

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness and the current version."""
        return JSONResponse(service.health())

    return app


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="ecomcore online ranking service (FastAPI + uvicorn)")
    p.add_argument("--profiles", required=True, help="PROFILES.npz written by 'ecomcore profiles'")
    p.add_argument("--merchant-tags", required=True, help="B.npz: tags x merchants scipy sparse .npz")
    p.add_argument("--trust", required=True, help="TRUST.npz written by 'ecomcore trust --out'")
    p.add_argument("--trust-state", default=None, help="'ecomcore trust --save-state' file: enables live events")
    p.add_argument("--banned", default=None, help="BANNED.npy: bool mask or merchant ids")
    p.add_argument("--categories", default=None, help="CATEGORIES.npy for re-scoring")
    p.add_argument("--guarantee", default=None, help="GUARANTEE.npy for re-scoring (else the loaded boost is kept)")
    p.add_argument("--beta", type=float, default=1.0, help="trust exponent (1)")
    p.add_argument("--min-trust", type=float, default=0.0, help="hide merchants with less trust (0)")
    p.add_argument("--k-max", type=int, default=100, help="largest k a client may ask for (100)")
    p.add_argument("--rescore-every", type=float, default=60.0, help="seconds between trust re-scorings; 0 = off")
    p.add_argument("--workers", type=int, default=None, help="ranking threads (default: all cores)")
    p.add_argument("--record-dir", default=None, help="save every version's trust/boost/weight here")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    return p


def _build(args: argparse.Namespace) -> Any:
    service = RankingService.from_files(
        args.profiles,
        args.merchant_tags,
        args.trust,
        trust_state=args.trust_state,
        banned=args.banned,
        categories=args.categories,
        guarantee=args.guarantee,
        beta=args.beta,
        min_trust=args.min_trust,
        k_max=args.k_max,
        record_dir=args.record_dir,
    )
    return create_app(service, rescore_every=args.rescore_every or None, workers=args.workers)


def app_from_env() -> Any:
    """App factory for ``uvicorn --factory app:app_from_env``: arguments from ``ECOMCORE_SERVICE_ARGS``.

    Returns
    -------
    ASGI application
        As :func:`create_app` builds it.
    """
    return _build(_parser().parse_args(shlex.split(os.environ.get("ECOMCORE_SERVICE_ARGS", ""))))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Load the files and serve with uvicorn (one process; ranking in a thread pool).

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    import uvicorn

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = _build(args)
    gc.freeze()  # the loaded states are permanent: keep the collector from scanning them again and again
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
