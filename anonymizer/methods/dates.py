"""Date helpers shared by redact and dateShift: the reference's FHIR date patterns (searched
unanchored, as the reference does), the 89-year rule and partial-date redaction."""

from __future__ import annotations

import re
from datetime import date

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH_DAY = r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = (
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?"
)
# Groups: 1 year, 5 month, 7 day, 8 time (dateTime only).
DATE_PATTERN = re.compile(_YEAR + _MONTH_DAY + r")?)?")
DATETIME_PATTERN = re.compile(_YEAR + _MONTH_DAY + _TIME + r")?)?")
# A whole `YYYY-MM-DD` as the reference's pattern reads it.
FULL_DATE = re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])")
_TIME_DIGITS = re.compile(r"T[0-9:.]+")
_DIGIT = re.compile(r"[0-9]")

DATE_TYPES = frozenset({"date", "dateTime", "instant"})
AGE_LIMIT = 89


def older_than_limit(reference_date: date, year: int, month: int, day: int) -> bool:
    """The reference's age rule: more than 89 whole years before `reference_date`."""
    age = reference_date.year - year
    if (reference_date.month, reference_date.day) < (month, day):
        age -= 1
    return age > AGE_LIMIT


def pattern_for(type_name: str) -> re.Pattern[str]:
    return DATE_PATTERN if type_name == "date" else DATETIME_PATTERN


def redact_partial(match: re.Match[str] | None, value: str, reference_date: date) -> str | None:
    """Partial date redaction: the 4-digit year, or None when the date is over the age limit.
    A value in which no year is found stays unchanged (the reference does the same)."""
    if match is None:
        return value
    year = int(match[1])
    month = int(match[5]) if match[5] else 1
    day = int(match[7]) if match[7] else 1
    if older_than_limit(reference_date, year, month, day):
        return None
    return match[1]


def zeroed_time(length: int) -> str:
    """The zeroed `Thh:mm:ss[.fff]` of this length."""
    return _ZEROED[length] if length < len(_ZEROED) else _zeroed(length)


def _zeroed(length: int) -> str:
    return "T00:00:00" + ("." + "0" * (length - 10) if length > 9 else "")


_ZEROED = tuple(_zeroed(n) for n in range(24))


def zero_time(time_text: str) -> str:
    """`T13:28:17.123-05:00` -> `T00:00:00.000-05:00`: every digit of the time zeroed, the offset
    kept as written."""
    m = _TIME_DIGITS.match(time_text)
    assert m is not None
    return _DIGIT.sub("0", m[0]) + time_text[m.end() :]
