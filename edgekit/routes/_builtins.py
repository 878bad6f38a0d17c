"""edgeHub's built-in functions (Routing.Core query/builtins), each with its executors in edgeHub's order.

A call picks the first executor whose argument types match (a `$body` value matches a string, number, bool or
null parameter when the executor takes QueryValues); no match is a compile error. Names are matched in any
case. At run time an argument of the wrong kind (a `$body` string given to ABS) gives undefined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import edgekit.routes._values as V

from ._body import PathError, compile_path, select
from ._types import (
    BOOL,
    NULL,
    NUM,
    QV,
    STR,
    UNDEF,
    Typed,
    args_match,
    constant,
    is_defined,
    string_or_null,
    var_args_match,
)
from ._values import MISSING, NAN, NULL_STRING, UNDEFINED


class ArgumentProblem(Exception):
    """A builtin refused its (constant) argument while compiling: edgeHub's ArgumentError with details."""


Make = Callable[[list[Typed]], Typed]


@dataclass(frozen=True)
class Executor:
    types: tuple[str, ...] | int  # parameter types; an int is AnyArgs(n)
    make: Make
    query_values: bool = False  # IsQueryValueSupported: QueryValue arguments match, all arguments become QueryValues
    var_args: bool = False

    def matches(self, given: Sequence[str]) -> bool:
        if isinstance(self.types, int):
            return len(given) == self.types
        if self.var_args:
            return var_args_match(self.types, given, self.query_values)
        return args_match(self.types, given, self.query_values)


def _unary(result: str, runtime: Callable[[Any], Any]) -> Make:
    def make(args: list[Typed]) -> Typed:
        (arg,) = args
        if arg.is_constant:
            return constant(result, runtime(arg.constant))
        fn = arg.fn
        return Typed(result, lambda m: runtime(fn(m)))

    return make


def _binary(result: str, runtime: Callable[[Any, Any], Any]) -> Make:
    def make(args: list[Typed]) -> Typed:
        a, b = (arg.fn for arg in args)
        if all(arg.is_constant for arg in args):
            return constant(result, runtime(args[0].constant, args[1].constant))
        return Typed(result, lambda m: runtime(a(m), b(m)))

    return make


def _ternary(result: str, runtime: Callable[[Any, Any, Any], Any]) -> Make:
    def make(args: list[Typed]) -> Typed:
        a, b, c = (arg.fn for arg in args)
        return Typed(result, lambda m: runtime(a(m), b(m), c(m)))

    return make


def _always(result: str, value: Any) -> Make:
    return lambda _args: constant(result, value)


def _math(function: Callable[[float], float]) -> list[Executor]:
    return [Executor((NUM,), _unary(NUM, lambda v: function(v) if type(v) is float else NAN), query_values=True)]


def _strings(result: str, function: Callable[[str, str], Any]) -> list[Executor]:
    miss = NAN if result == NUM else UNDEFINED
    runtime = _binary(result, lambda a, b: function(a, b) if type(a) is str and type(b) is str else miss)
    return [Executor((STR, STR), runtime, query_values=True)]


def _as_number(v: Any) -> float:
    if type(v) is str:
        number = V.parse_number(v)
        return NAN if number is None else number
    return v if type(v) is float else NAN


def _is_bool(v: Any) -> Any:
    return UNDEFINED if v is UNDEFINED else type(v) is bool


def _is_null_qv(v: Any) -> Any:
    # `input != QueryValue.Null` by reference: only a path that matched nothing is not null; a JSON null is null,
    # and so (edgeHub's quirk) is every other defined value.
    return UNDEFINED if v is UNDEFINED else v is not MISSING


def _concat(args: list[Typed]) -> Typed:
    fns = [arg.fn for arg in args]

    def runtime(m: Any) -> Any:
        values = [fn(m) for fn in fns]
        if all(string_or_null(v) for v in values):
            return "".join(v for v in values if v is not NULL_STRING)
        return UNDEFINED

    return Typed(STR, runtime)


def _substring_start(s: Any, start: Any) -> Any:
    if type(s) is not str or type(start) is not float:
        return UNDEFINED
    if start == start and 0 <= start <= V.utf16_length(s):
        return V.utf16_substring(s, int(start))
    return UNDEFINED


def _substring_start_length(s: Any, start: Any, length: Any) -> Any:
    if type(s) is not str or type(start) is not float or type(length) is not float:
        return UNDEFINED
    size = V.utf16_length(s)
    if start == start and 0 <= start < size and length == length and 0 <= length <= size - start:
        return V.utf16_substring(s, int(start), int(length))
    return UNDEFINED


def _is_defined(args: list[Typed]) -> Typed:
    (arg,) = args
    return Typed(BOOL, is_defined(arg))


TWIN_CHANGE_PREFIXES = ("properties.reported.", "properties.desired.", "tags.")


def _twin_change_includes(args: list[Typed]) -> Typed:
    path = args[0].constant
    if not path:
        raise ArgumentProblem("twin_change_includes argument cannot be empty")
    try:
        steps = compile_path(path)
    except PathError as exc:
        raise ArgumentProblem(str(exc)) from None
    if not path.lower().startswith(TWIN_CHANGE_PREFIXES):
        prefixes = ", ".join(f"'{p}'" for p in TWIN_CHANGE_PREFIXES)
        raise ArgumentProblem(f"'{path}' is not supported. Supported prefixes: {prefixes}.")

    def runtime(m: Any) -> Any:
        document = m.body_json
        if steps is None or type(document) is not dict:
            return UNDEFINED
        return bool(select(document, steps))  # nothing found is false; anything, even an object, is true

    return Typed(BOOL, runtime)


BUILTINS: dict[str, list[Executor]] = {
    # math
    "abs": _math(abs),
    "exp": _math(V.exp),
    "power": [
        Executor(
            (NUM, NUM),
            _binary(NUM, lambda x, y: V.power(x, y) if type(x) is float and type(y) is float else NAN),
            query_values=True,
        )
    ],
    "square": _math(lambda x: x * x),
    "ceiling": _math(V.ceiling),
    "floor": _math(V.floor),
    "sign": _math(V.sign),
    "sqrt": _math(V.sqrt),
    # type checking
    "as_number": [Executor((STR,), _unary(NUM, _as_number), query_values=True), Executor((NUM,), lambda args: args[0])],
    "is_bool": [Executor((BOOL,), _unary(BOOL, _is_bool), query_values=True), Executor(1, _always(BOOL, False))],
    "is_defined": [
        Executor((STR,), _is_defined),
        Executor((NUM,), _is_defined),
        Executor((BOOL,), _is_defined),
        Executor((UNDEF,), _always(BOOL, False)),
        Executor((NULL,), _always(BOOL, True)),
        Executor((QV,), _is_defined),
    ],
    "is_null": [
        Executor((STR,), _unary(BOOL, lambda v: v is NULL_STRING)),
        Executor((QV,), _unary(BOOL, _is_null_qv)),
        Executor((NULL,), _always(BOOL, True)),
        Executor(1, _always(BOOL, False)),
    ],
    "is_number": [
        Executor((NUM,), _unary(BOOL, lambda v: type(v) is float and math.isfinite(v)), query_values=True),
        Executor(1, _always(BOOL, False)),
    ],
    "is_string": [
        Executor((STR,), _unary(BOOL, lambda v: type(v) is str), query_values=True),
        Executor(1, _always(BOOL, False)),
    ],
    # strings
    "concat": [Executor((STR, STR, STR), _concat, query_values=True, var_args=True)],
    "length": [Executor((STR,), _unary(NUM, lambda v: float(V.utf16_length(v)) if type(v) is str else NAN), query_values=True)],
    "lower": [Executor((STR,), _unary(STR, lambda v: V.lower_invariant(v) if type(v) is str else UNDEFINED), query_values=True)],
    "upper": [Executor((STR,), _unary(STR, lambda v: V.upper_invariant(v) if type(v) is str else UNDEFINED), query_values=True)],
    "substring": [
        Executor((STR, NUM), _binary(STR, _substring_start), query_values=True),
        Executor((STR, NUM, NUM), _ternary(STR, _substring_start_length), query_values=True),
    ],
    "index_of": _strings(NUM, lambda s, f: float(V.utf16_index_of(s, f))),
    "starts_with": _strings(BOOL, lambda s, f: s.startswith(f)),
    "ends_with": _strings(BOOL, lambda s, f: s.endswith(f)),
    "contains": _strings(BOOL, lambda s, f: f in s),
    # twin change notifications
    "twin_change_includes": [Executor((STR,), _twin_change_includes)],
}
TAKES_ARGUMENT_TEXT = frozenset({"twin_change_includes"})  # IsBodyQuery: gets its arguments' text, unevaluated
NAMES = tuple(name.upper() for name in BUILTINS)
