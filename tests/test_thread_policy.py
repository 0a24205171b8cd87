"""The OpenMP policy (issue 10, item 3b): ``topk_one`` never starts a thread team, ``n_threads=1``
runs on the calling thread, and ``n_threads=None`` means every core the process may use.

Counted in a fresh subprocess from ``/proc/self/task`` (the OS threads of the process), before and
after the calls: NumPy's BLAS may have started threads at import, so only the change counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import ecomcore as ec
from ecomcore._validation import resolve_threads

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")

CHILD = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import scipy.sparse as sp
    import ecomcore as ec

    def n_os_threads():
        return len(os.listdir("/proc/self/task"))

    rng = np.random.default_rng(0)
    B = sp.random(50, 400, density=0.1, format="csr", random_state=1)
    A = sp.random(2000, 50, density=0.2, format="csr", random_state=2)
    r = ec.Ranker(B)
    out = {"start": n_os_threads()}
    for _ in range(200):
        r.topk_one(np.array([1, 5, 7]), np.array([1.0, 0.5, 0.25]), k=10)
    out["after_topk_one"] = n_os_threads()
    r.topk(A, k=10, n_threads=1)
    out["after_topk_1"] = n_os_threads()
    r.topk(A, k=10, n_threads=2)
    out["after_topk_2"] = n_os_threads()
    print(json.dumps(out))
    """
)


def _run_child() -> dict:
    # the ecomcore under test, from a neutral directory (``python -c`` puts the working
    # directory first on sys.path, and the source tree may hold no compiled kernels)
    home = os.path.dirname(os.path.dirname(os.path.abspath(ec.__file__)))
    env = dict(os.environ, PYTHONPATH=home)
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120, cwd=cwd
        )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_topk_one_and_one_thread_start_no_team():
    got = _run_child()
    assert got["after_topk_one"] == got["start"]  # topk_one: the calling thread only
    assert got["after_topk_1"] == got["start"]  # n_threads=1 too


def test_two_threads_start_a_team_where_openmp_is_built():
    # the counter above is able to see a team: with OpenMP, n_threads=2 starts one
    got = _run_child()
    if not _openmp():
        pytest.skip("serial build (no OpenMP): no team to see")
    assert got["after_topk_2"] > got["start"]


def _openmp() -> bool:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return bool(ec.show_config()["openmp"])


def test_default_n_threads_is_the_cores_the_process_may_use():
    want = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert resolve_threads(None) == want
    assert resolve_threads(1) == 1
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises((TypeError, ValueError), match="n_threads"):
            resolve_threads(bad)
