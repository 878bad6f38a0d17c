"""Azure ML entry scripts served as azmlinfsrv 1.5.1 serves them (app.model.azureml).

Every expected status, body and header below was first observed on the real server (`azmlinfsrv --entry_script
tests/unit/azureml_scripts/<script>.py`, azureml-inference-server-http 1.5.1, Flask 3.1.3, Werkzeug 3.1.9,
gunicorn 27.0.1), and the swagger documents in azureml_scripts/expected/ are its bytes.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.model.azureml import answers
from app.model.azureml.entry import SHIM_DIR, Answer, EntryScript, EntryScriptError

pytestmark = pytest.mark.timeout(60)

SCRIPTS = Path(__file__).parent / "azureml_scripts"
EXPECTED = SCRIPTS / "expected"
JSON = "application/json"
TEXT_HTML = "text/html; charset=utf-8"
RUN_FAILED = {"message": "An unexpected error occurred in scoring script. Check the logs for more info."}
BAD_JSON = "POST body could not be decoded as JSON: Expecting value: line 1 column 13 (char 12)"
INTERNAL = {"message": "An unexpected internal error occurred. Check the logs for more info."}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("azmodel")
    (directory / "model.txt").write_text("hello model")
    return directory


@pytest.fixture(scope="module", autouse=True)
def isolated() -> Iterator[pytest.MonkeyPatch]:
    """Loading sets AZUREML_* variables and extends sys.path: undo both after this module."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AZUREML_MODEL_DIR", "AZUREML_ENTRY_SCRIPT", "AML_APP_ROOT", "AZUREML_CONFIG_FILE"):
            patch.delenv(name, raising=False)
        for name in ("HTTP_X_MS_SERVER_VERSION", "SERVICE_NAME", "SERVICE_VERSION", "SERVICE_PATH_PREFIX"):
            patch.delenv(name, raising=False)
        patch.delenv("SCORING_TIMEOUT_MS", raising=False)
        patch.setattr(sys, "path", list(sys.path))
        yield patch


def load(name: str, model_dir: Path, **kwargs: object) -> EntryScript:
    return EntryScript.load(SCRIPTS / name, model_dir, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plain(model_dir: Path) -> EntryScript:
    return load("plain.py", model_dir)


@pytest.fixture(scope="module")
def numpy_entry(model_dir: Path) -> EntryScript:
    return load("numpy_schema.py", model_dir)


@pytest.fixture(scope="module")
def standard(model_dir: Path) -> EntryScript:
    return load("standard_schema.py", model_dir)


@pytest.fixture(scope="module")
def raw(model_dir: Path) -> EntryScript:
    return load("rawhttp.py", model_dir)


def body(answer: Answer) -> object:
    return json.loads(answer.body)


def post(entry: EntryScript, data: str | bytes, content_type: str | None = JSON, **headers: str) -> Answer:
    raw_body = data.encode() if isinstance(data, str) else data
    pairs = [("Host", "127.0.0.1:5001")]
    if content_type is not None:
        pairs.append(("Content-Type", content_type))
    pairs += [(name.replace("_", "-"), value) for name, value in headers.items()]
    pairs.append(("Content-Length", str(len(raw_body))))
    return entry.score(raw_body, dict(pairs))


def kind(entry: EntryScript, what: str) -> Answer:
    return post(entry, f"kind:{what}", "text/plain")


def assert_ids(answer: Answer) -> None:
    """A request without ids gets a new uuid4 as x-request-id and x-ms-request-id."""
    request_id = answer.headers["x-request-id"]
    assert uuid.UUID(request_id).version == 4
    assert answer.headers["x-ms-request-id"] == request_id


# --- loading --------------------------------------------------------------------------------------------------


def test_load_sets_the_environment_and_analyses_run(plain: EntryScript, model_dir: Path) -> None:
    assert (plain.decorated, plain.wants_headers, plain.raw) == (False, False, False)
    answer = kind(plain, "env")
    assert body(answer) == {"model_dir": str(model_dir), "entry_script": str(SCRIPTS / "plain.py")}


def test_load_flags_decorated_headers_and_raw(numpy_entry: EntryScript, standard: EntryScript, raw: EntryScript) -> None:
    assert (numpy_entry.decorated, numpy_entry.wants_headers, numpy_entry.raw) == (True, False, False)
    assert (standard.decorated, standard.wants_headers) == (True, True)
    assert (raw.raw, raw.decorated) == (True, False)


def test_each_load_is_a_fresh_module(model_dir: Path) -> None:
    first, second = load("numpy_schema.py", model_dir), load("numpy_schema.py", model_dir)
    assert first.module is not second.module
    assert first.module.__name__ != second.module.__name__
    # inference-schema keys schemas by module: a reload must not collide ("output schema already defined").
    assert second.decorated
    assert post(second, '{"data": [[1, 2, 3]]}').status == 200


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("init_fails.py", r"init\(\) failed: FileNotFoundError: model\.pkl is missing \(at .*init_fails\.py:2 in init\)"),
        (
            "import_fails.py",
            r"Failed to import user script because it raised an unhandled exception: ModuleNotFoundError: "
            r"No module named 'not_a_real_module_xyz' \(at .*import_fails\.py:1 in <module>\)",
        ),
        ("no_run.py", r"User script at .*no_run\.py does not have a run\(\) function defined\."),
        ("varargs.py", r"run\(\) cannot accept positional-only arguments, \*args, or \*\*kwargs\."),
        ("only_headers.py", r'run\(\) needs to accept an argument other than "request_headers"\.'),
        ("rawhttp_schema.py", r"run\(\) cannot be decorated with both @rawhttp and @input_schema"),
    ],
)
def test_what_stops_the_server_at_start_raises(script: str, expected: str, model_dir: Path) -> None:
    with pytest.raises(EntryScriptError, match=expected):
        load(script, model_dir)


def test_missing_init_syntax_error_and_argumentless_run(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "no_init.py").write_text("def run(data):\n    return data\n")
    with pytest.raises(EntryScriptError, match=r"does not have a init\(\) function defined"):
        EntryScript.load(tmp_path / "no_init.py", model_dir)
    (tmp_path / "broken.py").write_text("def init():\n    pass\n\ndef run(data)\n    return data\n")
    with pytest.raises(EntryScriptError, match=r"SyntaxError: .* \(at .*broken\.py:4\)"):
        EntryScript.load(tmp_path / "broken.py", model_dir)
    (tmp_path / "noargs.py").write_text("def init():\n    pass\n\ndef run():\n    return 1\n")
    with pytest.raises(EntryScriptError, match=r"run\(\) needs to accept an argument for input data\."):
        EntryScript.load(tmp_path / "noargs.py", model_dir)


def test_invalid_user_swagger_or_config_stops_the_start(tmp_path: Path, model_dir: Path) -> None:
    script = tmp_path / "score.py"
    script.write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    (tmp_path / "swagger3.json").write_text("{not json")
    with pytest.raises(EntryScriptError, match="swagger"):
        EntryScript.load(script, model_dir)
    (tmp_path / "swagger3.json").unlink()
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(EntryScriptError, match="Invalid config"):
        EntryScript.load(script, model_dir)
    # A workspace config.json (other keys) is harmless.
    (tmp_path / "config.json").write_text('{"subscription_id": "x", "workspace_name": "w"}')
    assert EntryScript.load(script, model_dir).swagger().status == 200


def test_driver_module_calls_driver_init_and_target_run(model_dir: Path) -> None:
    entry = load("driver.py", model_dir)
    assert entry.module.calls == ["driver init"]
    assert entry.decorated and entry.wants_headers
    answer = post(entry, '{"inputs": {"count": 1, "weights": [2]}, "flag": true}')
    assert body(answer) == {"inputs": {"count": 1, "weights": [2]}, "flag": True, "has_headers": True, "total": 2}


def test_sibling_modules_and_both_import_paths_of_the_api(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 41\n")
    (tmp_path / "score.py").write_text(
        "import helper\n"
        "from azureml_inference_server_http.api.aml_response import AMLResponse\n"
        "from azureml_inference_server_http.api.aml_request import rawhttp\n\n"
        "def init():\n    pass\n\n"
        "@rawhttp\ndef run(request):\n    return AMLResponse(str(helper.VALUE + 1), 200)\n"
    )
    entry = EntryScript.load(tmp_path / "score.py", model_dir)
    assert entry.raw
    assert entry.score(b"", {}).body == b"42"
    # The @rawhttp flag belongs to the script that applied it, not to later loads.
    assert not load("headers.py", model_dir).raw


# --- an undecorated run(): the body as text, what it returns ---------------------------------------------------


@pytest.mark.parametrize(
    ("what", "expected_body"),
    [
        ("dict", b'{"a": 1, "b": [1.5, null, true], "c": "\\u00e9"}'),
        ("list", b"[1, 2, 3]"),
        ("tuple", b'[1, "x"]'),
        ("str", b'"hello"'),
        ("json_str", b'"{\\"a\\": 1}"'),
        ("none", b"{}"),
        ("int", b"7"),
        ("nan", b'{"x": NaN, "y": Infinity}'),
        ("np_float64", b"1.25"),
        ("np_tolist", b"[[1, 2], [3, 4]]"),
        ("int_keys", b'{"1": "one", "2.5": "x", "null": "n"}'),
    ],
)
def test_return_values_are_json_encoded(plain: EntryScript, what: str, expected_body: bytes) -> None:
    answer = kind(plain, what)
    assert (answer.status, answer.body, answer.content_type) == (200, expected_body, JSON)
    assert answer.headers["x-ms-run-function-failed"] == "False"
    assert re.fullmatch(r"\d+\.\d{3}", answer.headers["x-ms-run-fn-exec-ms"])
    assert_ids(answer)
    assert set(answer.headers) == {"x-ms-run-function-failed", "x-ms-run-fn-exec-ms", "x-request-id", "x-ms-request-id"}


@pytest.mark.parametrize("what", ["bytes", "np_array", "np_float32", "np_int64", "set"])
def test_values_json_cannot_encode_are_a_server_error(plain: EntryScript, what: str) -> None:
    answer = kind(plain, what)
    assert (answer.status, body(answer), answer.content_type) == (500, INTERNAL, JSON)
    assert answer.headers["x-ms-run-function-failed"] == "False"
    assert "x-ms-run-fn-exec-ms" not in answer.headers


def test_run_raising(plain: EntryScript) -> None:
    answer = kind(plain, "raise")
    assert (answer.status, body(answer), answer.content_type) == (500, RUN_FAILED, JSON)
    assert answer.headers["x-ms-run-function-failed"] == "True"
    assert "x-ms-run-fn-exec-ms" not in answer.headers
    assert_ids(answer)


def test_run_raising_systemexit_gets_gunicorns_page(plain: EntryScript) -> None:
    answer = kind(plain, "exit")
    assert (answer.status, answer.content_type, answer.headers) == (500, "text/html", {})
    assert b"<title>Internal Server Error</title>" in answer.body


@pytest.mark.parametrize(
    ("content_type", "data", "received"),
    [
        (JSON, '{"data": [1, 2]}', '{"data": [1, 2]}'),
        (None, '{"data": [1]}', '{"data": [1]}'),
        ("text/plain", "héllo ☃", "héllo ☃"),
        (JSON, "", ""),
        (JSON, b"\xef\xbb\xbf{}", "\ufeff{}"),
        # Parsing the form consumes the body: run() gets "" (curl -d without -H sends this type).
        ("application/x-www-form-urlencoded", '{"data": [1]}', ""),
        ("Application/X-WWW-Form-Urlencoded; charset=utf-8", "x=1", ""),
        ("multipart/form-data; boundary=XX", '--XX\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--XX--\r\n', ""),
        ("multipart/form-data; boundary=XX", "garbage", ""),
        ("multipart/form-data", "hello", "hello"),
    ],
)
def test_what_an_undecorated_run_receives(plain: EntryScript, content_type: str | None, data: str | bytes, received: str) -> None:
    answer = post(plain, data, content_type)
    assert (answer.status, body(answer)) == (200, {"received": received})


def test_body_that_is_not_utf8(plain: EntryScript) -> None:
    answer = post(plain, b'"\xe9"', "application/json; charset=latin-1")
    message = "Input cannot be decoded as UTF-8: 'utf-8' codec can't decode byte 0xe9 in position 1: invalid continuation byte"
    assert (answer.status, body(answer)) == (400, {"message": message})
    assert answer.headers["x-ms-run-function-failed"] == "False"
    assert "x-ms-run-fn-exec-ms" not in answer.headers


def test_multipart_field_over_werkzeugs_limit(plain: EntryScript) -> None:
    field = '--XX\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + "x" * 600_000 + "\r\n--XX--\r\n"
    answer = post(plain, field, "multipart/form-data; boundary=XX")
    assert (answer.status, body(answer)) == (413, {"message": "The data value transmitted exceeds the capacity limit."})
    a_file = field.replace('name="a"', 'name="a"; filename="f.txt"')
    assert post(plain, a_file, "multipart/form-data; boundary=XX").status == 200
    # A urlencoded body has no limit.
    assert post(plain, "a" * 600_000, "application/x-www-form-urlencoded").status == 200


def test_get_passes_the_query_as_json_text(plain: EntryScript) -> None:
    answer = plain.score(b"", {}, method="GET", query="a=1&b=[1,2]&c=x&d=null&e&a=2&f=%7B%22k%22%3A1%7D&g=a+b&h=%ZZ")
    received = json.loads(body(answer)["received"])  # type: ignore[index]
    assert received == {"a": [1, 2], "b": [1, 2], "c": "x", "d": None, "e": "", "f": {"k": 1}, "g": "a b", "h": "%ZZ"}
    assert body(plain.score(b"", {}, method="GET")) == {"received": "{}"}


def test_methods_other_than_post_and_get(plain: EntryScript, numpy_entry: EntryScript) -> None:
    for entry in (plain, numpy_entry):
        options = entry.score(b"", {}, method="OPTIONS")
        assert (options.status, options.body, options.content_type) == (200, b"", TEXT_HTML)
        assert options.headers["x-ms-run-function-failed"] == "False"
        assert_ids(options)
        head = entry.score(b"", {}, method="HEAD")
        assert (head.status, body(head)) == (405, {"message": "Method not allowed"})
        assert_ids(head)
        put = entry.score(b"x", {}, method="PUT")
        assert (put.status, body(put)) == (405, {"message": "The method is not allowed for the requested URL."})
        assert put.headers == {"x-ms-run-function-failed": "False"}  # routing fails before the request-id hook


# --- request ids and headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "status", "echoed"),
    [
        ({"x-request-id": "rid-1", "x-ms-client-request-id": "cid-1"}, 200,
         {"x-request-id": "rid-1", "x-ms-request-id": "cid-1", "x-ms-client-request-id": "cid-1"}),
        ({"x-ms-request-id": "legacy-1"}, 200, {"x-ms-request-id": "legacy-1", "x-ms-client-request-id": "legacy-1"}),
        ({"x-ms-request-id": "legacy-1", "x-ms-client-request-id": "cid-2", "x-request-id": "r3"}, 200,
         {"x-request-id": "r3", "x-ms-request-id": "legacy-1", "x-ms-client-request-id": "cid-2"}),
        ({"X-Request-Id": ""}, 200, {}),
        ({"x-request-id": "a" * 101}, 431, {}),
        ({"x-ms-client-request-id": "a" * 101}, 431, {}),
        ({"TraceId": "t-1", "x-request-id": "r"}, 200, {"x-request-id": "r", "x-ms-request-id": "r", "TraceId": "t-1"}),
    ],
)  # fmt: skip
def test_request_id_headers(plain: EntryScript, sent: dict[str, str], status: int, echoed: dict[str, str]) -> None:
    answer = plain.score(b"x", sent)
    assert answer.status == status
    ids = {
        k: v
        for k, v in answer.headers.items()
        if k.lower() in ("x-request-id", "x-ms-request-id", "x-ms-client-request-id", "traceid")
    }
    if "x-ms-client-request-id" in sent and status == 431:
        assert uuid.UUID(ids.pop("x-request-id"))  # the request id was already set when the client id failed
    if "x-request-id" not in sent and "X-Request-Id" not in sent and status == 200:
        generated = ids.pop("x-request-id")
        assert uuid.UUID(generated)
    assert ids == echoed
    if status == 431:
        limit = "x-request-id" if "x-request-id" in sent else "x-ms-request-id and x-ms-client-request-id"
        assert body(answer) == {"message": f"{limit} must not exceed 100 characters"}


def test_server_version_header_from_the_environment(plain: EntryScript, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "x-ms-server-version" not in kind(plain, "int").headers
    monkeypatch.setenv("HTTP_X_MS_SERVER_VERSION", "azmlinfsrv/1.5.1")
    assert kind(plain, "int").headers["x-ms-server-version"] == "azmlinfsrv/1.5.1"


def test_request_headers_as_the_script_sees_them(model_dir: Path) -> None:
    entry = load("headers.py", model_dir)
    sent = [
        ("Host", "127.0.0.1:31512"),
        ("Content-Type", "text/plain"),
        ("X-Custom", "v"),
        ("x-lower-case", "l"),
        ("X-Dup", "1"),
        ("X-Dup", "2"),
        ("x_under", "u"),
        ("X-Ms-Client-Request-Id", "cid"),
        ("TraceId", "t"),
        ("Authorization", "Bearer abc"),
        ("Content-Length", "1"),
    ]
    answer = entry.score(b"x", sent)
    assert body(answer) == {
        "data": "x",
        "headers": {
            "Host": "127.0.0.1:31512",
            "Content-Type": "text/plain",
            "X-Custom": "v",
            "X-Lower-Case": "l",
            "X-Dup": "1,2",
            "X-Ms-Client-Request-Id": "cid",
            "Traceid": "t",
            "Authorization": "Bearer abc",
            "Content-Length": "1",
        },
    }
    assert answer.headers["x-ms-client-request-id"] == "cid" and answer.headers["TraceId"] == "t"
    assert body(entry.score(b"", {"Host": "h"}, method="GET", query="a=1")) == {"data": '{"a": 1}', "headers": {"Host": "h"}}


# --- AMLResponse from run() -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "status", "data", "content_type", "extra", "failed"),
    [
        ("aml_text", 201, b"plain text", TEXT_HTML, {"X-Custom": "a, b", "X-One": "1"}, "False"),
        ("aml_json", 202, b'{"a": [1, 2]}', JSON, {}, "False"),
        ("aml_none", 200, b"{}", JSON, {}, "False"),
        ("aml_500", 503, b"broken", TEXT_HTML, {}, "True"),
        ("aml_500_flag", 500, b"broken", TEXT_HTML, {}, "True"),
        ("aml_400", 400, b"bad", TEXT_HTML, {}, "True"),
        ("aml_ct", 200, b"a,b\n1,2\n", "text/csv", {}, "False"),
        # Only the exact key "Content-Type" replaces the default; the server then sends two Content-Types.
        ("aml_ct_lower", 200, b"a,b\n1,2\n", TEXT_HTML, {}, "False"),
        ("aml_json_ct", 200, b'{"a": 1}', JSON, {}, "False"),
        ("aml_bytes", 200, b"\x00\x01\xff", "application/octet-stream", {}, "False"),
        ("aml_dict_plain", 200, b"k1k2", TEXT_HTML, {}, "False"),
        ("aml_list_str", 200, b"abc", TEXT_HTML, {}, "False"),
        ("aml_empty", 204, b"", TEXT_HTML, {}, "False"),
    ],
)
def test_amlresponse_is_sent_as_built(
    plain: EntryScript, what: str, status: int, data: bytes, content_type: str, extra: dict[str, str], failed: str
) -> None:
    answer = kind(plain, what)
    assert (answer.status, answer.body, answer.content_type) == (status, data, content_type)
    assert answer.headers["x-ms-run-function-failed"] == failed
    assert "x-ms-run-fn-exec-ms" in answer.headers
    for name, value in extra.items():
        assert answer.headers[name] == value
    assert_ids(answer)


def test_amlresponse_that_cannot_be_sent(plain: EntryScript) -> None:
    answer = kind(plain, "aml_list_int")  # the body is produced after run(): Werkzeug's 500
    assert (answer.status, body(answer)["message"]) == (500, answers.WERKZEUG_INTERNAL_ERROR)  # type: ignore[index]
    assert answer.headers["x-ms-run-function-failed"] == "False"
    answer = kind(plain, "aml_header_int")  # the constructor fails inside run()
    assert (answer.status, body(answer), answer.headers["x-ms-run-function-failed"]) == (500, RUN_FAILED, "True")


# --- decorated run(): inference-schema ---------------------------------------------------------------------------


def test_numpy_schema(numpy_entry: EntryScript) -> None:
    assert body(post(numpy_entry, '{"data": [[1, 2, 3], [4, 5, 6]]}')) == [12.0, 30.0]
    assert body(post(numpy_entry, '{"data": [[1, 2, 3]], "scale": 3, "other": 1}')) == [18.0]
    assert body(post(numpy_entry, '{"data": [[1, 2, 3]]}', "application/vnd.api+json")) == [12.0]
    assert body(post(numpy_entry, '{"data": [[1, 2, 3]]}'.encode("utf-16"))) == [12.0]
    assert post(numpy_entry, '{"data": [[NaN, 2, 3]]}').body == b"[NaN]"
    get = numpy_entry.score(b"", {}, method="GET", query="data=[[1,2,3]]&scale=2")
    assert body(get) == [12.0]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "expected"),
    [
        ('{"scale": 1}', JSON, 400, {"message": "A value is not provided for the 'data' parameter."}),
        ('{"data": [[1, 2, 3]]}', None, 415, {"message": "Expects Content-Type to be application/json"}),
        ('{"data": [[1, 2, 3]]}', "text/plain", 415, {"message": "Expects Content-Type to be application/json"}),
        ("", JSON, 400, {"message": "POST body is empty. Expecting a JSON dictionary."}),
        ('{"data": [1,', JSON, 400, {"message": BAD_JSON}),
        ("[1, 2]", JSON, 400, {"message": "POST body should be a JSON dictionary."}),
        (b'{"data": "\xe9"}', JSON, 500, INTERNAL),
        # Schema validation happens inside the decorated run(): the server reports a failed run().
        ('{"data": [[1, 2]]}', JSON, 500, RUN_FAILED),
        ('{"data": "abc"}', JSON, 500, RUN_FAILED),
        ('{"data": [["a", "b", "c"]]}', JSON, 500, RUN_FAILED),
        ('{"data": [[1, 2, 3]], "scale": "x"}', JSON, 500, RUN_FAILED),
        ('{"data": null}', JSON, 500, RUN_FAILED),
    ],
)  # fmt: skip
def test_numpy_schema_refusals(
    numpy_entry: EntryScript, data: str | bytes, content_type: str | None, status: int, expected: object
) -> None:
    answer = post(numpy_entry, data, content_type)
    assert (answer.status, body(answer)) == (status, expected)
    assert answer.headers["x-ms-run-function-failed"] == ("True" if expected == RUN_FAILED else "False")


def test_standard_schema_with_request_headers(standard: EntryScript) -> None:
    answer = post(standard, '{"inputs": {"name": "a", "count": 3, "weights": [1, 2]}, "flag": false}')
    assert body(answer) == {
        "inputs": {"name": "a", "count": 3, "weights": [1, 2]},
        "flag": False,
        "has_headers": True,
        "total": 9,
    }
    # request_headers cannot be smuggled in through the body.
    assert body(post(standard, '{"inputs": {}, "flag": true, "request_headers": {"a": 1}}'))["has_headers"] is True  # type: ignore[index]
    missing = post(standard, '{"inputs": {"name": "a"}}')
    assert (missing.status, body(missing)) == (400, {"message": "A value is not provided for the 'flag' parameter."})
    assert post(standard, '{"inputs": [1], "flag": true}').status == 500
    assert post(standard, '{"inputs": {}, "flag": "yes"}').status == 500


def test_pandas_schema(model_dir: Path) -> None:
    pytest.importorskip("pandas")
    entry = load("pandas_schema.py", model_dir)
    answer = post(entry, '{"data": [{"temp": 20, "count": 1, "site": "x"}, {"temp": 1.5, "count": 2, "site": "y"}]}')
    assert body(answer) == {"columns": ["temp", "count", "site"], "dtypes": ["float64", "int64", "object"], "sum": 21.5}
    for bad in ('{"data": [{"temp": 20, "count": 1}]}', '{"data": [{"temp": "hot", "count": 1, "site": "x"}]}', '{"data": 5}'):
        assert (post(entry, bad).status, body(post(entry, bad))) == (500, RUN_FAILED)


# --- @rawhttp -----------------------------------------------------------------------------------------------------


def test_rawhttp_gets_the_request(raw: EntryScript) -> None:
    answer = raw.score(b'{"x": 1}', {"Content-Type": JSON, "X-Custom": "cv"}, method="POST", query="mode=echo&a=1&a=2&b=")
    assert (answer.status, answer.content_type) == (200, JSON)
    assert body(answer) == {
        "method": "POST",
        "path": "/score",
        "full_path": "/score?mode=echo&a=1&a=2&b=",
        "args": {"mode": ["echo"], "a": ["1", "2"], "b": [""]},
        "data": '{"x": 1}',
        "content_type": JSON,
        "mimetype": JSON,
        "is_json": True,
        "x_custom": "cv",
    }
    for method in ("GET", "OPTIONS", "HEAD"):  # every method /score routes goes to run()
        assert body(raw.score(b"", {}, method=method))["method"] == method  # type: ignore[index]
    assert raw.score(b"x", {}, method="PUT").status == 405


def test_rawhttp_body_forms_files_and_json(raw: EntryScript) -> None:
    def call(mode: str, data: bytes, content_type: str = "", **extra: str) -> Answer:
        headers = {"Content-Type": content_type, **extra} if content_type else dict(extra)
        return raw.score(data, headers, query=f"mode={mode}")

    form = "application/x-www-form-urlencoded"
    assert body(call("form", b"a=1&b=x+y", form)) == {"form": {"a": "1", "b": "x y"}, "files": {}}
    multipart = (
        b'--XX\r\nContent-Disposition: form-data; name="a"\r\n\r\nval\r\n--XX\r\nContent-Disposition: form-data; '
        b'name="f"; filename="f.txt"\r\nContent-Type: text/plain\r\n\r\nfile content\r\n--XX--\r\n'
    )
    assert body(call("form", multipart, "multipart/form-data; boundary=XX")) == {
        "form": {"a": "val"},
        "files": {"f": "file content"},
    }
    assert body(call("form", b"garbage", "multipart/form-data; boundary=XX")) == {"form": {}, "files": {}}
    # Werkzeug's order effects: the form consumes the body unless the body was read first.
    assert body(call("form_then_data", b"a=1&b=2", form)) == {"form": {"a": "1", "b": "2"}, "data": ""}
    assert body(call("data_then_form", b"a=1&b=2", form)) == {"data": "a=1&b=2", "form": {"a": "1", "b": "2"}}
    assert body(call("data_prop", b"a=1", form)) == {"data": ""}
    assert body(call("data_prop", b'{"a": 1}', JSON)) == {"data": '{"a": 1}'}
    values = raw.score(b"a=1&q=2", {"Content-Type": form}, query="mode=values&q=1")
    assert body(values) == {"values": {"mode": ["values"], "q": ["1", "2"], "a": ["1"]}}
    assert body(call("cookies", b"", Cookie="a=1; b=two")) == {"cookies": {"a": "1", "b": "two"}}
    assert body(call("json", b'{"k": [1]}', JSON)) == {"k": [1]}
    assert (call("json", b'{"k": [1]}', "text/plain").status, body(call("json", b"{", JSON))) == (500, RUN_FAILED)
    image = call("image", b"\x89PNG\r\n\x1a\n\x00\xff", "application/octet-stream")
    assert (image.status, image.body, image.content_type) == (200, b"\x89PNG\r\n\x1a\n\x00\xff", "image/png")
    created = call("status_str", b"")
    assert (created.status, created.body) == (201, b"created")
    too_big = b'--XX\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + b"x" * 500_001 + b"\r\n--XX--\r\n"
    assert call("form", too_big, "multipart/form-data; boundary=XX").status == 500  # raised inside run()


def test_rawhttp_with_request_headers(model_dir: Path) -> None:
    entry = load("rawhttp_headers.py", model_dir)
    assert body(entry.score(b"x", {"X-Custom": "cv"})) == {"method": "POST", "x_custom": "cv"}


# --- swagger ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "version", "expected"),
    [
        ("plain.py", None, "plain_swagger.json"),
        ("plain.py", "2.0", "plain_swagger.json"),
        ("plain.py", "3.1", "plain_swagger31.json"),
        ("numpy_schema.py", "3", "numpy_swagger3.json"),
        ("numpy_schema.py", "3.0", "numpy_swagger3.json"),
    ],
)
def test_swagger_documents_are_the_servers(script: str, version: str | None, expected: str, model_dir: Path) -> None:
    answer = load(script, model_dir).swagger(version)
    assert (answer.status, answer.content_type) == (200, JSON)
    assert answer.body == (EXPECTED / expected).read_bytes()
    assert answer.headers["x-ms-run-function-failed"] == "False"
    assert_ids(answer)


def test_swagger_uses_the_service_settings(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "svc-a")
    monkeypatch.setenv("SERVICE_PATH_PREFIX", "/api/v1/")
    monkeypatch.setenv("SERVICE_VERSION", "2.5")
    monkeypatch.setenv("SCORING_TIMEOUT_MS", "500")
    entry = load("sleepy.py", model_dir)
    assert entry.swagger("3").body == (EXPECTED / "sleepy_swagger.json").read_bytes()
    assert entry.scoring_timeout_ms == 500


def test_swagger_versions_not_served(plain: EntryScript, model_dir: Path) -> None:
    for version, message in (
        ("4", "Swagger version [4] is not valid. Supported versions: [2, 3, 3.1]."),
        ("", "Swagger version [] is not valid. Supported versions: [2, 3, 3.1]."),
    ):
        answer = plain.swagger(version)
        assert (answer.status, body(answer)) == (404, {"message": message})
    mixed = load("mixed_schema.py", model_dir)  # a mixed-type list cannot be written in swagger 2
    answer = mixed.swagger(None)
    message = "Swagger version [2] is not supported for the scoring script. Supported swagger versions: [3, 3.1]."
    assert (answer.status, body(answer)) == (404, {"message": message})
    assert body(mixed.swagger("1")) == {"message": "Swagger version [1] is not valid. Supported versions: [3, 3.1]."}
    assert json.loads(mixed.swagger("3").body)["openapi"] == "3.0.3"
    assert plain.swagger(None, headers={"x-request-id": "a" * 101}).status == 431


def test_user_swagger_files_win(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "score.py").write_text((SCRIPTS / "standard_schema.py").read_text())
    (tmp_path / "swagger.json").write_text('{"swagger": "2.0", "info": {"title": "mine"}}')
    (tmp_path / "swagger3.json").write_text('{"openapi":"3.0.0","x":1}')
    (tmp_path / "swagger3.1.json").write_text("{}")  # empty: generated instead
    entry = EntryScript.load(tmp_path / "score.py", model_dir)
    assert entry.swagger(None).body == b'{"swagger": "2.0", "info": {"title": "mine"}}'
    assert entry.swagger("3").body == b'{"openapi": "3.0.0", "x": 1}'
    document = json.loads(entry.swagger("3.1").body)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["schemas"]["ServiceInput"]["example"] == {
        "inputs": {"name": "x", "count": 2, "weights": [0.5, 1.5]},
        "flag": True,
        "request_headers": "",
    }


def test_sample_input(plain: EntryScript, numpy_entry: EntryScript, standard: EntryScript) -> None:
    assert plain.sample_input() is None
    sample = numpy_entry.sample_input()
    assert sample is not None and json.loads(sample) == {"data": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "scale": 1.0}
    assert body(post(numpy_entry, sample)) == [6.0, 15.0]
    sample = standard.sample_input()
    assert sample is not None
    assert json.loads(sample) == {"inputs": {"name": "x", "count": 2, "weights": [0.5, 1.5]}, "flag": True}
    assert post(standard, sample).status == 200


# --- the other answers the HTTP layer gives ------------------------------------------------------------------------


def test_other_answers() -> None:
    health = answers.health({"x-request-id": "r"})
    assert (health.status, health.body, health.content_type) == (200, b"Healthy", TEXT_HTML)
    assert health.headers == {"x-request-id": "r", "x-ms-request-id": "r"}
    missing = answers.not_found()
    assert (missing.status, missing.headers) == (404, {"x-ms-run-function-failed": "False"})
    assert body(missing) == {"message": answers.NOT_FOUND}
    timeout = answers.scoring_timeout(500, {"x-request-id": "r"})
    assert (timeout.status, body(timeout)) == (500, {"message": "Scoring timeout after 500 ms"})
    assert timeout.headers["x-ms-run-function-failed"] == "True"


# --- the azureml.core Model shim ------------------------------------------------------------------------------------


@pytest.fixture
def model_class(plain: EntryScript, monkeypatch: pytest.MonkeyPatch) -> type:
    """The shim's Model (loading a script put the shim on sys.path, azureml-core being absent)."""
    monkeypatch.delenv("AML_APP_ROOT", raising=False)
    module = importlib.import_module("azureml.core.model")
    assert Path(module.__file__).resolve().is_relative_to(SHIM_DIR)  # type: ignore[arg-type]
    return module.Model  # type: ignore[no-any-return]


def test_model_path_layouts(model_class: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azureml.exceptions import ModelNotFoundException, WebserviceException

    models = tmp_path / "azureml-models"
    for relative in ("mymodel/1/a.pkl", "mymodel/2/b.pkl", "flat.pkl", "folder/weights.bin", "two/1/x", "two/1/y"):
        (models / relative).parent.mkdir(parents=True, exist_ok=True)
        (models / relative).write_text(relative)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(models))
    get = model_class.get_model_path
    assert get("mymodel") == str(models / "mymodel/2/b.pkl")  # the highest version
    assert get("mymodel", version=1) == str(models / "mymodel/1/a.pkl")
    assert get("flat.pkl") == str(models / "flat.pkl")  # the model directly in the model directory
    assert get("folder") == str(models / "folder")
    with pytest.raises(WebserviceException, match=r"Dir .*two/1 can contain only 1 file or folder. Found \['x', 'y'\]"):
        get("two")
    with pytest.raises(WebserviceException, match="version should be an int"):
        get("mymodel", version="1")
    with pytest.raises(WebserviceException, match="Model mymodel not found in cache at"):
        get("mymodel", version=3)
    with pytest.raises(ModelNotFoundException) as missing:
        get("nothing")
    assert missing.value.message == (
        f"Model nothing not found in cache at {models} or in current working directory {os.getcwd()}. "
        "For more info, set logging level to DEBUG."
    )
    # The SDK v1 single-model layout: AZUREML_MODEL_DIR is <azureml-models>/<name>/<version>.
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(models / "mymodel" / "1"))
    assert get("mymodel") == str(models / "mymodel/2/b.pkl")
    assert get("mymodel", version=1) == str(models / "mymodel/1/a.pkl")
    # And the SDK's own place: $AML_APP_ROOT/azureml-models.
    monkeypatch.delenv("AZUREML_MODEL_DIR")
    monkeypatch.setenv("AML_APP_ROOT", str(tmp_path))
    assert get("mymodel") == str(models / "mymodel/2/b.pkl")


def test_script_using_the_model_shim(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "mymodel" / "3").mkdir(parents=True)
    (models / "mymodel" / "3" / "model.txt").write_text("weights")
    entry = load("model_shim.py", models)
    assert body(post(entry, "x", "text/plain")) == {"path": str(models / "mymodel/3/model.txt"), "content": "weights"}
