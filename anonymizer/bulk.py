"""Folders of files through the engine: the command line's JSON mode and bulk (NDJSON) mode.

Each output is written under a temporary name beside its final one and renamed on success, so a
reader never sees half a file. A failing file is reported (kind and line, never content) and the
others are still written. Temporary names carry the process id of the run that made them: a run
into the same folder removes those a dead run left behind (a kill -9 leaves them), and worker
processes end with their parent whatever signal ended it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonymizer import jsonio
from anonymizer.engine import Context, Engine, check_resource_type, parse_document
from anonymizer.errors import ConfigurationError, InvalidInputError, ProcessingError
from anonymizer.lines import counted, file_chunks
from anonymizer.stream import DEFAULT_MAX_LINE_BYTES, LineFault, anonymize_stream
from anonymizer.summary import Summary

log = logging.getLogger("anonymizer.bulk")


@dataclass
class BulkOptions:
    bulk: bool = True
    recursive: bool = False
    skip_existing: bool = False
    workers: int = 1
    on_invalid_line: str = "drop"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    progress: bool = False
    threads: int = 1  # the compiled core's threads per worker
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

    def hints(self) -> list[str]:
        """Where to look, when something was left out or failed (no content, only places)."""
        out = []
        for failure in self.failures:
            where = f"{failure.path}:{failure.line}" if failure.line else failure.path
            out.append(f"failed: {where}: {failure.kind.replace('_', ' ')}")
        skipped = self.summary.skipped
        if skipped.count:
            file, line = skipped.first_lines[0]
            out.append(
                f"replaced: {skipped.count} resource(s) by the empty resource (processingErrors: "
                f"skip), the first at {file}:{line}"
            )
        first = self.summary.first_fault()
        if first is not None:
            kind, file, line = first
            out.append(
                f"left out: {self.dropped_lines} line(s), the first at {file}:{line} "
                f"({kind.replace('_', ' ')}); every kind and line: --summary FILE or -v"
            )
        return out


def input_files(source: Path, *, bulk: bool, recursive: bool) -> list[Path]:
    if source.is_file():
        return [source]
    pattern = "*.ndjson" if bulk else "*.json"
    found = source.rglob(pattern) if recursive else source.glob(pattern)
    return sorted(p for p in found if p.is_file() and not _TEMPORARY.fullmatch(p.name))


def read_chunks(
    path: Path, start: int = 0, end: int | None = None, progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    return counted(file_chunks(path, start, end), progress)


# -- temporary files ---------------------------------------------------------------------------------
# `.<final name>.<pid of the run>-<32 hex>.tmp`, beside the final name.
_TEMPORARY = re.compile(r"\..+\.(?P<pid>\d+)-[0-9a-f]{32}\.tmp")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(target: Path) -> int:
    """Remove the temporary files that runs no longer alive left in `target` (a kill -9, a power
    cut); those of a run still going are left alone. Returns how many were removed."""
    if not target.is_dir():
        return 0
    removed = 0
    for path in target.rglob(".*.tmp"):
        m = _TEMPORARY.fullmatch(path.name)
        if m is not None and path.is_file() and not _alive(int(m["pid"])):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) an interrupted run left in %s", removed, target)
    return removed


# -- one file, or one byte range of a large file ---------------------------------------------------
def anonymize_ndjson_range(
    engine: Engine,
    source: Path,
    output: Path,
    context: Context,
    options: BulkOptions,
    start: int = 0,
    end: int | None = None,
    *,
    file: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Lines of `source` from byte `start` (a line start) to `end` into `output`. Line numbers in
    the summary count from 1 at `start`. Raises LineFault (under `fail`) or AnonymizerError."""
    run = anonymize_stream(
        read_chunks(source, start, end, progress),
        engine,
        context=context,
        start_offset=start,
        on_invalid_line=options.on_invalid_line,
        max_line_bytes=options.max_line_bytes,
        input_complete=True,
        file=file,
        threads=options.threads,
    )
    with output.open("wb") as out:
        for chunk in run:
            out.write(chunk)
    return run.summary


def anonymize_json_file(
    engine: Engine, source: Path, output: Path, context: Context, file: str = "-"
) -> Summary:
    """One resource per file, written pretty as the reference writes it."""
    summary = Summary()
    summary.lines = 1
    data = source.read_bytes()
    summary.input_bytes = len(data)
    data = data.removeprefix(b"\xef\xbb\xbf")
    resource = parse_document(data)
    resource_type = check_resource_type(resource)
    summary.count_input(resource_type)
    result, dropped, skipped = engine.process(resource, context, source=data)
    if dropped is not None:  # minimum necessary: nothing is written for it
        summary.dropped[(resource_type, dropped)] += 1
        summary.finish()
        return summary
    if skipped:
        summary.skip(1, file)
    assert result is not None  # (None only when dropped)
    text = jsonio.dumps_pretty(result)
    output.write_bytes(text)
    summary.count_output(result, len(text))
    summary.finish()
    return summary


@dataclass
class Task:
    source: Path
    output: Path  # a temporary file; renamed (or concatenated) by the parent
    context: Context
    bulk: bool
    start: int = 0
    end: int | None = None
    file: str = "-"  # the name faults carry: the path relative to the input folder


@dataclass
class TaskResult:
    summary: Summary | None
    failure: tuple[str, int | None] | None = None  # (kind, line relative to the task's start)


def run_task(
    engine: Engine, task: Task, options: BulkOptions, progress: Callable[[int], None] | None = None
) -> TaskResult:
    try:
        if task.bulk:
            summary = anonymize_ndjson_range(
                engine,
                task.source,
                task.output,
                task.context,
                options,
                task.start,
                task.end,
                file=task.file,
                progress=progress,
            )
        else:
            summary = anonymize_json_file(engine, task.source, task.output, task.context, task.file)
            if progress is not None:
                progress(summary.input_bytes)
    except ConfigurationError:
        raise
    except LineFault as fault:
        return TaskResult(None, (fault.kind, fault.line))
    except InvalidInputError as exc:
        return TaskResult(None, (exc.kind, None))
    except ProcessingError:
        return TaskResult(None, ("processing_error", None))
    except Exception as exc:  # a file must not end the run; only the type is logged (no content)
        log.warning("%s: internal error (%s)", task.file, type(exc).__name__)
        return TaskResult(None, ("internal_error", None))
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


# -- worker processes -----------------------------------------------------------------------------
_WORKER_ENGINE: Engine | None = None
_WORKER_PROGRESS: Any = None  # a multiprocessing.Value the parent reads


def _die_with_parent(parent: int) -> None:
    """End this worker when its parent ends, whatever ended it (kill -9 included): the kernel's
    parent-death signal on Linux, and a watcher thread everywhere (also covering a parent that
    died before the signal was set)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(
    raw: dict, keys: dict[str, str], reference_date: Any, kind: str, parent: int, progress: Any
) -> None:
    global _WORKER_ENGINE, _WORKER_PROGRESS
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt ends
    logging.getLogger("anonymizer.config").setLevel(logging.ERROR)  # the parent already warned
    _WORKER_PROGRESS = progress
    _WORKER_ENGINE = Engine.from_dict(raw, keys=keys, reference_date=reference_date, kind=kind)


def _worker_progress(count: int) -> None:
    with _WORKER_PROGRESS.get_lock():
        _WORKER_PROGRESS.value += count


def _run_in_worker(task: Task, options: BulkOptions) -> TaskResult:
    assert _WORKER_ENGINE is not None
    progress = _worker_progress if _WORKER_PROGRESS is not None else None
    return run_task(_WORKER_ENGINE, task, options, progress)


# -- a folder -------------------------------------------------------------------------------------
# Runs the tasks, by number: worker processes here (`_execute`), or Spark's executors (spark.py).
Executor = Callable[[Engine, list[Task], BulkOptions], dict[int, TaskResult]]


def run_folder(
    engine: Engine, source: Path, target: Path, options: BulkOptions, execute: Executor | None = None
) -> BulkResult:
    """Every input file of `source` (a folder, or one file) into `target`: files in parallel,
    large NDJSON files split by byte ranges; the output does not depend on the number of workers.
    Tasks write temporary files beside their final names; files are published by rename once all
    their parts are done."""
    result = BulkResult()
    remove_stale_temporaries(target)
    single = source.is_file()
    root = source.parent if single else source
    files = input_files(source, bulk=options.bulk, recursive=options.recursive)
    folder_name = root.resolve().name
    jobs: list[tuple[Path, Path, list[Task]]] = []
    for path in files:
        relative = path.relative_to(root)
        destination = target / relative
        if options.skip_existing and destination.exists():
            result.skipped_files += 1
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        context = Context(file_name=path.name, folder_name=folder_name)
        ranges = line_ranges(path, options.workers, options.split_bytes) if options.bulk else [(0, None)]
        tasks = [
            Task(path, _temporary(destination), context, options.bulk, a, b, str(relative)) for a, b in ranges
        ]
        jobs.append((path, destination, tasks))
    all_tasks = [task for _, _, tasks in jobs for task in tasks]
    try:
        outcomes = (execute or _execute)(engine, all_tasks, options)
        _assemble(jobs, outcomes, root, result)
    finally:
        for task in all_tasks:
            task.output.unlink(missing_ok=True)
    result.summary.finish()
    return result


def _execute(engine: Engine, tasks: list[Task], options: BulkOptions) -> dict[int, TaskResult]:
    total = sum(task_bytes(task) for task in tasks)
    outcomes: dict[int, TaskResult] = {}
    workers = min(options.workers, len(tasks))
    if workers <= 1:
        progress = Progress(total, enabled=options.progress)
        with progress:
            for number, task in enumerate(tasks):
                outcomes[number] = run_task(engine, task, options, progress.add)
        return outcomes
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    shared = context.Value("Q", 0)
    progress = Progress(total, enabled=options.progress, shared=shared)
    config = engine.config
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(
            config.raw,
            config.resolved_keys(),
            engine.reference_date,
            engine.kind,
            os.getpid(),
            shared,
        ),
    )
    try:
        with progress:
            # Largest first: the small tasks then fill the end, and no worker is left waiting for
            # the one that drew a large file last.
            order = sorted(range(len(tasks)), key=lambda n: -task_bytes(tasks[n]))
            futures = {pool.submit(_run_in_worker, tasks[n], options): n for n in order}
            for future in as_completed(futures):
                number = futures[future]
                try:
                    outcomes[number] = future.result()
                except BrokenProcessPool:  # a worker died (killed from outside, out of memory)
                    log.error("%s: a worker process ended abruptly", tasks[number].file)
                    outcomes[number] = TaskResult(None, ("worker_died", None))
    except BaseException:
        _stop_workers(pool)  # an interrupt or a configuration error: no worker outlives it
        raise
    pool.shutdown(wait=True)
    return outcomes


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    # The executor would wait for every running task; the workers are killed instead (their
    # partial outputs are temporary files, removed by the caller).
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)
    pool.shutdown(wait=False, cancel_futures=True)


def task_bytes(task: Task) -> int:
    size = task.source.stat().st_size
    return (task.end if task.end is not None else size) - task.start


def _assemble(
    jobs: list[tuple[Path, Path, list[Task]]],
    outcomes: dict[int, TaskResult],
    root: Path,
    result: BulkResult,
) -> None:
    """Join each file's ranges in order, with absolute line numbers, and publish it by rename."""
    number = 0
    for path, destination, tasks in jobs:
        results = [outcomes[number + k] for k in range(len(tasks))]
        number += len(tasks)
        relative = str(path.relative_to(root))
        summary = Summary()
        lines_before = 0
        failure = None
        for task_result in results:
            if task_result.failure is not None:
                kind, line = task_result.failure
                failure = FileFailure(relative, kind, None if line is None else line + lines_before)
                break
            part = task_result.summary
            assert part is not None  # (a task has a summary or a failure)
            part.shift_lines(lines_before)
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


# -- progress ---------------------------------------------------------------------------------------
class Progress:
    """Bytes read over all files and workers, with rate and time left, on one line of stderr
    (a terminal only): workers add to a shared counter, a thread here redraws twice a second."""

    def __init__(self, total: int, *, enabled: bool, shared: Any = None, interval: float = 0.5) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.shared = shared
        self.interval = interval
        self.local = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, count: int) -> None:
        self.local += count

    @property
    def done(self) -> int:
        return self.local + (self.shared.value if self.shared is not None else 0)

    def line(self) -> str:
        done, elapsed = min(self.done, self.total), max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else 0.0
        return (
            f"{_megabytes(done)} / {_megabytes(self.total)} MB ({100 * done // self.total}%), "
            f"{_megabytes(rate)} MB/s, {_clock(left)} left"
        )

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._draw, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            print(f"\r{self.line()}\033[K", file=sys.stderr, flush=True)

    def _draw(self) -> None:
        while not self._stop.wait(self.interval):
            print(f"\r{self.line()}\033[K", end="", file=sys.stderr, flush=True)


def _megabytes(count: float) -> str:
    return f"{count / 1e6:.1f}"


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
