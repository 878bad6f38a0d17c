"""Target 6, Azure ML scripts: hostile requests (any method, query, headers, content type, body) to an Azure ML
script through EntryScript.score and through the pipeline's message input. Always an answer Azure ML's server
could give (a status, bytes, the run-function flag on every /score answer that reached the blueprint), never an
exception; on the edge path every message exactly one outcome, by id, and the script still answers afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from app.model.scorer import Scorer, load_scorer
from tests.conftest import DEFAULT_MODEL_DIR, ListSink
from tests.fuzz.conftest import fuzz, fuzz_settings, hostile_bodies, ran, timeout_for

PLAIN = """
import json
def init():
    pass
def run(raw):
    doc = json.loads(raw)
    return {"rows": len(doc["data"]), "first": doc["data"][0]}
"""
DECORATED = """
import numpy as np
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
def init():
    pass
@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0, 4.0]])))
def run(data, request_headers):
    return {"sum": float(data.sum()), "trace": request_headers.get("Traceid", "")}
"""

METHODS = st.sampled_from(["POST", "GET", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH", "post"])
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/vnd+json",
        "",
        "\x00",
    ]
)
HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=120)
HEADERS = st.lists(
    st.tuples(st.sampled_from(["x-request-id", "x-ms-client-request-id", "TraceId", "X-Other"]), HEADER_TEXT), max_size=4
)


def _load(tmp: Path, text: str, name: str) -> Scorer:
    path = tmp / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return load_scorer(DEFAULT_MODEL_DIR, path, script_input="message")


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scorer]:
    tmp = tmp_path_factory.mktemp("azureml-fuzz")
    return {"plain": _load(tmp, PLAIN, "plain"), "decorated": _load(tmp, DECORATED, "decorated")}


@pytest.mark.timeout(timeout_for(1, 0.01))
@fuzz(1)
@given(
    which=st.sampled_from(["plain", "decorated"]),
    method=METHODS,
    query=st.text(max_size=60),
    content_type=CONTENT_TYPES,
    headers=HEADERS,
    body=hostile_bodies(),
)
def test_every_request_gets_an_answer_azure_mls_server_could_give(
    scripts: dict[str, Scorer],
    which: str,
    method: str,
    query: str,
    content_type: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    scorer = scripts[which]
    all_headers = [("Content-Type", content_type), *headers] if content_type else headers
    answer = scorer.answer(body, all_headers, method, query)  # never raises
    ran("azureml: EntryScript.score")
    assert 200 <= answer.status <= 599 and isinstance(answer.body, bytes)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer.headers.items())
    if answer.status == 200 and answer.content_type == "application/json":
        orjson.loads(answer.body)  # a 200 JSON answer is JSON (json.dumps' NaN aside: allowed by the server too)
    assert scorer.answer(b'{"data": [[1, 2, 3, 4]]}', [("Content-Type", "application/json")]).status == 200  # still serving


@pytest.mark.timeout(timeout_for(0.05, 0.2))
@fuzz(0.05)
@given(bodies=st.lists(hostile_bodies(), min_size=1, max_size=40))
def test_message_input_gives_every_message_exactly_one_outcome(scripts: dict[str, Scorer], bodies: list[bytes]) -> None:
    async def run() -> ListSink:
        sink = ListSink()
        pipeline = Pipeline(fuzz_settings(), scripts["plain"], sink)
        await pipeline.start()
        for i, body in enumerate(bodies):
            await pipeline.submit(InMessage(body, f"m-{i}", "amlInput"))
        await pipeline.close()
        return sink

    sink = asyncio.run(run())
    ran("azureml: message input", len(bodies))
    assert sorted(o.correlation_id or "" for o in sink.messages) == sorted(f"m-{i}" for i in range(len(bodies)))
    for out in sink.messages:
        doc = orjson.loads(out.body)  # outputs and error records are JSON
        if out.output == "errorOutput":
            assert doc["code"] in ("scoring_failed", "script_refused", "output_error") and doc["reason"]
