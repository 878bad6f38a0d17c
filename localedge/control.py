"""Control of a running local edge from another terminal: a unix socket in the run directory.

Edges are named (`run --name`, default the manifest's folder name). Each running edge writes its socket's path
to a state file named after it ($LOCALEDGE_STATE_DIR, else $XDG_RUNTIME_DIR/localedge, else /tmp/localedge-$UID;
file `edges/<name>`), removed when it stops. A request goes to the edge named, or to the only one running. The
protocol is one JSON object per line each way: a request {"command": ..., ...} and its answer (an "error" key
on failure).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
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
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class NoEdgeRunning(EdgeError):
    """No local edge answers on the state file's socket."""


def state_dir() -> Path:
    if explicit := os.environ.get("LOCALEDGE_STATE_DIR"):
        return Path(explicit)
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "localedge"
    return Path(tempfile.gettempdir()) / f"localedge-{os.getuid()}"


def edges_dir() -> Path:
    return state_dir() / "edges"


def state_file(name: str) -> Path:
    return edges_dir() / name


def edge_name(text: str) -> str:
    """A usable edge name from any text (a folder name): characters other than letters, digits, `_.-` become `-`."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "edge"
    return name if NAME.match(name) else f"edge-{name}"


def running_edges() -> dict[str, str]:
    """Name -> socket path of every edge whose state file names a socket that exists (a crashed one's may linger)."""
    found = {}
    with contextlib.suppress(FileNotFoundError):
        for path in sorted(edges_dir().iterdir()):
            if path.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                socket_path = path.read_text().strip()
                if Path(socket_path).exists():
                    found[path.name] = socket_path
    return found


def resolve_edge(edge: str | None) -> tuple[str, str]:
    """(name, socket path) of the edge named, or of the only one running; NoEdgeRunning / EdgeError otherwise."""
    running = running_edges()
    if edge is not None:
        if edge in running:
            return edge, running[edge]
        others = f" (running: {', '.join(running)})" if running else ""
        raise NoEdgeRunning(f"no local edge named '{edge}' is running{others}")
    if not running:
        raise NoEdgeRunning(f"no local edge is running (nothing in {edges_dir()}); start one with: python -m localedge run")
    if len(running) > 1:
        raise EdgeError(f"{len(running)} local edges are running ({', '.join(running)}): pick one with --edge NAME")
    return next(iter(running.items()))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    """Serves requests on `socket_path` with `handler` (called on a thread per connection)."""

    def __init__(self, socket_path: Path, handler: Handler, name: str = "edge") -> None:
        if not NAME.match(name):
            raise EdgeError(f"edge name {name!r}: use letters, digits, '_', '.' and '-'")
        self.name = name
        self.socket_path = socket_path
        self._handler = handler
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        if self.name in running_edges():
            raise EdgeError(f"a local edge named '{self.name}' is already running: give this one another --name")
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
        state_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
        edges_dir().mkdir(mode=0o700, exist_ok=True)
        temp = edges_dir() / f".{self.name}-{os.getpid()}"
        temp.write_text(str(self.socket_path))
        temp.replace(state_file(self.name))  # atomic: a reader sees the old path or the new one
        return self

    def stop(self) -> None:
        """Stop serving and remove the state file if it still names this edge's socket."""
        with contextlib.suppress(OSError):
            if state_file(self.name).read_text() == str(self.socket_path):
                state_file(self.name).unlink()
        for directory in (edges_dir(), state_dir()):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: another edge's state stays
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(OSError):
            self.socket_path.unlink()


def request(message: dict[str, Any], timeout: float = 10.0, edge: str | None = None) -> dict[str, Any]:
    """Send one request to the edge named `edge` (default: the only one running) and return its answer;
    NoEdgeRunning if there is none, EdgeError if several run and none was named."""
    name, socket_path = resolve_edge(edge)
    path = state_file(name)
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
