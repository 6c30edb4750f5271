from collections import Counter

import pytest

from anonymizer import Context
from anonymizer.methods.dateshift import DateShiftOffsets, patient_offset
from tests.helpers import engine, rule


@pytest.mark.parametrize(
    ("prefix", "key", "offset"),
    [("", "dummy", -21), ("example", "123", 41), ("bundle-transaction", "123", 7), ("filename", "123", 4)],
)
def test_reference_offset_formula(prefix, key, offset):
    assert DateShiftOffsets(key).offset(prefix) == offset


def _shift(value, type_path="Patient.birthDate", key="birthDate", **params):
    e = engine([rule(type_path, "dateShift")], enablePartialDatesForRedact=True, **params)
    return e.anonymize({"resourceType": "Patient", key: value}).get(key)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2015-02-07", "2015-01-17"), ("2015-02", "2015"), ("1925-02-07", None), ("2001-01-01Z", "2000-12-11")],
)
def test_dates_shift_by_offset_or_fall_back_to_partial_redaction(value, expected):
    assert _shift(value) == expected  # key 'dummy', no id: offset -21


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2015-02-07T13:28:17-05:00", "2015-01-17T00:00:00-05:00"),
        ("2015-02-07T13:28:17Z", "2015-01-17T00:00:00Z"),
        ("2015-02-07T13:28:17.12345-05:00", "2015-01-17T00:00:00.00000-05:00"),
        ("2015-02-07T13:28-05:00", "2015-01-17"),
    ],
)
def test_datetime_time_zeroed_digit_by_digit_offset_kept(value, expected):
    assert _shift(value, "Patient.deceased", "deceasedDateTime") == expected


def test_fixed_offset_needs_no_key():
    from anonymizer import Engine

    e = Engine.from_dict(
        {
            "fhirPathRules": [rule("Patient.birthDate", "dateShift")],
            "parameters": {"dateShiftFixedOffsetInDays": 11},
        }
    )
    assert e.anonymize({"resourceType": "Patient", "birthDate": "2015-02-07"})["birthDate"] == "2015-02-18"


def test_prefix_is_the_id_as_earlier_rules_left_it():
    raw_id_first = engine(
        [rule("nodesByType('date')", "dateShift"), rule("Resource.id", "cryptoHash")], dateShiftKey="123"
    )
    hashed_first = engine(
        [rule("Resource.id", "cryptoHash"), rule("nodesByType('date')", "dateShift")], dateShiftKey="123"
    )
    patient = {"resourceType": "Patient", "id": "example", "birthDate": "2000-01-01"}
    assert raw_id_first.anonymize(patient)["birthDate"] == "2000-02-11"  # +41
    assert hashed_first.anonymize(patient)["birthDate"] == "1999-12-12"  # -20


def test_file_scope_uses_the_file_name():
    e = engine([rule("Patient.birthDate", "dateShift")], dateShiftKey="123", dateShiftScope="file")
    out = e.anonymize(
        {"resourceType": "Patient", "id": "x", "birthDate": "2015-02-07"}, Context(file_name="filename")
    )
    assert out["birthDate"] == "2015-02-11"  # +4


def test_patient_offsets_cover_the_range_evenly_and_never_zero():
    counts = Counter(patient_offset("a-long-date-shift-key", f"patient-{i}", 50) for i in range(10_000))
    assert set(counts) == set(range(-50, 0)) | set(range(1, 51))
    assert max(counts.values()) <= 2 * 10_000 / 100


def test_patient_scope_shifts_every_resource_of_a_patient_alike():
    e = engine(
        [rule("nodesByType('date')", "dateShift"), rule("nodesByType('dateTime')", "dateShift")],
        dateShiftKey="a-long-date-shift-key",
        dateShiftScope="patient",
    )
    patient = e.anonymize({"resourceType": "Patient", "id": "p7", "birthDate": "2000-01-10"})
    encounter = e.anonymize(
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p7"},
            "period": {"start": "2000-01-10"},
        }
    )
    assert patient["birthDate"] == encounter["period"]["start"] != "2000-01-10"


def test_patient_scope_is_the_same_across_files(tmp_path):
    import json

    from anonymizer.cli import main

    source = tmp_path / "in"
    source.mkdir()
    (source / "Patient.ndjson").write_text(
        json.dumps({"resourceType": "Patient", "id": "p1", "birthDate": "1990-03-04"}) + "\n"
    )
    (source / "Encounter.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Encounter",
                "id": "e1",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": "Patient/p1"},
                "period": {"start": "1990-03-04T10:00:00Z"},
            }
        )
        + "\n"
    )
    (source / "Claim.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Claim",
                "id": "c1",
                "status": "active",
                "use": "claim",
                "type": {"text": "x"},
                "patient": {"reference": "Patient/p1"},
                "created": "1990-03-04",
                "provider": {"display": "d"},
                "priority": {"text": "p"},
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "c"}}],
            }
        )
        + "\n"
    )
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "fhirPathRules": [
                    {"path": "Resource.id", "method": "cryptoHash"},
                    {"path": "nodesByType('date')", "method": "dateShift"},
                    {"path": "nodesByType('dateTime')", "method": "dateShift"},
                ],
                "parameters": {
                    "dateShiftScope": "patient",
                    "cryptoHashKey": "k" * 20,
                    "dateShiftKey": "d" * 20,
                },
            }
        )
    )
    assert main(["-i", str(source), "-o", str(tmp_path / "o"), "-c", str(config), "-b", "--quiet"]) == 0
    read = lambda name: json.loads((tmp_path / "o" / name).read_text())  # noqa: E731
    shifted = read("Patient.ndjson")["birthDate"]
    assert shifted != "1990-03-04"
    assert read("Encounter.ndjson")["period"]["start"] == shifted + "T00:00:00Z"
    assert read("Claim.ndjson")["created"] == shifted


def test_fold_is_the_reference_byte_loop():
    import random

    from anonymizer.methods.dateshift import _fold

    def reference(data: bytes) -> int:
        o = 0
        for b in data:
            o = (o * 131 + b) % 101
        return o

    draw = random.Random(7)
    for size in [*range(70), 200, 1000]:
        data = bytes(draw.randrange(256) for _ in range(size))
        assert _fold(data) == reference(data)


def _pattern_shift(value: str, days: int, reference_date) -> str | None:
    """The reference's algorithm as written (section 4.3), independent of the engine's short cuts."""
    from datetime import date, timedelta

    from anonymizer.methods.dates import DATETIME_PATTERN, older_than_limit, redact_partial, zero_time

    match = DATETIME_PATTERN.search(value)
    if match is not None and match[7] is not None:
        y, m, d = int(match[1]), int(match[5]), int(match[7])
        if not older_than_limit(reference_date, y, m, d):
            shifted = (date(y, m, d) + timedelta(days=days)).isoformat()
            return shifted + zero_time(match[8]) if match[8] else shifted
    return redact_partial(match, value, reference_date)


def test_shortcuts_agree_with_the_reference_algorithm():
    from anonymizer.methods.base import ResourceState

    e = engine(
        [rule("Observation.effective", "dateShift")],
        enablePartialDatesForRedact=True,
        dateShiftFixedOffsetInDays=-37,
    )
    action = e.plan_for("Observation").root["effectiveDateTime"].action
    # The reference date is 2026-01-01: the 89-year cutoff falls on 1936-01-01.
    heads = ["2015-02-07", "1935-12-31", "1936-01-01", "1936-01-02", "2016-02-29", "2000-03-01"]
    tails = ["", "T13:28:17Z", "T13:28:17.5+14:00", "T13:28:17+14:30", "T13:28:17.123456-13:59",
             "T13:28:17", "T13:28Z", "T13Z", "Z", "T23:59:60Z"]  # fmt: skip
    values = [h + t for h in heads for t in tails] + ["2015", "2015-02", "1930", "0001-01-01"]
    for value in values:
        state = ResourceState()
        got = action(value, state)
        assert got == _pattern_shift(value, -37, e.reference_date), value
