"""`fhir-anonymize validate`: what is wrong or suspicious in a configuration, before any data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anonymizer.config import KEY_PARAMETERS, METHODS, WEAK_KEY_BYTES, build_configuration
from anonymizer.errors import ConfigurationError
from anonymizer.paths import BY_NAME, BY_TYPE, CHILD, IS_TYPE, parse_rule_path
from anonymizer.r4 import model


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _children(type_keys: set[str], name: str) -> set[str]:
    """Type keys of the elements called `name` under any of `type_keys`."""
    out = set()
    for key in type_keys:
        try:
            ctype = model.complex_type(key)
        except (ImportError, AttributeError, KeyError):
            continue
        for element in ctype.elements.values():
            if element.name == name:
                out.add(element.complex_key or element.type_name)
    return out


def path_problem(path_text: str) -> str | None:
    """Why a rule path can match nothing in R4, or None when it may match."""
    path = parse_rule_path(path_text)
    if (
        path.resource_type not in ("", "Resource", "DomainResource")
        and path.resource_type not in model.RESOURCE_TYPES
    ):
        return f"{path.resource_type} is not an R4 resource type"
    if path.kind not in ("static", "table"):
        return None
    if path.resource_type in model.RESOURCE_TYPES:
        current = {path.resource_type}
    else:
        current = set(model.RESOURCE_TYPES)
    for selector in path.selectors:
        if selector.kind in (BY_TYPE, IS_TYPE):
            if not model.is_known_type(selector.arg):
                return f"{selector.arg} is not an R4 type"
            current = {selector.arg} if selector.kind == BY_TYPE else current
        elif selector.kind == BY_NAME:
            current = set()  # any element of that name; not followed further
            return None
        elif selector.kind == CHILD:
            found = _children(current, selector.arg)
            if not found:
                return f"no R4 element '{selector.arg}' where the path {path_text} expects one"
            current = found
    return None


def validate_configuration(raw: Any) -> Report:
    report = Report()
    try:
        config = build_configuration(raw, allow_random_keys=True)
    except ConfigurationError as exc:
        report.errors.append(str(exc))
        return report
    report.warnings.extend(w for w in config.warnings if "shorter than" not in w)
    for rule in config.rules:
        method = str(rule["method"]).lower()
        if method not in METHODS:
            report.errors.append(
                f"Anonymization method {method.upper()} not supported (rule {rule['path']})."
            )
        problem = path_problem(str(rule["path"]))
        if problem:
            report.warnings.append(f"rule {rule['path']}: {problem}")
    for name, info in config.keys.items():
        if info.source == "random":
            variable = KEY_PARAMETERS[name]
            report.errors.append(f"{name} is empty but a rule needs it: set {variable}")
    _check_key_strength(raw, report)
    return report


def _check_key_strength(raw: Any, report: Report) -> None:
    import os

    params = {k.lower(): v for k, v in (raw.get("parameters") or {}).items()} if isinstance(raw, dict) else {}
    for name, variable in KEY_PARAMETERS.items():
        value = os.environ.get(variable) or params.get(name.lower()) or ""
        if isinstance(value, str) and value and len(value.encode("utf-8")) < WEAK_KEY_BYTES:
            report.warnings.append(f"{name} is shorter than {WEAK_KEY_BYTES} bytes: use a long random key")
