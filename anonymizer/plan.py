"""Compiling the rules into a plan, once per configuration.

"The first rule to reach a node wins and claims its subtree" (reference section 3.4) depends only
on the rule paths, the element names and types along the way, so the winner of every element is
decided here, not per node at run time. Each static rule path is an automaton over the element
tree; a plan node is keyed by (element type, the automaton states still alive, the winner so far).
Rules that can no longer win below a winner are pruned, so most subtrees collapse into a few
shared nodes. Plan nodes and their slots are built lazily on first use and then reused for every
resource; recursive types (Extension.extension) make the plan a graph.

Rules that the automaton cannot decide (`where(...)` and other FHIRPath) are evaluated per
resource with fhirpathpy (compiled once per rule); their matches override the static winner of
exactly the nodes they name (the walker asks `with_winner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anonymizer.errors import ConfigurationError, InvalidInputError
from anonymizer.methods.base import APPLY, CLAIMED, REMOVED, Method, recording_root_id
from anonymizer.methods.dates import DATE_TYPES
from anonymizer.methods.dateshift import DateShiftMethod
from anonymizer.paths import BY_TYPE, CHILD, IS_TYPE, RulePath, parse_rule_path
from anonymizer.r4 import model
from anonymizer.r4.model import PRIMITIVE, PRIMITIVE_SHADOW, ComplexType, Element
from anonymizer.r4.primitives import NORMALIZERS
from anonymizer.reuse import ReusePool

if TYPE_CHECKING:
    from anonymizer.shapes import UnionShape

State = tuple[int, int, bool]  # (rule index, selector position, searching descendants)
Winner = tuple[int, int] | None  # (rule index, APPLY | CLAIMED | REMOVED)

_GENERIC_RESOURCES = ("", "Resource", "DomainResource")


@dataclass
class CompiledRule:
    index: int
    path: RulePath
    method_name: str
    method: Method | None  # None: a method the reference does not know
    evaluate: Callable[[dict], list] | None = None  # dynamic rules only

    def applies_to(self, resource_type: str) -> bool:
        return self.path.resource_type in _GENERIC_RESOURCES or self.path.resource_type == resource_type


def compile_rules(rules: list[dict], parameters: Any) -> list[CompiledRule]:
    compiled = []
    for index, rule in enumerate(rules):
        path = parse_rule_path(str(rule["path"]))
        method_name = str(rule["method"]).lower()
        method_cls = Method.registry.get(method_name)
        method = method_cls(rule, parameters, index) if method_cls is not None else None
        evaluate = None
        if path.kind == "dynamic":
            # fhirpathpy (about 25 ms to import) only for configurations that need it
            from anonymizer.fhirpath import compile_nodes

            evaluate = compile_nodes(path.expression)
        compiled.append(CompiledRule(index, path, method_name, method, evaluate))
    return compiled


def _drop(value: Any, state: Any) -> None:
    return None


def _counted(action: Callable) -> Callable:
    """The action of a method whose results equal values need not share: counted, so that the
    subtree around it is not reused (reuse.py)."""

    def varying_action(value: Any, state: Any) -> Any:
        state.varying += 1
        return action(value, state)

    return varying_action


class Slot:
    """How one JSON property of a plan node is processed (see walker.py)."""

    __slots__ = (
        "action",
        "builder",
        "child",
        "complex_action",
        "element",
        "is_list",
        "json_key",
        "kind",
        "normalize",
        "parent",
        "shadow",
        "shadow_key",
        "states",
        "winner",
    )

    def __init__(self, element: Element, kind: int) -> None:
        self.element = element
        self.kind = kind
        self.json_key = element.json_key
        self.is_list = element.is_list
        self.shadow_key = "_" + element.json_key
        self.winner: Winner = None
        self.action: Callable | None = None
        self.child: PlanNode | None = None
        self.shadow: PlanNode | None = None
        self.normalize = NORMALIZERS.get(element.type_name)
        self.complex_action: Callable | None = None
        self.builder: ResourcePlanBuilder | None = None
        self.states: frozenset[State] = frozenset()
        self.parent: PlanNode | None = None

    def with_winner(self, rule_index: int) -> Slot:
        """This slot as it is when a dynamic rule matched its node."""
        return self.builder.slot_with_winner(self, rule_index)


class PlanNode(dict):
    """Slots by JSON key, built on first use. Unknown keys are invalid FHIR."""

    __slots__ = (
        "builder",
        "cache",
        "ctype",
        "hits",
        "is_resource",
        "misses",
        "shapes",
        "sightings",
        "states",
        "union",
        "winner",
    )

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
        self.shapes: dict[tuple[str, ...], Callable] = {}  # generated walk code (shapes.py)
        self.sightings: dict[tuple[str, ...], int] = {}  # key sequences not compiled yet
        self.union: UnionShape | None = None  # the code covering most of them (shapes.py)
        # Remembered outputs of repeated subtrees (reuse.py); nested resources are never reused.
        self.cache = None if is_resource else builder.reuse_pool.new_cache()
        self.hits = self.misses = 0

    def __missing__(self, key: str) -> Slot:
        slot = self.builder.make_slot(self, key)
        self[key] = slot
        return slot

    def with_winner(self, rule_index: int) -> PlanNode:
        return self.builder.node_with_winner(self, rule_index)


class ResourcePlanBuilder:
    """Plan nodes for the rules that apply to one resource type."""

    def __init__(
        self, resource_type: str, rules: list[CompiledRule], reuse_pool: ReusePool | None = None
    ) -> None:
        self.resource_type = resource_type
        self.reuse_pool = reuse_pool or ReusePool()
        self.rules = rules
        self.by_index = {rule.index: rule for rule in rules}
        self.dynamic_rules = [r for r in rules if r.path.kind == "dynamic"]
        self._nodes: dict[tuple, PlanNode] = {}
        self._blocked_cache: dict[int, frozenset[str]] = {}
        self._nested_claims: dict[tuple[int, str], int | None] = {}
        for rule in rules:
            if rule.method is None:
                raise ConfigurationError(f"Anonymization method {rule.method_name.upper()} not supported.")
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
            found = PlanNode(ctype, states, winner, self, is_resource)
            self._nodes[key] = found
        return found

    def make_slot(self, node: PlanNode, key: str) -> Slot:
        if key == "resourceType" and node.is_resource:
            return Slot(Element("resourceType", key, "code", False, -1, None), -1)
        if key == "fhir_comments":
            return Slot(Element(key, key, "string", False, -2, None), -2)
        json_key = key[1:] if key.startswith("_") else key
        element = node.ctype.elements.get(json_key)
        if element is None or (key.startswith("_") and element.kind != PRIMITIVE):
            raise InvalidInputError(
                "The input FHIR resource is invalid: Type checking the data: Encountered unknown "
                f"element '{key}' at {node.ctype.key}"
            )
        return self._slot(node, element, node.winner)

    def _slot(
        self, node: PlanNode, element: Element, inherited: Winner, extra_match: int | None = None
    ) -> Slot:
        slot = Slot(element, element.kind)
        slot.builder = self
        slot.parent = node
        stepped = self._step(node.states, element.name)
        slot.states = frozenset(stepped)
        if element.kind == model.RESOURCE:
            return slot  # nested resources are processed on their own (see walker)
        matched, out = self._closure(stepped, element.type_name, element.name)
        if extra_match is not None:
            matched.add(extra_match)
        winner = self._child_winner(inherited, node.ctype.type_name, matched)
        slot.winner = winner
        pruned = self._prune(out, winner)
        if element.kind == PRIMITIVE:
            slot.action = self._primitive_action(element, node.ctype.type_name, winner)
            if node.is_resource and element.name == "id" and slot.action is not None:
                slot.action = recording_root_id(slot.action)
            slot.shadow = self.node(PRIMITIVE_SHADOW, pruned, self._below(winner, element))
        else:
            slot.child = self.node(model.complex_type(element.complex_key), pruned, winner)
            if winner is not None and winner[1] == APPLY:
                method = self.by_index[winner[0]].method
                slot.complex_action = method.complex_action(element)
                if slot.complex_action is not None:
                    slot.child = self.node(
                        model.complex_type(element.complex_key), pruned, (winner[0], CLAIMED)
                    )
        return slot

    def _below(self, winner: Winner, element: Element) -> Winner:
        """The winner of a primitive's own children (`id`, `extension` in its `_x` shadow)."""
        return self._child_winner(winner, element.type_name, set())

    def _primitive_action(self, element: Element, parent_type: str, winner: Winner) -> Callable | None:
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
        return self._slot(slot.parent, slot.element, slot.parent.winner, extra_match=rule_index)

    def claim_for_nested(self, slot: Slot, resource_type: str) -> int | None:
        """A container's rule that matches a nested resource node itself (`nodesByType('Patient')`
        in a Bundle, `nodesByName('contained')`): that rule then processes the nested resource's
        content as part of the container."""
        key = (id(slot), resource_type)
        if key not in self._nested_claims:
            matched, _ = self._closure(set(slot.states), resource_type, slot.element.name)
            self._nested_claims[key] = min(matched) if matched else None
        return self._nested_claims[key]
