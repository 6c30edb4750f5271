from decimal import Decimal

import pytest

from anonymizer import ConfigurationError, InvalidInputError, ProcessingError
from tests.helpers import REDACTED_PATIENT, engine, rule

AGE_CASES = {"$this>=0 and $this<20": "20", "$this>=20 and $this<40": "40"}


def _patient(e, **fields):
    return e.anonymize({"resourceType": "Patient", **fields})


@pytest.mark.parametrize(("value", "expected"), [(5, 20), (20, 40), (43, None)])
def test_integer_ranges(value, expected):
    e = engine([rule("Patient.multipleBirth", "generalize", cases=AGE_CASES)])
    assert _patient(e, multipleBirthInteger=value).get("multipleBirthInteger") == expected


def test_other_values_keep_and_decimal_results():
    e = engine(
        [rule("Patient.multipleBirth", "generalize", cases={"$this<3": "$this / 2"}, otherValues="keep")]
    )
    assert _patient(e, multipleBirthInteger=1)["multipleBirthInteger"] == Decimal("0.5")
    assert _patient(e, multipleBirthInteger=7)["multipleBirthInteger"] == 7


def test_empty_predicate_counts_as_true_for_partial_dates():
    cases = {"$this >= @1990-01-01 and $this < @2000-01-01": "@1990"}
    e = engine([rule("Patient.birthDate", "generalize", cases=cases)])
    assert _patient(e, birthDate="2000")["birthDate"] == "1990"
    assert "birthDate" not in _patient(e, birthDate="2000-01-01")


def test_codes_and_dotnet_regex_groups():
    cases = {"true": "$this.replaceMatches('(?<lang>[a-z]{2})-(?<region>[A-Z]{2})', '${lang}')"}
    e = engine([rule("Patient.communication.language.coding.code", "generalize", cases=cases)])
    out = _patient(e, communication=[{"language": {"coding": [{"code": "en-AU"}]}}])
    assert out["communication"][0]["language"]["coding"][0]["code"] == "en"
    assert out["meta"]["security"][0]["code"] == "GENERALIZED"


def test_failing_case_raises_or_is_skipped():
    cases = {"$this >= 0": "1"}  # compares a string with a number
    raising = engine([rule("Patient.name.family", "generalize", cases=cases)])
    with pytest.raises(ProcessingError) as info:
        _patient(raising, name=[{"family": "Secret"}])
    assert "Secret" not in str(info.value) and info.value.__cause__ is None
    from anonymizer import Engine

    skipping = Engine.from_dict(
        {
            "processingErrors": "skip",
            "fhirPathRules": [rule("Patient.name.family", "generalize", cases=cases)],
        }
    )
    assert (
        skipping.anonymize({"resourceType": "Patient", "id": "x", "name": [{"family": "Secret"}]})
        == REDACTED_PATIENT
    )


def test_skip_never_hides_configuration_errors_or_invalid_input():
    from anonymizer import Engine

    skipping = Engine.from_dict(
        {
            "processingErrors": "skip",
            "fhirPathRules": [rule("Patient.address", "generalize", cases={"true": "1"})],
        }
    )
    with pytest.raises(ConfigurationError):
        skipping.anonymize({"resourceType": "Patient", "address": [{"city": "c"}]})
    with pytest.raises(InvalidInputError):
        skipping.anonymize({"resourceType": "Patient", "nonsense": True})
