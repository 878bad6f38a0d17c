"""Settings from environment variables: defaults, parsing and validation in one place.

Every setting is listed in SETTINGS (the README's configuration table mirrors it). Invalid values
are collected and reported together, so a user fixes a deployment in one round.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# IoT Hub refuses messages over 256 KB; it meters in 4 KB blocks.
MESSAGE_LIMIT_BYTES = 256 * 1024
METERING_BLOCK_BYTES = 4 * 1024

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists each with the fix."""


def _default_model_dir() -> str:
    # Azure ML sets AZUREML_MODEL_DIR for the scoring script; honour it the same way.
    return os.environ.get("AZUREML_MODEL_DIR") or str(REPO_ROOT / "model")


@dataclass(frozen=True)
class Settings:
    model_dir: str = ""
    score_script: str = ""
    features: tuple[str, ...] = ()
    passthrough_fields: tuple[str, ...] = ("timeCreated",)
    input_names: tuple[str, ...] = ("amlInput",)
    output_name: str = "amlOutput"
    error_output_name: str = "errorOutput"
    max_batch_size: int = 256
    max_wait_ms: float = 0.0
    queue_size: int = 2048
    max_message_bytes: int = MESSAGE_LIMIT_BYTES
    aggregate: bool = False
    aggregate_max_bytes: int = METERING_BLOCK_BYTES
    aggregate_max_delay_ms: float = 1000.0
    threshold: float | None = None  # decision threshold of a binary probabilistic model; None: the script's own rule
    error_input_max_bytes: int = 1024
    max_sends_in_flight: int = 32
    shutdown_timeout_s: float = 8.0
    http_host: str = "0.0.0.0"  # the module serves its edge network and, with serve, the LAN
    http_port: int = 5001
    tcp_nodelay: bool = True
    allow_version_mismatch: bool = False
    log_level: str = "INFO"
    report_interval_s: float = 30.0

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, validated like one read from the environment."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return _checked(Settings(**values))


def _names(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _optional_float(value: str) -> float | None:
    return None if value.strip().lower() in ("", "none", "null") else float(value)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


# env var -> (field, parser, help text for the README table)
SETTINGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "MODEL_DIR": ("model_dir", str, "Model directory (model.pkl + model.json). Default: $AZUREML_MODEL_DIR, else ./model"),
    "SCORE_SCRIPT": ("score_script", str, "Path to your own score.py. Default: the built-in app/score.py"),
    "FEATURES": ("features", _names, "Comma-separated dotted paths into a reading. Default: the manifest's features"),
    "PASSTHROUGH_FIELDS": (
        "passthrough_fields",
        _names,
        "Top-level reading fields copied into predictions. Default: timeCreated",
    ),
    "INPUT_NAMES": ("input_names", _names, "edgeHub inputs to score, comma-separated. Default: amlInput"),
    "OUTPUT_NAME": ("output_name", str, "Output for predictions. Default: amlOutput"),
    "ERROR_OUTPUT_NAME": ("error_output_name", str, "Output for error records. Default: errorOutput"),
    "MAX_BATCH_SIZE": ("max_batch_size", int, "Most rows in one run() call. Default: 256"),
    "MAX_WAIT_MS": ("max_wait_ms", float, "Wait up to this long for a fuller batch; 0 scores at once. Default: 0"),
    "QUEUE_SIZE": ("queue_size", int, "Messages waiting for the model before intake pauses. Default: 2048"),
    "MAX_MESSAGE_BYTES": ("max_message_bytes", int, "Larger input bodies are rejected. Default: 262144"),
    "AGGREGATE": ("aggregate", _bool, "Pack many predictions into one output message. Default: false"),
    "AGGREGATE_MAX_BYTES": (
        "aggregate_max_bytes",
        int,
        "Size budget of one aggregated message (body + properties, 256 of it kept for system properties). Default: 4096",
    ),
    "AGGREGATE_MAX_DELAY_MS": ("aggregate_max_delay_ms", float, "Longest a partly filled aggregate waits. Default: 1000"),
    "THRESHOLD": (
        "threshold",
        _optional_float,
        "Probability of the positive (last) class from which a binary model says that class. Default: the script's argmax",
    ),
    "ERROR_INPUT_MAX_BYTES": ("error_input_max_bytes", int, "Bytes of the input copied into an error record. Default: 1024"),
    "MAX_SENDS_IN_FLIGHT": ("max_sends_in_flight", int, "Output messages being sent at once. Default: 32"),
    "HTTP_HOST": ("http_host", str, "Address of the HTTP endpoint. Default: 0.0.0.0"),
    "HTTP_PORT": ("http_port", int, "HTTP endpoint port (score, health, metrics); 0 turns it off in the module. Default: 5001"),
    "TCP_NODELAY": ("tcp_nodelay", _bool, "TCP_NODELAY on the MQTT socket to edgeHub (saves ~40 ms per hop). Default: true"),
    "SHUTDOWN_TIMEOUT_S": ("shutdown_timeout_s", float, "Time to finish work in hand on SIGTERM. Default: 8"),
    "ALLOW_VERSION_MISMATCH": (
        "allow_version_mismatch",
        _bool,
        "Load a model trained with other library versions. Default: false",
    ),
    "LOG_LEVEL": ("log_level", str, "DEBUG, INFO, WARNING or ERROR. Default: INFO"),
    "REPORT_INTERVAL_S": ("report_interval_s", float, "Most often counters are reported to the twin. Default: 30"),
}


def validate(s: Settings) -> list[str]:
    """Every problem of a set of settings, one line each naming the environment variable."""
    problems: list[str] = []

    def need(ok: bool, name: str, text: str) -> None:
        if not ok:
            problems.append(f"{name}: {text}")

    need(s.max_batch_size >= 1, "MAX_BATCH_SIZE", f"{s.max_batch_size} must be at least 1")
    need(s.max_wait_ms >= 0, "MAX_WAIT_MS", f"{s.max_wait_ms} must be 0 or more")
    need(s.queue_size >= 1, "QUEUE_SIZE", f"{s.queue_size} must be at least 1")
    need(
        1 <= s.max_message_bytes <= MESSAGE_LIMIT_BYTES,
        "MAX_MESSAGE_BYTES",
        f"{s.max_message_bytes} must be between 1 and {MESSAGE_LIMIT_BYTES} (IoT Hub's limit)",
    )
    need(
        512 <= s.aggregate_max_bytes <= MESSAGE_LIMIT_BYTES,
        "AGGREGATE_MAX_BYTES",
        f"{s.aggregate_max_bytes} must be between 512 and {MESSAGE_LIMIT_BYTES}",
    )
    need(s.aggregate_max_delay_ms > 0, "AGGREGATE_MAX_DELAY_MS", f"{s.aggregate_max_delay_ms} must be more than 0")
    need(s.error_input_max_bytes >= 0, "ERROR_INPUT_MAX_BYTES", f"{s.error_input_max_bytes} must be 0 or more")
    need(s.max_sends_in_flight >= 1, "MAX_SENDS_IN_FLIGHT", f"{s.max_sends_in_flight} must be at least 1")
    need(0 <= s.http_port <= 65535, "HTTP_PORT", f"{s.http_port} must be between 0 and 65535")
    need(s.shutdown_timeout_s > 0, "SHUTDOWN_TIMEOUT_S", f"{s.shutdown_timeout_s} must be more than 0")
    need(bool(s.input_names), "INPUT_NAMES", "name at least one input")
    need(bool(s.output_name) and bool(s.error_output_name), "OUTPUT_NAME", "output names must not be empty")
    need(s.output_name != s.error_output_name, "ERROR_OUTPUT_NAME", "must differ from OUTPUT_NAME")
    need(
        s.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "LOG_LEVEL",
        f"{s.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR",
    )
    if s.threshold is not None:
        need(0 < s.threshold < 1, "THRESHOLD", f"{s.threshold} must be between 0 and 1 (exclusive)")
    need(s.report_interval_s >= 1, "REPORT_INTERVAL_S", f"{s.report_interval_s} must be at least 1")
    for path in s.features:
        need(all(path.split(".")), "FEATURES", f"{path!r} has an empty part")
    return problems


def _checked(settings: Settings) -> Settings:
    problems = validate(settings)
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    return settings


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment; raise ConfigError naming every bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {"model_dir": _default_model_dir()}
    problems: list[str] = []
    for name, (field, parse, _help) in SETTINGS.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            problems.append(f"{name}={raw!r}: {exc}")
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    return _checked(Settings(**values))


def configure_logging(level: str, line: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
    """stderr, one line per record; the SDK, which logs every connection step at INFO, stays at warnings unless DEBUG."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=line)
    set_log_level(level)


def set_log_level(level: str) -> None:
    """Change the level at run time (LOG_LEVEL, the twin's logLevel)."""
    level = level.upper()
    logging.getLogger().setLevel(level)
    logging.getLogger("azure.iot.device").setLevel(level if level == "DEBUG" else logging.WARNING)
