from tests.helpers import engine, rule


def test_keep_protects_subtree_from_later_rules_and_records_nothing():
    e = engine([rule("Patient.name", "keep"), rule("nodesByType('HumanName')", "redact")])
    patient = {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}]}
    assert e.anonymize(patient) == patient


def test_keep_of_whole_resource_leaves_meta_alone():
    e = engine([rule("Patient", "keep"), rule("Resource.id", "cryptoHash")])
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}}
    assert e.anonymize(patient) == patient


def test_keep_does_not_protect_contained_resources():
    e = engine([rule("Condition", "keep"), rule("nodesByType('HumanName')", "redact")])
    condition = {
        "resourceType": "Condition",
        "contained": [{"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Who"}]}],
        "subject": {"reference": "#pr"},
    }
    out = e.anonymize(condition)
    assert out["contained"] == [{"resourceType": "Practitioner", "id": "pr"}]
    # the container records what its contained resources had done
    assert out["meta"]["security"][0]["code"] == "REDACTED"
