"""`python -m bench.engines`: the default model on ONNX Runtime against scikit-learn, in the same run.

Per call: one `predict_proba` on 1, 8 and 64 rows (scikit-learn's estimator vs the ONNX graph on one intra-op
thread, app/model/onnx_engine.py). Per message: the built-in score.py's whole run() (probabilities, labels,
rounding) on a batch of that many rows, divided by the rows. CPU time of the calling thread (both engines run
there), the least of `--repeats` rounds with the engines interleaved within each. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import orjson

from app.model.modeldir import ENGINE_ONNX
from app.model.register import register
from app.model.scorer import Scorer, load_scorer
from app.model.simulator import FEATURES, LABELS, training_data
from app.settings import REPO_ROOT

SIZES = (1, 8, 64)


def cpu_us(fn: Callable[[], Any], budget_s: float) -> float:
    """CPU µs of this thread per call (both engines run on the calling thread), over about `budget_s` of CPU:
    other processes on a shared machine do not count, as they would in wall time."""
    fn()  # warm
    calls, started = 0, time.thread_time()
    while (elapsed := time.thread_time() - started) < budget_s:
        fn()
        calls += 1
    return elapsed / calls * 1e6


def _scorers(tmp: Path) -> tuple[Scorer, Scorer]:
    """(the default model on ONNX Runtime, its pickle alone on scikit-learn)."""
    model_dir = REPO_ROOT / "model"
    onnx = load_scorer(model_dir)
    if onnx.manifest.engine != ENGINE_ONNX:
        raise SystemExit("the default model has no ONNX graph: run `make model`")
    register(model_dir / "model.pkl", tmp / "pickle", "temperature-anomaly", FEATURES, labels=LABELS)
    return onnx, load_scorer(tmp / "pickle")


def measure(repeats: int, budget_s: float) -> dict[str, Any]:
    rows, _ = training_data(64, 5)
    with tempfile.TemporaryDirectory() as tmp:
        on_onnx, on_sklearn = _scorers(Path(tmp))
        estimator, graph = joblib.load(REPO_ROOT / "model" / "model.pkl"), on_onnx.script.model
        result: dict[str, Any] = {}
        for n in SIZES:
            x, batch = rows[:n], rows[:n].tolist()
            kinds = {
                "call_sklearn_us": lambda x=x: estimator.predict_proba(x),
                "call_onnx_us": lambda x=x: graph.predict_proba(x),
                "message_sklearn_us": lambda b=batch: on_sklearn.score(b),
                "message_onnx_us": lambda b=batch: on_onnx.score(b),
            }
            best = {k: float("inf") for k in kinds}
            for _ in range(repeats):  # rounds, the engines interleaved within each
                for k, fn in kinds.items():
                    best[k] = min(best[k], cpu_us(fn, budget_s))
            for k in ("message_sklearn_us", "message_onnx_us"):
                best[k] /= n
            best["call_ratio"] = best["call_sklearn_us"] / best["call_onnx_us"]
            best["message_ratio"] = best["message_sklearn_us"] / best["message_onnx_us"]
            result[str(n)] = {k: round(v, 2) for k, v in best.items()}
    return result


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds; the best of each kind counts (default 3)")
    p.add_argument("--budget", type=float, default=0.3, help="seconds per measurement (default 0.3)")
    args = p.parse_args()
    result = measure(args.repeats, args.budget)
    print("default model, scikit-learn vs ONNX Runtime (1 intra-op thread), CPU µs:")
    print(f"{'rows':>5} | {'call sklearn':>12} {'call onnx':>10} {'ratio':>6} | {'msg sklearn':>11} {'msg onnx':>9} {'ratio':>6}")
    for n, r in result.items():
        print(
            f"{n:>5} | {r['call_sklearn_us']:>12.1f} {r['call_onnx_us']:>10.1f} {r['call_ratio']:>5.1f}× | "
            f"{r['message_sklearn_us']:>11.1f} {r['message_onnx_us']:>9.1f} {r['message_ratio']:>5.1f}×"
        )
    print(orjson.dumps({"engines": result}).decode())


if __name__ == "__main__":
    main()
