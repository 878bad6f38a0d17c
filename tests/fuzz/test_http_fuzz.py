"""Target 5, HTTP: app.http.server.make_app through aiohttp's test server, with hostile methods,
paths, headers, content types, encodings and bodies (through aiohttp's client), and requests no
client library would send (raw bytes on a socket, from the corpus).

Never a 500 (or any 5xx but a 503 with Retry-After); /score answers JSON, an error record for a 400;
the server stays up, and every request that entered the pipeline has its outcome counted.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given

from app.core.control import Health
from app.core.errors import ErrorCode
from app.core.pipeline import Pipeline
from app.core.sinks import RepliesOnly
from app.http.server import make_app
from app.main import open_pipeline
from app.model.scorer import Scorer
from tests.fuzz.conftest import CONTENT_TYPES, Hostile, fuzz, fuzz_settings, ran, seeds, timeout_for
from tests.fuzz.corpus import BODIES, RAW_REQUESTS, READING

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW", "PROPFIND", "X" * 64]
PATHS = ["/score", "/", "/live", "/ready", "/metrics", "/score/", "/SCORE", "/score?x=1&x=2", "/score//", "/score#f",
         "/%00", "/..%2fscore", "/score/%2e%2e", "/metrics?name[]=x", "/" + "a" * 8000, "/\u00e9", "/score;a=b"]  # fmt: skip
ENCODINGS = ["gzip", "deflate", "x-gzip", "identity", "br", "gzip, gzip", "GZIP", "compress", "", "gzip;q=1"]


def compress(body: bytes, gzipped: bool) -> bytes:
    return gzip.compress(body) if gzipped else zlib.compress(body)


@functools.cache
def bomb(size: int, gzipped: bool) -> bytes:
    """`size` zero bytes, compressed (10 MB: ~10 KB)."""
    return compress(b"\x00" * size, gzipped)


def header_text(h: Hostile) -> str:
    """Odd header text aiohttp's client will send (no CR, LF or lone surrogates: the raw corpus has those)."""
    return "".join(c for c in h.text() if c not in "\r\n" and not 0xD800 <= ord(c) <= 0xDFFF)


def request_for(h: Hostile) -> tuple[str, str, dict[str, str], bytes]:
    r = h.r
    method = "POST" if h.chance(0.6) else r.choice(METHODS)
    path = "/score" if h.chance(0.6) else r.choice(PATHS)
    body = h.body() if h.chance(0.8) else h.valid_body()
    headers: dict[str, str] = {}
    if h.chance(0.6):
        ct = h.r.choice(CONTENT_TYPES) if h.chance(0.8) else header_text(h)
        headers["Content-Type"] = ct if ct is not None else ""
    if h.chance(0.3):
        headers["X-Request-Id"] = header_text(h)
    if h.chance(0.2):
        headers["Authorization"] = r.choice(["Bearer ", "Bearer x", "Basic Zm9vOmJhcg==", header_text(h)])
    if h.chance(0.2):
        headers["Expect"] = r.choice(["100-continue", "200-ok", header_text(h)])
    if h.chance(0.25):
        coding = r.choice(ENCODINGS)
        headers["Content-Encoding"] = coding
        if h.chance(0.7):  # the body really encoded (sometimes a bomb); else a lie
            gzipped = "gzip" in coding.lower()
            body = bomb(r.choice([10_000, 10_000_000]), gzipped) if h.chance(0.2) else compress(body, gzipped)
    if h.chance(0.1):
        headers[header_text(h) or "X-Empty"] = header_text(h)
    return method, path, headers, body


class Http:
    def __init__(self, runner: asyncio.Runner, scorer: Scorer) -> None:
        self.runner = runner
        # A short read timeout: a request whose body never comes ends in seconds.
        self.pipeline: Pipeline = runner.run(open_pipeline(fuzz_settings(http_read_timeout_s=2.0), RepliesOnly(), scorer))
        self.health = Health(ready=True, status="ready")
        self.client: TestClient = runner.run(self._client())
        self.sent = 0
        self.client_refused = 0  # requests aiohttp's client would not send (not the server's doing)

    async def _client(self) -> TestClient:
        client = TestClient(TestServer(make_app(self.pipeline, self.health)))
        await client.start_server()
        return client

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        async def send() -> tuple[int, dict[str, str], bytes] | None:
            try:
                async with self.client.request(method, path, headers=headers, data=body, allow_redirects=False) as resp:
                    return resp.status, dict(resp.headers), await resp.read()
            except (ValueError, aiohttp.InvalidURL, UnicodeEncodeError, aiohttp.ClientPayloadError):
                return None  # the client refused to send it, or to read a broken answer
            except aiohttp.ServerDisconnectedError:
                return (0, {}, b"")  # the server closed the connection (a malformed request): it must still be up

        self.sent += 1
        answer = self.runner.run(send())
        if answer is None:
            self.client_refused += 1
            return
        status, resp_headers, content = answer
        if status == 0:
            self.check_alive()
            return
        self.check(method, path, status, resp_headers, content)

    @staticmethod
    def check(method: str, path: str, status: int, headers: dict[str, str], content: bytes) -> None:
        where = f"{method} {path[:80]!r} -> {status}: {content[:300]!r}"
        assert status < 500 or status == 503, where
        if status == 503:
            assert headers.get("Retry-After") or b"not_ready" in content or b"overloaded" in content, where
        if status == 400 and headers.get("Content-Type", "").startswith("text/plain"):
            return  # refused by aiohttp's HTTP parser (a bad header, say) before the app saw it: not JSON
        if method == "POST" and path == "/score" and status in (200, 400):
            doc = orjson.loads(content)
            if status == 400:
                assert isinstance(doc, dict) and doc.get("code") and doc.get("reason"), where
                assert doc["code"] != ErrorCode.INTERNAL_ERROR, where

    def check_alive(self) -> None:
        async def live() -> int:
            async with self.client.get("/live") as resp:
                return resp.status

        assert self.runner.run(live()) == 200

    def accounting(self) -> None:
        async def idle() -> None:
            await self.pipeline.wait_idle()

        self.runner.run(idle())
        stats = self.pipeline.stats
        assert stats.messages == stats.predictions + stats.errors

    def raw(self, request: bytes) -> list[int]:
        """Send bytes as they are; the statuses of whatever answers come back."""

        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(self.client.host, self.client.port)
            try:
                writer.write(request)
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                async with asyncio.timeout(15):
                    return await reader.read()
            except (ConnectionError, TimeoutError):
                return b""
            finally:
                writer.close()

        answer = self.runner.run(exchange())
        return [int(line.split(b" ")[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.") and b" " in line]


@contextmanager
def http(scorer: Scorer) -> Iterator[Http]:
    with asyncio.Runner() as runner:
        h = Http(runner, scorer)
        try:
            yield h
        finally:
            runner.run(h.client.close())
            runner.run(h.pipeline.close())


@pytest.mark.timeout(timeout_for(0.25, 0.06))
def test_hostile_requests_never_get_a_500(fuzz_scorer: Scorer) -> None:
    with http(fuzz_scorer) as server:

        @fuzz(0.25)
        @given(seeds)
        def case(seed: int) -> None:
            ran("http: requests")
            server.request(*request_for(Hostile(seed)))

        case()
        server.check_alive()
        server.accounting()
        assert server.client_refused <= server.sent // 2, "most requests must reach the server"


@pytest.mark.timeout(120)
def test_content_types_and_bodies_of_the_corpus(fuzz_scorer: Scorer) -> None:
    """Every corpus body with every content type as POST /score: the answer the pipeline gives, never a 500."""
    with http(fuzz_scorer) as server:
        for i, (_, body) in enumerate(BODIES):
            content_type = CONTENT_TYPES[i % len(CONTENT_TYPES)]
            headers = {"Content-Type": content_type or "", "X-Request-Id": f"corpus-{i}"}
            ran("http: corpus bodies")
            server.request("POST", "/score", headers, body)
        server.accounting()


@pytest.mark.timeout(300)
def test_raw_requests_never_get_a_500(fuzz_scorer: Scorer) -> None:
    """Bytes on the wire that no client library would send; one server takes them all, one connection each."""
    with http(fuzz_scorer) as server:
        for name, request_bytes in RAW_REQUESTS:
            ran("http: raw requests")
            statuses = server.raw(request_bytes)
            assert all(s < 500 or s == 503 for s in statuses), (name, statuses)
            server.check_alive()
        server.accounting()
        server.request("POST", "/score", {"Content-Type": "application/json"}, orjson.dumps(READING))
