"""The local HTTP API of single-module mode: iotedgehubdev's way to feed a module under debug.

iotedgehubdev's single-module mode runs a helper module (Azure/iot-edge-testing-utility, named `input`) whose
`POST /api/v1/messages` takes `{"inputName", "data", "properties"?, "messageId"?, "correlationId"?, "userId"?}`,
sends `JSON.stringify(data)` on its output `inputName` (so a string `data` arrives as a JSON string: double
encoded), which edgeHub routes to the target module's input of that name; it answers 202 `{"message": "accepted"}`
once edgeHub took the message, an error as `{"error": "..."}`. Everything the target sends is printed.

Here the same request publishes, as the hub forwards a message (localedge.hub: the input topic, `$.mid`/`$.cid`/
`$.uid` and custom properties, `$.cdid`/`$.cmid` of the sending `input` module), straight to the module's input on
its broker, and the answer comes after the broker's PUBACK. Differences, each on purpose: a bad body or an unknown
input is a 400 with the reason (iotedgehubdev: 500, and an unknown input is accepted and lost); a message without
`messageId` gets one, and the answer names it (`"messageId"`) so its outcome can be found; the body is read as JSON
whatever its Content-Type. What the module sent is read back with `GET /api/v1/messages` (filters `output`,
`correlationId`, `messageId`; `wait=S` waits up to S seconds for a first match).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgekit.limits import MESSAGE_LIMIT_BYTES
from localedge.broker import Broker
from localedge.errors import EdgeError
from localedge.hub import forwarded_properties
from localedge.link import Link
from localedge.upstream import UpstreamMessage, UpstreamRecorder
from localedge.wire import EdgeClient, input_topic, inputs_filter

log = logging.getLogger(__name__)

API_PATH = "/api/v1/messages"
DEFAULT_PORT = 53000  # iotedgehubdev's
SENDER_MODULE = "input"  # iotedgehubdev's sending module: edgeHub names it as the message's `$.cmid`
ID_FIELDS = {"messageId": "$.mid", "correlationId": "$.cid", "userId": "$.uid"}
MAX_REQUEST_BYTES = 4 * MESSAGE_LIMIT_BYTES
MAX_WAIT_S = 60.0
PUBLISH_TIMEOUT_S = 10.0


class BadRequest(ValueError):
    """A request the API refuses (400); the message says why and what to send instead."""


@dataclass(frozen=True)
class InputMessage:
    """One message for the module's input `input_name`, with the properties its sender gives it."""

    input_name: str
    body: bytes
    properties: dict[str, str]

    @property
    def message_id(self) -> str:
        return self.properties["$.mid"]


def _property_value(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)  # as JavaScript writes it: true, 1, 2.5
    raise BadRequest(f"properties.{key} must be a string, number or boolean, not {type(value).__name__}")


def parse_message(raw: bytes, inputs: Collection[str]) -> InputMessage:
    """iotedgehubdev's request body → the message for the module; BadRequest naming what is wrong."""
    example = '{"inputName": "%s", "data": "hello world"}' % next(iter(sorted(inputs)), "input1")  # noqa: UP031
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON ({exc}); send e.g. {example}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"the body is a JSON object, not {type(doc).__name__}; send e.g. {example}")
    input_name = doc.get("inputName")
    if not isinstance(input_name, str) or not input_name:
        raise BadRequest(f"inputName is missing or not a string; send e.g. {example}")
    if input_name not in inputs:
        known = ", ".join(sorted(inputs))
        raise BadRequest(f"unknown input {input_name!r}: the module's inputs are {known} (add more with --inputs)")
    if doc.get("data") is None:
        raise BadRequest(f"data is missing: a string or any JSON value, sent as its JSON text; send e.g. {example}")
    # JSON.stringify(data): compact, non-ASCII as is.
    body = json.dumps(doc["data"], separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MESSAGE_LIMIT_BYTES:
        raise BadRequest(f"data is {len(body)} bytes as JSON; a message may be at most {MESSAGE_LIMIT_BYTES}")
    properties: dict[str, str] = {}
    custom = doc.get("properties")
    if custom is not None:
        if not isinstance(custom, dict):
            raise BadRequest(f"properties is an object of name: value, not {type(custom).__name__}")
        for key, value in custom.items():
            if not key or key.startswith("$"):
                raise BadRequest(f"properties: {key!r} is not a custom property name ($ names are the system's)")
            properties[key] = _property_value(key, value)
    for field, system in ID_FIELDS.items():
        value = doc.get(field)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise BadRequest(f"{field} must be a non-empty string")
            properties[system] = value
    properties.setdefault("$.mid", str(uuid.uuid4()))  # every message can be found by its outcome's `$.cid`
    return InputMessage(input_name, body, properties)


def output_matches(msg: UpstreamMessage, query: Mapping[str, str]) -> bool:
    """Whether a message the module sent passes the GET filters (`output`, `correlationId`, `messageId`)."""
    checks = (("output", msg.output), ("correlationId", msg.correlation_id), ("messageId", msg.message_id))
    return all(query[name] == value for name, value in checks if name in query)


def prepare_session(broker: Broker, device_id: str, module: str, timeout: float = 10.0) -> None:
    """Subscribe the module's own persistent session to its inputs before the module first connects.

    A module run by hand connects whenever the user starts it; until then its broker would drop what is
    posted for it. With the subscription in its session, the broker keeps it for the module, as edgeHub
    stores messages for a module that is not connected. Only call it while the module is not connected
    (a second connection with its client id would take its session over).
    """
    session = EdgeClient(broker.host, broker.plain_port, f"{device_id}/{module}", clean_session=False)
    try:
        session.connect(timeout).subscribe(inputs_filter(device_id, module), timeout)
    finally:
        session.close()


class DevApi:
    """`POST /api/v1/messages` into `module`'s inputs on `broker`; `GET` what it sent (from `upstream`)."""

    def __init__(
        self,
        broker: Broker,
        device_id: str,
        module: str,
        inputs: Collection[str],
        upstream: UpstreamRecorder,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
    ) -> None:
        self.broker = broker
        self.device_id = device_id
        self.module = module
        self.inputs = frozenset(inputs)
        self.upstream = upstream
        self.host, self.port = host, port
        self._link: Link | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}{API_PATH}"

    def start(self, timeout: float = 10.0) -> DevApi:
        link = Link(self.broker, f"localedge-devapi-{self.module}", lambda _msg, _at: None)  # it only publishes
        link.connect(timeout)
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        except OSError as exc:
            link.close()
            raise EdgeError(
                f"the HTTP API cannot listen on {self.host}:{self.port}: {exc} (choose another with --api-port)"
            ) from None
        self._link = link
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="localedge-devapi", daemon=True)
        self._thread.start()
        return self

    def send(self, message: InputMessage, timeout: float = PUBLISH_TIMEOUT_S) -> None:
        """Publish to the module's input as the hub forwards a message, and wait for the broker's PUBACK."""
        assert self._link is not None
        props = forwarded_properties(message.properties, self.device_id, SENDER_MODULE)
        self.upstream.seen(message.message_id, time.perf_counter())  # the outcome's latency starts here, as for routed ones
        info = self._link.publish(input_topic(self.device_id, self.module, message.input_name, props), message.body)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise EdgeError(f"the module's broker did not take the message within {timeout:g}s")

    def sent(self, query: Mapping[str, str], wait: float = 0.0) -> list[dict[str, Any]]:
        """What the module sent that matches `query`; with `wait`, wait that long for a first match."""
        found: list[UpstreamMessage] = []

        def collect(upstream: UpstreamRecorder) -> bool:  # called under the recorder's lock: a consistent list
            found[:] = [m for m in upstream.messages if output_matches(m, query)]
            return bool(found)

        self.upstream.wait_until(collect, min(max(wait, 0.0), MAX_WAIT_S))
        return [m.to_json(self.upstream.started) for m in found]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._link is not None:
            self._link.close()
            self._link = None


def _handler(api: DevApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "localedge-devapi"

        def _answer(self, status: HTTPStatus, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _not_found(self) -> None:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.command} {self.path}; the API: POST and GET {API_PATH}"})

        def do_POST(self) -> None:
            if urllib.parse.urlsplit(self.path).path != API_PATH:
                return self._not_found()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                return self._answer(HTTPStatus.BAD_REQUEST, {"error": "Content-Length is not a byte count"})
            if length > MAX_REQUEST_BYTES:
                return self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"the body is over {MAX_REQUEST_BYTES} bytes"})
            try:
                message = parse_message(self.rfile.read(length), api.inputs)
                api.send(message)
            except BadRequest as exc:
                return self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except EdgeError as exc:
                return self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            self._answer(HTTPStatus.ACCEPTED, {"message": "accepted", "messageId": message.message_id})

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != API_PATH:
                return self._not_found()
            query = dict(urllib.parse.parse_qsl(url.query))
            try:
                wait = float(query.pop("wait", "0"))
            except ValueError:
                return self._answer(HTTPStatus.BAD_REQUEST, {"error": "wait is a number of seconds"})
            unknown = sorted(set(query) - {"output", "correlationId", "messageId"})
            if unknown:
                return self._answer(HTTPStatus.BAD_REQUEST, {"error": f"unknown filter(s) {', '.join(unknown)}"})
            self._answer(HTTPStatus.OK, {"messages": api.sent(query, wait)})

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("devapi: " + format, *args)

    return Handler
