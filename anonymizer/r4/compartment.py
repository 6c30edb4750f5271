"""Who a resource is about: the patient id the `patient` date-shift scope keys on."""

from __future__ import annotations

from typing import Any

from anonymizer.r4._generated import PATIENT_COMPARTMENT


def _element_paths(resource_type: str) -> list[list[str]]:
    paths = []
    for _param, expression in PATIENT_COMPARTMENT.get(resource_type, ()):
        expression = expression.split(".where(")[0]
        paths.append(expression.split("."))
    return paths


_PATHS: dict[str, list[list[str]]] = {}


def _references(value: Any, steps: list[str]):
    if type(value) is list:
        for item in value:
            yield from _references(item, steps)
        return
    if type(value) is not dict:
        return
    if not steps:
        reference = value.get("reference")
        if type(reference) is str:
            yield reference
        return
    head, rest = steps[0], steps[1:]
    for key, child in value.items():
        if key == head or (key.startswith(head) and key[len(head) : len(head) + 1].isupper()):
            yield from _references(child, rest)


def reference_paths(resource_type: str) -> list[list[str]]:
    """The element paths (steps) of the type's Patient-compartment parameters, in order."""
    paths = _PATHS.get(resource_type)
    if paths is None:
        paths = _PATHS[resource_type] = _element_paths(resource_type)
    return paths


def patient_id_of(resource: dict) -> str | None:
    """The Patient's own id, else the first Patient reference among the resource's
    Patient-compartment parameters in the compartment definition's order; None if there is none."""
    resource_type = str(resource.get("resourceType"))
    if resource_type == "Patient":
        value = resource.get("id")
        return value.strip() if type(value) is str and value.strip() else None
    for steps in reference_paths(resource_type):
        for reference in _references(resource, steps):
            reference = reference.strip()
            if reference.startswith("urn:uuid:"):
                continue
            parts = reference.split("/")
            if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
                return parts[-1]
            if len(parts) >= 4 and parts[-4] == "Patient" and parts[-2] == "_history":
                return parts[-3]
    return None
