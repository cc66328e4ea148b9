"""Kept so that ``import codebind_hf.lora`` keeps working; the code lives in `codebind_hf.adapters.lora`."""

from .adapters.lora import *  # noqa: F401,F403
from .adapters.lora import __all__  # noqa: F401
