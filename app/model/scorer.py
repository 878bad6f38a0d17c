"""The scoring contract: a score.py (init/run) beside a verified model directory, called the way the
script expects.

Every script is loaded as Azure ML's server loads it (app/model/azureml: AZUREML_MODEL_DIR set, the
`Model` shim, init() with no arguments). Then two ways to call run():
- rows: run() is called once per micro-batch with the batch's feature rows, one result per row back.
  A script with INPUT_FORMAT = "ndarray" (the built-in app/model/score.py) gets a 2-D float64 numpy
  array; an Azure ML script gets what Azure ML's server would give it for the body
  '{"data": [[...], ...]}' (the text, or parsed parameters if it is inference_schema-decorated) and
  may answer with a list, a JSON string of one, or a dict holding one list (`{"result": [...]}`).
- message: each message body is handed to run() unchanged, exactly as Azure ML's server hands it a
  request body, and what it answers is the output (the Azure ML IoT Edge tutorial's iot_score.py).
  HTTP POST /score always calls an Azure ML script this way: the answers are azmlinfsrv's.
SCRIPT_INPUT picks the edge messages' way; `auto` is rows when the features are known (manifest or
FEATURES) and message otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

from app.model.azureml.entry import Answer, EntryScript, EntryScriptError
from app.model.modeldir import Manifest, engine_in_use, pickle_skew_hint, verify_model_dir

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = Path(__file__).with_name("score.py")
SCRIPT_INPUTS = ("auto", "rows", "message")
_JSON_HEADERS = {"Content-Type": "application/json"}


class ScoringError(RuntimeError):
    """run() failed or answered in a way the module cannot map onto rows."""


class ScriptLoadError(RuntimeError):
    """The scoring script could not be imported or its init() failed."""


@dataclass
class Scorer:
    """A loaded model: its manifest and its script, with run() adapted to batches of rows or to messages."""

    manifest: Manifest
    entry: EntryScript
    script_path: Path
    ndarray_input: bool  # INPUT_FORMAT = "ndarray": run() takes a numpy batch (rows only)
    message_input: bool = False  # edge messages go to run() one by one, as request bodies (SCRIPT_INPUT)

    @property
    def script(self) -> ModuleType:
        return self.entry.module

    @property
    def azureml(self) -> bool:
        """An Azure ML script: HTTP answers for it are azmlinfsrv's (status, body, headers)."""
        return not self.ndarray_input

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
            answer = self.entry.score(orjson.dumps({"data": rows}), _JSON_HEADERS)
            if answer.status != 200:
                raise ScoringError(self.failure(answer))
            try:
                out = orjson.loads(answer.body)
            except orjson.JSONDecodeError:
                raise ScoringError(f"run() answered something that is not JSON: {answer.body[:200]!r}") from None
            if isinstance(out, str):  # a script that json.dumps its own result
                try:
                    out = orjson.loads(out)
                except orjson.JSONDecodeError:
                    raise ScoringError(f"run() returned a string that is not JSON: {out[:200]!r}") from None
            out = _unwrapped(out, len(rows))
        if isinstance(out, np.ndarray):
            out = out.tolist()
        if not isinstance(out, (list, tuple)):
            raise ScoringError(f"run() returned {type(out).__name__}, expected one result per row")
        if len(out) != len(rows):
            raise ScoringError(f"run() returned {len(out)} results for {len(rows)} rows")
        return list(out)

    def answer(
        self, body: bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]], method: str = "POST", query: str = ""
    ) -> Answer:
        """What Azure ML's server answers for this request to /score (never raises). Called off the event loop."""
        return self.entry.score(body, headers, method=method, query=query)

    def failure(self, answer: Answer) -> str:
        """Why a /score answer is not a success, for an error record: what run() raised if it did, else the answer."""
        if self.entry.last_failure:
            return self.entry.last_failure
        try:
            doc = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            doc = None
        message = doc.get("message") if isinstance(doc, dict) else None
        text = str(message) if message is not None else answer.body[:300].decode("utf-8", "replace")
        return f"the script's answer was {answer.status}: {text}"


def _unwrapped(out: Any, rows: int) -> Any:
    """An AutoML-style dict holding the one list of results ({"result": [...]}) -> that list."""
    if isinstance(out, dict):
        lists = [v for v in out.values() if isinstance(v, list) and len(v) == rows]
        if len(lists) == 1:
            return lists[0]
        if set(out) == {"error"}:
            raise ScoringError(f"run() reported an error: {str(out['error'])[:500]}")
    return out


def _input_mode(choice: str, ndarray_input: bool, manifest: Manifest) -> bool:
    """True for message input (see SCRIPT_INPUT)."""
    if ndarray_input:
        if choice == "message":
            raise ScriptLoadError('SCRIPT_INPUT=message needs an Azure ML script: this one declares INPUT_FORMAT = "ndarray"')
        return False
    if choice == "auto":
        return not manifest.features
    return choice == "message"


def load_scorer(
    model_dir: str | Path, script: str | Path = "", allow_version_mismatch: bool = False, script_input: str = "auto"
) -> Scorer:
    """Verify the model directory, load the script (init()), and try it: a row of zeros in rows mode,
    the script's own sample input (inference_schema) in message mode."""
    model_dir = Path(model_dir).resolve()
    script_path = Path(script) if script else DEFAULT_SCRIPT
    if not script_path.is_file():
        raise ScriptLoadError(f"scoring script {script_path} does not exist (SCORE_SCRIPT / AZUREML_ENTRY_SCRIPT)")
    # Our score.py reads our manifest; an Azure ML script may come with a downloaded model as it is (warned).
    manifest = verify_model_dir(model_dir, allow_version_mismatch, require_manifest=script_path == DEFAULT_SCRIPT)
    engine = ""
    if script_path == DEFAULT_SCRIPT:  # it runs the manifest's engine; an own script loads what it likes
        engine, fallback = engine_in_use(manifest)  # an ONNX-only model without onnxruntime is refused here
        if fallback:
            log.warning("%s", fallback)
    try:
        entry = EntryScript.load(script_path, model_dir)
    except EntryScriptError as exc:
        # azmlinfsrv's own words, with the script's path or failing line; plus the versions and the fix when it was the
        # model's pickle that this model stack cannot read (a downloaded model has no manifest to check first).
        raise ScriptLoadError(str(exc) + pickle_skew_hint(exc.__cause__)) from exc
    # Loading set AZUREML_MODEL_DIR for the script; keep it pointing at the verified directory.
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    ndarray_input = str(getattr(entry.module, "INPUT_FORMAT", "json")).lower() == "ndarray"
    scorer = Scorer(manifest, entry, script_path, ndarray_input, _input_mode(script_input, ndarray_input, manifest))
    _trial(scorer)
    log.info(
        "model loaded: %s v%s (%s), script %s%s (%s input)",
        manifest.name,
        manifest.version,
        manifest.sha256[:12],
        script_path.name,
        f" on {engine}" if engine else "",
        "ndarray rows" if ndarray_input else "message" if scorer.message_input else "Azure ML rows",
    )
    return scorer


def _trial(scorer: Scorer) -> None:
    manifest = scorer.manifest
    if not scorer.message_input:
        if not scorer.n_features:
            raise ScriptLoadError(
                "rows input needs the model's features: register it with --features, "
                "or set SCRIPT_INPUT=message to hand each message body to run() as it is"
            )
        try:
            scorer.score([[0.0] * scorer.n_features])
        except Exception as exc:
            raise ScriptLoadError(
                f"a trial prediction on one row of {scorer.n_features} features ({', '.join(manifest.features)}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return
    sample = scorer.entry.sample_input()
    if sample is None:
        log.info("no trial for %s: its run() declares no sample input (inference_schema)", scorer.script_path.name)
        return
    answer = scorer.answer(sample, _JSON_HEADERS)
    if answer.status >= 500:
        raise ScriptLoadError(f"a trial with the script's own sample input failed: {scorer.failure(answer)}")
