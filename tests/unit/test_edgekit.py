"""edgekit, the kit every edge program here shares: twin patches, message sizes, typed settings,
signals, and the hand-over from the SDK's threads."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from edgekit.handoff import Handoff
from edgekit.limits import METERING_BLOCK_BYTES, message_size, metered_blocks
from edgekit.signals import stop_on_signals
from edgekit.twin_patch import merge_patch
from edgekit.typed_settings import SettingsError, bound_problems, fields_of, parse_json, setting, values_from_env


def test_merge_patch_nests_replaces_and_deletes() -> None:
    doc: dict[str, Any] = {"a": 1, "n": {"x": 1, "y": 2}, "gone": True}
    doc = merge_patch(doc, {"a": {"new": 1}, "n": {"y": None, "z": [1]}, "gone": None, "b": "s"})
    assert doc == {"a": {"new": 1}, "n": {"x": 1, "z": [1]}, "b": "s"}


# --- the one message-size rule ---------------------------------------------------------------------


def test_message_size_counts_utf8_bytes_of_body_and_properties() -> None:
    assert message_size(b"12345") == 5
    assert message_size(b"12345", {"k": "v"}) == 7
    # "é" is one character but two bytes: IoT Hub meters bytes
    assert message_size(b"{}", {"plaçe": "café"}) == 2 + 6 + 5


def test_metering_blocks_round_up_and_cost_at_least_one() -> None:
    assert [metered_blocks(n) for n in (0, 1, METERING_BLOCK_BYTES, METERING_BLOCK_BYTES + 1)] == [1, 1, 1, 2]


# --- typed settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    count: int = setting(3, env="COUNT", minimum=1, help="how many")
    ratio: float | None = setting(None, env="RATIO", above=0, below=1, help="a fraction")
    names: tuple[str, ...] = setting(("a",), env="NAMES", help="some names")
    level: str = setting("INFO", env="LEVEL", choices=("DEBUG", "INFO"), help="a level")
    on: bool = setting(False, env="ON", help="a flag")


def test_env_values_parse_by_type_and_every_bad_one_is_named() -> None:
    values, problems = values_from_env(Example, {"COUNT": "7", "RATIO": "0.5", "NAMES": " x, y ,", "LEVEL": "debug", "ON": "yes"})
    assert values == {"count": 7, "ratio": 0.5, "names": ("x", "y"), "level": "DEBUG", "on": True} and problems == []
    values, problems = values_from_env(Example, {"COUNT": "many", "RATIO": "", "LEVEL": "loud", "ON": "maybe"})
    assert values == {}  # an empty variable counts as unset
    assert problems == [
        "COUNT='many': invalid literal for int() with base 10: 'many'",
        "LEVEL='loud': expected one of DEBUG, INFO",
        "ON='maybe': expected true or false",
    ]


def test_bounds_say_what_is_wanted() -> None:
    problems = {f.name: text for f, text in bound_problems(Example(count=0, ratio=1.0, level="LOUD"))}
    assert problems == {
        "count": "0 must be at least 1",
        "ratio": "1.0 must be between 0 and 1 (exclusive)",
        "level": "'LOUD' is not one of DEBUG, INFO",
    }


def test_json_values_are_checked_strictly() -> None:
    fields = {f.name: f for f in fields_of(Example)}
    assert parse_json(fields["names"], ["p", "q"]) == ("p", "q") and parse_json(fields["ratio"], None) is None
    for name, value in [("count", True), ("count", 1.5), ("ratio", "0.5"), ("on", 1), ("names", [1])]:
        with pytest.raises(ValueError):
            parse_json(fields[name], value)


def test_settings_error_lists_problems_one_per_line() -> None:
    error = SettingsError("invalid settings", ["A: bad", "B: worse"])
    assert str(error) == "invalid settings:\n  A: bad\n  B: worse" and error.problems == ["A: bad", "B: worse"]


# --- signals and the hand-over ---------------------------------------------------------------------


async def test_stop_on_signals_sets_its_event_and_removes_its_handler() -> None:
    with stop_on_signals((signal.SIGUSR1,)) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        async with asyncio.timeout(5):
            await stop.wait()
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.default_int_handler)


async def test_handoff_delivers_every_item_in_order_on_the_loop_with_few_wakeups() -> None:
    loop = asyncio.get_running_loop()
    got: list[int] = []
    threads: set[int] = set()
    done = asyncio.Event()
    n = 20_000

    def deliver(item: int) -> None:
        got.append(item)
        threads.add(threading.get_ident())
        if item == n - 1:
            done.set()

    handoff = Handoff(loop, deliver)
    wakeups = 0
    original = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        producer = threading.Thread(target=lambda: [handoff.put(i) for i in range(n)])
        producer.start()
        async with asyncio.timeout(10):
            await done.wait()
        producer.join(5)
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
    assert got == list(range(n))  # each once, in put order
    assert threads == {threading.get_ident()}  # on the loop's thread
    assert 1 <= wakeups < n  # coalesced: a drain takes what gathered meanwhile


async def test_handoff_handler_is_a_coroutine_function_for_the_sdk() -> None:
    import inspect

    got: list[str] = []
    handoff: Handoff[str] = Handoff(asyncio.get_running_loop(), got.append)
    assert inspect.iscoroutinefunction(handoff.handler)  # the SDK runs these on its handler loop, not a thread pool
    await asyncio.to_thread(asyncio.run, handoff.handler("x"))
    async with asyncio.timeout(5):
        while not got:
            await asyncio.sleep(0)
    assert got == ["x"]


async def test_a_failing_delivery_does_not_hold_back_the_items_behind_it() -> None:
    got: list[int] = []

    def deliver(item: int) -> None:
        if item == 1:
            raise RuntimeError("a bug of the receiver")
        got.append(item)

    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), deliver)
    await asyncio.to_thread(lambda: [handoff.put(i) for i in range(4)])
    async with asyncio.timeout(5):
        while len(got) < 3:
            await asyncio.sleep(0)
    assert got == [0, 2, 3]


def test_a_message_tap_sees_each_message_before_the_sdk_and_on_pahos_terms() -> None:
    """The tap runs inside paho's on_message, which paho 1.6.1 returns from before it sends the PUBACK."""
    import paho.mqtt.client as paho
    from azure.iot.device.common.mqtt_transport import MQTTTransport

    from edgekit.mqtt_socket import set_message_tap

    seen: list[tuple[str, str, bytes]] = []
    set_message_tap("dev/tapped", lambda topic, payload: seen.append(("tap", topic, payload)))
    try:
        transport = MQTTTransport(client_id="dev/tapped", hostname="localhost", username="u")
        transport.on_mqtt_message_received_handler = lambda topic, payload: seen.append(("sdk", topic, payload))
        other = MQTTTransport(client_id="dev/other", hostname="localhost", username="u")
        other.on_mqtt_message_received_handler = lambda topic, payload: seen.append(("other", topic, payload))
        message = paho.MQTTMessage(topic=b"devices/dev/modules/tapped/inputs/in1/")
        message.payload = b"{}"
        transport._mqtt_client.on_message(transport._mqtt_client, None, message)
        other._mqtt_client.on_message(other._mqtt_client, None, message)
        set_message_tap("dev/tapped", lambda topic, payload: 1 / 0)  # a failing tap costs the SDK nothing
        transport._mqtt_client.on_message(transport._mqtt_client, None, message)
    finally:
        set_message_tap("dev/tapped", None)
    t = "devices/dev/modules/tapped/inputs/in1/"
    assert seen == [("tap", t, b"{}"), ("sdk", t, b"{}"), ("other", t, b"{}"), ("sdk", t, b"{}")]


def test_log_lines_are_in_iot_edges_format_so_getmodulelogs_can_filter_by_level() -> None:
    import logging
    import re

    from edgekit.logs import IoTEdgeFormatter

    formatter = IoTEdgeFormatter()
    lines = []
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL, 25):
        record = logging.LogRecord("app.main", level, __file__, 1, "ready: %s", ("yes",), None)
        record.created, record.msecs = 1796083200.25, 250.0  # 2026-12-01 00:00:00.250 UTC
        lines.append(formatter.format(record))
    assert lines[1] == "<6> 2026-12-01 00:00:00.250 +00:00 [INF] app.main: ready: yes"
    assert [re.match(r"<(\d)> ", line).group(1) for line in lines] == ["7", "6", "4", "3", "2", "6"]  # type: ignore[union-attr]
    assert [line.split("[")[1][:3] for line in lines] == ["DBG", "INF", "WRN", "ERR", "CRT", "INF"]
