"""Desired properties of the module twin -> settings in effect, and the settings as reported.

Precedence: built-in defaults < environment (the deployment's `env`) < the twin's desired
properties (the manifest's `properties.desired`, then every later patch). A key removed from the
desired properties (patched to null) falls back to the environment's value.

A desired document is validated as a whole: every problem is collected, and an invalid document
changes nothing. Keys starting with `$` are twin metadata. Settings that cannot change at run time
(ports, queue size...) are refused by name, with where to set them instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.settings.model import FIELDS, ConfigError, Settings, problems_of
from app.settings.model_spec import KEY as MODEL_KEY
from app.settings.model_spec import ModelSpec, spec_problems
from edgekit.typed_settings import parse_json, replaced

LIVE = {f.twin: f for f in FIELDS if f.spec.live}  # desired property -> its field
_RESTART_ONLY = {f.twin: f for f in FIELDS if not f.spec.live}


def desired_problems(base: Settings, desired: Mapping[str, Any]) -> tuple[Settings, list[str]]:
    """`base` with the desired properties applied, and every problem of the document (desired names)."""
    changes: dict[str, Any] = {}
    problems: list[str] = []
    unknown: list[str] = []
    for key, value in desired.items():
        if key.startswith("$"):
            continue
        if key == MODEL_KEY:  # the bundle to roll out: not a setting, validated with the document
            problems += spec_problems(value, base.model_download_max_bytes)[1]
            continue
        f = LIVE.get(key)
        if f is None:
            shown = _shown(key)
            if key in _RESTART_ONLY:
                problems.append(f"{shown}: cannot change while running; set {_RESTART_ONLY[key].spec.env} in the module's env")
            else:
                unknown.append(shown)
            continue
        if value is None:  # removed: the environment's value holds
            continue
        try:
            changes[f.name] = parse_json(f, value)
        except ValueError as exc:
            problems.append(f"{key}={_shown(value, repr)}: {exc}")
    live = ", ".join([*LIVE, MODEL_KEY])
    if len(unknown) <= UNKNOWN_LISTED:
        problems += [f"{key}: not a setting; live settings are {live}" for key in unknown]
    else:  # one line, not thousands: the refusal goes into the reported `lastError`
        problems.append(
            f"{len(unknown)} keys are not settings ({', '.join(unknown[:UNKNOWN_LISTED])}, ...); live settings are {live}"
        )
    settings = replaced(base, changes)
    problems += [f"{f.twin}: {text}" for f, text in problems_of(settings)]  # a twin user knows the desired names
    return settings, problems


UNKNOWN_LISTED = 3
SHOWN_MAX_CHARS = 80  # of a refused key or value, in a refusal (it goes into the reported `lastError`)


def _shown(value: Any, form: Any = str) -> str:
    text = form(value)
    return text if len(text) <= SHOWN_MAX_CHARS else text[:SHOWN_MAX_CHARS] + "…"


def settings_from_desired(base: Settings, desired: Mapping[str, Any]) -> Settings:
    """`base` (the environment's settings) with the desired properties applied; ConfigError lists every problem."""
    settings, problems = desired_problems(base, desired)
    if problems:
        raise ConfigError("desired properties refused", problems)
    return settings


def desired_model(desired: Mapping[str, Any]) -> ModelSpec | None:
    """The desired `model` of a document that validated (settings_from_desired); None when it names none."""
    return spec_problems(desired.get(MODEL_KEY))[0]


def reported_settings(settings: Settings) -> dict[str, Any]:
    """The live settings in effect, under their desired-property names."""
    out: dict[str, Any] = {}
    for key, f in LIVE.items():
        value = getattr(settings, f.name)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
