"""The growing-blob protocol of docs/contract.md section 8.

`$export` commits the same NDJSON blob again and again while it grows; each commit fires the
trigger. A run reads the destination's metadata (what it covers of which source), checks that the
source only grew (the hash of the 64 KiB before the recorded offset), streams the rest pinned to
the source's etag, stages output blocks, and commits the committed list plus its new blocks with
the new metadata, conditional on the destination's etag: readers only ever see a prefix of
complete lines, and two runs never both advance the same destination (the loser starts over from
what the winner committed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobClient

from anonymizer.azure.overlap import Staging, read_ahead
from anonymizer.azure.settings import Settings
from anonymizer.engine import Context, Engine
from anonymizer.stream import FAULTED, PROCESSED, StreamRun
from anonymizer.summary import MAX_FAULT_LINES, Fault, Summary

log = logging.getLogger("anonymizer.azure")

TAIL_BYTES = 64 * 1024
BLOCK_BYTES = 4 << 20
MAX_ATTEMPTS = 5
PARTIAL, COMPLETE = "partial", "complete"


EngineFor = Callable[[date | None], Engine]  # the engine for a (recorded) reference date


class Conflict(Exception):
    """A conditional commit lost: another run advanced the destination."""


class Contention(Exception):
    """The destination kept changing under this run: transient, the host retries it."""


class Malformed(ValueError):
    """Destination metadata this code cannot have written."""


def key_fingerprint(engine: Engine) -> str:
    keys = engine.config.keys
    return ",".join(f"{name}:{keys[name].fingerprint}" for name in sorted(keys)) or "none"


@dataclass
class Outcome:
    status: str  # succeeded | failed | superseded | up-to-date
    engine: Engine
    summary: Summary = field(default_factory=Summary)
    source_etag: str | None = None
    range: tuple[int, int] = (0, 0)
    destination_etag: str | None = None
    error: dict[str, Any] | None = None


class BlobSink:
    """Output staged as blocks on the destination blob, committed with metadata, conditionally."""

    def __init__(self, blob: BlobClient, committed: list[str], etag: str | None) -> None:
        self.blob = blob
        self.committed = list(committed)
        self.etag = etag  # None: the destination must not exist yet
        self.run_id = uuid.uuid4().hex[:16]
        self.staged: list[str] = []
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.sequence = 0
        self.staging = Staging()  # blocks upload while the next ones are made

    def write(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered >= BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        # Block ids of one fixed length (the service requires it within a blob): run id + sequence.
        block_id = base64.b64encode(f"{self.run_id}-{self.sequence:08d}".encode()).decode()
        self.sequence += 1
        self.staging.submit(self.blob.stage_block, block_id, b"".join(self.buffer))
        self.staged.append(block_id)
        self.buffer, self.buffered = [], 0

    def commit(self, metadata: dict[str, str]) -> str:
        self.flush()
        self.staging.wait()  # every block staged (or its error raised) before the list names it
        blocks = [BlobBlock(block_id=b) for b in self.committed + self.staged]
        condition: dict[str, Any] = (
            {"etag": self.etag, "match_condition": MatchConditions.IfNotModified}
            if self.etag
            else {"if_none_match": "*"}
        )
        try:
            result = self.blob.commit_block_list(blocks, metadata=metadata, **condition)
        except (ResourceModifiedError, ResourceExistsError):
            raise Conflict from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise Conflict from None
            raise
        self.committed += self.staged
        self.staged = []
        etag = str(result["etag"])
        self.etag = etag
        return etag


class _Window:
    """The last input bytes read, to hash the 64 KiB before an offset without reading them again.
    Kept as the chunks read (joining them on every read copied megabytes per chunk)."""

    def __init__(self, start: int) -> None:
        self.start = start  # absolute position of the first chunk kept
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        # Keep what the output may still lag behind by: a block, the tail before it, this chunk.
        while self.size - len(self.chunks[0]) >= TAIL_BYTES + BLOCK_BYTES + len(chunk):
            dropped = self.chunks.popleft()
            self.size -= len(dropped)
            self.start += len(dropped)

    def tail(self, offset: int) -> bytes | None:
        begin = max(0, offset - TAIL_BYTES)
        if begin < self.start:
            return None
        pieces, position = [], self.start
        for chunk in self.chunks:
            end = position + len(chunk)
            if end > begin and position < offset:
                pieces.append(chunk[max(begin - position, 0) : offset - position])
            position = end
        return b"".join(pieces)


def _tail_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_range(source: BlobClient, start: int, end: int, etag: str) -> bytes:
    if end <= start:
        return b""
    return source.download_blob(
        offset=start, length=end - start, etag=etag, match_condition=MatchConditions.IfNotModified
    ).readall()


def process(
    source: BlobClient,
    destination: BlobClient,
    engine_for: Callable[[date | None], Engine],
    settings: Settings,
    *,
    final: bool = False,
) -> Outcome:
    """`final`: the source will not grow again (an export's manifest lists it), so an
    unterminated last line is read as a line now (a fault if it is not a resource)."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return _attempt(source, destination, engine_for, settings, final)
        except Conflict:
            log.info("destination advanced by another run; starting over (attempt %d)", attempt + 1)
    raise Contention("the destination kept changing under this run; the host will retry it")


@dataclass
class Resume:
    """Where the destination's metadata says the last run stopped (docs/contract.md section 8)."""

    offset: int = 0
    next_line: int = 1
    open_line: str | None = None  # the source ended inside a line already counted (stream.py)
    faults: dict[str, Fault] = field(default_factory=dict)  # from checkpoints no message reported
    fault_counts: dict[str, int] = field(default_factory=dict)  # of the destination so far, by kind


def _resume_point(metadata: dict[str, str]) -> Resume:
    """Raises Malformed when a value is not what this code writes."""
    try:
        offset, next_line = int(metadata["anon_source_offset"]), int(metadata["anon_next_line"])
    except (KeyError, ValueError):
        raise Malformed("offset or line number") from None
    open_line = metadata.get("anon_open_line") or None
    if offset < 0 or next_line < 1 or open_line not in (None, PROCESSED, FAULTED):
        raise Malformed("offset, line number or open line")
    if len(metadata.get("anon_tail_sha256", "")) != 64:
        raise Malformed("tail hash")
    faults = unpack_faults(metadata.get("anon_faults", ""))
    return Resume(offset, next_line, open_line, faults, unpack_counts(metadata.get("anon_fault_counts", "")))


def pack_counts(counts: dict[str, int]) -> str:
    """Fault counts by kind as metadata: `kind=count,...` (what `status` shows per file)."""
    return ",".join(f"{kind}={n}" for kind, n in sorted(counts.items()) if n)


def unpack_counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        kind, _, n = item.partition("=")
        if not kind.isidentifier() or not n.isdigit():
            raise Malformed("fault counts")
        counts[kind] = int(n)
    return counts


def pack_faults(faults: dict[str, Fault]) -> str:
    """Faults as metadata: `{"kind": [count, [line, ...]]}` (the file is the blob itself)."""
    if not faults:
        return ""
    return json.dumps(
        {kind: [f.count, [line for _, line in f.first_lines]] for kind, f in sorted(faults.items())},
        separators=(",", ":"),
    )


def unpack_faults(text: str, file: str = "-") -> dict[str, Fault]:
    if not text:
        return {}
    try:
        data = json.loads(text)
        faults = {
            kind: Fault(int(count), [(file, int(line)) for line in lines[:MAX_FAULT_LINES]])
            for kind, (count, lines) in data.items()
        }
    except (ValueError, TypeError, AttributeError):
        raise Malformed("faults") from None
    if not all(isinstance(kind, str) and kind.isidentifier() for kind in faults):
        raise Malformed("fault kinds")
    return faults


def _attempt(
    source: BlobClient,
    destination: BlobClient,
    engine_for: Callable[[date | None], Engine],
    settings: Settings,
    final: bool = False,
) -> Outcome:
    # 1. What the destination covers, and under which configuration.
    try:
        properties = destination.get_blob_properties()
        metadata = {k.lower(): v for k, v in (properties.metadata or {}).items()}
        destination_etag = properties.etag
    except ResourceNotFoundError:
        metadata, destination_etag = {}, None
    recorded_date = _recorded_date(metadata)
    engine = engine_for(recorded_date)
    valid = (
        destination_etag is not None
        and metadata.get("anon_config_digest") == engine.config.digest
        and metadata.get("anon_key_fingerprint") == key_fingerprint(engine)
        and metadata.get("anon_engine_version") == engine.version
    )
    resume = Resume()
    if valid:
        try:
            resume = _resume_point(metadata)
        except Malformed as exc:
            log.warning(
                "%s: destination metadata malformed (%s): reprocessing from the start",
                destination.blob_name,
                exc,
            )
            valid = False
    if not valid and recorded_date:
        engine = engine_for(None)  # a new destination: today's reference date (or the setting)
    source_properties = source.get_blob_properties()
    source_etag, size = source_properties.etag, source_properties.size
    # 2. Up to date already.
    if valid and metadata.get("anon_source_etag") == source_etag.strip('"'):
        return Outcome(
            "up-to-date",
            engine,
            source_etag=source_etag,
            range=(resume.offset, resume.offset),
            destination_etag=destination_etag,
        )
    committed: list[str] = []
    if valid:
        committed = [b.id for b in destination.get_block_list("committed")[0]]
        # 3. The source must only have grown; otherwise start over.
        if size < resume.offset or _tail_hash(
            _read_range(source, max(0, resume.offset - TAIL_BYTES), resume.offset, source_etag)
        ) != metadata.get("anon_tail_sha256"):
            log.info("source rewritten, not appended: reprocessing from the start")
            resume, committed = Resume(), []
    sink = BlobSink(destination, committed, destination_etag)
    return _stream(source, sink, engine, settings, source_etag, size, resume, final)


def _recorded_date(metadata: dict[str, str]) -> date | None:
    text = metadata.get("anon_reference_date")
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        log.warning("destination metadata malformed (reference date): today's date is used")
        return None


def _stream(
    source: BlobClient,
    sink: BlobSink,
    engine: Engine,
    settings: Settings,
    source_etag: str,
    size: int,
    resume: Resume,
    final: bool = False,
) -> Outcome:
    offset, next_line = resume.offset, resume.next_line
    # 4. Stream from the offset, pinned to the source etag.
    window = _Window(offset)
    name = source.blob_name
    context = Context(
        file_name=name.rsplit("/", 1)[-1], folder_name=name.rsplit("/", 1)[0] if "/" in name else ""
    )

    def download() -> Iterator[bytes]:
        downloader = source.download_blob(
            offset=offset, etag=source_etag, match_condition=MatchConditions.IfNotModified
        )
        yield from downloader.chunks()

    def chunks() -> Iterator[bytes]:
        if offset >= size:
            return
        # The download runs ahead of the engine; the window sees what the engine reads.
        for chunk in read_ahead(download):
            window.feed(chunk)
            yield chunk

    run = StreamRun(
        chunks(),
        engine,
        context=context,
        start_offset=offset,
        start_line=next_line,
        on_invalid_line=settings.on_invalid_line,
        max_line_bytes=settings.max_line_bytes,
        file=name,
        continues=resume.open_line,
        threads=settings.threads,
        input_complete=final,
    )
    # Faults of checkpoints whose run sent no message (it was killed) are this run's to report.
    carried = Summary()
    for kind, fault in resume.faults.items():
        carried.faults[kind] = Fault(fault.count, [(name, line) for _, line in fault.first_lines])
    outcome = Outcome("succeeded", engine, run.summary, source_etag, (offset, offset))
    checkpoint_at = settings.checkpoint_bytes

    def pending_faults() -> str:
        pending = Summary()
        pending.merge(carried)
        pending.merge(run.summary)
        return pack_faults(pending.faults)

    def metadata(status: str, *, checkpoint: bool = False) -> dict[str, str]:
        position = offset + run.emitted_consumed
        tail = window.tail(position)
        if tail is None:
            tail = _read_range(source, max(0, position - TAIL_BYTES), position, source_etag)
        return {
            "anon_source_etag": source_etag.strip('"') if status == COMPLETE else "",
            "anon_source_offset": str(position),
            "anon_next_line": str(run.emitted_next_line),
            "anon_tail_sha256": _tail_hash(tail),
            "anon_config_digest": engine.config.digest,
            "anon_key_fingerprint": key_fingerprint(engine),
            "anon_engine_version": engine.version,
            "anon_reference_date": engine.reference_date.isoformat(),
            "anon_status": status,
            # Checkpoints carry their faults until a message reports them; the final commit's
            # message does, so it carries none.
            "anon_faults": pending_faults() if checkpoint else "",
            "anon_open_line": "" if checkpoint else run.open_line or "",
            "anon_fault_counts": pack_counts(fault_counts()),
        }

    def fault_counts() -> dict[str, int]:
        counts = dict(resume.fault_counts)
        for kind, fault in run.summary.faults.items():
            counts[kind] = counts.get(kind, 0) + fault.count
        return counts

    try:
        for data in run:
            sink.write(data)
            # 5. A checkpoint after every ANONYMIZER_CHECKPOINT_BYTES of input.
            if run.emitted_consumed >= checkpoint_at:
                sink.commit(metadata(PARTIAL, checkpoint=True))
                checkpoint_at = run.emitted_consumed + settings.checkpoint_bytes
    except ResourceModifiedError:
        # 6. The source changed during the read: keep what was processed; the new commit's
        # trigger continues from there.
        outcome.status = "superseded"  # (its message reports the faults found so far)
        outcome.destination_etag = sink.commit(metadata(PARTIAL))
        outcome.range = (offset, offset + run.emitted_consumed)
        run.summary.merge(carried)
        return outcome
    run.summary.merge(carried)
    position = offset + run.emitted_consumed
    status = COMPLETE if position >= size else PARTIAL  # an unterminated last line waits
    meta = metadata(status)
    meta["anon_source_etag"] = source_etag.strip('"')
    outcome.destination_etag = sink.commit(meta)
    outcome.range = (offset, position)
    return outcome
