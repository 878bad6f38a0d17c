"""Desired properties of the module twin -> settings in effect, and the settings as reported.

Precedence: built-in defaults < environment (the deployment's `env`) < the twin's desired
properties (the manifest's `properties.desired`, then every later patch). A key removed from the
desired properties (patched to null) falls back to the environment's value.

A desired document is validated as a whole: every problem is collected, and an invalid document
changes nothing. Keys starting with `$` are twin metadata. Settings that cannot change at run time
(ports, queue size...) are refused by name, with where to set them instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from .config import SETTINGS, ConfigError, Settings, validate

# desired property -> environment variable (whose Settings field and checks it shares)
LIVE: dict[str, str] = {
    "maxBatchSize": "MAX_BATCH_SIZE",
    "maxWaitMs": "MAX_WAIT_MS",
    "aggregate": "AGGREGATE",
    "aggregateMaxBytes": "AGGREGATE_MAX_BYTES",
    "aggregateMaxDelayMs": "AGGREGATE_MAX_DELAY_MS",
    "threshold": "THRESHOLD",
    "features": "FEATURES",
    "passthroughFields": "PASSTHROUGH_FIELDS",
    "inputNames": "INPUT_NAMES",
    "outputName": "OUTPUT_NAME",
    "errorOutputName": "ERROR_OUTPUT_NAME",
    "errorInputMaxBytes": "ERROR_INPUT_MAX_BYTES",
    "logLevel": "LOG_LEVEL",
    "reportIntervalS": "REPORT_INTERVAL_S",
    "modelDir": "MODEL_DIR",
    "scoreScript": "SCORE_SCRIPT",
}
_DESIRED_OF_ENV = {env: key for key, env in LIVE.items()}
ENV_OF_FIELD = {field: env for env, (field, _parse, _help) in SETTINGS.items()}


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _names(value: Any) -> tuple[str, ...]:
    """A JSON list of strings, or one comma-separated string as in the environment."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(v.strip() for v in value if v.strip())


_PARSERS: dict[type | str, Callable[[Any], Any]] = {
    "int": _integer,
    "float": _number,
    "float | None": _optional_number,
    "bool": _flag,
    "str": _text,
    "tuple[str, ...]": _names,
}
_FIELD_TYPES = {name: str(annotation) for name, annotation in Settings.__annotations__.items()}


def settings_from_desired(base: Settings, desired: Mapping[str, Any]) -> Settings:
    """`base` (the environment's settings) with the desired properties applied; ConfigError lists every problem."""
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in desired.items():
        if key.startswith("$"):
            continue
        env = LIVE.get(key)
        if env is None:
            if key in _RESTART_ONLY:
                problems.append(f"{key}: cannot change while running; set {_RESTART_ONLY[key]} in the module's env")
            else:
                problems.append(f"{key}: not a setting; live settings are {', '.join(LIVE)}")
            continue
        if value is None:  # removed: the environment's value holds
            continue
        field = SETTINGS[env][0]
        try:
            changes[field] = _PARSERS[_FIELD_TYPES[field]](value)
        except ValueError as exc:
            problems.append(f"{key}={value!r}: {exc}")
    values = {f.name: getattr(base, f.name) for f in fields(base)} | changes
    for problem in validate(Settings(**values)):
        env, _, text = problem.partition(":")
        problems.append(f"{_DESIRED_OF_ENV.get(env, env)}:{text}")  # a twin user knows the desired names
    if problems:
        raise ConfigError("desired properties refused:\n  " + "\n  ".join(problems))
    return Settings(**values)


def reported_settings(settings: Settings) -> dict[str, Any]:
    """The live settings in effect, under their desired-property names."""
    out: dict[str, Any] = {}
    for key, env in LIVE.items():
        value = getattr(settings, SETTINGS[env][0])
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A twin patch applied to a document: objects merge, null removes a key."""
    merged = dict(document)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):  # into what is there, or into nothing: nulls inside remove too
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


# e.g. queueSize -> QUEUE_SIZE: named in the refusal, so a user knows where it goes instead
_RESTART_ONLY = {_camel(field): env for field, env in ENV_OF_FIELD.items() if env not in LIVE.values()}
