"""The MQTT side of edgeHub as modules see it: topics, message properties, and a plain client.

Topic and property formats are those of azure-iot-device 2.x (see shared/edge-facts.md).
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from localedge.errors import EdgeError

SYSTEM_PROPERTIES = frozenset({"$.on", "$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.exp", "$.ifid"})

Properties = Mapping[str, str] | Iterable[tuple[str, str]]


def encode_properties(properties: Properties) -> str:
    """`k=v&k2=v2`, percent-encoded as the SDK does (quote with no safe characters: '/' too)."""
    pairs = properties.items() if isinstance(properties, Mapping) else properties
    return urllib.parse.urlencode([(str(k), str(v)) for k, v in pairs], quote_via=urllib.parse.quote)


def decode_properties(text: str) -> dict[str, str]:
    """The inverse, as the SDK parses: split on & and the first =, `unquote` (never unquote_plus)."""
    props: dict[str, str] = {}
    for entry in filter(None, text.split("&")):
        key, _, value = entry.partition("=")
        props[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return props


def input_topic(device_id: str, module_id: str, input_name: str, properties: Properties = ()) -> str:
    """Where edgeHub delivers a message to a module's input."""
    name = urllib.parse.quote(input_name, safe="")
    return f"devices/{device_id}/modules/{module_id}/inputs/{name}/{encode_properties(properties)}"


def inputs_filter(device_id: str, module_id: str) -> str:
    return f"devices/{device_id}/modules/{module_id}/inputs/#"


def outputs_filter(device_id: str, module_id: str) -> str:
    """Everything a module sends (all outputs); the output name is the `$.on` property."""
    return f"devices/{device_id}/modules/{module_id}/messages/events/#"


@dataclass(frozen=True)
class EdgeMessage:
    """One message seen by the test side, with its topic's properties decoded."""

    topic: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mqtt(cls, msg: mqtt.MQTTMessage) -> EdgeMessage:
        topic = msg.topic
        props = ""
        if "/messages/events/" in topic:
            props = topic.split("/messages/events/", 1)[1]
        elif "/inputs/" in topic:
            parts = topic.split("/")
            props = parts[6] if len(parts) > 6 else ""
        return cls(topic, bytes(msg.payload), decode_properties(props))

    @property
    def output_name(self) -> str | None:
        return self.properties.get("$.on")

    @property
    def input_name(self) -> str | None:
        parts = self.topic.split("/")
        return urllib.parse.unquote(parts[5]) if len(parts) > 5 and parts[4] == "inputs" else None

    @property
    def message_id(self) -> str | None:
        return self.properties.get("$.mid")

    @property
    def correlation_id(self) -> str | None:
        return self.properties.get("$.cid")

    @property
    def content_type(self) -> str | None:
        return self.properties.get("$.ct")

    @property
    def content_encoding(self) -> str | None:
        return self.properties.get("$.ce")

    @property
    def custom_properties(self) -> dict[str, str]:
        return {k: v for k, v in self.properties.items() if k not in SYSTEM_PROPERTIES}


# --- the test side --------------------------------------------------------------------------------


class EdgeClient:
    """A plain paho-mqtt client: feeds module inputs, collects what modules send.

    Every message on a subscribed topic goes to `messages` (a queue.Queue), except barrier tokens.
    """

    def __init__(self, host: str, port: int, client_id: str | None = None, clean_session: bool = True) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"edge-test-{secrets.token_hex(4)}"
        self.messages: queue.Queue[EdgeMessage] = queue.Queue()
        self._barrier_topic = f"edge-test/barrier/{secrets.token_hex(6)}"
        self._barriers: dict[bytes, threading.Event] = {}
        self._acks: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connect_rc: int | None = None
        self._client = mqtt.Client(client_id=self.client_id, clean_session=clean_session, protocol=mqtt.MQTTv311)
        self._client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_ack
        self._client.on_unsubscribe = self._on_ack

    def _on_connect(self, _client: mqtt.Client, _userdata: object, _flags: dict, rc: int) -> None:
        self._connect_rc = rc
        self._connected.set()

    def _on_ack(self, _client: mqtt.Client, _userdata: object, mid: int, *_rest: object) -> None:
        with self._lock:
            event = self._acks.setdefault(mid, threading.Event())
        event.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._barrier_topic:
            with self._lock:
                event = self._barriers.pop(bytes(msg.payload), None)
            if event is not None:
                event.set()
            return
        self.messages.put(EdgeMessage.from_mqtt(msg))

    def connect(self, timeout: float = 5.0) -> EdgeClient:
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout) or self._connect_rc != 0:
            self.close()
            raise EdgeError(f"test client could not connect to {self.host}:{self.port} (rc={self._connect_rc})")
        self._wait_ack(self._client.subscribe(self._barrier_topic, qos=1), timeout, "subscribe")
        return self

    def _wait_ack(self, result: tuple[int, int | None], timeout: float, what: str) -> None:
        rc, mid = result
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise EdgeError(f"{what} failed: {mqtt.error_string(rc)}")
        with self._lock:
            event = self._acks.setdefault(mid, threading.Event())
        if not event.wait(timeout):
            raise EdgeError(f"no {what} acknowledgement within {timeout:.0f}s")
        with self._lock:
            self._acks.pop(mid, None)

    def subscribe(self, topic_filter: str, timeout: float = 5.0) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        self._wait_ack(self._client.subscribe(topic_filter, qos=1), timeout, f"subscribe {topic_filter}")

    def publish(self, topic: str, body: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(topic, body, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise EdgeError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return info

    def send_to_input(
        self,
        device_id: str,
        module_id: str,
        input_name: str,
        body: bytes | str,
        properties: Properties = (),
    ) -> mqtt.MQTTMessageInfo:
        """Deliver a message to a module's input, as edgeHub does (QoS 1)."""
        return self.publish(input_topic(device_id, module_id, input_name, properties), body)

    @staticmethod
    def wait_published(infos: Iterable[mqtt.MQTTMessageInfo], timeout: float) -> None:
        """Wait until the broker has acknowledged every publish (PUBACK)."""
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise EdgeError(f"publish mid={info.mid} not acknowledged within {timeout:.0f}s")

    def barrier(self, timeout: float = 5.0) -> None:
        """Return once everything the broker queued for us before now has reached `messages`.

        Mosquitto sends a client's messages in order, so a token we publish to ourselves arrives
        after everything the broker had already routed to us.
        """
        token = secrets.token_bytes(8)
        event = threading.Event()
        with self._lock:
            self._barriers[token] = event
        self.publish(self._barrier_topic, token)
        if not event.wait(timeout):
            raise EdgeError(f"barrier not seen within {timeout:.0f}s")

    def collect(self, count: int, timeout: float) -> list[EdgeMessage]:
        """Exactly `count` messages from the queue, or EdgeError naming how many came."""
        deadline = time.monotonic() + timeout
        got: list[EdgeMessage] = []
        while len(got) < count:
            try:
                got.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise EdgeError(f"got {len(got)} of {count} messages within {timeout:.0f}s") from None
        return got

    def drain(self) -> list[EdgeMessage]:
        """Whatever is in the queue now, without waiting."""
        got: list[EdgeMessage] = []
        while True:
            try:
                got.append(self.messages.get_nowait())
            except queue.Empty:
                return got

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
