"""The engine on Spark (Databricks, Synapse, Fabric): `pip install "fhir-anonymize[spark]"`.

`anonymize(spark, input_path, output_path, config)` runs the command line's plan on a cluster: the
input folder's NDJSON files are cut into the same tasks (a file, or byte ranges of a large file,
each starting at a line), the tasks run on Spark's executors, each with an engine built once per
executor process from the broadcast configuration and keys, each streaming its lines through the
engine (the compiled core when installed) into a temporary file beside the final name; the driver
then joins a file's parts in order and publishes it by rename, and merges the tasks' summaries
(faults with file and absolute line) into one run summary. Output is byte-identical to
`fhir-anonymize -b -r` on the same input, whatever the cluster's size, and a job that fails or is
killed leaves no file under a final name (the next run into the folder removes its temporaries).

Paths are file system paths the driver and every executor see alike: a local folder, or a cloud
store mounted as one (Databricks `/Volumes/...` or `/dbfs/...`, Synapse and Fabric `/synfs/...`
through mssparkutils mounts).

`anonymize_column(df, "value", config)` de-identifies NDJSON text already held in a column.

Runnable with spark-submit:
    spark-submit "$(python -c 'import anonymizer.spark as s; print(s.__file__)')" -i IN -o OUT -c CONFIG
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anonymizer.bulk import BulkOptions, Task, TaskResult, run_folder, run_task, task_bytes
from anonymizer.engine import Context, Engine
from anonymizer.errors import AnonymizerError
from anonymizer.stream import DEFAULT_MAX_LINE_BYTES, anonymize_stream

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("anonymizer.spark")

# What an executor needs to build the run's engine: the raw configuration, its resolved keys, the
# reference date and the engine kind. Broadcast once; never logged.
Setup = tuple[dict, dict[str, str], date, str]


class SparkRunFailed(AnonymizerError):
    """A file failed (`on_invalid_line="fail"`, or a file-level error): names file and line only."""


def anonymize(
    spark: SparkSession,
    input_path: str | Path,
    output_path: str | Path,
    config: str | Path | dict,
    *,
    keys: dict[str, str] | None = None,
    reference_date: date | None = None,
    on_invalid_line: str = "drop",
    summary_path: str | Path | None = None,
    split_bytes: int = 64 << 20,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> dict:
    """Every `*.ndjson` file below `input_path` (sub-folders included) into `output_path` with the
    same relative name. Returns the run summary (docs/contract.md section 6), also written to
    `summary_path` (default: `<output_path>.summary.json`, beside the output). Raises
    SparkRunFailed when a file failed, ConfigurationError before anything runs."""
    engine = _engine(config, keys, reference_date)
    source, target = Path(input_path), Path(output_path)
    if not source.is_dir():
        raise AnonymizerError(f"input {source} is not a folder")
    options = BulkOptions(
        bulk=True,
        recursive=True,
        # Files over split_bytes are cut into this many ranges: enough for the packing to balance.
        workers=4 * max(spark.sparkContext.defaultParallelism, 1),
        on_invalid_line=on_invalid_line,
        split_bytes=split_bytes,
        max_line_bytes=max_line_bytes,
    )
    result = run_folder(engine, source, target, options, execute=_SparkExecutor(spark))
    summary = result.summary_dict(engine)
    destination = Path(summary_path) if summary_path else target.with_name(target.name + ".summary.json")
    destination.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if result.failures:
        failure = result.failures[0]
        where = f"{failure.path}:{failure.line}" if failure.line else failure.path
        raise SparkRunFailed(
            f"{where}: {failure.kind.replace('_', ' ')} ({len(result.failures)} file(s) failed)"
        )
    return summary


def _engine(config: str | Path | dict, keys: dict[str, str] | None, reference_date: date | None) -> Engine:
    if isinstance(config, dict):
        return Engine.from_dict(config, keys=keys, reference_date=reference_date)
    return Engine.from_file(config, keys=keys, reference_date=reference_date)


def _setup(engine: Engine) -> Setup:
    return (engine.config.raw, engine.config.resolved_keys(), engine.reference_date, engine.kind)


class _SparkExecutor:
    """bulk.Executor on Spark: the tasks packed into a few partitions per core (largest first,
    each to the lightest partition: a Python task costs Spark about a tenth of a second to start,
    more than a small file's work), results collected by task number."""

    PARTITIONS_PER_CORE = 2

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def __call__(self, engine: Engine, tasks: list[Task], options: BulkOptions) -> dict[int, TaskResult]:
        if not tasks:
            return {}
        context = self.spark.sparkContext
        slots = min(len(tasks), self.PARTITIONS_PER_CORE * max(context.defaultParallelism, 1))
        groups = pack(list(enumerate(tasks)), slots)
        setup = context.broadcast(_setup(engine))
        try:
            rdd = context.parallelize(groups, len(groups))
            run = rdd.mapPartitions(lambda items: _run_partition(setup.value, options, items))
            return dict(run.collect())
        finally:
            setup.unpersist()


def pack(numbered: list[tuple[int, Task]], slots: int) -> list[list[tuple[int, Task]]]:
    """The tasks in `slots` groups of about equal bytes: largest first, each to the lightest."""
    groups: list[list[tuple[int, Task]]] = [[] for _ in range(slots)]
    loads = [(0, n) for n in range(slots)]
    sized = sorted(((task_bytes(task), number, task) for number, task in numbered), key=lambda s: -s[0])
    for size, number, task in sized:
        load, n = heapq.heappop(loads)
        groups[n].append((number, task))
        heapq.heappush(loads, (load + size, n))
    return [group for group in groups if group]


# -- on the executors ---------------------------------------------------------------------------------
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def executor_engine(setup: Setup) -> Engine:
    """The engine of a run in this executor process, built on first use (engines are shared by
    threads: docs/contract.md section 2)."""
    raw, keys, reference_date, kind = setup
    # A digest of the whole setup names the run's engine here (keys only inside the digest).
    name = hashlib.sha256(
        json.dumps([raw, keys, reference_date.isoformat(), kind], sort_keys=True).encode()
    ).hexdigest()
    with _ENGINES_LOCK:
        engine = _ENGINES.get(name)
        if engine is None:
            logging.getLogger("anonymizer.config").setLevel(logging.ERROR)  # the driver warned
            engine = _ENGINES[name] = Engine.from_dict(
                raw, keys=keys, reference_date=reference_date, kind=kind
            )
        return engine


def _run_partition(
    setup: Setup, options: BulkOptions, groups: Iterable[list[tuple[int, Task]]]
) -> Iterator[tuple[int, TaskResult]]:
    engine = executor_engine(setup)
    for group in groups:
        for number, task in group:
            yield number, run_task(engine, task, options)


# -- NDJSON text in a DataFrame column ----------------------------------------------------------------
def anonymize_column(
    df: DataFrame,
    column: str,
    config: str | Path | dict,
    *,
    keys: dict[str, str] | None = None,
    reference_date: date | None = None,
    file_name: str | None = None,
    folder_name: str | None = None,
) -> DataFrame:
    """`df` with each row's `column` (one FHIR resource as JSON text, an NDJSON line) replaced by its
    anonymized line (compact JSON, no newline), and a column `<column>_fault`: null, or the fault
    kind of a value left out (then `column` is null). Other columns are kept. `file_name` and
    `folder_name` are the date-shift scopes' names, as the command line would give them."""
    from pyspark.sql.types import StringType, StructField, StructType

    engine = _engine(config, keys, reference_date)
    setup = df.sparkSession.sparkContext.broadcast(_setup(engine))
    names = df.columns
    index = names.index(column)
    context = Context(file_name=file_name, folder_name=folder_name)

    def run(rows: Iterable[Any]) -> Iterator[tuple]:
        executor = executor_engine(setup.value)
        for row in rows:
            values = list(row)
            values[index], fault = anonymize_line(executor, values[index], context)
            yield (*values, fault)

    fields = [*df.schema.fields, StructField(f"{column}_fault", StringType(), True)]
    return df.sparkSession.createDataFrame(df.rdd.mapPartitions(run), StructType(fields))


def anonymize_line(engine: Engine, text: str | None, context: Context) -> tuple[str | None, str | None]:
    """One NDJSON line through the engine, as a stream of one line: (output line or None, fault
    kind or None; "dropped" for a resource minimumNecessary leaves out)."""
    if text is None:
        return None, None
    # A value may hold a resource written over several lines: line ends are whitespace to JSON
    # (inside a string they would be invalid anyway), so the value stays one line.
    line = text.replace("\r", " ").replace("\n", " ")
    run = anonymize_stream(
        [line.encode("utf-8", "surrogatepass")], engine, context=context, input_complete=True
    )
    output = b"".join(run)
    faults = run.summary.faults
    if faults:
        return None, next(iter(faults))
    if not output:
        return None, "dropped" if run.summary.dropped else None
    return output.rstrip(b"\n").decode("utf-8"), None


# -- the command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`fhir-anonymize spark -i PATH -o PATH [-c CONFIG] [--summary FILE]`, or the same arguments to
    `spark-submit .../anonymizer/spark.py`. Keys come from the environment (ANONYMIZER_*_KEY, e.g.
    from a secret scope), as for the command line."""
    p = argparse.ArgumentParser(prog="fhir-anonymize spark", description=main.__doc__)
    p.add_argument("-i", "--inputFolder", required=True)
    p.add_argument("-o", "--outputFolder", required=True)
    p.add_argument("-c", "--configFile", help="default: the shipped safe-harbor.json")
    p.add_argument("--summary", help="the run summary (default: <output>.summary.json)")
    p.add_argument("--reference-date", type=date.fromisoformat)
    p.add_argument("--on-invalid-line", choices=("drop", "fail"), default="drop")
    args = p.parse_args(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("fhir-anonymize").getOrCreate()
    try:
        summary = anonymize(
            spark,
            args.inputFolder,
            args.outputFolder,
            args.configFile or str(resources.files("anonymizer") / "configs" / "safe-harbor.json"),
            reference_date=args.reference_date,
            on_invalid_line=args.on_invalid_line,
            summary_path=args.summary,
        )
    except AnonymizerError as exc:
        print(f"fhir-anonymize spark: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    faults = sum(f["count"] for f in summary.get("faults", {}).values())
    print(
        f"{summary['files']['processed']} file(s), {summary['output']['resources']} resource(s) written, "
        f"{faults} line(s) left out"
    )
    return 3 if faults else 0


if __name__ == "__main__":  # spark-submit .../anonymizer/spark.py
    from anonymizer.spark import main as _main  # the package's module, which executors import too

    sys.exit(_main())
