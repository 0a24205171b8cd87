#!/usr/bin/env python3
"""Coverage-guided fuzzing of ecomcore's public entry points with atheris (libFuzzer), for a set time.

Not a pytest module (no ``test_`` prefix; nothing imports it): run it as a script.  It needs
``pip install atheris`` (3.0) and the test dependencies (hypothesis)::

    python tests/fuzz/atheris_harness.py -max_total_time=600        # 10 minutes
    python tests/fuzz/atheris_harness.py -runs=2000 --only=raw_csr_sparse_topk
    python tests/fuzz/atheris_harness.py --list                     # the targets
    python tests/fuzz/atheris_harness.py --replay FINDING_FILE...    # re-run saved inputs

What it runs.  Every input's first byte picks a target; the rest drives it:

* ``hyp:<test>``: each ``@given`` test of ``tests/fuzz/test_fuzz_*.py`` (sparse_topk, Ranker
  construction/topk/iter_topk/topk_one/explain/audience, merge_topk/concat_topk, TrustModel.fold/
  score, TrustState.merge/load, InterestState.load, IdentityGraph ops and load,
  rerank_exposure, fair_table, InterestModel.fold, item_similarity, the CLI's file readers),
  driven through Hypothesis' ``fuzz_one_input`` with the fuzzer's bytes as its source of
  randomness: the same hostile inputs, references and accepted outcomes as the default run,
  explored by coverage instead of at random;
* ``raw_csr_sparse_topk`` / ``raw_csr_ranker``: CSR parts read straight from the bytes
  (atheris.FuzzedDataProvider: any indptr, any indices including out-of-range and extreme
  values, index/value dtypes, duplicate and unsorted entries, NaN/inf, huge and bad k) given to
  sparse_topk and to a Ranker (topk, iter_topk, topk_one, explain), compared with the dense
  NumPy reference of ``tests/_reference.py`` (exactly, or within the rounding bound for
  non-integer values);
* ``state_file_bytes``: TrustState / InterestState / IdentityGraph files made of fuzzer bytes
  (raw, a valid file with bytes changed, or a valid zip whose ``.npy`` members were edited and
  re-zipped with correct CRCs), loaded from a temporary file and then used (stats, merge,
  fold, score, blocked, link, save);
* ``cli_file_bytes``: the same kinds of bytes as one input file of ``ecomcore profiles / trust /
  rank / audience`` (``ecomcore.cli.main`` in-process).

Outcomes (as in ``tests/fuzz/_strategies.py``): a result that matches the reference, or a
``ValueError``/``TypeError`` whose message names the argument (or the file).  Anything else is a
*finding*: another exception, a failed comparison, an exception printed as "Exception ignored"
(``sys.unraisablehook``: how a debug build's bounds check reports from a ``noexcept`` kernel
function), or a crash / hang / memory blow-up (libFuzzer stops the run, exit status non-zero, the
input in the findings directory).  Python-level findings are counted, their inputs saved, the
first traceback of each distinct finding printed, and the run goes on.

Coverage: ecomcore's Python modules (and the fuzz test modules, whose branches pick the damage)
are instrumented with ``atheris.instrument_imports``; the Cython kernels are not (they are
compiled C without SanitizerCoverage), so the fuzzer sees the validation and policy code paths
that lead into them, not their inner branches.  Build the kernels with ``ECOMCORE_DEBUG=1``
(bounds checks) to turn a silent out-of-bounds access into a finding.

Options (the rest go to libFuzzer, e.g. ``-timeout``, ``-rss_limit_mb``, ``-seed``; a directory
argument is the corpus):

``-max_total_time=N``  stop after N seconds (default 60 when neither it nor ``-runs`` is given)
``-runs=N``            stop after N inputs
``--findings=DIR``     where finding inputs go (default: a new temporary directory, removed
                       when the run found nothing)
``--only=A,B``         fuzz only these targets (see ``--list``)
``--keep-corpus``      keep the temporary corpus directory
``--status=S``         print a progress line every S seconds (default 60)

The run ends with one summary line (executions, seconds, findings) and exit status 0 when there
were no findings, 1 otherwise.
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import io
import json
import os
import pkgutil
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zipfile
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.dirname(_HERE)
for _p in (_TESTS, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("atheris_harness.py needs atheris: pip install atheris")

FUZZ_MODULES = ("test_fuzz_topk", "test_fuzz_state", "test_fuzz_misc")

_INSTRUMENT_LOG = io.StringIO()  # atheris prints one "INFO: Instrumenting <module>" line per module
with contextlib.redirect_stderr(_INSTRUMENT_LOG), atheris.instrument_imports(
    include=["ecomcore", "_strategies", "_reference", *FUZZ_MODULES]
):
    import ecomcore as ec

    for _m in pkgutil.iter_modules(ec.__path__):  # instrument every submodule, not just the eager ones
        try:
            __import__(f"ecomcore.{_m.name}")
        except ImportError:  # an optional dependency (e.g. dask) is missing
            pass
    import _reference
    import test_fuzz_misc
    import test_fuzz_state
    import test_fuzz_topk
    from _reference import assert_topk_close, assert_topk_equal, assert_topk_wellformed, reference_topk
    from _strategies import CASES, _meaning, check_cli_outcome, load_outcome, outcome, raw_csr

    import ecomcore_ext
    from ecomcore.cli import main as cli_main

# ---------------------------------------------------------------------------------------------
# findings
# ---------------------------------------------------------------------------------------------


class Findings:
    """Python-level findings: counted, deduplicated by (type, innermost location), inputs saved."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.total = 0
        self.by_key: dict[str, int] = {}
        self.number: dict[str, int] = {}
        self.current: tuple[str, bytes] = ("", b"")  # (target, input) being run

    def record(self, kind: str, exc: BaseException | None, text: str) -> None:
        self.total += 1
        where = "?"
        if exc is not None and exc.__traceback__ is not None:
            tb = traceback.extract_tb(exc.__traceback__)
            if tb:
                where = f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}"
        target, data = self.current
        key = f"{kind} {type(exc).__name__ if exc is not None else ''} at {where} [{target}]"
        n = self.by_key.get(key, 0)
        self.by_key[key] = n + 1
        num = self.number.setdefault(key, len(self.number) + 1)
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"finding-{num:03d}-{n:04d}-{target.replace(':', '_')}.bin")
        if n < 20:  # a few inputs per distinct finding are enough
            with open(path, "wb") as f:
                f.write(data)
        if n == 0:
            print(f"\n=== FINDING {num}: {key}\ninput saved to {path}\n{text}", file=sys.stderr,
                  flush=True)


FINDINGS: Findings  # set in main()


def _unraisable(hook_args: Any) -> None:
    exc = hook_args.exc_value
    text = "".join(traceback.format_exception(hook_args.exc_type, exc, hook_args.exc_traceback))
    FINDINGS.record("unraisable", exc, f"Exception ignored in {hook_args.object!r}:\n{text}")


def _thread_exception(hook_args: Any) -> None:
    exc = hook_args.exc_value
    text = "".join(traceback.format_exception(hook_args.exc_type, exc, hook_args.exc_traceback))
    FINDINGS.record("thread", exc, text)


# ---------------------------------------------------------------------------------------------
# targets driven by Hypothesis tests
# ---------------------------------------------------------------------------------------------


def _hypothesis_targets() -> list[tuple[str, Callable[[bytes], Any]]]:
    out = []
    for mod in (test_fuzz_topk, test_fuzz_state, test_fuzz_misc):
        for name in sorted(dir(mod)):
            fn = getattr(mod, name)
            hyp = getattr(fn, "hypothesis", None)
            if name.startswith("test_") and hyp is not None and hasattr(hyp, "fuzz_one_input"):
                out.append((f"hyp:{name}", hyp.fuzz_one_input))
    return out


# ---------------------------------------------------------------------------------------------
# raw CSR parts from the fuzzer's bytes
# ---------------------------------------------------------------------------------------------

INDEX_DTYPES = ["i4", "i8", "i4", "i8", "i2", "u4", "u8", "i1", "u1"]
VALUE_DTYPES = ["f8", "f8", "f4", "f2", "i8", "i4", "i1", "u2", "?"]
SPECIAL_INDICES = [-1, -2, 2**31 - 1, -(2**31), 2**32, 2**63 - 1, -(2**63)]
SPECIAL_VALUES = [np.nan, np.inf, -np.inf, -0.0, 1e308, -1e308, 5e-324, 1e-300, 3.0e38, 2.0**60]
HUGE_K = [2**31, 2**40, 2**62, np.int64(2**62), np.uint64(2**63)]
BAD_K = [0, -1, -(2**40), True, False, 1.0, 2.5, float("nan"), "3", None, np.float64(3.0), np.array([3]), 3 + 0j]


def _cast_ints(values: list, dt: str) -> np.ndarray:
    a = np.array(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    info = np.iinfo(dt)
    if a.size and (a.min() < info.min or a.max() > info.max):
        return a  # keep int64 rather than wrapping around
    return a.astype(dt)


def _values(fdp: Any, n: int, wild: bool) -> list:
    out = []
    for _ in range(n):
        if not wild or fdp.ConsumeIntInRange(0, 3):
            out.append(float(fdp.ConsumeIntInRange(-3, 3)))
        elif fdp.ConsumeBool():
            out.append(float(fdp.ConsumeIntInRange(-8, 8)) * 2.0 ** fdp.ConsumeIntInRange(-40, 40))
        else:
            out.append(fdp.PickValueInList(SPECIAL_VALUES))
    return out


def _as_value_dtype(vals: list, dt: str) -> np.ndarray:
    a = np.array(vals, dtype=np.float64)
    if dt == "?":
        return a != 0
    if dt[0] in "iu":
        if not np.isfinite(a).all() or (a.size and (a.min() < np.iinfo(dt).min or a.max() > np.iinfo(dt).max)):
            return a
        if (a != np.round(a)).any():
            return a
        return a.astype(dt)
    with np.errstate(over="ignore"):
        return a.astype(dt)


def fdp_raw_csr(fdp: Any, n_rows: int, n_cols: int, *, structural: bool = False, wild: bool = False):
    """CSR parts straight from the bytes: ``(matrix, meaning)`` as in ``_strategies.hostile_csr``."""
    if fdp.ConsumeIntInRange(0, 2):  # a monotone indptr from row counts, maybe damaged below
        counts = [fdp.ConsumeIntInRange(0, 4) for _ in range(n_rows)]
        indptr = [0]
        for c in counts:
            indptr.append(indptr[-1] + c)
        nnz = indptr[-1] + fdp.ConsumeIntInRange(0, 2)
        if not fdp.ConsumeIntInRange(0, 5) and indptr:  # one damaged entry
            indptr[fdp.ConsumeIntInRange(0, len(indptr) - 1)] = fdp.ConsumeIntInRange(-3, nnz + 3)
    else:  # anything
        length = max(0, n_rows + 1 + fdp.ConsumeIntInRange(-1, 1))
        nnz = fdp.ConsumeIntInRange(0, 12)
        indptr = [fdp.ConsumeIntInRange(-2, nnz + 2) for _ in range(length)]
    indices = []
    for _ in range(nnz):
        if fdp.ConsumeIntInRange(0, 15):
            indices.append(fdp.ConsumeIntInRange(0, max(n_cols - 1, 0)) if n_cols else 0)
        else:
            indices.append(fdp.PickValueInList(SPECIAL_INDICES + [n_cols, n_cols + 1]))
    data = _values(fdp, nnz + fdp.ConsumeIntInRange(-1, 1) * (not fdp.ConsumeIntInRange(0, 7)), wild)
    ip = _cast_ints(indptr, fdp.PickValueInList(INDEX_DTYPES))
    ind = _cast_ints(indices, fdp.PickValueInList(INDEX_DTYPES))
    dat = _as_value_dtype(data, fdp.PickValueInList(VALUE_DTYPES))
    if not fdp.ConsumeIntInRange(0, 30):
        ind = ind.reshape(1, -1)
    m = raw_csr(ip, ind, dat, (n_rows, n_cols))
    return m, _meaning(m.indptr, m.indices, m.data, (n_rows, n_cols), structural)


def fdp_small_dense(fdp: Any, n_rows: int, n_cols: int, lo: int = -3, hi: int = 3) -> np.ndarray:
    vals = fdp.ConsumeIntListInRange(n_rows * n_cols, lo, hi)
    vals += [0] * (n_rows * n_cols - len(vals))
    mask = [fdp.ConsumeIntInRange(0, 2) == 0 for _ in range(n_rows * n_cols)]
    return (np.array(vals, dtype=np.float64) * np.array(mask, dtype=bool)).reshape(n_rows, n_cols)


def fdp_k(fdp: Any) -> Any:
    r = fdp.ConsumeIntInRange(0, 15)
    if r < 12:
        return fdp.ConsumeIntInRange(1, 8)
    if r < 14:
        return fdp.PickValueInList(HUGE_K)
    return fdp.PickValueInList(BAD_K)


def _k_ok(k: Any) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)) and int(k) >= 1


def _ignored_tail_out_of_range(m: Any) -> bool:
    """Stored entries past ``indptr[-1]`` (which scipy ignores) hold indices outside the int32 range.

    ecomcore converts the whole index array before slicing it to ``indptr[-1]`` and refuses such
    a matrix with "indices holds values out of range": a clear ValueError naming the argument,
    tolerated here although the matrix itself is valid.
    """
    if isinstance(m, np.ndarray) or not hasattr(m, "indptr"):
        return False
    ind = np.asarray(m.indices).reshape(-1)
    ip = np.asarray(m.indptr)
    if ip.ndim != 1 or not ip.size or not 0 <= int(ip[-1]) <= ind.size:
        return False
    tail = ind[int(ip[-1]) :]
    return bool(tail.size) and (int(tail.max()) > 2**31 - 1 or int(tail.min()) < -(2**31 - 1))


def _refusal_ok(res: BaseException, wild: bool, *mats: Any) -> bool:
    """May a ValueError refuse inputs that are valid?  Only the overflow guard (values near the
    float range) and the ignored-tail case of :func:`_ignored_tail_out_of_range`."""
    msg = str(res)
    if wild and "overflow" in msg:
        return True
    return "holds values out of range" in msg and any(_ignored_tail_out_of_range(m) for m in mats)


def _exact(*mats: Any) -> bool:
    """Small integers only: every sum is exact in float32 and float64."""
    for m in mats:
        if m is None or isinstance(m, str):
            continue
        a = np.asarray(m, dtype=np.float64)
        if not (np.isfinite(a).all() and (np.abs(a) <= 8).all() and (a == np.round(a)).all()):
            return False
    return True


def _compare(res: Any, A, B, k: int, *, w=None, F=None, follow_weight=1.0, E=None, threshold=None) -> None:
    """``res`` against the dense reference: exact for small integers, else within rounding."""
    n_m = np.asarray(B).shape[1]
    assert_topk_wellformed(res, np.asarray(A).shape[0], n_m, min(int(k), 10**6))
    if _exact(A, B, F, w) and (threshold is None or res.scores.dtype == np.float64):
        ref = reference_topk(A, B, min(int(k), 10**6), w=w, F=F, follow_weight=follow_weight, E=E, threshold=threshold)
        assert_topk_equal(res, ref)
    else:
        with np.errstate(all="ignore"):
            assert_topk_close(res, A, B, min(int(k), 10**6), w=w, F=F, follow_weight=follow_weight, E=E,
                              threshold=threshold)


def target_raw_csr_sparse_topk(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    n_u, n_t, n_m = (fdp.ConsumeIntInRange(0, 5) for _ in range(3))
    side = fdp.PickValueInList(["user_tags", "merchant_tags", "follows", "exclude"])
    wild = fdp.ConsumeIntInRange(0, 3) == 0
    shapes = {"user_tags": (n_u, n_t), "merchant_tags": (n_t, n_m), "follows": (n_u, n_m), "exclude": (n_u, n_m)}
    hostile, meaning = fdp_raw_csr(fdp, *shapes[side], structural=side == "exclude", wild=wild)
    dense = {"user_tags": fdp_small_dense(fdp, n_u, n_t), "merchant_tags": fdp_small_dense(fdp, n_t, n_m)}
    dense["follows"] = fdp_small_dense(fdp, n_u, n_m, 0, 2) if fdp.ConsumeBool() else None
    dense["exclude"] = fdp_small_dense(fdp, n_u, n_m, 0, 1) if fdp.ConsumeBool() else None
    args = {key: (None if v is None else sp.csr_array(v)) for key, v in dense.items()}
    args[side] = hostile
    dense[side] = meaning
    k = fdp_k(fdp)
    kw: dict[str, Any] = {"n_threads": fdp.PickValueInList([None, 1, 2])}
    w = None
    if fdp.ConsumeBool():
        w = np.array([fdp.PickValueInList([0.0, 0.5, 1.0, 2.0]) for _ in range(n_m)], dtype=np.float64)
        kw["merchant_weight"] = w
    fw = fdp.PickValueInList([1.0, 0.0, -2.0, 0.5])
    threshold = fdp.PickValueInList([None, None, None, -1.0, 0.0, 1.5])
    ok, res = outcome(
        ec.sparse_topk, args["user_tags"], args["merchant_tags"], k, follows=args["follows"],
        exclude=args["exclude"], follow_weight=fw, threshold=threshold,
        names=(side, "k") + (("user_tags", "merchant_tags") if wild else ()), **kw,
    )
    if not _k_ok(k):
        assert not ok, f"bad k={k!r} accepted"
        return
    if isinstance(meaning, str):
        assert not ok, f"{side}: invalid CSR parts accepted"
        assert isinstance(res, ValueError), repr(res)
        return
    if not ok:
        assert _refusal_ok(res, wild, hostile), repr(res)
        return
    _compare(res, dense["user_tags"], dense["merchant_tags"], k, w=w, F=dense["follows"], follow_weight=fw,
             E=dense["exclude"], threshold=threshold)


def target_raw_csr_ranker(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    n_u, n_t, n_m = fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, 6)
    wild = fdp.ConsumeIntInRange(0, 3) == 0
    if fdp.ConsumeIntInRange(0, 3) == 0:
        B_in, B = fdp_raw_csr(fdp, n_t, n_m, wild=wild)
    else:
        B = fdp_small_dense(fdp, n_t, n_m)
        B_in = sp.csr_array(B) if fdp.ConsumeBool() else B.astype(fdp.PickValueInList([np.float64, np.float32]))
    trust = np.array([fdp.PickValueInList([0.0, 0.25, 0.5, 1.0]) for _ in range(n_m)])
    boost = np.array([fdp.PickValueInList([0.0, 1.0, 2.0]) for _ in range(n_m)])
    banned = np.array([fdp.ConsumeIntInRange(0, 3) == 0 for _ in range(n_m)], dtype=bool)
    if fdp.ConsumeBool():
        banned = np.flatnonzero(banned)
    kw = dict(trust=trust, boost=boost, banned=banned, beta=fdp.PickValueInList([0.0, 1.0, 2.0]),
              min_trust=fdp.PickValueInList([0.0, 0.3, 1.0]), follow_weight=fdp.PickValueInList([1.0, 0.0, -2.0]))
    ok, r = outcome(ec.Ranker, B_in, **kw, names=("merchant_tags",))
    if isinstance(B, str):
        assert not ok, "invalid merchant_tags accepted"
        return
    if not ok:
        assert _refusal_ok(r, wild, B_in), repr(r)
        return
    w = _reference.reference_weights(n_m, **{key: kw[key] for key in ("trust", "boost", "banned", "beta", "min_trust")})
    np.testing.assert_array_equal(r.merchant_weight, w)
    fw = kw["follow_weight"]
    A_in, A = fdp_raw_csr(fdp, n_u, n_t, wild=wild)
    k = fdp_k(fdp)
    method = fdp.PickValueInList(["topk", "topk", "iter_topk"])
    F = fdp_small_dense(fdp, n_u, n_m, 0, 2) if fdp.ConsumeBool() else None
    follows = None if F is None else sp.csr_array(F)
    names = ("user_tags", "k") + (("merchant_tags",) if wild else ())
    if method == "topk":
        ok, res = outcome(r.topk, A_in, k, follows=follows, n_threads=fdp.PickValueInList([None, 1, 2]), names=names)
    else:
        chunk = fdp.ConsumeIntInRange(1, 4)
        ok, res = outcome(
            lambda: ec.concat_topk([b for _, b in r.iter_topk(A_in, k, chunk_rows=chunk, follows=follows)]),
            names=names + ("blocks",),
        )
    if not _k_ok(k) or isinstance(A, str):
        assert not ok, "bad input accepted"
        return
    if method == "iter_topk" and n_u == 0:
        assert not ok  # concat_topk of no blocks
        return
    if not ok:
        assert _refusal_ok(res, wild, A_in), repr(res)
        return
    _compare(res, A, B, k, w=w, F=F, follow_weight=fw)
    # topk_one and explain on each row agree with the batch result
    for u in range(min(n_u, 3)):
        ids = np.flatnonzero(A[u])
        fids = np.flatnonzero(F[u]) if F is not None else None
        kw1 = {} if F is None else {"follow_ids": fids, "follow_weights": F[u, fids]}
        ok1, one = outcome(r.topk_one, ids, A[u, ids], k, **kw1, names=("tag_ids", "tag_weights", "k"))
        if not ok1:
            assert wild and "overflow" in str(one), repr(one)
            continue
        c = int(res.counts[u])
        assert int(one.counts[0]) == c, (one.counts, res.counts[u])
        np.testing.assert_array_equal(one.indices[0, :c], res.indices[u, :c])
        np.testing.assert_array_equal(one.scores[0, :c], res.scores[u, :c])
        if n_m and _exact(A, B, F, w):
            ok2, ex = outcome(r.explain, ids, A[u, ids], np.arange(n_m), **kw1, names=("tag_ids",))
            assert ok2, ex
            score, cand, _ = _reference.reference_scores(A[u : u + 1], B, w=w, F=None if F is None else F[u : u + 1],
                                                          follow_weight=fw)
            np.testing.assert_array_equal(ex["score"], score[0])
            np.testing.assert_array_equal(ex["candidate"], cand[0])


# ---------------------------------------------------------------------------------------------
# file bytes: state files and CLI inputs
# ---------------------------------------------------------------------------------------------


class _Session:
    """Valid files written once per run, and a scratch directory for the hostile ones."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ecomcore-atheris-files-")
        d = self.dir
        from test_trust_fold import INDICATORS, T0

        self.T0 = T0
        self.trust_model = ec.TrustModel(INDICATORS, n_merchants=6)
        self.trust_path, self.trust_state = test_fuzz_state._trust_file(d)
        os.rename(self.trust_path, os.path.join(d, "trust-good.npz"))
        self.trust_path = os.path.join(d, "trust-good.npz")
        self.interest_path, self.interest_state, self.interest_model, self.item_tags = test_fuzz_state._interest_file(d)
        os.rename(self.interest_path, os.path.join(d, "interest-good.npz"))
        self.interest_path = os.path.join(d, "interest-good.npz")
        g = ec.IdentityGraph(max_stores_per_key=2)
        g.link([0, 1, 1, 2, 3, 4, 5], [1, "a", 2, "b", ("dev", 1), 2.5, 1])
        g.ban([0, 3], reason="fraud")
        self.graph = g
        self.graph_path = os.path.join(d, "graph-good.npz")
        g.save(self.graph_path)
        # the CLI's valid inputs
        X = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 1, 0], [1, 1, 1], [0, 0, 1]]))
        Bm = sp.csr_matrix(np.array([[1.0, 0], [0, 2], [1, 1]]))
        sp.save_npz(f"{d}/item_tags.npz", X)
        sp.save_npz(f"{d}/b.npz", Bm)
        with open(f"{d}/events.csv", "w") as f:
            f.write("user,item,kind,time\n0,1,view,1700000000\n1,2,buy,1700000100\n2,0,cart,1700000200\n")
        names = [i.name for i in ec.default_indicators()]
        self.indicator_names = names
        with open(f"{d}/mevents.csv", "w") as f:
            f.write(f"merchant,indicator,value,time\n0,{names[0]},1,1700000000\n1,{names[0]},0,1700000100\n")
        for argv in (
            ["profiles", "--events", f"{d}/events.csv", "--item-tags", f"{d}/item_tags.npz", "--out", f"{d}/a.npz",
             "--save-state", f"{d}/pstate.npz", "--quiet"],
            ["trust", "--events", f"{d}/mevents.csv", "--merchants", "2", "--out", f"{d}/t.npz",
             "--save-state", f"{d}/tstate.npz", "--quiet"],
        ):
            rc, err = _run_cli(argv)
            if rc != 0:
                raise RuntimeError(f"setting up the CLI files failed: {argv}: {err}")
        self.good = {
            "trust": _read(self.trust_path),
            "interest": _read(self.interest_path),
            "graph": _read(self.graph_path),
            "sparse": _read(f"{d}/b.npz"),
            "item_tags": _read(f"{d}/item_tags.npz"),
            "profiles": _read(f"{d}/a.npz"),
            "pstate": _read(f"{d}/pstate.npz"),
            "tstate": _read(f"{d}/tstate.npz"),
            "trust_out": _read(f"{d}/t.npz"),
        }
        self.members = {name: _zip_members(blob) for name, blob in self.good.items()}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _zip_members(blob: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def _edit(fdp: Any, blob: bytes) -> bytes:
    """A few byte-level edits: overwrite, insert, delete, truncate, append."""
    b = bytearray(blob)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        op = fdp.ConsumeIntInRange(0, 4)
        pos = fdp.ConsumeIntInRange(0, max(len(b), 1) - 1) if b else 0
        if op == 0 and b:
            b[pos] = fdp.ConsumeIntInRange(0, 255)
        elif op == 1:
            b[pos:pos] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
        elif op == 2 and b:
            del b[pos : pos + fdp.ConsumeIntInRange(1, 16)]
        elif op == 3:
            del b[pos:]
        else:
            b += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
    return bytes(b)


def _npy_replacement(fdp: Any) -> bytes:
    """A well-formed .npy of a fuzzer-chosen dtype, shape and contents."""
    dt = np.dtype(fdp.PickValueInList(["<f8", "<f4", "<i8", "<i4", "<i2", "|u1", "|b1", "<u8", "<c16", "<f2", ">i8"]))
    ndim = fdp.PickValueInList([1, 1, 1, 0, 2])
    shape = tuple(fdp.ConsumeIntInRange(0, 6) for _ in range(ndim))
    n = int(np.prod(shape)) if shape else 1
    raw = fdp.ConsumeBytes(n * dt.itemsize)
    raw += b"\0" * (n * dt.itemsize - len(raw))
    arr = np.frombuffer(raw, dtype=dt).reshape(shape)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _rezip(fdp: Any, members: list[tuple[str, bytes]]) -> bytes:
    """A valid zip (correct CRCs) whose members were edited, replaced, dropped or added."""
    members = list(members)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        op = fdp.ConsumeIntInRange(0, 5)
        if not members:
            op = 4
        i = fdp.ConsumeIntInRange(0, max(len(members) - 1, 0))
        if op in (0, 1):  # edit the bytes of a member (header, data or meta JSON)
            name, blob = members[i]
            members[i] = (name, _edit(fdp, blob))
        elif op == 2:
            members[i] = (members[i][0], _npy_replacement(fdp))
        elif op == 3:
            del members[i]
        elif op == 4:
            members.append((fdp.PickValueInList(["extra.npy", "__meta__.npy", "x", "dir/", "data.npy"]),
                            _npy_replacement(fdp) if fdp.ConsumeBool() else fdp.ConsumeBytes(32)))
        else:  # a JSON header with fuzzer-chosen values
            meta_i = next((j for j, (n, _) in enumerate(members) if n == "__meta__.npy"), None)
            if meta_i is not None:
                try:
                    meta = json.loads(np.load(io.BytesIO(members[meta_i][1]), allow_pickle=False).tobytes())
                except Exception:  # an earlier edit broke it
                    continue
                if isinstance(meta, dict) and isinstance(meta.get("meta"), dict) and meta["meta"]:
                    key = fdp.PickValueInList(sorted(meta["meta"]))
                    meta["meta"][key] = fdp.PickValueInList(
                        [None, "x", -1, 0, 1, 1e308, -1e308, [1, 2], {"a": 1}, True, 2**70, 2**63, 0.5, ""])
                    buf = io.BytesIO()
                    np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
                    members[meta_i] = ("__meta__.npy", buf.getvalue())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": allowed, and a case worth reading
        for name, blob in members:
            z.writestr(name, blob)
    return out.getvalue()


def fdp_file_bytes(fdp: Any, session: _Session, kind: str) -> bytes:
    mode = fdp.ConsumeIntInRange(0, 5)
    if mode == 0:
        prefix = fdp.PickValueInList([b"", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x04"])
        return prefix + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    if mode == 1:
        return _edit(fdp, session.good[kind])
    return _rezip(fdp, session.members[kind])


SESSION: _Session  # set in main()


def target_state_file_bytes(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    s = SESSION
    kind = fdp.PickValueInList(["trust", "interest", "graph"])
    path = os.path.join(s.dir, f"hostile-{kind}.npz")
    with open(path, "wb") as f:
        f.write(fdp_file_bytes(fdp, s, kind))
    if kind == "trust":
        ok, st = load_outcome(ec.TrustState.load, path, "fuzzed")
        if not ok:
            return
        ok, stats = outcome(st.stats, s.T0 + 86400.0, names=("now", "state", "TrustState"))
        if ok:
            assert np.all(np.isfinite(stats.n)) and np.all(np.isfinite(stats.s)), "non-finite stats from a loaded state"
        for other in (st, s.trust_state):
            ok, m = outcome(st.merge, other, names=("other",))
            if ok:
                outcome(m.stats, s.T0, names=("now", "state", "TrustState"))
        outcome(s.trust_model.fold, {"merchant": [0], "indicator": [0], "value": [1.0], "time": [s.T0]}, st,
                names=("state",))
        # a loaded state whose sums break an indicator's value range (a rating mean above 5) is
        # refused by score's own check of the statistics ("stats.s: ... outside [n, 5 n]")
        ok, sc = outcome(s.trust_model.score, st, s.T0 + 86400.0, names=("state", "stats"))
        if ok:
            idx = np.asarray(sc.index)
            assert np.all(np.isfinite(idx)) and np.all((idx >= 0) & (idx <= 1)), idx
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + ".out.npz")
        ok, _ = outcome(st.save, path + ".out.npz", names=("state", "path"))
        if ok:
            back = ec.TrustState.load(path + ".out.npz")  # what was saved must load again
            ok_a, a = outcome(st.stats, s.T0, names=("now",))
            ok_b, b = outcome(back.stats, s.T0, names=("now",))
            assert ok_a == ok_b, (a, b)
            if ok_a:
                np.testing.assert_array_equal(a.events, b.events)
    elif kind == "interest":
        ok, st = load_outcome(ec.InterestState.load, path, "fuzzed")
        if not ok:
            return
        ok, sums = outcome(st.decayed_sums, s.T0, names=("now", "state"))
        if ok:
            assert np.all(np.isfinite(sums.data))
        outcome(s.interest_model.fold, {"user": [0], "item": [1], "kind": [0], "time": [s.T0]}, s.item_tags,
                into=st, names=("into", "item_tags", "state", "events"))
        outcome(s.interest_model.profiles, st, names=("state",))
        outcome(st.merge, s.interest_state, names=("other",))
    else:
        ok, g = load_outcome(ec.IdentityGraph.load, path, "fuzzed")
        if not ok:
            return
        for key in [1, "a", 2, "b", ("dev", 1), 2.5, "zz"]:
            outcome(g.blocked, [key], names=("keys",))
        outcome(g.link, [9], ["new"], names=("store_ids", "keys"))
        outcome(g.ban, [9], names=("store_ids",))
        outcome(g.banned_mask, 12, names=("n",))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + ".out.npz")
        ok, _ = outcome(g.save, path + ".out.npz", names=("path", "graph"))
        if ok:
            back = ec.IdentityGraph.load(path + ".out.npz")
            for key in [1, "a", 2, "b", ("dev", 1), 2.5, "zz", "new"]:
                assert back.blocked([key]) == g.blocked([key]), key


def _run_cli(argv: list[str]) -> tuple[Any, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = cli_main(argv)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return rc, err.getvalue()


CSV_TOKENS = ["0", "1", "2", "-1", "99", "1700000000", "nan", "inf", "-inf", "1e308", "x", "", "view", "buy", "cart",
              "0.5", "9223372036854775808", '"', "1,2", "\x00", "é", " 1", "True"]


def _csv_bytes(fdp: Any, good: str, header_choices: list[str]) -> bytes:
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    if mode == 1:
        return _edit(fdp, good.encode())
    lines = good.splitlines() if mode == 2 else [fdp.PickValueInList(header_choices)]
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        n = fdp.ConsumeIntInRange(1, 6)
        lines.append(",".join(fdp.PickValueInList(CSV_TOKENS) for _ in range(n)))
    return ("\n".join(lines) + ("\n" if fdp.ConsumeBool() else "")).encode("utf-8", "surrogatepass")


def target_cli_file_bytes(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    s = SESSION
    d = s.dir
    cmd = fdp.PickValueInList(["profiles_events", "profiles_tags", "profiles_state", "trust_events", "trust_state",
                               "rank_profiles", "rank_b", "rank_trust", "rank_banned", "audience_profiles",
                               "audience_trust"])
    if cmd.endswith("_events"):
        bad = f"{d}/bad.csv"
        if cmd == "profiles_events":
            good = _read(f"{d}/events.csv").decode()
            blob = _csv_bytes(fdp, good, ["user,item,kind,time", "user,item,kind,time,weight", "user,item"])
        else:
            good = _read(f"{d}/mevents.csv").decode()
            blob = _csv_bytes(fdp, good, ["merchant,indicator,value,time", "merchant,indicator,value,time,buyer"])
    elif cmd == "rank_banned":
        bad = f"{d}/bad.npy"
        blob = _npy_replacement(fdp) if fdp.ConsumeIntInRange(0, 2) else _edit(fdp, _npy_replacement(fdp))
    else:
        bad = f"{d}/bad.npz"
        kind = {"profiles_tags": "item_tags", "profiles_state": "pstate", "trust_state": "tstate",
                "rank_profiles": "profiles", "rank_b": "sparse", "rank_trust": "trust_out",
                "audience_profiles": "profiles", "audience_trust": "trust_out"}[cmd]
        blob = fdp_file_bytes(fdp, s, kind)
    with open(bad, "wb") as f:
        f.write(blob)
    argv = {
        "profiles_events": ["profiles", "--events", bad, "--item-tags", f"{d}/item_tags.npz", "--out", f"{d}/o.npz"],
        "profiles_tags": ["profiles", "--events", f"{d}/events.csv", "--item-tags", bad, "--out", f"{d}/o.npz"],
        "profiles_state": ["profiles", "--events", f"{d}/events.csv", "--item-tags", f"{d}/item_tags.npz", "--out",
                           f"{d}/o.npz", "--state", bad],
        "trust_events": ["trust", "--events", bad, "--merchants", "2", "--out", f"{d}/o.npz"],
        "trust_state": ["trust", "--events", f"{d}/mevents.csv", "--merchants", "2", "--out", f"{d}/o.npz",
                        "--state", bad],
        "rank_profiles": ["rank", "--profiles", bad, "--merchant-tags", f"{d}/b.npz", "--out", f"{d}/o.csv"],
        "rank_b": ["rank", "--profiles", f"{d}/a.npz", "--merchant-tags", bad, "--out", f"{d}/o.csv"],
        "rank_trust": ["rank", "--profiles", f"{d}/a.npz", "--merchant-tags", f"{d}/b.npz", "--trust", bad, "--out",
                       f"{d}/o.csv"],
        "rank_banned": ["rank", "--profiles", f"{d}/a.npz", "--merchant-tags", f"{d}/b.npz", "--banned", bad, "--out",
                        f"{d}/o.csv"],
        "audience_profiles": ["audience", "--profiles", bad, "--merchant-tags", f"{d}/b.npz", "--merchants", "0",
                              "--k", "2", "--out", f"{d}/o.csv"],
        "audience_trust": ["audience", "--profiles", f"{d}/a.npz", "--merchant-tags", f"{d}/b.npz", "--trust", bad,
                           "--merchants", "0", "--k", "2", "--out", f"{d}/o.csv"],
    }[cmd]
    CASES["calls"] += 1
    rc, err = _run_cli([*argv, "--quiet"])
    check_cli_outcome(rc, err, bad)  # exit 0: the bytes were still a valid input


# ---------------------------------------------------------------------------------------------
# the fuzz loop
# ---------------------------------------------------------------------------------------------

TARGETS: list[tuple[str, Callable[[bytes], Any]]] = []
STATS = {"execs": 0, "hyp_invalid": 0, "start": 0.0, "deadline": None, "runs": None, "last_status": 0.0,
         "status_every": 60.0}
PER_TARGET: collections.Counter = collections.Counter()


def _summary() -> str:
    secs = time.monotonic() - STATS["start"]
    build = "debug (bounds checks)" if ecomcore_ext.BUILD_INFO.get("debug") else "release"
    if ecomcore_ext.BUILD_INFO.get("asan"):
        build += " + ASan"
    return (
        f"ecomcore atheris: {STATS['execs']} executions in {secs:.1f}s ({STATS['execs'] / max(secs, 1e-9):.1f}/s), "
        f"{FINDINGS.total} findings ({len(FINDINGS.by_key)} distinct); {CASES['calls']} checked calls "
        f"({CASES['errors']} rejected with a named ValueError/TypeError), {STATS['hyp_invalid']} inputs too short "
        f"for their Hypothesis target; {build} build"
    )


def _finish() -> None:
    sys.stdout.flush()
    print("\nper target: " + ", ".join(f"{name}={PER_TARGET[name]}" for name, _ in TARGETS), file=sys.stderr)
    for key, n in FINDINGS.by_key.items():
        print(f"finding x{n}: {key}", file=sys.stderr)
    if FINDINGS.total:
        print(f"finding inputs in {FINDINGS.directory} (replay: {sys.argv[0]} --replay FILE)", file=sys.stderr)
    elif _CLEANUP.get("findings"):
        shutil.rmtree(FINDINGS.directory, ignore_errors=True)
    for path in _CLEANUP.get("dirs", []):
        shutil.rmtree(path, ignore_errors=True)
    print(_summary(), flush=True)
    sys.stderr.flush()
    os._exit(1 if FINDINGS.total else 0)  # libFuzzer would otherwise keep going


_CLEANUP: dict[str, Any] = {}


def run_one(data: bytes) -> None:
    """One input: pick the target from the first byte, run it with the rest, record findings."""
    if not data:
        return
    name, fn = TARGETS[data[0] % len(TARGETS)]
    rest = data[1:]
    FINDINGS.current = (name, data)
    PER_TARGET[name] += 1
    try:
        res = fn(rest)
        if name.startswith("hyp:") and res is None:
            STATS["hyp_invalid"] += 1
    except Exception as e:
        FINDINGS.record("exception", e, "".join(traceback.format_exception(type(e), e, e.__traceback__)))


def TestOneInput(data: bytes) -> None:
    now = time.monotonic()
    if (STATS["deadline"] is not None and now >= STATS["deadline"]) or (
        STATS["runs"] is not None and STATS["execs"] >= STATS["runs"]
    ):
        _finish()
    STATS["execs"] += 1
    run_one(data)
    if now - STATS["last_status"] >= STATS["status_every"]:
        STATS["last_status"] = now
        print(f"[{now - STATS['start']:.0f}s] {_summary()}", file=sys.stderr, flush=True)


def _seed_corpus(directory: str) -> None:
    """A few pseudo-random inputs per target, so that Hypothesis targets start from valid buffers."""
    rnd = random.Random(20240610)
    for i in range(len(TARGETS)):
        for size in (64, 512, 2048):
            with open(os.path.join(directory, f"seed-{i:02d}-{size}"), "wb") as f:
                f.write(bytes([i]) + rnd.randbytes(size))


def _pop_option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name or a.startswith(name + "="):
            del argv[i]
            return a.split("=", 1)[1] if "=" in a else ""
    return None


def main(argv: list[str]) -> None:
    global FINDINGS, SESSION
    args = list(argv[1:])
    if _pop_option(args, "--list") is not None:
        TARGETS.extend(_all_targets())
        for i, (name, _) in enumerate(TARGETS):
            print(f"{i:3d} {name}")
        return
    replay = _pop_option(args, "--replay")
    findings_dir = _pop_option(args, "--findings")
    only = _pop_option(args, "--only")
    keep_corpus = _pop_option(args, "--keep-corpus") is not None
    status = _pop_option(args, "--status")
    max_time = _pop_option(args, "-max_total_time")
    runs = _pop_option(args, "-runs") or _pop_option(args, "-atheris_runs")
    if status:
        STATS["status_every"] = float(status)
    if findings_dir:
        os.makedirs(findings_dir, exist_ok=True)
    else:
        findings_dir = tempfile.mkdtemp(prefix="ecomcore-atheris-findings-")
        _CLEANUP["findings"] = True
    FINDINGS = Findings(findings_dir)
    TARGETS.extend(_all_targets())
    if only:
        wanted = set(only.split(","))
        unknown = wanted - {n for n, _ in TARGETS} - {n.split(":", 1)[-1] for n, _ in TARGETS}
        if unknown:
            sys.exit(f"--only: unknown targets {sorted(unknown)} (see --list)")
        TARGETS[:] = [(n, f) for n, f in TARGETS if n in wanted or n.split(":", 1)[-1] in wanted]
    SESSION = _Session()
    _CLEANUP["dirs"] = [SESSION.dir]
    sys.unraisablehook = _unraisable
    threading.excepthook = _thread_exception
    faulthandler.enable()  # a Python traceback on a crash (libFuzzer then writes the input)
    print(f"ecomcore {ec.__version__} from {os.path.dirname(ec.__file__)}; ecomcore_ext from "
          f"{os.path.dirname(ecomcore_ext.__file__)}; BUILD_INFO {ecomcore_ext.BUILD_INFO}", flush=True)
    n_instr = _INSTRUMENT_LOG.getvalue().count("Instrumenting")
    print(f"{n_instr} modules instrumented for coverage; {len(TARGETS)} targets: "
          f"{', '.join(n for n, _ in TARGETS)}", flush=True)
    STATS["start"] = STATS["last_status"] = time.monotonic()
    if replay is not None:
        files = ([replay] if replay else []) + [a for a in args if not a.startswith("-")]
        for path in files:
            before = FINDINGS.total
            STATS["execs"] += 1
            run_one(_read(path))
            print(f"{path}: {'FINDING' if FINDINGS.total > before else 'ok'}", flush=True)
        _finish()
    if max_time is None and runs is None:
        max_time = "60"
    if max_time is not None:
        STATS["deadline"] = STATS["start"] + float(max_time)
    if runs is not None:
        STATS["runs"] = int(runs)
    corpus = [a for a in args if not a.startswith("-") and os.path.isdir(a)]
    if not corpus:
        c = tempfile.mkdtemp(prefix="ecomcore-atheris-corpus-")
        _seed_corpus(c)
        args.append(c)
        if not keep_corpus:
            _CLEANUP["dirs"].append(c)
        else:
            print(f"corpus: {c}", flush=True)
    defaults = {"-timeout": "120", "-rss_limit_mb": "4096", "-artifact_prefix": findings_dir.rstrip("/") + "/"}
    for flag, value in defaults.items():
        if not any(a.startswith(flag + "=") for a in args):
            args.insert(0, f"{flag}={value}")
    # libFuzzer's own time limit as a backstop only: the harness stops itself (with its summary)
    if max_time is not None:
        args.insert(0, f"-max_total_time={int(float(max_time)) + 600}")
    print("libFuzzer arguments: " + " ".join(args), flush=True)
    atheris.Setup([argv[0], *args], TestOneInput)
    atheris.Fuzz()
    _finish()  # only reached when libFuzzer stops by itself (e.g. its backstop time)


def _all_targets() -> list[tuple[str, Callable[[bytes], Any]]]:
    return [
        *_hypothesis_targets(),
        ("raw_csr_sparse_topk", target_raw_csr_sparse_topk),
        ("raw_csr_ranker", target_raw_csr_ranker),
        ("state_file_bytes", target_state_file_bytes),
        ("cli_file_bytes", target_cli_file_bytes),
    ]


if __name__ == "__main__":
    main(sys.argv)
