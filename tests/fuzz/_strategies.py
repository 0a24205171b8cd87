"""Shared pieces of the fuzz suite: example budgets, the outcome check, hostile inputs.

Every hostile call goes through :func:`outcome`: it either returns the result (which the test
then compares with a plain NumPy/SciPy reference) or the ``ValueError``/``TypeError`` it raised,
after checking that the message names one of the expected arguments.  Any other exception
propagates and fails the test; a crash kills pytest (which is a failure too).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from hypothesis import settings
from hypothesis import strategies as st

#: calls made through :func:`outcome` in this session (printed by conftest's terminal summary)
CASES = {"calls": 0, "errors": 0}

_SCALE = os.environ.get("ECOMCORE_FUZZ_EXAMPLES", "").strip()


def scale() -> float:
    """Multiplier of every test's ``max_examples`` (env ``ECOMCORE_FUZZ_EXAMPLES``, default 1)."""
    if not _SCALE:
        return 1.0
    try:
        value = float(_SCALE)
    except ValueError:
        raise ValueError(f"ECOMCORE_FUZZ_EXAMPLES: expected a number, got {_SCALE!r}") from None
    if not value > 0:
        raise ValueError(f"ECOMCORE_FUZZ_EXAMPLES: must be > 0, got {_SCALE!r}")
    return value


def fuzz(n: int) -> settings:
    """Hypothesis settings with ``n`` examples (times the scale), no deadline, no database."""
    return settings(max_examples=max(1, int(round(n * scale()))), deadline=None, database=None)


def outcome(fn: Callable[..., Any], *args: Any, names: tuple[str, ...] = (), **kwargs: Any) -> tuple[bool, Any]:
    """Call ``fn``; return ``(True, result)`` or ``(False, exc)`` for a ValueError/TypeError.

    The exception's message must be non-empty and contain one of ``names`` (the argument names
    the caller may blame).  Other exception types propagate.
    """
    CASES["calls"] += 1
    try:
        return True, fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        CASES["errors"] += 1
        msg = str(e)
        assert msg, f"{type(e).__name__} without a message"
        if names:
            assert any(n in msg for n in names), f"{type(e).__name__}({msg!r}) names none of {names}"
        return False, e


def expect_error(
    fn: Callable[..., Any], *args: Any, names: tuple[str, ...] = (), exc: Any = (ValueError, TypeError), **kwargs: Any
) -> BaseException:
    """Like :func:`outcome` but the call must fail (with one of ``exc``)."""
    ok, res = outcome(fn, *args, names=names, **kwargs)
    assert not ok, f"expected an error naming one of {names}, got a result {res!r}"
    assert isinstance(res, exc), f"expected {exc}, got {type(res).__name__}: {res}"
    return res


# ---------------------------------------------------------------------------------------------
# integers that are not valid k / sizes
# ---------------------------------------------------------------------------------------------

BAD_K = st.sampled_from(
    [0, -1, -(2**40), True, False, 1.0, 2.5, float("nan"), "3", None, np.float64(3.0), np.array([3]), 3 + 0j]
)
HUGE_K = st.sampled_from([2**31, 2**40, 2**62, np.int64(2**62), np.uint64(2**63)])


def bad_k_error(k: Any) -> type:
    """The exception a bad ``k`` must raise: ValueError for integers below 1, TypeError otherwise."""
    import numbers

    if isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_)):
        return ValueError
    return TypeError


# ---------------------------------------------------------------------------------------------
# sparse matrices: valid small-integer ones and hostile raw CSR parts
# ---------------------------------------------------------------------------------------------


@st.composite
def small_int_dense(draw, n_rows: int, n_cols: int, density: float = 0.4, lo: int = -3, hi: int = 3) -> np.ndarray:
    """A dense float64 matrix of small integers (exact in float32 sums), mostly zeros."""
    mask = draw(st.lists(st.booleans(), min_size=n_rows * n_cols, max_size=n_rows * n_cols))
    vals = draw(st.lists(st.integers(lo, hi), min_size=n_rows * n_cols, max_size=n_rows * n_cols))
    arr = np.array(vals, dtype=np.float64) * np.array(mask, dtype=bool)
    return arr.reshape(n_rows, n_cols)


def raw_csr(indptr: Any, indices: Any, data: Any, shape: tuple[int, int]) -> sp.csr_array:
    """A scipy CSR array holding exactly these parts, bypassing scipy's own checks."""
    m = sp.csr_array((np.zeros(0), np.zeros(0, np.int32), np.zeros(shape[0] + 1, np.int32)), shape=shape)
    m.indptr = np.asarray(indptr)
    m.indices = np.asarray(indices)
    m.data = np.asarray(data)
    return m


@st.composite
def hostile_csr(draw, n_rows: int, n_cols: int, structural: bool = False) -> tuple[sp.csr_array, Any]:
    """A CSR array with possibly non-canonical or invalid parts, and what it must mean.

    Returns ``(matrix, expected)`` where ``expected`` is the dense float64 matrix scipy's CSR
    semantics give (duplicates summed, entries past ``indptr[-1]`` ignored), or the string
    ``"error"`` when the parts are invalid (bad indptr, out-of-range index, non-finite value;
    with ``structural`` the values are ignored and the meaning is the 0/1 pattern of stored
    entries).
    """
    nnz = draw(st.integers(0, 2 * n_rows * n_cols + 2))
    counts = draw(st.lists(st.integers(0, 4), min_size=n_rows, max_size=n_rows))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = max(nnz, int(indptr[-1]))
    cols = np.array(draw(st.lists(st.integers(0, max(n_cols - 1, 0)), min_size=nnz, max_size=nnz)), dtype=np.int64)
    if n_cols == 0:
        cols[:] = 0  # every stored entry is out of range
    vals = np.array(draw(st.lists(st.integers(-3, 3), min_size=nnz, max_size=nnz)), dtype=np.float64)
    damage = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "unsorted",
                "dups",
                "index_high",
                "index_neg",
                "indptr_down",
                "indptr_start",
                "indptr_over",
                "indptr_neg",
                "nan",
                "inf",
                "short_indptr",
                "extra_tail",
                "index_2d",
            ]
        )
    )
    if damage == "unsorted" and nnz > 1:
        cols = cols[::-1].copy()
    elif damage == "dups" and nnz > 1:
        cols[1:] = cols[0]
    elif damage == "index_high" and nnz and indptr[-1]:
        cols[draw(st.integers(0, int(indptr[-1]) - 1))] = n_cols + draw(st.sampled_from([0, 1, 2**31 - 1 - n_cols]))
    elif damage == "index_neg" and nnz and indptr[-1]:
        cols[draw(st.integers(0, int(indptr[-1]) - 1))] = draw(st.sampled_from([-1, -(2**31)]))
    elif damage == "indptr_down" and n_rows >= 2 and indptr[-1] > 0:
        i = int(np.flatnonzero(indptr > 0)[0])
        if i < n_rows:
            indptr[i] = indptr[i + 1] + 1 if indptr[i + 1] + 1 <= indptr[-1] else indptr[-1]
            indptr[i + 1] = indptr[i] - 1
    elif damage == "indptr_start":
        indptr = indptr + 1
    elif damage == "indptr_over":
        indptr[-1] = nnz + 1
    elif damage == "indptr_neg" and n_rows >= 1:
        indptr[1] = -1
    elif damage == "nan" and indptr[-1]:
        vals[draw(st.integers(0, int(indptr[-1]) - 1))] = np.nan
    elif damage == "inf" and indptr[-1]:
        vals[0] = -np.inf
    elif damage == "short_indptr":
        indptr = indptr[:-1]
    elif damage == "extra_tail":
        # values past indptr[-1] are ignored by scipy, even non-finite or out-of-range ones
        cols = np.concatenate([cols, [n_cols + 5]])
        vals = np.concatenate([vals, [np.nan]])
    idx_dt = draw(st.sampled_from(["i4/i4", "i8/i8", "i8/i4", "i4/i8", "u4/u4", "i2/i2"]))
    pdt, idt = idx_dt.split("/")
    if damage == "index_2d":
        cols = cols.reshape(1, -1)

    def cast(a: np.ndarray, dt: str) -> np.ndarray:
        info = np.iinfo(dt)
        if a.size and (a.min() < info.min or a.max() > info.max):
            return a  # keep int64 rather than wrapping around
        return a.astype(dt)

    m = raw_csr(cast(indptr, pdt), cast(cols, idt), vals, (n_rows, n_cols))
    return m, _meaning(m.indptr, m.indices, m.data, (n_rows, n_cols), structural)


def _meaning(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: tuple[int, int], structural: bool = False
) -> Any:
    """Plain-Python interpretation of raw CSR parts (the reference for :func:`hostile_csr`)."""
    n_rows, n_cols = shape
    if indices.ndim != 1 or indptr.ndim != 1 or indptr.shape[0] != n_rows + 1:
        return "error"
    if data.shape[0] != indices.shape[0]:
        return "error"
    ip = [int(x) for x in indptr]
    if ip[0] != 0 or any(b < a for a, b in zip(ip, ip[1:])) or ip[-1] > indices.shape[0]:
        return "error"
    out = np.zeros(shape)
    for r in range(n_rows):
        for j in range(ip[r], ip[r + 1]):
            c = int(indices[j])
            v = float(data[j])
            if not (0 <= c < n_cols) or not (structural or np.isfinite(v)):
                return "error"
            if structural:
                out[r, c] = 1.0
            else:
                out[r, c] += v
    return out


def with_dtype(m: sp.csr_array, dtype: Any) -> sp.csr_array:
    """The same sparsity pattern with ``data`` converted to ``dtype`` (possibly non-numeric)."""
    m = m.copy()
    if np.dtype(dtype) == object:
        m.data = np.array([float(x) for x in m.data] + [None], dtype=object)[:-1]
    elif np.dtype(dtype).kind == "U":
        m.data = m.data.astype(str)
    elif np.dtype(dtype).kind == "u":
        m.data = np.abs(m.data).astype(dtype)
    else:
        m.data = m.data.astype(dtype)
    return m


BAD_VALUE_DTYPES = [object, np.complex128, "U8"]
OK_VALUE_DTYPES = [np.float64, np.float32, np.int64, np.int8, np.uint16, bool, np.float16]


def data_as(dense: np.ndarray, dtype: Any) -> np.ndarray:
    """What a matrix's values mean once converted to ``dtype`` (bool: non-zero -> 1)."""
    if np.dtype(dtype) == bool:
        return (dense != 0).astype(np.float64)
    if np.dtype(dtype).kind == "u":
        return np.abs(dense)  # callers pass non-negative data for unsigned dtypes
    return dense


# ---------------------------------------------------------------------------------------------
# hostile state files
# ---------------------------------------------------------------------------------------------

FILE_DAMAGE = [
    "random_bytes",
    "empty",
    "truncate",
    "flip",
    "wrong_members",
    "object_array",
    "npy",
    "wrong_kind",
    "wrong_version",
    "tamper_array",
    "drop_array",
    "extra_array",
    "tamper_meta",
    "bad_header",
    "directory",
    "missing",
]


def _tampered(draw, arr: np.ndarray) -> np.ndarray:
    how = draw(
        st.sampled_from(
            [
                "float32",
                "int8",
                "complex",
                "bool",
                "str",
                "flat",
                "empty",
                "extra_dim",
                "nan",
                "neg",
                "huge",
                "scalar",
                "uint64",
            ]
        )
    )
    if how == "float32":
        return arr.astype(np.float32) if arr.dtype.kind in "biuf" else np.zeros(arr.shape, np.float32)
    if how == "int8":
        return arr.astype(np.int8) if arr.dtype.kind in "biuf" else np.zeros(arr.shape, np.int8)
    if how == "complex":
        return np.zeros(arr.shape, complex)
    if how == "bool":
        return np.ones(arr.shape, bool)
    if how == "str":
        return np.full(arr.shape, "x")
    if how == "flat":
        return arr.reshape(-1)
    if how == "empty":
        return arr[:0]
    if how == "extra_dim":
        return arr[..., None]
    if how == "scalar":
        return np.asarray(arr.reshape(-1)[0] if arr.size else 0)
    if how == "uint64":
        return np.full(arr.shape, 2**63 + 5, dtype=np.uint64)
    out = np.array(arr, copy=True)
    if out.size == 0:
        return np.ones(3, dtype=out.dtype if out.dtype.kind in "biuf" else np.float64)
    pos = draw(st.integers(0, out.size - 1))
    flat = out.reshape(-1)
    if how == "nan":
        if out.dtype.kind == "f":
            flat[pos] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        else:
            flat[pos] = -1 if out.dtype.kind == "i" else flat[pos]
    elif how == "neg":
        if out.dtype.kind in "if":
            flat[pos] = -flat[pos] - 1
    elif how == "huge":
        if out.dtype.kind in "iu":
            flat[pos] = np.iinfo(out.dtype).max
        elif out.dtype.kind == "f":
            flat[pos] = 1e308
    return out


@st.composite
def hostile_file(draw, directory: str, good: str, kind: str, version: int) -> tuple[str, str]:
    """Write a damaged variant of the valid state file ``good`` into ``directory``.

    Returns ``(path, damage)``.  ``missing`` names a path that does not exist.
    """
    import io
    import json
    import zipfile

    from ecomcore._persist import load_npz, save_npz

    damage = draw(st.sampled_from(FILE_DAMAGE))
    path = os.path.join(directory, f"hostile-{damage}.npz")
    raw = open(good, "rb").read()
    arrays, meta = load_npz(good, kind, version)
    if damage == "random_bytes":
        blob = draw(st.binary(min_size=1, max_size=400))
        prefix = draw(st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x04"]))
        open(path, "wb").write(prefix + blob)
    elif damage == "empty":
        open(path, "wb").close()
    elif damage == "truncate":
        open(path, "wb").write(raw[: draw(st.integers(0, len(raw) - 1))])
    elif damage == "flip":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= draw(st.integers(1, 255))
        open(path, "wb").write(bytes(data))
    elif damage == "wrong_members":
        with zipfile.ZipFile(path, "w") as z:
            for name in draw(
                st.lists(
                    st.sampled_from(["a.npy", "__meta__.npy", "x.txt", "dir/", "acc.npy"]), max_size=3, unique=True
                )
            ):
                z.writestr(name, draw(st.binary(max_size=64)))
    elif damage == "object_array":
        buf = io.BytesIO()
        payload = dict(arrays)
        name = draw(st.sampled_from(sorted(payload) or ["x"]))
        payload[name] = np.array([{"evil": 1}, None], dtype=object)
        payload["__meta__"] = np.frombuffer(
            json.dumps({"kind": kind, "version": version, "meta": meta}).encode(), np.uint8
        )
        np.savez(buf, **payload)
        open(path, "wb").write(buf.getvalue())
    elif damage == "npy":
        with open(path, "wb") as f:
            np.save(f, np.arange(5))
    elif damage == "wrong_kind":
        save_npz(
            path,
            draw(st.sampled_from(["TrustState", "InterestState", "IdentityGraph", "nope", ""])) + "x",
            version,
            arrays,
            meta,
        )
    elif damage == "wrong_version":
        save_npz(path, kind, draw(st.sampled_from([0, version + 1, -1, 10**6])), arrays, meta)
    elif damage in ("tamper_array", "drop_array") and arrays:
        name = draw(st.sampled_from(sorted(arrays)))
        arrays = dict(arrays)
        if damage == "drop_array":
            del arrays[name]
        else:
            arrays[name] = _tampered(draw, arrays[name])
        save_npz(path, kind, version, arrays, meta)
    elif damage == "extra_array":
        save_npz(path, kind, version, dict(arrays, zz_extra=np.arange(3)), meta)
    elif damage == "tamper_meta" and meta:
        meta = dict(meta)
        name = draw(st.sampled_from(sorted(meta)))
        if draw(st.booleans()):
            del meta[name]
        else:
            meta[name] = draw(
                st.sampled_from([None, "x", -1, 0, 1e308, -1e308, [1, 2], {"a": 1}, True, 2**70, float("nan")])
            )
        save_npz(path, kind, version, arrays, meta)
    elif damage == "bad_header":
        payload = dict(arrays)
        header = draw(
            st.sampled_from(
                [
                    b"",
                    b"{",
                    b"[1, 2]",
                    b"null",
                    b'{"kind": 5}',
                    b"\xff\xfe",
                    json.dumps({"kind": kind, "version": version, "meta": 5}).encode(),
                    json.dumps({"kind": kind, "version": str(version), "meta": {}}).encode(),
                ]
            )
        )
        payload["__meta__"] = np.frombuffer(header, np.uint8) if header else np.zeros(0, np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **payload)
        open(path, "wb").write(buf.getvalue())
    elif damage == "directory":
        os.mkdir(path)
    elif damage == "missing":
        pass
    else:  # a damage that needs arrays/meta the format does not have: an intact copy
        damage = "intact"
        open(path, "wb").write(raw)
    return path, damage


def load_outcome(load: Callable[[str], Any], path: str, damage: str) -> tuple[bool, Any]:
    """Load a hostile file: FileNotFoundError for a missing path, else a result or a
    ValueError/TypeError naming the path."""
    CASES["calls"] += 1
    if damage == "missing":
        try:
            load(path)
        except FileNotFoundError as e:
            CASES["errors"] += 1
            assert path in str(e), str(e)
            return False, e
        raise AssertionError(f"{path}: missing file loaded")
    try:
        return True, load(path)
    except (ValueError, TypeError) as e:
        CASES["errors"] += 1
        assert path in str(e), f"{type(e).__name__}({e!s}) does not name the file {path}"
        return False, e


def check_cli_outcome(rc: int, err: str, bad: str) -> None:
    """A CLI run on a hostile file: exit 0 (still a valid input), or 1/2 with a message on
    stderr, and for 1 (a data error) one that names the file and holds no traceback."""
    if rc == 0:
        return
    CASES["errors"] += 1
    assert rc in (1, 2), (rc, err)
    assert err.strip(), "no message on stderr"
    if rc == 1:
        assert os.path.basename(bad) in err, err
        assert "Traceback" not in err, err
