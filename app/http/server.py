"""The local HTTP endpoint (aiohttp): scoring, health and Prometheus metrics, on the same pipeline
and batcher as the edgeHub route, so HTTP requests and edge messages batch together.

- POST /score: any body the module accepts on its input, plain or gzip/deflate. 200 with the
  prediction message's body; for an Azure ML-style `{"data": [[...]]}` request, the list of
  per-row results, as Azure ML's server returns run()'s output. 400 with the error record; 413
  over MAX_MESSAGE_BYTES; 503 with Retry-After while the queue is full or the model is not ready.
- GET / ("Healthy", as Azure ML's server answers), GET /live, GET /ready (503 until the model is
  loaded and while stopping), GET /swagger.json (the script's OpenAPI document, as Azure ML's server
  builds it).
- With an Azure ML script (not INPUT_FORMAT = "ndarray"), /score answers exactly as Azure ML's server
  (azmlinfsrv 1.5.1) does for the same script: every method, the body handed to run() as it is, the
  status, body, content type and headers of its answer (app/model/azureml). Requests still queue in
  the shared batcher and run on the one model thread.
- GET /metrics: Prometheus text, read from the pipeline's counters at scrape time.

Hardening (README "HTTP security"): an optional bearer token (auth.py) on everything but GET
/live; bodies read bounded and inflated off the event loop (body.py); a deadline for each request
and a cap on connections (guard.py); a client that goes away cancels its request
(`handler_cancellation`: score_request's reply future is cancelled with it, so the core does not
score it); every refusal is JSON `{"code", "reason"}` (errors.py), never a traceback.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from aiohttp import HttpVersion11, hdrs, web
from aiohttp.typedefs import Handler

from app.core.control import Health
from app.core.errors import ErrorCode
from app.core.messages import RequestInfo
from app.core.pipeline import Pipeline
from app.core.requests import score_request
from app.http.auth import BearerAuth, load_token
from app.http.body import BodyRefused, read_body
from app.http.errors import JSON, HttpStats, code_for_status, error_response, json_error_of
from app.http.guard import CONTINUE_SENT, ConnectionGuard, GuardedRunner, reading_body
from app.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.http.metrics import metrics_text, registry_for
from app.model.azureml import answers

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
HTTP_STATS = web.AppKey("http_stats", HttpStats)
KEEPALIVE_BACKSTOP_S = 1.0  # aiohttp's own idle timer, a little after ours (guard.py) would have closed


def _json(status: int, doc: object, **headers: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type=JSON, headers=headers or None)


def _answer(request: web.Request, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    """A response with exactly this Content-Type (charset and all, or none); HEAD gets the headers only."""
    headers = {hdrs.CONTENT_TYPE: content_type, **headers} if content_type else dict(headers)
    return web.Response(status=status, body=None if request.method == hdrs.METH_HEAD else body, headers=headers)


def make_app(pipeline: Pipeline, health: Health, *, token: str | None = None, stats: HttpStats | None = None) -> web.Application:
    """The app on `pipeline`. `token`: the bearer token ("" for none); None reads it from the settings
    (HTTP_TOKEN or HTTP_TOKEN_FILE; ConfigError if the file cannot be read). `stats`: the HTTP
    layer's counters, shared with the connection guard (start_http); app[HTTP_STATS] has them."""
    settings = pipeline.settings
    stats = stats if stats is not None else HttpStats()
    registry = registry_for(pipeline, stats)
    max_bytes = settings.max_message_bytes
    read_timeout_s = settings.http_read_timeout_s
    auth = BearerAuth(load_token(settings) if token is None else token, stats)

    @web.middleware
    async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error is JSON {code, reason}; a bug is a 500 "internal_error" (traceback in the log only)."""
        try:
            return await handler(request)
        except web.HTTPException as exc:  # 404, 405 (with Allow)...
            if exc.status < 400:
                raise
            stats.error(code_for_status(exc.status))
            if exc.status in (404, 405) and pipeline.scorer.azureml:  # a path or method Azure ML's server has not
                answer = answers.not_found() if exc.status == 404 else answers.method_not_allowed()
                return _answer(request, answer.status, answer.body, answer.content_type, answer.headers)
            return json_error_of(exc)
        except ConnectionError:  # the client went away mid-request: nobody to answer, nothing to log
            log.debug("%s %s: the client went away", request.method, request.path)
            return error_response(400, ErrorCode.BAD_REQUEST, "the connection was lost")
        except Exception:  # not CancelledError (a client gone, with handler_cancellation) either
            log.exception("internal error answering %s %s", request.method, request.path)
            stats.error(ErrorCode.INTERNAL_ERROR)
            return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        denial = auth.denial(request)
        return denial if denial is not None else await handler(request)

    async def expect(request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: answer 401 or 413 before the client sends the body, else let it send."""
        if request.version != HttpVersion11:
            return None
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            stats.error(ErrorCode.EXPECTATION_FAILED)
            return error_response(417, ErrorCode.EXPECTATION_FAILED, "only Expect: 100-continue is supported")
        denial = auth.denial(request)
        if denial is not None:
            return denial
        if request.content_length is not None and request.content_length > max_bytes:
            stats.error(ErrorCode.OVERSIZED)
            reason = f"body is {request.content_length} bytes, over the {max_bytes}-byte limit (MAX_MESSAGE_BYTES)"
            return error_response(413, ErrorCode.OVERSIZED, reason)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's own: the answer proper has not started
        request[CONTINUE_SENT] = True
        return None

    async def score(request: web.Request) -> web.Response:
        azureml = pipeline.scorer.azureml  # an Azure ML script: every method goes to it, as to Azure ML's server
        if request.method != hdrs.METH_POST and not azureml:
            raise web.HTTPMethodNotAllowed(request.method, [hdrs.METH_POST])
        reading_body(request, True)  # a slow body may be evicted when the connections run out
        try:
            body = await read_body(request, max_bytes, read_timeout_s)
        except BodyRefused as refused:
            stats.error(refused.code)
            return refused.response()
        finally:
            reading_body(request, False)
        request_id = request.headers.get("x-ms-request-id") or request.headers.get("x-request-id") or uuid.uuid4().hex
        info = RequestInfo(request.method, request.query_string, tuple(request.headers.items())) if azureml else None
        # Cancelled with the handler when the client goes away (handler_cancellation): score_request's
        # wait for the reply is then cancelled, and the reply future with it.
        reply = await score_request(pipeline, body, request_id, health.ready, health.status, request.content_type, info)
        headers = {"Retry-After": RETRY_AFTER_S} if reply.retry else {}
        return _answer(request, reply.status, reply.body, reply.content_type, headers | reply.headers)

    async def root(request: web.Request) -> web.Response:
        answer = answers.health(request.headers.items())  # "Healthy", with Azure ML's request-id headers
        return _answer(request, answer.status, answer.body, answer.content_type, answer.headers)

    async def swagger(request: web.Request) -> web.Response:
        """The script's OpenAPI document, as Azure ML's server builds it (inference_schema decorations)."""
        answer = pipeline.scorer.entry.swagger(request.query.get("version"), headers=request.headers.items())
        return _answer(request, answer.status, answer.body, answer.content_type, answer.headers)

    async def live(_: web.Request) -> web.Response:
        # 503 once the watchdog found the module deaf or stuck (it exits next): the HEALTHCHECK sees it too.
        return _json(503 if health.status == "unhealthy" else 200, {"status": health.status})

    async def ready(_: web.Request) -> web.Response:
        # Ready means doing the job: the model loaded AND nothing that keeps it from its work (edgeHub
        # unreachable or deaf, batches not finishing): the HEALTHCHECK and orchestrators read this.
        problems = health.problems()
        ok = health.ready and not problems
        return _json(200 if ok else 503, {"status": health.status, "ready": ok, "problems": problems})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics_text(registry), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app = web.Application(
        client_max_size=max_bytes,
        middlewares=[json_errors, authenticate],
        handler_args={
            # Bodies stay compressed in the protocol: body.py inflates them off the event loop, bounded.
            "auto_decompress": False,
            # A client that disconnects cancels its handler (and so its wait for the model).
            "handler_cancellation": True,
            # An idle keep-alive connection is closed by guard.py's deadline; this is aiohttp's backstop.
            "keepalive_timeout": read_timeout_s + KEEPALIVE_BACKSTOP_S,
            # The unread rest of a refused body is drained for at most this long, then the connection closes.
            "lingering_time": min(10.0, read_timeout_s),
        },
    )
    app[HTTP_STATS] = stats
    app.add_routes(
        [
            web.route(hdrs.METH_ANY, "/score", score, expect_handler=expect),
            web.get("/", root, expect_handler=expect),
            web.get("/swagger.json", swagger, expect_handler=expect),
            web.get("/live", live, expect_handler=expect),
            web.get("/ready", ready, expect_handler=expect),
            web.get("/metrics", metrics, expect_handler=expect),
        ]
    )
    return app


HttpServer = web.AppRunner  # what start_http returns; cleanup() stops it


async def start_http(pipeline: Pipeline, health: Health, *, token: str | None = None) -> web.AppRunner:
    """Serve on HTTP_HOST:HTTP_PORT (port 0: any free port, runner.addresses has it); the caller
    cleans the runner up. `token` as in make_app: None reads HTTP_TOKEN / HTTP_TOKEN_FILE."""
    settings = pipeline.settings
    stats = HttpStats()
    app = make_app(pipeline, health, token=token, stats=stats)
    guard = ConnectionGuard(settings.http_max_connections, settings.http_read_timeout_s, stats)
    runner = GuardedRunner(app, guard, access_log=None, shutdown_timeout=settings.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
