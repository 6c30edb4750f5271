"""generalize: the first of the rule's `cases` whose predicate holds for the value replaces it with
its expression's result; otherwise `otherValues` redacts (default) or keeps it (docs/reference.md section
4.8). Cases are FHIRPath with the value as `$this`, compiled once per configuration, evaluated
with Firely's semantics: an empty predicate result counts as true."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from anonymizer import jsonc
from anonymizer.config import setting_text
from anonymizer.errors import ConfigurationError, ProcessingError
from anonymizer.methods.base import (
    GENERALIZE,
    ComplexAction,
    Method,
    NodeWalk,
    PrimitiveAction,
    ResourceState,
)
from anonymizer.r4.model import Element

if TYPE_CHECKING:
    from anonymizer.config import Parameters


def _predicate(result: list) -> bool:
    """Firely's Predicate: empty -> true; a single boolean -> itself; anything else -> true."""
    if len(result) == 1 and isinstance(result[0], bool):
        return result[0]
    return True


def _scalar(result: list) -> Any:
    if not result:
        return None
    if len(result) > 1:
        raise ProcessingError("A generalize case returned more than one value")
    value = result[0]
    if hasattr(value, "asStr"):  # a FHIRPath date, dateTime or time: the text as written
        return value.asStr
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _cases(rule: Mapping[str, Any]) -> dict | None:
    cases = rule["cases"]
    if isinstance(cases, str):
        try:
            cases = jsonc.loads(cases)
        except ValueError:
            return None
    return cases if isinstance(cases, dict) else None


class GeneralizeMethod(Method):
    name = "generalize"
    settings = ("cases", "otherValues")
    varies = True

    @classmethod
    def check_rule(cls, rule: Mapping[str, Any], path: str) -> None:
        """The reference's order and messages (GeneralizeSetting.ValidateRuleSettings)."""
        # fhirpathpy (about 25 ms to import) only for configurations that generalize
        from anonymizer.fhirpath import FhirPathSyntaxError, strict_parse

        if "cases" not in rule:
            raise ConfigurationError("Missing cases in FHIR path rule config.")
        cases = _cases(rule)
        if cases is None:
            raise ConfigurationError(f"Invalid Json format {setting_text(rule['cases'])}")
        for key, value in cases.items():
            try:
                strict_parse(key)
                strict_parse(setting_text(value))
            except FhirPathSyntaxError:
                raise ConfigurationError(f"Invalid cases expression [{key}, {setting_text(value)}]") from None
        if "otherValues" in rule:
            other = setting_text(rule["otherValues"])
            if other.lower() not in ("redact", "keep"):
                raise ConfigurationError(f"OtherValues setting is invalid at {other}.")

    def __init__(self, rule: Mapping[str, Any], parameters: Parameters, rule_index: int, shared: Any) -> None:
        super().__init__(rule, parameters, rule_index, shared)
        # fhirpathpy (about 25 ms to import) only for configurations that generalize
        from anonymizer.fhirpath import compile_on_value, fhirpath_value

        self._fhirpath_value = fhirpath_value
        cases = _cases(rule) or {}
        self.cases: list[tuple[Callable, Callable]] = [
            (compile_on_value(predicate), compile_on_value(str(expression)))
            for predicate, expression in cases.items()
        ]
        self.keep_others = str(rule.get("otherValues", "redact")).lower() == "keep"

    def generalize(self, value: Any, type_name: str) -> Any:
        subject = self._fhirpath_value(value, type_name)
        try:
            for predicate, expression in self.cases:
                if _predicate(predicate(subject)):
                    return _scalar(expression(subject))
        except ProcessingError:
            raise
        except Exception:
            # An evaluation error (e.g. comparing a string with a number) is the one error the
            # reference lets `processingErrors: skip` skip. Its text may quote the value: dropped.
            raise ProcessingError("A generalize case could not be evaluated on a value") from None
        return value if self.keep_others else None

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        type_name = element.type_name

        def generalize_value(value: Any, state: ResourceState) -> Any:
            state.ops |= GENERALIZE
            return self.generalize(value, type_name)

        return generalize_value

    def complex_action(self, element: Element) -> ComplexAction | None:
        path = self.rule.get("path")

        def not_applicable(item: Any, node: NodeWalk) -> None:
            raise ConfigurationError(
                f"Generalization is not applicable on a {element.type_name} node at {path}"
            )

        return not_applicable
