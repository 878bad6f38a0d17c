"""Registering a model into the model directory: the local Model.register(model_path, model_name,
tags, description).

The source is one model file or a directory of a registered Azure ML model's files (several files,
sub-folders). The files keep their names and relative layout, as Azure ML lays a model out under
AZUREML_MODEL_DIR, so an Azure ML score.py finds them where it looks: a file `x.pkl` stays `x.pkl`;
a directory's contents become the model directory's contents. Give the folder that holds what
AZUREML_MODEL_DIR would hold: for a model registered from a folder `model`, the folder containing
`model/`; for `az ml model download --download-path P`, `P/<name>`.

Every file is copied into a staging folder in the model directory and hashed as it is copied (read
once); the main model file (the one the built-in score.py loads) is loaded from that copy and tried on
one row of the declared width before anything in the directory changes. Then the files and model.json
are moved into place, and the previous registration's files that are no longer part of the model are
removed. Anything wrong -> RegisterError with the reason, and the directory is untouched.

Registering a directory into itself (`register DIR --model-dir DIR`) adopts it as it is: nothing is
copied, model.json is written beside the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from app.model import modeldir, onnx_engine
from app.model.convert import ONNX_FILE, ConversionRefused, OnnxRequest, convert_checked
from app.model.modeldir import (
    ENGINE_ONNX,
    ENGINE_SKLEARN,
    MANIFEST_FILE,
    STAGING_PREFIX,
    Manifest,
    ModelDirError,
    directory_digest,
    library_versions,
    main_file_of,
    names_text,
    path_problem,
    read_manifest,
    reserved_name_problem,
    scan_dir,
    sha256_of,
)

CHUNK = 1 << 20  # bytes read at a time while copying and hashing


class RegisterError(RuntimeError):
    pass


def _check_model(model: Any, features: list[str], labels: list[Any] | None) -> list[Any] | None:
    if not callable(getattr(model, "predict", None)):
        raise RegisterError(f"the file holds a {type(model).__name__}, which has no predict(); save the fitted estimator")
    width = getattr(model, "n_features_in_", None)
    if width is not None and width != len(features):
        raise RegisterError(f"the model takes {width} features but {len(features)} were declared ({', '.join(features)})")
    try:
        model.predict(np.zeros((1, len(features))))
    except Exception as exc:
        raise RegisterError(
            f"a trial prediction on one row of {len(features)} features failed: {type(exc).__name__}: {exc}"
        ) from None
    classes = getattr(model, "classes_", None)
    if labels and classes is not None and len(labels) != len(classes):
        raise RegisterError(f"{len(labels)} labels given for {len(classes)} classes ({list(classes)})")
    return labels or None


def register(
    source: str | Path,
    model_dir: str | Path,
    name: str,
    features: Sequence[str],
    description: str = "",
    tags: dict[str, str] | None = None,
    labels: list[Any] | None = None,
    *,
    file: str | None = None,
    require_features: bool = True,
    onnx: OnnxRequest | None = None,
) -> Manifest:
    """Verify `source` (a model file or a directory of a model's files) and install it as the model of
    `model_dir`; returns the new manifest.

    features: the dotted paths the built-in score.py turns a reading into a row with. The caller decides
        whether the model needs them: with require_features=True (the built-in score.py will run it) they
        must be given; an Azure ML score.py takes the raw JSON, so its model may have none. When given,
        the main file is unpickled and tried on one row; without them nothing is unpickled here.
    file: for a directory, the main model file (relative posix path) the built-in score.py loads;
        default: its only *.pkl / *.joblib, else none ("" in the manifest). A file source is its own main file.
    onnx: also convert the main file to ONNX (model.onnx) and run that (engine "onnx"), the pickle kept as
        the reference unless onnx.only; refused unless the graph predicts what the pickle does on onnx.rows.
    Re-registering the same files under the same name keeps the version; any change bumps it.
    """
    source, model_dir = Path(source), Path(model_dir)
    if not name or not all(c.isalnum() or c in "-_." for c in name) or len(name) > 256:
        raise RegisterError(f"model name {name!r} must be letters, digits, '-', '_' or '.' (1 to 256 of them)")
    features = list(features)
    if (require_features and not features) or not all(isinstance(f, str) and f for f in features):
        raise RegisterError(
            "declare the features as dotted paths into a reading, e.g. machine.temperature,machine.pressure "
            "(the built-in score.py needs them; only a model for your own Azure ML score.py, which takes raw JSON, "
            "may go without)"
        )
    in_place, sources = _sources(source, model_dir)
    main = _main_file(source, sources, file)
    if onnx is not None and (not features or not main or ONNX_FILE in sources or (in_place and onnx.only)):
        raise RegisterError(
            f"--onnx converts the main model file for the built-in score.py: it needs --features and one main "
            f"pickle, a source without its own {ONNX_FILE}, and (with --onnx-only) a source other than the model directory"
        )
    if features and not main:
        candidates = [rel for rel in sources if rel.lower().endswith(modeldir.PICKLE_SUFFIXES)]
        raise RegisterError(
            f"the built-in score.py loads one model file, and {source} holds "
            + (f"several: {names_text(candidates)}; name it with --file" if candidates else "no *.pkl or *.joblib")
            + " (a model for your own Azure ML score.py, which takes raw JSON, needs no features and no main file)"
        )

    previous: Manifest | None = None
    if (model_dir / MANIFEST_FILE).is_file():
        try:
            previous = read_manifest(model_dir)
        except ModelDirError:
            previous = None
    created_dir = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    done = False
    try:
        if in_place:
            placed = sources
            files = {rel: sha256_of(path) for rel, path in sources.items()}
        else:
            placed, files = _stage(source, sources, staging / "files")
        onnx_meta: dict[str, Any] | None = None
        if features:
            estimator = _load(placed[main], source)
            labels = _check_model(estimator, features, labels)
            if onnx is not None:
                onnx_meta = _convert(estimator, onnx, staging / "onnx" / ONNX_FILE, placed, files)
                if onnx.only:
                    del placed[main], files[main]
                    main = ONNX_FILE
        reserved = [f"{rel} {why}" for rel in files if (why := reserved_name_problem(rel))]
        if reserved:
            raise RegisterError(f"{source}: {names_text(reserved, '; ')}: rename it or leave it out")
        version = 1
        if previous is not None and previous.name == name:
            # Versions count changes of the model; the same files again keep their number.
            version = previous.version if previous.files == files else previous.version + 1
        manifest = Manifest(
            name=name,
            version=version,
            description=description,
            tags=dict(tags or {}),
            features=features,
            labels=labels or None,
            file=main,
            sha256=files[main] if main else directory_digest(files),
            libraries=library_versions(),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            files=files,
            engine=ENGINE_ONNX if onnx_meta else ENGINE_SKLEARN,
            onnx=onnx_meta,
        )
        if onnx_meta:
            manifest.libraries["onnxruntime"] = onnx_engine.version()
        (staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        stale = sorted(set(previous.files) - set(files)) if previous is not None else []
        if not in_place:
            # The files first: a crash before the manifest moves leaves a sha mismatch that loading reports.
            _install(placed, model_dir, set(stale))
        elif onnx_meta:
            _install({ONNX_FILE: placed[ONNX_FILE]}, model_dir, set(stale))
        os.replace(staging / MANIFEST_FILE, model_dir / MANIFEST_FILE)
        _remove_stale(model_dir, stale)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done and created_dir:
            with contextlib.suppress(OSError):
                model_dir.rmdir()  # only when still empty: nothing of a failed registration stays
    return manifest


def _convert(estimator: Any, onnx: OnnxRequest, target: Path, placed: dict[str, Path], files: dict[str, str]) -> dict[str, Any]:
    """Convert and check the estimator, stage model.onnx beside the other files; the manifest's `onnx`."""
    try:
        data, check, classes = convert_checked(estimator, onnx.rows, onnx.sample, onnx.tolerance)
    except ConversionRefused as exc:
        raise RegisterError(str(exc)) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    placed[ONNX_FILE] = target
    files[ONNX_FILE] = hashlib.sha256(data).hexdigest()
    return {
        "file": ONNX_FILE,
        "classes": classes,
        "converter": f"skl2onnx {metadata.version('skl2onnx')}",
        "check": check.as_dict(),
    }


def _sources(source: Path, model_dir: Path) -> tuple[bool, dict[str, Path]]:
    """(in place, relative posix path -> file to read) for a file or a directory source; refusals raised."""
    try:
        info = os.stat(source)
    except OSError:
        raise RegisterError(f"{source} is not a file or a directory") from None
    if stat.S_ISREG(info.st_mode):
        why = path_problem(source.name)
        if why:
            raise RegisterError(f"{source}: the file name {why}")
        if info.st_size > modeldir.MAX_TOTAL_BYTES:
            raise RegisterError(
                f"{source} has {info.st_size:,} bytes, more than the {modeldir.MAX_TOTAL_BYTES:,} a model may have "
                "(MAX_TOTAL_BYTES)"
            )
        return False, {source.name: source}
    if not stat.S_ISDIR(info.st_mode):
        raise RegisterError(f"{source} is a special file, not a model file or a directory of a model's files")
    real_source, real_target = source.resolve(), model_dir.resolve()
    in_place = real_source == real_target
    if not in_place and (real_source in real_target.parents or real_target in real_source.parents):
        raise RegisterError(
            f"{source} and the model directory {model_dir} overlap: register from a folder outside the model "
            "directory, or the model directory itself (`--model-dir` the same folder) to adopt it as it is"
        )
    scan = scan_dir(source, model_dir=in_place)
    problems = scan.problems()
    if problems:
        raise RegisterError(f"{source} cannot be registered: {names_text(problems, '; ')}")
    if not scan.files:
        raise RegisterError(f"{source} holds no files")
    return in_place, scan.files


def _main_file(source: Path, sources: dict[str, Path], file: str | None) -> str:
    if file is not None:
        why = path_problem(file)
        if why:
            raise RegisterError(f"--file {file!r} {why}")
        if file not in sources:
            raise RegisterError(f"--file {file} is not one of the files of {source}: {names_text(sorted(sources))}")
        return file
    if len(sources) == 1 and next(iter(sources.values())) == source:
        return next(iter(sources))  # a file source is the main file, whatever its extension
    return main_file_of(list(sources))


def _stage(source: Path, sources: dict[str, Path], staging: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Copy every file under `staging`, hashing it on the way; (relative path -> copy, relative path -> sha256)."""
    placed: dict[str, Path] = {}
    files: dict[str, str] = {}
    budget = modeldir.MAX_TOTAL_BYTES
    for rel, path in sources.items():
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        files[rel], size = _copy_hashing(path, target, budget, source)
        budget -= size
        placed[rel] = target
    return placed, files


def _copy_hashing(src: Path, dst: Path, budget: int, source: Path) -> tuple[str, int]:
    """Copy src to dst in chunks and return (sha256, bytes): one read of src, whatever its size."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a fifo slipped in since the scan must not block
    with open(fd, "rb") as fin:
        if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
            raise RegisterError(f"{src} is no longer a regular file")
        digest = hashlib.sha256()
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        copied = 0
        with open(dst, "xb") as fout:
            while size := fin.readinto(buffer):
                copied += size
                if copied > budget:
                    raise RegisterError(
                        f"{source} grew past the {modeldir.MAX_TOTAL_BYTES:,} bytes a model may have (MAX_TOTAL_BYTES) "
                        "while it was copied"
                    )
                digest.update(view[:size])
                fout.write(view[:size])
    return digest.hexdigest(), copied


def _load(path: Path, source: Path) -> Any:
    try:
        return joblib.load(path)  # reads joblib files and plain pickles alike
    except Exception as exc:
        where = source if source.is_file() else f"{source}/{path.name}"
        raise RegisterError(
            f"{where} cannot be loaded with joblib/pickle here: {type(exc).__name__}: {exc}.{modeldir.pickle_skew_hint(exc)}"
        ) from None


def _install(placed: dict[str, Path], model_dir: Path, stale: set[str]) -> None:
    """Move the staged files into place; what stands in the way is checked before anything moves."""
    real_root = model_dir.resolve()
    in_the_way: list[str] = []
    remove_first: set[str] = set()
    for rel in placed:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            path = model_dir / folder
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                if folder in stale and not path.is_symlink():
                    remove_first.add(folder)
                else:
                    in_the_way.append(f"{folder} (needed as a folder for {rel})")
                break
        target = model_dir / rel
        if target.is_dir() and not target.is_symlink():
            in_the_way.append(f"{rel} (a folder is there)")
        elif real_root != target.parent.resolve() and real_root not in target.parent.resolve().parents:
            in_the_way.append(f"{rel} (its folder leads out of the model directory)")
    if in_the_way:
        raise RegisterError(
            f"{model_dir} has files or folders where the model's files go: {names_text(in_the_way, '; ')}; "
            "move them away and register again"
        )
    for rel in sorted(remove_first):
        (model_dir / rel).unlink()
    for rel, staged in placed.items():
        target = model_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)


def _remove_stale(model_dir: Path, stale: list[str]) -> None:
    """Remove the previous registration's files that the new one does not have, and folders left empty."""
    real_root = model_dir.resolve()
    for rel in stale:
        path = model_dir / rel
        if path.is_symlink() or not path.is_file() or real_root not in path.resolve().parents:
            continue
        path.unlink()
        parent = path.parent
        while parent != model_dir:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
