"""CodeBind's losses: the functions of the method (`functional`), the path objective (`objective`), adaptive weights (`balancer`)."""

from .balancer import AdaptiveLossBalancer
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
    "codevector_contrastive",
    "codevector_uniformity",
    "cross_modal_code_matching",
    "info_nce",
    "orthogonality",
    "reconstruction",
    "uniformity",
]
