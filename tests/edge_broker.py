"""A local stand-in for edgeHub: a real Mosquitto broker, throwaway TLS certificates, the module as a
child process, and a plain MQTT client for the test side.

The module connects the way it does on a device: azure-iot-device's simulator path
(`EdgeHubConnectionString` + `EdgeModuleCACertificateFile`), MQTT over TLS to GatewayHostName on
port 8883 (hard-coded in the SDK), hostname checked against the certificate. Each broker binds its
own loopback address 127.0.0.N, so brokers (one per module: `$iothub/...` topics carry no module
name) never clash on 8883. The test side talks to a plain listener on the same address.

Everything here waits on events with bounded timeouts; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

REPO_ROOT = Path(__file__).resolve().parent.parent
EDGEHUB_TLS_PORT = 8883  # the SDK always connects to GatewayHostName:8883
SYSTEM_PROPERTIES = frozenset({"$.on", "$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.exp", "$.ifid"})


class EdgeTestError(RuntimeError):
    """The stand-in itself failed (broker or module did not start, timed out...); says why."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    candidates = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    return shutil.which("mosquitto") or next((p for p in candidates if os.access(p, os.X_OK)), None)


def shared_dir(prefix: str) -> Path:
    """A fresh temp dir that Mosquitto can read after it drops to the `mosquitto` user when run as root.

    pytest's tmp_path lives under a 0700 directory, which that user cannot traverse.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --- certificates ---------------------------------------------------------------------------------


def _readable_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # whatever the umask: the broker may read as another user


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise EdgeTestError(f"openssl {args[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _ec_key_args() -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # EC: fast to generate


@dataclass(frozen=True)
class CertAuthority:
    """A throwaway CA: `cert` is what the module trusts (EdgeModuleCACertificateFile)."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "edge-test-ca") -> CertAuthority:
        _readable_dir(directory)
        cert, key = directory / "ca.pem", directory / "ca.key"
        exts = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        files = ["-keyout", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN={name}"]
        _openssl("req", "-x509", *_ec_key_args(), *files, *exts, cwd=directory)
        cert.chmod(0o644)
        key.chmod(0o600)  # only openssl (as us) reads the CA key
        return cls(cert, key)

    def issue_server_cert(self, directory: Path, hosts: Iterable[str], name: str = "server") -> ServerCert:
        """A server certificate whose SAN lists `hosts` (names and IP addresses)."""
        _readable_dir(directory)
        hosts = list(dict.fromkeys(hosts))
        san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
        ext = directory / f"{name}.ext"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={san}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
        _openssl("req", "-new", *_ec_key_args(), "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={hosts[0]}", cwd=directory)
        serial = f"0x{secrets.token_hex(8)}"
        ca_args = ["-CA", str(self.cert), "-CAkey", str(self.key), "-set_serial", serial]
        _openssl("x509", "-req", "-in", csr.name, *ca_args, "-days", "2", "-extfile", ext.name, "-out", cert.name, cwd=directory)
        for path in (cert, key):
            path.chmod(0o644)  # a throwaway key; the broker reads it as the `mosquitto` user
        return ServerCert(cert, key, tuple(hosts))


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path
    hosts: tuple[str, ...]


def make_certs(directory: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")) -> tuple[CertAuthority, ServerCert]:
    """A CA and a server certificate for `hosts`, in `directory`."""
    ca = CertAuthority.create(directory / "ca")
    return ca, ca.issue_server_cert(directory / "server", hosts)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


# --- addresses ------------------------------------------------------------------------------------


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
    raise EdgeTestError(f"no loopback address 127.0.0.2-254 has port {port} free")


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
    """

    def __init__(self, ca: CertAuthority, directory: Path | None = None, host: str | None = None) -> None:
        self.ca = ca
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
                "autosave_interval 0",
                "set_tcp_nodelay true",
                "max_queued_messages 0",
                "max_inflight_messages 20",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
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
            raise EdgeTestError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        tried: list[str] = []
        for _ in range(attempts):
            host = self.host or pick_loopback_host(avoid=tried)
            tried.append(host)
            if self._try_start(binary, host, time.monotonic() + timeout):
                return self
            if self.host:  # a fixed address: no other to try
                break
        raise EdgeTestError(f"mosquitto did not start on {', '.join(tried)}:\n{self.log_tail()}")

    def _try_start(self, binary: str, host: str, deadline: float) -> bool:
        run = self.directory / host
        data = run / "data"
        data.mkdir(parents=True, exist_ok=True)
        run.chmod(0o755)
        data.chmod(0o777)  # written by the `mosquitto` user when we are root
        self.host, self.plain_port = host, free_port(host)
        server = self.ca.issue_server_cert(run, ("localhost", "127.0.0.1", host))
        conf = run / "mosquitto.conf"
        conf.write_text(self._config(server, data))
        conf.chmod(0o644)
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        alive = lambda: self.process is not None and self.process.poll() is None  # noqa: E731
        if wait_for_port(host, self.plain_port, deadline, alive) and wait_for_port(host, self.tls_port, deadline, alive):
            return True
        self._stop_process()  # e.g. lost a race for the address; the caller may try another
        self.host = ""
        return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def _stop_process(self, timeout: float = 5.0) -> int | None:
        proc, self.process = self.process, None
        return stop_process(proc, timeout) if proc is not None else None

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the broker: SIGTERM (it saves its persistence file), then SIGKILL after `timeout`."""
        return self._stop_process(timeout)

    def close(self) -> None:
        """Stop it and remove its directory if we made it."""
        self.stop()
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


# --- the module -----------------------------------------------------------------------------------

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
    """

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = ("-m", "app"),
        cwd: Path = REPO_ROOT,
        ready_marker: str = " ready:",
    ) -> None:
        self.env = dict(env)
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

    def start(self) -> ModuleProcess:
        self.process = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
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
            raise EdgeTestError(f"module did not log {text!r} within {timeout:.0f}s:\n{self.log_tail()}")
        return self.lines_with(text)[0]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the ready line; fail early with the log if the module exits first."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.closed.is_set() or time.monotonic() > deadline:
                state = "exited" if self.closed.is_set() else f"was not ready within {timeout:.0f}s"
                raise EdgeTestError(f"module {state}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        with self._lock:
            return "\n".join(self._lines[-lines:]) or "(no output)"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait up to `timeout` for the exit code; EdgeTestError if it does not exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise EdgeTestError(f"module did not exit within {timeout:.0f}s of SIGTERM:\n{self.log_tail()}") from None
        self.closed.wait(5)  # the rest of stderr
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """For finalizers: SIGTERM, bounded wait, then SIGKILL."""
        if self.process is None:
            return None
        code = stop_process(self.process, timeout)
        if self._reader is not None:
            self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


# --- message properties and topics ----------------------------------------------------------------

Properties = Mapping[str, str] | Iterable[tuple[str, str]]


def encode_properties(properties: Properties) -> str:
    """`k=v&k2=v2`, percent-encoded as the SDK does (quote with no safe characters: '/' too)."""
    pairs = properties.items() if isinstance(properties, Mapping) else properties
    return urllib.parse.urlencode([(str(k), str(v)) for k, v in pairs], quote_via=urllib.parse.quote)


def decode_properties(text: str) -> dict[str, str]:
    """The inverse, as the SDK parses: split on & and the first =, `unquote` (never unquote_plus)."""
    props: dict[str, str] = {}
    for entry in filter(None, text.split("&")):
        key, _, value = entry.partition("=")
        props[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return props


def input_topic(device_id: str, module_id: str, input_name: str, properties: Properties = ()) -> str:
    """Where edgeHub delivers a message to a module's input."""
    name = urllib.parse.quote(input_name, safe="")
    return f"devices/{device_id}/modules/{module_id}/inputs/{name}/{encode_properties(properties)}"


def inputs_filter(device_id: str, module_id: str) -> str:
    return f"devices/{device_id}/modules/{module_id}/inputs/#"


def outputs_filter(device_id: str, module_id: str) -> str:
    """Everything a module sends (all outputs); the output name is the `$.on` property."""
    return f"devices/{device_id}/modules/{module_id}/messages/events/#"


@dataclass(frozen=True)
class EdgeMessage:
    """One message seen by the test side, with its topic's properties decoded."""

    topic: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mqtt(cls, msg: mqtt.MQTTMessage) -> EdgeMessage:
        topic = msg.topic
        props = ""
        if "/messages/events/" in topic:
            props = topic.split("/messages/events/", 1)[1]
        elif "/inputs/" in topic:
            parts = topic.split("/")
            props = parts[6] if len(parts) > 6 else ""
        return cls(topic, bytes(msg.payload), decode_properties(props))

    @property
    def output_name(self) -> str | None:
        return self.properties.get("$.on")

    @property
    def input_name(self) -> str | None:
        parts = self.topic.split("/")
        return urllib.parse.unquote(parts[5]) if len(parts) > 5 and parts[4] == "inputs" else None

    @property
    def message_id(self) -> str | None:
        return self.properties.get("$.mid")

    @property
    def correlation_id(self) -> str | None:
        return self.properties.get("$.cid")

    @property
    def content_type(self) -> str | None:
        return self.properties.get("$.ct")

    @property
    def content_encoding(self) -> str | None:
        return self.properties.get("$.ce")

    @property
    def custom_properties(self) -> dict[str, str]:
        return {k: v for k, v in self.properties.items() if k not in SYSTEM_PROPERTIES}


# --- the test side --------------------------------------------------------------------------------


class EdgeClient:
    """A plain paho-mqtt client: feeds module inputs, collects what modules send.

    Every message on a subscribed topic goes to `messages` (a queue.Queue), except barrier tokens.
    """

    def __init__(self, host: str, port: int, client_id: str | None = None, clean_session: bool = True) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"edge-test-{secrets.token_hex(4)}"
        self.messages: queue.Queue[EdgeMessage] = queue.Queue()
        self._barrier_topic = f"edge-test/barrier/{secrets.token_hex(6)}"
        self._barriers: dict[bytes, threading.Event] = {}
        self._acks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connect_rc: int | None = None
        self._client = mqtt.Client(client_id=self.client_id, clean_session=clean_session, protocol=mqtt.MQTTv311)
        self._client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_ack
        self._client.on_unsubscribe = self._on_ack

    def _on_connect(self, _client: mqtt.Client, _userdata: object, _flags: dict, rc: int) -> None:
        self._connect_rc = rc
        self._connected.set()

    def _on_ack(self, _client: mqtt.Client, _userdata: object, mid: int, *_rest: object) -> None:
        with self._lock:
            event = self._acks.setdefault(mid, threading.Event())
        event.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._barrier_topic:
            with self._lock:
                event = self._barriers.pop(bytes(msg.payload), None)
            if event is not None:
                event.set()
            return
        self.messages.put(EdgeMessage.from_mqtt(msg))

    def connect(self, timeout: float = 5.0) -> EdgeClient:
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout) or self._connect_rc != 0:
            self.close()
            raise EdgeTestError(f"test client could not connect to {self.host}:{self.port} (rc={self._connect_rc})")
        self._wait_ack(self._client.subscribe(self._barrier_topic, qos=1), timeout, "subscribe")
        return self

    def _wait_ack(self, result: tuple[int, int | None], timeout: float, what: str) -> None:
        rc, mid = result
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise EdgeTestError(f"{what} failed: {mqtt.error_string(rc)}")
        with self._lock:
            event = self._acks.setdefault(mid, threading.Event())
        if not event.wait(timeout):
            raise EdgeTestError(f"no {what} acknowledgement within {timeout:.0f}s")
        with self._lock:
            self._acks.pop(mid, None)

    def subscribe(self, topic_filter: str, timeout: float = 5.0) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        self._wait_ack(self._client.subscribe(topic_filter, qos=1), timeout, f"subscribe {topic_filter}")

    def publish(self, topic: str, body: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(topic, body, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise EdgeTestError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return info

    def send_to_input(
        self,
        device_id: str,
        module_id: str,
        input_name: str,
        body: bytes | str,
        properties: Properties = (),
    ) -> mqtt.MQTTMessageInfo:
        """Deliver a message to a module's input, as edgeHub does (QoS 1)."""
        return self.publish(input_topic(device_id, module_id, input_name, properties), body)

    @staticmethod
    def wait_published(infos: Iterable[mqtt.MQTTMessageInfo], timeout: float) -> None:
        """Wait until the broker has acknowledged every publish (PUBACK)."""
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise EdgeTestError(f"publish mid={info.mid} not acknowledged within {timeout:.0f}s")

    def barrier(self, timeout: float = 5.0) -> None:
        """Return once everything the broker queued for us before now has reached `messages`.

        Mosquitto sends a client's messages in order, so a token we publish to ourselves arrives
        after everything the broker had already routed to us.
        """
        token = secrets.token_bytes(8)
        event = threading.Event()
        with self._lock:
            self._barriers[token] = event
        self.publish(self._barrier_topic, token)
        if not event.wait(timeout):
            raise EdgeTestError(f"barrier not seen within {timeout:.0f}s")

    def collect(self, count: int, timeout: float) -> list[EdgeMessage]:
        """Exactly `count` messages from the queue, or EdgeTestError naming how many came."""
        deadline = time.monotonic() + timeout
        got: list[EdgeMessage] = []
        while len(got) < count:
            try:
                got.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise EdgeTestError(f"got {len(got)} of {count} messages within {timeout:.0f}s") from None
        return got

    def drain(self) -> list[EdgeMessage]:
        """Whatever is in the queue now, without waiting."""
        got: list[EdgeMessage] = []
        while True:
            try:
                got.append(self.messages.get_nowait())
            except queue.Empty:
                return got

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()


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
