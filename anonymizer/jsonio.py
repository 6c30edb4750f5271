"""Bytes <-> resource dicts, keeping numbers exactly as written.

orjson is the fast path. It turns `1.50` into 1.5 and integers beyond 64 bits into floats, so a
line holding a number whose text orjson would not reproduce takes an exact path (the standard
library parser with Decimal floats); Decimals are written back from their text through
orjson.Fragment. The test for such numbers is a cheap byte search that may send harmless lines to
the exact path but never misses one.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

# A fraction ending in 0, an exponent, 16+ digits in a row, or a small number repr would print
# in exponent form. Digits inside strings (dates, ids) may trigger it too; that only costs speed.
_RISKY_NUMBER = re.compile(rb"\.\d*0(?!\d)|\d[eE][-+]?\d|\d{16}|0\.0000|-0(?![.\d])")


class RawNumber(Decimal):
    """A JSON number from the exact path: its value as a Decimal, its text as written."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> RawNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _exact_default(value: Any) -> Any:
    if type(value) is RawNumber:
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal):
        return orjson.Fragment(_decimal_text(value))
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    if "E" in text or "e" in text:  # .NET prints decimals without exponent
        text = format(value, "f")
    return text


def loads(line: bytes | str) -> Any:
    """Parse one JSON document. Raises ValueError (orjson.JSONDecodeError is one) on bad JSON."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    if _RISKY_NUMBER.search(data) is None:
        return orjson.loads(data)
    return json.loads(data, parse_float=RawNumber, parse_int=_exact_int)


def _exact_int(text: str) -> int | Decimal:
    # orjson writes integers up to 64 bits; larger ones go out through a Fragment.
    return int(text) if len(text) < 19 else RawNumber(text)


# Newtonsoft escapes these three; orjson writes them as they are.
_NEWTONSOFT_ESCAPES = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _escape(data: bytes) -> bytes:
    for raw, escaped in _NEWTONSOFT_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def dumps_compact(resource: dict) -> bytes:
    return _escape(orjson.dumps(resource, default=_exact_default))


def dumps_pretty(resource: dict) -> bytes:
    """Newtonsoft's indented format: 2 spaces, `"key": value`, no trailing newline."""
    return _escape(orjson.dumps(resource, default=_exact_default, option=orjson.OPT_INDENT_2))
