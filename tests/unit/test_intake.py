"""Intake from the SDK: a real azure-iot-device Message becomes an InMessage, in arrival order."""

from __future__ import annotations

import asyncio

from azure.iot.device import Message

from app.core.messages import InMessage
from app.edgehub.intake import Intake


class RecordingPipeline:
    def __init__(self) -> None:
        self.got: list[InMessage] = []
        self.arrived = asyncio.Event()

    async def submit(self, msg: InMessage) -> None:
        self.got.append(msg)
        self.arrived.set()


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
