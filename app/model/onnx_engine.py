"""The ONNX Runtime engine: a model directory's `model.onnx` run by onnxruntime, shaped like the scikit-learn
estimator it was converted from, so that a script written for the estimator (the built-in score.py) runs it
unchanged: `predict_proba(X)`, `predict(X)`, `classes_`, `n_features_in_`.

Why: a scikit-learn forest pays milliseconds of fixed Python overhead per `predict_proba` call, and at the rates
sensors really send each message is scored alone; ONNX Runtime runs the same trees in microseconds.

Session options (see `session_options`): one intra-op thread by default (ONNX_THREADS): an edge module
shares its device, and a thread pool's spinning workers burn CPU between messages; one inter-op thread,
sequential execution; every graph optimization on. The graph takes float32 rows (skl2onnx's trees compare
float32, as scikit-learn's own trees do); probabilities come back as float64 like scikit-learn's.

onnxruntime is optional at run time (there is no wheel for armv7): `missing_reason()` says why it cannot be
imported, and the model directory checks (app/model/modeldir.py) refuse an ONNX-only model or fall back to
the reference pickle with a warning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

THREADS_ENV = "ONNX_THREADS"
DEFAULT_THREADS = 1  # Settings.onnx_threads' default
PROBABILITIES = "probabilities"  # skl2onnx's classifier output with zipmap off


def missing_reason() -> str | None:
    """Why onnxruntime cannot be used in this process, or None when it can."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime cannot be imported ({exc})"
    return None


def version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def threads_from_env() -> int:
    """ONNX_THREADS (see app/settings/model.py; validated there at start), else 1."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_THREADS


def session_options(threads: int = DEFAULT_THREADS) -> Any:
    """The SessionOptions every session of the module gets."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Worker threads (threads > 1) spin-wait for work by default: CPU burnt between messages at low rates.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(model: str | Path | bytes, threads: int | None = None) -> Any:
    """An InferenceSession on the CPU for a file path or the model's bytes."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    options = session_options(threads_from_env() if threads is None else threads)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """A converted scikit-learn model run by ONNX Runtime, with the estimator's prediction methods.

    Classifiers (a `probabilities` output) get `predict_proba` and `classes_`; regressors only `predict`.
    """

    def __init__(self, session: Any, classes: list[Any] | None = None) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        self.n_features_in_ = session.get_inputs()[0].shape[1]
        self._first_output = outputs[0]
        if PROBABILITIES in outputs:
            if not classes:
                raise ValueError("an ONNX classifier needs its classes (the manifest's onnx.classes)")
            self.classes_ = np.asarray(classes)
            self.predict_proba = self._predict_proba  # only classifiers have it, as with scikit-learn

    def _feed(self, X: Any) -> dict[str, np.ndarray]:
        return {self._input: np.ascontiguousarray(X, dtype=np.float32)}

    def _predict_proba(self, X: Any) -> np.ndarray:
        (proba,) = self._session.run([PROBABILITIES], self._feed(X))
        return np.asarray(proba, dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        if hasattr(self, "classes_"):
            return np.asarray(self.classes_[self._predict_proba(X).argmax(axis=1)])
        (out,) = self._session.run([self._first_output], self._feed(X))
        values = np.asarray(out, dtype=np.float64)
        return values.reshape(len(values), -1)[:, 0] if values.ndim > 1 else values  # a regressor's (n, 1) -> (n,)


def load(path: str | Path, classes: list[Any] | None = None, threads: int | None = None) -> OnnxModel:
    """The ONNX file as an estimator-like model (raises ImportError without onnxruntime)."""
    return OnnxModel(open_session(path, threads), classes)
