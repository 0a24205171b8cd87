"""Regressions found by the atheris harness (``tests/fuzz/atheris_harness.py``).

Both were state files whose zip archive is intact (correct CRCs) but whose ``.npy`` members are
not: numpy's ``NpzFile`` hands back the raw bytes of a member without the ``.npy`` magic (the
loaders then failed with ``AttributeError: 'bytes' object has no attribute 'ndim'/'dtype'``), and
a damaged ``.npy`` header can make numpy's fallback header parser raise ``tokenize.TokenError``
(not a ValueError).  Each must be a ValueError naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile

import numpy as np
import pytest
from _strategies import expect_error
from numpy.lib import format as npy_format

import ecomcore as ec
from ecomcore.cli import main


def _npy_with_header(header: bytes) -> bytes:
    """A .npy (format 1.0) whose header dict is exactly ``header`` (padded), then a few bytes."""
    pad = (64 - (len(npy_format.MAGIC_PREFIX) + 4 + len(header) + 1) % 64) % 64
    header = header + b" " * pad + b"\n"
    return npy_format.MAGIC_PREFIX + b"\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 24


# A NUL byte makes ast.literal_eval fail; numpy then tokenizes the header, and the unclosed
# bracket ends that in tokenize.TokenError.
TOKEN_ERROR_NPY = _npy_with_header(b"{'descr': ('<f8'\x00, 'fortran_order': False, 'shape': (3,), }")
NOT_NPY = b"this member is not a .npy array"


def _trust_file(path):
    model = ec.TrustModel(ec.default_indicators(), n_merchants=3)
    names = [i.name for i in ec.default_indicators()]
    state = model.fold({"merchant": [0, 2], "indicator": [names[0], names[0]], "value": [1.0, 0.0],
                        "time": [1.7e9, 1.7e9 + 60]})
    state.save(path)


def _interest_file(path):
    ec.InterestState(3, 4).save(path)


def _graph_file(path):
    g = ec.IdentityGraph()
    g.link([0, 1, 2], ["a", "b", "a"])
    g.ban([1])
    g.save(path)


WRITERS = {
    "TrustState": (_trust_file, ec.TrustState.load),
    "InterestState": (_interest_file, ec.InterestState.load),
    "IdentityGraph": (_graph_file, ec.IdentityGraph.load),
}


def _rezip(src: str, dst: str, member: str, blob: bytes) -> None:
    """Copy the archive ``src`` to ``dst`` with ``member``'s bytes replaced (CRCs stay correct)."""
    with zipfile.ZipFile(src) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    assert member in [n for n, _ in members], (member, [n for n, _ in members])
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members:
            z.writestr(name, blob if name == member else data)


def _members(path: str) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return z.namelist()


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("blob", [NOT_NPY, TOKEN_ERROR_NPY], ids=["not_npy", "token_error"])
@pytest.mark.parametrize("which", ["array", "header"])
def test_damaged_npy_member_is_a_value_error_naming_the_file(tmp_path, kind, blob, which):
    write, load = WRITERS[kind]
    good = os.path.join(tmp_path, "good.npz")
    write(good)
    load(good)  # the intact file loads
    arrays = [n for n in _members(good) if n != "__meta__.npy"]
    assert arrays, f"a {kind} file stores no arrays"
    member = arrays[0] if which == "array" else "__meta__.npy"
    bad = os.path.join(tmp_path, "bad.npz")
    _rezip(good, bad, member, blob)
    expect_error(load, bad, exc=ValueError, names=(bad,))


@pytest.mark.parametrize("blob", [NOT_NPY, TOKEN_ERROR_NPY], ids=["not_npy", "token_error"])
def test_cli_trust_file_with_a_damaged_member(tmp_path, blob):
    """``ecomcore rank --trust`` reads the trust file through the same loader: exit status 1
    and a message naming the file, no traceback."""
    d = str(tmp_path)
    names = [i.name for i in ec.default_indicators()]
    with open(f"{d}/mevents.csv", "w") as f:
        f.write(f"merchant,indicator,value,time\n0,{names[0]},1,1700000000\n1,{names[0]},0,1700000100\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["trust", "--events", f"{d}/mevents.csv", "--merchants", "2", "--out", f"{d}/t.npz",
                     "--quiet"]) == 0
    member = next(n for n in _members(f"{d}/t.npz") if n != "__meta__.npy")
    _rezip(f"{d}/t.npz", f"{d}/bad.npz", member, blob)
    import scipy.sparse as sp

    sp.save_npz(f"{d}/a.npz", sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]])))
    sp.save_npz(f"{d}/b.npz", sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 1.0]])))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["rank", "--profiles", f"{d}/a.npz", "--merchant-tags", f"{d}/b.npz", "--trust",
                   f"{d}/bad.npz", "--out", f"{d}/o.csv", "--quiet"])
    assert rc == 1, err.getvalue()
    assert "bad.npz" in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "change",
    [{"t_ref": 2**70}, {"t_ref": 1.7e9 + 86400.0}, {"t_ref": -1e300}, {"last_time": 1e300}],
    ids=["t_ref_huge", "t_ref_after_last", "t_ref_far_past", "last_time_huge"],
)
def test_trust_state_with_reference_time_out_of_order(tmp_path, change):
    """A TrustState file whose header puts the forward-decay reference time ``t_ref`` after the
    last event (or outside the supported time range) loaded, and every later ``stats(now)`` then
    failed with "now: ... lies too far before the folded events"; the CLI blamed that on the
    events file.  Folds and merges keep ``t_ref <= last_time``: the loader now checks it."""
    from ecomcore._persist import load_npz, save_npz
    from ecomcore.trust import _FORMAT, _VERSION

    good = os.path.join(tmp_path, "good.npz")
    _trust_file(good)
    arrays, meta = load_npz(good, _FORMAT, _VERSION)
    assert meta["t_ref"] <= meta["last_time"]
    bad = os.path.join(tmp_path, "bad.npz")
    save_npz(bad, _FORMAT, _VERSION, arrays, dict(meta, **change))
    expect_error(ec.TrustState.load, bad, exc=ValueError, names=(bad,))
    ec.TrustState.load(good).stats(meta["last_time"])  # the intact file loads and reads


def _npy_declaring(shape) -> bytes:
    """A .npy header declaring float64 ``shape``, followed by 16 bytes of data."""
    return _npy_with_header(repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode())


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("shape", [(2**40,), (2**64,)], ids=["8TiB", "beyond_int64"])
def test_npy_member_declaring_a_huge_array(tmp_path, kind, shape):
    """A member whose header declares 8 TiB raised MemoryError (numpy allocates before it reads),
    one declaring more elements than a C long raised OverflowError."""
    write, load = WRITERS[kind]
    good = os.path.join(tmp_path, "good.npz")
    write(good)
    for member in _members(good):
        bad = os.path.join(tmp_path, f"bad-{member}.npz")
        _rezip(good, bad, member, _npy_declaring(shape))
        expect_error(load, bad, exc=ValueError, names=(bad,))


def test_trust_state_with_a_huge_event_count(tmp_path):
    """A count of 1e300 events passed the loader's checks (finite, integral, >= 0); the kernels then
    cast it to int64 (undefined behaviour in C: -2**63 here) and ``score`` refused
    "stats.events: -9223372036854775808" (the CLI blamed the events file).  Counts above 2**53
    (where float64 stops holding every integer) are now refused at load."""
    from ecomcore._persist import load_npz, save_npz
    from ecomcore.trust import _FORMAT, _VERSION

    good = os.path.join(tmp_path, "good.npz")
    _trust_file(good)
    arrays, meta = load_npz(good, _FORMAT, _VERSION)
    for count, ok in ((2.0**53, True), (2.0**53 + 2, False), (1e300, False)):
        acc = np.array(arrays["acc"], copy=True)
        acc[0, 0, 3] = count
        path = os.path.join(tmp_path, f"count-{count:g}.npz")
        save_npz(path, _FORMAT, _VERSION, dict(arrays, acc=acc), meta)
        if ok:
            assert ec.TrustState.load(path).stats(meta["last_time"]).events[0, 0] == 2**53
        else:
            expect_error(ec.TrustState.load, path, exc=ValueError, names=(path,))


def _edited_trust_file(tmp_path, name, edit):
    """Save the good TrustState file again with ``edit(acc)`` applied to a copy of its sums."""
    from ecomcore._persist import load_npz, save_npz
    from ecomcore.trust import _FORMAT, _VERSION

    good = os.path.join(tmp_path, "good.npz")
    _trust_file(good)
    arrays, meta = load_npz(good, _FORMAT, _VERSION)
    acc = np.array(arrays["acc"], copy=True)  # (merchant, indicator, [n, s, s2, count])
    edit(acc)
    path = os.path.join(tmp_path, f"{name}.npz")
    save_npz(path, _FORMAT, _VERSION, dict(arrays, acc=acc), meta)
    return path, meta


@pytest.mark.parametrize(
    "name, edit, field",
    [
        ("n_without_events", lambda a: a[1, 0].__setitem__(slice(None), [0.5, 0.0, 0.0, 0.0]), "n = 0.5"),
        ("s_without_events", lambda a: a[1, 0].__setitem__(1, 1.0), "s = 1.0"),
        ("s2_without_events", lambda a: a[1, 0].__setitem__(2, 3.0), "s2 = 3.0"),
        ("s_without_weight", lambda a: a[0, 0].__setitem__(slice(0, 2), [0.0, 1.0]), "s = 1.0"),
        ("s_beyond_any_value", lambda a: a[0, 0].__setitem__(1, 1e120), "s = 1e+120"),
        ("s2_beyond_any_value", lambda a: a[0, 0].__setitem__(slice(1, 3), [1e-10, 1e100]), "s2 = 1e+100"),
    ],
)
def test_trust_state_with_inconsistent_sums(tmp_path, name, edit, field):
    """A TrustState file whose sums contradict each other (decayed weight n > 0 with no counted
    event, a sum s != 0 with n == 0, s beyond MAX_MAGNITUDE * n) loaded, and ``score`` then
    refused "stats: s must be 0 where n is 0" (the CLI blamed the events file).  Every fold and
    merge adds to n, s, s2 and the count together, with values <= MAX_MAGNITUDE: the loader now
    checks those invariants and names the file and the field."""
    path, meta = _edited_trust_file(tmp_path, name, edit)
    err = expect_error(ec.TrustState.load, path, exc=ValueError, names=(path,))
    assert "'acc'" in str(err) and field in str(err) and "merchant" in str(err), err


def test_trust_state_keeps_legitimate_sums(tmp_path):
    """The load-time checks leave real states alone: a state folded over a long span (sums rescaled
    towards underflow, a cell whose old evidence decayed to exactly 0 while it still counts events,
    values up to MAX_MAGNITUDE), merged with another, saved and loaded, reads as before and passes
    the model's check of the means."""
    inds = ec.default_indicators()
    names = [i.name for i in inds]
    kinds = {i.name: i.kind for i in inds}
    model = ec.TrustModel(inds, n_merchants=3)
    value = {"rate": 1.0, "rating": 5.0, "magnitude": 1e100}
    t0, year = 1.7e9, 365.25 * 86400.0
    st = model.fold({"merchant": [0] * len(names), "indicator": names,
                     "value": [value[kinds[n]] for n in names], "time": [t0] * len(names)})
    # ~1200 half-lives later (several rebases): the old sums underflow, counts stay
    for k in range(1, 13):
        st = model.fold({"merchant": [1], "indicator": [names[0]], "value": [0.0], "time": [t0 + 25 * k * year]},
                        st)
    other = model.fold({"merchant": [2], "indicator": [names[0]], "value": [1.0], "time": [t0 + 300 * year]})
    merged = st.merge(other)
    path = os.path.join(tmp_path, "long.npz")
    merged.save(path)
    back = ec.TrustState.load(path)
    now = t0 + 301 * year
    a, b = back.stats(now), merged.stats(now)
    for field in ("n", "s", "s2", "events"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.events[0] == 1).all() and (a.n[0] == 0).all()  # decayed to nothing, still counted
    model.fold({"merchant": [1], "indicator": [names[0]], "value": [1.0], "time": [now]}, into=back)
    assert back._unverified is None  # the model's check of the means passed


@pytest.mark.parametrize("kind, mean", [("rating", 7.0), ("rating", 0.5), ("rate", 1.5)])
def test_trust_state_with_a_mean_outside_the_value_range(tmp_path, kind, mean):
    """A TrustState file holding a rating mean of 7 (or a rate of 1.5) passed the loader (which does
    not know the indicators' kinds) and ``score`` refused "stats.s: ... outside [n, 5 n]"; the CLI
    blamed the events file.  The model now checks a loaded state's means once, the first time it
    meets the state (fold, score, the CLI's configuration check), naming the state and the file."""
    inds = ec.default_indicators()
    i = next(k for k, ind in enumerate(inds) if ind.kind == kind)

    def edit(acc):
        acc[1, i] = [2.0, 2.0 * mean, 2.0 * mean * mean, 2.0]

    path, meta = _edited_trust_file(tmp_path, f"{kind}-{mean}", edit)
    st = ec.TrustState.load(path)  # kind-agnostic invariants hold
    model = ec.TrustModel(inds, n_merchants=3)
    err = expect_error(model.score, st, meta["last_time"], exc=ValueError, names=("state",))
    assert path in str(err) and inds[i].name in str(err) and "merchant 1" in str(err), err
    assert "stats" not in str(err)
    ev = {"merchant": [0], "indicator": [inds[0].name], "value": [1.0], "time": [meta["last_time"]]}
    expect_error(model.fold, ev, st, exc=ValueError, names=("state",))
    expect_error(model.fold, ev, into=st.copy(), exc=ValueError, names=("into",))
    expect_error(model.score, st.merge(model.new_state()), meta["last_time"], exc=ValueError, names=("state",))
    # the intact file: checked once, then folds and scores as usual
    good = ec.TrustState.load(os.path.join(tmp_path, "good.npz"))
    model.fold(ev, into=good)
    assert good._unverified is None
    assert np.isfinite(model.score(good, meta["last_time"]).index).all()
