"""The model directory as Azure ML lays it out: registered names and folders kept, every file hashed and
verified, a directory without our manifest usable (unverified), and the refusals."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from app.model import modeldir
from app.model.modeldir import (
    MANIFEST_FILE,
    ModelDirError,
    directory_digest,
    name_from_layout,
    read_manifest,
    sha256_of,
    verify_model_dir,
)
from app.model.register import RegisterError, register
from app.model.simulator import FEATURES, LABELS, training_data

pytestmark = pytest.mark.timeout(60)

ROWS = [[30.0, 2.0, 21.0, 25.0], [60.0, 9.5, 21.0, 25.0]]

# An Azure ML score.py as Azure ML's own samples write it: the model by its registered sub-folder and name.
AZUREML_SCRIPT = """
import json, os
import joblib

def init():
    global model, offset
    base = os.getenv("AZUREML_MODEL_DIR")
    model = joblib.load(os.path.join(base, "model/sklearn_regression_model.pkl"))
    with open(os.path.join(base, "model/settings/offset.json")) as f:
        offset = json.load(f)["offset"]

def run(raw_data):
    data = json.loads(raw_data)["data"]
    return [float(v) + offset for v in model.predict(data)]
"""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def regression() -> LinearRegression:
    X, _ = training_data(300, 5)
    return LinearRegression().fit(X, X[:, 0] * 2.0)


@pytest.fixture(scope="module")
def classifier() -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(*training_data(1000, 3))


@pytest.fixture
def azureml_model(tmp_path: Path, regression: LinearRegression) -> Path:
    """What AZUREML_MODEL_DIR holds for a model registered from a folder `model` (and a notes file)."""
    root = tmp_path / "downloaded"
    (root / "model" / "settings").mkdir(parents=True)
    joblib.dump(regression, root / "model" / "sklearn_regression_model.pkl")
    (root / "model" / "settings" / "offset.json").write_text('{"offset": 0.5}')
    (root / "NOTES.md").write_text("trained on the sample data\n")
    return root


def _expected_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_directory_digest_is_sha256_over_sorted_path_nul_sha_lines() -> None:
    a, b = _sha(b"a"), _sha(b"b")
    expected = hashlib.sha256(f"m/x.pkl\0{b}\nz.txt\0{a}\n".encode()).hexdigest()
    assert directory_digest({"z.txt": a, "m/x.pkl": b}) == expected
    assert directory_digest({"m/x.pkl": b, "z.txt": a}) == expected  # order of the mapping does not matter


def test_a_directory_keeps_names_and_layout_and_lists_every_file(tmp_path: Path, azureml_model: Path) -> None:
    target = tmp_path / "model"
    manifest = register(azureml_model, target, "diabetes", [], "ridge", {"area": "diabetes"}, require_features=False)

    expected = _expected_files(azureml_model)
    assert sorted(expected) == ["NOTES.md", "model/settings/offset.json", "model/sklearn_regression_model.pkl"]
    assert _tree(target) == _tree(azureml_model) | {MANIFEST_FILE: (target / MANIFEST_FILE).read_bytes()}
    on_disk = json.loads((target / MANIFEST_FILE).read_text())
    assert on_disk["files"] == expected == manifest.files
    assert on_disk["file"] == "model/sklearn_regression_model.pkl"  # the single pickle, unambiguous
    assert on_disk["sha256"] == expected["model/sklearn_regression_model.pkl"]
    assert on_disk["features"] == [] and on_disk["version"] == 1 and on_disk["name"] == "diabetes"
    assert "verified" not in on_disk  # a check made here, never claimed by the file

    verified = verify_model_dir(target)
    assert verified.verified is True
    assert verified.files == expected and verified.file == "model/sklearn_regression_model.pkl"
    assert read_manifest(target).verified is False  # reading is not verifying


def test_an_azureml_script_finds_its_files_where_azure_ml_puts_them(
    tmp_path: Path, azureml_model: Path, regression: LinearRegression, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.model.scorer import load_scorer

    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))  # load_scorer points it at the model directory
    target = tmp_path / "model"
    register(azureml_model, target, "diabetes", FEATURES)
    script = tmp_path / "score.py"
    script.write_text(AZUREML_SCRIPT)
    scorer = load_scorer(target, script)
    assert scorer.score(ROWS) == pytest.approx([v + 0.5 for v in regression.predict(np.array(ROWS))])


def test_one_file_keeps_its_name(tmp_path: Path, classifier: LogisticRegression) -> None:
    source = tmp_path / "mine.joblib"
    joblib.dump(classifier, source)
    target = tmp_path / "model"
    manifest = register(source, target, "line-fit", FEATURES, labels=LABELS)
    assert sorted(p.name for p in target.iterdir()) == ["mine.joblib", MANIFEST_FILE]
    sha = sha256_of(source)
    assert (manifest.file, manifest.sha256, manifest.files) == ("mine.joblib", sha, {"mine.joblib": sha})
    assert verify_model_dir(target).files == {"mine.joblib": sha}


def test_main_file_by_choice_or_none_when_ambiguous(tmp_path: Path, classifier: LogisticRegression) -> None:
    source = tmp_path / "two"
    (source / "sub").mkdir(parents=True)
    joblib.dump(classifier, source / "a.pkl")
    joblib.dump(classifier, source / "sub" / "b.joblib")
    files = _expected_files(source)

    chosen = register(source, tmp_path / "m1", "two", FEATURES, file="sub/b.joblib")
    assert (chosen.file, chosen.sha256) == ("sub/b.joblib", files["sub/b.joblib"])

    none = register(source, tmp_path / "m2", "two", [], require_features=False)
    assert none.file == "" and none.sha256 == directory_digest(files)
    assert verify_model_dir(tmp_path / "m2").sha256 == directory_digest(files)

    with pytest.raises(RegisterError) as info:
        register(source, tmp_path / "m3", "two", FEATURES)
    assert "holds several: a.pkl, sub/b.joblib; name it with --file" in str(info.value)
    with pytest.raises(RegisterError, match=r"--file c\.pkl is not one of the files of .*: a\.pkl, sub/b\.joblib"):
        register(source, tmp_path / "m3", "two", FEATURES, file="c.pkl")
    with pytest.raises(RegisterError, match=r"--file '\.\./a\.pkl' has an empty, '\.' or '\.\.' part"):
        register(source, tmp_path / "m3", "two", FEATURES, file="../a.pkl")
    assert not (tmp_path / "m3").exists()


def test_features_may_be_empty_only_when_the_caller_says_so(tmp_path: Path, azureml_model: Path) -> None:
    with pytest.raises(RegisterError, match="declare the features"):
        register(azureml_model, tmp_path / "model", "m", [])
    assert not (tmp_path / "model").exists()
    manifest = register(azureml_model, tmp_path / "model", "m", [], require_features=False)
    assert manifest.features == [] and read_manifest(tmp_path / "model").features == []


def test_same_files_keep_the_version_changes_bump_it_and_old_files_go(tmp_path: Path, azureml_model: Path) -> None:
    target = tmp_path / "model"
    assert register(azureml_model, target, "m", FEATURES).version == 1
    assert register(azureml_model, target, "m", FEATURES).version == 1
    (azureml_model / "NOTES.md").write_text("changed\n")  # not the pickle: still a change of the model
    assert register(azureml_model, target, "m", FEATURES).version == 2
    (azureml_model / "NOTES.md").unlink()
    shutil.rmtree(azureml_model / "model" / "settings")
    manifest = register(azureml_model, target, "m", FEATURES)
    assert manifest.version == 3
    # The previous registration's files that are no longer part of the model are gone, empty folders too.
    assert sorted(_tree(target)) == [MANIFEST_FILE, "model/sklearn_regression_model.pkl"]
    assert not (target / "model" / "settings").exists()


def test_registering_over_an_old_style_model_removes_its_model_pkl(tmp_path: Path, model_copy: Path) -> None:
    raw = json.loads((model_copy / MANIFEST_FILE).read_text())
    raw = {k: v for k, v in raw.items() if k not in ("files", "engine", "onnx")}  # as written before `files`
    (model_copy / MANIFEST_FILE).write_text(json.dumps(raw))
    (model_copy / "model.onnx").unlink()
    source = tmp_path / "renamed.pkl"
    shutil.copy(model_copy / "model.pkl", source)
    before = raw["version"]
    manifest = register(source, model_copy, "temperature-anomaly", FEATURES, labels=LABELS)
    assert manifest.version == before + 1  # same bytes under another name: Azure ML scripts see a different model
    assert sorted(p.name for p in model_copy.iterdir()) == [MANIFEST_FILE, "renamed.pkl"]


def test_a_directory_is_adopted_in_place(tmp_path: Path, azureml_model: Path) -> None:
    before = _tree(azureml_model)
    manifest = register(azureml_model, azureml_model, "adopted", [], require_features=False)
    assert _tree(azureml_model) == before | {MANIFEST_FILE: (azureml_model / MANIFEST_FILE).read_bytes()}
    assert manifest.files == {k: _sha(v) for k, v in before.items()}
    assert verify_model_dir(azureml_model).verified is True
    assert register(azureml_model, azureml_model, "adopted", [], require_features=False).version == 1


def test_symlinks_inside_are_copied_as_files(tmp_path: Path, azureml_model: Path) -> None:
    (azureml_model / "latest.pkl").symlink_to("model/sklearn_regression_model.pkl")
    target = tmp_path / "model"
    manifest = register(azureml_model, target, "m", [], require_features=False, file="latest.pkl")
    assert not (target / "latest.pkl").is_symlink()
    assert (target / "latest.pkl").read_bytes() == (azureml_model / "model" / "sklearn_regression_model.pkl").read_bytes()
    assert manifest.files["latest.pkl"] == manifest.files["model/sklearn_regression_model.pkl"] == manifest.sha256


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root, out: (root / "leak").symlink_to(out), "leak: a symlink to {out}, outside {root}"),
        (lambda root, out: (root / "model" / "up").symlink_to("../../outside.txt"), "model/up: a symlink to {out}, outside"),
        (lambda root, out: os.mkfifo(root / "model" / "pipe"), "model/pipe: a special file (a fifo)"),
        (lambda root, out: (root / "gone").symlink_to("nothing-here"), "gone: a dangling symlink"),
        (lambda root, out: (root / "model" / "loop").symlink_to(".."), "model/loop: a symlink loop"),
        (lambda root, out: (root / "model.json").write_text("{}"), "model.json is the name of this module's manifest"),
        (lambda root, out: (root / "a\\b").write_text("x"), "the name has a backslash"),
    ],
)
def test_refused_sources_leave_the_model_directory_untouched(tmp_path: Path, azureml_model: Path, make, words: str) -> None:
    target = tmp_path / "model"
    register(azureml_model, target, "m", FEATURES)
    before = _tree(target)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    make(azureml_model, outside)
    with pytest.raises(RegisterError) as info:
        register(azureml_model, target, "m", FEATURES)
    assert words.format(out=outside, root=azureml_model) in str(info.value)
    assert _tree(target) == before
    assert not [p for p in target.iterdir() if p.name.startswith(".register-")]


def test_overlapping_source_and_model_directory_are_refused(tmp_path: Path, azureml_model: Path) -> None:
    with pytest.raises(RegisterError, match="overlap"):
        register(azureml_model, azureml_model / "model", "m", FEATURES)
    with pytest.raises(RegisterError, match="overlap"):
        register(azureml_model / "model", azureml_model, "m", FEATURES)


def test_bounds_on_files_and_bytes(tmp_path: Path, azureml_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modeldir, "MAX_FILES", 2)
    with pytest.raises(RegisterError, match=r"more than 2 files \(MAX_FILES\)"):
        register(azureml_model, tmp_path / "model", "m", FEATURES)
    with pytest.raises(ModelDirError, match=r"more than 2 files \(MAX_FILES\)"):
        verify_model_dir(azureml_model, require_manifest=False)
    monkeypatch.setattr(modeldir, "MAX_FILES", 10_000)
    monkeypatch.setattr(modeldir, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(RegisterError, match=r"more than the 100 a model may have \(MAX_TOTAL_BYTES\)"):
        register(azureml_model, tmp_path / "model", "m", FEATURES)
    assert not (tmp_path / "model").exists()


def test_every_listed_file_is_verified_and_named(tmp_path: Path, azureml_model: Path) -> None:
    target = tmp_path / "model"
    manifest = register(azureml_model, target, "m", FEATURES)
    (target / "model" / "settings" / "offset.json").write_text('{"offset": 9}')
    (target / "NOTES.md").unlink()
    with pytest.raises(ModelDirError) as info:
        verify_model_dir(target)
    text = str(info.value)
    was = manifest.files["model/settings/offset.json"]
    now = sha256_of(target / "model" / "settings" / "offset.json")
    assert f"model/settings/offset.json has sha256 {now[:12]}… but the manifest says {was[:12]}…" in text
    assert "NOTES.md is missing (listed in model.json)" in text
    assert "register the model again (`python -m app register" in text


def test_unlisted_files_are_a_warning_naming_them(tmp_path: Path, azureml_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "model"
    register(azureml_model, target, "m", FEATURES)
    (target / "model" / "extra.txt").write_text("x")
    (target / "stray.bin").write_bytes(b"y")
    (target / ".register-leftover").mkdir()  # a staging folder a crash left: not the model's
    with caplog.at_level(logging.WARNING, logger="app.model.modeldir"):
        manifest = verify_model_dir(target)
    assert manifest.verified is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"model m v1: 2 file(s) in {target} are not in its model.json and were not checked: model/extra.txt, stray.bin"
    ]


def test_each_file_is_read_once_and_big_files_stream(
    tmp_path: Path, azureml_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = os.urandom(3 * (1 << 20) + 17)
    (azureml_model / "model" / "weights.bin").write_bytes(big)
    target = tmp_path / "model"
    manifest = register(azureml_model, target, "m", FEATURES)
    assert manifest.files["model/weights.bin"] == _sha(big)
    opened: list[str] = []

    def counting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "b" in mode:
            opened.append(Path(file).relative_to(target).as_posix())
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(modeldir, "open", counting_open, raising=False)
    verify_model_dir(target)
    assert sorted(opened) == sorted(manifest.files)  # each listed file once, nothing else


def test_an_old_manifest_without_files_still_loads_and_verifies(model_copy: Path) -> None:
    raw = json.loads((model_copy / MANIFEST_FILE).read_text())
    raw = {k: v for k, v in raw.items() if k not in ("files", "engine", "onnx")}  # as written before `files`
    (model_copy / MANIFEST_FILE).write_text(json.dumps(raw))
    (model_copy / "model.onnx").unlink()
    manifest = verify_model_dir(model_copy)
    assert manifest.files == {"model.pkl": raw["sha256"]} and manifest.verified
    with open(model_copy / "model.pkl", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelDirError, match=r"model\.pkl has sha256 .* but the manifest says .*register"):
        verify_model_dir(model_copy)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"files": {"../etc/passwd": "0" * 64}}, "'files' must be an object of relative path"),
        ({"files": {"/etc/passwd": "0" * 64}}, "'files' must be an object of relative path"),
        ({"files": {"model.json": "0" * 64}}, "'files' must be an object of relative path"),
        ({"files": {"model.pkl": "not hex"}}, "'files' must be an object of relative path"),
        ({"files": {}}, "'files' must be an object of relative path"),
        ({"file": "../model.pkl"}, "'file' must be a relative path in the directory without '..'"),
        ({"features": [""]}, "'features' must be a list of dotted paths"),
        ({"files": {"other.pkl": "0" * 64}}, "'file' 'model.pkl' is not one of 'files'"),
        ({"files": {"model.pkl": "0" * 64}}, "'sha256' is not the sha256 of 'file' in 'files'"),
        ({"file": "", "files": {"model.pkl": "0" * 64}}, "'sha256' is not the directory digest of 'files'"),
    ],
)
def test_manifest_fields_are_type_checked(model_copy: Path, change: dict[str, object], words: str) -> None:
    path = model_copy / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(ModelDirError) as info:
        read_manifest(model_copy)
    assert words in str(info.value) and "re-register the model to rewrite it" in str(info.value)


def test_an_empty_features_list_is_a_valid_manifest(model_copy: Path) -> None:
    path = model_copy / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | {"features": []}))
    assert read_manifest(model_copy).features == []


def test_without_a_manifest_the_default_is_still_an_error(azureml_model: Path) -> None:
    with pytest.raises(ModelDirError, match=r"model\.json is missing\. Register the model first"):
        verify_model_dir(azureml_model)


def test_a_downloaded_model_in_the_azureml_models_layout(
    tmp_path: Path, azureml_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A deployment's AZUREML_MODEL_DIR, and the v1 SDK's cache: azureml-models/<name>/<version>/
    version_dir = tmp_path / "azureml-models" / "diabetes-model" / "3"
    shutil.copytree(azureml_model, version_dir)
    with caplog.at_level(logging.WARNING, logger="app.model.modeldir"):
        manifest = verify_model_dir(version_dir, require_manifest=False)
    files = _expected_files(azureml_model)
    assert (manifest.name, manifest.version, manifest.verified) == ("diabetes-model", 3, False)
    assert manifest.files == files
    assert manifest.sha256 == directory_digest(files)  # several files: the directory digest
    assert manifest.file == "model/sklearn_regression_model.pkl" and manifest.features == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert f"{version_dir} has no model.json" in warnings[0] and "no sha256 check is possible" in warnings[0]
    assert f"`python -m app register {version_dir} --model-dir {version_dir} --name NAME`" in warnings[0]


def test_a_downloaded_single_file_model_in_the_v2_download_layout(tmp_path: Path, regression: LinearRegression) -> None:
    # az ml model download --name sk-reg --download-path dl  ->  dl/sk-reg/<the registered file>
    folder = tmp_path / "dl" / "sk-reg"
    folder.mkdir(parents=True)
    joblib.dump(regression, folder / "sklearn_regression_model.pkl")
    manifest = verify_model_dir(folder, require_manifest=False)
    sha = sha256_of(folder / "sklearn_regression_model.pkl")
    assert (manifest.name, manifest.version, manifest.sha256) == ("sk-reg", 0, sha)  # one file: its own sha256
    assert manifest.files == {"sklearn_regression_model.pkl": sha}
    assert manifest.file == "sklearn_regression_model.pkl"


def test_a_broken_manifest_is_not_ignored_when_one_is_not_required(model_copy: Path) -> None:
    (model_copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelDirError, match="not readable JSON"):
        verify_model_dir(model_copy, require_manifest=False)


def test_a_directory_without_manifest_follows_the_same_refusals(tmp_path: Path, azureml_model: Path) -> None:
    (azureml_model / "leak").symlink_to(tmp_path)
    with pytest.raises(ModelDirError, match=r"leak: a symlink to .*, outside"):
        verify_model_dir(azureml_model, require_manifest=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelDirError, match=r"holds no files and no model\.json"):
        verify_model_dir(empty, require_manifest=False)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(("azureml-models", "my-model", "12"), ("my-model", 12)), (("dl", "my-model"), ("my-model", 0)), (("a b",), ("model", 0))],
)
def test_name_and_version_from_the_layout(tmp_path: Path, parts: tuple[str, ...], expected: tuple[str, int]) -> None:
    folder = tmp_path.joinpath(*parts)
    folder.mkdir(parents=True)
    assert name_from_layout(folder) == expected


def test_register_command_takes_a_directory_and_a_main_file(
    tmp_path: Path, azureml_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.commands as commands

    monkeypatch.setattr(commands, "configure_logging", lambda level: None)
    monkeypatch.delenv("SCORE_SCRIPT", raising=False)
    monkeypatch.delenv("AZUREML_ENTRY_SCRIPT", raising=False)  # set by any Azure ML script loaded earlier in this process
    target = tmp_path / "model"
    base = ["register", str(azureml_model), "--name", "diabetes", "--model-dir", str(target)]

    assert commands.main(base) == 2  # the built-in score.py needs features
    assert "declare the features" in capsys.readouterr().err
    features = ["--features", ",".join(FEATURES), "--file", "model/sklearn_regression_model.pkl"]
    assert commands.main([*base, *features]) == 0
    sha = sha256_of(azureml_model / "model" / "sklearn_regression_model.pkl")
    assert capsys.readouterr().out == f"registered diabetes v1 ({sha[:12]}) in {target}: 3 files\n"

    (tmp_path / "score.py").write_text(AZUREML_SCRIPT)
    monkeypatch.setenv("SCORE_SCRIPT", str(tmp_path / "score.py"))  # an Azure ML script takes raw JSON
    assert commands.main(base) == 0
    assert json.loads((target / MANIFEST_FILE).read_text())["features"] == []
