"""perturb: adds uniform noise of width `span` (fixed, or proportional to the value) and rounds to
`roundTo` digits with banker's rounding; for quantity types it perturbs their `value` (reference
section 4.7). Noise comes from `secrets.SystemRandom` unless a generator is injected (tests)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from random import Random
from typing import TYPE_CHECKING, Any

from anonymizer.config import setting_text
from anonymizer.errors import ConfigurationError
from anonymizer.methods.base import (
    CLAIMED,
    PERTURB,
    ComplexAction,
    Method,
    NodeWalk,
    PrimitiveAction,
    ResourceState,
)
from anonymizer.r4.model import Element

if TYPE_CHECKING:
    from anonymizer.config import Parameters

NUMBER_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt"})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
QUANTITY_TYPES = frozenset(
    {"Age", "Count", "Duration", "Distance", "Money", "MoneyQuantity", "Quantity", "SimpleQuantity"}
)

_system_random = secrets.SystemRandom()


class PerturbMethod(Method):
    name = "perturb"
    settings = ("span", "rangeType", "roundTo")
    varies = True
    random: Random = _system_random  # tests inject a seeded generator

    def __init__(self, rule: Mapping[str, Any], parameters: Parameters, rule_index: int, shared: Any) -> None:
        super().__init__(rule, parameters, rule_index, shared)
        self.span = Decimal(str(rule.get("span", 0)))
        self.proportional = str(rule.get("rangeType", "fixed")).lower() == "proportional"
        self.round_to = int(str(rule["roundTo"])) if "roundTo" in rule else 2

    @classmethod
    def check_rule(cls, rule: Mapping[str, Any], path: str) -> None:
        """The reference's order and messages (PerturbSetting.ValidateRuleSettings)."""
        if "roundTo" in rule:
            try:
                round_to = int(setting_text(rule["roundTo"]).strip())
            except ValueError:
                round_to = -1
            if not 0 <= round_to <= 28:
                raise ConfigurationError(f"RoundTo value is invalid at {path}.")
        if "span" not in rule:
            raise ConfigurationError(f"Span value is required in perturb rule at {path}.")
        try:
            span = float(setting_text(rule["span"]).strip())
        except ValueError:
            span = -1.0
        if not span >= 0:
            raise ConfigurationError(f"Span value is invalid at {path}.")
        if "rangeType" in rule:
            range_type = rule["rangeType"]
            if not isinstance(range_type, str) or range_type.lower() not in ("fixed", "proportional"):
                raise ConfigurationError(f"RangeType value is invalid at {path}.")

    def perturb(self, value: Any, type_name: str) -> Any:
        number = Decimal(str(value))
        integer = type_name in INTEGER_TYPES
        digits = 0 if integer else self.round_to
        span = number * self.span if self.proportional else self.span
        if span < 0:
            raise ValueError("proportional perturbation of a negative value")  # the reference fails too
        if span:
            noise = Decimal(repr(self.random.uniform(float(-span / 2), float(span / 2))))
            number += noise
        result = number
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -digits:  # like .NET decimal.Round: never adds zeros
            result = number.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)
        if integer:
            whole = int(result)
            if type_name == "positiveInt" and whole <= 0:
                whole = 1
            elif type_name == "unsignedInt" and whole < 0:
                whole = 0
            return whole
        return result

    def child_mode(self, parent_type: str) -> int | None:
        # Perturbing a number or a quantity marks its whole subtree visited.
        return CLAIMED if parent_type in NUMBER_TYPES or parent_type in QUANTITY_TYPES else None

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        if element.type_name not in NUMBER_TYPES:
            return None
        type_name = element.type_name

        def perturb_number(value: Any, state: ResourceState) -> Any:
            state.ops |= PERTURB
            return self.perturb(value, type_name)

        return perturb_number

    def complex_action(self, element: Element) -> ComplexAction | None:
        if element.type_name not in QUANTITY_TYPES:
            return None

        def perturb_quantity(item: Any, node: NodeWalk) -> dict | None:
            result = node.as_reached(item)
            value_site = node.site.inner("value")
            value = item.get("value") if type(item) is dict else None
            reached = node.reached_earlier(item, value_site, None, value) if value is not None else False
            if result and result.get("value") is not None and not reached:
                result["value"] = self.perturb(result["value"], "decimal")
                node.record(PERTURB)
            return result

        return perturb_quantity
