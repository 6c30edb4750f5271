"""substitute: replaces a value with `replaceWith`; a complex node with the replacement parsed as
its FHIR type, merged so that what earlier rules decided stays (reference section 4.6)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anonymizer.errors import ConfigurationError, InvalidInputError
from anonymizer.methods.base import CLAIMED, REMOVED, SUBSTITUTE, Method, PrimitiveAction, ResourceState
from anonymizer.r4.model import PRIMITIVE_TYPES, Element

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
    return str(value)


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
            state.ops.add(SUBSTITUTE)
            return text

        return substitute_value

    def complex_action(self, element: Element) -> Callable[..., Any] | None:
        replacement = self.replacement
        if isinstance(replacement, str):
            try:
                replacement = json.loads(replacement)
            except ValueError:
                replacement = None if not replacement.strip() else replacement
        if replacement is None:
            replacement = {}
        path = self.rule.get("path")
        if not isinstance(replacement, dict):
            raise ConfigurationError(f"The replaceWith value at {path} is not a {element.type_name} object")
        rule_index = self.rule_index

        def substitute_node(node: dict, state: ResourceState, slot: Slot, walk: Walk) -> dict | None:
            untouched = slot.builder.node(slot.child.ctype, frozenset(), None)
            try:
                parsed = walk.object(replacement, untouched) or {}
            except InvalidInputError:
                raise ConfigurationError(
                    f"The replaceWith value at {path} is not a valid {element.type_name}"
                ) from None
            state.ops.add(SUBSTITUTE)
            return _merge(node, slot.child, parsed, rule_index) or None

        return substitute_node


# -- merging a replacement into a node, keeping what earlier rules decided ---------------------------
def _visited(slot: Slot, rule_index: int) -> bool:
    """Reached by an earlier rule (whose decision the walk already applied)."""
    return slot.winner is not None and slot.winner[0] < rule_index


def _has_visited(item: Any, node: PlanNode, rule_index: int) -> bool:
    """In the reference's "keep set": the item holds something an earlier rule reached."""
    if type(item) is not dict:
        return False
    for key, value in item.items():
        slot = node[key]
        if _visited(slot, rule_index):
            return True
        child = slot.shadow if key.startswith("_") else slot.child
        if child is not None and any(_has_visited(v, child, rule_index) for v in _items(value)):
            return True
    return False


def _items(value: Any) -> list:
    return value if type(value) is list else [value]


def _child_plan(slot: Slot, key: str) -> PlanNode | None:
    return slot.shadow if key.startswith("_") else slot.child


def _merge(existing: dict, node: PlanNode, replacement: dict, rule_index: int) -> dict:
    out: dict = {}
    for key, value in existing.items():
        slot = node[key]
        if key in replacement:
            merged = _pair(value, replacement[key], slot, key, rule_index)
        else:
            merged = _keep_visited(value, slot, key, rule_index)
        if merged is not None:
            out[key] = merged
    for key, value in replacement.items():
        if key not in existing:
            out[key] = value
    return out


def _pair(value: Any, replacement: Any, slot: Slot, key: str, rule_index: int) -> Any:
    existing, replacing = _items(value), _items(replacement)
    child = _child_plan(slot, key)
    visited = _visited(slot, rule_index)
    out = []
    for index, item in enumerate(existing):
        if visited:
            out.append(item)  # left alone, and it consumes its paired replacement item
        elif index < len(replacing):
            out.append(_substitute_item(item, replacing[index], child, rule_index))
        elif child is not None and _has_visited(item, child, rule_index):
            out.append(_substitute_item(item, {}, child, rule_index))
    out.extend(replacing[len(existing) :])
    out = [item for item in out if item is not None]
    if not out:
        return None
    return out if type(value) is list or type(replacement) is list or len(out) > 1 else out[0]


def _keep_visited(value: Any, slot: Slot, key: str, rule_index: int) -> Any:
    if _visited(slot, rule_index):
        return value
    child = _child_plan(slot, key)
    if child is None:
        return None
    kept = [
        _substitute_item(item, {}, child, rule_index)
        for item in _items(value)
        if _has_visited(item, child, rule_index)
    ]
    kept = [item for item in kept if item]
    if not kept:
        return None
    return kept if type(value) is list else kept[0]


def _substitute_item(item: Any, replacement: Any, child: PlanNode | None, rule_index: int) -> Any:
    if child is None or type(item) is not dict or type(replacement) is not dict:
        return replacement
    return _merge(item, child, replacement, rule_index) or None
