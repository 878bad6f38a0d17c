"""Every error code the module emits, in one place: in error records (`code`), in the counters
(`edge_inference_errors_total{code}`), in HTTP and method answers and in `lastError`.

Codes are stable: routes (`WHERE $body.code = 'not_json'`), dashboards and alerts match on them.
The reason that goes with a code is for people and may change.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # a message that cannot be scored (error records)
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    BAD_SHAPE = "bad_shape"
    EMPTY = "empty"
    MISSING_FEATURE = "missing_feature"
    WRONG_WIDTH = "wrong_width"
    NOT_FINITE = "not_finite"
    NOT_NUMERIC = "not_numeric"
    OVERSIZED = "oversized"
    UNKNOWN_INPUT = "unknown_input"
    SCORING_FAILED = "scoring_failed"
    SCRIPT_REFUSED = "script_refused"  # an Azure ML script (or its input schema) refused the body: a 4xx answer
    OUTPUT_ERROR = "output_error"
    INTERNAL_ERROR = "internal_error"
    # requests (HTTP /score, the `score` method) that get no outcome
    NOT_READY = "not_ready"
    OVERLOADED = "overloaded"  # also the error record of an input shed by the intake
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"  # the requester left before the model took it
    POISON_INPUT = "poison_input"  # an earlier run died with it in the model REPLAY_LIMIT times: set aside
    # the HTTP layer's own refusals (app/http)
    UNAUTHORIZED = "unauthorized"  # 401: no or a wrong bearer token
    BAD_REQUEST = "bad_request"  # 400: not HTTP, a broken header or chunked body
    BAD_ENCODING = "bad_encoding"  # 400: the body is not in its Content-Encoding
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # 415: a Content-Encoding other than gzip/deflate/identity
    REQUEST_TIMEOUT = "request_timeout"  # 408: the request did not arrive within HTTP_READ_TIMEOUT_S
    HEADERS_TOO_LARGE = "headers_too_large"  # 431
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    EXPECTATION_FAILED = "expectation_failed"  # 417: an Expect other than 100-continue
    # control: twin documents, models, methods
    INVALID_DESIRED = "invalid_desired"
    MODEL_REJECTED = "model_rejected"
    UNKNOWN_METHOD = "unknown_method"
    BAD_PAYLOAD = "bad_payload"


class MessageError(ValueError):
    """The message cannot be scored. `code` is stable for routing; `reason` is for people."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
