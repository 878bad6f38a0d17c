"""Direct methods: `score`, `getStatus`, `reloadModel`, answered with HTTP-like statuses.

- score: payload in any input shape the module accepts -> 200 with the prediction body (or Azure
  ML's list for `{"data": ...}`), 400 with the error record, 503 when not ready or overloaded.
- getStatus: 200 with what reported properties show, counters fresh.
- reloadModel: payload null/{} (reload the current directory, e.g. replaced in place) or
  {"modelDir": "/path"} -> 200 with the model now in use; 400 when the payload or the model is
  refused (the previous model keeps serving).
Unknown methods get 404; a failure of ours gets 500. No request can take the module down.

The SDK calls the handler on its own handler loop: requests are handed to ours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import orjson
from azure.iot.device import MethodRequest, MethodResponse
from azure.iot.device.aio import IoTHubModuleClient

from app.core.control import ChangeRefused, Controller
from app.core.errors import ErrorCode
from app.core.messages import CONTENT_TYPE, RequestInfo
from app.core.requests import score_request
from edgekit.handoff import Handoff

log = logging.getLogger(__name__)

METHOD_NAMES = ("score", "getStatus", "reloadModel")


class MethodHandler:
    def __init__(self, client: IoTHubModuleClient, controller: Controller, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._controller = controller
        self._loop = loop
        self._handoff = Handoff(loop, self._spawn)  # the SDK calls its handler on its own thread
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await asyncio.to_thread(setattr, self._client, "on_method_request_received", self._handoff.handler)

    def _spawn(self, request: MethodRequest) -> None:
        task = self._loop.create_task(self._answer(request), name=f"method-{request.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: MethodRequest) -> None:
        try:
            status, payload = await self.call(request.name, request.payload)
        except Exception as exc:  # a bug of ours: answer, never crash
            log.exception("method %s failed", request.name)
            status, payload = 500, {"code": ErrorCode.INTERNAL_ERROR, "reason": repr(exc)}
        log.info("method %s -> %d", request.name, status)
        response = MethodResponse.create_from_method_request(request, status, payload)
        try:
            await self._client.send_method_response(response)
        except Exception as exc:
            log.warning("method %s: response not sent (%r)", request.name, exc)

    async def call(self, name: str, payload: Any) -> tuple[int, Any]:
        """Dispatch one method call; (status, JSON-able payload)."""
        if name == "score":
            return await self._score(payload)
        if name == "getStatus":
            return 200, self._controller.status()
        if name == "reloadModel":
            return await self._reload(payload)
        return 404, {"code": ErrorCode.UNKNOWN_METHOD, "reason": f"no method {name!r}; methods: {', '.join(METHOD_NAMES)}"}

    async def _score(self, payload: Any) -> tuple[int, Any]:
        # The SDK has parsed the payload's JSON; a string payload is taken as a (double-encoded) body.
        try:
            body = payload.encode("utf-8") if isinstance(payload, str) else orjson.dumps(payload)
        except (TypeError, UnicodeEncodeError, ValueError):  # an int past 64 bits, a lone surrogate, deep nesting
            try:
                body = json.dumps(payload).encode("utf-8")  # the decoder then says what is wrong with it
            except (TypeError, ValueError, RecursionError) as exc:
                return 400, {"code": ErrorCode.BAD_PAYLOAD, "reason": f"the payload cannot be read as a body: {exc}"[:300]}
        health = self._controller.health
        # As a JSON POST to /score: an Azure ML script answers as it would to Azure ML's server.
        request = RequestInfo(headers=(("Content-Type", CONTENT_TYPE),))
        request_id = f"method-{uuid.uuid4().hex}"
        reply = await score_request(self._controller.pipeline, body, request_id, health.ready, health.status, request=request)
        try:
            return reply.status, orjson.loads(reply.body)
        except orjson.JSONDecodeError:  # a script's own text answer (or json.dumps' NaN): as a string
            return reply.status, reply.body.decode("utf-8", "replace")

    async def _reload(self, payload: Any) -> tuple[int, Any]:
        if payload in (None, "", {}):
            model_dir = None
        elif isinstance(payload, dict) and set(payload) == {"modelDir"} and isinstance(payload["modelDir"], str):
            model_dir = payload["modelDir"]
        else:
            return 400, {"code": ErrorCode.BAD_PAYLOAD, "reason": 'expected null, {} or {"modelDir": "/path/to/model"}'}
        try:
            scorer = await self._controller.reload_model(model_dir)
        except ChangeRefused as exc:
            return 400, {"code": exc.code, "reason": str(exc)}
        return 200, self._controller.status()["model"] | {"features": list(scorer.manifest.features)}

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
