"""Intake from edgeHub: the SDK calls our handler on its own handler loop (a thread of its own).

With the journal on, each input is journaled before the SDK even sees it: `_land()` runs on paho's
network thread (edgekit.mqtt_socket's tap), and paho acknowledges the message to edgeHub only after
it returns. So there is no instant at which edgeHub has let go of an input and the journal does not
have it (before, a SIGKILL right after a start lost 17-137 inputs that paho had acknowledged and the
SDK still held in its queues). The handler then only hands the message over to our loop
(edgekit.handoff: wake-ups coalesced, arrivals in groups), where it is queued in an ordered inbox
(an input that did not land is journaled there, one write per group); one feeder task moves the
inbox into the pipeline, waiting while the model's queue is full. While the feeder is idle and the
queue has room, arrivals skip the inbox and go into the pipeline at once, in the same order: at low
rates no task wakes per message. The SDK acknowledges MQTT messages on arrival and cannot pause
delivery, so while we wait, messages gather: in memory up to
INBOX_MAX_BYTES, then only in the journal (read back in order once memory frees up), and past the
journal's disk budget (or past memory with the journal off) each new message gets an `overloaded`
error record at once: counted, never silent.

After a restart the journal's unsettled inputs (their outcome never reached edgeHub) are fed first,
before anything new; one that the module died with in the model REPLAY_LIMIT times gets a
`poison_input` error record instead (app/core/journal.py, TRY records).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from azure.iot.device import Message
from azure.iot.device.iothub.pipeline import mqtt_topic_iothub

from app.core.errors import ErrorCode
from app.core.journal import IntakeJournal
from app.core.messages import InMessage, OutMessage
from app.core.pipeline import Pipeline
from edgekit.handoff import Handoff

log = logging.getLogger(__name__)

READ_BACK_CHUNK = 256  # inputs read back from the journal at a time
YIELD_EVERY = 32  # inputs fed to the pipeline between two turns of the event loop
FLUSH_INTERVAL_S = 0.5  # DONE records and segment clean-up, when no arrivals carry them
LANDED_MAX = 100_000  # landed inputs the SDK has not handed over yet (normally a handful)


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


def input_from_wire(topic: str, body: bytes) -> InMessage:
    """A landed input read back from the journal: parsed as the SDK parses what it receives."""
    message = Message(body)
    mqtt_topic_iothub.extract_message_properties_from_topic(topic, message)
    message.input_name = mqtt_topic_iothub.get_input_name_from_topic(topic)
    return message_from_sdk(message)


class Intake:
    """Moves messages from the SDK's handler thread into the pipeline, in arrival order."""

    def __init__(
        self,
        pipeline: Pipeline,
        loop: asyncio.AbstractEventLoop,
        journal: IntakeJournal | None = None,
        max_bytes: int = 32 * 1024 * 1024,
        replay_limit: int = 3,
    ) -> None:
        self._pipeline = pipeline
        self._replay_limit = replay_limit
        # Landed (journaled on paho's thread) and not yet handed over by the SDK, keyed by the payload's
        # identity: the SDK's Message.data is paho's payload object itself. Dict operations are atomic.
        self._landed: dict[int, tuple[bytes, int | None]] = {}  # id(payload) -> (payload, its seq or None: refused)
        self._refused_landing: set[int] = set()  # id()s of landed inputs the journal had no room for
        self._input_topic = ""
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
        self.accepted = self.shed = self.spilled = self.replayed = self.poisoned = self.deferred = 0
        self.backlog_peak = 0
        self.backlog_bytes_peak = 0
        # The highest journal seq handed over by the SDK: landed inputs are on disk before the SDK hands
        # them over, and reading back must not take one the SDK is still about to hand over.
        self._accepted_seq = 0
        if journal is not None:
            journal.decode_wire = input_from_wire  # inputs landed on paho's thread are read back through it
            unsettled, first = journal.open()
            self._accepted_seq = journal.first_seq_of_run - 1
            pipeline.before_scoring = journal.mark_tried
            if unsettled:
                self._read_back_from = first
                self.replayed = unsettled
                self._drained.clear()
        self._task = loop.create_task(self._feed(), name="intake")
        self._flusher = loop.create_task(self._flush_journal(), name="journal-flush") if journal is not None else None

    def tap_for(self, device_id: str, module_id: str) -> Callable[[str, bytes], None] | None:
        """The function to call on paho's thread for each message, before it is acknowledged (None: no journal)."""
        if self._journal is None:
            return None
        # As the SDK tells inputs from twin, method and C2D traffic (mqtt_topic_iothub.is_input_topic).
        self._input_topic = f"devices/{device_id}/modules/{module_id}/inputs/"
        return self._land

    def _land(self, topic: str, payload: bytes) -> None:
        """paho's thread: journal an input before paho acknowledges it, as it came (parsed only if read back)."""
        if not topic.startswith(self._input_topic) or not isinstance(payload, bytes) or self._journal is None:
            return
        try:
            seq = self._journal.land(topic, payload)
        except OSError:  # closed (stopping) or a disk error: the loop's append says so, or keeps it in memory
            return
        landed = self._landed
        if len(landed) >= LANDED_MAX:  # the SDK dropped some (it should not): their records replay next start
            landed.pop(next(iter(landed)), None)
        landed[id(payload)] = (payload, seq)  # the payload held: its id stays its own until handed over

    async def on_message(self, message: Message) -> None:
        """The SDK's handler; runs on the SDK's handler loop, not ours."""
        try:
            msg = message_from_sdk(message)
        except Exception:  # a bug of ours: it must not stop the SDK's handler
            log.exception("input message could not be read from the SDK")
            return
        landed = self._landed.pop(id(message.data), None)
        if landed is not None and landed[0] is message.data:
            if landed[1] is None:
                # Over the disk budget when it landed: shed on our loop. Not journaled later either: it would
                # get a seq above inputs landed after it, and reading back could then take one of those twice.
                self._refused_landing.add(id(msg))
            else:
                msg.journal_seq = landed[1]
        self._handoff.put(msg)

    def start(self) -> None:
        """Begin feeding the pipeline (what arrived meanwhile is journaled and waits, in order)."""
        self._running.set()

    def _accept(self, group: list[InMessage]) -> None:
        self.accepted += len(group)
        refused = [msg for msg in group if id(msg) in self._refused_landing]
        refused_landing = {id(msg) for msg in refused}
        self._refused_landing -= refused_landing
        # Landed inputs are journaled already; the others are journaled here, one write for the group.
        unjournaled = [msg for msg in group if msg.journal_seq is None and id(msg) not in refused_landing]
        try:
            if self._journal is not None and unjournaled:
                refused += self._journal.append(unjournaled)
        except OSError as exc:  # closed past the stop deadline (JournalError), or a disk error: still an outcome each
            log.error("journal write failed (%s); these %d inputs are kept in memory only", exc, len(unjournaled))
        for msg in refused:
            self._shed(msg, "the module's journal is full (JOURNAL_MAX_BYTES): it receives faster than it can score and send")
        refused_ids = {id(m) for m in refused}
        inbox = self._inbox
        # While the feeder is idle (everything before is in the pipeline), a message goes straight to the model's
        # queue if it has room: no feeder task to wake per message at low rates. Once one waits, the rest of the
        # group queues behind it, in order.
        direct = self._drained.is_set() and self._running.is_set() and not self._winding_down
        try_submit = self._pipeline.try_submit
        queued = False
        for msg in group:
            if id(msg) in refused_ids:
                continue
            if msg.journal_seq is not None and msg.journal_seq > self._accepted_seq:
                self._accepted_seq = msg.journal_seq
            if self._winding_down and msg.journal_seq is not None:
                self.deferred += 1  # stopping: it is on disk, unsettled, and scored first at the next start
                continue
            if direct and try_submit(msg):
                continue
            direct = False
            queued = True
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
        if not queued:  # all in the pipeline (or shed, or deferred): nothing for the feeder
            return
        self._drained.clear()
        self.backlog_peak = max(self.backlog_peak, len(inbox))
        self.backlog_bytes_peak = max(self.backlog_bytes_peak, self._inbox_bytes)
        self._arrived.set()

    def _shed(self, msg: InMessage, reason: str) -> None:
        self.shed += 1
        self._reject(msg, ErrorCode.OVERLOADED, reason)

    def _reject(self, msg: InMessage, code: ErrorCode, reason: str) -> None:
        """Its error record, sent without the model (settle() waits for these too)."""
        task = asyncio.get_running_loop().create_task(self._pipeline.reject(msg, code, reason))
        self._shedding.add(task)
        task.add_done_callback(self._shedding.discard)

    def _set_aside(self, msg: InMessage) -> None:
        self.poisoned += 1
        reason = (
            f"the module died {msg.attempts} times while this input was being scored (a crash or hang in run(), "
            "out of memory, a kill): it is set aside so that the inputs after it flow (REPLAY_LIMIT)"
        )
        log.error("input %s set aside: %s", msg.message_id, reason)
        self._reject(msg, ErrorCode.POISON_INPUT, reason)

    async def _read_back(self) -> None:
        """Move the next inputs that are on disk only into the inbox."""
        assert self._journal is not None and self._read_back_from is not None
        start = self._read_back_from
        until = self._accepted_seq
        msgs = await asyncio.to_thread(self._journal.read_inputs, start, READ_BACK_CHUNK, until)
        if self._read_back_from != start:  # cannot happen (one feeder), but never read twice
            return
        now = time.perf_counter()
        for msg in msgs:
            msg.received_at = now
            if msg.attempts is not None and msg.attempts >= self._replay_limit:
                self._set_aside(msg)
                continue
            self._inbox.append(msg)
            self._inbox_bytes += len(msg.body)
        if len(msgs) == READ_BACK_CHUNK:
            last = msgs[-1].journal_seq
            assert last is not None
            self._read_back_from = last + 1
        else:  # everything up to `until` is read
            self._read_back_from = until + 1
        if self._read_back_from > until and self._accepted_seq == until:
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
        """The module is stopping: feed what is in memory, leave what is only in the journal for the next run.
        With the journal, inputs handed over from now on are left there too (`deferred`): the module can stop
        while the broker keeps delivering, without unsubscribing (app/edgehub/module.py)."""
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
