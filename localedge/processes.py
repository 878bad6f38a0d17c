"""Modules as child processes: the environment they get and a watcher of their log.

A module gets the SDK's simulator-path variables (`EdgeHubConnectionString`,
`EdgeModuleCACertificateFile`) or the production path's seven `IOTEDGE_*`, so it runs the same
`create_from_edge_environment()` it runs on a device.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from localedge.broker import stop_process
from localedge.errors import EdgeError

REPO_ROOT = Path(__file__).resolve().parent.parent

EDGE_ENV_PREFIXES = ("IOTEDGE_",)
EDGE_ENV_NAMES = ("EdgeHubConnectionString", "EdgeModuleCACertificateFile", "AZUREML_MODEL_DIR")


def module_environment(extra: Mapping[str, str], drop: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment without edge/runtime variables (and `drop`), plus `extra`.

    With any IOTEDGE_* left over the SDK could take its production path (the workload API).
    """
    unwanted = set(EDGE_ENV_NAMES) | set(drop)
    env = {k: v for k, v in os.environ.items() if k not in unwanted and not k.startswith(EDGE_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ModuleProcess:
    """`python -m app` (or other args) as a child; its stderr is read by a thread and kept.

    `ready` is set when a stderr line contains `ready_marker`: the module logs "ready:" once the SDK
    has connected and subscribed to its inputs, so messages published after it are delivered.
    `executable` runs `args` (a mapped module may be any program); `on_line` sees each stderr line
    (the local edge writes module logs to files); `own_group` puts the child in its own process
    group so that a terminal's Ctrl-C reaches only its parent, which stops it in order.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = ("-m", "app"),
        cwd: Path = REPO_ROOT,
        ready_marker: str = " ready:",
        executable: str = sys.executable,
        on_line: Callable[[str], None] | None = None,
        own_group: bool = False,
    ) -> None:
        self.env = dict(env)
        self.executable = executable
        self.on_line = on_line
        self.own_group = own_group
        self.args = list(args)
        self.cwd = cwd
        self.ready_marker = ready_marker
        self.ready = threading.Event()
        self.closed = threading.Event()  # stderr reached EOF: the process is exiting
        self.process: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._watchers: list[tuple[str, threading.Event]] = []
        self._reader: threading.Thread | None = None
        self.paused = False  # SIGSTOPped by send_signal(): stop() continues it, else SIGTERM would wait for SIGCONT

    def start(self) -> ModuleProcess:
        self.process = subprocess.Popen(
            [self.executable, *self.args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0 if self.own_group else None,
        )
        self._reader = threading.Thread(target=self._read, name="module-stderr", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self._lines.append(line)
                for text, event in self._watchers:
                    if text in line:
                        event.set()
            if self.on_line is not None:
                self.on_line(line)
            if self.ready_marker in line:
                self.ready.set()
        self.closed.set()

    @property
    def log(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def lines_with(self, text: str) -> list[str]:
        with self._lock:
            return [line for line in self._lines if text in line]

    def wait_for_line(self, text: str, timeout: float) -> str:
        """The first stderr line containing `text`, waiting up to `timeout`."""
        event = threading.Event()
        with self._lock:
            if any(text in line for line in self._lines):
                event.set()
            else:
                self._watchers.append((text, event))
        if not event.wait(timeout):
            raise EdgeError(f"module did not log {text!r} within {timeout:.0f}s:\n{self.log_tail()}")
        return self.lines_with(text)[0]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the ready line; fail early with the log if the module exits first."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.closed.is_set() or time.monotonic() > deadline:
                state = "exited" if self.closed.is_set() else f"was not ready within {timeout:.0f}s"
                raise EdgeError(f"module {state}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        with self._lock:
            return "\n".join(self._lines[-lines:]) or "(no output)"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait up to `timeout` for the exit code; EdgeError if it does not exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise EdgeError(f"module did not exit within {timeout:.0f}s of SIGTERM:\n{self.log_tail()}") from None
        self.closed.wait(5)  # the rest of stderr
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the process by its PID (not its group): SIGKILL, SIGTERM, SIGSTOP, SIGCONT...; a no-op once it exited."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            if sig in (signal.SIGSTOP, signal.SIGCONT):
                self.paused = sig == signal.SIGSTOP

    def wait_exit(self, timeout: float) -> int:
        """Wait up to `timeout` for the process to exit (after a signal); its exit code (-N: killed by signal N)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise EdgeError(f"module (pid {self.pid}) did not exit within {timeout:.0f}s:\n{self.log_tail()}") from None
        self.closed.wait(5)  # the rest of stderr
        return code

    def again(self) -> ModuleProcess:
        """A new, unstarted process with this one's command, environment, directory and log handling: a restart."""
        return ModuleProcess(
            self.env,
            args=self.args,
            cwd=self.cwd,
            ready_marker=self.ready_marker,
            executable=self.executable,
            on_line=self.on_line,
            own_group=self.own_group,
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """For finalizers: SIGTERM, bounded wait, then SIGKILL."""
        if self.process is None:
            return None
        if self.paused and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process would take SIGTERM only once continued
        code = stop_process(self.process, timeout)
        if self._reader is not None:
            self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code
