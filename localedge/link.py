"""The local edge's own connection to one module's broker (plain listener), for the hub and the twins.

An EdgeClient with a persistent session (clean_session=False, a fixed client id), so its subscriptions
and the messages queued for it survive a broker restart (the broker keeps address, port and sessions);
it reconnects quickly by itself, keeps QoS 1 publishes made while disconnected for the reconnect (paho
resends them), and hands each message to a callback on paho's network thread, in arrival order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from localedge.broker import Broker
from localedge.errors import EdgeError
from localedge.wire import EdgeClient, EdgeMessage

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.05, 1.0  # paho's default starts at 1 s and doubles to 120 s

Handler = Callable[[EdgeMessage, float], None]


class _Handoff:
    """Stands in for EdgeClient's queue: each message goes straight to the handler with its arrival time."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def put(self, message: EdgeMessage) -> None:
        self._handler(message, time.perf_counter())


class Link(EdgeClient):
    """A persistent, self-reconnecting client of `broker` that calls `handler(message, arrived)` per message."""

    def __init__(self, broker: Broker, client_id: str, handler: Handler) -> None:
        super().__init__(broker.host, broker.plain_port, client_id, clean_session=False)
        self.messages = _Handoff(handler)  # type: ignore[assignment]
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)

    def publish(self, topic: str, body: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Publish; at QoS 1 a publish while the broker restarts is kept and sent on the reconnect."""
        info = self._client.publish(topic, body, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and not (info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0):
            raise EdgeError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return info
