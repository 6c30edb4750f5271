"""Applying a compiled plan to one resource: resource dict in, new resource dict out.

The walk builds the output as it goes: values are parsed and normalised as the reference's Firely
parser does (strict types, trimmed strings, empty values dropped), the winning rule's action is
applied where the plan says so, and empty objects and arrays vanish. Nested resources (contained,
Bundle entries) are walked with their own type's plan after their container's rules decided the
container's nodes, as the reference orders it; their operations bubble up to the container.

The plan is shared by threads and never changes; what the walk learns (generated code, reuse
caches, recent dates, labelled metas) is the `Runtime` of the thread, one per engine and thread.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from anonymizer.errors import InvalidInputError
from anonymizer.labels import SharedMetas, add_security_labels, add_shared_security_labels
from anonymizer.methods.base import ResourceState, Site
from anonymizer.plan import PlanNode, ResourcePlanBuilder, Slot
from anonymizer.r4.model import COMPLEX, PRIMITIVE, RESOURCE, is_resource_type
from anonymizer.r4.primitives import ACCEPTED_AS_IS
from anonymizer.reuse import ReusePool, remember
from anonymizer.shapes import (
    COMPILE_AT,
    MAX_SHAPES,
    CodeCache,
    NodeRun,
    ShapeFunction,
    compile_shape,
    covering_code,
    walk_child,
)

_NOT_OBJECT = "The input FHIR resource is invalid: an element that must be an object is not one"

Plans = Callable[[str], ResourcePlanBuilder]


class Runtime:
    """What one thread learns while walking one engine's plan (shapes.ShapeRuntime)."""

    __slots__ = ("accepted", "codes", "max_shapes", "metas", "nodes", "pool")

    def __init__(self, codes: CodeCache, *, generated_code: bool = True) -> None:
        self.codes = codes
        self.nodes: dict[PlanNode, NodeRun] = {}
        self.pool = ReusePool()
        self.accepted: dict[str, set[str]] = {name: set() for name in ACCEPTED_AS_IS}  # dates, lately
        self.metas = SharedMetas()
        self.max_shapes = MAX_SHAPES if generated_code else 0  # 0: the interpreter only

    def node(self, plan: PlanNode) -> NodeRun:
        found = self.nodes.get(plan)
        if found is None:
            # Remembered outputs of repeated subtrees (reuse.py); nested resources never.
            found = NodeRun(plan, None if plan.is_resource else self.pool.new_cache())
            self.nodes[plan] = found
        return found


class Walk:
    """One top-level resource's walk (shapes.ShapeWalker for generated code)."""

    __slots__ = ("claims", "plans", "runtime", "state")

    def __init__(self, plans: Plans, state: ResourceState, runtime: Runtime) -> None:
        self.plans = plans
        self.state = state
        self.runtime = runtime
        self.claims: dict[Any, int] | None = None

    # -- resources -----------------------------------------------------------------------------
    def resource(
        self,
        obj: Any,
        container_name: str | None = None,
        claimed_by: int | None = None,
        claiming: ResourcePlanBuilder | None = None,
    ) -> dict:
        if type(obj) is not dict:
            raise InvalidInputError("The input FHIR resource JSON is invalid.", kind="not_object")
        resource_type = obj.get("resourceType")
        if not isinstance(resource_type, str) or not is_resource_type(resource_type):
            kind = "no_resource_type" if resource_type is None else "unknown_resource_type"
            raise InvalidInputError("The input FHIR resource JSON is invalid.", kind=kind)
        builder = self.plans(resource_type)
        state = self.state
        outer_ops, outer_claims, outer_is_root = state.ops, self.claims, state.is_root
        state.ops = 0
        state.is_root = container_name is None
        if claimed_by is not None:
            # A container's rule reached this resource node: its content is the container's.
            assert claiming is not None
            plan = claiming.node(builder.root.ctype, frozenset(), (claimed_by, 0), is_resource=True)
            self.claims = None
        else:
            plan = builder.root
            self.claims = self._dynamic_claims(builder, obj) if builder.dynamic_rules else None
            if builder.root_winner is None and self.claims and id(obj) in self.claims:
                plan = plan.with_winner(self.claims[id(obj)])
        if container_name is None:  # date shifting may need the root's id (ResourceState.root_id)
            state.root, state.root_node = obj, plan
        node = self.runtime.node(plan)
        # A root's generated code, when it has some, without going through `object`.
        out: dict = {"resourceType": resource_type}  # never empty: the walk returns it
        walk_shape = None if self.claims else node.shapes.get(tuple(obj))
        if walk_shape is not None:
            walk_shape(obj, out, self, state)
        else:
            self.object(obj, node, out)
        ops = state.ops
        if ops and container_name != "contained" and claimed_by is None:
            if state.reuse:
                add_shared_security_labels(out, ops, self.runtime.metas)
            else:
                add_security_labels(out, ops)
        state.ops = outer_ops | ops if container_name is not None else ops
        self.claims = outer_claims
        state.is_root = outer_is_root
        return out

    def _dynamic_claims(self, builder: ResourcePlanBuilder, obj: dict) -> dict[Any, int]:
        """Nodes matched by rules the plan could not decide, keyed by identity: an object by
        `id(obj)`, a primitive by (id(parent), json key, index)."""
        claims: dict[Any, int] = {}
        for rule in builder.dynamic_rules:
            assert rule.evaluate is not None
            for found in rule.evaluate(obj):
                key = _locate(obj, found.propName or found.path or "")
                if key is not None and claims.get(key, rule.index + 1) > rule.index:
                    claims[key] = rule.index
        return claims

    # -- objects -------------------------------------------------------------------------------
    def object(self, obj: Any, node: NodeRun, out: dict | None = None) -> dict | None:
        if type(obj) is not dict:
            raise InvalidInputError(_NOT_OBJECT)
        if out is None:
            out = {}
        plain = not self.claims  # no dynamic rule matched in this resource
        if plain:
            walk_shape = node.shapes.get(shape := tuple(obj))
            if walk_shape is None and len(node.shapes) < self.runtime.max_shapes:
                walk_shape = _new_shape_code(node, shape, self.runtime)
            if walk_shape is not None:
                return walk_shape(obj, out, self, self.state)
        state = self.state
        plan = node.plan
        for key, value in obj.items():
            slot = plan[key]
            kind = slot.kind
            if kind == PRIMITIVE:
                # The hot path: one value, no `_x` shadow, no dynamic rule.
                if plain and not slot.is_list and slot.shadow_key not in obj and type(value) is not list:
                    if value is not None:
                        value = slot.normalize(value)
                        if value is not None:
                            action = slot.action
                            if action is not None:
                                value = action(value, state)
                            if value is not None:
                                out[key] = value
                else:
                    self.primitive(obj, key, value, slot, out)
            elif kind == COMPLEX:
                if plain and type(value) is dict and slot.complex_action is None:
                    result = self.child(value, slot.child)
                    if result is not None:
                        out[key] = [result] if slot.is_list else result
                else:
                    self.complex(obj, key, value, slot, out)
            elif kind == RESOURCE:
                self.nested(value, slot, out)
            # resourceType (written first by the caller) and fhir_comments (dropped) remain
        return out or None

    def child(self, value: dict, plan: PlanNode | None) -> dict | None:
        """A complex child: its remembered output when the same text came before (reuse.py),
        else its walk (shapes.walk_child, which generated code calls)."""
        assert plan is not None
        node = self.runtime.node(plan)
        if self.claims:
            return self.object(value, node)
        return walk_child(value, node, self, self.state)

    def reuse_miss(self, value: dict, node: NodeRun, key: bytes) -> dict | None:
        """Walk a subtree whose text the node's cache does not hold, and offer it the result."""
        state = self.state
        outer, varying = state.ops, state.varying
        state.ops = 0  # the subtree's own operations, remembered with its output
        result = self.object(value, node)  # a failure abandons the whole resource and its state
        ops = state.ops
        state.ops = outer | ops
        remember(node, key, result, ops, state.varying != varying, self.runtime.pool)
        return result

    def complex(self, obj: dict, key: str, value: Any, slot: Slot, out: dict) -> None:
        if slot.is_list:
            items = value if type(value) is list else [value]
            results = []
            for index, item in enumerate(items):
                result = self.complex_item(obj, key, index, item, slot)
                if result is not None:
                    results.append(result)
            if results:
                out[key] = results
        else:
            if type(value) is list:
                value = value[0] if value else None  # Firely writes only the first one
            result = self.complex_item(obj, key, None, value, slot)
            if result is not None:
                out[key] = result

    def complex_item(self, obj: dict, key: str, index: int | None, item: Any, slot: Slot) -> Any:
        if item is None:
            return None
        if self.claims and id(item) in self.claims:
            slot = slot.with_winner(self.claims[id(item)])
        if slot.complex_action is not None:  # the method takes the whole node
            self.state.varying += 1
            return slot.complex_action(item, NodeAccess(self, slot))
        if type(item) is dict:
            return self.child(item, slot.child)
        assert slot.child is not None
        return self.object(item, self.runtime.node(slot.child))

    def nested(self, value: Any, slot: Slot, out: dict) -> None:
        self.state.varying += 1  # a nested resource's labels and offsets are its own
        builder = slot.builder
        items = value if type(value) is list else [value]
        results = []
        for item in items:
            if item is None:
                continue
            claimed_by = None
            if slot.states and type(item) is dict and is_resource_type(item.get("resourceType")):
                assert builder is not None
                claimed_by = builder.claim_for_nested(slot, item["resourceType"])
            results.append(self.resource(item, slot.element.name, claimed_by, builder))
        if results:
            out[slot.json_key] = results if slot.element.is_list else results[0]

    # -- primitives ----------------------------------------------------------------------------
    def primitive(self, obj: dict, key: str, value: Any, slot: Slot, out: dict) -> None:
        main, shadow_key = slot.json_key, slot.shadow_key
        if key == main:
            shadow = obj.get(shadow_key)
            if shadow is not None and _comes_before(obj, shadow_key, main):
                return  # written when the shadow came
        else:
            shadow = value
            value = obj.get(main)
            if main in obj and _comes_before(obj, main, shadow_key):
                return  # written with the value
        if slot.is_list:
            self.primitive_list(obj, value, shadow, slot, out)
            return
        if type(value) is list:
            value = value[0] if value else None
        if type(shadow) is list:
            shadow = shadow[0] if shadow else None
        result = self.primitive_value(obj, main, None, value, slot)
        extra = self.shadow(shadow, slot) if shadow is not None else None
        if result is not None:
            out[main] = result
        if extra is not None:
            out[shadow_key] = extra

    def shadow(self, shadow: Any, slot: Slot) -> dict | None:
        """A primitive's `_x` object (its id and extensions)."""
        assert slot.shadow is not None
        return self.object(shadow, self.runtime.node(slot.shadow))

    def primitive_value(self, obj: dict, key: str, index: int | None, value: Any, slot: Slot) -> Any:
        if value is None:
            return None
        value = slot.normalize(value)
        if value is None:
            return None
        if self.claims:
            claim = self.claims.get((id(obj), key, index))
            if claim is not None:
                slot = slot.with_winner(claim)
        action = slot.action
        if action is not None:
            value = action(value, self.state)
        return value

    def primitive_list(self, obj: dict, values: Any, shadows: Any, slot: Slot, out: dict) -> None:
        if type(values) is not list:
            values = [] if values is None else [values]
        if type(shadows) is not list:
            shadows = [] if shadows is None else [shadows]
        kept_values, kept_shadows = [], []
        for index, (value, shadow) in enumerate(zip_longest(values, shadows)):
            result = self.primitive_value(obj, slot.json_key, index, value, slot)
            extra = self.shadow(shadow, slot) if shadow is not None else None
            if result is not None or extra is not None:
                kept_values.append(result)
                kept_shadows.append(extra)
        if any(v is not None for v in kept_values):
            out[slot.json_key] = kept_values
        if any(s is not None for s in kept_shadows):
            out[slot.shadow_key] = kept_shadows


class NodeAccess:
    """A complex node handed to a method that takes it whole (methods/base.py `NodeWalk`): what
    the method may ask of the walk, and nothing else."""

    __slots__ = ("_rule_index", "_slot", "_walk")

    def __init__(self, walk: Walk, slot: Slot) -> None:
        assert slot.winner is not None
        self._walk = walk
        self._slot = slot
        self._rule_index = slot.winner[0]

    @property
    def site(self) -> Site:
        return self._slot

    def untouched(self, value: Any) -> Any:
        slot = self._slot
        assert slot.builder is not None and slot.child is not None
        plan = slot.builder.node(slot.child.ctype, frozenset(), None)
        return self._walk.object(value, self._walk.runtime.node(plan))

    def as_reached(self, value: Any) -> Any:
        assert self._slot.child is not None
        return self._walk.object(value, self._walk.runtime.node(self._slot.child))

    def reached_earlier(self, holder: dict, site: Site, index: int | None, item: Any) -> bool:
        slot = _slot(site)
        if slot.winner is not None and slot.winner[0] < self._rule_index:
            return True
        claims = self._walk.claims
        if claims:
            key = id(item) if type(item) is dict else (id(holder), slot.json_key, index)
            claim = claims.get(key)
            return claim is not None and claim < self._rule_index
        return False

    def walk_reached(self, holder: dict, site: Site, index: int | None, item: Any) -> Any:
        slot, walk = _slot(site), self._walk
        if slot.is_shadow:
            return walk.shadow(item, slot)
        if slot.kind == PRIMITIVE:
            return walk.primitive_value(holder, slot.json_key, index, item, slot)
        return walk.complex_item(holder, slot.json_key, index, item, slot)

    def record(self, operations: int) -> None:
        self._walk.state.ops |= operations


def _slot(site: Site) -> Slot:
    assert isinstance(site, Slot)  # the sites a walk hands out are its slots
    return site


def _new_shape_code(node: NodeRun, shape: tuple[str, ...], runtime: Runtime) -> ShapeFunction | None:
    """Code for a key sequence the node has none for yet: the node's union code if it covers the
    sequence, else code generated once the sequence was seen COMPILE_AT times (rare ones are not
    worth compiling); None until then."""
    walk_shape = covering_code(node, shape)
    if walk_shape is None:
        sightings = node.sightings
        seen = sightings.get(shape, 0) + 1
        if seen < COMPILE_AT:
            if len(sightings) < MAX_SHAPES:
                sightings[shape] = seen
            return None
        sightings.pop(shape, None)
        walk_shape = compile_shape(node, shape, runtime)
    node.shapes[shape] = walk_shape
    return walk_shape


def _comes_before(obj: dict, first: str, second: str) -> bool:
    for key in obj:
        if key == first:
            return True
        if key == second:
            return False
    return False


def _locate(resource: dict, concrete_path: str) -> Any:
    """Map fhirpathpy's concrete path (`Patient.name[1].given[0]`, base names for choices) to the
    identity key the walker checks."""
    segments = concrete_path.split(".")[1:]
    if not segments:
        return id(resource)
    current: Any = resource
    for position, segment in enumerate(segments):
        name, _, rest = segment.partition("[")
        index = int(rest[:-1]) if rest else None
        if type(current) is not dict:
            return None
        key = (
            name
            if name in current
            else next(
                (k for k in current if k.startswith(name) and k[len(name) : len(name) + 1].isupper()), None
            )
        )
        if key is None:
            return None
        value = current[key]
        last = position == len(segments) - 1
        if type(value) is list:
            value = value[index or 0] if len(value) > (index or 0) else None
        if last and type(value) is not dict:
            return (id(current), key, index)
        current = value
    return id(current)
