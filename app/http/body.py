"""Request bodies: read bounded, inflated off the event loop, bounded again.

aiohttp would inflate a `Content-Encoding: gzip/deflate` body inside the protocol, on the event
loop, with no bound on the output: a 100 KB gzip bomb becomes 100 MB there, and everything else
the loop carries (edgeHub traffic, /live) stalls for the better part of a second. So the app turns
that off (`auto_decompress=False`), reads the compressed bytes bounded by MAX_MESSAGE_BYTES and
inflates them on a worker thread, into at most MAX_MESSAGE_BYTES and at most MAX_INFLATION_RATIO
times the compressed size.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import hdrs, web

from app.core.errors import ErrorCode
from app.http.errors import error_response

MAX_INFLATION_RATIO = 100  # real JSON compresses 5-20x; far beyond that is a bomb
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
SUPPORTED_CODINGS = ("gzip", "deflate")  # and identity; x-gzip is gzip (RFC 9110 8.4.1.3)


class BodyRefused(Exception):
    """The body cannot be taken; the HTTP answer that says why."""

    def __init__(self, status: int, code: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.headers = status, code, reason, headers

    def response(self) -> web.Response:
        resp = error_response(self.status, self.code, self.reason, self.headers)
        if self.status == 408:  # the client is too slow to talk to any longer (guard.py closes at once)
            resp.force_close()
        return resp


def content_coding(request: web.BaseRequest) -> str | None:
    """The one coding to undo (gzip or deflate), None for none; BodyRefused (415) for anything else."""
    header = request.headers.get(hdrs.CONTENT_ENCODING, "")
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    codings = ["gzip" if c == "x-gzip" else c for c in codings]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in SUPPORTED_CODINGS:
        return codings[0]
    shown = header if len(header) <= 64 else header[:64] + "..."
    raise BodyRefused(
        415,
        ErrorCode.UNSUPPORTED_ENCODING,
        f"Content-Encoding {shown!r} is not supported; send identity, gzip or deflate (one coding)",
        {hdrs.ACCEPT_ENCODING: ", ".join(SUPPORTED_CODINGS)},
    )


def _oversized(reason: str) -> BodyRefused:
    return BodyRefused(413, ErrorCode.OVERSIZED, reason)


async def read_raw(request: web.BaseRequest, limit: int) -> bytes:
    """The body as sent (still compressed), at most `limit` bytes; BodyRefused when it is more or broken."""
    announced = request.content_length
    if announced is not None and announced > limit:
        raise _oversized(f"body is {announced} bytes, over the {limit}-byte limit (MAX_MESSAGE_BYTES)")
    body = bytearray()
    try:
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > limit:
                raise _oversized(f"body is over the {limit}-byte limit (MAX_MESSAGE_BYTES)")
    except web.RequestPayloadError as exc:  # a broken chunked body, a body shorter than its Content-Length...
        raise BodyRefused(400, ErrorCode.BAD_REQUEST, f"the request body is malformed: {exc}") from None
    return bytes(body)


def inflate(raw: bytes, coding: str, limit: int) -> bytes:
    """Undo gzip or deflate into at most min(limit, MAX_INFLATION_RATIO * len(raw)) bytes; BodyRefused otherwise.

    zlib's max_length stops the output at the bound, whatever the input claims: the work done is
    proportional to the bound, never to what the bomb would expand to. Runs on a worker thread."""
    bound = min(limit, MAX_INFLATION_RATIO * len(raw))
    out = bytearray()
    data = raw
    while True:  # gzip allows several members, one after the other (RFC 1952 2.2)
        # deflate: RFC 9110 says zlib format; some clients send raw deflate (aiohttp and browsers take both)
        zlib_header = data[0] & 0x0F == 8
        wbits = _GZIP_WBITS if coding == "gzip" else _ZLIB_WBITS if zlib_header else _RAW_DEFLATE_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, bound - len(out) + 1)
        except zlib.error:
            raise BodyRefused(400, ErrorCode.BAD_ENCODING, f"the body is not valid {coding} data") from None
        if len(out) > bound:
            if bound < limit:
                reason = f"the {coding} body inflates to more than {MAX_INFLATION_RATIO} times its {len(raw)} bytes"
            else:
                reason = f"the {coding} body inflates to over the {limit}-byte limit (MAX_MESSAGE_BYTES)"
            raise _oversized(reason)
        if not inflater.eof:  # the input ran out before the stream's end
            raise BodyRefused(400, ErrorCode.BAD_ENCODING, f"the {coding} body is truncated")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if coding != "gzip":
            raise BodyRefused(400, ErrorCode.BAD_ENCODING, f"the {coding} body has data after its end")


async def read_body(request: web.BaseRequest, limit: int, timeout_s: float) -> bytes:
    """The body, decoded from its Content-Encoding, at most `limit` bytes either way, arrived within
    `timeout_s` (HTTP_READ_TIMEOUT_S, from its headers); BodyRefused otherwise."""
    coding = content_coding(request)  # before reading: an unknown coding is refused at once
    try:
        async with asyncio.timeout(timeout_s):
            raw = await read_raw(request, limit)
    except TimeoutError:
        reason = f"the request body did not arrive within {timeout_s:g} s (HTTP_READ_TIMEOUT_S)"
        raise BodyRefused(408, ErrorCode.REQUEST_TIMEOUT, reason) from None
    if coding is None or not raw:
        return raw
    return await asyncio.to_thread(inflate, raw, coding, limit)
