"""Kept so that ``import codebind_hf.paths`` keeps working; the code lives in `codebind_hf.adapters.paths`."""

from .adapters.paths import *  # noqa: F401,F403
from .adapters.paths import __all__  # noqa: F401
