"""Port edgeHub's routing unit tests to data: writes tests/routes/edgehub_cases.json.

    python tests/routes/port_edgehub_cases.py <Azure/iotedge git dir> [commit]

Reads the C# tests at that commit (default HEAD) with `git show`: conditions, routes, paths and their expected
results come from the C# source text (attributes, data lists, Assert lines); the test messages are transcribed
below, each naming the C# field it copies. tests/unit/test_edgehub_route_cases.py runs the cases.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

CORE_TESTS = "edge-hub/core/test/Microsoft.Azure.Devices.Routing.Core.Test"
HUB_TESTS = "edge-hub/core/test/Microsoft.Azure.Devices.Edge.Hub.Core.Test"
OUT = Path(__file__).with_name("edgehub_cases.json")

# RouteCompilerFlags and the route's message source, as each C# test compiles its conditions (cases name them).
OPTIONS = {
    "none": {"body_query": False, "twin_change_includes": False, "twin_source": False},  # RouteCompiler.Compile(route)
    "body": {"body_query": True, "twin_change_includes": False, "twin_source": False},  # RouteCompilerFlags.BodyQuery
    "all": {"body_query": True, "twin_change_includes": True, "twin_source": False},  # RouteCompilerFlags.All
    "twin": {"body_query": False, "twin_change_includes": True, "twin_source": True},  # TwinChangeIncludes, twin source
    "twin-flag-off": {"body_query": False, "twin_change_includes": False, "twin_source": True},  # RouteCompilerFlags.None
    "twin-telemetry-source": {"body_query": False, "twin_change_includes": True, "twin_source": False},
}
NONE, BODY, ALL, TWIN = "none", "body", "all", "twin"


def show(repo: str, commit: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True, text=True).stdout


# --- C# literals -------------------------------------------------------------------------------------------------

_LITERAL = re.compile(
    r"""@"(?P<verbatim>(?:[^"]|"")*)"|"(?P<regular>(?:[^"\\]|\\.)*)"|(?P<empty>string\.Empty)|(?P<bool>Bool\.\w+)|(?P<double>double\.\w+)"""
    r"""|(?<![\w.])(?P<number>-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[DdMm]?"""
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _unescape(text: str) -> str:
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: chr(int(m[1][1:], 16)) if m[1].startswith("u") else _ESCAPES[m[1]],
        text,
    )


def literals(text: str) -> list[Any]:
    """The C# literals of an argument list, in order."""
    values: list[Any] = []
    for match in _LITERAL.finditer(text):
        if match["verbatim"] is not None:
            values.append(match["verbatim"].replace('""', '"'))
        elif match["regular"] is not None:
            values.append(_unescape(match["regular"]))
        elif match["empty"]:
            values.append("")
        elif match["bool"]:
            values.append({"Bool.True": "true", "Bool.False": "false", "Bool.Undefined": "undefined"}[match["bool"]])
        elif match["double"]:
            values.append(float({"PositiveInfinity": "inf", "NegativeInfinity": "-inf", "NaN": "nan"}[match["double"][7:]]))
        else:
            values.append(float(match["number"]))
    return values


def value(expected: Any) -> Any:
    """An expected expression value as JSON: {"number": n} (inf, -inf and nan as strings) or {"string": s}."""
    if isinstance(expected, float):
        return {"number": expected if expected == expected and abs(expected) != float("inf") else str(expected)}
    return {"string": expected}


def uncommented(source: str) -> str:
    """The source without // comment lines (commented-out test data stays out)."""
    return "\n".join(line for line in source.splitlines() if not line.strip().startswith("//"))


def theories(source: str) -> list[tuple[str, list[Any]]]:
    """(method, InlineData arguments) for every [InlineData(...)] of the file."""
    found = []
    pending: list[list[Any]] = []
    for line in uncommented(source).splitlines():
        stripped = line.strip()
        if stripped.startswith("[InlineData("):
            pending.append(literals(stripped[len("[InlineData(") : stripped.rindex(")")]))
        elif method := re.match(r"public (?:async Task|void) (\w+)\(", stripped):
            found += [(method[1], args) for args in pending]
            pending = []
    return found


def data_list(source: str, class_name: str) -> list[list[Any]]:
    """The `new object[] { ... }` rows of a static data-source class."""
    body = uncommented(source).split(f"static class {class_name}", 1)[1]
    body = body.split("public static IEnumerable<object[]> TestData", 1)[0]
    return [literals(row) for row in re.findall(r"new object\[\] \{ (.*?) \},?\s*$", body, re.MULTILINE)]


def const_string(source: str, name: str) -> str:
    match = re.search(rf'const string {name} =\s*(@"(?:[^"]|"")*"|"(?:[^"\\]|\\.)*")\s*;', source)
    assert match, name
    return str(literals(match[1])[0])


# --- the ports ---------------------------------------------------------------------------------------------------


class Port:
    def __init__(self, repo: str, commit: str) -> None:
        self.repo, self.commit = repo, commit
        self.cases: list[dict[str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.skipped: list[dict[str, str]] = []

    def source(self, path: str) -> str:
        return show(self.repo, self.commit, path)

    def add(self, file: str, test: str, kind: str, **fields: Any) -> None:
        origin = {"file": file, "test": test}
        self.cases.append({"id": f"{Path(file).stem}.{test}#{len(self.cases)}", "origin": origin, "kind": kind, **fields})

    def message(self, name: str, origin: str, **fields: Any) -> str:
        self.messages[name] = {"origin": origin, **fields}
        return name

    def skip(self, file: str, test: str, why: str) -> None:
        self.skipped.append({"file": file, "test": test, "why": why})

    # ConditionCompilerTest: the language, every builtin, on Message1's properties.
    def condition_compiler(self) -> None:
        file = f"{CORE_TESTS}/query/ConditionCompilerTest.cs"
        source = self.source(file)
        msg = self.message(
            "ConditionCompilerTest.Message1",
            f"{file}: Message1",
            source="telemetry",
            body="",
            properties={"key1": "value1", "key2": "3", "key3": "VALUE3", "null_value": None, "$sys4": "value4"},
            systemProperties={"sys1": "sysvalue1", "sys2": "4", "sys3": "SYSVALUE3", "sysnull": None, "sys4": "sysvalue4"},
        )
        for condition, expected in data_list(source, "TestSuccessDataSource"):
            self.add(file, "TestSuccess", "condition", condition=condition, message=msg, options=NONE, expected=expected)
        for (condition,) in data_list(source, "TestCompilationFailureDataSource"):
            self.add(
                file, "TestCompilationFailure", "condition", condition=condition, message=msg, options=NONE, expected="error"
            )
        test = re.search(r'void TestTest\(\)\s*\{\s*string condition = "(.*?)";\s*Bool expected = Bool\.(\w+);', source)
        assert test
        self.add(file, "TestTest", "condition", condition=test[1], message=msg, options=NONE, expected=test[2].lower())
        self.add(
            file,
            "TestSubstringLimits",
            "sweep",
            conditions=[f"substring('hello', {i}) = 'he'" for i in range(-10, 11)]
            + [f"substring('hello', {i}, {j}) = 'he'" for i in range(-10, 11) for j in range(-10, 11)],
            message=msg,
            options=NONE,
            expected="compiles and evaluates",
        )

    # BodyQueryTest and BodyQueryI18NTest: $body on a JSON message, and its conflicts with properties.
    def body_query(self) -> None:
        file = f"{CORE_TESTS}/query/BodyQueryTest.cs"
        source = self.source(file)
        msg = self.message(
            "BodyQueryTest.Message1",
            f"{file}: Message1",
            source="telemetry",
            body=const_string(source, "MessageBody"),
            bodyEncoding="utf-8",
            properties={
                "City": "Redmond",
                "$State": "WA",
                "$body.message.Weather.Temperature_PropertyConflict": "100",
                "IntegerProperty": "110",
            },
            systemProperties={
                "State": "CA",
                "$body.message.Weather.Location.State": "CA",
                "contentEncoding": "UTF-8",
                "contentType": "application/json",
            },
        )
        expected_by_method = {
            "BodyQuery_RouteCompilation": "error",
            "BodyQuery_Double_Success": "true",
            "BodyQuery_Double_Failure": "false",
            "BodyQuery_String_Success": "true",
            "BodyQuery_String_Failure": "false",
            "BodyQuery_Bool": "true",
            "BodyQuery_Logical": "true",
            "BodyQuery_Undefined": "undefined",
            "BodyQuery_SysPropertyConflict": "true",
            "BodyQuery_NotSupportedJTokenTime": "undefined",
            "BodyQuery_Null": "true",
            "BodyQuery_Builtins": "true",
        }
        for method, (condition,) in theories(source):
            self.add(
                file, method, "condition", condition=condition, message=msg, options=BODY, expected=expected_by_method[method]
            )
        not_supported = re.search(r'void BodyQuery_NotSupported\(\)\s*\{\s*string condition = "(.*?)";', source)
        assert not_supported and "RouteCompilerFlags.None" in source
        self.add(
            file, "BodyQuery_NotSupported", "condition", condition=not_supported[1], message=msg, options=NONE, expected="error"
        )
        debug = re.search(r'void DebugBodyQuery\(\)\s*\{\s*string condition = "(.*?)";', source)
        assert debug
        self.add(
            file,
            "DebugBodyQuery",
            "condition",
            condition=debug[1],
            message=msg,
            options=BODY,
            expected="true",
            note="the C# test also passes if compiling throws",
        )

        file = f"{CORE_TESTS}/query/BodyQueryI18NTest.cs"
        source = self.source(file)
        msg = self.message(
            "BodyQueryI18NTest.Message1",
            f"{file}: Message1",
            source="telemetry",
            body=const_string(source, "MessageBody"),
            bodyEncoding="utf-8",
            properties={},
            systemProperties={"contentEncoding": "UTF-8", "contentType": "application/json"},
        )
        expected_by_method = {
            "BodyQueryI18N_Success": "true",
            "BodyQueryI18N_Failure": "false",
            "BodyQueryI18N_RouteCompilation": "error",
        }
        for method, (condition,) in theories(source):
            self.add(
                file, method, "condition", condition=condition, message=msg, options=BODY, expected=expected_by_method[method]
            )

    # TwinChangeIncludesTest: twin_change_includes on a twin change notification.
    def twin_change_includes(self) -> None:
        file = f"{CORE_TESTS}/query/TwinChangeIncludesTest.cs"
        source = self.source(file)
        body = const_string(source, "TwinNotificationMessage")
        json_props = {"contentEncoding": "UTF-8", "contentType": "application/json"}
        msg = self.message(
            "TwinChangeIncludesTest.Message1",
            f"{file}: Message1",
            source="twin",
            body=body,
            bodyEncoding="utf-8",
            properties={"key1": "value1", "key2": "3", "key3": "VALUE3", "null_value": None, "$sys4": "value4"},
            systemProperties={
                "sys1": "sysvalue1",
                "sys2": "4",
                "sys3": "SYSVALUE3",
                "sysnull": None,
                "sys4": "sysvalue4",
                **json_props,
            },
        )
        expected_by_method = {
            "TestTwinChangeIncludesSuccess": "true",
            "TestTwinChangeIncludesFailure": "false",
            "TestTwinChangeIncludesCompilationFailure": "error",
        }
        validate: list[str] = []
        for method, args in theories(source):
            if method == "TestTwinChangeIncludes_ValidateMessage":
                validate.append(args[0])
                continue
            self.add(file, method, "condition", condition=args[0], message=msg, options=TWIN, expected=expected_by_method[method])
        facts = dict(re.findall(r'void (TestTwinChangeIncludes\w*)\(\)\s*\{\s*string condition = "(.*?)";', source))
        self.add(
            file,
            "TestTwinChangeIncludes_Debug",
            "condition",
            condition=facts["TestTwinChangeIncludes_Debug"],
            message=msg,
            options=TWIN,
            expected="true",
        )
        flags_off = "twin-flag-off"
        self.add(
            file,
            "TestTwinChangeIncludes_NotSupported_RouteCompilerFlag",
            "condition",
            condition=facts["TestTwinChangeIncludes_NotSupported_RouteCompilerFlag"],
            message=msg,
            options=flags_off,
            expected="error",
        )
        telemetry_source = "twin-telemetry-source"  # the route's source is TelemetryMessageSource
        self.add(
            file,
            "TestTwinChangeIncludes_NotSupported_MessageSource",
            "condition",
            condition=facts["TestTwinChangeIncludes_NotSupported_MessageSource"],
            message=msg,
            options=telemetry_source,
            expected="error",
        )
        condition = "twin_change_includes(properties.reported.WeatherTwin)"
        for i, text in enumerate(validate):
            name = self.message(
                f"TwinChangeIncludesTest.ValidateMessage{i}",
                f"{file}: TestTwinChangeIncludes_ValidateMessage({text!r})",
                source="twin",
                body=text,
                bodyEncoding="utf-8",
                properties={},
                systemProperties=json_props,
            )
            self.add(
                file,
                "TestTwinChangeIncludes_ValidateMessage",
                "condition",
                condition=condition,
                message=name,
                options=TWIN,
                expected="undefined",
            )
        name = self.message(
            "TwinChangeIncludesTest.InvalidEncoding",
            f"{file}: TestTwinChangeIncludes_InvalidEncoding (Encoding.Unicode bytes said to be UTF-8)",
            source="twin",
            body=body,
            bodyEncoding="utf-16",
            properties={},
            systemProperties=json_props,
        )
        self.add(
            file,
            "TestTwinChangeIncludes_InvalidEncoding",
            "condition",
            condition=condition,
            message=name,
            options=TWIN,
            expected="undefined",
        )

    # ConditionVisitorTest: literal and arithmetic values; syntax errors with edgeHub's messages.
    def condition_visitor(self) -> None:
        file = f"{CORE_TESTS}/query/ConditionVisitorTest.cs"
        empty = self.message(
            "Empty",
            "a message with no body or properties (the C# tests compile without one)",
            source="telemetry",
            body="",
            properties={},
            systemProperties={},
        )
        for method, args in theories(self.source(file)):
            if method == "TestLiteralErrors":
                condition, message = args
                self.add(
                    file, method, "condition", condition=condition, message=empty, options=ALL, expected="error", error=message
                )
            else:
                condition, expected = args
                self.add(file, method, "value", condition=condition, message=empty, options=ALL, expected=value(expected))

    # ErrorListenerTest: the first error's message and column.
    def error_listener(self) -> None:
        file = f"{CORE_TESTS}/query/ErrorListenerTest.cs"
        source = self.source(file)
        for method, body in re.findall(r"public void (\w+)\(\)\s*\{(.*?)\n        \}", source, re.DOTALL):
            condition = literals(re.search(r"string condition = (.*?);\n", body)[1])[0]  # type: ignore[index]
            message = literals(re.search(r"Assert\.Equal\((\".*?\"), error1\.Message\)", body)[1])[0]  # type: ignore[index]
            column = int(re.search(r"new ErrorRange\(new ErrorPosition\(1, (\d+)\)", body)[1])  # type: ignore[index]
            self.add(
                file,
                method,
                "condition",
                condition=condition,
                message="Empty",
                options=NONE,
                expected="error",
                error=message,
                error_col=column,
            )

    # JsonPathValidatorTest: which $body paths edgeHub accepts.
    def json_path(self) -> None:
        file = f"{CORE_TESTS}/jsonpath/JsonPathValidatorTest.cs"
        source = self.source(file)
        for method, (path,) in theories(source):
            self.add(file, method, "json_path", path=path, expected="valid" if method.endswith("Success") else "invalid")
        debug = re.search(r'void JsonPathValidator_Debug\(\)\s*\{\s*string jsonPath = "(.*?)";', source)
        assert debug
        self.add(file, "JsonPathValidator_Debug", "json_path", path=debug[1], expected="valid")

    # MessageQueryTest: which bodies edgeHub reads (a query on an unreadable one is undefined).
    def message_query(self) -> None:
        file = f"{CORE_TESTS}/MessageQueryTest.cs"
        body = const_string(self.source(file), "MessageBody")
        query = "$body.message.Weather.Temperature"
        json_type = {"contentType": "application/json"}
        variants = [
            ("BodyQueryMessageUtf8ValidJson", body, "utf-8", {"contentEncoding": "UTF-8", **json_type}, value(50.0)),
            ("BodyQueryMessageUtf16ValidJson", body, "utf-16", {"contentEncoding": "UTf-16", **json_type}, value(50.0)),
            ("BodyQueryMessageUtf32ValidJson", body, "utf-32", {"contentEncoding": "utf-32", **json_type}, value(50.0)),
            ("BodyQueryMessageUtf8InvalidJson", "Invalid Json", "utf-8", {"contentEncoding": "UTF-8", **json_type}, "undefined"),
            ("BodyQueryMessageInvalidEncoding", [1, 2, 3], None, {"contentEncoding": "UTF-8", **json_type}, "undefined"),
            ("BodyQueryMessageUtf8ValidJsonMissingEncodingProperty", body, "utf-8", dict(json_type), "undefined"),
            ("BodyQueryMessageUtf8ValidJsonMissingContentTypeProperty", body, "utf-8", {"contentEncoding": "Utf-8"}, "undefined"),
        ]
        for name, text, encoding, sys_props, expected in variants:
            fields: dict[str, Any] = {"bodyBytes": text} if encoding is None else {"body": text, "bodyEncoding": encoding}
            msg = self.message(
                f"MessageQueryTest.{name}",
                f"{file}: {name}",
                source="telemetry",
                properties={},
                systemProperties=sys_props,
                **fields,
            )
            self.add(file, "TestMessageQuery", "value", condition=query, message=msg, options=ALL, expected=expected)

    # NullTest and UndefinedTest: the comparisons a condition can write (null with null, undefined with undefined).
    def null_and_undefined(self) -> None:
        for file, literal, expectations in [
            (
                f"{CORE_TESTS}/query/NullTest.cs",
                "null",
                {"=": "true", "!=": "false", "<": "false", ">": "false", "<=": "true", ">=": "true"},
            ),
            (f"{CORE_TESTS}/query/UndefinedTest.cs", "undefined", dict.fromkeys(("=", "!=", "<", ">", "<=", ">="), "undefined")),
        ]:
            source = self.source(file)
            for op, expected in expectations.items():
                csharp = {"=": "==", "!=": "!="}.get(op, op)
                test = "TestEquals" if op in ("=", "!=") else "TestComparison"
                assert f"d1 {csharp} d2" in source, (file, op)
                self.add(
                    file,
                    test,
                    "condition",
                    condition=f"{literal} {op} {literal}",
                    message="Empty",
                    options=NONE,
                    expected=expected,
                )
            self.skip(
                file,
                "TestArthimetic, TestExpression, TestTypes, the rest of TestEquals/TestComparison",
                "C# operators on mixed .NET types; a condition cannot write them (the compiler refuses mixed operands)",
            )

    # MessageSourceTest: which messages a route source matches.
    def message_source(self) -> None:
        file = f"{CORE_TESTS}/MessageSourceTest.cs"
        sources = {
            "TestTelemetryMessageSourcePattern": "telemetry",
            "TestTwinChangeEventMessageSourcePattern": "twin",
            "TestModuleMessageSourcePattern": "module:ModId1/Op1",
        }
        for method, (pattern,) in theories(self.source(file)):
            prefix = method.removesuffix("NoMatch").removesuffix("Match")
            self.add(
                file,
                method,
                "source_match",
                source=pattern,
                message_source=sources[prefix],
                expected=not method.endswith("NoMatch"),
            )
        self.skip(
            file,
            "TestTelemetryMessageSource, TestModuleMessageSource, TestTwinChangeEventMessageSource, MessageSourceRoundtripTest",
            "message-source objects matched against each other and JSON round trips: no route text involved",
        )

    # RouteFactoryTest: what edgeHub reads from a route's text, and the texts it refuses.
    def route_factory(self) -> None:
        file = f"{CORE_TESTS}/routeFactory/RouteFactoryTest.cs"
        source = uncommented(self.source(file))
        for method, (route,) in theories(source):
            self.add(file, method, "route_parts", route=route, expected="error")
        for test, block in [
            ("TestParseRouteWithFunctionEndpoint", "GetFunctionEndpointParserData"),
            ("TestParseRouteWithSystemEndpoint", "GetSystemEndpointParserData"),
        ]:
            body = source.split(f"IEnumerable<object[]> {block}()", 1)[1].split("return testData;", 1)[0]
            for row in re.findall(r"new object\[\]\s*\{(.*?)\}\);", body, re.DOTALL):
                values = literals(re.sub(r"CustomMessageSource\.Create\((.*?)\)", r"\1", row))
                route, source_text, condition, function, *address = values
                sink = {"function": function, "address": address[0]} if address else {"system": function}
                self.add(
                    file, test, "route_parts", route=route, expected={"source": source_text, "condition": condition, "sink": sink}
                )

    # Edge Hub Core RoutingTest: whole route sets against messages from devices and modules.
    def routing(self) -> None:
        file = f"{HUB_TESTS}/routing/RoutingTest.cs"
        source = self.source(file)

        def routes_of(test: str) -> list[str]:
            body = source.split(f"public async Task {test}()", 1)[1].split("new List<string>", 1)[1].split("};", 1)[0]
            return [r for r in literals(body) if isinstance(r, str)]

        def msg(name: str, src: str, test: str, props: dict[str, str], **sys_props: str) -> str:
            origin = f"{file}: {test}, a message as TestDevice/TestModule send it"
            return self.message(f"RoutingTest.{name}", origin, source=src, body="", properties=props, systemProperties=sys_props)

        device = msg("device1", "telemetry", "TestDevice.SendMessage", {}, connectionDeviceId="device1")
        module = {"connectionDeviceId": "edge"}
        ml_op1 = msg("ml.op1", "module:ml/op1", "SendMessageOnOutput", {}, **module, connectionModuleId="ml", outputName="op1")
        ml_op2 = msg("ml.op2", "module:ml/op2", "SendMessageOnOutput", {}, **module, connectionModuleId="ml", outputName="op2")
        ml = msg("ml", "module:ml", "SendMessages", {}, **module, connectionModuleId="ml")
        asa_out = msg(
            "asa.output1",
            "module:asa/output1",
            "SendMessageOnOutput",
            {},
            **module,
            connectionModuleId="asa",
            outputName="output1",
        )
        asa = msg("asa", "module:asa", "SendMessages", {}, **module, connectionModuleId="asa")
        ml_in, asa_in, mod1_in, mod2_in = (
            'BrokeredEndpoint("/modules/ml/inputs/in1")',
            'BrokeredEndpoint("/modules/asa/inputs/input1")',
            'BrokeredEndpoint("/modules/mod1/inputs/in1")',
            'BrokeredEndpoint("/modules/mod2/inputs/in2")',
        )
        temp100 = msg(
            "device1.temp100", "telemetry", "RoutesWithConditionsTest1/2", {"temp": "100"}, connectionDeviceId="device1"
        )
        temp20 = msg("device1.temp20", "telemetry", "RoutesWithConditionsTest2", {"temp": "20"}, connectionDeviceId="device1")
        alert = msg(
            "ml.op1.alert",
            "module:ml/op1",
            "RoutesWithConditionsTest1",
            {"messageType": "alert"},
            **module,
            connectionModuleId="ml",
            outputName="op1",
        )
        aggregate = msg(
            "asa.output1.aggregate",
            "module:asa/output1",
            "RoutesWithConditionsTest1",
            {"info": "aggregate"},
            **module,
            connectionModuleId="asa",
            outputName="output1",
        )
        json = {"connectionDeviceId": "device1", "contentType": "application/json"}
        utf8 = msg(
            "device1.json.utf8", "telemetry", "RoutesWithConditionsOnSystemPropertiesTest1", {}, **json, contentEncoding="utf-8"
        )
        utf16 = msg(
            "device1.json.utf16", "telemetry", "RoutesWithConditionsOnSystemPropertiesTest1", {}, **json, contentEncoding="utf-16"
        )
        twin = self.message(
            "RoutingTest.reportedProperties",
            f"{file}: GetReportedPropertiesMessage, as DeviceMessageHandler routes a reported-properties update",
            source="twin",
            body='{"Status":"running","ElapsedTime":"0.5"}',
            bodyEncoding="utf-8",
            properties={},
            systemProperties={
                "messageType": "twinChangeNotification",
                "connectionDeviceId": "edge",
                "connectionModuleId": "$edgeHub",
            },
        )
        scenarios: dict[str, list[tuple[str, list[str]]]] = {
            "RouteToCloudTest": [(device, ["$upstream"])],
            "RouteToModuleTest": [(device, [mod1_in])],
            "MultipleRoutesTest": [(device, [ml_in]), (ml_op1, [asa_in]), (asa_out, ["$upstream"])],
            "MultipleRoutesSameModuleTest": [
                (device, [ml_in]),
                (ml_op1, ['BrokeredEndpoint("/modules/ml/inputs/in2")']),
                (ml_op2, [asa_in]),
            ],
            "MultipleRoutesTest_WithNoModuleOutput": [(device, [ml_in]), (ml, [asa_in]), (asa, ["$upstream"])],
            "MultipleRoutesTest_WithNoModuleOutput_WrongRoute": [(device, [ml_in]), (ml, [asa_in]), (asa, [])],
            "RoutesWithConditionsTest1": [(temp100, [ml_in]), (alert, [asa_in]), (aggregate, ["$upstream"])],
            "RoutesWithConditionsTest2": [(temp100, [mod1_in]), (temp20, [mod2_in])],
            "RoutesWithConditionsOnSystemPropertiesTest1": [(utf8, ["$upstream"]), (utf16, [mod2_in])],
            "ReportedPropertyUpdatesAsTelemetryTest": [(twin, ["$upstream"])],
            "TestRoutingTwinChangeNotificationFromDevice": [(twin, [mod1_in])],
            "TestRoutingTwinChangeNotificationFromModule": [(twin, [mod1_in])],
        }
        for test, steps in scenarios.items():
            for message, sinks in steps:
                self.add(file, test, "routes", routes=routes_of(test), message=message, expected=sinks)
        self.skip(file, "the other tests", "edgeHub's connection, store-and-forward and twin plumbing around the router")

    def skipped_files(self) -> None:
        for file, why in [
            (
                "query/QueryValueTest.cs",
                "QueryValue.CompareTo against .NET objects (Guid, DateTime, exceptions): not expressible in a condition",
            ),
            ("query/TwinBodyQueryTest.cs", "commented out in edgeHub (the whole file)"),
            ("query/TwinBodyQueryI18NTest.cs", "commented out in edgeHub (the whole file)"),
            ("EvaluatorTest.cs", "the evaluator's route set (SetRoute/RemoveRoute/ReplaceRoutes) and fallback: no route text"),
            ("RouteTest.cs", "Route object equality and hashing"),
            ("query/errors/*.cs", "the error position/range types themselves"),
        ]:
            self.skip(f"{CORE_TESTS}/{file}", "*", why)

    def run(self) -> dict[str, Any]:
        self.condition_compiler()
        self.body_query()
        self.twin_change_includes()
        self.condition_visitor()
        self.error_listener()
        self.json_path()
        self.message_query()
        self.null_and_undefined()
        self.message_source()
        self.route_factory()
        self.routing()
        self.skipped_files()
        sha = subprocess.run(
            ["git", "-C", self.repo, "rev-parse", self.commit], check=True, capture_output=True, text=True
        ).stdout.strip()
        for case in self.cases:
            case["origin"]["commit"] = sha
        return {
            "about": (
                "edgeHub's routing unit tests as data (tests/routes/port_edgehub_cases.py wrote it): each case names its "
                "C# file, test and commit; messages are referenced by name from `messages`. Message fields: source "
                "(telemetry, twin, module:<m>[/<o>]), body (text, encoded as bodyEncoding: utf-8, utf-16 = .NET "
                "Encoding.Unicode, utf-32; or bodyBytes), properties and systemProperties by edgeHub's names (a null "
                "value is null). A case's options name the RouteCompilerFlags and route source its C# test compiles with."
            ),
            "edgehub": {"repository": "Azure/iotedge", "commit": sha},
            "options": OPTIONS,
            "messages": self.messages,
            "cases": self.cases,
            "skipped": self.skipped,
        }


def dump(port: dict[str, Any]) -> str:
    """The port as JSON, one case (and one message) per line."""

    def block(items: list[str], opener: str, closer: str) -> str:
        return opener + "\n" + ",\n".join(f"  {item}" for item in items) + "\n " + closer

    parts = [
        f' "about": {json.dumps(port["about"], ensure_ascii=False)}',
        f' "edgehub": {json.dumps(port["edgehub"])}',
        ' "options": ' + block([f"{json.dumps(k)}: {json.dumps(v)}" for k, v in port["options"].items()], "{", "}"),
        ' "messages": '
        + block([f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in port["messages"].items()], "{", "}"),
        ' "cases": ' + block([json.dumps(case, ensure_ascii=False) for case in port["cases"]], "[", "]"),
        ' "skipped": ' + block([json.dumps(skip, ensure_ascii=False) for skip in port["skipped"]], "[", "]"),
    ]
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main(argv: list[str]) -> int:
    repo, commit = argv[0], argv[1] if len(argv) > 1 else "HEAD"
    port = Port(repo, commit).run()
    OUT.write_text(dump(port), encoding="utf-8")
    counts: dict[str, int] = {}
    for case in port["cases"]:
        counts[case["origin"]["file"]] = counts.get(case["origin"]["file"], 0) + 1
    for file, count in counts.items():
        print(f"{count:4d} {file}")
    print(f"{len(port['cases']):4d} cases at {port['edgehub']['commit']} -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
