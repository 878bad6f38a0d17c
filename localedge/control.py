"""Control of a running local edge from another terminal: a unix socket in the run directory.

The running edge writes the socket's path to a well-known state file ($LOCALEDGE_STATE_DIR, else
$XDG_RUNTIME_DIR/localedge, else /tmp/localedge-$UID; file `current`), removed when it stops. The protocol
is one JSON object per line each way: a request {"command": ..., ...} and its answer (an "error" key on failure).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localedge.errors import EdgeError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_REQUEST_BYTES = 1 << 20


class NoEdgeRunning(EdgeError):
    """No local edge answers on the state file's socket."""


def state_dir() -> Path:
    if explicit := os.environ.get("LOCALEDGE_STATE_DIR"):
        return Path(explicit)
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "localedge"
    return Path(tempfile.gettempdir()) / f"localedge-{os.getuid()}"


def state_file() -> Path:
    return state_dir() / "current"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    """Serves requests on `socket_path` with `handler` (called on a thread per connection)."""

    def __init__(self, socket_path: Path, handler: Handler) -> None:
        self.socket_path = socket_path
        self._handler = handler
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        outer = self

        class Request(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(MAX_REQUEST_BYTES)
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    answer = outer._handler(request)
                except Exception as exc:  # the caller gets the reason; the edge keeps running
                    log.debug("control request failed", exc_info=True)
                    answer = {"error": str(exc) or type(exc).__name__}
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        self._server = _Server(str(self.socket_path), Request)
        self.socket_path.chmod(0o600)
        self._thread = threading.Thread(target=self._server.serve_forever, name="localedge-control", daemon=True)
        self._thread.start()
        directory = state_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = directory / f".current-{os.getpid()}"
        temp.write_text(str(self.socket_path))
        temp.replace(state_file())  # atomic: a reader sees the old path or the new one
        return self

    def stop(self) -> None:
        """Stop serving and remove the state file if it still names this edge's socket."""
        with contextlib.suppress(OSError):
            if state_file().read_text() == str(self.socket_path):
                state_file().unlink()
        with contextlib.suppress(OSError):
            state_dir().rmdir()  # only when empty: another edge's state stays
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(OSError):
            self.socket_path.unlink()


def request(message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the running edge and return its answer; NoEdgeRunning if there is none."""
    path = state_file()
    try:
        socket_path = path.read_text().strip()
    except FileNotFoundError:
        raise NoEdgeRunning(f"no local edge is running (no {path}); start one with: python -m localedge run") from None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            with sock.makefile("rb") as answer:
                line = answer.readline()
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoEdgeRunning(f"no local edge is running ({path} names {socket_path}, which nobody serves)") from None
    except TimeoutError:
        raise EdgeError(f"the local edge did not answer within {timeout:g}s") from None
    if not line:
        raise EdgeError("the local edge closed the connection without an answer")
    return json.loads(line)
