"""Target 3, twin desired documents: settings_from_desired and Controller.apply_desired on a running
pipeline, with hostile documents (unknown keys by the thousand, huge strings, nested objects, wrong
types, nulls, `$` keys, out-of-range numbers), whole or as patches, in sequences.

Only ConfigError (settings_from_desired) and ChangeRefused (apply_desired) may come out; the settings
in effect stay valid and, after a refusal, unchanged; status() stays JSON-serialisable and under IoT
Hub's 32 KB reported-properties limit as the SDK sends it; and the pipeline still scores afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.control import ChangeRefused, Controller, Health
from app.core.errors import ErrorCode
from app.core.messages import InMessage
from app.core.pipeline import Pipeline
from app.main import open_pipeline
from app.model.scorer import Scorer
from app.settings import FIELDS, LIVE, ConfigError, Settings, settings_from_desired, validate
from tests.conftest import DEFAULT_MODEL_DIR, ListSink
from tests.fuzz.conftest import (
    ROOTS_VALUE_ERROR_BUG,
    STATUS_SURROGATE_BUG,
    Hostile,
    KnownBugs,
    fuzz,
    fuzz_settings,
    json_dumps_ok,
    keys,
    python_values,
    ran,
    roots_bug,
    seeds,
    status_surrogate_bug,
    timeout_for,
)
from tests.fuzz.corpus import DESIRED_DOCS, READING

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # run() on 1e300


REPORTED_LIMIT_BYTES = 32 * 1024  # IoT Hub refuses larger reported-properties documents
REFUSAL_CODES = {ErrorCode.INVALID_DESIRED, ErrorCode.MODEL_REJECTED}
RESTART_ONLY = [f.twin for f in FIELDS if not f.spec.live]
BASE = fuzz_settings()
GOOD_BODY = orjson.dumps(READING)
# Reported, in edgekit/typed_settings.py: _json_float() lets float()'s OverflowError out (not a ValueError).
FLOAT_OVERFLOW_BUG = (
    "edgekit/typed_settings.py: settings_from_desired(base, {'maxWaitMs': 10**400}) raises OverflowError ('int too "
    "large to convert to float') instead of ConfigError; apply_desired refuses it as internal_error"
)


def overflow_bug(exc: BaseException) -> bool:
    return "int too large to convert to float" in str(exc)


def plausible(key: str, h: Hostile) -> Any:
    """A value of the right kind for a live setting, often at or past a bound; or anything at all."""
    r = h.r
    f = LIVE.get(key)
    if f is None or h.chance(0.25):
        return h.value(raw=False)
    s = f.spec
    bounds = [b for b in (s.minimum, s.maximum, s.above, s.below, s.cap) if b is not None]
    numbers = [*bounds, *(b + d for b in bounds for d in (-1, 1, -1e-9)), 0, 1, -1, 8, 0.5, 2**63, 10**400, 1e300]
    if key in ("modelDir", "scoreScript"):
        return r.choice(
            [str(DEFAULT_MODEL_DIR), "/models/v2", "/models/../etc", "/nonexistent", "/", "/dev/zero", "/tmp/\x00", "/tmp/\ud800",
             "relative/dir", "", "/" + "m" * 5000, None]
        )  # fmt: skip
    if f.kind == "int":
        return r.choice([int(n) if isinstance(n, float) and n.is_integer() and abs(n) < 1e300 else n for n in numbers])
    if f.kind in ("float", "optional_float"):
        return r.choice([*numbers, float("nan"), float("inf"), 5e-324, None])
    if f.kind == "bool":
        return r.choice([True, False, "true", 1, 0, None])
    if f.kind == "names":
        four = [h.text() or "a" for _ in range(4)]
        return r.choice(
            [[], ["amlInput"], ["amlInput", "other"], four, ",".join(four), ["a.b", "c.d", "e", "f"], ["x" * 300],
             ["a"] * 2000, [1, 2], "a,,b", ["machine.temperature", "machine.pressure", "ambient.temperature", "ambient.humidity"]]
        )  # fmt: skip
    if s.choices:
        return r.choice([*s.choices, r.choice(s.choices).lower(), "LOUD", 10, ""])
    return r.choice(["", "amlOutput", "errorOutput", "other", "x" * 300, "\ud800", h.text(), 7])


def desired_document(h: Hostile) -> dict[str, Any]:
    r = h.r
    doc: dict[str, Any] = {}
    for _ in range(r.randrange(6)):
        kind = r.randrange(10)
        if kind < 6:
            key = r.choice(list(LIVE))
        elif kind == 6:
            key = r.choice(RESTART_ONLY)
        elif kind == 7:
            key = r.choice(["$version", "$metadata", "$", "$.x"])
        else:
            key = h.text()
        doc[key] = plausible(key, h)
    if h.chance(0.03):
        doc.update({f"unknown{i}-{'k' * r.randrange(200)}": i for i in range(r.choice([1000, 3000]))})
    if h.chance(0.05):
        doc[r.choice([*LIVE, "unknown"])] = "x" * r.choice([300, 250_000])
    return doc


class Controlled:
    """A running pipeline and its Controller, on an event loop of their own."""

    def __init__(self, runner: asyncio.Runner, scorer: Scorer) -> None:
        self.runner = runner
        self.sink = ListSink()
        self.pipeline: Pipeline = runner.run(open_pipeline(BASE, self.sink, scorer))
        self.health = Health(ready=True, status="ready")
        self.controller = Controller(BASE, self.pipeline, self.health)
        self.largest_status = 0
        self.oversized: list[tuple[int, str]] = []  # (bytes, what led there), for the report
        self.known = KnownBugs()

    def check_status(self, what: str) -> None:
        try:
            status = self.controller.status()  # must not raise
        except TypeError as exc:
            if not status_surrogate_bug(exc):
                raise
            self.known.record(STATUS_SURROGATE_BUG, what)
            self.controller.last_error = None  # go on checking the rest
            return
        wire = json_dumps_ok(status)  # what the SDK sends (json.dumps, ASCII)
        self.largest_status = max(self.largest_status, len(wire))
        if len(wire) > REPORTED_LIMIT_BYTES:
            self.oversized.append((len(wire), what))

    def apply(self, doc: dict[str, Any], version: int | None, patch: bool) -> bool:
        """Apply one document; True if it took effect. Anything but ChangeRefused fails the test."""
        before = self.pipeline.settings
        try:
            result = self.runner.run(self.controller.apply_desired(doc, version, patch=patch))
        except ChangeRefused as exc:
            if exc.code == ErrorCode.INTERNAL_ERROR and overflow_bug(exc):
                self.known.record(FLOAT_OVERFLOW_BUG, ascii(doc))
            elif exc.code == ErrorCode.INTERNAL_ERROR and roots_bug(exc):
                self.known.record(ROOTS_VALUE_ERROR_BUG, ascii(doc))
            else:
                assert exc.code in REFUSAL_CODES, f"refused with {exc.code}: {exc}"
            assert self.pipeline.settings is before, "a refused document changed the settings"
            assert self.controller.last_error is not None and self.controller.last_error["code"] == exc.code
            if version is not None:  # (a refusal without a $version leaves the status 'ready': only lastError tells)
                assert self.controller.state == "degraded"
            accepted = False
        else:
            assert result is self.pipeline.settings
            accepted = True
        assert validate(self.pipeline.settings) == []
        self.check_status(f"{'patch' if patch else 'document'} {ascii(doc)[:200]}")
        return accepted

    def still_scores(self) -> None:
        """One valid reading in, exactly one outcome out (a prediction unless the settings moved its input or features)."""
        stats = self.pipeline.stats
        if self.pipeline.settings.max_wait_ms > 20:  # a lone message waits that long for batch-mates
            return

        async def one() -> None:
            self.sink.messages.clear()
            await self.pipeline.submit(InMessage(GOOD_BODY, "probe", "amlInput"))
            await self.pipeline.wait_idle()

        self.runner.run(one())
        assert len(self.sink.messages) == 1 and self.sink.messages[0].correlation_id in ("probe", None)
        assert stats.messages == stats.predictions + stats.errors
        s = self.pipeline.settings
        if "amlInput" in s.input_names and not s.features:
            assert self.sink.messages[0].output == s.output_name, orjson.loads(self.sink.messages[0].body)


@contextmanager
def controlled(scorer: Scorer) -> Iterator[Controlled]:
    root, azure = logging.getLogger(), logging.getLogger("azure.iot.device")
    levels = root.level, azure.level
    with asyncio.Runner() as runner:
        c = Controlled(runner, scorer)
        try:
            yield c
        finally:
            runner.run(c.pipeline.close())
            root.setLevel(levels[0])  # logLevel patches change the process's logging
            azure.setLevel(levels[1])


def _report(c: Controlled) -> None:
    if c.oversized:
        size, what = min(c.oversized)
        pytest.fail(f"status() is {size} bytes on the wire after {what}; IoT Hub takes at most {REPORTED_LIMIT_BYTES}")
    c.known.fail_if_any()


# --- settings_from_desired ---------------------------------------------------------------------------

desired_keys = st.one_of(st.sampled_from(list(LIVE) + RESTART_ONLY + ["$version", "$metadata", "$"]), keys)
edge_values = st.sampled_from([0, 1, -1, 2**63, 10**400, 1e300, -1e300, 0.5, 5e-324, float("nan"), float("inf"), "", "x" * 300])
desired_docs = st.dictionaries(desired_keys, st.one_of(edge_values, python_values), max_size=8)


@pytest.mark.timeout(timeout_for(0.5, 0.02))
def test_settings_from_desired_gives_valid_settings_or_a_config_error() -> None:
    known = KnownBugs()

    @fuzz(0.5)
    @given(desired_docs, st.integers(0, 9))
    def case(doc: dict[str, Any], thousands: int) -> None:
        ran("twin: settings_from_desired")
        if thousands == 9:
            doc = {**doc, **{f"unknown{i}": i for i in range(2000)}}
        try:
            settings = settings_from_desired(BASE, doc)
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
            assert str(exc)
            return
        except OverflowError as exc:
            if not overflow_bug(exc):
                raise
            known.record(FLOAT_OVERFLOW_BUG, ascii(doc))
            return
        assert isinstance(settings, Settings) and validate(settings) == []

    case()
    known.fail_if_any()


@pytest.mark.parametrize(("name", "doc"), DESIRED_DOCS, ids=[name for name, _ in DESIRED_DOCS])
def test_settings_from_desired_on_the_corpus(name: str, doc: dict[str, Any]) -> None:
    ran("twin: corpus, settings_from_desired")
    try:
        settings = settings_from_desired(BASE, doc)
    except ConfigError as exc:
        assert exc.problems
        return
    assert validate(settings) == []


# --- the controller on a running pipeline ------------------------------------------------------------


@pytest.mark.timeout(timeout_for(0.25, 0.05))
def test_apply_desired_refuses_cleanly_and_keeps_the_previous_good_state(fuzz_scorer: Scorer) -> None:
    with controlled(fuzz_scorer) as c:

        @fuzz(0.25)
        @given(seeds, st.integers(1, 4))
        def case(seed: int, steps: int) -> None:
            h = Hostile(seed)
            r = h.r
            ran("twin: apply_desired", steps)
            assert c.apply({}, None, patch=False)  # back to the environment's settings
            for step in range(steps):
                version = r.choice([None, step + 1, step + 1, 0, -1, 2**63])
                c.apply(desired_document(h), version, patch=step > 0 and h.chance(0.7))
            c.still_scores()

        case()
        _report(c)


@pytest.mark.timeout(120)
def test_apply_desired_on_the_corpus_then_a_good_document(fuzz_scorer: Scorer) -> None:
    with controlled(fuzz_scorer) as c:
        for version, (_, doc) in enumerate(DESIRED_DOCS, start=1):
            ran("twin: corpus, apply_desired", 2)
            c.apply(doc, version, patch=False)
            c.apply(doc, None, patch=True)
            c.still_scores()
        assert c.apply({"maxBatchSize": 16}, 10_000, patch=False)
        assert c.controller.state == "ready" and c.pipeline.settings.max_batch_size == 16
        c.still_scores()
        _report(c)
