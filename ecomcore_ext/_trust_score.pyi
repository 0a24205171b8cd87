"""Type stubs for ecomcore_ext._trust_score (trust scoring loops)."""

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

def find_invalid(
    n: F64, s: F64, s2: F64, events: I64, lo: F64, hi: F64, check_moments: bool
) -> tuple[int, int, int]:
    """First invalid cell, serially: ``(code, merchant, indicator)`` (code 0: none)."""

def category_moments(
    n: F64, s: F64, s2: F64, events: I64, row: I64, chunk: int, acc: F64, n_threads: int
) -> int:
    """J, K, sum k x, sum k x**2, sum k v, sum k**2, sum n, sum s and a violation sum per (row, indicator)."""

def estimates(
    n: F64,
    s: F64,
    cat: I64,
    lo: F64,
    hi: F64,
    off: F64,
    scale: F64,
    flip: F64,
    sign: F64,
    mag_ind: I64,
    order: I64,
    dim_start: I64,
    w_dim: F64,
    w_index: F64,
    ak: F64,
    k: F64,
    cautious: bool,
    z: float,
    mode: int,
    est: F64,
    ymag: F64,
    dims: F64,
    conf: F64,
    evidence: F64,
    scratch: F64,
    norms: F64,
    n_threads: int,
) -> int:
    """Rate/rating estimates, magnitude shrunk means, dimension sums, confidence; number of invalid rows."""

def magnitude_percentiles(
    ymag: F64,
    mag_ind: I64,
    lower: I8,
    cat: I64,
    n_cat: int,
    prior_mean: F64,
    out: F64,
    norm: F64,
    n_threads: int,
) -> int:
    """Mid-rank percentiles of each magnitude within categories into ``out``; -1 on allocation failure."""

def finish(
    pct: F64,
    mag_ind: I64,
    dim_of: I64,
    w_dim: F64,
    dim_share: F64,
    has_dim: I8,
    veto_time: F64,
    now: float,
    veto_window: float,
    veto_floor: float,
    dims: F64,
    conf: F64,
    uncapped: F64,
    index: F64,
    vetoed: I8,
    n_threads: int,
) -> None:
    """Magnitude percentiles into ``dims``; NaN for empty dimensions; index, vetoes, clipped confidence."""
