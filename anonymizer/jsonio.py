"""Bytes <-> resource dicts, keeping numbers as written.

orjson is the fast path. It would write `1.50` as 1.5, integers beyond 64 bits and tiny or huge
values in exponent form, so such lines take an exact path (the standard library parser, numbers
kept with their text) and are written back through orjson.Fragment. Finding them costs two checks:
- on the raw line, unless orjson writes the parsed line back byte for byte (compact exports do),
  one scan for two byte patterns anchored on '.': a fraction ending in 0, and a long fraction
  whose text is then compared with its float's shortest form;
- in the walk, `check_float` on every float a decimal element holds: integral, tiny, huge or long
  values raise InexactNumber, and the caller parses the line again on the exact path.
Numbers written with an exponent come out in plain decimal notation, as the reference's .NET
decimals print them (`1e2` -> `100`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

_END = rb"[ \t\r\n]*[,}\]]"
# One scan: a fraction ending in 0 (ends with a delimiter), or a long fraction (ends in a digit).
_SUSPECT_FRACTION = re.compile(rb"\.(?:\d*0" + _END + rb"|\d{11,})")
_DIGITS = frozenset(b"0123456789-")
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_BEFORE = frozenset(b":,[ \t\r\n")


class InexactNumber(Exception):
    """A float whose text orjson may not reproduce: parse the line on the exact path."""


def check_float(value: float) -> float:
    magnitude = abs(value)
    if (
        value.is_integer()
        or magnitude < 1e-4
        or magnitude >= 1e16
        or (magnitude >= 1e5 and len(repr(value)) > 16)
    ):
        raise InexactNumber
    return value


def needs_exact_path(data: bytes) -> bool:
    for m in _SUSPECT_FRACTION.finditer(data):
        if m[0][-1] not in _DIGITS:
            return True  # a trailing zero
        start = m.start()
        while start and data[start - 1] in _DIGITS:
            start -= 1
        if start and data[start - 1] not in _BEFORE:
            continue  # inside a string
        token = data[start : m.end()]
        if repr(float(token)).encode() != token:
            return True
    return False


def decimal_text(value: Decimal) -> str:
    """A decimal as .NET prints it: never with an exponent (`1E+2` -> `100`)."""
    text = str(value)
    return format(value, "f") if "E" in text or "e" in text else text


class RawNumber(Decimal):
    """A JSON number from the exact path: its value as a Decimal, its text as written."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> RawNumber:
        number = super().__new__(cls, text)
        number.text = text if "e" not in text and "E" not in text else decimal_text(number)
        return number


def _exact_int(text: str) -> int | Decimal:
    # orjson writes integers up to 64 bits; larger ones go out through a Fragment.
    return int(text) if len(text) < 19 else RawNumber(text)


def loads_exact(data: bytes | str) -> Any:
    return json.loads(data, parse_float=RawNumber, parse_int=_exact_int)


def loads(line: bytes | str) -> Any:
    """Parse one JSON document. Raises ValueError (orjson.JSONDecodeError is one) on bad JSON."""
    return parse(line)[0]


def parse(line: bytes | str) -> tuple[Any, bool]:
    """`loads`, and whether the exact path parsed it (numbers are then Decimals)."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    value = orjson.loads(data)
    # Exports are written compact, as orjson writes them: when writing the value back gives the
    # same bytes (an NDJSON line's `\n` included), every number kept its text, which one C call
    # proves faster than the scan.
    written = orjson.dumps(value, option=_NEWLINE if data[-1:] == b"\n" else None)
    if written != data and needs_exact_path(data):
        return loads_exact(data), True
    return value, False


def exact_floats(value: Any) -> Any:
    """A parsed document with floats turned into Decimals of their shortest text (for documents
    that arrive parsed, without their text)."""
    if type(value) is dict:
        return {k: exact_floats(v) for k, v in value.items()}
    if type(value) is list:
        return [exact_floats(v) for v in value]
    if type(value) is float:
        return RawNumber(repr(value))
    return value


def _exact_default(value: Any) -> Any:
    if type(value) is RawNumber:
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal):
        return orjson.Fragment(decimal_text(value))
    raise TypeError(f"cannot serialise {type(value).__name__}")


# Newtonsoft escapes these three; orjson writes them as they are.
_NEWTONSOFT_ESCAPES = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _escape(data: bytes) -> bytes:
    if data.isascii():
        return data
    for raw, escaped in _NEWTONSOFT_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def dumps_compact(resource: dict) -> bytes:
    return _escape(orjson.dumps(resource, default=_exact_default))


def dumps_line(resource: dict) -> bytes:
    """`dumps_compact` and a `\\n`: one NDJSON line."""
    data = orjson.dumps(resource, default=_exact_default, option=_NEWLINE)
    return data if data.isascii() else _escape(data)  # (most lines: one call less)


def dumps_pretty(resource: dict) -> bytes:
    """Newtonsoft's indented format: 2 spaces, `"key": value`, no trailing newline."""
    return _escape(orjson.dumps(resource, default=_exact_default, option=orjson.OPT_INDENT_2))
