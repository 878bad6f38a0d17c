"""The watchdog: notices when the module has gone deaf to edgeHub and says so, once, so that the module
exits and the IoT Edge runtime (edgeAgent) restarts it.

Why: azure-iot-device 2.14 runs paho-mqtt 1.6.1, whose network thread dies on an `ssl.SSLEOFError`
(paho 1.x catches only ConnectionError around its socket reads and writes; paho 2 catches OSError).
A restart of edgeHub under a live stream can raise it. The thread's death calls no disconnect
callback, so the SDK goes on believing it is connected: no reconnect, inputs never arrive, outputs
and method replies are queued for a thread that is gone, while the process, its log and its health
endpoints look fine (bench/deafness.py reproduces it; bench/SDK-EVALUATION.md has the numbers).

Three checks, all read from what the process already holds; the watchdog sends nothing (no twin
GET, no message: those are metered at fleet scale), it watches paho's free PINGREQ/PINGRESP instead:

- `mqtt-thread-gone`: the SDK says connected but paho's network thread is gone (dead, or no longer
  set), seen on two checks in a row (the SDK clears paho's thread a moment before it marks itself
  disconnected when it handles a drop; one check apart is far longer than that moment).
- `offline`: not connected for longer than `limit_s` in a row. The SDK reconnects by itself (every
  10 s or so), so only an outage longer than the limit counts.
- `silent`: connected, thread alive, but nothing received (paho's last-received time; paho counts a
  PINGREQ it sends as traffic, and edgeHub answers each with a PINGRESP) for longer than
  max(limit_s, 2 x keepalive). A working paho pings after one keepalive of quiet and drops the
  connection itself when the answer does not come, so this only fires when the thread is alive but
  not reading (stuck in a callback, a lock).

Where paho is: IoTHubModuleClient._mqtt_pipeline._pipeline is the first stage of the SDK's pipeline
(a linked list through `.next`); its MQTTTransportStage holds `.transport` (MQTTTransport), which
holds paho's client as `._mqtt_client`; paho keeps its loop_start() thread in `._thread` and the time
of the last packet in as `._last_msg_in` (1.x) or `._last_bytes_received` (2.x), on its `time_func`
clock (time.monotonic). All private: when another SDK version lays them out differently, the
watchdog says so once at start and keeps the one check that needs none (`offline`).

Reading paho's attributes from our event loop is safe: each read is one attribute load (a reference
or a float), atomic under the GIL; we never write them and never take paho's locks
(Thread.is_alive() only tries the thread's own state lock without blocking). A value read a moment
stale delays a verdict by one check at most, and no verdict needs two attributes to agree at the
same instant. So the loop cannot block on paho, and paho cannot be disturbed by us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_CHECK_INTERVAL_S = 5.0
MIN_CHECK_INTERVAL_S = 0.05
THREAD_GONE_CHECKS = 2  # consecutive checks that must see the thread gone while connected

OFFLINE = "offline"
THREAD_GONE = "mqtt-thread-gone"
SILENT = "silent"


@dataclass(frozen=True)
class Observation:
    """One look at the connection. None: this SDK version does not let us see it."""

    connected: bool
    thread_alive: bool | None = None  # paho's network thread
    idle_s: float | None = None  # seconds since paho last received anything (a PINGRESP counts)
    keepalive_s: float | None = None  # the MQTT keepalive paho uses


Probe = Callable[[], Observation]


def check_interval(limit_s: float) -> float:
    """How often to look: min(5 s, limit_s / 4), at least 50 ms."""
    return max(MIN_CHECK_INTERVAL_S, min(MAX_CHECK_INTERVAL_S, limit_s / 4))


def find_paho_owner(client: Any) -> Any | None:
    """The SDK's MQTT transport (it holds paho's client as `_mqtt_client`), or None if not found."""
    stage = getattr(getattr(client, "_mqtt_pipeline", None), "_pipeline", None)
    for _ in range(64):  # a linked list of a dozen stages; bounded in case a version makes it a loop
        if stage is None:
            return None
        transport = getattr(stage, "transport", None)
        if transport is not None and hasattr(transport, "_mqtt_client"):
            return transport
        stage = getattr(stage, "next", None)
    return None


class SdkProbe:
    """Observations of an azure-iot-device 2.x client: its `connected` flag, and paho's thread and
    last-received time when they can be found (see the module doc)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._transport = find_paho_owner(client)

    def _paho(self) -> Any | None:
        return getattr(self._transport, "_mqtt_client", None) if self._transport is not None else None

    @property
    def paho_found(self) -> bool:
        return self._paho() is not None

    def __call__(self) -> Observation:
        connected = bool(self._client.connected)
        paho = self._paho()
        if paho is None:
            return Observation(connected)
        thread_alive: bool | None = None
        if hasattr(paho, "_thread"):
            thread = paho._thread
            thread_alive = thread is not None and bool(thread.is_alive())
        idle_s: float | None = None
        last_in = getattr(paho, "_last_msg_in", None)
        if last_in is None:
            last_in = getattr(paho, "_last_bytes_received", None)
        if isinstance(last_in, int | float):
            # paho's own clock (time.monotonic on every version we know); ours only if it has none.
            paho_clock = getattr(sys.modules.get(type(paho).__module__), "time_func", time.monotonic)
            idle_s = max(0.0, paho_clock() - last_in)
        keepalive = getattr(paho, "_keepalive", None)
        keepalive_s = float(keepalive) if isinstance(keepalive, int | float) and keepalive > 0 else None
        return Observation(connected, thread_alive, idle_s, keepalive_s)


class Watchdog:
    """Calls `on_deaf(reason)` once when the client is deaf (see the module doc); `limit_s` 0: off.

    start() runs a check every `interval_s` (default min(5 s, limit_s / 4)) on the running loop;
    close() stops it. `healthy` and `reason` are for the health endpoint and status. `probe` replaces
    the SDK probe (tests); `clock` is what offline and thread-gone durations are measured with.
    """

    def __init__(
        self,
        client: Any,
        limit_s: float,
        on_deaf: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        probe: Probe | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.limit_s = float(limit_s)
        self.enabled = self.limit_s > 0
        self.interval_s = interval_s if interval_s is not None else check_interval(self.limit_s)
        self.reason: str | None = None
        self.checks: tuple[str, ...] = ()
        self._client = client
        self._on_deaf = on_deaf
        self._clock = clock
        self._probe = probe
        self._offline_since: float | None = None
        self._thread_gone_seen = 0
        self._probe_failed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self.reason is None

    async def start(self) -> None:
        """Start checking (after the client's first connect: before it, `offline` would count the start-up)."""
        if not self.enabled:
            log.info("edgeHub watchdog off (limit 0)")
            return
        if self._task is not None:
            return
        if self._probe is None:
            sdk_probe = SdkProbe(self._client)
            self._probe = sdk_probe
            if not sdk_probe.paho_found:
                log.warning(
                    "edgeHub watchdog: this azure-iot-device version does not expose its MQTT client as 2.14 does; "
                    "only the offline check runs (not connected for %.0f s)",
                    self.limit_s,
                )
        first = self._observe()
        self.checks = (
            OFFLINE,
            *((THREAD_GONE,) if first is not None and first.thread_alive is not None else ()),
            *((SILENT,) if first is not None and first.idle_s is not None else ()),
        )
        log.info(
            "edgeHub watchdog: every %.2g s; deaf when %s",
            self.interval_s,
            "; ".join(self._describe(check, first) for check in self.checks),
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="edgehub-watchdog")

    def _describe(self, check: str, first: Observation | None) -> str:
        if check == OFFLINE:
            return f"disconnected for {self.limit_s:g} s"
        if check == THREAD_GONE:
            return "paho's network thread is gone while the SDK says connected"
        keepalive = first.keepalive_s if first is not None else None
        return f"nothing received for {self._silent_limit(keepalive):g} s"

    async def close(self) -> None:
        """Stop checking (before an intended disconnect, e.g. when stopping). Idempotent."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self.reason is None:
            await asyncio.sleep(self.interval_s)
            self.check()

    def _observe(self) -> Observation | None:
        assert self._probe is not None
        try:
            return self._probe()
        except Exception as exc:  # an SDK internal changed under us: say so once, keep the offline check
            if not self._probe_failed:
                self._probe_failed = True
                log.warning("edgeHub watchdog: reading the SDK's state failed (%r); only the offline check runs", exc)
            try:
                return Observation(bool(self._client.connected))
            except Exception:
                return None

    def check(self) -> str | None:
        """One look now; on the first deaf verdict calls on_deaf(reason). Returns the reason, if deaf."""
        if self.reason is not None or not self.enabled:
            return self.reason
        if self._probe is None:
            self._probe = SdkProbe(self._client)
        now = self._clock()
        seen = self._observe()
        reason = self._judge(seen, now) if seen is not None else None
        if reason is not None:
            self.reason = reason
            try:
                self._on_deaf(reason)
            except Exception:
                log.exception("edgeHub watchdog: on_deaf failed")
        return reason

    def _silent_limit(self, keepalive_s: float | None) -> float:
        return max(self.limit_s, 2 * keepalive_s) if keepalive_s else self.limit_s

    def _judge(self, seen: Observation, now: float) -> str | None:
        if not seen.connected:
            self._thread_gone_seen = 0
            if self._offline_since is None:
                self._offline_since = now
            elif now - self._offline_since > self.limit_s:
                return (
                    f"{OFFLINE}: not connected to edgeHub for {now - self._offline_since:.0f} s "
                    f"(limit {self.limit_s:g} s); the SDK's retries have not brought it back"
                )
            return None
        self._offline_since = None
        if seen.thread_alive is False:
            self._thread_gone_seen += 1
            if self._thread_gone_seen >= THREAD_GONE_CHECKS:
                return (
                    f"{THREAD_GONE}: paho-mqtt's network thread is gone while the SDK reports connected "
                    f"(seen on {self._thread_gone_seen} checks {self.interval_s:g} s apart); nothing is received or sent"
                )
            return None
        self._thread_gone_seen = 0
        if seen.idle_s is not None:
            limit = self._silent_limit(seen.keepalive_s)
            if seen.idle_s > limit:
                return (
                    f"{SILENT}: connected, but nothing received from edgeHub for {seen.idle_s:.0f} s "
                    f"(limit {limit:g} s, keepalive {seen.keepalive_s or 0:g} s): paho's network thread is not reading"
                )
        return None
