"""The compact code index: packed codes and search (`core`), backends (`backends`), resumable builds (`build`),
inverted lists over codes (`ivf`, `ivf_backends`)."""

from .backends import faiss_available, pack_codes, unpack_codes
from .build import build_index_from_dataset
from .core import CodeBindIndex
from .ivf import CodeBindIVFIndex

__all__ = ["CodeBindIndex", "CodeBindIVFIndex", "build_index_from_dataset", "faiss_available", "pack_codes", "unpack_codes"]
