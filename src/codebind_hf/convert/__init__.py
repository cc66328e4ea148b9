"""Converters from original checkpoints into codebind_hf models (``imagebind``: the released ImageBind ``.pth``)."""

from .imagebind import (
    convert_imagebind_checkpoint,
    imagebind_state_dict_to_towers,
    load_imagebind_checkpoint,
)

__all__ = ["convert_imagebind_checkpoint", "imagebind_state_dict_to_towers", "load_imagebind_checkpoint"]
