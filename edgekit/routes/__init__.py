"""edgeHub's routes: parse the manifest's routes as edgeHub does, then decide where each message goes.

Pure Python, no I/O. Built from edgeHub's own grammar and compiler (Azure/iotedge edge-hub/core,
Microsoft.Azure.Devices.Routing.Core: Route.g4, Condition.g4, ConditionVisitor, the builtins, BodyQuery,
CustomMessageSource, EndpointFactory) and checked against its unit tests (tests/routes/edgehub_cases.json).

    FROM <source> [WHERE <condition>] INTO <sink>        (also SELECT * FROM ...; keywords in any case)

Sources: edgeHub trims a trailing `*` and `/`, then routes every message whose source starts with what is left,
in any case: `/messages/*` (or `/messages`, `/*`: everything), `/messages/modules/*`, `/messages/modules/<m>/*`
(or `/messages/modules/<m>`), `/messages/modules/<m>/outputs/*`, `/messages/modules/<m>/outputs/<o>`,
`/twinChangeNotifications`. Module and output names match in any case (`turboFanRouter` reads `turbofanRouter`).
Sinks: `$upstream`, `BrokeredEndpoint("/modules/<m>/inputs/<i>")` (edgeHub reads the 2nd and 4th parts). A sink's
module must be deployed under exactly that name: edgeHub finds the module's connection by its exact id.

Conditions: see _compiler (types, operators, three-valued logic), _builtins (functions) and _body (`$body`).
Application properties are read by name (`batchId`), system properties as `$name` (`$contentType`,
`$connectionModuleId`, `$outputName`, `$messageId`, `$cid`...; any case), `$body.<path>` from a JSON body,
`{$name}` for the system property even when an application property has the same name.

Text after the sink is ignored (edgeHub's grammar has no end-of-route check): parse_routes accepts it and adds a
warning. A route that is valid but that the local edge cannot exercise (a /twinChangeNotifications source) is
accepted with `Route.unevaluated` saying why.

A route is a string or {"route", "priority" (0-9), "timeToLiveSecs"}. Stricter than edgeHub, parse_routes also
refuses route names with '.', '$', '#' or spaces (IoT Hub refuses such twin keys), unknown keys in the object
form (edgeHub ignores them: a misspelt timeToLiveSecs would silently not apply) and a priority or TTL that is
not a JSON integer (edgeHub's JSON reader would convert "1").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import edgekit.routes._parser as P

from ._body import JSON_CONTENT_TYPE
from ._builtins import NAMES as BUILTINS
from ._compiler import Compiler, Options, as_condition
from ._message import WIRE_SYSTEM_PROPERTIES, Message
from ._types import Runtime, Typed
from ._values import MISSING, UNDEFINED, fold

__all__ = [
    "BUILTINS",
    "DEFAULT_PRIORITY",
    "JSON_CONTENT_TYPE",
    "MISSING",
    "SYSTEM_PROPERTIES",
    "UNDEFINED",
    "WIRE_SYSTEM_PROPERTIES",
    "Condition",
    "Message",
    "ModuleInput",
    "Route",
    "RouteError",
    "Sink",
    "Source",
    "Upstream",
    "compile_condition",
    "deployed_module",
    "destinations",
    "module_problems",
    "parse_routes",
    "referenced_modules",
    "route_parts",
]

DEFAULT_PRIORITY = 2_000_000_000  # edgeHub's priority for routes that set none; 0 is the highest priority
ROUTE_NAME = re.compile(r"^[^.$# ]+$")  # IoT Hub's rule for twin property names
ROUTE_KEYS = ("route", "priority", "timeToLiveSecs")
SINKS_HELP = '$upstream or BrokeredEndpoint("/modules/<m>/inputs/<i>")'
SOURCES_HELP = "/messages/*, /messages/modules/<m>/*, /messages/modules/<m>/outputs/<o> or /twinChangeNotifications"
# The system properties a module's message has on edgeHub (`$<name>`, any case).
SYSTEM_PROPERTIES = (
    "connectionDeviceId",
    "connectionModuleId",
    "edgeHubOriginInterface",
    "edgeMessageId",
    *WIRE_SYSTEM_PROPERTIES.values(),
)


class RouteError(ValueError):
    """Every problem found in the routes, so a manifest is fixed in one round; `problems` has one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the routes:\n" + "\n".join(f"- {p}" for p in self.problems))


# --- sinks and sources -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """IoT Hub, as `$upstream`."""

    def __str__(self) -> str:
        return "$upstream"


@dataclass(frozen=True)
class ModuleInput:
    """A module's input, as `BrokeredEndpoint("/modules/<module>/inputs/<input>")`."""

    module: str
    input: str

    def __str__(self) -> str:
        return f'BrokeredEndpoint("/modules/{self.module}/inputs/{self.input}")'


Sink = Upstream | ModuleInput
Scope = Literal["all", "messages", "modules", "module", "twin", "none"]


@dataclass(frozen=True)
class Source:
    """Which messages a route reads: those whose source starts with `prefix` (case-folded), as edgeHub's
    CustomMessageSource. `module`/`output` are the module and output the source names, None when it names none."""

    text: str = "/messages/*"
    prefix: str = "/MESSAGES/"
    module: str | None = None
    output: str | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        trimmed = text.strip().rstrip("*")
        if len(trimmed) > 1:
            trimmed = trimmed.rstrip("/")
        normalized = trimmed.strip().rstrip("/") + "/"
        parts = normalized.strip("/").split("/")
        module = output = None
        if len(parts) >= 3 and fold(parts[0]) == "MESSAGES" and fold(parts[1]) == "MODULES":
            module = parts[2]
            if len(parts) >= 5 and fold(parts[3]) == "OUTPUTS":
                output = parts[4]
        return cls(text, fold(normalized), module, output)

    def matches(self, msg: Message) -> bool:
        return msg.source_key.startswith(self.prefix)

    @property
    def scope(self) -> Scope:
        """What it can match: everything, device and module messages, all modules' messages, one module's,
        twin change notifications, or nothing edgeHub ever routes."""
        parts = [p for p in self.prefix.split("/") if p]
        if not parts:
            return "all"
        if parts == ["TWINCHANGENOTIFICATIONS"]:
            return "twin"
        if parts[0] != "MESSAGES" or len(parts) > 5 or (len(parts) >= 2 and parts[1] != "MODULES"):
            return "none"
        if len(parts) >= 4 and parts[3] != "OUTPUTS":
            return "none"
        return {1: "messages", 2: "modules"}.get(len(parts), "module")  # type: ignore[return-value]

    def reads_from(self, module: str) -> bool:
        """Whether some message of `module` (on any output, or none) can match."""
        key = fold(f"/messages/modules/{module}/")
        return self.scope != "none" and (key.startswith(self.prefix) or self.prefix.startswith(key))


# --- conditions and routes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A compiled WHERE condition: `evaluate` gives True, False or UNDEFINED for a message (routed only when
    True); `value` the expression's own value (a number, string, ...), for tests."""

    text: str
    type: str  # edgeHub's static type: "bool", "string", "number", "null", "undefined" or "QueryValue"
    value: Runtime
    evaluate: Runtime

    def __call__(self, msg: Message) -> Any:
        return self.evaluate(msg)


@dataclass(frozen=True)
class Route:
    """One parsed route. Lower `priority` is more urgent (0-9, DEFAULT_PRIORITY when unset); TTL 0 = hub default.
    `unevaluated` says why the local edge cannot exercise the route (None when it can); `warnings` are things
    edgeHub accepts that are probably not meant (ignored text, a source or condition that never matches)."""

    name: str
    text: str
    priority: int
    sink: Sink
    source: Source = Source()
    condition: Condition | None = None
    time_to_live_secs: int = 0
    unevaluated: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def matches(self, msg: Message) -> bool:
        return self.source.matches(msg) and (self.condition is None or self.condition.evaluate(msg) is True)


def compile_condition(
    text: str, *, body_query: bool = True, twin_change_includes: bool = True, twin_source: bool = False
) -> Condition:
    """A condition alone, as edgeHub's RouteCompiler compiles it (every flag on, as edgeHub runs routes; a
    twin-change source object only in edgeHub's own tests). Raises RouteError with edgeHub's reasons."""
    parser = P.Parser(text)
    try:
        node = parser.condition()
    except P.SyntaxProblem as exc:
        raise RouteError([exc.message]) from None
    options = Options(body_query, twin_change_includes, twin_source)
    return _compile(node, text, options, 0)


def _compile(node: P.Node | None, text: str, options: Options, col_offset: int) -> Condition:
    if node is None:  # an empty condition is undefined
        return Condition(text, "undefined", lambda _m: UNDEFINED, lambda _m: UNDEFINED)
    compiler = Compiler(options, col_offset)
    typed: Typed = compiler.visit(node)
    if compiler.errors:
        raise RouteError(compiler.errors)
    return Condition(text, typed.type, typed.fn, as_condition(typed))


def route_parts(text: str) -> tuple[Source, str | None, Sink, str]:
    """What edgeHub's RouteFactory reads from a route: source, condition text (None without WHERE), sink, and the
    text after the sink it ignores. Raises RouteError for a route it refuses (the condition is not compiled)."""
    syntax, sink, problems = _syntax(text)
    if syntax is None or sink is None:
        raise RouteError(problems)
    return Source.parse(syntax.source), syntax.condition_text, sink, syntax.ignored


def _syntax(text: str) -> tuple[P.RouteSyntax | None, Sink | None, list[str]]:
    try:
        syntax = P.Parser(text).route()
    except P.SyntaxProblem as exc:
        return None, None, [exc.message]
    problems: list[str] = []
    sink = _sink(syntax, problems)
    return syntax, sink, problems


def _sink(syntax: P.RouteSyntax, problems: list[str]) -> Sink | None:
    """edgeHub's EndpointFactory."""
    if syntax.sink_kind == "system":
        if syntax.sink_name.lower() == "$upstream":
            return Upstream()
        problems.append(f"System endpoint type '{syntax.sink_name}' not supported at col {syntax.sink_col}: use {SINKS_HELP}")
        return None
    if syntax.sink_name.lower() != "brokeredendpoint":
        problems.append(f"Function endpoint type '{syntax.sink_name}' not supported at col {syntax.sink_col}: use {SINKS_HELP}")
        return None
    address = (syntax.sink_address or "").strip()
    if not address:
        problems.append(f'BrokeredEndpoint\'s address is empty at col {syntax.address_col}: use "/modules/<m>/inputs/<i>"')
        return None
    items = _address_items(address)
    if len(items) != 4:
        problems.append(
            f"Parameter string {'/'.join(items)} could not be parsed at col {syntax.address_col}. "
            "Expect input in this format - /modules/{mid}/inputs/{input}"
        )
        return None
    if not items[3].strip():
        problems.append(f"BrokeredEndpoint's input name is empty at col {syntax.address_col}")
        return None
    return ModuleInput(items[1], items[3])


def _address_items(address: str) -> list[str]:
    """EndpointFactory: trimmed, one leading and one trailing '/' dropped, split on '/'."""
    address = address.strip()
    address = address[1:] if address.startswith("/") else address
    address = address[:-1] if address.endswith("/") else address
    return address.split("/")


def _route_warnings(syntax: P.RouteSyntax, source: Source, sink: Sink, condition: Condition | None) -> list[str]:
    warnings = []
    if syntax.ignored:
        warnings.append(f"edgeHub ignores the text after the sink: {syntax.ignored!r}")
    if source.scope == "none":
        warnings.append(f"the source {source.text} matches no message edgeHub routes (sources: {SOURCES_HELP})")
    if condition is not None and condition.type in ("string", "number", "undefined", "null"):
        warnings.append(f"the condition is a {condition.type}, never true: this route sends nothing")
    items = _address_items(syntax.sink_address or "")
    if isinstance(sink, ModuleInput) and (items[0] != "modules" or items[2] != "inputs"):
        warnings.append(f"edgeHub reads only the module and input of {syntax.sink_address!r}: it sends to {sink}")
    return warnings


def _route_value(name: str, value: Any, problems: list[str]) -> tuple[str | None, int, int]:
    """(route text, priority, timeToLiveSecs) of a string or object-form route; problems go to `problems`."""
    if isinstance(value, str):
        return value, DEFAULT_PRIORITY, 0
    if not isinstance(value, Mapping):
        problems.append(f'route {name!r}: expected "FROM ... INTO ..." or {{"route": ..., "priority": 0-9, "timeToLiveSecs": n}}')
        return None, DEFAULT_PRIORITY, 0
    unknown = sorted(set(value) - set(ROUTE_KEYS))
    if unknown:  # edgeHub ignores unknown keys; a misspelt timeToLiveSecs would silently not apply
        problems.append(
            f"route {name!r}: unknown key(s) {', '.join(map(repr, unknown))}: the object form has {', '.join(ROUTE_KEYS)}"
        )
    text = value.get("route")
    if not isinstance(text, str):
        problems.append(f'route {name!r}: the object form needs "route": "FROM ... INTO ..."')
        text = None
    priority, ttl = value.get("priority", DEFAULT_PRIORITY), value.get("timeToLiveSecs", 0)
    if "priority" in value and not (type(priority) is int and (0 <= priority <= 9 or priority == DEFAULT_PRIORITY)):
        problems.append(f"route {name!r}: priority must be an integer from 0 (highest) to 9, not {priority!r}")
    if not (type(ttl) is int and 0 <= ttl < 2**32):
        problems.append(f"route {name!r}: timeToLiveSecs must be a whole number of seconds >= 0, not {ttl!r}")
    return text, priority, ttl


def _parse_route(name: str, value: Any, problems: list[str]) -> Route | None:
    before = len(problems)
    if not ROUTE_NAME.match(name):
        problems.append(f"route name {name!r} may not contain '.', '$', '#' or spaces")
    text, priority, ttl = _route_value(name, value, problems)
    if text is None:
        return None
    syntax, sink, route_problems = _syntax(text)
    condition = None
    if syntax is not None and syntax.condition is not None:
        try:
            condition = _compile(syntax.condition, syntax.condition_text or "", Options(), 0)
        except RouteError as err:
            route_problems[:0] = err.problems  # the condition comes before the sink
    problems.extend(f"route {name!r}: {problem}" for problem in route_problems)
    if len(problems) > before or syntax is None or sink is None:
        return None
    source = Source.parse(syntax.source)
    unevaluated = None
    if source.scope == "twin":
        unevaluated = "it reads twin change notifications (/twinChangeNotifications), which the local edge does not produce"
    warnings = tuple(_route_warnings(syntax, source, sink, condition))
    return Route(name, text, priority, sink, source, condition, ttl, unevaluated, warnings)


def parse_routes(routes: Mapping[str, str | Mapping[str, Any]]) -> list[Route]:
    """Every route of `$edgeHub.properties.desired.routes`, in manifest order; RouteError lists all problems."""
    if not isinstance(routes, Mapping):
        raise RouteError([f"routes must be an object of name: route, not {type(routes).__name__}"])
    problems: list[str] = []
    parsed = [_parse_route(str(name), value, problems) for name, value in routes.items()]
    if problems:
        raise RouteError(problems)
    return [route for route in parsed if route is not None]


def destinations(routes: Sequence[Route], msg: Message) -> list[Sink]:
    """The sinks `msg` goes to: each matching route's sink once, in route order. The body is parsed at most once."""
    sinks: list[Sink] = []
    for route in routes:
        if route.sink not in sinks and route.matches(msg):
            sinks.append(route.sink)
    return sinks


# --- modules -----------------------------------------------------------------------------------------------------


def referenced_modules(routes: Iterable[Route]) -> set[str]:
    """Every module named in a route's source or sink, as written."""
    modules: set[str] = set()
    for route in routes:
        modules.update(m for m in (route.source.module, getattr(route.sink, "module", None)) if m is not None)
    return modules


def deployed_module(name: str, deployed_names: Iterable[str], role: Literal["source", "sink"] = "sink") -> str | None:
    """The deployed module a route's module name reaches, as edgeHub compares names, or None.

    A sink (`BrokeredEndpoint("/modules/<name>/inputs/...")`) reaches only the module of exactly that name:
    edgeHub delivers through the module's connection, found by its exact identity. A source
    (`/messages/modules/<name>/...`) matches in any case: edgeHub compares sources with OrdinalIgnoreCase.
    """
    names = list(deployed_names)
    if name in names:
        return name
    if role == "source":
        return next((n for n in names if fold(n) == fold(name)), None)
    return None


def module_problems(route: Route, deployed_names: Iterable[str]) -> list[str]:
    """The route's source or sink modules that are not deployed (edgeHub's comparisons, see deployed_module),
    one line each, naming the deployed module a sink probably meant when only the case differs."""
    names = list(deployed_names)
    problems = []
    module = route.source.module
    if module is not None and route.source.scope != "none" and deployed_module(module, names, "source") is None:
        problems.append(f"route '{route.name}' reads from module '{module}', which is not deployed")
    if isinstance(route.sink, ModuleInput) and deployed_module(route.sink.module, names, "sink") is None:
        problem = f"route '{route.name}' sends to module '{route.sink.module}', which is not deployed"
        other = deployed_module(route.sink.module, names, "source")
        if other is not None:
            problem += f" (edgeHub delivers to a module under its exact name: write '{other}')"
        problems.append(problem)
    return problems
