"""The intake journal: every input written to disk on arrival, settled once its outcome is with
edgeHub, and read back after a crash or a restart, or when memory is full.

Why: azure-iot-device acknowledges QoS 1 inputs when they reach the client, not when we are done
with them, and intake outruns scoring, so a backlog otherwise lives only in memory: SIGKILL 1 s
after a restart with 2,000 queued inputs lost 1,569 of them. With the journal, a crash costs at
most the inputs that arrived since the last write (the intake writes each group of arrivals as it
takes it over from the SDK's thread), and a clean stop costs nothing.

Format: segment files `seg-<n>.log` of records `[kind u8][length u32][crc32 u32][payload]`:
- IN (1): an input: seq u64, header length u32, a JSON header (id, input, properties, content
  type and encoding; or, for an input landed as it came off the wire, {"wire": the transport's own
  header, e.g. its MQTT topic}, decoded by the transport when read back), the body.
- DONE (2): seqs (u64 each) whose outcome edgeHub took.
- TRY (3): seqs of a batch about to go into the model, written before it does (one small write per
  batch). After a restart each unsettled input counts its TRY records: an input that was in the
  model each time the module died (a crash in run(), out of memory, a hang the watchdog ended) is set
  aside at REPLAY_LIMIT instead of killing every run that replays it.
Seqs increase from record to record and from segment to segment, across runs too. A torn record
at the end of the last segment (a crash mid-write) fails its CRC and is ignored.

Durability: os.write per group survives the process being killed; fdatasync runs on a thread of
its own, at most every SYNC_INTERVAL_S, which bounds what a power cut can take.

Space: each segment knows its seq range and how many of its inputs are unsettled; a segment whose
inputs are all settled is deleted, oldest first (a DONE lands in the same or a later segment than
its IN, so deleting oldest-first never brings a settled input back). Past max_bytes, append()
refuses: the caller sheds the input with an `overloaded` error record. An input whose outcome can
never be sent pins its segment and those after it until the budget is reached: shedding, counted,
is the bound.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from app.core.messages import InMessage

log = logging.getLogger(__name__)

IN, DONE, TRY = 1, 2, 3
_HEAD = struct.Struct("<BII")  # kind, payload length, crc32 of the payload
_SEQ = struct.Struct("<Q")
_HEADER_LEN = struct.Struct("<I")
SEGMENT_BYTES = 4 * 1024 * 1024
SYNC_INTERVAL_S = 0.2


WireDecoder = Callable[[str, bytes], InMessage]  # (the transport's header, body) -> the input


class JournalError(OSError):
    """The journal cannot be used (directory not writable, disk error); the message says what to do."""


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int = 0
    first_seq: int = 0  # of its first input; 0 while it has none
    last_seq: int = 0
    unsettled: int = 0


def _record(kind: int, payload: bytes) -> bytes:
    return _HEAD.pack(kind, len(payload), zlib.crc32(payload)) + payload


def _header_of(msg: InMessage) -> bytes:
    return orjson.dumps(
        {
            "id": msg.message_id,
            "input": msg.input_name,
            "props": msg.custom_properties,
            "ct": msg.content_type,
            "ce": msg.content_encoding,
        }
    )


def _input_seq(payload: bytes) -> int:
    return int(_SEQ.unpack_from(payload, 0)[0])


def _decode_input(payload: bytes, decode_wire: WireDecoder | None) -> InMessage:
    start = _SEQ.size + _HEADER_LEN.size
    (header_len,) = _HEADER_LEN.unpack_from(payload, _SEQ.size)
    header = orjson.loads(payload[start : start + header_len])
    body = payload[start + header_len :]
    if "wire" in header:  # landed undecoded: the transport decodes it (as it would have on arrival)
        if decode_wire is None:
            raise JournalError("the journal holds inputs as they came off the wire, and no decoder for them was set")
        msg = decode_wire(header["wire"], body)
    else:
        msg = InMessage(
            body=body,
            message_id=header["id"],
            input_name=header["input"],
            custom_properties=header["props"],
            content_type=header["ct"],
            content_encoding=header["ce"],
        )
    msg.journal_seq = _input_seq(payload)
    return msg


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(kind, payload) of every whole record of a segment; stops at a torn or corrupt tail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # settled and deleted meanwhile
        return
    offset = 0
    while offset + _HEAD.size <= len(data):
        kind, length, crc = _HEAD.unpack_from(data, offset)
        payload = data[offset + _HEAD.size : offset + _HEAD.size + length]
        if kind not in (IN, DONE, TRY) or len(payload) != length or zlib.crc32(payload) != crc:
            return  # a torn tail: the write it belongs to never completed
        yield kind, payload
        offset += _HEAD.size + length


class IntakeJournal:
    """append() may run on any thread (the edgeHub adapter lands inputs on paho's network thread, before
    they are acknowledged); settle(), flush() and close() on the event loop; read_inputs() on a worker
    thread. One lock serialises the writers; read_inputs() reads files only."""

    def __init__(self, directory: str | Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise JournalError(
                f"journal directory {self.directory} is not writable ({exc.strerror or exc}): mount a volume there "
                "(JOURNAL_DIR) or set INTAKE_JOURNAL=off"
            ) from None
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []  # first_seq of each segment that has inputs, for bisect ...
        self._indexed: list[_Segment] = []  # ... and those segments, in the same order
        self._pending_done: list[int] = []
        self._done_at_open = array("Q")  # settled in an earlier run: skipped when reading back
        self._tries: dict[int, int] = {}  # an earlier run's input -> times it went into the model (TRY records)
        self.first_seq_of_run = 1  # inputs below it are an earlier run's (replayed)
        self.decode_wire: WireDecoder | None = None  # for inputs journaled by land(): the transport's decoder
        self.next_seq = 1
        self._fd = -1
        self._lock = threading.Lock()  # the fd and the segment list, against the sync thread
        self._writing = threading.RLock()  # append / settle / flush / close, from whichever thread
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None
        self.appended = self.settled = self.refused = 0

    # --- opening -------------------------------------------------------------------------------

    def open(self) -> tuple[int, int]:
        """Take over what a previous run left; returns (unsettled inputs, the first seq to read back from)."""
        done: list[int] = []
        for path in sorted(self.directory.glob("seg-*.log")):
            try:
                number = int(path.stem.split("-")[1])
            except (IndexError, ValueError):
                continue
            segment = _Segment(number, path, path.stat().st_size)
            for kind, payload in _records(path):
                if kind == IN:
                    seq = _input_seq(payload)
                    segment.first_seq = segment.first_seq or seq
                    segment.last_seq = seq
                    segment.unsettled += 1
                    self.next_seq = max(self.next_seq, seq + 1)
                elif kind == DONE:
                    done.extend(s for (s,) in _SEQ.iter_unpack(payload))
                else:
                    for (s,) in _SEQ.iter_unpack(payload):
                        self._tries[s] = self._tries.get(s, 0) + 1
            self._segments.append(segment)
            if segment.first_seq:
                self._firsts.append(segment.first_seq)
                self._indexed.append(segment)
        done.sort()
        self._done_at_open = array("Q", done)
        for seq in done:  # count the settled ones out of their segments
            owner = self._segment_of(seq)
            if owner is not None:
                owner.unsettled -= 1
        unsettled = sum(s.unsettled for s in self._segments)
        first = next((s.first_seq for s in self._segments if s.unsettled), self.next_seq)
        self.first_seq_of_run = self.next_seq
        self._new_segment()
        self._drop_settled_segments()
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-sync", daemon=True)
        self._syncer.start()
        if unsettled:
            log.info("journal: %d inputs of an earlier run have no outcome yet; they are scored first", unsettled)
        return unsettled, first

    # --- writing -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def unsettled(self) -> int:
        return sum(s.unsettled for s in self._segments)

    def append(self, msgs: Iterable[InMessage]) -> list[InMessage]:
        """Journal the inputs with one write; returns those that did not fit the disk budget (not journaled)."""
        msgs = list(msgs)
        with self._writing:
            seqs = self._append([(_header_of(msg), msg.body) for msg in msgs])
        refused = []
        for msg, seq in zip(msgs, seqs, strict=True):
            if seq is None:
                refused.append(msg)
            else:
                msg.journal_seq = seq
        return refused

    def land(self, wire_header: str, body: bytes) -> int | None:
        """Journal one input as it came off the wire, undecoded (the transport's own header, e.g. its MQTT topic):
        cheap enough for the transport's receiving thread. Read back through `decode_wire` (set it before
        read_inputs()). Its seq, or None past the disk budget."""
        with self._writing:
            return self._append([(orjson.dumps({"wire": wire_header}), body)])[0]

    def _append(self, entries: list[tuple[bytes, bytes]]) -> list[int | None]:
        """(JSON header, body) of each input -> its seq, or None where the disk budget refused it."""
        if self._fd < 0:
            raise JournalError("the journal is closed")
        chunks: list[bytes] = []
        seqs: list[int | None] = []
        size = self.size
        if self._pending_done:
            chunks.append(self._done_record())
            size += len(chunks[0])
            self._pending_done = []
        for header, body in entries:
            seq = self.next_seq
            record = _record(IN, _SEQ.pack(seq) + _HEADER_LEN.pack(len(header)) + header + body)
            if size + len(record) > self.max_bytes and self._segments[-1].unsettled == 0:
                # The head segment holds only settled inputs: start a new one so that it can go.
                self._write(b"".join(chunks))
                chunks = []
                self._new_segment()
                self._drop_settled_segments()
                size = self.size
            if size + len(record) > self.max_bytes:
                seqs.append(None)
                self.refused += 1
                continue
            head = self._segments[-1]
            self.next_seq += 1
            seqs.append(seq)
            chunks.append(record)
            size += len(record)
            if not head.first_seq:
                head.first_seq = seq
                self._firsts.append(seq)
                self._indexed.append(head)
            head.last_seq = seq
            head.unsettled += 1
            self.appended += 1
        self._write(b"".join(chunks))
        return seqs

    def settle(self, seqs: Iterable[int]) -> None:
        """Their outcomes are with edgeHub: recorded as DONE with the next write (or flush())."""
        with self._writing:
            self._settle(seqs)

    def _settle(self, seqs: Iterable[int]) -> None:
        if self._fd < 0:  # closed (the module is past its stop deadline): they will be scored again
            return
        for seq in seqs:
            segment = self._segment_of(seq)
            if segment is not None and segment.unsettled > 0:
                segment.unsettled -= 1
                self._pending_done.append(seq)
                self.settled += 1

    def mark_tried(self, seqs: Iterable[int]) -> None:
        """These inputs go into the model now: recorded at once (the next run must know, if this one dies)."""
        payload = b"".join(_SEQ.pack(s) for s in seqs)
        if not payload:
            return
        with self._writing:
            if self._fd < 0:
                return
            # Settlements first, in the same write: what had its outcome before these went in must not count their death.
            done = b""
            if self._pending_done:
                done, self._pending_done = self._done_record(), []
            self._write(done + _record(TRY, payload))

    def flush(self) -> None:
        """Write pending DONE records now, and delete the segments that hold nothing unsettled."""
        with self._writing:
            self._flush()

    def _flush(self) -> None:
        if self._fd < 0:
            return
        if self._pending_done:
            self._write(self._done_record())
            self._pending_done = []
        head = self._segments[-1]
        if head.unsettled == 0 and (head.size >= self._segment_bytes // 8 or self.size > self.max_bytes // 2):
            self._new_segment()  # a settled head can go too, once it is worth a new file
        self._drop_settled_segments()

    def _segment_of(self, seq: int) -> _Segment | None:
        i = bisect.bisect_right(self._firsts, seq) - 1
        if i < 0:
            return None
        segment = self._indexed[i]
        return segment if seq <= segment.last_seq else None

    def _done_record(self) -> bytes:
        return _record(DONE, b"".join(_SEQ.pack(s) for s in self._pending_done))

    def _write(self, data: bytes) -> None:
        if not data:
            return
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._segments[-1].size += len(data)
        self._dirty.set()
        if self._segments[-1].size >= self._segment_bytes:
            self._new_segment()
            self._drop_settled_segments()

    def _new_segment(self) -> None:
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self.directory / f"seg-{number:08d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with self._lock:
            old, self._fd = self._fd, fd
            self._segments.append(_Segment(number, path))
        if old >= 0:
            self._retire(old)

    def _retire(self, fd: int) -> None:
        """Sync and close a full segment's descriptor off the event loop (fsync can take a while on flash)."""

        def sync_and_close() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        threading.Thread(target=sync_and_close, name="journal-retire", daemon=True).start()

    def _drop_settled_segments(self) -> None:
        while len(self._segments) > 1 and self._segments[0].unsettled == 0:
            with self._lock:  # read_inputs() lists the segments on a worker thread
                oldest = self._segments.pop(0)
            if oldest.first_seq:
                self._firsts.pop(0)
                self._indexed.pop(0)
            oldest.path.unlink(missing_ok=True)
        if self._done_at_open and self._segments[0].first_seq > self._done_at_open[-1]:
            self._done_at_open = array("Q")  # every earlier run's record is gone

    # --- reading back ----------------------------------------------------------------------------

    def read_inputs(self, from_seq: int, limit: int, until_seq: int | None = None) -> list[InMessage]:
        """Up to `limit` unsettled inputs with from_seq <= seq <= until_seq, in order (for replay and for
        what memory could not hold). Reads files only: safe on a worker thread while others append."""
        with self._lock:
            paths = [s.path for s in self._segments if s.first_seq and s.last_seq >= from_seq]
        done = self._done_at_open
        out: list[InMessage] = []
        for path in paths:
            for kind, payload in _records(path):
                if kind != IN:
                    continue
                seq = _input_seq(payload)
                if seq < from_seq:
                    continue
                if until_seq is not None and seq > until_seq:
                    return out
                i = bisect.bisect_left(done, seq)
                if i < len(done) and done[i] == seq:
                    continue
                msg = _decode_input(payload, self.decode_wire)
                if seq < self.first_seq_of_run:
                    msg.attempts = self._tries.get(seq, 0)
                out.append(msg)
                if len(out) >= limit:
                    return out
        return out

    # --- syncing and closing -------------------------------------------------------------------

    def _sync_loop(self) -> None:
        """fdatasync what was written, at most every SYNC_INTERVAL_S (durability against a power cut)."""
        while not self._closed.is_set():
            self._dirty.wait()
            self._dirty.clear()
            with self._lock:  # a copy of the descriptor: the loop may rotate or close the segment meanwhile
                fd = os.dup(self._fd) if self._fd >= 0 else -1
            if fd >= 0:
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            self._closed.wait(SYNC_INTERVAL_S)  # rate limit: writes meanwhile share the next sync; close() cuts it short

    def close(self) -> None:
        """Write what is pending, sync, stop the background thread. Appends after it raise JournalError."""
        with self._writing:
            if self._fd < 0:
                return
            self._flush()
            self._closed.set()
            self._dirty.set()
            if self._syncer is not None:
                self._syncer.join(timeout=5)
            with self._lock:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
