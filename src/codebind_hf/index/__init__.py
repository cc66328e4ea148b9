"""The compact code index: packed codes and search (`core`), backends (`backends`), resumable builds (`build`)."""

from .backends import faiss_available, pack_codes, unpack_codes
from .build import build_index_from_dataset
from .core import CodeBindIndex

__all__ = ["CodeBindIndex", "build_index_from_dataset", "faiss_available", "pack_codes", "unpack_codes"]
