"""The module on edgeHub: its azure-iot-device client, connected, with twin, methods and intake
wired to the pipeline, and stopped without losing what the SDK acknowledged. The composition root
(app/main.py, run_module) drives it.

Stopping keeps the session's subscriptions: edgeAgent stops the module (SIGTERM) on every
`iotedge restart`, deployment update and reboot, and a session without its input subscription
gets nothing routed to it while the module is down (Mosquitto drops it: 303 of 441 inputs lost
over two SIGTERM restarts at 50/s, before this). With the journal (the default) every input is on
disk before it is acknowledged, so the module simply stops scoring new arrivals: the intake leaves
them in the journal for the next start, the pipeline finishes what it took and sends its outcomes
over the still-connected client, and the client disconnects before the journal closes; from then on
the broker queues inputs for the session until the module is back.

Without the journal an acknowledged input lives only in memory, so the stop cannot leave any for
later: it unsubscribes with our handler still set (the SDK's handler setter, None, stops handing
over *before* it unsubscribes, dropping whatever arrives in between: seen, over a thousand of 1,500
queued inputs), scores what arrives, and disconnects, which hands over the rest; if that was
anything, it reconnects to send their outcomes and goes round again. What is routed to the module
while it is down is then up to the broker (edgeHub keeps it for the route's TTL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from azure.iot.device.aio import IoTHubModuleClient
from azure.iot.device.common import async_adapter
from azure.iot.device.iothub.aio import loop_management
from azure.iot.device.iothub.pipeline import constant as pipeline_constant

from app.core.control import Controller
from app.core.journal import IntakeJournal
from app.core.messages import OutMessage
from app.core.pipeline import Pipeline
from app.edgehub.intake import Intake
from app.edgehub.methods import MethodHandler
from app.edgehub.sink import EdgeSink
from app.edgehub.twin import TwinAgent
from app.edgehub.watchdog import Watchdog
from app.settings import Settings
from edgekit.mqtt_socket import enable_tcp_nodelay, set_message_tap
from edgekit.sas_token import client_options

log = logging.getLogger(__name__)

STOPPING_REPORT_TIMEOUT_S = 2.0
DISCONNECT_TIMEOUT_S = 5.0
RESUBSCRIBE_TIMEOUT_S = 10.0


async def _run_on_handler_loop_barrier() -> None:
    """Wait until handler calls the SDK already scheduled have run (its handler loop is FIFO)."""

    async def nothing() -> None:
        return None

    future = asyncio.run_coroutine_threadsafe(nothing(), loop_management.get_client_handler_loop())
    await asyncio.wrap_future(future)


async def _unsubscribe_and_drain(client: IoTHubModuleClient, intake: Intake) -> None:
    """Without a journal: stop input delivery, scoring (and sending the outcome of) every message the SDK acknowledged."""
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


class EdgeHubModule:
    """The edgeHub adapter as the composition root sees it: create, connect, start, stop receiving, shut down."""

    def __init__(self, client: IoTHubModuleClient, settings: Settings, journal: IntakeJournal | None = None) -> None:
        self.client = client
        self._settings = settings
        self.journal = journal  # set before connect()
        self.sink = EdgeSink(client, settings.max_sends_in_flight, on_delivered=self._delivered)
        self._intake: Intake | None = None
        self._twin: TwinAgent | None = None
        self._methods: MethodHandler | None = None
        self.watchdog: Watchdog | None = None
        self._disconnected_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resubscribing: set[asyncio.Task[None]] = set()
        client.on_connection_state_change = self._on_connection_state_change

    @classmethod
    async def create(cls, settings: Settings, journal: IntakeJournal | None = None) -> EdgeHubModule:
        """The client from the IoT Edge environment (the workload API on a device); raises if there is none."""
        enable_tcp_nodelay(settings.tcp_nodelay)
        options = client_options(settings.sas_token_ttl_s)
        client = await asyncio.to_thread(lambda: IoTHubModuleClient.create_from_edge_environment(**options))
        return cls(client, settings, journal)

    def _on_connection_state_change(self, *_: object) -> None:
        # The SDK calls this on its own thread; a float assignment is atomic, read on our loop by problem().
        connected = self.client.connected
        was_down = self._disconnected_since is not None
        self._disconnected_since = None if connected else (self._disconnected_since or time.monotonic())
        log.info("edgeHub connection: %s", "connected" if connected else "disconnected (the SDK retries)")
        if connected and was_down and self._loop is not None:
            self._loop.call_soon_threadsafe(self._resubscribe_soon)

    def _resubscribe_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._resubscribe())
        self._resubscribing.add(task)
        task.add_done_callback(self._resubscribing.discard)

    async def _resubscribe(self) -> None:
        """Subscribe again to every feature in use after a reconnect. The SDK relies on the broker
        having kept its session; a broker that lost it (killed before it saved, a new edgeHub) would
        otherwise never deliver an input, method or patch again, with the connection looking fine
        (through the local edge: 4,042 of 4,191 inputs undelivered after a broker SIGKILL).
        Subscribing twice is harmless: the broker replaces the subscription."""
        pipeline = self.client._mqtt_pipeline  # private: the SDK has no public re-subscribe
        for feature, enabled in list(pipeline.feature_enabled.items()):
            if not enabled:
                continue
            callback = async_adapter.AwaitableCallback()
            try:
                async with asyncio.timeout(RESUBSCRIBE_TIMEOUT_S):
                    await async_adapter.emulate_async(pipeline.enable_feature)(feature, callback=callback)
                    await callback.completion()
            except Exception as exc:  # the next reconnect tries again; the watchdog covers the rest
                log.warning("re-subscribing %s after a reconnect failed: %r", feature, exc)
            else:
                log.info("re-subscribed %s after a reconnect", feature)

    def problem(self) -> str | None:
        """What keeps the module from edgeHub, for GET /ready; None when all is well."""
        if self.watchdog is not None and self.watchdog.reason is not None:
            return f"edgeHub: {self.watchdog.reason}"
        since = self._disconnected_since
        if since is not None:
            return f"edgeHub unreachable for {time.monotonic() - since:.0f} s (the SDK retries)"
        return None

    def _delivered(self, out: OutMessage) -> None:
        if self._intake is not None:
            self._intake.delivered(out)

    @property
    def intake(self) -> Intake | None:
        return self._intake

    async def connect(self, pipeline: Pipeline) -> None:
        """Connect with the input handler already set: the broker delivers what it kept for us (a persistent
        session) as soon as we connect, and the SDK drops inputs that arrive before any handler is set
        ("No input message inbox"; 20 lost on a clean restart). The intake takes them, journals them and
        holds them until start(). Raises what the SDK raises when edgeHub cannot be reached."""
        self._loop = asyncio.get_running_loop()
        self._intake = Intake(
            pipeline, self._loop, self.journal, self._settings.inbox_max_bytes, replay_limit=self._settings.replay_limit
        )
        # Journal each input on paho's thread, before it is acknowledged (intake.py, edgekit.mqtt_socket).
        config = self.client._mqtt_pipeline.pipeline_configuration  # private: the SDK has no public accessor
        device_id, module_id = str(config.device_id), str(config.module_id)
        set_message_tap(f"{device_id}/{module_id}", self._intake.tap_for(device_id, module_id))
        # The setter connects (auto-connect) and blocks until subscribed: keep it off our loop.
        await asyncio.to_thread(setattr, self.client, "on_message_received", self._intake.on_message)
        await self.client.connect()  # a no-op when the setter connected; connects when it did not need to

    async def start(self, controller: Controller, on_deaf: Callable[[str], None]) -> None:
        """Desired properties first, so the first message is scored with the settings the twin asks for;
        then methods; then the intake feeds the pipeline (an earlier run's unsettled inputs first); then
        the watchdog, which calls `on_deaf` if the connection goes deaf (app/edgehub/watchdog.py)."""
        loop = asyncio.get_running_loop()
        self._twin = TwinAgent(self.client, controller, loop)
        await self._twin.start()
        self._methods = MethodHandler(self.client, controller, loop)
        await self._methods.start()
        assert self._intake is not None, "connect() first"
        self._intake.start()
        self.watchdog = Watchdog(self.client, self._settings.watchdog_s, on_deaf)
        await self.watchdog.start()

    async def report_stopping(self) -> None:
        """Stop the twin's work and report the status once more (on a single device: app/edgehub/twin.py),
        briefly: the runtime's stop grace period is for the messages in hand, not for an unreachable twin."""
        if self._twin is not None:
            await self._twin.close()
            await self._twin.report_final(timeout=STOPPING_REPORT_TIMEOUT_S)

    async def stop_receiving(self) -> None:
        """Stop taking inputs and feed what the intake holds in memory into the pipeline; answer the methods
        in hand. With the journal, the subscriptions stay: what arrives from now on waits in the journal for
        the next start (see the module doc); without it, input delivery is stopped by unsubscribing."""
        if self.watchdog is not None:
            await self.watchdog.close()  # the disconnects below are ours
        if self._intake is not None:
            self._intake.wind_down()
            if self._intake.journal is None:
                try:
                    await _unsubscribe_and_drain(self.client, self._intake)
                except Exception as exc:  # e.g. edgeHub unreachable: still finish what was handed over
                    log.warning("could not stop input delivery cleanly (%r); finishing the messages in hand", exc)
            await self._intake.close()
        if self._methods is not None:
            await self._methods.close()

    def give_up_sending(self) -> None:
        """Stopping and out of time: outputs edgeHub did not take are left (their inputs stay in the journal)."""
        self.sink.give_up_retrying()

    async def disconnect(self) -> None:
        """Before the journal closes: paho acknowledges whatever arrives while connected, and only an open
        journal keeps it. The broker keeps the session, subscriptions included, and queues for its return."""
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await self.client.disconnect()
                await _run_on_handler_loop_barrier()  # what the SDK handed over on disconnect reaches the intake
                await asyncio.sleep(0)  # and its hand-off onto our loop runs
        except Exception as exc:  # shutting down anyway; what landed is in the journal
            log.warning("disconnect before closing the journal: %r", exc)

    def close_journal(self) -> None:
        if self._intake is not None:
            self._intake.close_journal()
        elif self.journal is not None:
            self.journal.close()

    @property
    def inbox_peak(self) -> int:
        return self._intake.backlog_peak if self._intake is not None else 0

    async def shutdown(self) -> None:
        try:
            async with asyncio.timeout(5):
                await self.client.shutdown()
        except Exception as exc:  # shutting down anyway; say so
            log.warning("client shutdown: %r", exc)
