"""`python -m bench.budget`: the module's CPU budget per message at every rate, against the echo module, in one run.

Three kinds, each on a local edge of the deployment template (the sensor idle; a feeder publishes sensor messages
to the module's input on its broker, QoS 1, as edgeHub delivers them):
- `1:1`: the inference module as deployed (default model on ONNX Runtime, journal on), one output per input;
- `aggregated`: the same with AGGREGATE=true (many predictions per output message);
- `echo`: bench/echo_module, each input sent back: the SDK's own cost, the floor.

For each kind, in this order on one edge: CPU per input at each --rates (paced, open loop), then saturation (a
closed loop keeping --window inputs without an outcome: inputs answered per second and CPU per input), then
latency (publish -> outcome at `$upstream`, p50/p99) at half the 1:1 module's capacity measured in the same round,
for every kind alike. CPU is the module process's user + system time (/proc) over a phase, divided by the inputs
answered in it. Kinds are interleaved over --rounds (the machine may be shared: ratios within one run only); the
median of the rounds counts. Every input must have exactly one outcome, counted by id (aggregates by their items'
`messageId`). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.edge_harness import MODEL, EdgeRun, account, cpu_seconds, interrupt_on_signals, percentile
from bench.lowrate import ECHO_SOURCE
from bench.overload import Feeder
from bench.profiling import Profiler

# Each kind's desired properties on top of the template's (which sets `aggregate` itself, so an env var would not do).
KINDS: dict[str, dict[str, Any]] = {"1:1": {}, "aggregated": {"aggregate": True}, "echo": {}}
WARMUP_RATE, WARMUP_S = 50.0, 3.0
SATURATION_WARMUP_S = 2.0
DRAIN_TIMEOUT_S = 60.0
SETTINGS_TIMEOUT_S = 30.0

# Targets of issue 14 (ratios within one run).
CPU_AT_50_MAX = 1.2  # module CPU per message at 50 msg/s, x echo's
SATURATION_MIN = 0.95  # 1:1 inputs/s at saturation, x echo's
AGGREGATED_MIN = 1.5  # aggregated predictions/s at saturation, x 1:1's
P99_MAX = 2.0  # p99 at half the module's capacity, x echo's


@dataclass
class KindRun:
    """One kind's figures in one round."""

    cpu_ms: dict[str, float] = field(default_factory=dict)  # phase ("50", "200", "saturation") -> CPU ms per input
    capacity: float = 0.0  # inputs answered per second at saturation
    predictions_per_s: float = 0.0
    output_messages_per_input: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p99 at the latency rate
    exactly_once: bool = True
    lost: int = 0
    duplicated: int = 0


def _drain(run: EdgeRun, feeder: Feeder, what: str) -> None:
    if not run.outcomes.wait_total(len(feeder.sent_at), DRAIN_TIMEOUT_S):
        missing = len(feeder.sent_at) - run.outcomes.total
        raise SystemExit(f"{what}: {missing} inputs got no outcome within {DRAIN_TIMEOUT_S:.0f} s:\n{run.model.log_tail()}")


def _apply_desired(run: EdgeRun, patch: dict[str, Any]) -> None:
    """Patch the module's desired properties and wait (bounded) until getStatus shows them applied."""
    version = run.edge.patch_desired(MODEL, patch)
    deadline = time.monotonic() + SETTINGS_TIMEOUT_S
    while time.monotonic() < deadline:
        status, doc = run.edge.invoke(MODEL, "getStatus", timeout=SETTINGS_TIMEOUT_S)
        if status == 200 and doc.get("desiredVersion") == version:
            applied = doc.get("settings", {})
            if any(applied.get(key) != value for key, value in patch.items()):
                raise SystemExit(f"the module took desired version {version} but shows {applied}, not {patch}")
            return
        time.sleep(0.2)  # a poll with a deadline: the module applies a patch on its own loop
    raise SystemExit(f"the module did not apply {patch} within {SETTINGS_TIMEOUT_S:.0f} s:\n{run.model.log_tail()}")


def measure_kind(
    kind: str, rates: list[float], seconds: float, window: int, latency_rate: float | None, profile_dir: Path | None = None
) -> KindRun:
    """One edge for `kind`: CPU at each rate, saturation, then latency at `latency_rate` (None: half its own capacity);
    with `profile_dir`, then a profiled stretch at the lowest rate (bench/profiling.py), not counted in the figures."""
    source = ECHO_SOURCE if kind == "echo" else None
    run = EdgeRun(rate=0, send=False, module_source=source, keep_times=True)
    result = KindRun()
    feeder: Feeder | None = None
    try:
        run.start()
        if KINDS[kind]:
            _apply_desired(run, KINDS[kind])
        feeder = Feeder(run)
        pid = run.model.pid
        feeder.paced("warmup", WARMUP_RATE, WARMUP_S)
        _drain(run, feeder, f"{kind} warm-up")

        def cpu_phase(phase: str, act: Any) -> float:
            cpu0, done0 = cpu_seconds(pid), run.outcomes.total
            act()
            _drain(run, feeder, f"{kind} at {phase}")
            cpu1, done = cpu_seconds(pid), run.outcomes.total - done0
            assert cpu0 is not None and cpu1 is not None and done > 0
            return (cpu1 - cpu0) * 1000 / done

        for rate in rates:
            result.cpu_ms[f"{rate:g}"] = cpu_phase(f"{rate:g} msg/s", lambda rate=rate: feeder.paced(f"r{rate:g}", rate, seconds))

        # (CPU s, outcomes, predictions, upstream messages) at the mark and at the end
        marks: list[tuple[float | None, int, int, int]] = []

        def mark() -> None:
            assert run.edge.hub is not None
            marks.append((cpu_seconds(pid), run.outcomes.total, run.outcomes.predicted, run.edge.hub.upstream.count))

        result.capacity = feeder.closed("saturation", window, SATURATION_WARMUP_S + seconds, SATURATION_WARMUP_S, mark)
        mark()
        (cpu0, done0, predicted0, up0), (cpu1, done1, predicted1, up1) = marks
        assert cpu0 is not None and cpu1 is not None and done1 > done0
        result.cpu_ms["saturation"] = (cpu1 - cpu0) * 1000 / (done1 - done0)
        result.predictions_per_s = result.capacity * (predicted1 - predicted0) / (done1 - done0)  # error records are not
        result.output_messages_per_input = (up1 - up0) / (done1 - done0)
        _drain(run, feeder, f"{kind} after saturation")

        rate = latency_rate if latency_rate is not None else result.capacity / 2
        feeder.paced("latency", rate, seconds)
        _drain(run, feeder, f"{kind} latency phase")
        latencies = [ms for ms in feeder.latencies_ms(feeder.phases["latency"]) if ms is not None]
        result.latency_ms = {"rate": rate, "p50": percentile(latencies, 50) or 0.0, "p99": percentile(latencies, 99) or 0.0}

        if profile_dir is not None:
            name = f"{kind.replace(':', 'to')}-{min(rates):g}"
            with Profiler(pid, profile_dir, name, seconds) as profiler:
                done0 = run.outcomes.total
                feeder.paced("profiled", min(rates), seconds)
                _drain(run, feeder, f"{kind} profiled")
                profiler.done(run.outcomes.total - done0)

        accounting = account(feeder.sent_at, run.outcomes)
        result.exactly_once, result.lost, result.duplicated = accounting.exactly_once, accounting.lost, accounting.duplicated
        return result
    finally:
        if feeder is not None:
            feeder.close()
        run.stop()


def _median(runs: list[KindRun], get: Any) -> float:
    return float(statistics.median(get(r) for r in runs))


def summarize(runs: dict[str, list[KindRun]], rates: list[float]) -> dict[str, Any]:
    """Medians per kind, ratios against echo (and aggregated against 1:1), and which targets hold."""
    phases = [f"{r:g}" for r in rates] + ["saturation"]
    kinds: dict[str, Any] = {}
    for kind, rs in runs.items():
        kinds[kind] = {
            "cpu_ms_per_input": {p: round(_median(rs, lambda r, p=p: r.cpu_ms[p]), 3) for p in phases},
            "inputs_per_s": round(_median(rs, lambda r: r.capacity)),
            "predictions_per_s": round(_median(rs, lambda r: r.predictions_per_s)),
            "output_messages_per_input": round(_median(rs, lambda r: r.output_messages_per_input), 3),
            "latency_ms": {k: round(_median(rs, lambda r, k=k: r.latency_ms[k]), 2) for k in ("rate", "p50", "p99")},
            "exactly_once": all(r.exactly_once for r in rs),
            "lost": sum(r.lost for r in rs),
            "duplicated": sum(r.duplicated for r in rs),
        }
    echo, one, agg = kinds["echo"], kinds["1:1"], kinds["aggregated"]
    ratios = {
        kind: {
            "cpu_vs_echo": {p: round(kinds[kind]["cpu_ms_per_input"][p] / echo["cpu_ms_per_input"][p], 2) for p in phases},
            "inputs_per_s_vs_echo": round(kinds[kind]["inputs_per_s"] / echo["inputs_per_s"], 3),
            "p99_vs_echo": round(kinds[kind]["latency_ms"]["p99"] / max(echo["latency_ms"]["p99"], 1e-9), 2),
        }
        for kind in ("1:1", "aggregated")
    }
    ratios["aggregated"]["predictions_per_s_vs_1to1"] = round(agg["predictions_per_s"] / one["predictions_per_s"], 2)
    low = f"{min(rates):g}"
    targets = {
        f"cpu at {low} msg/s <= {CPU_AT_50_MAX}x echo": ratios["1:1"]["cpu_vs_echo"][low] <= CPU_AT_50_MAX,
        f"1:1 inputs/s at saturation >= {SATURATION_MIN:.0%} of echo": ratios["1:1"]["inputs_per_s_vs_echo"] >= SATURATION_MIN,
        f"aggregated predictions/s >= {AGGREGATED_MIN}x 1:1": ratios["aggregated"]["predictions_per_s_vs_1to1"] >= AGGREGATED_MIN,
        f"p99 at half capacity <= {P99_MAX}x echo": ratios["1:1"]["p99_vs_echo"] <= P99_MAX,
    }
    return {"kinds": kinds, "ratios": ratios, "targets": targets, "rounds": len(runs["echo"])}


def print_table(summary: dict[str, Any], rates: list[float]) -> None:
    kinds, ratios = summary["kinds"], summary["ratios"]
    phases = [f"{r:g}" for r in rates] + ["saturation"]
    heads = [f"CPU/input at {p} msg/s" if p != "saturation" else "CPU/input at saturation" for p in phases]
    print(f"median of {summary['rounds']} interleaved rounds; ratios against the echo module in the same run")
    print("| | " + " | ".join(heads) + " | inputs/s at saturation | predictions/s | p50 / p99 at half capacity |")
    print("|---" * (len(heads) + 4) + "|")
    for kind, k in kinds.items():
        r = ratios.get(kind)
        cells = [f"{k['cpu_ms_per_input'][p]:.2f} ms" + (f" ({r['cpu_vs_echo'][p]:.2f}×)" if r else "") for p in phases]
        cap = f"{k['inputs_per_s']:,}" + (f" ({r['inputs_per_s_vs_echo']:.0%})" if r else "")
        lat = f"{k['latency_ms']['p50']:.1f} / {k['latency_ms']['p99']:.1f} ms" + (f" ({r['p99_vs_echo']:.2f}×)" if r else "")
        print(f"| {kind} | " + " | ".join(cells) + f" | {cap} | {k['predictions_per_s']:,} | {lat} |")
    print(f"latency rate: {kinds['1:1']['latency_ms']['rate']:.0f} inputs/s for every kind (half the 1:1 module's capacity)")
    print(
        f"aggregated: {ratios['aggregated']['predictions_per_s_vs_1to1']:.2f}× the predictions/s of 1:1, "
        f"{kinds['aggregated']['output_messages_per_input']:.3f} output messages per input"
    )
    for name, held in summary["targets"].items():
        print(f"  target {name}: {'holds' if held else 'MISSED'}")
    broken = [kind for kind, k in kinds.items() if not k["exactly_once"]]
    if broken:
        print(f"  ACCOUNTING: inputs without exactly one outcome in {', '.join(broken)}")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="50,200", help="paced rates in msg/s, comma-separated (default 50,200)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase (default 5)")
    p.add_argument("--window", type=int, default=1000, help="inputs without an outcome at saturation (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians count (default 3)")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="in round 1, also profile each kind at the lowest rate into DIR (bench/profiling.py; py-spy if installed)",
    )
    args = p.parse_args()
    interrupt_on_signals()
    rates = sorted(float(r) for r in args.rates.split(","))
    runs: dict[str, list[KindRun]] = {kind: [] for kind in KINDS}
    for n in range(args.rounds):
        latency_rate: float | None = None
        for kind in KINDS:  # 1:1 first: its capacity sets the latency rate for the others
            r = measure_kind(kind, rates, args.seconds, args.window, latency_rate, args.profile if n == 0 else None)
            latency_rate = latency_rate or r.latency_ms["rate"]
            runs[kind].append(r)
            cpu = ", ".join(f"{p} {v:.2f} ms" for p, v in r.cpu_ms.items())
            print(
                f"... round {n + 1} {kind}: CPU/input {cpu}; {r.capacity:.0f} inputs/s; "
                f"p99 {r.latency_ms['p99']:.1f} ms at {r.latency_ms['rate']:.0f}/s",
                file=sys.stderr,
                flush=True,
            )
    summary = summarize(runs, rates)
    print_table(summary, rates)
    print(orjson.dumps({"budget": summary}).decode())
    return 0 if all(k["exactly_once"] for k in summary["kinds"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
