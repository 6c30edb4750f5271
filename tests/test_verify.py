"""`fhir-anonymize verify`: zero findings on the Safe Harbor output, findings of exactly the right
kind when an identifying rule family is left out, and HTML agreeing with JSON."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path

import pytest

from anonymizer.cli import main, shipped_config
from anonymizer.verify import mask, read_folder, verify
from tests.conftest import SYNTHEA, need

KEYS = {
    "ANONYMIZER_CRYPTO_HASH_KEY": "verify-crypto-key-0000001",
    "ANONYMIZER_DATE_SHIFT_KEY": "verify-date-key-000001",
}
FAMILIES = {
    "HumanName": (["nodesByType('HumanName')"], {"name"}),
    "ContactPoint": (["nodesByType('ContactPoint')"], {"telecom"}),
    "Address": (["nodesByType('Address')"], {"address_line", "city", "postal_code"}),
    "Identifier value": (["nodesByType('Identifier').value"], {"identifier"}),
    "Resource.id": (["Resource.id"], {"resource_id"}),
    "Reference.reference": (["nodesByType('Reference').reference"], {"reference"}),
}


@pytest.fixture
def keys(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def _anonymize(tmp_path: Path, config: dict | None = None) -> Path:
    out = tmp_path / "out"
    arguments = ["-i", str(need(SYNTHEA)), "-o", str(out), "-b", "--quiet"]
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        arguments += ["-c", str(tmp_path / "config.json")]
    assert main(arguments) == 0
    return out


def test_safe_harbor_output_has_no_leaks_and_html_matches_json(tmp_path, keys, capsys):
    out = _anonymize(tmp_path)
    capsys.readouterr()
    assert main(["verify", str(SYNTHEA), str(out), "--json", "--html", str(tmp_path / "r.html")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leaks"] == 0 and report["passed"]
    assert report["resources"]["Patient"] == [40, 40]
    assert report["elements"]["Patient"]["name"] == [40, 40] and report["elements"]["Patient"]["telecom"] == [
        40,
        0,
    ]
    page = (tmp_path / "r.html").read_text()
    embedded = json.loads(
        html.unescape(re.search(r'<script type="application/json" id="report">(.*?)</script>', page, re.S)[1])
    )
    assert embedded == report
    assert re.search(r'id="leaks">(\d+)<', page)[1] == "0"
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no network resources


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_identifying_rule_family_left_out_is_found(tmp_path, keys, capsys, family):
    paths, kinds = FAMILIES[family]
    config = json.loads(shipped_config("ms-sample.json").read_text())
    config["fhirPathRules"] = [r for r in config["fhirPathRules"] if r["path"] not in paths]
    out = _anonymize(tmp_path, config)
    capsys.readouterr()
    assert main(["verify", str(SYNTHEA), str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report["findings_by_kind"]) == kinds
    finding = report["findings"][0]
    assert re.fullmatch(r"[a-z_]+:[0-9a-f]{8}", finding["value"]) and finding["line"] >= 1


def _write(folder: Path, name: str, resources: list[dict]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in resources))


def test_word_matches_non_subject_and_unshifted_dates(tmp_path, capsys):
    source, dest = tmp_path / "s", tmp_path / "d"
    _write(
        source,
        "Patient.ndjson",
        [
            {
                "resourceType": "Patient",
                "id": "p-1",
                "name": [{"family": "Quillfeather"}],
                "birthDate": "1961-03-14",
                "address": [{"city": "Springfield"}],
            }
        ],
    )
    _write(dest, "Patient.ndjson", [{"resourceType": "Patient", "id": "x", "birthDate": "1961-03-14"}])
    _write(
        dest,
        "Observation.ndjson",
        [{"resourceType": "Observation", "note": [{"text": "seen by QUILLFEATHER"}]}],
    )
    _write(dest, "Organization.ndjson", [{"resourceType": "Organization", "name": "Springfield Clinic"}])
    report = verify(read_folder(source), read_folder(dest))
    kinds = sorted((f["kind"], f["path"]) for f in report.findings)
    assert kinds == [("date_not_shifted", "Patient.birthDate"), ("name", "Observation.note[0].text")]
    assert [f["kind"] for f in report.non_subject] == ["city"]
    name = next(f for f in report.findings if f["kind"] == "name")
    assert name["value"] == mask("name", "seen by QUILLFEATHER")
    assert mask("name", "abc") == "name:" + hashlib.sha256(b"abc").hexdigest()[:8]


def test_min_k_fails_small_groups(tmp_path, capsys):
    source, dest = tmp_path / "s", tmp_path / "d"
    patient = {
        "resourceType": "Patient",
        "gender": "male",
        "birthDate": "1980",
        "address": [{"state": "VT", "postalCode": "05400"}],
    }
    _write(source, "Patient.ndjson", [{**patient, "address": [{"state": "VT", "postalCode": "05401"}]}])
    _write(
        dest, "Patient.ndjson", [patient, patient, patient, {"resourceType": "Patient", "gender": "female"}]
    )
    assert main(["verify", str(source), str(dest)]) == 0
    assert "warning: k = 1" in capsys.readouterr().out
    assert main(["verify", str(source), str(dest), "--min-k", "2", "--json"]) == 1
    risk = json.loads(capsys.readouterr().out)["risk"]
    assert risk["k"] == 1 and risk["patients_below_threshold"] == 1
