"""The bench harness counts outcomes by the id of the input they answer, aggregates by their items' ids."""

from __future__ import annotations

import orjson

from bench.edge_harness import Outcomes, account, aggregated_ids
from localedge.upstream import UpstreamMessage


def upstream(body: dict[str, object], cid: str | None = None, predictions: int = 1, errors: int = 0) -> UpstreamMessage:
    props = {"$.cid": cid} if cid is not None else {}
    raw = orjson.dumps(body)
    return UpstreamMessage("inference", "amlOutput", props, raw, 1.0, len(raw), 1, predictions, errors, None)


def test_an_aggregate_counts_one_outcome_for_each_item_by_its_message_id() -> None:
    outcomes = Outcomes(keep_times=True)
    items = [{"messageId": "a", "label": "normal"}, {"messageId": "b", "label": "anomaly"}]
    outcomes(upstream({"model": "m", "modelVersion": 1, "predictions": items}, predictions=2))
    outcomes(upstream({"label": "normal", "model": "m", "modelVersion": 1}, cid="c"))

    assert (outcomes.total, outcomes.predicted, outcomes.models["m"]) == (3, 3, 3)
    assert dict(outcomes.count) == {"a": 1, "b": 1, "c": 1}
    assert set(outcomes.first_at or {}) == {"a", "b", "c"}
    accounting = account({"a", "b", "c", "d"}, outcomes)
    assert (accounting.lost, accounting.duplicated, accounting.lost_sample) == (1, 0, ["d"])


def test_an_item_answered_twice_is_a_duplicate_and_items_without_an_id_are_not_counted() -> None:
    outcomes = Outcomes()
    outcomes(upstream({"predictions": [{"messageId": "a"}, {"label": "x"}, "text"]}, predictions=3))
    outcomes(upstream({"label": "normal"}, cid="a"))

    assert outcomes.count["a"] == 2 and outcomes.total == 2
    assert account({"a"}, outcomes).duplicated == 1
    assert aggregated_ids({"label": "normal"}) == [] and aggregated_ids({"predictions": "no"}) == []
