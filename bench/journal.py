"""`python -m bench.journal`: what the intake journal costs per message, against the pipeline's own
per-message cost measured in the same run (the machine is shared: compare ratios, not microseconds).

Journal cost per message = append (in groups, as the intake hands arrivals over) + settle + the
DONE records and segment clean-up (flush), in CPU time of this process, the fdatasync thread
included. Pipeline cost per message = the default model's batched pipeline (bench.measure), CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

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


if __name__ == "__main__":
    main()
