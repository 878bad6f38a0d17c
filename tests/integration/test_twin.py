"""The local edge's twin and direct methods against a real azure-iot-device IoTHubModuleClient in this process,
over TLS to a real Mosquitto: what the SDK sends is answered by localedge.twin as IoT Hub (via edgeHub) would.

No sleeps: the SDK's calls are awaited (bounded), pushed patches and method calls are waited for on queues.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from azure.iot.device import MethodRequest, MethodResponse
from azure.iot.device.aio import IoTHubModuleClient
from azure.iot.device.exceptions import ClientError

from localedge.broker import Broker
from localedge.twin import Twin

DEVICE, MODULE = "twin-test-device", "tempSensor"
DESIRED = {"SendInterval": 5, "SendData": True, "limits": {"low": 10, "high": 90}}
WAIT = 10.0  # bound on every SDK call and every wait


@pytest.fixture
def twin(serve_twin: Callable[..., Twin]) -> Twin:
    return serve_twin(DEVICE, MODULE, DESIRED)


def new_client(broker: Broker) -> IoTHubModuleClient:
    env = broker.module_env(DEVICE, MODULE)
    with open(env["EdgeModuleCACertificateFile"]) as ca:
        return IoTHubModuleClient.create_from_connection_string(
            env["EdgeHubConnectionString"], server_verification_cert=ca.read()
        )


@pytest.fixture
async def client(broker: Broker, twin: Twin) -> AsyncIterator[IoTHubModuleClient]:
    client = new_client(broker)
    try:
        await asyncio.wait_for(client.connect(), WAIT)
        yield client
    finally:
        await asyncio.wait_for(client.shutdown(), WAIT)


def queue_handler(queue: asyncio.Queue[Any]) -> Any:
    """A handler for the SDK's handler thread that hands its argument to this loop's queue."""
    loop = asyncio.get_running_loop()
    return lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)


async def test_get_twin_returns_the_manifest_desired_properties(client: IoTHubModuleClient) -> None:
    got = await asyncio.wait_for(client.get_twin(), WAIT)
    assert got == {"desired": {**DESIRED, "$version": 1}, "reported": {"$version": 1}}


async def test_reported_patches_merge_bump_the_version_and_wake_waiters(client: IoTHubModuleClient, twin: Twin) -> None:
    waiter = asyncio.create_task(asyncio.to_thread(twin.wait_reported, lambda r: r.get("stage") == 2, WAIT))
    await asyncio.wait_for(client.patch_twin_reported_properties({"stage": 1, "n": {"x": 1, "y": 2}}), WAIT)
    await asyncio.wait_for(client.patch_twin_reported_properties({"stage": 2, "n": {"y": None}}), WAIT)

    assert await waiter == {"stage": 2, "n": {"x": 1}}
    got = await asyncio.wait_for(client.get_twin(), WAIT)
    assert got["reported"] == {"stage": 2, "n": {"x": 1}, "$version": 3}
    assert twin.wait_reported(lambda r: r.get("stage") == 3, 0.05) is None  # bounded: no such report


async def test_a_reported_patch_with_a_dollar_name_is_refused(client: IoTHubModuleClient, twin: Twin) -> None:
    with pytest.raises(ClientError) as refused:
        await asyncio.wait_for(client.patch_twin_reported_properties({"$version": 7}), WAIT)
    assert "400" in str(refused.value.__cause__)  # the SDK wraps the status in a ServiceError
    assert twin.document()["reported"] == {"$version": 1}


async def test_a_desired_patch_reaches_the_module_with_its_version(client: IoTHubModuleClient, twin: Twin) -> None:
    patches: asyncio.Queue[dict] = asyncio.Queue()
    # The setter returns once the SDK has subscribed to desired patches.
    await asyncio.to_thread(setattr, client, "on_twin_desired_properties_patch_received", queue_handler(patches))

    assert await asyncio.to_thread(twin.patch_desired, {"SendInterval": 1, "limits": {"low": None}}) == 2
    assert await asyncio.wait_for(patches.get(), WAIT) == {"SendInterval": 1, "limits": {"low": None}, "$version": 2}
    assert await asyncio.to_thread(twin.patch_desired, {"SendData": False}) == 3
    assert await asyncio.wait_for(patches.get(), WAIT) == {"SendData": False, "$version": 3}

    got = await asyncio.wait_for(client.get_twin(), WAIT)
    assert got["desired"] == {"SendInterval": 1, "SendData": False, "limits": {"high": 90}, "$version": 3}


async def test_a_module_that_sets_its_patch_handler_first_gets_the_whole_desired_on_connect(broker: Broker, twin: Twin) -> None:
    """The SDK's ensure_desired_properties: it GETs the twin on connect and hands a newer version over as a patch."""
    await asyncio.to_thread(twin.patch_desired, {"SendInterval": 2})
    client = new_client(broker)
    patches: asyncio.Queue[dict] = asyncio.Queue()
    try:
        client.on_twin_desired_properties_patch_received = queue_handler(patches)  # connects and subscribes
        assert await asyncio.wait_for(patches.get(), WAIT) == {**DESIRED, "SendInterval": 2, "$version": 2}
    finally:
        await asyncio.wait_for(client.shutdown(), WAIT)


async def test_direct_methods_are_answered_by_the_module(client: IoTHubModuleClient, twin: Twin) -> None:
    async def on_method(request: MethodRequest) -> None:
        if request.name in ("echo", "a b/c"):
            response = MethodResponse.create_from_method_request(request, 200, {"name": request.name, "got": request.payload})
        else:
            response = MethodResponse.create_from_method_request(request, 404, {"message": f"no method {request.name}"})
        await client.send_method_response(response)

    await asyncio.to_thread(setattr, client, "on_method_request_received", on_method)

    assert await asyncio.to_thread(twin.invoke, "echo", {"x": [1, 2]}, WAIT) == (200, {"name": "echo", "got": {"x": [1, 2]}})
    assert await asyncio.to_thread(twin.invoke, "a b/c", None, WAIT) == (200, {"name": "a b/c", "got": None})
    assert await asyncio.to_thread(twin.invoke, "reboot", "now", WAIT) == (404, {"message": "no method reboot"})


async def test_a_method_nobody_answers_times_out_with_504(client: IoTHubModuleClient, twin: Twin) -> None:
    started = time.monotonic()
    status, payload = await asyncio.to_thread(twin.invoke, "reset", {}, 0.3)
    assert status == 504
    assert payload["errorCode"] == 504101 and "reset" in payload["message"] and "tempSensor" in payload["message"]
    assert 0.3 <= time.monotonic() - started < 3
