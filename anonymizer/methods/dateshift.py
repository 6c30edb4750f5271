"""dateShift: moves dates by a per-resource (or per-file, -folder, -patient) offset and zeroes the
time of day; dates without a day, or over the age limit, fall back to partial redaction
(docs/reference.md section 4.3). The offset formula is the reference's; the `patient` scope is ours."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from anonymizer.methods.base import (
    PERTURB,
    REDACT,
    Method,
    PrimitiveAction,
    ResourceState,
    Shared,
    core_form,
)
from anonymizer.methods.dates import (
    AGE_LIMIT,
    DATE_TYPES,
    FULL_DATE,
    older_than_limit,
    pattern_for,
    redact_partial,
    zero_time,
    zeroed_time,
)
from anonymizer.r4.model import Element

if TYPE_CHECKING:
    from anonymizer.config import Parameters

_MODULUS = 101
# Bounded memory (cleared when full): dates repeat within a patient's resources, and a multi-GB
# export must not grow memory.
_CACHE_LIMIT = 1 << 13
_BASE = 131


# The fold below is a polynomial in 131, and 131 = 30 (mod 101): it is the number whose base-30
# digits are the bytes. A byte b is 30*(b // 30) + b % 30, so that number is int(R, 30) +
# 30 * int(Q, 30) with R and Q the strings of remainders and quotients; int() does the work in C.
_DIGITS30 = b"0123456789abcdefghijklmnopqrst"
_REMAINDERS = bytes(_DIGITS30[b % 30] for b in range(256))
_QUOTIENTS = bytes(_DIGITS30[b // 30] for b in range(256))


def _fold(data: bytes) -> int:
    """o = 0; for b in data: o = (o*131 + b) % 101"""
    if not data:
        return 0
    remainders = int(data.translate(_REMAINDERS), 30)
    return (remainders + 30 * int(data.translate(_QUOTIENTS), 30)) % _MODULUS


class _Memory(threading.local):
    """What date shifting learns while running, per thread (threading.local runs this per thread):
    the last prefix and its offset (a file's or folder's prefix repeats for every resource;
    resource ids do not, so no cache of them), values that shift as whole days, day numbers of
    `YYYY-MM-DD` heads and texts of shifted days (dates repeat: an encounter's resources share its
    times). Bounded: cleared when full."""

    def __init__(self, key_offset: int) -> None:
        self.last: tuple[str, int] = ("", key_offset)
        # value -> (day number, zeroed time and zone) when it shifts as a whole day, else ()
        # (the engine's reference date, hence the age cutoff, is fixed)
        self.dates: dict[str, tuple[int, str] | tuple[()]] = {}
        self.times: dict[str, tuple[int, str] | tuple[()]] = {}
        self.ordinals: dict[str, int] = {}
        self.day_texts: dict[int, str] = {}


class DateShiftOffsets:
    """The reference's offset: o = fold(UTF-8(prefix + key)) with o = (o*131 + b) % 101, minus 50.
    The fold is linear, so the key's part is computed once: fold(p + k) = fold(p)*131^len(k) +
    fold(k) (mod 101). One per engine (`Shared`), with per-thread memory."""

    def __init__(self, key: str) -> None:
        key_bytes = key.encode("utf-8")
        self._key_part = _fold(key_bytes)
        self._scale = pow(_BASE, len(key_bytes), _MODULUS)
        self.memory = _Memory(self._key_part - 50)

    @staticmethod
    def for_parameters(parameters: Parameters) -> DateShiftOffsets:
        return DateShiftOffsets(parameters.key("dateShiftKey"))

    def offset(self, prefix: str) -> int:
        memory = self.memory
        last_prefix, found = memory.last
        if prefix != last_prefix:
            found = (_fold(prefix.encode("utf-8")) * self._scale + self._key_part) % _MODULUS - 50
            memory.last = (prefix, found)
        return found


def patient_offset(key: str, patient_id: str, days: int) -> int:
    """Our `patient` scope: HMAC-SHA256(key, "patient:" + id) mapped onto +-days, never 0."""
    digest = hmac.digest(key.encode("utf-8"), f"patient:{patient_id}".encode(), hashlib.sha256)
    slot = int.from_bytes(digest[:8], "big") % (2 * days)
    return slot - days if slot < days else slot - days + 1


class DateShiftMethod(Method):
    name = "dateShift"
    varies = True

    def __init__(
        self, rule: Mapping[str, Any], parameters: Parameters, rule_index: int, shared: Shared
    ) -> None:
        super().__init__(rule, parameters, rule_index, shared)
        self._offsets = shared.get(DateShiftOffsets.for_parameters)

    @classmethod
    def key_needed(cls, parameters: Parameters) -> str | None:
        return "dateShiftKey" if parameters.date_shift_fixed_offset is None else None

    def offset_for(self, state: ResourceState, id_rewritten: bool) -> int:
        """Days to shift. `id_rewritten`: the plan knows whether the rule that reaches the root's
        id runs before this one, so whether this rule sees the id hashed or as written."""
        params = self.parameters
        if params.date_shift_fixed_offset is not None:
            return params.date_shift_fixed_offset
        scope = params.date_shift_scope
        if scope == "patient" and state.patient_id is not None:
            return patient_offset(params.key("dateShiftKey"), state.patient_id, params.date_shift_range)
        prefix = ""
        if scope == "file":
            prefix = state.file_name or ""
        elif scope == "folder":
            prefix = state.folder_name or ""
        if not prefix:
            prefix = state.root_id_out() if id_rewritten or not state.is_root else state.root_id()
        return self._offsets.offset(prefix)

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        return None  # the plan asks `date_action`, which needs to know about the root id

    def date_action(self, element: Element, id_rewritten: bool) -> PrimitiveAction | None:
        if element.type_name not in DATE_TYPES:
            return None
        pattern = pattern_for(element.type_name)
        is_date = element.type_name == "date"
        params = self.parameters
        reference_date = params.reference_date
        partial = params.partial_dates

        # One offset per resource and prefix kind (every dateShift rule of a configuration
        # shares the parameters): the root id as written or rewritten, in a root or nested
        # resource.
        root_decision, nested_decision = 2 * id_rewritten + 1, 2 * id_rewritten
        # Over the age limit: on or before the cutoff, compared as text (`compute` redacts).
        cutoff = f"{reference_date.year - AGE_LIMIT - 1:04d}-{reference_date:%m-%d}"
        # Values that shift as whole days, read once per thread: dates repeat (an encounter's
        # resources share its times), their offsets differ.
        memory = self._offsets.memory

        def compute(value: str, days: int) -> tuple[str | None, int]:
            match = pattern.search(value)
            if match is not None and match[7] is not None:
                year, month, day = int(match[1]), int(match[5]), int(match[7])
                if not older_than_limit(reference_date, year, month, day):
                    shifted = (date(year, month, day) + timedelta(days=days)).isoformat()
                    if not is_date and match[8]:
                        return shifted + zero_time(match[8]), PERTURB
                    return shifted, PERTURB
            return (redact_partial(match, value, reference_date) if partial else None), REDACT

        def shift(value: str, state: ResourceState) -> str | None:
            state.varying += 1  # the offset is the resource's (reuse.py)
            decision = root_decision if state.is_root else nested_decision
            days = state.offsets.get(decision)
            if days is None:
                days = state.offsets[decision] = self.offset_for(state, id_rewritten)
            shiftable = memory.dates if is_date else memory.times
            found = shiftable.get(value)
            if found is None:
                found = _read_shiftable(value, is_date, cutoff, shiftable, memory)
            if found:
                state.ops |= PERTURB
                ordinal, time_part = found
                day_texts = memory.day_texts
                text = day_texts.get(ordinal + days) or _day_text(ordinal + days, day_texts)
                return text + time_part if time_part else text
            shifted, operation = compute(value, days)
            state.ops |= operation
            return shifted

        shift.counts_varying = True  # type: ignore[attr-defined]
        return core_form(shift, "shift", is_date, id_rewritten)


def _read_shiftable(
    value: str, is_date: bool, cutoff: str, cache: dict[str, tuple[int, str] | tuple[()]], memory: _Memory
) -> tuple[int, str] | tuple[()]:
    """(day number, zeroed time and zone) for a value that shifts as a whole day, else ().
    Values arrive validated by the parser, so a full `YYYY-MM-DD` head decides the date part
    alone, and a time that the reference's pattern takes is zeroed by its length."""
    found: tuple[int, str] | tuple[()] = ()
    size = len(value)
    if size == 10 or (size > 10 and not is_date and value[10] == "T"):
        head = value[:10]
        ordinal = memory.ordinals.get(head)
        if ordinal is None:
            ordinal = _ordinal_of(head, memory.ordinals)
        if ordinal and head > cutoff:
            zone = _zone_start(value, size) if size > 10 else 0
            # no zone, or no seconds: the reference keeps the date alone
            found = (ordinal, zeroed_time(zone - 10) + value[zone:] if zone >= 19 else "")
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[value] = found
    return found


# Shifted days span the input's dates and 50 days more: over a century of days fits (about 8 MB).
_DAY_TEXT_LIMIT = 1 << 16


def _ordinal_of(head: str, ordinals: dict[str, int]) -> int:
    """The day number of a `YYYY-MM-DD` head the reference reads as a whole day, else 0."""
    # (try, not contextlib.suppress: a context manager per new day cost a fifth of this)
    try:
        found = date.fromisoformat(head).toordinal() if FULL_DATE.fullmatch(head) else 0
    except ValueError:  # not a calendar day (the parser admits none)
        found = 0
    if len(ordinals) >= _CACHE_LIMIT:
        ordinals.clear()
    ordinals[head] = found
    return found


def _day_text(ordinal: int, day_texts: dict[int, str]) -> str:
    found = day_texts.get(ordinal)
    if found is None:
        if len(day_texts) >= _DAY_TEXT_LIMIT:
            day_texts.clear()
        found = day_texts[ordinal] = date.fromordinal(ordinal).isoformat()
    return found


def _zone_start(value: str, size: int) -> int:
    """Where the zone of a parsed dateTime starts, if the reference's time pattern takes it
    (hours up to 13, or 14:00), else 0. The parser admitted the value, so its time reads
    `Thh(:mm(:ss(.f+)?)?)?` with an optional zone of `Z` or `+hh:mm` up to 14:59."""
    if value[-1] == "Z":
        return size - 1
    if value[-6] in "+-" and (value[-5:-3] != "14" or value[-2:] == "00"):
        return size - 6
    return 0
