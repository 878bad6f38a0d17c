"""edgeHub routes (edgekit.routes): parsing, WHERE conditions, the module names, and every refusal.

Expectations follow edgeHub's source (Azure/iotedge edge-hub/core, Routing.Core); its own unit tests run as
data in test_edgehub_route_cases.py. Where a case below looks surprising, the comment names the edgeHub code."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edgekit.routes import (
    DEFAULT_PRIORITY,
    UNDEFINED,
    Message,
    ModuleInput,
    Route,
    RouteError,
    Upstream,
    compile_condition,
    deployed_module,
    destinations,
    module_problems,
    parse_routes,
    referenced_modules,
)
from edgekit.routes import _body as body_module

REPO = Path(__file__).resolve().parents[2]
JSON_PROPS = {"$.ct": "application/json", "$.ce": "utf-8"}
SENSOR_BODY = (
    b'{"machine":{"temperature":87.25,"pressure":8.6},"ambient":{"temperature":21.4,"humidity":25},'
    b'"timeCreated":"2026-01-01T00:00:00.0000000Z"}'
)
ANOMALY = {"label": "anomaly", "probability": 0.97, "model": "temperature-anomaly", "modelVersion": 1}
NORMAL = {"label": "normal", "probability": 0.88, "model": "temperature-anomaly", "modelVersion": 1}
OUTPUT_SOURCE = "/messages/modules/inference/outputs/amlOutput"
ANOMALIES_ONLY = f"FROM {OUTPUT_SOURCE} WHERE $body.label = 'anomaly' INTO $upstream"
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
    "created": "2026-01-01T00:00:00.0000000Z",
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
        # edgeHub matches sources with StartsWith(..., OrdinalIgnoreCase) (BaseMessageSource.Match): any case
        ("/messages/modules/inference/outputs/amlOutput", ("inference", "amloutput"), True),
        ("/messages/modules/inference/outputs/amlOutput", ("inference", "errorOutput"), False),
        ("/messages/modules/inference/outputs/amlOutput", ("Inference", "amlOutput"), True),
        ("/messages/modules/turboFanRouter/outputs/hubOutput", ("turbofanRouter", "hubOutput"), True),
        ("/MESSAGES/MODULES/INFERENCE/*", ("inference", "amlOutput"), True),
        # edgeHub trims a trailing * and /, then matches the prefix: these forms are accepted too
        ("/messages", ("", ""), True),
        ("/messages", ("inference", "amlOutput"), True),
        ("/*", ("inference", ""), True),
        ("/messages/modules/*", ("inference", "amlOutput"), True),
        ("/messages/modules/*", ("", ""), False),
        ("/messages/modules/inference", ("inference", ""), True),
        ("/messages/modules/inference", ("inferences", "amlOutput"), False),
        ("/messages/modules/inference/outputs", ("inference", "amlOutput"), True),
        ("/messages/modules/inference/outputs", ("inference", ""), False),
        ("/messages/modules/inference/inputs/amlInput", ("inference", "amlOutput"), False),
        ("/twinChangeNotifications", ("inference", "amlOutput"), False),
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
        ('BROKEREDENDPOINT(" modules/TurbofanRouter/inputs/x ")', ModuleInput("TurbofanRouter", "x")),
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
        "lower": "from /messages/* where $body.label = 'anomaly' and not ($body.probability < 0.5) into $upstream",
        "select": "SELECT * FROM /messages/* WHERE $body.label = 'anomaly' INTO $upstream",
        "spaced": "\n  FROM   /messages/*\tWHERE($body.label='anomaly')INTO\n$upstream  ",
    }
    parsed = parse_routes(routes)
    assert [r.matches(message(ANOMALY)) for r in parsed] == [True, True, True]
    assert [r.matches(message(NORMAL)) for r in parsed] == [False, False, False]
    # Keywords inside a string are text.
    (quoted,) = parse_routes({"q": "FROM /messages/* WHERE $body.label = 'go INTO x WHERE y' INTO $upstream"})
    assert quoted.matches(message({"label": "go INTO x WHERE y"})) and quoted.sink == Upstream()
    # /* comments */ are skipped, as edgeHub's lexer does...
    (commented,) = parse_routes({"c": f"FROM {OUTPUT_SOURCE} WHERE /* the anomalies */ $body.label = 'anomaly' INTO $upstream"})
    assert commented.matches(message(ANOMALY)) and not commented.matches(message(NORMAL))
    # ...so a source ending in /* starts a comment when a */ follows: edgeHub reads `FROM /messages $body.label`
    assert problems({"c": "FROM /messages/* WHERE /* the anomalies */ $body.label = 'anomaly' INTO $upstream"}) == [
        "route 'c': expected WHERE or INTO after the source at col 44, got '$body.label'"
    ]


def test_not_binds_tighter_than_a_comparison() -> None:
    # Condition.g4 lists NOT before the comparisons, and ANTLR4 gives the earlier alternative the higher
    # precedence: `NOT a < b` is `(NOT a) < b`, a bool compared with a number, which edgeHub does not compile.
    assert problems({"r": "FROM /messages/* WHERE NOT $body.probability < 0.5 INTO $upstream"}) == [
        "route 'r': Invalid operands to binary operator '<': have 'bool' and 'number', expected 'bool' and 'bool' at col 46"
    ]
    assert where("NOT ($body.probability < 0.5)").matches(message(RICH_BODY))
    # ...and a bool compared with a bool compiles, to something else than it reads
    assert where("NOT $body.flags.muted = true").matches(message(RICH_BODY))  # (NOT false) = true


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
        # different kinds order by edgeHub's QueryValueType (bool < number < string < null): QueryValue.Compare
        ("$body.modelVersion < '2'", True),
        ("$body.modelVersion > '2'", False),
        ("$body.label > 5", True),
        ("$body.flags.alarm = 1", False),
        ("$body.label = true", False),
        # objects and arrays do not compare
        ("$body.machine = null", False),
        ("$body.history != 1", False),
        # arrays are indexed ($body.a[0], as edgeHub's JsonPath.g4); an index past the end reads as null
        ("$body.history[0] = 1", True),
        ("$body.history[2] >= 3", True),
        ("$body.history[7] = null", True),
        # Newtonsoft parses an ISO 8601 string as a date, which edgeHub's QueryValue cannot hold: undefined
        ("$body.created = '2026-01-01T00:00:00.0000000Z'", False),
        ("$body.created != 'x'", False),
        # arithmetic (spaces around the operator: `$body.big-1` would be one name)
        ("$body.big - 500 = 1000", True),
        ("$body.probability * 100 > 90", True),
        ("$body.machine.temperature / 0 > 1e300", True),
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
        ("BATCHID = 'b-42'", True),  # names in any case: edgeHub's property dictionary is OrdinalIgnoreCase
        ("sequenceNumber = '10'", True),  # a string, as IoT Hub compares it
        ("sequenceNumber < '9'", True),  # ...so '10' < '9' as strings
        ("as_number(sequenceNumber) > 9", True),  # as a number: AS_NUMBER
        ("as_number(sequenceNumber) = 10", True),
        ("as_number(sequenceNumber) = 10.0", True),
        ("as_number(sequenceNumber) <= -1", False),
        ("9 < as_number(sequenceNumber)", True),
        ("as_number(batchId) = 42", False),  # not a number: undefined
        ("as_number(batchId) != 42", False),
        ("as_number(ratio) > 0.25", True),
        ("flag = 'true'", True),
        ("missing = 'x'", False),
        ("missing != 'x'", False),
        ("IS_DEFINED(batchId) AND NOT IS_DEFINED(missing)", True),
        ("IS_STRING(sequenceNumber)", True),
        ("IS_NUMBER(sequenceNumber)", False),
        ("IS_NUMBER(as_number(sequenceNumber))", True),
        ("starts_with(batchId, 'b-') AND length(batchId) = 4", True),
        ("batchId || '!' = 'b-42!'", True),
    ],
)
def test_application_property_conditions(condition: str, expected: bool) -> None:
    msg = message(ANOMALY, sequenceNumber="10", batchId="b-42", ratio="0.5", flag="true")
    assert where(condition).matches(msg) is expected


@pytest.mark.parametrize(
    ("condition", "types"),
    [
        ("sequenceNumber > 9", "'>': have 'string' and 'number', expected 'string' and 'string'"),
        ("9 < sequenceNumber", "'<': have 'number' and 'string', expected 'number' and 'number'"),
        ("sequenceNumber = 10", "'=': have 'string' and 'number', expected 'string' and 'string'"),
        ("batchId != 42", "'!=': have 'string' and 'number', expected 'string' and 'string'"),
        ("flag = true", "'=': have 'string' and 'bool', expected 'string' and 'string'"),
    ],
)
def test_a_property_is_a_string_and_compares_only_with_strings(condition: str, types: str) -> None:
    # edgeHub types application and system properties as strings and refuses mixed operands (ConditionVisitor
    # CheckOperands; ConditionCompilerTest's `is_defined(3 = none)`, ErrorListenerTest's `3 + '4' = 7`).
    (problem,) = problems({"r": f"FROM /messages/* WHERE {condition} INTO $upstream"})
    assert problem.startswith(f"route 'r': Invalid operands to binary operator {types}")


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("$contentType = 'application/json'", True),
        ("$contentEncoding = 'utf-8'", True),
        ("$messageId = 'm-1'", True),
        # edgeHub keeps the correlation id ($.cid) as system property `cid` (Edge.Hub.Core SystemProperties
        # IncomingSystemPropertiesMap), so `$correlationId` reads nothing
        ("$cid = 'c-1'", True),
        ("$correlationId = 'c-1'", False),
        ("$CONTENTTYPE = 'application/json'", True),
        ("{$contentType} = 'application/json'", True),
        ("$edgeHubOriginInterface = 'internal'", True),
        ("IS_DEFINED($edgeMessageId)", True),
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
        ("missing = 'x'", False),
        ("missing != 'x'", False),  # undefined, not "not equal"
        ("NOT (missing = 'x')", False),  # NOT undefined is undefined
        ("missing = 'x' OR true", True),  # true OR undefined is true
        ("true OR missing = 'x'", True),
        ("missing = 'x' AND false", False),  # false AND undefined is false
        ("missing = 'x' AND true", False),  # true AND undefined is undefined
        ("NOT (missing = 'x' AND true)", False),
        ("NOT (missing = 'x' AND false)", True),
        ("$body.machine = 1", False),  # an object is undefined
        ("$body.machine != 1", False),
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
        # A $body path that matches nothing is null on edgeHub, not undefined (JsonMessageQueryValueProvider
        # returns QueryValue.Null; edgeHub's BodyQuery_Null and BodyQuery_Bool tests)
        ("$body.missing = null", True),
        ("$body.missing = 1", False),
        ("$body.missing != 1", True),
        ("NOT ($body.missing = 1)", True),
        ("$body.machine.temperature.deeper = null", True),  # a path through a number
        ("IS_DEFINED($body.missing)", True),
    ],
)
def test_a_missing_body_field_is_null(condition: str, expected: bool) -> None:
    assert where(condition).matches(message(RICH_BODY)) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("IS_DEFINED($body.label)", True),
        ("IS_DEFINED($body.nothing)", True),
        # an object or array is undefined (BodyQuery.Runtime); a missing field is null, so defined
        ("IS_DEFINED($body.machine)", False),
        ("IS_DEFINED($body.history)", False),
        ("IS_DEFINED($body.missing)", True),
        ("NOT IS_DEFINED($body.missing)", False),
        ("IS_DEFINED($body.created)", False),  # a date string
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
        # edgeHub's IsNull on a $body value is `input != QueryValue.Null` (the missing-field null): true for
        # every defined value but a missing field
        ("IS_NULL($body.missing)", False),
        ("IS_NULL($body.label)", True),
        ("IS_NULL(null)", True),
        ("IS_NULL(batchId)", False),
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
        # utf-16 and utf-32 are .NET's Encoding.Unicode and UTF32: little endian, a byte order mark not skipped
        (json.dumps(ANOMALY).encode("utf-16-le"), {"$.ct": "application/json", "$.ce": "utf-16"}, True),
        (json.dumps(ANOMALY).encode("utf-32-le"), {"$.ct": "application/json", "$.ce": "UTF-32"}, True),
        (json.dumps(ANOMALY).encode("utf-16"), {"$.ct": "application/json", "$.ce": "utf-16"}, False),
        (json.dumps(ANOMALY).encode("utf-16-be"), {"$.ct": "application/json", "$.ce": "utf-16"}, False),
        (json.dumps(ANOMALY).encode(), {"$.ct": "application/json; charset=utf-8", "$.ce": "utf-8"}, False),
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

    monkeypatch.setattr(body_module, "json", SimpleNamespace(loads=counting_loads))
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

SUPPORTED_SINKS = '$upstream or BrokeredEndpoint("/modules/<m>/inputs/<i>")'
MATCHES_NOTHING = (
    "the source {} matches no message edgeHub routes (sources: /messages/*, /messages/modules/<m>/*, "
    "/messages/modules/<m>/outputs/<o> or /twinChangeNotifications)"
)


@pytest.mark.parametrize(
    ("source", "warnings"),
    [
        ("/messages", []),
        ("/messages/modules/*", []),
        ("/messages/modules/inference", []),
        ("/messages/modules/inference/outputs", []),
        ("/messages/modules/bad.name/*", []),
        ("/ messages / modules / * ", []),  # edgeHub runs the path's tokens together
        ("/messages/events", [MATCHES_NOTHING.format("/messages/events")]),
        ("/messages/modules/inference/inputs/amlInput", [MATCHES_NOTHING.format("/messages/modules/inference/inputs/amlInput")]),
    ],
)
def test_every_source_edgehub_parses_is_accepted(source: str, warnings: list[str]) -> None:
    # edgeHub's Route.g4 takes any path of names and *, and CustomMessageSource matches its prefix.
    (route,) = parse_routes({"r1": f"FROM {source} INTO $upstream"})
    assert list(route.warnings) == warnings and route.unevaluated is None


def test_a_twin_change_route_is_accepted_and_marked_as_not_exercised_locally() -> None:
    (route,) = parse_routes({"twin": "FROM /twinChangeNotifications INTO $upstream"})
    assert route.unevaluated == (
        "it reads twin change notifications (/twinChangeNotifications), which the local edge does not produce"
    )
    assert not route.matches(message(ANOMALY))
    assert route.matches(Message("", "", b"{}", {}, twin_change=True))


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "/messages/modules/inference/outputs/",
            "expected a name or * after '/messages/modules/inference/outputs/' in the source at col 43, got 'INTO'",
        ),
        ("/", "expected a name or * after '/' in the source at col 8, got 'INTO'"),
        ("messages/*", "expected a source like /messages/* after FROM at col 6, got 'messages'"),
        # a keyword, a number or a $name is no name
        ("/messages/modules/into/*", "expected a name or * after '/messages/modules/' in the source at col 24, got 'into'"),
        ("/messages/modules/42/*", "expected a name or * after '/messages/modules/' in the source at col 24, got '42'"),
        (
            "/messages/modules/$edgeHub/*",
            "expected a name or * after '/messages/modules/' in the source at col 24, got '$edgeHub'",
        ),
    ],
)
def test_sources_edgehub_cannot_parse_are_refused(source: str, problem: str) -> None:
    assert problems({"r1": f"FROM {source} INTO $upstream"}) == [f"route 'r1': {problem}"]


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ("$downstream", f"System endpoint type '$downstream' not supported at col 23: use {SUPPORTED_SINKS}"),
        ('Endpoint("/modules/a/inputs/b")', f"Function endpoint type 'Endpoint' not supported at col 23: use {SUPPORTED_SINKS}"),
        (
            'BrokeredEndpoint("/modules/a/inputs")',
            "Parameter string modules/a/inputs could not be parsed at col 40. "
            "Expect input in this format - /modules/{mid}/inputs/{input}",
        ),
        (
            'BrokeredEndpoint("/modules/a/inputs/b/c")',
            "Parameter string modules/a/inputs/b/c could not be parsed at col 40. "
            "Expect input in this format - /modules/{mid}/inputs/{input}",
        ),
        ('BrokeredEndpoint("/modules/a/inputs/ /")', "BrokeredEndpoint's input name is empty at col 40"),
        ('BrokeredEndpoint(" ")', 'BrokeredEndpoint\'s address is empty at col 40: use "/modules/<m>/inputs/<i>"'),
        ("upstream", f"expected a sink ({SUPPORTED_SINKS}) after INTO at col 23, got 'upstream'"),
        ("", f"expected a sink ({SUPPORTED_SINKS}) after INTO at col 23, got end of route"),
        (
            "BrokeredEndpoint(/modules/a/inputs/b)",
            "expected a quoted address like \"/modules/<m>/inputs/<i>\" in BrokeredEndpoint(...) at col 40, got '/'",
        ),
        ('BrokeredEndpoint("/modules/a/inputs/b"', "expected ')' to close BrokeredEndpoint( at col 61, got end of route"),
    ],
)
def test_unsupported_sinks_are_refused(sink: str, problem: str) -> None:
    assert problems({"r1": f"FROM /messages/* INTO {sink}"}) == [f"route 'r1': {problem}"]


def test_what_edgehub_accepts_but_probably_is_not_meant_is_a_warning() -> None:
    routes = parse_routes(
        {
            # EndpointFactory reads only the 2nd and 4th parts of the address
            "outputs": 'FROM /messages/* INTO BrokeredEndpoint("/modules/a/outputs/b")',
            # Route.g4's route rule has no EOF: edgeHub never reads what follows the sink
            "twice": "FROM /messages/* INTO $upstream $upstream",
            "afterwards": "FROM /messages/* INTO $upstream WHERE $body.label = 'anomaly'",
            "comment": "FROM /messages/* INTO $upstream # note",
            # a condition that is not a bool never routes (ConditionCompilerTest: "'a string'" is undefined)
            "literal": "FROM /messages/* WHERE 'anomaly' INTO $upstream",
        }
    )
    assert [(r.name, r.sink, list(r.warnings)) for r in routes] == [
        (
            "outputs",
            ModuleInput("a", "b"),
            [
                "edgeHub reads only the module and input of '/modules/a/outputs/b': it sends to "
                'BrokeredEndpoint("/modules/a/inputs/b")'
            ],
        ),
        ("twice", Upstream(), ["edgeHub ignores the text after the sink: '$upstream'"]),
        ("afterwards", Upstream(), ["edgeHub ignores the text after the sink: \"WHERE $body.label = 'anomaly'\""]),
        ("comment", Upstream(), ["edgeHub ignores the text after the sink: '# note'"]),
        ("literal", Upstream(), ["the condition is a string, never true: this route sends nothing"]),
    ]
    assert destinations(routes, message(NORMAL)) == [ModuleInput("a", "b"), Upstream()]


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("FOO($body.a)", "Invalid built-in function 'FOO' at col 24"),
        ("IS_OBJECT($body.a)", "Invalid built-in function 'IS_OBJECT' at col 24"),
        ("IS_DEFINED($body.a, 1)", "Invalid arguments to built-in function 'IS_DEFINED': IS_DEFINED(unknown, number) at col 24"),
        ("IS_DEFINED()", "Invalid arguments to built-in function 'IS_DEFINED': IS_DEFINED() at col 24"),
        ("ABS(batchId) > 1", "Invalid arguments to built-in function 'ABS': ABS(string) at col 24"),
        # twin_change_includes: edgeHub accepts it only for a twin-change source object, never a manifest route's
        ("twin_change_includes(properties.reported.x)", "Invalid built-in function 'twin_change_includes' at col 24"),
        (
            "$foo = 1",
            "Invalid operands to binary operator '=': have 'string' and 'number', expected 'string' and 'string' "
            "(properties are strings: write as_number(name) to compare or compute with a number) at col 29",
        ),
        (
            "$body = 1",  # `$body` alone is the system property `body`, a string
            "Invalid operands to binary operator '=': have 'string' and 'number', expected 'string' and 'string' "
            "(properties are strings: write as_number(name) to compare or compute with a number) at col 30",
        ),
        (
            "$body.a..b = 1",
            "Invalid arguments to built-in function '$body.a..b': $body.a..b(string). "
            "Error: Error in $body query. expected a name at '.' in 'a..b' at col 24",
        ),
        (
            "$body. = 1",
            "Invalid arguments to built-in function '$body.': $body.(string). Error: $body query cannot be empty at col 24",
        ),
        (
            "$body.a = 1 AND 7",
            "Invalid operands to binary operator 'AND': have 'bool' and 'number', expected 'bool' and 'bool' at col 36",
        ),
        (
            "$body.a = 1 = 2",
            "Invalid operands to binary operator '=': have 'bool' and 'number', expected 'bool' and 'bool' at col 36",
        ),
        ("NOT batchId", "Invalid operands to unary operator 'NOT': have 'string', expected 'bool' at col 24"),
        ("$body.a % 2 = 1", "edgeHub cannot compile '%' on a $body value (QueryValue has no '%' operator) at col 32"),
        ("- $body.a = 1", "edgeHub cannot compile unary '-' on a $body value (QueryValue has no unary minus) at col 24"),
        (
            "true AND $body.a",
            "Invalid operands to binary operator 'AND': have 'bool' and 'unknown', expected 'bool' and 'bool' at col 29",
        ),
        ("$body.a = 1 AND", "expected a comparison after AND at col 40, got 'INTO'"),
        ("$body.a = 1 OR", "expected a comparison after OR at col 39, got 'INTO'"),
        ("NOT", "expected a comparison after NOT at col 28, got 'INTO'"),
        ("", "expected a comparison after WHERE at col 25, got 'INTO'"),
        ("$body.a =", "expected a value after '=' at col 34, got 'INTO'"),
        ("$body.a = 1 2", "expected AND, OR or INTO at col 36, got '2'"),
        ("($body.a = 1", "Syntax error: missing closing ')' for the '(' at col 24 (got 'INTO' at col 37)"),
        ("$body.a = 1)", "Syntax error: unmatched closing ')' at col 35"),
        ("$body.a == 1", "expected a value after '=' at col 33, got '='"),
        ("$body.a = 'abc", "Syntax error: unterminated string starting at col 34"),
        ("$body.a = 'a\\nb'", "Syntax error: unterminated string starting at col 34"),
        ("$body.a = @", "Syntax error: invalid symbol '@' at col 34"),
        ("a = [1]", "expected a value after '=' at col 28, got '[1]' ('[' and ']' belong in $body paths only)"),
    ],
)
def test_bad_conditions_are_refused_with_the_place(condition: str, problem: str) -> None:
    text = f"FROM /messages/* WHERE {condition} INTO $upstream"
    assert problems({"r2": text}) == [f"route 'r2': {problem}"]


@pytest.mark.parametrize(
    ("condition", "msg", "expected"),
    [
        # edgeHub's lexer: a name runs over every character but ( ) < > @ , ; : \ " / [ ] ? = { } and spaces
        ("x-1 = 'a'", {"x-1": "a"}, True),  # a property named x-1, not x minus 1
        ("$body.big-1 = 'a'", {"$body.big-1": "a"}, True),  # likewise
        ("'it''s' = 'a'", {"'it''s'": "a"}, True),  # not SQL's quote escape: one name
        ("a!='b'", {"a!": "x"}, False),  # `a!` = 'b'
        ("lower($body.label) = 'anomaly'", {}, True),
        ("$body.history[1] = 2", {}, True),
        ("$body.big - 1 = 1499", {}, True),
    ],
)
def test_conditions_edgehub_accepts(condition: str, msg: dict[str, str], expected: bool) -> None:
    assert where(condition).matches(message(RICH_BODY, **msg)) is expected


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
        ("FORM /messages/* INTO $upstream", "expected the route to start with FROM at col 1, got 'FORM'"),
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
        "twin": "FROM /twinChangeNotifications INTO $upstream",
        "threeProblems": "FROM /messages/events WHERE FOO($body.a) AND $bogus = 1 INTO $nowhere",
        "syntax": "FROM /messages/* WHERE $body.a = 1 AND INTO $upstream",
        "badPriority": {"route": "FROM /messages/* INTO $upstream", "priority": 12},
        "alsoGood": ANOMALIES_ONLY,
    }
    with pytest.raises(RouteError) as info:
        parse_routes(routes)
    assert info.value.problems == [
        "route 'threeProblems': Invalid built-in function 'FOO' at col 29",
        "route 'threeProblems': Invalid operands to binary operator '=': have 'string' and 'number', expected 'string' "
        "and 'string' (properties are strings: write as_number(name) to compare or compute with a number) at col 53",
        f"route 'threeProblems': System endpoint type '$nowhere' not supported at col 62: use {SUPPORTED_SINKS}",
        "route 'syntax': expected a comparison after AND at col 40, got 'INTO'",
        "route 'badPriority': priority must be an integer from 0 (highest) to 9, not 12",
    ]
    assert str(info.value).startswith("5 problem(s) in the routes:\n- route 'threeProblems': ")
    # The columns point at the offending text.
    assert routes["threeProblems"][28:31] == "FOO" and routes["syntax"][39:43] == "INTO"


def test_no_routes_route_nothing() -> None:
    assert parse_routes({}) == []
    assert destinations([], message()) == []
    assert referenced_modules([]) == set()


# --- module names: a source matches them in any case, a sink only exactly ------------------------------------------


def test_deployed_module_compares_names_as_edgehub() -> None:
    deployed = ["tempSensor", "turbofanRouter"]
    # sources: BaseMessageSource.Match is StartsWith(..., OrdinalIgnoreCase)
    assert deployed_module("turboFanRouter", deployed, "source") == "turbofanRouter"
    assert deployed_module("TEMPSENSOR", deployed, "source") == "tempSensor"
    # sinks: ModuleEndpoint finds the module's connection by its exact id (ConnectionManager's dictionary)
    assert deployed_module("turboFanRouter", deployed, "sink") is None
    assert deployed_module("turboFanRouter", deployed) is None
    assert deployed_module("turbofanRouter", deployed) == "turbofanRouter"
    assert deployed_module("ghost", deployed, "source") is None


def test_module_problems_name_what_edgehub_would_not_reach() -> None:
    routes = parse_routes(
        {
            "fromOtherCase": "FROM /messages/modules/turboFanRouter/outputs/hubOutput INTO $upstream",
            "toOtherCase": 'FROM /messages/* INTO BrokeredEndpoint("/modules/TurbofanRouter/inputs/in")',
            "fromGhost": 'FROM /messages/modules/ghost/* INTO BrokeredEndpoint("/modules/nobody/inputs/in")',
            "everyModule": "FROM /messages/modules/* INTO $upstream",
        }
    )
    deployed = ["turbofanRouter"]
    assert [module_problems(route, deployed) for route in routes] == [
        [],
        [
            "route 'toOtherCase' sends to module 'TurbofanRouter', which is not deployed "
            "(edgeHub delivers to a module under its exact name: write 'turbofanRouter')"
        ],
        [
            "route 'fromGhost' reads from module 'ghost', which is not deployed",
            "route 'fromGhost' sends to module 'nobody', which is not deployed",
        ],
        [],
    ]
    assert referenced_modules(routes) == {"turboFanRouter", "TurbofanRouter", "ghost", "nobody"}
    assert [r.source.reads_from("turbofanRouter") for r in routes] == [True, True, False, True]
    assert [r.source.scope for r in routes] == ["module", "messages", "module", "modules"]


def test_a_condition_compiles_once_and_evaluates_three_valued() -> None:
    condition = compile_condition("$body.probability > 0.9 AND missing = 'x'")
    assert condition.type == "bool" and condition.text == "$body.probability > 0.9 AND missing = 'x'"
    assert condition.evaluate(message(ANOMALY)) is UNDEFINED  # true AND undefined
    assert condition.evaluate(message(NORMAL)) is False  # false AND undefined
    assert condition.evaluate(message(ANOMALY, missing="x")) is True
    assert compile_condition("$body.probability * 2").value(message(ANOMALY)) == pytest.approx(1.94)
    with pytest.raises(RouteError) as info:
        compile_condition("$body.probability > 'x' AND NOPE()")
    assert info.value.problems == ["Invalid built-in function 'NOPE' at col 29"]


# --- the local edge: its router and its deployment check use the same rules --------------------------------------


def test_the_local_hub_matches_a_source_in_any_case_and_a_sink_exactly() -> None:
    from localedge.hub import Hub
    from localedge.upstream import UpstreamRecorder
    from localedge.wire import EdgeMessage

    routes = parse_routes(
        {  # as IoTEdgeAndMlSample writes them: the module is deployed as turbofanRouter
            "routerToIoTHub": "FROM /messages/modules/turboFanRouter/outputs/hubOutput INTO $upstream",
            "routerToClassifier": "FROM /messages/modules/turbofanRouter/outputs/classOutput "
            "WHERE $connectionDeviceId = 'edge-1' AND $connectionModuleId = 'turbofanRouter' "
            'INTO BrokeredEndpoint("/modules/classifier/inputs/amlInput")',
        }
    )
    upstream = UpstreamRecorder(lambda _module: None)
    hub = Hub("edge-1", routes, {}, upstream)
    published: list[str] = []
    hub.links = {"classifier": SimpleNamespace(publish=lambda topic, _body: published.append(topic))}  # type: ignore[dict-item]
    hub.sent_ids["turbofanRouter"] = collections.deque()  # what start() sets up per module
    hub._route("turbofanRouter", EdgeMessage("t", b"{}", {"$.on": "hubOutput", "$.mid": "m-1"}), 1.0)
    hub._route("turbofanRouter", EdgeMessage("t", b"{}", {"$.on": "classOutput", "$.mid": "m-2"}), 2.0)
    assert upstream.count == 1 and [m.output for m in upstream.messages] == ["hubOutput"]
    assert len(published) == 1 and published[0].startswith("devices/edge-1/modules/classifier/inputs/amlInput/")
    assert hub.forwarded == {"classifier": 1} and not hub.dropped


def test_the_local_deployment_checks_module_names_as_edgehub_and_warns_of_what_it_cannot_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from localedge.deployment import DeploymentError, load_deployment

    doc = json.loads((REPO / "deployment.template.json").read_text())
    routes = doc["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
    routes["sensorToInference"] = routes["sensorToInference"].replace("/modules/tempSensor/", "/modules/TEMPSENSOR/")
    routes["twin"] = "FROM /twinChangeNotifications INTO $upstream"
    (path := tmp_path / "deployment.json").write_text(json.dumps(doc))
    with caplog.at_level("WARNING", logger="localedge.deployment"):
        deployment = load_deployment(path)
    # the source names tempSensor in another case: edgeHub still reads it, so the model still starts first
    assert deployment.start_waves() == [["inference"], ["tempSensor"]]
    warning = (
        "route 'twin' never fires on the local edge: it reads twin change notifications (/twinChangeNotifications), "
        "which the local edge does not produce"
    )
    assert list(deployment.warnings) == [warning] and caplog.messages == [warning]

    routes["sensorToInference"] = routes["sensorToInference"].replace("/modules/inference/", "/modules/Inference/")
    path.write_text(json.dumps(doc))
    with pytest.raises(DeploymentError) as err:
        load_deployment(path)
    assert err.value.problems == [
        "route 'sensorToInference' sends to module 'Inference', which is not deployed (edgeHub delivers to a module "
        "under its exact name: write 'inference') (modules: tempSensor, inference)"
    ]
