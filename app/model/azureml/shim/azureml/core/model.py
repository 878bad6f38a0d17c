"""`Model.get_model_path` of the Azure ML SDK v1, for a script running inside a deployment (the local case only:
no workspace, nothing downloaded).

The SDK (azureml-core 1.61, `Model._get_model_path_local`) looks in `$AML_APP_ROOT/azureml-models`, where a
deployment keeps each model as `<name>/<version>/<one file or folder>`: with no version it takes the highest
numeric one, the version directory must hold exactly one entry (its path is the answer), and when `<name>` or the
version is missing it falls back to `<name>` relative to the working directory, else ModelNotFoundException (turned
into WebserviceException when a version was asked for).

This module serves its model from AZUREML_MODEL_DIR, so the same rules are applied, in order, to:
  1. the azureml-models directory above AZUREML_MODEL_DIR when that is `<azureml-models>/<name>/<version>` (the
     SDK v1 single-model layout),
  2. AZUREML_MODEL_DIR itself (the multi-model layout, `<dir>/<name>/<version>/...`),
  3. `$AML_APP_ROOT/azureml-models`, as the SDK does,
and, beyond the SDK, `<root>/<name>` that is a file, or a folder without numeric versions, is returned as it is:
the model directly in the model directory. Then the working directory, then ModelNotFoundException.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..exceptions import ModelNotFoundException, WebserviceException

__all__ = ["Model"]

module_logger = logging.getLogger(__name__)


def _default_models_dir() -> str:
    return os.path.join(os.environ.get("AML_APP_ROOT", ""), "azureml-models")


def _roots() -> list[str]:
    roots: list[str] = []
    model_dir = os.environ.get("AZUREML_MODEL_DIR", "")
    if model_dir:
        normalized = os.path.normpath(model_dir)
        if os.path.basename(normalized).isdigit():
            roots.append(os.path.dirname(os.path.dirname(normalized)))
        roots.append(normalized)
    roots.append(_default_models_dir())
    return list(dict.fromkeys(roots))


class Model:
    """Only `Model.get_model_path` is available in this module (no workspace, no registry)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise WebserviceException(
            "Only Model.get_model_path(model_name, version=None) is available here: this module has no Azure ML "
            "workspace (the azureml-core SDK is not installed)."
        )

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: Any = None) -> str:
        """The path of a deployed model (a file or a folder). Raises ModelNotFoundException, or
        WebserviceException when `version` was given."""
        if version is not None and not isinstance(version, int):
            raise WebserviceException("version should be an int", logger=module_logger)
        if _workspace is not None:
            module_logger.warning("get_model_path: the workspace is ignored, only local models are resolved")
        if version is not None:
            try:
                return Model._get_model_path_local(model_name, version)
            except ModelNotFoundException as ee:
                raise WebserviceException(ee.message, logger=module_logger) from None
        return Model._get_model_path_local(model_name, version)

    @staticmethod
    def _get_model_path_local(model_name: str, version: int | None = None) -> str:
        if version is not None and not isinstance(version, int):
            raise WebserviceException("version should be an int", logger=module_logger)
        if model_name is None:
            raise WebserviceException("model_name is None", logger=module_logger)
        roots = _roots()
        for root in roots:
            found = Model._probe(root, model_name, version)
            if found is not None:
                return found
        # The SDK's last resort: the name relative to the working directory.
        if os.path.exists(model_name):
            return model_name
        module_logger.debug("model %s not found under %s", model_name, roots)
        raise ModelNotFoundException(
            f"Model {model_name} not found in cache at {roots[0]} or in current working directory {os.getcwd()}. "
            "For more info, set logging level to DEBUG."
        )

    @staticmethod
    def _probe(root: str, model_name: str, version: int | None) -> str | None:
        candidate = os.path.join(root, model_name)
        if not os.path.exists(candidate):
            return None
        if not os.path.isdir(candidate):
            return candidate  # the model file directly in the model directory
        versions = [int(entry) for entry in os.listdir(candidate) if entry.isdigit()]
        if not versions:
            return candidate  # a model folder directly in the model directory
        chosen = version if version is not None else max(versions)
        module_logger.debug("model %s: using version %s under %s", model_name, chosen, root)
        version_dir = os.path.join(candidate, str(chosen))
        if not os.path.isdir(version_dir):
            return None
        entries = sorted(os.listdir(version_dir))
        if len(entries) != 1:
            raise WebserviceException(
                f"Dir {version_dir} can contain only 1 file or folder. Found {entries}", logger=module_logger
            )
        return os.path.join(version_dir, entries[0])
