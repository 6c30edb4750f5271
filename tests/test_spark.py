"""anonymizer.spark on a local PySpark (local[2]): output byte-identical to the command line on the
Synthea export (the default profile, the `patient` date-shift scope, minimum necessary), faults
with the command line's files and lines, `fail` naming file and line, no final file from a killed
job, and the DataFrame helper."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java (17 or later)", allow_module_level=True)

from anonymizer import Engine
from anonymizer.bulk import BulkOptions, run_folder
from anonymizer.cli import shipped_config
from anonymizer.spark import SparkRunFailed, anonymize, anonymize_column
from tests.conftest import SYNTHEA, need
from tests.test_hostile import MAX_LINE, _file, _no_canary, config, corpus

KEYS = {"cryptoHashKey": "spark-test-crypto-hash-key-0001", "dateShiftKey": "spark-test-date-shift-key-001"}
REFERENCE = date(2026, 1, 1)
REPO = Path(__file__).resolve().parent.parent
COMPARED = ("status", "engine_version", "reference_date", "config", "input", "output", "labels", "faults")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("fhir-anonymize-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    yield session
    session.stop()


def _command_line(source: Path, out: Path, raw: dict, **options) -> dict:
    engine = Engine.from_dict(raw, keys=KEYS, reference_date=REFERENCE)
    result = run_folder(engine, source, out, BulkOptions(workers=1, recursive=True, **options))
    return result.summary_dict(engine)


def _same_files(a: Path, b: Path) -> int:
    names = sorted(p.relative_to(a) for p in a.rglob("*.ndjson"))
    assert names == sorted(p.relative_to(b) for p in b.rglob("*.ndjson"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return len(names)


@pytest.mark.parametrize("profile", ["safe-harbor.json", "shifted-dates.json", "flu-trends.json"])
def test_output_is_byte_identical_to_the_command_line(spark, tmp_path, profile):
    raw = json.loads(shipped_config(profile).read_text())
    source = need(SYNTHEA)
    expected = _command_line(source, tmp_path / "cli", raw)
    # Small ranges: every large file is cut into parts that run on both executor threads.
    summary = anonymize(
        spark, source, tmp_path / "spark", raw, keys=KEYS, reference_date=REFERENCE, split_bytes=1 << 20
    )
    assert _same_files(tmp_path / "cli", tmp_path / "spark") == 16  # (minimum necessary: some empty)
    assert {k: summary.get(k) for k in (*COMPARED, "dropped")} == {
        k: expected.get(k) for k in (*COMPARED, "dropped")
    }
    written = json.loads((tmp_path / "spark.summary.json").read_text())  # beside the output
    assert written["output"] == expected["output"] and written["files"]["processed"] == 16


def test_faults_carry_the_command_lines_files_and_lines(spark, tmp_path):
    lines = corpus()
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    (source / "Hostile.ndjson").write_bytes(_file(lines))
    (source / "sub" / "Second.ndjson").write_bytes(_file(lines))
    expected = _command_line(source, tmp_path / "cli", config(), max_line_bytes=MAX_LINE)
    summary = anonymize(
        spark,
        source,
        tmp_path / "spark",
        config(),
        keys=KEYS,
        reference_date=REFERENCE,
        split_bytes=4096,
        max_line_bytes=MAX_LINE,
    )
    assert summary["faults"] == expected["faults"] and summary["faults"]
    assert _same_files(tmp_path / "cli", tmp_path / "spark") == 2
    _no_canary(json.dumps(summary), len(lines))

    with pytest.raises(SparkRunFailed) as failed:
        anonymize(
            spark,
            source,
            tmp_path / "spark-fail",
            config(),
            keys=KEYS,
            on_invalid_line="fail",
            split_bytes=4096,
            max_line_bytes=MAX_LINE,
        )
    first = min(
        (w["line"], kind)
        for kind, f in expected["faults"].items()
        for w in f["first_lines"]
        if w["file"] == "Hostile.ndjson"
    )
    assert str(failed.value).startswith(f"Hostile.ndjson:{first[0]}: {first[1].replace('_', ' ')}")
    _no_canary(str(failed.value), len(lines))
    assert not list((tmp_path / "spark-fail").rglob("Hostile.ndjson"))


def test_a_killed_job_leaves_no_final_file(spark, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    observations = (need(SYNTHEA) / "Observation.ndjson").read_bytes()
    (source / "Observation.ndjson").write_bytes(observations * 16)  # 470 MB: seconds of work
    out = tmp_path / "out"
    script = (
        "import os, sys\n"
        "from pyspark.sql import SparkSession\n"
        "from anonymizer.spark import anonymize\n"
        "os.environ['PYSPARK_PYTHON'] = sys.executable\n"
        "spark = SparkSession.builder.master('local[2]').config('spark.ui.enabled', 'false').getOrCreate()\n"
        f"anonymize(spark, {str(source)!r}, {str(out)!r}, {str(shipped_config())!r}, keys={KEYS!r}, "
        "split_bytes=8 << 20)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob(".*.tmp")):
        assert job.poll() is None, "the job ended before writing"
        time.sleep(0.05)
    assert list(out.glob(".*.tmp")), "no temporary file appeared"
    os.killpg(job.pid, signal.SIGKILL)  # while the executors write
    job.wait()
    time.sleep(1)  # the executors' Python workers die with their JVM
    assert not (out / "Observation.ndjson").exists()
    # The next run into the folder removes what the killed one left, and publishes the file.
    anonymize(spark, source, out, shipped_config(), keys=KEYS, split_bytes=64 << 20)
    assert (out / "Observation.ndjson").exists() and not list(out.glob(".*.tmp"))


def test_anonymize_column_gives_the_command_lines_lines(spark, tmp_path):
    source = need(SYNTHEA)
    raw = json.loads(shipped_config().read_text())
    _command_line(source, tmp_path / "cli", raw)
    lines = (source / "Patient.ndjson").read_text().splitlines()
    df = spark.createDataFrame(
        [(n, line) for n, line in enumerate(lines)]
        + [(len(lines), json.dumps(json.loads(lines[0]), indent=2))]  # a resource over many lines
        + [(len(lines) + 1, '{"resourceType":"Nope"}')],
        "n int, value string",
    )
    result = anonymize_column(
        df,
        "value",
        raw,
        keys=KEYS,
        reference_date=REFERENCE,
        file_name="Patient.ndjson",
        folder_name=source.name,
    )
    rows = sorted(result.collect(), key=lambda row: row["n"])
    expected = (tmp_path / "cli" / "Patient.ndjson").read_text().splitlines()
    assert [row["value"] for row in rows[:-1]] == [*expected, expected[0]]
    assert rows[-1]["value"] is None and rows[-1]["value_fault"] == "unknown_resource_type"
    assert all(row["value_fault"] is None for row in rows[:-1])


def test_spark_submit_runs_the_module_as_the_command_line_would(tmp_path):
    """`spark-submit .../anonymizer/spark.py -i IN -o OUT` (keys from the environment, as for the
    command line): the command line's output, and the summary beside it."""
    import anonymizer.spark

    submit = shutil.which("spark-submit")
    if submit is None:
        pytest.skip("spark-submit is not on the PATH")
    source = tmp_path / "in"
    source.mkdir()
    for name in ("Patient.ndjson", "Observation.ndjson"):
        shutil.copy(need(SYNTHEA) / name, source / name)
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "ANONYMIZER_CRYPTO_HASH_KEY": KEYS["cryptoHashKey"],
        "ANONYMIZER_DATE_SHIFT_KEY": KEYS["dateShiftKey"],
    }
    done = subprocess.run(
        [
            *(submit, "--master", "local[2]", anonymizer.spark.__file__),
            *("-i", str(source), "-o", str(tmp_path / "spark"), "--reference-date", "2026-01-01"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 file(s), " in done.stdout
    raw = json.loads(shipped_config().read_text())
    _command_line(source, tmp_path / "cli", raw)
    assert _same_files(tmp_path / "cli", tmp_path / "spark") == 2
    summary = json.loads((tmp_path / "spark.summary.json").read_text())
    assert summary["status"] == "succeeded" and KEYS["cryptoHashKey"] not in json.dumps(summary)
