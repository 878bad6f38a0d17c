"""The edgeHub watchdog with the real azure-iot-device client in this process, over TLS to a real Mosquitto.

The deafness is made the way bench/deafness.py saw it happen: paho-mqtt 1.6.1's network thread
writing to a TLS socket whose peer is gone gets `ssl.SSLEOFError` from `_sock_send` and dies (paho 1.x
catches only ConnectionError there), with no disconnect callback, so the SDK stays "connected". Here
paho's socket raises exactly that on its next send. With paho 2 (azure-iot-device 2.15) the same
error is a clean disconnect and the SDK reconnects: the test checks that instead.

No sleeps: every wait is an Event, a thread join or an awaited call, each bounded; "not deaf" is
an Event that must stay unset over a bounded window.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import paho.mqtt as paho_package
import pytest
from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient

from app.edgehub.watchdog import OFFLINE, SILENT, THREAD_GONE, Watchdog, find_paho_owner
from localedge.broker import Broker

DEVICE, MODULE = "watchdog-test-device", "inference"
WAIT = 10.0  # bound on every SDK call and wait
PAHO_1 = paho_package.__version__.startswith("1.")


class Verdicts:
    """on_deaf for the tests: keeps the reasons, sets an event (called on the test's loop)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()


def paho_of(client: IoTHubModuleClient) -> Any:
    transport = find_paho_owner(client)
    assert transport is not None, "azure-iot-device no longer keeps paho where the watchdog looks"
    return transport._mqtt_client


class EofOnSend:
    """paho's TLS socket, except that sending raises what a vanished TLS peer raised in bench/deafness.py."""

    def __init__(self, sock: Any) -> None:
        self._wrapped = sock

    def send(self, _data: bytes) -> int:
        raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


@pytest.fixture
async def connect(broker: Broker) -> AsyncIterator[Callable[..., Awaitable[IoTHubModuleClient]]]:
    """connect(keep_alive=60) -> a connected SDK client on `broker`; each is shut down (bounded) after the test."""
    clients: list[IoTHubModuleClient] = []

    async def make(keep_alive: int = 60) -> IoTHubModuleClient:
        env = broker.module_env(DEVICE, MODULE)
        with open(env["EdgeModuleCACertificateFile"]) as ca:
            client = IoTHubModuleClient.create_from_connection_string(
                env["EdgeHubConnectionString"], server_verification_cert=ca.read(), keep_alive=keep_alive
            )
        clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT)
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown(), WAIT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_network_thread_killed_by_ssleoferror_is_deaf_within_two_checks(
    connect: Callable[..., Awaitable[IoTHubModuleClient]],
) -> None:
    client = await connect()
    paho = paho_of(client)
    thread = paho._thread
    assert thread is not None and thread.is_alive()
    verdicts = Verdicts()
    dog = Watchdog(client, 2.0, verdicts)  # checks every 0.5 s
    await dog.start()
    assert dog.checks == (OFFLINE, THREAD_GONE, SILENT)
    real_sock = paho._sock
    paho._sock = EofOnSend(real_sock)
    send = asyncio.ensure_future(client.send_message_to_output(Message(b"{}"), "amlOutput"))  # paho's thread writes it
    try:
        await asyncio.to_thread(thread.join, WAIT)
        assert not thread.is_alive(), "paho's network thread survived the write"
        if PAHO_1:
            # The stuck state: the thread is dead and the SDK never heard of it.
            assert client.connected and paho._thread is thread
            await asyncio.wait_for(verdicts.event.wait(), 3 * dog.interval_s + 2)
            assert len(verdicts.reasons) == 1 and verdicts.reasons[0].startswith(f"{THREAD_GONE}:")
            assert not dog.healthy
        else:
            # paho 2 treats it as a lost connection: the SDK reconnects on a new thread; nothing is deaf.
            await asyncio.wait_for(send, WAIT)
            assert client.connected and paho._thread is not None and paho._thread.is_alive()
            assert dog.healthy and verdicts.reasons == []
    finally:
        send.cancel()
        await dog.close()
        if paho._thread is thread and not thread.is_alive():
            # Revive paho on its own socket, else the SDK's shutdown waits for a thread that is gone (10 s).
            paho._sock, paho._thread = real_sock, None
            paho.loop_start()


async def test_a_healthy_idle_connection_is_not_called_deaf(connect: Callable[..., Awaitable[IoTHubModuleClient]]) -> None:
    # keepalive 1 s: paho pings every second of quiet; the silent limit is max(1, 2 x 1) = 2 s, so a
    # 5 s window with no traffic but pings would fail if PINGRESPs did not count.
    client = await connect(keep_alive=1)
    verdicts = Verdicts()
    dog = Watchdog(client, 1.0, verdicts)  # checks every 0.25 s
    await dog.start()
    try:
        assert dog.checks == (OFFLINE, THREAD_GONE, SILENT)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(verdicts.event.wait(), 5.0)
        assert dog.healthy and verdicts.reasons == [] and client.connected
    finally:
        await dog.close()


async def test_edgehub_unreachable_longer_than_the_limit_is_deaf(
    connect: Callable[..., Awaitable[IoTHubModuleClient]], broker: Broker
) -> None:
    client = await connect()
    verdicts = Verdicts()
    dog = Watchdog(client, 1.0, verdicts)
    await dog.start()
    await asyncio.to_thread(broker.stop)
    try:
        await asyncio.wait_for(verdicts.event.wait(), WAIT)
        assert len(verdicts.reasons) == 1 and verdicts.reasons[0].startswith(f"{OFFLINE}:")
        assert not client.connected
    finally:
        await dog.close()
        await asyncio.to_thread(broker.start)  # so that the client shuts down against a broker


async def test_a_network_thread_stuck_in_a_callback_is_deaf(connect: Callable[..., Awaitable[IoTHubModuleClient]]) -> None:
    client = await connect(keep_alive=1)
    paho = paho_of(client)
    entered, release = threading.Event(), threading.Event()

    def stuck(*_args: object) -> None:  # paho logs each packet it sends, on its network thread: the next PINGREQ stops here
        entered.set()
        release.wait(3 * WAIT)

    verdicts = Verdicts()
    dog = Watchdog(client, 1.0, verdicts)
    paho.on_log = stuck
    try:
        await dog.start()
        assert await asyncio.to_thread(entered.wait, WAIT), "paho's thread never logged a packet"
        await asyncio.wait_for(verdicts.event.wait(), WAIT)
        assert len(verdicts.reasons) == 1 and verdicts.reasons[0].startswith(f"{SILENT}:")
        assert paho._thread is not None and paho._thread.is_alive() and client.connected
    finally:
        paho.on_log = None
        release.set()
        await dog.close()
