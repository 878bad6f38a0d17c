"""`python -m bench.overload`: the inference module fed at --factor times its capacity for --duration seconds.

On a local edge of the deployment template (the sensor idle), a feeder publishes sensor-like messages straight to
the module's input on its broker, as edgeHub delivers them (QoS 1, message id, content type). In one run, since
the machine is shared: the normal latency (light load), the capacity (a closed loop: --window inputs outstanding,
outcomes per second), then --factor x capacity, open loop, for --duration s, then light load again until the
latency is back to normal. Capacity grows with the queue's depth (fuller batches): --window 2000 keeps seconds of
work queued (500 measured half as much), and the module's CPU time per input is reported too. The module's RSS
(/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd) are sampled once a second. Reported: peak RSS against
the deployment's memory limit (256 MB), what the overloaded inputs got (predictions, `overloaded` error records,
other error records, nothing), where the backlog waited, and the recovery time.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.edge_harness import (
    MODEL,
    SENSOR,
    EdgeRun,
    Sampler,
    account,
    cpu_seconds,
    dump,
    evidence,
    interrupt_on_signals,
    memory_limit_mb,
    percentile,
)
from localedge.edge import DEVICE_ID
from sensor.readings import Simulation, encode
from sensor.settings import load_settings

INPUT = "amlInput"
LIGHT_RATE = 50.0  # inputs per second of "normal" load: the latency baseline and the probes after the overload
NORMAL_MIN_MS = 50.0
STREAK_S = 3.0  # the latency must stay normal this long to count as recovered
TICK_S = 0.01


class Feeder:
    """Publishes sensor-like messages to the module's input on its broker (plain listener), as edgeHub would."""

    def __init__(self, run: EdgeRun) -> None:
        self.run = run
        self.client = run.edge.brokers[MODEL].client()
        sim = Simulation(load_settings({"SENSOR_SEED": "7"}))
        self.bodies = []
        for _ in range(1000):
            sim.step()
            self.bodies.append(encode(sim.reading()))
        self.sent_at: dict[str, float] = {}  # id -> perf_counter() at publish
        self.phases: dict[str, list[str]] = {}

    def send(self, phase: str) -> None:
        mid = uuid.uuid4().hex
        props = [("$.mid", mid), ("$.ct", "application/json"), ("$.ce", "utf-8"), ("$.cdid", DEVICE_ID), ("$.cmid", SENSOR)]
        self.client.send_to_input(DEVICE_ID, MODEL, INPUT, self.bodies[len(self.sent_at) % len(self.bodies)], props)
        self.sent_at[mid] = time.perf_counter()
        self.phases.setdefault(phase, []).append(mid)

    def paced(self, phase: str, rate: float, seconds: float) -> float:
        """Open loop: `rate` inputs/s for `seconds`, in ticks (a slow tick is caught up); returns the rate achieved."""
        start = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                self.send(phase)
                sent += 1
            time.sleep(TICK_S)
        return sent / (time.perf_counter() - start)

    def closed(
        self, phase: str, window: int, seconds: float, warmup_s: float, on_mark: Callable[[], None] | None = None
    ) -> float:
        """Closed loop: top up to `window` inputs without an outcome every tick; outcomes per second after `warmup_s`
        (`on_mark` is called at that moment, e.g. to read the module's CPU time).

        Ticks, not a wake-up per outcome: the hub that records outcomes runs in this process and must not starve.
        """
        outcomes = self.run.outcomes
        start = time.perf_counter()
        offset = len(self.sent_at) - outcomes.total  # earlier phases' inputs all have their outcome
        mark: tuple[float, int] | None = None
        while (now := time.perf_counter()) - start < seconds:
            if mark is None and now - start >= warmup_s:
                mark = (now, outcomes.total)
                if on_mark is not None:
                    on_mark()
            for _ in range(window - (len(self.sent_at) - outcomes.total - offset)):
                self.send(phase)
            time.sleep(5 * TICK_S)
        if mark is None:
            return 0.0
        return (outcomes.total - mark[1]) / (time.perf_counter() - mark[0])

    def latencies_ms(self, ids: list[str]) -> list[float | None]:
        first = self.run.outcomes.first_at or {}
        return [None if i not in first else (first[i] - self.sent_at[i]) * 1000 for i in ids]

    def close(self) -> None:
        self.client.close()


def recovered_at(feeder: Feeder, ids: list[str], normal_ms: float, after: float) -> float | None:
    """Arrival of the outcome of the first probe (published after `after`) from which every probe for STREAK_S got
    its outcome within `normal_ms`; None while there is no such probe yet."""
    first = feeder.run.outcomes.first_at or {}
    probes = [(feeder.sent_at[i], first.get(i)) for i in ids if feeder.sent_at[i] >= after]
    for k, (sent, arrived) in enumerate(probes):
        if probes[-1][0] - sent < STREAK_S:
            return None  # too few probes after this one yet to tell
        streak = (a is not None and (a - s) * 1000 <= normal_ms for s, a in probes[k:] if s - sent <= STREAK_S)
        if all(streak):
            return arrived
    return None


def run_overload(args: argparse.Namespace) -> dict[str, Any]:
    run = EdgeRun(rate=0, send=False, module_source=args.module_source, keep=args.keep, verbose=args.verbose, keep_times=True)
    result: dict[str, Any] = {"factor": args.factor, "duration_s": args.duration, "loadavg_1m_start": os.getloadavg()[0]}
    feeder = None
    try:
        run.start()
        feeder = Feeder(run)
        say = (lambda *_: None) if args.json else (lambda text: print(text, file=sys.stderr, flush=True))

        say("... normal latency: light load")
        feeder.paced("warmup", LIGHT_RATE, 3)
        feeder.paced("baseline", LIGHT_RATE, 5)
        run.outcomes.wait_total(len(feeder.sent_at), 30)
        base = [ms for ms in feeder.latencies_ms(feeder.phases["baseline"]) if ms is not None]
        p50, p95 = percentile(base, 50) or 0.0, percentile(base, 95) or 0.0
        normal_ms = max(NORMAL_MIN_MS, 3 * p95)  # p95, not the median: every probe of a streak must make it, spikes too
        result["baseline_latency_ms"] = {"p50": round(p50, 2), "p95": round(p95, 2), "normal_below": round(normal_ms, 1)}

        say(f"... capacity: closed loop, {args.window} outstanding, {args.capacity_s:g} s")
        cpu_before, done_before = cpu_seconds(run.model.pid), run.outcomes.total
        capacity = feeder.closed("capacity", args.window, args.capacity_s, warmup_s=2)
        cpu_after = cpu_seconds(run.model.pid)
        result["capacity_msgs_per_s"] = round(capacity, 1)
        if cpu_before is not None and cpu_after is not None and run.outcomes.total > done_before:
            # What one input costs the module in CPU: steadier than a rate on a shared machine (the deployment gives it 1 CPU).
            ms = (cpu_after - cpu_before) * 1000 / (run.outcomes.total - done_before)
            result["module_cpu_ms_per_input"] = round(ms, 3)
            result["capacity_on_one_core_msgs_per_s"] = round(1000 / ms, 1) if ms else None
        run.outcomes.wait_total(len(feeder.sent_at), 60)  # the window drains before the overload starts

        target = args.factor * capacity
        say(f"... overload: {target:.0f}/s ({args.factor:g} x {capacity:.0f}/s) for {args.duration:g} s")
        broker = run.edge.brokers[MODEL].process
        assert broker is not None
        # The broker too: where the backlog waits (the broker, or the module that acknowledged it) shows in their RSS.
        with Sampler(lambda: run.model.pid, 1.0) as sampler, Sampler(lambda: broker.pid, 1.0) as broker_sampler:
            started = time.perf_counter()
            done_before = run.outcomes.total
            achieved = feeder.paced("overload", target, args.duration)
            ended = time.perf_counter()
            outcomes_during = run.outcomes.total - done_before
            result["fed_msgs_per_s"] = round(achieved, 1)
            result["fed_vs_capacity"] = round(achieved / capacity, 2) if capacity else None
            result["outcomes_per_s_during"] = round(outcomes_during / (ended - started), 1)
            say(f"... fed {achieved:.0f}/s; probes at {LIGHT_RATE:g}/s until the latency is back under {normal_ms:.0f} ms")
            bound = max(120.0, 4 * args.duration)
            recovered = None
            while time.perf_counter() - ended < bound:
                feeder.paced("after", LIGHT_RATE, 1.0)
                recovered = recovered_at(feeder, feeder.phases["after"], normal_ms, ended)
                if recovered is not None:
                    break
        result["recovery_s"] = None if recovered is None else round(recovered - ended, 2)
        run.settle(quiet_s=20, timeout=120)
        samples = sampler.samples
        result["broker_rss_mb"] = {
            "start": round(broker_sampler.samples[0][1], 1) if broker_sampler.samples else None,
            "peak": round(broker_sampler.peak_rss_mb, 1),
        }
    finally:
        if feeder is not None:
            feeder.close()
        run.stop()
    limit = memory_limit_mb()
    peak = max((s[1] for s in samples), default=0.0)
    result["rss_mb"] = {
        "start": round(samples[0][1], 1) if samples else None,
        "peak": round(peak, 1),
        "end": round(samples[-1][1], 1) if samples else None,
        "limit": limit,
        "peak_vs_limit": round(peak / limit, 3) if limit else None,
    }
    result["fds"] = {"start": samples[0][2] if samples else None, "peak": max((s[2] for s in samples), default=None)}
    result["samples"] = [{"t_s": round(t, 1), "rss_mb": round(r, 1), "fds": f} for t, r, f in samples]
    result["overload_inputs"] = outcome_classes(run, feeder.phases["overload"])
    result["all_inputs"] = account(feeder.sent_at, run.outcomes).to_json()
    result["evidence"] = evidence(run.log)
    result["module_exits"] = run.exits  # e.g. an OOM kill in a container; here: a crash, the watchdog
    inbox = re.search(r"inbox_peak=(\d+)", run.log)  # the module's own count, in its "stopped:" line
    result["module_inbox_peak"] = int(inbox[1]) if inbox else None
    return result


def outcome_classes(run: EdgeRun, ids: list[str]) -> dict[str, int]:
    """What each input got: a prediction, an `overloaded` error record, another error record, nothing; and doubles."""
    kinds = run.outcomes.kinds
    counts = {"inputs": len(ids), "predicted": 0, "overloaded": 0, "other_errors": 0, "nothing": 0, "duplicated": 0}
    for i in ids:
        kind = kinds.get(i)
        if kind is None:
            counts["nothing"] += 1
        elif kind in ("predicted", "overloaded"):
            counts[kind] += 1
        else:
            counts["other_errors"] += 1
        counts["duplicated"] += run.outcomes.count.get(i, 0) > 1
    return counts


def report(r: dict[str, Any]) -> None:
    rss, o, b = r["rss_mb"], r["overload_inputs"], r["baseline_latency_ms"]
    print(f"\noverload: {r['factor']:g} x capacity for {r['duration_s']:g} s")
    print(f"  normal latency           p50 {b['p50']} ms, p95 {b['p95']} ms (normal: under {b['normal_below']} ms)")
    load = r["loadavg_1m_start"]
    print(f"  capacity (closed loop)   {r['capacity_msgs_per_s']:,.0f} outcomes/s (machine load average {load:.1f} at start)")
    if r.get("module_cpu_ms_per_input"):
        print(
            f"                           the module's CPU: {r['module_cpu_ms_per_input']} ms per input "
            f"= {r['capacity_on_one_core_msgs_per_s']:,.0f}/s on one whole core"
        )
    print(f"  fed                      {r['fed_msgs_per_s']:,.0f}/s = {r['fed_vs_capacity']} x capacity")
    print(f"  outcomes during          {r['outcomes_per_s_during']:,.0f}/s")
    over = "OVER the limit: the container would be OOM-killed" if rss["limit"] and rss["peak"] > rss["limit"] else "within it"
    print(f"  RSS                      start {rss['start']} MB, peak {rss['peak']} MB, end {rss['end']} MB")
    print(f"                           peak = {rss['peak_vs_limit']} of the {rss['limit']:g} MB limit ({over})")
    print(f"  descriptors              start {r['fds']['start']}, peak {r['fds']['peak']}")
    broker = r["broker_rss_mb"]
    print(
        f"  where the backlog waited the module's inbox peaked at {r['module_inbox_peak']} inputs; "
        f"its broker's RSS {broker['start']} -> {broker['peak']} MB"
    )
    print(
        f"  overloaded inputs        {o['inputs']:,}: {o['predicted']:,} predicted, {o['overloaded']:,} `overloaded` records, "
        f"{o['other_errors']:,} other errors, {o['nothing']:,} nothing, {o['duplicated']:,} duplicated"
    )
    recovery = "not within the bound" if r["recovery_s"] is None else f"{r['recovery_s']} s"
    print(f"  recovery                 {recovery} (end of the overload -> latency back under {b['normal_below']} ms)")
    notable = {k: v["count"] for k, v in r["evidence"].items()}
    print(f"  module log               {notable}")
    if r["module_exits"]:
        print(f"  the module exited        {'; '.join(r['module_exits'])}")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.splitlines()[0])
    p.add_argument("--factor", type=float, default=3.0, help="feed rate as a multiple of the measured capacity (default 3)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of overload (default 60)")
    p.add_argument("--capacity-s", type=float, default=12.0, help="seconds of the capacity measurement (default 12)")
    p.add_argument("--window", type=int, default=2000, help="outstanding inputs while measuring capacity (default 2000)")
    p.add_argument("--module-source", type=Path, default=None, help="run the inference module from this tree")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    p.add_argument("--verbose", action="store_true", help="module logs on stderr")
    p.add_argument("--json", action="store_true", help="the result as one JSON line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    interrupt_on_signals()
    started = time.monotonic()
    try:
        result = run_overload(args)
    except KeyboardInterrupt:
        print("interrupted: every process was stopped", file=sys.stderr)
        return 130
    result["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(dump(result))
    else:
        report(result)
        print(f"  run time                 {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
