"""Small builders shared by the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
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


def unsettled_ids(journal_dir: str | Path) -> list[str | None]:
    """The message ids a stopped module's intake journal holds without an outcome, in order: what its next start
    scores first. Read through the module's own journal code (opening adds an empty segment, nothing else)."""
    from app.core.journal import IntakeJournal
    from app.edgehub.intake import input_from_wire

    journal = IntakeJournal(journal_dir, max_bytes=1 << 40)
    journal.decode_wire = input_from_wire
    try:
        _, first = journal.open()
        return [msg.message_id for msg in journal.read_inputs(first, 1 << 30)]
    finally:
        journal.close()


def load_images_script(name: str) -> ModuleType:
    """images/<name>.py (a script, not a package module) imported for its tests."""
    path = Path(__file__).resolve().parents[1] / "images" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"images_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
