"""Bulk mode with workers: files in parallel, large files split by byte ranges, same bytes out."""

from __future__ import annotations

import json
from datetime import date

from anonymizer import Engine
from anonymizer.bulk import BulkOptions, line_ranges, run_folder
from anonymizer.cli import main

KEYS = {"cryptoHashKey": "bulk-test-crypto-key-0001", "dateShiftKey": "bulk-test-date-key-0001"}


def _export(folder, patients=120):
    folder.mkdir()
    lines = []
    for n in range(patients):
        lines.append(
            json.dumps(
                {
                    "resourceType": "Patient",
                    "id": f"p{n}",
                    "birthDate": "1980-05-17",
                    "name": [{"family": f"F{n}", "given": ["G"]}],
                    "gender": "female",
                }
            )
        )
        lines.append(
            json.dumps(
                {
                    "resourceType": "Observation",
                    "id": f"o{n}",
                    "status": "final",
                    "code": {"text": "t"},
                    "subject": {"reference": f"Patient/p{n}"},
                    "effectiveDateTime": "2020-01-02T10:00:00Z",
                    "valueQuantity": {"value": 1.50 + n},
                }
            )
        )
    lines.insert(7, "not json at all")
    (folder / "Mixed.ndjson").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    (folder / "Small.ndjson").write_text(lines[0] + "\n")
    return folder


def _engine():
    from anonymizer.cli import shipped_config

    return Engine.from_file(shipped_config(), keys=KEYS, reference_date=date(2026, 1, 1))


def test_line_ranges_start_at_line_starts(tmp_path):
    source = _export(tmp_path / "in")
    path = source / "Mixed.ndjson"
    ranges = line_ranges(path, 4, split_bytes=1)
    data = path.read_bytes()
    assert len(ranges) == 4 and ranges[0][0] == 0 and ranges[-1][1] is None
    assert all(data[start - 1 : start] == b"\n" for start, _ in ranges[1:])


def test_output_identical_whatever_the_worker_count(tmp_path):
    source = _export(tmp_path / "in")
    engine = _engine()
    outputs = []
    for workers in (1, 2, 3):
        target = tmp_path / f"out{workers}"
        result = run_folder(engine, source, target, BulkOptions(workers=workers, split_bytes=1024))
        outputs.append({p.name: p.read_bytes() for p in target.iterdir()})
        assert result.summary.faults["not_json"].first_lines == [
            ("Mixed.ndjson", 8)
        ]  # absolute, BOM line counted
        assert result.summary.output_resources == 241
    assert outputs[0] == outputs[1] == outputs[2]
    assert not list((tmp_path / "out2").glob(".*"))


def test_workers_option_and_summary(tmp_path, monkeypatch):
    source = _export(tmp_path / "in")
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", KEYS["cryptoHashKey"])
    monkeypatch.setenv("ANONYMIZER_DATE_SHIFT_KEY", KEYS["dateShiftKey"])
    status = main(
        [
            "-i",
            str(source),
            "-o",
            str(tmp_path / "o"),
            "-b",
            "--workers",
            "2",
            "--quiet",
            "--summary",
            str(tmp_path / "s.json"),
        ]
    )
    assert status == 3
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["input"]["lines"] == 242 and summary["faults"]["not_json"]["count"] == 1
    assert summary["output"]["resources_by_type"] == {"Observation": 120, "Patient": 121}


def test_random_keys_are_made_once_and_shared_with_workers(tmp_path):
    source = _export(tmp_path / "in")
    from anonymizer.cli import shipped_config

    engine = Engine.from_file(shipped_config(), allow_random_keys=True)
    run_folder(engine, source, tmp_path / "o", BulkOptions(workers=2, split_bytes=1024))
    lines = (tmp_path / "o" / "Mixed.ndjson").read_text().splitlines()
    patient_ids = {json.loads(line)["id"] for line in lines if '"Patient"' in line}
    references = {
        json.loads(line)["subject"]["reference"].split("/")[1] for line in lines if '"Observation"' in line
    }
    assert references == patient_ids  # one hash key across all ranges


def test_progress_on_a_terminal_counts_bytes_over_files_and_workers(tmp_path):
    """Under a pseudo-terminal the run shows bytes done of the total, rate and time left; the last
    line reaches every byte although two worker processes read them (they report to the parent)."""
    import re

    from tests.helpers import run_on_terminal

    source = _export(tmp_path / "in", patients=3000)
    total = sum(p.stat().st_size for p in source.glob("*.ndjson"))
    _, text = run_on_terminal(
        ["-i", str(source), "-o", str(tmp_path / "o"), "-b"],
        {"PATH": "/usr/bin:/bin", "ANONYMIZER_CRYPTO_HASH_KEY": KEYS["cryptoHashKey"]},
    )
    megabytes = f"{total / 1e6:.1f}"
    assert re.search(
        rf"\r{re.escape(megabytes)} / {re.escape(megabytes)} MB \(100%\), [\d.]+ MB/s, 0:00:00 left", text
    )


def test_progress_line():
    from anonymizer.bulk import Progress

    progress = Progress(200_000_000, enabled=False)
    progress.add(50_000_000)
    progress.started -= 10  # 10 s for 50 MB: 5 MB/s, 30 s left
    assert progress.line() == "50.0 / 200.0 MB (25%), 5.0 MB/s, 0:00:30 left"
