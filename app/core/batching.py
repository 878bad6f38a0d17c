"""Micro-batching without a latency tax.

One batch is in the model at a time. When the model is idle, whatever is queued (often a single
message) goes at once; while it is busy, messages queue and the next batch is what gathered, up to
`max_items`. There is no batching window unless `max_wait_s` asks for one: then a batch waits
until it is full or its oldest message has waited that long.

The queue is bounded by message count: `put` waits while it is full, which pauses whoever feeds
it (the transport's intake, the simulator, the file reader). Each such pause is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    def __init__(
        self,
        process: Callable[[list[T]], Awaitable[None]],
        max_items: int,
        max_wait_s: float = 0.0,
        max_queued: int = 2048,
    ) -> None:
        self._process = process
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self._queue: deque[tuple[T, float]] = deque()  # (item, enqueued at)
        self._free = max_queued  # queue slots; a counter, as asyncio.Semaphore costs ~1 µs a put
        self._putters: deque[asyncio.Future[None]] = deque()  # puts waiting for a slot, in order
        self._wakeup = asyncio.Event()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.queue_full_waits = 0

    @property
    def depth(self) -> int:
        """Messages waiting for the model."""
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    def try_put(self, item: T) -> bool:
        """Queue an item if there is room now (the per-message fast path)."""
        if self._free <= 0 or self._putters or self._closing:
            return False
        self._free -= 1
        self._enqueue(item)
        return True

    async def put(self, item: T) -> None:
        """Queue an item; waits while the queue is full."""
        if self._closing:
            raise RuntimeError("batcher is closed")
        if self._free > 0 and not self._putters:
            self._free -= 1
        else:
            self.queue_full_waits += 1
            await self._wait_for_slot()
        self._enqueue(item)

    def _enqueue(self, item: T) -> None:
        self._queue.append((item, time.perf_counter() if self.max_wait_s else 0.0))
        if self._idle.is_set():
            self._idle.clear()
        self._wakeup.set()

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._putters.append(waiter)
        try:
            await waiter  # _release hands the slot over before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(1)  # handed a slot but cancelled: give it back
            else:
                self._putters.remove(waiter)
            raise

    def _release(self, slots: int) -> None:
        self._free += slots
        while self._free > 0 and self._putters:
            self._free -= 1
            self._putters.popleft().set_result(None)

    async def close(self) -> None:
        """Process everything queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    async def wait_idle(self) -> None:
        """Return once the queue is empty and no batch is in the model."""
        await self._idle.wait()

    def _take(self) -> list[T]:
        queue = self._queue
        batch = [queue.popleft()[0] for _ in range(min(len(queue), self.max_items))]
        self._release(len(batch))
        self.batches += 1
        return batch

    async def _fill(self) -> None:
        """With max_wait_s: wait for a full batch, at most until the oldest item is that old."""
        deadline = self._queue[0][1] + self.max_wait_s
        while len(self._queue) < self.max_items and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.max_wait_s > 0:
                await self._fill()
            batch = self._take()
            try:
                await self._process(batch)
            except Exception:  # the processor owns per-item outcomes; never let the worker die
                log.exception("batch processing failed")
