"""`python -m bench.journal`: what the intake journal costs per message, against the pipeline's own
per-message cost measured in the same run (the machine is shared: compare ratios, not microseconds).

Journal cost per message = append (in groups, as the intake hands arrivals over) + settle + the
DONE records and segment clean-up (flush), in CPU time of this process, the fdatasync thread
included. "landed" is what the edgeHub intake does today: each input journaled alone on paho's
thread before it is acknowledged (its MQTT topic parsed as the SDK parses it, then one write).
Pipeline cost per message = the default model's batched pipeline (bench.measure), CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from app.core.journal import IntakeJournal
from app.core.messages import InMessage
from app.main import load_model
from app.settings import REPO_ROOT, Settings
from bench.measure import make_bodies, pipeline_throughput


def journal_cpu_us(bodies: list[bytes], group: int, directory: Path) -> float:
    """CPU µs per message to journal, settle and clean up `bodies`, arriving `group` at a time."""
    journal = IntakeJournal(directory, 1 << 30)
    journal.open()
    msgs = [
        InMessage(b, f"id-{i}", "amlInput", {"sequenceNumber": str(i), "batchId": "b"}, content_type="application/json")
        for i, b in enumerate(bodies)
    ]
    started = time.process_time()
    for i in range(0, len(msgs), group):
        chunk = msgs[i : i + group]
        journal.append(chunk)
        journal.settle([m.journal_seq for m in chunk if m.journal_seq is not None])
        if i % (group * 64) == 0:
            journal.flush()
    journal.close()
    return (time.process_time() - started) / len(msgs) * 1e6


async def landing_cpu_us(bodies: list[bytes], directory: Path) -> float:
    """CPU µs per message for the intake's landing (app/edgehub/intake.py) plus settle and clean-up."""
    from app.edgehub.intake import Intake

    journal = IntakeJournal(directory, 1 << 30)

    async def submit(_msg: InMessage) -> None:
        return None

    intake = Intake(SimpleNamespace(submit=submit), asyncio.get_running_loop(), journal)  # type: ignore[arg-type]
    tap = intake.tap_for("device-1", "inference")
    assert tap is not None
    prefix = "devices/device-1/modules/inference/inputs/amlInput/"
    props = "%24.ct=application%2Fjson&%24.ce=utf-8&batchId=b"
    topics = [f"{prefix}%24.mid=id-{i}&{props}&sequenceNumber={i}" for i in range(len(bodies))]
    payloads = [bytes(b) for b in bodies]  # distinct objects, as paho's
    started = time.process_time()
    for i, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
        tap(topic, payload)
        if i % 64 == 63:
            journal.settle(range(i - 62, i + 2))
        if i % 4096 == 0:
            journal.flush()
    await intake.close()
    intake.close_journal()
    return (time.process_time() - started) / len(bodies) * 1e6


async def pipeline_cpu_us(bodies: list[bytes]) -> float:
    settings = Settings(model_dir=str(REPO_ROOT / "model"))
    scorer = await load_model(settings)
    started = time.process_time()
    await pipeline_throughput(settings, scorer, bodies)
    return (time.process_time() - started) / len(bodies) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3, help="the best (least CPU) of this many runs counts")
    args = p.parse_args()
    bodies = make_bodies(args.messages)
    pipeline = min(asyncio.run(pipeline_cpu_us(bodies)) for _ in range(args.repeats))
    print(f"pipeline (default model, batched): {pipeline:.1f} µs CPU per message")
    for group in (1, 8, 64):
        with tempfile.TemporaryDirectory() as d:
            cost = min(journal_cpu_us(bodies, group, Path(d) / f"r{r}") for r in range(args.repeats))
        ratio = cost / pipeline
        print(f"journal, arrivals in groups of {group:>2}: {cost:5.1f} µs CPU per message = {ratio:.2f} × the pipeline's")
    with tempfile.TemporaryDirectory() as d:
        cost = min(asyncio.run(landing_cpu_us(bodies, Path(d) / f"l{r}")) for r in range(args.repeats))
    print(f"journal, landed on paho's thread:   {cost:5.1f} µs CPU per message = {cost / pipeline:.2f} × the pipeline's")


if __name__ == "__main__":
    main()
