"""Suite-wide settings (tests and doctests): a private, empty Hugging Face cache and no network."""

import os
import tempfile

# Set before anything imports huggingface_hub / transformers, which read these at import time.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="codebind-hf-home-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
