"""The workload API (localedge/workload.py) over its real unix socket, and a module on the production path.

The API is exercised by the SDK's own workload client (`azure.iot.device.iothub.edge_hsm.IoTEdgeHsm`),
so requests are exactly what a module sends, and by a plain requests-unixsocket session for the
requests the SDK never makes (the 400s and 404s).

End to end: `python -m app` gets only the `IOTEDGE_*` variables edgeAgent gives it, so
`create_from_edge_environment()` fetches the trust bundle, has its SAS token signed over the socket and
connects over TLS to a real Mosquitto (localedge.broker). No sleeps: bounded waits on events and exits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import requests_unixsocket
from azure.iot.device.iothub.edge_hsm import IoTEdgeError, IoTEdgeHsm

from app.settings import ENV_NAMES
from localedge.broker import Broker
from localedge.processes import ModuleProcess, module_environment
from localedge.twin import Twin
from localedge.wire import EdgeClient
from localedge.workload import DEFAULT_API_VERSION, WorkloadAPI, production_environment
from tests import test_transport
from tests.helpers import reading
from tests.test_transport import DEVICE, MODULE, OUTPUT, assert_clean_log, send, stop_and_collect_rest

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


def request(
    api: WorkloadAPI, method: str, path: str, body: object = None, version: str | None = DEFAULT_API_VERSION
) -> tuple[int, Any]:
    """(status, JSON body) of one raw request over the socket."""
    url = f"http+unix://{urllib.parse.quote(str(api.socket_path), safe='')}{path}"
    data = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
    with requests_unixsocket.Session() as session:
        resp = session.request(method, url, params={} if version is None else {"api-version": version}, data=data, timeout=5)
    assert resp.headers["Content-Type"] == "application/json"
    return resp.status_code, resp.json()


def sign_request(message: bytes = b"x", **changes: object) -> dict[str, object]:
    """A sign request as the SDK sends it, with `changes` to break it."""
    return {"keyId": "primary", "algo": "HMACSHA256", "data": base64.b64encode(message).decode(), **changes}


# --- the API on its own -------------------------------------------------------------------------------


def test_sdk_client_gets_trust_bundle_and_correct_digest(api: WorkloadAPI) -> None:
    hsm = IoTEdgeHsm(module_id=MODULE, generation_id=GENID, workload_uri=api.uri, api_version=DEFAULT_API_VERSION)
    to_sign = f"{HUB}%2Fdevices%2F{DEVICE}%2Fmodules%2F{MODULE}\n1767225600"  # what a SAS token signs

    assert hsm.get_certificate() == PEM
    digest = hsm.sign(to_sign)

    expected = hmac.new(api.module_key(MODULE), to_sign.encode(), hashlib.sha256).digest()
    assert base64.b64decode(digest) == expected
    assert len(api.module_key(MODULE)) == 32
    assert api.counts() == {"/trust-bundle": 1, SIGN_PATH: 1}


def test_redeploy_keeps_key_and_refuses_old_generation(api: WorkloadAPI) -> None:
    key = api.module_key(MODULE)
    api.add_module(MODULE, "new-generation")

    assert api.module_key(MODULE) == key
    assert request(api, "POST", SIGN_PATH, sign_request())[0] == 404
    status, body = request(api, "POST", f"/modules/{MODULE}/genid/new-generation/sign", sign_request(b"abc"))
    assert status == 200
    assert base64.b64decode(body["digest"]) == hmac.new(key, b"abc", hashlib.sha256).digest()


def test_sdk_client_raises_on_unknown_module(api: WorkloadAPI) -> None:
    hsm = IoTEdgeHsm(module_id="other", generation_id=GENID, workload_uri=api.uri, api_version=DEFAULT_API_VERSION)
    with pytest.raises(IoTEdgeError, match="Unable to sign data"):
        hsm.sign("data")
    assert api.counts() == {f"/modules/other/genid/{GENID}/sign": 1}


@pytest.mark.parametrize(
    ("method", "path", "body", "version", "status", "message"),
    [
        ("GET", "/trust-bundle", None, None, 400, "invalid api-version"),
        ("GET", "/trust-bundle", None, "2099-01-01", 400, "invalid api-version"),
        ("POST", SIGN_PATH, sign_request(), None, 400, "invalid api-version"),
        ("GET", "/modules", None, DEFAULT_API_VERSION, 404, "no route for GET /modules"),
        ("GET", SIGN_PATH, None, DEFAULT_API_VERSION, 404, "no route"),
        ("POST", "/trust-bundle", None, DEFAULT_API_VERSION, 404, "no route"),
        ("POST", f"/modules/other/genid/{GENID}/sign", sign_request(), DEFAULT_API_VERSION, 404, "module 'other'"),
        ("POST", f"/modules/{MODULE}/genid/0/sign", sign_request(), DEFAULT_API_VERSION, 404, "generation id '0'"),
        ("POST", SIGN_PATH, "not json", DEFAULT_API_VERSION, 400, "body must be JSON"),
        ("POST", SIGN_PATH, ["primary"], DEFAULT_API_VERSION, 400, "body must be JSON"),
        ("POST", SIGN_PATH, {"keyId": "primary"}, DEFAULT_API_VERSION, 400, "body must be JSON"),
        ("POST", SIGN_PATH, sign_request(keyId="secondary"), DEFAULT_API_VERSION, 400, "unsupported keyId"),
        ("POST", SIGN_PATH, sign_request(algo="HMACSHA1"), DEFAULT_API_VERSION, 400, "unsupported algo"),
        ("POST", SIGN_PATH, sign_request(data="not base64!"), DEFAULT_API_VERSION, 400, "data must be base64"),
        ("POST", SIGN_PATH, sign_request(data=7), DEFAULT_API_VERSION, 400, "data must be base64"),
    ],
)
def test_refusals_are_json_messages(
    api: WorkloadAPI, method: str, path: str, body: object, version: str | None, status: int, message: str
) -> None:
    got_status, got_body = request(api, method, path, body, version)
    assert got_status == status
    assert list(got_body) == ["message"] and message in got_body["message"]
    assert api.counts() == {path: 1}


def test_socket_is_private_and_removed_on_stop() -> None:
    api = WorkloadAPI(PEM).start()
    try:
        sock, directory = api.socket_path, api.socket_path.parent
        assert api.uri == f"unix://{sock}" and api.uri.startswith("unix:///")
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert request(api, "GET", "/trust-bundle") == (200, {"certificate": PEM})
    finally:
        api.stop()
    assert not sock.exists() and not directory.exists()
    api.stop()  # twice is harmless


# --- a module on the production path ------------------------------------------------------------------


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
