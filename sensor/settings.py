"""Settings from the environment, named and defaulted as Microsoft's SimulatedTemperatureSensor has them.

MessageCount: how many messages (default 500; negative: unlimited; 0: none). MessageDelay: the
interval, a .NET TimeSpan as Microsoft's takes it ("00:00:05", "1.02:00:00") or plain seconds
("0.01"; Microsoft's would read a bare "5" as 5 days). SendData: true/false (ours: Microsoft's reads
it only from the twin). machineTempMin/Max, machinePressureMin/Max, ambientTemp: the simulation's
range. Ours: SENSOR_SEED (repeatable values), SENSOR_LOG_EVERY (a progress line per N readings),
LOG_LEVEL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting is invalid; the message names each bad one on one line."""


@dataclass(frozen=True)
class SensorSettings:
    message_count: int = 500
    message_delay: float = 5.0
    send_data: bool = True
    temp_min: float = 21.0
    temp_max: float = 100.0
    pressure_min: float = 1.0
    pressure_max: float = 10.0
    ambient_temp: float = 21.0
    seed: int | None = None
    log_every: int = 1000
    log_level: str = "INFO"


def parse_delay(text: str) -> float:
    """Seconds from a .NET TimeSpan "[d.]hh:mm[:ss[.fffffff]]" or from plain seconds."""
    match = TIMESPAN.fullmatch(text.strip())
    if match:
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups()[:4])
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ValueError("hours, minutes or seconds out of range")
        return days * 86400 + hours * 3600 + minutes * 60 + seconds + float(f"0.{match[5] or 0}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a TimeSpan like 00:00:05 or seconds like 0.5") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be 0 seconds or more")
    return value


def parse_bool(text: str) -> bool:
    """true or false, any case (as .NET's bool.Parse)."""
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("expected true or false")
    return lowered == "true"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _level(text: str) -> str:
    if text.strip().upper() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return text.strip().upper()


# env var -> (field, parser)
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "MessageCount": ("message_count", int),
    "MessageDelay": ("message_delay", parse_delay),
    "SendData": ("send_data", parse_bool),
    "machineTempMin": ("temp_min", _finite),
    "machineTempMax": ("temp_max", _finite),
    "machinePressureMin": ("pressure_min", _finite),
    "machinePressureMax": ("pressure_max", _finite),
    "ambientTemp": ("ambient_temp", _finite),
    "SENSOR_SEED": ("seed", int),
    "SENSOR_LOG_EVERY": ("log_every", int),
    "LOG_LEVEL": ("log_level", _level),
}


def load_settings(environ: Mapping[str, str]) -> SensorSettings:
    """Read the settings; SettingsError lists every bad one."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, (field, parse) in ENV.items():
        raw = environ.get(name, "")
        if raw.strip():
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {str(exc).splitlines()[0]}")
    settings = SensorSettings(**values)
    if settings.temp_max <= settings.temp_min:
        problems.append(f"machineTempMax ({settings.temp_max}) must be above machineTempMin ({settings.temp_min})")
    if settings.log_every < 1:
        problems.append(f"SENSOR_LOG_EVERY={settings.log_every}: must be at least 1")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings
