"""Connections: at most HTTP_MAX_CONNECTIONS open, and each must send its request in time.

aiohttp 3.12 has neither: its protocol (RequestHandler) waits for a request's headers forever (its
keep-alive timer only starts after a first answer), its connection count is unbounded, and it does
not enforce `max_headers`, so a client may trickle headers for as long as it likes. A slowloris
client (a few header bytes now and then) holds a socket and its file descriptor for ever. What
aiohttp does offer is used as is: `keepalive_timeout`, `lingering_time`, `auto_decompress` and
`handler_cancellation` (set in server.py). The rest is here, kept small:

- GuardedHandler, aiohttp's protocol with a deadline: from the moment a connection can take a
  request (accepted, or its previous answer sent) the client has HTTP_READ_TIMEOUT_S to send the
  request line and headers, else a 408 (if some of it arrived) and the connection closes. The
  body's deadline is the handler's (server.py). Also: a header section over MAX_HEADER_BYTES gets
  431; more than MAX_PIPELINED requests queued on one connection closes it; aiohttp's plain-text
  error pages (a malformed request, an unknown Expect) become JSON, logged in one line, not as a
  traceback.
- ConnectionGuard, the count: a new connection beyond the cap first takes the place of the
  stalest connection that is only *waiting* for a request (idle keep-alive, headers or a body still
  arriving: what slowloris connections always are), so a thousand of them cannot keep a real client
  out; only when every connection is busy with a complete request is the new one refused with 503
  and Retry-After (_Refusal), after which it is closed within REFUSAL_LINGER_S. File descriptors
  stay under about twice the cap.
- GuardedServer and GuardedRunner put these into aiohttp's runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from app.core.errors import ErrorCode
from app.http.errors import JSON, HttpStats, code_for_status, error_body, json_error_of, raw_error

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 32 * 1024  # request line + headers; aiohttp bounds each line (8190) but not their number
MAX_PIPELINED = 32  # requests queued on one connection before it is closed
REFUSAL_LINGER_S = 1.0  # a refused connection is closed once the client has read its 503, or after this
RETRY_AFTER_S = "1"


class ConnectionGuard:
    """Admits connections up to `max_connections`, making room by evicting the stalest waiting one."""

    def __init__(self, max_connections: int, read_timeout_s: float, stats: HttpStats) -> None:
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.stats = stats
        self._open: set[GuardedHandler] = set()
        # Evictable connections, stalest first: those waiting for (the rest of) a request, from the
        # moment they are accepted (an accept burst creates many protocols before any is connected).
        self._waiting: OrderedDict[GuardedHandler, None] = OrderedDict()
        self._refusals: set[_Refusal] = set()

    @property
    def open(self) -> int:
        return len(self._open)

    def admit(self) -> bool:
        """Room for one more connection? Called as a connection is accepted, before its protocol exists."""
        if len(self._open) >= self.max_connections and self._waiting:
            stalest, _ = self._waiting.popitem(last=False)
            self.stats.connections_evicted += 1
            stalest.evict()  # releases its place at once
        return len(self._open) < self.max_connections

    def opened(self, handler: GuardedHandler) -> None:
        self._open.add(handler)
        self._waiting[handler] = None
        self.stats.connections = len(self._open)
        self.stats.connections_peak = max(self.stats.connections_peak, len(self._open))

    def waiting(self, handler: GuardedHandler) -> None:
        """The connection waits for (the rest of) a request: it may be evicted, stalest first."""
        if handler in self._open:
            self._waiting[handler] = None
            self._waiting.move_to_end(handler)

    def busy(self, handler: GuardedHandler) -> None:
        """The connection has a whole request in hand: not evicted."""
        self._waiting.pop(handler, None)

    def release(self, handler: GuardedHandler) -> None:
        self._waiting.pop(handler, None)
        self._open.discard(handler)
        self.stats.connections = len(self._open)

    def refusal(self) -> _Refusal:
        self.stats.connections_refused += 1
        return _Refusal(self._refusals, self.max_connections)

    def close_refusals(self) -> None:
        for refusal in list(self._refusals):
            refusal.abort()


class GuardedHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, with a request deadline and JSON errors.

    Uses three of RequestHandler's private attributes (`_request_count`, `_messages`, `_loop`) and
    GuardedServer two of Server's (`_kwargs`, `_loop`): aiohttp is pinned (requirements/runtime.txt),
    and tests/unit/test_http_hardening.py fails if an upgrade renames them."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None
        self._parsed_at_arm = 0  # requests parsed when the deadline was set: more means one arrived
        self._header_bytes = 0  # bytes of the awaited request so far
        self._previous_body: Any = None  # the last request's body, while it may still be arriving
        self._made = False
        self._evicted = False  # evicted before its connection was made: close it as it is

    # -- the request deadline --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._evicted:  # it made room for a newer connection before it started
            transport.close()
            return
        self._made = True
        super().connection_made(transport)
        self._arm(None)

    def _arm(self, previous_body: Any) -> None:
        """The connection can take a request: it has read_timeout_s to send its line and headers."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._parsed_at_arm = self._request_count
        if self.transport is None or self._messages:  # closed, or a pipelined request is already here
            return
        self._header_bytes = 0
        self._previous_body = None if previous_body is None or previous_body.is_eof() else previous_body
        self._deadline = self._loop.call_later(self._guard.read_timeout_s, self._on_deadline)
        self._guard.waiting(self)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None and (self._previous_body is None or self._previous_body.is_eof()):
            self._header_bytes += len(data)
        super().data_received(data)
        if self._request_count != self._parsed_at_arm:  # a request's headers are in
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
                self._guard.busy(self)
            if len(self._messages) > MAX_PIPELINED:
                log.debug("closing a connection with over %d pipelined requests", MAX_PIPELINED)
                self._guard.stats.error(ErrorCode.BAD_REQUEST)
                self.force_close()
        elif self._header_bytes > MAX_HEADER_BYTES and self.transport is not None:
            reason = f"the request line and headers are over {MAX_HEADER_BYTES} bytes"
            self._refuse(431, ErrorCode.HEADERS_TOO_LARGE, reason)

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport is None or self._request_count != self._parsed_at_arm:
            return
        if self._header_bytes:  # a request was on its way: say why it is cut off
            reason = f"the request headers did not arrive within {self._guard.read_timeout_s:g} s (HTTP_READ_TIMEOUT_S)"
            self._refuse(408, ErrorCode.REQUEST_TIMEOUT, reason)
        else:  # an idle connection: just close it
            self.force_close()

    def _refuse(self, status: int, code: ErrorCode, reason: str) -> None:
        self._guard.stats.error(code)
        log.debug("%d %s from %s", status, code, self.peername)
        if self.transport is not None:
            self.transport.write(raw_error(status, code, reason))
        self.force_close()

    def reading_body(self, reading: bool) -> None:
        """A handler reads (True) or has read (False) its request's body: a slow body may be evicted too."""
        (self._guard.waiting if reading else self._guard.busy)(self)

    def evict(self) -> None:
        """Make room for a new connection (ConnectionGuard.admit)."""
        self._guard.release(self)
        if not self._made:
            self._evicted = True
        elif self._deadline is not None and self._header_bytes:
            reason = "the request headers were too slow while the server was at HTTP_MAX_CONNECTIONS"
            self._refuse(408, ErrorCode.REQUEST_TIMEOUT, reason)
        else:
            self.force_close()  # an idle connection, or a slow body (its handler is cancelled)

    async def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> tuple[StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400 and resp.content_type != JSON:
            self._guard.stats.error(code_for_status(resp.status))
            resp = json_error_of(resp)  # raised outside the app's middlewares (an Expect before routing...)
        result = await super().finish_response(request, resp, start_time)
        if resp.status == 408 or (resp.status >= 400 and _body_withheld(request)):
            self.force_close()  # no body is coming, or not in time: close now rather than drain it (lingering_time)
        self._arm(request.content)
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._guard.release(self)
        super().connection_lost(exc)

    # -- errors before the app sees a request ----------------------------------------------------

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> StreamResponse:
        """aiohttp's answer to a request it could not parse (and to an exception out of a handler,
        which the app's middleware catches first): JSON, one log line, no traceback for a client's fault."""
        if request.writer.output_size > 0:  # as aiohttp: an answer was under way, the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        code = code_for_status(status)
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            reason = "internal error"
        else:
            detail = message or (str(exc) if exc is not None else "")
            detail = detail.strip().splitlines()[0][:200] if detail.strip() else ""  # not the echo of the bytes
            reason = "malformed HTTP request" + (f": {detail.rstrip(':')}" if detail else "")
            log.debug("%d %s from %s: %s", status, code, request.remote, reason)
        self._guard.stats.error(code)
        resp = web.Response(status=status, body=error_body(code, reason), content_type=JSON)
        resp.force_close()
        return resp


CONTINUE_SENT = "app.http.continue_sent"  # request key: the client was told to send its body (100 Continue)


def _body_withheld(request: BaseRequest) -> bool:
    """The client waits for 100 Continue before it sends the body, and was refused instead."""
    return request.headers.get("Expect", "").lower() == "100-continue" and not request.get(CONTINUE_SENT)


class _Refusal(asyncio.Protocol):
    """A connection beyond the cap while every connection is busy: 503 with Retry-After, then closed.

    It half-closes after the answer and reads until the client closes (at most REFUSAL_LINGER_S),
    because closing a socket with the request unread sends a reset that may destroy the answer
    before the client reads it. At most `limit` of them linger at once; more are dropped at once."""

    RESPONSE = raw_error(
        503,
        ErrorCode.OVERLOADED,
        "every connection is busy (HTTP_MAX_CONNECTIONS); retry shortly",
        {"Retry-After": RETRY_AFTER_S},
    )

    def __init__(self, lingering: set[_Refusal], limit: int) -> None:
        self._lingering = lingering
        self._limit = limit
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if len(self._lingering) >= self._limit:
            transport.abort()
            return
        self._lingering.add(self)
        transport.write(self.RESPONSE)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, self.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read

    def eof_received(self) -> bool:
        return False  # the client read the answer and closed: close

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._lingering.discard(self)
        self._transport = None


def reading_body(request: web.BaseRequest, reading: bool) -> None:
    """Tell the connection guard, if there is one (a test's plain aiohttp runner has none)."""
    protocol = request.protocol
    if isinstance(protocol, GuardedHandler):
        protocol.reading_body(reading)


class GuardedServer(web.Server):
    """aiohttp's Server (the protocol factory TCPSite listens with) making GuardedHandlers, or refusals."""

    def __init__(self, plain: web.Server, guard: ConnectionGuard) -> None:
        # The same handler and arguments as the Server the runner made (the app's handler_args included).
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,
        )
        self.guard = guard

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]  # a refusal is not a RequestHandler
        self.guard.stats.connections_accepted += 1
        if not self.guard.admit():
            return self.guard.refusal()
        handler = GuardedHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)
        self.guard.opened(handler)
        return handler


class GuardedRunner(web.AppRunner):
    """web.AppRunner whose server guards its connections (ConnectionGuard)."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.guard)

    async def cleanup(self) -> None:
        await super().cleanup()
        self.guard.close_refusals()
