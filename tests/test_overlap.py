"""The overlapped transfers of anonymizer/azure/overlap.py: order, errors in order, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("azure.storage.blob")

from anonymizer.azure.overlap import Staging, read_ahead


def test_read_ahead_keeps_order_and_raises_after_the_items_before_the_error() -> None:
    def items() -> Iterator[int]:
        yield from range(50)
        raise ConnectionError("the source went away")

    seen = []
    with pytest.raises(ConnectionError):
        for item in read_ahead(items, depth=3):
            seen.append(item)
    assert seen == list(range(50))


def test_read_ahead_reads_no_more_than_its_depth_ahead_and_stops_when_closed() -> None:
    produced: list[int] = []
    finished = threading.Event()

    def items() -> Iterator[int]:
        try:
            for n in range(1000):
                produced.append(n)
                yield n
        finally:
            finished.set()

    stream = read_ahead(items, depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    # One taken, two queued, one held by the reader waiting to queue it.
    assert len(produced) <= 4
    stream.close()
    assert finished.wait(2), "the reader did not stop after the consumer closed"
    assert len(produced) <= 5


def test_staging_bounds_pending_calls_and_raises_the_first_error() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def stage(n: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        if n == 7:
            raise TimeoutError("stage 7 failed")

    staging = Staging(depth=2)
    with pytest.raises(TimeoutError):
        for n in range(20):
            staging.submit(stage, n)
        staging.wait()
    assert most <= 3  # the depth pending, and the one just submitted
    staging.wait()  # what was left pending finishes; the error was raised once
