"""A condition's syntax tree compiled as edgeHub compiles it (Routing.Core ConditionVisitor): every node gets a
static type, operands are type-checked (a mismatch refuses the route, with edgeHub's message), and the result is
a tree of closures evaluated per message.

Types and their rules (see _values for the run-time values):
- An application property (`name`) or a system property (`$name`) is a string; `$body.<path>` a QueryValue,
  which matches a string, number, bool or null where one is expected and compares with it at run time.
- Comparisons need both sides of one type (or a QueryValue and a string/number/bool/null): `prop > 5` is refused
  (compare `as_number(prop) > 5`). QueryValues of different kinds are ordered by kind (bool < number < string
  < null): `$body.x = '5'` is false when x is the number 5, and `$body.x < 'a'` is true.
- Arithmetic needs numbers (or QueryValues); `||` strings. `%` and unary `-` on a QueryValue do not compile.
- AND, OR and NOT take bools (or null, undefined, QueryValues); three-valued logic: false AND undefined is false,
  true OR undefined is true, NOT undefined is undefined. Both sides of AND are evaluated.
- The condition routes the message only when it is true; a string, number or undefined condition never is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import edgekit.routes._lexer as L
import edgekit.routes._parser as P

from ._body import PathError, compile_path, field_value, query_value
from ._builtins import BUILTINS, TAKES_ARGUMENT_TEXT, ArgumentProblem
from ._message import EDGE_MESSAGE_ID
from ._types import (
    BOOL,
    FAILED,
    NULL,
    NUM,
    QV,
    STR,
    TYPE_NAMES,
    UNDEF,
    UNDEFINED_CONSTANT,
    Runtime,
    Typed,
    args_match,
    constant,
    to_qv,
)
from ._values import (
    KIND_BOOL,
    KIND_DOUBLE,
    KIND_STRING,
    NULL_STRING,
    UNDEFINED,
    divide,
    double_compare,
    fold,
    hex_literal,
    ordinal_compare,
    parse_number,
    qv_kind,
    remainder,
)


@dataclass(frozen=True)
class Options:
    """RouteCompilerFlags and the route's source. edgeHub compiles manifest routes with every flag on and a
    source parsed from the route text, which is never the twin-change source object twin_change_includes needs."""

    body_query: bool = True
    twin_change_includes: bool = True
    twin_source: bool = False


class Compiler:
    def __init__(self, options: Options, col_offset: int = 0) -> None:
        self.options = options
        self.col_offset = col_offset
        self.errors: list[str] = []

    def error(self, token: L.Token, message: str) -> Typed:
        self.errors.append(f"{message} at col {token.start + 1 + self.col_offset}")
        return FAILED

    def visit(self, node: P.Node) -> Typed:
        if isinstance(node, P.Literal):
            return self.literal(node.token)
        if isinstance(node, P.Property):
            key = fold(node.token.text)
            return Typed(STR, lambda m: m.app_props.get(key, UNDEFINED))
        if isinstance(node, P.SysProperty):
            return self.sys_property(node.token)
        if isinstance(node, P.EscapedSysProperty):
            name = node.token.text
            if self.options.body_query and name[:6].lower() == "$body.":
                return self.body_query(node.token, name[6:])
            return self.system(name[1:])
        if isinstance(node, P.Call):
            return self.call(node)
        if isinstance(node, P.Unary):
            return self.unary(node.token, self.visit(node.operand))
        assert isinstance(node, P.Binary)
        return self.binary(node.token, self.visit(node.left), self.visit(node.right))

    # --- leaves
    def literal(self, token: L.Token) -> Typed:
        kind, text = token.type, token.text
        if kind in (L.TRUE, L.FALSE):
            return constant(BOOL, kind == L.TRUE)
        if kind == L.HEX:
            value = hex_literal(text)
            return UNDEFINED_CONSTANT if value is None else constant(NUM, value)
        if kind in (L.INTEGER, L.REAL):  # double.TryParse: `e5` lexes as a real number but does not parse
            number = parse_number(text)
            return UNDEFINED_CONSTANT if number is None else constant(NUM, number)
        if kind == L.STRING:
            return constant(STR, unescape(text[1:-1]))
        if kind == L.NULL:
            return constant(NULL, None)
        return UNDEFINED_CONSTANT

    def sys_property(self, token: L.Token) -> Typed:
        """`$name`: an application property named `$name` wins, else the `$body` query or system property `name`."""
        name = token.text
        app_key = fold(name)
        if self.options.body_query and name[:6].lower() == "$body.":
            query = self.body_query(token, name[6:])
            if query.failed or "[" in name or "]" in name:
                return query
            query_fn = query.fn
            return Typed(QV, lambda m: v if (v := m.app_props.get(app_key)) is not None else query_fn(m))
        if "[" in name or "]" in name:
            return UNDEFINED_CONSTANT
        system = self.system(name[1:]).fn
        return Typed(STR, lambda m: v if (v := m.app_props.get(app_key)) is not None else system(m))

    def system(self, name: str) -> Typed:
        if "[" in name or "]" in name:
            return UNDEFINED_CONSTANT
        key = fold(name)
        if key == EDGE_MESSAGE_ID:
            return Typed(STR, lambda m: m.edge_message_id)
        return Typed(STR, lambda m: m.sys_props.get(key, UNDEFINED))

    def body_query(self, token: L.Token, path: str) -> Typed:
        try:
            steps = compile_path(path)
        except PathError as exc:
            return self.argument_error(token, [STR], str(exc))
        if steps is None:  # Newtonsoft throws on every message
            return constant(QV, UNDEFINED)
        if all(kind == "key" for kind, _ in steps):
            keys = tuple(name for _, name in steps)

            def fields(m: Any) -> Any:
                document = m.body_json
                return field_value(document, keys) if type(document) is dict else UNDEFINED

            return Typed(QV, fields)

        def query(m: Any) -> Any:
            document = m.body_json
            return query_value(document, steps) if type(document) is dict else UNDEFINED

        return Typed(QV, query)

    # --- functions
    def call(self, node: P.Call) -> Typed:
        token = node.token
        name = token.text.lower()
        executors = BUILTINS.get(name)
        if name == "twin_change_includes" and not (self.options.twin_change_includes and self.options.twin_source):
            executors = None
        if executors is None:
            return self.error(token, f"Invalid built-in function '{token.text}'")
        # twin_change_includes takes its arguments' text; the others their values
        args = [constant(STR, node.args_text)] if name in TAKES_ARGUMENT_TEXT else [self.visit(arg) for arg in node.args]
        return self.builtin(token, name, args)

    def builtin(self, token: L.Token, name: str, args: list[Typed]) -> Typed:
        if any(arg.failed for arg in args):
            return FAILED
        types = [arg.type for arg in args]
        details = None
        for executor in BUILTINS[name]:
            if executor.matches(types):
                try:
                    return executor.make([to_qv(a) for a in args] if executor.query_values else args)
                except ArgumentProblem as exc:
                    details = str(exc)
                    break
        return self.argument_error(token, types, details)

    def argument_error(self, token: L.Token, types: list[str], details: str | None) -> Typed:
        name = token.text
        message = f"Invalid arguments to built-in function '{name}': {name}({', '.join(TYPE_NAMES[t] for t in types)})"
        return self.error(token, f"{message}. Error: {details}" if details else message)

    def operand_error(self, token: L.Token, required: list[str], given: list[str]) -> Typed:
        arity = {1: "unary ", 2: "binary "}.get(len(required), "")
        have = " and ".join(f"'{TYPE_NAMES[t]}'" for t in given)
        expected = " and ".join(f"'{TYPE_NAMES[t]}'" for t in required)
        message = f"Invalid operands to {arity}operator '{token.text}': have {have}, expected {expected}"
        if STR in given and (NUM in given or NUM in required):
            message += " (properties are strings: write as_number(name) to compare or compute with a number)"
        return self.error(token, message)

    # --- operators
    def unary(self, op: L.Token, operand: Typed) -> Typed:
        if operand.failed:
            return FAILED
        if op.type == L.MINUS:
            if not args_match((NUM,), (operand.type,), True):
                return self.operand_error(op, [NUM], [operand.type])
            if operand.type == QV:
                return self.error(op, "edgeHub cannot compile unary '-' on a $body value (QueryValue has no unary minus)")
            if operand.is_constant:
                return constant(NUM, -operand.constant)
            fn = operand.fn
            return Typed(NUM, lambda m: -fn(m))
        if operand.type == NULL:
            return constant(BOOL, True)
        if not args_match((BOOL,), (operand.type,), True):
            return self.operand_error(op, [BOOL], [operand.type])
        fn = operand.fn
        if operand.type == QV:
            return Typed(BOOL, lambda m: (not v) if type(v := fn(m)) is bool else UNDEFINED)
        return Typed(BOOL, lambda m: UNDEFINED if (v := fn(m)) is UNDEFINED else not v)

    def binary(self, op: L.Token, left: Typed, right: Typed) -> Typed:
        if left.failed or right.failed:
            return FAILED
        kind = op.type
        if kind in ARITHMETIC:
            return self.arithmetic(op, left, right)
        if kind == L.CONCAT:
            checked = self.check_operands(op, STR, left, right)
            return self.builtin(op, "concat", list(checked)) if checked else FAILED
        if kind in COMPARISONS:
            return self.comparison(op, left, right)
        if kind in (L.AND, L.OR):
            return self.logical(op, left, right)
        return self.coalesce(op, left, right)

    def check_operands(self, op: L.Token, expected: str, left: Typed, right: Typed) -> tuple[Typed, Typed] | None:
        if not args_match((expected, expected), (left.type, right.type), True):
            self.operand_error(op, [expected, expected], [left.type, right.type])
            return None
        if QV in (left.type, right.type):
            return to_qv(left), to_qv(right)
        return left, right

    def arithmetic(self, op: L.Token, left: Typed, right: Typed) -> Typed:
        checked = self.check_operands(op, NUM, left, right)
        if checked is None:
            return FAILED
        left, right = checked
        function = ARITHMETIC[op.type]
        if left.type == QV:
            if op.type == L.MOD:
                return self.error(op, "edgeHub cannot compile '%' on a $body value (QueryValue has no '%' operator)")
            lf, rf = left.fn, right.fn

            def on_query_values(m: Any) -> Any:
                a, b = lf(m), rf(m)
                return function(a, b) if type(a) is float and type(b) is float else UNDEFINED

            return Typed(QV, on_query_values)
        if left.is_constant and right.is_constant:
            return constant(NUM, function(left.constant, right.constant))
        lf, rf = left.fn, right.fn
        return Typed(NUM, lambda m: function(lf(m), rf(m)))

    def comparison(self, op: L.Token, left: Typed, right: Typed) -> Typed:
        checked = self.check_operands(op, left.type, left, right)
        if checked is None:
            return FAILED
        left, right = checked
        test = COMPARISONS[op.type]
        compare = COMPARE[left.type]
        if left.is_constant and right.is_constant:
            return constant(BOOL, compare(test, left.constant, right.constant))
        lf, rf = left.fn, right.fn
        if right.is_constant:
            value = right.constant
            return Typed(BOOL, lambda m: compare(test, lf(m), value))
        return Typed(BOOL, lambda m: compare(test, lf(m), rf(m)))

    def logical(self, op: L.Token, left: Typed, right: Typed) -> Typed:
        is_and = op.type == L.AND
        null_result = (left.type == NULL or right.type == NULL) if is_and else (left.type == NULL and right.type == NULL)
        left_valid = left.type in (NULL, BOOL, UNDEF, QV)
        right_valid = right.type in (NULL, BOOL, UNDEF) or left.type == QV  # sic: edgeHub checks left.Type here
        if not (left_valid and right_valid):
            return self.operand_error(op, [BOOL, BOOL], [left.type, right.type])
        if left.type == QV:
            right = to_qv(right)
        pair = {left.type, right.type}
        if pair == {NULL, UNDEF} or (left.type == QV and null_result):
            return self.error(op, f"edgeHub cannot compile {op.text} on {left.type} and {right.type} (no such operator)")
        lf, rf = left.fn, right.fn
        if NULL in pair:
            if is_and or pair == {NULL}:
                return constant(NULL, None)
            other = rf if left.type == NULL else lf  # null OR x is x
            return Typed(BOOL, other)
        if left.type == QV:
            return Typed(BOOL, _qv_and(lf, rf) if is_and else _qv_or(lf, rf))
        return Typed(BOOL, _and(lf, rf) if is_and else _or(lf, rf))

    def coalesce(self, op: L.Token, left: Typed, right: Typed) -> Typed:
        checked = self.check_operands(op, left.type, left, right)
        if checked is None:
            return FAILED
        left, right = checked
        if left.type == UNDEF:
            return right
        lf, rf = left.fn, right.fn
        if left.type == NULL:
            return left
        if left.type == NUM:
            return Typed(NUM, lambda m: v if (v := lf(m)) == v else rf(m))
        return Typed(left.type, lambda m: v if (v := lf(m)) is not UNDEFINED else rf(m))


# --- run-time operations ---------------------------------------------------------------------------------------


def unescape(text: str) -> str:
    """edgeHub's Unescape, in its order: \\uXXXX first, then \\" \\' \\\\ (so '\\\\u0041' reads as '\\A')."""
    text = re.sub(r"\\[Uu]([0-9A-Fa-f]{4})", lambda m: chr(int(m[1], 16)), text)
    return re.sub(r"""\\(["'\\])""", lambda m: m[1], text)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    L.PLUS: lambda a, b: a + b,
    L.MINUS: lambda a, b: a - b,
    L.MUL: lambda a, b: a * b,
    L.DIV: divide,
    L.MOD: remainder,
}
Test = Callable[[int], bool]
COMPARISONS: dict[str, Test] = {
    L.EQ: lambda c: c == 0,
    L.NE1: lambda c: c != 0,
    L.NE2: lambda c: c != 0,
    L.LT: lambda c: c < 0,
    L.LE: lambda c: c <= 0,
    L.GT: lambda c: c > 0,
    L.GE: lambda c: c >= 0,
}


def _compare_strings(test: Test, a: Any, b: Any) -> Any:
    if a is UNDEFINED or b is UNDEFINED or a is NULL_STRING or b is NULL_STRING:
        return UNDEFINED
    return test((a > b) - (a < b) if a.isascii() and b.isascii() else ordinal_compare(a, b))


def _compare_numbers(test: Test, a: float, b: float) -> Any:
    if a != a or b != b:
        return UNDEFINED
    return test((a > b) - (a < b))


def _compare_bools(test: Test, a: Any, b: Any) -> Any:
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return test(a - b)


def _compare_query_values(test: Test, a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):  # the common case first: a number with a number, a string with a string
        if kind is float and a == a and b == b:
            return test((a > b) - (a < b))
        if kind is str and a.isascii() and b.isascii():
            return test((a > b) - (a < b))
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    ka, kb = qv_kind(a), qv_kind(b)
    if ka != kb:
        return test(ka - kb)
    if ka == KIND_DOUBLE:
        return test(double_compare(a, b))
    if ka == KIND_STRING:
        if a is NULL_STRING or b is NULL_STRING:  # string.Compare: null sorts first
            return test((b is NULL_STRING) - (a is NULL_STRING))
        return test((a > b) - (a < b) if a.isascii() and b.isascii() else ordinal_compare(a, b))
    if ka == KIND_BOOL:
        return test(a - b)
    return test(0)  # null and null


COMPARE: dict[str, Callable[[Test, Any, Any], Any]] = {
    STR: _compare_strings,
    NUM: _compare_numbers,
    BOOL: _compare_bools,
    QV: _compare_query_values,
    NULL: lambda test, _a, _b: test(0),
    UNDEF: lambda _test, _a, _b: UNDEFINED,
}


def _and(lf: Runtime, rf: Runtime) -> Runtime:
    def evaluate(m: Any) -> Any:
        a = lf(m)
        if a is False:
            return False
        b = rf(m)
        if b is False:
            return False
        return UNDEFINED if a is UNDEFINED or b is UNDEFINED else True

    return evaluate


def _or(lf: Runtime, rf: Runtime) -> Runtime:
    def evaluate(m: Any) -> Any:
        a = lf(m)
        if a is True:
            return True
        b = rf(m)
        if b is True:
            return True
        return UNDEFINED if a is UNDEFINED or b is UNDEFINED else False

    return evaluate


def _qv_and(lf: Runtime, rf: Runtime) -> Runtime:
    def evaluate(m: Any) -> Any:
        a = lf(m)
        if type(a) is not bool:
            return UNDEFINED
        b = rf(m)
        return (a and b) if type(b) is bool else UNDEFINED

    return evaluate


def _qv_or(lf: Runtime, rf: Runtime) -> Runtime:
    def evaluate(m: Any) -> Any:
        a = lf(m)
        if type(a) is not bool:
            return UNDEFINED
        b = rf(m)
        return (a or b) if type(b) is bool else UNDEFINED

    return evaluate


def as_condition(expr: Typed) -> Runtime:
    """Expression.Convert(expr, typeof(Bool)): what a route tests. Only a bool can be true."""
    if expr.type == BOOL:
        return expr.fn
    if expr.type == NULL:
        return lambda _m: False
    if expr.type == QV:
        fn = expr.fn
        return lambda m: v if type(v := fn(m)) is bool else UNDEFINED
    return lambda _m: UNDEFINED
