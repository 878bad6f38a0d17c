"""Azure ML's own inference server (azmlinfsrv) as the reference, and this module's HTTP endpoint beside it.

- `ensure_reference_venv()` (bench/venvs.py): the reference virtualenv (AZUREML_REFERENCE_VENV, default .venv-azmlinfsrv at the
  repository root): azureml-inference-server-http 1.5.1, inference-schema 1.8, this project's model stack pins
  (requirements/model.txt), and what the corpus scripts import (pandas, azureml-core). Reused when its versions
  match, built with `python3.11 -m venv` + pip otherwise.
- `running_reference(script, model_dir)`: azmlinfsrv on 127.0.0.1:<free port>, run the way its `azmlinfsrv`
  command runs it (amlserver.run(): its settings, its gunicorn arguments) except for the address, which it
  hard-codes to 0.0.0.0 (constants.DEFAULT_HOST); LAUNCHER below changes that one value.
- `running_ours(script, model_dir)`: `python -m app serve --host 127.0.0.1 --port <free port>` with
  AZUREML_ENTRY_SCRIPT / AZUREML_MODEL_DIR (and AML_APP_ROOT, as Azure ML sets it).
- `python -m tests.azureml.reference record [--slug S ...]`: every case of cases.py against the reference,
  written to golden/<slug>.json with the versions and the command, for machines without the reference venv.

Both servers run with the deployment's app root as working directory and AML_APP_ROOT, in their own process
group; both are waited for by polling a readiness URL (bounded) and stopped by PID, bounded, then by group.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import venvs
from localedge.broker import free_port, stop_process
from localedge.processes import module_environment
from tests.azureml import differences
from tests.azureml.cases import ALL_CASES, Case
from tests.azureml.models import SAMPLES, Deployment, deploy

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
HOST = "127.0.0.1"

# What the reference venv holds, on top of requirements/model.txt (read at run time: the same pins as ours).
# The server's web stack is pinned too: its error texts (werkzeug's 404/405 descriptions) are part of the answers.
SERVER_PINS = (
    "azureml-inference-server-http==1.5.1",
    "inference-schema==1.8",
    "Flask==3.1.3",
    "Werkzeug==3.1.9",
    "gunicorn==27.0.1",
    # The corpus imports pandas (PandasParameterType, the IoT Edge script). 2.2.3: the first with CPython 3.11 wheels
    # built against numpy 2, so it runs on the pinned numpy 2.2.4 (Debian trixie's too); requirements/dev.txt has it.
    "pandas==2.2.3",
    # SDK v1's `from azureml.core.model import Model` (MLOpsPython, the IoT Edge tutorial); installs on 3.11 in ~40 s.
    "azureml-core==1.61.0.post4",
)
BUILD_TIMEOUT_S = venvs.BUILD_TIMEOUT_S


class ReferenceUnavailable(venvs.VenvUnavailable):
    """The reference venv is missing and could not be built (or building was not allowed)."""


def model_pins() -> list[str]:
    lines = (REPO_ROOT / "requirements" / "model.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def reference_pins() -> list[str]:
    return [*SERVER_PINS, *model_pins()]


def reference_venv() -> Path:
    return Path(os.environ.get("AZUREML_REFERENCE_VENV") or REPO_ROOT / ".venv-azmlinfsrv")


def venv_problem(venv: Path) -> str | None:
    """Why `venv` cannot serve as the reference (None: it can)."""
    return venvs.venv_problem(venv, reference_pins())


def ensure_reference_venv(venv: Path | None = None, *, build: bool = True, timeout: float = BUILD_TIMEOUT_S) -> Path:
    """The reference venv (bench/venvs.py's ensure_venv with reference_pins()); ReferenceUnavailable if it cannot be had."""
    try:
        return venvs.ensure_venv(venv or reference_venv(), reference_pins(), build=build, timeout=timeout)
    except venvs.VenvUnavailable as exc:
        raise ReferenceUnavailable(str(exc)) from exc


def pip_command(venv: Path) -> list[str]:
    return venvs.pip_command(venv, reference_pins())


def reference_versions(venv: Path) -> dict[str, str | None]:
    names = [p.split("==", 1)[0] for p in reference_pins()]
    versions = venvs.installed_versions(venv, [*names, "flask-cors", "pydantic", "opentelemetry-sdk"])
    done = subprocess.run([str(venvs.venv_python(venv)), "--version"], capture_output=True, text=True, timeout=30, check=True)
    return {"python": done.stdout.strip().removeprefix("Python "), **versions}


# --- talking HTTP ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names; informational, see differences.py

    def json(self) -> Any:
        """The body parsed as JSON, or differences.NOT_JSON."""
        return differences.parse_json(self.body)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"status": self.status, "content_type": self.content_type}
        try:
            record["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(self.body).decode("ascii")
        record["headers"] = differences.recordable_headers(self.headers)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Answer:
        body = record["body"].encode("utf-8") if "body" in record else base64.b64decode(record["body_base64"])
        return cls(record["status"], record.get("content_type"), body, dict(record.get("headers", {})))


def send(base_url: str, case: Case, timeout: float = 60.0) -> Answer:
    """Send `case` exactly (http.client adds Host, Accept-Encoding: identity and Content-Length only)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or HOST, url.port, timeout=timeout)
    try:
        conn.request(case.method, case.path, body=case.body if case.method not in ("GET", "DELETE") or case.body else None,
                     headers=dict(case.headers))  # fmt: skip
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return Answer(resp.status, resp.getheader("Content-Type"), body, headers)
    finally:
        conn.close()


# --- processes ------------------------------------------------------------------------------------------


class ServerProcess:
    """A server child in its own process group, its stdout and stderr in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                process_group=0,
            )  # fmt: skip
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def wait_ready(self, base_url: str, path: str, timeout: float) -> None:
        """Poll GET `path` until it answers 200, the process exits, or `timeout` passes (then RuntimeError with the log)."""
        assert self.process is not None
        url = urlsplit(base_url)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} before it was ready:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s ({last}):\n{self.log_tail()}")
            wait = max(0.2, min(5.0, deadline - time.monotonic()))
            conn = http.client.HTTPConnection(url.hostname or HOST, url.port, timeout=wait)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
                last = f"GET {path} answered {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"GET {path}: {exc!r}"
            finally:
                conn.close()
            time.sleep(0.05)  # between attempts only; readiness is the 200

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the PID, bounded wait, SIGKILL; then SIGKILL to whatever is left of its group (gunicorn's workers)."""
        if self.process is None:
            return None
        code = stop_process(self.process, timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return code


# Runs in the reference venv: azmlinfsrv's own entry point (amlserver.run(), which is what the `azmlinfsrv`
# console script calls) with DEFAULT_HOST set to argv[1] instead of the hard-coded 0.0.0.0. argv[2] names
# modules to alias for scripts written against 2018 images (differences.LEGACY_ALIASES); the rest is
# azmlinfsrv's own command line.
LAUNCHER = """\
import importlib, sys
host, aliases = sys.argv[1], [a for a in sys.argv[2].split(",") if a]
for name in aliases:
    target = {LEGACY_ALIASES}[name]
    module = importlib.import_module(target)
    parent, _, leaf = name.rpartition(".")
    setattr(importlib.import_module(parent), leaf, module)
    sys.modules[name] = module
from azureml_inference_server_http import amlserver
amlserver.DEFAULT_HOST = host
sys.argv = ["azmlinfsrv", *sys.argv[3:]]
amlserver.run()
""".replace("{LEGACY_ALIASES}", repr({name: target for name, (target, _) in differences.LEGACY_ALIASES.items()}))

# Variables of the calling environment that would change either server's behaviour.
_SERVER_VARIABLES = (
    "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SERVICE_NAME", "SERVICE_PATH_PREFIX", "SERVICE_VERSION",
    "SCORING_TIMEOUT_MS", "WORKER_COUNT", "WORKER_TIMEOUT", "WORKER_PRELOAD", "SERVER_PORT", "HEALTH_PORT",
    "SEPERATE_HEALTH_ENDPOINT", "HTTP_X_MS_SERVER_VERSION", "SERVER_VERSION_LOG_RESPONSE_ENABLED",
    "TRANSPORT_PROTOCOL", "APP_INSIGHTS_LOG_RESPONSE_ENABLED", "MODEL_DIR", "HTTP_PORT", "HTTP_HOST",
    "HTTP_TOKEN", "HTTP_TOKEN_FILE",
)  # fmt: skip


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    drop = [k for k in os.environ if k.startswith(("AZUREML_", "AML_")) or k in _SERVER_VARIABLES]
    return module_environment(extra, drop=drop)


def reference_command(venv: Path, script: Path, model_dir: Path, port: int, legacy_aliases: Sequence[str] = ()) -> list[str]:
    return [
        str(venvs.venv_python(venv)), "-c", LAUNCHER, HOST, ",".join(legacy_aliases),
        "--entry_script", str(script), "--model_dir", str(model_dir), "--port", str(port),
    ]  # fmt: skip


@contextlib.contextmanager
def running_reference(
    script: Path,
    model_dir: Path,
    *,
    app_root: Path | None = None,
    legacy_aliases: Sequence[str] = (),
    venv: Path | None = None,
    ready_timeout: float = 90.0,
) -> Iterator[str]:
    """azmlinfsrv serving `script` with AZUREML_MODEL_DIR=`model_dir` on 127.0.0.1; yields its base URL.

    `app_root` (default: the script's directory) is its working directory and AML_APP_ROOT: where it looks for
    a user swagger*.json, and where azureml-core's Model.get_model_path looks for azureml-models/.
    """
    venv = venv or reference_venv()
    app_root = app_root or script.parent
    port = free_port(HOST)
    base_url = f"http://{HOST}:{port}"
    env = clean_environment({"AML_APP_ROOT": str(app_root), "AZUREML_MODEL_DIR": str(model_dir)})
    with tempfile.TemporaryDirectory(prefix="azmlinfsrv-") as logs:
        argv = reference_command(venv, script, model_dir, port, legacy_aliases)
        server = ServerProcess("azmlinfsrv", argv, env, app_root, Path(logs))
        try:
            server.start().wait_ready(base_url, "/", ready_timeout)
            yield base_url
        finally:
            server.stop()


def ours_command(port: int) -> list[str]:
    return [sys.executable, "-m", "app", "serve", "--host", HOST, "--port", str(port)]


@contextlib.contextmanager
def running_ours(script: Path, model_dir: Path, *, app_root: Path | None = None, ready_timeout: float = 60.0) -> Iterator[str]:
    """This module's HTTP endpoint (`python -m app serve`, this interpreter) serving `script` with `model_dir`;
    yields its base URL once GET /ready answers 200. Same app root and working directory as the reference."""
    app_root = app_root or script.parent
    port = free_port(HOST)
    base_url = f"http://{HOST}:{port}"
    env = clean_environment(
        {"AZUREML_ENTRY_SCRIPT": str(script), "AZUREML_MODEL_DIR": str(model_dir), "AML_APP_ROOT": str(app_root),
         "PYTHONPATH": str(REPO_ROOT)}
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ours-") as logs:
        server = ServerProcess("ours", ours_command(port), env, app_root, Path(logs))
        try:
            server.start().wait_ready(base_url, "/ready", ready_timeout)
            yield base_url
        finally:
            server.stop()


# --- recording ------------------------------------------------------------------------------------------


def golden_path(slug: str) -> Path:
    return GOLDEN_DIR / f"{slug}.json"


def load_golden(slug: str) -> dict[str, Any]:
    return json.loads(golden_path(slug).read_text())


def reference_answers(deployment: Deployment, venv: Path | None = None) -> dict[str, Answer]:
    """Start azmlinfsrv on `deployment`, send every case of its slug in order, stop it; case id -> answer."""
    sample = SAMPLES[deployment.slug]
    with running_reference(
        deployment.script, deployment.model_dir, app_root=deployment.app_root, legacy_aliases=sample.legacy_aliases, venv=venv
    ) as base_url:
        return {case.id: send(base_url, case) for case in ALL_CASES[deployment.slug]}


def _placeholders(text: str, deployment: Deployment) -> str:
    return text.replace(str(deployment.app_root), "$APP_ROOT")


def record(slug: str, venv: Path, work: Path) -> dict[str, Any]:
    """The golden document of `slug`: versions, command, and every case's request and reference answer."""
    deployment = deploy(slug, work / slug)
    answers = reference_answers(deployment, venv)
    sample = SAMPLES[slug]
    argv = reference_command(venv, deployment.script, deployment.model_dir, 0, sample.legacy_aliases)
    argv[0], argv[2], argv[-1] = "$AZUREML_REFERENCE_VENV/bin/python", "$LAUNCHER", "$PORT"
    return {
        "slug": slug,
        "recorded_with": {
            "what": "azmlinfsrv (azureml-inference-server-http) run by tests/azureml/reference.py's LAUNCHER",
            "versions": reference_versions(venv),
            "launcher": LAUNCHER,
            "argv": [_placeholders(a, deployment) for a in argv],
            "cwd": "$APP_ROOT",
            "environment": {
                "AML_APP_ROOT": "$APP_ROOT",
                "AZUREML_MODEL_DIR": _placeholders(str(deployment.model_dir), deployment),
            },
            "legacy_aliases": list(sample.legacy_aliases),
        },
        "answers": [
            {"request": case.as_dict(), "answer": answers[case.id].to_record()} for case in ALL_CASES[slug]
        ],
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.azureml.reference", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every case against azmlinfsrv and write golden/<slug>.json")
    rec.add_argument("--slug", action="append", choices=sorted(SAMPLES), help="only these (repeatable); default all")
    rec.add_argument("--no-build", action="store_true", help="use the reference venv as it is; fail if it is missing")
    sub.add_parser("venv", help="build (or check) the reference venv and print its path and versions")
    args = parser.parse_args(argv)
    venv = ensure_reference_venv(build=not getattr(args, "no_build", False))
    if args.command == "venv":
        print(venv)
        print(json.dumps(reference_versions(venv), indent=2))
        return 0
    GOLDEN_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="azml-record-") as work:
        for slug in args.slug or sorted(SAMPLES):
            started = time.monotonic()
            document = record(slug, venv, Path(work))
            golden_path(slug).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
            statuses = sorted({a["answer"]["status"] for a in document["answers"]})
            print(f"{golden_path(slug).relative_to(REPO_ROOT)}: {len(document['answers'])} answers, statuses {statuses}, "
                  f"{time.monotonic() - started:.1f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
