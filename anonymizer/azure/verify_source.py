"""Containers for `fhir-anonymize verify container:NAME[/PREFIX] ...`: the NDJSON resources of the
blobs, streamed, with their size for progress and the run identity of the destination's metadata."""

from __future__ import annotations

from collections.abc import Iterator

from anonymizer.azure import clients
from anonymizer.lines import Document, counted, documents
from anonymizer.verify import Location, Progress


def container_location(spec: str) -> Location:
    container_name, _, prefix = spec.partition("/")
    container = clients.blob_service_from_environment().get_container_client(container_name)
    blobs = [
        item
        for item in container.list_blobs(name_starts_with=prefix or None, include=["metadata"])
        if item.name.endswith(".ndjson")
    ]
    identity: dict[str, str] = {}
    for item in blobs:  # the run identity anonymized blobs record (docs/contract.md section 8)
        metadata = item.metadata or {}
        if metadata.get("anon_config_digest"):
            identity = {
                "config_digest": metadata["anon_config_digest"],
                "key_fingerprints": metadata.get("anon_key_fingerprint", ""),
                "engine_version": metadata.get("anon_engine_version", ""),
                "reference_date": metadata.get("anon_reference_date", ""),
            }
            break

    def read(progress: Progress | None) -> Iterator[Document]:
        for item in blobs:
            chunks = container.get_blob_client(item.name).download_blob().chunks()
            yield from documents(counted(chunks, progress), item.name)

    return Location(f"container:{spec}", read, sum(item.size or 0 for item in blobs), identity)
