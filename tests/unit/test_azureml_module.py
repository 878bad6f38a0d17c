"""Azure ML scripts inside the module: per-message input on the edge path, rows input with inference_schema,
and HTTP /score, / and /swagger.json answering as Azure ML's server does, through the real pipeline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.core.control import Health
from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from app.core.sinks import RepliesOnly
from app.http.server import make_app
from app.model.scorer import Scorer, ScriptLoadError, load_scorer
from app.settings import Settings
from tests.conftest import DEFAULT_MODEL_DIR, ListSink
from tests.helpers import body, reading

pytestmark = pytest.mark.timeout(60)

# In the style of the Azure ML -> IoT Edge tutorial's iot_score.py: one sensor message in, it plus a verdict out.
PER_MESSAGE_SCRIPT = """
import json
def init():
    global limit
    limit = 50.0
def run(input_str):
    doc = json.loads(input_str)
    if doc.get("boom"):
        raise RuntimeError("the sensor sent boom")
    doc["anomaly"] = doc["machine"]["temperature"] > limit
    return [doc]
"""

NUMPY_SCRIPT = """
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
def init():
    pass
@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0, 4.0]])))
@output_schema(StandardPythonParameterType({"result": [1.0]}))
def run(data):
    return {"result": (data.sum(axis=1)).tolist()}
"""


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "score.py"
    path.write_text(text, encoding="utf-8")
    return path


async def run_pipeline(settings: Settings, scorer: Scorer, msgs: list[InMessage]) -> ListSink:
    sink = ListSink()
    pipeline = Pipeline(settings, scorer, sink)
    await pipeline.start()
    for msg in msgs:
        await pipeline.submit(msg)
    await pipeline.close()
    return sink


async def test_per_message_input_hands_each_body_to_run_and_sends_its_answer(tmp_path: Path, settings: Settings) -> None:
    scorer = load_scorer(DEFAULT_MODEL_DIR, script(tmp_path, PER_MESSAGE_SCRIPT), script_input="message")
    assert scorer.message_input and scorer.azureml
    readings = [reading(40.0), reading(90.0)]
    msgs = [InMessage(body(r), f"m-{i}", "amlInput", {"sequenceNumber": str(i)}) for i, r in enumerate(readings)]
    msgs.append(InMessage(b'{"boom": true}', "m-2", "amlInput"))
    msgs.append(InMessage(b"\xff\xfe", "m-3", "amlInput"))
    sink = await run_pipeline(settings, scorer, msgs)
    outs = {o.correlation_id: o for o in sink.messages}
    assert sorted(outs) == ["m-0", "m-1", "m-2", "m-3"]  # one outcome each
    assert orjson.loads(outs["m-0"].body) == [{**readings[0], "anomaly": False}]  # run()'s answer, as it is
    assert orjson.loads(outs["m-1"].body) == [{**readings[1], "anomaly": True}]
    assert outs["m-1"].output == "amlOutput" and outs["m-1"].custom_properties == {"sequenceNumber": "1"}
    assert outs["m-1"].content_type == "application/json" and outs["m-1"].content_encoding == "utf-8"
    boom = orjson.loads(outs["m-2"].body)
    assert outs["m-2"].output == "errorOutput" and boom["code"] == "scoring_failed"
    assert "RuntimeError: the sensor sent boom" in boom["reason"]  # what run() raised, not a generic 500
    bad = orjson.loads(outs["m-3"].body)
    assert bad["code"] == "script_refused" and "cannot be decoded as UTF-8" in bad["reason"]


async def test_auto_input_is_rows_with_features_and_message_without(tmp_path: Path) -> None:
    path = script(tmp_path, PER_MESSAGE_SCRIPT)
    with pytest.raises(ScriptLoadError, match="trial prediction"):  # the model's manifest names features: rows
        load_scorer(DEFAULT_MODEL_DIR, path)
    downloaded = tmp_path / "downloaded"  # an Azure ML model as downloaded: no manifest, no features
    downloaded.mkdir()
    (downloaded / "model.pkl").write_bytes((DEFAULT_MODEL_DIR / "model.pkl").read_bytes())
    scorer = load_scorer(downloaded, path)
    assert scorer.message_input and not scorer.manifest.verified and scorer.manifest.features == []


async def test_rows_input_calls_a_decorated_run_with_the_batch_and_unwraps_a_dict(tmp_path: Path, settings: Settings) -> None:
    scorer = load_scorer(DEFAULT_MODEL_DIR, script(tmp_path, NUMPY_SCRIPT))
    assert not scorer.message_input and scorer.entry.decorated
    assert scorer.score([[1, 2, 3, 4], [0, 0, 0, 1]]) == [10.0, 1.0]  # {"result": [...]} -> one result per row
    msgs = [InMessage(body(reading(40.0 + i)), f"m-{i}", "amlInput") for i in range(20)]
    sink = await run_pipeline(settings, scorer, msgs)
    assert [o.correlation_id for o in sink.on("amlOutput")] == [f"m-{i}" for i in range(20)]
    first = orjson.loads(sink.on("amlOutput")[0].body)
    pressure = 1.0 + (40.0 - 21.0) * 9.0 / 79.0  # reading()'s default: on the normal line
    assert first["prediction"] == pytest.approx(40.0 + pressure + 21.0 + 25)  # the sum of the four features
    assert first["model"] == "temperature-anomaly" and first["timeCreated"] == "2026-01-01T00:00:00.0000000Z"


@pytest.fixture
async def azureml_client(tmp_path: Path, settings: Settings) -> AsyncIterator[TestClient]:
    scorer = load_scorer(DEFAULT_MODEL_DIR, script(tmp_path, NUMPY_SCRIPT))
    pipeline = Pipeline(settings, scorer, RepliesOnly())
    await pipeline.start()
    client = TestClient(TestServer(make_app(pipeline, Health(ready=True, status="ready"), token="")))
    await client.start_server()
    yield client
    await client.close()
    await pipeline.close()


async def test_http_answers_are_azure_mls_for_an_azure_ml_script(azureml_client: TestClient) -> None:
    c = azureml_client
    headers = {"Content-Type": "application/json", "x-request-id": "r-1"}
    ok = await c.post("/score", data=b'{"data": [[1, 2, 3, 4]]}', headers=headers)
    assert ok.status == 200 and ok.headers["Content-Type"] == "application/json"
    assert await ok.read() == b'{"result": [10.0]}'  # json.dumps of run()'s return, as the server sends it
    assert ok.headers["x-request-id"] == "r-1" and ok.headers["x-ms-run-function-failed"] == "False"
    wrong = await c.post("/score", data=b'{"data": [[1, 2]]}', headers={"Content-Type": "application/json"})
    assert wrong.status == 500 and wrong.headers["x-ms-run-function-failed"] == "True"  # the schema fails inside run()
    text = await c.post("/score", data=b'{"data": [[1, 2, 3, 4]]}', headers={"Content-Type": "text/plain"})
    assert text.status == 415 and (await text.json()) == {"message": "Expects Content-Type to be application/json"}
    got = await c.get("/score", params={"data": "[[1, 1, 1, 1]]"})  # GET: the query's parameters
    assert got.status == 200 and await got.json() == {"result": [4.0]}
    root = await c.get("/")
    assert root.status == 200 and await root.text() == "Healthy"
    swagger = await c.get("/swagger.json")
    doc = json.loads(await swagger.read())
    assert swagger.status == 200 and doc["swagger"] == "2.0" and "ServiceInput" in doc["definitions"]
    assert (await c.get("/swagger.json", params={"version": "3"})).status == 200


async def test_the_built_in_script_keeps_the_modules_own_answers(settings: Settings, scorer: Scorer) -> None:
    pipeline = Pipeline(settings, scorer, RepliesOnly())
    await pipeline.start()
    client = TestClient(TestServer(make_app(pipeline, Health(ready=True, status="ready"), token="")))
    await client.start_server()
    try:
        resp = await client.post("/score", data=body(reading(40.0)))
        assert resp.status == 200 and (await resp.json())["model"] == "temperature-anomaly"
        assert (await client.get("/score")).status == 405  # only POST, as before
    finally:
        await client.close()
        await pipeline.close()


async def test_an_answer_that_is_not_strict_json_becomes_an_error_record(tmp_path: Path, settings: Settings) -> None:
    """json.dumps writes NaN and lone surrogates (found by tests/fuzz/test_azureml_fuzz.py); no strict reader parses them."""
    text = "import json\ndef init(): pass\ndef run(raw):\n    return json.loads(raw)\n"
    scorer = load_scorer(DEFAULT_MODEL_DIR, script(tmp_path, text), script_input="message")
    bodies = [b'{"x": NaN}', b'{"k\\ud800": 1}', b'{"ok": 1}']
    sink = await run_pipeline(settings, scorer, [InMessage(b, f"m-{i}", "amlInput") for i, b in enumerate(bodies)])
    outs = {o.correlation_id: o for o in sink.messages}
    assert [orjson.loads(outs[f"m-{i}"].body)["code"] for i in (0, 1)] == ["output_error", "output_error"]
    assert "not strict JSON" in orjson.loads(outs["m-0"].body)["reason"]
    assert orjson.loads(outs["m-2"].body) == {"ok": 1}
