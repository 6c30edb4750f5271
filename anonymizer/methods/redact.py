"""redact: removes values; with the partial flags keeps the year of dates, ages up to 89 and the
first three digits of zip codes (docs/reference.md section 4.2)."""

from __future__ import annotations

import re

from anonymizer.errors import InvalidInputError
from anonymizer.methods.base import (
    ABSTRACT,
    REDACT,
    Method,
    PrimitiveAction,
    Removal,
    ResourceState,
    core_form,
)
from anonymizer.methods.dates import DATE_TYPES, pattern_for, redact_partial
from anonymizer.r4.model import Element

_UNICODE_DIGIT = re.compile(r"\d")  # .NET \d: any Unicode decimal digit


_remove = Removal(REDACT)


class RedactMethod(Method):
    name = "redact"

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        params = self.parameters
        if element.type_name in DATE_TYPES:
            return self._partial_date(element.type_name) if params.partial_dates else _remove
        if element.type_name == "decimal" and parent_type == "Age":
            return _partial_age if params.partial_ages else _remove
        if element.name.lower() == "postalcode":
            return self._partial_zip() if params.partial_zip_codes else _remove
        return _remove

    def _partial_date(self, type_name: str) -> PrimitiveAction:
        pattern = pattern_for(type_name)
        reference_date = self.parameters.reference_date

        def redact_date(value: str, state: ResourceState) -> str | None:
            state.ops |= REDACT
            return redact_partial(pattern.search(value), value, reference_date)

        return core_form(redact_date, "partial_date", type_name == "date")

    def _partial_zip(self) -> PrimitiveAction:
        restricted = self.parameters.restricted_zip_codes

        def redact_zip(value: str, state: ResourceState) -> str:
            state.ops |= ABSTRACT
            return partial_zip(value, restricted)

        return core_form(redact_zip, "partial_zip")


def _redact_age(value: object, state: ResourceState) -> object:
    state.ops |= REDACT
    text = str(value)
    if not text.lstrip("-").isdigit():
        # The reference's int.Parse fails here too (an unskippable error there).
        raise InvalidInputError("An Age.value is not a whole number; partial age redaction needs one")
    return None if int(text) > 89 else value


_partial_age = core_form(_redact_age, "partial_age")


def partial_zip(value: str, restricted: tuple[str, ...]) -> str:
    if any(value.startswith(prefix) for prefix in restricted):
        return _UNICODE_DIGIT.sub("0", value)
    if len(value) >= 3:
        return value[:3] + _UNICODE_DIGIT.sub("0", value[3:])
    return value
