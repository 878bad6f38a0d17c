"""When reported properties go out: a twin budget that holds for a fleet.

IoT Hub takes 50 twin updates a second on an S1 hub (S2: the higher of 50/s or 5/s/unit; S3: 250/s/unit),
counted over minute ranges, then queues and finally refuses (429) every client's twin updates. A module
cannot know how large its fleet is, so each one keeps to a rate that adds up:

- state (everything reported but the counters: status, model, settings in effect, desired versions, the
  last error, a rollout) is reported when it changes, at a random moment within `jitter_s` of the change,
  and two state reports are at least `jitter_s` apart; what changes in between goes out together;
- counters are reported at most once per `interval_s`, at a random phase fixed at start, and only when
  they moved (they are fresh on /metrics and `getStatus` at any time).

So one module makes at most 1/jitter_s + 1/interval_s updates a second whatever happens (a flapping
state, a fleet-wide rollout, a restart of every module at once), and N modules at most
N * (1/jitter_s + 1/interval_s), spread evenly by the random moments. Each report is the patch of what
changed since the twin last took one (edgekit.twin_patch.diff_patch); the first is the whole document.

Pure and clock-driven (the caller passes `now`), so tests drive it on virtual time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.twin_patch import diff_patch, merge_patch

COUNTERS = "counters"
MIN_SPACING_S = 1.0  # with no jitter (one device), still no more than one state report a second


@dataclass(frozen=True)
class Report:
    """One reported-properties patch, and what it carries (to account for it once the twin took it, or not)."""

    patch: dict[str, Any]
    state: bool
    counters_turn: float | None  # the turn (scheduled time) whose counters it carries, None if it carries none

    @property
    def counters(self) -> bool:
        return self.counters_turn is not None


class ReportCadence:
    def __init__(self, interval_s: float, jitter_s: float, now: float, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.interval_s, self.jitter_s = interval_s, jitter_s
        self._held: dict[str, Any] | None = None  # the reported document as the twin holds it; None: nothing sent yet
        self._last_state_at = -math.inf
        self._state_due: float | None = now + self._spread()  # the first report: the whole document
        self._counters_due = now + self._rng.uniform(0, interval_s)  # a random phase, kept
        self._counters_at = -math.inf  # when counters last went out (the first report carries them too)

    def _spread(self) -> float:
        return self._rng.uniform(0, self.jitter_s)

    def _earliest_state(self, now: float) -> float:
        return max(now + self._spread(), self._last_state_at + max(self.jitter_s, MIN_SPACING_S))

    def retune(self, interval_s: float, jitter_s: float, now: float) -> None:
        """Live settings changed: a shorter interval or jitter applies now, a longer one from the next report."""
        if interval_s != self.interval_s:
            self.interval_s = interval_s
            self._counters_due = min(self._counters_due, now + self._rng.uniform(0, interval_s))
        if jitter_s != self.jitter_s:
            self.jitter_s = jitter_s
            if self._state_due is not None:
                self._state_due = min(self._state_due, self._earliest_state(now))

    def state_changed(self, now: float) -> None:
        """Something reported but the counters may have changed: report it at a random moment soon."""
        if self._state_due is None:
            self._state_due = self._earliest_state(now)

    def state_due_now(self, now: float) -> None:
        """The last report of a run (stopping, with no jitter): due now, whatever the spacing."""
        self._state_due = now

    @property
    def next_at(self) -> float:
        """When take() may next have something to send (a state change brings it forward)."""
        return self._counters_due if self._state_due is None else min(self._counters_due, self._state_due)

    def take(self, now: float, status: Callable[[], Mapping[str, Any]]) -> Report | None:
        """The patch due at `now`, or None; `status()` (the whole document) is read only when something is due.

        A state report spends its turn whether or not the twin takes it (failed() schedules the retry), so no
        error, however persistent, makes a module report more often than the budget."""
        state_due = self._state_due is not None and now >= self._state_due
        counters_due = now >= self._counters_due
        if not (state_due or counters_due):
            return None
        if state_due:
            self._state_due, self._last_state_at = None, now
        turn = self._counters_due
        if counters_due:  # the next turn, in phase; a turn within an interval of the last counters is skipped
            self._counters_due += self.interval_s * (math.floor((now - turn) / self.interval_s) + 1)
            counters_due = turn >= self._counters_at + self.interval_s
        try:
            document = dict(status())
        except Exception:  # a bug of ours: the state goes at its next turn (the caller logs it), not in a busy loop
            if state_due:
                self.state_changed(now)
            raise
        if self._held is None:  # nothing reported yet: the whole document, counters too, when the state is due
            return Report(document, state=True, counters_turn=now) if state_due else None
        patch: dict[str, Any] = {}
        if state_due:
            held_state = {k: v for k, v in self._held.items() if k != COUNTERS}
            patch = diff_patch(held_state, {k: v for k, v in document.items() if k != COUNTERS})
        counters = document.get(COUNTERS)
        moved = counters_due and isinstance(counters, Mapping) and merge_patch({}, counters) != self._held.get(COUNTERS)
        if moved:
            patch[COUNTERS] = counters
        if not patch:
            return None
        return Report(patch, state=state_due and patch.keys() != {COUNTERS}, counters_turn=turn if moved else None)

    def acknowledged(self, report: Report) -> None:
        """The twin took the report."""
        self._held = merge_patch(self._held or {}, report.patch)
        if report.counters_turn is not None:
            self._counters_at = report.counters_turn

    def failed(self, report: Report, now: float) -> None:
        """The twin did not take it (or did not say so in time): the state goes again at the next turn; counters
        wait for their next period."""
        if report.state:
            self.state_changed(now)
