"""The rollout agent: from the twin's desired `model` to a verified model in use, or a reason why not.

    desired model ──▶ downloading (resumable part file) ──▶ verifying (sha256, safe unpack, manifest,
    the hot swap's own checks) ──▶ active (probation) ──▶ stays, or rolled-back to the previous model

Each state change (and download progress, at most every PROGRESS_EVERY_S) goes into the status's
`model.rollout` and marks it changed; the reported properties' one path, app/edgehub/cadence.py, sends
it within REPORT_JITTER_S and no more often, so a fleet told at once does not report at once (what
changed in between goes out together: the twin may skip a state, never the last one). A failure leaves the
running model in place (`failed` with the reason); the same desired document is not tried again until
it changes (or the module restarts). A bundle that failed its probation is remembered by sha256 in the
store and not tried again until the desired `model` names another bundle. A probation is kept in the
store's state (recorded with the swap, its figures every PROBATION_SAVE_S), so a module killed during
it starts on the new version and resumes the probation, never keeping an unproven model by accident.

The bundle's URL is a credential: only `ModelSpec.shown()` (no query) is logged or reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from app.core.control import ChangeRefused, Controller
from app.model.bundle import unpack_bundle
from app.model.modeldir import ModelDirError
from app.model.store import ModelStore, Version
from app.rollout.probation import Probation
from app.settings import ModelSpec, Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = (2.0, 5.0)  # the next progress report comes after a random time in this range
PROBATION_POLL_S = 0.25
PROBATION_SAVE_S = 2.0  # the probation's figures go to the store's state this often: a kill loses at most this much
UNPACK_FACTOR = 4  # a bundle may unpack to this many times MODEL_DOWNLOAD_MAX_BYTES


class Fetch(Protocol):
    def __call__(
        self,
        url: str,
        part: Path,
        *,
        sha256: str,
        size: int | None,
        max_bytes: int,
        timeout_s: float,
        attempts: int,
        on_progress: Callable[[int, int | None], None],
    ) -> Awaitable[Path]: ...


class RolloutFailed(RuntimeError):
    pass


class RolloutAgent:
    def __init__(self, settings: Settings, fetch: Fetch, failures: tuple[type[Exception], ...] = ()) -> None:
        self.settings = settings
        self.store = ModelStore(settings.model_store, settings.model_store_keep)
        self._fetch = fetch
        self._fetch_failures = failures  # the fetcher's own failure types (they carry `.reason`)
        self._controller: Controller | None = None
        self._wanted: ModelSpec | None = None
        self._job: asyncio.Task[None] | None = None
        self._next_progress = 0.0
        self._source: str | None = None  # the bundle's URL, redacted (scheme://host/path)
        self._probing: str | None = None  # the sha256 of the bundle on probation
        self.downloads = 0  # bundles fetched by this process (a restart on a stored version fetches none)

    def startup_dir(self) -> str | None:
        """The store's version in use, to start on without downloading; None if there is none."""
        active = self.store.active
        return str(self.store.path_of(active)) if active is not None else None

    def attach(self, controller: Controller) -> None:
        self._controller = controller
        controller.on_desired_model = self.want
        active, pending = self.store.active, self.store.state.probation
        serving = active is not None and controller.pipeline.settings.model_dir == str(self.store.path_of(active))
        if active is not None and pending is not None and serving:
            self._resume_probation(active, pending)
        elif active is not None:
            self._report("active", active.name, active.version)

    def _resume_probation(self, entry: Version, pending: dict[str, Any]) -> None:
        """The module stopped (a kill, a restart) while `entry` was on probation: go on with it from its figures."""
        assert self._controller is not None
        s = self.settings
        probation = Probation.resume(
            self._controller.pipeline.stats,
            s.model_probation_messages,
            s.model_probation_s,
            s.model_probation_max_failure_rate,
            time.monotonic(),
            pending,
        )
        previous = str(pending.get("previous") or s.model_dir)  # the deployment's MODEL_DIR when none was recorded
        self._source = pending.get("source")
        self._probing = entry.sha256  # set now: the twin's desired `model` may come before the task first runs
        figures = probation.figures()
        log.info("rollout: %s v%s was on probation when the module stopped: resuming at %s", entry.name, entry.version, figures)
        self._report("active", entry.name, entry.version, probation={"state": "on", **figures})  # as attach() always does
        job = self._probation(entry, previous, probation)
        self._job = asyncio.get_running_loop().create_task(job, name="probation")

    def want(self, spec: ModelSpec | None) -> None:
        """The desired `model` of a desired document that took effect (called on the loop, lock held: no waiting)."""
        if spec == self._wanted:
            return  # the same document (a settings patch): nothing new
        self._wanted = spec
        if spec is not None and spec.sha256 == self._probing and self._job is not None and not self._job.done():
            return  # the version in use, on a probation resumed after a restart: it goes on
        if self._job is not None:
            self._job.cancel()  # superseded; its part file stays for a later resume
        if spec is not None:
            log.info("desired model: %s", spec.shown())
            self._job = asyncio.get_running_loop().create_task(self._roll_out(spec), name="rollout")

    async def close(self) -> None:
        if self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._job

    # --- the steps --------------------------------------------------------------------------------

    async def _roll_out(self, spec: ModelSpec) -> None:
        self._source = spec.shown()["url"]
        try:
            await self._steps(spec)
        except asyncio.CancelledError:
            raise
        except RolloutFailed as exc:
            log.error("rollout of %s v%s failed, the running model stays: %s", spec.name, spec.version, exc)
            self._report("failed", spec.name, spec.version, reason=str(exc))
        except Exception as exc:  # a bug of ours: still one outcome, the running model stays
            log.exception("rollout of %s v%s failed unexpectedly", spec.name, spec.version)
            self._report("failed", spec.name, spec.version, reason=f"internal error: {type(exc).__name__}")

    async def _steps(self, spec: ModelSpec) -> None:
        store, controller = self.store, self._controller
        assert controller is not None, "attach() first"
        active = store.active
        if (
            active is not None
            and active.sha256 == spec.sha256
            and controller.pipeline.settings.model_dir == str(store.path_of(active))
        ):
            self._report("active", spec.name, spec.version)
            return
        refused = store.state.refused.get(spec.sha256)
        if refused is not None:
            self._report("rolled-back", spec.name, spec.version, reason=f"not tried again: {refused}")
            return
        await asyncio.to_thread(store.forget_refusals, spec.sha256)  # the desired model changed
        entry = store.find(spec.sha256)
        if entry is None:
            entry = await self._download_and_unpack(spec)
        else:
            self._report("verifying", spec.name, spec.version)
        previous = controller.pipeline.settings.model_dir
        try:
            await controller.reload_model(str(store.path_of(entry)))
        except ChangeRefused as exc:
            raise RolloutFailed(f"the model was refused: {exc}") from None
        s = self.settings
        probation = Probation.begin(
            controller.pipeline.stats,
            s.model_probation_messages,
            s.model_probation_s,
            s.model_probation_max_failure_rate,
            time.monotonic(),
        )
        await asyncio.to_thread(store.activate, entry, probation=self._probation_record(probation, previous))
        log.info("rollout: %s v%s active (was %s)", spec.name, spec.version, previous)
        await self._probation(entry, previous, probation)

    async def _download_and_unpack(self, spec: ModelSpec) -> Version:
        s, store = self.settings, self.store
        await asyncio.to_thread(store.prepare)
        self._next_progress = 0.0
        part = store.part_file(spec.sha256)
        have = part.stat().st_size if part.exists() else 0
        self._report("downloading", spec.name, spec.version, done=have, of=spec.size)
        try:
            await self._fetch(
                spec.url,
                part,
                sha256=spec.sha256,
                size=spec.size,
                max_bytes=s.model_download_max_bytes,
                timeout_s=s.model_download_timeout_s,
                attempts=s.model_download_attempts,
                on_progress=lambda done, of: self._progress(spec, done, of),
            )
        except self._fetch_failures as exc:
            raise RolloutFailed(f"download: {getattr(exc, 'reason', type(exc).__name__)}") from None
        self.downloads += 1
        self._report("verifying", spec.name, spec.version, done=part.stat().st_size, of=part.stat().st_size)
        staging = store.staging_dir(spec.sha256)
        try:
            manifest = await asyncio.to_thread(unpack_bundle, part, staging, max_bytes=s.model_download_max_bytes * UNPACK_FACTOR)
        except (ModelDirError, OSError) as exc:
            await asyncio.to_thread(store.drop_part, spec.sha256)  # its sha256 matched: the bundle itself is bad
            raise RolloutFailed(f"the bundle cannot be used: {exc}") from None
        if (manifest.name, manifest.version) != (spec.name, spec.version):
            await asyncio.to_thread(store.drop_part, spec.sha256)
            raise RolloutFailed(
                f"the bundle holds {manifest.name} v{manifest.version}, the desired model says {spec.name} v{spec.version}"
            )
        entry = await asyncio.to_thread(store.install, staging, spec.name, spec.version, spec.sha256)
        await asyncio.to_thread(store.drop_part, spec.sha256)
        return entry

    def _probation_record(self, probation: Probation, previous: str) -> dict[str, Any]:
        """What the store keeps of a running probation (the source redacted, as everywhere)."""
        figures = {"messages": probation.outcomes, "failures": probation.failures, "elapsedS": round(probation.elapsed_s, 3)}
        return {"previous": previous, "source": self._source, **figures}

    async def _probation(self, entry: Version, previous: str, probation: Probation) -> None:
        s, controller, store = self.settings, self._controller, self.store
        assert controller is not None
        stats, name, version = controller.pipeline.stats, entry.name, entry.version
        self._probing = entry.sha256
        self._report("active", name, version, probation={"state": "on", **probation.figures()})
        saved_at = time.monotonic()
        while (verdict := probation.verdict(stats, time.monotonic())) is None:
            if time.monotonic() - saved_at >= PROBATION_SAVE_S:
                saved_at = time.monotonic()
                await asyncio.to_thread(store.note_probation, self._probation_record(probation, previous))
            await asyncio.sleep(PROBATION_POLL_S)
        figures = probation.figures()
        if verdict == "passed":
            await asyncio.to_thread(store.note_probation, None)
            log.info("rollout: %s v%s passed probation: %s", name, version, figures)
            self._report("active", name, version, probation={"state": "passed", **figures})
            return
        reason = (
            f"{figures['failures']} of {figures['messages']} outcomes failed ({figures['failureRate']:.1%}) in probation, "
            f"more than MODEL_PROBATION_MAX_FAILURE_RATE {s.model_probation_max_failure_rate:.1%}"
        )
        log.error("rollout: %s v%s failed probation (%s); swapping back to %s", name, version, reason, previous)
        try:
            await controller.reload_model(previous)
        except ChangeRefused as exc:  # the previous model was verified minutes ago: say so loudly, keep serving
            log.error("rollout: swapping back to %s failed (%s); the new model keeps serving", previous, exc)
            await asyncio.to_thread(store.note_probation, None)
            self._report("failed", name, version, reason=f"{reason}; swapping back failed: {exc}")
            return
        back = next((v for v in store.state.versions if str(store.path_of(v)) == previous), None)
        await asyncio.to_thread(self._record_rollback, entry, back, reason)
        self._report("rolled-back", name, version, reason=reason, probation={"state": "failed", **figures})

    def _record_rollback(self, entry: Version, back: Version | None, reason: str) -> None:
        store = self.store
        if back is not None:
            store.activate(back, rollback=True)
        else:  # back to the deployment's own MODEL_DIR: the store has no version in use
            store.state.active, store.state.previous, store.state.probation = None, None, None
        store.refuse(entry.sha256, reason)

    # --- reporting --------------------------------------------------------------------------------

    def _progress(self, spec: ModelSpec, done: int, of: int | None) -> None:
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + random.uniform(*PROGRESS_EVERY_S)
            self._report("downloading", spec.name, spec.version, done=done, of=of)

    def _report(
        self, state: str, name: str, version: int, *, done: int | None = None, of: int | None = None, **extra: Any
    ) -> None:
        controller = self._controller
        # every key, null when empty: a reported patch merges, and a key left out would keep its old value
        document = {"state": state, "name": name, "version": version, "bytes": done, "of": of, "reason": None}
        document = {**document, "probation": None, "source": self._source, **extra}
        if controller is not None:
            controller.rollout = document
            controller.changed.set()
