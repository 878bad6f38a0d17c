"""Shared fixtures: the committed default model, settings, and an in-process sink."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from app.config import REPO_ROOT, Settings
from app.messages import OutMessage
from app.scoring import Scorer, load_scorer

DEFAULT_MODEL_DIR = REPO_ROOT / "model"


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    return load_scorer(DEFAULT_MODEL_DIR)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the default model directory, free to break."""
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target, ignore=shutil.ignore_patterns(".register-*"))
    return target


@pytest.fixture
def settings() -> Settings:
    return Settings(model_dir=str(DEFAULT_MODEL_DIR))


class ListSink:
    """Collects outputs; `wait_for(n)` returns once n have arrived (bounded)."""

    def __init__(self) -> None:
        self.messages: list[OutMessage] = []
        self._changed = asyncio.Event()

    async def send(self, msg: OutMessage) -> None:
        self.messages.append(msg)
        self._changed.set()

    async def flush(self) -> None:
        return None

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[OutMessage]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    def on(self, output: str) -> list[OutMessage]:
        return [m for m in self.messages if m.output == output]
