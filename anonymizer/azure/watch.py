"""`fhir-anonymize watch`: the function's handler over the source container, for places where the
Functions host cannot run and for re-running one blob.

One blob's failure never stops the others: each blob's outcome is printed (with what was left
out), a blob that raised is reported and the scan goes on, and `--once` exits 1 when any failed.
A blob that failed is not tried again in loop mode until its etag changes.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from anonymizer.azure.handler import Handler

log = logging.getLogger("anonymizer.azure")


def _covered(handler: Handler, name: str, etag: str) -> bool:
    """The destination already covers this source etag (nothing to do, no message)."""
    blob = handler.destination.get_blob_client(handler.settings.destination_name(name))
    try:
        metadata = {k.lower(): v for k, v in (blob.get_blob_properties().metadata or {}).items()}
    except ResourceNotFoundError:
        return False
    return metadata.get("anon_source_etag") == etag.strip('"')


def describe(message: dict[str, Any] | None) -> str:
    """One line for a blob's outcome: its status, what was left out, what to fix."""
    if message is None:
        return "skipped (not .ndjson)"
    status = message["status"]
    error = message.get("error")
    if error:
        where = f" at line {error['line']}" if error.get("line") else ""
        text = f": {error['message']}" if error.get("message") else ""
        return f"{status} ({error['kind'].replace('_', ' ')}{where}{text})"
    left_out = sum(fault["count"] for fault in message.get("faults", {}).values())
    if left_out:
        kinds = ", ".join(f"{kind.replace('_', ' ')} {f['count']}" for kind, f in message["faults"].items())
        return f"{status}, {left_out} line(s) left out ({kinds})"
    return status


class Scan:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.failed: dict[str, str] = {}  # blob name -> the etag that failed

    def once(self) -> tuple[int, int]:
        """One pass over the source container: (blobs processed, blobs failed)."""
        handler = self.handler
        source = handler.blob_service.get_container_client(handler.settings.source_container)
        processed = failed = 0
        for item in source.list_blobs():
            if not item.name.endswith(".ndjson") or self.failed.get(item.name) == item.etag:
                continue
            try:
                if _covered(handler, item.name, item.etag):
                    continue
                message = handler.handle(source.get_blob_client(item.name))
            except Exception as exc:  # a storage error the host would retry: go on with the rest
                log.error("%s: %s", item.name, type(exc).__name__)
                message = {"status": "failed", "error": {"kind": type(exc).__name__, "line": None}}
            processed += 1
            if message is not None and message["status"] == "failed":
                failed += 1
                self.failed[item.name] = item.etag
            else:
                self.failed.pop(item.name, None)
            print(f"{item.name}: {describe(message)}", flush=True)
        return processed, failed


def watch(*, once: bool, interval: float, blob: str | None) -> int:
    handler = Handler()
    if blob is not None:
        source = handler.blob_service.get_container_client(handler.settings.source_container)
        client = source.get_blob_client(blob)
        if not client.exists():
            print(
                f"fhir-anonymize: error: blob {blob!r} not found in container "
                f"{handler.settings.source_container!r}",
                file=sys.stderr,
            )
            return 2
        message = handler.handle(client)
        print(f"{blob}: {describe(message)}")
        return 1 if message and message["status"] == "failed" else 0
    scan = Scan(handler)
    while True:
        count, failed = scan.once()
        if once:
            print(f"{count} blob(s) processed, {failed} failed")
            return 1 if failed else 0
        time.sleep(interval)
