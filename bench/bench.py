"""Benchmark: the engine with the shipped Safe Harbor configuration against a plain
`orjson.loads` + `orjson.dumps` pass over the same lines, measured in one run (these machines are
noisy: compare the ratios, not the MB/s across runs).

    python bench/bench.py                                  # ../shared/data/synthea-export as it is
    python bench/bench.py --size-mb 500 --workers 1,2      # a 500 MB input built from it
    python bench/bench.py --size-mb 1000 --workers 1       # peak memory on 1 GB

Inputs of a chosen size are built by repeating the source's resources under new ids: every
resource `id` and every `Type/id` reference get the same suffix per copy, so references stay
consistent. Printed: MB/s, resources/s, ratios to the orjson pass for the streaming core in this
process (no interpreter start-up, like the orjson pass) on the compiled core with 1 and 2 threads
and on the Python engine, and for the command line (start-up, imports, its own process and the
output files included), the peak summed RSS of the command line's process tree, the machine's own
scaling (two orjson passes at once in two processes against one: the ceiling of any speed-up from
threads or workers on it), and a profile of where the time goes (the compiled core's by `perf`
when the machine has it, the Python engine's by cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def core_available() -> bool:
    from anonymizer import core

    return core.available()


KEYS = {
    "ANONYMIZER_CRYPTO_HASH_KEY": "benchmark-crypto-hash-key-000001",
    "ANONYMIZER_DATE_SHIFT_KEY": "benchmark-date-shift-key-0000001",
}


# -- building inputs -----------------------------------------------------------------------------
def _suffix_references(value, suffix: str):
    if type(value) is dict:
        out = {}
        for key, item in value.items():
            if key == "reference" and type(item) is str and "/" in item and not item.startswith("#"):
                item = item + suffix
            out[key] = _suffix_references(item, suffix)
        return out
    if type(value) is list:
        return [_suffix_references(item, suffix) for item in value]
    return value


def input_arguments(description: str | None, size_mb: int) -> argparse.ArgumentParser:
    """The benchmarks' common arguments: the export to build inputs from, and their size."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "synthea-export")
    parser.add_argument("--size-mb", type=int, default=size_mb, help="build an input of about this size")
    return parser


def build_input(source: Path, target: Path, size_mb: int) -> None:
    """Copies of every source file's lines, with ids and references suffixed per copy, until the
    folder holds about `size_mb` MB (files keep their names; each grows)."""
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(source.glob("*.ndjson"))
    source_size = sum(f.stat().st_size for f in files)
    copies = max(1, round(size_mb * 1_000_000 / source_size))
    for path in files:
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        with (target / path.name).open("wb") as out:
            for copy in range(copies):
                suffix = f"-c{copy}"
                for resource in lines:
                    clone = _suffix_references(resource, suffix)
                    if "id" in clone:
                        clone["id"] = f"{clone['id']}{suffix}"
                    out.write(orjson.dumps(clone) + b"\n")


# -- measuring -----------------------------------------------------------------------------------
def orjson_pass(folder: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    size = count = 0
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    orjson.dumps(orjson.loads(line))
                    count += 1
                size += len(line)
    return time.perf_counter() - start, size, count


def machine_scaling(folder: Path) -> float:
    """How well this machine runs two CPU-bound passes at once: the orjson pass alone, then two
    of it at once in two processes; 2.0 on two free cores. Virtual machines shared with other
    tenants give less, and no engine scales past it: compare its thread and worker speed-ups
    with this figure of the same run."""
    import multiprocessing

    alone = orjson_pass(folder)[0]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        start = time.perf_counter()
        pool.map(orjson_pass, [folder, folder])
        both = time.perf_counter() - start
    return 2 * alone / both


def streaming_core(folder: Path, kind: str = "core", threads: int = 1) -> float:
    """Wall time of the streaming core in this process, one worker: a fresh engine (plans,
    generated code and caches built during the pass, as in a worker), every file streamed
    through `anonymize_stream` from disk, the output bytes dropped. Interpreter start-up and
    imports are left out, as they are for the orjson pass. `kind`: the compiled core or the
    Python engine; `threads`: the compiled core's."""
    sys.path.insert(0, str(REPO))
    os.environ.update(KEYS)
    from datetime import date

    from anonymizer import Engine
    from anonymizer.cli import shipped_config
    from anonymizer.stream import anonymize_stream

    engine = Engine.from_file(shipped_config(), reference_date=date(2026, 1, 1), kind=kind)
    start = time.perf_counter()
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            chunks = iter(lambda: handle.read(1 << 20), b"")
            for _ in anonymize_stream(chunks, engine, input_complete=True, threads=threads):
                pass
    return time.perf_counter() - start


def _tree_rss_kb(root: int) -> int:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def command_line(
    folder: Path, output: Path, workers: int, command: list[str] | None = None, threads: int = 1
) -> tuple[float, int]:
    """Wall time and peak summed RSS (KiB) of `fhir-anonymize -b` over the folder (or of another
    `fhir-anonymize` command given as its arguments)."""
    env = {**os.environ, **KEYS}
    arguments = command or [
        "-i", str(folder), "-o", str(output), "-b", "--workers", str(workers), "--quiet",
        "--reference-date", "2026-01-01", "--threads", str(threads),
    ]  # fmt: skip
    command = [sys.executable, "-m", "anonymizer", *arguments]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO)
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kb(process.pid))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    status = process.wait()
    elapsed = time.perf_counter() - start
    stop.set()
    poller.join()
    if status not in (0, 3):
        raise SystemExit(f"the command line failed with status {status}")
    return elapsed, peak


def _first_megabytes(folder: Path, limit_mb: int) -> list[bytes]:
    chunks: list[bytes] = []
    budget = limit_mb * 1_000_000
    for path in sorted(folder.glob("*.ndjson")):
        data = path.read_bytes()
        if budget <= 0:
            break
        if len(data) > budget:
            data = data[: data.find(b"\n", budget) + 1 or len(data)]
        chunks.append(data)
        budget -= len(data)
    return chunks


# Where the compiled core's time goes: perf's symbols, by the part of the core they belong to.
CORE_PARTS = (
    ("json::", "reading JSON (json.rs)"),
    ("walk::", "walking the plan (walk.rs)"),
    ("write::", "writing JSON (write.rs)"),
    ("dates::", "dates (dates.rs)"),
    ("methods::", "methods (methods/)"),
    ("sha2::", "methods (methods/)"),
    ("hmac", "methods (methods/)"),
    ("numbers::", "numbers (numbers.rs)"),
    ("block::", "lines (block.rs)"),
    ("memchr", "lines (block.rs)"),
    ("hashbrown", "slot and cache lookups (hash maps)"),
    ("regex", "regular expressions"),
    ("bumpalo", "allocation"),
    ("malloc", "allocation"),
    ("free", "allocation"),
    ("mem", "memory copies and compares"),
)


def core_profile(folder: Path, limit_mb: int = 100) -> None:
    """Where the compiled core's time goes (`perf record` of a process streaming up to
    `limit_mb` MB through it), grouped by part of the core; Python's share is the stream's glue
    and the lines handed back to the Python engine."""
    if shutil.which("perf") is None:
        print("\n(no perf on this machine: no profile of the compiled core)")
        return
    code = (
        f"import sys; sys.argv = ['bench', {str(folder)!r}]\n"
        "from bench.bench import streaming_core\n"
        f"from pathlib import Path; streaming_core(Path({str(folder)!r}))\n"
    )
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "perf.data"
        run = subprocess.run(
            ["perf", "record", "-q", "-o", str(data), sys.executable, "-c", code],
            cwd=REPO, env={**os.environ, **KEYS}, capture_output=True, text=True,
        )  # fmt: skip
        if run.returncode != 0:
            print(f"\n(perf record failed: {run.stderr.strip()[-200:]})")
            return
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "--stdio"],
            capture_output=True, text=True,
        )  # fmt: skip
    groups: dict[str, float] = defaultdict(float)
    for line in report.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].endswith("%"):
            continue
        share, dso, symbol = float(parts[0][:-1]), parts[1], " ".join(parts[3:])
        if "_core" in dso or "fhir_anonymize_core" in dso or "libc" in dso:
            group = next((name for key, name in CORE_PARTS if key in symbol), "the core, other")
            if "libc" in dso and group == "the core, other":
                group = "libc, other"
        elif "python" in dso:
            group = "Python (the stream's glue, lines handed back, start-up)"
        elif "kernel" in dso:
            group = "kernel (reading the files)"
        else:
            group = f"other ({dso})"
        groups[group] += share
    print("\nprofile of the compiled core streaming the input, 1 thread (perf, share of samples):")
    for group, share in sorted(groups.items(), key=lambda item: -item[1])[:14]:
        print(f"  {share:5.1f}%  {group}")


def profile(folder: Path, limit_mb: int = 15) -> None:
    """Where the Python engine's time goes, grouped by module: a fresh engine streaming up to
    `limit_mb` MB of lines, as the streaming core does (plans and generated code built on the way,
    reuse caches on)."""
    sys.path.insert(0, str(REPO))
    os.environ.update(KEYS)
    from anonymizer import Engine
    from anonymizer.cli import shipped_config
    from anonymizer.stream import anonymize_stream

    engine = Engine.from_file(shipped_config(), kind="python")
    chunks = _first_megabytes(folder, limit_mb)

    def run() -> None:
        for data in chunks:
            for _ in anonymize_stream([data], engine, input_complete=True):
                pass

    profiler = cProfile.Profile()
    profiler.runcall(run)
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():
        if filename.startswith("<shape"):
            group = "generated walk code (shapes.py)"
        elif "/anonymizer/" in filename:
            group = "anonymizer/" + filename.split("/anonymizer/")[1]
        elif "orjson" in function:
            group = "orjson loads and dumps"
        elif function == "<built-in method builtins.compile>":
            group = "compiling generated code"
        else:
            group = "other built-ins (regex, dict, str, hashlib)"
        groups[group] += tottime
    total = sum(groups.values())
    size = sum(len(data) for data in chunks) / 1e6
    print(f"\nprofile of the Python engine streaming {size:.1f} MB (share of {total:.2f} s, under cProfile):")
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1])[:14]:
        print(f"  {100 * seconds / total:5.1f}%  {group}")


def main() -> None:
    parser = input_arguments(__doc__, 0)  # 0: the source as it is
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-python", action="store_true", help="leave out the Python engine's pass")
    args = parser.parse_args()
    if not args.source.is_dir():
        raise SystemExit(f"{args.source} is not a folder of NDJSON files")
    with tempfile.TemporaryDirectory(prefix="fhir-bench-") as scratch:
        folder = args.source
        if args.size_mb:
            folder = Path(scratch) / "input"
            print(f"building a {args.size_mb} MB input from {args.source} ...", flush=True)
            build_input(args.source, folder, args.size_mb)
        base_time, size, count = orjson_pass(folder)
        mb = size / 1e6
        print(f"\ninput: {mb:.1f} MB, {count} resources in {len(list(folder.glob('*.ndjson')))} files")
        print(f"{'pass':36} {'seconds':>8} {'MB/s':>8} {'res/s':>9} {'ratio':>7} {'peak RSS':>9}")
        print(
            f"{'orjson loads+dumps':36} {base_time:8.2f} {mb / base_time:8.1f} {count / base_time:9.0f} "
            f"{1.0:7.3f} {'':>9}"
        )
        row = "{:36} {:8.2f} {:8.1f} {:9.0f} {:7.3f} {:>9}"
        runs = [("compiled core, 1 thread", "core", 1), ("compiled core, 2 threads", "core", 2)]
        if not args.no_python:
            runs.append(("Python engine", "python", 1))
        measured = {}
        for label, kind, threads in runs:
            if kind == "core" and not core_available():
                print(f"{label:36} (the compiled core is not built)")
                continue
            seconds = measured[label] = streaming_core(folder, kind, threads)
            print(
                row.format(
                    label + ", in process", seconds, mb / seconds, count / seconds, base_time / seconds, ""
                )
            )
        one, two = measured.get("compiled core, 1 thread"), measured.get("compiled core, 2 threads")
        if one and two:
            print(f"{'':36} 2 threads: {one / two:.2f}x one thread")
            print(
                f"{'':36} the machine: two orjson passes at once ran {machine_scaling(folder):.2f}x"
                " as fast as one after the other"
            )
        for workers in [int(w) for w in args.workers.split(",")]:
            elapsed, peak = command_line(folder, Path(scratch) / f"out{workers}", workers)
            label = f"fhir-anonymize -b, {workers} worker(s)"
            peak_text = f"{peak / 1024:7.0f}MB"
            print(row.format(label, elapsed, mb / elapsed, count / elapsed, base_time / elapsed, peak_text))
        if core_available():
            elapsed, peak = command_line(folder, Path(scratch) / "threads", 1, threads=2)
            label = "fhir-anonymize -b, 1 w, 2 thr"
            peak_text = f"{peak / 1024:7.0f}MB"
            print(row.format(label, elapsed, mb / elapsed, count / elapsed, base_time / elapsed, peak_text))
        if not args.no_profile:
            if core_available():
                core_profile(folder)
            profile(folder)


if __name__ == "__main__":
    main()
