"""The readings, computed as Microsoft's SimulatedTemperatureSensor computes them.

Machine temperature starts at machineTempMin and climbs by -0.25..+1.25 per reading (+0.5 on
average); above machineTempMax it wanders by -0.5..+0.5 and stays up there until a reset (Microsoft's
does not start over by itself). Pressure maps it linearly onto machinePressureMin..Max; ambient is
ambientTemp ±0.5; humidity 24..26. The walk advances on every tick, also while SendData is false.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from sensor.settings import SensorSettings


def time_created(now: datetime | None = None) -> str:
    """UTC with seven fractional digits, as .NET writes a DateTime ("2026-01-01T00:00:00.1234560Z")."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class Simulation:
    """One sensor's readings; with a seed, the same numbers every run."""

    def __init__(self, settings: SensorSettings) -> None:
        self._s = settings
        self._rng = random.Random(settings.seed)
        self._slope = (settings.pressure_max - settings.pressure_min) / (settings.temp_max - settings.temp_min)
        self.temperature = settings.temp_min

    def step(self, reset: bool = False) -> None:
        """Advance the machine temperature by one tick; `reset` starts the ramp over first."""
        if reset:
            self.temperature = self._s.temp_min
        if self.temperature > self._s.temp_max:
            self.temperature += self._rng.random() - 0.5
        else:
            self.temperature += -0.25 + self._rng.random() * 1.5

    def reading(self) -> dict[str, Any]:
        """The message body for the current tick."""
        s, temp = self._s, self.temperature
        return {
            "machine": {"temperature": temp, "pressure": s.pressure_min + (temp - s.temp_min) * self._slope},
            "ambient": {"temperature": s.ambient_temp + self._rng.random() - 0.5, "humidity": self._rng.randint(24, 26)},
            "timeCreated": time_created(),
        }


def encode(reading: dict[str, Any]) -> bytes:
    """Compact JSON, as Newtonsoft writes it."""
    return json.dumps(reading, separators=(",", ":")).encode("utf-8")
