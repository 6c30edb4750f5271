"""The app settings of docs/contract.md section 5, read from the environment.

The storage connection is needed before anything can run or be reported: a missing one raises.
Every other setting is the run's (`anonymizer.settings`, shared with the command line): a bad
value there is kept as `problem` and reported on the queue for each blob (status `failed`, its
message naming the setting), because the function can still say so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from anonymizer.azure.names import UnsafeName, check_prefix
from anonymizer.errors import ConfigurationError
from anonymizer.settings import RunSettings

CONNECTION = "AzureWebJobsStorage"
TRIGGER_SOURCES = ("EventGrid", "LogsAndContainerScan")


@dataclass(frozen=True)
class Settings:
    source_container: str = "fhir-export"
    destination_container: str = "fhir-anonymized"
    destination_prefix: str = ""
    results_queue: str = "anonymization-results"
    trigger_source: str = "EventGrid"
    run: RunSettings = field(default_factory=RunSettings)
    # A run setting that is wrong: (kind, message) reported for every blob; None when all is well.
    problem: tuple[str, str] | None = None
    connection_string: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None
    # Remove a source file once its destination is complete and its line count checked (README).
    delete_source_after_complete: bool = False
    # The timer's exports (function_app.py): the FHIR server, types, schedule (off when empty).
    export_fhir_url: str | None = None
    export_types: str | None = None

    # The run's settings, read where the growing-blob protocol needs them.
    @property
    def on_invalid_line(self) -> str:
        return self.run.on_invalid_line

    @property
    def max_line_bytes(self) -> int:
        return self.run.max_line_bytes

    @property
    def checkpoint_bytes(self) -> int:
        return self.run.checkpoint_bytes

    @property
    def reference_date(self):
        return self.run.reference_date

    @property
    def config(self) -> str | None:
        return self.run.config

    @property
    def engine(self) -> str:
        return self.run.engine

    @property
    def threads(self) -> int:
        """The compiled core's threads for a blob: ANONYMIZER_THREADS, else every CPU of the
        instance."""
        return self.run.threads or len(os.sched_getaffinity(0))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        source = env.get("ANONYMIZER_SOURCE_CONTAINER") or "fhir-export"
        destination = env.get("ANONYMIZER_DESTINATION_CONTAINER") or "fhir-anonymized"
        prefix = env.get("ANONYMIZER_DESTINATION_PREFIX", "")
        problem: tuple[str, str] | None = None
        run = RunSettings()
        try:
            run = RunSettings.from_env(env)
            check_prefix(prefix)
            _check_containers(source, destination)
        except UnsafeName as exc:
            problem = ("unsafe_name", str(exc))
        except ConfigurationError as exc:
            problem = ("configuration", str(exc))
        settings = cls(
            source_container=source,
            destination_container=destination,
            destination_prefix=prefix,
            results_queue=env.get("ANONYMIZER_RESULTS_QUEUE") or "anonymization-results",
            trigger_source=env.get("ANONYMIZER_TRIGGER_SOURCE") or "EventGrid",
            run=run,
            problem=problem,
            connection_string=env.get(CONNECTION) or None,
            blob_service_uri=env.get(f"{CONNECTION}__blobServiceUri") or None,
            queue_service_uri=env.get(f"{CONNECTION}__queueServiceUri") or None,
            credential=env.get(f"{CONNECTION}__credential") or None,
            client_id=env.get(f"{CONNECTION}__clientId") or None,
            delete_source_after_complete=_flag(env, "ANONYMIZER_DELETE_SOURCE_AFTER_COMPLETE"),
            export_fhir_url=env.get("ANONYMIZER_EXPORT_FHIR_URL") or None,
            export_types=env.get("ANONYMIZER_EXPORT_TYPES") or None,
        )
        settings.check_connection()
        return settings

    def check_connection(self) -> None:
        if self.trigger_source not in TRIGGER_SOURCES:
            raise ConfigurationError(
                f"ANONYMIZER_TRIGGER_SOURCE must be EventGrid or LogsAndContainerScan, not "
                f"{self.trigger_source!r}"
            )
        if not (self.connection_string or self.blob_service_uri):
            raise ConfigurationError(
                f"No storage connection: set {CONNECTION} (a connection string) or "
                f"{CONNECTION}__blobServiceUri and {CONNECTION}__queueServiceUri (identity-based)"
            )

    def destination_name(self, source_name: str) -> str:
        return f"{self.destination_prefix}{source_name}"


def _check_containers(source: str, destination: str) -> None:
    # The trigger watches the whole source container: any destination inside it would trigger
    # the function on its own output, whatever the prefix.
    if destination.lower() == source.lower():
        raise ConfigurationError(
            "ANONYMIZER_DESTINATION_CONTAINER must differ from ANONYMIZER_SOURCE_CONTAINER "
            f"({source!r}): the output would trigger the function again"
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false, not {value!r}")
