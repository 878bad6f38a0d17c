"""The twin budget: reported properties carry state and go out only when it changes, jittered and spaced; counters
at most once per REPORT_INTERVAL_S; a fleet of modules stays under an S1 hub's 50 twin updates a second.

The TwinAgent's own report loop runs on virtual time (its clock and wait are the test's), with a real Controller
on a real pipeline and a client that records each patch: no sleeps, an hour in milliseconds.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import heapq
import random
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from app.core.control import Controller, Health
from app.core.pipeline import Pipeline
from app.edgehub.cadence import COUNTERS, ReportCadence
from app.edgehub.twin import TwinAgent
from app.model.scorer import load_scorer
from app.rollout.agent import PROGRESS_EVERY_S
from app.settings import Settings
from edgekit.twin_patch import diff_patch, merge_patch
from tests.conftest import DEFAULT_MODEL_DIR, ListSink

HOUR = 3600.0
S1_UPDATES_PER_S = 50  # twin updates, counted by IoT Hub over minute ranges
FLEET = 10_000


# --- the patch of what changed -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "wanted", "patch"),
    [
        ({"a": 1, "b": {"x": 1, "y": 2}}, {"a": 1, "b": {"x": 1, "y": 2}}, {}),
        ({"a": 1, "b": {"x": 1, "y": 2}}, {"a": 2, "b": {"x": 1, "y": 3}}, {"a": 2, "b": {"y": 3}}),
        ({"a": 1, "b": {"x": 1}}, {"b": {"x": 1}}, {"a": None}),
        ({"a": 1, "e": {"code": "x"}}, {"a": 1, "e": None}, {"e": None}),
        ({"a": 1}, {"a": 1, "e": None}, {}),
        ({"a": 1}, {"a": True}, {"a": True}),
        ({"a": 1}, {"a": {"x": None, "y": 1}}, {"a": {"y": 1}}),
        ({"l": [1, 2]}, {"l": [1, 3]}, {"l": [1, 3]}),
    ],
)
def test_diff_patch_is_what_turns_the_held_document_into_the_wanted_one(held: dict, wanted: dict, patch: dict) -> None:
    assert diff_patch(held, wanted) == patch
    assert merge_patch(held, patch) == merge_patch({}, wanted)


# --- the real report loop on virtual time --------------------------------------------------------------------------


class Horizon(BaseException):
    """The virtual hour is over (a BaseException: the loop's own `except Exception` must not take it)."""


class VirtualTime:
    """The report loop's clock and wait: time jumps to the next deadline or scheduled event at once."""

    def __init__(self, until: float) -> None:
        self.now = 0.0
        self.until = until
        self._events: list[tuple[float, int, Callable[[], None]]] = []

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, len(self._events), action))

    def every(self, start: float, step: float, action: Callable[[], None]) -> None:
        t = start
        while t < self.until:
            self.at(t, action)
            t += step

    def clock(self) -> float:
        return self.now

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        await asyncio.sleep(0)
        target = self.now + max(timeout, 0.0)
        while not event.is_set():
            if self._events and self._events[0][0] <= target:
                when, _, action = heapq.heappop(self._events)
                self.now = max(self.now, when)
                action()
                continue
            if target >= self.until:
                raise Horizon
            self.now = target
            return


class RecordingClient:
    """Stands in for the SDK client's reported-properties call; keeps (virtual time, patch)."""

    def __init__(self, vt: VirtualTime) -> None:
        self.vt = vt
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def patch_twin_reported_properties(self, patch: dict[str, Any]) -> None:
        self.sent.append((self.vt.now, copy.deepcopy(patch)))


def _module(settings: Settings) -> tuple[Controller, Pipeline]:
    pipeline = Pipeline(settings, load_scorer(str(DEFAULT_MODEL_DIR)), ListSink())
    return Controller(settings, pipeline, Health(ready=True, status="ready")), pipeline


async def _run_for(vt: VirtualTime, controller: Controller, seed: int = 7) -> RecordingClient:
    client = RecordingClient(vt)
    agent = TwinAgent(client, controller, asyncio.get_running_loop(), clock=vt.clock, wait=vt.wait, rng=random.Random(seed))  # type: ignore[arg-type]
    with pytest.raises(Horizon):
        await agent._report_loop()
    assert agent.reports == len(client.sent)
    return client


def _counter_reports(client: RecordingClient) -> list[tuple[float, dict[str, Any]]]:
    return [(t, p) for t, p in client.sent[1:] if COUNTERS in p]


async def test_moving_counters_are_reported_at_most_once_per_interval() -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=900.0, report_jitter_s=300.0)
    controller, pipeline = _module(settings)
    vt = VirtualTime(until=HOUR)

    def one_more() -> None:
        pipeline.stats.messages += 1

    vt.every(0.5, 1.0, one_more)  # a message a second, all hour
    client = await _run_for(vt, controller)

    first_at, first = client.sent[0]
    assert first_at <= 300.0 and first["status"] == "ready" and COUNTERS in first  # the whole document, jittered
    counters = _counter_reports(client)
    times = [first_at] + [t for t, _ in counters]
    assert all(later - earlier >= 900.0 for earlier, later in pairwise(times)), times
    assert 3 <= len(counters) <= 4  # an hour holds at most 4 intervals; they moved in every one
    for t, patch in counters:
        assert patch == {COUNTERS: patch[COUNTERS]}  # counters alone: the state did not change
        assert patch[COUNTERS]["messages"] == int(t + 0.5)  # what the pipeline had counted then (one at each t+0.5)
    assert len(client.sent) == 1 + len(counters)


async def test_still_counters_are_not_reported_again() -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=60.0, report_jitter_s=10.0)
    controller, _ = _module(settings)
    client = await _run_for(VirtualTime(until=HOUR), controller)
    assert len(client.sent) == 1  # the first report; nothing moved after it


@pytest.mark.parametrize("jitter_s", [30.0, 300.0])
async def test_a_state_change_is_reported_once_within_the_jitter_bound(jitter_s: float) -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=900.0, report_jitter_s=jitter_s)
    controller, _ = _module(settings)
    vt = VirtualTime(until=2000.0)
    vt.at(1000.0, lambda: controller.set_state("degraded"))
    vt.at(1000.0 + jitter_s / 3, lambda: controller.set_state("unhealthy"))  # within the same turn: goes with it
    client = await _run_for(vt, controller)

    state_reports = [(t, p) for t, p in client.sent[1:] if p.keys() - {COUNTERS}]
    assert len(state_reports) == 1, state_reports
    t, patch = state_reports[0]
    assert 1000.0 <= t <= 1000.0 + jitter_s
    assert patch == {"status": "unhealthy"}  # the patch of what changed, as it stands when reported


async def test_with_no_jitter_a_change_is_reported_at_once_and_at_most_one_a_second() -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=900.0, report_jitter_s=0.0)
    controller, _ = _module(settings)
    vt = VirtualTime(until=2000.0)
    vt.at(1000.0, lambda: controller.set_state("degraded"))
    vt.at(1000.0, lambda: controller.set_state("unhealthy"))
    client = await _run_for(vt, controller)

    assert client.sent[0][0] == 0.0  # the first report at start
    assert client.sent[1:] == [(1000.0, {"status": "degraded"}), (1001.0, {"status": "unhealthy"})]


async def test_a_flapping_state_is_reported_at_most_once_per_jitter_and_ends_on_the_last_value() -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=900.0, report_jitter_s=120.0)
    controller, _ = _module(settings)
    vt = VirtualTime(until=HOUR)
    flips = iter(["degraded", "ready"] * 2000)
    vt.every(1.0, 1.0, lambda: controller.set_state(next(flips)))  # a change every second
    client = await _run_for(vt, controller)

    times = [t for t, p in client.sent if p.keys() - {COUNTERS}]
    assert all(later - earlier >= 120.0 for earlier, later in pairwise(times))
    assert len(times) <= HOUR / 120.0 + 1


async def test_a_report_the_twin_refuses_is_retried_within_the_budget() -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=900.0, report_jitter_s=60.0)
    controller, _ = _module(settings)
    vt = VirtualTime(until=HOUR)
    attempts: list[float] = []

    class Throttled(RecordingClient):
        async def patch_twin_reported_properties(self, patch: dict[str, Any]) -> None:
            attempts.append(self.vt.now)
            if self.vt.now < 1800.0:  # IoT Hub answers 429 for half an hour
                raise RuntimeError("429 throttled")
            await super().patch_twin_reported_properties(patch)

    client = Throttled(vt)
    agent = TwinAgent(client, controller, asyncio.get_running_loop(), clock=vt.clock, wait=vt.wait, rng=random.Random(3))  # type: ignore[arg-type]
    with pytest.raises(Horizon):
        await agent._report_loop()
    assert all(later - earlier >= 60.0 for earlier, later in pairwise(attempts))
    assert client.sent and client.sent[0][0] >= 1800.0 and client.sent[0][1]["status"] == "ready"  # the whole document


async def test_a_status_that_fails_to_build_is_tried_again_at_the_next_turn_not_in_a_busy_loop() -> None:
    settings = Settings(model_dir=str(DEFAULT_MODEL_DIR), report_interval_s=900.0, report_jitter_s=0.0)
    controller, _ = _module(settings)
    real_status, calls = controller.status, []

    def flaky_status() -> dict[str, Any]:
        calls.append(vt.now)
        if len(calls) <= 3:
            raise RuntimeError("a bug of ours")
        return real_status()

    controller.status = flaky_status  # type: ignore[method-assign]
    vt = VirtualTime(until=60.0)
    client = await _run_for(vt, controller)
    assert calls[:4] == [0.0, 1.0, 2.0, 3.0]  # one try a second (MIN_SPACING_S), then the report
    assert [t for t, _ in client.sent] == [3.0]


# --- a fleet over an hour -------------------------------------------------------------------------------------------


Change = tuple[float, int, Any]  # (time, module, its new state)


def _rollout_changes(n: int, told_at: float, rng: random.Random) -> list[Change]:
    """Every module told at `told_at` (one desired change for the whole fleet), each then doing what the rollout agent
    does: `downloading` with progress at most every PROGRESS_EVERY_S for a download of 30 s to 5 minutes, `verifying`,
    `active` on probation 2 s later, and `passed` after MODEL_PROBATION_S."""
    probation_s = Settings().model_probation_s
    changes: list[Change] = []
    for i in range(n):
        t, done_at = told_at, told_at + rng.uniform(30.0, 300.0)
        while t < done_at:
            changes.append((t, i, ("downloading", round(t - told_at))))
            t += rng.uniform(*PROGRESS_EVERY_S)
        changes += [(done_at, i, ("verifying", 0)), (done_at + 2, i, ("on", 0)), (done_at + 2 + probation_s, i, ("passed", 0))]
    return changes


def _simulate_fleet(n: int, flapping: bool, changes: list[Change] = (), seed: int = 11) -> tuple[list[float], list[Any]]:
    """N modules' report times over an hour, every one started in the same second (a fleet-wide restart), and the
    state each one's twin holds at the end.

    Each module's status is a document whose counters move all the time; `flapping`: its state changes again right
    after every report (the worst case); `changes`: state changes at given times (a rollout)."""
    defaults = Settings()
    rng = random.Random(seed)
    cadences = [ReportCadence(defaults.report_interval_s, defaults.report_jitter_s, 0.0, rng) for _ in range(n)]
    state: list[Any] = [0] * n
    held: list[Any] = [None] * n
    sent: list[float] = []
    queue: list[tuple[float, int, int, Any]] = [(c.next_at, 1, i, None) for i, c in enumerate(cadences)]
    queue += [(t, 0, i, new) for t, i, new in changes]  # 0: a state change, before a report at the same moment
    heapq.heapify(queue)
    while queue:
        now, kind, i, new = heapq.heappop(queue)
        if now >= HOUR:
            break
        cadence = cadences[i]
        if kind == 0:
            state[i] = new
            cadence.state_changed(now)
            heapq.heappush(queue, (cadence.next_at, 1, i, None))
            continue
        if now < cadence.next_at:  # an older entry; the current one is queued
            continue
        report = cadence.take(now, lambda i=i, now=now: {"status": state[i], COUNTERS: {"messages": int(now)}})  # type: ignore[misc]
        if report is not None:
            sent.append(now)
            cadence.acknowledged(report)
            held[i] = state[i]
            if flapping:
                state[i] = (state[i] or 0) + 1
                cadence.state_changed(now)
        heapq.heappush(queue, (cadence.next_at, 1, i, None))
    return sent, held


def _busiest_minute(times: list[float]) -> int:
    times = sorted(times)
    busiest, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 60.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", ["flapping", "rollout"])
def test_ten_thousand_modules_stay_under_an_s1_hub_s_twin_budget(scenario: str) -> None:
    """Flapping: every module's state changes all the time. Rollout: the whole fleet told at once (one desired
    `model` for every device), each module reporting through the one path, the cadence, as the rollout agent does."""
    told_at = 600.0
    changes = _rollout_changes(FLEET, told_at, random.Random(5)) if scenario == "rollout" else []
    sent, held = _simulate_fleet(FLEET, scenario == "flapping", changes)
    per_module_bound = 1 / Settings().report_jitter_s + 1 / Settings().report_interval_s
    mean = len(sent) / HOUR
    busiest = _busiest_minute(sent)
    print(
        f"{FLEET} modules, {scenario}: {len(sent)} updates in an hour, mean {mean:.1f}/s, "
        f"busiest minute {busiest} ({busiest / 60:.1f}/s); bound {FLEET * per_module_bound:.1f}/s"
    )
    assert mean <= FLEET * per_module_bound < S1_UPDATES_PER_S
    assert busiest <= S1_UPDATES_PER_S * 60
    assert len(sent) >= FLEET  # every module reported at least once
    if scenario == "rollout":
        during = [t for t in sent if told_at <= t < told_at + 900.0]
        print(f"  the rollout's first 15 minutes: {len(during)} updates, {len(during) / 900:.1f}/s")
        assert len(during) / 900.0 <= FLEET * per_module_bound
        assert collections.Counter(state[0] for state in held) == {"passed": FLEET}  # every module's end, reported
