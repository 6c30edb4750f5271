"""Minimum necessary: resource allow-list, per-type filters, element allow-lists, the flu profile."""

from __future__ import annotations

import json
import logging
import re

import pytest

from anonymizer import ConfigurationError, Engine
from anonymizer.cli import main, shipped_config
from anonymizer.engine import build_configuration
from tests.conftest import SYNTHEA, need

KEYS = {"cryptoHashKey": "flu-profile-test-hash-key"}


@pytest.fixture(scope="module")
def flu():
    return Engine.from_file(shipped_config("flu-trends.json"), keys=KEYS)


def _immunization(code: str, system: str = "http://hl7.org/fhir/sid/cvx") -> dict:
    return {
        "resourceType": "Immunization",
        "id": "i1",
        "status": "completed",
        "patient": {"reference": "Patient/p"},
        "vaccineCode": {"coding": [{"system": system, "code": code}]},
        "occurrenceDateTime": "2021-10-04",
    }


def _condition(code: str, system: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": system, "code": code}]},
        "onsetDateTime": "2022-01-03T10:00:00Z",
    }


def _observation(code: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260373001"}]},
    }


ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"


@pytest.mark.parametrize(
    ("resource", "kept"),
    [
        (_immunization("140"), True),
        (_immunization("05"), False),
        (_immunization("140", "http://other"), False),
        (_condition("J10.1", ICD), True),
        (_condition("J12.9", ICD), False),
        (_condition("6142004", SNOMED), True),
        (_condition("J09.X2", ICD), True),
        (_observation("92142-9"), True),
        (_observation("94500-6"), False),
    ],
)
def test_flu_filters_keep_influenza_and_drop_near_misses(flu, resource, kept):
    assert (flu.drop_reason(resource) is None) is kept
    assert (flu.anonymize(resource) is not None) is kept


def test_types_not_listed_are_dropped(flu):
    assert flu.drop_reason({"resourceType": "Claim"}) == "type_not_listed"


def test_elements_outside_the_allow_list_are_removed(flu):
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "gender": "female",
        "birthDate": "1970-06-01",
        "extension": [{"url": "http://example.org/new-extension", "valueString": "leak"}],
        "name": [{"family": "Leak"}],
        "telecom": [{"system": "phone", "value": "555"}],
        "address": [{"line": ["1 Main"], "city": "Town", "state": "VT", "postalCode": "05401"}],
        "maritalStatus": {"text": "M"},
    }
    out = flu.anonymize(patient)
    assert set(out) == {"resourceType", "id", "gender", "birthDate", "address", "meta"}
    assert out["address"] == [{"state": "VT", "postalCode": "05400"}] and out["birthDate"] == "1970"
    assert "leak" not in json.dumps(out).lower()
    immunization = flu.anonymize({**_immunization("140"), "lotNumber": "LOT-1", "note": [{"text": "n"}]})
    assert "lotNumber" not in immunization and "note" not in immunization
    assert immunization["occurrenceDateTime"] == "2021"


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        ({"resourceTypes": ["Patient"], "filter": {}}, "unknown key"),
        ({"resourceTypes": ["Patinet"]}, "not an R4 resource type"),
        ({"filters": {"Patient": "name.where("}}, "not valid FHIRPath"),
        ({"elements": {"Patient": ["nmae"]}}, "no element 'nmae'"),
        ({"resourceTypes": ["Patient"], "filters": {"Condition": "true"}}, "does not list"),
        ([], "must be an object"),
    ],
)
def test_extension_is_validated_strictly(extension, message):
    with pytest.raises(ConfigurationError, match=message):
        build_configuration({"fhirPathRules": [], "minimumNecessary": extension})


def test_microsoft_files_load_unchanged_and_unknown_top_level_keys_warn(caplog):
    with caplog.at_level(logging.WARNING):
        config = build_configuration({"fhirPathRules": [], "studyNotes": {}})
    assert config.minimum is None and "studyNotes" in caplog.text
    # A misspelt allow-list would switch every filter off: refused, naming the key meant.
    for typo in ("minimumNecesary", "MinimumNecessary", "minimumnecessary"):
        with pytest.raises(ConfigurationError, match="minimumNecessary"):
            build_configuration({"fhirPathRules": [], typo: {}})


def test_flu_profile_over_synthea(tmp_path, monkeypatch):
    source = need(SYNTHEA)
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", KEYS["cryptoHashKey"])
    out = tmp_path / "out"
    status = main(
        [
            "-i",
            str(source),
            "-o",
            str(out),
            "-b",
            "-c",
            str(shipped_config("flu-trends.json")),
            "--quiet",
            "--summary",
            str(tmp_path / "s.json"),
        ]
    )
    assert status == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    written = {}
    for path in out.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            written.setdefault(resource["resourceType"], []).append(resource)
    assert set(written) <= {"Patient", "Immunization", "Condition", "Observation", "Encounter"}
    assert {"Patient", "Immunization", "Encounter"} <= set(written)
    cvx = json.loads(shipped_config("flu-trends.json").read_text())["minimumNecessary"]["filters"][
        "Immunization"
    ]
    flu_codes = set(re.findall(r"'(\d+)'", cvx))
    for immunization in written["Immunization"]:
        assert {c["code"] for c in immunization["vaccineCode"]["coding"]} & flu_codes
    full_date = re.compile(r'"\d{4}-\d{2}')
    for resources in written.values():
        for resource in resources:
            assert not full_date.search(json.dumps(resource)), resource
    dropped = summary["dropped"]
    assert dropped["Claim"]["type_not_listed"] > 0 and dropped["Immunization"]["filter"] > 0
    assert summary["output"]["resources_by_type"]["Immunization"] == len(written["Immunization"])
    total_dropped = sum(n for reasons in dropped.values() for n in reasons.values())
    assert summary["output"]["resources"] + total_dropped == summary["input"]["lines"]
    # ...and the Safe Harbor part of the profile passes verify
    assert main(["verify", str(source), str(out), "--json", "--min-k", "0"]) == 0  # leaks only: 40 patients
