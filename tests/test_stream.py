"""The streaming core's line splitting: the same lines, the same output and the same accounting
whatever the chunk boundaries (BOM, CRLF, blank lines, over-long lines across many chunks, a last
line without a newline, and a held-back incomplete last line)."""

from __future__ import annotations

import orjson
import pytest

from anonymizer import Engine
from anonymizer.stream import anonymize_stream
from anonymizer.summary import Summary

LIMIT = 200


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_dict({"fhirPathRules": [{"path": "Patient.name", "method": "redact"}]})


def _patient(n: int) -> bytes:
    return orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "name": [{"family": "F"}]})


def _input(last: bytes) -> bytes:
    long = b'{"resourceType": "Patient", "id": "' + b"x" * (3 * LIMIT) + b'"}'
    return b"\r\n".join(
        [
            b"\xef\xbb\xbf" + _patient(1),
            b"",
            b"  \t ",
            _patient(2),
            long,
            _patient(3),
            long + b"\r",
            _patient(4),
            last,
        ]
    )


def _run(data: bytes, size: int, engine: Engine, **options):
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    run = anonymize_stream(chunks, engine, max_line_bytes=LIMIT, **options)
    return b"".join(run), run


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 199, 200, 201, 10_000])
def test_chunk_boundaries_change_nothing(engine, size):
    data = _input(_patient(5))  # the last line has no newline
    output, run = _run(data, size, engine, input_complete=True)
    expected, _ = _run(data, len(data), engine, input_complete=True)
    assert output == expected
    assert [orjson.loads(line)["id"] for line in output.splitlines()] == ["p1", "p2", "p3", "p4", "p5"]
    assert b"\r" not in output and b'"name"' not in output
    assert run.consumed == len(data) and run.next_line == 10
    summary = run.summary
    assert (summary.lines, summary.blank_lines, summary.input_bytes) == (9, 2, len(data))
    assert summary.faults["line_too_long"].first_lines == [("-", 5), ("-", 7)]


@pytest.mark.parametrize("size", [1, 5, 97, 10_000])
def test_incomplete_last_line_is_held_back(engine, size):
    data = _input(_patient(5)[:-1])
    output, run = _run(data, size, engine, input_complete=False, start_line=11)
    assert [orjson.loads(line)["id"] for line in output.splitlines()] == ["p1", "p2", "p3", "p4"]
    assert run.consumed == data.rindex(b"\n") + 1  # up to the end of the last whole line
    assert run.next_line == 19  # lines 11..18 were read; the held-back one is next


def test_complete_unterminated_last_line_is_processed_when_more_may_come(engine):
    data = _input(_patient(5))
    output, run = _run(data, 13, engine, input_complete=False)
    assert orjson.loads(output.splitlines()[-1])["id"] == "p5"
    assert run.consumed == len(data)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_numbers_keep_their_text_whatever_the_line_ending(engine, ending):
    observation = b'{"resourceType":"Observation","status":"final","code":{"text":"t"},'
    plain, fraction = observation + b'"valueInteger":7}', observation + b'"valueQuantity":{"value":1.50}}'
    output, _ = _run(plain + ending + b"\n" + fraction + ending, 7, engine, input_complete=True)
    assert output.count(b'"valueInteger":7') == 1 and output.count(b'"valueQuantity":{"value":1.50}') == 1


def test_summary_counts_the_labels_written_also_when_merged():
    """Outputs share labelled metas, and the summary counts a meta's labels once per run of
    outputs sharing it: the counts must still equal the labels in the written lines, whatever
    the order of metas, and after partial summaries are merged (workers)."""
    engine = Engine.from_dict(
        {
            "fhirPathRules": [
                {"path": "Patient.name", "method": "redact"},
                {"path": "Resource.id", "method": "cryptoHash"},
            ]
        },
        keys={"cryptoHashKey": "summary-label-test-key-0123456789"},
    )
    metas = [None, {"tag": [{"code": "a"}]}, {"tag": [{"code": "b"}]}]
    lines = []
    for n, (meta, named, with_id) in enumerate(
        [(0, 1, 1), (0, 1, 1), (1, 1, 0), (1, 0, 1), (0, 0, 0), (2, 0, 0), (1, 0, 1), (0, 1, 1), (0, 1, 1)]
    ):
        resource: dict = {"resourceType": "Patient"}
        if with_id:
            resource["id"] = f"p{n}"
        if metas[meta] is not None:
            resource["meta"] = metas[meta]
        if named:
            resource["name"] = [{"family": "F"}]
        lines.append(orjson.dumps(resource) + b"\n")

    def written_labels(output: bytes) -> dict[str, int]:
        counts: dict[str, int] = {}
        for line in output.splitlines():
            for coding in orjson.loads(line).get("meta", {}).get("security", []):
                counts[coding["code"]] = counts.get(coding["code"], 0) + 1
        return counts

    run = anonymize_stream([b"".join(lines)], engine)
    output = b"".join(run)
    assert run.summary.labels == written_labels(output) == {"REDACTED": 5, "CRYTOHASH": 6}
    first = anonymize_stream([b"".join(lines[:4])], engine)
    second = anonymize_stream([b"".join(lines[4:])], engine)
    assert b"".join(first) + b"".join(second) == output
    first.summary.merge(second.summary)
    assert first.summary.labels == run.summary.labels
    # Partial summaries merged before they finish (a worker's range that stopped at a fault).
    parts = [Summary(), Summary()]
    for n, line in enumerate(output.splitlines()):
        parts[n >= 4].count_output(orjson.loads(line), len(line))
    parts[0].merge(parts[1])
    assert parts[0].labels == run.summary.labels
