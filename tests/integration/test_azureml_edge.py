"""The Azure ML -> IoT Edge tutorial's own scoring script (the corpus's iot_edge_anomaly, unchanged: see
tests/azureml/corpus.py) as the inference module of the local edge, fed by the sensor: each message body goes to
run() as it is (SCRIPT_INPUT auto: the downloaded model has no manifest naming features), one output per input,
every id exactly once."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from localedge.edge import LocalEdge
from tests.azureml.models import deploy
from tests.integration.test_localedge import MODEL_MODULE, OUTPUT, WAIT, sensor_done, stream


@pytest.mark.timeout(120)
def test_the_iot_edge_tutorials_script_runs_unchanged_as_the_inference_module(
    start_edge: Callable[..., LocalEdge], tmp_path: Path
) -> None:
    tutorial = deploy("iot_edge_anomaly", tmp_path / "app")
    n = 40
    edge = start_edge(
        *stream(n, 0.01), f"{MODEL_MODULE}:MODEL_DIR={tutorial.model_dir}", f"{MODEL_MODULE}:SCORE_SCRIPT={tutorial.script}"
    )
    assert edge.upstream.wait_for(n, WAIT), edge.modules[MODEL_MODULE].log[-3000:]
    sent = sensor_done(edge, n)
    edge.stop()

    upstream = list(edge.upstream.messages)
    assert sorted(m.correlation_id or "" for m in upstream) == sorted(sent)  # one output per input, each id once
    with open(tutorial.model_dir / "model.pkl", "rb") as f:
        tree = pickle.load(f)  # the test's own model (tests/azureml/models.py), to check the verdicts
    for m in upstream:
        assert (m.module, m.output) == (MODEL_MODULE, OUTPUT)
        assert (m.properties["$.ct"], m.properties["$.ce"]) == ("application/json", "utf-8")
        answer = orjson.loads(m.body)
        assert isinstance(answer, list) and len(answer) == 1  # run() returns [json.dumps(reading + anomaly)]
        doc = json.loads(answer[0])
        features = [
            doc["machine"]["temperature"],
            doc["machine"]["pressure"],
            doc["ambient"]["temperature"],
            doc["ambient"]["humidity"],
        ]
        assert doc["anomaly"] is bool(tree.predict(np.array([features]))[0] == 1)
        assert doc["timeCreated"].endswith("Z")  # the sensor's reading, carried through by the script
