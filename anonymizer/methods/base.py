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

# Label operations (reference section 3.8).
REDACT = "REDACT"
ABSTRACT = "ABSTRACT"
CRYPTOHASH = "CRYPTOHASH"
ENCRYPT = "ENCRYPT"
PERTURB = "PERTURB"
SUBSTITUTE = "SUBSTITUTE"
GENERALIZE = "GENERALIZE"


@dataclass(slots=True)
class ResourceState:
    """Per top-level resource: the operations recorded for the resource being walked, and what
    date shifting needs (the root's id before and after the rules, the file context)."""

    ops: set[str] = field(default_factory=set)
    root_id_raw: str = ""
    root_id_out: str = ""
    is_root: bool = True
    patient_id: str | None = None
    file_name: str | None = None
    folder_name: str | None = None


# (value, state) -> new value, or None when the value is removed.
PrimitiveAction = Callable[[Any, ResourceState], Any]


class Method:
    """Base class: one subclass per method, registered by its configuration name."""

    name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Method]]] = {}
    # substitute marks the whole subtree of the node it changed as visited.
    claims_subtree: ClassVar[bool] = False

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

    def claims_children(self, type_name: str) -> bool:
        """Whether acting on a node of this type marks its whole subtree visited."""
        return self.claims_subtree
