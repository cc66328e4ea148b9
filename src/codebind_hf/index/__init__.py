"""The compact code index: packed codes and search (`core`), backends (`backends`), resumable builds (`build`),
inverted lists over codes (`ivf`, `ivf_backends`)."""

from .backends import faiss_available, pack_codes, unpack_codes
from .core import CodeBindIndex, build_index_from_dataset, load_index, push_index, save_index
from .ivf import CodeBindIVFIndex

__all__ = [
    "CodeBindIndex",
    "CodeBindIVFIndex",
    "build_index_from_dataset",
    "save_index",
    "load_index",
    "push_index",
    "faiss_available",
    "pack_codes",
    "unpack_codes",
]
