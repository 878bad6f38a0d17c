"""Converting a fitted scikit-learn model to ONNX (skl2onnx), accepted only if ONNX Runtime predicts what the
model predicts on a sample: the same label for every row, and every probability (or a regressor's value)
within a stated tolerance.

A conversion can go wrong silently: skl2onnx graphs take float32, so a model whose decision depends on
float64 precision (large feature magnitudes, a linear model's tiny coefficients) may answer differently;
an estimator or option skl2onnx does not know fails outright. Either way register refuses, with the figures.

skl2onnx and onnx are development tools (requirements/dev.txt): images carry onnxruntime only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.model import onnx_engine

DEFAULT_TOLERANCE = 1e-5  # absolute, on probabilities; relative (to max(1, |value|)) on a regressor's values
ONNX_FILE = "model.onnx"
# ONNX Runtime 1.21 (Debian trixie's) runs these opsets; newer converters must not target more.
TARGET_OPSET = {"": 15, "ai.onnx.ml": 3}


class ConversionRefused(RuntimeError):
    """The model cannot be converted, or the ONNX graph does not predict what the model predicts."""


@dataclass
class OnnxRequest:
    """What `register --onnx` asks for: convert the main model file, checked on `rows`."""

    rows: np.ndarray
    sample: str  # where the rows come from, for the figures ("training data", a file's name)
    tolerance: float = DEFAULT_TOLERANCE
    only: bool = False  # keep the ONNX graph alone (no reference pickle in the directory)


@dataclass
class Check:
    """How the ONNX graph compared with the model on the sample (what register prints and model.json keeps)."""

    rows: int
    sample: str  # where the rows came from
    label_mismatches: int
    max_difference: float  # largest |probability| (classifier) or relative value (regressor) difference
    tolerance: float
    measured: str = "probability"  # or "value" (a regressor's, relative)

    @property
    def passed(self) -> bool:
        return self.label_mismatches == 0 and self.max_difference <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "rows": self.rows,
            "sample": self.sample,
            "labelMismatches": self.label_mismatches,
            "maxDifference": float(f"{self.max_difference:.3g}"),
            "tolerance": self.tolerance,
        }

    def text(self) -> str:
        return (
            f"{self.rows} rows ({self.sample}): {self.label_mismatches} label mismatches, largest {self.measured} difference "
            f"{self.max_difference:.3g} (tolerance {self.tolerance:g})"
        )


def read_rows(path: str | Path) -> np.ndarray:
    """Feature rows to check a conversion on: a .npy array, or a CSV of numbers (a header line is skipped)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            rows = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            header = any(c.isalpha() and c not in "eE" for c in first.replace("nan", "").replace("inf", ""))
            rows = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise ConversionRefused(f"--check-rows {path}: not a .npy array or a CSV of numbers ({exc})") from None
    return np.asarray(rows, dtype=np.float64)


def to_onnx_bytes(model: Any, n_features: int) -> bytes:
    """The model converted by skl2onnx, float32 input named X; ConversionRefused when skl2onnx cannot."""
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:
        raise ConversionRefused(f"converting needs skl2onnx and onnx (requirements/dev.txt): {exc}") from None
    # zipmap off: probabilities as one float tensor, not a list of dicts (slow, and not what predict_proba gives)
    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    try:
        graph = to_onnx(
            model,
            initial_types=[("X", FloatTensorType([None, n_features]))],
            options=options,
            target_opset=TARGET_OPSET,
        )
    except Exception as exc:  # skl2onnx raises many kinds (RuntimeError, MissingShapeCalculator, NotImplementedError...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConversionRefused(f"skl2onnx cannot convert this {type(model).__name__}: {type(exc).__name__}: {first}") from None
    return bytes(graph.SerializeToString())


def compare(model: Any, onnx_model: onnx_engine.OnnxModel, rows: np.ndarray, sample: str, tolerance: float) -> Check:
    """The ONNX model against the original on `rows` (float64, as the module feeds them)."""
    if hasattr(model, "predict_proba"):
        want = np.asarray(model.predict_proba(rows), dtype=np.float64)
        have = onnx_model.predict_proba(rows)
        want_labels, have_labels = np.asarray(model.predict(rows)), onnx_model.predict(rows)
        mismatches = int((want_labels != have_labels).sum()) + int((want.argmax(axis=1) != have.argmax(axis=1)).sum())
        return Check(len(rows), sample, mismatches, float(np.abs(want - have).max()), tolerance)
    want = np.asarray(model.predict(rows), dtype=np.float64).reshape(len(rows))
    have = onnx_model.predict(rows)
    relative = np.abs(want - have) / np.maximum(1.0, np.abs(want))
    return Check(len(rows), sample, 0, float(relative.max()), tolerance, measured="value")


def convert_checked(
    model: Any, rows: np.ndarray, sample: str, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[bytes, Check, list[Any] | None]:
    """(ONNX bytes, the check, the classes) for a model that converts faithfully; else ConversionRefused."""
    reason = onnx_engine.missing_reason()
    if reason:
        raise ConversionRefused(f"checking a conversion needs ONNX Runtime: {reason}")
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or len(rows) == 0:
        raise ConversionRefused("the sample to check the conversion on must be a non-empty table of rows")
    data = to_onnx_bytes(model, rows.shape[1])
    classes = getattr(model, "classes_", None)
    plain = None if classes is None else [c.item() if isinstance(c, np.generic) else c for c in classes]
    try:
        converted = onnx_engine.OnnxModel(onnx_engine.open_session(data), plain)
    except Exception as exc:  # onnxruntime rejects the graph (an opset or operator it lacks)
        raise ConversionRefused(f"ONNX Runtime {onnx_engine.version()} cannot run the converted graph: {exc}") from None
    check = compare(model, converted, rows, sample, tolerance)
    if not check.passed:
        raise ConversionRefused(
            f"the ONNX conversion does not predict what the model predicts: {check.text()}. Register the pickle "
            "alone, or check with other rows (--check-rows) or a wider --tolerance if the difference is acceptable"
        )
    return data, check, plain
