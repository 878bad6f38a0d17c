"""The commands a person runs, as subprocesses: score FILE, simulate, serve and health, register, train, the
manifest generator, config errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import joblib
import numpy as np
import orjson

from app.model.modeldir import sha256_of
from app.settings import REPO_ROOT
from tests.conftest import DEFAULT_MODEL_DIR
from tests.helpers import body, reading, row
from tests.unit import test_manifest
from tests.unit.test_manifest import desired

project = test_manifest.project  # the manifest tests' project directory, a fixture

EDGE_VARS = ("EdgeHubConnectionString", "EdgeModuleCACertificateFile", "IOTEDGE_IOTHUBHOSTNAME", "IOTEDGE_WORKLOADURI")


def _app(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in EDGE_VARS and k != "AZUREML_MODEL_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO_ROOT,
        env=full_env,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_score_file_gives_one_line_per_input_line_in_order(tmp_path: Path) -> None:
    good = [reading(20.0 + i * 3, None if i % 4 else 9.9) for i in range(30)]
    lines: list[bytes] = []
    expected: list[object] = []
    for i, r in enumerate(good):
        lines.append(body(r))
        expected.append(row(r))
        if i % 7 == 3:
            lines.append(b"this is not json")
            expected.append("not_json")
        if i % 11 == 5:
            lines.append(b'{"data": [[1, 2]]}')
            expected.append("wrong_width")
    lines.append(json.dumps(json.dumps(good[0])).encode())  # double-encoded
    expected.append(row(good[0]))
    lines.append(b"")  # an empty line is a message too
    expected.append("not_json")
    source = tmp_path / "recorded.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")

    result = _app("score", str(source))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().splitlines()
    assert len(out) == len(lines)
    model = joblib.load(DEFAULT_MODEL_DIR / "model.pkl")
    for want, line in zip(expected, out, strict=True):
        doc = orjson.loads(line)
        if isinstance(want, str):
            assert doc["code"] == want
        else:
            label = ["normal", "anomaly"][model.predict(np.array([want]))[0]]
            assert doc["label"] == label
            assert doc["probability"] == round(float(model.predict_proba(np.array([want])).max()), 4)
    assert f"{len(lines)} lines" in result.stderr.decode()


def test_score_reads_stdin() -> None:
    result = _app("score", "-", stdin=body(reading(40.0)) + b"\n" + body([reading(50.0), reading(60.0, 9.9)]) + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    first, second = (orjson.loads(x) for x in result.stdout.splitlines())
    assert first["label"] == "normal"
    assert [p["label"] for p in second["predictions"]] == ["normal", "anomaly"]


def test_simulate_json_accounts_for_every_message() -> None:
    result = _app("simulate", "--messages", "700", "--bad-every", "9", "--json")
    assert result.returncode == 0, result.stderr.decode()
    lines = [orjson.loads(x) for x in result.stdout.splitlines()]
    summary, outputs = lines[-1], lines[:-1]
    assert summary["messages"] == 700
    assert summary["errors"] == 700 // 9
    assert summary["predictions"] + summary["errors"] == 700
    assert len(outputs) == 700
    assert len({o["correlationId"] for o in outputs}) == 700
    assert sum(1 for o in outputs if o["output"] == "errorOutput") == summary["errors"]
    assert summary["msgs_per_s"] > 0 and summary["elapsed_s"] > 0
    assert summary["messages_per_prediction"] == 1.0


def test_simulate_aggregate_reports_fewer_messages_per_prediction() -> None:
    result = _app("simulate", "--messages", "400", "--json", "--aggregate")
    summary = orjson.loads(result.stdout.splitlines()[-1])
    assert summary["predictions"] == 400
    assert summary["messages_per_prediction"] < 0.1


def test_invalid_settings_are_all_reported() -> None:
    result = _app("simulate", env={"MAX_BATCH_SIZE": "0", "AGGREGATE": "maybe", "QUEUE_SIZE": "x"})
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "AGGREGATE='maybe': expected true or false" in err
    assert "QUEUE_SIZE='x'" in err


def test_module_without_an_edge_environment_says_what_to_do() -> None:
    result = _app()
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "IoT Edge environment not configured correctly" in err
    assert "python -m app simulate" in err


def test_broken_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    result = _app("simulate", "--messages", "1", env={"MODEL_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "model.json is missing" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_azureml_model_dir_is_honoured(tmp_path: Path) -> None:
    result = _app("simulate", "--messages", "1", env={"AZUREML_MODEL_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert str(tmp_path / "model.json") in result.stderr.decode()


def test_register_command(tmp_path: Path) -> None:
    target = tmp_path / "model"
    ok = _app(
        "register",
        str(DEFAULT_MODEL_DIR / "model.pkl"),
        "--name",
        "copy",
        "--features",
        "machine.temperature,machine.pressure,ambient.temperature,ambient.humidity",
        "--labels",
        "normal,anomaly",
        "--tag",
        "origin=test",
        "--model-dir",
        str(target),
    )
    assert ok.returncode == 0, ok.stderr.decode()
    assert "registered copy v1" in ok.stdout.decode()
    assert json.loads((target / "model.json").read_text())["tags"] == {"origin": "test"}
    bad = _app("register", str(DEFAULT_MODEL_DIR / "model.json"), "--name", "x", "--features", "a", "--model-dir", str(target))
    assert bad.returncode == 2
    assert "cannot be loaded" in bad.stderr.decode()


def test_training_reproduces_the_committed_model(tmp_path: Path) -> None:
    result = _app("train", env={"MODEL_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr.decode()
    assert sha256_of(tmp_path / "model.pkl") == sha256_of(DEFAULT_MODEL_DIR / "model.pkl")
    assert sha256_of(tmp_path / "model.onnx") == sha256_of(DEFAULT_MODEL_DIR / "model.onnx")  # skl2onnx is deterministic


def test_module_that_cannot_reach_edgehub_says_so_and_exits_1(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"), "-out", str(ca),
         "-days", "1", "-subj", "/CN=test"],
        check=True, capture_output=True,
    )  # fmt: skip
    nobody = "127.0.0.251"  # nothing listens on 8883 there
    conn = f"HostName=hub;DeviceId=dev;ModuleId=inference;GatewayHostName={nobody};SharedAccessKey=a2V5"
    result = _app(env={"EdgeHubConnectionString": conn, "EdgeModuleCACertificateFile": str(ca), "HTTP_PORT": "0"})
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "cannot connect to edgeHub" in err
    assert "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_command_answers_and_stops_on_sigterm() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AZUREML_MODEL_DIR", "MODEL_DIR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:  # bounded: the server is up once /ready answers 200
                try:
                    async with session.get(f"http://127.0.0.1:{port}/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "serve did not become ready"
                await asyncio.sleep(0.1)
            async with session.post(f"http://127.0.0.1:{port}/score", data=body(reading(60.0, 9.9))) as resp:
                assert resp.status == 200
                assert (await resp.json())["label"] == "anomaly"
        probe = subprocess.run(  # what the images' HEALTHCHECK runs
            [sys.executable, "-m", "app", "health"], cwd=REPO_ROOT, env={**env, "HTTP_PORT": str(port)}, check=False
        )
        assert probe.returncode == 0
        other = subprocess.run(
            [sys.executable, "-m", "app", "health"],
            cwd=REPO_ROOT,
            env={**env, "HTTP_PORT": str(_free_port())},
            capture_output=True,
            check=False,
        )
        assert other.returncode == 1 and b"unhealthy" in other.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        proc.stderr.close()


def test_manifest_command_writes_both_platforms(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINER_REGISTRY_")}
    args = ["--env", str(project / ".env.example"), "--out", str(project / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "deploy", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        f"wrote {project / 'out/deployment.amd64.json'}",
        f"wrote {project / 'out/deployment.arm32v7.json'}",
    ]
    doc = json.loads((project / "out/deployment.arm32v7.json").read_text())
    assert desired(doc)["modules"]["inference"]["settings"]["image"] == "myregistry.azurecr.io/edge-inference:0.1.0-arm32v7"
