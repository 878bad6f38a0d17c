"""What the HTTP layer answers when it refuses a request itself: always JSON `{"code", "reason"}`.

Codes are stable (clients, dashboards and alerts match on them); reasons are for people. The codes
the core already names (`oversized`, `overloaded`, `not_ready`, `timeout`, `internal_error`) are
reused; the others belong to HTTP alone. A reason never quotes a credential, and never carries a
traceback.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus

import orjson
from aiohttp import web

from app.core.errors import ErrorCode

JSON = "application/json"


_BY_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.OVERSIZED,
    415: ErrorCode.UNSUPPORTED_ENCODING,
    417: ErrorCode.EXPECTATION_FAILED,
    431: ErrorCode.HEADERS_TOO_LARGE,
    503: ErrorCode.OVERLOADED,
}


def code_for_status(status: int) -> ErrorCode:
    return _BY_STATUS.get(status, ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST)


def error_body(code: str, reason: str) -> bytes:
    return orjson.dumps({"code": code, "reason": reason})


def error_response(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=error_body(code, reason), content_type=JSON, headers=headers)


def json_error_of(exc: web.HTTPException) -> web.Response:
    """aiohttp's HTTP error (404, 405 with its Allow header, 417...) as JSON."""
    code = code_for_status(exc.status)
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
    default = f"{exc.status}: {exc.reason}"  # aiohttp's text when nobody gave one
    return error_response(exc.status, code, exc.reason if exc.text in (None, "", default) else exc.text, headers)


def raw_error(status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for the places with no aiohttp request
    (a refused connection, a request that never arrived)."""
    body = error_body(code, reason)
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {JSON}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


@dataclass
class HttpStats:
    """The HTTP layer's own counters (GET /metrics); the pipeline counts what reaches the model."""

    connections: int = 0  # open (admitted) connections now
    connections_accepted: int = 0  # every connection accepted, refused ones included
    connections_peak: int = 0
    connections_refused: int = 0  # 503: every connection was busy with a request
    connections_evicted: int = 0  # the stalest idle or slow connection, closed to let a new one in
    errors_by_code: Counter[str] = field(default_factory=Counter)  # answers the HTTP layer gave by itself

    def error(self, code: str) -> None:
        self.errors_by_code[code] += 1
