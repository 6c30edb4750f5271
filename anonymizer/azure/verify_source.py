"""NDJSON resources read from a container for `fhir-anonymize verify container:NAME[/PREFIX]`."""

from __future__ import annotations

from collections.abc import Iterator

from anonymizer.azure import clients
from anonymizer.lines import Document, documents


def read_container(spec: str) -> Iterator[Document]:
    """Every `.ndjson` blob of `NAME[/PREFIX]`, streamed, as the engine reads its lines."""
    container_name, _, prefix = spec.partition("/")
    container = clients.blob_service_from_environment().get_container_client(container_name)
    for item in container.list_blobs(name_starts_with=prefix or None):
        if item.name.endswith(".ndjson"):
            yield from documents(container.get_blob_client(item.name).download_blob().chunks(), item.name)
