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
from tests.conftest import AZURE_CRYPTO_KEY, SYNTHEA, need

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
    arguments = [
        "verify",
        str(SYNTHEA),
        str(out),
        "--json",
        "--html",
        str(tmp_path / "r.html"),
        "--min-k",
        "0",
    ]
    assert main(arguments) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leaks"] == 0 and report["passed"]
    assert report["resources"]["Patient"] == [40, 40]
    assert report["elements"]["Patient"]["name"] == [40, 40, "present"]
    assert report["elements"]["Patient"]["telecom"] == [40, 0, "removed"]
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
    kinds = sorted((f["kind"], f["path"]) for f in report.findings.listed)
    assert kinds == [("date_not_shifted", "Patient.birthDate"), ("name", "Observation.note[0].text")]
    assert [f["kind"] for f in report.non_subject.listed] == ["city"]
    name = next(f for f in report.findings.listed if f["kind"] == "name")
    assert name["value"] == mask("name", "seen by QUILLFEATHER")
    assert mask("name", "abc") == "name:" + hashlib.sha256(b"abc").hexdigest()[:8]


def _patients(n: int, id_prefix: str = "p", postal: str = "05401") -> list[dict]:
    """n patients of one quasi-identifier class; an output's have other ids and a ZIP of 3 digits."""
    patient = {"gender": "male", "birthDate": "1980", "address": [{"state": "VT", "postalCode": postal}]}
    return [{"resourceType": "Patient", "id": f"{id_prefix}-{i:04d}", **patient} for i in range(n)]


def test_k_is_enforced_by_default_and_min_k_0_only_reports(tmp_path, capsys):
    source, dest = tmp_path / "s", tmp_path / "d"
    _write(source, "Patient.ndjson", _patients(7))
    _write(
        dest, "Patient.ndjson", [*_patients(6, "x", "054"), {"resourceType": "Patient", "gender": "female"}]
    )
    assert main(["verify", str(source), str(dest)]) == 1  # k = 1 < 5, the default
    out = capsys.readouterr().out
    assert "FAILED" in out and "k = 1: 1 of 7 patient(s) sit in 1 class(es) smaller than 5" in out
    assert main(["verify", str(source), str(dest), "--min-k", "0", "--json"]) == 0
    risk = json.loads(capsys.readouterr().out)["risk"]
    assert risk["k"] == 1 and risk["patients_below_threshold"] == 1 and risk["min_k"] == 0
    assert risk["class_sizes"] == {"1": 1, "6": 6}
    # the combination driving the small class: gender alone already isolates the woman
    drivers = {tuple(d["quasi_identifiers"]): d["patients_below"] for d in risk["drivers"]}
    assert drivers[("gender",)] == 1 and drivers[("state",)] == 1  # (her state is missing)
    assert drivers[("birth year",)] == 1
    # every class of 5 or more: passes by default
    _write(dest, "Patient.ndjson", _patients(7, "x", "054"))
    assert main(["verify", str(source), str(dest)]) == 0


def test_a_small_population_is_explained(tmp_path, capsys):
    source, dest = tmp_path / "s", tmp_path / "d"
    people = [{"resourceType": "Patient", "gender": "male", "birthDate": str(1950 + i)} for i in range(4)]
    _write(source, "Patient.ndjson", people)
    _write(dest, "Patient.ndjson", people)
    assert main(["verify", str(source), str(dest)]) == 1
    out = capsys.readouterr().out
    assert "The population is small for k = 5: 4 patient(s) fall into 4 classes" in out
    assert "--min-k 0" in out


def test_swapped_arguments_are_refused(tmp_path, keys, capsys):
    out = _anonymize(tmp_path)
    capsys.readouterr()
    assert main(["verify", str(out), str(SYNTHEA)]) == 2
    message = capsys.readouterr().err
    assert "are the arguments swapped?" in message and "security labels" in message


def test_unrelated_arguments_are_refused(tmp_path, capsys):
    source, dest = tmp_path / "s", tmp_path / "d"
    _write(source, "Patient.ndjson", _patients(5))
    _write(dest, "Patient.ndjson", _patients(9, "x", "054"))
    assert main(["verify", str(source), str(dest)]) == 2
    assert "more Patient resources (9) than the source (5)" in capsys.readouterr().err
    _write(dest, "Patient.ndjson", [])
    assert main(["verify", str(source), str(dest)]) == 2
    assert "the destination holds no resources" in capsys.readouterr().err


def test_element_outcomes_on_the_default_profile(tmp_path, keys, capsys):
    out = _anonymize(tmp_path)
    capsys.readouterr()
    assert main(["verify", str(SYNTHEA), str(out), "--json", "--min-k", "0"]) == 0
    patient = json.loads(capsys.readouterr().out)["elements"]["Patient"]
    assert patient["name.family"][2] == "removed"
    assert patient["id"][2] == "transformed"  # hashed
    assert patient["birthDate"][2] == "transformed"  # years only
    assert patient["gender"][2] == "kept"
    assert patient["maritalStatus.coding.code"][2] == "kept"
    assert patient["meta.security.code"][2] == "added"


def test_value_sketch_estimates_kept_share_within_a_fixed_size():
    from anonymizer.verify import ValueSketch

    sketch = ValueSketch(size=64)
    for n in range(10_000):
        sketch.add(f"value-{n}")
    assert len(sketch.kept) == 64
    told = [sketch.covers(f"value-{n}") for n in range(5_000)] + [
        sketch.covers(f"other-{n}") for n in range(5_000)
    ]
    decided = [c for c in told if c is not None]
    share = sum(decided) / len(decided)
    assert 0.3 < share < 0.7  # half the output values are source values


def test_bloom_filter_matches_are_confirmed_against_the_source(tmp_path):
    from anonymizer.verify import BloomFilter

    ids = BloomFilter(bits=1 << 10, probes=2)  # tiny: it says yes wrongly, often
    for n in range(300):
        ids.add(f"source-id-{n}")
    assert all(f"source-id-{n}" in ids for n in range(300))
    wrong = [text for text in (f"other-{n}" for n in range(300)) if text in ids]
    assert wrong  # the filter alone would report these...
    source, dest = tmp_path / "s", tmp_path / "d"
    _write(
        source,
        "Observation.ndjson",
        [{"resourceType": "Observation", "id": f"source-id-{n}"} for n in range(300)],
    )
    _write(dest, "Observation.ndjson", [{"resourceType": "Observation", "id": text} for text in wrong[:50]])
    import anonymizer.verify as verify_module

    original = verify_module.SubjectValues.__dataclass_fields__["ids"].default_factory
    try:
        verify_module.SubjectValues.__dataclass_fields__["ids"].default_factory = lambda: BloomFilter(
            1 << 10, 2
        )
        report = verify(read_folder(source), read_folder(dest), min_k=0)
    finally:
        verify_module.SubjectValues.__dataclass_fields__["ids"].default_factory = original
    assert report.leaks == 0  # ...but none is a source id: the second read drops them
    _write(dest, "Observation.ndjson", [{"resourceType": "Observation", "id": "source-id-7"}])
    report = verify(read_folder(source), read_folder(dest), min_k=0)
    assert report.findings.by_kind() == {"resource_id": 1}


def test_containers_with_the_run_identity_from_the_destination_metadata(azure_env, capsys):
    """verify container:SOURCE container:DEST after the handler ran: the same report as on folders,
    and the run's identity (configuration digest, key fingerprint, engine version, reference date)
    read from the destination blobs' metadata."""
    source = azure_env.service.get_container_client(azure_env.anonymizer_source_container)
    for path in sorted(need(SYNTHEA).glob("*.ndjson"))[:6]:
        source.upload_blob(f"job/{path.name}", path.read_bytes())
    assert main(["watch", "--once"]) == 0
    capsys.readouterr()
    arguments = [
        f"container:{azure_env.anonymizer_source_container}/job/",
        f"container:{azure_env.anonymizer_destination_container}/job/",
        "--json",
        "--min-k",
        "0",
    ]
    assert main(["verify", *arguments]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leaks"] == 0 and sum(a for a, _ in report["resources"].values()) > 100
    identity = report["identity"]
    assert re.fullmatch(r"[0-9a-f]{64}", identity["config_digest"])
    assert identity["reference_date"] == "2026-01-01" and identity["engine_version"]
    assert AZURE_CRYPTO_KEY not in json.dumps(report)


def test_progress_on_a_terminal(tmp_path):
    """Under a pseudo-terminal verify shows the bytes read of both sides, to the last."""
    from tests.helpers import run_on_terminal

    source, dest = tmp_path / "s", tmp_path / "d"
    _write(source, "Patient.ndjson", _patients(3000))
    _write(dest, "Patient.ndjson", _patients(3000, "x", "054"))
    total = sum(p.stat().st_size for p in [source / "Patient.ndjson", dest / "Patient.ndjson"])
    status, output = run_on_terminal(["verify", str(source), str(dest)], {"PATH": "/usr/bin:/bin"})
    assert status == 0
    megabytes = f"{total / 1e6:.1f}"
    assert re.search(rf"\r{re.escape(megabytes)} / {re.escape(megabytes)} MB \(100%\)", output)
