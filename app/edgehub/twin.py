"""The module twin over the SDK: desired properties in, reported properties out.

Desired: at start a twin GET (the manifest's `properties.desired`), then every patch, applied in
$version order through the Controller. A patch that skips a $version (missed while disconnected;
the SDK then sends the whole desired document as if it were a patch, which cannot remove keys)
triggers a fresh twin GET. get_twin() has no timeout of its own: every call is bounded.

Reported: the Controller's status, as app/edgehub/cadence.py schedules it so that a fleet stays
within IoT Hub's twin budget: state changes at a random moment within REPORT_JITTER_S (and at least
that far apart), moved counters at most every REPORT_INTERVAL_S; each report the patch of what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from azure.iot.device.aio import IoTHubModuleClient

from app.core.control import ChangeRefused, Controller
from app.edgehub.cadence import Report, ReportCadence
from edgekit.handoff import Handoff

log = logging.getLogger(__name__)

TWIN_TIMEOUT_S = 10.0

Clock = Callable[[], float]
Wait = Callable[[asyncio.Event, float], Awaitable[None]]  # until the event is set or the time (seconds) is up


async def wait_for_change(event: asyncio.Event, timeout: float) -> None:
    # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation (close() would hang)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()


def _version(document: dict[str, Any]) -> int | None:
    """The document's `$version`, when it is a whole number (IoT Hub's always is)."""
    version = document.get("$version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


class TwinAgent:
    def __init__(
        self,
        client: IoTHubModuleClient,
        controller: Controller,
        loop: asyncio.AbstractEventLoop,
        clock: Clock = time.monotonic,
        wait: Wait = wait_for_change,
        rng: random.Random | None = None,
    ) -> None:
        """`clock`, `wait` and `rng` are the reporting cadence's time and chance (tests pass virtual ones)."""
        self._client = client
        self._controller = controller
        self._loop = loop
        self._patches: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._handoff = Handoff(loop, self._patches.put_nowait)  # the SDK calls its handler on its own thread
        self._tasks: list[asyncio.Task[None]] = []
        self._clock, self._wait = clock, wait
        settings = controller.pipeline.settings
        self.cadence = ReportCadence(settings.report_interval_s, settings.report_jitter_s, clock(), rng)
        self.reports = 0

    async def start(self) -> None:
        """Subscribe to desired patches, apply the desired document, start reporting."""
        # The setter blocks until the SDK has subscribed; keep it off our loop.
        await asyncio.to_thread(setattr, self._client, "on_twin_desired_properties_patch_received", self._handoff.handler)
        await self._resync()
        self._tasks = [
            self._loop.create_task(self._apply_patches(), name="twin-desired"),
            self._loop.create_task(self._report_loop(), name="twin-reported"),
        ]

    async def _resync(self) -> None:
        try:
            async with asyncio.timeout(TWIN_TIMEOUT_S):
                twin = await self._client.get_twin()
        except Exception as exc:  # timeout or SDK error: keep the settings in effect, say so
            log.warning("twin GET failed (%r); running on the settings in effect until the next patch", exc)
            return
        desired = twin.get("desired") if isinstance(twin, dict) else None
        if not isinstance(desired, dict):
            log.warning(
                "twin GET answered without a desired document (%s); keeping the settings in effect", type(desired).__name__
            )
            return
        with contextlib.suppress(ChangeRefused):  # the Controller logged and recorded it
            await self._controller.apply_desired(desired, _version(desired), patch=False)

    async def _apply_patches(self) -> None:
        while True:
            patch = await self._patches.get()
            try:
                await self._apply_patch(patch)
            except Exception:  # a bug of ours: reported, and the next patch is still applied
                log.exception("applying a desired patch failed; waiting for the next one")

    async def _apply_patch(self, patch: Any) -> None:
        if not isinstance(patch, dict):  # the SDK hands on what it parsed; a patch is an object
            log.warning("desired patch ignored: %s is not an object", type(patch).__name__)
            return
        version, seen = _version(patch), self._controller.seen_version
        if isinstance(version, int) and isinstance(seen, int) and version > seen + 1:
            log.info("desired $version %s follows %s: patches were missed, reading the whole twin", version, seen)
            await self._resync()
            return
        with contextlib.suppress(ChangeRefused):
            await self._controller.apply_desired(patch, version, patch=True)

    async def _report_loop(self) -> None:
        controller, cadence = self._controller, self.cadence
        while True:
            now = self._clock()
            settings = controller.pipeline.settings
            cadence.retune(settings.report_interval_s, settings.report_jitter_s, now)
            if controller.changed.is_set():
                controller.changed.clear()
                cadence.state_changed(now)
            try:
                report = cadence.take(now, controller.status)
                if report is not None:
                    await self._send(report)
            except Exception:  # a bug of ours must not end reporting for the life of the process
                log.exception("building the reported properties failed")
            await self._wait(controller.changed, cadence.next_at - self._clock())

    async def _send(self, report: Report, timeout: float = TWIN_TIMEOUT_S) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._client.patch_twin_reported_properties(report.patch)
        except Exception as exc:
            log.warning("reported properties not sent (%r); trying again at the next turn", exc)
            self.cadence.failed(report, self._clock())
            return False
        self.cadence.acknowledged(report)
        self.reports += 1
        return True

    async def report_final(self, timeout: float = TWIN_TIMEOUT_S) -> bool:
        """Report the state once more now (when stopping), unless reports are spread over a fleet (REPORT_JITTER_S
        > 0): a base deployment that restarts every module would put a whole fleet's updates in the same second.
        edgeAgent reports each module's runtime status anyway."""
        if self._controller.pipeline.settings.report_jitter_s > 0:
            log.info("final reported properties skipped: REPORT_JITTER_S spreads a fleet's reports, edgeAgent reports the stop")
            return False
        now = self._clock()
        self.cadence.state_due_now(now)  # whatever the spacing: it is the last one
        report = self.cadence.take(now, self._controller.status)
        return report is not None and await self._send(report, timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=TWIN_TIMEOUT_S)
