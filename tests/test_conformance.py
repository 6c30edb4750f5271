"""Microsoft's own fixtures and unit vectors (../shared/conformance), compared as its README says:
BOM stripped, parsed with exact decimals, JSON values compared with object key order ignored."""

from __future__ import annotations

import json
import random
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from anonymizer import (
    ConfigurationError,
    Engine,
    InvalidInputError,
    ProcessingError,
    decrypt,
    is_empty_resource,
)
from anonymizer.methods import REGISTRY
from anonymizer.methods.base import ResourceState, operation_names
from anonymizer.methods.encrypt import encrypt
from anonymizer.r4.model import PRIMITIVE, Element
from tests.conftest import CONFORMANCE

# The fixtures' one time-dependent value (1940-01-01) is shifted only until 2029-12-31.
REFERENCE_DATE = date(2026, 1, 1)
EXCEPTIONS = {
    "AnonymizerProcessingException": ProcessingError,
    "InvalidInputException": InvalidInputError,
    "AnonymizerConfigurationException": ConfigurationError,
}


def _manifest() -> list[dict]:
    path = CONFORMANCE / "MANIFEST.json"
    return json.loads(path.read_text(encoding="utf-8"))["cases"] if path.exists() else []


def _vectors() -> dict:
    path = CONFORMANCE / "UNIT_VECTORS.json"
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared beside the checkout holds the reference material)")
    return json.loads(path.read_text(encoding="utf-8"))


def _covered(case: dict) -> bool:
    """Cases whose methods are implemented; unknown method names are the cases' point."""
    return all(m in REGISTRY or m not in KNOWN for m in case.get("methods") or ())


# The reference's method names (a case naming another means it tests an unknown method).
KNOWN = ("redact", "dateshift", "cryptohash", "substitute", "encrypt", "perturb", "keep", "generalize")
CASES = _manifest()


def _read(relative: str) -> str:
    return (CONFORMANCE / relative).read_text(encoding="utf-8-sig")


def _json(text: str):
    return json.loads(text, parse_float=Decimal)


def _engine(case: dict) -> Engine:
    return Engine.from_file(
        CONFORMANCE / case["config"], allow_random_keys=True, reference_date=REFERENCE_DATE
    )


@pytest.mark.skipif(not CASES, reason="../shared/conformance is not present beside the checkout")
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_manifest_case(case: dict) -> None:
    if not _covered(case):
        pytest.skip(f"methods {case['methods']} are not all implemented")
    kind = case["kind"]
    if kind == "compare":
        result = _engine(case).anonymize_json(_read(case["input"]))
        assert _json(result) == _json(_read(case["expected"]))
    elif kind == "error-at-run":
        # The reference fails when a resource meets a rule with an unknown method; we refuse the
        # configuration at load (README, deviations), naming the method as written.
        with pytest.raises(EXCEPTIONS[case["exception"]]) as info:
            _engine(case)
        method = case["message"].split()[2].lower()  # "Anonymization method SKIP not supported."
        assert f"Unknown anonymization method '{method}'" in str(info.value)
    elif kind == "error":
        engine = _engine(case)
        with pytest.raises(EXCEPTIONS[case["exception"]]) as info:
            inline = case.get("input", "").startswith("(inline")  # the engine vectors' Patient
            text = json.dumps(_vectors()["engine"]["patient_sample"]) if inline else _read(case["input"])
            engine.anonymize_json(text)
    elif kind == "invalid-config":
        with pytest.raises(ConfigurationError) as info:
            _engine(case)
        assert str(info.value) == case["message"].split("  (")[0]
    elif kind == "valid-config":
        _engine(case)
    elif kind == "empty-element":
        assert is_empty_resource(_json(_read(case["input"]))) is case["expected_is_empty"]
    elif kind == "input-only":
        engine = Engine.from_file(
            Path(__file__).parent.parent / "anonymizer/configs/ms-sample.json", allow_random_keys=True
        )
        for line in _read(case["input"]).splitlines():
            assert engine.anonymize_json(line)
    else:  # pragma: no cover - a new kind in the manifest must be looked at
        pytest.fail(f"unknown case kind {kind}")


# -- unit vectors ---------------------------------------------------------------------------------
def _method(method: str, rule_settings: dict | None = None, **parameters):
    rule = {"path": "Patient", "method": method, **(rule_settings or {})}
    engine = Engine.from_dict(
        {"fhirPathRules": [rule], "parameters": parameters},
        allow_random_keys=True,
        reference_date=REFERENCE_DATE,
    )
    return engine.rules[0].method


def _element(type_name: str, name: str = "value") -> Element:
    return Element(name, name, type_name, False, PRIMITIVE, None)


def test_vectors_cryptohash():
    v = _vectors()
    hasher = _method("cryptoHash", cryptoHashKey="123")
    plain = hasher.primitive_action(_element("string"), "Patient")
    reference = hasher.primitive_action(_element("string", "reference"), "Reference")
    for value, expected in v["cryptohash"]["vectors"]:
        assert (plain(value, ResourceState()) if value else value) == expected
    for vector in v["cryptohash_nodes"]["vectors"]:
        action = hasher.primitive_action(_element(vector["type"]), "Patient")
        assert (action(vector["input"], ResourceState()) if vector["input"] else "") == vector["expected"]
    section = v["cryptohash_reference"]
    for value, expected in section["vectors"] + section["derived_vectors"]:
        assert (reference(value, ResourceState()) if value else value) == expected


def test_vectors_reference_transform():
    from anonymizer.methods.cryptohash import transform_reference

    section = _vectors()["reference_transform"]
    for value, expected in section["known"] + section["whole_value_transformed"]:
        assert transform_reference(value, lambda _: "@ID") == expected


def test_vectors_dateshift():
    from anonymizer.methods.dateshift import DateShiftOffsets

    v = _vectors()
    for vector in v["dateshift_offset"]["vectors"]:
        assert DateShiftOffsets(vector["key"]).offset(vector["prefix"]) == vector["offset"]
    section = v["dateshift"]
    for vector in section["vectors"] + section["fallback_redaction"]:
        method = _method("dateShift", dateShiftKey="dummy", enablePartialDatesForRedact=vector["partial"])
        state = ResourceState()
        result = method.date_action(_element(vector["type"]), False)(vector["input"], state)
        assert result == vector["expected"], vector
        if "record" in vector:
            assert operation_names(state.ops) == {vector["record"]}
    for vector in section["fixed_offset_derived"]:
        method = _method("dateShift", dateShiftFixedOffsetInDays=vector["fixed"])
        assert (
            method.date_action(_element("dateTime"), False)(vector["input"], ResourceState())
            == vector["expected"]
        )
    for vector in section["other_derived"]:
        method = _method("dateShift", dateShiftKey=vector["key"])
        state = ResourceState(root_id_raw=vector["prefix"])
        assert (
            method.date_action(_element(vector["type"]), False)(vector["input"], state) == vector["expected"]
        )
    same = section["same_prefix_same_offset"]
    method = _method("dateShift", dateShiftKey=same["key"], dateShiftScope="file")
    state = ResourceState(file_name=same["prefix"])
    assert method.date_action(_element("date"), False)("2015-02-07", state) == "2015-02-11"


def _redact(type_name: str, value, name: str = "value", parent: str = "Patient", **parameters):
    action = _method("redact", **parameters).primitive_action(_element(type_name, name), parent)
    state = ResourceState()
    return action(value, state), operation_names(state.ops)


def test_vectors_redact():
    v = _vectors()
    dates = v["redact_dates"]
    for key, type_name, partial in (
        ("date_partial", "date", True),
        ("date_nonpartial", "date", False),
        ("datetime_partial", "dateTime", True),
        ("instant_partial", "instant", True),
    ):
        for value, expected in dates[key]:
            assert _redact(type_name, value, enablePartialDatesForRedact=partial) == (expected, {"REDACT"})
    ages = v["redact_age"]
    for key, partial in (("partial", True), ("nonpartial", False)):
        for value, expected in ages[key]:
            result, ops = _redact("decimal", value, parent="Age", enablePartialAgesForRedact=partial)
            assert (None if result is None else str(result)) == expected and ops == {"REDACT"}
    postal = v["redact_postal"]
    for key, zips in (("partial_restricted_203_556", ["203", "556"]), ("partial_restricted_123", ["123"])):
        for value, expected in postal[key]:
            result = _redact(
                "string",
                value,
                "postalCode",
                enablePartialZipCodesForRedact=True,
                restrictedZipCodeTabulationAreas=zips,
            )
            assert result == (expected, {"ABSTRACT"})
    for value, expected in postal["nonpartial"]:
        assert _redact("string", value, "postalCode") == (expected, {"REDACT"})


def test_vectors_encrypt():
    section = _vectors()["encrypt"]
    key = section["key_utf8"]
    for ciphertext, plaintext in section["decrypt"]:
        assert decrypt(ciphertext, key) == plaintext
    for ciphertext in section["decrypt_must_fail"]:
        with pytest.raises(ProcessingError):
            decrypt(ciphertext, key)
    for plaintext in section["roundtrip_plaintexts"]:
        assert decrypt(encrypt(plaintext, key), key) == plaintext
        assert (
            decrypt(
                encrypt(plaintext, section["aes128_key_in_visitor_test"]),
                section["aes128_key_in_visitor_test"],
            )
            == plaintext
        )


def test_vectors_perturb_bounds():
    section = _vectors()["perturb"]
    for range_type in ("fixed", "proportional"):
        for type_name, value, span, round_to, lower, upper in section[range_type]:
            method = _method("perturb", {"span": 0})
            method.span, method.proportional = Decimal(str(span)), range_type == "proportional"
            method.round_to = round_to
            method.random = random.Random(11)
            node_type = type_name.split(".")[0] if "." not in type_name else "decimal"
            for _ in range(300):
                result = method.perturb(Decimal(str(value)), node_type)
                assert Decimal(str(lower)) <= result <= Decimal(str(upper)), (type_name, value, span, result)


def test_vectors_engine_byte_exact():
    section = _vectors()["engine"]
    config = CONFORMANCE / (
        "FHIR/src/Microsoft.Health.Fhir.Anonymizer.Shared.Core.UnitTests/"
        "TestConfigurations/configuration-test-sample.json"
    )
    engine = Engine.from_file(config, allow_random_keys=True)
    text = json.dumps(section["patient_sample"])
    assert engine.anonymize_json(text) == section["expected_compact"]
    assert engine.anonymize_json(text, pretty=True) == section["expected_pretty"]


def _generalize(cases, other_values: str):
    rule = {"cases": cases, "otherValues": other_values}
    return _method("generalize", rule)


def _expected(value):
    if isinstance(value, str) and value.endswith(" (decimal)"):
        return Decimal(value.split()[0])
    return value


def test_vectors_generalize():
    section = _vectors()["generalize"]
    failures = []
    for name, data in section["sets"].items():
        cases = data.get("cases") or json.loads(data["cases_json_text"])
        for type_name, value, expected, other_values in data["vectors"]:
            method = _generalize(cases, other_values)
            state = ResourceState()
            result = method.primitive_action(_element(type_name), "Patient")(value, state)
            if result != _expected(expected) or operation_names(state.ops) != {"GENERALIZE"}:
                failures.append((name, type_name, value, expected, result))
    assert failures == []
    for type_name, value, cases in section["must_raise_processing_exception"]:
        with pytest.raises(ProcessingError):
            _generalize(cases, "redact").primitive_action(_element(type_name), "Patient")(
                value, ResourceState()
            )


def test_vectors_generalize_rejects_complex_nodes():
    engine = Engine.from_dict(
        {"fhirPathRules": [{"path": "Patient.address", "method": "generalize", "cases": {"true": "'x'"}}]}
    )
    with pytest.raises(ConfigurationError):
        engine.anonymize({"resourceType": "Patient", "address": [{"city": "c"}]})


def _substitute_engine(path: str, replacement, earlier: list[dict] = ()) -> Engine:
    rules = [*earlier, {"path": path, "method": "substitute", "replaceWith": replacement}]
    return Engine.from_dict({"fhirPathRules": rules})


ELEMENT_OF = {"Address": "address", "HumanName": "name", "ContactPoint": "telecom"}


def test_vectors_substitute():
    section = _vectors()["substitute"]
    for type_name, value, replacement, _note in section["primitive"]:
        action = _method(
            "substitute",
            {
                "replaceWith": None
                if replacement is None
                else ("" if replacement == "string.Empty" else replacement)
            },
        ).primitive_action(_element(type_name), "Patient")
        expected = {None: None, "string.Empty": "", False: "False", 1: "1"}.get(replacement, replacement)
        assert action(value, ResourceState()) == expected
    for vector in section["complex_expected_pretty_json_unnormalised"]:
        element = ELEMENT_OF[vector["type"]]
        engine = _substitute_engine(f"Patient.{element}", vector["replaceWith"])
        out = engine.anonymize({"resourceType": "Patient", element: [vector["input"]]})
        node = out.get(element, [{}])[0]
        assert json.dumps(node, indent=2) == vector["expected"]
    for vector in section["conflict_rules"]:
        element = ELEMENT_OF[vector["type"]]
        earlier = [{"path": f"Patient.{element}.{vector['visited']}", "method": "keep"}]
        engine = _substitute_engine(f"Patient.{element}", vector["replaceWith"], earlier)
        out = engine.anonymize({"resourceType": "Patient", element: [vector["input"]]})
        assert out[element][0] == vector["expected"]
    for type_name, replacement in section["must_raise_format_exception"]:
        element = ELEMENT_OF[type_name]
        engine = _substitute_engine(f"Patient.{element}", replacement)
        with pytest.raises(ConfigurationError):
            engine.anonymize({"resourceType": "Patient", element: [{"text": "x"}]})
