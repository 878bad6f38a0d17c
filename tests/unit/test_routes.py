"""edgeHub routes for the local edge (localedge/routes.py): parsing, WHERE conditions, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edgekit import routes as routes_module
from edgekit.routes import (
    DEFAULT_PRIORITY,
    Message,
    ModuleInput,
    Route,
    RouteError,
    Upstream,
    destinations,
    parse_routes,
    referenced_modules,
)

REPO = Path(__file__).resolve().parents[2]
JSON_PROPS = {"$.ct": "application/json", "$.ce": "utf-8"}
SENSOR_BODY = (
    b'{"machine":{"temperature":87.25,"pressure":8.6},"ambient":{"temperature":21.4,"humidity":25},'
    b'"timeCreated":"2026-01-01T00:00:00.0000000Z"}'
)
ANOMALY = {"label": "anomaly", "probability": 0.97, "model": "temperature-anomaly", "modelVersion": 1}
NORMAL = {"label": "normal", "probability": 0.88, "model": "temperature-anomaly", "modelVersion": 1}
ANOMALIES_ONLY = "FROM /messages/modules/inference/outputs/amlOutput WHERE $body.label = 'anomaly' INTO $upstream"
# A body with every JSON type, for the $body conditions.
RICH_BODY = {
    "label": "anomaly",
    "probability": 0.97,
    "modelVersion": 1,
    "delta": -2.5,
    "big": 1.5e3,
    "quote": "it's",
    "accent": "é",
    "flags": {"alarm": True, "muted": False},
    "machine": {"temperature": 87.25, "unit": {"name": "C"}},
    "nothing": None,
    "history": [1, 2, 3],
}


def template_routes() -> dict[str, Any]:
    doc = json.loads((REPO / "deployment.template.json").read_text())
    return doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]


def message(
    body: bytes | dict[str, Any] = b"{}",
    module: str = "inference",
    output: str = "amlOutput",
    **properties: str,
) -> Message:
    """A JSON message as the SDK publishes it (content type and encoding set) unless `properties` say otherwise."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return Message(module, output, raw, {**JSON_PROPS, **properties})


def where(condition: str) -> Route:
    (route,) = parse_routes({"r": f"FROM /messages/* WHERE {condition} INTO $upstream"})
    return route


def problems(routes: Any) -> list[str]:
    with pytest.raises(RouteError) as info:
        parse_routes(routes)
    assert isinstance(info.value, ValueError)
    return info.value.problems


# --- the deployment's own routes ------------------------------------------------------------------------------------


def test_template_routes_carry_sensor_data_to_inference_and_predictions_upstream() -> None:
    parsed = parse_routes(template_routes())

    assert [(r.name, r.priority, r.sink) for r in parsed] == [
        ("sensorToInference", DEFAULT_PRIORITY, ModuleInput("inference", "amlInput")),
        ("predictionsToUpstream", DEFAULT_PRIORITY, Upstream()),
        ("errorsToUpstream", DEFAULT_PRIORITY, Upstream()),
    ]
    sensor = message(SENSOR_BODY, "tempSensor", "temperatureOutput", sequenceNumber="7", batchId="b1")
    assert destinations(parsed, sensor) == [ModuleInput("inference", "amlInput")]
    assert [str(s) for s in destinations(parsed, sensor)] == ['BrokeredEndpoint("/modules/inference/inputs/amlInput")']
    assert destinations(parsed, message(ANOMALY, "inference", "amlOutput")) == [Upstream()]
    assert destinations(parsed, message(b'{"code":"bad-input"}', "inference", "errorOutput")) == [Upstream()]
    assert [str(s) for s in destinations(parsed, message(ANOMALY))] == ["$upstream"]
    # Nothing routes an output the manifest does not name, nor the sensor's messages upstream.
    assert destinations(parsed, message(ANOMALY, "inference", "debugOutput")) == []
    assert destinations(parsed, message(SENSOR_BODY, "tempSensor", "")) == []
    assert referenced_modules(parsed) == {"tempSensor", "inference"}


# --- sources and sinks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "sent", "expected"),
    [
        ("/messages/*", ("inference", "amlOutput"), True),
        ("/messages/*", ("inference", ""), True),
        ("/messages/*", ("", ""), True),  # a device's own message
        ("/messages/modules/inference/*", ("inference", "amlOutput"), True),
        ("/messages/modules/inference/*", ("inference", ""), True),
        ("/messages/modules/inference/*", ("tempSensor", "amlOutput"), False),
        ("/messages/modules/inference/*", ("", ""), False),
        ("/messages/modules/inference/outputs/*", ("inference", "errorOutput"), True),
        ("/messages/modules/inference/outputs/*", ("inference", ""), False),
        ("/messages/modules/inference/outputs/*", ("tempSensor", "errorOutput"), False),
        ("/messages/modules/inference/outputs/amlOutput", ("inference", "amlOutput"), True),
        ("/messages/modules/inference/outputs/amlOutput", ("inference", "amloutput"), False),
        ("/messages/modules/inference/outputs/amlOutput", ("inference", "errorOutput"), False),
        ("/messages/modules/inference/outputs/amlOutput", ("Inference", "amlOutput"), False),
    ],
)
def test_each_source_form_selects_its_messages(source: str, sent: tuple[str, str], expected: bool) -> None:
    (route,) = parse_routes({"r": f"FROM {source} INTO $upstream"})
    assert route.matches(message(ANOMALY, *sent)) is expected


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ("$upstream", Upstream()),
        ("$UPSTREAM", Upstream()),
        ('BrokeredEndpoint("/modules/inference/inputs/amlInput")', ModuleInput("inference", "amlInput")),
        ('BrokeredEndpoint ( "/modules/inference/inputs/amlInput" )', ModuleInput("inference", "amlInput")),
        ('brokeredendpoint("modules/inference/inputs/amlInput/")', ModuleInput("inference", "amlInput")),
        ("BrokeredEndpoint('/modules/my-module_2/inputs/in 1')", ModuleInput("my-module_2", "in 1")),
    ],
)
def test_each_sink_form(sink: str, expected: Upstream | ModuleInput) -> None:
    (route,) = parse_routes({"r": f"FROM /messages/* INTO {sink}"})
    assert route.sink == expected
    assert destinations([route], message()) == [expected]


def test_sinks_print_as_written_in_a_manifest() -> None:
    assert str(Upstream()) == "$upstream"
    assert str(ModuleInput("inference", "amlInput")) == 'BrokeredEndpoint("/modules/inference/inputs/amlInput")'


@pytest.mark.parametrize(
    ("value", "priority", "ttl"),
    [
        ({"route": "FROM /messages/* INTO $upstream", "priority": 0, "timeToLiveSecs": 86400}, 0, 86400),
        ({"route": "FROM /messages/* INTO $upstream", "priority": 9}, 9, 0),
        ({"route": "FROM /messages/* INTO $upstream"}, DEFAULT_PRIORITY, 0),
        ("FROM /messages/* INTO $upstream", DEFAULT_PRIORITY, 0),
    ],
)
def test_object_form_with_priority_and_ttl(value: Any, priority: int, ttl: int) -> None:
    (route,) = parse_routes({"urgent": value})
    assert (route.name, route.text, route.priority, route.time_to_live_secs) == (
        "urgent",
        "FROM /messages/* INTO $upstream",
        priority,
        ttl,
    )
    assert route.matches(message())


def test_destinations_names_each_sink_once_in_route_order() -> None:
    parsed = parse_routes(
        {
            "toAlerts": f"FROM /messages/modules/inference/* WHERE $body.label = 'anomaly' INTO {ModuleInput('alerts', 'in')}",
            "all": "FROM /messages/* INTO $upstream",
            "again": "FROM /messages/modules/inference/outputs/amlOutput INTO $upstream",
            "toLog": 'FROM /messages/* INTO BrokeredEndpoint("/modules/log/inputs/in")',
        }
    )
    assert destinations(parsed, message(ANOMALY)) == [ModuleInput("alerts", "in"), Upstream(), ModuleInput("log", "in")]
    assert destinations(parsed, message(NORMAL)) == [Upstream(), ModuleInput("log", "in")]
    assert referenced_modules(parsed) == referenced_modules(iter(parsed)) == {"inference", "alerts", "log"}


def test_keywords_in_any_case_and_the_select_form() -> None:
    routes = {
        "lower": "from /messages/* where $body.label = 'anomaly' and not $body.probability < 0.5 into $upstream",
        "select": "SELECT * FROM /messages/* WHERE $body.label = 'anomaly' INTO $upstream",
        "spaced": "\n  FROM   /messages/*\tWHERE($body.label='anomaly')INTO\n$upstream  ",
    }
    parsed = parse_routes(routes)
    assert [r.matches(message(ANOMALY)) for r in parsed] == [True, True, True]
    assert [r.matches(message(NORMAL)) for r in parsed] == [False, False, False]
    # Keywords inside a string are text.
    (quoted,) = parse_routes({"q": "FROM /messages/* WHERE $body.label = 'go INTO x WHERE y' INTO $upstream"})
    assert quoted.matches(message({"label": "go INTO x WHERE y"})) and quoted.sink == Upstream()


# --- WHERE on the body ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("$body.label = 'anomaly'", True),
        ("$body.label = 'normal'", False),
        ("$body.label != 'normal'", True),
        ("$body.label <> 'anomaly'", False),
        ('$body.label = "anomaly"', True),
        ("$body.label > 'anomalx'", True),  # ordinal string order
        ("$body.probability > 0.9", True),
        ("$body.probability >= 0.97", True),
        ("$body.probability < 0.97", False),
        ("$body.probability <= 0.97", True),
        ("$body.modelVersion = 1", True),
        ("$body.modelVersion = 1.0", True),
        ("$body.modelVersion = 0x1", True),
        ("$body.delta = -2.5", True),
        ("$body.delta < -2", True),
        ("$body.big = 1500", True),
        ("$body.big = 1.5E3", True),
        ("$body.machine.temperature > 80", True),
        ("$body.machine.unit.name = 'C'", True),
        ("$body.flags.alarm", True),
        ("$body.flags.muted", False),
        ("NOT $body.flags.muted", True),
        ("$body.flags.alarm = true", True),
        ("$body.flags.muted = false", True),
        ("$body.flags.muted != true", True),
        ("$body.nothing = null", True),
        ("$body.label != null", True),
        ("$body.quote = 'it\\'s'", True),
        ('$body.quote = "it\'s"', True),
        ("$body.accent = '\\u00e9'", True),
        ("$body.accent = '\\u00E9'", True),
        ("$BODY.label = 'anomaly'", True),
        ("'anomaly' = $body.label", True),
        ("0.5 < $body.probability", True),
        # different types are never equal, and are not an error
        ("$body.modelVersion = '1'", False),
        ("$body.modelVersion != '1'", True),
        ("$body.modelVersion < '2'", False),
        ("$body.flags.alarm = 1", False),
        ("$body.label = true", False),
        # objects and arrays do not compare
        ("$body.machine = null", False),
        ("$body.history != 1", False),
        # key case matters, as in JSON
        ("$body.Label = 'anomaly'", False),
    ],
)
def test_body_conditions(condition: str, expected: bool) -> None:
    assert where(condition).matches(message(RICH_BODY)) is expected


@pytest.mark.parametrize(
    ("body", "output", "routed"),
    [
        (ANOMALY, "amlOutput", True),
        ({**ANOMALY, "probability": 0.51, "timeCreated": "2026-01-01T00:00:00.0000000Z"}, "amlOutput", True),
        (NORMAL, "amlOutput", False),
        ({"model": "temperature-anomaly", "modelVersion": 1}, "amlOutput", False),
        (ANOMALY, "errorOutput", False),
        ({"code": "bad-input", "reason": "anomaly"}, "errorOutput", False),
    ],
)
def test_anomalies_only_route(body: dict[str, Any], output: str, routed: bool) -> None:
    parsed = parse_routes({"anomaliesOnly": ANOMALIES_ONLY})
    assert destinations(parsed, message(body, "inference", output)) == ([Upstream()] if routed else [])


# --- WHERE on properties --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("batchId = 'b-42'", True),
        ("batchId != 'b-42'", False),
        ("sequenceNumber = '10'", True),  # a string, as IoT Hub compares it
        ("sequenceNumber < '9'", True),  # ...so '10' < '9' as strings
        ("sequenceNumber > 9", True),  # a number literal compares numerically (local-edge extension)
        ("sequenceNumber = 10", True),
        ("sequenceNumber = 10.0", True),
        ("sequenceNumber <= -1", False),
        ("9 < sequenceNumber", True),
        ("batchId = 42", False),  # not a number: different types, not equal
        ("batchId != 42", True),
        ("batchId > 42", False),
        ("ratio > 0.25", True),
        ("flag = 'true'", True),
        ("flag = true", False),  # properties are strings; no boolean reading
        ("missing = 'x'", False),
        ("missing != 'x'", False),
        ("IS_DEFINED(batchId) AND NOT IS_DEFINED(missing)", True),
        ("IS_STRING(sequenceNumber)", True),
        ("IS_NUMBER(sequenceNumber)", False),
    ],
)
def test_application_property_conditions(condition: str, expected: bool) -> None:
    msg = message(ANOMALY, sequenceNumber="10", batchId="b-42", ratio="0.5", flag="true")
    assert where(condition).matches(msg) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("$contentType = 'application/json'", True),
        ("$contentEncoding = 'utf-8'", True),
        ("$messageId = 'm-1'", True),
        ("$correlationId = 'c-1'", True),
        ("$connectionModuleId = 'inference'", True),
        ("$outputName = 'amlOutput'", True),
        ("$connectionDeviceId = 'edge-1'", True),
        ("$outputName = 'errorOutput'", False),
        ("$messageId = 'm-2'", False),
    ],
)
def test_system_property_conditions(condition: str, expected: bool) -> None:
    msg = message(ANOMALY, **{"$.mid": "m-1", "$.cid": "c-1", "$.cdid": "edge-1", "$.on": "amlOutput"})
    assert where(condition).matches(msg) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "IS_DEFINED($messageId)",
        "IS_DEFINED($correlationId)",
        "IS_DEFINED($connectionDeviceId)",
        "IS_DEFINED($connectionModuleId)",
        "IS_DEFINED($outputName)",
        "IS_DEFINED($contentType)",
    ],
)
def test_absent_system_properties_are_undefined(condition: str) -> None:
    device_message = Message("", "", b"{}", {})
    assert where(condition).matches(device_message) is False
    assert where(f"NOT {condition}").matches(device_message) is True


# --- logic, undefined, functions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("true OR false AND false", True),  # AND binds tighter than OR
        ("(true OR false) AND false", False),
        ("false AND false OR true", True),
        ("NOT false AND false", False),  # NOT binds tighter than AND
        ("NOT (false AND false)", True),
        ("NOT true OR true", True),
        ("NOT NOT true", True),
        ("((($body.label = 'anomaly')))", True),
        ("$body.label = 'anomaly' AND ($body.probability < 0.5 OR $body.modelVersion = 1)", True),
        ("$body.label = 'anomaly' AND $body.probability < 0.5 OR $body.modelVersion = 2", False),
        ("($body.label = 'anomaly') = true", True),
    ],
)
def test_and_or_not_precedence_and_parentheses(condition: str, expected: bool) -> None:
    assert where(condition).matches(message(RICH_BODY)) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("$body.missing = 1", False),
        ("$body.missing != 1", False),  # undefined, not "not equal"
        ("NOT ($body.missing = 1)", False),  # NOT undefined is undefined
        ("$body.missing = 1 OR true", True),  # true OR undefined is true
        ("true OR $body.missing = 1", True),
        ("$body.missing = 1 AND false", False),  # false AND undefined is false
        ("$body.missing = 1 AND true", False),  # true AND undefined is undefined
        ("NOT ($body.missing = 1 AND true)", False),
        ("NOT ($body.missing = 1 AND false)", True),
        ("$body.missing = null", False),
        ("$body.machine.temperature.deeper = 1", False),  # a path through a number
        ("$body.missing", False),
        ("NOT $body.missing", False),
        ("$body.label", False),  # a string is not a condition
        ("NOT $body.label", False),
    ],
)
def test_undefined_operands(condition: str, expected: bool) -> None:
    assert where(condition).matches(message(RICH_BODY)) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("IS_DEFINED($body.label)", True),
        ("IS_DEFINED($body.nothing)", True),
        ("IS_DEFINED($body.machine)", True),
        ("IS_DEFINED($body.missing)", False),
        ("NOT IS_DEFINED($body.missing)", True),
        ("is_defined($body.label)", True),
        ("Is_Defined ( $body.label )", True),
        ("IS_STRING($body.label)", True),
        ("IS_STRING($body.modelVersion)", False),
        ("IS_NUMBER($body.probability)", True),
        ("IS_NUMBER($body.flags.alarm)", False),
        ("IS_NUMBER($body.label)", False),
        ("IS_BOOL($body.flags.muted)", True),
        ("IS_BOOL($body.modelVersion)", False),
        ("IS_NULL($body.nothing)", True),
        ("IS_NULL($body.missing)", False),
        ("IS_NULL($body.label)", False),
        ("IS_DEFINED($body.label) = true", True),
    ],
)
def test_type_functions(condition: str, expected: bool) -> None:
    assert where(condition).matches(message(RICH_BODY)) is expected


# --- the body is read only when it says it is JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "properties", "expected"),
    [
        (json.dumps(ANOMALY).encode(), JSON_PROPS, True),
        (json.dumps(ANOMALY).encode(), {"$.ct": "Application/JSON", "$.ce": "UTF-8"}, True),
        (json.dumps(ANOMALY).encode("utf-16"), {"$.ct": "application/json", "$.ce": "utf-16"}, True),
        (json.dumps(ANOMALY).encode(), {"$.ct": "text/plain", "$.ce": "utf-8"}, False),
        (json.dumps(ANOMALY).encode(), {"$.ce": "utf-8"}, False),
        (json.dumps(ANOMALY).encode(), {"$.ct": "application/json"}, False),
        (json.dumps(ANOMALY).encode(), {"$.ct": "application/json", "$.ce": "latin-1"}, False),
        (json.dumps(ANOMALY).encode(), {}, False),
        (b'{"label": "anomaly"', JSON_PROPS, False),  # not JSON
        (b"\xff\xfe{}", JSON_PROPS, False),  # not utf-8
        (b'[{"label": "anomaly"}]', JSON_PROPS, False),  # not an object
        (b'"anomaly"', JSON_PROPS, False),
    ],
)
def test_body_conditions_need_json_content_type_and_encoding(body: bytes, properties: dict[str, str], expected: bool) -> None:
    msg = Message("inference", "amlOutput", body, {**properties, "batchId": "b1"})
    assert where("$body.label = 'anomaly'").matches(msg) is expected
    assert where("IS_DEFINED($body.label)").matches(msg) is expected
    # Conditions on properties still work on such a message.
    assert where("batchId = 'b1'").matches(msg) is True


def test_body_is_parsed_once_per_message_however_many_routes_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting_loads(text: str) -> Any:
        calls.append(text)
        return json.loads(text)

    monkeypatch.setattr(routes_module, "json", SimpleNamespace(loads=counting_loads))
    parsed = parse_routes(
        {
            "a": "FROM /messages/* WHERE $body.label = 'anomaly' INTO $upstream",
            "b": 'FROM /messages/* WHERE $body.probability > 0.5 INTO BrokeredEndpoint("/modules/b/inputs/in")',
            "c": 'FROM /messages/* WHERE IS_DEFINED($body.model) INTO BrokeredEndpoint("/modules/c/inputs/in")',
        }
    )
    msg = message(ANOMALY)
    assert destinations(parsed, msg) == [Upstream(), ModuleInput("b", "in"), ModuleInput("c", "in")]
    assert all(route.matches(msg) for route in parsed)
    assert len(calls) == 1
    # A message whose routes never look at the body is never parsed.
    assert destinations(parse_routes({"all": "FROM /messages/* INTO $upstream"}), message(ANOMALY)) == [Upstream()]
    assert len(calls) == 1


# --- refusals -------------------------------------------------------------------------------------------------------

SUPPORTED_SOURCES = "/messages/*, /messages/modules/<m>/*, /messages/modules/<m>/outputs/* or /messages/modules/<m>/outputs/<o>"
SUPPORTED_SINKS = '$upstream or BrokeredEndpoint("/modules/<m>/inputs/<i>")'
SUPPORTED_FUNCTIONS = "supported are IS_BOOL, IS_DEFINED, IS_NULL, IS_NUMBER, IS_STRING"
SUPPORTED_PROPERTIES = (
    "supported are $body.<path>, $contentType, $contentEncoding, $messageId, $correlationId, $connectionDeviceId, "
    "$connectionModuleId, $outputName"
)


@pytest.mark.parametrize(
    "source",
    [
        "/twinChangeNotifications",
        "/messages/events",
        "/messages",
        "/messages/modules/*",
        "/messages/modules/inference",
        "/messages/modules/inference/outputs",
        "/messages/modules/inference/outputs/",
        "/messages/modules/inference/inputs/amlInput",
        "/messages/modules/bad.name/*",
    ],
)
def test_unsupported_sources_are_refused(source: str) -> None:
    assert problems({"r1": f"FROM {source} INTO $upstream"}) == [
        f"route 'r1': unsupported source {source!r} at col 6: use {SUPPORTED_SOURCES}"
    ]


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ("$downstream", f"unsupported sink '$downstream' at col 23: use {SUPPORTED_SINKS}"),
        ('Endpoint("/modules/a/inputs/b")', f"unsupported sink Endpoint(...) at col 23: use {SUPPORTED_SINKS}"),
        (
            'BrokeredEndpoint("/modules/a/outputs/b")',
            "bad BrokeredEndpoint address '/modules/a/outputs/b' at col 40: use \"/modules/<m>/inputs/<i>\"",
        ),
        (
            'BrokeredEndpoint("/modules/a/inputs")',
            "bad BrokeredEndpoint address '/modules/a/inputs' at col 40: use \"/modules/<m>/inputs/<i>\"",
        ),
        (
            'BrokeredEndpoint("/modules/a/inputs/b/c")',
            "bad BrokeredEndpoint address '/modules/a/inputs/b/c' at col 40: use \"/modules/<m>/inputs/<i>\"",
        ),
        ("upstream", f"expected a sink ({SUPPORTED_SINKS}) after INTO at col 23, got 'upstream'"),
        ("", f"expected a sink ({SUPPORTED_SINKS}) after INTO at col 23, got end of route"),
        (
            "BrokeredEndpoint(/modules/a/inputs/b)",
            'expected a quoted address like "/modules/<m>/inputs/<i>" in BrokeredEndpoint(...) at col 40, '
            "got '/modules/a/inputs/b)'",
        ),
        ('BrokeredEndpoint("/modules/a/inputs/b"', "expected ')' to close BrokeredEndpoint( at col 61, got end of route"),
        ("$upstream $upstream", "expected the end of the route after the sink at col 33, got '$upstream'"),
    ],
)
def test_unsupported_sinks_are_refused(sink: str, problem: str) -> None:
    assert problems({"r1": f"FROM /messages/* INTO {sink}"}) == [f"route 'r1': {problem}"]


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("FOO($body.a)", f"unsupported function FOO at col 24: {SUPPORTED_FUNCTIONS}"),
        ("IS_OBJECT($body.a)", f"unsupported function IS_OBJECT at col 24: {SUPPORTED_FUNCTIONS}"),
        (
            "lower($body.a) = 'x'",
            "unsupported function lower at col 24: edgeHub has it but the local edge does not evaluate it; "
            + SUPPORTED_FUNCTIONS,
        ),
        ("IS_DEFINED($body.a, 1)", "expected ')' after the one argument of IS_DEFINED at col 42, got ','"),
        ("IS_DEFINED()", "expected an argument for IS_DEFINED at col 35, got ')'"),
        ("$foo = 1", f"unknown system property $foo at col 24: {SUPPORTED_PROPERTIES}"),
        ("$body = 1", "$body at col 24: $body needs a dotted path like $body.label"),
        ("$body.a..b = 1", "$body.a..b at col 24: $body needs a dotted path like $body.label"),
        ("$body.a[0] = 1", "$body.a[0] at col 24: the local edge does not support array indexing in $body"),
        ("'anomaly'", "the literal 'anomaly' at col 24 is not a condition: compare it with something"),
        ("$body.a = 1 AND 7", "the literal 7 at col 40 is not a condition: compare it with something"),
        ("$body.a = 1 AND", "expected a comparison after AND at col 40, got 'INTO'"),
        ("$body.a = 1 OR", "expected a comparison after OR at col 39, got 'INTO'"),
        ("NOT", "expected a comparison after NOT at col 28, got 'INTO'"),
        ("", "expected a comparison after WHERE at col 25, got 'INTO'"),
        ("$body.a =", "expected a value after '=' at col 34, got 'INTO'"),
        ("$body.a = 1 2", "expected AND, OR or INTO at col 36, got '2'"),
        ("$body.a = 1 = 2", "expected AND, OR or INTO at col 36, got '='"),
        ("($body.a = 1", "expected ')' matching the '(' of col 24 at col 37, got 'INTO'"),
        ("$body.a = 1)", "expected AND, OR or INTO at col 35, got ')'"),
        ("$body.a == 1", "expected a value after '=' at col 33, got '='"),
        ("$body.a - 1 = 0", "unexpected character '-' at col 32"),
        ("$body.a = 'abc", "unterminated string starting at col 34"),
        ("$body.a = 'a\\nb'", "bad escape in the string at col 34: use \\', \\\", \\\\ or \\uXXXX"),
        ("$body.a = 'it''s'", "expected AND, OR or INTO at col 38, got \"'s'\" (a quote inside a string is written \\', not '')"),
    ],
)
def test_bad_conditions_are_refused_with_the_place(condition: str, problem: str) -> None:
    text = f"FROM /messages/* WHERE {condition} INTO $upstream"
    assert problems({"r2": text}) == [f"route 'r2': {problem}"]


def test_uppercase_true_is_a_property_name_as_on_edgehub() -> None:
    # edgeHub's lexer knows only lowercase true/false/null: TRUE is an application property, here undefined.
    assert where("$body.flags.alarm = TRUE").matches(message(RICH_BODY)) is False
    assert where("$body.flags.alarm = TRUE").matches(message(RICH_BODY, TRUE="x")) is False


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("INTO $upstream", "expected the route to start with FROM at col 1, got 'INTO'"),
        ("", "expected the route to start with FROM at col 1, got end of route"),
        ("FROM INTO $upstream", "expected a source like /messages/* after FROM at col 6, got 'INTO'"),
        ("FROM /messages/* $upstream", "expected WHERE or INTO after the source at col 18, got '$upstream'"),
        ("FROM /messages/* WHERE true", "expected AND, OR or INTO at col 28, got end of route"),
        ("SELECT FROM /messages/* INTO $upstream", "expected * after SELECT at col 8, got 'FROM'"),
        ("FROM /messages/* INTO $upstream # note", "unexpected character '#' at col 33"),
    ],
)
def test_malformed_routes_are_refused(text: str, problem: str) -> None:
    assert problems({"r3": text}) == [f"route 'r3': {problem}"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            {"route": "FROM /messages/* INTO $upstream", "priority": 10},
            "priority must be an integer from 0 (highest) to 9, not 10",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "priority": -1},
            "priority must be an integer from 0 (highest) to 9, not -1",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "priority": "1"},
            "priority must be an integer from 0 (highest) to 9, not '1'",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "priority": True},
            "priority must be an integer from 0 (highest) to 9, not True",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "timeToLiveSecs": -5},
            "timeToLiveSecs must be a whole number of seconds >= 0, not -5",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "timeToLiveSec": 5},
            "unknown key(s) 'timeToLiveSec': the object form has route, priority, timeToLiveSecs",
        ),
        ({"priority": 1}, 'the object form needs "route": "FROM ... INTO ..."'),
        ({"route": 5}, 'the object form needs "route": "FROM ... INTO ..."'),
        (
            ["FROM /messages/* INTO $upstream"],
            'expected "FROM ... INTO ..." or {"route": ..., "priority": 0-9, "timeToLiveSecs": n}',
        ),
        (None, 'expected "FROM ... INTO ..." or {"route": ..., "priority": 0-9, "timeToLiveSecs": n}'),
    ],
)
def test_bad_route_values_are_refused(value: Any, problem: str) -> None:
    assert problems({"r4": value}) == [f"route 'r4': {problem}"]


@pytest.mark.parametrize("name", ["bad.name", "$route", "a#b", "two words"])
def test_bad_route_names_are_refused(name: str) -> None:
    assert problems({name: "FROM /messages/* INTO $upstream"}) == [f"route name {name!r} may not contain '.', '$', '#' or spaces"]


def test_routes_must_be_an_object() -> None:
    assert problems(["FROM /messages/* INTO $upstream"]) == ["routes must be an object of name: route, not list"]


def test_all_problems_of_all_routes_are_reported_together() -> None:
    routes = {
        "good": "FROM /messages/* INTO $upstream",
        "badSource": "FROM /twinChangeNotifications INTO $upstream",
        "twoProblems": "FROM /messages/events WHERE FOO($body.a) AND $bogus = 1 INTO $nowhere",
        "syntax": "FROM /messages/* WHERE $body.a = 1 AND INTO $upstream",
        "badPriority": {"route": "FROM /messages/* INTO $upstream", "priority": 12},
        "alsoGood": ANOMALIES_ONLY,
    }
    with pytest.raises(RouteError) as info:
        parse_routes(routes)
    assert info.value.problems == [
        f"route 'badSource': unsupported source '/twinChangeNotifications' at col 6: use {SUPPORTED_SOURCES}",
        f"route 'twoProblems': unsupported source '/messages/events' at col 6: use {SUPPORTED_SOURCES}",
        f"route 'twoProblems': unsupported function FOO at col 29: {SUPPORTED_FUNCTIONS}",
        f"route 'twoProblems': unknown system property $bogus at col 46: {SUPPORTED_PROPERTIES}",
        f"route 'twoProblems': unsupported sink '$nowhere' at col 62: use {SUPPORTED_SINKS}",
        "route 'syntax': expected a comparison after AND at col 40, got 'INTO'",
        "route 'badPriority': priority must be an integer from 0 (highest) to 9, not 12",
    ]
    assert str(info.value).startswith("7 problem(s) in the routes:\n- route 'badSource': ")
    # The columns point at the offending text.
    assert routes["twoProblems"][28:31] == "FOO" and routes["syntax"][39:43] == "INTO"


def test_no_routes_route_nothing() -> None:
    assert parse_routes({}) == []
    assert destinations([], message()) == []
    assert referenced_modules([]) == set()
