"""The kernels must never write outside their scratch buffers.

Runs a sweep of shapes, densities, k and thread counts in a fresh interpreter, so that heap
corruption shows up as glibc aborting that process (e.g. "munmap_chunk(): invalid pointer") rather
than as flaky failures elsewhere.  A scratch-size bug once passed every result check and only
crashed the CLI demo.
"""

import os
import subprocess
import sys

CODE = """
import numpy as np, scipy.sparse as sp, ecomcore as ec
from ecomcore.datasets import synthetic_market
rng = np.random.default_rng(0)
for n_m in (1, 37, 500, 4000):
    for dens in (0.02, 0.3, 1.0):
        A = sp.random_array((40, 30), density=0.3, format="csr", rng=rng)
        B = sp.random_array((30, n_m), density=dens, format="csr", rng=rng)
        for k in sorted({1, 3, 10, 100, n_m}):
            for nt in (1, 2):
                ec.sparse_topk(A, B, k, n_threads=nt)
        r = ec.Ranker(B)
        for k in (1, 10, 100):
            r.topk_one(A[[0]].indices, A[[0]].data, k)
for shared in (True, False):
    m = synthetic_market(300, 200, 500, seed=0, shared_popularity=shared)
    r = ec.Ranker(m.merchant_tags, trust=m.trust, banned=m.banned)
    for k in (1, 4, 10, 64, 100, 500):
        r.topk(m.user_tags, k, n_threads=2)
print("ok")
"""


def test_kernels_do_not_corrupt_the_heap(tmp_path):
    import ecomcore

    # the child imports the same ecomcore as this process (installed wheel or in-place build),
    # from a directory where no source tree can shadow it
    home = os.path.dirname(os.path.dirname(os.path.abspath(ecomcore.__file__)))
    path = os.pathsep.join([home] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env = dict(os.environ, MALLOC_PERTURB_="165", PYTHONPATH=path)
    res = subprocess.run(
        [sys.executable, "-c", CODE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")
