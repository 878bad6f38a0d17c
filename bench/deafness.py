"""`python -m bench.deafness`: does the module go deaf when its edgeHub restarts under a live stream?

The reproduction of a reviewer's report: with azure-iot-device 2.14 (paho-mqtt 1.6.1), restarting
the module's broker under a steady stream left the module deaf: paho's network thread dead on
`ssl.SSLEOFError`, the SDK still "connected", no prediction out, direct methods timing out, the
process alive. See app/edgehub/watchdog.py and bench/SDK-EVALUATION.md (the numbers).

Each run: a fresh Mosquitto (localedge.broker.Broker, TLS, persistence) with the module's twin served
(localedge.twin.Twin), the module as a real process (`python -m app`, HTTP_PORT=0, the given
interpreter, its journal in a scratch directory), a steady stream of inputs with unique message ids
(a localedge Link: persistent session, QoS 1, kept across broker restarts). Then K broker restarts
(stop, start on the same address and persistence), each once outcomes flow again (`--gap` seconds
later; 0: at once, while the module still works off what queued during the outage, which is when
it goes deaf most); after each, the run waits until an input sent after the broker came back gets
its outcome (by correlation id) within `--bound` seconds. If none does, the module is deaf: the run
records whether the process lives, what its log says (the SDK's connection lines, a dead thread's
traceback: SSLEOFError?), and a direct method's answer (504 = nobody listening).

`--watchdog-s W` plays edgeAgent too: when the module exits it is started again, and the run
measures broker stop -> watchdog verdict -> exit -> outcomes flowing again, then goes on with the
remaining restarts. The watchdog is wired in by this file's `--child` (wrapping EdgeHubModule, for
trees whose run_module does not wire it), or by the module itself with `--wired` (run_module reads
WATCHDOG_S). `--python` runs the module on another interpreter (e.g. a venv with azure-iot-device
2.15.0rc1; PYTHONPATH points at `--repo`, the source tree), `--tls12` caps its TLS at 1.2 as 2.14
does (2.15 negotiates 1.3 with Mosquitto), `--env NAME=VALUE` sets a module setting.

Output: one line per restart while it runs, a table, and a JSON summary (every run's details) as the
last line. Not a test: a run takes about a minute (a healthy restart costs the SDK's reconnect, ~1 s
or its 10 s retry interval; a deaf one `--bound` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEVICE, MODULE, INPUT = "deafness-device", "inference", "amlInput"
READY_TIMEOUT_S = 90.0
METHOD_TIMEOUT_S = 5.0
VERDICT = re.compile(r"edgeHub (connection is )?deaf")  # this file's child, or run_module's own wiring
TRACEBACK_END = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")
REPO = Path(__file__).resolve().parent.parent


# --- the module side: `python -m bench.deafness --child` -----------------------------------------


def child_main() -> int:
    """`python -m app` with the watchdog wired in (WATCHDOG_S; 0: off) by wrapping EdgeHubModule's methods,
    for trees whose run_module does not wire it (when EdgeHubModule.start sets `watchdog` itself, it adds none).

    On a deaf verdict: log it, status `unhealthy` (/ready 503), then stop without the graceful
    steps that need a working connection (the stopping report, the unsubscribe), client shutdown
    bounded at 2 s, and exit 3 (the IoT Edge runtime restarts the module). `DEAFNESS_TLS12=1` caps TLS at 1.2.
    """
    from app.commands import main as app_main
    from app.core.control import Controller
    from app.edgehub.module import EdgeHubModule
    from app.edgehub.watchdog import Watchdog

    log = logging.getLogger("app.watchdog")
    limit_s = float(os.environ.get("WATCHDOG_S", "120"))
    deaf: list[str] = []
    original_start = EdgeHubModule.start
    original_report_stopping = EdgeHubModule.report_stopping
    original_stop_receiving = EdgeHubModule.stop_receiving
    original_shutdown = EdgeHubModule.shutdown

    async def start(self: Any, *args: Any, **kwargs: Any) -> None:
        await original_start(self, *args, **kwargs)
        if getattr(self, "watchdog", None) is not None:
            return  # the module wires its own
        controller = next(a for a in (*args, *kwargs.values()) if isinstance(a, Controller))

        def on_deaf(reason: str) -> None:
            deaf.append(reason)
            log.error("edgeHub deaf: %s; exiting so that the IoT Edge runtime restarts the module", reason)
            controller.set_state("unhealthy")
            os.kill(os.getpid(), signal.SIGTERM)  # run_module's stop path (stop_on_signals)

        self.watchdog = Watchdog(self.client, limit_s, on_deaf)
        await self.watchdog.start()

    async def report_stopping(self: Any) -> None:
        if not deaf:
            await original_report_stopping(self)

    async def stop_receiving(self: Any) -> None:
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None:
            await watchdog.close()  # the graceful stop disconnects on purpose
        if not deaf:
            await original_stop_receiving(self)

    async def shutdown(self: Any) -> None:
        if deaf:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.client.shutdown()
            return
        await original_shutdown(self)

    if os.environ.get("DEAFNESS_TLS12") == "1":
        cap_tls_at_1_2()
    EdgeHubModule.start = start  # type: ignore[method-assign]
    EdgeHubModule.report_stopping = report_stopping  # type: ignore[method-assign]
    EdgeHubModule.stop_receiving = stop_receiving  # type: ignore[method-assign]
    EdgeHubModule.shutdown = shutdown  # type: ignore[method-assign]
    code = app_main([])
    return 3 if deaf else code


def cap_tls_at_1_2() -> None:
    """Make the SDK's MQTT TLS context offer TLS 1.2 at most (2.15 builds it with PROTOCOL_TLS_CLIENT: 1.3 too)."""
    import ssl

    from azure.iot.device.common.mqtt_transport import MQTTTransport

    original = MQTTTransport._create_ssl_context

    def create_ssl_context(self: Any) -> ssl.SSLContext:
        context = original(self)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    MQTTTransport._create_ssl_context = create_ssl_context  # type: ignore[method-assign]


# --- the harness ----------------------------------------------------------------------------------


class Stream:
    """Inputs at a steady rate through a persistent Link; outcomes recorded by correlation id."""

    def __init__(self, broker: Any, run: int, rate: float) -> None:
        from localedge.link import Link
        from localedge.wire import outputs_filter

        self.run, self.rate = run, rate
        self.sent: dict[str, float] = {}  # message id -> when it was published (monotonic)
        self.outcomes: dict[str, float] = {}  # correlation id -> first outcome's arrival
        self.duplicates = 0
        self.latest_answered = float("-inf")  # the send time of the latest-sent input that has an outcome
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.link = Link(broker, f"deafness-stream-{run}", self._on_output).connect()
        self.link.subscribe(outputs_filter(DEVICE, MODULE))
        self._thread = threading.Thread(target=self._send_loop, name="deafness-stream", daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _on_output(self, message: Any, _arrived: float) -> None:
        cid = message.correlation_id
        with self._cond:
            if cid in self.outcomes:
                self.duplicates += 1
                return
            self.outcomes[cid] = time.monotonic()
            self.latest_answered = max(self.latest_answered, self.sent.get(cid, float("-inf")))
            self._cond.notify_all()

    def _send_loop(self) -> None:
        from localedge.wire import input_topic

        seq, due = 0, time.monotonic()
        body = json.dumps(
            {"machine": {"temperature": 40.0, "pressure": 3.2}, "ambient": {"temperature": 21.0, "humidity": 25}}
        ).encode()
        while not self._stop.is_set():
            mid = f"r{self.run}-{seq}"
            with self._cond:
                self.sent[mid] = time.monotonic()
            props = [("$.mid", mid), ("$.ct", "application/json"), ("$.ce", "utf-8")]
            self.link.publish(input_topic(DEVICE, MODULE, INPUT, props), body)
            seq += 1
            due += 1.0 / self.rate
            self._stop.wait(max(0.0, due - time.monotonic()))  # pacing, not synchronisation

    def wait_answered_after(self, since: float, timeout: float, abort: threading.Event | None = None) -> float | None:
        """When the first outcome of an input sent at or after `since` arrived, or None after `timeout`
        (or once `abort` is set: see poke())."""
        aborted = abort.is_set if abort is not None else lambda: False
        with self._cond:
            if not self._cond.wait_for(lambda: self.latest_answered >= since or aborted(), timeout):
                return None
            if self.latest_answered < since:
                return None
            return min(t for cid, t in self.outcomes.items() if self.sent.get(cid, float("-inf")) >= since)

    def poke(self) -> None:
        """Wake the waiters (to look at their abort event)."""
        with self._cond:
            self._cond.notify_all()

    def stop(self, settle_s: float) -> None:
        """Stop sending; wait up to `settle_s` for every input's outcome."""
        self._stop.set()
        self._thread.join(5)
        with self._cond:
            self._cond.wait_for(lambda: set(self.sent) <= set(self.outcomes), settle_s)

    def close(self) -> None:
        self.link.close()

    @property
    def progress(self) -> str:
        with self._cond:
            return f"{len(self.outcomes)} of {len(self.sent)} inputs answered"

    @property
    def missing(self) -> int:
        with self._cond:
            return len(set(self.sent) - set(self.outcomes))

    def missing_ids(self, limit: int = 20) -> list[str]:
        with self._cond:
            return [mid for mid in self.sent if mid not in self.outcomes][:limit]


@dataclass
class Deafness:
    restart: int  # after which broker restart
    process_alive: bool
    log_says_connected: bool  # no "disconnected" line since the restart, or the last connection line says connected
    connection_lines_since_restart: list[str]
    thread_death: list[str]  # "Exception in thread ..." and the exception line
    method_status: int | None  # getStatus through the twin (504: nobody answers)
    watchdog_line: str | None = None
    verdict_s: float | None = None  # broker stopped -> the watchdog's verdict line
    exit_s: float | None = None  # broker stopped -> the process exited
    exit_code: int | None = None
    recovered_s: float | None = None  # broker stopped -> first outcome of an input sent after the new process was ready


@dataclass
class RunResult:
    run: int
    sdk: str
    restarts_done: int = 0
    recovery_s: list[float] = field(default_factory=list)  # healthy restarts: broker back -> first new outcome
    deafness: list[Deafness] = field(default_factory=list)
    inputs: int = 0
    missing: int = 0
    duplicates: int = 0
    missing_ids: list[str] = field(default_factory=list)  # the first few, in sending order
    stopped_lines: list[str] = field(default_factory=list)  # each module generation's "stopped:" line (what it took in)
    log_problems: list[str] = field(default_factory=list)  # the module's first WARNING/ERROR lines
    error: str | None = None

    @property
    def first_deaf(self) -> int | None:
        return self.deafness[0].restart if self.deafness else None


class ModuleRunner:
    """The module process (started again when asked, as edgeAgent would) and what its log says."""

    def __init__(self, env: dict[str, str], python: str, repo: Path, child: bool, on_exit: Callable[[], None]) -> None:
        self.env, self.python, self.repo = env, python, repo
        self.args = ("-m", "bench.deafness", "--child") if child else ("-m", "app")
        self.on_exit = on_exit
        self.process: Any = None
        self.generation = 0
        self.exited = threading.Event()
        self.exit_at: float | None = None
        self.exit_code: int | None = None
        self.lines: list[tuple[float, str]] = []  # (arrival, line) of every generation, in order
        self._lock = threading.Lock()

    def _on_line(self, line: str) -> None:
        with self._lock:
            self.lines.append((time.monotonic(), f"[{self.generation}] {line}"))

    def start(self) -> None:
        from localedge.processes import ModuleProcess

        self.generation += 1
        self.exited.clear()
        self.exit_at = self.exit_code = None
        process = ModuleProcess(self.env, args=self.args, cwd=self.repo, executable=self.python, on_line=self._on_line)
        self.process = process.start()
        threading.Thread(target=self._watch, args=(process,), name="deafness-module-exit", daemon=True).start()
        process.wait_ready(READY_TIMEOUT_S)

    def _watch(self, process: Any) -> None:
        code = process.process.wait()
        if process is self.process:
            self.exit_at, self.exit_code = time.monotonic(), code
            self.exited.set()
            self.on_exit()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.process.poll() is None

    def lines_since(self, since: float) -> list[tuple[float, str]]:
        with self._lock:
            return [(t, line) for t, line in self.lines if t >= since]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(20)


def _thread_death(lines: list[str]) -> list[str]:
    """Each 'Exception in thread' line with its traceback, up to the exception line that ends it."""
    found: list[str] = []
    for i, line in enumerate(lines):
        if "Exception in thread" in line:
            found.append(line)
            for following in lines[i + 1 : i + 80]:
                found.append(following)
                if TRACEBACK_END.match(following.split("] ", 1)[-1]):
                    break
    return found


def _death_summary(traceback: list[str]) -> list[str]:
    """The thread line, the innermost paho frame and the exception line of a logged thread death."""
    if not traceback:
        return []
    frames = [x.strip().split("] ", 1)[-1] for x in traceback if "paho" in x and "File" in x]
    return [traceback[0].split("] ", 1)[-1], *(frames[-1:]), traceback[-1].split("] ", 1)[-1]]


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def sdk_version(python: str, repo: Path) -> str:
    import subprocess

    code = "from azure.iot.device.constant import VERSION; import paho.mqtt as p; print(VERSION, p.__version__)"
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=60, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}
    )
    parts = out.stdout.split()
    return f"azure-iot-device {parts[0]} + paho-mqtt {parts[1]}" if len(parts) == 2 else f"unknown ({out.stderr.strip()[-200:]})"


def one_run(run: int, ca: Any, args: argparse.Namespace, sdk: str) -> RunResult:
    from app.settings import ENV_NAMES
    from localedge.broker import Broker
    from localedge.certs import shared_dir
    from localedge.processes import module_environment
    from localedge.twin import Twin

    result = RunResult(run, sdk)
    scratch = shared_dir("deafness-run-")
    broker = Broker(ca).start()
    twin = Twin(broker, DEVICE, MODULE, {}).start()
    stream = Stream(broker, run, args.rate)
    extra = {
        **broker.module_env(DEVICE, MODULE),
        "LOG_LEVEL": "INFO",
        "HTTP_PORT": "0",
        "PYTHONPATH": str(args.repo),
        "WATCHDOG_S": str(args.watchdog_s),
        "JOURNAL_DIR": str(scratch / "journal"),
        **({"DEAFNESS_TLS12": "1"} if args.tls12 else {}),
        **dict(item.split("=", 1) for item in args.env),
    }
    module = ModuleRunner(
        module_environment(extra, drop=ENV_NAMES),
        args.python,
        Path(args.repo),
        (args.watchdog_s > 0 and not args.wired) or args.tls12,
        stream.poke,
    )
    try:
        module.start()
        stream.start()
        if stream.wait_answered_after(time.monotonic(), args.bound) is None:
            raise RuntimeError("no outcome before the first restart")
        for k in range(1, args.restarts + 1):
            stream.wait_answered_after(time.monotonic() + args.gap, args.gap + args.bound)  # a steady stream first
            stopped_at = time.monotonic()
            broker.stop()
            broker.start()
            up_at = time.monotonic()
            answered = stream.wait_answered_after(up_at, args.bound, abort=module.exited)
            result.restarts_done = k
            if answered is not None and not module.exited.is_set():
                result.recovery_s.append(round(answered - up_at, 2))
                _say(f"run {run} restart {k}: served again after {answered - up_at:.1f} s ({stream.progress})")
                continue
            deafness = _examine(module, twin, k, stopped_at)
            result.deafness.append(deafness)
            _say(
                f"run {run} restart {k}: DEAF (process alive {deafness.process_alive}, log says connected "
                f"{deafness.log_says_connected}, getStatus {deafness.method_status}, thread death: "
                f"{' | '.join(_death_summary(deafness.thread_death)) or 'none logged'})"
            )
            if args.watchdog_s <= 0:
                break
            _supervise(module, stream, deafness, stopped_at, args)
            _say(
                f"run {run} restart {k}: watchdog verdict after {deafness.verdict_s} s, exit {deafness.exit_code} "
                f"after {deafness.exit_s} s, served again after {deafness.recovered_s} s (all since the broker stopped)"
            )
            if deafness.recovered_s is None:
                break
        stream.stop(settle_s=args.bound if not result.deafness or args.watchdog_s > 0 else 0)
    except Exception as exc:  # a harness failure is reported, not raised: the other runs still count
        result.error = repr(exc)
        _say(f"run {run}: harness error {exc!r}")
        if module.process is not None:
            _say(module.process.log_tail(15))
    finally:
        result.inputs, result.missing, result.duplicates = len(stream.sent), stream.missing, stream.duplicates
        result.missing_ids = stream.missing_ids()
        module.stop()
        lines = [line for _t, line in module.lines_since(float("-inf"))]
        result.stopped_lines = [line for line in lines if " stopped: " in line]
        result.log_problems = [line for line in lines if line.startswith(("<4>", "<3>", "<2>"))][:12]  # warnings and worse
        stream.close()
        twin.stop()
        broker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _examine(module: ModuleRunner, twin: Any, restart: int, stopped_at: float) -> Deafness:
    alive = module.alive
    since = [line for _t, line in module.lines_since(stopped_at)]
    connection = [line for line in since if "edgeHub connection:" in line]
    everything = [line for _t, line in module.lines_since(float("-inf"))]
    last_connection = [line for line in everything if "edgeHub connection:" in line][-1:]
    says_connected = not connection or "disconnected" not in connection[-1]
    if last_connection and "disconnected" in last_connection[0]:
        says_connected = False
    status = None
    if alive:
        status, _payload = twin.invoke("getStatus", {}, timeout=METHOD_TIMEOUT_S)
    return Deafness(restart, alive, says_connected, connection[-6:], _thread_death(since), status)


def _supervise(module: ModuleRunner, stream: Stream, deafness: Deafness, stopped_at: float, args: argparse.Namespace) -> None:
    """Play edgeAgent: wait for the watchdog to end the process, start it again, wait for outcomes."""
    module.exited.wait(args.watchdog_s + 60)
    verdicts = [(t, line) for t, line in module.lines_since(stopped_at) if VERDICT.search(line)]
    if verdicts:
        deafness.watchdog_line = verdicts[0][1]
        deafness.verdict_s = round(verdicts[0][0] - stopped_at, 1)
    if module.exit_at is None:
        return  # still running after the budget: the watchdog did not act
    deafness.exit_s, deafness.exit_code = round(module.exit_at - stopped_at, 1), module.exit_code
    module.start()
    answered = stream.wait_answered_after(time.monotonic(), args.bound)
    if answered is not None:
        deafness.recovered_s = round(answered - stopped_at, 1)


def _table(results: list[RunResult]) -> str:
    rows = ["run | restarts | deaf after restart | healthy recoveries (s) | deafness evidence | inputs / missing / dup"]
    for r in results:
        evidence = "; ".join(
            f"#{d.restart}: alive={d.process_alive} connected={d.log_says_connected} getStatus={d.method_status} "
            f"{(d.thread_death[-1].split('] ', 1)[-1] if d.thread_death else 'no traceback')}"
            + (f" verdict={d.verdict_s}s exit={d.exit_code}@{d.exit_s}s served={d.recovered_s}s" if d.exit_s else "")
            for d in r.deafness
        )
        deaf = ",".join(str(d.restart) for d in r.deafness) or "never"
        rows.append(
            f"{r.run} | {r.restarts_done} | {deaf} | {r.recovery_s} | {evidence or '-'} | "
            f"{r.inputs} / {r.missing} / {r.duplicates}" + (f" | ERROR {r.error}" if r.error else "")
        )
    return "\n".join(rows)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.deafness", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="independent runs, each on a fresh broker (default 5)")
    p.add_argument("--restarts", type=int, default=5, help="broker restarts per run (default 5)")
    p.add_argument("--rate", type=float, default=100.0, help="inputs per second (default 100)")
    p.add_argument(
        "--bound", type=float, default=40.0, help="seconds an input sent after a restart may take to get its outcome (40)"
    )
    p.add_argument(
        "--gap", type=float, default=0.0, help="seconds of outcomes flowing again before the next restart (default 0: at once)"
    )
    p.add_argument("--python", default=sys.executable, help="the module's interpreter (default: this one)")
    p.add_argument("--repo", type=Path, default=REPO, help="the module's source tree (default: this one)")
    p.add_argument(
        "--watchdog-s", type=float, default=0.0, help="run the module with the watchdog, this limit; 0: without (default)"
    )
    p.add_argument(
        "--tls12", action="store_true", help="cap the module's TLS at 1.2, as 2.14 does (2.15 negotiates 1.3 with Mosquitto)"
    )
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a module setting (repeatable)")
    p.add_argument(
        "--wired",
        action="store_true",
        help="the module wires the watchdog itself (run_module reads WATCHDOG_S): run `python -m app`, only supervise it",
    )
    p.add_argument("--label", default="", help="a name for this configuration in the summary")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.child:
        return child_main()
    from localedge.broker import find_mosquitto
    from localedge.certs import CertAuthority, shared_dir

    if find_mosquitto() is None:
        print("mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return 2
    sdk = sdk_version(args.python, args.repo)
    plan = f"{args.runs} runs x {args.restarts} restarts at {args.rate:g} msg/s, watchdog {args.watchdog_s:g} s"
    plan += ", module TLS capped at 1.2" if args.tls12 else ""
    _say(f"{args.label or 'deafness'}: {sdk}; {plan}")
    ca_dir = shared_dir("deafness-ca-")
    results: list[RunResult] = []
    started = time.monotonic()
    try:
        ca = CertAuthority.create(ca_dir)
        for run in range(1, args.runs + 1):
            results.append(one_run(run, ca, args, sdk))
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)
    print(_table(results), flush=True)
    summary = {
        "summary": True,
        "label": args.label,
        "sdk": sdk,
        "runs": args.runs,
        "restarts_per_run": args.restarts,
        "watchdog_s": args.watchdog_s,
        "module_tls12": args.tls12,
        "wired_by_module": args.wired,
        "module_env": args.env,
        "rate": args.rate,
        "gap_s": args.gap,
        "runs_deaf": sum(1 for r in results if r.deafness),
        "first_deaf_restart": [r.first_deaf for r in results],
        "restarts_survived": sum(r.restarts_done - len(r.deafness) for r in results),
        "deafness_events": sum(len(r.deafness) for r in results),
        "harness_errors": sum(1 for r in results if r.error),
        "elapsed_s": round(time.monotonic() - started, 1),
        "results": [asdict(r) for r in results],
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
