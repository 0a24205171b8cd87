"""Type stubs for ecomcore_ext._audience (per-user frequency cap over audience lists).

Arguments are not validated here: call through :mod:`ecomcore.audience`.
"""

import numpy as np
import numpy.typing as npt

def greedy_cap(
    start: npt.NDArray[np.int64],
    length: npt.NDArray[np.int64],
    user: npt.NDArray[np.int32] | npt.NDArray[np.int64],
    score: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    truncated: npt.NDArray[np.uint8],
    k: int,
    cap: int,
    used: npt.NDArray[np.int32],
    taken: npt.NDArray[np.int64],
    cursor: npt.NDArray[np.int64],
    log_row: npt.NDArray[np.int64],
    log_user: npt.NDArray[np.int64],
    log_score: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    log_n: npt.NDArray[np.int64],
    heap_key: npt.NDArray[np.float64],
    heap_row: npt.NDArray[np.int64],
) -> int:
    """Greedy per-user cap over the rows' candidate lists, merged in global order; resumable.

    Row ``r``'s candidates are ``user[start[r]:start[r] + length[r]]`` with ``score`` alike,
    best first; ``cursor[r]`` of them were visited by earlier calls.  The lists are merged by
    descending score, ties by ascending row (a binary heap of rows), and each entry is accepted
    when its user is in fewer than ``cap`` lists so far (``used``, per user); a row leaves the
    merge once it holds ``k`` (``taken``) or its list ends.  Accepted entries are appended to
    ``log_row``/``log_user``/``log_score`` at ``log_n[0]``, which is advanced.  The merge stops
    early, returning the row, when a ``truncated`` row (more candidates may exist) runs out while
    holding fewer than ``k``: everything up to that point is final, and a later call with that
    row's list extended (same first ``cursor[r]`` entries) continues exactly.  Returns -1 when
    the merge is complete.  ``heap_key``/``heap_row`` are scratch of one entry per row.
    """
