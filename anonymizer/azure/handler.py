"""The function's work for one source blob: the growing-blob protocol, then a queue message.

Used by `function_app.py` (the Azure Functions host hands over a BlobClient) and by
`fhir-anonymize watch` (for places where the host cannot run). Data and configuration failures
are reported on the queue with status `failed` and return normally (a retry would fail again);
only transient storage errors raise, so that the host retries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobServiceClient
from azure.storage.queue import QueueClient

from anonymizer.azure import clients, growing
from anonymizer.azure.names import UnsafeName, check_name
from anonymizer.azure.settings import Settings
from anonymizer.engine import Engine
from anonymizer.errors import AnonymizerError, ConfigurationError
from anonymizer.stream import LineFault
from anonymizer.summary import Summary

log = logging.getLogger("anonymizer.azure")

MAX_MESSAGE_BYTES = 48 * 1024
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "safe-harbor.json"


class Handler:
    def __init__(
        self,
        settings: Settings | None = None,
        blob_service: BlobServiceClient | None = None,
        queue: QueueClient | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.blob_service = blob_service or clients.blob_service(self.settings)
        self.queue = queue or clients.results_queue(self.settings)
        self.destination = self.blob_service.get_container_client(self.settings.destination_container)
        self._engines: dict[date | None, Engine] = {}
        self._prepared = False

    # -- resources the function owns -------------------------------------------------------------
    def _prepare(self) -> None:
        """Destination container and results queue are created if missing; the source never."""
        if self._prepared:
            return
        for create in (self.destination.create_container, self.queue.create_queue):
            with contextlib.suppress(ResourceExistsError):
                create()
        self._prepared = True

    def _configuration_path(self) -> Path:
        config = self.settings.config
        if config is None:
            return SHIPPED_CONFIG
        if config.startswith("https://"):
            data = clients.config_blob(config, self.settings).download_blob().readall()
            handle, name = tempfile.mkstemp(suffix=".json")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            return Path(name)
        return Path(config)

    def engine_for(self, reference_date: date | None) -> Engine:
        """One engine per reference date (a resumed destination keeps its recorded date)."""
        wanted = reference_date or self.settings.reference_date
        engine = self._engines.get(wanted)
        if engine is None:
            engine = Engine.from_file(
                self._configuration_path(), reference_date=wanted, kind=self.settings.engine
            )
            self._engines[wanted] = engine
        return engine

    # -- one blob --------------------------------------------------------------------------------
    def handle(self, source: BlobClient, *, final: bool = False) -> dict[str, Any] | None:
        """Process one source blob and report it on the queue. Every failure a retry would meet
        again (bad data under `fail`, a configuration or settings error, an unsafe name, an
        unexpected error) is reported with status `failed`; only storage errors raise, so that
        the host retries. `final`: the blob is complete (an export's manifest lists it): a
        held-back unterminated last line is read now."""
        name = source.blob_name
        if not name.endswith(".ndjson"):
            log.info("skipped %s: not an .ndjson file", name)
            return None
        self._prepare()
        source = clients.tune_for_streaming(source)
        destination_name = self.settings.destination_name(name)
        destination: BlobClient | None = None
        try:
            if self.settings.problem is not None:
                kind, text = self.settings.problem
                raise UnsafeName(text) if kind == "unsafe_name" else ConfigurationError(text)
            check_name(name, "source")
            check_name(destination_name, "destination")
            destination = self.destination.get_blob_client(destination_name)
            outcome = growing.process(source, destination, self.engine_for, self.settings, final=final)
            message = self._message(
                outcome.summary.to_dict(status=outcome.status, engine=outcome.engine),
                source,
                destination,
                outcome.source_etag,
                outcome.range,
                outcome.destination_etag,
            )
        except LineFault as fault:
            message = self._failure(source, destination, fault.kind, fault.line)
        except ConfigurationError as exc:  # its message names what to fix, never content
            log.error("%s: configuration error: %s", name, exc)
            message = self._failure(source, destination, "configuration", None, str(exc))
        except UnsafeName as exc:
            log.error("%s: %s", name, exc)
            message = self._failure(source, destination, "unsafe_name", None, str(exc))
        except AnonymizerError as exc:
            message = self._failure(source, destination, getattr(exc, "kind", type(exc).__name__), None)
        except (AzureError, growing.Contention):
            raise  # storage trouble: the host retries
        except Exception as exc:  # a retry would fail again; only the type is logged (no content)
            log.error("%s: internal error (%s)", name, type(exc).__name__)
            message = self._failure(source, destination, "internal_error", None)
        self.send(message)
        log.info("%s: %s", name, message["status"])
        return message

    def _failure(
        self,
        source: BlobClient,
        destination: BlobClient | None,
        kind: str,
        line: int | None,
        text: str | None = None,
    ) -> dict:
        message: dict[str, Any] = {"status": "failed"}
        try:
            engine = self.engine_for(None)
            message = Summary().to_dict(status="failed", engine=engine)
        except Exception:
            pass
        error: dict[str, Any] = {"kind": kind, "line": line}
        if text is not None:
            error["message"] = text
        return self._message(message, source, destination, None, None, None, error=error)

    def _message(
        self,
        body: dict,
        source: BlobClient,
        destination: BlobClient | None,
        source_etag: str | None,
        byte_range: tuple[int, int] | None,
        destination_etag: str | None,
        error: dict | None = None,
    ) -> dict:
        message = dict(body)
        message["source"] = {
            "container": source.container_name,
            "blob": source.blob_name,
            "etag": source_etag,
            "range": list(byte_range) if byte_range else None,
        }
        message["destination"] = {
            "container": self.settings.destination_container,
            "blob": destination.blob_name if destination is not None else None,
            "etag": destination_etag,
        }
        if error is not None:
            message["status"] = "failed"
            message["error"] = error
        return message

    def send(self, message: dict) -> None:
        text = json.dumps(message, separators=(",", ":"))
        if len(text.encode()) > MAX_MESSAGE_BYTES:  # counts are small; fault line lists are capped
            message = {k: message[k] for k in ("status", "source", "destination", "error") if k in message}
            text = json.dumps(message, separators=(",", ":"))
        self.queue.send_message(text)
