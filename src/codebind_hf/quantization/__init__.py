"""Compositional vector quantisation: the EMA codebooks (`quantizer`) and the fused CUDA nearest-code kernel (`kernels`)."""

from .quantizer import CompositionalQuantizer, MultiCodebookQuantizer, QuantizerOutput, build_path_quantizers, nearest_codes

__all__ = ["CompositionalQuantizer", "MultiCodebookQuantizer", "QuantizerOutput", "build_path_quantizers", "nearest_codes"]
