"""The IoT Edge workload API on a unix socket, so a module takes its production start-up path locally.

On a device, edgeAgent starts a module with `IOTEDGE_*` variables and the SDK's
`create_from_edge_environment()` asks the workload API (iotedged / aziot-edged) for the trust bundle
and to sign its SAS token: `GET /trust-bundle` and `POST /modules/{mid}/genid/{genid}/sign`, both with
`?api-version=V`. This is that API for a local edge: stdlib only, one thread per connection.

Each registered module gets a random 32-byte key; signing is real HMAC-SHA256 with it (the local broker
does not check SAS tokens, but the digest is what iotedged would compute with that key). Errors are
JSON `{"message": ...}` as iotedged sends them.

Permissions: the socket lives in a fresh 0700 directory (mkdtemp) and is itself chmod 0600, so only
this user can connect. Modules here run as the same user; a module run as another user could not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.server
import json
import logging
import re
import secrets
import shutil
import socketserver
import tempfile
import threading
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

from localedge.errors import EdgeError

log = logging.getLogger(__name__)

# The versions edgeHub's own workload client knows (Microsoft.Azure.Devices.Edge.Util.Edged.ApiVersion).
API_VERSIONS = frozenset({"2018-06-28", "2019-01-30", "2019-10-22", "2019-11-05", "2020-07-07"})
DEFAULT_API_VERSION = "2019-01-30"
MAX_BODY = 64 * 1024  # a sign request is a few hundred bytes
_SIGN_PATH = re.compile(r"^/modules/([^/]+)/genid/([^/]+)/sign$")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a stuck client must not block stop()
    api: WorkloadAPI

    def handle_error(self, request: object, client_address: object) -> None:
        # e.g. a client that hung up mid-request; the base class prints a traceback to stderr.
        log.debug("workload API: request failed", exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "localedge-workload/1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.server.api._count(url.path)
        try:
            status, body = self.server.api._route(method, url.path, urllib.parse.parse_qs(url.query), self._body())
        except _HTTPError as exc:
            status, body = exc.status, {"message": str(exc)}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _HTTPError(400, "bad Content-Length") from None
        if not 0 <= length <= MAX_BODY:
            raise _HTTPError(400, f"body must be at most {MAX_BODY} bytes")
        return self.rfile.read(length)

    def log_message(self, format: str, *args: Any) -> None:
        # The base class prefixes client_address[0], which an AF_UNIX peer does not have.
        log.debug("workload API: " + format, *args)


class WorkloadAPI:
    """The workload API on `unix://<dir>/workload.sock`: trust bundle and HMAC signing per module.

    `trust_bundle` is the local edge's CA certificate (PEM text, or a Path to it): the module trusts
    it for the broker's TLS. `counts()` tells how many requests each path got.
    """

    def __init__(self, trust_bundle: str | Path, api_versions: frozenset[str] = API_VERSIONS) -> None:
        self.trust_bundle = trust_bundle.read_text() if isinstance(trust_bundle, Path) else trust_bundle
        self.api_versions = api_versions
        self.directory: Path | None = None
        self._modules: dict[str, tuple[str, bytes]] = {}  # module id -> (generation id, key)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- registry ---------------------------------------------------------------------------------

    def add_module(self, module_id: str, generation_id: str) -> None:
        """Register (or redeploy: new generation id, same key) a module."""
        with self._lock:
            key = self._modules[module_id][1] if module_id in self._modules else secrets.token_bytes(32)
            self._modules[module_id] = (generation_id, key)

    def module_key(self, module_id: str) -> bytes:
        """The key `sign` uses for this module (what iotedged derives from the module's identity)."""
        with self._lock:
            return self._modules[module_id][1]

    def counts(self) -> Counter[str]:
        """Requests per URL path (query left off), whatever their outcome."""
        with self._lock:
            return Counter(self._counts)

    def _count(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        if self.directory is None:
            raise EdgeError("the workload API is not started")
        return self.directory / "workload.sock"

    @property
    def uri(self) -> str:
        """The value of IOTEDGE_WORKLOADURI: `unix:///.../workload.sock`."""
        return f"unix://{self.socket_path}"

    def start(self) -> WorkloadAPI:
        if self._server is not None:
            return self
        self.directory = Path(tempfile.mkdtemp(prefix="edge-workload-"))  # 0700
        server = _Server(str(self.socket_path), _Handler)
        self.socket_path.chmod(0o600)
        server.api = self
        self._server = server
        # A short poll interval: shutdown() waits for the serving loop to wake up and notice.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="workload-api", daemon=True)
        self._thread.start()
        log.debug("workload API on %s", self.uri)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and remove the socket and its directory."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # returns once serve_forever has left its loop
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> WorkloadAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- requests ---------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, dict[str, str]]:
        sign = _SIGN_PATH.match(path)
        if (method, path) == ("GET", "/trust-bundle"):
            self._check_version(query)
            return 200, {"certificate": self.trust_bundle}
        if method == "POST" and sign:
            self._check_version(query)
            module_id, generation_id = (urllib.parse.unquote(part) for part in sign.groups())
            return 200, {"digest": self._sign(module_id, generation_id, body)}
        raise _HTTPError(404, f"no route for {method} {path}")

    def _check_version(self, query: dict[str, list[str]]) -> None:
        versions = query.get("api-version", [])
        if len(versions) != 1 or versions[0] not in self.api_versions:
            raise _HTTPError(400, f"invalid api-version {versions!r}; supported: {', '.join(sorted(self.api_versions))}")

    def _sign(self, module_id: str, generation_id: str, body: bytes) -> str:
        with self._lock:
            registered = self._modules.get(module_id)
        if registered is None or registered[0] != generation_id:
            raise _HTTPError(404, f"module {module_id!r} with generation id {generation_id!r} not found")
        try:
            request = json.loads(body)
            key_id, algo, data = request["keyId"], request["algo"], request["data"]
        except (ValueError, TypeError, KeyError):
            raise _HTTPError(400, 'body must be JSON {"keyId", "algo", "data"}') from None
        if key_id != "primary":
            raise _HTTPError(400, f"unsupported keyId {key_id!r}; only 'primary'")
        if algo != "HMACSHA256":
            raise _HTTPError(400, f"unsupported algo {algo!r}; only 'HMACSHA256'")
        try:
            message = base64.b64decode(data, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise _HTTPError(400, "data must be base64") from None
        return base64.b64encode(hmac.new(registered[1], message, hashlib.sha256).digest()).decode()


def production_environment(
    api: WorkloadAPI,
    *,
    hub_hostname: str,
    device_id: str,
    module_id: str,
    generation_id: str,
    gateway_host: str,
    api_version: str = DEFAULT_API_VERSION,
) -> dict[str, str]:
    """The variables edgeAgent gives a module, pointing at `api` and at the broker on `gateway_host`.

    `gateway_host` must be in the broker's server certificate SAN (a Broker's 127.0.0.N is).
    """
    return {
        "IOTEDGE_IOTHUBHOSTNAME": hub_hostname,
        "IOTEDGE_DEVICEID": device_id,
        "IOTEDGE_MODULEID": module_id,
        "IOTEDGE_GATEWAYHOSTNAME": gateway_host,
        "IOTEDGE_MODULEGENERATIONID": generation_id,
        "IOTEDGE_WORKLOADURI": api.uri,
        "IOTEDGE_APIVERSION": api_version,
        "IOTEDGE_AUTHSCHEME": "sasToken",
    }
