"""The HTTP servers compared, each serving the default model (model/) on 127.0.0.1, and how to ask each for a score.

- ours: `python -m app serve` on the default model directory (ONNX Runtime engine, as shipped);
- ours-sklearn: the same, on a directory holding only the model's pickle (the scikit-learn engine the peers use);
- azmlinfsrv: Azure ML's inference server 1.5.1 (tests/azureml/reference.py's venv and launcher) with a score.py
  over model.pkl as Azure ML's tutorials write it: joblib in init(), predict_proba in run();
- mlserver: MLServer 1.7.1 with its scikit-learn runtime over model.pkl (model-settings.json), adaptive batching on.

Each request asks for the same thing: the class probabilities of `rows` rows. A server is started pinned to one
core (taskset) when there are two or more, and stopped by PID (its whole process group, bounded).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.model.register import register
from app.model.simulator import FEATURES, LABELS
from app.settings import REPO_ROOT
from bench import venvs
from bench.peers.httpload import one_answer, request_bytes
from localedge.broker import free_port
from tests.azureml.reference import (
    HOST,
    ServerProcess,
    clean_environment,
    ensure_reference_venv,
    model_pins,
    reference_command,
)

MODEL_DIR = REPO_ROOT / "model"
MODEL_NAME = "temperature-anomaly"
MLSERVER_VENV = REPO_ROOT / ".venv-mlserver"
# MLServer 1.7.1 and its scikit-learn runtime on this project's model stack (so that it loads the same model.pkl);
# pandas 2.2.3, built for numpy 2 (as in the Azure ML reference venv); uvloop 0.22+ breaks
# MLServer 1.7.1's inference workers (`asyncio.get_event_loop()` raises "no current event loop" in them).
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "pandas==2.2.3", "uvloop==0.21.0")

# The score.py azmlinfsrv runs: the Azure ML tutorials' shape (model loaded in init(), JSON rows in run()).
SCORE_PY = """\
import json
import os

import joblib
import numpy as np

LABELS = {labels!r}


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"))


def run(raw_data):
    rows = np.asarray(json.loads(raw_data)["data"], dtype=float)
    proba = model.predict_proba(rows)
    best = proba.argmax(axis=1)
    return [{{"label": LABELS[k], "probability": round(float(p[k]), 4)}} for k, p in zip(best, proba)]
"""


@dataclass(frozen=True)
class MLServerBatching:
    """One adaptive-batching setting of MLServer's (model-settings.json) and its inference workers (settings.json)."""

    max_batch_size: int
    max_batch_time_s: float
    parallel_workers: int

    @property
    def label(self) -> str:
        return f"batch {self.max_batch_size}/{self.max_batch_time_s * 1000:g} ms, {self.parallel_workers} workers"


# Tried before the rounds (1-row c=32); the best by rows/s is the one measured. parallel_workers 0 scores in the
# server process itself (no hand-off to a worker process): on one core the hand-off is pure cost.
MLSERVER_TRIALS = (
    MLServerBatching(32, 0.005, 1),
    MLServerBatching(32, 0.005, 0),
    MLServerBatching(64, 0.02, 0),
    MLServerBatching(8, 0.002, 0),
)


def server_cores() -> tuple[set[int] | None, set[int] | None]:
    """(the load generator's cores, the server's): two disjoint sets with 2+ usable cores, else (None, None)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return None, None
    return set(cores[:1]), set(cores[1:2])


def pinned(argv: Sequence[str], cores: set[int] | None) -> list[str]:
    """`argv` under `taskset -c CORES` (taskset execs it: same PID; children inherit the affinity)."""
    if not cores:
        return list(argv)
    return ["taskset", "-c", ",".join(map(str, sorted(cores))), *argv]


def rows(n: int) -> list[list[float]]:
    """`n` sensor-like rows (both classes): what each request scores."""
    base = [[60.0, 9.9, 21.0, 25.0], [30.0, 2.0, 21.0, 25.0], [85.0, 4.1, 21.3, 24.0], [45.5, 5.2, 20.8, 26.0]]
    return [base[i % len(base)] for i in range(n)]


class Server:
    """One server kind: set up its files in `work`, start it pinned, answer its score requests."""

    name = ""
    path = "/score"

    def __init__(self, work: Path) -> None:
        self.work = work / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.process: ServerProcess | None = None
        self.port = 0

    def body(self, n: int) -> bytes:
        return json.dumps({"data": rows(n)}).encode()

    def command(self, port: int) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def versions(self) -> dict[str, Any]:
        return {}

    def start(self, cores: set[int] | None) -> ServerProcess:
        self.port = free_port(HOST)
        argv, env, cwd = self.command(self.port)
        self.process = ServerProcess(self.name, pinned(argv, cores), env, cwd, self.work).start()
        return self.process

    def start_until_scored(self, cores: set[int] | None, body: bytes, timeout: float = 120.0) -> float:
        """Start; seconds from the process's start to its first 200 answer to `body` (polled every 20 ms): cold start."""
        started = time.perf_counter()
        process = self.start(cores)
        assert process.process is not None
        request = request_bytes(HOST, self.port, self.path, body)
        last = "no answer"
        while time.perf_counter() - started < timeout:
            if process.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {process.process.returncode}:\n{process.log_tail()}")
            try:
                status, answer = asyncio.run(one_answer(HOST, self.port, request, timeout=30))
                if status == 200:
                    return time.perf_counter() - started
                last = f"{status}: {answer[:200]!r}"
            except (TimeoutError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.02)  # between attempts only; the 200 is what counts
        raise RuntimeError(f"{self.name} gave no score within {timeout:.0f}s ({last}):\n{process.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class Ours(Server):
    name = "ours"

    def model_dir(self) -> Path:
        return MODEL_DIR

    def command(self, port: int) -> tuple[list[str], dict[str, str], Path]:
        env = clean_environment({"MODEL_DIR": str(self.model_dir()), "PYTHONPATH": str(REPO_ROOT)})
        return [sys.executable, "-m", "app", "serve", "--host", HOST, "--port", str(port)], env, REPO_ROOT

    def versions(self) -> dict[str, Any]:
        """The engine the model directory selects, and what this interpreter (the server's) runs it with."""
        manifest = json.loads((self.model_dir() / "model.json").read_text())
        found = venvs.installed_versions(Path(sys.prefix), ["onnxruntime", "scikit-learn", "aiohttp", "azure-iot-device"])
        return {"engine": manifest.get("engine", "sklearn"), "python": platform.python_version(), **found}


class OursSklearn(Ours):
    """The default model's pickle alone (registered as `python -m app register` would): the scikit-learn engine."""

    name = "ours-sklearn"

    def model_dir(self) -> Path:
        target = self.work / "model"
        if not (target / "model.json").exists():
            register(MODEL_DIR / "model.pkl", target, MODEL_NAME, FEATURES, labels=LABELS)
        return target


class AzmlInfSrv(Server):
    name = "azmlinfsrv"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.venv = ensure_reference_venv()
        self.script = self.work / "score.py"
        self.script.write_text(SCORE_PY.format(labels=list(LABELS)))

    def command(self, port: int) -> tuple[list[str], dict[str, str], Path]:
        env = clean_environment({"AML_APP_ROOT": str(self.work), "AZUREML_MODEL_DIR": str(MODEL_DIR)})
        return reference_command(self.venv, self.script, MODEL_DIR, port), env, self.work

    def versions(self) -> dict[str, Any]:
        return venvs.installed_versions(self.venv, ["azureml-inference-server-http", "gunicorn", "flask", "scikit-learn"])


class MLServer(Server):
    name = "mlserver"

    def __init__(self, work: Path, batching: MLServerBatching = MLSERVER_TRIALS[0]) -> None:
        super().__init__(work)
        self.venv = venvs.ensure_venv(MLSERVER_VENV, [*MLSERVER_PINS, *model_pins()])
        self.batching = batching
        self.path = f"/v2/models/{MODEL_NAME}/infer"

    def body(self, n: int) -> bytes:
        flat = [v for row in rows(n) for v in row]
        inputs = [{"name": "input-0", "shape": [n, len(FEATURES)], "datatype": "FP64", "data": flat}]
        return json.dumps({"inputs": inputs, "outputs": [{"name": "predict_proba"}]}).encode()

    def command(self, port: int) -> tuple[list[str], dict[str, str], Path]:
        repo = self.work / "repository"
        model = repo / MODEL_NAME
        model.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MODEL_DIR / "model.pkl", model / "model.pkl")
        b = self.batching
        model_settings = {
            "name": MODEL_NAME,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.pkl", "version": "1"},
            "max_batch_size": b.max_batch_size,
            "max_batch_time": b.max_batch_time_s,
        }
        (model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        settings = {
            "debug": False,
            "host": HOST,
            "http_port": port,
            "grpc_port": free_port(HOST),
            "metrics_port": free_port(HOST),
            "parallel_workers": b.parallel_workers,
        }
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        env = clean_environment({})
        env = {k: v for k, v in env.items() if not k.startswith("MLSERVER_")}
        return [str(self.venv / "bin" / "mlserver"), "start", str(repo)], env, repo

    def versions(self) -> dict[str, Any]:
        return venvs.installed_versions(self.venv, ["mlserver", "mlserver-sklearn", "fastapi", "uvicorn", "scikit-learn"])
