"""`$VAR` and `${VAR}` expansion as iotedgedev 3.3.7 does it, with every problem kept for the report.

iotedgedev reads a template (and each module.json) with `os.path.expandvars(text)` over the whole file before it
parses the JSON (`Utility.get_file_contents(path, expandvars=True)`): `$NAME` (letters, digits, `_`) and `${ANY}`
are replaced when NAME is an environment variable (.env loaded under the process environment), and left as written
otherwise. So:
  - `"timeToLiveSecs": ${TTL}` becomes the number 7200 when TTL=7200: outside JSON strings the value goes in as JSON
    text. Here too; if TTL is not set the file is not JSON, and that is reported with its line.
  - `"$USERNAME"` is expanded like `"${USERNAME}"`. iotedgedev leaves an unset one in the manifest silently; here an
    unset `$NAME` written in capitals (an environment variable's shape) is a problem. IoT Edge's own `$edgeAgent`,
    `$upstream`, `$body`... are left alone, as by iotedgedev, unless the environment defines that very name.
  - `${MODULES.x}` and `${MODULEDIR<...>}` are not environment variables: they survive expansion, and iotedgedev
    replaces them afterwards, as a user module's whole `settings.image` only (deploy/solution.py).
Inside strings the value is inserted as the string's text (JSON-escaped), where iotedgedev inserts it into the raw
file: a value holding `"` or `\\` breaks iotedgedev's JSON and is kept intact here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Json = Any
JsonPath = tuple[str | int, ...]

VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)  # posixpath.expandvars' own pattern
ENV_LIKE = re.compile(r"[A-Z][A-Z0-9_]*")  # how environment variables are written; IoT Edge's own $words are not
SOLUTION_PLACEHOLDER = re.compile(r"^(MODULES\.|MODULEDIR<)")


@dataclass(frozen=True)
class Ref:
    """One `$NAME` or `${NAME}` as written."""

    text: str
    name: str
    braced: bool

    @property
    def solution_placeholder(self) -> bool:
        """`${MODULES...}` / `${MODULEDIR<...>...}`: resolved from module.json files, not from variables."""
        return self.braced and bool(SOLUTION_PLACEHOLDER.match(self.name))


def expandvars(text: str, variables: Mapping[str, str]) -> tuple[str, list[Ref], list[Ref]]:
    """posixpath.expandvars over `variables`: (result, the references replaced, the references left as written)."""
    expanded: list[Ref] = []
    unresolved: list[Ref] = []
    if "$" not in text:
        return text, expanded, unresolved
    i = 0
    while match := VARIABLE.search(text, i):
        i, j = match.span(0)
        name, braced = match.group(1), match.group(1).startswith("{")
        if braced:
            name = name[1:-1]
        ref = Ref(match.group(0), name, braced)
        if name in variables:
            value = variables[name]
            tail = text[j:]
            text = text[:i] + value
            i = len(text)
            text += tail
            expanded.append(ref)
        else:
            unresolved.append(ref)
            i = j
    return text, expanded, unresolved


def string_spans(text: str) -> Iterator[tuple[bool, int, int]]:
    """(inside a JSON string, start, end) for consecutive pieces of `text`; a string's span includes its quotes."""
    start = 0
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                yield True, start, i + 1
                start, in_string = i + 1, False
        elif char == '"':
            if i > start:
                yield False, start, i
            start, in_string = i, True
    if start < len(text):
        yield in_string, start, len(text)


@dataclass(frozen=True)
class Issue:
    """A problem found while expanding: `where` is a JSON path (tuple) or a line number (int)."""

    where: JsonPath | int
    ref: Ref | None
    what: str
    kind: str  # "unset" (a variable that is not set), "shadowed" (IoT Edge's $word replaced), "json"


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def expand_outside_strings(text: str, variables: Mapping[str, str]) -> tuple[str, list[Issue]]:
    """Placeholders between JSON values (`"ttl": ${TTL}`) replaced by their values as JSON text, as iotedgedev does."""
    pieces: list[str] = []
    issues: list[Issue] = []
    for in_string, start, end in string_spans(text):
        piece = text[start:end]
        if in_string or "$" not in piece:
            pieces.append(piece)
            continue
        new, _, unresolved = expandvars(piece, variables)
        for ref in unresolved:
            line = _line(text, start + piece.index(ref.text))
            issues.append(Issue(line, ref, f"{ref.text} is outside a JSON string and {ref.name} is not set", "unset"))
        pieces.append(new)
    return "".join(pieces), issues


def expand_strings(node: Json, variables: Mapping[str, str], path: JsonPath = ()) -> tuple[Json, list[Issue]]:
    """A copy of a parsed document with `$NAME`/`${NAME}` expanded in every string, keys included."""
    issues: list[Issue] = []

    def one(text: str, where: JsonPath) -> str:
        new, expanded, unresolved = expandvars(text, variables)
        for ref in unresolved:
            if ref.solution_placeholder:
                continue  # left for deploy/solution.py, as iotedgedev leaves them for its image step
            if ref.braced or ENV_LIKE.fullmatch(ref.name):
                issues.append(Issue(where, ref, f"{ref.text}: {ref.name} is not set", "unset"))
        for ref in expanded:
            if not ref.braced and not ENV_LIKE.fullmatch(ref.name) and ref.name[:1].islower():
                issues.append(Issue(where, ref, f"{ref.text} was replaced by the value of the variable {ref.name}", "shadowed"))
        return new

    def walk(value: Json, where: JsonPath) -> Json:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out[one(key, (*where, key))] = walk(item, (*where, key))
            return out
        if isinstance(value, list):
            return [walk(item, (*where, i)) for i, item in enumerate(value)]
        if isinstance(value, str):
            return one(value, where)
        return value

    return walk(node, path), issues


def load_expanded(text: str, variables: Mapping[str, str]) -> tuple[Json, list[Issue]]:
    """Expand and parse a template or module.json as iotedgedev does; (None, issues) if it is not JSON afterwards."""
    outside, issues = expand_outside_strings(text, variables)
    try:
        doc = json.loads(outside)
    except json.JSONDecodeError as err:
        if not issues:  # an unset placeholder between values already explains why it is not JSON
            issues.append(Issue(err.lineno, None, f"not valid JSON: {err.msg} (column {err.colno})", "json"))
        return None, issues
    expanded, inside = expand_strings(doc, variables)
    return expanded, issues + inside
