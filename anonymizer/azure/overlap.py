"""Storage transfers that overlap the anonymization: the source read ahead on a thread of its own,
output blocks staged by a small pool while the next ones are made. Each holds only a few blocks,
so a blob's memory stays bounded; errors surface in order, on the stream's thread."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1  # how soon an abandoned reader notices


def read_ahead(items: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """What `items()` yields, read on a thread of its own up to `depth` items ahead. An error the
    reader meets is raised here, after the items before it; closing this generator stops the
    reader at its next item."""
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items():
                if not put((True, item)):
                    return
        except BaseException as exc:  # raised on the consumer's thread, in order
            put((False, exc))
            return
        put((False, None))

    reader = threading.Thread(target=read, name="blob-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            more, value = ready.get()
            if more:
                yield value
            elif value is not None:
                raise value
            else:
                return
    finally:
        stop.set()


_STAGING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-stage")


class Staging:
    """Calls run on a shared pool, at most `depth` of them pending for this caller: `submit` waits
    for the oldest beyond that, `wait` for all; both raise the first error of a finished call."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self.pending: deque[Future[None]] = deque()

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        self.pending.append(_STAGING.submit(call, *args))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    def wait(self) -> None:
        while self.pending:
            self.pending.popleft().result()
