"""NDJSON resources read from a container for `fhir-anonymize verify container:NAME[/PREFIX]`."""

from __future__ import annotations

import os
from collections.abc import Iterator

from azure.storage.blob import BlobServiceClient

from anonymizer.azure import clients
from anonymizer.azure.settings import CONNECTION, Settings
from anonymizer.errors import ConfigurationError


def _service() -> BlobServiceClient:
    if not (os.environ.get(CONNECTION) or os.environ.get(f"{CONNECTION}__blobServiceUri")):
        raise ConfigurationError(f"container: locations need {CONNECTION} (or {CONNECTION}__blobServiceUri)")
    environ = dict(os.environ)
    # Only the connection matters here; the container settings get harmless distinct defaults.
    environ.update({"ANONYMIZER_SOURCE_CONTAINER": "-", "ANONYMIZER_DESTINATION_CONTAINER": "--"})
    return clients.blob_service(Settings.from_env(environ))


def read_container(spec: str) -> Iterator[tuple[str, int, dict]]:
    from anonymizer.verify import _parse

    container_name, _, prefix = spec.partition("/")
    container = _service().get_container_client(container_name)
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
