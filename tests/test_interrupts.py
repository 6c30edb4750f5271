"""A command-line run ended from outside: `kill -9` of the parent leaves no worker running (the
kernel's parent-death signal and a watcher end them) and its temporary files are removed by the
next run into the same folder; SIGTERM ends the run as Ctrl-C does, cleaning up itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KEYS = {"ANONYMIZER_CRYPTO_HASH_KEY": "interrupt-test-crypto-key-001", "ANONYMIZER_DATE_SHIFT_KEY": "d" * 24}

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")


def _export(folder: Path, files: int = 2, lines: int = 300_000) -> Path:
    folder.mkdir()
    template = (
        '{"resourceType":"Observation","id":"o%d","status":"final","code":{"coding":[{"system":'
        '"http://loinc.org","code":"8310-5","display":"Body temperature"}]},"subject":{"reference":'
        '"Patient/p%d"},"effectiveDateTime":"2020-01-%02dT10:00:00Z","valueQuantity":{"value":%d.5}}\n'
    )
    for number in range(files):
        (folder / f"Observation-{number}.ndjson").write_text(
            "".join(template % (i, i % 997, 1 + i % 28, i % 40) for i in range(lines))
        )
    return folder


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may leave the dead unreaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _start(source: Path, target: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "anonymizer", "-i", str(source), "-o", str(target), "-b", "--workers", "2"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **KEYS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_work(process: subprocess.Popen, target: Path) -> list[int]:
    """The worker pids, once both are writing their temporary outputs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _children(process.pid)
        temporaries = list(target.glob(".*.tmp"))
        if len(workers) >= 2 and len(temporaries) >= 2 and all(p.stat().st_size for p in temporaries):
            return workers
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError("the run did not start its workers")


def test_kill_9_of_the_parent_leaves_no_worker_and_the_next_run_no_temporary_file(tmp_path):
    source = _export(tmp_path / "in")
    target = tmp_path / "out"
    process = _start(source, target)
    workers = _wait_for_work(process, target)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(5)
    assert [pid for pid in workers if _running(pid)] == []
    left = list(target.glob(".*.tmp"))
    assert left, "a killed run leaves its temporary files (nothing can remove them at once)"
    # The next run into the same folder removes what the dead run left.
    small = tmp_path / "small"
    small.mkdir()
    (small / "One.ndjson").write_text('{"resourceType":"Patient","id":"p1"}\n')
    result = subprocess.run(
        [sys.executable, "-m", "anonymizer", "-i", str(small), "-o", str(target), "-b", "--quiet"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **KEYS},
    )
    assert result.returncode == 0
    assert list(target.glob(".*.tmp")) == [] and (target / "One.ndjson").exists()
    assert not any(p.name.startswith("Observation") for p in target.iterdir())  # nothing half-written


def test_sigterm_stops_workers_and_removes_temporary_files(tmp_path):
    source = _export(tmp_path / "in")
    target = tmp_path / "out"
    process = _start(source, target)
    workers = _wait_for_work(process, target)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 130
    assert time.monotonic() - started < 10  # the workers were stopped, not waited for
    assert "interrupted" in process.stderr.read().decode()
    time.sleep(0.5)
    assert [pid for pid in workers if _running(pid)] == []
    assert list(target.glob(".*.tmp")) == []


def test_a_live_run_s_temporary_files_are_left_alone(tmp_path):
    """Two runs into one folder: the second must not remove the files of the first, still going."""
    from anonymizer.bulk import remove_stale_temporaries

    target = tmp_path / "out"
    target.mkdir()
    live = target / f".Patient.ndjson.{os.getpid()}-{'a' * 32}.tmp"
    live.write_text("{}")
    dead_pid = 2**22 + 12345  # above the kernel's default pid_max: no such process
    dead = target / f".Patient.ndjson.{dead_pid}-{'b' * 32}.tmp"
    dead.write_text("{}")
    other = target / ".notes.tmp"  # not ours
    other.write_text("x")
    assert remove_stale_temporaries(target) == 1
    assert live.exists() and not dead.exists() and other.exists()
    assert json.loads(live.read_text()) == {}
