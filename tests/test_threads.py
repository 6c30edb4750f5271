"""One engine, many threads: the Function keeps one Handler (so one Engine) per worker process and
runs blobs at once on the worker's thread pool. Four threads share one Engine, and one Handler over
Azurite blobs, with the interpreter switching threads as often as it can: no error, and every
output byte-identical to one thread's, in three trials."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import pytest

from anonymizer import Context, Engine
from anonymizer.cli import shipped_config
from anonymizer.stream import anonymize_stream
from tests.conftest import SYNTHEA, need

KEYS = {"cryptoHashKey": "threads-crypto-hash-key-000001", "dateShiftKey": "threads-date-shift-key-00001"}
PROFILES = ("safe-harbor.json", "ms-sample.json")
THREADS = 4


@contextmanager
def switching_often() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _files() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(need(SYNTHEA).glob("*.ndjson"))}


def _engine(profile: str) -> Engine:
    return Engine.from_file(shipped_config(profile), keys=KEYS, reference_date=date(2026, 1, 1))


def _anonymize(engine: Engine, name: str, data: bytes) -> bytes:
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    return b"".join(anonymize_stream(chunks, engine, context=Context(name, "export"), input_complete=True))


def _in_threads(per_thread: list[list[Callable[[], None]]]) -> list[BaseException]:
    """Run each list of work items on a thread of its own, all started together."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(per_thread))

    def run(items: list[Callable[[], None]]) -> None:
        start.wait()
        for item in items:
            try:
                item()
            except BaseException as exc:  # every failure is the test's finding
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(items,)) for items in per_thread]
    with switching_often():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return errors


@pytest.mark.parametrize("profile", PROFILES)
def test_four_threads_share_one_engine(profile):
    files = _files()
    single = _engine(profile)
    expected = {name: _anonymize(single, name, data) for name, data in files.items()}
    for trial in range(3):
        engine = _engine(profile)  # fresh: its plan and every thread's code are built while racing
        outputs: dict[tuple[int, str], bytes] = {}
        # Each thread takes every file once, in the same order: the threads meet the same types'
        # plans, shapes and caches at the same time (the code before the redesign failed here).
        names = list(files)

        def work(
            thread: int, name: str, engine: Engine = engine, outputs: dict = outputs
        ) -> Callable[[], None]:
            def item() -> None:
                outputs[thread, name] = _anonymize(engine, name, files[name])

            return item

        errors = _in_threads([[work(t, name) for name in names] for t in range(THREADS)])
        assert errors == [], f"trial {trial}: {errors[:3]}"
        assert len(outputs) == THREADS * len(files)
        different = sorted(name for (_, name), data in outputs.items() if data != expected[name])
        assert different == [], f"trial {trial}"


def test_four_threads_share_one_handler_over_azurite_blobs(azure_env, monkeypatch):
    from azure.storage.blob import BlobServiceClient

    from anonymizer.azure.handler import Handler

    files = _files()
    single = Engine.from_file(shipped_config(), reference_date=date(2026, 1, 1))  # the handler's keys
    folder = "2026-12-01T000000-job"
    expected = {
        name: b"".join(anonymize_stream([data], single, context=Context(name, folder), input_complete=True))
        for name, data in files.items()
    }
    source = azure_env.service.get_container_client(azure_env.anonymizer_source_container)
    for name, data in files.items():
        source.upload_blob(f"{folder}/{name}", data)
    for trial in range(3):
        monkeypatch.setenv("ANONYMIZER_DESTINATION_PREFIX", f"trial{trial}/")
        handler = Handler(blob_service=BlobServiceClient.from_connection_string(azure_env.connection))
        messages: list[dict] = []

        def handle(name: str, handler: Handler = handler, messages: list = messages) -> Callable[[], None]:
            return lambda: messages.append(handler.handle(source.get_blob_client(f"{folder}/{name}")))

        work = [handle(name) for name in files]
        errors = _in_threads([work[t::THREADS] for t in range(THREADS)])
        assert errors == [], f"trial {trial}: {errors[:3]}"
        assert sorted(m["status"] for m in messages) == ["succeeded"] * len(files)
        destination = azure_env.service.get_container_client(azure_env.anonymizer_destination_container)
        for name in files:
            written = destination.get_blob_client(f"trial{trial}/{folder}/{name}").download_blob().readall()
            assert written == expected[name], f"trial {trial}: {name}"
