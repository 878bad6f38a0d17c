"""edgeHub's own routing tests (tests/routes/edgehub_cases.json) through `python -m localedge test-route` itself.

test_edgehub_route_cases.py runs every ported case against edgekit.routes; this file runs each case that a
deployment manifest and a MESSAGE.json can state through the command line a user runs (in process: main(argv),
files in tmp_path), so the CLI's own reading of manifests and messages is proved against edgeHub too.

A case is stated as a manifest route: a condition becomes `FROM <source> WHERE <condition> INTO $upstream` (it
matches iff edgeHub's condition is true), a source `FROM <source> INTO $upstream`, a JSON path
`WHERE IS_DEFINED($body.<path>)`. Cases no real message or manifest can state are left to the library test,
each for one of the reasons in `unstatable()`; test_how_many_cases_go_through_the_cli pins the counts.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from edgekit.routes import RouteError, compile_condition
from tests.unit.test_edgehub_route_cases import CASES, OPTIONS, PORT
from tests.unit.test_test_route import manifest, run

pytestmark = pytest.mark.timeout(120)

MANIFEST_ROUTE_OPTIONS = {"body_query": True, "twin_change_includes": True, "twin_source": False}  # edgeHub's
FEATURE_WORDS = {"body_query": "$body", "twin_change_includes": "twin_change_includes"}
TEST_ROUTE_SYSTEM = {  # the system properties MESSAGE.json takes (any case), as the wire can carry them
    "messageid", "to", "userid", "ack", "outputname", "contenttype", "contentencoding", "messageschema", "operation",
    "creationtime", "iothub-interface-id", "dt-subject", "absolute-expiry-time", "cid", "correlationid",
    "connectiondeviceid", "connectionmoduleid",
}  # fmt: skip
BODY_CODECS = {"utf-8": "utf-8", "utf-16": "utf-16", "utf-32": "utf-32"}
SOURCES = {"telemetry": "/messages", "twin": "/twinChangeNotifications"}


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w$])\$?{re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def message_spec(name: str | None, text: str) -> tuple[dict[str, Any] | None, str]:
    """MESSAGE.json for ported message `name`, or None and why no real message is that one (as `text` reads it)."""
    if name is None:
        return {}, ""
    spec = PORT["messages"][name]
    if "bodyBytes" in spec:
        return None, "a body that is not text in any encoding"
    kind, _, rest = spec["source"].partition(":")
    source = SOURCES.get(kind) or "/messages/modules/{}/outputs/{}".format(*rest.partition("/")[::2]).removesuffix("/outputs/")
    properties, system = {}, {}
    for key, value in spec["properties"].items():
        if isinstance(value, str):
            properties[key] = value
        elif _mentions(text, key.lstrip("$")):
            return None, "an application property with a null value, which no wire carries"
    for key, value in spec["systemProperties"].items():
        if key == "messageType" and kind == "twin":
            continue  # test-route gives a twin change its messageType itself
        if isinstance(value, str) and key.lower() in TEST_ROUTE_SYSTEM:
            system[key] = value
        elif _mentions(text, key):
            return None, "a system property no device or module can send"
    encoding = system.get("contentEncoding", "utf-8").lower()
    if spec.get("bodyEncoding", "utf-8") != BODY_CODECS.get(encoding, "utf-8"):
        return None, "a body encoded otherwise than its contentEncoding says"
    return {"source": source, "body": spec.get("body", ""), "properties": properties, "systemProperties": system}, ""


def source_of(case: dict[str, Any]) -> str:
    name = case.get("message")
    return "/twinChangeNotifications" if name and PORT["messages"][name]["source"] == "twin" else "/*"


def statement(case: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """(routes, MESSAGE.json, "") for a case the CLI can be given, else (None, None, reason)."""
    kind = case["kind"]
    if kind == "value":
        return None, None, "the value of an expression, not a route's outcome"
    if kind == "json_path":
        return {"r": f"FROM /* WHERE IS_DEFINED($body.{case['path']}) INTO $upstream"}, {}, ""
    if kind == "source_match":
        if case["source"].endswith("/"):
            return None, None, "a source ending in '/', which no route can name"
        message_source = case["message_source"]
        module, _, output = message_source.partition(":")[2].partition("/")
        source = SOURCES.get(message_source) or f"/messages/modules/{module}/outputs/{output}"
        return {"r": f"FROM {case['source']} INTO $upstream"}, {"source": source}, ""
    if kind == "route_parts":
        condition = case["expected"]["condition"] if case["expected"] != "error" else "true"
        try:
            compile_condition(condition, **MANIFEST_ROUTE_OPTIONS)
        except RouteError:
            return None, None, "a route RouteFactoryTest only parses, whose condition edgeHub's compiler refuses"
        return {"r": case["route"]}, {}, ""
    if kind == "routes":
        message, why = message_spec(case["message"], " ".join(case["routes"]))
        return ({f"route{i}": t for i, t in enumerate(case["routes"])}, message, "") if message is not None else (None, None, why)
    texts = case["conditions"] if kind == "sweep" else [case["condition"]]
    if any(t is None or not t.strip() for t in texts):
        return None, None, "an empty condition, which a route's WHERE cannot hold"
    for flag, value in OPTIONS[case["options"]].items():
        if value != MANIFEST_ROUTE_OPTIONS[flag] and (
            flag not in FEATURE_WORDS or any(FEATURE_WORDS[flag] in t.lower() for t in texts)
        ):
            return None, None, "compile options edgeHub never uses for a manifest's routes"
    message, why = message_spec(case["message"], " ".join(texts))
    if message is None:
        return None, None, why
    source = source_of(case)
    return {f"c{i}": f"FROM {source} WHERE {t} INTO $upstream" for i, t in enumerate(texts)}, message, ""


def unstatable() -> Counter[str]:
    return Counter(statement(case)[2] for case in CASES if statement(case)[0] is None)


STATED = [pytest.param(case, id=case["id"]) for case in CASES if statement(case)[0] is not None]


@pytest.mark.parametrize("case", STATED)
def test_case_through_test_route(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes, message, _ = statement(case)
    assert routes is not None and message is not None
    code, lines, err = run(tmp_path, capsys, manifest(tmp_path, routes), message)
    out = [json.loads(line) for line in lines]
    expected: Any = case.get("expected")
    if expected in ("error", "invalid"):
        assert code == 2 and out == [] and "edgeHub would reject its routes" in err
        if case.get("error") and case["error"] != "Syntax error.":
            assert case["error"] in err
        return
    assert code == 0, err
    if case["kind"] == "routes":
        assert sorted(line["sink"] for line in out if line["matched"]) == sorted(expected)
    elif case["kind"] in ("sweep", "json_path", "route_parts"):
        assert len(out) == len(routes)
        if case["kind"] == "route_parts":
            sink, shown = expected["sink"], out[0]["sink"]
            if "system" in sink:
                assert shown == sink["system"]
            else:  # edgeHub reads a BrokeredEndpoint address's 3rd and 5th segments as module and input
                segments = sink["address"].split("/")
                assert shown == f'BrokeredEndpoint("/modules/{segments[2]}/inputs/{segments[4]}")'
                assert sink["function"].lower() == "brokeredendpoint"
    else:
        assert [line["matched"] for line in out] == [expected in ("true", True)]


def test_how_many_cases_go_through_the_cli() -> None:
    """The closing note's figures: a change that silently drops cases from the CLI run fails here."""
    assert len(CASES) == 937
    assert len(STATED) == 797
    assert unstatable() == Counter(
        {
            "the value of an expression, not a route's outcome": 37,
            "compile options edgeHub never uses for a manifest's routes": 34,
            "an application property with a null value, which no wire carries": 33,
            "a system property no device or module can send": 23,
            "a route RouteFactoryTest only parses, whose condition edgeHub's compiler refuses": 6,
            "a source ending in '/', which no route can name": 4,
            "an empty condition, which a route's WHERE cannot hold": 2,
            "a body encoded otherwise than its contentEncoding says": 1,
        }
    )
