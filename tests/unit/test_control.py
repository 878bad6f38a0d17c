"""Run-time control on the in-process pipeline: desired properties -> live settings, model hot swap,
status, and the direct methods' answers (the SDK glue is exercised over a real broker in
test_transport.py and through the local edge)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest

from app.core.control import ChangeRefused, Controller, Health
from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from app.edgehub.methods import MethodHandler
from app.model.scorer import DEFAULT_SCRIPT, load_scorer
from app.model.simulator import FEATURES
from app.settings import LIVE, ConfigError, Settings, reported_settings, settings_from_desired
from edgekit.twin_patch import merge_patch
from tests.conftest import DEFAULT_MODEL_DIR, DEFAULT_MODEL_VERSION, ListSink
from tests.helpers import body, reading, row

WIDTH_REFUSAL = f"FEATURES: 2 paths given but model temperature-anomaly v{DEFAULT_MODEL_VERSION} takes 4"

# P(anomaly) = 0.39 with the default model: "normal" by argmax, "anomaly" from a threshold of 0.3.
BORDERLINE = reading(43.0, 5.0)

# The default script behind a gate: a test holds a batch in the model while it changes things.
GATED_SCRIPT = f"""
import importlib.util, threading
INPUT_FORMAT = "ndarray"
gate = threading.Event()
gate.set()
entered = threading.Event()
_spec = importlib.util.spec_from_file_location("_gated_inner_" + str(id(gate)), {str(DEFAULT_SCRIPT)!r})
inner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inner)
def init():
    inner.init()
def set_threshold(value):
    inner.set_threshold(value)
def run(x):
    entered.set()
    gate.wait(10)
    return inner.run(x)
"""


# --- desired properties -> settings ----------------------------------------------------------------

# The tests' models live in pytest's temporary directories: those are the roots run-time models may come from.
BASE = Settings(model_dir=str(DEFAULT_MODEL_DIR), model_roots=(tempfile.gettempdir(),))

VALID = [
    ("maxBatchSize", 8, "max_batch_size", 8),
    ("maxWaitMs", 2.5, "max_wait_ms", 2.5),
    ("aggregate", True, "aggregate", True),
    ("aggregateMaxBytes", 8192, "aggregate_max_bytes", 8192),
    ("aggregateMaxDelayMs", 50, "aggregate_max_delay_ms", 50.0),
    ("threshold", 0.3, "threshold", 0.3),
    ("features", ["a.b", "c"], "features", ("a.b", "c")),
    ("features", "a.b, c", "features", ("a.b", "c")),
    ("passthroughFields", [], "passthrough_fields", ()),
    ("inputNames", ["amlInput", "other"], "input_names", ("amlInput", "other")),
    ("outputName", "predictions", "output_name", "predictions"),
    ("errorOutputName", "rejects", "error_output_name", "rejects"),
    ("errorInputMaxBytes", 0, "error_input_max_bytes", 0),
    ("logLevel", "DEBUG", "log_level", "DEBUG"),
    ("reportIntervalS", 5, "report_interval_s", 5.0),
    ("reportJitterS", 0, "report_jitter_s", 0.0),
    ("modelDir", "/models/v2", "model_dir", "/models/v2"),
    ("scoreScript", "/models/v2/score.py", "score_script", "/models/v2/score.py"),
    ("scriptInput", "message", "script_input", "message"),
]

INVALID = [
    ("maxBatchSize", 0, "maxBatchSize: 0 must be at least 1"),
    ("maxBatchSize", 2.5, "maxBatchSize=2.5: expected a whole number"),
    ("maxBatchSize", True, "maxBatchSize=True: expected a whole number"),
    ("maxWaitMs", -1, "maxWaitMs: -1.0 must be 0 or more"),
    ("maxWaitMs", "5", "maxWaitMs='5': expected a number"),
    ("aggregate", "yes", "aggregate='yes': expected true or false"),
    ("aggregateMaxBytes", 100, "aggregateMaxBytes: 100 must be between 512"),
    ("aggregateMaxDelayMs", 0, "aggregateMaxDelayMs: 0.0 must be more than 0"),
    ("threshold", 1.0, "threshold: 1.0 must be between 0 and 1"),
    ("threshold", "high", "threshold='high': expected a number"),
    ("features", ["a..b"], "features: 'a..b' has an empty part"),
    ("features", [1, 2], "features=[1, 2]: expected a list of strings"),
    ("inputNames", [], "inputNames: name at least one input"),
    ("outputName", 7, "outputName=7: expected a string"),
    ("errorOutputName", "amlOutput", "errorOutputName: must differ from OUTPUT_NAME"),
    ("errorInputMaxBytes", -1, "errorInputMaxBytes: -1 must be 0 or more"),
    ("logLevel", "LOUD", "logLevel: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR"),
    ("scriptInput", "batched", "scriptInput: 'batched' is not one of auto, rows, message"),
    ("reportIntervalS", 0.5, "reportIntervalS: 0.5 must be at least 1"),
    ("reportJitterS", -1, "reportJitterS: -1.0 must be 0 or more"),
    ("queueSize", 10, "queueSize: cannot change while running; set QUEUE_SIZE in the module's env"),
    ("httpPort", 8080, "httpPort: cannot change while running; set HTTP_PORT in the module's env"),
    ("batchsize", 8, "batchsize: not a setting; live settings are maxBatchSize"),
]


def test_every_live_setting_is_tested_valid_and_invalid() -> None:
    assert {key for key, *_ in VALID} == set(LIVE)
    assert {key for key, *_ in INVALID} >= set(LIVE) - {"modelDir", "scoreScript", "passthroughFields"}


@pytest.mark.parametrize(("key", "value", "field", "expected"), VALID)
def test_valid_desired_property_sets_its_setting(key: str, value: Any, field: str, expected: Any) -> None:
    settings = settings_from_desired(BASE, {key: value, "$version": 4})
    assert getattr(settings, field) == expected
    assert settings.replace(**{field: getattr(BASE, field)}) == BASE  # nothing else moved


@pytest.mark.parametrize(("key", "value", "reason"), INVALID)
def test_invalid_desired_property_is_refused_with_its_reason(key: str, value: Any, reason: str) -> None:
    with pytest.raises(ConfigError, match="desired properties refused") as info:
        settings_from_desired(BASE, {key: value})
    assert reason in str(info.value)


def test_a_document_is_judged_whole_and_every_problem_named() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_desired(BASE, {"maxBatchSize": 16, "threshold": 7, "queueSize": 1, "logLevel": "LOUD"})
    text = str(info.value)
    assert "threshold: 7.0" in text and "queueSize" in text and "logLevel" in text
    assert "maxBatchSize" not in text  # the valid one is not blamed


def test_null_removes_a_desired_property_and_the_environment_holds_again() -> None:
    base = BASE.replace(max_batch_size=64)
    desired = merge_patch({"maxBatchSize": 8, "threshold": 0.3}, {"maxBatchSize": None, "$version": 3})
    assert desired == {"threshold": 0.3, "$version": 3}
    assert settings_from_desired(base, desired).max_batch_size == 64


def test_reported_settings_use_the_desired_names_and_json_types() -> None:
    reported = reported_settings(BASE.replace(features=("a", "b"), threshold=0.4))
    assert set(reported) == set(LIVE)
    assert reported["features"] == ["a", "b"] and reported["threshold"] == 0.4
    assert orjson.loads(orjson.dumps(reported)) == reported


# --- the controller on a running pipeline ----------------------------------------------------------


class Running:
    """A started pipeline with a controller, fed by the test."""

    def __init__(self, settings: Settings, script: Path | None = None) -> None:
        self.scorer = load_scorer(settings.model_dir, script or "")
        self.sink = ListSink()
        self.pipeline = Pipeline(settings, self.scorer, self.sink)
        self.health = Health(ready=True, status="ready")
        self.controller = Controller(settings, self.pipeline, self.health)

    async def __aenter__(self) -> Running:
        await self.pipeline.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.scorer.script.__dict__.get("gate") is not None:
            self.scorer.script.gate.set()
        await self.pipeline.close()

    async def submit(self, ids: range | list[str], r: dict = BORDERLINE) -> None:
        for i in ids:
            await self.pipeline.submit(InMessage(body(r), str(i), "amlInput"))

    def bodies(self, output: str = "amlOutput") -> list[dict]:
        return [orjson.loads(m.body) for m in self.sink.on(output)]


async def _in_model(script_module: Any) -> None:
    """Wait (bounded) until a batch is inside the gated run()."""
    assert await asyncio.to_thread(script_module.entered.wait, 5), "no batch reached the model"


async def test_a_patch_during_a_stream_applies_from_the_next_batch_on(tmp_path: Path) -> None:
    script = tmp_path / "gated.py"
    script.write_text(GATED_SCRIPT)
    async with Running(BASE, script) as r:
        gated = r.scorer.script
        gated.gate.clear()
        await r.submit(["first"])
        await _in_model(gated)  # batch 1 is being scored under the old settings
        await r.submit([f"q-{i}" for i in range(40)])  # queued behind it
        change = asyncio.create_task(
            r.controller.apply_desired({"threshold": 0.3, "maxBatchSize": 8, "$version": 2}, 2, patch=False)
        )
        done, _ = await asyncio.wait([change], timeout=0.2)
        assert not done  # it waits for the batch in the model
        gated.gate.set()
        await change
        await r.pipeline.wait_idle()
        labels = [b["label"] for b in r.bodies()]
        assert labels == ["normal"] + ["anomaly"] * 40  # batch 1 old, everything queued new
        assert [m.correlation_id for m in r.sink.messages] == ["first"] + [f"q-{i}" for i in range(40)]
        assert r.pipeline.batcher.max_items == 8
        rows = r.pipeline.stats.model.batch_rows
        assert rows.count >= 1 + 40 / 8 and dict(rows.buckets())["8.0"] == rows.count  # no run() over 8 rows
        assert r.controller.desired_version == 2 and r.controller.state == "ready"


async def test_an_invalid_patch_changes_nothing_and_is_reported() -> None:
    async with Running(BASE) as r:
        await r.controller.apply_desired({"threshold": 0.3, "$version": 1}, 1, patch=False)
        before = r.pipeline.settings
        with pytest.raises(ChangeRefused) as info:
            await r.controller.apply_desired({"maxBatchSize": 0, "outputName": "x", "$version": 2}, 2, patch=True)
        assert "maxBatchSize: 0 must be at least 1" in str(info.value)
        assert r.pipeline.settings is before
        await r.submit(["after"])
        await r.pipeline.wait_idle()
        assert r.bodies() == [r.bodies()[0]] and r.bodies()[0]["label"] == "anomaly"  # threshold 0.3 still
        status = r.controller.status()
        assert status["status"] == "degraded"
        assert status["desiredVersion"] == 1 and status["rejectedDesiredVersion"] == 2
        assert status["lastError"]["code"] == "invalid_desired"
        assert "desired $version 2 refused" in status["lastError"]["message"]
        # The twin still holds the bad value: fixing it (and only it) brings the patch in.
        await r.controller.apply_desired({"maxBatchSize": 32, "$version": 3}, 3, patch=True)
        status = r.controller.status()
        assert status["status"] == "ready" and status["desiredVersion"] == 3
        assert status["settings"]["outputName"] == "x" and status["settings"]["maxBatchSize"] == 32


async def test_stale_patches_are_ignored_and_removal_falls_back_to_the_environment() -> None:
    async with Running(BASE.replace(max_batch_size=64)) as r:
        await r.controller.apply_desired({"maxBatchSize": 8, "$version": 5}, 5, patch=False)
        await r.controller.apply_desired({"maxBatchSize": 4, "$version": 4}, 4, patch=True)
        assert r.pipeline.settings.max_batch_size == 8
        await r.controller.apply_desired({"maxBatchSize": None, "$version": 6}, 6, patch=True)
        assert r.pipeline.settings.max_batch_size == 64


async def test_output_names_and_aggregation_change_live() -> None:
    async with Running(BASE) as r:
        await r.submit(["a"])
        await r.pipeline.wait_idle()
        await r.controller.apply_desired({"outputName": "scores", "aggregate": True, "$version": 2}, 2, patch=False)
        await r.submit(["b", "c", "d"])
        await r.pipeline.wait_idle()
        await r.controller.apply_desired({"aggregate": False, "$version": 3}, 3, patch=True)
        await r.submit(["e"])
        await r.pipeline.wait_idle()
        assert [m.output for m in r.sink.messages] == ["amlOutput", "scores", "scores"]
        aggregate = orjson.loads(r.sink.messages[1].body)
        assert [p["messageId"] for p in aggregate["predictions"]] == ["b", "c", "d"]
        assert r.sink.messages[2].correlation_id == "e"


async def test_features_that_do_not_fit_the_model_are_refused() -> None:
    async with Running(BASE) as r:
        with pytest.raises(ChangeRefused, match=WIDTH_REFUSAL):
            await r.controller.apply_desired({"features": ["a", "b"]}, 2, patch=False)
        assert r.pipeline.settings.features == ()


async def test_a_threshold_needs_a_script_that_takes_one(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text("INPUT_FORMAT = 'ndarray'\ndef init():\n    pass\ndef run(x):\n    return [{'label': 'ok'}] * len(x)\n")
    async with Running(BASE, script) as r:
        with pytest.raises(ChangeRefused, match=r"THRESHOLD: plain.py has no set_threshold\(value\)"):
            await r.controller.apply_desired({"threshold": 0.3}, 2, patch=False)
        assert r.pipeline.settings.threshold is None


# --- model hot swap --------------------------------------------------------------------------------


async def test_hot_swap_under_a_stream_loses_and_doubles_nothing(second_model: Path) -> None:
    n = 3000
    async with Running(BASE.replace(max_batch_size=32)) as r:
        feeder = asyncio.create_task(r.submit(range(n), reading(60.0)))
        async with asyncio.timeout(10):  # bounded: a stalled pipeline fails here rather than hanging
            while r.pipeline.stats.predictions < 200:  # swap mid-stream
                await asyncio.sleep(0)
        await r.controller.reload_model(str(second_model))
        await feeder
        await r.pipeline.wait_idle()
        outs = r.sink.on("amlOutput")
        assert sorted(int(m.correlation_id) for m in outs) == list(range(n))  # each exactly once
        models = [orjson.loads(m.body)["model"] for m in outs]
        switch = models.index("temperature-lr")
        assert 200 <= switch < n
        assert set(models[:switch]) == {"temperature-anomaly"} and set(models[switch:]) == {"temperature-lr"}
        status = r.controller.status()
        assert status["model"]["name"] == "temperature-lr" and status["model"]["dir"] == str(second_model)
        assert status["settings"]["modelDir"] == str(second_model)


async def test_a_bad_model_on_swap_keeps_the_old_one(model_copy: Path) -> None:
    (model_copy / "model.pkl").write_bytes(b"not a model")
    async with Running(BASE) as r:
        with pytest.raises(ChangeRefused) as info:
            await r.controller.reload_model(str(model_copy))
        assert info.value.code == "model_rejected" and "sha256" in str(info.value)
        await r.submit(["after"])
        await r.pipeline.wait_idle()
        assert r.bodies()[0]["model"] == "temperature-anomaly"
        status = r.controller.status()
        assert status["status"] == "degraded" and status["lastError"]["code"] == "model_rejected"
        assert status["model"]["dir"] == str(DEFAULT_MODEL_DIR)


async def test_a_desired_model_dir_that_fails_refuses_the_whole_patch(tmp_path: Path) -> None:
    async with Running(BASE) as r:
        with pytest.raises(ChangeRefused, match=r"does not exist|model\.json"):
            await r.controller.apply_desired({"modelDir": str(tmp_path / "none"), "maxBatchSize": 4}, 2, patch=False)
        assert r.pipeline.settings.max_batch_size == BASE.max_batch_size


async def test_desired_model_dir_swaps_the_model(second_model: Path) -> None:
    async with Running(BASE) as r:
        await r.controller.apply_desired({"modelDir": str(second_model), "$version": 2}, 2, patch=False)
        assert r.pipeline.scorer.manifest.name == "temperature-lr"
        await r.controller.apply_desired({"modelDir": None, "$version": 3}, 3, patch=True)
        assert r.pipeline.scorer.manifest.name == "temperature-anomaly"


# --- direct methods --------------------------------------------------------------------------------


@pytest.fixture
async def methods() -> Any:
    async with Running(BASE) as r:
        yield MethodHandler(client=None, controller=r.controller, loop=asyncio.get_running_loop()), r  # type: ignore[arg-type]


async def test_score_method_answers_with_the_model_s_predictions(methods) -> None:
    handler, r = methods
    readings = [reading(30.0 + 5 * i) for i in range(6)] + [BORDERLINE]
    status, payload = await handler.call("score", readings)
    assert status == 200
    model = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    proba = model.predict_proba(np.array([row(x) for x in readings]))
    expected = [["normal", "anomaly"][k] for k in proba.argmax(axis=1)]
    assert [p["label"] for p in payload["predictions"]] == expected
    assert [p["probability"] for p in payload["predictions"]] == list(np.round(proba.max(axis=1), 4))
    status, payload = await handler.call("score", {"data": [row(BORDERLINE)]})  # Azure ML's shape
    assert (status, payload) == (200, [{"label": "normal", "probability": round(float(proba[-1].max()), 4)}])
    assert r.sink.messages == []  # replies are not sent to edgeHub


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"machine": {"temperature": "hot"}}, "not_numeric"), ([], "empty"), ("{not json", "not_json"), (None, "bad_shape")],
)
async def test_score_method_refuses_bad_payloads_with_400(methods, payload: Any, code: str) -> None:
    handler, _ = methods
    status, answer = await handler.call("score", payload)
    assert status == 400 and answer["code"] == code and answer["reason"]


async def test_score_method_while_not_ready_is_503(methods) -> None:
    handler, r = methods
    r.controller.set_state("stopping")
    assert await handler.call("score", reading()) == (503, {"code": "not_ready", "reason": "the module is stopping"})


async def test_get_status_counts_what_was_scored(methods) -> None:
    handler, _ = methods
    await handler.call("score", [reading(), reading()])
    await handler.call("score", "nonsense")
    status, doc = await handler.call("getStatus", None)
    assert status == 200
    assert doc["status"] == "ready"
    assert doc["counters"]["messages"] == 2 and doc["counters"]["predictions"] == 1 and doc["counters"]["errors"] == 1
    assert doc["counters"]["batches"] == 1 and doc["counters"]["meanBatchSize"] == 2.0
    assert doc["model"]["name"] == "temperature-anomaly" and len(doc["model"]["sha256"]) == 64


async def test_reload_model_method(methods, second_model: Path, model_copy: Path) -> None:
    handler, r = methods
    assert (await handler.call("reloadModel", {"dir": "x"}))[0] == 400
    status, payload = await handler.call("reloadModel", {"modelDir": str(second_model)})
    assert status == 200 and payload["name"] == "temperature-lr" and payload["features"] == list(FEATURES)
    (model_copy / "model.pkl").write_bytes(b"broken")
    status, payload = await handler.call("reloadModel", {"modelDir": str(model_copy)})
    assert status == 400 and payload["code"] == "model_rejected"
    assert r.pipeline.scorer.manifest.name == "temperature-lr"  # the previous model serves on
    status, payload = await handler.call("reloadModel", {})  # the current directory again
    assert status == 200 and payload["name"] == "temperature-lr"


async def test_unknown_method_is_404(methods) -> None:
    handler, _ = methods
    status, payload = await handler.call("reboot", {})
    assert status == 404 and "score, getStatus, reloadModel" in payload["reason"]


async def test_degraded_lasts_while_anything_asked_for_is_refused(second_model: Path, model_copy: Path) -> None:
    (model_copy / "model.pkl").write_bytes(b"broken")
    async with Running(BASE) as r:
        with pytest.raises(ChangeRefused):
            await r.controller.apply_desired({"maxBatchSize": 0}, 2, patch=False)
        await r.controller.reload_model(str(second_model))  # a good reload does not mend the twin's document
        assert r.controller.state == "degraded"
        await r.controller.apply_desired({"maxBatchSize": None, "$version": 3}, 3, patch=True)
        assert r.controller.state == "ready"
        with pytest.raises(ChangeRefused):
            await r.controller.reload_model(str(model_copy))
        assert r.controller.state == "degraded"
        await r.controller.reload_model()  # the model in use, reloaded: nothing refused any more
        assert r.controller.state == "ready" and r.pipeline.scorer.manifest.name == "temperature-lr"


# --- the trust boundary ---------------------------------------------------------------------------


async def test_a_model_outside_model_roots_is_refused_and_the_old_one_kept(second_model: Path) -> None:
    async with Running(BASE.replace(model_roots=("/models",))) as r:
        with pytest.raises(ChangeRefused, match=r"modelDir .* is outside MODEL_ROOTS \(/models\)") as info:
            await r.controller.reload_model(str(second_model))
        assert info.value.code == "model_rejected"
        with pytest.raises(ChangeRefused, match="outside MODEL_ROOTS"):
            await r.controller.apply_desired({"scoreScript": "/etc/passwd"}, 2, patch=False)
        assert r.pipeline.scorer.manifest.name == "temperature-anomaly"  # the old model serves on
        assert r.controller.status()["lastError"]["code"] == "model_rejected"


async def test_a_symlink_inside_a_root_cannot_lead_out_of_it(tmp_path: Path, second_model: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "escape").symlink_to(second_model)  # second_model lies outside this root
    async with Running(BASE.replace(model_roots=(str(root),))) as r:
        with pytest.raises(ChangeRefused, match="outside MODEL_ROOTS"):
            await r.controller.reload_model(str(root / "escape"))


async def test_a_manifest_with_wrong_types_is_refused_naming_each_field(model_copy: Path) -> None:
    manifest = orjson.loads((model_copy / "model.json").read_bytes())
    manifest |= {"version": "two", "features": "machine.temperature", "tags": {"a": 1}}
    (model_copy / "model.json").write_bytes(orjson.dumps(manifest))
    async with Running(BASE) as r:
        with pytest.raises(ChangeRefused) as info:
            await r.controller.reload_model(str(model_copy))
        text = str(info.value)
        assert "'version' must be a whole number" in text and "'features' must be" in text and "'tags' must be" in text
        assert r.pipeline.scorer.manifest.name == "temperature-anomaly"


async def test_thousands_of_unknown_keys_keep_the_reported_document_small() -> None:
    async with Running(BASE) as r:
        hostile = {f"key{i}" + "x" * 200: "v" * 1000 for i in range(2000)}
        with pytest.raises(ChangeRefused):
            await r.controller.apply_desired(hostile, 2, patch=False)
        status = r.controller.status()
        assert "2000 keys are not settings (key0xxx" in status["lastError"]["message"]
        assert len(orjson.dumps(status)) < 32 * 1024  # IoT Hub's limit for reported properties


async def test_every_live_setting_has_a_ceiling() -> None:
    for key, value in [("maxWaitMs", 1e300), ("maxBatchSize", 10**9), ("aggregateMaxDelayMs", 1e12), ("reportIntervalS", 1e9)]:
        with pytest.raises(ConfigError, match=f"{key}: .* must be at most"):
            settings_from_desired(BASE, {key: value})
