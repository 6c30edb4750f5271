"""The FHIR R4 (4.0.1) element model, read from maintained libraries.

Element types come from fhirpathpy's R4 model (`path2Type`, `pathsDefinedElsewhere`); which elements
exist, repeat, are choices or are backbone elements comes from fhirclient 4.x's generated classes
(FHIR 4.0.1). Only the FHIR typing of three System.String elements comes from a generated table.
Types are built lazily, once per process, and cached.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from anonymizer.r4._generated import SYSTEM_STRING_TYPES

PRIMITIVE = 0
COMPLEX = 1
RESOURCE = 2

PRIMITIVE_TYPES = frozenset(
    [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    ]
)


@dataclass(frozen=True, slots=True)
class Element:
    """One JSON property of a complex type: `valueQuantity` is element `value` of type `Quantity`."""

    name: str
    json_key: str
    type_name: str
    is_list: bool
    kind: int
    complex_key: str | None  # key of the ComplexType describing its children (COMPLEX only)


@dataclass(slots=True)
class ComplexType:
    key: str  # 'HumanName', 'Patient' or a backbone path such as 'Patient.contact'
    type_name: str  # the node type the reference reports: 'HumanName', 'Patient', 'BackboneElement'
    elements: dict[str, Element] = field(default_factory=dict)
    names: frozenset[str] = frozenset()  # base element names


def _model_file(name: str) -> dict:
    # Found, not imported: importing fhirpathpy (its FHIRPath engine) costs about 25 ms, and only
    # configurations with FHIRPath the plan cannot decide need it.
    spec = importlib.util.find_spec("fhirpathpy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the fhirpathpy package is required: pip install fhirpathpy")
    path = Path(spec.submodule_search_locations[0]) / "models" / "r4" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


_PATH2TYPE: dict[str, str] = _model_file("path2Type")
_DEFINED_ELSEWHERE: dict[str, str] = _model_file("pathsDefinedElsewhere")
_TYPE2PARENT: dict[str, str] = _model_file("type2Parent")


def _ancestors(type_name: str) -> list[str]:
    out = []
    while type_name in _TYPE2PARENT:
        type_name = _TYPE2PARENT[type_name]
        out.append(type_name)
    return out


RESOURCE_TYPES: frozenset[str] = frozenset(
    t for t in _TYPE2PARENT if "Resource" in _ancestors(t) and t != "DomainResource"
)

# The reference's element typing for inherited ids and extension urls (see _generated.py).
_RESOURCE_ID = SYSTEM_STRING_TYPES["Resource.id"]
_ELEMENT_ID = SYSTEM_STRING_TYPES["Element.id"]
_EXTENSION_URL = SYSTEM_STRING_TYPES["Extension.url"]


# fhirclient's package __init__ imports its SMART client and with it `requests` (60 ms, more than
# everything else a run builds); only the generated model classes are wanted, so the package's
# folder is mounted under a name of our own without running its __init__, and the models' relative
# imports resolve inside it.
_MODELS = "anonymizer.r4._fhirclient.models"


def _mount_fhirclient() -> None:
    parent = _MODELS.rsplit(".", 1)[0]
    if parent in sys.modules:
        return
    spec = importlib.util.find_spec("fhirclient")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the fhirclient package (4.x) is required: pip install fhirclient")
    package = types.ModuleType(parent)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[parent] = package


def _fhirclient_class(type_name: str) -> type:
    _mount_fhirclient()
    module = importlib.import_module(f"{_MODELS}.{type_name.lower()}")
    return getattr(module, type_name)


def _element_type(owner_key: str, json_key: str, is_resource: bool) -> str | None:
    fhir_type = _PATH2TYPE.get(f"{owner_key}.{json_key}")
    if fhir_type == "System.String":
        if json_key == "id":
            return _RESOURCE_ID if is_resource else _ELEMENT_ID
        return _EXTENSION_URL
    return fhir_type


_TYPES: dict[str, ComplexType] = {}
_CLASSES: dict[str, type] = {}


def complex_type(key: str) -> ComplexType:
    """The children of a complex type, a resource or a backbone element (by definition key)."""
    found = _TYPES.get(key)
    if found is None:
        found = _build(key)
        _TYPES[key] = found
    return found


def _build(key: str) -> ComplexType:
    is_resource = key in RESOURCE_TYPES
    if "." in key:
        if key not in _CLASSES:  # a backbone element: its owner declares its class
            complex_type(key.rsplit(".", 1)[0])
        cls = _CLASSES[key]
        type_name = "BackboneElement"
    else:
        cls = _fhirclient_class(key)
        type_name = key
    ctype = ComplexType(key=key, type_name=type_name)
    for _, json_key, py_type, is_list, of_many, _required in cls().elementProperties():
        name = of_many or json_key
        fhir_type = _element_type(key, json_key, is_resource)
        if fhir_type == "Resource":
            element = Element(name, json_key, "Resource", is_list, RESOURCE, None)
        elif fhir_type in PRIMITIVE_TYPES:
            element = Element(name, json_key, fhir_type, is_list, PRIMITIVE, None)
        elif fhir_type is None:  # a backbone element: its own definition path
            child_key = f"{key}.{json_key}"
            child_key = _DEFINED_ELSEWHERE.get(child_key, child_key)
            _CLASSES.setdefault(child_key, py_type)
            element = Element(name, json_key, "BackboneElement", is_list, COMPLEX, child_key)
        else:
            element = Element(name, json_key, fhir_type, is_list, COMPLEX, fhir_type)
        ctype.elements[json_key] = element
    ctype.names = frozenset(e.name for e in ctype.elements.values())
    return ctype


# The children a primitive may carry in its `_x` shadow object.
PRIMITIVE_SHADOW = ComplexType(
    key="Element",
    type_name="Element",
    elements={
        "id": Element("id", "id", _ELEMENT_ID, False, PRIMITIVE, None),
        "extension": Element("extension", "extension", "Extension", True, COMPLEX, "Extension"),
    },
    names=frozenset({"id", "extension"}),
)


def is_type_or_subtype(type_name: str, wanted: str) -> bool:
    """`type_name` is `wanted` or derives from it (Age is a Quantity), as FHIRPath `is` says."""
    current: str | None = type_name
    while current is not None:
        if current == wanted:
            return True
        current = _TYPE2PARENT.get(current)
    return False


def is_known_type(name: str) -> bool:
    return name in PRIMITIVE_TYPES or name in _TYPE2PARENT or name == "BackboneElement"


def is_resource_type(name: object) -> bool:
    return isinstance(name, str) and name in RESOURCE_TYPES


_REACH: dict[tuple[str, frozenset[str]], tuple[frozenset[str], frozenset[str]]] = {}


def reachable(ctype: ComplexType, blocked: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The element types and names that can occur below a node of this type, not entering nested
    resources nor nodes whose type is in `blocked`."""
    key = (ctype.key, blocked)
    found = _REACH.get(key)
    if found is not None:
        return found
    types: set[str] = set()
    names: set[str] = set()
    seen: set[str] = set()
    todo = [ctype.key]
    while todo:
        for type_name, (element_names, more_types, below) in _children_by_type(todo.pop()).items():
            if type_name in blocked:
                continue
            types.add(type_name)
            types |= more_types
            names |= element_names
            for complex_key in below:
                # (a primitive's shadow reaches Extension, unless Extension is blocked; below
                # Extension, its own `extension` adds the type)
                if complex_key not in seen and complex_key not in blocked:
                    seen.add(complex_key)
                    todo.append(complex_key)
    found = (frozenset(types), frozenset(names))
    _REACH[key] = found
    return found


_Group = tuple[frozenset[str], frozenset[str], tuple[str, ...]]
_BY_TYPE: dict[str, dict[str, _Group]] = {}


def _children_by_type(key: str) -> dict[str, _Group]:
    """A complex type's elements grouped by element type (`reachable` skips a blocked type's
    group): the names met directly below a node of the type, the other types met with them,
    and the complex types to look into."""
    found = _BY_TYPE.get(key)
    if found is None:
        grouped: dict[str, tuple[set[str], set[str], set[str]]] = {}
        for element in complex_type(key).elements.values():
            names, more_types, below = grouped.setdefault(element.type_name, (set(), set(), set()))
            names.add(element.name)
            if element.kind == RESOURCE:  # the nested resource node itself, not its content
                more_types |= RESOURCE_TYPES
            elif element.kind == PRIMITIVE:  # its `_x` shadow: an id and extensions
                names |= PRIMITIVE_SHADOW.names
                more_types.add(_ELEMENT_ID)
                below.add("Extension")
            elif element.kind == COMPLEX and element.complex_key is not None:
                below.add(element.complex_key)
        found = {t: (frozenset(n), frozenset(m), tuple(b)) for t, (n, m, b) in grouped.items()}
        _BY_TYPE[key] = found
    return found
