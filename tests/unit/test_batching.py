"""Micro-batching: idle -> at once, busy -> batches form, size cap, order, backpressure, max wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.core.batching import MicroBatcher

BOUND = 5.0  # seconds: generous bound on every wait; the tests finish far sooner


class GatedProcessor:
    """Records batches; while the gate is shut, a batch stays 'in the model'."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.started_at: list[float] = []

    async def __call__(self, batch: list[int]) -> None:
        self.batches.append(batch)
        self.started_at.append(time.perf_counter())
        self.started.set()
        await self.gate.wait()

    async def wait_batches(self, n: int) -> None:
        async with asyncio.timeout(BOUND):
            while len(self.batches) < n:
                self.started.clear()
                await self.started.wait()


async def _batcher(proc: GatedProcessor, **kw: float) -> MicroBatcher[int]:
    b: MicroBatcher[int] = MicroBatcher(proc, **kw)  # type: ignore[arg-type]
    b.start()
    return b


async def _busy(**kw: float) -> tuple[GatedProcessor, MicroBatcher[int]]:
    """A batcher whose model is busy with item 0 (the gate is shut)."""
    proc = GatedProcessor()
    b = await _batcher(proc, **kw)
    proc.gate.clear()
    await b.put(0)
    await proc.wait_batches(1)
    return proc, b


async def test_lone_item_is_processed_at_once_in_a_batch_of_its_own() -> None:
    proc = GatedProcessor()
    b = await _batcher(proc, max_items=256)
    await b.put(7)
    await proc.wait_batches(1)
    assert proc.batches == [[7]]
    await b.close()


async def test_items_that_queue_while_the_model_is_busy_form_the_next_batch_in_order() -> None:
    proc, b = await _busy(max_items=256)
    for i in range(1, 10):
        await b.put(i)
    assert b.depth == 9
    proc.gate.set()
    await proc.wait_batches(2)
    assert proc.batches == [[0], list(range(1, 10))]
    await b.close()


async def test_batches_are_capped_at_max_items_and_keep_order() -> None:
    proc, b = await _busy(max_items=4)
    for i in range(1, 10):
        await b.put(i)
    proc.gate.set()
    await b.close()
    assert proc.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert b.batches == 4


async def test_full_queue_makes_put_wait_until_the_model_takes_a_batch() -> None:
    proc, b = await _busy(max_items=256, max_queued=3)
    for i in (1, 2, 3):
        await b.put(i)
    blocked = asyncio.create_task(b.put(4))
    for _ in range(20):  # give the task every chance to run; it must stay blocked
        await asyncio.sleep(0)
    assert not blocked.done()
    assert b.queue_full_waits == 1
    assert b.depth == 3
    proc.gate.set()
    await asyncio.wait_for(blocked, BOUND)
    await b.close()
    assert [i for batch in proc.batches for i in batch] == [0, 1, 2, 3, 4]


async def test_max_wait_fills_a_batch_before_the_deadline() -> None:
    proc = GatedProcessor()
    b = await _batcher(proc, max_items=5, max_wait_s=2.0)
    t0 = time.perf_counter()
    for i in range(5):
        await b.put(i)
    await proc.wait_batches(1)
    assert proc.batches == [[0, 1, 2, 3, 4]]
    assert proc.started_at[0] - t0 < 1.0  # full batch: no need to wait out the 2 s
    await b.close()


async def test_max_wait_holds_a_lone_item_until_the_deadline() -> None:
    proc = GatedProcessor()
    b = await _batcher(proc, max_items=5, max_wait_s=0.05)
    t0 = time.perf_counter()
    await b.put(1)
    await proc.wait_batches(1)
    assert proc.started_at[0] - t0 >= 0.045
    assert proc.batches == [[1]]
    await b.close()


async def test_close_processes_everything_queued() -> None:
    proc = GatedProcessor()
    b = await _batcher(proc, max_items=3)
    for i in range(10):
        await b.put(i)
    await b.close()
    assert [i for batch in proc.batches for i in batch] == list(range(10))
    with pytest.raises(RuntimeError):
        await b.put(99)


async def test_a_failing_processor_does_not_stop_the_worker() -> None:
    seen: list[list[int]] = []

    async def process(batch: list[int]) -> None:
        seen.append(batch)
        if batch == [0]:
            raise RuntimeError("boom")

    b: MicroBatcher[int] = MicroBatcher(process, max_items=1)
    b.start()
    await b.put(0)
    await b.put(1)
    await b.close()
    assert seen == [[0], [1]]


async def test_a_cancelled_waiting_put_gives_its_slot_back() -> None:
    proc, b = await _busy(max_items=256, max_queued=1)
    await b.put(1)  # the queue's one slot
    waiting = asyncio.create_task(b.put(2))
    queued_after = asyncio.create_task(b.put(3))
    for _ in range(5):
        await asyncio.sleep(0)
    waiting.cancel()
    proc.gate.set()
    await asyncio.wait_for(queued_after, BOUND)
    await b.close()
    assert waiting.cancelled()
    assert [i for batch in proc.batches for i in batch] == [0, 1, 3]
    assert b.try_put(4) is False  # closed
