"""Every accepted message shape and every rejection, with the code and reason a person sees."""

from __future__ import annotations

import orjson
import pytest

from app.core.decoding import MANY, READING, FeatureReader, MessageError
from app.model.simulator import FEATURES
from tests.helpers import body, reading, row

R1 = reading(30.0, 2.0, 21.5, 24)
R2 = reading(80.0, 9.5, 20.5, 26)


@pytest.fixture
def reader() -> FeatureReader:
    return FeatureReader(FEATURES, passthrough=("timeCreated",), max_bytes=4096)


def test_one_reading_gives_one_row_and_its_passthrough(reader: FeatureReader) -> None:
    decoded = reader.decode(body(R1))
    assert decoded.shape == READING
    assert decoded.rows == [[30.0, 2.0, 21.5, 24.0]]
    assert decoded.contexts == [{"timeCreated": "2026-01-01T00:00:00.0000000Z"}]


def test_array_of_readings(reader: FeatureReader) -> None:
    decoded = reader.decode(body([R1, R2]))
    assert decoded.shape == MANY
    assert decoded.rows == [row(R1), row(R2)]
    assert len(decoded.contexts) == 2


def test_rows_object_as_azure_ml_sends_it(reader: FeatureReader) -> None:
    decoded = reader.decode(body({"data": [row(R1), row(R2)]}))
    assert decoded.shape == MANY
    assert decoded.rows == [row(R1), row(R2)]
    assert decoded.contexts == [{}, {}]


def test_rows_object_with_one_flat_row_and_with_readings(reader: FeatureReader) -> None:
    assert reader.decode(body({"data": row(R1)})).rows == [row(R1)]
    assert reader.decode(body({"data": [R1, R2]})).rows == [row(R1), row(R2)]


def test_array_of_rows(reader: FeatureReader) -> None:
    assert reader.decode(body([row(R1), row(R2)])).rows == [row(R1), row(R2)]


@pytest.mark.parametrize("inner", [R1, [R1, R2], {"data": [row(R1)]}])
def test_double_encoded_json_string_as_iotedgehubdev_sends_it(reader: FeatureReader, inner: object) -> None:
    plain = reader.decode(body(inner))
    double = reader.decode(orjson.dumps(orjson.dumps(inner).decode()))
    assert double.rows == plain.rows
    assert double.shape == plain.shape


def test_str_body_is_accepted_as_utf8(reader: FeatureReader) -> None:
    assert reader.decode(orjson.dumps(R1).decode()).rows == [row(R1)]


def test_feature_paths_can_be_overridden() -> None:
    reader = FeatureReader(["a", "b.c"])
    assert reader.decode(b'{"a": 1, "b": {"c": 2.5}}').rows == [[1.0, 2.5]]


def _reject(reader: FeatureReader, raw: bytes) -> MessageError:
    with pytest.raises(MessageError) as info:
        reader.decode(raw)
    return info.value


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"\xff\xfe{}", "not_utf8", "not valid UTF-8"),
        (b"hello", "not_json", "not JSON"),
        (b'{"machine": ', "not_json", "not JSON"),
        (b"", "not_json", "not JSON"),
        (b"42", "bad_shape", "body is int"),
        (b"null", "bad_shape", "body is null"),
        (b"[]", "empty", "empty"),
        (b'{"data": []}', "empty", "empty"),
        (b'{"data": 5}', "bad_shape", "'data' is int"),
        (b"[1, [1,2,3,4]]", "bad_shape", "item 0: is int"),
        (body(reading() | {"machine": {"temperature": 40.0}}), "missing_feature", "'machine.pressure' is missing"),
        (body(reading() | {"machine": 5}), "missing_feature", "'machine.temperature' is missing"),
        (
            body(reading() | {"ambient": {"temperature": "21", "humidity": 25}}),
            "not_numeric",
            "'ambient.temperature' is a string",
        ),
        (body(reading() | {"ambient": {"temperature": True, "humidity": 25}}), "not_numeric", "is boolean"),
        (body(reading() | {"ambient": {"temperature": None, "humidity": 25}}), "not_numeric", "is null"),
        (
            b'{"machine": {"temperature": NaN, "pressure": 1}, "ambient": {"temperature": 1, "humidity": 1}}',
            "not_finite",
            "is nan",
        ),
        (b'{"data": [[1, 2, 3, Infinity]]}', "not_finite", "value 3 ('ambient.humidity') is inf"),
        (b'{"data": [[1, 2, 3, 1e400]]}', "not_finite", "is inf"),
        (b'{"data": [[1, 2, 3, ' + b"9" * 400 + b"]]}", "not_finite", "too large for a float"),
        (b'{"data": [[1, 2, 3]]}', "wrong_width", "row has 3 values, the model takes 4"),
        (b'{"data": [[1, 2, 3, 4, 5]]}', "wrong_width", "has 5 values"),
        (b"[[1,2,3,4],[1,2,3]]", "wrong_width", "item 1: row has 3 values"),
    ],
)
def test_rejections_name_the_problem(reader: FeatureReader, raw: bytes, code: str, words: str) -> None:
    error = _reject(reader, raw)
    assert error.code == code
    assert words in error.reason


def test_oversized_body_is_rejected_before_parsing(reader: FeatureReader) -> None:
    error = _reject(reader, b" " * 4097)
    assert error.code == "oversized"
    assert "4097 bytes, over the 4096-byte limit" in error.reason


def test_second_reading_of_an_array_is_named(reader: FeatureReader) -> None:
    error = _reject(reader, body([R1, {"machine": {}}]))
    assert error.reason.startswith("item 1: feature 'machine.temperature' is missing")
