"""A CI-sized slice of `python -m bench.faults`: faults injected into the local edge mid-stream, accounted by id.

Each test runs one scenario of bench/faults.py on short streams (the whole deployment, real processes, real
brokers; every process stopped by PID when the scenario ends, passed or failed) and checks the accounting by
message id: every sensor message has an outcome upstream (lost == 0) and none has more than QoS 1 allows.

QoS 1 is at-least-once: a message in flight on a hop when a connection drops may be delivered again. So a fault
may double at most what was in flight on each QoS 1 hop at that moment: Mosquitto's max_inflight_messages (20,
broker -> module), the module's MAX_SENDS_IN_FLIGHT (32, module -> broker) and paho's window on the hub's link
(20, hub -> broker): 72 per fault.

Scenarios that can still lose messages are marked xfail (not strict), naming what is left; each passes when the
run happens to avoid it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.faults import Result, Sizes, run_scenario
from tests.integration.conftest import mosquitto_or_skip

QOS1_DUPLICATES_PER_FAULT = 20 + 32 + 20
# The SDK retries a lost connection every 20 s; a deaf module's watchdog (30 s here) makes it exit, the harness
# restarts it as edgeAgent would, and recover_s leaves room for that and no more: CI must not wait long on a fault.
SIZES = Sizes(messages=200, rate=100, repeats=1, stop_s=3, outage_s=5, recover_s=45, quiet_s=20, watchdog_s=30)


def run(name: str, sizes: Sizes = SIZES) -> Result:
    mosquitto_or_skip()
    result = run_scenario(name, sizes)
    a = result.accounting
    print(f"{name}: {a}, recoveries {result.recoveries}, {result.seconds:.0f} s, notes {result.notes}")
    return result


def assert_exactly_once(result: Result, faults: int) -> None:
    a = result.accounting
    assert result.error is None, result.error
    assert a.sent >= SIZES.messages and a.unexpected == 0
    assert a.lost == 0, f"{a.lost} of {a.sent} sensor messages have no outcome upstream (e.g. {a.lost_sample}); {result.evidence}"
    assert a.duplicated <= QOS1_DUPLICATES_PER_FAULT * faults
    assert result.resumed_s is not None, f"nothing answered after the fault: {result.recoveries}"


@pytest.mark.timeout(60)
def test_a_stopped_module_loses_nothing_when_it_continues() -> None:
    assert_exactly_once(run("sigstop"), faults=1)


@pytest.mark.xfail(
    strict=False,
    reason="paho-mqtt 1.6.1's network thread can die on ssl.SSLEOFError when the broker goes away while it writes, "
    "leaving the module connected-looking but deaf; the watchdog's exit (WATCHDOG_S, 30 s here) and the harness's "
    "edgeAgent restart bring it back with its journal",
)
@pytest.mark.timeout(120)
def test_a_broker_restart_mid_stream_loses_nothing() -> None:
    assert_exactly_once(run("broker-restart"), faults=1)


@pytest.mark.timeout(60)
def test_a_killed_and_restarted_module_loses_nothing() -> None:
    # Inputs are journaled on paho's thread before paho acknowledges them (app/edgehub/intake.py): none in between.
    assert_exactly_once(run("module-kill"), faults=1)


@pytest.mark.timeout(120)
def test_an_input_that_kills_the_module_is_set_aside_and_the_others_flow() -> None:
    result = run("poison")
    # Three deaths (REPLAY_LIMIT 3): with its batch, then alone twice; each restart replays what had no outcome.
    assert_exactly_once(result, faults=3)
    assert result.accounting.errors_by_code == {"poison_input": 1}  # the culprit alone: its batch-mates were scored
    assert sum("exited by itself (code -9)" in note for note in result.notes) == 3


@pytest.mark.timeout(90)
def test_a_module_stopped_by_sigterm_and_restarted_twice_loses_nothing() -> None:
    # edgeAgent's stop (iotedge restart, a deployment update, a reboot) under a flowing stream: the stop keeps the
    # session's input subscription, so what is routed meanwhile waits for the module (it had lost 303 of 441).
    result = run("sigterm-restart", replace(SIZES, messages=300, rate=50, repeats=2))
    assert_exactly_once(result, faults=2)
    assert result.notes[:2] == ["exit 0", "exit 0"]  # graceful stops, not crashes
    assert len(result.recoveries) == 2
