"""Target 1, bodies: FeatureReader.decode on anything returns a Decoded of finite rows or raises a
MessageError with a body code and a reason fit for an error record; never any other exception."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.decoding import MANY, READING, Decoded, FeatureReader, codec_for, json_codec
from app.core.errors import ErrorCode, MessageError
from app.model.simulator import FEATURES
from tests.fuzz.conftest import (
    CONTENT_TYPES,
    Hostile,
    content_types,
    encode_text,
    fuzz,
    hostile_bodies,
    ran,
    seeds,
    timeout_for,
    to_json,
    valid_documents,
)
from tests.fuzz.corpus import BODIES

BODY_CODES = {
    ErrorCode.NOT_UTF8,
    ErrorCode.NOT_JSON,
    ErrorCode.BAD_SHAPE,
    ErrorCode.EMPTY,
    ErrorCode.MISSING_FEATURE,
    ErrorCode.WRONG_WIDTH,
    ErrorCode.NOT_FINITE,
    ErrorCode.NOT_NUMERIC,
    ErrorCode.OVERSIZED,
}
REASON_MAX_CHARS = 2000
PASSTHROUGH = ("timeCreated",)
READER = FeatureReader(FEATURES, PASSTHROUGH, max_bytes=256 * 1024)


def check_decoded(decoded: Decoded) -> None:
    assert decoded.shape in (READING, MANY)
    assert decoded.rows and len(decoded.rows) == len(decoded.contexts)
    if decoded.shape == READING:
        assert len(decoded.rows) == 1
    for row, context in zip(decoded.rows, decoded.contexts, strict=True):
        assert isinstance(row, list) and len(row) == len(FEATURES), row
        for value in row:
            assert type(value) in (int, float), f"{type(value).__name__} in a row"
            assert math.isfinite(float(value)), row
        assert isinstance(context, dict) and set(context) <= set(PASSTHROUGH)


def outcome(body: Any, content_type: str | None = None, reader: FeatureReader = READER) -> str:
    """'ok' or the error code; any other exception escapes (a bug) and fails the test."""
    try:
        decoded = reader.decode(body, content_type)
    except MessageError as exc:
        assert exc.code in BODY_CODES, f"not a body code: {exc.code!r}"
        assert isinstance(exc.reason, str) and exc.reason, "an error needs a reason"
        assert len(exc.reason) <= REASON_MAX_CHARS, f"reason of {len(exc.reason)} characters"
        exc.reason.encode("utf-8")  # it goes into a JSON error record
        return str(exc.code)
    check_decoded(decoded)
    return "ok"


def same_as_without_type(body: bytes, content_type: str | None, without: str | None = None) -> str:
    """The outcome; a content type that falls back on the JSON codec must not change it (`without`:
    the outcome with no content type, when known)."""
    result = outcome(body, content_type)
    if codec_for(content_type) is json_codec:
        expected = without if without is not None else outcome(body, None)
        assert result == expected, f"content type {content_type!r} changed the outcome"
    return result


@pytest.mark.timeout(timeout_for(2, 0.002))
def test_arbitrary_bytes_get_a_decoded_or_a_message_error() -> None:
    @fuzz(2)
    @given(st.binary(max_size=2048), content_types)
    def case(body: bytes, content_type: str | None) -> None:
        ran("decode: arbitrary bytes")
        same_as_without_type(body, content_type)

    case()


@pytest.mark.timeout(timeout_for(1, 0.01))
def test_hostile_json_gets_a_decoded_or_a_message_error() -> None:
    @fuzz(1)
    @given(hostile_bodies(), content_types)
    def case(body: bytes, content_type: str | None) -> None:
        ran("decode: hostile JSON")
        same_as_without_type(body, content_type)

    case()


@pytest.mark.timeout(timeout_for(4, 0.005))
def test_seeded_hostile_bodies_get_a_decoded_or_a_message_error() -> None:
    """The same kinds of body from a seed, in plain Python: many more a second (four per example)."""

    @fuzz(4)
    @given(seeds)
    def case(seed: int) -> None:
        h = Hostile(seed)
        ran("decode: seeded hostile", 4)
        for _ in range(4):
            same_as_without_type(h.body(), h.content_type())

    case()


@pytest.mark.timeout(timeout_for(0.5, 0.005))
def test_valid_bodies_decode_and_double_encoding_changes_nothing() -> None:
    @fuzz(0.5)
    @given(valid_documents(), st.booleans())
    def case(doc: Any, ascii_only: bool) -> None:
        ran("decode: valid documents")
        text = to_json(doc, ascii_only)
        plain = READER.decode(encode_text(text))
        check_decoded(plain)
        double = READER.decode(json.dumps(text).encode())
        assert (double.rows, double.contexts, double.shape) == (plain.rows, plain.contexts, plain.shape)
        assert READER.decode(text).rows == plain.rows  # a str body is UTF-8

    case()


# What some corpus bodies must give (the rest only need an outcome).
EXPECTED = {
    "empty": ErrorCode.NOT_JSON,
    "array of an empty array": ErrorCode.WRONG_WIDTH,
    "data is an object": ErrorCode.BAD_SHAPE,
    "data is empty": ErrorCode.EMPTY,
    "100k rows: over the limit": ErrorCode.OVERSIZED,
    "one byte over the limit": ErrorCode.OVERSIZED,
    "exactly the limit": "ok",
    "250 KB string in an unused field": "ok",
    "100k nested arrays": ErrorCode.NOT_JSON,
    "5k nested objects": ErrorCode.NOT_JSON,
    "1025 nested arrays": ErrorCode.NOT_JSON,
    "10**5000 as a feature": ErrorCode.NOT_FINITE,
    "-10**5000 in a row": ErrorCode.NOT_FINITE,
    "10**5000 in an unused field": "ok",
    "10**5000 top level": ErrorCode.BAD_SHAPE,
    "10**5000 double-encoded": ErrorCode.BAD_SHAPE,
    "double-encoded 10**5000": ErrorCode.NOT_FINITE,
    "1e999 as a feature": ErrorCode.NOT_FINITE,
    "1e-400 underflow": "ok",
    "NaN": ErrorCode.NOT_FINITE,
    "Infinity": ErrorCode.NOT_FINITE,
    "'1e999' as a string": ErrorCode.NOT_NUMERIC,
    "lone high surrogate, escaped": ErrorCode.NOT_JSON,  # the string holds no JSON
    "lone surrogate in a passthrough field": "ok",
    "lone surrogate inside a double-encoded body": "ok",
    "CESU-8 surrogate bytes": ErrorCode.NOT_UTF8,
    "overlong slash": ErrorCode.NOT_UTF8,
    "BOM + reading": ErrorCode.NOT_JSON,
    "NUL": ErrorCode.NOT_JSON,
    "deep value of a feature": ErrorCode.NOT_NUMERIC,
    "deep object inside a double-encoded string": ErrorCode.NOT_JSON,
    "valid reading": "ok",
    "valid rows": "ok",
    "flat row in data": "ok",
    "rows and readings mixed": "ok",
}


def test_expected_names_are_in_the_corpus() -> None:
    assert set(EXPECTED) <= {name for name, _ in BODIES}
    assert len(BODIES) >= 50


@pytest.mark.parametrize(("name", "body"), BODIES, ids=[name for name, _ in BODIES])
def test_corpus_body_gets_a_decoded_or_a_message_error(name: str, body: bytes) -> None:
    without = outcome(body)
    if name in EXPECTED:
        assert without == EXPECTED[name]
    # Every content type; a large body (slow to decode 20 times) with two.
    for content_type in CONTENT_TYPES if len(body) < 16 * 1024 else ["text/csv", CONTENT_TYPES[-1]]:
        ran("decode: corpus")
        same_as_without_type(body, content_type, without)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("\ud800", ErrorCode.NOT_UTF8),  # a str body no UTF-8 can carry
        ('{"timeCreated": "\udc00"}', ErrorCode.NOT_UTF8),
        (bytearray(b"[[1, 2, 3, 4]]"), "ok"),
        (memoryview(b"[[1, 2, 3, 4]]"), "ok"),
        (None, ErrorCode.BAD_SHAPE),
        (1234, ErrorCode.BAD_SHAPE),
    ],
    ids=["str lone surrogate", "str surrogate in a field", "bytearray", "memoryview", "None", "int"],
)
def test_bodies_that_are_not_bytes(body: Any, code: str) -> None:
    ran("decode: body types")
    assert outcome(body) == code


@pytest.mark.timeout(timeout_for(0.25, 0.01))
def test_odd_feature_paths_and_passthrough_fields() -> None:
    """Feature paths come from the twin: any text must give a reader that decodes or refuses cleanly."""
    paths = st.lists(st.text(min_size=1, max_size=12).filter(lambda p: all(p.split("."))), min_size=1, max_size=5)

    @fuzz(0.25)
    @given(paths, st.lists(st.text(max_size=8), max_size=3), hostile_bodies())
    def case(features: list[str], passthrough: list[str], body: bytes) -> None:
        ran("decode: odd feature paths")
        reader = FeatureReader(features, passthrough)
        try:
            decoded = reader.decode(body)
        except MessageError as exc:
            assert exc.code in BODY_CODES and exc.reason
            return
        assert all(len(row) == len(features) for row in decoded.rows)
        assert all(math.isfinite(float(v)) for row in decoded.rows for v in row)

    case()
