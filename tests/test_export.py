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


def test_export_wait_watch_then_status_every_file_complete(azure_env, server, capsys):
    """The operator's flow: export --wait (which finishes each file of the manifest), watch --once
    (nothing left to do), status --json (every file complete, lines equal to the source's)."""
    server.status_answers = [
        (202, {"X-Progress": "10% done", "Retry-After": "0"}),
        (429, {"Retry-After": "0"}),
        (202, {"X-Progress": "60% done", "Retry-After": "0"}),
        (503, {"Retry-After": "0"}),
    ]
    # The Condition file ends in a line cut short: held back while the blob may grow, a fault once
    # the manifest says the file is final.
    server.files["Condition"] = server.files["Condition"] + b'{"resourceType":"Condition","id":"cut'
    arguments = ["export", "--fhir-url", server.url, "--type", "Patient,Condition", "--auth", "none"]
    assert main([*arguments, "--container", azure_env.anonymizer_source_container, "--wait", "--json"]) == 0
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert job["status"] == "complete" and job["transactionTime"] == server.transaction_time
    assert [(f["type"], f["state"]) for f in job["files"]] == [
        ("Patient", "complete"),
        ("Condition", "complete"),
    ]
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

    assert main(["watch", "--once"]) == 0  # covered: nothing to do
    assert "0 blob(s) processed" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    lines = {f["file"].rsplit("/", 1)[1]: f for f in status["files"]}
    assert lines["Patient-1.ndjson"]["lines"] == server.files["Patient"].count(b"\n")
    assert lines["Condition-1.ndjson"]["lines"] == server.files["Condition"].count(b"\n") + 1
    assert lines["Condition-1.ndjson"]["faults"] == {"not_json": 1}  # the cut line
    assert all(f["state"] == "complete" and f["bytes"] > 0 and f["source_bytes"] > 0 for f in status["files"])
    assert status["totals"]["complete"] == 2 and status["totals"]["faults"] == {"not_json": 1}
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert (
        "Patient-1.ndjson: complete" in text
        and "total: 2 file(s) (2 complete, 0 partial, 0 failed, 0 pending)" in text
    )


def test_status_says_pending_and_failed_and_exits_1_on_a_failure(azure_env, server, capsys, monkeypatch):
    assert main(["export", "--fhir-url", server.url, "--auth", "none", "--container", "x"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("ANONYMIZER_ON_INVALID_LINE", "fail")
    server.files["Condition"] = b'{"resourceType":"Condition"}\nnot json\n'
    assert main(["export", "--fhir-url", server.url, "--auth", "none", "--wait"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 1
    first, second = json.loads(capsys.readouterr().out)
    assert first["status"] == "in-progress" and first["files"] == []  # no manifest yet
    states = {f["type"]: f["state"] for f in second["files"]}
    assert states == {"Patient": "complete", "Condition": "failed"}


def test_delete_source_after_complete_removes_only_counted_sources(azure_env, server, capsys, monkeypatch):
    monkeypatch.setenv("ANONYMIZER_DELETE_SOURCE_AFTER_COMPLETE", "true")
    assert main(["export", "--fhir-url", server.url, "--auth", "none", "--wait", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert all(f["source_deleted"] for f in job["files"])
    source = azure_env.service.get_container_client(azure_env.anonymizer_source_container)
    assert [b.name for b in source.list_blobs()] == []
    assert main(["status", "--json"]) == 0  # the destination still says what it holds
    (status,) = json.loads(capsys.readouterr().out)
    assert all(f["state"] == "complete" and f["source_bytes"] is None for f in status["files"])


def test_the_timer_starts_follows_and_finishes_exports(azure_env, server, monkeypatch):
    from anonymizer.azure.handler import Handler
    from anonymizer.azure.settings import Settings

    monkeypatch.setenv("ANONYMIZER_EXPORT_FHIR_URL", server.url)
    monkeypatch.setenv("ANONYMIZER_EXPORT_TYPES", "Patient")
    settings = Settings.from_env()
    handler = Handler(settings)
    records = export.JobRecords(handler.destination)
    client = export.BulkExport(lambda: None, sleep=lambda _: None)
    server.status_answers = [(202, {"X-Progress": "half"})]
    export.tick(settings, records, client, handler, lambda _: None)  # starts one
    (job,) = records.all()
    assert job.status == "in-progress" and server.requests[-1]["query"]["_type"] == ["Patient"]
    export.tick(settings, records, client, handler, lambda _: None)  # still running: one poll
    assert records.load(job.id).progress == "half" and len(records.all()) == 1
    export.tick(settings, records, client, handler, lambda _: None)  # done: files finished, next one
    done = records.load(job.id)
    assert done.status == "complete" and {f["state"] for f in done.files.values()} == {"complete"}
    latest = [r for r in server.requests if r["path"].endswith("$export")][-1]
    assert latest["query"]["_since"] == [server.transaction_time] and len(records.all()) == 2


def test_the_timer_function_is_indexed_only_with_a_schedule(monkeypatch):
    import importlib
    import sys

    sys.modules.pop("function_app", None)
    monkeypatch.delenv("ANONYMIZER_EXPORT_SCHEDULE", raising=False)
    names = [f.get_function_name() for f in importlib.import_module("function_app").app.get_functions()]
    assert names == ["anonymize_export"]  # off by default
    sys.modules.pop("function_app", None)
    monkeypatch.setenv("ANONYMIZER_EXPORT_SCHEDULE", "0 */15 * * * *")
    app = importlib.import_module("function_app").app
    (timer,) = [f for f in app.get_functions() if f.get_function_name() == "export_and_follow"]
    trigger = timer.get_bindings()[0].get_dict_repr()
    assert trigger["type"] == "timerTrigger" and trigger["schedule"] == "%ANONYMIZER_EXPORT_SCHEDULE%"
    sys.modules.pop("function_app", None)


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
