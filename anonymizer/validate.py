"""`fhir-anonymize validate`: what is wrong or suspicious in a configuration, before any data.

It builds the configuration and its engine as a run would, then goes further than loading does:
every FHIRPath rule and minimum-necessary filter is evaluated on an empty resource of each type it
applies to (an error there is an error of every run), every substitute value is parsed as the types
its rule reaches, generalize cases are tried on a value of each primitive type their rule reaches,
regular expressions with nested quantifiers are pointed out, and the keys a run will need are
listed. Missing keys are not errors here (exit 0; `--require-keys` makes them so): configurations
are checked in CI without secrets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from anonymizer import keys
from anonymizer.config import Configuration
from anonymizer.engine import Engine, build_configuration, check_value_as
from anonymizer.errors import AnonymizerError, ConfigurationError
from anonymizer.paths import BY_NAME, BY_TYPE, CHILD, IS_TYPE, parse_rule_path
from anonymizer.r4 import model

_GENERIC = ("", "Resource", "DomainResource")
# A quantified group that holds a quantifier or an alternation: `(a+)+`, `(\w+\s?)*`, `(a|aa)+`.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[*+}]|\|)(?:[^()\\]|\\.)*\)(?:[*+]|\{\d)")
_STRING_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")
# One value per primitive type, to try generalize cases on.
_SAMPLES: dict[str, Any] = {
    "string": "sample",
    "code": "sample",
    "id": "sample",
    "uri": "urn:sample",
    "boolean": True,
    "integer": 1,
    "positiveInt": 1,
    "unsignedInt": 1,
    "decimal": 1.5,
    "date": "2020-01-02",
    "dateTime": "2020-01-02T03:04:05Z",
    "instant": "2020-01-02T03:04:05Z",
    "time": "03:04:05",
}


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)  # what a run must be given


def reach(path_text: str) -> tuple[str | None, set[str] | None]:
    """(why the rule path can match nothing in R4, or None; the type keys of the elements it
    reaches: FHIR type names and backbone keys such as 'Patient.contact', None when unknown)."""
    path = parse_rule_path(path_text)
    if path.resource_type not in _GENERIC and path.resource_type not in model.RESOURCE_TYPES:
        return f"{path.resource_type} is not an R4 resource type", set()
    if path.kind == "resource":
        return None, {path.resource_type} if path.resource_type in model.RESOURCE_TYPES else None
    if path.kind not in ("static", "table"):
        return None, None
    if path.resource_type in model.RESOURCE_TYPES:
        current = {path.resource_type}
    else:
        current = set(model.RESOURCE_TYPES)
    for selector in path.selectors:
        if selector.kind in (BY_TYPE, IS_TYPE):
            if not model.is_known_type(selector.arg):
                return f"{selector.arg} is not an R4 type", set()
            current = {selector.arg}
        elif selector.kind == BY_NAME:
            return None, None  # any element of that name: not followed further
        elif selector.kind == CHILD:
            found = _children(current, selector.arg)
            if not found:
                return f"no R4 element '{selector.arg}' where the path {path_text} expects one", set()
            current = found
    return None, current


def path_problem(path_text: str) -> str | None:
    """Why a rule path can match nothing in R4, or None when it may match."""
    return reach(path_text)[0]


def _children(type_keys: set[str], name: str) -> set[str]:
    """Type keys of the elements called `name` under any of `type_keys`."""
    out = set()
    for key in type_keys:
        if key in model.PRIMITIVE_TYPES:
            continue
        try:
            ctype = model.complex_type(key)
        except (ImportError, AttributeError, KeyError, ModuleNotFoundError):
            continue
        for element in ctype.elements.values():
            if element.name == name:
                out.add(element.complex_key or element.type_name)
    return out


def validate_configuration(raw: Any) -> Report:
    report = Report()
    try:
        config = build_configuration(raw, allow_random_keys=True, reference_date=date(2000, 1, 1))
        engine = Engine(config)
    except ConfigurationError as exc:
        report.errors.append(str(exc))
        return report
    report.warnings.extend(w for w in config.warnings if "shorter than" not in w)
    for number, rule in enumerate(config.rules, 1):
        where = f"rule {number} ({rule['path']})"
        problem, types = reach(str(rule["path"]))
        if problem:
            report.warnings.append(f"{where}: {problem}")
        method = str(rule["method"]).lower()
        if method == "substitute" and types:
            _check_replacement(rule, types, where, report)
        if method == "generalize" and types:
            _check_cases(engine, number - 1, types, where, report)
    _check_dynamic_rules(engine, report)
    _check_filters(config, report)
    _check_patterns(raw, report)
    _check_date_shift(config, report)
    for name, info in config.keys.items():
        if info.source == "random":
            report.missing_keys.append(
                f"{name}: a rule needs it; set {keys.VARIABLES[name]} (or '{name}' in parameters)"
            )
    _check_key_strength(config, report)
    return report


def _empty_resources(resource_type: str) -> list[dict]:
    types = sorted(model.RESOURCE_TYPES) if resource_type in _GENERIC else [resource_type]
    return [{"resourceType": name} for name in types]


def _check_dynamic_rules(engine: Any, report: Report) -> None:
    """A FHIRPath rule that fails on an empty resource fails on every resource of its type."""
    for rule in engine.rules:
        if rule.evaluate is None:
            continue
        for resource in _empty_resources(rule.path.resource_type):
            try:
                rule.evaluate(resource)
            except AnonymizerError:
                report.errors.append(
                    f"rule {rule.index + 1} ({rule.path.text}): the FHIRPath expression fails when "
                    f"evaluated (on an empty {resource['resourceType']}): every run would fail there"
                )
                break


def _check_filters(config: Configuration, report: Report) -> None:
    minimum = config.minimum
    if minimum is None:
        return
    for resource_type, condition in minimum.filters.items():
        try:
            condition({"resourceType": resource_type}, {})
        except Exception:
            report.errors.append(
                f"minimumNecessary: the filter for {resource_type} fails when evaluated (on an empty "
                f"{resource_type}): it would drop every {resource_type}"
            )


def _check_replacement(rule: dict, types: set[str], where: str, report: Report) -> None:
    """Parse a substitute value as each complex type its rule reaches, as a run would."""
    complex_types = sorted(t for t in types if t not in model.PRIMITIVE_TYPES)
    if not complex_types:
        return
    replacement = rule["replaceWith"]
    if isinstance(replacement, str):
        try:
            replacement = json.loads(replacement)
        except ValueError:
            replacement = ""
    if replacement is None:
        replacement = {}
    for type_key in complex_types:
        if not isinstance(replacement, dict):
            report.errors.append(f"{where}: replaceWith is not an object, but the rule reaches {type_key}")
            return
        try:
            check_value_as(type_key, replacement)
        except AnonymizerError as exc:
            report.errors.append(f"{where}: replaceWith is not a valid {type_key} ({exc})")


def _check_cases(engine: Any, index: int, types: set[str], where: str, report: Report) -> None:
    """Try the cases on a value of each primitive type the rule reaches: an error there is a
    processing error of every such value at run time."""
    method = engine.rules[index].method
    for type_name in sorted(t for t in types if t in _SAMPLES):
        try:
            method.generalize(_SAMPLES[type_name], type_name)
        except AnonymizerError:
            report.warnings.append(
                f"{where}: a case cannot be evaluated on a {type_name} value: a processing error "
                "for every such value at run time"
            )


def _expressions(raw: Any) -> list[str]:
    """Every FHIRPath text of the configuration: rule paths, generalize cases, filters."""
    found: list[str] = []
    if not isinstance(raw, dict):
        return found
    for rule in raw.get("fhirPathRules") or []:
        if isinstance(rule, dict):
            found.append(str(rule.get("path", "")))
            cases = rule.get("cases")
            if isinstance(cases, dict):
                found += [str(k) for k in cases] + [str(v) for v in cases.values()]
    minimum = raw.get("minimumNecessary")
    if isinstance(minimum, dict) and isinstance(minimum.get("filters"), dict):
        found += [str(v) for v in minimum["filters"].values()]
    return found


def _check_patterns(raw: Any, report: Report) -> None:
    for expression in _expressions(raw):
        if "matches(" not in expression.lower():
            continue
        for literal in _STRING_LITERAL.findall(expression):
            if _NESTED_QUANTIFIER.search(literal):
                report.warnings.append(
                    f"the regular expression '{literal}' has nested quantifiers: it can take "
                    "exponential time on some values (each evaluation stops after its time limit "
                    "and is then a processing error)"
                )


def _check_date_shift(config: Configuration, report: Report) -> None:
    uses = [n for n, r in enumerate(config.rules, 1) if str(r["method"]).lower() == "dateshift"]
    if not uses:
        return
    params = config.parameters
    if params.date_shift_fixed_offset is not None:
        if params.date_shift_fixed_offset == 0:
            report.warnings.append("dateShiftFixedOffsetInDays is 0: dateShift leaves every date as it is")
        return
    if params.date_shift_scope != "patient":
        report.warnings.append(
            f"rule {uses[0]} shifts dates with dateShiftScope '{params.date_shift_scope}' (Microsoft's "
            "formula): 1 resource in 101 keeps its true dates (offset 0), and one patient's resources "
            "shift apart; dateShiftScope 'patient' never shifts by 0 and keeps a patient's intervals"
        )


def _check_key_strength(config: Configuration, report: Report) -> None:
    for name, info in config.keys.items():
        if info.source != "random" and any(
            w.startswith(f"The key {name} is shorter") for w in config.warnings
        ):
            report.warnings.append(
                f"{name} is shorter than {keys.WEAK_KEY_BYTES} bytes: use a long random key"
            )
