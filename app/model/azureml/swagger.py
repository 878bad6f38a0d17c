"""The swagger documents azmlinfsrv 1.5.1 serves at GET /swagger.json?version=2|2.0|3|3.0|3.1 (its only swagger
route; the default version is 2), built once at start-up the way it builds them:

- a file the user put in the app root wins: swagger.json or swagger2.json for version 2, swagger3.json for 3,
  swagger3.1.json for 3.1 (read as JSON, served re-encoded; an empty one counts as absent);
- otherwise the server's template, with SERVICE_NAME / SERVICE_VERSION / SERVICE_PATH_PREFIX substituted, and the
  run() schemas from inference-schema as ServiceInput / ServiceOutput (`{"type": "object", "example": {}}` for
  both when run() is not decorated: an undecorated script still has a document);
- a version the run() schemas cannot be written in (swagger 2 has no mixed-type arrays) is left out.

The templates below are the server's (swagger2_template.json, swagger3_template.json), key order included, since
the document is served with json.dumps and a client may compare it byte for byte.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_VERSION = "2"
SERVICE_NAME = "$SERVICE_NAME$"
SERVICE_VERSION = "$SERVICE_VERSION$"
PATH_PREFIX = "$PATH_PREFIX$"
ALL_SCHEMA_VERSIONS = ["2.0", "3.0", "3.1"]

_HEALTH_DESCRIPTION = "Simple health check endpoint to ensure the service is up at any given point."
_HEALTHY = "If service is up and running, this response will be returned with the content 'Healthy'"
_FAILED = "The service failed to execute due to an error."
_SCORE_DESCRIPTION = "Run web service's model and get the prediction output"
_PAYLOAD = "The input payload for executing the real-time machine learning service."
_PREDICTED = "The service processed the input correctly and provided a result prediction, if applicable."
_BEARER = {"type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer abc123"}
_INFO = {
    "title": SERVICE_NAME,
    "description": f"API specification for the Azure Machine Learning service {SERVICE_NAME}",
    "version": SERVICE_VERSION,
}


def _placeholder_schemas() -> dict[str, Any]:
    return {
        "ServiceInput": {
            "type": "object",
            "properties": {"param": {"type": "object", "additionalProperties": {"type": "object"}}},
        },
        "ServiceOutput": {"type": "object", "additionalProperties": {"type": "object"}},
        "ErrorResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
    }


def _swagger2_template() -> dict[str, Any]:
    error = {"description": _FAILED, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0",
        "info": dict(_INFO),
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"Bearer": dict(_BEARER)},
        "paths": {
            f"{PATH_PREFIX}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESCRIPTION,
                    "responses": {
                        "200": {
                            "description": _HEALTHY,
                            "schema": {"type": "string"},
                            "examples": {"application/json": "Healthy"},
                        },
                        "default": copy.deepcopy(error),
                    },
                }
            },
            f"{PATH_PREFIX}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESCRIPTION,
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": _PAYLOAD,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {"description": _PREDICTED, "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "default": copy.deepcopy(error),
                    },
                }
            },
            f"{PATH_PREFIX}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [{"name": "version", "in": "query", "required": False, "type": "integer", "enum": [2, 3]}],
                    "responses": {
                        "200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                        "default": copy.deepcopy(error),
                    },
                }
            },
        },
        "definitions": _placeholder_schemas(),
    }


def _swagger3_template() -> dict[str, Any]:
    def error() -> dict[str, Any]:
        return {
            "description": _FAILED,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }

    return {
        "openapi": "3.0.3",
        "info": dict(_INFO),
        "security": [{"Bearer": []}],
        "paths": {
            f"{PATH_PREFIX}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESCRIPTION,
                    "responses": {
                        "200": {
                            "description": _HEALTHY,
                            "content": {"text/plain": {"schema": {"type": "string", "example": "Healthy"}}},
                        },
                        "default": error(),
                    },
                }
            },
            f"{PATH_PREFIX}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESCRIPTION,
                    "security": [{"Bearer": []}],
                    "requestBody": {
                        "description": _PAYLOAD,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}},
                    },
                    "responses": {
                        "200": {
                            "description": _PREDICTED,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}},
                        },
                        "default": error(),
                    },
                }
            },
            f"{PATH_PREFIX}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "enum": [2, 3]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": error(),
                    },
                }
            },
        },
        "components": {"schemas": _placeholder_schemas(), "securitySchemes": {"Bearer": dict(_BEARER)}},
    }


@dataclass(frozen=True)
class ServiceSettings:
    """The server settings that reach the answers (azmlinfsrv's config: environment first, then config.json)."""

    service_name: str = "ML service"
    service_version: str = "1.0"
    service_path_prefix: str = ""
    scoring_timeout_ms: int = 3600 * 1000


class SettingsError(ValueError):
    """An invalid config.json or setting: azmlinfsrv refuses to start."""


def _config_file(app_root: Path, script: Path) -> Path | None:
    # azmlinfsrv's search: AZUREML_CONFIG_FILE, then config.json in the app root, then next to the entry script
    # (an empty file does not count).
    candidates = []
    if os.environ.get("AZUREML_CONFIG_FILE"):
        candidates.append(Path(os.environ["AZUREML_CONFIG_FILE"]))
    candidates += [app_root / "config.json", script.parent / "config.json"]
    for candidate in candidates:
        if candidate.is_file() and candidate.stat().st_size:
            return candidate
    return None


def read_settings(app_root: Path, script: Path) -> ServiceSettings:
    """SERVICE_NAME, SERVICE_VERSION, SERVICE_PATH_PREFIX, SCORING_TIMEOUT_MS from the environment, else from the
    config file (a workspace config.json with other keys is harmless)."""
    from_file: dict[str, Any] = {}
    config = _config_file(app_root, script)
    if config is not None:
        try:
            loaded = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as ex:
            raise SettingsError(f"Invalid config file {config}: {ex}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"Invalid config file {config}: not a JSON object")
        from_file = loaded

    def value(name: str, default: Any) -> Any:
        if name in os.environ:
            return os.environ[name]
        found = from_file.get(name)
        return default if found is None else found

    texts = {}
    for name, default in (("SERVICE_NAME", "ML service"), ("SERVICE_VERSION", "1.0"), ("SERVICE_PATH_PREFIX", "")):
        text = value(name, default)
        if not isinstance(text, str):
            raise SettingsError(f"{name}: Input should be a valid string")
        texts[name] = text
    timeout = value("SCORING_TIMEOUT_MS", 3600 * 1000)
    try:
        if isinstance(timeout, bool) or (isinstance(timeout, float) and not timeout.is_integer()):
            raise ValueError
        timeout_ms = int(timeout)
    except (TypeError, ValueError):
        raise SettingsError(f"SCORING_TIMEOUT_MS: Input should be a valid integer, got {timeout!r}") from None
    return ServiceSettings(texts["SERVICE_NAME"], texts["SERVICE_VERSION"], texts["SERVICE_PATH_PREFIX"], timeout_ms)


@dataclass(frozen=True)
class _Builder:
    version: str
    aliases: frozenset[str]
    user_files: tuple[str, ...]
    template: Callable[[], dict[str, Any]]
    schemas_at: tuple[str, ...]
    openapi: str | None = None


_BUILDERS = (
    _Builder("2", frozenset({"2", "2.0"}), ("swagger.json", "swagger2.json"), _swagger2_template, ("definitions",)),
    _Builder("3", frozenset({"3", "3.0"}), ("swagger3.json",), _swagger3_template, ("components", "schemas")),
    _Builder("3.1", frozenset({"3.1"}), ("swagger3.1.json",), _swagger3_template, ("components", "schemas"), "3.1.0"),
)
VALID_VERSIONS = frozenset().union(*(builder.aliases for builder in _BUILDERS))


class SwaggerNotServed(LookupError):
    """The requested version is not served (azmlinfsrv answers 404 with this message)."""


@dataclass(frozen=True)
class RunSchemas:
    """What inference-schema knows of run(): whether it is decorated, the swagger versions its schemas can be
    written in, and the input/output schemas."""

    decorated: bool
    versions: list[str]
    input_schema: Any
    output_schema: Any


def _read_user_swagger(app_root: Path, name: str) -> Any:
    path = app_root / name
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        return None


def _generate(builder: _Builder, schemas: RunSchemas, settings: ServiceSettings) -> Any:
    if all(alias not in schemas.versions for alias in builder.aliases):
        return None
    if schemas.decorated:
        input_schema, output_schema = schemas.input_schema, schemas.output_schema
    else:
        input_schema = output_schema = {"type": "object", "example": {}}
    prefix = f"/{settings.service_path_prefix.strip('/')}" if settings.service_path_prefix else ""
    # Substituted in the JSON text, as the server does (so a name with a quote breaks the document there too).
    text = (
        json.dumps(builder.template())
        .replace(SERVICE_NAME, settings.service_name)
        .replace(SERVICE_VERSION, settings.service_version)
        .replace(PATH_PREFIX, prefix)
    )
    document = json.loads(text)
    target = document
    for key in builder.schemas_at:
        target = target[key]
    target["ServiceInput"] = copy.deepcopy(input_schema)
    target["ServiceOutput"] = copy.deepcopy(output_schema)
    if builder.openapi:
        document["openapi"] = builder.openapi
    return document


class SwaggerDocs:
    """The documents of one entry script, built at load time."""

    def __init__(self, app_root: Path, schemas: RunSchemas, settings: ServiceSettings) -> None:
        self.documents: dict[str, Any] = {}
        supported = []
        for builder in _BUILDERS:
            document = None
            for name in builder.user_files:
                document = _read_user_swagger(app_root, name)
                if document:
                    break
            if not document:
                document = _generate(builder, schemas, settings)
            if document is not None:
                for alias in builder.aliases:
                    self.documents[alias] = document
                supported.append(builder.version)
        self.supported_versions = sorted(supported)

    def get(self, version: str) -> Any:
        supported = ", ".join(self.supported_versions)
        if version not in VALID_VERSIONS:
            raise SwaggerNotServed(f"Swagger version [{version}] is not valid. Supported versions: [{supported}].")
        document = self.documents.get(version)
        if not document:
            raise SwaggerNotServed(
                f"Swagger version [{version}] is not supported for the scoring script. Supported swagger versions: [{supported}]."
            )
        return document


def run_schemas(run: Callable[..., Any]) -> RunSchemas:
    """Ask inference-schema about run() (the library the decorators come from; without it nothing is decorated)."""
    try:
        from inference_schema.schema_util import (  # type: ignore[import-untyped]
            get_input_schema,
            get_output_schema,
            get_supported_versions,
            is_schema_decorated,
        )
    except ImportError:
        return RunSchemas(False, list(ALL_SCHEMA_VERSIONS), None, None)
    decorated = bool(is_schema_decorated(run))
    versions = list(get_supported_versions(run))
    if not decorated:
        return RunSchemas(False, versions, None, None)
    return RunSchemas(True, versions, get_input_schema(run), get_output_schema(run))
