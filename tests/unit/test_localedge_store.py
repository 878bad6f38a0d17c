"""The local edge's store-and-forward store (localedge/store.py), its hub TTLs and the SDK's renewal margin."""

from __future__ import annotations

from pathlib import Path

from edgekit.routes import ModuleInput, parse_routes
from edgekit.sas_token import SDK_RENEWAL_MARGIN_S, renewal_margin
from localedge.hub import sink_ttls
from localedge.store import MessageStore, message_id
from localedge.wire import input_topic


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def topic(mid: str) -> str:
    return input_topic("dev", "inference", "amlInput", {"$.mid": mid, "$.ct": "application/json"})


def test_messages_come_back_in_order_with_topic_and_body(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "s" / "messages.bin", Clock())
    for i in range(5):
        store.put(topic(f"m{i}"), f"body-{i}".encode(), ttl_s=60)
    first = store.take(3)
    assert [message_id(m.topic) for m in first.messages] == ["m0", "m1", "m2"]
    assert [m.body for m in first.messages] == [b"body-0", b"body-1", b"body-2"]
    assert store.take(3).messages == first.messages  # nothing moves before commit
    store.commit(first)
    rest = store.take(10)
    assert [message_id(m.topic) for m in rest.messages] == ["m3", "m4"]
    store.commit(rest)
    assert (store.pending, store.stored, store.delivered, store.expired) == (0, 5, 5, 0)
    store.close()


def test_a_drained_store_starts_its_file_over(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "messages.bin", Clock())
    store.put(topic("a"), b"x" * 1000, ttl_s=60)
    assert store.size_bytes() > 1000
    store.commit(store.take(10))
    assert store.size_bytes() == 0
    store.put(topic("b"), b"y", ttl_s=60)  # written from the start again, read from the start
    assert [message_id(m.topic) for m in store.take(10).messages] == ["b"]
    store.close()


def test_messages_past_their_ttl_are_dropped_counted_and_never_handed_over(tmp_path: Path) -> None:
    clock = Clock()
    store = MessageStore(tmp_path / "messages.bin", clock)
    store.put(topic("old-1"), b"1", ttl_s=5)
    store.put(topic("long"), b"2", ttl_s=100)
    store.put(topic("old-2"), b"3", ttl_s=5)
    clock.now += 5  # exactly the TTL: still alive
    assert [message_id(m.topic) for m in store.take(10).messages] == ["old-1", "long", "old-2"]
    clock.now += 1
    batch = store.take(10)
    assert [message_id(m.topic) for m in batch.messages] == ["long"]
    assert [message_id(m.topic) for m in batch.expired] == ["old-1", "old-2"]
    store.commit(batch)
    assert (store.pending, store.delivered, store.expired, store.expired_ids) == (0, 1, 2, ["old-1", "old-2"])
    store.close()


def test_expire_head_drops_only_the_expired_messages_in_front(tmp_path: Path) -> None:
    clock = Clock()
    store = MessageStore(tmp_path / "messages.bin", clock)
    store.put(topic("a"), b"", ttl_s=1)
    store.put(topic("b"), b"", ttl_s=1)
    store.put(topic("keep"), b"", ttl_s=50)
    store.put(topic("c"), b"", ttl_s=1)
    clock.now += 2
    assert store.expire_head() == 2
    assert (store.pending, store.expired, store.expired_ids) == (2, 2, ["a", "b"])
    batch = store.take(10)  # "c" expired behind a live one: dropped when the store drains
    assert [message_id(m.topic) for m in batch.messages] == ["keep"] and len(batch.expired) == 1
    store.close()


def test_a_sink_takes_its_routes_ttl_else_the_hub_default_and_the_longest_of_several() -> None:
    routes = parse_routes(
        {
            "a": {
                "route": 'FROM /messages/modules/s/outputs/x INTO BrokeredEndpoint("/modules/m/inputs/in")',
                "timeToLiveSecs": 30,
            },
            "b": {
                "route": 'FROM /messages/modules/s/outputs/y INTO BrokeredEndpoint("/modules/m/inputs/in")',
                "timeToLiveSecs": 90,
            },
            "c": 'FROM /messages/modules/s/outputs/z INTO BrokeredEndpoint("/modules/m/inputs/other")',
            "d": "FROM /messages/* INTO $upstream",
        }
    )
    assert sink_ttls(routes, 7200) == {ModuleInput("m", "in"): 90, ModuleInput("m", "other"): 7200}


def test_the_renewal_margin_fits_a_short_token_and_is_the_sdks_otherwise() -> None:
    assert renewal_margin(60) == 15  # renewed at 45 s, not 60 s in the past
    assert renewal_margin(3600) == SDK_RENEWAL_MARGIN_S == 120
    assert renewal_margin(480) == 120 and renewal_margin(20) == 5
