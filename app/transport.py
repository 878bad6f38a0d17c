"""edgeHub transport: the module's azure-iot-device client, its inputs and outputs.

Intake: the SDK calls our handler on its own handler loop (a thread of its own). The handler only
hands the message to our loop with call_soon_threadsafe, into an ordered inbox; one feeder task
moves it into the pipeline, waiting while the model's queue is full. The SDK acknowledges MQTT
messages on arrival and cannot pause delivery, so while we wait, messages gather in the inbox
(in order, counted) rather than being refused.

Stopping: the SDK acknowledges a message before it reaches us, so every message it received must
still be handed over and scored. Its handler setter (None) stops handing over *before* it
unsubscribes, dropping whatever arrives in between (seen: over a thousand of 1,500 queued inputs).
So we unsubscribe with our handler still set, score what arrives, and disconnect, which hands over
the rest; if that was anything, we reconnect to send its outcomes and go round again.

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
from azure.iot.device.iothub.pipeline import constant as pipeline_constant

from .config import Settings
from .control import Controller
from .http import Health, start_http
from .messages import InMessage, OutMessage
from .methods import MethodHandler
from .mqtt_socket import enable_tcp_nodelay
from .pipeline import Pipeline
from .scoring import load_scorer
from .twin import TwinAgent

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 3
STOPPING_REPORT_TIMEOUT_S = 2.0


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
        self._drained = asyncio.Event()  # set while everything handed over is in the pipeline
        self._drained.set()
        self._closing = False
        self.accepted = 0
        self.backlog_peak = 0
        self._task = loop.create_task(self._feed(), name="intake")

    async def on_message(self, message: Message) -> None:
        """The SDK's handler; runs on the SDK's handler loop, not ours."""
        msg = InMessage(
            body=message.data if isinstance(message.data, bytes) else str(message.data).encode("utf-8"),
            message_id=message.message_id,
            input_name=message.input_name or "",
            # edgeHub's own `$.` keys (`$.cdid`, `$.cmid`) describe this hop; they are not carried on.
            custom_properties={k: v for k, v in (message.custom_properties or {}).items() if not k.startswith("$.")},
            received_at=time.perf_counter(),
        )
        self._loop.call_soon_threadsafe(self._accept, msg)

    def _accept(self, msg: InMessage) -> None:
        self._inbox.append(msg)
        self.accepted += 1
        self._drained.clear()
        self.backlog_peak = max(self.backlog_peak, len(self._inbox))
        self._arrived.set()

    async def _feed(self) -> None:
        while True:
            while self._inbox:
                await self._pipeline.submit(self._inbox.popleft())
            self._drained.set()
            if self._closing:
                return
            self._arrived.clear()
            await self._arrived.wait()

    async def settle(self) -> None:
        """Return once every message handed over so far has had its outcome sent."""
        while True:
            accepted = self.accepted
            await self._drained.wait()
            await self._pipeline.wait_idle()
            if self.accepted == accepted:
                return

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


async def _stop_receiving(client: IoTHubModuleClient, intake: Intake) -> None:
    """Stop input delivery, scoring (and sending the outcome of) every message the SDK acknowledged."""
    # Private, but the SDK has no public unsubscribe that keeps the handler (see the module doc).
    await client._disable_feature(pipeline_constant.INPUT_MSG)
    while True:
        # A broker may still deliver what it had queued for us before the unsubscribe: score it.
        await _run_on_handler_loop_barrier()
        await intake.settle()
        handed_over = intake.accepted
        # Disconnecting hands over everything the SDK still holds; nothing can arrive after it.
        await client.disconnect()
        await _run_on_handler_loop_barrier()
        if intake.accepted == handed_over:
            return
        await client.connect()  # to send the outcomes of those; the SDK resumes handing over


async def run_module(settings: Settings) -> int:
    """The container's main: serve edgeHub inputs until SIGTERM/SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    scorer = await asyncio.to_thread(load_scorer, settings.model_dir, settings.score_script, settings.allow_version_mismatch)
    enable_tcp_nodelay(settings.tcp_nodelay)
    client = await asyncio.to_thread(IoTHubModuleClient.create_from_edge_environment)
    sink = EdgeSink(client, settings.max_sends_in_flight)
    pipeline = Pipeline(settings, scorer, sink)
    await pipeline.start()
    intake = Intake(pipeline, loop)
    health = Health()
    controller = Controller(settings, pipeline, health)
    # The HTTP endpoint shares the pipeline: requests and edge messages batch together.
    http = await start_http(pipeline, health) if settings.http_port else None

    def on_connection_state_change() -> None:
        log.info("edgeHub connection: %s", "connected" if client.connected else "disconnected (the SDK retries)")

    client.on_connection_state_change = on_connection_state_change
    try:
        await client.connect()
    except Exception as exc:  # the SDK raises its own error types; say it plainly and let the runtime restart us
        log.error("cannot connect to edgeHub: %r; exiting so that the IoT Edge runtime restarts the module", exc)
        if http is not None:
            await http.cleanup()
        await pipeline.close()
        await client.shutdown()
        return 1
    # Desired properties first, so the first message is scored with the settings the twin asks for.
    twin = TwinAgent(client, controller, loop)
    await twin.start()
    methods = MethodHandler(client, controller, loop)
    await methods.start()
    # The setter blocks until the SDK has subscribed; keep it off our loop.
    await asyncio.to_thread(setattr, client, "on_message_received", intake.on_message)
    log.info(
        "ready: inputs=%s output=%s errors=%s model=%s v%s",
        ",".join(pipeline.settings.input_names),
        pipeline.settings.output_name,
        pipeline.settings.error_output_name,
        pipeline.scorer.manifest.name,
        pipeline.scorer.manifest.version,
    )
    controller.set_state("ready")
    await stop.wait()

    controller.set_state("stopping")
    log.info("stopping: finishing the messages in hand")
    await twin.close()
    # Briefly: the runtime's stop grace period is for the messages in hand, not for an unreachable twin.
    await twin.report(timeout=STOPPING_REPORT_TIMEOUT_S)
    code = 0
    try:
        async with asyncio.timeout(settings.shutdown_timeout_s):
            try:
                await _stop_receiving(client, intake)
            except Exception as exc:  # e.g. edgeHub unreachable: still finish what was handed over
                log.warning("could not stop input delivery cleanly (%r); finishing the messages in hand", exc)
            await intake.close()
            await methods.close()
            if http is not None:
                await http.cleanup()  # stops listening; requests in flight get their answers
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
        "stopped: messages=%d predictions=%d errors=%d sent=%d send_failures=%d queue_full_waits=%d inbox_peak=%d",
        stats.messages,
        stats.predictions,
        stats.errors,
        sink.sent,
        sink.failed,
        pipeline.batcher.queue_full_waits,
        intake.backlog_peak,
    )
    try:
        await asyncio.wait_for(client.shutdown(), timeout=5)
    except Exception as exc:  # shutting down anyway; say so
        log.warning("client shutdown: %r", exc)
    return code
