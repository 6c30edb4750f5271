"""Generated walk code per (plan node, key sequence).

Resources of one type repeat the same few key sequences ("shapes"). For each shape met under a
plan node, a small function is generated that processes exactly those keys in that order with
the slot's decision inlined: no per-key slot lookup, no dispatch on the element kind, strings
checked for the .NET trimming inline. Anything unusual (a `_x` shadow, a list where one value is
expected, a method that takes the whole node, a nested resource) calls the walker's general
handler for that key. The walker falls back to its interpreter when a dynamic rule matched in
the resource, and past MAX_SHAPES shapes per node.

The shapes of one node mostly differ by optional elements in FHIR's element order (a Claim with
or without `diagnosis`), so one node's code covers the union of its shapes when their orders
agree: keys that some shape lacks are looked up with `get`. A shape whose order conflicts gets
code of its own.

Generated code is learnt while running, so it lives per thread (`NodeRun`, one per plan node in a
thread's runtime), as do the sightings it is generated from and the recent dates it accepts. The
compiled code objects, a pure function of the generated text, are shared by an engine's threads
(`CodeCache`), and their text is registered with `linecache`: a traceback through generated code
shows its source.
"""

from __future__ import annotations

import itertools
import linecache
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from anonymizer.errors import InvalidInputError
from anonymizer.methods.base import Removal
from anonymizer.r4.model import COMPLEX, PRIMITIVE, RESOURCE
from anonymizer.r4.primitives import ACCEPTED_AS_IS, NORMALIZERS

if TYPE_CHECKING:
    from anonymizer.methods.base import ResourceState
    from anonymizer.plan import PlanNode, Slot
    from anonymizer.reuse import ReusePool

MAX_SHAPES = 256
# Sightings of a key sequence before its code is generated (compiling costs 0.1-2 ms by the
# number of keys; interpreted sightings use the reuse caches too, so rare shapes lose little;
# 2 to 256 measured alike on Synthea).
COMPILE_AT = 16
# Keys a node's union may lack in some shape (each costs a `get` per walk); past this, a shape
# gets code of its own.
MAX_OPTIONAL = 16
_STRING_NORMALIZER = NORMALIZERS["string"]
_dumps = orjson.dumps  # the reuse key (one global lookup on the hot path)


class ShapeWalker(Protocol):
    """What generated code calls back for keys it does not handle inline (walker.Walk)."""

    def primitive(self, obj: dict, key: str, value: Any, slot: Slot, out: dict) -> None: ...

    def complex(self, obj: dict, key: str, value: Any, slot: Slot, out: dict) -> None: ...

    def nested(self, value: Any, slot: Slot, out: dict) -> None: ...

    def object(self, obj: Any, node: NodeRun, out: dict | None = None) -> dict | None: ...

    def reuse_miss(self, value: dict, node: NodeRun, key: bytes) -> dict | None: ...


# (input object, output object, walker, resource state) -> the output, or None when empty
ShapeFunction = Callable[[dict, dict, ShapeWalker, "ResourceState"], "dict | None"]


@dataclass(slots=True)
class UnionShape:
    """Code for every key sequence that follows `order` and holds the `required` keys."""

    order: tuple[str, ...]
    positions: dict[str, int]
    required: frozenset[str]
    function: ShapeFunction


class NodeRun:
    """What one thread learns about one plan node while running: generated code per key sequence,
    the sequences seen but not compiled yet, the union code, and the node's reuse cache with its
    hit rate (reuse.py). Nested resources are never reused (`cache` None)."""

    __slots__ = ("cache", "hits", "misses", "plan", "shapes", "sightings", "union")

    def __init__(self, plan: PlanNode, cache: dict | None) -> None:
        self.plan = plan
        self.shapes: dict[tuple[str, ...], ShapeFunction] = {}
        self.sightings: dict[tuple[str, ...], int] = {}
        self.union: UnionShape | None = None
        self.cache = cache
        self.hits = self.misses = 0


class CodeCache:
    """Compiled code objects by generated text, shared by an engine's threads (a pure function
    of the text: plan nodes of one type under different parents mostly generate the same text,
    their constants differ). Each text is registered with linecache under a name of its own."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._codes: dict[tuple[str, str], CodeType] = {}
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def compiled(self, source: str, name: str) -> CodeType:
        code = self._codes.get((source, name))
        if code is None:
            with self._lock:
                code = self._codes.get((source, name))
                if code is None:
                    if len(self._codes) >= self.LIMIT:
                        self._codes.clear()
                    filename = f"<shape {name} #{next(self._numbers)}>"
                    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
                    code = self._codes[source, name] = compile(source, filename, "exec")
        return code


class ShapeRuntime(Protocol):
    """The part of a thread's runtime generated code binds (walker.Runtime)."""

    codes: CodeCache
    accepted: dict[str, set[str]]
    pool: ReusePool

    def node(self, plan: PlanNode) -> NodeRun: ...


def covering_code(node: NodeRun, shape: tuple[str, ...]) -> ShapeFunction | None:
    """The node's union code, if it covers this key sequence."""
    union = node.union
    if union is None or not union.required.issubset(shape):
        return None
    positions, last = union.positions, -1
    for key in shape:
        position = positions.get(key, -1)
        if position <= last:
            return None
        last = position
    return union.function


def compile_shape(node: NodeRun, shape: tuple[str, ...], runtime: ShapeRuntime) -> ShapeFunction:
    """Code for `shape`: the node's union grown by it (and by the other shapes met so far, so
    that their variants need no code of their own), or code for it alone when their orders
    conflict. Raises InvalidInputError for a key that is not an element of the node's type."""
    union = node.union
    if union is None:
        order, required = shape, frozenset(shape)
    else:
        merged = _merged(union.order, shape)
        required = union.required.intersection(shape)
        if merged is None or len(merged) - len(required) > MAX_OPTIONAL:
            return _generate(node, shape, frozenset(shape), runtime)
        order = merged
    for other in node.sightings:
        grown = _merged(order, other)
        fewer = required.intersection(other)
        if grown is not None and len(grown) - len(fewer) <= MAX_OPTIONAL and _are_elements(node.plan, other):
            order, required = grown, fewer
    function = _generate(node, order, required, runtime)
    node.union = UnionShape(order, {key: i for i, key in enumerate(order)}, required, function)
    return function


def _are_elements(plan: PlanNode, keys: tuple[str, ...]) -> bool:
    try:
        for key in keys:
            plan[key]
    except InvalidInputError:
        return False
    return True


def _merged(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...] | None:
    """The shortest key sequence that both follow, or None when they order two keys apart."""
    merged: list[str] = []
    i = j = 0
    while i < len(first) and j < len(second):
        if first[i] == second[j]:
            merged.append(first[i])
            i, j = i + 1, j + 1
        elif first[i] not in second:
            merged.append(first[i])
            i += 1
        elif second[j] not in first:
            merged.append(second[j])
            j += 1
        else:
            return None
    merged += first[i:] + second[j:]
    return tuple(merged)


def _generate(
    node: NodeRun, order: tuple[str, ...], required: frozenset[str], runtime: ShapeRuntime
) -> ShapeFunction:
    constants: dict[str, Any] = {"CHILD": walk_child}
    lines = ["def walk_shape(obj, out, walk, state):"]
    plan = node.plan
    for number, key in enumerate(order):
        slot = plan[key]
        kind = slot.kind
        constants[f"S{number}"] = slot
        k = repr(key)
        fetch = f"obj[{k}]" if key in required else f"obj.get({k})"
        if kind == PRIMITIVE and (key == slot.shadow_key or slot.shadow_key in order):
            # in order: walk.primitive writes a value and its shadow when the first comes
            call = f"walk.primitive(obj, {k}, obj[{k}], S{number}, out)"
            lines += [f"    {call}"] if key in required else [f"    if {k} in obj:", f"        {call}"]
        elif kind == PRIMITIVE and slot.is_list:
            lines += _primitive_list(number, k, fetch, slot, constants)
        elif kind == PRIMITIVE:
            lines += _primitive(number, k, fetch, slot, constants, runtime)
        elif kind == COMPLEX and slot.complex_action is None:
            assert slot.child is not None
            constants[f"C{number}"] = runtime.node(slot.child)
            lines += _complex(number, k, fetch, slot)
        elif kind == COMPLEX:
            lines += _unless_none(fetch, f"walk.complex(obj, {k}, v, S{number}, out)")
        elif kind == RESOURCE:
            lines += _unless_none(fetch, f"walk.nested(v, S{number}, out)")
        # resourceType (written first by the caller) and fhir_comments (dropped): nothing
    lines.append("    return out or None")
    namespace: dict[str, Any] = dict(constants)
    exec(runtime.codes.compiled("\n".join(lines) + "\n", plan.ctype.key), namespace)
    return namespace["walk_shape"]


def _unless_none(fetch: str, call: str) -> list[str]:
    return [f"    v = {fetch}", "    if v is not None:", f"        {call}"]


def _primitive(
    number: int, k: str, fetch: str, slot: Slot, constants: dict[str, Any], runtime: ShapeRuntime
) -> list[str]:
    """A single primitive: values the normaliser would return unchanged are kept inline (strings
    without .NET whitespace at their ends, dates the regex or the recent set accepts); anything
    else (whitespace to trim, a list, a wrong type) goes to walk.primitive."""
    general = [f"        walk.primitive(obj, {k}, v, S{number}, out)"]
    if slot.normalize is _STRING_NORMALIZER:
        # str.strip() gives the string itself when it strips nothing, and strips a superset of
        # .NET's whitespace: a string it would change takes the general path, which trims as
        # .NET does.
        return [
            f"    v = {fetch}",
            "    if type(v) is str and v and v.strip() is v:",
            *_keep(number, k, slot, constants, "        "),
            "    elif v is not None:",
            *general,
        ]
    if slot.element.type_name in ACCEPTED_AS_IS:
        # Dates repeat (a whole encounter's observations share one time): the ones accepted
        # lately are remembered, the others told by one regex.
        constants[f"F{number}"] = ACCEPTED_AS_IS[slot.element.type_name]
        constants[f"M{number}"] = runtime.accepted[slot.element.type_name]
        return [
            f"    v = {fetch}",
            f"    if type(v) is str and v in M{number}:",
            *_keep(number, k, slot, constants, "        "),
            f"    elif type(v) is str and F{number}(v) is not None:",
            f"        if len(M{number}) >= 4096:",
            f"            M{number}.clear()",
            f"        M{number}.add(v)",
            *_keep(number, k, slot, constants, "        "),
            "    elif v is not None:",
            *general,
        ]
    constants[f"N{number}"] = slot.normalize
    return [
        f"    v = {fetch}",
        "    if v is not None and type(v) is not list:",
        f"        v = N{number}(v)",
        "        if v is not None:",
        *_keep(number, k, slot, constants, "            "),
        "    elif v is not None:",
        *general,
    ]


def _keep(number: int, k: str, slot: Slot, constants: dict[str, Any], indent: str) -> list[str]:
    """Code for a valid value `v`: the slot's action, then `out`."""
    if isinstance(slot.action, Removal):  # the value is validated, then removed
        constants[f"R{number}"] = slot.action.removes
        return [f"{indent}state.ops |= R{number}"]
    if slot.action is None:
        return [f"{indent}out[{k}] = v"]
    constants[f"A{number}"] = slot.action
    return [f"{indent}v = A{number}(v, state)", f"{indent}if v is not None:", f"{indent}    out[{k}] = v"]


def _primitive_list(number: int, k: str, fetch: str, slot: Slot, constants: dict[str, Any]) -> list[str]:
    """A repeating primitive without its `_x` shadow: each value normalised and acted on, the
    ones left kept (walk.primitive_list without the shadow's bookkeeping)."""
    constants[f"N{number}"] = slot.normalize
    lines = [
        f"    v = {fetch}",
        "    if type(v) is list:",
        "        results = []",
        "        for item in v:",
        "            if item is not None:",
        f"                item = N{number}(item)",
    ]
    if slot.action is not None:
        constants[f"A{number}"] = slot.action
        lines += [
            "                if item is not None:",
            f"                    item = A{number}(item, state)",
        ]
    return [
        *lines,
        "                if item is not None:",
        "                    results.append(item)",
        "        if results:",
        f"            out[{k}] = results",
        "    elif v is not None:",
        f"        walk.primitive(obj, {k}, v, S{number}, out)",
    ]


def walk_child(value: dict, node: NodeRun, walk: ShapeWalker, state: ResourceState) -> dict | None:
    """A complex child (a dict) under its plan node, where no dynamic rule matched: its
    remembered output when the same text came before (reuse.py), else its generated code.
    Generated code calls this rather than holding it inline: a dozen lines less per complex
    element made compiling a third cheaper, which a single pass over an export pays."""
    cache = node.cache
    if cache is not None and state.reuse:
        key = _dumps(value)
        entry = cache.get(key)
        if entry is None:
            return walk.reuse_miss(value, node, key)
        node.hits += 1
        state.ops |= entry[1]
        return entry[0]
    function = node.shapes.get(tuple(value))
    return function(value, {}, walk, state) if function else walk.object(value, node)


def _child(number: int, value: str, indent: str) -> list[str]:
    """Code that walks the dict `value` under child node C<number> into `r`."""
    return [f"{indent}r = CHILD({value}, C{number}, walk, state)"]


def _complex(number: int, k: str, fetch: str, slot: Slot) -> list[str]:
    if slot.is_list:
        return [
            f"    v = {fetch}",
            "    if type(v) is list:",
            "        results = []",
            "        for item in v:",
            "            if type(item) is dict:",
            *_child(number, "item", " " * 16),
            "                if r is not None:",
            "                    results.append(r)",
            "            elif item is not None:",
            f"                walk.complex(obj, {k}, v, S{number}, out)",
            "                results = None",
            "                break",
            "        if results:",
            f"            out[{k}] = results",
            "    elif v is not None:",
            f"        walk.complex(obj, {k}, v, S{number}, out)",
        ]
    return [
        f"    v = {fetch}",
        "    if type(v) is dict:",
        *_child(number, "v", " " * 8),
        "        if r is not None:",
        f"            out[{k}] = r",
        "    elif v is not None:",
        f"        walk.complex(obj, {k}, v, S{number}, out)",
    ]
