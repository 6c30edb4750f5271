"""`fhir-anonymize watch`: the function's handler over the source container, for places where the
Functions host cannot run and for re-running one blob."""

from __future__ import annotations

import logging
import time

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


def scan(handler: Handler) -> int:
    """One pass over the source container; returns how many blobs were processed."""
    source = handler.blob_service.get_container_client(handler.settings.source_container)
    processed = 0
    for item in source.list_blobs():
        if not item.name.endswith(".ndjson") or _covered(handler, item.name, item.etag):
            continue
        message = handler.handle(source.get_blob_client(item.name))
        processed += 1
        print(f"{item.name}: {message['status'] if message else 'skipped'}", flush=True)
    return processed


def watch(*, once: bool, interval: float, blob: str | None) -> int:
    handler = Handler()
    if blob is not None:
        source = handler.blob_service.get_container_client(handler.settings.source_container)
        message = handler.handle(source.get_blob_client(blob))
        print(f"{blob}: {message['status'] if message else 'skipped (not .ndjson)'}")
        return 1 if message and message["status"] == "failed" else 0
    while True:
        count = scan(handler)
        if once:
            print(f"{count} blob(s) processed")
            return 0
        time.sleep(interval)
