"""`python -m localedge test-route`: a manifest's routes against one message, in process, with files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localedge.__main__ import main
from localedge.processes import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

TEMPLATE = REPO_ROOT / "deployment.template.json"
JSON_MESSAGE = {"contentType": "application/json", "contentEncoding": "utf-8"}


def manifest(tmp_path: Path, routes: dict[str, Any]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(
        json.dumps({"modulesContent": {"$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": routes}}}})
    )
    return path


def message_file(tmp_path: Path, message: Any) -> Path:
    path = tmp_path / "message.json"
    path.write_text(message if isinstance(message, str) else json.dumps(message))
    return path


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], routes: Path, message: Any) -> tuple[int, list[str], str]:
    code = main(["test-route", "--manifest", str(routes), "--message", str(message_file(tmp_path, message))])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def lines(*results: tuple[str, bool, str]) -> list[str]:
    return [json.dumps({"route": name, "matched": matched, "sink": sink}) for name, matched, sink in results]


INFERENCE_IN = 'BrokeredEndpoint("/modules/inference/inputs/amlInput")'


def test_the_template_routes_a_sensor_reading_to_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reading = {
        "source": "/messages/modules/tempSensor/outputs/temperatureOutput",
        "body": {"machine": {"temperature": 87.2}},
        "systemProperties": JSON_MESSAGE,
    }
    code, out, err = run(tmp_path, capsys, TEMPLATE, reading)
    assert code == 0 and err == ""
    assert out == lines(
        ("sensorToInference", True, INFERENCE_IN),
        ("predictionsToUpstream", False, "$upstream"),
        ("errorsToUpstream", False, "$upstream"),
    )
    prediction = {"source": "/messages/modules/inference/outputs/amlOutput", "body": {"label": "anomaly"}}
    assert run(tmp_path, capsys, TEMPLATE, prediction)[:2] == (
        0,
        lines(
            ("sensorToInference", False, INFERENCE_IN),
            ("predictionsToUpstream", True, "$upstream"),
            ("errorsToUpstream", False, "$upstream"),
        ),
    )


def test_conditions_on_body_and_properties_decide(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = manifest(
        tmp_path,
        {
            "anomalies": "FROM /messages/modules/inference/outputs/* WHERE $body.label = 'anomaly' INTO $upstream",
            "urgent": {
                "route": "FROM /messages/* WHERE as_number(severity) >= 3 AND $messageId = 'm-1' "
                'INTO BrokeredEndpoint("/modules/alerts/inputs/in")',
                "priority": 0,
                "timeToLiveSecs": 60,
            },
            "otherCase": "FROM /messages/modules/Inference/* WHERE $connectionModuleId = 'inference' INTO $upstream",
        },
    )
    message = {
        "source": "/messages/modules/inference/outputs/amlOutput",
        "body": {"label": "anomaly", "probability": 0.97},
        "properties": {"severity": "4"},
        "systemProperties": {**JSON_MESSAGE, "messageId": "m-1"},
    }
    assert run(tmp_path, capsys, routes, message) == (
        0,
        lines(
            ("anomalies", True, "$upstream"),
            ("urgent", True, 'BrokeredEndpoint("/modules/alerts/inputs/in")'),
            ("otherCase", True, "$upstream"),
        ),
        "",
    )
    normal = {**message, "body": {"label": "normal"}, "properties": {"severity": "1"}}
    assert run(tmp_path, capsys, routes, normal)[1] == lines(
        ("anomalies", False, "$upstream"),
        ("urgent", False, 'BrokeredEndpoint("/modules/alerts/inputs/in")'),
        ("otherCase", True, "$upstream"),
    )


def test_a_body_edgehub_cannot_read_is_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = manifest(tmp_path, {"anomalies": "FROM /messages/* WHERE $body.label = 'anomaly' INTO $upstream"})
    code, out, err = run(tmp_path, capsys, routes, {"body": {"label": "anomaly"}})  # no contentType
    assert (code, out) == (0, lines(("anomalies", False, "$upstream")))
    assert err == (
        "note: edgeHub cannot read this message's body, so every $body is undefined: "
        "Content encoding is not specified in system properties.\n"
    )
    # a JSON string is the body's text; utf-16 is .NET's little-endian Unicode
    utf16 = {"body": '{"label": "anomaly"}', "systemProperties": {"contentType": "application/json", "contentEncoding": "utf-16"}}
    assert run(tmp_path, capsys, routes, utf16) == (0, lines(("anomalies", True, "$upstream")), "")


def test_correlation_id_is_cid_on_edgehub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = manifest(
        tmp_path,
        {
            "byCid": "FROM /messages/* WHERE $cid = 'c-1' INTO $upstream",
            "byName": "FROM /messages/* WHERE $correlationId = 'c-1' INTO $upstream",
        },
    )
    code, out, err = run(tmp_path, capsys, routes, {"systemProperties": {"correlationId": "c-1"}})
    assert (code, out) == (0, lines(("byCid", True, "$upstream"), ("byName", False, "$upstream")))
    assert err == (
        "note: edgeHub keeps a message's correlationId as the system property cid: $cid reads it, $correlationId reads nothing\n"
    )


def test_sources_devices_and_twin_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = manifest(
        tmp_path,
        {
            "leaf": "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) "
            'INTO BrokeredEndpoint("/modules/router/inputs/in")',
            "modules": "FROM /messages/modules/* INTO $upstream",
            "twin": "FROM /twinChangeNotifications INTO $upstream",
        },
    )
    twin_note = (
        "note: route 'twin' never fires on the local edge: it reads twin change notifications "
        "(/twinChangeNotifications), which the local edge does not produce\n"
    )
    router = 'BrokeredEndpoint("/modules/router/inputs/in")'
    assert run(tmp_path, capsys, routes, {"source": "/messages"}) == (
        0,
        lines(("leaf", True, router), ("modules", False, "$upstream"), ("twin", False, "$upstream")),
        twin_note,
    )
    assert run(tmp_path, capsys, routes, {})[1] == lines(  # the default source: sensor's output out
        ("leaf", False, router), ("modules", True, "$upstream"), ("twin", False, "$upstream")
    )
    assert run(tmp_path, capsys, routes, {"source": "/twinChangeNotifications"})[1] == lines(
        ("leaf", False, router), ("modules", False, "$upstream"), ("twin", True, "$upstream")
    )


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            "{not json",
            "error: message {path}: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n",
        ),
        ([1], "error: message {path}: expected a JSON object with source, body, properties, systemProperties\n"),
        ({"bdy": {}}, "error: message {path}: unknown key(s) bdy: the keys are source, body, properties, systemProperties\n"),
        (
            {"source": "/messages/modules/a/inputs/b"},
            "error: message {path}: source '/messages/modules/a/inputs/b': use /messages/modules/<module>/outputs/<output>, "
            "/messages/modules/<module>, /messages or /twinChangeNotifications\n",
        ),
        ({"properties": {"n": 1}}, "error: message {path}: properties: expected an object of name: string\n"),
        (
            {"source": "/messages/modules/a/outputs/o", "systemProperties": {"outputName": "p"}},
            "error: message {path}: systemProperties.outputName 'p' contradicts the source '/messages/modules/a/outputs/o'\n",
        ),
    ],
)
def test_a_message_it_cannot_read_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], message: Any, error: str) -> None:
    code, out, err = run(tmp_path, capsys, TEMPLATE, message)
    assert (code, out, err) == (2, [], error.format(path=tmp_path / "message.json"))


def test_an_unknown_system_property_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(tmp_path, capsys, TEMPLATE, {"systemProperties": {"enqueuedTime": "x"}})
    assert (code, out) == (2, [])
    assert err.startswith(
        f"error: message {tmp_path / 'message.json'}: systemProperties: unknown 'enqueuedTime': the known ones are "
    )
    assert "contentEncoding, contentType, correlationId" in err


def test_a_manifest_it_cannot_read_or_edgehub_rejects_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "manifest.json"
    assert run(tmp_path, capsys, path, {}) == (2, [], f"error: manifest {path}: not found\n")
    path.write_text("{}")
    assert run(tmp_path, capsys, path, {}) == (
        2,
        [],
        f'error: manifest {path}: no routes object at modulesContent.$edgeHub["properties.desired"].routes\n',
    )
    bad = manifest(tmp_path, {"ok": "FROM /messages/* INTO $upstream", "bad": "FROM /messages/* WHERE seq > 5 INTO $upstream"})
    assert run(tmp_path, capsys, bad, {}) == (
        2,
        [],
        f"error: manifest {bad}: edgeHub would reject its routes:\n"
        "- route 'bad': Invalid operands to binary operator '>': have 'string' and 'number', expected 'string' and 'string' "
        "(properties are strings: write as_number(name) to compare or compute with a number) at col 28\n",
    )


def test_the_sub_command_needs_both_files(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["test-route", "--manifest", str(TEMPLATE)])
    assert exit_.value.code == 2
    assert "the following arguments are required: --message" in capsys.readouterr().err
