"""bench.peers' own parts: the load generator against a real aiohttp server on loopback, the answer counting of the
SDK half, the targets verdicts, and the pinned-venv check."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from bench.peers.httpload import LoadError, closed_loop, read_answer, request_bytes
from bench.peers.report import targets
from bench.peers.sdk import Answers
from bench.venvs import installed_versions, venv_problem
from localedge.upstream import UpstreamMessage

HOST = "127.0.0.1"


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_read_answer_content_length_and_connection() -> None:
    two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 503 X\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
    reader = reader_of(two)
    assert await read_answer(reader) == (200, b"ok", True)
    assert await read_answer(reader) == (503, b"x", False)
    assert await read_answer(reader_of(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")) == (200, b"", False)
    assert await read_answer(reader_of(b"HTTP/1.1 200 OK\r\n\r\nto the end")) == (200, b"to the end", False)
    with pytest.raises(LoadError, match="chunked"):
        await read_answer(reader_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[int]]]:
    """An aiohttp server: POST /score echoes the body; POST /close answers with Connection: close; 400 on /bad."""
    seen: list[int] = []

    async def score(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(len(body))
        return web.Response(body=body, content_type="application/json")

    async def close(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok", headers={"Connection": "close"})

    async def bad(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=400, text="no")

    app = web.Application()
    app.add_routes([web.post("/score", score), web.post("/close", close), web.post("/bad", bad)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, seen
    finally:
        await runner.cleanup()


@pytest.mark.timeout(30)
async def test_closed_loop_counts_answers_by_status(server: tuple[int, list[int]]) -> None:
    port, seen = server
    body = orjson.dumps({"data": [[1, 2, 3, 4]] * 3})
    got = await closed_loop(
        HOST, port, request_bytes(HOST, port, "/score", body), concurrency=4, seconds=0.4, rows_per_request=3, warmup_s=0.1
    )
    assert got.requests > 0 and got.failures == 0 and got.reconnects == 0
    assert got.statuses == {200: got.requests}
    assert len(got.latencies_ms) == got.requests and got.rows_per_s == pytest.approx(got.requests * 3 / 0.4)
    assert set(seen) == {len(body)}  # every request arrived whole
    assert got.p(50) is not None and got.p(99) is not None and got.p(50) <= got.p(99)  # type: ignore[operator]

    closing = await closed_loop(
        HOST, port, request_bytes(HOST, port, "/close", b"{}"), concurrency=2, seconds=0.3, rows_per_request=1, warmup_s=0
    )
    assert closing.requests > 0 and closing.failures == 0 and closing.reconnects >= closing.requests

    bad = await closed_loop(
        HOST, port, request_bytes(HOST, port, "/bad", b"{}"), concurrency=2, seconds=0.3, rows_per_request=1, warmup_s=0
    )
    assert bad.requests == 0 and bad.failures > 0 and bad.statuses == {400: bad.failures} and bad.latencies_ms == []


def upstream(cid: str | None, body: bytes, predictions: int) -> UpstreamMessage:
    props = {"$.cid": cid} if cid else {}
    return UpstreamMessage("inference", "amlOutput", props, body, time.perf_counter(), len(body), 1, predictions, 0, None)


def test_answers_count_inputs_by_id_once() -> None:
    answers = Answers()
    answers(upstream("a", b'{"label":"normal","probability":0.9}', 1))
    aggregate = {"model": "m", "predictions": [{"messageId": "b", "label": "x"}, {"messageId": "c", "label": "y"}]}
    answers(upstream(None, orjson.dumps(aggregate), 2))
    answers(upstream("a", b'{"machine":{}}', 0))  # an echo of an input already answered: counted once
    assert answers.counts() == (3, 3, 3)
    assert set(answers.first_at) == {"a", "b", "c"}
    assert answers.wait_total(3, 0.1) and not answers.wait_total(4, 0.01)


def http_doc(ours_rows: float, ours_p99: float, idle: float, cold: float) -> dict[str, object]:
    def server(rows: float, p99: float, idle_mb: float = 300, cold_s: float = 5) -> dict[str, object]:
        return {"points": {"1-row c=32": {"rows_per_s": rows, "p99_ms": p99}}, "idle_rss_mb": idle_mb, "cold_start_s": cold_s}

    return {"ours": server(ours_rows, ours_p99, idle, cold), "azmlinfsrv": server(100, 200), "mlserver": server(400, 100)}


def test_targets_say_which_hold() -> None:
    held = targets(http_doc(1000, 50, 150, 2.5))  # type: ignore[arg-type]
    assert [h for _, _, h in held] == [True, True, True, True]
    assert held[0][1] == "10.0×, p99 50.0 vs 200.0 ms"
    missed = targets(http_doc(700, 150, 170, 3.2))  # type: ignore[arg-type]
    assert [h for _, _, h in missed] == [True, False, False, False]  # 1.75× MLServer, and a higher p99 than it


def test_venv_problem_names_what_differs(tmp_path: Path) -> None:
    assert "does not exist" in (venv_problem(tmp_path / "absent", ["orjson==1"]) or "")
    here = Path(sys.prefix)
    orjson_version = installed_versions(here, ["orjson"])["orjson"]
    assert venv_problem(here, [f"orjson=={orjson_version}"]) is None
    assert "orjson=" in (venv_problem(here, ["orjson==0.0.1"]) or "") and "want 0.0.1" in (
        venv_problem(here, ["orjson==0.0.1"]) or ""
    )
