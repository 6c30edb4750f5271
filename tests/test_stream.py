"""The streaming core's line splitting: the same lines, the same output and the same accounting
whatever the chunk boundaries (BOM, CRLF, blank lines, over-long lines across many chunks, a last
line without a newline, and a held-back incomplete last line)."""

from __future__ import annotations

import orjson
import pytest

from anonymizer import Engine
from anonymizer.stream import anonymize_stream

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
    assert summary.faults["line_too_long"].first_lines == [5, 7]


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
