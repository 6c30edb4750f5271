"""What a method is, and all it sees of the engine.

A method is asked once per (element, parent type), when the plan is compiled, for the action that
applies to a primitive value there; the compiled plan then calls that action per value with the
resource's state. A method that acts on a complex node as a whole (substitute, perturb on a
quantity) gives a `complex_action` too, which receives the node and a `NodeWalk`: the four things
such a method may ask of the walker (walk a value untouched, walk it as the plan decides, whether
an earlier rule reached a child, record an operation). Methods import nothing else of the engine:
no plan, no walker.

Each method checks its own rule settings beside its code (`check_rule`, as the reference's
`*Setting.ValidateRuleSettings` do), says which key it needs (`key_needed`), and gets what it
shares with the other rules of the engine (one HMAC, one offset table) from `Shared` when the rules
compile. What a method learns while running (recent hashes, shifted days) it keeps per thread:
the compiled plan is shared by threads and never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from anonymizer.config import Parameters
    from anonymizer.r4.model import Element

# How a node reached by a rule is treated (the winner's mode in the plan).
APPLY = 0  # the winning method acts on the node
CLAIMED = 1  # the node belongs to the winning rule, which leaves it as it is
REMOVED = 2  # the node belongs to the winning rule, which removes it

# Label operations (docs/reference.md section 3.8), one bit each: a resource's operations are an
# int (`state.ops |= REDACT`), which costs less than a set on the hot path.
REDACT = 1
ABSTRACT = 2
CRYPTOHASH = 4
ENCRYPT = 8
PERTURB = 16
SUBSTITUTE = 32
GENERALIZE = 64
OPERATION_NAMES = {
    REDACT: "REDACT",
    ABSTRACT: "ABSTRACT",
    CRYPTOHASH: "CRYPTOHASH",
    ENCRYPT: "ENCRYPT",
    PERTURB: "PERTURB",
    SUBSTITUTE: "SUBSTITUTE",
    GENERALIZE: "GENERALIZE",
}


def operation_names(ops: int) -> set[str]:
    """The names of the operations in `ops` (for messages and tests)."""
    return {name for bit, name in OPERATION_NAMES.items() if ops & bit}


# -- what the walker shows a method ---------------------------------------------------------------
class IdSite(Protocol):
    """The plan's decision on a resource's `id`: how it is read and what the rules make of it."""

    normalize: Callable[[Any], Any]
    action: Callable[[Any, ResourceState], Any] | None


class Site(Protocol):
    """The place of a JSON property in the compiled plan (the walker's slot), as a method sees it."""

    json_key: str
    is_list: bool  # the element repeats
    is_primitive: bool  # holds a value (not an object: a primitive's `_x` shadow is an object)

    def inner(self, key: str) -> Site:
        """The site of property `key` of an object here (InvalidInputError: no such element)."""
        ...


class NodeWalk(Protocol):
    """What a method that takes a complex node as a whole may ask of the walker."""

    @property
    def site(self) -> Site: ...

    def untouched(self, value: Any) -> Any:
        """The value read as an element of this site's type (checked and normalised as input is),
        with no rule applied; InvalidInputError if it is not one."""
        ...

    def as_reached(self, value: Any) -> Any:
        """The node walked as the plan decides (each child by the rule that reaches it)."""
        ...

    def reached_earlier(self, holder: dict, site: Site, index: int | None, item: Any) -> bool:
        """Whether a rule before this method's reached `item` (`holder[site.json_key]`, at
        `index` when it repeats)."""
        ...

    def walk_reached(self, holder: dict, site: Site, index: int | None, item: Any) -> Any:
        """`item` walked as the plan decides (for what an earlier rule reached)."""
        ...

    def record(self, operations: int) -> None:
        """Record label operations for the resource."""
        ...


@dataclass(slots=True)
class ResourceState:
    """Per top-level resource: the operations recorded for the resource being walked, and what
    date shifting needs (the root's id before and after the rules, the file context)."""

    ops: int = 0  # label operations recorded (bits above)
    # The root resource and its plan node (slots by key; its `id` slot says how the id is read and
    # rewritten): read only when a date shift asks for the id (most resources never do).
    root: dict | None = None
    root_node: Mapping[str, IdSite] | None = None
    root_id_raw: str | None = None
    root_id_written: str | None = None
    is_root: bool = True
    patient_id: str | None = None
    file_name: str | None = None
    folder_name: str | None = None
    offsets: dict[int, int] = field(default_factory=dict)  # date shifts decided for this resource
    varying: int = 0  # actions run whose result another equal value may not share (reuse.py)
    reuse: bool = False  # repeated subtrees may take a remembered output (reuse.py)

    def root_id(self) -> str:
        """The root's id as written (normalised as the parser reads it)."""
        found = self.root_id_raw
        if found is None:
            raw = self.root.get("id") if self.root is not None else None
            node = self.root_node
            normalized = node["id"].normalize(raw) if raw is not None and node is not None else None
            found = self.root_id_raw = normalized or ""
        return found

    def root_id_out(self) -> str:
        """The root's id as the rules leave it (the action the plan applies to it)."""
        found = self.root_id_written
        if found is None:
            value: Any = self.root_id() or None
            action = self.root_node["id"].action if self.root_node is not None else None
            if value is not None and action is not None:
                value = action(value, self)
            found = self.root_id_written = "" if value is None else str(value)
        return found


# (value, state) -> new value, or None when the value is removed.
PrimitiveAction = Callable[[Any, ResourceState], Any]

A = TypeVar("A", bound=Callable[..., Any])


def core_form(action: A, *form: Any) -> A:
    """Say what the compiled core runs for this action (anonymizer/core.py reads `action.core`):
    a tuple such as ("hash",) or ("partial_date", True). An action without one makes the core hand
    the resource back to this engine, so a new method works unchanged, only without the core's
    speed."""
    action.core = form  # type: ignore[attr-defined]
    return action


def core_form_of(action: Callable[..., Any] | None) -> tuple[Any, ...]:
    """The core's form of an action: ("none",) for no action, ("fallback",) when it has none."""
    if action is None:
        return ("none",)
    return tuple(getattr(action, "core", ("fallback",)))


class Removal:
    """The action that removes a value (validated first) and records one operation: generated
    walk code does that inline, without calling it (shapes.py reads `removes`)."""

    __slots__ = ("removes",)

    def __init__(self, operation: int) -> None:
        self.removes = operation

    def __call__(self, value: Any, state: ResourceState) -> None:
        state.ops |= self.removes

    @property
    def core(self) -> tuple[str, int]:
        return ("remove", self.removes)


# (the input node, what the method may ask of the walker) -> the output node, or None
ComplexAction = Callable[[Any, NodeWalk], Any]

T = TypeVar("T")


class Shared:
    """What the rules of one engine share, made once when they compile: one HMAC for every
    cryptoHash rule, one offset table for every dateShift rule (`get(factory)`: one per factory)."""

    def __init__(self, parameters: Parameters) -> None:
        self.parameters = parameters
        self._made: dict[Callable[..., Any], Any] = {}

    def get(self, factory: Callable[[Parameters], T]) -> T:
        if factory not in self._made:
            self._made[factory] = factory(self.parameters)
        return self._made[factory]


class Method:
    """Base class: one subclass per method, listed in anonymizer.methods.REGISTRY."""

    name: ClassVar[str] = ""  # as the reference's documentation spells it ("dateShift")
    settings: ClassVar[tuple[str, ...]] = ()  # rule keys it reads besides path and method
    # True when two equal values may come out differently (random draws, a per-resource offset,
    # FHIRPath over the node): subtrees such a method touched are never reused (reuse.py).
    varies: ClassVar[bool] = False

    def __init__(
        self, rule: Mapping[str, Any], parameters: Parameters, rule_index: int, shared: Shared
    ) -> None:
        self.rule = rule
        self.parameters = parameters
        self.rule_index = rule_index

    @classmethod
    def check_rule(cls, rule: Mapping[str, Any], path: str) -> None:
        """Refuse the rule's settings (ConfigurationError, the reference's messages)."""

    @classmethod
    def key_needed(cls, parameters: Parameters) -> str | None:
        """The key (anonymizer.keys.NAMES) a rule of this method needs, or None."""
        return None

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        return None

    def complex_action(self, element: Element) -> ComplexAction | None:
        return None

    def child_mode(self, parent_type: str) -> int | None:
        """How the children of a node of this type are treated once the method acted on it:
        None lets the method act on them too (the reference's recursion); CLAIMED or REMOVED
        when the method marks the whole subtree visited."""
        return None
