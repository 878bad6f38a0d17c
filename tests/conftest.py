"""Fixtures every test may use: the committed default model, settings, an in-process sink; and the time limit
of every test (unit: in-process, seconds; integration: brokers and processes).

The brokers, twins and module processes are in tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from app.core.messages import OutMessage
from app.model.scorer import Scorer, load_scorer
from app.settings import REPO_ROOT, Settings

DEFAULT_MODEL_DIR = REPO_ROOT / "model"
# `make model` bumps it: tests name the default model by what its manifest says.
DEFAULT_MODEL_VERSION: int = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["version"]


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    return load_scorer(DEFAULT_MODEL_DIR)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the default model directory, free to break."""
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target, ignore=shutil.ignore_patterns(".register-*"))
    return target


@pytest.fixture(scope="session")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model to swap in (a logistic regression named temperature-lr), registered in its own directory."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from app.model.register import register
    from app.model.simulator import FEATURES, LABELS, training_data

    directory = tmp_path_factory.mktemp("second") / "model"
    X, y = training_data(2000, 11)
    source = directory.parent / "lr.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), source)
    register(source, directory, name="temperature-lr", features=list(FEATURES), labels=list(LABELS))
    return directory


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


# Every test has a time limit (pytest-timeout): a hang fails with its stack instead of stalling CI.
# In-process tests take milliseconds to a few seconds; broker and process tests up to ~30 s on a
# loaded 2-core machine. A test may set its own with @pytest.mark.timeout(N).
UNIT_TIMEOUT_S = 60
INTEGRATION_TIMEOUT_S = 240


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            integration = "integration" in item.path.parts
            item.add_marker(pytest.mark.timeout(INTEGRATION_TIMEOUT_S if integration else UNIT_TIMEOUT_S))
