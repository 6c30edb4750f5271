"""Microsoft's sample configuration (shipped as ms-sample.json) over a real Synthea bulk export, through
the command line, and the generated walk code against the interpreter."""

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


def test_microsoft_sample_over_synthea_export(tmp_path, monkeypatch, capsys):
    from anonymizer.cli import shipped_config

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
            "-c",
            str(shipped_config("ms-sample.json")),
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


def test_generated_walk_code_equals_the_interpreter():
    """Every Synthea line through the generated per-shape code and through the plain walker."""
    from datetime import date as _date

    from anonymizer import Engine, jsonio
    from anonymizer.cli import shipped_config

    lines = [
        line for path in sorted(need(SYNTHEA).glob("*.ndjson")) for line in path.read_bytes().splitlines()
    ]
    keys = {"cryptoHashKey": CRYPTO_KEY, "dateShiftKey": DATE_KEY}

    def run(reuse: bool = False, generated_code: bool = True) -> tuple[list[bytes], int]:
        engine = Engine.from_file(
            shipped_config("ms-sample.json"),
            keys=keys,
            reference_date=_date(2026, 1, 1),
            generated_code=generated_code,
        )
        out = [
            jsonio.dumps_compact(engine.anonymize(jsonio.loads(line), source=line, reuse=reuse))
            for line in lines * 2
        ]
        compiled = sum(len(node.shapes) for node in engine.runtime().nodes.values())
        return out, compiled

    generated, compiled = run()
    assert compiled > 100
    reused, _ = run(reuse=True)  # remembered subtrees (reuse.py) change nothing either
    assert reused == generated
    interpreted, none = run(generated_code=False)
    assert none == 0 and interpreted == generated


def _variant(value, rng):
    """A Synthea value with random edits an export may carry: elements dropped, set to null,
    padded with whitespace (.NET's and Python's), wrapped in a list, given a wrong type, an
    unknown name or a `_x` shadow, and keys swapped."""
    if type(value) is list:
        return [_variant(item, rng) for item in value if rng.random() > 0.05]
    if type(value) is not dict:
        return value
    items = []
    for key, item in value.items():
        draw = rng.random()
        if key == "resourceType" or draw >= 0.14:
            items.append((key, _variant(item, rng)))
        elif draw < 0.08:
            continue
        elif draw < 0.11:
            items.append((key, None))
        elif draw < 0.125:
            items.append((key, f"\x1f {item}\u00a0" if type(item) is str else [item]))
        elif draw < 0.13:
            items.append((key, 5 if type(item) is str else item))
        elif draw < 0.133:
            items.append(("unknown" + key, item))
        elif draw < 0.137:  # a shadow, after a value or a null
            items += [(key, item if draw < 0.135 else None), ("_" + key, {"id": "s"})]
        else:
            items.append((key, [item]))
    if len(items) > 2 and rng.random() < 0.05:
        i, j = rng.randrange(1, len(items)), rng.randrange(1, len(items))
        items[i], items[j] = items[j], items[i]
    return dict(items)


def test_generated_code_for_edited_variants_equals_the_interpreter():
    """Union code (shapes.py) meets many variants of each node's key sequence: every result or
    failure over edited Synthea resources equals the plain walker's."""
    import random

    import orjson

    from anonymizer import Engine, InvalidInputError, jsonio
    from anonymizer.cli import shipped_config

    rng = random.Random(7)
    originals = [
        json.loads(line)
        for path in sorted(need(SYNTHEA).glob("*.ndjson"))
        for line in path.read_bytes().splitlines()[:25]
    ]
    lines = [orjson.dumps(_variant(resource, rng)) for resource in originals for _ in range(8)]
    rng.shuffle(lines)
    keys = {"cryptoHashKey": CRYPTO_KEY, "dateShiftKey": DATE_KEY}

    def run(generated_code: bool = True) -> list:
        engine = Engine.from_file(
            shipped_config("ms-sample.json"),
            keys=keys,
            reference_date=REFERENCE_DATE,
            generated_code=generated_code,
        )
        out = []
        for line in lines:
            try:
                resource, exact = jsonio.parse(line)
                out.append(jsonio.dumps_compact(engine.anonymize(resource, source=line, reuse=not exact)))
            except InvalidInputError as exc:
                out.append(exc.kind)
        return out

    generated = run()
    assert 0 < sum(type(item) is not bytes for item in generated) < len(lines) // 2
    assert run(generated_code=False) == generated
