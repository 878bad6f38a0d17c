"""The requests sent to both servers, per corpus slug: the sample's own example input (the file the
repository ships, byte for byte, where it has one), other good inputs, bad ones, and the routes every
deployment has (GET /, the swagger documents, wrong methods, unknown paths).

A case is plain data (method, path, headers, body bytes): reference.py sends it with http.client as is,
so the same bytes reach both servers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.azureml import corpus
from tests.azureml.models import SAMPLES

JSON_CT = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def as_dict(self) -> dict[str, Any]:
        """For the golden files (the request an answer was recorded for)."""
        try:
            body: dict[str, str] = {"text": self.body.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"hex": self.body.hex()}
        return {"id": self.id, "method": self.method, "path": self.path, "headers": [list(h) for h in self.headers], **body}


def _post(case_id: str, payload: Any, headers: tuple[tuple[str, str], ...] = JSON_CT) -> Case:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Case(case_id, "POST", "/score", headers, body)


def _get(case_id: str, path: str, headers: tuple[tuple[str, str], ...] = ()) -> Case:
    return Case(case_id, "GET", path, headers, b"")


def _shipped(slug: str, name: str) -> bytes:
    """An example input file the sample's repository ships, unchanged (tests/azureml/sources/<slug>.md). Read at
    import, when the corpus may not be installed: then empty, and every test of that slug is skipped anyway."""
    path = corpus.root() / slug / name
    return path.read_bytes() if path.is_file() else b""


# The deploy-to-cloud notebook's row: ten scaled diabetes features.
SCALED_ROW = [
    0.03807591, 0.05068012, 0.06169621, 0.02187235, -0.0442235,
    -0.03482076, -0.04340085, -0.00259226, 0.01990842, -0.01764613,
]  # fmt: skip
IRIS_ROWS = [[7.2, 3.2, 6.0, 1.8], [4.2, 3.5, 1.0, 3.0], [5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5]]
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def _common(example: bytes) -> list[Case]:
    """What every deployment is asked, whatever its script: routes, methods, transport-level bad bodies."""
    return [
        _get("get_root", "/"),
        _get("get_swagger", "/swagger.json"),
        _get("get_swagger_v2", "/swagger.json?version=2"),
        _get("get_swagger_v3", "/swagger.json?version=3"),
        _get("get_swagger_v3_1", "/swagger.json?version=3.1"),
        _get("get_swagger_v4", "/swagger.json?version=4"),
        _get("get_swagger2_json", "/swagger2.json"),
        _get("get_swagger3_json", "/swagger3.json"),
        _get("get_unknown_path", "/nope"),
        _get("get_score", "/score"),
        Case("options_score", "OPTIONS", "/score", (), b""),
        Case("put_score", "PUT", "/score", JSON_CT, example),
        Case("delete_score", "DELETE", "/score", (), b""),
        Case("post_score_trailing_slash", "POST", "/score/", JSON_CT, example),
        _post("empty_body", b""),
        _post("invalid_json", b'{"data": [[1, 2'),
        _post("not_utf8", b'{"data": "\xff\xfe"}'),
        _post("json_array", b"[1, 2, 3]"),
        _post("json_null", b"null"),
        _post("json_string", b'"hello"'),
        _post("json_number", b"42"),
        _post("empty_object", b"{}"),
        _post("text_plain", example, (("Content-Type", "text/plain"),)),
        _post("no_content_type", example, ()),
        _post("json_charset", example, (("Content-Type", "application/json; charset=utf-8"),)),
        _post("form_urlencoded", example, (("Content-Type", "application/x-www-form-urlencoded"),)),
        _post("long_request_id", example, (*JSON_CT, ("x-request-id", "r" * 101))),
        _post("client_request_id", example, (*JSON_CT, ("x-ms-client-request-id", "client-1"), ("x-request-id", "req-1"))),
    ]


def _data_rows(example: bytes) -> list[Case]:
    """Scripts taking {"data": [[10 numbers], ...]} (the diabetes features), decorated or not."""
    row, width = SCALED_ROW, len(SCALED_ROW)
    return [
        _post("example", example),
        _post("one_row", {"data": [row]}),
        _post("several_rows", {"data": [row, [0.0] * width, [float(i) for i in range(width)]]}),
        _post("integers", {"data": [[int(i) for i in range(width)]]}),
        _post("extra_key", {"data": [row], "method": "predict"}),
        _post("flat_row", {"data": row}),
        _post("narrow_row", {"data": [row[:3]]}),
        _post("wide_row", {"data": [[*row, 1.0]]}),
        _post("ragged_rows", {"data": [row, row[:5]]}),
        _post("no_rows", {"data": []}),
        _post("strings", {"data": [[str(v) for v in row]]}),
        _post("words", {"data": [["a"] * width]}),
        _post("nulls", {"data": [[None] * width]}),
        _post("nan_literal", b'{"data": [[' + b", ".join([b"NaN"] * width) + b"]]}"),
        _post("data_object", {"data": {"a": 1}}),
        _post("data_string", {"data": "1,2,3"}),
        _post("missing_data", {"input_data": [row]}),
        Case("get_score_query", "GET", "/score?data=" + json.dumps([row]).replace(" ", ""), (), b""),
    ]


def _iris_numpy(slug: str) -> list[Case]:
    example = _shipped(slug, "numpy.json")
    return [
        _post("example", example),
        _post("one_row", {"iris": IRIS_ROWS[:1]}),
        _post("several_rows", {"iris": IRIS_ROWS}),
        _post("integers", {"iris": [[7, 3, 6, 2]]}),
        _post("flat_row", {"iris": IRIS_ROWS[0]}),
        _post("narrow_row", {"iris": [[7.2, 3.2, 6.0]]}),
        _post("no_rows", {"iris": []}),
        _post("strings", {"iris": [["7.2", "3.2", "6.0", "1.8"]]}),
        _post("words", {"iris": [["a", "b", "c", "d"]]}),
        _post("nulls", {"iris": [[None, None, None, None]]}),
        _post("missing_param", {"data": IRIS_ROWS[:1]}),
        _post("param_object", {"iris": {"a": 1}}),
        Case("get_score_query", "GET", "/score?iris=" + json.dumps(IRIS_ROWS[:1]).replace(" ", ""), (), b""),
        *_common(example),
    ]


def _iris_pandas(slug: str) -> list[Case]:
    example = _shipped(slug, "pandas.json")
    records = [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in IRIS_ROWS]
    return [
        _post("example", example),
        _post("records_one", {"iris": records[:1]}),
        _post("records_several", {"iris": records}),
        _post("records_reordered", {"iris": [{k: records[0][k] for k in reversed(IRIS_COLUMNS)}]}),
        _post("records_missing_column", {"iris": [{k: records[0][k] for k in IRIS_COLUMNS[:3]}]}),
        _post("records_extra_column", {"iris": [{**records[0], "colour": "blue"}]}),
        _post("records_strings", {"iris": [{k: str(v) for k, v in records[0].items()}]}),
        _post("records_words", {"iris": [dict.fromkeys(IRIS_COLUMNS, "a")]}),
        _post("no_rows", {"iris": []}),
        _post("rows_as_lists", {"iris": IRIS_ROWS[:1]}),
        _post("missing_param", {"data": records[:1]}),
        Case("get_score_query", "GET", "/score?iris=" + json.dumps(records[:1]).replace(" ", ""), (), b""),
        *_common(example),
    ]


def _iris_standard(slug: str) -> list[Case]:
    example = _shipped(slug, "standard.json")
    columns = {name: [row[i] for row in IRIS_ROWS] for i, name in enumerate(IRIS_COLUMNS)}
    return [
        _post("example", example),
        _post("one_each", {name: values[:1] for name, values in columns.items()}),
        _post("several_each", columns),
        _post("scalars", {name: values[0] for name, values in columns.items()}),
        _post("integers", {name: [int(v) for v in values] for name, values in columns.items()}),
        _post("unequal_lengths", {**columns, "petal_width": columns["petal_width"][:1]}),
        _post("missing_param", {name: columns[name] for name in IRIS_COLUMNS[:3]}),
        _post("extra_param", {**columns, "colour": ["blue"]}),
        _post("strings", {name: [str(v) for v in values] for name, values in columns.items()}),
        _post("nulls", dict.fromkeys(IRIS_COLUMNS, None)),
        Case("get_score_query", "GET", "/score?" + "&".join(f"{n}={v[0]}" for n, v in columns.items()), (), b""),
        *_common(example),
    ]


def _temperature(slug: str) -> list[Case]:
    """The SimulatedTemperatureSensor message body, as edgeHub hands it to the module; the notebook's two samples."""

    def message(mt: float, mp: float, at: float, ah: int, **extra: Any) -> dict[str, Any]:
        return {"machine": {"temperature": mt, "pressure": mp}, "ambient": {"temperature": at, "humidity": ah},
                "timeCreated": "2017-10-27T18:14:02.4911177Z", **extra}  # fmt: skip

    normal = message(31.16469009, 2.158002669, 21.17794693, 25)
    anomaly = message(33.66995566, 2.44341267, 21.39450979, 26)
    example = json.dumps(normal).encode()
    return [
        _post("example", example),  # the notebook's test_sample ("Normal"), json.dumps'd as it does
        _post("anomaly", anomaly),  # the notebook's commented "Anomaly" sample
        _post("hot", message(105.5457931, 10.63179922, 20.62029994, 26)),
        _post("integers", message(21, 1, 20, 24)),
        _post("extra_fields", {**normal, "sensor": "tempSensor", "machine": {**normal["machine"], "rpm": 3}}),
        _post("missing_machine", {k: v for k, v in normal.items() if k != "machine"}),
        _post("missing_pressure", {**normal, "machine": {"temperature": 31.1}}),
        _post("string_temperature", message("31.1", 2.1, 21.1, 25)),  # type: ignore[arg-type]
        _post("word_temperature", message("hot", 2.1, 21.1, 25)),  # type: ignore[arg-type]
        _post("null_temperature", message(None, 2.1, 21.1, 25)),  # type: ignore[arg-type]
        _post("batch_array", [normal, anomaly]),
        _post("data_rows", {"data": [[31.1, 2.1, 21.1, 25]]}),
        Case("get_score_query", "GET", "/score?machine=" + json.dumps(normal["machine"]).replace(" ", ""), (), b""),
        *_common(example),
    ]


def cases_for(slug: str) -> list[Case]:
    """Every request for `slug`, ids unique within it."""
    if slug in ("examples_model1", "examples_openapi_custom", "examples_openapi_decorated"):
        example = _shipped(slug, "sample-request.json")
        found = [*_data_rows(example), *_common(example)]
    elif slug in ("mlops_diabetes", "mlops_json_result"):
        # MLOpsPython's own test row (score.py's __main__ and ml_service/util/smoke_test_scoring_service.py).
        example = b'{"data":[[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}'
        found = [*_data_rows(example), *_common(example)]
        if slug == "mlops_diabetes":  # run(data, request_headers): the headers it reads
            found.append(_post("traceparent", example, (*JSON_CT, ("traceparent", "00-" + "a" * 32 + "-" + "b" * 16 + "-00"))))
    elif slug == "notebooks_deploy_cloud":
        # The notebook's input_payload: one scaled diabetes row and a 'method' key the script ignores.
        example = json.dumps({"data": [SCALED_ROW], "method": "predict"}).encode()
        found = [*_data_rows(example), *_common(example)]
    elif slug == "examples_numpy":
        found = _iris_numpy(slug)
    elif slug == "examples_pandas":
        found = _iris_pandas(slug)
    elif slug == "examples_standard":
        found = _iris_standard(slug)
    elif slug == "iot_edge_anomaly":
        found = _temperature(slug)
    else:
        raise KeyError(f"no cases for {slug!r}")
    ids = [c.id for c in found]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"{slug}: duplicate case ids {sorted(duplicates)}"
    return found


ALL_CASES: dict[str, list[Case]] = {slug: cases_for(slug) for slug in SAMPLES}
