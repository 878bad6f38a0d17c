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

import logging
import uuid

import orjson
from aiohttp import web

from app.core.control import Health
from app.core.errors import ErrorCode
from app.core.pipeline import Pipeline
from app.core.requests import score_request
from app.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.http.metrics import metrics_text, registry_for

log = logging.getLogger(__name__)

JSON = "application/json"
RETRY_AFTER_S = "1"


def _json(status: int, doc: object, **headers: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type=JSON, headers=headers or None)


def make_app(pipeline: Pipeline, health: Health) -> web.Application:
    registry = registry_for(pipeline)
    max_bytes = pipeline.settings.max_message_bytes

    async def score(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            reason = f"body is over the {max_bytes}-byte limit (MAX_MESSAGE_BYTES)"
            return _json(413, {"code": ErrorCode.OVERSIZED, "reason": reason})
        request_id = request.headers.get("x-ms-request-id") or request.headers.get("x-request-id") or uuid.uuid4().hex
        reply = await score_request(pipeline, body, request_id, health.ready, health.status, request.content_type)
        headers = {"Retry-After": RETRY_AFTER_S} if reply.retry else None
        return web.Response(status=reply.status, body=reply.body, content_type=JSON, headers=headers)

    async def root(_: web.Request) -> web.Response:
        return web.Response(text="Healthy")

    async def live(_: web.Request) -> web.Response:
        return _json(200, {"status": health.status})

    async def ready(_: web.Request) -> web.Response:
        return _json(200 if health.ready else 503, {"status": health.status, "ready": health.ready})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics_text(registry), headers={"Content-Type": METRICS_CONTENT_TYPE})

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


async def start_http(pipeline: Pipeline, health: Health) -> web.AppRunner:
    """Serve on HTTP_HOST:HTTP_PORT; the caller cleans the runner up."""
    runner = web.AppRunner(make_app(pipeline, health), access_log=None, shutdown_timeout=pipeline.settings.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, pipeline.settings.http_host, pipeline.settings.http_port)
    await site.start()
    return runner
