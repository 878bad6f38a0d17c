"""A module on the production path (the API itself is tested in tests/unit/test_workload_api.py).

End to end: `python -m app` gets only the `IOTEDGE_*` variables edgeAgent gives it, so
`create_from_edge_environment()` fetches the trust bundle, has its SAS token signed over the socket and
connects over TLS to a real Mosquitto (localedge.broker). No sleeps: bounded waits on events and exits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest

from app.settings import ENV_NAMES
from localedge.broker import Broker
from localedge.processes import ModuleProcess, module_environment
from localedge.twin import Twin
from localedge.wire import EdgeClient
from localedge.workload import WorkloadAPI, production_environment
from tests.helpers import reading
from tests.integration import test_transport
from tests.integration.test_transport import DEVICE, MODULE, OUTPUT, assert_clean_log, send, stop_and_collect_rest

edge = test_transport.edge  # the test side's client, subscribed to the module's outputs

GENID = "638712345678901234"
HUB = "edge-test.azure-devices.net"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
SIGN_PATH = f"/modules/{MODULE}/genid/{GENID}/sign"
START_TIMEOUT = 30.0  # python -m app imports scikit-learn and loads the model before it connects


@pytest.fixture
def api() -> Iterator[WorkloadAPI]:
    with WorkloadAPI(PEM) as workload:
        workload.add_module(MODULE, GENID)
        yield workload


def edge_agent_env(api: WorkloadAPI, gateway_host: str, generation_id: str = GENID) -> dict[str, str]:
    """Only what edgeAgent gives a module (and no HTTP port: test modules must not compete for one)."""
    variables = production_environment(
        api, hub_hostname=HUB, device_id=DEVICE, module_id=MODULE, generation_id=generation_id, gateway_host=gateway_host
    )
    env = module_environment(variables | {"HTTP_PORT": "0", "LOG_LEVEL": "INFO"}, drop=ENV_NAMES)
    assert "EdgeHubConnectionString" not in env and "EdgeModuleCACertificateFile" not in env
    return env


def wait_exit(module: ModuleProcess, timeout: float = START_TIMEOUT) -> int:
    """The exit code of a module that is expected to exit by itself."""
    assert module.process is not None
    code = module.process.wait(timeout)
    assert module.closed.wait(5), "stderr still open after exit"
    return code


def test_module_takes_production_path_end_to_end(
    broker: Broker, serve_twin: Callable[..., Twin], edge: EdgeClient, launch: Callable[..., ModuleProcess]
) -> None:
    serve_twin(DEVICE, MODULE)
    with WorkloadAPI(broker.ca.cert) as api:
        api.add_module(MODULE, GENID)
        module = launch(edge_agent_env(api, broker.host))
        module.wait_ready(START_TIMEOUT)

        edge.wait_published([send(edge, "reading-1", orjson.dumps(reading(50.0)), sequenceNumber="1")], timeout=10)
        [output] = edge.collect(1, timeout=20)
        code, extra = stop_and_collect_rest(module, edge)
        counts = api.counts()

    assert code == 0
    assert extra == []
    assert output.output_name == OUTPUT
    assert output.correlation_id == "reading-1"
    assert (output.content_type, output.content_encoding) == ("application/json", "utf-8")
    assert orjson.loads(output.body)["label"] in {"normal", "anomaly"}
    assert counts["/trust-bundle"] >= 1 and counts[SIGN_PATH] >= 1  # the production path was taken
    assert set(counts) == {"/trust-bundle", SIGN_PATH}
    assert_clean_log(module)


def test_module_exits_when_workload_socket_is_missing(launch: Callable[..., ModuleProcess]) -> None:
    with WorkloadAPI(PEM) as api:
        env = edge_agent_env(api, "127.0.0.1")
    # iotedged is down: IOTEDGE_WORKLOADURI names a socket that is no longer there.
    assert not api.directory and env["IOTEDGE_WORKLOADURI"].startswith("unix:///")
    module = launch(env)

    code = wait_exit(module)

    assert code != 0
    assert not module.ready.is_set()
    # What the module says today (the SDK's requests error): names the errno, not the workload socket.
    assert module.lines_with("No such file or directory"), module.log_tail()
    assert "Traceback" not in module.log


def test_module_exits_when_workload_api_refuses_to_sign(launch: Callable[..., ModuleProcess]) -> None:
    with WorkloadAPI(PEM) as api:
        api.add_module(MODULE, GENID)
        module = launch(edge_agent_env(api, "127.0.0.1", generation_id="stale-generation"))
        code = wait_exit(module)
        counts = api.counts()

    assert code != 0
    assert not module.ready.is_set()
    assert counts == {"/trust-bundle": 1, f"/modules/{MODULE}/genid/stale-generation/sign": 1}
    assert "Traceback" not in module.log and module.lines_with("error:"), module.log_tail()
