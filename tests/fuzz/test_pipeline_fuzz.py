"""Target 2, the pipeline end to end: valid readings and hostile messages (bodies, properties, content
types, input names, duplicate and missing ids) submitted together, with and without aggregation.

The invariant, checked message by message: every message has exactly one outcome (a prediction, or
one error record on the error output), `messages == predictions + errors`, no outcome is an
internal error, and every message gets exactly the outcome it gets when processed alone: no
batch-mate changes it. Outputs keep input order (aggregates: errors and items each in order).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.encoding import SYSTEM_PROPERTIES_ALLOWANCE
from app.core.errors import ErrorCode
from app.core.messages import InMessage, OutMessage
from app.core.pipeline import Pipeline
from app.main import open_pipeline
from app.model.scorer import Scorer
from app.settings import Settings
from tests.conftest import ListSink
from tests.fuzz.conftest import Hostile, fuzz, fuzz_settings, ran, seeds, timeout_for
from tests.fuzz.corpus import BODIES

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # run() on 1e300


CONFIGS = {
    "plain": {},
    "small batches": {"max_batch_size": 3},
    "aggregate": {"aggregate": True},
    "aggregate, 512-byte budget": {"aggregate": True, "aggregate_max_bytes": 512, "max_batch_size": 5},
}
ERROR_CODES = {str(code) for code in ErrorCode} - {ErrorCode.INTERNAL_ERROR}


def _pool(n: int, seed: int = 7) -> list[bytes]:
    """Valid bodies from a fixed seed: most valid messages come from here, so their outcome alone is cached."""
    rnd = random.Random(seed)
    bodies = []
    for i in range(n):
        rows = [[round(rnd.uniform(-50, 150), rnd.randint(0, 6)) for _ in range(4)] for _ in range(rnd.randint(1, 4))]
        readings = [
            {
                "machine": {"temperature": r[0], "pressure": r[1]},
                "ambient": {"temperature": r[2], "humidity": int(r[3])},
                "timeCreated": f"2026-01-01T00:00:{i % 60:02d}Z",
            }
            for r in rows
        ]
        doc = [readings[0], readings, {"data": rows}, rows, {"data": readings}][i % 5]
        body = orjson.dumps(doc)
        bodies.append(orjson.dumps(body.decode()) if i % 7 == 0 else body)
    return bodies


VALID_POOL = _pool(200)
PLAIN_PROPERTIES = [{}, {"sequenceNumber": "7", "batchId": "b1"}, {"$.cdid": "device", "k": "v"}]
VALID_CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8"]


@dataclass
class Case:
    messages: list[InMessage]
    valid: list[bool]


INPUT_NAMES = ["amlInput", "", "other", "AMLINPUT", "amlInput "]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Up to 10 messages: valid ones (from the pool, or fresh) between hostile ones, from one seed."""
    kinds = draw(st.lists(st.sampled_from(["pool", "pool", "fresh", "hostile", "hostile", "hostile"]), min_size=1, max_size=10))
    h = Hostile(draw(seeds))
    r = h.r
    messages: list[InMessage] = []
    for i, kind in enumerate(kinds):
        if kind != "hostile":
            body = r.choice(VALID_POOL) if kind == "pool" else h.valid_body()
            props = dict(r.choice(PLAIN_PROPERTIES))
            msg = InMessage(body, f"v{i}", r.choice(["amlInput", ""]), props, content_type=r.choice(VALID_CONTENT_TYPES))
        else:
            mid = r.choice(messages).message_id if messages and h.chance(0.2) else h.message_id()  # duplicates too
            name = r.choice(INPUT_NAMES) if h.chance(0.7) else h.text()
            msg = InMessage(h.body(), mid, name, h.properties(), content_type=h.content_type())
        messages.append(msg)
    return Case(messages, [kind != "hostile" for kind in kinds])


def _copy(msg: InMessage) -> InMessage:
    return InMessage(msg.body, msg.message_id, msg.input_name, dict(msg.custom_properties), content_type=msg.content_type)


@dataclass(frozen=True)
class Alone:
    """A message's outcome when it is the only one in the pipeline."""

    error: str | None  # the error code, or None for a prediction
    out: OutMessage  # the error record or the prediction message (with aggregation: the aggregate of one)
    item: Any = None  # with aggregation: the message's item in that aggregate


class Harness:
    """A started pipeline on its own event loop, fed one case at a time."""

    def __init__(self, runner: asyncio.Runner, settings: Settings, scorer: Scorer) -> None:
        self.runner = runner
        self.sink = ListSink()
        self.pipeline: Pipeline = runner.run(open_pipeline(settings, self.sink, scorer))
        self.settings = settings
        self._alone: dict[Any, Alone] = {}

    @staticmethod
    def _key(msg: InMessage) -> Any:
        return (msg.body, msg.content_type, msg.input_name, msg.message_id, tuple(msg.custom_properties.items()))

    def alone(self, messages: list[InMessage]) -> list[Alone]:
        """Each message's outcome through the same pipeline on its own (decoding runs on the model
        thread either way: how deep a body the stdlib parser takes depends on the thread's stack)."""
        if len(self._alone) > 5000:
            self._alone.clear()
        missing = {self._key(m): m for m in messages if self._key(m) not in self._alone}

        async def one_by_one() -> list[list[OutMessage]]:
            outs = []
            for msg in missing.values():
                self.sink.messages.clear()
                await self.pipeline.submit(_copy(msg))
                await self.pipeline.wait_idle()
                outs.append(list(self.sink.messages))
            return outs

        for key, (out,) in zip(missing, self.runner.run(one_by_one()), strict=True):
            if out.output == self.settings.error_output_name:
                self._alone[key] = Alone(orjson.loads(out.body)["code"], out)
            elif self.settings.aggregate:
                (item,) = orjson.loads(out.body)["predictions"]
                self._alone[key] = Alone(None, out, item)
            else:
                self._alone[key] = Alone(None, out)
        return [self._alone[self._key(m)] for m in messages]

    def run(self, messages: list[InMessage]) -> tuple[list[OutMessage], dict[str, int]]:
        async def feed() -> None:
            for msg in messages:
                await self.pipeline.submit(msg)
            await self.pipeline.wait_idle()

        stats = self.pipeline.stats
        before = (stats.messages, stats.predictions, stats.errors, sum(stats.errors_by_code.values()))
        self.sink.messages.clear()
        self.runner.run(feed())
        after = (stats.messages, stats.predictions, stats.errors, sum(stats.errors_by_code.values()))
        names = ("messages", "predictions", "errors", "by_code")
        return list(self.sink.messages), dict(zip(names, (a - b for a, b in zip(after, before, strict=True)), strict=True))

    def check(self, case: Case) -> None:
        expected = self.alone(case.messages)
        outs, delta = self.run([_copy(m) for m in case.messages])
        s = self.settings
        n = len(case.messages)
        n_errors = sum(1 for e in expected if e.error is not None)
        assert delta == {"messages": n, "predictions": n - n_errors, "errors": n_errors, "by_code": n_errors}, delta
        for e, is_valid, msg in zip(expected, case.valid, case.messages, strict=True):
            assert e.error is None or e.error in ERROR_CODES, f"{e.error} for {msg.body[:200]!r}"
            if is_valid:
                assert e.error is None, f"a valid reading got {e.error}: {orjson.loads(e.out.body)['reason']}"
        errors = [o for o in outs if o.output == s.error_output_name]
        assert [o.body for o in errors] == [e.out.body for e in expected if e.error is not None]
        assert [o.correlation_id for o in errors] == [
            m.message_id for m, e in zip(case.messages, expected, strict=True) if e.error
        ]
        for o in errors:
            record = orjson.loads(o.body)
            assert record["code"] in ERROR_CODES and record["reason"]
        predictions = [o for o in outs if o.output == s.output_name]
        assert len(errors) + len(predictions) == len(outs)
        want = [(m, e) for m, e in zip(case.messages, expected, strict=True) if e.error is None]
        if not s.aggregate:
            assert len(outs) == n  # one output per message, in input order
            assert [o.body for o in predictions] == [e.out.body for _, e in want]
            assert [o.correlation_id for o in predictions] == [m.message_id for m, _ in want]
            assert [o.custom_properties for o in predictions] == [m.custom_properties for m, _ in want]
            assert [o.correlation_id for o in outs] == [m.message_id for m in case.messages]
            return
        items = []
        for aggregate in predictions:
            doc = orjson.loads(aggregate.body)
            assert {"model", "modelVersion", "predictions"} <= set(doc)
            if len(doc["predictions"]) > 1:  # only an item too large for the budget travels alone over it
                assert len(aggregate.body) <= s.aggregate_max_bytes - SYSTEM_PROPERTIES_ALLOWANCE
            items += doc["predictions"]
        assert items == [e.item for _, e in want]  # each carries its input's id, in input order
        assert sum(o.predictions for o in predictions) == len(want)


@contextmanager
def harness(settings: Settings, scorer: Scorer) -> Iterator[Harness]:
    with asyncio.Runner() as runner:
        h = Harness(runner, settings, scorer)
        try:
            yield h
        finally:
            runner.run(h.pipeline.close())


@pytest.mark.timeout(timeout_for(0.2, 0.05))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_message_has_one_outcome_and_no_batch_mate_changes_it(config: str, fuzz_scorer: Scorer) -> None:
    with harness(fuzz_settings(**CONFIGS[config]), fuzz_scorer) as h:

        @fuzz(0.2)
        @given(cases())
        def case(c: Case) -> None:
            ran(f"pipeline: {config}", len(c.messages))
            h.check(c)

        case()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("config", ["plain", "aggregate, 512-byte budget"])
def test_the_corpus_between_valid_readings(config: str, fuzz_scorer: Scorer) -> None:
    """Every corpus body at once, each between two valid readings, with odd ids and properties."""
    messages, valid = [], []
    for i, (name, body) in enumerate(BODIES):
        messages.append(InMessage(VALID_POOL[i % 10], f"before-{i}", "amlInput"))
        messages.append(InMessage(body, [None, name, "dup", "\ud800"][i % 4], "amlInput", {"corpus": name[:50], "\udc80": "x"}))
        valid += [True, False]
    messages.append(InMessage(VALID_POOL[0], "last", "amlInput"))
    valid.append(True)
    with harness(fuzz_settings(**CONFIGS[config]), fuzz_scorer) as h:
        h.check(Case(messages, valid))
    ran(f"pipeline corpus: {config}", len(messages))
