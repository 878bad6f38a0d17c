"""Mosquitto as edgeHub's stand-in, one per module, started and stopped by PID.

Each broker binds its own loopback address 127.0.0.N on 8883 (the SDK always connects to
GatewayHostName:8883, and `$iothub/...` topics carry no module name, so modules cannot share one).
A plain listener on the same address is for the local edge itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from localedge.certs import CertAuthority, ServerCert, shared_dir
from localedge.errors import EdgeError
from localedge.wire import EdgeClient, EdgeMessage

EDGEHUB_TLS_PORT = 8883  # the SDK always connects to GatewayHostName:8883
TMPFS = "/dev/shm"


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    candidates = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    return shutil.which("mosquitto") or next((p for p in candidates if os.access(p, os.X_OK)), None)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mosquitto does: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_loopback_host(port: int = EDGEHUB_TLS_PORT, avoid: Iterable[str] = ()) -> str:
    """A 127.0.0.N (N in 2..254, random start) where `port` is free to bind."""
    skip = set(avoid)
    start = random.randrange(2, 255)
    for i in range(253):
        host = f"127.0.0.{2 + (start - 2 + i) % 253}"
        if host not in skip and _port_free(host, port):
            return host
    raise EdgeError(f"no loopback address 127.0.0.2-254 has port {port} free")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, deadline: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Connect attempts until one succeeds, `alive()` turns false or the deadline passes."""
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=max(0.05, deadline - time.monotonic())):
                return True
        except OSError:
            time.sleep(0.01)  # between attempts only; readiness is the successful connect
    return False


# --- the broker -----------------------------------------------------------------------------------


class Broker:
    """Mosquitto as edgeHub's stand-in: TLS on `host`:8883 for modules, plain on `host`:`plain_port` for tests.

    Persistence is on (the SDK does not re-subscribe after a reconnect: it relies on the persisted
    session), queues are unbounded (edgeHub stores messages for a module until delivered), and
    TCP_NODELAY is set (else Nagle + delayed ACKs cost ~44 ms per hop).

    `save_on_change` (the default) saves sessions and queues after every change (`autosave_on_changes`), so a
    SIGKILL loses nothing the broker had taken; without it Mosquitto saves only on a clean stop. Each save is
    written, fsynced and renamed: ~5 ms on this machine's disk (160-220 msg/s through one broker), so the store
    lives on tmpfs (/dev/shm, when there is one), which survives the broker, not the machine: enough for a run.
    """

    def __init__(
        self,
        ca: CertAuthority,
        directory: Path | None = None,
        host: str | None = None,
        *,
        trace: bool = False,
        save_on_change: bool = True,
    ) -> None:
        self.ca = ca
        self.trace = trace  # log every packet (`log_type debug`): bench/faults.py reads what was delivered to whom
        self.save_on_change = save_on_change
        self._volatile: Path | None = None  # its tmpfs store directory, removed by close()
        self._own_dir = directory is None
        self.directory = directory or shared_dir("edge-broker-")
        self.host = host or ""
        self.tls_port = EDGEHUB_TLS_PORT
        self.plain_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path = self.directory / "mosquitto.log"

    def _config(self, server: ServerCert, data: Path) -> str:
        return "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous true",  # the module's SAS token is not checked
                "persistence true",
                f"persistence_location {data}/",
                *(["autosave_on_changes true", "autosave_interval 1"] if self.save_on_change else ["autosave_interval 0"]),
                "set_tcp_nodelay true",
                "max_queued_messages 0",
                "max_inflight_messages 20",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                *(["log_type debug"] if self.trace else []),
                "log_timestamp_format %H:%M:%S",
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.ca.cert}",
                f"certfile {server.cert}",
                f"keyfile {server.key}",
                f"listener {self.plain_port} {self.host}",
                "",
            ]
        )

    def start(self, timeout: float = 10.0, attempts: int = 3) -> Broker:
        """Start and wait until both listeners accept connections. After stop(), starting again keeps
        the address and the persisted sessions (a broker restart, as edgeHub restarts)."""
        binary = find_mosquitto()
        if binary is None:
            raise EdgeError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        tried: list[str] = []
        for _ in range(attempts):
            host = self.host or pick_loopback_host(avoid=tried)
            tried.append(host)
            if self._try_start(binary, host, time.monotonic() + timeout):
                return self
            if self.host:  # a fixed address: no other to try
                break
        raise EdgeError(f"mosquitto did not start on {', '.join(tried)}:\n{self.log_tail()}")

    def _try_start(self, binary: str, host: str, deadline: float) -> bool:
        run = self.directory / host
        data = self._store_dir(run, host)
        run.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        run.chmod(0o755)
        data.chmod(0o777)  # written by the `mosquitto` user when we are root
        # A restart keeps the plain port too, so clients of the local edge reconnect to the same address.
        keep = self.plain_port if host == self.host and self.plain_port and _port_free(host, self.plain_port) else 0
        self.host, self.plain_port = host, keep or free_port(host)
        server = self.ca.issue_server_cert(run, ("localhost", "127.0.0.1", host))
        conf = run / "mosquitto.conf"
        conf.write_text(self._config(server, data))
        conf.chmod(0o644)
        with open(self._log_path, "ab") as log:
            # Its own process group: a terminal's Ctrl-C reaches the local edge only, which stops its brokers in order.
            self.process = subprocess.Popen(
                [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, process_group=0
            )
        alive = lambda: self.process is not None and self.process.poll() is None  # noqa: E731
        if wait_for_port(host, self.plain_port, deadline, alive) and wait_for_port(host, self.tls_port, deadline, alive):
            return True
        self._stop_process()  # e.g. lost a race for the address; the caller may try another
        self.host = ""
        return False

    def _store_dir(self, run: Path, host: str) -> Path:
        """Where Mosquitto keeps its persistence file: tmpfs when it saves on every change (see the class doc)."""
        if self.save_on_change and self._volatile is None and os.access(TMPFS, os.W_OK):
            self._volatile = Path(tempfile.mkdtemp(prefix="localedge-broker-", dir=TMPFS))
            self._volatile.chmod(0o755)
        return (self._volatile / host) if self._volatile is not None else run / "data"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        """Mosquitto's log, kept across restarts (appended)."""
        return self._log_path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def _stop_process(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        proc, self.process = self.process, None
        return stop_process(proc, timeout, sig) if proc is not None else None

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the broker: SIGTERM (it saves its persistence file), then SIGKILL after `timeout`."""
        return self._stop_process(timeout)

    def kill(self, timeout: float = 5.0) -> int | None:
        """SIGKILL the broker (a crash): start() again resumes from its last save (the last change with save_on_change,
        else its last clean stop)."""
        return self._stop_process(timeout, signal.SIGKILL)

    def close(self) -> None:
        """Stop it and remove its tmpfs store, and its directory if we made it."""
        self.stop()
        if self._volatile is not None:
            shutil.rmtree(self._volatile, ignore_errors=True)
            self._volatile = None
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def module_env(self, device_id: str, module_id: str, hub_hostname: str = "edge-test.azure-devices.net") -> dict[str, str]:
        """The two variables of the SDK's simulator path, pointing a module at this broker."""
        key = secrets.token_hex(32)  # hex is valid base64; the broker does not check the SAS token
        connection_string = (
            f"HostName={hub_hostname};DeviceId={device_id};ModuleId={module_id};GatewayHostName={self.host};SharedAccessKey={key}"
        )
        return {"EdgeHubConnectionString": connection_string, "EdgeModuleCACertificateFile": str(self.ca.cert)}

    def client(self, client_id: str | None = None, clean_session: bool = True, timeout: float = 5.0) -> EdgeClient:
        """A connected test-side client on the plain listener."""
        return EdgeClient(self.host, self.plain_port, client_id, clean_session).connect(timeout)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0, sig: int = signal.SIGTERM) -> int:
    """Signal a child by its PID, wait up to `timeout`, then kill it; returns its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout)


def take_session_backlog(broker: Broker, client_id: str, topic_filter: str, timeout: float = 10.0) -> list[EdgeMessage]:
    """Messages the broker still holds for a persistent session (e.g. a module's, after it exited).

    Connects as `client_id` with clean_session=False (only once the owner is gone: a second
    connection would take the session over), subscribes to `topic_filter` and reads until a
    barrier: what came before it is what the session had queued or in flight.
    """
    client = EdgeClient(broker.host, broker.plain_port, client_id, clean_session=False).connect(timeout)
    try:
        client.subscribe(topic_filter, timeout)
        client.barrier(timeout)
        return client.drain()
    finally:
        client.close()
