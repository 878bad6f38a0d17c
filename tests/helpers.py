"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any

import orjson


def reading(temp: float = 40.0, pressure: float | None = None, ambient: float = 21.0, humidity: int = 25, **extra: Any) -> dict:
    if pressure is None:
        pressure = 1.0 + (temp - 21.0) * 9.0 / 79.0  # on the normal line
    return {
        "machine": {"temperature": temp, "pressure": pressure},
        "ambient": {"temperature": ambient, "humidity": humidity},
        "timeCreated": "2026-01-01T00:00:00.0000000Z",
        **extra,
    }


def body(obj: Any) -> bytes:
    return orjson.dumps(obj)


def row(r: dict) -> list[float]:
    return [r["machine"]["temperature"], r["machine"]["pressure"], r["ambient"]["temperature"], float(r["ambient"]["humidity"])]
