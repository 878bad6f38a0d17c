"""Run-time control of the module: live settings from the twin, model hot swap, and the status
that reported properties, `getStatus` and HTTP show.

One change at a time (a lock), and each is all or nothing: a desired document that does not
validate, or a model that does not load, verify and answer a trial row, leaves the running settings
and model as they were; the refusal becomes `lastError` and the status `degraded` until a later
change succeeds. A new model is loaded beside the running one (on a worker thread, while the model
thread keeps scoring) and swapped in between batches (Pipeline.reconfigure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from app.core.errors import ErrorCode
from app.core.pipeline import Pipeline
from app.model.modeldir import ModelDirError
from app.model.scorer import Scorer, ScriptLoadError, load_scorer
from app.settings import ConfigError, ModelSpec, Settings, desired_model, reported_settings, settings_from_desired
from edgekit.logs import set_log_level
from edgekit.twin_patch import merge_patch

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What the orchestrator and the readiness probe see; the runner moves it along.

    `ready`: the model can score (HTTP and the `score` method serve). `problems()`: what keeps the
    module from doing its job although it runs, from the checks the adapters add (edgeHub
    unreachable or deaf, the model not finishing batches); GET /ready answers 503 while there are any.
    """

    ready: bool = False
    status: str = "starting"  # starting / ready / stopping / unhealthy
    checks: list[Callable[[], str | None]] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        for check in self.checks:
            try:
                problem = check()
            except Exception as exc:  # a check that fails is a problem to show, not a crash
                problem = f"health check failed: {exc!r}"
            if problem:
                found.append(problem)
        return found


class ChangeRefused(RuntimeError):
    """A desired document or a model was refused; the previous state is kept. `code` names the kind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# IoT Hub refuses a reported-properties document over 32 KB: what the module reports stays well under.
REPORTED_MAX_BYTES = 24 * 1024
LAST_ERROR_MAX_CHARS = 2000
LIST_SHOWN_MAX = 32  # items of a list setting shown when the document would be too large


def _utf8(text: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate (quoted from a hostile key) becomes U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def _bounded(status: dict[str, Any]) -> dict[str, Any]:
    """The status as reported: long list settings are cut (with their length) if the document is too large."""
    if len(orjson.dumps(status)) <= REPORTED_MAX_BYTES:
        return status
    settings = dict(status["settings"])
    for key, value in settings.items():
        if isinstance(value, list) and len(value) > LIST_SHOWN_MAX:
            settings[key] = {"count": len(value), "first": value[:LIST_SHOWN_MAX]}
        elif isinstance(value, str):
            settings[key] = _clip(value, 256)
    return {**status, "settings": settings}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Controller:
    def __init__(self, base: Settings, pipeline: Pipeline, health: Health, model_override: str | None = None) -> None:
        self.base = base  # from the environment; the desired properties apply on top
        self.pipeline = pipeline
        self.health = health
        self._twin_desired: dict[str, Any] = {}  # the desired document as the twin holds it, without `$` keys
        self.seen_version: int | None = None
        self.desired_version: int | None = None  # the desired $version the settings in effect came from
        self.rejected_version: int | None = None
        self.desired_refused = False  # the twin's desired document (whatever its $version) was refused
        self.last_error: dict[str, Any] | None = None
        self.model_refused = False  # the last reloadModel failed (the previous model serves on)
        self.model_loaded_at = _now()
        self.changed = asyncio.Event()  # set on every change of what status() shows, but the counters
        # a reloadModel or rolled-out directory (model store), until desired names modelDir
        self._model_override: str | None = model_override
        # Told the desired `model` (the bundle to roll out) of every desired document that took effect.
        self.on_desired_model: Callable[[ModelSpec | None], None] | None = None
        self.rollout: dict[str, Any] | None = None  # reported as model.rollout (app/rollout)
        self._lock = asyncio.Lock()

    @property
    def degraded(self) -> bool:
        """Serving, but the twin's desired document or the last model asked for was refused."""
        return self.desired_refused or self.model_refused

    @property
    def state(self) -> str:
        status = self.health.status
        return "degraded" if status == "ready" and self.degraded else status

    def set_state(self, status: str) -> None:
        self.health.status = status
        self.health.ready = status == "ready"
        self.changed.set()

    async def apply_desired(self, document: Mapping[str, Any], version: int | None, *, patch: bool) -> Settings:
        """Apply a whole desired document (twin GET) or a patch of one; ChangeRefused keeps everything as it was.

        Patches merge into the desired document as the twin holds it, refused parts included: the
        module converges on the twin, so a later patch is judged with whatever is still wrong.
        """
        async with self._lock:
            if patch and version is not None and self.seen_version is not None and version <= self.seen_version:
                log.info("desired patch $version %s ignored: %s was already seen", version, self.seen_version)
                return self.pipeline.settings
            self.seen_version = version
            twin = merge_patch(self._twin_desired, document) if patch else dict(document)
            self._twin_desired = {k: v for k, v in twin.items() if not k.startswith("$")}
            override = None if "modelDir" in document or "scoreScript" in document else self._model_override
            try:
                settings = settings_from_desired(self.base, self._twin_desired)
                if override is not None:
                    settings = settings.replace(model_dir=override)
                await self._switch(settings)
            except Exception as exc:  # refused, or a bug of ours: either way the previous state holds
                if not isinstance(exc, ChangeRefused | ConfigError):
                    log.exception("applying desired $version %s failed", version)
                code = getattr(
                    exc, "code", ErrorCode.INVALID_DESIRED if isinstance(exc, ConfigError) else ErrorCode.INTERNAL_ERROR
                )
                self.rejected_version, self.desired_refused = version, True
                self._failed(code, f"desired $version {version} refused, previous settings kept: {exc}")
                raise ChangeRefused(code, str(exc)) from None
            self.desired_version, self._model_override = version, override
            self.rejected_version, self.desired_refused, self.model_refused = None, False, False
            log.info("desired $version %s in effect", version)
            self.changed.set()
            if self.on_desired_model is not None:
                self.on_desired_model(desired_model(self._twin_desired))
            return settings

    async def reload_model(self, model_dir: str | None = None) -> Scorer:
        """Load `model_dir` (default: the current one, e.g. replaced in place) and swap it in; ChangeRefused on failure."""
        async with self._lock:
            settings = self.pipeline.settings
            target = model_dir or settings.model_dir
            try:
                try:
                    wanted = settings.replace(model_dir=target)
                except ConfigError as exc:
                    raise ChangeRefused(ErrorCode.MODEL_REJECTED, str(exc)) from None
                await self._switch(wanted, force_load=True)
            except ChangeRefused as exc:
                self.model_refused = True
                self._failed(exc.code, f"reloadModel {_clip(target)} refused, previous model kept: {exc}")
                raise
            if model_dir:
                self._model_override = model_dir
            self.model_refused = False
            self.changed.set()
            return self.pipeline.scorer

    async def _switch(self, settings: Settings, force_load: bool = False) -> None:
        current = self.pipeline.settings
        scorer = None
        loaded_by = (settings.model_dir, settings.score_script, settings.script_input)
        if force_load or loaded_by != (current.model_dir, current.score_script, current.script_input):
            self._check_roots(settings)
            scorer = await self._load(settings)
        try:
            await self.pipeline.reconfigure(settings, scorer)
        except ConfigError as exc:
            raise ChangeRefused(ErrorCode.INVALID_DESIRED if scorer is None else ErrorCode.MODEL_REJECTED, str(exc)) from None
        if settings.log_level != current.log_level:
            set_log_level(settings.log_level)
        if scorer is not None:
            self.model_loaded_at = _now()
            m = scorer.manifest
            log.info("model swapped in: %s v%s (%s) from %s", m.name, m.version, m.sha256[:12], settings.model_dir)

    def _check_roots(self, settings: Settings) -> None:
        """A model directory or script named at run time (twin, reloadModel) must lie under MODEL_ROOTS:
        loading one runs its code. The deployment's own MODEL_DIR and SCORE_SCRIPT are always allowed."""
        allowed = (self.base.model_dir, self.base.score_script)
        store = os.path.realpath(self.base.model_store) if self.base.model_store else None
        for name, path in (("modelDir", settings.model_dir), ("scoreScript", settings.score_script)):
            if not path or path in allowed:
                continue
            try:
                real = os.path.realpath(path)  # symlinks resolved: a link inside a root cannot lead out of it
            except (ValueError, OSError) as exc:  # a NUL byte, an unencodable character
                raise ChangeRefused(ErrorCode.MODEL_REJECTED, f"{name} is not a usable path ({exc})") from None
            roots = [os.path.realpath(root) for root in settings.model_roots]
            if name == "modelDir" and store:  # the model store's versions: verified against the twin's sha256
                roots.append(store)
            if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
                raise ChangeRefused(
                    ErrorCode.MODEL_REJECTED,
                    f"{name} {_clip(path)} is outside MODEL_ROOTS ({', '.join(settings.model_roots) or 'none'}); "
                    "models and scripts named at run time must lie under one (set MODEL_ROOTS in the module's env)",
                )

    async def _load(self, settings: Settings) -> Scorer:
        """Load and verify beside the running model (sha256, library versions, init(), a trial row)."""
        started = time.perf_counter()
        try:
            scorer = await asyncio.to_thread(
                load_scorer, settings.model_dir, settings.score_script, settings.allow_version_mismatch, settings.script_input
            )
        except (ModelDirError, ScriptLoadError, OSError, ValueError) as exc:
            raise ChangeRefused(ErrorCode.MODEL_REJECTED, str(exc)) from None
        except Exception as exc:  # loading runs the model's own code: anything can come out of it
            raise ChangeRefused(ErrorCode.MODEL_REJECTED, f"loading failed: {type(exc).__name__}: {exc}") from None
        log.info("model at %s verified in %.0f ms", settings.model_dir, (time.perf_counter() - started) * 1000)
        return scorer

    def _failed(self, code: str, message: str) -> None:
        log.error("%s", message)
        self.last_error = {"code": str(code), "message": _clip(_utf8(message), LAST_ERROR_MAX_CHARS), "at": _now()}
        self.changed.set()

    def status(self) -> dict[str, Any]:
        """What reported properties and getStatus show; JSON-able, twin-safe keys (no `$` or `.`)."""
        p = self.pipeline
        stats, model_stats, manifest = p.stats, p.stats.model, p.scorer.manifest
        return _bounded(
            {
                "status": self.state,
                "model": {
                    "name": manifest.name,
                    "version": manifest.version,
                    "sha256": manifest.sha256,
                    "dir": p.settings.model_dir,
                    "loadedAt": self.model_loaded_at,
                    **({"rollout": self.rollout} if self.rollout is not None else {}),
                },
                "settings": reported_settings(p.settings),
                "desiredVersion": self.desired_version,
                "rejectedDesiredVersion": self.rejected_version,
                "lastError": self.last_error,
                "counters": {
                    "messages": stats.messages,
                    "predictions": stats.predictions,
                    "errors": stats.errors,
                    "batches": model_stats.run_calls,
                    "meanBatchSize": model_stats.mean_batch_rows,
                    "queueDepth": p.batcher.depth,
                    "sendFailures": stats.send_failures,
                },
            }
        )
