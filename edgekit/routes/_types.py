"""The static types of edgeHub's compiled conditions, and the pieces the compiler and the builtins share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._values import NAN, NULL_STRING, UNDEFINED

if TYPE_CHECKING:
    from ._message import Message

STR, NUM, BOOL, NULL, UNDEF, QV = "string", "number", "bool", "null", "undefined", "QueryValue"
TYPE_NAMES = {STR: "string", NUM: "number", BOOL: "bool", NULL: "null", UNDEF: "undefined", QV: "unknown"}
QV_SUPPORTED = frozenset({NULL, NUM, STR, BOOL})  # QueryValue.IsSupportedType

Runtime = Callable[["Message"], Any]
_NO_CONSTANT: Any = object()


@dataclass(frozen=True)
class Typed:
    """A compiled expression: its static type and the function computing its value for a message."""

    type: str
    fn: Runtime
    failed: bool = False  # an error was reported for it (errors about its use are not reported again)
    constant: Any = _NO_CONSTANT

    @property
    def is_constant(self) -> bool:
        return self.constant is not _NO_CONSTANT


def constant(kind: str, value: Any) -> Typed:
    return Typed(kind, lambda _m: value, constant=value)


FAILED = Typed(UNDEF, lambda _m: UNDEFINED, failed=True)
UNDEFINED_CONSTANT = constant(UNDEF, UNDEFINED)


def to_qv(expr: Typed) -> Typed:
    """Expression.Convert(expr, typeof(QueryValue)): NaN and undefined become QueryValue.Undefined, null a null."""
    if expr.type == QV:
        return expr
    if expr.type == NUM:
        if expr.is_constant:
            return constant(QV, expr.constant if expr.constant == expr.constant else UNDEFINED)
        fn = expr.fn
        return Typed(QV, lambda m: v if (v := fn(m)) == v else UNDEFINED, expr.failed)
    if expr.type == NULL:
        return constant(QV, None)
    if expr.type == UNDEF:
        return constant(QV, UNDEFINED)
    return Typed(QV, expr.fn, expr.failed, expr.constant)  # string and Bool keep their values


def is_defined(expr: Typed) -> Runtime:
    """Undefined.IsDefined for the expression's type, as a function of the message."""
    fn = expr.fn
    if expr.type == NUM:
        return lambda m: (v := fn(m)) == v
    if expr.type == NULL:
        return lambda _m: True
    if expr.type == UNDEF:
        return lambda _m: False
    return lambda m: fn(m) is not UNDEFINED


def args_match(required: Sequence[str], given: Sequence[str], match_qv: bool) -> bool:
    """Args.Match: the same count, each type equal, or (match_qv) a QueryValue against a type it supports."""
    return len(required) == len(given) and all(
        t == g or (match_qv and ((g == QV and t in QV_SUPPORTED) or (t == QV and g in QV_SUPPORTED)))
        for t, g in zip(required, given, strict=True)
    )


def var_args_match(required: Sequence[str], given: Sequence[str], match_qv: bool) -> bool:
    """VarArgs.Match: the last required type repeats; at least len(required) - 1 arguments."""
    n = len(required) - 1
    if len(given) < n:
        return False
    head = all(a == t or (match_qv and a == QV) for a, t in zip(given[:n], required[:n], strict=True))
    return head and all(a == required[n] or (match_qv and a == QV) for a in given[n:])


def string_or_null(value: Any) -> bool:
    return type(value) is str or value is NULL_STRING


__all__ = [
    "BOOL",
    "FAILED",
    "NAN",
    "NULL",
    "NUM",
    "QV",
    "QV_SUPPORTED",
    "STR",
    "TYPE_NAMES",
    "UNDEF",
    "UNDEFINED_CONSTANT",
    "Runtime",
    "Typed",
    "args_match",
    "constant",
    "is_defined",
    "string_or_null",
    "to_qv",
    "var_args_match",
]
