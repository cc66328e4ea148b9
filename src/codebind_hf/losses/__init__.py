"""CodeBind's losses: the functions of the method (`functional`), the path objective (`objective`), adaptive weights (`balancer`)."""

from .balancer import AdaptiveLossBalancer, OfficialLossBalancer, build_balancer
from .functional import (
    codevector_contrastive,
    codevector_uniformity,
    cross_modal_code_matching,
    info_nce,
    orthogonality,
    reconstruction,
    uniformity,
)

__all__ = [
    "AdaptiveLossBalancer",
    "OfficialLossBalancer",
    "build_balancer",
    "codevector_contrastive",
    "codevector_uniformity",
    "cross_modal_code_matching",
    "info_nce",
    "orthogonality",
    "reconstruction",
    "uniformity",
]
