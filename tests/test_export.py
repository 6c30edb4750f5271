"""`fhir-anonymize export` against an in-test Bulk Data server (tests/bulk_server.py) that writes
its NDJSON into Azurite as the FHIR service does: kick-off, status with Retry-After and X-Progress,
429 and 5xx retried, the manifest recorded as a job in the destination container, `--since last`,
the OperationOutcome of a failing kick-off, cancel; then the handler anonymizes what was
exported."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

pytest.importorskip("azure.storage.blob")

from anonymizer.azure import export
from anonymizer.cli import main
from tests.bulk_server import BulkDataServer, operation_outcome
from tests.conftest import SYNTHEA, need


@pytest.fixture
def server(azure_env):
    source = azure_env.service.get_container_client(azure_env.anonymizer_source_container)
    files = {name: (need(SYNTHEA) / f"{name}.ndjson").read_bytes() for name in ("Patient", "Condition")}
    with BulkDataServer(source, files, folder="2026-11-24T080000-job1") as running:
        yield running


def _records(azure_env) -> list[dict]:
    from dataclasses import asdict

    container = azure_env.service.get_container_client(azure_env.anonymizer_destination_container)
    return [asdict(record) for record in export.JobRecords(container).all()]


def test_export_wait_then_watch_anonymizes_every_exported_file(azure_env, server, capsys):
    server.status_answers = [
        (202, {"X-Progress": "10% done", "Retry-After": "0"}),
        (429, {"Retry-After": "0"}),
        (202, {"X-Progress": "60% done", "Retry-After": "0"}),
        (503, {"Retry-After": "0"}),
    ]
    arguments = ["export", "--fhir-url", server.url, "--type", "Patient,Condition", "--auth", "none"]
    assert main([*arguments, "--container", azure_env.anonymizer_source_container, "--wait", "--json"]) == 0
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert job["status"] == "complete" and job["transactionTime"] == server.transaction_time
    assert [f["type"] for f in job["files"]] == ["Patient", "Condition"]
    assert "10% done" in err and "60% done" in err and "answered 429" in err and "answered 503" in err
    kick_off = server.requests[0]
    assert kick_off["path"] == "/$export"
    assert kick_off["query"] == {
        "_type": ["Patient,Condition"],
        "_container": [azure_env.anonymizer_source_container],
    }
    assert kick_off["headers"]["Accept"] == "application/fhir+json"
    assert kick_off["headers"]["Prefer"] == "respond-async" and "Authorization" not in kick_off["headers"]
    (record,) = _records(azure_env)
    assert record["status"] == "complete" and record["manifest"]["output"][0]["type"] == "Patient"
    assert record["status_url"].startswith(server.url + "/_status/")

    # The handler then anonymizes the exported files: every line of the source covered.
    assert main(["watch", "--once"]) == 0
    destination = azure_env.service.get_container_client(azure_env.anonymizer_destination_container)
    for name, data in server.files.items():
        blob = destination.get_blob_client(f"2026-11-24T080000-job1/{name}-1.ndjson")
        metadata = blob.get_blob_properties().metadata
        assert metadata["anon_status"] == "complete"
        assert int(metadata["anon_next_line"]) - 1 == data.count(b"\n")


def test_since_last_sends_the_last_complete_exports_transaction_time(azure_env, server, capsys):
    arguments = ["export", "--fhir-url", server.url, "--auth", "none", "--wait"]
    assert main(["export", "--fhir-url", server.url, "--auth", "none", "--since", "last"]) == 0  # none yet
    assert "_since" not in server.requests[-1]["query"]
    assert main(arguments) == 0
    server.transaction_time = "2026-11-25T08:00:00.000+00:00"
    assert main([*arguments, "--since", "last"]) == 0
    kick_offs = [r for r in server.requests if r["path"].endswith("$export")]
    assert kick_offs[-1]["query"]["_since"] == ["2026-11-24T08:00:00.000+00:00"]
    assert main([*arguments, "--since", "last", "--patient", "--type-filter", "Condition?code=1"]) == 0
    latest = [r for r in server.requests if r["path"].endswith("$export")][-1]
    assert latest["path"] == "/Patient/$export" and latest["query"]["_since"] == [
        "2026-11-25T08:00:00.000+00:00"
    ]
    assert latest["query"]["_typeFilter"] == ["Condition?code=1"]
    capsys.readouterr()


def test_a_failing_kick_off_prints_the_operation_outcome(azure_env, server, capsys):
    server.kick_off_answers = [
        (400, {}, operation_outcome("The _type parameter names an unknown resource type: Patientt"))
    ]
    assert main(["export", "--fhir-url", server.url, "--type", "Patientt", "--auth", "none"]) == 1
    err = capsys.readouterr().err
    assert "400 The _type parameter names an unknown resource type: Patientt" in err
    assert _records(azure_env) == []  # nothing started, nothing recorded


def test_kick_off_throttled_then_accepted_and_a_group_export(azure_env, server, capsys):
    server.kick_off_answers = [(429, {"Retry-After": "0"}, operation_outcome("too many", "throttled"))]
    assert main(["export", "--fhir-url", server.url + "/", "--group", "flu-2026", "--auth", "none"]) == 0
    assert [r["path"] for r in server.requests] == ["/Group/flu-2026/$export"] * 2
    assert "in-progress" in capsys.readouterr().out


def test_cancel_deletes_the_status_url_and_records_it(azure_env, server, capsys):
    assert main(["export", "--fhir-url", server.url, "--auth", "none", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert main(["export", "--fhir-url", server.url, "--auth", "none", "--cancel", job["id"]]) == 0
    assert server.requests[-1]["method"] == "DELETE"
    assert server.requests[-1]["path"] == f"/_status/job{server.jobs}"
    (record,) = _records(azure_env)
    assert record["status"] == "cancelled"
    capsys.readouterr()


def test_retry_after_is_honoured_in_seconds_and_as_a_date(azure_env, server):
    waits: list[float] = []
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.status_answers = [
        (202, {"X-Progress": "1 of 3", "Retry-After": "2"}),
        (202, {"X-Progress": "2 of 3", "Retry-After": later}),
        (202, {"X-Progress": "3 of 3"}),  # none: 10 s
        (500, {}),  # no Retry-After: 1 s, then 2 s
        (502, {}),
    ]
    client = export.BulkExport(lambda: "a-token", sleep=waits.append)
    status_url = client.kick_off(export.ExportRequest(server.url))
    progress: list[str] = []
    manifest = client.wait(status_url, progress.append)
    assert manifest["transactionTime"] == server.transaction_time
    assert progress == ["1 of 3", "2 of 3", "3 of 3"]
    assert waits[0] == 2.0 and 25 < waits[1] <= 30 and waits[2:] == [10.0, 1.0, 2.0]
    assert server.requests[0]["headers"]["Authorization"] == "Bearer a-token"
