from typing import Any

import pytest

from anonymizer import InvalidInputError, jsonio
from anonymizer.shapes import COMPILE_AT
from tests.helpers import REDACTED_PATIENT, engine, rule, shape_state

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "t"}}


def test_first_rule_to_reach_a_node_wins_with_subtree_propagation():
    e = engine([rule("nodesByType('HumanName').use", "keep"), rule("nodesByType('HumanName')", "redact")])
    out = e.anonymize({"resourceType": "Patient", "name": [{"use": "official", "family": "Doe"}]})
    assert out["name"] == [{"use": "official"}]


def test_later_rule_on_parent_skips_children_reached_earlier():
    e = engine([rule("Patient.name.period.start", "keep"), rule("Patient.name", "redact")])
    out = e.anonymize(
        {"resourceType": "Patient", "name": [{"family": "Doe", "period": {"start": "2001", "end": "2002"}}]}
    )
    assert out["name"] == [{"period": {"start": "2001"}}]


def test_resource_type_and_generic_rules():
    e = engine([rule("Resource", "redact")])
    assert e.anonymize({"resourceType": "Patient", "id": "x", "gender": "male"}) == REDACTED_PATIENT
    other = engine([rule("Observation", "redact")])
    assert other.anonymize({"resourceType": "Patient", "gender": "male"})["gender"] == "male"


def test_choice_elements_by_base_name_and_type():
    e = engine([rule("Observation.value as Quantity", "redact")])
    assert "valueQuantity" not in e.anonymize({**OBS, "valueQuantity": {"value": 1}})
    assert e.anonymize({**OBS, "valueString": "x"})["valueString"] == "x"
    e = engine([rule("(nodesByType('Observation').value as Quantity).value", "redact")])
    assert e.anonymize({**OBS, "valueQuantity": {"value": 1, "unit": "u"}})["valueQuantity"] == {"unit": "u"}


def test_nodes_by_name_and_of_type():
    e = engine([rule("nodesByName('family')", "redact"), rule("Observation.value.ofType(string)", "redact")])
    assert "name" not in e.anonymize({"resourceType": "Patient", "name": [{"family": "Doe"}]})
    assert "valueString" not in e.anonymize({**OBS, "valueString": "x"})


def test_fhirpath_fallback_for_where():
    e = engine([rule("Patient.name.where(use='official').family", "redact")])
    out = e.anonymize(
        {
            "resourceType": "Patient",
            "name": [{"use": "usual", "family": "A"}, {"use": "official", "family": "B"}],
        }
    )
    assert out["name"] == [{"use": "usual", "family": "A"}, {"use": "official"}]


def test_fhirpath_fallback_keeps_priority_with_static_rules():
    e = engine([rule("Device.where(id.exists()).id", "keep"), rule("Resource.id", "redact")])
    assert e.anonymize({"resourceType": "Device", "id": "d1"})["id"] == "d1"
    assert "id" not in engine(
        [rule("Resource.id", "redact"), rule("Device.where(id.exists()).id", "keep")]
    ).anonymize({"resourceType": "Device", "id": "d1"})


def test_primitive_extensions_are_children_and_survive_value_removal():
    # dateShift removes a date over 89 years old but leaves the extension (not a date) alone
    e = engine([rule("Patient.birthDate", "dateShift")])
    ext = {"extension": [{"url": "http://x", "valueString": "y"}]}
    out = e.anonymize({"resourceType": "Patient", "_birthDate": ext, "birthDate": "1925-01-01"})
    assert out == {"resourceType": "Patient", "_birthDate": ext, "meta": out["meta"]}
    # ...and a rule on the primitive reaches its extension too
    out = engine([rule("Patient.birthDate", "redact")]).anonymize(
        {"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": ext}
    )
    assert "birthDate" not in out and "_birthDate" not in out


def test_primitive_arrays_stay_aligned_with_their_shadows():
    e = engine([rule("nodesByType('Extension')", "keep"), rule("Patient.name.given", "redact")])
    ext = {"extension": [{"url": "http://x", "valueString": "y"}]}
    out = e.anonymize(
        {
            "resourceType": "Patient",
            "name": [{"family": "F", "given": ["A", "B", "C"], "_given": [None, ext]}],
        }
    )
    assert out["name"][0] == {"family": "F", "_given": [ext]}
    kept = engine([rule("nodesByType('Extension')", "keep")]).anonymize(
        {"resourceType": "Patient", "name": [{"given": ["A", "B"], "_given": [None, ext]}]}
    )
    assert kept["name"][0] == {"given": ["A", "B"], "_given": [None, ext]}


def test_strict_typing():
    e = engine([])
    for bad in (
        {"resourceType": "Patient", "nonsense": 1},
        {"resourceType": "Patient", "birthDate": "2000-13-01"},
        {"resourceType": "Patient", "active": "yes"},
        {"resourceType": "Nope"},
        {"id": "x"},
        {"resourceType": "Patient", "multipleBirthInteger": 5.5},
    ):
        with pytest.raises(InvalidInputError):
            e.anonymize(bad)


def test_firely_normalisation():
    e = engine([])
    out = e.anonymize(
        {
            "resourceType": "Patient",
            "gender": "  male ",
            "active": "true",
            "id": "",
            "name": {"family": "x"},
            "telecom": [{}],
            "multipleBirthInteger": "2",
        }
    )
    assert out == {
        "resourceType": "Patient",
        "gender": "male",
        "active": True,
        "name": [{"family": "x"}],
        "multipleBirthInteger": 2,
    }


def test_generated_code_normalises_repeating_primitives_as_the_walker_does():
    e = engine([rule("Patient.name.prefix", "redact")])
    patient = {
        "resourceType": "Patient",
        "name": [{"given": ["  Ann ", "", None, "Bo"], "prefix": ["Dr"], "suffix": "Jr"}],
    }
    expected = {"resourceType": "Patient", "name": [{"given": ["Ann", "Bo"], "suffix": ["Jr"]}]}
    # The first sightings are interpreted, later ones run the code generated for the shape.
    outputs = [e.anonymize(patient) for _ in range(COMPILE_AT + 2)]
    assert all(out["name"] == expected["name"] for out in outputs)
    assert shape_state(e, "Patient", "name").shapes  # the shape was compiled
    with pytest.raises(InvalidInputError):
        e.anonymize(
            {"resourceType": "Patient", "name": [{"given": ["Ann", 5], "prefix": ["Dr"], "suffix": "Jr"}]}
        )


ODD_VALUES = [
    {"gender": " male\u00a0", "birthDate": "2001-02-03", "active": "true", "multipleBirthInteger": "2"},
    {"gender": "", "birthDate": " 2001-02-03", "active": False, "multipleBirthInteger": 3},
    {"gender": ["female", "male"], "birthDate": ["2001-02-03"], "active": [True]},
    {"gender": None, "birthDate": "2001-02-29", "deceasedDateTime": "2020-02-29T10:00:00+01:00"},
    {"gender": 5},
    {"birthDate": 20010203},
    {"active": "yes"},
    {"multipleBirthInteger": 2.5},
    {"name": [{"family": " \u2003 ", "given": [" A ", ""], "text": "T"}], "birthDate": "1990"},
    # Python's strip() takes U+001C..U+001F too, .NET's Trim() keeps them
    {"name": [{"family": "\x1cDoe\x1f", "text": "\x1e"}], "gender": "\x1dmale"},
]


@pytest.mark.parametrize("values", ODD_VALUES)
def test_generated_code_agrees_with_the_interpreter_on_odd_values(values, monkeypatch):
    """Each shape is met COMPILE_AT + 2 times (interpreted, then generated code): every result or
    failure equals the walker's interpreter alone."""
    rules = [rule("Patient.gender", "redact"), rule("Patient.birthDate", "dateShift")]
    patient = {"resourceType": "Patient", "id": "p1", **values}

    def outcomes(generated_code: bool) -> tuple[list, int]:
        e = engine(rules, generated_code=generated_code)
        results = []
        for _ in range(COMPILE_AT + 2):
            try:
                results.append(e.anonymize(patient))
            except InvalidInputError as exc:
                results.append(str(exc))
        return results, len(shape_state(e, "Patient").shapes)

    generated, compiled = outcomes(True)
    interpreted, none = outcomes(False)
    assert compiled == 1 and none == 0
    assert interpreted == generated


# Variants of one node's key sequence, as exports write them: optional elements present or not,
# explicit nulls, a value with and without its `_x` shadow, lists and single values, a nested
# resource, a key order that conflicts with the others, and an unknown element.
PATIENT_VARIANTS = [
    {"id": "p1", "gender": "male", "birthDate": "2001-02-03", "name": [{"family": "A"}]},
    {"id": "p2", "gender": "female", "name": [{"family": "B", "given": ["C"]}], "active": True},
    {"id": "p3", "birthDate": "1990-01-01", "_birthDate": {"extension": [{"url": "u", "valueString": "x"}]}},
    {"id": "p4", "gender": None, "birthDate": None, "name": None, "active": None},
    {"id": "p5", "_gender": {"id": "g"}, "gender": "other", "telecom": {"value": "555"}},
    {"id": "p6", "contained": [{"resourceType": "Organization", "name": "Org"}], "gender": "male"},
    {"gender": "male", "id": "p7", "birthDate": "2001-02-03"},
    {"id": "p8", "gender": "unknown", "birthDate": "2001-02-03", "multipleBirthBoolean": False},
    {"id": "p9", "gender": "male", "colour": "red"},
    {"id": "p10", "birthDate": None, "_birthDate": {"id": "b"}},
]


def test_union_code_for_variants_agrees_with_the_interpreter(monkeypatch):
    """Variants met round-robin: the first compiled one takes the others met so far into one
    union code (keys some variant lacks looked up with `get`); a conflicting order gets code of
    its own; every result or failure equals the interpreter alone."""
    rules = [rule("Patient.gender", "redact"), rule("Patient.birthDate", "dateShift")]

    def outcomes(generated_code: bool) -> tuple[list, Any]:
        e = engine(rules, generated_code=generated_code)
        results = []
        for _ in range(COMPILE_AT + 2):
            for values in PATIENT_VARIANTS:
                try:
                    results.append(e.anonymize({"resourceType": "Patient", **values}))
                except InvalidInputError as exc:
                    results.append(str(exc))
        return results, shape_state(e, "Patient")

    generated, root = outcomes(True)
    assert root.union is not None
    assert {"gender", "birthDate", "_birthDate", "active", "contained"} <= set(root.union.order)
    assert root.union.required == {"resourceType", "id"}  # everything else is optional
    assert len(set(root.shapes.values())) == 2  # the union's code, and the conflicting order's
    interpreted, _ = outcomes(False)
    assert interpreted == generated


@pytest.mark.parametrize(
    ("number", "written"),
    [
        (b"1.50", b"1.50"),
        (b"123456789012345678901", b"123456789012345678901"),
        (b"0.00001", b"0.00001"),
        (b"10.819038984602333", b"10.819038984602333"),
        (b"0.1000000000000000055511", b"0.1000000000000000055511"),
        (b"1e2", b"100"),
        (b"2.5E-3", b"0.0025"),
        (b"7", b"7"),
        (b"37.5", b"37.5"),
    ],
)
def test_numbers_come_out_as_they_came_in(number, written):
    e = engine([])
    prefix = b'{"resourceType":"Observation","status":"final","code":{"text":"t"},"valueQuantity":{"value":'
    line = prefix + number + b"}}"
    out = jsonio.dumps_compact(e.anonymize(jsonio.loads(line), source=line))
    assert out == prefix + written + b"}}"
    assert e.anonymize_json(line) == (prefix + written + b"}}").decode()


def test_meta_is_rebuilt_in_definition_order_with_dotnet_instant():
    e = engine([rule("Patient.gender", "redact")])
    out = e.anonymize(
        {
            "resourceType": "Patient",
            "meta": {"tag": [{"code": "t"}], "lastUpdated": "2014-08-18T01:43:30Z", "versionId": "3"},
            "gender": "male",
        }
    )
    assert list(out["meta"]) == ["versionId", "lastUpdated", "security", "tag"]
    assert out["meta"]["lastUpdated"] == "2014-08-18T01:43:30+00:00"


def test_existing_security_label_is_not_duplicated():
    e = engine([rule("Patient.gender", "redact")])
    out = e.anonymize(
        {"resourceType": "Patient", "meta": {"security": [{"code": "redacted"}]}, "gender": "male"}
    )
    assert out["meta"]["security"] == [{"code": "redacted"}]


def test_bundle_entries_get_own_labels_and_bundle_the_union():
    e = engine([rule("Patient.gender", "redact"), rule("Observation.status", "cryptoHash")])
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "male"}}, {"resource": {**OBS}}],
    }
    out = e.anonymize(bundle)
    codes = [[c["code"] for c in entry["resource"]["meta"]["security"]] for entry in out["entry"]]
    assert codes == [["REDACTED"], ["CRYTOHASH"]]
    assert [c["code"] for c in out["meta"]["security"]] == ["REDACTED", "CRYTOHASH"]


def test_container_rule_matching_a_nested_resource_claims_its_content():
    e = engine([rule("nodesByType('Patient')", "redact"), rule("Patient.gender", "keep")])
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "male"}}],
    }
    out = e.anonymize(bundle)
    assert out["entry"] == [{"resource": {"resourceType": "Patient"}}]
    assert out["meta"]["security"][0]["code"] == "REDACTED"


def test_unknown_method_is_refused_at_load_with_the_valid_names():
    """The reference warns at load and fails only when a resource meets the rule (deviation:
    refused before any data, once, as written, with the names it could have been)."""
    from anonymizer import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        engine([rule("Patient.id", "keep"), rule("Patient.name", "redcat")])
    assert str(info.value) == (
        "Unknown anonymization method 'redcat' in rule 2 (Patient.name): use one of keep, redact, "
        "dateShift, cryptoHash, encrypt, substitute, perturb, generalize (did you mean 'redact'?)"
    )


def test_pretty_output_matches_the_reference_byte_for_byte():
    e = engine([rule("Patient.nodesByType('HumanName')", "redact")])
    text = e.anonymize_json(
        '{"resourceType":"Patient","id":"example","name":[{"family":"Chalmers"}]}', pretty=True
    )
    assert text == (
        '{\n  "resourceType": "Patient",\n  "id": "example",\n  "meta": {\n    "security": [\n'
        '      {\n        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",\n'
        '        "code": "REDACTED",\n        "display": "redacted"\n      }\n    ]\n  }\n}'
    )


def test_newtonsoft_escapes():
    e = engine([])
    out = e.anonymize_json('{"resourceType":"Patient","id":"a","name":[{"text":"x\\u2028y\\u0085z\\u001f"}]}')
    assert "\\u2028" in out and "\\u0085" in out and "\\u001f" in out


def test_rule_paths_do_not_continue_into_nested_resources():
    e = engine([rule("Bundle.entry.resource.gender", "redact")])
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "male"}}],
    }
    assert e.anonymize(bundle) == bundle


def test_array_for_single_element_keeps_first_item():
    out = engine([]).anonymize({"resourceType": "Patient", "gender": ["male", "female"]})
    assert out["gender"] == "male"
