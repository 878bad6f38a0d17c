"""End to end over real MQTT: `python -m app` with its real azure-iot-device client, connected over TLS
to a real Mosquitto standing in for edgeHub (see localedge/). Nothing of the SDK is mocked.

The test side plays edgeHub's router: it publishes to the module's input topic what edgeHub would
deliver, and reads what the module sends on its output topic.

Readiness: the module logs "ready:" only after the SDK's `on_message_received` setter has returned,
which blocks until the broker acknowledged the subscription to `devices/{d}/modules/{m}/inputs/#`,
so every input published after that line is routed to the module's session. No sleeps: every wait
is an Event or a Queue with a bounded timeout.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from app.model.scorer import Scorer
from app.settings import ENV_NAMES
from localedge.broker import Broker, take_session_backlog
from localedge.processes import ModuleProcess, module_environment
from localedge.twin import Twin
from localedge.wire import EdgeClient, EdgeMessage, inputs_filter
from tests.conftest import DEFAULT_MODEL_VERSION
from tests.helpers import reading, row, unsettled_ids

DEVICE, MODULE = "edge-test-device", "inference"
INPUT, OUTPUT, ERRORS = "amlInput", "amlOutput", "errorOutput"
STOP_TIMEOUT = 20.0  # SIGTERM -> exit: SHUTDOWN_TIMEOUT_S (8) + client shutdown (5) + margin
UPSTREAM = [("$.ct", "application/json"), ("$.ce", "utf-8"), ("$.cdid", DEVICE), ("$.cmid", "SimulatedTemperatureSensor")]
STOPPED = re.compile(r"stopped: messages=(\d+) predictions=(\d+) errors=(\d+) sent=(\d+) send_failures=(\d+)")


@pytest.fixture
def edge(listen: Callable[[str, str], EdgeClient]) -> EdgeClient:
    """The test side, subscribed to everything the module sends."""
    return listen(DEVICE, MODULE)


@pytest.fixture
def start_module(
    broker: Broker, serve_twin: Callable[..., Twin], launch: Callable[..., ModuleProcess]
) -> Callable[..., ModuleProcess]:
    """Starts `python -m app` against the broker (its twin served) and waits for "ready:"."""
    started: list[ModuleProcess] = []

    def start(**settings: str) -> ModuleProcess:
        if not started:
            serve_twin(DEVICE, MODULE)
        # HTTP_PORT=0: these tests are about edgeHub; module processes must not compete for a port.
        env = module_environment(
            {**broker.module_env(DEVICE, MODULE), "LOG_LEVEL": "INFO", "HTTP_PORT": "0", **settings}, drop=ENV_NAMES
        )
        module = launch(env)
        started.append(module)
        module.wait_ready(timeout=30)
        return module

    return start


def send(edge: EdgeClient, message_id: str, body: bytes, **custom: str) -> Any:
    props = [("$.mid", message_id), *UPSTREAM, *custom.items()]
    return edge.send_to_input(DEVICE, MODULE, INPUT, body, props)


def stop_and_collect_rest(
    module: ModuleProcess, edge: EdgeClient, timeout: float = STOP_TIMEOUT
) -> tuple[int, list[EdgeMessage]]:
    """SIGTERM the module; once it has exited every send it made was acknowledged by the broker,
    so after a barrier every output it produced is in `edge.messages`."""
    code = module.terminate(timeout)
    edge.barrier()
    return code, edge.drain()


def stopped_stats(module: ModuleProcess) -> tuple[int, ...]:
    match = STOPPED.search(module.log)
    assert match, f"no 'stopped:' line in the module's log:\n{module.log_tail()}"
    return tuple(int(n) for n in match.groups())


def assert_clean_log(module: ModuleProcess) -> None:
    bad = [line for line in module.log.splitlines() if line.startswith(("<4>", "<3>", "<2>")) or "Traceback" in line]
    assert not bad, "\n".join(bad)


def test_readings_become_predictions_with_properties_carried(
    edge: EdgeClient, start_module: Callable[..., ModuleProcess], scorer: Scorer
) -> None:
    n = 200
    # Temperatures across the ramp; every 7th reading's pressure is far off the temperature line.
    readings = [reading(21.0 + (i % 80), pressure=(9.5 if i % 7 == 0 else None)) for i in range(n)]
    for i, r in enumerate(readings):
        r["timeCreated"] = f"2026-01-01T00:00:00.{i:07d}Z"  # unique: ties each output to its input
    expected = dict(zip((f"m-{i}" for i in range(n)), scorer.score([row(r) for r in readings]), strict=True))
    assert {e["label"] for e in expected.values()} == {"normal", "anomaly"}  # both outcomes exercised

    module = start_module()
    infos = [send(edge, f"m-{i}", orjson.dumps(r), sequenceNumber=str(i), batchId="b-7") for i, r in enumerate(readings)]
    edge.wait_published(infos, timeout=10)
    outputs = edge.collect(n, timeout=20)
    code, extra = stop_and_collect_rest(module, edge)

    assert code == 0
    assert extra == [], f"{len(extra)} outputs beyond the {n} expected"
    ids = [m.correlation_id for m in outputs]
    assert len(set(ids)) == n and set(ids) == set(expected)
    for m in outputs:
        i = int(m.correlation_id.removeprefix("m-"))
        assert m.output_name == OUTPUT
        assert (m.content_type, m.content_encoding) == ("application/json", "utf-8")
        assert m.message_id and m.message_id != m.correlation_id
        # Upstream custom properties carried over; edgeHub's $.cdid/$.cmid stay behind.
        assert m.custom_properties == {"sequenceNumber": str(i), "batchId": "b-7"}
        assert "$.cdid" not in m.properties and "$.cmid" not in m.properties
        body = orjson.loads(m.body)
        assert body["label"] in {"normal", "anomaly"}
        assert body == {
            **expected[m.correlation_id],
            "timeCreated": readings[i]["timeCreated"],
            "model": "temperature-anomaly",
            "modelVersion": DEFAULT_MODEL_VERSION,
        }
    assert stopped_stats(module) == (n, n, 0, n, 0)
    assert_clean_log(module)


def test_malformed_messages_get_one_error_record_each(edge: EdgeClient, start_module: Callable[..., ModuleProcess]) -> None:
    missing = reading(50.0)
    del missing["ambient"]["humidity"]
    stringy = reading(50.0)
    stringy["machine"]["pressure"] = "high"
    bad = {
        "not_json": b"temperature=21.5;pressure=1.2",
        "missing_feature": orjson.dumps(missing),
        "not_numeric": orjson.dumps(stringy),
    }
    # Interleaved: good, bad, good, bad... each kind three times.
    plan: list[tuple[str, bytes, str | None]] = []
    for k in range(9):
        plan.append((f"good-{k}", orjson.dumps(reading(30.0 + k)), None))
        code = list(bad)[k % 3]
        plan.append((f"bad-{k}", bad[code], code))
    plan.append(("good-9", orjson.dumps(reading(60.0)), None))

    module = start_module()
    edge.wait_published([send(edge, mid, body, sequenceNumber=str(i)) for i, (mid, body, _) in enumerate(plan)], timeout=10)
    outputs = edge.collect(len(plan), timeout=20)
    code, extra = stop_and_collect_rest(module, edge)

    assert code == 0
    assert extra == []
    by_id = {m.correlation_id: m for m in outputs}
    assert len(by_id) == len(plan)  # exactly one outcome per input
    for i, (mid, body, error) in enumerate(plan):
        m = by_id[mid]
        assert (m.content_type, m.content_encoding) == ("application/json", "utf-8")
        assert m.custom_properties == {"sequenceNumber": str(i)}
        record = orjson.loads(m.body)
        if error is None:
            assert m.output_name == OUTPUT
            assert record["label"] in {"normal", "anomaly"} and record["model"] == "temperature-anomaly"
        else:
            assert m.output_name == ERRORS
            assert record["code"] == error, record
            assert record["inputMessageId"] == mid
            assert record["inputName"] == INPUT
            assert record["input"] == body.decode() and record["inputTruncated"] is False
            assert record["model"] == "temperature-anomaly"
    assert stopped_stats(module) == (len(plan), 10, 9, len(plan), 0)
    assert_clean_log(module)


@pytest.mark.parametrize("journal", ["disk", "off"])  # off: the stop unsubscribes and scores all it acknowledged
def test_sigterm_mid_stream_loses_nothing_it_acknowledged(
    broker: Broker, edge: EdgeClient, start_module: Callable[..., ModuleProcess], journal: str
) -> None:
    n = 800
    # Everything the SDK acknowledged is in hand at SIGTERM (it acknowledges on arrival, and takes
    # all n within moments), so the whole stream must be scored (or journaled) before exit; give a slow CI room.
    module = start_module(SHUTDOWN_TIMEOUT_S="30", INTAKE_JOURNAL=journal)
    body = orjson.dumps(reading(40.0))
    ids = [f"m-{i}" for i in range(n)]
    # All n are with the broker (acknowledged, queued for the module's persistent session) first.
    edge.wait_published([send(edge, mid, body, sequenceNumber=str(i)) for i, mid in enumerate(ids)], timeout=15)
    seen = edge.collect(10, timeout=15)  # the stream is flowing
    seen += edge.drain()
    code, rest = stop_and_collect_rest(module, edge, timeout=45)
    outputs = seen + rest

    # What the module "had received": what its SDK acknowledged to the broker (it acknowledges on
    # arrival, before our handler sees it). Whatever it did not acknowledge is still queued for its
    # persistent session (the stop keeps the subscription); we take that over once the module has exited.
    # What it acknowledged after the stop began is in its journal, unsettled, for the next start. So each
    # published message is in exactly one place: scored (one outcome), in the journal, or with the broker.
    backlog = take_session_backlog(broker, f"{DEVICE}/{MODULE}", inputs_filter(DEVICE, MODULE))
    backlog_ids = collections.Counter(m.message_id for m in backlog)
    deferred = collections.Counter(unsettled_ids(module.env["JOURNAL_DIR"]) if journal == "disk" else [])
    counts = collections.Counter(m.correlation_id for m in outputs)

    assert len(seen) < n, "the stream was over before SIGTERM; nothing was tested"
    assert code == 0
    assert [mid for mid, c in counts.items() if c > 1] == []  # no duplicates
    assert len(outputs) >= len(seen)
    assert all(m.output_name == OUTPUT for m in outputs)
    lost = set(ids) - set(counts) - set(deferred) - set(backlog_ids)
    assert not lost, f"{len(lost)} acknowledged messages got no outcome (outputs {len(outputs)}, backlog {len(backlog)})"
    # Each in one place only: none of those with an outcome is still queued or in the journal; only those in flight
    # when the module disconnected are in both the journal and the queue (QoS 1: their PUBACK did not go out).
    again = set(deferred) & set(backlog_ids)
    assert len(again) <= 20  # Mosquitto's max_inflight_messages
    assert counts.total() + deferred.total() + backlog_ids.total() - len(again) == n
    assert sorted(counts) == sorted(set(ids) - set(backlog_ids) - set(deferred))
    messages, predictions, errors, sent, failures = stopped_stats(module)
    assert (messages, predictions, errors, sent, failures) == (len(outputs), len(outputs), 0, len(outputs), 0)
    assert_clean_log(module)
