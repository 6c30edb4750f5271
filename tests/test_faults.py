"""The fault table of docs/contract.md section 7 over a corpus of bad lines, each with its own canary: every
bad line classified at its absolute line number, every good line written, and no canary in any
log record, summary or exception chain."""

from __future__ import annotations

import json
import logging

import pytest

from anonymizer import Engine
from anonymizer.cli import main
from anonymizer.stream import LineFault, anonymize_stream
from tests.helpers import REDACTED_PATIENT

GOOD = {"resourceType": "Patient", "id": "good", "gender": "male"}
MAX_LINE = 4000


def _canary(n: int) -> str:
    return f"CANARY{n:03d}XYZ"


def corpus() -> list[tuple[bytes, str | None]]:
    """(line, expected fault kind or None for a good or blank line)."""
    bad: list[tuple[str | bytes, str]] = []
    for text in [
        "{CANARY not json",
        '{"resourceType": "Patient", "id": "CANARY"',
        "CANARY",
        '{"resourceType": "Patient", "name": [{"family": "CANARY"}]]',
    ]:
        bad.append((text, "not_json"))
    bad += [
        ('["CANARY"]', "not_object"),
        ('"CANARY"', "not_object"),
        ("123", "not_object"),
        ('[{"resourceType":"Patient","id":"CANARY"}]', "not_object"),
    ]
    bad += [
        ('{"id": "CANARY"}', "no_resource_type"),
        ('{"name": [{"family": "CANARY"}]}', "no_resource_type"),
    ]
    bad += [
        ('{"resourceType": "CANARY"}', "unknown_resource_type"),
        ('{"resourceType": "DeviceComponent", "id": "CANARY"}', "unknown_resource_type"),
    ]
    bad += [
        ('{"resourceType": "Patient", "CANARY": 1}', "invalid_fhir"),
        ('{"resourceType": "Patient", "birthDate": "CANARY"}', "invalid_fhir"),
        ('{"resourceType": "Patient", "active": "CANARY"}', "invalid_fhir"),
        ('{"resourceType": "Patient", "multipleBirthInteger": "CANARY"}', "invalid_fhir"),
        ('{"resourceType": "Patient", "name": "CANARY"}', "invalid_fhir"),
        ('{"resourceType": "Patient", "name": [{"family": {"x": "CANARY"}}]}', "invalid_fhir"),
        (
            '{"resourceType": "Bundle", "type": "collection", "entry": '
            '[{"resource": {"resourceType": "Patient", "nope": "CANARY"}}]}',
            "invalid_fhir",
        ),
        ('{"resourceType": "Patient", "contained": [{"id": "CANARY"}]}', "no_resource_type"),
    ]
    bad += [
        (b'{"resourceType": "Patient", "id": "CANARY\xff\xfe"}', "invalid_utf8"),
        (b"\xc3\x28CANARY", "invalid_utf8"),
    ]
    bad += [('{"resourceType": "Patient", "id": "CANARY", "x": "' + "a" * MAX_LINE + '"}', "line_too_long")]
    lines: list[tuple[bytes, str | None]] = []
    for n, (text, kind) in enumerate(bad):
        raw = text if isinstance(text, bytes) else text.encode()
        lines.append((raw.replace(b"CANARY", _canary(n).encode()), kind))
        lines.append((json.dumps({**GOOD, "id": f"good{n}"}).encode(), None))
        if n % 5 == 0:
            lines.append((b"   ", None))
    return lines


def _all_text(exc: BaseException | None, seen=None) -> str:
    seen = seen or set()
    if exc is None or id(exc) in seen:
        return ""
    seen.add(id(exc))
    parts = [repr(exc), str(exc), repr(getattr(exc, "args", ())), repr(getattr(exc, "doc", ""))]
    return "".join(parts) + _all_text(exc.__cause__, seen) + _all_text(exc.__context__, seen)


@pytest.fixture
def engine():
    return Engine.from_dict(
        {
            "fhirPathRules": [{"path": "Resource.id", "method": "cryptoHash"}],
            "parameters": {"cryptoHashKey": "fault-corpus-hash-key"},
        }
    )


def test_corpus_is_classified_at_absolute_lines_and_leaks_nothing(engine, caplog):
    lines = corpus()
    kinds = {kind for _, kind in lines if kind}
    assert len([k for _, k in lines if k]) >= 20
    assert kinds == {
        "not_json",
        "not_object",
        "no_resource_type",
        "unknown_resource_type",
        "invalid_fhir",
        "invalid_utf8",
        "line_too_long",
    }
    data = b"\n".join(line for line, _ in lines) + b"\n"
    chunks = [data[i : i + 97] for i in range(0, len(data), 97)]
    with caplog.at_level(logging.DEBUG):
        run = anonymize_stream(chunks, engine, start_line=101, max_line_bytes=MAX_LINE)
        out = b"".join(run)
    expected: dict[str, list[int]] = {}
    for number, (_, kind) in enumerate(lines, start=101):
        if kind:
            expected.setdefault(kind, []).append(number)
    summary = run.summary.to_dict(status="succeeded", engine=engine)
    assert {k: v["first_lines"] for k, v in summary["faults"].items()} == {
        k: [{"file": "-", "line": n} for n in v[:10]] for k, v in expected.items()
    }
    assert out.count(b"\n") == sum(1 for _, kind in lines if kind is None and _.strip())
    assert summary["input"]["blank_lines"] == sum(1 for line, _ in lines if not line.strip())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for n in range(len(lines)):
        assert _canary(n) not in logged and _canary(n) not in json.dumps(summary)


def test_fail_mode_stops_at_the_line_without_content(engine):
    for line, kind in corpus():
        if not kind:
            continue
        data = json.dumps(GOOD).encode() + b"\n" + line + b"\n"
        with pytest.raises(LineFault) as info:
            b"".join(
                anonymize_stream(
                    [data], engine, on_invalid_line="fail", start_line=5, max_line_bytes=MAX_LINE
                )
            )
        assert (info.value.kind, info.value.line) == (kind, 6)
        text = _all_text(info.value)
        assert "CANARY" not in text, text


def test_command_line_exit_status_3_and_clean_logs(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    lines = corpus()
    (source / "Faults.ndjson").write_bytes(b"\n".join(line for line, _ in lines))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"fhirPathRules": [], "parameters": {}}))
    status = main(
        [
            "-i",
            str(source),
            "-o",
            str(tmp_path / "o"),
            "-c",
            str(config),
            "-b",
            "-v",
            "--max-line-bytes",
            str(MAX_LINE),
            "--summary",
            str(tmp_path / "s.json"),
        ]
    )
    assert status == 3
    captured = capsys.readouterr()
    everything = captured.out + captured.err + (tmp_path / "s.json").read_text()
    assert "CANARY" not in everything
    written = (tmp_path / "o" / "Faults.ndjson").read_text().splitlines()
    assert len(written) == sum(1 for line, kind in lines if kind is None and line.strip())


def test_processing_error_fails_the_file_at_its_line_unless_skipped(tmp_path):
    rules = [{"path": "Patient.name.family", "method": "generalize", "cases": {"$this >= 0": "1"}}]
    lines = [json.dumps(GOOD).encode(), json.dumps({**GOOD, "name": [{"family": "CANARY999"}]}).encode()]
    raising = Engine.from_dict({"fhirPathRules": rules})
    with pytest.raises(LineFault) as info:
        b"".join(anonymize_stream([b"\n".join(lines)], raising))
    assert (info.value.kind, info.value.line) == ("processing_error", 2)
    assert "CANARY" not in _all_text(info.value)
    skipping = Engine.from_dict({"fhirPathRules": rules, "processingErrors": "skip"})
    out = b"".join(anonymize_stream([b"\n".join(lines)], skipping)).splitlines()
    assert json.loads(out[1]) == REDACTED_PATIENT
