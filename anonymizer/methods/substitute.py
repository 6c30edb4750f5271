"""substitute: replaces a value with `replaceWith`; a complex node with the replacement parsed as
its FHIR type, merged so that what earlier rules decided stays (docs/reference.md section 4.6)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from anonymizer.errors import ConfigurationError, InvalidInputError
from anonymizer.methods.base import (
    CLAIMED,
    REMOVED,
    SUBSTITUTE,
    ComplexAction,
    Method,
    NodeWalk,
    PrimitiveAction,
    ResourceState,
    Site,
    core_form,
)
from anonymizer.r4.model import PRIMITIVE_TYPES, Element
from anonymizer.r4.primitives import trim

if TYPE_CHECKING:
    from anonymizer.config import Parameters

# A replacement is written into a resource at some depth; with the input's limit (jsonio.MAX_DEPTH,
# 128 levels) the output stays within what can be written (254 levels).
MAX_REPLACEMENT_DEPTH = 64


def _net_text(value: Any) -> str | None:
    """`replaceWith.ToString()` as .NET prints it."""
    if value is None:
        return None
    if value is True or value is False:
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return trim(str(value))  # the writer trims strings


def _depth(value: Any) -> int:
    """Nesting of objects and arrays (without recursion: the value may be nested thousands deep)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_REPLACEMENT_DEPTH:
                break
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class SubstituteMethod(Method):
    name = "substitute"
    settings = ("replaceWith",)

    def __init__(self, rule: Mapping[str, Any], parameters: Parameters, rule_index: int, shared: Any) -> None:
        super().__init__(rule, parameters, rule_index, shared)
        self.replacement = rule.get("replaceWith")

    @classmethod
    def check_rule(cls, rule: Mapping[str, Any], path: str) -> None:
        if "replaceWith" not in rule:  # (its value may be null)
            raise ConfigurationError(f"Missing replaceWith value in substitution rule at {path}.")
        if _depth(rule["replaceWith"]) > MAX_REPLACEMENT_DEPTH:
            raise ConfigurationError(
                f"The replaceWith value at {path} is nested deeper than {MAX_REPLACEMENT_DEPTH} levels"
            )

    def child_mode(self, parent_type: str) -> int | None:
        # A substituted primitive loses its own id/extension; a substituted complex node's
        # children are decided by the merge.
        return REMOVED if parent_type in PRIMITIVE_TYPES else CLAIMED

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        text = _net_text(self.replacement)

        def substitute_value(value: Any, state: ResourceState) -> str | None:
            state.ops |= SUBSTITUTE
            return text

        return core_form(substitute_value, "substitute", text)

    def complex_action(self, element: Element) -> ComplexAction | None:
        replacement = self.replacement
        path = self.rule.get("path")
        if isinstance(replacement, str):
            try:
                replacement = json.loads(replacement)
            except ValueError:
                replacement = ""
        if replacement is None:
            replacement = {}

        def not_an_object(item: Any, node: NodeWalk) -> None:
            raise ConfigurationError(f"The replaceWith value at {path} is not a {element.type_name} object")

        if not isinstance(replacement, dict):
            return not_an_object  # fails when such a node is met, as the reference does

        def substitute_node(item: Any, node: NodeWalk) -> dict | None:
            try:
                parsed = node.untouched(replacement) or {}
            except InvalidInputError:
                raise ConfigurationError(
                    f"The replaceWith value at {path} is not a valid {element.type_name}"
                ) from None
            node.record(SUBSTITUTE)
            if type(item) is not dict:
                raise InvalidInputError("The input FHIR resource is invalid: an object was expected")
            return _Merge(node).object(item, node.site, parsed) or None

        return substitute_node


# -- merging a replacement into a node, keeping what earlier rules decided ---------------------------
class _Merge:
    """The reference's merge, on the input node: children an earlier rule reached are walked (so
    that rule's decision applies) and kept; children holding such nodes (the "keep set") are
    merged further; everything else comes from the replacement."""

    def __init__(self, node: NodeWalk) -> None:
        self.node = node

    def holds_earlier(self, item: Any, site: Site) -> bool:
        if type(item) is not dict:
            return False
        for key, value in item.items():
            inner = site.inner(key)
            for index, element in _indexed(value):
                if self.node.reached_earlier(item, inner, index, element) or self.holds_earlier(
                    element, inner
                ):
                    return True
        return False

    def object(self, existing: dict, site: Site, replacement: dict) -> dict:
        out: dict = {}
        for key, value in existing.items():
            merged = self.pair(existing, site.inner(key), value, replacement.get(key, _MISSING))
            if merged is not None:
                out[key] = merged
        for key, value in replacement.items():
            if key not in existing:
                out[key] = value
        return out

    def pair(self, holder: dict, site: Site, value: Any, replacement: Any) -> Any:
        replacing = [] if replacement is _MISSING else _items(replacement)
        out = []
        existing = _indexed(value)
        for index, item in existing:
            if self.node.reached_earlier(holder, site, index, item):
                out.append(self.node.walk_reached(holder, site, index, item))  # consumes its pair
            elif (index or 0) < len(replacing):
                paired = replacing[index or 0]
                both = not site.is_primitive and type(item) is dict and type(paired) is dict
                out.append(self.object(item, site, paired) if both else paired)
            elif self.holds_earlier(item, site):
                out.append(self.object(item, site, {}) or None)
        out.extend(replacing[len(existing) :])  # surplus replacement items are appended
        out = [item for item in out if item is not None]
        if not out:
            return None
        return out if site.is_list else out[0]


_MISSING = object()


def _items(value: Any) -> list:
    return value if type(value) is list else [value]


def _indexed(value: Any) -> list[tuple[int | None, Any]]:
    return list(enumerate(value)) if type(value) is list else [(None, value)]
