"""`python -m bench`: per-message baseline vs. vectorized limit vs. the batched pipeline, for two models.

Throughput: each kind is run `--repeats` times, interleaved round by round, and the best (fastest)
run counts: noise on a shared machine only ever slows a run down. Latency: the median of
`--latency-reps` lone messages. Ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import sklearn
from sklearn.linear_model import LogisticRegression

from app.model.register import register
from app.model.scorer import Scorer, load_scorer
from app.model.simulator import FEATURES, LABELS, training_data
from app.settings import REPO_ROOT, Settings

from .measure import PipelineRun, lone_latency, make_bodies, per_message, pipeline_throughput, vectorized

# Targets for the default model (the cheap model's figures are information only).
TARGET_VS_BASELINE = 10.0
TARGET_VS_LIMIT = 0.5
TARGET_EXTRA_LATENCY_MS = 0.5


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000, help="messages per limit/pipeline run (default 20000)")
    p.add_argument(
        "--baseline-messages", type=int, default=2_000, help="messages per per-message baseline run; it is slow (default 2000)"
    )
    p.add_argument("--repeats", type=int, default=3, help="runs of each throughput kind; the best counts (default 3)")
    p.add_argument("--latency-reps", type=int, default=200, help="lone messages per latency measurement (default 200)")
    p.add_argument(
        "--profile", action="store_true", help="also cProfile one pipeline run of the default model (event-loop thread)"
    )
    return p.parse_args()


def host_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "orjson": orjson.__version__,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def register_logistic(model_dir: Path) -> None:
    """The cheap model: a LogisticRegression on the default model's data, registered the same way."""
    X, y = training_data(20_000, 42)
    model = LogisticRegression(max_iter=2000).fit(X, y)
    source = model_dir.parent / "logistic.pkl"
    joblib.dump(model, source)
    register(
        source,
        model_dir,
        name="bench-logistic",
        features=list(FEATURES),
        labels=list(LABELS),
        tags={"algorithm": "LogisticRegression"},
    )


async def bench_model(
    scorer: Scorer, settings: Settings, bodies: list[bytes], args: argparse.Namespace, aggregate: bool
) -> dict[str, Any]:
    base_bodies = bodies[: args.baseline_messages]
    n = len(bodies)
    best: dict[str, float] = {}
    runs: dict[str, PipelineRun] = {}

    def keep(kind: str, seconds: float) -> None:
        best[kind] = min(best.get(kind, float("inf")), seconds)

    pipelines = {"pipeline": settings} | ({"aggregate": settings.replace(aggregate=True)} if aggregate else {})
    # Warm-up: first calls pay for imports, caches and thread start.
    per_message(scorer, base_bodies[:50])
    await pipeline_throughput(settings, scorer, bodies[:2000])
    for _ in range(args.repeats):  # round-robin, so a noisy spell hits every kind
        keep("baseline", per_message(scorer, base_bodies))
        keep("limit", vectorized(scorer, bodies, settings.max_batch_size))
        for kind, kind_settings in pipelines.items():
            run = await pipeline_throughput(kind_settings, scorer, bodies)
            if run.seconds <= best.get(kind, float("inf")):
                runs[kind] = run
            keep(kind, run.seconds)

    rate = {"baseline": len(base_bodies) / best["baseline"]} | {k: n / v for k, v in best.items() if k != "baseline"}
    latency = await lone_latency(settings, scorer, bodies, args.latency_reps, gap_s=0.002)
    result: dict[str, Any] = {
        "model": f"{scorer.manifest.name} v{scorer.manifest.version}",
        "algorithm": scorer.manifest.tags.get("algorithm", ""),
        "msgs_per_s": {k: round(v) for k, v in rate.items()},
        "pipeline_vs_baseline": round(rate["pipeline"] / rate["baseline"], 2),
        "pipeline_vs_limit": round(rate["pipeline"] / rate["limit"], 3),
        "limit_vs_baseline": round(rate["limit"] / rate["baseline"], 2),
        "pipeline_mean_batch_rows": round(runs["pipeline"].mean_batch_rows, 1),
        "pipeline_queue_full_waits": runs["pipeline"].queue_full_waits,
        "latency_ms": {
            "inline_median": round(latency.inline_ms, 3),
            "pipeline_median": round(latency.pipeline_ms, 3),
            "extra_median": round(latency.pipeline_ms - latency.inline_ms, 3),
            "inline_p90": round(latency.inline_p90_ms, 3),
            "pipeline_p90": round(latency.pipeline_p90_ms, 3),
        },
    }
    if aggregate:
        agg = runs["aggregate"]
        result["aggregate"] = {
            "msgs_per_s": round(rate["aggregate"]),
            "vs_pipeline": round(rate["aggregate"] / rate["pipeline"], 3),
            "output_messages_per_prediction": round(agg.output_messages / agg.predictions, 4),
            "predictions_per_output_message": round(agg.predictions / agg.output_messages, 1),
        }
    return result


def print_model(label: str, r: dict[str, Any], targets: bool) -> None:
    rate, lat = r["msgs_per_s"], r["latency_ms"]
    print(f"\n== {label}: {r['model']} ({r['algorithm']})")
    print(f"  {'':34}{'msgs/s':>10}{'÷ baseline':>12}{'÷ limit':>10}")
    names = {"baseline": "a. per-message baseline", "limit": "b. vectorized limit", "pipeline": "c. batched pipeline"}
    names |= {"aggregate": "   pipeline, AGGREGATE=true"}
    for kind, name in names.items():
        if kind in rate:
            v = rate[kind]
            print(f"  {name:34}{v:>10,}{v / rate['baseline']:>11.1f}×{v / rate['limit']:>10.3f}")
    print(
        f"  pipeline batches: {r['pipeline_mean_batch_rows']} rows on average, "
        f"{r['pipeline_queue_full_waits']} backpressure waits"
    )
    if "aggregate" in r:
        a = r["aggregate"]
        print(
            f"  aggregation: {a['output_messages_per_prediction']} output messages per prediction "
            f"({a['predictions_per_output_message']} predictions per message)"
        )
    print(
        f"  d. lone-message latency (median): inline {lat['inline_median']:.3f} ms, pipeline {lat['pipeline_median']:.3f} ms, "
        f"extra {lat['extra_median']:+.3f} ms  (p90: {lat['inline_p90']:.3f} / {lat['pipeline_p90']:.3f} ms)"
    )
    if targets:
        checks = [
            (
                f"pipeline ÷ baseline {r['pipeline_vs_baseline']}× ≥ {TARGET_VS_BASELINE}×",
                r["pipeline_vs_baseline"] >= TARGET_VS_BASELINE,
            ),
            (f"pipeline ÷ limit {r['pipeline_vs_limit']} ≥ {TARGET_VS_LIMIT}", r["pipeline_vs_limit"] >= TARGET_VS_LIMIT),
            (
                f"extra latency {lat['extra_median']:+.3f} ms ≤ {TARGET_EXTRA_LATENCY_MS} ms",
                lat["extra_median"] <= TARGET_EXTRA_LATENCY_MS,
            ),
        ]
        for text, ok in checks:
            print(f"  target: {text:50} {'met' if ok else 'MISSED'}")


async def profile_pipeline(settings: Settings, scorer: Scorer, bodies: list[bytes]) -> None:
    """cProfile sees the event-loop thread only: that is where per-message overhead lives."""
    profiler = cProfile.Profile()
    profiler.enable()
    await pipeline_throughput(settings, scorer, bodies)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    print("\n== cProfile of one pipeline run (default model, event-loop thread, by own time)")
    print(out.getvalue())


async def main() -> None:
    args = _args()
    warnings.simplefilter("ignore")  # sklearn's chatter would break the table
    started = time.perf_counter()
    host = host_facts()
    print(
        f"host: Python {host['python']} ({host['machine']}), numpy {host['numpy']}, scikit-learn {host['sklearn']}, "
        f"orjson {host['orjson']}, {host['cpus']} CPUs ({host['cpus_usable']} usable), load {host['loadavg_1m']}"
    )
    print(
        f"method: {args.messages:,} simulator messages per limit/pipeline run, {args.baseline_messages:,} per baseline run; "
        f"best of {args.repeats} interleaved runs; latency = median of {args.latency_reps} lone messages"
    )
    bodies = make_bodies(args.messages)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cheap_dir = Path(tmp) / "model"
        register_logistic(cheap_dir)
        models = [("default", REPO_ROOT / "model"), ("logistic", cheap_dir)]
        for label, model_dir in models:
            scorer = load_scorer(model_dir)
            settings = Settings(model_dir=str(model_dir))
            results[label] = await bench_model(scorer, settings, bodies, args, aggregate=label == "default")
            print_model(label, results[label], targets=label == "default")
            if args.profile and label == "default":
                await profile_pipeline(settings, scorer, bodies)
    elapsed = time.perf_counter() - started
    print(f"\n(total {elapsed:.0f} s)")
    method = {
        "messages": args.messages,
        "baseline_messages": args.baseline_messages,
        "repeats": args.repeats,
        "throughput": "best",
    }
    method |= {"latency": f"median of {args.latency_reps}"}
    sys.stdout.write(orjson.dumps({"bench": "edge-inference", "host": host, "method": method, **results}).decode() + "\n")


if __name__ == "__main__":
    asyncio.run(main())
