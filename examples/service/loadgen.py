"""Open-loop load generator and offline checker for the ranking service (``app.py``).

Used by ``tests/service`` (a short run) and ``bench/service_load.py`` (the full run and a rate
sweep); usable on its own against any running instance.

* :func:`make_files` writes a synthetic market in the formats of the ``ecomcore`` command:
  ``profiles.npz`` (as ``ecomcore profiles`` writes it), ``merchant_tags.npz``, ``banned.npy``,
  and ``trust.npz`` + ``trust_state.npz`` made by running ``ecomcore trust`` itself.
* :class:`Server` starts ``app.py`` with uvicorn on 127.0.0.1 in a subprocess (one process).
* :func:`drive` sends ``GET /users/{u}/merchants`` on a fixed clock -- request ``i`` leaves at
  ``t0 + i / rate`` whether or not earlier answers have arrived (open loop) -- for a bounded
  time, while posting trust events; latency counts from the *scheduled* send time, so a server
  (or client) that falls behind shows up in the figures instead of silently lowering the rate.
* :func:`verify` recomputes every answer offline with ``ecomcore.Ranker.topk`` from the trust
  index the answer's version was built on (the service's ``--record-dir`` files) and counts
  mismatches.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@dataclass
class MarketFiles:
    """Paths of a service's input files and what is needed to check its answers."""

    directory: str
    profiles: str
    merchant_tags: str
    banned: str
    trust: str
    trust_state: str
    n_users: int
    n_merchants: int
    start: float  # time of the latest trust event in the files


def make_files(
    directory: str,
    n_users: int,
    n_tags: int,
    n_merchants: int,
    *,
    sparse: bool = True,
    n_trust_events: int = 200_000,
    seed: int = 0,
) -> MarketFiles:
    """Write a synthetic market in the ``ecomcore`` command's file formats.

    Parameters
    ----------
    directory : str
        Existing directory to write into.
    n_users, n_tags, n_merchants : int
        Market size (:func:`ecomcore.datasets.synthetic_market`).
    sparse : bool, default True
        The sparse-product regime (users reach a few % of the merchants).
    n_trust_events : int, default 200000
        Merchant events folded by ``ecomcore trust`` into the initial index and state.
    seed : int, default 0
        Seed.

    Returns
    -------
    MarketFiles
        The paths.
    """
    import ecomcore as ec
    from ecomcore.cli import main as cli_main
    from ecomcore.datasets import synthetic_market, synthetic_trust_events

    m = synthetic_market(n_users, n_tags, n_merchants, seed=seed, shared_popularity=not sparse)
    p = os.path.join
    profiles, b, banned = p(directory, "profiles.npz"), p(directory, "merchant_tags.npz"), p(directory, "banned.npy")
    with open(profiles, "wb") as f:  # exactly how `ecomcore profiles` writes its output
        sp.save_npz(f, sp.csr_matrix(m.user_tags), compressed=True)
    sp.save_npz(b, sp.csr_matrix(m.merchant_tags), compressed=True)
    np.save(banned, m.banned)
    inds = ec.default_indicators()
    quality = np.random.default_rng(seed).random(n_merchants)
    start = 1_767_225_600.0 - 180 * 86400.0
    ev = synthetic_trust_events(quality, inds, n_events=n_trust_events, start=start, buyers=0, seed=seed)
    events_csv = p(directory, "merchant_events.csv")
    names = np.array([i.name for i in inds])
    with open(events_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["merchant", "indicator", "value", "time"])
        cols = (ev["merchant"].tolist(), names[ev["indicator"]].tolist(), ev["value"].tolist(), ev["time"].tolist())
        w.writerows(zip(*cols))
    trust, state = p(directory, "trust.npz"), p(directory, "trust_state.npz")
    args = ["trust", "--events", events_csv, "--merchants", str(n_merchants), "--out", trust]
    rc = cli_main([*args, "--save-state", state, "--quiet"])
    if rc != 0:
        raise RuntimeError(f"ecomcore trust failed with status {rc}")
    return MarketFiles(
        directory, profiles, b, banned, trust, state, n_users, n_merchants, float(ev["time"].max(initial=start))
    )


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``app.py`` under uvicorn in a subprocess on 127.0.0.1 (a context manager).

    Parameters
    ----------
    files : MarketFiles
        Inputs.
    record_dir : str
        Where the service saves every version's trust (for :func:`verify`).
    rescore_every : float
        Seconds between re-scorings.
    workers : int, optional
        Ranking threads.
    startup_timeout : float, default 120
        Seconds to wait for ``/health``.
    extra_args : sequence of str
        More ``app.py`` arguments.
    """

    def __init__(
        self,
        files: MarketFiles,
        record_dir: str,
        *,
        rescore_every: float = 1.0,
        workers: Optional[int] = None,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            os.path.join(HERE, "app.py"),
            "--profiles", files.profiles,
            "--merchant-tags", files.merchant_tags,
            "--trust", files.trust,
            "--trust-state", files.trust_state,
            "--banned", files.banned,
            "--rescore-every", str(rescore_every),
            "--record-dir", record_dir,
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]  # fmt: skip
        if workers:
            cmd += ["--workers", str(workers)]
        cmd += list(extra_args)
        self.cmd = cmd
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(record_dir, "server.log")

    def __enter__(self) -> Server:
        import httpx

        env = dict(os.environ)
        # the ecomcore this process runs (a checkout built in place, or the installed wheel)
        import ecomcore

        home = os.path.dirname(os.path.dirname(os.path.abspath(ecomcore.__file__)))
        env["PYTHONPATH"] = home + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with status {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the service did not answer /health within {self.startup_timeout} s")
            time.sleep(0.1)

    def log(self) -> str:
        """The server's output so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------------------------------
# Open-loop driver
# ---------------------------------------------------------------------------------------------


class _RawPool:
    """Keep-alive HTTP/1.1 GETs over plain asyncio streams (the hot path of the driver).

    httpx costs about 1-2 ms of client CPU per request, as much as the server spends; on a
    2-core machine that would be measured as server latency.  This client costs a fraction of
    that.  Only what the service sends is understood: a status line, headers with
    Content-Length, a body.
    """

    def __init__(self, host: str, port: int, max_connections: int = 512, max_idle: float = 2.0) -> None:
        self.host, self.port = host, port
        self.idle: list = []
        self.sem = asyncio.Semaphore(max_connections)
        self.max_idle = max_idle  # below uvicorn's keep-alive timeout (5 s): never reuse a closing connection

    async def get(self, path: str) -> tuple:
        async with self.sem:
            loop = asyncio.get_running_loop()
            conn = None
            while self.idle:
                reader, writer, since = self.idle.pop()
                if loop.time() - since < self.max_idle:
                    conn = (reader, writer)
                    break
                writer.close()
            if conn is not None:
                try:
                    return await self._exchange(*conn, path)
                except (asyncio.IncompleteReadError, ConnectionError) as e:
                    # a kept-alive connection the server closed before reading the request
                    # (the one case an HTTP client retries); anything else is an error
                    if isinstance(e, asyncio.IncompleteReadError) and e.partial:
                        raise
            return await self._exchange(*await asyncio.open_connection(self.host, self.port), path)

    async def _exchange(self, reader: Any, writer: Any, path: str) -> tuple:
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            low = head.lower()
            i = low.find(b"\r\ncontent-length:")
            if i < 0:
                raise ValueError("response without Content-Length")
            body = await reader.readexactly(int(low[i + 17 : low.index(b"\r\n", i + 2)]))
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer, asyncio.get_running_loop().time()))
        return status, body

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


@dataclass
class LoadResult:
    """What one open-loop run saw."""

    rate: float
    duration: float
    sent: int = 0
    latencies: list = field(default_factory=list)  # seconds from scheduled send to answer
    answers: list = field(default_factory=list)  # (user, k, json) of the 200 answers
    errors: list = field(default_factory=list)  # (what, detail)
    events_posted: int = 0
    event_errors: list = field(default_factory=list)
    max_send_lag: float = 0.0  # worst delay between a scheduled and an actual send
    wall: float = 0.0

    @property
    def versions(self) -> list:
        """Distinct state versions seen in the answers."""
        return sorted({a[2]["version"] for a in self.answers})

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` in milliseconds (NaN without answers)."""
        return float(np.percentile(np.asarray(self.latencies) * 1e3, q)) if self.latencies else float("nan")

    def summary(self) -> str:
        """One line: rate, counts, p50/p99/max, versions."""
        return (
            f"rate {self.rate:.0f}/s for {self.duration:.0f} s: {self.sent} sent, {len(self.answers)} ok, "
            f"{len(self.errors)} errors; p50 {self.percentile(50):.2f} ms, p99 {self.percentile(99):.2f} ms, "
            f"max {self.percentile(100):.2f} ms; {len(self.versions)} versions; {self.events_posted} trust events "
            f"posted ({len(self.event_errors)} failed); worst send lag {self.max_send_lag * 1e3:.1f} ms"
        )


async def _drive(
    url: str,
    rate: float,
    duration: float,
    n_users: int,
    n_merchants: int,
    k: int,
    events_every: float,
    events_per_post: int,
    event_time: float,
    seed: int,
    timeout: float,
    warmup: float,
) -> LoadResult:
    import httpx

    from ecomcore import default_indicators

    res = LoadResult(rate, duration)
    rng = np.random.default_rng(seed)
    n_warm = int(round(rate * warmup))
    n = n_warm + int(round(rate * duration))
    users = rng.integers(0, n_users, n)
    names = [i.name for i in default_indicators() if i.kind == "rate"]
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    hostport = url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    raw = _RawPool(host, int(port))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        loop = asyncio.get_running_loop()
        tasks: list = []

        async def one(i: int, t_sched: float) -> None:
            u = int(users[i])
            try:
                status, body = await asyncio.wait_for(raw.get(f"/users/{u}/merchants?k={k}"), timeout)
                t_done = loop.time()
                if status != 200:
                    res.errors.append(("status", f"{status}: {body[:200]!r}"))
                    return
                if i >= n_warm:
                    res.latencies.append(t_done - t_sched)
                res.answers.append((u, k, body))  # parsed after the run: no client GC work meanwhile
            except Exception as e:  # noqa: BLE001 - every failure is counted
                res.errors.append(("exception", f"{type(e).__name__}: {e}"))

        async def post_events() -> None:
            ev_rng = np.random.default_rng(seed + 1)
            j = 0
            while True:
                await asyncio.sleep(events_every)
                m = int(ev_rng.integers(0, n_merchants))
                body = {
                    "events": [
                        {
                            "indicator": names[int(ev_rng.integers(0, len(names)))],
                            "value": int(ev_rng.random() < 0.5),
                            "time": event_time + j,
                        }
                        for _ in range(events_per_post)
                    ]
                }
                j += 1
                try:
                    r = await client.post(f"/merchants/{m}/events", json=body)
                    if r.status_code == 200:
                        res.events_posted += events_per_post
                    else:
                        res.event_errors.append(f"{r.status_code}: {r.text[:200]}")
                except Exception as e:  # noqa: BLE001
                    res.event_errors.append(f"{type(e).__name__}: {e}")

        poster = asyncio.create_task(post_events()) if events_every > 0 else None
        t0 = loop.time() + 0.05
        for i in range(n):
            t_sched = t0 + i / rate
            delay = t_sched - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                res.max_send_lag = max(res.max_send_lag, -delay)
            tasks.append(asyncio.create_task(one(i, t_sched)))
            res.sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 5)
        res.wall = loop.time() - t0
        if poster is not None:
            poster.cancel()
            try:
                await poster
            except asyncio.CancelledError:
                pass
        for t in tasks:
            if not t.done():
                t.cancel()
                res.errors.append(("timeout", "no answer"))
        raw.close()
    res.answers = [(u, kk, json.loads(body)) for u, kk, body in res.answers]
    return res


def drive(
    url: str,
    *,
    rate: float,
    duration: float,
    n_users: int,
    n_merchants: int,
    k: int = 10,
    events_every: float = 0.1,
    events_per_post: int = 20,
    event_time: Optional[float] = None,
    seed: int = 0,
    timeout: float = 10.0,
    warmup: float = 1.0,
) -> LoadResult:
    """Drive ``GET /users/{u}/merchants`` open-loop at ``rate`` requests/s for ``duration`` s.

    Parameters
    ----------
    url : str
        Base URL (127.0.0.1).
    rate : float
        Requests per second, sent on a fixed clock.
    duration : float
        Seconds of sending (at most ``rate * duration`` requests).
    n_users, n_merchants : int
        Id ranges (users drawn uniformly).
    k : int, default 10
        Merchants per answer.
    events_every : float, default 0.1
        Seconds between trust-event posts (0: none).
    events_per_post : int, default 20
        Events per post.
    event_time : float, optional
        Time stamp of the first posted event (default: now).
    seed : int, default 0
        Seed of the user and event draws.
    timeout : float, default 10
        Per-request timeout in seconds.
    warmup : float, default 1
        Seconds sent at ``rate`` before the measured ``duration`` (connections opened, thread
        scratch allocated); their answers are checked but their latencies not recorded.

    Returns
    -------
    LoadResult
        Latencies, answers and errors.
    """
    return asyncio.run(
        _drive(
            url, rate, duration, n_users, n_merchants, k, events_every, events_per_post,
            time.time() if event_time is None else event_time, seed, timeout, warmup,
        )
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Offline check
# ---------------------------------------------------------------------------------------------


def load_version(record_dir: str, version: int) -> dict:
    """The trust, boost and weight the service published as ``version``.

    Parameters
    ----------
    record_dir : str
        The service's ``--record-dir``.
    version : int
        Version number.

    Returns
    -------
    dict of ndarray
        ``index``, ``boost``, ``weight``.
    """
    from ecomcore._persist import load_npz

    arrays, _ = load_npz(os.path.join(record_dir, f"trust-v{version:06d}.npz"), "ecomcore.service_trust", 1)
    return arrays


def verify(answers: list, files: MarketFiles, record_dir: str, *, beta: float = 1.0) -> dict:
    """Recompute every answer with the offline ``Ranker.topk`` of its version; count mismatches.

    Parameters
    ----------
    answers : list of (user, k, dict)
        The 200 answers of a run.
    files : MarketFiles
        The service's inputs.
    record_dir : str
        The service's ``--record-dir``.
    beta : float, default 1.0
        The service's beta.

    Returns
    -------
    dict
        ``checked``, ``mismatches`` (count), ``examples`` (a few), ``versions``.
    """
    import ecomcore as ec

    a = sp.csr_array(sp.load_npz(files.profiles))
    b = sp.csr_array(sp.load_npz(files.merchant_tags))
    banned = np.load(files.banned, allow_pickle=False)
    by_version: dict = {}
    for u, k, ans in answers:
        by_version.setdefault((ans["version"], k), []).append((u, ans))
    checked = 0
    bad: list = []
    for (version, k), items in sorted(by_version.items()):
        rec = load_version(record_dir, version)
        r = ec.Ranker(b, trust=rec["index"], boost=rec["boost"], banned=banned, beta=beta)  # from scratch
        if not np.array_equal(r.merchant_weight, rec["weight"]):
            bad.append((version, None, "recorded weight differs from the offline one"))
        users = np.array(sorted({u for u, _ in items}))
        top = r.topk(a[users], k, n_threads=1)
        row = {int(u): j for j, u in enumerate(users)}
        for u, ans in items:
            j = row[u]
            c = int(top.counts[j])
            want_m = top.indices[j, :c].tolist()
            want_s = top.scores[j, :c].tolist()
            got_m = [x["merchant"] for x in ans["merchants"]]
            got_s = [x["score"] for x in ans["merchants"]]
            got_t = [x["trust"] for x in ans["merchants"]]
            got_w = [x["weight"] for x in ans["merchants"]]
            checked += 1
            if (
                got_m != want_m
                or got_s != want_s
                or got_t != rec["index"][want_m].tolist()
                or got_w != rec["weight"][want_m].tolist()
            ):
                bad.append((version, u, f"got {got_m} {got_s}, offline {want_m} {want_s}"))
    return {"checked": checked, "mismatches": len(bad), "examples": bad[:3], "versions": len(by_version)}
