"""Every user mistake on the command line is one line on stderr and exit status 2, never a
traceback, and nothing is written; a single input file is accepted; `--version` and `--quiet`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anonymizer.cli import main

PATIENT = '{"resourceType":"Patient","id":"p1","gender":"male"}\n'


@pytest.fixture
def folders(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "Patient.ndjson").write_text(PATIENT)
    (tmp_path / "config.json").write_text(json.dumps({"fhirVersion": "R4", "fhirPathRules": []}))
    return source, tmp_path


def _one_line_error(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, captured.err
    assert "Traceback" not in err and captured.out == ""
    for needle in needles:
        assert needle in err, err
    return err


def _args(source: Path, tmp: Path, *more: str) -> list[str]:
    return ["-i", str(source), "-o", str(tmp / "out"), "-b", "-c", str(tmp / "config.json"), *more]


MISTAKES = [
    (["valdate", "-c", "x.json"], ["unknown command 'valdate'", "did you mean 'validate'?"]),
    (
        ["anonymise", "-i", "a"],
        ["unknown command 'anonymise'", "demo, validate, watch, verify, share, spark, export, status"],
    ),
    (["-o", "out"], ["the following arguments are required: -i/--inputFolder"]),
    (["-i", "{source}", "-o", "{tmp}/out", "--workers", "0"], ["--workers", "must be at least 1"]),
    (["-i", "{source}", "-o", "{tmp}/out", "--max-line-bytes", "abc"], ["--max-line-bytes", "abc"]),
    (
        ["-i", "{source}", "-o", "{tmp}/out", "--reference-date", "2026-13-01"],
        ["--reference-date", "YYYY-MM-DD"],
    ),
    (["-i", "{tmp}/missing", "-o", "{tmp}/out"], ["input", "missing does not exist"]),
    (["-i", "{source}", "-o", "{source}/out", "-b"], ["is inside the input folder"]),
    (["-i", "{source}/sub", "-o", "{source}", "-b"], ["is inside the output folder"]),
    (["-i", "{source}", "-o", "{source}"], ["Input and output folders are the same!"]),
    (["-i", "{source}", "-o", "{tmp}/config.json"], ["is a file; -o names a folder"]),
    (["-i", "{source}/Patient.ndjson", "-o", "{tmp}/out"], ["not a .json file", "-b for NDJSON"]),
    (["-i", "{source}/Patient.ndjson", "-o", "{source}", "-b"], ["would overwrite the input file"]),
    (
        ["-i", "{source}", "-o", "{tmp}/out", "--summary", "{tmp}/nowhere/s.json"],
        ["--summary", "does not exist"],
    ),
    (["-i", "{source}", "-o", "{tmp}/out", "--summary", "{tmp}"], ["--summary", "is a folder"]),
    (["-i", "{source}", "-o", "{tmp}/out", "-c", "{tmp}/nope.json"], ["Configuration file not found"]),
    (["-i", "{source}", "-o", "{tmp}/out", "-c", "{tmp}"], ["is a folder, not a file"]),
    (["validate", "-c", "{tmp}/nope.json"], ["Configuration file not found"]),
    (["verify", "{tmp}/a", "{tmp}/b"], ["is neither a folder nor container:NAME"]),
    (["demo", "--output", "{tmp}/config.json"], ["is a file"]),
    (["share", "--container", "research", "--expiry", "99999999999999999d"], ["--expiry", "at most 7d"]),
    (["share", "--container", "research", "--expiry", "8d"], ["at most 7 days"]),
    (["share", "--container", "research", "--expiry", "2h", "--ip", "not-an-ip"], ["--ip 'not-an-ip'"]),
    (
        ["share", "--container", "research", "--expiry", "2h", "--ip", "10.0.0.9-10.0.0.1"],
        ["starts after it ends"],
    ),
    (["share", "--container", "Research_1", "--expiry", "2h"], ["is not a container name"]),
    (["share", "--container", "research", "--expiry", "2h", "--permissions", "rw"], ["read and list only"]),
    (
        ["share", "--container", "research", "--expiry", "2h", "--user-delegation"],
        ["--user-delegation needs"],
    ),
]


@pytest.mark.parametrize(("arguments", "needles"), MISTAKES, ids=[" ".join(a)[:60] for a, _ in MISTAKES])
def test_mistake_is_one_line_and_exit_2(folders, capsys, monkeypatch, arguments, needles):
    source, tmp = folders
    (source / "sub").mkdir()
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")  # share: an account key
    argv = [a.format(source=source, tmp=tmp) for a in arguments]
    assert main(argv) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp / "out").exists()  # nothing written


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("ANONYMIZER_MAX_LINE_BYTES", "abc", "ANONYMIZER_MAX_LINE_BYTES must be a whole number, not 'abc'"),
        (
            "ANONYMIZER_ON_INVALID_LINE",
            "failx",
            "ANONYMIZER_ON_INVALID_LINE must be drop or fail, not 'failx'",
        ),
        (
            "ANONYMIZER_REFERENCE_DATE",
            "tomorrow",
            "ANONYMIZER_REFERENCE_DATE must be a date written YYYY-MM-DD",
        ),
    ],
)
def test_bad_settings_are_one_line_as_in_the_function(folders, capsys, monkeypatch, variable, value, needle):
    source, tmp = folders
    monkeypatch.setenv(variable, value)
    assert main(_args(source, tmp)) == 2
    _one_line_error(capsys, needle)


def test_a_single_input_file_is_accepted(folders, capsys, monkeypatch):
    source, tmp = folders
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", "single-file-crypto-hash-key-001")
    assert main(["-i", str(source / "Patient.ndjson"), "-o", str(tmp / "one"), "-b", "--quiet"]) == 0
    assert (tmp / "one" / "Patient.ndjson").read_text().count("\n") == 1
    assert capsys.readouterr() == ("", "")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("fhir-anonymize 0.1.0 (engine: ")


def test_console_names_the_file_and_line_to_look_at(folders, capsys):
    source, tmp = folders
    (source / "Bad.ndjson").write_text(PATIENT + "not json\n")
    assert main(_args(source, tmp)) == 3
    err = capsys.readouterr().err
    assert (
        "left out: 1 line(s), the first at Bad.ndjson:2 (not json); every kind and line: --summary FILE or -v"
        in err
    )
