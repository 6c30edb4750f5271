"""Hostile input, as a careless or malicious exporter would write it: lines nested past the depth
limit (valid FHIR among them), numbers no double holds or whose decimal text would run to a
billion digits, resourceTypes that are not types under minimumNecessary, broken text. Through the
command line (one worker and two), JSON mode and the function's handler on Azurite: every good
line is written exactly once, every bad line is classified at its absolute line number, the run
completes (exit 3, status succeeded), and no canary reaches output, summary, queue or log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from anonymizer import Engine
from anonymizer.bulk import BulkOptions, run_folder
from anonymizer.cli import shipped_config
from tests.conftest import queue_messages

REPO = Path(__file__).resolve().parent.parent
MAX_LINE = 20_000
KEY = "hostile-corpus-crypto-hash-key-01"


def canary(n: int) -> str:
    return f"ZQX{n:03d}CANARY"


def questionnaire(depth: int, mark: str) -> bytes:
    """A valid Questionnaire nested exactly `depth` levels deep (items within items: an array and
    an object per level), its canary in the innermost item's text."""
    inner: dict = {"linkId": "x", "type": "display", "text": mark}
    if depth % 2 == 0:
        inner["item"] = []  # one level more: the depth comes out exact
    text = json.dumps(inner)
    for _ in range((depth - 3 - (depth % 2 == 0)) // 2):
        text = '{"linkId":"x","type":"group","item":[' + text + "]}"
    line = '{"resourceType":"Questionnaire","status":"active","item":[' + text + "]}"
    assert _depth(json.loads(line)) == depth
    return line.encode()


def bundles(depth: int, mark: str) -> bytes:
    """Bundles in Bundles (entry array, entry, resource: three levels each)."""
    text = json.dumps({"resourceType": "Patient", "name": [{"family": mark}]})
    while _depth(json.loads(text)) + 3 <= depth:
        text = '{"resourceType":"Bundle","type":"collection","entry":[{"resource":' + text + "}]}"
    return text.encode()


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def nested_arrays(depth: int, mark: str) -> bytes:
    return (
        b'{"resourceType":"Patient","id":"'
        + mark.encode()
        + b'","x":'
        + b"[" * (depth - 1)
        + b"]" * (depth - 1)
        + b"}"
    )


def observation(value: str, mark: str) -> bytes:
    return (
        '{"resourceType":"Observation","status":"final","code":{"text":"' + mark + '"},'
        '"valueQuantity":{"value":' + value + "}}"
    ).encode()


def corpus() -> list[tuple[bytes, str | None]]:
    """(line, expected fault kind, or None for a line that must be written)."""
    big = "1" + "2345678901" * 40  # 401 digits: plain decimal within the limit
    entries: list[tuple[bytes | str, str | None]] = [
        # nesting: the limit is 128 levels; Questionnaire items and Bundles are valid FHIR
        (lambda m: questionnaire(127, m), None),
        (lambda m: nested_arrays(254, m), "too_deep"),
        (lambda m: nested_arrays(255, m), "too_deep"),
        (lambda m: questionnaire(300, m), "too_deep"),
        (lambda m: bundles(300, m), "too_deep"),
        (lambda m: nested_arrays(1024, m), "too_deep"),
        (lambda m: nested_arrays(1025, m), "too_deep"),
        (lambda m: nested_arrays(5000, m), "too_deep"),
        (lambda m: questionnaire(129, m), "too_deep"),
        # numbers
        (lambda m: observation("1e-999999999", m), "number_out_of_range"),
        (lambda m: observation("1e-4000000000", m), "number_out_of_range"),
        (lambda m: observation("1e-99999999999", m), "number_out_of_range"),
        (lambda m: observation("1" + "0" * 1000, m), "number_out_of_range"),
        (lambda m: observation('"1e-999999999"', m), "number_out_of_range"),
        (lambda m: observation("1e400", m), None),
        (lambda m: observation(big, m), None),
        (lambda m: observation("-" + big + "." + big * 2, m), "number_out_of_range"),  # 1,203 digits
        (lambda m: observation("0." + "0" * 300 + "1", m), None),
        (lambda m: observation("NaN", m), "not_json"),
        (lambda m: observation("Infinity", m), "not_json"),
        (
            lambda m: observation("1e400", m)[:-2] + b',"note":[{"text":"\\ud800' + m.encode() + b'"}]}}',
            "not_json",
        ),
        # resourceType that names no type, under minimumNecessary
        (lambda m: '{"resourceType":"' + m + '"}', "unknown_resource_type"),
        (lambda m: '{"resourceType":{"name":"' + m + '"}}', "unknown_resource_type"),
        (lambda m: '{"resourceType":["' + m + '"]}', "unknown_resource_type"),
        (lambda m: '{"id":"' + m + '"}', "no_resource_type"),
        (lambda m: '{"resourceType":null,"id":"' + m + '"}', "no_resource_type"),
        (
            lambda m: '{"resourceType":"Patient","contained":[{"resourceType":"' + m + '"}]}',
            "unknown_resource_type",
        ),
        (
            lambda m: (
                '{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"'
                + m
                + '"}}]}'
            ),
            "unknown_resource_type",
        ),
        # broken text
        (lambda m: b'{"resourceType":"Patient","id":"' + m.encode() + b'\xff"}', "invalid_utf8"),
        (lambda m: b'\xef\xbb\xbf{"resourceType":"Patient","id":"' + m.encode() + b'"}', "not_json"),
        (lambda m: b'{"resourceType":"Patient","id":"' + m.encode() + b'\x01"}', "not_json"),
        (lambda m: '{"resourceType":"Patient","id":"x"} ' + m, "not_json"),
        (lambda m: '["' + m + '"]', "not_object"),
        (
            lambda m: '{"resourceType":"Patient","id":"' + m + '","x":"' + "a" * MAX_LINE + '"}',
            "line_too_long",
        ),
        # FHIR content
        (lambda m: '{"resourceType":"Patient","birthDate":"' + m + '"}', "invalid_fhir"),
        (lambda m: '{"resourceType":"Patient","' + m + '":1}', "invalid_fhir"),
        (
            lambda m: '{"resourceType":"Patient","multipleBirthInteger":1e400,"id":"' + m + '"}',
            "invalid_fhir",
        ),
        (lambda m: '{"resourceType":"Patient","name":[{"family":"' + m + '"}]}', None),
    ]
    lines = []
    for n, (make, kind) in enumerate(entries):
        raw = make(canary(n))
        lines.append((raw if isinstance(raw, bytes) else raw.encode(), kind))
    return lines


def config() -> dict:
    profile = json.loads(shipped_config().read_text())
    profile["parameters"]["cryptoHashKey"] = KEY
    profile["minimumNecessary"] = {"resourceTypes": ["Patient", "Observation", "Questionnaire", "Bundle"]}
    return profile


def _file(lines: list[tuple[bytes, str | None]], good_every: int = 1) -> bytes:
    """The corpus with a good line after each hostile one, and blank lines now and then."""
    out = []
    for n, (line, _) in enumerate(lines):
        out.append(line)
        out.append(b'{"resourceType":"Patient","id":"good%d","gender":"female"}' % n)
        if n % 7 == 0:
            out.append(b"  ")
    return b"\n".join(out) + b"\n"


def _expected(lines: list[tuple[bytes, str | None]], start: int = 1) -> tuple[dict[str, list[int]], int]:
    """Fault kind -> absolute line numbers, and how many lines must be written."""
    faults: dict[str, list[int]] = {}
    number, written = start, 0
    for n, (_, kind) in enumerate(lines):
        if kind:
            faults.setdefault(kind, []).append(number)
        else:
            written += 1
        written += 1  # the good line after it
        number += 2 + (n % 7 == 0)
    return faults, written


def _measured(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; its wall time and the peak RSS (MB) of it and its workers, measured by a
    wrapper process whose only children they are."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "started = time.monotonic()\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
        " file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},
    )
    *rest, figures = result.stderr.decode().rstrip("\n").rsplit("\n", 1)
    elapsed, peak = (float(x) for x in figures.split())
    result.stderr = "\n".join(rest).encode()
    print(f"corpus through the command line: {elapsed:.2f} s, peak RSS {peak:.0f} MB")
    return result, elapsed, peak


def _no_canary(text: str, count: int) -> None:
    leaked = [canary(n) for n in range(count) if canary(n) in text]
    assert leaked == [], leaked


def _check_summary(summary: dict, lines, file: str) -> None:
    faults, _ = _expected(lines)
    got = {k: [(w["file"], w["line"]) for w in v["first_lines"]] for k, v in summary["faults"].items()}
    assert got == {k: [(file, n) for n in v[:10]] for k, v in faults.items()}
    assert {k: v["count"] for k, v in summary["faults"].items()} == {k: len(v) for k, v in faults.items()}
    assert set(summary["input"]["resources_by_type"]) <= {"Patient", "Observation", "Questionnaire", "Bundle"}


def test_corpus_has_the_hostile_lines_the_issue_names():
    lines = corpus()
    kinds = [kind for _, kind in lines]
    assert len([k for k in kinds if k]) >= 30
    assert {"too_deep", "number_out_of_range", "unknown_resource_type", "no_resource_type"} <= set(kinds)


@pytest.mark.parametrize("workers", [1, 2])
def test_command_line_over_the_corpus(tmp_path, workers):
    lines = corpus()
    source = tmp_path / "in"
    source.mkdir()
    (source / "Hostile.ndjson").write_bytes(_file(lines))
    (source / "Second.ndjson").write_bytes(_file(lines))  # a file per worker
    (tmp_path / "config.json").write_text(json.dumps(config()))
    command = [
        sys.executable,
        "-m",
        "anonymizer",
        *("-i", str(source), "-o", str(tmp_path / "out"), "-b", "-v"),
        *("-c", str(tmp_path / "config.json"), "--workers", str(workers)),
        *("--max-line-bytes", str(MAX_LINE), "--summary", str(tmp_path / "s.json")),
    ]
    result, elapsed, peak = _measured(command)
    assert result.returncode == 3, result.stderr.decode()[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "succeeded" and summary["files"]["failed"] == []
    faults, written = _expected(lines)
    assert summary["faults"]["too_deep"]["count"] == 2 * len(faults["too_deep"])
    for name in ("Hostile.ndjson", "Second.ndjson"):
        out = (tmp_path / "out" / name).read_bytes()
        assert out.count(b"\n") == written
        assert b'"value":1' + b"0" * 400 + b"}" in out  # 1e400 kept, in plain decimal
    # per kind, the first ten lines over both files, each with its file and absolute line number
    both = {
        k: [("Hostile.ndjson", n) for n in v] + [("Second.ndjson", n) for n in v] for k, v in faults.items()
    }
    got = {k: [(w["file"], w["line"]) for w in v["first_lines"]] for k, v in summary["faults"].items()}
    assert got == {k: v[:10] for k, v in both.items()}
    everything = result.stdout.decode() + result.stderr.decode() + (tmp_path / "s.json").read_text()
    everything += "".join(p.read_text(errors="replace") for p in (tmp_path / "out").iterdir())
    _no_canary(everything, len(lines))
    assert "DEBUG" in result.stderr.decode()  # the debug log was on, and named no content
    assert elapsed < 10 and peak < 300, (elapsed, peak)


def test_split_ranges_give_absolute_line_numbers(tmp_path, caplog):
    lines = corpus()
    source = tmp_path / "in"
    source.mkdir()
    (source / "Hostile.ndjson").write_bytes(_file(lines))
    engine = Engine.from_dict(config())
    with caplog.at_level(logging.DEBUG):
        result = run_folder(
            engine,
            source,
            tmp_path / "out",
            BulkOptions(workers=2, split_bytes=1024, max_line_bytes=MAX_LINE),
        )
    summary = result.summary_dict(engine)
    _check_summary(summary, lines, "Hostile.ndjson")
    _no_canary(
        json.dumps(summary) + caplog.text + (tmp_path / "out" / "Hostile.ndjson").read_text(), len(lines)
    )


def test_json_mode_over_the_corpus(tmp_path, capsys):
    from anonymizer.cli import main

    lines = corpus()
    source = tmp_path / "in"
    source.mkdir()
    for n, (line, _) in enumerate(lines):
        if len(line) < MAX_LINE:  # (JSON mode has no line limit: a document is a file)
            (source / f"doc{n:03d}.json").write_bytes(line)
    (tmp_path / "config.json").write_text(json.dumps(config()))
    status = main(
        [
            *("-i", str(source), "-o", str(tmp_path / "out"), "-c", str(tmp_path / "config.json")),
            *("--summary", str(tmp_path / "s.json"), "-v"),
        ]
    )
    assert status == 1  # a bad document fails its file; the others are written
    summary = json.loads((tmp_path / "s.json").read_text())
    failed = {f["path"]: f["kind"] for f in summary["files"]["failed"]}
    for n, (line, kind) in enumerate(lines):
        name = f"doc{n:03d}.json"
        if len(line) >= MAX_LINE:
            continue
        if kind is None or line.startswith(b"\xef\xbb\xbf"):  # a BOM may start a document, not a line
            assert (tmp_path / "out" / name).exists() and name not in failed
        else:
            assert failed[name] == kind, name
    captured = capsys.readouterr()
    _no_canary(captured.out + captured.err + json.dumps(summary), len(lines))
    _no_canary("".join(p.read_text() for p in (tmp_path / "out").iterdir()), len(lines))


def test_handler_over_the_corpus_on_azurite(azure_env, tmp_path, caplog, monkeypatch):
    from anonymizer.azure.handler import Handler

    lines = corpus()
    (tmp_path / "config.json").write_text(json.dumps(config()))
    monkeypatch.setenv("ANONYMIZER_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("ANONYMIZER_MAX_LINE_BYTES", str(MAX_LINE))
    name = "2026-12-01T000000-job/Hostile-1-1.ndjson"
    blob = azure_env.service.get_container_client(azure_env.anonymizer_source_container).get_blob_client(name)
    blob.upload_blob(_file(lines))
    with caplog.at_level(logging.DEBUG):
        message = Handler().handle(blob)
    assert message["status"] == "succeeded", message.get("error")
    _check_summary(message, lines, name)
    written = (
        azure_env.service.get_container_client(azure_env.anonymizer_destination_container)
        .get_blob_client(name)
        .download_blob()
        .readall()
    )
    assert written.count(b"\n") == _expected(lines)[1]
    _no_canary(json.dumps(queue_messages(azure_env)) + caplog.text + written.decode(), len(lines))
