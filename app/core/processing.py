"""What the model thread does with one batch of messages: decode each, score all their rows in as
few run() calls as MAX_BATCH_SIZE allows, and encode one outcome per message.

Plain synchronous code in tight loops: it runs in the executor, so the event loop only queues
messages and sends outputs, and a large body's JSON parsing never stalls receiving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.decoding import Decoded, FeatureReader
from app.core.encoding import Encoder, OutputTooLarge
from app.core.errors import ErrorCode, MessageError
from app.core.messages import CONTENT_TYPE, InMessage, OutMessage
from app.core.stats import ModelStats
from app.model.azureml.entry import Answer
from app.model.scorer import Scorer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """One message's result: the prediction message (with aggregation, an item to pack) or its error record."""

    msg: InMessage
    out: OutMessage
    error: str | None = None  # the error code, for an error record
    rows: int = 0
    results: list[Any] | None = None  # run()'s results for this message's rows (for HTTP replies)
    answer: Answer | None = None  # an Azure ML script's own answer (message input): HTTP sends it as it is


Pending = tuple[int, InMessage, Decoded]
REASON_MAX_CHARS = 500
_NO_OUTPUT = OutMessage("", b"")  # an HTTP reply's outcome: the answer is sent, not an output message


def _short(exc: BaseException) -> str:
    """An exception for an error record's reason: its type and the start of its message."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= REASON_MAX_CHARS else text[:REASON_MAX_CHARS] + "…"  # (index in the batch, message, its rows)


class BatchProcessor:
    def __init__(
        self,
        reader: FeatureReader | None,
        scorer: Scorer,
        encoder: Encoder,
        max_rows: int,
        input_names: Sequence[str],
        aggregate: bool = False,
        stats: ModelStats | None = None,
    ) -> None:
        self._reader = reader
        self._scorer = scorer
        self._encoder = encoder
        self._max_rows = max_rows
        self._inputs = frozenset(input_names)
        self._aggregate = aggregate
        self.stats = stats or ModelStats()  # written here, on the model thread; read by the loop

    @property
    def run_calls(self) -> int:
        return self.stats.run_calls

    @property
    def rows_scored(self) -> int:
        return self.stats.rows_scored

    def __call__(self, messages: list[InMessage]) -> list[Outcome]:
        outcomes: list[Any] = [None] * len(messages)
        pending: list[Pending] = []
        decode = self._reader.decode if self._reader is not None else None
        inputs = self._inputs
        scorer = self._scorer
        answering: list[tuple[int, InMessage]] = []  # each to run() as a request body (message input)
        for i, msg in enumerate(messages):
            if msg.reply is not None and msg.reply.done():  # its requester has gone (or timed out): do not score it
                outcomes[i] = self.error(msg, ErrorCode.ABANDONED, "the requester left before the model took it")
                continue
            if msg.input_name and msg.input_name not in inputs:
                scored = ", ".join(sorted(inputs))
                reason = f"input '{msg.input_name}' is not scored; add it to INPUT_NAMES ({scored}) or fix the route"
                outcomes[i] = self.error(msg, ErrorCode.UNKNOWN_INPUT, reason)
                continue
            if decode is None or (scorer.azureml and (msg.reply is not None or scorer.message_input)):
                answering.append((i, msg))  # no rows to read (message input): the body goes to run() as it is
                continue
            try:
                pending.append((i, msg, decode(msg.body, msg.content_type)))
            except MessageError as exc:
                outcomes[i] = self.error(msg, exc.code, exc.reason)
            except Exception as exc:  # a decoder bug must cost this message only, never its batch-mates
                log.exception("decoding message %s failed unexpectedly", msg.message_id)
                outcomes[i] = self.error(msg, ErrorCode.INTERNAL_ERROR, f"the module could not decode this body: {_short(exc)}")
        for group in self._groups(pending):
            self._score(group, outcomes)
        for i, msg in answering:
            outcomes[i] = self._answer(msg)
        return outcomes

    def _answer(self, msg: InMessage) -> Outcome:
        """Message input: the body to run() as Azure ML's server would hand it over; its answer is the outcome."""
        request = msg.request
        if request is not None:
            answer = self._scorer.answer(msg.body, request.headers, request.method, request.query)
        else:  # an edge message: its properties are the request's headers; no content type means JSON
            headers = {**msg.custom_properties, "Content-Type": msg.content_type or CONTENT_TYPE}
            answer = self._scorer.answer(msg.body, headers)
        stats = self.stats
        stats.run_calls += 1
        code = None if answer.status < 400 else ErrorCode.SCORING_FAILED if answer.status >= 500 else ErrorCode.SCRIPT_REFUSED
        if msg.reply is not None:
            return Outcome(msg, _NO_OUTPUT, error=code, rows=1, answer=answer)
        if code is not None:
            return self.error(msg, code, self._scorer.failure(answer)[:REASON_MAX_CHARS])
        if not answer.content_type.startswith(CONTENT_TYPE):
            reason = f"run() answered with {answer.content_type or 'no content type'}, not JSON: {answer.body[:100]!r}"
            return self.error(msg, ErrorCode.OUTPUT_ERROR, reason)
        try:
            # Azure ML's server sends json.dumps' text, which may hold NaN, Infinity or a lone surrogate escape:
            # no strict reader (IoT Hub's routing, most consumers) parses that, so it cannot travel as an output.
            orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            reason = f"run()'s answer is not strict JSON ({exc}; NaN, Infinity or a lone surrogate?): {answer.body[:100]!r}"
            return self.error(msg, ErrorCode.OUTPUT_ERROR, reason)
        stats.rows_scored += 1
        try:
            return Outcome(msg, self._encoder.answer(msg, answer.body), rows=1, answer=answer)
        except OutputTooLarge as exc:
            return self.error(msg, ErrorCode.OUTPUT_ERROR, str(exc))

    def _groups(self, pending: list[Pending]) -> Iterator[list[Pending]]:
        """Consecutive messages with at most max_rows rows together; a message is never split."""
        group: list[Pending] = []
        rows = 0
        for entry in pending:
            n = len(entry[2].rows)
            if group and rows + n > self._max_rows:
                yield group
                group, rows = [], 0
            group.append(entry)
            rows += n
        if group:
            yield group

    def _score(self, group: list[Pending], outcomes: list[Any]) -> None:
        rows = [row for _, _, decoded in group for row in decoded.rows]
        stats = self.stats
        started = time.perf_counter()
        try:
            stats.run_calls += 1
            results = self._scorer.score(rows)
        except Exception as exc:
            if len(group) > 1:
                # Only the message that breaks run() should get an error: retry them one by one.
                log.warning("run() failed on a batch of %d messages (%s); retrying one by one", len(group), exc)
                for entry in group:
                    self._score([entry], outcomes)
                return
            i, msg, _ = group[0]
            outcomes[i] = self.error(
                msg, ErrorCode.SCORING_FAILED, f"the model's run() failed on this message: {str(exc)[:REASON_MAX_CHARS]}"
            )
            return
        stats.scoring_seconds.observe(time.perf_counter() - started)
        stats.batch_rows.observe(len(rows))
        stats.rows_scored += len(rows)
        encoder = self._encoder
        start = 0
        for i, msg, decoded in group:
            n = len(decoded.rows)
            results_of_msg = results[start : start + n]
            start += n
            shape, contexts = decoded.shape, decoded.contexts
            try:
                if self._aggregate and msg.reply is None:
                    item = encoder.item(msg, shape, results_of_msg, contexts)
                    outcomes[i] = Outcome(msg, item, rows=n, results=results_of_msg)
                else:  # a reply (HTTP) always gets its own message
                    out = encoder.prediction(msg, shape, results_of_msg, contexts)
                    outcomes[i] = Outcome(msg, out, rows=n, results=results_of_msg)
            except (OutputTooLarge, TypeError) as exc:  # TypeError: run() returned something not JSON-able
                outcomes[i] = self.error(msg, ErrorCode.OUTPUT_ERROR, str(exc))
            except Exception as exc:  # whatever run() returned, only this message pays for it
                log.exception("encoding the prediction of message %s failed", msg.message_id)
                outcomes[i] = self.error(msg, ErrorCode.OUTPUT_ERROR, f"the prediction could not be encoded: {_short(exc)}")

    def error(self, msg: InMessage, code: str, reason: str) -> Outcome:
        log.debug("message %s rejected: %s", msg.message_id, reason)
        return Outcome(msg, self._encoder.error(msg, code, reason), error=code)
