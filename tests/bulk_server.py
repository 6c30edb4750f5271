"""A Bulk Data server for tests (HL7 Bulk Data Access IG, as Azure Health Data Services' FHIR
service answers it): kick-off at `$export`, `Patient/$export` and `Group/ID/$export` with 202 and a
Content-Location; a status URL answering a scripted sequence (202 with X-Progress and Retry-After,
429, 5xx) and then the manifest; DELETE to cancel. On kick-off it writes the export's NDJSON files
into a blob container as the FHIR service does (`<folder>/<Type>-1.ndjson`)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def operation_outcome(text: str, code: str = "invalid") -> bytes:
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        }
    ).encode()


class BulkDataServer:
    def __init__(self, container: Any, files: dict[str, bytes], folder: str = "export-1") -> None:
        self.container = container  # where the export's files are written (azure ContainerClient)
        self.files = files  # type -> NDJSON bytes
        self.folder = folder
        self.requests: list[dict] = []  # method, path, query, headers of every request
        self.kick_off_answers: list[tuple[int, dict[str, str], bytes]] = []  # before a 202
        self.status_answers: list[tuple[int, dict[str, str]]] = []  # before the manifest
        self.transaction_time = "2026-11-24T08:00:00.000+00:00"
        self.cancelled: set[str] = set()
        self.jobs = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> tuple[str, dict[str, list[str]]]:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                server.requests.append(
                    {
                        "method": self.command,
                        "path": parts.path,
                        "query": query,
                        "headers": dict(self.headers),
                    }
                )
                return parts.path, query

            def do_GET(self) -> None:
                path, _ = self._record()
                if path.endswith("/$export"):
                    self._kick_off()
                elif path.startswith("/_status/"):
                    self._status(path.rsplit("/", 1)[1])
                else:
                    self._answer(404, {}, operation_outcome(f"unknown path {path}", "not-found"))

            def do_DELETE(self) -> None:
                path, _ = self._record()
                server.cancelled.add(path.rsplit("/", 1)[1])
                self._answer(202, {})

            def _kick_off(self) -> None:
                if server.kick_off_answers:
                    self._answer(*server.kick_off_answers.pop(0))
                    return
                server.jobs += 1
                job = f"job{server.jobs}"
                for resource_type, data in server.files.items():
                    server.container.upload_blob(
                        f"{server.folder}/{resource_type}-1.ndjson", data, overwrite=True
                    )
                self._answer(202, {"Content-Location": f"{server.url}/_status/{job}"})

            def _status(self, job: str) -> None:
                if job in server.cancelled:
                    self._answer(404, {}, operation_outcome("the export was cancelled", "not-found"))
                elif server.status_answers:
                    status, headers = server.status_answers.pop(0)
                    body = b"" if status == 202 else operation_outcome("busy", "transient")
                    self._answer(status, headers, body)
                else:
                    output = [
                        {"type": t, "url": f"{server.container.url}/{server.folder}/{t}-1.ndjson"}
                        for t in server.files
                    ]
                    manifest = {
                        "transactionTime": server.transaction_time,
                        "request": f"{server.url}/$export",
                        "requiresAccessToken": True,
                        "output": output,
                        "error": [],
                    }
                    self._answer(200, {"Content-Type": "application/json"}, json.dumps(manifest).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> BulkDataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
