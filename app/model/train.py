"""Trains the default model deterministically and registers it (what `make model` runs).

A small random forest over the four SimulatedTemperatureSensor features: a few hundred KB,
sub-millisecond per batch row on a Raspberry Pi class CPU. Registered with its ONNX conversion (model.onnx,
run by ONNX Runtime), checked against the pickle on the training rows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
from sklearn.ensemble import RandomForestClassifier

from app.model.convert import OnnxRequest
from app.model.modeldir import Manifest
from app.model.register import register
from app.model.simulator import FEATURES, LABELS, training_data

SEED = 42
NAME = "temperature-anomaly"


def train_default(model_dir: str | Path) -> tuple[Manifest, float]:
    """Train, check on held-out data, register; returns the manifest and the held-out accuracy."""
    X, y = training_data(20_000, SEED)
    X_test, y_test = training_data(5_000, SEED + 1)
    model = RandomForestClassifier(n_estimators=20, max_depth=12, random_state=SEED)
    model.fit(X, y)
    accuracy = float((model.predict(X_test) == y_test).mean())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pkl"
        joblib.dump(model, path)
        manifest = register(
            path,
            model_dir,
            name=NAME,
            features=FEATURES,
            labels=LABELS,
            # Run on ONNX Runtime, checked on the training rows; the pickle stays as the reference and the fallback.
            onnx=OnnxRequest(X, "training data"),
            description=(
                "Flags machine readings whose pressure does not match the temperature, or an "
                "overheated room. Trained on synthetic SimulatedTemperatureSensor-shaped data."
            ),
            tags={
                "algorithm": "RandomForestClassifier(n_estimators=20, max_depth=12)",
                "seed": str(SEED),
                "heldOutAccuracy": f"{accuracy:.4f}",
                "trainingRows": str(len(y)),
            },
        )
    return manifest, accuracy
