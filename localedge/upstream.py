"""`$upstream`: what would reach IoT Hub, recorded and metered instead of sent.

Metering: IoT Hub bills device-to-cloud messages in 4 KB blocks of body plus properties; here a message's
size is its body plus every property name and value it would carry upstream (UTF-8 bytes), and it takes
ceil(size / 4096) blocks (at least 1). Outcomes are counted for every module by what it sends, whatever its
image: a message on our inference module's error output, or a body shaped as an error record (`code` and
`reason`), is an error; an aggregate `{"predictions": [...]}` is its length in predictions; a body shaped as a
prediction (`label`, `value`, `prediction` or `probability`, or `model` with `modelVersion`) is one; anything
else is "other". Latency: from the router seeing a message (by `$.mid`) to the upstream arrival of the message
whose `$.cid` equals it.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from edgekit.limits import message_size, metered_blocks

KEEP = 100_000  # recent upstream messages and pending message ids kept (an interactive run may go on for hours)


@dataclass(frozen=True)
class UpstreamMessage:
    module: str
    output: str
    properties: Mapping[str, str]
    body: bytes
    arrived: float  # perf_counter()
    size: int
    blocks: int
    predictions: int
    errors: int
    latency_ms: float | None

    @property
    def correlation_id(self) -> str | None:
        return self.properties.get("$.cid")

    @property
    def message_id(self) -> str | None:
        return self.properties.get("$.mid")

    def json_body(self) -> Any:
        """The body as JSON if it is JSON, else as text."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return self.body.decode("utf-8", "replace")

    def to_json(self, since: float) -> dict[str, Any]:
        return {
            "module": self.module,
            "output": self.output,
            "correlation_id": self.correlation_id,
            "message_id": self.message_id,
            "properties": dict(self.properties),
            "body": self.json_body(),
            "t_s": round(self.arrived - since, 6),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "blocks_4kb": self.blocks,
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


PREDICTION_KEYS = ("label", "value", "prediction", "probability")


def count_outcomes(output: str, body: bytes, error_output: str | None) -> tuple[int, int]:
    """(predictions, errors) in one upstream message, by its output (`error_output`: the module's known error
    output, None if it has none) and its body's shape; (0, 0): neither ("other")."""
    if error_output is not None and output == error_output:
        return 0, 1
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0, 0
    if isinstance(doc, str):  # a JSON string holding JSON (iotedgehubdev-style double encoding)
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError:
            return 0, 0
    if not isinstance(doc, dict):
        return 0, 0
    if isinstance(doc.get("code"), str) and isinstance(doc.get("reason"), str):
        return 0, 1
    if isinstance(doc.get("predictions"), list):
        return len(doc["predictions"]), 0
    if any(key in doc for key in PREDICTION_KEYS) or ("model" in doc and "modelVersion" in doc):
        return 1, 0
    return 0, 0


class UpstreamRecorder:
    """Records upstream messages; thread-safe (every source's router thread calls it)."""

    def __init__(
        self, error_output: Callable[[str], str | None], on_message: Callable[[UpstreamMessage], None] | None = None
    ) -> None:
        self._error_output = error_output  # module -> its error output now (None: not our inference module)
        self._on_message = on_message
        self._cond = threading.Condition()
        self._pending: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.messages: collections.deque[UpstreamMessage] = collections.deque(maxlen=KEEP)
        self.latencies: collections.deque[float] = collections.deque(maxlen=KEEP)
        self.count = self.predictions = self.errors = self.other = self.blocks = 0
        self.by_output: collections.Counter[str] = collections.Counter()
        self.started = time.perf_counter()
        self.last_arrival: float | None = None

    def seen(self, message_id: str, at: float) -> None:
        """The router saw a message it forwards to a module: latency starts here."""
        with self._cond:
            self._pending[message_id] = at
            if len(self._pending) > KEEP:
                self._pending.popitem(last=False)

    def record(self, module: str, output: str, properties: Mapping[str, str], body: bytes, at: float) -> UpstreamMessage:
        predictions, errors = count_outcomes(output, body, self._error_output(module))
        size = message_size(body, properties)
        with self._cond:
            started = self._pending.pop(properties.get("$.cid", ""), None)
            latency = None if started is None else (at - started) * 1000
            msg = UpstreamMessage(module, output, properties, body, at, size, metered_blocks(size), predictions, errors, latency)
            self.messages.append(msg)
            self.count += 1
            self.predictions += predictions
            self.errors += errors
            self.other += not (predictions or errors)
            self.blocks += msg.blocks
            self.by_output[f"{module}/{output}"] += 1
            self.last_arrival = at
            if latency is not None:
                self.latencies.append(latency)
            if self._on_message is not None:
                self._on_message(msg)  # under the lock: printed lines stay in arrival order
            self._cond.notify_all()
        return msg

    def wait_for(self, count: int, timeout: float | None) -> bool:
        """True once `count` messages have arrived; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)

    def wait_until(self, predicate: Callable[[UpstreamRecorder], bool], timeout: float) -> bool:
        """Wait until `predicate(self)` holds (evaluated under the lock after each arrival)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def correlation_ids(self) -> list[str | None]:
        with self._cond:
            return [m.correlation_id for m in self.messages]

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Totals; `elapsed_s` runs from `since` (default: creation) to the last arrival."""
        since = self.started if since is None else since
        with self._cond:
            ordered = sorted(self.latencies)
            elapsed = (self.last_arrival - since) if self.last_arrival is not None else 0.0
            return {
                "upstream_messages": self.count,
                "predictions": self.predictions,
                "errors": self.errors,
                "other": self.other,
                "elapsed_s": round(max(0.0, elapsed), 3),
                "blocks_4kb": self.blocks,
                "latency_ms": {
                    "count": len(ordered),
                    "p50": round(percentile(ordered, 50), 3) if ordered else None,
                    "p95": round(percentile(ordered, 95), 3) if ordered else None,
                    "max": round(ordered[-1], 3) if ordered else None,
                },
                "messages_by_output": dict(sorted(self.by_output.items())),
            }
