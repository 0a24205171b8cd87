"""Small random problems shared by the tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _sparse_dense(rng, shape, density, negative):
    v = rng.uniform(0.05, 1.0, shape)
    if negative:
        v *= rng.choice([-1.0, 1.0], shape)
    return v * (rng.random(shape) < density)


def random_problem(seed, n_users=40, n_tags=15, n_merchants=30, *, density_a=0.25,
                   density_b=0.2, dtype=np.float64, negative=True):
    """Random sparse (A, B) as canonical CSR arrays with values in [-1, 1] (or (0, 1])."""
    rng = np.random.default_rng(seed)
    Ad = _sparse_dense(rng, (n_users, n_tags), density_a, negative)
    Bd = _sparse_dense(rng, (n_tags, n_merchants), density_b, negative)
    return sp.csr_array(Ad.astype(dtype)), sp.csr_array(Bd.astype(dtype))


def random_sparse(seed, shape, density=0.1, *, dtype=np.float64, negative=True):
    """One random canonical CSR array."""
    rng = np.random.default_rng(seed)
    return sp.csr_array(_sparse_dense(rng, shape, density, negative).astype(dtype))


def int_problem(seed, n_users=20, n_tags=8, n_merchants=12, *, density=0.35, dtype=np.float64):
    """Random sparse (A, B) with small integer values: every score is exact, ties are common."""
    rng = np.random.default_rng(seed)
    vals = np.array([-2.0, -1.0, 1.0, 1.0, 2.0, 3.0])
    Ad = rng.choice(vals, (n_users, n_tags)) * (rng.random((n_users, n_tags)) < density)
    Bd = rng.choice(vals, (n_tags, n_merchants)) * (rng.random((n_tags, n_merchants)) < density)
    return sp.csr_array(Ad.astype(dtype)), sp.csr_array(Bd.astype(dtype))
