"""The data path shared by every front end (edgeHub, simulator, file scoring):
decode -> micro-batch -> run() off the event loop -> encode -> sink.

Every submitted message ends as exactly one prediction or one error record: decoding failures
become error records at once, a failing batch is retried message by message so only the culprit
gets an error, and close() scores and sends everything in hand.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .batching import MicroBatcher
from .config import Settings
from .decoding import Decoded, FeatureReader, MessageError
from .encoding import Aggregator, Encoder, OutputTooLarge
from .messages import InMessage, OutMessage, Sink
from .scoring import Scorer

log = logging.getLogger(__name__)


@dataclass
class Stats:
    messages: int = 0
    predictions: int = 0
    errors: int = 0
    rows: int = 0
    output_messages: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # end to end, capped sample

    def latency_ms(self, quantile: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], 3)


@dataclass(slots=True)
class Job:
    msg: InMessage
    decoded: Decoded


LATENCY_SAMPLE_CAP = 200_000


# Per-message objects are acyclic and freed by reference counting, but queued messages live long
# enough to be promoted, and promotions trigger full collections that walk every object of numpy,
# scikit-learn and the model. Measured with the bench (default model, saturating load): 15-19 µs per
# message untuned, 12 µs with the long-lived heap frozen and fewer young collections.
GC_YOUNG_THRESHOLD = 10_000


def _tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()  # what exists now (libraries, model, settings) lives as long as the process
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class Pipeline:
    def __init__(self, settings: Settings, scorer: Scorer, sink: Sink) -> None:
        self.settings = settings
        self.scorer = scorer
        self.sink = sink
        self.stats = Stats()
        manifest = scorer.manifest
        features = settings.features or tuple(manifest.features)
        if len(features) != scorer.n_features:
            raise ValueError(f"FEATURES names {len(features)} features but model {manifest.name} takes {scorer.n_features}")
        self.reader = FeatureReader(features, settings.passthrough_fields, settings.max_message_bytes)
        self.encoder = Encoder(
            manifest.name,
            manifest.version,
            settings.output_name,
            settings.error_output_name,
            settings.error_input_max_bytes,
        )
        self._aggregator = Aggregator(self.encoder, settings.aggregate_max_bytes) if settings.aggregate else None
        self._aggregate_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._delivery: asyncio.Task[None] | None = None  # the last batch's outputs, being sent
        self.batcher: MicroBatcher[Job] = MicroBatcher(
            self._score_batch, settings.max_batch_size, settings.max_wait_ms / 1000, settings.queue_size
        )
        # One model thread: scripts need not be thread-safe, and one batch at a time is the design.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._inputs = frozenset(settings.input_names)

    async def start(self) -> None:
        _tune_garbage_collector()
        self.batcher.start()

    async def submit(self, msg: InMessage) -> None:
        """Take one message; waits while the model's queue is full (backpressure)."""
        self.stats.messages += 1
        if not msg.received_at:
            msg.received_at = time.perf_counter()
        if msg.input_name and msg.input_name not in self._inputs:
            await self._send_error(
                msg,
                "unknown_input",
                f"input '{msg.input_name}' is not scored; add it to INPUT_NAMES ({', '.join(self._inputs)}) or fix the route",
            )
            return
        try:
            decoded = self.reader.decode(msg.body)
        except MessageError as exc:
            await self._send_error(msg, exc.code, exc.reason)
            return
        job = Job(msg, decoded)
        if not self.batcher.try_put(job, len(decoded.rows)):
            await self.batcher.put(job, len(decoded.rows))

    async def close(self) -> None:
        """Score what is queued, send what is pending, flush aggregates."""
        await self.batcher.close()
        await self._delivered()
        if self._background:
            await asyncio.gather(*self._background)
        await self._flush_aggregate()
        await self.sink.flush()
        self._executor.shutdown(wait=True)

    async def wait_idle(self) -> None:
        """Return once everything submitted so far has its outcome sent to the sink."""
        await self.batcher.wait_idle()
        await self._delivered()
        await self._flush_aggregate()
        await self.sink.flush()

    async def _score_batch(self, jobs: list[Job]) -> None:
        rows = [row for job in jobs for row in job.decoded.rows]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.scorer.score, rows)
        except Exception as exc:
            await self._delivered()
            if len(jobs) > 1:
                # Only the message that breaks run() should get an error: retry them one by one.
                log.warning("batch of %d messages failed (%s); retrying one by one", len(jobs), exc)
                for job in jobs:
                    await self._score_batch([job])
                return
            await self._send_error(jobs[0].msg, "scoring_failed", f"the model's run() failed on this message: {exc}")
            return
        await self._delivered()
        # Deliver in a task and return at once: the model thread starts on the next batch while
        # this one's outputs are encoded and sent. One batch at most waits for delivery.
        self._delivery = loop.create_task(self._deliver(jobs, results))

    async def _delivered(self) -> None:
        """Wait until the previous batch's outputs are with the sink (keeps outputs in order)."""
        if self._delivery is not None:
            await self._delivery
            self._delivery = None

    async def _deliver(self, jobs: list[Job], results: list[Any]) -> None:
        send = self.sink.send
        start = 0
        for job in jobs:
            n = len(job.decoded.rows)
            for out in self._encode(job, results[start : start + n]):
                await send(out)
            start += n

    def _encode(self, job: Job, results: list[Any]) -> list[OutMessage]:
        """One job's outputs: its prediction message, the aggregates it filled, or an error record."""
        msg, decoded = job.msg, job.decoded
        try:
            if self._aggregator is None:
                outs = [self.encoder.prediction(msg, decoded.shape, results, decoded.contexts)]
            else:
                outs = self._aggregator.add(msg, decoded.shape, results, decoded.contexts)
                self._time_aggregate()
        except (OutputTooLarge, TypeError) as exc:  # TypeError: run() returned something not JSON-able
            return [self._error(msg, "output_error", str(exc))]
        stats = self.stats
        stats.predictions += 1
        stats.rows += len(results)
        stats.output_messages += len(outs)
        if len(stats.latencies_ms) < LATENCY_SAMPLE_CAP:
            stats.latencies_ms.append((time.perf_counter() - msg.received_at) * 1000)
        return outs

    def _error(self, msg: InMessage, code: str, reason: str) -> OutMessage:
        stats = self.stats
        stats.errors += 1
        stats.output_messages += 1
        stats.errors_by_code[code] = stats.errors_by_code.get(code, 0) + 1
        log.debug("message %s rejected: %s", msg.message_id, reason)
        return self.encoder.error(msg, code, reason)

    async def _send_error(self, msg: InMessage, code: str, reason: str) -> None:
        await self.sink.send(self._error(msg, code, reason))

    def _time_aggregate(self) -> None:
        """A partly filled aggregate is sent at most AGGREGATE_MAX_DELAY_MS after it started."""
        assert self._aggregator is not None
        pending = len(self._aggregator)
        if not pending and self._aggregate_timer is not None:
            self._aggregate_timer.cancel()  # it was just sent full
            self._aggregate_timer = None
        elif pending and self._aggregate_timer is None:
            self._aggregate_timer = asyncio.get_running_loop().call_later(
                self.settings.aggregate_max_delay_ms / 1000, self._on_aggregate_due
            )

    def _on_aggregate_due(self) -> None:
        self._aggregate_timer = None
        task = asyncio.get_running_loop().create_task(self._flush_aggregate())
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def _flush_aggregate(self) -> None:
        if self._aggregate_timer is not None:
            self._aggregate_timer.cancel()
            self._aggregate_timer = None
        if self._aggregator is not None:
            for out in self._aggregator.drain():
                self.stats.output_messages += 1
                await self.sink.send(out)
