"""The function against a hostile or careless setup, on a real Azurite: blob names and prefixes that
would climb out of the destination (with a SAS connection string, whose URL path is not signed),
a blob that raises among others, malformed destination metadata, a killed run's checkpointed
faults, growing blobs committed at awkward places, and settings errors told on the queue."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("azure.storage.blob")

from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobBlock,
    BlobServiceClient,
    ResourceTypes,
    generate_account_sas,
)

from anonymizer import Context, Engine
from anonymizer.azure import growing
from anonymizer.azure.handler import Handler
from anonymizer.azure.names import unsafe_reason
from anonymizer.cli import main, shipped_config
from anonymizer.stream import anonymize_stream
from tests.azurite import ACCOUNT_KEY
from tests.conftest import queue_messages

NAME = "job/Observation-1-1.ndjson"


def _observation(n: int) -> bytes:
    return json.dumps(
        {
            "resourceType": "Observation",
            "id": f"obs-{n}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
            "subject": {"reference": f"Patient/p{n % 7}"},
            "effectiveDateTime": "2024-02-03T10:11:12Z",
        },
        separators=(",", ":"),
    ).encode()


def _sas_connection(connection: str) -> str:
    """An account SAS connection string for Azurite: blob and queue, every permission."""
    token = generate_account_sas(
        "devstoreaccount1",
        ACCOUNT_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(
            read=True, write=True, delete=True, list=True, add=True, create=True, update=True, process=True
        ),
        datetime.now(UTC) + timedelta(hours=1),
        services="bq",
    )
    endpoints = {k: v for k, v in (p.split("=", 1) for p in connection.split(";") if p)}
    return (
        f"BlobEndpoint={endpoints['BlobEndpoint']};QueueEndpoint={endpoints['QueueEndpoint']};"
        f"SharedAccessSignature={token}"
    )


def _names(service: BlobServiceClient, container: str) -> list[str]:
    client = service.get_container_client(container)
    return [b.name for b in client.list_blobs()] if client.exists() else []


def _source(env):
    return env.service.get_container_client(env.anonymizer_source_container)


def _destination(env):
    return env.service.get_container_client(env.anonymizer_destination_container)


def _cli_run(data: bytes, name: str = NAME, **options):
    """What the command line makes of the same bytes (the whole file at once)."""
    engine = Engine.from_file(shipped_config(), reference_date=datetime(2026, 1, 1).date())
    folder, _, file_name = name.rpartition("/")
    context = Context(file_name, folder)
    run = anonymize_stream([data], engine, context=context, input_complete=True, file=name, **options)
    return b"".join(run), run


# -- names --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("2026-12-01T0800-job/Patient-1-1.ndjson", True),
        ("a..b/c.ndjson", True),
        ("x/../../victim/v.ndjson", False),
        ("x/%2E%2E/%2e%2e/victim/v.ndjson", False),
        ("x/%252E%252E/v.ndjson", False),
        ("./v.ndjson", False),
        ("/v.ndjson", False),
        ("a//v.ndjson", False),
        ("a\\..\\v.ndjson", False),
        ("a/v\x07.ndjson", False),
        ("a/v%0A.ndjson", False),
    ],
)
def test_unsafe_names(name, safe):
    assert (unsafe_reason(name) is None) is safe


def test_dot_dot_source_name_writes_nothing_outside_the_destination(azure_env, monkeypatch, caplog):
    sas = _sas_connection(azure_env.connection)
    monkeypatch.setenv("AzureWebJobsStorage", sas)
    victim = azure_env.service.create_container(f"victim-{azure_env.anonymizer_source_container[-8:]}")
    victim.upload_blob("v.ndjson", b"original\n")
    # The service stores the percent-encoded dots decoded: the blob's name holds `..` segments.
    import requests

    blob_endpoint = sas.split("BlobEndpoint=")[1].split(";")[0]
    token = sas.split("SharedAccessSignature=")[1]
    hostile = f"x/%2E%2E/%2E%2E/{victim.container_name}/v.ndjson"
    response = requests.put(
        f"{blob_endpoint}/{azure_env.anonymizer_source_container}/{hostile}?{token}",
        data=_observation(1) + b"\n",
        headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"},
        timeout=10,
    )
    assert response.status_code == 201
    (stored,) = _names(azure_env.service, azure_env.anonymizer_source_container)
    assert stored == f"x/../../{victim.container_name}/v.ndjson"
    service = BlobServiceClient.from_connection_string(sas)
    with caplog.at_level(logging.INFO):
        message = Handler(blob_service=service).handle(
            service.get_container_client(azure_env.anonymizer_source_container).get_blob_client(stored)
        )
    assert message["status"] == "failed" and message["error"]["kind"] == "unsafe_name"
    assert "'..' path segment" in message["error"]["message"]
    assert victim.get_blob_client("v.ndjson").download_blob().readall() == b"original\n"
    assert _names(azure_env.service, azure_env.anonymizer_destination_container) == []
    assert [m["status"] for m in queue_messages(azure_env)] == ["failed"]


def test_dot_dot_prefix_is_refused_and_writes_nothing(azure_env, monkeypatch):
    sas = _sas_connection(azure_env.connection)
    monkeypatch.setenv("AzureWebJobsStorage", sas)
    monkeypatch.setenv("ANONYMIZER_DESTINATION_PREFIX", f"../{azure_env.anonymizer_source_container}/out/")
    _source(azure_env).upload_blob(NAME, _observation(1) + b"\n")
    assert main(["watch", "--once"]) == 1
    message = queue_messages(azure_env)[0]
    assert message["status"] == "failed" and message["error"]["kind"] == "unsafe_name"
    assert "ANONYMIZER_DESTINATION_PREFIX" in message["error"]["message"]
    assert _names(azure_env.service, azure_env.anonymizer_source_container) == [NAME]
    assert _names(azure_env.service, azure_env.anonymizer_destination_container) == []


# -- one blob's failure -------------------------------------------------------------------------------
def test_watch_once_goes_on_after_a_blob_that_raises(azure_env, monkeypatch, capsys):
    names = [f"job/Observation-1-{n}.ndjson" for n in range(1, 6)]
    for name in names:
        _source(azure_env).upload_blob(name, _observation(1) + b"\n")
    real = growing.process

    def process(source, destination, engine_for, settings, **options):
        if source.blob_name == names[1]:
            raise ServiceRequestError("the storage account could not be reached")
        return real(source, destination, engine_for, settings, **options)

    monkeypatch.setattr(growing, "process", process)
    assert main(["watch", "--once"]) == 1
    out = capsys.readouterr().out
    assert f"{names[1]}: failed (ServiceRequestError)" in out
    assert "5 blob(s) processed, 1 failed" in out
    written = _names(azure_env.service, azure_env.anonymizer_destination_container)
    assert written == [n for n in names if n != names[1]]


def test_unexpected_errors_are_reported_not_raised(azure_env, monkeypatch, python_engine):
    _source(azure_env).upload_blob(NAME, b"\n".join(_observation(n) for n in range(3)) + b"\n")
    from anonymizer import jsonio

    real = jsonio.dumps_line
    calls = []

    def dumps_line(resource):  # one line's output cannot be written: that line only
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError
        return real(resource)

    monkeypatch.setattr(jsonio, "dumps_line", dumps_line)
    message = Handler().handle(_source(azure_env).get_blob_client(NAME))
    assert message["status"] == "succeeded"
    assert message["faults"] == {"internal_error": {"count": 1, "first_lines": [{"file": NAME, "line": 2}]}}
    monkeypatch.setattr(jsonio, "dumps_line", real)

    def broken(*args, **kwargs):  # outside the lines: the blob fails, reported on the queue
        raise ValueError("something the code did not expect")

    _source(azure_env).upload_blob("job/Other-1-1.ndjson", _observation(1) + b"\n")
    monkeypatch.setattr(growing, "_tail_hash", broken)
    message = Handler().handle(_source(azure_env).get_blob_client("job/Other-1-1.ndjson"))
    assert message["status"] == "failed" and message["error"] == {"kind": "internal_error", "line": None}


def test_malformed_metadata_restarts_from_the_start(azure_env, caplog):
    data = b"\n".join(_observation(n) for n in range(5)) + b"\n"
    blob = _source(azure_env).get_blob_client(NAME)
    blob.upload_blob(data)
    Handler().handle(blob)
    destination = _destination(azure_env).get_blob_client(NAME)
    metadata = destination.get_blob_properties().metadata
    for key, value in (("anon_source_offset", "twelve"), ("anon_next_line", "-3"), ("anon_faults", "{[")):
        destination.set_blob_metadata({**metadata, key: value, "anon_source_etag": ""})
        with caplog.at_level(logging.WARNING):
            message = Handler().handle(blob)
        assert message["status"] == "succeeded" and message["source"]["range"] == [0, len(data)]
        assert "metadata malformed" in caplog.text
        assert destination.download_blob().readall() == _cli_run(data)[0]


def test_faults_of_a_killed_run_appear_in_the_resumed_run_s_message(azure_env, monkeypatch):
    monkeypatch.setenv("ANONYMIZER_CHECKPOINT_BYTES", "3000")
    monkeypatch.setattr("anonymizer.stream._FLUSH_BYTES", 512)
    lines = [_observation(n) for n in range(80)]
    for bad in (3, 10, 17):
        lines[bad] = b'{"resourceType":"Observation","nope":1}'
    data = b"\n".join(lines) + b"\n"
    blob = _source(azure_env).get_blob_client(NAME)
    blob.upload_blob(data)

    class Killed(BaseException):
        pass

    real_commit = growing.BlobSink.commit

    def commit_then_die(self, metadata):
        real_commit(self, metadata)
        raise Killed

    monkeypatch.setattr(growing.BlobSink, "commit", commit_then_die)
    with pytest.raises(Killed):
        Handler().handle(blob)
    assert queue_messages(azure_env) == []  # killed: it reported nothing
    monkeypatch.setattr(growing.BlobSink, "commit", real_commit)
    message = Handler().handle(blob)
    assert message["source"]["range"][0] > 0  # resumed from the checkpoint
    assert message["faults"] == {
        "invalid_fhir": {"count": 3, "first_lines": [{"file": NAME, "line": n} for n in (4, 11, 18)]}
    }
    assert _destination(azure_env).get_blob_client(NAME).download_blob().readall() == _cli_run(data)[0]


# -- growing blobs committed at awkward places ------------------------------------------------------
def _grow(blob, parts: list[bytes]) -> list[dict]:
    """Commit the parts as `$export` does (the whole list again each time), a run after each."""
    handler, ids, messages = Handler(), [], []
    for number, part in enumerate(parts):
        block_id = base64.b64encode(f"block-{number:06d}".encode()).decode()
        blob.stage_block(block_id, part)
        ids.append(block_id)
        blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
        messages.append(handler.handle(blob))
    return messages


@pytest.mark.parametrize(
    "pattern",
    [
        "object-without-newline-then-lines",  # b3
        "object-without-newline-then-crlf",
        "object-then-more-on-its-line",
        "too-long-line-across-commits",  # b4
        "too-long-line-across-three-commits",
        "incomplete-object-held-back",
    ],
)
def test_growing_blob_line_numbers_agree_with_the_command_line(azure_env, monkeypatch, pattern):
    monkeypatch.setenv("ANONYMIZER_MAX_LINE_BYTES", "400")
    good = [_observation(n) for n in range(6)]
    bad = b'{"resourceType":"Observation","nope":1}'
    long = b'{"resourceType":"Observation","id":"' + b"x" * 900 + b'"}'
    parts = {
        "object-without-newline-then-lines": [
            good[0] + b"\n" + good[1],
            b"\n" + bad + b"\n" + good[2] + b"\n",
        ],
        "object-without-newline-then-crlf": [good[0] + b"\r\n" + good[1], b"\r\n" + bad + b"\r\n" + good[2]],
        "object-then-more-on-its-line": [
            good[0] + b"\n" + good[1],
            b' {"x":1}\n' + bad + b"\n" + good[2] + b"\n",
        ],
        "too-long-line-across-commits": [good[0] + b"\n" + long[:500], long[500:] + b"\n" + bad + b"\n"],
        "too-long-line-across-three-commits": [
            good[0] + b"\n" + long[:450],
            long[450:700],
            long[700:] + b"\n" + bad + b"\n" + good[1] + b"\n",
        ],
        "incomplete-object-held-back": [good[0] + b"\n" + good[1][:20], good[1][20:] + b"\n" + bad + b"\n"],
    }[pattern]
    blob = _source(azure_env).get_blob_client(NAME)
    messages = _grow(blob, parts)
    data = b"".join(parts)
    expected, run = _cli_run(data, max_line_bytes=400)
    faults: dict[str, list] = {}
    for message in messages:
        assert message["status"] == "succeeded"
        for kind, fault in message["faults"].items():
            faults.setdefault(kind, []).extend(w["line"] for w in fault["first_lines"])
    cli = run.summary.to_dict(status="succeeded", engine=run.engine)["faults"]
    assert faults == {kind: [w["line"] for w in f["first_lines"]] for kind, f in cli.items()}
    destination = _destination(azure_env).get_blob_client(NAME)
    metadata = destination.get_blob_properties().metadata
    if pattern != "object-then-more-on-its-line":  # (its first object was written before its rest came)
        assert destination.download_blob().readall() == expected
    assert int(metadata["anon_next_line"]) == run.next_line


# -- settings errors are told ------------------------------------------------------------------------
def test_a_missing_key_is_told_on_the_queue_and_by_watch(azure_env, monkeypatch, capsys, caplog):
    monkeypatch.delenv("ANONYMIZER_CRYPTO_HASH_KEY")
    _source(azure_env).upload_blob(NAME, _observation(1) + b"\n")
    with caplog.at_level(logging.ERROR):
        assert main(["watch", "--once"]) == 1
    (message,) = queue_messages(azure_env)
    assert message["status"] == "failed" and message["error"]["kind"] == "configuration"
    assert "cryptoHashKey" in message["error"]["message"]
    assert "ANONYMIZER_CRYPTO_HASH_KEY" in message["error"]["message"]
    assert "ANONYMIZER_CRYPTO_HASH_KEY" in caplog.text  # logged with its message
    out = capsys.readouterr().out
    assert f"{NAME}: failed (configuration: The parameter cryptoHashKey is empty" in out
    monkeypatch.setenv("ANONYMIZER_ON_INVALID_LINE", "failx")
    monkeypatch.setenv("ANONYMIZER_CRYPTO_HASH_KEY", "x" * 32)
    assert main(["watch", "--once"]) == 1
    (message,) = queue_messages(azure_env)
    assert message["error"] == {
        "kind": "configuration",
        "line": None,
        "message": "ANONYMIZER_ON_INVALID_LINE must be drop or fail, not 'failx'",
    }


def test_watch_prints_what_was_left_out(azure_env, capsys):
    _source(azure_env).upload_blob(NAME, _observation(1) + b"\nnot json\n")
    assert main(["watch", "--once"]) == 0
    assert f"{NAME}: succeeded, 1 line(s) left out (not json 1)" in capsys.readouterr().out
    assert main(["watch", "--blob", "job/missing.ndjson"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1
