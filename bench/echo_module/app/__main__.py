"""Each input sent back on amlOutput as `{"value": <the input's body>}` (correlation id = the input's id), nothing
else: the transport's cost per message through azure-iot-device, the floor the inference module is measured against.
The bytes are wrapped, not parsed (`value` makes the local edge count it as an outcome, as it counts a prediction).

Run in the inference module's place with PYTHONPATH=bench/echo_module and PYTHONSAFEPATH=1 (`python -m app`);
the SDK's handler hands each message to our loop, as the inference module's does, and TCP_NODELAY is set on the MQTT
socket as the module sets it (edgekit.mqtt_socket, found through the repository root appended to sys.path), so the
two pay for the same socket setting and compare like for like.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient

sys.path.append(str(Path(__file__).resolve().parents[3]))  # the repository root, after this tree: our `app` wins
from edgekit.mqtt_socket import enable_tcp_nodelay

OUTPUT = "amlOutput"


async def main() -> None:
    enable_tcp_nodelay()  # before the client opens its socket, as app/edgehub/module.py does
    client = IoTHubModuleClient.create_from_edge_environment()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def send(msg: Message) -> None:
        out = Message(b'{"value":' + msg.data + b"}", content_encoding="utf-8", content_type="application/json")
        out.correlation_id = msg.message_id
        await client.send_message_to_output(out, OUTPUT)

    async def on_message(msg: Message) -> None:  # the SDK's handler loop: hand over to ours
        asyncio.run_coroutine_threadsafe(send(msg), loop)

    client.on_message_received = on_message
    await client.connect()
    print("echo ready: inputs go back out on amlOutput", file=sys.stderr, flush=True)
    await stop.wait()
    await client.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
