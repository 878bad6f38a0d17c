"""Intake from edgeHub: the SDK calls our handler on its own handler loop (a thread of its own).

The handler only hands the message to our loop (edgekit.handoff, wake-ups coalesced), into an
ordered inbox; one feeder task moves it into the pipeline, waiting while the model's queue is
full. The SDK acknowledges MQTT messages on arrival and cannot pause delivery, so while we wait,
messages gather in the inbox (in order, counted) rather than being refused.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from azure.iot.device import Message

from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from edgekit.handoff import Handoff


class Intake:
    """Moves messages from the SDK's handler thread into the pipeline, in arrival order."""

    def __init__(self, pipeline: Pipeline, loop: asyncio.AbstractEventLoop) -> None:
        self._pipeline = pipeline
        self._handoff = Handoff(loop, self._accept)
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
            content_type=message.content_type,
            content_encoding=message.content_encoding,
        )
        self._handoff.put(msg)

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
