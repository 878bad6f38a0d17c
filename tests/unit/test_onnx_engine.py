"""The ONNX Runtime engine: the default model's graph against its pickle, register --onnx's refusals, the
manifest's engine fields, the fallback without onnxruntime, a hot swap from a pickle to ONNX, and a score.py
of one's own on onnxruntime."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import joblib
import numpy as np
import orjson
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from app.model.convert import OnnxRequest
from app.model.modeldir import MANIFEST_FILE, ModelDirError, read_manifest, verify_model_dir
from app.model.onnx_engine import OnnxModel
from app.model.register import RegisterError, register
from app.model.scorer import load_scorer
from app.model.simulator import FEATURES, LABELS, training_data
from app.settings import REPO_ROOT
from tests.conftest import DEFAULT_MODEL_DIR
from tests.helpers import reading
from tests.unit.test_control import BASE, Running

TOLERANCE = 1e-5  # what the default model was registered with (model.json's onnx.check)
ROWS, _ = training_data(5000, 99)  # rows the conversion was not checked on


def _without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on arm32v7: `import onnxruntime` fails."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def _pickle_only(tmp_path: Path) -> Path:
    """The default model's pickle registered alone (engine sklearn)."""
    target = tmp_path / "pickle-only"
    register(DEFAULT_MODEL_DIR / "model.pkl", target, "temperature-anomaly", FEATURES, labels=LABELS)
    return target


# --- the engine on the default model ----------------------------------------------------------------


def test_the_default_model_runs_on_onnx_runtime_with_the_pickle_s_labels_and_probabilities() -> None:
    scorer = load_scorer(DEFAULT_MODEL_DIR)
    assert isinstance(scorer.script.model, OnnxModel)
    pickle = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    onnx = scorer.script.model
    assert (onnx.predict(ROWS) == pickle.predict(ROWS)).all()
    assert np.abs(onnx.predict_proba(ROWS) - pickle.predict_proba(ROWS)).max() <= TOLERANCE
    assert list(onnx.classes_) == list(pickle.classes_) and onnx.n_features_in_ == 4


def test_scorer_answers_are_the_pickle_s(tmp_path: Path) -> None:
    rows = ROWS[:500].tolist()
    on_onnx = load_scorer(DEFAULT_MODEL_DIR).score(rows)
    on_pickle = load_scorer(_pickle_only(tmp_path)).score(rows)
    assert [a["label"] for a in on_onnx] == [b["label"] for b in on_pickle]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(on_onnx, on_pickle, strict=True)) <= 1e-4


@pytest.mark.parametrize("threshold", [None, 0.3])
def test_small_batches_score_exactly_as_one_vectorized_batch(threshold: float | None) -> None:
    """score.py picks a small batch's labels in plain Python (cheaper at low rates): the same answers to the bit."""
    script = load_scorer(DEFAULT_MODEL_DIR).script
    script.set_threshold(threshold)
    rows = ROWS[:2000]
    small = script.SMALL_BATCH_ROWS
    vectorized = script.run(rows)
    assert len(rows) > small
    in_small_batches = [r for start in range(0, len(rows), small) for r in script.run(rows[start : start + small])]
    assert in_small_batches == vectorized
    assert {r["label"] for r in vectorized} == set(LABELS)


def test_small_batch_rounding_is_numpy_s() -> None:
    script = load_scorer(DEFAULT_MODEL_DIR).script
    edges = [0.00005, 0.00015, 0.12345, 0.12355, 0.99995, 1.0, 0.0, 0.58115, 1 / 3, 2 / 3]
    values = edges + [float(v) for v in np.random.default_rng(7).random(20_000)]
    assert [script._rounded(v) for v in values] == np.round(np.array(values), 4).tolist()


# --- register --onnx: the check and its refusals ---------------------------------------------------


def test_register_onnx_writes_both_files_and_the_check(tmp_path: Path) -> None:
    target = tmp_path / "m"
    manifest = register(
        DEFAULT_MODEL_DIR / "model.pkl", target, "t", FEATURES, labels=LABELS, onnx=OnnxRequest(ROWS[:300], "given rows")
    )
    raw = json.loads((target / MANIFEST_FILE).read_text())
    assert raw["engine"] == "onnx" and raw["file"] == "model.pkl"
    assert set(raw["files"]) == {"model.pkl", "model.onnx"}
    assert raw["onnx"]["file"] == "model.onnx" and raw["onnx"]["classes"] == [0, 1]
    check = raw["onnx"]["check"]
    assert check["rows"] == 300 and check["sample"] == "given rows" and check["labelMismatches"] == 0
    assert 0 < check["maxDifference"] <= TOLERANCE == check["tolerance"]
    assert raw["libraries"]["onnxruntime"] == "1.21.0"
    assert verify_model_dir(target).engine == "onnx" and manifest.version == 1


def test_a_pickle_only_manifest_has_no_engine_fields(tmp_path: Path) -> None:
    raw = json.loads((_pickle_only(tmp_path) / MANIFEST_FILE).read_text())
    assert "engine" not in raw and "onnx" not in raw


def test_a_conversion_outside_the_tolerance_is_refused_with_the_figures(tmp_path: Path) -> None:
    target = tmp_path / "m"
    with pytest.raises(RegisterError) as info:
        register(
            DEFAULT_MODEL_DIR / "model.pkl", target, "t", FEATURES, onnx=OnnxRequest(ROWS[:300], "given rows", tolerance=1e-12)
        )
    text = str(info.value)
    assert "does not predict what the model predicts: 300 rows (given rows): 0 label mismatches" in text
    assert "tolerance 1e-12" in text and "largest probability difference" in text
    assert not target.exists()  # nothing of a refused registration stays


def test_a_model_that_float32_changes_is_refused_for_its_labels(tmp_path: Path) -> None:
    # The label hangs on a difference float32 cannot hold: 1e6 + 0.01 and 1e6 are the same float32.
    rng = np.random.default_rng(3)
    X = np.column_stack([1e6 + rng.uniform(-0.05, 0.05, 2000), rng.normal(size=2000)])
    y = (X[:, 0] > 1e6).astype(int)
    source = tmp_path / "lr.joblib"
    joblib.dump(LogisticRegression(C=1e6, max_iter=5000).fit(X - 1e6, y), source)  # trained on offsets ...
    model = joblib.load(source)
    model.intercept_ = model.intercept_ - model.coef_[0, 0] * 1e6  # ... then shifted to take raw values
    joblib.dump(model, source)
    with pytest.raises(RegisterError, match=r"[1-9]\d* label mismatches"):
        register(source, tmp_path / "m", "t", ["a", "b"], onnx=OnnxRequest(X, "training data"))


class Opaque(ClassifierMixin, BaseEstimator):
    """An estimator skl2onnx knows nothing about."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Opaque:
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X), dtype=int)


def test_a_model_skl2onnx_cannot_convert_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "opaque.pkl"
    X, y = training_data(100, 1)
    joblib.dump(Opaque().fit(X, y), source)
    sys.modules[__name__].Opaque = Opaque  # unpickled by joblib from this module
    with pytest.raises(RegisterError, match=r"skl2onnx cannot convert this Opaque"):
        register(source, tmp_path / "m", "t", FEATURES, onnx=OnnxRequest(X, "training data"))


# --- the manifest's engine fields ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"engine": "tensorflow"}, '\'engine\' must be "sklearn" or "onnx"'),
        ({"onnx": {"file": "../x.onnx", "classes": None}}, "'onnx' must be null or an object"),
        ({"onnx": {"file": "other.onnx", "classes": [0, 1]}}, "'onnx' file 'other.onnx' is not one of 'files'"),
        ({"onnx": None}, "'engine' is \"onnx\" but there is no 'onnx'"),
    ],
)
def test_engine_fields_are_checked(model_copy: Path, change: dict[str, object], words: str) -> None:
    path = model_copy / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(ModelDirError) as info:
        read_manifest(model_copy)
    assert words in str(info.value)


# --- without onnxruntime (arm32v7) -----------------------------------------------------------------


def test_without_onnxruntime_the_reference_pickle_runs_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _without_onnxruntime(monkeypatch)
    with caplog.at_level(logging.WARNING):
        scorer = load_scorer(DEFAULT_MODEL_DIR)
    assert isinstance(scorer.script.model, RandomForestClassifier)
    assert "running its reference pickle model.pkl with scikit-learn instead" in caplog.text
    assert scorer.score([[60.0, 5.0, 21.0, 25.0]])[0]["label"] in LABELS


def test_an_onnx_only_model_without_onnxruntime_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "only"
    register(
        DEFAULT_MODEL_DIR / "model.pkl", target, "t", FEATURES, labels=LABELS, onnx=OnnxRequest(ROWS[:100], "rows", only=True)
    )
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST_FILE, "model.onnx"]
    assert isinstance(load_scorer(target).script.model, OnnxModel)  # with onnxruntime it runs
    _without_onnxruntime(monkeypatch)
    with pytest.raises(ModelDirError, match=r"ONNX only \(model\.onnx\) and onnxruntime cannot be imported.*without --onnx-only"):
        load_scorer(target)


# --- hot swap and score.py -------------------------------------------------------------------------


async def test_hot_swap_from_a_pickle_to_onnx_loses_and_doubles_nothing(tmp_path: Path, model_copy: Path) -> None:
    n = 2000
    async with Running(BASE.replace(model_dir=str(_pickle_only(tmp_path)), max_batch_size=32)) as r:
        assert isinstance(r.pipeline.scorer.script.model, RandomForestClassifier)
        feeder = asyncio.create_task(r.submit(range(n), reading(60.0)))
        async with asyncio.timeout(10):  # bounded: a stalled pipeline fails here rather than hanging
            while r.pipeline.stats.predictions < 200:  # swap mid-stream
                await asyncio.sleep(0)
        await r.controller.reload_model(str(model_copy))  # the default model: ONNX
        await feeder
        await r.pipeline.wait_idle()
        assert isinstance(r.pipeline.scorer.script.model, OnnxModel)
        outs = r.sink.on("amlOutput")
        assert sorted(int(m.correlation_id) for m in outs) == list(range(n))  # each exactly once
        assert {orjson.loads(m.body)["label"] for m in outs} == {"normal"}  # the same answer on both engines


def test_a_score_py_of_one_s_own_on_onnx_runtime() -> None:
    scorer = load_scorer(DEFAULT_MODEL_DIR, REPO_ROOT / "examples" / "onnx_score.py")
    rows = ROWS[:200]
    answers = scorer.score(rows.tolist())
    pickle = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    assert [a["anomaly"] for a in answers] == (pickle.predict(rows) == 1).tolist()
