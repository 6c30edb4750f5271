"""Storage clients from the settings: a connection string, or identity-based service URIs with
azure-identity (DefaultAzureCredential, or ManagedIdentityCredential for a user-assigned id)."""

from __future__ import annotations

import os
from typing import Any

from azure.storage.blob import BlobClient, BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from anonymizer.azure.settings import CONNECTION, Settings
from anonymizer.errors import ConfigurationError


def credential(settings: Settings) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.credential == "managedidentity" and settings.client_id:
        return ManagedIdentityCredential(client_id=settings.client_id)
    return DefaultAzureCredential()


# Streamed reads in 4 MiB requests (the SDK's first request would otherwise fetch 32 MiB).
TRANSFER = {"max_single_get_size": 4 << 20, "max_chunk_get_size": 4 << 20}


def tune_for_streaming(blob: BlobClient) -> BlobClient:
    """Streamed reads in 4 MiB requests on a client built elsewhere (the trigger's has the SDK's
    defaults); its pipeline, credential and hooks stay as they are."""
    config = getattr(blob, "_config", None)
    if config is not None:
        for name, value in TRANSFER.items():
            setattr(config, name, min(getattr(config, name, value), value))
    return blob


def blob_service(settings: Settings, **kwargs: Any) -> BlobServiceClient:
    kwargs = {**TRANSFER, **kwargs}
    if settings.connection_string:
        return BlobServiceClient.from_connection_string(settings.connection_string, **kwargs)
    assert settings.blob_service_uri is not None  # Settings.check_connection: one or the other
    return BlobServiceClient(settings.blob_service_uri, credential=credential(settings), **kwargs)


def results_queue(settings: Settings) -> QueueClient:
    """Messages base64-encoded, as a queue-triggered consumer expects them."""
    policy = TextBase64EncodePolicy()
    if settings.connection_string:
        return QueueClient.from_connection_string(
            settings.connection_string, settings.results_queue, message_encode_policy=policy
        )
    if not settings.queue_service_uri:
        raise ConfigurationError(
            f"set {CONNECTION}__queueServiceUri beside {CONNECTION}__blobServiceUri (the results queue)"
        )
    return QueueClient(
        settings.queue_service_uri,
        settings.results_queue,
        credential=credential(settings),
        message_encode_policy=policy,
    )


def config_blob(url: str, settings: Settings) -> BlobClient:
    """A configuration kept in blob storage, read with the same credential."""
    if settings.connection_string:
        service = BlobServiceClient.from_connection_string(settings.connection_string)
        return BlobClient.from_blob_url(url, credential=service.credential)
    return BlobClient.from_blob_url(url, credential=credential(settings))


def blob_service_from_environment() -> BlobServiceClient:
    """The storage of the app settings, for commands that need only the connection (`share`,
    `verify container:...`); the container settings are irrelevant to them."""
    environ = dict(os.environ)
    if not (environ.get(CONNECTION) or environ.get(f"{CONNECTION}__blobServiceUri")):
        raise ConfigurationError(f"set {CONNECTION} (or {CONNECTION}__blobServiceUri with an identity)")
    environ.update({"ANONYMIZER_SOURCE_CONTAINER": "-", "ANONYMIZER_DESTINATION_CONTAINER": "--"})
    return blob_service(Settings.from_env(environ))
