"""Versioned, pickle-free ``.npz`` persistence with atomic writes.

Every state object (``TrustState``, ``IdentityGraph``, ...) saves to one ``.npz`` holding its
arrays plus a JSON header (``__meta__``: format kind, version, and small scalars).  Files are
written to a temporary file in the same directory, flushed, fsync'ed and renamed over the target,
so a crash mid-write leaves the previous file intact.  Loading never unpickles
(``allow_pickle=False``) and turns every kind of damage into a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import tokenize
import zipfile
from typing import Any, Mapping

import numpy as np

_META = "__meta__"


def save_npz(
    path: str | os.PathLike[str],
    kind: str,
    version: int,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write ``arrays`` and a JSON header to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Target file.  A ``.npz`` suffix is not added: the file is written exactly at ``path``.
    kind : str
        Format name stored in the header and checked by :func:`load_npz`.
    version : int
        Format version stored in the header and checked by :func:`load_npz`.
    arrays : mapping of str to ndarray
        Arrays to store; object arrays are refused (they would need pickle).
    meta : mapping, optional
        JSON-serialisable scalars stored in the header.
    """
    path = os.fspath(path)
    if _META in arrays:
        raise ValueError(f"arrays: the name {_META!r} is reserved")
    header = {"kind": kind, "version": int(version), "meta": dict(meta or {})}
    payload = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype.hasobject:
            raise TypeError(f"arrays[{name!r}]: object arrays cannot be saved without pickle")
        payload[name] = arr
    payload[_META] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable where the platform allows it
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def load_npz(path: str | os.PathLike[str], kind: str, version: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_npz`, checking its kind and version.

    Parameters
    ----------
    path : str or path-like
        File to read.
    kind : str
        Expected format name.
    version : int
        Expected format version.

    Returns
    -------
    arrays : dict of str to ndarray
        The stored arrays, fully read into memory.
    meta : dict
        The header's scalars.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is truncated, corrupt, not an ecomcore file, of another kind, or of
        another version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a .npy file loads as a bare array
            raise ValueError(f"{path}: not an ecomcore {kind} file (a single .npy array, not an .npz archive)")
        with z:
            if _META not in z.files:
                raise ValueError(f"{path}: not an ecomcore {kind} file (no header)")
            header = json.loads(bytes(z[_META]).decode("utf-8"))
            arrays = {name: z[name] for name in z.files if name != _META}
            # NpzFile hands back the raw bytes of a member that does not start with the .npy magic
            for name, a in arrays.items():
                if not isinstance(a, np.ndarray):
                    raise ValueError(f"{path}: corrupt or unreadable file (member {name!r} is not a .npy array)")
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: corrupt or unreadable file ({e})") from None
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        KeyError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        NotImplementedError,
        RuntimeError,  # zipfile: a damaged header asks for an unknown version / a password
        tokenize.TokenError,  # numpy's fallback parser of a damaged .npy header
        MemoryError,  # a .npy header declaring an array far larger than the file
        OverflowError,  # ... or a shape beyond any C integer
    ) as e:
        raise ValueError(f"{path}: corrupt or unreadable file ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict) or header.get("kind") != kind:
        got = header.get("kind") if isinstance(header, dict) else None
        raise ValueError(f"{path}: expected an ecomcore {kind} file, found {got!r}")
    if header.get("version") != version:
        raise ValueError(
            f"{path}: {kind} format version {header.get('version')!r} is not supported "
            f"(this ecomcore reads version {version})"
        )
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: corrupt header")
    return arrays, meta
