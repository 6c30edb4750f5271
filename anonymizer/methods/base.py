"""What every anonymization method provides to the plan compiler.

A method is asked once per (element, parent type) at compile time for the action that applies to
a primitive value there; the compiled plan then calls that action per value. Methods that act on a
complex node as a whole (substitute, perturb on quantities) also give a `complex_action`; that
node's subtree is then theirs. Actions record label operations in the run state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from anonymizer.config import Parameters
    from anonymizer.r4.model import Element

# How a node reached by a rule is treated (the winner's mode in the plan).
APPLY = 0  # the winning method acts on the node
CLAIMED = 1  # the node belongs to the winning rule, which leaves it as it is
REMOVED = 2  # the node belongs to the winning rule, which removes it

# Label operations (reference section 3.8), one bit each: a resource's operations are an int
# (`state.ops |= REDACT`), which costs less than a set on the hot path.
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


@dataclass(slots=True)
class ResourceState:
    """Per top-level resource: the operations recorded for the resource being walked, and what
    date shifting needs (the root's id before and after the rules, the file context)."""

    ops: int = 0  # label operations recorded (bits above)
    # The root resource and its plan node: its id is read only when a date shift asks for it
    # (most resources never do), and kept in root_id_raw.
    root: Any = None
    root_node: Any = None
    root_id_raw: str | None = None
    _root_id_out: str | None = None
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
            normalized = self.root_node["id"].normalize(raw) if raw is not None else None
            found = self.root_id_raw = normalized or ""
        return found

    def root_id_out(self) -> str:
        """The root's id as the rules leave it (the action the plan applies to it)."""
        found = self._root_id_out
        if found is None:
            value: Any = self.root_id() or None
            action = self.root_node["id"].action if self.root_node is not None else None
            if value is not None and action is not None:
                value = action(value, self)
            found = self._root_id_out = "" if value is None else str(value)
        return found


# (value, state) -> new value, or None when the value is removed.
PrimitiveAction = Callable[[Any, ResourceState], Any]


def recording_root_id(action: PrimitiveAction) -> PrimitiveAction:
    """The action on a resource's id, recording the root's id before and after it: date shifts
    read them (root_id, root_id_out), and most roots write their id before their dates."""
    if getattr(action, "removes", None) is not None:
        return action  # generated code removes the value without calling the action

    def act_on_root_id(value: Any, state: ResourceState) -> Any:
        result = action(value, state)
        if state.is_root:
            state.root_id_raw = value
            state._root_id_out = "" if result is None else str(result)
        return result

    return act_on_root_id


class Method:
    """Base class: one subclass per method, registered by its configuration name."""

    name: ClassVar[str] = ""
    # True when two equal values may come out differently (random draws, a per-resource offset,
    # FHIRPath over the node): subtrees such a method touched are never reused (reuse.py).
    varies: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[Method]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            Method.registry[cls.name.lower()] = cls

    def __init__(self, rule: dict, parameters: Parameters, rule_index: int) -> None:
        self.rule = rule
        self.parameters = parameters
        self.rule_index = rule_index

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        return None

    def complex_action(self, element: Element) -> Callable[..., Any] | None:
        return None

    def child_mode(self, parent_type: str) -> int | None:
        """How the children of a node of this type are treated once the method acted on it:
        None lets the method act on them too (the reference's recursion); CLAIMED or REMOVED
        when the method marks the whole subtree visited."""
        return None
