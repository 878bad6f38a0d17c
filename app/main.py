"""The one composition root: how a model, settings and a sink become a running pipeline, and how
the module puts the core and its adapters (edgeHub, HTTP) together.

Every front end (the edgeHub module, `serve`, `simulate`, `score`, `selftest`, the benchmarks)
opens its pipeline here, so the start-up order (load and verify the model off the event loop,
build, tune the collector, start the batcher) is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from app.core.control import Controller, Health
from app.core.journal import IntakeJournal, JournalError
from app.core.messages import Sink
from app.core.pipeline import Pipeline
from app.model.scorer import Scorer, load_scorer
from app.settings import Settings
from edgekit.signals import stop_on_signals

if TYPE_CHECKING:  # adapters are imported where they are used: the other commands need neither
    from app.edgehub.module import EdgeHubModule
    from app.http.server import HttpServer

log = logging.getLogger("app")

# GET /ready lists "the model has finished no batch" after this long with messages queued.
STALL_LIMIT_S = 60.0
DEAF_EXIT_DRAIN_S = 1.0  # what the pipeline can still finish before a deaf module exits


async def load_model(settings: Settings) -> Scorer:
    """Load and verify the model directory and its script, on a worker thread (it takes seconds)."""
    s = settings
    return await asyncio.to_thread(load_scorer, s.model_dir, s.score_script, s.allow_version_mismatch, s.script_input)


async def open_pipeline(settings: Settings, sink: Sink, scorer: Scorer | None = None) -> Pipeline:
    """A started pipeline on `settings`, sending to `sink`; the caller closes it (pipeline.close())."""
    pipeline = Pipeline(settings, scorer or await load_model(settings), sink)
    await pipeline.start()
    return pipeline


def open_journal(settings: Settings) -> IntakeJournal | None:
    """The intake journal the settings ask for (INTAKE_JOURNAL=disk); JournalError says what to do if it cannot be."""
    if settings.intake_journal != "disk":
        return None
    return IntakeJournal(settings.journal_dir, settings.journal_max_bytes)


async def run_module(settings: Settings) -> int:
    """The container's main: serve edgeHub inputs (and HTTP) until SIGTERM/SIGINT; returns the exit code."""
    # Imported here: the other commands need neither the SDK nor aiohttp.
    from app.edgehub.module import EdgeHubModule
    from app.http.auth import load_token
    from app.http.download import DownloadFailed, download
    from app.http.server import start_http
    from app.rollout.agent import RolloutAgent

    # HTTP_TOKEN / HTTP_TOKEN_FILE first: a bad token file stops the start (ConfigError, exit 2) before
    # the model loads and before edgeHub is connected to, with nothing to clean up.
    token = load_token(settings) if settings.http_port else ""
    rollout = RolloutAgent(settings, download, (DownloadFailed,))
    with stop_on_signals() as stop:
        scorer, stored = await _first_model(settings, rollout.startup_dir())
        edge = await EdgeHubModule.create(settings)  # first: without an edge environment, that is what to say
        try:
            edge.journal = open_journal(settings)
        except JournalError as exc:
            log.error("%s", exc)
            await edge.shutdown()
            return 2
        journal = edge.journal
        pipeline = await open_pipeline(settings.replace(model_dir=stored) if stored else settings, edge.sink, scorer)
        health = Health()
        health.checks += [edge.problem, lambda: pipeline.stalled(STALL_LIMIT_S)]
        controller = Controller(settings, pipeline, health, model_override=stored)
        rollout.attach(controller)
        # The HTTP endpoint shares the pipeline: requests and edge messages batch together.
        http = await start_http(pipeline, health, token=token) if settings.http_port else None
        try:
            await edge.connect(pipeline)
        except Exception as exc:  # the SDK raises its own error types; say it plainly and let the runtime restart us
            log.error("cannot connect to edgeHub: %r; exiting so that the IoT Edge runtime restarts the module", exc)
            if http is not None:
                await http.cleanup()
            await pipeline.close()
            edge.close_journal()
            await edge.shutdown()
            return 1
        deaf: list[str] = []

        def on_deaf(reason: str) -> None:
            """The watchdog's verdict: unhealthy now, then stop and exit non-zero so that edgeAgent restarts us."""
            log.error("edgeHub connection is deaf (%s); exiting so that the IoT Edge runtime restarts the module", reason)
            deaf.append(reason)
            controller.set_state("unhealthy")
            stop.set()

        await edge.start(controller, on_deaf)
        s, manifest = pipeline.settings, pipeline.scorer.manifest
        log.info(
            "ready: inputs=%s output=%s errors=%s model=%s v%s journal=%s",
            ",".join(s.input_names),
            s.output_name,
            s.error_output_name,
            manifest.name,
            manifest.version,
            settings.journal_dir if journal is not None else "off",
        )
        controller.set_state("ready")
        await stop.wait()
        if deaf:
            return await _exit_deaf(edge, pipeline, http)

        controller.set_state("stopping")
        await rollout.close()
        log.info("stopping: finishing the messages in hand")
        await edge.report_stopping()
        code = 0
        try:
            async with asyncio.timeout(settings.shutdown_timeout_s):
                await edge.stop_receiving()
                if http is not None:
                    await http.cleanup()  # stops listening; requests in flight get their answers
                await pipeline.close()
        except TimeoutError:
            code = 1
            edge.give_up_sending()
            log.error(
                "shutdown timed out after %.1fs with %d messages queued for the model%s",
                settings.shutdown_timeout_s,
                pipeline.batcher.depth,
                "; they are in the journal and will be scored at the next start" if journal is not None else "",
            )
        await edge.disconnect()  # before the journal closes: nothing acknowledged after it
        edge.close_journal()
        stats = pipeline.stats
        intake = edge.intake
        log.info(
            "stopped: messages=%d predictions=%d errors=%d sent=%d send_failures=%d queue_full_waits=%d inbox_peak=%d "
            "replayed=%d spilled=%d shed=%d deferred=%d",
            stats.messages,
            stats.predictions,
            stats.errors,
            edge.sink.sent,
            edge.sink.failed,
            pipeline.batcher.queue_full_waits,
            edge.inbox_peak,
            intake.replayed if intake else 0,
            intake.spilled if intake else 0,
            intake.shed if intake else 0,
            intake.deferred if intake else 0,
        )
        await edge.shutdown()
    return code


async def _first_model(settings: Settings, stored: str | None) -> tuple[Scorer, str | None]:
    """The model to start on: the model store's version in use (rolled out earlier: no download), else
    MODEL_DIR. A stored version that no longer loads is skipped with a warning, not a failed start."""
    if stored:
        try:
            scorer = await load_model(settings.replace(model_dir=stored))
        except Exception as exc:  # a store on a volume can be damaged; MODEL_DIR is the image's own model
            log.warning("model store version %s does not load (%s); starting on MODEL_DIR %s", stored, exc, settings.model_dir)
        else:
            log.info("starting on the model store's version in use: %s (no download)", stored)
            return scorer, stored
    return await load_model(settings), None


async def _exit_deaf(edge: EdgeHubModule, pipeline: Pipeline, http: HttpServer | None) -> int:
    """Leave fast after the watchdog's verdict: reporting, unsubscribing and draining cannot finish on a
    dead connection (they cost ~15 s before the exit, measured), and the journal replays what is left.
    A deaf client can also leave SDK calls hanging on worker threads, which the interpreter would join
    at exit for ever: so os._exit, once the journal is closed and the log written."""
    edge.give_up_sending()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DEAF_EXIT_DRAIN_S):
            if http is not None:
                await http.cleanup()
            await pipeline.close()
    edge.close_journal()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await edge.client.shutdown()
    logging.shutdown()
    os._exit(1)
