"""The edgeHub watchdog (app/edgehub/watchdog.py) on fake clients and probes: a fake clock, checks driven
one by one; the task itself once, with an event. The real SDK against a real broker is in
tests/integration/test_watchdog.py."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from app.edgehub.watchdog import OFFLINE, SILENT, THREAD_GONE, Observation, SdkProbe, Watchdog, check_interval


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeClient:
    connected: bool = True


@dataclass
class Scripted:
    """A probe whose observation the test sets; counts its calls."""

    seen: Observation = field(default_factory=lambda: Observation(connected=True, thread_alive=True, idle_s=0.0, keepalive_s=60))
    calls: int = 0

    def __call__(self) -> Observation:
        self.calls += 1
        return self.seen


def make(limit_s: float = 120.0, seen: Observation | None = None) -> tuple[Watchdog, Scripted, Clock, list[str]]:
    probe, clock, verdicts = Scripted(), Clock(), []
    if seen is not None:
        probe.seen = seen
    return Watchdog(FakeClient(), limit_s, verdicts.append, clock, probe=probe), probe, clock, verdicts


def test_the_check_interval_is_a_quarter_of_the_limit_at_most_five_seconds() -> None:
    assert check_interval(120) == 5.0
    assert check_interval(8) == 2.0
    assert check_interval(0.01) == 0.05


def test_a_healthy_connection_is_never_deaf() -> None:
    dog, probe, clock, verdicts = make()
    for _ in range(100):
        clock.now += 5
        assert dog.check() is None
    assert (dog.healthy, dog.reason, verdicts, probe.calls) == (True, None, [], 100)


def test_limit_zero_turns_it_off() -> None:
    dog, probe, clock, verdicts = make(0, Observation(connected=False))
    for _ in range(10):
        clock.now += 1000
        assert dog.check() is None
    assert (dog.enabled, dog.healthy, verdicts, probe.calls) == (False, True, [], 0)


async def test_limit_zero_starts_no_task() -> None:
    dog, _probe, _clock, _verdicts = make(0)
    await dog.start()
    assert dog._task is None
    await dog.close()


def test_offline_longer_than_the_limit_in_a_row_is_deaf_once() -> None:
    dog, probe, clock, verdicts = make(120, Observation(connected=False))
    assert dog.check() is None  # the outage starts being timed here
    clock.now += 120
    assert dog.check() is None  # exactly the limit: still the SDK's to fix
    clock.now += 1
    reason = dog.check()
    assert reason is not None and reason.startswith(f"{OFFLINE}:") and "121 s" in reason
    assert verdicts == [reason] and not dog.healthy and dog.reason == reason
    clock.now += 100
    assert dog.check() == reason and verdicts == [reason]  # on_deaf once; the verdict stays
    assert probe.calls == 3  # no look after the verdict


def test_a_reconnect_restarts_the_offline_timer() -> None:
    dog, probe, clock, verdicts = make(60)
    for _ in range(5):  # 50 s down, a reconnect, 50 s down ... never 60 in a row
        probe.seen = Observation(connected=False)
        for _ in range(6):
            assert dog.check() is None
            clock.now += 10
        probe.seen = Observation(connected=True, thread_alive=True)
        assert dog.check() is None
    assert verdicts == []


def test_the_network_thread_gone_while_connected_is_deaf_on_the_second_check() -> None:
    dog, _probe, clock, verdicts = make(120, Observation(connected=True, thread_alive=False, idle_s=1.0, keepalive_s=60))
    assert dog.check() is None  # once could be the SDK handling a drop
    clock.now += 5
    reason = dog.check()
    assert reason is not None and reason.startswith(f"{THREAD_GONE}:")
    assert verdicts == [reason]


def test_a_thread_blip_between_two_checks_is_not_deaf() -> None:
    dog, probe, clock, verdicts = make()
    for alive in (False, True, False, True, False, True):
        probe.seen = Observation(connected=True, thread_alive=alive)
        clock.now += 5
        assert dog.check() is None
    assert verdicts == []


def test_no_thread_while_disconnected_is_the_sdk_retrying_not_deafness() -> None:
    dog, _probe, clock, verdicts = make(120, Observation(connected=False, thread_alive=False))
    for _ in range(20):  # 100 s: under the offline limit
        assert dog.check() is None
        clock.now += 5
    assert verdicts == []


def test_silent_is_measured_against_two_keepalives_when_they_exceed_the_limit() -> None:
    dog, probe, _clock, verdicts = make(10)
    probe.seen = Observation(connected=True, thread_alive=True, idle_s=119.0, keepalive_s=60)
    assert dog.check() is None  # an idle link pings once a keepalive: 119 s of nothing is within 2 x 60
    probe.seen = Observation(connected=True, thread_alive=True, idle_s=121.0, keepalive_s=60)
    reason = dog.check()
    assert reason is not None and reason.startswith(f"{SILENT}:") and "121 s" in reason and "limit 120" in reason
    assert verdicts == [reason]


def test_silent_uses_the_limit_when_it_exceeds_two_keepalives_or_keepalive_is_unknown() -> None:
    dog, probe, _clock, verdicts = make(300)
    probe.seen = Observation(connected=True, thread_alive=True, idle_s=299.0, keepalive_s=60)
    assert dog.check() is None
    probe.seen = Observation(connected=True, thread_alive=True, idle_s=301.0, keepalive_s=None)
    assert (dog.check() or "").startswith(f"{SILENT}:")
    assert len(verdicts) == 1


def test_on_deaf_failing_is_logged_and_the_verdict_stands(caplog: pytest.LogCaptureFixture) -> None:
    def on_deaf(_reason: str) -> None:
        raise RuntimeError("boom")

    dog = Watchdog(FakeClient(connected=False), 1, on_deaf, Clock(), probe=lambda: Observation(connected=False))
    dog.check()
    dog._clock.now += 2  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        assert (dog.check() or "").startswith(OFFLINE)
    assert "on_deaf failed" in caplog.text and not dog.healthy


def test_a_failing_probe_falls_back_to_the_connected_flag_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    client, clock, verdicts = FakeClient(connected=True), Clock(), []

    def broken() -> Observation:
        raise AttributeError("'MQTTTransport' object has no attribute '_mqtt_client'")

    dog = Watchdog(client, 30, verdicts.append, clock, probe=broken)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert dog.check() is None
            clock.now += 10
        client.connected = False
        for _ in range(5):
            dog.check()
            clock.now += 10
    assert len(verdicts) == 1 and verdicts[0].startswith(OFFLINE)
    assert caplog.text.count("reading the SDK's state failed") == 1


async def test_the_task_checks_periodically_and_calls_on_deaf_once() -> None:
    fired = asyncio.Event()
    verdicts: list[str] = []

    def on_deaf(reason: str) -> None:
        verdicts.append(reason)
        fired.set()

    probe = Scripted()
    dog = Watchdog(FakeClient(), 120, on_deaf, probe=probe, interval_s=0.01)
    await dog.start()
    assert dog.checks == (OFFLINE, THREAD_GONE, SILENT)
    probe.seen = Observation(connected=True, thread_alive=False, idle_s=0.0, keepalive_s=60)
    await asyncio.wait_for(fired.wait(), 5)
    assert len(verdicts) == 1 and verdicts[0].startswith(THREAD_GONE)
    await asyncio.wait_for(dog._task, 5)  # type: ignore[arg-type]  # it ends after its verdict
    await dog.close()
    await dog.close()  # idempotent


async def test_close_stops_the_checks() -> None:
    probe = Scripted()
    dog = Watchdog(FakeClient(), 120, lambda _r: None, probe=probe, interval_s=0.01)
    await dog.start()
    task = dog._task
    await dog.close()
    assert task is not None and task.done() and dog._task is None


# --- the SDK probe on SDK-shaped object graphs -----------------------------------------------------


class Stage:
    def __init__(self, nxt: Stage | None = None, transport: Any = None) -> None:
        self.next = nxt
        if transport is not None:
            self.transport = transport


def sdk_shaped(connected: bool, paho: Any) -> Any:
    """client._mqtt_pipeline._pipeline -> stage -> ... -> stage.transport._mqtt_client, as in 2.14."""
    transport = type("MQTTTransport", (), {"_mqtt_client": paho})()
    last = Stage(transport=transport)
    root = Stage(Stage(Stage(last)))
    pipeline = type("MQTTPipeline", (), {"_pipeline": root})()
    return type("IoTHubModuleClient", (), {"_mqtt_pipeline": pipeline, "connected": connected})()


def new_paho() -> mqtt.Client:
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id="probe-test")
    return mqtt.Client(client_id="probe-test")


def test_the_probe_reads_the_installed_paho_clients_thread_and_last_received_time() -> None:
    paho = new_paho()
    probe = SdkProbe(sdk_shaped(True, paho))
    assert probe.paho_found
    seen = probe()
    assert seen.connected and seen.thread_alive is False  # loop_start() not called: no thread
    assert seen.idle_s is not None and 0 <= seen.idle_s < 60
    assert seen.keepalive_s == 60

    done = threading.Event()
    paho._thread = threading.Thread(target=done.wait, args=(5,), daemon=True)  # type: ignore[attr-defined]
    paho._thread.start()  # type: ignore[attr-defined]
    try:
        assert probe().thread_alive is True
    finally:
        done.set()
        paho._thread.join(5)  # type: ignore[attr-defined]
    assert probe().thread_alive is False  # dead, but still referenced: the SSLEOFError state


def test_the_probe_knows_paho_2s_name_for_the_last_received_time() -> None:
    paho = type("Client", (), {"_thread": None, "_last_bytes_received": 0.0, "_keepalive": 30})()
    seen = SdkProbe(sdk_shaped(True, paho))()
    assert seen.thread_alive is False and seen.idle_s is not None and seen.keepalive_s == 30


async def test_without_the_sdk_internals_only_the_offline_check_runs(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient(connected=True)  # no _mqtt_pipeline at all
    verdicts: list[str] = []
    dog = Watchdog(client, 60, verdicts.append, interval_s=3600)
    with caplog.at_level(logging.INFO):
        await dog.start()
    await dog.close()
    assert dog.checks == (OFFLINE,)
    assert caplog.text.count("only the offline check runs") == 1
    assert SdkProbe(client)() == Observation(connected=True)


def test_the_probe_finds_paho_in_the_installed_sdks_real_client() -> None:
    """The real object graph of the installed azure-iot-device (nothing connects)."""
    from azure.iot.device.aio import IoTHubModuleClient

    key = "a2V5LWZvci10ZXN0cy1vbmx5LW5vdC1hLXNlY3JldA=="
    client = IoTHubModuleClient.create_from_connection_string(
        f"HostName=probe.azure-devices.net;DeviceId=d;ModuleId=m;SharedAccessKey={key}", keep_alive=42
    )
    probe = SdkProbe(client)
    assert probe.paho_found, "azure-iot-device no longer keeps paho where the watchdog looks (see its module doc)"
    seen = probe()
    assert (seen.connected, seen.thread_alive) == (False, False)  # not connected yet: no network thread
    assert seen.idle_s is not None and seen.keepalive_s  # paho's own default until connect() passes the SDK's
