"""The measured workloads: per-message baseline, vectorized limit, the pipeline, lone-message latency."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.messages import InMessage, OutMessage
from app.main import open_pipeline
from app.model.scorer import Scorer
from app.model.simulator import SensorSimulator
from app.settings import Settings

Paths = list[tuple[str, ...]]


def make_bodies(n: int, seed: int = 1) -> list[bytes]:
    """Realistic bodies: SimulatedTemperatureSensor readings, as edgeHub hands them over."""
    sensor = SensorSimulator(seed=seed)
    return [orjson.dumps(sensor.reading()) for _ in range(n)]


def feature_paths(scorer: Scorer) -> Paths:
    return [tuple(path.split(".")) for path in scorer.manifest.features]


def _features(doc: dict[str, Any], paths: Paths) -> list[float]:
    # What a hand-written tutorial module does: plain lookups, no validation (flatters the baseline).
    row = []
    for parts in paths:
        value: Any = doc
        for part in parts:
            value = value[part]
        row.append(float(value))
    return row


def one_message(scorer: Scorer, body: bytes, paths: Paths) -> bytes:
    """The Azure tutorial module's path for one message: decode, predict one row, encode."""
    doc = orjson.loads(body)
    result = scorer.score([_features(doc, paths)])[0]
    manifest = scorer.manifest
    return orjson.dumps(
        {**result, "timeCreated": doc.get("timeCreated"), "model": manifest.name, "modelVersion": manifest.version}
    )


def per_message(scorer: Scorer, bodies: Sequence[bytes]) -> float:
    """Seconds to handle `bodies` one at a time."""
    paths = feature_paths(scorer)
    gc.collect()
    start = time.perf_counter()
    for body in bodies:
        one_message(scorer, body, paths)
    return time.perf_counter() - start


def vectorized(scorer: Scorer, bodies: Sequence[bytes], chunk: int) -> float:
    """Seconds to decode everything, then score the rows in max_batch_size chunks: the ceiling."""
    paths = feature_paths(scorer)
    gc.collect()
    start = time.perf_counter()
    rows = [_features(orjson.loads(body), paths) for body in bodies]
    for i in range(0, len(rows), chunk):
        scorer.score(rows[i : i + chunk])
    return time.perf_counter() - start


class CountingSink:
    """Counts outputs; notes when the last one arrived and wakes a waiter (for latency runs)."""

    def __init__(self) -> None:
        self.messages = 0
        self.predictions = 0
        self.received_at = 0.0
        self.arrived = asyncio.Event()

    async def send(self, msg: OutMessage) -> None:
        self.messages += 1
        self.predictions += msg.predictions
        self.received_at = time.perf_counter()
        self.arrived.set()

    async def flush(self) -> None:
        pass


@dataclass
class PipelineRun:
    seconds: float
    output_messages: int
    predictions: int
    batches: int
    mean_batch_rows: float
    queue_full_waits: int


async def pipeline_throughput(settings: Settings, scorer: Scorer, bodies: Sequence[bytes]) -> PipelineRun:
    """Submit everything as fast as submit() accepts (it applies backpressure); time until close()."""
    sink = CountingSink()
    pipeline = await open_pipeline(settings, sink, scorer)
    # Messages are built beforehand: making them is the transport's cost, not the pipeline's.
    msgs = [InMessage(body, str(i), settings.input_names[0]) for i, body in enumerate(bodies)]
    gc.collect()
    start = time.perf_counter()
    for msg in msgs:
        await pipeline.submit(msg)
    await pipeline.close()
    seconds = time.perf_counter() - start
    stats, batcher = pipeline.stats, pipeline.batcher
    if stats.predictions != len(bodies) or stats.errors:
        raise RuntimeError(f"pipeline lost messages: {stats.predictions} predictions, {stats.errors} errors of {len(bodies)}")
    return PipelineRun(
        seconds,
        sink.messages,
        stats.predictions,
        pipeline.processor.run_calls,
        pipeline.processor.rows_scored / max(1, pipeline.processor.run_calls),
        batcher.queue_full_waits,
    )


@dataclass
class Latency:
    inline_ms: float  # median, one message done inline
    pipeline_ms: float  # median, submit() to the sink receiving the output
    pipeline_p90_ms: float
    inline_p90_ms: float


async def lone_latency(settings: Settings, scorer: Scorer, bodies: Sequence[bytes], reps: int, gap_s: float) -> Latency:
    """One message at a time into an idle pipeline vs. inline, interleaved so both see the same noise."""
    sink = CountingSink()
    pipeline = await open_pipeline(settings, sink, scorer)
    paths = feature_paths(scorer)
    inline: list[float] = []
    piped: list[float] = []
    try:
        for i in range(reps):
            body = bodies[i % len(bodies)]
            start = time.perf_counter()
            one_message(scorer, body, paths)
            inline.append(time.perf_counter() - start)
            await asyncio.sleep(gap_s)  # idle between, as between sparse sensor messages

            msg = InMessage(body, str(i), settings.input_names[0])
            sink.arrived.clear()
            start = time.perf_counter()
            await pipeline.submit(msg)
            await sink.arrived.wait()
            piped.append(sink.received_at - start)
            await pipeline.wait_idle()  # nothing pending before the next one
            await asyncio.sleep(gap_s)
    finally:
        await pipeline.close()
    return Latency(
        statistics.median(inline) * 1000,
        statistics.median(piped) * 1000,
        _quantile(piped, 0.9) * 1000,
        _quantile(inline, 0.9) * 1000,
    )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
