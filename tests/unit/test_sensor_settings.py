"""The sensor stand-in in process: its settings (named and parsed as Microsoft's) and its readings."""

from __future__ import annotations

import pytest

from sensor.readings import Simulation
from sensor.settings import SensorSettings, load_settings, parse_delay


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:05", 5.0),
        ("00:01", 60.0),
        ("1.02:03:04.5", 93784.5),
        ("00:00:00.0100000", 0.01),
        ("0.01", 0.01),
        ("5", 5.0),
        ("0", 0.0),
    ],
)
def test_message_delay_takes_timespans_and_seconds(text: str, seconds: float) -> None:
    assert parse_delay(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "-1", "00:60:00", "24:00:00", "nan", "1:2:3:4"])
def test_message_delay_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_delay(text)


def test_settings_default_to_microsofts() -> None:
    assert load_settings({}) == SensorSettings(message_count=500, message_delay=5.0, send_data=True)
    s = load_settings({"MessageCount": "-1", "MessageDelay": "00:00:00.5", "SendData": "False", "SENSOR_SEED": "3"})
    assert (s.message_count, s.message_delay, s.send_data, s.seed) == (-1, 0.5, False, 3)


def test_readings_ramp_like_microsofts_then_stay_up_until_reset() -> None:
    sim = Simulation(SensorSettings(seed=5))
    temps, readings = [], []
    for _ in range(600):
        sim.step()
        readings.append(sim.reading())
        temps.append(readings[-1]["machine"]["temperature"])
    assert 20.75 <= temps[0] <= 22.25
    top = next(i for i, t in enumerate(temps) if t > 100.0)
    assert 100 <= top <= 250  # +0.5 on average per reading from 21
    assert min(temps[top:]) > 99.5  # Microsoft's wanders above the maximum, it does not start over by itself
    for r in readings:
        assert r["machine"]["pressure"] == pytest.approx(1.0 + (r["machine"]["temperature"] - 21.0) * 9.0 / 79.0)
        assert 20.5 <= r["ambient"]["temperature"] < 21.5
    assert {r["ambient"]["humidity"] for r in readings} == {24, 25, 26}
    sim.step(reset=True)
    assert 20.75 <= sim.temperature <= 22.25
    again = Simulation(SensorSettings(seed=5))
    again.step()
    assert again.reading()["machine"] == readings[0]["machine"]  # a seed repeats the values


# --- the module over MQTT ---------------------------------------------------------------------------
