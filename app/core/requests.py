"""One scoring request outside the edge route (HTTP POST /score, the `score` direct method): it
enters the shared batcher like any message and its outcome comes back as a status and a body.

Statuses are HTTP's: 200 prediction, 400 error record (the reason is in it), 503 not ready or
queue full (retry), 504 no outcome in time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson

from app.core.errors import ErrorCode
from app.core.messages import CONTENT_TYPE as JSON
from app.core.messages import InMessage, RequestInfo
from app.core.pipeline import Pipeline
from app.core.processing import Outcome

REPLY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes  # JSON, unless an Azure ML script answered otherwise
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)  # an Azure ML script's answer's own (request ids, timing)

    @property
    def retry(self) -> bool:
        return self.status == 503


def _refusal(status: int, code: str, reason: str) -> Reply:
    return Reply(status, orjson.dumps({"code": code, "reason": reason}))


async def score_request(
    pipeline: Pipeline,
    body: bytes,
    request_id: str,
    ready: bool,
    status: str = "starting",
    content_type: str | None = None,
    request: RequestInfo | None = None,
) -> Reply:
    """Score one request body through the pipeline without waiting for room in the queue. With an Azure ML
    script, the answer is the one Azure ML's server gives (`request`: the HTTP method, query and headers)."""
    if not ready:
        return _refusal(503, ErrorCode.NOT_READY, f"the module is {status}")
    reply: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    msg = InMessage(body, request_id, reply=reply, content_type=content_type, request=request)
    if not pipeline.offer(msg):
        return _refusal(503, ErrorCode.OVERLOADED, "the model's queue is full; retry shortly")
    try:
        outcome = await asyncio.wait_for(reply, REPLY_TIMEOUT_S)
    except TimeoutError:
        return _refusal(504, ErrorCode.TIMEOUT, f"no outcome within {REPLY_TIMEOUT_S:.0f} s")
    answer = outcome.answer
    if answer is not None:
        return Reply(answer.status, answer.body, answer.content_type, answer.headers)
    if outcome.error is not None:
        return Reply(400, outcome.out.body)
    if _is_azureml_request(body):  # Azure ML's server answers with run()'s list
        return Reply(200, orjson.dumps(outcome.results))
    return Reply(200, outcome.out.body)


def _is_azureml_request(body: bytes) -> bool:
    """Was this an Azure ML-style `{"data": ...}` request? (Only on the reply path, off the hot path.)"""
    try:
        doc = orjson.loads(body)
        if isinstance(doc, str):
            doc = orjson.loads(doc)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and "data" in doc
