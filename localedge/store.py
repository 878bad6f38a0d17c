"""edgeHub's store-and-forward for one module: messages routed to it while it cannot take them, on disk, with a TTL.

One append-only file per target module under the run directory. A record is a fixed header (when it was stored,
its time to live, the lengths) then the input topic and the body. A reader cursor walks the file in order; once
it reaches the end the file is truncated, so a store that keeps up stays a few bytes long. A record older than its
TTL when it would be handed over is dropped instead and counted, as edgeHub drops an expired message.

Not thread-safe by itself: the Forwarder (localedge/forwarder.py) calls it under its lock.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localedge.wire import decode_properties

HEADER = struct.Struct("<dIII")  # stored at (wall clock s), ttl s, topic bytes, body bytes
EXPIRED_IDS_KEPT = 10_000  # message ids of expired messages kept for a test's or a user's accounting


@dataclass(frozen=True)
class StoredMessage:
    topic: str
    body: bytes
    stored_at: float
    ttl_s: int

    def expired(self, now: float) -> bool:
        return now - self.stored_at > self.ttl_s


@dataclass
class Batch:
    """What take() found: live messages to hand over, expired ones to drop, and where the cursor goes after."""

    messages: list[StoredMessage] = field(default_factory=list)
    expired: list[StoredMessage] = field(default_factory=list)
    end: int = 0


class MessageStore:
    """A FIFO of messages on disk with a per-message TTL; `expired` counts what aged out before delivery."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = open(path, "wb")  # noqa: SIM115 - open for the store's life, closed by close()
        self._reader = open(path, "rb")  # noqa: SIM115
        self._read_at = 0
        self.pending = 0  # records after the cursor
        self.stored = self.delivered = self.expired = 0
        self.expired_ids: list[str] = []

    def put(self, topic: str, body: bytes, ttl_s: int) -> None:
        """Append one message; written to the file (the OS's cache) before it returns."""
        raw_topic = topic.encode()
        self._writer.write(HEADER.pack(self.clock(), ttl_s, len(raw_topic), len(body)) + raw_topic + body)
        self._writer.flush()
        self.pending += 1
        self.stored += 1

    def take(self, limit: int) -> Batch:
        """Up to `limit` live messages from the cursor, in order (expired ones on the way collected apart); the
        cursor does not move until commit()."""
        batch = Batch(end=self._read_at)
        now = self.clock()
        while len(batch.messages) < limit and len(batch.messages) + len(batch.expired) < self.pending:
            message, batch.end = self._read(batch.end)
            (batch.expired if message.expired(now) else batch.messages).append(message)
        return batch

    def _read(self, offset: int) -> tuple[StoredMessage, int]:
        """The record at `offset` and the offset after it."""
        self._reader.seek(offset)
        stored_at, ttl_s, topic_len, body_len = HEADER.unpack(self._reader.read(HEADER.size))
        topic = self._reader.read(topic_len).decode()
        message = StoredMessage(topic, self._reader.read(body_len), stored_at, ttl_s)
        return message, offset + HEADER.size + topic_len + body_len

    def commit(self, batch: Batch) -> None:
        """The batch's live messages were handed over and its expired ones dropped: move the cursor past them."""
        self._read_at = batch.end
        self.pending -= len(batch.messages) + len(batch.expired)
        self.delivered += len(batch.messages)
        self.expired += len(batch.expired)
        for message in batch.expired:
            if len(self.expired_ids) < EXPIRED_IDS_KEPT:
                self.expired_ids.append(message_id(message.topic))
        if self.pending == 0:  # everything consumed: start the file over
            self._writer.truncate(0)
            self._writer.seek(0)
            self._read_at = 0

    def expire_head(self) -> int:
        """Drop the expired messages at the head (while nothing is delivered, so the counts stay current)."""
        dropped, now = 0, self.clock()
        while self.pending:
            message, end = self._read(self._read_at)
            if not message.expired(now):
                break
            self.commit(Batch(expired=[message], end=end))
            dropped += 1
        return dropped

    def size_bytes(self) -> int:
        return os.fstat(self._writer.fileno()).st_size

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def message_id(topic: str) -> str:
    """The `$.mid` of an input topic (`devices/d/modules/m/inputs/i/{props}`), or "" if it has none."""
    parts = topic.split("/", 6)
    return decode_properties(parts[6]).get("$.mid", "") if len(parts) > 6 else ""
