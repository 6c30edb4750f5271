"""Adding a method is one module (a Method subclass: its name, settings, rule check and action)
plus one line in the registry; here the module is this test's, and the line a registry of its own
handed to the engine. Also: a traceback through generated walk code shows that code's source."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import pytest

from anonymizer import ConfigurationError, Engine
from anonymizer.config import setting_text
from anonymizer.methods import REGISTRY
from anonymizer.methods.base import REDACT, Method, PrimitiveAction, ResourceState
from anonymizer.r4.model import Element
from anonymizer.shapes import COMPILE_AT


class MaskMethod(Method):
    """mask: a string keeps its last `keepLast` characters, the others become '*'."""

    name = "mask"
    settings = ("keepLast",)

    @classmethod
    def check_rule(cls, rule: Mapping[str, Any], path: str) -> None:
        if not setting_text(rule.get("keepLast", 0)).isdigit():
            raise ConfigurationError(f"keepLast must be a whole number at {path}.")

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        if element.type_name != "string":
            return None
        keep = int(setting_text(self.rule.get("keepLast", 0)))

        def mask(value: str, state: ResourceState) -> str:
            state.ops |= REDACT
            return "*" * max(len(value) - keep, 0) + (value[-keep:] if keep else "")

        return mask


METHODS = {**REGISTRY, "mask": MaskMethod}  # the registry line


def _engine(rule: dict) -> Engine:
    return Engine.from_dict({"fhirVersion": "R4", "fhirPathRules": [rule]}, methods=METHODS)


def test_a_new_method_runs_through_the_whole_engine():
    engine = _engine({"path": "Patient.name.family", "method": "mask", "keepLast": 2})
    out = engine.anonymize({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["P"]}]})
    assert out["name"] == [{"family": "******rs", "given": ["P"]}]
    assert [c["code"] for c in out["meta"]["security"]] == ["REDACTED"]


def test_its_settings_are_checked_as_every_method_s_are():
    with pytest.raises(ConfigurationError, match=r"keepLast must be a whole number at Patient\.name\."):
        _engine({"path": "Patient.name", "method": "mask", "keepLast": "two"})
    with pytest.raises(ConfigurationError, match="did you mean 'keepLast'"):
        _engine({"path": "Patient.name", "method": "mask", "keepLst": 2})
    with pytest.raises(
        ConfigurationError, match=r"use one of keep, .*, generalize, mask \(did you mean 'mask'\?\)"
    ):
        _engine({"path": "Patient.name", "method": "maks"})
    # without the registry line, the method is unknown
    with pytest.raises(ConfigurationError, match="Unknown anonymization method 'mask'"):
        Engine.from_dict({"fhirPathRules": [{"path": "Patient.name", "method": "mask"}]})


class _Failing(Method):
    name = "fail"

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        def fail(value: Any, state: ResourceState) -> Any:
            raise RuntimeError("an action failed")

        return fail


def test_a_traceback_through_generated_code_shows_its_source():
    engine = Engine.from_dict(
        {"fhirPathRules": [{"path": "Patient.gender", "method": "fail"}]},
        methods={**REGISTRY, "fail": _Failing},
    )
    patient = {"resourceType": "Patient", "id": "p", "gender": "male"}
    for _ in range(COMPILE_AT):  # the shape is interpreted until it has been seen COMPILE_AT times
        with pytest.raises(RuntimeError):
            engine.anonymize(patient)
    with pytest.raises(RuntimeError) as info:
        engine.anonymize(patient)  # now through the code generated for this shape
    text = "".join(traceback.format_exception(info.value))
    assert 'File "<shape Patient #' in text
    assert "    v = A2(v, state)\n" in text  # the generated line itself (gender, slot 2), from linecache
