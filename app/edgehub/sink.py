"""Outputs to edgeHub: each message is sent as its own task, at most MAX_SENDS_IN_FLIGHT at once; a
send that fails is retried, and a message that still cannot be sent is logged and counted.

Every output carries content type application/json and encoding utf-8 (edgeHub's `WHERE $body...`
routes need both), a fresh message id, and the input's id as correlation id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient

from app.core.messages import OutMessage

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
