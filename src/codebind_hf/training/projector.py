"""Kept so that ``import codebind_hf.training.projector`` keeps working: the projector (its head and its artifact)
lives in `codebind_hf.adapters.projector`, and nothing of it is training-specific."""

from ..adapters.projector import *  # noqa: F401,F403
from ..adapters.projector import __all__  # noqa: F401
