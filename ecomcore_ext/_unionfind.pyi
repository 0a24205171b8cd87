"""Type stubs for ecomcore_ext._unionfind (identity-graph hash map and union-find rebuild).

Arguments are not validated here: call through :mod:`ecomcore.governance`.
"""

import numpy as np
import numpy.typing as npt

Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]

class IntMap:
    """Hash map from int64 values to dense ids assigned in first-seen order."""

    size: int
    def __init__(self, capacity: int = 16) -> None: ...
    @property
    def capacity(self) -> int:
        """Number of slots."""
    @property
    def nbytes(self) -> int:
        """Bytes held by the slot table."""
    def get(self, key: int) -> int:
        """Dense id of ``key``, or -1 when absent."""
    def get_many(self, keys: Int64Array, out: Int32Array) -> None:
        """``out[i]`` = dense id of ``keys[i]``, or -1 when absent."""
    def get_or_insert_many(self, keys: Int64Array, out: Int32Array, next_id: int, new_keys: Int64Array) -> int:
        """Ids of ``keys`` into ``out``, absent keys getting ``next_id, next_id + 1, ...``.

        The inserted keys are written in id order to ``new_keys``; returns how many.
        """
    def set_many(self, keys: Int64Array, ids: Int32Array) -> int:
        """Insert ``keys[i] -> ids[i]``; returns how many keys were already present."""

def rebuild(
    e_store: Int32Array,
    e_key: Int32Array,
    n_edges: int,
    n_stores: int,
    n_keys: int,
    max_per_key: int,
    key_ptr: Int64Array,
    scratch: Int32Array,
    parent: Int32Array,
    size: Int32Array,
    key_comp: Int32Array,
    key_degree: Int32Array,
) -> int:
    """Rebuild store components from the links (distinct links grouped by key written back in
    place); returns the number of distinct links."""
