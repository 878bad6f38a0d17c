"""The model thread's work on one batch: decode, run() within the row cap, one outcome per message."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.core.decoding import FeatureReader
from app.core.encoding import Encoder
from app.core.messages import InMessage
from app.core.processing import BatchProcessor
from app.model.scorer import Scorer, load_scorer
from app.model.simulator import FEATURES
from tests.conftest import DEFAULT_MODEL_DIR
from tests.helpers import body, reading, row

RECORDING_SCRIPT = """
INPUT_FORMAT = "ndarray"
calls = []
def init():
    pass
def run(x):
    calls.append(len(x))
    if (x[:, 0] == 666).any():
        raise ValueError("cannot score 666")
    return [{"label": "ok", "t": float(t)} for t in x[:, 0]]
"""


@pytest.fixture
def recording(tmp_path: Path) -> Scorer:
    script = tmp_path / "score.py"
    script.write_text(RECORDING_SCRIPT)
    scorer = load_scorer(DEFAULT_MODEL_DIR, script)
    scorer.script.calls.clear()  # the trial prediction at load
    return scorer


def _processor(scorer: Scorer, max_rows: int, aggregate: bool = False) -> BatchProcessor:
    encoder = Encoder("m", 1, "amlOutput", "errorOutput", 1024)
    return BatchProcessor(FeatureReader(FEATURES, ("timeCreated",)), scorer, encoder, max_rows, ["amlInput"], aggregate)


def _msg(i: int, payload: object) -> InMessage:
    return InMessage(payload if isinstance(payload, bytes) else body(payload), f"m-{i}", "amlInput")


def test_run_calls_stay_within_the_row_cap_and_never_split_a_message(recording: Scorer) -> None:
    sizes = [1, 3, 2, 9, 1, 1]  # rows per message; cap 4
    msgs = [_msg(i, {"data": [row(reading(float(i)))] * n}) for i, n in enumerate(sizes)]
    outcomes = _processor(recording, 4)(msgs)
    assert recording.script.calls == [4, 2, 9, 2]  # [1,3] [2] [9 alone] [1,1]
    assert [o.msg.message_id for o in outcomes] == [f"m-{i}" for i in range(6)]
    for i, outcome in enumerate(outcomes):
        predictions = orjson.loads(outcome.out.body)["predictions"]
        assert [p["t"] for p in predictions] == [float(i)] * sizes[i]


def test_bad_messages_are_outcomes_in_place_and_skip_the_model(recording: Scorer) -> None:
    msgs = [_msg(0, reading(1.0)), _msg(1, b"nope"), _msg(2, reading(2.0)), InMessage(body(reading()), "x", "otherInput")]
    outcomes = _processor(recording, 256)(msgs)
    assert [o.error for o in outcomes] == [None, "not_json", None, "unknown_input"]
    assert recording.script.calls == [2]
    assert orjson.loads(outcomes[2].out.body)["t"] == 2.0
    assert outcomes[1].out.output == "errorOutput" and outcomes[1].out.correlation_id == "m-1"


def test_a_failing_group_is_retried_message_by_message(recording: Scorer) -> None:
    msgs = [_msg(i, reading(666.0 if i == 2 else float(i))) for i in range(4)]
    processor = _processor(recording, 256)
    outcomes = processor(msgs)
    assert recording.script.calls == [4, 1, 1, 1, 1]
    assert [o.error for o in outcomes] == [None, None, "scoring_failed", None]
    assert "cannot score 666" in orjson.loads(outcomes[2].out.body)["reason"]
    assert processor.run_calls == 5 and processor.rows_scored == 3


def test_aggregate_mode_gives_items_with_message_ids(scorer: Scorer) -> None:
    outcomes = _processor(scorer, 256, aggregate=True)([_msg(0, reading(40.0)), _msg(1, [reading(41.0), reading(60.0, 9.9)])])
    assert all(o.out.packable for o in outcomes)  # items, for the AggregatingSink to pack
    first, second = (orjson.loads(o.out.body) for o in outcomes)
    assert first["messageId"] == "m-0" and first["label"] == "normal"
    assert second["messageId"] == "m-1" and [p["label"] for p in second["predictions"]] == ["normal", "anomaly"]
