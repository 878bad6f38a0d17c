"""The local HTTP endpoint (aiohttp): scoring, health and Prometheus metrics, on the same pipeline
and batcher as the edgeHub route, so HTTP requests and edge messages batch together.

- POST /score: any body the module accepts on its input. 200 with the prediction message's body;
  for an Azure ML-style `{"data": [[...]]}` request, the list of per-row results, as Azure ML's
  server returns run()'s output. 400 with the error record; 413 over MAX_MESSAGE_BYTES; 503 with
  Retry-After while the queue is full or the model is not ready.
- GET / ("Healthy", as Azure ML's server answers), GET /live, GET /ready (503 until the model is
  loaded and while stopping).
- GET /metrics: Prometheus text, read from the pipeline's counters at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from .config import Settings
from .messages import OutMessage
from .pipeline import Pipeline
from .requests import score_request
from .scoring import load_scorer

log = logging.getLogger(__name__)

JSON = "application/json"
RETRY_AFTER_S = "1"


@dataclass
class Health:
    """What the orchestrator and the readiness probe see; the runner moves it along."""

    ready: bool = False
    status: str = "starting"  # starting / ready / stopping


def _json(status: int, doc: object, **headers: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type=JSON, headers=headers or None)


class PipelineCollector(Collector):
    """Exposes the pipeline's counters; nothing is counted twice or on the per-message path."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def collect(self) -> Iterator[object]:
        p = self._pipeline
        stats, manifest = p.stats, p.scorer.manifest
        prefix = "edge_inference"
        for name, help_text, value in (
            ("messages", "Messages taken in (edgeHub, HTTP)", stats.messages),
            ("predictions", "Messages that got a prediction", stats.predictions),
            ("rows", "Feature rows scored", stats.rows),
            ("output_messages", "Output messages handed to edgeHub", stats.output_messages),
            ("batches", "run() calls", stats.model.run_calls),
            ("queue_full_waits", "Times intake waited for room in the queue", p.batcher.queue_full_waits),
            ("refused", "HTTP requests refused with 503 because the queue was full", stats.refused),
            ("send_failures", "Outputs the sink refused", stats.send_failures),
        ):
            yield CounterMetricFamily(f"{prefix}_{name}", help_text, value=value)
        errors = CounterMetricFamily(f"{prefix}_errors", "Messages that got an error record, by reason", labels=["code"])
        for code, count in sorted(stats.errors_by_code.items()):
            errors.add_metric([code], count)
        yield errors
        for name, help_text, histogram in (
            ("batch_rows", "Feature rows per run() call", stats.model.batch_rows),
            ("scoring_seconds", "Duration of one run() call", stats.model.scoring_seconds),
            ("latency_seconds", "Intake to output handed to edgeHub or the HTTP reply, per message", stats.latency_seconds),
        ):
            family = HistogramMetricFamily(f"{prefix}_{name}", help_text)
            family.add_metric([], histogram.buckets(), histogram.total)
            yield family
        yield GaugeMetricFamily(f"{prefix}_queue_depth", "Messages waiting for the model", value=p.batcher.depth)
        info = InfoMetricFamily(f"{prefix}_model", "The model in use")
        info.add_metric([], {"name": manifest.name, "version": str(manifest.version), "sha256": manifest.sha256})
        yield info


def make_app(pipeline: Pipeline, health: Health) -> web.Application:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(pipeline))
    max_bytes = pipeline.settings.max_message_bytes

    async def score(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            reason = f"body is over the {max_bytes}-byte limit (MAX_MESSAGE_BYTES)"
            return _json(413, {"code": "oversized", "reason": reason})
        request_id = request.headers.get("x-ms-request-id") or request.headers.get("x-request-id") or uuid.uuid4().hex
        reply = await score_request(pipeline, body, request_id, health.ready, health.status)
        headers = {"Retry-After": RETRY_AFTER_S} if reply.retry else None
        return web.Response(status=reply.status, body=reply.body, content_type=JSON, headers=headers)

    async def root(_: web.Request) -> web.Response:
        return web.Response(text="Healthy")

    async def live(_: web.Request) -> web.Response:
        return _json(200, {"status": health.status})

    async def ready(_: web.Request) -> web.Response:
        return _json(200 if health.ready else 503, {"status": health.status, "ready": health.ready})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application(client_max_size=max_bytes)
    app.add_routes(
        [
            web.post("/score", score),
            web.get("/", root),
            web.get("/live", live),
            web.get("/ready", ready),
            web.get("/metrics", metrics),
        ]
    )
    return app


class RepliesOnly:
    """The sink of `serve`: every message it takes carries a reply, so nothing reaches here."""

    async def send(self, msg: OutMessage) -> None:
        log.warning("output without a requester dropped: output=%s correlation_id=%s", msg.output, msg.correlation_id)

    async def flush(self) -> None:
        return None


async def serve(settings: Settings) -> int:
    """`python -m app serve`: the HTTP endpoint alone, no edgeHub; returns the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = Health()
    scorer = await asyncio.to_thread(load_scorer, settings.model_dir, settings.score_script, settings.allow_version_mismatch)
    pipeline = Pipeline(settings, scorer, RepliesOnly())
    await pipeline.start()
    runner = await start_http(pipeline, health)
    health.ready, health.status = True, "ready"
    log.info("serving http://%s:%d (POST /score, GET /ready, GET /metrics)", settings.http_host, settings.http_port)
    await stop.wait()
    health.ready, health.status = False, "stopping"
    await runner.cleanup()  # stops listening, lets requests in flight finish
    await pipeline.close()
    return 0


async def start_http(pipeline: Pipeline, health: Health) -> web.AppRunner:
    """Serve on HTTP_HOST:HTTP_PORT; the caller cleans the runner up."""
    runner = web.AppRunner(make_app(pipeline, health), access_log=None, shutdown_timeout=pipeline.settings.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, pipeline.settings.http_host, pipeline.settings.http_port)
    await site.start()
    return runner
