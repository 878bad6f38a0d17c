"""The hand-written hostile corpus: inputs that have broken JSON parsers, decoders and servers in the
wild, each named for what it tries. Generated data finds the unexpected; this keeps the known.

BODIES         message bodies (edgeHub input, HTTP POST /score, the `score` method)
DESIRED_DOCS   twin desired documents
METHOD_CALLS   direct method names and payloads (as the SDK hands them over: parsed JSON)
RAW_REQUESTS   HTTP requests as bytes on the wire, for what no client library would send
"""

from __future__ import annotations

import json
from typing import Any

import orjson

LIMIT = 256 * 1024  # MAX_MESSAGE_BYTES, IoT Hub's message limit

READING = {
    "machine": {"temperature": 45.1, "pressure": 3.4},
    "ambient": {"temperature": 21.2, "humidity": 25},
    "timeCreated": "2026-01-01T00:00:00.0000000Z",
}
ROW = [45.1, 3.4, 21.2, 25]


def _j(doc: Any) -> bytes:
    return orjson.dumps(doc)


def _reading_with(text: str) -> bytes:
    """A reading whose machine temperature is the JSON text given (a number no serializer writes)."""
    return (
        b'{"machine": {"temperature": ' + text.encode() + b', "pressure": 3.4}, "ambient": {"temperature": 21.2, "humidity": 25}}'
    )


def _deep(depth: int, inner: bytes = b"1", open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + inner + close * depth


_BIG = b"1" + b"0" * 5000  # 10**5000: past Python's 4300-digit int-from-text limit

BODIES: list[tuple[str, bytes]] = [
    # -- empty and scalar documents
    ("empty", b""),
    ("whitespace only", b" \t\r\n"),
    ("null", b"null"),
    ("true", b"true"),
    ("zero", b"0"),
    ("empty string", b'""'),
    ("string holding an empty string", b'"\\"\\""'),
    ("empty object", b"{}"),
    ("empty array", b"[]"),
    ("array of an empty array", b"[[]]"),
    ("data is an object", b'{"data": {}}'),
    ("data is empty", b'{"data": []}'),
    ("data is null", b'{"data": null}'),
    ("data is a string of rows", b'{"data": "[[45.1, 3.4, 21.2, 25]]"}'),
    ("data and a reading at once", _j({"data": [ROW], **READING})),
    # -- sizes
    ("100k rows: over the limit", _j({"data": [[1, 2, 3, 4]] * 100_000})),
    ("20k rows: under the limit, output too large", _j({"data": [[1, 2, 3, 4]] * 20_000})),
    ("128k-wide flat row", b"[" + b",".join([b"0"] * 120_000) + b"]"),
    ("50k empty readings", _j([{}] * 50_000)),
    ("250 KB string in an unused field", _j({**READING, "note": "x" * 250_000})),
    ("250 KB string as a feature", _j({**READING, "machine": {"temperature": "9" * 250_000, "pressure": 3.4}})),
    ("250 KB passthrough field", _j({**READING, "timeCreated": "t" * 250_000})),
    ("exactly the limit", b" " * (LIMIT - len(_j(READING))) + _j(READING)),
    ("one byte over the limit", b" " * (LIMIT + 1 - len(_j(READING))) + _j(READING)),
    ("10k keys", _j({f"k{i}": i for i in range(10_000)})),
    ("200k-digit number", b"1" * 200_000),
    ("200k-digit feature", _reading_with("1" * 200_000)),
    # -- nesting
    ("100k nested arrays", _deep(100_000)),
    ("100k nested arrays, unclosed", b"[" * 100_000),
    ("5k nested objects", _deep(5000, b"1", b'{"a":', b"}")),
    ("1023 nested arrays", _deep(1023)),
    ("1024 nested arrays", _deep(1024)),
    ("1025 nested arrays", _deep(1025)),
    ("1000 nested arrays holding NaN", _deep(1000, b"NaN")),
    ("990 nested arrays holding a row", _deep(990, b"[45.1, 3.4, 21.2, 25]")),
    ("deep value of a feature", _reading_with((b"[" * 1000 + b"1" + b"]" * 1000).decode())),
    ("deep passthrough field", _j(READING)[:-1] + b', "tags": ' + _deep(1000) + b"}"),
    ("deep object inside a double-encoded string", json.dumps(_deep(2000).decode()).encode()),
    # -- numbers
    ("10**5000 as a feature", _reading_with(_BIG.decode())),
    ("-10**5000 in a row", b"[[-" + _BIG + b", 1, 2, 3]]"),
    ("10**5000 in an unused field", _j(READING)[:-1] + b', "big": ' + _BIG + b"}"),
    ("10**5000 top level", _BIG),
    ("10**5000 double-encoded", b'"' + _BIG + b'"'),
    ("10**400 as a feature", _reading_with("1" + "0" * 400)),
    ("2**64 as a feature", _reading_with("18446744073709551616")),
    ("1e999 as a feature", _reading_with("1e999")),
    ("-1e999 in a row", b"[[-1e999, 1, 2, 3]]"),
    ("1e-400 underflow", _reading_with("1e-400")),
    ("huge exponent", _reading_with("1e99999999999999999999")),
    ("3000-digit mantissa", _reading_with("1." + "0" * 3000 + "1")),
    ("float32 overflow (run() refuses)", _reading_with("1e300")),
    ("NaN", _reading_with("NaN")),
    ("Infinity", _reading_with("Infinity")),
    ("-Infinity", _reading_with("-Infinity")),
    ("-NaN", _reading_with("-NaN")),
    ("nan lower case", _reading_with("nan")),
    ("'1e999' as a string", _reading_with('"1e999"')),
    ("number as a string", _reading_with('"45.1"')),
    ("leading zero", _reading_with("045")),
    ("hex", _reading_with("0x2D")),
    ("plus sign", _reading_with("+45")),
    ("bare fraction", _reading_with(".5")),
    ("trailing dot", _reading_with("45.")),
    ("negative zero", _reading_with("-0")),
    ("true as a feature", _reading_with("true")),
    ("array as a feature", _reading_with("[45.1]")),
    ("object as a feature", _reading_with('{"value": 45.1}')),
    # -- Unicode
    ("lone high surrogate, escaped", b'"\\ud800"'),
    ("lone low surrogate, escaped", b'"\\udc00"'),
    ("reversed surrogate pair", b'"\\udc00\\ud800"'),
    ("lone surrogate in a passthrough field", _j(READING)[:-1] + b', "timeCreated": "\\ud800"}'),
    ("lone surrogate in a key", b'{"\\ud800": 1}'),
    ("lone surrogate in a feature key", b'{"machine": {"temperature\\ud800": 1}}'),
    ("lone surrogate inside a double-encoded body", json.dumps('{"timeCreated": "\ud800", "data": [[1,2,3,4]]}').encode()),
    ("CESU-8 surrogate bytes", b'{"timeCreated": "\xed\xa0\x80"}'),
    ("overlong slash", b'{"a": "\xc0\xaf"}'),
    ("overlong NUL", b'"\xc0\x80"'),
    ("5-byte sequence", b'"\xf8\x88\x80\x80\x80"'),
    ("past U+10FFFF", b'"\xf4\x90\x80\x80"'),
    ("truncated multibyte at the end", _j(READING) + b"\xe2\x82"),
    ("latin-1 body", '{"note": "café"}'.encode("latin-1")),
    ("invalid continuation byte", b"[\x80]"),
    ("BOM + reading", b"\xef\xbb\xbf" + _j(READING)),
    ("BOM only", b"\xef\xbb\xbf"),
    ("two BOMs + reading", b"\xef\xbb\xbf\xef\xbb\xbf" + _j(READING)),
    ("UTF-16 LE with BOM", json.dumps(READING).encode("utf-16")),
    ("UTF-16 BE without BOM", json.dumps(READING).encode("utf-16-be")),
    ("UTF-32", json.dumps(READING).encode("utf-32")),
    ("NBSP around JSON", "\u00a0".encode() + _j(READING) + "\u00a0".encode()),
    ("U+2028 inside a string", _j({**READING, "note": "a\u2028b"})),
    ("right-to-left override in a key", _j({"\u202emachine": READING["machine"], "ambient": READING["ambient"]})),
    # -- NUL and control characters
    ("NUL", b"\x00"),
    ("NUL after JSON", _j(READING) + b"\x00"),
    ("NUL inside a string", b'{"note": "a\x00b"}'),
    ("escaped NUL in a key", b'{"machine\\u0000": {"temperature": 1}}'),
    ("raw control character in a string", b'{"note": "\x01"}'),
    ("form feed as whitespace", b"\x0c" + _j(READING)),
    # -- syntax the stdlib or JavaScript tolerates
    ("trailing comma", b"[[45.1, 3.4, 21.2, 25,]]"),
    ("comments", b"/* a */ [[45.1, 3.4, 21.2, 25]] // b"),
    ("single quotes", b"{'data': [[1, 2, 3, 4]]}"),
    ("unquoted keys", b"{data: [[1, 2, 3, 4]]}"),
    ("JSON lines", _j(READING) + b"\n" + _j(READING)),
    ("trailing garbage", _j(READING) + b"garbage"),
    ("a lone quote", b'"'),
    ("a lone minus", b"-"),
    (
        "duplicate keys",
        b'{"machine": {"temperature": "hot"}, "machine": {"temperature": 45.1, "pressure": 3.4},'
        b' "ambient": {"temperature": 21.2, "humidity": 25}}',
    ),
    ("__proto__ key", b'{"__proto__": {"machine": {"temperature": 1}}, "constructor": 1}'),
    # -- shapes
    ("dotted key instead of a path", _j({"machine.temperature": 45.1, "machine.pressure": 3.4})),
    ("machine is an array", _j({**READING, "machine": [45.1, 3.4]})),
    ("machine is a string", _j({**READING, "machine": "45.1"})),
    ("good and bad readings", _j([READING, {**READING, "machine": {"temperature": None, "pressure": 1}}, READING])),
    ("rows of mixed widths", _j([ROW, ROW[:3], [*ROW, 1]])),
    ("booleans in a row", b"[[true, false, true, false]]"),
    ("nulls in a row", b"[[null, null, null, null]]"),
    ("flat row in data", _j({"data": ROW})),
    ("flat row of three", _j({"data": ROW[:3]})),
    ("rows and readings mixed", _j([ROW, READING])),
    ("triple-encoded", json.dumps(json.dumps(READING)).encode()),
    ("double-encoded with NaN inside", json.dumps('{"data": [[NaN, 1, 2, 3]]}').encode()),
    ("double-encoded not JSON", b'"{not json"'),
    ("double-encoded 10**5000", json.dumps('{"data": [[' + _BIG.decode() + ", 1, 2, 3]]}").encode()),
    ("valid reading", _j(READING)),
    ("valid rows", _j({"data": [ROW, ROW]})),
]

_LIVE_KEYS = [
    "maxBatchSize",
    "maxWaitMs",
    "aggregate",
    "aggregateMaxBytes",
    "aggregateMaxDelayMs",
    "threshold",
    "features",
    "passthroughFields",
    "inputNames",
    "outputName",
    "errorOutputName",
    "errorInputMaxBytes",
    "logLevel",
    "reportIntervalS",
    "reportJitterS",
]


def _nested_object(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    node = doc
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return doc


DESIRED_DOCS: list[tuple[str, dict[str, Any]]] = [
    ("empty", {}),
    ("metadata only", {"$version": 3, "$metadata": {"$lastUpdated": "2026-01-01T00:00:00Z"}}),
    ("5000 unknown keys", {f"unknown{i}": i for i in range(5000)}),
    ("5000 unknown keys of 200 characters", {f"{i:05d}" + "k" * 195: i for i in range(5000)}),
    ("250 KB string value", {"outputName": "x" * 250_000}),
    ("250 KB unknown key", {"k" * 250_000: 1}),
    ("250 KB value of an unknown key", {"foo": "x" * 250_000}),
    ("every live key null", dict.fromkeys(_LIVE_KEYS)),
    ("every live key an object", {k: {"nested": {"deeper": [1, 2]}} for k in _LIVE_KEYS}),
    ("every live key a string", {k: "1" for k in _LIVE_KEYS}),
    ("every live key NaN", {k: float("nan") for k in _LIVE_KEYS}),
    ("every live key Infinity", {k: float("inf") for k in _LIVE_KEYS}),
    ("every live key 10**300", {k: 10**300 for k in _LIVE_KEYS}),
    ("every live key 1e300", {k: 1e300 for k in _LIVE_KEYS}),
    ("every live key -1", {k: -1 for k in _LIVE_KEYS}),
    ("every live key true", {k: True for k in _LIVE_KEYS}),
    ("maxWaitMs 1e300", {"maxWaitMs": 1e300}),
    ("maxBatchSize 2**63", {"maxBatchSize": 2**63}),
    ("maxBatchSize 10**4000", {"maxBatchSize": 10**4000}),
    ("threshold 0", {"threshold": 0}),
    ("threshold just below 1", {"threshold": 0.9999999999999999}),
    ("threshold 5e-324", {"threshold": 5e-324}),
    ("aggregateMaxBytes 511", {"aggregateMaxBytes": 511}),
    ("features: 100k paths", {"features": ["a.b"] * 100_000}),
    ("features: one 10k path", {"features": ["a" * 10_000] * 4}),
    ("features: empty parts", {"features": [".", "..", "a.", ".a"]}),
    ("features: a 100k comma string", {"features": "a," * 50_000}),
    ("features: four that do not fit the model", {"features": ["a", "b", "c"]}),
    ("features: quotes and backslashes", {"features": ["a'b", 'c"d', "e\\f", "g\x00h"]}),
    ("features: surrogates", {"features": ["\ud800", "\udc00.x", "a", "b"]}),
    ("features: code injection attempt", {"features": ["__import__('os').system('false')", "b", "c", "d"]}),
    ("inputNames: empty list", {"inputNames": []}),
    ("inputNames: 10k names", {"inputNames": [f"in{i}" for i in range(10_000)]}),
    ("outputName equals errorOutputName", {"outputName": "same", "errorOutputName": "same"}),
    ("outputName empty", {"outputName": ""}),
    ("logLevel lower case", {"logLevel": "debug"}),
    ("logLevel a number", {"logLevel": 10}),
    ("restart-only keys", {"queueSize": 1, "httpPort": 1, "maxMessageBytes": 10, "httpToken": "secret"}),
    ("modelDir: nowhere", {"modelDir": "/nonexistent/model"}),
    ("modelDir: root", {"modelDir": "/"}),
    ("modelDir: NUL", {"modelDir": "/tmp/\x00model"}),
    ("modelDir: surrogate", {"modelDir": "/tmp/\ud800"}),
    ("modelDir: 5000 characters", {"modelDir": "/" + "m" * 4999}),
    ("modelDir: a device", {"modelDir": "/dev/zero"}),
    ("scoreScript: nowhere", {"scoreScript": "/nonexistent/score.py"}),
    ("scoreScript: not Python", {"scoreScript": "/etc/hostname"}),
    ("scoreScript: a device", {"scoreScript": "/dev/zero"}),
    ("$ keys only", {"$": 1, "$$": {"a": 1}, "$version": "seven"}),
    ("surrogate key", {"\ud800": 1}),
    ("surrogate value", {"outputName": "\udc00"}),
    ("empty key", {"": 1}),
    ("nested 50 deep", {"maxBatchSize": _nested_object(50)}),
    ("nested 500 deep", {"unknown": _nested_object(500)}),
    ("valid change", {"maxBatchSize": 8, "threshold": 0.3}),
    ("valid and invalid together", {"maxBatchSize": 8, "threshold": 7}),
]

METHOD_CALLS: list[tuple[str, str, Any]] = [
    ("getStatus, no payload", "getStatus", None),
    ("getStatus with a payload", "getStatus", {"x": [1, 2, 3]}),
    ("unknown method", "shutdown", None),
    ("empty method name", "", None),
    ("method name of 10k characters", "m" * 10_000, None),
    ("method name with NUL", "score\x00", None),
    ("method name with a surrogate", "score\ud800", None),
    ("method name case", "SCORE", None),
    ("score: a reading", "score", READING),
    ("score: rows", "score", {"data": [ROW, ROW]}),
    ("score: a double-encoded reading", "score", json.dumps(READING)),
    ("score: null", "score", None),
    ("score: true", "score", True),
    ("score: a number", "score", 1),
    ("score: NaN", "score", float("nan")),
    ("score: Infinity in a row", "score", {"data": [[float("inf"), 1, 2, 3]]}),
    ("score: 2**64 in a row", "score", {"data": [[2**64, 1, 2, 3]]}),
    ("score: 10**300 in a row", "score", {"data": [[10**300, 1, 2, 3]]}),
    ("score: 10**4000 in a row", "score", {"data": [[10**4000, 1, 2, 3]]}),
    ("score: a lone surrogate string", "score", "\ud800"),
    ("score: a lone surrogate in a reading", "score", {**READING, "timeCreated": "\ud800"}),
    ("score: 300 nested lists", "score", json.loads("[" * 300 + "]" * 300)),
    ("score: 900 nested lists", "score", json.loads("[" * 900 + "]" * 900)),
    ("score: 250 KB string", "score", "x" * 250_000),
    ("score: 300 KB of rows", "score", {"data": [ROW] * 20_000}),
    ("score: not JSON in a string", "score", "{not json"),
    ("reloadModel: a list", "reloadModel", ["/models/v2"]),
    ("reloadModel: modelDir not a string", "reloadModel", {"modelDir": 7}),
    ("reloadModel: extra key", "reloadModel", {"modelDir": "/models/v2", "force": True}),
    ("reloadModel: nowhere", "reloadModel", {"modelDir": "/nonexistent/model"}),
    ("reloadModel: NUL", "reloadModel", {"modelDir": "/tmp/\x00"}),
    ("reloadModel: surrogate", "reloadModel", {"modelDir": "/tmp/\udc80"}),
    ("reloadModel: 100k characters", "reloadModel", {"modelDir": "/" + "m" * 100_000}),
    ("reloadModel: root", "reloadModel", {"modelDir": "/"}),
    ("reloadModel: a device", "reloadModel", {"modelDir": "/dev/null"}),
    ("reloadModel: NaN", "reloadModel", float("nan")),
    ("reloadModel: false", "reloadModel", False),
    ("reloadModel: 0", "reloadModel", 0),
    ("reloadModel: the current directory again", "reloadModel", None),
]

_GOOD_BODY = _j(READING)


def _post(body: bytes, *headers: bytes, length: bool = True) -> bytes:
    head = b"POST /score HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers)
    if length:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return head + b"Connection: close\r\n\r\n" + body


RAW_REQUESTS: list[tuple[str, bytes]] = [
    ("a good request", _post(_GOOD_BODY)),
    ("request id of invalid UTF-8, good body", _post(_GOOD_BODY, b"X-Request-Id: \xff\xfe\xed\xa0\x80")),
    ("request id of invalid UTF-8, bad body", _post(b"nope", b"X-Request-Id: \xff\xfe\xed\xa0\x80")),
    ("ms request id of invalid UTF-8, bad body", _post(b"[[]]", b"x-ms-request-id: \xc0\xaf")),
    ("request id of 8 KB", _post(b"nope", b"X-Request-Id: " + b"r" * 8000)),
    ("content type of invalid UTF-8", _post(_GOOD_BODY, b"Content-Type: application/\xff")),
    ("content type with a NUL", _post(_GOOD_BODY, b"Content-Type: application/json\x00")),
    ("content type with odd parameters", _post(_GOOD_BODY, b'Content-Type: application/json; charset="\\"; a=b=c;;;')),
    ("gzip that is not gzip", _post(b"\x1f\x8b not gzip at all", b"Content-Encoding: gzip")),
    ("deflate that is not deflate", _post(b"plain", b"Content-Encoding: deflate")),
    ("brotli that is not brotli", _post(b"plain", b"Content-Encoding: br")),
    ("unknown content encoding", _post(_GOOD_BODY, b"Content-Encoding: x-unknown")),
    (
        "chunked, good",
        b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + hex(len(_GOOD_BODY))[2:].encode()
        + b"\r\n"
        + _GOOD_BODY
        + b"\r\n0\r\n\r\n",
    ),
    ("chunked, bad chunk size", b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    (
        "chunked, negative chunk size",
        b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "chunked and a length",
        b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    ("two lengths", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
    ("negative length", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc"),
    ("length past the limit", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc"),
    ("length longer than the body", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"),
    ("body over the limit", _post(b" " * (LIMIT + 10))),
    ("no request line", b"\r\n\r\n"),
    ("garbage", b"\x00\xff\xfe garbage \r\n\r\n"),
    ("HTTP/0.9", b"GET /\r\n"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("TLS client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64),
    ("unknown version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("lower-case method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("unknown method", b"BREW /score HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    ("CONNECT", b"CONNECT localhost:5001 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("absolute URI", b"GET http://evil.example/live HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("dot segments", b"GET /../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("encoded dot segments", b"GET /%2e%2e/%2e%2e/score HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("NUL in the path", b"GET /live\x00 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("invalid UTF-8 in the path", b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("bad percent-encoding", b"GET /%zz%%%/score?%ff=%fe HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("100 KB path", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("100 KB header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n"),
    ("1000 headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(1000)) + b"\r\n"),
    ("header without a colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"),
    ("header with a space before the colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
    ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
    ("bare LF line ends", b"GET /live HTTP/1.1\nHost: x\n\n"),
    ("bare CR in a header", b"GET / HTTP/1.1\r\nHost: x\rX-Evil: 1\r\n\r\n"),
    ("GET /score with a body", b"GET /score HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnope"),
    ("expect 100-continue", _post(_GOOD_BODY, b"Expect: 100-continue")),
    ("unknown expectation", _post(_GOOD_BODY, b"Expect: 200-ok")),
    ("upgrade to websocket", b"GET /score HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    (
        "pipelined requests",
        b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n" + _post(b"nope") + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    ),
]
