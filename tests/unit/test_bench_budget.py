"""bench.budget's summary: medians per kind, ratios against the echo module, and which targets hold."""

from __future__ import annotations

from bench.budget import KindRun, summarize


def kind_run(cpu_50: float, capacity: float, p99: float, predictions: float | None = None) -> KindRun:
    return KindRun(
        cpu_ms={"50": cpu_50, "200": cpu_50 / 2, "saturation": cpu_50 / 4},
        capacity=capacity,
        predictions_per_s=capacity if predictions is None else predictions,
        output_messages_per_input=1.0,
        latency_ms={"rate": 100.0, "p50": p99 / 2, "p99": p99},
    )


def test_medians_of_the_rounds_and_ratios_against_echo_decide_the_targets() -> None:
    runs = {
        "1:1": [kind_run(3.3, 950, 19), kind_run(9.0, 10, 500), kind_run(3.5, 1000, 21)],
        "aggregated": [kind_run(3.0, 1500, 50), kind_run(3.1, 1600, 60), kind_run(2.9, 1400, 40)],
        "echo": [kind_run(3.0, 1000, 10), kind_run(2.9, 1000, 11), kind_run(3.1, 1000, 9)],
    }
    summary = summarize(runs, [50.0, 200.0])

    one = summary["kinds"]["1:1"]
    assert one["cpu_ms_per_input"] == {"50": 3.5, "200": 1.75, "saturation": 0.875}  # the median, not the outlier
    assert (one["inputs_per_s"], one["latency_ms"]["p99"]) == (950, 21.0)
    ratios = summary["ratios"]
    assert ratios["1:1"]["cpu_vs_echo"]["50"] == round(3.5 / 3.0, 2)
    assert ratios["1:1"]["inputs_per_s_vs_echo"] == 0.95
    assert ratios["aggregated"]["predictions_per_s_vs_1to1"] == round(1500 / 950, 2)
    assert summary["targets"] == {
        "cpu at 50 msg/s <= 1.2x echo": True,
        "1:1 inputs/s at saturation >= 95% of echo": True,
        "aggregated predictions/s >= 1.5x 1:1": True,
        "p99 at half capacity <= 2.0x echo": False,  # 21 ms against 10 ms
    }
    assert summary["rounds"] == 3 and all(k["exactly_once"] for k in summary["kinds"].values())
