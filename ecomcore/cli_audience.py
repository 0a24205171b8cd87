"""``ecomcore audience``: the top-k interested users for given merchants, as CSV.

::

    ecomcore audience --profiles PROFILES.npz --merchant-tags B.npz --merchants 3,17,42 -k 1000 \\
        --out AUDIENCE.csv [--trust TRUST.npz] [--banned BANNED.npy] [--follows FOLLOWS.npz \\
        [--exclude-followers]] [--opted-out OPTED.npy] [--max-per-user N] [--threads N]

Files (the conventions of ``ecomcore rank``, see :mod:`ecomcore.cli_batch`)
--------------------------------------------------------------------------
* ``PROFILES.npz`` users x tags and ``B.npz`` tags x merchants: scipy sparse ``.npz`` files;
  ``TRUST.npz`` (from ``ecomcore trust``) and ``BANNED.npy`` as for ``rank``: they set each
  merchant's weight ``w = trust ** beta * boost`` (0 when banned or below ``--min-trust``:
  such a merchant gets no rows).
* ``--merchants``: distinct merchant ids, either inline (``3,17,42``) or a file: ``.npy`` (a 1-D
  integer array) or text/CSV (one id per line, an optional header line ``merchant``).
* ``FOLLOWS.npz``: users x merchants follow strengths F (scipy sparse ``.npz``).  Added to the
  score (``follow_weight`` 1) unless ``--exclude-followers`` leaves followers out (acquisition).
* ``OPTED.npy``: users who opted out of promotion, a bool mask over users or user ids.
* ``AUDIENCE.csv`` (written): header ``merchant,rank,user,score``; one row per targeted user,
  merchants in the order given, ranks from 1, ``score`` exactly as
  :meth:`ecomcore.Ranker.audience` computes it (float32 written with enough digits to round-trip).

Errors
------
A bad input prints ``ecomcore audience: FILE:ROW: PROBLEM`` (``ROW`` only where a row is at
fault: the line of a text merchant list, the position (from 1) in a ``.npy`` array) to stderr and
exits with status 1, writing nothing: the CSV goes to a temporary file renamed into place only
when complete.  Usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Any, Optional

import numpy as np

from ecomcore._argtypes import non_negative_real as _non_negative_real
from ecomcore._argtypes import positive_int as _positive_int
from ecomcore.cli_batch import (
    BatchError,
    _load_banned,
    _load_mask_or_ids,
    _load_npy,
    _load_sparse,
    _load_trust,
    _Outputs,
)

__all__ = ["add_parser", "run"]

_HEADER = ("merchant", "rank", "user", "score")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``audience`` subcommand on an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``ecomcore`` subparsers.

    Returns
    -------
    argparse.ArgumentParser
        The new subparser.
    """
    p = subparsers.add_parser(
        "audience",
        help="profiles x merchant tags x trust -> top-k users per merchant (CSV)",
        description=(
            "Find the users most likely to be interested in each given merchant (audience targeting: "
            "ecomcore.Ranker.audience) and write CSV rows merchant,rank,user,score."
        ),
        epilog="Bad input files print 'ecomcore audience: FILE:ROW: PROBLEM' to stderr and exit 1 without writing.",
    )
    p.add_argument("--profiles", required=True, metavar="PROFILES.npz", help="users x tags scipy sparse .npz")
    p.add_argument("--merchant-tags", required=True, metavar="B.npz", help="tags x merchants scipy sparse .npz")
    p.add_argument(
        "--merchants",
        required=True,
        metavar="IDS|FILE",
        help="merchant ids: inline 3,17,42 or a file (.npy integer array, or text with one id per line)",
    )
    p.add_argument("-k", "--k", type=_positive_int, default=100, help="users per merchant (100)")
    p.add_argument("--trust", default=None, metavar="TRUST.npz", help="output of 'ecomcore trust' (default: trust 1)")
    p.add_argument("--banned", default=None, metavar="BANNED.npy", help="bool mask or merchant ids (.npy)")
    p.add_argument("--beta", type=_non_negative_real, default=1.0, help="trust exponent (1)")
    p.add_argument("--min-trust", type=_non_negative_real, default=0.0, help="skip merchants with less trust (0)")
    p.add_argument("--follows", default=None, metavar="FOLLOWS.npz", help="users x merchants follow strengths")
    p.add_argument(
        "--exclude-followers", action="store_true", help="leave out users who follow the merchant (needs --follows)"
    )
    p.add_argument("--opted-out", default=None, metavar="OPTED.npy", help="users never targeted (bool mask or ids)")
    p.add_argument(
        "--max-per-user", type=_positive_int, default=None, help="a user appears in at most N merchants' lists"
    )
    p.add_argument("--threads", type=_positive_int, default=None, help="threads (default: all cores)")
    p.add_argument("--out", required=True, metavar="AUDIENCE.csv", help="CSV to write")
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    return p


def _merchant_list(spec: str, n_m: int) -> np.ndarray:
    """Merchant ids from ``spec`` (inline list or file), in range and distinct."""
    if os.path.exists(spec) or spec.lower().endswith((".npy", ".csv", ".txt")) or os.path.sep in spec:
        return _merchant_file(spec, n_m)
    ids = []
    for j, part in enumerate(spec.split(",")):
        part = part.strip()
        try:
            v = int(part)
        except ValueError:
            problem = f"item {j + 1}: expected an integer merchant id, got {part!r}"
            raise BatchError("--merchants", None, problem) from None
        if not 0 <= v < n_m:
            raise BatchError("--merchants", None, f"item {j + 1}: merchant id {v} is out of range [0, {n_m})")
        ids.append(v)
    return _distinct(np.asarray(ids, dtype=np.int64), "--merchants", None)


def _distinct(ids: np.ndarray, path: str, rows: Optional[np.ndarray]) -> np.ndarray:
    seen: dict[int, int] = {}
    for j, v in enumerate(ids.tolist()):
        if v in seen:
            where = None if rows is None else int(rows[j])
            what = f"item {j + 1}: " if rows is None else ""
            raise BatchError(path, where, f"{what}merchant id {v} is listed twice")
        seen[v] = j
    return ids


def _merchant_file(path: str, n_m: int) -> np.ndarray:
    if not os.path.isfile(path):
        raise BatchError(path, None, "no such file")
    if path.lower().endswith(".npy"):
        arr = _load_npy(path)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise BatchError(path, None, f"expected a 1-D integer array of merchant ids, got {arr.dtype} {arr.shape}")
        bad = (arr < 0) | (arr >= n_m)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise BatchError(path, j + 1, f"merchant id {arr[j]} is out of range [0, {n_m})")
        ids = arr.astype(np.int64)
        return _distinct(ids, path, np.arange(1, ids.size + 1))
    ids, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line_no, rec in enumerate(csv.reader(f), start=1):
                if not rec or not "".join(rec).strip():
                    continue
                if len(rec) != 1:
                    raise BatchError(path, line_no, f"expected one merchant id per line, got {len(rec)} fields")
                text = rec[0].strip()
                if line_no == 1 and text == "merchant":
                    continue
                try:
                    v = int(text)
                except ValueError:
                    raise BatchError(path, line_no, f"expected an integer merchant id, got {text!r}") from None
                if not 0 <= v < n_m:
                    raise BatchError(path, line_no, f"merchant id {v} is out of range [0, {n_m})")
                ids.append(v)
                lines.append(line_no)
    except UnicodeDecodeError as e:
        raise BatchError(path, None, f"not a UTF-8 text file ({e.reason})") from None
    except csv.Error as e:
        raise BatchError(path, None, f"malformed CSV ({e})") from None
    return _distinct(np.asarray(ids, dtype=np.int64), path, np.asarray(lines, dtype=np.int64))


def _opted(path: str, n_u: int) -> np.ndarray:
    return _load_mask_or_ids(path, n_u, "user")


def _audience(args: argparse.Namespace, out: _Outputs) -> str:
    from ecomcore.audience import AudienceIndex
    from ecomcore.ranking import Ranker

    a = _load_sparse(args.profiles, "profiles (users x tags)")
    b = _load_sparse(args.merchant_tags, "merchant_tags (tags x merchants)")
    if a.shape[1] != b.shape[0]:
        raise BatchError(
            args.merchant_tags, None, f"has {b.shape[0]} tag rows but {args.profiles} has {a.shape[1]} tag columns"
        )
    n_u, n_m = a.shape[0], b.shape[1]
    mids = _merchant_list(args.merchants, n_m)
    trust = boost = banned = follows = opted = None
    if args.trust is not None:
        trust, boost = _load_trust(args.trust, n_m)
    if args.banned is not None:
        banned = _load_banned(args.banned, n_m)
    if args.follows is not None:
        follows = _load_sparse(args.follows, "follows (users x merchants)")
        if follows.shape != (n_u, n_m):
            raise BatchError(
                args.follows, None, f"expected shape ({n_u}, {n_m}) (users x merchants), got {follows.shape}"
            )
    if args.opted_out is not None:
        opted = _opted(args.opted_out, n_u)
    try:
        ranker = Ranker(b, trust=trust, boost=boost, banned=banned, beta=args.beta, min_trust=args.min_trust)
    except (ValueError, TypeError) as e:
        raise BatchError(args.trust or args.merchant_tags, None, str(e)) from None
    try:
        index = AudienceIndex(a)
    except (ValueError, TypeError) as e:
        raise BatchError(args.profiles, None, str(e)) from None
    try:
        res = ranker.audience(
            index,
            mids,
            args.k,
            exclude_followers=args.exclude_followers,
            follows=follows,
            opted_out=opted,
            max_per_user=args.max_per_user,
            n_threads=args.threads,
        )
    except (ValueError, TypeError) as e:
        culprit = args.follows if (args.follows and "follows" in str(e)) else args.profiles
        raise BatchError(culprit, None, str(e)) from None
    counts = np.asarray(res.counts, dtype=np.int64)
    width = res.indices.shape[1]
    valid = np.arange(width)[None, :] < counts[:, None]
    rows, cols = np.nonzero(valid)
    merchants = mids[rows]
    users = np.asarray(res.indices)[valid].astype(np.int64)
    scores = np.asarray(res.scores)[valid]
    tmp = out.temp(args.out)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_HEADER)
        w.writerows(zip(merchants.tolist(), (cols + 1).tolist(), users.tolist(), scores.tolist()))
    return f"{mids.size:,} merchants x top {args.k} of {n_u:,} users, {users.size:,} rows -> {args.out}"


def run(args: argparse.Namespace) -> int:
    """Run ``ecomcore audience``; report input problems on stderr.

    Parameters
    ----------
    args : argparse.Namespace
        Arguments parsed by the parser :func:`add_parser` registered.

    Returns
    -------
    int
        0 on success, 1 on a bad input (nothing written), 2 on inconsistent arguments.
    """
    if args.exclude_followers and args.follows is None:
        print("ecomcore audience: --exclude-followers needs --follows", file=sys.stderr)
        return 2
    out = _Outputs()
    try:
        summary = _audience(args, out)
        out.commit()
    except BatchError as e:
        out.discard()
        print(f"ecomcore audience: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as e:
        out.discard()
        print(f"ecomcore audience: {e}", file=sys.stderr)
        return 1
    except BaseException:
        out.discard()
        raise
    if not args.quiet and getattr(sys.stderr, "isatty", lambda: False)():
        print(f"ecomcore audience: {summary}", file=sys.stderr)
    return 0
