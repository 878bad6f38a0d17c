"""Target 4, direct methods: MethodHandler.call(name, payload) with hostile names and payloads (what
the SDK hands over: JSON it parsed, so NaN, 4000-digit integers, lone surrogates and deep nesting
too) always answers (status, JSON-serialisable payload) with a status IoT Hub passes on; never an
exception, never a 500. The pipeline keeps its accounting, and still scores afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.control import Controller, Health
from app.core.errors import ErrorCode
from app.core.pipeline import Pipeline
from app.edgehub.methods import METHOD_NAMES, MethodHandler
from app.main import open_pipeline
from app.model.scorer import Scorer
from app.settings import validate
from tests.conftest import DEFAULT_MODEL_DIR, ListSink
from tests.fuzz.conftest import (
    ROOTS_VALUE_ERROR_BUG,
    STATUS_SURROGATE_BUG,
    Hostile,
    KnownBugs,
    fuzz,
    fuzz_settings,
    json_dumps_ok,
    python_values,
    ran,
    roots_bug,
    seeds,
    status_surrogate_bug,
    timeout_for,
    to_json,
)
from tests.fuzz.corpus import METHOD_CALLS, READING, ROW

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # run() on 1e300


STATUSES = {200, 400, 404, 503}
# Reported, in app/edgehub/methods.py: _score() encodes the payload with orjson (or str.encode) unguarded.
SCORE_ENCODING_BUG = (
    "methods.py: call('score', payload) raises (TypeError from orjson.dumps, UnicodeEncodeError from str.encode) "
    "for payloads the SDK's json.loads does hand over: integers past 64 bits ({'data': [[2**64, 1, 2, 3]]}), "
    "lone surrogates ('\\ud800', {'timeCreated': '\\udc00'}), nesting past 255 levels; _answer() turns it into a 500 "
    "where a 400 with the error record is due"
)


def score_encoding_bug(name: str, payload: Any, exc: BaseException) -> bool:
    if name != "score" or not isinstance(exc, TypeError | UnicodeEncodeError):
        return False
    try:
        payload.encode("utf-8") if isinstance(payload, str) else orjson.dumps(payload)
    except (TypeError, UnicodeEncodeError):
        return True  # the payload itself is what the handler cannot encode
    return False


def method_name(h: Hostile) -> str:
    r = h.r
    if h.chance(0.7):
        return r.choice(METHOD_NAMES)
    return r.choice(["", "Score", "score ", "getstatus", "reloadmodel", "score\x00", "m" * 10_000, h.text()])


def payload_for(name: str, h: Hostile) -> Any:
    """What the SDK's json.loads could hand over: anything, or something shaped for the method."""
    r = h.r
    if name == "score" and h.chance(0.6):
        text = to_json(h.valid_document() if h.chance(0.4) else h.nearly_valid_document(), h.chance(0.5))
        if h.chance(0.2):
            return text  # a string payload: a double-encoded body
        try:
            return json.loads(text)  # what the SDK hands over: its json.loads of the payload
        except ValueError:  # the SDK could not parse it either (10**5000, 0x10, ...): no call happens
            return text
    if name == "reloadModel" and h.chance(0.6):
        # Never a directory that would load (seconds each): those are in the corpus.
        return r.choice([{"modelDir": h.text()}, {"modelDir": "/models/v2"}, {"modelDir": "/nonexistent"}, {"modelDir": 7},
                         {"modelDir": "/x", "more": 1}, [], "model", 0, False, float("nan")])  # fmt: skip
    return h.value(raw=False)


def would_load(name: str, payload: Any) -> bool:
    """A reloadModel payload that reloads the model in use (seconds): left to the corpus."""
    return name == "reloadModel" and (
        payload in (None, "", {})
        or (isinstance(payload, dict) and payload.get("modelDir") in (str(DEFAULT_MODEL_DIR), "model", "./model"))
    )


class Methods:
    def __init__(self, runner: asyncio.Runner, scorer: Scorer) -> None:
        self.runner = runner
        self.sink = ListSink()
        self.pipeline: Pipeline = runner.run(open_pipeline(fuzz_settings(), self.sink, scorer))
        self.health = Health(ready=True, status="ready")
        self.controller = Controller(self.pipeline.settings, self.pipeline, self.health)
        self.handler: MethodHandler = runner.run(self._handler())
        self.known = KnownBugs()

    async def _handler(self) -> MethodHandler:
        return MethodHandler(None, self.controller, asyncio.get_running_loop())  # type: ignore[arg-type]  # call() uses no client

    def call(self, name: str, payload: Any) -> None:
        settings = self.pipeline.settings
        try:
            status, answer = self.runner.run(self.handler.call(name, payload))
        except Exception as exc:
            example = f"call({ascii(name)[:40]}, {ascii(payload)[:200]}) -> {exc!r}"
            if score_encoding_bug(name, payload, exc):
                self.known.record(SCORE_ENCODING_BUG, example)
            elif name == "reloadModel" and isinstance(exc, ValueError) and roots_bug(exc):
                self.known.record(ROOTS_VALUE_ERROR_BUG, example)
            elif name in ("getStatus", "reloadModel") and status_surrogate_bug(exc):
                self.known.record(STATUS_SURROGATE_BUG, f"{example}, lastError {ascii(self.controller.last_error)[:200]}")
                self.controller.last_error = None  # go on checking the rest
            else:
                raise
            return
        assert isinstance(status, int) and status in STATUSES, f"{status}: {str(answer)[:300]}"
        json_dumps_ok(answer)  # the SDK sends it with json.dumps
        if status == 404:
            assert name not in METHOD_NAMES and answer["code"] == ErrorCode.UNKNOWN_METHOD
        if status == 400:
            assert answer["code"] and (answer.get("reason") or answer.get("message")), answer
            assert answer["code"] != ErrorCode.INTERNAL_ERROR, answer
        if name == "getStatus":
            assert status == 200 and {"status", "model", "settings", "counters"} <= set(answer)
        if name == "reloadModel" and status != 200:
            assert self.pipeline.settings is settings  # the previous model and settings hold
        assert validate(self.pipeline.settings) == []

    def accounting(self) -> None:
        async def idle() -> None:
            await self.pipeline.wait_idle()

        self.runner.run(idle())
        stats = self.pipeline.stats
        assert stats.messages == stats.predictions + stats.errors


@contextmanager
def methods(scorer: Scorer) -> Iterator[Methods]:
    with asyncio.Runner() as runner:
        m = Methods(runner, scorer)
        try:
            yield m
        finally:
            runner.run(m.handler.close())
            runner.run(m.pipeline.close())


@pytest.mark.timeout(timeout_for(0.5, 0.03))
def test_every_method_call_gets_a_status_and_a_json_answer(fuzz_scorer: Scorer) -> None:
    with methods(fuzz_scorer) as m:

        @fuzz(0.5)
        @given(seeds)
        def case(seed: int) -> None:
            h = Hostile(seed)
            name = method_name(h)
            payload = payload_for(name, h)
            if would_load(name, payload):
                payload = {"modelDir": "/models/not-there"}
            ran("methods: seeded")
            m.call(name, payload)

        case()
        m.accounting()
        m.call("score", READING)  # still scores
        m.known.fail_if_any()


@pytest.mark.timeout(timeout_for(0.25, 0.03))
def test_method_payloads_from_hypothesis(fuzz_scorer: Scorer) -> None:
    """The same with hypothesis' own values (shrinks to a minimal payload)."""
    with methods(fuzz_scorer) as m:

        @fuzz(0.25)
        @given(st.sampled_from([*METHOD_NAMES, "", "nope"]), python_values)
        def case(name: str, payload: Any) -> None:
            if would_load(name, payload):
                return
            ran("methods: hypothesis")
            m.call(name, payload)

        case()
        m.accounting()
        m.known.fail_if_any()


@pytest.mark.timeout(120)
def test_method_corpus(fuzz_scorer: Scorer) -> None:
    with methods(fuzz_scorer) as m:
        for _, name, payload in METHOD_CALLS:
            ran("methods: corpus")
            m.call(name, payload)
        status, answer = m.runner.run(m.handler.call("score", {"data": [ROW]}))
        assert status == 200 and isinstance(answer, list) and len(answer) == 1
        m.accounting()
        m.known.fail_if_any()
