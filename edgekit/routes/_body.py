"""`$body.<path>` as edgeHub reads it: which bodies it parses, which paths it accepts, what a path returns.

edgeHub (Routing.Core Message.GetQueryValue, JsonMessageQueryValueProvider, BodyQuery) parses the body only when
the message's contentEncoding is utf-8, utf-16 or utf-32 (any case; .NET's UTF8, Unicode = UTF-16 little endian
and UTF32 = little endian, a byte order mark is not skipped) and its contentType is application/json (any case,
nothing after it), and only a JSON object (Newtonsoft's JObject.Parse). Anything else makes every `$body` query
undefined.

A path is validated against edgeHub's JsonPath.g4 (`name(.name)*`, each name optionally followed by `[n]`; a
name made of digits only is refused) and run as Newtonsoft's SelectTokens runs it: a field name matches exactly,
`[n]` indexes an array, `*` is every child, a leading `$` is the root. What the query returns:

    nothing matched          MISSING (edgeHub's null: `$body.nope = null` is true, IS_DEFINED of it is true)
    more than one match      undefined
    an object or an array    undefined
    a string Newtonsoft parses as a date (ISO 8601 like 2017-03-09T00:00:00Z, or /Date(ms)/)   undefined
    a JSON null              None
    true/false, a number, any other string    bool, float, str

Newtonsoft reads JSON more leniently than Python's json (comments, single quotes, unquoted names, trailing
commas): such bodies are not JSON here, so their `$body` queries are undefined where edgeHub would read them.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ._values import MISSING, UNDEFINED

JSON_CONTENT_TYPE = "application/json"
ENCODINGS = {"utf-8": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}


class PathError(ValueError):
    """A `$body` path edgeHub's validator refuses."""


def read_body(body: bytes, content_type: Any, content_encoding: Any) -> dict[str, Any] | str:
    """The body as a JSON object, or why edgeHub cannot read it (a str)."""
    if not isinstance(content_encoding, str):
        return "Content encoding is not specified in system properties."
    codec = ENCODINGS.get(content_encoding.lower())
    if codec is None:
        return f"Content encoding '{content_encoding}' is not supported."
    if not isinstance(content_type, str):
        return "Content type is not specified in system properties."
    if content_type.lower() != JSON_CONTENT_TYPE:
        return f"Content type '{content_type}' is not supported."
    try:
        document = json.loads(body.decode(codec, "replace"))
    except ValueError as exc:
        return f"the body is not JSON: {exc}"
    if not isinstance(document, dict):
        return f"the body is JSON but not an object (a {type(document).__name__})"
    return document


# --- paths -------------------------------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(
    r"""(?P<int>[0-9]+(?![^()<>@,;:\\"/\[\]?={}.\t\n\r]))|(?P<ident>[^()<>@,;:\\"/\[\]?={}.\t\n\r]+)|(?P<p>[.\[\]])"""
)
_TRAILING_STEP = re.compile(r"""\[(?:(?P<index>[0-9]+)|'(?P<name>(?:[^'\\]|\\.)*)'|(?P<star>\*))\]|\.(?P<dot>[^.\[\]() ]+)""")

Step = tuple[str, Any]  # ("key", name) | ("index", n) | ("all", None)
MAX_INDEX = 2**31 - 1


def _tokens(path: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _PATH_TOKEN.finditer(path):
        kind = match.lastgroup or ""
        tokens.append((kind if kind != "p" else match.group(), match.group()))
    return tokens


def compile_path(path: str) -> tuple[Step, ...] | None:
    """The steps of a `$body` path, or None when Newtonsoft cannot run what edgeHub's validator let through
    (then the query is undefined for every message). Raises PathError when the validator refuses it.

    The validator (JsonPath.g4 has no EOF) accepts a valid prefix and ignores the rest, which only an indexer
    can leave (`a[0][1]`); Newtonsoft then reads the rest itself: `[n]`, `['name']`, `[*]` and `.name` work,
    anything else throws.
    """
    if not path:
        raise PathError("$body query cannot be empty")
    tokens = _tokens(path)
    steps: list[Step] = []
    pos = 0
    consumed = 0  # characters of `path` the validator read

    def expect(kind: str, what: str) -> str:
        nonlocal pos, consumed
        if pos >= len(tokens) or tokens[pos][0] != kind:
            got = repr(tokens[pos][1]) if pos < len(tokens) else "the end"
            raise PathError(f"Error in $body query. expected {what} at {got} in '{path}'")
        text = tokens[pos][1]
        pos += 1
        consumed += len(text)
        return text

    while True:
        name = expect("ident", "a name")
        steps.append(("all", None) if name == "*" else ("key", name))
        if pos < len(tokens) and tokens[pos][0] == "[":
            expect("[", "'['")
            steps.append(("index", int(expect("int", "an index"))))
            expect("]", "']'")
        if pos < len(tokens) and tokens[pos][0] == ".":
            expect(".", "'.'")
            continue
        break
    if steps[0] == ("key", "$"):  # Newtonsoft: a leading $ followed by . or [ is the root
        steps.pop(0)
    rest = path[consumed:]
    while rest:
        match = _TRAILING_STEP.match(rest)
        if match is None:
            return None
        if match["index"] is not None:
            steps.append(("index", int(match["index"])))
        elif match["star"] or match["dot"] == "*":
            steps.append(("all", None))
        elif match["dot"] is not None:
            steps.append(("key", match["dot"]))
        else:
            steps.append(("key", re.sub(r"\\(.)", r"\1", match["name"])))
        rest = rest[match.end() :]
    if any(kind == "index" and value > MAX_INDEX for kind, value in steps):
        return None  # Newtonsoft's int.Parse throws
    return tuple(steps)


def select(document: Mapping[str, Any], steps: tuple[Step, ...]) -> list[Any]:
    """Newtonsoft's SelectTokens: every token the path reaches."""
    current: list[Any] = [document]
    for kind, value in steps:
        found: list[Any] = []
        for token in current:
            if kind == "key":
                if isinstance(token, dict) and value in token:
                    found.append(token[value])
            elif kind == "index":
                if isinstance(token, list) and value < len(token):
                    found.append(token[value])
            elif isinstance(token, dict):
                found.extend(token.values())
            elif isinstance(token, list):
                found.extend(token)
        current = found
    return current


def query_value(document: Mapping[str, Any], steps: tuple[Step, ...]) -> Any:
    """What BodyQuery returns for the path (see the module docstring)."""
    tokens = select(document, steps)
    if not tokens:
        return MISSING
    if len(tokens) > 1:
        return UNDEFINED
    return leaf_value(tokens[0])


def field_value(document: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """query_value for a path of names only (`a.b.c`), the common case, without the general walk."""
    node: Any = document
    for key in keys:
        if type(node) is not dict or key not in node:
            return MISSING
        node = node[key]
    return leaf_value(node)


def leaf_value(token: Any) -> Any:
    """What one token the path reached is as a QueryValue."""
    kind = type(token)
    if kind is str:
        return UNDEFINED if is_newtonsoft_date(token) else token
    if kind is bool or token is None:
        return token
    if kind is float:
        return token
    if kind is int:
        try:
            return float(token)
        except OverflowError:
            return math.copysign(math.inf, token)
    return UNDEFINED  # object or array


# --- Newtonsoft's date strings (DateParseHandling.DateTime, JObject.Parse's default) ----------------------------

_MS_DATE = re.compile(r"/Date\((-?[0-9]+)(?:[+-][0-9]{4})?\)/")


def is_newtonsoft_date(text: str) -> bool:
    """Whether Newtonsoft reads this JSON string as a date (DateTimeUtils.TryParseDateTime), which edgeHub's
    QueryValue does not support: a `$body` query on it is undefined."""
    if text[:1] == "/":
        match = _MS_DATE.fullmatch(text)
        return match is not None and -(2**63) <= int(match[1]) < 2**63
    if not (19 <= len(text) <= 40 and text[0].isdigit() and text[10] == "T"):
        return False
    return _iso_date(text)


def _digits(text: str, start: int, count: int) -> int | None:
    part = text[start : start + count]
    return int(part) if len(part) == count and part.isascii() and part.isdigit() else None


def _iso_date(text: str) -> bool:
    """Newtonsoft's DateTimeParser.Parse: yyyy-MM-ddTHH:mm:ss[.fffffff][Z|±HH[:]mm]."""
    year, month, day = _digits(text, 0, 4), _digits(text, 5, 2), _digits(text, 8, 2)
    if year is None or month is None or day is None or text[4] != "-" or text[7] != "-":
        return False
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return False
    hour, minute, second = _digits(text, 11, 2), _digits(text, 14, 2), _digits(text, 17, 2)
    if hour is None or minute is None or second is None or text[13:14] != ":" or text[16:17] != ":":
        return False
    if not (hour <= 24 and minute < 60 and second < 60 and (hour != 24 or (minute == 0 and second == 0))):
        return False
    pos, end = 19, len(text)
    if pos < end and text[pos] == ".":
        digits = 0
        fraction = 0
        while pos + 1 < end and digits < 7 and "0" <= text[pos + 1] <= "9":
            pos += 1
            digits += 1
            fraction = fraction * 10 + int(text[pos])
        if digits == 0 or (hour == 24 and fraction):
            return False
        pos += 1
    return _zone(text, pos, end)


def _zone(text: str, pos: int, end: int) -> bool:
    if pos < end:
        char = text[pos]
        if char in "Zz":
            pos += 1
        else:
            if pos + 2 < end and _digits(text, pos + 1, 2) is not None and char in "+-":
                pos += 3
            if pos < end:
                if text[pos] == ":":
                    pos += 1
                    if pos + 1 < end and _digits(text, pos, 2) is not None:
                        pos += 2
                elif pos + 1 < end and _digits(text, pos, 2) is not None:
                    pos += 2
    return pos == end
