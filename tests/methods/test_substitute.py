import pytest

from anonymizer import ConfigurationError
from tests.helpers import engine, rule


def test_primitive_becomes_the_replacement_text():
    e = engine(
        [
            rule("Patient.active", "substitute", replaceWith=False),
            rule("Patient.gender", "substitute", replaceWith=None),
        ]
    )
    out = e.anonymize({"resourceType": "Patient", "active": True, "gender": "male"})
    assert out["active"] == "False" and "gender" not in out
    assert [c["code"] for c in out["meta"]["security"]] == ["SUBSTITUTED"]


def test_primitive_loses_its_own_extension():
    e = engine([rule("Patient.birthDate", "substitute", replaceWith="2000")])
    out = e.anonymize(
        {
            "resourceType": "Patient",
            "birthDate": "1999-01-01",
            "_birthDate": {"extension": [{"url": "http://x", "valueString": "y"}]},
        }
    )
    assert out["birthDate"] == "2000" and "_birthDate" not in out


def test_complex_replacement_keeps_children_reached_earlier():
    e = engine(
        [
            rule("Patient.name.period.start", "keep"),
            rule("Patient.name", "substitute", replaceWith={"family": "example", "given": ["test"]}),
        ]
    )
    out = e.anonymize(
        {
            "resourceType": "Patient",
            "name": [{"use": "usual", "given": ["A"], "period": {"start": "2001", "end": "2002"}}],
        }
    )
    assert out["name"] == [{"given": ["test"], "period": {"start": "2001"}, "family": "example"}]


def test_child_substituted_first_then_parent():
    e = engine(
        [
            rule("Patient.name.period", "substitute", replaceWith={"start": "2020-01-01"}),
            rule("Patient.name", "substitute", replaceWith={"family": "f"}),
        ]
    )
    out = e.anonymize({"resourceType": "Patient", "name": [{"family": "x", "period": {"end": "1999"}}]})
    assert out["name"] == [{"family": "f", "period": {"start": "2020-01-01"}}]


@pytest.mark.parametrize("replacement", ["", "2019-01-01", {"family": "not an address field"}])
def test_replacement_that_is_not_the_node_type_fails(replacement):
    e = engine([rule("Patient.address", "substitute", replaceWith=replacement)])
    with pytest.raises(ConfigurationError):
        e.anonymize({"resourceType": "Patient", "address": [{"city": "c"}]})
