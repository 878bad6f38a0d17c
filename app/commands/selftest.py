"""`python -m app selftest`: what an image runs to prove it can serve: load the model (sha256,
library versions, init(), a trial row), then score a fixed set of readings through the same path as
the module and print one JSON line each. Two images that print the same lines predict the same.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from app.commands.score_file import score_file
from app.model.modeldir import library_versions, read_manifest
from app.settings import Settings

# Fixed readings spanning the sensor's range, with anomalies of both kinds, a bad message included.
READINGS: list[Any] = [
    {"machine": {"temperature": t, "pressure": p}, "ambient": {"temperature": a, "humidity": h}, "timeCreated": f"selftest-{i}"}
    for i, (t, p, a, h) in enumerate(
        [
            (21.0, 1.0, 21.0, 25),
            (35.5, 2.7, 20.6, 24),
            (50.2, 4.3, 21.4, 26),
            (64.8, 5.9, 20.9, 25),
            (79.9, 7.7, 21.2, 24),
            (99.0, 9.9, 21.0, 25),
            (60.0, 9.8, 21.0, 25),
            (40.0, 0.5, 21.0, 24),
            (45.0, 3.6, 33.5, 26),
        ]
    )
] + ["not json"]


async def selftest(settings: Settings, out: BinaryIO = sys.stdout.buffer) -> dict[str, Any]:
    manifest = read_manifest(Path(settings.model_dir))
    header = {
        "model": manifest.name,
        "modelVersion": manifest.version,
        "sha256": manifest.sha256,
        "libraries": library_versions(),
    }
    out.write(orjson.dumps(header) + b"\n")
    lines = b"\n".join(r.encode() if isinstance(r, str) else orjson.dumps(r) for r in READINGS) + b"\n"
    return await score_file(settings, io.BytesIO(lines), out)
