"""edgeHub transport: the module's azure-iot-device client, its inputs and outputs.

Intake: the SDK calls our handler on its own handler loop (a thread of its own). The handler only
hands the message to our loop with call_soon_threadsafe, into an ordered inbox; one feeder task
moves it into the pipeline, waiting while the model's queue is full. The SDK acknowledges MQTT
messages on arrival and cannot pause delivery, so while we wait, messages gather in the inbox
(in order, counted) rather than being refused.

Outputs: each message is sent as its own task, at most MAX_SENDS_IN_FLIGHT at once; a send that
fails is retried, and a message that still cannot be sent is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections import deque

from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient
from azure.iot.device.iothub.aio import loop_management

from .config import Settings
from .messages import InMessage, OutMessage
from .pipeline import Pipeline
from .scoring import load_scorer

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 3


class EdgeSink:
    """Sends output messages through the module client, a bounded number at a time."""

    def __init__(self, client: IoTHubModuleClient, max_in_flight: int) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    async def send(self, out: OutMessage) -> None:
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._deliver(out))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, out: OutMessage) -> None:
        message = Message(
            out.body,
            message_id=uuid.uuid4().hex,
            content_encoding=out.content_encoding,
            content_type=out.content_type,
        )
        message.correlation_id = out.correlation_id
        message.custom_properties = dict(out.custom_properties)
        try:
            for attempt in range(1, SEND_ATTEMPTS + 1):
                try:
                    await self._client.send_message_to_output(message, out.output)
                    self.sent += 1
                    return
                except Exception as exc:  # the SDK raises several kinds; all mean "not sent"
                    if attempt == SEND_ATTEMPTS:
                        self.failed += 1
                        log.error(
                            "output message lost after %d attempts: output=%s correlation_id=%s error=%r",
                            attempt,
                            out.output,
                            out.correlation_id,
                            exc,
                        )
                        return
                    log.warning("send to %s failed (%r); retrying", out.output, exc)
                    await asyncio.sleep(attempt)  # back off before the next attempt
        finally:
            self._slots.release()

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class Intake:
    """Moves messages from the SDK's handler thread into the pipeline, in arrival order."""

    def __init__(self, pipeline: Pipeline, loop: asyncio.AbstractEventLoop) -> None:
        self._pipeline = pipeline
        self._loop = loop
        self._inbox: deque[InMessage] = deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self.backlog_peak = 0
        self._task = loop.create_task(self._feed(), name="intake")

    async def on_message(self, message: Message) -> None:
        """The SDK's handler; runs on the SDK's handler loop, not ours."""
        msg = InMessage(
            body=message.data if isinstance(message.data, bytes) else str(message.data).encode("utf-8"),
            message_id=message.message_id,
            input_name=message.input_name or "",
            custom_properties=dict(message.custom_properties or {}),
            received_at=time.perf_counter(),
        )
        self._loop.call_soon_threadsafe(self._accept, msg)

    def _accept(self, msg: InMessage) -> None:
        self._inbox.append(msg)
        self.backlog_peak = max(self.backlog_peak, len(self._inbox))
        self._arrived.set()

    async def _feed(self) -> None:
        while True:
            while self._inbox:
                await self._pipeline.submit(self._inbox.popleft())
            if self._closing:
                return
            self._arrived.clear()
            await self._arrived.wait()

    async def close(self) -> None:
        """Feed everything already handed over, then stop."""
        self._closing = True
        self._arrived.set()
        await self._task


async def _run_on_handler_loop_barrier() -> None:
    """Wait until handler calls the SDK already scheduled have run (its handler loop is FIFO)."""

    async def nothing() -> None:
        return None

    future = asyncio.run_coroutine_threadsafe(nothing(), loop_management.get_client_handler_loop())
    await asyncio.wrap_future(future)


async def run_module(settings: Settings) -> int:
    """The container's main: serve edgeHub inputs until SIGTERM/SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    scorer = await asyncio.to_thread(load_scorer, settings.model_dir, settings.score_script, settings.allow_version_mismatch)
    client = await asyncio.to_thread(IoTHubModuleClient.create_from_edge_environment)
    sink = EdgeSink(client, settings.max_sends_in_flight)
    pipeline = Pipeline(settings, scorer, sink)
    await pipeline.start()
    intake = Intake(pipeline, loop)

    def on_connection_state_change() -> None:
        log.info("edgeHub connection: %s", "connected" if client.connected else "disconnected (the SDK retries)")

    client.on_connection_state_change = on_connection_state_change
    await client.connect()
    # The setter blocks until the SDK has subscribed; keep it off our loop.
    await asyncio.to_thread(setattr, client, "on_message_received", intake.on_message)
    log.info(
        "ready: inputs=%s output=%s errors=%s model=%s v%s",
        ",".join(settings.input_names),
        settings.output_name,
        settings.error_output_name,
        scorer.manifest.name,
        scorer.manifest.version,
    )
    await stop.wait()

    log.info("stopping: finishing the messages in hand")
    code = 0
    try:
        async with asyncio.timeout(settings.shutdown_timeout_s):
            # Stop receiving; the SDK hands over what it already holds before the setter returns.
            await asyncio.to_thread(setattr, client, "on_message_received", None)
            await _run_on_handler_loop_barrier()
            await intake.close()
            await pipeline.close()
    except TimeoutError:
        code = 1
        log.error(
            "shutdown timed out after %.1fs with %d messages queued for the model",
            settings.shutdown_timeout_s,
            pipeline.batcher.depth,
        )
    stats = pipeline.stats
    log.info(
        "stopped: messages=%d predictions=%d errors=%d sent=%d send_failures=%d",
        stats.messages,
        stats.predictions,
        stats.errors,
        sink.sent,
        sink.failed,
    )
    try:
        await asyncio.wait_for(client.shutdown(), timeout=5)
    except Exception as exc:  # shutting down anyway; say so
        log.warning("client shutdown: %r", exc)
    return code
