"""Fixtures of the integration tests: real Mosquitto brokers (with twins), the test side's MQTT
client, and module processes, each stopped by PID when its test ends, passed or failed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from localedge.broker import Broker, find_mosquitto
from localedge.certs import CertAuthority, shared_dir
from localedge.deployment import load_deployment
from localedge.edge import LocalEdge
from localedge.processes import ModuleProcess
from localedge.twin import Twin
from localedge.wire import EdgeClient, outputs_filter


def mosquitto_or_skip() -> None:
    """Skip where mosquitto is missing (a developer machine); in CI its absence is a failure."""
    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; .ci/run installs it")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


@pytest.fixture(scope="session")
def ca() -> Iterator[CertAuthority]:
    """One throwaway CA for the session; every broker's server certificate comes from it."""
    mosquitto_or_skip()
    directory = shared_dir("edge-test-ca-")
    try:
        yield CertAuthority.create(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def broker(ca: CertAuthority) -> Iterator[Broker]:
    """One broker per test (and so per module, on its own 127.0.0.N): the SDK's persistent session
    would carry one test's subscriptions into the next."""
    with Broker(ca) as b:
        yield b


@pytest.fixture
def serve_twin(broker: Broker) -> Iterator[Callable[..., Twin]]:
    """serve_twin(device, module, desired={}) -> the module's twin and methods, served on `broker` as
    edgeHub would; start it before the module connects. Stopped after the test."""
    twins: list[Twin] = []

    def serve(device_id: str, module_id: str, desired: Mapping[str, Any] | None = None) -> Twin:
        twin = Twin(broker, device_id, module_id, desired or {}).start()
        twins.append(twin)
        return twin

    yield serve
    for twin in twins:
        twin.stop()


@pytest.fixture
def listen(broker: Broker) -> Iterator[Callable[[str, str], EdgeClient]]:
    """listen(device, module) -> the test side's client on `broker`, subscribed to everything the module sends."""
    clients: list[EdgeClient] = []

    def subscribe(device_id: str, module_id: str) -> EdgeClient:
        client = broker.client()
        clients.append(client)
        client.subscribe(outputs_filter(device_id, module_id))
        return client

    yield subscribe
    for client in clients:
        client.close()


@pytest.fixture
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ModuleProcess]]:
    """launch(env, args=("-m", "app")) -> a started child (not waited for); every one is stopped by PID,
    bounded, after the test, also when it fails. A module without JOURNAL_DIR in `env` gets a journal
    directory of its own (the default, /var/lib/edge-inference/journal, is one per machine)."""
    started: list[ModuleProcess] = []

    def start(env: Mapping[str, str], args: tuple[str, ...] = ("-m", "app")) -> ModuleProcess:
        if args == ("-m", "app") and "JOURNAL_DIR" not in env:
            env = {**env, "JOURNAL_DIR": str(tmp_path_factory.mktemp("journal"))}
        process = ModuleProcess(env, args=args)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


# --- the local edge -----------------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private control state dir (and runs' logs dir): a developer's own running edge and kept logs are not
    touched (the CLI children inherit both)."""
    path = tmp_path / "state"
    monkeypatch.setenv("LOCALEDGE_STATE_DIR", str(path))
    monkeypatch.setenv("LOCALEDGE_RUNS_DIR", str(tmp_path / "runs"))
    return path


@pytest.fixture
def start_edge(state_dir: Path) -> Iterator[Callable[..., LocalEdge]]:
    mosquitto_or_skip()
    edges: list[LocalEdge] = []

    def start(*env: str, manifest: Path | None = None, commands: Sequence[str] = (), **options: Any) -> LocalEdge:
        edge = LocalEdge(load_deployment(manifest, env, commands), **options)
        edges.append(edge)
        return edge.start()

    yield start
    for edge in edges:
        edge.stop()
