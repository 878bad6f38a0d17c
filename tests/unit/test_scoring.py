"""The score.py contract (both styles) and the checks made before unpickling."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import numpy as np
import pytest

from app.model.modeldir import ModelDirError, compare_libraries
from app.model.scorer import ScoringError, ScriptLoadError, load_scorer
from tests.conftest import DEFAULT_MODEL_DIR

ROWS = [[30.0, 2.0, 21.0, 25.0], [60.0, 9.5, 21.0, 25.0], [90.0, 9.0, 35.0, 24.0]]

AZUREML_SCRIPT = """
import json, os
import joblib
import numpy as np

def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.pkl"))

def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return {returns}
"""


def _script(tmp_path: Path, text: str, name: str = "score.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _edit_manifest(model_dir: Path, **changes: object) -> None:
    path = model_dir / "model.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_default_script_gives_label_and_probability_from_the_model(scorer) -> None:
    model = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    proba = model.predict_proba(np.array(ROWS))
    results = scorer.score(ROWS)
    assert scorer.ndarray_input
    assert [r["label"] for r in results] == [["normal", "anomaly"][i] for i in proba.argmax(axis=1)]
    assert [r["probability"] for r in results] == pytest.approx(proba.max(axis=1), abs=5e-5)
    assert results[1]["label"] == "anomaly"  # pressure far off the line for 60 °C
    assert results[0]["label"] == "normal"


def test_azureml_script_taking_a_json_string_runs_unchanged(tmp_path: Path) -> None:
    script = _script(tmp_path, AZUREML_SCRIPT.format(returns="model.predict(data).tolist()"))
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    model = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    assert not scorer.ndarray_input
    assert scorer.score(ROWS) == model.predict(np.array(ROWS)).tolist()


def test_azureml_script_returning_a_json_string_is_parsed(tmp_path: Path) -> None:
    script = _script(tmp_path, AZUREML_SCRIPT.format(returns="json.dumps(model.predict(data).tolist())"))
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    assert scorer.score(ROWS) == [0, 1, 1]


@pytest.mark.parametrize(
    ("returns", "words"),
    [
        ('json.dumps({"error": "bad input"})', "run() reported an error: bad input"),
        ('"something broke"', "not JSON"),
        ("model.predict(data).tolist()[:1]", "returned 1 results for 3 rows"),
        ("42", "returned int"),
    ],
)
def test_script_answers_that_cannot_map_onto_rows_are_scoring_errors(tmp_path: Path, returns: str, words: str) -> None:
    script = _script(tmp_path, AZUREML_SCRIPT.format(returns=f"({returns}) if len(data) > 1 else [0]"))
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    with pytest.raises(ScoringError, match=words.replace("(", r"\(").replace(")", r"\)")):
        scorer.score(ROWS)


def test_script_sees_azureml_model_dir_pointing_at_the_verified_directory(tmp_path: Path, model_copy: Path) -> None:
    script = _script(
        tmp_path,
        "import os\nINPUT_FORMAT='ndarray'\ndef init():\n    global d\n    d = os.environ['AZUREML_MODEL_DIR']\n"
        "def run(x):\n    return [d] * len(x)\n",
    )
    scorer = load_scorer(model_copy, script)
    assert scorer.score([[0, 0, 0, 0]]) == [str(model_copy.resolve())]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("def init(): pass\n", r"score.py does not have a run\(\) function defined"),  # Azure ML's server's words
        ("import not_a_module_anywhere\n", "import user script .* ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        (
            "def init():\n    raise ValueError('no model here')\ndef run(x): return x\n",
            r"init\(\) failed: ValueError: no model here \(at .*score.py:2 in init\)",
        ),
        ("INPUT_FORMAT='ndarray'\ndef init(): pass\ndef run(x): return []\n", "trial prediction on one row of 4 features"),
    ],
)
def test_broken_scripts_fail_to_load_with_the_reason(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ScriptLoadError, match=words):
        load_scorer(DEFAULT_MODEL_DIR, _script(tmp_path, text))


def test_missing_script_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScriptLoadError, match="does not exist"):
        load_scorer(DEFAULT_MODEL_DIR, tmp_path / "nope.py")


def test_changed_pickle_is_refused_before_unpickling(model_copy: Path) -> None:
    with open(model_copy / "model.pkl", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelDirError, match=r"sha256 .* but the manifest says .*register"):
        load_scorer(model_copy)


def test_missing_manifest_says_how_to_register(model_copy: Path) -> None:
    (model_copy / "model.json").unlink()
    with pytest.raises(ModelDirError, match=r"model.json is missing\. Register the model first: `python -m app register"):
        load_scorer(model_copy)


def test_manifest_that_is_not_json_is_refused(model_copy: Path) -> None:
    (model_copy / "model.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not readable JSON"):
        load_scorer(model_copy)


@pytest.mark.parametrize(
    ("lib", "version"),
    [("scikit-learn", "1.5.0"), ("scikit-learn", "1.2.1"), ("numpy", "3.0.0")],
)
def test_library_versions_that_break_pickles_are_refused_with_the_fix(model_copy: Path, lib: str, version: str) -> None:
    libraries = json.loads((model_copy / "model.json").read_text())["libraries"] | {lib: version}
    _edit_manifest(model_copy, libraries=libraries)
    with pytest.raises(ModelDirError) as info:
        load_scorer(model_copy)
    text = str(info.value)
    assert f"{lib} {version} (trained) vs" in text
    assert "make model" in text and "rebuild the image" in text


def test_version_mismatch_can_be_overridden(model_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    libraries = json.loads((model_copy / "model.json").read_text())["libraries"] | {"scikit-learn": "1.5.0"}
    _edit_manifest(model_copy, libraries=libraries)
    with caplog.at_level(logging.WARNING):
        scorer = load_scorer(model_copy, allow_version_mismatch=True)
    assert len(scorer.score(ROWS)) == 3
    assert "ALLOW_VERSION_MISMATCH" in caplog.text


def test_harmless_version_differences_only_warn(model_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    older = {"scipy": "1.15.2", "scikit-learn": "1.4.0", "numpy": "1.26.4"}
    libraries = json.loads((model_copy / "model.json").read_text())["libraries"] | older
    _edit_manifest(model_copy, libraries=libraries)
    with caplog.at_level(logging.WARNING):
        scorer = load_scorer(model_copy)
    assert len(scorer.score(ROWS)) == 3
    assert "scipy 1.15.2 (trained) vs 1.15.3 (here)" in caplog.text
    assert "numpy 1.26.4 (trained) vs 2.2.4 (here)" in caplog.text  # numpy 2 reads numpy 1 pickles


def test_compare_libraries_rules() -> None:
    errors, warnings = compare_libraries(
        {"numpy": "1.26.4", "scikit-learn": "1.4.0", "joblib": "1.3.0"},
        {"numpy": "2.2.4", "scikit-learn": "1.4.2", "joblib": "1.4.2"},
    )
    assert errors == []
    assert len(warnings) == 3
    errors, _ = compare_libraries({"scikit-learn": "1.2.1", "numpy": "2.3.1"}, {"scikit-learn": "1.4.2", "numpy": "1.24.2"})
    assert errors == [
        "scikit-learn 1.2.1 (trained) vs 1.4.2 (here): scikit-learn does not read its pickles across minor versions",
        "numpy 2.3.1 (trained) vs 1.24.2 (here): numpy 2 pickles need numpy 2 (numpy._core)",
    ]


def test_a_python_patch_release_is_no_difference_but_a_minor_one_is() -> None:
    assert compare_libraries({"python": "3.11.2"}, {"python": "3.11.7"}) == ([], [])
    assert compare_libraries({"python": "3.11.7"}, {"python": "3.13.5"}) == ([], ["python 3.11.7 (trained) vs 3.13.5 (here)"])
