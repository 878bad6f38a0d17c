"""The workload API (localedge/workload.py) over its real unix socket, in process (a module on the production
path is in tests/integration/test_workload.py).

The API is exercised by the SDK's own workload client (`azure.iot.device.iothub.edge_hsm.IoTEdgeHsm`),
so requests are exactly what a module sends, and by a plain requests-unixsocket session for the
requests the SDK never makes (the 400s and 404s).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests_unixsocket
from azure.iot.device.iothub.edge_hsm import IoTEdgeError, IoTEdgeHsm

from localedge.workload import DEFAULT_API_VERSION, WorkloadAPI

DEVICE, MODULE = "edge-test-device", "inference"

GENID = "638712345678901234"
HUB = "edge-test.azure-devices.net"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
SIGN_PATH = f"/modules/{MODULE}/genid/{GENID}/sign"


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
