"""`python -m app score FILE`: offline scoring of recorded message bodies, one per line.

Writes one JSON line per input line, in input order: the prediction body or the error record.
The same decode/batch/run/encode path as the module; aggregation is off (one line per line).
"""

from __future__ import annotations

import asyncio
import sys
from itertools import islice
from typing import Any, BinaryIO

from app.core.messages import InMessage
from app.core.sinks import OrderedWriter
from app.main import open_pipeline
from app.settings import Settings

CHUNK_LINES = 1024


async def score_file(settings: Settings, source: BinaryIO, out: BinaryIO) -> dict[str, Any]:
    settings = settings.replace(aggregate=False)
    pipeline = await open_pipeline(settings, OrderedWriter(out))
    input_name = settings.input_names[0]
    index = 0
    while True:
        lines = await asyncio.to_thread(lambda: list(islice(source, CHUNK_LINES)))  # file reads off the loop
        if not lines:
            break
        for line in lines:
            body = line.rstrip(b"\r\n")
            await pipeline.submit(InMessage(body, str(index), input_name))
            index += 1
    await pipeline.close()
    stats = pipeline.stats
    return {"lines": index, "predictions": stats.predictions, "errors": stats.errors}


def open_source(path: str) -> BinaryIO:
    return sys.stdin.buffer if path == "-" else open(path, "rb")
