"""NDJSON resources read from a container for `fhir-anonymize verify container:NAME[/PREFIX]`."""

from __future__ import annotations

from collections.abc import Iterator

from anonymizer.azure import clients


def read_container(spec: str) -> Iterator[tuple[str, int, dict]]:
    from anonymizer.verify import _parse

    container_name, _, prefix = spec.partition("/")
    container = clients.blob_service_from_environment().get_container_client(container_name)
    for item in container.list_blobs(name_starts_with=prefix or None):
        if not item.name.endswith(".ndjson"):
            continue
        pending = b""
        number = 0
        for chunk in container.get_blob_client(item.name).download_blob().chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                number += 1
                document = _parse(line)
                if document is not None:
                    yield item.name, number, document
        if pending:
            document = _parse(pending)
            if document is not None:
                yield item.name, number + 1, document
