"""`python -m bench.lowrate`: the module's CPU per message at a low rate through the local edge, against the echo
module (bench/echo_module: the SDK's own cost) in the same run.

For each kind (the default model on ONNX Runtime, the same model's pickle on scikit-learn, the echo module) a
local edge of the deployment template is started, a feeder publishes sensor messages to the module's input at
--rate for --seconds after a warm-up, and the module process's CPU time (/proc) over that stretch is divided by the
outcomes upstream. Kinds are interleaved over --rounds; the least CPU per message of each counts. Ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from app.model.register import register
from app.model.simulator import FEATURES, LABELS
from app.settings import REPO_ROOT
from bench.edge_harness import MODEL, EdgeRun, cpu_seconds
from bench.overload import Feeder

ECHO_SOURCE = Path(__file__).with_name("echo_module")


def cpu_ms_per_message(env: list[str], source: Path | None, rate: float, seconds: float) -> float:
    run = EdgeRun(rate=0, send=False, env=env, module_source=source)
    try:
        run.start()
        feeder = Feeder(run)
        feeder.paced("warmup", rate, 3)
        if not run.outcomes.wait_total(len(feeder.sent_at), 30):
            raise SystemExit(f"the warm-up's outcomes did not all arrive:\n{run.model.log_tail()}")
        cpu_before, done_before = cpu_seconds(run.model.pid), run.outcomes.total
        feeder.paced("measured", rate, seconds)
        run.outcomes.wait_total(len(feeder.sent_at), 30)
        cpu_after, done = cpu_seconds(run.model.pid), run.outcomes.total - done_before
        feeder.close()
        assert cpu_before is not None and cpu_after is not None and done > 0
        return (cpu_after - cpu_before) * 1000 / done
    finally:
        run.stop()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lowrate", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    p.add_argument("--seconds", type=float, default=8.0, help="measured stretch per run (default 8)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the least CPU counts (default 1)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pickle_dir = Path(tmp) / "pickle"
        register(REPO_ROOT / "model" / "model.pkl", pickle_dir, "temperature-anomaly", FEATURES, labels=LABELS)
        kinds: dict[str, tuple[list[str], Path | None]] = {
            "onnx": ([], None),
            "sklearn": ([f"{MODEL}:MODEL_DIR={pickle_dir}"], None),
            "echo": ([], ECHO_SOURCE),
        }
        best: dict[str, float] = {k: float("inf") for k in kinds}
        for _ in range(args.rounds):
            for kind, (env, source) in kinds.items():
                best[kind] = min(best[kind], cpu_ms_per_message(env, source, args.rate, args.seconds))
                print(f"... {kind}: {best[kind]:.3f} ms CPU per message", file=sys.stderr, flush=True)
    result: dict[str, Any] = {"rate": args.rate, "cpu_ms_per_message": {k: round(v, 3) for k, v in best.items()}}
    result["vs_echo"] = {k: round(best[k] / best["echo"], 2) for k in ("onnx", "sklearn")}
    print(f"module CPU per message at {args.rate:g} msg/s through the local edge (echo module = the SDK's own cost):")
    for kind in kinds:
        ratio = f" = {best[kind] / best['echo']:.2f}× echo" if kind != "echo" else ""
        print(f"  {kind:8} {best[kind]:.3f} ms{ratio}")
    print(orjson.dumps({"lowrate": result}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
