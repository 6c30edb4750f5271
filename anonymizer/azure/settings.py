"""The app settings of CONTRACT section 5, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from anonymizer.errors import ConfigurationError
from anonymizer.stream import DEFAULT_MAX_LINE_BYTES

CONNECTION = "AzureWebJobsStorage"


@dataclass(frozen=True)
class Settings:
    source_container: str = "fhir-export"
    destination_container: str = "fhir-anonymized"
    destination_prefix: str = ""
    results_queue: str = "anonymization-results"
    config: str | None = None  # path in the app, or an https:// blob URL; None: shipped Safe Harbor
    trigger_source: str = "EventGrid"
    on_invalid_line: str = "drop"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    checkpoint_bytes: int = 268_435_456
    reference_date: date | None = None
    connection_string: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            text = env.get(name, "")
            try:
                value = int(text) if text else default
            except ValueError:
                raise ConfigurationError(f"{name} must be a whole number of bytes") from None
            if value < 1:
                raise ConfigurationError(f"{name} must be positive")
            return value

        reference = env.get("ANONYMIZER_REFERENCE_DATE") or None
        try:
            reference_date = date.fromisoformat(reference) if reference else None
        except ValueError:
            raise ConfigurationError("ANONYMIZER_REFERENCE_DATE must be YYYY-MM-DD") from None
        on_invalid = env.get("ANONYMIZER_ON_INVALID_LINE", "drop") or "drop"
        if on_invalid not in ("drop", "fail"):
            raise ConfigurationError("ANONYMIZER_ON_INVALID_LINE must be drop or fail")
        settings = cls(
            source_container=env.get("ANONYMIZER_SOURCE_CONTAINER") or "fhir-export",
            destination_container=env.get("ANONYMIZER_DESTINATION_CONTAINER") or "fhir-anonymized",
            destination_prefix=env.get("ANONYMIZER_DESTINATION_PREFIX", ""),
            results_queue=env.get("ANONYMIZER_RESULTS_QUEUE") or "anonymization-results",
            config=env.get("ANONYMIZER_CONFIG") or None,
            trigger_source=env.get("ANONYMIZER_TRIGGER_SOURCE") or "EventGrid",
            on_invalid_line=on_invalid,
            max_line_bytes=number("ANONYMIZER_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES),
            checkpoint_bytes=number("ANONYMIZER_CHECKPOINT_BYTES", 268_435_456),
            reference_date=reference_date,
            connection_string=env.get(CONNECTION) or None,
            blob_service_uri=env.get(f"{CONNECTION}__blobServiceUri") or None,
            queue_service_uri=env.get(f"{CONNECTION}__queueServiceUri") or None,
            credential=env.get(f"{CONNECTION}__credential") or None,
            client_id=env.get(f"{CONNECTION}__clientId") or None,
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.trigger_source not in ("EventGrid", "LogsAndContainerScan"):
            raise ConfigurationError("ANONYMIZER_TRIGGER_SOURCE must be EventGrid or LogsAndContainerScan")
        if self.destination_container == self.source_container:
            # The trigger watches the whole source container: any destination inside it would
            # trigger the function on its own output.
            raise ConfigurationError(
                "ANONYMIZER_DESTINATION_CONTAINER must differ from ANONYMIZER_SOURCE_CONTAINER "
                f"({self.source_container!r}): the output would trigger the function again"
            )
        if not (self.connection_string or self.blob_service_uri):
            raise ConfigurationError(
                f"No storage connection: set {CONNECTION} (a connection string) or "
                f"{CONNECTION}__blobServiceUri and {CONNECTION}__queueServiceUri (identity-based)"
            )

    def destination_name(self, source_name: str) -> str:
        return f"{self.destination_prefix}{source_name}"
