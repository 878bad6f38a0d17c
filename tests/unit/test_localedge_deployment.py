"""The local edge in process: a deployment manifest read into module commands, settings, start order and
routes; the lines it prints for upstream messages. The running edge is in tests/integration/test_localedge.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson
import pytest

from deploy.manifest import generate
from localedge.__main__ import describe
from localedge.deployment import DEFAULT_MANIFEST, INFERENCE, MAPPED, SENSOR, DeploymentError, load_deployment
from localedge.processes import REPO_ROOT
from localedge.upstream import UpstreamRecorder

SENSOR_MODULE, MODEL_MODULE = "tempSensor", "inference"
INPUT, OUTPUT, ERRORS = "amlInput", "amlOutput", "errorOutput"


# --- the manifest -------------------------------------------------------------------------------


def test_the_template_maps_to_local_commands_with_settings_and_start_order() -> None:
    deployment = load_deployment(None, ["inference:MAX_BATCH_SIZE=8", "tempSensor:MessageCount=3"])
    model, sensor = deployment.modules[MODEL_MODULE], deployment.modules[SENSOR_MODULE]
    assert (model.kind, model.command, model.argv[0]) == (INFERENCE, ("python", "-m", "app"), sys.executable)
    assert (sensor.kind, sensor.command) == (SENSOR, ("python", "-m", "sensor"))
    assert model.env["MAX_BATCH_SIZE"] == "8" and model.env["QUEUE_SIZE"] == "2048"
    assert model.env["HTTP_PORT"] == "0"  # not the manifest's 5001: runs must not compete for a port
    assert model.desired["inputNames"] == [INPUT] and model.desired["errorOutputName"] == ERRORS
    assert sensor.env == {"MessageCount": "3"}
    assert model.error_output(model.desired) == ERRORS and sensor.error_output({}) is None
    assert model.error_output({"errorOutputName": "bad"}) == "bad"
    assert deployment.start_waves() == [[MODEL_MODULE], [SENSOR_MODULE]]  # the route's target is subscribed first


def test_a_stopped_module_is_not_started_but_routes_may_name_it(tmp_path: Path) -> None:
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    doc["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][SENSOR_MODULE]["status"] = "stopped"
    (path := tmp_path / "stopped.json").write_text(json.dumps(doc))
    deployment = load_deployment(path)
    assert [m.name for m in deployment.running] == [MODEL_MODULE]
    assert deployment.start_waves() == [[MODEL_MODULE]]


def test_manifest_problems_are_reported_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALEDGE_TEST_UNSET", raising=False)
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    desired = doc["modulesContent"]["$edgeAgent"]["properties.desired"]
    desired["modules"]["other"] = {"status": "running", "settings": {"image": "example.azurecr.io/other:1.0"}}
    desired["modules"][MODEL_MODULE]["env"]["MODEL_DIR"] = {"value": "${LOCALEDGE_TEST_UNSET}"}
    doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["toGhost"] = (
        'FROM /messages/modules/inference/outputs/* INTO BrokeredEndpoint("/modules/ghost/inputs/in")'
    )
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))

    with pytest.raises(DeploymentError) as err:
        load_deployment(path, ["nobody:X=1", "badly-formed"], ["absent=python -m x", "other=python -c 'unclosed"])
    text = "\n".join(err.value.problems)
    assert "module 'other': no local command for image 'example.azurecr.io/other:1.0'" in text
    assert "--command other=" in text  # the fix is named
    assert "${LOCALEDGE_TEST_UNSET}" in text and "LOCALEDGE_TEST_UNSET is not set" in text
    assert "ghost" in text
    assert "there is no module 'nobody'" in text and "there is no module 'absent'" in text
    assert "'badly-formed'" in text
    assert "--command other=python -c 'unclosed: No closing quotation" in text
    assert len(err.value.problems) == 7

    del doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["toGhost"]
    path.write_text(json.dumps(doc))
    mapped = load_deployment(path, [], ["other=python -m other --flag"], environ={"LOCALEDGE_TEST_UNSET": "/m"})
    assert mapped.modules["other"].kind == MAPPED and mapped.modules["other"].argv == [sys.executable, "-m", "other", "--flag"]
    assert mapped.modules[MODEL_MODULE].env["MODEL_DIR"] == "/m"


def test_a_deployed_manifest_is_recognised_by_its_image_names(tmp_path: Path) -> None:
    """config/deployment.<platform>.json as `make manifest` writes it: images expanded, createOptions as strings."""
    (tmp_path / ".env").write_text((REPO_ROOT / ".env.example").read_text())
    [deployed] = generate(DEFAULT_MANIFEST, tmp_path / ".env", REPO_ROOT / "module.json", platforms=["amd64"], out_dir=tmp_path)
    deployment = load_deployment(deployed)
    model = deployment.modules[MODEL_MODULE]
    assert model.image == "myregistry.azurecr.io/edge-inference:0.1.0-amd64"
    assert (model.kind, deployment.modules[SENSOR_MODULE].kind) == (INFERENCE, SENSOR)
    assert [r.name for r in deployment.routes] == [r.name for r in load_deployment(None).routes]


def test_upstream_lines_say_what_arrived() -> None:
    recorder = UpstreamRecorder(lambda module: ERRORS if module == MODEL_MODULE else None)
    props = {"$.cid": "m-1"}
    flat = recorder.record(MODEL_MODULE, OUTPUT, props, b'{"label": "anomaly", "probability": 0.9731}', 1.0)
    aggregate = recorder.record(MODEL_MODULE, OUTPUT, {}, orjson.dumps({"predictions": [{}, {}, {}]}), 2.0)
    error = recorder.record(MODEL_MODULE, ERRORS, props, b'{"code": "not_json"}', 3.0)
    other = recorder.record(SENSOR_MODULE, "temperatureOutput", {}, b"x" * 5000, 4.0)

    assert describe(flat) == "inference/amlOutput cid=m-1 anomaly p=0.973"
    assert describe(aggregate) == "inference/amlOutput cid=- predictions=3"
    assert describe(error) == "inference/errorOutput cid=m-1 error=not_json"
    assert describe(other) == "tempSensor/temperatureOutput cid=- 5000 bytes"
    assert [(m.predictions, m.errors, m.blocks) for m in (flat, aggregate, error, other)] == [
        (1, 0, 1),
        (3, 0, 1),
        (0, 1, 1),
        (0, 0, 2),
    ]
    summary = recorder.summary(since=0.0)
    assert (summary["upstream_messages"], summary["predictions"], summary["errors"], summary["blocks_4kb"]) == (4, 4, 1, 5)
    assert summary["elapsed_s"] == 4.0 and summary["latency_ms"]["count"] == 0
