"""`python -m deploy --layered-model`: a layered deployment that sets only the inference module's desired `model`,
its custom metric queries, every problem named before anything is written, and the SAS token never printed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.settings import REPO_ROOT
from deploy.layer import LAYER_KEY, main, metrics_path
from edgekit.urls import shown_url

SECRET = "SECRETSIGabc%2Bdef%3D"
NOW = datetime.now(UTC)
FAR = (NOW + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
BLOB = "https://acct.blob.core.windows.net/models/temperature-anomaly-2.tar.gz"
URL = f"{BLOB}?sv=2022-11-02&sp=r&se={FAR}&sr=b&sig={SECRET}"
SHA = "ab" * 32


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    code = main(["--layered-model", *args], environ=env or {})
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "sig=" not in out + err  # the token, in no message
    return code, out + err


def good(tmp_path: Path, *extra: str) -> list[str]:
    out = str(tmp_path / "l.json")
    return ["--name", "temperature-anomaly", "--version", "2", "--url", URL, "--sha256", SHA, "--out", out, *extra]


def test_the_layer_sets_only_the_module_s_desired_model_by_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = run(tmp_path, capsys, *good(tmp_path, "--size", "12345"))
    assert code == 0, said
    layer = json.loads((tmp_path / "l.json").read_text())
    assert layer == {
        "content": {
            "modulesContent": {
                "$edgeAgent": {},  # IoT Hub counts a layer valid only with one; empty, it adds no module
                "inference": {LAYER_KEY: {"name": "temperature-anomaly", "version": 2, "url": URL, "sha256": SHA, "size": 12345}},
            }
        }
    }
    assert (tmp_path / "l.json").stat().st_mode & 0o077 == 0  # it holds the token: the owner's only
    assert f"from {BLOB}?…" in said and "--deployment-id model-temperature-anomaly-v2" in said and "--priority 102" in said


def test_the_custom_metrics_count_devices_by_their_reported_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, capsys, *good(tmp_path, "--module", "scorer"))[0] == 0
    queries = json.loads(metrics_path(tmp_path / "l.json").read_text())["queries"]
    base = "SELECT deviceId FROM devices.modules WHERE moduleId = 'scorer' AND properties.reported.model"
    assert queries == {
        "onNewVersion": f"{base}.name = 'temperature-anomaly' AND properties.reported.model.version = 2",
        "rollingOut": f"{base}.rollout.version = 2 AND properties.reported.model.rollout.state IN ['downloading', 'verifying']",
        "rolledBack": f"{base}.rollout.version = 2 AND properties.reported.model.rollout.state = 'rolled-back'",
        "failed": f"{base}.rollout.version = 2 AND properties.reported.model.rollout.state = 'failed'",
    }


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (["--version", "-1"], ".version: schema: -1 is less than the minimum of 0"),
        (["--sha256", "AB" * 32], ".sha256: schema: "),
        (["--sha256", "ab" * 31], ".sha256: schema: "),
        (
            ["--url", f"http://acct.blob.core.windows.net/m.tgz?sig={SECRET}"],
            ".url: schema: 'http://acct.blob.core.windows.net/m.tgz?…'",
        ),
        (["--name", "bad'name"], ".name: schema: "),
        (["--size", "0"], ".size: schema: 0 is less than the minimum of 1"),
        (["--module", "in ference"], "module name 'in ference' does not match"),
        (["--url", URL.replace("sp=r", "sp=rwd")], "the SAS token grants sp=rwd"),
        (["--url", URL.replace(FAR, "2020-01-01")], "the SAS token expired at 2020-01-01"),
    ],
)
def test_a_bad_value_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: list[str], said: str
) -> None:
    code, text = run(tmp_path, capsys, *good(tmp_path, *change))  # argparse: the last of a repeated flag wins
    assert code == 2 and said in text and "no layered deployment written" in text
    assert not (tmp_path / "l.json").exists() and not metrics_path(tmp_path / "l.json").exists()


def test_a_token_expiring_within_a_week_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    soon = (NOW + timedelta(days=2)).strftime("%Y-%m-%d")
    code, text = run(tmp_path, capsys, *good(tmp_path, "--url", URL.replace(FAR, soon)))
    assert code == 0 and "warning: " in text and f"the SAS token expires at {soon}" in text


def test_the_url_can_come_from_the_environment_and_the_digest_from_the_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "m.tar.gz"
    bundle.write_bytes(b"x" * 3000)
    args = ["--name", "m", "--version", "3", "--from-bundle", str(bundle), "--out", str(tmp_path / "l.json")]
    assert run(tmp_path, capsys, *args, env={"MODEL_URL": URL})[0] == 0
    model = json.loads((tmp_path / "l.json").read_text())["content"]["modulesContent"]["inference"][LAYER_KEY]
    assert model == {"name": "m", "version": 3, "url": URL, "sha256": hashlib.sha256(b"x" * 3000).hexdigest(), "size": 3000}

    code, text = run(tmp_path, capsys, *args, "--sha256", SHA, env={"MODEL_URL": URL})
    assert code == 2 and f"{SHA} is not the bundle's sha256" in text
    code, text = run(tmp_path, capsys, "--name", "m", "--version", "3", "--sha256", SHA)
    assert code == 2 and "missing --url" in text


def test_shown_url_keeps_which_blob_and_drops_what_grants_access() -> None:
    assert shown_url(URL) == f"{BLOB}?…"
    assert shown_url("https://user:pw@host:8443/a/b?sig=x#f") == "https://host:8443/a/b?…"
    assert shown_url("https://host/a") == "https://host/a"


@pytest.mark.timeout(60)
def test_python_m_deploy_dispatches_to_the_layer(tmp_path: Path) -> None:
    out = tmp_path / "l.json"
    args = ["--layered-model", "--name", "m", "--version", "1", "--sha256", SHA, "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        cwd=REPO_ROOT,
        env={"MODEL_URL": URL, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr and out.exists()
