"""Batch subcommands of the ``ecomcore`` command line: ``profiles``, ``trust`` and ``rank``.

Each step reads files and writes one file (plus, optionally, a state), so the steps can run as
separate batch jobs::

    ecomcore profiles --events EVENTS.csv --item-tags ITEM_TAGS.npz --out PROFILES.npz
    ecomcore trust --events MERCHANT_EVENTS.csv --merchants N --out TRUST.npz
    ecomcore rank --profiles PROFILES.npz --merchant-tags B.npz --trust TRUST.npz --k 10 --out RANK.csv \\
        [--follows FOLLOWS.npz] [--exclude EXCLUDE.csv]

Files
-----
* Event tables are CSV (stdlib :mod:`csv`, a header row naming the columns; other columns are
  ignored) or Parquet (``.parquet``/``.pq``, only when pyarrow is importable).

  - behaviour events (``profiles``): ``user`` (int id), ``item`` (int id), ``kind`` (an event
    kind name: view, fav, cart, buy ...), ``time`` (Unix seconds), optional ``weight`` (>= 0).
  - merchant events (``trust``): ``merchant`` (int id), ``indicator`` (a name from
    :func:`ecomcore.default_indicators`), ``value`` (number), ``time`` (Unix seconds), optional
    ``buyer`` (int id >= 0; an empty field or -1 means "no buyer").
* Matrices are scipy ``.npz`` files (:func:`scipy.sparse.save_npz`): ``ITEM_TAGS.npz`` items x
  tags, ``B.npz`` tags x merchants; ``PROFILES.npz`` (written by ``profiles``) users x tags,
  float32, compressed.
* ``TRUST.npz`` (written by ``trust``) is a versioned, pickle-free ecomcore ``.npz`` holding
  ``index``, ``boost``, ``confidence`` (n_merchants,) and ``dimensions`` (n_merchants, 6), plus
  ``dimension_names``.
* ``BANNED.npy`` (``rank --banned``): a boolean mask over merchants or an array of merchant ids.
  ``CATEGORIES.npy`` (``trust --categories``): an integer category id per merchant.
  ``GUARANTEE.npy`` (``trust --guarantee``): "trusted purchase" flags per merchant, bool, shape
  (N,) or (N, G); they set the boost (1 + 0.05 per guarantee), which is 1 without them.
* ``profiles --event-weights view=1,like=1.5,buy=5`` replaces the default event kinds and weights
  (view 1, fav 2, cart 3, buy 5); events of any other kind are errors.
* ``FOLLOWS.npz`` (``rank --follows``): users x merchants follow strengths F (scipy sparse
  ``.npz``, finite values, e.g. :meth:`ecomcore.InterestModel.follow_matrix`), passed as
  ``Ranker.topk(follows=)``; ``--follow-weight`` scales it.
* ``EXCLUDE`` (``rank --exclude``): users x merchants pairs never to show, as a scipy sparse
  ``.npz`` (any stored entry excludes) or a CSV/Parquet table with columns ``user,merchant``
  (duplicates allowed); passed as ``Ranker.topk(exclude=)``.
* ``RANK.csv`` (written by ``rank``): header ``user,rank,merchant,score,interest,follow,weight``;
  one row per ranked merchant, ranks from 1, ``score`` exactly as :meth:`ecomcore.Ranker.topk`
  computes it (float32, written with enough digits to round-trip), ``interest`` = A[u] . B[:, m]
  (float64, recomputed for the listed pairs), ``follow`` = follow_weight * F[u, m] (0 without
  ``--follows``) and ``weight`` = trust ** beta * boost, so that
  ``score == (interest + follow) * weight`` up to float32 rounding.
* States (``--state`` in, ``--save-state`` out) are :meth:`InterestState.save` /
  :meth:`TrustState.save` files; folding new events into a saved state gives the same result as
  folding all events at once.

Errors
------
A bad input file makes the command print ``ecomcore CMD: FILE:ROW: PROBLEM`` (``ROW`` is the
line number in a CSV file, header = line 1; the row number, from 1, in a Parquet file; absent
for ``.npz``/``.npy`` files) to stderr and exit with status 1, writing no output at all: every
output goes to a temporary file next to it and is renamed into place only once all of them are
complete.  Usage errors exit with status 2 (argparse).

Progress
--------
Reading a CSV file (by bytes), folding (``profiles``, ``trust``: events are folded in calls of
2**20 events, so that the bar moves; more than that many events fold in several calls, equal to
one fold up to float64 rounding) and ranking (by users) show a progress bar on stderr
(:mod:`ecomcore.progress`: tqdm if importable, else a built-in one), and every command prints a
one-line summary there -- only when stderr is a terminal and ``--quiet`` is not given; otherwise
the commands print nothing on success.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import tempfile
from typing import Any, Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from ecomcore._argtypes import non_negative_real as _non_negative_real
from ecomcore._validation import checked_tocsr
from ecomcore.progress import Progress, progress_bar

__all__ = ["add_batch_parsers", "run_batch", "BatchError"]

_RANK_HEADER = ("user", "rank", "merchant", "score", "interest", "follow", "weight")
_TRUST_KIND = "ecomcore.trust_scores"
_TRUST_VERSION = 1


class BatchError(Exception):
    """A problem with an input file: ``file``, 1-based ``row`` (or None) and a message.

    Parameters
    ----------
    file : str
        The file at fault.
    row : int or None
        Line (CSV) or row (Parquet) number; None when the problem is not tied to a row.
    problem : str
        What is wrong.
    """

    def __init__(self, file: str, row: Optional[int], problem: str) -> None:
        self.file, self.row, self.problem = file, row, problem
        super().__init__(f"{file}:{row}: {problem}" if row is not None else f"{file}: {problem}")


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------

#: Events folded per call when a file holds more (one call below: bit-identical to the API).
_FOLD_CHUNK = 1 << 20
#: CSV lines read between two progress updates.
_READ_EVERY = 1 << 15


def _lines(f: Any, bar: Progress) -> Any:
    """The lines of ``f``, updating ``bar`` with the characters read (~ bytes)."""
    done = 0
    for j, line in enumerate(f):
        done += len(line)
        if not j % _READ_EVERY:
            bar.update(done)
        yield line
    bar.update(done)


def _fold_chunks(fold: Callable[[dict, bool], Any], events: dict, t: _Table, label: str, quiet: bool) -> Any:
    """``fold(chunk, first)`` over ``events`` in chunks of ``_FOLD_CHUNK`` rows with a progress bar.

    A model error names the file row (the chunk's offset added to the row in the message).
    """
    n = t.n
    result = None
    with progress_bar(label, total=n, quiet=quiet) as bar:
        for s0 in range(0, max(n, 1), _FOLD_CHUNK):
            s1 = min(s0 + _FOLD_CHUNK, n)
            chunk = events if (s0 == 0 and s1 == n) else {k: v[s0:s1] for k, v in events.items()}
            try:
                result = fold(chunk, s0 == 0)
            except (ValueError, TypeError) as e:
                raise _model_error(t, t.path, e, offset=s0) from None
            bar.update(s1)
    return result


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


class _Table:
    """Columns of an event file as str (CSV) or typed (Parquet) arrays, with row numbers."""

    def __init__(self, path: str, cols: dict[str, np.ndarray], rows: np.ndarray, n: int) -> None:
        self.path, self.cols, self.rows, self.n = path, cols, rows, n

    def row(self, j: int) -> int:
        return int(self.rows[j])


def _read_table(path: str, required: Sequence[str], optional: Sequence[str], quiet: bool = True) -> _Table:
    if not os.path.isfile(path):
        raise BatchError(path, None, "no such file")
    if path.lower().endswith((".parquet", ".pq")):
        return _read_parquet(path, required, optional)
    try:
        bar = progress_bar(f"reading {os.path.basename(path)}", os.path.getsize(path), quiet=quiet, unit="B")
        with open(path, newline="", encoding="utf-8") as f, bar:
            reader = csv.reader(_lines(f, bar) if bar.enabled else f)
            header = next(reader, None)
            if header is None:
                raise BatchError(path, 1, "empty file (expected a header row)")
            header = [h.strip() for h in header]
            for name in required:
                if name not in header:
                    raise BatchError(path, 1, f"missing column {name!r} (header: {','.join(header)})")
            wanted = [c for c in (*required, *optional) if c in header]
            pos = [header.index(c) for c in wanted]
            width = len(header)
            recs: list[list[str]] = []
            lines: list[int] = []
            add_rec, add_line = recs.append, lines.append
            for rec in reader:
                if rec:  # (blank lines are skipped)
                    add_rec(rec)
                    add_line(reader.line_num)
        bad = [j for j, n in enumerate(map(len, recs)) if n != width]
        if bad:
            j = bad[0]
            raise BatchError(path, lines[j], f"expected {width} fields, got {len(recs[j])}")
        data = [[r[p] for r in recs] for p in pos]
        del recs
    except UnicodeDecodeError as e:
        raise BatchError(path, None, f"not a UTF-8 text file ({e.reason})") from None
    except csv.Error as e:
        raise BatchError(path, None, f"malformed CSV ({e})") from None
    cols = {}
    for c, lst in zip(wanted, data):
        arr = np.array(lst, dtype=str)
        if arr.size and (np.char.startswith(arr, " ").any() or np.char.endswith(arr, " ").any()):
            arr = np.char.strip(arr)
        cols[c] = arr
    return _Table(path, cols, np.asarray(lines, dtype=np.int64), len(lines))


def _read_parquet(path: str, required: Sequence[str], optional: Sequence[str]) -> _Table:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        raise BatchError(path, None, "reading Parquet needs pyarrow, which is not installed (use CSV)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any pyarrow failure is a bad file
        raise BatchError(path, None, f"unreadable Parquet file ({e})") from None
    names = list(table.column_names)
    for name in required:
        if name not in names:
            raise BatchError(path, None, f"missing column {name!r} (columns: {','.join(names)})")
    cols = {}
    for c in (*required, *optional):
        if c in names:
            col = table.column(c)
            if col.null_count:
                j = int(np.flatnonzero(np.asarray(col.is_null()))[0])
                raise BatchError(path, j + 1, f"column {c!r}: missing value")
            cols[c] = np.asarray(col.to_numpy(zero_copy_only=False))
    n = table.num_rows
    return _Table(path, cols, np.arange(1, n + 1, dtype=np.int64), n)


def _ints(
    t: _Table, name: str, *, lo: int = 0, hi: Optional[int] = None, what: str = "id", blank: Optional[int] = None
) -> np.ndarray:
    """Column ``name`` as int64, each in ``[lo, hi)``; ``blank`` replaces empty CSV fields."""
    col = t.cols[name]
    if col.dtype.kind in "iu":
        out = col.astype(np.int64)
    elif col.dtype.kind == "U":
        if blank is not None:
            col = np.where(col == "", str(blank), col)
        try:
            out = col.astype(np.int64)
        except (ValueError, OverflowError):
            out = None
        if out is None or col.size and not np.char.isdigit(np.char.lstrip(col, "-+")).all():
            for j, s in enumerate(col):
                try:
                    v = int(s)
                except ValueError:
                    raise BatchError(
                        t.path, t.row(j), f"column {name!r}: expected an integer {what}, got {str(s)!r}"
                    ) from None
                if not -(2**63) <= v < 2**63:
                    raise BatchError(t.path, t.row(j), f"column {name!r}: {what} {v} is out of range")
            out = np.array([int(s) for s in col], dtype=np.int64)
    else:
        raise BatchError(t.path, None, f"column {name!r}: expected integer {what}s, got type {col.dtype}")
    bad = out < lo
    if hi is not None:
        bad |= out >= hi
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        rng = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
        raise BatchError(t.path, t.row(j), f"column {name!r}: {what} {out[j]} is out of range {rng}")
    return out


def _reals(t: _Table, name: str, *, minimum: Optional[float] = None, what: str = "number") -> np.ndarray:
    """Column ``name`` as finite float64 (``>= minimum`` when given)."""
    col = t.cols[name]
    if col.dtype.kind == "M":  # Parquet timestamps
        col = (col - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    if col.dtype.kind in "iuf":
        out = col.astype(np.float64)
    elif col.dtype.kind == "U":
        try:
            out = col.astype(np.float64)
        except ValueError:
            for j, s in enumerate(col):
                try:
                    float(s)
                except ValueError:
                    raise BatchError(t.path, t.row(j), f"column {name!r}: expected a {what}, got {str(s)!r}") from None
            out = np.array([float(s) for s in col], dtype=np.float64)
    else:
        raise BatchError(t.path, None, f"column {name!r}: expected {what}s, got type {col.dtype}")
    bad = ~np.isfinite(out)
    if minimum is not None:
        bad |= out < minimum
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        need = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")
        raise BatchError(t.path, t.row(j), f"column {name!r}: {what} {str(t.cols[name][j])!r} is not {need}")
    return out


def _names(t: _Table, name: str, known: Sequence[str], what: str) -> np.ndarray:
    """Column ``name`` of names as int32 codes into ``known``."""
    col = t.cols[name]
    if col.dtype.kind not in "UO":
        raise BatchError(t.path, None, f"column {name!r}: expected {what} names, got type {col.dtype}")
    codes = np.full(t.n, -1, dtype=np.int32)
    for c, k in enumerate(known):
        codes[col == k] = c
    if (codes < 0).any():
        j = int(np.flatnonzero(codes < 0)[0])
        raise BatchError(
            t.path, t.row(j), f"column {name!r}: unknown {what} {str(col[j])!r} (known: {', '.join(known)})"
        )
    return codes


def _load_sparse(path: str, what: str) -> sp.csr_array:
    if not os.path.isfile(path):
        raise BatchError(path, None, "no such file")
    try:
        m = sp.load_npz(path)
    except Exception as e:  # noqa: BLE001 - zip, pickle-refusal, key and format errors alike
        raise BatchError(
            path, None, f"not a readable scipy sparse .npz file for {what} ({type(e).__name__}: {e})"
        ) from None
    try:  # the file's index arrays are checked before scipy converts them (its converters do not)
        return sp.csr_array(checked_tocsr(m, what))
    except (ValueError, TypeError, MemoryError) as e:
        raise BatchError(path, None, f"not a valid sparse matrix for {what} ({type(e).__name__}: {e})") from None


def _unprefixed(path: str, e: Exception) -> str:
    """The message of ``e`` without a leading ``"path: "`` (BatchError adds the file itself)."""
    return str(e).removeprefix(f"{path}: ")


def _model_error(t: Optional[_Table], fallback: str, e: Exception, offset: int = 0) -> BatchError:
    """Turn a model's ValueError/TypeError into a BatchError naming the file and row when possible.

    ``offset``: the first table row of the events the model saw (chunked folds).
    """
    msg = str(e)
    if t is not None:
        hit = re.search(r"at (?:row|position) (\d+)", msg)
        if hit and int(hit.group(1)) + offset < t.n:
            return BatchError(t.path, t.row(int(hit.group(1)) + offset), msg)
        return BatchError(t.path, None, msg)
    return BatchError(fallback, None, msg)


# ---------------------------------------------------------------------------------------------
# Writing (all or nothing)
# ---------------------------------------------------------------------------------------------


class _Outputs:
    """Collect temporary files and rename them over their targets only on :meth:`commit`."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []

    def temp(self, target: str) -> str:
        directory = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(directory):
            raise BatchError(target, None, f"output directory {directory} does not exist")
        base = os.path.basename(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
        os.close(fd)
        self._pending.append((tmp, target))
        return tmp

    def commit(self) -> None:
        for tmp, target in self._pending:
            os.replace(tmp, target)
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._pending.clear()


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _profiles(args: argparse.Namespace, out: _Outputs) -> str:
    from ecomcore.interest import InterestModel, InterestState

    x = _load_sparse(args.item_tags, "item_tags (items x tags)")
    state = None
    if args.state is not None:
        if not os.path.isfile(args.state):
            raise BatchError(args.state, None, "no such file")
        try:
            state = InterestState.load(args.state)
        except (ValueError, TypeError, OSError) as e:
            raise BatchError(args.state, None, _unprefixed(args.state, e)) from None
    try:
        model = InterestModel(
            event_weights=args.event_weights,
            half_life_days=None if args.half_life_days == 0 else args.half_life_days,
            idf=not args.no_idf,
            max_tags_per_user=args.max_tags,
            normalize=None if args.normalize == "none" else args.normalize,
        )
    except (ValueError, TypeError) as e:
        raise BatchError("arguments", None, str(e)) from None
    kinds = tuple(model.event_weights)
    t = _read_table(args.events, ("user", "item", "kind", "time"), ("weight",), args.quiet)
    if state is not None:
        n_users = state.n_users
        if args.users is not None and args.users != n_users:
            raise BatchError(args.state, None, f"the state has {n_users} users but --users {args.users} was given")
    elif args.users is not None:
        n_users = args.users
    else:
        n_users = 1  # inferred below: max user id + 1
    user = _ints(t, "user", hi=n_users if (state is not None or args.users is not None) else None, what="user id")
    if state is None and args.users is None:
        n_users = int(user.max()) + 1 if user.size else 1
    events = {
        "user": user,
        "item": _ints(t, "item", hi=x.shape[0], what="item id"),
        "kind": _names(t, "kind", kinds, "event kind"),
        "time": _reals(t, "time", what="time"),
    }
    if "weight" in t.cols:
        events["weight"] = _reals(t, "weight", minimum=0.0, what="weight")
    try:
        if state is None:
            state = model.new_state(n_users, x.shape[1])
        else:
            model._check_state(state, "state")  # configuration mismatch -> the state file's fault
    except (ValueError, TypeError) as e:
        raise BatchError(args.state if args.state else args.item_tags, None, str(e)) from None
    folded: list[InterestState] = []

    def fold(chunk: dict, first: bool) -> None:
        if first:
            folded.append(model.fold(chunk, x, state))  # a copy: the loaded state stays as read
        else:
            model.fold(chunk, x, into=folded[0])

    _fold_chunks(fold, events, t, "folding events", args.quiet)
    state = folded[0]
    a = model.profiles(state, args.now)
    tmp = out.temp(args.out)
    with open(tmp, "wb") as f:
        sp.save_npz(f, sp.csr_matrix(a), compressed=True)
    if args.save_state is not None:
        state.save(out.temp(args.save_state))
    return f"{a.shape[0]:,} users x {a.shape[1]:,} tags, {a.nnz:,} entries from {t.n:,} events -> {args.out}"


def _trust(args: argparse.Namespace, out: _Outputs) -> str:
    from ecomcore import default_indicators
    from ecomcore._persist import save_npz
    from ecomcore.indicators import DIMENSIONS
    from ecomcore.trust import TrustModel, TrustState

    inds = default_indicators()
    names = tuple(i.name for i in inds)
    state = None
    if args.state is not None:
        if not os.path.isfile(args.state):
            raise BatchError(args.state, None, "no such file")
        try:
            state = TrustState.load(args.state)
        except (ValueError, TypeError, OSError) as e:
            raise BatchError(args.state, None, _unprefixed(args.state, e)) from None
        if state.n_merchants != args.merchants:
            raise BatchError(
                args.state, None, f"the state has {state.n_merchants} merchants, --merchants is {args.merchants}"
            )
    try:
        model = TrustModel(inds, n_merchants=args.merchants, half_life_days=args.half_life_days)
    except (ValueError, TypeError) as e:
        raise BatchError("arguments", None, str(e)) from None
    categories = guarantee = None
    if args.categories is not None:
        categories = _load_npy(args.categories)
        if (
            categories.dtype.kind not in "iu"
            or categories.shape != (args.merchants,)
            or (categories.size and categories.min() < 0)
        ):
            raise BatchError(
                args.categories,
                None,
                f"expected {args.merchants} integer category ids >= 0 (one per merchant), "
                f"got dtype {categories.dtype} shape {categories.shape}",
            )
    if args.guarantee is not None:
        guarantee = _load_npy(args.guarantee)
        if guarantee.ndim not in (1, 2) or guarantee.shape[0] != args.merchants:
            raise BatchError(
                args.guarantee,
                None,
                f"expected shape ({args.merchants},) or ({args.merchants}, n_guarantees), got {guarantee.shape}",
            )
    if state is not None:
        try:
            model._check_state(state, "state")
        except (ValueError, TypeError) as e:
            raise BatchError(args.state, None, _unprefixed(args.state, e)) from None
    t = _read_table(args.events, ("merchant", "indicator", "value", "time"), ("buyer",), args.quiet)
    events = {
        "merchant": _ints(t, "merchant", hi=args.merchants, what="merchant id"),
        "indicator": _names(t, "indicator", names, "indicator"),
        "value": _reals(t, "value", what="value"),
        "time": _reals(t, "time", what="time"),
    }
    if "buyer" in t.cols:
        events["buyer"] = _ints(t, "buyer", lo=-1, what="buyer id", blank=-1)
    folded: list[TrustState] = []

    def fold(chunk: dict, first: bool) -> None:
        if first:
            folded.append(model.fold(chunk, state))  # a new state (or a copy of the loaded one)
        else:
            model.fold(chunk, into=folded[0])

    _fold_chunks(fold, events, t, "folding events", args.quiet)
    state = folded[0]
    now = args.now
    if now is None:
        now = state.last_time if state.last_time is not None else 0.0
    try:
        scores = model.score(state, now, categories=categories, guarantee=guarantee)
    except (ValueError, TypeError) as e:
        raise BatchError(args.guarantee or args.categories or args.events, None, str(e)) from None
    arrays = {
        "index": np.asarray(scores.index),
        "boost": np.asarray(scores.boost),
        "confidence": np.asarray(scores.confidence),
        "dimensions": np.asarray(scores.dimensions),
        "dimension_names": np.array(DIMENSIONS, dtype=np.str_),
    }
    save_npz(
        out.temp(args.out), _TRUST_KIND, _TRUST_VERSION, arrays, {"now": float(now), "n_merchants": args.merchants}
    )
    if args.save_state is not None:
        state.save(out.temp(args.save_state))
    return f"{args.merchants:,} merchants scored at {now:.0f} from {t.n:,} events -> {args.out}"


def _load_trust(path: str, n_m: int) -> tuple[np.ndarray, np.ndarray]:
    from ecomcore._persist import load_npz

    if not os.path.isfile(path):
        raise BatchError(path, None, "no such file")
    try:
        arrays, _ = load_npz(path, _TRUST_KIND, _TRUST_VERSION)
    except (ValueError, OSError) as e:
        raise BatchError(path, None, _unprefixed(path, e)) from None
    got = []
    for name in ("index", "boost"):
        a = arrays.get(name)
        if a is None or a.dtype.kind != "f" or a.shape != (n_m,):
            shape = None if a is None else a.shape
            raise BatchError(
                path, None, f"array {name!r}: expected float shape ({n_m},) (one per merchant), got {shape}"
            )
        got.append(a)
    return got[0], got[1]


def _load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise BatchError(path, None, "no such file")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise BatchError(path, None, f"not a readable .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        raise BatchError(path, None, "expected a .npy array, found an .npz archive")
    return arr


def _load_mask_or_ids(path: str, n: int, noun: str) -> np.ndarray:
    """A 1-D ``.npy`` bool mask over ``n`` {noun}s or an array of {noun} ids in ``[0, n)``."""
    b = _load_npy(path)
    if b.ndim != 1:
        raise BatchError(path, None, f"expected a 1-D .npy array (a bool mask or {noun} ids)")
    if b.dtype.kind == "b":
        if b.shape[0] != n:
            raise BatchError(path, None, f"bool mask has length {b.shape[0]}, expected {n} {noun}s")
        return b
    if b.dtype.kind not in "iu":
        raise BatchError(path, None, f"expected a bool mask or integer {noun} ids, got dtype {b.dtype}")
    bad = (b < 0) | (b >= n)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise BatchError(path, j + 1, f"{noun} id {b[j]} is out of range [0, {n})")
    return b.astype(np.int64)


def _load_banned(path: str, n_m: int) -> np.ndarray:
    return _load_mask_or_ids(path, n_m, "merchant")


def _user_merchant_matrix(path: str, n_u: int, n_m: int, what: str, *, values: bool, quiet: bool) -> sp.csr_array:
    """A users x merchants matrix from a scipy ``.npz`` or (``values=False``) a CSV/Parquet pair list."""
    if path.lower().endswith(".npz"):
        m = _load_sparse(path, f"{what} (users x merchants)")
        if m.shape != (n_u, n_m):
            raise BatchError(path, None, f"expected shape ({n_u}, {n_m}) (users x merchants), got {m.shape}")
        if m.dtype.kind not in "biuf":
            raise BatchError(path, None, f"expected numeric values, got dtype {m.dtype}")
        if values:
            bad = ~np.isfinite(m.data) if m.dtype.kind == "f" else np.zeros(m.data.shape, bool)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                row = int(np.searchsorted(m.indptr, j, side="right")) - 1
                raise BatchError(
                    path, None, f"entry (user {row}, merchant {int(m.indices[j])}) is {m.data[j]}, not a finite number"
                )
            return sp.csr_array(m, dtype=np.float64)
        s = sp.csr_array(m, dtype=np.float64)
        s.data[:] = 1.0  # any stored entry excludes, whatever its value
        return s
    if values:
        raise BatchError(path, None, f"expected a scipy sparse .npz file for {what} (users x merchants)")
    t = _read_table(path, ("user", "merchant"), (), quiet)
    u = _ints(t, "user", hi=n_u, what="user id")
    m_ = _ints(t, "merchant", hi=n_m, what="merchant id")
    out = sp.csr_array((np.ones(t.n), (u, m_)), shape=(n_u, n_m))
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


def _rank(args: argparse.Namespace, out: _Outputs) -> str:
    from ecomcore.ranking import Ranker

    a = _load_sparse(args.profiles, "profiles (users x tags)")
    b = _load_sparse(args.merchant_tags, "merchant_tags (tags x merchants)")
    if a.shape[1] != b.shape[0]:
        raise BatchError(
            args.merchant_tags,
            None,
            f"has {b.shape[0]} tag rows but {args.profiles} has {a.shape[1]} tag columns",
        )
    n_u, n_m = a.shape[0], b.shape[1]
    trust = boost = banned = follows = exclude = None
    if args.trust is not None:
        trust, boost = _load_trust(args.trust, n_m)
    if args.banned is not None:
        banned = _load_banned(args.banned, n_m)
    if args.follows is not None:
        follows = _user_merchant_matrix(args.follows, n_u, n_m, "follows", values=True, quiet=args.quiet)
    if args.exclude is not None:
        exclude = _user_merchant_matrix(args.exclude, n_u, n_m, "exclude", values=False, quiet=args.quiet)
    try:
        ranker = Ranker(
            b,
            trust=trust,
            boost=boost,
            banned=banned,
            beta=args.beta,
            min_trust=args.min_trust,
            follow_weight=args.follow_weight,
        )
    except (ValueError, TypeError) as e:
        raise BatchError(args.trust or args.merchant_tags, None, str(e)) from None
    try:
        with progress_bar("ranking", n_u, quiet=args.quiet) as bar:
            res = ranker.topk(a, args.k, follows=follows, exclude=exclude, n_threads=args.threads, progress=bar)
    except (ValueError, TypeError) as e:
        culprit = args.follows if (follows is not None and "follows" in str(e)) else args.profiles
        raise BatchError(culprit, None, str(e)) from None
    counts = np.asarray(res.counts, dtype=np.int64)
    width = res.indices.shape[1]
    valid = np.arange(width)[None, :] < counts[:, None]
    users, cols = np.nonzero(valid)
    ranks = cols + 1
    merchants = np.asarray(res.indices)[valid].astype(np.int64)
    scores = np.asarray(res.scores)[valid]
    # interest part A[u] . B[:, m] for the listed pairs, in float64, vectorised
    a64 = sp.csr_array(a, dtype=np.float64)
    bt = sp.csr_array(b.T, dtype=np.float64)
    if users.size:
        interest = np.asarray(a64[users].multiply(bt[merchants]).sum(axis=1)).ravel()
    else:
        interest = np.zeros(0)
    follow = np.zeros(users.shape[0])
    if follows is not None and users.size:
        follow = args.follow_weight * np.asarray(follows[users, merchants]).ravel()
    weight = ranker.merchant_weight[merchants]
    tmp = out.temp(args.out)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_RANK_HEADER)
        sc = scores.tolist()  # float32 -> Python float: repr round-trips to the same float32
        w.writerows(
            zip(
                users.tolist(),
                ranks.tolist(),
                merchants.tolist(),
                sc,
                interest.tolist(),
                follow.tolist(),
                weight.tolist(),
            )
        )
    return f"{n_u:,} users ranked over {n_m:,} merchants (k={args.k}), {users.size:,} rows -> {args.out}"


_COMMANDS = {"profiles": _profiles, "trust": _trust, "rank": _rank}


# ---------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------


def _time(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Unix seconds, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite time, got {text!r}")
    return v


def _event_weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            w = float(value) if sep else math.nan
        except ValueError:
            w = math.nan
        if not name or not (math.isfinite(w) and w >= 0) or name in out:
            raise argparse.ArgumentTypeError(
                f"expected KIND=WEIGHT,... with distinct kinds and weights >= 0, got {text!r}"
            )
        out[name] = w
    return out


def add_batch_parsers(sub: Any, positive_int: Callable[[str], int]) -> None:
    """Register ``profiles``, ``trust`` and ``rank`` on an argparse subparsers object.

    Each parser's ``handler`` default is :func:`run_batch` (see :func:`ecomcore.cli.main`).

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``ecomcore`` subparsers.
    positive_int : callable
        The CLI's argparse type for integers >= 1.
    """
    epilog = "Bad input files print 'ecomcore CMD: FILE:ROW: PROBLEM' to stderr and exit 1 without writing any output."
    p = sub.add_parser(
        "profiles",
        help="behaviour events -> user interest profiles (users x tags .npz)",
        description=(
            "Fold behaviour events (CSV with columns user,item,kind,time[,weight]; Parquet if pyarrow "
            "is installed) over the items' tags into decayed interest sums and write the users x tags "
            "profiles as a compressed scipy .npz (float32, rows normalised)."
        ),
        epilog=epilog,
    )
    p.add_argument("--events", required=True, metavar="EVENTS.csv", help="behaviour events")
    p.add_argument("--item-tags", required=True, metavar="ITEM_TAGS.npz", help="items x tags scipy sparse .npz")
    p.add_argument("--out", required=True, metavar="PROFILES.npz", help="users x tags profiles to write")
    p.add_argument(
        "--users",
        type=positive_int,
        default=None,
        help="number of users (ids 0..N-1); default: the state's, else the largest user id + 1",
    )
    p.add_argument("--now", type=_time, default=None, help="Unix seconds to decay to (default: the latest event)")
    p.add_argument(
        "--half-life-days",
        type=_non_negative_real,
        default=14.0,
        help="half-life of the decay in days; 0 = no decay (14)",
    )
    p.add_argument(
        "--event-weights",
        type=_event_weights,
        default=None,
        metavar="KIND=W,...",
        help="weight of each event kind (default view=1,fav=2,cart=3,buy=5); other kinds are errors",
    )
    p.add_argument("--no-idf", action="store_true", help="do not down-weight tags every user has")
    p.add_argument("--max-tags", type=positive_int, default=None, help="keep each user's N largest tags")
    p.add_argument("--normalize", choices=("l2", "l1", "max", "none"), default="l2", help="row normalisation (l2)")
    p.add_argument("--state", default=None, metavar="STATE.npz", help="fold into this saved InterestState")
    p.add_argument("--save-state", default=None, metavar="STATE.npz", help="write the folded InterestState here")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(handler=run_batch)

    t = sub.add_parser(
        "trust",
        help="merchant events -> trust index and boost (.npz)",
        description=(
            "Fold merchant events (CSV with columns merchant,indicator,value,time[,buyer]; indicator "
            "names from ecomcore.default_indicators()) and score every merchant; writes index, boost, "
            "confidence and dimensions in one pickle-free .npz for 'ecomcore rank --trust'."
        ),
        epilog=epilog,
    )
    t.add_argument("--events", required=True, metavar="MERCHANT_EVENTS.csv", help="merchant events")
    t.add_argument("--merchants", required=True, type=positive_int, help="number of merchants (ids 0..N-1)")
    t.add_argument("--out", required=True, metavar="TRUST.npz", help="scores to write")
    t.add_argument("--now", type=_time, default=None, help="Unix seconds to score at (default: the latest event)")
    t.add_argument("--half-life-days", type=_non_negative_real, default=90.0, help="evidence half-life in days (90)")
    t.add_argument("--categories", default=None, metavar="CATEGORIES.npy", help="category id per merchant (int .npy)")
    t.add_argument(
        "--guarantee",
        default=None,
        metavar="GUARANTEE.npy",
        help="trusted-purchase flags per merchant (bool .npy, (N,) or (N, G)); sets the boost",
    )
    t.add_argument("--state", default=None, metavar="STATE.npz", help="fold into this saved TrustState")
    t.add_argument("--save-state", default=None, metavar="STATE.npz", help="write the folded TrustState here")
    t.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    t.set_defaults(handler=run_batch)

    r = sub.add_parser(
        "rank",
        help="profiles x merchant tags x trust -> top-k CSV",
        description=(
            "Rank merchants for every user with ecomcore.Ranker and write CSV rows "
            "user,rank,merchant,score,interest,follow,weight (score = (interest + follow) * weight, "
            "follow = follow_weight * F[u, m], weight = trust ** beta * boost; banned and excluded "
            "merchants never appear)."
        ),
        epilog=epilog,
    )
    r.add_argument("--profiles", required=True, metavar="PROFILES.npz", help="users x tags scipy sparse .npz")
    r.add_argument("--merchant-tags", required=True, metavar="B.npz", help="tags x merchants scipy sparse .npz")
    r.add_argument("--trust", default=None, metavar="TRUST.npz", help="output of 'ecomcore trust' (default: trust 1)")
    r.add_argument("--banned", default=None, metavar="BANNED.npy", help="bool mask or merchant ids (.npy)")
    r.add_argument(
        "--follows",
        default=None,
        metavar="FOLLOWS.npz",
        help="users x merchants follow strengths F (scipy sparse .npz, e.g. from InterestModel.follow_matrix); "
        "a followed merchant is a candidate",
    )
    r.add_argument("--follow-weight", type=_non_negative_real, default=1.0, help="weight of F in the score (1)")
    r.add_argument(
        "--exclude",
        default=None,
        metavar="EXCLUDE",
        help="merchants never shown to a user: a users x merchants scipy sparse .npz (any stored entry "
        "excludes) or a CSV/Parquet table with columns user,merchant",
    )
    r.add_argument("--k", type=positive_int, default=10, help="merchants per user (10)")
    r.add_argument("--beta", type=_non_negative_real, default=1.0, help="trust exponent (1)")
    r.add_argument("--min-trust", type=_non_negative_real, default=0.0, help="hide merchants with less trust (0)")
    r.add_argument("--threads", type=positive_int, default=None, help="threads (default: all cores)")
    r.add_argument("--out", required=True, metavar="RANK.csv", help="CSV to write")
    r.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    r.set_defaults(handler=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    """Run one batch subcommand; report input problems on stderr.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``args.command`` is ``profiles``, ``trust`` or ``rank``).

    Returns
    -------
    int
        0 on success, 1 on a bad input file (nothing written).
    """
    out = _Outputs()
    try:
        summary = _COMMANDS[args.command](args, out)
        out.commit()
    except BatchError as e:
        out.discard()
        print(f"ecomcore {args.command}: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as e:
        out.discard()
        print(f"ecomcore {args.command}: {e}", file=sys.stderr)
        return 1
    except BaseException:
        out.discard()
        raise
    if not args.quiet and getattr(sys.stderr, "isatty", lambda: False)():
        print(f"ecomcore {args.command}: {summary}", file=sys.stderr)
    return 0
