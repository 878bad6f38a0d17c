"""The HTTP answers azmlinfsrv 1.5.1 gives, as plain values, and the request-level rules it applies to every route
of its blueprint (/score, /swagger.json, /): the request-id headers it echoes, the 431 for over-long ids, the
optional x-ms-server-version and TraceId headers.

A response is built in two steps, as in the server: a `Reply` (Flask's Response: status, body, ordered and
repeatable headers) made by the route, then `finish()` adds what the server's after_request hooks add and flattens
it into an `Answer`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.model.azureml.aml_request import Headers

# Bodies azmlinfsrv sends, word for word.
RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."
# Werkzeug's InternalServerError description: what an error while *sending* run()'s response gives.
WERKZEUG_INTERNAL_ERROR = (
    "The server encountered an internal error and was unable to complete your request. Either the server is"
    " overloaded or there is an error in the application."
)
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."
)
METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."
# gunicorn's own page when run() raises something that is not an Exception (SystemExit, KeyboardInterrupt).
GUNICORN_ERROR_PAGE = (
    b"<html>\n  <head>\n    <title>Internal Server Error</title>\n  </head>\n  <body>\n"
    b"    <h1><p>Internal Server Error</p></h1>\n    \n  </body>\n</html>\n"
)
JSON = "application/json"
TEXT_HTML = "text/html; charset=utf-8"

# azmlinfsrv's limit on the request-id headers it echoes.
HEADER_LIMIT = 100
# The environment variable azmlinfsrv's CLI sets to "azmlinfsrv/<version>" and sends back as x-ms-server-version.
SERVER_VERSION_ENV = "HTTP_X_MS_SERVER_VERSION"


@dataclass(frozen=True)
class Answer:
    """What to send: status, body, its Content-Type ("" for none) and the other response headers that carry
    meaning (repeated headers are joined with ", "; Content-Length is left to the HTTP layer)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class Reply:
    """A response being built (Flask's Response in azmlinfsrv)."""

    def __init__(self, status: int, body: bytes, headers: Headers) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def aml_reply(message: Any, status: int, *, json_str: bool = True, run_function_failed: bool = False) -> Reply:
    """The server's own AMLResponse(message, status, json_str=...): JSON-encoded with json.dumps' defaults
    (", " and ": " separators, ASCII escapes, NaN/Infinity allowed), or a str as text/html."""
    headers = Headers()
    if json_str or message is None:
        body = json.dumps(message if message is not None else {}).encode("utf-8")
        headers["Content-Type"] = JSON
    else:
        body = str(message).encode("utf-8")
        headers["Content-Type"] = TEXT_HTML
    headers["x-ms-run-function-failed"] = run_function_failed
    return Reply(status, body, headers)


def error_reply(status: int, message: str, *, run_function_failed: bool = False) -> Reply:
    """azmlinfsrv's ErrorResponse: {"message": ...} as JSON."""
    return aml_reply({"message": message}, status, run_function_failed=run_function_failed)


def wsgi_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request headers as a script under azmlinfsrv sees them (gunicorn then Werkzeug): names with "_" dropped
    (gunicorn does so since 22.0), names title-cased ("x-ms-thing" -> "X-Ms-Thing"), repeated headers joined with
    "," in arrival order, an empty Content-Type/Content-Length left out. Accepts a plain mapping or a multi-dict
    (whose items() repeat names)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    merged: dict[str, list[str]] = {}
    for name, value in pairs:
        if "_" in name:
            continue
        merged.setdefault(name.lower(), []).append(value)
    result = []
    for lowered, values in merged.items():
        value = ",".join(values)
        if lowered in ("content-type", "content-length") and not value:
            continue
        result.append((lowered.title(), value))
    return result


@dataclass(frozen=True)
class RequestIds:
    """The ids azmlinfsrv reads from a request and echoes in its answer."""

    request_id: str = ""
    legacy_client_request_id: str = ""
    client_request_id: str = ""
    trace_id: str | None = None


def request_ids(headers: Headers) -> tuple[RequestIds, Reply | None]:
    """The request-id rules of azmlinfsrv's before_request hook: x-request-id (a new uuid4 when absent),
    x-ms-client-request-id, and the deprecated x-ms-request-id (filled from the client id or the request id when
    absent). An id over 100 characters answers 431 before the route runs (the Reply returned)."""
    trace_id = headers.get("TraceId")
    request_id = headers.get("x-request-id", str(uuid.uuid4()))
    if len(request_id) > HEADER_LIMIT:
        reply = error_reply(431, f"x-request-id must not exceed {HEADER_LIMIT} characters")
        return RequestIds(trace_id=trace_id), reply

    legacy = headers.get("x-ms-request-id", "")
    client = headers.get("x-ms-client-request-id", "")
    if legacy:
        client = client or legacy
    else:
        legacy = client or request_id
    if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
        reply = error_reply(431, f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters")
        return RequestIds(request_id=request_id, trace_id=trace_id), reply
    return RequestIds(request_id, legacy, client, trace_id), None


def finish(reply: Reply, ids: RequestIds | None) -> Answer:
    """Add what azmlinfsrv's after_request hook adds (ids None: a route outside its blueprint, which gets none of
    it) and flatten into an Answer."""
    headers = reply.headers.copy()
    if ids is not None:
        server_version = os.environ.get(SERVER_VERSION_ENV, "")
        if server_version:
            headers.add("x-ms-server-version", server_version)
        if ids.request_id:
            headers["x-request-id"] = ids.request_id
        if ids.legacy_client_request_id:
            headers["x-ms-request-id"] = ids.legacy_client_request_id
        if ids.client_request_id:
            headers["x-ms-client-request-id"] = ids.client_request_id
        if ids.trace_id is not None:
            headers.add("TraceId", ids.trace_id)
    content_type = headers.get("Content-Type", "")
    flat: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        # Content-Type is the Answer's own field (a second one, which Flask would also send, is dropped);
        # Content-Length is the HTTP layer's to compute from the body.
        if lowered in ("content-type", "content-length"):
            continue
        if lowered in names:
            flat[names[lowered]] += f", {value}"
        else:
            names[lowered] = name
            flat[name] = value
    return Answer(reply.status, reply.body, content_type, flat)


def _blueprint_answer(reply: Reply, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Answer:
    ids, early = request_ids(Headers(wsgi_headers(headers or {})))
    return finish(early or reply, ids)


def health(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> Answer:
    """GET / (also HEAD): 200 "Healthy" as text/html, with the request-id headers."""
    return _blueprint_answer(Reply(200, b"Healthy", Headers([("Content-Type", TEXT_HTML)])), headers)


def scoring_timeout(timeout_ms: int, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> Answer:
    """What azmlinfsrv answers when run() outlives SCORING_TIMEOUT_MS (it interrupts run() with SIGALRM; a caller
    that runs run() in a thread can only stop waiting for it)."""
    reply = error_reply(500, f"Scoring timeout after {timeout_ms} ms", run_function_failed=True)
    return _blueprint_answer(reply, headers)


def not_found() -> Answer:
    """Any path the server has no route for (e.g. /swagger2.json): Flask's 404, without the request-id headers."""
    return finish(error_reply(404, NOT_FOUND), None)


def method_not_allowed() -> Answer:
    """A method a route does not take (PUT /score, POST /swagger.json, POST /): Flask's 405, without the
    request-id headers (and without an Allow header)."""
    return finish(error_reply(405, METHOD_NOT_ALLOWED), None)


def gunicorn_error() -> Answer:
    """gunicorn's bare 500 page, for something run() raises that is not an Exception (e.g. SystemExit)."""
    return Answer(500, GUNICORN_ERROR_PAGE, "text/html", {})
