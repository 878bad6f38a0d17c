"""The module's settings: ONE typed model, each field declared once with its environment variable,
its desired-property name, whether it can change while running, its bounds and its help text.

From it come: reading the environment (`load_settings`), the twin's desired properties
(`app.settings.twin`), the README's two settings tables (`python -m app settings --markdown`),
and `make manifest`'s check of the inference module's desired properties. Precedence: defaults <
environment (the deployment's `env`) < the twin's desired properties.

Invalid values are collected and reported together, so a user fixes a deployment in one round.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.limits import MESSAGE_LIMIT_BYTES, METERING_BLOCK_BYTES
from edgekit.logs import LEVELS
from edgekit.typed_settings import Field, SettingsError, bound_problems, fields_of, replaced, setting, values_from_env

REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(SettingsError):
    """One or more settings are invalid; the message lists each with the fix."""


@dataclass(frozen=True)
class Settings:
    # -- batching and outputs: can change while running (desired properties) --
    max_batch_size: int = setting(256, env="MAX_BATCH_SIZE", live=True, minimum=1, cap=65536, help="Most rows in one run() call.")
    max_wait_ms: float = setting(
        0.0,
        env="MAX_WAIT_MS",
        live=True,
        minimum=0,
        cap=60_000,
        help="Wait up to this long for a fuller batch; 0 scores at once.",
    )
    aggregate: bool = setting(False, env="AGGREGATE", live=True, help="Pack many predictions into one output message.")
    aggregate_max_bytes: int = setting(
        METERING_BLOCK_BYTES,
        env="AGGREGATE_MAX_BYTES",
        live=True,
        minimum=512,
        maximum=MESSAGE_LIMIT_BYTES,
        help="Size budget of one aggregated message (body + properties, 256 of it kept for system properties).",
    )
    aggregate_max_delay_ms: float = setting(
        1000.0, env="AGGREGATE_MAX_DELAY_MS", live=True, above=0, cap=60_000, help="Longest a partly filled aggregate waits."
    )
    threshold: float | None = setting(
        None,
        env="THRESHOLD",
        live=True,
        above=0,
        below=1,
        help="Probability of the positive (last) class from which a binary model says that class.",
        default_text="the script's argmax",
    )
    features: tuple[str, ...] = setting(
        (),
        env="FEATURES",
        live=True,
        max_items=1024,
        max_length=256,
        help="Comma-separated dotted paths into a reading.",
        default_text="the manifest's features",
        twin_text="list of dotted paths (or one comma-separated string)",
    )
    passthrough_fields: tuple[str, ...] = setting(
        ("timeCreated",),
        env="PASSTHROUGH_FIELDS",
        live=True,
        max_items=64,
        max_length=256,
        help="Top-level reading fields copied into predictions.",
        twin_text="list of field names",
    )
    input_names: tuple[str, ...] = setting(
        ("amlInput",),
        env="INPUT_NAMES",
        live=True,
        max_items=64,
        max_length=256,
        help="edgeHub inputs to score, comma-separated.",
        twin_text="list of input names",
    )
    output_name: str = setting("amlOutput", env="OUTPUT_NAME", live=True, max_length=256, help="Output for predictions.")
    error_output_name: str = setting(
        "errorOutput", env="ERROR_OUTPUT_NAME", live=True, max_length=256, help="Output for error records."
    )
    error_input_max_bytes: int = setting(
        1024, env="ERROR_INPUT_MAX_BYTES", live=True, minimum=0, cap=65536, help="Bytes of the input copied into an error record."
    )
    log_level: str = setting("INFO", env="LOG_LEVEL", live=True, choices=LEVELS, help="DEBUG, INFO, WARNING or ERROR.")
    # -- the twin budget (README "Twin budget"): N modules make at most N * (1/REPORT_JITTER_S + 1/REPORT_INTERVAL_S)
    # reported-property updates a second; the defaults keep 10,000 modules at 44/s, under an S1 hub's 50/s --
    report_interval_s: float = setting(
        900.0,
        env="REPORT_INTERVAL_S",
        live=True,
        minimum=1,
        cap=86_400,
        help="Counters go into reported properties at most this often, when they moved (always fresh on /metrics and getStatus).",
    )
    report_jitter_s: float = setting(
        300.0,
        env="REPORT_JITTER_S",
        live=True,
        minimum=0,
        cap=86_400,
        help="A state change (status, model, settings, errors) is reported at a random moment within this long, and "
        "state reports are at least this far apart, so that a fleet's reports spread out; 0 for a single device.",
    )
    model_dir: str = setting(
        "",
        env="MODEL_DIR",
        live=True,
        max_length=4096,
        help="Model directory (model.pkl + model.json).",
        default_text="$AZUREML_MODEL_DIR, else ./model",
        twin_text="path (a volume mounted into the container)",
    )
    score_script: str = setting(
        "",
        env="SCORE_SCRIPT",
        live=True,
        max_length=4096,
        help="Path to your own score.py.",
        default_text="$AZUREML_ENTRY_SCRIPT, else the built-in app/model/score.py",
        twin_text="path (a volume mounted into the container)",
    )
    script_input: str = setting(
        "auto",
        env="SCRIPT_INPUT",
        live=True,
        choices=("auto", "rows", "message"),
        help="How an Azure ML script meets edgeHub messages: rows (one run() per micro-batch on the decoded feature "
        "rows), message (each body to run() unchanged, its answer the output, as the Azure ML IoT Edge tutorial did), "
        "auto (rows when the model's manifest names its features, else message). HTTP /score always answers as Azure "
        "ML's server does.",
    )
    # -- fixed for the life of the process (environment only) --
    queue_size: int = setting(
        2048, env="QUEUE_SIZE", minimum=1, cap=1_000_000, help="Messages waiting for the model before intake pauses."
    )
    max_message_bytes: int = setting(
        MESSAGE_LIMIT_BYTES,
        env="MAX_MESSAGE_BYTES",
        minimum=1,
        maximum=MESSAGE_LIMIT_BYTES,
        limit_note=" (IoT Hub's limit)",
        help="Larger input bodies are rejected.",
    )
    max_sends_in_flight: int = setting(
        32, env="MAX_SENDS_IN_FLIGHT", minimum=1, cap=1024, help="Output messages being sent at once."
    )
    # the module serves its edge network and, with serve, the LAN
    http_host: str = setting("0.0.0.0", env="HTTP_HOST", help="Address of the HTTP endpoint.")
    http_port: int = setting(
        5001,
        env="HTTP_PORT",
        minimum=0,
        maximum=65535,
        help="HTTP endpoint port (score, health, metrics); 0 turns it off in the module.",
    )
    tcp_nodelay: bool = setting(True, env="TCP_NODELAY", help="TCP_NODELAY on the MQTT socket to edgeHub (saves ~40 ms per hop).")
    sas_token_ttl_s: int = setting(
        3600,
        env="SAS_TOKEN_TTL_S",
        minimum=20,
        cap=86_400,
        help="Lifetime of the SAS token the SDK signs; it reconnects with a new one before expiry (the SDK's default).",
    )
    shutdown_timeout_s: float = setting(
        8.0, env="SHUTDOWN_TIMEOUT_S", above=0, cap=3600, help="Time to finish work in hand on SIGTERM."
    )
    allow_version_mismatch: bool = setting(
        False, env="ALLOW_VERSION_MISMATCH", help="Load a model trained with other library versions."
    )
    onnx_threads: int = setting(
        1,
        env="ONNX_THREADS",
        minimum=1,
        cap=64,
        help="Intra-op threads of ONNX Runtime for a model registered with --onnx; 1 leaves the other cores to the "
        "transport (more only pays for batches of hundreds of rows).",
    )
    model_roots: tuple[str, ...] = setting(
        ("/models",),
        env="MODEL_ROOTS",
        max_items=64,
        help="Directories under which the twin and reloadModel may point modelDir and scoreScript (they run code); "
        "the deployment's own MODEL_DIR and SCORE_SCRIPT are always allowed.",
        default_text="/models",
    )
    # -- reliability: the durable intake, back-pressure in bytes, the watchdog --
    intake_journal: str = setting(
        "disk",
        env="INTAKE_JOURNAL",
        choices=("disk", "off"),
        help="disk: every input is journaled on arrival and replayed after a crash or restart; off: memory only.",
    )
    journal_dir: str = setting(
        "/var/lib/edge-inference/journal",
        env="JOURNAL_DIR",
        max_length=4096,
        help="Directory of the intake journal (a volume, so that it outlives the container).",
    )
    journal_max_bytes: int = setting(
        256 * 1024 * 1024,
        env="JOURNAL_MAX_BYTES",
        minimum=1024 * 1024,
        help="Disk budget of the journal; past it, new inputs get an `overloaded` error record.",
    )
    replay_limit: int = setting(
        3,
        env="REPLAY_LIMIT",
        minimum=2,
        maximum=1000,
        help="Times the module may die (a crash or hang in run(), out of memory, a kill) with an input in the model "
        "before that input is set aside with a `poison_input` error record, so that the inputs after it flow. The "
        "first death counts for its whole batch, later ones for the suspect alone: 2 is the least that spares its batch-mates.",
    )
    inbox_max_bytes: int = setting(
        32 * 1024 * 1024,
        env="INBOX_MAX_BYTES",
        minimum=256 * 1024,
        help="Memory budget of the inputs waiting for the model (edgeHub and HTTP); past it, intake waits or sheds.",
    )
    watchdog_s: float = setting(
        120.0,
        env="WATCHDOG_S",
        minimum=0,
        cap=86_400,
        help="Exit (so that edgeAgent restarts the module) when edgeHub has been unreachable or deaf this long; 0: off.",
    )
    # -- model rollout: bundles named by the twin's desired `model`, downloaded into a store --
    model_store: str = setting(
        "/var/lib/edge-inference/models",
        env="MODEL_STORE",
        max_length=4096,
        help="Directory (a volume) where bundles named by the desired property `model` are downloaded, unpacked and "
        "kept; the module starts on its last good version without downloading.",
    )
    model_store_keep: int = setting(
        3,
        env="MODEL_STORE_KEEP",
        minimum=2,
        maximum=100,
        help="Model versions the store keeps (always the one in use and the one before it).",
    )
    model_download_max_bytes: int = setting(
        512 * 1024 * 1024,
        env="MODEL_DOWNLOAD_MAX_BYTES",
        minimum=1024,
        help="Largest bundle the module downloads (and the most its files may unpack to, times 4).",
    )
    model_download_timeout_s: float = setting(
        900.0, env="MODEL_DOWNLOAD_TIMEOUT_S", above=0, cap=86_400, help="Time one download attempt may take."
    )
    model_download_attempts: int = setting(
        5,
        env="MODEL_DOWNLOAD_ATTEMPTS",
        minimum=1,
        maximum=100,
        help="Tries of a download (resumed where the last stopped, jittered back-off in between) before it is failed.",
    )
    model_probation_messages: int = setting(
        200,
        env="MODEL_PROBATION_MESSAGES",
        minimum=1,
        cap=10_000_000,
        help="A newly rolled-out model is on probation for this many outcomes (or MODEL_PROBATION_S, whichever ends first).",
    )
    model_probation_s: float = setting(
        300.0, env="MODEL_PROBATION_S", above=0, cap=86_400, help="Longest probation of a newly rolled-out model."
    )
    model_probation_max_failure_rate: float = setting(
        0.05,
        env="MODEL_PROBATION_MAX_FAILURE_RATE",
        minimum=0,
        below=1,
        help="Share of the probation's outcomes that may be the new model's failures (run() failures, output errors, "
        "missing features); above it, the previous model is swapped back.",
    )
    # -- HTTP hardening --
    http_token: str = setting(
        "",
        env="HTTP_TOKEN",
        secret=True,
        max_length=4096,
        help="Bearer token every HTTP request but GET /live must carry; empty: none.",
        default_text="none",
    )
    http_token_file: str = setting(
        "",
        env="HTTP_TOKEN_FILE",
        max_length=4096,
        help="A file (a mounted secret) holding the bearer token, instead of HTTP_TOKEN.",
        default_text="none",
    )
    http_max_connections: int = setting(
        64,
        env="HTTP_MAX_CONNECTIONS",
        minimum=1,
        cap=65536,
        help="Open HTTP connections at most; a new one beyond takes the place of the stalest idle or slow one, else gets 503.",
    )
    http_read_timeout_s: float = setting(
        10.0, env="HTTP_READ_TIMEOUT_S", above=0, cap=3600, help="Time a client has to send its request headers and body."
    )

    def shown(self) -> dict[str, Any]:
        """Every setting under its env name, secrets masked: for people and logs."""
        return {f.spec.env: ("***" if f.spec.secret and getattr(self, f.name) else getattr(self, f.name)) for f in FIELDS}

    def __repr__(self) -> str:  # a secret must not reach a log through a repr
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.shown().items()) + ")"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, validated like one read from the environment."""
        return checked(replaced(self, changes))


FIELDS: tuple[Field, ...] = tuple(fields_of(Settings))
FIELD = {f.name: f for f in FIELDS}
ENV_NAMES: tuple[str, ...] = tuple(f.spec.env for f in FIELDS)  # every variable the module reads


def problems_of(s: Settings) -> list[tuple[Field, str]]:
    """Every problem of a set of settings: bounds, then what involves more than one value."""
    problems = bound_problems(s)

    def need(ok: bool, name: str, text: str) -> None:
        if not ok:
            problems.append((FIELD[name], text))

    need(bool(s.input_names), "input_names", "name at least one input")
    need(bool(s.output_name) and bool(s.error_output_name), "output_name", "output names must not be empty")
    need(s.output_name != s.error_output_name, "error_output_name", "must differ from OUTPUT_NAME")
    for path in s.features:
        need(all(path.split(".")), "features", f"{path!r} has an empty part")
    return problems


def validate(s: Settings) -> list[str]:
    """Every problem, one line each naming the environment variable."""
    return [f"{f.spec.env}: {text}" for f, text in problems_of(s)]


def checked(settings: Settings) -> Settings:
    problems = validate(settings)
    if problems:
        raise ConfigError("invalid settings", problems)
    return settings


def _azureml_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """Azure ML's server reads AZUREML_MODEL_DIR and AZUREML_ENTRY_SCRIPT: a deployment written for it runs
    unchanged (MODEL_DIR and SCORE_SCRIPT win when both are set)."""
    return {
        "model_dir": environ.get("AZUREML_MODEL_DIR") or str(REPO_ROOT / "model"),
        "score_script": environ.get("AZUREML_ENTRY_SCRIPT") or "",
    }


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment; raise ConfigError naming every bad value."""
    environ = os.environ if environ is None else environ
    values, problems = values_from_env(Settings, environ)
    settings = Settings(**(_azureml_defaults(environ) | values))  # what did not parse keeps its default
    problems += validate(settings)
    if problems:
        raise ConfigError("invalid settings", problems)
    return settings
