"""iotedgedev 3.3.7 and `python -m deploy` side by side on the same solution: run both, compare the manifests.

The reference is PyPI's iotedgedev 3.3.7, which runs on Python < 3.10 only: a venv at .venv-iotedgedev (or the
`iotedgedev` executable named by $IOTEDGEDEV). `iotedgedev solution genconfig -f T -P P --fail-on-validation-error`
needs no Docker engine and no Azure CLI, but it downloads the manifest schema from SchemaStore at run time (over
plain http) and silently skips validation when it cannot: `SchemaProxy` answers that one request on loopback from
deploy/schema's stored copy, as an http proxy, and refuses everything else. Its telemetry is switched off through
the settings file in a throwaway HOME.

Without the venv, the comparison uses golden files recorded from it (`python -m tests.deploy.record`), each with
the command that produced it.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.manifest import SCHEMA_PATH, Rendered, render

REPO_ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = Path(__file__).parent / "solutions"
GOLDENS = Path(__file__).parent / "goldens"
SCHEMA_URL = "http://json.schemastore.org/azure-iot-edge-deployment-2.0"  # iotedgedev's deployment_manifest_schema_url
IOTEDGEDEV_VERSION = "3.3.7"
RUN_TIMEOUT_S = 120.0
KILL_WAIT_S = 10.0
# What CI or a developer may have for the public solutions, which this repository does not keep (see public.py).
PUBLIC_DIRS = (os.environ.get("DEPLOY_PUBLIC_SOLUTIONS", ""), str(REPO_ROOT.parent / "shared" / "deploy-solutions"))


def iotedgedev_executable() -> Path | None:
    """The reference tool, if it is installed and runs."""
    named = os.environ.get("IOTEDGEDEV")
    candidate = Path(named) if named else REPO_ROOT / ".venv-iotedgedev" / "bin" / "iotedgedev"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


# --- the schema, answered on loopback ----------------------------------------------------------------------------------


class SchemaProxy:
    """An http proxy on 127.0.0.1 that answers iotedgedev's schema download from deploy/schema and refuses the rest."""

    def __init__(self) -> None:
        schema = SCHEMA_PATH.read_bytes()
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                if self.path.rstrip("/") in (SCHEMA_URL, SCHEMA_URL + ".json"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(schema)))
                    self.end_headers()
                    self.wfile.write(schema)
                else:
                    self.send_error(404, "only the deployment manifest schema is served here")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="schema-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> SchemaProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --- one side-by-side case ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One template of one solution for one platform, and what is expected of both tools.

    differences: JSON path -> why our manifest differs from iotedgedev's there (an empty mapping: identical).
    """

    id: str
    solution: str  # a folder under tests/deploy/solutions, "this-repo", or a public solution's name (public.py)
    template: str
    platform: str
    env: Mapping[str, str]
    ours: str  # "generated" or "refused"
    problems: tuple[str, ...] = ()  # texts our refusal must contain
    warnings: tuple[str, ...] = ()  # texts our warnings must contain
    iotedgedev: str = "written"  # "written" (exit 0), "written-invalid" (exit 1, its validation failed), "failed"
    iotedgedev_says: tuple[str, ...] = ()  # texts iotedgedev's output must contain
    differences: Mapping[str, str] = field(default_factory=dict)
    file_name: str = ""  # iotedgedev's file name when it differs from ours (it leaves the platform out)

    @property
    def public(self) -> bool:
        from tests.deploy.public import PUBLIC

        return self.solution in PUBLIC


@dataclass
class Reference:
    """What iotedgedev did: recorded live, or read from a golden file."""

    command: list[str]
    exit_code: int
    written: str | None  # the file it wrote, relative to the solution folder
    manifest: Any
    messages: list[str]  # its Warning:/ERROR: lines
    schema_served: bool
    python: str = ""
    iotedgedev: str = IOTEDGEDEV_VERSION

    def verdict(self) -> str:
        if self.manifest is None:
            return "failed"
        return "written" if self.exit_code == 0 else "written-invalid"


def env_text(env: Mapping[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in env.items())


def run_environment(home: Path, proxy_url: str, executable: Path | None) -> dict[str, str]:
    """The whole environment both tools see (iotedgedev expands any variable of it, $HOME included)."""
    path = ":".join(p for p in (str(executable.parent) if executable else "", "/usr/bin", "/bin") if p)
    # EDGE_DATA_ROOT: a variable of the process environment, not of .env (tests/deploy/solutions/multi-module uses it)
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "http_proxy": proxy_url,
        "no_proxy": "",
        "EDGE_DATA_ROOT": "/var/lib/edge-data",
    }


def prepare_home(home: Path) -> None:
    """iotedgedev's settings file with telemetry off (its first run would otherwise switch it on and upload)."""
    (home / ".iotedgedev").mkdir(parents=True, exist_ok=True)
    (home / ".iotedgedev" / "setting.ini").write_text("[DEFAULT]\nfirsttime = no\ncollect_telemetry = no\n")


def stage(case: Case, source: Path, target: Path, for_iotedgedev: bool) -> Path:
    """A scratch copy of the solution with the case's .env; returns the template's path."""
    if case.solution == "this-repo":
        target.mkdir(parents=True)
        for name in ("deployment.template.json", "module.json", ".env.example"):
            shutil.copy(REPO_ROOT / name, target / name)
        if for_iotedgedev:  # iotedgedev reads ${MODULES.x} from modules/x/module.json only (see deploy/solution.py)
            (target / "modules" / "inference").mkdir(parents=True)
            shutil.copy(REPO_ROOT / "module.json", target / "modules" / "inference" / "module.json")
    else:
        shutil.copytree(source, target)
    (target / ".env").write_text(env_text(case.env))
    return target / case.template


def run_iotedgedev(
    executable: Path, case: Case, source: Path, scratch: Path, environ: Mapping[str, str], timeout: float = RUN_TIMEOUT_S
) -> Reference:
    """`iotedgedev solution genconfig` on a scratch copy; the process is killed by its PID if it overruns."""
    template = stage(case, source, scratch, for_iotedgedev=True)
    command = [executable.name, "solution", "genconfig", "-f", case.template, "-P", case.platform]
    command.append("--fail-on-validation-error")
    proc = subprocess.Popen(
        [str(executable), *command[1:]],
        cwd=template.parent,
        env=dict(environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=KILL_WAIT_S)
        raise
    text = out + err
    written = re.search(r"Expanding '[^']*' to '([^']*)'", text)
    manifest = None
    if written and (template.parent / written.group(1)).is_file():
        manifest = json.loads((template.parent / written.group(1)).read_text())
    messages = [line.strip() for line in text.splitlines() if line.strip().startswith(("Warning:", "ERROR:"))]
    return Reference(
        command=command,
        exit_code=proc.returncode,
        written=written.group(1) if written and manifest is not None else None,
        manifest=manifest,
        messages=messages,
        schema_served="Validating schema of deployment manifest." in text and "skip schema validation" not in text,
        python=_python_of(executable),
    )


@functools.cache
def _python_of(executable: Path) -> str:
    python = executable.parent / "python"
    try:
        done = subprocess.run(
            [str(python), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def run_ours(case: Case, source: Path, scratch: Path, environ: Mapping[str, str]) -> Rendered:
    template = stage(case, source, scratch, for_iotedgedev=False)
    return render(template, template.parent / ".env", platforms=[case.platform], environ=environ)


# --- goldens -----------------------------------------------------------------------------------------------------------


def golden_path(case: Case, public_dir: Path | None = None) -> Path:
    return (public_dir / "goldens" if case.public and public_dir else GOLDENS) / f"{case.id}.json"


def save_golden(case: Case, reference: Reference, public_dir: Path | None = None) -> Path:
    path = golden_path(case, public_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"case": case.id, **asdict(reference)}
    record["recorded_with"] = f"{' '.join(reference.command)}  (cwd: the solution folder, with the case's .env)"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def load_golden(case: Case, public_dir: Path | None = None) -> Reference | None:
    path = golden_path(case, public_dir)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    fields = {k: record[k] for k in Reference.__dataclass_fields__ if k in record}
    return Reference(**fields)


# --- comparing ---------------------------------------------------------------------------------------------------------


def jpath(parts: tuple[str | int, ...]) -> str:
    from deploy.checks import jpath as deploy_jpath

    return deploy_jpath(parts)


def differences(reference: Any, ours: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str, Any, Any]]:
    """(JSON path, iotedgedev's value, ours) wherever the two manifests differ; key order does not count."""
    if isinstance(reference, dict) and isinstance(ours, dict):
        for key in [*reference, *(k for k in ours if k not in reference)]:
            if key not in reference or key not in ours:
                yield jpath((*path, key)), reference.get(key, "<absent>"), ours.get(key, "<absent>")
            else:
                yield from differences(reference[key], ours[key], (*path, key))
    elif isinstance(reference, list) and isinstance(ours, list) and len(reference) == len(ours):
        for i, (a, b) in enumerate(zip(reference, ours, strict=True)):
            yield from differences(a, b, (*path, i))
    elif reference != ours or type(reference) is not type(ours):
        yield jpath(path), reference, ours


def describe(found: list[tuple[str, Any, Any]]) -> str:
    return "\n".join(f"  {p}: iotedgedev {json.dumps(a)[:160]} | ours {json.dumps(b)[:160]}" for p, a, b in found)


def main_python() -> str:
    return sys.version.split()[0]
