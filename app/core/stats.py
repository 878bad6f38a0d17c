"""Counters and histograms of the data path, read by summaries, the twin's reported properties and /metrics.

Histograms count into fixed buckets with one bisect per observation (~0.2 µs). prometheus-client's
Histogram takes a lock and walks its buckets on every observe(), about 1 µs: 8% of our per-message
budget at 80k msg/s. So we count here and expose the buckets at scrape time (http.py); each
histogram has a single writer (the model thread or the event loop), and a scrape reads a moment's
copy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

# Latencies kept for percentiles: the most recent ones only, so memory stays constant on a months-long run
# (a first-200,000 sample grew RSS by ~7 MB over the first half hour at 100 msg/s, then said nothing new).
LATENCY_SAMPLE_CAP = 20_000

BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCORING_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Cumulative-at-read bucket counts: counts[i] holds observations <= bounds[i] and > bounds[i-1]."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        """(upper bound, cumulative count) pairs as Prometheus wants them, ending with +Inf."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


@dataclass
class ModelStats:
    """What the model thread counts; outlives model swaps and reconfigurations."""

    run_calls: int = 0
    rows_scored: int = 0
    batch_rows: Histogram = field(default_factory=lambda: Histogram(BATCH_ROWS_BUCKETS))
    scoring_seconds: Histogram = field(default_factory=lambda: Histogram(SCORING_SECONDS_BUCKETS))

    @property
    def mean_batch_rows(self) -> float:
        return round(self.rows_scored / self.run_calls, 2) if self.run_calls else 0.0


@dataclass
class Stats:
    """What the event loop counts."""

    messages: int = 0
    predictions: int = 0
    errors: int = 0
    rows: int = 0
    output_messages: int = 0
    send_failures: int = 0
    refused: int = 0  # offers turned away because the queue was full
    errors_by_code: dict[str, int] = field(default_factory=dict)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLE_CAP))  # intake to output, recent
    latency_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_SECONDS_BUCKETS))
    model: ModelStats = field(default_factory=ModelStats)

    def latency_ms(self, quantile: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], 3)
