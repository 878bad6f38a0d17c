"""The scoring contract: load a score.py (init/run) beside a verified model directory and call it
on batches of feature rows.

Two script styles, told apart by a module-level constant:
- INPUT_FORMAT = "ndarray": run(input_data) gets a 2-D float64 numpy array and returns one result
  per row (list or array). The built-in app/score.py is of this kind.
- anything else (an Azure ML script, unchanged): run(raw_data) gets a JSON string
  '{"data": [[...], ...]}' and returns a JSON-serializable list, or a JSON string of one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

from app.model.modeldir import Manifest, verify_model_dir

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = Path(__file__).with_name("score.py")


class ScoringError(RuntimeError):
    """run() failed or answered in a way the module cannot map onto rows."""


class ScriptLoadError(RuntimeError):
    """The scoring script could not be imported or its init() failed."""


def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _import_script(path: Path) -> ModuleType:
    if not path.is_file():
        raise ScriptLoadError(f"scoring script {path} does not exist (SCORE_SCRIPT)")
    # A unique module name, so a reload or a second model gets a fresh module.
    name = f"_score_{abs(hash(str(path.resolve())))}_{len(sys.modules)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptLoadError(f"scoring script {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ScriptLoadError(f"importing {path} failed: {_last_frame(exc)}") from exc
    for fn in ("init", "run"):
        if not callable(getattr(module, fn, None)):
            raise ScriptLoadError(f"scoring script {path} has no {fn}() function")
    return module


@dataclass
class Scorer:
    """A loaded model: its manifest and its script's run(), adapted to batches of rows."""

    manifest: Manifest
    script: ModuleType
    script_path: Path
    ndarray_input: bool

    @property
    def n_features(self) -> int:
        return len(self.manifest.features)

    def set_threshold(self, value: float | None) -> None:
        """Pass a decision threshold to the script (its optional set_threshold()); ValueError if it cannot take one."""
        setter = getattr(self.script, "set_threshold", None)
        if setter is None:
            if value is not None:
                raise ValueError(f"{self.script_path.name} has no set_threshold(value), so it cannot take a decision threshold")
            return
        setter(value)

    def score(self, rows: Sequence[Sequence[float]]) -> list[Any]:
        """Score rows in one run() call; one result per row. Called off the event loop."""
        if self.ndarray_input:
            out = self.script.run(np.asarray(rows, dtype=np.float64))
        else:
            out = self.script.run(orjson.dumps({"data": rows}).decode())
            if isinstance(out, (str, bytes)):
                try:
                    out = orjson.loads(out)
                except orjson.JSONDecodeError:
                    raise ScoringError(f"run() returned a string that is not JSON: {str(out)[:200]!r}") from None
            if isinstance(out, dict) and set(out) == {"error"}:
                raise ScoringError(f"run() reported an error: {str(out['error'])[:500]}")
        if isinstance(out, np.ndarray):
            out = out.tolist()
        if not isinstance(out, (list, tuple)):
            raise ScoringError(f"run() returned {type(out).__name__}, expected one result per row")
        if len(out) != len(rows):
            raise ScoringError(f"run() returned {len(out)} results for {len(rows)} rows")
        return list(out)


def load_scorer(model_dir: str | Path, script: str | Path = "", allow_version_mismatch: bool = False) -> Scorer:
    """Verify the model directory, import the script, call its init() and try one row."""
    model_dir = Path(model_dir).resolve()
    manifest = verify_model_dir(model_dir, allow_version_mismatch)
    # Azure ML scripts find their model through this variable; point it at the verified directory.
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    script_path = Path(script) if script else DEFAULT_SCRIPT
    module = _import_script(script_path)
    ndarray_input = str(getattr(module, "INPUT_FORMAT", "json")).lower() == "ndarray"
    try:
        module.init()
    except Exception as exc:
        raise ScriptLoadError(f"init() of {script_path} failed: {_last_frame(exc)}") from exc
    scorer = Scorer(manifest, module, script_path, ndarray_input)
    try:
        scorer.score([[0.0] * scorer.n_features])
    except Exception as exc:
        raise ScriptLoadError(
            f"a trial prediction on one row of {scorer.n_features} features "
            f"({', '.join(manifest.features)}) failed: {_last_frame(exc)}"
        ) from exc
    log.info(
        "model loaded: %s v%s (%s), script %s (%s input)",
        manifest.name,
        manifest.version,
        manifest.sha256[:12],
        script_path.name,
        "ndarray" if ndarray_input else "json",
    )
    return scorer
