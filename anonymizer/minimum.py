"""Minimum necessary: which resources and which elements may leave at all.

Our extension of Microsoft's format, under one top-level key that their files simply lack:

    "minimumNecessary": {
      "resourceTypes": ["Patient", "Immunization"],
      "filters": {"Immunization": "vaccineCode.coding.where(system = '...' and code in (...)).exists()"},
      "elements": {"Patient": ["id", "gender", "birthDate", "address.state"]}
    }

- `resourceTypes`: the allow-list; resources of other types are dropped.
- `filters`: per type, a FHIRPath condition on the resource (compiled once) that must evaluate to
  `true`; anything else (false, empty, an error) drops the resource.
- `elements`: per type, the element paths kept (by element name, so `effective` keeps
  `effectiveDateTime`; a path keeps its whole subtree); everything else is removed before the
  anonymization rules run, so new or unexpected fields never leak. Labels the anonymization adds
  (`meta.security`) are added afterwards and stay.
Every key is checked strictly: a typo must never switch a filter off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fhirpathpy

from anonymizer.errors import ConfigurationError, ProcessingError
from anonymizer.fhirpath import R4_MODEL, FhirPathSyntaxError, strict_parse
from anonymizer.r4 import model

KEY = "minimumNecessary"
_KEYS = ("resourceTypes", "filters", "elements", "description")
NOT_LISTED = "type_not_listed"
FILTERED = "filter"

Tree = dict[str, "Tree | bool"]  # element name -> subtree, or True for the whole element


def _fail(message: str) -> ConfigurationError:
    return ConfigurationError(f"{KEY}: {message}")


def _known_type(name: Any, where: str) -> str:
    if not model.is_resource_type(name):
        raise _fail(f"{name!r} in {where} is not an R4 resource type")
    return name


class MinimumNecessary:
    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise _fail("must be an object")
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown:
            raise _fail(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(_KEYS)})")
        types = spec.get("resourceTypes")
        if types is not None and not isinstance(types, list):
            raise _fail("resourceTypes must be a list of resource types")
        self.resource_types = (
            None if types is None else frozenset(_known_type(t, "resourceTypes") for t in types)
        )
        self.filters = {
            name: self._compile_filter(name, text) for name, text in self._mapping(spec, "filters").items()
        }
        self.elements = {
            name: self._compile_elements(name, paths)
            for name, paths in self._mapping(spec, "elements").items()
        }

    def _mapping(self, spec: dict, key: str) -> dict:
        value = spec.get(key, {})
        if not isinstance(value, dict):
            raise _fail(f"{key} must be an object keyed by resource type")
        for name in value:
            _known_type(name, key)
            if self.resource_types is not None and name not in self.resource_types:
                raise _fail(f"{key} names {name}, which resourceTypes does not list")
        return value

    @staticmethod
    def _compile_filter(resource_type: str, text: Any) -> Callable[[dict, dict], list]:
        if not isinstance(text, str):
            raise _fail(f"the filter for {resource_type} must be a FHIRPath expression")
        try:
            strict_parse(text)
        except FhirPathSyntaxError as exc:
            raise _fail(f"the filter for {resource_type} is not valid FHIRPath ({exc})") from None
        return fhirpathpy.compile(text, model=R4_MODEL)

    @staticmethod
    def _compile_elements(resource_type: str, paths: Any) -> Tree:
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise _fail(f"elements for {resource_type} must be a list of element paths")
        tree: Tree = {}
        for path in paths:
            ctype = model.complex_type(resource_type)
            node: Tree = tree
            parts = path.split(".")
            for depth, name in enumerate(parts):
                element = next((e for e in ctype.elements.values() if e.name == name), None)
                if element is None:
                    raise _fail(f"{resource_type}.{path}: no element '{name}' there")
                last = depth == len(parts) - 1
                if last:
                    node[name] = True
                    break
                if element.kind != model.COMPLEX:
                    raise _fail(f"{resource_type}.{path}: '{name}' has no child elements")
                child = node.setdefault(name, {})
                if child is True:
                    break  # an ancestor is kept whole already
                assert isinstance(child, dict) and element.complex_key is not None
                node = child
                ctype = model.complex_type(element.complex_key)
        return tree

    # -- per resource --------------------------------------------------------------------------
    def drop_reason(self, resource: dict) -> str | None:
        """Why this resource must not leave (NOT_LISTED, FILTERED), or None to keep it. Raises
        ProcessingError when a filter's regular expression runs past its time limit."""
        resource_type = resource.get("resourceType")
        if self.resource_types is not None and resource_type not in self.resource_types:
            return NOT_LISTED
        condition = self.filters.get(resource_type)
        if condition is not None:
            try:
                verdict = condition(resource, {})
            except ProcessingError:
                raise
            except Exception:  # an expression that fails on this resource does not select it
                return FILTERED
            if verdict != [True]:
                return FILTERED
        return None

    def prune(self, resource: dict) -> dict:
        """The resource with only its allowed elements (unchanged when its type has no list)."""
        tree = self.elements.get(resource.get("resourceType"))
        if tree is None:
            return resource
        return _prune(resource, model.complex_type(resource["resourceType"]), tree, root=True)


def _prune(obj: Any, ctype: model.ComplexType, tree: Tree, root: bool = False) -> Any:
    if type(obj) is list:
        return [_prune(item, ctype, tree) for item in obj]
    if type(obj) is not dict:
        return obj
    out = {"resourceType": obj["resourceType"]} if root and "resourceType" in obj else {}
    for key, value in obj.items():
        element = ctype.elements.get(key[1:] if key.startswith("_") else key)
        if element is None:
            continue  # unknown or resourceType: dropped here, resourceType written above
        keep = tree.get(element.name)
        if keep is True:
            out[key] = value
        elif isinstance(keep, dict) and element.complex_key is not None and not key.startswith("_"):
            out[key] = _prune(value, model.complex_type(element.complex_key), keep)
    return out
