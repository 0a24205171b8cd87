"""Decayed sufficient statistics of a trust state, read at one moment.

This is the interface between folding (``TrustState``, ``ecomcore.trust``) and scoring
(``ecomcore.trust_scoring``): the fold side produces a :class:`TrustStats` for a time ``now``,
the scoring side turns it into a :class:`~ecomcore.trust_scoring.TrustScores`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrustStats:
    """Per (merchant, indicator) evidence decayed to ``now``.

    Attributes
    ----------
    now : float
        The moment (Unix seconds) the weights refer to.
    n : ndarray of float64, shape (n_merchants, n_indicators)
        Decayed number of counted events: the sum over counted events of ``2 ** (-(now - t) / h)``
        with ``h`` the half-life in seconds (after buyer deduplication).
    s : ndarray of float64, shape (n_merchants, n_indicators)
        Decayed sum of event values (for rates, the decayed number of 1-outcomes).
    s2 : ndarray of float64, shape (n_merchants, n_indicators)
        Decayed sum of squared event values.
    events : ndarray of int64, shape (n_merchants, n_indicators)
        Number of counted events, not decayed (after buyer deduplication).
    veto_time : ndarray of float64, shape (n_merchants,)
        Time of the latest confirmed veto event per merchant (``-inf`` when none).
    """

    now: float
    n: np.ndarray
    s: np.ndarray
    s2: np.ndarray
    events: np.ndarray
    veto_time: np.ndarray

    @property
    def n_merchants(self) -> int:
        """Number of merchants (rows)."""
        return int(self.n.shape[0])

    @property
    def n_indicators(self) -> int:
        """Number of indicators (columns)."""
        return int(self.n.shape[1])
