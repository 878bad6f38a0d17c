"""LocalEdge: a whole deployment on one machine, with no Docker and no Azure.

Per run: one temp directory (removed at the end) holding a throwaway CA, one Mosquitto per module (edgeHub's
stand-in, on its own 127.0.0.N:8883), the control socket and the module logs. The hub routes between the
brokers, each module's twin is served on its broker, and the modules run as children on their real SDK
clients (simulator-path variables, or the production path through a local workload API).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import IO, Any

from app.settings import ENV_NAMES
from localedge.agent import Backoff, Supervisor
from localedge.blobstore import BlobStore
from localedge.broker import Broker
from localedge.broker_watch import BrokerWatch
from localedge.certs import CertAuthority, shared_dir
from localedge.control import ControlServer, edge_name
from localedge.create_options import Applied as AppliedOptions
from localedge.create_options import apply as apply_create_options
from localedge.deployment import INFERENCE, Deployment, ModuleSpec
from localedge.errors import EdgeError
from localedge.hub import Hub
from localedge.link import Link
from localedge.modulecred import COMMAND as MODULECRED
from localedge.modulecred import credentials
from localedge.processes import REPO_ROOT, ModuleProcess, module_environment
from localedge.publish import COMMAND as PUBLISH
from localedge.publish import publish
from localedge.twin import METHOD_RESPONSE, TWIN_GET, TWIN_REPORTED, Twin
from localedge.upstream import UpstreamMessage, UpstreamRecorder
from localedge.wire import outputs_filter
from localedge.workload import WorkloadAPI, production_environment

log = logging.getLogger(__name__)

DEVICE_ID = "localedge-device"
HUB_HOSTNAME = "localedge.azure-devices.net"  # only named in connection strings: nothing connects to it
READY_TIMEOUT_S = 60.0  # the inference module loads its model before it connects
TOKEN_TTL_ENV = "SAS_TOKEN_TTL_S"  # the modules' SAS token lifetime (app and sensor settings)
STOP_TIMEOUT_S = 20.0  # the inference module's SHUTDOWN_TIMEOUT_S (8) + its client shutdown (5) + margin


class LocalEdge:
    """Start with start() (or `with`), stop with stop(): idempotent, also registered with atexit."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        device_id: str = DEVICE_ID,
        production_path: bool = False,
        verbose: bool = False,
        on_upstream: Callable[[UpstreamMessage], None] | None = None,
        control: bool = True,
        keep_run_dir: bool = False,
        ready_timeout: float = READY_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
        trace_brokers: bool = False,
        external: Collection[str] = (),
        name: str | None = None,
        supervise: bool = True,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen
        logs_dir: Path | None = None,
        say: Callable[[str], None] | None = None,
        token_ttl: int | None = None,
        save_sessions: bool = True,
    ) -> None:
        self.deployment = deployment
        self.device_id = device_id
        self.production_path = production_path
        self.verbose = verbose
        self.use_control = control
        self.keep_run_dir = keep_run_dir
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.trace_brokers = trace_brokers  # every broker logs every packet (Broker.trace)
        self.name = name or edge_name(deployment.source.resolve().parent.name)  # control.py reaches it by this name
        self.supervise, self.backoff = supervise, backoff  # restartPolicy applied by agent.Supervisor
        self.logs_dir = logs_dir  # module logs here (kept); None: in the run directory
        self.say = say or _stderr  # what the user is told as it happens (exits, restarts, mounts)
        self.supervisor: Supervisor | None = None
        self.stop_requested = threading.Event()  # a `stop` control request
        self._module_lock = threading.RLock()  # held by whoever replaces a module's process
        self.token_ttl = token_ttl  # SAS token lifetime the modules' SDKs use (SAS_TOKEN_TTL_S); None: theirs (3600 s)
        self.save_sessions = save_sessions  # brokers save sessions on every change (Broker.save_on_change)
        self.broker_watch: BrokerWatch | None = None
        self._broker_locks: dict[str, threading.RLock] = {}  # each held while its broker is stopped or started on purpose
        self._going_down: set[str] = set()  # modules the local edge is taking down: their messages are stored
        self.specs = {m.name: m for m in deployment.running}
        self.external = frozenset(external)  # served (broker, twin, routes) but run by the user: single-module mode
        self.upstream = UpstreamRecorder(self._error_output, on_upstream)
        self.run_dir: Path | None = None
        self.ca: CertAuthority | None = None
        self.brokers: dict[str, Broker] = {}
        self.twins: dict[str, Twin] = {}
        self.hub: Hub | None = None
        self.modules: dict[str, ModuleProcess] = {}
        self.exit_codes: dict[str, int | None] = {}
        self.control: ControlServer | None = None
        self.workload: WorkloadAPI | None = None
        self.blobs: BlobStore | None = None  # blob storage's stand-in: `publish` puts model bundles there
        self.ready_at: float | None = None
        self._logs: dict[str, IO[str]] = {}
        self._applied: dict[str, AppliedOptions] = {}
        self._start_order: list[str] = []
        self._stop_lock = threading.Lock()
        self._stopped = False

    # --- start ------------------------------------------------------------------------------------

    def start(self) -> LocalEdge:
        """Everything up, every module ready; on any failure everything started is stopped and EdgeError raised."""
        atexit.register(self.stop)
        try:
            self.run_dir = shared_dir("localedge-run-")
            self.logs_dir = self.logs_dir or self.run_dir / "logs"
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self.ca = CertAuthority.create(self.run_dir / "ca")
            self.blobs = BlobStore(directory=self.run_dir / "blobs").start()
            for name in self.specs:
                directory = self.run_dir / "brokers" / name
                self.brokers[name] = Broker(self.ca, directory, trace=self.trace_brokers, save_on_change=self.save_sessions)
                self._broker_locks[name] = threading.RLock()
                self.brokers[name].start()
            # Routes and twins are served before any module connects: nothing a module sends at start is lost.
            self.hub = Hub(
                self.device_id,
                self.deployment.routes,
                self.brokers,
                self.upstream,
                store_dir=self.run_dir / "store",
                default_ttl_s=self.deployment.time_to_live_secs,
                accepting=self.accepting,
            ).start()
            for name, spec in self.specs.items():
                self.twins[name] = Twin(self.brokers[name], self.device_id, name, spec.desired).start()
            if self.production_path:
                self.workload = WorkloadAPI(self.ca.cert).start()  # its socket in a 0700 dir of its own
            for spec in self.deployment.modules.values():
                if not spec.running:
                    self.say(f"module '{spec.name}': status {spec.status}, not started (as edgeAgent)")
            for wave in self.deployment.start_waves():
                self._start_wave([name for name in wave if name not in self.external])
            if self.supervise:
                self.supervisor = Supervisor(
                    {name: spec.restart_policy for name, spec in self.specs.items() if name in self.modules},
                    self._module,
                    self._respawn,
                    self._module_lock,
                    backoff=self.backoff,
                    health_ports={name: _http_port(self.modules[name].env) for name in self.modules},
                    ready_timeout=self.ready_timeout,
                    say=self.say,
                ).start()
            self.broker_watch = BrokerWatch(self.brokers, self.restart_broker, self._broker_locks).start()
            if self.use_control:
                self.control = ControlServer(self.run_dir / "control.sock", self.handle_control, self.name).start()
            self.ready_at = time.perf_counter()
        except BaseException:
            self.stop()
            raise
        return self

    def _environment(self, spec: ModuleSpec) -> dict[str, str]:
        broker = self.brokers[spec.name]
        if self.workload is not None:
            generation_id = secrets.token_hex(8)
            self.workload.add_module(spec.name, generation_id)
            edge_env = production_environment(
                self.workload,
                hub_hostname=HUB_HOSTNAME,
                device_id=self.device_id,
                module_id=spec.name,
                generation_id=generation_id,
                gateway_host=broker.host,
            )
        else:
            edge_env = broker.module_env(self.device_id, spec.name, HUB_HOSTNAME)
        if self.token_ttl is not None:
            edge_env[TOKEN_TTL_ENV] = str(self.token_ttl)
        # The inference module journals its intake under JOURNAL_DIR and keeps rolled-out models under MODEL_STORE
        # (volumes on a device): one each per module in the run directory, so that a module restarted by
        # restart_module() finds what it journaled and installed before.
        assert self.run_dir is not None
        volumes: dict[str, str] = {}
        if spec.kind == INFERENCE:
            journal = self.run_dir / "journal" / spec.name
            journal.mkdir(parents=True, exist_ok=True)  # as the runtime creates a bind mount's directory
            volumes["JOURNAL_DIR"] = str(journal)
            store = self.run_dir / "models" / spec.name  # the model store (MODEL_STORE), a volume as well
            store.mkdir(parents=True, exist_ok=True)
            volumes["MODEL_STORE"] = str(store)
        # The manifest (createOptions' Env, --env) set the module's settings, not whatever this shell exported.
        return module_environment({**volumes, **self._create_options(spec).env, **edge_env}, drop=ENV_NAMES)

    def _create_options(self, spec: ModuleSpec) -> AppliedOptions:
        """The module's createOptions as applied to a process (once; a module run by hand gets them too)."""
        if spec.name not in self._applied:
            assert self.run_dir is not None
            applied = self._applied[spec.name] = apply_create_options(spec.name, spec.env, spec.create, self.run_dir / "volumes")
            for note in applied.notes:
                self.say(note)
        return self._applied[spec.name]

    def _start_wave(self, names: list[str]) -> None:
        """Start these modules together and wait until each is ready (bounded)."""
        for name in names:
            spec = self.specs[name]
            assert self.run_dir is not None and self.logs_dir is not None
            self._logs[name] = open(self.logs_dir / f"{name}.log", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            argv = spec.argv
            applied = self._create_options(spec)
            env = self._environment(spec)
            if applied.cwd is not None and applied.cwd != REPO_ROOT:  # `python -m app` still finds this repository
                env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO_ROOT)) if p)
            module = ModuleProcess(
                env,
                args=argv[1:],
                executable=argv[0],
                cwd=applied.cwd or REPO_ROOT,
                on_line=lambda line, n=name: self._log_line(n, line),
                own_group=True,
            )
            self.modules[name] = module
            self._start_order.append(name)
            try:
                module.start()
            except OSError as exc:
                raise EdgeError(f"module '{name}': cannot run {' '.join(argv)}: {exc}") from None
        deadline = time.monotonic() + self.ready_timeout
        for name in names:
            try:
                self.modules[name].wait_ready(max(0.1, deadline - time.monotonic()))
            except EdgeError as exc:
                raise EdgeError(f"module '{name}' ({' '.join(self.specs[name].command)}) did not start: {exc}") from None
            log.info("module %s ready (pid %d)", name, self.modules[name].pid)

    def _log_line(self, module: str, line: str) -> None:
        with contextlib.suppress(ValueError, OSError):  # the file is closed while the last lines come in
            self._logs[module].write(line + "\n")
        if self.verbose:
            print(f"{module} | {line}", file=sys.stderr, flush=True)

    # --- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child by PID (modules senders first, then the hub, twins and brokers); remove the run dir."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        if self.control is not None:
            self.control.stop()
        if self.supervisor is not None:
            self.supervisor.stop()  # no restart from here on
        if self.broker_watch is not None:
            self.broker_watch.stop()
        for name in reversed(self._start_order):  # sources before their targets: targets finish what they got
            self.exit_codes[name] = self.modules[name].stop(self.stop_timeout)
        if self.hub is not None:
            self.hub.stop()
        for twin in self.twins.values():
            twin.stop()
        for broker in self.brokers.values():
            broker.close()  # and its tmpfs store
        if self.workload is not None:
            self.workload.stop()
        if self.blobs is not None:
            self.blobs.stop()
        for file in self._logs.values():
            file.close()
        if self.run_dir is not None and not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> LocalEdge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults: what bench/faults.py does to a running edge ---------------------------------------

    def signal_module(self, name: str, sig: int) -> None:
        """Send `sig` to module `name`'s process (by PID), e.g. SIGSTOP, then SIGCONT; stop() continues a stopped one."""
        self._module(name).send_signal(sig)

    def kill_module(self, name: str, sig: int = signal.SIGKILL, timeout: float | None = None) -> int:
        """Send `sig` (default SIGKILL: an OOM kill, a crash) to module `name` and wait for it to exit; its exit code.

        Bounded by `timeout` (default: the stop timeout), EdgeError past it. Its broker session stays, so what is
        routed to it meanwhile is queued for its return, as edgeHub stores it.
        """
        module = self._module(name)
        if self.supervisor is not None:
            self.supervisor.hold(name)  # the caller restarts it (restart_module), not the supervisor
        self._going_down.add(name)
        if self.hub is not None and name in self.hub.forwarders:
            self.hub.forwarders[name].hold()  # a SIGTERMed module unsubscribes: what comes now is stored for its return
        module.send_signal(sig)
        return module.wait_exit(self.stop_timeout if timeout is None else timeout)

    def restart_module(self, name: str, ready_timeout: float | None = None) -> ModuleProcess:
        """Start module `name` again as edgeAgent restarts a container: the same command and environment (the same
        identity and JOURNAL_DIR); wait until it is ready. The previous process must have exited (kill_module)."""
        with self._module_lock:
            old = self._module(name)
            if old.process is not None and old.process.poll() is None:
                raise EdgeError(f"module '{name}' (pid {old.pid}) is still running; kill_module() it first")
            module = self._respawn(name)
        module.wait_ready(self.ready_timeout if ready_timeout is None else ready_timeout)
        self._going_down.discard(name)
        if self.hub is not None and name in self.hub.forwarders:
            self.hub.forwarders[name].release()  # what was stored for it meanwhile, within its TTL
        if self.supervisor is not None:
            self.supervisor.release(name)
        log.info("module %s restarted (pid %d)", name, module.pid)
        return module

    def _respawn(self, name: str) -> ModuleProcess:
        """Start module `name` again (its previous process has exited): the same command, environment and directory."""
        with self._module_lock:
            old = self._module(name)
            old.stop(0)  # reaps it and closes its pipe
            module = old.again()
            try:
                module.start()
            except OSError as exc:
                raise EdgeError(f"cannot run {' '.join([module.executable, *module.args])}: {exc}") from None
            self.modules[name] = module
            return module

    def accepting(self, name: str) -> bool:
        """Whether module `name` can take messages now: its process up and ready, and not being taken down."""
        if name in self.external:  # run by the user: its broker session holds what comes until it connects
            return True
        module = self.modules.get(name)
        return (
            name not in self._going_down
            and module is not None
            and module.ready.is_set()
            and module.process is not None
            and module.process.poll() is None
        )

    def restart_broker(self, name: str, *, kill: bool = False, down_s: float = 0.0, timeout: float = 30.0) -> None:
        """Take module `name`'s broker (its edgeHub) down and start it again on the same address and store.

        kill=False stops it with SIGTERM (Mosquitto saves its sessions and queues: edgeHub restarted cleanly);
        kill=True SIGKILLs it (what it had not saved is gone: with `autosave_interval 0`, everything since its last
        clean stop). It stays down `down_s` seconds (an outage). The local edge's own subscriptions on it (routes,
        twin, methods) are made again, since edgeHub's own state outlives its restarts; the module's are its own.
        `timeout` bounds the start and the re-subscriptions (a broker reloading a large store takes a while).
        """
        broker = self.brokers[name]
        with self._broker_locks[name]:  # not restarted by the broker watch meanwhile
            if kill:
                broker.kill()
            else:
                broker.stop()
            if down_s > 0:
                time.sleep(down_s)  # the outage itself: nothing to wait for
            broker.start(timeout)
        topics: list[tuple[Link, str]] = []
        if self.hub is not None and name in self.hub.links:
            topics.append((self.hub.links[name], outputs_filter(self.device_id, name)))
        twin_link = self.twins[name].link if name in self.twins else None
        topics += [(twin_link, t + "#") for t in (TWIN_GET, TWIN_REPORTED, METHOD_RESPONSE) if twin_link is not None]
        deadline = time.monotonic() + timeout
        for link, topic in topics:
            while True:  # the link reconnects by itself within ~1 s; until then subscribe() fails
                try:
                    link.subscribe(topic, max(0.1, deadline - time.monotonic()))
                    break
                except EdgeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def restart_hub(self, *, kill: bool = False, down_s: float = 0.0, timeout: float = 30.0) -> None:
        """edgeHub restarting: every broker down (SIGTERM, or SIGKILL with kill=True) for `down_s`, then back, together
        (as one edgeHub serves every module); the local edge's own subscriptions made again (restart_broker)."""
        failures: list[str] = []

        def restart(name: str) -> None:
            try:
                self.restart_broker(name, kill=kill, down_s=down_s, timeout=timeout)
            except EdgeError as exc:
                failures.append(f"{name}: {exc}")

        threads = [threading.Thread(target=restart, args=(name,), name=f"restart-{name}") for name in self.brokers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + down_s + 10)
        if failures or any(t.is_alive() for t in threads):
            raise EdgeError("edgeHub did not come back: " + ("; ".join(failures) or "a broker restart hung"))

    def _module(self, name: str) -> ModuleProcess:
        try:
            return self.modules[name]
        except KeyError:
            raise EdgeError(f"no module '{name}' (modules: {', '.join(self.modules) or 'none'})") from None

    # --- twins, methods and control ---------------------------------------------------------------

    def _error_output(self, module: str) -> str | None:
        """Where `module` sends error records now: its twin's desired properties can move it."""
        spec, twin = self.specs.get(module), self.twins.get(module)
        if spec is None:
            return None
        return spec.error_output(twin.desired if twin is not None else spec.desired)  # a dict read: no copy per message

    def twin(self, module: str) -> Twin:
        try:
            return self.twins[module]
        except KeyError:
            raise EdgeError(f"no running module '{module}' (running: {', '.join(self.twins) or 'none'})") from None

    def patch_desired(self, module: str, patch: dict[str, Any]) -> int:
        return self.twin(module).patch_desired(patch)

    def invoke(self, module: str, method: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        return self.twin(module).invoke(method, payload, timeout)

    def wait_reported(self, module: str, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        return self.twin(module).wait_reported(predicate, timeout)

    def status(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "name": self.name,
            "run_dir": str(self.run_dir),
            "logs_dir": str(self.logs_dir),
            "modules": {
                name: {
                    "pid": m.pid,
                    "running": m.process is not None and m.process.poll() is None,
                    "broker": self.brokers[name].host,
                    "restartPolicy": self.specs[name].restart_policy,
                    "restarts": self.supervisor.restarts.get(name, 0) if self.supervisor is not None else 0,
                }
                for name, m in self.modules.items()
            },
            "upstream": self.upstream.summary(self.ready_at),
            "store": self.hub.store_counts() if self.hub is not None else {},
            "broker_restarts": dict(self.broker_watch.restarts) if self.broker_watch is not None else {},
        }

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control request (see control.py) → its answer."""
        command = request.get("command")
        if command == "desired":
            return {"module": request["module"], "version": self.patch_desired(request["module"], request["patch"])}
        if command == "twin":
            return {"module": request["module"], "twin": self.twin(request["module"]).document()}
        if command == "call":
            timeout = float(request.get("timeout", 30.0))
            status, payload = self.invoke(request["module"], request["method"], request.get("payload"), timeout)
            return {"status": status, "payload": payload}
        if command == "status":
            return self.status()
        if command == MODULECRED:
            return credentials(request.get("module"), self.specs, self._environment, self.modules)
        if command == PUBLISH and self.blobs is not None:
            bundle, expiry_s, fault = Path(request["bundle"]), float(request.get("expiry_s", 3600.0)), request.get("fault")
            return publish(self.blobs, bundle, expiry_s, fault, request.get("module") or INFERENCE)
        if command == "stop":
            self.stop_requested.set()  # the run's main thread stops everything
            return {"stopping": self.name}
        if command == "restart-hub":
            kill, down_s = bool(request.get("kill", False)), float(request.get("down_s", 0.0))
            self.restart_hub(kill=kill, down_s=down_s)
            return {"restarted": sorted(self.brokers), "kill": kill, "down_s": down_s}
        raise EdgeError(f"unknown command {command!r}")


def _http_port(env: Mapping[str, str]) -> int | None:
    """The module's HTTP port for the health probe (the inference module's HTTP_PORT; 0 or none: no probe)."""
    try:
        port = int(env.get("HTTP_PORT", "0"))
    except ValueError:
        return None
    return port or None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
