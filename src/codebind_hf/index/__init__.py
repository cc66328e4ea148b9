"""The compact code index: packed codes and search (`core`), backends (`backends`), resumable builds (`build`)."""

from .backends import faiss_available, pack_codes, unpack_codes
from .core import CodeBindIndex, build_index_from_dataset, load_index, push_index, save_index

__all__ = [
    "CodeBindIndex",
    "build_index_from_dataset",
    "save_index",
    "load_index",
    "push_index",
    "faiss_available",
    "pack_codes",
    "unpack_codes",
]
