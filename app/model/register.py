"""Registering a model into the model directory: the local Model.register(model_path, model_name,
tags, description).

The model file is loaded and tried on one row of the declared width before anything in the
directory changes; then model.pkl and model.json are written beside the old ones and moved into
place. Anything wrong -> RegisterError with the reason, and the directory is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from app.model.modeldir import MANIFEST_FILE, MODEL_FILE, Manifest, ModelDirError, library_versions, read_manifest, sha256_of


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
    features: list[str],
    description: str = "",
    tags: dict[str, str] | None = None,
    labels: list[Any] | None = None,
) -> Manifest:
    """Verify `source` and install it as the model of `model_dir`; returns the new manifest."""
    source, model_dir = Path(source), Path(model_dir)
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise RegisterError(f"model name {name!r} must be letters, digits, '-', '_' or '.'")
    if not features or not all(features):
        raise RegisterError("declare the features as dotted paths into a reading, e.g. machine.temperature,machine.pressure")
    if not source.is_file():
        raise RegisterError(f"{source} is not a file")
    try:
        model = joblib.load(source)  # reads joblib files and plain pickles alike
    except Exception as exc:
        raise RegisterError(f"{source} cannot be loaded with joblib/pickle here: {type(exc).__name__}: {exc}") from None
    labels = _check_model(model, features, labels)

    previous: Manifest | None = None
    if (model_dir / MANIFEST_FILE).is_file():
        try:
            previous = read_manifest(model_dir)
        except ModelDirError:
            previous = None
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".register-", dir=model_dir))
    try:
        staged_model = staging / MODEL_FILE
        shutil.copyfile(source, staged_model)
        sha256 = sha256_of(staged_model)
        version = 1
        if previous is not None and previous.name == name:
            # Versions count changes of the model; the same bytes again keep their number.
            version = previous.version if previous.sha256 == sha256 else previous.version + 1
        manifest = Manifest(
            name=name,
            version=version,
            description=description,
            tags=dict(tags or {}),
            features=list(features),
            labels=labels,
            file=MODEL_FILE,
            sha256=sha256,
            libraries=library_versions(),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        (staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        # The pickle first: a crash between the two moves leaves a sha mismatch that loading reports.
        os.replace(staged_model, model_dir / MODEL_FILE)
        os.replace(staging / MANIFEST_FILE, model_dir / MANIFEST_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
