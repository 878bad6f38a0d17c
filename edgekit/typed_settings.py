"""Settings declared once, read from the environment or from a JSON document (a module twin).

A program declares its settings as a frozen dataclass whose fields are made with `setting()`:
each carries its environment variable, its twin (desired-property) name, whether it can change
while running, its bounds and its help text. From that one declaration come parsing (by the
field's type), bounds checks, the README's tables and the refusals, which name every problem at
once so that a user fixes a deployment in one round.

Types understood: int, float, bool, str, tuple[str, ...] (comma-separated in the environment, a
JSON list or one comma-separated string in a twin), and `float | None`. A field can bring its own
environment parser (e.g. a .NET TimeSpan).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_SPEC = "setting"
_NULLS = ("", "none", "null")


@dataclass(frozen=True)
class Spec:
    """What is known of one setting besides its type and default."""

    env: str
    help: str
    twin: str = ""  # desired-property name; "" makes it the field's name in camelCase
    live: bool = False  # may change while running (from the twin)
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    above: float | None = None  # exclusive
    below: float | None = None  # exclusive
    limit_note: str = ""  # said after a range, e.g. " (IoT Hub's limit)"
    cap: float | None = None  # a sanity ceiling, inclusive: past it a value is a typo or an attack
    choices: tuple[str, ...] = ()  # case-insensitive
    max_items: int | None = None  # for lists of names
    max_length: int | None = None  # characters of a string, or of each name in a list
    secret: bool = False  # never shown: not in reports, logs or `settings` output
    parse_env: Callable[[str], Any] | None = None  # instead of the type's parser
    default_text: str = ""  # for the README when the default is not the literal value
    twin_text: str = ""  # the twin type for the README, when the generic one is not clear enough


def setting(default: Any, **spec: Any) -> Any:
    """A dataclass field carrying its Spec (see Spec for the keywords)."""
    return dataclasses.field(default=default, metadata={_SPEC: Spec(**spec)})


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # int, float, bool, str, names, optional_float
    default: Any
    spec: Spec

    @property
    def twin(self) -> str:
        if self.spec.twin:
            return self.spec.twin
        head, *rest = self.name.split("_")
        return head + "".join(part.capitalize() for part in rest)


_KINDS = {
    int: "int",
    float: "float",
    bool: "bool",
    str: "str",
    tuple[str, ...]: "names",
    float | None: "optional_float",
    int | None: "optional_int",
}


def fields_of(cls: type) -> list[Field]:
    """The declared settings of `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = _KINDS.get(hints[f.name])
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: type {hints[f.name]} has no parser")
        out.append(Field(f.name, kind, f.default, f.metadata[_SPEC]))
    return out


class SettingsError(ValueError):
    """One or more settings are invalid; `problems` has one line each, naming the setting."""

    MAX_LISTED = 20  # a hostile document can hold thousands of problems; people need the first few

    def __init__(self, heading: str, problems: list[str] | None = None) -> None:
        listed = (problems or [])[: self.MAX_LISTED]
        more = len(problems or []) - len(listed)
        lines = listed + ([f"... and {more} more"] if more else [])
        super().__init__(heading + ":\n  " + "\n  ".join(lines) if problems else heading)
        self.problems = problems or [heading]


# --- parsing: text from the environment ------------------------------------------------------


def _env_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _env_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _env_optional_float(text: str) -> float | None:
    return None if text.strip().lower() in _NULLS else float(text)


_ENV_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _env_bool,
    "str": str,
    "names": _env_names,
    "optional_float": _env_optional_float,
    "optional_int": lambda text: None if text.strip().lower() in _NULLS else int(text),
}

# --- parsing: JSON values from a twin --------------------------------------------------------


def _json_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number")
    return value


def _json_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    try:
        return float(value)
    except OverflowError:  # a JSON integer of 400 digits
        raise ValueError("expected a finite number") from None


def _text(value: str) -> str:
    """A string that can travel as UTF-8 (a lone surrogate cannot: it would break every report)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("expected text (it holds an unpaired surrogate)") from None
    return value


def _json_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _json_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return _text(value)


def _json_names(value: Any) -> tuple[str, ...]:
    """A JSON list of strings, or one comma-separated string as in the environment."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(_text(v.strip()) for v in value if v.strip())


_JSON_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": _json_int,
    "float": _json_float,
    "bool": _json_bool,
    "str": _json_str,
    "names": _json_names,
    "optional_float": lambda v: None if v is None else _json_float(v),
    "optional_int": lambda v: None if v is None else _json_int(v),
}


def parse_env(f: Field, text: str) -> Any:
    parse = f.spec.parse_env or _ENV_PARSERS[f.kind]
    value = parse(text)
    if f.spec.choices and isinstance(value, str):
        matches = [c for c in f.spec.choices if c.lower() == value.strip().lower()]
        if not matches:
            raise ValueError(f"expected one of {', '.join(f.spec.choices)}")
        value = matches[0]
    return value


def parse_json(f: Field, value: Any) -> Any:
    return _JSON_PARSERS[f.kind](value)


# --- bounds ---------------------------------------------------------------------------------


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def bound_problem(f: Field, value: Any) -> str | None:
    """Why `value` is out of the field's bounds, or None: "<value> must be ..."."""
    s = f.spec
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, tuple):
        if s.max_items is not None and len(value) > s.max_items:
            return f"{len(value)} items; at most {s.max_items}"
        longest = max(value, key=len, default="")
        if s.max_length is not None and len(longest) > s.max_length:
            return f"{longest[:40]!r}... is {len(longest)} characters; at most {s.max_length}"
        return None
    if isinstance(value, str) and not s.choices:
        if s.max_length is not None and len(value) > s.max_length:
            return f"{value[:40]!r}... is {len(value)} characters; at most {s.max_length}"
        return None
    if s.choices:
        if str(value).upper() not in {c.upper() for c in s.choices}:
            return f"{value!r} is not one of {', '.join(s.choices)}"
        return None
    if not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} must be a finite number"
    low_ok = (s.minimum is None or value >= s.minimum) and (s.above is None or value > s.above)
    high_ok = (s.maximum is None or value <= s.maximum) and (s.below is None or value < s.below)
    if low_ok and high_ok:
        if s.cap is not None and value > s.cap:
            return f"{value} must be at most {_number(s.cap)}"
        return None
    if s.above is not None and s.below is not None:
        return f"{value} must be between {_number(s.above)} and {_number(s.below)} (exclusive)"
    if s.minimum is not None and s.maximum is not None:
        return f"{value} must be between {_number(s.minimum)} and {_number(s.maximum)}{s.limit_note}"
    if s.minimum is not None:
        return f"{value} must be {'0 or more' if s.minimum == 0 else f'at least {_number(s.minimum)}'}"
    if s.above is not None:
        return f"{value} must be more than {_number(s.above)}"
    return f"{value} must be at most {_number(s.maximum if s.maximum is not None else s.below)}"  # type: ignore[arg-type]


def bound_problems(settings: Any) -> list[tuple[Field, str]]:
    """Every field of `settings` out of its bounds, with the reason."""
    out = []
    for f in fields_of(type(settings)):
        problem = bound_problem(f, getattr(settings, f.name))
        if problem:
            out.append((f, problem))
    return out


# --- reading --------------------------------------------------------------------------------


def values_from_env(cls: type, environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Field values for the variables set in `environ` (empty counts as unset), and the ones that did not parse."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields_of(cls):
        raw = environ.get(f.spec.env)
        if raw is None or not raw.strip():
            continue
        try:
            values[f.name] = parse_env(f, raw)
        except ValueError as exc:
            shown = "(secret)" if f.spec.secret else repr(raw)
            problems.append(f"{f.spec.env}={shown}: {str(exc).splitlines()[0]}")
    return values, problems


def replaced(settings: Any, changes: Mapping[str, Any]) -> Any:
    """A copy of a settings dataclass with some fields changed (not checked)."""
    return dataclasses.replace(settings, **changes)


# --- documentation --------------------------------------------------------------------------


def default_text(f: Field) -> str:
    if f.spec.default_text:
        return f.spec.default_text
    value = f.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def twin_type_text(f: Field) -> str:
    """The JSON type and bounds of a twin value, for the README."""
    s = f.spec
    if s.twin_text:
        return s.twin_text
    if s.choices:
        return ", ".join(f"`{c}`" for c in s.choices)
    base = {
        "int": "integer",
        "float": "number",
        "bool": "boolean",
        "str": "string",
        "names": "list of strings (or one comma-separated string)",
        "optional_float": "number",
        "optional_int": "integer",
    }[f.kind]
    if s.above is not None and s.below is not None:
        base += f" in ({_number(s.above)}, {_number(s.below)})"
    elif s.minimum is not None and s.maximum is not None:
        base += f" {_number(s.minimum)} … {_number(s.maximum)}"
    elif s.minimum is not None:
        base += f" ≥ {_number(s.minimum)}"
    elif s.above is not None:
        base += f" > {_number(s.above)}"
    if s.cap is not None:
        base += f", at most {_number(s.cap)}"
    if f.kind.startswith("optional_"):
        base += ", or null"
    return base


def markdown_rows(rows: Iterable[Iterable[str]]) -> str:
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
