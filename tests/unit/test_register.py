"""Registering a model: what lands in the directory, versioning, and refusals that change nothing."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from app.model.modeldir import library_versions, sha256_of
from app.model.register import RegisterError, register
from app.model.scorer import load_scorer
from app.model.simulator import FEATURES, LABELS, training_data


@pytest.fixture(scope="module")
def logistic() -> LogisticRegression:
    X, y = training_data(2000, 7)
    return LogisticRegression(max_iter=500).fit(X, y)


def _dump(model: object, path: Path, *, plain_pickle: bool = False) -> Path:
    if plain_pickle:
        path.write_bytes(pickle.dumps(model))
    else:
        joblib.dump(model, path)
    return path


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_register_writes_model_and_manifest(tmp_path: Path, logistic: LogisticRegression) -> None:
    source = _dump(logistic, tmp_path / "mine.joblib")
    target = tmp_path / "model"
    manifest = register(source, target, "line-fit", FEATURES, "my model", {"team": "edge"}, LABELS)
    on_disk = json.loads((target / "model.json").read_text())
    assert on_disk["name"] == "line-fit" and on_disk["version"] == 1
    assert on_disk["features"] == FEATURES and on_disk["labels"] == LABELS
    assert on_disk["tags"] == {"team": "edge"} and on_disk["description"] == "my model"
    assert on_disk["sha256"] == sha256_of(target / "mine.joblib") == sha256_of(source)  # registered under its own name
    assert on_disk["file"] == "mine.joblib" and on_disk["files"] == {"mine.joblib": sha256_of(source)}
    assert on_disk["libraries"] == library_versions()
    assert on_disk["created"].endswith("Z")
    assert manifest.version == 1
    assert sorted(p.name for p in target.iterdir()) == ["mine.joblib", "model.json"]
    scorer = load_scorer(target)
    expected = logistic.predict(np.array([[30.0, 2.0, 21.0, 25.0]]))[0]
    assert scorer.score([[30.0, 2.0, 21.0, 25.0]])[0]["label"] == LABELS[expected]


def test_versions_bump_for_new_bytes_and_stay_for_the_same(tmp_path: Path, logistic: LogisticRegression) -> None:
    target = tmp_path / "model"
    first = _dump(logistic, tmp_path / "a.pkl", plain_pickle=True)  # plain pickles load too
    assert register(first, target, "m", FEATURES).version == 1
    assert register(first, target, "m", FEATURES).version == 1
    other = _dump(LogisticRegression(C=0.1, max_iter=500).fit(*training_data(500, 3)), tmp_path / "b.pkl")
    assert register(other, target, "m", FEATURES).version == 2
    assert register(first, target, "another-name", FEATURES).version == 1


@pytest.mark.parametrize(
    ("make", "kwargs", "words"),
    [
        (lambda p, m: p.write_bytes(b"not a pickle"), {}, "cannot be loaded with joblib/pickle"),
        (lambda p, m: joblib.dump({"weights": [1, 2]}, p), {}, "holds a dict, which has no predict()"),
        (lambda p, m: joblib.dump(m, p), {"features": FEATURES[:3]}, "takes 4 features but 3 were declared"),
        (lambda p, m: joblib.dump(m, p), {"labels": ["a", "b", "c"]}, "3 labels given for 2 classes"),
        (lambda p, m: joblib.dump(m, p), {"name": "bad name!"}, "must be letters, digits"),
        (lambda p, m: joblib.dump(m, p), {"features": []}, "declare the features"),
    ],
)
def test_refusals_leave_the_directory_untouched(tmp_path: Path, logistic: LogisticRegression, make, kwargs, words) -> None:
    target = tmp_path / "model"
    register(_dump(logistic, tmp_path / "good.pkl"), target, "m", FEATURES)
    before = _snapshot(target)
    source = tmp_path / "candidate.pkl"
    make(source, logistic)
    args = {"name": "m", "features": FEATURES} | kwargs
    with pytest.raises(RegisterError) as info:
        register(source, target, **args)
    assert words in str(info.value)
    assert _snapshot(target) == before


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RegisterError, match="is not a file"):
        register(tmp_path / "nothing.pkl", tmp_path / "model", "m", FEATURES)
