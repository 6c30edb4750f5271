"""The storage-independent streaming core: NDJSON byte chunks in, anonymized NDJSON chunks out.

Lines come from the one line splitter (lines.py: chunk boundaries, BOM, CRLF, blank and over-long
lines, a last line without newline, a line a previous run counted). Memory holds one chunk and one
line at a time. Each bad line is classified (docs/contract.md section 7) with its absolute line
number and, under `drop`, left out while everything else is written; under `fail` the run stops at
that line with LineFault. Nothing of a line's content reaches a log, an exception or the summary.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from anonymizer import jsonio
from anonymizer.errors import AnonymizerError, ConfigurationError, InvalidInputError, ProcessingError
from anonymizer.lines import FAULTED, GARBLED, PROCESSED, LineSplitter
from anonymizer.r4.model import is_resource_type
from anonymizer.settings import DEFAULT_MAX_LINE_BYTES
from anonymizer.summary import Summary

if TYPE_CHECKING:
    from anonymizer.core import CoreRunner, Ticket
    from anonymizer.engine import Context, Engine

__all__ = ["FAULTED", "PROCESSED", "LineFault", "StreamRun", "anonymize_stream"]

log = logging.getLogger("anonymizer.stream")

_FLUSH_BYTES = 1 << 16
_FIRST_STEP = 1 << 15  # the compiled core's first pieces (core.py)
_PIECES_PER_THREAD = 4  # pieces per call with threads: the core's pool balances them
_SPACE = frozenset(b" \t\r\n\f\v")


class LineFault(AnonymizerError):
    """A bad line under `on_invalid_line: fail`. Carries the kind and the absolute line number."""

    def __init__(self, kind: str, line: int) -> None:
        super().__init__(f"line {line}: {kind.replace('_', ' ')}")
        self.kind = kind
        self.line = line


class Piece(NamedTuple):
    """A run of whole lines for the compiled core (data[start:end]), or another item of the line
    splitter (kind "long" or "garbled", data its value); `consumed`: the input's bytes up to its
    end."""

    kind: str
    data: Any
    start: int
    end: int
    consumed: int
    last_open: bool  # it ends with the input's last line, which has no newline yet


CoreResult = tuple[bytes, list[tuple[int, str, Any, int, int]], dict[str, Any]]


class StreamRun:
    """Iterate to get output chunks; afterwards `summary`, `consumed` (input bytes up to the end
    of the last processed line, from `start_offset`), `next_line` and `open_line` (lines.py:
    PROCESSED or FAULTED when the input ended inside a line already counted, else None) are final.
    `continues` says the previous run ended so (lines.py)."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        engine: Engine,
        *,
        context: Context | None = None,
        start_offset: int = 0,
        start_line: int = 1,
        on_invalid_line: str = "drop",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        input_complete: bool = False,
        file: str | None = None,
        continues: str | None = None,
        threads: int = 1,
    ) -> None:
        self.engine = engine
        # Threads running the compiled core over pieces of the input (the Python engine: one).
        self.threads = max(1, threads)
        self._step = _FIRST_STEP
        self.context = context
        self.start_offset = start_offset
        self.on_invalid_line = on_invalid_line
        # The name faults carry (docs/contract.md section 6): a relative path or a blob name.
        self.file = file or (context.file_name if context is not None else None) or "-"
        self._lines = LineSplitter(
            chunks,
            start_offset=start_offset,
            max_line_bytes=max_line_bytes,
            input_complete=input_complete,
            continues=continues,
        )
        self.summary = Summary()
        self.next_line = start_line
        # What the output yielded so far covers (for checkpoints and interrupted reads).
        self.emitted_consumed = 0
        self.emitted_next_line = start_line

    @property
    def consumed(self) -> int:
        return self._lines.consumed

    @property
    def open_line(self) -> str | None:
        return self._lines.open_line

    def __iter__(self) -> Iterator[bytes]:
        core = self.engine.core
        if core is not None:
            yield from self._iter_core(core)
            return
        out: list[bytes] = []
        size = 0
        process = self._process
        lines = self._lines
        summary = self.summary
        for line in lines:
            if type(line) is bytes:
                faulted = summary.faulted_lines if lines.last_open else 0
                result = process(line)
                if lines.last_open:  # an unterminated last line, and more may follow
                    lines.open_line = FAULTED if summary.faulted_lines > faulted else PROCESSED
            elif line is GARBLED:  # the rest of the line before the first: it is not JSON
                self._fault_at("not_json", self.next_line - 1)
                continue
            else:  # a line over the size limit: only its length
                result = process(None)
            self.next_line += 1
            if result is not None:
                out.append(result)
                size += len(result)
                if size >= _FLUSH_BYTES:
                    self.emitted_consumed, self.emitted_next_line = lines.consumed, self.next_line
                    yield b"".join(out)
                    out, size = [], 0
        self.emitted_consumed, self.emitted_next_line = lines.consumed, self.next_line
        if out:
            yield b"".join(out)
        summary.input_bytes = lines.consumed
        summary.finish()

    # -- on the compiled core ------------------------------------------------------------------
    def _core_pieces(self) -> Iterator[Piece]:
        """The input as pieces for the core: runs of whole lines of about `_step` bytes (cut at
        line ends), with what the input had consumed at their end; and the splitter's other
        items (an over-long line, garbled), in order. Pieces are small while the plan is still
        growing (lines fall back to build it) and double up to 16 flushes once it holds: a
        piece run at once with others, on a plan that lacked a part, is finished alone."""
        lines = self._lines
        for kind, item in lines.blocks():
            if kind == "lines" or kind == "line":
                assert type(item) is tuple
                data, start, stop = item
                last_open = kind == "line" and lines.last_open  # the last line, without its newline
                offset = lines.consumed - stop  # the input's bytes before data[0]
                while start < stop:
                    step = self._step
                    end = stop if stop - start <= step else data.find(b"\n", start + step, stop) + 1
                    if end <= 0:
                        end = stop
                    yield Piece("lines", data, start, end, offset + end, last_open)
                    start = end
            else:
                yield Piece(kind, item, 0, 0, lines.consumed, False)

    def _iter_core(self, core: CoreRunner) -> Iterator[bytes]:
        """__iter__ with the input in pieces of whole lines through the compiled core (core.py)
        and the lines it hands back through the Python engine. With threads, pieces go to the
        core's pool of `threads` threads as they are read, a few per thread in flight, while
        this thread takes their results in order."""
        self._out: list[bytes] = []
        self._size = 0
        in_flight: deque[tuple[Piece, Ticket]] = deque()
        window = _PIECES_PER_THREAD * self.threads
        for piece in self._core_pieces():
            if piece.kind != "lines":
                while in_flight:
                    yield from self._core_finish(core, *in_flight.popleft())
                if piece.kind == "long":  # a line over the size limit: only its length
                    self._process(None)
                    self.next_line += 1
                else:  # garbled: the rest of the line before the first is not JSON
                    self._fault_at("not_json", self.next_line - 1)
                yield from self._flush(piece.consumed)
            elif self.threads == 1:
                yield from self._core_finish(core, piece, None)
            else:
                in_flight.append((piece, self._core_submit(core, piece)))
                if len(in_flight) >= window:
                    yield from self._core_finish(core, *in_flight.popleft())
        while in_flight:
            yield from self._core_finish(core, *in_flight.popleft())
        lines = self._lines
        self.emitted_consumed, self.emitted_next_line = lines.consumed, self.next_line
        if self._out:
            yield b"".join(self._out)
        self.summary.input_bytes = lines.consumed
        self.summary.finish()

    def _core_finish(self, core: CoreRunner, piece: Piece, ticket: Ticket | None) -> Iterator[bytes]:
        """One piece's results, and the rest of it when the core stopped early, in line order."""
        result = ticket.wait() if ticket is not None else self._core_call(core, piece, piece.start)
        start = piece.start
        while True:
            start, produced = self._core_result(core, piece, start, result, self._out)
            self._size += produced
            if start >= piece.end:
                break
            result = self._core_call(core, piece, start)
        yield from self._flush(piece.consumed)

    def _flush(self, consumed: int) -> Iterator[bytes]:
        if self._size >= _FLUSH_BYTES:
            self.emitted_consumed, self.emitted_next_line = consumed, self.next_line
            yield b"".join(self._out)
            self._out, self._size = [], 0

    def _core_submit(self, core: CoreRunner, piece: Piece) -> Ticket:
        return core.submit(
            piece.data,
            piece.start,
            piece.end,
            self.context,
            max_line_bytes=self._lines.max_line_bytes,
            stop_at_event=self.on_invalid_line == "fail",
            threads=self.threads,
        )

    def _core_call(self, core: CoreRunner, piece: Piece, start: int) -> CoreResult:
        """The core over data[start:piece.end] on this thread."""
        return core.process(
            [(piece.data, start, piece.end)],
            self.context,
            max_line_bytes=self._lines.max_line_bytes,
            stop_at_event=self.on_invalid_line == "fail",  # the run stops exactly at a bad line
        )[0]

    def _core_result(
        self, core: CoreRunner, piece: Piece, start: int, result: CoreResult, out: list[bytes]
    ) -> tuple[int, int]:
        """What one call of the core over data[start:piece.end] gave, and the lines it handed back
        through the Python engine (the core stops after a bad line under `fail`, and after a line
        that needed a part of the plan not exported yet: the Python engine builds that part as it
        walks the line, and the export brings it for the rest). Appends the output in line order;
        returns where the rest starts and the output's size."""
        summary = self.summary
        data, last_open = piece.data, piece.last_open
        written, events, counts = result
        first_line = self.next_line
        summary.lines += counts["lines"]
        summary.count_block(counts, len(written))
        size = len(written)
        position = 0
        missing = False
        for index, kind, value, line_start, line_end in events:
            self.next_line = first_line + index
            if kind == "fallback" or kind == "missing":
                missing = missing or kind == "missing"
                if value > position:
                    out.append(written[position:value])
                position = value
                faulted = summary.faulted_lines
                result_line = self._guarded_line(data[line_start:line_end])
                if result_line is not None:
                    out.append(result_line)
                    size += len(result_line)
                if last_open and summary.faulted_lines > faulted:
                    self._lines.open_line = FAULTED
            elif kind == "fault":
                if last_open:
                    self._lines.open_line = FAULTED
                self._fault(value)
            else:  # dropped: minimumNecessary's resourceTypes does not list the type
                from anonymizer.minimum import NOT_LISTED  # (loaded: the engine has one)

                summary.dropped[(value, NOT_LISTED)] += 1
        if position < len(written):
            out.append(written[position:] if position else written)
        self.next_line = first_line + counts["lines"]
        if missing:
            core.sync()  # what the Python engine added to the plan, for the lines after
            self._step = _FIRST_STEP
        else:
            self._step = min(2 * self._step, 16 * _FLUSH_BYTES)
        if last_open and self._lines.open_line is None:
            self._lines.open_line = PROCESSED
        return start + counts["consumed"], size

    # -- one line ------------------------------------------------------------------------------
    def _process(self, line: bytes | None) -> bytes | None:
        summary = self.summary
        summary.lines += 1
        if line is None:
            self._fault("line_too_long")
            return None
        # The line keeps its `\n` (or `\r\n`): JSON whitespace to the parser.
        if not line or (line[0] in _SPACE and not line.strip()):
            summary.blank_lines += 1
            return None
        return self._guarded_line(line)

    def _guarded_line(self, line: bytes) -> bytes | None:
        try:
            return self._resource_line(line)
        except (LineFault, ConfigurationError):
            raise
        except Exception as exc:  # nothing in a line may end the run (docs/contract.md section 7)
            # Only the exception's type and the line number: its text may quote the content.
            log.warning(
                "%s:%d: internal error (%s); the line is left out",
                self.file,
                self.next_line,
                type(exc).__name__,
            )
            kind = "internal_error"
        self._fault(kind)
        return None

    def _resource_line(self, line: bytes) -> bytes | None:
        summary = self.summary
        # Faults are raised outside the except blocks: a decoder error holds the line's text,
        # and must not ride along as the __context__ of LineFault.
        fault = None
        try:
            resource, exact = jsonio.parse(line)
        except ValueError:
            resource, fault = None, "not_json" if _is_utf8(line) else "invalid_utf8"
        except InvalidInputError as exc:  # too deep, a number out of range
            resource, fault = None, exc.kind
        if fault is None and type(resource) is not dict:
            fault = "not_object"
        if fault is None:
            fault = _resource_type_fault(resource.get("resourceType"))
        if fault is not None:
            self._fault(fault)
            return None
        resource_type = resource["resourceType"]
        summary.count_input(resource_type)
        failed = False
        try:
            result, dropped, skipped = self.engine.process(
                resource, self.context, source=line, reuse=not exact
            )
        except InvalidInputError as exc:
            fault = exc.kind
        except ProcessingError:  # under `processingErrors: raise` (skip never gets here)
            failed = True
        if failed:
            raise LineFault("processing_error", self.next_line)
        if fault is not None:
            self._fault(fault)
            return None
        if dropped is not None:  # minimum necessary
            summary.dropped[(resource_type, dropped)] += 1
            return None
        if skipped:
            summary.skip(self.next_line, self.file)
        assert result is not None  # (None only when dropped)
        data = jsonio.dumps_line(result)
        summary.count_output(result, len(data))
        return data

    def _fault(self, kind: str) -> None:
        self._fault_at(kind, self.next_line)

    def _fault_at(self, kind: str, line: int) -> None:
        if self.on_invalid_line == "fail":
            raise LineFault(kind, line) from None
        self.summary.fault(kind, line, self.file)
        log.debug("%s:%d left out: %s", self.file, line, kind)
        return None


def _resource_type_fault(resource_type: Any) -> str | None:
    """The fault of a `resourceType` that names no R4 resource type (checked before anything
    reads it, so that no input text becomes a summary key)."""
    if resource_type is None:
        return "no_resource_type"
    return None if is_resource_type(resource_type) else "unknown_resource_type"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def anonymize_stream(chunks: Iterable[bytes], engine: Engine, **options: Any) -> StreamRun:
    """The streaming core's entry point (docs/contract.md section 2); `options` are StreamRun's: context,
    start_offset, start_line, on_invalid_line, max_line_bytes, input_complete, file (the name
    faults carry), continues, threads (for the compiled core)."""
    return StreamRun(chunks, engine, **options)
