"""`fhir-anonymize share` against Azurite over TLS: the URL lists and reads, cannot write or delete,
stops working when it expires, carries the IP range; write permissions and long expiries are
refused; and a user delegation SAS on Azurite 3.37 (Node 22, `--oauth basic`)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

pytest.importorskip("azure.storage.blob")

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient

from anonymizer.azure.share import parse_duration, share_url
from anonymizer.cli import main
from tests.azurite import AzuriteMissing, azurite_337_command, running_azurite, self_signed_certificate


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_certificate(folder)
    try:
        with running_azurite(["--cert", str(cert), "--key", str(key)], https=True) as connection:
            service = BlobServiceClient.from_connection_string(connection, connection_verify=str(cert))
            container = service.create_container("research")
            container.upload_blob("2026-11/Patient-1-1.ndjson", b'{"resourceType":"Patient"}\n')
            yield connection, str(cert)
    except AzuriteMissing as exc:
        pytest.skip(str(exc))


def _container(url: str, cert: str) -> ContainerClient:
    return ContainerClient.from_container_url(
        url.replace("restype=container&comp=list&", ""), connection_verify=cert
    )


def test_share_url_lists_and_reads_but_cannot_write_or_delete(tls, monkeypatch, capsys, caplog):
    connection, cert = tls
    monkeypatch.setenv("AzureWebJobsStorage", connection)
    with caplog.at_level(logging.DEBUG):
        assert main(["share", "--container", "research", "--expiry", "2h"]) == 0
    captured = capsys.readouterr()
    url = captured.out.strip()
    query = parse_qs(urlparse(url).query)
    assert url.startswith("https://") and query["sp"] == ["rl"] and query["spr"] == ["https"]
    assert "sig" in query and "azcopy" in captured.err and url not in captured.err
    assert not any(query["sig"][0] in record.getMessage() for record in caplog.records)
    container = _container(url, cert)
    assert [b.name for b in container.list_blobs()] == ["2026-11/Patient-1-1.ndjson"]
    assert container.download_blob("2026-11/Patient-1-1.ndjson").readall() == b'{"resourceType":"Patient"}\n'
    with pytest.raises(HttpResponseError) as info:
        container.upload_blob("new.ndjson", b"x")
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError) as info:
        container.delete_blob("2026-11/Patient-1-1.ndjson")
    assert info.value.status_code == 403


def test_expired_share_cannot_read(tls):
    connection, cert = tls
    service = BlobServiceClient.from_connection_string(connection, connection_verify=cert)
    url = share_url("research", expiry=timedelta(seconds=2), service=service)
    container = _container(url, cert)
    assert container.download_blob("2026-11/Patient-1-1.ndjson").readall()
    time.sleep(3)
    with pytest.raises(HttpResponseError) as info:
        container.download_blob("2026-11/Patient-1-1.ndjson").readall()
    assert info.value.status_code == 403


def test_prefix_and_ip_range(tls):
    connection, cert = tls
    service = BlobServiceClient.from_connection_string(connection, connection_verify=cert)
    url = share_url(
        "research", expiry=timedelta(hours=1), prefix="2026-11/", ip="10.1.2.0-10.1.2.255", service=service
    )
    query = parse_qs(urlparse(url).query)
    assert query["sip"] == ["10.1.2.0-10.1.2.255"] and query["prefix"] == ["2026-11/"]
    assert query["comp"] == ["list"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--expiry", "8d"], "at most 7 days"),
        (["--expiry", "0h"], "in the future"),
        (["--expiry", "soon"], "duration"),
        (["--expiry", "1h", "--permissions", "rw"], "read and list only"),
        (["--expiry", "1h", "--permissions", "rld"], "read and list only"),
    ],
)
def test_refusals(tls, monkeypatch, capsys, arguments, message):
    monkeypatch.setenv("AzureWebJobsStorage", tls[0])
    assert main(["share", "--container", "research", *arguments]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_expiry_is_required(capsys):
    assert main(["share", "--container", "research"]) == 2
    err = capsys.readouterr().err
    assert "--expiry" in err and len(err.strip().splitlines()) == 1


def test_durations():
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("90m") == timedelta(minutes=90)


class _TestTokenCredential:
    """Mints a token Azurite's `--oauth basic` accepts (it checks audience, issuer and times, not
    the signature): a stand-in for azure-identity in tests."""

    def get_token(self, *scopes, **kwargs):
        import base64
        import json

        from azure.core.credentials import AccessToken

        def encode(part: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

        now = int(time.time())
        tenant = "ab1f708d-50f6-404c-a006-d71b2ac7a606"
        claims = {
            "aud": "https://storage.azure.com",
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": "00000000-0000-0000-0000-000000000001",
            "tid": tenant,
        }
        return AccessToken(f"{encode({'alg': 'RS256', 'typ': 'JWT'})}.{encode(claims)}.c2ln", now + 3600)


def test_user_delegation_share_on_azurite_337(tmp_path):
    command = azurite_337_command()
    if command is None:
        pytest.skip("Azurite 3.37 on Node 22 is not installed (.ci/run installs it into .ci/azurite337)")
    cert, key = self_signed_certificate(tmp_path)
    extra = ["--cert", str(cert), "--key", str(key), "--oauth", "basic"]
    with running_azurite(extra, https=True, command=command) as connection:
        admin = BlobServiceClient.from_connection_string(connection, connection_verify=str(cert))
        admin.create_container("delegated").upload_blob("a.ndjson", b"{}\n")
        service = BlobServiceClient(admin.url, credential=_TestTokenCredential(), connection_verify=str(cert))
        url = share_url("delegated", expiry=timedelta(hours=1), user_delegation=True, service=service)
        query = parse_qs(urlparse(url).query)
        assert "skoid" in query and query["sp"] == ["rl"]
        container = _container(url, str(cert))
        assert [b.name for b in container.list_blobs()] == ["a.ndjson"]
        assert container.download_blob("a.ndjson").readall() == b"{}\n"
        with pytest.raises(HttpResponseError) as info:
            container.upload_blob("b.ndjson", b"x")
        assert info.value.status_code == 403
        tampered = _container(url.replace("sig=", "sig=AA"), str(cert))
        with pytest.raises(HttpResponseError) as info:
            tampered.download_blob("a.ndjson").readall()
        assert info.value.status_code == 403
