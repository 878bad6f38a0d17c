"""Intake from the SDK: a real azure-iot-device Message becomes an InMessage, in arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from azure.iot.device import Message

from app.core.journal import IntakeJournal
from app.core.messages import InMessage
from app.edgehub.intake import Intake, message_from_sdk


class RecordingPipeline:
    def __init__(self) -> None:
        self.got: list[InMessage] = []
        self.arrived = asyncio.Event()

    async def submit(self, msg: InMessage) -> None:
        self.got.append(msg)
        self.arrived.set()

    def try_submit(self, msg: InMessage) -> bool:
        self.got.append(msg)
        self.arrived.set()
        return True


async def test_sdk_message_is_handed_over_in_order_without_edgehub_keys() -> None:
    pipeline = RecordingPipeline()
    intake = Intake(pipeline, asyncio.get_running_loop())  # type: ignore[arg-type]
    for i in range(3):
        message = Message(b'{"a": 1}', message_id=f"m-{i}")
        message.input_name = "amlInput"
        message.custom_properties = {"$.cdid": "dev", "$.cmid": "tempSensor", "sequenceNumber": str(i)}
        # The SDK calls the handler on its own loop, in another thread.
        await asyncio.to_thread(asyncio.run, intake.on_message(message))
    await intake.close()
    assert [m.message_id for m in pipeline.got] == ["m-0", "m-1", "m-2"]
    assert pipeline.got[0].body == b'{"a": 1}'
    assert pipeline.got[0].input_name == "amlInput"
    assert [m.custom_properties for m in pipeline.got] == [{"sequenceNumber": str(i)} for i in range(3)]
    assert all(m.received_at > 0 for m in pipeline.got)


# --- memory, journal, shedding, replay ---------------------------------------------------------------


class GatedPipeline(RecordingPipeline):
    """Takes nothing until opened: the model is busy, so intake must hold what arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.rejected: list[tuple[InMessage, str]] = []

    async def submit(self, msg: InMessage) -> None:
        await self.gate.wait()
        await super().submit(msg)

    def try_submit(self, msg: InMessage) -> bool:
        return self.gate.is_set() and super().try_submit(msg)

    async def reject(self, msg: InMessage, code: str, reason: str) -> None:
        self.rejected.append((msg, code))
        self.arrived.set()

    async def wait_idle(self) -> None:
        return None


def sdk_message(i: int, size: int = 100) -> Message:
    message = Message(b"x" * size, message_id=f"m-{i}")
    message.input_name = "amlInput"
    return message


async def hand_over(intake: Intake, messages: list[Message]) -> None:
    """As the SDK does: from its own thread, one call per message."""

    def run() -> None:
        for message in messages:
            asyncio.run(intake.on_message(message))

    await asyncio.to_thread(run)


async def wait_for(pipeline: RecordingPipeline, count: int) -> None:
    async with asyncio.timeout(10):
        while len(pipeline.got) + len(getattr(pipeline, "rejected", [])) < count:
            pipeline.arrived.clear()
            await pipeline.arrived.wait()


async def test_with_the_feeder_idle_arrivals_go_straight_into_the_pipeline_and_never_overtake() -> None:
    pipeline = GatedPipeline()
    pipeline.gate.set()
    intake = Intake(pipeline, asyncio.get_running_loop())  # type: ignore[arg-type]
    intake.start()
    await intake.settle()  # the feeder is idle: nothing handed over yet
    intake._accept([message_from_sdk(sdk_message(0)), message_from_sdk(sdk_message(1))])
    assert [m.message_id for m in pipeline.got] == ["m-0", "m-1"]  # at once, no feeder turn
    pipeline.gate.clear()  # the model's queue is full: m-2 waits in the inbox ...
    intake._accept([message_from_sdk(sdk_message(2))])
    pipeline.gate.set()  # ... and m-3, though the queue has room again, queues behind it
    intake._accept([message_from_sdk(sdk_message(3))])
    assert [m.message_id for m in pipeline.got] == ["m-0", "m-1"]
    await wait_for(pipeline, 4)
    await intake.settle()
    assert [m.message_id for m in pipeline.got] == ["m-0", "m-1", "m-2", "m-3"]
    intake._accept([message_from_sdk(sdk_message(4))])  # idle again: straight in
    assert [m.message_id for m in pipeline.got][-1] == "m-4" and intake.accepted == 5
    await intake.close()


async def test_past_the_memory_budget_inputs_wait_on_disk_and_come_back_in_order(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    journal = IntakeJournal(tmp_path, 10 * 1024 * 1024)
    intake = Intake(pipeline, asyncio.get_running_loop(), journal, max_bytes=5_000)  # room for ~50 of 100 bytes
    intake.start()
    await hand_over(intake, [sdk_message(i) for i in range(1000)])
    async with asyncio.timeout(10):
        while intake.accepted < 1000:
            await asyncio.sleep(0)
    assert intake.spilled > 900 and intake.backlog_bytes_peak <= 5_000 + 100
    pipeline.gate.set()
    await wait_for(pipeline, 1000)
    assert [m.message_id for m in pipeline.got] == [f"m-{i}" for i in range(1000)]  # each once, in order
    assert intake.shed == 0
    await intake.close()
    intake.close_journal()


async def test_without_a_journal_past_the_budget_inputs_get_overloaded_records(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    intake = Intake(pipeline, asyncio.get_running_loop(), None, max_bytes=5_000)
    intake.start()
    await hand_over(intake, [sdk_message(i) for i in range(200)])
    async with asyncio.timeout(10):
        while intake.accepted < 200:  # every arrival is taken over (and shed or kept) by then
            await asyncio.sleep(0)
    pipeline.gate.set()
    await wait_for(pipeline, 200)
    scored = {m.message_id for m in pipeline.got}
    shed = {m.message_id for m, code in pipeline.rejected}
    assert all(code == "overloaded" for _, code in pipeline.rejected)
    assert scored | shed == {f"m-{i}" for i in range(200)} and not scored & shed  # each exactly one outcome
    assert len(shed) == intake.shed > 100
    await intake.close()


async def test_a_full_journal_sheds_with_a_reason(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    journal = IntakeJournal(tmp_path, 1024 * 1024)
    intake = Intake(pipeline, asyncio.get_running_loop(), journal, max_bytes=1_000_000)
    intake.start()
    await hand_over(intake, [sdk_message(i, size=20_000) for i in range(80)])  # 1.6 MB into a 1 MB journal
    pipeline.gate.set()
    await wait_for(pipeline, 80)
    assert len(pipeline.got) + len(pipeline.rejected) == 80
    assert 20 < len(pipeline.rejected) < 60 and journal.refused == len(pipeline.rejected)
    await intake.close()
    intake.close_journal()


async def test_after_a_crash_the_unsettled_inputs_are_fed_before_anything_new(tmp_path: Path) -> None:
    first = IntakeJournal(tmp_path, 10 * 1024 * 1024)
    first.open()
    earlier = [InMessage(b"{}", f"old-{i}", "amlInput") for i in range(5)]
    first.append(earlier)
    first.settle([earlier[0].journal_seq or 0])
    first.flush()  # old-0 had its outcome; the process dies here, old-1..4 had none
    pipeline = GatedPipeline()
    intake = Intake(pipeline, asyncio.get_running_loop(), IntakeJournal(tmp_path, 10 * 1024 * 1024))
    assert intake.replayed == 4
    await hand_over(intake, [sdk_message(i) for i in range(3)])  # arrivals before the module is ready wait
    intake.start()
    pipeline.gate.set()
    await wait_for(pipeline, 7)
    assert [m.message_id for m in pipeline.got] == ["old-1", "old-2", "old-3", "old-4", "m-0", "m-1", "m-2"]
    await intake.close()
    intake.close_journal()


def test_odd_sdk_messages_still_become_messages_with_their_id() -> None:
    message = Message(None, message_id=7)  # type: ignore[arg-type]
    message.custom_properties = {"$.cdid": "dev", 5: 6}  # type: ignore[dict-item]
    msg = message_from_sdk(message)
    assert (msg.body, msg.message_id, msg.custom_properties) == (b"", "7", {"5": "6"})


# --- landing on paho's thread, before the acknowledgement; poison inputs --------------------------


def topic(i: int) -> str:
    return f"devices/dev/modules/inference/inputs/amlInput/%24.mid=m-{i}&%24.ct=application%2Fjson&sequenceNumber={i}"


async def test_inputs_land_in_the_journal_before_the_sdk_hands_them_over_and_once(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    journal = IntakeJournal(tmp_path, 10 * 1024 * 1024)
    intake = Intake(pipeline, asyncio.get_running_loop(), journal, max_bytes=2_000)  # ~20 of 100 bytes in memory
    tap = intake.tap_for("dev", "inference")
    assert tap is not None
    payloads = [b"%03d" % i + b"x" * 97 for i in range(100)]  # distinct objects, as paho makes them

    def paho_thread() -> None:  # paho's network thread: twin traffic is not an input
        tap("$iothub/twin/res/200/?$rid=1", b"{}")
        for i, payload in enumerate(payloads):
            tap(topic(i), payload)

    await asyncio.to_thread(paho_thread)
    assert journal.appended == 100  # all on disk, though the SDK has handed over none yet
    intake.start()

    def sdk_messages(ids: range) -> list[Message]:
        out = []
        for i in ids:  # as the SDK parses the topic; its Message holds paho's payload object itself
            message = Message(payloads[i], message_id=f"m-{i}", content_type="application/json")
            message.input_name = "amlInput"
            message.custom_properties = {"sequenceNumber": str(i)}
            out.append(message)
        return out

    await hand_over(intake, sdk_messages(range(60)))
    pipeline.gate.set()
    await wait_for(pipeline, 60)
    assert [m.message_id for m in pipeline.got] == [f"m-{i}" for i in range(60)]  # not the 40 the SDK still holds
    assert intake.spilled > 30  # most waited on disk only, and were read back decoded from their topic:
    assert all(m.custom_properties == {"sequenceNumber": m.message_id[2:]} for m in pipeline.got)
    assert {(m.input_name, m.content_type) for m in pipeline.got} == {("amlInput", "application/json")}
    await hand_over(intake, sdk_messages(range(60, 100)))
    await wait_for(pipeline, 100)
    assert [m.message_id for m in pipeline.got] == [f"m-{i}" for i in range(100)]  # each once, in order
    assert journal.appended == 100 and intake.shed == 0  # handed over: not journaled a second time
    await intake.close()
    intake.close_journal()


async def test_an_input_an_earlier_run_died_with_too_often_is_set_aside(tmp_path: Path) -> None:
    first = IntakeJournal(tmp_path, 10 * 1024 * 1024)
    first.open()
    earlier = [InMessage(b"{}", f"old-{i}", "amlInput") for i in range(3)]
    first.append(earlier)
    for _ in range(3):  # three runs died with old-1 in the model
        first.mark_tried([earlier[1].journal_seq or 0])
    pipeline = GatedPipeline()
    intake = Intake(pipeline, asyncio.get_running_loop(), IntakeJournal(tmp_path, 10 * 1024 * 1024), replay_limit=3)
    intake.start()
    pipeline.gate.set()
    await wait_for(pipeline, 3)
    assert [m.message_id for m in pipeline.got] == ["old-0", "old-2"]
    assert [(m.message_id, code) for m, code in pipeline.rejected] == [("old-1", "poison_input")]
    assert intake.poisoned == 1
    await intake.close()
    intake.close_journal()
