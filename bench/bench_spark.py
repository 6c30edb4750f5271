"""Benchmark: anonymizer.spark on local[1] and local[2] against the command line (1 and 2 workers),
on the same input in one run (these machines are noisy: compare within a run).

    python bench/bench_spark.py --size-mb 500

Each Spark run is a process of its own (spark-submit's way: one SparkSession per process); its time
is the job's (`anonymize`), from the session up, without the JVM's start. The command line's time
includes Python's start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench import KEYS, build_input, input_arguments  # noqa: E402

SPARK_JOB = """
import json, os, sys, time
from datetime import date
from pyspark.sql import SparkSession
from anonymizer.spark import anonymize
os.environ["PYSPARK_PYTHON"] = sys.executable
spark = (SparkSession.builder.master(sys.argv[1]).config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "2g").getOrCreate())
spark.sparkContext.parallelize([0], 1).count()  # executors up before the clock starts
start = time.perf_counter()
anonymize(spark, sys.argv[2], sys.argv[3], sys.argv[4], reference_date=date(2026, 1, 1))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def spark_run(master: str, source: Path, target: Path) -> float:
    from anonymizer.cli import shipped_config

    done = subprocess.run(
        [sys.executable, "-c", SPARK_JOB, master, str(source), str(target), str(shipped_config())],
        cwd=REPO,
        env={**os.environ, **KEYS},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def cli_run(source: Path, target: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            *(sys.executable, "-m", "anonymizer", "-b", "-i", str(source), "-o", str(target), "--quiet"),
            *("--workers", str(workers), "--reference-date", "2026-01-01"),
        ],
        cwd=REPO,
        env={**os.environ, **KEYS},
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    args = input_arguments(__doc__, 500).parse_args()
    with tempfile.TemporaryDirectory(prefix="fhir-bench-spark-") as scratch:
        folder = Path(scratch) / "input"
        print(f"building a {args.size_mb} MB input from {args.source} ...", flush=True)
        build_input(args.source, folder, args.size_mb)
        mb = sum(p.stat().st_size for p in folder.glob("*.ndjson")) / 1e6
        runs = [
            ("command line, 1 worker", lambda t: cli_run(folder, t, 1)),
            ("spark local[1]", lambda t: spark_run("local[1]", folder, t)),
            ("command line, 2 workers", lambda t: cli_run(folder, t, 2)),
            ("spark local[2]", lambda t: spark_run("local[2]", folder, t)),
        ]
        seconds = {}
        print(f"\ninput: {mb:.1f} MB\n{'run':28} {'seconds':>8} {'MB/s':>8}")
        for n, (label, run) in enumerate(runs):
            seconds[label] = run(Path(scratch) / f"out{n}")
            print(f"{label:28} {seconds[label]:8.2f} {mb / seconds[label]:8.1f}", flush=True)
        one, two = seconds["spark local[1]"], seconds["spark local[2]"]
        print(f"\nspark local[2] / local[1]: {one / two:.2f}x")
        for label, spark_seconds in (("1 worker", one), ("2 workers", two)):
            speed = seconds[f"command line, {label}"] / spark_seconds
            print(f"spark against the command line, {label}: {speed:.2f} of its speed")


if __name__ == "__main__":
    main()
