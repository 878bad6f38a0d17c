"""TCP_NODELAY on the SDK's MQTT socket.

Nagle's algorithm plus the peer's delayed ACKs hold each small MQTT packet back ~40 ms per hop on
loopback (measured through the local edge: see README, "Latency"). azure-iot-device 2.x creates its
paho client inside `MQTTTransport._create_mqtt_client` and offers no socket option, so we wrap that
method once (before any client is created) and set the option in paho's `on_socket_open` callback,
which the SDK does not use. Applies to every connect and reconnect.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger(__name__)
_MARK = "_edge_inference_nodelay"


def _on_socket_open(_client: Any, _userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # e.g. websockets or a proxy socket: keep going without it
        log.debug("TCP_NODELAY not set on the MQTT socket: %s", exc)


def enable_tcp_nodelay(enabled: bool = True) -> None:
    """Make every MQTT client the SDK creates from now on set TCP_NODELAY on its socket (or stop doing so)."""
    from azure.iot.device.common.mqtt_transport import MQTTTransport

    current = MQTTTransport._create_mqtt_client
    original = getattr(current, _MARK, None)
    if not enabled:
        if original is not None:
            MQTTTransport._create_mqtt_client = original  # type: ignore[method-assign]
        return
    if original is not None:
        return

    def create_mqtt_client(self: Any) -> Any:
        client = current(self)
        client.on_socket_open = _on_socket_open
        return client

    setattr(create_mqtt_client, _MARK, current)
    MQTTTransport._create_mqtt_client = create_mqtt_client  # type: ignore[method-assign]
