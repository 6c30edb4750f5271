"""The shipped profiles over the real Synthea export: the default (`safe-harbor.json`) is Safe Harbor
proper (verify finds nothing, clinical codes stay, no date is more precise than a year) and
`shifted-dates.json` shifts every subject's dates by a per-patient offset, never by none."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from anonymizer import Engine
from anonymizer.cli import main, shipped_config
from tests.conftest import SYNTHEA, need

KEYS = {
    "ANONYMIZER_CRYPTO_HASH_KEY": "profiles-crypto-hash-key-0001",
    "ANONYMIZER_DATE_SHIFT_KEY": "profiles-date-shift-key-00001",
}
_DATE_PRECISE = re.compile(r"\d{4}-\d{2}")


@pytest.fixture
def keys(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def _run(tmp_path: Path, profile: str) -> Path:
    out = tmp_path / profile.removesuffix(".json")
    arguments = ["-i", str(need(SYNTHEA)), "-o", str(out), "-b", "--quiet", "--reference-date", "2026-01-01"]
    assert main([*arguments, "-c", str(shipped_config(profile))]) == 0
    return out


def _resources(folder: Path):
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            yield json.loads(line)


def _codings(resource: dict) -> list[tuple[str, str]]:
    found = []

    def visit(value, in_meta=False):
        if isinstance(value, dict):
            coding = isinstance(value.get("code"), str) and ("system" in value or "display" in value)
            if coding and not in_meta:
                found.append((value.get("system"), value["code"]))
            for key, child in value.items():
                visit(child, in_meta or key == "meta")
        elif isinstance(value, list):
            for child in value:
                visit(child, in_meta)

    visit(resource)
    return found


def _strings(value, path=""):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, f"{path}.{key}")
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child, path)
    elif isinstance(value, str):
        yield path, value


def _verify(source: Path, out: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["verify", str(source), str(out), "--json", "--min-k", "0"]) == 0  # leaks only: 40 patients
    return json.loads(capsys.readouterr().out)


def test_default_profile_is_safe_harbor_and_keeps_the_codes(tmp_path, keys, capsys):
    source = need(SYNTHEA)
    out = _run(tmp_path, "safe-harbor.json")
    report = _verify(source, out, capsys)
    assert report["leaks"] == 0 and report["findings"] == [] and report["non_subject"]["count"] == 0
    before = Counter(c for r in _resources(source) for c in _codings(r))
    after = Counter(c for r in _resources(out) for c in _codings(r))
    kept = sum(min(n, after[code]) for code, n in before.items())
    assert kept / sum(before.values()) >= 0.99  # what goes: codings inside extensions (race, ethnicity)
    precise = [
        (r["resourceType"], path)
        for r in _resources(out)
        for path, v in _strings(r)
        if _DATE_PRECISE.match(v)
    ]
    assert precise == []


def test_default_profile_keeps_years_and_removes_ages_over_89():
    engine = Engine.from_file(
        shipped_config(), keys={"cryptoHashKey": "k" * 32}, reference_date=date(2026, 1, 1)
    )
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"versionId": "3", "lastUpdated": "2024-05-06T07:08:09.123+00:00", "source": "#s1"},
        "birthDate": "1950-07-15",
        "deceasedDateTime": "2020-03-04T05:06:07Z",
        "address": [{"line": ["1 Main St"], "city": "Hull", "state": "MA", "postalCode": "02045"}],
    }
    out = engine.anonymize(patient)
    assert out["birthDate"] == "1950" and out["deceasedDateTime"] == "2020"
    assert out["address"] == [{"state": "MA", "postalCode": "02000"}]
    assert set(out["meta"]) == {"security"}  # lastUpdated, versionId and source removed
    old = engine.anonymize({**patient, "birthDate": "1935-07-15"})
    assert "birthDate" not in old  # over 89 on the reference date
    restricted = engine.anonymize({**patient, "address": [{"postalCode": "03601"}]})
    assert restricted["address"] == [{"postalCode": "00000"}]
    observation = engine.anonymize(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}],
                "text": "Temp taken by Dr. Nurse",
            },
            "valueQuantity": {"value": 37.1, "unit": "Cel"},
            "note": [{"text": "patient Jane said ..."}],
        }
    )
    assert observation["code"] == {
        "coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}]
    }
    assert observation["valueQuantity"] == {"value": 37.1, "unit": "Cel"} and "note" not in observation


def test_shifted_dates_shift_every_subject_and_keep_intervals(tmp_path, keys, capsys):
    source = need(SYNTHEA)
    out = _run(tmp_path, "shifted-dates.json")
    report = _verify(source, out, capsys)
    assert report["findings_by_kind"] == {} and report["leaks"] == 0  # no date_not_shifted either
    before = [json.loads(line) for line in (source / "Encounter.ndjson").read_text().splitlines()]
    after = [json.loads(line) for line in (out / "Encounter.ndjson").read_text().splitlines()]
    shifts: dict[str, set[int]] = {}
    for original, shifted in zip(before, after, strict=True):
        if "period" not in shifted:  # over 89 years before the reference date: removed
            assert original["period"]["start"] < "1937"
            continue
        start = date.fromisoformat(original["period"]["start"][:10])
        moved = date.fromisoformat(shifted["period"]["start"][:10])
        shifts.setdefault(shifted["subject"]["reference"], set()).add((moved - start).days)
    # one offset per patient (its intervals kept), never zero
    assert all(len(days) == 1 and 0 not in days for days in shifts.values())
    assert len({next(iter(days)) for days in shifts.values()}) > 1


def test_profiles_load_without_warnings_and_share_the_zip_list(caplog):
    keys = {"cryptoHashKey": "k" * 32, "dateShiftKey": "d" * 32}
    for name in ("safe-harbor.json", "shifted-dates.json", "flu-trends.json"):
        engine = Engine.from_file(shipped_config(name), keys=keys)
        assert engine.config.warnings == [], name
    zips = {
        name: json.loads(shipped_config(name).read_text())["parameters"]["restrictedZipCodeTabulationAreas"]
        for name in ("safe-harbor.json", "shifted-dates.json", "flu-trends.json")
    }
    assert len({tuple(z) for z in zips.values()}) == 1
    flu = [r for r in json.loads(shipped_config("flu-trends.json").read_text())["fhirPathRules"]]
    assert {"path": "nodesByType('Coding').display", "method": "keep"} in flu
