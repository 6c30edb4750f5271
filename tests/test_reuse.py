"""Reused subtrees (anonymizer/reuse.py): the same output as walking them, never for subtrees an
action touched whose result two equal values need not share, labels kept, memory bounded."""

from __future__ import annotations

from pathlib import Path

from anonymizer import jsonio
from anonymizer.cli import shipped_config
from anonymizer.reuse import CHECK_EVERY, ReusePool, remember
from tests.helpers import REFERENCE_DATE, engine, rule, shape_state

DEMO = Path(__file__).resolve().parent.parent / "anonymizer" / "demo" / "export"


def _safe_harbor():
    from anonymizer import Engine

    keys = {
        "cryptoHashKey": "reuse-test-crypto-key-0000000001",
        "dateShiftKey": "reuse-test-date-key-00000000001",
    }
    return Engine.from_file(shipped_config("ms-sample.json"), keys=keys, reference_date=REFERENCE_DATE)


def test_reuse_changes_no_byte_of_the_demo_export():
    lines = [line for path in sorted(DEMO.rglob("*.ndjson")) for line in path.read_bytes().splitlines()]
    assert len(lines) > 10

    def run(reuse: bool) -> list[bytes]:
        e = _safe_harbor()
        return [
            jsonio.dumps_compact(e.anonymize(jsonio.loads(line), source=line, reuse=reuse))
            for line in lines * 3
        ]

    assert run(reuse=True) == run(reuse=False)


def _observation(number: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{number}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
        "subject": {"reference": "Patient/p1", "display": "Jane Doe"},
        "effectivePeriod": {"start": "2019-01-02T10:00:00Z", "end": "2019-01-03T10:00:00Z"},
    }


def test_shifted_dates_follow_each_resource_not_the_first_one_seen():
    e = engine([rule("Observation.id", "cryptoHash"), rule("nodesByType('dateTime')", "dateShift")])
    first = e.anonymize(_observation(1), reuse=True)
    others = [e.anonymize(_observation(n), reuse=True) for n in range(2, 40)]
    assert len({o["effectivePeriod"]["start"] for o in [first, *others]}) > 1  # offsets differ by id
    assert others == [e.anonymize(_observation(n)) for n in range(2, 40)]


def test_a_reused_subtree_still_records_its_label():
    e = engine([rule("Observation.subject.display", "redact")])
    for number in range(5):
        out = e.anonymize(_observation(number), reuse=True)
        assert out["subject"] == {"reference": "Patient/p1"}
        assert [c["code"] for c in out["meta"]["security"]] == ["REDACTED"]
    node = shape_state(e, "Observation", "subject")
    assert node.hits == 4 and node.misses == 1  # interpreted or generated, each asks the cache


def test_a_remembered_output_is_shared_by_later_outputs():
    e = engine([rule("Observation.subject.display", "redact")])
    for number in range(2):  # the first walked and remembered, the second taken from the cache
        e.anonymize(_observation(number), reuse=True)
    first, second = (e.anonymize(_observation(n), reuse=True) for n in (2, 3))
    assert first["code"] is second["code"]  # shared: the stream serialises each at once
    assert first["meta"] is second["meta"]  # the labelled meta too (labels.py)
    third, fourth = (e.anonymize(_observation(n)) for n in (4, 5))  # without reuse
    assert third["code"] == first["code"] and third["code"] is not fourth["code"]
    assert third["meta"] is not fourth["meta"]


class _Node:
    def __init__(self) -> None:
        self.cache: dict | None = {}
        self.hits = self.misses = 0


def test_a_node_whose_subtrees_rarely_repeat_stops_caching():
    node, pool = _Node(), ReusePool(budget=1000)
    for number in range(CHECK_EVERY):
        remember(node, f'{{"n":{number}}}'.encode(), {"n": number}, 0, False, pool)
    assert node.cache is None
    remember(node, b"{}", None, 0, False, pool)  # stopped mid-walk (recursive types): no error


def test_varied_subtrees_and_large_ones_are_not_remembered():
    node, pool = _Node(), ReusePool(budget=1000)
    remember(node, b'{"a":1}', {"a": 2}, 0, True, pool)
    remember(node, b'{"a":"' + b"x" * 600 + b'"}', {"a": "x" * 600}, 0, False, pool)
    assert node.cache == {}


def test_the_pool_budget_starts_every_cache_afresh():
    pool = ReusePool(budget=100)
    first, second = pool.new_cache(), pool.new_cache()
    first[b"a"] = second[b"b"] = ({}, 0)
    pool.charge(60)
    assert first and second
    pool.charge(60)
    assert not first and not second and pool.used == 60
