"""ecomcore: an embeddable, C-accelerated ranking core for interest and trust e-commerce.

score(u, m) = (sum_t A[u, t] * B[t, m] + follow_weight * F[u, m]) * w[m], top-k per user,
computed by fused Cython kernels that never build the users x merchants matrix; merchant trust
from decayed event statistics (TrustModel), bans propagated over shared identity keys
(IdentityGraph), interest profiles from behaviour (InterestModel), and exposure-controlled
re-ranking (rerank_exposure).
"""

from ecomcore._config import show_config
from ecomcore.audience import AudienceIndex, audience_for_items
from ecomcore.cobehaviour import item_history, item_ranker, merchant_side
from ecomcore.exposure import ExposureReport, exposure, gini, rerank_exposure
from ecomcore.fairness import fair_fail_probability, fair_table
from ecomcore.governance import IdentityGraph
from ecomcore.indicators import DIMENSIONS, Indicator, default_indicators
from ecomcore.interest import InterestModel, InterestState
from ecomcore.ranking import Ranker, sparse_topk
from ecomcore.similarity import item_similarity
from ecomcore.topk import TopK, concat_topk, merge_topk
from ecomcore.trust import TrustModel, TrustState
from ecomcore.trust_scoring import TrustScores

__version__ = "0.1.0"

__all__ = [
    "item_similarity",
    "item_history",
    "item_ranker",
    "merchant_side",
    "AudienceIndex",
    "audience_for_items",
    "DIMENSIONS",
    "ExposureReport",
    "IdentityGraph",
    "Indicator",
    "InterestModel",
    "InterestState",
    "Ranker",
    "TopK",
    "TrustModel",
    "TrustScores",
    "TrustState",
    "concat_topk",
    "default_indicators",
    "exposure",
    "fair_fail_probability",
    "fair_table",
    "gini",
    "merge_topk",
    "rerank_exposure",
    "show_config",
    "sparse_topk",
    "__version__",
]
