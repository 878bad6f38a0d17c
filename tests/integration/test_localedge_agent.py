"""edgeAgent's duties on the local edge, with real processes: the inference module SIGKILLed x5 mid-stream under
`restartPolicy: always` and restarted by the supervisor each time with nothing lost (counted by id, through the
real SDK and real Mosquitto); other policies on modules that exit; createOptions' Env, WorkingDir and Binds as a
module sees them; two named edges reached by name, one stopped while the other stays reachable.

Every process is stopped by PID, bounded, also on failure (the fixtures, EdgeRun.stop, ModuleProcess.stop).
No sleeps: waits are conditions with bounds (the supervisor's restart count, a log line, the hub's count).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.edge_harness import MODEL, EdgeRun
from localedge.agent import Backoff
from localedge.deployment import DEFAULT_MANIFEST, load_deployment
from localedge.edge import LocalEdge
from localedge.processes import REPO_ROOT, ModuleProcess
from tests.integration.conftest import mosquitto_or_skip
from tests.integration.test_faults import QOS1_DUPLICATES_PER_FAULT
from tests.integration.test_localedge import run_cli

KILLS = 5
MESSAGES, RATE = 600, 60.0  # ~10 s of stream; the kills land at every sixth of it
WAIT = 60.0

# A module that is only a process: it logs where it runs and what it was given, then waits (or exits).
PROBE = """
import os, sys, time
print("probe: starting", file=sys.stderr, flush=True)
seen = " ".join(f"{k}={os.environ.get(k)}" for k in ("DATA", "GREETING", "FROM_MANIFEST"))
print(f"probe ready: cwd={os.getcwd()} {seen}", file=sys.stderr, flush=True)
if "EXIT_CODE" in os.environ:
    print("probe: giving up", file=sys.stderr, flush=True)
    sys.exit(int(os.environ["EXIT_CODE"]))
time.sleep(3600)
"""


def probe_manifest(directory: Path, modules: dict[str, dict[str, Any]]) -> tuple[Path, list[str]]:
    """A manifest of probe modules only (no routes): the path and the --command values that run them."""
    script = directory / "probe.py"
    script.write_text(PROBE)
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    agent = doc["modulesContent"]["$edgeAgent"]["properties.desired"]
    agent["modules"] = {
        name: {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always"}
        | fields
        | {"settings": {"image": f"example/{name}:1", **fields.get("settings", {})}}
        for name, fields in modules.items()
    }
    doc["modulesContent"] = {
        "$edgeAgent": doc["modulesContent"]["$edgeAgent"],
        "$edgeHub": {"properties.desired": {**doc["modulesContent"]["$edgeHub"]["properties.desired"], "routes": {}}},
    }
    path = directory / "deployment.probe.json"
    path.write_text(json.dumps(doc))
    return path, [f"{name}=python {script}" for name in modules]


# --- restartPolicy ------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_the_inference_module_killed_5_times_mid_stream_is_restarted_each_time_and_nothing_is_lost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    mosquitto_or_skip()
    run = EdgeRun(rate=RATE, backoff=Backoff().scaled(0.02))  # restarts after 0.2, 0.4, 0.8, 1.6, 3.2 s
    try:
        run.start()
        supervisor = run.edge.supervisor
        assert supervisor is not None and supervisor.policies[MODEL] == "always"
        pids = []
        for k in range(KILLS):
            assert run.wait_sent((k + 1) * MESSAGES // (KILLS + 1), WAIT)
            pids.append(run.model.pid)
            os.kill(run.model.pid, signal.SIGKILL)  # not through the edge: as the OOM killer would
            assert supervisor.wait_restarts(MODEL, k + 1, WAIT), f"restart {k + 1} did not happen:\n{capsys.readouterr().err}"
        run.end_stream(MESSAGES, WAIT)
        run.settle(10.0, 120.0)
    finally:
        run.stop()
    a = run.account()
    err = capsys.readouterr().err
    print(f"{KILLS} kills: {a}")
    assert [(e.module, e.pid, e.code, e.restarted) for e in supervisor.exits] == [(MODEL, p, -9, True) for p in pids]
    assert supervisor.restarts[MODEL] == KILLS and len(set(pids)) == KILLS
    for pid in pids:  # each exit printed with its signal, then the restart
        assert f"agent: module '{MODEL}' (pid {pid}) was killed by SIGKILL (code -9); restart" in err
    assert err.count(f"agent: module '{MODEL}' restarted (pid") == KILLS
    assert a.sent >= MESSAGES and a.unexpected == 0
    assert a.lost == 0, f"{a.lost} of {a.sent} have no outcome (e.g. {a.lost_sample})"
    assert a.predicted + a.errored >= a.sent
    assert a.duplicated <= QOS1_DUPLICATES_PER_FAULT * KILLS


@pytest.mark.timeout(90)
def test_each_policy_restarts_or_not_and_says_why_with_the_log(tmp_path: Path) -> None:
    mosquitto_or_skip()
    exits = {"settings": {"createOptions": {"Env": ["EXIT_CODE=3"]}}}
    manifest, commands = probe_manifest(
        tmp_path,
        {
            "crasher": {"restartPolicy": "on-failure", **exits},
            "quitter": {"restartPolicy": "never", **exits},
            "idle": {"restartPolicy": "on-failure", "status": "stopped"},
        },
    )
    said: list[str] = []
    edge = LocalEdge(load_deployment(manifest, [], commands), backoff=Backoff().scaled(0.01), say=said.append, control=False)
    try:
        edge.start()
        assert edge.supervisor is not None and edge.supervisor.wait_restarts("crasher", 2, WAIT)
    finally:
        edge.stop()
    assert "idle" not in edge.modules and "module 'idle': status stopped, not started (as edgeAgent)" in said
    crashes = [line for line in said if line.startswith("agent: module 'crasher'") and "exited with code 3" in line]
    assert len(crashes) >= 2 and "restart 1 in 0.1 s (restartPolicy on-failure)" in crashes[0]
    assert "    probe: giving up" in crashes[0]  # the log's last lines come with it
    (quit_line,) = [line for line in said if line.startswith("agent: module 'quitter'")]
    assert "exited with code 3; not restarted (restartPolicy never)" in quit_line
    assert [e.restarted for e in edge.supervisor.exits if e.module == "quitter"] == [False]


# --- createOptions ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_module_sees_create_options_env_working_dir_and_binds_as_host_paths(
    start_edge: Callable[..., LocalEdge], tmp_path: Path
) -> None:
    host = tmp_path / "host-data"
    options = {"Env": ["DATA=/data/in", "GREETING=hi"], "WorkingDir": "/data/work", "HostConfig": {"Binds": [f"{host}:/data"]}}
    env = {"GREETING": {"value": "from the manifest"}, "FROM_MANIFEST": {"value": "yes"}}
    manifest, commands = probe_manifest(tmp_path, {"probe": {"env": env, "settings": {"createOptions": options}}})
    said: list[str] = []
    edge = start_edge(manifest=manifest, say=said.append, commands=commands)
    line = edge.modules["probe"].wait_for_line("probe ready:", WAIT)
    assert f"cwd={host / 'work'} DATA={host / 'in'} GREETING=hi FROM_MANIFEST=yes" in line
    assert (host / "work").is_dir()
    assert f"module 'probe': /data is {host}" in said


# --- named edges --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_two_named_edges_are_reached_by_name_and_stopping_one_leaves_the_other(
    start_edge: Callable[..., LocalEdge], state_dir: Path, tmp_path: Path
) -> None:
    mosquitto_or_skip()
    manifest, commands = probe_manifest(tmp_path, {"probe": {}})
    second = start_edge(manifest=manifest, name="second", commands=commands)
    cli_args = ["run", "--manifest", str(manifest), "--name", "first", *(f"--command={c}" for c in commands)]
    first = ModuleProcess(dict(os.environ), args=("-m", "localedge", *cli_args), cwd=REPO_ROOT, executable=sys.executable)
    try:
        first.start().wait_ready(WAIT)  # "local edge 'first' ready: ..."
        assert "python -m localedge twin probe --edge first" in first.wait_for_line("twin:", WAIT)
        for name in ("first", "second"):
            done = run_cli("desired", "probe", json.dumps({"edge": name}), "--edge", name)
            assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
            done = run_cli("twin", "probe", "--edge", name)
            assert json.loads(done.stdout)["desired"]["edge"] == name
        done = run_cli("twin", "probe")
        assert done.returncode == 1 and "2 local edges are running (first, second): pick one with --edge NAME" in done.stderr

        done = run_cli("stop", "--edge", "first")
        assert (done.returncode, done.stdout.strip()) == (0, "stopping 'first'"), done.stderr
        assert first.wait_exit(WAIT) == 0
        assert "summary: " in first.log
    finally:
        first.stop()
    done = run_cli("twin", "probe")  # the only one left is the default
    assert done.returncode == 0 and json.loads(done.stdout)["desired"]["edge"] == "second"
    kept = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("first-")]
    assert len(kept) == 1 and (kept[0] / "probe.log").read_text().count("probe ready:") == 1  # logs kept after the run
    assert second.name == "second"
