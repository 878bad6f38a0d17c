"""edgeHub's routes for the local edge: parse the manifest's routes, then decide where each message goes.

Pure Python: no I/O, no MQTT. `parse_routes` takes `$edgeHub.properties.desired.routes` and checks every route up
front, raising one `RouteError` that lists all problems; `destinations` gives the sinks a message goes to.

Routes follow edgeHub's grammar: `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>`, keywords in any case.

Sources (everything else, e.g. `/twinChangeNotifications` or `/messages/events`, is refused):
  `/messages/*`                        everything: device messages and whatever any module sends
  `/messages/modules/<m>/*`            whatever module m sends (with or without an output name)
  `/messages/modules/<m>/outputs/*`    whatever module m sends on a named output
  `/messages/modules/<m>/outputs/<o>`  module m's output o
Sinks: `$upstream` and `BrokeredEndpoint("/modules/<m>/inputs/<i>")` (names in any case, as edgeHub).

Conditions (IoT Hub's message-routing query language, the part real routes use):
  operands   `$body.a.b` (dotted path into a JSON object body; no array indexing); application properties by bare
             name (`sequenceNumber`); the system properties in `SYSTEM_PROPERTIES`; literals: strings in single or
             double quotes with edgeHub's backslash escapes (\\' \\" \\\\ \\uXXXX; `''` is not an escape), numbers
             (int, float, exponent, negative, 0x hex), and lowercase `true`, `false`, `null` (edgeHub's lexer
             knows only lowercase).
  operators  `=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`; `NOT` > `AND` > `OR`; parentheses.
  functions  the ones in `FUNCTIONS` (any case); others are refused when parsing.
Semantics (IoT Hub's documented ones; edgeHub's evaluator was read for the details):
  - `$body` is only read when `$contentType` is application/json and `$contentEncoding` is utf-8, utf-16 or
    utf-32 (any case) and the body is a JSON object; otherwise every `$body...` is undefined.
  - A missing property or body field is undefined. Logic is three-valued, as edgeHub's: a comparison with an
    undefined side is undefined, `NOT undefined` is undefined, `false AND undefined` is false, `true OR
    undefined` is true. A route matches only when its condition is true, so undefined means "not routed":
    `NOT ($body.x = 1)` does NOT route a message without x. (edgeHub's own unit tests show one divergence: there
    a missing `$body` path reads as null, so `$body.missing <> 'x'` is true on edgeHub and false here.)
  - Values of different types are never equal: `=` is false, `!=`/`<>` true, `<`... undefined; so
    `$body.t = '50'` with t=50 is false, not an error. null equals only null. A JSON object or array compares
    as undefined (edgeHub does the same) but IS_DEFINED of it is true.
  - Application properties arrive as strings over MQTT and compare as strings, as IoT Hub does; in addition
    (local-edge extension) a property compared with a number compares numerically when its text is a number,
    so `sequenceNumber > 5` works. Strings compare ordinally (by code point).
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 2_000_000_000  # edgeHub's priority for routes that set none; 0 is the highest priority
ROUTE_NAME = re.compile(r"^[^.$# ]+$")
MODULE_NAME = r"[a-zA-Z0-9_-]+"
JSON_CONTENT_TYPE = "application/json"
JSON_ENCODINGS = ("utf-8", "utf-16", "utf-32")
ROUTE_KEYS = ("route", "priority", "timeToLiveSecs")
SOURCES_HELP = "/messages/*, /messages/modules/<m>/*, /messages/modules/<m>/outputs/* or /messages/modules/<m>/outputs/<o>"
SINKS_HELP = '$upstream or BrokeredEndpoint("/modules/<m>/inputs/<i>")'
# Functions edgeHub has that the local edge does not evaluate: refused with a clearer message than a typo gets.
EDGEHUB_ONLY_FUNCTIONS = frozenset(
    {"ABS", "EXP", "POWER", "SQUARE", "CEILING", "FLOOR", "SIGN", "SQRT", "AS_NUMBER", "CONCAT", "LENGTH", "LOWER", "UPPER"}
    | {"SUBSTRING", "INDEX_OF", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "TWIN_CHANGE_INCLUDES"}
)


class RouteError(ValueError):
    """Every problem found in the routes, so a manifest is fixed in one round; `problems` has one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the routes:\n" + "\n".join(f"- {p}" for p in self.problems))


class _Undefined:
    """IoT Hub's `undefined`: a missing value. Falsy, and never equal to anything but itself."""

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


@dataclass(frozen=True)
class Message:
    """What a route sees of a message; `properties` are the MQTT-level ones (`$.mid`, `$.ct`... plus custom keys)."""

    module: str  # sending module id ("" for a device message)
    output: str  # output name ("" when none)
    body: bytes
    properties: Mapping[str, str]

    @functools.cached_property
    def json_body(self) -> Any:
        """The body as a JSON object if the content type and encoding allow it, else UNDEFINED. Parsed once."""
        content_type = self.properties.get("$.ct", "")
        encoding = self.properties.get("$.ce", "").lower()
        if content_type.lower() != JSON_CONTENT_TYPE or encoding not in JSON_ENCODINGS:
            return UNDEFINED
        try:
            body = json.loads(self.body.decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            log.debug("message from %r output %r: body is not JSON (%s); $body reads as undefined", self.module, self.output, exc)
            return UNDEFINED
        return body if isinstance(body, dict) else UNDEFINED


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


@dataclass(frozen=True)
class Source:
    """Which messages a route reads: module None means every sender; output None means every output."""

    module: str | None = None
    output: str | None = None
    named_outputs_only: bool = False  # `/outputs/*` skips messages sent without an output name

    def matches(self, msg: Message) -> bool:
        if self.module is None:
            return True
        if msg.module != self.module:
            return False
        if self.output is not None:
            return msg.output == self.output
        return bool(msg.output) or not self.named_outputs_only


# --- values and their comparison ------------------------------------------------------------------------------------


class _PropertyText(str):
    """An application property's value: a string that also compares as a number against a number."""

    NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

    def number(self) -> float | None:
        text = self.strip()
        return float(text) if self.NUMBER.fullmatch(text) else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int in Python, not in JSON
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "compound"  # JSON object or array


def _as_number_against(value: Any, other: Any) -> Any:
    if isinstance(value, _PropertyText) and _kind(other) == "number":
        number = value.number()
        return value if number is None else number
    return value


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(op: str, left: Any, right: Any) -> Any:
    """True, False or UNDEFINED, with the type rules described in the module docstring."""
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    left, right = _as_number_against(left, right), _as_number_against(right, left)
    left_kind, right_kind = _kind(left), _kind(right)
    if "compound" in (left_kind, right_kind):
        return UNDEFINED
    if left_kind != right_kind:
        return {"=": False, "!=": True}.get(op, UNDEFINED)
    if left_kind == "null":
        return op in ("=", "<=", ">=")
    return _OPERATORS[op](left, right)


def _truth(value: Any) -> Any:
    return value if isinstance(value, bool) else UNDEFINED


FUNCTIONS: dict[str, Callable[[Any], bool]] = {
    "IS_BOOL": lambda v: isinstance(v, bool),
    "IS_DEFINED": lambda v: v is not UNDEFINED,
    "IS_NULL": lambda v: v is None,
    "IS_NUMBER": lambda v: _kind(v) == "number",
    "IS_STRING": lambda v: isinstance(v, str),
}


def _present(value: str | None) -> Any:
    return value if value else UNDEFINED


SYSTEM_PROPERTIES: dict[str, Callable[[Message], Any]] = {
    "$contentType": lambda m: _present(m.properties.get("$.ct")),
    "$contentEncoding": lambda m: _present(m.properties.get("$.ce")),
    "$messageId": lambda m: _present(m.properties.get("$.mid")),
    "$correlationId": lambda m: _present(m.properties.get("$.cid")),
    # The device id is not on a module's MQTT publish: edgeHub adds it as $.cdid, so the orchestrator may too.
    "$connectionDeviceId": lambda m: _present(m.properties.get("$.cdid")),
    "$connectionModuleId": lambda m: _present(m.module or m.properties.get("$.cmid")),
    "$outputName": lambda m: _present(m.output),
}


# --- the condition tree: every node evaluates against a message -----------------------------------------------------


class _Node:
    def evaluate(self, msg: Message) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class _Literal(_Node):
    value: Any

    def evaluate(self, msg: Message) -> Any:
        return self.value


@dataclass(frozen=True)
class _BodyField(_Node):
    path: tuple[str, ...]

    def evaluate(self, msg: Message) -> Any:
        node = msg.json_body
        for key in self.path:
            if not isinstance(node, dict) or key not in node:
                return UNDEFINED
            node = node[key]
        return node


@dataclass(frozen=True)
class _AppProperty(_Node):
    name: str

    def evaluate(self, msg: Message) -> Any:
        value = msg.properties.get(self.name)
        return UNDEFINED if value is None else _PropertyText(value)


@dataclass(frozen=True)
class _SystemProperty(_Node):
    name: str

    def evaluate(self, msg: Message) -> Any:
        return SYSTEM_PROPERTIES[self.name](msg)


@dataclass(frozen=True)
class _Call(_Node):
    function: str
    argument: _Node

    def evaluate(self, msg: Message) -> Any:
        return FUNCTIONS[self.function](self.argument.evaluate(msg))


@dataclass(frozen=True)
class _Compare(_Node):
    op: str
    left: _Node
    right: _Node

    def evaluate(self, msg: Message) -> Any:
        return _compare(self.op, self.left.evaluate(msg), self.right.evaluate(msg))


@dataclass(frozen=True)
class _Truth(_Node):
    """An operand used as a condition (`$body.enabled`): only a boolean is true or false."""

    operand: _Node

    def evaluate(self, msg: Message) -> Any:
        return _truth(self.operand.evaluate(msg))


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, msg: Message) -> Any:
        value = self.operand.evaluate(msg)
        return UNDEFINED if value is UNDEFINED else not value


@dataclass(frozen=True)
class _Junction(_Node):
    """AND (`decisive` False) or OR (`decisive` True), three-valued: a decisive operand settles it,
    else an undefined operand leaves it undefined."""

    left: _Node
    right: _Node
    decisive: bool

    def evaluate(self, msg: Message) -> Any:
        left = self.left.evaluate(msg)
        if left is self.decisive:
            return self.decisive
        right = self.right.evaluate(msg)
        if right is self.decisive:
            return self.decisive
        return UNDEFINED if UNDEFINED in (left, right) else not self.decisive


@dataclass(frozen=True)
class Route:
    """One parsed route. Lower `priority` is more urgent (0-9, DEFAULT_PRIORITY when unset); TTL 0 = hub default."""

    name: str
    text: str
    priority: int
    sink: Sink
    source: Source = Source()
    condition: _Node | None = None
    time_to_live_secs: int = 0

    def matches(self, msg: Message) -> bool:
        return self.source.matches(msg) and (self.condition is None or self.condition.evaluate(msg) is True)


# --- tokenizer ------------------------------------------------------------------------------------------------------


def _string_pattern(quote: str) -> str:
    """A quoted string with edgeHub's escapes: \\' \\" \\\\ and \\uXXXX."""
    return quote + r"""(?:\\(?:["'\\]|u[0-9a-fA-F]{4})|[^""" + quote + r"""\\])*""" + quote


_TOKEN = re.compile(
    rf"""
      (?P<ws>\s+)
    | (?P<string>{_string_pattern("'")}|{_string_pattern('"')})
    | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),*])
    | (?P<system>\$[\w.\[\]-]*)
    | (?P<path>/\S*)
    | (?P<name>[A-Za-z_][\w.-]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "INTO", "AND", "OR", "NOT"})
_LITERAL_NAMES = {"true": True, "false": False, "null": None}  # lowercase only, as edgeHub's lexer
_ESCAPE = re.compile(r"""\\(?:u([0-9a-fA-F]{4})|(["'\\]))""")


class _SyntaxError(Exception):
    """The route cannot be parsed further; the message says where."""


@dataclass(frozen=True)
class _Token:
    kind: str  # literal (string, number, true/false/null), keyword, name, system ($...), path, op, punct, end
    text: str
    col: int  # 1-based
    value: Any = None

    def describe(self) -> str:
        return "end of route" if self.kind == "end" else repr(self.text)


def _unescape(quoted: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], quoted[1:-1])


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        col = pos + 1
        if match is None:
            char = text[pos]
            if char in "'\"":
                closed = re.match(rf"{char}(?:\\.|[^{char}\\])*{char}", text[pos:])
                if closed:
                    raise _SyntaxError(f"bad escape in the string at col {col}: use \\', \\\", \\\\ or \\uXXXX")
                raise _SyntaxError(f"unterminated string starting at col {col}")
            raise _SyntaxError(f"unexpected character {char!r} at col {col}")
        kind, word = match.lastgroup or "", match.group()
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(_Token("literal", word, col, _unescape(word)))
        elif kind == "number":
            number = int(word, 16) if "x" in word.lower() else float(word) if re.search(r"[.eE]", word) else int(word)
            tokens.append(_Token("literal", word, col, number))
        elif kind == "name" and word.upper() in _KEYWORDS:
            tokens.append(_Token("keyword", word, col, word.upper()))
        elif kind == "name" and word in _LITERAL_NAMES:
            tokens.append(_Token("literal", word, col, _LITERAL_NAMES[word]))
        else:
            tokens.append(_Token(kind, word, col))
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _doubled_quote(previous: _Token, token: _Token) -> bool:
    """'it''s': two strings back to back, SQL's quote escape, which edgeHub's lexer does not have."""
    quote = token.text[:1]
    adjacent = previous.col + len(previous.text) == token.col
    return quote in ("'", '"') and previous.kind == token.kind == "literal" and previous.text.endswith(quote) and adjacent


# --- parser ---------------------------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over one route. Syntax errors stop it; other problems are collected and parsing goes on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[_Token] = []
        self.pos = 0
        self.problems: list[str] = []

    def parse(self) -> tuple[Source | None, _Node | None, Sink | None]:
        self.tokens = _tokenize(self.text)
        return self.route()

    # token helpers
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += min(1, len(self.tokens) - 1 - self.pos)  # stay on the end token
        return token

    def at(self, kind: str, value: Any = None, text: str | None = None) -> bool:
        token = self.peek()
        return token.kind == kind and (value is None or token.value == value) and (text is None or token.text == text)

    def fail(self, expected: str, token: _Token | None = None) -> NoReturn:
        token = token or self.peek()
        index = self.tokens.index(token)
        hint = (
            " (a quote inside a string is written \\', not '')" if index and _doubled_quote(self.tokens[index - 1], token) else ""
        )
        raise _SyntaxError(f"{expected} at col {token.col}, got {token.describe()}{hint}")

    def expect_punct(self, char: str, expected: str) -> _Token:
        if not self.at("punct", text=char):
            self.fail(expected)
        return self.advance()

    # route := [SELECT *] FROM source [WHERE condition] INTO sink
    def route(self) -> tuple[Source | None, _Node | None, Sink | None]:
        if self.at("keyword", "SELECT"):
            self.advance()
            self.expect_punct("*", "expected * after SELECT")
        if not self.at("keyword", "FROM"):
            self.fail("expected the route to start with FROM")
        self.advance()
        if not self.at("path"):
            self.fail("expected a source like /messages/* after FROM")
        source = self.source(self.advance())
        condition = None
        if self.at("keyword", "WHERE"):
            self.advance()
            condition = self.condition("WHERE")
        if not self.at("keyword", "INTO"):
            self.fail("expected AND, OR or INTO" if condition else "expected WHERE or INTO after the source")
        self.advance()
        sink = self.sink()
        if not self.at("end"):
            self.fail("expected the end of the route after the sink")
        return source, condition, sink

    def source(self, token: _Token) -> Source | None:
        match = re.fullmatch(rf"/messages/(?:\*|modules/(?P<m>{MODULE_NAME})/(?:\*|outputs/(?P<o>[^/*]+|\*)))", token.text)
        if match is None:
            self.problems.append(f"unsupported source {token.text!r} at col {token.col}: use {SOURCES_HELP}")
            return None
        output = match["o"]
        return Source(match["m"], None if output in (None, "*") else output, named_outputs_only=output is not None)

    def sink(self) -> Sink | None:
        token = self.advance()
        if token.kind == "system":
            if token.text.lower() == "$upstream":
                return Upstream()
            self.problems.append(f"unsupported sink {token.text!r} at col {token.col}: use {SINKS_HELP}")
            return None
        if token.kind != "name" or not self.at("punct", text="("):
            self.fail(f"expected a sink ({SINKS_HELP}) after INTO", token)
        self.advance()
        if not (self.at("literal") and isinstance(self.peek().value, str)):
            self.fail(f'expected a quoted address like "/modules/<m>/inputs/<i>" in {token.text}(...)')
        address = self.advance()
        self.expect_punct(")", f"expected ')' to close {token.text}(")
        if token.text.lower() != "brokeredendpoint":
            self.problems.append(f"unsupported sink {token.text}(...) at col {token.col}: use {SINKS_HELP}")
            return None
        # edgeHub trims the address and an optional leading and trailing '/'
        match = re.fullmatch(rf"/?modules/(?P<m>{MODULE_NAME})/inputs/(?P<i>[^/]+?)/?", address.value.strip())
        if match:
            return ModuleInput(match["m"], match["i"])
        self.problems.append(
            f'bad BrokeredEndpoint address {address.value!r} at col {address.col}: use "/modules/<m>/inputs/<i>"'
        )
        return None

    # condition := conjunction (OR conjunction)* ; conjunction := negation (AND negation)* ; negation := NOT negation | comparison
    def condition(self, after: str) -> _Node:
        node = self.conjunction(after)
        while self.at("keyword", "OR"):
            self.advance()
            node = _Junction(node, self.conjunction("OR"), decisive=True)
        return node

    def conjunction(self, after: str) -> _Node:
        node = self.negation(after)
        while self.at("keyword", "AND"):
            self.advance()
            node = _Junction(node, self.negation("AND"), decisive=False)
        return node

    def negation(self, after: str) -> _Node:
        if self.at("keyword", "NOT"):
            self.advance()
            return _Not(self.negation("NOT"))
        return self.comparison(after)

    # comparison := operand [op operand]
    def comparison(self, after: str) -> _Node:
        if not self.starts_operand():
            self.fail(f"expected a comparison after {after}")
        start = self.peek()
        left = self.operand()
        if self.at("op"):
            op = self.advance()
            if not self.starts_operand():
                self.fail(f"expected a value after {op.text!r}")
            return _Compare("!=" if op.text == "<>" else op.text, left, self.operand())
        if start.kind == "literal" and not isinstance(start.value, bool):
            self.problems.append(f"the literal {start.text} at col {start.col} is not a condition: compare it with something")
        return _Truth(left)

    def starts_operand(self) -> bool:
        return self.peek().kind in ("literal", "name", "system") or self.at("punct", text="(")

    def operand(self) -> _Node:
        token = self.advance()
        if token.kind == "literal":
            return _Literal(token.value)
        if token.kind == "system":
            return self.system_property(token)
        if token.kind == "name":
            return self.call(token) if self.at("punct", text="(") else _AppProperty(token.text)
        inner = self.condition("'('")  # token is '('
        self.expect_punct(")", f"expected ')' matching the '(' of col {token.col}")
        return inner

    def call(self, name: _Token) -> _Node:
        self.advance()  # '('
        function = name.text.upper()
        if function not in FUNCTIONS:
            why = "edgeHub has it but the local edge does not evaluate it; " if function in EDGEHUB_ONLY_FUNCTIONS else ""
            self.problems.append(f"unsupported function {name.text} at col {name.col}: {why}supported are {', '.join(FUNCTIONS)}")
        if not self.starts_operand():
            self.fail(f"expected an argument for {name.text}")
        argument = self.operand()
        self.expect_punct(")", f"expected ')' after the one argument of {name.text}")
        return _Call(function, argument) if function in FUNCTIONS else _Literal(UNDEFINED)

    def system_property(self, token: _Token) -> _Node:
        text = token.text
        if text.lower() == "$body" or text[:6].lower() in ("$body.", "$body["):
            path = tuple(text[6:].split("."))
            if "[" in text or "]" in text:
                self.problems.append(f"{text} at col {token.col}: the local edge does not support array indexing in $body")
            elif text.lower() == "$body" or not all(path):
                self.problems.append(f"{text} at col {token.col}: $body needs a dotted path like $body.label")
            return _BodyField(path)
        if text in SYSTEM_PROPERTIES:
            return _SystemProperty(text)
        self.problems.append(
            f"unknown system property {text} at col {token.col}: supported are $body.<path>, {', '.join(SYSTEM_PROPERTIES)}"
        )
        return _Literal(UNDEFINED)


# --- public API -----------------------------------------------------------------------------------------------------


def _route_value(name: str, value: Any, problems: list[str]) -> tuple[str | None, int, int]:
    """(route text, priority, timeToLiveSecs) of a string or object-form route; problems go to `problems`."""
    if isinstance(value, str):
        return value, DEFAULT_PRIORITY, 0
    if not isinstance(value, Mapping):
        problems.append(f'route {name!r}: expected "FROM ... INTO ..." or {{"route": ..., "priority": 0-9, "timeToLiveSecs": n}}')
        return None, DEFAULT_PRIORITY, 0
    unknown = sorted(set(value) - set(ROUTE_KEYS))
    if unknown:
        problems.append(
            f"route {name!r}: unknown key(s) {', '.join(map(repr, unknown))}: the object form has {', '.join(ROUTE_KEYS)}"
        )
    text = value.get("route")
    if not isinstance(text, str):
        problems.append(f'route {name!r}: the object form needs "route": "FROM ... INTO ..."')
        text = None
    priority, ttl = value.get("priority", DEFAULT_PRIORITY), value.get("timeToLiveSecs", 0)
    if "priority" in value and not (type(priority) is int and 0 <= priority <= 9):
        problems.append(f"route {name!r}: priority must be an integer from 0 (highest) to 9, not {priority!r}")
    if not (type(ttl) is int and ttl >= 0):
        problems.append(f"route {name!r}: timeToLiveSecs must be a whole number of seconds >= 0, not {ttl!r}")
    return text, priority, ttl


def _parse_route(name: str, value: Any, problems: list[str]) -> Route | None:
    before = len(problems)
    if not ROUTE_NAME.match(name):
        problems.append(f"route name {name!r} may not contain '.', '$', '#' or spaces")
    text, priority, ttl = _route_value(name, value, problems)
    if text is None:
        return None
    parser = _Parser(text)
    try:
        source, condition, sink = parser.parse()
    except _SyntaxError as exc:
        parser.problems.append(str(exc))
        source, condition, sink = None, None, None
    problems.extend(f"route {name!r}: {problem}" for problem in parser.problems)
    if len(problems) > before or source is None or sink is None:
        return None
    return Route(name, text, priority, sink, source, condition, ttl)


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


def referenced_modules(routes: Iterable[Route]) -> set[str]:
    """Every module named in a route's source or sink, for checking them against the deployed modules."""
    modules: set[str] = set()
    for route in routes:
        modules.update(m for m in (route.source.module, getattr(route.sink, "module", None)) if m is not None)
    return modules
