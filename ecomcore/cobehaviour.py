"""Co-behaviour scoring: rank items or merchants from a user's item history through item-item
similarity, with the unchanged :class:`ecomcore.Ranker` (trust, bans, exclusions, exposure).

The score is the design's ``A @ B * w`` with items in the role of interest tags:

* item ranking: ``score(u, j) = sum_i A[u, i] S[i, j] * w[merchant(j)]``;
* merchant ranking: ``score(u, m) = sum_i A[u, i] (S M)[i, m] * w[m]`` with
  ``M[j, m] = 1`` when item j is sold by merchant m (``(S M)[i, m]`` sums i's neighbours sold
  by m);

where A (users x items) is the user's decayed item history (:func:`item_history`), S the
top-n item similarity (:func:`ecomcore.item_similarity`) and w the Ranker's trust weight.

Recipe::

    A = ec.item_history(events, n_users=U, n_items=I, now=now)          # users x items
    S = ec.item_similarity(A, method="cosine", top_n=100)               # items x items
    # items, weighted by the trust of their merchant; items already seen excluded
    r_items = ec.item_ranker(S, item_merchant, trust=trust.index, banned=gov.banned_mask(M))
    top_items = r_items.topk(A, k=10, exclude=A)
    # merchants
    r_merch = ec.Ranker(ec.merchant_side(S, item_merchant, n_merchants=M), trust=trust.index,
                        banned=gov.banned_mask(M))
    top_merchants = r_merch.topk(A, k=10, follows=F)

``exclude=A`` removes every item the user already interacted with (implicit's
``filter_already_liked_items``); ``rerank_exposure`` applies to either result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from ecomcore._validation import as_csr, as_ids, as_vector, check_int, check_real, to_array
from ecomcore.interest import InterestModel
from ecomcore.ranking import Ranker

__all__ = ["item_history", "merchant_side", "item_ranker"]

ArrayLike = Any


def item_history(
    events: Any,
    *,
    n_users: int,
    n_items: int,
    event_weights: Optional[Mapping[str, float]] = None,
    half_life_days: Optional[float] = 14.0,
    now: Optional[float] = None,
    normalize: Optional[str] = None,
) -> sp.csr_array:
    """Each user's decayed, behaviour-weighted item history A (users x items, float32).

    ``A[u, i] = sum over u's events e on item i of event_weights[kind_e] * weight_e *
    2 ** (-(now - time_e) / half_life)``: an :class:`ecomcore.InterestModel` (no IDF) whose
    "tags" are the items themselves (an identity ``item_tags``).

    Parameters
    ----------
    events : mapping of str to array_like
        Columns ``user``, ``item``, ``kind``, ``time``, optional ``weight``, as for
        :meth:`ecomcore.InterestModel.fold`.
    n_users : int
        Number of users (rows).
    n_items : int
        Number of items (columns); item ids must lie in ``[0, n_items)``.
    event_weights : mapping of str to float, optional
        Weight of each event kind (default :data:`ecomcore.interest.DEFAULT_EVENT_WEIGHTS`).
    half_life_days : float or None, default 14.0
        Half-life of the decay (``None``: none).
    now : float, optional
        Unix seconds the weights refer to (default: the latest event).
    normalize : {"l2", "l1", "max", None}, default None
        Row normalisation (``None`` keeps the decayed sums; normalising a row only scales that
        user's scores, so it changes no ranking).

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(n_users, n_items)``, float32, canonical.
    """
    model = InterestModel(
        event_weights=event_weights, half_life_days=half_life_days, idf=False, normalize=normalize,
        n_users=n_users,
    )  # fmt: skip
    n = check_int(n_items, "n_items", minimum=0)
    eye = sp.identity(n, dtype=np.float64, format="csr")
    state = model.fold(events, eye)
    return model.profiles(state, now)


def _item_merchant(item_merchant: ArrayLike, n_items: int, n_merchants: Optional[int]) -> tuple[np.ndarray, int]:
    arr = to_array(item_merchant, "item_merchant")
    if arr.ndim != 1 or arr.shape[0] != n_items:
        raise ValueError(f"item_merchant: expected {n_items} merchant ids (one per item), got shape {arr.shape}")
    if n_merchants is None:
        ids = as_ids(arr, "item_merchant", np.iinfo(np.int64).max)
        n_m = int(ids.max()) + 1 if ids.size else 0
    else:
        check_int(n_merchants, "n_merchants", minimum=0)
        n_m = int(n_merchants)
        ids = as_ids(arr, "item_merchant", n_m)
    return ids, n_m


def merchant_side(
    similarity: ArrayLike,
    item_merchant: ArrayLike,
    *,
    n_merchants: Optional[int] = None,
    self_weight: float = 0.0,
) -> sp.csr_array:
    """Items x merchants matrix ``(S + self_weight * I) @ M`` for merchant ranking.

    Parameters
    ----------
    similarity : sparse matrix, shape (n_items, n_items)
        Item-item similarity S (e.g. from :func:`ecomcore.item_similarity`).
    item_merchant : array_like of int, shape (n_items,)
        The merchant selling each item.
    n_merchants : int, optional
        Number of merchants (default ``max(item_merchant) + 1``).
    self_weight : float, default 0.0
        Credit an item gives its own merchant (S has no diagonal; 0: only neighbours count).

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(n_items, n_merchants)``, float32 when S is float32, else float64; row i, column
        m holds ``self_weight * [merchant(i) == m] + sum of S[i, j] over items j of m``.
        Pass it as ``merchant_tags`` to :class:`ecomcore.Ranker` with the user side A.
    """
    vdt = (
        np.dtype(np.float32)
        if np.dtype(getattr(similarity, "dtype", np.float64)) == np.float32
        else np.dtype(np.float64)
    )
    s = as_csr(similarity, "similarity", value_dtype=np.dtype(np.float64))
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity: expected a square items x items matrix, got shape {s.shape}")
    n_items = s.shape[0]
    ids, n_m = _item_merchant(item_merchant, n_items, n_merchants)
    self_weight = check_real(self_weight, "self_weight", minimum=0.0)
    sm = sp.csr_array((s.data, s.indices, s.indptr), shape=s.shape)
    if self_weight:
        sm = sm + self_weight * sp.identity(n_items, format="csr")
    m = sp.csr_array((np.ones(n_items), (np.arange(n_items), ids)), shape=(n_items, n_m))
    out = sp.csr_array(sm @ m)
    out.sum_duplicates()
    out.sort_indices()
    with np.errstate(over="ignore"):
        out = out.astype(vdt)
    if out.data.size and not np.isfinite(out.data).all():
        raise ValueError(f"similarity: merchant sums overflow {vdt}")
    return out


def item_ranker(
    similarity: ArrayLike,
    item_merchant: Optional[ArrayLike] = None,
    *,
    trust: Optional[ArrayLike] = None,
    banned: Optional[ArrayLike] = None,
    beta: float = 1.0,
    min_trust: float = 0.0,
    n_merchants: Optional[int] = None,
) -> Ranker:
    """A :class:`ecomcore.Ranker` ranking items through S, weighted by their merchant's trust.

    Parameters
    ----------
    similarity : sparse matrix, shape (n_items, n_items)
        Item-item similarity S: the "tags x merchants" matrix of the Ranker (items score
        items).
    item_merchant : array_like of int, shape (n_items,), optional
        The merchant of each item; needed when ``trust`` or ``banned`` is given.
    trust : array_like, shape (n_merchants,), optional
        Merchant trust in [0, 1]; item j gets ``trust[item_merchant[j]]``.
    banned : array_like, optional
        Banned merchants (bool mask over merchants or ids): their items are never shown.
    beta : float, default 1.0
        Trust exponent.
    min_trust : float, default 0.0
        Items of merchants below this trust are never shown.
    n_merchants : int, optional
        Number of merchants (default: the length of ``trust``, else ``max(item_merchant) + 1``).

    Returns
    -------
    Ranker
        Call ``.topk(A, k, exclude=A)`` with the item history A.
    """
    s = as_csr(similarity, "similarity", value_dtype=np.dtype(np.float64))
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity: expected a square items x items matrix, got shape {s.shape}")
    n_items = s.shape[0]
    item_trust = None
    item_banned = None
    if trust is not None or banned is not None:
        if item_merchant is None:
            raise ValueError("item_merchant: needed to map merchant trust / bans onto items")
        if n_merchants is None and trust is not None:
            n_merchants = int(np.shape(trust)[0]) if np.ndim(trust) == 1 else None
        ids, n_m = _item_merchant(item_merchant, n_items, n_merchants)
        if trust is not None:
            item_trust = as_vector(trust, "trust", n_m, minimum=0.0, maximum=1.0)[ids]
        if banned is not None:
            b = to_array(banned, "banned")
            if b.dtype == bool:
                if b.shape != (n_m,):
                    raise ValueError(f"banned: a bool mask must have shape ({n_m},), got {b.shape}")
                mask = b
            else:
                mask = np.zeros(n_m, dtype=bool)
                mask[as_ids(b, "banned", n_m)] = True
            item_banned = mask[ids]
    mat = similarity if sp.issparse(similarity) else sp.csr_array(np.asarray(similarity))
    return Ranker(mat, trust=item_trust, banned=item_banned, beta=beta, min_trust=min_trust)
