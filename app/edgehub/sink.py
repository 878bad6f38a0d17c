"""Outputs to edgeHub: each message is sent as its own task, at most MAX_SENDS_IN_FLIGHT at once.

A send that fails is retried with back-off (1 s, 2 s, 4 s ... at most RETRY_MAX_S) until edgeHub
takes it: an edgeHub restart or an outage of minutes costs no output. While outputs wait, the
in-flight slots stay taken, so the pipeline, then the intake, wait too; with the intake journal
the inputs are on disk meanwhile, and past its budget new inputs are shed, counted. Only when the
module stops are retries given up: with the journal those inputs are scored again at the next
start; without it they are logged and counted as lost.

Every output carries content type application/json and encoding utf-8 (edgeHub's `WHERE $body...`
routes need both), a fresh message id, and the input's id as correlation id. Once edgeHub has
acknowledged an output, `on_delivered` is told (the journal settles the inputs it answers).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient

from app.core.messages import OutMessage

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class EdgeSink:
    """Sends output messages through the module client, a bounded number at a time."""

    def __init__(
        self,
        client: IoTHubModuleClient,
        max_in_flight: int,
        on_delivered: Callable[[OutMessage], None] | None = None,
    ) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_delivered = on_delivered
        self._giving_up = asyncio.Event()
        self.sent = 0
        self.failed = 0
        self.retries = 0

    async def send(self, out: OutMessage) -> None:
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._deliver(out))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _message(self, out: OutMessage) -> Message:
        message = Message(
            out.body, message_id=uuid.uuid4().hex, content_encoding=out.content_encoding, content_type=out.content_type
        )
        message.correlation_id = out.correlation_id
        message.custom_properties = dict(out.custom_properties)
        return message

    async def _deliver(self, out: OutMessage) -> None:
        message = self._message(out)
        delay = RETRY_FIRST_S
        try:
            while True:
                try:
                    await self._client.send_message_to_output(message, out.output)
                except Exception as exc:  # the SDK raises several kinds; all mean "not sent"
                    if self._giving_up.is_set():
                        self.failed += 1
                        log.error(
                            "output not sent before stopping: output=%s correlation_id=%s error=%r",
                            out.output,
                            out.correlation_id,
                            exc,
                        )
                        return
                    self.retries += 1
                    log.warning("send to %s failed (%r); retrying in %.0f s", out.output, exc, delay)
                    try:  # back off, but give up at once when the module stops
                        async with asyncio.timeout(delay):
                            await self._giving_up.wait()
                    except TimeoutError:
                        pass
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                self.sent += 1
                if self._on_delivered is not None:
                    self._on_delivered(out)
                return
        finally:
            self._slots.release()

    def give_up_retrying(self) -> None:
        """The module is stopping: outputs that cannot be sent now are not retried any more."""
        self._giving_up.set()

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
