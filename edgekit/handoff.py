"""The hand-over from another thread (the SDK's handler threads) to our event loop.

azure-iot-device 2.x calls handlers on its own threads. Touching our state there would need locks
everywhere, so each handler only hands its argument over, and the loop does the work. Every
`call_soon_threadsafe` writes to the loop's self-pipe and wakes it: at high message rates those
wake-ups were a fifth of the module's CPU. A Handoff coalesces them: items queue in a deque and
one scheduled drain takes all that arrived meanwhile, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Handoff(Generic[T]):
    """`put(item)` from any thread; `deliver(item)` runs on `loop`, once per item, in put order.

    With `deliver_group`, each drain hands over everything that gathered as one list instead (the
    intake journals a group with one write).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[T], None] | None = None,
        *,
        deliver_group: Callable[[list[T]], None] | None = None,
    ) -> None:
        if (deliver is None) == (deliver_group is None):
            raise TypeError("give deliver or deliver_group")
        self._loop = loop
        self._deliver = deliver
        self._deliver_group = deliver_group
        self._items: deque[T] = deque()
        self._scheduled = False

    def put(self, item: T) -> None:
        """Thread-safe. Appends first, then schedules a drain unless one is pending: a drain clears
        the flag before it empties the deque, so an item is never left behind."""
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    async def handler(self, item: T) -> None:
        """`put` as a coroutine function: the SDK runs those on its handler loop, without a thread pool."""
        self.put(item)

    def _drain(self) -> None:
        self._scheduled = False
        items, deliver = self._items, self._deliver
        if self._deliver_group is not None:
            group = []
            while items:  # popleft, not list()+clear(): a put from the other thread in between must not be lost
                group.append(items.popleft())
            try:
                self._deliver_group(group)
            except Exception:  # a bug of the receiver: say so; the next group still comes
                log.exception("handing over %d items failed", len(group))
            return
        assert deliver is not None
        while items:
            item = items.popleft()
            try:
                deliver(item)
            except Exception:  # a bug of the receiver: say so, and keep the items behind it moving
                log.exception("handing over %s failed", type(item).__name__)
