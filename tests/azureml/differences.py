"""Every way this module's answers may differ from azmlinfsrv's and still pass, each with its reason.

What is compared (tests/integration/test_azureml_reference.py), per case:
- the status code, exactly;
- the body: parsed and compared as JSON values when both bodies are JSON, else byte for byte;
- the media type of Content-Type (see `media_type`).

Nothing else is normalised today: azmlinfsrv's bodies carry no per-request ids or timestamps (those are in
headers, which are recorded for information and not compared; see `IGNORED_HEADERS`). A case-specific
allowance goes in ALLOWED, keyed by (slug, case id), with its reason; none is granted yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

NOT_JSON: Any = object()  # parse_json's answer for a body that is not JSON


def parse_json(body: bytes) -> Any:
    """The body as a JSON value, or NOT_JSON. Python's json (what azmlinfsrv uses) also reads NaN/Infinity."""
    if not body:
        return NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return NOT_JSON


def media_type(content_type: str | None) -> str | None:
    """Content-Type without parameters, lower-cased. Reason: the charset parameter is the web framework's
    spelling (Flask adds '; charset=utf-8' to text/html, aiohttp to text/plain), not a behaviour of the
    scoring contract; the body itself is compared byte for byte when it is not JSON."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


# Headers left out of the comparison (and out of the golden files where they change per run). Reasons:
# - date, server, content-length, connection, keep-alive, transfer-encoding: transport, per server/framework;
# - x-ms-run-fn-exec-ms: a duration, different on every request;
# - x-request-id, x-ms-request-id: azmlinfsrv makes a new uuid4 per request when the client sends none;
# - access-control-*, vary: CORS is off in both (AML_CORS_ORIGINS unset), not part of the scoring contract.
# The remaining azmlinfsrv headers (x-ms-run-function-failed, x-ms-server-version, x-ms-client-request-id,
# and the echoed x-request-id) are recorded in golden/*.json for whoever implements them, not asserted.
IGNORED_HEADERS = frozenset(
    {"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding", "x-ms-run-fn-exec-ms", "vary"}
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def recordable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping in a golden file: without IGNORED_HEADERS, generated uuid4s replaced by '<uuid4>'."""
    kept = {}
    for name, value in sorted(headers.items()):
        if name in IGNORED_HEADERS or name.startswith("access-control-"):
            continue
        kept[name] = "<uuid4>" if _UUID.match(value) else value
    return kept


# Modules that 2018-2019 Azure ML images had and today's stack lacks, aliased in the reference server only
# (tests/azureml/reference.py LAUNCHER), so that a corpus script can be kept byte-for-byte and still run:
# name -> (module it aliases, reason). This module has to provide the same names to run those scripts.
LEGACY_ALIASES: dict[str, tuple[str, str]] = {
    "sklearn.externals.joblib": (
        "joblib",
        "scikit-learn shipped joblib as sklearn.externals.joblib until 0.23 (removed 2020); the IoT Edge tutorial's "
        "iot_score.py (Azure/ai-toolkit-iot-edge, 2019) imports it, as every published copy of that script does. "
        "With scikit-learn 1.4.2 the import fails and azmlinfsrv exits 3 before serving.",
    ),
}


@dataclass(frozen=True)
class Allowance:
    """A difference allowed for one case: `same(reference_answer, our_answer)` decides, `reason` says why."""

    reason: str
    same: Callable[[Any, Any], bool]


# (slug, case id) -> Allowance. Empty: no difference is allowed yet beyond the module-level rules above.
ALLOWED: dict[tuple[str, str], Allowance] = {}


def json_equal(a: Any, b: Any) -> bool:
    """JSON values equal as a client sees them: objects compared without key order (JSON objects are unordered),
    arrays in order, and numbers by type and value: True is not 1 and 1 is not 1.0 (a Python client gets bool,
    int or float from json.loads, and azmlinfsrv's json.dumps writes floats with a '.0'). NaN equals NaN
    (azmlinfsrv writes NaN for a float NaN; Python's json reads it back)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
