"""Bytes <-> resource dicts, keeping numbers as written.

orjson is the fast path. It would write `1.50` as 1.5, integers beyond 64 bits and tiny or huge
values in exponent form, so such lines take an exact path (the standard library parser, numbers
kept with their text) and are written back through orjson.Fragment. Finding them costs two checks:
- on the raw line, unless orjson writes the parsed line back byte for byte (compact exports do),
  one scan for two byte patterns anchored on '.': a fraction ending in 0, and a long fraction
  whose text is then compared with its float's shortest form; and one for a number written
  with an exponent;
- in the walk, `check_float` on every float a decimal element holds: integral, tiny, huge or long
  values raise InexactNumber, and the caller parses the line again on the exact path.
Numbers written with an exponent come out in plain decimal notation, as the reference's .NET
decimals print them (`1e2` -> `100`).

Two limits keep every line's cost proportional to its size, whatever it holds (docs/limits.md):
- MAX_DEPTH: objects and arrays nested deeper than 128 levels (the line's object is level 1) are
  `too_deep`. The check rides on the `orjson.dumps` the exactness test makes anyway: the value is
  written inside a fixed chain of lists, so that orjson's own limit (254 levels) trips exactly
  when the value is deeper than MAX_DEPTH.
- MAX_NUMBER_DIGITS: a number whose plain decimal text would hold more than 1,000 digits
  (`1e-999999999` would hold a billion) is `number_out_of_range`; numbers within it keep their
  text, `1e400` and a 400-digit integer included (orjson refuses them; the exact path reads them).
"""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from typing import Any

import orjson

from anonymizer.errors import InvalidInputError

MAX_DEPTH = 128
MAX_NUMBER_DIGITS = 1000
_ORJSON_DEPTH = 254  # the deepest value orjson.dumps writes
_WRAP = _ORJSON_DEPTH - MAX_DEPTH

_END = rb"[ \t\r\n]*[,}\]]"
# One scan: a fraction ending in 0 (ends with a delimiter), or a long fraction (ends in a digit).
_SUSPECT_FRACTION = re.compile(rb"\.(?:\d*0" + _END + rb"|\d{11,})")
# A number written with an exponent (between delimiters, so rarely text inside a string): it is
# written back in plain decimal notation, which its float alone cannot tell (`1.250e1` is 12.50).
_EXPONENT_NUMBER = re.compile(rb"(?<![^:,\[ \t\r\n])-?\d+(?:\.\d+)?[eE][+-]?\d+(?=[ \t\r\n]*[,}\]])")
_DIGITS = frozenset(b"0123456789-")
_NEWLINE = orjson.OPT_APPEND_NEWLINE
_BEFORE = frozenset(b":,[ \t\r\n")


class InexactNumber(Exception):
    """A float whose text orjson may not reproduce: parse the line on the exact path."""


class TooDeep(InvalidInputError):
    def __init__(self) -> None:
        super().__init__(f"The input FHIR resource is nested deeper than {MAX_DEPTH} levels", kind="too_deep")


class NumberOutOfRange(InvalidInputError):
    def __init__(self) -> None:
        super().__init__(
            f"The input holds a number whose decimal text would exceed {MAX_NUMBER_DIGITS} digits",
            kind="number_out_of_range",
        )


def plain_digits(number: Decimal) -> int:
    """How many digits the number's plain decimal text holds, without writing it."""
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # NaN or infinity: the parsers admit neither
        raise NumberOutOfRange
    if exponent >= 0:
        return len(digits) + exponent
    return len(digits) if -exponent < len(digits) else 1 - exponent


def checked_decimal(text: str) -> Decimal:
    """Decimal(text), refusing a number whose plain text would exceed MAX_NUMBER_DIGITS."""
    number = Decimal(text)
    if (len(text) > MAX_NUMBER_DIGITS or "e" in text or "E" in text) and plain_digits(
        number
    ) > MAX_NUMBER_DIGITS:
        raise NumberOutOfRange
    return number


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
    if _EXPONENT_NUMBER.search(data):
        return True
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
    """A decimal as .NET prints it: never with an exponent (`1E+2` -> `100`). Numbers read from
    input passed MAX_NUMBER_DIGITS (RawNumber, checked_decimal)."""
    text = str(value)
    return format(value, "f") if "E" in text or "e" in text else text


class RawNumber(Decimal):
    """A JSON number from the exact path: its value as a Decimal, its text as written."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> RawNumber:
        number = super().__new__(cls, text)
        plain = "e" not in text and "E" not in text
        if (not plain or len(text) > MAX_NUMBER_DIGITS) and plain_digits(number) > MAX_NUMBER_DIGITS:
            raise NumberOutOfRange
        number.text = text if plain else decimal_text(number)
        return number


def _exact_int(text: str) -> int | Decimal:
    # orjson writes integers up to 64 bits; larger ones go out through a Fragment.
    return int(text) if len(text) < 19 else RawNumber(text)


def _no_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def loads_exact(data: bytes | str) -> Any:
    """The standard library parser with numbers kept as written (RawNumber). For text that
    passed `parse`; raises NumberOutOfRange for a number past MAX_NUMBER_DIGITS."""
    return json.loads(data, parse_float=RawNumber, parse_int=_exact_int, parse_constant=_no_constant)


def loads(line: bytes | str) -> Any:
    """Parse one JSON document. Raises ValueError (orjson.JSONDecodeError is one) on bad JSON,
    TooDeep or NumberOutOfRange (InvalidInputError) past the limits."""
    return parse(line)[0]


class _Chain(threading.local):
    """_WRAP nested lists, per thread: `inner[0]` holds the value being written."""

    def __init__(self) -> None:
        self.inner: list[Any] = [None]
        outer = self.inner
        for _ in range(_WRAP - 1):
            outer = [outer]
        self.outer = outer


_CHAIN = _Chain()


def _write_checked(value: Any, default: Any = None) -> bytes:
    """orjson.dumps(value) (compact, no newline), raising TooDeep when the value is nested deeper
    than MAX_DEPTH: written inside the chain, it then passes orjson's own limit."""
    chain = _CHAIN
    chain.inner[0] = value
    try:
        written = orjson.dumps(chain.outer, default=default)
    except TypeError as exc:  # orjson.JSONEncodeError
        if str(exc) != "Recursion limit reached":
            raise
        fault = TooDeep()
    else:
        return written[_WRAP:-_WRAP]
    finally:
        chain.inner[0] = None
    raise fault


def check_depth(value: Any) -> None:
    """Raise TooDeep when a parsed document is nested deeper than MAX_DEPTH (for documents that
    arrive parsed; `parse` checks text on its way)."""
    try:
        _write_checked(value, _exact_default)
    except TooDeep:
        raise
    except TypeError:  # not JSON-serialisable: the walk reports what it meets
        pass


def parse(line: bytes | str) -> tuple[Any, bool]:
    """`loads`, and whether the exact path parsed it (numbers are then Decimals)."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):
            fault: InvalidInputError = TooDeep()
        elif exc.msg.startswith("number is infinity"):
            return _parse_beyond_floats(data), True
        else:
            raise
    else:
        # Exports are written compact, as orjson writes them: when writing the value back gives
        # the same bytes, every number kept its text, which one C call proves faster than the
        # scan. (The line's `\n` is JSON whitespace to the parser; compared without it.)
        written = _write_checked(value)
        if written != (data[:-1] if data[-1:] == b"\n" else data) and needs_exact_path(data):
            return loads_exact(data), True
        return value, False
    raise fault


def _parse_beyond_floats(data: bytes) -> Any:
    """A document orjson refused only for a number beyond a double (`1e400`, 400 digits): read on
    the exact path, holding it to what orjson holds every other document to (UTF-8, no NaN, no
    lone surrogates, MAX_DEPTH)."""
    data.decode("utf-8")  # UnicodeDecodeError (a ValueError) as orjson would refuse it
    try:
        value = loads_exact(data)
    except RecursionError:
        raise TooDeep from None
    try:
        _write_checked(value, _exact_default)
    except TooDeep:
        raise
    except TypeError:  # a lone surrogate, which orjson refuses to read
        raise ValueError("not JSON that orjson can write") from None
    return value


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
