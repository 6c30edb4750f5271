"""The compiled core against the Python engine (the reference): the same output bytes, summary
counts and faults, on Microsoft's conformance fixtures, the Synthea export under every shipped
profile, the fault corpora, and 100,000 generated resources (tests/mutations.py) under four
configurations. Encrypted values carry a random IV: those outputs are compared decrypted."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from anonymizer import Engine, core, jsonio
from anonymizer.config import read_configuration_text
from anonymizer.engine import build_configuration
from anonymizer.errors import AnonymizerError
from anonymizer.lines import file_chunks
from anonymizer.methods.encrypt import decrypt
from anonymizer.stream import StreamRun, anonymize_stream
from tests import mutations, test_faults, test_hostile
from tests.conftest import CONFORMANCE, SYNTHEA
from tests.helpers import REFERENCE_DATE

pytestmark = pytest.mark.skipif(
    not core.available(), reason="the compiled core is not built (pip install . with a Rust toolchain)"
)

REPO = Path(__file__).resolve().parent.parent
PROFILES = sorted((REPO / "anonymizer" / "configs").glob("*.json"))
KEYS = {
    "cryptoHashKey": "differential-crypto-hash-key-0001",
    "dateShiftKey": "differential-date-shift-key-00001",
    "encryptKey": "0123456789abcdef0123456789abcdef",
}
EVERY_METHOD = {
    "fhirVersion": "R4",
    "processingErrors": "skip",
    "fhirPathRules": [
        {"path": "Patient.id", "method": "cryptoHash"},
        {"path": "Patient.name.family", "method": "encrypt"},
        {"path": "Patient.name.given", "method": "substitute", "replaceWith": "Anon"},
        {"path": "Patient.telecom", "method": "redact"},
        {"path": "nodesByType('Reference').reference", "method": "cryptoHash"},
        {"path": "nodesByType('Identifier').value", "method": "encrypt"},
        {"path": "Observation.valueQuantity.value", "method": "cryptoHash"},
        {"path": "nodesByType('Address').postalCode", "method": "redact"},
        {"path": "Resource.meta.lastUpdated", "method": "dateShift"},
        {"path": "nodesByType('date')", "method": "dateShift"},
        {"path": "nodesByType('dateTime')", "method": "redact"},
        {"path": "nodesByType('instant')", "method": "dateShift"},
        {"path": "nodesByType('Age').value", "method": "redact"},
        {"path": "Condition.code.text", "method": "substitute", "replaceWith": None},
        {"path": "Encounter.class", "method": "substitute", "replaceWith": {"code": "X"}},
        {"path": "nodesByName('display')", "method": "keep"},
        {"path": "nodesByType('string')", "method": "redact"},
    ],
    "parameters": {
        "dateShiftScope": "file",
        "enablePartialAgesForRedact": True,
        "enablePartialDatesForRedact": True,
        "enablePartialZipCodesForRedact": True,
        "restrictedZipCodeTabulationAreas": ["036", "059"],
    },
}


def engines(raw: Any, **options: Any) -> tuple[Engine, Engine]:
    """A Python engine and a core engine sharing one configuration (random keys included)."""
    config = build_configuration(raw, keys=KEYS, reference_date=REFERENCE_DATE, **options)
    return Engine(config, kind="python"), Engine(config, kind="core")


def run(engine: Engine, data: bytes, **options: Any) -> tuple[Any, ...]:
    """(output, summary without timing) of one stream, or the error it raised."""
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    stream = anonymize_stream(iter(chunks), engine, **options)
    try:
        output = b"".join(stream)
    except AnonymizerError as exc:
        return ("error", type(exc).__name__, str(exc))
    summary = stream.summary.to_dict(status="ok", engine=engine)
    del summary["elapsed_seconds"], summary["engine"]
    return output, summary


def _decrypted(output: bytes, key: str) -> list[Any]:
    """Each line parsed, with the values encrypt wrote decrypted (their IVs differ per run)."""

    def plain(value: Any) -> Any:
        if type(value) is dict:
            return {k: plain(v) for k, v in value.items()}
        if type(value) is list:
            return [plain(v) for v in value]
        if type(value) is str and len(value) >= 44:
            try:
                base64.b64decode(value, validate=True)
                return ("decrypted", decrypt(value, key))
            except (binascii.Error, AnonymizerError, ValueError):
                return value
        return value

    return [plain(jsonio.loads(line)) for line in output.splitlines()]


def assert_same(python: tuple, core_result: tuple, *, encrypted: bool = False) -> None:
    if python[0] == "error" or core_result[0] == "error":
        assert core_result == python
        return
    if encrypted:
        assert _decrypted(core_result[0], KEYS["encryptKey"]) == _decrypted(python[0], KEYS["encryptKey"])
    else:
        expected, got = python[0].splitlines(), core_result[0].splitlines()
        for number, (a, b) in enumerate(itertools.zip_longest(expected, got), 1):
            assert b == a, f"output line {number} differs"
    assert core_result[1] == python[1]


# -- the conformance fixtures ----------------------------------------------------------------------
def _cases() -> list[dict]:
    path = CONFORMANCE / "MANIFEST.json"
    if not path.exists():
        return []
    cases = json.loads(path.read_text())["cases"]
    return [c for c in cases if c["kind"] in ("compare", "error", "input-only")]


@pytest.mark.skipif(not _cases(), reason="../shared/conformance is not present beside the checkout")
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_conformance_fixtures(case: dict) -> None:
    config = CONFORMANCE / case["config"] if "config" in case else REPO / "anonymizer/configs/ms-sample.json"
    raw = read_configuration_text(config)
    try:
        python, compiled = engines(raw, allow_random_keys=True)
    except AnonymizerError:
        pytest.skip("a configuration both engines refuse (test_conformance checks the message)")
    text = (CONFORMANCE / case["input"]).read_bytes() if not case["input"].startswith("(inline") else b""
    if not text:
        pytest.skip("an inline input (the unit vectors)")
    documents = text.decode("utf-8-sig")
    lines = [documents] if case["kind"] != "input-only" else documents.splitlines()
    data = b"".join(jsonio.dumps_line(jsonio.loads_exact(line)) for line in lines if line.strip())
    encrypted = "encrypt" in (case.get("methods") or ())
    assert_same(run(python, data), run(compiled, data), encrypted=encrypted)


# -- the Synthea export under every shipped profile ------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_synthea_export_under_every_profile(profile: Path) -> None:
    if not SYNTHEA.is_dir():
        pytest.skip(f"{SYNTHEA} is not present (../shared beside the checkout holds the reference material)")
    python, compiled = engines(read_configuration_text(profile))
    for path in sorted(SYNTHEA.glob("*.ndjson")):
        data = path.read_bytes()
        context = {"file": path.name}
        assert_same(run(python, data, **context), run(compiled, data, **context))


def test_synthea_with_threads_and_small_reads() -> None:
    if not SYNTHEA.is_dir():
        pytest.skip(f"{SYNTHEA} is not present")
    python, compiled = engines(read_configuration_text(PROFILES[-1]))
    for path in sorted(SYNTHEA.glob("*.ndjson"))[:6]:
        expected = run(python, path.read_bytes())
        stream = anonymize_stream(file_chunks(path), compiled, threads=2)
        assert b"".join(stream) == expected[0]


# -- the fault corpora -----------------------------------------------------------------------------
@pytest.mark.parametrize("on_invalid_line", ["drop", "fail"])
def test_fault_corpora(on_invalid_line: str) -> None:
    hostile = [line for line, _ in test_hostile.corpus()]
    faults = [line for line, _ in test_faults.corpus()]
    fault_config = {
        "fhirPathRules": [{"path": "Resource.id", "method": "cryptoHash"}],
        "parameters": {"cryptoHashKey": "fault-corpus-hash-key"},
    }
    for raw, lines in ((test_hostile.config(), hostile), (fault_config, faults)):
        python, compiled = engines(raw)
        data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
        options = {"on_invalid_line": on_invalid_line, "max_line_bytes": 1 << 20}
        assert_same(run(python, data, **options), run(compiled, data, **options))
        for line in lines:  # one by one: under `fail` each line's own fault
            one = line if line.endswith(b"\n") else line + b"\n"
            assert_same(run(python, one, **options), run(compiled, one, **options))


# -- generated resources -------------------------------------------------------------------------------
GENERATED = 100_000


@pytest.fixture(scope="module")
def generated() -> bytes:
    return b"".join(mutations.generate(GENERATED))


CONFIGURATIONS = {
    "safe-harbor": lambda: read_configuration_text(REPO / "anonymizer/configs/safe-harbor.json"),
    "shifted-dates": lambda: read_configuration_text(REPO / "anonymizer/configs/shifted-dates.json"),
    "ms-sample": lambda: read_configuration_text(REPO / "anonymizer/configs/ms-sample.json"),
    "every-method": lambda: EVERY_METHOD,
}


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_generated_resources(generated: bytes, name: str) -> None:
    python, compiled = engines(CONFIGURATIONS[name]())
    options = {"file": "Generated.ndjson", "max_line_bytes": 1 << 16}
    expected, got = run(python, generated, **options), run(compiled, generated, **options)
    assert_same(expected, got, encrypted=name == "every-method")
    lines = generated.count(b"\n")
    assert lines == GENERATED and expected[1]["input"]["lines"] == GENERATED
    faults = sum(f["count"] for f in expected[1]["faults"].values())
    print(f"{name}: {lines} lines, {expected[1]['output']['resources']} written, {faults} faults")
    assert 0 < faults < lines // 2  # the mutations reach both the faults and the written path


def test_generated_lines_reach_the_core_mostly(generated: bytes, monkeypatch) -> None:
    """The mutations must not make every line fall back: most clean and odd lines stay in the core
    once the plan has grown (the Python engine builds it while it walks what fell back)."""
    _, compiled = engines(CONFIGURATIONS["safe-harbor"]())
    sample = generated[: generated.find(b"\n", 4_000_000) + 1]
    for _ in range(2):
        for _ in anonymize_stream([sample], compiled):
            pass
    handed_back = []
    real = StreamRun._guarded_line
    monkeypatch.setattr(
        StreamRun, "_guarded_line", lambda run, line: handed_back.append(1) or real(run, line)
    )
    stream = anonymize_stream([sample], compiled)
    for _ in stream:
        pass
    lines = stream.summary.lines
    print(f"{len(handed_back)} of {lines} generated lines fall back")
    assert lines > 2000 and len(handed_back) < lines // 3
