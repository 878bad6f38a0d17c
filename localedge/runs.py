"""Where a run's module logs are kept: one directory per run, kept after the run, pruned to the last N.

$LOCALEDGE_RUNS_DIR, else $XDG_STATE_HOME/localedge/runs, else ~/.local/state/localedge/runs; each run gets
`<edge name>-<YYYYmmdd-HHMMSS>[-k]`. Only `python -m localedge clean` and the pruning at a run's start (the
newest `keep` stay) remove them. Broker data and certificates stay in the run's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

KEEP_RUNS = 10


def runs_root() -> Path:
    if explicit := os.environ.get("LOCALEDGE_RUNS_DIR"):
        return Path(explicit)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "localedge" / "runs"


def past_runs(root: Path | None = None) -> list[Path]:
    """Run directories, oldest first (by modification time, then name)."""
    root = root or runs_root()
    try:
        runs = [p for p in root.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name))


def clean(keep: int = 0, root: Path | None = None, spare: frozenset[Path] = frozenset()) -> list[Path]:
    """Remove all but the newest `keep` run directories (never those in `spare`); the ones removed."""
    runs = [p for p in past_runs(root) if p not in spare]
    doomed = runs[: max(0, len(runs) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def new_run(name: str, keep: int = KEEP_RUNS, root: Path | None = None) -> Path:
    """A fresh directory for this run's logs; older runs pruned so that `keep` remain, this one included."""
    root = root or runs_root()
    root.mkdir(parents=True, exist_ok=True)
    clean(max(0, keep - 1), root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = root / (f"{name}-{stamp}" if k == 0 else f"{name}-{stamp}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run directory for {name}-{stamp} in {root}")
