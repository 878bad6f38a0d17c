"""Operating the inference module through the local edge, as from IoT Hub: desired patches change
settings on the running module and its reported properties follow, `reloadModel` swaps the model
mid-stream without losing or doubling a message, and the `score` method answers as the model does.

Real processes on their real SDK clients, one real Mosquitto per module; the twin and methods are
served by localedge as edgeHub would. No sleeps: every wait is a bounded condition.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest

from localedge.deployment import load_deployment
from localedge.edge import DEVICE_ID, LocalEdge
from localedge.wire import EdgeClient
from tests.conftest import DEFAULT_MODEL_DIR
from tests.helpers import body, reading, row
from tests.integration.conftest import mosquitto_or_skip

SENSOR, MODEL = "tempSensor", "inference"
WAIT = 30.0
# P(anomaly) = 0.39 with the default model: "normal" by argmax, "anomaly" from a threshold of 0.3.
BORDERLINE = reading(43.0, 5.0)


@pytest.fixture
def start_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LocalEdge]]:
    mosquitto_or_skip()
    monkeypatch.setenv("LOCALEDGE_STATE_DIR", str(tmp_path / "state"))  # leave a developer's running edge alone
    edges: list[LocalEdge] = []

    def start(*env: str) -> LocalEdge:
        # The tests' second model lies in pytest's temporary directory: a root run-time models may come from.
        env = (f"inference:MODEL_ROOTS={tempfile.gettempdir()}", *env)
        edge = LocalEdge(load_deployment(None, env))
        edges.append(edge)
        return edge.start()

    yield start
    for edge in edges:
        edge.stop()


@pytest.fixture
def quiet_edge(start_edge: Callable[..., LocalEdge]) -> Iterator[tuple[LocalEdge, EdgeClient]]:
    """The deployment with a silent sensor; the test feeds the inference module's input itself."""
    edge = start_edge(f"{SENSOR}:MessageCount=0")
    client = edge.brokers[MODEL].client()
    try:
        yield edge, client
    finally:
        client.close()


def feed(client: EdgeClient, ids: list[str], r: dict = BORDERLINE) -> None:
    props = [("$.ct", "application/json"), ("$.ce", "utf-8")]
    infos = [client.send_to_input(DEVICE_ID, MODEL, "amlInput", body(r), [("$.mid", i), *props]) for i in ids]
    client.wait_published(infos, WAIT)


def labels_of(edge: LocalEdge, ids: list[str]) -> list[str]:
    assert edge.upstream.wait_until(lambda u: set(ids) <= set(u.correlation_ids()), WAIT)
    by_id = {m.correlation_id: orjson.loads(m.body) for m in edge.upstream.messages}
    return [by_id[i]["label"] for i in ids]


def reported(edge: LocalEdge, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    doc = edge.wait_reported(MODEL, predicate, WAIT)
    assert doc is not None, f"reported properties never matched: {edge.twins[MODEL].document()['reported']}"
    return doc


def test_reported_properties_at_start_show_the_manifest_settings_and_the_model(quiet_edge) -> None:
    edge, _ = quiet_edge
    doc = reported(edge, lambda r: r.get("status") == "ready")
    assert doc["desiredVersion"] == 1  # the manifest's desired properties
    assert doc["settings"]["maxBatchSize"] == 256 and doc["settings"]["inputNames"] == ["amlInput"]
    manifest = orjson.loads((DEFAULT_MODEL_DIR / "model.json").read_bytes())
    assert doc["model"] | {"loadedAt": None} == {
        "name": manifest["name"],
        "version": manifest["version"],
        "sha256": manifest["sha256"],
        "dir": str(DEFAULT_MODEL_DIR),
        "loadedAt": None,
    }
    assert "lastError" not in doc and doc["counters"]["messages"] == 0  # null in a reported patch removes a key


def test_a_desired_patch_changes_batch_size_and_threshold_on_the_running_module(quiet_edge) -> None:
    edge, client = quiet_edge
    reported(edge, lambda r: r.get("status") == "ready")
    before = [f"before-{i}" for i in range(20)]
    feed(client, before)
    assert labels_of(edge, before) == ["normal"] * 20

    version = edge.patch_desired(MODEL, {"threshold": 0.3, "maxBatchSize": 4})
    doc = reported(edge, lambda r: r.get("desiredVersion") == version)
    assert version == 2 and doc["status"] == "ready"
    assert (doc["settings"]["threshold"], doc["settings"]["maxBatchSize"]) == (0.3, 4)

    status, counters_before = edge.invoke(MODEL, "getStatus")
    assert status == 200
    after = [f"after-{i}" for i in range(200)]
    feed(client, after)
    assert labels_of(edge, after) == ["anomaly"] * 200  # the new threshold
    status, counters_after = edge.invoke(MODEL, "getStatus")
    rows = counters_after["counters"]["predictions"] - counters_before["counters"]["predictions"]
    batches = counters_after["counters"]["batches"] - counters_before["counters"]["batches"]
    assert rows == 200 and batches >= 200 / 4  # no run() call over 4 rows

    # An invalid patch changes nothing and says why; the module keeps serving.
    bad = edge.patch_desired(MODEL, {"maxBatchSize": 0, "queueSize": 5})
    doc = reported(edge, lambda r: r.get("rejectedDesiredVersion") == bad)
    assert doc["status"] == "degraded" and doc["desiredVersion"] == version
    assert "maxBatchSize: 0 must be at least 1" in doc["lastError"]["message"]
    assert "queueSize: cannot change while running" in doc["lastError"]["message"]
    assert doc["settings"]["maxBatchSize"] == 4
    feed(client, ["late"])
    assert labels_of(edge, ["late"]) == ["anomaly"]  # still serving, with the settings in effect


def test_reload_model_mid_stream_loses_and_doubles_no_message(start_edge, second_model: Path) -> None:
    n = 600
    edge = start_edge(f"{SENSOR}:MessageCount={n}", f"{SENSOR}:MessageDelay=0.002")
    assert edge.upstream.wait_for(100, WAIT)
    status, payload = edge.invoke(MODEL, "reloadModel", {"modelDir": str(second_model)})
    assert status == 200 and payload["name"] == "temperature-lr", payload
    assert edge.upstream.wait_for(n, WAIT)
    edge.modules[SENSOR].wait_for_line(f"sensor: done: sent={n}", WAIT)
    assert edge.hub is not None
    sent = edge.hub.message_ids(SENSOR)
    edge.stop()
    final = edge.twins[MODEL].document()["reported"]  # the module's last word before it exited
    assert final["status"] == "stopping" and final["model"]["name"] == "temperature-lr"

    outcomes = list(edge.upstream.messages)
    counts = collections.Counter(m.correlation_id for m in outcomes)
    assert set(counts) == set(sent) and set(counts.values()) == {1}  # each exactly once
    by_id = {m.correlation_id: orjson.loads(m.body)["model"] for m in outcomes}
    models = [by_id[i] for i in sent]  # in the sensor's order
    switch = models.index("temperature-lr")
    assert 100 <= switch < n
    assert set(models[:switch]) == {"temperature-anomaly"} and set(models[switch:]) == {"temperature-lr"}


def test_score_method_answers_with_the_model_s_own_predictions(quiet_edge) -> None:
    edge, _ = quiet_edge
    readings = [reading(25.0 + 9 * i, 1.0 + i) for i in range(8)]
    status, payload = edge.invoke(MODEL, "score", readings)
    assert status == 200
    model = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    proba = model.predict_proba(np.array([row(r) for r in readings]))
    assert [p["label"] for p in payload["predictions"]] == [["normal", "anomaly"][k] for k in proba.argmax(axis=1)]
    assert [p["probability"] for p in payload["predictions"]] == np.round(proba.max(axis=1), 4).tolist()
    status, payload = edge.invoke(MODEL, "score", {"machine": {"temperature": "hot"}})
    assert status == 400 and payload["code"] in {"not_numeric", "missing_feature"}
    assert edge.invoke(MODEL, "reloadModel", {"modelDir": "/nonexistent"})[0] == 400
    assert edge.invoke(MODEL, "nope")[0] == 404
    assert edge.upstream.count == 0  # method answers never go upstream
