"""The messages that cross the module's edges, independent of the transport that carries them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"


@dataclass(slots=True, frozen=True)
class RequestInfo:
    """What an HTTP request adds to its body, for a script that reads it (Azure ML's request_headers, GET)."""

    method: str = "POST"
    query: str = ""  # raw, undecoded
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class InMessage:
    body: bytes
    message_id: str | None = None
    input_name: str = ""
    custom_properties: dict[str, str] = field(default_factory=dict)  # carried on to outputs as they are
    received_at: float = 0.0  # perf_counter() at intake, for end-to-end latency
    reply: asyncio.Future[Any] | None = None  # set: the outcome goes here (HTTP), not to the sink
    content_type: str | None = None  # picks the body's codec (decoding.CODECS); None: JSON
    content_encoding: str | None = None
    journal_seq: int | None = None  # its record in the intake journal, settled once its outcome is delivered
    # Replayed from an earlier run's journal: how many runs died while it was in the model (None: this run's).
    attempts: int | None = None
    request: RequestInfo | None = None  # an HTTP request's method, query and headers (None: an edge message)


@dataclass(slots=True)
class OutMessage:
    output: str
    body: bytes
    correlation_id: str | None = None
    custom_properties: dict[str, str] = field(default_factory=dict)
    content_type: str = CONTENT_TYPE
    content_encoding: str = CONTENT_ENCODING
    predictions: int = 0  # how many inputs' predictions it carries (0 for an error record)
    packable: bool = False  # an aggregate item (one input's predictions): AggregatingSink packs it
    settles: tuple[int, ...] = ()  # journal seqs of the inputs whose outcome this is (journal.settle once delivered)


class Sink(Protocol):
    """Where output messages go: edgeHub, a terminal, a file, a test's list."""

    async def send(self, msg: OutMessage) -> None:
        """Accept one message; may return before it is delivered, but must apply backpressure."""

    async def flush(self) -> None:
        """Return once every accepted message has been delivered (or its failure counted)."""
