"""The sensor on its azure-iot-device client: paced, ordered sends; twin, `control` input and `reset` method.

The SDK runs our handlers on its own threads; each one only hands its event to our loop
(edgekit.handoff), so all state is touched by one thread.

Order: the SDK passes every operation to its pipeline from our loop's default executor. With several
workers two sends can swap places there, so the sensor gives its loop a one-worker executor: sends
reach the wire in the order they were made, while up to MAX_IN_FLIGHT await their acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.iot.device import Message, MethodRequest, MethodResponse
from azure.iot.device.aio import IoTHubModuleClient

from edgekit.handoff import Handoff
from edgekit.mqtt_socket import enable_tcp_nodelay
from edgekit.sas_token import client_options
from edgekit.signals import stop_on_signals
from sensor.readings import Simulation, encode
from sensor.settings import SensorSettings

log = logging.getLogger("sensor")

OUTPUT, CONTROL_INPUT = "temperatureOutput", "control"
MAX_IN_FLIGHT = 64
TWIN_TIMEOUT_S = 10.0  # get_twin() and reported patches have no timeout of their own
STOP_TIMEOUT_S = 3.0  # for sends in flight, then again for the client's shutdown


class Sensor:
    """Sends readings to `temperatureOutput` until MessageCount is reached; applies live settings."""

    def __init__(self, client: IoTHubModuleClient, settings: SensorSettings) -> None:
        self._client = client
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self.batch_id = str(uuid.uuid4())  # one per run, as Microsoft's
        self.send_data = settings.send_data
        self.delay = settings.message_delay
        self.desired_version = -1
        self.sent = self.failed = 0
        self.stopping = False
        self._reset = False
        self._wake = asyncio.Event()  # a setting changed or we are stopping: recompute the wait
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._sends: set[asyncio.Task[None]] = set()
        self._chores: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self.stopping = True
        self._wake.set()

    # --- the SDK's handlers: its threads hand over to our loop ---------------------------------

    def handlers(self) -> dict[str, Any]:
        """The client's handler properties -> our handlers, each handing its event over to our loop."""
        return {
            "on_twin_desired_properties_patch_received": Handoff(self._loop, self._desired_patched).handler,
            "on_method_request_received": Handoff(self._loop, self._method).handler,
            "on_message_received": Handoff(self._loop, self._control).handler,
        }

    def _apply_desired(self, desired: dict[str, Any]) -> bool:
        """Apply a twin's desired properties or a patch unless an as new one was applied ($version)."""
        version = desired.get("$version", self.desired_version + 1)
        if version <= self.desired_version:
            return False
        self.desired_version = version
        interval, send = desired.get("SendInterval"), desired.get("SendData")
        if isinstance(interval, int | float) and not isinstance(interval, bool) and 0 <= interval < float("inf"):
            self.delay = float(interval)
        elif interval is not None:
            log.warning("twin SendInterval %r ignored: expected seconds, a number 0 or more", interval)
        if isinstance(send, bool):
            if self.send_data and not send:
                log.info("sending disabled (SendData false); change the twin to start sending again")
            self.send_data = send
        elif send is not None:
            log.warning("twin SendData %r ignored: expected true or false", send)
        self._wake.set()
        return True

    def _desired_patched(self, patch: dict[str, Any]) -> None:
        if self._apply_desired(patch):  # and report the settings in use, as Microsoft's does
            reported = {"SendData": self.send_data, "SendInterval": self.delay}
            self._chore(self._client.patch_twin_reported_properties(reported), "reported properties")

    def _method(self, request: MethodRequest) -> None:
        status = 501  # what the .NET SDK answers for a method without a handler
        if request.name == "reset":
            log.info("reset by direct method")
            self._reset, status = True, 200
        self._chore(self._client.send_method_response(MethodResponse.create_from_method_request(request, status)), "method")

    def _control(self, message: Message) -> None:
        """`control` input: {"command":"reset"} or a list of such, as Microsoft's (0 is reset too)."""
        if message.input_name != CONTROL_INPUT:
            return
        try:
            body = json.loads(message.data)
        except ValueError as exc:
            log.warning("control message ignored: %s", exc)
            return
        commands = body if isinstance(body, list) else [body]
        if any(isinstance(c, dict) and str(c.get("command")).lower() in ("reset", "0") for c in commands):
            log.info("reset by control message")
            self._reset = True

    def _chore(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        async def bounded() -> None:
            try:
                await asyncio.wait_for(coro, TWIN_TIMEOUT_S)
            except Exception as exc:  # the SDK raises several kinds; none is worth stopping for
                log.warning("%s not sent: %r", what, exc)

        task = self._loop.create_task(bounded())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # --- sending --------------------------------------------------------------------------------

    async def load_twin(self) -> None:
        try:
            twin = await asyncio.wait_for(self._client.get_twin(), TWIN_TIMEOUT_S)
        except Exception as exc:  # no twin (e.g. a local edge without one): the environment's settings stand
            log.warning("twin not read (%r); using the environment's settings", exc)
            return
        self._apply_desired(twin.get("desired") or {})

    async def run(self) -> None:
        """Send at the current pace until MessageCount is reached or stop(); then wait for the sends in flight."""
        count, every = self._settings.message_count, self._settings.log_every
        sim = Simulation(self._settings)
        seq = ticks = 0
        last = time.monotonic() - self.delay  # the first reading goes at once
        while not self.stopping and (count < 0 or seq < count):
            due = await self._wait_for_tick(last)
            if self.stopping:
                break
            sim.step(reset=self._reset)
            self._reset, ticks = False, ticks + 1
            if self.send_data:
                seq += 1
                await self._slots.acquire()
                task = self._loop.create_task(self._send(seq, encode(sim.reading())))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            if ticks % every == 0:
                log.info("readings=%d sent=%d skipped=%d in_flight=%d", ticks, self.sent, ticks - seq, len(self._sends))
            # Against the schedule, not the clock: no drift. More than an interval behind: start afresh, no burst.
            last = max(due, time.monotonic() - self.delay)
        if self._sends:  # bounded by run_sensor once we are stopping
            await asyncio.wait(list(self._sends))
        if not self.stopping:
            log.info("done: sent=%d failed=%d", self.sent, self.failed)

    async def _wait_for_tick(self, last: float) -> float:
        """Wait until `last` + the current delay (a twin patch may change it meanwhile); return that time."""
        while True:
            due = last + self.delay
            remaining = due - time.monotonic()
            if remaining <= 0 or self.stopping:
                await asyncio.sleep(0)  # even at 0 delay, let handlers and sends run
                return due
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _send(self, seq: int, body: bytes) -> None:
        message = Message(body, message_id=uuid.uuid4().hex, content_encoding="utf-8", content_type="application/json")
        message.custom_properties = {"sequenceNumber": str(seq), "batchId": self.batch_id}
        try:
            await self._client.send_message_to_output(message, OUTPUT)
            self.sent += 1
        except Exception as exc:  # the SDK raises several kinds; all mean "not sent"
            self.failed += 1
            log.warning("message %d not sent: %r", seq, exc)
        finally:
            self._slots.release()


async def run_sensor(settings: SensorSettings) -> int:
    """The module's main: connect, send, stay connected until SIGTERM/SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="sensor-sdk"))  # order: see above
    with stop_on_signals() as stopped:
        return await _serve(settings, stopped)


async def _serve(settings: SensorSettings, stopped: asyncio.Event) -> int:
    loop = asyncio.get_running_loop()
    enable_tcp_nodelay()
    try:
        options = client_options(settings.sas_token_ttl_s)
        client = await asyncio.to_thread(lambda: IoTHubModuleClient.create_from_edge_environment(**options))
    except Exception as exc:  # e.g. no edge environment, or the workload API unreachable
        log.error("cannot create the module client: %r", exc)
        return 1
    sensor = Sensor(client, settings)
    try:
        await client.connect()
        # The setters block until the SDK has subscribed: keep them off our loop.
        for name, handler in sensor.handlers().items():
            await asyncio.to_thread(setattr, client, name, handler)
        await sensor.load_twin()
    except Exception as exc:  # the SDK raises its own error types; say it plainly and let the runtime restart us
        log.error("cannot connect to edgeHub: %r; exiting so that the IoT Edge runtime restarts the module", exc)
        await _shutdown(client)
        return 1
    count = "unlimited" if settings.message_count < 0 else settings.message_count
    delay, send_data = sensor.delay, sensor.send_data
    log.info("ready: output=%s count=%s delay=%gs send_data=%s batchId=%s", OUTPUT, count, delay, send_data, sensor.batch_id)
    sending = loop.create_task(sensor.run())
    sending.add_done_callback(lambda task: task.cancelled() or task.exception() is None or stopped.set())  # a bug: exit
    await stopped.wait()  # after the last message too: Microsoft's keeps running
    sensor.stop()
    with contextlib.suppress(Exception):  # what it raised is looked at below
        await asyncio.wait_for(sending, STOP_TIMEOUT_S)  # sends in flight; on timeout the client's shutdown ends them
    crash = None if sending.cancelled() else sending.exception()
    if crash is not None:
        log.error("sending failed", exc_info=crash)
    log.info("stopped: sent=%d failed=%d", sensor.sent, sensor.failed)
    await _shutdown(client)
    return 0 if crash is None else 1


async def _shutdown(client: IoTHubModuleClient) -> None:
    try:
        await asyncio.wait_for(client.shutdown(), STOP_TIMEOUT_S)
    except Exception as exc:  # exiting anyway; say so
        log.warning("client shutdown: %r", exc)
