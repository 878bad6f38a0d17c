"""The model store: a directory on a volume holding the model versions the twin asked for.

    MODEL_STORE/
      state.json            which version is in use, the ones kept (oldest first), the bundle refused,
                            the probation of the version in use while it runs (resumed after a restart)
      versions/<name>-v<version>-<sha12>/   an unpacked, verified model directory (never changed after)
      downloads/<sha256>.part               a download in progress: resumed after a restart
      staging/                              unpacking in progress (cleared at start)

Only verified directories are ever renamed into versions/, and state.json is replaced atomically
(write, fsync, rename), so a kill at any moment leaves either the old or the new state, never a
partial model in use. The store keeps the last MODEL_STORE_KEEP versions, and always the one in use
and the one before it (the rollback target).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class Version:
    dir: str  # a name under versions/
    name: str
    version: int
    sha256: str  # of the bundle it came from
    installed_at: str = ""


@dataclass
class StoreState:
    versions: list[Version] = field(default_factory=list)  # oldest first
    active: str | None = None  # the version in use (a dir name)
    previous: str | None = None  # the one before it: what a rollback returns to
    refused: dict[str, str] = field(default_factory=dict)  # bundle sha256 -> why it was rolled back
    # the probation of `active` while it runs: {"dir", "previous" (the model dir to swap back to), "source",
    # "messages", "failures", "elapsedS"}; None once it passed or failed (app/rollout/agent.py)
    probation: dict[str, Any] | None = None


class ModelStore:
    def __init__(self, root: Path | str, keep: int) -> None:
        self.root = Path(root)
        self.keep = keep
        self.state = self._read()

    # -- paths --
    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def part_file(self, sha256: str) -> Path:
        return self.root / "downloads" / f"{sha256}.part"

    def staging_dir(self, sha256: str) -> Path:
        return self.root / "staging" / sha256

    def path_of(self, version: Version) -> Path:
        return self.versions_dir / version.dir

    def prepare(self) -> None:
        """Create the folders; clear what an interrupted unpack left (downloads stay: they resume)."""
        for sub in ("versions", "downloads", "staging"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "staging").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    # -- state --
    def _read(self) -> StoreState:
        path = self.root / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            state = StoreState(
                versions=[Version(**v) for v in raw.get("versions", [])],
                active=raw.get("active"),
                previous=raw.get("previous"),
                refused=dict(raw.get("refused", {})),
                probation=raw.get("probation") if isinstance(raw.get("probation"), dict) else None,
            )
        except FileNotFoundError:
            return StoreState()
        except (OSError, ValueError, TypeError) as exc:  # a broken state file must not stop the module
            log.warning("model store state %s unreadable (%s); starting with an empty store", path, exc)
            return StoreState()
        known = {v.dir for v in state.versions if (self.versions_dir / v.dir).is_dir()}
        state.versions = [v for v in state.versions if v.dir in known]
        state.active = state.active if state.active in known else None
        state.previous = state.previous if state.previous in known else None
        if state.probation is not None and state.probation.get("dir") != state.active:
            state.probation = None  # of a version no longer in use
        return state

    def _write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = asdict(self.state)
        tmp = self.root / f".{STATE_FILE}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.root / STATE_FILE)

    def find(self, sha256: str) -> Version | None:
        return next((v for v in self.state.versions if v.sha256 == sha256), None)

    def get(self, dir_name: str | None) -> Version | None:
        return next((v for v in self.state.versions if v.dir == dir_name), None)

    @property
    def active(self) -> Version | None:
        return self.get(self.state.active)

    @property
    def previous(self) -> Version | None:
        return self.get(self.state.previous)

    def install(self, staged: Path, name: str, version: int, sha256: str) -> Version:
        """Move a verified directory from staging into versions/ (atomic rename) and record it."""
        existing = self.find(sha256)
        if existing is not None:
            shutil.rmtree(staged, ignore_errors=True)
            return existing
        entry = Version(f"{name}-v{version}-{sha256[:12]}", name, version, sha256, _now())
        target = self.versions_dir / entry.dir
        if target.exists():  # left by a kill between the rename and the state write
            shutil.rmtree(target)
        staged.rename(target)
        self.state.versions.append(entry)
        self._write()
        return entry

    def activate(self, entry: Version, *, rollback: bool = False, probation: dict[str, Any] | None = None) -> None:
        """Record `entry` as the version in use (a rollback keeps no `previous`: there is nothing to return to), with
        its probation in the same write: a kill right after the swap still finds the probation to resume."""
        if self.state.active != entry.dir:
            self.state.previous = None if rollback else self.state.active
            self.state.active = entry.dir
        self.state.probation = None if probation is None else {**probation, "dir": entry.dir}
        self._prune()
        self._write()

    def note_probation(self, probation: dict[str, Any] | None) -> None:
        """The running probation's figures so far (None: it ended), for a restart to resume from."""
        if probation is not None and self.state.active is not None:
            probation = {**probation, "dir": self.state.active}
        self.state.probation = probation
        self._write()

    def refuse(self, sha256: str, reason: str) -> None:
        self.state.refused = {sha256: reason}  # only the latest: a new desired bundle clears it (forget_refusals)
        self._write()

    def forget_refusals(self, except_sha256: str) -> None:
        if set(self.state.refused) - {except_sha256}:
            self.state.refused = {k: v for k, v in self.state.refused.items() if k == except_sha256}
            self._write()

    def _prune(self) -> None:
        pinned = {self.state.active, self.state.previous}
        surplus = len(self.state.versions) - self.keep
        for entry in list(self.state.versions):  # oldest first
            if surplus <= 0:
                break
            if entry.dir in pinned:
                continue
            shutil.rmtree(self.versions_dir / entry.dir, ignore_errors=True)
            self.state.versions.remove(entry)
            surplus -= 1
            log.info("model store: removed %s (keeping %d versions)", entry.dir, self.keep)

    def drop_part(self, sha256: str) -> None:
        self.part_file(sha256).unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
