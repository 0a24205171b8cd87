"""Synthetic Zipf-like markets for examples, tests and benchmarks.

A *market* is the input of the ranking kernel: a users x tags interest matrix, a tags x
merchants matrix, a trust value per merchant and a mask of banned merchants.  Tag popularity
follows a bounded Zipf law on both sides.  Two regimes matter for performance:

* ``shared_popularity=True``: the same tags are popular for users and merchants, so a user's
  head tags reach most merchants (a *dense* product).
* ``shared_popularity=False``: merchant-side popularity is an independent permutation of the
  tags, so users reach only a few percent of the merchants (a *sparse* product).

Generation is vectorised (alias-method sampling in row chunks, de-duplication by sorting
``row * n_tags + tag`` keys), seeded and deterministic: the same arguments give identical
arrays on every run and platform.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Tuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = [
    "Behaviour",
    "Market",
    "compare_topk",
    "load_olist",
    "load_taobao",
    "scipy_topk",
    "synthetic_behaviour",
    "synthetic_identity_links",
    "synthetic_market",
    "synthetic_trust_events",
]

# Rows generated per chunk: keeps the temporaries cache-sized (a few hundred thousand draws).
# Fixed, so that results never depend on anything but the arguments.
_CHUNK_ROWS = 8192
# Rounds of top-up draws for rows that still lack distinct tags (only matters when a row asks
# for nearly all columns of a tiny matrix); rows still short afterwards keep what they have.
_MAX_ROUNDS = 64


@dataclass(frozen=True, eq=False)
class Market:
    """A generated market: the inputs of :class:`ecomcore.Ranker`.

    Attributes
    ----------
    user_tags : scipy.sparse.csr_array
        Interest weights, shape ``(n_users, n_tags)``, canonical CSR (sorted indices, no
        duplicates), values in ``[0.1, 1)``.
    merchant_tags : scipy.sparse.csr_array
        Merchant tag weights, shape ``(n_tags, n_merchants)``, canonical CSR, values in
        ``[0.1, 1)``.
    trust : numpy.ndarray
        Trust per merchant, shape ``(n_merchants,)``, values in ``[0.05, 1]``.
    banned : numpy.ndarray
        Boolean mask of banned merchants, shape ``(n_merchants,)``.
    follows : scipy.sparse.csr_array or None
        Optional follow weights, shape ``(n_users, n_merchants)`` (all ones), canonical CSR.
    """

    user_tags: sp.csr_array
    merchant_tags: sp.csr_array
    trust: np.ndarray
    banned: np.ndarray
    follows: sp.csr_array | None = None

    @property
    def n_users(self) -> int:
        """Number of users (rows of ``user_tags``)."""
        return int(self.user_tags.shape[0])

    @property
    def n_tags(self) -> int:
        """Number of tags."""
        return int(self.user_tags.shape[1])

    @property
    def n_merchants(self) -> int:
        """Number of merchants (columns of ``merchant_tags``)."""
        return int(self.merchant_tags.shape[1])

    def merchant_weight(self) -> np.ndarray:
        """Return the default ranking weight per merchant: ``trust``, 0 where banned.

        Returns
        -------
        numpy.ndarray
            ``trust`` with banned merchants set to 0 (same dtype as ``trust``).
        """
        w = self.trust.copy()
        w[self.banned] = 0
        return w

    def folded_merchant_tags(self) -> sp.csr_array:
        """Return ``B' = B @ diag(w)`` with ``w`` from :meth:`merchant_weight`, zeros removed.

        This is the problem handed to peers that know nothing of trust or bans (scipy,
        sparse_dot_topn): ``user_tags @ B'`` holds the same scores as ecomcore's kernel.

        Returns
        -------
        scipy.sparse.csr_array
            Canonical CSR of shape ``(n_tags, n_merchants)``, same dtype as ``merchant_tags``.
        """
        b = self.merchant_tags
        w = self.merchant_weight().astype(b.dtype, copy=False)
        data = b.data * w[b.indices]
        folded = sp.csr_array((data, b.indices.copy(), b.indptr.copy()), shape=b.shape)
        folded.eliminate_zeros()
        return folded

    def multiply_adds(self) -> int:
        """Return the multiply-adds of the product ``user_tags @ merchant_tags``.

        Returns
        -------
        int
            Sum over users of the sum over their tags of the number of merchants holding the
            tag (the work of a row-wise sparse product).
        """
        per_tag = np.diff(self.merchant_tags.indptr).astype(np.int64)
        return int(per_tag[self.user_tags.indices].sum())


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _check_real(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    return value


def _alias_table(p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Build Walker/Vose alias tables for the discrete distribution ``p`` (sums to 1)."""
    n = p.size
    q = (p * n).tolist()
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if q[i] < 1.0]
    large = [i for i in range(n) if q[i] >= 1.0]
    while small and large:
        s = small.pop()
        g = large.pop()
        prob[s] = q[s]
        alias[s] = g
        q[g] = (q[g] + q[s]) - 1.0
        (small if q[g] < 1.0 else large).append(g)
    # Whatever is left has probability 1 up to rounding: prob stays 1.
    return prob, alias


def _zipf_sampler(n_cols: int, a: float, perm: np.ndarray) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Return ``draw(rng, n)``: ``n`` column ids, rank r drawn with p ~ (r+1)^-a, mapped by perm."""
    p = np.arange(1, n_cols + 1, dtype=np.float64) ** (-a)
    p /= p.sum()
    prob, alias = _alias_table(p)
    # Fold the popularity permutation into the tables: one gather per draw.
    col_dtype = np.int32 if n_cols < 2**31 else np.int64
    col_self = perm.astype(col_dtype)
    col_alias = perm[alias].astype(col_dtype)

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.random(n) * n_cols
        i = x.astype(np.intp)
        np.minimum(i, n_cols - 1, out=i)
        x -= i
        return np.where(x < prob[i], col_self[i], col_alias[i])

    return draw


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)
    if keys.size > 1:
        keep = np.empty(keys.size, dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def _distinct_rows(
    rng: np.random.Generator,
    counts: np.ndarray,
    n_cols: int,
    draw: Callable[[np.random.Generator, int], np.ndarray],
) -> Tuple[np.ndarray, np.ndarray]:
    """Sample ``counts[r]`` distinct columns per row (draw until that many distinct are held).

    Returns ``(indptr, indices)`` of a canonical CSR structure (int64 indptr, int32/int64
    indices sorted within rows).
    """
    n_rows = counts.size
    idx_dtype = np.int32 if n_cols < 2**31 else np.int64
    total = int(counts.sum())
    indices = np.empty(total, dtype=idx_dtype)
    row_nnz = np.zeros(n_rows, dtype=np.int64)
    pos = 0
    for start in range(0, n_rows, _CHUNK_ROWS):
        c = counts[start : start + _CHUNK_ROWS]
        r = c.size
        # Keys row * n_cols + col in the narrowest integer type (int32 sorts faster).
        key_dtype = np.int32 if r * n_cols < 2**31 else np.int64
        rows = np.repeat(np.arange(r, dtype=key_dtype), c)
        keys = _sorted_unique(rows * n_cols + draw(rng, rows.size))
        deficit = c - np.bincount(keys // n_cols, minlength=r)
        for _ in range(_MAX_ROUNDS):
            active = np.flatnonzero(deficit > 0)
            if active.size == 0:
                break
            rows = np.repeat(active.astype(key_dtype), deficit[active])
            new = _sorted_unique(rows * n_cols + draw(rng, rows.size))
            at = np.searchsorted(keys, new)
            present = keys[np.minimum(at, keys.size - 1)] == new if keys.size else np.zeros(new.size, dtype=bool)
            fresh = ~present
            new = new[fresh]
            keys = np.insert(keys, at[fresh], new)
            deficit -= np.bincount(new // n_cols, minlength=r)
        got = np.bincount(keys // n_cols, minlength=r)
        row_nnz[start : start + r] = got
        indices[pos : pos + keys.size] = keys % n_cols
        pos += keys.size
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    return indptr, indices[:pos]


def _uniform(rng: np.random.Generator, n: int, low: float, high: float, dtype: np.dtype) -> np.ndarray:
    """Uniform values in ``[low, high]`` drawn directly in ``dtype`` (no float64 temporary)."""
    out = rng.random(n, dtype=dtype)
    out *= dtype.type(high - low)
    out += dtype.type(low)
    np.clip(out, low, high, out=out)
    return out


def _csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: Tuple[int, int]) -> sp.csr_array:
    """Assemble a canonical csr_array, with int32 index arrays whenever they fit."""
    if indptr[-1] < 2**31 and max(shape) < 2**31:
        indptr = indptr.astype(np.int32)
        indices = indices.astype(np.int32, copy=False)
    out = sp.csr_array((data, indices, indptr), shape=shape)
    out.has_sorted_indices = True
    out.has_canonical_format = True
    return out


def synthetic_market(
    n_users: int,
    n_tags: int,
    n_merchants: int,
    *,
    seed: int = 0,
    shared_popularity: bool = True,
    zipf_a: float = 1.1,
    user_tags_mean: float = 30,
    merchant_tags: Tuple[int, int] = (3, 12),
    banned_fraction: float = 0.01,
    follows_mean: float = 0.0,
    dtype: npt.DTypeLike = np.float32,
) -> Market:
    """Generate a seeded Zipf-like market.

    Each user holds about ``user_tags_mean`` distinct tags (log-normal, sigma 0.5, clipped to
    5..100 and to ``n_tags``); each merchant holds between ``merchant_tags[0]`` and
    ``merchant_tags[1]`` distinct tags (uniform, clipped to ``n_tags``).  Tags are drawn with
    bounded Zipf popularity ``p(rank) ~ rank ** -zipf_a`` until the row holds the wanted number
    of distinct tags.  Weights are uniform in ``[0.1, 1)``, trust uniform in ``[0.05, 1]``.

    Parameters
    ----------
    n_users : int
        Number of users (>= 0).
    n_tags : int
        Number of tags (>= 1).
    n_merchants : int
        Number of merchants (>= 1).
    seed : int, default 0
        Seed (>= 0).  Independent streams are derived for the tag permutations, the users, the
        merchants, trust/bans and follows, so e.g. the merchant side does not depend on
        ``n_users``.
    shared_popularity : bool, default True
        True: merchants use the users' tag popularity ranking (dense product, users reach most
        merchants).  False: an independent permutation (sparse product, users reach a few %).
    zipf_a : float, default 1.1
        Zipf exponent (>= 0; 0 is uniform popularity).
    user_tags_mean : float, default 30
        Median number of tags per user (> 0).
    merchant_tags : tuple of int, default (3, 12)
        Inclusive range of the number of tags per merchant (``1 <= lo <= hi``).
    banned_fraction : float, default 0.01
        Fraction of merchants banned (in ``[0, 1]``), rounded to a whole number of merchants.
    follows_mean : float, default 0.0
        Mean number of followed merchants per user (Poisson, uniform merchants, weight 1);
        0 gives ``follows=None``.
    dtype : numpy dtype, default numpy.float32
        float32 or float64: dtype of the matrix values and of ``trust``.

    Returns
    -------
    Market
        The generated market.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If an argument is out of range; the message names the argument.

    Examples
    --------
    >>> from ecomcore.datasets import synthetic_market
    >>> m = synthetic_market(1000, 200, 500, seed=1)
    >>> m.user_tags.shape, m.merchant_tags.shape, m.trust.shape
    ((1000, 200), (200, 500), (500,))
    """
    n_users = _check_int("n_users", n_users, 0)
    n_tags = _check_int("n_tags", n_tags, 1)
    n_merchants = _check_int("n_merchants", n_merchants, 1)
    seed = _check_int("seed", seed, 0)
    if not isinstance(shared_popularity, (bool, np.bool_)):
        raise TypeError(f"shared_popularity: expected a bool, got {type(shared_popularity).__name__}")
    zipf_a = _check_real("zipf_a", zipf_a)
    if zipf_a < 0:
        raise ValueError(f"zipf_a: must be >= 0, got {zipf_a}")
    user_tags_mean = _check_real("user_tags_mean", user_tags_mean)
    if user_tags_mean <= 0:
        raise ValueError(f"user_tags_mean: must be > 0, got {user_tags_mean}")
    try:
        lo, hi = merchant_tags
    except (TypeError, ValueError):
        raise TypeError("merchant_tags: expected a pair (lo, hi) of integers") from None
    lo = _check_int("merchant_tags", lo, 1)
    hi = _check_int("merchant_tags", hi, 1)
    if lo > hi:
        raise ValueError(f"merchant_tags: need lo <= hi, got ({lo}, {hi})")
    banned_fraction = _check_real("banned_fraction", banned_fraction)
    if not 0.0 <= banned_fraction <= 1.0:
        raise ValueError(f"banned_fraction: must be in [0, 1], got {banned_fraction}")
    follows_mean = _check_real("follows_mean", follows_mean)
    if follows_mean < 0:
        raise ValueError(f"follows_mean: must be >= 0, got {follows_mean}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: not a numpy dtype: {dtype!r}") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: must be float32 or float64, got {dtype}")

    ss_perm, ss_users, ss_merch, ss_trust, ss_follow = np.random.SeedSequence(seed).spawn(5)

    # Tag popularity: rank r -> tag perm[r]; the merchant side shares it or not.
    rng = np.random.default_rng(ss_perm)
    user_perm = rng.permutation(n_tags)
    merch_perm = user_perm if shared_popularity else rng.permutation(n_tags)

    # Users.
    rng = np.random.default_rng(ss_users)
    u_hi = min(100, n_tags)
    u_lo = min(5, u_hi)
    counts = rng.lognormal(math.log(user_tags_mean), 0.5, n_users)
    counts = np.clip(np.rint(counts), u_lo, u_hi).astype(np.int64)
    indptr, indices = _distinct_rows(rng, counts, n_tags, _zipf_sampler(n_tags, zipf_a, user_perm))
    data = _uniform(rng, indices.size, 0.1, 1.0, dtype)
    user_tags = _csr(indptr, indices, data, (n_users, n_tags))

    # Merchants: generated merchant-major, stored tags x merchants.
    rng = np.random.default_rng(ss_merch)
    counts = rng.integers(min(lo, n_tags), min(hi, n_tags) + 1, n_merchants).astype(np.int64)
    indptr, indices = _distinct_rows(rng, counts, n_tags, _zipf_sampler(n_tags, zipf_a, merch_perm))
    data = _uniform(rng, indices.size, 0.1, 1.0, dtype)
    by_merchant = sp.csr_array((data, indices, indptr), shape=(n_merchants, n_tags))
    by_tag = by_merchant.T.tocsr()  # CSC -> CSR conversion yields sorted indices
    by_tag.sort_indices()
    merchant_tags_csr = _csr(by_tag.indptr.astype(np.int64), by_tag.indices, by_tag.data, (n_tags, n_merchants))

    # Trust and bans.
    rng = np.random.default_rng(ss_trust)
    trust = _uniform(rng, n_merchants, 0.05, 1.0, dtype)
    banned = np.zeros(n_merchants, dtype=bool)
    n_banned = int(round(banned_fraction * n_merchants))
    if n_banned:
        banned[rng.choice(n_merchants, n_banned, replace=False)] = True

    # Follows (optional).
    follows = None
    if follows_mean > 0 and n_users > 0:
        rng = np.random.default_rng(ss_follow)
        counts = np.minimum(rng.poisson(follows_mean, n_users), n_merchants).astype(np.int64)

        def uniform(g: np.random.Generator, n: int) -> np.ndarray:
            idt = np.int32 if n_merchants < 2**31 else np.int64
            return g.integers(0, n_merchants, n, dtype=idt)

        indptr, indices = _distinct_rows(rng, counts, n_merchants, uniform)
        data = np.ones(indices.size, dtype=dtype)
        follows = _csr(indptr, indices, data, (n_users, n_merchants))

    return Market(
        user_tags=user_tags,
        merchant_tags=merchant_tags_csr,
        trust=trust,
        banned=banned,
        follows=follows,
    )


def synthetic_trust_events(
    quality: npt.ArrayLike,
    indicators: Sequence[Any],
    *,
    n_events: int,
    start: float,
    days: float = 180.0,
    buyers: int = 0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Generate merchant events for a trust model from a latent quality per merchant.

    Merchant ``m`` with quality ``q[m]`` in [0, 1] draws its share of ``n_events`` from a
    Zipf-like volume (a few merchants hold most orders, many hold a handful), indicators
    uniformly from ``indicators``, times uniformly in ``[start, start + days)``, and values by the
    indicator's kind and direction: a ``rate`` is 1 with probability ``0.02 + 0.3 * (1 - q)``
    when lower is better (refunds, complaints), ``0.5 + 0.45 * q`` when higher is better; a
    ``rating`` is ``round(1 + 4 * q + noise)`` clipped to 1..5; a ``magnitude`` is gamma
    distributed with mean ``10 * (2 - q)`` (lower is better) or ``10 * (1 + q)``.  Veto
    indicators fire with probability ``0.002 * (1 - q) ** 4``.

    Parameters
    ----------
    quality : array_like of float
        Latent quality per merchant, in [0, 1].
    indicators : sequence of Indicator
        The catalogue the events refer to (by position).
    n_events : int
        Number of events (>= 0).
    start : float
        First possible event time (Unix seconds).
    days : float, default 180
        Length of the time window.
    buyers : int, default 0
        When > 0, a ``buyer`` column with ids in ``[0, buyers)`` is added.
    seed : int, default 0
        Seed.

    Returns
    -------
    dict of str to ndarray
        Columns ``merchant`` (int64), ``indicator`` (int64), ``value``, ``time`` (float64) and,
        with ``buyers > 0``, ``buyer`` (int64): the columnar events of ``TrustModel.fold``.
    """
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all((q >= 0) & (q <= 1)):
        raise ValueError("quality: expected a non-empty 1-D array of values in [0, 1]")
    n_events = _check_int("n_events", n_events, 0)
    buyers = _check_int("buyers", buyers, 0)
    if not indicators:
        raise ValueError("indicators: expected at least one indicator")
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    n_m = q.size
    volume = rng.permutation(n_m).astype(np.float64)
    volume = (volume + 1.0) ** -1.0
    merchant = rng.choice(n_m, n_events, p=volume / volume.sum()).astype(np.int64)
    ind = rng.integers(0, len(indicators), n_events).astype(np.int64)
    time = start + rng.random(n_events) * days * 86400.0
    qm = q[merchant]
    value = np.empty(n_events)
    kinds = np.array([i.kind for i in indicators])[ind]
    lower = np.array([i.direction == "lower" for i in indicators])[ind]
    veto = np.array([bool(i.veto) for i in indicators])[ind]
    u = rng.random(n_events)
    rate = kinds == "rate"
    p = np.where(lower, 0.02 + 0.3 * (1 - qm), 0.5 + 0.45 * qm)
    p = np.where(veto, 0.002 * (1 - qm) ** 4, p)
    value[rate] = (u[rate] < p[rate]).astype(np.float64)
    rating = kinds == "rating"
    value[rating] = np.clip(np.rint(1 + 4 * qm[rating] + rng.normal(0, 0.8, int(rating.sum()))), 1, 5)
    mag = kinds == "magnitude"
    mean = np.where(lower, 10 * (2 - qm), 10 * (1 + qm))[mag]
    value[mag] = rng.gamma(2.0, mean / 2.0)
    out = {"merchant": merchant, "indicator": ind, "value": value, "time": time}
    if buyers:
        out["buyer"] = rng.integers(0, buyers, n_events).astype(np.int64)
    return out


def synthetic_identity_links(
    n_stores: int, *, keys_per_store: int = 3, shared_fraction: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Generate identity links (store, key) with some keys shared between stores.

    Every store gets ``keys_per_store`` keys from the namespaces ``owner``, ``phone``,
    ``device``, ``payout`` and ``address`` (in that order, cycling); a ``shared_fraction`` of
    the stores reuse one key of another store (an owner reopening under a new account).

    Parameters
    ----------
    n_stores : int
        Number of stores (>= 1).
    keys_per_store : int, default 3
        Keys per store (1..5).
    shared_fraction : float, default 0.05
        Share of stores that reuse another store's key.
    seed : int, default 0
        Seed.

    Returns
    -------
    stores : ndarray of int64
        Store id of each link.
    keys : list of tuple
        Key of each link, as ``(namespace, number)``.
    """
    n_stores = _check_int("n_stores", n_stores, 1)
    keys_per_store = _check_int("keys_per_store", keys_per_store, 1)
    if keys_per_store > 5:
        raise ValueError(f"keys_per_store: at most 5, got {keys_per_store}")
    if not 0 <= float(shared_fraction) <= 1:
        raise ValueError(f"shared_fraction: expected a value in [0, 1], got {shared_fraction}")
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    spaces = ("owner", "phone", "device", "payout", "address")
    stores = np.repeat(np.arange(n_stores, dtype=np.int64), keys_per_store)
    keys: list[tuple[str, int]] = [(spaces[j], s) for s in range(n_stores) for j in range(keys_per_store)]
    n_shared = int(round(shared_fraction * n_stores))
    if n_shared and n_stores > 1:
        reusers = rng.choice(n_stores, n_shared, replace=False)
        for s in reusers:
            other = int(rng.integers(0, n_stores - 1))
            other += other >= s
            j = int(rng.integers(0, keys_per_store))
            keys[int(s) * keys_per_store + j] = (spaces[j], int(other))
    return stores, keys


# --------------------------------------------------------------------------------------------
# Raw behaviour: catalogue, events, follows (the input of InterestModel)
# --------------------------------------------------------------------------------------------

#: Event kinds of :func:`synthetic_behaviour`, in code order.
BEHAVIOUR_KINDS: Tuple[str, ...] = ("view", "fav", "cart", "buy")
_DAY = 86400.0


@dataclass(frozen=True, eq=False)
class Behaviour:
    """Raw, generated behaviour of a market: a catalogue, behaviour events and follows.

    The input of :class:`ecomcore.InterestModel` (``fold(events, item_tags)``,
    ``merchant_profiles(item_tags, item_merchant)``, ``follow_matrix(**follow_events())``),
    plus the latent truth it was drawn from.

    Attributes
    ----------
    events : dict of str to numpy.ndarray
        Behaviour events sorted by time: ``user`` (int64), ``item`` (int64), ``kind`` (str
        ``"view"``, ``"fav"``, ``"cart"``, ``"buy"``), ``time`` (float64 Unix seconds).
    item_tags : scipy.sparse.csr_array
        Items x tags, float64, canonical: every item has one of its merchant's tags (weight 1)
        and possibly a second one (weight 0.5).
    item_merchant : numpy.ndarray
        Merchant of every item (int64); a merchant's items are consecutive.
    follows : dict of str to numpy.ndarray
        Follow events sorted by time: ``user``, ``merchant`` (int64), ``time`` (float64).
    interests : scipy.sparse.csr_array
        Latent interests the users' events were drawn from: users x tags, float64, each
        non-empty row sums to 1.
    quality : numpy.ndarray
        Latent merchant quality in ``[0, 1]`` (float64): raises a merchant's sales, repeat
        purchases and follows; feed it to :func:`synthetic_trust_events`.
    banned : numpy.ndarray
        Boolean mask of banned merchants (drawn towards low quality).
    start, end : float
        The time window ``[start, end)`` of every event (Unix seconds).
    """

    events: dict
    item_tags: sp.csr_array
    item_merchant: np.ndarray
    follows: dict
    interests: sp.csr_array
    quality: np.ndarray
    banned: np.ndarray
    start: float
    end: float

    @property
    def n_users(self) -> int:
        """Number of users."""
        return int(self.interests.shape[0])

    @property
    def n_tags(self) -> int:
        """Number of tags."""
        return int(self.item_tags.shape[1])

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.item_tags.shape[0])

    @property
    def n_merchants(self) -> int:
        """Number of merchants."""
        return int(self.quality.shape[0])

    @property
    def n_events(self) -> int:
        """Number of behaviour events."""
        return int(self.events["user"].shape[0])

    def follow_events(self) -> dict:
        """Follows and purchases as the events of :meth:`ecomcore.InterestModel.follow_matrix`.

        Returns
        -------
        dict of str to numpy.ndarray
            ``user``, ``merchant`` (int64), ``time`` (float64) and ``kind`` (``"follow"`` for the
            follow events, ``"buy"`` for every purchase, mapped to the item's merchant), sorted by
            time; pass as ``model.follow_matrix(**b.follow_events(), now=..., n_users=...,
            n_merchants=...)``.
        """
        buy = self.events["kind"] == "buy"
        user = np.concatenate([self.follows["user"], self.events["user"][buy]])
        merchant = np.concatenate([self.follows["merchant"], self.item_merchant[self.events["item"][buy]]])
        time = np.concatenate([self.follows["time"], self.events["time"][buy]])
        kind = np.concatenate(
            [np.full(self.follows["user"].shape[0], "follow", dtype="<U6"), np.full(int(buy.sum()), "buy", dtype="<U6")]
        )
        order = np.argsort(time, kind="stable")
        return {"user": user[order], "merchant": merchant[order], "time": time[order], "kind": kind[order]}


def _rows_offset_cum(indptr: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """``row + cum`` for every stored entry: sorted keys in which ``searchsorted(row + u)`` finds
    the entry of ``row`` drawn by a uniform ``u`` (clip the result to the row's range)."""
    rows = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.float64), np.diff(indptr))
    return rows + cum


def _row_cum(indptr: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-row cumulative weights, each non-empty row scaled to end at exactly 1."""
    n = indptr.shape[0] - 1
    cum = np.cumsum(weights, dtype=np.float64)
    before = np.concatenate([[0.0], cum])[indptr[:-1]]
    lengths = np.diff(indptr)
    cum -= np.repeat(before, lengths)
    total = np.zeros(n)
    nz = lengths > 0
    total[nz] = cum[indptr[1:][nz] - 1]
    total[total == 0] = 1.0
    cum /= np.repeat(total, lengths)
    cum[indptr[1:][nz] - 1] = 1.0
    return cum


def synthetic_behaviour(
    n_users: int,
    n_tags: int,
    n_merchants: int,
    *,
    seed: int = 0,
    shared_popularity: bool = True,
    zipf_a: float = 1.1,
    events_per_user: float = 40.0,
    interests_per_user: float = 4.0,
    merchant_tags: Tuple[int, int] = (1, 4),
    items_per_merchant: float = 5.0,
    explore: float = 0.1,
    weeks: float = 8.0,
    end: float = 1_767_225_600.0,
    repeat_rate: float = 0.5,
    follow_rate: float = 0.3,
    banned_fraction: float = 0.01,
) -> Behaviour:
    """Generate raw behaviour: a catalogue, view/fav/cart/buy events and follows.

    The model, all of it vectorised, seeded and deterministic:

    * **Tags** have bounded Zipf popularity ``p(rank) ~ rank ** -zipf_a`` (as
      :func:`synthetic_market`; ``shared_popularity=False`` gives the merchant side an
      independent popularity ranking).
    * **Merchants** specialise in ``merchant_tags[0] .. merchant_tags[1]`` distinct tags (uniform
      count, Zipf tags) and have a latent quality ``q ~ Beta(5, 2)``.  A ``banned_fraction`` of
      them is banned, drawn with probability proportional to ``(1 - q) ** 4``.
    * **Items**: each merchant sells ``1 + Poisson(items_per_merchant - 1)`` items; an item
      carries one of its merchant's tags (weight 1) and, with probability 1/2, a second one of
      them (weight 0.5; none when the draw repeats the first).  Its appeal is ``LogNormal(0, 1) * (0.5 + q)``.
    * **Users** hold ``1 + Poisson(interests_per_user - 1)`` latent interest tags (Zipf, user-side
      popularity; at most ``n_tags``) with weights from a flat Dirichlet.
    * **Events**: a user makes ``LogNormal(log(events_per_user), 0.8)`` events (1 .. 2,000).
      Each picks a tag (one of the user's interests by weight; with probability ``explore`` any
      tag by popularity), then an item carrying that tag by appeal (events on tags no item
      carries are dropped), a kind (fav 6 %, cart 5 %, buy ``8 % * q`` of the merchant, else
      view) and a time uniform over the ``weeks`` before ``end``.
    * **Repeat purchases**: each purchase is followed, with probability ``repeat_rate * q``, by
      another purchase of one of the same merchant's items an exponential 7 days later (once;
      dropped past ``end``).  **Follows**: each purchase makes the user follow the merchant with
      probability ``follow_rate * q``, an exponential 1 day later (dropped past ``end``).

    Parameters
    ----------
    n_users : int
        Number of users (>= 0).
    n_tags : int
        Number of tags (>= 1).
    n_merchants : int
        Number of merchants (>= 1).
    seed : int, default 0
        Seed (>= 0).  The catalogue does not depend on ``n_users``.
    shared_popularity : bool, default True
        Whether merchants share the users' tag popularity ranking (users reach most merchants)
        or use an independent one (users reach a few %).
    zipf_a : float, default 1.1
        Zipf exponent of tag popularity (>= 0).
    events_per_user : float, default 40
        Median events per user (> 0).
    interests_per_user : float, default 4
        Mean latent interest tags per user (>= 1).
    merchant_tags : tuple of int, default (1, 4)
        Inclusive range of the number of tags a merchant specialises in (``1 <= lo <= hi``).
    items_per_merchant : float, default 5
        Mean items per merchant (>= 1).
    explore : float, default 0.1
        Share of events outside the user's interests (in ``[0, 1]``).
    weeks : float, default 8
        Length of the time window (> 0).
    end : float, default 1767225600 (2026-01-01)
        End of the window, Unix seconds.
    repeat_rate : float, default 0.5
        Repeat purchase probability of a quality-1 merchant (in ``[0, 1]``).
    follow_rate : float, default 0.3
        Follow probability after a purchase from a quality-1 merchant (in ``[0, 1]``).
    banned_fraction : float, default 0.01
        Fraction of merchants banned (in ``[0, 1]``), rounded to a whole number.

    Returns
    -------
    Behaviour
        Events, catalogue, follows and the latent truth.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If an argument is out of range; the message names the argument.

    Examples
    --------
    >>> import ecomcore as ec
    >>> from ecomcore.datasets import synthetic_behaviour
    >>> b = synthetic_behaviour(200, 50, 80, seed=1)
    >>> model = ec.InterestModel(n_users=b.n_users)
    >>> A = model.profiles(model.fold(b.events, b.item_tags))
    >>> B = model.merchant_profiles(b.item_tags, b.item_merchant, n_merchants=b.n_merchants)
    >>> A.shape, B.shape
    ((200, 50), (50, 80))
    """
    n_users = _check_int("n_users", n_users, 0)
    n_tags = _check_int("n_tags", n_tags, 1)
    n_merchants = _check_int("n_merchants", n_merchants, 1)
    seed = _check_int("seed", seed, 0)
    if not isinstance(shared_popularity, (bool, np.bool_)):
        raise TypeError(f"shared_popularity: expected a bool, got {type(shared_popularity).__name__}")

    def real(name: str, value: object, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
        v = _check_real(name, value)
        if v < lo or (lo_open and v == lo) or v > hi:
            left = "(" if lo_open else "["
            raise ValueError(f"{name}: must be in {left}{lo:g}, {hi:g}], got {v}")
        return v

    zipf_a = real("zipf_a", zipf_a, 0.0)
    events_per_user = real("events_per_user", events_per_user, 0.0, lo_open=True)
    interests_per_user = real("interests_per_user", interests_per_user, 1.0)
    items_per_merchant = real("items_per_merchant", items_per_merchant, 1.0)
    explore = real("explore", explore, 0.0, 1.0)
    weeks = real("weeks", weeks, 0.0, lo_open=True)
    end = _check_real("end", end)
    repeat_rate = real("repeat_rate", repeat_rate, 0.0, 1.0)
    follow_rate = real("follow_rate", follow_rate, 0.0, 1.0)
    banned_fraction = real("banned_fraction", banned_fraction, 0.0, 1.0)
    try:
        lo, hi = merchant_tags
    except (TypeError, ValueError):
        raise TypeError("merchant_tags: expected a pair (lo, hi) of integers") from None
    lo = _check_int("merchant_tags", lo, 1)
    hi = _check_int("merchant_tags", hi, 1)
    if lo > hi:
        raise ValueError(f"merchant_tags: need lo <= hi, got ({lo}, {hi})")
    start = end - weeks * 7 * _DAY

    ss_perm, ss_merch, ss_items, ss_users, ss_events, ss_after = np.random.SeedSequence(seed).spawn(6)
    rng = np.random.default_rng(ss_perm)
    user_perm = rng.permutation(n_tags)
    merch_perm = user_perm if shared_popularity else rng.permutation(n_tags)
    user_draw = _zipf_sampler(n_tags, zipf_a, user_perm)
    merch_draw = _zipf_sampler(n_tags, zipf_a, merch_perm)

    # Merchants: specialities, quality, bans.
    rng = np.random.default_rng(ss_merch)
    counts = rng.integers(min(lo, n_tags), min(hi, n_tags) + 1, n_merchants).astype(np.int64)
    m_ptr, m_tags = _distinct_rows(rng, counts, n_tags, merch_draw)
    quality = rng.beta(5.0, 2.0, n_merchants)
    banned = np.zeros(n_merchants, dtype=bool)
    n_banned = int(round(banned_fraction * n_merchants))
    if n_banned:
        p = (1.0 - quality) ** 4 + 1e-12
        banned[rng.choice(n_merchants, n_banned, replace=False, p=p / p.sum())] = True

    # Items: merchant, primary tag (one of the merchant's), optional second tag, appeal.
    rng = np.random.default_rng(ss_items)
    per_merchant = 1 + rng.poisson(items_per_merchant - 1.0, n_merchants).astype(np.int64)
    n_items = int(per_merchant.sum())
    item_merchant = np.repeat(np.arange(n_merchants, dtype=np.int64), per_merchant)
    m_len = np.diff(m_ptr)[item_merchant]
    primary = m_tags[m_ptr[item_merchant] + (rng.random(n_items) * m_len).astype(np.int64)].astype(np.int64)
    has_second = rng.random(n_items) < 0.5
    second = m_tags[m_ptr[item_merchant] + (rng.random(n_items) * m_len).astype(np.int64)].astype(np.int64)
    has_second &= second != primary
    appeal = rng.lognormal(0.0, 1.0, n_items) * (0.5 + quality[item_merchant])
    rows = np.concatenate([np.arange(n_items, dtype=np.int64), np.flatnonzero(has_second)])
    cols = np.concatenate([primary, second[has_second]])
    vals = np.concatenate([np.ones(n_items), np.full(int(has_second.sum()), 0.5)])
    item_tags = sp.csr_array((vals, (rows, cols)), shape=(n_items, n_tags))
    item_tags.sum_duplicates()
    item_tags.sort_indices()
    item_tags = _csr(item_tags.indptr.astype(np.int64), item_tags.indices, item_tags.data, (n_items, n_tags))
    # tags -> items carrying them, weighted by appeal * tag weight
    by_tag = sp.csr_array(
        (item_tags.data * appeal[np.repeat(np.arange(n_items), np.diff(item_tags.indptr))],
         item_tags.indices, item_tags.indptr),
        shape=(n_items, n_tags),
    ).T.tocsr()  # fmt: skip
    by_tag.sort_indices()
    t_ptr = by_tag.indptr.astype(np.int64)
    t_cum = _rows_offset_cum(t_ptr, _row_cum(t_ptr, by_tag.data))
    t_items = by_tag.indices.astype(np.int64)

    # Users: latent interests.
    rng = np.random.default_rng(ss_users)
    counts = np.minimum(1 + rng.poisson(interests_per_user - 1.0, n_users), n_tags).astype(np.int64)
    u_ptr, u_tags = _distinct_rows(rng, counts, n_tags, user_draw)
    u_w = rng.exponential(1.0, u_tags.shape[0])
    u_cum = _row_cum(u_ptr, u_w)
    u_keys = _rows_offset_cum(u_ptr, u_cum)
    sums = np.add.reduceat(u_w, u_ptr[:-1]) if u_w.size else np.zeros(0)
    interests = _csr(u_ptr, u_tags, u_w / np.repeat(sums, np.diff(u_ptr)), (n_users, n_tags))

    # Events.
    rng = np.random.default_rng(ss_events)
    n_ev = np.clip(np.rint(rng.lognormal(math.log(events_per_user), 0.8, n_users)), 1, 2000).astype(np.int64)
    user = np.repeat(np.arange(n_users, dtype=np.int64), n_ev)
    n = user.shape[0]
    pos = np.searchsorted(u_keys, user + rng.random(n), side="right")
    pos = np.clip(pos, u_ptr[user], u_ptr[user + 1] - 1)
    tag = u_tags[pos].astype(np.int64)
    wander = rng.random(n) < explore
    tag[wander] = user_draw(rng, int(wander.sum()))
    carried = t_ptr[tag + 1] > t_ptr[tag]
    user, tag = user[carried], tag[carried]
    n = user.shape[0]
    pos = np.searchsorted(t_cum, tag + rng.random(n), side="right")
    pos = np.clip(pos, t_ptr[tag], t_ptr[tag + 1] - 1)
    item = t_items[pos]
    q_item = quality[item_merchant[item]]
    u = rng.random(n)
    kind = np.zeros(n, dtype=np.int64)  # view
    kind[u < 0.11 + 0.08 * q_item] = 3
    kind[u < 0.11] = 2
    kind[u < 0.06] = 1
    time = start + rng.random(n) * (end - start)

    # Repeat purchases and follows.
    rng = np.random.default_rng(ss_after)
    buys = np.flatnonzero(kind == 3)
    bm = item_merchant[item[buys]]
    again = rng.random(buys.shape[0]) < repeat_rate * quality[bm]
    r_time = time[buys] + rng.exponential(7 * _DAY, buys.shape[0])
    again &= r_time < end
    r_m = bm[again]
    first_item = np.concatenate([[0], np.cumsum(per_merchant)])[:-1]
    r_item = first_item[r_m] + (rng.random(r_m.shape[0]) * per_merchant[r_m]).astype(np.int64)
    user = np.concatenate([user, user[buys][again]])
    item = np.concatenate([item, r_item])
    kind = np.concatenate([kind, np.full(r_m.shape[0], 3, dtype=np.int64)])
    time = np.concatenate([time, r_time[again]])
    buys = np.flatnonzero(kind == 3)
    bm = item_merchant[item[buys]]
    fol = rng.random(buys.shape[0]) < follow_rate * quality[bm]
    f_time = time[buys] + rng.exponential(_DAY, buys.shape[0])
    fol &= f_time < end
    order = np.argsort(f_time[fol], kind="stable")
    follows = {"user": user[buys][fol][order], "merchant": bm[fol][order], "time": f_time[fol][order]}

    order = np.argsort(time, kind="stable")
    events = {
        "user": user[order],
        "item": item[order],
        "kind": np.asarray(BEHAVIOUR_KINDS)[kind[order]],
        "time": time[order],
    }
    return Behaviour(
        events=events,
        item_tags=item_tags,
        item_merchant=item_merchant,
        follows=follows,
        interests=interests,
        quality=quality,
        banned=banned,
        start=float(start),
        end=float(end),
    )


# --------------------------------------------------------------------------------------------
# Reference baselines (used by ``ecomcore demo`` and ``bench/``)
# --------------------------------------------------------------------------------------------


def scipy_topk(
    user_tags: sp.sparray | sp.spmatrix,
    folded: sp.sparray | sp.spmatrix,
    k: int,
    *,
    chunk_rows: int | None = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k per row of ``user_tags @ folded`` the plain scipy way.

    The product is materialised in row chunks (scipy SpGEMM), then each row's stored
    entries are ``argpartition``-ed and the k best sorted.  Only stored entries of the
    product are candidates (what a scipy user gets); ties are ordered by ascending column.

    Parameters
    ----------
    user_tags : scipy sparse array or matrix
        ``(n_users, n_tags)``.
    folded : scipy sparse array or matrix
        ``(n_tags, n_merchants)``, the merchant side with the weights folded in (see
        :meth:`Market.folded_merchant_tags`).
    k : int
        Number of results per row (>= 1).
    chunk_rows : int, optional
        Rows multiplied at once; by default as many as keep each chunk's product near
        ``2**22`` stored entries (estimated from the average multiply-adds per row).

    Returns
    -------
    indices : numpy.ndarray
        ``(n_users, min(k, n_merchants))`` int64, padded with -1.
    scores : numpy.ndarray
        Same shape, dtype of the product, padded with -inf; rows sorted by descending score.
    """
    a = sp.csr_array(user_tags)
    b = sp.csr_array(folded)
    n_users, n_cols = a.shape[0], b.shape[1]
    width = min(int(k), n_cols)
    dtype = np.result_type(a.dtype, b.dtype)
    indices = np.full((n_users, width), -1, dtype=np.int64)
    scores = np.full((n_users, width), -np.inf, dtype=dtype)
    if chunk_rows is None:
        per_row = np.diff(b.indptr)[a.indices].sum() / max(n_users, 1)
        chunk_rows = int(2**22 // max(1.0, min(float(n_cols), per_row)))
    chunk_rows = max(1, int(chunk_rows))
    for start in range(0, n_users, chunk_rows):
        c = sp.csr_array(a[start : start + chunk_rows] @ b)
        ptr, idx, val = c.indptr, c.indices, c.data
        for r in range(c.shape[0]):
            lo, hi = ptr[r], ptr[r + 1]
            n = hi - lo
            if n == 0:
                continue
            v = val[lo:hi]
            j = idx[lo:hi]
            if n > width:
                part = np.argpartition(v, n - width)[n - width :]
                v = v[part]
                j = j[part]
            order = np.lexsort((j, -v))
            m = order.size
            indices[start + r, :m] = j[order]
            scores[start + r, :m] = v[order]
    return indices, scores


def compare_topk(
    indices_a: np.ndarray,
    scores_a: np.ndarray,
    indices_b: np.ndarray,
    scores_b: np.ndarray,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> int:
    """Count rows whose top-k *sets* differ, allowing ties at the k-th score.

    Two rows agree when they hold the same number of valid entries (index >= 0), their
    sorted scores agree within tolerance, and every entry scoring clearly above the row's
    k-th score (by more than the tolerance) appears in both.

    Parameters
    ----------
    indices_a, scores_a : numpy.ndarray
        ``(n_rows, width)`` results (-1 / -inf padding), rows sorted by descending score.
    indices_b, scores_b : numpy.ndarray
        The same for the other method.
    rtol, atol : float
        Tolerances for comparing scores (float32 sums in different orders differ).

    Returns
    -------
    int
        Number of rows that disagree (0 when everything matches).
    """
    ia = np.asarray(indices_a, dtype=np.int64)
    ib = np.asarray(indices_b, dtype=np.int64)
    sa = np.asarray(scores_a, dtype=np.float64)
    sb = np.asarray(scores_b, dtype=np.float64)
    if ia.shape != ib.shape or sa.shape != ia.shape or sb.shape != ib.shape:
        raise ValueError(f"shapes differ: {ia.shape} vs {ib.shape}")
    n_rows, width = ia.shape
    if n_rows == 0 or width == 0:
        return 0
    va, vb = ia >= 0, ib >= 0
    bad = va.sum(axis=1) != vb.sum(axis=1)
    fa = np.where(va, sa, 0.0)
    fb = np.where(vb, sb, 0.0)
    tol = atol + rtol * np.maximum(np.abs(fa), np.abs(fb))
    bad |= np.any(np.abs(fa - fb) > tol, axis=1)
    # k-th (last valid) score per row; entries clearly above it must be in both sets
    last = np.maximum(va.sum(axis=1) - 1, 0)
    kth = np.where(va.any(axis=1), fa[np.arange(n_rows), last], -np.inf)
    margin = np.where(np.isfinite(kth), atol + rtol * np.abs(kth), 0.0)
    n = int(max(ia.max(), ib.max())) + 1
    row = np.arange(n_rows, dtype=np.int64)[:, None]
    keys_a = np.where(va, row * n + ia, -1)
    keys_b = np.where(vb, row * n + ib, -1)
    strict_a = va & (fa > (kth + margin)[:, None])
    strict_b = vb & (fb > (kth + margin)[:, None])
    missing_a = strict_a & ~np.isin(keys_a, keys_b[vb])
    missing_b = strict_b & ~np.isin(keys_b, keys_a[va])
    bad |= missing_a.any(axis=1) | missing_b.any(axis=1)
    return int(bad.sum())


def load_taobao(path: Any = None) -> Any:
    """Read the Taobao UserBehavior prefix; see :func:`ecomcore.loaders.load_taobao`.

    Parameters
    ----------
    path : str or path-like, optional
        The CSV file (default: under ``$ECOMCORE_DATA`` or ``<repository>/../shared/data``).

    Returns
    -------
    ecomcore.loaders.TaobaoData
    """
    from .loaders import load_taobao as _load

    return _load(path)


def load_olist(path: Any = None) -> Any:
    """Read the Olist ``sample_8k`` data; see :func:`ecomcore.loaders.load_olist`.

    Parameters
    ----------
    path : str or path-like, optional
        The ``sample_8k`` directory (default: under ``$ECOMCORE_DATA`` or
        ``<repository>/../shared/data``).

    Returns
    -------
    ecomcore.loaders.OlistData
    """
    from .loaders import load_olist as _load

    return _load(path)
