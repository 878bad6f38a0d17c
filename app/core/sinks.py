"""Where output messages go, and the wrappers the pipeline puts around them.

The pipeline hands every outcome to one Sink (messages.py). What a front end brings:
- edgeHub: app/edgehub/sink.py (the only one that needs the SDK)
- `serve` (HTTP only): RepliesOnly; every request carries its own reply
- `score FILE`, `selftest`: OrderedWriter, one line per input line, in input order
- `simulate`: its console view (app/commands/simulate.py)
What the pipeline adds around it:
- CountingSink, innermost: counts output messages; a refusal is logged and counted, never raised,
  so one output's failure cannot change any other message's outcome
- AggregatingSink, when AGGREGATE is on: packs predictions into few messages of at most
  AGGREGATE_MAX_BYTES, and sends a partly filled one after AGGREGATE_MAX_DELAY_MS
"""

from __future__ import annotations

import asyncio
import logging
from typing import BinaryIO

from app.core.encoding import Aggregator
from app.core.messages import OutMessage, Sink
from app.core.stats import Stats

log = logging.getLogger(__name__)


class CountingSink:
    def __init__(self, sink: Sink, stats: Stats) -> None:
        self._sink = sink
        self._stats = stats

    async def send(self, out: OutMessage) -> None:
        self._stats.output_messages += 1
        try:
            await self._sink.send(out)
        except Exception as exc:
            self._stats.send_failures += 1
            log.error("output lost: the sink refused it (%r): output=%s correlation_id=%s", exc, out.output, out.correlation_id)

    async def flush(self) -> None:
        await self._sink.flush()


class AggregatingSink:
    """Packs `packable` outputs (one input's predictions each) into aggregates; passes the rest on.

    Each item carries its input's message id; an item too large for the budget on its own travels
    alone. Billing is per 4 KB block, so filling blocks is what saves money.
    """

    def __init__(self, inner: Sink, aggregator: Aggregator, max_delay_s: float) -> None:
        self._inner = inner
        self._aggregator = aggregator
        self._max_delay_s = max_delay_s
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def send(self, out: OutMessage) -> None:
        if not out.packable:
            await self._inner.send(out)
            return
        aggregator = self._aggregator
        for full in aggregator.add(out.body, out.settles):
            await self._inner.send(full)
        if not len(aggregator):
            if self._timer is not None:  # it was just sent full
                self._timer.cancel()
                self._timer = None
        elif self._timer is None:  # a partly filled aggregate goes at most max_delay_s after it started
            self._timer = asyncio.get_running_loop().call_later(self._max_delay_s, self._on_due)

    def _on_due(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.drain())
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Send the partly filled aggregate now (before a change of settings, or at the end)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for out in self._aggregator.drain():
            await self._inner.send(out)

    async def flush(self) -> None:
        await self.drain()
        if self._background:
            await asyncio.gather(*list(self._background))
        await self._inner.flush()


class RepliesOnly:
    """The sink of `serve`: every message it takes carries a reply, so nothing reaches here."""

    async def send(self, msg: OutMessage) -> None:
        log.warning("output without a requester dropped: output=%s correlation_id=%s", msg.output, msg.correlation_id)

    async def flush(self) -> None:
        return None


class OrderedWriter:
    """Writes bodies, one per line, in input order (correlation ids 0, 1, 2...): outputs may finish
    out of order (errors skip the model)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending: dict[int, bytes] = {}
        self._next = 0

    async def send(self, msg: OutMessage) -> None:
        self._pending[int(msg.correlation_id or 0)] = msg.body
        while self._next in self._pending:
            self._out.write(self._pending.pop(self._next) + b"\n")
            self._next += 1

    async def flush(self) -> None:
        self._out.flush()
