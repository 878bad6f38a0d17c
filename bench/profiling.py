"""Where a module process spends its CPU: per thread (/proc, always) and per Python function (py-spy, when installed).

`Profiler(pid, out_dir, name)` around a stretch of load writes `<name>-threads.txt` (CPU time of each thread over
the stretch, per input answered) and, with py-spy on PATH (`pip install py-spy`; it attaches with ptrace: root or
`kernel.yama.ptrace_scope=0`), `<name>-stacks.txt`: py-spy's collapsed stacks of every thread.
`python -m bench.profiling A-stacks.txt B-stacks.txt` compares two of them by where the busy samples are (the
leaf frame's package), and by function, largest difference first: what A does that B does not.

Thread names come from `py-spy dump` (Python 3.11 does not name OS threads); without py-spy only ids are shown.
py-spy counts a thread waiting for the GIL as busy, so its samples overstate hand-offs: weigh them against the
per-thread CPU times, which are the kernel's own accounting.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

SAMPLE_RATE_HZ = 250
# Leaf frames of a thread waiting (selectors, queues, locks, paho's select): not busy.
IDLE_LEAVES = (
    "EpollSelector.select",
    "_worker (concurrent/futures/thread.py",
    "Condition.wait",
    "Event.wait",
    "Client._loop (paho",
    "Thread._wait_for_tstate_lock",
    "select (",
)
GROUPS = (
    ("app/", "app"),
    ("edgekit/", "edgekit"),
    ("iot/device", "azure-iot-device"),
    ("paho", "paho-mqtt"),
    ("asyncio", "asyncio"),
    ("concurrent", "concurrent.futures"),
    ("threading", "threading"),
    ("ssl", "ssl"),
    ("onnxruntime", "onnxruntime"),
    ("numpy", "numpy"),
    ("sklearn", "scikit-learn"),
    ("logging", "logging"),
)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of `pid` so far, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def py_spy() -> str | None:
    return shutil.which("py-spy")


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> Python thread name, from `py-spy dump` ({} without py-spy)."""
    exe = py_spy()
    if exe is None:
        return {}
    dump = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    return {int(m[1]): m[2] for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', dump)}


class Profiler:
    """Per-thread CPU (and py-spy stacks, if installed) of `pid` between enter and exit; call `done(inputs)` before exit."""

    def __init__(self, pid: int, out_dir: Path, name: str, seconds: float) -> None:
        self.pid, self.out_dir, self.name, self.seconds = pid, out_dir, name, seconds
        self.inputs = 0
        self._spy: subprocess.Popen[bytes] | None = None
        self._before: dict[int, float] = {}
        self._names: dict[int, str] = {}

    def __enter__(self) -> Profiler:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._names = thread_names(self.pid)
        exe = py_spy()
        if exe is not None:
            stacks = self.out_dir / f"{self.name}-stacks.txt"
            cmd = [exe, "record", "-p", str(self.pid), "-d", f"{max(1, round(self.seconds))}", "-r", str(SAMPLE_RATE_HZ)]
            cmd += ["-f", "raw", "-o", str(stacks), "--threads", "--nonblocking"]
            self._spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._before = thread_cpu(self.pid)
        return self

    def done(self, inputs: int) -> None:
        self.inputs = inputs

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        after = thread_cpu(self.pid)
        if self._spy is not None:
            try:
                self._spy.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                self._spy.kill()
                self._spy.wait(timeout=10)
        per = max(1, self.inputs)
        used = {tid: after[tid] - self._before.get(tid, 0.0) for tid in after}
        lines = [f"{self.name}: {self.inputs} inputs, {sum(used.values()) * 1000 / per:.3f} ms CPU per input"]
        for tid, seconds in sorted(used.items(), key=lambda item: -item[1]):
            if seconds > 0:
                lines.append(f"  {seconds * 1000 / per:7.3f} ms  {self._names.get(tid, '?')} ({tid})")
        (self.out_dir / f"{self.name}-threads.txt").write_text("\n".join(lines) + "\n")


def busy_samples(lines: Iterable[str]) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """From py-spy's raw output: busy samples, by package of the leaf frame, and inclusive by function."""
    total = 0
    groups: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first is the thread
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        n = int(count)
        total += n
        where = re.search(r"\((.*?):\d+\)", frames[-1])
        path = where[1] if where else "?"
        groups[next((name for marker, name in GROUPS if marker in path), path)] += n
        for function in {re.sub(r":\d+\)", ")", frame) for frame in frames}:
            functions[function] += n
    return total, groups, functions


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profiling", description="compare two py-spy raw profiles")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    ta, ga, fa = busy_samples(args.a.read_text().splitlines())
    tb, gb, fb = busy_samples(args.b.read_text().splitlines())
    print(f"busy samples: {args.a.name} {ta}, {args.b.name} {tb}")
    print("by package of the leaf frame (A, B, A-B):")
    for name in sorted(set(ga) | set(gb), key=lambda k: -(ga[k] - gb[k])):
        print(f"  {name[:50]:50} {ga[name]:6} {gb[name]:6} {ga[name] - gb[name]:+6}")
    print(f"by function, inclusive, largest A-B first (top {args.top}):")
    for name in sorted(set(fa) | set(fb), key=lambda k: -(fa[k] - fb[k]))[: args.top]:
        print(f"  {fa[name]:6} {fb[name]:6} {fa[name] - fb[name]:+6}  {name[:120]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
