"""Intake from edgeHub: the SDK calls our handler on its own handler loop (a thread of its own).

The handler only hands the message over to our loop (edgekit.handoff: wake-ups coalesced, arrivals
in groups). There each group is journaled with one write (app/core/journal.py) and queued in an
ordered inbox; one feeder task moves the inbox into the pipeline, waiting while the model's queue
is full. The SDK acknowledges MQTT messages on arrival and cannot pause delivery, so while we
wait, messages gather: in memory up to INBOX_MAX_BYTES, then only in the journal (read back in
order once memory frees up), and past the journal's disk budget (or past memory with the journal
off) each new message gets an `overloaded` error record at once: counted, never silent.

After a restart the journal's unsettled inputs (their outcome never reached edgeHub) are fed
first, before anything new.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from azure.iot.device import Message

from app.core.errors import ErrorCode
from app.core.journal import IntakeJournal
from app.core.messages import InMessage, OutMessage
from app.core.pipeline import Pipeline
from edgekit.handoff import Handoff

log = logging.getLogger(__name__)

READ_BACK_CHUNK = 256  # inputs read back from the journal at a time
YIELD_EVERY = 32  # inputs fed to the pipeline between two turns of the event loop
FLUSH_INTERVAL_S = 0.5  # DONE records and segment clean-up, when no arrivals carry them


def message_from_sdk(message: Message) -> InMessage:
    """The SDK's message as ours; whatever the SDK hands over, a message with its id comes out."""
    data = message.data
    body = data if isinstance(data, bytes) else b"" if data is None else str(data).encode("utf-8", "replace")
    properties = message.custom_properties if isinstance(message.custom_properties, dict) else {}
    return InMessage(
        body=body,
        message_id=None if message.message_id is None else str(message.message_id),
        input_name=str(message.input_name or ""),
        # edgeHub's own `$.` keys (`$.cdid`, `$.cmid`) describe this hop; they are not carried on.
        custom_properties={str(k): str(v) for k, v in properties.items() if not str(k).startswith("$.")},
        received_at=time.perf_counter(),
        content_type=None if message.content_type is None else str(message.content_type),
        content_encoding=None if message.content_encoding is None else str(message.content_encoding),
    )


class Intake:
    """Moves messages from the SDK's handler thread into the pipeline, in arrival order."""

    def __init__(
        self,
        pipeline: Pipeline,
        loop: asyncio.AbstractEventLoop,
        journal: IntakeJournal | None = None,
        max_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self._pipeline = pipeline
        self._journal = journal
        self._max_bytes = max_bytes
        self._handoff: Handoff[InMessage] = Handoff(loop, deliver_group=self._accept)
        self._inbox: deque[InMessage] = deque()
        self._inbox_bytes = 0
        self._read_back_from: int | None = None  # journal seq: inputs from here on are on disk only
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()  # set while everything handed over is in the pipeline
        self._drained.set()
        self._running = asyncio.Event()  # feeding starts once the module is ready (twin applied)
        self._closing = False
        self._winding_down = False  # stopping: what is only on disk waits for the next run
        self._shedding: set[asyncio.Task[None]] = set()
        self.accepted = self.shed = self.spilled = self.replayed = 0
        self.backlog_peak = 0
        self.backlog_bytes_peak = 0
        if journal is not None:
            unsettled, first = journal.open()
            if unsettled:
                self._read_back_from = first
                self.replayed = unsettled
                self._drained.clear()
        self._task = loop.create_task(self._feed(), name="intake")
        self._flusher = loop.create_task(self._flush_journal(), name="journal-flush") if journal is not None else None

    async def on_message(self, message: Message) -> None:
        """The SDK's handler; runs on the SDK's handler loop, not ours."""
        try:
            msg = message_from_sdk(message)
        except Exception:  # a bug of ours: it must not stop the SDK's handler
            log.exception("input message could not be read from the SDK")
            return
        self._handoff.put(msg)

    def start(self) -> None:
        """Begin feeding the pipeline (what arrived meanwhile is journaled and waits, in order)."""
        self._running.set()

    def _accept(self, group: list[InMessage]) -> None:
        self.accepted += len(group)
        try:
            refused = self._journal.append(group) if self._journal is not None else []
        except OSError as exc:  # closed past the stop deadline (JournalError), or a disk error: still an outcome each
            log.error("journal write failed (%s); these %d inputs are kept in memory only", exc, len(group))
            refused = []
        for msg in refused:
            self._shed(msg, "the module's journal is full (JOURNAL_MAX_BYTES): it receives faster than it can score and send")
        refused_ids = {id(m) for m in refused}
        inbox = self._inbox
        for msg in group:
            if id(msg) in refused_ids:
                continue
            size = len(msg.body)
            if self._read_back_from is None and (self._inbox_bytes + size <= self._max_bytes or not inbox):
                inbox.append(msg)
                self._inbox_bytes += size
            elif msg.journal_seq is not None:  # on disk already: read back in order when memory frees up
                if self._read_back_from is None:
                    assert msg.journal_seq is not None
                    self._read_back_from = msg.journal_seq
                self.spilled += 1
            else:
                self._shed(msg, "the module's memory for waiting inputs is full (INBOX_MAX_BYTES) and INTAKE_JOURNAL is off")
        self._drained.clear()
        self.backlog_peak = max(self.backlog_peak, len(inbox))
        self.backlog_bytes_peak = max(self.backlog_bytes_peak, self._inbox_bytes)
        self._arrived.set()

    def _shed(self, msg: InMessage, reason: str) -> None:
        self.shed += 1
        task = asyncio.get_running_loop().create_task(self._pipeline.reject(msg, ErrorCode.OVERLOADED, reason))
        self._shedding.add(task)
        task.add_done_callback(self._shedding.discard)

    async def _read_back(self) -> None:
        """Move the next inputs that are on disk only into the inbox."""
        assert self._journal is not None and self._read_back_from is not None
        start = self._read_back_from
        msgs = await asyncio.to_thread(self._journal.read_inputs, start, READ_BACK_CHUNK)
        if self._read_back_from != start:  # cannot happen (one feeder), but never read twice
            return
        now = time.perf_counter()
        for msg in msgs:
            msg.received_at = now
            self._inbox.append(msg)
            self._inbox_bytes += len(msg.body)
        if msgs:
            last = msgs[-1].journal_seq
            assert last is not None
            self._read_back_from = last + 1
        if self._read_back_from >= self._journal.next_seq:
            self._read_back_from = None  # caught up: new arrivals stay in memory again

    async def _feed(self) -> None:
        await self._running.wait()
        inbox, submit = self._inbox, self._pipeline.submit
        while True:
            fed = 0
            while inbox:
                msg = inbox.popleft()
                self._inbox_bytes -= len(msg.body)
                await submit(msg)  # returns without yielding while the model's queue has room, so ...
                fed += 1
                if fed % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # ... let arrivals be journaled meanwhile: what waits unwritten is what a crash loses
            if self._read_back_from is not None and not self._winding_down:
                await self._read_back()
                continue
            self._drained.set()
            if self._closing:
                return
            self._arrived.clear()
            await self._arrived.wait()

    async def _flush_journal(self) -> None:
        assert self._journal is not None
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)  # a period, not a synchronisation: DONE records may wait this long
            self._journal.flush()

    def delivered(self, out: OutMessage) -> None:
        """edgeHub took this output: the inputs it answers need no replay."""
        if self._journal is not None and out.settles:
            self._journal.settle(out.settles)

    @property
    def journal(self) -> IntakeJournal | None:
        return self._journal

    async def settle(self) -> None:
        """Return once every message handed over so far has had its outcome sent."""
        while True:
            accepted = self.accepted
            await self._drained.wait()
            if self._shedding:
                await asyncio.gather(*list(self._shedding))
            await self._pipeline.wait_idle()
            if self.accepted == accepted:
                return

    def wind_down(self) -> None:
        """The module is stopping: feed what is in memory, leave what is only in the journal for the next run."""
        self._winding_down = True
        self._running.set()
        self._arrived.set()

    async def close(self) -> None:
        """Feed everything already handed over (what is in memory), then stop."""
        self._winding_down = self._closing = True
        self._running.set()
        self._arrived.set()
        await self._task
        if self._shedding:
            await asyncio.gather(*list(self._shedding))

    def close_journal(self) -> None:
        """After the pipeline has sent everything: record the last settlements and close the file."""
        if self._flusher is not None:
            self._flusher.cancel()
        if self._journal is not None:
            self._journal.close()
