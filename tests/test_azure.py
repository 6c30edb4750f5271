"""The Azure Function against a real Azurite started here on free loopback ports: indexing, end to
end over an `$export` folder, growing blobs, concurrent and interrupted runs, restarts, and the
queue report. Skips when Azurite is not installed (`.ci/run` installs it with npm)."""

from __future__ import annotations

import base64
import importlib
import json
import logging
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("azure.storage.blob")
pytest.importorskip("azurefunctions.extensions.bindings.blob")

from azure.storage.blob import BlobBlock, BlobServiceClient

from anonymizer.azure import growing
from anonymizer.azure.handler import Handler
from anonymizer.azure.settings import Settings
from tests.conftest import AZURE_CRYPTO_KEY, AZURE_DATE_KEY, queue_messages

REPO = Path(__file__).resolve().parent.parent
CRYPTO_KEY = AZURE_CRYPTO_KEY
DATE_KEY = AZURE_DATE_KEY
DEMO = REPO / "anonymizer" / "demo" / "export"


@pytest.fixture
def env(azure_env):
    return azure_env


_messages = queue_messages


def _source(env, service=None):
    return (service or env.service).get_container_client(env.anonymizer_source_container)


def _destination_bytes(env, name: str) -> bytes:
    container = env.service.get_container_client(env.anonymizer_destination_container)
    return container.get_blob_client(name).download_blob().readall()


def _expected(data: bytes, name: str) -> bytes:
    """What the command line writes for the same file (same configuration, keys, date)."""
    from datetime import date

    from anonymizer import Context, Engine
    from anonymizer.cli import shipped_config
    from anonymizer.stream import anonymize_stream

    engine = Engine.from_file(shipped_config(), reference_date=date(2026, 1, 1))
    folder = name.rsplit("/", 1)[0] if "/" in name else ""
    return b"".join(anonymize_stream([data], engine, context=Context(name.rsplit("/", 1)[-1], folder)))


def _commit_growing(blob, parts: list[bytes]) -> None:
    """As `$export` does: stage a block and commit the whole list again."""
    ids = []
    for number, part in enumerate(parts):
        block_id = base64.b64encode(f"block-{number:06d}".encode()).decode()
        blob.stage_block(block_id, part)
        ids.append(block_id)
        blob.commit_block_list([BlobBlock(block_id=i) for i in ids])


def _export_lines(count: int = 60) -> list[bytes]:
    lines = []
    for n in range(count):
        lines.append(
            json.dumps(
                {
                    "resourceType": "Observation",
                    "id": f"obs-{n}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
                    "subject": {"reference": f"Patient/p{n % 7}"},
                    "effectiveDateTime": "2024-02-03T10:11:12Z",
                    "valueQuantity": {"value": 37.0 + n / 100},
                }
            ).encode()
            + b"\n"
        )
    return lines


# -- indexing ---------------------------------------------------------------------------------------
def test_function_is_indexed_with_the_sdk_type_binding(monkeypatch):
    import inspect

    from azurefunctions.extensions.base.utils import get_raw_bindings

    monkeypatch.setenv("ANONYMIZER_SOURCE_CONTAINER", "my-exports")
    monkeypatch.setenv("ANONYMIZER_TRIGGER_SOURCE", "LogsAndContainerScan")
    sys.modules.pop("function_app", None)
    function_app = importlib.import_module("function_app")
    (function,) = [f for f in function_app.app.get_functions() if f.get_function_name() == "anonymize_export"]
    # The worker passes the parameter annotations as input types, as here.
    signature = inspect.signature(function.get_user_function())
    input_types = {name: SimpleNamespace(pytype=p.annotation) for name, p in signature.parameters.items()}
    (raw,), _ = get_raw_bindings(function, input_types)
    binding = json.loads(raw)
    assert binding["type"] == "blobTrigger" and binding["path"] == "my-exports/{name}"
    assert binding["connection"] == "AzureWebJobsStorage" and binding["source"] == "LogsAndContainerScan"
    assert binding["properties"] == {"SupportsDeferredBinding": True}
    sys.modules.pop("function_app", None)


def test_destination_overlapping_the_source_is_refused(monkeypatch):
    environ = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "ANONYMIZER_SOURCE_CONTAINER": "same",
        "ANONYMIZER_DESTINATION_CONTAINER": "Same",
    }
    kind, message = Settings.from_env(environ).problem
    assert kind == "configuration" and "must differ" in message


# -- end to end -------------------------------------------------------------------------------------
def test_end_to_end_through_the_user_function(env, monkeypatch):
    import azurefunctions.extensions.bindings.blob as blobext
    from azurefunctions.extensions.base import Datum
    from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

    sys.modules.pop("function_app", None)
    function_app = importlib.import_module("function_app")
    user_function = function_app.anonymize_export.build().get_user_function()
    source = _source(env)
    uploaded = {}
    for path in sorted(DEMO.rglob("*.ndjson")):
        name = str(path.relative_to(DEMO))  # <timestamp>-<job>/<Type>-1-1.ndjson
        uploaded[name] = path.read_bytes()
        source.upload_blob(name, uploaded[name])
    source.upload_blob("2026-11-01T080000-demo/readme.txt", b"not an export file")
    for name in [*uploaded, "2026-11-01T080000-demo/readme.txt"]:
        # The worker builds the client from model binding data, as here.
        content = json.dumps(
            {
                "Connection": "AzureWebJobsStorage",
                "ContainerName": env.anonymizer_source_container,
                "BlobName": name,
            }
        )
        data = Datum(
            SimpleNamespace(
                version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content
            ),
            "model_binding_data",
        )
        client = BlobClientConverter.decode(data, trigger_metadata=None, pytype=blobext.BlobClient)
        user_function(client)
    for name, data in uploaded.items():
        assert _destination_bytes(env, name) == _expected(data, name)
    messages = _messages(env)
    assert len(messages) == len(uploaded)  # the .txt file was skipped
    message = next(m for m in messages if m["source"]["blob"].endswith("Patient-1-1.ndjson"))
    assert message["status"] == "succeeded" and message["output"]["resources_by_type"] == {"Patient": 3}
    assert message["destination"]["container"] == env.anonymizer_destination_container
    assert message["source"]["range"] == [0, len(uploaded[message["source"]["blob"]])]
    assert message["config"]["keys"]["cryptoHashKey"]["source"] == "env"
    assert CRYPTO_KEY not in json.dumps(messages)
    sys.modules.pop("function_app", None)


def test_growing_source_in_three_steps_matches_one_shot_and_reads_each_byte_once(env):
    lines = _export_lines(90)
    parts = [b"".join(lines[:30]), b"".join(lines[30:60]), b"".join(lines[60:])]
    downloaded = []

    def count(response):
        request = response.http_request
        if request.method == "GET" and "comp=" not in request.url:
            downloaded.append(int(response.http_response.headers.get("Content-Length", 0)))

    service = BlobServiceClient.from_connection_string(env.connection, raw_response_hook=count)
    handler = Handler(blob_service=service)
    blob = _source(env, service).get_blob_client("job/Observation-1-1.ndjson")
    ids = []
    statuses = []
    for number, part in enumerate(parts):
        block_id = base64.b64encode(f"block-{number:06d}".encode()).decode()
        blob.stage_block(block_id, part)
        ids.append(block_id)
        blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
        statuses.append(handler.handle(blob)["status"])
    assert statuses == ["succeeded"] * 3
    total = b"".join(parts)
    assert _destination_bytes(env, "job/Observation-1-1.ndjson") == _expected(
        total, "job/Observation-1-1.ndjson"
    )
    tail_checks = 2 * growing.TAIL_BYTES
    assert len(total) <= sum(downloaded) <= len(total) + growing.BLOCK_BYTES + tail_checks
    assert handler.handle(blob)["status"] == "up-to-date"


def test_two_concurrent_runs_give_one_complete_output(env):
    lines = _export_lines(400)
    data = b"".join(lines)
    _source(env).upload_blob("job/Observation-1-1.ndjson", data)
    results = []

    def run():
        handler = Handler()
        blob = _source(env).get_blob_client("job/Observation-1-1.ndjson")
        results.append(handler.handle(blob)["status"])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) in (["succeeded", "succeeded"], ["succeeded", "up-to-date"])
    assert _destination_bytes(env, "job/Observation-1-1.ndjson") == _expected(
        data, "job/Observation-1-1.ndjson"
    )


class _Killed(BaseException):
    """A stand-in for the process being killed: nothing in the handler may catch it."""


def test_run_killed_after_a_checkpoint_resumes_to_identical_output(env, monkeypatch):
    monkeypatch.setenv("ANONYMIZER_CHECKPOINT_BYTES", "20000")
    monkeypatch.setattr("anonymizer.stream._FLUSH_BYTES", 4096)
    data = b"".join(_export_lines(600))
    blob = _source(env).get_blob_client("job/Observation-1-1.ndjson")
    blob.upload_blob(data)
    original_commit = growing.BlobSink.commit
    commits = []

    def commit_then_die(self, metadata):
        original_commit(self, metadata)
        commits.append(metadata)
        raise _Killed

    monkeypatch.setattr(growing.BlobSink, "commit", commit_then_die)
    with pytest.raises(_Killed):
        Handler().handle(blob)
    assert commits[0]["anon_status"] == "partial" and 0 < int(commits[0]["anon_source_offset"]) < len(data)
    monkeypatch.setattr(growing.BlobSink, "commit", original_commit)
    message = Handler().handle(blob)
    assert message["status"] == "succeeded"
    assert message["source"]["range"][0] == int(commits[0]["anon_source_offset"])
    assert _destination_bytes(env, "job/Observation-1-1.ndjson") == _expected(
        data, "job/Observation-1-1.ndjson"
    )


def test_rewritten_source_and_changed_key_restart_from_the_start(env, monkeypatch):
    blob = _source(env).get_blob_client("job/Observation-1-1.ndjson")
    first = b"".join(_export_lines(40))
    blob.upload_blob(first)
    Handler().handle(blob)
    rewritten = b"".join(reversed(_export_lines(50)))  # longer, but not an append
    blob.upload_blob(rewritten, overwrite=True)
    message = Handler().handle(blob)
    assert message["source"]["range"] == [0, len(rewritten)]
    assert _destination_bytes(env, "job/Observation-1-1.ndjson") == _expected(
        rewritten, "job/Observation-1-1.ndjson"
    )
    before = _destination_bytes(env, "job/Observation-1-1.ndjson")
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", "another-crypto-hash-key-0000002")
    message = Handler().handle(blob)
    assert message["status"] == "succeeded" and message["source"]["range"] == [0, len(rewritten)]
    after = _destination_bytes(env, "job/Observation-1-1.ndjson")
    assert after != before and after == _expected(rewritten, "job/Observation-1-1.ndjson")


def test_bad_lines_are_reported_by_kind_and_line_without_content(env, caplog):
    canaries = [f"CANARY{n}QZX" for n in range(4)]
    lines = [
        _export_lines(1)[0],
        f'{{"resourceType": "Observation", "{canaries[0]}": 1}}\n'.encode(),
        f"not json {canaries[1]}\n".encode(),
        _export_lines(2)[1],
        f'{{"resourceType": "{canaries[2]}"}}\n'.encode(),
        f'["{canaries[3]}"]\n'.encode(),
    ]
    blob = _source(env).get_blob_client("job/Observation-1-1.ndjson")
    blob.upload_blob(b"".join(lines))
    with caplog.at_level(logging.DEBUG):
        message = Handler().handle(blob)
    assert message["status"] == "succeeded"
    name = "job/Observation-1-1.ndjson"
    assert message["faults"] == {
        "invalid_fhir": {"count": 1, "first_lines": [{"file": name, "line": 2}]},
        "not_json": {"count": 1, "first_lines": [{"file": name, "line": 3}]},
        "unknown_resource_type": {"count": 1, "first_lines": [{"file": name, "line": 5}]},
        "not_object": {"count": 1, "first_lines": [{"file": name, "line": 6}]},
    }
    assert _destination_bytes(env, "job/Observation-1-1.ndjson").count(b"\n") == 2
    everything = json.dumps(_messages(env)) + "\n".join(r.getMessage() for r in caplog.records)
    assert not any(canary in everything for canary in canaries)


def test_watch_once_processes_what_is_not_covered(env, capsys):
    from anonymizer.cli import main

    source = _source(env)
    source.upload_blob("job/Observation-1-1.ndjson", b"".join(_export_lines(5)))
    source.upload_blob("job/notes.txt", b"x")
    assert main(["watch", "--once"]) == 0
    assert "job/Observation-1-1.ndjson: succeeded" in capsys.readouterr().out
    assert main(["watch", "--once"]) == 0  # covered now: nothing to do, no message
    assert "0 blob(s) processed" in capsys.readouterr().out
    assert main(["watch", "--blob", "job/Observation-1-1.ndjson"]) == 0
    assert "up-to-date" in capsys.readouterr().out
    assert [m["status"] for m in _messages(env)] == ["succeeded", "up-to-date"]


def test_source_changing_during_the_read_is_superseded_then_resumed(env):
    lines = _export_lines(30000)  # about 8 MB: several 4 MiB download requests
    first = b"".join(lines[:25000])
    blob_name = "job/Observation-1-1.ndjson"
    admin = _source(env).get_blob_client(blob_name)
    _commit_growing(admin, [first])
    grown = []

    def grow_after_first_download(response):
        request = response.http_request
        if request.method == "GET" and "comp=" not in request.url and not grown:
            grown.append(True)  # `$export` commits the grown blob while this run reads it
            block_id = base64.b64encode(b"block-000001").decode()
            admin.stage_block(block_id, b"".join(lines[25000:]))
            admin.commit_block_list(
                [BlobBlock(block_id=b.id) for b in admin.get_block_list("committed")[0]]
                + [BlobBlock(block_id=block_id)]
            )

    service = BlobServiceClient.from_connection_string(
        env.connection, raw_response_hook=grow_after_first_download
    )
    handler = Handler(blob_service=service)
    message = handler.handle(_source(env, service).get_blob_client(blob_name))
    assert message["status"] == "superseded"
    start, end = message["source"]["range"]
    assert start == 0 and 0 < end < len(first)
    partial = _destination_bytes(env, blob_name)
    whole = _expected(b"".join(lines), blob_name)
    assert whole.startswith(partial) and partial.endswith(b"\n")  # a prefix of complete lines
    message = Handler().handle(_source(env).get_blob_client(blob_name))
    assert message["status"] == "succeeded" and message["source"]["range"][0] == end
    assert _destination_bytes(env, blob_name) == whole


def test_window_keeps_the_tail_before_every_offset_the_output_may_lag_to(monkeypatch):
    """The read window keeps its chunks (no copies per chunk): the 64 KiB before an offset come
    from it across chunk borders while the output may still lag to that offset (a block and a
    chunk behind the reading), and are read again from the blob (None) before that."""
    monkeypatch.setattr(growing, "TAIL_BYTES", 5)
    monkeypatch.setattr(growing, "BLOCK_BYTES", 7)
    data = bytes(range(97, 123)) * 4  # absolute position p holds data[p - 3]: the run starts at 3
    window = growing._Window(start=3)
    position = 3
    for size in (1, 4, 9, 2, 30, 3, 11, 6):
        window.feed(data[position - 3 : position - 3 + size])
        position += size
        assert window.start <= max(3, position - 5 - 7 - size)  # enough kept
        for offset in range(3, position + 1):
            begin = max(0, offset - 5)
            expected = data[begin - 3 : offset - 3] if begin >= window.start else None
            assert window.tail(offset) == expected
