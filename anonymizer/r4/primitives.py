"""Parsing and normalising FHIR primitive values the way the reference's Firely parser does.

Each normaliser takes the JSON value and returns the value to keep (strings trimmed with .NET's
whitespace set, booleans and integers given as strings converted), or None when Firely would drop
the property (an empty or whitespace-only string). A value that does not parse as its type raises
InvalidInputError; the message names the type, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation

from anonymizer.errors import InvalidInputError
from anonymizer.jsonio import check_float, checked_decimal, decimal_text

# .NET String.Trim() removes Unicode White_Space per char.IsWhiteSpace; Python's str.strip() would
# also strip U+001C..U+001F, so the set is explicit.
NET_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

_OFFSET = r"(Z|[+-](?:0\d|1[0-4]):[0-5]\d)?"
_YMD = r"(\d{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12]\d|3[01])"
_HMS = r"(?:[01]\d|2[0-3])(?::[0-5]\d(?::[0-5]\d(?:\.\d+)?)?)?"
DATE_RE = re.compile(_YMD + r")?)?" + _OFFSET, re.ASCII)
DATETIME_RE = re.compile(_YMD + r"(?:T" + _HMS + r")?)?)?" + _OFFSET, re.ASCII)
TIME_RE = re.compile(_HMS + _OFFSET, re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+", re.ASCII)
_DECIMAL_RE = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", re.ASCII)
_INT32 = (-(2**31), 2**31 - 1)


def _bad(type_name: str) -> InvalidInputError:
    return InvalidInputError(f"The input FHIR resource is invalid: a {type_name} value does not parse")


def trim(value: str) -> str:
    return value.strip(NET_WHITESPACE)


def _string(value: object) -> str | None:
    if type(value) is not str:
        raise _bad("string")
    value = value.strip(NET_WHITESPACE)
    return value or None


def _boolean(value: object) -> bool | None:
    if type(value) is bool:
        return value
    if type(value) is str:
        text = value.strip(NET_WHITESPACE)
        if text == "true":
            return True
        if text == "false":
            return False
        if not text:
            return None
    raise _bad("boolean")


def _integer(value: object) -> int | None:
    if type(value) is int:
        number = value
    elif type(value) is str:
        text = value.strip(NET_WHITESPACE)
        if not text:
            return None
        if not _INT_RE.fullmatch(text):
            raise _bad("integer")
        number = int(text)
    else:
        raise _bad("integer")
    if not _INT32[0] <= number <= _INT32[1]:
        raise _bad("integer")
    return number


def _decimal(value: object) -> object:
    if type(value) is float:
        return check_float(value)
    if type(value) is int or isinstance(value, Decimal):
        return value
    if isinstance(value, str):  # (a str, never a subclass: JSON gives exact types)
        text = value.strip(NET_WHITESPACE)
        if not text:
            return None
        if not _DECIMAL_RE.fullmatch(text):
            raise _bad("decimal")
        try:
            return checked_decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid text
            raise _bad("decimal") from exc
    raise _bad("decimal")


def _valid_calendar(year: str, month: str | None, day: str | None) -> bool:
    """The patterns admit days up to 31; only days past 28 need the calendar."""
    if day is None or day < "29":
        return True
    try:
        date(int(year), int(month or 1), int(day))
    except ValueError:
        return False
    return True


def _calendar_text(pattern: re.Pattern[str], type_name: str) -> Callable[[object], str | None]:
    def normalize(value: object) -> str | None:
        text = _string(value)
        if text is None:
            return None
        m = pattern.fullmatch(text)
        if m is None or not _valid_calendar(m[1], m[2], m[3]):
            raise _bad(type_name)
        return text

    return normalize


_date = _calendar_text(DATE_RE, "date")
_datetime = _calendar_text(DATETIME_RE, "dateTime")

# Dates their normaliser returns unchanged, told by one regex (each month's days spelled out but
# 29 February, which needs the calendar; the patterns admit no whitespace): generated walk code
# accepts these without a call.
_MONTH_DAY = r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
_DATETIME_SAFE = re.compile(
    r"\d{4}(?:-(?:0[1-9]|1[0-2])|-" + _MONTH_DAY + r"(?:T" + _HMS + r")?)?" + _OFFSET, re.ASCII
)
ACCEPTED_AS_IS: dict[str, Callable[[str], object]] = {
    "date": re.compile(r"\d{4}(?:-(?:0[1-9]|1[0-2])|-" + _MONTH_DAY + r")?" + _OFFSET, re.ASCII).fullmatch,
    "dateTime": _DATETIME_SAFE.fullmatch,
    "instant": _DATETIME_SAFE.fullmatch,
}


def _time(value: object) -> str | None:
    text = _string(value)
    if text is None:
        return None
    if TIME_RE.fullmatch(text) is None:
        raise _bad("time")
    return text


_STRING_TYPES = [
    "base64Binary",
    "canonical",
    "code",
    "id",
    "markdown",
    "oid",
    "string",
    "uri",
    "url",
    "uuid",
    "xhtml",
]

NORMALIZERS: dict[str, Callable[[object], object]] = {
    **{name: _string for name in _STRING_TYPES},
    "boolean": _boolean,
    "integer": _integer,
    "positiveInt": _integer,
    "unsignedInt": _integer,
    "decimal": _decimal,
    "date": _date,
    "dateTime": _datetime,
    "instant": _datetime,
    "time": _time,
}


def value_text(value: object) -> str:
    """`Value.ToString()` of a node value as .NET prints it (booleans capitalised)."""
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, Decimal):
        return decimal_text(value)
    return str(value)
