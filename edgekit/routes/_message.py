"""A message as edgeHub's router sees it: its source, its application and system properties, its body."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from ._body import read_body
from ._values import NULL_STRING, fold

# edgeHub's names for the system properties a module or device sends (Edge.Hub.Core SystemProperties,
# IncomingSystemPropertiesMap): MQTT property name -> the name a condition reads as `$<name>`. Note `$.cid`:
# edgeHub keeps the correlation id as `cid`, so `$cid` reads it and `$correlationId` is undefined.
WIRE_SYSTEM_PROPERTIES = {
    "$.exp": "absolute-expiry-time",
    "$.cid": "cid",
    "$.mid": "messageId",
    "$.to": "to",
    "$.uid": "userId",
    "ack": "ack",
    "$.on": "outputName",
    "$.ct": "contentType",
    "$.ce": "contentEncoding",
    "$.schema": "messageSchema",
    "iothub-operation": "operation",
    "$.ctime": "creationTime",
    "$.ifid": "iothub-interface-id",
    "$.sub": "dt-subject",
}
CONNECTION_PROPERTIES = ("$.cdid", "$.cmid")  # what edgeHub adds when it forwards: not application properties
TWIN_CHANGE_SOURCE = "/twinChangeNotifications"
_WIRE_KEYS = {wire: fold(name) for wire, name in WIRE_SYSTEM_PROPERTIES.items()}
_NOT_APPLICATION = frozenset(WIRE_SYSTEM_PROPERTIES) | frozenset(CONNECTION_PROPERTIES)
EDGE_MESSAGE_ID, _ORIGIN = fold("edgeMessageId"), fold("edgeHubOriginInterface")
_DEVICE, _MODULE, _OUTPUT = fold("connectionDeviceId"), fold("connectionModuleId"), fold("outputName")
CONTENT_TYPE, CONTENT_ENCODING = fold("contentType"), fold("contentEncoding")

T = TypeVar("T")
_SOURCE_KEYS: dict[tuple[str, str, bool], str] = {}  # the few senders a deployment has, folded once


def _source_key(module: str, output: str, twin_change: bool) -> str:
    if twin_change:
        source = TWIN_CHANGE_SOURCE
    elif not module:
        source = "/messages"
    elif output:
        source = f"/messages/modules/{module}/outputs/{output}"
    else:
        source = f"/messages/modules/{module}"
    if source[-1] == "/" or source[-1].isspace():  # edgeHub: Trim().TrimEnd('/') + "/"
        source = source.strip().rstrip("/")
    return fold(source) + "/"


class _lazy(Generic[T]):
    """functools.cached_property without its lock (Python 3.11 takes one on every read): computed on first use,
    then a plain instance attribute. Works on frozen dataclasses (it writes the instance __dict__)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type) -> _lazy[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> T | _lazy[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@dataclass(frozen=True, init=False)
class Message:
    """What a route sees of a message.

    `module` is the sending module ("" for a device message), `output` its output ("" when none), `properties`
    the MQTT-level ones: system properties under their wire names (`$.mid`, `$.ct`, `$.ce`, ...) and application
    properties under their own. `device_id` is the connection's device (edgeHub's `$connectionDeviceId`; else
    a `$.cdid` property is used). A twin change notification has `twin_change`; its source is
    /twinChangeNotifications. `system_properties`, when given, is edgeHub's own system-property dictionary
    (names like contentType) and `properties` then hold only application properties.
    Property values may be None (a null, as edgeHub's own tests use). Names are compared in any case, as edgeHub.
    What routes read is computed once per message, when first read.
    """

    module: str
    output: str
    body: bytes
    properties: Mapping[str, str | None]
    device_id: str = ""
    twin_change: bool = False
    system_properties: Mapping[str, str | None] | None = None
    source_key: str = field(init=False, compare=False, repr=False, default="")  # set by __init__

    def __init__(  # the dataclass's own __init__, in one step: a frozen dataclass sets each field separately
        self,
        module: str,
        output: str,
        body: bytes,
        properties: Mapping[str, str | None],
        device_id: str = "",
        twin_change: bool = False,
        system_properties: Mapping[str, str | None] | None = None,
    ) -> None:
        fields = self.__dict__
        fields["module"], fields["output"], fields["body"], fields["properties"] = module, output, body, properties
        fields["device_id"], fields["twin_change"], fields["system_properties"] = device_id, twin_change, system_properties
        # the message's source as edgeHub matches routes against it (case-folded, ending in '/')
        sender = (module, output, twin_change)
        key = _SOURCE_KEYS.get(sender)
        if key is None:
            if len(_SOURCE_KEYS) >= 4096:
                _SOURCE_KEYS.clear()
            key = _SOURCE_KEYS[sender] = _source_key(*sender)
        fields["source_key"] = key

    @_lazy
    def app_props(self) -> dict[str, Any]:
        """Application properties by folded name; a null value is NULL_STRING."""
        skip = () if self.system_properties is not None else _NOT_APPLICATION
        return {fold(k): NULL_STRING if v is None else v for k, v in self.properties.items() if k not in skip}

    @_lazy
    def sys_props(self) -> dict[str, Any]:
        """System properties by folded edgeHub name; a null value is NULL_STRING."""
        if self.system_properties is not None:
            return {fold(k): NULL_STRING if v is None else v for k, v in self.system_properties.items()}
        props: dict[str, Any] = {}
        for wire, value in self.properties.items():
            key = _WIRE_KEYS.get(wire)
            if key is not None:
                props[key] = NULL_STRING if value is None else value
        device = self.device_id or self.properties.get("$.cdid")
        module = self.module or self.properties.get("$.cmid")
        if device:
            props[_DEVICE] = device
            props[_ORIGIN] = "internal" if module else "downstream"  # edgeHub: is the sender the edge device?
        if module:
            props[_MODULE] = module
        if self.output:
            props[_OUTPUT] = self.output
        return props

    @_lazy
    def edge_message_id(self) -> Any:
        """`$edgeMessageId`: edgeHub gives every message a fresh GUID; made only if a condition reads it."""
        return self.sys_props.get(EDGE_MESSAGE_ID) or str(uuid.uuid4())

    @_lazy
    def body_json(self) -> dict[str, Any] | str:
        """The body as edgeHub's `$body` queries read it: a JSON object, or the reason it cannot (a str)."""
        sys_props = self.sys_props
        return read_body(self.body, sys_props.get(CONTENT_TYPE), sys_props.get(CONTENT_ENCODING))
