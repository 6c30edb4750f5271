"""Regular expressions from configurations run with a time limit per evaluation: a pattern that
backtracks without end on some value (ReDoS) ends that evaluation, which is then a processing
error per `processingErrors` (the file fails at that line under `raise`; the resource becomes the
empty resource, counted, under `skip`), and the run finishes. `validate` points such patterns out."""

from __future__ import annotations

import json
import time

import pytest

from anonymizer import Engine, ProcessingError
from anonymizer.cli import main
from anonymizer.fhirpath import REGEX_TIMEOUT_SECONDS
from anonymizer.stream import LineFault, anonymize_stream

CATASTROPHIC = "^(a|aa)+$"  # exponential in the `regex` engine too, on 'aaa...ab'
NAME = "a" * 40 + "b"


def _lines() -> bytes:
    patients = [
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "short"}]},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": NAME}]},
        {"resourceType": "Patient", "id": "p3", "name": [{"family": "aaaa"}]},
    ]
    return b"".join(json.dumps(p).encode() + b"\n" for p in patients)


def _generalize(processing_errors: str) -> dict:
    return {
        "processingErrors": processing_errors,
        "fhirPathRules": [
            {
                "path": "Patient.name.family",
                "method": "generalize",
                "cases": {f"$this.matches('{CATASTROPHIC}')": "'a-name'"},
                "otherValues": "keep",
            }
        ],
    }


def _filter(processing_errors: str) -> dict:
    return {
        "processingErrors": processing_errors,
        "fhirPathRules": [],
        "minimumNecessary": {"filters": {"Patient": f"name.family.matches('{CATASTROPHIC}').exists()"}},
    }


@pytest.mark.parametrize("make", [_generalize, _filter], ids=["generalize case", "minimumNecessary filter"])
def test_redos_under_raise_fails_the_file_at_its_line_within_the_limit(make):
    engine = Engine.from_dict(make("raise"))
    started = time.monotonic()
    with pytest.raises(LineFault) as info:
        b"".join(anonymize_stream([_lines()], engine))
    assert (info.value.kind, info.value.line) == ("processing_error", 2)
    assert time.monotonic() - started < 3 * REGEX_TIMEOUT_SECONDS


@pytest.mark.parametrize("make", [_generalize, _filter], ids=["generalize case", "minimumNecessary filter"])
def test_redos_under_skip_is_counted_and_the_run_goes_on(make):
    engine = Engine.from_dict(make("skip"))
    started = time.monotonic()
    run = anonymize_stream([_lines()], engine, file="Patient.ndjson")
    out = [json.loads(line) for line in b"".join(run).splitlines()]
    assert time.monotonic() - started < 3 * REGEX_TIMEOUT_SECONDS
    assert out[1] == {"resourceType": "Patient", "meta": {"security": [out[1]["meta"]["security"][0]]}}
    summary = run.summary.to_dict(status="succeeded", engine=engine)
    assert summary["skipped"] == {
        "processing_error": {"count": 1, "first_lines": [{"file": "Patient.ndjson", "line": 2}]}
    }
    assert summary["faults"] == {} and len(out) == 3


def test_the_issue_s_pattern_finishes_at_once_on_the_regex_engine():
    """`^(a+)+$` hangs Python's `re` on 35 characters; the `regex` package needs no limit for it."""
    engine = Engine.from_dict(
        {"fhirPathRules": [], "minimumNecessary": {"filters": {"Patient": "name.family.matches('^(a+)+$')"}}}
    )
    started = time.monotonic()
    assert engine.drop_reason({"resourceType": "Patient", "name": [{"family": "a" * 35 + "!"}]}) == "filter"
    assert time.monotonic() - started < 0.5


def test_a_dynamic_rule_past_the_limit_is_a_processing_error():
    engine = Engine.from_dict(
        {
            "fhirPathRules": [
                {"path": f"Patient.name.where(family.matches('{CATASTROPHIC}'))", "method": "redact"}
            ]
        }
    )
    with pytest.raises(ProcessingError, match="ran past its 1 s limit"):
        engine.anonymize({"resourceType": "Patient", "name": [{"family": NAME}]})


def test_validate_warns_about_nested_quantifiers(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"fhirVersion": "R4", **_generalize("raise")}))
    assert main(["validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: the regular expression '{CATASTROPHIC}' has nested quantifiers" in out
    assert main(["validate", "-c", str(path), "--strict"]) == 2
