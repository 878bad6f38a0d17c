"""Two hooks on the paho client azure-iot-device 2.x creates, which it offers no option for.

- TCP_NODELAY on its socket. Nagle's algorithm plus the peer's delayed ACKs hold each small MQTT
  packet back ~40 ms per hop on loopback (measured through the local edge: see README, "Latency").
  Set in paho's `on_socket_open` callback, which the SDK does not use: every connect and reconnect.
- A message tap: a function called with (topic, payload) on paho's network thread for every
  PUBLISH, *before* the SDK sees it. paho 1.6.1 sends the PUBACK only after its `on_message` returns
  (client.py, `_handle_publish`), and the SDK's `on_message` merely queues the message for its own
  threads, so what a tap has written to disk before returning survives a SIGKILL at any instant
  after the broker let go of it; what the SDK queues does not (the intake journal lands inputs here).

The SDK builds its paho client in `MQTTTransport._create_mqtt_client`; we wrap that method once,
before any client is created. Taps are registered per MQTT client id (`{device}/{module}`), so two
clients in one process (tests) keep apart.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
_MARK = "_edge_inference_hooks"

Tap = Callable[[str, bytes], None]
_nodelay = False
_taps: dict[str, Tap] = {}


def _on_socket_open(_client: Any, _userdata: Any, sock: Any) -> None:
    if not _nodelay:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # e.g. websockets or a proxy socket: keep going without it
        log.debug("TCP_NODELAY not set on the MQTT socket: %s", exc)


def _install() -> None:
    from azure.iot.device.common.mqtt_transport import MQTTTransport

    current = MQTTTransport._create_mqtt_client
    if getattr(current, _MARK, False):
        return

    def create_mqtt_client(self: Any) -> Any:
        client = current(self)
        client.on_socket_open = _on_socket_open
        sdk_on_message = client.on_message
        client_id = str(getattr(self, "_client_id", ""))

        def on_message(paho: Any, userdata: Any, message: Any) -> None:
            tap = _taps.get(client_id)
            if tap is not None:
                try:
                    tap(message.topic, message.payload)
                except Exception:  # a bug in a tap must not cost the SDK its message
                    log.exception("MQTT message tap failed; the message goes on to the SDK")
            sdk_on_message(paho, userdata, message)

        client.on_message = on_message
        return client

    setattr(create_mqtt_client, _MARK, True)
    MQTTTransport._create_mqtt_client = create_mqtt_client  # type: ignore[method-assign]


def enable_tcp_nodelay(enabled: bool = True) -> None:
    """Make every MQTT socket the SDK opens from now on set TCP_NODELAY (or stop doing so)."""
    global _nodelay
    _install()
    _nodelay = enabled


def set_message_tap(client_id: str, tap: Tap | None) -> None:
    """Call `tap(topic, payload)` on paho's thread for each message the client `client_id` receives,
    before it is acknowledged; None removes it. Set it before the client connects."""
    _install()
    if tap is None:
        _taps.pop(client_id, None)
    else:
        _taps[client_id] = tap
