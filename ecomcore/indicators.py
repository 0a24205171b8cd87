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


# name, dimension, kind, direction, weight, veto, rationale
_CATALOGUE: tuple[tuple[str, str, str, str, float, bool, str], ...] = (
    # product quality
    ("good_review_rate", "product_quality", "rate", "higher", 1.0, False,
     "Share of 4-5 star reviews: Douyin's per-pillar good-review rate."),
    ("low_star_share", "product_quality", "rate", "lower", 1.0, False,
     "Share of 1-2 star reviews: TikTok Shop's headline metric, part of Amazon's order defect rate."),
    ("quality_return_rate", "product_quality", "rate", "lower", 1.0, False,
     "Returns for quality reasons per order (Douyin's quality return rate)."),
    ("counterfeit_report", "product_quality", "rate", "lower", 2.0, True,
     "Inspections or reports that confirm a counterfeit; a confirmed hit is a veto (Kuaishou, 2021)."),
    ("spot_check_fail_rate", "product_quality", "rate", "lower", 1.0, False,
     "Platform quality spot checks failed per check."),
    ("item_as_described", "product_quality", "rating", "higher", 1.0, False,
     "Taobao DSR 'item as described' score (1-5), shown against the category average."),
    # service quality
    ("im_reply_3min_rate", "service_quality", "rate", "higher", 1.0, False,
     "IM chats answered within 3 minutes (Douyin's service score)."),
    ("im_reply_minutes", "service_quality", "magnitude", "lower", 1.0, False,
     "Minutes to the first IM reply, ranked against the category."),
    ("service_attitude_rating", "service_quality", "rating", "higher", 1.0, False,
     "Taobao DSR 'service attitude' score (1-5)."),
    ("complaint_rate", "service_quality", "rate", "lower", 1.0, False,
     "Buyer complaints per order (Douyin's complaint rate)."),
    ("late_dispatch_rate", "service_quality", "rate", "lower", 1.0, False,
     "Orders handed to the carrier after the promised time (TikTok Shop; Amazon late shipment < 4 %)."),
    ("seller_cancellation_rate", "service_quality", "rate", "lower", 1.0, False,
     "Seller-fault cancellations and unavailable items per order (Amazon: < 2.5 %)."),
    ("late_delivery_rate", "service_quality", "rate", "lower", 1.0, False,
     "Orders delivered after the date promised to the buyer."),
    ("delivery_hours", "service_quality", "magnitude", "lower", 1.0, False,
     "Hours from purchase to delivery (Douyin's average delivery time), ranked against the category."),
    ("valid_tracking_rate", "service_quality", "rate", "higher", 1.0, False,
     "Shipments with a valid tracking number (Amazon: >= 95 %)."),
    ("logistics_rating", "service_quality", "rating", "higher", 1.0, False,
     "Taobao DSR 'logistics' score (1-5)."),
    # host / anchor conduct
    ("host_false_advertising_vote", "host_conduct", "rate", "lower", 1.0, False,
     "Live-room votes answering 'false advertising?' with yes, per vote cast (Kuaishou)."),
    ("host_attitude_rating", "host_conduct", "rating", "higher", 1.0, False,
     "Viewer ratings of the host's attitude (1-5; Kuaishou's anchor-attitude area)."),
    ("host_violation_rate", "host_conduct", "rate", "lower", 1.0, False,
     "Live sessions with a confirmed rule violation (banned claims, exaggeration) per session."),
    ("host_promise_kept_rate", "host_conduct", "rate", "higher", 1.0, False,
     "Promises made on stream (price, gift, ship date) honoured, per order that relied on one."),
    # product experience
    ("review_rating", "product_experience", "rating", "higher", 1.0, False,
     "Overall 1-5 review score after use (what buyers say when the product is in their hands)."),
    ("repurchase_rate", "product_experience", "rate", "higher", 1.0, False,
     "Buyers ordering again within 90 days (Kuaishou: > 70 % at trusted merchants)."),
    ("not_as_described_rate", "product_experience", "rate", "lower", 1.0, False,
     "'Not as described' reports per order."),
    ("damaged_on_arrival_rate", "product_experience", "rate", "lower", 1.0, False,
     "Items arriving broken or incomplete per order."),
    # after-sales guarantees
    ("refund_rate", "after_sales", "rate", "lower", 1.0, False,
     "Refunds per order."),
    ("refund_without_return_honoured", "after_sales", "rate", "higher", 1.0, False,
     "Refund-without-return requests honoured (a 'trusted purchase' guarantee kept)."),
    ("after_sales_response_hours", "after_sales", "magnitude", "lower", 1.0, False,
     "Hours to the first answer to an after-sales request, ranked against the category."),
    ("dispute_rate", "after_sales", "rate", "lower", 1.0, False,
     "Disputes escalated to the platform per order (A-to-z claims, chargebacks; Amazon ODR < 1 %)."),
    ("fake_compensation_honoured", "after_sales", "rate", "higher", 1.0, False,
     "Valid counterfeit-compensation claims paid ('fakes compensated' guarantee kept)."),
    # social evaluation
    ("live_room_trust_vote", "social_evaluation", "rate", "higher", 1.0, False,
     "Live-room votes saying the shop is trustworthy, per vote cast (Kuaishou's social evaluation)."),
    ("recommend_rate", "social_evaluation", "rate", "higher", 1.0, False,
     "Reviewers who would recommend the shop to others."),
    ("shop_report_rate", "social_evaluation", "rate", "lower", 1.0, False,
     "User reports against the shop (fraud, harassment, fake orders) per order."),
    ("buyer_show_positive_rate", "social_evaluation", "rate", "higher", 1.0, False,
     "Buyer-show posts (photo or video reviews) that are positive."),
)  # fmt: skip


def default_indicators() -> tuple[Indicator, ...]:
    """The default catalogue: 33 indicators covering the six trust dimensions.

    Drawn from what platforms publish (reference sheet, "What platforms measure"): Douyin's
    merchant experience score (good-review rates, quality return rate, delivery time, complaint
    rate, IM 3-minute reply rate), TikTok Shop (1-2 star share, late dispatch, cancellations),
    Taobao DSR (item as described, service attitude, logistics: 1-5 ratings shown against the
    category), Amazon and eBay defect metrics (order defect rate, late shipment, cancellation,
    valid tracking) and Kuaishou's trust index (host conduct, live-room votes, repurchase,
    trusted-purchase guarantees, counterfeit interception).  No platform publishes its weights:
    every indicator weighs 1 inside its dimension except ``counterfeit_report`` (2, and a veto),
    the six dimensions weigh the same, and no explicit priors are set (the empirical-Bayes and
    global priors apply).  Each indicator's ``rationale`` gives its one-line reason.

    Counts by dimension: product_quality 6, service_quality 10, host_conduct 4,
    product_experience 4, after_sales 5, social_evaluation 4.  Kinds: 25 rates, 5 ratings,
    3 magnitudes (``im_reply_minutes``, ``delivery_hours``, ``after_sales_response_hours``).

    Returns
    -------
    tuple of Indicator
        A new tuple each call (Indicator objects are immutable).
    """
    return tuple(
        Indicator(name, dim, kind, direction, weight=weight, veto=veto, rationale=why)
        for name, dim, kind, direction, weight, veto, why in _CATALOGUE
    )
