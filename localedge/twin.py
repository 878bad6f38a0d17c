"""A module's twin and direct methods, served on its own broker as IoT Hub (through edgeHub) would.

Wire format (azure-iot-device 2.x, iothub/pipeline/mqtt_topic_iothub.py and pipeline_stages_iothub_mqtt.py):
- twin GET: the module publishes `$iothub/twin/GET/?$rid=R`; the answer is `$iothub/twin/res/200/?$rid=R` with
  `{"desired": {..., "$version": N}, "reported": {..., "$version": M}}`. The SDK takes the status from the 4th
  topic level and `rid` from the query (it strips the `$` of each key); a status >= 300 fails the request.
- reported patch: `$iothub/twin/PATCH/properties/reported/?$rid=R` with a JSON object; merged (null deletes),
  the version bumped, answered `$iothub/twin/res/204/?$rid=R&$version=M`.
- desired patch: pushed on `$iothub/twin/PATCH/properties/desired/?$version=N`, body the patch plus "$version"
  (the SDK compares it with the version of its last GET to decide whether a reconnect missed a patch).
- methods: `$iothub/methods/POST/{name}/?$rid=R` with a JSON payload (the SDK json-decodes it, empty = null);
  the module answers `$iothub/methods/res/{status}/?$rid=R` with json.dumps(payload). No answer within the
  timeout → 504, as IoT Hub answers.

The SDK's ensure_desired_properties GETs the twin on connect before it has subscribed to `$iothub/twin/res/#`
(seen in 2.14.0 when the patch handler is set before connecting), so on a fresh broker the answer would go
nowhere. start() therefore gives the module's persistent session that one subscription before it connects.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from edgekit.twin_patch import merge_patch
from localedge.broker import Broker
from localedge.link import Link
from localedge.wire import EdgeClient, EdgeMessage, decode_properties

log = logging.getLogger(__name__)

TWIN_RESPONSES = "$iothub/twin/res/#"
TWIN_GET = "$iothub/twin/GET/"
TWIN_REPORTED = "$iothub/twin/PATCH/properties/reported/"
METHOD_RESPONSE = "$iothub/methods/res/"
GATEWAY_TIMEOUT = 504


def check_patch(patch: Any) -> dict[str, Any]:
    """A patch must be a JSON object without `$` keys (IoT Hub keeps those for itself)."""
    if not isinstance(patch, dict):
        raise ValueError(f"a twin patch is a JSON object, not {type(patch).__name__}")
    reserved = sorted(k for k in patch if k.startswith("$"))
    if reserved:
        raise ValueError(f"twin patches cannot set {', '.join(reserved)} ($ names are IoT Hub's)")
    return patch


def request_id(topic: str) -> str | None:
    return decode_properties(topic.partition("?")[2]).get("$rid")


class Twin:
    """One module's twin (desired from the manifest, version 1) and its direct methods."""

    def __init__(self, broker: Broker, device_id: str, module: str, desired: Mapping[str, Any]) -> None:
        self.broker = broker
        self.device_id = device_id
        self.module = module
        self._cond = threading.Condition()
        self.desired: dict[str, Any] = copy.deepcopy(dict(desired))
        self.reported: dict[str, Any] = {}
        self.desired_version = self.reported_version = 1
        self._rids = itertools.count(1)
        self._calls: dict[str, tuple[threading.Event, list[tuple[int, Any]]]] = {}
        self.link: Link | None = None

    def start(self, timeout: float = 10.0) -> Twin:
        """Serve the twin; call before the module first connects (see the module doc)."""
        session = EdgeClient(self.broker.host, self.broker.plain_port, f"{self.device_id}/{self.module}", clean_session=False)
        try:
            session.connect(timeout).subscribe(TWIN_RESPONSES, timeout)
        finally:
            session.close()
        self.link = Link(self.broker, f"localedge-twin-{self.module}", self._on_message).connect(timeout)
        for topic in (TWIN_GET + "#", TWIN_REPORTED + "#", METHOD_RESPONSE + "#"):
            self.link.subscribe(topic, timeout)
        return self

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    def document(self) -> dict[str, Any]:
        """The twin as a GET returns it."""
        with self._cond:
            return {
                "desired": {**copy.deepcopy(self.desired), "$version": self.desired_version},
                "reported": {**copy.deepcopy(self.reported), "$version": self.reported_version},
            }

    def _on_message(self, msg: EdgeMessage, _at: float) -> None:
        rid = request_id(msg.topic)
        if msg.topic.startswith(METHOD_RESPONSE):
            self._method_response(msg, rid)
        elif rid is None:
            log.warning("twin request without $rid from %s: %s", self.module, msg.topic)
        elif msg.topic.startswith(TWIN_GET):
            self._respond(200, rid, json.dumps(self.document()))
        elif msg.topic.startswith(TWIN_REPORTED):
            self._reported_patch(msg, rid)

    def _respond(self, status: int, rid: str, body: str = "", **extra: str) -> None:
        query = urllib.parse.urlencode({"$rid": rid, **{f"${k}": v for k, v in extra.items()}}, safe="$")
        assert self.link is not None
        self.link.publish(f"$iothub/twin/res/{status}/?{query}", body)

    def _reported_patch(self, msg: EdgeMessage, rid: str) -> None:
        try:
            patch = check_patch(json.loads(msg.body or b"null"))
        except ValueError as exc:  # JSONDecodeError is one
            log.warning("bad reported patch from %s: %s", self.module, exc)
            self._respond(400, rid, json.dumps({"message": str(exc)}))
            return
        with self._cond:
            self.reported = merge_patch(self.reported, patch)
            self.reported_version += 1
            version = self.reported_version
            self._cond.notify_all()
        self._respond(204, rid, version=str(version))

    def patch_desired(self, patch: Mapping[str, Any]) -> int:
        """Merge a desired patch, push it to the module and return the new desired $version."""
        patch = check_patch(copy.deepcopy(dict(patch)))
        with self._cond:
            self.desired = merge_patch(self.desired, patch)
            self.desired_version += 1
            version = self.desired_version
            assert self.link is not None
            # Published under the lock: patches reach the module in version order.
            self.link.publish(
                f"$iothub/twin/PATCH/properties/desired/?$version={version}", json.dumps({**patch, "$version": version})
            )
        return version

    def wait_reported(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The reported properties once `predicate(reported)` holds, or None after `timeout`."""
        with self._cond:
            if self._cond.wait_for(lambda: predicate(self.reported), timeout):
                return copy.deepcopy(self.reported)
        return None

    def invoke(self, method: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """Call a direct method: (status, payload) as the module answered, or (504, {"message": ...}) after `timeout`."""
        rid = str(next(self._rids))
        done = threading.Event()
        result: list[tuple[int, Any]] = []
        with self._cond:
            self._calls[rid] = (done, result)
        try:
            assert self.link is not None
            name = urllib.parse.quote(method, safe="")
            self.link.publish(f"$iothub/methods/POST/{name}/?$rid={rid}", json.dumps(payload))
            if done.wait(timeout):
                return result[0]
        finally:
            with self._cond:
                self._calls.pop(rid, None)
        message = f"Timed out waiting for the response from module '{self.module}' to method '{method}' ({timeout:g}s)"
        return GATEWAY_TIMEOUT, {"errorCode": 504101, "message": message}

    def _method_response(self, msg: EdgeMessage, rid: str | None) -> None:
        with self._cond:
            call = self._calls.get(rid or "")
        if call is None:
            log.info("method response from %s for no pending call (rid %s; timed out?)", self.module, rid)
            return
        try:
            status = int(urllib.parse.unquote(msg.topic.split("/")[3]))
            payload = json.loads(msg.body) if msg.body else None
        except ValueError as exc:
            status, payload = 502, {"message": f"unreadable method response from module '{self.module}': {exc}"}
        call[1].append((status, payload))
        call[0].set()
