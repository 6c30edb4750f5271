from datetime import date

import pytest

from anonymizer import AnonymizerError, InvalidInputError
from anonymizer.methods.dates import older_than_limit
from anonymizer.methods.redact import partial_zip
from tests.helpers import engine, rule

RESTRICTED = ("203", "556")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("98052", "98000"),
        ("10104", "10100"),
        ("20301", "00000"),
        ("55602", "00000"),
        ("98028-1830", "98000-0000"),
        ("20301-1830", "00000-0000"),
        ("12", "12"),
    ],
)
def test_partial_zip_codes(value, expected):
    assert partial_zip(value, RESTRICTED) == expected


def _patient_birth(e, birth):
    return e.anonymize({"resourceType": "Patient", "birthDate": birth}).get("birthDate")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2015", "2015"), ("2015-02", "2015"), ("2015-02-07", "2015"), ("1925-02-07", None)],
)
def test_partial_dates_keep_the_year_unless_over_89_years(value, expected):
    e = engine([rule("Patient.birthDate", "redact")], enablePartialDatesForRedact=True)
    assert _patient_birth(e, value) == expected


def test_dates_without_partial_flag_are_removed():
    e = engine([rule("Patient.birthDate", "redact")])
    assert _patient_birth(e, "2015-02-07") is None


def test_datetime_partial_redaction_drops_time_and_offset():
    e = engine([rule("Observation.effective", "redact")], enablePartialDatesForRedact=True)
    out = e.anonymize(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "effectiveDateTime": "2015-02-07T13:28:17-05:00",
        }
    )
    assert out["effectiveDateTime"] == "2015"


def test_age_rule_uses_reference_date():
    assert older_than_limit(date(2026, 1, 1), 1936, 1, 1) is True
    assert older_than_limit(date(2026, 1, 1), 1936, 1, 2) is False


@pytest.mark.parametrize(
    ("age", "partial", "expected"), [(57, True, 57), (89, True, 89), (91, True, None), (35, False, None)]
)
def test_age_values(age, partial, expected):
    e = engine([rule("nodesByType('Age')", "redact")], enablePartialAgesForRedact=partial)
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "onsetAge": {"value": age, "unit": "a", "system": "http://unitsofmeasure.org"},
    }
    out = e.anonymize(condition)
    assert out.get("onsetAge") == ({"value": expected} if expected is not None else None)


def test_postal_code_partial_records_abstracted_label():
    e = engine(
        [rule("nodesByType('Address')", "redact")],
        enablePartialZipCodesForRedact=True,
        restrictedZipCodeTabulationAreas=["203"],
    )
    out = e.anonymize({"resourceType": "Patient", "address": [{"city": "X", "postalCode": "98052"}]})
    assert out["address"] == [{"postalCode": "98000"}]
    assert [c["code"] for c in out["meta"]["security"]] == ["REDACTED", "ABSTRED"]


def test_redacting_every_primitive_removes_the_complex_element():
    e = engine([rule("Patient.name", "redact")])
    out = e.anonymize({"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "male"})
    assert "name" not in out and out["gender"] == "male"


def test_non_integer_age_with_partial_ages_is_a_classified_error():
    e = engine([rule("nodesByType('Age')", "redact")], enablePartialAgesForRedact=True)
    with pytest.raises(InvalidInputError):
        e.anonymize(
            {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "onsetAge": {"value": 65.5}}
        )


def test_last_updated_hashed_is_a_classified_error():
    e = engine([rule("Resource.meta.lastUpdated", "cryptoHash")])
    with pytest.raises(AnonymizerError, match="lastUpdated"):
        e.anonymize({"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}})
