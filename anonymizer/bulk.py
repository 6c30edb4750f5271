"""Folders of files through the engine: the command line's JSON mode and bulk (NDJSON) mode.

Each output is written under a temporary name beside its final one and renamed on success, so a
reader never sees half a file. A failing file is reported (kind and line, never content) and the
others are still written.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    split_bytes: int = 64 << 20  # files larger than this are split across workers by byte ranges


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


def anonymize_ndjson_range(
    engine: Engine,
    source: Path,
    output: Path,
    context: Context,
    options: BulkOptions,
    start: int = 0,
    end: int | None = None,
) -> Summary:
    """Lines of `source` from byte `start` (a line start) to `end` into `output`. Line numbers in
    the summary count from 1 at `start`. Raises LineFault (under `fail`) or AnonymizerError."""
    run = anonymize_stream(
        read_chunks(source, start, end),
        engine,
        context=context,
        start_offset=start,
        on_invalid_line=options.on_invalid_line,
        max_line_bytes=options.max_line_bytes,
        input_complete=True,
    )
    with output.open("wb") as out:
        for chunk in run:
            out.write(chunk)
    return run.summary


def anonymize_json_file(engine: Engine, source: Path, output: Path, context: Context) -> Summary:
    """One resource per file, written pretty as the reference writes it."""
    summary = Summary()
    summary.lines = 1
    data = source.read_bytes()
    summary.input_bytes = len(data)
    data = data.removeprefix(b"\xef\xbb\xbf")
    resource = parse_document(data)
    if type(resource) is dict:
        summary.count_input(resource.get("resourceType"))
        reason = engine.drop_reason(resource)
        if reason is not None:  # minimum necessary: nothing is written for it
            summary.dropped[(str(resource.get("resourceType")), reason)] += 1
            summary.finish()
            return summary
    result = engine.anonymize(resource, context, source=data, selected=True)
    text = jsonio.dumps_pretty(result)
    output.write_bytes(text)
    summary.count_output(result, len(text))
    summary.finish()
    return summary


# -- tasks: a whole file, or one byte range of a large file ------------------------------------------
@dataclass
class Task:
    source: Path
    output: Path  # a temporary file; renamed (or concatenated) by the parent
    context: Context
    bulk: bool
    start: int = 0
    end: int | None = None


@dataclass
class TaskResult:
    summary: Summary | None
    failure: tuple[str, int | None] | None = None  # (kind, line relative to the task's start)


def run_task(engine: Engine, task: Task, options: BulkOptions) -> TaskResult:
    try:
        if task.bulk:
            summary = anonymize_ndjson_range(
                engine, task.source, task.output, task.context, options, task.start, task.end
            )
        else:
            summary = anonymize_json_file(engine, task.source, task.output, task.context)
    except ConfigurationError:
        raise
    except LineFault as fault:
        return TaskResult(None, (fault.kind, fault.line))
    except AnonymizerError as exc:
        return TaskResult(None, (getattr(exc, "kind", type(exc).__name__), None))
    return TaskResult(summary)


def line_ranges(path: Path, parts: int, split_bytes: int) -> list[tuple[int, int | None]]:
    """Byte ranges of about equal size, each starting at a line start."""
    size = path.stat().st_size
    if parts < 2 or size < split_bytes:
        return [(0, None)]
    bounds = [0]
    with path.open("rb") as handle:
        for k in range(1, parts):
            handle.seek(max(size * k // parts, bounds[-1]))
            handle.readline()
            position = handle.tell()
            if position < size and position > bounds[-1]:
                bounds.append(position)
    return [(a, b) for a, b in zip(bounds, [*bounds[1:], None], strict=True)]


_WORKER_ENGINE: Engine | None = None


def _init_worker(raw: dict, keys: dict[str, str], reference_date: Any) -> None:
    global _WORKER_ENGINE
    logging.getLogger("anonymizer.config").setLevel(logging.ERROR)  # the parent already warned
    _WORKER_ENGINE = Engine.from_dict(raw, keys=keys, reference_date=reference_date)


def _run_in_worker(task: Task, options: BulkOptions) -> TaskResult:
    assert _WORKER_ENGINE is not None
    return run_task(_WORKER_ENGINE, task, options)


def run_folder(engine: Engine, source: Path, target: Path, options: BulkOptions) -> BulkResult:
    """Every input file of `source` into `target`: files in parallel, large NDJSON files split
    by byte ranges; the output does not depend on the number of workers."""
    result = BulkResult()
    files = input_files(source, bulk=options.bulk, recursive=options.recursive)
    folder_name = source.resolve().name
    jobs: list[tuple[Path, Path, list[Task]]] = []
    for path in files:
        destination = target / path.relative_to(source)
        if options.skip_existing and destination.exists():
            result.skipped_files += 1
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        context = Context(file_name=path.name, folder_name=folder_name)
        ranges = line_ranges(path, options.workers, options.split_bytes) if options.bulk else [(0, None)]
        tasks = [Task(path, _temporary(destination), context, options.bulk, a, b) for a, b in ranges]
        jobs.append((path, destination, tasks))
    all_tasks = [task for _, _, tasks in jobs for task in tasks]
    try:
        outcomes = _execute(engine, all_tasks, options)
        _assemble(jobs, outcomes, source, result)
    finally:
        for task in all_tasks:
            task.output.unlink(missing_ok=True)
    result.summary.finish()
    return result


def _execute(engine: Engine, tasks: list[Task], options: BulkOptions) -> dict[int, TaskResult]:
    progress = _Progress(len(tasks)) if options.progress else None
    outcomes: dict[int, TaskResult] = {}
    workers = min(options.workers, len(tasks))
    if workers <= 1:
        for number, task in enumerate(tasks):
            outcomes[number] = run_task(engine, task, options)
            if progress:
                progress.step()
    else:
        config = engine.config
        context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(config.raw, config.resolved_keys(), engine.reference_date),
        ) as pool:
            futures = {pool.submit(_run_in_worker, task, options): n for n, task in enumerate(tasks)}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                if progress:
                    progress.step()
    if progress:
        progress.done()
    return outcomes


def _assemble(
    jobs: list[tuple[Path, Path, list[Task]]],
    outcomes: dict[int, TaskResult],
    source: Path,
    result: BulkResult,
) -> None:
    """Join each file's ranges in order, with absolute line numbers, and publish it by rename."""
    number = 0
    for path, destination, tasks in jobs:
        results = [outcomes[number + k] for k in range(len(tasks))]
        number += len(tasks)
        relative = str(path.relative_to(source))
        summary = Summary()
        lines_before = 0
        failure = None
        for task_result in results:
            if task_result.failure is not None:
                kind, line = task_result.failure
                failure = FileFailure(relative, kind, None if line is None else line + lines_before)
                break
            part = task_result.summary
            for fault in part.faults.values():
                fault.first_lines = [line + lines_before for line in fault.first_lines]
            summary.merge(part)
            lines_before += part.lines
        if failure is not None:
            result.failures.append(failure)
            log.error(
                "%s failed%s: %s", relative, f" at line {failure.line}" if failure.line else "", failure.kind
            )
            continue
        first = tasks[0].output
        result.files += 1
        result.summary.merge(summary)
        if not first.exists():
            continue  # a JSON-mode resource the minimum-necessary extension dropped
        with first.open("ab") as out:
            for task in tasks[1:]:
                with task.output.open("rb") as part_file:
                    shutil.copyfileobj(part_file, out, 1 << 20)
        os.replace(first, destination)


class _Progress:
    """A one-line progress display on stderr (a terminal only)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0

    def step(self) -> None:
        self.count += 1
        width = 30
        filled = width * self.count // max(self.total, 1)
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} parts",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        print(file=sys.stderr)
