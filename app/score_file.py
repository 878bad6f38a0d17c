"""`python -m app score FILE`: offline scoring of recorded message bodies, one per line.

Writes one JSON line per input line, in input order: the prediction body or the error record.
The same decode/batch/run/encode path as the module; aggregation is off (one line per line).
"""

from __future__ import annotations

import asyncio
import sys
from itertools import islice
from typing import Any, BinaryIO

from .config import Settings
from .messages import InMessage, OutMessage
from .pipeline import Pipeline
from .scoring import load_scorer

CHUNK_LINES = 1024


class OrderedSink:
    """Writes bodies in input order: outputs may finish out of order (errors skip the model)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending: dict[int, bytes] = {}
        self._next = 0

    async def send(self, msg: OutMessage) -> None:
        self._pending[int(msg.correlation_id or 0)] = msg.body
        while self._next in self._pending:
            self._out.write(self._pending.pop(self._next) + b"\n")
            self._next += 1

    async def flush(self) -> None:
        self._out.flush()


async def score_file(settings: Settings, source: BinaryIO, out: BinaryIO) -> dict[str, Any]:
    settings = settings.replace(aggregate=False)
    scorer = await asyncio.to_thread(load_scorer, settings.model_dir, settings.score_script, settings.allow_version_mismatch)
    pipeline = Pipeline(settings, scorer, OrderedSink(out))
    await pipeline.start()
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
