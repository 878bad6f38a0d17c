"""The local edge end to end: the deployment's modules (`python -m sensor`, `python -m app`) as real processes on
their real azure-iot-device clients, one real Mosquitto per module, localedge's hub routing between them and
recording `$upstream`. Nothing is mocked; IoT Hub is the recorder.

No sleeps: every wait is a condition (upstream count, hub count, a module's log line) with a bound. Every
process is stopped by PID in the fixture's finalizer, also when a test fails; the CLI runs are stopped with
SIGTERM (they stop their own children) and killed only if that does not work.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.model.scorer import Scorer
from localedge.broker import take_session_backlog
from localedge.deployment import DEFAULT_MANIFEST, load_deployment
from localedge.edge import DEVICE_ID, LocalEdge
from localedge.errors import EdgeError
from localedge.processes import REPO_ROOT
from localedge.store import message_id
from localedge.upstream import UpstreamRecorder
from localedge.wire import EdgeClient, inputs_filter
from tests.helpers import reading, row, unsettled_ids
from tests.integration.conftest import mosquitto_or_skip

SENSOR_MODULE, MODEL_MODULE = "tempSensor", "inference"
INPUT, OUTPUT, ERRORS = "amlInput", "amlOutput", "errorOutput"
WAIT = 30.0  # bound on every wait for messages
CLI_TIMEOUT = 90.0
STOPPED = re.compile(r"stopped: messages=(\d+) predictions=(\d+) errors=(\d+) sent=(\d+) send_failures=(\d+)")
JSON_PROPS = [("$.ct", "application/json"), ("$.ce", "utf-8")]


def stream(count: int, delay: float = 0.005, *extra: str) -> list[str]:
    """--env values for a sensor that sends `count` messages `delay` seconds apart."""
    return [f"{SENSOR_MODULE}:MessageCount={count}", f"{SENSOR_MODULE}:MessageDelay={delay}", *extra]


def write_manifest(
    directory: Path, routes: dict[str, str] | None = None, drop_modules: tuple[str, ...] = (), **desired: Any
) -> Path:
    """The repository's template with other routes, without some modules, or with more inference desired properties."""
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    content = doc["modulesContent"]
    if routes is not None:
        content["$edgeHub"]["properties.desired"]["routes"] = routes
    content[MODEL_MODULE]["properties.desired"].update(desired)
    for name in drop_modules:
        del content["$edgeAgent"]["properties.desired"]["modules"][name]
    path = directory / "deployment.test.json"
    path.write_text(json.dumps(doc))
    return path


def send_to_model(client: EdgeClient, message_id: str, body: bytes) -> Any:
    """What edgeHub would deliver to the inference module's input."""
    return client.send_to_input(DEVICE_ID, MODEL_MODULE, INPUT, body, [("$.mid", message_id), *JSON_PROPS])


def sensor_done(edge: LocalEdge, count: int) -> list[str]:
    """Wait until the sensor has sent `count` and the hub routed them all; their message ids, in order."""
    edge.modules[SENSOR_MODULE].wait_for_line(f"sensor: done: sent={count}", WAIT)
    assert edge.hub is not None and edge.hub.wait_received(SENSOR_MODULE, count, WAIT)
    ids = edge.hub.message_ids(SENSOR_MODULE)
    assert len(ids) == len(set(ids)) == count
    return ids


def outcomes(upstream: UpstreamRecorder) -> collections.Counter[str | None]:
    return collections.Counter(upstream.correlation_ids())


def stopped_stats(log: str) -> tuple[int, ...]:
    match = STOPPED.search(log)
    assert match, f"no 'stopped:' line in the module's log:\n{log[-3000:]}"
    return tuple(int(n) for n in match.groups())


# --- messages end to end ------------------------------------------------------------------------


def test_sensor_messages_become_predictions_upstream(start_edge: Callable[..., LocalEdge]) -> None:
    n = 40
    edge = start_edge(*stream(n))
    assert edge.upstream.wait_for(n, WAIT)
    sent = sensor_done(edge, n)
    edge.stop()  # every module stopped: nothing else can arrive

    upstream = list(edge.upstream.messages)
    assert sorted(m.correlation_id for m in upstream) == sorted(sent)  # one prediction per sensor message
    for m in upstream:
        assert (m.module, m.output) == (MODEL_MODULE, OUTPUT)
        assert m.properties["$.cdid"] == DEVICE_ID and m.properties["$.cmid"] == MODEL_MODULE
        assert (m.properties["$.ct"], m.properties["$.ce"]) == ("application/json", "utf-8")
        assert "$.on" not in m.properties and m.message_id not in sent
        body = orjson.loads(m.body)
        assert body["label"] in {"normal", "anomaly"} and body["model"] == "temperature-anomaly"
        assert (m.predictions, m.errors, m.blocks) == (1, 0, 1)
    summary = edge.upstream.summary()
    assert summary["upstream_messages"] == summary["predictions"] == summary["blocks_4kb"] == n
    assert summary["errors"] == 0 and summary["messages_by_output"] == {f"{MODEL_MODULE}/{OUTPUT}": n}
    latency = summary["latency_ms"]
    assert latency["count"] == n and 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert stopped_stats(edge.modules[MODEL_MODULE].log) == (n, n, 0, n, 0)
    assert edge.exit_codes == {SENSOR_MODULE: 0, MODEL_MODULE: 0}


def test_malformed_messages_reach_upstream_as_error_records(start_edge: Callable[..., LocalEdge]) -> None:
    n = 20
    edge = start_edge(*stream(n, 0.01))
    missing = reading(50.0)
    del missing["machine"]["pressure"]
    bad = {"bad-0": (b"temperature=21.5", "not_json"), "bad-1": (orjson.dumps(missing), "missing_feature")}
    client = edge.brokers[MODEL_MODULE].client()
    try:
        client.wait_published([send_to_model(client, mid, body) for mid, (body, _) in bad.items()], WAIT)
    finally:
        client.close()
    assert edge.upstream.wait_for(n + len(bad), WAIT)
    sent = sensor_done(edge, n)
    edge.stop()

    by_id = {m.correlation_id: m for m in edge.upstream.messages}
    assert len(by_id) == edge.upstream.count == n + len(bad)
    assert set(by_id) == set(sent) | set(bad)
    for mid, (body, code) in bad.items():
        record = orjson.loads(by_id[mid].body)
        assert by_id[mid].output == ERRORS and (by_id[mid].errors, by_id[mid].predictions) == (1, 0)
        assert (record["code"], record["inputMessageId"], record["input"]) == (code, mid, body.decode())
    assert all(by_id[mid].output == OUTPUT for mid in sent)  # the good ones are unaffected
    summary = edge.upstream.summary()
    assert (summary["predictions"], summary["errors"]) == (n, len(bad))
    assert summary["messages_by_output"] == {f"{MODEL_MODULE}/{OUTPUT}": n, f"{MODEL_MODULE}/{ERRORS}": len(bad)}


def test_a_where_route_sends_only_anomalies_upstream(
    start_edge: Callable[..., LocalEdge], tmp_path: Path, scorer: Scorer
) -> None:
    routes = {
        "anomalies": "FROM /messages/modules/inference/outputs/amlOutput WHERE $body.label = 'anomaly' INTO $upstream",
        "errors": "FROM /messages/modules/inference/outputs/errorOutput INTO $upstream",
    }
    edge = start_edge(manifest=write_manifest(tmp_path, routes, drop_modules=(SENSOR_MODULE,)))
    # Every 3rd reading's pressure is far off the temperature line: an anomaly.
    readings = {f"r-{i}": reading(25.0 + i, pressure=(9.8 if i % 3 == 0 else None)) for i in range(30)}
    labels = dict(zip(readings, (p["label"] for p in scorer.score([row(r) for r in readings.values()])), strict=True))
    anomalies = {mid for mid, label in labels.items() if label == "anomaly"}
    assert 0 < len(anomalies) < len(readings)
    client = edge.brokers[MODEL_MODULE].client()
    try:
        infos = [send_to_model(client, mid, orjson.dumps(r)) for mid, r in readings.items()]
        infos.append(send_to_model(client, "bad", b"{"))
        client.wait_published(infos, WAIT)
    finally:
        client.close()
    assert edge.hub is not None and edge.hub.wait_received(MODEL_MODULE, len(readings) + 1, WAIT)  # every outcome routed

    got = {m.correlation_id: m.output for m in edge.upstream.messages}
    assert got == {**dict.fromkeys(anomalies, OUTPUT), "bad": ERRORS}
    assert edge.hub.dropped == {f"no route from {MODEL_MODULE}/{OUTPUT}": len(readings) - len(anomalies)}


def test_aggregated_predictions_are_counted_per_item(start_edge: Callable[..., LocalEdge], tmp_path: Path) -> None:
    n = 60
    edge = start_edge(*stream(n, 0.002), manifest=write_manifest(tmp_path, aggregate=True, aggregateMaxDelayMs=200))
    assert edge.upstream.wait_until(lambda u: u.predictions >= n, WAIT)
    sent = sensor_done(edge, n)
    edge.stop()

    items = [item for m in edge.upstream.messages for item in orjson.loads(m.body)["predictions"]]
    assert sorted(item["messageId"] for item in items) == sorted(sent)  # each aggregate item names its input
    summary = edge.upstream.summary()
    assert summary["predictions"] == n and summary["upstream_messages"] == edge.upstream.count < n
    # Metered on body + every property going upstream ($.mid, $.ct, $.cdid... too): the module leaves room for
    # them in its 4096-byte budget, so each aggregate, full or not, takes one block.
    sizes = [len(m.body) + sum(len(k) + len(v) for k, v in m.properties.items()) for m in edge.upstream.messages]
    assert max(sizes) <= 4096 and summary["blocks_4kb"] == edge.upstream.count
    assert summary["latency_ms"]["count"] == 0  # aggregates carry no correlation id


def test_the_production_path_starts_modules_through_the_workload_api(start_edge: Callable[..., LocalEdge]) -> None:
    n = 10
    edge = start_edge(*stream(n), production_path=True)
    env = edge.modules[MODEL_MODULE].env
    assert env["IOTEDGE_MODULEID"] == MODEL_MODULE and env["IOTEDGE_GATEWAYHOSTNAME"] == edge.brokers[MODEL_MODULE].host
    assert "EdgeHubConnectionString" not in env
    assert edge.upstream.wait_for(n, WAIT)
    assert sorted(edge.upstream.correlation_ids()) == sorted(sensor_done(edge, n))


# --- failures mid-stream ------------------------------------------------------------------------


def test_a_broker_restart_mid_stream_loses_nothing(start_edge: Callable[..., LocalEdge]) -> None:
    n = 300
    edge = start_edge(*stream(n, 0.01))
    model = edge.modules[MODEL_MODULE]
    assert edge.upstream.wait_for(20, WAIT)
    broker = edge.brokers[MODEL_MODULE]
    host, port = broker.host, broker.plain_port
    broker.stop()
    broker.start()
    assert (broker.host, broker.plain_port) == (host, port)
    sent = sensor_done(edge, n)
    # The SDK retries 10 ms after the drop, then every 20 s: this wait covers one retry interval.
    assert edge.upstream.wait_until(lambda u: set(sent) <= set(u.correlation_ids()), 60), (
        f"missing outcomes for {len(set(sent) - set(edge.upstream.correlation_ids()))} of {n}"
    )
    edge.stop()

    counts = outcomes(edge.upstream)
    assert set(counts) == set(sent)  # every sensor message has an outcome, nothing else came
    duplicates = {mid: c for mid, c in counts.items() if c > 1}
    # QoS 1 is at-least-once: a message in flight when the broker went down may be delivered twice.
    print(f"broker restart: {n} messages, {len(duplicates)} duplicated outcomes: {duplicates}")
    assert len(duplicates) <= 25  # at most what was in flight (the broker's max_inflight_messages 20 + margin)
    disconnected = model.lines_with("edgeHub connection: disconnected")
    assert disconnected and model.lines_with("edgeHub connection: connected")
    messages, predictions, errors, sent_out, failures = stopped_stats(model.log)
    assert (predictions, errors, sent_out, failures) == (messages, 0, messages, 0) and messages >= n


def test_sigterm_mid_stream_scores_everything_the_module_acknowledged(start_edge: Callable[..., LocalEdge]) -> None:
    n = 400
    edge = start_edge(*stream(n, 0.002))
    assert edge.upstream.wait_for(20, WAIT)
    model = edge.modules[MODEL_MODULE]
    assert model.terminate(25) == 0
    at_exit = edge.upstream.count
    sent = sensor_done(edge, n)  # the sensor goes on after the module is gone
    assert edge.hub is not None
    edge.hub.flush()
    backlog = take_session_backlog(
        edge.brokers[MODEL_MODULE], f"{DEVICE_ID}/{MODEL_MODULE}", inputs_filter(DEVICE_ID, MODEL_MODULE)
    )
    deferred = unsettled_ids(model.env["JOURNAL_DIR"])  # before stop(): the journal is in the run directory
    # What came once the module had exited the hub keeps for its return (store-and-forward): read, not taken.
    stored = [message_id(m.topic) for m in edge.hub.forwarders[MODEL_MODULE].store.take(n).messages]
    edge.stop()

    counts = outcomes(edge.upstream)
    assert at_exit == edge.upstream.count  # every outcome was sent before the module exited
    assert at_exit < n, "the stream was over before SIGTERM; nothing was tested"
    assert [mid for mid, c in counts.items() if c > 1] == []
    # What it scored it counts in its stop line; each of those has exactly one outcome upstream.
    assert stopped_stats(model.log) == (len(counts), len(counts), 0, len(counts), 0)
    # The broker delivers in order, so the scored messages are the first ones the sensor sent; then come those
    # that arrived after the stop began (acknowledged, left in the journal for the next start), then all the rest,
    # queued for the module's session (the stop keeps its input subscription, so nothing routed meanwhile is dropped)
    # until it exited, and from then on in the hub's store.
    scored = len(counts)
    queued = [m.message_id for m in backlog]
    assert set(counts) == set(sent[:scored])
    assert deferred == sent[scored : scored + len(deferred)]
    # QoS 1: those in flight when the module disconnected were journaled but their PUBACK did not go out, so the
    # broker delivers them again (the journal's last ones; at most its max_inflight_messages, 20).
    again = [mid for mid in queued if mid in set(deferred)]
    assert len(again) <= 20 and again == deferred[len(deferred) - len(again) :] == queued[: len(again)]
    assert queued[len(again) :] + stored == sent[scored + len(deferred) :]
    print(
        f"SIGTERM mid-stream: {scored} scored, {len(deferred)} left in the journal, {len(queued)} queued for the session, "
        f"{len(stored)} stored by the hub"
    )


# --- the command line ---------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m localedge ...`; on a hang it gets SIGTERM (it stops its own children), then SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "localedge", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"python -m localedge {' '.join(args)} did not finish within {timeout:.0f}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_scripted_run_prints_each_upstream_message_and_a_summary(state_dir: Path) -> None:
    mosquitto_or_skip()
    n = 15
    done = run_cli("run", *(f"--env={e}" for e in stream(n, 0.01)), "--until", str(n), "--timeout", "60", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    *messages, summary = lines
    assert len(messages) == n and all(m["module"] == MODEL_MODULE and m["output"] == OUTPUT for m in messages)
    assert len({m["correlation_id"] for m in messages}) == n
    assert summary["summary"] is True and summary["reached"] is True
    assert summary["upstream_messages"] == summary["predictions"] + summary["errors"] == n
    assert summary["blocks_4kb"] == n and summary["latency_ms"]["count"] == n and summary["elapsed_s"] > 0
    assert not (state_dir / "edges").exists()


def test_scripted_run_that_cannot_reach_its_count_exits_1_with_the_summary(state_dir: Path) -> None:
    mosquitto_or_skip()
    done = run_cli("run", *(f"--env={e}" for e in stream(3, 0.01)), "--until", "5", "--timeout", "3", "--json")

    assert done.returncode == 1, done.stderr[-3000:]
    *messages, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(messages) == 3
    assert (summary["reached"], summary["upstream_messages"], summary["predictions"]) == (False, 3, 3)
    assert "timeout: 3 of 5 upstream messages" in done.stderr


def test_a_bad_manifest_or_argument_exits_2_before_anything_starts(state_dir: Path) -> None:
    done = run_cli("run", "--env", "ghost:X=1", "--command", "nobody=python -m x", "--until", "1")
    assert done.returncode == 2
    assert "2 problem(s)" in done.stderr and "'ghost'" in done.stderr and "'nobody'" in done.stderr
    assert run_cli("run", "--until", "one").returncode == 2  # argparse


def test_a_module_that_exits_at_start_stops_everything_with_its_log(state_dir: Path) -> None:
    mosquitto_or_skip()
    crash = f"{MODEL_MODULE}=python -c \"import sys; print('no model here', file=sys.stderr); sys.exit(3)\""
    edge = LocalEdge(load_deployment(None, [], [crash]))
    with pytest.raises(EdgeError, match=r"module 'inference' .* did not start: module exited:\nno model here"):
        edge.start()
    assert edge.brokers and not any(b.running for b in edge.brokers.values())
    assert edge.run_dir is not None and not edge.run_dir.exists()
    assert SENSOR_MODULE not in edge.modules  # its target never came up: the sensor was not started


def test_control_commands_reach_the_running_edge(start_edge: Callable[..., LocalEdge], state_dir: Path) -> None:
    edge = start_edge(*stream(5, 0.01, f"{SENSOR_MODULE}:SendData=false"))
    assert (state_dir / "edges" / edge.name).read_text() == str(edge.run_dir / "control.sock")
    assert edge.upstream.count == 0

    done = run_cli("desired", SENSOR_MODULE, '{"SendData": true, "SendInterval": 0.01}')
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
    assert edge.upstream.wait_for(5, WAIT)  # the patch reached the sensor: it sends now

    done = run_cli("twin", SENSOR_MODULE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["desired"] == {"SendData": True, "SendInterval": 0.01, "$version": 2}

    done = run_cli("call", SENSOR_MODULE, "noSuchMethod", "{}", "--timeout", "2")
    assert done.returncode == 1
    status = int(done.stdout.split()[0])
    assert status >= 400  # the sensor answers an unknown method, or nobody does and the edge says 504

    done = run_cli("desired", "ghost", "{}")
    assert done.returncode == 1 and "no running module 'ghost'" in done.stderr
    assert run_cli("desired", SENSOR_MODULE, "not json").returncode == 2

    edge.stop()
    assert not (state_dir / "edges").exists()
    done = run_cli("twin", SENSOR_MODULE)
    assert done.returncode == 1 and "no local edge is running" in done.stderr
