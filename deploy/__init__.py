"""Deployment manifest generator: `python -m deploy` (or `make manifest`) writes config/deployment.<platform>.json."""

from deploy.manifest import ManifestError, Problem, generate, main

__all__ = ["ManifestError", "Problem", "generate", "main"]
