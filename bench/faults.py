"""`python -m bench.faults`: faults injected into the local edge mid-stream, accounted by message id.

Each scenario runs deployment.template.json (tempSensor -> inference -> $upstream) on a local edge of its own,
with the sensor streaming at --rate, injects its faults as the stream passes evenly spaced points (each after the
previous one recovered), stops the stream once --messages were sent, waits for the outcomes and counts, by id:
sent, predicted, errored, lost (no outcome upstream), duplicated (more than one). "in module" is how many of the
lost ones Mosquitto had delivered to the module (its log traces every packet): acknowledged by the SDK on arrival,
then lost by the module or its SDK. Recovery, from the end of a fault (broker back, SIGCONT, the killed module restarted at
once as edgeAgent would): "resumed" when the first message routed after it has its outcome upstream, "normal" when
the first one does within the normal latency (3x this run's median before the first fault, at least 50 ms: the
backlog is worked off); the worst of the scenario's faults, "never" past --recover seconds. The next fault waits for
"normal", so each one hits a module in its steady state.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from bench.edge_harness import MODEL, Accounting, EdgeRun, dump, evidence, interrupt_on_signals, percentile
from localedge.errors import EdgeError


@dataclass(frozen=True)
class Sizes:
    messages: int  # at least this many sensor messages per scenario
    rate: float  # sensor messages per second
    repeats: int  # faults in the "x5" scenarios
    stop_s: float  # SIGSTOP length
    outage_s: float  # edgeHub outage length
    recover_s: float  # bound on each wait for recovery ("resumed", then again for "normal")
    quiet_s: float  # at the end: no new outcome for this long means the missing ones are not coming
    watchdog_s: float | None = None  # the module's WATCHDOG_S (None: its default, 120 s)


NORMAL_MIN_MS = 50.0  # "back to normal" latency is never taken below this

# recover_s leaves room for a deaf module's watchdog (120 s by default; 30 s in the quick run), its restart by the
# harness's edgeAgent and the catch-up.
FULL = Sizes(messages=2000, rate=200, repeats=5, stop_s=10, outage_s=30, recover_s=180, quiet_s=25)
QUICK = Sizes(messages=300, rate=100, repeats=2, stop_s=3, outage_s=5, recover_s=60, quiet_s=25, watchdog_s=30)


Recovery = tuple[float | None, float | None]  # seconds to the first fresh outcome, and to one of normal latency


@dataclass
class Result:
    scenario: str
    accounting: Accounting
    recoveries: list[Recovery]  # one per fault
    seconds: float
    notes: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def worst(self, which: int) -> float | None:
        """The scenario's worst recovery (0: resumed, 1: back to normal); None if one did not happen (or no fault)."""
        values = [r[which] for r in self.recoveries]
        return None if not values or None in values else max(v for v in values if v is not None)

    @property
    def resumed_s(self) -> float | None:
        return self.worst(0)

    @property
    def normal_s(self) -> float | None:
        return self.worst(1)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            **self.accounting.to_json(),
            "resumed_s": _round(self.resumed_s),
            "normal_s": _round(self.normal_s),
            "recoveries_s": [[_round(v) for v in r] for r in self.recoveries],
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
            "evidence": self.evidence,
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Faults:
    """What a scenario does to the running edge; records each recovery and notes."""

    def __init__(self, run: EdgeRun, sizes: Sizes, swap_model: Path | None = None) -> None:
        self.run, self.sizes, self.swap_model = run, sizes, swap_model
        self.recoveries: list[Recovery] = []
        self.notes: list[str] = []
        self.normal_ms = NORMAL_MIN_MS

    def spaced(self, times: int, inject: Callable[[], None]) -> None:
        """`times` faults at evenly spaced points of the stream, each once the previous one recovered (bounded)."""
        n, rate = self.sizes.messages, max(self.sizes.rate, 1.0)
        for k in range(times):
            self.run.wait_sent((k + 1) * n // (times + 1), n / rate * 2 + 30)
            if k == 0:  # normal latency: this run's, before any fault (the median: a shared machine has spikes)
                p50 = percentile([ms for _, ms in self.run.outcomes.take_latencies()], 50)
                self.normal_ms = max(NORMAL_MIN_MS, 3 * p50) if p50 is not None else NORMAL_MIN_MS
            inject()  # ends with the fault cleared and self.cleared() called
            self.recoveries.append(self.run.outcomes.wait_fresh(self.sizes.recover_s))
            self.run.sent_ids()  # merged now and then: the hub keeps only the last 100,000
            if self.recoveries[-1][0] is None and k + 1 < times:
                self.notes.append(f"nothing answered within {self.sizes.recover_s:g} s: the other {times - k - 1} faults skipped")
                return

    def cleared(self) -> None:
        """The fault is over: recovery is measured from now."""
        self.run.outcomes.watch(self.normal_ms)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the module; edgeAgent starts it again at once, so the fault ends with the kill."""
        with self.run.control:  # ours to restart, not the harness's edgeAgent
            code = self.run.kill(sig)
            self.cleared()
            self.notes.append(f"exit {code}")
            self.run.restart()


# --- the scenarios ----------------------------------------------------------------------------------


def broker_restart(f: Faults) -> None:
    def inject() -> None:
        f.run.edge.restart_broker(MODEL)  # SIGTERM: Mosquitto saves sessions and queues
        f.cleared()

    f.spaced(f.sizes.repeats, inject)


def broker_kill(f: Faults) -> None:
    """Mosquitto saves nothing between clean stops (autosave_interval 0), so it comes back without the module's session:
    its subscriptions are gone and it drops what is routed to the module until the module subscribes again (the SDK
    does not by itself). edgeHub keeps messages per route endpoint whatever the subscriptions: the "in module" share
    is the module's, the rest the stand-in's."""

    def inject() -> None:
        f.run.edge.restart_broker(MODEL, kill=True)  # SIGKILL: what it had not saved is gone
        f.cleared()

    f.spaced(1, inject)


def hub_restart(f: Faults) -> None:
    """edgeHub restarted (every broker at once: the sensor's and the model's) xN mid-stream."""

    def inject() -> None:
        f.run.edge.restart_hub()
        f.cleared()

    f.spaced(f.sizes.repeats, inject)


def token_ttl(f: Faults) -> None:
    """No fault injected: the modules' SAS tokens live TOKEN_TTL_S, so their SDKs renew and reconnect all along."""


def module_kill(f: Faults) -> None:
    f.spaced(f.sizes.repeats, f.kill)


def kill_at_start(f: Faults) -> None:
    """Kill mid-stream; while it is down a backlog queues for it; kill the new process the moment it is ready
    (it has just been handed that backlog), then let the next one finish."""

    def inject() -> None:
        with f.run.control:
            f.kill()
            f.run.kill()
            f.notes.append("killed again right after 'ready'")
            f.run.restart()

    f.spaced(1, inject)


def sigterm(f: Faults) -> None:
    """SIGTERM while the module has a batch and a backlog in hand: the backlog is made first, with SIGSTOP (the sensor
    paused meanwhile, so that the module's backlog is all there is), so that the SIGTERM lands mid-batch."""

    def inject() -> None:
        f.run.edge.signal_module(MODEL, signal.SIGSTOP)
        time.sleep(2)  # ~2 s of the stream queue up for it
        if not f.run.sensor_sending(False):
            f.notes.append("the sensor did not confirm the pause")
        f.run.edge.signal_module(MODEL, signal.SIGCONT)
        time.sleep(0.05)  # it is scoring the backlog now
        f.kill(signal.SIGTERM)
        f.run.sensor_sending(True)

    f.spaced(1, inject)


def sigterm_restart(f: Faults) -> None:
    """edgeAgent's own stop (`iotedge restart`, a deployment update, a reboot): SIGTERM under a steady stream, the
    module started again at once; what is routed to it while it is down must wait for it, as edgeHub keeps it."""
    f.spaced(f.sizes.repeats, lambda: f.kill(signal.SIGTERM))


def sigstop(f: Faults) -> None:
    def inject() -> None:
        f.run.edge.signal_module(MODEL, signal.SIGSTOP)
        time.sleep(f.sizes.stop_s)
        f.run.edge.signal_module(MODEL, signal.SIGCONT)
        f.cleared()

    f.spaced(1, inject)


def outage(f: Faults) -> None:
    def inject() -> None:
        f.run.edge.restart_broker(MODEL, down_s=f.sizes.outage_s)
        f.cleared()

    f.spaced(1, inject)


def swap_then_kill(f: Faults) -> None:
    """reloadModel to another model, then a kill: which model answers after the restart?"""

    def inject() -> None:
        status, payload = f.run.edge.invoke(MODEL, "reloadModel", {"modelDir": str(f.swap_model)}, timeout=60)
        f.notes.append(f"reloadModel {status}")
        if status == 200:  # wait (bounded) for predictions of the new model
            f.cleared()
            f.run.outcomes.wait_fresh(f.sizes.recover_s)
            f.notes.append(f"model before kill: {model_name(f.run.outcomes.resumed)}")
        else:
            f.notes.append(str(payload)[:200])
        f.kill()

    f.spaced(1, inject)
    f.notes.append(f"model after restart: {model_name(f.run.outcomes.resumed)}")


POISON_ID = "poison-1"
POISON_TEMPERATURE = -273.15
# A scoring script that dies on one reading, as a segfault in a native library or an out-of-memory kill would.
POISON_SCRIPT = f"""
import os, signal
from app.model import score as default
INPUT_FORMAT = "ndarray"
init, set_threshold = default.init, default.set_threshold
def run(rows):
    if (rows[:, 0] == {POISON_TEMPERATURE}).any():
        os.kill(os.getpid(), signal.SIGKILL)
    return default.run(rows)
"""


def poison(f: Faults) -> None:
    """An input that kills the module whenever it is scored, fed mid-stream: the module dies with it REPLAY_LIMIT times
    (restarted each time), then sets it aside with a `poison_input` error record; every other input keeps its outcome."""

    def inject() -> None:
        machine = {"temperature": POISON_TEMPERATURE, "pressure": 1.0}
        reading = {"machine": machine, "ambient": {"temperature": 21.0, "humidity": 25}}
        f.run.feed(POISON_ID, orjson.dumps(reading))
        f.cleared()

    f.spaced(1, inject)


def model_name(msg: Any) -> str:
    body = msg.json_body() if msg is not None else None
    return str(body.get("model")) if isinstance(body, dict) else "?"


def second_model(directory: Path) -> Path:
    """A logistic regression registered as `temperature-lr`: a model to swap to, told apart by name."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from app.model.register import register
    from app.model.simulator import FEATURES, LABELS, training_data

    X, y = training_data(2000, 11)
    source = directory / "lr.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), source)
    model_dir = directory / "model"
    register(source, model_dir, name="temperature-lr", features=list(FEATURES), labels=list(LABELS))
    return model_dir


@dataclass(frozen=True)
class Scenario:
    title: str
    inject: Callable[[Faults], None]
    broker: bool  # a broker fault: the SDK may sit out a 20 s reconnect back-off, so the end waits longer for stragglers
    token_ttl: int | None = None  # the modules' SAS token lifetime (LocalEdge token_ttl); None: the SDK's 3600 s


TOKEN_TTL_S = 60
SCENARIOS = {
    "broker-restart": Scenario("broker restart (SIGTERM, start) xN mid-stream", broker_restart, broker=True),
    "broker-kill": Scenario("broker SIGKILL, start again", broker_kill, broker=True),
    "hub-restart": Scenario("edgeHub restart (every broker) xN mid-stream", hub_restart, broker=True),
    "token-ttl": Scenario(f"SAS tokens of {TOKEN_TTL_S} s: renewed all along", token_ttl, broker=True, token_ttl=TOKEN_TTL_S),
    "module-kill": Scenario("module SIGKILL xN mid-stream, restarted", module_kill, broker=False),
    "kill-at-start": Scenario("module SIGKILL right after its start", kill_at_start, broker=False),
    "sigterm": Scenario("module SIGTERM mid-batch, restarted", sigterm, broker=False),
    "sigterm-restart": Scenario("module SIGTERM xN mid-stream, restarted", sigterm_restart, broker=False),
    "sigstop": Scenario("module SIGSTOP, then SIGCONT", sigstop, broker=False),
    "outage": Scenario("edgeHub (its broker) down, then back", outage, broker=True),
    "swap-kill": Scenario("reloadModel, then module SIGKILL", swap_then_kill, broker=False),
    "poison": Scenario("an input that kills the module whenever it is scored", poison, broker=False),
}
MODULE_QUIET_S = 10.0  # at the end of a module fault: the module is connected, stragglers come within this


def run_scenario(
    name: str, sizes: Sizes, *, module_source: Path | None = None, keep: bool = False, verbose: bool = False
) -> Result:
    """One scenario on a fresh local edge; every process is stopped by PID before it returns (or raises)."""
    started = time.monotonic()
    scenario = SCENARIOS[name]
    quiet_s = sizes.quiet_s if scenario.broker else min(sizes.quiet_s, MODULE_QUIET_S)
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as scratch:
        env = [] if sizes.watchdog_s is None else [f"{MODEL}:WATCHDOG_S={sizes.watchdog_s:g}"]
        swap_model = None
        if name == "swap-kill":
            swap_model = second_model(Path(scratch))
            env.append(f"{MODEL}:MODEL_ROOTS={scratch}")  # reloadModel may only point into MODEL_ROOTS
        if name == "poison":
            script = Path(scratch) / "poison_score.py"
            script.write_text(POISON_SCRIPT, encoding="utf-8")
            env.append(f"{MODEL}:SCORE_SCRIPT={script}")
        run = EdgeRun(
            rate=sizes.rate,
            env=env,
            module_source=module_source,
            trace=True,
            keep=keep,
            verbose=verbose,
            token_ttl=scenario.token_ttl,
        )
        faults = Faults(run, sizes, swap_model)
        error = None
        try:
            run.start()
            scenario.inject(faults)
            run.end_stream(sizes.messages, sizes.messages / max(sizes.rate, 1.0) * 2 + 60)
            run.settle(quiet_s, sizes.recover_s + quiet_s + 60)
        except EdgeError as exc:  # a module that did not come back, a method that timed out: in the table
            error = str(exc).splitlines()[0][:300]
        finally:
            run.stop()
    result = Result(name, run.account(), faults.recoveries, time.monotonic() - started, faults.notes, error=error)
    result.evidence = evidence(run.log)
    result.notes += run.exits
    if name == "swap-kill":
        result.notes.append(f"predictions by model: {dict(run.outcomes.models)}")
    if name == "poison":
        result.notes.append(f"error records by code: {dict(run.outcomes.codes)}")
    if scenario.token_ttl is not None:
        result.notes.append(f"connects per module (renewals + 1): {run.connects}")
    if keep:
        result.notes.append(f"run dir {run.edge.run_dir}")
    return result


# --- output -----------------------------------------------------------------------------------------

COLUMNS = ("scenario", "sent", "predicted", "errored", "lost", "in module", "duplicated", "resumed s", "normal s", "run s")


def row(r: Result) -> list[str]:
    a = r.accounting

    def seconds(value: float | None) -> str:
        return "-" if not r.recoveries else "never" if value is None else f"{value:.1f}"

    in_module = "-" if a.lost_delivered is None else str(a.lost_delivered)
    cells = (r.scenario, a.sent, a.predicted, a.errored, a.lost, in_module, a.duplicated)
    return [*(str(c) for c in cells), seconds(r.resumed_s), seconds(r.normal_s), f"{r.seconds:.0f}"]


def print_table(results: list[Result]) -> None:
    rows = [list(COLUMNS), *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for i, cells in enumerate(rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        details = [*r.notes]
        if r.error:
            details.append(f"ERROR: {r.error}")
        details.append("log: " + ", ".join(f"{label} x{e['count']}" for label, e in r.evidence.items()))
        if r.accounting.errors_by_code:
            details.append(f"errors {r.accounting.errors_by_code}")
        print(f"  {r.scenario}: {SCENARIOS[r.scenario].title}; " + "; ".join(details))


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated scenarios (default all): {', '.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help="CI-sized: fewer, shorter faults on shorter streams")
    p.add_argument("--messages", type=int, default=None, help="sensor messages per scenario, at least (default 2000, quick 300)")
    p.add_argument("--rate", type=float, default=None, help="sensor messages per second (default 200, quick 100)")
    p.add_argument("--repeats", type=int, default=None, help="faults in the xN scenarios (default 5, quick 2)")
    p.add_argument("--outage", type=float, default=None, help="edgeHub outage in seconds (default 30, quick 5)")
    p.add_argument("--stop", type=float, default=None, help="SIGSTOP length in seconds (default 10, quick 3)")
    p.add_argument("--recover", type=float, default=None, help="bound on each wait for recovery (default 180, quick 60)")
    p.add_argument("--watchdog", type=float, default=None, help="the module's WATCHDOG_S (default: its own, 120; quick 30)")
    p.add_argument(
        "--module-source", type=Path, default=None, help="run the inference module from this tree (its app/, edgekit/, model/)"
    )
    p.add_argument("--keep", action="store_true", help="keep each scenario's run directory (logs, broker trace)")
    p.add_argument("--verbose", action="store_true", help="module logs on stderr")
    p.add_argument("--json", action="store_true", help="one JSON line per scenario, then a summary line")
    args = p.parse_args(argv)
    unknown = [s for s in args.only.split(",") if s and s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    sizes = QUICK if args.quick else FULL
    given: dict[str, float | None] = {"messages": args.messages, "rate": args.rate, "repeats": args.repeats}
    given |= {"outage_s": args.outage, "stop_s": args.stop, "recover_s": args.recover, "watchdog_s": args.watchdog}
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    names = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    interrupt_on_signals()
    started = time.monotonic()
    results: list[Result] = []
    try:
        for name in names:
            if not args.json:
                print(f"... {name}: {SCENARIOS[name].title}", file=sys.stderr, flush=True)
            result = run_scenario(name, sizes, module_source=args.module_source, keep=args.keep, verbose=args.verbose)
            results.append(result)
            if args.json:
                print(dump(result.to_json()), flush=True)
    except KeyboardInterrupt:
        print("interrupted: every process was stopped", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    if args.json:
        print(dump({"summary": True, "sizes": sizes.__dict__, "seconds": round(elapsed, 1)}))
    else:
        print(f"\nfaults: {len(names)} scenarios, {sizes.messages}+ messages each at {sizes.rate:g}/s, {elapsed:.0f} s")
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
