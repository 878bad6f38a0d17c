"""edgeHub's route and condition grammar (Route.g4, Condition.g4) as a recursive-descent parser.

    route     := [SELECT *] FROM path [WHERE condition] INTO sink      (text after the sink is ignored:
                                                                         the grammar has no EOF)
    path      := ('/' ('*' | name))+
    sink      := $name | name '(' string ')'
    condition := expr
    expr      := primary | '-' expr | NOT expr | expr op expr
    primary   := '(' expr ')' | literal | $name | name | '{' $name '}' | name '(' [expr (',' expr)*] ')'

Operators, tightest first (ANTLR4 gives the earlier alternative the higher precedence; all left-associative):
unary `-` and NOT (their operand is a primary or another unary: `NOT a = b` is `(NOT a) = b`),
`* / %`, `+ - ||`, `< <= > >=`, `= != <>`, AND, OR, `??`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import edgekit.routes._lexer as L

from ._lexer import Token

BINARY_PRECEDENCE = {
    L.MUL: 7,
    L.DIV: 7,
    L.MOD: 7,
    L.PLUS: 6,
    L.MINUS: 6,
    L.CONCAT: 6,
    L.LT: 5,
    L.LE: 5,
    L.GT: 5,
    L.GE: 5,
    L.EQ: 4,
    L.NE1: 4,
    L.NE2: 4,
    L.AND: 3,
    L.OR: 2,
    L.COALESCE: 1,
}
LITERALS = frozenset({L.STRING, L.INTEGER, L.HEX, L.REAL, L.TRUE, L.FALSE, L.NULL, L.UNDEFINED})
_STARTS_PRIMARY = LITERALS | {L.LPAREN, L.SYS_PROP, L.ID, L.LBRACE, L.MINUS, L.NOT}


class SyntaxProblem(Exception):
    """The text cannot be parsed; `col` is 1-based in the text parsed."""

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


# --- the condition's syntax tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    token: Token  # the token errors point at


@dataclass(frozen=True)
class Literal(Node):
    pass


@dataclass(frozen=True)
class Property(Node):
    """An application property by name (`batchId`)."""


@dataclass(frozen=True)
class SysProperty(Node):
    """`$name`: an application property of that name, else `$body.<path>`, else the system property."""


@dataclass(frozen=True)
class EscapedSysProperty(Node):
    """`{$name}`: the `$body` query or the system property, never an application property."""


@dataclass(frozen=True)
class Call(Node):
    args: tuple[Node, ...]
    args_text: str  # the arguments' tokens run together, as ANTLR's GetText gives them


@dataclass(frozen=True)
class Unary(Node):
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    left: Node
    right: Node


# --- the route's parts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSyntax:
    source: str  # the source path's tokens run together, e.g. "/messages/modules/m/*"
    source_col: int
    condition: Node | None
    condition_text: str | None  # as written, from its first token to its last
    condition_col: int
    sink_kind: str  # "system" ($upstream...) or "function" (BrokeredEndpoint(...))
    sink_name: str
    sink_address: str | None  # the function endpoint's string without its quotes, not unescaped (as edgeHub)
    sink_col: int
    address_col: int
    ignored: str  # text after the sink, which edgeHub never reads


class Parser:
    def __init__(self, text: str, offset: int = 0) -> None:
        self.text = text
        self.tokens = L.tokenize(text)
        self.pos = 0
        self.offset = offset  # added to columns: a condition parsed alone reports route columns

    # --- token helpers
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.type != L.EOF:
            self.pos += 1
        return token

    def at(self, *types: str) -> bool:
        return self.tokens[self.pos].type in types

    def col(self, token: Token) -> int:
        return token.start + 1 + self.offset

    def fail(self, expected: str, token: Token | None = None) -> NoReturn:
        token = token or self.peek()
        if token.type == L.UNKNOWN_CHAR:
            raise SyntaxProblem(f"Syntax error: invalid symbol '{token.text}' at col {self.col(token)}", self.col(token))
        if token.type == L.UNTERMINATED_STRING:
            raise SyntaxProblem(f"Syntax error: unterminated string starting at col {self.col(token)}", self.col(token))
        hint = " ('[' and ']' belong in $body paths only)" if token.type == L.QUERY_PATH else ""
        raise SyntaxProblem(f"{expected} at col {self.col(token)}, got {token.describe()}{hint}", self.col(token))

    def expect(self, kind: str, expected: str) -> Token:
        if not self.at(kind):
            self.fail(expected)
        return self.advance()

    # --- route
    def route(self) -> RouteSyntax:
        if self.at(L.SELECT):
            self.advance()
            self.expect(L.MUL, "expected * after SELECT")
        if not self.at(L.FROM):
            self.fail("expected the route to start with FROM")
        self.advance()
        source_token = self.peek()
        source = self.path()
        condition, condition_text, condition_col = None, None, 0
        if self.at(L.WHERE):
            self.advance()
            first = self.peek()
            condition = self.expr(0, "WHERE")
            last = self.tokens[self.pos - 1]
            condition_text, condition_col = self.text[first.start : last.end], self.col(first)
        if not self.at(L.INTO):
            if self.at(L.RPAREN):
                raise SyntaxProblem(f"Syntax error: unmatched closing ')' at col {self.col(self.peek())}", self.col(self.peek()))
            self.fail("expected AND, OR or INTO" if condition else "expected WHERE or INTO after the source")
        self.advance()
        sink_token = self.advance()
        address = None
        address_col = 0
        if sink_token.type == L.SYS_PROP:
            kind = "system"
        elif sink_token.type == L.ID and self.at(L.LPAREN):
            kind = "function"
            self.advance()
            if not self.at(L.STRING):
                self.fail(f'expected a quoted address like "/modules/<m>/inputs/<i>" in {sink_token.text}(...)')
            string = self.advance()
            address, address_col = string.text[1:-1], self.col(string)
            self.expect(L.RPAREN, f"expected ')' to close {sink_token.text}(")
        else:
            self.fail('expected a sink ($upstream or BrokeredEndpoint("/modules/<m>/inputs/<i>")) after INTO', sink_token)
        rest = self.peek()
        ignored = self.text[rest.start :].strip() if rest.type != L.EOF else ""
        return RouteSyntax(
            source,
            self.col(source_token),
            condition,
            condition_text,
            condition_col,
            kind,
            sink_token.text,
            address,
            self.col(sink_token),
            address_col,
            ignored,
        )

    def path(self) -> str:
        if not self.at(L.DIV):
            self.fail("expected a source like /messages/* after FROM")
        parts = []
        while self.at(L.DIV):
            parts.append(self.advance().text)
            if not self.at(L.MUL, L.ID):
                self.fail(f"expected a name or * after '{''.join(parts)}' in the source")
            parts.append(self.advance().text)
        return "".join(parts)

    # --- condition
    def condition(self) -> Node | None:
        """A condition alone (edgeHub's RouteCompiler): empty is allowed (undefined), text after it is an error."""
        if self.at(L.EOF):
            return None
        node = self.expr(0, None)
        if not self.at(L.EOF):
            if self.at(L.RPAREN):
                raise SyntaxProblem(f"Syntax error: unmatched closing ')' at col {self.col(self.peek())}", self.col(self.peek()))
            self.fail("expected an operator or the end of the condition")
        return node

    def expr(self, min_precedence: int, after: str | None) -> Node:
        left = self.unary(after)
        while True:
            op = self.peek()
            precedence = BINARY_PRECEDENCE.get(op.type)
            if precedence is None or precedence < min_precedence:
                if op.type == L.UNKNOWN_CHAR:
                    self.fail("")
                return left
            self.advance()
            left = Binary(op, left, self.expr(precedence + 1, op.text))

    def unary(self, after: str | None) -> Node:
        token = self.peek()
        if token.type in (L.MINUS, L.NOT):
            self.advance()
            return Unary(token, self.unary(token.text))
        return self.primary(after)

    def primary(self, after: str | None) -> Node:
        token = self.peek()
        if token.type not in _STARTS_PRIMARY:
            if after is None:
                self.fail("expected a condition")
            keyword = after.upper() in ("WHERE", "AND", "OR", "NOT") or after == "'('"
            self.fail(f"expected a comparison after {after}" if keyword else f"expected a value after {after!r}")
        self.advance()
        if token.type == L.LPAREN:
            inner = self.expr(0, "'('")
            if not self.at(L.RPAREN):
                if self.at(L.EOF, L.INTO):  # edgeHub's SyntaxErrorMissingParen
                    got = self.peek()
                    raise SyntaxProblem(
                        f"Syntax error: missing closing ')' for the '(' at col {self.col(token)} "
                        f"(got {got.describe()} at col {self.col(got)})",
                        self.col(token),
                    )
                self.fail(f"expected ')' matching the '(' of col {self.col(token)}")
            self.advance()
            return inner
        if token.type in LITERALS:
            return Literal(token)
        if token.type == L.SYS_PROP:
            return SysProperty(token)
        if token.type == L.LBRACE:
            prop = self.expect(L.SYS_PROP, "expected a $property after '{'")
            self.expect(L.RBRACE, "expected '}' after {" + prop.text)
            return EscapedSysProperty(prop)
        # ID: a property, or a function call
        if not self.at(L.LPAREN):
            return Property(token)
        self.advance()
        args: list[Node] = []
        first = self.pos
        if not self.at(L.RPAREN):
            args.append(self.expr(0, f"{token.text}("))
            while self.at(L.COMMA):
                self.advance()
                args.append(self.expr(0, ","))
        if not self.at(L.RPAREN):
            self.fail(f"expected ',' or ')' in the arguments of {token.text}")
        args_text = "".join(t.text for t in self.tokens[first : self.pos])
        self.advance()
        return Call(token, tuple(args), args_text)
