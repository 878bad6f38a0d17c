"""Delivery to one module's inputs, with edgeHub's store-and-forward.

While the module can take messages (its process is up and ready, and the local edge is not taking it down) and
nothing is stored, a message goes straight to its broker, as before. Otherwise it goes to the module's
MessageStore on disk with its route's TTL, and a thread of this forwarder hands the stored ones over in order once
the module is back, dropping (and counting) those past their TTL. New messages queue behind stored ones, so the
module sees them in routing order.

Why not leave it to the broker's session queue: the module unsubscribes its inputs on SIGTERM (to finish cleanly),
after which Mosquitto drops what arrives for it, and Mosquitto has no TTL a 3.1.1 publisher can set, nor counts
what it expires. Messages already handed to the broker stay in the module's persistent session (saved on every
change, localedge/broker.py) and are delivered whatever their age.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from localedge.link import Link
from localedge.store import MessageStore

log = logging.getLogger(__name__)

WINDOW = 200  # stored messages handed to paho at once; the next window waits for the broker's PUBACKs
POLL_S = 0.1  # how often the thread looks at whether the module is back, and expires the head meanwhile
ACK_WAIT_S = 0.5  # one wait for a window's PUBACKs; repeated until they come or the forwarder stops


class Forwarder:
    """Publishes to module `module`'s inputs through `link`, holding messages in `store` while `accepting()` is false."""

    def __init__(self, module: str, link: Link, store: MessageStore, accepting: Callable[[], bool]) -> None:
        self.module = module
        self.link = link
        self.store = store
        self._accepting = accepting
        self._held = False  # set by hold(): the local edge is taking the module down
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._drain, name=f"forward-{module}", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def open(self) -> bool:
        return not self._held and self._accepting()

    def send(self, topic: str, body: bytes, ttl_s: int) -> bool:
        """Deliver now, or store; True if it was stored."""
        with self._cond:
            if self.store.pending == 0 and self.open():
                self.link.publish(topic, body)
                return False
            self.store.put(topic, body, ttl_s)
            self._cond.notify_all()
            return True

    def hold(self, timeout: float = 5.0) -> None:
        """From now on store what comes; return once the broker has taken everything published before (a barrier),
        so that a module about to unsubscribe (SIGTERM) gets it or it stays queued in its session."""
        with self._cond:
            self._held = True
        try:
            self.link.barrier(timeout)
        except Exception as exc:  # a broker down: what paho holds is resent on its return, into the session
            log.info("forwarder %s: no barrier while holding (%s)", self.module, exc)

    def release(self) -> None:
        """The module is back (ready): hand over what was stored."""
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def _drain(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(POLL_S)
                if self._stopping:
                    return
                if not self.store.pending:
                    continue
                if not self.open():
                    if dropped := self.store.expire_head():
                        log.info("%d message(s) for %s expired in store", dropped, self.module)
                    continue
                batch = self.store.take(WINDOW)
                infos = [self.link.publish(m.topic, m.body) for m in batch.messages]
                self.store.commit(batch)  # paho holds them now, and resends them on a reconnect
                if batch.expired:
                    log.info("%d message(s) for %s expired in store", len(batch.expired), self.module)
            self._wait_acks(infos)

    def _wait_acks(self, infos: list[Any]) -> None:
        """Bound paho's memory: the next window goes once the broker took this one (or the forwarder stops)."""
        for info in infos:
            while not info.is_published() and not self._stopping:
                try:
                    info.wait_for_publish(ACK_WAIT_S)
                except (RuntimeError, ValueError):  # published while disconnected: paho sends it on the reconnect
                    break

    def counts(self) -> dict[str, int]:
        with self._cond:
            store = self.store
            return {
                "stored": store.stored,
                "delivered_from_store": store.delivered,
                "expired": store.expired,
                "pending": store.pending,
            }

    def expired_ids(self) -> list[str]:
        with self._cond:
            return list(self.store.expired_ids)

    def wait_drained(self, timeout: float) -> bool:
        """True once nothing is stored (delivered or expired)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.store.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(POLL_S, remaining))
            return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(5)
        self.store.close()
