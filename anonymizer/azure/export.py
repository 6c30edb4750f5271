"""Start a FHIR bulk export (`$export`, HL7 Bulk Data Access IG) and follow it, recording each job
as a JSON blob in the destination container (`_exports/<job id>.json`): the request, the status
URL, its progress, the manifest with its `transactionTime`, and the outcome. `--since last`
continues from the last complete job of the same server.

Requests carry `Accept: application/fhir+json` and `Prefer: respond-async`, and a bearer token
from azure-identity (scope `<fhir-url>/.default`) unless the server is an open test server. The
status URL is polled honouring `Retry-After`; 429 and 5xx answers are retried with backoff; any
other error ends the job with the OperationOutcome's text.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from anonymizer.azure.growing import unpack_counts
from anonymizer.azure.settings import Settings

RECORDS = "_exports/"
MAX_RETRIES = 5  # 429 and 5xx: 1, 2, 4, 8, 16 s unless Retry-After says otherwise
Token = Callable[[], str | None]
Say = Callable[[str], None]


class ExportFailed(Exception):
    """The server refused or failed the export: its OperationOutcome's text (no resource content:
    the server's diagnostics about the request)."""


@dataclass
class ExportRequest:
    fhir_url: str
    types: list[str] = field(default_factory=list)
    since: str | None = None
    type_filter: str | None = None
    group: str | None = None
    patient: bool = False  # Patient/$export rather than the system-level export
    container: str | None = None  # Azure's `_container`: where the FHIR service writes the files

    def url(self) -> str:
        base = self.fhir_url.rstrip("/")
        if self.group:
            path = f"Group/{urllib.parse.quote(self.group, safe='')}/$export"
        else:
            path = "Patient/$export" if self.patient else "$export"
        parameters = {
            "_type": ",".join(self.types) or None,
            "_since": self.since,
            "_typeFilter": self.type_filter,
            "_container": self.container,
        }
        query = urllib.parse.urlencode({k: v for k, v in parameters.items() if v}, safe=",")
        return f"{base}/{path}" + (f"?{query}" if query else "")


@dataclass
class JobRecord:
    id: str
    request: dict
    kicked_off: str
    status_url: str
    status: str = "in-progress"  # in-progress, complete, failed, cancelled
    progress: str | None = None
    transaction_time: str | None = None
    manifest: dict | None = None
    outcome: str | None = None
    # Per manifest file (its blob name in the source container): what the handler made of it.
    files: dict[str, dict] = field(default_factory=dict)

    @property
    def blob_name(self) -> str:
        return f"{RECORDS}{self.id}.json"


def azure_token(fhir_url: str) -> Token:
    """A bearer token for the FHIR service from azure-identity (managed identity, az login, ...)."""
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    scope = f"{fhir_url.rstrip('/')}/.default"
    return lambda: credential.get_token(scope).token


class BulkExport:
    """One server's `$export` calls, with the retry and wait rules of the IG."""

    def __init__(
        self, token: Token, *, say: Say = lambda _: None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.token = token
        self.say = say
        self.sleep = sleep

    def _call(self, method: str, url: str) -> tuple[int, dict[str, str], bytes]:
        """One request, retried on 429 and 5xx (Retry-After, else 1, 2, 4 ... seconds)."""
        for attempt in range(MAX_RETRIES + 1):
            headers = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
            token = self.token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            request = urllib.request.Request(url, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                status, answer, body = error.code, dict(error.headers), error.read()
            if (status == 429 or status >= 500) and attempt < MAX_RETRIES:
                wait = retry_after(answer.get("Retry-After"), default=float(2**attempt))
                self.say(f"the server answered {status}; retrying in {wait:g} s")
                self.sleep(wait)
                continue
            raise ExportFailed(f"{method} {_path(url)}: {status} {outcome_text(body)}")
        raise AssertionError("unreachable")

    def kick_off(self, request: ExportRequest) -> str:
        """The status URL of a new export."""
        status, headers, body = self._call("GET", request.url())
        location = headers.get("Content-Location")
        if status != 202 or not location:
            raise ExportFailed(
                f"kick-off: expected 202 with Content-Location, got {status} {outcome_text(body)}"
            )
        return location

    def poll(self, status_url: str) -> tuple[str | None, dict | None, float]:
        """(progress, None, seconds to wait) while the export runs, (None, manifest, 0) once it
        is complete; the wait is Retry-After's, else 10 s."""
        status, headers, body = self._call("GET", status_url)
        if status == 202:
            wait = retry_after(headers.get("Retry-After"), default=10.0)
            return headers.get("X-Progress") or "in progress", None, wait
        if status == 200:
            return None, json.loads(body), 0.0
        raise ExportFailed(f"status: unexpected {status} {outcome_text(body)}")

    def wait(self, status_url: str, on_progress: Callable[[str], None] | None = None) -> dict:
        """Poll until the manifest comes, honouring Retry-After."""
        while True:
            progress, manifest, wait = self.poll(status_url)
            if manifest is not None:
                return manifest
            if on_progress is not None and progress is not None:
                on_progress(progress)
            self.sleep(wait)

    def cancel(self, status_url: str) -> None:
        status, _, body = self._call("DELETE", status_url)
        if status not in (200, 202, 204):
            raise ExportFailed(f"cancel: unexpected {status} {outcome_text(body)}")


def retry_after(value: str | None, *, default: float) -> float:
    """Seconds to wait from a Retry-After header: seconds, or an HTTP date."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return default


def outcome_text(body: bytes) -> str:
    """The diagnostics of an OperationOutcome body, else a short note of what came."""
    try:
        document = json.loads(body)
    except ValueError:
        return "(no OperationOutcome)"
    issues = document.get("issue") if isinstance(document, dict) else None
    texts = []
    for issue in issues if isinstance(issues, list) else []:
        if isinstance(issue, dict):
            details = issue.get("details")
            detail_text = details.get("text") if isinstance(details, dict) else None
            text = issue.get("diagnostics") or detail_text or issue.get("code")
            if text:
                texts.append(str(text))
    return "; ".join(texts) or "(no OperationOutcome)"


def _path(url: str) -> str:
    """A URL without its query (which may carry `_typeFilter` values) for messages."""
    return urllib.parse.urlsplit(url).path


# -- job records ---------------------------------------------------------------------------------------
class JobRecords:
    """The export jobs recorded in a container, one JSON blob each."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def create(self, request: ExportRequest, status_url: str) -> JobRecord:
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()
        record = JobRecord(
            id=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8],
            request=asdict(request),
            kicked_off=datetime.now(UTC).isoformat(timespec="microseconds"),  # orders the jobs
            status_url=status_url,
        )
        self.save(record)
        return record

    def save(self, record: JobRecord) -> None:
        data = json.dumps(asdict(record), indent=2).encode()
        self.container.upload_blob(record.blob_name, data, overwrite=True)

    def load(self, job_id: str) -> JobRecord:
        blob = self.container.get_blob_client(f"{RECORDS}{job_id}.json")
        return JobRecord(**json.loads(blob.download_blob().readall()))

    def all(self) -> list[JobRecord]:
        records = []
        try:
            for item in self.container.list_blobs(name_starts_with=RECORDS):
                if item.name.endswith(".json"):
                    data = self.container.get_blob_client(item.name).download_blob().readall()
                    records.append(JobRecord(**json.loads(data)))
        except ResourceNotFoundError:  # no container yet: no job recorded
            return []
        return sorted(records, key=lambda r: r.kicked_off)

    def last_transaction_time(self, fhir_url: str) -> str | None:
        """The `transactionTime` of the newest complete export of this server."""
        times = [
            r.transaction_time
            for r in self.all()
            if r.status == "complete" and r.transaction_time and _same_server(r.request["fhir_url"], fhir_url)
        ]
        return max(times, key=_instant) if times else None


def _same_server(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_export(
    client: BulkExport, records: JobRecords, request: ExportRequest, *, wait: bool, say: Say
) -> JobRecord:
    """Kick off an export and record it; with `wait`, follow it to its manifest (or failure)."""
    status_url = client.kick_off(request)
    record = records.create(request, status_url)
    say(f"export {record.id} started")
    if not wait:
        return record

    def progress(text: str) -> None:
        if text != record.progress:
            record.progress = text
            records.save(record)
            say(f"export {record.id}: {text}")

    try:
        manifest = client.wait(status_url, progress)
    except ExportFailed as exc:
        record.status, record.outcome = "failed", str(exc)
        records.save(record)
        raise
    completed(record, manifest)
    records.save(record)
    return record


def completed(record: JobRecord, manifest: dict) -> None:
    """The record of a job whose manifest came."""
    record.status, record.manifest = "complete", manifest
    record.transaction_time = manifest.get("transactionTime")
    errors = manifest.get("error") or []
    record.outcome = f"{len(manifest.get('output') or [])} file(s), {len(errors)} error file(s)"


def cancel_export(client: BulkExport, records: JobRecords, job_id: str) -> JobRecord:
    record = records.load(job_id)
    client.cancel(record.status_url)
    record.status, record.outcome = "cancelled", "cancelled on request"
    records.save(record)
    return record


def describe(record: JobRecord, container: str) -> dict[str, Any]:
    """A job record for printing: what was asked, where it stands, the files of its manifest with
    what the handler made of those in `container` (the source container)."""
    files = []
    for item in (record.manifest or {}).get("output") or []:
        name = blob_name_in(str(item.get("url", "")), container)
        entry = {"type": item.get("type"), "url": item.get("url"), "count": item.get("count")}
        files.append({**entry, **record.files.get(name or "", {})})
    return {
        "id": record.id,
        "status": record.status,
        "progress": record.progress,
        "transactionTime": record.transaction_time,
        "outcome": record.outcome,
        "files": files,
    }


# -- finishing an export's files -----------------------------------------------------------------------
def blob_name_in(url: str, container: str) -> str | None:
    """The blob name of a manifest URL inside `container` (Azure's `https://<account>.blob.../
    <container>/<name>`, Azurite's `http://host:port/<account>/<container>/<name>`), or None."""
    parts = urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/").split("/")
    if container not in parts:
        return None
    name = "/".join(parts[parts.index(container) + 1 :])
    return name or None


def finish_files(record: JobRecord, records: JobRecords, handler: Any, say: Say) -> None:
    """The manifest says its files are final: the handler finishes each (a held-back unterminated
    tail is read now, as a fault if it is not a resource), and the record says how each ended.
    With ANONYMIZER_DELETE_SOURCE_AFTER_COMPLETE, a source file whose destination is complete
    and holds as many lines as the source is removed."""
    settings = handler.settings
    source = handler.blob_service.get_container_client(settings.source_container)
    for item in (record.manifest or {}).get("output") or []:
        name = blob_name_in(str(item.get("url", "")), settings.source_container)
        if name is None:
            say(f"export {record.id}: {item.get('type')} is not in {settings.source_container}; left alone")
            continue
        blob = source.get_blob_client(name)
        message = handler.handle(blob, final=True) or {}
        state = file_state(settings, handler.blob_service, name)
        if message.get("status") == "failed":
            state["state"] = "failed"
        entry = {"type": item.get("type"), "message": message.get("status"), **state}
        if settings.delete_source_after_complete and state["state"] == "complete":
            entry["source_deleted"] = _delete_if_counted(blob, state["lines"])
        record.files[name] = entry
        say(f"export {record.id}: {name}: {state['state']}")
    records.save(record)


def file_state(settings: Settings, service: BlobServiceClient, name: str) -> dict[str, Any]:
    """Where one source file stands, from the destination's metadata (docs/contract.md section 8):
    complete, partial, or pending (no destination yet); its source and anonymized bytes, the
    lines read and the faults by kind."""
    destination = service.get_container_client(settings.destination_container)
    source = service.get_container_client(settings.source_container)
    out: dict[str, Any] = {"source_bytes": None, "bytes": None, "lines": None, "faults": {}}
    with contextlib.suppress(ResourceNotFoundError):
        out["source_bytes"] = source.get_blob_client(name).get_blob_properties().size
    try:
        properties = destination.get_blob_client(settings.destination_name(name)).get_blob_properties()
    except ResourceNotFoundError:
        return {**out, "state": "pending"}
    metadata = {k.lower(): v for k, v in (properties.metadata or {}).items()}
    out["bytes"] = properties.size
    out["lines"] = max(int(metadata.get("anon_next_line") or 1) - 1, 0)
    out["faults"] = unpack_counts(metadata.get("anon_fault_counts", ""))
    return {**out, "state": "complete" if metadata.get("anon_status") == "complete" else "partial"}


def _delete_if_counted(blob: Any, lines: int) -> bool:
    """Remove the source when it has exactly the destination's line count (read again, streamed),
    and only the version that was counted (its etag)."""
    properties = blob.get_blob_properties()
    count, last = 0, b"\n"
    for chunk in blob.download_blob(
        etag=properties.etag, match_condition=MatchConditions.IfNotModified
    ).chunks():
        count += chunk.count(b"\n")
        last = chunk[-1:] or last
    count += last != b"\n"
    if count != lines:
        return False
    blob.delete_blob(etag=properties.etag, match_condition=MatchConditions.IfNotModified)
    return True


# -- where every file stands -----------------------------------------------------------------------------
def job_status(record: JobRecord, settings: Settings, service: BlobServiceClient) -> dict[str, Any]:
    """A job and each file of its manifest: complete, partial, failed or pending, with sizes,
    lines and faults by kind, and totals."""
    files = []
    for item in (record.manifest or {}).get("output") or []:
        name = blob_name_in(str(item.get("url", "")), settings.source_container)
        if name is None:
            continue
        state = file_state(settings, service, name)
        if (record.files.get(name) or {}).get("message") == "failed":
            state["state"] = "failed"
        files.append({"file": name, "type": item.get("type"), **state})
    totals: dict[str, Any] = {"files": len(files), "lines": 0, "source_bytes": 0, "bytes": 0, "faults": {}}
    for entry in files:
        totals[entry["state"]] = totals.get(entry["state"], 0) + 1
        for key in ("lines", "source_bytes", "bytes"):
            totals[key] += entry[key] or 0
        for kind, n in entry["faults"].items():
            totals["faults"][kind] = totals["faults"].get(kind, 0) + n
    return {**describe(record, settings.source_container), "files": files, "totals": totals}


def tick(settings: Settings, records: JobRecords, client: BulkExport, handler: Any, say: Say) -> None:
    """One run of the timer (function_app.py): follow the jobs in progress one poll each, finishing
    the files of those that completed; then, with none in progress, start the next export of
    ANONYMIZER_EXPORT_FHIR_URL since the last complete one (each export is incremental)."""
    running = [r for r in records.all() if r.status == "in-progress"]
    for record in running:
        try:
            progress, manifest, _ = client.poll(record.status_url)
        except ExportFailed as exc:
            record.status, record.outcome = "failed", str(exc)
            records.save(record)
            continue
        if manifest is None:
            record.progress = progress
            records.save(record)
            continue
        completed(record, manifest)
        finish_files(record, records, handler, say)  # (saves the record)
    if settings.export_fhir_url and not any(r.status == "in-progress" for r in running):
        request = ExportRequest(
            settings.export_fhir_url,
            types=[t.strip() for t in (settings.export_types or "").split(",") if t.strip()],
            since=records.last_transaction_time(settings.export_fhir_url),
            container=settings.source_container,
        )
        run_export(client, records, request, wait=False, say=say)
