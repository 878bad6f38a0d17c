"""The default scoring script, in Azure ML's init()/run() form.

init() loads the model once from $AZUREML_MODEL_DIR (set by the module, as Azure ML sets it): the pickle
(model.pkl), or for a model registered with --onnx its model.onnx on ONNX Runtime, which behaves like the
estimator (app/model/onnx_engine.py), so run() is the same for both.
run(input_data) takes a 2-D numpy array of feature rows and returns one result per row from one
vectorized call: {"label": ..., "probability": ...} for classifiers with predict_proba,
{"label": ...} for other classifiers, {"value": ...} for regressors.

INPUT_FORMAT = "ndarray" tells the module to call run() with a numpy batch; a script without it
is treated as an Azure ML script taking a JSON string {"data": [[...], ...]}.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, cast

import joblib
import numpy as np

from app.model import onnx_engine
from app.model.modeldir import ENGINE_ONNX, engine_in_use, read_manifest

INPUT_FORMAT = "ndarray"

model: Any = None  # a fitted estimator, once init() ran
labels: np.ndarray | None = None
label_list: list[Any] = []  # the same labels as a list, for the small-batch path
# Set by the module (THRESHOLD / the twin's `threshold`) through set_threshold(), between batches.
threshold: float | None = None


def init() -> None:
    global model, labels
    model_dir = Path(os.environ["AZUREML_MODEL_DIR"])
    manifest = read_manifest(model_dir)
    engine, _ = engine_in_use(manifest)  # the module's load_scorer logged the fallback warning, if any
    if engine == ENGINE_ONNX:
        assert manifest.onnx is not None
        model = onnx_engine.load(model_dir / manifest.onnx_file, manifest.onnx.get("classes"))
    else:
        model = joblib.load(model_dir / manifest.file)
    classes = getattr(model, "classes_", None)
    names = manifest.labels
    if classes is not None:
        # Manifest labels name the model's classes in order; without them the classes speak.
        chosen = names if names and len(names) == len(classes) else list(classes)
        labels = np.array([_plain(c) for c in chosen], dtype=object)
        label_list[:] = labels.tolist()


def set_threshold(value: float | None) -> None:
    """Label a row with the positive (last) class when its probability is at least `value`.

    Only for binary classifiers with predict_proba; None goes back to the most probable class.
    """
    global threshold
    if value is not None and (labels is None or len(labels) != 2 or not hasattr(model, "predict_proba")):
        raise ValueError("a decision threshold needs a binary classifier with predict_proba")
    threshold = value


def _plain(value):
    """numpy scalars -> Python scalars, so results encode as JSON."""
    return value.item() if isinstance(value, np.generic) else value


# Up to this many rows, labels and probabilities are picked in plain Python from one tolist(): at the rates sensors
# send, each message is a batch of one and every numpy call runs with cold caches (~0.1 ms saved per message at
# 50 msg/s through the local edge; see README "Benchmarks"). Larger batches stay vectorized. Same results either way.
SMALL_BATCH_ROWS = 8


def _rounded(p: float) -> float:
    """np.round(p, 4) exactly (numpy scales, rounds half to even, scales back), without numpy."""
    scaled = p * 10000.0
    return round(scaled) / 10000.0 if math.isfinite(scaled) else p


def _small_batch(proba: np.ndarray) -> list[dict]:
    results = []
    rows = cast("list[list[float]]", proba.tolist())  # numpy types tolist() loosely
    for row in rows:
        # The first of equal maxima, as argmax; with a threshold, the positive (last) class from it on.
        best = row.index(max(row)) if threshold is None else int(row[1] >= threshold)
        results.append({"label": label_list[best], "probability": _rounded(row[best])})
    return results


def run(input_data: np.ndarray) -> list[dict]:
    if labels is not None and hasattr(model, "predict_proba"):
        proba = model.predict_proba(input_data)
        if len(proba) <= SMALL_BATCH_ROWS:
            return _small_batch(proba)
        # With a threshold, the positive (last) class wins from that probability on; else the likeliest.
        best = proba.argmax(axis=1) if threshold is None else (proba[:, 1] >= threshold).astype(np.intp)
        # Four decimals: enough for a decision, and short on the wire (IoT Hub bills by size).
        probability = np.round(proba[np.arange(len(best)), best], 4)
        return [{"label": label, "probability": p} for label, p in zip(labels[best].tolist(), probability.tolist(), strict=True)]
    predicted = model.predict(input_data)
    if labels is not None:
        index = np.searchsorted(np.asarray(model.classes_), predicted)
        return [{"label": label} for label in labels[index].tolist()]
    return [{"value": v} for v in np.asarray(predicted, dtype=float).tolist()]
