"""`python -m bench.peers`: this module against Azure ML's inference server and MLServer, and through the local edge.

HTTP (everything on 127.0.0.1; the load generator and the server on different cores when there are two): rows/s
and p50/p99 at 1-row concurrency 1, 8, 32 and 64-row concurrency 8, idle and loaded RSS, cold start, for our
/score (ONNX Runtime, and the pickle on scikit-learn), azmlinfsrv 1.5.1 and MLServer 1.7.1 with the best of a few
adaptive-batching settings. SDK (the local edge): capacity, then messages/s, predictions/s, latency and CPU per
message at 25/50/90% of it, for 1:1, aggregated and the echo module. Servers (and edge kinds) are interleaved
round by round; the median of --rounds counts. The peers' virtualenvs (.venv-azmlinfsrv, .venv-mlserver) are
built on first use. Writes bench/results/peers.md and peers.png; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from app.settings import REPO_ROOT
from bench.edge_harness import interrupt_on_signals
from bench.peers.http import run_http, tune_mlserver
from bench.peers.report import markdown, plot
from bench.peers.sdk import KINDS, run_sdk
from bench.peers.servers import AzmlInfSrv, MLServer, Ours, OursSklearn, Server, server_cores

RESULTS = REPO_ROOT / "bench" / "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median counts (default 3)")
    p.add_argument("--quick", action="store_true", help="one round (same as --rounds 1)")
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per load point (default 4)")
    p.add_argument("--sdk-seconds", type=float, default=6.0, help="measured seconds per share through the edge (default 6)")
    p.add_argument("--only", choices=("http", "sdk"), help="one half only")
    p.add_argument("--out", type=Path, default=RESULTS, help="where peers.md and peers.png go (default bench/results)")
    return p.parse_args()


def say(line: str) -> None:
    print(f"... {line}", file=sys.stderr, flush=True)


def conditions(cores: tuple[set[int] | None, set[int] | None], rounds: int) -> str:
    client, server = cores
    pinning = f"load generator on core {sorted(client)}, server on core {sorted(server)}" if client and server else "no pinning"
    return (
        f"{platform.machine()}, {os.cpu_count()} cores ({pinning}), Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end; median of {rounds} interleaved round(s). The machine may be shared: "
        "compare ratios within this run, not absolute numbers across runs."
    )


def main() -> int:
    args = _args()
    rounds = 1 if args.quick else args.rounds
    interrupt_on_signals()
    cores = server_cores()
    doc: dict[str, Any] = {"when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = Path(tmp)
        if args.only != "sdk":
            say("the peers' virtualenvs (built on first use: minutes)")
            azml, mlserver = AzmlInfSrv(work), MLServer(work)
            say("MLServer adaptive batching: trying each setting")
            mlserver.batching, doc["mlserver_trials"] = tune_mlserver(work, args.seconds, cores, say)
            servers: list[Server] = [Ours(work), OursSklearn(work), azml, mlserver]
            doc["versions"] = {s.name: s.versions() for s in servers}
            doc["mlserver_batching"] = mlserver.batching.label
            doc["http"] = run_http(servers, rounds, args.seconds, cores)
        if args.only != "http":
            doc["sdk"] = run_sdk(rounds, args.sdk_seconds, kinds=tuple(KINDS))
    doc["conditions"] = conditions(cores, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.md").write_text(markdown(doc))
    plotted = plot(doc, args.out / "peers.png")
    print(markdown(doc))
    print(f"written: {args.out / 'peers.md'}" + (f", {args.out / 'peers.png'}" if plotted else " (no matplotlib: no plot)"))
    print(orjson.dumps({"peers": doc}, default=str, option=orjson.OPT_NON_STR_KEYS).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
