"""The data path shared by every front end (edgeHub, HTTP, simulator, file scoring): messages are
queued on the event loop, processed a batch at a time on the model thread (decode -> run() ->
encode, see processing.py), and their outputs sent from the loop to the sink, through the wrappers
of sinks.py (counting always, aggregation when AGGREGATE is on).

Every submitted message ends as exactly one prediction or one error record, and close() processes
and sends everything in hand.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.core.batching import MicroBatcher
from app.core.decoding import FeatureReader
from app.core.encoding import Aggregator, Encoder
from app.core.errors import ErrorCode
from app.core.messages import InMessage, Sink
from app.core.processing import BatchProcessor, Outcome
from app.core.sinks import AggregatingSink, CountingSink
from app.core.stats import Stats
from app.model.scorer import Scorer
from app.settings import ConfigError, Settings

log = logging.getLogger(__name__)

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
        self.stats = Stats()
        self._counted = CountingSink(sink, self.stats)
        self._out: Sink = self._counted  # with AGGREGATE on: an AggregatingSink around it
        self._delivery: asyncio.Task[None] | None = None  # the last batch's outputs, being sent
        self.last_progress = time.monotonic()  # when a batch last came out of the model (or the queue was empty)
        # Called with the journal seqs of a batch's inputs just before they go into the model (the intake
        # records them: IntakeJournal.mark_tried), so that an input the module keeps dying on is found.
        self.before_scoring: Callable[[list[int]], None] | None = None
        # Held while a batch is processed and while the pipeline is reconfigured: a change of
        # settings or model happens between batches, never during one.
        self._batch_lock = asyncio.Lock()
        # Messages count one each toward a batch; their rows are known once decoded, on the model
        # thread, which then keeps every run() call within MAX_BATCH_SIZE rows.
        self.batcher: MicroBatcher[InMessage] = MicroBatcher(
            self._process, settings.max_batch_size, settings.max_wait_ms / 1000, settings.queue_size
        )
        # One model thread: scripts need not be thread-safe, and one batch at a time is the design.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._install(settings, scorer)

    def _features(self, settings: Settings, scorer: Scorer) -> tuple[str, ...]:
        if scorer.message_input:  # bodies go to run() as they are: no rows to read
            return settings.features
        manifest = scorer.manifest
        features = settings.features or tuple(manifest.features)
        if len(features) != scorer.n_features:
            raise ConfigError(
                f"FEATURES: {len(features)} paths given but model {manifest.name} v{manifest.version} "
                f"takes {scorer.n_features} ({', '.join(manifest.features)})"
            )
        return features

    def _install(self, settings: Settings, scorer: Scorer) -> None:
        """Build the per-configuration parts; raises ConfigError, changing nothing, if they do not fit."""
        features = self._features(settings, scorer)
        try:
            scorer.set_threshold(settings.threshold)  # the last step that can fail
        except ValueError as exc:
            raise ConfigError(f"THRESHOLD: {exc}") from None
        manifest = scorer.manifest
        encoder = Encoder(
            manifest.name, manifest.version, settings.output_name, settings.error_output_name, settings.error_input_max_bytes
        )
        self.processor = BatchProcessor(
            # Message input reads no rows: run() takes each body as it is.
            FeatureReader(features, settings.passthrough_fields, settings.max_message_bytes) if features else None,
            scorer,
            encoder,
            settings.max_batch_size,
            settings.input_names,
            aggregate=settings.aggregate,
            stats=self.stats.model,
        )
        self.settings, self.scorer, self.encoder = settings, scorer, encoder
        if settings.aggregate:
            aggregator = Aggregator(encoder, settings.aggregate_max_bytes)
            self._out = AggregatingSink(self._counted, aggregator, settings.aggregate_max_delay_ms / 1000)
        else:
            self._out = self._counted
        self.batcher.max_items = settings.max_batch_size
        self.batcher.max_wait_s = settings.max_wait_ms / 1000

    async def reconfigure(self, settings: Settings, scorer: Scorer | None = None) -> None:
        """Apply new settings (and a model already loaded beside the running one) from the next batch on.

        Waits for the batch in the model, sends its outputs and any pending aggregate under the old
        settings, then swaps. Queued messages stay queued: none is dropped or scored twice.
        Raises ConfigError, with everything unchanged, if the settings do not fit the model.
        """
        scorer = scorer or self.scorer
        async with self._batch_lock:
            self._features(settings, scorer)
            await self._delivered()
            await self._drain_aggregate()
            self._install(settings, scorer)

    async def start(self) -> None:
        _tune_garbage_collector()
        self.batcher.start()

    async def submit(self, msg: InMessage) -> None:
        """Take one message; waits while the model's queue is full (backpressure)."""
        self.stats.messages += 1
        if not msg.received_at:
            msg.received_at = time.perf_counter()
        if not self.batcher.try_put(msg):
            await self.batcher.put(msg)

    def offer(self, msg: InMessage) -> bool:
        """Take one message if the queue has room now; False when it is full (HTTP answers 503)."""
        if self.try_submit(msg):
            return True
        self.stats.refused += 1
        return False

    def try_submit(self, msg: InMessage) -> bool:
        """`submit` without waiting: take the message if the queue has room now, else leave it (False)."""
        if not msg.received_at:
            msg.received_at = time.perf_counter()
        if not self.batcher.try_put(msg):
            return False
        self.stats.messages += 1
        return True

    def stalled(self, limit_s: float) -> str | None:
        """Why the pipeline is stuck, if messages have waited `limit_s` with no batch finished; else None."""
        depth = self.batcher.depth
        idle = time.monotonic() - self.last_progress
        if depth and idle > limit_s:
            return f"the model has finished no batch for {idle:.0f} s with {depth} messages queued"
        if not depth:
            self.last_progress = time.monotonic()
        return None

    async def reject(self, msg: InMessage, code: ErrorCode, reason: str) -> None:
        """An outcome without the model: the message's error record, sent at once (load shedding)."""
        self.stats.messages += 1
        if not msg.received_at:
            msg.received_at = time.perf_counter()
        await self._deliver([self.processor.error(msg, code, reason)])

    async def close(self) -> None:
        """Process what is queued, send what is pending, flush aggregates."""
        await self.batcher.close()
        await self._delivered()
        await self._out.flush()
        self._executor.shutdown(wait=True)

    async def wait_idle(self) -> None:
        """Return once everything submitted so far has its outcome sent to the sink."""
        await self.batcher.wait_idle()
        await self._delivered()
        await self._drain_aggregate()
        await self._out.flush()

    async def _process(self, batch: list[InMessage]) -> None:
        loop = asyncio.get_running_loop()
        async with self._batch_lock:
            processor = self.processor
            if any(msg.attempts for msg in batch):
                # An earlier run died with one of these in the model: one at a time, each outcome delivered
                # (and so settled in the journal) before the next goes in, so that only the one that kills
                # the module counts the next death and is set aside at REPLAY_LIMIT.
                await self._delivered()
                for msg in batch:
                    await self._deliver(await self._run_model(processor, [msg]))
                    await self._out.flush()
                self.last_progress = time.monotonic()
                return
            outcomes = await self._run_model(processor, batch)
            self.last_progress = time.monotonic()
            await self._delivered()
            # Send in a task and return at once: the model thread starts on the next batch meanwhile.
            self._delivery = loop.create_task(self._deliver(outcomes))

    async def _run_model(self, processor: BatchProcessor, batch: list[InMessage]) -> list[Outcome]:
        if self.before_scoring is not None:
            journaled = [msg.journal_seq for msg in batch if msg.journal_seq is not None]
            if journaled:
                self.before_scoring(journaled)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, processor, batch)
        except Exception as exc:  # a bug of ours, not of a message: still one outcome each
            log.exception("processing a batch failed")
            return [processor.error(msg, ErrorCode.INTERNAL_ERROR, f"the module failed: {exc!r}") for msg in batch]

    async def _delivered(self) -> None:
        """Wait until the previous batch's outputs are with the sink (keeps outputs in order)."""
        if self._delivery is not None:
            await self._delivery
            self._delivery = None

    async def _deliver(self, outcomes: list[Outcome]) -> None:
        stats, send = self.stats, self._out.send
        sample, observe = stats.latencies_ms, stats.latency_seconds.observe
        now = time.perf_counter()
        for outcome in outcomes:
            latency = now - outcome.msg.received_at
            observe(latency)
            if outcome.error is None:
                stats.predictions += 1
                stats.rows += outcome.rows
                sample.append(latency * 1000)  # a bounded deque: the most recent ones
            else:
                stats.errors += 1
                code = str(outcome.error)  # a plain str key: orjson refuses str subclasses as keys
                stats.errors_by_code[code] = stats.errors_by_code.get(code, 0) + 1
            reply = outcome.msg.reply
            if reply is not None:
                if not reply.done():  # its requester may have gone
                    reply.set_result(outcome)
            else:
                await send(outcome.out)

    async def _drain_aggregate(self) -> None:
        if isinstance(self._out, AggregatingSink):
            await self._out.drain()
