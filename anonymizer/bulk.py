"""Folders of files through the engine: the command line's JSON mode and bulk (NDJSON) mode.

Each output is written under a temporary name beside its final one and renamed on success, so a
reader never sees half a file. A failing file is reported (kind and line, never content) and the
others are still written.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from anonymizer import jsonio
from anonymizer.engine import Context, Engine, parse_document
from anonymizer.errors import AnonymizerError, ConfigurationError
from anonymizer.stream import LineFault, anonymize_stream
from anonymizer.summary import Summary

log = logging.getLogger("anonymizer.bulk")
READ_CHUNK = 1 << 20


@dataclass
class BulkOptions:
    bulk: bool = True
    recursive: bool = False
    skip_existing: bool = False
    workers: int = 1
    on_invalid_line: str = "drop"
    max_line_bytes: int = 268_435_456
    progress: bool = False


@dataclass
class FileFailure:
    path: str
    kind: str
    line: int | None = None


@dataclass
class BulkResult:
    summary: Summary = field(default_factory=Summary)
    files: int = 0
    skipped_files: int = 0
    failures: list[FileFailure] = field(default_factory=list)

    @property
    def failed_files(self) -> int:
        return len(self.failures)

    @property
    def dropped_lines(self) -> int:
        return self.summary.faulted_lines

    def status(self) -> str:
        return "failed" if self.failures else "succeeded"

    def summary_dict(self, engine: Engine) -> dict:
        out = self.summary.to_dict(status=self.status(), engine=engine)
        out["files"] = {
            "processed": self.files,
            "skipped": self.skipped_files,
            "failed": [vars(f) for f in self.failures],
        }
        return out

    def report_line(self) -> str:
        s = self.summary
        return (
            f"{self.files} file(s), {s.lines} line(s), {s.output_resources} resource(s) "
            f"written, {self.dropped_lines} line(s) left out, {self.failed_files} file(s) "
            f"failed, {self.skipped_files} skipped, {s.elapsed or 0:.1f}s"
        )


def input_files(source: Path, *, bulk: bool, recursive: bool) -> list[Path]:
    pattern = "*.ndjson" if bulk else "*.json"
    found = source.rglob(pattern) if recursive else source.glob(pattern)
    return sorted(p for p in found if p.is_file())


def read_chunks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
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


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def anonymize_ndjson_file(
    engine: Engine, source: Path, target: Path, context: Context, options: BulkOptions
) -> Summary:
    """One NDJSON file to one NDJSON file. Raises LineFault (under `fail`) or AnonymizerError."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(target)
    try:
        run = anonymize_stream(
            read_chunks(source),
            engine,
            context=context,
            on_invalid_line=options.on_invalid_line,
            max_line_bytes=options.max_line_bytes,
            input_complete=True,
        )
        with temporary.open("wb") as out:
            for chunk in run:
                out.write(chunk)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return run.summary


def anonymize_json_file(engine: Engine, source: Path, target: Path, context: Context) -> Summary:
    """One resource per file, written pretty as the reference writes it."""
    summary = Summary()
    summary.lines = 1
    data = source.read_bytes()
    summary.input_bytes = len(data)
    data = data.removeprefix(b"\xef\xbb\xbf")
    resource = parse_document(data)
    if type(resource) is dict:
        summary.count_input(resource.get("resourceType"))
    result = engine.anonymize(resource, context, source=data)
    text = jsonio.dumps_pretty(result)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(target)
    try:
        temporary.write_bytes(text)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    summary.count_output(result, len(text))
    summary.finish()
    return summary


def run_folder(engine: Engine, source: Path, target: Path, options: BulkOptions) -> BulkResult:
    result = BulkResult()
    files = input_files(source, bulk=options.bulk, recursive=options.recursive)
    folder_name = source.resolve().name
    for number, path in enumerate(files, 1):
        relative = path.relative_to(source)
        destination = target / relative
        if options.skip_existing and destination.exists():
            result.skipped_files += 1
            continue
        context = Context(file_name=path.name, folder_name=folder_name)
        try:
            if options.bulk:
                summary = anonymize_ndjson_file(engine, path, destination, context, options)
            else:
                summary = anonymize_json_file(engine, path, destination, context)
        except ConfigurationError:
            raise
        except LineFault as fault:
            result.failures.append(FileFailure(str(relative), fault.kind, fault.line))
            log.error("%s failed at line %d: %s", relative, fault.line, fault.kind)
            continue
        except AnonymizerError as exc:
            kind = getattr(exc, "kind", type(exc).__name__)
            result.failures.append(FileFailure(str(relative), kind))
            log.error("%s failed: %s", relative, kind)
            continue
        result.files += 1
        result.summary.merge(summary)
        if options.progress:
            print(f"\r{number}/{len(files)} files", end="", file=sys.stderr, flush=True)
    if options.progress and files:
        print(file=sys.stderr)
    result.summary.finish()
    return result
