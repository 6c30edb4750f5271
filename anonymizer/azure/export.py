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

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

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

    def poll(self, status_url: str) -> tuple[str | None, dict | None]:
        """(progress, None) while the export runs, (None, manifest) once it is complete."""
        status, headers, body = self._call("GET", status_url)
        if status == 202:
            return headers.get("X-Progress") or "in progress", None
        if status == 200:
            return None, json.loads(body)
        raise ExportFailed(f"status: unexpected {status} {outcome_text(body)}")

    def wait(self, status_url: str, on_progress: Callable[[str], None] | None = None) -> dict:
        """Poll until the manifest comes, honouring Retry-After (default 10 s between polls)."""
        while True:
            status, headers, body = self._call("GET", status_url)
            if status == 200:
                return json.loads(body)
            if status != 202:
                raise ExportFailed(f"status: unexpected {status} {outcome_text(body)}")
            progress = headers.get("X-Progress") or "in progress"
            if on_progress is not None:
                on_progress(progress)
            self.sleep(retry_after(headers.get("Retry-After"), default=10.0))

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
            kicked_off=datetime.now(UTC).isoformat(timespec="seconds"),
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
    record.status, record.manifest = "complete", manifest
    record.transaction_time = manifest.get("transactionTime")
    errors = manifest.get("error") or []
    record.outcome = f"{len(manifest.get('output') or [])} file(s), {len(errors)} error file(s)"
    records.save(record)
    return record


def cancel_export(client: BulkExport, records: JobRecords, job_id: str) -> JobRecord:
    record = records.load(job_id)
    client.cancel(record.status_url)
    record.status, record.outcome = "cancelled", "cancelled on request"
    records.save(record)
    return record


def describe(record: JobRecord) -> dict[str, Any]:
    """A job record for printing: what was asked, where it stands, the files of its manifest."""
    files = [
        {"type": item.get("type"), "url": item.get("url"), "count": item.get("count")}
        for item in (record.manifest or {}).get("output") or []
    ]
    return {
        "id": record.id,
        "status": record.status,
        "progress": record.progress,
        "transactionTime": record.transaction_time,
        "outcome": record.outcome,
        "files": files,
    }
