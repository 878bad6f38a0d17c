"""Rolling a model out through the local edge, under a steady sensor stream, as from IoT Hub: the
desired `model` names a bundle in the local blob store (SAS URLs, Range, injected faults).

One edge serves every scenario, in order (each builds on the store the last one left):
1. every download fault (403 after expiry, wrong sha256, truncated, reset, slow): the old model serves
   on and the reason is reported;
2. a download killed (SIGKILL) half way: the restarted module resumes it with a Range request and
   rolls out the new version (reported `active`), never serving a partial model;
3. a bad model: rolled back within its probation, reported `rolled-back` with the figures;
4. a restart: the module starts on the rolled-out version without downloading, and does not retry
   the rolled-back bundle;
then every sensor message has its outcome (QoS 1: a SIGKILL may repeat a few, as in test_faults), the
models serve in one order with one switch point each, and no log, reported document, metric or error record holds the SAS token.

And the README's walk-through by its own commands (subprocesses): `localedge run`, `app bundle`, `localedge
publish` (once with a fault, once good), the desired line it prints, `localedge twin` until `active`, predictions
on the new modelVersion from one message on, `localedge stop`.
"""

from __future__ import annotations

import collections
import json
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from app.model.bundle import write_bundle
from app.model.register import register
from app.model.simulator import FEATURES, LABELS, training_data
from localedge.blobstore import BlobStore, Fault
from localedge.deployment import load_deployment
from localedge.edge import LocalEdge
from localedge.processes import REPO_ROOT
from tests.conftest import DEFAULT_MODEL_DIR, DEFAULT_MODEL_VERSION
from tests.integration.conftest import mosquitto_or_skip
from tests.integration.test_faults import QOS1_DUPLICATES_PER_FAULT
from tests.integration.test_localedge import run_cli

SENSOR, MODEL = "tempSensor", "inference"
WAIT = 60.0
OLD, NEW, BAD = "temperature-anomaly", "temperature-rf", "temperature-bad"
V1, V2 = DEFAULT_MODEL_VERSION, DEFAULT_MODEL_VERSION + 1  # the default model, and it registered again


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, int]]:
    """NEW: the default forest under another name; BAD: a model whose run() fails on every real reading
    (-x then sqrt: NaN for positive values, which logistic regression refuses; scikit-learn >= 1.4's forests would
    take NaN) but passes the zero-row trial."""
    root = tmp_path_factory.mktemp("bundles")
    register(DEFAULT_MODEL_DIR / "model.pkl", root / "new", name=NEW, features=list(FEATURES), labels=list(LABELS))
    X, y = training_data(500, 5)
    bad = Pipeline(
        [("neg", FunctionTransformer(np.negative)), ("sqrt", FunctionTransformer(np.sqrt)), ("lr", LogisticRegression())]
    )
    joblib.dump(bad.fit(-np.abs(X), y), root / "bad.joblib")
    register(root / "bad.joblib", root / "bad", name=BAD, features=list(FEATURES), labels=list(LABELS))
    out = {}
    for name in ("new", "bad"):
        info = write_bundle(root / name, root / f"{name}.tar.gz")
        out[name] = (info.path, info.sha256, info.size)
    return out


def _spec(blobs: BlobStore, blob: str, name: str, sha: str, size: int, **sas: float) -> dict[str, Any]:
    return {"model": {"name": name, "version": 1, "url": blobs.sas_url(blob, **sas), "sha256": sha, "size": size}}


def _rollout(edge: LocalEdge, predicate: Any) -> dict[str, Any]:
    doc = edge.wait_reported(MODEL, lambda r: predicate(r.get("model", {}).get("rollout") or {}, r), WAIT)
    assert doc is not None, f"reported never matched: {edge.twins[MODEL].document()['reported'].get('model')}"
    return doc


@pytest.mark.timeout(420)
def test_rollout_faults_kill_rollback_restart_exactly_once_and_no_token_anywhere(
    bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mosquitto_or_skip()
    monkeypatch.setenv("LOCALEDGE_STATE_DIR", str(tmp_path / "state"))
    port = _free_port()
    env = [
        f"{SENSOR}:MessageCount=-1",
        f"{SENSOR}:MessageDelay=0.02",
        f"{MODEL}:HTTP_PORT={port}",
        f"{MODEL}:HTTP_HOST=127.0.0.1",
        f"{MODEL}:MODEL_DOWNLOAD_ATTEMPTS=2",
        f"{MODEL}:MODEL_DOWNLOAD_TIMEOUT_S=2",
        f"{MODEL}:MODEL_PROBATION_MESSAGES=100",
        f"{MODEL}:MODEL_PROBATION_S=20",
    ]
    (new, new_sha, new_size), (bad, bad_sha, bad_size) = bundles["new"], bundles["bad"]
    with BlobStore() as blobs, LocalEdge(load_deployment(None, env)) as edge:
        assert edge.upstream.wait_for(20, WAIT)
        urls: list[str] = []

        def want(blob: str, name: str, sha: str, size: int, **sas: float) -> None:
            patch = _spec(blobs, blob, name, sha, size, **sas)
            urls.append(patch["model"]["url"])
            edge.patch_desired(MODEL, patch)

        # 1. faults: the old model serves on, the reason is reported
        faults = {
            "truncate": (Fault("truncate", after=5000), "after 2 of 2 tries"),
            "reset": (Fault("reset", after=5000), "after 2 of 2 tries"),
            "corrupt": (Fault("corrupt"), "sha256 mismatch"),
            "slow": (Fault("slow", rate=4000), "timed out"),
        }
        for blob, (fault, _) in faults.items():
            blobs.put(blob, new)
            blobs.fault(blob, fault)
        blobs.put("new", new)
        cases = [("new", {"expires_in": -60.0}, "HTTP 403")] + [(blob, {}, why) for blob, (_, why) in faults.items()]
        for blob, sas, why in cases:
            want(blob, NEW, new_sha, new_size, **sas)
            doc = _rollout(edge, lambda ro, r, b=blob: ro.get("state") == "failed" and ro.get("source", "").endswith(f"/{b}"))
            rollout = doc["model"]["rollout"]
            assert why in rollout["reason"], (blob, rollout)
            assert doc["model"]["name"] == OLD and doc["status"] in ("ready", "degraded")
        assert len(blobs.requests_for("truncate")) == 2 and len(blobs.requests_for("corrupt")) == 1

        # 2. SIGKILL half way through a download; the restarted module resumes it
        blobs.put("killed", new)
        blobs.fault("killed", Fault("slow", rate=8000))
        part = edge.run_dir / "models" / MODEL / "downloads" / f"{new_sha}.part"  # type: ignore[operator]
        part.unlink(missing_ok=True)  # what the failed tries left: this download starts from nothing
        want("killed", NEW, new_sha, new_size)
        _rollout(edge, lambda ro, r: ro.get("state") == "downloading")
        assert edge.upstream.wait_until(lambda u: part.exists() and part.stat().st_size > 4096, WAIT)
        edge.kill_module(MODEL, signal.SIGKILL)
        had = part.stat().st_size
        assert 0 < had < new_size
        blobs.fault("killed", None)
        edge.restart_module(MODEL)
        doc = _rollout(edge, lambda ro, r: ro.get("state") == "active" and r["model"]["name"] == NEW)
        assert doc["model"]["rollout"]["version"] == 1 and doc["model"]["sha256"]
        ranges = [r.range for r in blobs.requests_for("killed")]
        assert ranges[0] == "" and any(r.startswith("bytes=") and int(r[6:-1]) > 0 for r in ranges[1:]), ranges
        assert not part.exists()

        # 3. a bad model: rolled back within probation, with the figures
        blobs.put("bad", bad)
        want("bad", BAD, bad_sha, bad_size)
        doc = _rollout(edge, lambda ro, r: ro.get("state") == "rolled-back")
        rollout = doc["model"]["rollout"]
        figures = rollout["probation"]
        assert rollout["name"] == BAD and figures["state"] == "failed"
        assert figures["failures"] > 0.05 * figures["windowMessages"] and figures["messages"] <= figures["windowMessages"]
        assert "in probation" in rollout["reason"]
        assert edge.wait_reported(MODEL, lambda r: r["model"]["name"] == NEW, WAIT) is not None

        # 4. a restart: on the rolled-out version, no download, the bad bundle not tried again
        requests_before = len(blobs.requests)
        edge.kill_module(MODEL, signal.SIGKILL)  # edgeAgent's restart after a crash: the journal replays the rest
        module = edge.restart_module(MODEL)
        # (the twin still holds step 3's rolled-back report: wait for the restarted module's own)
        doc = _rollout(edge, lambda ro, r: "not tried again" in (ro.get("reason") or "") and r["model"]["name"] == NEW)
        assert doc["model"]["rollout"]["state"] == "rolled-back"
        assert module.lines_with("starting on the model store's version in use")
        assert len(blobs.requests) == requests_before

        # the stream: stop the sensor, then every message has exactly one outcome, the models in one order
        edge.patch_desired(SENSOR, {"SendData": False})
        assert edge.wait_reported(SENSOR, lambda r: r.get("SendData") is False, WAIT) is not None
        assert edge.hub is not None
        sent = edge.hub.message_ids(SENSOR)
        arrived = edge.upstream.wait_until(lambda u: set(sent) <= set(u.correlation_ids()), WAIT)
        missing = [i for i, m in enumerate(sent) if m not in set(edge.upstream.correlation_ids())]
        assert arrived, f"{len(missing)} of {len(sent)} without an outcome, at positions {missing[:5]}...{missing[-5:]}"
        outcomes = list(edge.upstream.messages)
        counts = collections.Counter(m.correlation_id for m in outcomes)
        # QoS 1 is at least once: a SIGKILL (two here) may repeat the outcomes in flight, within the house's bound
        assert [i for i in sent if counts[i] == 0] == []
        assert sum(counts[i] - 1 for i in sent) <= 2 * QOS1_DUPLICATES_PER_FAULT
        model_of = {m.correlation_id: orjson.loads(m.body)["model"] for m in outcomes}
        runs = [name for i, name in enumerate(model_of[i] for i in sent) if i == 0 or name != model_of[sent[i - 1]]]
        assert runs == [OLD, NEW, BAD, NEW], runs

        # the SAS token: in no log, reported document, metric, error record, nor in the store's state
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert "edge_inference" in metrics
        assert edge.run_dir is not None
        texts = {
            **{str(p): p.read_text(errors="replace") for p in (edge.run_dir / "logs").glob("*.log")},
            **{str(p): p.read_text() for p in (edge.run_dir / "models").rglob("state.json")},
            "reported": orjson.dumps([t.document()["reported"] for t in edge.twins.values()]).decode(),
            "upstream": "\n".join(m.body.decode(errors="replace") for m in outcomes),
            "metrics": metrics,
        }
        assert any("rolled-back" in text for text in texts.values())  # the grep looks at the right things
        tokens = {url.split("?", 1)[1] for url in urls} | {url.split("sig=", 1)[1] for url in urls}
        leaks = {where: [t for t in tokens if t in text] for where, text in texts.items()}
        assert {where: found for where, found in leaks.items() if found} == {}


# --- the README's walk-through, by its own commands ------------------------------------------------------------------

POLL_S = 0.5  # how often a bounded wait asks the running edge again


def _until(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    """probe()'s first truthy answer, asked every POLL_S until `timeout`; fails the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while (answer := probe()) is None or answer is False:
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(POLL_S)
    return answer


@pytest.fixture
def edge_cli(state_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`python -m localedge run --json` under a steady sensor stream, its stdout in a file; stopped by PID (SIGTERM,
    then SIGKILL), bounded, also when the test fails."""
    mosquitto_or_skip()
    out = tmp_path / "run.jsonl"
    args = ["run", "--json", "--name", "walk", "--env", f"{SENSOR}:MessageCount=-1", "--env", f"{SENSOR}:MessageDelay=0.05"]
    with open(out, "wb") as stdout, open(tmp_path / "run.err", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "localedge", *args], cwd=REPO_ROOT, stdout=stdout, stderr=stderr)
    try:
        _until("the edge's control socket", lambda: (state_dir / "edges" / "walk").exists() or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "run.err").read_text()[-3000:]
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it stops its own children
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _predictions(out: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return [line["body"] for line in lines if not line.get("summary") and isinstance(line.get("body"), dict)]


def _rollout_of_twin() -> dict[str, Any]:
    done = run_cli("twin", MODEL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["reported"].get("model", {}).get("rollout") or {}


@pytest.mark.timeout(300)
def test_the_readme_walk_through_by_its_commands(edge_cli: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    proc, out = edge_cli
    v2 = tmp_path / "model-v2"
    shutil.copytree(DEFAULT_MODEL_DIR, v2)
    manifest = register(DEFAULT_MODEL_DIR / "model.pkl", v2, name=OLD, features=list(FEATURES), labels=list(LABELS))
    assert manifest.version == V2
    bundled = subprocess.run(
        [sys.executable, "-m", "app", "bundle", str(v2), "--out", str(tmp_path / "v2.tar.gz"), "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bundled.returncode == 0, bundled.stderr
    info = json.loads(bundled.stdout)
    _until("predictions of v1", lambda: len(_predictions(out)) >= 5)

    def publish_and_want(*extra: str) -> dict[str, Any]:
        published = run_cli("publish", str(tmp_path / "v2.tar.gz"), *extra)
        assert published.returncode == 0, published.stderr
        url_line, desired_line = published.stdout.strip().splitlines()
        command = shlex.split(desired_line)
        assert command[:5] == ["python", "-m", "localedge", "desired", MODEL] and url_line.startswith("url: http://127.0.0.1:")
        model = json.loads(command[5])["model"]
        assert (model["name"], model["version"], model["sha256"], model["size"]) == (OLD, V2, info["sha256"], info["size"])
        assert model["url"] == url_line.removeprefix("url: ")
        wanted = run_cli(*command[3:])  # the line as printed, run by this interpreter
        assert wanted.returncode == 0, wanted.stderr
        return model

    # a SAS URL that expired: refused with the reason, v1 serves on
    publish_and_want("--fault", "expired")
    failed = _until("a failed rollout", lambda: (r := _rollout_of_twin()).get("state") == "failed" and r)
    assert "HTTP 403" in failed["reason"] and failed["source"].endswith("/v2.tar.gz.expired")

    # the good one: active, and every prediction from one message on is v2's
    publish_and_want()
    active = _until("an active rollout", lambda: (r := _rollout_of_twin()).get("state") == "active" and r)
    assert (active["name"], active["version"], active["source"].endswith("/v2.tar.gz")) == (OLD, V2, True)
    _until("predictions of v2", lambda: sum(p.get("modelVersion") == V2 for p in _predictions(out)) >= 5)

    stopped = run_cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert proc.wait(timeout=60) == 0
    versions = [p["modelVersion"] for p in _predictions(out) if "modelVersion" in p]
    switch = versions.index(V2)
    assert switch >= 5 and set(versions[:switch]) == {V1} and set(versions[switch:]) == {V2}, versions
