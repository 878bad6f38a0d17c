"""One model stack everywhere (requirements/model.txt), and what a model pickled with an older one gets: a refusal
that names the versions it was pickled with, the versions here and the fix, on every path that loads a model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime
import pytest

from app.model.modeldir import TRACKED_LIBRARIES, ModelDirError, library_versions
from app.model.register import RegisterError, register
from app.model.scorer import ScriptLoadError, load_scorer
from app.model.simulator import FEATURES
from app.settings import REPO_ROOT
from tests.conftest import DEFAULT_MODEL_DIR

# The default model as the bookworm stack (numpy 1.24.2, scikit-learn 1.2.1) pickled it (see its README.md).
OLD_MODEL_DIR = REPO_ROOT / "tests" / "fixtures" / "model-bookworm"
OLD_STACK = "numpy 1.24.2, scikit-learn 1.2.1"

AZUREML_SCRIPT = """
import os
import joblib

def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.pkl"))

def run(raw_data):
    return model.predict([[0.0, 0.0, 0.0, 0.0]]).tolist()
"""


def _pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements" / "model.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def _this_stack() -> str:
    pins = _pins()
    return f"numpy {pins['numpy']}, scikit-learn {pins['scikit-learn']}"


@pytest.fixture
def old_model(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(OLD_MODEL_DIR, target, ignore=shutil.ignore_patterns("README.md"))
    return target


def test_this_environment_and_the_default_model_run_the_pinned_stack() -> None:
    pins = _pins()
    assert onnxruntime.__version__ == pins.pop("onnxruntime")  # the ONNX engine: pinned with the stack, not tracked
    assert set(pins) == set(TRACKED_LIBRARIES)
    here = library_versions()
    assert {lib: here[lib] for lib in pins} == pins
    trained = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["libraries"]
    assert {lib: trained[lib] for lib in pins} == pins  # `make model` was run after the last pin change


def test_the_fixture_is_the_old_stack() -> None:
    libraries = json.loads((OLD_MODEL_DIR / "model.json").read_text())["libraries"]
    assert (libraries["numpy"], libraries["scikit-learn"]) == ("1.24.2", "1.2.1")


def test_an_old_stack_model_is_refused_before_unpickling_with_versions_and_fix(old_model: Path) -> None:
    with pytest.raises(ModelDirError) as info:
        load_scorer(old_model)
    text = str(info.value)
    assert f"it was pickled with {OLD_STACK}, this runtime has {_this_stack()} (requirements/model.txt)" in text
    assert f"scikit-learn 1.2.1 (trained) vs {_pins()['scikit-learn']} (here)" in text
    assert "python -m app register" in text and "make model" in text
    assert "Registering the old pickle again does not help" in text


def test_forcing_an_old_stack_model_fails_at_unpickling_and_still_says_why(old_model: Path) -> None:
    with pytest.raises(ScriptLoadError) as info:
        load_scorer(old_model, allow_version_mismatch=True)
    text = str(info.value)
    assert "init() failed" in text and "incompatible dtype" in text
    assert f"this runtime has {_this_stack()}" in text and "python -m app register" in text


def test_an_old_stack_pickle_without_a_manifest_gets_the_versions_and_fix(old_model: Path, tmp_path: Path) -> None:
    # An Azure ML model downloaded as is: no model.json, so unpickling is the first to notice.
    (old_model / "model.json").unlink()
    script = tmp_path / "score.py"
    script.write_text(AZUREML_SCRIPT)
    with pytest.raises(ScriptLoadError) as info:
        load_scorer(old_model, script)
    text = str(info.value)
    assert "incompatible dtype" in text
    assert f"this runtime has {_this_stack()}" in text and "retrain the model" in text


def test_registering_an_old_stack_pickle_is_refused_with_the_fix(old_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "registered"
    with pytest.raises(RegisterError) as info:
        register(old_model / "model.pkl", target, "old", FEATURES)
    text = str(info.value)
    assert "cannot be loaded with joblib/pickle here" in text and "incompatible dtype" in text
    assert f"this runtime has {_this_stack()}" in text and "retrain the model" in text
    assert not (target / "model.json").exists()
