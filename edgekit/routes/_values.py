"""The values of edgeHub's route conditions, with .NET's arithmetic, string and number-parsing rules.

edgeHub compiles a condition to a .NET expression over six static types: string, number (double), Bool
(three-valued), Null, Undefined and QueryValue (what a `$body` query returns). At run time here:

    string      str, NULL_STRING (a C# null string: an application property whose value is null) or UNDEFINED
    number      float; NaN is edgeHub's undefined number
    Bool        True, False or UNDEFINED
    Null        None
    Undefined   UNDEFINED
    QueryValue  UNDEFINED, MISSING (a `$body` path that matched nothing: edgeHub's QueryValue.Null singleton),
                None (a JSON null), bool, float, str or NULL_STRING

Strings follow .NET: lengths, indexes and ordinal order count UTF-16 code units, upper/lower case maps one
character to one character (invariant culture).
"""

from __future__ import annotations

import math
import re
from typing import Any, Final


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final[Any] = _Sentinel("undefined")
MISSING: Final[Any] = _Sentinel("null (no such field)")
NULL_STRING: Final[Any] = _Sentinel("null string")
NAN: Final = math.nan

# QueryValueType, in edgeHub's order: values of different types compare by it.
KIND_NONE, KIND_BOOL, KIND_DOUBLE, KIND_STRING, KIND_NULL = 0, 1, 2, 3, 4


def qv_kind(value: Any) -> int:
    kind = type(value)
    if kind is float:
        return KIND_DOUBLE
    if kind is str or value is NULL_STRING:
        return KIND_STRING
    if kind is bool:
        return KIND_BOOL
    if value is None or value is MISSING:
        return KIND_NULL
    return KIND_NONE


# --- numbers -----------------------------------------------------------------------------------------------------


def double_compare(a: float, b: float) -> int:
    """.NET's Double.CompareTo: NaN is smaller than everything and equal to itself."""
    if a < b:
        return -1
    if a > b:
        return 1
    if a == b:
        return 0
    if a != a:
        return 0 if b != b else -1
    return 1


def divide(a: float, b: float) -> float:
    if b != 0 or b != b:
        return a / b
    if a != a or a == 0:
        return NAN
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def remainder(a: float, b: float) -> float:
    """C#'s `%` on doubles: the sign of the dividend; x % 0, inf % x and NaN give NaN."""
    try:
        return math.fmod(a, b)
    except ValueError:
        return NAN


def power(x: float, y: float) -> float:
    """Math.Pow: IEEE results where Python's math.pow raises."""
    try:
        return math.pow(x, y)
    except OverflowError:
        odd = y == int(y) and int(y) % 2 == 1
        return -math.inf if x < 0 and odd else math.inf
    except ValueError:
        if x == 0 and y < 0:
            odd = y == int(y) and int(y) % 2 == 1
            return -math.inf if odd and math.copysign(1.0, x) < 0 else math.inf
        return NAN


def exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def ceiling(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


def floor(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


def sign(x: float) -> float:
    return float((x > 0) - (x < 0)) if x == x else NAN


def sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else NAN


def hex_literal(text: str) -> float | None:
    """long.TryParse(hex digits, HexNumber) as a double: 16 digits at most (the top bit makes it negative)."""
    value = int(text[2:], 16)
    if value >= 1 << 64:
        return None
    return float(value - (1 << 64) if value >= 1 << 63 else value)


_WHITE = "\t\n\v\f\r "
_NUMBER = re.compile(
    r"""(?P<lead>[+-]|\()?¤?(?P<int>[0-9][0-9,]*)?(?:\.(?P<frac>[0-9]*))?(?P<exp>[eE][+-]?[0-9]+)?¤?(?P<trail>[+-]|\))?""",
)
_SPECIAL = {"nan": NAN, "infinity": math.inf, "∞": math.inf}


def parse_number(text: str) -> float | None:
    """Double.TryParse(text, NumberStyles.Any, InvariantCulture): surrounding white space, a leading or trailing
    sign or parentheses, thousands commas, a decimal point, an exponent, the currency sign ¤; NaN and Infinity."""
    text = text.strip(_WHITE)
    sign_, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:]) if text[:1] == "+" else (1.0, text)
    special = _SPECIAL.get(body.lower())
    if special is not None:
        return sign_ * special
    match = _NUMBER.fullmatch(text)
    if match is None or not (match["int"] or match["frac"]):
        return None
    lead, trail = match["lead"], match["trail"]
    if lead and trail and not (lead == "(" and trail == ")"):
        return None
    if (lead == "(") != (trail == ")"):
        return None
    number = float(f"{(match['int'] or '0').replace(',', '')}.{match['frac'] or '0'}{match['exp'] or ''}")
    negative = lead in ("-", "(") or trail == "-"
    return -number if negative else number


# --- strings, as .NET sees them ----------------------------------------------------------------------------------


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _from_utf16(data: bytes) -> str:
    return data.decode("utf-16-le", "surrogatepass")


def _bmp(text: str) -> bool:
    return text.isascii() or max(text) <= "\uffff"


def ordinal_compare(a: str, b: str) -> int:
    """string.Compare(a, b, StringComparison.Ordinal): UTF-16 code unit order."""
    if not (_bmp(a) and _bmp(b)):
        a_units, b_units = _utf16(a), _utf16(b)
        a_key = [int.from_bytes(a_units[i : i + 2], "little") for i in range(0, len(a_units), 2)]
        b_key = [int.from_bytes(b_units[i : i + 2], "little") for i in range(0, len(b_units), 2)]
        return (a_key > b_key) - (a_key < b_key)
    return (a > b) - (a < b)


def utf16_length(text: str) -> int:
    return len(text) if _bmp(text) else len(_utf16(text)) // 2


def utf16_substring(text: str, start: int, length: int | None = None) -> str:
    if _bmp(text):
        return text[start:] if length is None else text[start : start + length]
    units = _utf16(text)
    end = len(units) if length is None else 2 * (start + length)
    return _from_utf16(units[2 * start : end])


def utf16_index_of(text: str, fragment: str) -> int:
    index = text.find(fragment)
    if index <= 0 or _bmp(text[:index]):
        return index
    return utf16_length(text[:index])


def _one_to_one(text: str, method: str) -> str:
    if text.isascii():
        return str(getattr(text, method)())
    mapped = []
    for char in text:
        other = getattr(char, method)()
        mapped.append(other if len(other) == 1 else char)
    return "".join(mapped)


def upper_invariant(text: str) -> str:
    return _one_to_one(text, "upper")


def lower_invariant(text: str) -> str:
    return _one_to_one(text, "lower")


def fold(text: str) -> str:
    """The key under which .NET's OrdinalIgnoreCase compares `text`."""
    return text.upper() if text.isascii() else upper_invariant(text)
