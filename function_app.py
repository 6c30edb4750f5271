"""Azure Functions app (Python v2 programming model): a blob-triggered function, and a timer that
starts and follows `$export` when ANONYMIZER_EXPORT_SCHEDULE is set.

Thin on purpose: the trigger hands over an SDK BlobClient (so multi-GB exports are streamed, never
held in memory) and `anonymizer.azure.handler` does the rest. Settings: docs/contract.md section 5.
"""

# No `from __future__ import annotations`: the worker reads the real annotation (the SDK type).
import logging
import os

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blobext

from anonymizer.azure.handler import Handler
from anonymizer.azure.settings import CONNECTION

# Read at import time: the trigger's path and source are part of the function's definition.
SOURCE_CONTAINER = os.environ.get("ANONYMIZER_SOURCE_CONTAINER") or "fhir-export"
TRIGGER_SOURCE = func.BlobSource(os.environ.get("ANONYMIZER_TRIGGER_SOURCE") or "EventGrid")

app = func.FunctionApp()
_handler: Handler | None = None


@app.function_name("anonymize_export")
@app.blob_trigger(
    arg_name="client", path=f"{SOURCE_CONTAINER}/{{name}}", connection=CONNECTION, source=TRIGGER_SOURCE
)
def anonymize_export(client: blobext.BlobClient) -> None:
    global _handler
    if _handler is None:  # one handler (clients, compiled engine) per worker process
        _handler = Handler()
    _handler.handle(client)


# The timer that starts and follows `$export` (anonymizer.azure.export.tick): only when a schedule
# is set (an NCRONTAB expression, e.g. "0 */15 * * * *"), with ANONYMIZER_EXPORT_FHIR_URL.
EXPORT_SCHEDULE = os.environ.get("ANONYMIZER_EXPORT_SCHEDULE") or ""

if EXPORT_SCHEDULE:

    @app.function_name("export_and_follow")
    @app.timer_trigger(arg_name="timer", schedule="%ANONYMIZER_EXPORT_SCHEDULE%", run_on_startup=False)
    def export_and_follow(timer: func.TimerRequest) -> None:
        from anonymizer.azure import export

        global _handler
        if _handler is None:
            _handler = Handler()
        settings = _handler.settings
        records = export.JobRecords(_handler.destination)
        url = settings.export_fhir_url or ""
        client = export.BulkExport(export.azure_token(url) if url else (lambda: None), say=logging.info)
        export.tick(settings, records, client, _handler, logging.info)
