"""The command line of docs/contract.md section 4: modes, options, exit statuses, and no key in any output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from anonymizer.cli import main

PATIENT = {
    "resourceType": "Patient",
    "id": "example",
    "name": [{"use": "official", "family": "Chalmers"}],
    "birthDate": "2000-01-01",
}
HASH_CONFIG = {
    "fhirVersion": "R4",
    "fhirPathRules": [
        {"path": "Resource.id", "method": "cryptoHash"},
        {"path": "nodesByType('HumanName')", "method": "redact"},
    ],
    "parameters": {"cryptoHashKey": ""},
}
SECRET = "a-very-secret-crypto-hash-key"


def _write_config(folder: Path, config: dict = HASH_CONFIG) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def folders(tmp_path):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    (source / "p.json").write_text(json.dumps(PATIENT))
    (source / "sub" / "q.json").write_text(json.dumps(PATIENT))
    (source / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n" + json.dumps(PATIENT))
    return source, tmp_path / "out"


def test_json_mode_writes_pretty_reference_format(folders, monkeypatch):
    source, out = folders
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", SECRET)
    assert main(["-i", str(source), "-o", str(out), "-c", str(_write_config(source.parent)), "--quiet"]) == 0
    text = (out / "p.json").read_text(encoding="utf-8")
    assert text.startswith('{\n  "resourceType": "Patient",\n  "id": "') and not text.endswith("\n")
    assert not (out / "sub").exists()  # not recursive
    assert not list(out.glob(".*.tmp"))


def test_bulk_recursive_and_skip(folders, monkeypatch):
    source, out = folders
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", SECRET)
    config = str(_write_config(source.parent))
    assert (
        main(
            [
                "--inputFolder",
                str(source),
                "--outputFolder",
                str(out),
                "--configFile",
                config,
                "--bulkData",
                "--quiet",
            ]
        )
        == 0
    )
    lines = (out / "Patient.ndjson").read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[2] == b"" and b'": ' not in lines[0]
    (out / "Patient.ndjson").write_text("untouched")
    assert main(["-i", str(source), "-o", str(out), "-c", config, "-r", "-s", "--quiet"]) == 0
    assert (out / "Patient.ndjson").read_text() == "untouched"
    assert (out / "sub" / "q.json").exists()


def test_missing_key_exits_2_naming_parameter_and_variable(folders, capsys):
    source, out = folders
    status = main(["-i", str(source), "-o", str(out), "-c", str(_write_config(source.parent))])
    err = capsys.readouterr().err
    assert status == 2
    assert "cryptoHashKey" in err and "ANONYMIZER_CRYPTO_HASH_KEY" in err
    assert not out.exists() or not any(out.iterdir())


def test_same_input_and_output_is_refused(folders):
    source, _ = folders
    assert main(["-i", str(source), "-o", str(source)]) == 2


def test_dropped_lines_exit_3_and_failing_file_exit_1(folders, monkeypatch):
    source, out = folders
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", SECRET)
    config = str(_write_config(source.parent))
    (source / "Bad.ndjson").write_text(json.dumps(PATIENT) + "\nnot json\n")
    assert main(["-i", str(source), "-o", str(out), "-c", config, "-b", "--quiet"]) == 3
    assert (out / "Bad.ndjson").read_text().count("\n") == 1
    assert (
        main(
            [
                "-i",
                str(source),
                "-o",
                str(out / "2"),
                "-c",
                config,
                "-b",
                "--quiet",
                "--on-invalid-line",
                "fail",
            ]
        )
        == 1
    )
    assert (out / "2" / "Patient.ndjson").exists() and not (out / "2" / "Bad.ndjson").exists()


def test_reference_date_option_changes_the_89_year_rule(folders, monkeypatch):
    source, out = folders
    config = {
        "fhirPathRules": [{"path": "Patient.birthDate", "method": "redact"}],
        "parameters": {"enablePartialDatesForRedact": True},
    }
    path = _write_config(source.parent, config)
    main(["-i", str(source), "-o", str(out), "-c", str(path), "--reference-date", "2089-12-31", "--quiet"])
    assert json.loads((out / "p.json").read_text())["birthDate"] == "2000"
    main(
        [
            "-i",
            str(source),
            "-o",
            str(out / "x"),
            "-c",
            str(path),
            "--reference-date",
            "2090-01-02",
            "--quiet",
        ]
    )
    assert "birthDate" not in json.loads((out / "x" / "p.json").read_text())


def test_config_resolution_from_environment(folders, monkeypatch, capsys):
    source, out = folders
    path = _write_config(source.parent, {"fhirPathRules": []})
    monkeypatch.setenv("ANONYMIZER_CONFIG", str(path))
    assert main(["-i", str(source), "-o", str(out)]) == 0
    assert f"configuration: {path}" in capsys.readouterr().err
    assert main(["-i", str(source), "-o", str(out / "quiet"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")  # --quiet: nothing but errors


def test_key_never_reaches_output_or_logs(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n{broken\n")
    config = _write_config(tmp_path)
    env = {"ANONYMIZER_CRYPTO_HASH_KEY": SECRET, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "anonymizer",
            "-i",
            str(source),
            "-o",
            str(tmp_path / "o"),
            "-c",
            str(config),
            "-b",
            "-v",
            "--summary",
            str(tmp_path / "s.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 3, result.stderr
    everything = result.stdout + result.stderr + (tmp_path / "s.json").read_text()
    everything += "".join(p.read_text() for p in (tmp_path / "o").iterdir())
    assert SECRET not in everything
    assert "broken" not in everything


def test_fhirpath_engine_is_imported_only_when_a_configuration_needs_it(tmp_path):
    """Importing fhirpathpy costs about 25 ms of every start (each worker, each cold function),
    `cryptography` about 5 ms: the shipped Safe Harbor configuration decides every path in its
    plan and does not encrypt."""
    code = """
import sys
from anonymizer import Engine
from anonymizer.cli import shipped_config
keys = {"cryptoHashKey": "k" * 32, "dateShiftKey": "d" * 32, "encryptKey": "e" * 32}
Engine.from_file(shipped_config(), keys=keys).anonymize({"resourceType": "Patient", "id": "p"})
print("fhirpathpy" in sys.modules or "cryptography" in sys.modules)
dynamic = {"fhirPathRules": [{"path": "Patient.name.where(use = 'official')", "method": "redact"}]}
out = Engine.from_dict(dynamic).anonymize(
    {"resourceType": "Patient", "name": [{"use": "official", "family": "X"}, {"family": "Y"}]})
print("fhirpathpy" in sys.modules, [n.get("family") for n in out["name"]])
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["False", "True ['Y']"]


def test_demo_runs_on_the_embedded_export(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "RANDOM DEMO KEYS" in out and '"status": "succeeded"' in out and "... and after" in out
    assert len(list((tmp_path / "demo").rglob("*.ndjson"))) == 5


def test_validate_reports_typos_and_missing_keys(tmp_path, capsys, caplog):
    from anonymizer.cli import shipped_config

    with caplog.at_level(logging.ERROR):
        assert main(["validate", "-c", str(shipped_config("ms-sample.json"))]) == 0  # keys: at run time
    out = capsys.readouterr().out
    assert "notAvaliable" in out and "to set at run time: cryptoHashKey" in out
    assert "ANONYMIZER_CRYPTO_HASH_KEY" in out and "1 resource in 101" in out
    assert main(["validate", "-c", str(shipped_config("ms-sample.json")), "--require-keys"]) == 2
    assert main(["validate", "-c", str(shipped_config("ms-sample.json")), "--strict"]) == 2
    good = _write_config(
        tmp_path, {"fhirVersion": "R4", "fhirPathRules": [{"path": "Patient.name", "method": "redact"}]}
    )
    assert main(["validate", "-c", str(good), "--strict", "--require-keys"]) == 0


def test_validate_reports_unknown_methods_and_weak_keys(tmp_path, capsys):
    config = _write_config(
        tmp_path,
        {
            "fhirPathRules": [
                {"path": "Patient.name", "method": "mask"},
                {"path": "Resource.id", "method": "cryptoHash"},
            ],
            "parameters": {"cryptoHashKey": "short"},
        },
    )
    assert main(["validate", "-c", str(config)]) == 2
    out = capsys.readouterr().out
    assert "Unknown anonymization method 'mask' in rule 1 (Patient.name): use one of keep" in out
    config.write_text(
        json.dumps(
            {
                "fhirPathRules": [{"path": "Resource.id", "method": "cryptoHash"}],
                "parameters": {"cryptoHashKey": "short"},
            }
        )
    )
    assert main(["validate", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "cryptoHashKey is shorter than 16 bytes" in out and "short\n" not in out
