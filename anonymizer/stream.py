"""The storage-independent streaming core: NDJSON byte chunks in, anonymized NDJSON chunks out.

Lines may be split across chunks; `\\n` and `\\r\\n` endings, a UTF-8 BOM at the start, blank lines
and a last line without newline are handled. Memory holds one chunk and one line at a time. Each
bad line is classified (CONTRACT section 7) with its absolute line number and, under `drop`, left
out while everything else is written; under `fail` the run stops at that line with LineFault.
Nothing of a line's content reaches a log, an exception or the summary.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from anonymizer import jsonio
from anonymizer.errors import AnonymizerError, ConfigurationError, InvalidInputError, ProcessingError
from anonymizer.r4.model import is_resource_type
from anonymizer.settings import DEFAULT_MAX_LINE_BYTES
from anonymizer.summary import Summary

if TYPE_CHECKING:
    from anonymizer.engine import Context, Engine

log = logging.getLogger("anonymizer.stream")

_FLUSH_BYTES = 1 << 16
_BOM = b"\xef\xbb\xbf"
_SPACE = frozenset(b" \t\r\n\f\v")
_NEWLINE = ord("\n")


class LineFault(AnonymizerError):
    """A bad line under `on_invalid_line: fail`. Carries the kind and the absolute line number."""

    def __init__(self, kind: str, line: int) -> None:
        super().__init__(f"line {line}: {kind.replace('_', ' ')}")
        self.kind = kind
        self.line = line


# An input that may grow (a blob `$export` commits again and again) can end inside a line this run
# already counted: a whole object without its newline yet (processed), or an over-long line (a
# fault). The next run, told so, reads the bytes up to the first newline as that line's rest.
PROCESSED = "processed"
FAULTED = "faulted"


class StreamRun:
    """Iterate to get output chunks; afterwards `summary`, `consumed` (input bytes up to the end
    of the last processed line, from `start_offset`), `next_line` and `open_line` (PROCESSED or
    FAULTED when the input ended inside a line already counted, else None) are final.
    `continues` says the previous run ended so: its bytes up to the first newline belong to line
    `start_line - 1` (whitespace there is that line's end; anything else makes it `not_json`)."""

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
    ) -> None:
        self._chunks = chunks
        self.engine = engine
        self.context = context
        self.start_offset = start_offset
        self.on_invalid_line = on_invalid_line
        self.max_line_bytes = max_line_bytes
        self.input_complete = input_complete
        # The name faults carry (CONTRACT section 6): a relative path or a blob name.
        self.file = file or (context.file_name if context is not None else None) or "-"
        if continues not in (None, PROCESSED, FAULTED):
            raise ValueError(f"continues must be {PROCESSED!r}, {FAULTED!r} or None")
        self.continues = continues if start_offset > 0 else None
        self.open_line: str | None = None
        self.summary = Summary()
        self.consumed = 0
        self.next_line = start_line
        # What the output yielded so far covers (for checkpoints and interrupted reads).
        self.emitted_consumed = 0
        self.emitted_next_line = start_line

    def __iter__(self) -> Iterator[bytes]:
        out: list[bytes] = []
        size = 0
        process = self._process
        for line in self._lines():
            if type(line) is int:  # a line over the size limit: only its length
                self.consumed += line
                result = process(None)
            else:
                self.consumed += len(line)
                result = process(line)
            self.next_line += 1
            if result is not None:
                out.append(result)
                size += len(result)
                if size >= _FLUSH_BYTES:
                    self.emitted_consumed, self.emitted_next_line = self.consumed, self.next_line
                    yield b"".join(out)
                    out, size = [], 0
        self.emitted_consumed, self.emitted_next_line = self.consumed, self.next_line
        if out:
            yield b"".join(out)
        self.summary.input_bytes = self.consumed
        self.summary.finish()

    # -- splitting -----------------------------------------------------------------------------
    def _lines(self) -> Iterator[bytes | int]:
        """Each line with its `\\n` (the input's last line may have none); for a line over the
        size limit, the number of bytes it took."""
        rest = b""  # the start of a line the next chunk continues
        bom = self.start_offset == 0  # a BOM may start the input, perhaps split across chunks
        skipped = -1  # inside an over-long line: its bytes so far, discarded up to its end
        limit = self.max_line_bytes + 1  # with the `\n`
        continuing = self.continues
        for chunk in self._chunks:
            if not chunk:
                continue
            if continuing is not None:
                chunk, continuing = self._continuation(chunk, continuing)
                if not chunk:
                    continue
            data = rest + chunk if rest else chunk
            rest = b""
            if bom:
                if len(data) < len(_BOM) and _BOM.startswith(data):
                    rest = data
                    continue
                bom = False
                if data.startswith(_BOM):
                    data = data[len(_BOM) :]
                    self.consumed += len(_BOM)
            # BytesIO finds line ends with memchr: several times faster than bytes.split.
            for line in io.BytesIO(data):
                if line[-1] != _NEWLINE:
                    rest = line
                elif skipped >= 0:
                    yield skipped + len(line)
                    skipped = -1
                else:
                    yield line if len(line) <= limit else len(line)
            if skipped >= 0 or len(rest) >= limit:
                skipped = max(skipped, 0) + len(rest)
                rest = b""
        if continuing is not None:  # no newline yet: the line goes on in the next run
            self.open_line = continuing
        elif skipped >= 0:
            if not self.input_complete:
                self.open_line = FAULTED
            yield skipped + len(rest)
        elif rest and (self.input_complete or _complete_object(rest)):
            faulted = self.summary.faulted_lines
            yield rest
            if not self.input_complete:
                self.open_line = FAULTED if self.summary.faulted_lines > faulted else PROCESSED
        # otherwise an unterminated last line is held back for the next run

    def _continuation(self, chunk: bytes, state: str) -> tuple[bytes, str | None]:
        """Consume the rest of the line the previous run ended in; returns what follows it and
        the state still open (None once its newline came)."""
        end = chunk.find(b"\n")
        piece = chunk if end < 0 else chunk[: end + 1]
        self.consumed += len(piece)
        if state == PROCESSED and piece.strip():
            # The object already written is followed by more text on its line: as one line, it
            # is not JSON (the command line, reading the whole file, says the same of it).
            state = FAULTED
            self._fault_at("not_json", self.next_line - 1)
        return (b"", state) if end < 0 else (chunk[end + 1 :], None)

    # -- one line ------------------------------------------------------------------------------
    def _process(self, line: bytes | None) -> bytes | None:
        summary = self.summary
        summary.lines += 1
        if line is None:
            return self._fault("line_too_long")
        # The line keeps its `\n` (or `\r\n`): JSON whitespace to the parser.
        if not line or (line[0] in _SPACE and not line.strip()):
            summary.blank_lines += 1
            return None
        try:
            return self._resource_line(line)
        except (LineFault, ConfigurationError):
            raise
        except Exception as exc:  # nothing in a line may end the run (CONTRACT section 7)
            # Only the exception's type and the line number: its text may quote the content.
            log.warning(
                "%s:%d: internal error (%s); the line is left out",
                self.file,
                self.next_line,
                type(exc).__name__,
            )
            kind = "internal_error"
        return self._fault(kind)

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
            return self._fault(fault)
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
            return self._fault(fault)
        if dropped is not None:  # minimum necessary
            summary.dropped[(resource_type, dropped)] += 1
            return None
        if skipped:
            summary.skip(self.next_line, self.file)
        data = jsonio.dumps_line(result)
        summary.count_output(result, len(data))
        return data

    def _fault(self, kind: str) -> None:
        return self._fault_at(kind, self.next_line)

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


def _complete_object(data: bytes) -> bool:
    """Whether an unterminated last line is a whole JSON object (processed now) rather than the
    start of one (held back for the next commit)."""
    try:
        return type(jsonio.loads(data)) is dict
    except ValueError:
        return False
    except InvalidInputError:  # read whole, but too deep or a number out of range: a fault now
        return True


def anonymize_stream(chunks: Iterable[bytes], engine: Engine, **options: Any) -> StreamRun:
    """The streaming core's entry point (CONTRACT section 2); `options` are StreamRun's: context,
    start_offset, start_line, on_invalid_line, max_line_bytes, input_complete, file (the name
    faults carry), continues."""
    return StreamRun(chunks, engine, **options)
