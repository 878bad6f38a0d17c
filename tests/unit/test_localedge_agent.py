"""edgeAgent's duties on the local edge, in process: the restart back-off's arithmetic and the policies,
createOptions (Env, WorkingDir, Binds) read and applied, the summary's outcome counting by body shape, edge names
for the control commands, and the kept runs' logs. Processes and brokers: tests/integration/test_localedge_agent.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from localedge import runs
from localedge.agent import ALWAYS, NEVER, ON_FAILURE, ON_UNHEALTHY, Backoff, describe_exit, restarts_after
from localedge.control import ControlServer, NoEdgeRunning, edge_name, request, resolve_edge, running_edges
from localedge.create_options import Bind, CreateOptions, apply, host_path, parse_bind, parse_create_options
from localedge.deployment import DEFAULT_MANIFEST, DeploymentError, load_deployment
from localedge.errors import EdgeError
from localedge.upstream import UpstreamRecorder, count_outcomes

# --- the back-off -------------------------------------------------------------------------------


def test_the_back_off_is_edgeagents_doubling_cool_off_capped_at_five_minutes() -> None:
    backoff = Backoff()
    assert (backoff.max_restarts, backoff.intensive_care_s) == (20, 600.0)
    assert [backoff.cool_off(n) for n in range(8)] == [10, 20, 40, 80, 160, 300, 300, 300]


def test_a_scaled_back_off_keeps_its_shape() -> None:
    fast = Backoff().scaled(0.1)
    assert [round(fast.cool_off(n), 6) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert (fast.max_restarts, fast.intensive_care_s) == (20, pytest.approx(60.0))


@pytest.mark.parametrize(
    ("policy", "code", "unhealthy", "restarted"),
    [
        (ALWAYS, 0, False, True),
        (ALWAYS, -9, False, True),
        (ON_FAILURE, 0, False, False),
        (ON_FAILURE, 3, False, True),
        (ON_FAILURE, -9, False, True),
        (ON_UNHEALTHY, 0, False, False),
        (ON_UNHEALTHY, 0, True, True),
        (ON_UNHEALTHY, 1, False, True),
        (NEVER, 1, True, False),
        (NEVER, -9, False, False),
    ],
)
def test_each_policy_restarts_what_iot_edge_documents(policy: str, code: int, unhealthy: bool, restarted: bool) -> None:
    assert restarts_after(policy, code, unhealthy) is restarted


def test_an_exit_is_described_by_its_code_or_signal() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL (code -9)"
    assert describe_exit(-15) == "was killed by SIGTERM (code -15)"


# --- createOptions ------------------------------------------------------------------------------


def manifest_with(tmp_path: Path, module: str = "inference", **fields: Any) -> Path:
    """The template with settings/fields of one module replaced (e.g. createOptions, restartPolicy, env)."""
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    raw = doc["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][module]
    for key, value in fields.items():
        if key.startswith("createOptions"):
            raw["settings"][key] = value
        else:
            raw[key] = value
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(doc))
    return path


def test_create_options_env_wins_over_the_manifest_env_and_env_flags_win_over_both(tmp_path: Path) -> None:
    options = {"Env": ["QUEUE_SIZE=99", "MAX_BATCH_SIZE=7", "EXTRA=a=b"], "WorkingDir": "/data/work"}
    path = manifest_with(tmp_path, createOptions=options)
    model = load_deployment(path, ["inference:MAX_BATCH_SIZE=8"]).modules["inference"]
    assert model.env["QUEUE_SIZE"] == "99"  # the manifest's env says 2048: edgelet merges Env over it
    assert model.env["MAX_BATCH_SIZE"] == "8" and model.env["EXTRA"] == "a=b"
    assert model.create.working_dir == "/data/work" and model.create.binds == ()


def test_a_deployed_manifests_split_create_options_are_joined(tmp_path: Path) -> None:
    text = json.dumps({"Env": ["A=1"], "HostConfig": {"Binds": ["/srv/data:/data:ro"]}})
    path = manifest_with(tmp_path, createOptions=text[:20], createOptions01=text[20:])
    model = load_deployment(path).modules["inference"]
    assert model.env["A"] == "1"
    assert model.create.binds == (Bind("/srv/data", "/data", read_only=True),)


def test_the_templates_named_volume_is_a_bind_of_the_run() -> None:
    model = load_deployment(None).modules["inference"]
    (bind,) = model.create.binds
    assert (bind.source, bind.target, bind.named_volume) == ("edge-inference-journal", "/var/lib/edge-inference", True)
    assert bind.host_path(Path("/run/volumes")) == Path("/run/volumes/edge-inference-journal")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("./data:/data", "is relative"),
        ("data/x:/data", "is relative"),
        ("/srv:data", "must be absolute"),
        ("/srv:/data:rw,bogus", "unknown option(s) bogus"),
        ("/srv", "write"),
        (42, "write"),
    ],
)
def test_a_bad_bind_is_named(entry: Any, problem: str) -> None:
    bind, found = parse_bind(entry)
    assert bind is None and found is not None and problem in found


def test_bad_create_options_are_deployment_problems_all_at_once(tmp_path: Path) -> None:
    options = {"Env": ["=x", "OK=1"], "WorkingDir": "relative", "HostConfig": {"Binds": ["./a:/a", "/b:b"]}}
    path = manifest_with(tmp_path, createOptions=options, restartPolicy="sometimes")
    with pytest.raises(DeploymentError) as caught:
        load_deployment(path)
    text = str(caught.value)
    assert len(caught.value.problems) == 5, text
    for part in ("Env entry '=x'", "WorkingDir 'relative'", "'./a' is relative", "'b' must be absolute", "'sometimes'"):
        assert part in text


def test_create_options_that_are_not_json_are_a_problem() -> None:
    assert parse_create_options({"createOptions": "{not json"})[1][0].startswith("createOptions is not JSON")


def test_a_container_path_reaches_the_module_as_the_host_path(tmp_path: Path) -> None:
    host = tmp_path / "srv"
    options = CreateOptions(
        env={},
        working_dir="/data/work",
        binds=(Bind(str(host), "/data"), Bind("cache", "/data/cache", read_only=True)),
    )
    env = {"DATA": "/data", "FILE": "/data/in/x.csv", "CACHE": "/data/cache/c", "OTHER": "/database", "PLAIN": "data"}
    applied = apply("m", env, options, tmp_path / "volumes")
    assert applied.env == {
        "DATA": str(host),
        "FILE": str(host / "in/x.csv"),
        "CACHE": str(tmp_path / "volumes/cache/c"),  # the innermost mount wins
        "OTHER": "/database",
        "PLAIN": "data",
    }
    assert host.is_dir() and (tmp_path / "volumes/cache").is_dir()  # created, as Docker creates a bind's source
    assert applied.cwd == host / "work" and applied.cwd.is_dir()
    assert any("(read-only is not enforced)" in note for note in applied.notes)
    assert host_path("/elsewhere", [("/data", host)]) == "/elsewhere"


def test_a_working_dir_outside_the_binds_that_does_not_exist_is_said_and_not_used(tmp_path: Path) -> None:
    applied = apply("m", {}, CreateOptions(working_dir="/no/such/dir/here"), tmp_path)
    assert applied.cwd is None and "does not exist here" in applied.notes[-1]
    assert apply("m", {}, CreateOptions(working_dir=str(tmp_path)), tmp_path).cwd == tmp_path


# --- the summary: outcomes by what a module sends -------------------------------------------------


PREDICTION = {"label": "anomaly", "probability": 0.97, "model": "m", "modelVersion": 1}
ERROR_RECORD = {"code": "not_json", "reason": "the body is not JSON", "inputMessageId": "m-1"}


@pytest.mark.parametrize(
    ("output", "body", "error_output", "counted"),
    [
        ("out", PREDICTION, None, (1, 0)),
        ("out", {"value": 3.2}, None, (1, 0)),
        ("out", {"prediction": [1, 2]}, None, (1, 0)),
        ("out", {"predictions": [PREDICTION] * 3, "model": "m"}, None, (3, 0)),
        ("out", ERROR_RECORD, None, (0, 1)),
        ("errors", {"anything": 1}, "errors", (0, 1)),  # our module's error output, whatever the body
        ("out", json.dumps(PREDICTION), None, (1, 0)),  # double-encoded
        ("out", {"machine": {"temperature": 20.0}}, None, (0, 0)),  # a reading: other
        ("out", [1, 2], None, (0, 0)),
        ("out", "not json", None, (0, 0)),
    ],
)
def test_outcomes_are_counted_by_body_shape_for_any_module(
    output: str, body: Any, error_output: str | None, counted: tuple[int, int]
) -> None:
    raw = body.encode() if body == "not json" else orjson.dumps(body)
    assert count_outcomes(output, raw, error_output) == counted


def test_the_summary_counts_other_modules_outcomes_and_what_is_neither() -> None:
    recorder = UpstreamRecorder(lambda module: None)  # no module is ours: only shapes count
    for body in (PREDICTION, ERROR_RECORD, {"predictions": [PREDICTION, PREDICTION]}, {"machine": {}}):
        recorder.record("custom", "out", {}, orjson.dumps(body), 0.0)
    summary = recorder.summary()
    assert (summary["upstream_messages"], summary["predictions"], summary["errors"], summary["other"]) == (4, 3, 1, 1)


# --- edge names and control ---------------------------------------------------------------------


def test_an_edge_name_comes_from_any_folder_name() -> None:
    assert edge_name("edge-inference-module-runtime") == "edge-inference-module-runtime"
    assert edge_name("my solution (copy)") == "my-solution-copy"
    assert edge_name("...") == "edge"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALEDGE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def serve(directory: Path, name: str) -> ControlServer:
    return ControlServer(directory / f"{name}.sock", lambda request: {"edge": name, **request}, name).start()


def test_requests_reach_the_edge_named_and_the_only_one_by_default(state: Path) -> None:
    with pytest.raises(NoEdgeRunning, match="no local edge is running"):
        resolve_edge(None)
    first = serve(state, "first")
    try:
        assert request({"command": "status"}) == {"edge": "first", "command": "status"}
        second = serve(state, "second")
        try:
            assert set(running_edges()) == {"first", "second"}
            with pytest.raises(EdgeError, match=r"2 local edges are running \(first, second\): pick one with --edge NAME"):
                request({"command": "status"})
            assert request({"command": "x"}, edge="second")["edge"] == "second"
            assert request({"command": "x"}, edge="first")["edge"] == "first"
            with pytest.raises(NoEdgeRunning, match="no local edge named 'third' is running"):
                request({"command": "x"}, edge="third")
            with pytest.raises(EdgeError, match="already running"):
                serve(state, "second")
        finally:
            second.stop()
        assert request({"command": "status"})["edge"] == "first"  # stopping one leaves the other reachable
    finally:
        first.stop()
    assert running_edges() == {}


def test_a_stale_state_file_is_not_a_running_edge(state: Path) -> None:
    server = serve(state, "gone")
    server.socket_path.unlink()  # as after a SIGKILL: the file stays, its socket is gone
    try:
        assert running_edges() == {}
    finally:
        server.stop()
    serve(state, "gone").stop()  # and its name can be taken again


# --- kept runs ----------------------------------------------------------------------------------


def test_runs_are_kept_up_to_n_and_clean_spares_the_running(tmp_path: Path) -> None:
    made = [runs.new_run("edge", keep=3, root=tmp_path) for _ in range(5)]
    assert [p.name for p in runs.past_runs(tmp_path)] == [p.name for p in made[-3:]]
    removed = runs.clean(0, tmp_path, spare=frozenset({made[-1]}))
    assert removed == made[-3:-1] and runs.past_runs(tmp_path) == [made[-1]]


def test_runs_live_under_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOCALEDGE_RUNS_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert runs.runs_root() == tmp_path / "localedge" / "runs"
