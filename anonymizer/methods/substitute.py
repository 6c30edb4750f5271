"""substitute: replaces a value with `replaceWith`; a complex node with the replacement parsed as
its FHIR type, merged so that what earlier rules decided stays (reference section 4.6)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anonymizer.errors import ConfigurationError, InvalidInputError
from anonymizer.methods.base import CLAIMED, REMOVED, SUBSTITUTE, Method, PrimitiveAction, ResourceState
from anonymizer.r4.model import PRIMITIVE, PRIMITIVE_TYPES, Element
from anonymizer.r4.primitives import trim

if TYPE_CHECKING:
    from anonymizer.plan import PlanNode, Slot
    from anonymizer.walker import Walk


def _net_text(value: Any) -> str | None:
    """`replaceWith.ToString()` as .NET prints it."""
    if value is None:
        return None
    if value is True or value is False:
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return trim(str(value))  # the writer trims strings


class SubstituteMethod(Method):
    name = "substitute"

    def __init__(self, rule: dict, parameters, rule_index: int) -> None:
        super().__init__(rule, parameters, rule_index)
        self.replacement = rule.get("replaceWith")

    def child_mode(self, parent_type: str) -> int | None:
        # A substituted primitive loses its own id/extension; a substituted complex node's
        # children are decided by the merge.
        return REMOVED if parent_type in PRIMITIVE_TYPES else CLAIMED

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        text = _net_text(self.replacement)

        def substitute_value(value: Any, state: ResourceState) -> str | None:
            state.ops |= SUBSTITUTE
            return text

        return substitute_value

    def complex_action(self, element: Element) -> Callable[..., Any] | None:
        replacement = self.replacement
        path = self.rule.get("path")
        if isinstance(replacement, str):
            try:
                replacement = json.loads(replacement)
            except ValueError:
                replacement = ""
        if replacement is None:
            replacement = {}

        def not_an_object(*_: Any) -> None:
            raise ConfigurationError(f"The replaceWith value at {path} is not a {element.type_name} object")

        if not isinstance(replacement, dict):
            return not_an_object  # fails when such a node is met, as the reference does
        rule_index = self.rule_index

        def substitute_node(item: Any, slot: Slot, walk: Walk) -> dict | None:
            untouched = slot.builder.node(slot.child.ctype, frozenset(), None)
            try:
                parsed = walk.object(replacement, untouched) or {}
            except InvalidInputError:
                raise ConfigurationError(
                    f"The replaceWith value at {path} is not a valid {element.type_name}"
                ) from None
            walk.state.ops |= SUBSTITUTE
            if type(item) is not dict:
                raise InvalidInputError("The input FHIR resource is invalid: an object was expected")
            return _Merge(walk, rule_index).node(item, slot.child, parsed) or None

        return substitute_node


# -- merging a replacement into a node, keeping what earlier rules decided ---------------------------
class _Merge:
    """The reference's merge, on the input node: children an earlier rule reached are walked (so
    that rule's decision applies) and kept; children holding such nodes (the "keep set") are
    merged further; everything else comes from the replacement."""

    def __init__(self, walk: Walk, rule_index: int) -> None:
        self.walk = walk
        self.rule_index = rule_index

    def reached_earlier(self, parent: dict, key: str, index: int | None, item: Any, slot: Slot) -> bool:
        if slot.winner is not None and slot.winner[0] < self.rule_index:
            return True
        claims = self.walk.claims
        if claims:
            claim = claims.get(id(item)) if type(item) is dict else claims.get((id(parent), key, index))
            return claim is not None and claim < self.rule_index
        return False

    def holds_earlier(self, item: Any, node: PlanNode | None) -> bool:
        if node is None or type(item) is not dict:
            return False
        for key, value in item.items():
            slot = node[key]
            child = slot.shadow if key.startswith("_") else slot.child
            for index, element in _indexed(value):
                if self.reached_earlier(item, key, index, element, slot) or self.holds_earlier(
                    element, child
                ):
                    return True
        return False

    def keep(self, parent: dict, key: str, index: int | None, item: Any, slot: Slot) -> Any:
        """Walk an item an earlier rule reached, so that rule's decision applies."""
        walk = self.walk
        if key.startswith("_"):
            return walk.object(item, slot.shadow)
        if slot.kind == PRIMITIVE:
            return walk.primitive_value(parent, key, index, item, slot)
        return walk.complex_item(parent, key, index, item, slot)

    def node(self, existing: dict, node: PlanNode, replacement: dict) -> dict:
        out: dict = {}
        for key, value in existing.items():
            slot = node[key]
            if key in replacement:
                merged = self.pair(existing, key, value, replacement[key], slot)
            else:
                merged = self.pair(existing, key, value, _MISSING, slot)
            if merged is not None:
                out[key] = merged
        for key, value in replacement.items():
            if key not in existing:
                out[key] = value
        return out

    def pair(self, parent: dict, key: str, value: Any, replacement: Any, slot: Slot) -> Any:
        replacing = [] if replacement is _MISSING else _items(replacement)
        child = slot.shadow if key.startswith("_") else slot.child
        out = []
        existing = _indexed(value)
        for index, item in existing:
            if self.reached_earlier(parent, key, index, item, slot):
                out.append(self.keep(parent, key, index, item, slot))  # consumes its pair
            elif (index or 0) < len(replacing):
                paired = replacing[index or 0]
                out.append(self.node(item, child, paired) if _both_objects(item, paired, child) else paired)
            elif self.holds_earlier(item, child):
                out.append(self.node(item, child, {}) or None)
        out.extend(replacing[len(existing) :])  # surplus replacement items are appended
        out = [item for item in out if item is not None]
        if not out:
            return None
        return out if slot.element.is_list else out[0]


_MISSING = object()


def _items(value: Any) -> list:
    return value if type(value) is list else [value]


def _indexed(value: Any) -> list[tuple[int | None, Any]]:
    return list(enumerate(value)) if type(value) is list else [(None, value)]


def _both_objects(item: Any, replacement: Any, child: PlanNode | None) -> bool:
    return child is not None and type(item) is dict and type(replacement) is dict
