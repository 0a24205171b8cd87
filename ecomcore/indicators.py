"""Trust indicator specifications and the default catalogue.

An :class:`Indicator` says how one kind of merchant event is read: which of the six trust
dimensions it belongs to, whether it is a 0/1 ``rate`` trial, a 1-5 ``rating`` or a non-negative
``magnitude``, whether higher values are better or worse, its weight inside its dimension, an
optional explicit prior and whether a positive event is a confirmed veto (e.g. a counterfeit
finding).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

#: The six trust dimensions, in the column order of ``TrustScores.dimensions``.
DIMENSIONS: tuple[str, ...] = (
    "product_quality",
    "service_quality",
    "host_conduct",
    "product_experience",
    "after_sales",
    "social_evaluation",
)

#: Indicator kinds.
KINDS: tuple[str, ...] = ("rate", "rating", "magnitude")

#: Directions: ``"higher"`` means higher values are better, ``"lower"`` that lower are better.
DIRECTIONS: tuple[str, ...] = ("higher", "lower")


@dataclass(frozen=True)
class Indicator:
    """One trust indicator.

    Parameters
    ----------
    name : str
        Unique, non-empty name; events may refer to the indicator by name or by position.
    dimension : str
        One of :data:`DIMENSIONS`.
    kind : str
        ``"rate"`` (event value 1 if the outcome happened, 0 if not), ``"rating"`` (value in
        [1, 5]) or ``"magnitude"`` (a non-negative amount, ranked against the merchant's category).
    direction : str
        ``"higher"`` if higher values are better (good-review rate, repurchase), ``"lower"`` if
        lower values are better (refund rate, delivery hours).
    weight : float, default 1.0
        Weight of the indicator inside its dimension (finite, > 0).
    prior : tuple of two floats, optional
        Explicit prior, overriding the empirical-Bayes and global priors: ``(alpha, beta)`` of a
        Beta prior for rates; ``(mean, strength)`` for ratings and magnitudes (``mean`` in the
        indicator's own units, ``strength`` in pseudo-events).  All values finite and > 0.
    veto : bool, default False
        Only for rates: an event with value 1 is a confirmed veto (caps the index at the model's
        veto floor for the model's veto period).
    rationale : str, default ""
        One line saying why the indicator matters (shown in the catalogue).
    """

    name: str
    dimension: str
    kind: str
    direction: str
    weight: float = 1.0
    prior: Optional[tuple[float, float]] = None
    veto: bool = False
    rationale: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Indicator.name: expected a non-empty string, got {self.name!r}")
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"Indicator {self.name!r}: dimension must be one of {DIMENSIONS}, got {self.dimension!r}")
        if self.kind not in KINDS:
            raise ValueError(f"Indicator {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Indicator {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"Indicator {self.name!r}: weight must be a finite number > 0, got {w!r}")
        object.__setattr__(self, "weight", float(w))
        if self.prior is not None:
            p = tuple(self.prior)
            if len(p) != 2 or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in p
            ):
                raise ValueError(f"Indicator {self.name!r}: prior must be two finite numbers > 0, got {self.prior!r}")
            p = (float(p[0]), float(p[1]))
            if self.kind == "rating" and not 1.0 <= p[0] <= 5.0:
                raise ValueError(f"Indicator {self.name!r}: a rating prior mean must lie in [1, 5], got {p[0]}")
            object.__setattr__(self, "prior", p)
        if not isinstance(self.veto, (bool,)):
            raise TypeError(f"Indicator {self.name!r}: veto must be a bool, got {type(self.veto).__name__}")
        if self.veto and self.kind != "rate":
            raise ValueError(f"Indicator {self.name!r}: only rate indicators can be vetoes")
        if not isinstance(self.rationale, str):
            raise TypeError(f"Indicator {self.name!r}: rationale must be a string")
