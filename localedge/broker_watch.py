"""Broker supervision: a module's broker (its edgeHub) that dies is started again on the same address and store.

edgeHub runs under edgeAgent, which restarts it when it exits. Here a thread looks at each broker's process; one
that exited without the local edge stopping it (a crash, an OOM kill, `kill -9`) is restarted through
LocalEdge.restart_broker, which also makes the local edge's own subscriptions on it again. Its sessions and queues
come back from its store, which it saves on every change (localedge/broker.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from localedge.broker import Broker
from localedge.errors import EdgeError

log = logging.getLogger(__name__)

POLL_S = 0.2  # a dead broker is noticed within this


class BrokerWatch:
    """Calls `restart(name)` for each broker in `brokers` whose process died; `locks[name]` is held by anyone else
    who stops or starts that broker on purpose (a stopped broker has no process and is left alone)."""

    def __init__(
        self, brokers: Mapping[str, Broker], restart: Callable[[str], None], locks: Mapping[str, threading.RLock]
    ) -> None:
        self.brokers = brokers
        self._restart = restart
        self._locks = locks
        self.restarts: dict[str, int] = dict.fromkeys(brokers, 0)
        self._restarted = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)

    def start(self) -> BrokerWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(POLL_S):
            for name, broker in self.brokers.items():
                with self._locks[name]:
                    process = broker.process
                    if self._stopping.is_set() or process is None or process.poll() is None:
                        continue
                    log.warning("broker of %s died (exit %s): starting it again", name, process.returncode)
                    try:
                        self._restart(name)
                        with self._restarted:
                            self.restarts[name] += 1
                            self._restarted.notify_all()
                    except EdgeError as exc:  # tried again on the next round
                        log.error("restarting the broker of %s failed: %s", name, exc)

    def wait_restarts(self, name: str, count: int, timeout: float) -> bool:
        """True once the broker of `name` was restarted `count` times (after dying)."""
        with self._restarted:
            return self._restarted.wait_for(lambda: self.restarts.get(name, 0) >= count, timeout)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)
