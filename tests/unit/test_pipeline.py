"""The in-process pipeline end to end: a test source and sink, N messages in -> N outcomes out."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import orjson
import pytest

from app.core.encoding import SYSTEM_PROPERTIES_ALLOWANCE
from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from app.model.scorer import load_scorer
from app.settings import ConfigError, Settings
from edgekit.limits import MESSAGE_LIMIT_BYTES
from tests.conftest import DEFAULT_MODEL_DIR, DEFAULT_MODEL_VERSION, ListSink
from tests.helpers import body, reading, row

WIDTH_REFUSAL = f"FEATURES: 2 paths given but model temperature-anomaly v{DEFAULT_MODEL_VERSION} takes 4"

PROPS = {"sequenceNumber": "7", "batchId": "b1"}


async def _run(settings: Settings, scorer, messages: list[InMessage]) -> tuple[Pipeline, ListSink]:
    sink = ListSink()
    pipeline = Pipeline(settings, scorer, sink)
    await pipeline.start()
    for msg in messages:
        await pipeline.submit(msg)
    await pipeline.close()
    return pipeline, sink


def _readings(n: int) -> list[dict]:
    # Every 10th reading is faulty (pressure far off its line), so both labels occur.
    return [reading(21.0 + (i % 80), None if i % 10 else 9.9, 21.0, 25) for i in range(n)]


async def test_n_messages_give_n_predictions_with_matching_ids_and_model_values(settings, scorer) -> None:
    readings = _readings(500)
    msgs = [InMessage(body(r), f"m-{i}", "amlInput", dict(PROPS)) for i, r in enumerate(readings)]
    pipeline, sink = await _run(settings, scorer, msgs)
    outs = sink.on("amlOutput")
    assert len(sink.messages) == len(outs) == 500
    assert [o.correlation_id for o in outs] == [f"m-{i}" for i in range(500)]  # FIFO end to end
    model = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    expected = model.predict(np.array([row(r) for r in readings]))
    labels = [orjson.loads(o.body)["label"] for o in outs]
    assert labels == [["normal", "anomaly"][k] for k in expected]
    assert {"normal", "anomaly"} <= set(labels)
    assert pipeline.stats.messages == pipeline.stats.predictions == 500
    assert pipeline.stats.errors == 0
    assert pipeline.processor.run_calls < 500  # they were batched
    assert pipeline.processor.rows_scored == 500


async def test_prediction_message_format(settings, scorer) -> None:
    _, sink = await _run(settings, scorer, [InMessage(body(reading(40.0)), "m-1", "amlInput", dict(PROPS))])
    out = sink.messages[0]
    assert out.output == "amlOutput"
    assert out.content_type == "application/json" and out.content_encoding == "utf-8"
    assert out.correlation_id == "m-1"
    assert out.custom_properties == {"sequenceNumber": "7", "batchId": "b1"}
    doc = orjson.loads(out.body)
    assert set(doc) == {"label", "probability", "timeCreated", "model", "modelVersion"}
    assert doc["label"] == "normal" and 0.5 <= doc["probability"] <= 1.0
    assert doc["timeCreated"] == "2026-01-01T00:00:00.0000000Z"
    assert doc["model"] == "temperature-anomaly" and doc["modelVersion"] == scorer.manifest.version


async def test_many_rows_in_one_message_give_a_list_in_row_order(settings, scorer) -> None:
    rs = [reading(30.0), reading(60.0, 9.9), reading(70.0)]
    msgs = [
        InMessage(body(rs), "array", "amlInput"),
        InMessage(body({"data": [row(r) for r in rs]}), "rows", "amlInput"),
    ]
    _, sink = await _run(settings, scorer, msgs)
    by_id = {o.correlation_id: orjson.loads(o.body) for o in sink.messages}
    assert [p["label"] for p in by_id["array"]["predictions"]] == ["normal", "anomaly", "normal"]
    assert [p["label"] for p in by_id["rows"]["predictions"]] == ["normal", "anomaly", "normal"]
    assert all(p["timeCreated"] for p in by_id["array"]["predictions"])
    assert "timeCreated" not in by_id["rows"]["predictions"][0]


async def test_bad_messages_get_error_records_and_good_ones_are_unaffected(settings, scorer) -> None:
    bad = {
        "b-json": b"{oops",
        "b-utf8": b"\xff\xfe",
        "b-missing": body({"machine": {"temperature": 1.0}}),
        "b-string": body(reading() | {"ambient": {"temperature": "warm", "humidity": 25}}),
        "b-nan": b'{"data": [[1, 2, NaN, 4]]}',
        "b-width": b'{"data": [[1, 2, 3]]}',
        "b-big": b" " * (MESSAGE_LIMIT_BYTES + 1),
    }
    msgs = []
    for i in range(50):
        msgs.append(InMessage(body(reading(30.0 + i)), f"g-{i}", "amlInput"))
        if i < len(bad):
            key = list(bad)[i]
            msgs.append(InMessage(bad[key], key, "amlInput", dict(PROPS)))
    pipeline, sink = await _run(settings, scorer, msgs)
    errors = {o.correlation_id: orjson.loads(o.body) for o in sink.on("errorOutput")}
    assert {k: v["code"] for k, v in errors.items()} == {
        "b-json": "not_json",
        "b-utf8": "not_utf8",
        "b-missing": "missing_feature",
        "b-string": "not_numeric",
        "b-nan": "not_finite",
        "b-width": "wrong_width",
        "b-big": "oversized",
    }
    assert sorted(o.correlation_id for o in sink.on("amlOutput")) == sorted(f"g-{i}" for i in range(50))
    assert pipeline.stats.predictions + pipeline.stats.errors == pipeline.stats.messages == 57
    record = errors["b-big"]
    assert record["inputMessageId"] == "b-big" and record["inputName"] == "amlInput"
    assert record["inputBytes"] == MESSAGE_LIMIT_BYTES + 1 and record["inputTruncated"] is True
    assert len(record["input"]) == 1024
    assert errors["b-json"]["input"] == "{oops" and errors["b-json"]["inputTruncated"] is False
    error_out = sink.on("errorOutput")[0]
    assert error_out.custom_properties == {"sequenceNumber": "7", "batchId": "b1"}
    assert error_out.content_type == "application/json"


async def test_unknown_input_gets_an_error_record(settings, scorer) -> None:
    _, sink = await _run(settings, scorer, [InMessage(body(reading()), "x", "otherInput")])
    record = orjson.loads(sink.messages[0].body)
    assert record["code"] == "unknown_input"
    assert "INPUT_NAMES" in record["reason"]


async def test_a_message_that_breaks_run_fails_alone(tmp_path: Path, settings) -> None:
    script = tmp_path / "score.py"
    script.write_text(
        "INPUT_FORMAT = 'ndarray'\n"
        "def init():\n    pass\n"
        "def run(x):\n"
        "    if (x[:, 0] == 666).any():\n        raise ValueError('cannot score 666')\n"
        "    return [{'label': 'ok'}] * len(x)\n"
    )
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    sink = ListSink()
    pipeline = Pipeline(settings, scorer, sink)
    await pipeline.start()
    for i in range(20):
        await pipeline.submit(InMessage(body(reading(666.0 if i == 13 else 30.0)), f"m-{i}", "amlInput"))
    await pipeline.close()
    assert pipeline.batcher.batches == 1  # all 20 went in one batch, which failed and was retried one by one
    assert pipeline.processor.run_calls == 1 + 20
    errors = sink.on("errorOutput")
    assert [o.correlation_id for o in errors] == ["m-13"]
    assert orjson.loads(errors[0].body)["code"] == "scoring_failed"
    assert "cannot score 666" in orjson.loads(errors[0].body)["reason"]
    assert len(sink.on("amlOutput")) == 19


async def test_output_over_the_message_limit_becomes_an_error(settings, scorer) -> None:
    rows = [[30.0, 2.0, 21.0, 25.0]] * 12000  # ~200 KB in, ~450 KB of predictions out
    _, sink = await _run(settings, scorer, [InMessage(body({"data": rows}), "huge", "amlInput")])
    record = orjson.loads(sink.messages[0].body)
    assert sink.messages[0].output == "errorOutput"
    assert record["code"] == "output_error" and "send fewer rows per message" in record["reason"]


async def test_aggregation_packs_predictions_under_the_budget(settings, scorer) -> None:
    agg = settings.replace(aggregate=True)
    msgs = [InMessage(body(r), f"m-{i}", "amlInput", dict(PROPS)) for i, r in enumerate(_readings(300))]
    msgs.insert(5, InMessage(b"nope", "bad", "amlInput"))
    pipeline, sink = await _run(agg, scorer, msgs)
    outs = sink.on("amlOutput")
    items = [item for o in outs for item in orjson.loads(o.body)["predictions"]]
    assert [i["messageId"] for i in items] == [f"m-{i}" for i in range(300)]
    room = 4096 - SYSTEM_PROPERTIES_ALLOWANCE  # the rest is for the system properties that ride along
    assert all(len(o.body) <= room for o in outs)
    assert all(len(o.body) > room - 200 for o in outs[:-1])  # full, not just under
    assert sum(o.predictions for o in outs) == 300
    assert len(outs) <= 300 / 30
    assert orjson.loads(outs[0].body)["model"] == "temperature-anomaly"
    assert [o.correlation_id for o in sink.on("errorOutput")] == ["bad"]
    assert pipeline.stats.predictions == 300


async def test_partly_filled_aggregate_is_sent_after_the_delay(settings, scorer) -> None:
    agg = settings.replace(aggregate=True, aggregate_max_delay_ms=20)
    sink = ListSink()
    pipeline = Pipeline(agg, scorer, sink)
    await pipeline.start()
    for i in range(3):
        await pipeline.submit(InMessage(body(reading()), f"m-{i}", "amlInput"))
    outs = await sink.wait_for(1, timeout=5)  # no close(): the timer sends it
    assert [i["messageId"] for i in orjson.loads(outs[0].body)["predictions"]] == ["m-0", "m-1", "m-2"]
    await pipeline.close()
    assert len(sink.messages) == 1


async def test_features_setting_must_match_the_model_width(settings, scorer) -> None:
    with pytest.raises(ConfigError, match=WIDTH_REFUSAL):
        Pipeline(settings.replace(features=("a", "b")), scorer, ListSink())


async def test_feature_paths_from_settings_override_the_manifest(settings, scorer) -> None:
    custom = settings.replace(features=("t", "p", "a", "h"))
    msg = InMessage(b'{"t": 60.0, "p": 9.9, "a": 21.0, "h": 25}', "m", "amlInput")
    _, sink = await _run(custom, scorer, [msg])
    assert orjson.loads(sink.messages[0].body)["label"] == "anomaly"


class FlakySink(ListSink):
    """Refuses the output for one message; a stand-in for a broken pipe or a failed send."""

    async def send(self, msg) -> None:
        if msg.correlation_id == "m-3":
            raise BrokenPipeError("stdout closed")
        await super().send(msg)


async def test_a_sink_failure_loses_only_that_output_and_is_counted(settings, scorer) -> None:
    sink = FlakySink()
    pipeline = Pipeline(settings, scorer, sink)
    await pipeline.start()
    for i in range(10):
        await pipeline.submit(InMessage(body(reading()), f"m-{i}", "amlInput"))
        await pipeline.wait_idle()  # one batch each, so a failure could reach the next batch's delivery
    await pipeline.close()
    assert [m.correlation_id for m in sink.messages] == [f"m-{i}" for i in range(10) if i != 3]
    assert pipeline.stats.send_failures == 1
    assert pipeline.stats.predictions == 10


async def test_replayed_inputs_are_recorded_before_the_model_and_suspects_go_in_alone(settings, scorer) -> None:
    """The journal's TRY records: journaled inputs are named before run() sees them; a batch holding one that
    was in the model when a run died goes in one at a time, so that only the culprit counts the next death."""
    sink = ListSink()
    pipeline = Pipeline(settings, scorer, sink)
    tried: list[list[int]] = []
    pipeline.before_scoring = lambda seqs: tried.append(list(seqs))
    msgs = [InMessage(body(reading(40.0 + i)), f"m-{i}", "amlInput", journal_seq=i + 1) for i in range(6)]
    for m in msgs[:3]:
        m.attempts = 0  # an earlier run's, never in the model
    await pipeline.start()
    for m in msgs[:3]:
        await pipeline.submit(m)
    await pipeline.wait_idle()
    calls_before = pipeline.processor.run_calls
    msgs[3].attempts, msgs[4].attempts = 1, 0  # m-3 was in the model when a run died
    for m in msgs[3:]:
        await pipeline.submit(m)
    await pipeline.close()
    assert [o.correlation_id for o in sink.on("amlOutput")] == [f"m-{i}" for i in range(6)]
    assert tried[0] == [1, 2, 3]  # one batch, named as a whole
    assert tried[1:] == [[4], [5], [6]]  # the suspect's batch: one by one
    assert pipeline.processor.run_calls - calls_before == 3
