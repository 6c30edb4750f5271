"""perturb: adds uniform noise of width `span` (fixed, or proportional to the value) and rounds to
`roundTo` digits with banker's rounding; for quantity types it perturbs their `value` (reference
section 4.7). Noise comes from `secrets.SystemRandom` unless a generator is injected (tests)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from random import Random
from typing import TYPE_CHECKING, Any

from anonymizer.methods.base import CLAIMED, PERTURB, Method, PrimitiveAction, ResourceState
from anonymizer.r4.model import Element

if TYPE_CHECKING:
    from anonymizer.plan import Slot
    from anonymizer.walker import Walk

NUMBER_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt"})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
QUANTITY_TYPES = frozenset(
    {"Age", "Count", "Duration", "Distance", "Money", "MoneyQuantity", "Quantity", "SimpleQuantity"}
)

_system_random = secrets.SystemRandom()


class PerturbMethod(Method):
    name = "perturb"
    varies = True
    random: Random = _system_random  # tests inject a seeded generator

    def __init__(self, rule: dict, parameters, rule_index: int) -> None:
        super().__init__(rule, parameters, rule_index)
        self.span = Decimal(str(rule.get("span", 0)))
        self.proportional = str(rule.get("rangeType", "fixed")).lower() == "proportional"
        self.round_to = int(str(rule["roundTo"])) if "roundTo" in rule else 2

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
        if number.as_tuple().exponent < -digits:  # like .NET decimal.Round: never adds zeros
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

    def complex_action(self, element: Element) -> Callable[..., dict] | None:
        if element.type_name not in QUANTITY_TYPES:
            return None

        def perturb_quantity(item: Any, slot: Slot, walk: Walk) -> dict | None:
            node = walk.object(item, slot.child)
            value_slot = slot.child["value"]
            reached_earlier = value_slot.winner is not None and value_slot.winner[0] < self.rule_index
            if node and node.get("value") is not None and not reached_earlier:
                node["value"] = self.perturb(node["value"], "decimal")
                walk.state.ops |= PERTURB
            return node

        return perturb_quantity
