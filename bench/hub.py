"""`python -m bench.hub`: what edgeHub's duties cost on the local edge.

1. Brokers saving sessions on every change (tmpfs) against saving only on a clean stop: the sensor's stream through
   the whole local edge (sensor -> hub -> inference -> $upstream) as fast as it goes, both ways alternately in one
   run, outcomes per second and the ratio.
2. The store-and-forward store: CPU per message stored and handed over (put, take, commit), by timeit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import timeit
from pathlib import Path

from bench.edge_harness import EdgeRun
from localedge.store import MessageStore
from localedge.wire import input_topic


def stream_rate(messages: int, save_sessions: bool) -> float:
    """Outcomes per second of a `messages`-long sensor stream sent as fast as it goes."""
    with EdgeRun(rate=0, count=messages, save_sessions=save_sessions) as run:
        started = time.perf_counter()
        if not run.outcomes.wait_total(messages, 300):
            raise SystemExit(f"only {run.outcomes.total} of {messages} outcomes within 300 s")
        return messages / (time.perf_counter() - started)


def store_cost_us(messages: int = 20_000, body: bytes = b"x" * 250) -> float:
    """CPU microseconds per message through the store: put, then take and commit in windows of 200."""
    topic = input_topic("dev", "inference", "amlInput", {"$.mid": "0" * 32, "$.ct": "application/json", "$.ce": "utf-8"})
    with tempfile.TemporaryDirectory() as scratch:
        store = MessageStore(Path(scratch) / "messages.bin")

        def cycle() -> None:
            for _ in range(messages):
                store.put(topic, body, 7200)
            while store.pending:
                store.commit(store.take(200))

        seconds = min(timeit.repeat(cycle, number=1, repeat=3, timer=time.process_time))
        store.close()
    return seconds / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hub", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=1500, help="sensor messages per throughput run (default 1500)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each broker setting, alternately (default 2)")
    args = p.parse_args(argv)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for save in (False, True):
            rates[save].append(stream_rate(args.messages, save))
            print(f"save on change={save}: {rates[save][-1]:.0f} outcomes/s", file=sys.stderr, flush=True)
    before, after = max(rates[False]), max(rates[True])
    print(
        f"through the local edge ({args.messages} messages, best of {args.rounds}): brokers saving on clean stop only "
        f"{before:.0f}/s, on every change {after:.0f}/s, ratio {after / before:.2f}"
    )
    print(f"store-and-forward store: {store_cost_us():.1f} µs CPU per message stored and handed over")
    return 0


if __name__ == "__main__":
    sys.exit(main())
