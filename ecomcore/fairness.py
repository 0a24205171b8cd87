"""FA*IR tables: the minimum number of protected items in every prefix of a top-k list.

Zehlike et al., "FA*IR: A Fair Top-k Ranking Algorithm", CIKM 2017.  A ranking of ``k`` items
passes the *ranked group fairness* test at significance ``alpha`` when every prefix of length
``i`` holds at least ``m[i] = binom.ppf(alpha, i, p)`` protected items: fewer would be unlikely
(probability below ``alpha`` for that prefix) if each position were protected independently
with probability ``p``.  Testing all ``k`` prefixes at once rejects fair rankings more often
than ``alpha``; the *adjusted* table uses a smaller ``alpha_c`` chosen so that the overall
probability of rejecting a fair ranking -- the *fail probability*, computed exactly here by
dynamic programming over the prefixes -- is as close to ``alpha`` as the discrete tables allow.

:func:`ecomcore.rerank_exposure` accepts a table as ``min_protected``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import binom

from ecomcore._validation import check_int, check_real, to_array

__all__ = ["MAX_K", "fair_fail_probability", "fair_table"]

#: Longest list a FA*IR table is computed or checked for.  A table constrains one ranked list
#: shown to a person (a results page, a feed), far shorter than this; the adjusted table costs
#: O(p * k**2) memory and O(k**2 log k) time (k = 5,000: up to 0.7 GiB and 11 s on a 2-core
#: machine, p = 0.95), and an unbounded k let one call exhaust the memory of the service.
MAX_K = 5_000


def _check_p(value: Any, name: str) -> float:
    v = check_real(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name}: must lie in the open interval (0, 1), got {v}")
    return v


def _table_at(k: int, p: float, alpha: float) -> np.ndarray:
    """``m[i-1] = binom.ppf(alpha, i, p)`` for ``i = 1..k``: the smallest ``j`` with
    ``F(j; i, p) >= alpha``, as int64.

    scipy's ppf is the first guess (boost's quantile search can give up for large ``i``, with
    a RuntimeWarning and a wrong value); the guess is then corrected with the CDF itself, so
    the table always satisfies ``F(m - 1) < alpha <= F(m)``.
    """
    n = np.arange(1, k + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        guess = binom.ppf(alpha, n, p)
    m = np.where(np.isfinite(guess), guess, 0.0)
    m = np.clip(m, 0, n).astype(np.int64)
    for _ in range(k + 1):
        down = (m > 0) & (binom.cdf(m - 1, n, p) >= alpha)
        up = (m < n) & (binom.cdf(m, n, p) < alpha)
        if not (down.any() or up.any()):
            break
        m = m - down + up
    return m


def _fail_probability(table: np.ndarray, p: float) -> float:
    """Exact probability that an i.i.d. Bernoulli(p) ranking violates some prefix of ``table``.

    ``dist[c]`` is the probability of holding ``c`` protected items after the current prefix
    with every prefix so far passing; the mass below the prefix minimum fails there and is
    added up (summing the failures, rather than taking ``1 - passes``, keeps small fail
    probabilities accurate and an all-zero table exactly at 0).
    """
    k = table.shape[0]
    dist = np.zeros(k + 2, dtype=np.float64)
    dist[0] = 1.0
    q = 1.0 - p
    fail = 0.0
    for i in range(k):
        new = np.empty_like(dist)
        new[0] = dist[0] * q
        new[1:] = dist[1:] * q + dist[:-1] * p
        need = min(int(table[i]), new.shape[0])
        if need > 0:
            fail += float(new[:need].sum())
            new[:need] = 0.0
        dist = new
    return min(max(fail, 0.0), 1.0)


def fair_fail_probability(table: Any, p: float) -> float:
    """Probability that a fair ranking fails a FA*IR table.

    A *fair* ranking puts a protected item at each position independently with probability
    ``p``; it *fails* when some prefix of length ``i`` holds fewer than ``table[i-1]``
    protected items.  Computed exactly (up to float rounding) by dynamic programming over the
    prefixes, O(k^2).

    Parameters
    ----------
    table : array_like of int, shape (k,)
        Minimum protected count for each prefix length 1..k (non-negative integers).
    p : float
        Probability that a position holds a protected item, in ``(0, 1)``.

    Returns
    -------
    float
        The fail probability in ``[0, 1]``.

    Raises
    ------
    TypeError
        If ``table`` does not hold integers.
    ValueError
        If ``table`` is not 1-D, is empty, longer than :data:`MAX_K` or has a negative entry,
        or ``p`` is outside (0, 1).

    Notes
    -----
    For ``k = 20, p = 0.25, alpha = 0.1`` the unadjusted table fails with probability
    0.14689 and the adjusted one with 0.10515.  fairsearchcore 1.0.4 reports 0.11518 for the
    unadjusted table: its auxiliary table of "blocks" (``compute_aux_mtable``) loops over
    positions ``1 .. k-1`` only, so the increase of the minimum at position ``k`` (2 -> 3
    there) is dropped and it computes the fail probability of a different, weaker table.

    Examples
    --------
    >>> from ecomcore import fair_fail_probability, fair_table
    >>> round(fair_fail_probability(fair_table(20, 0.25, 0.1, adjusted=False), 0.25), 5)
    0.14689
    """
    p = _check_p(p, "p")
    arr = to_array(table, "table")
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"table: expected a non-empty 1-D table, got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"table: expected integers, got dtype {arr.dtype}")
    if arr.shape[0] > MAX_K:
        raise ValueError(f"table: at most {MAX_K} entries (list positions) supported, got {arr.shape[0]}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"table: entries must be >= 0, got {arr.min()}")
    return _fail_probability(arr, p)


def fair_table(k: int, p: float, alpha: float, *, adjusted: bool = True) -> np.ndarray:
    """FA*IR minimum number of protected items in each prefix of a top-k list.

    Parameters
    ----------
    k : int
        List length, ``1 <= k <= MAX_K`` (5,000).
    p : float
        Target proportion of protected items, in ``(0, 1)``.
    alpha : float
        Significance level, in ``(0, 1)``.
    adjusted : bool, default True
        ``False``: ``m[i] = binom.ppf(alpha, i, p)`` for every prefix length ``i``.  ``True``:
        the same with a corrected ``alpha_c <= alpha`` such that the fail probability of the
        whole table (:func:`fair_fail_probability`) is the closest to ``alpha`` over all
        ``alpha_c`` in ``(0, alpha]`` (ties to the smaller one) -- the adjustment of Zehlike et
        al. 2017 as fairsearchcore implements it, but with exact fail probabilities.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        ``table[i-1]`` = minimum protected items among the first ``i``; non-decreasing, steps
        of at most 1.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If ``k < 1`` or ``k > MAX_K`` (5,000), or ``p`` or ``alpha`` lies outside ``(0, 1)``.

    Notes
    -----
    The tables for ``alpha_c`` in ``(0, alpha]`` are nested and change only where ``alpha_c``
    crosses a binomial CDF value ``F(j; i, p) < alpha``; their fail probability grows with
    ``alpha_c``.  The adjusted table is found by bisection over those breakpoints (about
    ``log2(sum(table))`` exact evaluations).  The result may fail slightly more often than
    ``alpha`` when that is the closer table: for ``k = 20, p = 0.25, alpha = 0.1`` it is
    ``[0]*8 + [1]*7 + [2]*5`` with fail probability 0.10515 (the next weaker table has
    0.08972); the unadjusted table is ``[0]*8 + [1]*6 + [2]*5 + [3]`` (0.14689).

    Examples
    --------
    >>> from ecomcore import fair_table
    >>> fair_table(20, 0.25, 0.1).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    """
    k = check_int(k, "k")
    if k > MAX_K:
        raise ValueError(f"k: at most {MAX_K} list positions supported, got {k}")
    p = _check_p(p, "p")
    alpha = _check_p(alpha, "alpha")
    if not isinstance(adjusted, (bool, np.bool_)):
        raise TypeError(f"adjusted: expected a bool, got {type(adjusted).__name__}")
    table = _table_at(k, p, alpha)
    if not adjusted:
        return table
    # Breakpoints: F(j; i, p) for the j < table[i-1] (exactly those below alpha).
    i_rep = np.repeat(np.arange(1, k + 1), table)
    if i_rep.size == 0:
        return table
    j_rep = np.arange(i_rep.size) - np.repeat(np.cumsum(table) - table, table)
    breaks = np.unique(binom.cdf(j_rep, i_rep, p))
    breaks = breaks[(breaks > 0) & (breaks < alpha)]
    # Candidate alpha_c: each breakpoint (the table just below it) and alpha itself.
    cands = np.append(breaks, alpha)
    cache: dict[int, tuple[np.ndarray, float]] = {}

    def at(r: int) -> tuple[np.ndarray, float]:
        if r not in cache:
            t = _table_at(k, p, float(cands[r]))
            cache[r] = (t, _fail_probability(t, p))
        return cache[r]

    # Largest r with fail <= alpha (r = 0 gives the weakest table, failing least).
    lo, hi = 0, cands.shape[0] - 1
    if at(hi)[1] <= alpha:
        return at(hi)[0]
    if at(lo)[1] > alpha:
        return at(lo)[0]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if at(mid)[1] <= alpha:
            lo = mid
        else:
            hi = mid
    t_lo, f_lo = at(lo)
    t_hi, f_hi = at(hi)
    return t_lo if abs(f_lo - alpha) <= abs(f_hi - alpha) else t_hi
