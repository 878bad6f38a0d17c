"""Single-module mode end to end, as a user runs it: `python -m localedge run --inputs ...` in one terminal, the
inference module started by hand with the environment `python -m localedge modulecred` prints, messages posted
to the HTTP API (curl and urllib), and what the module sent read back from the API and from the edge's terminal.
Real Mosquitto, the real SDK in the module; nothing is mocked.

iotedgehubdev's own example request is used as its README gives it: Azure/iotedgehubdev, README.md ("Start and
debug a single module natively", step 4), commit 9bb0a5c8c2abc77563bae09744f54dcd5bd97166.

No sleeps: every wait is a line on a pipe, a module's ready line or the API's own `wait=`, each bounded. The edge
and the module are stopped by PID (SIGTERM, bounded, then SIGKILL) also when a test fails.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.model.scorer import Scorer
from localedge.processes import REPO_ROOT, ModuleProcess, module_environment
from tests.helpers import reading, row
from tests.integration.conftest import mosquitto_or_skip
from tests.integration.test_localedge import run_cli

WAIT = 30.0  # bound on every wait for a line or a message
START_TIMEOUT = 60.0  # the module loads its model before it connects
# iotedgehubdev's README example, unchanged but for the port (ours is any free one in tests).
README_HEADERS = ["--header", "Content-Type: application/json", "--request", "POST"]
README_BODY = '{"inputName": "input1","data": "hello world"}'
API_URL = re.compile(r"HTTP API (http://localhost:\d+/api/v1/messages)")


class EdgeCli:
    """`python -m localedge run ...` as a child, both pipes read by threads; stopped by PID."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localedge", "run", *args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        pipe = self.proc.stdout if name == "stdout" else self.proc.stderr
        assert pipe is not None
        for line in pipe:
            with self._changed:
                self.lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines[name].append("")  # EOF marker for waiters: the edge has exited
            self._changed.notify_all()

    def wait_line(self, name: str, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first line on `name` matching `pattern`; fails with the edge's stderr if none comes in time."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines[name] if (m := re.search(pattern, line))]
            return bool(found) or self.proc.poll() is not None

        with self._changed:
            self._changed.wait_for(seen, timeout)
        if not found:
            pytest.fail(f"no {name} line matching {pattern!r} within {timeout:.0f}s; stderr:\n" + "\n".join(self.lines["stderr"]))
        return found[0]

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the edge stops its own children
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code


@pytest.fixture
def start_cli(state_dir: Path) -> Iterator[Callable[..., tuple[EdgeCli, str]]]:
    """start_cli(*run_args) -> (the running edge, its API's URL); stopped after the test."""
    mosquitto_or_skip()
    started: list[EdgeCli] = []

    def start(*args: str) -> tuple[EdgeCli, str]:
        edge = EdgeCli(*args, "--api-port", "0")
        started.append(edge)
        return edge, edge.wait_line("stderr", API_URL.pattern, START_TIMEOUT)[1]

    yield start
    for edge in started:
        edge.stop()


@pytest.fixture
def run_module() -> Iterator[Callable[[dict[str, str]], ModuleProcess]]:
    """run_module(modulecred's env) -> our inference module started as a user's shell would, and ready."""
    started: list[ModuleProcess] = []

    def run(credentials: dict[str, str]) -> ModuleProcess:
        module = ModuleProcess(module_environment(credentials))  # the shell's environment plus the exports
        started.append(module)
        module.start().wait_ready(START_TIMEOUT)
        return module

    yield run
    for module in started:
        module.stop()


def modulecred(*args: str) -> tuple[dict[str, str], str]:
    """`modulecred ... --json`: the environment, and what it said on stderr."""
    done = run_cli("modulecred", *args, "--json", timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def post_urllib(url: str, doc: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post_curl(url: str, doc: Any) -> tuple[int, dict[str, Any]]:
    command = ["curl", "--silent", "--show-error", "--write-out", "\n%{http_code}", *README_HEADERS]
    done = subprocess.run([*command, "--data", json.dumps(doc), url], capture_output=True, text=True, timeout=WAIT, check=True)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def sent(url: str, **query: str) -> list[dict[str, Any]]:
    """What the module sent, from the API (`wait` waits for a first match)."""
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(query)}", timeout=WAIT + 10) as answer:
        return json.loads(answer.read())["messages"]


def have_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the urllib variant covers the API")


# --- --inputs: the module run by hand -----------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("post", [post_urllib, post_curl], ids=["urllib", "curl"])
def test_inputs_mode_feeds_a_module_run_by_hand_and_shows_what_it_sends(
    start_cli: Callable[..., tuple[EdgeCli, str]],
    run_module: Callable[[dict[str, str]], ModuleProcess],
    scorer: Scorer,
    post: Callable[[str, Any], tuple[int, dict[str, Any]]],
) -> None:
    if post is post_curl:
        have_curl()
    edge, url = start_cli("--inputs", "input1", "--env", "INPUT_NAMES=input1")

    # iotedgehubdev's README request, before the module is even started: kept for it, as edgeHub keeps it.
    if post is post_curl:
        readme = subprocess.run(
            ["curl", *README_HEADERS, "--data", README_BODY, url], capture_output=True, text=True, timeout=WAIT
        )
        assert readme.returncode == 0, readme.stderr
        status, answer = 202, json.loads(readme.stdout)  # curl prints the body only: accepted means 202
    else:
        status, answer = post(url, json.loads(README_BODY))
    assert status == 202 and answer["message"] == "accepted", answer
    hello_id = answer["messageId"]

    env, note = modulecred("target")
    assert not note  # nobody runs it but us
    assert "ModuleId=target;" in env["EdgeHubConnectionString"] and "GatewayHostName=127.0.0." in env["EdgeHubConnectionString"]
    assert Path(env["EdgeModuleCACertificateFile"]).is_file() and env["INPUT_NAMES"] == "input1"
    module = run_module(env)

    sensor = reading(61.5, pressure=6.2)
    status, answer = post(url, {"inputName": "input1", "data": sensor, "messageId": f"sensor-{post.__name__}"})
    assert (status, answer) == (202, {"message": "accepted", "messageId": f"sensor-{post.__name__}"})
    status, answer = post(url, {"inputName": "input2", "data": sensor})
    assert status == 400 and "unknown input 'input2'" in answer["error"]
    status, answer = post(url, {"inputName": "input1"})
    assert status == 400 and "data is missing" in answer["error"]

    [prediction] = sent(url, correlationId=f"sensor-{post.__name__}", wait=str(WAIT))
    expected = scorer.score([row(sensor)])[0]
    assert prediction["output"] == "amlOutput" and prediction["body"]["label"] == expected["label"]
    assert prediction["body"]["probability"] == pytest.approx(expected["probability"], abs=1e-3)
    [error] = sent(url, correlationId=hello_id, wait=str(WAIT))
    assert error["output"] == "errorOutput" and error["body"]["inputMessageId"] == hello_id
    assert error["body"]["input"] == '"hello world"'  # double-encoded, as iotedgehubdev sends it

    # Shown on the edge's terminal: output name, correlation id and body.
    shown = edge.wait_line("stdout", rf"^amlOutput cid=sensor-{post.__name__}: (.*)$")[1]
    assert json.loads(shown) == prediction["body"]
    edge.wait_line("stdout", rf"^errorOutput cid={re.escape(hello_id)}: \{{")
    assert len(sent(url)) == 2  # one outcome per accepted message, nothing for the refused ones

    assert module.stop(WAIT) == 0
    assert edge.stop() == 0
    summary = json.loads(edge.wait_line("stderr", r"^summary: (.*)")[1])
    assert (summary["upstream_messages"], summary["predictions"], summary["errors"]) == (2, 1, 1)


# --- --module: one module of the manifest, run by the edge --------------------------------------------


@pytest.mark.timeout(180)
def test_module_mode_runs_one_manifest_module_and_feeds_its_routed_input(
    start_cli: Callable[..., tuple[EdgeCli, str]], scorer: Scorer
) -> None:
    edge, url = start_cli("--module", "inference")
    edge.wait_line("stderr", r"module 'inference', inputs amlInput;")
    sensor = reading(35.0)
    status, answer = post_urllib(url, {"inputName": "amlInput", "data": json.dumps(sensor), "messageId": "m-1"})
    assert (status, answer) == (202, {"message": "accepted", "messageId": "m-1"})

    [prediction] = sent(url, output="amlOutput", correlationId="m-1", wait=str(WAIT))
    assert prediction["module"] == "inference" and prediction["body"]["label"] == scorer.score([row(sensor)])[0]["label"]
    assert prediction["latency_ms"] is not None  # timed from the API's publish
    edge.wait_line("stdout", r"^amlOutput cid=m-1: ")

    env, note = modulecred()  # the edge's only module
    assert "ModuleId=inference;" in env["EdgeHubConnectionString"]
    assert env["HTTP_PORT"] == "0" and env["QUEUE_SIZE"] == "2048"  # the manifest's env
    assert "the edge runs 'inference' itself (pid " in note
    assert edge.stop() == 0


def test_modulecred_without_a_running_edge_says_so(state_dir: Path) -> None:
    done = run_cli("modulecred", "target", timeout=WAIT)
    assert done.returncode == 1 and "no local edge is running" in done.stderr and not done.stdout
