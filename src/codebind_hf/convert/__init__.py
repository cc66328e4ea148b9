"""Converters from original checkpoints into codebind_hf models (``imagebind``: the released ImageBind ``.pth``;
``vitlens``: ViT-Lens ``export_checkpoint`` files)."""

from .imagebind import (
    convert_imagebind_checkpoint,
    imagebind_state_dict_to_towers,
    load_imagebind_checkpoint,
)
from .vitlens import convert_vitlens_checkpoint, load_vitlens_checkpoint, vitlens_state_dict_to_towers

__all__ = [
    "convert_imagebind_checkpoint",
    "imagebind_state_dict_to_towers",
    "load_imagebind_checkpoint",
    "convert_vitlens_checkpoint",
    "load_vitlens_checkpoint",
    "vitlens_state_dict_to_towers",
]
