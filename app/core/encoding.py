"""Encoding: predictions and errors -> output messages, one per input or packed into aggregates.

One reading in -> a flat body: {"label": "anomaly", "probability": 0.97, "timeCreated": "...",
"model": "temperature-anomaly", "modelVersion": 1}. Many rows in -> {"predictions": [...],
"model": ..., "modelVersion": ...}. Errors -> {"code", "reason", "inputMessageId", "inputName",
"input" (a truncated copy), "inputBytes", "inputTruncated", "model", "modelVersion"}.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from app.core.decoding import READING
from app.core.messages import CONTENT_ENCODING, CONTENT_TYPE, InMessage, OutMessage
from edgekit.limits import MESSAGE_LIMIT_BYTES, message_size


class OutputTooLarge(ValueError):
    pass


# What the module and edgeHub add to an output on its way up, which IoT Hub meters too: message id
# (32), correlation id, content type and encoding (21), output name, edgeHub's connection device and
# module ids. An aggregate leaves this much of its budget for them, so a full one stays in one block.
SYSTEM_PROPERTIES_ALLOWANCE = 256


def json_text(value: Any) -> str | None:
    """A message id, input name or reason as JSON can carry it: None stays None, text with lone
    surrogates (e.g. an HTTP header decoded with surrogateescape) gets U+FFFD in their place, and
    anything else becomes its str()."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def output_size(body: bytes, properties: dict[str, Any]) -> int:
    """edgekit.limits.message_size, also for properties no UTF-8 encoder takes (lone surrogates,
    keys that are not text): those count as the bytes an encoder passing surrogates would write."""
    try:
        return message_size(body, properties)
    except (UnicodeEncodeError, AttributeError):
        return len(body) + sum(
            len(str(k).encode("utf-8", "surrogatepass")) + len(str(v).encode("utf-8", "surrogatepass"))
            for k, v in properties.items()
        )


def _item(result: Any, context: dict[str, Any]) -> dict[str, Any]:
    if isinstance(result, dict):
        return {**result, **context} if context else result
    return {"prediction": result, **context}


class Encoder:
    def __init__(self, model_name: str, model_version: int, output: str, error_output: str, error_input_max_bytes: int) -> None:
        self._model = {"model": model_name, "modelVersion": model_version}
        # The start of an aggregate's body: the model fields, then the items.
        self.aggregate_head = orjson.dumps(self._model)[:-1] + b',"predictions":['
        self.output = output
        self.error_output = error_output
        self._error_input_max = error_input_max_bytes

    def content(self, shape: str, results: Sequence[Any], contexts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """What one input's predictions say, without the model fields (aggregates share these)."""
        if shape == READING:
            return _item(results[0], contexts[0])
        return {"predictions": [_item(r, c) for r, c in zip(results, contexts, strict=True)]}

    def prediction(self, msg: InMessage, shape: str, results: Sequence[Any], contexts: Sequence[dict[str, Any]]) -> OutMessage:
        result = results[0]
        if shape == READING and type(result) is dict:
            doc = {**result, **contexts[0], **self._model}  # the common case in one step: it is per message
        else:
            doc = {**self.content(shape, results, contexts), **self._model}
        body = orjson.dumps(doc)
        props = msg.custom_properties
        if output_size(body, props) > MESSAGE_LIMIT_BYTES:
            raise OutputTooLarge(
                f"the prediction message would be {len(body)} bytes, over IoT Hub's {MESSAGE_LIMIT_BYTES}-byte limit; "
                f"send fewer rows per message (this one had {len(results)})"
            )
        return OutMessage(self.output, body, msg.message_id, props, CONTENT_TYPE, CONTENT_ENCODING, 1, settles=_settles(msg))

    def answer(self, msg: InMessage, body: bytes) -> OutMessage:
        """The output for a script's own answer (message input): its JSON body as it is."""
        props = msg.custom_properties
        if output_size(body, props) > MESSAGE_LIMIT_BYTES:
            limit = MESSAGE_LIMIT_BYTES
            raise OutputTooLarge(f"run()'s answer would be a {len(body)}-byte message, over IoT Hub's {limit}-byte limit")
        return OutMessage(self.output, body, msg.message_id, props, CONTENT_TYPE, CONTENT_ENCODING, 1, settles=_settles(msg))

    def item(self, msg: InMessage, shape: str, results: Sequence[Any], contexts: Sequence[dict[str, Any]]) -> OutMessage:
        """One input's predictions as an aggregate item, with its message id (AggregatingSink packs it)."""
        content = self.content(shape, results, contexts)
        try:
            item = orjson.dumps({"messageId": msg.message_id, **content})
        except TypeError:  # an id JSON cannot carry (a lone surrogate): U+FFFD for it; a TypeError of the results stays
            item = orjson.dumps({"messageId": json_text(msg.message_id), **content})
        if len(self.aggregate_head) + len(item) + 2 > MESSAGE_LIMIT_BYTES:
            raise OutputTooLarge(
                f"this input's predictions take {len(item)} bytes, over IoT Hub's {MESSAGE_LIMIT_BYTES}-byte "
                f"limit; send fewer rows per message (this one had {len(results)})"
            )
        return OutMessage(self.output, item, msg.message_id, predictions=1, packable=True, settles=_settles(msg))

    def error(self, msg: InMessage, code: str, reason: str) -> OutMessage:
        """A message's error record; never raises, whatever the message holds (every input has an outcome)."""
        body = msg.body
        raw = bytes(body) if isinstance(body, bytes | bytearray | memoryview) else str(body).encode("utf-8", "surrogatepass")
        copy = raw[: self._error_input_max].decode("utf-8", "replace")
        record = {
            "code": str(code),
            "reason": reason,
            "inputMessageId": msg.message_id,
            "inputName": msg.input_name,
            "input": copy,
            "inputBytes": len(raw),
            "inputTruncated": len(raw) > self._error_input_max,
            **self._model,
        }
        try:
            encoded = orjson.dumps(record)
        except TypeError:  # text JSON cannot carry (lone surrogates, e.g. from an HTTP header), or an id that is not text
            for key in ("reason", "inputMessageId", "inputName"):
                record[key] = json_text(record[key])
            encoded = orjson.dumps(record)
        return OutMessage(self.error_output, encoded, msg.message_id, msg.custom_properties, settles=_settles(msg))


def _settles(msg: InMessage) -> tuple[int, ...]:
    return () if msg.journal_seq is None else (msg.journal_seq,)


class Aggregator:
    """Packs encoded per-input items into few messages of at most `max_bytes` (body + properties).

    Each item carries its input's message id; an item too large for the budget on its own travels
    alone. Billing is per 4 KB block, so filling blocks is what saves money.
    """

    def __init__(self, encoder: Encoder, max_bytes: int) -> None:
        self._output = encoder.output
        self._max = max_bytes - SYSTEM_PROPERTIES_ALLOWANCE
        self._head, self._tail = encoder.aggregate_head, b"]}"
        self._items: list[bytes] = []
        self._settles: list[int] = []
        self._size = len(self._head) + len(self._tail)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: bytes, settles: tuple[int, ...] = ()) -> list[OutMessage]:
        """Add one input's item; return the aggregates that became full."""
        full: list[OutMessage] = []
        if self._items and self._size + 1 + len(item) > self._max:
            full.append(self.flush())
        self._size += len(item) + (1 if self._items else 0)
        self._items.append(item)
        self._settles.extend(settles)
        if self._size >= self._max:
            full.append(self.flush())
        return full

    def flush(self) -> OutMessage:
        body = self._head + b",".join(self._items) + self._tail
        out = OutMessage(self._output, body, None, {}, predictions=len(self._items), settles=tuple(self._settles))
        self._items, self._settles = [], []
        self._size = len(self._head) + len(self._tail)
        return out

    def drain(self) -> Iterable[OutMessage]:
        if self._items:
            yield self.flush()
