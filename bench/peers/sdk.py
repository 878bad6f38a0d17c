"""The SDK half of `python -m bench.peers`: through the local edge (real azure-iot-device, real Mosquitto), for the
inference module with one output per input (1:1), with AGGREGATE=true, and for the echo module (the SDK's own
cost): the capacity (closed loop), then messages/s, predictions/s, latency (publish to the module's input ->
its answer upstream) and the module's CPU per message at 25, 50 and 90% of that kind's capacity (open loop).

An input counts as answered by the first upstream message that carries its id: the correlation id of a 1:1
output (or of the echo), the `messageId` of an item in an aggregate.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.edge_harness import MODEL, EdgeRun, cpu_seconds, percentile
from bench.lowrate import ECHO_SOURCE
from bench.overload import Feeder
from localedge.upstream import UpstreamMessage

SHARES = (0.25, 0.5, 0.9)
# The deployment template's twin sets `aggregate: false`, and the twin wins over the environment: aggregation is
# switched on through the twin, as an operator would.
KINDS: dict[str, dict[str, Any]] = {
    "1:1": {"twin": None, "source": None},
    "aggregated": {"twin": {"aggregate": True}, "source": None},
    "echo": {"twin": None, "source": ECHO_SOURCE},
}


class Answers:
    """The first upstream answer to each input, by its id; predictions and output messages counted (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.first_at: dict[str, float] = {}
        self.predictions = self.messages = 0

    def __call__(self, msg: UpstreamMessage) -> None:
        ids = [msg.correlation_id] if msg.correlation_id else []
        if msg.predictions > 1 or not ids:
            body = msg.json_body()
            items = body.get("predictions") if isinstance(body, dict) else None
            ids = [i["messageId"] for i in items or [] if isinstance(i, dict) and isinstance(i.get("messageId"), str)]
        with self._cond:
            self.messages += 1
            self.predictions += msg.predictions
            for i in ids:
                self.first_at.setdefault(i, msg.arrived)
            self._cond.notify_all()

    @property
    def total(self) -> int:
        with self._cond:
            return len(self.first_at)

    def wait_total(self, total: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.first_at) >= total, timeout)

    def counts(self) -> tuple[int, int, int]:
        with self._cond:
            return len(self.first_at), self.predictions, self.messages


def capacity(feeder: Feeder, answers: Answers, window: int, seconds: float, warmup_s: float) -> float:
    """Closed loop: `window` inputs without an answer at most (topped up every 50 ms); answers/s after `warmup_s`."""
    start = time.perf_counter()
    mark: tuple[float, int] | None = None
    while (now := time.perf_counter()) - start < warmup_s + seconds:
        if mark is None and now - start >= warmup_s:
            mark = (now, answers.total)
        for _ in range(window - (len(feeder.sent_at) - answers.total)):
            feeder.send("capacity")
        time.sleep(0.05)
    assert mark is not None
    return (answers.total - mark[1]) / (time.perf_counter() - mark[0])


@dataclass
class Paced:
    share: float
    rate: float  # offered, inputs/s
    messages_per_s: float  # inputs answered per second
    predictions_per_s: float
    outputs_per_s: float  # upstream messages per second
    p50_ms: float | None
    p99_ms: float | None
    cpu_ms_per_message: float | None
    unanswered: int


def paced(run: EdgeRun, feeder: Feeder, answers: Answers, share: float, rate: float, seconds: float) -> Paced:
    """Open loop at `rate` for `seconds`; waits (bounded) for the answers, then what this stretch got."""
    phase = f"{share:g}"
    done0, pred0, msgs0 = answers.counts()
    cpu0 = cpu_seconds(run.model.pid)
    began = time.perf_counter()
    feeder.paced(phase, rate, seconds)
    ids = feeder.phases[phase]
    answers.wait_total(done0 + len(ids), 30)
    elapsed = max(time.perf_counter() - began, seconds)
    cpu1 = cpu_seconds(run.model.pid)
    done1, pred1, msgs1 = answers.counts()
    with answers._cond:
        latencies = [(answers.first_at[i] - feeder.sent_at[i]) * 1000 for i in ids if i in answers.first_at]
    answered = len(latencies)
    return Paced(
        share=share,
        rate=rate,
        messages_per_s=(done1 - done0) / elapsed,
        predictions_per_s=(pred1 - pred0) / elapsed,
        outputs_per_s=(msgs1 - msgs0) / elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        cpu_ms_per_message=None if cpu0 is None or cpu1 is None or not answered else (cpu1 - cpu0) * 1000 / answered,
        unanswered=len(ids) - answered,
    )


def measure_kind(kind: str, seconds: float, window: int) -> dict[str, Any]:
    """One local edge for `kind`: its capacity, then each share of it paced."""
    answers = Answers()
    spec = KINDS[kind]
    run = EdgeRun(rate=0, send=False, module_source=spec["source"], on_upstream=answers)
    try:
        run.start()
        if spec["twin"]:
            run.edge.patch_desired(MODEL, spec["twin"])
            wanted = {"".join(w.title() if i else w for i, w in enumerate(k.split("_"))): v for k, v in spec["twin"].items()}
            in_effect = run.edge.wait_reported(MODEL, lambda r: wanted.items() <= r.get("settings", {}).items(), 30)
            if in_effect is None:
                raise RuntimeError(f"{kind}: the module did not report {wanted} in effect:\n{run.model.log_tail()}")
        feeder = Feeder(run)
        try:
            feeder.paced("warmup", 50, 2)
            if not answers.wait_total(len(feeder.sent_at), 30):
                raise RuntimeError(f"{kind}: the warm-up's answers did not all arrive:\n{run.model.log_tail()}")
            cap = capacity(feeder, answers, window, seconds, warmup_s=2)
            answers.wait_total(len(feeder.sent_at), 60)  # the closed loop's backlog, before the open loop starts
            points = [paced(run, feeder, answers, share, share * cap, seconds) for share in SHARES]
        finally:
            feeder.close()
    finally:
        run.stop()
    return {"capacity": cap, "points": [p.__dict__ for p in points]}


def run_sdk(rounds: int, seconds: float, window: int = 1000, kinds: Sequence[str] = tuple(KINDS)) -> dict[str, Any]:
    """Every kind, interleaved round by round; per kind the medians over rounds."""
    got: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for k in range(rounds):
        for kind in kinds:
            result = measure_kind(kind, seconds, window)
            got[kind].append(result)
            print(f"... round {k + 1} {kind}: capacity {result['capacity']:,.0f} msg/s", file=sys.stderr, flush=True)
    return {kind: _median_of(results) for kind, results in got.items()}


def _median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    points = []
    for j, share in enumerate(SHARES):
        at = [r["points"][j] for r in results]
        fields = {name: med([a[name] for a in at]) for name in at[0] if name not in ("share", "unanswered")}
        points.append({"share": share, **fields, "unanswered": sum(a["unanswered"] for a in at)})
    return {"capacity": med([r["capacity"] for r in results]), "points": points, "rounds": len(results)}


def main() -> int:  # `python -m bench.peers.sdk`: this half alone, one round
    print(orjson.dumps(run_sdk(1, 5.0)).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
