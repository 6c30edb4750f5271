"""The shipped Safe Harbor configuration over a real Synthea bulk export, through the command line."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, timedelta

from anonymizer.cli import main
from tests.conftest import SYNTHEA, need

CRYPTO_KEY = "synthea-test-crypto-hash-key"
DATE_KEY = "synthea-test-date-shift-key"
REFERENCE_DATE = date(2026, 1, 1)
RESTRICTED = {
    "036",
    "059",
    "102",
    "203",
    "205",
    "369",
    "556",
    "692",
    "821",
    "823",
    "878",
    "879",
    "884",
    "893",
}


def reference_offset(patient_id: str) -> int:
    """The reference's formula, written out independently: the sample configuration hashes
    Resource.id before the date rules, so the prefix is the hashed id."""
    prefix = hmac.new(CRYPTO_KEY.encode(), patient_id.encode(), hashlib.sha256).hexdigest()
    value = 0
    for byte in (prefix + DATE_KEY).encode():
        value = (value * 131 + byte) % 101
    return value - 50


def expected_birth_date(birth: str, offset: int) -> str | None:
    born = date.fromisoformat(birth)
    age = (
        REFERENCE_DATE.year
        - born.year
        - ((REFERENCE_DATE.month, REFERENCE_DATE.day) < (born.month, born.day))
    )
    return None if age > 89 else (born + timedelta(days=offset)).isoformat()


def test_safe_harbor_over_synthea_export(tmp_path, monkeypatch, capsys):
    source = need(SYNTHEA)
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", CRYPTO_KEY)
    monkeypatch.setenv("ANONYMIZER_DATE_SHIFT_KEY", DATE_KEY)
    out = tmp_path / "out"
    status = main(
        [
            "-i",
            str(source),
            "-o",
            str(out),
            "-b",
            "--reference-date",
            "2026-01-01",
            "--summary",
            str(tmp_path / "summary.json"),
            "--quiet",
        ]
    )
    assert status == 0
    for path in sorted(source.glob("*.ndjson")):
        written = (out / path.name).read_bytes()
        assert written.count(b"\n") == sum(1 for line in path.read_bytes().splitlines() if line.strip())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["output"]["resources"] == summary["input"]["lines"] == 10665
    assert summary["faults"] == {}

    before = [json.loads(line) for line in (source / "Patient.ndjson").read_text().splitlines()]
    after = [json.loads(line) for line in (out / "Patient.ndjson").read_text().splitlines()]
    assert len(before) == len(after) == 40
    for original, patient in zip(before, after, strict=True):
        assert all(set(name) <= {"use"} for name in patient.get("name", []))
        assert "telecom" not in patient
        assert all("value" not in identifier for identifier in patient.get("identifier", []))
        for address, source_address in zip(patient.get("address", []), original["address"], strict=True):
            assert set(address) <= {"state", "country", "postalCode"}
            if "postalCode" in address:
                zip_code = source_address["postalCode"]
                masked = "".join("0" if c.isdigit() else c for c in zip_code)
                kept = zip_code[:3] + "".join("0" if c.isdigit() else c for c in zip_code[3:])
                assert address["postalCode"] == (masked if zip_code[:3] in RESTRICTED else kept)
        offset = reference_offset(original["id"])
        assert patient.get("birthDate") == expected_birth_date(original["birthDate"], offset)
    # keys never reach the console
    captured = capsys.readouterr()
    assert CRYPTO_KEY not in captured.out + captured.err and DATE_KEY not in captured.out + captured.err


def test_generated_walk_code_equals_the_interpreter(monkeypatch):
    """Every Synthea line through the generated per-shape code and through the plain walker."""
    from datetime import date as _date

    from anonymizer import Engine, jsonio
    from anonymizer.cli import shipped_config

    lines = [
        line for path in sorted(need(SYNTHEA).glob("*.ndjson")) for line in path.read_bytes().splitlines()
    ]
    keys = {"cryptoHashKey": CRYPTO_KEY, "dateShiftKey": DATE_KEY}

    def run(reuse: bool = False) -> tuple[list[bytes], int]:
        engine = Engine.from_file(shipped_config(), keys=keys, reference_date=_date(2026, 1, 1))
        out = [
            jsonio.dumps_compact(engine.anonymize(jsonio.loads(line), source=line, reuse=reuse))
            for line in lines * 2
        ]
        compiled = sum(
            bool(f)
            for plan in engine._plans.values()
            for node in plan._nodes.values()
            for f in node.shapes.values()
        )
        return out, compiled

    generated, compiled = run()
    assert compiled > 100
    reused, _ = run(reuse=True)  # remembered subtrees (reuse.py) change nothing either
    assert reused == generated
    monkeypatch.setattr("anonymizer.walker.MAX_SHAPES", 0)
    interpreted, none = run()
    assert none == 0 and interpreted == generated
