"""The HTTP half of `python -m bench.peers`: rows/s and latency of each server at the load points, its RSS idle
and loaded, and its cold start; servers interleaved round by round, medians over rounds."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.edge_harness import proc_stats
from bench.peers.httpload import LoadResult, closed_loop, request_bytes
from bench.peers.servers import HOST, MLSERVER_TRIALS, MLServer, MLServerBatching, Server


@dataclass(frozen=True)
class LoadPoint:
    rows: int
    concurrency: int

    @property
    def label(self) -> str:
        return f"{self.rows}-row c={self.concurrency}"


POINTS = (LoadPoint(1, 1), LoadPoint(1, 8), LoadPoint(1, 32), LoadPoint(64, 8))
HEADLINE = LoadPoint(1, 32)


def tree_pids(root: int) -> list[int]:
    """`root` and every descendant (gunicorn's and MLServer's workers), from /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def tree_rss_mb(root: int) -> float | None:
    """The summed VmRSS of a process tree (pages shared between its processes count once per process)."""
    stats = [proc_stats(pid) for pid in tree_pids(root)]
    sizes = [s[0] for s in stats if s is not None]
    return sum(sizes) if sizes else None


@contextmanager
def affinity(cores: set[int] | None) -> Iterator[None]:
    """This process (the load generator) on `cores` meanwhile."""
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class ServerRound:
    """One start of one server: its cold start, RSS and a result per load point."""

    cold_start_s: float
    idle_rss_mb: float
    loaded_rss_mb: float
    points: dict[str, LoadResult]


def measure_server(
    server: Server, points: Sequence[LoadPoint], seconds: float, cores: tuple[set[int] | None, set[int] | None]
) -> ServerRound:
    client_cores, server_cores = cores
    try:
        cold = server.start_until_scored(server_cores, server.body(1))
        assert server.process is not None and server.process.process is not None
        pid = server.process.process.pid
        idle = tree_rss_mb(pid) or 0.0
        results: dict[str, LoadResult] = {}
        with affinity(client_cores):
            for point in points:
                request = request_bytes(HOST, server.port, server.path, server.body(point.rows))
                results[point.label] = asyncio.run(
                    closed_loop(
                        HOST, server.port, request, concurrency=point.concurrency, seconds=seconds,
                        rows_per_request=point.rows, sample_rss=lambda: tree_rss_mb(pid),
                    )
                )  # fmt: skip
                result = results[point.label]
                if result.requests == 0:
                    raise RuntimeError(f"{server.name} answered no request at {point.label} ({result.statuses}):\n"
                                       f"{server.process.log_tail()}")  # fmt: skip
        loaded = max(r.rss_mb_peak for r in results.values())
        return ServerRound(cold, idle, loaded, results)
    finally:
        server.stop()


def tune_mlserver(
    work: Path, seconds: float, cores: tuple[set[int] | None, set[int] | None], say: Callable[[str], None]
) -> tuple[MLServerBatching, list[dict[str, Any]]]:
    """Each of MLSERVER_TRIALS at the headline point (one start each); the best by rows/s, and every trial's figures."""
    trials: list[tuple[MLServerBatching, float, float | None]] = []
    for batching in MLSERVER_TRIALS:
        got = measure_server(MLServer(work, batching), [HEADLINE], seconds, cores).points[HEADLINE.label]
        trials.append((batching, got.rows_per_s, got.p(99)))
        say(f"mlserver {batching.label}: {got.rows_per_s:,.0f} rows/s, p99 {got.p(99) or 0:.1f} ms")
    best = max(trials, key=lambda t: t[1])[0]
    return best, [{"batching": b.label, "rows_per_s": r, "p99_ms": p99} for b, r, p99 in trials]


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(rounds: Sequence[ServerRound]) -> dict[str, Any]:
    """Medians over rounds: per load point rows/s, p50 and p99, failures; cold start and RSS."""
    points: dict[str, Any] = {}
    for label in rounds[0].points:
        got = [r.points[label] for r in rounds]
        points[label] = {
            "rows_per_s": median([g.rows_per_s for g in got]),
            "p50_ms": median([g.p(50) for g in got]),
            "p99_ms": median([g.p(99) for g in got]),
            "failures": sum(g.failures for g in got),
            "statuses": [g.statuses for g in got],
        }
    return {
        "points": points,
        "cold_start_s": median([r.cold_start_s for r in rounds]),
        "idle_rss_mb": median([r.idle_rss_mb for r in rounds]),
        "loaded_rss_mb": median([r.loaded_rss_mb for r in rounds]),
        "rounds": len(rounds),
    }


def run_http(
    servers: Sequence[Server], rounds: int, seconds: float, cores: tuple[set[int] | None, set[int] | None]
) -> dict[str, Any]:
    """Every server through every load point, interleaved round by round; the medians per server."""
    per_server: dict[str, list[ServerRound]] = {s.name: [] for s in servers}
    for k in range(rounds):
        for server in servers:
            got = measure_server(server, POINTS, seconds, cores)
            per_server[server.name].append(got)
            headline = got.points[HEADLINE.label]
            print(f"... round {k + 1} {server.name}: cold start {got.cold_start_s:.2f} s, idle {got.idle_rss_mb:.0f} MB, "
                  f"{HEADLINE.label} {headline.rows_per_s:,.0f} rows/s p99 {headline.p(99) or 0:.1f} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {name: summarize(got) for name, got in per_server.items()}
