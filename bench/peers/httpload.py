"""A closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, each sending the same POST again
as soon as its answer is in, for a fixed time.

Written on asyncio streams with one pre-built request, not on an HTTP client library: the generator must outrun
the fastest server on one core, and a client library's per-request Python costs as much as a small server's.
It reads just what HTTP/1.1 needs to find the end of an answer (status line, Content-Length, Connection: close,
and a server that closes after each answer, as gunicorn's sync workers do) and refuses what it cannot read
(chunked answers) instead of guessing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.edge_harness import percentile

HEADER_END = b"\r\n\r\n"


class LoadError(RuntimeError):
    """An answer the generator cannot read, or a server that stopped answering."""


@dataclass
class LoadResult:
    requests: int  # answered 200
    failures: int  # answered otherwise (status -> count in `statuses`) or connection errors
    seconds: float
    rows_per_request: int
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[int, int] = field(default_factory=dict)
    reconnects: int = 0
    rss_mb_peak: float = 0.0  # the server's (process tree) peak while loaded, if sampled

    @property
    def rows_per_s(self) -> float:
        return self.requests * self.rows_per_request / self.seconds if self.seconds > 0 else 0.0

    def p(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)


def request_bytes(host: str, port: int, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection) of one answer."""
    head = await reader.readuntil(HEADER_END)
    lines = head[: -len(HEADER_END)].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    keep = lines[0].startswith(b"HTTP/1.1")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise LoadError(f"a {value.strip().decode()} answer: this generator reads Content-Length answers only")
    if length is None:
        return status, await reader.read(), False  # the body runs to the close
    return status, await reader.readexactly(length), keep


async def one_answer(host: str, port: int, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on its own connection: (status, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(request)
        status, body, _ = await asyncio.wait_for(read_answer(reader), timeout)
        return status, body
    finally:
        writer.close()


async def closed_loop(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    seconds: float,
    rows_per_request: int,
    warmup_s: float = 0.5,
    sample_rss: Callable[[], float | None] | None = None,
    answer_timeout: float = 30.0,
) -> LoadResult:
    """`concurrency` connections sending `request` back to back for `warmup_s` + `seconds`; only answers that
    arrive after the warm-up (to requests sent after it) count."""
    started = time.perf_counter()
    measure_from, stop_at = started + warmup_s, started + warmup_s + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counts = {"ok": 0, "failed": 0, "reconnects": 0}
    peak = [0.0]

    async def connection() -> None:
        reader = writer = None
        try:
            while (sent_at := time.perf_counter()) < stop_at:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(request)
                try:
                    status, _, keep = await asyncio.wait_for(read_answer(reader), answer_timeout)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if sent_at >= measure_from:  # a request without an answer: a failure (status -1)
                        counts["failed"] += 1
                        statuses[-1] = statuses.get(-1, 0) + 1
                    writer.close()
                    reader = writer = None
                    counts["reconnects"] += 1
                    continue
                done = time.perf_counter()
                if sent_at >= measure_from and done <= stop_at:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        counts["ok"] += 1
                        latencies.append((done - sent_at) * 1000)
                    else:
                        counts["failed"] += 1
                if not keep:
                    writer.close()
                    reader = writer = None
                    counts["reconnects"] += 1
        finally:
            if writer is not None:
                writer.close()

    async def sampler() -> None:
        assert sample_rss is not None
        while time.perf_counter() < stop_at:
            rss = sample_rss()
            if rss is not None:
                peak[0] = max(peak[0], rss)
            await asyncio.sleep(0.25)

    tasks = [asyncio.create_task(connection()) for _ in range(concurrency)]
    if sample_rss is not None:
        tasks.append(asyncio.create_task(sampler()))
    await asyncio.gather(*tasks)
    return LoadResult(
        requests=counts["ok"],
        failures=counts["failed"],
        seconds=seconds,
        rows_per_request=rows_per_request,
        latencies_ms=latencies,
        statuses=statuses,
        reconnects=counts["reconnects"],
        rss_mb_peak=peak[0],
    )
