"""A score.py of your own on ONNX Runtime, in the same init()/run() contract as any other script.

Point the module at it with SCORE_SCRIPT=examples/onnx_score.py and a model directory holding model.onnx
(`python -m app register model.pkl --onnx --check-rows rows.csv ...`, or your own graph registered as a file
of the directory). INPUT_FORMAT = "ndarray": run() gets each micro-batch as one 2-D float64 array, so one
session.run() scores the whole batch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

INPUT_FORMAT = "ndarray"

session: Any = None


def init() -> None:
    global session
    options = ort.SessionOptions()
    # One thread: an edge device shares its cores with the transport and other modules; see ONNX_THREADS.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.onnx")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(input_data: np.ndarray) -> list[dict[str, Any]]:
    # skl2onnx graphs take float32 rows named X and give class probabilities as "probabilities" (zipmap off).
    (proba,) = session.run(["probabilities"], {"X": input_data.astype(np.float32)})
    return [{"anomaly": bool(p[1] >= 0.5), "probability": round(float(p[1]), 4)} for p in proba]
