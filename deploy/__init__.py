"""Deployment manifest generator: `python -m deploy` (or `make manifest`) writes config/deployment.<platform>.json,
as iotedgedev genconfig does, for this repository or any iotedgedev solution (`--template`)."""

from deploy.manifest import ManifestError, Problem, Rendered, generate, main, render

__all__ = ["ManifestError", "Problem", "Rendered", "generate", "main", "render"]
