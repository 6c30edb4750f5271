from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"
SYNTHEA = SHARED / "data" / "synthea-export"
SAMPLE_CONFIG = SHARED / "reference" / "ms-configuration-sample.json"


def need(path: Path) -> Path:
    """Skip (not fail) when the reference material beside the checkout is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared beside the checkout holds the reference material)")
    return path


@pytest.fixture(autouse=True)
def _clear_anonymizer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and settings from the developer's environment must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("ANONYMIZER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def python_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines made in the test run the Python engine: for tests of its own internals (the
    compiled core, when installed, would not reach them)."""
    monkeypatch.setenv("ANONYMIZER_ENGINE", "python")


# -- a real Azurite, shared by the test modules that need one ----------------------------------------
AZURE_CRYPTO_KEY = "azure-test-crypto-hash-key-0001"
AZURE_DATE_KEY = "azure-test-date-shift-key-00001"


@pytest.fixture(scope="session")
def azurite():
    """The connection string of an Azurite started on free loopback ports (skips without one)."""
    pytest.importorskip("azure.storage.blob")
    from tests.azurite import AzuriteMissing, running_azurite

    try:
        with running_azurite() as connection:
            yield connection
    except AzuriteMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def azure_env(azurite, monkeypatch):
    """The function's settings for fresh containers and queue of their own, in the environment."""
    import uuid
    from types import SimpleNamespace

    from azure.storage.blob import BlobServiceClient

    suffix = uuid.uuid4().hex[:8]
    values = {
        "AzureWebJobsStorage": azurite,
        "ANONYMIZER_SOURCE_CONTAINER": f"export-{suffix}",
        "ANONYMIZER_DESTINATION_CONTAINER": f"anon-{suffix}",
        "ANONYMIZER_RESULTS_QUEUE": f"results-{suffix}",
        "ANONYMIZER_CRYPTO_HASH_KEY": AZURE_CRYPTO_KEY,
        "ANONYMIZER_DATE_SHIFT_KEY": AZURE_DATE_KEY,
        "ANONYMIZER_REFERENCE_DATE": "2026-01-01",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container(values["ANONYMIZER_SOURCE_CONTAINER"])
    return SimpleNamespace(service=service, connection=azurite, **{k.lower(): v for k, v in values.items()})


def queue_messages(env) -> list[dict]:
    """The results queue's messages (decoded)."""
    import json

    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    queue = QueueClient.from_connection_string(
        env.connection, env.anonymizer_results_queue, message_decode_policy=TextBase64DecodePolicy()
    )
    return [json.loads(m.content) for m in queue.receive_messages(max_messages=32)]
