"""The HTTP endpoint against hostile and careless clients: real servers on 127.0.0.1, raw sockets.

The clients are blocking sockets on worker threads (asyncio.to_thread), so what they measure is
wall-clock time on the wire, independent of the event loop the server runs on. Every wait is
bounded: socket timeouts, and asyncio.timeout around polling for a condition.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from app.commands import main as cli_main
from app.commands.serve import serve_host
from app.core.control import Health
from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from app.core.sinks import RepliesOnly
from app.http.auth import load_token
from app.http.body import MAX_INFLATION_RATIO
from app.http.errors import HttpStats
from app.http.guard import MAX_HEADER_BYTES, MAX_PIPELINED, GuardedHandler
from app.http.server import HTTP_STATS, make_app, start_http
from app.model.scorer import Scorer, load_scorer
from app.settings import ConfigError, Settings, load_settings
from tests.conftest import DEFAULT_MODEL_DIR
from tests.helpers import body, reading
from tests.unit.test_http import GATED_SCRIPT  # a model that holds its batch until told

TOKEN = "s3cret-Token_42"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"

# --- a raw HTTP/1.1 client on blocking sockets --------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no answer
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed: float  # from the first byte sent to the connection's end (or the timeout)
    closed: bool  # the server closed the connection (else the timeout struck)
    raw: bytes = b""  # everything the server sent

    def json(self) -> Any:
        return orjson.loads(self.body)


def _parse(data: bytes, elapsed: float, closed: bool) -> Answer:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return Answer(0, {}, data, elapsed, closed, data)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return Answer(int(lines[0].split()[1]), headers, rest[:length], elapsed, closed, data)


def _read_to_end(sock: socket.socket, started: float, timeout: float) -> Answer:
    data, closed = b"", False
    deadline = started + timeout
    while (left := deadline - time.perf_counter()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    return _parse(data, time.perf_counter() - started, closed)


def exchange(port: int, request: bytes | str, timeout: float = 5.0) -> Answer:
    """Send `request`, read until the server closes (or `timeout`): for requests that say Connection: close."""
    raw = request.encode("latin-1") if isinstance(request, str) else request
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.perf_counter()
        sock.sendall(raw)
        return _read_to_end(sock, started, timeout)


def get(path: str, headers: str = "") -> str:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"


def post(path: str, payload: bytes, headers: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    return head.encode("latin-1") + payload


@contextmanager
def held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for s in sockets:
            s.close()


def assert_json_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json"), answer
    doc = answer.json()
    assert doc["code"] == code and isinstance(doc["reason"], str) and doc["reason"], doc
    return doc


# --- servers --------------------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    stats: HttpStats
    pipeline: Any
    runner: web.AppRunner


class NeverAnswers:
    """A pipeline stand-in that takes every request and never answers (a model stuck for ever)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.taken: list[InMessage] = []
        self.scorer = SimpleNamespace(azureml=False)  # the built-in script: our own /score answers

    def offer(self, msg: InMessage) -> bool:
        self.taken.append(msg)
        return True


def http_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(http_host="127.0.0.1", http_port=0, shutdown_timeout_s=1.0, **changes)


@asynccontextmanager
async def serving(
    settings: Settings, scorer: Scorer | None = None, pipeline: Any = None, token: str = ""
) -> AsyncIterator[Served]:
    own = pipeline is None
    if own:
        assert scorer is not None
        pipeline = Pipeline(settings, scorer, RepliesOnly())
        await pipeline.start()
    runner = await start_http(pipeline, Health(ready=True, status="ready"), token=token)
    try:
        yield Served(runner.addresses[0][1], runner.app[HTTP_STATS], pipeline, runner)
    finally:
        await runner.cleanup()
        if own:
            await pipeline.close()


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Poll a condition of the server's state (never a sleep standing in for it), bounded."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def quiet_check(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fails the test if anything a client sent was logged as an error or with a traceback."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    records = caplog.get_records("setup") + caplog.get_records("call")  # caplog.records is this phase's only
    assert records, "no log records at all: is the capture still working?"
    bad = [r for r in records if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


# --- 1. the bearer token ----------------------------------------------------------------------


@pytest.fixture
async def token_client(settings: Settings, scorer: Scorer) -> AsyncIterator[TestClient]:
    pipeline = Pipeline(settings, scorer, RepliesOnly())
    await pipeline.start()
    client = TestClient(TestServer(make_app(pipeline, Health(ready=True, status="ready"), token=TOKEN)))
    await client.start_server()
    yield client
    await client.close()
    await pipeline.close()


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/"), ("GET", "/ready"), ("GET", "/metrics"), ("POST", "/score"), ("GET", "/x")]
)
async def test_with_a_token_every_route_but_live_needs_it(token_client: TestClient, method: str, path: str) -> None:
    c = token_client
    cases = {
        "none": {},
        "wrong": {"Authorization": "Bearer not-the-token"},
        "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "basic": {"Authorization": f"Basic {TOKEN}"},
        "bare": {"Authorization": TOKEN},
        "non-ascii": {"Authorization": "Bearer s3cret-Tökén"},
    }
    for name, headers in cases.items():
        resp = await c.request(method, path, data=body(reading()), headers=headers)
        assert resp.status == 401, name
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), name
        doc = await resp.json()
        assert doc["code"] == "unauthorized" and doc["reason"], name
        assert TOKEN not in await resp.text()
    for scheme in ("Bearer", "bearer", "BEARER"):
        resp = await c.request(method, path, data=body(reading()), headers={"Authorization": f"{scheme} {TOKEN}"})
        assert resp.status == (404 if path == "/x" else 200), scheme


async def test_live_answers_without_a_token(token_client: TestClient) -> None:
    assert (await token_client.get("/live")).status == 200
    assert (await token_client.head("/live")).status == 200
    assert (await token_client.post("/live")).status == 401  # only GET/HEAD /live is open


async def test_the_token_is_never_logged_or_answered(settings: Settings, scorer: Scorer, quiet_check) -> None:
    caplog = quiet_check
    async with serving(
        http_settings(settings, http_token=TOKEN), scorer, token=load_token(settings.replace(http_token=TOKEN))
    ) as s:
        answers = [
            await asyncio.to_thread(exchange, s.port, get("/ready", f"Authorization: Bearer {TOKEN}x\r\n")),
            await asyncio.to_thread(exchange, s.port, get("/ready", AUTH)),
            await asyncio.to_thread(exchange, s.port, get("/metrics", AUTH)),
            await asyncio.to_thread(exchange, s.port, post("/score", b"nope", AUTH)),
        ]
    assert [a.status for a in answers] == [401, 200, 200, 400]
    assert all(TOKEN.encode() not in a.body for a in answers)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(http_settings(settings, http_token=TOKEN))


def test_the_token_file_is_read_and_stripped(tmp_path: Path, settings: Settings) -> None:
    secret = tmp_path / "token"
    secret.write_text(f"  {TOKEN}\n\n")
    assert load_token(settings.replace(http_token_file=str(secret))) == TOKEN
    assert load_token(settings.replace(http_token=f" {TOKEN} ")) == TOKEN
    assert load_token(settings) == ""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("dir", "cannot read"),
        (b"  \n", "is empty"),
        (b"two words-of-secret", "one line of visible ASCII"),
        (b"\xff\xfe-secret-bytes", "not UTF-8"),
        (b"x" * 70_000, "not a token file"),
    ],
)
def test_a_bad_token_file_stops_the_start_naming_the_file_not_the_token(
    tmp_path: Path, settings: Settings, content: bytes | str | None, expected: str
) -> None:
    path = tmp_path / "token"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_token(settings.replace(http_token_file=str(path)))
    text = str(caught.value)
    assert "HTTP_TOKEN_FILE" in text and str(path) in text and expected in text
    assert "secret" not in text  # the file's content is never quoted


def test_token_and_token_file_together_are_refused(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "t").write_text(TOKEN)
    with pytest.raises(ConfigError, match="not both"):
        load_token(settings.replace(http_token=TOKEN, http_token_file=str(tmp_path / "t")))
    with pytest.raises(ConfigError, match="HTTP_TOKEN: the token must be one line"):
        load_token(settings.replace(http_token="has space"))


async def test_make_app_reads_the_token_from_the_settings(tmp_path: Path, settings: Settings, scorer: Scorer) -> None:
    (tmp_path / "t").write_text(TOKEN + "\n")
    async with serving(http_settings(settings, http_token_file=str(tmp_path / "t")), scorer, token=None) as s:
        assert (await asyncio.to_thread(exchange, s.port, get("/ready"))).status == 401
        assert (await asyncio.to_thread(exchange, s.port, get("/ready", AUTH))).status == 200
    with pytest.raises(ConfigError, match="HTTP_TOKEN_FILE"):
        make_app(NeverAnswers(settings.replace(http_token_file=str(tmp_path / "missing"))), Health())


# --- 2. where serve listens -------------------------------------------------------------------


def test_serve_listens_on_loopback_unless_told_otherwise(settings: Settings) -> None:
    assert serve_host(None, settings, environ={}) == "127.0.0.1"
    assert serve_host(None, settings.replace(http_host="0.0.0.0"), environ={"HTTP_HOST": "0.0.0.0"}) == "0.0.0.0"
    assert serve_host("192.0.2.7", settings, environ={"HTTP_HOST": "10.0.0.1"}) == "192.0.2.7"
    assert load_settings({}).http_host == "0.0.0.0"  # the module: reached over the edge network by name


@pytest.mark.parametrize(
    ("argv", "env", "host"),
    [([], {}, "127.0.0.1"), ([], {"HTTP_HOST": "0.0.0.0"}, "0.0.0.0"), (["--host", "::1"], {"HTTP_HOST": "0.0.0.0"}, "::1")],
)
def test_the_serve_command_applies_the_default(monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict, host: str) -> None:
    import app.commands
    import app.commands.serve

    seen: list[Settings] = []

    async def fake_serve(s: Settings) -> int:
        seen.append(s)
        return 0

    monkeypatch.delenv("HTTP_HOST", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(app.commands.serve, "serve", fake_serve)
    monkeypatch.setattr(app.commands, "configure_logging", lambda level: None)
    assert cli_main(["serve", "--port", "5999", *argv]) == 0
    assert seen[0].http_host == host and seen[0].http_port == 5999


# --- 3. slow clients ------------------------------------------------------------------------------


async def test_headers_that_do_not_arrive_in_time_get_408(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings, http_read_timeout_s=0.3), scorer) as s:
        partial = await asyncio.to_thread(exchange, s.port, "POST /score HTTP/1.1\r\nHost: t\r\nContent-Le")
        assert_json_error(partial, 408, "request_timeout")
        assert partial.closed and 0.25 <= partial.elapsed < 2.0
        silent = await asyncio.to_thread(exchange, s.port, b"")  # connects, says nothing: closed, no answer
        assert silent.closed and silent.status == 0 and 0.25 <= silent.elapsed < 2.0
        assert s.stats.errors_by_code["request_timeout"] == 1

        def keep_alive() -> tuple[bytes, Answer]:
            # a keep-alive connection gets the same deadline for its next request
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                sock.sendall(b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n")
                first = sock.recv(65536)
                started = time.perf_counter()
                sock.sendall(b"GET /live HTTP/1.1\r\nHo")
                return first, _read_to_end(sock, started, 5.0)

        first, second = await asyncio.to_thread(keep_alive)
        assert first.startswith(b"HTTP/1.1 200")
        assert_json_error(second, 408, "request_timeout")
        assert second.closed and 0.2 <= second.elapsed < 2.0


async def test_a_body_that_does_not_arrive_in_time_gets_408(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings, http_read_timeout_s=0.3), scorer) as s:
        head = "POST /score HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
        answer = await asyncio.to_thread(exchange, s.port, head + '{"machine": ')
        assert_json_error(answer, 408, "request_timeout")
        assert answer.closed and 0.25 <= answer.elapsed < 2.0


async def test_a_client_that_keeps_its_deadline_is_served(settings: Settings, scorer: Scorer) -> None:
    async with serving(http_settings(settings, http_read_timeout_s=1.0), scorer) as s:

        def paced() -> Answer:
            request = post("/score", body(reading()))
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                started = time.perf_counter()
                for i in range(0, len(request), 40):  # in pieces, 20 ms apart: slow, but within the deadline
                    sock.sendall(request[i : i + 40])
                    time.sleep(0.02)
                return _read_to_end(sock, started, 5.0)

        answer = await asyncio.to_thread(paced)
        assert answer.status == 200 and answer.json()["label"] == "normal"


async def test_a_thousand_slowloris_connections_do_not_keep_live_from_answering(
    settings: Settings, scorer: Scorer, quiet_check
) -> None:
    # The defaults: 64 connections at most, 10 s to send a request.
    async with serving(http_settings(settings), scorer) as s:
        assert s.stats.connections == 0

        def slowloris(n: int) -> list[socket.socket]:
            sockets = []
            for _ in range(n):
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                sock.sendall(b"POST /score HTTP/1.1\r\nHost: t\r\nX-a: ")  # and nothing more
                sockets.append(sock)
            return sockets

        started = time.perf_counter()
        with held([]) as sockets:
            # In waves of 100, each accepted before the next: within the listen backlog (128), so the
            # kernel drops no SYN (a dropped SYN costs its client a 1 s retransmission, and this test time).
            for wave in range(1, 11):
                sockets += await asyncio.to_thread(slowloris, 100)
                await until(lambda n=wave * 100: s.stats.connections_accepted >= n)
            opened = time.perf_counter() - started
            probes = [await asyncio.to_thread(exchange, s.port, get("/live")) for _ in range(5)]
            assert [p.status for p in probes] == [200] * 5
            assert max(p.elapsed for p in probes) < 0.5, [p.elapsed for p in probes]
            scored = await asyncio.to_thread(exchange, s.port, post("/score", body(reading())))
            assert scored.status == 200 and scored.elapsed < 0.5
            # never more than the cap open: the stalest waiting connection made room each time
            assert s.stats.connections_peak <= 64
            assert s.stats.connections_evicted >= 1000 - 64
            assert s.stats.connections_refused == 0

            def ends(sockets: list[socket.socket]) -> list[Answer]:
                deadline = time.perf_counter() + 3.0
                return [_read_to_end(sock, time.perf_counter(), max(deadline - time.perf_counter(), 0.01)) for sock in sockets]

            # The 900 oldest were evicted: each closed, with a 408 if its few bytes had been read by then.
            evicted = await asyncio.to_thread(ends, sockets[:900])
            assert all(e.closed for e in evicted)
            told = [e for e in evicted if e.status]
            assert told and all(assert_json_error(e, 408, "request_timeout") for e in told)
        assert opened < 10


async def test_a_header_section_without_end_gets_431(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings), scorer) as s:
        flood = "GET /live HTTP/1.1\r\nHost: t\r\n" + "".join(f"X-{i}: {'v' * 1000}\r\n" for i in range(64))
        assert len(flood) > MAX_HEADER_BYTES
        answer = await asyncio.to_thread(exchange, s.port, flood)
        assert_json_error(answer, 431, "headers_too_large")
        assert answer.closed and answer.elapsed < 2.0


async def test_deep_pipelining_closes_the_connection(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings), scorer) as s:
        one = "GET /live HTTP/1.1\r\nHost: t\r\n\r\n"
        fine = await asyncio.to_thread(exchange, s.port, one * 5 + get("/live"), 5.0)
        assert fine.closed and fine.raw.count(b"HTTP/1.1 200") == 6
        deep = await asyncio.to_thread(exchange, s.port, one * (MAX_PIPELINED * 4), 5.0)
        assert deep.closed and deep.raw.count(b"HTTP/1.1 200") < MAX_PIPELINED * 4


# --- 4. the connection cap ------------------------------------------------------------------------


async def test_beyond_the_cap_with_every_connection_busy_a_new_one_gets_503(settings: Settings, quiet_check) -> None:
    stub = NeverAnswers(http_settings(settings, http_max_connections=3))
    async with serving(stub.settings, pipeline=stub) as s:

        def busy(n: int) -> list[socket.socket]:
            sockets = []
            for _ in range(n):
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                sock.sendall(post("/score", body(reading())))
                sockets.append(sock)
            return sockets

        with held(await asyncio.to_thread(busy, 3)) as sockets:
            await until(lambda: len(stub.taken) == 3)  # three requests wait for the model
            refused = await asyncio.to_thread(exchange, s.port, get("/live"), 3.0)
            assert_json_error(refused, 503, "overloaded")
            assert refused.headers["retry-after"] == "1"
            assert refused.closed and refused.elapsed < 0.5
            assert s.stats.connections_refused == 1 and s.stats.connections == 3
            sockets[0].close()  # one client gives up: its place is free again
            await until(lambda: s.stats.connections == 2)
            live = await asyncio.to_thread(exchange, s.port, get("/live"))
            assert live.status == 200 and live.elapsed < 0.5
        assert s.stats.connections_peak == 3


async def test_idle_connections_make_room_for_new_ones(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings, http_max_connections=2), scorer) as s:

        def idle(n: int) -> list[socket.socket]:
            return [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(n)]

        with held(await asyncio.to_thread(idle, 2)) as sockets:
            await until(lambda: s.stats.connections == 2)
            live = await asyncio.to_thread(exchange, s.port, get("/live"))
            assert live.status == 200 and live.elapsed < 0.5
            oldest = await asyncio.to_thread(_read_to_end, sockets[0], time.perf_counter(), 2.0)
            assert oldest.closed and oldest.status == 0  # an idle connection is closed without a word
            assert s.stats.connections_evicted == 1 and s.stats.connections_refused == 0


async def test_an_accept_burst_beyond_the_cap_is_absorbed(settings: Settings, scorer: Scorer, quiet_check) -> None:
    """Connections accepted in one loop tick exist before any is connected: they can be evicted too."""
    async with serving(http_settings(settings, http_max_connections=8), scorer) as s:

        def burst() -> list[socket.socket]:  # 120: within the listen backlog
            return [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(120)]

        with held(await asyncio.to_thread(burst)):
            await until(lambda: s.stats.connections_accepted >= 120)
            live = await asyncio.to_thread(exchange, s.port, get("/live"))
            assert live.status == 200 and live.elapsed < 0.5
            assert s.stats.connections_peak <= 8 and s.stats.connections_refused == 0
            assert s.stats.connections_evicted >= 120 - 8


# --- 5. compressed bodies -------------------------------------------------------------------------


def gzip_of_zeros(megabytes: int) -> bytes:
    """A valid gzip of `megabytes` MiB of zeros, built in ~0.1 s: one full-flushed deflate segment of
    1 MiB of zeros (it refers to nothing before it) repeated, then the gzip trailer."""
    mib = bytes(1 << 20)
    segment = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = segment.compress(mib) + segment.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(mib, crc)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = crc.to_bytes(4, "little") + ((megabytes << 20) & 0xFFFFFFFF).to_bytes(4, "little")
    return header + block * megabytes + final + trailer


def test_the_bomb_is_a_valid_gzip_of_zeros() -> None:
    bomb = gzip_of_zeros(3)
    assert zlib.decompress(bomb, 31) == bytes(3 << 20)


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", lambda b: zlib.compress(b, wbits=31)),
        ("x-gzip", lambda b: zlib.compress(b, wbits=31)),
        ("gzip", lambda b: zlib.compress(b[:20], wbits=31) + zlib.compress(b[20:], wbits=31)),  # two members
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some clients send
        ("identity", lambda b: b),
        ("GZIP, identity", lambda b: zlib.compress(b, wbits=31)),
    ],
)
async def test_compressed_bodies_are_scored_like_plain_ones(
    settings: Settings, scorer: Scorer, coding: str, compress: Any, quiet_check
) -> None:
    plain = body([reading(30.0), reading(60.0, 9.9)])
    async with serving(http_settings(settings), scorer) as s:
        expected = await asyncio.to_thread(exchange, s.port, post("/score", plain))
        answer = await asyncio.to_thread(exchange, s.port, post("/score", compress(plain), f"Content-Encoding: {coding}\r\n"))
    assert expected.status == answer.status == 200
    assert answer.json() == expected.json()


async def test_a_gzip_bomb_gets_413_while_live_answers_promptly(settings: Settings, scorer: Scorer, quiet_check) -> None:
    bomb = gzip_of_zeros(200)  # 200 MiB of zeros in ~200 KB, under MAX_MESSAGE_BYTES
    assert len(bomb) < settings.max_message_bytes
    async with serving(http_settings(settings), scorer) as s:
        done = asyncio.Event()

        async def probe_live() -> list[float]:
            latencies = []
            while not done.is_set() or len(latencies) < 3:
                answer = await asyncio.to_thread(exchange, s.port, get("/live"), 3.0)
                assert answer.status == 200
                latencies.append(answer.elapsed)
            return latencies

        prober = asyncio.create_task(probe_live())
        try:
            answer = await asyncio.to_thread(exchange, s.port, post("/score", bomb, "Content-Encoding: gzip\r\n"), 10.0)
        finally:
            done.set()
        latencies = await asyncio.wait_for(prober, 10)
        doc = assert_json_error(answer, 413, "oversized")
        assert "inflates to over" in doc["reason"]
        assert answer.elapsed < 1.0
        assert max(latencies) < 0.5, latencies
        # a small bomb is caught by the ratio: 1 MiB of zeros from ~1 KB
        small = gzip_of_zeros(1)
        ratio = await asyncio.to_thread(exchange, s.port, post("/score", small, "Content-Encoding: gzip\r\n"))
        assert f"more than {MAX_INFLATION_RATIO} times" in assert_json_error(ratio, 413, "oversized")["reason"]
        assert s.stats.errors_by_code["oversized"] == 2


@pytest.mark.parametrize(
    ("coding", "payload", "status", "code"),
    [
        ("gzip", b'{"machine": {"temperature": 1}}', 400, "bad_encoding"),  # says gzip, is not
        ("gzip", zlib.compress(b'{"data": [[1, 2, 3, 4]]}', wbits=31)[:-6], 400, "bad_encoding"),  # truncated
        ("gzip", zlib.compress(b'{"data": [[1, 2, 3, 4]]}', wbits=31) + b"junk", 400, "bad_encoding"),
        ("deflate", zlib.compress(b'{"data": [[1, 2, 3, 4]]}') + b"junk", 400, "bad_encoding"),
        ("deflate", b"\x00\x01\x02", 400, "bad_encoding"),
        ("br", b"\x0b\x02\x80hello\x03", 415, "unsupported_encoding"),
        ("compress", b"x", 415, "unsupported_encoding"),
        ("gzip, gzip", zlib.compress(zlib.compress(b"{}", wbits=31), wbits=31), 415, "unsupported_encoding"),
    ],
)
async def test_bad_or_unknown_encodings_get_a_json_reason_never_a_500(
    settings: Settings, scorer: Scorer, coding: str, payload: bytes, status: int, code: str, quiet_check
) -> None:
    async with serving(http_settings(settings), scorer) as s:
        answer = await asyncio.to_thread(exchange, s.port, post("/score", payload, f"Content-Encoding: {coding}\r\n"))
        assert_json_error(answer, status, code)
        if status == 415:
            assert answer.headers["accept-encoding"] == "gzip, deflate"
        assert s.stats.errors_by_code[code] == 1


async def test_oversized_raw_bodies_get_413_sent_or_announced(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings, max_message_bytes=1000), scorer) as s:
        announced = await asyncio.to_thread(exchange, s.port, post("/score", b" " * 1001))
        assert_json_error(announced, 413, "oversized")
        chunked = (
            b"POST /score HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"".join(b"200\r\n" + b" " * 0x200 + b"\r\n" for _ in range(3))
            + b"0\r\n\r\n"
        )
        assert_json_error(await asyncio.to_thread(exchange, s.port, chunked), 413, "oversized")
        expect = b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        early = await asyncio.to_thread(exchange, s.port, expect)  # refused before the body is sent
        assert_json_error(early, 413, "oversized")


# --- 6. a client that goes away -------------------------------------------------------------------


async def test_a_client_that_disconnects_cancels_its_reply_future(tmp_path: Path, settings: Settings, quiet_check) -> None:
    script = tmp_path / "score.py"
    script.write_text(GATED_SCRIPT)
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    scorer.script.gate.clear()  # the model blocks until the gate opens
    pipeline = Pipeline(http_settings(settings), scorer, RepliesOnly())
    await pipeline.start()
    taken: list[InMessage] = []
    offer = pipeline.offer
    pipeline.offer = lambda msg: (taken.append(msg), offer(msg))[1]
    try:
        async with serving(pipeline.settings, pipeline=pipeline) as s:
            first = asyncio.create_task(asyncio.to_thread(exchange, s.port, post("/score", body(reading())), 10.0))
            await until(lambda: pipeline.processor.run_calls >= 1)  # the first request is in the model
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                sock.sendall(post("/score", body(reading())))
                await until(lambda: len(taken) == 2)  # the second waits in the queue
                waiting = taken[1].reply
                assert waiting is not None and not waiting.done()
            gone = time.perf_counter()  # the client closed its socket
            await until(lambda: waiting.cancelled(), timeout=2.0)
            assert time.perf_counter() - gone < 1.0
            scorer.script.gate.set()
            assert (await first).status == 200
            assert taken[0].reply is not None and not taken[0].reply.cancelled()
            assert (await asyncio.to_thread(exchange, s.port, post("/score", body(reading())))).status == 200
    finally:
        scorer.script.gate.set()
        await pipeline.close()


@pytest.mark.parametrize("cancellation", [True, False])
async def test_a_client_that_leaves_mid_body_leaves_no_trace(
    settings: Settings, scorer: Scorer, cancellation: bool, quiet_check
) -> None:
    pipeline = Pipeline(http_settings(settings), scorer, RepliesOnly())
    await pipeline.start()
    app = make_app(pipeline, Health(ready=True, status="ready"), token="")
    # also with aiohttp's default (no handler cancellation): the body read fails instead of being cancelled
    app._handler_args["handler_cancellation"] = cancellation
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:

        def leave() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b'{"data": ')

        await asyncio.to_thread(leave)
        assert runner.server is not None
        await until(lambda: not runner.server.connections)  # type: ignore[union-attr]
        assert (await asyncio.to_thread(exchange, port, get("/live"))).status == 200
        assert pipeline.stats.messages == 0
    finally:
        await runner.cleanup()
        await pipeline.close()


async def test_handler_cancellation_is_on_in_the_app_itself(settings: Settings) -> None:
    """Any runner (aiohttp's own, a test server) gets it, not only start_http's."""
    stub = NeverAnswers(http_settings(settings))
    runner = web.AppRunner(make_app(stub, Health(ready=True, status="ready"), token=""))
    await runner.setup()
    try:
        assert runner.server is not None and runner.server.handler_cancellation
    finally:
        await runner.cleanup()


# --- 7. every error is JSON; nothing a client sends makes a 500 -----------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),  # a TLS hello on the HTTP port
    b"GET /live HTTP/9.9\r\nHost: t\r\n\r\n",
    b"GET /live HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    b"GET /live HTTP/1.1\r\nHost: t\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /score HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /score HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"GET /live HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nConnection: close\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nConnection: close\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"DELETE /score HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json; charset=\xff\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
]


async def test_malformed_requests_get_json_4xx_and_one_quiet_log_line(settings: Settings, scorer: Scorer, quiet_check) -> None:
    async with serving(http_settings(settings), scorer) as s:
        for request in MALFORMED:
            answer = await asyncio.to_thread(exchange, s.port, request, 3.0)
            assert 400 <= answer.status < 500, (request[:60], answer)
            assert answer.headers["content-type"].startswith("application/json"), (request[:60], answer)
            doc = answer.json()  # the HTTP layer's {code, reason}, or the pipeline's error record
            assert {"code", "reason"} <= set(doc) and doc["code"].islower(), doc
            assert "Traceback" not in doc["reason"]
        assert sum(s.stats.errors_by_code.values()) == len(MALFORMED) - 1  # the last one is the pipeline's error record
        assert (await asyncio.to_thread(exchange, s.port, get("/live"))).status == 200


async def test_random_mutations_of_a_request_never_get_a_5xx(settings: Settings, scorer: Scorer, quiet_check) -> None:
    rng = random.Random(20260101)
    base = post("/score", body(reading()), "Content-Encoding: gzip\r\n")
    base = base.replace(body(reading()), zlib.compress(body(reading()), wbits=31))
    statuses = set()
    async with serving(http_settings(settings, http_read_timeout_s=0.3), scorer) as s:

        def mutant() -> bytes:
            data = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(data))
                data[i] = rng.randrange(256) if rng.random() < 0.8 else data[i] ^ 0x20
            return bytes(data)

        def fire() -> list[int]:
            # in parallel: a mutant that breaks the header end or Content-Length waits for the read timeout
            with ThreadPoolExecutor(max_workers=40) as pool:
                return [a.status for a in pool.map(lambda data: exchange(s.port, data, 3.0), [mutant() for _ in range(80)])]

        statuses.update(await asyncio.to_thread(fire))
        assert (await asyncio.to_thread(exchange, s.port, get("/live"))).status == 200
    assert not {st for st in statuses if st >= 500}, statuses


async def test_the_http_layer_counts_its_own_answers_in_metrics(settings: Settings, scorer: Scorer) -> None:
    async with serving(http_settings(settings), scorer, token=TOKEN) as s:
        await asyncio.to_thread(exchange, s.port, get("/ready"))
        await asyncio.to_thread(exchange, s.port, post("/score", b"x", AUTH + "Content-Encoding: br\r\n"))
        text = (await asyncio.to_thread(exchange, s.port, get("/metrics", AUTH))).body.decode()
    families = [f.name for f in text_string_to_metric_families(text)]
    assert len(families) == len(set(families))  # one family per name: a valid exposition
    samples = {(x.name, tuple(x.labels.items())): x.value for f in text_string_to_metric_families(text) for x in f.samples}
    assert samples[("edge_inference_http_errors_total", (("code", "unauthorized"),))] == 1
    assert samples[("edge_inference_http_errors_total", (("code", "unsupported_encoding"),))] == 1
    assert samples[("edge_inference_http_connections", ())] == 1  # the scrape's own
    assert samples[("edge_inference_http_connections_accepted_total", ())] == 3
    assert samples[("edge_inference_http_connections_refused_total", ())] == 0
    assert samples[("edge_inference_http_connections_evicted_total", ())] == 0


def test_the_aiohttp_internals_the_guard_relies_on_are_there() -> None:
    """guard.py subclasses aiohttp's RequestHandler and Server; an aiohttp upgrade that renames these fails here."""
    loop = asyncio.new_event_loop()
    try:
        server = web.Server(lambda request: None, loop=loop)
        assert isinstance(server._kwargs, dict)
        handler = web.RequestHandler(server, loop=loop)
        assert isinstance(handler._request_count, int) and len(handler._messages) == 0 and handler._loop is loop
        assert issubclass(GuardedHandler, web.RequestHandler)
    finally:
        loop.close()
