"""A blob store on loopback: the local edge's stand-in for Azure Blob Storage, where model bundles wait.

What a device meets when it downloads a blob with a SAS URL, without Azure:
- `GET /<container>/<blob>?sv=...&sr=b&sp=r&se=<expiry>&sig=<HMAC>`: a read SAS, checked as Azure does
  (signature over the blob's path, permissions and expiry); a missing, wrong or expired one answers
  403 with `x-ms-error-code: AuthenticationFailed` and Azure's XML error body.
- `Range: bytes=N-` / `bytes=N-M` -> 206 with Content-Range (416 past the end), as blob storage resumes.
- Faults a real download meets, injected per blob and for a number of requests (`fault()`): slow (a
  byte rate), truncated (the full Content-Length declared, the connection closed early), corrupt (one
  byte changed: a wrong sha256), reset (a TCP reset mid-body), and 403 after expiry (a SAS made with a
  past or short expiry, `sas_url(..., expires_in=...)`).
It runs its own event loop on a thread, so that a test (or the CLI) on any thread can use it. Its
request log (`requests`) keeps blob names and ranges, never the SAS query. With a `directory` (the local
edge's run dir), blobs are files there, read per request, rather than bytes held in memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import socket
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

CONTAINER = "models"
API_VERSION = "2022-11-02"
SLOW_CHUNK = 4096
RESET_AFTER_S = 0.2


@dataclass
class Fault:
    """kind: slow (rate bytes/s), truncate / reset (after `after` bytes of the body), corrupt (one byte flipped).
    times: requests it applies to (None: all)."""

    kind: str
    after: int = 0
    rate: float = 0.0
    times: int | None = None


@dataclass
class Request:
    blob: str
    range: str
    status: int
    fault: str = ""


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BlobStore:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, directory: Path | None = None) -> None:
        self.host, self.port = host, port
        self.directory = directory
        self._key = secrets.token_bytes(32)  # the storage account key: signs and checks SAS tokens
        self._blobs: dict[str, bytes | Path] = {}
        self._faults: dict[str, Fault] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- the test's side ------------------------------------------------------------------------------

    def put(self, name: str, data: bytes | Path) -> str:
        """Store a blob (a file under `directory` when there is one); its sha256."""
        body = data.read_bytes() if isinstance(data, Path) else data
        stored: bytes | Path = body
        if self.directory is not None:
            stored = self.directory / CONTAINER / name
            stored.parent.mkdir(parents=True, exist_ok=True)
            temp = stored.with_name(f".{name}.tmp")
            temp.write_bytes(body)
            temp.replace(stored)  # a request in flight reads the old file or the new one, whole
        with self._lock:
            self._blobs[name] = stored
        return hashlib.sha256(body).hexdigest()

    def fault(self, name: str, fault: Fault | None) -> None:
        with self._lock:
            if fault is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = fault

    def requests_for(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.blob == name]

    def _signature(self, path: str, permissions: str, expiry: str) -> str:
        text = f"{permissions}\n{expiry}\n/{path}\n{API_VERSION}".encode()
        return base64.b64encode(hmac.new(self._key, text, hashlib.sha256).digest()).decode()

    def sas_url(self, name: str, expires_in: float = 3600.0) -> str:
        """A read-only SAS URL of the blob, valid for `expires_in` seconds (negative: already expired)."""
        expiry = _time(datetime.now(UTC) + timedelta(seconds=expires_in))
        path = f"{CONTAINER}/{name}"
        query = {"sv": API_VERSION, "sr": "b", "sp": "r", "se": expiry, "sig": self._signature(path, "r", expiry)}
        return f"http://{self.host}:{self.port}/{path}?{urlencode(query)}"

    # --- start and stop -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> BlobStore:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="blobstore", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._runner is None:
            raise RuntimeError("the blob store did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/{container}/{blob:.+}", self._get)
        runner = web.AppRunner(app, access_log=None)  # an access log would write SAS queries
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self.host, self.port)
        loop.run_until_complete(site.start())
        server = site._server  # private: the port actually bound when 0 was asked for
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._runner = runner
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop = self._thread = None

    def __enter__(self) -> BlobStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving --------------------------------------------------------------------------------------

    def _log(self, blob: str, range_: str, status: int, fault: str = "") -> None:
        with self._lock:
            self.requests.append(Request(blob, range_, status, fault))

    def _authorized(self, request: web.Request, path: str) -> str | None:
        """Why the SAS does not allow this read (Azure's AuthenticationFailed message), or None."""
        q = request.query
        expiry, permissions, signature = q.get("se", ""), q.get("sp", ""), q.get("sig", "")
        if not signature or not hmac.compare_digest(signature, self._signature(path, permissions, expiry)):
            return "Signature did not match."
        if "r" not in permissions:
            return "This request is not authorized to perform this operation using this permission."
        try:
            ends = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "Signed expiry time is not valid."
        if datetime.now(UTC) > ends:
            return f"Signed expiry time [{expiry}] must be after signed start time and current time."
        return None

    async def _get(self, request: web.Request) -> web.StreamResponse:
        container, blob = request.match_info["container"], request.match_info["blob"]
        range_header = request.headers.get("Range", "")
        why = self._authorized(request, f"{container}/{blob}")
        if why is not None:
            self._log(blob, range_header, 403)
            xml = (
                f'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>{why}</Message></Error>'
            )
            return web.Response(
                status=403,
                reason="Server failed to authenticate the request",
                text=xml,
                content_type="application/xml",
                headers={"x-ms-error-code": "AuthenticationFailed"},
            )
        with self._lock:
            stored = self._blobs.get(blob) if container == CONTAINER else None
            fault = self._faults.get(blob)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.pop(blob, None)
        body = await asyncio.to_thread(stored.read_bytes) if isinstance(stored, Path) else stored
        if body is None:
            self._log(blob, range_header, 404)
            return web.Response(
                status=404, reason="The specified blob does not exist.", headers={"x-ms-error-code": "BlobNotFound"}
            )
        total = len(body)
        start, end = 0, total - 1
        status = 200
        if range_header:
            try:
                first, _, last = range_header.removeprefix("bytes=").partition("-")
                start, end = int(first), int(last) if last else total - 1
            except ValueError:
                start, end = 0, total - 1
            else:
                if start >= total:
                    self._log(blob, range_header, 416)
                    return web.Response(
                        status=416, headers={"Content-Range": f"bytes */{total}", "x-ms-error-code": "InvalidRange"}
                    )
                end, status = min(end, total - 1), 206
        if fault is not None and fault.kind == "corrupt":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        part = body[start : end + 1]
        self._log(blob, range_header, status, fault.kind if fault else "")
        response = web.StreamResponse(status=status)
        response.content_length = len(part)
        response.content_type = "application/octet-stream"
        response.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        await response.prepare(request)
        if fault is not None and fault.kind in ("truncate", "reset"):
            await response.write(part[: fault.after])
            transport = request.transport
            if transport is not None:
                if fault.kind == "reset":  # SO_LINGER 0: close() sends RST, as a dropped connection does
                    # after the client has read what was sent (a RST discards what it has not read yet)
                    await asyncio.sleep(RESET_AFTER_S)
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    transport.abort()
                else:
                    transport.close()
            return response
        with contextlib.suppress(ConnectionError):  # the client gave up (its timeout): nothing to say
            if fault is not None and fault.kind == "slow":
                pause = SLOW_CHUNK / fault.rate
                for i in range(0, len(part), SLOW_CHUNK):
                    await response.write(part[i : i + SLOW_CHUNK])
                    await asyncio.sleep(pause)
            else:
                await response.write(part)
            await response.write_eof()
        return response
