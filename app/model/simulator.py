"""A sensor shaped like Microsoft's SimulatedTemperatureSensor, with anomalies to find.

Normal behaviour: machine temperature ramps from ~21 to ~100 °C and starts over; pressure follows
it linearly from ~1 to ~10; ambient ~21 °C; humidity 24-26 %. An anomaly is a machine whose
pressure does not match its temperature (a leak or a blockage), or an overheated room. The same
rules label the training data for the default model, so the simulator's anomalies are what the
default model learned to see.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import numpy as np

FEATURES = ["machine.temperature", "machine.pressure", "ambient.temperature", "ambient.humidity"]
LABELS = ["normal", "anomaly"]
T_MIN, T_MAX = 21.0, 100.0


def expected_pressure(temperature: float | np.ndarray) -> float | np.ndarray:
    return 1.0 + (temperature - T_MIN) * 9.0 / (T_MAX - T_MIN)


def is_anomaly(temperature, pressure, ambient_temperature):
    """The ground truth: pressure off its line by more than 1.5, or the room above 30 °C."""
    return (abs(pressure - expected_pressure(temperature)) > 1.5) | (ambient_temperature > 30.0)


def training_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled rows, about a fifth of them anomalies, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    temp = rng.uniform(T_MIN - 1, T_MAX + 1, n)
    pressure = expected_pressure(temp) + rng.normal(0, 0.3, n)
    ambient = rng.normal(21.0, 0.8, n)
    humidity = rng.integers(24, 27, n).astype(float)
    faulty = rng.random(n) < 0.15
    pressure[faulty] += rng.choice([-1, 1], faulty.sum()) * rng.uniform(2.0, 4.0, faulty.sum())
    hot = rng.random(n) < 0.05
    ambient[hot] = rng.uniform(27.0, 40.0, hot.sum())
    X = np.column_stack([temp, pressure, ambient, humidity])
    y = is_anomaly(temp, pressure, ambient).astype(int)
    return X, y


class SensorSimulator:
    """Produces SimulatedTemperatureSensor-shaped readings; `anomaly_rate` of them are faulty."""

    def __init__(self, seed: int = 1, anomaly_rate: float = 0.05, ramp_steps: int = 200) -> None:
        self._rng = random.Random(seed)
        self._anomaly_rate = anomaly_rate
        self._ramp_steps = ramp_steps
        self._step = 0

    def reading(self) -> dict[str, Any]:
        rng = self._rng
        fraction = (self._step % self._ramp_steps) / self._ramp_steps
        self._step += 1
        temp = T_MIN + (T_MAX - T_MIN) * fraction + rng.uniform(-0.5, 0.5)
        pressure = float(expected_pressure(temp)) + rng.uniform(-0.3, 0.3)
        ambient = 21.0 + rng.uniform(-0.5, 0.5)
        if rng.random() < self._anomaly_rate:
            pressure += rng.choice((-1, 1)) * rng.uniform(2.0, 4.0)
        now = datetime.now(UTC)
        return {
            "machine": {"temperature": round(temp, 6), "pressure": round(pressure, 6)},
            "ambient": {"temperature": round(ambient, 6), "humidity": rng.randint(24, 26)},
            # Seven fractional digits, as the real sensor writes them.
            "timeCreated": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        }
