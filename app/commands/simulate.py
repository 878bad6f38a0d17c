"""`python -m app simulate`: the module's pipeline fed by the built-in sensor simulator, no Azure.

Prints each output as it comes (anomalies stand out) or, with --json, one JSON object per output
and a last JSON summary line.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any, TextIO

import orjson

from app.core.messages import InMessage, OutMessage
from app.core.pipeline import Pipeline
from app.main import open_pipeline
from app.model.simulator import SensorSimulator
from app.settings import Settings
from edgekit.signals import stop_on_signals

# Malformed bodies mixed in by --bad-every, one of each kind in turn.
BAD_BODIES = [
    b"not json at all",
    b'{"machine": {"temperature": 40.0}, "ambient": {"temperature": 21.0, "humidity": 25}}',
    b'{"machine": {"temperature": "hot", "pressure": 1.0}, "ambient": {"temperature": 21.0, "humidity": 25}}',
    b'{"machine": {"temperature": NaN, "pressure": 1.0}, "ambient": {"temperature": 21.0, "humidity": 25}}',
    b'{"data": [[1.0, 2.0]]}',
    b"\xff\xfe\x00 not utf-8",
]

RED, YELLOW, DIM, RESET = "\033[1;31m", "\033[33m", "\033[2m", "\033[0m"


class ConsoleSink:
    """Prints outputs; in JSON mode one object per line, else a readable line per output."""

    def __init__(self, out: TextIO, as_json: bool, settings: Settings) -> None:
        self._out = out
        self._json = as_json
        self._error_output = settings.error_output_name
        color = out.isatty()
        self._red, self._yellow, self._dim, self._reset = (RED, YELLOW, DIM, RESET) if color else ("", "", "", "")
        self.readings: dict[str, dict[str, Any]] = {}  # message id -> reading, to show beside its prediction
        self.anomalies = 0
        self.prediction_messages = 0

    async def send(self, out: OutMessage) -> None:
        body = orjson.loads(out.body)
        if out.output != self._error_output:
            self.prediction_messages += 1
            items = body.get("predictions", [body])
            self.anomalies += sum(1 for item in items if item.get("label") == "anomaly")
        if self._json:
            line = orjson.dumps(
                {"output": out.output, "correlationId": out.correlation_id, "properties": out.custom_properties, "body": body}
            ).decode()
        else:
            line = self._human(out, body)
        self._out.write(line + "\n")

    def _human(self, out: OutMessage, body: dict[str, Any]) -> str:
        if out.output == self._error_output:
            self.readings.pop(str(out.correlation_id), None)
            return f"{self._yellow}{out.correlation_id:>10}  error   {body['code']}: {body['reason']}{self._reset}"
        if "predictions" in body and out.correlation_id is None:
            labels = [item.get("label") for item in body["predictions"]]
            anomalies = labels.count("anomaly")
            return f"{self._dim}aggregate  {len(labels)} predictions, {len(out.body)} bytes, {anomalies} anomalies{self._reset}"
        reading = self.readings.pop(str(out.correlation_id), None)
        shown = ""
        if reading:
            m, a = reading["machine"], reading["ambient"]
            shown = (
                f"machine {m['temperature']:6.2f} °C {m['pressure']:5.2f} bar  "
                f"ambient {a['temperature']:5.2f} °C {a['humidity']} %  "
            )
        label, p = body.get("label"), body.get("probability")
        verdict = f"{label} ({p:.2f})" if p is not None else str(label)
        if label == "anomaly":
            return f"{self._red}{out.correlation_id:>10}  {shown}-> ANOMALY {verdict}{self._reset}"
        return f"{out.correlation_id:>10}  {shown}-> {verdict}"

    async def flush(self) -> None:
        self._out.flush()


async def simulate(
    settings: Settings,
    messages: int = 1000,
    rate: float = 0.0,
    as_json: bool = False,
    bad_every: int = 0,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Run the pipeline on simulated readings; returns (and prints) the summary."""
    sink = ConsoleSink(out, as_json, settings)
    pipeline = await open_pipeline(settings, sink)
    sensor = SensorSimulator()
    batch_id = uuid.uuid4().hex[:8]
    input_name = settings.input_names[0]
    started = time.perf_counter()
    sent = 0
    with stop_on_signals() as stop:
        while (messages == 0 or sent < messages) and not stop.is_set():
            if rate > 0:
                delay = started + sent / rate - time.perf_counter()
                if delay > 0:
                    try:
                        async with asyncio.timeout(delay):  # pace, but stop at once on Ctrl-C
                            await stop.wait()
                        break
                    except TimeoutError:
                        pass
            message_id = f"sim-{sent}"
            if bad_every and (sent + 1) % bad_every == 0:
                body = BAD_BODIES[(sent // bad_every) % len(BAD_BODIES)]
            else:
                reading = sensor.reading()
                sink.readings[message_id] = reading
                body = orjson.dumps(reading)
            await pipeline.submit(InMessage(body, message_id, input_name, {"sequenceNumber": str(sent), "batchId": batch_id}))
            sent += 1
        await pipeline.close()
    elapsed = time.perf_counter() - started
    summary = _summary(pipeline, sink, elapsed)
    if as_json:
        out.write(orjson.dumps(summary).decode() + "\n")
    else:
        out.write("\nsummary: " + ", ".join(f"{k}={v}" for k, v in summary.items()) + "\n")
    out.flush()
    return summary


def _summary(pipeline: Pipeline, sink: ConsoleSink, elapsed: float) -> dict[str, Any]:
    stats, batcher, processor = pipeline.stats, pipeline.batcher, pipeline.processor
    return {
        "messages": stats.messages,
        "predictions": stats.predictions,
        "errors": stats.errors,
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": round(stats.messages / elapsed, 1) if elapsed > 0 else None,
        "anomalies": sink.anomalies,
        "rows": stats.rows,
        "batches": processor.run_calls,
        "mean_batch_rows": round(processor.rows_scored / processor.run_calls, 2) if processor.run_calls else 0,
        "output_messages": stats.output_messages,
        "prediction_messages": sink.prediction_messages,
        "messages_per_prediction": round(sink.prediction_messages / stats.predictions, 4) if stats.predictions else None,
        "queue_full_waits": batcher.queue_full_waits,
        "latency_ms_p50": stats.latency_ms(0.5),
        "latency_ms_p99": stats.latency_ms(0.99),
        "errors_by_code": stats.errors_by_code,
    }
