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
from collections.abc import Mapping
from dataclasses import dataclass

from edgekit.logs import LEVELS
from edgekit.typed_settings import bound_problems, fields_of, setting, values_from_env

TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?")


class SettingsError(ValueError):
    """A setting is invalid; the message names each bad one on one line."""


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


@dataclass(frozen=True)
class SensorSettings:
    message_count: int = setting(500, env="MessageCount", help="messages to send; negative: unlimited; 0: none")
    message_delay: float = setting(5.0, env="MessageDelay", parse_env=parse_delay, help="interval: a TimeSpan or seconds")
    send_data: bool = setting(True, env="SendData", parse_env=parse_bool, help="send readings at all")
    temp_min: float = setting(21.0, env="machineTempMin", parse_env=_finite, help="machine temperature at the start")
    temp_max: float = setting(100.0, env="machineTempMax", parse_env=_finite, help="machine temperature it climbs to")
    pressure_min: float = setting(1.0, env="machinePressureMin", parse_env=_finite, help="pressure at temp_min")
    pressure_max: float = setting(10.0, env="machinePressureMax", parse_env=_finite, help="pressure at temp_max")
    ambient_temp: float = setting(21.0, env="ambientTemp", parse_env=_finite, help="ambient temperature")
    seed: int | None = setting(None, env="SENSOR_SEED", help="repeatable values")
    log_every: int = setting(1000, env="SENSOR_LOG_EVERY", minimum=1, help="a progress line per N readings")
    log_level: str = setting("INFO", env="LOG_LEVEL", choices=LEVELS, help="log level")
    sas_token_ttl_s: int = setting(3600, env="SAS_TOKEN_TTL_S", minimum=20, help="SAS token lifetime (the SDK renews it)")


ENV: tuple[str, ...] = tuple(f.spec.env for f in fields_of(SensorSettings))


def load_settings(environ: Mapping[str, str]) -> SensorSettings:
    """Read the settings; SettingsError lists every bad one, on one line."""
    values, problems = values_from_env(SensorSettings, environ)
    settings = SensorSettings(**values)
    problems += [f"{f.spec.env}: {text}" for f, text in bound_problems(settings)]
    if settings.temp_max <= settings.temp_min:
        problems.append(f"machineTempMax ({settings.temp_max}) must be above machineTempMin ({settings.temp_min})")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings
