"""The one NDJSON line splitter: byte chunks in, lines out, whatever the chunk boundaries.

`\\n` and `\\r\\n` endings, a UTF-8 BOM at the start (perhaps split across chunks), blank lines
and a last line without a newline are handled; memory holds one chunk and one line at a time. A
line longer than the limit is not kept: only its length is given. The streaming core
(stream.py) and the readers of `verify` (folders, containers) use it.

An input that may grow (a blob `$export` commits again and again) can end inside a line a run
already counted: a whole object without its newline yet (PROCESSED), or an over-long line (a
fault, FAULTED). The next run, told so (`continues`), reads the bytes up to the first newline as
that line's rest; whitespace there is its end, anything else makes it not JSON (GARBLED).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from anonymizer import jsonio
from anonymizer.errors import InvalidInputError
from anonymizer.settings import DEFAULT_MAX_LINE_BYTES

PROCESSED = "processed"
FAULTED = "faulted"
_BOM = b"\xef\xbb\xbf"
_NEWLINE = ord("\n")
READ_CHUNK = 1 << 20


class Garbled:
    """Yielded when the rest of a line the previous run processed holds more than whitespace."""

    def __repr__(self) -> str:
        return "GARBLED"


GARBLED = Garbled()
Line = bytes | int | Garbled  # a line with its ending; an over-long line's length; GARBLED


def complete_object(data: bytes) -> bool:
    """Whether an unterminated last line is a whole JSON object (processed now) rather than the
    start of one (held back for the next commit)."""
    try:
        return type(jsonio.loads(data)) is dict
    except ValueError:
        return False
    except InvalidInputError:  # read whole, but too deep or a number out of range: a fault now
        return True


class LineSplitter:
    """Iterate for the lines; `consumed` counts the input bytes they and what was skipped (a BOM,
    a continued line's rest) took, up to the line just given. Afterwards `open_line` says whether
    the input ended inside a line already counted (PROCESSED, FAULTED) or not (None); the caller
    sets it for a last unterminated line it was given (`last_open` is then True)."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        start_offset: int = 0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        input_complete: bool = False,
        continues: str | None = None,
        complete: Callable[[bytes], bool] = complete_object,
    ) -> None:
        if continues not in (None, PROCESSED, FAULTED):
            raise ValueError(f"continues must be {PROCESSED!r}, {FAULTED!r} or None")
        self._chunks = chunks
        self.start_offset = start_offset
        self.max_line_bytes = max_line_bytes
        self.input_complete = input_complete
        self.continues = continues if start_offset > 0 else None
        self._complete = complete
        self.consumed = 0
        self.open_line: str | None = None
        self.last_open = False  # the last line given had no newline, and more may follow

    def __iter__(self) -> Iterator[Line]:
        rest = b""  # the start of a line the next chunk continues
        bom = self.start_offset == 0  # a BOM may start the input, perhaps split across chunks
        skipped = -1  # inside an over-long line: its bytes so far, discarded up to its end
        limit = self.max_line_bytes + 1  # with the `\n`
        continuing = self.continues
        for chunk in self._chunks:
            if not chunk:
                continue
            if continuing is not None:
                end = chunk.find(b"\n")
                piece = chunk if end < 0 else chunk[: end + 1]
                self.consumed += len(piece)
                if continuing == PROCESSED and piece.strip():
                    continuing = FAULTED
                    yield GARBLED
                if end < 0:
                    continue
                chunk, continuing = chunk[end + 1 :], None
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
                    length = skipped + len(line)
                    self.consumed += length
                    yield length
                    skipped = -1
                elif len(line) <= limit:
                    self.consumed += len(line)
                    yield line
                else:
                    self.consumed += len(line)
                    yield len(line)
            if skipped >= 0 or len(rest) >= limit:
                skipped = max(skipped, 0) + len(rest)
                rest = b""
        if continuing is not None:  # no newline yet: the line goes on in the next run
            self.open_line = continuing
        elif skipped >= 0:
            if not self.input_complete:
                self.open_line = FAULTED
            self.consumed += skipped + len(rest)
            yield skipped + len(rest)
        elif rest and (self.input_complete or self._complete(rest)):
            self.last_open = not self.input_complete
            self.consumed += len(rest)
            yield rest
        # otherwise an unterminated last line is held back for the next run

    def blocks(self) -> Iterator[tuple[str, tuple[bytes, int, int] | int | None]]:
        """The input as __iter__ reads it, in blocks for the compiled core (stream.py): ("lines",
        (data, start, end): data[start:end] are whole lines, each with its newline; lines over
        the limit among them are the reader's to fault), ("line", (data, start, end): the last
        line without a newline, as __iter__ gives it), ("long", an over-long line's length: one
        that did not fit in a chunk), ("garbled", None). `consumed` counts what each item took
        once it is given. A chunk's whole lines are given as offsets into it, not copied: only
        the line that straddles two chunks is."""
        rest = b""
        bom = self.start_offset == 0
        skipped = -1
        limit = self.max_line_bytes + 1
        continuing = self.continues
        for chunk in self._chunks:
            if not chunk:
                continue
            if continuing is not None:
                end = chunk.find(b"\n")
                piece = chunk if end < 0 else chunk[: end + 1]
                self.consumed += len(piece)
                if continuing == PROCESSED and piece.strip():
                    continuing = FAULTED
                    yield "garbled", None
                if end < 0:
                    continue
                chunk, continuing = chunk[end + 1 :], None
                if not chunk:
                    continue
            start = 0
            if rest and not bom and skipped < 0:
                end = chunk.find(b"\n")
                if end >= 0:  # the straddling line on its own, so the chunk is not copied
                    line = rest + chunk[: end + 1]
                    self.consumed += len(line)
                    yield "lines", (line, 0, len(line))
                    rest, start = b"", end + 1
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
            if skipped >= 0:  # inside an over-long line: up to its end
                end = data.find(b"\n")
                if end < 0:
                    skipped += len(data)
                    continue
                length = skipped + end + 1
                self.consumed += length
                skipped = -1
                yield "long", length
                data = data[end + 1 :]
            last = data.rfind(b"\n", start)
            if last >= 0:
                rest = data[last + 1 :]
                self.consumed += last + 1 - start
                yield "lines", (data, start, last + 1)
            else:
                rest = data[start:] if start else data
            if len(rest) >= limit:
                skipped = len(rest)
                rest = b""
        if continuing is not None:
            self.open_line = continuing
        elif skipped >= 0:
            if not self.input_complete:
                self.open_line = FAULTED
            self.consumed += skipped + len(rest)
            yield "long", skipped + len(rest)
        elif rest and (self.input_complete or self._complete(rest)):
            self.last_open = not self.input_complete
            self.consumed += len(rest)
            yield "line", (rest, 0, len(rest))


# -- documents, for readers that compare rather than anonymize (verify) -------------------------------
Document = tuple[str, int, dict]  # (file, line number, resource)


def documents(chunks: Iterable[bytes], file: str) -> Iterator[Document]:
    """The resources of NDJSON chunks with their line numbers, as the engine reads them: what the
    engine leaves out (blank, not JSON, too deep or long, not an object) is skipped."""
    number = 0
    for line in LineSplitter(chunks, input_complete=True):
        number += 1
        if type(line) is not bytes or not line.strip():
            continue
        try:
            document = jsonio.loads(line)
        except (ValueError, InvalidInputError):
            continue
        if type(document) is dict:
            yield file, number, document


def counted(chunks: Iterable[bytes], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """`chunks`, each reported to `progress` (bytes) as it passes."""
    for chunk in chunks:
        if progress is not None:
            progress(len(chunk))
        yield chunk


def file_chunks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """A file's bytes from `start` to `end`, in chunks."""
    with path.open("rb") as handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk = handle.read(size)
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
