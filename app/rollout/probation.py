"""Probation of a newly rolled-out model: the arithmetic that decides whether it stays.

The window is MODEL_PROBATION_MESSAGES outcomes or MODEL_PROBATION_S seconds, whichever ends first.
A failure is an outcome the model is to blame for (MODEL_FAULTS: run() failed, its answer could not be
sent, the reading lacks a feature the new manifest asks for ...). The model fails when its failures
are more than MODEL_PROBATION_MAX_FAILURE_RATE of the window's outcomes: at once when the failures
alone already exceed the rate of a whole window, else when the window ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.errors import ErrorCode
from app.core.stats import Stats

MODEL_FAULTS = frozenset(
    {
        ErrorCode.SCORING_FAILED,
        ErrorCode.SCRIPT_REFUSED,
        ErrorCode.OUTPUT_ERROR,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.MISSING_FEATURE,
        ErrorCode.WRONG_WIDTH,
    }
)


def _counts(stats: Stats) -> tuple[int, int]:
    """(outcomes, model failures) so far."""
    faults = sum(n for code, n in stats.errors_by_code.items() if code in MODEL_FAULTS)
    return stats.predictions + stats.errors, faults


@dataclass
class Probation:
    window_messages: int
    window_s: float
    max_rate: float
    started_at: float
    base_outcomes: int = 0
    base_faults: int = 0
    outcomes: int = 0
    failures: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def begin(cls, stats: Stats, window_messages: int, window_s: float, max_rate: float, now: float) -> Probation:
        outcomes, faults = _counts(stats)
        return cls(window_messages, window_s, max_rate, now, outcomes, faults)

    @classmethod
    def resume(
        cls, stats: Stats, window_messages: int, window_s: float, max_rate: float, now: float, done: dict[str, Any]
    ) -> Probation:
        """Go on with a probation a restart interrupted: `done` holds its figures so far ("messages", "failures",
        "elapsedS"; the time the module was down does not count: the model served nothing then)."""
        outcomes, faults = _counts(stats)
        messages, failures, elapsed = int(done.get("messages", 0)), int(done.get("failures", 0)), float(done.get("elapsedS", 0))
        probation = cls(window_messages, window_s, max_rate, now - elapsed, outcomes - messages, faults - failures)
        probation.outcomes, probation.failures, probation.elapsed_s = messages, failures, elapsed
        return probation

    def verdict(self, stats: Stats, now: float) -> str | None:
        """ "failed", "passed", or None while the window is open. Updates the figures."""
        outcomes, faults = _counts(stats)
        self.outcomes, self.failures = outcomes - self.base_outcomes, faults - self.base_faults
        self.elapsed_s = now - self.started_at
        if self.failures > self.max_rate * self.window_messages:
            return "failed"  # more than a whole window may have: no outcome to come can save it
        if self.outcomes >= self.window_messages or self.elapsed_s >= self.window_s:
            return "failed" if self.outcomes and self.failures / self.outcomes > self.max_rate else "passed"
        return None

    def figures(self) -> dict[str, Any]:
        """What is reported with the verdict."""
        rate = self.failures / self.outcomes if self.outcomes else 0.0
        return {
            "messages": self.outcomes,
            "failures": self.failures,
            "failureRate": round(rate, 4),
            "maxFailureRate": self.max_rate,
            "windowMessages": self.window_messages,
            "windowS": self.window_s,
            "elapsedS": round(self.elapsed_s, 1),
        }
