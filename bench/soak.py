"""`python -m bench.soak`: a steady stream through the local edge for --minutes; memory, descriptors, the invariant.

deployment.template.json on a local edge, the sensor sending --rate messages/s for --minutes. Every --interval
seconds one line: messages sent and answered, the module's RSS (/proc/PID/status VmRSS) and open descriptors
(/proc/PID/fd), the window's latency (sensor message routed -> its outcome upstream). At the end, the invariant
by id (each sensor message has exactly one outcome upstream: nothing lost, nothing doubled) and the slopes of RSS
and descriptors over the run after its warm-up (a leak shows as a steady climb).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.edge_harness import SENSOR, EdgeRun, dump, evidence, interrupt_on_signals, linear_slope, percentile, proc_stats

WARMUP_S = 60.0  # imports, caches and arenas settle; the slopes start after this (or after a quarter of a short run)


def soak(args: argparse.Namespace, emit: Any) -> dict[str, Any]:
    seconds = args.minutes * 60
    count = round(args.rate * seconds)
    run = EdgeRun(rate=args.rate, count=count, module_source=args.module_source, keep=args.keep, verbose=args.verbose)
    samples: list[dict[str, Any]] = []
    try:
        run.start()
        started = time.monotonic()
        sensor = run.edge.modules[SENSOR]
        # Bounded: the stream's length, plus a minute for a slow start or end.
        while time.monotonic() - started < seconds + 60 and not sensor.lines_with("done: sent="):
            time.sleep(args.interval)
            stats = proc_stats(run.model.pid)
            window = [ms for _, ms in run.outcomes.take_latencies()]
            sent = len(run.sent_ids())
            sample = {
                "t_s": round(time.monotonic() - started),
                "sent": sent,
                "answered": run.outcomes.total,
                "rss_mb": None if stats is None else round(stats[0], 1),
                "fds": None if stats is None else stats[1],
                "p50_ms": _round(percentile(window, 50)),
                "p99_ms": _round(percentile(window, 99)),
            }
            samples.append(sample)
            emit(sample)
        run.settle(quiet_s=20, timeout=120)
    finally:
        run.stop()
    accounting = run.account()
    warm = [s for s in samples if s["t_s"] >= min(WARMUP_S, seconds / 4) and s["rss_mb"] is not None]
    rss_slope = linear_slope([(s["t_s"] / 3600, s["rss_mb"]) for s in warm])
    fd_slope = linear_slope([(s["t_s"] / 3600, s["fds"]) for s in warm])
    rss = [s["rss_mb"] for s in samples if s["rss_mb"] is not None]
    return {
        "summary": True,
        "minutes": args.minutes,
        "rate": args.rate,
        **accounting.to_json(),
        "invariant_holds": accounting.exactly_once,
        "rss_mb": {"first": rss[0] if rss else None, "last": rss[-1] if rss else None, "peak": max(rss, default=None)},
        "rss_mb_per_hour": _round(rss_slope),
        "fds": {"min": min((s["fds"] for s in warm), default=None), "max": max((s["fds"] for s in warm), default=None)},
        "fds_per_hour": _round(fd_slope),
        "evidence": evidence(run.log),
        "module_exits": run.exits,
        "samples": samples,
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _line(s: dict[str, Any]) -> str:
    return (
        f"t={s['t_s']:>5} s  sent {s['sent']:>7,}  answered {s['answered']:>7,}  lag {s['sent'] - s['answered']:>5,}  "
        f"RSS {s['rss_mb']} MB  fds {s['fds']}  latency p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms"
    )


def report(r: dict[str, Any]) -> None:
    verdict = "holds" if r["invariant_holds"] else "VIOLATED"
    print(f"\nsoak: {r['minutes']:g} min at {r['rate']:g} msg/s")
    print(
        f"  invariant (each input exactly one outcome): {verdict}: sent {r['sent']:,}, predicted {r['predicted']:,}, "
        f"errored {r['errored']:,}, lost {r['lost']:,}, duplicated {r['duplicated']:,}, unexpected {r['unexpected']:,}"
    )
    rss = r["rss_mb"]
    print(f"  RSS: first {rss['first']} MB, last {rss['last']} MB, peak {rss['peak']} MB; slope {r['rss_mb_per_hour']} MB/hour")
    print(f"  descriptors: {r['fds']['min']}..{r['fds']['max']}; slope {r['fds_per_hour']} per hour")
    print(f"  module log: { {k: v['count'] for k, v in r['evidence'].items()} }")
    if r["module_exits"]:
        print(f"  the module exited on its own: {'; '.join(r['module_exits'])}")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="length of the stream (default 60; 5 for the short one)")
    p.add_argument("--rate", type=float, default=100.0, help="sensor messages per second (default 100)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--module-source", type=Path, default=None, help="run the inference module from this tree")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    p.add_argument("--verbose", action="store_true", help="module logs on stderr")
    p.add_argument("--json", action="store_true", help="each sample, then the summary, as JSON lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    interrupt_on_signals()
    emit = (lambda s: print(dump(s), flush=True)) if args.json else (lambda s: print(_line(s), flush=True))
    try:
        result = soak(args, emit)
    except KeyboardInterrupt:
        print("interrupted: every process was stopped", file=sys.stderr)
        return 130
    if args.json:
        print(dump({k: v for k, v in result.items() if k != "samples"}))
    else:
        report(result)
    return 0 if result["invariant_holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
