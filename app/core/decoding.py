"""Decoding: a message body -> validated feature rows, or a MessageError saying what is wrong.

Two steps: a codec, chosen by the message's content type, turns the body into a document (what
JSON gives: objects, arrays, numbers); the FeatureReader turns the document into rows. A new body
format (CSV, ...) is one codec function and one entry in CODECS.

Accepted documents, in JSON: for content type application/json or text/json, for none at all (as
SimulatedTemperatureSensor sends) and for any type without a codec of its own:
- one reading:            {"machine": {"temperature": 21.5, ...}, ...}
- an array of readings:   [{...}, {...}]
- a rows object:          {"data": [[21.5, 1.1, 20.9, 25], ...]}   (rows or readings inside)
- an array of rows:       [[21.5, 1.1, 20.9, 25], ...]
- a JSON string holding any of these (iotedgehubdev double-encodes).
Features are read from a reading by dotted paths; every value must be a finite number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.errors import ErrorCode, MessageError

READING = "reading"  # one object in -> one flat prediction out
MANY = "many"  # an array or a rows object -> a list of predictions out


@dataclass(slots=True)
class Decoded:
    rows: list[list[float]]
    contexts: list[dict[str, Any]]  # per row: the reading's passthrough fields (empty for rows)
    shape: str  # READING or MANY


def _kind(value: Any) -> str:
    return (
        "null"
        if value is None
        else {bool: "boolean", str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)
    )


def _int_or_float(digits: str) -> int | float:
    """Integers for the stdlib parser: one past Python's int-to-text digit limit (4300 digits, a
    guard against quadratic conversions) is surely no finite float, so it becomes inf (not_finite
    if it is a feature) instead of a ValueError."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def _shown(value: Any) -> str:
    """A value for a reason: its kind and a short preview. An array or object is not turned into
    text whole (it may be large, or nested deeper than repr() can go)."""
    if isinstance(value, list | dict):
        return f"{_kind(value)} of {len(value)} {'items' if isinstance(value, list) else 'keys'}"
    return f"{_kind(value)} ({str(value)[:40]!r})"


def _diagnose(body: bytes | str) -> Any:
    """After orjson refused the body: parse it with the stdlib, or say precisely why it is not JSON.

    The stdlib parser accepts NaN, Infinity, numbers past 1e308 and escaped lone surrogates, so
    such a body gets "not finite" from the row check (or scores, if the value is not a feature)
    rather than a vague "not JSON". Every failure is a MessageError: nesting past the parser's
    recursion limit too (orjson stops at 1024 levels, the stdlib at about 1000)."""
    if isinstance(body, str):
        text = body
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(ErrorCode.NOT_UTF8, f"body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    try:
        return json.loads(text, parse_int=_int_or_float)
    except json.JSONDecodeError as exc:
        raise MessageError(ErrorCode.NOT_JSON, f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MessageError(
            ErrorCode.NOT_JSON, "body is not JSON: arrays or objects nested too deeply (over ~1000 levels)"
        ) from None


def json_codec(body: bytes) -> Any:
    """UTF-8 JSON; a JSON string holding JSON (iotedgehubdev double-encodes) is unwrapped once."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _diagnose(body)
    if isinstance(doc, str):  # double-encoded: a JSON string holding the JSON document
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError:
            doc = _diagnose(doc)  # as text: it may hold lone surrogates (escaped in the outer JSON)
    return doc


Codec = Callable[[bytes], Any]
# media type (lower case, no parameters) -> codec
CODECS: dict[str, Codec] = {"application/json": json_codec, "text/json": json_codec}


def codec_for(content_type: str | None) -> Codec:
    """The codec for a content type such as `application/json; charset=utf-8`; JSON when none fits."""
    if not content_type or not isinstance(content_type, str):
        return json_codec
    media = content_type.partition(";")[0].strip().lower()
    return CODECS.get(media, json_codec)


def _as_bytes(body: Any) -> bytes:
    """A body that is not bytes: text (UTF-8), a bytes-like object, or a MessageError."""
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 text can carry it
            raise MessageError(
                ErrorCode.NOT_UTF8, f"body is text with an unpaired surrogate (character {exc.start}); send UTF-8 JSON"
            ) from None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise MessageError(ErrorCode.BAD_SHAPE, f"body is {_kind(body)}, not bytes; send UTF-8 JSON")


def _compile_lookups(paths: list[tuple[str, tuple[str, ...]]]) -> Callable[[dict[str, Any]], list[Any]]:
    """One function doing every feature lookup inline, e.g. `[r['machine']['temperature'], ...]`.

    Generated (as dataclasses and namedtuple do) because it is the per-message hot path: about
    three times faster than walking the paths in a loop. Keys enter the source only through repr().
    """
    items = ", ".join("r" + "".join(f"[{part!r}]" for part in parts) for _, parts in paths)
    namespace: dict[str, Any] = {}
    exec(f"def lookups(r):\n    return [{items}]\n", namespace)
    return namespace["lookups"]


class FeatureReader:
    """Turns readings and rows into validated float rows for a fixed list of features."""

    def __init__(self, features: Sequence[str], passthrough: Sequence[str] = (), max_bytes: int = 256 * 1024) -> None:
        if not features:
            raise ValueError("at least one feature is needed")
        self.features = tuple(features)
        self._paths = [(path, tuple(path.split("."))) for path in self.features]
        self._passthrough = tuple(passthrough)
        self._max_bytes = max_bytes
        self._fast_row = _compile_lookups(self._paths)

    def decode(self, body: bytes | str, content_type: str | None = None) -> Decoded:
        if type(body) is not bytes:
            body = _as_bytes(body)
        if len(body) > self._max_bytes:
            raise MessageError(
                ErrorCode.OVERSIZED, f"body is {len(body)} bytes, over the {self._max_bytes}-byte limit (MAX_MESSAGE_BYTES)"
            )
        doc = json_codec(body) if not content_type else codec_for(content_type)(body)
        if type(doc) is dict:
            if "data" in doc:
                return self._many(doc["data"], "'data'")
            row, context = self._reading(doc, "")
            return Decoded([row], [context], READING)
        if isinstance(doc, list):
            return self._many(doc, "the array")
        raise MessageError(
            ErrorCode.BAD_SHAPE, f'body is {_kind(doc)}; expected a reading object, an array of readings or {{"data": [[...]]}}'
        )

    def _many(self, items: Any, what: str) -> Decoded:
        if not isinstance(items, list):
            raise MessageError(ErrorCode.BAD_SHAPE, f"{what} is {_kind(items)}; expected an array of rows or readings")
        if not items:
            raise MessageError(ErrorCode.EMPTY, f"{what} is empty; send at least one reading")
        if all(type(v) in (int, float) for v in items):
            items = [items]  # {"data": [1, 2, 3, 4]}: one flat row
        rows: list[list[float]] = []
        contexts: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            where = f"item {i}: "
            if isinstance(item, dict):
                row, context = self._reading(item, where)
            elif isinstance(item, list):
                row, context = self._row(item, where), {}
            else:
                raise MessageError(ErrorCode.BAD_SHAPE, f"{where}is {_kind(item)}; expected a reading object or a row array")
            rows.append(row)
            contexts.append(context)
        return Decoded(rows, contexts, MANY)

    def _reading(self, reading: dict[str, Any], where: str) -> tuple[list[float], dict[str, Any]]:
        context = {}
        for key in self._passthrough:  # a plain loop: cheaper than a comprehension for one or two keys
            if key in reading:
                context[key] = reading[key]
        # Fast path, per-message cost: plain lookups, then one check of types and finiteness.
        try:
            row = self._fast_row(reading)
        except (KeyError, TypeError, IndexError):
            pass
        else:
            for value in row:
                kind = type(value)
                if kind is not float and kind is not int:
                    break
            else:
                try:
                    if math.isfinite(sum(row)):
                        return row, context
                except OverflowError:
                    pass
        # Slow path: find the value at fault and say which one.
        row = []
        for path, parts in self._paths:
            found: Any = reading
            for part in parts:
                if not isinstance(found, dict) or part not in found:
                    raise MessageError(ErrorCode.MISSING_FEATURE, f"{where}feature '{path}' is missing")
                found = found[part]
            row.append(self._number(found, where, f"feature '{path}'"))
        return row, context

    def _row(self, row: list[Any], where: str) -> list[float]:
        if len(row) != len(self._paths):
            raise MessageError(
                ErrorCode.WRONG_WIDTH,
                f"{where}row has {len(row)} values, the model takes {len(self._paths)} ({', '.join(self.features)})",
            )
        return [self._number(v, where, f"value {j} ('{self.features[j]}')") for j, v in enumerate(row)]

    @staticmethod
    def _number(value: Any, where: str, what: str) -> float:
        kind = type(value)
        if kind is float:
            if math.isfinite(value):
                return value
            raise MessageError(ErrorCode.NOT_FINITE, f"{where}{what} is {value}; expected a finite number")
        if kind is int:
            try:
                return float(value)
            except OverflowError:
                raise MessageError(
                    ErrorCode.NOT_FINITE, f"{where}{what} is too large for a float; expected a finite number"
                ) from None
        raise MessageError(ErrorCode.NOT_NUMERIC, f"{where}{what} is {_shown(value)}; expected a number")
