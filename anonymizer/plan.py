"""Compiling the rules into a plan, once per engine; the plan never changes once built.

"The first rule to reach a node wins and claims its subtree" (docs/reference.md section 3.4) depends only
on the rule paths, the element names and types along the way, so the winner of every element is
decided here, not per node at run time. Each static rule path is an automaton over the element
tree; a plan node is keyed by (element type, the automaton states still alive, the winner so far).
Rules that can no longer win below a winner are pruned, so most subtrees collapse into a few
shared nodes. Plan nodes and their slots are built lazily on first use and then reused for every
resource; recursive types (Extension.extension) make the plan a graph.

Rules that the automaton cannot decide (`where(...)` and other FHIRPath) are evaluated per
resource with fhirpathpy (compiled once per rule); their matches override the static winner of
exactly the nodes they name (the walker asks `with_winner`).

Threads share one plan. Building it lazily is the one deliberate loop (a plan node's slots and the
nodes below them are made when first met): every addition happens under the builder's lock, and
what is added never changes afterwards. What the engine learns while running (generated code,
reuse caches) lives in the walker's per-thread runtime, not here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from anonymizer.config import Parameters
from anonymizer.errors import InvalidInputError
from anonymizer.methods.base import (
    APPLY,
    CLAIMED,
    REMOVED,
    ComplexAction,
    Method,
    PrimitiveAction,
    Removal,
    ResourceState,
    Shared,
    core_form,
    core_form_of,
)
from anonymizer.methods.dates import DATE_TYPES
from anonymizer.methods.dateshift import DateShiftMethod
from anonymizer.paths import BY_TYPE, CHILD, IS_TYPE, RulePath, parse_rule_path
from anonymizer.r4 import model
from anonymizer.r4.model import PRIMITIVE, PRIMITIVE_SHADOW, ComplexType, Element
from anonymizer.r4.primitives import NORMALIZERS

State = tuple[int, int, bool]  # (rule index, selector position, searching descendants)
Winner = tuple[int, int] | None  # (rule index, APPLY | CLAIMED | REMOVED)

_GENERIC_RESOURCES = ("", "Resource", "DomainResource")


@dataclass(frozen=True)
class CompiledRule:
    index: int
    path: RulePath
    method_name: str
    method: Method
    evaluate: Callable[[dict], list] | None = None  # dynamic rules only

    def applies_to(self, resource_type: str) -> bool:
        return self.path.resource_type in _GENERIC_RESOURCES or self.path.resource_type == resource_type


def compile_rules(
    rules: list[dict], parameters: Parameters, methods: Mapping[str, type[Method]]
) -> list[CompiledRule]:
    """The configuration's rules with their methods made (rules were checked when the
    configuration was built: every method is in `methods`)."""
    shared = Shared(parameters)  # what the rules of this engine share (one HMAC, one offset table)
    compiled = []
    for index, rule in enumerate(rules):
        path = parse_rule_path(str(rule["path"]))
        method_name = str(rule["method"]).lower()
        method = methods[method_name](rule, parameters, index, shared)
        evaluate = None
        if path.kind == "dynamic":
            # fhirpathpy (about 25 ms to import) only for configurations that need it
            from anonymizer.fhirpath import compile_nodes

            evaluate = compile_nodes(path.expression)
        compiled.append(CompiledRule(index, path, method_name, method, evaluate))
    return compiled


def _as_is(value: Any) -> Any:
    return value


def _remove_claimed(value: Any, state: ResourceState) -> None:
    return None


_drop = core_form(_remove_claimed, "drop")  # a node a rule claimed and removes: nothing recorded


def _counted(action: PrimitiveAction) -> PrimitiveAction:
    """The action of a method whose results equal values need not share: counted, so that the
    subtree around it is not reused (reuse.py)."""

    def varying_action(value: Any, state: ResourceState) -> Any:
        state.varying += 1
        return action(value, state)

    return core_form(varying_action, *core_form_of(action))


def recording_root_id(action: PrimitiveAction) -> PrimitiveAction:
    """The action on a resource's id, recording the root's id before and after it: date shifts
    read them (ResourceState.root_id, root_id_out), and most roots write their id before their
    dates."""
    if isinstance(action, Removal):
        return action  # generated code removes the value without calling the action

    def act_on_root_id(value: Any, state: ResourceState) -> Any:
        result = action(value, state)
        if state.is_root:
            state.root_id_raw = value
            state.root_id_written = "" if result is None else str(result)
        return result

    return core_form(act_on_root_id, *core_form_of(action))


class Slot:
    """How one JSON property of a plan node is processed (see walker.py), decided once. It is the
    `Site` methods see (methods/base.py)."""

    __slots__ = (
        "action",
        "builder",
        "child",
        "complex_action",
        "element",
        "is_list",
        "is_primitive",
        "is_shadow",
        "json_key",
        "kind",
        "normalize",
        "parent",
        "shadow",
        "shadow_key",
        "states",
        "winner",
    )

    def __init__(
        self,
        element: Element,
        kind: int,
        *,
        builder: ResourcePlanBuilder | None = None,
        parent: PlanNode | None = None,
        is_shadow: bool = False,
        states: frozenset[State] = frozenset(),
        winner: Winner = None,
        action: PrimitiveAction | None = None,
        child: PlanNode | None = None,
        shadow: PlanNode | None = None,
        complex_action: ComplexAction | None = None,
    ) -> None:
        self.element = element
        self.kind = kind
        self.json_key = element.json_key
        self.is_list = element.is_list
        self.shadow_key = "_" + element.json_key
        self.is_shadow = is_shadow  # the slot of the `_x` key (an object: id and extensions)
        self.is_primitive = kind == PRIMITIVE and not is_shadow
        # How the parser reads a value here (a primitive's type; anything else: as it is).
        self.normalize: Callable[[Any], Any] = NORMALIZERS.get(element.type_name, _as_is)
        self.builder = builder
        self.parent = parent
        self.states = states
        self.winner = winner
        self.action = action
        self.child = child
        self.shadow = shadow
        self.complex_action = complex_action

    def with_winner(self, rule_index: int) -> Slot:
        """This slot as it is when a dynamic rule matched its node."""
        assert self.builder is not None
        return self.builder.slot_with_winner(self, rule_index)

    def inner(self, key: str) -> Slot:
        """The slot of property `key` of an object at this slot (methods/base.py `Site`)."""
        node = self.shadow if self.is_shadow else self.child
        if node is None:
            raise InvalidInputError("The input FHIR resource is invalid: a value was expected, not an object")
        return node[key]


class PlanNode(dict):
    """Slots by JSON key, built on first use (under the builder's lock). Unknown keys are invalid
    FHIR."""

    __slots__ = ("builder", "ctype", "is_resource", "states", "winner")

    def __init__(
        self,
        ctype: ComplexType,
        states: frozenset[State],
        winner: Winner,
        builder: ResourcePlanBuilder,
        is_resource: bool = False,
    ) -> None:
        super().__init__()
        self.ctype = ctype
        self.states = states
        self.winner = winner
        self.builder = builder
        self.is_resource = is_resource

    def __missing__(self, key: str) -> Slot:
        with self.builder.lock:
            found = dict.get(self, key)
            if found is None:
                found = self.builder.make_slot(self, key)
                self[key] = found
            return found

    def with_winner(self, rule_index: int) -> PlanNode:
        return self.builder.node_with_winner(self, rule_index)

    # Identity, not content: plan nodes are keys of the walker's per-thread state.
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return self is other


class ResourcePlanBuilder:
    """Plan nodes for the rules that apply to one resource type."""

    def __init__(self, resource_type: str, rules: list[CompiledRule]) -> None:
        self.resource_type = resource_type
        self.rules = rules
        self.by_index = {rule.index: rule for rule in rules}
        self.dynamic_rules = [r for r in rules if r.path.kind == "dynamic"]
        self.lock = threading.RLock()  # every addition to this plan happens under it
        self._nodes: dict[tuple, PlanNode] = {}
        self._blocked_cache: dict[int, frozenset[str]] = {}
        self._nested_claims: dict[tuple[int, str], int | None] = {}
        self.root, self.root_winner = self._root()

    # -- the automaton -------------------------------------------------------------------------
    def _closure(self, states: set[State], node_type: str, name: str) -> tuple[set[int], set[State]]:
        matched: set[int] = set()
        out: set[State] = set()
        work = list(states)
        while work:
            rule_index, position, searching = work.pop()
            selectors = self.by_index[rule_index].path.selectors
            if searching:
                out.add((rule_index, position, True))
                selector = selectors[position]
                arg = node_type if selector.kind == BY_TYPE else name
                if arg == selector.arg:
                    work.append((rule_index, position + 1, False))
                continue
            if position == len(selectors):
                matched.add(rule_index)
                continue
            selector = selectors[position]
            if selector.kind == CHILD:
                out.add((rule_index, position, False))
            elif selector.kind == IS_TYPE:
                if model.is_type_or_subtype(node_type, selector.arg):
                    work.append((rule_index, position + 1, False))
            else:
                arg = node_type if selector.kind == BY_TYPE else name
                if arg == selector.arg:
                    work.append((rule_index, position + 1, False))
                out.add((rule_index, position, True))
        return matched, out

    def _step(self, states: frozenset[State], name: str) -> set[State]:
        out = set()
        for rule_index, position, searching in states:
            if searching:
                out.add((rule_index, position, True))
                continue
            selector = self.by_index[rule_index].path.selectors[position]
            if selector.kind == CHILD and selector.arg == name:
                out.add((rule_index, position + 1, False))
        return out

    def _child_winner(self, parent: Winner, parent_type: str, matched: set[int]) -> Winner:
        """The rule that reaches a child: the first matching rule unless an earlier one reached
        the parent. Methods that claim a node's subtree (substitute, perturb on numbers and
        quantities) pass the child on as CLAIMED or REMOVED (`Method.child_mode`)."""
        best = min(matched) if matched else None
        if best is not None and (parent is None or best < parent[0]):
            return (best, APPLY)
        if parent is not None and parent[1] == APPLY:
            mode = self.by_index[parent[0]].method.child_mode(parent_type)
            if mode is not None:
                return (parent[0], mode)
        return parent

    @staticmethod
    def _prune(states: set[State], winner: Winner) -> frozenset[State]:
        if winner is None:
            return frozenset(states)
        return frozenset(s for s in states if s[0] < winner[0])

    # -- building ------------------------------------------------------------------------------
    def _root(self) -> tuple[PlanNode, Winner]:
        ctype = model.complex_type(self.resource_type)
        states: set[State] = set()
        matched: set[int] = set()
        table_markers: set[State] = set()
        for rule in self.rules:
            kind = rule.path.kind
            if kind == "resource":
                matched.add(rule.index)
            elif kind == "table":
                table_markers.add((rule.index, 0, True))
            elif kind == "static":
                states.add((rule.index, 0, False))
        found, out = self._closure(states, self.resource_type, self.resource_type)
        matched |= found
        winner: Winner = (min(matched), APPLY) if matched else None
        out |= table_markers
        return self.node(ctype, self._prune(out, winner), winner, is_resource=True), winner

    def _blocked(self, rule_index: int) -> frozenset[str]:
        """Types whose every node an earlier rule claims (`nodesByType('Extension')` first in the
        sample configuration): rule `rule_index` cannot win at or below them."""
        found = self._blocked_cache.get(rule_index)
        if found is None:
            found = frozenset(
                rule.path.selectors[0].arg
                for rule in self.rules
                if rule.index < rule_index
                and rule.path.kind in ("table", "static")
                and len(rule.path.selectors) == 1
                and rule.path.selectors[0].kind == BY_TYPE
            )
            self._blocked_cache[rule_index] = found
        return found

    def _alive(self, ctype: ComplexType, states: frozenset[State]) -> frozenset[State]:
        """Drop states that can match nothing below a node of this type."""
        alive = []
        for state in states:
            rule_index, position, searching = state
            selector = self.by_index[rule_index].path.selectors[position]
            if not searching:
                if selector.arg in ctype.names:
                    alive.append(state)
                continue
            types, names = model.reachable(ctype, self._blocked(rule_index))
            if (selector.arg in types) if selector.kind == BY_TYPE else (selector.arg in names):
                alive.append(state)
        return frozenset(alive)

    def node(
        self, ctype: ComplexType, states: frozenset[State], winner: Winner, is_resource: bool = False
    ) -> PlanNode:
        if states and not is_resource:
            states = self._alive(ctype, states)
        key = (ctype.key, states, winner, is_resource)
        found = self._nodes.get(key)
        if found is None:
            with self.lock:
                found = self._nodes.get(key)
                if found is None:
                    found = PlanNode(ctype, states, winner, self, is_resource)
                    self._nodes[key] = found
        return found

    def nodes(self) -> list[PlanNode]:
        """The plan nodes built so far, in the order they were made (call under `lock`)."""
        return list(self._nodes.values())

    def make_slot(self, node: PlanNode, key: str) -> Slot:
        if key == "resourceType" and node.is_resource:
            return Slot(Element("resourceType", key, "code", False, -1, None), -1)
        if key == "fhir_comments":
            return Slot(Element(key, key, "string", False, -2, None), -2)
        is_shadow = key.startswith("_")
        json_key = key[1:] if is_shadow else key
        element = node.ctype.elements.get(json_key)
        if element is None or (is_shadow and element.kind != PRIMITIVE):
            raise InvalidInputError(
                "The input FHIR resource is invalid: Type checking the data: Encountered unknown "
                f"element '{key}' at {node.ctype.key}"
            )
        return self._slot(node, element, node.winner, is_shadow=is_shadow)

    def _slot(
        self,
        node: PlanNode,
        element: Element,
        inherited: Winner,
        extra_match: int | None = None,
        *,
        is_shadow: bool = False,
    ) -> Slot:
        with self.lock:
            stepped = self._step(node.states, element.name)
            states = frozenset(stepped)

            def slot(**decided: Any) -> Slot:
                return Slot(
                    element,
                    element.kind,
                    builder=self,
                    parent=node,
                    is_shadow=is_shadow,
                    states=states,
                    **decided,
                )

            if element.kind == model.RESOURCE:
                return slot()  # nested resources are processed on their own (see walker)
            matched, out = self._closure(stepped, element.type_name, element.name)
            if extra_match is not None:
                matched.add(extra_match)
            winner = self._child_winner(inherited, node.ctype.type_name, matched)
            pruned = self._prune(out, winner)
            if element.kind == PRIMITIVE:
                action = self._primitive_action(element, node.ctype.type_name, winner)
                if node.is_resource and element.name == "id" and action is not None:
                    action = recording_root_id(action)
                shadow = self.node(PRIMITIVE_SHADOW, pruned, self._below(winner, element))
                return slot(winner=winner, action=action, shadow=shadow)
            assert element.complex_key is not None
            ctype = model.complex_type(element.complex_key)
            complex_action = None
            if winner is not None and winner[1] == APPLY:
                complex_action = self.by_index[winner[0]].method.complex_action(element)
            # A method that takes the whole node: its children are the rule's (CLAIMED).
            claimed = winner if complex_action is None or winner is None else (winner[0], CLAIMED)
            return slot(winner=winner, child=self.node(ctype, pruned, claimed), complex_action=complex_action)

    def _below(self, winner: Winner, element: Element) -> Winner:
        """The winner of a primitive's own children (`id`, `extension` in its `_x` shadow)."""
        return self._child_winner(winner, element.type_name, set())

    def _primitive_action(self, element: Element, parent_type: str, winner: Winner) -> PrimitiveAction | None:
        if winner is not None and winner[1] == REMOVED:
            return _drop
        if winner is None or winner[1] != APPLY:
            return None
        method = self.by_index[winner[0]].method
        if isinstance(method, DateShiftMethod) and element.type_name in DATE_TYPES:
            # The offset's prefix is the root's id as it is when this rule runs: rewritten only
            # if the rule that reaches the id comes earlier in the configuration.
            id_winner = self.root["id"].winner
            id_rewritten = id_winner is not None and id_winner[1] == APPLY and id_winner[0] < winner[0]
            action = method.date_action(element, id_rewritten)
        else:
            action = method.primitive_action(element, parent_type)
        if action is None or not method.varies or getattr(action, "counts_varying", False):
            return action
        return _counted(action)

    def node_with_winner(self, node: PlanNode, rule_index: int) -> PlanNode:
        winner = node.winner
        if winner is not None and winner[0] <= rule_index:
            return node
        new = (rule_index, APPLY)
        return self.node(node.ctype, self._prune(set(node.states), new), new, node.is_resource)

    def slot_with_winner(self, slot: Slot, rule_index: int) -> Slot:
        if slot.winner is not None and slot.winner[0] <= rule_index:
            return slot
        assert slot.parent is not None
        parent = slot.parent
        return self._slot(
            parent, slot.element, parent.winner, extra_match=rule_index, is_shadow=slot.is_shadow
        )

    def claim_for_nested(self, slot: Slot, resource_type: str) -> int | None:
        """A container's rule that matches a nested resource node itself (`nodesByType('Patient')`
        in a Bundle, `nodesByName('contained')`): that rule then processes the nested resource's
        content as part of the container."""
        key = (id(slot), resource_type)
        if key not in self._nested_claims:
            with self.lock:
                matched, _ = self._closure(set(slot.states), resource_type, slot.element.name)
                self._nested_claims[key] = min(matched) if matched else None
        return self._nested_claims[key]
