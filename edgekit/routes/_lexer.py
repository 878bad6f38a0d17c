"""edgeHub's route lexer (GrammarLexer.g4), rule for rule: the longest match wins, a tie goes to the rule
written first. Two consequences routes meet:

- A name (ID) runs over every character but ( ) < > @ , ; : \\ " / [ ] ? = { } and white space, so `a-1`,
  `x+1`, `-x`, `a!` and `'it''s'` are single names (application properties), not expressions: put spaces
  around operators. `-1` alone is a number; `- x` negates.
- Keywords (SELECT FROM WHERE INTO AND OR NOT) are any case; true, false, null and undefined lowercase only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Token types, in the lexer's rule order (the implicit '{' and '}' of the parser come first).
LBRACE, RBRACE = "'{'", "'}'"
SELECT, FROM, WHERE, INTO = "SELECT", "FROM", "WHERE", "INTO"
STRING, UNTERMINATED_STRING = "STRING", "UNTERMINATED_STRING"
INTEGER, HEX, REAL = "INTEGER_LITERAL", "HEX_INTEGER_LITERAL", "REAL_LITERAL"
TRUE, FALSE, NULL, UNDEFINED = "TRUE", "FALSE", "NULL", "UNDEFINED"
LPAREN, RPAREN, COMMA, PLUS, MINUS, MUL, DIV, MOD = "'('", "')'", "','", "'+'", "'-'", "'*'", "'/'", "'%'"
AND, OR, NOT = "AND", "OR", "NOT"
EQ, NE1, NE2, LE, GE, GT, LT, CONCAT, COALESCE = "'='", "'!='", "'<>'", "'<='", "'>='", "'>'", "'<'", "'||'", "'??'"
SYS_PROP, ID, QUERY_PATH = "SYS_PROP", "ID", "QUERY_PATH"
WS, COMMENT, UNKNOWN_CHAR, EOF = "WS", "COMMENT", "UNKNOWN_CHAR", "EOF"

_ESC = r"""\\(?:["'\\]|u[0-9a-fA-F]{4})"""
_QUERY_PATH_CHARS = r"""[^()<>@,;:\\"/?={} \t\n\r]"""
_ID_CHARS = r"""[^()<>@,;:\\"/\[\]?={} \t\n\r]"""


def _keyword(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


_RULES: list[tuple[str, re.Pattern[str]]] = [
    (kind, re.compile(pattern, re.DOTALL))
    for kind, pattern in [
        (LBRACE, r"\{"),
        (RBRACE, r"\}"),
        (SELECT, _keyword("select")),
        (FROM, _keyword("from")),
        (WHERE, _keyword("where")),
        (INTO, _keyword("into")),
        (STRING, rf""""(?:{_ESC}|[^"\\])*"|'(?:{_ESC}|[^'\\])*'"""),
        (UNTERMINATED_STRING, rf""""(?:{_ESC}|[^"\\])*|'(?:{_ESC}|[^'\\])*"""),
        (INTEGER, r"-?[0-9]+"),
        (HEX, r"0[Xx][0-9a-fA-F]+"),
        (REAL, r"-?[0-9]*\.[0-9]+(?:[Ee][+\-]?[0-9]+)?|-?[0-9]*[Ee][+\-]?[0-9]+"),
        (TRUE, r"true"),
        (FALSE, r"false"),
        (NULL, r"null"),
        (UNDEFINED, r"undefined"),
        (LPAREN, r"\("),
        (RPAREN, r"\)"),
        (COMMA, r","),
        (PLUS, r"\+"),
        (MINUS, r"-"),
        (MUL, r"\*"),
        (DIV, r"/"),
        (MOD, r"%"),
        (AND, _keyword("and")),
        (OR, _keyword("or")),
        (NOT, _keyword("not")),
        (EQ, r"="),
        (NE1, r"!="),
        (NE2, r"<>"),
        (LE, r"<="),
        (GE, r">="),
        (GT, r">"),
        (LT, r"<"),
        (CONCAT, r"\|\|"),
        (COALESCE, r"\?\?"),
        (SYS_PROP, rf"\${_QUERY_PATH_CHARS}+"),
        (ID, rf"{_ID_CHARS}+"),
        (QUERY_PATH, rf"{_QUERY_PATH_CHARS}+"),
        (WS, r"[ \t\r\n]+"),
        (COMMENT, r"/\*.*?\*/"),
        (UNKNOWN_CHAR, r"."),
    ]
]
HIDDEN = frozenset({WS, COMMENT})
_DIGITS = "0123456789"
# The characters each rule's match can start with (ID, QUERY_PATH and UNKNOWN_CHAR: any), to try only those rules.
_STARTERS = {
    LBRACE: "{",
    RBRACE: "}",
    SELECT: "sS",
    FROM: "fF",
    WHERE: "wW",
    INTO: "iI",
    STRING: "\"'",
    UNTERMINATED_STRING: "\"'",
    INTEGER: "-" + _DIGITS,
    HEX: "0",
    REAL: "-.eE" + _DIGITS,
    TRUE: "t",
    FALSE: "f",
    NULL: "n",
    UNDEFINED: "u",
    LPAREN: "(",
    RPAREN: ")",
    COMMA: ",",
    PLUS: "+",
    MINUS: "-",
    MUL: "*",
    DIV: "/",
    MOD: "%",
    AND: "aA",
    OR: "oO",
    NOT: "nN",
    EQ: "=",
    NE1: "!",
    NE2: "<",
    LE: "<",
    GE: ">",
    GT: ">",
    LT: "<",
    CONCAT: "|",
    COALESCE: "?",
    SYS_PROP: "$",
    WS: " \t\r\n",
    COMMENT: "/",
}
_candidates: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


def _rules_for(char: str) -> list[tuple[str, re.Pattern[str]]]:
    rules = _candidates.get(char)
    if rules is None:
        rules = _candidates[char] = [(k, p) for k, p in _RULES if k not in _STARTERS or char in _STARTERS[k]]
    return rules


@dataclass(frozen=True)
class Token:
    type: str
    text: str
    start: int  # index in the text

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def describe(self) -> str:
        return "end of route" if self.type == EOF else repr(self.text)


def tokenize(text: str) -> list[Token]:
    """The tokens the parser sees (white space and /* comments */ dropped), ending with EOF."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        best_kind, best_len = UNKNOWN_CHAR, 0
        for kind, pattern in _rules_for(text[pos]):
            match = pattern.match(text, pos)
            if match is not None and len(match.group()) > best_len:
                best_kind, best_len = kind, len(match.group())
        if best_kind not in HIDDEN:
            tokens.append(Token(best_kind, text[pos : pos + best_len], pos))
        pos += best_len
    tokens.append(Token(EOF, "", len(text)))
    return tokens
