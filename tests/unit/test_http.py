"""The local HTTP endpoint over real HTTP on loopback, sharing the pipeline with the edge route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from app.core.control import Health
from app.core.pipeline import Pipeline
from app.core.sinks import RepliesOnly
from app.http.server import make_app
from app.model.scorer import Scorer, load_scorer
from app.settings import Settings
from tests.conftest import DEFAULT_MODEL_DIR
from tests.helpers import body, reading, row

GATED_SCRIPT = """
import threading
INPUT_FORMAT = "ndarray"
gate = threading.Event()
def init():
    gate.set()
def run(x):
    gate.wait(10)
    return [{"label": "ok"}] * len(x)
"""


async def _client(settings: Settings, scorer: Scorer, health: Health | None = None) -> tuple[TestClient, Pipeline]:
    pipeline = Pipeline(settings, scorer, RepliesOnly())
    await pipeline.start()
    health = health or Health(ready=True, status="ready")
    client = TestClient(TestServer(make_app(pipeline, health)))
    await client.start_server()
    return client, pipeline


@pytest.fixture
async def client(settings, scorer) -> AsyncIterator[tuple[TestClient, Pipeline]]:
    c, pipeline = await _client(settings, scorer)
    yield c, pipeline
    await c.close()
    await pipeline.close()


async def test_a_reading_is_scored_like_the_model_does(client, scorer) -> None:
    c, _ = client
    r = reading(60.0, 9.9)
    resp = await c.post("/score", data=body(r), headers={"Content-Type": "application/json"})
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert {k: doc[k] for k in ("label", "probability")} == scorer.score([row(r)])[0]
    assert doc["timeCreated"] == r["timeCreated"] and doc["model"] == "temperature-anomaly"


async def test_an_azureml_client_gets_the_list_of_results(client, scorer) -> None:
    c, _ = client
    rows = [row(reading(30.0)), row(reading(60.0, 9.9)), row(reading(80.0))]
    resp = await c.post("/score", data=orjson.dumps({"data": rows}))
    assert resp.status == 200
    assert await resp.json() == scorer.score(rows)
    double = await c.post("/score", data=orjson.dumps(orjson.dumps({"data": rows}).decode()))
    assert await double.json() == scorer.score(rows)


async def test_an_array_of_readings_gets_predictions_in_order(client) -> None:
    c, _ = client
    resp = await c.post("/score", data=body([reading(30.0), reading(60.0, 9.9)]))
    assert [p["label"] for p in (await resp.json())["predictions"]] == ["normal", "anomaly"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"nope", "not_json"), (body({"machine": {"temperature": 1.0}}), "missing_feature"), (b'{"data": [[1, 2]]}', "wrong_width")],
)
async def test_bad_bodies_get_400_with_the_reason(client, payload: bytes, code: str) -> None:
    c, _ = client
    resp = await c.post("/score", data=payload)
    assert resp.status == 400
    record = await resp.json()
    assert record["code"] == code and record["reason"]


async def test_oversized_body_gets_413(settings, scorer) -> None:
    c, pipeline = await _client(settings.replace(max_message_bytes=1000), scorer)
    try:
        resp = await c.post("/score", data=b" " * 1001)
        assert resp.status == 413
        assert (await resp.json())["code"] == "oversized"
        assert (await c.post("/score", data=body(reading()))).status == 200
    finally:
        await c.close()
        await pipeline.close()


async def test_full_queue_gets_503_with_retry_after_and_the_rest_are_answered(tmp_path: Path, settings) -> None:
    script = tmp_path / "score.py"
    script.write_text(GATED_SCRIPT)
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    scorer.script.gate.clear()  # the model now blocks until the gate opens
    c, pipeline = await _client(settings.replace(queue_size=1), scorer)
    try:
        first = asyncio.create_task(c.post("/score", data=body(reading())))
        async with asyncio.timeout(5):
            while pipeline.processor.run_calls == 0:  # the first is in the model
                await asyncio.sleep(0.005)
        second = asyncio.create_task(c.post("/score", data=body(reading())))
        async with asyncio.timeout(5):
            while pipeline.batcher.depth == 0:  # the second holds the queue's one place
                await asyncio.sleep(0.005)
        third = await c.post("/score", data=body(reading()))
        assert third.status == 503
        assert third.headers["Retry-After"] == "1"
        assert (await third.json())["code"] == "overloaded"
        scorer.script.gate.set()
        assert [(await t).status for t in (first, second)] == [200, 200]
        assert pipeline.stats.refused == 1
    finally:
        scorer.script.gate.set()
        await c.close()
        await pipeline.close()


async def test_health_endpoints_follow_readiness(settings, scorer) -> None:
    health = Health()
    c, pipeline = await _client(settings, scorer, health)
    try:
        assert (await (await c.get("/")).text()) == "Healthy"
        assert (await c.get("/live")).status == 200
        assert (await c.get("/ready")).status == 503
        not_ready = await c.post("/score", data=body(reading()))
        assert not_ready.status == 503 and (await not_ready.json())["code"] == "not_ready"
        health.ready, health.status = True, "ready"
        assert (await c.get("/ready")).status == 200
        assert (await c.post("/score", data=body(reading()))).status == 200
        health.ready, health.status = False, "stopping"
        assert (await (await c.get("/ready")).json()) == {"status": "stopping", "ready": False, "problems": []}
    finally:
        await c.close()
        await pipeline.close()


async def test_ready_reports_what_keeps_the_module_from_its_work_and_live_a_deaf_module(settings, scorer) -> None:
    problems: list[str] = []
    health = Health(ready=True, status="ready", checks=[lambda: problems[0] if problems else None])
    c, pipeline = await _client(settings, scorer, health)
    try:
        assert (await c.get("/ready")).status == 200
        problems.append("edgeHub unreachable for 130 s")
        ready = await c.get("/ready")
        assert ready.status == 503 and (await ready.json())["problems"] == ["edgeHub unreachable for 130 s"]
        assert (await c.post("/score", data=body(reading()))).status == 200  # HTTP scoring needs no edgeHub
        assert (await c.get("/live")).status == 200
        health.status = "unhealthy"  # the watchdog's verdict: the module exits next
        assert (await c.get("/live")).status == 503
    finally:
        await c.close()
        await pipeline.close()


async def test_concurrent_requests_batch_together(client) -> None:
    c, pipeline = client
    responses = await asyncio.gather(*(c.post("/score", data=body(reading(20.0 + i))) for i in range(60)))
    assert [r.status for r in responses] == [200] * 60
    assert pipeline.processor.rows_scored == 60
    assert pipeline.processor.run_calls < 60


async def test_metrics_count_what_was_sent(client) -> None:
    c, _ = client
    for payload in (body(reading()), body([reading(), reading()]), b"nope", body(reading())):
        await c.post("/score", data=payload)
    text = await (await c.get("/metrics")).text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edge_inference_messages_total", ())] == 4
    assert samples[("edge_inference_predictions_total", ())] == 3
    assert samples[("edge_inference_rows_total", ())] == 4
    assert samples[("edge_inference_errors_total", (("code", "not_json"),))] == 1
    assert samples[("edge_inference_queue_depth", ())] == 0
    info = [k for k in samples if k[0] == "edge_inference_model_info"]
    assert dict(info[0][1])["name"] == "temperature-anomaly"
    # Histograms: one latency per request; one batch-rows and one scoring time per run() call.
    batches = samples[("edge_inference_batches_total", ())]
    assert samples[("edge_inference_latency_seconds_count", ())] == 4
    assert samples[("edge_inference_latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert samples[("edge_inference_batch_rows_count", ())] == batches >= 1
    assert samples[("edge_inference_batch_rows_sum", ())] == 4  # every scored row in some batch
    assert samples[("edge_inference_scoring_seconds_count", ())] == batches
    assert 0 < samples[("edge_inference_scoring_seconds_sum", ())] < 5
    one_row = samples[("edge_inference_batch_rows_bucket", (("le", "1.0"),))]
    two_rows = samples[("edge_inference_batch_rows_bucket", (("le", "2.0"),))]
    assert one_row <= two_rows == batches  # cumulative buckets; no call had more than 2 rows


def test_on_a_device_every_metric_carries_the_modules_identity(settings, scorer) -> None:
    from app.core.pipeline import Pipeline
    from app.core.sinks import RepliesOnly
    from app.http.metrics import PipelineCollector, identity_labels

    environ = {"IOTEDGE_IOTHUBHOSTNAME": "hub-1.azure-devices.net", "IOTEDGE_DEVICEID": "gw-7", "IOTEDGE_MODULEID": "inference"}
    identity = identity_labels(environ)
    assert identity == {"iothub": "hub-1.azure-devices.net", "edge_device": "gw-7", "module_name": "inference"}
    assert identity_labels({}) == {}  # outside IoT Edge: no labels
    families = list(PipelineCollector(Pipeline(settings, scorer, RepliesOnly()), identity=identity).collect())
    samples = [s for family in families for s in family.samples]
    assert len(samples) > 20 and all({k: s.labels[k] for k in identity} == identity for s in samples)
    errors = [s for s in samples if s.name == "edge_inference_messages_total"]
    assert errors[0].labels == identity  # the metric's own labels stay beside them
