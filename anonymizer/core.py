"""The compiled core: the `anonymizer._core` extension (Rust, built from core/), which runs the
engine's compiled plan over blocks of NDJSON lines without a Python object per node.

The Python engine stays the reference. The core runs what the plan decided (keep, redact with its
partial forms, dateShift, cryptoHash, encrypt, substitute of values, the security labels,
minimumNecessary's lists and elements); a line it cannot finish comes back as a *fallback* and is
processed by the Python engine (stream.py), with the same output, summary counts and faults:
- rules the plan cannot decide (`where(...)`, minimumNecessary filters: FHIRPath per resource);
- methods without a core form (generalize, perturb, a substitute of a whole node, a new method:
  each action says what the core runs with `methods.base.core_form`, and one without a form falls
  back);
- anything unusual in the input (a value that does not parse, a key the plan has no slot for yet,
  numbers past a double or the digit limit), which the Python engine classifies.

The plan is built lazily (plan.py): `PlanExport` sends the core what the plan holds so far and,
after a block that had fallbacks, what the Python engine added while processing them; new shapes
of input therefore take the Python path once or twice, and then the core's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from anonymizer.errors import ConfigurationError
from anonymizer.methods.base import Removal, core_form_of
from anonymizer.plan import PlanNode, ResourcePlanBuilder, Slot
from anonymizer.r4 import model
from anonymizer.r4.compartment import reference_paths
from anonymizer.r4.model import RESOURCE
from anonymizer.settings import parse_engine

if TYPE_CHECKING:
    from anonymizer.config import Parameters
    from anonymizer.minimum import MinimumNecessary, Tree

try:
    import anonymizer._core as native
except ImportError:  # a pure-Python installation: no Rust toolchain where it was installed
    native = None  # type: ignore[assignment]


class PlanSource(Protocol):
    """What the core needs of an engine (engine.Engine): its parameters, its minimum-necessary
    lists, and the plans it has built."""

    @property
    def parameters(self) -> Parameters: ...

    @property
    def minimum(self) -> MinimumNecessary | None: ...

    def plans(self) -> Mapping[str, ResourcePlanBuilder]: ...

    def plan_for(self, resource_type: str) -> ResourcePlanBuilder: ...


class FileContext(Protocol):
    """The date-shift scopes' names (engine.Context)."""

    @property
    def file_name(self) -> str | None: ...

    @property
    def folder_name(self) -> str | None: ...


ENGINE_VARIABLE = "ANONYMIZER_ENGINE"


def available() -> bool:
    """Whether the compiled core is installed."""
    return native is not None


def choose_engine(choice: str | None = None) -> str:
    """'core' or 'python' for a choice of auto, core or python (None: ANONYMIZER_ENGINE, else
    auto). ConfigurationError for another value, or for 'core' where the core is not installed."""
    given = os.environ.get(ENGINE_VARIABLE, "") if choice is None else choice
    value = parse_engine(given, ENGINE_VARIABLE) if given.strip() else "auto"
    if value == "auto":
        return "core" if available() else "python"
    if value == "core" and not available():
        raise ConfigurationError(
            f"{ENGINE_VARIABLE}=core, but the compiled core (anonymizer._core) is not installed: "
            "install the package on a machine with a Rust toolchain (pip install .), or install the "
            "core's wheel (README: Deployment), or use auto or python"
        )
    return value


def _parameters(engine: PlanSource) -> dict[str, Any]:
    params = engine.parameters
    minimum = engine.minimum
    listed = None
    if minimum is not None and minimum.resource_types is not None:
        listed = sorted(minimum.resource_types)
    day = params.reference_date
    return {
        "reference_date": (day.year, day.month, day.day),
        "partial_dates": params.partial_dates,
        "restricted_zips": list(params.restricted_zip_codes),
        "scope": params.date_shift_scope,
        "fixed_offset": params.date_shift_fixed_offset,
        "shift_range": params.date_shift_range,
        "shift_key": params.key("dateShiftKey"),
        "hash_key": params.key("cryptoHashKey"),
        "encrypt_key": params.key("encryptKey"),
        "listed": listed,
        "filtered": sorted(minimum.filters) if minimum is not None else [],
    }


def _prune_keys(tree: Tree, ctype: model.ComplexType) -> dict[str, Any]:
    """minimumNecessary's element tree by JSON key (minimum.py `_prune`): None keeps the value
    whole, a dict prunes below; a key not listed is removed."""
    keys: dict[str, Any] = {}
    for element in ctype.elements.values():
        keep = tree.get(element.name)
        if keep is True:
            keys[element.json_key] = None
            keys["_" + element.json_key] = None
        elif isinstance(keep, dict) and element.complex_key is not None:
            keys[element.json_key] = _prune_keys(keep, model.complex_type(element.complex_key))
    return keys


class PlanExport:
    """The engine's plan in the core's form, sent as it grows. Node and slot ids are the core's;
    the plan objects are held, so that their ids stay theirs."""

    def __init__(self, engine: PlanSource) -> None:
        assert native is not None
        self.engine = engine
        self.native = native.Plan(sorted(model.RESOURCE_TYPES), _parameters(engine))
        self._lock = threading.Lock()
        self._node_ids: dict[int, int] = {}  # id(PlanNode) -> core id
        self._nodes: dict[str, list[PlanNode]] = {}  # by builder: its nodes, in export order
        self._slot_counts: dict[int, int] = {}  # core node id -> slots exported
        self._slot_ids: dict[int, int] = {}  # id(Slot) -> core id
        self._held: list[Any] = []
        self._rooted: set[str] = set()
        # nested-resource slots a container's rule may reach: (slot, core id, types decided)
        self._nested: list[tuple[Slot, int, set[str]]] = []
        self.syncs = 0

    def sync(self) -> None:
        """Send what the plan gained since the last call."""
        with self._lock:
            while self._send_new():
                pass
            self.syncs += 1

    def _send_new(self) -> bool:
        nodes: list[int] = []
        slots: list[tuple] = []
        roots: list[tuple] = []
        claims: list[tuple[int, str, int]] = []
        builders = list(self.engine.plans().items())
        for resource_type, builder in builders:
            with builder.lock:
                for node in list(builder.nodes()):
                    self._node_id(node, resource_type, nodes)
                for node in self._nodes.get(resource_type, ()):
                    self._new_slots(node, slots)
            if resource_type not in self._rooted:
                self._rooted.add(resource_type)
                roots.append(self._root(resource_type, builder))
        types = [resource_type for resource_type, _ in builders]
        for slot, slot_id, decided in self._nested:
            for resource_type in types:
                if resource_type not in decided:
                    decided.add(resource_type)
                    claims.append((slot_id, resource_type, self._claim(slot, resource_type, nodes)))
        if not (nodes or slots or roots or claims):
            return False
        self.native.add(nodes, slots, roots, claims)
        return True

    def _node_id(self, node: PlanNode, resource_type: str, nodes: list[int]) -> int:
        found = self._node_ids.get(id(node))
        if found is None:
            found = self._node_ids[id(node)] = len(self._held)
            self._held.append(node)
            self._nodes.setdefault(resource_type, []).append(node)
            self._slot_counts[found] = 0
            nodes.append(found)
        return found

    def _new_slots(self, node: PlanNode, slots: list[tuple]) -> None:
        node_id = self._node_ids[id(node)]
        done = self._slot_counts[node_id]
        if len(node) == done:
            return
        for key, slot in list(node.items())[done:]:
            slots.append(self._slot(node_id, key, slot))
        self._slot_counts[node_id] = len(node)

    def _slot(self, node_id: int, key: str, slot: Slot) -> tuple:
        slot_id = self._slot_ids[id(slot)] = len(self._held)
        self._held.append(slot)
        element = slot.element
        records_root_id = (
            slot.parent is not None
            and slot.parent.is_resource
            and element.name == "id"
            and slot.action is not None
            and not isinstance(slot.action, Removal)
        )
        nested_by_rules = slot.kind == RESOURCE and bool(slot.states)
        if nested_by_rules:
            self._nested.append((slot, slot_id, set()))
        return (
            slot_id,
            node_id,
            key,
            slot.kind,
            slot.json_key,
            slot.is_list,
            slot.is_shadow,
            element.type_name,
            core_form_of(slot.action),
            self._node_ids[id(slot.child)] if slot.child is not None else None,
            self._node_ids[id(slot.shadow)] if slot.shadow is not None else None,
            slot.complex_action is not None,
            records_root_id,
            element.name == "contained",
            nested_by_rules,
        )

    def _root(self, resource_type: str, builder: ResourcePlanBuilder) -> tuple:
        minimum = self.engine.minimum
        prune = None
        if minimum is not None and resource_type in minimum.elements:
            prune = _prune_keys(minimum.elements[resource_type], model.complex_type(resource_type))
        return (
            resource_type,
            self._node_ids[id(builder.root)],
            bool(builder.dynamic_rules),
            prune,
            reference_paths(resource_type),
        )

    def _claim(self, slot: Slot, resource_type: str, nodes: list[int]) -> int:
        """The plan node of a nested resource of this type that a container's rule reaches
        (walker.py `nested`), or -1."""
        container = slot.builder
        assert container is not None
        claimed_by = container.claim_for_nested(slot, resource_type)
        if claimed_by is None:
            return -1
        nested_root = self.engine.plan_for(resource_type).root
        node = container.node(nested_root.ctype, frozenset(), (claimed_by, 0), is_resource=True)
        return self._node_id(node, container.resource_type, nodes)


class CoreRunner:
    """The core for one engine: its plan export and a core session per thread."""

    def __init__(self, engine: PlanSource) -> None:
        assert native is not None
        self.export = PlanExport(engine)
        self._threads = threading.local()
        self._free: list[Any] = []  # sessions of the pieces submitted, when they are done
        self._free_lock = threading.Lock()
        self.export.sync()

    def sessions(self, count: int) -> list[Any]:
        """This thread's core sessions (what the core keeps between pieces: recent hashes, its
        buffers), one per piece it runs at once."""
        assert native is not None
        found: list[Any] = getattr(self._threads, "sessions", [])
        while len(found) < count:
            found.append(native.Session())
        self._threads.sessions = found
        return found

    def process(
        self,
        pieces: list[tuple[bytes, int, int]],
        context: FileContext | None,
        *,
        max_line_bytes: int,
        stop_at_event: bool = False,
        threads: int = 1,
    ) -> list[tuple[bytes, list[tuple[int, str, Any, int, int]], dict[str, Any]]]:
        """native.process: each piece (data, start, end) the lines of data[start:end], shared out
        by `threads` threads; for each (out, events, counts), see core/src/lib.rs."""
        assert native is not None
        file = (context.file_name if context is not None else None) or ""
        folder = (context.folder_name if context is not None else None) or ""
        return native.process(
            self.export.native,
            self.sessions(len(pieces)),
            pieces,
            file,
            folder,
            max_line_bytes=max_line_bytes,
            stop_at_event=stop_at_event,
            threads=threads,
        )

    def submit(
        self,
        data: bytes,
        start: int,
        end: int,
        context: FileContext | None,
        *,
        max_line_bytes: int,
        stop_at_event: bool = False,
        threads: int,
    ) -> Ticket:
        """Hand the lines of data[start:end] to the core's pool of `threads` threads; the
        ticket's `wait()` gives (out, events, counts) as `process` does."""
        assert native is not None
        with self._free_lock:
            session = self._free.pop() if self._free else native.Session()
        file = (context.file_name if context is not None else None) or ""
        folder = (context.folder_name if context is not None else None) or ""
        ticket = native.submit(
            self.export.native,
            session,
            data,
            start,
            end,
            file,
            folder,
            max_line_bytes=max_line_bytes,
            stop_at_event=stop_at_event,
            threads=threads,
        )
        return Ticket(ticket, session, self)

    def give_back(self, session: Any) -> None:
        """A session free again (its piece is done)."""
        with self._free_lock:
            self._free.append(session)

    def sync(self) -> None:
        self.export.sync()


class Ticket:
    """A piece the core's pool is running."""

    __slots__ = ("_native", "_runner", "_session")

    def __init__(self, native_ticket: Any, session: Any, runner: CoreRunner) -> None:
        self._native = native_ticket
        self._session = session
        self._runner = runner

    def wait(self) -> tuple[bytes, list[tuple[int, str, Any, int, int]], dict[str, Any]]:
        result = self._native.wait()
        self._runner.give_back(self._session)
        return result
