"""Scoring: decayed trust statistics -> per-indicator estimates -> dimensions -> trust index.

:func:`score_state` turns the decayed sufficient statistics of a trust state
(:class:`~ecomcore.trust_stats.TrustStats`, produced by ``TrustModel``) into a
:class:`TrustScores`.  Every formula below is the one the kernels in
``ecomcore_ext/_trust_score.pyx`` compute; :func:`beta_mean`, :func:`bayesian_average` and
:func:`wilson_lower_bound` are the same formulas in plain NumPy.

Notation: for merchant m and indicator i, ``n`` is the decayed number of events, ``s`` the
decayed sum of values, ``s2`` the decayed sum of squared values (design §3).  Every estimate is
oriented so that higher is better and lies in [0, 1].

Per-indicator estimates
-----------------------
* ``rate`` (0/1 trials): Beta posterior mean ``p = (s + a0) / (n + a0 + b0)`` (Beta reputation,
  Jøsang & Ismail 2002, with a Beta(a0, b0) prior); ``1 - p`` when lower is better.
* ``rating`` (1-5): Bayesian average ``x = (s + m C) / (n + m)`` (IMDb's "true Bayesian
  estimate", i.e. ``m`` pseudo-ratings at ``C``), mapped to [0, 1] by ``(x - 1) / 4``; ``1 - y``
  when lower is better.  ``|x - mean| = m |C - mean| / (n + m)`` exactly.
* ``magnitude`` (non-negative amounts): the same shrunk mean ``(s + m C) / (n + m)`` in the
  indicator's units, then its mid-rank percentile within the merchant's category: the reference
  set is the category's merchants with evidence (``n > 0``) plus the merchant itself, percentile
  ``(rank - 1/2) / size`` with tied values sharing their mean rank; ``1 - F`` when lower is better
  (platforms rank such amounts against the category, reference sheet "Magnitudes").  A merchant
  without evidence sits exactly at the category norm.
* ``cautious=True`` (rates and ratings): the Wilson score lower bound
  ``(p + z²/2N - z sqrt(p(1-p)/N + z²/4N²)) / (1 + z²/N)`` (Wilson 1927) of the oriented
  posterior mean ``p`` with the posterior's effective sample size ``N = n + prior strength``
  (for ratings ``p`` is the mapped Bayesian average: a [0, 1] variable with mean p has variance
  at most p(1 - p), so the bound stays conservative).  Closed form, vectorisable, and with a
  frozen prior a success never lowers it.  Magnitudes keep their percentile (the shrinkage toward
  the category mean is already their caution).

Priors (per category and indicator; precedence)
-----------------------------------------------
1. The indicator's explicit ``prior``: ``(a0, b0)`` for rates (mean ``a0/(a0+b0)``, strength
   ``a0 + b0``), ``(C, m)`` for ratings and magnitudes.
2. Otherwise an empirical-Bayes fit by moments over the category's merchants with evidence
   (one-way random-effects ANOVA with unbalanced groups, Searle, Casella & McCulloch 1992 §3.6).
   Each merchant j contributes its decayed mean ``x_j = s/n`` and decayed within-merchant
   variance ``v_j = s2/n - x_j²``, with its *counted* events ``k_j`` as group size: decay says
   how much recent evidence weighs, not how noisy one observation is (a single event from last
   year, decayed to n = 0.3, is still one observation of variance σ², not σ²/0.3).  Without decay
   this is exactly the textbook estimator.  With J merchants and K = Σk:

   - ``μ = Σ k_j x_j / K``;
   - within-merchant variance ``σw² = Σ k_j v_j / (K - J)``;
   - between-merchant variance of the merchants' true means (sampling noise removed)
     ``τ² = (Σ k_j (x_j - μ)² - (J - 1) σw²) / (K - Σ k_j² / K)``;
   - rates: ``a0 + b0 = μ(1-μ)/τ² - 1``, ``a0 = μ (a0 + b0)`` (the reference sheet's
     moment formula with σ² = τ²);
   - ratings and magnitudes: ``m = σw² / τ²``, ``C = μ`` (Bühlmann credibility; for 0/1 data
     with σw² = μ(1-μ) - τ² it is the same as the rate formula).

   The fit is *degenerate* — and replaced by step 3 — when any of: fewer than
   ``min_category_merchants`` merchants with evidence (categories with fewer merchants at all
   are not even accumulated); ``K <= J`` (no within-merchant degrees
   of freedom: one event each); zero (or negative) between-merchant variance ``τ² <= 0``; for
   rates ``τ² >= μ(1-μ)`` (which would give a0 + b0 <= 0); for ratings and magnitudes
   ``σw² <= 0``; or any non-finite intermediate.
3. The global mean with ``prior_strength`` pseudo-events: the decayed pooled mean ``Σs / Σn``
   over every merchant (0.5 for rates, 3 for ratings and 0 for magnitudes when nobody has
   evidence).

``priors=`` passes back the :class:`TrustPriors` of an earlier :class:`TrustScores` (frozen
priors): then nothing is fitted, and a positive event (a value on the good side of the
merchant's current shrunk mean, e.g. a non-refunded order, a 5-star rating) never lowers that
merchant's index, a negative one never raises it.  With ``cautious=True`` this holds for 0/1
outcomes, for ratings of 5 (or 1 when lower is better) as positive events and of 1 (5) as
negative ones, and for magnitudes; an intermediate rating just below the merchant's mean is
also more evidence and can raise its lower bound.

Dimensions, index, vetoes, confidence, boost
--------------------------------------------
* ``S_d`` = indicator-weighted mean of the estimates of dimension d's indicators.  A dimension
  without indicators is excluded from the index and its column is NaN.
* ``T = Σ_d w_d S_d / Σ_d w_d`` over dimensions with indicators (``dimension_weights``; equal by
  default; a dimension a mapping omits weighs 0, as in ``TrustModel``).
* Veto: when ``now - veto_time < veto_days * 86400`` (including a veto time after ``now``),
  ``T = min(T, veto_floor)``.
* ``confidence`` = Σ_i W_i n/(n + k_i): the credibility weight (share of the estimate that comes
  from the merchant's own decayed evidence rather than from the prior of strength k_i), averaged
  with each indicator's effective weight W_i in the index; 0 without evidence, -> 1 with a lot.
  ``evidence`` is the plain total of decayed events.
* ``boost`` g = 1 + ``guarantee_boost`` × (number of trusted-purchase guarantees the merchant
  offers), the multiplier ``g`` of the design for ``Ranker(trust=scores.index, boost=scores.boost)``.

Execution
---------
Three passes over the statistics in ``ecomcore_ext._trust_score`` (category moments, skipped
with frozen priors; estimates, dimensions and confidence; magnitude percentiles by radix sort),
each vectorised along the indicators and shared among ``model.n_threads`` threads when the
model has that attribute (default: every core); the results do not depend on the number of
threads.  The merchants x indicators matrix of estimates is not needed for the index and is
only built when :attr:`TrustScores.estimates` is first read.  A :class:`TrustScores` keeps
references (not copies) to the statistics' ``n``, ``s`` and ``events`` arrays for that and for
:meth:`TrustScores.explain`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ecomcore._validation import check_int, check_real, resolve_threads
from ecomcore.indicators import DIMENSIONS, Indicator
from ecomcore.trust_stats import TrustStats
from ecomcore_ext import _trust_score

__all__ = [
    "PRIOR_SOURCES",
    "Shortfall",
    "TrustPriors",
    "TrustScores",
    "bayesian_average",
    "beta_mean",
    "score_state",
    "wilson_lower_bound",
]

#: Codes of :attr:`TrustPriors.source`: where each (category, indicator) prior came from.
PRIOR_SOURCES: tuple[str, ...] = ("explicit", "empirical_bayes", "global")

_DEFAULT_MEAN = {"rate": 0.5, "rating": 3.0, "magnitude": 0.0}
_SECONDS_PER_DAY = 86400.0
_IMPACT_EPS = 1e-12  # impacts below this are rounding, not a shortfall
_MOMENT_BLOCK = 32768  # merchants per block of the category moments (at least) ...
_MOMENT_BLOCKS = 16  # ... in at most this many blocks
_MOMENT_MEMORY = 64 << 20  # at most this many bytes of per-block moment accumulators
_KERNEL_ERRORS = {  # codes of ecomcore_ext._trust_score.find_invalid
    1: "n must be finite and >= 0",
    2: "s must be finite",
    4: "s2 must be finite, >= 0, and 0 where n is 0",
    5: "s must be 0 where n is 0",
    6: "event counts must be >= 0, and >= 1 where n > 0",
}


# ----------------------------------------------------------------------------- formulas (NumPy)


def beta_mean(s: Any, n: Any, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """Posterior mean of a rate under a Beta(alpha, beta) prior.

    ``(s + alpha) / (n + alpha + beta)`` (Jøsang & Ismail 2002; alpha = beta = 1 gives their
    ``(r + 1) / (r + s + 2)``).

    Parameters
    ----------
    s : array_like
        (Decayed) number of successes.
    n : array_like
        (Decayed) number of trials.
    alpha, beta : float, default 1.0
        Prior pseudo-successes and pseudo-failures (> 0).

    Returns
    -------
    ndarray
        The posterior means.
    """
    s = np.asarray(s, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return (s + alpha) / (n + alpha + beta)


def bayesian_average(s: Any, n: Any, mean: float, strength: float) -> np.ndarray:
    """Bayesian average ``(s + strength * mean) / (n + strength)`` (IMDb's true Bayesian estimate).

    Parameters
    ----------
    s : array_like
        (Decayed) sum of the values.
    n : array_like
        (Decayed) number of values.
    mean : float
        Prior mean C.
    strength : float
        Prior weight m in pseudo-values (> 0).

    Returns
    -------
    ndarray
        The shrunk means.
    """
    s = np.asarray(s, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return (s + strength * mean) / (n + strength)


def wilson_lower_bound(p: Any, n: Any, z: float = 1.96) -> np.ndarray:
    """Wilson score lower bound of a proportion ``p`` observed over ``n`` trials (Wilson 1927).

    ``(p + z²/2n - z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``, clipped to ``[0, p]``.

    Parameters
    ----------
    p : array_like
        Observed proportions in [0, 1].
    n : array_like
        Numbers of trials (> 0; may be fractional, e.g. decayed or pseudo-counts).
    z : float, default 1.96
        Normal quantile (1.96: 95 % two-sided).

    Returns
    -------
    ndarray
        The lower bounds.
    """
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z2 = z * z
    lo = (p + z2 / (2 * n) - z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n)
    return np.clip(lo, 0.0, p)


# ----------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class TrustPriors:
    """The prior of every (category, indicator) pair used by one scoring.

    Pass it back as ``score(..., priors=scores.priors)`` to score later states against the same
    priors (frozen priors).

    Attributes
    ----------
    indicators : tuple of str
        Indicator names, in column order.
    categories : ndarray of int64, shape (n_categories,)
        Sorted category labels; row r of the arrays below belongs to ``categories[r]``.
    mean : ndarray of float64, shape (n_categories, n_indicators)
        Prior mean in the indicator's units (rate in [0, 1], rating in [1, 5], magnitude >= 0).
    strength : ndarray of float64, shape (n_categories, n_indicators)
        Prior weight in pseudo-events (> 0): ``a0 + b0`` for rates, ``m`` otherwise.
    source : ndarray of int8, shape (n_categories, n_indicators)
        Index into :data:`PRIOR_SOURCES` (explicit, empirical Bayes, global fallback).
    """

    indicators: tuple[str, ...]
    categories: np.ndarray
    mean: np.ndarray
    strength: np.ndarray
    source: np.ndarray

    def __post_init__(self) -> None:
        names = tuple(self.indicators)
        if not all(isinstance(x, str) for x in names):
            raise TypeError("priors.indicators: expected a tuple of indicator names")
        cats = np.asarray(self.categories)
        if cats.ndim != 1 or cats.dtype.kind not in "iu":
            raise ValueError("priors.categories: expected a 1-D integer array")
        cats = cats.astype(np.int64)
        if cats.size > 1 and not np.all(cats[1:] > cats[:-1]):
            raise ValueError("priors.categories: labels must be sorted and unique")
        shape = (cats.shape[0], len(names))
        arrays = {}
        for field in ("mean", "strength", "source"):
            a = np.asarray(getattr(self, field))
            if a.shape != shape:
                raise ValueError(f"priors.{field}: expected shape {shape}, got {a.shape}")
            if a.dtype.kind not in "biuf":
                raise TypeError(f"priors.{field}: expected numbers, got dtype {a.dtype}")
            arrays[field] = a
        mean = np.array(arrays["mean"], dtype=np.float64)
        strength = np.array(arrays["strength"], dtype=np.float64)
        if not (np.isfinite(mean).all() and np.isfinite(strength).all()):
            raise ValueError("priors: mean and strength must be finite")
        if strength.size and strength.min() <= 0:
            raise ValueError("priors.strength: must be > 0")
        source = np.array(arrays["source"], dtype=np.int8)
        if source.size and (source.min() < 0 or source.max() >= len(PRIOR_SOURCES)):
            raise ValueError(f"priors.source: codes must index {PRIOR_SOURCES}")
        for arr in (cats, mean, strength, source):
            arr.flags.writeable = False
        object.__setattr__(self, "indicators", names)
        object.__setattr__(self, "categories", cats)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "strength", strength)
        object.__setattr__(self, "source", source)

    @property
    def alpha(self) -> np.ndarray:
        """Beta prior pseudo-successes ``mean * strength`` (meaningful for rate indicators)."""
        return self.mean * self.strength

    @property
    def beta(self) -> np.ndarray:
        """Beta prior pseudo-failures ``(1 - mean) * strength`` (meaningful for rate indicators)."""
        return (1.0 - self.mean) * self.strength


@dataclass(frozen=True)
class Shortfall:
    """One indicator pulling a merchant's trust index down (an item of :meth:`TrustScores.explain`).

    Attributes
    ----------
    indicator : str
        Indicator name (``"veto"`` for the veto cap entry).
    dimension : str
        Its dimension (``""`` for the veto entry).
    kind : str
        ``"rate"``, ``"rating"``, ``"magnitude"`` or ``"veto"``.
    value : float
        The merchant's own decayed mean in the indicator's units (refund rate 0.07, rating 4.2,
        delivery hours 52); NaN without evidence.  For the veto entry: the veto time (Unix s).
    events : int
        Counted (not decayed) events behind ``value``.
    estimate : float
        The merchant's oriented estimate in [0, 1] (higher is better).
    norm : float
        The category norm in the indicator's units (the prior mean).
    norm_estimate : float
        The estimate a merchant of this category without evidence gets (at the norm).
    impact : float
        ``W_i * (norm_estimate - estimate)``: how much this indicator lowers the index relative
        to the category norm (W_i: the indicator's effective weight in the index).  For the veto
        entry: how much the cap removed.
    """

    indicator: str
    dimension: str
    kind: str
    value: float
    events: int
    estimate: float
    norm: float
    norm_estimate: float
    impact: float


class _Estimator:
    """Everything needed to recompute per-indicator estimates (for :attr:`TrustScores.estimates`).

    Holds references (no copies) to the statistics and the resolved priors; the kernel call is
    deterministic, so rows recomputed later equal the ones the index was built from.
    """

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def run(
        self,
        rows: slice,
        mode: int,
        *,
        est: np.ndarray,
        dims: np.ndarray,
        conf: np.ndarray,
        evidence: np.ndarray,
        ymag: np.ndarray,
        norms: np.ndarray,
        n_threads: int,
    ) -> int:
        kp = self.kp
        scratch = np.empty((n_threads, 3 * self.n_ind + len(DIMENSIONS) + 2))
        return _trust_score.estimates(
            self.n[rows],
            self.s[rows],
            self.cat[rows],
            kp["lo"],
            kp["hi"],
            kp["off"],
            kp["scale"],
            kp["flip"],
            kp["sign"],
            self.mag_ind,
            self.order,
            self.dim_start,
            self.w_kernel,
            self.w_index,
            self.ak,
            self.strength,
            self.cautious,
            self.z,
            mode,
            est,
            ymag,
            dims,
            conf,
            evidence,
            scratch,
            norms,
            n_threads,
        )

    def rows(self, start: int, stop: int, n_threads: int = 1) -> np.ndarray:
        """Estimates of merchants ``start:stop`` (magnitude columns from the stored percentiles)."""
        k = stop - start
        est = np.empty((k, self.n_ind))
        one = np.empty(1)
        self.run(
            slice(start, stop),
            2,
            est=est,
            dims=np.empty((1, len(DIMENSIONS))),
            conf=one,
            evidence=one,
            ymag=np.empty((self.mag_ind.shape[0], 1)),
            norms=np.empty((0, self.n_ind)),
            n_threads=n_threads,
        )
        for j, i in enumerate(self.mag_ind):
            est[:, i] = self.pct[j, start:stop]
        return est


class TrustScores:
    """Trust scores of every merchant at one moment (returned by ``TrustModel.score``).

    Attributes
    ----------
    now : float
        The moment scored (Unix seconds).
    indicators : tuple of Indicator
        The model's indicators (columns of ``estimates``).
    index : ndarray of float64, shape (n_merchants,)
        Trust index in [0, 1] (after veto caps) for ``Ranker(trust=...)``.
    dimensions : ndarray of float64, shape (n_merchants, 6)
        Dimension scores in [0, 1], columns in :data:`~ecomcore.indicators.DIMENSIONS` order (NaN
        for a dimension without indicators).
    estimates : ndarray of float64, shape (n_merchants, n_indicators)
        Oriented per-indicator estimates in [0, 1].  Computed on first access (the index does not
        need the whole matrix, and it is the largest output); later accesses return the same
        array.
    confidence : ndarray of float64, shape (n_merchants,)
        Credibility of the merchant's own evidence in [0, 1) (see the module docstring).
    evidence : ndarray of float64, shape (n_merchants,)
        Total decayed events over all indicators.
    boost : ndarray of float64, shape (n_merchants,)
        Guarantee boost g >= 1 for ``Ranker(boost=...)``.
    vetoed : ndarray of bool, shape (n_merchants,)
        Whether a veto caps the merchant's index.
    priors : TrustPriors
        The priors used (pass back as ``priors=`` to freeze them).
    norms : ndarray of float64, shape (n_categories, n_indicators)
        Estimate of a merchant without evidence, per category row of ``priors``.
    category_rows : ndarray of int64, shape (n_merchants,)
        Each merchant's row in ``priors`` / ``norms``.
    weights : ndarray of float64, shape (n_indicators,)
        Effective weight W_i of each indicator in the index (sums to 1).

    Notes
    -----
    The arrays are read-only views, so that :meth:`explain` always agrees with them.
    """

    def __init__(
        self,
        *,
        now: float,
        indicators: tuple[Indicator, ...],
        index: np.ndarray,
        dimensions: np.ndarray,
        estimator: _Estimator,
        confidence: np.ndarray,
        evidence: np.ndarray,
        boost: np.ndarray,
        vetoed: np.ndarray,
        veto_time: np.ndarray,
        uncapped: np.ndarray,
        priors: TrustPriors,
        norms: np.ndarray,
        category_rows: np.ndarray,
        weights: np.ndarray,
        n: np.ndarray,
        s: np.ndarray,
        events: np.ndarray,
    ) -> None:
        self.now = now
        self.indicators = indicators
        self.index = index
        self.dimensions = dimensions
        self._estimator = estimator
        self._estimates: Optional[np.ndarray] = None
        self.confidence = confidence
        self.evidence = evidence
        self.boost = boost
        self.vetoed = vetoed
        self.priors = priors
        self.norms = norms
        self.category_rows = category_rows
        self.weights = weights
        self._veto_time = veto_time
        self._uncapped = uncapped
        self._n = n
        self._s = s
        self._events = events
        for a in (index, dimensions, confidence, evidence, boost, vetoed, norms, category_rows, weights):
            a.flags.writeable = False

    @property
    def estimates(self) -> np.ndarray:
        """Oriented per-indicator estimates in [0, 1], shape (n_merchants, n_indicators) (read-only)."""
        if self._estimates is None:
            est = self._estimator.rows(0, self.n_merchants, self._estimator.n_threads)
            est.flags.writeable = False
            self._estimates = est
        return self._estimates

    @property
    def n_merchants(self) -> int:
        """Number of merchants scored."""
        return int(self.index.shape[0])

    def __repr__(self) -> str:
        return (
            f"TrustScores(n_merchants={self.n_merchants}, n_indicators={len(self.indicators)}, "
            f"now={self.now}, vetoed={int(self.vetoed.sum())})"
        )

    def explain(self, merchant: int, *, top: Optional[int] = None) -> list[Shortfall]:
        """The indicators that pull ``merchant``'s index down most: what it needs to improve.

        Each indicator's impact is its weighted shortfall against the category norm,
        ``W_i * (norm_estimate - estimate)``; only indicators with a positive impact are listed,
        largest first (ties by indicator order).  A merchant under a veto cap gets a first entry
        ``indicator="veto"`` whose impact is the index the cap removed.  The impacts of the
        non-veto entries minus those of indicators above the norm add up to the uncapped index's
        distance below the category-norm index.

        Parameters
        ----------
        merchant : int
            Merchant id in ``[0, n_merchants)``.
        top : int, optional
            Keep only the first ``top`` entries (>= 1).

        Returns
        -------
        list of Shortfall
            Largest impact first.

        Raises
        ------
        TypeError, ValueError
            If ``merchant`` is not an id in range or ``top`` is not a positive integer.
        """
        m = check_int(merchant, "merchant", minimum=0)
        if m >= self.n_merchants:
            raise ValueError(f"merchant: id {m} is out of range [0, {self.n_merchants})")
        if top is not None:
            top = check_int(top, "top", minimum=1)
        row = int(self.category_rows[m])
        est = self._estimates[m] if self._estimates is not None else self._estimator.rows(m, m + 1)[0]
        norm_est = self.norms[row]
        impact = self.weights * (norm_est - est)
        order = np.argsort(-impact, kind="stable")
        out: list[Shortfall] = []
        if self.vetoed[m]:
            out.append(
                Shortfall(
                    indicator="veto",
                    dimension="",
                    kind="veto",
                    value=float(self._veto_time[m]),
                    events=0,
                    estimate=float(self.index[m]),
                    norm=math.nan,
                    norm_estimate=math.nan,
                    impact=float(self._uncapped[m] - self.index[m]),
                )
            )
        for i in order:
            if not impact[i] > _IMPACT_EPS:
                break
            ind = self.indicators[i]
            n = float(self._n[m, i])
            value = float(self._s[m, i]) / n if n > 0 else math.nan
            out.append(
                Shortfall(
                    indicator=ind.name,
                    dimension=ind.dimension,
                    kind=ind.kind,
                    value=value,
                    events=int(self._events[m, i]),
                    estimate=float(est[i]),
                    norm=float(self.priors.mean[row, i]),
                    norm_estimate=float(norm_est[i]),
                    impact=float(impact[i]),
                )
            )
        return out if top is None else out[:top]


# ----------------------------------------------------------------------------- validation helpers


def _model_indicators(model: Any) -> tuple[Indicator, ...]:
    inds = getattr(model, "indicators", None)
    if inds is None:
        raise TypeError("model: expected an object with an 'indicators' attribute (a TrustModel)")
    inds = tuple(inds)
    if not inds:
        raise ValueError("model.indicators: at least one indicator is required")
    for ind in inds:
        if not isinstance(ind, Indicator):
            raise TypeError(f"model.indicators: expected Indicator objects, got {type(ind).__name__}")
    names = [ind.name for ind in inds]
    if len(set(names)) != len(names):
        raise ValueError("model.indicators: indicator names must be unique")
    return inds


def _dimension_weights(spec: Any) -> np.ndarray:
    """Weights of the six dimensions: None -> all 1; a mapping (missing dimensions -> 0, as in
    ``TrustModel``); or 6 numbers."""
    w = np.ones(len(DIMENSIONS))
    if spec is None:
        return w
    if isinstance(spec, Mapping):
        w[:] = 0.0
        for key, value in spec.items():
            if key not in DIMENSIONS:
                raise ValueError(f"dimension_weights: unknown dimension {key!r} (expected one of {DIMENSIONS})")
            w[DIMENSIONS.index(key)] = check_real(value, f"dimension_weights[{key!r}]", minimum=0.0)
        return w
    try:
        arr = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError("dimension_weights: expected None, a mapping dimension -> weight or 6 numbers") from exc
    if arr.shape != (len(DIMENSIONS),):
        raise ValueError(f"dimension_weights: expected {len(DIMENSIONS)} weights, got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < 0:
        raise ValueError("dimension_weights: weights must be finite and >= 0")
    return arr


def _stats_array(stats: TrustStats, field: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
    a = getattr(stats, field)
    a = np.asarray(a)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"stats.{field}: expected numbers, got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"stats.{field}: expected shape {shape}, got {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _category_labels(categories: Any, n_merchants: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted labels present, each merchant's position in them)."""
    if categories is None:
        return np.zeros(1, dtype=np.int64), np.zeros(n_merchants, dtype=np.int64)
    arr = np.asarray(categories)
    if arr.dtype == object or arr.dtype.kind not in "iu":
        raise TypeError(f"categories: expected integer category ids, got dtype {arr.dtype}")
    if arr.shape != (n_merchants,):
        raise ValueError(f"categories: expected shape ({n_merchants},), got {arr.shape}")
    if n_merchants == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi < max(4 * n_merchants, 1 << 16):
        present = np.bincount(arr, minlength=hi + 1) > 0
        labels = np.flatnonzero(present).astype(np.int64)
        lut = np.cumsum(present, dtype=np.int64) - 1
        return labels, lut[arr]
    labels, inverse = np.unique(arr.astype(np.int64), return_inverse=True)
    return labels, inverse.astype(np.int64).reshape(-1)


def _boost(guarantee: Any, n_merchants: int, per_guarantee: float) -> np.ndarray:
    if guarantee is None:
        return np.ones(n_merchants)
    g = np.asarray(guarantee)
    if g.dtype == object or g.dtype.kind not in "biu":
        raise TypeError(f"guarantee: expected a bool array (or integers 0/1), got dtype {g.dtype}")
    if g.ndim not in (1, 2) or g.shape[0] != n_merchants:
        raise ValueError(f"guarantee: expected shape ({n_merchants},) or ({n_merchants}, n_guarantees), got {g.shape}")
    if g.dtype.kind != "b" and g.size and (g.min() < 0 or g.max() > 1):
        raise ValueError("guarantee: integer flags must be 0 or 1")
    count = g.astype(np.float64) if g.ndim == 1 else g.astype(np.float64).sum(axis=1)
    return 1.0 + per_guarantee * count


_TOL = 1e-9  # relative slack on s against n: decayed sums carry rounding


def _kind_params(inds: Sequence[Indicator]) -> dict[str, np.ndarray]:
    """Per-indicator kernel parameters (see ``ecomcore_ext/_trust_score.pyx``)."""
    lo = {"rate": 0.0, "rating": 1 - _TOL, "magnitude": 0.0}
    # magnitudes: no upper bound (the largest double, not inf: inf * 0 would be NaN)
    hi = {"rate": 1 + _TOL, "rating": 5 * (1 + _TOL), "magnitude": float(np.finfo(np.float64).max)}
    off = {"rate": 0.0, "rating": 1.0, "magnitude": 0.0}
    scale = {"rate": 1.0, "rating": 0.25, "magnitude": 1.0}
    return {
        "lo": np.array([lo[i.kind] for i in inds]),
        "hi": np.array([hi[i.kind] for i in inds]),
        "off": np.array([off[i.kind] for i in inds]),
        "scale": np.array([scale[i.kind] for i in inds]),
        "flip": np.array([1.0 if i.direction == "lower" else 0.0 for i in inds]),
        "sign": np.array([-1.0 if i.direction == "lower" else 1.0 for i in inds]),
        "is_mag": np.array([i.kind == "magnitude" for i in inds], dtype=np.int8),
    }


def _raise_invalid(
    inds: Sequence[Indicator],
    n: np.ndarray,
    s: np.ndarray,
    s2: Optional[np.ndarray],
    events: np.ndarray,
    kp: dict[str, np.ndarray],
) -> None:
    moments = s2 is not None
    code, m, i = _trust_score.find_invalid(n, s, n if s2 is None else s2, events, kp["lo"], kp["hi"], moments)
    if code == 0:  # pragma: no cover - the kernels flagged a row, find_invalid must find it
        raise RuntimeError("trust scoring: a kernel flagged invalid statistics that find_invalid cannot locate")
    ind = inds[i]
    where = f"merchant {m}, indicator {ind.name!r} ({ind.kind})"
    if code == 3:
        bounds = {"rate": "[0, n]", "rating": "[n, 5 n]", "magnitude": "[0, inf)"}[ind.kind]
        raise ValueError(f"stats.s: {float(s[m, i])!r} at {where} is outside {bounds} (n = {float(n[m, i])!r})")
    if code == 4:
        raise ValueError(f"stats.s2: {float(s2[m, i])!r} at {where}: {_KERNEL_ERRORS[4]} (n = {float(n[m, i])!r})")
    if code == 6:
        raise ValueError(f"stats.events: {int(events[m, i])} at {where}: {_KERNEL_ERRORS[6]} (n = {float(n[m, i])!r})")
    raise ValueError(f"stats: {_KERNEL_ERRORS[code]} at {where} (n = {float(n[m, i])!r}, s = {float(s[m, i])!r})")


def _fit_priors(
    inds: tuple[Indicator, ...],
    acc: np.ndarray,
    acc_row: np.ndarray,
    labels: np.ndarray,
    prior_strength: float,
    min_merchants: int,
) -> TrustPriors:
    """Resolve every (category, indicator) prior from the moment sums (see the module docstring).

    ``acc[r, :, i]`` holds the sums of :func:`ecomcore_ext._trust_score.category_moments`;
    category ``c`` owns row ``acc_row[c]`` or, when it has fewer than ``min_merchants`` merchants
    at all (so no indicator can fit), ``-1`` (its merchants were summed into the last row, used
    only for the global mean).
    """
    n_cat, n_ind = labels.shape[0], len(inds)
    mean = np.empty((n_cat, n_ind))
    strength = np.empty((n_cat, n_ind))
    source = np.empty((n_cat, n_ind), dtype=np.int8)
    own = acc_row >= 0
    rows = acc[acc_row[own]]
    J, K, KX, KXX, KV, K2 = (rows[:, k, :] for k in range(6))
    with np.errstate(all="ignore"):
        mu = KX / K
        sw2 = KV / (K - J)
        b_denom = K - K2 / K
        tau2 = ((KXX - KX * KX / K) - (J - 1) * sw2) / b_denom
        ok_common = (J >= min_merchants) & (K > J) & (b_denom > 0) & (tau2 > 0) & np.isfinite(tau2)
    for i, ind in enumerate(inds):
        if ind.prior is not None:
            if ind.kind == "rate":
                a0, b0 = ind.prior
                mean[:, i] = a0 / (a0 + b0)
                strength[:, i] = a0 + b0
            else:
                mean[:, i], strength[:, i] = ind.prior
            source[:, i] = 0
            continue
        n_tot, s_tot = float(acc[:, 6, i].sum()), float(acc[:, 7, i].sum())
        g_mean = s_tot / n_tot if n_tot > 0 else _DEFAULT_MEAN[ind.kind]
        if ind.kind == "rate":
            g_mean = min(max(g_mean, 0.0), 1.0)
        elif ind.kind == "rating":
            g_mean = min(max(g_mean, 1.0), 5.0)
        else:
            g_mean = max(g_mean, 0.0)
        with np.errstate(all="ignore"):
            if ind.kind == "rate":
                var = mu[:, i] * (1 - mu[:, i])
                fit = var / tau2[:, i] - 1
                ok = ok_common[:, i] & (tau2[:, i] < var)
            else:
                fit = sw2[:, i] / tau2[:, i]
                ok = ok_common[:, i] & (sw2[:, i] > 0)
            ok &= np.isfinite(fit) & (fit > 0) & np.isfinite(mu[:, i])
        mean[:, i] = g_mean
        strength[:, i] = prior_strength
        source[:, i] = 2
        mean[own, i] = np.where(ok, mu[:, i], g_mean)
        strength[own, i] = np.where(ok, fit, prior_strength)
        source[own, i] = np.where(ok, 1, 2)
    return TrustPriors(tuple(ind.name for ind in inds), labels, mean, strength, source)


# ----------------------------------------------------------------------------- scoring


def score_state(
    model: Any,
    stats: TrustStats,
    *,
    categories: Any = None,
    guarantee: Any = None,
    priors: Optional[TrustPriors] = None,
) -> TrustScores:
    """Score every merchant from decayed trust statistics (called by ``TrustModel.score``).

    Parameters
    ----------
    model : TrustModel
        Supplies ``indicators``, ``n_merchants``, ``prior_strength``, ``categories``,
        ``dimension_weights``, ``veto_floor``, ``veto_days``, ``cautious``, ``z``,
        ``guarantee_boost``, ``min_category_merchants`` and, when present, ``n_threads``
        (read only).
    stats : TrustStats
        Decayed statistics at ``stats.now`` (shape ``(n_merchants, n_indicators)``).
    categories : array_like of int, shape (n_merchants,), optional
        Category label of every merchant (any integers); default ``model.categories`` (None: one
        category).
    guarantee : array_like of bool, shape (n_merchants,) or (n_merchants, n_guarantees), optional
        Trusted-purchase guarantees offered (refund without return, return shipping paid, fakes
        compensated, ...): ``boost = 1 + model.guarantee_boost * count``.
    priors : TrustPriors, optional
        Frozen priors from an earlier :class:`TrustScores` (``scores.priors``); every merchant's
        category must have a row there.  Default: fit them (module docstring).

    Returns
    -------
    TrustScores

    Raises
    ------
    TypeError, ValueError
        On inconsistent shapes, statistics that no fold could produce (negative or non-finite
        counts, a rate sum above its count, a rating sum outside ``[n, 5 n]`` ...), bad
        categories, guarantees or priors.  Nothing is modified.
    """
    inds = _model_indicators(model)
    n_ind = len(inds)
    n_m = check_int(getattr(model, "n_merchants", None), "model.n_merchants", minimum=0)
    prior_strength = check_real(getattr(model, "prior_strength", None), "model.prior_strength")
    if prior_strength <= 0:
        raise ValueError(f"model.prior_strength: must be > 0, got {prior_strength}")
    veto_floor = check_real(getattr(model, "veto_floor", None), "model.veto_floor", minimum=0.0)
    if veto_floor > 1:
        raise ValueError(f"model.veto_floor: must be in [0, 1], got {veto_floor}")
    veto_days = check_real(getattr(model, "veto_days", None), "model.veto_days", minimum=0.0)
    z = check_real(getattr(model, "z", None), "model.z", minimum=0.0)
    per_guarantee = check_real(getattr(model, "guarantee_boost", None), "model.guarantee_boost", minimum=0.0)
    min_merchants = check_int(getattr(model, "min_category_merchants", None), "model.min_category_merchants")
    cautious = getattr(model, "cautious", None)
    if not isinstance(cautious, (bool, np.bool_)):
        raise TypeError(f"model.cautious: expected a bool, got {type(cautious).__name__}")
    dim_w = _dimension_weights(getattr(model, "dimension_weights", None))

    if not isinstance(stats, TrustStats):
        raise TypeError(f"stats: expected a TrustStats, got {type(stats).__name__}")
    now = check_real(stats.now, "stats.now")
    shape = (n_m, n_ind)
    n = _stats_array(stats, "n", shape, np.float64)
    s = _stats_array(stats, "s", shape, np.float64)
    events = _stats_array(stats, "events", shape, np.int64)
    veto_time = np.asarray(stats.veto_time)
    if veto_time.dtype == object or veto_time.dtype.kind not in "biuf" or veto_time.shape != (n_m,):
        raise ValueError(f"stats.veto_time: expected a numeric array of shape ({n_m},)")
    veto_time = veto_time.astype(np.float64)
    if np.isnan(veto_time).any() or (veto_time == np.inf).any():
        raise ValueError("stats.veto_time: must be finite or -inf (no veto)")

    if categories is None:
        categories = getattr(model, "categories", None)
    labels, local = _category_labels(categories, n_m)
    boost = _boost(guarantee, n_m, per_guarantee)

    if n_m >= 2**31:
        raise ValueError(f"model.n_merchants: at most 2**31 - 1 merchants can be scored, got {n_m}")
    n_threads = resolve_threads(getattr(model, "n_threads", None))
    kp = _kind_params(inds)
    dim_of = np.array([DIMENSIONS.index(ind.dimension) for ind in inds], dtype=np.int64)
    w_ind = np.array([ind.weight for ind in inds])
    dim_total = np.bincount(dim_of, weights=w_ind, minlength=len(DIMENSIONS))
    has_dim = dim_total > 0
    w_dim = w_ind / dim_total[dim_of]
    used_w = np.where(has_dim, dim_w, 0.0)
    if not used_w.sum() > 0:
        raise ValueError("dimension_weights: every dimension that has indicators weighs 0")
    dim_share = used_w / used_w.sum()
    w_index = w_dim * dim_share[dim_of]

    if priors is None:
        cat = local
        n_cat = labels.shape[0]
        use = np.array([ind.prior is None for ind in inds])
        big = np.bincount(local, minlength=n_cat) >= min_merchants
        acc_row = np.where(big, np.cumsum(big) - 1, -1).astype(np.int64)
        n_rows = int(big.sum()) + 1
        if use.any():
            s2 = _stats_array(stats, "s2", shape, np.float64)
            row = np.where(big, acc_row, n_rows - 1)[local].astype(np.int64)
            # fixed blocks of merchants (summed in block order: same bits for any thread count);
            # one block when the per-block accumulators would take too much memory
            n_blocks = min(max(-(-n_m // _MOMENT_BLOCK), 1), _MOMENT_BLOCKS)
            if n_blocks * n_rows * 9 * n_ind * 8 > _MOMENT_MEMORY:
                n_blocks = 1
            chunk = max(-(-n_m // n_blocks), 1)
            parts = np.zeros((n_blocks, n_rows, 9, n_ind))
            if _trust_score.category_moments(n, s, s2, events, row, chunk, parts, n_threads):
                raise MemoryError("score: cannot allocate scratch memory for the category moments")
            acc = parts[0] if n_blocks == 1 else parts.sum(axis=0)
            if not (np.isfinite(acc).all() and (acc[:, 8, :] == 0).all()):
                _raise_invalid(inds, n, s, s2, events, kp)
        else:
            acc = np.zeros((n_rows, 9, n_ind))
        priors = _fit_priors(inds, acc, acc_row, labels, prior_strength, min_merchants)
    else:
        if not isinstance(priors, TrustPriors):
            raise TypeError(f"priors: expected the TrustPriors of an earlier TrustScores, got {type(priors).__name__}")
        if priors.indicators != tuple(ind.name for ind in inds):
            raise ValueError("priors: were fitted for other indicators than the model's")
        if priors.categories.shape[0] == 0:
            raise ValueError("priors: holds no category")
        rows = np.searchsorted(priors.categories, labels)
        rows_c = np.minimum(rows, priors.categories.shape[0] - 1)
        missing = (rows >= priors.categories.shape[0]) | (priors.categories[rows_c] != labels)
        if missing.any():
            raise ValueError(f"priors: no frozen prior for category {int(labels[np.argmax(missing)])}")
        for i, ind in enumerate(inds):
            col = priors.mean[:, i]
            if ind.kind == "rate" and (col.min() < 0 or col.max() > 1):
                raise ValueError(f"priors.mean: rate prior of {ind.name!r} outside [0, 1]")
            if ind.kind == "rating" and (col.min() < 1 or col.max() > 5):
                raise ValueError(f"priors.mean: rating prior of {ind.name!r} outside [1, 5]")
            if ind.kind == "magnitude" and col.min() < 0:
                raise ValueError(f"priors.mean: magnitude prior of {ind.name!r} is negative")
        cat = rows_c[local].astype(np.int64)
        n_cat = priors.categories.shape[0]
    p_mean = np.ascontiguousarray(priors.mean)
    p_strength = np.ascontiguousarray(priors.strength)
    p_ak = p_mean * p_strength

    mag_ind = np.flatnonzero(kp["is_mag"]).astype(np.int64)
    order = np.argsort(dim_of, kind="stable").astype(np.int64)
    dim_start = np.zeros(len(DIMENSIONS) + 1, dtype=np.int64)
    dim_start[1:] = np.cumsum(np.bincount(dim_of, minlength=len(DIMENSIONS)))
    norms = np.empty((n_cat, n_ind))
    ymag = np.empty((mag_ind.shape[0], n_m))
    dims = np.empty((n_m, len(DIMENSIONS)))
    conf = np.empty(n_m)
    evidence = np.empty(n_m)
    estimator = _Estimator(
        n=n,
        s=s,
        cat=cat,
        kp=kp,
        mag_ind=mag_ind,
        order=order,
        dim_start=dim_start,
        w_kernel=np.where(kp["is_mag"] == 1, 0.0, w_dim),
        w_index=w_index,
        ak=p_ak,
        strength=p_strength,
        cautious=bool(cautious),
        z=z,
        n_ind=n_ind,
        n_threads=n_threads,
        pct=ymag,
    )
    n_bad = estimator.run(
        slice(None),
        0,
        est=np.empty((1, n_ind)),
        dims=dims,
        conf=conf,
        evidence=evidence,
        ymag=ymag,
        norms=norms,
        n_threads=n_threads,
    )
    if n_bad:
        _raise_invalid(inds, n, s, None, events, kp)
    if mag_ind.shape[0]:
        lower = np.ascontiguousarray(kp["flip"][mag_ind] == 1.0, dtype=np.int8)
        # percentiles overwrite the shrunk means in place
        if _trust_score.magnitude_percentiles(ymag, mag_ind, lower, cat, n_cat, p_mean, ymag, norms, n_threads):
            raise MemoryError("score: cannot allocate scratch memory for the magnitude percentiles")
    uncapped = np.empty(n_m)
    index = np.empty(n_m)
    vetoed = np.empty(n_m, dtype=np.int8)
    _trust_score.finish(
        ymag,
        mag_ind,
        dim_of,
        w_dim,
        dim_share,
        has_dim.astype(np.int8),
        veto_time,
        now,
        veto_days * _SECONDS_PER_DAY,
        veto_floor,
        dims,
        conf,
        uncapped,
        index,
        vetoed,
        n_threads,
    )
    return TrustScores(
        now=now,
        indicators=inds,
        index=index,
        dimensions=dims,
        estimator=estimator,
        confidence=conf,
        evidence=evidence,
        boost=boost,
        vetoed=vetoed.view(bool),
        veto_time=veto_time,
        uncapped=uncapped,
        priors=priors,
        norms=norms,
        category_rows=cat,
        weights=w_index,
        n=n,
        s=s,
        events=events,
    )
