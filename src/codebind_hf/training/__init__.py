"""Accelerate scripts that train CodeBind paths (``codebind-train``); see docs/training.md."""
