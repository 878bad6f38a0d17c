"""What bench/faults.py, bench/overload.py and bench/soak.py share: the deployment template on a local edge, every
outcome that reaches `$upstream` counted by the id of the input it answers, and the module process's memory and
descriptors.

Accounting is by id, never by totals: each sensor message (or fed input) must have exactly one outcome upstream,
a prediction or an error record, whose correlation id is the input's message id. `lost` = inputs with no outcome,
`duplicated` = inputs with more than one. With `trace=True` the module's broker logs every packet, and a lost id
is split into "delivered to the module" (Mosquitto handed it over, the SDK acknowledged it, the module lost it)
and "never delivered" (lost before the module: in the broker, or dropped by Mosquitto for want of a subscription).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from localedge.agent import Backoff
from localedge.deployment import DEFAULT_MANIFEST, load_deployment
from localedge.edge import DEVICE_ID, LocalEdge
from localedge.processes import ModuleProcess
from localedge.upstream import UpstreamMessage
from localedge.wire import decode_properties, input_topic

SENSOR, MODEL = "tempSensor", "inference"
# edgeAgent's back-off, a tenth of it: a module that exited on its own is restarted after 1 s, 2 s, 4 s ... (30 s at most)
BACKOFF = Backoff().scaled(0.1)

# Module log lines worth counting after a run: (label, text in the line).
EVIDENCE = (
    ("disconnected", "edgeHub connection: disconnected"),
    ("connected", "edgeHub connection: connected"),
    ("send retried", "failed ("),
    ("output lost", "output message lost after"),
    ("SDK dropped an input", "No input message inbox"),
    ("SSLEOFError", "SSLEOFError"),
    ("traceback", "Traceback"),
    ("shutdown timed out", "shutdown timed out"),
    ("ready", " ready:"),
    ("stopped", " stopped: messages="),
)
DELIVERY = re.compile(r"Sending PUBLISH to (\S+) \(d(\d), q\d, r\d, m\d+, '([^']*)'")


# --- outcomes and accounting ------------------------------------------------------------------------


class Outcomes:
    """Every outcome upstream, by the id of its input; the local edge calls it for each upstream message.

    Thread-safe (the hub's router threads call it, under the recorder's lock: keep it cheap). `watch()` +
    `wait_fresh()` measure recovery: the first outcome of an input the hub routed after a given moment (and, with
    `within_ms`, that took no longer than that: the module has caught up).
    """

    def __init__(self, keep_times: bool = False) -> None:
        self._cond = threading.Condition()
        self.count: collections.Counter[str] = collections.Counter()  # input id -> outcomes
        self.predicted = self.errored = self.total = 0
        self.codes: collections.Counter[str] = collections.Counter()  # error records by code
        self.models: collections.Counter[str] = collections.Counter()  # predictions by model name
        self.first_at: dict[str, float] | None = {} if keep_times else None  # input id -> first outcome's arrival
        self.kinds: dict[str, str] = {}  # with keep_times: input id -> its first outcome, "predicted" or the error code
        self._latencies: list[tuple[float, float]] = []  # (arrival, ms) of routed inputs, since take_latencies()
        self._since: float | None = None
        self._within_ms = float("inf")
        self.resumed: UpstreamMessage | None = None  # the first outcome of an input routed after watch()
        self.fresh: UpstreamMessage | None = None  # the first such outcome within `within_ms`

    def __call__(self, msg: UpstreamMessage) -> None:
        if not (msg.predictions or msg.errors):
            return
        body = msg.json_body()
        doc = body if isinstance(body, dict) else {}
        kind = str(doc.get("code")) if msg.errors else "predicted"
        # One output per input carries the input's id as correlation id; an aggregate (AGGREGATE=true) carries
        # none, and each of its items names its input (`messageId`).
        cids = [msg.correlation_id] if msg.correlation_id is not None else aggregated_ids(doc)
        if not cids:
            return
        with self._cond:
            for cid in cids:
                self.count[cid] += 1
                self.total += 1
                if msg.errors:
                    self.errored += 1
                    self.codes[kind] += 1
                else:
                    self.predicted += 1
                    self.models[str(doc.get("model"))] += 1
                if self.first_at is not None and cid not in self.first_at:
                    self.first_at[cid] = msg.arrived
                    self.kinds[cid] = kind
            if msg.latency_ms is not None:  # the first outcome of an input the hub routed
                self._latencies.append((msg.arrived, msg.latency_ms))
                routed_at = msg.arrived - msg.latency_ms / 1000
                if self._since is not None and self.fresh is None and routed_at >= self._since:
                    self.resumed = self.resumed or msg
                    if msg.latency_ms <= self._within_ms:
                        self.fresh = msg
            self._cond.notify_all()

    def watch(self, within_ms: float = float("inf")) -> float:
        """From now: wait_fresh() waits for the first outcome of an input routed after now (returned), within `within_ms`."""
        with self._cond:
            self._since, self._within_ms, self.resumed, self.fresh = time.perf_counter(), within_ms, None, None
            return self._since

    def wait_fresh(self, timeout: float) -> tuple[float | None, float | None]:
        """Seconds from watch() to the first outcome of an input routed after it (service resumed) and to the first such
        outcome within `within_ms` (back to normal); None for what did not happen within `timeout` (each)."""
        with self._cond:
            if self._cond.wait_for(lambda: self.resumed is not None, timeout):
                self._cond.wait_for(lambda: self.fresh is not None, timeout)
            since = self._since or 0.0
            return tuple(None if m is None else m.arrived - since for m in (self.resumed, self.fresh))  # type: ignore[return-value]

    def wait_total(self, total: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.total >= total, timeout)

    def take_latencies(self) -> list[tuple[float, float]]:
        """(arrival, ms) of routed inputs' first outcomes since the last call."""
        with self._cond:
            taken, self._latencies = self._latencies, []
            return taken

    def missing(self, ids: Iterable[str]) -> int:
        with self._cond:
            return sum(1 for i in ids if i not in self.count)


def aggregated_ids(doc: dict[str, Any]) -> list[str]:
    """The input ids an aggregate `{"predictions": [{"messageId": ...}, ...]}` answers (none for anything else)."""
    items = doc.get("predictions")
    if not isinstance(items, list):
        return []
    return [item["messageId"] for item in items if isinstance(item, dict) and isinstance(item.get("messageId"), str)]


@dataclass
class Accounting:
    """Inputs against their outcomes upstream, by id."""

    sent: int
    predicted: int
    errored: int
    lost: int  # inputs with no outcome
    duplicated: int  # inputs with more than one outcome
    unexpected: int  # outcomes whose id no input had (should never happen)
    lost_delivered: int | None = None  # of the lost: delivered to the module (from the broker trace), else None
    errors_by_code: dict[str, int] = field(default_factory=dict)
    lost_sample: list[str] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        return self.lost == self.duplicated == self.unexpected == 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def account(sent_ids: Iterable[str], outcomes: Outcomes, delivered: set[str] | None = None) -> Accounting:
    ids = set(sent_ids)
    with outcomes._cond:
        counts = dict(outcomes.count)
        predicted, errored, codes = outcomes.predicted, outcomes.errored, dict(outcomes.codes)
    lost = [i for i in ids if i not in counts]
    return Accounting(
        sent=len(ids),
        predicted=predicted,
        errored=errored,
        lost=len(lost),
        duplicated=sum(1 for i, n in counts.items() if n > 1 and i in ids),
        unexpected=sum(1 for i in counts if i not in ids),
        lost_delivered=None if delivered is None else sum(1 for i in lost if i in delivered),
        errors_by_code=codes,
        lost_sample=sorted(lost)[:5],
    )


def delivered_ids(broker_log: Path, client_id: str) -> set[str]:
    """Message ids Mosquitto sent to `client_id` (a traced broker's log: `Sending PUBLISH to <client> ...`)."""
    found: set[str] = set()
    try:
        with open(broker_log, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                match = DELIVERY.search(line)
                if match and match[1] == client_id:
                    parts = match[3].split("/")
                    if len(parts) > 6 and parts[4] == "inputs":
                        mid = decode_properties(parts[6]).get("$.mid")
                        if mid:
                            found.add(mid)
    except OSError:
        pass
    return found


def connects(broker_log: Path, client_id: str) -> int:
    """How often `client_id` connected, from Mosquitto's log (`New client connected from ... as <client> (...`)."""
    marker = f" as {client_id} ("
    try:
        with open(broker_log, encoding="utf-8", errors="replace") as lines:
            return sum(1 for line in lines if "New client connected" in line and marker in line)
    except OSError:
        return 0


def evidence(log_text: str) -> dict[str, dict[str, Any]]:
    """Counts (and the first example) of the notable lines in a module's log."""
    found: dict[str, dict[str, Any]] = {}
    for line in log_text.splitlines():
        for label, text in EVIDENCE:
            if text in line:
                entry = found.setdefault(label, {"count": 0, "first": line[:300]})
                entry["count"] += 1
    return found


# --- the module's process -------------------------------------------------------------------------


def proc_stats(pid: int) -> tuple[float, int] | None:
    """(RSS in MB from /proc/PID/status VmRSS, open descriptors in /proc/PID/fd); None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc/PID/stat; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15 of stat
    except (OSError, IndexError, ValueError):
        return None


def memory_limit_mb(manifest: Path = DEFAULT_MANIFEST, module: str = MODEL) -> float | None:
    """The module's container memory limit in the deployment template (createOptions.HostConfig.Memory)."""
    doc = json.loads(manifest.read_text())
    modules = doc["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    memory = modules.get(module, {}).get("settings", {}).get("createOptions", {}).get("HostConfig", {}).get("Memory")
    return memory / 2**20 if isinstance(memory, int | float) else None


def linear_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None for fewer than two distinct x."""
    if len(points) < 2:
        return None
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return None if sxx == 0 else sum((x - mx) * (y - my) for x, y in points) / sxx


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# --- the edge ---------------------------------------------------------------------------------------


def module_source_env(source: Path | None) -> list[str]:
    """--env values that run the inference module from another tree (e.g. `git archive HEAD app edgekit model`).

    PYTHONSAFEPATH keeps `python -m app` from importing the repository's own app/ from its working directory.
    """
    if source is None:
        return []
    return [f"{MODEL}:PYTHONPATH={source.resolve()}", f"{MODEL}:PYTHONSAFEPATH=1"]


class EdgeRun:
    """deployment.template.json on a local edge: tempSensor -> inference -> $upstream, every outcome counted by id.

    The sensor sends at `rate` messages/s without end (or `count`), so faults can be spaced by recovery rather
    than by a fixed schedule; end_stream() stops it. The local edge's supervisor applies `restartPolicy: always`
    with edgeAgent's back-off (BACKOFF): an inference module that exits on its own (a crash, its watchdog's
    verdict) is started again with the same environment; the harness's own kills and restarts hold `control` (and
    the edge's kill_module() holds the module from its supervisor). `on_upstream` sees every upstream message
    after `outcomes`. stop() stops every process by PID (also on failure, and at exit) and removes the run
    directory unless `keep`.
    """

    def __init__(
        self,
        *,
        rate: float,
        count: int = -1,
        send: bool = True,
        env: Sequence[str] = (),
        module_source: Path | None = None,
        trace: bool = False,
        keep: bool = False,
        verbose: bool = False,
        keep_times: bool = False,
        backoff: Backoff = BACKOFF,
        manifest: Path | None = None,
        token_ttl: int | None = None,
        save_sessions: bool = True,
        on_upstream: Callable[[UpstreamMessage], None] | None = None,
    ) -> None:
        # An idle sensor still ticks: at MessageDelay 0 (as fast as it can) it would spin a core doing nothing.
        delay = 1.0 if not send else 0.0 if rate <= 0 else 1 / rate
        sensor_env = [
            f"{SENSOR}:MessageCount={count}",
            f"{SENSOR}:MessageDelay={delay:.6f}",
            f"{SENSOR}:SendData={'true' if send else 'false'}",
        ]
        self.outcomes = Outcomes(keep_times)
        self.edge = LocalEdge(
            load_deployment(manifest, [*sensor_env, *module_source_env(module_source), *env]),
            on_upstream=self.outcomes if on_upstream is None else _both(self.outcomes, on_upstream),
            control=False,  # a developer's own `make edge` keeps its control socket
            keep_run_dir=True,  # read after stop(), then removed here unless `keep`
            verbose=verbose,
            trace_brokers=trace,
            backoff=backoff,
            token_ttl=token_ttl,
            save_sessions=save_sessions,
        )
        self.keep, self.trace = keep, trace
        self._ids: set[str] = set()
        self.log = ""  # the inference module's log, every incarnation, after stop()
        self.delivered: set[str] | None = None
        self.connects: dict[str, int] = {}  # module -> its client's connects, from its broker's log (after stop())
        self.control = threading.RLock()  # held by whoever kills or restarts the module

    def start(self) -> EdgeRun:
        self.edge.start()
        return self

    @property
    def exits(self) -> list[str]:
        """The module's own exits (not the harness's kills), as the edge's supervisor handled them."""
        supervisor = self.edge.supervisor
        records = supervisor.exits if supervisor is not None else []
        return [f"exited by itself (code {e.code}), {'restarted' if e.restarted else 'not restarted'}" for e in records]

    def __enter__(self) -> EdgeRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop everything (by PID), read the logs and the broker trace, remove the run directory."""
        with signals_held(), self.control:  # a second Ctrl-C must not cut the stop short; no restart meanwhile
            self.edge.stop()
        self.sent_ids()  # the hub's record outlives its links
        run_dir = self.edge.run_dir
        if run_dir is None:
            return
        log_file = run_dir / "logs" / f"{MODEL}.log"
        self.log = log_file.read_text(errors="replace") if log_file.exists() else ""
        self.connects = {name: connects(b.log_path, f"{DEVICE_ID}/{name}") for name, b in self.edge.brokers.items()}
        if self.trace and MODEL in self.edge.brokers:
            self.delivered = delivered_ids(self.edge.brokers[MODEL].log_path, f"{DEVICE_ID}/{MODEL}")
        if not self.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    # --- the stream ---

    @property
    def model(self) -> ModuleProcess:
        return self.edge.modules[MODEL]

    @property
    def sent(self) -> int:
        assert self.edge.hub is not None
        return self.edge.hub.received[SENSOR]

    def sent_ids(self) -> set[str]:
        """Every sensor message id the hub routed so far (merged: the hub keeps the last 100,000; call at least that often)."""
        if self.edge.hub is not None:
            self._ids.update(self.edge.hub.message_ids(SENSOR))
        return self._ids

    def wait_sent(self, count: int, timeout: float) -> bool:
        assert self.edge.hub is not None
        return self.edge.hub.wait_received(SENSOR, count, timeout)

    def sensor_sending(self, on: bool, timeout: float = 15.0) -> bool:
        """Start or pause the sensor through its twin (SendData), as an operator would; True once it reported it."""
        self.edge.patch_desired(SENSOR, {"SendData": on})
        return self.edge.wait_reported(SENSOR, lambda r: r.get("SendData") is on, timeout) is not None

    def feed(self, message_id: str, body: bytes, input_name: str = "amlInput") -> None:
        """Send one input of our own to the inference module, as edgeHub would route it; accounted like a sensor's."""
        assert self.edge.hub is not None
        props = {"$.mid": message_id, "$.ct": "application/json", "$.ce": "utf-8", "$.cdid": DEVICE_ID, "$.cmid": "feeder"}
        self.edge.hub.links[MODEL].publish(input_topic(DEVICE_ID, MODEL, input_name, props), body)
        self._ids.add(message_id)

    def end_stream(self, at_least: int, timeout: float) -> None:
        """Wait (bounded) until `at_least` messages were sent, pause the sensor, wait until its last sends are routed."""
        self.wait_sent(at_least, timeout)
        self.sensor_sending(False)
        quiet_for(lambda: self.sent, 1.0, 15.0)  # sends that were in flight when it paused

    def settle(self, quiet_s: float, timeout: float) -> None:
        """Wait until every routed input has an outcome, or no new outcome came for `quiet_s` (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        ids = self.sent_ids()
        while time.monotonic() < deadline:
            if self.outcomes.missing(ids) == 0:
                return
            before = self.outcomes.total
            self.outcomes.wait_total(before + 1, min(quiet_s, max(0.0, deadline - time.monotonic())))
            if self.outcomes.total == before:
                return  # quiet: whatever is missing is not coming

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Signal the inference module and wait (bounded) for it to exit; its exit code. Hold `control` until restart()."""
        with self.control:
            return self.edge.kill_module(MODEL, sig)

    def restart(self) -> ModuleProcess:
        """Start the (killed) inference module again with the same environment, as edgeAgent would."""
        with self.control:
            return self.edge.restart_module(MODEL)

    def account(self) -> Accounting:
        return account(self.sent_ids(), self.outcomes, self.delivered)


Observer = Callable[[UpstreamMessage], None]


def _both(first: Observer, second: Observer) -> Observer:
    def both(msg: UpstreamMessage) -> None:
        first(msg)
        second(msg)

    return both


def quiet_for(value: Any, quiet_s: float, timeout: float) -> None:
    """Wait until `value()` has not changed for `quiet_s` (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.1)
        now = value()
        if now != last:
            last, since = now, time.monotonic()


class Sampler:
    """Samples a process's RSS and descriptors every `interval` seconds on a thread; `pid()` may change (restarts)."""

    def __init__(self, pid: Any, interval: float) -> None:
        self._pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, int]] = []  # (t since start, RSS MB, fds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = proc_stats(self._pid())
            if stats is not None:
                self.samples.append((time.monotonic() - self.started, *stats))
            self._stop.wait(self.interval)

    @property
    def peak_rss_mb(self) -> float:
        return max((s[1] for s in self.samples), default=0.0)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP only say "stopping" meanwhile (main thread only; elsewhere a no-op)."""

    def stopping(_signum: int, _frame: Any) -> None:
        print("stopping: every process is being stopped", file=sys.stderr, flush=True)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stopping) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt_on_signals() -> None:
    """SIGTERM/SIGHUP end a run like Ctrl-C: the `finally` of each bench stops every process it started."""

    def raise_interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)


def dump(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
