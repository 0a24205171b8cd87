"""ecomcore: an embeddable, C-accelerated ranking core for interest and trust e-commerce.

score(u, m) = (sum_t A[u, t] * B[t, m] + follow_weight * F[u, m]) * w[m], top-k per user,
computed by fused Cython kernels that never build the users x merchants matrix.
"""

from ecomcore._config import show_config
from ecomcore.governance import IdentityGraph
from ecomcore.indicators import DIMENSIONS, Indicator, default_indicators
from ecomcore.interest import InterestModel, InterestState
from ecomcore.ranking import Ranker, sparse_topk
from ecomcore.topk import TopK, concat_topk, merge_topk
from ecomcore.trust import TrustModel, TrustState
from ecomcore.trust_scoring import TrustScores

__version__ = "0.1.0"

__all__ = [
    "DIMENSIONS",
    "IdentityGraph",
    "Indicator",
    "InterestModel",
    "InterestState",
    "TrustModel",
    "TrustScores",
    "TrustState",
    "default_indicators",
    "Ranker",
    "TopK",
    "concat_topk",
    "merge_topk",
    "show_config",
    "sparse_topk",
    "__version__",
]
