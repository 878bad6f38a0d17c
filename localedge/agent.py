"""edgeAgent's duties for module processes: each module's `restartPolicy`, with edgeAgent's back-off.

edgeAgent (Azure/iotedge, edge-agent's RestartPolicyManager and HealthRestartPlanner) restarts a module that is
not running after a cool-off of `CoolOffTimeUnitInSeconds * 2^restarts` seconds, capped at 300 s (10 s, 20 s,
40 s, ...); after `MaxRestartCount` restarts the module is "failed" and left alone; a module that has run for
`IntensiveCareTimeInMinutes` has its count cleared. Its defaults (appsettings_agent.json): 10 s, 20 restarts,
10 minutes. `Backoff.scaled()` shrinks every time for tests.

Policies, as IoT Edge documents them: `never`; `on-failure` restarts a module that exited with a non-zero code
or a signal; `on-unhealthy` also one found unhealthy; `always` whatever its exit. Unhealthy, for a process: a
module with an HTTP port (the inference module's HTTP_PORT) whose `GET /live` fails `HealthProbe.failures`
times in a row (an error answer, or none within the probe's timeout); it is then stopped (SIGTERM) and,
under `on-unhealthy` or `always`, restarted. A module without an HTTP port is judged by its exit alone.

Each exit and restart is printed (stderr) with the module's name, its exit code or signal and the last lines of
its log. A deliberate kill (LocalEdge.kill_module) holds the module: the caller restarts it, not the supervisor.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from localedge.errors import EdgeError
from localedge.processes import ModuleProcess

NEVER, ON_FAILURE, ON_UNHEALTHY, ALWAYS = "never", "on-failure", "on-unhealthy", "always"
POLL_S = 0.05  # how often a module's process is looked at: an exit is seen within this
LOG_LINES = 10  # of the module's log, printed with each exit


@dataclass(frozen=True)
class Backoff:
    """edgeAgent's restart arithmetic (its defaults); `scaled(f)` multiplies every time by f."""

    cool_off_unit_s: float = 10.0  # CoolOffTimeUnitInSeconds
    max_cool_off_s: float = 300.0  # RestartPolicyManager.MaxCoolOffPeriodSecs
    max_restarts: int = 20  # MaxRestartCount: past it the module is "failed"
    intensive_care_s: float = 600.0  # IntensiveCareTimeInMinutes: a run this long clears the count

    def cool_off(self, restarts: int) -> float:
        """Seconds between an exit and the restart, given the restarts already made since the count was cleared."""
        return min(self.cool_off_unit_s * 2**restarts, self.max_cool_off_s)

    def scaled(self, factor: float) -> Backoff:
        return replace(
            self,
            cool_off_unit_s=self.cool_off_unit_s * factor,
            max_cool_off_s=self.max_cool_off_s * factor,
            intensive_care_s=self.intensive_care_s * factor,
        )


@dataclass(frozen=True)
class HealthProbe:
    """Docker's health-check defaults: every 30 s, 3 failures in a row make it unhealthy."""

    interval_s: float = 30.0
    failures: int = 3
    timeout_s: float = 5.0
    path: str = "/live"


def restarts_after(policy: str, exit_code: int | None, unhealthy: bool) -> bool:
    """Whether `policy` restarts a module that exited with `exit_code` (negative: a signal), or was unhealthy."""
    if policy == ALWAYS:
        return True
    if policy == ON_UNHEALTHY and unhealthy:
        return True
    if policy in (ON_FAILURE, ON_UNHEALTHY):
        return exit_code != 0
    return False


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name} (code {code})"
        return f"was killed by signal {-code} (code {code})"
    return f"exited with code {code}"


@dataclass
class ModuleExit:
    """One exit of a module that it was not asked to make, and what the supervisor did about it."""

    module: str
    pid: int
    code: int | None
    ready: bool  # it had logged its ready line
    unhealthy: bool
    restarted: bool = False
    at: float = field(default_factory=time.monotonic)


@dataclass
class _State:
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)
    held: bool = False
    unhealthy: bool = False
    probe_failures: int = 0
    next_probe: float = 0.0
    reported: ModuleProcess | None = None  # the exited process whose exit was printed


class Supervisor:
    """One thread per module applying its restart policy. The edge gives it:

    - `current(name)`: the module's process now; `respawn(name)`: start it again (same command, environment and
      identity) and return the new, not yet ready process, raising EdgeError if it cannot be run;
    - `lock`: held by whoever replaces a module's process (the supervisor and the edge's own restart_module);
    - `policies` and `health_ports` (name → HTTP port for the probe, or None).
    """

    def __init__(
        self,
        policies: Mapping[str, str],
        current: Callable[[str], ModuleProcess],
        respawn: Callable[[str], ModuleProcess],
        lock: threading.RLock,
        *,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen
        probe: HealthProbe = HealthProbe(),  # noqa: B008 - frozen
        health_ports: Mapping[str, int | None] | None = None,
        ready_timeout: float = 60.0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.policies = dict(policies)
        self.backoff, self.probe, self.ready_timeout = backoff, probe, ready_timeout
        self.health_ports = dict(health_ports or {})
        self._current, self._respawn, self._lock = current, respawn, lock
        self._say = say or _stderr
        self._states = {name: _State() for name in self.policies}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._changed = threading.Condition()
        self.exits: list[ModuleExit] = []
        self.restarts: dict[str, int] = dict.fromkeys(self.policies, 0)  # every restart made, never cleared

    def start(self) -> Supervisor:
        for name in self.policies:
            thread = threading.Thread(target=self._watch, args=(name,), name=f"agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    # --- what the edge's deliberate faults use ---

    def hold(self, name: str) -> None:
        """The caller kills (or stops) the module and will restart it: its exit is not the supervisor's business."""
        if name in self._states:
            self._states[name].held = True

    def release(self, name: str) -> None:
        """The caller restarted the module: supervise it again, with a clear health record."""
        if name in self._states:
            state = self._states[name]
            state.held, state.unhealthy, state.probe_failures, state.started_at = False, False, 0, time.monotonic()

    def wait_restarts(self, name: str, count: int, timeout: float) -> bool:
        """True once the supervisor has restarted `name` `count` times in all and the last one is ready."""
        with self._changed:
            return self._changed.wait_for(lambda: self.restarts.get(name, 0) >= count and self._ready(name), timeout)

    def _ready(self, name: str) -> bool:
        module = self._current(name)
        return module.ready.is_set() and module.process is not None and module.process.poll() is None

    # --- the watch ---

    def _watch(self, name: str) -> None:
        state = self._states[name]
        while not self._stopping.is_set():
            module = self._current(name)
            process = module.process
            if state.held or process is None or process.poll() is None:
                self._while_running(name, module, state)
                self._stopping.wait(POLL_S)
                continue
            if state.reported is not module and not self._on_exit(name, module, state):
                self._wait_replaced(name, module)  # not restarted: until the edge's own restart_module, or stop
                continue
            if state.restarts >= self.backoff.max_restarts:  # its command could not be run, again and again
                self._say(f"agent: module '{name}' failed: {state.restarts} restarts (edgeAgent's MaxRestartCount)")
                self._wait_replaced(name, module)
                continue
            delay = self.backoff.cool_off(state.restarts)
            if self._stopping.wait(delay):
                return
            self._restart(name, module, state)

    def _while_running(self, name: str, module: ModuleProcess, state: _State) -> None:
        now = time.monotonic()
        if state.restarts and now - state.started_at > self.backoff.intensive_care_s:
            state.restarts = 0  # ran long enough: the next crash starts the back-off anew, as edgeAgent's
        port = self.health_ports.get(name)
        if port and not state.held and module.ready.is_set() and now >= state.next_probe:
            state.next_probe = now + self.probe.interval_s
            self._probe(name, module, state, port)

    def _probe(self, name: str, module: ModuleProcess, state: _State, port: int) -> None:
        url = f"http://127.0.0.1:{port}{self.probe.path}"
        try:
            with urllib.request.urlopen(url, timeout=self.probe.timeout_s) as answer:  # http on loopback
                healthy = answer.status == 200
        except (urllib.error.URLError, OSError):
            healthy = False
        state.probe_failures = 0 if healthy else state.probe_failures + 1
        if state.probe_failures < self.probe.failures or state.unhealthy:
            return
        state.unhealthy = True
        policy = self.policies[name]
        action = "stopping it to restart it" if policy in (ON_UNHEALTHY, ALWAYS) else f"left running (restartPolicy {policy})"
        self._say(f"agent: module '{name}' (pid {module.pid}) is unhealthy: {url} failed {state.probe_failures} times; {action}")
        if policy in (ON_UNHEALTHY, ALWAYS):
            module.send_signal(signal.SIGTERM)  # its exit is then seen and handled like any other

    def _on_exit(self, name: str, module: ModuleProcess, state: _State) -> bool:
        """Print the exit; whether it is to be restarted."""
        assert module.process is not None
        code = module.process.returncode
        state.reported = module
        record = ModuleExit(name, module.pid, code, module.ready.is_set(), state.unhealthy)
        self.exits.append(record)
        policy = self.policies[name]
        when = "" if record.ready else " before it was ready"
        if not restarts_after(policy, code, state.unhealthy):
            verdict = f"not restarted (restartPolicy {policy})"
        elif state.restarts >= self.backoff.max_restarts:
            verdict = f"not restarted: failed after {state.restarts} restarts (edgeAgent's MaxRestartCount)"
        else:
            record.restarted = True
            delay = self.backoff.cool_off(state.restarts)
            verdict = f"restart {state.restarts + 1} in {delay:g} s (restartPolicy {policy})"
        tail = "\n".join(f"    {line}" for line in module.log_tail(LOG_LINES).splitlines())
        self._say(f"agent: module '{name}' (pid {module.pid}) {describe_exit(code)}{when}; {verdict}; its last lines:\n{tail}")
        return record.restarted

    def _restart(self, name: str, old: ModuleProcess, state: _State) -> None:
        with self._lock:
            if self._stopping.is_set() or state.held or self._current(name) is not old:
                return  # stopping, or the edge restarted it meanwhile
            state.restarts += 1
            try:
                module = self._respawn(name)
            except EdgeError as exc:  # the command cannot be run: the next try waits longer
                self._say(f"agent: module '{name}' cannot be started: {exc}")
                return
            state.started_at, state.unhealthy, state.probe_failures = time.monotonic(), False, 0
            state.next_probe = state.started_at + self.probe.interval_s
        started = time.monotonic()
        deadline = started + self.ready_timeout
        while not module.ready.wait(POLL_S):
            if self._stopping.is_set() or module.closed.is_set():
                return  # an exit before ready is reported by the watch
            if time.monotonic() > deadline:
                self._say(f"agent: module '{name}' (pid {module.pid}) restarted but not ready within {self.ready_timeout:g} s")
                break
        with self._changed:
            self.restarts[name] += 1
            self._changed.notify_all()
        if module.ready.is_set():
            self._say(f"agent: module '{name}' restarted (pid {module.pid}), ready in {time.monotonic() - started:.1f} s")

    def _wait_replaced(self, name: str, module: ModuleProcess) -> None:
        while not self._stopping.is_set() and self._current(name) is module:
            self._stopping.wait(POLL_S)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
