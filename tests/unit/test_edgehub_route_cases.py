"""edgeHub's own routing unit tests, ported to data (tests/routes/edgehub_cases.json), run against edgekit.routes.

Each case names the C# file, test and Azure/iotedge commit it comes from; tests/routes/port_edgehub_cases.py
wrote the file from those sources.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from edgekit.routes import (
    UNDEFINED,
    Message,
    ModuleInput,
    RouteError,
    Source,
    compile_condition,
    destinations,
    parse_routes,
    route_parts,
)
from edgekit.routes._body import PathError, compile_path
from edgekit.routes._parser import Parser
from edgekit.routes._values import MISSING, NULL_STRING

pytestmark = pytest.mark.timeout(60)

CASES_FILE = Path(__file__).resolve().parents[1] / "routes" / "edgehub_cases.json"
PORT = json.loads(CASES_FILE.read_text(encoding="utf-8"))
CASES = PORT["cases"]
OPTIONS = PORT["options"]
ENCODINGS = {"utf-8": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}  # .NET UTF8, Unicode, UTF32


def message(name: str) -> Message:
    spec = PORT["messages"][name]
    body = bytes(spec["bodyBytes"]) if "bodyBytes" in spec else spec["body"].encode(ENCODINGS[spec.get("bodyEncoding", "utf-8")])
    kind, _, rest = spec["source"].partition(":")
    module, _, output = rest.partition("/")
    return Message(
        module,
        output,
        body,
        spec["properties"],
        twin_change=kind == "twin",
        system_properties=spec["systemProperties"],
    )


def cases(*kinds: str) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in CASES if case["kind"] in kinds]


def outcome(value: Any) -> str:
    return "undefined" if value is UNDEFINED else str(value).lower()


@pytest.mark.parametrize("case", cases("condition"))
def test_condition(case: dict[str, Any]) -> None:
    if case["expected"] == "error":
        with pytest.raises(RouteError) as info:
            compile_condition(case["condition"], **OPTIONS[case["options"]])
        first = info.value.problems[0]
        if "error" in case and case["error"] != "Syntax error.":  # a generic ANTLR syntax error: any wording
            assert first.startswith(case["error"])
        if "error_col" in case:
            assert f"col {case['error_col']}" in first
        return
    condition = compile_condition(case["condition"], **OPTIONS[case["options"]])
    assert outcome(condition.evaluate(message(case["message"]))) == case["expected"]


@pytest.mark.parametrize("case", cases("value"))
def test_value(case: dict[str, Any]) -> None:
    value = compile_condition(case["condition"], **OPTIONS[case["options"]]).value(message(case["message"]))
    expected = case["expected"]
    if expected == "undefined":
        assert value is UNDEFINED or (isinstance(value, float) and math.isnan(value))
    elif "string" in expected:
        assert value == expected["string"]
    else:
        assert value not in (UNDEFINED, MISSING, NULL_STRING, None)
        number = float(expected["number"])
        assert math.isnan(value) if math.isnan(number) else value == pytest.approx(number, rel=1e-12)


@pytest.mark.parametrize("case", cases("sweep"))
def test_sweep_compiles_and_evaluates(case: dict[str, Any]) -> None:
    msg = message(case["message"])
    for text in case["conditions"]:
        assert compile_condition(text, **OPTIONS[case["options"]]).evaluate(msg) in (True, False, UNDEFINED)


@pytest.mark.parametrize("case", cases("json_path"))
def test_json_path(case: dict[str, Any]) -> None:
    if case["expected"] == "valid":
        compile_path(case["path"])
    else:
        with pytest.raises(PathError):
            compile_path(case["path"])


MESSAGE_SOURCES = {
    "telemetry": Message("", "", b"", {}),
    "twin": Message("", "", b"", {}, twin_change=True),
    "module:ModId1/Op1": Message("ModId1", "Op1", b"", {}),
}


@pytest.mark.parametrize("case", cases("source_match"))
def test_source_match(case: dict[str, Any]) -> None:
    assert Source.parse(case["source"]).matches(MESSAGE_SOURCES[case["message_source"]]) is case["expected"]
    if not case["source"].endswith("/"):  # a route's source cannot end with '/' (Route.g4's path)
        (route,) = parse_routes({"r": f"FROM {case['source']} INTO $upstream"})
        assert route.matches(MESSAGE_SOURCES[case["message_source"]]) is case["expected"]


@pytest.mark.parametrize("case", cases("route_parts"))
def test_route_parts(case: dict[str, Any]) -> None:
    if case["expected"] == "error":
        with pytest.raises(RouteError):
            route_parts(case["route"])
        return
    source, condition, sink, ignored = route_parts(case["route"])
    expected = case["expected"]
    assert source.prefix == Source.parse(expected["source"]).prefix
    assert (condition or "true") == expected["condition"]  # RouteFactory's default condition is "true"
    assert ignored == ""
    syntax = Parser(case["route"]).route()
    if "system" in expected["sink"]:
        assert syntax.sink_name == expected["sink"]["system"]
        assert str(sink) == "$upstream"
    else:
        assert (syntax.sink_name, syntax.sink_address) == (expected["sink"]["function"], expected["sink"]["address"])
        assert isinstance(sink, ModuleInput)


@pytest.mark.parametrize("case", cases("routes"))
def test_routes(case: dict[str, Any]) -> None:
    routes = parse_routes({f"route{i}": text for i, text in enumerate(case["routes"])})
    assert sorted(str(sink) for sink in destinations(routes, message(case["message"]))) == sorted(case["expected"])


def test_the_port_names_its_origin_and_covers_edgehubs_test_files() -> None:
    commit = PORT["edgehub"]["commit"]
    assert len(commit) == 40 and all(case["origin"]["commit"] == commit for case in CASES)
    files = {Path(case["origin"]["file"]).name for case in CASES}
    assert {
        "ConditionCompilerTest.cs",
        "BodyQueryTest.cs",
        "BodyQueryI18NTest.cs",
        "TwinChangeIncludesTest.cs",
        "ConditionVisitorTest.cs",
        "ErrorListenerTest.cs",
        "JsonPathValidatorTest.cs",
        "MessageQueryTest.cs",
        "MessageSourceTest.cs",
        "RouteFactoryTest.cs",
        "RoutingTest.cs",
    } <= files
    assert len(CASES) > 900
