"""edgeHub's duties that a module depends on, through the local edge: real SDK clients, real Mosquitto, the sensor's
stream, every outcome counted by the id of the input it answers (sent, predicted, errored, lost, duplicated).

- `restart_hub()` (every broker) x3 mid-stream; SAS tokens of 60 s renewed mid-stream (bench/faults.py's scenarios);
- a broker SIGKILLed while it holds a queue for the module: restarted by the local edge, nothing lost;
- store-and-forward: what is routed to a module while it is down is kept on disk and delivered when it is back;
  past the route's TTL it is dropped and counted, never delivered late.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.edge_harness import MODEL, SENSOR, EdgeRun
from bench.faults import Result, Sizes, run_scenario
from localedge.deployment import DEFAULT_MANIFEST
from localedge.edge import LocalEdge
from tests.integration.conftest import mosquitto_or_skip
from tests.integration.test_faults import QOS1_DUPLICATES_PER_FAULT, assert_exactly_once
from tests.integration.test_localedge import run_cli

WAIT = 60.0  # bound on each wait for the stream or the module
SIZES = Sizes(messages=300, rate=50, repeats=3, stop_s=3, outage_s=5, recover_s=60, quiet_s=20, watchdog_s=30)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """A bounded wait on a condition the local edge has no event for (its forwarder's counters)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.05)


@pytest.fixture
def edge_run() -> Iterator[Callable[..., EdgeRun]]:
    """edge_run(**EdgeRun options) -> a started EdgeRun; every process stopped by PID after the test, passed or failed."""
    mosquitto_or_skip()
    runs: list[EdgeRun] = []

    def start(**options: object) -> EdgeRun:
        run = EdgeRun(**options)  # type: ignore[arg-type]
        runs.append(run)
        return run.start()

    yield start
    for run in runs:
        run.stop()


def report(name: str, result: Result) -> None:
    print(f"{name}: {result.accounting}, recoveries {result.recoveries}, {result.seconds:.0f} s, notes {result.notes}")


@pytest.mark.timeout(420)
def test_three_hub_restarts_mid_stream_every_message_has_an_outcome() -> None:
    mosquitto_or_skip()
    result = run_scenario("hub-restart", SIZES)
    report("hub-restart x3", result)
    assert_exactly_once(result, faults=SIZES.repeats)
    assert len(result.recoveries) == SIZES.repeats


@pytest.mark.timeout(300)
def test_sas_tokens_of_60_s_are_renewed_mid_stream_and_every_message_has_an_outcome() -> None:
    mosquitto_or_skip()
    sizes = Sizes(messages=1900, rate=20, repeats=0, stop_s=0, outage_s=0, recover_s=60, quiet_s=20, watchdog_s=30)
    result = run_scenario("token-ttl", sizes)  # ~95 s of stream: renewals at ~45 s and ~90 s (margin 15 s)
    report("token TTL 60 s", result)
    a = result.accounting
    assert result.error is None, result.error
    assert a.sent >= sizes.messages and a.lost == 0 and a.unexpected == 0, result.evidence
    assert a.duplicated <= QOS1_DUPLICATES_PER_FAULT * 2  # each renewal is a reconnect
    connects = next(note for note in result.notes if note.startswith("connects per module"))
    counts = json.loads(connects.split(": ", 1)[1].replace("'", '"'))
    assert counts[MODEL] >= 2 and counts[SENSOR] >= 2, f"no renewal seen in the brokers' logs: {counts}"


@pytest.mark.timeout(240)
def test_a_broker_sigkilled_with_a_queue_is_restarted_and_loses_nothing(edge_run: Callable[..., EdgeRun]) -> None:
    run = edge_run(rate=50, env=[f"{MODEL}:WATCHDOG_S=30"])
    edge = run.edge
    assert run.outcomes.wait_total(20, WAIT)
    edge.signal_module(MODEL, signal.SIGSTOP)  # connected and subscribed: its broker queues for it
    assert edge.hub is not None
    queued_from = edge.hub.forwarded[MODEL]
    wait_until(lambda: edge.hub is not None and edge.hub.forwarded[MODEL] >= queued_from + 50, WAIT, "50 queued")
    broker = edge.brokers[MODEL]
    assert broker.process is not None
    broker.process.kill()  # a crash: nobody asked it to stop
    assert edge.broker_watch is not None and edge.broker_watch.wait_restarts(MODEL, 1, WAIT)
    edge.signal_module(MODEL, signal.SIGCONT)
    run.end_stream(run.sent, WAIT)
    run.settle(45, 150)  # a module left deaf by the drop is restarted after its watchdog's 30 s
    a = run.account()
    print(f"broker SIGKILL with a queue: {a}, exits {run.exits}")
    assert a.sent >= 70 and a.lost == 0 and a.unexpected == 0, a.lost_sample
    assert a.duplicated <= QOS1_DUPLICATES_PER_FAULT


@pytest.mark.timeout(180)
def test_messages_for_a_module_that_is_down_are_stored_and_delivered_when_it_is_back(edge_run: Callable[..., EdgeRun]) -> None:
    run = edge_run(rate=50)
    edge = run.edge
    assert run.outcomes.wait_total(20, WAIT) and edge.hub is not None
    forwarder = edge.hub.forwarders[MODEL]
    with run.control:  # down until we restart it (not the harness's edgeAgent)
        assert run.kill(signal.SIGTERM) == 0  # it unsubscribes first: without the store, what comes now would be dropped
        wait_until(lambda: forwarder.counts()["pending"] >= 100, WAIT, "100 messages stored")
        assert forwarder.store.path.is_relative_to(edge.run_dir) and forwarder.store.size_bytes() > 0  # type: ignore[arg-type]
        run.restart()
    run.end_stream(run.sent, WAIT)
    assert forwarder.wait_drained(WAIT)
    run.settle(10, 60)
    a, counts = run.account(), forwarder.counts()
    print(f"store-and-forward: {a}, store {counts}")
    assert a.lost == 0 and a.unexpected == 0 and a.duplicated == 0, a.lost_sample
    assert counts["stored"] >= 100 and counts["delivered_from_store"] == counts["stored"] and counts["expired"] == 0


def manifest_with_ttl(directory: Path, ttl_s: int) -> Path:
    """The repository's template with the sensor -> model route in the object form, carrying its own TTL."""
    doc = json.loads(DEFAULT_MANIFEST.read_text())
    routes = doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
    name = next(n for n, r in routes.items() if f"/modules/{MODEL}/inputs/" in str(r))
    routes[name] = {"route": routes[name], "priority": 0, "timeToLiveSecs": ttl_s}
    path = directory / "deployment.ttl.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.timeout(180)
def test_stored_messages_past_the_route_ttl_are_counted_and_never_delivered(
    edge_run: Callable[..., EdgeRun], tmp_path: Path
) -> None:
    ttl_s = 3
    run = edge_run(rate=50, manifest=manifest_with_ttl(tmp_path, ttl_s))
    edge = run.edge
    assert run.outcomes.wait_total(20, WAIT) and edge.hub is not None
    forwarder = edge.hub.forwarders[MODEL]
    with run.control:
        assert run.kill(signal.SIGTERM) == 0
        wait_until(lambda: forwarder.counts()["expired"] >= 50, WAIT, f"50 stored messages past {ttl_s} s")
        run.restart()  # the store still holds the last ~3 s of the stream: those are delivered
    run.end_stream(run.sent, WAIT)
    assert forwarder.wait_drained(WAIT)
    run.settle(10, 60)
    a, expired = run.account(), set(forwarder.expired_ids())
    with run.outcomes._cond:
        answered = set(run.outcomes.count)
    print(f"TTL {ttl_s} s: {a}, store {forwarder.counts()}")
    assert len(expired) == forwarder.counts()["expired"] >= 50
    assert not expired & answered, "an expired message was delivered"
    assert expired | answered == run.sent_ids() and a.unexpected == 0  # every other message has its outcome
    assert a.lost == len(expired) and a.duplicated == 0


@pytest.mark.timeout(120)
def test_restart_hub_from_another_terminal_restarts_every_broker(start_edge: Callable[..., LocalEdge], state_dir: Path) -> None:
    edge = start_edge(f"{SENSOR}:MessageCount=0")
    pids = {name: b.process.pid for name, b in edge.brokers.items() if b.process is not None}
    done = run_cli("restart-hub", "--down", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"edgeHub restarted: {', '.join(sorted(edge.brokers))}"
    after = {name: b.process.pid for name, b in edge.brokers.items() if b.process is not None}
    assert after.keys() == pids.keys() and all(after[n] != pids[n] for n in pids)
    assert edge.invoke(MODEL, "getStatus", {}, timeout=WAIT)[0] == 200  # its twin and methods are served again
