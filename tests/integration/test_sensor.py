"""`python -m sensor` end to end: its real azure-iot-device client over TLS to a real Mosquitto (localedge).

The test side plays edgeHub (reads the sensor's output topic, delivers to its `control` input) and
IoT Hub (the module twin and direct methods, on the broker's plain listener). No sleeps: every wait
is an Event, a Queue or a log line with a bounded timeout.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from localedge.broker import Broker
from localedge.errors import EdgeError
from localedge.processes import REPO_ROOT, ModuleProcess, module_environment
from localedge.twin import Twin
from localedge.wire import EdgeClient, EdgeMessage
from sensor.readings import Simulation
from sensor.settings import ENV, SensorSettings

DEVICE, MODULE, OUTPUT = "edge-test-device", "tempSensor", "temperatureOutput"
TIME_CREATED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def twin(serve_twin: Callable[..., Twin]) -> Twin:
    return serve_twin(DEVICE, MODULE)


@pytest.fixture
def edge(listen: Callable[[str, str], EdgeClient]) -> EdgeClient:
    """The test side, subscribed to everything the sensor sends."""
    return listen(DEVICE, MODULE)


@pytest.fixture
def start_sensor(broker: Broker, twin: Twin, launch: Callable[..., ModuleProcess]) -> Callable[..., ModuleProcess]:
    """Starts `python -m sensor` against the broker (its twin served) and waits for "ready:"."""

    def start(**settings: str) -> ModuleProcess:
        env = module_environment({**broker.module_env(DEVICE, MODULE), "LOG_LEVEL": "INFO", **settings}, drop=ENV)
        sensor = launch(env, ("-m", "sensor"))
        sensor.wait_ready(timeout=30)
        return sensor

    return start


def body(msg: EdgeMessage) -> dict[str, Any]:
    return json.loads(msg.body)


def temperature(msg: EdgeMessage) -> float:
    return body(msg)["machine"]["temperature"]


def read_until(edge: EdgeClient, *wanted: Callable[[EdgeMessage], bool], timeout: float) -> list[EdgeMessage]:
    """What arrives until each of `wanted` has matched a message, within `timeout` in all."""
    deadline, got, pending = time.monotonic() + timeout, [], list(wanted)
    while pending:
        try:
            got.append(edge.messages.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            raise EdgeError(f"{len(pending)} of {len(wanted)} awaited messages not seen within {timeout:.0f}s") from None
        pending = [p for p in pending if not p(got[-1])]
    return got


def above(limit: float) -> Callable[[EdgeMessage], bool]:
    return lambda m: m.output_name == OUTPUT and temperature(m) > limit


def below(limit: float) -> Callable[[EdgeMessage], bool]:
    return lambda m: m.output_name == OUTPUT and temperature(m) < limit


def method_reply(rid: int) -> Callable[[EdgeMessage], bool]:
    return lambda m: m.topic.startswith("$iothub/methods/res/") and m.topic.endswith(f"?$rid={rid}")


def assert_clean_log(sensor: ModuleProcess) -> None:
    bad = [line for line in sensor.log.splitlines() if line.startswith(("<4>", "<3>", "<2>")) or "Traceback" in line]
    assert not bad, "\n".join(bad)


# --- the module over MQTT ---------------------------------------------------------------------------


def test_sends_message_count_readings_shaped_like_microsofts(
    edge: EdgeClient, start_sensor: Callable[..., ModuleProcess]
) -> None:
    n, seed = 300, 11
    sensor = start_sensor(MessageCount=str(n), MessageDelay="0", SENSOR_SEED=str(seed))
    outputs = edge.collect(n, timeout=30)
    sensor.wait_for_line("sensor: done: sent=300 failed=0", timeout=10)
    edge.barrier()
    assert edge.drain() == []  # exactly MessageCount

    sim, batch_ids = Simulation(SensorSettings(seed=seed)), set()
    for seq, m in enumerate(outputs, start=1):
        sim.step()
        expected = sim.reading()
        assert m.output_name == OUTPUT
        assert (m.content_type, m.content_encoding) == ("application/json", "utf-8")
        assert m.custom_properties.keys() == {"sequenceNumber", "batchId"}
        assert m.custom_properties["sequenceNumber"] == str(seq)  # in order
        batch_ids.add(m.custom_properties["batchId"])
        reading = body(m)
        assert TIME_CREATED.fullmatch(reading.pop("timeCreated"))
        del expected["timeCreated"]
        assert reading == expected  # the seeded values, exactly
        assert isinstance(reading["ambient"]["humidity"], int) and isinstance(reading["machine"]["pressure"], float)
    assert len({m.message_id for m in outputs}) == n and all(m.message_id for m in outputs)
    assert len(batch_ids) == 1 and UUID.fullmatch(batch_ids.pop())

    assert sensor.process is not None and sensor.process.poll() is None  # stays connected after the count, as Microsoft's
    assert sensor.terminate(timeout=10) == 0
    assert "sensor: stopped: sent=300 failed=0" in sensor.log
    assert_clean_log(sensor)


def test_message_delay_paces_the_sends(edge: EdgeClient, start_sensor: Callable[..., ModuleProcess]) -> None:
    n, delay = 21, 0.05
    start_sensor(MessageCount=str(n), MessageDelay="00:00:00.05")
    arrivals = []
    for _ in range(n):
        edge.collect(1, timeout=10)
        arrivals.append(time.monotonic())
    spread = arrivals[-1] - arrivals[0]
    # 20 intervals of 50 ms: not faster than the schedule; loosely bounded above (a busy CI machine).
    assert (n - 1) * delay * 0.9 <= spread <= (n - 1) * delay + 0.8, spread


def test_send_data_false_sends_nothing_until_a_desired_patch(
    edge: EdgeClient, twin: Twin, start_sensor: Callable[..., ModuleProcess]
) -> None:
    # The twin's SendInterval (10 ms) overrides MessageDelay (5 s): ticks come fast while nothing is sent.
    twin.desired.update(SendData=False, SendInterval=0.01)
    sensor = start_sensor(MessageCount="5", MessageDelay="00:00:05", SENSOR_LOG_EVERY="10")
    sensor.wait_for_line("readings=30 sent=0 skipped=30", timeout=10)
    edge.barrier()
    assert edge.drain() == []

    twin.patch_desired({"SendData": True})
    outputs = edge.collect(5, timeout=10)
    assert [m.custom_properties["sequenceNumber"] for m in outputs] == ["1", "2", "3", "4", "5"]
    reported_back = twin.wait_reported(lambda r: r.get("SendData") is True, timeout=10)  # as Microsoft's
    assert reported_back == {"SendData": True, "SendInterval": 0.01}
    sensor.wait_for_line("sensor: done: sent=5", timeout=10)
    assert temperature(outputs[0]) > 23.0  # the ramp went on while sending was off, as Microsoft's
    assert sensor.terminate(timeout=10) == 0
    assert_clean_log(sensor)


def test_control_message_and_reset_method_restart_the_ramp(
    broker: Broker,
    edge: EdgeClient,
    start_sensor: Callable[..., ModuleProcess],
) -> None:
    sensor = start_sensor(MessageCount="-1", MessageDelay="0.002")
    edge.subscribe("$iothub/methods/res/#")
    # Ramp restarts are unmistakable: from above 40 °C it can fall by 0.25 °C a reading at most.
    outputs = read_until(edge, above(50.0), timeout=20)
    edge.wait_published([edge.send_to_input(DEVICE, MODULE, "control", b'{"command":"reset"}')], timeout=5)
    outputs += read_until(edge, below(23.0), timeout=10)
    outputs += read_until(edge, above(40.0), timeout=20)
    edge.publish("$iothub/methods/POST/reset/?$rid=7", b"{}")
    edge.publish("$iothub/methods/POST/calibrate/?$rid=8", b"{}")
    seen = read_until(edge, method_reply(7), method_reply(8), below(23.0), timeout=10)
    outputs += [m for m in seen if m.output_name]
    replies = sorted(m.topic for m in seen if m.topic.startswith("$iothub/methods/res/"))
    assert replies == ["$iothub/methods/res/200/?$rid=7", "$iothub/methods/res/501/?$rid=8"]

    seqs = [int(m.custom_properties["sequenceNumber"]) for m in outputs]
    assert seqs == list(range(1, len(seqs) + 1))  # a reset restarts the ramp, not the numbering
    code = sensor.terminate(timeout=10)  # mid-stream: MessageCount is unlimited
    assert code == 0
    assert re.search(r"sensor: stopped: sent=\d+ failed=0", sensor.log)
    assert "reset by control message" in sensor.log and "reset by direct method" in sensor.log
    assert_clean_log(sensor)


def _run_sensor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensor"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("setting", "value"),
    [("MessageCount", "many"), ("MessageDelay", "soon"), ("SendData", "maybe"), ("SENSOR_SEED", "x"), ("machineTempMax", "10")],
)
def test_bad_settings_exit_2_with_the_reason(setting: str, value: str) -> None:
    done = _run_sensor(module_environment({setting: value}, drop=ENV))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"sensor: invalid settings: {setting}"), done.stderr


def test_no_edge_environment_exits_1_with_the_reason() -> None:
    done = _run_sensor(module_environment({}, drop=ENV))
    assert done.returncode == 1
    assert "cannot create the module client" in done.stderr and "IoT Edge environment not configured" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_message_count_0_sends_nothing(edge: EdgeClient, start_sensor: Callable[..., ModuleProcess]) -> None:
    sensor = start_sensor(MessageCount="0", MessageDelay="0")  # Microsoft's: 0 sends none, a negative count is unlimited
    sensor.wait_for_line("sensor: done: sent=0 failed=0", timeout=10)
    edge.barrier()
    assert edge.drain() == []
    assert sensor.terminate(timeout=10) == 0
